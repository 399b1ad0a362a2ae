"""Block devices and file systems of the BtrfsSnapshot, LVM and LoopLVM chroot backends: btrfs
subvolumes, LVM logical volumes and volume groups (with their tags), loop devices, mkfs, fsck and
mount; and whether the kernel can do LVM here (device-mapper).

Only the root helper (:mod:`mini_buildd.roothelper`) runs these commands (as root); the daemon
side names them through :mod:`mini_buildd.tools.privileged`.
"""

import logging
import os
import pathlib
import shutil
import stat
from typing import Optional

from mini_buildd.tools import call

LOG = logging.getLogger(__name__)

#: The inode number of a btrfs subvolume's top directory (BTRFS_FIRST_FREE_OBJECTID).
BTRFS_SUBVOLUME_INO = 256

#: File systems an LVM chroot may have (``mkfs.FS`` and ``fsck -t FS``).
FILESYSTEMS = ("ext2", "ext3", "ext4", "xfs")

#: The kernel's misc devices (``device-mapper`` is one when the kernel has it).
PROC_MISC = "/proc/misc"

#: Exit codes of ``fsck`` that mean "file system fine" (0) or "errors corrected" (1).
FSCK_OK = (0, 1)


def run(argv: call.Argv) -> str:
    """Run a changing command (logged at INFO)."""
    return call.run(argv, log_level=logging.INFO)


# ---------------------------------------------------------------------------------------------
# btrfs
# ---------------------------------------------------------------------------------------------

def fs_type(path: call.FsPath) -> str:
    """The file system type of ``path`` (``stat -f``), e.g. ``btrfs``, ``ext2/ext3``, ``tmpfs``."""
    return call.run(["stat", "--file-system", "--format=%T", str(path)]).strip()


def is_subvolume(path: call.FsPath) -> bool:
    """``path`` is the top directory of a btrfs subvolume."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_ino == BTRFS_SUBVOLUME_INO and fs_type(path) == "btrfs"


def subvolume_create(path: call.FsPath) -> None:
    run(["btrfs", "subvolume", "create", str(path)])


def subvolume_delete(path: call.FsPath) -> None:
    run(["btrfs", "subvolume", "delete", str(path)])


def subvolumes_below(path: call.FsPath) -> list[pathlib.Path]:
    """The btrfs subvolumes at or below ``path`` (not below a subvolume found), deepest first.

    Nothing mounted may be below ``path`` (a subvolume shows as another device, like a mount)."""
    top = pathlib.Path(path)
    if not top.is_dir() or top.is_symlink() or fs_type(top) != "btrfs":
        return []
    found = [top] if is_subvolume(top) else []
    for parent, dirs, _files in os.walk(top):
        parent_dev = os.lstat(parent).st_dev
        for d in list(dirs):
            p = pathlib.Path(parent) / d
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode) and st.st_dev != parent_dev:
                dirs.remove(d)
                if st.st_ino == BTRFS_SUBVOLUME_INO:
                    found.extend(subvolumes_below(p))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


# ---------------------------------------------------------------------------------------------
# LVM and device-mapper
# ---------------------------------------------------------------------------------------------

def _kernel_has_device_mapper() -> bool:
    """device-mapper is in the running kernel: ``/proc/misc`` lists it (a ``/dev/mapper/control``
    node alone says nothing: ``dmsetup`` makes one even where the kernel has no device-mapper)."""
    try:
        with open(PROC_MISC, encoding="utf-8") as f:
            return any(line.split()[1:] == ["device-mapper"] for line in f)
    except OSError:
        return False


def device_mapper_missing() -> Optional[str]:
    """Why LVM cannot work on this host (None if it can): no device-mapper, or no LVM tools."""
    if not _kernel_has_device_mapper():
        return f"no device-mapper in this kernel ({PROC_MISC} does not list it: load dm_mod; not possible in many containers)"
    if not shutil.which("dmsetup") or not shutil.which("lvcreate"):
        return "LVM tools missing (install lvm2)"
    try:
        call.run(["dmsetup", "version"])
    except call.CallError as e:
        return f"device-mapper not usable: {e.output.strip().splitlines()[-1] if e.output.strip() else e}"
    return None


def _lvm_report(argv: list[str]) -> Optional[list[str]]:
    """The tags of the one object an ``lvs``/``vgs`` report names; None if it does not exist."""
    try:
        out = call.run(argv)
    except call.CallError:
        return None
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    if not lines:
        return None
    return [t for t in lines[0].split(",") if t]


def lv_tags(vg: str, lv: str) -> Optional[list[str]]:
    """Tags of LV ``vg/lv``; None if there is no such LV."""
    return _lvm_report(["lvs", "--noheadings", "--options", "lv_tags", f"{vg}/{lv}"])


def vg_tags(vg: str) -> Optional[list[str]]:
    """Tags of VG ``vg``; None if there is no such VG."""
    return _lvm_report(["vgs", "--noheadings", "--options", "vg_tags", vg])


def lv_device(vg: str, lv: str) -> pathlib.Path:
    return pathlib.Path("/dev") / vg / lv


def lv_create(vg: str, lv: str, size_gb: int, tag: str) -> None:
    run(["lvcreate", "--yes", "--size", f"{size_gb}G", "--name", lv, "--addtag", tag, vg])


def lv_remove(vg: str, lv: str) -> None:
    run(["lvremove", "--yes", "--force", f"{vg}/{lv}"])


def vg_activate(vg: str) -> None:
    run(["vgchange", "--activate", "y", vg])


def vg_create(vg: str, device: str, tag: str) -> None:
    run(["pvcreate", "--yes", device])
    run(["vgcreate", "--yes", "--addtag", tag, vg, device])


def vg_remove(vg: str) -> None:
    """Remove VG ``vg`` with all its LVs."""
    run(["vgremove", "--yes", "--force", vg])


def pv_remove(device: str) -> None:
    run(["pvremove", "--yes", "--force", device])


def mkfs(filesystem: str, device: call.FsPath) -> None:
    run([f"mkfs.{filesystem}", "-q", str(device)])


def fsck(filesystem: str, device: call.FsPath) -> str:
    """``fsck -a`` the (unmounted) file system; errors it could not correct raise :class:`mini_buildd.tools.call.CallError`."""
    try:
        return run(["fsck", "-a", "-t", filesystem, str(device)])
    except call.CallError as e:
        if e.returncode in FSCK_OK:
            return e.output
        raise


# ---------------------------------------------------------------------------------------------
# Loop devices, mounts
# ---------------------------------------------------------------------------------------------

def loop_devices_of(image: call.FsPath) -> list[str]:
    """The loop devices ``image`` is attached to."""
    out = call.run(["losetup", "--noheadings", "--output", "NAME", "--associated", str(image)])
    return [line.strip() for line in out.splitlines() if line.strip()]


def loop_attach(image: call.FsPath) -> str:
    """Attach ``image`` to a free loop device (or return the one it is attached to)."""
    attached = loop_devices_of(image)
    if attached:
        return attached[0]
    return call.run(["losetup", "--find", "--show", str(image)], log_level=logging.INFO).strip()


def loop_detach(device: str) -> None:
    run(["losetup", "--detach", device])


def make_sparse_file(path: call.FsPath, size_gb: int) -> None:
    run(["truncate", "--size", f"{size_gb}G", str(path)])


def mount(device: call.FsPath, target: call.FsPath, options: str = "") -> None:
    run(["mount"] + (["-o", options] if options else []) + [str(device), str(target)])


def copy_tree(source: call.FsPath, target: call.FsPath) -> None:
    """Copy ``source``'s contents into the existing dir ``target`` (owners, modes, links, xattrs; reflinks where the file system can)."""
    run(["cp", "--archive", "--reflink=auto", "--one-file-system", f"{source}/.", f"{target}/"])
