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
from collections.abc import Iterable, Sequence
from typing import Optional

from mini_buildd.tools import call, debootstrap
from mini_buildd import config, errors, roothelper

LOG = logging.getLogger(__name__)

SUDO = "sudo"


class PrivilegeError(errors.ToolError):
    """A root action was refused or failed."""


def _helper_message(output: str) -> tuple[str, list[str]]:
    lines = [line for line in (output or "").strip().splitlines() if line.strip()]
    error_lines = [line for line in lines if "mini-buildd-chroot-helper: error:" in line]
    return (error_lines[-1].split("error:", 1)[1].strip() if error_lines else (lines[-1] if lines else "")), lines


def run(*argv: object, text: Optional[str] = None) -> str:
    """Run root helper operation ``argv`` (made strings); return its output."""
    args = [str(a) for a in argv]
    if os.geteuid() == 0:
        try:
            return roothelper.run(args, roothelper.Caller(0), text=text)
        except roothelper.HelperError as e:
            raise PrivilegeError(str(e)) from e
    command = [SUDO, "-n", str(config.chroot_helper())] + args
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
        raise PrivilegeError(f"Root helper '{args[0]}' failed: {message}") from e


def _chroot_args(chroot_dir: call.FsPath) -> list[str]:
    """``--home H --codename C --arch A`` of ``chroot_dir`` = ``H/var/chroots/C/A``."""
    real_dir = os.path.realpath(chroot_dir)
    arch_dir, codename_dir = os.path.basename(real_dir), os.path.dirname(real_dir)
    home = os.path.dirname(os.path.dirname(os.path.dirname(codename_dir)))
    if os.path.realpath(config.chroots_dir(home)) != os.path.dirname(codename_dir):
        raise PrivilegeError(f"Chroot dir '{real_dir}' is not HOME/var/chroots/CODENAME/ARCH.")
    return ["--home", home, "--codename", os.path.basename(codename_dir), "--arch", arch_dir]


def make_chroot_dir(chroot_dir: call.FsPath) -> None:
    run("make-dir", *_chroot_args(chroot_dir))


def populate(chroot_dir: call.FsPath, subdir: str, archive_url: str, keyring_path: Optional[call.FsPath], variant: str = "buildd",
             command: str = debootstrap.DEFAULT_COMMAND, extra_options: Iterable[str] = (), base_tarball: Optional[call.FsPath] = None) -> None:
    """Populate a chroot directory with debootstrap (or from a base tarball), as root via the helper."""
    argv: list[call.Arg] = ["populate", *_chroot_args(chroot_dir), "--subdir", subdir, "--archive", archive_url,
                            "--variant", variant, "--command", command]
    if keyring_path:
        argv += ["--keyring", keyring_path]
    for option in extra_options:
        argv.append(f"--option={option}")
    if base_tarball:
        argv += ["--base-tarball", base_tarball]
    run(*argv)


def pack(chroot_dir: call.FsPath, compression: str) -> None:
    run("pack", *_chroot_args(chroot_dir), "--compression", compression)


def remove_data(chroot_dir: call.FsPath, part: str = "all") -> None:
    run("remove", *_chroot_args(chroot_dir), "--part", part)


def install_conf(home: Optional[call.FsPath], name: str, text: str) -> None:
    run("install-conf", "--home", home, "--name", name, text=text)


def remove_conf(home: Optional[call.FsPath], name: str) -> None:
    run("remove-conf", "--home", home, "--name", name)


def install_fstab(home: Optional[call.FsPath], name: str, binds: Iterable[call.FsPath]) -> None:
    run("install-fstab", "--home", home, "--name", name, *[f"--bind={b}" for b in binds])


def remove_fstab(home: Optional[call.FsPath], name: str) -> None:
    run("remove-fstab", "--home", home, "--name", name)


def cache_tarball(codename: str, arch: str, archive_url: str, keyring_path: Optional[call.FsPath] = None, variant: str = "buildd",
                  refresh: bool = False, include: Sequence[str] = (), check_valid_until: bool = True,
                  apt_lines: Sequence[str] = ()) -> str:
    """Create (or refresh) the cached debootstrap tarball of a codename/arch (with the packages
    ``include`` installed, upgraded from ``apt_lines``); return its path."""
    argv: list[call.Arg] = ["cache-tarball", "--codename", codename, "--arch", arch, "--archive", archive_url, "--variant", variant]
    argv += [f"--include={p}" for p in include]
    argv += [f"--apt-line={line}" for line in apt_lines]
    if not check_valid_until:
        argv.append("--no-check-valid-until")
    if keyring_path:
        argv += ["--keyring", keyring_path]
    if refresh:
        argv.append("--refresh")
    return run(*argv).strip().splitlines()[-1]


# BtrfsSnapshot, LVM and LoopLVM backends (see mini_buildd.roothelper's BLOCK_OPERATIONS)

def btrfs_fill(chroot_dir: call.FsPath) -> None:
    run("btrfs-fill", *_chroot_args(chroot_dir))


def lvm_fill(chroot_dir: call.FsPath, volume_group: str, filesystem: str, size_gb: int) -> None:
    run("lvm-fill", *_chroot_args(chroot_dir), "--vg", volume_group, "--filesystem", filesystem, "--size", size_gb)


def lvm_remove(chroot_dir: call.FsPath, volume_group: str) -> None:
    run("lvm-remove", *_chroot_args(chroot_dir), "--vg", volume_group)


def loop_vg_create(chroot_dir: call.FsPath, size_gb: int) -> None:
    run("loop-vg-create", *_chroot_args(chroot_dir), "--size", size_gb)


def loop_vg_remove(chroot_dir: call.FsPath) -> None:
    run("loop-vg-remove", *_chroot_args(chroot_dir))


def lvm_activate(chroot_dir: call.FsPath, volume_group: str, filesystem: str, loop: bool = False) -> str:
    return run("lvm-activate", *_chroot_args(chroot_dir), "--vg", volume_group, "--filesystem", filesystem, *(["--loop"] if loop else []))
