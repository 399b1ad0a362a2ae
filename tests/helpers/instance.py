"""The end-to-end instance shared by every e2e and browser test of a run: bootstrapped once with
the real ``setup`` (host archive, bookworm, repository ``test``, a Dir chroot from a cached
debootstrap tarball), then the real daemon with HTTP and FTP on loopback. Torn down at the end:
daemon stopped, chroot removed (no schroot config, session or mount left).

Setup, daemon and chroot removal run as an unprivileged user the way the Debian package runs
them (:mod:`tests.helpers.unprivileged`: root actions only through sudo and the root helper),
so a test that needs root to pass fails here as it would for users.

Only one process on a host may own the schroot name ``mini-buildd-bookworm-amd64`` at a time, so
the fixture holds :data:`HOST_LOCK` for its whole life: a second test run on the same host waits
instead of corrupting the first one's chroot. With ``MBD_E2E_SCHROOT_PREFIX`` set (``make check``
runs two groups of instance tests side by side), the instance uses that schroot prefix instead of
upstream's ``mini-buildd`` (its chroot is ``PREFIX-bookworm-amd64``), and its own lock."""

# pylint: disable=redefined-outer-name  # pytest passes each fixture as the parameter of its name

import contextlib
import fcntl
import os
import pathlib
import signal
import time

import pytest
import requests

from mini_buildd.tools import schroot
from tests.helpers.daemon import Daemon, in_home, free_port, run_mbd, service_addresses
from tests.helpers.setup_run import ACCEPTANCE, run_setup
from tests.helpers.smtp import running_smtp_server
from tests.helpers.unprivileged import UnprivilegedUser

ADMIN_PASSWORD = "e2e-Admin-pw"
#: On the Daemon's notify list; the instance mails to the fixture's SMTP sink (``instance.smtp``).
NOTIFY_ADDRESS = "archive-admin@example.org"
HOST_LOCK = pathlib.Path("/run/lock/mini-buildd-test-chroot.lock")
#: The schroot prefix of the instance (upstream's default unless ``MBD_E2E_SCHROOT_PREFIX``).
SCHROOT_PREFIX = os.environ.get("MBD_E2E_SCHROOT_PREFIX") or "mini-buildd"


def _lock_path(prefix):
    return HOST_LOCK if prefix == "mini-buildd" else HOST_LOCK.with_name(f"mini-buildd-test-chroot-{prefix}.lock")


@contextlib.contextmanager
def host_chroot_lock(prefix="mini-buildd"):
    """Exclusive, blocking host-wide lock for anything that creates the chroot names of ``prefix``."""
    lock = _lock_path(prefix)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Instance:
    """What e2e tests get: home, URLs, the first setup result, and the running daemon."""

    def __init__(self, home, http_port, ftp_port, host="127.0.0.1", unpriv=None):
        self.home = pathlib.Path(home)
        #: The unprivileged user the instance runs as (pass it on to Daemon, in_home, run_mbd).
        self.unpriv = unpriv
        self.host = host
        self.http_port, self.ftp_port = http_port, ftp_port
        self.http_endpoint, self.ftp_endpoint, self.url, self.ftp_url = service_addresses(host, http_port, ftp_port)
        self.setup_result = None
        self.daemon = None
        self.smtp = None
        self.schroot_prefix = SCHROOT_PREFIX
        #: The schroot name of the instance's chroot.
        self.chroot_name = f"{SCHROOT_PREFIX}-bookworm-amd64"

    def prefix_args(self):
        return [] if self.schroot_prefix == "mini-buildd" else ["--schroot-prefix", self.schroot_prefix]

    def setup(self, *args, **kwargs):
        return run_setup(self.home, *self.prefix_args(), *args, "--ftp-endpoint", self.ftp_endpoint, http_endpoint=self.http_endpoint,
                         unpriv=self.unpriv, **kwargs)

    def django(self, code):
        return in_home(self.home, code, unpriv=self.unpriv)

    def own(self, *paths):
        """Give ``paths`` (recursively) to the instance's user: what a test plants in the home as
        root must look like the daemon's own files."""
        if self.unpriv is None:
            return
        for path in paths:
            for p in [pathlib.Path(path)] + (list(pathlib.Path(path).rglob("*")) if pathlib.Path(path).is_dir() else []):
                os.lchown(p, *self.unpriv.ids())

    def restart_daemon(self, sig=signal.SIGTERM, **kwargs):
        """Stop the daemon (with ``sig``) and start a new one with the same user, endpoints and
        ``kwargs`` (default: the same extra arguments, e.g. ``--smtp``)."""
        old = self.daemon
        old.stop(sig=sig)
        self.daemon = Daemon(self.home, port=self.http_port, endpoints=[self.http_endpoint], unpriv=self.unpriv,
                             **{"extra_args": old.extra_args, **kwargs})
        self.daemon.ftp_port = self.ftp_port
        return self.daemon.start()


def admin_api(instance, call, **args):
    """JSON result of API ``call`` with ``args`` as admin (confirmed), over HTTP; fails the test unless 200."""
    s = instance.daemon.session("admin", ADMIN_PASSWORD)
    r = s.get(f"{instance.url}/mini_buildd/api/{call}/", params={**args, "confirm": call, "output": "json"}, timeout=600)
    assert r.status_code == 200, r.text
    return r.json()


def make_repository(instance, identity, layout="Default", prelude=""):
    """Repository ``identity`` (layout ``layout``, anonymous uploads) on the instance's bookworm
    distribution, prepared, checked and activated (``prelude``: model code run first, e.g. making the
    layout); fails the test unless it is Active. Returns ``identity``."""
    out = instance.django(prelude + f"""
repo, _ = models.Repository.objects.get_or_create(identity={identity!r}, defaults={{
    "layout": models.Layout.objects.get(name={layout!r}), "allow_unauthenticated_uploads": True}})
repo.distributions.set(models.Distribution.objects.filter(base_source__codename="bookworm"))
repo.mbd_pca()
print(repo.mbd_status_display())
""")
    assert out.strip().splitlines()[-1].lower().startswith("active"), out
    return identity


def wait_engine_running(instance, timeout=120):
    """The engine starts in the background after the daemon answers HTTP: wait for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if requests.get(f"{instance.url}/mini_buildd/api/status/", timeout=10).json()["load"] >= 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"engine not running after {timeout}s")


@pytest.fixture(scope="session")
def instance():
    """The e2e instance of the session: set up (acceptance setup), its daemon running as an unprivileged user; removed after."""
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests need root")
    with host_chroot_lock(SCHROOT_PREFIX), running_smtp_server() as smtp, UnprivilegedUser() as unpriv:
        inst = Instance(unpriv.make_home(), free_port(), free_port(), unpriv=unpriv)
        result = run_mbd(inst.home, "--set-admin-password-file", "-", unpriv=unpriv, input=ADMIN_PASSWORD + "\n")
        assert result.returncode == 0, result.stdout + result.stderr
        # From the setup on, whatever fails: the daemon stops and the chroot is removed (its schroot
        # config would keep the name from the next run).
        try:
            code, inst.setup_result, err = inst.setup(*ACCEPTANCE)
            assert code == 0, f"setup of the e2e instance failed ({code}):\n{inst.setup_result}\n{err[-3000:]}"
            inst.smtp = smtp
            # (flagged internal: an admin's m2m edit would mark the active Daemon changed)
            inst.django("d = models.Daemon.get(); d._mbd_internal_m2m = True; "
                        f"d.notify.add(models.EmailAddress.objects.create(address={NOTIFY_ADDRESS!r}))")
            assert "True" in inst.django("print(models.Daemon.get().mbd_is_active())")
            # The crontab's first run (a minute after every engine start) takes the timed snapshots that
            # are due: take them now, so no test that proves "nothing changed" sees them appear.
            inst.django("from mini_buildd.archive import snapshots; print(snapshots.run())")
            inst.daemon = Daemon(inst.home, port=inst.http_port, endpoints=[inst.http_endpoint], unpriv=unpriv,
                                 extra_args=["--smtp", f"smtp://127.0.0.1:{smtp.server_address[1]}", *inst.prefix_args()])
            inst.daemon.ftp_port = inst.ftp_port  # (re)starts wait for the engine's FTP server too
            inst.daemon.start()
            yield inst
        finally:
            if inst.daemon is not None:
                inst.daemon.stop()
            inst.django("for c in models.Chroot.mbd_concrete_all(): c.mbd_remove()")
        assert f"chroot:{inst.chroot_name}" not in schroot.list_chroots()
        assert not [s for s in schroot.list_sessions() if inst.chroot_name in s]
        assert not [line for line in pathlib.Path("/proc/mounts").read_text(encoding="utf-8").splitlines() if str(inst.home) in line]
