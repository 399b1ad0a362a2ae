"""The host side of the daemon as an attacker on the same machine would try it (issue #12 items 4
and 7): one daemon per home (a second one touches nothing of the first), the home and its
secrets private to the daemon's user, and passwords never on a command line (``ps``)."""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import os
import pathlib
import signal
import socket
import stat
import subprocess
import threading
import time

import pytest
import requests

from tests.helpers.daemon import Daemon, PYTHON, ROOT, free_port, in_home, mbd_command, run_mbd
from tests.helpers.packages import tree_digest
from tests.helpers.smtp import running_smtp_server

PASSWORD = "Host-Sec-pw-7d1e"


def _mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def _cmdlines():
    """{pid: command line} of every process now."""
    result = {}
    for p in pathlib.Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                result[int(p.name)] = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                pass
    return result


class CmdlineWatch:
    """Samples every process's command line in a thread until stopped: what ``ps`` could show."""

    def __init__(self, secrets):
        self.secrets = secrets
        self.seen = {}  # pid -> cmdline (every one seen)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for pid, line in _cmdlines().items():
                self.seen.setdefault((pid, line), line)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)

    def leaks(self):
        return sorted({line for line in self.seen.values() if any(s in line for s in self.secrets)})

    def saw(self, text):
        return any(text in line for line in self.seen.values())


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def _set_password_stdin(home, password=PASSWORD):
    return subprocess.run(mbd_command(home, "--set-admin-password-file", "-"), cwd=ROOT, input=password + "\n",
                          capture_output=True, text=True, timeout=120, check=False)


def _status(d):
    r = requests.get(d.url + "/mini_buildd/api/status/", params={"output": "json"}, timeout=10)
    r.raise_for_status()
    return r.json()


# ---------------------------------------------------------------------------------------------
# Item 7: one daemon per home
# ---------------------------------------------------------------------------------------------

def test_second_daemon_on_same_home_exits_naming_the_first_and_touches_nothing(home):
    assert _set_password_stdin(home).returncode == 0
    with Daemon(home) as a:
        before_status = _status(a)
        lock_before = (home / ".mini-buildd.lock").read_text()
        assert lock_before.strip() == str(a.proc.pid)
        before = {k: v for k, v in tree_digest(home).items() if not k.startswith("var/log/")}
        entries_before = sorted(str(p.relative_to(home)) for p in home.rglob("*") if not str(p.relative_to(home)).startswith("var/log/"))

        # The attack: a second daemon on the same home, on another port.
        b_port = free_port()
        b = subprocess.run(mbd_command(home, "--hostname", "127.0.0.1", "--http-endpoint", f"tcp:interface=127.0.0.1:port={b_port}"),
                           cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
        assert b.returncode == 1, (b.stdout, b.stderr)
        lines = b.stderr.strip().splitlines()
        assert len(lines) == 1 and b.stdout == "", b.stderr
        assert str(a.proc.pid) in lines[0] and "in use" in lines[0], lines[0]
        assert "Traceback" not in b.stderr

        # A is unharmed: still running, still serving status on its port; B never bound its port.
        assert a.proc.poll() is None
        assert _status(a)["identity"] == before_status["identity"]
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", b_port), timeout=2).close()
        # ... and not one of A's files (logs aside, which A writes itself) was touched.
        assert (home / ".mini-buildd.lock").read_text() == lock_before
        assert {k: v for k, v in tree_digest(home).items() if not k.startswith("var/log/")} == before
        assert sorted(str(p.relative_to(home)) for p in home.rglob("*") if not str(p.relative_to(home)).startswith("var/log/")) == entries_before
        assert "Traceback" not in a.output()
    assert a.proc.returncode == 0


def test_home_lock_released_on_stop_and_stale_lock_file_ignored(home):
    assert _set_password_stdin(home).returncode == 0
    (home / ".mini-buildd.lock").write_text("999999\n")  # left by a crashed daemon: not locked
    with Daemon(home) as a:
        assert (home / ".mini-buildd.lock").read_text().strip() == str(a.proc.pid)
    with Daemon(home) as again:  # A's lock went with A
        assert _status(again)


# ---------------------------------------------------------------------------------------------
# Item 4: the home's secrets are private
# ---------------------------------------------------------------------------------------------

SETUP_KEY = """
daemon = models.Daemon.get()
daemon.gnupg_template = "Key-Type: EdDSA\\nKey-Curve: ed25519\\nKey-Usage: sign\\nExpire-Date: 0"
daemon.save()
daemon.mbd_prepare()
"""


def test_secrets_private_on_new_home(home):
    assert _set_password_stdin(home).returncode == 0
    in_home(home, SETUP_KEY)
    with Daemon(home) as d:
        _status(d)
        assert _mode(home) == 0o700
        assert _mode(home / ".gnupg") == 0o700
        for name in ("config.sqlite", "config.sqlite-wal", "config.sqlite-shm", "config.sqlite-journal", ".django_secret_key"):
            if (home / name).exists():
                assert _mode(home / name) == 0o600, name
        assert _mode(home / "config.sqlite") == 0o600
        gnupg_files = [p for p in (home / ".gnupg").rglob("*") if p.is_file() and not p.is_symlink()]
        assert gnupg_files, "no key made"
        assert {str(p): _mode(p) for p in gnupg_files if _mode(p) & 0o077} == {}


def test_secrets_of_existing_loose_home_fixed_at_start(home):
    """An attacker's view: a home made under a loose umask (or by an older version) has
    world-readable secrets; the daemon makes them private before serving."""
    assert _set_password_stdin(home).returncode == 0
    in_home(home, SETUP_KEY)
    (home / "admin-password").write_text(PASSWORD + "\n")
    loose = [home / "config.sqlite", home / ".django_secret_key", home / "admin-password"]
    loose += [p for p in (home / ".gnupg").rglob("*") if p.is_file() and not p.is_symlink()]
    os.chmod(home, 0o755)
    for p in [home / ".gnupg"] + [p for p in (home / ".gnupg").rglob("*") if p.is_dir()]:
        os.chmod(p, 0o755)
    for p in loose:
        os.chmod(p, 0o644)
    assert all(_mode(p) & 0o044 for p in loose)  # the attack's starting point: readable by all
    with Daemon(home) as d:
        _status(d)
        assert _mode(home) == 0o700
        assert {str(p): _mode(p) for p in loose if _mode(p) != 0o600} == {}
        assert {str(p): _mode(p) for p in (home / ".gnupg").rglob("*") if p.is_dir() and _mode(p) != 0o700} == {}
        assert _mode(home / ".gnupg") == 0o700


def test_other_user_cannot_read_the_database(home):
    """As user 'nobody': reading the configuration database (sessions, password hashes) fails."""
    assert _set_password_stdin(home).returncode == 0
    with Daemon(home):
        for target in (home / "config.sqlite", home / ".django_secret_key"):
            r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat", str(target)],
                               capture_output=True, text=True, timeout=30, check=False)
            assert r.returncode != 0 and "Permission denied" in r.stderr, (target, r.stdout[:80], r.stderr)


# ---------------------------------------------------------------------------------------------
# Item 4: passwords never on a command line
# ---------------------------------------------------------------------------------------------

def test_admin_password_from_file_or_stdin(home, tmp_path):
    pw_file = tmp_path / "pw"
    pw_file.write_text("From-File-pw1\n")
    os.chmod(pw_file, 0o600)
    with CmdlineWatch(["From-File-pw1", PASSWORD]) as watch:
        r = run_mbd(home, "--set-admin-password-file", str(pw_file))
        assert r.returncode == 0, r.stderr
        assert "warning" not in r.stderr
        with Daemon(home) as d:
            d.session("admin", "From-File-pw1")
        r = _set_password_stdin(home)
        assert r.returncode == 0, r.stderr
        with Daemon(home) as d:
            d.session("admin", PASSWORD)
    assert watch.saw("--set-admin-password-file"), "the watch did not see the command: it could not have failed"
    assert watch.leaks() == []


def test_deprecated_password_options_warn(home):
    r = run_mbd(home, "--set-admin-password", "Old-Style-pw2")
    assert r.returncode == 0
    assert "deprecated" in r.stderr and "--set-admin-password-file" in r.stderr
    r = run_mbd(home, "--smtp", "u:Old-Smtp-pw@smtp://127.0.0.1:1", "--set-admin-password-file", os.devnull)
    assert r.returncode == 1  # empty password file: refused ...
    assert "no admin password" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--set-admin-password-file", "/nonexistent/pw"], "can't read the admin password"),
    (["--set-admin-password-file", "-", "--set-admin-password", "x"], "only one of"),
    (["--smtp-password-file", "/nonexistent/pw", "--smtp", "u:@smtp://127.0.0.1:25"], "can't read the SMTP password"),
    (["--smtp-password-file", os.devnull], "no SMTP password"),
    (["--smtp", "u:inline@smtp://127.0.0.1:25", "--smtp-password-file", "-"], "has a password"),
])
def test_bad_password_options_one_line(home, args, message):
    r = subprocess.run(mbd_command(home, *args), cwd=ROOT, input="some-pw\n", capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len([line for line in r.stderr.splitlines() if line.startswith("mini-buildd: error")]) == 1
    assert not home.exists(), "a refused start touched the home"


def test_smtp_password_from_file_reaches_the_server_not_ps(home, tmp_path):
    assert _set_password_stdin(home).returncode == 0
    in_home(home, "from django.contrib.auth.models import User; User.objects.create_user('alice', 'alice@example.org', 'x')")
    with running_smtp_server() as smtp:
        smtp.credentials = ("mbd", "Smtp-Secret-pw3")
        pw_file = tmp_path / "smtp-pw"
        pw_file.write_text("Smtp-Secret-pw3\n")
        with CmdlineWatch(["Smtp-Secret-pw3"]) as watch:
            with Daemon(home, extra_args=["--smtp", f"mbd:@smtp://127.0.0.1:{smtp.server_address[1]}",
                                          "--smtp-password-file", str(pw_file)]) as d:
                s = requests.Session()
                s.get(d.url + "/accounts/password_reset/", timeout=10)
                r = s.post(d.url + "/accounts/password_reset/", timeout=30,
                           data={"email": "alice@example.org", "csrfmiddlewaretoken": s.cookies["csrftoken"]},
                           headers={"Referer": d.url + "/accounts/password_reset/"})
                assert r.status_code in (200, 302), r.status_code
                deadline = time.monotonic() + 30
                while not smtp.mails and time.monotonic() < deadline:
                    time.sleep(0.2)
        assert ("mbd", "Smtp-Secret-pw3") in smtp.logins
        assert smtp.mails and smtp.mails[0][1] == ["alice@example.org"]
    assert watch.saw("--smtp-password-file")
    assert watch.leaks() == []


def test_make_run_passes_no_password_on_a_command_line(tmp_path):
    """Start the daemon the way ``make run`` does (its real recipe; deps and bootstrap skipped)
    and watch every process's command line meanwhile."""
    run_home = tmp_path / "run-home"
    run_home.mkdir()
    (run_home / ".bootstrapped").touch()
    port = free_port()
    with CmdlineWatch([]) as watch:
        make = subprocess.Popen(["make", "--no-print-directory", "-o", "deps", "run", f"RUN_HOME={run_home}",  # pylint: disable=consider-using-with
                                 f"RUN_PORT={port}", "RUN_HOSTNAME=127.0.0.1"],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            url = f"http://127.0.0.1:{port}"
            while True:
                assert make.poll() is None, make.stdout.read()
                try:
                    requests.get(url + "/accounts/null/", timeout=2)
                    break
                except requests.RequestException:
                    assert time.monotonic() < deadline, "make run: no daemon"
                    time.sleep(0.2)
            password = (run_home / "admin-password").read_text().strip()
            assert _mode(run_home / "admin-password") == 0o600
            assert _mode(run_home) == 0o700
            d = Daemon(run_home, port=port)
            d.session("admin", password)  # the password set by make run works
        finally:
            daemon_pids = [pid for pid, line in _cmdlines().items()
                           if f"--home {run_home} " in line and line.startswith(PYTHON)]
            for pid in daemon_pids:
                os.kill(pid, signal.SIGTERM)
            try:
                out, _ = make.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(make.pid, signal.SIGKILL)
                out, _ = make.communicate()
    watch.secrets = [password]
    assert watch.saw("--set-admin-password-file"), "the watch did not see the password step: it could not have failed"
    assert watch.leaks() == [], out
    assert password not in out


# ---------------------------------------------------------------------------------------------
# Item 3 (host part): chroot fstabs bind nothing of the home but the chroot's ccache dir
# ---------------------------------------------------------------------------------------------

def test_old_fstab_binding_all_of_var_shared_is_confined_at_start(home):
    """A chroot made before confinement binds all of var/shared into every build: the daemon's
    start rewrites its fstab to bind the chroot's ccache dir only."""
    from mini_buildd import config  # pylint: disable=import-outside-toplevel
    from mini_buildd.tools import schroot  # pylint: disable=import-outside-toplevel
    if os.geteuid() != 0:
        pytest.skip("writes below /etc/schroot")
    prefix = f"mbdhostsec{os.getpid()}"
    name = f"{prefix}-bookworm-amd64"
    other = f"{prefix}x-bookworm-amd64"  # another instance's chroot: left alone
    paths = config.Paths(home)
    paths.create()
    (paths.home / "etc" / "schroot-prefix").write_text(prefix + "\n")
    try:
        schroot.install_fstab(paths.shared, name)
        schroot.install_fstab(paths.shared, other)
        assert paths.shared in schroot.bind_sources(name)  # the attack surface: all of var/shared
        r = run_mbd(home, "--set-admin-password-file", os.devnull)  # refused (empty) before the home is used
        assert r.returncode == 1
        with Daemon(home):
            pass
        ccache = paths.ccache_dir("bookworm", "amd64")
        assert schroot.bind_sources(name) == [ccache]
        assert ccache.is_dir()
        assert schroot.bind_sources(other) == [paths.shared]
        text = schroot.fstab_path(name).read_text()
        assert f"{paths.shared}\t" not in text and f"{paths.home}/var/shared/builds" not in text
    finally:
        schroot.remove_fstab(name)
        schroot.remove_fstab(other)
