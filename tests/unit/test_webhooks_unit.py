"""Webhook deliveries without Django (mini_buildd.webhooks): URL, type and secret checks, the
signature and body, the retry policy, and the dispatcher against real HTTP receivers on
127.0.0.34 with an in-memory store: signed unique deliveries, retries with growing gaps, a dead
receiver failing after the attempts, a held receiver not delaying another webhook, a listener that
never blocks, and pending deliveries resumed by the next dispatcher."""

# pytest fixtures are arguments of the tests that use them.
# pylint: disable=redefined-outer-name

import json
import threading
import time

import pytest

from mini_buildd import webhook_addresses, webhooks
from mini_buildd.events import Event, Events, Type
from tests.helpers.webhook_receiver import Receiver, dead_url

#: The receivers are on loopback: allowed for users' webhooks here, as an administrator may allow a network.
FAST = webhooks.Policy(attempts=3, delay=0.2, factor=2, max_delay=5, timeout=5, log_size=10,
                       allow_nets=webhook_addresses.parse_nets("127.0.0.0/8"))


def event(etype=Type.REJECTED, source="pkg"):
    return Event(etype, "bookworm-test-unstable", source, "1.0", extra={"error": {"detail": "unsigned"}})


class MemStore:
    """The store interface of the dispatcher, in memory: webhooks ``{id: (url, secret, types)}``."""

    def __init__(self, hooks, pending=()):
        self.hooks = dict(hooks)
        self.outcomes = {}  # delivery_id -> [Outcome]
        self._pending = list(pending)
        self.ids = 0
        self.lock = threading.Lock()
        self.block = None  # threading.Event create() waits for

    def pending(self):
        """The pending deliveries given."""
        return list(self._pending)

    def create(self, ev):
        """A delivery per webhook whose types want ``ev`` (after ``block``, if set)."""
        if self.block is not None:
            self.block.wait(30)
        result = []
        for hook_id, (_url, _secret, types, *_privileged) in sorted(self.hooks.items()):
            if types and ev.type.value not in types:
                continue
            with self.lock:
                self.ids += 1
                result.append(webhooks.Delivery(pk=self.ids, webhook_id=hook_id, delivery_id=f"d-{self.ids}",
                                                event_type=ev.type.value, event=ev.dumps(), instance={"identity": "t"},
                                                due=time.time()))
        return result

    def target(self, hook_id):
        hook = self.hooks.get(hook_id)
        return (hook[0], hook[1], len(hook) > 3 and hook[3]) if hook else None

    def record(self, delivery, outcome):
        with self.lock:
            self.outcomes.setdefault(delivery.delivery_id, []).append(outcome)
        return True

    def close(self):
        pass

    def final(self, delivery_id, timeout=30):
        """The outcomes of a delivery once it is delivered or failed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                outcomes = self.outcomes.get(delivery_id, [])
                if outcomes and outcomes[-1].state != webhooks.PENDING:
                    return outcomes
            time.sleep(0.05)
        raise AssertionError(f"{delivery_id}: not finished: {self.outcomes.get(delivery_id)}")


@pytest.fixture
def dispatch():
    """Start dispatchers; stop them after the test."""
    started = []

    def make(store, policy=FAST):
        """A started dispatcher (stopped after the test)."""
        d = webhooks.Dispatcher(store, policy).start()
        started.append(d)
        return d
    yield make
    for d in started:
        d.stop()


# ------------------------------------------------------------------------------------------------ checks
@pytest.mark.parametrize("url", ["http://127.0.0.34:8000/hook", "https://ci.example.org/x?a=b", " HTTP://h/ "])
def test_url_ok(url):
    assert webhooks.check_url(url) == url.strip()


@pytest.mark.parametrize("url,why", [
    ("ftp://h/x", "scheme"), ("file:///etc/passwd", "scheme"), ("javascript:alert(1)", "scheme"), ("gopher://h/", "scheme"),
    ("http:///x", "host"), ("http://u:p@h/x", "user info"), ("", "empty"), ("http://h:99999/", "port"),
    ("http://h/" + "x" * 600, "longer"), ("http://h/a b", "white space"),
])
def test_url_refused(url, why):
    with pytest.raises(ValueError, match=why):
        webhooks.check_url(url)


def test_types_and_secret():
    assert webhooks.check_types("rejected, INSTALLED,,") == ["INSTALLED", "REJECTED"]
    assert webhooks.check_types([]) == [] and webhooks.check_types("") == []
    with pytest.raises(ValueError, match="NOPE"):
        webhooks.check_types(["NOPE"])
    secret = webhooks.new_secret()
    assert len(secret) >= 40 and secret != webhooks.new_secret()
    assert webhooks.check_secret(f" {secret} ") == secret
    for bad in ("short", "x" * 201, "with\nnewline" + "x" * 20):
        with pytest.raises(ValueError):
            webhooks.check_secret(bad)


def test_signature_and_body():
    ev = event()
    delivery = webhooks.Delivery(1, 7, "d-1", "REJECTED", ev.dumps(), {"identity": "i", "url": "http://u"})
    raw = webhooks.body(delivery, 1700000000.5, 2)
    data = json.loads(raw)
    assert data == {"id": "d-1", "type": "REJECTED", "timestamp": 1700000000, "attempt": 2,
                    "event": ev.to_json(),
                    "instance": {"identity": "i", "url": "http://u"}}
    headers = webhooks.headers("s" * 20, delivery, raw, 1700000000.5, 2)
    assert headers[webhooks.H_TIMESTAMP] == "1700000000" and headers[webhooks.H_DELIVERY] == "d-1"
    assert headers[webhooks.H_EVENT] == "REJECTED" and headers[webhooks.H_ATTEMPT] == "2"
    assert webhooks.verify("s" * 20, raw, headers[webhooks.H_SIGNATURE])
    assert not webhooks.verify("t" * 20, raw, headers[webhooks.H_SIGNATURE])
    assert not webhooks.verify("s" * 20, raw.replace(b"1700000000", b"1700000001"), headers[webhooks.H_SIGNATURE])
    # The documented recipe: HMAC-SHA256 of the raw body, hex, "sha256=" in front.
    import hashlib  # pylint: disable=import-outside-toplevel
    import hmac  # pylint: disable=import-outside-toplevel
    assert headers[webhooks.H_SIGNATURE] == "sha256=" + hmac.new(b"s" * 20, raw, hashlib.sha256).hexdigest()


def test_policy_backoff_and_environment(monkeypatch):
    p = webhooks.Policy()
    assert (p.attempts, p.timeout) == (5, 10.0)
    assert [p.retry_delay(n) for n in range(1, 5)] == [10, 40, 160, 600]
    monkeypatch.setenv("MINI_BUILDD_WEBHOOK_ATTEMPTS", "3")
    monkeypatch.setenv("MINI_BUILDD_WEBHOOK_DELAY", "1")
    monkeypatch.setenv("MINI_BUILDD_WEBHOOK_FACTOR", "2")
    monkeypatch.setenv("MINI_BUILDD_WEBHOOK_TIMEOUT", "nonsense")
    p = webhooks.Policy.from_environment()
    assert (p.attempts, p.delay, p.factor, p.timeout) == (3, 1.0, 2.0, 10.0)
    assert [p.retry_delay(n) for n in (1, 2, 3)] == [1, 2, 4]


def test_hub_listener_gets_every_event(tmp_path):
    hub = Events(tmp_path)
    got = []
    hub.add_listener(got.append)
    hub.add_listener(lambda e: 1 / 0)  # a failing listener does not stop the others or logging
    for source in ("a", "b"):
        hub.log(event(source=source))
    assert [e.source for e in got] == ["a", "b"] and len(hub.queue()) == 2


# ------------------------------------------------------------------------------------------------ dispatcher
def test_delivery_signed_unique(dispatch):
    with Receiver() as rcv:
        store = MemStore({1: (rcv.url, "secret-" * 3, [])})
        d = dispatch(store)
        d.listener(event(source="one"))
        d.listener(event(source="two"))
        got = rcv.wait(2)
        for r in got:
            assert webhooks.verify("secret-" * 3, r.body, r.headers[webhooks.H_SIGNATURE])
            assert r.json["id"] == r.headers[webhooks.H_DELIVERY] and r.json["type"] == "REJECTED"
            assert r.headers["Content-Type"] == "application/json"
        assert [r.json["event"]["source"] for r in got] == ["one", "two"]
        assert len({r.json["id"] for r in got}) == 2
        assert store.final(got[0].json["id"])[-1].state == webhooks.DELIVERED


def test_type_filter(dispatch):
    with Receiver() as all_types, Receiver() as installed:
        store = MemStore({1: (all_types.url, "s" * 16, []), 2: (installed.url, "s" * 16, ["INSTALLED"])})
        d = dispatch(store)
        d.listener(event(Type.REJECTED))
        d.listener(event(Type.INSTALLED))
        assert [r.json["type"] for r in all_types.wait(2)] == ["REJECTED", "INSTALLED"]
        assert [r.json["type"] for r in installed.wait(1)] == ["INSTALLED"]


def test_retries_with_growing_gaps(dispatch):
    with Receiver(statuses=[500, 500]) as rcv:
        store = MemStore({1: (rcv.url, "s" * 16, [])})
        dispatch(store).listener(event())
        got = rcv.wait(3)
        assert len({r.json["id"] for r in got}) == 1
        assert [r.headers[webhooks.H_ATTEMPT] for r in got] == ["1", "2", "3"]
        gaps = [b.arrived - a.arrived for a, b in zip(got, got[1:])]
        assert gaps[0] >= FAST.retry_delay(1) and gaps[1] >= FAST.retry_delay(2) > FAST.retry_delay(1)
        outcomes = store.final(got[0].json["id"])
        assert [(o.state, o.status_code, o.error) for o in outcomes] == [
            ("pending", 500, "HTTP 500"), ("pending", 500, "HTTP 500"), ("delivered", 200, "")]


def test_users_webhook_to_an_internal_address_is_refused_at_delivery(dispatch):
    """The attack: a user's webhook whose host resolves to loopback (or a name that was public at
    creation and points inside now). Without the network allowed, the attempt is refused before any
    connection, once (no retries), and the receiver gets nothing; an administrator's webhook to the
    same receiver is delivered."""
    tight = webhooks.Policy(attempts=3, delay=0.2, factor=2, max_delay=5, timeout=5, log_size=10)
    with Receiver() as rcv:
        store = MemStore({1: (rcv.url, "s" * 16, []), 2: (rcv.url.replace("127.0.0.34", "localhost"), "s" * 16, []),
                          3: (rcv.url, "s" * 16, [], True)})
        dispatch(store, tight).listener(event())
        outcomes = {d: store.final(d) for d in ("d-1", "d-2", "d-3")}
        for delivery in ("d-1", "d-2"):
            assert [(o.state, o.status_code) for o in outcomes[delivery]] == [("failed", None)], outcomes[delivery]
            assert "internal address 127.0.0.1" in outcomes[delivery][0].error or \
                "internal address 127.0.0.34" in outcomes[delivery][0].error, outcomes[delivery]
            assert "Refused" in outcomes[delivery][0].error
        assert [o.state for o in outcomes["d-3"]] == ["delivered"]
        assert [r.json["id"] for r in rcv.wait(1)] == ["d-3"]
        time.sleep(0.5)
        assert len(rcv.received) == 1


def test_dead_receiver_fails_after_attempts(dispatch):
    store = MemStore({1: (dead_url(), "s" * 16, [])})
    dispatch(store).listener(event())
    outcomes = store.final("d-1")
    assert [o.state for o in outcomes] == ["pending", "pending", "failed"]
    assert all(o.status_code is None and "Connection refused" in o.error for o in outcomes)


def test_held_receiver_does_not_delay_others(dispatch):
    with Receiver(hold=True) as slow, Receiver() as fast:
        store = MemStore({1: (slow.url, "s" * 16, []), 2: (fast.url, "s" * 16, [])})
        d = dispatch(store, webhooks.Policy(attempts=1, timeout=20, allow_nets=FAST.allow_nets))
        d.listener(event(source="first"))
        slow.wait(1)
        d.listener(event(source="second"))
        assert [r.json["event"]["source"] for r in fast.wait(2)] == ["first", "second"]
        assert slow.finished == 0  # still held: the other webhook got both events meanwhile
        slow.release()


def test_listener_never_blocks(dispatch):
    store = MemStore({})
    store.block = threading.Event()
    d = dispatch(store)
    for i in range(100):
        d.listener(event(source=f"p{i}"))  # returns although the store is stuck
    store.block.set()


def test_stop_keeps_pending_and_next_start_resumes(dispatch):
    with Receiver() as rcv:
        pending = webhooks.Delivery(1, 1, "d-old", "REJECTED", event().dumps(), {}, attempts=1, due=time.time() + 0.5)
        store = MemStore({1: (rcv.url, "s" * 16, [])}, pending=[pending])
        first = dispatch(store)
        first.stop()
        assert not rcv.received and not store.outcomes  # stopped before it was due: still pending
        dispatch(store)
        got = rcv.wait(1)
        assert got[0].json["id"] == "d-old" and got[0].headers[webhooks.H_ATTEMPT] == "2"


def test_deleted_webhook_drops_its_deliveries(dispatch):
    store = MemStore({1: (dead_url(), "s" * 16, [])})
    d = dispatch(store, webhooks.Policy(attempts=5, delay=0.3, factor=1, timeout=5, allow_nets=FAST.allow_nets))
    d.listener(event())
    deadline = time.monotonic() + 30
    while not store.outcomes and time.monotonic() < deadline:
        time.sleep(0.05)
    del store.hooks[1]
    time.sleep(1)
    assert len(store.outcomes["d-1"]) == 1  # no attempt after the webhook went


def test_start_survives_a_broken_store(dispatch):
    with Receiver() as rcv:
        store = MemStore({1: (rcv.url, "s" * 16, [])})
        store.pending = lambda: 1 / 0
        dispatch(store).listener(event())
        assert rcv.wait(1)[0].json["type"] == "REJECTED"
