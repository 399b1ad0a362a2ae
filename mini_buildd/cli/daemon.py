"""``mini-buildd``: the daemon command (SPEC §8.3)."""

import argparse
import os
import pwd
import sys

from mini_buildd import __version__, config


def parser():
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
                   help="send notification mails via '[USER]:[PASSWORD]@smtp|ssmtp://HOST:PORT' (default: no mails)")
    p.add_argument("--schroot-prefix", default=None, metavar="PREFIX",
                   help="schroot name prefix of this home's chroots (PREFIX-CODENAME-ARCH), persisted in the home; "
                        "default: the persisted one, else 'mini-buildd'. Needed when several instances share a host.")
    p.add_argument("--allow-registration", action="store_true",
                   help="let visitors sign up for accounts at /accounts/register/ (activated by mail; needs --smtp)")
    p.add_argument("-P", "--set-admin-password", metavar="PASSWORD",
                   help="create or update the Django superuser 'admin' and exit")
    return p


def _error(msg):
    print(f"mini-buildd: error: {msg}", file=sys.stderr)
    return 1


def main(argv=None):
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

    from mini_buildd import daemon  # pylint: disable=import-outside-toplevel
    debug = {d for d in args.debug.split(",") if d}
    try:
        config.init(home, hostname=args.hostname, http_endpoints=args.http_endpoints, debug=debug,
                    dedicated_user=args.dedicated_user)
        daemon.validate_endpoints(config.runtime.http_endpoints)
        daemon.validate_smtp(args.smtp)
        config.runtime.smtp = args.smtp
        config.runtime.allow_registration = args.allow_registration
        paths = daemon.prepare_home(home)
        if args.schroot_prefix is not None:
            try:
                config.set_schroot_prefix(args.schroot_prefix)
            except ValueError as e:
                return _error(str(e))
        daemon.setup_logging(paths, args.log_level)
        daemon.setup_django(paths, debug="webapp" in debug)
        if args.set_admin_password is not None:
            from mini_buildd import webapp  # pylint: disable=import-outside-toplevel
            webapp.set_admin_password(args.set_admin_password)
            return 0
        return daemon.Service().run()
    except daemon.StartError as e:
        return _error(str(e))


if __name__ == "__main__":
    sys.exit(main())
