"""``mini-buildd``: the daemon command (upstream §8.3): its options, where passwords come from
(files or standard input, never the command line; the old forms warn), the start-up order
(home lock first), and the configuration export and import (``--dumpdata``/``--loaddata``, Django's
management commands of the same names)."""

import argparse
import io
import json
import os
import pwd
import sys

from mini_buildd import __version__, config, errors


def parser():
    """The command line parser of the mini-buildd daemon."""
    p = argparse.ArgumentParser(prog="mini-buildd", description="Custom build daemon for Debian-based distributions.")
    p.add_argument("--version", action="version", version=f"mini-buildd {__version__}")
    p.add_argument("-U", "--dedicated-user", default="mini-buildd",
                   help="refuse to run as any other user (default: %(default)s)")
    p.add_argument("-N", "--hostname", "--fqdn", dest="hostname", default=None,
                   help="public host name of all services (default: host FQDN)")
    p.add_argument("-E", "--http-endpoint", action="append", dest="http_endpoints", metavar="ENDPOINT",
                   help="twisted server endpoint for HTTP, repeatable; the first is primary (default: tcp6:port=8066)")
    p.add_argument("-H", "--home", default=None, help="instance home (default: home of the dedicated user)")
    p.add_argument("-l", "--log-level", action="append", default=[], metavar="LEVEL",
                   help="log level (DEBUG, INFO, WARNING, ERROR) or LOGGER.LEVEL; repeatable")
    p.add_argument("-d", "--debug", default="", help="comma-separated debug switches: webapp,sbuild,keep")
    p.add_argument("-S", "--smtp", default=None, metavar="URL",
                   help="send notification mails via '[USER:]@smtp|ssmtp://HOST:PORT' (default: no mails); the "
                        f"password comes from --smtp-password-file or ${SMTP_PASSWORD_ENV} (a password in the URL "
                        "is deprecated: it shows in ps)")
    p.add_argument("--smtp-password-file", default=None, metavar="FILE",
                   help="read the SMTP password from FILE ('-': standard input); first line, trailing newline removed")
    p.add_argument("--schroot-prefix", default=None, metavar="PREFIX",
                   help="schroot name prefix of this home's chroots (PREFIX-CODENAME-ARCH), persisted in the home; "
                        "default: the persisted one, else 'mini-buildd'. Needed when several instances share a host.")
    p.add_argument("--allow-registration", action="store_true",
                   help="let visitors sign up for accounts at /accounts/register/ (activated by mail; needs --smtp)")
    p.add_argument("--set-admin-password-file", metavar="FILE",
                   help="create or update the Django superuser 'admin' with the password read from FILE "
                        "('-': standard input; first line) and exit")
    p.add_argument("-P", "--set-admin-password", metavar="PASSWORD",
                   help="deprecated (the password shows in ps): use --set-admin-password-file")
    p.add_argument("-D", "--dumpdata", action="append", default=[], metavar="APP[.MODEL]",
                   help="print the configuration (database contents) of APP or APP.MODEL as JSON and exit (repeatable; "
                        "'mini_buildd' is the whole configuration, add 'auth' for the users); the daemon may run")
    p.add_argument("-L", "--loaddata", default=None, metavar="FILE",
                   help="load a --dumpdata JSON file ('-': standard input) into this home's database and exit; the "
                        "loaded Daemon, repositories and chroots are Removed here (their key, reprepro dirs and chroot "
                        "data belong to the other home): prepare, check and activate them (setup --pca) afterwards")
    p.add_argument("-R", "--remove-system-artifacts", action="store_true",
                   help="remove every chroot of the instance (its data, schroot configuration and fstab), say what "
                        "was removed and exit (0: nothing left); the daemon is not started (the package's prerm "
                        "runs this on removal)")
    return p


#: Environment variable with the SMTP password (alternative to --smtp-password-file).
SMTP_PASSWORD_ENV = "MINI_BUILDD_SMTP_PASSWORD"


class UsageError(errors.BadRequest):
    """Bad option values; the message is shown as one error line."""


def _error(msg):
    print(f"mini-buildd: error: {msg}", file=sys.stderr)
    return 1


def _warn(msg):
    print(f"mini-buildd: warning: {msg}", file=sys.stderr)


def read_text(source, what, first_line=False):
    """The text (or only its first line) of file ``source`` (``-``: standard input); raises
    :class:`UsageError` naming ``what`` if it can't be read."""
    try:
        if source == "-":
            return sys.stdin.readline() if first_line else sys.stdin.read()
        with open(source, encoding="utf-8") as f:
            return f.readline() if first_line else f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"can't read {what} from '{source}': {getattr(e, 'strerror', None) or e}") from e


def read_secret(source, what):
    """The first line of file ``source`` (``-``: standard input), without its line end.

    Raises :class:`UsageError` if it can't be read or is empty."""
    secret = read_text(source, f"the {what}", first_line=True).rstrip("\r\n")
    if not secret:
        raise UsageError(f"no {what} in '{'standard input' if source == '-' else source}' (empty first line).")
    return secret


def admin_password(args):
    """The admin password to set (None: not asked for)."""
    if args.set_admin_password_file is not None and args.set_admin_password is not None:
        raise UsageError("give only one of --set-admin-password-file and --set-admin-password.")
    if args.set_admin_password is not None:
        _warn("--set-admin-password is deprecated: the password is visible to every user in the process list; "
              "use --set-admin-password-file FILE (or '-' for standard input).")
        return args.set_admin_password
    if args.set_admin_password_file is not None:
        return read_secret(args.set_admin_password_file, "admin password")
    return None


def smtp_url(args):
    """The ``--smtp`` URL with the password from ``--smtp-password-file`` or the environment
    (kept in memory only); None without ``--smtp``."""
    from mini_buildd import notify  # pylint: disable=import-outside-toplevel
    password = None
    if args.smtp_password_file is not None:
        if args.smtp_password_file == "-" and args.set_admin_password_file == "-":
            raise UsageError("only one password can come from standard input.")
        password = read_secret(args.smtp_password_file, "SMTP password")
    elif os.environ.get(SMTP_PASSWORD_ENV):
        password = os.environ[SMTP_PASSWORD_ENV]
    if args.smtp is None:
        if password is not None and args.smtp_password_file is not None:
            raise UsageError("--smtp-password-file needs --smtp.")
        return None
    try:
        smtp = notify.parse_smtp_url(args.smtp)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if smtp.password:
        if password is not None:
            raise UsageError("the --smtp URL has a password and one was given separately: remove it from the URL.")
        _warn("a password in the --smtp URL is deprecated: it is visible to every user in the process list; "
              f"use --smtp-password-file FILE (or '-' for standard input) or ${SMTP_PASSWORD_ENV}.")
        return args.smtp
    if password is None:
        return args.smtp
    host = f"[{smtp.host}]" if ":" in smtp.host else smtp.host
    return f"{smtp.user}:{password}@{'ssmtp' if smtp.ssl else 'smtp'}://{host}:{smtp.port}"


def _chroot_leftovers(chroot):
    """What still exists of ``chroot`` on the system (paths as strings)."""
    from mini_buildd.tools import schroot  # pylint: disable=import-outside-toplevel
    name = chroot.mbd_schroot_name()
    candidates = [schroot.conf_path(name), schroot.fstab_path(name), chroot.mbd_path()]
    return [str(p) for p in candidates if os.path.lexists(p)]


def remove_system_artifacts(home, dedicated_user):
    """``--remove-system-artifacts``: remove every chroot of the instance in ``home``; return the exit code.

    Never starts the daemon and refuses while one runs on the home (its lock). A home without a
    database has no chroots: nothing to do. What is removed is said on stdout; when something is
    left, one error line names it and the exit code is 1."""
    from mini_buildd import daemon  # pylint: disable=import-outside-toplevel
    paths = config.Paths(home)
    if not paths.config_db.is_file():
        print(f"mini-buildd: no instance in '{paths.home}' (no {paths.config_db.name}): no system artifacts to remove.")
        return 0
    try:
        daemon.lock_home(home)
        config.init(home, dedicated_user=dedicated_user)
        if paths.log.is_dir():
            daemon.setup_logging(paths, [], stderr=False)
        daemon.setup_django(paths)
    except daemon.StartError as e:
        return _error(f"can't remove system artifacts: {e}")
    from mini_buildd import models  # pylint: disable=import-outside-toplevel
    chroots = models.Chroot.mbd_concrete_all()
    if not chroots:
        print(f"mini-buildd: the instance in '{paths.home}' has no chroots: no system artifacts to remove.")
        return 0
    failed = []
    for chroot in chroots:
        existing = _chroot_leftovers(chroot)
        try:
            chroot.mbd_remove()
        except Exception as e:  # pylint: disable=broad-except  # report every chroot, then fail
            failed.append(f"{chroot.mbd_schroot_name()} ({e})")
            continue
        left = _chroot_leftovers(chroot)
        if left:
            failed.append(f"{chroot.mbd_schroot_name()} ({', '.join(left)} still there)")
            continue
        removed = ", ".join(p for p in existing) or "nothing was left on the system"
        print(f"mini-buildd: removed chroot {chroot.mbd_schroot_name()}: {removed}.")
    if failed:
        return _error(f"system artifacts left: {'; '.join(failed)}.")
    print(f"mini-buildd: all {len(chroots)} chroot(s) of the instance in '{paths.home}' removed.")
    return 0


#: Models whose data lives in the home, not in the database: Removed after --loaddata.
HOME_BOUND_MODELS = ("Daemon", "Repository", "Chroot")


def dump_data(labels, out=None):
    """``--dumpdata``: the JSON of ``labels`` (``APP[.MODEL]``) on ``out`` (standard output)."""
    from django.core import management  # pylint: disable=import-outside-toplevel
    try:
        management.call_command("dumpdata", *labels, indent=2, use_natural_foreign_keys=True, stdout=out or sys.stdout)
    except management.CommandError as e:
        raise UsageError(f"can't dump {' '.join(labels)}: {e}") from e


def _reasons(error):
    """The messages of ``error`` and the errors that caused it (Django's fixture errors say little themselves)."""
    messages = []
    while error is not None and not isinstance(error, StopIteration):
        text = str(error).strip().rstrip(":").strip()
        if text and not any(text in m for m in messages):
            messages.append(text)
        error = error.__cause__ or error.__context__
    return ": ".join(messages)


def load_data(source):
    """``--loaddata``: load the JSON of file ``source`` (``-``: standard input) in one transaction;
    then the Daemon, repositories and chroots are Removed (their data is not in this home) and
    every user has its Uploader. Returns the number of objects loaded."""
    # pylint: disable=import-outside-toplevel  # Django is set up for the home only now
    from django.apps import apps
    from django.contrib.auth import get_user_model
    from django.core import management
    from django.db import transaction
    text = read_text(source, "the data")
    out, stdin = io.StringIO(), sys.stdin
    try:
        with transaction.atomic():
            sys.stdin = io.StringIO(text)  # loaddata reads '-' from sys.stdin
            management.call_command("loaddata", "-", format="json", verbosity=1, stdout=out)
            # Loading relations marks status models changed (signals): their status is the dumped one.
            for record in json.loads(text):
                fields = record.get("fields", {})
                if "status" in fields and "last_checked" in fields:
                    apps.get_model(record["model"]).objects.filter(pk=record["pk"]).update(
                        status=fields["status"], last_checked=fields["last_checked"], status_message=fields.get("status_message", ""))
            for name in HOME_BOUND_MODELS:
                model = apps.get_model("mini_buildd", name)
                model.objects.exclude(status=model.STATUS_REMOVED).update(
                    status=model.STATUS_REMOVED, last_checked=model.CHECK_NONE,
                    status_message=f"Loaded from '{source}' (--loaddata): prepare, check and activate it in this home.")
            uploader = apps.get_model("mini_buildd", "Uploader")
            for user in get_user_model().objects.filter(uploader__isnull=True):
                uploader.objects.create(user=user)
    except Exception as e:  # pylint: disable=broad-except  # Django raises many kinds (CommandError, DeserializationError, IntegrityError...)
        raise UsageError(f"can't load '{source}' (nothing was loaded): {_reasons(e)}") from e
    finally:
        sys.stdin = stdin
    return out.getvalue().strip()


def dump_or_load(args):
    """``--dumpdata`` or ``--loaddata`` (Django set up for the home); exit status 0 (errors raise UsageError)."""
    if args.dumpdata:
        dump_data(args.dumpdata)
    else:
        print(f"mini-buildd: {load_data(args.loaddata)}; the Daemon, repositories and chroots are Removed here: "
              "prepare, check and activate them (setup --pca).")
    return 0


def main(argv=None):
    """Command line: check user and home, then run the daemon (or a maintenance action); exit status."""
    args = parser().parse_args(argv)
    user = pwd.getpwuid(os.geteuid()).pw_name
    if user != args.dedicated_user:
        return _error(f"running as user '{user}', but the dedicated user is '{args.dedicated_user}' (see --dedicated-user).")
    home = args.home
    if home is None:
        try:
            home = pwd.getpwnam(args.dedicated_user).pw_dir
        except KeyError:
            return _error(f"no user '{args.dedicated_user}' to take the home from: give --home.")
    if args.remove_system_artifacts:
        if args.set_admin_password_file is not None or args.set_admin_password is not None:
            return _error("--remove-system-artifacts can't be combined with setting the admin password.")
        return remove_system_artifacts(home, args.dedicated_user)

    from mini_buildd import daemon  # pylint: disable=import-outside-toplevel
    debug = {d for d in args.debug.split(",") if d}
    try:
        if args.dumpdata and args.loaddata is not None:
            raise UsageError("give only one of --dumpdata and --loaddata.")
        password = admin_password(args)
        smtp = smtp_url(args)
        if (args.dumpdata or args.loaddata is not None) and password is not None:
            raise UsageError("--dumpdata and --loaddata can't be combined with setting the admin password.")
    except UsageError as e:
        return _error(str(e))
    try:
        if password is None and not args.dumpdata:
            # One daemon per home: before anything else touches the home (or anything else). (--dumpdata only
            # reads: it may run beside the daemon; --loaddata must not.)
            daemon.lock_home(home)
        config.init(home, hostname=args.hostname, http_endpoints=args.http_endpoints, debug=debug,
                    dedicated_user=args.dedicated_user)
        daemon.validate_endpoints(config.runtime.http_endpoints)
        from mini_buildd.pipeline import simulated_builder  # pylint: disable=import-outside-toplevel
        bench_refusal = simulated_builder.configure()  # bench mode only: refuses without its explicit opt-in
        if bench_refusal:
            raise UsageError(bench_refusal)
        daemon.validate_smtp(smtp)
        config.runtime.smtp = smtp
        config.runtime.allow_registration = args.allow_registration
        paths = daemon.prepare_home(home)
        if args.schroot_prefix is not None:
            try:
                config.set_schroot_prefix(args.schroot_prefix)
            except ValueError as e:
                return _error(str(e))
        daemon.setup_logging(paths, args.log_level)
        daemon.setup_django(paths, debug="webapp" in debug)
        if password is not None:
            from mini_buildd import webapp  # pylint: disable=import-outside-toplevel
            webapp.set_admin_password(password)
            return 0
        if args.dumpdata or args.loaddata is not None:
            return dump_or_load(args)
        return daemon.Service().run()
    except (daemon.StartError, UsageError) as e:
        return _error(str(e))


if __name__ == "__main__":
    sys.exit(main())
