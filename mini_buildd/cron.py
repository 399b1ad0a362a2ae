"""The internal crontab (upstream Appendix A): periodic jobs run by one thread while the engine runs,
each with its last run, next run and a log in ``~/var/crontab/<name>.log``.

Jobs: retry failed buildresult uploads (hourly), expire old build dirs (daily) and events (weekly),
take due timed snapshots and expire old ones (hourly check, see :mod:`mini_buildd.archive.snapshots`).
"""

import datetime
import logging
import threading
import time

from mini_buildd import config

LOG = logging.getLogger(__name__)


class Job:
    """One periodic job."""

    def __init__(self, name, interval, func):
        self.name = name
        self.interval = interval
        self.func = func
        self.last_run = None
        self.last_result = None
        self.next_run = time.time() + min(interval.total_seconds(), 60)

    @property
    def id(self):
        return f"{self.name} (every {self.interval})"

    def run(self):
        started = datetime.datetime.now(datetime.timezone.utc)
        try:
            result = self.func()
            self.last_result = True
            line = f"{started.isoformat()} OK {result if result is not None else ''}"
        except Exception as e:  # pylint: disable=broad-except
            LOG.exception("Cron job %s failed", self.name)
            self.last_result = False
            line = f"{started.isoformat()} FAILED {e}"
        self.last_run = started
        self.next_run = time.time() + self.interval.total_seconds()
        with open(config.paths.crontab_log(self.name), "a", encoding="utf-8") as f:
            f.write(line.rstrip() + "\n")
        return self.last_result


class Crontab:
    """Polls its jobs every few seconds in one thread."""

    POLL = 5

    def __init__(self, engine):
        self.engine = engine
        self.jobs = [
            Job("retry_uploads", datetime.timedelta(hours=1), lambda: engine.builder.retry_uploads()),
            Job("expire_builds", datetime.timedelta(days=1), self._expire_builds),
            Job("expire_events", datetime.timedelta(weeks=1), self._expire_events),
            Job("snapshots", datetime.timedelta(hours=1), self._snapshots),
        ]
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="crontab", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def get(self, job_id):
        for job in self.jobs:
            if job_id in (job.id, job.name):
                return job
        raise KeyError(f"No cron job '{job_id}' (known: {', '.join(j.name for j in self.jobs)})")

    def _run(self):
        while not self._stop.wait(self.POLL):
            now = time.time()
            for job in self.jobs:
                if job.next_run <= now and not self._stop.is_set():
                    job.run()

    @staticmethod
    def _expire_builds():
        from mini_buildd.models import Daemon  # pylint: disable=import-outside-toplevel
        from mini_buildd.pipeline import builder  # pylint: disable=import-outside-toplevel
        return builder.expire_build_dirs(Daemon.get().expire_builds_after)

    @staticmethod
    def _expire_events():
        from mini_buildd import services  # pylint: disable=import-outside-toplevel
        from mini_buildd.models import Daemon  # pylint: disable=import-outside-toplevel
        if services.events is not None:
            return services.events.expire(Daemon.get().expire_events_after)
        return None


    @staticmethod
    def _snapshots():
        from mini_buildd.archive import snapshots  # pylint: disable=import-outside-toplevel
        return snapshots.run()


def run_job(id):  # pylint: disable=redefined-builtin
    """API: run one cron job now; ``{id: success}``."""
    from mini_buildd import services  # pylint: disable=import-outside-toplevel
    if services.engine is None or services.engine.cron is None:
        raise ValueError("The engine is not running.")
    try:
        job = services.engine.cron.get(id)
    except KeyError as e:
        raise ValueError(str(e)) from e
    return {job.id: job.run()}
