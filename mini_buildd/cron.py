"""The internal crontab (upstream Appendix A): periodic jobs checked every few seconds while the
engine runs, each with its last run, next run and a log in ``~/var/crontab/<TYPE>_<name>.log``.

A job's id is upstream's ``<name> (<TYPE>)``, TYPE its schedule (HOURLY, DAILY, WEEKLY, MONTHLY,
YEARLY): ``retry_uploads (HOURLY)`` retries failed buildresult uploads, ``setup_inspect (WEEKLY)``
runs the setup inspection and keeps its result for the setup page (``~/var/log/inspect.json``),
``expire_builds (DAILY)`` and ``expire_events (WEEKLY)`` expire old build dirs and events,
``prune_snapshots (HOURLY)`` prunes the change snapshots by their suites' retention rules,
``watch_ports (HOURLY)`` checks whether the origins of ported packages moved on,
``snapshots (WEEKLY|MONTHLY|YEARLY)`` take the timed snapshots of their type and expire old ones
(see :mod:`mini_buildd.archive.snapshots`: these are checked hourly and take a snapshot when it is
due, so restarts neither skip nor double one). The ``cronjob`` call takes an id or a bare name (all
jobs of that name).

Also the engine's periodic work off the reactor thread (:class:`PollService`, a twisted service: a
:class:`~twisted.internet.task.LoopingCall` in the reactor hands each round to a thread of the
reactor's pool with :func:`~twisted.internet.threads.deferToThread`, the next round is scheduled
when it has ended): the crontab checks its jobs every :attr:`Crontab.POLL` seconds with one, the
builder watch (:class:`mini_buildd.pipeline.remotes.BuilderWatch`) polls with another. Checks
never overlap, and one job never runs twice at once (its own lock: also against ``run_job``).
"""

import datetime
import functools
import json
import logging
import os
import threading
import time

from twisted.application import service
from twisted.internet import reactor, task, threads

from mini_buildd import bootstrap, config, files, services
from mini_buildd.archive import snapshots
from mini_buildd.models import Daemon
from mini_buildd.pipeline import builder, port_watch
from mini_buildd.webapp import views_forms

LOG = logging.getLogger(__name__)

#: Upstream's job types: the schedule of each.
PERIODS = {
    "HOURLY": datetime.timedelta(hours=1),
    "DAILY": datetime.timedelta(days=1),
    "WEEKLY": datetime.timedelta(weeks=1),
    "MONTHLY": datetime.timedelta(days=30),
    "YEARLY": datetime.timedelta(days=365),
}


class Job:
    """One periodic job: run every ``interval`` (its type's period unless checked more often)."""

    def __init__(self, name, type, func, interval=None, first_run=None):  # pylint: disable=redefined-builtin  # upstream's word
        self.name = name
        self.type = type
        self.interval = interval or PERIODS[type]
        self.func = func
        self.last_run = None
        self.last_result = None
        #: First run: ``first_run()`` (epoch seconds) if given, else a minute after the start (or the interval if shorter).
        self.next_run = first_run() if first_run is not None else time.time() + min(self.interval.total_seconds(), 60)
        self._lock = threading.Lock()

    @property
    def id(self):
        """Upstream's job id: ``<name> (<TYPE>)``."""
        return f"{self.name} ({self.type})"

    @property
    def log_name(self):
        """Name of the job's log in ``var/crontab/`` (without ``.log``): ``<TYPE>_<name>``."""
        return f"{self.type}_{self.name}"

    def run(self):
        """Run the job now (after a run of it that is going on); True when it succeeded."""
        with self._lock:
            started = datetime.datetime.now(datetime.timezone.utc)
            try:
                result = self.func()
                self.last_result = True
                line = f"{started.isoformat()} OK {result if result is not None else ''}"
            except Exception as e:  # pylint: disable=broad-except  # job boundary: a failure is logged and shown as the last result
                LOG.exception("Cron job %s failed", self.name)
                self.last_result = False
                line = f"{started.isoformat()} FAILED {e}"
            self.last_run = started
            self.next_run = time.time() + self.interval.total_seconds()
            with open(config.paths.crontab_log(self.log_name), "a", encoding="utf-8") as f:
                f.write(line.rstrip() + "\n")
            return self.last_result


class PollService(service.Service):
    """A service named ``name`` calling ``work()`` every ``interval`` seconds off the reactor thread: a
    :class:`~twisted.internet.task.LoopingCall` in the reactor hands each round to a thread of the
    reactor's pool (:func:`~twisted.internet.threads.deferToThread`) and schedules the next one
    when it has ended, so rounds never overlap.

    ``startService``/``stopService`` may be called from any thread (also the reactor's);
    ``stopService`` waits (at most :attr:`STOP_TIMEOUT` seconds) for a round going on, and no round
    starts after it. ``work`` should not raise (a failure ends the loop; it is logged)."""

    STOP_TIMEOUT = 30

    def __init__(self, name, interval, work):
        self.name = name
        self.interval = interval
        self.work = work
        self._loop = task.LoopingCall(self._round)
        self._lock = threading.Lock()    # running flag vs. a round starting
        self._idle = threading.Event()   # no round in a thread
        self._idle.set()

    def startService(self):
        super().startService()
        reactor.callFromThread(self._start_loop)

    def stopService(self):
        with self._lock:
            super().stopService()
        reactor.callFromThread(self._stop_loop)
        if not self._idle.wait(self.STOP_TIMEOUT):
            LOG.warning("%s: a round still runs after %ss; not waiting for it.", self.name, self.STOP_TIMEOUT)

    # ----------------------------------------------------------------------------- reactor thread
    def _start_loop(self):
        if self.running and not self._loop.running:
            self._loop.start(self.interval, now=False).addErrback(self._failed)

    def _stop_loop(self):
        if self._loop.running:
            self._loop.stop()

    def _failed(self, failure):
        LOG.error("%s stopped: %s", self.name, failure.getTraceback())

    def _round(self):
        """A Deferred of one round in a pool thread (the loop waits for it), or None when stopped."""
        with self._lock:
            if not self.running:
                return None
            self._idle.clear()
        return threads.deferToThread(self._work)

    # ----------------------------------------------------------------------------- pool thread
    def _work(self):
        try:
            self.work()
        finally:
            self._idle.set()


class Crontab(PollService):
    """Checks its jobs every :attr:`POLL` seconds; due jobs run off the reactor thread, and none
    after ``stopService``."""

    POLL = 5

    def __init__(self, engine):
        super().__init__("crontab", self.POLL, self.run_due)
        self.engine = engine
        self.jobs = [
            Job("retry_uploads", "HOURLY", engine.builder.retry_uploads),
            Job("setup_inspect", "WEEKLY", setup_inspect, first_run=next_inspection),
            Job("expire_builds", "DAILY", self._expire_builds),
            Job("expire_events", "WEEKLY", self._expire_events),
            Job("prune_snapshots", "HOURLY", snapshots.prune_changes),
            Job("watch_ports", "HOURLY", port_watch.run),
        ] + [Job("snapshots", t, functools.partial(snapshots.run, types=[t]), interval=PERIODS["HOURLY"])
             for t in snapshots.TYPES]

    def get(self, job_id):
        """The jobs of id ``job_id`` (``<name> (<TYPE>)``) or of name ``job_id`` (all of that name); KeyError if none."""
        found = [job for job in self.jobs if job_id == job.id] or [job for job in self.jobs if job_id == job.name]
        if not found:
            raise KeyError(f"No cron job '{job_id}' (known: {', '.join(j.id for j in self.jobs)})")
        return found

    def run_due(self):
        """Run the due jobs (pool thread)."""
        now = time.time()
        for job in self.jobs:
            if job.next_run <= now and self.running:
                job.run()

    @staticmethod
    def _expire_builds():
        return builder.expire_build_dirs(Daemon.get().expire_builds_after)

    @staticmethod
    def _expire_events():
        if services.events is not None:
            return services.events.expire(Daemon.get().expire_events_after)
        return None


#: The first inspection of a home that has none yet: this long after the daemon's start.
FIRST_INSPECTION_DELAY = datetime.timedelta(hours=1)


def next_inspection(now=None):
    """When ``setup_inspect`` runs first after a start: a week after the last inspection (its result
    file's time; at the earliest a minute from now), else :data:`FIRST_INSPECTION_DELAY` from now.
    The inspection reads every archive: not at every start."""
    now = time.time() if now is None else now
    try:
        last = os.stat(config.paths.inspect_json).st_mtime
    except OSError:
        return now + FIRST_INSPECTION_DELAY.total_seconds()
    return max(now + 60, last + PERIODS["WEEKLY"].total_seconds())


def setup_inspect(now=None):
    """The ``setup_inspect`` job: the setup operation without update and PCA on the options that
    regenerate the current configuration (the setup page's 'Current (inspect)' preset), i.e. what
    differs from the setup data or is not active; its result with ``time`` (UTC ISO) and ``options``
    goes to ``var/log/inspect.json``. A short summary for the job log."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    options = views_forms.current_options()
    result = bootstrap.run(**{k: v for k, v in options.items() if k not in ("update", "pca")})
    result.update({"time": now.isoformat(timespec="seconds"), "options": options})
    files.write_atomic(config.paths.inspect_json, json.dumps(result, indent=1, default=str))
    report = result["report"]
    return f"{report['instances']} instances, severity {report['severity_name']}: {report['counts']}"


def run_job(id):  # pylint: disable=redefined-builtin
    """API: run a cron job now (``id``: ``<name> (<TYPE>)``, or a name: all jobs of that name); ``{id: success}``."""
    if services.engine is None or services.engine.cron is None:
        raise ValueError("The engine is not running.")
    try:
        jobs = services.engine.cron.get(id)
    except KeyError as e:
        raise ValueError(str(e)) from e
    return {job.id: job.run() for job in jobs}
