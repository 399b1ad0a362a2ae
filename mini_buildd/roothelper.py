"""The root side of mini-buildd: every action on the host that needs root, and its checks.

The daemon runs as its own user (``mini-buildd``). What only root may do (debootstrap, unpacking
and packing chroot trees with their owners, mounts, removing root-owned trees, writing below
``/etc/schroot`` and :data:`mini_buildd.config.CACHE_DIR`) is one command,
``mini-buildd-chroot-helper OPERATION ...`` (this module's :func:`main`), which the package's
sudoers rule lets user ``mini-buildd`` run, and nothing else. :mod:`mini_buildd.tools.privileged`
is the daemon side: it calls the command with ``sudo -n``, or, when the daemon runs as root,
this module's :func:`run` in-process with the same arguments and the same checks.

No argument chooses a path freely. A caller names its instance home, which must be its own
(owned by the calling user); everything the helper changes is derived from that:
``HOME/var/chroots`` (made root-owned, so the caller cannot swap parts of the trees below it),
``CODENAME/ARCH`` below it (names checked), and the schroot files of chroots whose data lives
there. Configuration texts are rendered by the daemon but checked here key by key: users are
the caller only, the group is ``sbuild``, the data path is the caller's chroot, the fstab binds
only directories of the caller's home. debootstrap runs as ``/usr/sbin/debootstrap`` with an
allow-list of options; base tarballs come only from the root-owned cache.

This does not make the daemon user harmless: a user in a chroot's ``root-users`` is root
inside its sessions, which schroot and sbuild document as root-equivalent. The checks keep
names from uploads, peers or forms (and plain mistakes) from reaching host paths as root.
When called by root itself (``SUDO_UID`` unset, or 0) the ownership checks are skipped.
"""

import argparse
import contextlib
import fcntl
import hashlib
import logging
import os
import pathlib
import pwd
import re
import shlex
import shutil
import stat
import sys
import tempfile

from mini_buildd.tools import blockdevices, call, debootstrap, schroot_files
from mini_buildd import config, errors

LOG = logging.getLogger(__name__)

#: Codenames, architectures, schroot names.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")

#: File backend compressions: name -> (tarball suffix, tar option).
COMPRESSIONS = {
    "none": ("", None),
    "gzip": (".gz", "--gzip"),
    "bzip2": (".bz2", "--bzip2"),
    "xz": (".xz", "--xz"),
}

#: tar options keeping a system tree intact (owners as numbers, xattrs such as capabilities).
TAR_KEEP = ["--numeric-owner", "--xattrs", "--xattrs-include=*"]

#: Parts below ``chroots/CODENAME/ARCH/`` the helper makes and removes.
DATA_DIRS = ("source", "tmp")

#: debootstrap commands the helper runs.
DEBOOTSTRAP_COMMANDS = (debootstrap.DEFAULT_COMMAND, "debootstrap")

#: debootstrap options a caller may add (no option naming a host path: --cache-dir,
#: --make-tarball, --unpack-tarball, --second-stage-target, --keyring, ... are refused).
_OPTION_RE = re.compile(r"^--(?:(?:include|exclude|components)=[A-Za-z0-9.+,:_-]*|variant=[a-z-]+|merged-usr|no-merged-usr"
                        r"|no-check-gpg|force-check-gpg|check-certificate|no-check-certificate|resolve-deps|no-resolve-deps"
                        r"|verbose|keep-debootstrap-dir|extractor=(?:dpkg-deb|ar))$")

#: Keys of a schroot config the helper writes, and the values a caller may give.
_CONF_KEYS = {"description", "setup.fstab", "groups", "users", "root-groups", "root-users", "source-root-users",
              "personality", "type", "directory", "union-type", "file"} | {
                  # BtrfsSnapshot, LVM and LoopLVM backends
                  "btrfs-source-subvolume", "btrfs-snapshot-directory", "device", "mount-options", "lvm-snapshot-options"}
_PERSONALITIES = {"linux", "linux32"}
_UNION_TYPES = {"overlay", "none", "aufs", "overlayfs", "unionfs"}
_GROUPS = {"sbuild"}

USAGE_EXIT = 2


class HelperError(errors.Refused):
    """A request the helper refuses or could not carry out (one line for the caller)."""


class Caller:
    """Who asks: the user behind sudo (``SUDO_UID``), or root."""

    def __init__(self, uid):
        self.uid = uid
        try:
            self.name = pwd.getpwuid(uid).pw_name
        except KeyError:
            self.name = str(uid)

    @property
    def is_root(self):
        return self.uid == 0

    @classmethod
    def from_environment(cls):
        sudo_uid = os.environ.get("SUDO_UID")
        return cls(int(sudo_uid) if sudo_uid and sudo_uid.isdigit() else os.getuid())

    def __repr__(self):
        return f"Caller({self.name})"


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------

def check_name(value, what):
    if not NAME_RE.match(value or ""):
        raise HelperError(f"Bad {what} '{value}' (letters, digits, '_', '.', '+', '-').")
    return value


def instance_home(caller, home):
    """The resolved home ``home``; it must be a directory owned by ``caller`` (or root asks)."""
    home = pathlib.Path(home)
    if not home.is_absolute():
        raise HelperError(f"Home '{home}' is not an absolute path.")
    real = pathlib.Path(os.path.realpath(home))
    try:
        st = os.stat(real)
    except OSError as e:
        raise HelperError(f"Home '{home}': {e.strerror}.") from e
    if not stat.S_ISDIR(st.st_mode):
        raise HelperError(f"Home '{home}' is not a directory.")
    if not caller.is_root and st.st_uid != caller.uid:
        raise HelperError(f"Home '{home}' is not owned by user '{caller.name}'.")
    return real


def _lstat_dir(path, what):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise HelperError(f"{what} '{path}' is not a plain directory (a symbolic link or a file?).")
    return st


def chroots_root(caller, home, create=True):
    """``HOME/var/chroots``, root-owned (made so if it is the caller's); None if absent and not ``create``."""
    home = instance_home(caller, home)
    var = home / "var"
    var_st = _lstat_dir(var, "Instance dir")
    if var_st is None:
        raise HelperError(f"'{var}' does not exist (start the daemon once to create its home).")
    if not caller.is_root and var_st.st_uid != caller.uid:
        raise HelperError(f"'{var}' is not owned by user '{caller.name}'.")
    root = config.chroots_dir(home)
    st = _lstat_dir(root, "Chroots dir")
    if st is None:
        if not create:
            return None
        os.mkdir(root, 0o755)  # made by root: root's
        return root
    if st.st_uid != 0:
        if st.st_uid not in (caller.uid, var_st.st_uid):
            raise HelperError(f"'{root}' is owned by another user.")
        # Take over the dir the checks saw, never what a path swapped in meanwhile points to.
        try:
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as e:
            raise HelperError(f"Chroots dir '{root}' changed while it was checked: {e.strerror}.") from e
        try:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                raise HelperError(f"Chroots dir '{root}' changed while it was checked.")
            os.fchown(fd, 0, 0)
            os.fchmod(fd, 0o755)
        finally:
            os.close(fd)
    return root


def chroot_dir(caller, home, codename, arch, create=True):
    """``HOME/var/chroots/CODENAME/ARCH`` (not created); None if the chroots dir is absent and not ``create``."""
    root = chroots_root(caller, home, create=create)
    if root is None:
        return None
    return root / check_name(codename, "codename") / check_name(arch, "architecture")


def _within(path, directory):
    path, directory = pathlib.Path(os.path.realpath(path)), pathlib.Path(os.path.realpath(directory))
    return path == directory or directory in path.parents


def _caller_file(caller, path, what):
    """A regular file the caller may name for reading by root: its own or root's."""
    path = pathlib.Path(path)
    try:
        st = os.stat(path)
    except OSError as e:
        raise HelperError(f"{what} '{path}': {e.strerror}.") from e
    if not stat.S_ISREG(st.st_mode):
        raise HelperError(f"{what} '{path}' is not a regular file.")
    if not caller.is_root and st.st_uid not in (0, caller.uid):
        raise HelperError(f"{what} '{path}' is owned by another user.")
    return path


def check_debootstrap(command, options, archive_url):
    """Refuse a debootstrap command or option that is not allowed, or an archive URL that is not http(s)."""
    if command not in DEBOOTSTRAP_COMMANDS:
        raise HelperError(f"debootstrap command '{command}' is not allowed (use {debootstrap.DEFAULT_COMMAND}).")
    for option in options:
        if not _OPTION_RE.match(option):
            raise HelperError(f"debootstrap option '{option}' is not allowed.")
    if not re.match(r"^(https?|file):/", archive_url or "") or any(c.isspace() for c in archive_url):
        raise HelperError(f"Bad archive URL '{archive_url}' (http, https or file).")


def check_base_tarball(path):
    """A base tarball must be a root-owned file directly in the cache dir."""
    path = pathlib.Path(path)
    real = pathlib.Path(os.path.realpath(path))
    if real.parent != pathlib.Path(os.path.realpath(config.CACHE_DIR)) or not re.match(r"^debootstrap-[^/]+\.tar$", real.name):
        raise HelperError(f"Base tarball '{path}' is not a cached debootstrap tarball in {config.CACHE_DIR}.")
    st = os.stat(real)
    if st.st_uid != 0 or st.st_mode & 0o022 or not stat.S_ISREG(st.st_mode):
        raise HelperError(f"Base tarball '{path}' is not a root-owned file writable only by root.")
    return real


# ---------------------------------------------------------------------------------------------
# File system primitives (as root)
# ---------------------------------------------------------------------------------------------

def _unescape_mount_path(path):
    """/proc/mounts escapes space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        path = path.replace(code, char)
    return path


def mounts_below(path):
    """Mount points at or below ``path`` (from /proc/mounts), deepest first."""
    path = str(pathlib.Path(path).resolve())
    found = []
    with open("/proc/mounts", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 2:
                continue
            mountpoint = _unescape_mount_path(fields[1])
            if mountpoint == path or mountpoint.startswith(path.rstrip("/") + "/"):
                found.append(mountpoint)
    return sorted(set(found), key=lambda m: m.count("/"), reverse=True)


def umount_below(path):
    """Unmount everything mounted at or below ``path`` (e.g. debootstrap's /proc after a crash)."""
    for mountpoint in mounts_below(path):
        LOG.warning("Unmounting leftover mount %s", mountpoint)
        try:
            call.run(["umount", mountpoint])
        except call.CallError:
            call.run(["umount", "--lazy", mountpoint])
    left = mounts_below(path)
    if left:
        raise HelperError(f"Still mounted below {path}: {' '.join(left)}")


def rmtree(path):
    """Remove ``path`` recursively (no error if absent); unmounts anything below it first."""
    path = pathlib.Path(path)
    if not path.exists() and not path.is_symlink():
        return
    umount_below(path)
    if path.is_dir() and not path.is_symlink():
        for subvolume in blockdevices.subvolumes_below(path):  # btrfs snapshot chroots (rmdir can't remove them)
            blockdevices.subvolume_delete(subvolume)
        if path.exists():
            shutil.rmtree(path)
    else:
        path.unlink()
    LOG.info("Removed %s", path)


def tar_create(source_dir, tarball, compression="none"):
    """Pack ``source_dir``'s contents into ``tarball`` (written to a temp name, then renamed)."""
    tarball = pathlib.Path(tarball)
    _suffix, option = COMPRESSIONS[compression or "none"]
    part = tarball.with_name(tarball.name + ".part")
    argv = ["tar", "--create", f"--file={part}", f"--directory={source_dir}", "--one-file-system"] + TAR_KEEP
    if option:
        argv.append(option)
    argv.append(".")
    try:
        call.run(argv, log_level=logging.INFO)
        os.replace(part, tarball)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()


def tar_extract(tarball, target_dir):
    """Unpack ``tarball`` (compression detected by tar) into the existing ``target_dir``."""
    call.run(["tar", "--extract", f"--file={tarball}", f"--directory={target_dir}", "--same-permissions"] + TAR_KEEP,
             log_level=logging.INFO)


def write_root_file(path, text, mode=0o644):
    """Write atomically, root-owned (schroot rejects files writable by others)."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        for attempt in (1, 2):  # the dir may vanish under us (remove_fstab of another chroot)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                tmp.write_text(text, encoding="utf-8")
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _populate(target, codename, arch, archive_url, keyring, variant, command, options, base_tarball):
    """Fill the new dir ``target`` (debootstrap, or unpack ``base_tarball``); removed again on failure."""
    target.mkdir(parents=False, exist_ok=False)
    try:
        if base_tarball:
            LOG.info("Unpacking base tarball %s into %s", base_tarball, target)
            tar_extract(base_tarball, target)
        else:
            debootstrap.debootstrap(target, codename, archive_url, arch, keyring, variant=variant,
                                    extra_options=options, command=command)
            # What 'apt-get clean' would do: debootstrap leaves the downloaded packages behind
            for deb in (target / "var" / "cache" / "apt" / "archives").glob("*.deb"):
                deb.unlink()
    except BaseException:  # pylint: disable=broad-except  # clean-up, re-raised: no half-made chroot dir is left
        rmtree(target)
        raise


# ---------------------------------------------------------------------------------------------
# Operations
# ---------------------------------------------------------------------------------------------

def op_make_dir(caller, args):
    """Create ``HOME/var/chroots/CODENAME/ARCH`` (root-owned); it must not exist."""
    d = chroot_dir(caller, args.home, args.codename, args.arch)
    d.parent.mkdir(mode=0o755, exist_ok=True)
    try:
        d.mkdir(mode=0o755)
    except FileExistsError as e:
        raise HelperError(f"Chroot dir {d} exists already (remove the chroot first).") from e
    return ""


def op_populate(caller, args):
    """Fill ``CHROOT/SUBDIR`` with a base system (debootstrap, or a cached base tarball)."""
    d = chroot_dir(caller, args.home, args.codename, args.arch)
    if not d.is_dir():
        raise HelperError(f"Chroot dir {d} does not exist.")
    check_debootstrap(args.command, args.option, args.archive)
    keyring = _caller_file(caller, args.keyring, "Keyring") if args.keyring else None
    base = check_base_tarball(args.base_tarball) if args.base_tarball else None
    _populate(d / args.subdir, args.codename, args.arch, args.archive, keyring, args.variant, args.command, args.option, base)
    return ""


def op_pack(caller, args):
    """Pack ``CHROOT/tmp`` into ``CHROOT/source.tar[.EXT]``."""
    d = chroot_dir(caller, args.home, args.codename, args.arch)
    suffix, _option = COMPRESSIONS[args.compression]
    tar_create(d / "tmp", d / f"source.tar{suffix}", args.compression)
    return ""


def op_remove(caller, args):
    """Remove a part of a chroot's data (``source``, ``tmp``, ``tarballs``), or all of it
    (``CODENAME/ARCH``, and ``CODENAME`` when it was its last architecture)."""
    d = chroot_dir(caller, args.home, args.codename, args.arch, create=False)
    if d is None:
        return ""
    if args.part == "all":
        rmtree(d)
        with contextlib.suppress(OSError):
            d.parent.rmdir()
    elif args.part == "tarballs":
        for suffix, _option in COMPRESSIONS.values():  # pylint: disable=unbalanced-dict-unpacking  # the values are pairs
            for name in (f"source.tar{suffix}", f"source.tar{suffix}.part"):
                rmtree(d / name)
    else:
        rmtree(d / args.part)
    return ""


def _fstab_setup_names(name):
    return {schroot_files.GLOBAL_FSTAB, schroot_files.fstab_setup_name(name)}


def check_conf(caller, home, name, text, existing=False):
    """Refuse a schroot config that is not one of the caller's chroots, as mini-buildd writes them."""
    try:
        section, values = schroot_files.parse_conf(text)
    except schroot_files.SchrootError as e:
        raise HelperError(f"schroot config of {name}: {e}.") from e
    if section != name:
        raise HelperError(f"schroot config of {name} has section [{section}].")
    unknown = set(values) - _CONF_KEYS
    if unknown:
        raise HelperError(f"schroot config of {name}: keys not allowed: {', '.join(sorted(unknown))}.")
    if "\n" in values.get("description", "") or values.get("setup.fstab") not in _fstab_setup_names(name):
        raise HelperError(f"schroot config of {name}: setup.fstab must be one of {', '.join(sorted(_fstab_setup_names(name)))}.")
    if values.get("personality", "linux") not in _PERSONALITIES or values.get("union-type", "none") not in _UNION_TYPES:
        raise HelperError(f"schroot config of {name}: bad personality or union-type.")
    if not caller.is_root:
        for key in ("users", "root-users", "source-root-users"):
            if set(filter(None, values.get(key, "").split(","))) - {caller.name}:
                raise HelperError(f"schroot config of {name}: {key} may only name user '{caller.name}'.")
        for key in ("groups", "root-groups"):
            if set(filter(None, values.get(key, "").split(","))) - _GROUPS:
                raise HelperError(f"schroot config of {name}: {key} may only name group sbuild.")
    root = chroots_root(caller, home, create=False)
    kind = values.get("type")
    if kind == "lvm-snapshot":
        _check_lvm_conf(caller, home, name, values, existing=existing)
        return
    data = {"directory": values.get("directory"), "file": values.get("file"),
            "btrfs-snapshot": values.get("btrfs-source-subvolume")}.get(kind or "")
    if data is None:
        raise HelperError(f"schroot config of {name}: type must be directory (with directory=), file (with file=), "
                          "btrfs-snapshot (with btrfs-source-subvolume=) or lvm-snapshot (with device=).")
    if kind == "btrfs-snapshot":
        snapshots = values.get("btrfs-snapshot-directory")
        if root is None or not snapshots or not _within(snapshots, root):
            raise HelperError(f"schroot config of {name}: btrfs-snapshot-directory must be below {config.chroots_dir(home)}.")
    if root is None or not _within(data, root) or pathlib.Path(os.path.realpath(data)) == pathlib.Path(os.path.realpath(root)):
        raise HelperError(f"schroot config of {name}: its data '{data}' is not below {config.chroots_dir(home)}.")


def op_install_conf(caller, args):
    """Write ``/etc/schroot/chroot.d/NAME.conf`` from standard input (checked)."""
    name = check_name(args.name, "schroot name")
    text = sys.stdin.read() if args.text is None else args.text
    check_conf(caller, args.home, name, text)
    path = schroot_files.conf_path(name)
    if path.exists():
        _owned_conf(caller, args.home, name)
    write_root_file(path, text)
    LOG.info("Installed schroot config %s", path)
    return ""


def _owned_conf(caller, home, name):
    """An existing config of ``name`` must be the caller's (its data below the caller's home)."""
    if caller.is_root:
        return
    try:
        check_conf(caller, home, name, schroot_files.conf_path(name).read_text(encoding="utf-8"), existing=True)
    except HelperError as e:
        raise HelperError(f"schroot config of {name} is not one of this instance's chroots: {e}") from e


def op_remove_conf(caller, args):
    """Remove the schroot configuration of a chroot of the caller."""
    name = check_name(args.name, "schroot name")
    path = schroot_files.conf_path(name)
    if path.exists():
        _owned_conf(caller, args.home, name)
        path.unlink()
        LOG.info("Removed schroot config %s", path)
    return ""


def _check_binds(caller, home, binds):
    home = instance_home(caller, home)
    for d in binds:
        if not _within(d, home):
            raise HelperError(f"fstab: '{d}' is not below the instance home {home}.")
        if not caller.is_root and os.stat(d).st_uid != caller.uid:
            raise HelperError(f"fstab: '{d}' is not owned by user '{caller.name}'.")


def op_install_fstab(caller, args):
    """Write ``/etc/schroot/mini-buildd/fstab-NAME`` binding ``--bind`` dirs of the caller's home."""
    name = check_name(args.name, "schroot name")
    binds = [pathlib.Path(b) for b in args.bind]
    for d in binds:
        if not d.is_dir():
            raise HelperError(f"fstab: bind source '{d}' is not a directory.")
    _check_binds(caller, args.home, binds)
    path = schroot_files.fstab_path(name)
    if path.exists():
        _check_binds(caller, args.home, [b for b in schroot_files.bind_sources(name) if b.exists()])
    try:
        text = schroot_files.fstab_text(binds)
    except schroot_files.SchrootError as e:
        raise HelperError(str(e)) from e
    write_root_file(path, text)
    LOG.info("Installed schroot fstab %s", path)
    return ""


def op_remove_fstab(caller, args):
    """Remove the schroot fstab of a chroot of the caller."""
    name = check_name(args.name, "schroot name")
    path = schroot_files.fstab_path(name)
    if path.exists():
        _check_binds(caller, args.home, [b for b in schroot_files.bind_sources(name) if b.exists()])
        path.unlink()
        LOG.info("Removed schroot fstab %s", path)
    with contextlib.suppress(OSError):
        path.parent.rmdir()
    return ""


def op_cache_tarball(_caller, args):
    """Make the cached pristine base tarball of CODENAME/ARCH if missing (or ``--refresh``); print its path."""
    codename, arch = check_name(args.codename, "codename"), check_name(args.arch, "architecture")
    variant = check_name(args.variant, "variant")
    check_debootstrap(debootstrap.DEFAULT_COMMAND, [], args.archive)
    keyring = _caller_file(_caller, args.keyring, "Keyring") if args.keyring else None
    tarball = config.cached_tarball(codename, arch, variant)
    tarball.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(tarball.with_name(tarball.name + ".lock"), "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tarball.exists() and not args.refresh:
            LOG.info("Using cached debootstrap tarball %s", tarball)
            return f"{tarball}\n"
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f"{tarball.name}.", dir=tarball.parent))
        try:
            target = tmp / "root"
            _populate(target, codename, arch, args.archive, keyring, variant, debootstrap.DEFAULT_COMMAND, [], None)
            tar_create(target, tarball)
            os.chmod(tarball, 0o644)
        finally:
            rmtree(tmp)
    LOG.info("Cached debootstrap tarball %s", tarball)
    return f"{tarball}\n"


# ---------------------------------------------------------------------------------------------
# BtrfsSnapshot, LVM and LoopLVM backends
# ---------------------------------------------------------------------------------------------

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


OPERATIONS = {
    "make-dir": op_make_dir,
    "populate": op_populate,
    "pack": op_pack,
    "remove": op_remove,
    "install-conf": op_install_conf,
    "remove-conf": op_remove_conf,
    "install-fstab": op_install_fstab,
    "remove-fstab": op_remove_fstab,
    "cache-tarball": op_cache_tarball,
    **BLOCK_OPERATIONS,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise HelperError(f"usage: {message}")


def parser():
    """The helper's command line parser (one sub-command per operation)."""
    p = _Parser(prog="mini-buildd-chroot-helper",
                description="The mini-buildd daemon's root actions (its chroots and their schroot files), run by the daemon "
                            "through sudo. Every path is derived from the calling user's instance home (--home); "
                            "anything else is refused. Not for interactive use.")
    sub = p.add_subparsers(dest="operation", required=True)

    def chroot_op(name, help_text):
        s = sub.add_parser(name, help=help_text)
        s.add_argument("--home", required=True, help="instance home (owned by the calling user)")
        s.add_argument("--codename", required=True)
        s.add_argument("--arch", required=True)
        return s

    chroot_op("make-dir", "create HOME/var/chroots/CODENAME/ARCH")
    s = chroot_op("populate", "fill CHROOT/SUBDIR with a base system")
    s.add_argument("--subdir", choices=DATA_DIRS, required=True)
    s.add_argument("--archive", required=True, help="archive URL for debootstrap")
    s.add_argument("--keyring", help="keyring to verify the archive with")
    s.add_argument("--variant", default="buildd")
    s.add_argument("--command", default=debootstrap.DEFAULT_COMMAND)
    s.add_argument("--option", action="append", default=[], help="extra debootstrap option (allow-listed)")
    s.add_argument("--base-tarball", help="cached base tarball instead of debootstrap")
    s = chroot_op("pack", "pack CHROOT/tmp into CHROOT/source.tar[.EXT]")
    s.add_argument("--compression", choices=COMPRESSIONS, default="none")
    s = chroot_op("remove", "remove chroot data")
    s.add_argument("--part", choices=DATA_DIRS + ("snapshot", "tarballs", "all"), default="all")
    block_parser(chroot_op)
    for name in ("install-conf", "remove-conf", "install-fstab", "remove-fstab"):
        s = sub.add_parser(name)
        s.add_argument("--home", required=True)
        s.add_argument("--name", required=True, help="schroot name")
        if name == "install-fstab":
            s.add_argument("--bind", action="append", default=[], help="dir of the home to bind read-write")
        if name == "install-conf":
            s.set_defaults(text=None)
    s = sub.add_parser("cache-tarball")
    s.add_argument("--codename", required=True)
    s.add_argument("--arch", required=True)
    s.add_argument("--archive", required=True)
    s.add_argument("--keyring")
    s.add_argument("--variant", default="buildd")
    s.add_argument("--refresh", action="store_true")
    return p


def run(argv, caller, text=None):
    """Carry out ``argv`` (see :func:`parser`) for ``caller``; return the output for the caller.

    ``text`` is the standard input of ``install-conf``. Raises :class:`HelperError`; errors of
    the tools run (:class:`mini_buildd.tools.call.CallError`, debootstrap's) pass through.
    """
    args = parser().parse_args(argv)
    if text is not None:
        args.text = text
    LOG.info("Root helper for %s: %s", caller.name, shlex.join(argv))
    return OPERATIONS[args.operation](caller, args)


def main(argv=None):
    """``mini-buildd-chroot-helper``: run as root via sudo; errors are one line on stderr."""
    logging.basicConfig(level=logging.WARNING, format="mini-buildd-chroot-helper: %(message)s")
    if os.geteuid() != 0:
        print("mini-buildd-chroot-helper: error: must run as root (the daemon calls it with sudo).", file=sys.stderr)
        return 1
    os.umask(0o022)
    try:
        sys.stdout.write(run(sys.argv[1:] if argv is None else argv, Caller.from_environment()))
    except HelperError as e:
        print(f"mini-buildd-chroot-helper: error: {e}", file=sys.stderr)
        return USAGE_EXIT if str(e).startswith("usage:") else 1
    except debootstrap.DebootstrapError as e:
        print(f"mini-buildd-chroot-helper: error: {e}", file=sys.stderr)
        return 3
    except (call.CallError, OSError) as e:
        print(f"mini-buildd-chroot-helper: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
