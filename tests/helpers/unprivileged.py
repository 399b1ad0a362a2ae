"""Test helper: run mini-buildd as an unprivileged user, the way the Debian package runs it.

The package's daemon runs as system user ``mini-buildd`` and does everything that needs root
through ``sudo -n /usr/sbin/mini-buildd-chroot-helper`` (debian/system/mini-buildd-sudoers).
:class:`UnprivilegedUser` sets up the same for a test run, without installing the package:

- system user :data:`USER` (member of group ``sbuild``, like the package's postinst does);
- a root-owned copy of the ``mini_buildd`` package in a world-readable dir (the user may not
  be able to read the source tree, e.g. below /root; and the root helper must run code the
  user cannot change);
- a root helper script next to it and a sudoers rule letting :data:`USER` run exactly that
  script as root (removed again by :meth:`UnprivilegedUser.close`);
- :meth:`UnprivilegedUser.command`: an argv running a command as :data:`USER` with that code
  (``setpriv``: no intermediate process, so signals reach the daemon itself).
"""

import os
import pathlib
import shutil
import subprocess
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"

#: The unprivileged user test daemons run as.
USER = "mbd-test"

_HELPER_SCRIPT = """#!/usr/bin/python3 -I
# mini-buildd test run: the root helper from the copy of the code next to this file.
import sys
sys.path.insert(0, {code!r})
from mini_buildd import roothelper
sys.exit(roothelper.main())
"""


def _run(argv):
    subprocess.run(argv, check=True, capture_output=True, text=True)


def ensure_user(user=USER):
    """Create system user ``user`` (with its group) if missing; make it a member of group sbuild."""
    if subprocess.run(["getent", "passwd", user], capture_output=True, check=False).returncode != 0:
        _run(["adduser", "--system", "--group", "--no-create-home", "--home", "/nonexistent", "--quiet", user])
    _run(["adduser", "--quiet", user, "sbuild"])


class UnprivilegedUser:
    """See the module docstring. Use as a context manager (or call :meth:`close`)."""

    def __init__(self, user=USER):
        if os.geteuid() != 0:
            raise RuntimeError("setting up an unprivileged test user needs root")
        if not shutil.which("sudo"):
            raise RuntimeError("sudo is not installed (make test-deps)")
        self.user = user
        ensure_user(user)
        self.base = pathlib.Path(tempfile.mkdtemp(prefix="mbd-unpriv-"))
        os.chmod(self.base, 0o755)
        self.code = self.base / "code"
        shutil.copytree(ROOT / "mini_buildd", self.code / "mini_buildd", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        self.helper = self.base / "mini-buildd-chroot-helper"
        self.helper.write_text(_HELPER_SCRIPT.format(code=str(self.code)), encoding="utf-8")
        os.chmod(self.helper, 0o755)
        self.sudoers = pathlib.Path("/etc/sudoers.d") / f"mini-buildd-test-{os.getpid()}-{self.base.name[-8:].replace('.', '_')}"
        rule = f"Defaults:{user} !requiretty\n{user} ALL = (root) NOPASSWD: {self.helper}\n"
        tmp = self.base / "sudoers"
        tmp.write_text(rule, encoding="utf-8")
        _run(["visudo", "-c", "-q", "-f", str(tmp)])
        os.chmod(tmp, 0o440)
        shutil.move(str(tmp), str(self.sudoers))

    def env(self, home=None):
        """Environment entries for a process of the user (``env`` syntax)."""
        entries = [f"PYTHONPATH={self.code}", f"MINI_BUILDD_CHROOT_HELPER={self.helper}", "LC_ALL=C.UTF-8",
                   "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
        if home is not None:
            entries.append(f"HOME={home}")
        for name in ("MINI_BUILDD_DEBOOTSTRAP_CACHE", "MINI_BUILDD_FAULT", "PYTHONWARNINGS"):
            if name in os.environ:
                entries.append(f"{name}={os.environ[name]}")
        return entries

    def command(self, argv, home=None, extra_env=()):
        """``argv`` run as the user, with the copied code first on the Python path."""
        return ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--init-groups", "--",
                "env", *self.env(home), *extra_env, *[str(a) for a in argv]]

    def ids(self):
        """``(uid, gid)`` of the user."""
        import pwd  # pylint: disable=import-outside-toplevel
        entry = pwd.getpwnam(self.user)
        return entry.pw_uid, entry.pw_gid

    def make_home(self, name="home"):
        """A new, empty instance home owned by the user (in a dir it can reach)."""
        parent = pathlib.Path(tempfile.mkdtemp(prefix="mbd-home-", dir=self.base))
        os.chmod(parent, 0o755)
        home = parent / name
        home.mkdir(mode=0o700)
        shutil.chown(home, self.user, self.user)
        return home

    def close(self):
        self.sudoers.unlink(missing_ok=True)
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
