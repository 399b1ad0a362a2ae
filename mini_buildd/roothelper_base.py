"""The root helper's checks and host primitives (see :mod:`mini_buildd.roothelper`): its errors
and caller, the names and paths it accepts (an instance home of the caller, its
``var/chroots/CODENAME/ARCH``), the allowed debootstrap options and base tarballs, and removing
a tree with everything mounted below it. Shared by the helper's operations
(:mod:`mini_buildd.roothelper`) and its block device operations (:mod:`mini_buildd.roothelper_blocks`).
"""

import logging
import os
import pathlib
import pwd
import re
import shutil
import stat

from mini_buildd.tools import blockdevices, call, debootstrap
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


#: One apt source line as a chroot's sources.list has it (see ``Source.mbd_apt_line``): ``deb``, the optional
#: ``[check-valid-until=yes|no]`` (no other option: ``trusted=yes`` would turn off signature checks), an http(s)
#: or file URL, a suite and at least one component. No blank, newline, quote or option-like word beyond that.
APT_LINE_RE = re.compile(r"deb (\[check-valid-until=(yes|no)\] )?(https?|file):/[A-Za-z0-9._~:/@%+=-]+"
                         r" [A-Za-z0-9._][A-Za-z0-9._/+-]*( [A-Za-z0-9._][A-Za-z0-9._+-]*)+")


def check_apt_line(value):
    """``value`` if it is one plain apt source line (see :data:`APT_LINE_RE`); else :class:`HelperError`."""
    if not APT_LINE_RE.fullmatch(value or ""):
        raise HelperError(f"Bad apt line '{value}' (deb [options] URL SUITE COMPONENT...).")
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
