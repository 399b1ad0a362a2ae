"""The API fast path (mini_buildd.api.fastpath) in-process: the real routing (httpd.Root), the real
Django view behind twisted's real WSGI resource (run synchronously: no reactor, no threads), and
raw HTTP responses compared byte for byte between the fast path and the Django path. Cache logic
(waiting on one Django run, refresh, errors and racy results never kept) with a scripted fallback.
Also the whole-file static producer of httpd."""

import os
import re
import time

import pytest
from twisted.web import resource, server, wsgi
from twisted.web.test.requesthelper import DummyChannel, DummyRequest

from mini_buildd import httpd
from mini_buildd.api import fastpath, registry

SESSION = b"mini_buildd_sessionid"


# ------------------------------------------------------------------------------------------------ harness
class SyncReactor:
    @staticmethod
    def callFromThread(f, *args, **kwargs):  # noqa: N802
        f(*args, **kwargs)


class SyncPool:
    @staticmethod
    def callInThread(f, *args, **kwargs):  # noqa: N802
        f(*args, **kwargs)


DATABASE_SIGNATURE = fastpath.database_signature
DB_STATE = {"sig": ("db",), "racy": False}


@pytest.fixture(autouse=True)
def quiet_database(monkeypatch):
    """The test database file is written all the time: pin its signature (tests change DB_STATE)."""
    DB_STATE.update(sig=("db",), racy=False)
    monkeypatch.setattr(fastpath, "database_signature", lambda: (DB_STATE["sig"], DB_STATE["racy"]))


@pytest.fixture
def site(committed_db):  # pylint: disable=unused-argument
    """The routing with and without the fast path (Django behind both answers from the database)."""
    from django.core.wsgi import get_wsgi_application
    django = wsgi.WSGIResource(SyncReactor(), SyncPool(), get_wsgi_application())
    fast = fastpath.FastPath(django, session_cookie=SESSION.decode())
    global PLAIN  # pylint: disable=global-statement
    PLAIN = server.Site(httpd.Root(django))  # the same routing without the fast path: Django answers all
    return server.Site(httpd.Root(django, fast)), fast


PLAIN = None


def get(site_, uri, cookie=None, method=b"GET"):
    """(status, {header: value}, body) of one request through the site, raw HTTP parsed."""
    channel = DummyChannel()
    channel.site = site_
    request = server.Request(channel, False)
    request.requestHeaders.setRawHeaders(b"host", [b"localhost"])
    if cookie:
        request.requestHeaders.setRawHeaders(b"cookie", [cookie])
    request.parseCookies()  # the channel does this when the headers are in
    request.gotLength(0)
    request.requestReceived(method, uri, b"HTTP/1.0")
    raw = channel.transport.written.getvalue()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b": ")
        headers[name.lower()] = value
    headers.pop(b"date", None)
    # The HTML form pages carry a fresh CSRF token (cookie and form field) each time: not compared.
    if headers.get(b"set-cookie", b"").lstrip().startswith(b"csrftoken="):
        headers[b"set-cookie"] = b"csrftoken=..."
    body = re.sub(rb'name="csrfmiddlewaretoken" value="[^"]*"', b'name="csrfmiddlewaretoken" value="..."', body)
    return int(lines[0].split()[1]), headers, body


def django_get(_site, uri):
    """The same request answered by Django (a site without the fast path)."""
    return get(PLAIN, uri)


class Engine:
    def __init__(self):
        self.running = False


@pytest.fixture
def engine():
    e = Engine()
    registry.set_engine_hooks(lambda: e.running, lambda: setattr(e, "running", False), lambda: setattr(e, "running", True),
                              load=lambda: 0.25)
    yield e
    registry.reset_engine_hooks()


# ------------------------------------------------------------------------------------------------ registry
def test_registry_cache_flags():
    assert registry.get("status").cache.max_age == 1.0 and not registry.get("status").cache.repositories
    assert registry.get("ls").cache.repositories and registry.get("ls").cache.max_age is None
    cached = [c for c in registry.CALLS.values() if c.cache is not None]
    assert all(c.auth == registry.Auth.NONE and not c.flags for c in cached)
    with pytest.raises(ValueError):
        registry.Call("x", lambda a, u: None, auth=registry.Auth.LOGIN, cache=registry.Cache())
    with pytest.raises(ValueError):
        registry.Call("x", lambda a, u: None, flags=[registry.CONFIRM], cache=registry.Cache())
    with pytest.raises(ValueError):
        registry.Cache(max_age=0)


# ------------------------------------------------------------------------------------------------ identical to Django
@pytest.mark.parametrize("uri", [b"/mini_buildd/api/status/", b"/mini_buildd/api/status/?output=json",
                                 b"/mini_buildd/api/status/?with_repositories=True",
                                 b"/mini_buildd/api/ls/?source=hello", b"/mini_buildd/api/ls/?source=hello&version=1.0"])
def test_fast_path_answers_like_django(site, engine, uri):  # pylint: disable=redefined-outer-name,unused-argument
    site_, fast = site
    expected = django_get(site_, uri)
    assert expected[0] == 200 and expected[1][b"content-type"] == b"application/json"
    first = get(site_, uri)    # miss: Django computes, the response is kept
    second = get(site_, uri)   # hit: replayed in the reactor
    assert fast.counts["miss"] == 1 and fast.counts["hit"] == 1
    assert first == second == expected
    # Middleware headers are replayed too.
    assert {b"x-frame-options", b"x-content-type-options", b"vary", b"content-length"} <= set(second[1])


def test_hits_are_logged_with_client_and_arguments(site, engine, caplog):  # pylint: disable=redefined-outer-name,unused-argument
    site_, _fast = site
    get(site_, b"/mini_buildd/api/ls/?source=hello")
    with caplog.at_level("DEBUG", logger="mini_buildd.api.fastpath"):  # requests: DEBUG only, the access log has them (issue #17)
        get(site_, b"/mini_buildd/api/ls/?source=hello")
    assert "API call 'ls' by anonymous from 192.168.1.1: {'source': ['hello']} (cached)" in caplog.text
    assert all(r.levelname == "DEBUG" for r in caplog.records if "API call" in r.getMessage())


@pytest.mark.parametrize("uri", [b"/mini_buildd/api/status/?bad=1", b"/mini_buildd/api/status/?with_repositories=maybe",
                                 b"/mini_buildd/api/ls/", b"/mini_buildd/api/ls/?source=hello&repositories=nosuch"])
def test_errors_are_djangos_and_never_kept(site, engine, uri):  # pylint: disable=redefined-outer-name,unused-argument
    site_, fast = site
    expected = django_get(site_, uri)
    assert expected[0] == 400 and expected[1][b"content-type"] == b"application/problem+json"
    assert get(site_, uri) == get(site_, uri) == expected
    assert fast.entries == {} and fast.counts["hit"] == 0


@pytest.mark.parametrize("uri", [b"/mini_buildd/api/status/?output=plain", b"/mini_buildd/api/status/?output=html",
                                 b"/mini_buildd/api/status/?output=nonsense", b"/mini_buildd/api/status/?confirm=status",
                                 b"/mini_buildd/api/pub_key/", b"/mini_buildd/api/no_such_call/", b"/mini_buildd/api/",
                                 b"/mini_buildd/api/status"])
def test_everything_else_goes_to_django(site, engine, uri):  # pylint: disable=redefined-outer-name,unused-argument
    site_, fast = site
    expected = django_get(site_, uri)
    assert get(site_, uri) == get(site_, uri) == expected
    assert fast.entries == {} and fast.counts["hit"] == fast.counts["miss"] == 0


def test_head_and_session_cookie_go_to_django(site, engine):  # pylint: disable=redefined-outer-name,unused-argument
    site_, fast = site
    cookie = SESSION + b"=not-a-session"
    assert get(site_, b"/mini_buildd/api/status/", method=b"HEAD") == get(PLAIN, b"/mini_buildd/api/status/", method=b"HEAD")
    assert get(site_, b"/mini_buildd/api/status/", cookie=cookie) == get(PLAIN, b"/mini_buildd/api/status/", cookie=cookie)
    assert fast.counts["django"] == 2 and fast.counts["miss"] == 0


# ------------------------------------------------------------------------------------------------ invalidation
def test_status_follows_engine_start_and_stop_at_once(site, engine):  # pylint: disable=redefined-outer-name
    site_, _fast = site
    import json
    assert json.loads(get(site_, b"/mini_buildd/api/status/")[2])["load"] == -1.0
    assert json.loads(get(site_, b"/mini_buildd/api/status/")[2])["load"] == -1.0
    registry.engine_start()
    assert json.loads(get(site_, b"/mini_buildd/api/status/")[2])["load"] == 0.25
    registry.engine_stop()
    assert json.loads(get(site_, b"/mini_buildd/api/status/")[2])["load"] == -1.0


@pytest.fixture
def keep_connection():
    """Django's request signals close the DB connection: not inside the test's rolled back transaction."""
    from django.core import signals
    from django.db import close_old_connections
    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (signals.request_started, signals.request_finished):
        signal.connect(close_old_connections)


def test_status_follows_model_saves_at_once(site, engine, keep_connection, db):  # pylint: disable=redefined-outer-name,unused-argument
    import json
    from mini_buildd import models
    site_, fast = site
    fastpath.connect_signals()
    identity = json.loads(get(site_, b"/mini_buildd/api/status/")[2])["identity"]
    assert json.loads(get(site_, b"/mini_buildd/api/status/")[2])["identity"] == identity and fast.counts["hit"] == 1
    daemon = models.Daemon.get()
    daemon.identity = "fastpath-renamed"
    daemon.save()
    assert json.loads(get(site_, b"/mini_buildd/api/status/")[2])["identity"] == "fastpath-renamed"


def test_invalidate_drops_everything(site, engine):  # pylint: disable=redefined-outer-name,unused-argument
    site_, fast = site
    get(site_, b"/mini_buildd/api/status/")
    get(site_, b"/mini_buildd/api/status/")
    fastpath.invalidate()
    get(site_, b"/mini_buildd/api/status/")
    assert fast.counts["miss"] == 2 and fast.counts["hit"] == 1


def test_repositories_signature(tmp_path):
    db = tmp_path / "test" / "db"
    db.mkdir(parents=True)
    (tmp_path / "test" / "conf").mkdir()
    (tmp_path / "test" / "conf" / "distributions").write_text("Codename: x\n")
    (db / "packages.db").write_bytes(b"1")
    (db / "version").write_text("v")
    old = time.time() - 10
    for f in (db / "packages.db", tmp_path / "test" / "conf" / "distributions"):
        os.utime(f, (old, old))
    sig, racy = fastpath.repositories_signature(tmp_path)
    assert not racy and len(sig) == 1 and len(sig[0][1]) == 2
    (db / "version").write_text("w")  # reprepro rewrites this even on queries: ignored
    assert fastpath.repositories_signature(tmp_path) == (sig, False)
    (db / "packages.db").write_bytes(b"2")
    sig2, racy = fastpath.repositories_signature(tmp_path)
    assert sig2 != sig and racy
    (tmp_path / "other").mkdir()
    assert fastpath.repositories_signature(tmp_path)[0] != sig2
    assert fastpath.repositories_signature(tmp_path / "nothing") == ((), False)


# ------------------------------------------------------------------------------------------------ cache logic (scripted Django)
class Request(DummyRequest):
    """DummyRequest with what the fast path uses of a server.Request."""

    def __init__(self, uri, cookies=None):
        path, _, query = uri.partition(b"?")
        super().__init__(path.split(b"/")[1:])
        self.method = b"GET"
        self.cookies = cookies or {}
        for part in filter(None, query.split(b"&")):
            name, _, value = part.partition(b"=")
            self.addArg(name, value)

    @property
    def code(self):
        return self.responseCode or 200

    def getCookie(self, name):  # noqa: N802
        return self.cookies.get(name)

    def body(self):
        return b"".join(self.written)


class ScriptedDjango(resource.Resource):
    """Fallback that answers only when told to."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.pending = []

    def render(self, request):
        self.pending.append(request)
        return server.NOT_DONE_YET

    def answer(self, body=b'{"ok": 1}', code=200, content_type=b"application/json", cookie=False):
        request = self.pending.pop(0)
        request.setResponseCode(code)
        request.responseHeaders.setRawHeaders(b"content-type", [content_type])
        request.responseHeaders.setRawHeaders(b"x-frame-options", [b"DENY"])
        if cookie:
            request.responseHeaders.setRawHeaders(b"set-cookie", [b"a=b"])
        request.write(body)
        request.finish()


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def scripted(engine):  # pylint: disable=redefined-outer-name,unused-argument
    django, clock = ScriptedDjango(), Clock()
    return fastpath.FastPath(django, session_cookie=SESSION, clock=clock), django, clock


def test_concurrent_misses_wait_for_one_django_run(scripted):  # pylint: disable=redefined-outer-name
    fast, django, _clock = scripted
    requests = [Request(b"/mini_buildd/api/status/") for _ in range(5)]
    for r in requests:
        assert fast.render(r) is server.NOT_DONE_YET
    assert len(django.pending) == 1
    django.answer(b'{"n": 1}')
    assert all(r.finished and r.body() == b'{"n": 1}' for r in requests)
    assert requests[3].responseHeaders.getRawHeaders(b"x-frame-options") == [b"DENY"]
    assert fast.render(Request(b"/mini_buildd/api/status/")) == b'{"n": 1}'


def test_waiters_of_an_error_ask_django_themselves(scripted):  # pylint: disable=redefined-outer-name
    fast, django, _clock = scripted
    leader, waiter = Request(b"/mini_buildd/api/status/?x=1"), Request(b"/mini_buildd/api/status/?x=1")
    fast.render(leader)
    fast.render(waiter)
    django.answer(b'{"status": 400}', code=400, content_type=b"application/problem+json")
    assert leader.finished and not waiter.finished and len(django.pending) == 1
    django.answer(b'{"status": 400}', code=400, content_type=b"application/problem+json")
    assert waiter.finished and fast.entries == {}


@pytest.mark.parametrize("kwargs", [{"cookie": True}, {"content_type": b"text/plain"}])
def test_responses_with_cookies_or_other_types_are_not_kept(scripted, kwargs):  # pylint: disable=redefined-outer-name
    fast, django, _clock = scripted
    fast.render(Request(b"/mini_buildd/api/status/"))
    django.answer(**kwargs)
    assert fast.entries == {}


def test_max_age_refresh_and_expiry(scripted):  # pylint: disable=redefined-outer-name
    fast, django, clock = scripted
    fast.render(Request(b"/mini_buildd/api/status/"))
    django.answer(b"1")
    clock.now += 0.4
    assert fast.render(Request(b"/mini_buildd/api/status/")) == b"1"
    clock.now += 0.2   # past max_age/2: one request refreshes, the others still get the kept response
    refresher = Request(b"/mini_buildd/api/status/")
    assert fast.render(refresher) is server.NOT_DONE_YET
    assert fast.render(Request(b"/mini_buildd/api/status/")) == b"1"
    django.answer(b"2")
    assert refresher.body() == b"2" and fast.render(Request(b"/mini_buildd/api/status/")) == b"2"
    clock.now += 1.0   # expired: a miss
    assert fast.render(Request(b"/mini_buildd/api/status/")) is server.NOT_DONE_YET


def test_racy_repository_state_is_served_not_kept(scripted, monkeypatch):  # pylint: disable=redefined-outer-name
    fast, django, _clock = scripted
    state = {"sig": ("a",), "racy": True}
    monkeypatch.setattr(fastpath, "repositories_signature", lambda: (state["sig"], state["racy"]))
    leader, waiter = Request(b"/mini_buildd/api/ls/?source=x"), Request(b"/mini_buildd/api/ls/?source=x")
    fast.render(leader)
    fast.render(waiter)
    django.answer(b"racy")
    assert leader.body() == b"racy" and not waiter.finished and fast.entries == {}
    django.answer(b"racy")
    state["racy"] = False
    fast.render(Request(b"/mini_buildd/api/ls/?source=x"))
    django.answer(b"kept")
    assert fast.render(Request(b"/mini_buildd/api/ls/?source=x")) == b"kept"
    assert fast.render(Request(b"/mini_buildd/api/ls/?source=y")) is server.NOT_DONE_YET  # other arguments: own entry
    django.answer(b"y")
    state["sig"] = ("b",)    # a repository changed
    assert fast.render(Request(b"/mini_buildd/api/ls/?source=x")) is server.NOT_DONE_YET


def test_argument_order_does_not_matter_value_order_does(scripted):  # pylint: disable=redefined-outer-name
    fast, _django, _clock = scripted
    a = fast.match(Request(b"/mini_buildd/api/ls/?source=x&version=1"))
    b = fast.match(Request(b"/mini_buildd/api/ls/?version=1&source=x&output=json"))
    c = fast.match(Request(b"/mini_buildd/api/ls/?source=x&repositories=a&repositories=b"))
    d = fast.match(Request(b"/mini_buildd/api/ls/?source=x&repositories=b&repositories=a"))
    assert a[1] == b[1] and c[1] != d[1]
    assert fast.match(Request(b"/mini_buildd/api/ls/?source=x", cookies={SESSION: b"s"})) is None


def test_lost_leader_sends_waiters_to_django(scripted):  # pylint: disable=redefined-outer-name
    fast, django, _clock = scripted
    leader, waiter = Request(b"/mini_buildd/api/status/"), Request(b"/mini_buildd/api/status/")
    fast.render(leader)
    fast.render(waiter)
    leader.processingFailed(Exception("connection lost"))
    assert len(django.pending) == 2 and fast.flights == {}


# ------------------------------------------------------------------------------------------------ static files
def test_small_files_in_one_write_large_and_ranges_as_before(tmp_path):
    small, large = tmp_path / "Release", tmp_path / "Packages"
    small.write_bytes(b"S" * 1000)
    large.write_bytes(b"L" * (httpd.SMALL_FILE_BYTES + 1))
    root = resource.Resource()
    root.putChild(b"repositories", httpd.DirectoryFile(str(tmp_path)))
    site_ = server.Site(root)
    status, headers, body = get(site_, b"/repositories/Release")
    assert status == 200 and body == small.read_bytes() and headers[b"content-length"] == b"1000"
    assert headers[b"accept-ranges"] == b"bytes" and b"last-modified" in headers
    channel = DummyChannel()
    channel.site = site_
    request = server.Request(channel, False)
    request.requestHeaders.setRawHeaders(b"range", [b"bytes=10-19"])
    request.gotLength(0)
    request.requestReceived(b"GET", b"/repositories/Release", b"HTTP/1.0")
    assert request.code == 206 and not isinstance(request.producer, httpd.WholeFileProducer)
    request.connectionLost(Exception("done"))
    for name in (b"Packages",):
        channel = DummyChannel()
        channel.site = site_
        request = server.Request(channel, False)
        request.gotLength(0)
        request.requestReceived(b"GET", b"/repositories/" + name, b"HTTP/1.0")
        assert request.producer is not None and not isinstance(request.producer, httpd.WholeFileProducer)
        request.connectionLost(Exception("done"))


def test_database_signature_sees_other_processes_writes(tmp_path):
    """A configuration change written by another process (no model signal here) changes the token."""
    db = tmp_path / "config.sqlite"
    db.write_bytes(b"1")
    old = time.time() - 10
    os.utime(db, (old, old))
    sig, racy = DATABASE_SIGNATURE(db)
    assert not racy and sig[0] is not None and sig[1:] == (None, None)
    assert DATABASE_SIGNATURE(db) == (sig, False)
    (tmp_path / "config.sqlite-wal").write_bytes(b"page")   # SQLite in WAL mode: the -wal file changes
    sig2, racy = DATABASE_SIGNATURE(db)
    assert sig2 != sig and racy
    db.write_bytes(b"22")
    assert DATABASE_SIGNATURE(db)[0] != sig2


def test_database_change_by_another_process_is_a_miss(scripted):  # pylint: disable=redefined-outer-name
    fast, django, _clock = scripted
    fast.render(Request(b"/mini_buildd/api/status/"))
    django.answer(b"1")
    assert fast.render(Request(b"/mini_buildd/api/status/")) == b"1"
    DB_STATE["sig"] = ("written by someone else",)
    assert fast.render(Request(b"/mini_buildd/api/status/")) is server.NOT_DONE_YET
    django.answer(b"2")
    DB_STATE.update(sig=("being written",), racy=True)     # still being written: served, not kept
    assert fast.render(Request(b"/mini_buildd/api/status/")) is server.NOT_DONE_YET
    django.answer(b"3")
    assert fast.render(Request(b"/mini_buildd/api/status/")) is server.NOT_DONE_YET
