"""A simulated builder network (issue #17): one packager on 127.0.0.38 with a repository and no
chroot, N builder daemons on 127.0.1.x in bench mode (``MINI_BUILDD_SIMULATED_BUILDS``, see
``mini_buildd/pipeline/simulated_builder.py``), each a Remote of the packager and the packager a
Remote of each (the two-sided setup of the manual, with the real handshake).

Requests are real FTP uploads of small unsigned source packages (clones of one package made by
dpkg-buildpackage, renamed) to the packager's repository ``test`` (unauthenticated uploads
allowed): each goes through the packager's real checks, its real buildrequest, builder choice
(``remotes.Selector``) and re-dispatch (``remotes.BuilderWatch``), so the whole dispatch code runs.

Used by ``bench/builders/run`` (figures) and ``tests/integration/test_simulated_builders.py``
(correctness only).
"""

import concurrent.futures
import datetime
import ftplib
import hashlib
import os
import pathlib
import re
import subprocess
import threading
import time

import requests

from tests.helpers.packages import make_source_package
from tests.helpers.remote_instances import RemoteInstance, common_ports, wait_until

PACKAGER_HOST = "127.0.0.38"
DIST = "bookworm-test-unstable"
SOURCE_PREFIX = "mbd-sim"
TEMPLATE = f"{SOURCE_PREFIX}00000"
VERSION = "1.0~test12+1"  # the layout Default wants the ~<identity><codeversion>+N appendix


def builder_hosts(count):
    return [f"127.0.1.{i}" for i in range(1, count + 1)]


class SimNet:  # pylint: disable=too-many-instance-attributes
    """The packager and its builders (homes below ``root``); :meth:`up`, :meth:`teardown`."""

    def __init__(self, root, builders, delay=0.5, redispatch_timeout=15, poll=2, tag=None):
        self.root = pathlib.Path(root)
        hosts = builder_hosts(builders)
        self.http_port, self.ftp_port = common_ports([PACKAGER_HOST] + hosts)
        tag = tag or f"mbd-sim{os.getpid()}"
        self.packager = RemoteInstance("packager", PACKAGER_HOST, self.root, self.http_port, self.ftp_port, f"{tag}-p")
        self.builders = [RemoteInstance(f"b{i + 1}", h, self.root, self.http_port, self.ftp_port, f"{tag}-b{i + 1}")
                         for i, h in enumerate(hosts)]
        self.delay = delay
        self.env = {"MINI_BUILDD_REDISPATCH_TIMEOUT": str(redispatch_timeout), "MINI_BUILDD_BUILDER_POLL": str(poll)}
        self.killed = []

    # ------------------------------------------------------------------------------------------ bring up
    def bench_env(self):
        return dict(self.env, MINI_BUILDD_SIMULATED_BUILDS=str(self.delay), MINI_BUILDD_BENCH_MODE="1",
                    MINI_BUILDD_SIMULATED_CHROOTS="bookworm:amd64")

    def _builder_up(self, b):
        b.bootstrap()
        b.add_remote(self.packager)   # pending until the packager knows it (converges after its handshake)
        b.start(self.bench_env())
        return b

    def up(self, parallel=4, log=print):
        """Bring the network up; returns seconds taken."""
        t0 = time.monotonic()
        p = self.packager
        p.bootstrap("--archives-from-apt-sources", "--sources", "bookworm", "--distributions", "bookworm:amd64",
                    "--repositories", "test:Default:bookworm")
        p.django("r = models.Repository.objects.get(identity='test')\nr.allow_unauthenticated_uploads = True\n"
                 "r.save()\nr.mbd_pca()")
        p.start(self.env)
        log(f"packager up ({time.monotonic() - t0:.0f} s)")
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            for b in pool.map(self._builder_up, self.builders):
                log(f"builder {b.name} on {b.host} up ({time.monotonic() - t0:.0f} s)")
        urls = [b.url for b in self.builders]
        _code, result, _err = p.setup("--remotes", *urls, "--update", "all", check=True)
        hashes = [i["identity_hash"] for i in result["instances"] if i["identity"]["class"] == "Remote"]
        p.setup("--remotes", *urls, "--pca", ",".join(hashes), check=True)
        wait_until(self.linked, 120, interval=2, what="all remotes Active on both sides")
        log(f"network of {len(self.builders)} builders linked ({time.monotonic() - t0:.0f} s)")
        return time.monotonic() - t0

    def linked(self):
        """Every builder an active remote of the packager and the packager one of each builder's."""
        try:
            status = requests.get(f"{self.packager.url}/mini_buildd/api/status/", timeout=10).json()
            if sorted(status["remotes"]) != sorted(b.url for b in self.builders):
                return False
            for b in self.builders:
                s = requests.get(f"{b.url}/mini_buildd/api/status/", timeout=10).json()
                if self.packager.url not in s["remotes"] or "simulated_builds" not in s:
                    return False
        except (requests.RequestException, ValueError, KeyError):
            return False
        return True

    def kill(self, count):
        """SIGKILL ``count`` builders (the last ones); return their URLs."""
        victims = [b for b in self.builders if b.daemon and b.daemon.proc.poll() is None][-count:]
        for b in victims:
            b.daemon.proc.kill()
            b.daemon.proc.wait()
            self.killed.append(b.url)
        return [b.url for b in victims]

    def teardown(self):
        """Every daemon stopped, its gpg agents gone (no chroots were made)."""
        for inst in [self.packager] + self.builders:
            try:
                inst.teardown()
            except Exception as e:  # pylint: disable=broad-except  # tear down the others anyway
                print(f"teardown of {inst.name}: {e}")

    def packager_memory(self):
        """``{VmRSS, VmHWM}`` of the packager daemon in kB."""
        text = pathlib.Path(f"/proc/{self.packager.daemon.proc.pid}/status").read_text(encoding="utf-8")
        return {k: int(v.split()[0]) for k, v in re.findall(r"^(VmRSS|VmHWM):\s*(.*)$", text, re.M)}


# ------------------------------------------------------------------------------------------------ requests
def _digests(data):
    return {"md5": hashlib.md5(data).hexdigest(), "sha1": hashlib.sha1(data).hexdigest(),  # noqa: S324  # the formats' fields
            "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def make_sources(workdir, count):
    """``count`` uploads ``[(name, [files in upload order])]``: one real source package, cloned by
    renaming (the tarball's bytes stay; the .dsc, .buildinfo and .changes are rewritten, with the
    checksums of the rewritten files)."""
    workdir = pathlib.Path(workdir)
    tmpl_dir = workdir / "template"
    tmpl_dir.mkdir(parents=True, exist_ok=True)
    changes = make_source_package(tmpl_dir, TEMPLATE, VERSION, DIST)
    changes_text = changes.read_text(encoding="utf-8")
    listed = sorted({m.group(1) for m in re.finditer(r"^ [0-9a-f]{32} \d+ \S+ \S+ (\S+)$", changes_text, re.M)})
    out = []
    for i in range(1, count + 1):
        name = f"{SOURCE_PREFIX}{i:05d}"
        d = workdir / name
        d.mkdir(exist_ok=True)
        files, digests = [], {}
        for fname in listed:
            data = (tmpl_dir / fname).read_bytes()
            if not fname.endswith((".tar.xz", ".tar.gz")):
                data = data.replace(TEMPLATE.encode(), name.encode())
            new = d / fname.replace(TEMPLATE, name)
            new.write_bytes(data)
            files.append(new)
            digests[new.name] = _digests(data)
        lines = []
        for line in changes_text.replace(TEMPLATE, name).splitlines():
            m = re.match(r"^ ([0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{64}) (\d+) (.*\s)?(\S+)$", line)
            if m and m.group(4) in digests:
                dg = digests[m.group(4)]
                kind = {32: "md5", 40: "sha1", 64: "sha256"}[len(m.group(1))]
                line = f" {dg[kind]} {dg['size']} {m.group(3) or ''}{m.group(4)}"
            lines.append(line)
        ch = d / changes.name.replace(TEMPLATE, name)
        ch.write_text("\n".join(lines) + "\n", encoding="utf-8")
        out.append((name, sorted(files, key=lambda f: f.name.endswith(".dsc")) + [ch]))
    return out


def _ftp_put(host, port, files):
    """One FTP session per upload (as dput does: the daemon takes an arrival when its session ends)."""
    ftp = ftplib.FTP()
    ftp.connect(host, port, timeout=60)
    ftp.login()
    ftp.cwd("/incoming")
    for f in files:
        with open(f, "rb") as fh:
            ftp.storbinary(f"STOR {f.name}", fh)
    ftp.quit()


def send(host, port, uploads, rate=20.0, connections=4, on_progress=None):
    """FTP-upload ``uploads`` at about ``rate`` per second with ``connections`` uploads in parallel (one FTP session each); returns
    ``{name: send time}``."""
    sent, lock = {}, threading.Lock()
    interval = 1.0 / rate if rate > 0 else 0
    start = time.monotonic()
    todo = list(enumerate(uploads))

    def worker(share):
        for index, (name, files) in share:
            wait = start + index * interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            _ftp_put(host, port, files)
            with lock:
                sent[name] = time.time()
                count = len(sent)
            if on_progress:
                on_progress(count)

    with concurrent.futures.ThreadPoolExecutor(connections) as pool:
        list(pool.map(worker, [todo[i::connections] for i in range(connections)]))
    return sent


# ------------------------------------------------------------------------------------------------ outcome
def _fields(path):
    fields = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r"^([A-Za-z0-9-]+):\s*(.*)$", line)
        if m:
            fields.setdefault(m.group(1), m.group(2))
    return fields


def _timecode_epoch(tc):
    return datetime.datetime.strptime(tc, "%Y%m%d:%H%M%S:%f").replace(tzinfo=datetime.timezone.utc).timestamp()


def final_events(home, names):
    """``{name: [final event types]}`` saved in the packager's ``var/events``."""
    result = {}
    for name in names:
        types = []
        for p in (home / "var" / "events" / name / VERSION).rglob(f"{name}_{VERSION}_*.json"):
            kind = p.stem.rsplit("_", 1)[-1]
            if kind in ("INSTALLED", "FAILED", "REJECTED"):
                types.append(kind)
        result[name] = types
    return result


def wait_done(home, names, timeout, log=print):
    """Wait until every upload has a final event (or ``timeout``); return :func:`final_events`."""
    deadline = time.monotonic() + timeout
    while True:
        events = final_events(home, names)
        done = sum(1 for t in events.values() if t)
        if done == len(names) or time.monotonic() > deadline:
            return events
        log(f"  {done}/{len(names)} ended")
        time.sleep(5)


def accepted_results(home):
    """The buildresults the packager accepted: ``[{name, builder, queued, accepted, simulated}]``
    (``queued``: the upload's timecode at the packager; ``accepted``: when the builder took the request)."""
    out = []
    for p in (home / "var" / "events").glob(f"{SOURCE_PREFIX}*/{VERSION}/*/*/*_mini-buildd-buildresult_*.changes"):
        f = _fields(p)
        out.append({"name": f.get("Source"), "builder": f.get("X-Mini-Buildd-Builder"),
                    "queued": _timecode_epoch(f["X-Mini-Buildd-Timecode"]),
                    "accepted": float(f.get("X-Mini-Buildd-Simulated-Accepted") or "nan"),
                    "simulated": f.get("X-Mini-Buildd-Simulated")})
    return out


def builds_per_builder(net):
    """``{builder url: simulated builds it ran}`` (its build dirs, including results nobody took)."""
    return {b.url: len(list((b.home / "var" / "shared" / "builds").glob(f"{SOURCE_PREFIX}*/*/*/*/*_mini-buildd-buildresult_*.changes")))
            for b in net.builders}


def installed_anything(home):
    """Source packages of ``mbd-sim*`` in the packager's repository ``test`` (reprepro ls)."""
    base = home / "repositories" / "test"
    proc = subprocess.run(["reprepro", "--basedir", str(base), "list", DIST], capture_output=True, text=True, check=False)
    return [line for line in proc.stdout.splitlines() if SOURCE_PREFIX in line]


def percentile(values, q):
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(q / 100.0 * (len(values) - 1))))]
