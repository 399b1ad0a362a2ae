"""``mini-buildd-backup [--restore TARBALL]`` (owns: this command, upstream §8.3, run as root): a
backup tarball of an instance home, and its restore into a home, on this or another host.

A backup holds what cannot be made again: the configuration database (copied with SQLite's
backup API), the Django secret key, the GnuPG home (the archive key: the restored instance
signs its repositories with the same key), the reprepro repositories, the events, the
repositories' journals, the record of accepted buildrequests, the watched ports, ``etc/`` (dput
snippet, event hooks, schroot prefix) and the ``admin-password`` file. Not in it: chroots (they are made again:
a restore leaves every chroot Removed, to be prepared, checked and activated there), build
dirs, ccache, logs, temporary files and uploads not yet processed (``incoming``, quarantine).

It is taken with the daemon stopped (the home's lock is held while the backup runs, so the
daemon can't start meanwhile). The tarball has the home's files with their modes (secrets: it is
written mode 0600) and a manifest (``mini-buildd-backup.json``: version, host, home, time).

A restore checks every member first (paths inside the home, only files, directories and
relative symbolic links that stay inside, only the parts a backup has; else nothing is
extracted), needs the target home without an instance (``--force`` replaces those parts of an
existing one), locks it, extracts, gives everything to the instance user, and then, as that
user, brings the database schema up to date, marks the chroots Removed and points the
repositories' ``conf/options`` at the new home's GnuPG home.
"""

import argparse
import datetime
import json
import logging
import os
import pathlib
import pwd
import shutil
import socket
import sqlite3
import sys
import tarfile
import tempfile

from mini_buildd import __version__, config, daemon, errors
from mini_buildd.tools import gnupg, reprepro

LOG = logging.getLogger(__name__)
PROG = "mini-buildd-backup"

#: Name of the manifest member; its format number.
MANIFEST = "mini-buildd-backup.json"
FORMAT = 1

#: Exit codes: done; refused or failed.
EXIT_OK, EXIT_ERROR = 0, 2


class BackupError(errors.Error):
    """A backup or restore was refused or failed (one line for the user)."""


def parser():
    """The command line parser of mini-buildd-backup."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Back up a mini-buildd instance home (configuration database, GnuPG archive key, repositories, "
                    "events, etc/) into a tarball, or restore one into a home (on this or another host).",
        epilog="Chroots are not in backups: after a restore they are Removed; prepare, check and activate them there "
               "(setup --pca all, or the administration). The daemon must be stopped for both. On another host, check "
               "the Daemon's FTP endpoint and give the daemon the new --hostname.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    p.add_argument("-U", "--dedicated-user", default="mini-buildd",
                   help="the instance user: its home is the default home; a restore gives it the files (default: %(default)s)")
    p.add_argument("-H", "--home", default=None, help="instance home (default: home of the dedicated user)")
    p.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="backup tarball to write (default: ./mini-buildd-backup-HOSTNAME-TIME.tar.gz)")
    p.add_argument("--restore", default=None, metavar="TARBALL", help="restore TARBALL into the home instead")
    p.add_argument("--force", action="store_true",
                   help="with --restore: replace the parts a backup has of an existing instance in the home")
    return p


def backup_parts(paths):
    """The parts of a home a backup has, relative to the home (the database apart)."""
    parts = [paths.django_secret_key, paths.admin_password_file, paths.gnupg_home, paths.repositories, paths.dput_cf.parent,
             paths.events, paths.journals, paths.accepted_requests, paths.port_watch]
    return [str(p.relative_to(paths.home)) for p in parts]


def _db_name(paths):
    return str(paths.config_db.relative_to(paths.home))


def _skip(tarinfo):
    """tar filter of a backup: no reprepro lockfile, no GnuPG lock or socket files."""
    name = pathlib.PurePosixPath(tarinfo.name)
    if name.name == "lockfile" and name.parent.name == "db" or name.name.endswith(".lock") or name.name.startswith("S."):
        return None
    return tarinfo


def _lock(home):
    try:
        return daemon.lock_home(home)
    except daemon.HomeInUse as e:
        raise BackupError(f"{e} Stop it first.") from e
    except daemon.StartError as e:
        raise BackupError(str(e)) from e


def _give(home, names, uid, gid):
    """The restored ``names`` (relative to ``home``) and the directories leading to them, not
    following links, to ``uid``/``gid`` (nothing else of the home: chroot data stays root's)."""
    done = set()
    for name in names:
        parts = pathlib.PurePosixPath(name).parts
        for i in range(1, len(parts) + 1):
            relative = "/".join(parts[:i])
            if relative not in done:
                done.add(relative)
                os.lchown(home / relative, uid, gid)


def backup(home, output):
    """Write the backup of ``home`` to ``output``; return the number of members."""
    paths = config.Paths(home)
    if not paths.config_db.is_file():
        raise BackupError(f"No instance in '{paths.home}' (no {paths.config_db.name}).")
    st = os.stat(paths.home)
    if os.geteuid() not in (0, st.st_uid):
        raise BackupError(f"Run as root or as the owner of '{paths.home}'.")
    lock_existed = paths.lock_file.exists()
    lock = _lock(paths.home)
    if not lock_existed:
        os.chown(paths.lock_file, st.st_uid, st.st_gid)  # the daemon must open it later
    output = pathlib.Path(output).absolute()
    part = output.with_name(output.name + ".part")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="mini-buildd-backup."))
    try:
        db_copy = tmp / paths.config_db.name
        with sqlite3.connect(f"{paths.config_db.as_uri()}?mode=ro", uri=True) as source, sqlite3.connect(db_copy) as target:
            source.backup(target)
        source.close()
        target.close()
        os.chmod(db_copy, config.SECRET_FILE_MODE)
        manifest = {"format": FORMAT, "version": __version__, "hostname": config.default_fqdn(), "home": str(paths.home),
                    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "schroot_prefix": config.read_schroot_prefix(paths), "parts": [_db_name(paths)] + backup_parts(paths)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
            tar.add(tmp / MANIFEST, arcname=MANIFEST)
            tar.add(db_copy, arcname=_db_name(paths))
            for name in backup_parts(paths):
                if os.path.lexists(paths.home / name):
                    tar.add(paths.home / name, arcname=name, filter=_skip)
            count = len(tar.getmembers())
        os.replace(part, output)
    finally:
        part.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        lock.close()
    return count


# ------------------------------------------------------------------------------------------------ restore
def _check_member(member, allowed):
    """Refuse a member that is no plain file, directory or inner relative link of the allowed parts."""
    name = member.name
    parts = pathlib.PurePosixPath(name).parts
    if not parts or name.startswith("/") or ".." in parts or any(c in name for c in "\0\n"):
        raise BackupError(f"Member '{name}': not a relative path inside the home.")
    if not any(name == a or name.startswith(a + "/") for a in allowed):
        raise BackupError(f"Member '{name}': not a part of a mini-buildd backup ({', '.join(sorted(allowed))}).")
    if member.issym():
        target = os.path.normpath(os.path.join(os.path.dirname(name), member.linkname))
        if member.linkname.startswith("/") or target == ".." or target.startswith("../"):
            raise BackupError(f"Member '{name}': a link pointing outside the home ({member.linkname}).")
    elif not (member.isfile() or member.isdir()):
        raise BackupError(f"Member '{name}': only files, directories and links are restored.")


def read_manifest(tar):
    """The manifest of backup ``tar`` (raises :class:`BackupError` if it is no backup)."""
    try:
        data = json.loads(tar.extractfile(MANIFEST).read().decode("utf-8"))
    except (KeyError, AttributeError, ValueError, UnicodeDecodeError) as e:
        raise BackupError(f"{tar.name or 'tarball'}: not a {PROG} tarball (no valid {MANIFEST}).") from e
    if data.get("format") != FORMAT or not isinstance(data.get("parts"), list):
        raise BackupError(f"{MANIFEST}: format {data.get('format')} is not {FORMAT}.")
    return data


def _extract(tar, member, home):
    dest = home / member.name
    parent = dest.parent
    parent.mkdir(parents=True, exist_ok=True)
    if os.path.realpath(parent) != os.path.join(os.path.realpath(home), os.path.dirname(member.name)).rstrip("/"):
        raise BackupError(f"Member '{member.name}': its directory in '{home}' is a link.")
    if member.isdir():
        dest.mkdir(exist_ok=True)
        os.chmod(dest, member.mode & 0o777)
    elif member.issym():
        os.symlink(member.linkname, dest)
    else:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(tar.extractfile(member), f)
            os.fchmod(f.fileno(), member.mode & 0o777)
    os.utime(dest, (member.mtime, member.mtime), follow_symlinks=False)


def _remove_parts(paths, parts):
    gnupg.kill_agents(paths.gnupg_home)
    for path in [paths.home / p for p in parts] + paths.config_db_files():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()


def _adapt(home, user, source):
    """As the instance user (Django set up for ``home``): schema up to date, chroots Removed,
    repositories' ``conf/options`` naming this home's GnuPG home. Returns the chroots' names."""
    paths = config.init(home, dedicated_user=user)
    paths.create()
    daemon.setup_django(paths)
    from mini_buildd import models  # pylint: disable=import-outside-toplevel  # Django is set up for the home only now
    models.Chroot.objects.update(status=models.Chroot.STATUS_REMOVED, last_checked=models.Chroot.CHECK_NONE,
                                 status_message=f"Restored from '{source}' ({PROG}): chroots are not in backups: prepare, "
                                                "check and activate it here.")
    for repository in models.Repository.objects.all():
        r = reprepro.Reprepro(repository.mbd_path())
        if r.distributions_file.is_file():
            r.write_conf(r.distributions_file.read_text(encoding="utf-8"),
                         reprepro.options_conf(paths.gnupg_home, morguedir=repository.reprepro_morguedir))
    return [str(c) for c in models.Chroot.objects.all()]


def _as_user(uid, gid, user, function, *args):
    """Run ``function(*args)`` in a child process as ``uid``/``gid``; its printed result; raises on failure."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        code, result = 1, '{"error": "no result"}'
        try:
            if os.geteuid() != uid:
                os.setgroups(os.getgrouplist(user, gid))
                os.setgid(gid)
                os.setuid(uid)
            result = json.dumps({"result": function(*args)})
            code = 0
        except BaseException as e:  # pylint: disable=broad-except  # process boundary: the parent reports it
            result = json.dumps({"error": f"{type(e).__name__}: {e}"})
        finally:
            os.write(write_fd, result.encode("utf-8"))
            os._exit(code)  # pylint: disable=protected-access  # a forked child must not run the parent's clean-up
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        output = f.read().decode("utf-8")
    os.waitpid(pid, 0)
    data = json.loads(output or '{"error": "no result"}')
    if "error" in data:
        raise BackupError(f"Adapting the restored home as user '{user}' failed: {data['error']}")
    return data["result"]


def restore(tarball, home, user, force=False):
    """Restore ``tarball`` into ``home`` for ``user``; return ``(manifest, chroot names)``."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError as e:
        raise BackupError(f"No user '{user}' (see --dedicated-user).") from e
    if os.geteuid() not in (0, pw.pw_uid):
        raise BackupError(f"Run as root (or as user '{user}').")
    paths = config.Paths(home)
    try:
        tar = tarfile.open(tarball, mode="r:*")  # pylint: disable=consider-using-with  # closed below
    except (OSError, tarfile.TarError) as e:
        raise BackupError(f"Can't read '{tarball}': {e}") from e
    with tar:
        manifest = read_manifest(tar)
        allowed = set(manifest["parts"]) & ({_db_name(paths)} | set(backup_parts(paths)))
        members = [m for m in tar.getmembers() if m.name != MANIFEST]
        for member in members:
            _check_member(member, allowed)
        if _db_name(paths) not in {m.name for m in members}:
            raise BackupError(f"'{tarball}' has no {_db_name(paths)}.")
        if paths.config_db.exists() and not force:
            raise BackupError(f"'{paths.home}' has an instance already ({paths.config_db.name}): give --force to replace it.")
        lock = _lock(paths.home)
        try:
            for path in (paths.home, paths.lock_file):
                os.lchown(path, pw.pw_uid, pw.pw_gid)
            os.chmod(paths.home, config.HOME_MODE)
            _remove_parts(paths, backup_parts(paths))
            for member in members:
                _extract(tar, member, paths.home)
            _give(paths.home, [m.name for m in members], pw.pw_uid, pw.pw_gid)
            chroots = _as_user(pw.pw_uid, pw.pw_gid, user, _adapt, str(paths.home), user, str(tarball))
        finally:
            lock.close()
    return manifest, chroots


def _home(args):
    if args.home:
        return args.home
    try:
        return pwd.getpwnam(args.dedicated_user).pw_dir
    except KeyError as e:
        raise BackupError(f"No user '{args.dedicated_user}' to take the home from: give --home.") from e


def main(argv=None):
    """Command line: back up or restore; exit status."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=f"{PROG}: %(levelname)s: %(message)s")
    try:
        home = _home(args)
        if args.restore is not None:
            if args.output is not None:
                raise BackupError("--output is for backups, not with --restore.")
            manifest, chroots = restore(args.restore, home, args.dedicated_user, force=args.force)
            print(f"{PROG}: restored the backup of {manifest['hostname']}:{manifest['home']} ({manifest['created']}) into "
                  f"'{pathlib.Path(home).resolve()}' for user '{args.dedicated_user}'.")
            if chroots:
                print(f"{PROG}: chroots are not in backups: {', '.join(chroots)} are Removed: prepare, check and activate "
                      "them (setup --pca all, or the administration).")
            return EXIT_OK
        if args.force:
            raise BackupError("--force is for --restore.")
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        output = args.output or f"mini-buildd-backup-{socket.gethostname()}-{stamp}.tar.gz"
        count = backup(home, output)
        print(f"{PROG}: backed up '{pathlib.Path(home).resolve()}' to '{output}' ({count} members; chroots are not "
              "included: prepare them again after a restore).")
        return EXIT_OK
    except (BackupError, OSError, sqlite3.Error, tarfile.TarError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
