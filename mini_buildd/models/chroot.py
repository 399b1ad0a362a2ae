"""Build chroots (upstream §2.5): one per codename and architecture, with Dir (overlay union), File
(tarball), BtrfsSnapshot (btrfs subvolume), LVM and LoopLVM (logical volume) backends; the model
owns ``~/var/chroots/CODENAME/ARCH/`` and the schroot config ``mini-buildd-CODENAME-ARCH``.

:class:`UnshareChroot` needs no schroot: an mmdebstrap tarball of the daemon's own for sbuild's
unshare mode (selected per chroot by its type; :func:`sbuild_chroot` tells the builder).
"""

import logging
import os

from django.core.validators import MinValueValidator
from django.db import models

from mini_buildd import config
from mini_buildd.models.base import StatusModel, StatusError
from mini_buildd.models.repository import Distribution
from mini_buildd.models.source import Source, Architecture
from mini_buildd.tools import blockdevices, chroot_backends, debootstrap, gnupg, sbuild

LOG = logging.getLogger(__name__)


class Chroot(StatusModel):
    """Base of all chroot backends (multi-table inheritance)."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE)
    architecture = models.ForeignKey(Architecture, on_delete=models.CASCADE)
    debootstrap_command = models.CharField(max_length=255, default=debootstrap.DEFAULT_COMMAND)
    debootstrap_extra_options = models.CharField(max_length=255, blank=True, default="", help_text="e.g. --include=foo,bar")
    personality = models.CharField(max_length=50, default="linux", editable=False)
    personality_override = models.CharField(max_length=50, blank=True, default="")

    mbd_volatile_fields = ("personality",)
    mbd_backend = None

    class Meta:
        unique_together = ("source", "architecture")
        ordering = ["source__codename", "architecture__name"]

    def __str__(self):
        return f"{self.source.codename}:{self.architecture.name}"

    @classmethod
    def mbd_concrete_all(cls, queryset=None):
        """The backend (subclass) objects of ``queryset`` (default: all chroots)."""
        qs = Chroot.objects.all() if queryset is None else queryset
        return [c.mbd_concrete() for c in qs.select_related("source", "architecture")]

    def mbd_concrete(self):
        """The concrete chroot (DirChroot, FileChroot, ...: any subclass) of this one, else itself."""
        for sub in Chroot.__subclasses__():
            try:
                return getattr(self, sub._meta.model_name)  # pylint: disable=protected-access  # Django's model options
            except (AttributeError, models.ObjectDoesNotExist):
                continue
        return self

    def save(self, *args, **kwargs):
        self.personality = "linux32" if self.architecture_id == "i386" else "linux"
        super().save(*args, **kwargs)

    @property
    def mbd_codename(self):
        return self.source.codename

    @property
    def mbd_key(self):
        return f"chroot '{self}'"

    def mbd_schroot_name(self):
        """``PREFIX-CODENAME-ARCH``; the prefix is per home (default ``mini-buildd``, see config.schroot_name)."""
        return config.schroot_name(self.source.codename, self.architecture.name)

    def mbd_path(self):
        return config.paths.chroot_dir(self.source.codename, self.architecture.name)

    def mbd_personality(self):
        return self.personality_override or self.personality

    def mbd_backend_args(self):
        """Backend-specific keyword arguments for :mod:`mini_buildd.tools.chroot_backends`."""
        return {}

    def _common_args(self):
        return {"name": self.mbd_schroot_name(), "chroot_dir": self.mbd_path()}

    def mbd_prepare_data(self):
        if self.mbd_backend is None:
            raise StatusError("Abstract chroot: use a backend (Dir, File).")
        archive = self.source.mbd_archive()
        if archive is None:
            raise StatusError(f"Source {self.source} has no checked archive: check the source first.")
        keyring_path = config.paths.tmp / f"{self.mbd_schroot_name()}-keyring.gpg"
        try:
            sources = self.mbd_apt_sources()
            with gnupg.TmpKeyring(parent=config.paths.tmp) as keyring:
                for key in {key.pk: key for source, _line in sources for key in source.apt_keys.all()}.values():
                    keyring.add_pub_key(key.key)
                keyring.export(keyring_path)
            base_tarball = None
            if config.runtime.debootstrap_cache:
                base_tarball = chroot_backends.cached_debootstrap_tarball(
                    self.source.codename, self.architecture.name, archive.url, keyring_path=keyring_path,
                    include=self.mbd_preinstall_packages(), check_valid_until=self.source.check_valid_until,
                    apt_lines=[line for _source, line in sources])
            chroot_backends.prepare(
                backend=self.mbd_backend, codename=self.source.codename, arch=self.architecture.name,
                archive_url=archive.url, keyring_path=keyring_path,
                users=[config.runtime.dedicated_user], personality=self.mbd_personality(),
                debootstrap_command=self.debootstrap_command, extra_options=self.debootstrap_extra_options.split(),
                shared_dir=config.paths.shared, base_tarball=base_tarball, **self._common_args(), **self.mbd_backend_args())
        finally:
            keyring_path.unlink(missing_ok=True)

    def mbd_remove_data(self):
        chroot_backends.remove(backend=self.mbd_backend, **self._common_args(), **self.mbd_backend_args())

    def mbd_check_data(self):
        archive = self.source.mbd_archive()
        if archive is None:
            raise StatusError(f"Source {self.source} has no checked archive.")
        line = self.mbd_apt_lines()
        chroot_backends.check(self.mbd_schroot_name(), line,
                              backend=chroot_backends.get_backend(self.mbd_backend, self.mbd_path(), **self.mbd_backend_args()),
                              packages=self.mbd_preinstall_packages())

    @staticmethod
    def mbd_preinstall_packages():
        """Tools every build needs, installed once in the chroot (by its check, or already in the
        cached base tarball), not in every build (see :mod:`mini_buildd.tools.sbuild`)."""
        return sbuild.chroot_preinstall_packages("aptitude")

    def mbd_apt_sources(self):
        """[(source, its apt line)] of the chroot: the same archive lines builds use (all components
        of the distributions on this codename, and their extra sources with a checked archive)."""
        dists = list(Distribution.objects.filter(base_source=self.source))
        components = sorted({c for d in dists for c in d.mbd_components()}) or ["main"]
        sources = [(self.source, self.source.mbd_apt_line(components=components))]
        for d in dists:
            for ps in d.extra_sources.select_related("source"):
                if ps.source.mbd_archive() is not None:
                    line = ps.source.mbd_apt_line(components=components)
                    if line not in [known for _source, known in sources]:
                        sources.append((ps.source, line))
        return sources

    def mbd_apt_lines(self):
        """sources.list for the chroot check (see :meth:`mbd_apt_sources`), so that the big indexes
        are already in the chroot and a build's apt-get update only fetches what changed. The cached
        base tarball is made with the same lines (its updates installed once, not by every check)."""
        return "".join(f"{line}\n" for _source, line in self.mbd_apt_sources())

    def mbd_dependencies(self):
        return [self.source]


class DirChroot(Chroot):
    """Plain directory with an overlay union for sessions."""

    UNION_CHOICES = (("overlay", "overlay"), ("overlayfs", "overlayfs"), ("aufs", "aufs"), ("unionfs", "unionfs"))
    union_type = models.CharField(max_length=20, choices=UNION_CHOICES, default="overlay")
    mbd_backend = "Dir"

    class Meta:
        verbose_name = "Dir chroot"

    def mbd_backend_args(self):
        return {"union_type": self.union_type}


class FileChroot(Chroot):
    """Tarball, unpacked for each session."""

    COMPRESSION_CHOICES = (("none", "none"), ("gzip", "gzip"), ("bzip2", "bzip2"), ("xz", "xz"))
    compression = models.CharField(max_length=10, choices=COMPRESSION_CHOICES, default="none")
    mbd_backend = "File"

    class Meta:
        verbose_name = "File chroot"

    def mbd_backend_args(self):
        return {"compression": self.compression}


class UnshareChroot(Chroot):
    """An mmdebstrap tarball for sbuild's unshare mode (``var/unshare-chroots/CODENAME-ARCH.tar``):
    no schroot, no root, neither to make it nor to build; the daemon's user needs subordinate ids
    (see :mod:`mini_buildd.tools.mmdebstrap`). ``debootstrap_extra_options`` are given to
    mmdebstrap (e.g. ``--include=foo,bar``); ``debootstrap_command`` is not used. sbuild updates
    the chroot in each build, so the check does not change the tarball."""

    mbd_backend = chroot_backends.UNSHARE

    class Meta:
        verbose_name = "Unshare chroot"

    def mbd_tarball(self):
        return config.paths.unshare_tarball(self.source.codename, self.architecture.name)

    def _mmdebstrap_args(self):
        """What the tarball is made of: the components of the distributions on this codename, the
        apt lines of builds (:meth:`Chroot.mbd_apt_sources`: with the security updates in the
        tarball, no build installs them again), the tools every build needs (as the schroot
        chroots' check installs them), the extra options."""
        dists = Distribution.objects.filter(base_source=self.source)
        return {"variant": "buildd", "components": sorted({c for d in dists for c in d.mbd_components()}) or ["main"],
                "include": self.mbd_preinstall_packages(), "extra_options": self.debootstrap_extra_options,
                "apt_lines": [line for _source, line in self.mbd_apt_sources()]}

    def _base_tarball(self, archive_url, keyring_path, args):
        """The cached tarball made with the same options, when the debootstrap cache is on (it is
        made here if missing and the cache dir is writable, e.g. by root); else None."""
        if not config.runtime.debootstrap_cache:
            return None
        digest = chroot_backends.unshare_digest(**args)
        cached = config.cached_unshare_tarball(self.source.codename, self.architecture.name, args["variant"], digest)
        if cached.is_file():
            return cached
        if os.access(cached.parent if cached.parent.is_dir() else cached.parent.parent, os.W_OK):
            return chroot_backends.cached_unshare_tarball(self.source.codename, self.architecture.name, archive_url,
                                                          keyring_path=keyring_path, **args)
        return None

    def mbd_prepare_data(self):
        archive = self.source.mbd_archive()
        if archive is None:
            raise StatusError(f"Source {self.source} has no checked archive: check the source first.")
        keyring_path = config.paths.tmp / f"unshare-{self.source.codename}-{self.architecture.name}-keyring.gpg"
        try:
            keys = [key for source, _line in self.mbd_apt_sources() for key in source.apt_keys.all()]
            if keys:
                with gnupg.TmpKeyring(parent=config.paths.tmp) as keyring:
                    for key in keys:
                        keyring.add_pub_key(key.key)
                    keyring.export(keyring_path)
            args = self._mmdebstrap_args()
            chroot_backends.unshare_prepare(
                self.mbd_tarball(), self.source.codename, self.architecture.name, archive.url,
                keyring_path=keyring_path if keys else None,
                base_tarball=self._base_tarball(archive.url, keyring_path if keys else None, args), **args)
        finally:
            keyring_path.unlink(missing_ok=True)

    def mbd_remove_data(self):
        chroot_backends.unshare_remove(self.mbd_tarball())

    def mbd_check_data(self):
        LOG.info("%s: %s", self.mbd_key, chroot_backends.unshare_check(self.mbd_tarball()))


def sbuild_chroot(codename, arch):
    """``(chroot mode, chroot)`` of this instance's builds for ``codename``/``arch`` (see
    :func:`mini_buildd.tools.sbuild.command`): ``("unshare", tarball path)`` if its chroot is an
    :class:`UnshareChroot`, else ``("schroot", schroot name)``."""
    if UnshareChroot.objects.filter(source__codename=codename, architecture__name=arch).exists():
        return "unshare", str(config.paths.unshare_tarball(codename, arch))
    return "schroot", config.schroot_name(codename, arch)


def sbuild_target(codename, arch):
    """``(chroot mode, chroot, libdir)`` of a build for ``codename``/``arch`` (:func:`sbuild_chroot`, and
    the libdir sbuild binds in: the home's per-chroot dir, made if missing; none of the host's for an
    unshare build)."""
    chroot_mode, chroot = sbuild_chroot(codename, arch)
    if chroot_mode == "unshare":
        return chroot_mode, chroot, sbuild.UNSHARE_LIBDIR  # nothing of the host is bound into an unshare build
    libdir = config.paths.libdir(codename, arch)
    libdir.mkdir(parents=True, exist_ok=True)
    return chroot_mode, chroot, libdir


# BtrfsSnapshot, LVM and LoopLVM chroots (mini_buildd.tools.chroot_backends, doc/manual: chroots)

class BtrfsSnapshotChroot(Chroot):
    """btrfs subvolume, a snapshot per session: ``~/var/chroots`` must be on a btrfs file system."""

    mbd_backend = "BtrfsSnapshot"

    class Meta:
        verbose_name = "Btrfs snapshot chroot"


FILESYSTEM_CHOICES = tuple((fs, fs) for fs in blockdevices.FILESYSTEMS)


def _filesystem_field():
    return models.CharField(max_length=10, choices=FILESYSTEM_CHOICES, default="ext2",
                            help_text="File system of the chroot's logical volume.")


def _snapshot_size_field():
    return models.PositiveIntegerField(default=4, validators=[MinValueValidator(1)],
                                       help_text="Size (GB) of the chroot's logical volume, and of each build's snapshot of it.")


class LVMChroot(Chroot):
    """Logical volume ``mini-buildd-CODENAME-ARCH`` in an existing volume group, an LVM snapshot per session."""

    volume_group = models.CharField(max_length=80, default="auto",
                                    help_text="An existing LVM volume group ('auto' is only for loop LVM chroots: set it here).")
    filesystem = _filesystem_field()
    snapshot_size = _snapshot_size_field()
    mbd_backend = "LVM"

    class Meta:
        verbose_name = "LVM chroot"

    def mbd_backend_args(self):
        return {"volume_group": self.volume_group, "filesystem": self.filesystem, "snapshot_size": self.snapshot_size}


class LoopLVMChroot(Chroot):
    """As :class:`LVMChroot`, in a volume group of its own (``mini-buildd-loop-CODENAME-ARCH``) on the
    sparse loop file ``~/var/chroots/CODENAME/ARCH/lvmloop.image``."""

    filesystem = _filesystem_field()
    snapshot_size = _snapshot_size_field()
    loop_size = models.PositiveIntegerField(default=100, validators=[MinValueValidator(1)],
                                            help_text="Size (GB) of the (sparse) loop file holding the volume group.")
    mbd_backend = "LoopLVM"

    class Meta:
        verbose_name = "Loop LVM chroot"

    def mbd_backend_args(self):
        return {"filesystem": self.filesystem, "snapshot_size": self.snapshot_size, "loop_size": self.loop_size}
