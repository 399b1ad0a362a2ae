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
import logging
import os
import pathlib
import shlex
import sys
import tempfile

from mini_buildd.tools import call, debootstrap, schroot_files
from mini_buildd import config
from mini_buildd.roothelper_base import (  # the helper's checks and host primitives
    COMPRESSIONS, TAR_KEEP, DATA_DIRS, _CONF_KEYS, _PERSONALITIES, _UNION_TYPES, _GROUPS, USAGE_EXIT,
    HelperError, Caller, check_name, check_apt_line, instance_home, chroots_root, chroot_dir, _within, _caller_file,
    check_debootstrap, check_base_tarball, rmtree, umount_below)
from mini_buildd.roothelper_blocks import _check_lvm_conf, BLOCK_OPERATIONS, block_parser

LOG = logging.getLogger(__name__)


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


#: apt-get as the cached tarball's tool install runs it (inside the tree, with chroot(8); dpkg without fsync: the tree is
#: thrown away unless all of it succeeds).
_APT_GET = ["env", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C", "apt-get", "--quiet", "--yes", "--option=Dpkg::Options::=--force-unsafe-io",
            "--option=APT::Install-Recommends=false", "--option=Dpkg::Use-Pty=false"]


def _install_packages(target, packages, keyring, check_valid_until=True, apt_lines=()):
    """``apt-get install PACKAGES`` in the tree ``target`` (a fresh debootstrap tree: its apt
    sources are the archive it was made from), with ``/proc`` mounted and no service started for
    the time; ``keyring`` (if any) is trusted by apt meanwhile; ``check_valid_until=False`` (the
    source's setting) accepts an archive whose Release is past its Valid-Until. With ``apt_lines``
    (a chroot's sources: the archive, its security updates, extra sources), these are the tree's
    sources and the same apt run also upgrades from them (``dist-upgrade``): the updates every
    chroot check would otherwise install again. Downloads are cleaned afterwards."""
    policy = target / "usr" / "sbin" / "policy-rc.d"
    trusted = target / "etc" / "apt" / "trusted.gpg.d" / "mini-buildd-cache.gpg"
    policy.write_text("#!/bin/sh\nexit 101\n", encoding="utf-8")
    policy.chmod(0o755)
    if keyring:
        trusted.write_bytes(pathlib.Path(keyring).read_bytes())
    if apt_lines:
        (target / "etc" / "apt" / "sources.list").write_text("".join(f"{line}\n" for line in apt_lines), encoding="utf-8")
    call.run(["mount", "-t", "proc", "proc", str(target / "proc")])
    try:
        options = [] if check_valid_until else ["--option=Acquire::Check-Valid-Until=false"]
        install = ["dist-upgrade", *packages] if apt_lines else ["install", "--", *packages]
        for argv in (["update"], install, ["clean"]):
            call.run(["chroot", str(target), *_APT_GET, *options, *argv])
    finally:
        with contextlib.suppress(call.CallError):
            call.run(["umount", str(target / "proc")])
        umount_below(target)
        policy.unlink(missing_ok=True)
        trusted.unlink(missing_ok=True)


def _make_cached_tarball(tarball, fill):
    """Make ``tarball`` from a tree ``fill(target)`` makes in a temp dir next to it (all or nothing)."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f"{tarball.name}.", dir=tarball.parent))
    try:
        target = tmp / "root"
        fill(target)
        tar_create(target, tarball)
        os.chmod(tarball, 0o644)
    finally:
        rmtree(tmp)
    LOG.info("Cached debootstrap tarball %s", tarball)


def op_cache_tarball(_caller, args):
    """Make the cached base tarball of CODENAME/ARCH if missing (or ``--refresh``); print its path.

    Without ``--include`` it is the pristine debootstrap tree; with it, the pristine tarball (made
    first if missing) with these packages installed by apt (a build chroot's tools: its check
    then only updates); with ``--apt-line`` (the chroot's sources, checked one by one) also upgraded
    from them, so that a new chroot's check finds its security updates already there.
    debootstrap's own ``--include`` is not used: it does not resolve virtual packages (lintian's
    dependencies need ``perl-openssl-abi-3``)."""
    codename, arch = check_name(args.codename, "codename"), check_name(args.arch, "architecture")
    variant = check_name(args.variant, "variant")
    include = sorted({check_name(p, "package name") for p in args.include})
    apt_lines = [check_apt_line(line) for line in args.apt_line] if include else []
    check_debootstrap(debootstrap.DEFAULT_COMMAND, [], args.archive)
    keyring = _caller_file(_caller, args.keyring, "Keyring") if args.keyring else None
    tarball = config.cached_tarball(codename, arch, variant, include, apt_lines)
    tarball.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(tarball.with_name(tarball.name + ".lock"), "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tarball.exists() and not args.refresh:
            LOG.info("Using cached debootstrap tarball %s", tarball)
            return f"{tarball}\n"
        if include:
            base = pathlib.Path(op_cache_tarball(_caller, argparse.Namespace(**{**vars(args), "include": [], "apt_line": []})).strip())

            def fill(target):
                _populate(target, codename, arch, args.archive, keyring, variant, debootstrap.DEFAULT_COMMAND, [], base)
                _install_packages(target, include, keyring, check_valid_until=not args.no_check_valid_until, apt_lines=apt_lines)
        else:
            def fill(target):
                _populate(target, codename, arch, args.archive, keyring, variant, debootstrap.DEFAULT_COMMAND, [], None)
        _make_cached_tarball(tarball, fill)
    return f"{tarball}\n"


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
    s.add_argument("--include", action="append", default=[], help="package to install into the tarball (repeatable)")
    s.add_argument("--apt-line", action="append", default=[], help="apt source to upgrade from (with --include; repeatable)")
    s.add_argument("--no-check-valid-until", action="store_true", help="accept an archive past its Release's Valid-Until (with --include)")
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
