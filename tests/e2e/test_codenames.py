"""Codenames, the Debian Developer layout on sid and ``remake_chroots`` with the real daemon, sbuild,
schroot, reprepro and apt (owns: tests/e2e/test_codenames.py; issue #15 "Codenames", "Layouts"
(Debian Developer), "Chroots" (remake_chroots)).

One instance of its own, bootstrapped by the real ``setup`` and run as the unprivileged user the
Debian package runs the daemon as (:mod:`tests.helpers.unprivileged`), on loopback address
:data:`HOST` with schroot prefix ``mbd-cnPID``:

- repository ``test`` for bookworm and trixie (``test:Default:bookworm+trixie``), a Dir chroot for
  each: an upload to each codename's unstable builds in that codename's own chroot (the build log
  names the schroot session of ``PREFIX-CODENAME-amd64``) and is INSTALLED; the API call ``port``
  from bookworm-test-unstable to trixie-test-unstable builds the port in the trixie chroot and
  installs it; ``sources_list`` of each codename, used in a clean tree of that codename (unpacked
  from its cached debootstrap tarball) with the instance's key as the source's ``signed-by``
  keyring, lets apt install the packages (signature verified, no ``trusted=yes``);
- repository ``debdev`` (``debdev::sid``: setup's default layout for ``debdev`` is "Debian
  Developer", upstream §3.3) for sid with a sid chroot, when the host's archive carries sid (else
  those tests skip, saying so; when the host's sid Release has expired, a frozen mirror, the sid
  Source is made with ``check_valid_until`` off before setup, the option its failed check names,
  which setup keeps): setup gives it the Debian keyring as extra uploader keyring; the
  test then allows unauthenticated uploads on it through the models (as test_remotes does for
  ``test``: no Debian Developer key here); an upload whose changelog names the meta distribution
  ``unstable`` lands in sid-debdev-unstable and migrates to testing, then stable;
- ``remake_chroots`` (admin, confirmed) for trixie:amd64 removes the chroot and makes it again
  (a marker file planted in its base tree is gone, the chroot is checked again), and a build in it
  afterwards is INSTALLED.

Time: ``remake_chroots`` runs first, before any upload (a maintenance call stops the engine and
cancels builds); then the bookworm, trixie and sid packages go out together (they build side by
side in the build slots; the trixie one is the build in the remade chroot) and each test waits for
its own. Teardown: daemon stopped, every chroot
removed, and no schroot config, chroot, session or mount with the prefix left (asserted).
"""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import datetime
import email.utils
import os
import pathlib
import re
import shutil
import subprocess
import time

import pytest
import requests

from mini_buildd.tools import gnupg
from tests.helpers import host_archive, package_tree
from tests.helpers.daemon import Daemon, free_port, in_home, run_mbd
from tests.helpers.instance import ADMIN_PASSWORD, Instance, admin_api as api, wait_engine_running
from tests.helpers.packages import dput, make_source_package, now_iso, wait_event, write_dput_cf
from tests.helpers.remote_instances import ED25519
from tests.helpers.unprivileged import UnprivilegedUser

#: This module's loopback address (its own: other modules run beside it).
HOST = "127.0.0.21"
PREFIX = f"mbd-cn{os.getpid()}"
ARCH = "amd64"

#: (source, version, distribution in the changelog): the first uploads (:meth:`CodenamesInstance.first_uploads`).
BOOKWORM_PKG = ("mbd-cn-bookworm", "1.0~test12+1", "bookworm-test-unstable")
TRIXIE_PKG = ("mbd-cn-trixie", "1.0~test13+1", "trixie-test-unstable")
SID_PKG = ("mbd-cn-debdev", "1.0+dd1", "unstable")


class CodenamesInstance(Instance):
    """The module's instance: what :class:`tests.helpers.instance.Instance` has, plus whether sid
    is in it and when the first uploads went out."""

    has_sid = False
    sid_reason = ""
    #: The first uploads' time (events are followed from there).
    uploaded = None
    #: Where the packages are made.
    work = None
    #: What the fixture read of repository debdev after setup: "LAYOUT | KEYRINGS", status.
    debdev_setup = ""
    #: The version of the port to trixie, once test_port made it.
    port_version = None

    def django(self, code):
        """Django ``code`` in the home, as the instance's user, with the instance's host name."""
        return in_home(self.home, code, unpriv=self.unpriv, hostname=self.host)

    def upload(self, workdir, name, version, dist):
        """Make source package ``name`` ``version`` for ``dist`` in ``workdir`` and dput it (anonymous FTP)."""
        workdir = pathlib.Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        changes = make_source_package(workdir, name, version, dist)
        cf = write_dput_cf(workdir / "dput.cf", "cn", f"{self.host}:{self.ftp_port}")
        proc = dput(cf, "cn", changes)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def first_uploads(self):
        """Upload the bookworm, trixie (and sid) packages together, once (they build side by side)."""
        if self.uploaded is None:
            wait_engine_running(self)
            self.uploaded = now_iso()
            for name, version, dist in [BOOKWORM_PKG, TRIXIE_PKG] + ([SID_PKG] if self.has_sid else []):
                self.upload(self.work / name, name, version, dist)
        return self.uploaded

    def build_log(self, name, version):
        logs = sorted((self.home / "var" / "shared" / "builds" / name / version).glob(f"*/{ARCH}/*.buildlog"))
        assert logs, f"no build log of {name} {version}"
        return logs[-1].read_text(encoding="utf-8", errors="replace")


def sid_expired():
    """``Valid-Until`` of the host archive's sid Release when it lies in the past (a frozen mirror), else None."""
    release = requests.get(f"{host_archive.archive_url('sid')}/dists/sid/Release", timeout=30).text
    match = re.search(r"^Valid-Until: (.*)$", release, re.M)
    if match and email.utils.parsedate_to_datetime(match.group(1)) < datetime.datetime.now(datetime.timezone.utc):
        return match.group(1)
    return None


def _leftovers():
    """Schroot configs, chroots, sessions and mounts that carry this module's prefix."""
    configs = [p.name for p in pathlib.Path("/etc/schroot/chroot.d").glob(f"{PREFIX}-*")]
    configs += [p.name for p in pathlib.Path("/etc/schroot/mini-buildd").glob(f"*{PREFIX}-*")]
    listed = subprocess.run(["schroot", "--list", "--all"], capture_output=True, text=True, check=False).stdout
    mounts = [line for line in pathlib.Path("/proc/mounts").read_text(encoding="utf-8").splitlines() if PREFIX in line]
    return configs + [line for line in listed.splitlines() if PREFIX in line] + mounts


@pytest.fixture(scope="module")
def cn(tmp_path_factory):
    """The running instance (bookworm, trixie, sid if the host's archive has it)."""
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests need root")
    has_sid = package_tree.archive_has("sid")
    sources, dists, chroots, repos = ["bookworm", "trixie"], ["bookworm:amd64", "trixie:amd64"], \
        ["bookworm:amd64", "trixie:amd64"], ["test:Default:bookworm+trixie"]
    if has_sid:
        sources, dists, chroots, repos = sources + ["sid"], dists + ["sid:amd64"], chroots + ["sid:amd64"], repos + ["debdev::sid"]
    with UnprivilegedUser() as unpriv:
        inst = CodenamesInstance(unpriv.make_home(), free_port(HOST), free_port(HOST), host=HOST, unpriv=unpriv)
        inst.work = tmp_path_factory.mktemp("codenames")
        inst.has_sid = has_sid
        inst.sid_reason = "" if has_sid else "the host's apt archive does not carry sid (no dists/sid/Release)"
        result = run_mbd(inst.home, "--set-admin-password-file", "-", unpriv=unpriv, input=ADMIN_PASSWORD + "\n")
        assert result.returncode == 0, result.stdout + result.stderr
        try:
            inst.django(f"d = models.Daemon.get()\nd.gnupg_template = {ED25519!r}\nd.identity = 'mbdcn'\nd.save()")
            if has_sid and sid_expired():
                # A frozen mirror's sid Release has expired: the Source option its check failure
                # names (setup keeps it: not one of its fields), as a user with such a mirror does.
                inst.django("models.Source.objects.create(origin='Debian', codename='sid', check_valid_until=False)")
            code, inst.setup_result, err = inst.setup(
                "--schroot-prefix", PREFIX, "--archives-from-apt-sources", "--sources", *sources, "--distributions", *dists,
                "--repositories", *repos, "--chroots", *chroots, "--update", "all", "--pca", "all", hostname=HOST)
            assert code == 0, f"setup failed ({code}):\n{inst.setup_result}\n{err[-3000:]}"
            if has_sid:
                out = inst.django("r = models.Repository.objects.get(identity='debdev')\n"
                                  "print(r.layout.name, '|', r.extra_uploader_keyrings.strip())\n"
                                  "r.allow_unauthenticated_uploads = True\nr.save()\nr.mbd_pca()\n"
                                  "print(r.mbd_status_display())")
                inst.debdev_setup = out
            inst.daemon = Daemon(inst.home, port=inst.http_port, host=HOST, endpoints=[inst.http_endpoint], unpriv=unpriv)
            inst.daemon.ftp_port = inst.ftp_port
            inst.daemon.start()
            wait_engine_running(inst)
            yield inst
        finally:
            if inst.daemon is not None:
                inst.daemon.stop()
            log = inst.home / "var" / "log" / "daemon.log"
            if log.exists():  # kept for the record: the home goes with the user
                shutil.copy(log, inst.work / "daemon.log")
            if (inst.home / "config.sqlite").exists():
                inst.django("for c in models.Chroot.mbd_concrete_all(): c.mbd_remove()")
            gnupg.kill_agents(inst.home / ".gnupg")
    assert not _leftovers(), _leftovers()
    assert not [line for line in pathlib.Path("/proc/mounts").read_text(encoding="utf-8").splitlines() if str(inst.home) in line]


def ls(inst, source, repository="test"):
    """{distribution: version} of ``source`` in ``repository`` (the API call ``ls``: the daemon's
    reprepro calls wait for each other, a test's own would race with them)."""
    return {d: e["version"] for d, e in api(inst, "ls", source=source, repositories=repository).get(repository, {}).items()}


def _installed(inst, name, version, dist, timeout=1200):
    event = wait_event(inst.url, ("INSTALLED", "FAILED", "REJECTED"), name, version, timeout=timeout, after=inst.first_uploads())
    assert event["type"] == "INSTALLED", event["extra"].get("error") or event
    assert event["distribution"] == dist, event
    return event


def _built_in(inst, name, version, codename, dist):
    """The build log of ``name`` ``version`` shows a session of the codename's own chroot."""
    log = inst.build_log(name, version)
    assert re.search(rf"-c {re.escape(PREFIX)}-{codename}-{ARCH}-[0-9a-f-]{{36}} ", log), log[:3000]
    other = {"bookworm", "trixie", "sid"} - {codename}
    assert not any(f"{PREFIX}-{c}-{ARCH}" in log for c in other), log[:3000]
    assert f"Distribution: {dist}\n" in log, log[:3000]
    return log


# ------------------------------------------------------------------------------------------------ remake_chroots
def _chroot_state(cn, key):
    codename, arch = key.split(":")
    return cn.django(f"c = next(c for c in models.Chroot.mbd_concrete_all() if str(c) == {key!r})\n"
                     f"print(c.mbd_status_display(), '|', c.last_checked.isoformat())").strip().splitlines()[-1], \
        cn.home / "var" / "chroots" / codename / arch / "source"


def test_remake_chroots_rebuilds_the_trixie_chroot_and_it_builds(cn):
    """First (no build may run: remake_chroots is a maintenance call, it stops the engine); the
    module's trixie upload, sent after it, is the build in the remade chroot."""
    key = "trixie:amd64"
    assert cn.uploaded is None, "remake_chroots must come before the first uploads"
    before, source_dir = _chroot_state(cn, key)
    assert before.lower().startswith("active"), before
    conf = pathlib.Path("/etc/schroot/chroot.d") / f"{PREFIX}-trixie-amd64.conf"
    assert conf.is_file() and (source_dir / "etc" / "os-release").is_file()
    marker = source_dir / "etc" / "mbd-remake-marker"
    marker.write_text("made before remake_chroots\n", encoding="utf-8")
    time.sleep(1)  # last_checked has a resolution: the remake's check must come later
    assert api(cn, "remake_chroots", keys=key) == {key: "Success"}
    after, _ = _chroot_state(cn, key)
    assert after.lower().startswith("active"), after
    assert after.split(" | ")[1] > before.split(" | ")[1], (before, after)
    assert not marker.exists(), "the chroot's base tree was not made again"
    assert conf.is_file() and "trixie" in (source_dir / "etc" / "os-release").read_text(encoding="utf-8")
    # the daemon's log of the call: the trixie chroot (only) removed, prepared, checked, activated
    log = (cn.home / "var" / "log" / "daemon.log").read_text(encoding="utf-8", errors="replace")
    call = re.search(r"Maintenance call 'remake_chroots': stopping the engine\.\n(.*)Maintenance call 'remake_chroots' done", log, re.S)
    assert call, log[-5000:]
    steps = [m.group(1) for m in re.finditer(r"chroot 'trixie:amd64': (\w+)\.", call.group(1))]
    assert steps == ["deactivated", "removed", "prepared", "checked", "activated"], steps
    assert f"Removed chroot {PREFIX}-trixie-amd64\n" in call.group(1) and f"Prepared chroot {PREFIX}-trixie-amd64\n" in call.group(1)
    assert not re.search(r"chroot '(bookworm|sid):amd64'", call.group(1)), call.group(1)
    # a build in the remade chroot
    name, version, dist = TRIXIE_PKG
    _installed(cn, name, version, dist)
    _built_in(cn, name, version, "trixie", dist)


# ------------------------------------------------------------------------------------------------ codenames
def test_upload_to_each_codename_builds_in_its_own_chroot_and_installs(cn):
    for (name, version, dist), codename in ((BOOKWORM_PKG, "bookworm"), (TRIXIE_PKG, "trixie")):
        _installed(cn, name, version, dist)
        _built_in(cn, name, version, codename, dist)
        assert ls(cn, name) == {dist: version}
    # one repository serves both codenames
    status = requests.get(f"{cn.url}/mini_buildd/api/status/", params={"with_repositories": "True"}, timeout=30).json()
    assert {"bookworm:amd64", "trixie:amd64"} <= set(status["chroots"]), status
    assert sorted(status["repositories"]["test"]["codenames"]) == ["bookworm", "trixie"], status


def test_port_from_bookworm_to_trixie_builds_the_port_in_trixie(cn):
    name, version, dist = BOOKWORM_PKG
    _installed(cn, name, version, dist)
    result = api(cn, "port", source=name, from_distribution=dist, to_distributions="trixie-test-unstable")
    assert len(result) == 1 and result[0]["distribution"] == "trixie-test-unstable", result
    port_version = result[0]["version"]
    assert re.search(r"~test13\+[1-9]", port_version), result
    _installed(cn, name, port_version, "trixie-test-unstable")
    _built_in(cn, name, port_version, "trixie", "trixie-test-unstable")
    assert ls(cn, name) == {dist: version, "trixie-test-unstable": port_version}
    cn.port_version = port_version


def _apt_installs(cn, tmp_path, codename, packages):
    """In a clean ``codename`` tree: the instance's key as signed-by keyring of the ``sources_list``
    lines of the codename, apt update (signature verified) and install ``packages`` ({name: version})."""
    key = api(cn, "pub_key")
    lines = api(cn, "sources_list", codenames=codename, repositories="test", suites="unstable",
                options="signed-by=/etc/apt/keyrings/mbdcn.asc")
    assert f"/repositories/test {codename}-test-unstable " in lines and "trusted" not in lines, lines
    assert not re.search(r"\b(bookworm|trixie|sid)-test", lines.replace(f"{codename}-test", "")), lines
    with package_tree.Tree(tmp_path / codename, codename) as tree:
        tree.write("etc/apt/keyrings/mbdcn.asc", key)
        tree.write("etc/apt/sources.list.d/mbdcn.list", lines)
        update = tree.apt_get("update")
        assert "NO_PUBKEY" not in update.stdout + update.stderr and f"{codename}-test-unstable InRelease" in update.stdout, update.stdout
        tree.apt_get("install", "--no-install-recommends", *[f"{p}={v}" for p, v in packages.items()])
        for p, v in packages.items():
            assert tree.dpkg_version(p) == v
            assert tree.file(f"usr/share/{p}/hello.txt").is_file()


def test_sources_list_of_each_codename_installs_with_apt_in_a_clean_tree(cn, tmp_path):
    for name, version, dist in (BOOKWORM_PKG, TRIXIE_PKG):
        _installed(cn, name, version, dist)
    trixie = {TRIXIE_PKG[0]: TRIXIE_PKG[1]}
    if cn.port_version:
        trixie[BOOKWORM_PKG[0]] = cn.port_version
    _apt_installs(cn, tmp_path, "bookworm", {BOOKWORM_PKG[0]: BOOKWORM_PKG[1]})
    _apt_installs(cn, tmp_path, "trixie", trixie)


# ------------------------------------------------------------------------------------------------ Debian Developer on sid
def test_setup_makes_debdev_with_the_debian_developer_layout_on_sid(cn):
    if not cn.has_sid:
        pytest.skip(cn.sid_reason)
    layout, keyrings = cn.debdev_setup.splitlines()[0].split(" | ")
    assert layout == "Debian Developer" and keyrings == "/usr/share/keyrings/debian-keyring.gpg", cn.debdev_setup
    assert cn.debdev_setup.splitlines()[-1].lower().startswith("active"), cn.debdev_setup
    uploaders = api(cn, "uploaders", repositories="debdev")["debdev"]
    assert uploaders["extra_uploader_keyrings"] == ["/usr/share/keyrings/debian-keyring.gpg"], uploaders
    status = requests.get(f"{cn.url}/mini_buildd/api/status/", params={"with_repositories": "True"}, timeout=30).json()
    assert status["repositories"]["debdev"]["codenames"] == ["sid"], status
    layout = status["repositories"]["debdev"]["layout"]
    assert set(layout) == {"stable", "testing", "unstable", "experimental"}, status
    assert (layout["unstable"]["migrates_to"], layout["testing"]["migrates_to"]) == ("testing", "stable"), layout
    assert "sid:amd64" in status["chroots"], status


def test_upload_to_meta_unstable_lands_in_sid_debdev_unstable_and_migrates(cn):
    if not cn.has_sid:
        pytest.skip(cn.sid_reason)
    name, version, _meta = SID_PKG
    _installed(cn, name, version, "sid-debdev-unstable")
    _built_in(cn, name, version, "sid", "sid-debdev-unstable")
    assert ls(cn, name, repository="debdev") == {"sid-debdev-unstable": version}
    api(cn, "migrate", source=name, distribution="sid-debdev-unstable")
    assert ls(cn, name, repository="debdev") == {"sid-debdev-unstable": version, "sid-debdev-testing": version}
    api(cn, "migrate", source=name, distribution="sid-debdev-testing")
    assert ls(cn, name, repository="debdev") == {"sid-debdev-unstable": version, "sid-debdev-testing": version,
                                                 "sid-debdev-stable": version}
