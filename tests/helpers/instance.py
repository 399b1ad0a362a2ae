"""The end-to-end instance shared by every e2e and browser test of a run: bootstrapped once with
the real ``setup`` (host archive, bookworm, repository ``test``, a Dir chroot from a cached
debootstrap tarball), then the real daemon with HTTP and FTP on loopback. Torn down at the end:
daemon stopped, chroot removed (no schroot config, session or mount left).

Only one process on a host may own the schroot name ``mini-buildd-bookworm-amd64`` at a time, so
the fixture holds :data:`HOST_LOCK` for its whole life: a second test run on the same host waits
instead of corrupting the first one's chroot."""

import contextlib
import fcntl
import os
import pathlib

import pytest

from mini_buildd import schroot
from tests.helpers.daemon import Daemon, in_home, free_port, run_mbd
from tests.helpers.setup_run import ACCEPTANCE, run_setup
from tests.helpers.smtp import running_smtp_server

ADMIN_PASSWORD = "e2e-Admin-pw"
#: On the Daemon's notify list; the instance mails to the fixture's SMTP sink (``instance.smtp``).
NOTIFY_ADDRESS = "archive-admin@example.org"
HOST_LOCK = pathlib.Path("/run/lock/mini-buildd-test-chroot.lock")


@contextlib.contextmanager
def host_chroot_lock():
    """Exclusive, blocking host-wide lock for anything that creates the shared chroot name."""
    HOST_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(HOST_LOCK, "w", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Instance:
    """What e2e tests get: home, URLs, the first setup result, and the running daemon."""

    def __init__(self, home, http_port, ftp_port, host="127.0.0.1"):
        self.home = pathlib.Path(home)
        self.host = host
        self.http_port, self.ftp_port = http_port, ftp_port
        self.http_endpoint = f"tcp:interface={host}:port={http_port}"
        self.ftp_endpoint = f"tcp:interface={host}:port={ftp_port}"
        self.url = f"http://{host}:{http_port}"
        self.ftp_url = f"ftp://{host}:{ftp_port}"
        self.setup_result = None
        self.daemon = None
        self.smtp = None

    def setup(self, *args, **kwargs):
        return run_setup(self.home, *args, "--ftp-endpoint", self.ftp_endpoint, http_endpoint=self.http_endpoint, **kwargs)

    def django(self, code):
        return in_home(self.home, code)


@pytest.fixture(scope="session")
def instance(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests need root")
    with host_chroot_lock(), running_smtp_server() as smtp:
        inst = Instance(tmp_path_factory.mktemp("e2e") / "home", free_port(), free_port())
        assert run_mbd(inst.home, "--set-admin-password", ADMIN_PASSWORD).returncode == 0
        code, inst.setup_result, err = inst.setup(*ACCEPTANCE)
        assert code == 0, f"setup of the e2e instance failed ({code}):\n{inst.setup_result}\n{err[-3000:]}"
        inst.smtp = smtp
        # (flagged internal: an admin's m2m edit would mark the active Daemon changed)
        inst.django("d = models.Daemon.get(); d._mbd_internal_m2m = True; "
                    f"d.notify.add(models.EmailAddress.objects.create(address={NOTIFY_ADDRESS!r}))")
        assert "True" in inst.django("print(models.Daemon.get().mbd_is_active())")
        inst.daemon = Daemon(inst.home, port=inst.http_port, endpoints=[inst.http_endpoint],
                             extra_args=["--smtp", f"smtp://127.0.0.1:{smtp.server_address[1]}"])
        inst.daemon.ftp_port = inst.ftp_port  # (re)starts wait for the engine's FTP server too
        inst.daemon.start()
        try:
            yield inst
        finally:
            inst.daemon.stop()
            inst.django("for c in models.Chroot.mbd_concrete_all(): c.mbd_remove()")
        assert "chroot:mini-buildd-bookworm-amd64" not in schroot.list_chroots()
        assert not [s for s in schroot.list_sessions() if "mini-buildd-bookworm-amd64" in s]
        assert not [line for line in pathlib.Path("/proc/mounts").read_text().splitlines() if str(inst.home) in line]
