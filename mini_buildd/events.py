"""Events: what happened to a package (REJECTED, PACKAGING, BUILDING, BUILT, INSTALLED, FAILED,
MIGRATED, REMOVED), upstream §5.4.

This module owns

- :class:`Event`, one event and its JSON form (the format of upstream 2.x event files),
- :class:`Events`, the instance's event hub: saving event files below ``var/events/``, the
  in-memory queue (reloaded from those files on start), tracking of "ongoing" packages and
  builds, event hooks (``etc/event-hooks/``), notification mails, and waking clients that wait
  for the next event (threads via :meth:`Events.wait`, the twisted long poll via
  :meth:`Events.attach`), and listeners that see every event (:meth:`Events.add_listener`: the
  webhook dispatcher of :mod:`mini_buildd.webhooks`),
- expiry of old event directories (:func:`expire_key_dirs`, :meth:`Events.expire`).

Notification mails are built and sent by :mod:`mini_buildd.notify` (:class:`mini_buildd.notify.Mailer`);
the hub only runs the ``mailer`` it is given for each event, in a background thread. Paths are given
by the caller (from :mod:`mini_buildd.config`).
"""

import collections
import dataclasses
import datetime
import enum
import fnmatch
import heapq
import json
import logging
import os
import pathlib
import re
import shutil
import threading
import time
import typing

from mini_buildd.tools import call
from mini_buildd import errors, files
from mini_buildd.dist import strip_epoch

LOG = logging.getLogger(__name__)

#: Event hooks: file names matching this glob (no leading ``_`` or ``.``, no trailing ``~``).
HOOK_GLOB = "[!_.]*[!~]"
#: Default time limit for one hook run (seconds).
HOOK_TIMEOUT = 600
#: Maximum number of clients waiting for the next event at the same time (upstream §5.4).
MAX_ATTACHED = 70
#: Default size of the in-memory queue (Daemon ``event_queue_size``).
QUEUE_SIZE = 500

_TIMECODE_FORMAT = "%Y%m%d:%H%M%S:%f"


class Type(enum.Enum):
    """Event types (the value is the name used in JSON and file names)."""

    REJECTED = "REJECTED"      # upload rejected
    BUILDING = "BUILDING"      # build started on one of our chroots
    BUILT = "BUILT"            # build finished (any result)
    PACKAGING = "PACKAGING"    # packaging started (buildrequests sent)
    INSTALLED = "INSTALLED"    # package installed in the repository
    FAILED = "FAILED"          # packaging failed
    MIGRATED = "MIGRATED"      # package migrated to the next suite
    REMOVED = "REMOVED"        # package removed from a distribution
    DENIED = "DENIED"          # access refused (e.g. an address locked after too many failed logins)
    PORT_OUTDATED = "PORT_OUTDATED"  # the origin of a watched port has another version now

    def __str__(self):
        return self.value


#: Types whose file name carries the architecture.
ARCH_TYPES = (Type.BUILDING, Type.BUILT)
#: Start of an "ongoing" state -> the types that end it.
ONGOING = {Type.PACKAGING: (Type.INSTALLED, Type.FAILED), Type.BUILDING: (Type.BUILT,)}

_FILE_NAME_RE = re.compile(r"_(" + "|".join(t.value for t in Type) + r")(_[^_/]+)?\.json$")


class TooManyClients(errors.Unavailable):
    """More than :attr:`Events.max_attached` clients want to wait for events (HTTP 503)."""


class Shutdown(errors.Unavailable):
    """The event hub is shut down: no more waiting for events (HTTP 503)."""


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def parse_datetime(value):
    """``None``, an ISO 8601 string or a datetime -> aware UTC datetime (or ``None``).

    A time without zone is taken as UTC. Raises ``ValueError`` on a bad string.
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        value = datetime.datetime.fromisoformat(text)
    if not isinstance(value, datetime.datetime):
        raise ValueError(f"Not a datetime: {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc)


def parse_timecode(timecode):
    """``YYYYMMDD:HHMMSS:ffffff`` -> aware UTC datetime; ``ValueError`` if it is none."""
    return datetime.datetime.strptime(timecode, _TIMECODE_FORMAT).replace(tzinfo=datetime.timezone.utc)


@dataclasses.dataclass
class Event:
    """One event. ``timestamp`` is an aware UTC datetime; ``extra`` holds the type's details
    (``timecode``, ``key``, ``bkey``, ``changes``, ``architecture``, ..., see upstream §5.4).

    ``path`` is where the event file was saved (or loaded from), if it was; not part of the JSON.
    """

    type: Type
    distribution: str
    source: str
    version: str
    timestamp: datetime.datetime = dataclasses.field(default_factory=utcnow)
    extra: dict = dataclasses.field(default_factory=dict)
    path: typing.Optional[pathlib.Path] = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self):
        self.type = self.type if isinstance(self.type, Type) else Type(str(self.type))
        self.timestamp = parse_datetime(self.timestamp)
        if self.timestamp is None:
            raise ValueError("Event needs a timestamp")
        self.extra = dict(self.extra or {})

    def __str__(self):
        return self.one_liner()

    # ------------------------------------------------------------------ JSON
    def to_json(self):
        """The JSON-able dict: ``{"type", "distribution", "source", "version", "timestamp", "extra"}``."""
        return {
            "type": self.type.value,
            "distribution": self.distribution,
            "source": self.source,
            "version": self.version,
            "timestamp": self.timestamp.isoformat(timespec="microseconds"),
            "extra": self.extra,
        }

    def dumps(self):
        """The event as JSON text (as saved in event files)."""
        return json.dumps(self.to_json())

    @classmethod
    def from_json(cls, data, path=None):
        """Event from a dict (as :meth:`to_json` makes) or JSON text; ``ValueError`` if it is none."""
        try:
            if isinstance(data, (str, bytes, bytearray)):
                data = json.loads(data)
            return cls(type=Type(data["type"]), distribution=data["distribution"], source=data["source"],
                       version=data["version"], timestamp=parse_datetime(data["timestamp"]),
                       extra=data.get("extra") or {}, path=pathlib.Path(path) if path else None)
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
            raise ValueError(f"Not an event: {e}") from e

    @classmethod
    def load(cls, path):
        """Event from a saved event file."""
        path = pathlib.Path(path)
        return cls.from_json(path.read_text(encoding="utf-8"), path=path.resolve())

    # ------------------------------------------------------------------ names
    @property
    def key(self):
        """``SOURCE/VERSION/TIMECODE`` (from ``extra``), or ``None``."""
        return self.extra.get("key")

    @property
    def bkey(self):
        """``SOURCE/VERSION/TIMECODE/ARCH`` (from ``extra``), or ``None``."""
        return self.extra.get("bkey")

    @property
    def architecture(self):
        return self.extra.get("architecture")

    def file_name(self):
        """``<source>_<version without epoch>_<TYPE>[_<arch>].json`` (arch for BUILDING/BUILT only)."""
        name = f"{self.source}_{strip_epoch(self.version)}_{self.type.value}"
        if self.type in ARCH_TYPES and self.architecture:
            name += f"_{self.architecture}"
        return name + ".json"

    def identity(self):
        """What makes an event unique (used to drop duplicates)."""
        return (self.type.value, self.source, self.version, self.distribution, self.timestamp, self.bkey)

    def one_liner(self):
        """Short human description, for mail subjects and logs."""
        text = f"{self.type.value}: {self.source} {self.version} ({self.distribution})"
        if self.type in ARCH_TYPES and self.architecture:
            text += f" [{self.architecture}]"
        detail = None
        if self.type == Type.BUILT:
            detail = self.extra.get("sbuild_status") or self.extra.get("internal_error")
        error = self.extra.get("error")
        if error:
            detail = (error.get("detail") or error.get("title")) if isinstance(error, dict) else str(error)
        if detail:
            detail = " ".join(str(detail).split())
            text += ": " + (detail if len(detail) <= 120 else detail[:117] + "...")
        return text

    # ------------------------------------------------------------------ ongoing
    def ongoing_id(self):
        """What an ongoing state is tracked by: ``(PACKAGING, key)`` for PACKAGING/INSTALLED/FAILED,
        ``(BUILDING, bkey)`` for BUILDING/BUILT; ``None`` for other types."""
        for start, ends in ONGOING.items():
            if self.type == start or self.type in ends:
                return (start, self.key if start == Type.PACKAGING else self.bkey)
        return None

    def is_ongoing_start(self):
        """PACKAGING or BUILDING."""
        return self.type in ONGOING

    def is_ongoing_end(self):
        """INSTALLED, FAILED (end PACKAGING) or BUILT (ends BUILDING)."""
        return any(self.type in ends for ends in ONGOING.values())


def write_atomic(path, text):
    """Write an event file atomically (and durably: events must survive a crash)."""
    files.write_atomic(path, text, fsync=True)


def find_event_files(events_dir):
    """All saved event files below ``events_dir`` (by name: ``*_<TYPE>[_<arch>].json``)."""
    for dirpath, _dirnames, filenames in os.walk(events_dir):
        for name in filenames:
            if not name.startswith(".") and _FILE_NAME_RE.search(name):
                yield pathlib.Path(dirpath, name)


def hooks(hooks_dir):
    """Executable hooks in ``hooks_dir`` matching :data:`HOOK_GLOB`, in alphabetical order."""
    if hooks_dir is None:
        return []
    try:
        names = sorted(os.listdir(hooks_dir))
    except FileNotFoundError:
        return []
    hooks_dir = pathlib.Path(hooks_dir).resolve()
    result = []
    for name in names:
        path = hooks_dir / name
        if not fnmatch.fnmatchcase(name, HOOK_GLOB) or not path.is_file():
            continue
        if not os.access(path, os.X_OK):
            LOG.warning("Event hook not executable, skipped: %s", path)
            continue
        result.append(path)
    return result


def run_hooks(hooks_dir, event_path, timeout=HOOK_TIMEOUT):
    """Run each hook with the absolute event file path as its argument; failures are only logged.

    Returns ``{hook path: exit code}`` (-1: timed out or could not run).
    """
    results = {}
    for hook in hooks(hooks_dir):
        try:
            output = call.run([hook, pathlib.Path(event_path).resolve()], timeout=timeout, check=True)
            results[hook] = 0
            LOG.debug("Event hook %s: ok%s", hook, f"\n{output.strip()}" if output.strip() else "")
        except call.CallError as e:
            results[hook] = e.returncode
            LOG.warning("Event hook %s failed: %s", hook, e)
    return results


def expire_key_dirs(root, older_than, now=None):
    """Remove ``root/SOURCE/VERSION/TIMECODE/`` directories older than ``older_than`` (timedelta).

    The age comes from the TIMECODE directory name (its mtime if the name is no timecode).
    VERSION and SOURCE directories left empty are removed too; ``root`` itself and anything
    not laid out like this is left alone. Returns the removed TIMECODE directories. Works for
    ``var/events`` and ``var/shared/builds`` alike.
    """
    root = pathlib.Path(root)
    cutoff = (now or utcnow()) - older_than
    removed = []

    def subdirs(path):
        try:
            return sorted(p for p in path.iterdir() if p.is_dir() and not p.is_symlink())
        except FileNotFoundError:
            return []

    def remove_if_empty(path):
        try:
            path.rmdir()
        except OSError:
            pass

    for source_dir in subdirs(root):
        for version_dir in subdirs(source_dir):
            for tc_dir in subdirs(version_dir):
                try:
                    age = parse_timecode(tc_dir.name)
                except ValueError:
                    age = datetime.datetime.fromtimestamp(tc_dir.stat().st_mtime, datetime.timezone.utc)
                if age < cutoff:
                    LOG.info("Expiring %s", tc_dir)
                    shutil.rmtree(tc_dir, ignore_errors=True)
                    removed.append(tc_dir)
            remove_if_empty(version_dir)
        remove_if_empty(source_dir)
    return removed


class _Worker:
    """Runs jobs in order in a background thread that lives only while there is work."""

    def __init__(self, name):
        self.name = name
        self._jobs = collections.deque()
        self._cond = threading.Condition()
        self._thread = None

    def put(self, func, *args):
        """Queue func(*args) for the worker thread (started on demand)."""
        with self._cond:
            self._jobs.append((func, args))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def _run(self):
        while True:
            with self._cond:
                if not self._jobs:
                    self._thread = None
                    self._cond.notify_all()
                    return
                func, args = self._jobs.popleft()
            try:
                func(*args)
            except Exception:  # pylint: disable=broad-except  # thread boundary: the worker goes on with the next job
                LOG.exception("%s: job failed", self.name)

    def join(self, timeout=None):
        """Wait until all jobs are done; ``False`` on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._thread is None, timeout)


class Events:
    """The instance's event hub (thread-safe).

    - :meth:`log` saves, queues, tracks ongoing, runs hooks and mail (in background threads),
      and wakes waiting clients.
    - :meth:`load` fills the queue from saved files on start. Ongoing states are not restored:
      after a restart ongoing packaging is dropped (upstream §1.4 step 7).
    - :meth:`queue`, :meth:`ongoing` answer queries; :meth:`wait` (threads) and :meth:`attach`
      (callbacks, for the twisted long poll) deliver the next events.

    Event lists from :meth:`queue` and :meth:`ongoing` are newest first; lists from
    :meth:`wait` and :meth:`attach` are in the order the events happened (oldest first), so a
    streaming client answers with the first one and asks again with ``after`` = its timestamp.
    """

    max_attached = MAX_ATTACHED

    def __init__(self, events_dir, queue_size=QUEUE_SIZE, hooks_dir=None, mailer=None, hook_timeout=HOOK_TIMEOUT):
        self.events_dir = pathlib.Path(events_dir)
        self.queue_size = queue_size
        self.hooks_dir = pathlib.Path(hooks_dir) if hooks_dir else None
        self.mailer = mailer
        self.hook_timeout = hook_timeout
        self._cond = threading.Condition()
        self._queue = collections.deque(maxlen=queue_size)  # (seq, Event); seq 0 = loaded from file
        self._seq = 0
        self._ongoing = {}  # ongoing_id -> start event
        self._attached = []
        self._listeners = []  # called with every logged event (e.g. the webhook dispatcher's queue)
        self._waiting = 0
        self._shutdown = False
        self._hook_worker = _Worker("event-hooks")
        self._mail_worker = _Worker("event-mails")

    def __repr__(self):
        return f"Events({self.events_dir}, {len(self._queue)}/{self.queue_size})"

    # ------------------------------------------------------------------ writing
    def save(self, event, save_dir):
        """Save ``event`` as ``save_dir/<file_name>`` (dir created, atomic write); return the path."""
        save_dir = pathlib.Path(save_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        path = (save_dir / event.file_name()).resolve()
        write_atomic(path, event.dumps())
        event.path = path
        return path

    def log(self, event, save_dir=None, after_save=None):
        """Log ``event``: save it to ``save_dir`` (the event's ``var/events/<bkey>/``; not saved if
        ``None``), queue it, track ongoing, wake clients, run hooks (only for saved events) and mail.
        ``after_save`` (if given) runs between saving and telling anyone: the files an event names
        are in place when its readers come, and the event is on disk before they are moved.

        Hooks and mails run in background threads; their failures are only logged. Returns the event.
        """
        if save_dir is not None:
            try:
                self.save(event, save_dir)
            except OSError as e:
                LOG.error("Could not save event %s to %s: %s", event, save_dir, e)
        if after_save is not None:
            after_save()
        LOG.info("Event: %s", event.one_liner())

        with self._cond:
            self._seq += 1
            self._queue.append((self._seq, event))
            oid = event.ongoing_id()
            if oid is not None:
                if event.is_ongoing_start():
                    self._ongoing[oid] = event
                else:
                    self._ongoing.pop(oid, None)
            callbacks, self._attached = self._attached, []
            self._cond.notify_all()
        for callback in callbacks + self._listeners:
            self._call(callback, event)

        if event.path is not None and self.hooks_dir is not None:
            self._hook_worker.put(run_hooks, self.hooks_dir, event.path, self.hook_timeout)
        if self.mailer is not None:
            self._mail_worker.put(self._mail, event)
        return event

    def add_listener(self, listener):
        """Call ``listener(event)`` for every event logged from now on, in the logging thread: it
        must return at once (e.g. only queue the event)."""
        self._listeners.append(listener)

    def _mail(self, event):
        try:
            self.mailer(event)
        except Exception as e:  # pylint: disable=broad-except  # mail job boundary: a mail failure is only logged
            LOG.error("Could not send notification mail for '%s': %s", event.one_liner(), e)

    @staticmethod
    def _call(callback, event):
        try:
            callback(event)
        except Exception:  # pylint: disable=broad-except  # callback boundary: one client's failure must not stop the others
            LOG.exception("Event client callback failed")

    def join(self, timeout=None):
        """Wait until pending hooks and mails are done; ``False`` on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for worker in (self._hook_worker, self._mail_worker):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not worker.join(left):
                return False
        return True

    # ------------------------------------------------------------------ loading, expiry
    def load(self):
        """Fill the queue with the newest ``queue_size`` saved events (by timestamp) below
        ``events_dir``; files that do not parse are skipped with a warning. Events already in
        the queue are not duplicated. Returns the number of events in the queue."""
        loaded = []
        for path in find_event_files(self.events_dir):
            try:
                loaded.append(Event.load(path))
            except (OSError, ValueError, UnicodeDecodeError) as e:
                LOG.warning("Ignoring unparsable event file %s: %s", path, e)
        newest = heapq.nlargest(self.queue_size, loaded, key=lambda e: e.timestamp)
        with self._cond:
            entries = {}
            for seq, event in list(self._queue) + [(0, e) for e in newest]:
                entries.setdefault(event.identity(), (seq, event))
            merged = sorted(entries.values(), key=lambda se: (se[1].timestamp, se[0]))
            self._queue = collections.deque(merged[-self.queue_size:] if self.queue_size else [], maxlen=self.queue_size)
            count = len(self._queue)
        LOG.info("Loaded %s events from %s (%s files)", count, self.events_dir, len(loaded))
        return count

    def expire(self, older_than, now=None):
        """Remove saved event directories (``SOURCE/VERSION/TIMECODE/``) older than ``older_than``
        (timedelta), empty parents up to ``events_dir``, and queued events older than that.
        Returns the removed directories."""
        now = now or utcnow()
        removed = expire_key_dirs(self.events_dir, older_than, now=now)
        cutoff = now - older_than
        with self._cond:
            self._queue = collections.deque(((s, e) for s, e in self._queue if e.timestamp >= cutoff), maxlen=self.queue_size)
        return removed

    # ------------------------------------------------------------------ queries
    def queue(self, types=None, source=None, distribution=None, after=None):
        """Queued events, newest first, filtered by type(s) (Type or name), source, distribution
        and ``after`` (ISO string or datetime: only events with a later timestamp)."""
        if types is not None:
            if isinstance(types, (str, Type)):
                types = [types]
            types = {t if isinstance(t, Type) else Type(str(t).upper()) for t in types}
        after = parse_datetime(after)
        with self._cond:
            events = [e for _s, e in reversed(self._queue)]
        return [e for e in events
                if (types is None or e.type in types)
                and (source is None or e.source == source)
                and (distribution is None or e.distribution == distribution)
                and (after is None or e.timestamp > after)]

    def ongoing(self):
        """Start events (PACKAGING, BUILDING) not yet ended, newest first."""
        with self._cond:
            events = list(self._ongoing.values())
        return sorted(events, key=lambda e: e.timestamp, reverse=True)

    def _newer(self, after):
        """Queued events newer than ``after``, oldest first (lock held)."""
        return sorted((e for _s, e in self._queue if e.timestamp > after), key=lambda e: e.timestamp)

    def _clients(self):
        return len(self._attached) + self._waiting

    # ------------------------------------------------------------------ waiting clients
    def wait(self, after=None, timeout=None):
        """Events newer than ``after`` (ISO string or datetime), oldest first.

        If the queue holds such events they are returned at once; else (or with ``after=None``)
        block until the next event is logged and return the events logged meanwhile, or ``[]``
        after ``timeout`` seconds. Raises :class:`Shutdown` once the hub is shut down and
        :class:`TooManyClients` beyond :attr:`max_attached` waiting clients.
        """
        after = parse_datetime(after)
        with self._cond:
            newer = self._admit(after)
            if newer:
                return newer
            start = self._seq
            self._waiting += 1
            try:
                self._cond.wait_for(lambda: self._seq != start or self._shutdown, timeout)
                if self._seq != start:
                    return [e for s, e in self._queue if s > start]
                if self._shutdown:
                    raise Shutdown("Events are shut down")
                return []
            finally:
                self._waiting -= 1

    def _admit(self, after):
        """Under the lock: queued events newer than ``after`` (to answer at once), or ``[]`` if the
        client may wait; raises :class:`Shutdown` / :class:`TooManyClients`."""
        if self._shutdown:
            raise Shutdown("Events are shut down")
        if after is not None:
            newer = self._newer(after)
            if newer:
                return newer
        if self._clients() >= self.max_attached:
            raise TooManyClients(f"Too many event clients (max {self.max_attached})")
        return []

    def attach(self, callback, after=None):
        """Non-blocking wait for the twisted long poll.

        If queued events are newer than ``after`` they are returned (oldest first) and
        ``callback`` is not registered. Else ``[]`` is returned and ``callback(event)`` will be
        called once, from the logging thread, with the next event, or ``callback(None)`` on
        :meth:`shutdown` (use ``reactor.callFromThread`` in it). Call :meth:`detach` if the client
        goes away first. Raises :class:`TooManyClients` beyond :attr:`max_attached` clients and
        :class:`Shutdown` once shut down.
        """
        after = parse_datetime(after)
        with self._cond:
            newer = self._admit(after)
            if newer:
                return newer
            self._attached.append(callback)
            return []

    def detach(self, callback):
        """Unregister an attached callback; ``True`` if it was still attached."""
        with self._cond:
            try:
                self._attached.remove(callback)
                return True
            except ValueError:
                return False

    def attached(self):
        """Number of clients now waiting (attached callbacks plus :meth:`wait` calls)."""
        with self._cond:
            return self._clients()

    def shutdown(self, timeout=30):
        """Wake all clients with the shutdown signal (``callback(None)``, :class:`Shutdown` in
        :meth:`wait`), refuse new ones, and give pending hooks and mails up to ``timeout``
        seconds. Logging still works afterwards."""
        with self._cond:
            self._shutdown = True
            callbacks, self._attached = self._attached, []
            self._cond.notify_all()
        for callback in callbacks:
            self._call(callback, None)
        if not self.join(timeout):
            LOG.warning("Event hooks/mails still running after %ss", timeout)

    @property
    def is_shutdown(self):
        return self._shutdown
