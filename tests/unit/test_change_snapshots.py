"""Names and retention of the change snapshots (issue #16)."""

import datetime

from mini_buildd.archive import change_snapshots as cs

NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.timezone.utc)


def _name(days_ago, n=0):
    base = (NOW - datetime.timedelta(days=days_ago)).strftime(cs.NAME_FORMAT)
    return f"{base}.{n}" if n else base


def test_names_and_order():
    assert cs.stamp("20261207T101530Z") == datetime.datetime(2026, 12, 7, 10, 15, 30, tzinfo=datetime.timezone.utc)
    assert cs.stamp("20261207T101530Z.2") is not None
    for other in ("WEEKLY_2026-11-22T07:30", "release-1", "20261207T101530", "20261207T101530Z.x"):
        assert cs.stamp(other) is None
    names = ["release-1", "20261207T101530Z.10", "20261207T101530Z.2", "20261207T101530Z", "20261206T000000Z"]
    assert cs.change_snapshots(names) == ["20261206T000000Z", "20261207T101530Z", "20261207T101530Z.2", "20261207T101530Z.10"]


def test_retention_keeps_the_newest_and_the_young_never_the_named():
    names = [_name(d) for d in (30, 20, 10, 5, 1)] + ["WEEKLY_2020-01-01T00:00", "release-1"]
    # keep the 2 newest, and everything younger than 7 days
    assert cs.expired(names, keep_last=2, keep_days=7, now=NOW) == [_name(30), _name(20), _name(10)]
    # keep the 4 newest: only the oldest goes
    assert cs.expired(names, keep_last=4, keep_days=0, now=NOW) == [_name(30)]
    # age alone
    assert cs.expired(names, keep_last=0, keep_days=15, now=NOW) == [_name(30), _name(20)]
    # defaults: 10 newest (all of these) are kept
    assert not cs.expired(names, now=NOW)
