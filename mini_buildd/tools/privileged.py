"""The daemon side of root actions: one function per operation of :mod:`mini_buildd.roothelper`.

A daemon running as its own user (as the package runs it) calls ``sudo -n
mini-buildd-chroot-helper OPERATION ...`` (:func:`mini_buildd.config.chroot_helper`); a daemon
running as root (tests, a hand-started instance) runs the same operation in-process, with the
same argument parsing and checks. Callers get :class:`PrivilegeError` (or
:class:`mini_buildd.tools.debootstrap.DebootstrapError` for a failed debootstrap) with the helper's
one-line reason.
"""

import logging
import os

from mini_buildd.tools import call, debootstrap
from mini_buildd import config, errors, roothelper

LOG = logging.getLogger(__name__)

SUDO = "sudo"


class PrivilegeError(errors.ToolError):
    """A root action was refused or failed."""


def _helper_message(output):
    lines = [line for line in (output or "").strip().splitlines() if line.strip()]
    error_lines = [line for line in lines if "mini-buildd-chroot-helper: error:" in line]
    return (error_lines[-1].split("error:", 1)[1].strip() if error_lines else (lines[-1] if lines else "")), lines


def run(*argv, text=None):
    """Run root helper operation ``argv`` (strings); return its output."""
    argv = [str(a) for a in argv]
    if os.geteuid() == 0:
        try:
            return roothelper.run(argv, roothelper.Caller(0), text=text)
        except roothelper.HelperError as e:
            raise PrivilegeError(str(e)) from e
    command = [SUDO, "-n", str(config.chroot_helper())] + argv
    try:
        return call.run(command, input=text, log_level=logging.INFO)
    except call.CallError as e:
        message, lines = _helper_message(e.output)
        if e.returncode == 3:
            raise debootstrap.DebootstrapError(message.splitlines()[0] if message else "debootstrap failed",
                                               "\n".join(lines[-debootstrap.LOG_TAIL_LINES:])) from e
        if "password is required" in e.output or "not allowed to execute" in e.output or "sudoers" in e.output:
            message = (f"sudo refused to run {config.chroot_helper()} (is the sudoers rule of the mini-buildd package, "
                       f"/etc/sudoers.d/mini-buildd-sudoers, installed, and sudo's '@includedir /etc/sudoers.d' in place?): {message}")
        raise PrivilegeError(f"Root helper '{argv[0]}' failed: {message}") from e


def _chroot_args(chroot_dir):
    """``--home H --codename C --arch A`` of ``chroot_dir`` = ``H/var/chroots/C/A``."""
    chroot_dir = os.path.realpath(chroot_dir)
    arch_dir, codename_dir = os.path.basename(chroot_dir), os.path.dirname(chroot_dir)
    home = os.path.dirname(os.path.dirname(os.path.dirname(codename_dir)))
    if os.path.realpath(config.chroots_dir(home)) != os.path.dirname(codename_dir):
        raise PrivilegeError(f"Chroot dir '{chroot_dir}' is not HOME/var/chroots/CODENAME/ARCH.")
    return ["--home", home, "--codename", os.path.basename(codename_dir), "--arch", arch_dir]


def make_chroot_dir(chroot_dir):
    run("make-dir", *_chroot_args(chroot_dir))


def populate(chroot_dir, subdir, archive_url, keyring_path, variant="buildd", command=debootstrap.DEFAULT_COMMAND,
             extra_options=(), base_tarball=None):
    """Populate a chroot directory with debootstrap (or from a base tarball), as root via the helper."""
    argv = ["populate", *_chroot_args(chroot_dir), "--subdir", subdir, "--archive", archive_url,
            "--variant", variant, "--command", command]
    if keyring_path:
        argv += ["--keyring", keyring_path]
    for option in extra_options:
        argv.append(f"--option={option}")
    if base_tarball:
        argv += ["--base-tarball", base_tarball]
    run(*argv)


def pack(chroot_dir, compression):
    run("pack", *_chroot_args(chroot_dir), "--compression", compression)


def remove_data(chroot_dir, part="all"):
    run("remove", *_chroot_args(chroot_dir), "--part", part)


def install_conf(home, name, text):
    run("install-conf", "--home", home, "--name", name, text=text)


def remove_conf(home, name):
    run("remove-conf", "--home", home, "--name", name)


def install_fstab(home, name, binds):
    run("install-fstab", "--home", home, "--name", name, *[f"--bind={b}" for b in binds])


def remove_fstab(home, name):
    run("remove-fstab", "--home", home, "--name", name)


def cache_tarball(codename, arch, archive_url, keyring_path=None, variant="buildd", refresh=False):
    """Create (or refresh) the cached debootstrap tarball of a codename/arch; return its path."""
    argv = ["cache-tarball", "--codename", codename, "--arch", arch, "--archive", archive_url, "--variant", variant]
    if keyring_path:
        argv += ["--keyring", keyring_path]
    if refresh:
        argv.append("--refresh")
    return run(*argv).strip().splitlines()[-1]
