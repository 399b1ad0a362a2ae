"""Load and fault runs against a real daemon (issue #17, "Proof under load and at scale", items 1
and 2), shared by ``bench/load/run`` (figures, never fails) and ``tests/e2e/test_load_correctness.py``
(asserts the same properties on a small run).

This module owns

- :class:`LoadInstance`: an instance of its own (loopback address, home, schroot prefix; a
  bookworm:amd64 Dir chroot from the cached base tarball; repository ``test`` requiring signed
  uploads (setup makes it allowing unsigned ones, as upstream); a developer key with upload rights, a stranger's key; ``max_parallel_builds`` slots),
  SIGKILL and restart of its daemon on the same home, teardown (daemon stopped, chroots removed);
- the uploads (:func:`make_uploads`): distinct small good source packages (signed by the developer)
  and bad ones of the kinds the daemon already rejects (:data:`BAD_KINDS`, each with the regular
  expression its REJECTED reason must match), sent all at once through real FTP by threads; an
  upload whose FTP session a kill cut is sent again;
- the observers: an SSE client of ``/mini_buildd/api/events/stream`` that reconnects after a kill
  with ``Last-Event-ID`` (:class:`SseCollector`), a thread calling ``status`` repeatedly
  (:class:`StatusSampler`);
- :func:`run`: uploads, optional kills at random moments, until every upload is final; and the
  checks (:func:`check`), which return figures and ``MISMATCH`` lines.

The rule of a run with kills (item 2): a good upload is final when its package is INSTALLED; a kill
may end it FAILED first (interrupted build or install, concluded at the next start), or REJECTED
(its FTP session cut, its files incomplete): then it is uploaded again, the same files, and each
such re-upload is counted. In the end every good package has exactly one INSTALLED event and is
in the repository in its version; every bad one has REJECTED events only (more than one only when
a kill made us send it again), never PACKAGING or INSTALLED; nothing is left ongoing. Without kills,
each upload has exactly one terminal event.
"""

import datetime
import ftplib
import json
import logging
import pathlib
import random
import re
import statistics
import subprocess
import threading
import time

import requests
from debian import deb822

from mini_buildd import events, sse
from mini_buildd.tools import gnupg
from tests.helpers.packages import make_source_package
from tests.helpers.daemon import Daemon
from tests.helpers.remote_instances import ED25519, RemoteInstance, common_ports

LOG = logging.getLogger(__name__)

CHROOT_SETUP = ["--archives-from-apt-sources", "--sources", "bookworm", "--distributions", "bookworm:amd64",
                "--repositories", "test:Default:bookworm", "--chroots", "bookworm:amd64"]
DIST = "bookworm-test-unstable"
VERSION = "1.0~test12+1"
#: Uploads come from CLIENT_NET.0.1, CLIENT_NET.0.2, ... (loopback source addresses).
CLIENT_NET = "127.37"
TERMINAL = ("INSTALLED", "FAILED", "REJECTED")
#: Bad kinds: name -> (distribution, version, how it is spoiled, regular expression of the reason).
BAD_KINDS = {
    "unsigned": (DIST, VERSION, "unsigned", r"(?i)not signed|no signature"),
    "stranger": (DIST, VERSION, "stranger", r"(?i)unknown key|no accepted|not.*verif"),
    "checksum": (DIST, VERSION, "checksum", r"(?i)size|checksum|md5|sha"),
    "missing": (DIST, VERSION, "missing", r"(?i)missing|not found|no such"),
    "nodist": ("bookworm-nosuchrepo-unstable", VERSION, "", r"(?i)no repository"),
    "suite": ("bookworm-test-testing", VERSION, "", r"(?i)not uploadable"),
    "rollback": ("bookworm-test-unstable-rollback0", VERSION, "", r"(?i)rollback"),
    "version": (DIST, "1.0", "", r"(?i)mandatory"),
}


def now():
    return datetime.datetime.now(datetime.timezone.utc)


# ------------------------------------------------------------------------------------------------ instance
class LoadInstance(RemoteInstance):
    """The instance of a load run (see the module documentation)."""

    def __init__(self, root, host, prefix, slots=2, lintian=True):
        http_port, ftp_port = common_ports([host])
        super().__init__("load", host, root, http_port, ftp_port, prefix)
        self.slots = slots
        #: False: the distribution's lintian mode is "disabled" (shorter builds, for the test)
        self.lintian = lintian
        self.keys = {}
        self.kills = 0

    def create(self):
        """Keys, Daemon (fast key, slots), setup (chroot from the cached tarball), uploader rights."""
        for who in ("dev", "stranger"):
            home = self.home.parent / f"gnupg-{who}"
            home.mkdir(mode=0o700, exist_ok=True)
            g = gnupg.Gnupg(home)
            g.gen_secret_key(ED25519, f"{who} load", f"{who}@example.org")
            self.keys[who] = (home, g.pub_key())
            g.kill_agents()
        self.django(f"d = models.Daemon.get()\nd.gnupg_template = {ED25519!r}\nd.identity = 'load'\n"
                    f"d.max_parallel_builds = {int(self.slots)}\nd.save()")
        self.setup(*CHROOT_SETUP, "--update", "all", "--pca", "all", check=True)
        out = self.django(f"""
from django.contrib.auth.models import User
repo = models.Repository.objects.get(identity="test")
repo.allow_unauthenticated_uploads = False  # setup's 'test' allows them (as upstream's)
repo.save()
repo.mbd_pca()
if not {self.lintian!r}:
    models.Distribution.objects.all().update(lintian_mode=0)
user, _ = User.objects.get_or_create(username="dev")
up = user.uploader
up.key = {self.keys["dev"][1]!r}
up.save()
up.may_upload_to.add(repo)
up.mbd_pca()
from mini_buildd.archive import snapshots
snapshots.run()
print(up.mbd_status_display(), repo.mbd_status_display(), models.Repository.objects.get(identity="test").allow_unauthenticated_uploads,
      models.Daemon.get().max_parallel_builds, models.Daemon.get().mbd_is_active())
""")
        assert out.split()[-3:] == ["False", str(self.slots), "True"], out
        return self

    def sign(self, who, changes):
        """Sign ``changes`` with the key of ``who`` (dev, stranger)."""
        g = gnupg.Gnupg(self.keys[who][0])
        try:
            g.sign_file(changes)
        finally:
            g.kill_agents()

    def running(self):
        return self.daemon is not None and self.daemon.proc.poll() is None

    def kill_and_restart(self):
        """SIGKILL the daemon, start a new one on the same home (waits for HTTP and FTP)."""
        self.daemon.stop(sig=9)
        self.kills += 1
        self.start()

    def start(self, env=None):
        """Start the daemon (``env``: added to its environment); waits for HTTP and FTP (the engine)."""
        self.daemon = Daemon(self.home, port=self.http_port, host=self.host, endpoints=[self.http_endpoint],
                             extra_args=["--schroot-prefix", self.schroot_prefix], env=env)
        self.daemon.ftp_port = self.ftp_port
        self.daemon.start(timeout=300)
        return self

    def reprepro(self, *args):
        """reprepro ``args`` on repository ``test`` (waiting while the daemon's reprepro holds its lock)."""
        for _ in range(240):
            proc = subprocess.run(["reprepro", "--basedir", str(self.home / "repositories" / "test"), *args],
                                  capture_output=True, text=True, check=False)
            if proc.returncode == 0 or "lock file" not in proc.stderr:
                return proc
            time.sleep(0.5)
        return proc

    def event_files(self):
        """Every saved event: ``{stream id: event}``."""
        found = {}
        for path in events.find_event_files(self.home / "var" / "events"):
            try:
                event = events.Event.load(path)
            except (OSError, ValueError):
                continue  # being written (atomic rename: a moment)
            found[sse.event_id(event)] = event
        return found

    def teardown(self):
        super().teardown()
        for home, _pub in self.keys.values():
            gnupg.kill_agents(home)


def leftovers(inst):
    """What the instance left on the host: schroot configs/sessions of its prefix, mounts below its home, processes."""
    from tests.helpers.daemon import processes_mentioning  # pylint: disable=import-outside-toplevel
    names = subprocess.run(["schroot", "--list", "--all"], capture_output=True, text=True, check=False).stdout
    left = [n for n in names.split() if inst.schroot_prefix in n]
    left += [line for line in pathlib.Path("/proc/mounts").read_text(encoding="utf-8").splitlines() if str(inst.home) in line]
    left += [f"pid {p}" for p in processes_mentioning(str(inst.home))]
    return left


# ------------------------------------------------------------------------------------------------ uploads
class Upload:
    """One upload: its files (in sending order), whether it is good, its bad kind and reason."""

    def __init__(self, source, version, changes, files, good, kind="", reason=""):
        self.source, self.version, self.changes, self.files = source, version, changes, files
        self.good, self.kind, self.reason = good, kind, reason
        self.sent = []        # times of each completed FTP session
        self.ftp_errors = []  # sessions a kill (or anything) cut or refused
        #: The client's source address: each upload comes from its own (as from many hosts; the
        #: daemon limits connections per address).
        self.client = None
        self.final = None     # the final terminal event
        self.resent = 0       # re-uploads after a kill ended it FAILED/REJECTED

    def send(self, inst, stop):
        """Send over FTP until one session completes (a kill may cut one: sent again after the
        restart; a refused connection is tried again too)."""
        while not stop.is_set():
            try:
                ftp = ftplib.FTP(source_address=(self.client, 0) if self.client else None)
                ftp.connect(inst.host, inst.ftp_port, timeout=60)
                ftp.login()
                ftp.cwd("/incoming")
                for path in self.files:
                    with open(path, "rb") as f:
                        ftp.storbinary(f"STOR {path.name}", f)
                ftp.quit()
                self.sent.append(now())
                return
            except FTP_ERRORS as e:
                self.ftp_errors.append(str(e)[:80])
                time.sleep(1 + random.random())


#: What a cut or refused FTP session raises.
FTP_ERRORS = (EOFError,) + ftplib.all_errors


def _listed(changes):
    with open(changes, encoding="utf-8") as f:
        return [changes.parent / e["name"] for e in deb822.Changes(f)["Files"]]


def make_uploads(inst, workdir, good, bad, tag="load"):
    """``good`` signed good uploads and ``bad`` bad ones (kinds of :data:`BAD_KINDS` in turn)."""
    workdir = pathlib.Path(workdir)
    uploads = []
    for i in range(good):
        name = f"mbd-{tag}-g{i:02d}"
        c = make_source_package(workdir / name, name, VERSION, DIST)
        inst.sign("dev", c)
        uploads.append(Upload(name, VERSION, c, _listed(c) + [c], True))
    kinds = list(BAD_KINDS)
    for i in range(bad):
        kind = kinds[i % len(kinds)]
        dist, version, spoil, reason = BAD_KINDS[kind]
        name = f"mbd-{tag}-b{i:02d}-{kind}"
        c = make_source_package(workdir / name, name, version, dist)
        files = _listed(c)
        if spoil != "unsigned":
            inst.sign("stranger" if spoil == "stranger" else "dev", c)
        if spoil == "checksum":
            tarball = next(p for p in files if p.name.endswith(".tar.xz"))
            tarball.write_bytes(tarball.read_bytes() + b"x")
        if spoil == "missing":
            files = [p for p in files if not p.name.endswith(".tar.xz")]
        uploads.append(Upload(name, version, c, files + [c], False, kind, reason))
    for i, u in enumerate(uploads):
        u.client = f"{CLIENT_NET}.{i // 250}.{i % 250 + 1}"
    return uploads


# ------------------------------------------------------------------------------------------------ observers
class SseCollector(threading.Thread):
    """Reads the event stream (from the whole queue: ``after=epoch``); after a cut (a kill) it
    reconnects with ``Last-Event-ID``. ``events``: {id: event JSON}; ``duplicates``: ids seen twice."""

    def __init__(self, inst):
        super().__init__(daemon=True)
        self.inst = inst
        self.events = {}
        self.duplicates = []
        self.last_id = None
        self.reconnects = 0
        self.stop = threading.Event()
        self.response = None

    def run(self):
        while not self.stop.is_set():  # pylint: disable=deprecated-method  # whole-tree inference false positive (Event.is_set is current)
            try:
                headers = {"Accept": "text/event-stream"}
                params = {"heartbeat": "2"}
                if self.last_id:
                    headers["Last-Event-ID"] = self.last_id
                else:
                    params["after"] = "epoch"
                self.response = requests.get(self.inst.url + sse.PATH, params=params, headers=headers, stream=True,
                                             timeout=(10, 30))
                if self.response.status_code != 200:
                    raise OSError(f"status {self.response.status_code}")
                self._read(self.response)
            except (OSError, requests.RequestException, ValueError, AttributeError):
                pass  # cut (a kill, or close(): http.client's file gone under the read)
            if not self.stop.is_set():  # pylint: disable=deprecated-method  # whole-tree inference false positive (Event.is_set is current)
                self.reconnects += 1
                time.sleep(0.5)

    def _read(self, response):
        buffer = ""
        for chunk in response.iter_content(chunk_size=None, decode_unicode=False):
            buffer += chunk.decode("utf-8")
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                fields = {}
                for line in block.split("\n"):
                    if line and not line.startswith(":"):
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
                if "id" in fields and "data" in fields:
                    if fields["id"] in self.events:
                        self.duplicates.append(fields["id"])
                    self.events[fields["id"]] = json.loads(fields["data"])
                    self.last_id = fields["id"]
            if self.stop.is_set():  # pylint: disable=deprecated-method  # whole-tree inference false positive (Event.is_set is current)
                return

    def close(self):
        self.stop.set()
        if self.response is not None:
            self.response.close()


class StatusSampler(threading.Thread):
    """Calls ``status`` (anonymous, JSON) every ``interval`` s; latencies (s) of the answers, failures counted."""

    def __init__(self, inst, interval=0.2):
        super().__init__(daemon=True)
        self.inst, self.interval = inst, interval
        self.latencies, self.failures = [], 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():  # pylint: disable=deprecated-method  # whole-tree inference false positive (Event.is_set is current)
            started = time.monotonic()
            try:
                r = requests.get(f"{self.inst.url}/mini_buildd/api/status/", params={"output": "json"}, timeout=30)
                if r.status_code == 200:
                    self.latencies.append(time.monotonic() - started)
                else:
                    self.failures += 1
            except requests.RequestException:
                self.failures += 1
            self.stop.wait(self.interval)


def percentile(values, p):
    """The ``p``-th percentile of ``values`` (NaN for none)."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


# ------------------------------------------------------------------------------------------------ the run
def _terminal_by_source(evs):
    out = {}
    for event in sorted(evs.values(), key=lambda e: e.timestamp):
        if event.type.value in TERMINAL:
            out.setdefault(event.source, []).append(event)
    return out


def run(inst, uploads, faults=0, timeout=3600, seed=None, kill_when=None, log=print):
    """Send all ``uploads`` at once, kill the daemon ``faults`` times at random moments (or once when
    ``kill_when(event files)`` first holds), re-upload what a kill ended, until every upload is final
    (or ``timeout``). Returns the figures of the run (see :func:`check`)."""
    rng = random.Random(seed)
    stop = threading.Event()
    collector, sampler = SseCollector(inst), StatusSampler(inst)
    collector.start()
    sampler.start()
    started = time.monotonic()
    threads = [threading.Thread(target=u.send, args=(inst, stop), daemon=True) for u in uploads]
    for t in threads:
        t.start()
    next_kill = time.monotonic() + rng.uniform(3, 30) if faults else None
    kill_done = False
    pending = list(uploads)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        time.sleep(1)
        evs = inst.event_files()
        terminal = _terminal_by_source(evs)
        for u in list(pending):
            if not u.sent:
                continue
            after = [e for e in terminal.get(u.source, []) if e.timestamp > u.sent[-1]]
            if not after:
                continue
            u.final = after[-1]
            if u.final.type.value == ("INSTALLED" if u.good else "REJECTED"):
                pending.remove(u)
            elif inst.kills and u.good:  # a kill ended it: the same upload again
                u.resent += 1
                log(f"  re-upload {u.source} (ended {u.final.type.value} after a kill)")
                threading.Thread(target=u.send, args=(inst, stop), daemon=True).start()
                u.sent.append(now())  # the new send's events come after this moment (its own time replaces it)
            else:
                pending.remove(u)  # final, but not what it should be: check() says so
        if pending and next_kill is not None and inst.kills < faults and time.monotonic() >= next_kill:
            inst.kill_and_restart()
            log(f"  kill {inst.kills}/{faults} at {time.monotonic() - started:.0f}s, restarted")
            next_kill = time.monotonic() + rng.uniform(3, 30)
        if kill_when is not None and not kill_done and kill_when(evs):
            inst.kill_and_restart()
            kill_done = True
            log(f"  kill at {time.monotonic() - started:.0f}s, restarted")
    elapsed = time.monotonic() - started
    stop.set()
    sampler.stop.set()
    time.sleep(3)  # the last events reach the stream
    collector.close()
    sampler.join(60)
    return {"elapsed": elapsed, "timed_out": bool(pending), "pending": [u.source for u in pending],
            "collector": collector, "sampler": sampler}


def check(inst, uploads, result, faults=False):
    """The checks of the module documentation; ``(figures, mismatches)`` (lists of lines)."""
    mismatches = []
    evs = inst.event_files()
    by_source = {}
    for event in evs.values():
        by_source.setdefault(event.source, []).append(event)
    listed = inst.reprepro("list", DIST)
    versions = {line.split()[1]: line.split()[2] for line in listed.stdout.splitlines() if ": " in line and len(line.split()) >= 3}
    for u in uploads:
        mine = sorted(by_source.get(u.source, []), key=lambda e: e.timestamp)
        types = [e.type.value for e in mine]
        terminal = [t for t in types if t in TERMINAL]
        if u.good:
            if types.count("INSTALLED") != 1:
                mismatches.append(f"MISMATCH {u.source}: {types.count('INSTALLED')} INSTALLED events ({terminal})")
            if versions.get(u.source) != u.version:
                mismatches.append(f"MISMATCH {u.source}: in {DIST}: {versions.get(u.source)}, want {u.version}")
            if not faults and terminal != ["INSTALLED"]:
                mismatches.append(f"MISMATCH {u.source}: terminal events {terminal} (no kills: one INSTALLED)")
        else:
            if set(terminal) != {"REJECTED"} or "PACKAGING" in types:
                mismatches.append(f"MISMATCH {u.source} ({u.kind}): events {types}")
            if not faults and len(terminal) != 1:
                mismatches.append(f"MISMATCH {u.source} ({u.kind}): {len(terminal)} terminal events (no kills: one)")
            for e in mine:
                detail = (e.extra.get("error") or {}).get("detail", "") if e.type.value == "REJECTED" else ""
                if e.type.value == "REJECTED" and not re.search(u.reason, str(detail)):
                    mismatches.append(f"MISMATCH {u.source} ({u.kind}): reason {detail!r} !~ {u.reason}")
        # nothing left ongoing: every PACKAGING has its terminal event in its key directory
        for e in mine:
            if e.type.value == "PACKAGING" and not any(o.type.value in ("INSTALLED", "FAILED") and o.key == e.key for o in mine):
                mismatches.append(f"MISMATCH {u.source}: PACKAGING {e.key} left ongoing")
    if result["timed_out"]:
        mismatches.append(f"MISMATCH not final within the time limit: {' '.join(result['pending'])}")
    # no event lost: the stream and the event files agree
    collector = result["collector"]
    streamed = set(collector.events)
    saved = set(evs)
    for event_id in sorted(saved - streamed):
        mismatches.append(f"MISMATCH event file not streamed: {event_id} {evs[event_id].one_liner()}")
    for event_id in sorted(streamed - saved):
        mismatches.append(f"MISMATCH streamed event without file: {event_id} {collector.events[event_id]['type']}")
    for event_id in sorted(saved & streamed):
        if collector.events[event_id] != evs[event_id].to_json():
            mismatches.append(f"MISMATCH streamed event differs from its file: {event_id}")
    if collector.duplicates:
        mismatches.append(f"MISMATCH {len(collector.duplicates)} event(s) streamed twice: {collector.duplicates[:5]}")
    for cmd in ("check", "checkpool"):
        proc = inst.reprepro(cmd)
        if proc.returncode != 0:
            mismatches.append(f"MISMATCH reprepro {cmd}: {proc.returncode} {(proc.stdout + proc.stderr)[-500:]}")
    if (inst.home / "var" / "journal" / "test").exists():
        mismatches.append("MISMATCH repository journal left (var/journal/test)")

    good = [u for u in uploads if u.good]
    sampler = result["sampler"]
    lat = sorted(sampler.latencies)
    counts = {}
    for event in evs.values():
        counts[event.type.value] = counts.get(event.type.value, 0) + 1
    figures = [
        f"uploads: {len(good)} good, {len(uploads) - len(good)} bad; build slots {inst.slots}; kills {inst.kills}",
        f"total time: {result['elapsed']:.1f} s (first upload to every upload final)",
        f"throughput: {len(good) / result['elapsed'] * 60:.2f} packages INSTALLED/min, "
        f"{len(uploads) / result['elapsed'] * 60:.2f} uploads final/min",
        f"status calls: {len(lat)} answered, {sampler.failures} failed (daemon down during kills); latency "
        f"p50 {percentile(lat, 50) * 1000:.1f} ms, p99 {percentile(lat, 99) * 1000:.1f} ms, max {(lat[-1] if lat else float('nan')) * 1000:.1f} ms",
        f"events: {len(saved)} files, {len(streamed)} streamed ({collector.reconnects} stream reconnects); by type: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
        f"re-uploads after a kill: {sum(u.resent for u in uploads)}; FTP sessions cut or refused: {sum(len(u.ftp_errors) for u in uploads)}",
        f"INSTALLED exactly once: {sum(1 for u in good if [e.type.value for e in by_source.get(u.source, [])].count('INSTALLED') == 1)}/{len(good)}; "
        f"bad REJECTED with their reason: {sum(1 for u in uploads if not u.good and u.final is not None and u.final.type.value == 'REJECTED')}"
        f"/{len(uploads) - len(good)}",
    ]
    for u in uploads:
        if not u.good and u.final is not None:
            detail = " ".join(str((u.final.extra.get("error") or {}).get("detail", "")).split())
            figures.append(f"  {u.source}: {u.final.type.value}: {detail[:110]}")
    return figures, mismatches
