"""Unit tests of the web side's defences (:mod:`mini_buildd.webapp.security`, the data file
server's path walk in :mod:`mini_buildd.httpd`, ``ALLOWED_HOSTS``), each written as the attack."""

# pytest idioms: Django and the code under test are imported after the test set-up.
# pylint: disable=import-outside-toplevel

import os

import pytest

from mini_buildd import httpd, webapp
from mini_buildd.webapp import security


def reason(headers, host="127.0.0.1:8066", scheme="http"):
    return security.cross_site_reason({k.lower(): v for k, v in headers.items()}, host, scheme)


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}, {"Sec-Fetch-Site": "CROSS-SITE"},
    {"Origin": "http://127.0.0.2:8066"}, {"Origin": "http://127.0.0.1:8067"}, {"Origin": "https://127.0.0.1:8066"},
    {"Origin": "null"}, {"Origin": "file://"}, {"Referer": "http://evil.example.org/x"},
    {"Referer": "http://127.0.0.1.evil.example.org:8066/"}, {"Referer": "http://127.0.0.1:8066@evil.example.org/"},
    {"Sec-Fetch-Site": "same-origin", "Referer": "http://evil.example.org/"},
    {"Sec-Fetch-Site": "none", "Origin": "http://evil.example.org"},
])
def test_cross_site_requests_are_recognised(headers):
    assert reason(headers) is not None


@pytest.mark.parametrize("headers", [
    {}, {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"},
    {"Origin": "http://127.0.0.1:8066"}, {"Referer": "http://127.0.0.1:8066/mini_buildd/api/"},
    {"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:8066", "Referer": "http://127.0.0.1:8066/x"},
])
def test_same_origin_and_cli_requests_pass(headers):
    assert reason(headers) is None


def test_default_ports():
    assert reason({"Origin": "http://mbd.example.org"}, host="mbd.example.org") is None
    assert reason({"Origin": "http://mbd.example.org"}, host="mbd.example.org:80") is None
    assert reason({"Origin": "https://mbd.example.org"}, host="mbd.example.org", scheme="https") is None
    assert reason({"Origin": "http://mbd.example.org"}, host="mbd.example.org", scheme="https") is not None


def test_api_call_name():
    assert security.api_call_name("/mini_buildd/api/stop/") == "stop"
    assert security.api_call_name("/mini_buildd/api/stop") == "stop"
    assert security.api_call_name("/mini_buildd/api/") is None
    assert security.api_call_name("/mini_buildd/api/a/b/") is None
    assert security.api_call_name("/mini_buildd/") is None


def test_login_failures_lock_after_max_and_expire():
    now = [1000.0]
    logins = security.LoginFailures(clock=lambda: now[0])
    assert not logins.failed("10.0.0.1", 3, 60) and not logins.failed("10.0.0.1", 3, 60)
    assert logins.locked_for("10.0.0.1") == 0
    assert logins.failed("10.0.0.1", 3, 60)
    assert logins.locked_for("10.0.0.1") == 60 and logins.locked_for("10.0.0.2") == 0
    now[0] += 59
    assert logins.locked_for("10.0.0.1") == 1
    now[0] += 1
    assert logins.locked_for("10.0.0.1") == 0
    # Failures spread wider than the lockout period don't add up; a success forgets them.
    assert not logins.failed("10.0.0.3", 2, 60)
    now[0] += 61
    assert not logins.failed("10.0.0.3", 2, 60)
    logins.succeeded("10.0.0.3")
    assert not logins.failed("10.0.0.3", 2, 60)


def test_login_failures_memory_is_bounded():
    logins = security.LoginFailures(max_addresses=10)
    for i in range(100):
        logins.failed(f"10.0.{i}.1", 1000, 60)
    assert len(logins._failures) <= 11  # pylint: disable=protected-access


def test_rate_limit_per_address_and_minute():
    now = [0.0]
    limit = security.RateLimit(clock=lambda: now[0])
    assert all(limit.allow("a", 3)[0] for _ in range(3))
    allowed, retry = limit.allow("a", 3)
    assert not allowed and 0 < retry <= 61
    assert limit.allow("b", 3)[0]
    now[0] += 60
    assert limit.allow("a", 3)[0]


def test_limits_cached_until_configuration_changes(db):  # pylint: disable=unused-argument,invalid-name
    from mini_buildd import models
    from mini_buildd.api import fastpath
    models.Daemon.get()
    limits = security.Limits(ttl=1e9)
    first = limits.get()
    models.Daemon.objects.filter(pk=1).update(http_max_request_body=first["http_max_request_body"] + 7)
    assert limits.get() == first  # cached (an update() sends no signal)
    fastpath.invalidate()
    assert limits.get()["http_max_request_body"] == first["http_max_request_body"] + 7
    deferred = []
    fastpath.invalidate()
    assert limits.get_nowait(deferred.append)["http_max_request_body"] == first["http_max_request_body"] + 7
    assert deferred == [limits.refresh]  # refreshed in a thread, the reactor never waits


def test_allowed_hosts_never_everything():
    hosts = webapp.allowed_hosts("mbd.example.org", ["tcp:interface=192.0.2.7:port=8066", "tcp6:port=8067",
                                                     "ssl:port=8068:interface=\\:\\:1:privateKey=k"])
    assert "*" not in hosts
    assert hosts[:2] == ["mbd.example.org", "192.0.2.7"]
    assert {"localhost", "127.0.0.1", "[::1]"} <= set(hosts)


def test_open_beneath_refuses_symlinks_anywhere(tmp_path):
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f").write_text("ok")
    (tmp_path / "secret").write_text("secret")
    (root / "a" / "leak").symlink_to(tmp_path / "secret")
    (root / "a" / "dirlink").symlink_to(root / "a" / "b")
    fd = httpd.open_beneath(str(root), ("a", "b", "f"))
    assert os.read(fd, 10) == b"ok"
    os.close(fd)
    for parts in (("a", "leak"), ("a", "dirlink", "f"), ("a", "..", "..", "secret")):
        with pytest.raises(OSError):
            os.close(httpd.open_beneath(str(root), parts))
    os.mkfifo(root / "a" / "fifo")
    fd = httpd.open_beneath(str(root), ("a", "fifo"))  # never blocks
    os.close(fd)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\0b"])
def test_unsafe_names(name):
    assert not httpd.safe_name(name)
