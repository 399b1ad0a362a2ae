"""Chroot backends: how a build chroot's data is made, checked and removed, as undoable steps.

A chroot (upstream §2.5) is one debootstrapped system per codename/arch under
``~/var/chroots/CODENAME/ARCH/`` plus its schroot config ``mini-buildd-CODENAME-ARCH``. Preparing
it is a list of :class:`Step` s, each a ``do`` with its ``undo``: if a step fails, the steps
done so far are undone in reverse, so a failed prepare leaves no config, mount or directory
behind; :func:`remove` runs all undo parts in reverse (idempotent).

Backends: ``Dir`` (directory + overlay union), ``File`` (tarball), ``BtrfsSnapshot`` (btrfs
subvolume, a snapshot per session), ``LVM`` (logical volume in a given volume group, an LVM
snapshot per session) and ``LoopLVM`` (the same in a volume group of its own on a loop file).
A backend subclasses :class:`Backend` (``schroot_lines``, ``data_steps``, ``activate``,
``check_source``) and is added to :data:`BACKENDS`.

Unshare mode chroots (``sbuild --chroot-mode=unshare``) are no schroot backend: an mmdebstrap
tarball owned by the daemon's user, made, checked and removed without root (:func:`unshare_prepare`,
:func:`unshare_check`, :func:`unshare_remove`).

Every step that needs root (debootstrap, tar with owners, mounts, removing the root-owned data,
schroot files) is an operation of :mod:`mini_buildd.roothelper`, run through
:mod:`mini_buildd.tools.privileged` (sudo when the daemon is not root); sessions go through
:mod:`mini_buildd.tools.schroot`.
"""

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import pathlib
import shutil
import tarfile
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Optional, Union

from mini_buildd.tools import blockdevices, call, debootstrap, mmdebstrap, privileged, schroot
from mini_buildd.tools.schroot_files import Dirs, Names
from mini_buildd import config, errors, roothelper_blocks
from mini_buildd.roothelper import COMPRESSIONS

LOG = logging.getLogger(__name__)

DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

#: Options for the apt-get calls of :func:`check`.
APT_GET = ["env", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C", "apt-get", "--quiet", "--yes",
           "--option=APT::Install-Recommends=false", "--option=Dpkg::Use-Pty=false",
           "--option=Dpkg::Options::=--force-confdef", "--option=Dpkg::Options::=--force-confnew"]


class ChrootError(errors.ToolError):
    """Preparing, checking or removing a chroot failed."""


#: Fills a new directory with the base system (see :class:`Populate`).
PopulateFn = Callable[[pathlib.Path], None]


# ---------------------------------------------------------------------------------------------
# Undoable steps
# ---------------------------------------------------------------------------------------------

class Step:
    """One undoable step: ``do()`` and ``undo()`` callables.

    ``do`` must clean up its own partial work when it fails. ``undo`` must be idempotent: it is
    also run (by :func:`undo_steps`) when ``do`` never ran, e.g. on remove.
    """

    def __init__(self, description: str, do: Optional[Callable[[], object]] = None, undo: Optional[Callable[[], object]] = None) -> None:
        self.description = description
        self.do = do
        self.undo = undo

    def __repr__(self) -> str:
        return f"Step({self.description})"


def run_steps(steps: Iterable[Step]) -> None:
    """Run each step's ``do``; on failure undo the steps done (reverse order) and re-raise."""
    done: list[Step] = []
    for step in steps:
        LOG.info("Step: %s", step.description)
        try:
            if step.do is not None:
                step.do()
        except BaseException as e:  # pylint: disable=broad-except  # clean-up, re-raised: undo the steps done
            LOG.error("Step failed: %s: %s", step.description, e)
            failures = undo_steps(done, raise_errors=False)
            if failures:
                LOG.error("Rollback incomplete: %s", "; ".join(failures))
            raise
        done.append(step)


def undo_steps(steps: Iterable[Step], raise_errors: bool = True) -> list[str]:
    """Run every step's ``undo`` in reverse order, continuing after errors.

    Returns the list of error texts; raises :class:`ChrootError` with all of them if
    ``raise_errors`` and any occurred.
    """
    failures: list[str] = []
    for step in reversed(list(steps)):
        if step.undo is None:
            continue
        LOG.info("Undo: %s", step.description)
        try:
            step.undo()
        except Exception as e:  # pylint: disable=broad-except  # clean-up that must not raise: undo every step, report all failures
            LOG.error("Undo failed: %s: %s", step.description, e)
            failures.append(f"{step.description}: {e}")
    if failures and raise_errors:
        raise ChrootError("Undo incomplete: " + "; ".join(failures))
    return failures


# ---------------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------------

class Populate:
    """How to fill a directory with the base system: debootstrap, or unpack a pristine base tarball."""

    def __init__(self, codename: str, arch: str, archive_url: str, keyring_path: Optional[call.FsPath],
                 debootstrap_command: str = debootstrap.DEFAULT_COMMAND, extra_options: Iterable[str] = (),
                 base_tarball: Optional[call.FsPath] = None, variant: str = "buildd") -> None:
        self.codename = codename
        self.variant = variant
        self.arch = arch
        self.archive_url = archive_url
        self.keyring_path = keyring_path
        self.debootstrap_command = debootstrap_command
        self.extra_options = extra_options
        self.base_tarball = base_tarball

    def __call__(self, target_dir: call.FsPath) -> None:
        """Fill the new ``CHROOT_DIR/source`` or ``CHROOT_DIR/tmp`` (as root); on failure it is removed again."""
        target = pathlib.Path(target_dir)
        privileged.populate(target.parent, target.name, self.archive_url, self.keyring_path, variant=self.variant,
                            command=self.debootstrap_command, extra_options=self.extra_options, base_tarball=self.base_tarball)


class Backend:
    """Base of all backends: where the data lives below ``chroot_dir`` and the steps making it."""

    #: Model-facing name ("Dir", "File", ...).
    name: Optional[str] = None

    def __init__(self, chroot_dir: call.FsPath, **options: Any) -> None:
        self.chroot_dir = pathlib.Path(chroot_dir).resolve()
        self.options = options

    def schroot_lines(self) -> list[str]:
        """The backend specific lines of the schroot config."""
        raise NotImplementedError

    def data_steps(self, populate: PopulateFn) -> list[Step]:
        """Steps creating the chroot data below :attr:`chroot_dir` (which exists), using ``populate(dir)``."""
        raise NotImplementedError

    def check_source(self, session: str) -> None:
        """Backend specific check run in an open source session (e.g. fsck for LVM). Default: nothing."""

    def activate(self) -> None:
        """Make the data usable before a session is opened (LVM: attach, activate, fsck). Default: nothing."""

    def conf_home(self) -> Optional[pathlib.Path]:
        """The instance home of the schroot config, if its lines name no path below it (LVM). Default: None (found from the lines)."""
        return None


class DirBackend(Backend):
    """Plain directory ``CHROOT_DIR/source``; sessions use an overlay union on top of it."""

    name = "Dir"

    def __init__(self, chroot_dir: call.FsPath, union_type: str = "overlay", **options: Any) -> None:
        super().__init__(chroot_dir, **options)
        self.union_type = union_type

    @property
    def source_dir(self) -> pathlib.Path:
        return self.chroot_dir / "source"

    def schroot_lines(self) -> list[str]:
        return ["type=directory", f"directory={self.source_dir}", f"union-type={self.union_type}"]

    def data_steps(self, populate: PopulateFn) -> list[Step]:
        return [Step(f"populate {self.source_dir}", lambda: populate(self.source_dir),
                     lambda: privileged.remove_data(self.chroot_dir, "source"))]


class FileBackend(Backend):
    """Tarball ``CHROOT_DIR/source.tar[.gz|.bz2|.xz]``, unpacked by schroot per session."""

    name = "File"

    def __init__(self, chroot_dir: call.FsPath, compression: Optional[str] = None, **options: Any) -> None:
        super().__init__(chroot_dir, **options)
        self.compression = compression or "none"
        if self.compression not in COMPRESSIONS:
            raise ChrootError(f"Unknown compression '{self.compression}' (choose from {', '.join(COMPRESSIONS)})")

    @property
    def tarball(self) -> pathlib.Path:
        return self.chroot_dir / ("source.tar" + COMPRESSIONS[self.compression][0])

    @property
    def tmp_dir(self) -> pathlib.Path:
        return self.chroot_dir / "tmp"

    def schroot_lines(self) -> list[str]:
        return ["type=file", f"file={self.tarball}"]

    def data_steps(self, populate: PopulateFn) -> list[Step]:
        return [
            Step(f"populate {self.tmp_dir}", lambda: populate(self.tmp_dir), lambda: privileged.remove_data(self.chroot_dir, "tmp")),
            Step(f"pack {self.tarball}", lambda: privileged.pack(self.chroot_dir, self.compression),
                 lambda: privileged.remove_data(self.chroot_dir, "tarballs")),
            Step(f"remove {self.tmp_dir}", lambda: privileged.remove_data(self.chroot_dir, "tmp"), None),
        ]


# BtrfsSnapshot, LVM and LoopLVM: the data on a btrfs subvolume or an LVM logical volume, made from
# a populated CHROOT/tmp by the root helper (mini_buildd.roothelper's BLOCK_OPERATIONS).

class BtrfsSnapshotBackend(Backend):
    """btrfs subvolume ``CHROOT_DIR/source``; each session gets a snapshot of it in ``CHROOT_DIR/snapshot``.

    ``HOME/var/chroots`` must be on a btrfs file system."""

    name = "BtrfsSnapshot"

    @property
    def source_dir(self) -> pathlib.Path:
        return self.chroot_dir / "source"

    @property
    def snapshot_dir(self) -> pathlib.Path:
        return self.chroot_dir / "snapshot"

    @property
    def tmp_dir(self) -> pathlib.Path:
        return self.chroot_dir / "tmp"

    def schroot_lines(self) -> list[str]:
        return ["type=btrfs-snapshot", f"btrfs-source-subvolume={self.source_dir}", f"btrfs-snapshot-directory={self.snapshot_dir}"]

    def _remove_subvolume(self) -> None:
        privileged.remove_data(self.chroot_dir, "snapshot")  # snapshots of sessions left behind are subvolumes too
        privileged.remove_data(self.chroot_dir, "source")

    def _check_btrfs(self) -> None:
        """Fail before the base system is made (the root helper checks again)."""
        kind = blockdevices.fs_type(self.chroot_dir)
        if kind != "btrfs":
            raise ChrootError(f"{self.chroot_dir} is on a '{kind}' file system, not btrfs: BtrfsSnapshot chroots need a btrfs "
                              f"file system mounted at {self.chroot_dir.parent.parent}.")

    def data_steps(self, populate: PopulateFn) -> list[Step]:
        return [
            Step(f"check btrfs at {self.chroot_dir}", self._check_btrfs, None),
            Step(f"populate {self.tmp_dir}", lambda: populate(self.tmp_dir), lambda: privileged.remove_data(self.chroot_dir, "tmp")),
            Step(f"btrfs subvolume {self.source_dir}", lambda: privileged.btrfs_fill(self.chroot_dir), self._remove_subvolume),
            Step(f"remove {self.tmp_dir}", lambda: privileged.remove_data(self.chroot_dir, "tmp"), None),
        ]


class LVMBackend(Backend):
    """Logical volume ``VG/mini-buildd-CODENAME-ARCH`` in an existing volume group; each session gets an LVM snapshot of it.

    The volume and each session's snapshot are ``snapshot_size`` GB."""

    name = "LVM"

    def __init__(self, chroot_dir: call.FsPath, volume_group: str = "auto", filesystem: str = "ext2", snapshot_size: int = 4,
                 **options: Any) -> None:
        super().__init__(chroot_dir, **options)
        self._volume_group = volume_group
        self.filesystem = filesystem
        self.snapshot_size = int(snapshot_size)
        if self.filesystem not in blockdevices.FILESYSTEMS:
            raise ChrootError(f"Unknown file system '{self.filesystem}' (choose from {', '.join(blockdevices.FILESYSTEMS)})")

    @property
    def codename(self) -> str:
        return self.chroot_dir.parent.name

    @property
    def arch(self) -> str:
        return self.chroot_dir.name

    @property
    def volume_group(self) -> str:
        return self._volume_group

    @property
    def logical_volume(self) -> str:
        return roothelper_blocks.lv_name(self.codename, self.arch)

    @property
    def device(self) -> pathlib.Path:
        return blockdevices.lv_device(self.volume_group, self.logical_volume)

    @property
    def tmp_dir(self) -> pathlib.Path:
        return self.chroot_dir / "tmp"

    def conf_home(self) -> Optional[pathlib.Path]:
        return self.chroot_dir.parents[3]  # HOME/var/chroots/CODENAME/ARCH

    def schroot_lines(self) -> list[str]:
        return ["type=lvm-snapshot", f"device={self.device}", f"mount-options=-t {self.filesystem} -o noatime",
                f"lvm-snapshot-options=--size {self.snapshot_size}G"]

    def _fill(self) -> None:
        if self.volume_group == "auto":
            raise ChrootError("LVM chroots need an existing volume group: set 'volume group' ('auto' is for LoopLVM chroots)")
        privileged.lvm_fill(self.chroot_dir, self.volume_group, self.filesystem, self.snapshot_size)

    def data_steps(self, populate: PopulateFn) -> list[Step]:
        return [
            Step(f"populate {self.tmp_dir}", lambda: populate(self.tmp_dir), lambda: privileged.remove_data(self.chroot_dir, "tmp")),
            Step(f"logical volume {self.device}", self._fill, lambda: privileged.lvm_remove(self.chroot_dir, self.volume_group)),
            Step(f"remove {self.tmp_dir}", lambda: privileged.remove_data(self.chroot_dir, "tmp"), None),
        ]

    def activate(self) -> None:
        privileged.lvm_activate(self.chroot_dir, self.volume_group, self.filesystem)


class LoopLVMBackend(LVMBackend):
    """:class:`LVMBackend` in its own volume group ``mini-buildd-loop-CODENAME-ARCH`` on the (sparse) loop file
    ``CHROOT_DIR/lvmloop.image`` of ``loop_size`` GB."""

    name = "LoopLVM"

    def __init__(self, chroot_dir: call.FsPath, loop_size: int = 100, **options: Any) -> None:
        super().__init__(chroot_dir, **options)
        self.loop_size = int(loop_size)

    @property
    def volume_group(self) -> str:
        return roothelper_blocks.loop_vg_name(self.codename, self.arch)

    @property
    def loop_image(self) -> pathlib.Path:
        return self.chroot_dir / roothelper_blocks.LOOP_IMAGE

    def data_steps(self, populate: PopulateFn) -> list[Step]:
        return [Step(f"loop volume group {self.volume_group} on {self.loop_image}",
                     lambda: privileged.loop_vg_create(self.chroot_dir, self.loop_size),
                     lambda: privileged.loop_vg_remove(self.chroot_dir))] + super().data_steps(populate)

    def activate(self) -> None:
        privileged.lvm_activate(self.chroot_dir, self.volume_group, self.filesystem, loop=True)


#: Backend name -> class.
BACKENDS: dict[Optional[str], type[Backend]] = {cls.name: cls for cls in (DirBackend, FileBackend)}
BLOCK_BACKENDS: tuple[type[Backend], ...] = (BtrfsSnapshotBackend, LVMBackend, LoopLVMBackend)
BACKENDS.update({cls.name: cls for cls in BLOCK_BACKENDS})


def get_backend(backend: Union[str, Backend], chroot_dir: call.FsPath, **options: Any) -> Backend:
    """A backend instance from its name (or pass an instance through)."""
    if isinstance(backend, Backend):
        return backend
    try:
        cls = BACKENDS[backend]
    except KeyError as e:
        raise ChrootError(f"Unsupported chroot backend '{backend}' (supported: {', '.join(str(b) for b in BACKENDS)})") from e
    return cls(chroot_dir, **options)


# ---------------------------------------------------------------------------------------------
# Prepare, remove, check
# ---------------------------------------------------------------------------------------------

def _mkdir_chroot_dir(chroot_dir: call.FsPath) -> None:
    privileged.make_chroot_dir(chroot_dir)


def _rm_chroot_dir(chroot_dir: call.FsPath) -> None:
    privileged.remove_data(chroot_dir, "all")  # and the CODENAME/ dir, when this was its last arch


def _end_sessions_and_remove_conf(name: str, home: Optional[pathlib.Path] = None) -> None:
    schroot.end_sessions_of(name)
    schroot.remove_conf(name, home=home)


def _steps(backend: Backend, name: str, description: str, users: Names, groups: Names, personality: str,
           rw_dirs: Dirs, populate: PopulateFn) -> list[Step]:
    """``rw_dirs``: None (use the global fstab) or the dirs a build may write (own fstab)."""
    chroot_dir = backend.chroot_dir
    steps = [Step(f"create {chroot_dir}", lambda: _mkdir_chroot_dir(chroot_dir), lambda: _rm_chroot_dir(chroot_dir))]
    steps += backend.data_steps(populate)
    if rw_dirs is not None:
        fstab = schroot.fstab_setup_name(name)
        steps.append(Step(f"install fstab {schroot.fstab_path(name)}",
                          lambda: schroot.install_fstab(rw_dirs, name), lambda: schroot.remove_fstab(name)))
    else:
        fstab = schroot.GLOBAL_FSTAB
    text = schroot.conf_text(name, description, backend.schroot_lines(), users=users, groups=groups,
                             personality=personality, fstab=fstab)
    steps.append(Step(f"install schroot config {schroot.conf_path(name)}",
                      lambda: schroot.install_conf(name, text, home=backend.conf_home()),
                      lambda: _end_sessions_and_remove_conf(name, backend.conf_home())))
    return steps


def prepare(backend: Union[str, Backend], name: str, codename: str, arch: str,  # pylint: disable=too-many-arguments  # a chroot's whole configuration
            chroot_dir: call.FsPath, archive_url: str, keyring_path: Optional[call.FsPath] = DEFAULT_KEYRING,
            users: Names = ("mini-buildd",), groups: Names = ("sbuild",), personality: str = "linux",
            debootstrap_command: str = debootstrap.DEFAULT_COMMAND, extra_options: Iterable[str] = (),
            compression: Optional[str] = None, base_tarball: Optional[call.FsPath] = None, shared_dir: Optional[call.FsPath] = None,
            description: Optional[str] = None, union_type: str = "overlay", **backend_options: Any) -> None:
    """Create chroot ``name`` (schroot name) for ``codename``/``arch`` in ``chroot_dir`` with ``backend``.

    ``backend`` is ``"Dir"`` or ``"File"`` (``compression`` none/gzip/bzip2/xz for File,
    ``union_type`` for Dir). The base system comes from debootstrap (``archive_url``,
    ``keyring_path``, ``debootstrap_command``, ``extra_options``), or from ``base_tarball`` if
    given (see :func:`cached_debootstrap_tarball`). With ``shared_dir`` (the instance's
    ``var/shared``) a per-chroot fstab is installed that binds only this chroot's ccache dir
    below it (build confinement: builds see no other part of ``var/shared``, see
    :mod:`mini_buildd.tools.schroot`); without, the chroot uses the global ``mini-buildd/fstab``
    (:func:`mini_buildd.tools.schroot.install_fstab`), which must exist.

    All or nothing: on failure everything done is undone and the error re-raised.
    """
    be = get_backend(backend, chroot_dir, compression=compression, union_type=union_type, **backend_options)
    if schroot.conf_path(name).exists():
        raise ChrootError(f"schroot config {schroot.conf_path(name)} exists already (remove the chroot first)")
    if be.chroot_dir.exists():
        raise ChrootError(f"Chroot dir {be.chroot_dir} exists already (remove the chroot first)")
    if shared_dir is None and not schroot.fstab_path().exists():
        raise ChrootError(f"Global schroot fstab {schroot.fstab_path()} missing (install it, or give shared_dir)")
    populate = Populate(codename, arch, archive_url, keyring_path, debootstrap_command=debootstrap_command,
                        extra_options=extra_options, base_tarball=base_tarball)
    description = description or f"Mini-Buildd chroot {name}"
    LOG.info("Preparing chroot %s (%s backend) in %s", name, be.name, be.chroot_dir)
    rw_dirs: Dirs = None if shared_dir is None else [config.shared_ccache_dir(shared_dir, codename, arch)]
    run_steps(_steps(be, name, description, users, groups, personality, rw_dirs, populate))
    LOG.info("Prepared chroot %s", name)


def _no_populate(_target_dir: pathlib.Path) -> None:
    """The populate of :func:`remove`'s steps: only their undo parts run."""


def remove(backend: Union[str, Backend], name: str, chroot_dir: call.FsPath, compression: Optional[str] = None,
           union_type: str = "overlay", **_prepare_kwargs: Any) -> None:
    """Undo :func:`prepare`: end the chroot's sessions, remove its schroot config, fstab and data.

    Idempotent (removing a removed chroot is fine). Takes (and ignores) the other arguments of
    :func:`prepare`, so callers can pass the same arguments to both.
    """
    be = get_backend(backend, chroot_dir, compression=compression, union_type=union_type, **_prepare_kwargs)
    LOG.info("Removing chroot %s (%s backend) in %s", name, be.name, be.chroot_dir)
    steps = _steps(be, name, "", (), (), "linux", "unused", _no_populate)  # only the undo parts matter here
    undo_steps(steps)
    LOG.info("Removed chroot %s", name)


#: The check's apt-get runs dpkg without fsync (a failed check leaves a chroot to check again, not to trust).
APT_GET_UNSAFE_IO = ["--option=Dpkg::Options::=--force-unsafe-io"]

#: debconf answers of the check: no dialogs; man-db does not rebuild its index database on every
#: package install (its trigger is most of a small install's time; builds read no manual pages).
DEBCONF_SELECTIONS = "debconf debconf/frontend select Noninteractive\nman-db man-db/auto-update boolean false\n"


def check(name: str, sources_list_text: str, backend: Union[str, Backend, None] = None, packages: Sequence[str] = ()) -> str:
    """Check and update chroot ``name`` in a *source* session: apt sources, update, dist-upgrade, clean.

    ``packages`` (the build tools) are installed by the same ``dist-upgrade``. When ``eatmydata`` is one of them, it is
    installed first and the rest runs under it (no fsync at all: dpkg's database and apt's
    files too); dpkg always runs with ``--force-unsafe-io``. Each step's time is logged.
    Returns the collected output; raises :class:`ChrootError` on failure (autoremove failing is
    only logged).
    """
    be = backend if isinstance(backend, Backend) else None
    output: list[str] = []
    wrapper: list[str] = []

    def run(sid: str, argv: call.Argv, **kwargs: Any) -> str:
        started = time.monotonic()
        out = schroot.run_in_session(sid, wrapper + [str(a) for a in argv], **kwargs)
        LOG.info("Chroot %s: %s: %.1f s", name, " ".join(str(a) for a in argv if not str(a).startswith("--") and "=" not in str(a))[-60:],
                 time.monotonic() - started)
        output.append(out)
        return out

    apt_get = APT_GET + APT_GET_UNSAFE_IO
    try:
        if be is not None:
            be.activate()
        with schroot.session(name, source=True) as sid:
            run(sid, ["debconf-set-selections"], input=DEBCONF_SELECTIONS)
            if be is not None:
                be.check_source(sid)
            run(sid, ["sh", "-c", "cat >/etc/apt/sources.list"], input=sources_list_text)
            run(sid, apt_get + ["update"])
            if "eatmydata" in packages:
                run(sid, apt_get + ["install", "eatmydata"])
                wrapper = ["eatmydata"]
            run(sid, apt_get + ["--ignore-missing", "dist-upgrade"] + list(packages))  # upgrade and install in one dpkg run
            try:
                run(sid, apt_get + ["--purge", "autoremove"])
            except call.CallError as e:
                LOG.warning("Chroot %s: autoremove failed (ignored): %s", name, e)
            run(sid, apt_get + ["clean"])
    except (call.CallError, schroot.SchrootError, privileged.PrivilegeError) as e:
        raise ChrootError(f"Check of chroot {name} failed: {e}") from e
    LOG.info("Checked chroot %s", name)
    return "".join(output)


# ---------------------------------------------------------------------------------------------
# Cached pristine base tarball
# ---------------------------------------------------------------------------------------------

def cached_tarball_path(codename: str, arch: str, variant: str = "buildd", include: Sequence[str] = (),
                        apt_lines: Sequence[str] = ()) -> pathlib.Path:
    """Where :func:`cached_debootstrap_tarball` keeps the tarball."""
    return config.cached_tarball(codename, arch, variant, include, apt_lines)


def cached_debootstrap_tarball(codename: str, arch: str, archive_url: str, keyring_path: Optional[call.FsPath] = DEFAULT_KEYRING,
                               variant: str = "buildd", refresh: bool = False, include: Sequence[str] = (),
                               check_valid_until: bool = True, apt_lines: Sequence[str] = ()) -> pathlib.Path:
    """Return a debootstrap tarball of ``codename``/``arch``, debootstrapping only once.

    The tarball is kept in :data:`mini_buildd.config.CACHE_DIR` (root-owned: made by the root
    helper) and reused by later calls (and processes: a lock serializes them). Use it as
    ``base_tarball`` of :func:`prepare`; :func:`check` brings the chroot up to date afterwards.
    With ``include`` (e.g. :func:`mini_buildd.tools.sbuild.chroot_preinstall_packages`), these
    packages are installed in it by apt (once; a tarball per set of names), so that the check
    only updates them (``check_valid_until``: as the source's setting, for apt installing them);
    with ``apt_lines`` (the chroot's sources.list lines) they are its sources and the tarball is also
    upgraded from them (its security updates), so that the check finds next to nothing to do.
    """
    return pathlib.Path(privileged.cache_tarball(codename, arch, archive_url, keyring_path=keyring_path, variant=variant,
                                                 refresh=refresh, include=include, check_valid_until=check_valid_until,
                                                 apt_lines=apt_lines))


# ---------------------------------------------------------------------------------------------
# Unshare mode chroots: an mmdebstrap tarball for ``sbuild --chroot-mode=unshare``, no root at all
# ---------------------------------------------------------------------------------------------

#: Backend name of unshare mode chroots. Not in :data:`BACKENDS`: there is no schroot config, no
#: root-owned data and no session; sbuild unpacks the tarball into a user namespace per build.
UNSHARE = "Unshare"


def unshare_digest(variant: str = "buildd", components: Iterable[str] = ("main",), include: Iterable[str] = (),
                   extra_options: mmdebstrap.Options = None, apt_lines: Sequence[str] = ()) -> str:
    """A short digest of the options a tarball is made with (part of its cache name)."""
    options = [variant, list(components), sorted(include), mmdebstrap.command("c", "a", "t", "u", extra_options=extra_options)]
    if apt_lines:
        options.append(list(apt_lines))
    text = json.dumps(options)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cached_unshare_tarball(codename: str, arch: str, archive_url: str, keyring_path: Optional[call.FsPath] = None,
                           variant: str = "buildd", components: Iterable[str] = ("main",), include: Iterable[str] = (),
                           extra_options: mmdebstrap.Options = None, apt_lines: Sequence[str] = (), refresh: bool = False) -> pathlib.Path:
    """Return an mmdebstrap tarball of ``codename``/``arch`` made with these options, running
    mmdebstrap only once (per option set: see :func:`unshare_digest`).

    The tarball is kept in :data:`mini_buildd.config.CACHE_DIR` (needs a user who may write there,
    e.g. root: it runs mmdebstrap in root mode then) and reused by later calls and processes (a
    lock serializes them). Use it as ``base_tarball`` of :func:`unshare_prepare`.
    """
    include = list(include)
    tarball = config.cached_unshare_tarball(codename, arch, variant, unshare_digest(variant, components, include, extra_options, apt_lines))
    tarball.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(tarball.with_name(tarball.name + ".lock"), "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tarball.exists() and not refresh:
            LOG.info("Using cached mmdebstrap tarball %s", tarball)
            return tarball
        mmdebstrap.create(codename, arch, tarball, archive_url, keyring_path=keyring_path, variant=variant,
                          mode="root" if os.geteuid() == 0 else "unshare", components=components, include=include,
                          extra_options=extra_options, apt_lines=apt_lines)
        tarball.chmod(0o644)
    LOG.info("Cached mmdebstrap tarball %s", tarball)
    return tarball


def _unshare_make(tarball: pathlib.Path, base_tarball: Optional[call.FsPath], mmdebstrap_args: dict[str, Any]) -> None:
    """The do of :func:`unshare_prepare`'s step: cleans up its own partial work when it fails."""
    try:
        tarball.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if base_tarball is not None:
            part = tarball.with_name(tarball.name + ".part")
            shutil.copyfile(base_tarball, part)
            os.replace(part, tarball)
        else:
            mmdebstrap.create(target=tarball, mode="unshare", **mmdebstrap_args)
        tarball.chmod(0o600)
    except BaseException:
        unshare_remove(tarball)
        raise


def unshare_prepare(tarball: call.FsPath, codename: str, arch: str, archive_url: str,  # pylint: disable=too-many-arguments  # mmdebstrap's
                    keyring_path: Optional[call.FsPath] = None,
                    variant: str = "buildd", components: Iterable[str] = ("main",), include: Iterable[str] = (),
                    extra_options: mmdebstrap.Options = None, base_tarball: Optional[call.FsPath] = None,
                    apt_lines: Sequence[str] = ()) -> None:
    """Create the unshare mode chroot ``tarball`` (the daemon's own file) of ``codename``/``arch``:
    mmdebstrap in unshare mode (as the calling user; see :func:`mini_buildd.tools.mmdebstrap.check_subids`),
    or a copy of ``base_tarball`` (see :func:`cached_unshare_tarball`). All or nothing."""
    path = pathlib.Path(tarball)
    if path.exists():
        raise ChrootError(f"Chroot tarball {path} exists already (remove the chroot first)")
    args = {"codename": codename, "arch": arch, "archive_url": archive_url, "keyring_path": keyring_path, "variant": variant,
            "components": list(components), "include": list(include), "extra_options": extra_options, "apt_lines": list(apt_lines)}
    LOG.info("Preparing unshare mode chroot %s", path)
    run_steps([Step(f"create {path}", lambda: _unshare_make(path, base_tarball, args), lambda: unshare_remove(path))])
    LOG.info("Prepared unshare mode chroot %s", path)


def unshare_remove(tarball: call.FsPath) -> None:
    """Undo :func:`unshare_prepare` (idempotent): the tarball, a partial one, their dir when empty."""
    path = pathlib.Path(tarball)
    for file in (path, path.with_name(path.name + ".part")):
        file.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()
    LOG.info("Removed unshare mode chroot %s", path)


def unshare_check(tarball: call.FsPath, user: Optional[str] = None) -> str:
    """Check an unshare mode chroot: the tarball is a readable tar, ``user`` (default: the effective
    user) has subordinate ids and may make user namespaces. sbuild updates the chroot in every
    build (its apt-update), so the tarball itself is not changed. Returns a one-line report."""
    tarball = pathlib.Path(tarball)
    if not tarball.is_file():
        raise ChrootError(f"Chroot tarball {tarball} is missing (prepare the chroot)")
    if not os.access(tarball, os.R_OK):
        raise ChrootError(f"Chroot tarball {tarball} is not readable")
    try:
        if not tarfile.is_tarfile(tarball):
            raise ChrootError(f"Chroot tarball {tarball} is not a tar archive")
    except OSError as e:
        raise ChrootError(f"Chroot tarball {tarball}: {e}") from e
    try:
        mmdebstrap.check_subids(user)
    except mmdebstrap.MmdebstrapError as e:
        raise ChrootError(str(e)) from e
    try:
        call.run(["unshare", "--user", "--map-root-user", "true"], timeout=60)
    except call.CallError as e:
        raise ChrootError(f"User namespaces are not available: {e}") from e
    size = tarball.stat().st_size
    LOG.info("Checked unshare mode chroot %s", tarball)
    return f"{tarball}: {size // (1024 * 1024)} MiB tarball, subordinate ids and user namespaces available."
