"""Signed webhooks (issue #17): events POSTed as JSON to the URLs users and staff configure.

This module owns

- the wire format of a delivery: the body (:func:`body`: ``{id, type, timestamp, attempt, event,
  instance}``), the headers (:func:`headers`) and the signature (:func:`sign`, :func:`verify`:
  ``X-Mini-Buildd-Signature: sha256=<hex HMAC-SHA256 of the raw body with the secret>``; the
  ``timestamp`` of ``X-Mini-Buildd-Timestamp`` is in the body too, so it is signed),
- what a webhook URL may be (:func:`check_url`: http or https only) and its secret (:func:`new_secret`,
  :func:`check_secret`),
- the retry policy (:class:`Policy`: attempts, exponential backoff, timeout, log size; from the
  environment, ``MINI_BUILDD_WEBHOOK_*``),
- sending one attempt (:func:`post`: no redirects followed, a short timeout; to the receiver's checked
  address, see :mod:`mini_buildd.webhook_addresses`),
- the :class:`Dispatcher`: the event hub's listener (it only queues, never blocks logging), a
  fan-out thread that turns each event into persisted deliveries, and one worker thread per
  webhook with work (:class:`_Target`), so a slow or dead receiver only delays its own deliveries.

It imports no Django: the webhooks and their deliveries live in the database, reached through a
store (:mod:`mini_buildd.webhooks_store`, the daemon's; tests may give their own).
"""

import dataclasses
import hashlib
import heapq
import hmac
import http.client
import itertools
import json
import logging
import os
import queue
import secrets
import threading
import time
import typing
import urllib.parse

from mini_buildd import __version__, webhook_addresses
from mini_buildd.events import Type

LOG = logging.getLogger(__name__)

SCHEMES = ("http", "https")
MAX_URL_LENGTH = 500
MIN_SECRET_LENGTH, MAX_SECRET_LENGTH = 16, 200
#: Bytes of a receiver's answer read (the rest is ignored).
MAX_ANSWER = 64 * 1024

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
STATES = (PENDING, DELIVERED, FAILED)

H_EVENT, H_DELIVERY, H_SIGNATURE = "X-Mini-Buildd-Event", "X-Mini-Buildd-Delivery", "X-Mini-Buildd-Signature"
H_TIMESTAMP, H_ATTEMPT = "X-Mini-Buildd-Timestamp", "X-Mini-Buildd-Attempt"


# ------------------------------------------------------------------------------------------------ checks
def check_url(url):
    """``url`` stripped if it is an http(s) URL with a host and no user info; else ``ValueError``."""
    url = (url or "").strip()
    if not url:
        raise ValueError("empty URL")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"URL longer than {MAX_URL_LENGTH} characters")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise ValueError(f"URL scheme '{parts.scheme}' refused: only http and https")
    if not parts.hostname:
        raise ValueError("URL without a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("URL with user info refused (the secret signs the deliveries)")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError("URL with white space or control characters")
    try:
        _ = parts.port
    except ValueError as e:
        raise ValueError(f"URL with a bad port: {e}") from e
    return url


def check_types(types):
    """Event type names (any case, a list or a comma-separated string) -> sorted valid names; ``[]``: all."""
    if isinstance(types, str):
        types = types.split(",")
    names = sorted({str(t).strip().upper() for t in types or [] if str(t).strip()})
    valid = {t.value for t in Type}
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"unknown event type(s) {', '.join(unknown)} (known: {', '.join(t.value for t in Type)})")
    return names


def new_secret():
    """A fresh random secret (URL-safe text, 256 bits)."""
    return secrets.token_urlsafe(32)


def check_secret(secret):
    secret = (secret or "").strip()
    if not MIN_SECRET_LENGTH <= len(secret) <= MAX_SECRET_LENGTH or not secret.isprintable():
        raise ValueError(f"a secret has {MIN_SECRET_LENGTH} to {MAX_SECRET_LENGTH} printable characters")
    return secret


# ------------------------------------------------------------------------------------------------ wire format
def sign(secret, raw_body):
    """The signature header value: ``sha256=<hex HMAC-SHA256 of raw_body with secret>``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), raw_body, hashlib.sha256).hexdigest()


def verify(secret, raw_body, signature):
    """Whether ``signature`` (a header value) is the signature of ``raw_body`` (constant-time)."""
    return hmac.compare_digest(sign(secret, raw_body), str(signature or ""))


def body(delivery, timestamp, attempt):
    """The raw JSON body (bytes) of one attempt of ``delivery``."""
    return json.dumps({"id": delivery.delivery_id, "type": delivery.event_type, "timestamp": int(timestamp),
                       "attempt": attempt, "event": json.loads(delivery.event), "instance": delivery.instance},
                      sort_keys=True).encode("utf-8")


def headers(secret, delivery, raw_body, timestamp, attempt):
    return {"Content-Type": "application/json", "User-Agent": f"mini-buildd/{__version__} (webhook)",
            H_EVENT: delivery.event_type, H_DELIVERY: delivery.delivery_id, H_TIMESTAMP: str(int(timestamp)),
            H_ATTEMPT: str(attempt), H_SIGNATURE: sign(secret, raw_body)}


def post(url, raw_body, request_headers, timeout, privileged=False, allowed_nets=()):
    """POST ``raw_body`` to ``url``; the HTTP status (redirects are not followed: a 3xx counts as
    a failure). The host is resolved and checked once, and the connection goes to that address
    (:func:`mini_buildd.webhook_addresses.connection`: ``privileged`` and ``allowed_nets`` decide
    whether an internal address may be reached; else
    :class:`~mini_buildd.webhook_addresses.InternalAddress`). Raises ``OSError`` /
    ``http.client.HTTPException`` on network errors and timeouts."""
    parts = urllib.parse.urlsplit(url)
    conn = webhook_addresses.connection(parts.scheme, parts.hostname, parts.port, timeout, privileged=privileged,
                                        allowed_nets=allowed_nets)
    try:
        conn.request("POST", urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, "")), body=raw_body,
                     headers=request_headers)
        response = conn.getresponse()
        response.read(MAX_ANSWER)
        return response.status
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------------ policy
def _env_number(name, default, cast=float, minimum=0):
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = cast(raw)
        if value < minimum:
            raise ValueError(raw)
        return value
    except ValueError:
        LOG.error("%s: not a number >= %s: %r (using %s)", name, minimum, raw, default)
        return default


@dataclasses.dataclass(frozen=True)
class Policy:
    """Delivery settings: ``attempts`` per delivery, the delay before retry n (``delay`` ×
    ``factor``^(n-1), at most ``max_delay`` seconds), the ``timeout`` of one attempt (seconds) and
    how many finished deliveries each webhook's log keeps (``log_size``)."""

    attempts: int = 5
    delay: float = 10.0
    factor: float = 4.0
    max_delay: float = 600.0
    timeout: float = 10.0
    log_size: int = 50
    #: Internal networks users' webhooks may reach anyway (``MINI_BUILDD_WEBHOOK_ALLOW_NETS``).
    allow_nets: tuple = ()

    ENV = {"attempts": ("MINI_BUILDD_WEBHOOK_ATTEMPTS", int, 1), "delay": ("MINI_BUILDD_WEBHOOK_DELAY", float, 0),
           "factor": ("MINI_BUILDD_WEBHOOK_FACTOR", float, 1), "max_delay": ("MINI_BUILDD_WEBHOOK_MAX_DELAY", float, 0),
           "timeout": ("MINI_BUILDD_WEBHOOK_TIMEOUT", float, 0.1), "log_size": ("MINI_BUILDD_WEBHOOK_LOG_SIZE", int, 1)}

    @classmethod
    def from_environment(cls):
        defaults = cls()
        return cls(**{field: _env_number(name, getattr(defaults, field), cast, minimum)
                      for field, (name, cast, minimum) in cls.ENV.items()},
                   allow_nets=webhook_addresses.allowed_nets_from_environment())

    def retry_delay(self, failed_attempts):
        """Seconds to wait after the ``failed_attempts``-th failed attempt."""
        return min(self.max_delay, self.delay * self.factor ** max(0, failed_attempts - 1))


# ------------------------------------------------------------------------------------------------ deliveries
@dataclasses.dataclass
class Delivery:
    """One event to one webhook (as the store keeps it). ``event``: the event's JSON text;
    ``instance``: ``{identity, url}`` of this instance; ``due``: epoch seconds of the next attempt."""

    pk: typing.Any
    webhook_id: typing.Any
    delivery_id: str
    event_type: str
    event: str
    instance: dict
    attempts: int = 0
    due: float = 0.0


@dataclasses.dataclass
class Outcome:
    """What an attempt did: the delivery's new state, HTTP status (or None), error text, next due time."""

    state: str
    status_code: typing.Optional[int]
    error: str
    attempted: float
    due: typing.Optional[float] = None


class _Target:
    """The deliveries of one webhook, in due order, sent by a thread that lives while there are any."""

    def __init__(self, dispatcher, webhook_id):
        self.dispatcher, self.webhook_id = dispatcher, webhook_id
        self._heap = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread = None

    def add(self, delivery):
        """Queue ``delivery`` (its ``due`` time); the thread starts if none runs."""
        with self._cond:
            heapq.heappush(self._heap, (delivery.due, next(self._seq), delivery))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"webhook-{self.webhook_id}", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def wake(self):
        """Re-check (stop)."""
        with self._cond:
            self._cond.notify_all()

    def thread(self):
        """The running thread, or None."""
        with self._cond:
            return self._thread

    def _next(self):
        """The next due delivery (waiting for it), or None when empty or stopping (lock held)."""
        while self._heap and not self.dispatcher.stopping.is_set():
            due = self._heap[0][0]
            now = time.time()
            if due <= now:
                return heapq.heappop(self._heap)[2]
            self._cond.wait(due - now)
        return None

    def _run(self):
        try:
            while True:
                with self._cond:
                    delivery = self._next()
                    if delivery is None:
                        self._thread = None
                        return
                again = self.dispatcher.attempt(delivery)
                if again:
                    with self._cond:
                        heapq.heappush(self._heap, (delivery.due, next(self._seq), delivery))
        except Exception:  # pylint: disable=broad-except  # thread boundary: log; pending deliveries stay in the store
            LOG.exception("Webhook %s: worker failed", self.webhook_id)
            with self._cond:
                self._thread = None
        finally:
            self.dispatcher.store.close()


class Dispatcher:
    """Delivers events to webhooks. ``store`` persists webhooks and deliveries (see
    :class:`mini_buildd.webhooks_store.Store` for the methods used).

    :meth:`listener` is given to the event hub (:meth:`mini_buildd.events.Events.add_listener`): it
    only queues the event. A fan-out thread asks the store which webhooks want it (it creates their
    pending deliveries) and hands each delivery to its webhook's :class:`_Target`. :meth:`start`
    first resumes the pending deliveries the store kept from before (a restart).
    """

    def __init__(self, store, policy=None):
        self.store = store
        self.policy = policy or Policy.from_environment()
        self.stopping = threading.Event()
        self._inbox = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._targets = {}
        self._fanout = None

    def start(self):
        """Resume the stored pending deliveries, start the fan-out; return self."""
        try:
            pending = self.store.pending()
        except Exception:  # pylint: disable=broad-except  # start-up boundary: the daemon runs on, new events are delivered
            LOG.exception("Webhooks: could not resume the pending deliveries")
            pending = []
        for delivery in pending:
            self._schedule(delivery)
        if pending:
            LOG.info("Webhooks: resumed %s pending deliveries.", len(pending))
        self._fanout = threading.Thread(target=self._fanout_run, name="webhook-fanout", daemon=True)
        self._fanout.start()
        return self

    def listener(self, event):
        """The event hub's listener: queue ``event`` (never blocks)."""
        if not self.stopping.is_set():  # pylint: disable=deprecated-method  # a false positive of pylint's whole-tree inference (Event.is_set is current)
            self._inbox.put(event)

    def stop(self, timeout=5.0):
        """Turn the events queued so far into stored deliveries, then stop attempts; wait up to
        ``timeout`` s in all (what is still pending stays in the store for the next start)."""
        deadline = time.monotonic() + timeout
        self._inbox.put(None)
        if self._fanout is not None:
            self._fanout.join(timeout / 2)
        self.stopping.set()
        with self._lock:
            targets = list(self._targets.values())
        for target in targets:
            target.wake()
        for thread in [t.thread() for t in targets]:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))

    def _fanout_run(self):
        try:
            while True:
                event = self._inbox.get()
                if event is None:
                    return
                try:
                    deliveries = self.store.create(event)
                except Exception:  # pylint: disable=broad-except  # thread boundary: one event's failure must not stop the fan-out
                    LOG.exception("Webhooks: could not queue deliveries for %s", event)
                    continue
                for delivery in deliveries:
                    self._schedule(delivery)
        finally:
            self.store.close()

    def _schedule(self, delivery):
        with self._lock:
            target = self._targets.get(delivery.webhook_id)
            if target is None:
                target = self._targets[delivery.webhook_id] = _Target(self, delivery.webhook_id)
        target.add(delivery)

    def attempt(self, delivery):
        """One attempt of ``delivery``; records it in the store. True if it is to be tried again
        (``delivery.due`` is then set)."""
        target = self.store.target(delivery.webhook_id)
        if target is None:
            LOG.info("Webhook %s gone or inactive: delivery %s dropped.", delivery.webhook_id, delivery.delivery_id)
            return False
        url, secret, privileged = target
        now = time.time()
        attempt = delivery.attempts + 1
        raw = body(delivery, now, attempt)
        status, error, refused = None, "", False
        try:
            status = post(url, raw, headers(secret, delivery, raw, now, attempt), self.policy.timeout, privileged=privileged,
                          allowed_nets=self.policy.allow_nets)
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except webhook_addresses.InternalAddress as e:
            error, refused = f"Refused: {e}", True
        except (OSError, http.client.HTTPException, ValueError) as e:
            error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        delivery.attempts = attempt
        outcome = Outcome(DELIVERED if not error else FAILED, status, error, now)
        if error and not refused and attempt < self.policy.attempts:
            outcome.state, outcome.due = PENDING, time.time() + self.policy.retry_delay(attempt)
            delivery.due = outcome.due
        log = LOG.info if not error else LOG.warning
        log("Webhook %s delivery %s (%s) attempt %s/%s to %s: %s%s", delivery.webhook_id, delivery.delivery_id,
            delivery.event_type, attempt, self.policy.attempts, url, error or f"HTTP {status}",
            f"; next in {outcome.due - time.time():.1f}s" if outcome.due else "")
        if not self.store.record(delivery, outcome):
            return False
        return outcome.state == PENDING and not self.stopping.is_set()  # pylint: disable=deprecated-method  # as in listener()
