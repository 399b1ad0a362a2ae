"""End-to-end test of the Debian packages as users install them (owns: tests/e2e/test_package_install.py).

For each codename (bookworm, then trixie if the host's archive carries it), in one clean
debootstrapped tree (see :mod:`tests.helpers.package_tree`), in this order:

1. the packages, built once per session from a clean copy of the work tree, are installed with
   apt from a local file repository (debconf answers preseeded when the package has templates);
2. the daemon is started the way ``mini-buildd.service`` starts it (ExecStart, User,
   EnvironmentFile of the installed unit) and answers ``status`` (the tree's ``mini-buildd-api``);
3. it is bootstrapped with the ``setup`` API call (host archive, the tree's codename, repository
   ``test``, and its chroot when the package ships the root helper);
4. an unsigned upload (``mini-buildd-dput``) is built and INSTALLED, and apt in a second clean
   tree installs the binary from the instance's archive (verified with the instance's key);
5. ``dpkg-reconfigure mini-buildd`` with new answers changes the admin password and the port;
6. an upgrade to a rebuilt higher version keeps the repository and its package;
7. booted with systemd (``systemd-nspawn -b``, if the host has it), the enabled unit starts the
   daemon and ``systemctl stop`` stops it cleanly;
8. ``apt-get purge mini-buildd`` leaves no home, no schroot config and no mounts.

A step whose prerequisites are not in the package yet is skipped with the reason; a step after a
failed one is skipped ("needs ...").

Needs root; the booted step needs ``systemd-nspawn`` on the host (package systemd-container).
Installs use ``--no-install-recommends`` (time) and name the built version (trixie's archive has
Debian's own, higher versioned mini-buildd). The daemon's chroot starts from the host's cached
base tarball, bind-mounted read-only into the tree (``MINI_BUILDD_DEBOOTSTRAP_CACHE=1`` in the
tree's /etc/default/mini-buildd). Logs stay in the test's temp dir (``daemon.log``, ``nspawn.log``,
a failed build's log).
"""

import json
import os
import pathlib
import re
import time

import pytest
import requests

from tests.helpers import host_archive, package_tree
from tests.helpers.daemon import free_port
from tests.helpers.packages import make_source_package, wait_event

CODENAMES = ("bookworm", "trixie")
CODEVERSIONS = {"bookworm": "12", "trixie": "13"}
ADMIN_PASSWORD = "pkg-Admin-pw1"
NEW_ADMIN_PASSWORD = "pkg-Admin-pw2"
UPGRADE_SUFFIX = "+test1"
LOCAL_REPO = "/srv/mbd-local-repo"
HELPER = "usr/sbin/mini-buildd-chroot-helper"
SOURCE = "mbd-pkg-hello"


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def builds(tmp_path_factory):
    """Both builds, in parallel: the installed version and the upgrade (version + UPGRADE_SUFFIX)."""
    if os.geteuid() != 0:
        pytest.skip("package install tests need root (chroot, mounts)")
    upgrade = package_tree.BackgroundBuild(tmp_path_factory.mktemp("pkg-build-upgrade"), UPGRADE_SUFFIX)
    first = package_tree.build_debs(tmp_path_factory.mktemp("pkg-build"))
    return first, upgrade


@pytest.fixture(scope="session")
def debs(builds):  # pylint: disable=redefined-outer-name
    return builds[0]


@pytest.fixture(scope="session")
def upgrade_debs(builds):  # pylint: disable=redefined-outer-name
    return builds[1].result()


class Installation:
    """One tree's state across the ordered steps."""

    def __init__(self, tree, repo, workdir, debs):  # pylint: disable=redefined-outer-name
        self.tree, self.repo, self.workdir, self.debs = tree, repo, workdir, debs
        self.codename = tree.codename
        self.http_port, self.ftp_port = free_port(), free_port()
        self.daemon = None
        self.done = set()
        self.built_version = None
        self.admin_password = ADMIN_PASSWORD
        self.base_tarball = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.http_port}"

    def need(self, *steps):
        missing = [s for s in steps if s not in self.done]
        if missing:
            pytest.skip(f"needs the step(s) {', '.join(missing)}, which did not pass")

    def new_daemon(self):
        self.daemon = package_tree.UnitDaemon(self.tree, self.url, self.workdir / "daemon.log")
        return self.daemon

    def api(self, call, *args, password=None, json_output=True, check=True, timeout=900):
        """Run the tree's ``mini-buildd-api`` (as root in the tree); parsed JSON (or text)."""
        endpoint = f"http://admin@127.0.0.1:{self.http_port}" if password else self.url
        argv = ["mini-buildd-api", call, endpoint, *args, "--script-mode"]
        if json_output:
            argv.append("--json")
        env = {"MINI_BUILDD_API_PASSWORD": password} if password else {}
        proc = self.tree.run(*argv, env=env, check=check, timeout=timeout)
        if not check and proc.returncode != 0:
            return proc
        return json.loads(proc.stdout) if json_output else proc.stdout

    def templates(self):
        """``{name: type}`` of the debconf templates of the mini-buildd package (installed, else built)."""
        path = self.tree.file("var/lib/dpkg/info/mini-buildd.templates")
        source = package_tree.source_copy(self.debs) / "debian" / "mini-buildd.templates"
        text = path.read_text(encoding="UTF-8") if path.exists() else source.read_text(encoding="UTF-8") if source.exists() else ""
        return dict(re.findall(r"^Template:\s*(\S+)\nType:\s*(\S+)", text, re.MULTILINE))


def install_args(version):
    """``mini-buildd=VERSION mini-buildd-utils=VERSION python3-mini-buildd=VERSION``: the archive may carry Debian's own, higher
    versioned mini-buildd (trixie: 2.x), which apt would prefer to the local repository's."""
    return [f"{package}={version}" for package in ("mini-buildd", "mini-buildd-utils", "python3-mini-buildd")]


def options_for(port):
    return f"--hostname 127.0.0.1 --http-endpoint tcp:interface=127.0.0.1:port={port}"


#: The debconf questions this test answers: template -> what it asks for.
QUESTIONS = {"mini-buildd/home": "home", "mini-buildd/admin_password": "password", "mini-buildd/options": "options"}


def preseed(inst, password, port):  # pylint: disable=redefined-outer-name
    """Preseed the package's debconf questions (home, admin password, extra options incl. the HTTP
    port) with ``debconf-set-selections`` in the tree; the names answered (empty: no templates yet)."""
    answers = {"home": "/var/lib/mini-buildd", "password": password, "options": options_for(port)}
    lines, answered = [], []
    for name, kind in inst.templates().items():
        if name in QUESTIONS:
            lines.append(f"mini-buildd {name} {kind} {answers[QUESTIONS[name]]}")
            lines.append(f"mini-buildd {name} seen true")
            answered.append(name)
    if lines:
        inst.tree.run("debconf-set-selections", stdin="\n".join(lines) + "\n")
    return answered


def configure_without_debconf(inst):  # pylint: disable=redefined-outer-name
    """What an administrator does by hand while the package asks nothing: options in
    /etc/default/mini-buildd, the admin password via the daemon command."""
    default = inst.tree.file("etc/default/mini-buildd")
    text = default.read_text(encoding="UTF-8")
    text = re.sub(r'^MINI_BUILDD_OPTIONS=.*$', f'MINI_BUILDD_OPTIONS="{options_for(inst.http_port)}"', text, flags=re.MULTILINE)
    default.write_text(text, encoding="UTF-8")
    inst.tree.run("runuser", "-u", "mini-buildd", "--", "/usr/sbin/mini-buildd", "--set-admin-password-file", "-",
                  stdin=inst.admin_password + "\n")


@pytest.fixture(scope="module", params=CODENAMES)
def inst(request, debs, tmp_path_factory):  # pylint: disable=redefined-outer-name
    """An Installation per codename: a tree with a local APT repository of the built packages; closed after."""
    codename = request.param
    if codename != "bookworm" and not package_tree.archive_has(codename):
        pytest.skip(f"the host's archive ({host_archive.archive_url(codename)}) does not carry {codename}")
    workdir = tmp_path_factory.mktemp(f"pkg-{codename}")
    tree = package_tree.Tree(workdir / "tree", codename)
    tree.open()
    installation = None
    try:
        base = tree.share_base_tarball()
        repo = package_tree.LocalRepo(tree.file(LOCAL_REPO), LOCAL_REPO)
        repo.replace(debs.values())
        tree.write("etc/apt/sources.list.d/mbd-local.list", repo.apt_line())
        installation = Installation(tree, repo, workdir, debs)
        installation.base_tarball = base
        yield installation
    finally:
        try:
            if installation and installation.daemon:
                installation.daemon.stop()
        finally:
            tree.close()


# ------------------------------------------------------------------------------------------------ steps
def test_install(inst):  # pylint: disable=redefined-outer-name
    answered = preseed(inst, inst.admin_password, inst.http_port)
    inst.tree.apt_get("update")
    version = package_tree.changelog_version(package_tree.source_copy(inst.debs) / "debian" / "changelog")
    inst.tree.apt_get("install", "--no-install-recommends", *install_args(version))
    for package in package_tree.PACKAGES:
        assert inst.tree.dpkg_version(package) == version, package
    user = inst.tree.passwd("mini-buildd")
    assert user and user[0] != 0, "no system user mini-buildd"
    home = inst.tree.file(user[2])
    assert home.is_dir() and home.stat().st_uid == user[0]
    assert inst.tree.run("mini-buildd", "--version").stdout.startswith("mini-buildd ")
    # Without systemd nothing was started at install time (and nothing failed because of that).
    assert not package_tree.processes_in(inst.tree.path), "processes left running by the installation"
    if answered:
        # postinst applied the preseeded answers: the options line, and the home is the answer.
        default = inst.tree.file("etc/default/mini-buildd").read_text(encoding="UTF-8")
        assert f'MINI_BUILDD_OPTIONS="{options_for(inst.http_port)}"' in default, default
        assert user[2] == "/var/lib/mini-buildd"
    else:
        configure_without_debconf(inst)
    # Chroots start from the cached base tarballs (the host's cache, shared): an administrator's own line
    # in the unit's EnvironmentFile.
    if inst.base_tarball:
        default = inst.tree.file("etc/default/mini-buildd")
        default.write_text(default.read_text(encoding="UTF-8") + "MINI_BUILDD_DEBOOTSTRAP_CACHE=1\n", encoding="UTF-8")
    inst.done.add("install")


def test_daemon_status(inst):  # pylint: disable=redefined-outer-name
    inst.need("install")
    user, env, argv = inst.new_daemon().command()
    assert user == "mini-buildd" and argv[0] == "/usr/sbin/mini-buildd"
    assert f"port={inst.http_port}" in " ".join(argv), f"the options do not reach the daemon: {argv} {env}"
    inst.daemon.start()
    status = inst.api("status")
    # Not set up yet: no engine (load -1).
    assert isinstance(status["load"], float) and status["url"] == inst.url, status
    assert _login(inst.url, inst.admin_password), "the admin password (debconf answer or set by hand) does not work"
    # The daemon runs as its dedicated user.
    pids = package_tree.processes_in(inst.tree.path)
    users = {int(line.split()[1]) for pid in pids for line in pathlib.Path(f"/proc/{pid}/status").read_text(encoding="UTF-8").splitlines()
             if line.startswith("Uid:")}
    assert users == {inst.tree.passwd("mini-buildd")[0]}, users
    inst.done.add("status")


def _has_helper(inst):  # pylint: disable=redefined-outer-name
    return inst.tree.file(HELPER).exists()


def test_setup(inst):  # pylint: disable=redefined-outer-name
    inst.need("status")
    c = inst.codename
    args = ["--update", "all", "--pca", "all", "--archives-from-apt-sources", "--sources", c,
            "--distributions", f"{c}:{host_archive.host_arch()}", "--repositories", f"test:Default:{c}",
            "--ftp-endpoint", f"tcp:interface=127.0.0.1:port={inst.ftp_port}", "--auto-confirm"]
    with_chroot = _has_helper(inst)
    if with_chroot:
        args += ["--chroots", f"{c}:{host_archive.host_arch()}"]
    started = time.time()
    result = inst.api("setup", *args, password=inst.admin_password, timeout=1500)
    statuses = {i["identity_str"]: i["status"] for i in result["instances"]}
    assert statuses.get("Repository(identity=test)") == "ACTIVE", statuses
    if with_chroot:
        assert statuses.get(f"DirChroot(codename={c}, architecture={host_archive.host_arch()})") == "ACTIVE", statuses
    # (archives and distributions have no status of their own: EXISTS)
    assert not [k for k, s in statuses.items() if s not in ("ACTIVE", "EXISTS")], statuses
    status = inst.api("status")
    assert status["load"] >= 0, status
    print(f"setup ({'with' if with_chroot else 'without'} chroot): {time.time() - started:.0f}s; status {status}")
    # The sources_list call names the repository.
    lines = inst.api("sources_list", "--repositories", "test", json_output=False)
    assert f"{inst.url}/repositories/test {c}-test-unstable main" in lines, lines
    inst.done.add("setup")
    if not with_chroot:
        pytest.skip(f"setup ran without a chroot: the package ships no /{HELPER} (the root helper) yet")
    inst.done.add("chroot")


def test_build_and_apt_install(inst, tmp_path):  # pylint: disable=redefined-outer-name
    inst.need("setup")
    if not _has_helper(inst):
        pytest.skip(f"no chroot to build in: the package ships no /{HELPER} (the root helper) yet")
    inst.need("chroot")
    c = inst.codename
    version = f"1.0~test{CODEVERSIONS[c]}+1"
    changes = make_source_package(tmp_path, SOURCE, version, f"{c}-test-unstable")
    upload = inst.tree.file("root/upload")
    upload.mkdir(parents=True, exist_ok=True)
    for path in tmp_path.iterdir():
        if path.is_file():
            (upload / path.name).write_bytes(path.read_bytes())
    dput_cf = inst.api("dput_conf", json_output=False)
    inst.tree.write("root/.dput.cf", dput_cf)
    target = next(s for s in re.findall(r"^\[([^\]]+)\]", dput_cf, re.MULTILINE) if s != "DEFAULT")
    started = time.time()
    proc = inst.tree.run("mini-buildd-dput", "-C", "--http", inst.url, target, f"/root/upload/{changes.name}", check=False,
                         timeout=1200)
    event = wait_event(inst.url, ("INSTALLED", "FAILED", "REJECTED"), SOURCE, version, timeout=60)
    if event["type"] != "INSTALLED":
        logs = ""
        for arch, result in event.get("extra", {}).get("buildresults", {}).items():
            if result.get("buildlog_installed"):
                log = requests.get(result["buildlog_installed"], timeout=30).text
                (inst.workdir / f"{SOURCE}_{arch}.buildlog").write_text(log, encoding="UTF-8")
                logs += f"\n--- build log {arch} (end):\n{log[-6000:]}"
        raise AssertionError(f"{event['type']}: {event.get('extra', {}).get('error')}\n{proc.stdout}\n{proc.stderr}{logs}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(f"upload -> INSTALLED: {time.time() - started:.0f}s")
    inst.built_version = version
    ls = inst.api("ls", SOURCE)
    assert version in json.dumps(ls), ls
    inst.done.add("build")

    # apt in a second clean tree installs the binary from the instance's archive, checked with its key.
    key = inst.api("pub_key", json_output=False)
    lines = inst.api("sources_list", "--repositories", "test", "--codenames", c, "--suites", "unstable",
                     "--options", "signed-by=/etc/apt/keyrings/mini-buildd-test.asc", json_output=False)
    with package_tree.Tree(tmp_path / "client", c) as client:
        client.write("etc/apt/keyrings/mini-buildd-test.asc", key)
        client.write("etc/apt/sources.list.d/mini-buildd-test.list", lines)
        client.apt_get("update")
        client.apt_get("install", SOURCE)
        assert client.dpkg_version(SOURCE) == version
        assert client.file(f"usr/share/{SOURCE}/hello.txt").read_text(encoding="UTF-8") == f"hello from {SOURCE} {version}\n"


def _login(url, password):
    s = requests.Session()
    s.get(url + "/accounts/login/", timeout=10)
    r = s.post(url + "/accounts/login/", timeout=10, headers={"Referer": url + "/accounts/login/"},
               data={"username": "admin", "password": password, "csrfmiddlewaretoken": s.cookies["csrftoken"],
                     "next": "/accounts/null/"})
    return r.url.endswith("/accounts/null/")


def test_reconfigure(inst):  # pylint: disable=redefined-outer-name
    inst.need("setup")
    templates = inst.templates()
    if not templates:
        pytest.skip("the package has no debconf templates yet (debian/mini-buildd.templates): nothing to reconfigure")
    assert _login(inst.url, inst.admin_password)
    new_port = free_port()
    inst.daemon.stop()
    # Bad answers first: a home below a regular file, unknown daemon options. Each is refused with
    # a message naming it; the previous configuration (home, options) stays as it was.
    default_before = inst.tree.file("etc/default/mini-buildd").read_text(encoding="UTF-8")
    home_before = inst.tree.run("getent", "passwd", "mini-buildd").stdout.split(":")[5]
    bad = "\n".join(["mini-buildd mini-buildd/home string /etc/passwd/mbd-home", "mini-buildd mini-buildd/home seen true",
                     "mini-buildd mini-buildd/options string --no-such-option", "mini-buildd mini-buildd/options seen true"])
    inst.tree.run("debconf-set-selections", stdin=bad + "\n")
    proc = inst.tree.run("dpkg-reconfigure", "-fnoninteractive", "mini-buildd", check=False)
    output = proc.stdout + proc.stderr
    assert "refused, previous configuration kept" in output and "/etc/passwd/mbd-home" in output, output
    assert "--no-such-option" in output, output
    assert inst.tree.run("getent", "passwd", "mini-buildd").stdout.split(":")[5] == home_before
    assert inst.tree.file("etc/default/mini-buildd").read_text(encoding="UTF-8") == default_before
    assert not inst.tree.file("etc/passwd").is_dir()
    answered = preseed(inst, NEW_ADMIN_PASSWORD, new_port)
    assert answered, templates
    inst.tree.run("dpkg-reconfigure", "-fnoninteractive", "mini-buildd")
    inst.admin_password, inst.http_port = NEW_ADMIN_PASSWORD, new_port
    inst.new_daemon().start()
    assert _login(inst.url, NEW_ADMIN_PASSWORD), "the new admin password does not work"
    assert not _login(inst.url, ADMIN_PASSWORD), "the old admin password still works"
    assert inst.api("status")["url"] == inst.url
    inst.done.add("reconfigure")


def test_upgrade(inst, upgrade_debs):  # pylint: disable=redefined-outer-name
    inst.need("setup")
    inst.daemon.stop()  # what the unit's prerm snippet does on a systemd host
    inst.repo.replace(upgrade_debs.values())
    inst.tree.apt_get("update")
    version = package_tree.changelog_version(package_tree.source_copy(upgrade_debs) / "debian" / "changelog")
    inst.tree.apt_get("install", "--no-install-recommends", *install_args(version))
    assert version.endswith(UPGRADE_SUFFIX)
    for package in package_tree.PACKAGES:
        assert inst.tree.dpkg_version(package) == version, package
    if inst.base_tarball:
        assert "MINI_BUILDD_DEBOOTSTRAP_CACHE=1" in inst.tree.file("etc/default/mini-buildd").read_text(encoding="UTF-8"), \
            "the upgrade lost the administrator's own line in /etc/default/mini-buildd"
    inst.new_daemon().start(engine=True)  # the database is migrated at start
    assert inst.api("status")["load"] >= 0
    assert _login(inst.url, inst.admin_password), "the admin password does not work after the upgrade"
    lines = inst.api("sources_list", "--repositories", "test", json_output=False)
    assert f"{inst.url}/repositories/test {inst.codename}-test-unstable main" in lines, lines
    release = requests.get(f"{inst.url}/repositories/test/dists/{inst.codename}-test-unstable/Release", timeout=30)
    assert release.status_code == 200 and f"Codename: {inst.codename}-test-unstable" in release.text
    if inst.built_version:
        assert inst.built_version in json.dumps(inst.api("ls", SOURCE))
    # Setup inspection after the upgrade: every instance is still there and active, nothing to change.
    c = inst.codename
    args = ["--archives-from-apt-sources", "--sources", c, "--distributions", f"{c}:{host_archive.host_arch()}",
            "--repositories", f"test:Default:{c}", "--ftp-endpoint", f"tcp:interface=127.0.0.1:port={inst.ftp_port}",
            "--auto-confirm"]
    if "chroot" in inst.done:
        args += ["--chroots", f"{c}:{host_archive.host_arch()}"]
    result = inst.api("setup", *args, password=inst.admin_password)
    assert all(i["status"] in ("ACTIVE", "EXISTS") and not i["actions"] for i in result["instances"]), \
        [(i["identity_str"], i["status"], i["actions"]) for i in result["instances"]]
    inst.done.add("upgrade")


def test_systemd_boot(inst):  # pylint: disable=redefined-outer-name
    """The tree booted with systemd (systemd-nspawn -b): the unit the package enabled starts the daemon
    at boot, as its user, with the configured options; systemctl stops it cleanly."""
    inst.need("setup")
    if not package_tree.nspawn_available():
        pytest.skip("systemd-nspawn is not installed on this host (package systemd-container): no booted variant")
    inst.daemon.stop()
    inst.tree.apt_get("install", "--no-install-recommends", "systemd", "systemd-sysv", "dbus")
    wants = inst.tree.file("etc/systemd/system/multi-user.target.wants/mini-buildd.service")
    assert wants.is_symlink(), "the package did not enable mini-buildd.service"
    inst.tree.unmount_own(keep=[m for m in inst.tree.own_mounts if "/var/cache/" in m])
    try:
        with package_tree.Booted(inst.tree, inst.workdir / "nspawn.log") as booted:
            deadline, state = time.time() + 90, ""
            while time.time() < deadline:
                state = booted.run("systemctl", "is-active", "mini-buildd", check=False).stdout.strip()
                try:  # the HTTP server answers first; the engine starts in a thread after it (load -1 until then)
                    answer = requests.get(f"{inst.url}/mini_buildd/api/status/", timeout=5) if state == "active" else None
                    if answer is not None and answer.status_code == 200 and answer.json()["load"] >= 0:
                        break
                except (requests.RequestException, ValueError, KeyError):
                    pass
                time.sleep(0.5)
            journal = booted.run("journalctl", "--no-pager", "-u", "mini-buildd", check=False).stdout
            assert state == "active", f"mini-buildd.service is {state}:\n{journal[-4000:]}"
            status = requests.get(f"{inst.url}/mini_buildd/api/status/", timeout=10).json()
            assert status["load"] >= 0 and status["url"] == inst.url, status
            pid = booted.run("systemctl", "show", "--property=MainPID", "--value", "mini-buildd").stdout.strip()
            assert booted.run("stat", "-c", "%U", f"/proc/{pid}").stdout.strip() == "mini-buildd"
            lines = booted.run("mini-buildd-api", "sources_list", inst.url, "--repositories", "test").stdout
            assert f"{inst.url}/repositories/test {inst.codename}-test-unstable main" in lines, lines
            booted.run("systemctl", "stop", "mini-buildd", timeout=180)
            result = booted.run("systemctl", "show", "--property=Result", "--value", "mini-buildd").stdout.strip()
            assert result == "success", f"stop: {result}\n{journal[-4000:]}"
    finally:
        inst.tree.mount_base()
    inst.done.add("boot")


def test_purge(inst):  # pylint: disable=redefined-outer-name
    inst.need("install")
    if inst.daemon:
        inst.daemon.stop()
    home = inst.tree.passwd("mini-buildd")[2]
    inst.tree.apt_get("purge", "mini-buildd")
    assert inst.tree.dpkg_version("mini-buildd") is None
    assert not inst.tree.file(home).exists(), f"home {home} left after purge: {sorted(os.listdir(inst.tree.file(home)))}"
    left = sorted(p.name for p in inst.tree.file("etc/schroot/chroot.d").glob("mini-buildd-*"))
    left += sorted(p.name for p in inst.tree.file("etc/schroot/mini-buildd").glob("fstab-mini-buildd-*"))
    assert not left, f"schroot configuration left after purge: {left}"
    assert not inst.tree.foreign_mounts(), f"mounts left below the tree: {inst.tree.foreign_mounts()}"
    left = {pid: pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            for pid in package_tree.processes_in(inst.tree.path)}
    assert not left, f"processes left in the tree after purge: {left}"
