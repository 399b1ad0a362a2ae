"""When the crontab's jobs first run after a daemon start (mini_buildd.cron): cheap jobs a minute
after the start, the setup inspection (it reads every archive) a week after the last one, or an
hour after the start of a home that has none."""

import os

from mini_buildd import config, cron

NOW = 2_000_000_000.0
WEEK = cron.PERIODS["WEEKLY"].total_seconds()


def test_cheap_jobs_run_a_minute_after_the_start():
    assert cron.Job("x", "DAILY", lambda: None).next_run - cron.time.time() <= 60


def test_first_inspection_follows_the_last_one():
    path = config.paths.inspect_json
    path.unlink(missing_ok=True)
    try:
        assert cron.next_inspection(NOW) == NOW + cron.FIRST_INSPECTION_DELAY.total_seconds()
        path.write_text("{}", encoding="utf-8")
        os.utime(path, (NOW - 3600, NOW - 3600))
        assert cron.next_inspection(NOW) == NOW - 3600 + WEEK
        os.utime(path, (NOW - 2 * WEEK, NOW - 2 * WEEK))
        assert cron.next_inspection(NOW) == NOW + 60
        job = cron.Job("setup_inspect", "WEEKLY", lambda: None, first_run=lambda: cron.next_inspection(NOW))
        assert job.next_run == NOW + 60
    finally:
        path.unlink(missing_ok=True)
