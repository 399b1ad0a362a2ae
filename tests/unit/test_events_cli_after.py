"""``mini-buildd-events -A/--after``: upstream's dates (``epoch``, ISO dates, "2 weeks ago"), against a
fixed now, and what the command asks the event stream for."""

import datetime

import pytest

from mini_buildd.cli import events

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 12, 7, 6, 30, 15, tzinfo=UTC)


def at(*args):
    return datetime.datetime(*args, tzinfo=UTC).isoformat()


@pytest.mark.parametrize("value, expected", [
    ("epoch", at(1970, 1, 1)),
    ("now", NOW.isoformat()),
    ("today", at(2026, 12, 7)),
    ("Yesterday", at(2026, 12, 6)),
    ("2 weeks ago", at(2026, 11, 23, 6, 30, 15)),
    ("1 hour ago", at(2026, 12, 7, 5, 30, 15)),
    ("an hour ago", at(2026, 12, 7, 5, 30, 15)),
    ("a week ago", at(2026, 11, 30, 6, 30, 15)),
    ("1 day 3 hours ago", at(2026, 12, 6, 3, 30, 15)),
    ("1 day, 3 hours and 10 minutes ago", at(2026, 12, 6, 3, 20, 15)),
    ("  90   seconds  ago ", at(2026, 12, 7, 6, 28, 45)),
    ("2 months ago", at(2026, 10, 8, 6, 30, 15)),
    ("1 year ago", at(2025, 12, 7, 6, 30, 15)),
    ("3 days", at(2026, 12, 4, 6, 30, 15)),
    ("2026-12-01", at(2026, 12, 1)),
    ("2026-12-01T10:00:00", at(2026, 12, 1, 10)),
    ("2026-12-01T10:00:00+02:00", at(2026, 12, 1, 8)),
    ("2026-12-01 10:00:00.5+00:00", datetime.datetime(2026, 12, 1, 10, 0, 0, 500000, tzinfo=UTC).isoformat()),
])
def test_after_values(value, expected):
    assert events.parse_after(value, now=NOW) == expected


@pytest.mark.parametrize("value, message", [
    ("2 fortnights ago", "unknown time unit 'fortnights'"),
    ("last tuesday", "can't read 'last tuesday' as a date"),
    ("2 weeks 3 ago", "can't read"),
    ("weeks ago", "can't read"),
    ("", "can't read"),
    ("2026-13-01", "can't read"),
])
def test_bad_after_values(value, message):
    with pytest.raises(ValueError, match=message):
        events.parse_after(value, now=NOW)


def test_after_default_is_now():
    before = datetime.datetime.now(UTC)
    after = datetime.datetime.fromisoformat(events.parse_after("now"))
    assert before <= after <= datetime.datetime.now(UTC)


def test_main_asks_the_stream_after_the_relative_date(monkeypatch):
    asked = []

    def follow(url, after, on_event, timeout=None):  # pylint: disable=unused-argument
        asked.append((url, after))
        return 0
    monkeypatch.setattr(events, "follow", follow)
    before = datetime.datetime.now(UTC)
    assert events.main(["-A", "2 weeks ago", "http://127.0.0.1:8066"]) == 0
    url, after = asked[0]
    assert url == "http://127.0.0.1:8066"
    when = datetime.datetime.fromisoformat(after)
    two_weeks = datetime.timedelta(weeks=2)
    assert before - two_weeks <= when <= datetime.datetime.now(UTC) - two_weeks


def test_main_says_what_is_wrong_with_a_bad_date(capsys):
    assert events.main(["-A", "someday", "http://127.0.0.1:8066"]) == 2
    assert "can't read 'someday' as a date" in capsys.readouterr().err
