"""``mini-buildd-cruft [--interactive-remove|--automatic-remove]`` (owns: this command, upstream §8.3):
what is on the system but not in an instance's configuration, and what the configuration has but
the system lacks.

Run as the instance's user (``mini-buildd``). Cruft ("on the system, not configured"):

- chroots (schroot config ``/etc/schroot/chroot.d/PREFIX-CODENAME-ARCH.conf``, its fstab
  ``/etc/schroot/mini-buildd/fstab-PREFIX-CODENAME-ARCH``, data ``~/var/chroots/CODENAME/ARCH``)
  of this home that no Chroot owns; only files whose data or binds lie in this home count, so
  another instance's chroots under the same prefix are never listed. Removed like the chroot
  itself would be (:func:`mini_buildd.tools.chroot_backends.remove`: root actions through the
  root helper only);
- unshare chroot tarballs and ccache dirs of no configured chroot;
- repository dirs (and their journals) no Repository owns; distributions in a repository's
  reprepro ``conf/distributions`` or ``dists/`` that the configuration does not have (removed by
  writing the configuration's ``conf`` and re-indexing, as the repository's sync does); pool files
  the reprepro database does not know;
- build dirs (and ``mini-buildd-debug-build`` dirs) and events older than the Daemon's
  ``expire_builds_after``/``expire_events_after``; with the daemon stopped, everything in ``var/tmp``.

Missing ("configured, not on the system"): a prepared Daemon without its key, a prepared chroot without its schroot config, fstab,
data or tarball; a prepared repository without its dir or with distributions its
``conf/distributions`` lacks. These are only listed (prepare or check the object again).

Listing may run beside the daemon; removing takes the home's lock (the daemon must be stopped),
and removes only what was listed as removable: nothing the configuration owns.
"""

import argparse
import dataclasses
import datetime
import logging
import os
import pathlib
import pwd
import shutil
import sys
from collections.abc import Callable
from typing import Optional

from mini_buildd import __version__, config, daemon, errors, events, instance, roothelper_blocks
from mini_buildd.tools import chroot_backends, reprepro as reprepro_tool, schroot_files

LOG = logging.getLogger(__name__)
PROG = "mini-buildd-cruft"

#: Exit codes: nothing (left) to report, something listed is left, error.
EXIT_CLEAN, EXIT_FOUND, EXIT_ERROR = 0, 1, 2

#: Advice for the "missing" direction.
REPREPARE = "remove it and prepare it again (setup --pca, or the administration)"


def parser():
    """The command line parser of mini-buildd-cruft."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="List what is on the system but not in the mini-buildd instance's configuration (leftover chroots, "
                    "repository dirs, distributions, pool files, old build dirs and events), and what the configuration "
                    "has but the system lacks; optionally remove the former.",
        epilog="Exit status: 0 nothing (left) to report, 1 something listed is left (cruft not removed, or missing "
               "parts: prepare those objects again), 2 error. Removing needs the daemon stopped.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    p.add_argument("-U", "--dedicated-user", default="mini-buildd",
                   help="refuse to run as any other user (default: %(default)s)")
    p.add_argument("-H", "--home", default=None, help="instance home (default: home of the dedicated user)")
    p.add_argument("-l", "--log-level", default="WARNING", metavar="LEVEL", help="log level (default: %(default)s)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--interactive-remove", action="store_true", help="ask (on standard input) before removing each cruft item")
    mode.add_argument("--automatic-remove", action="store_true", help="remove every cruft item listed as removable")
    return p


@dataclasses.dataclass
class Item:
    """One finding: ``direction`` is ``cruft`` or ``missing``; ``remove`` (cruft only) removes it,
    shared by items with the same ``action`` key (run once)."""

    direction: str
    kind: str
    what: str
    reason: str
    remove: Optional[Callable[[], object]] = None
    action: Optional[str] = None

    def line(self):
        return f"{self.direction}: {self.kind}: {self.what}: {self.reason}"


def _cruft(kind, what, reason, remove, action=None):
    return Item("cruft", kind, str(what), reason, remove, action or f"{kind}:{what}")


def _missing(kind, what, reason):
    return Item("missing", kind, str(what), reason)


def _subdirs(path):
    try:
        return sorted(p for p in pathlib.Path(path).iterdir() if p.is_dir() and not p.is_symlink())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _entries(path):
    try:
        return sorted(pathlib.Path(path).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _within(path, directory):
    path, directory = pathlib.Path(os.path.realpath(path)), pathlib.Path(os.path.realpath(directory))
    return path == directory or directory in path.parents


def _rm(path):
    path = pathlib.Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------ chroots
@dataclasses.dataclass
class _Leftover:
    """What exists on the system of one schroot name."""

    codename: Optional[str] = None
    arch: Optional[str] = None
    conf: Optional[pathlib.Path] = None
    conf_values: dict = dataclasses.field(default_factory=dict)
    fstab: Optional[pathlib.Path] = None
    data: Optional[pathlib.Path] = None

    def backend(self, chroot_dir):
        """``(backend name, options)`` of :func:`mini_buildd.tools.chroot_backends.remove`."""
        kind = self.conf_values.get("type")
        if kind == "file":
            return "File", {}
        if kind == "btrfs-snapshot":
            return "BtrfsSnapshot", {}
        if kind == "lvm-snapshot":
            vg = self.conf_values.get("device", "").split("/")[2:3]
            if vg and vg[0] != roothelper_blocks.loop_vg_name(self.codename, self.arch):
                return "LVM", {"volume_group": vg[0]}
            return "LoopLVM", {}
        if kind is None and (chroot_dir / roothelper_blocks.LOOP_IMAGE).exists():
            return "LoopLVM", {}
        return "Dir", {"union_type": self.conf_values.get("union-type", "overlay")}


def _codename_arch(paths, path):
    """``(codename, arch)`` of a path below ``HOME/var/chroots/CODENAME/ARCH`` or the ccache dir ``var/shared/libdir/CODENAME/ARCH``."""
    for root in (paths.chroots, paths.shared / "libdir"):
        if _within(path, root):
            parts = pathlib.Path(os.path.realpath(path)).relative_to(os.path.realpath(root)).parts
            if len(parts) >= 2:
                return parts[0], parts[1]
    return None, None


def _name_parts(prefix, name):
    codename, _, arch = name[len(prefix) + 1:].partition("-")
    return (codename, arch) if codename and arch else (None, None)


def system_chroots(paths, prefix):
    """``{schroot name: _Leftover}`` of everything of this home's chroots on the system."""
    found = {}

    def entry(codename, arch):
        return found.setdefault(f"{prefix}-{codename}-{arch}", _Leftover(codename, arch))

    for codename_dir in _subdirs(paths.chroots):
        for arch_dir in _subdirs(codename_dir):
            entry(codename_dir.name, arch_dir.name).data = arch_dir
    for conf in sorted(config.SCHROOT_CHROOT_D.glob(f"{prefix}-*.conf")):
        try:
            name, values = schroot_files.parse_conf(conf.read_text(encoding="utf-8"))
        except (OSError, schroot_files.SchrootError):
            continue
        data = values.get("directory") or values.get("file") or values.get("btrfs-source-subvolume")
        if data:  # ours if its data is in this home
            codename, arch = _codename_arch(paths, data) if _within(data, paths.chroots) else (None, None)
        else:  # (Loop)LVM: ours if this home has its chroot dir
            codename, arch = _name_parts(prefix, name)
            if codename is not None and not paths.chroot_dir(codename, arch).is_dir():
                codename = None
        if codename is None or name != f"{prefix}-{codename}-{arch}":
            continue  # another instance's (same prefix, data elsewhere)
        e = entry(codename, arch)
        e.conf, e.conf_values = conf, values
    for fstab in sorted(config.SCHROOT_CONF_DIR.glob(f"fstab-{prefix}-*")):
        name = fstab.name[len("fstab-"):]
        binds = schroot_files.bind_sources(name)
        if not binds or not all(_within(b, paths.home) for b in binds):
            continue
        codename, arch = _codename_arch(paths, binds[0])
        if codename is None or name != f"{prefix}-{codename}-{arch}":
            codename, arch = _name_parts(prefix, name)
        if codename is not None:
            entry(codename, arch).fstab = fstab
    return found


def _remove_chroot(paths, name, leftover):
    chroot_dir = paths.chroot_dir(leftover.codename, leftover.arch)
    backend, options = leftover.backend(chroot_dir)
    chroot_backends.remove(backend, name, chroot_dir, **options)


def chroot_items(paths, models):
    """Leftover chroots (cruft) and missing parts of configured ones."""
    prefix = config.runtime.schroot_prefix
    configured = {(c.source.codename, c.architecture.name): c for c in models.Chroot.mbd_concrete_all()}
    schroot_names = {config.schroot_name(c, a): (c, a) for (c, a), ch in configured.items() if not isinstance(ch, models.UnshareChroot)}
    items = []
    for name, left in sorted(system_chroots(paths, prefix).items()):
        if name in schroot_names:
            continue
        parts = ", ".join(str(p) for p in (left.conf, left.fstab, left.data) if p is not None)
        items.append(_cruft("chroot", name, f"no chroot {left.codename}:{left.arch} in the configuration ({parts})",
                            lambda n=name, lo=left: _remove_chroot(paths, n, lo)))
    for (codename, arch), chroot in sorted(configured.items()):
        if not chroot.mbd_is_prepared():
            continue
        if isinstance(chroot, models.UnshareChroot):
            if not chroot.mbd_tarball().exists():
                items.append(_missing("chroot", str(chroot), f"its tarball {chroot.mbd_tarball()} is missing: {REPREPARE}"))
            continue
        name = chroot.mbd_schroot_name()
        conf = schroot_files.conf_path(name)
        if not conf.exists():
            items.append(_missing("chroot", str(chroot), f"its schroot config {conf} is missing: {REPREPARE}"))
        else:
            try:
                _section, values = schroot_files.parse_conf(conf.read_text(encoding="utf-8"))
            except (OSError, schroot_files.SchrootError):
                values = {}
            fstab = values.get("setup.fstab", "")
            if fstab == schroot_files.fstab_setup_name(name) and not schroot_files.fstab_path(name).exists():
                items.append(_missing("chroot", str(chroot), f"its schroot fstab {schroot_files.fstab_path(name)} is missing: {REPREPARE}"))
        if not paths.chroot_dir(codename, arch).is_dir():
            items.append(_missing("chroot", str(chroot), f"its data dir {paths.chroot_dir(codename, arch)} is missing: {REPREPARE}"))
    unshare = {(c, a) for (c, a), ch in configured.items() if isinstance(ch, models.UnshareChroot)}
    for path in _entries(paths.unshare_chroots):
        codename, _, arch = path.name.removesuffix(".tar").partition("-")
        if not (path.name.endswith(".tar") and (codename, arch) in unshare):
            items.append(_cruft("unshare-tarball", path, "no unshare chroot of this name in the configuration", lambda p=path: _rm(p)))
    for codename_dir in _subdirs(paths.shared / "libdir"):
        for arch_dir in _subdirs(codename_dir):
            if (codename_dir.name, arch_dir.name) not in configured:
                items.append(_cruft("ccache", arch_dir, f"no chroot {codename_dir.name}:{arch_dir.name} in the configuration",
                                    lambda p=arch_dir: _rm(p)))
    return items


# ------------------------------------------------------------------------------------------------ repositories
def _sync_repository(repository):
    """Make the reprepro dir what the configuration says: its ``conf``, then re-index (drops
    unconfigured distributions' dirs and database contents, re-exports)."""
    repository.mbd_write_conf()
    repository.mbd_reprepro().reindex()


def repository_items(paths, models):
    """Repository dirs, journals, distributions and pool files no repository owns; missing parts."""
    repositories = {r.identity: r for r in models.Repository.objects.all()}
    items = []
    for path in _subdirs(paths.repositories):
        if path.name not in repositories:
            items.append(_cruft("repository", path, f"no repository '{path.name}' in the configuration", lambda p=path: _rm(p)))
    for path in _subdirs(paths.journals):
        if path.name not in repositories:
            items.append(_cruft("journal", path, f"no repository '{path.name}' in the configuration", lambda p=path: _rm(p)))
    for identity, repository in sorted(repositories.items()):
        if repository.mbd_is_removed():
            continue
        path = repository.mbd_path()
        if not path.is_dir():
            items.append(_missing("repository", identity, f"its dir {path} is missing: {REPREPARE}"))
            continue
        reprepro = repository.mbd_reprepro()
        wanted = {s["codename"] for s in repository.mbd_reprepro_stanzas()}
        conf = set(reprepro.dists())

        def sync(r=repository):
            return _sync_repository(r)
        action = f"sync:{identity}"
        for dist in sorted(conf - wanted):
            items.append(_cruft("distribution", f"{identity}/{dist}",
                                f"in {reprepro.distributions_file}, but not in the configuration (removed by writing the "
                                f"configuration's conf and re-indexing repository '{identity}')", sync, action))
        for dist_dir in _subdirs(reprepro.dists_dir):
            if dist_dir.name not in wanted and dist_dir.name not in conf:
                items.append(_cruft("distribution", dist_dir, f"no distribution '{dist_dir.name}' in the configuration (removed "
                                    f"by re-indexing repository '{identity}')", sync, action))
        for dist in sorted(wanted - conf):
            items.append(_missing("distribution", f"{identity}/{dist}", f"not in {reprepro.distributions_file}: check repository "
                                  f"'{identity}' again"))
        if any(_entries(paths.journal(identity))):
            LOG.warning("Repository %s has a pending journal (the daemon completes it on start): pool files not checked.", identity)
            continue
        items += _stray_pool_files(reprepro)
    return items


def _stray_pool_files(reprepro):
    if not reprepro.pool_dir.is_dir():
        return []
    try:
        known = reprepro.known_files()
    except reprepro_tool.RepreproError as e:
        LOG.warning("%s: can't list the database's files: %s", reprepro, e)
        return []
    items = []
    for path in sorted(p for p in reprepro.pool_dir.rglob("*") if p.is_file() or p.is_symlink()):
        key = str(path.relative_to(reprepro.basedir))
        if key not in known:
            items.append(_cruft("pool-file", path, "not in the reprepro database", lambda p=path: _rm(p)))
    return items


# ------------------------------------------------------------------------------------------------ build dirs, events, temp files
def _old_key_dirs(root, older_than, kind, setting):
    """``root/SOURCE/VERSION/TIMECODE`` dirs older than ``older_than`` (as the crontab's expiry)."""
    cutoff = events.utcnow() - older_than
    items = []
    for source_dir in _subdirs(root):
        for version_dir in _subdirs(source_dir):
            for tc_dir in _subdirs(version_dir):
                try:
                    age = events.parse_timecode(tc_dir.name)
                except ValueError:
                    age = datetime.datetime.fromtimestamp(tc_dir.stat().st_mtime, datetime.timezone.utc)
                if age < cutoff:
                    items.append(_cruft(kind, tc_dir, f"older than the Daemon's {setting} ({older_than})", lambda p=tc_dir: _rm(p)))
    return items


def runtime_items(paths, models, daemon_stopped):
    """Old build, debug and event dirs; with the daemon stopped, temporary files."""
    settings = models.Daemon.get()
    items = _old_key_dirs(paths.builds, settings.expire_builds_after, "build-dir", "expire_builds_after")
    items += _old_key_dirs(paths.events, settings.expire_events_after, "event-dir", "expire_events_after")
    cutoff = events.utcnow() - settings.expire_builds_after
    for path in _subdirs(paths.debug):
        if datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc) < cutoff:
            items.append(_cruft("debug-dir", path, f"left by mini-buildd-debug-build, older than the Daemon's expire_builds_after "
                                f"({settings.expire_builds_after})", lambda p=path: _rm(p)))
    if daemon_stopped:
        for path in _entries(paths.tmp):
            items.append(_cruft("tmp", path, "temporary file of a daemon that is not running", lambda p=path: _rm(p)))
    return items


def daemon_items(paths, models):
    """A prepared Daemon without its key (e.g. a home restored without ``.gnupg``)."""
    if models.Daemon.get().mbd_is_prepared():
        try:
            key = instance.gnupg().get_secret_key()
        except errors.Error as e:
            return [_missing("daemon", paths.gnupg_home, f"its GnuPG key can't be read: {e}")]
        if key is None:
            return [_missing("daemon", paths.gnupg_home, "no secret key (the archive key): restore it from a backup, or "
                             "remove and prepare the Daemon (a new key: every client must trust it)")]
    return []


def find(paths, daemon_stopped):
    """Every finding for the instance in ``paths`` (Django set up)."""
    from mini_buildd import models  # pylint: disable=import-outside-toplevel
    return daemon_items(paths, models) + chroot_items(paths, models) + repository_items(paths, models) \
        + runtime_items(paths, models, daemon_stopped)


# ------------------------------------------------------------------------------------------------ command
def _ask(item, answers):
    print(f"Remove {item.kind} {item.what} ({item.reason})? [y/N] ", end="", flush=True)
    answer = answers.readline()
    if not answer:
        print()
    return answer.strip().lower() in ("y", "yes")


def remove_items(items, interactive, answers=None):
    """Remove the cruft ``items`` (asking first if ``interactive``); return ``(removed, failed)`` items."""
    done, removed, failed = {}, [], []
    for item in items:
        if item.direction != "cruft" or item.remove is None:
            continue
        if item.action in done:
            (removed if done[item.action] else failed).append(item)
            if done[item.action]:
                print(f"removed: {item.kind}: {item.what}")
            continue
        if interactive and not _ask(item, answers or sys.stdin):
            continue
        try:
            item.remove()
            done[item.action] = True
            removed.append(item)
            print(f"removed: {item.kind}: {item.what}")
        except Exception as e:  # pylint: disable=broad-except  # report every item, then fail
            done[item.action] = False
            failed.append(item)
            print(f"{PROG}: error: can't remove {item.kind} {item.what}: {e}", file=sys.stderr)
    return removed, failed


def _setup(home, dedicated_user, removing):
    """Lock the home if the daemon is not running (required for ``removing``), set up Django;
    return ``daemon_stopped``."""
    try:
        daemon.lock_home(home)
        stopped = True
    except daemon.HomeInUse as e:
        if removing:
            raise daemon.StartError(f"{e} Stop the daemon before removing cruft (listing works beside it).") from e
        stopped = False
    paths = config.init(home, dedicated_user=dedicated_user)
    daemon.setup_django(paths)
    return paths, stopped


def main(argv=None):
    """Command line: list (and remove) cruft; exit status (see :func:`parser`)."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.WARNING), format=f"{PROG}: %(levelname)s: %(message)s")
    user = pwd.getpwuid(os.geteuid()).pw_name
    if user != args.dedicated_user:
        print(f"{PROG}: error: running as user '{user}', but the instance user is '{args.dedicated_user}' (see --dedicated-user).",
              file=sys.stderr)
        return EXIT_ERROR
    try:
        home = args.home or pwd.getpwnam(args.dedicated_user).pw_dir
    except KeyError:
        print(f"{PROG}: error: no user '{args.dedicated_user}' to take the home from: give --home.", file=sys.stderr)
        return EXIT_ERROR
    if not config.Paths(home).config_db.is_file():
        print(f"{PROG}: no instance in '{home}' (no config.sqlite): nothing to check.")
        return EXIT_CLEAN
    removing = args.interactive_remove or args.automatic_remove
    try:
        paths, stopped = _setup(home, args.dedicated_user, removing)
    except errors.Error as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    try:
        items = find(paths, stopped)
        for item in items:
            print(item.line())
        removed, failed = remove_items(items, args.interactive_remove) if removing else ([], [])
    finally:
        instance.gnupg().kill_agents()  # re-indexing signs: no agent outlives us
    left = [i for i in items if i not in removed]
    cruft = sum(1 for i in items if i.direction == "cruft")
    print(f"{PROG}: {cruft} cruft, {len(items) - cruft} missing" + (f", {len(removed)} removed" if removing else "")
          + ("" if stopped else " (the daemon is running: temporary files not checked)") + ".")
    if failed:
        return EXIT_ERROR
    return EXIT_FOUND if left else EXIT_CLEAN


if __name__ == "__main__":
    sys.exit(main())
