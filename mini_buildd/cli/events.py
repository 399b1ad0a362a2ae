"""``mini-buildd-events``: follow an instance's live event stream with filters (upstream §8.3), and
the dates ``-A/--after`` understands (``epoch``, ISO dates, relative ones like "2 weeks ago")."""

import argparse
import datetime
import json
import re
import sys
import time

from mini_buildd import __version__, net

TYPES = ("REJECTED", "BUILDING", "BUILT", "PACKAGING", "INSTALLED", "FAILED", "MIGRATED", "REMOVED", "DENIED", "PORT_OUTDATED")


def parser():
    """The command line parser of mini-buildd-events."""
    p = argparse.ArgumentParser(prog="mini-buildd-events", description="Follow the event stream of a mini-buildd instance.")
    p.add_argument("--version", action="version", version=f"mini-buildd-events {__version__}")
    p.add_argument("-A", "--after", default=None,
                   help="replay queued events after this date: 'epoch' (all queued), an ISO date or time (UTC unless it "
                        "has an offset), 'now', 'today', 'yesterday', or a relative time like '2 weeks ago', "
                        "'1 day 3 hours ago', 'an hour ago' (units: seconds, minutes, hours, days, weeks, months = 30 "
                        "days, years = 365 days); default: only new events")
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


#: Units of relative dates: their length.
UNITS = {
    "second": datetime.timedelta(seconds=1), "minute": datetime.timedelta(minutes=1), "hour": datetime.timedelta(hours=1),
    "day": datetime.timedelta(days=1), "week": datetime.timedelta(weeks=1), "month": datetime.timedelta(days=30),
    "year": datetime.timedelta(days=365),
}
_AMOUNT_RE = re.compile(r"\b(?:(\d+)\s*|(an?)\s+)([a-z]+)\b")
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def _unit(word):
    unit = word[:-1] if word.endswith("s") and word[:-1] in UNITS else word
    if unit not in UNITS:
        raise ValueError(f"unknown time unit '{word}' (known: {', '.join(u + 's' for u in UNITS)})")
    return UNITS[unit]


def _relative(text):
    """The time span of ``N UNIT [N UNIT...] [ago]``, or None if ``text`` is not of that form."""
    text = text.removesuffix(" ago").strip()
    if not text or not (text[0].isdigit() or text.split()[0] in ("a", "an")):
        return None
    span, pos = datetime.timedelta(), 0
    for m in _AMOUNT_RE.finditer(text):
        if text[pos:m.start()].strip(" ,") not in ("", "and"):
            return None
        span += (int(m[1]) if m[1] else 1) * _unit(m[3])
        pos = m.end()
    return span if pos and not text[pos:].strip() else None


def parse_after(value, now=None):
    """The UTC ISO time of an ``-A/--after`` value (see the option's help); ``now`` (aware) for tests.

    Raises ValueError on anything else."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    text = " ".join(value.strip().lower().split())
    today = now.astimezone(datetime.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    fixed = {"epoch": EPOCH, "now": now, "today": today, "yesterday": today - datetime.timedelta(days=1)}
    if text in fixed:
        when = fixed[text]
    elif (span := _relative(text)) is not None:
        when = now - span
    else:
        try:
            when = datetime.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"can't read '{value}' as a date: use 'epoch', an ISO date like 2026-12-01 or "
                             "2026-12-01T10:00:00+00:00, or a relative time like '2 weeks ago'") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
    return when.astimezone(datetime.timezone.utc).isoformat()


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
        after = parse_after(args.after if args.after is not None else "now")

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
