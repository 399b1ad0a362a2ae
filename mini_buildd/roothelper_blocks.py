"""The root helper's operations for the BtrfsSnapshot, LVM and LoopLVM chroot backends (see
:mod:`mini_buildd.roothelper`): filling a btrfs subvolume or a logical volume with a chroot's
base system, a LoopLVM chroot's loop file and volume group, activating and removing them, and
the checks of their schroot configs. Every volume and group made carries a tag of the instance
home (:func:`lvm_tag`); only tagged ones are removed or named in a config.
"""

import contextlib
import hashlib
import os
import re

from mini_buildd.tools import blockdevices, call
from mini_buildd import config
from mini_buildd.roothelper_base import HelperError, check_name, chroots_root, chroot_dir, rmtree


#: LVM volume group and logical volume names.
_LVM_NAME_RE = re.compile(r"^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}$")
#: schroot ``mount-options`` and ``lvm-snapshot-options`` as mini-buildd writes them.
_MOUNT_OPTIONS_RE = re.compile(r"^-t (?:" + "|".join(blockdevices.FILESYSTEMS) + r") -o [a-z0-9_,=]+$")
_SNAPSHOT_OPTIONS_RE = re.compile(r"^--size [1-9][0-9]{0,5}G$")

#: LoopLVM: the loop file below ``CHROOT``; LVM: where the new volume is mounted to be filled.
LOOP_IMAGE = "lvmloop.image"
MOUNT_DIR = "mnt"


def lvm_tag(root):
    """The LVM tag of the volumes (and loop volume groups) of the chroots below ``root`` (``HOME/var/chroots``).

    Volumes are removed, and named in a schroot config, only if they carry the caller's tag: a
    volume group may be shared, and names like ``mini-buildd-CODENAME-ARCH`` are not unique to
    one instance."""
    return "mini-buildd-" + hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:20]


def lv_name(codename, arch):
    """The logical volume of an (Loop)LVM chroot, as upstream."""
    return f"mini-buildd-{check_name(codename, 'codename')}-{check_name(arch, 'architecture')}"


def loop_vg_name(codename, arch):
    """The volume group a LoopLVM chroot makes on its loop file, as upstream."""
    return f"mini-buildd-loop-{check_name(codename, 'codename')}-{check_name(arch, 'architecture')}"


def check_lvm_name(value, what):
    if not _LVM_NAME_RE.match(value or ""):
        raise HelperError(f"Bad {what} '{value}' (letters, digits, '+', '_', '.', '-').")
    return value


def _check_lvm_conf(caller, home, name, values, existing=False):
    """An ``lvm-snapshot`` config names a volume of the caller (tagged, see :func:`lvm_tag`).

    ``existing`` (a config about to be removed): a volume that is gone (e.g. a loop file not
    attached) is accepted."""
    device = values.get("device", "")
    match = re.match(r"^/dev/([^/]+)/(mini-buildd-[^/]+)$", device)
    if not match or not _LVM_NAME_RE.match(match[1]) or not _LVM_NAME_RE.match(match[2]):
        raise HelperError(f"schroot config of {name}: device must be /dev/VG/mini-buildd-CODENAME-ARCH.")
    if not _MOUNT_OPTIONS_RE.match(values.get("mount-options", "")) \
       or not _SNAPSHOT_OPTIONS_RE.match(values.get("lvm-snapshot-options", "")):
        raise HelperError(f"schroot config of {name}: bad mount-options or lvm-snapshot-options.")
    root = chroots_root(caller, home, create=False)
    tags = blockdevices.lv_tags(match[1], match[2])
    if tags is None and existing:
        return
    if root is None or tags is None or lvm_tag(root) not in tags:
        raise HelperError(f"schroot config of {name}: '{device}' is not a logical volume of this instance.")


def op_btrfs_fill(caller, args):
    """Make ``CHROOT/source`` a btrfs subvolume with the contents of ``CHROOT/tmp``, and the snapshot dir ``CHROOT/snapshot``."""
    d = chroot_dir(caller, args.home, args.codename, args.arch)
    tmp, source, snapshot = d / "tmp", d / "source", d / "snapshot"
    if not tmp.is_dir():
        raise HelperError(f"{tmp} does not exist (populate it first).")
    if source.exists() or snapshot.exists():
        raise HelperError(f"{source} or {snapshot} exists already (remove the chroot first).")
    kind = blockdevices.fs_type(d)
    if kind != "btrfs":
        raise HelperError(f"{d} is on a '{kind}' file system, not btrfs: BtrfsSnapshot chroots need a btrfs file system "
                          f"mounted at {config.chroots_dir(args.home)}.")
    try:
        blockdevices.subvolume_create(source)
        os.chmod(source, 0o755)
        blockdevices.copy_tree(tmp, source)
        snapshot.mkdir(mode=0o755)
    except BaseException:  # pylint: disable=broad-except  # clean-up, re-raised: no half-made subvolume is left
        rmtree(snapshot)
        rmtree(source)
        raise
    return ""


def _lvm_names(caller, args, create=True):
    """(chroot dir, tag, lv) of a chroot of the caller; (None, None, lv) if there are no chroots."""
    root = chroots_root(caller, args.home, create=create)
    lv = lv_name(args.codename, args.arch)
    if root is None:
        return None, None, lv
    return chroot_dir(caller, args.home, args.codename, args.arch), lvm_tag(root), lv


def op_lvm_fill(caller, args):
    """Create the LV ``VG/mini-buildd-CODENAME-ARCH`` (tagged), make its file system, copy ``CHROOT/tmp`` into it."""
    d, tag, lv = _lvm_names(caller, args)
    vg = check_lvm_name(args.vg, "volume group")
    tmp, mnt = d / "tmp", d / MOUNT_DIR
    if not tmp.is_dir():
        raise HelperError(f"{tmp} does not exist (populate it first).")
    if blockdevices.vg_tags(vg) is None:
        raise HelperError(f"Volume group '{vg}' does not exist.")
    if blockdevices.lv_tags(vg, lv) is not None:
        raise HelperError(f"Logical volume {vg}/{lv} exists already (remove it, or the chroot, first).")
    blockdevices.lv_create(vg, lv, args.size, tag)
    try:
        device = blockdevices.lv_device(vg, lv)
        blockdevices.mkfs(args.filesystem, device)
        mnt.mkdir(mode=0o755)
        blockdevices.mount(device, mnt)
        blockdevices.copy_tree(tmp, mnt)
    except BaseException:  # pylint: disable=broad-except  # clean-up, re-raised: no half-made volume is left
        rmtree(mnt)
        blockdevices.lv_remove(vg, lv)
        raise
    finally:
        rmtree(mnt)  # unmounts it
    return ""


def op_lvm_remove(caller, args):
    """Remove the LV of a chroot of the caller (if it exists; it must carry the caller's tag)."""
    d, tag, lv = _lvm_names(caller, args, create=False)
    vg = check_lvm_name(args.vg, "volume group")
    if d is None:
        return ""
    tags = blockdevices.lv_tags(vg, lv)
    if tags is None:
        return ""
    if tag not in tags:
        raise HelperError(f"Logical volume {vg}/{lv} is not one of this instance's (it lacks tag {tag}).")
    rmtree(d / MOUNT_DIR)
    blockdevices.lv_remove(vg, lv)
    return ""


def op_loop_vg_create(caller, args):
    """Make the loop file ``CHROOT/lvmloop.image`` (sparse), attach it, create the VG ``mini-buildd-loop-CODENAME-ARCH`` on it."""
    d, tag, _lv = _lvm_names(caller, args)
    vg, image = loop_vg_name(args.codename, args.arch), d / LOOP_IMAGE
    if blockdevices.vg_tags(vg) is not None:
        raise HelperError(f"Volume group '{vg}' exists already (remove it, or the chroot, first).")
    if image.exists():
        raise HelperError(f"{image} exists already (remove the chroot first).")
    blockdevices.make_sparse_file(image, args.size)
    device = None
    try:
        device = blockdevices.loop_attach(image)
        blockdevices.vg_create(vg, device, tag)
    except BaseException:  # pylint: disable=broad-except  # clean-up, re-raised: no loop device or file is left
        if device:
            blockdevices.loop_detach(device)
        rmtree(image)
        raise
    return ""


def op_loop_vg_remove(caller, args):
    """Remove a LoopLVM chroot's VG (with its LV), detach its loop device(s), remove the loop file."""
    d, tag, _lv = _lvm_names(caller, args, create=False)
    if d is None:
        return ""
    vg, image = loop_vg_name(args.codename, args.arch), d / LOOP_IMAGE
    tags = blockdevices.vg_tags(vg)
    if tags is None and image.exists():  # not attached (after a reboot): attach to remove it properly
        blockdevices.loop_attach(image)
        tags = blockdevices.vg_tags(vg)
    if tags is not None:
        if tag not in tags:
            raise HelperError(f"Volume group '{vg}' is not one of this instance's (it lacks tag {tag}).")
        rmtree(d / MOUNT_DIR)
        blockdevices.vg_remove(vg)
    if image.exists():
        for device in blockdevices.loop_devices_of(image):
            with contextlib.suppress(call.CallError):
                blockdevices.pv_remove(device)
            blockdevices.loop_detach(device)
    rmtree(image)
    return ""


def op_lvm_activate(caller, args):
    """Make an (Loop)LVM chroot's volume usable (after a reboot: attach the loop file, activate the VG) and fsck it."""
    d, tag, lv = _lvm_names(caller, args, create=False)
    vg = check_lvm_name(args.vg, "volume group")
    if d is None:
        raise HelperError(f"No chroots in {config.chroots_dir(args.home)}.")
    if args.loop:
        image = d / LOOP_IMAGE
        if not image.is_file():
            raise HelperError(f"Loop file {image} is missing (remove and prepare the chroot again).")
        blockdevices.loop_attach(image)
    tags = blockdevices.lv_tags(vg, lv)
    if tags is None or tag not in tags:
        raise HelperError(f"Logical volume {vg}/{lv} of this chroot is missing (remove and prepare the chroot again).")
    blockdevices.vg_activate(vg)
    return blockdevices.fsck(args.filesystem, blockdevices.lv_device(vg, lv))


BLOCK_OPERATIONS = {
    "btrfs-fill": op_btrfs_fill,
    "lvm-fill": op_lvm_fill,
    "lvm-remove": op_lvm_remove,
    "loop-vg-create": op_loop_vg_create,
    "loop-vg-remove": op_loop_vg_remove,
    "lvm-activate": op_lvm_activate,
}


def _size_gb(value):
    if not re.match(r"^[1-9][0-9]{0,5}$", value or ""):
        raise HelperError(f"usage: bad size '{value}' (whole GB, 1..999999)")
    return int(value)


def block_parser(chroot_op):
    """The sub-commands of :data:`BLOCK_OPERATIONS` (``chroot_op(name, help)`` adds one with --home/--codename/--arch)."""
    chroot_op("btrfs-fill", "make CHROOT/source a btrfs subvolume with the contents of CHROOT/tmp, and CHROOT/snapshot")
    s = chroot_op("lvm-fill", "create the chroot's LV in VG, make its file system and copy CHROOT/tmp into it")
    s.add_argument("--vg", required=True, help="volume group")
    s.add_argument("--filesystem", choices=blockdevices.FILESYSTEMS, default="ext2")
    s.add_argument("--size", type=_size_gb, required=True, help="size in GB")
    s = chroot_op("lvm-remove", "remove the chroot's LV from VG")
    s.add_argument("--vg", required=True, help="volume group")
    s = chroot_op("loop-vg-create", "make the chroot's loop file and its volume group")
    s.add_argument("--size", type=_size_gb, required=True, help="size of the loop file in GB")
    chroot_op("loop-vg-remove", "remove the chroot's loop volume group, loop device and file")
    s = chroot_op("lvm-activate", "attach and activate the chroot's volume and fsck it")
    s.add_argument("--vg", required=True, help="volume group")
    s.add_argument("--filesystem", choices=blockdevices.FILESYSTEMS, default="ext2")
    s.add_argument("--loop", action="store_true", help="attach the chroot's loop file first")
