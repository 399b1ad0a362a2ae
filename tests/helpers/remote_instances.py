"""Test helper: several instances on one host, each on its own loopback address with the same
port numbers (as separate hosts would be), separate homes and their own schroot prefix, for the
distributed building tests. Chroots get per-instance names, so the host chroot lock is not needed.
"""

import pathlib
import signal
import time

from mini_buildd.tools import gnupg
from tests.helpers.daemon import Daemon, free_port, in_home, service_addresses
from tests.helpers.setup_run import run_setup

ED25519 = "Key-Type: EdDSA\nKey-Curve: ed25519\nKey-Usage: sign\nExpire-Date: 0"


def our_daemon_with_key(django_db_blocker):
    """The test process's Daemon (the database of the running tests), given an ed25519 key once."""
    from mini_buildd import models  # pylint: disable=import-outside-toplevel  # Django is set up by the tests first
    with django_db_blocker.unblock():
        daemon = models.Daemon.get()
        if daemon.gnupg().get_secret_key() is None:
            daemon.gnupg_template = ED25519
            daemon.save()
            daemon.mbd_prepare()
        return daemon


def common_ports(hosts, count=2):
    """``count`` consecutive port numbers free on every one of ``hosts`` (see :func:`tests.helpers.daemon.free_port`)."""
    base = free_port(count=count, hosts=hosts)
    return [base + i for i in range(count)]


class RemoteInstance:
    """One instance: ``name`` (identity), loopback ``host``, home, schroot prefix, daemon."""

    def __init__(self, name, host, root, http_port, ftp_port, schroot_prefix):
        self.name, self.host = name, host
        self.home = pathlib.Path(root) / name / "home"
        self.home.parent.mkdir(parents=True, exist_ok=True)
        self.http_port, self.ftp_port = http_port, ftp_port
        self.http_endpoint, self.ftp_endpoint, self.url, self.ftp_url = service_addresses(host, http_port, ftp_port)
        self.schroot_prefix = schroot_prefix
        self.daemon = None
        self.stopped = False

    def django(self, code, timeout=600):
        return in_home(self.home, code, timeout=timeout, hostname=self.host)

    def setup(self, *args, check=False):
        return run_setup(self.home, "--schroot-prefix", self.schroot_prefix, "--ftp-endpoint", self.ftp_endpoint, *args,
                         http_endpoint=self.http_endpoint, hostname=self.host, check=check)

    def bootstrap(self, *args):
        """Daemon with a fast ed25519 key and identity ``name``, then setup ``args`` (update + pca all)."""
        self.django(f"d = models.Daemon.get()\nd.gnupg_template = {ED25519!r}\nd.identity = {self.name!r}\nd.save()")
        return self.setup(*args, "--update", "all", "--pca", "all", check=True)

    def add_remote(self, other):
        """Create a Remote for ``other`` (setup ``--remotes``) and PCA just that one; return its status display."""
        _code, result, _err = self.setup("--remotes", other.url, "--update", "all", check=True)
        target = next(i for i in result["instances"] if i["identity"]["class"] == "Remote"
                      and i["identity"]["identifiers"]["http"] == other.url)
        _code, result, _err = self.setup("--remotes", other.url, "--pca", target["identity_hash"], check=True)
        return next(i for i in result["instances"] if i["identity_hash"] == target["identity_hash"])

    def remote_status(self, other):
        out = self.django(f"r = models.Remote.objects.get(http={other.url!r})\nprint(r.mbd_status_display())\n"
                          "print(r.status_message)")
        return out.strip()

    def start(self, env=None):
        """Start the daemon with ``env`` added to its environment (not to this process's: several
        instances start from threads at once; changing ``os.environ`` there once left bench mode
        switched on for every daemon a later test started)."""
        self.daemon = Daemon(self.home, port=self.http_port, host=self.host, endpoints=[self.http_endpoint],
                             extra_args=["--schroot-prefix", self.schroot_prefix], env=env)
        self.daemon.start()
        return self

    def pause(self):
        """SIGSTOP the daemon (it holds its builds but answers nothing)."""
        self.daemon.proc.send_signal(signal.SIGSTOP)
        self.stopped = True

    def resume(self):
        if self.stopped and self.daemon and self.daemon.proc.poll() is None:
            self.daemon.proc.send_signal(signal.SIGCONT)
        self.stopped = False

    def log_text(self):
        path = self.home / "var" / "log" / "daemon.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def teardown(self):
        """Daemon stopped, chroots removed, gpg agents gone."""
        self.resume()
        if self.daemon is not None:
            self.daemon.stop()
        if (self.home / "config.sqlite").exists():
            self.django("for c in models.Chroot.mbd_concrete_all(): c.mbd_remove()")
        gnupg.kill_agents(self.home / ".gnupg")


def wait_until(predicate, timeout, interval=1.0, what="condition"):
    """The first true value of ``predicate()``, polled every ``interval`` s; fails after ``timeout`` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s")
