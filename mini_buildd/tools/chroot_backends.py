"""Chroot backends: how a build chroot's data is made, checked and removed, as undoable steps.

A chroot (upstream §2.5) is one debootstrapped system per codename/arch under
``~/var/chroots/CODENAME/ARCH/`` plus its schroot config ``mini-buildd-CODENAME-ARCH``. Preparing
it is a list of :class:`Step` s, each a ``do`` with its ``undo``: if a step fails, the steps
done so far are undone in reverse, so a failed prepare leaves no config, mount or directory
behind; :func:`remove` runs all undo parts in reverse (idempotent).

Backends implemented: ``Dir`` (directory + overlay union) and ``File`` (tarball). LVM, loop-LVM
and btrfs snapshot backends fit in by subclassing :class:`Backend` (``schroot_lines``,
``data_steps``, ``check_source``) and adding the class to :data:`BACKENDS`.

Every step that needs root (debootstrap, tar with owners, mounts, removing the root-owned data,
schroot files) is an operation of :mod:`mini_buildd.roothelper`, run through
:mod:`mini_buildd.tools.privileged` (sudo when the daemon is not root); sessions go through
:mod:`mini_buildd.tools.schroot`.
"""

import logging
import pathlib

from mini_buildd.tools import call, debootstrap, privileged, schroot
from mini_buildd import config, errors
from mini_buildd.roothelper import COMPRESSIONS

LOG = logging.getLogger(__name__)

DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

#: Options for the apt-get calls of :func:`check`.
APT_GET = ["env", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C", "apt-get", "--quiet", "--yes",
           "--option=APT::Install-Recommends=false", "--option=Dpkg::Use-Pty=false",
           "--option=Dpkg::Options::=--force-confdef", "--option=Dpkg::Options::=--force-confnew"]


class ChrootError(errors.ToolError):
    """Preparing, checking or removing a chroot failed."""


# ---------------------------------------------------------------------------------------------
# Undoable steps
# ---------------------------------------------------------------------------------------------

class Step:
    """One undoable step: ``do()`` and ``undo()`` callables.

    ``do`` must clean up its own partial work when it fails. ``undo`` must be idempotent: it is
    also run (by :func:`undo_steps`) when ``do`` never ran, e.g. on remove.
    """

    def __init__(self, description, do=None, undo=None):
        self.description = description
        self.do = do
        self.undo = undo

    def __repr__(self):
        return f"Step({self.description})"


def run_steps(steps):
    """Run each step's ``do``; on failure undo the steps done (reverse order) and re-raise."""
    done = []
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


def undo_steps(steps, raise_errors=True):
    """Run every step's ``undo`` in reverse order, continuing after errors.

    Returns the list of error texts; raises :class:`ChrootError` with all of them if
    ``raise_errors`` and any occurred.
    """
    failures = []
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

    def __init__(self, codename, arch, archive_url, keyring_path, debootstrap_command=debootstrap.DEFAULT_COMMAND,
                 extra_options=(), base_tarball=None, variant="buildd"):
        self.codename = codename
        self.variant = variant
        self.arch = arch
        self.archive_url = archive_url
        self.keyring_path = keyring_path
        self.debootstrap_command = debootstrap_command
        self.extra_options = extra_options
        self.base_tarball = base_tarball

    def __call__(self, target_dir):
        """Fill the new ``CHROOT_DIR/source`` or ``CHROOT_DIR/tmp`` (as root); on failure it is removed again."""
        target_dir = pathlib.Path(target_dir)
        privileged.populate(target_dir.parent, target_dir.name, self.archive_url, self.keyring_path, variant=self.variant,
                            command=self.debootstrap_command, extra_options=self.extra_options, base_tarball=self.base_tarball)


class Backend:
    """Base of all backends: where the data lives below ``chroot_dir`` and the steps making it."""

    #: Model-facing name ("Dir", "File", ...).
    name = None

    def __init__(self, chroot_dir, **options):
        self.chroot_dir = pathlib.Path(chroot_dir).resolve()
        self.options = options

    def schroot_lines(self):
        """The backend specific lines of the schroot config."""
        raise NotImplementedError

    def data_steps(self, populate):
        """Steps creating the chroot data below :attr:`chroot_dir` (which exists), using ``populate(dir)``."""
        raise NotImplementedError

    def check_source(self, session):
        """Backend specific check run in an open source session (e.g. fsck for LVM). Default: nothing."""


class DirBackend(Backend):
    """Plain directory ``CHROOT_DIR/source``; sessions use an overlay union on top of it."""

    name = "Dir"

    def __init__(self, chroot_dir, union_type="overlay", **options):
        super().__init__(chroot_dir, **options)
        self.union_type = union_type

    @property
    def source_dir(self):
        return self.chroot_dir / "source"

    def schroot_lines(self):
        return ["type=directory", f"directory={self.source_dir}", f"union-type={self.union_type}"]

    def data_steps(self, populate):
        return [Step(f"populate {self.source_dir}", lambda: populate(self.source_dir),
                     lambda: privileged.remove_data(self.chroot_dir, "source"))]


class FileBackend(Backend):
    """Tarball ``CHROOT_DIR/source.tar[.gz|.bz2|.xz]``, unpacked by schroot per session."""

    name = "File"

    def __init__(self, chroot_dir, compression=None, **options):
        super().__init__(chroot_dir, **options)
        compression = compression or "none"
        if compression not in COMPRESSIONS:
            raise ChrootError(f"Unknown compression '{compression}' (choose from {', '.join(COMPRESSIONS)})")
        self.compression = compression

    @property
    def tarball(self):
        return self.chroot_dir / ("source.tar" + COMPRESSIONS[self.compression][0])

    @property
    def tmp_dir(self):
        return self.chroot_dir / "tmp"

    def schroot_lines(self):
        return ["type=file", f"file={self.tarball}"]

    def data_steps(self, populate):
        return [
            Step(f"populate {self.tmp_dir}", lambda: populate(self.tmp_dir), lambda: privileged.remove_data(self.chroot_dir, "tmp")),
            Step(f"pack {self.tarball}", lambda: privileged.pack(self.chroot_dir, self.compression),
                 lambda: privileged.remove_data(self.chroot_dir, "tarballs")),
            Step(f"remove {self.tmp_dir}", lambda: privileged.remove_data(self.chroot_dir, "tmp"), None),
        ]


#: Backend name -> class. LVM/LoopLVM/BtrfsSnapshot: not implemented yet.
BACKENDS = {cls.name: cls for cls in (DirBackend, FileBackend)}


def get_backend(backend, chroot_dir, **options):
    """A backend instance from its name (or pass an instance through)."""
    if isinstance(backend, Backend):
        return backend
    try:
        cls = BACKENDS[backend]
    except KeyError as e:
        raise ChrootError(f"Unsupported chroot backend '{backend}' (supported: {', '.join(BACKENDS)})") from e
    return cls(chroot_dir, **options)


# ---------------------------------------------------------------------------------------------
# Prepare, remove, check
# ---------------------------------------------------------------------------------------------

def _mkdir_chroot_dir(chroot_dir):
    privileged.make_chroot_dir(chroot_dir)


def _rm_chroot_dir(chroot_dir):
    privileged.remove_data(chroot_dir, "all")  # and the CODENAME/ dir, when this was its last arch


def _end_sessions_and_remove_conf(name):
    schroot.end_sessions_of(name)
    schroot.remove_conf(name)


def _steps(backend, name, description, users, groups, personality, rw_dirs, populate):
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
                      lambda: schroot.install_conf(name, text), lambda: _end_sessions_and_remove_conf(name)))
    return steps


def prepare(backend, name, codename, arch, chroot_dir, archive_url, keyring_path=DEFAULT_KEYRING,  # pylint: disable=too-many-arguments  # a chroot's whole configuration
            users=("mini-buildd",), groups=("sbuild",), personality="linux",
            debootstrap_command=debootstrap.DEFAULT_COMMAND, extra_options=(), compression=None, base_tarball=None,
            shared_dir=None, description=None, union_type="overlay"):
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
    be = get_backend(backend, chroot_dir, compression=compression, union_type=union_type)
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
    rw_dirs = None if shared_dir is None else [config.shared_ccache_dir(shared_dir, codename, arch)]
    run_steps(_steps(be, name, description, users, groups, personality, rw_dirs, populate))
    LOG.info("Prepared chroot %s", name)


def remove(backend, name, chroot_dir, compression=None, union_type="overlay", **_prepare_kwargs):
    """Undo :func:`prepare`: end the chroot's sessions, remove its schroot config, fstab and data.

    Idempotent (removing a removed chroot is fine). Takes (and ignores) the other arguments of
    :func:`prepare`, so callers can pass the same arguments to both.
    """
    be = get_backend(backend, chroot_dir, compression=compression, union_type=union_type)
    LOG.info("Removing chroot %s (%s backend) in %s", name, be.name, be.chroot_dir)
    steps = _steps(be, name, "", (), (), "linux", "unused", None)  # only the undo parts matter here
    undo_steps(steps)
    LOG.info("Removed chroot %s", name)


def check(name, sources_list_text, backend=None, packages=()):
    """Check and update chroot ``name`` in a *source* session: apt sources, update, dist-upgrade, clean.

    Returns the collected output; raises :class:`ChrootError` on failure (autoremove failing is
    only logged).
    """
    be = backend if isinstance(backend, Backend) else None
    output = []

    def run(sid, argv, **kwargs):
        out = schroot.run_in_session(sid, argv, **kwargs)
        output.append(out)
        return out

    try:
        with schroot.session(name, source=True) as sid:
            run(sid, ["debconf-set-selections"], input="debconf debconf/frontend select Noninteractive\n")
            if be is not None:
                be.check_source(sid)
            run(sid, ["sh", "-c", "cat >/etc/apt/sources.list"], input=sources_list_text)
            run(sid, APT_GET + ["update"])
            run(sid, APT_GET + ["--ignore-missing", "dist-upgrade"])
            if packages:
                run(sid, APT_GET + ["install"] + list(packages))
            try:
                run(sid, APT_GET + ["--purge", "autoremove"])
            except call.CallError as e:
                LOG.warning("Chroot %s: autoremove failed (ignored): %s", name, e)
            run(sid, APT_GET + ["clean"])
    except (call.CallError, schroot.SchrootError) as e:
        raise ChrootError(f"Check of chroot {name} failed: {e}") from e
    LOG.info("Checked chroot %s", name)
    return "".join(output)


# ---------------------------------------------------------------------------------------------
# Cached pristine base tarball
# ---------------------------------------------------------------------------------------------

def cached_tarball_path(codename, arch, variant="buildd"):
    """Where :func:`cached_debootstrap_tarball` keeps the tarball."""
    return config.cached_tarball(codename, arch, variant)


def cached_debootstrap_tarball(codename, arch, archive_url, keyring_path=DEFAULT_KEYRING, variant="buildd", refresh=False):
    """Return a pristine debootstrap tarball of ``codename``/``arch``, debootstrapping only once.

    The tarball is kept in :data:`mini_buildd.config.CACHE_DIR` (root-owned: made by the root
    helper) and reused by later calls (and processes: a lock serializes them). Use it as
    ``base_tarball`` of :func:`prepare`; :func:`check` brings the chroot up to date afterwards.
    """
    return pathlib.Path(privileged.cache_tarball(codename, arch, archive_url, keyring_path=keyring_path, variant=variant,
                                                 refresh=refresh))
