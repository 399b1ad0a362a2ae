"""The HTTP fast path of the API: ``GET /mini_buildd/api/<call>/`` of the calls the registry marks
cacheable (:class:`mini_buildd.api.registry.Cache`; e.g. ``status``, ``ls``) answered in the
twisted reactor from a cache of the Django view's own responses, without a thread and without Django.

How it keeps the API's behaviour identical: it never computes a result itself. On a miss the request
goes to the Django view (:mod:`mini_buildd.api.http`) unchanged, and the response passing back is
captured; a ``200`` ``application/json`` response without cookies is kept. A hit replays it: same
body, same headers (Django's middleware headers included). Everything else is Django's, untouched:
other outputs, ``confirm``, a session cookie (so a logged-in user is logged by name), an ``Authorization``
header (an API token: Django authenticates it, 401 when it is bad), methods other
than GET, and every error (a bad argument is a miss whose 400 is never kept). Concurrent misses of
one request wait for the first one (one Django run, not one per connection).

Validity (checked on every request, in the reactor, a few ``stat()`` calls at most): a kept
response is served while its *token* is unchanged; the token is read before Django computes the
response, so a response is never older than its token. The token is

- a generation counter, bumped by every save/delete (and commit) of a mini-buildd model in this
  process (Django signals; :func:`connect_signals`), or :func:`invalidate`;
- mtime/size/inode of the configuration database file (and its ``-wal``/``-journal``), so that a
  change written by another process (an administrator's ``manage.py shell``, a second daemon
  process) is seen too; the same :data:`RACY_NS` rule applies;
- whether the engine runs (so ``start``/``stop`` are seen at once);
- for ``Cache(repositories=True)``: mtime/size/inode of every repository's reprepro database
  (``db/packages.db``: reprepro rewrites it on include/copy/remove, not on queries or exports) and
  ``conf/distributions``. Responses computed while one of those files is younger than
  :data:`RACY_NS` are served but not kept (a second change within one file-time tick would not
  change the mtime).

``Cache(max_age=S)`` results also expire S seconds after their token was read; from S/2 on one
request at a time recomputes through Django while the others still get the kept response.

Hits are logged like the Django view logs a call (user, client address with ``X-Forwarded-For``
honoured, arguments), in one line marked ``(cached)``.
"""

import logging
import os
import threading
import time

from twisted.web import resource, server

from mini_buildd import config
from mini_buildd.tools import reprepro
from mini_buildd.api import registry
from mini_buildd.api import calls  # noqa: F401  pylint: disable=unused-import  # fills the registry

LOG = logging.getLogger(__name__)

#: A state file changed less than this long ago (ns): results are served but not kept.
RACY_NS = 1_000_000_000

#: At most this many kept responses (the oldest is dropped first).
MAX_ENTRIES = 1000

#: Response headers never replayed (twisted sets them per response).
_OWN_HEADERS = frozenset((b"date", b"server", b"content-length"))

_API_PATH = [b"mini_buildd", b"api"]


# ------------------------------------------------------------------------------------------------ validity
class Generation:
    """A counter bumped on every configuration change; any thread may bump it."""

    def __init__(self):
        self._lock = threading.Lock()
        self.value = 0

    def bump(self):
        with self._lock:
            self.value += 1


GENERATION = Generation()


def invalidate():
    """Drop every kept response (e.g. after a configuration change not seen by model signals)."""
    GENERATION.bump()


def _on_model_change(sender, **kwargs):
    meta = getattr(sender, "_meta", None)
    if meta is None or meta.app_label != "mini_buildd":
        return
    GENERATION.bump()
    # Also after the commit: a response computed between save and commit saw the old rows.
    from django.db import transaction  # pylint: disable=import-outside-toplevel
    transaction.on_commit(GENERATION.bump, using=kwargs.get("using"))


def connect_signals():
    """Bump :data:`GENERATION` on every save, delete and m2m change of a mini-buildd model."""
    from django.db.models import signals  # pylint: disable=import-outside-toplevel
    for signal in (signals.post_save, signals.post_delete, signals.m2m_changed):
        signal.connect(_on_model_change, dispatch_uid=f"mbd-api-fastpath-{id(signal)}")


def _stat_signature(paths, now):
    """``(signature, racy)`` of ``paths``: ``(mtime, size, inode)`` each (None when missing)."""
    sig, racy = [], False
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            sig.append(None)
            continue
        sig.append((st.st_mtime_ns, st.st_size, st.st_ino))
        racy = racy or now - st.st_mtime_ns < RACY_NS
    return tuple(sig), racy


def database_signature(path=None):
    """``(signature, racy)``: the state of the configuration database file (default: the instance's)
    and SQLite's ``-wal`` and ``-journal`` files beside it."""
    path = str(config.paths.config_db if path is None else path)
    return _stat_signature((path, path + "-wal", path + "-journal"), time.time_ns())


def repositories_signature(base=None):
    """``(signature, racy)``: the state of every reprepro base directory below ``base`` (default:
    the instance's repositories directory); ``racy`` if a state file changed within :data:`RACY_NS`."""
    base = str(config.paths.repositories if base is None else base)
    now = time.time_ns()
    try:
        with os.scandir(base) as it:
            names = sorted(e.name for e in it if e.is_dir())
    except FileNotFoundError:
        return (), False
    sig, racy = [], False
    for name in names:
        files, files_racy = _stat_signature([os.path.join(base, name, *parts) for parts in reprepro.STATE_FILES], now)
        sig.append((name, files))
        racy = racy or files_racy
    return tuple(sig), racy


def token(call):
    """``(token, keepable)`` for a cacheable call, now."""
    running = registry.engine_is_running()
    db_sig, db_racy = database_signature()
    if call.cache.repositories:
        sig, racy = repositories_signature()
        return (GENERATION.value, running, db_sig, sig), not (racy or db_racy)
    return (GENERATION.value, running, db_sig), not db_racy


# ------------------------------------------------------------------------------------------------ the resource
def client_address(request):
    """First ``X-Forwarded-For`` entry, else the peer's host (as the Django view logs it)."""
    forwarded = request.getHeader(b"x-forwarded-for")
    if forwarded and forwarded.strip():
        return forwarded.split(b",")[0].strip().decode("latin-1")
    return str(getattr(request.getClientAddress(), "host", ""))


class Entry:
    """One kept response."""

    __slots__ = ("token", "born", "headers", "body")

    def __init__(self, token_, born, headers, body):
        self.token, self.born, self.headers, self.body = token_, born, headers, body


class _Flight:
    """A miss being computed by Django; requests for the same key and token wait for it."""

    __slots__ = ("token", "waiters")

    def __init__(self, token_):
        self.token = token_
        self.waiters = []


class FastPath(resource.Resource):
    """Leaf resource for ``/mini_buildd/api/...`` (full path in ``request.postpath``, as Django
    wants it): answers cacheable calls from the cache, hands everything else to ``fallback`` (the
    Django WSGI resource)."""

    isLeaf = True

    def __init__(self, fallback, session_cookie="sessionid", max_entries=MAX_ENTRIES, clock=time.monotonic):
        super().__init__()
        self.fallback = fallback
        self.session_cookie = session_cookie.encode() if isinstance(session_cookie, str) else session_cookie
        self.max_entries = max_entries
        self.clock = clock
        self.entries = {}
        self.flights = {}
        self.counts = {"hit": 0, "miss": 0, "django": 0}

    # ----------------------------------------------------------------------------- routing
    def match(self, request):
        """``(call, key, query)`` if ``request`` may be answered from the cache, else None."""
        path = request.postpath
        if request.method != b"GET" or len(path) != 4 or path[3] != b"" or path[:2] != _API_PATH:
            return None
        call = registry.CALLS.get(path[2].decode("latin-1"))
        if call is None or call.cache is None:
            return None
        if self.session_cookie and request.getCookie(self.session_cookie) is not None:
            return None
        if request.getHeader(b"authorization") is not None:  # an API token: Django checks it (401 when bad)
            return None
        query = {}
        for name, values in request.args.items():
            if name == b"output":
                if any(v != b"json" for v in values):
                    return None
            elif name == b"confirm":
                return None
            else:
                query[name] = values
        key = (call.name, tuple(sorted((name, tuple(values)) for name, values in query.items())))
        return call, key, query

    def render(self, request):
        matched = self.match(request)
        if matched is None:
            return self._django(request)
        call, key, query = matched
        now = self.clock()
        current, keepable = token(call)
        max_age = call.cache.max_age
        entry = self.entries.get(key)
        if entry is not None and entry.token == current and (max_age is None or now - entry.born < max_age):
            if max_age is None or now - entry.born < max_age / 2 or key in self.flights:
                self.counts["hit"] += 1
                return self._reply(request, call, entry, query)
            # Old enough to refresh: this one request recomputes; the others keep the entry meanwhile.
        else:
            flight = self.flights.get(key)
            if flight is not None and flight.token == current:
                flight.waiters.append((request, query))
                return server.NOT_DONE_YET
        self.counts["miss"] += 1
        return self._lead(request, call, key, current, now, keepable)

    # ----------------------------------------------------------------------------- miss: Django computes
    def _django(self, request):
        self.counts["django"] += 1
        return self.fallback.render(request)

    def _lead(self, request, call, key, current, born, keepable):
        flight = _Flight(current)
        self.flights[key] = flight
        chunks = []
        write = request.write
        state = {"size": 0, "landed": False}

        def capture(data):
            chunks.append(data)
            state["size"] += len(data)
            write(data)
            # The client has it all once Content-Length bytes are out; Django finishes the request
            # only later (its clean-up runs in the thread first): land now, not then.
            length = request.responseHeaders.getRawHeaders(b"content-length")
            if length and length[0] == b"%d" % state["size"]:
                landed(None)

        def landed(_result):
            if state["landed"]:
                return
            state["landed"] = True
            if self.flights.get(key) is flight:
                del self.flights[key]
            entry = self._entry(request, current, born, b"".join(chunks)) if keepable else None
            if entry is not None:
                self._keep(key, entry)
            for waiter, query in flight.waiters:
                if entry is not None:
                    self._reply_later(waiter, call, entry, query)
                else:
                    self._django_later(waiter)

        def lost(_failure):
            if state["landed"]:
                return
            state["landed"] = True
            if self.flights.get(key) is flight:
                del self.flights[key]
            for waiter, _query in flight.waiters:
                self._django_later(waiter)

        request.write = capture
        request.notifyFinish().addCallbacks(landed, lost)
        return self._django(request)

    @staticmethod
    def _entry(request, current, born, body):
        """The Entry for Django's finished response to ``request``, or None if it is not to be kept."""
        if request.code != 200:
            return None
        headers = []
        for name, values in request.responseHeaders.getAllRawHeaders():
            lname = name.lower()
            if lname == b"set-cookie":
                return None
            if lname == b"content-type" and values != [b"application/json"]:
                return None
            if lname not in _OWN_HEADERS:
                headers.append((name, list(values)))
        return Entry(current, born, tuple(headers), body)

    def _keep(self, key, entry):
        old = self.entries.pop(key, None)
        if old is not None and old.born > entry.born:
            entry = old
        elif len(self.entries) >= self.max_entries:
            del self.entries[next(iter(self.entries))]
        self.entries[key] = entry

    # ----------------------------------------------------------------------------- hit: replay
    def _reply(self, request, call, entry, query):
        for name, values in entry.headers:
            request.responseHeaders.setRawHeaders(name, values)
        request.setHeader(b"content-length", b"%d" % len(entry.body))
        LOG.debug("API call '%s' by anonymous from %s: %s (cached)", call.name, client_address(request),
                  {k.decode("utf-8", "replace"): [v.decode("utf-8", "replace") for v in vs] for k, vs in query.items()})
        return entry.body

    def _reply_later(self, request, call, entry, query):
        if getattr(request, "_disconnected", False):
            return
        self.counts["hit"] += 1
        request.write(self._reply(request, call, entry, query))
        request.finish()

    def _django_later(self, request):
        if getattr(request, "_disconnected", False):
            return
        body = self._django(request)
        if body is not server.NOT_DONE_YET:
            request.write(body)
            request.finish()
