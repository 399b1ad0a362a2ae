"""Monitoring figures (issue #17): what ``/metrics`` answers (OpenMetrics text), what ``/readyz``
checks, and the event figures the home page plots.

This module owns

- the OpenMetrics text writer (:class:`Family`, :func:`render`, :data:`CONTENT_TYPE`; our own, no
  run-time dependency) and histogram bucketing (:class:`Histogram`),
- :class:`EventFigures`: counters and duration histograms from the event hub's queue, each event
  counted once (events by type, builds by outcome, build and upload->INSTALLED durations),
- :func:`collect`: every family, read at scrape time from the running services (engine, builder,
  packager, FTP server, event hub) and the models; the expensive parts (repository sizes and
  package counts, remotes' status) are cached for :data:`CACHE_SECONDS`,
- :func:`readiness`: whether the instance is ready to work, and what is not (the rule is in its
  docstring and the manual's monitoring chapter).

The HTTP side (views, access rule, the SVG plots) is :mod:`mini_buildd.metrics_views`.
"""

import bisect
import collections
import logging
import math
import os
import threading
import time

from mini_buildd import config, events, models, services
from mini_buildd.pipeline import ftpd, remotes

LOG = logging.getLogger(__name__)

#: The Content-Type of ``/metrics``.
CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
#: Prefix of every metric name.
PREFIX = "mini_buildd_"
#: Seconds the expensive figures (disk sizes, package counts, remotes' status) are reused.
CACHE_SECONDS = 30
#: Seconds to wait for one remote's status.
REMOTE_TIMEOUT = 3

#: Bucket bounds (seconds) of the build duration histogram (a build's limit defaults to 6 h).
BUILD_BUCKETS = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600)
#: Bucket bounds (seconds) of the upload->INSTALLED/FAILED duration histogram.
UPLOAD_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800)

_TYPES = ("counter", "gauge", "histogram", "info", "stateset", "unknown")


# ------------------------------------------------------------------------------------------------ text writer
def format_value(value):
    """A sample value in OpenMetrics number syntax (ints as ints, ``NaN``, ``+Inf``, ``-Inf``)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return f"{value:.1f}"
    return repr(value)


def escape_label(value):
    """A label value with backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(help_text):
    return str(help_text).replace("\\", "\\\\").replace("\n", "\\n")


def _labels(labels):
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in labels) + "}"


class Family:
    """One metric family: name (without ``_total``), type, help, unit, and its samples in the order
    added (``(suffix, labels, value)``; samples of one label set must be added together)."""

    def __init__(self, name, kind, help_text, unit=""):
        if kind not in _TYPES:
            raise ValueError(f"Unknown metric type '{kind}'")
        if unit and not name.endswith("_" + unit):
            raise ValueError(f"Metric {name}: a name with a unit ends with _{unit}")
        self.name, self.kind, self.help, self.unit = name, kind, help_text, unit
        self.samples = []

    def add(self, value, suffix="", **labels):
        """Add one sample (``suffix``: ``_total``, ``_bucket``, ...; ``labels`` in the order given)."""
        self.samples.append((suffix, tuple((k, str(v)) for k, v in labels.items()), value))
        return self

    def lines(self):
        """The family's text lines: metadata, then the samples."""
        yield f"# TYPE {self.name} {self.kind}"
        if self.unit:
            yield f"# UNIT {self.name} {self.unit}"
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        for suffix, labels, value in self.samples:
            yield f"{self.name}{suffix}{_labels(labels)} {format_value(value)}"


def render(families):
    """The OpenMetrics text of ``families`` (ends with ``# EOF``)."""
    lines = []
    for family in families:
        lines.extend(family.lines())
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def counter(name, help_text, unit=""):
    return Family(PREFIX + name, "counter", help_text, unit)


def gauge(name, help_text, unit=""):
    return Family(PREFIX + name, "gauge", help_text, unit)


# ------------------------------------------------------------------------------------------------ histograms
class Histogram:
    """Observations sorted into buckets by upper bound (``le``: a value equal to a bound is in that
    bucket), plus the +Inf bucket, their count and sum."""

    def __init__(self, bounds):
        self.bounds = tuple(sorted(float(b) for b in bounds))
        self.counts = [0] * (len(self.bounds) + 1)   # per bucket (not cumulative); last: above every bound
        self.count = 0
        self.sum = 0.0

    def observe(self, value):
        """Count ``value`` in its bucket."""
        value = float(value)
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def cumulative(self):
        """``[(le, count of values <= le)]``, ending with ``("+Inf", count)``."""
        result, total = [], 0
        for bound, n in zip(self.bounds + (math.inf,), self.counts):
            total += n
            result.append((format_value(bound), total))
        return result

    def add_to(self, family, **labels):
        """Add this histogram's samples (buckets, count, sum) to ``family``."""
        for le, n in self.cumulative():
            family.add(n, "_bucket", **labels, le=le)
        family.add(self.count, "_count", **labels)
        family.add(self.sum, "_sum", **labels)


# ------------------------------------------------------------------------------------------------ event figures
def build_outcome(event):
    """The outcome of a build (a BUILT event): ``canceled``, ``internal_error`` or sbuild's status word."""
    extra = event.extra
    if extra.get("canceled_by"):
        return "canceled"
    if extra.get("internal_error"):
        return "internal_error"
    status = str(extra.get("sbuild_status") or "error").lower()
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in status) or "error"


class EventFigures:
    """Counters and duration histograms over the hub's events, each event counted once.

    :meth:`follow` attaches to a hub (:meth:`mini_buildd.events.Events.add_listener`): from then on
    every event is counted as it is logged (:meth:`observe`, in the logging thread: only counting).
    :meth:`update` counts the events of a queue (newest first, as the hub's ``queue()`` gives it)
    not counted yet: at the first collection the queued events (loaded at start or logged before),
    and at every later one those a listener has not counted yet (a client may read ``/metrics``
    between the hub queueing an event and calling its listeners). Each event counts once: the
    identities of the latest counted events are kept (at least twice the queue's length).

    Durations pair events of the same package: a build runs from BUILDING to BUILT (same ``bkey``;
    sbuild's own ``sbuild_build_time`` when the BUILDING event was not seen), an upload from
    PACKAGING to INSTALLED or FAILED (same ``key``; from the upload's arrival timecode when the
    PACKAGING event was not seen). At most :attr:`MAX_STARTS` unmatched starts are remembered.
    """

    MAX_STARTS = 10000

    def __init__(self):
        self._lock = threading.Lock()
        self._counted = collections.OrderedDict()   # identities of the latest counted events
        self._capacity = 4096
        self._hub = None
        self._starts = {}   # (BUILDING, bkey) or (PACKAGING, key) -> timestamp, oldest first
        self.by_type = collections.Counter()
        self.builds = collections.Counter()
        self.build_duration = Histogram(BUILD_BUCKETS)
        self.upload_duration = {"installed": Histogram(UPLOAD_BUCKETS), "failed": Histogram(UPLOAD_BUCKETS)}

    @property
    def following(self):
        return self._hub is not None

    def follow(self, hub):
        """Count every event ``hub`` logs from now on, and the ones it holds now (once per hub)."""
        with self._lock:
            if self._hub is hub:
                return self
            self._hub = hub
            hub.add_listener(self.observe)
        return self.update(hub.queue())

    def observe(self, event):
        """Count ``event`` unless it was counted already (the listener of the followed hub)."""
        with self._lock:
            if self._mark(event):
                self._count(event)

    def update(self, queue):
        """Count the events of ``queue`` (newest first) not counted yet; return self."""
        with self._lock:
            self._capacity = max(self._capacity, 2 * len(queue))
            for ev in reversed(queue):
                if self._mark(ev):
                    self._count(ev)
        return self

    def _mark(self, event):
        """Remember ``event`` as counted; False if it was already (lock held)."""
        ident = event.identity()
        if ident in self._counted:
            return False
        self._counted[ident] = None
        while len(self._counted) > self._capacity:
            self._counted.popitem(last=False)
        return True

    def _count(self, ev):
        self.by_type[ev.type.value] += 1
        if ev.type in (events.Type.BUILDING, events.Type.PACKAGING):
            self._starts[(ev.type, ev.bkey if ev.type == events.Type.BUILDING else ev.key)] = ev.timestamp
            while len(self._starts) > self.MAX_STARTS:
                del self._starts[next(iter(self._starts))]
        elif ev.type == events.Type.BUILT:
            self.builds[build_outcome(ev)] += 1
            seconds = _seconds_since(self._starts.pop((events.Type.BUILDING, ev.bkey), None), ev.timestamp)
            if seconds is None:
                try:
                    seconds = float(ev.extra.get("sbuild_build_time") or "")
                except ValueError:
                    seconds = None
            if seconds is not None:
                self.build_duration.observe(max(0.0, seconds))
        elif ev.type in (events.Type.INSTALLED, events.Type.FAILED):
            start = self._starts.pop((events.Type.PACKAGING, ev.key), None)
            if start is None:
                try:
                    start = events.parse_timecode(ev.extra.get("timecode") or "")
                except ValueError:
                    start = None
            seconds = _seconds_since(start, ev.timestamp)
            if seconds is not None:
                self.upload_duration[ev.type.value.lower()].observe(max(0.0, seconds))

    def families(self):
        """The event families of ``/metrics``."""
        with self._lock:
            ev = counter("events", "Events logged (the queue loaded at start and every event since), by type.")
            for etype in events.Type:
                ev.add(self.by_type.get(etype.value, 0), "_total", type=etype.value)
            builds = counter("builds", "Builds on this instance's builder ended (BUILT events), by outcome "
                                       "(sbuild's status word, canceled or internal_error).")
            for outcome in sorted(self.builds):
                builds.add(self.builds[outcome], "_total", outcome=outcome)
            build = Family(PREFIX + "build_duration_seconds", "histogram",
                           "Build durations (BUILDING to BUILT of the same build).", "seconds")
            self.build_duration.add_to(build)
            upload = Family(PREFIX + "upload_duration_seconds", "histogram",
                            "Upload to INSTALLED or FAILED (from PACKAGING of the same package), by outcome.", "seconds")
            for outcome, hist in sorted(self.upload_duration.items()):
                hist.add_to(upload, outcome=outcome)
            return [ev, builds, build, upload]


def _seconds_since(start, end):
    if start is None:
        return None
    return (end - start).total_seconds()


#: The instance's event figures (following the hub from the first collection on).
FIGURES = EventFigures()


def event_figures():
    """:data:`FIGURES`, following the running hub from the first call on (if there is a hub)."""
    hub = services.events
    if hub is not None:
        FIGURES.follow(hub).update(hub.queue())
    return FIGURES


def ongoing_timeline(queue):
    """``[(timestamp, packaging, building)]`` after each event of ``queue`` (newest first, as the hub
    gives it): how many packages were being packaged and builds running (oldest first)."""
    packaging, building, points = set(), set(), []
    for ev in reversed(queue):
        if ev.type == events.Type.PACKAGING:
            packaging.add(ev.key)
        elif ev.type in (events.Type.INSTALLED, events.Type.FAILED):
            packaging.discard(ev.key)
        elif ev.type == events.Type.BUILDING:
            building.add(ev.bkey)
        elif ev.type == events.Type.BUILT:
            building.discard(ev.bkey)
        else:
            continue
        points.append((ev.timestamp, len(packaging), len(building)))
    return points


# ------------------------------------------------------------------------------------------------ cache
class _Cache:
    """Values computed at most every :data:`CACHE_SECONDS` (per name)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._values = {}

    def get(self, name, compute, seconds=CACHE_SECONDS):
        """The value of ``name``: computed by ``compute()`` unless it is younger than ``seconds``."""
        now = time.monotonic()
        with self._lock:
            hit = self._values.get(name)
            if hit is not None and now - hit[0] < seconds:
                return hit[1]
        value = compute()
        with self._lock:
            self._values[name] = (time.monotonic(), value)
        return value

    def clear(self):
        with self._lock:
            self._values.clear()


CACHE = _Cache()


def tree_size(path):
    """Bytes of the files below ``path`` (each inode once, symlinks not followed)."""
    total, seen, stack = 0, set(), [str(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                            continue
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if (st.st_dev, st.st_ino) not in seen:
                        seen.add((st.st_dev, st.st_ino))
                        total += st.st_size
        except OSError:
            continue
    return total


def _repository_figures():
    """``{identity: (bytes, {diststr: source packages})}``."""
    result = {}
    for repo in models.Repository.objects.select_related("layout").order_by("identity"):
        counts = {}
        try:
            suite_options = list(repo.layout.mbd_suite_options())
            for dist in repo.mbd_distributions():
                components = dist.mbd_components()
                for so in suite_options:
                    diststr = repo.mbd_diststr(dist, so)
                    counts[diststr] = repo.mbd_source_package_count(diststr, components)
        except Exception as e:  # pylint: disable=broad-except  # a broken repository configuration: sizes still count
            LOG.warning("Metrics: package counts of repository %s: %s", repo.identity, e)
        result[repo.identity] = (tree_size(repo.mbd_path()), counts)
    return result


def _remote_figures():
    """``{remote: (active, load or None, [codename:arch...])}`` (active remotes are asked for their status)."""
    result = {}
    for remote in models.Remote.objects.order_by("http"):
        active = remote.mbd_is_active()
        load, chroots = None, []
        if remote.mbd_is_active_or_reactivate():
            try:
                status = remotes.fetch_status(remote, timeout=REMOTE_TIMEOUT)
                load = float(status.get("load", -1))
                chroots = list(status.get("chroots") or [])
            except Exception as e:  # pylint: disable=broad-except  # an unreachable remote has no load, the scrape goes on
                LOG.info("Metrics: no status of remote %s: %s", remote, e)
        result[str(remote)] = (active, load, chroots)
    return result


# ------------------------------------------------------------------------------------------------ collection
def _engine_families():
    eng = services.engine if services.engine_running() else None
    builder = eng.builder if eng is not None else None
    running = gauge("engine_running", "1 while the engine (FTP incoming, packager, builder, crontab) runs.").add(int(eng is not None))
    slots = gauge("build_slots", "Build slots of this instance's builder (Daemon max_parallel_builds).")
    used = gauge("build_slots_used", "Build slots in use (builds between BUILDING and BUILT).")
    waiting = gauge("builds_waiting", "Builds accepted here that wait for a free slot.")
    load = gauge("build_load", "Builder load as the status call reports it (alive builds / slots; -1: engine stopped).")
    if builder is not None:
        builds = list(builder.builds.values())
        in_slot = sum(1 for b in builds if b.started is not None)
        slots.add(builder.max_slots)
        used.add(in_slot)
        waiting.add(len(builds) - in_slot)
        load.add(builder.load)
    else:
        slots.add(models.Daemon.get().max_parallel_builds)
        used.add(0)
        waiting.add(0)
        load.add(-1.0)
    packages = gauge("packages_ongoing", "Packages accepted by the packager and not INSTALLED or FAILED yet.")
    packages.add(len(eng.packager.ongoing_packages()) if eng is not None and eng.packager is not None else 0)
    return [running, slots, used, waiting, load, packages]


def _hub_families():
    hub = services.events
    ongoing = hub.ongoing() if hub is not None else []
    queued = gauge("events_ongoing", "Ongoing states in the event hub (PACKAGING without INSTALLED/FAILED, "
                                     "BUILDING without BUILT), by type.")
    for etype in (events.Type.PACKAGING, events.Type.BUILDING):
        queued.add(sum(1 for e in ongoing if e.type == etype), type=etype.value)
    clients = gauge("event_clients", "Clients waiting for the next event (long poll).").add(hub.attached() if hub is not None else 0)
    size = gauge("event_queue_length", "Events in the in-memory event queue.").add(len(hub.queue()) if hub is not None else 0)
    return [queued, clients, size]


def _status_families():
    families = []
    for name, objs, label in (("repository_active", models.Repository.objects.order_by("identity"), "repository"),
                              ("chroot_active", models.Chroot.mbd_concrete_all(), "chroot")):
        fam = gauge(name, f"1 if the {label} is Active (and its last check did not fail).")
        for obj in objs:
            fam.add(int(obj.mbd_is_active() and not obj.mbd_is_failed()), **{label: str(obj)})
        families.append(fam)
    return families


def _repository_families():
    figures = CACHE.get("repositories", _repository_figures)
    size = gauge("repository_size_bytes", "Bytes of the files of each repository (pool, indexes, snapshots; "
                                          f"refreshed every {CACHE_SECONDS} s).", "bytes")
    packages = gauge("repository_source_packages", "Source packages per distribution (exported Sources indexes; "
                                                   f"refreshed every {CACHE_SECONDS} s).")
    for identity, (nbytes, counts) in sorted(figures.items()):
        size.add(nbytes, repository=identity)
        for diststr, n in sorted(counts.items()):
            packages.add(n, repository=identity, distribution=diststr)
    return [size, packages]


def _remote_families():
    figures = CACHE.get("remotes", _remote_figures)
    active = gauge("remote_active", "1 if the remote (another instance whose builders we use) is Active.")
    load = gauge("remote_load", f"The remote's builder load from its status (refreshed every {CACHE_SECONDS} s; "
                                "NaN: unknown).")
    for name, (is_active, value, _chroots) in sorted(figures.items()):
        active.add(int(is_active), remote=name)
        load.add(math.nan if value is None else value, remote=name)
    return [active, load]


def _ftp_families():
    received = ftpd.RECEIVED
    return [counter("ftp_received_bytes", "Bytes of the files received completely over FTP since the daemon started.", "bytes")
            .add(received["bytes"], "_total"),
            counter("ftp_received_files", "Files received completely over FTP since the daemon started.")
            .add(received["files"], "_total")]


def _disk_families():
    free = gauge("home_free_bytes", "Free bytes (for the daemon's user) on the file system of the instance home.", "bytes")
    try:
        st = os.statvfs(config.paths.home)
        free.add(st.f_bavail * st.f_frsize)
    except (OSError, AttributeError):
        free.add(math.nan)
    return [free]


def collect():
    """Every metric family of ``/metrics``, read now (the expensive parts cached)."""
    info = Family(PREFIX + "instance", "info", "The instance.").add(1, "_info", identity=models.Daemon.get().identity)
    return ([info] + _engine_families() + _hub_families() + event_figures().families() + _status_families()
            + _repository_families() + _remote_families() + _ftp_families() + _disk_families())


def text():
    """The ``/metrics`` answer."""
    return render(collect())


# ------------------------------------------------------------------------------------------------ readiness
def _counts(obj):
    """Whether readiness counts ``obj``: it is meant to be active (Active, or waiting to be reactivated)."""
    return obj.mbd_is_active_or_reactivate()


def _is_ready(obj):
    return obj.mbd_is_active() and not obj.mbd_is_failed()


def readiness():
    """``(ready, reasons)``: the instance is ready when

    - the engine runs,
    - every repository and chroot meant to be active (Active, or waiting for reactivation; those an
      administrator deactivated or removed do not count) is Active with no failed check,
    - every ``codename:arch`` an Active repository's distributions build has an Active chroot here,
      or an Active remote lists it in its status (asked at most every :data:`CACHE_SECONDS`).

    ``reasons`` names each thing that is not ready (empty when ready)."""
    reasons = []
    if not services.engine_running():
        daemon = models.Daemon.get()
        reasons.append(f"engine: not running (daemon {daemon.mbd_status_display()})")
    needed = {}
    for repo in models.Repository.objects.order_by("identity"):
        if not _counts(repo):
            continue
        if not _is_ready(repo):
            reasons.append(f"repository {repo.identity}: {repo.mbd_status_display()}"
                           + (f": {repo.status_message}" if repo.status_message else ""))
            continue
        for dist in repo.mbd_distributions():
            for arch in dist.mbd_architectures():
                needed.setdefault(f"{dist.codename}:{arch}", []).append(repo.identity)
    have, reported, configured = set(), set(), {}
    for chroot in models.Chroot.mbd_concrete_all():
        configured[str(chroot)] = chroot.mbd_status_display()
        if _is_ready(chroot):
            have.add(str(chroot))
        elif _counts(chroot):
            reported.add(str(chroot))
            reasons.append(f"chroot {chroot}: {chroot.mbd_status_display()}"
                           + (f": {chroot.status_message}" if chroot.status_message else ""))
    missing = sorted(set(needed) - have - reported)
    if missing and models.Remote.objects.filter(status=models.Remote.STATUS_ACTIVE).exists():
        for _name, (active, _load, chroots) in CACHE.get("remotes", _remote_figures).items():
            if active:
                missing = [m for m in missing if m not in chroots]
    for target in missing:
        state = f"not active ({configured[target]})" if target in configured else "missing"
        reasons.append(f"chroot {target}: {state} (needed by repository {', '.join(sorted(set(needed[target])))})")
    return not reasons, reasons
