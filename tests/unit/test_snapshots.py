"""Timed snapshots (upstream §3.7): names, when one is due, which ones expire."""

import datetime

from mini_buildd.archive import snapshots

UTC = datetime.timezone.utc
T = datetime.datetime(2026, 11, 22, 7, 30, 45, tzinfo=UTC)


def test_name_and_parse():
    assert snapshots.name("WEEKLY", T) == "WEEKLY_2026-11-22T07:30"
    assert snapshots.parse("WEEKLY_2026-11-22T07:30") == ("WEEKLY", T.replace(second=0))
    for other in ("my-snap", "DAILY_2026-11-22T07:30", "WEEKLY_2026-11-22", "WEEKLY_x"):
        assert snapshots.parse(other) is None


def test_due():
    week = datetime.timedelta(weeks=1)
    assert snapshots.due([], "WEEKLY", T)
    assert snapshots.due(["by-hand", "MONTHLY_2026-11-22T07:30"], "WEEKLY", T)
    last = snapshots.name("WEEKLY", T)
    assert not snapshots.due([last], "WEEKLY", T + datetime.timedelta(days=6, hours=23))
    assert snapshots.due([last], "WEEKLY", T + week)
    assert snapshots.due([last], "MONTHLY", T)
    assert not snapshots.due([snapshots.name("MONTHLY", T)], "MONTHLY", T + datetime.timedelta(days=29))


def test_expired_keeps_newest():
    names = [snapshots.name("WEEKLY", T + datetime.timedelta(weeks=i)) for i in range(10)] + ["by-hand"]
    assert snapshots.expired(names, "WEEKLY") == names[:2]
    assert snapshots.expired(names[:8], "WEEKLY") == []
    yearly = [snapshots.name("YEARLY", T.replace(year=2020 + i)) for i in range(6)]
    assert snapshots.expired(list(reversed(yearly)), "YEARLY") == yearly[:2]
