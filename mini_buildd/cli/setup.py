"""``python3 -m mini_buildd.cli.setup --home HOME [options]``: the ``setup`` operation
(:mod:`mini_buildd.bootstrap`) on an instance home without a running daemon: its options (one per
setup option, from :data:`mini_buildd.bootstrap.OPTIONS`), a text summary or ``--json``, and the exit
code (0 fine, 1 setup reported errors, 2 could not run)."""

import argparse
import getpass
import json
import sys

from mini_buildd import bootstrap, config, daemon, instance


def parser():
    """The command line parser of the setup operation."""
    p = argparse.ArgumentParser(prog="python3 -m mini_buildd.cli.setup", description="Run the setup operation on an instance home.")
    p.add_argument("--home", required=True, help="instance home")
    p.add_argument("--hostname", default=None, help="public host name (as the daemon's --hostname)")
    p.add_argument("--http-endpoint", default="tcp6:port=8066", help="the daemon's primary HTTP endpoint")
    p.add_argument("--dedicated-user", default=None, help="user the chroots are made for (default: current user)")
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    p.add_argument("--schroot-prefix", default=None,
                   help="schroot name prefix of this home's chroots (persisted in the home, as the daemon's --schroot-prefix)")
    for name, kind, default, help_text in bootstrap.OPTIONS:
        flag = "--" + name.replace("_", "-")
        if kind == "bool":
            p.add_argument(flag, action="store_true", help=help_text)
        elif kind == "list":
            p.add_argument(flag, nargs="*", default=[], help=help_text)
        else:
            p.add_argument(flag, default=default, help=help_text)
    return p


def summary(result):
    """A human readable summary of a setup result: one line per instance, warnings, the report."""
    lines = [f"{r['status']:<12} {r['identity_str']}" + (f"  [{', '.join(r['actions'])}]" if r["actions"] else "")
             + (f": {r['error']}" if r.get("error") else "") for r in result["instances"]]
    lines += [f"WARNING: {w}" for w in result["report"]["warnings"]]
    rep = result["report"]
    lines.append(f"Report: {rep['instances']} instances, {rep['counts']}, severity {rep['severity_name']}")
    return "\n".join(lines)


def main(argv=None):
    """Command line: run the setup operation on a home; exit status."""
    args = parser().parse_args(argv)
    try:
        config.init(args.home, hostname=args.hostname, http_endpoints=[args.http_endpoint],
                    dedicated_user=args.dedicated_user or getpass.getuser())
        paths = daemon.prepare_home(args.home)
        if args.schroot_prefix is not None:
            try:
                config.set_schroot_prefix(args.schroot_prefix)
            except ValueError as e:
                raise bootstrap.SetupError(str(e)) from e
        daemon.setup_logging(paths, [], stderr=True)
        daemon.setup_django(paths)
        result = bootstrap.run(**{name: getattr(args, name) for name, *_ in bootstrap.OPTIONS})
    except (bootstrap.SetupError, daemon.StartError) as e:
        print(f"mini-buildd setup: error: {e}", file=sys.stderr)
        return 2
    finally:
        if config.paths is not None:
            instance.gnupg().kill_agents()
    print(json.dumps(result, indent=2) if args.json else summary(result))
    return 0 if result["report"]["severity"] < 3 else 1


if __name__ == "__main__":
    sys.exit(main())
