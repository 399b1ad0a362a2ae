"""Server-Sent Events (mini_buildd/sse.py, issue #17) without a network: the event id, the wire
format, the query (the filters of ``mini-buildd-events``), and the fan-out on a real
:class:`mini_buildd.events.Events` hub with a fake reactor: live delivery in log order, resume with
``Last-Event-ID`` (exactly the missed events, also across crossing timestamps), the stream cap, the
hub's client cap (polling fallback), heartbeats, slow clients, shutdown, the route."""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import datetime
import json
import threading

import pytest
from twisted.internet import task
from twisted.web import server
from twisted.web.test.requesthelper import DummyChannel, DummyRequest

from mini_buildd import events, services, sse
from mini_buildd.events import Event, Events, Type

UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 12, 7, 13, 0, 0, tzinfo=UTC)


def make(type_=Type.REJECTED, source="hello", version="1.0-1", dist="bookworm-test-unstable", seconds=0.0):
    ts = T0 + datetime.timedelta(seconds=seconds)
    timecode = ts.strftime("%Y%m%d:%H%M%S:%f")
    key = f"{source}/{version}/{timecode}"
    return Event(type_, dist, source, version, ts, {"timecode": timecode, "key": key, "bkey": f"{key}/source"})


class FakeReactor(task.Clock):
    """A clock whose callFromThread queues the call until :meth:`drain` (as the reactor would)."""

    def __init__(self):
        super().__init__()
        self.from_threads = []
        self.lock = threading.Lock()

    def callFromThread(self, f, *args):  # noqa: N802  pylint: disable=invalid-name  # twisted's name
        with self.lock:
            self.from_threads.append((f, args))

    def drain(self):
        """Run the queued calls (and those they queue)."""
        while True:
            with self.lock:
                if not self.from_threads:
                    return
                f, args = self.from_threads.pop(0)
            f(*args)


class Request(DummyRequest):
    """A DummyRequest that takes a push producer (and records it) and has a channel."""

    def __init__(self, args=None, headers=None):
        super().__init__([b"mini_buildd", b"api", b"events", b"stream"])
        for name, value in (args or {}).items():
            self.args[name.encode()] = [v.encode() for v in (value if isinstance(value, list) else [value])]
        for name, value in (headers or {}).items():
            self.requestHeaders.addRawHeader(name.encode(), value.encode())
        self.channel = DummyChannel()
        self.channel.transport.aborted = False
        self.channel.transport.abortConnection = lambda: setattr(self.channel.transport, "aborted", True)
        self.producer = None

    def registerProducer(self, prod, s):  # noqa: N802  # twisted's name
        self.producer = prod

    def unregisterProducer(self):  # noqa: N802  # twisted's name
        self.producer = None

    def text(self):
        return b"".join(self.written).decode()

    def messages(self):
        """The SSE messages written so far: [{field: value}] (comments dropped)."""
        result = []
        for block in self.text().split("\n\n"):
            fields = {}
            for line in block.split("\n"):
                if line and not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    fields[name] = value
            if "data" in fields:
                result.append(fields)
        return result

    def events(self):
        return [json.loads(m["data"]) for m in self.messages() if m.get("event") != "shutdown"]


@pytest.fixture
def hub(tmp_path):
    h = Events(tmp_path / "events", queue_size=50)
    yield h
    h.shutdown(timeout=10)


@pytest.fixture
def fanout(hub):
    return sse.Broadcaster(hub, max_streams=3, reactor=FakeReactor())


def open_stream(fanout, args=None, headers=None):
    """What EventStream.render_GET does, on ``fanout``: (request, stream)."""
    request = Request(args, headers)
    stream = sse.Stream(request, sse.Query(request.args, request.getHeader(b"last-event-id")), reactor=fanout.reactor)
    backlog, found = fanout.add(stream, stream.query.last_event_id, stream.query.after)
    request.notifyFinish().addBoth(lambda _r: (stream.gone(), fanout.remove(stream)))
    stream.start(backlog, found)
    return request, stream


def log(hub, fanout, *evs):
    for e in evs:
        hub.log(e)
    fanout.reactor.drain()


# ------------------------------------------------------------------------------------------------ id, format, query
def test_event_id_is_stable_ordered_and_checked(tmp_path):
    a, b = make(seconds=1), make(seconds=1.5)
    assert sse.event_id(a) == "20261207T130001.000000Z-" + sse.event_id(a).rsplit("-", 1)[1]
    assert sse.parse_event_id(sse.event_id(a)) == sse.event_id(a)
    assert sse.event_id(a) < sse.event_id(b)
    # the same for the saved and reloaded event (after a restart), different for another event at the same time
    hub = Events(tmp_path / "ev")
    hub.log(a, save_dir=tmp_path / "ev" / "hello")
    assert sse.event_id(Event.load(a.path)) == sse.event_id(a)
    assert sse.event_id(make(Type.FAILED, seconds=1)) != sse.event_id(a)
    for bad in ("", "20261207T130001Z-0123456789abcdef", "20261307T130001.000000Z-0123456789abcdef", "x" * 500,
                "20261207T130001.000000Z-0123456789abcdeF"):
        with pytest.raises(ValueError):
            sse.parse_event_id(bad)


def test_message_format():
    e = make(Type.INSTALLED)
    e.extra["error"] = "two\nlines"
    text = sse.message(e).decode()
    assert text.endswith("\n\n") and text.count("\n") == 4
    lines = text.splitlines()
    assert lines[0] == f"id: {sse.event_id(e)}" and lines[1] == "event: INSTALLED"
    assert json.loads(lines[2].removeprefix("data: ")) == e.to_json()
    assert sse.comment("a\nb") == b": a b\n\n"


def query(**args):
    """A Query from keyword arguments (strings, or lists for repeated arguments)."""
    return sse.Query({k.encode(): [v.encode()] if isinstance(v, str) else [x.encode() for x in v] for k, v in args.items()})


def test_query_filters_like_mini_buildd_events():
    hello, other = make(Type.INSTALLED), make(Type.REJECTED, source="other", version="2.0", dist="trixie-test-unstable")
    assert query().matches(hello) and query().matches(other)
    assert [query(types="installed,failed").matches(e) for e in (hello, other)] == [True, False]
    assert [query(type=["REJECTED", "FAILED"]).matches(e) for e in (hello, other)] == [False, True]
    assert [query(source="other").matches(e) for e in (hello, other)] == [False, True]
    assert [query(distribution="bookworm-test-unstable").matches(e) for e in (hello, other)] == [True, False]
    assert [query(version="2.0").matches(e) for e in (hello, other)] == [False, True]
    assert [query(min_version="1.5").matches(e) for e in (hello, other)] == [False, True]
    for bad in ({"types": "INSTALLED,NOPE"}, {"min_version": "a b"}, {"last_event_id": "1"}, {"after": "soon"},
                {"heartbeat": "0.01"}, {"heartbeat": "x"}, {"heartbeat": "1000"}):
        with pytest.raises(ValueError):
            query(**bad)


def test_query_resume_point_and_heartbeat():
    a, b = sse.event_id(make(seconds=1)), sse.event_id(make(seconds=2))
    assert query(last_event_id=a).last_event_id == a
    assert sse.Query({b"last_event_id": [a.encode()]}, b.encode()).last_event_id == b  # the header wins
    assert query(after="epoch").after == datetime.datetime(1970, 1, 1, tzinfo=UTC)
    assert query(since="2026-12-07T13:00:00").after == T0
    assert query().after is None and query().last_event_id is None
    assert query().heartbeat == sse.HEARTBEAT and query(heartbeat="2.5").heartbeat == 2.5


# ------------------------------------------------------------------------------------------------ fan-out
def test_live_events_in_log_order_filtered_no_thread(hub, fanout):
    threads = threading.active_count()
    everything, _ = open_stream(fanout)
    installed, _ = open_stream(fanout, {"types": "INSTALLED"})
    # one callback attached to the hub for both streams
    assert hub.attached() == 1
    e1, e2, e3 = make(Type.REJECTED, seconds=1), make(Type.INSTALLED, seconds=2), make(Type.REJECTED, seconds=3)
    log(hub, fanout, e1, e2)
    worker = threading.Thread(target=hub.log, args=(e3,))  # an event from another thread
    worker.start()
    worker.join()
    fanout.reactor.drain()
    assert everything.events() == [e.to_json() for e in (e1, e2, e3)]
    assert [m["event"] for m in everything.messages()] == ["REJECTED", "INSTALLED", "REJECTED"]
    assert [m["id"] for m in everything.messages()] == [sse.event_id(e) for e in (e1, e2, e3)]
    assert installed.events() == [e2.to_json()]
    assert everything.text().startswith(f"retry: {sse.RETRY_MS}\n: mini-buildd event stream\n\n")
    assert threading.active_count() == threads
    assert hub.attached() == 1


def test_resume_with_last_event_id_exactly_the_missed_ones(hub, fanout):
    first, _ = open_stream(fanout)
    early = [make(seconds=i) for i in range(1, 4)]
    log(hub, fanout, *early)
    last = first.messages()[-1]["id"]
    first.finish()  # the client goes away
    assert fanout.streams == [] and hub.attached() == 0
    # missed: two events, one of them with an EARLIER timestamp than the last one seen (threads crossing)
    missed = [make(Type.FAILED, seconds=5), make(Type.INSTALLED, seconds=2.5)]
    log(hub, fanout, *missed)
    again, _ = open_stream(fanout, headers={"Last-Event-ID": last})
    assert again.events() == [e.to_json() for e in missed]
    later = make(seconds=6)
    log(hub, fanout, later)
    assert again.events() == [e.to_json() for e in missed + [later]]
    # by query argument; with a filter
    third, _ = open_stream(fanout, {"last_event_id": last, "types": "INSTALLED"})
    assert third.events() == [missed[1].to_json()]
    # after= replays by time, oldest logged first
    by_time, _ = open_stream(fanout, {"after": (T0 + datetime.timedelta(seconds=2.2)).isoformat()})
    assert by_time.events() == [e.to_json() for e in (early[2], missed[0], missed[1], later)]


def test_resume_point_not_in_queue_goes_by_id(hub, fanout):
    gone = make(seconds=1)
    kept = [make(seconds=3), make(seconds=2)]
    log(hub, fanout, *kept)
    request, _ = open_stream(fanout, headers={"Last-Event-ID": sse.event_id(gone)})
    assert ": last event id not in the queue: resumed by time" in request.text()
    assert request.events() == [kept[1].to_json(), kept[0].to_json()]  # id (time) order


def test_stream_cap_and_hub_shutdown(hub, fanout):
    streams = [open_stream(fanout)[0] for _ in range(3)]
    with pytest.raises(events.TooManyClients):
        open_stream(fanout)
    streams[0].finish()
    streams[0] = open_stream(fanout)[0]
    hub.shutdown(timeout=10)
    fanout.reactor.drain()
    for request in streams:
        assert request.finished == 1
        assert request.messages()[-1] == {"event": "shutdown", "data": json.dumps({"detail": "shutting down"})}
    with pytest.raises(events.Shutdown):
        open_stream(fanout)


def test_hub_full_of_long_poll_clients_polls_the_queue(hub, fanout):
    hub.max_attached = 1
    hub.attach(lambda _e: None)  # a long-poll client holds the only slot
    request, _ = open_stream(fanout)
    e = make(seconds=1)
    log(hub, fanout, e)
    assert request.events() == []
    fanout.reactor.advance(sse.POLL_WHEN_FULL)
    assert request.events() == [e.to_json()]


def test_heartbeats_and_slow_clients(hub, fanout, monkeypatch):
    request, stream = open_stream(fanout, {"heartbeat": "2"})
    fanout.reactor.advance(2)
    fanout.reactor.advance(2)
    assert request.text().count(": heartbeat\n\n") == 2
    # a client that does not read: messages wait, then it gets them in order
    stream.pauseProducing()
    log(hub, fanout, make(seconds=1), make(seconds=2))
    fanout.reactor.advance(2)
    assert len(request.events()) == 0 and len(stream.pending) == 2
    stream.resumeProducing()
    assert len(request.events()) == 2 and request.text().count(": heartbeat\n\n") == 2
    # ... and is cut off when too many wait (it may resume with its last id)
    monkeypatch.setattr(sse, "MAX_PENDING", 2)
    stream.pauseProducing()
    log(hub, fanout, *[make(seconds=3 + i) for i in range(3)])
    assert stream.done and request.channel.transport.aborted
    request.finish()
    assert fanout.streams == []


def test_resource_answers_and_route(hub, monkeypatch):
    monkeypatch.setattr(services, "events", None)
    resource = sse.EventStream()
    request = Request()
    assert json.loads(resource.render_GET(request))["status"] == 503
    monkeypatch.setattr(services, "events", hub)
    fake = FakeReactor()
    monkeypatch.setattr(sse, "_BROADCASTER", sse.Broadcaster(hub, reactor=fake))
    request = Request({"types": "BOGUS"})
    body = json.loads(resource.render_GET(request))
    assert request.responseCode == 400 and "BOGUS" in body["detail"]
    request = Request({"source": "hello"})
    assert resource.render_GET(request) is server.NOT_DONE_YET
    assert request.responseHeaders.getRawHeaders(b"content-type") == [b"text/event-stream; charset=utf-8"]
    assert request.responseHeaders.getRawHeaders(b"cache-control") == [b"no-cache"]
    log(hub, sse.broadcaster(hub), make(seconds=1), make(source="other", seconds=2))
    assert [e["source"] for e in request.events()] == ["hello"]
    request.finish()

    class Fallback:
        def render(self, request):
            return b"fallback"
    route = sse.Route(resource, Fallback())
    other = DummyRequest([b"mini_buildd", b"api", b"status", b""])
    assert route.render(other) == b"fallback"
    assert route.render(Request()) is server.NOT_DONE_YET
