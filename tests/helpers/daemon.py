"""Test helpers: run the real daemon in a temporary home, and run Django code against that home
in a separate process (the configuration is per process).

Everything takes an optional ``unpriv`` (:class:`tests.helpers.unprivileged.UnprivilegedUser`):
with it, the process runs as that user, as the Debian package runs the daemon (root actions
through sudo and the root helper); without, as root."""

import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import time

import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"


def service_addresses(host, http_port, ftp_port):
    """(HTTP endpoint, FTP endpoint, HTTP URL, FTP URL) of an instance's services on ``host``."""
    return (f"tcp:interface={host}:port={http_port}", f"tcp:interface={host}:port={ftp_port}",
            f"http://{host}:{http_port}", f"ftp://{host}:{ftp_port}")


#: Ports the tests' daemons listen on: below the kernel's range of ephemeral ports
#: (``net.ipv4.ip_local_port_range``, 32768-60999 by default). A port the kernel handed out (bind
#: to port 0) could be taken again as the source port of any outgoing connection between the pick
#: and the daemon's bind, which then failed with "Address already in use" (seen with seven groups
#: running side by side).
PORT_RANGE = (20000, 32700)
_RANDOM = random.SystemRandom()


def bindable(host, port):
    """Whether ``host``:``port`` can be bound (TCP) right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def free_port(host="127.0.0.1", count=1, hosts=None):
    """A free port (with ``count`` > 1: the first of ``count`` consecutive free ports) from
    :data:`PORT_RANGE`, on ``host`` (or on every one of ``hosts``)."""
    for _ in range(1000):
        base = _RANDOM.randrange(PORT_RANGE[0], PORT_RANGE[1] - count)
        if all(bindable(h, base + i) for h in (hosts or [host]) for i in range(count)):
            return base
    raise AssertionError(f"no free port in {PORT_RANGE} on {hosts or [host]}")


def user_of(unpriv):
    """The dedicated user of processes run with ``unpriv``."""
    return unpriv.user if unpriv is not None else "root"


def as_user(argv, unpriv=None, home=None, cwd=ROOT):
    """``(argv, cwd)`` to run ``argv`` as ``unpriv``'s user (or unchanged, as root)."""
    if unpriv is None:
        return list(argv), cwd
    return unpriv.command(argv, home=home), unpriv.code


def mbd_command(home, *args, unpriv=None):
    return as_user([PYTHON, "-m", "mini_buildd", "--home", str(home), "--dedicated-user", user_of(unpriv), *args], unpriv, home)[0]


def run_mbd(home, *args, timeout=120, unpriv=None, input=None):  # pylint: disable=redefined-builtin
    """Run the daemon command to completion (one-shot options); return CompletedProcess."""
    argv, cwd = as_user([PYTHON, "-m", "mini_buildd", "--home", str(home), "--dedicated-user", user_of(unpriv), *args], unpriv, home)
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, input=input)


#: Code (with ``models`` in scope): Source bookworm (never checked), Distribution bookworm (main,
#: amd64 building arch:all) and Repository ``test`` (Default layout) on it, in the database only (``repo``).
BOOKWORM_TEST_REPOSITORY_ROWS = """
source = models.Source.objects.create(origin="Debian", codename="bookworm")
arch, _ = models.Architecture.objects.get_or_create(name="amd64")
main, _ = models.Component.objects.get_or_create(name="main")
dist = models.Distribution.objects.create(base_source=source)
dist.components.add(main)
models.ArchitectureOption.objects.create(distribution=dist, architecture=arch, build_architecture_all=True)
repo = models.Repository.objects.create(identity="test", layout=models.Layout.objects.get(name="Default"))
repo.distributions.add(dist)
"""
#: Code for :func:`in_home`: the same, prepared (``repo``).
BOOKWORM_TEST_REPOSITORY = BOOKWORM_TEST_REPOSITORY_ROWS + "repo.mbd_prepare()\n"


def in_home(home, code, timeout=600, hostname="127.0.0.1", unpriv=None):
    """Run Python ``code`` with Django set up for ``home``; return its stdout (raises on failure)."""
    prelude = (
        "import sys\n"
        "from mini_buildd import config, webapp\n"
        f"paths = config.init({str(home)!r}, hostname={hostname!r}, dedicated_user={user_of(unpriv)!r})\n"
        "paths.create()\n"
        "webapp.setup(paths)\n"
        "webapp.migrate()\n"
        "from mini_buildd import models\n"
    )
    argv, cwd = as_user([PYTHON, "-c", prelude + code], unpriv, home)
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"in_home failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


class Daemon:
    """The real daemon as a subprocess; use as a context manager."""

    def __init__(self, home, port=None, host="127.0.0.1", endpoints=None, extra_args=(), scheme="http", verify=True, unpriv=None,
                 env=None):
        """``env``: added to the daemon's environment (never to this process's: instances are
        started from several threads at once, see :mod:`bench.builders.simnet`)."""
        self.home = pathlib.Path(home)
        self.env = dict(env or {})
        self.unpriv = unpriv
        self.host = host
        self.port = port or free_port(host)
        self.endpoints = endpoints or [f"tcp:interface={host}:port={self.port}"]
        self.extra_args = list(extra_args)
        self.proc = None
        self.url = f"{scheme}://{host}:{self.port}"
        self.verify = verify
        self.log = None

    def start(self, timeout=60):
        """Start the daemon (output in HOME-daemon.out); return self once HTTP (and FTP when set) answers."""
        args = ["--hostname", self.host]
        for ep in self.endpoints:
            args += ["--http-endpoint", ep]
        self.log = open(self.home.parent / f"{self.home.name}-daemon.out", "w", encoding="utf-8")  # pylint: disable=consider-using-with
        self.proc = subprocess.Popen(mbd_command(self.home, *args, *self.extra_args, unpriv=self.unpriv),  # pylint: disable=consider-using-with
                                     cwd=as_user([], self.unpriv)[1], env=dict(os.environ, **self.env),
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}: {self.output()}")
            try:
                requests.get(self.url + "/accounts/null/", timeout=2, verify=self.verify)
            except requests.RequestException:
                time.sleep(0.2)
                continue
            if self.ftp_port is None or self._ftp_answers():
                return self
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"daemon did not answer within {timeout}s: {self.output()}")

    #: Set (e.g. by the e2e instance) when the engine runs: :meth:`start` then also waits for its FTP server.
    ftp_port = None

    def _ftp_answers(self):
        try:
            with socket.create_connection((self.host, self.ftp_port), timeout=2) as sock:
                sock.recv(64)
            return True
        except OSError:
            return False

    def output(self):
        return (self.home.parent / f"{self.home.name}-daemon.out").read_text()

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Stop the daemon with ``sig`` (killed after ``timeout``); return its exit status."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
        return self.proc.returncode if self.proc else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def session(self, user=None, password=None):
        """A requests session, logged in through /accounts/login/ like API clients do."""
        s = requests.Session()
        if user:
            s.get(self.url + "/accounts/login/", timeout=10)
            r = s.post(self.url + "/accounts/login/", timeout=10,
                       data={"username": user, "password": password, "csrfmiddlewaretoken": s.cookies["csrftoken"],
                             "next": "/accounts/null/"}, headers={"Referer": self.url + "/accounts/login/"})
            if not r.url.endswith("/accounts/null/"):
                raise AssertionError(f"login as {user} failed: {r.url}")
        return s


def processes_mentioning(text):
    """PIDs whose command line mentions ``text``."""
    pids = []
    for p in pathlib.Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                if text in (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


__all__ = ["Daemon", "in_home", "run_mbd", "free_port", "processes_mentioning", "PYTHON", "ROOT", "sys"]
