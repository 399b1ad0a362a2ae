"""The web side against a hostile browser and a hostile network (issue #12), each test written as
the attack, on the real daemon (twisted + Django, real reprepro) of an instance without chroots:

- cross-site requests (the admin's cookie with a browser's cross-site headers) to ``remove``,
  ``stop`` and ``setup`` are refused and change nothing; our ``mini-buildd-api`` and an
  upstream-like client (login form POST, then GET with the session cookie) still run them;
- HTML/SVG files planted in ``var/events`` and ``var/shared/builds`` are served as text/plain with
  nosniff and ``CSP: sandbox``; symlinks there to ``config.sqlite``/``.gnupg`` answer 404 and are not
  listed; ``..`` and ``%2e%2e`` don't leave the served roots;
- a too big request body gets 413 before it is read; failed logins lock the address (429, event);
  anonymous ``search`` is capped and rate-limited (429); a foreign Host header is refused.
"""

import http.client
import json
import os
import shutil
import socket
import subprocess

import pytest
import requests

from mini_buildd import config
from tests.helpers.daemon import PYTHON, ROOT, Daemon, free_port, in_home, run_mbd
from tests.helpers.packages import make_source_package
from tests.helpers.setup_run import run_setup, WITHOUT_CHROOTS

#: The acceptance setup without its chroot (never create the shared chroot name here).
SETUP = WITHOUT_CHROOTS
UNSTABLE = "bookworm-test-unstable"
SOURCE = "mbd-websec"
PASSWORD = "websec-Secret-1"
#: Small limits so the attacks are quick (set in the database before the daemon starts).
LIMITS = {"http_max_request_body": 1, "login_max_failures": 3, "anonymous_search_max_results": 1,
          "anonymous_requests_per_minute": 4}
CROSS_SITE = [
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Referer": "http://127.0.0.2:8000/evil.html"},
    {"Origin": "http://127.0.0.2:8000"},
    {"Referer": "http://evil.example.org/page"},
]


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    """A set-up instance with its daemon running; stopped after."""
    base = tmp_path_factory.mktemp("websec")
    home = base / "home"
    http_port, ftp_port = free_port(), free_port()
    http_ep, ftp_ep = f"tcp:interface=127.0.0.1:port={http_port}", f"tcp:interface=127.0.0.1:port={ftp_port}"
    run_setup(home, *SETUP, "--ftp-endpoint", ftp_ep, http_endpoint=http_ep, timeout=600)
    password_file = base / "admin-password"
    password_file.write_text(PASSWORD + "\n")
    proc = run_mbd(home, "--set-admin-password-file", str(password_file))
    assert proc.returncode == 0, proc.stderr
    for version in ("1.0", "1.1"):
        changes = make_source_package(base / f"pkg-{version}", SOURCE, version, UNSTABLE)
        dsc = next(changes.parent.glob(f"{SOURCE}_*.dsc"))  # pylint: disable=stop-iteration-return  # a test failure either way
        if version == "1.0":
            in_home(home, "from mini_buildd.tools import reprepro\n"
                          "repo = models.Repository.objects.get(identity='test')\n"
                          f"reprepro.Reprepro(repo.mbd_path()).includedsc({UNSTABLE!r}, {str(dsc)!r})\n")
        else:  # a second matching file for search (in the builds tree)
            target = config.Paths(home).builds / SOURCE / "1.1"
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(dsc, target)
    in_home(home, f"models.Daemon.objects.filter(pk=1).update(**{LIMITS!r})")
    daemon = Daemon(home, port=http_port, endpoints=[http_ep]).start()
    yield daemon
    assert daemon.stop() == 0


def paths(daemon):
    return config.Paths(daemon.home)


def admin_session(daemon):
    return daemon.session("admin", PASSWORD)


def state(daemon):
    """What the attacks must not change: the package listing, engine state, the instance identity."""
    ls = requests.get(f"{daemon.url}/mini_buildd/api/ls/", params={"source": SOURCE}, timeout=60).json()
    status = requests.get(f"{daemon.url}/mini_buildd/api/status/", timeout=60).json()
    return ls, status["load"] >= 0, status["identity"]  # load -1: engine stopped


ATTACK_CALLS = {
    "remove": {"source": SOURCE, "distribution": UNSTABLE, "without_rollback": "True", "confirm": "remove"},
    "stop": {"confirm": "stop"},
    "setup": {"identity": "evil", "update": "all", "pca": "all", "confirm": "setup"},
}


def test_cross_site_calls_refused_state_unchanged(instance):  # pylint: disable=redefined-outer-name
    before = state(instance)
    assert before[0]["test"][UNSTABLE]["version"] == "1.0" and before[1] is True
    admin = admin_session(instance)
    for name, params in ATTACK_CALLS.items():
        for headers in CROSS_SITE:
            r = admin.get(f"{instance.url}/mini_buildd/api/{name}/", params=params, headers=headers, timeout=60)
            assert r.status_code == 403 and r.headers["Content-Type"] == "application/problem+json", (name, headers, r.text)
            assert json.loads(r.text)["detail"].startswith(f"Refused cross-site request: API call '{name}' changes state"), r.text
            # A form auto-submitted from another site: POST (its CSRF token can't be known there; refused before that).
            r = admin.post(f"{instance.url}/mini_buildd/api/{name}/", data=params, headers=headers, timeout=60)
            assert r.status_code == 403, (name, headers, r.text)
    assert state(instance) == before


def test_our_cli_and_upstream_like_client_still_work(instance):  # pylint: disable=redefined-outer-name
    env = {**os.environ, "MINI_BUILDD_API_PASSWORD": PASSWORD}
    endpoint = f"http://admin@127.0.0.1:{instance.port}"

    def cli(*args):
        proc = subprocess.run([PYTHON, "-m", "mini_buildd.cli.api", "--script-mode", "--auto-confirm", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=300, check=False, env=env, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout
    cli("stop", endpoint)
    assert state(instance)[1] is False
    cli("start", endpoint)
    assert state(instance)[1] is True

    # Upstream 2.x's mini-buildd-api: GET the login page, POST the login form with the CSRF token
    # (no Referer, no Origin), then plain GETs with the session cookie.
    s = requests.Session()
    s.get(f"{instance.url}/accounts/login/", timeout=60)
    r = s.post(f"{instance.url}/accounts/login/", timeout=60, data={
        "username": "admin", "password": PASSWORD, "csrfmiddlewaretoken": s.cookies["csrftoken"],
        "this_is_the_login_form": "1", "next": "/mini_buildd/api/status/"})
    assert r.status_code == 200 and r.url.endswith("/mini_buildd/api/status/"), r.text
    r = s.get(f"{instance.url}/mini_buildd/api/stop/", params={"confirm": "stop", "output": "json"}, timeout=60)
    assert r.status_code == 200, r.text
    assert state(instance)[1] is False
    r = s.get(f"{instance.url}/mini_buildd/api/start/", params={"confirm": "start", "output": "json"}, timeout=60)
    assert r.status_code == 200 and state(instance)[1] is True
    # The cookies a browser gets: SameSite=Strict, the session one HttpOnly.
    raw = r.request.headers["Cookie"]
    assert "mini_buildd_sessionid=" in raw
    login = requests.get(f"{instance.url}/accounts/login/", timeout=60)
    assert "SameSite=Strict" in login.headers["Set-Cookie"]


def _plant(daemon):
    planted = {}
    for area, root in (("events", paths(daemon).events), ("builds", paths(daemon).builds)):
        d = root / "mbd-xss" / "1.0" / "20261206:000000:000000"
        d.mkdir(parents=True, exist_ok=True)
        for name, text in (("x.html", "<html><script>alert(document.cookie)</script></html>"),
                           ("x.svg", '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
                           ("x.xhtml", '<html xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></html>'),
                           ("x.xml", "<?xml version='1.0'?><x/>")):
            (d / name).write_text(text)
            planted[f"/static/{area}/mbd-xss/1.0/20261206:000000:000000/{name}"] = text
    return planted


def assert_data_headers(r):
    assert r.headers["X-Content-Type-Options"] == "nosniff", r.headers
    assert r.headers["Content-Security-Policy"] == "sandbox", r.headers


def test_planted_html_and_svg_served_as_plain_text(instance):  # pylint: disable=redefined-outer-name
    for url, text in _plant(instance).items():
        r = requests.get(instance.url + url, timeout=60)
        assert r.status_code == 200 and r.text == text, url
        assert r.headers["Content-Type"] == "text/plain; charset=utf-8", (url, r.headers)
        assert_data_headers(r)
    # Known package/index types keep their (inactive) types; the listing carries the headers too.
    r = requests.get(f"{instance.url}/repositories/test/dists/{UNSTABLE}/Release", timeout=60)
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert_data_headers(r)
    pool = next(paths(instance).repositories.glob(f"test/pool/main/*/{SOURCE}/*.dsc"))
    r = requests.get(f"{instance.url}/repositories/{pool.relative_to(paths(instance).repositories)}", timeout=60)
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/plain; charset=utf-8"
    r = requests.get(f"{instance.url}/static/events/", timeout=60)
    assert r.status_code == 200
    assert_data_headers(r)
    # The web app's own assets keep their types, with nosniff.
    r = requests.get(f"{instance.url}/static/mini_buildd/style.css", timeout=60)
    assert r.headers["Content-Type"].startswith("text/css") and r.headers["X-Content-Type-Options"] == "nosniff"


def test_symlinks_answer_404_and_are_not_listed(instance):  # pylint: disable=redefined-outer-name
    p = paths(instance)
    links = {
        p.events / "leak.sqlite": p.config_db,
        p.builds / "gpg": p.home / ".gnupg",
        p.events / "mbd-xss" / "leak-dir": p.home,
        p.builds / "rel.sqlite": os.path.relpath(p.config_db, p.builds),
    }
    for link, target in links.items():
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(target)
    for url in ("/static/events/leak.sqlite", "/static/builds/gpg/", "/static/builds/gpg/pubring.kbx",
                "/static/builds/gpg/private-keys-v1.d/", "/static/events/mbd-xss/leak-dir/config.sqlite",
                "/static/builds/rel.sqlite", "/mini_buildd/events-dir/leak.sqlite", "/mini_buildd/builds-dir/gpg/",
                "/mini_buildd/events-dir/mbd-xss/leak-dir/", "/mini_buildd/events/mbd-xss/leak-dir/"):
        r = requests.get(instance.url + url, timeout=60)
        assert r.status_code == 404, (url, r.status_code, r.headers)
        assert b"SQLite format" not in r.content and b"PRIVATE" not in r.content
    for url in ("/static/events/", "/static/builds/", "/mini_buildd/events-dir/", "/mini_buildd/builds-dir/",
                "/static/events/mbd-xss/", "/mini_buildd/events-dir/mbd-xss/"):
        r = requests.get(instance.url + url, timeout=60)
        assert r.status_code == 200, url
        for name in ("leak.sqlite", "gpg", "leak-dir", "rel.sqlite"):
            assert f">{name}" not in r.text, (url, name)
    # /repositories/ (written by reprepro only) follows links inside its own tree, never out of it.
    repos = p.repositories
    release = next(repos.glob("*/dists/*/Release"), None)
    assert release is not None, "the instance has no repository to test /repositories/ with"
    inner, outer = release.parent / "Release-link", release.parent / "leak.sqlite"
    for link, target in ((inner, "Release"), (outer, os.path.relpath(p.config_db, release.parent))):
        if not link.is_symlink():
            link.symlink_to(target)
    base = f"{instance.url}/repositories/{release.parent.relative_to(repos).as_posix()}"
    r = requests.get(f"{base}/Release-link", timeout=60)
    assert r.status_code == 200 and r.content == release.read_bytes()
    r = requests.get(f"{base}/leak.sqlite", timeout=60)
    assert r.status_code == 404 and b"SQLite format" not in r.content
    # Searching does not follow them either.
    r = admin_session(instance).get(f"{instance.url}/mini_buildd/api/search/", params={"pattern": "pubring"}, timeout=60)
    assert r.status_code == 200 and r.json() == {}


def _raw_get(daemon, path, host=None):
    """GET ``path`` exactly as given (no client-side dot-segment removal)."""
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=60)
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", host or f"127.0.0.1:{daemon.port}")
        conn.endheaders()
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def test_dot_dot_does_not_escape(instance):  # pylint: disable=redefined-outer-name
    for path in ("/static/events/../../config.sqlite", "/static/events/%2e%2e/%2e%2e/config.sqlite",
                 "/static/builds/%2e%2e/%2e%2e/%2e%2e/config.sqlite", "/repositories/../config.sqlite",
                 "/repositories/%2e%2e/config.sqlite", "/repositories/..%2fconfig.sqlite", "/repositories/%2e%2e%2fconfig.sqlite",
                 "/static/events/..%2f..%2f.gnupg/pubring.kbx", "/static/builds/%2E%2E/%2E%2E/.django_secret_key",
                 "/mini_buildd/events-dir/%2e%2e/%2e%2e/", "/mini_buildd/builds-dir/..%2f..%2f..%2f"):
        status, _headers, body = _raw_get(instance, path)
        assert status in (400, 404), (path, status)
        assert b"SQLite format" not in body and b"BEGIN PGP" not in body, path


def _raw(daemon, data, read_timeout=60):
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=read_timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while sending: the answer is read below
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def test_too_big_request_body_is_413_before_it_is_read(instance):  # pylint: disable=redefined-outer-name
    limit = LIMITS["http_max_request_body"] * 1024 * 1024
    host = f"127.0.0.1:{instance.port}".encode()
    # Announced too big: answered after the headers alone (the body is never sent).
    answer = _raw(instance, b"POST /mini_buildd/api/status/ HTTP/1.1\r\nHost: " + host +
                  b"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n" % (limit + 1))
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"at most 1 MiB" in answer
    # Announced too big with Expect: 100-continue: no "100 Continue", only the 413.
    answer = _raw(instance, b"POST /accounts/login/ HTTP/1.1\r\nHost: " + host +
                  b"\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % (50 * limit))
    assert answer.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in answer, answer[:200]
    # Chunked: refused once it grows past the limit.
    chunk = b"a" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(limit // len(chunk) + 2)) + b"0\r\n\r\n"
    answer = _raw(instance, b"POST /mini_buildd/api/status/ HTTP/1.1\r\nHost: " + host +
                  b"\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    # Below the limit: answered normally (a web page's POST, with its CSRF token).
    s = requests.Session()
    s.get(f"{instance.url}/accounts/login/", timeout=60)
    r = s.post(f"{instance.url}/mini_buildd/api/status/", data={"csrfmiddlewaretoken": s.cookies["csrftoken"],
                                                                "pad": "x" * (limit // 2)}, timeout=60)
    assert r.status_code == 400 and "pad" in r.json()["detail"]  # Django read the body: the unknown argument is named
    assert requests.get(f"{instance.url}/mini_buildd/api/status/", timeout=60).status_code == 200


def test_anonymous_search_capped_and_rate_limited(instance):  # pylint: disable=redefined-outer-name
    admin = admin_session(instance)
    full = admin.get(f"{instance.url}/mini_buildd/api/search/", params={"pattern": SOURCE}, timeout=60).json()
    assert len(full[SOURCE]["repositories"]) + len(full[SOURCE]["builds"]) == 2, full
    # From another address (the limit counts per address): capped, then 429.
    conn_results = []
    for _ in range(LIMITS["anonymous_requests_per_minute"] + 1):
        conn = http.client.HTTPConnection("127.0.0.1", instance.port, timeout=60, source_address=("127.0.0.4", 0))
        conn.request("GET", f"/mini_buildd/api/search/?pattern={SOURCE}")
        r = conn.getresponse()
        conn_results.append((r.status, r.read(), r.getheader("Retry-After")))
        conn.close()
    for status, body, _retry in conn_results[:-1]:
        found = json.loads(body)
        assert status == 200 and sum(len(v) for v in found[SOURCE].values()) == LIMITS["anonymous_search_max_results"]
    status, body, retry = conn_results[-1]
    assert status == 429 and "too many anonymous requests" in json.loads(body)["detail"] and int(retry) > 0
    # Logged-in users are not limited.
    assert admin.get(f"{instance.url}/mini_buildd/api/search/", params={"pattern": SOURCE}, timeout=60).json() == full


def test_failed_logins_lock_the_address(instance):  # pylint: disable=redefined-outer-name
    def login(password, source="127.0.0.3"):
        s = requests.Session()
        adapter_conn = http.client.HTTPConnection("127.0.0.1", instance.port, timeout=60, source_address=(source, 0))
        adapter_conn.request("GET", "/accounts/login/", headers={"Host": f"127.0.0.1:{instance.port}"})
        r = adapter_conn.getresponse()
        r.read()
        token = [c.split(";")[0].split("=", 1)[1] for c in r.headers.get_all("Set-Cookie") if c.startswith("csrftoken=")][0]
        body = f"username=admin&password={password}&csrfmiddlewaretoken={token}&next=/accounts/null/"
        adapter_conn.request("POST", "/accounts/login/", body=body, headers={
            "Host": f"127.0.0.1:{instance.port}", "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={token}"})
        r = adapter_conn.getresponse()
        text = r.read().decode()
        adapter_conn.close()
        del s
        return r.status, text, r.getheader("Location"), r.getheader("Retry-After")

    for _ in range(LIMITS["login_max_failures"]):
        status, _text, _location, _retry = login("wrong")
        assert status == 200  # the form again, with an error
    status, text, _location, retry = login(PASSWORD)  # even the right password: locked
    assert status == 429 and "Too many failed logins" in text and int(retry) > 0
    # Other addresses are not locked.
    status, _text, location, _retry = login(PASSWORD, source="127.0.0.5")
    assert status == 302 and location.endswith("/accounts/null/")
    log = paths(instance).daemon_log.read_text(encoding="utf-8")
    assert "Event: DENIED" in log and "127.0.0.3" in log


def test_foreign_host_header_refused(instance):  # pylint: disable=redefined-outer-name
    for path in ("/", "/accounts/password_reset/", "/mini_buildd/api/status/?output=html"):
        status, _headers, _body = _raw_get(instance, path, host="evil.example.org")
        assert status == 400, path
    r = requests.post(f"{instance.url}/accounts/password_reset/", data={"email": "admin@example.org"},
                      headers={"Host": "evil.example.org"}, timeout=60)
    assert r.status_code in (400, 403)
    status, _headers, _body = _raw_get(instance, "/", host=f"localhost:{instance.port}")
    assert status == 200


def test_pages_carry_security_headers(instance):  # pylint: disable=redefined-outer-name
    r = admin_session(instance).get(f"{instance.url}/mini_buildd/", timeout=60)
    assert r.status_code == 200
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Referrer-Policy"] == "same-origin"
    assert "<script>" not in r.text  # no inline script
