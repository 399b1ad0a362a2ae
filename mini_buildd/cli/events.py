"""``mini-buildd-events``: follow an instance's live event stream with filters (upstream §8.3)."""

import argparse
import datetime
import json
import sys
import time

from mini_buildd import __version__, net

TYPES = ("REJECTED", "BUILDING", "BUILT", "PACKAGING", "INSTALLED", "FAILED", "MIGRATED", "REMOVED", "DENIED")


def parser():
    """The command line parser of mini-buildd-events."""
    p = argparse.ArgumentParser(prog="mini-buildd-events", description="Follow the event stream of a mini-buildd instance.")
    p.add_argument("--version", action="version", version=f"mini-buildd-events {__version__}")
    p.add_argument("-A", "--after", default=None,
                   help="replay queued events after this ISO date ('epoch' = all queued); default: only new events")
    p.add_argument("-T", "--types", default="", help="comma-separated event types to show (default: all)")
    p.add_argument("-D", "--distribution", default=None)
    p.add_argument("-S", "--source", default=None)
    p.add_argument("-V", "--version-filter", "--package-version", dest="version_filter", default=None, help="exact version")
    p.add_argument("-M", "--min-version", default=None, help="only versions >= this")
    p.add_argument("-E", "--exit-on", default="", help="comma-separated types: exit 0 after the first matching one")
    p.add_argument("-F", "--fail-on", default="", help="comma-separated types: exit 1 after the first matching one")
    p.add_argument("-J", "--json", action="store_true", help="print events as JSON lines")
    p.add_argument("endpoint", help="instance URL or twisted client endpoint")
    return p


def _types(value):
    types = [t.strip().upper() for t in value.split(",") if t.strip()]
    for t in types:
        if t not in TYPES:
            raise ValueError(f"Unknown event type '{t}' (known: {', '.join(TYPES)})")
    return types


def matches(event, args, types):
    """Whether an event (JSON dict) passes the filters given on the command line."""
    from debian import debian_support  # pylint: disable=import-outside-toplevel
    if types and event["type"] not in types:
        return False
    if args.distribution and event["distribution"] != args.distribution:
        return False
    if args.source and event["source"] != args.source:
        return False
    if args.version_filter and event["version"] != args.version_filter:
        return False
    if args.min_version and (not event["version"] or
                             debian_support.Version(event["version"]) < debian_support.Version(args.min_version)):
        return False
    return True


def follow(url, after, on_event, timeout=None):
    """Call ``on_event(event)`` for each event; stop when it returns something other than None."""
    import requests  # pylint: disable=import-outside-toplevel
    deadline = None if timeout is None else time.monotonic() + timeout
    while deadline is None or time.monotonic() < deadline:
        try:
            r = requests.get(f"{url}/static/events.attach", params={"after": after} if after else {}, timeout=300)
        except requests.Timeout:
            continue
        except requests.ConnectionError as e:
            raise ConnectionError(f"Can't reach {url}: {e}") from e
        if r.status_code != 200:
            raise ConnectionError(f"{url}: event stream answered {r.status_code}: {r.text[:200]}")
        event = r.json()
        after = event["timestamp"]
        result = on_event(event)
        if result is not None:
            return result
    return None


def main(argv=None):
    """Command line: follow the event stream, print the matching events; exit status."""
    args = parser().parse_args(argv)
    try:
        url = net.client_url(args.endpoint)
        types, exit_on, fail_on = _types(args.types), _types(args.exit_on), _types(args.fail_on)
        after = args.after
        if after == "epoch":
            after = "1970-01-01T00:00:00+00:00"
        elif after is None:
            after = datetime.datetime.now(datetime.timezone.utc).isoformat()

        def on_event(event):
            if not matches(event, args, types):
                return None
            if args.json:
                print(json.dumps(event), flush=True)
            else:
                print(f"{event['timestamp']} {event['type']:<10} {event['distribution']} {event['source']} {event['version']}",
                      flush=True)
            if event["type"] in fail_on:
                return 1
            if event["type"] in exit_on:
                return 0
            return None
        return follow(url, after, on_event) or 0
    except (ValueError, ConnectionError) as e:
        print(f"mini-buildd-events: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
