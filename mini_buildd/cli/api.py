"""``mini-buildd-api CALL ENDPOINT [ARGS]``: run API calls against a mini-buildd instance (upstream §8.3).

Sub-commands, their options and ``--help`` come from the call registry. ENDPOINT is a URL
(``http://[USER@]HOST:PORT``) or a twisted client endpoint (``[USER@]tcp:host=H:port=P``, ``tls:…``).
With an API token (``$MINI_BUILDD_API_TOKEN``, or python3-keyring: service ``mini-buildd-token:URL``,
user USER or ``token``) every request carries it (``Authorization: Bearer``) and there is no login;
else with a USER, the tool logs in first; the password comes from ``$MINI_BUILDD_API_PASSWORD``,
python3-keyring (service = the endpoint URL) or a prompt (interactive only).

Strings are printed raw, other results as pretty JSON (``--json``: always JSON). Errors print the
server's problem detail and exit non-zero.
"""

import argparse
import json
import logging
import sys

from mini_buildd import __version__
from mini_buildd.api import registry
from mini_buildd.api import calls  # noqa: F401  pylint: disable=unused-import
from mini_buildd.api.client import Client, ClientError, ApiProblem, Passwords, PASSWORD_ENV, TOKEN_ENV, ask, is_interactive

LOG = logging.getLogger(__name__)
PROG = "mini-buildd-api"


def _global_options(argparser, suppress=False):
    extra = {"default": argparse.SUPPRESS} if suppress else {}
    json_flags = ["--json"] if suppress else ["-J", "--json"]
    argparser.add_argument(*json_flags, action="store_true", help="use parsable JSON output", **extra)
    argparser.add_argument("--auto-confirm", action="store_true", help="force-bypass extra confirmation (for confirmable calls)", **extra)
    argparser.add_argument("--auto-save-passwords", action="store_true",
                           help="don't ask before saving passwords (via python3-keyring)", **extra)
    argparser.add_argument("--script-mode", action="store_true", help="never be interactive", **extra)


def parser():
    """The command line parser of mini-buildd-api: one sub-command per API call."""
    p = argparse.ArgumentParser(
        prog=PROG, description="Run API calls against a mini-buildd instance",
        epilog=f"API tokens: ${TOKEN_ENV}, else python3-keyring (service 'mini-buildd-token:URL', user USER or 'token'); "
               f"sent as 'Authorization: Bearer', no login. Passwords: ${PASSWORD_ENV}, else python3-keyring "
               "(service = endpoint URL; see 'man 1 keyring'), else a prompt (interactive only).")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    p.add_argument("-l", "--log-level", action="append", default=[], metavar="LOG_LEVEL",
                   help="log level (default: WARNING, mini_buildd.INFO); or LOGGER.LEVEL for one logger; repeatable")
    _global_options(p)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, suppress=True)
    sub = p.add_subparsers(title="API calls (run 'mini-buildd-api <call> --help' for full single call help)",
                           metavar="<call>", dest="call")
    sub.required = True
    for call in registry.CALLS.values():
        sp = call.add_parser(sub, parents=[common])
        sp.add_argument("endpoint", metavar="ENDPOINT",
                        help="instance: http[s]://[USER@]HOST:PORT or [USER@]tcp:host=HOST:port=PORT (tls: for HTTPS)")
        call.add_arguments(sp)
    return p


def setup_logging(specs):
    """Log to stderr at the levels given by --log-level (LEVEL or LOGGER.LEVEL)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("mini_buildd").setLevel(logging.INFO)
    for spec in specs:
        name, _, level = spec.rpartition(".")
        value = getattr(logging, level.upper(), None)
        if not isinstance(value, int):
            raise ClientError(f"Unknown log level '{level}' in '{spec}'")
        logging.getLogger(name or None).setLevel(value)


def _print_result(result, as_json):
    if isinstance(result, str) and not as_json:
        print(result)
    else:
        print(json.dumps(result, indent=2))


def _error(message):
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1


def run(args):
    """Run one API call against the endpoint and print its result; exit status."""
    call = registry.CALLS[args.call]
    query = call.query_from_namespace(args)
    interactive = is_interactive(args.script_mode)
    passwords = Passwords(interactive=interactive, auto_save=args.auto_save_passwords)
    client = Client(args.endpoint)
    token, origin = passwords.token(client.url, client.user)
    if token:
        LOG.debug("Using the API token from the %s.", origin)
        client.use_token(token)
    elif client.user and call.auth > registry.Auth.NONE:
        client.login_with(passwords)

    confirm = False
    if call.needs_confirmation:
        if args.auto_confirm:
            confirm = True
        elif interactive:
            confirm = ask(f"Confirm API call '{call.name}' on {client.url}? [y/N] ")
            if not confirm:
                return _error(f"API call '{call.name}' not confirmed")

    for _attempt in range(3):
        try:
            result = client.call(call.name, query, confirm=confirm)
            break
        except ApiProblem as e:
            if e.problem.status in (401, 403) and interactive:
                print(f"{PROG}: {e.problem.detail}", file=sys.stderr)
                user = input("Log in as user (empty: quit): ").strip()
                if not user:
                    raise
                client.user = user
                client.login_with(passwords)
                continue
            raise
    else:
        return _error(f"API call '{call.name}': giving up")
    _print_result(result, args.json)
    return 0


def main(argv=None):
    """Command line: run an API call; exit status."""
    args = parser().parse_args(argv)
    try:
        setup_logging(args.log_level)
        return run(args)
    except ApiProblem as e:
        return _error(f"{e.problem.status} {e.problem.title}: {e.problem.detail}")
    except ClientError as e:
        return _error(str(e))
    except KeyboardInterrupt:
        return _error("interrupted")
    except Exception as e:  # pylint: disable=broad-except  # command boundary: one error line, never a traceback
        LOG.debug("Unexpected error", exc_info=True)
        return _error(f"{type(e).__name__}: {e}")


if __name__ == "__main__":
    sys.exit(main())
