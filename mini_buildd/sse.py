"""Server-Sent Events: the event queue as a ``text/event-stream`` (issue #17), at
``GET /mini_buildd/api/events/stream[?FILTERS]`` (anonymous, like ``/static/events.attach``).

This module owns

- the event id of the stream (:func:`event_id`, :func:`parse_event_id`),
- the query of a stream (:class:`Query`: the filters of ``mini-buildd-events``, the resume point,
  the heartbeat interval),
- the wire format (:func:`message`),
- the fan-out (:class:`Broadcaster`): ONE callback attached to the hub
  (:meth:`mini_buildd.events.Events.attach`, the mechanism of the twisted long poll) serves all
  streams, in the reactor; no thread per client. It mirrors the hub's queue in log order and sends
  each new event to every stream,
- one client's stream (:class:`Stream`: a push producer; a client that stops reading is cut off
  once :data:`MAX_PENDING` messages wait for it, it resumes with its ``Last-Event-ID``),
- the twisted resources (:class:`EventStream`, :class:`Route`) and :func:`install`, the hook
  :func:`mini_buildd.httpd.make_site` calls (a shutdown trigger closes all streams cleanly).

Event id: ``YYYYMMDDTHHMMSS.ffffffZ-DIGEST``: the event's UTC timestamp (microseconds) and the
first 16 hex digits of the SHA-256 of its identity (type, source, version, distribution, timestamp,
bkey). It is derived from the event alone, so it is the same for the event file reloaded after a
restart; ids sort (as strings) like the events' timestamps.

Resume: with ``Last-Event-ID`` (header; or the query argument ``last_event_id`` for clients that
can't set headers; the header wins) the stream first sends the queued events after that one, in
the order they were logged (which may differ from timestamp order by a few milliseconds when
events of parallel threads cross): exactly the ones the client missed. If that id is no longer in
the queue (expired, or more than ``event_queue_size`` events ago), the queued events with a greater
id, in id order. Without it, ``after`` (``since``: the same; what ``mini-buildd-events -A`` takes:
``epoch``, an ISO time, ``2 hours ago`` ...) replays the queued events after that time; without
either, only new events come.
"""

import datetime
import hashlib
import json
import logging
import os
import re
import types

from twisted.internet import defer, interfaces, task
from twisted.web import resource, server
from zope.interface import implementer

from mini_buildd import errors, events, services
from mini_buildd.cli import events as cli_events

LOG = logging.getLogger(__name__)

#: Path of the stream (below the API prefix the fast path serves).
PATH = "/mini_buildd/api/events/stream"
_POSTPATHS = ([b"mini_buildd", b"api", b"events", b"stream"], [b"mini_buildd", b"api", b"events", b"stream", b""])


def _env_seconds(name, default):
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        LOG.warning("Ignoring %s=%r: not a number of seconds", name, os.environ.get(name))
        return float(default)


#: Seconds between heartbeats (comment lines) by default (``MINI_BUILDD_SSE_HEARTBEAT``); a client
#: may ask for another interval with ``heartbeat=S`` (:data:`MIN_HEARTBEAT` .. :data:`MAX_HEARTBEAT`).
DEFAULT_HEARTBEAT = 15
HEARTBEAT = _env_seconds("MINI_BUILDD_SSE_HEARTBEAT", DEFAULT_HEARTBEAT)
MIN_HEARTBEAT, MAX_HEARTBEAT = 1.0, 300.0
#: At most this many streams at the same time (like the long poll's clients, upstream §5.4).
MAX_STREAMS = events.MAX_ATTACHED
#: Reconnection delay suggested to clients (``retry:``, milliseconds).
RETRY_MS = 5000
#: A client that stopped reading is cut off when this many messages wait for it.
MAX_PENDING = 1000
#: Seconds between queue polls while the hub refuses our callback (too many long-poll clients).
POLL_WHEN_FULL = 1.0
#: Seconds a shutdown waits for the streams' connections to close.
SHUTDOWN_GRACE = 3.0

_TIME_FORMAT = "%Y%m%dT%H%M%S.%fZ"
_ID_RE = re.compile(r"^(\d{8}T\d{6}\.\d{6}Z)-([0-9a-f]{16})$")

HEADERS = ((b"Content-Type", b"text/event-stream; charset=utf-8"), (b"Cache-Control", b"no-cache"),
           (b"X-Content-Type-Options", b"nosniff"), (b"X-Accel-Buffering", b"no"))


#: The stream's reference for doc/api.md (appended by :func:`mini_buildd.manpages.api_markdown`).
API_MARKDOWN = f"""## Event stream

### `GET {PATH}`

Server-Sent Events (`text/event-stream`) of the event queue, for browsers (`EventSource`) and CI
systems; anonymous, like the long poll `/static/events.attach`. Each event is one message:

    id: 20261207T130001.123456Z-3f2a9c0d1e2b4a5c
    event: INSTALLED
    data: {{"type": "INSTALLED", "distribution": "...", "source": "...", "version": "...", "timestamp": "...", "extra": {{...}}}}

`data` is the event's JSON as in the event files (upstream 2.x format). `id` is
`YYYYMMDDTHHMMSS.ffffffZ-DIGEST`: the event's UTC timestamp and the first 16 hex digits of the
SHA-256 of its identity (type, source, version, distribution, timestamp, bkey); the same after a
restart (it is computed from the event file), ordered like the timestamps.

Resume: send the last id you got as `Last-Event-ID` (browsers do on reconnect) or as
`last_event_id` (the header wins): the stream first sends exactly the queued events logged after
that one (in the order they were logged), then new ones; no event twice, none missed while it is
still queued (`event_queue_size`). An id no longer queued resumes by id (time) order, after a
comment line saying so. Without it, `after` replays the queued events after a time; without
either, only new events come.

Other lines: `retry: {RETRY_MS}` first; a comment (`: heartbeat`) every `heartbeat` seconds; on
shutdown an `event: shutdown` message (no id), then the response ends. At most {MAX_STREAMS}
streams at a time: else `503`; a bad argument: `400`; both with an RFC 7807
`application/problem+json` body. A client that stops reading is cut off after {MAX_PENDING}
waiting messages; it resumes with its last id.

| argument | type | description |
|---|---|---|
| `types` (or `type`, repeatable) | list | comma-separated event types (default: all), as `mini-buildd-events -T` |
| `source` | string | only this source package (`-S`) |
| `distribution` | string | only this distribution (`-D`) |
| `version` | string | only this version (`-V`) |
| `min_version` | string | only versions >= this (`-M`) |
| `after` (or `since`) | string | replay queued events after this time: `epoch`, an ISO time (UTC unless it has an offset), `2 hours ago` ... (`-A`) |
| `last_event_id` | string | resume after this id (the `Last-Event-ID` header wins) |
| `heartbeat` | float | seconds between heartbeats, {MIN_HEARTBEAT:g} to {MAX_HEARTBEAT:g} (default: \
{DEFAULT_HEARTBEAT:g}, or the daemon's `MINI_BUILDD_SSE_HEARTBEAT`) |

Example: `curl -N 'http://HOST:8066{PATH}?types=INSTALLED,FAILED&source=hello'`.
"""


# ------------------------------------------------------------------------------------------------ ids, wire format
def event_id(event):
    """The stream id of ``event`` (see the module documentation)."""
    identity = [event.type.value, event.source, event.version, event.distribution,
                event.timestamp.isoformat(timespec="microseconds"), event.bkey]
    digest = hashlib.sha256(json.dumps(identity).encode("utf-8")).hexdigest()[:16]
    return f"{event.timestamp.astimezone(datetime.timezone.utc).strftime(_TIME_FORMAT)}-{digest}"


def parse_event_id(text):
    """``text`` if it is an event id; ``ValueError`` if not."""
    match = _ID_RE.match(text or "")
    if match is None:
        raise ValueError(f"Not an event id: {text[:80]!r} (expected YYYYMMDDTHHMMSS.ffffffZ-<16 hex digits>)")
    datetime.datetime.strptime(match[1], _TIME_FORMAT)
    return text


def message(event, id_=None):
    """One SSE message: ``id:``, ``event:`` (the type) and ``data:`` (the event's JSON, one line)."""
    lines = [f"id: {id_ or event_id(event)}", f"event: {event.type.value}"]
    lines += [f"data: {line}" for line in event.dumps().split("\n")]
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def comment(text):
    """A comment line (ignored by clients; keeps proxies and idle connections alive)."""
    return f": {' '.join(str(text).split())}\n\n".encode("utf-8")


# ------------------------------------------------------------------------------------------------ the query
class Query:
    """Filters, resume point and heartbeat of one stream, from the request. ``ValueError`` on a
    bad value.

    Arguments (as ``mini-buildd-events``' options): ``types`` (comma-separated; ``type`` may be
    repeated too), ``source``, ``distribution``, ``version`` (exact), ``min_version``, ``after``
    (alias ``since``), ``last_event_id``, ``heartbeat`` (seconds)."""

    def __init__(self, args, last_event_id_header=None):
        def values(name):
            return [v.decode("utf-8", errors="replace").strip() for v in args.get(name.encode(), [])]

        def one(name):
            given = [v for v in values(name) if v]
            return given[-1] if given else None

        self.types = cli_events._types(",".join(values("types") + values("type")))  # pylint: disable=protected-access
        self.args = types.SimpleNamespace(source=one("source"), distribution=one("distribution"),
                                          version_filter=one("version"), min_version=one("min_version"))
        if self.args.min_version:
            from debian import debian_support  # pylint: disable=import-outside-toplevel
            try:
                debian_support.Version(self.args.min_version)
            except ValueError as e:
                raise ValueError(f"bad min_version: {e}") from e
        header = (last_event_id_header or b"").decode("utf-8", errors="replace").strip()
        given = header or one("last_event_id")
        self.last_event_id = parse_event_id(given) if given else None
        after = one("after") or one("since")
        self.after = events.parse_datetime(cli_events.parse_after(after)) if after else None
        heartbeat = one("heartbeat")
        try:
            self.heartbeat = float(heartbeat) if heartbeat else HEARTBEAT
        except ValueError:
            raise ValueError(f"bad heartbeat: {heartbeat!r} (seconds)") from None
        if not MIN_HEARTBEAT <= self.heartbeat <= MAX_HEARTBEAT:
            if heartbeat:
                raise ValueError(f"heartbeat must be {MIN_HEARTBEAT:g} to {MAX_HEARTBEAT:g} seconds")
            self.heartbeat = min(max(self.heartbeat, MIN_HEARTBEAT), MAX_HEARTBEAT)

    def matches(self, event):
        """Whether ``event`` passes the filters (the same test as ``mini-buildd-events``)."""
        return cli_events.matches(event.to_json(), self.args, self.types)


# ------------------------------------------------------------------------------------------------ fan-out
def _reactor():
    from twisted.internet import reactor  # pylint: disable=import-outside-toplevel
    return reactor


class Broadcaster:
    """All streams of one hub: one callback attached to the hub at a time (only while there are
    streams), run in the reactor. Not thread-safe: call it in the reactor thread only."""

    def __init__(self, hub, max_streams=None, reactor=None):
        self.hub = hub
        self.max_streams = MAX_STREAMS if max_streams is None else max_streams
        self.reactor = reactor or _reactor()
        self.streams = []
        self.log = []      # the hub's queue, oldest (first logged) first
        self._ids = {}     # identity -> event id, of the events in self.log
        self._token = self._callback = None  # the callback attached to the hub now
        self._poll = None
        self.closed = False

    # hub callback (any thread) ------------------------------------------------------------------
    def _woken(self, token, shutdown):
        """The hub called our callback ``token`` (in the reactor now)."""
        if shutdown:
            self.close("shutting down")
            return
        if token is self._token:  # else a callback detached meanwhile: look at the queue only
            self._token = self._callback = None
            self._attach()
        self.refresh()

    def _polled(self):
        self._poll = None
        self._attach()
        self.refresh()

    def _attach(self, wanted=False):
        """Attach a callback to the hub (first, then look at the queue: nothing falls between)
        while there are streams (or one is ``wanted``)."""
        if self._token is not None or self.closed or self._poll is not None or not (wanted or self.streams):
            return
        token = object()

        def callback(event):  # any thread
            self.reactor.callFromThread(self._woken, token, event is None)
        try:
            self.hub.attach(callback)
            self._token, self._callback = token, callback
        except events.Shutdown:
            self.close("shutting down")
        except events.TooManyClients:
            LOG.debug("Event hub full: polling the queue every %ss", POLL_WHEN_FULL)
            self._poll = self.reactor.callLater(POLL_WHEN_FULL, self._polled)

    def _detach(self):
        if self._callback is not None:
            self.hub.detach(self._callback)
        self._token = self._callback = None
        if self._poll is not None and self._poll.active():
            self._poll.cancel()
        self._poll = None

    # queue mirror -------------------------------------------------------------------------------
    def refresh(self):
        """Bring the mirror up to date; send the events new to it to every stream (log order)."""
        snapshot = list(reversed(self.hub.queue()))
        ids = {}
        new = []
        for event in snapshot:
            identity = event.identity()
            known = self._ids.get(identity)
            if known is None:
                known = event_id(event)
                new.append((event, known))
            ids[identity] = known
        self.log, self._ids = snapshot, ids
        for event, id_ in new:
            for stream in list(self.streams):
                stream.send(event, id_)

    def backlog(self, last_event_id=None, after=None):
        """``([(event, id)] to send first, whether the resume point was found)`` (see the module
        documentation)."""
        pairs = [(e, self._ids[e.identity()]) for e in self.log]
        if last_event_id is not None:
            for i, (_event, id_) in enumerate(pairs):
                if id_ == last_event_id:
                    return pairs[i + 1:], True
            return sorted((p for p in pairs if p[1] > last_event_id), key=lambda p: p[1]), False
        if after is not None:
            return [p for p in pairs if p[0].timestamp > after], True
        return [], True

    # streams ------------------------------------------------------------------------------------
    def add(self, stream, last_event_id=None, after=None):
        """Register ``stream``; return its backlog (see :meth:`backlog`). Raises
        :class:`mini_buildd.events.Shutdown` and :class:`mini_buildd.events.TooManyClients`."""
        if self.closed or self.hub.is_shutdown:
            raise events.Shutdown("Events are shut down")
        if len(self.streams) >= self.max_streams:
            raise events.TooManyClients(f"Too many event streams (max {self.max_streams})")
        self._attach(wanted=True)
        if self.closed:
            raise events.Shutdown("Events are shut down")
        self.refresh()  # the others get what is new; the newcomer gets it in its backlog
        result = self.backlog(last_event_id, after)
        self.streams.append(stream)
        return result

    def remove(self, stream):
        if stream in self.streams:
            self.streams.remove(stream)
        if not self.streams:
            self._detach()

    def close(self, reason):
        """Close every stream (clean end of the response) and refuse new ones; a Deferred firing
        when their connections are closed (at the latest after :data:`SHUTDOWN_GRACE` seconds)."""
        self.closed = True
        self._detach()
        streams, self.streams = self.streams, []
        return defer.DeferredList([s.close(reason) for s in streams])


_BROADCASTER = None


def broadcaster(hub):
    """The broadcaster of ``hub`` (a new one when the hub changed)."""
    global _BROADCASTER  # pylint: disable=global-statement  # one per process, like the hub
    if _BROADCASTER is None or _BROADCASTER.hub is not hub:
        if _BROADCASTER is not None:
            _BROADCASTER.close("event hub replaced")
        _BROADCASTER = Broadcaster(hub)
    return _BROADCASTER


# ------------------------------------------------------------------------------------------------ one stream
@implementer(interfaces.IPushProducer)
class Stream:
    """One client's stream on an open request: writes messages, heartbeats, and pauses with the
    connection (twisted's flow control); messages for a paused client wait, up to
    :data:`MAX_PENDING`."""

    def __init__(self, request, query, reactor=None):
        self.request = request
        self.query = query
        self.reactor = reactor or _reactor()
        self.paused = False
        self.pending = []
        self.done = False
        self.sent = 0
        self._heartbeat = None
        self._closed = None

    def start(self, backlog, found=True):
        """Write the start (retry hint, comment), the backlog; start heartbeats."""
        self.request.registerProducer(self, True)
        self._write(f"retry: {RETRY_MS}\n".encode() + comment("mini-buildd event stream"))
        if not found:
            self._write(comment("last event id not in the queue: resumed by time"))
        for event, id_ in backlog:
            self.send(event, id_)
        self._heartbeat = task.LoopingCall(self.beat)
        self._heartbeat.clock = self.reactor
        self._heartbeat.start(self.query.heartbeat, now=False)

    def send(self, event, id_):
        if self.query.matches(event):
            self.sent += 1
            self._write(message(event, id_))

    def beat(self):
        if not self.paused:
            self._write(comment("heartbeat"))

    def _write(self, data):
        if self.done:
            return
        if self.paused:
            self.pending.append(data)
            if len(self.pending) > MAX_PENDING:
                LOG.warning("Event stream client %s does not read: cut off (it may resume)", _peer(self.request))
                self.abort()
            return
        self.request.write(data)

    # IPushProducer ------------------------------------------------------------------------------
    def pauseProducing(self):  # noqa: N802  pylint: disable=invalid-name  # twisted's name
        """The client's connection is full: keep messages back."""
        self.paused = True

    def resumeProducing(self):  # noqa: N802  pylint: disable=invalid-name  # twisted's name
        """The client reads again: write what waited."""
        self.paused = False
        pending, self.pending = self.pending, []
        for data in pending:
            self._write(data)

    def stopProducing(self):  # noqa: N802  pylint: disable=invalid-name  # twisted's name
        """The connection is gone."""
        self.gone()

    # ending -------------------------------------------------------------------------------------
    def gone(self):
        """The client went away (or we ended): stop everything, no more writes."""
        self.done = True
        self.pending = []
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()

    def abort(self):
        transport = getattr(self.request.channel, "transport", None)
        self.gone()
        if transport is not None:
            transport.abortConnection()

    def close(self, reason):
        """End the response cleanly with a ``shutdown`` message; a Deferred firing when the
        connection is closed (or after :data:`SHUTDOWN_GRACE` seconds)."""
        if self.done:
            return defer.succeed(None)
        if self.paused:
            self.abort()
            return defer.succeed(None)
        self.request.write(f"event: shutdown\ndata: {json.dumps({'detail': reason})}\n\n".encode())
        self.gone()
        self.request.unregisterProducer()
        channel = self.request.channel
        self.request.finish()
        transport = getattr(channel, "transport", None)
        if transport is None:
            return defer.succeed(None)
        transport.loseConnection()
        self._closed = defer.Deferred()
        self._wait_closed(transport, self.reactor.seconds() + SHUTDOWN_GRACE)
        return self._closed

    def _wait_closed(self, transport, deadline):
        if not getattr(transport, "connected", False) or self.reactor.seconds() >= deadline:
            self._closed.callback(None)
            return
        self.reactor.callLater(0.05, self._wait_closed, transport, deadline)


def _peer(request):
    return getattr(request.getClientAddress(), "host", "?")


# ------------------------------------------------------------------------------------------------ resources
def _problem(request, status, detail):
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/problem+json")
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    request.setHeader(b"Cache-Control", b"no-cache")
    return json.dumps(errors.problem_dict(status, detail)).encode()


class EventStream(resource.Resource):
    """``GET /mini_buildd/api/events/stream``: the event stream of this process's hub."""

    isLeaf = True

    @staticmethod
    def _open(request):
        """``(broadcaster, query)`` or an error answer (bytes)."""
        hub = services.events
        if hub is None:
            return _problem(request, 503, "events not available")
        try:
            query = Query(request.args, request.getHeader(b"last-event-id"))
        except ValueError as e:
            return _problem(request, 400, str(e))
        return broadcaster(hub), query

    def render_HEAD(self, request):
        opened = self._open(request)
        if isinstance(opened, bytes):
            return opened
        for name, value in HEADERS:
            request.setHeader(name, value)
        return b""

    def render_GET(self, request):
        """Open the stream: the backlog, then live events and heartbeats until the client leaves."""
        opened = self._open(request)
        if isinstance(opened, bytes):
            return opened
        fanout, query = opened
        stream = Stream(request, query, reactor=fanout.reactor)
        try:
            backlog, found = fanout.add(stream, query.last_event_id, query.after)
        except (events.TooManyClients, events.Shutdown) as e:
            return _problem(request, 503, str(e))
        for name, value in HEADERS:
            request.setHeader(name, value)

        def ended(_result):
            stream.gone()
            fanout.remove(stream)
        request.notifyFinish().addBoth(ended)
        LOG.debug("Event stream for %s (%s queued to send)", _peer(request), len(backlog))
        stream.start(backlog, found)
        return server.NOT_DONE_YET


class Route(resource.Resource):
    """In front of the API fast path (a leaf resource seeing the whole path): the stream's path
    goes to :class:`EventStream`, everything else to ``fallback``."""

    isLeaf = True

    def __init__(self, stream, fallback):
        super().__init__()
        self.stream = stream
        self.fallback = fallback

    def render(self, request):
        if request.postpath in _POSTPATHS:
            return self.stream.render(request)
        return self.fallback.render(request)


def _shutdown():
    if _BROADCASTER is not None:
        return _BROADCASTER.close("shutting down")
    return None


def install(root):
    """Serve the stream on ``root`` (:class:`mini_buildd.httpd.Root`, in front of its API fast
    path) and close all streams cleanly before the reactor shuts down."""
    root.fastpath = Route(EventStream(), root.fastpath or root.wsgi_resource)
    _reactor().addSystemEventTrigger("before", "shutdown", _shutdown)
    return root
