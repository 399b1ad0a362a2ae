"""Web pages with Django's test client: every page answers (200/404/403/redirect as it should), is
valid HTML (HTML Tidy: no errors), shows the events of the hub, and the staff actions go through
the API calls with the right permissions. The event hub is a real :class:`mini_buildd.events.Events`
in a temporary directory; no daemon runs."""

# pytest idioms: Django and the code under test are imported after the test set-up.
# pylint: disable=import-outside-toplevel

import datetime
import time
import xml.etree.ElementTree as ET

import pytest
from django.test import Client

from mini_buildd import config, events, services
from mini_buildd.events import Event, Type
from mini_buildd.webapp import eventrows, svg, views
from tests.helpers.html_check import assert_valid_html


@pytest.fixture(autouse=True)
def _testserver_allowed():
    """The Django test client's Host ('testserver') is no host of the instance: allow it here."""
    from django.conf import settings as django_settings  # pylint: disable=import-outside-toplevel
    from django.test import override_settings as _override  # pylint: disable=import-outside-toplevel
    with _override(ALLOWED_HOSTS=[*django_settings.ALLOWED_HOSTS, "testserver"]):
        yield


UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SRC = "mbd-webtest"
VER = "1.0~test12+1"
DIST = "bookworm-test-unstable"


def ev(type_, seconds=0, source=SRC, version=VER, dist=DIST, arch="source", **extra):
    ts = T0 + datetime.timedelta(seconds=seconds)
    tc = "20260102:030405:000000"
    key = f"{source}/{version}/{tc}"
    return Event(type_, dist, source, version, ts, {"timecode": tc, "key": key, "bkey": f"{key}/{arch}", "architecture": arch,
                 "changes": f"{key}/{arch}/{source}_{version}_{arch}.changes", **extra})


def pipeline():
    """A PACKAGING -> BUILDING -> BUILT -> INSTALLED run of SRC, plus an unrelated REJECTED."""
    key = f"{SRC}/{VER}/20260102:030405:000000"
    return [
        ev(Type.PACKAGING, 0, buildrequests={"amd64": {"bkey": f"{key}/amd64"}}),
        ev(Type.BUILDING, 1, arch="amd64", buildlog=f"{key}/amd64/{SRC}_{VER}_amd64.buildlog"),
        ev(Type.BUILT, 60, arch="amd64", sbuild_status="successful", sbuild_build_time="42",
           buildlog=f"{key}/amd64/{SRC}_{VER}_amd64.buildlog"),
        ev(Type.INSTALLED, 70, buildresults={"amd64": {"sbuild_status": "successful", "buildlog": f"{key}/amd64/x.buildlog"}}),
        ev(Type.REJECTED, 80, source="other<pkg>", error={"title": "Rejected", "detail": "bad <signature> & more"}),
    ]


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An event hub as the daemon's (services.events), shut down after."""
    h = events.Events(tmp_path / "events", queue_size=500)
    monkeypatch.setattr(services, "events", h)
    yield h
    h.shutdown(timeout=5)


@pytest.fixture
def users(db):  # pylint: disable=unused-argument,redefined-outer-name
    from django.contrib.auth.models import User
    return {
        "plain": User.objects.create_user("webplain", password="pw-plain"),
        "staff": User.objects.create_user("webstaff", password="pw-staff", is_staff=True),
        "admin": User.objects.create_superuser("webadmin", "admin@example.org", "pw-admin"),
    }


@pytest.fixture
def repository(bookworm_test_repository):
    """Repository 'test' (bookworm, Default layout) in the database only, marked Prepared (no reprepro
    tree: listings fail and the pages must say so)."""
    from mini_buildd import models
    bookworm_test_repository._set(models.StatusModel.STATUS_PREPARED)  # pylint: disable=protected-access
    return bookworm_test_repository


def client(user=None):
    c = Client()
    if user is not None:
        c.force_login(user)
    return c


def get_ok(c, url, status=200):
    """GET ``url``; the status must be ``status`` and an HTML page valid; return the response."""
    response = c.get(url)
    assert response.status_code == status, (url, response.status_code, response.content[:2000])
    if response["Content-Type"].startswith("text/html"):
        assert_valid_html(response.content, what=url)
    return response


PAGES = ["/", "/mini_buildd/", "/mini_buildd/events/", "/mini_buildd/events/?type=BUILT&source=x&distribution=y",
         "/mini_buildd/builds/", "/mini_buildd/repositories/", "/mini_buildd/builders/", "/mini_buildd/crontab/",
         "/mini_buildd/sitemap/", "/mini_buildd/events-dir/", "/mini_buildd/builds-dir/", "/mini_buildd/repositories-dir/",
         f"/mini_buildd/packages/{SRC}/", "/accounts/login/"]


@pytest.mark.parametrize("who", [None, "plain", "staff", "admin"])
def test_pages_answer_with_valid_html(db, hub, users, repository, who):  # pylint: disable=unused-argument,redefined-outer-name
    for e in pipeline():
        hub.log(e)
    c = client(users[who] if who else None)
    for url in PAGES + ["/mini_buildd/repositories/test/dists/bookworm-test-unstable/",
                        "/mini_buildd/repositories/test/dists/bookworm-test-stable-rollback2/"]:
        get_ok(c, url)
    html = get_ok(c, "/mini_buildd/repositories/").content.decode()
    assert "bookworm-test-unstable" in html and "/repositories/test bookworm-test-unstable main" in html
    assert "deb http://" in html and "[]" not in html


def test_pages_without_event_hub(db, monkeypatch):  # pylint: disable=unused-argument
    monkeypatch.setattr(services, "events", None)
    c = client()
    for url in ("/mini_buildd/", "/mini_buildd/events/", "/mini_buildd/builds/"):
        r = get_ok(c, url)
        assert b"not available" in r.content


def test_events_page_lists_queue_newest_first_and_filters(db, hub):  # pylint: disable=unused-argument,redefined-outer-name
    for e in pipeline():
        hub.log(e)
    r = get_ok(client(), "/mini_buildd/events/")
    html = r.content.decode()
    order = [html.index(f'data-type="{t}"') for t in ("REJECTED", "INSTALLED", "BUILT", "BUILDING", "PACKAGING")]
    assert order == sorted(order)
    # hostile names are escaped, links point at our pages
    assert "other&lt;pkg&gt;" in html and "other<pkg>" not in html
    assert "bad &lt;signature&gt; &amp; more" in html
    assert f'href="/mini_buildd/packages/{SRC}/"' in html
    assert f'href="/mini_buildd/builds/{SRC}/{VER}/20260102:030405:000000/amd64/"' in html
    # the live script gets the newest timestamp to continue from
    assert f'data-after="{(T0 + datetime.timedelta(seconds=80)).isoformat()}"' in html
    assert "/static/mini_buildd/events_stream.js" in html

    html = get_ok(client(), "/mini_buildd/events/?type=BUILT").content.decode()
    assert 'data-type="BUILT"' in html and 'data-type="INSTALLED"' not in html
    html = get_ok(client(), "/mini_buildd/events/?source=other%3Cpkg%3E").content.decode()
    assert 'data-type="REJECTED"' in html and 'data-type="BUILT"' not in html
    html = get_ok(client(), f"/mini_buildd/events/?distribution={DIST}&type=installed").content.decode()
    assert html.count('<tr class="ev ') == 1
    html = get_ok(client(), "/mini_buildd/events/?distribution=nowhere").content.decode()
    assert "No matching events." in html
    r = get_ok(client(), "/mini_buildd/events/?type=BOGUS", status=400)
    assert b"Unknown event type" in r.content


def test_events_page_is_cheap_with_500_events(db, hub):  # pylint: disable=unused-argument,redefined-outer-name
    for i in range(500):
        hub.log(ev(Type.BUILT, i, source=f"pkg{i % 37}", arch="amd64", sbuild_status="successful"))
    c = client()
    r = get_ok(c, "/mini_buildd/events/")
    assert r.content.decode().count('<tr class="ev ') == 500
    start = time.monotonic()
    for _ in range(20):
        assert c.get("/mini_buildd/events/").status_code == 200
    per_page = (time.monotonic() - start) / 20
    # Rows are cached: far below the ~1 s upstream needs (generous bound for a busy test host).
    assert per_page < 0.1, per_page


def test_home_shows_ongoing_and_latest(db, hub):  # pylint: disable=unused-argument,redefined-outer-name
    for e in pipeline()[:2]:
        hub.log(e)
    html = get_ok(client(), "/mini_buildd/").content.decode()
    assert "Nothing is being packaged" not in html
    assert "PACKAGING</span> <a" in html and "BUILDING</span> <a" in html
    assert 'id="mbd-engine">stopped' in html


def test_build_page_and_live_tail(db, hub):  # pylint: disable=unused-argument,redefined-outer-name
    for e in pipeline()[:2]:
        hub.log(e)
    bkey = f"{SRC}/{VER}/20260102:030405:000000/amd64"
    build_dir = config.paths.build_dir(*bkey.split("/"))
    build_dir.mkdir(parents=True)
    try:
        (build_dir / f"{SRC}_{VER}_amd64.buildlog").write_text("line one\n<b>line two</b>\n")
        html = get_ok(client(), f"/mini_buildd/builds/{bkey}/").content.decode()
        assert "&lt;b&gt;line two&lt;/b&gt;" in html and 'data-live="1"' in html and "buildlog.js" in html
        r = client().get(f"/mini_buildd/builds/{bkey}/?tail=1")
        assert r["X-Mini-Buildd-Ongoing"] == "1" and r.content == b"line one\n<b>line two</b>\n"
        hub.log(pipeline()[2])  # BUILT ends it
        r = client().get(f"/mini_buildd/builds/{bkey}/?tail=1")
        assert r["X-Mini-Buildd-Ongoing"] == "0"
        # the builds dir browser lists it, a file redirects to the static server
        html = get_ok(client(), f"/mini_buildd/builds-dir/{bkey}/").content.decode()
        assert f"{SRC}_{VER}_amd64.buildlog" in html
        r = client().get(f"/mini_buildd/builds-dir/{bkey}/{SRC}_{VER}_amd64.buildlog")
        assert r.status_code == 302 and r["Location"] == f"/static/builds/{bkey}/{SRC}_{VER}_amd64.buildlog"
    finally:
        import shutil
        shutil.rmtree(config.paths.build_dir(SRC), ignore_errors=True)
    get_ok(client(), "/mini_buildd/builds/no/such/build/x/", status=404)


def test_saved_events_and_events_dir(db, hub):  # pylint: disable=unused-argument,redefined-outer-name
    import shutil
    key_dir = config.paths.events_of(SRC, VER, "20260102:030405:000000", "source")
    try:
        for e in pipeline()[:1] + pipeline()[3:4]:
            hub.save(e, key_dir)
        html = get_ok(client(), f"/mini_buildd/events/{SRC}/").content.decode()
        assert 'data-type="INSTALLED"' in html and 'data-type="PACKAGING"' in html
        html = get_ok(client(), f"/mini_buildd/events-dir/{SRC}/{VER}/").content.decode()
        assert "20260102:030405:000000/" in html
        # the package page knows the package from its saved events alone
        html = get_ok(client(), f"/mini_buildd/packages/{SRC}/").content.decode()
        assert 'data-type="INSTALLED"' in html
    finally:
        shutil.rmtree(config.paths.events_of(SRC), ignore_errors=True)


@pytest.mark.parametrize("url", [
    "/mini_buildd/packages/no-such-package/",
    "/mini_buildd/repositories/test/dists/bookworm-test-unstable/",
    "/mini_buildd/repositories/test/dists/not-a-diststr-at-all-x/",
    "/mini_buildd/repositories/test/dists/bookworm-test-stable-rollback9/",
    "/mini_buildd/repositories/other/dists/bookworm-test-stable/",
    "/mini_buildd/events/no-such-package/",
    "/mini_buildd/events-dir/../../../etc/",
    "/mini_buildd/events-dir/no/such/dir/",
    "/mini_buildd/repositories-dir/nothing/",
    "/mini_buildd/no-such-page/",
])
def test_unknown_things_are_clear_404_pages(db, hub, url):
    """(No repository exists here.)"""  # pylint: disable=unused-argument,redefined-outer-name
    r = get_ok(client(), url, status=404)
    assert b"404 Not found" in r.content
    assert b"Traceback" not in r.content


def test_package_actions_need_staff_and_run_the_api_call(db, hub, users):  # pylint: disable=unused-argument,redefined-outer-name
    for e in pipeline():
        hub.log(e)
    url = f"/mini_buildd/packages/{SRC}/"
    data = {"action": "migrate", "distribution": DIST, "version": VER}
    r = client().post(url, data)
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")
    r = client(users["plain"]).post(url, data)
    assert r.status_code == 403
    assert_valid_html(r.content)
    # Staff: the migrate call runs (and fails: there is no repository 'test' here); the page says why.
    c = client(users["staff"])
    r = c.post(url, data)
    assert r.status_code == 302 and r["Location"] == url
    html = get_ok(c, url).content.decode()
    assert "msg-error" in html and "Migrate mbd-webtest" in html and "400" in html
    # remove is for administrators only: staff gets the call's 403 as a message
    c.post(url, {"action": "remove", "distribution": DIST, "version": VER})
    html = get_ok(c, url).content.decode()
    assert "403" in html and "ADMIN" in html
    r = client(users["staff"]).post(url, {"action": "explode"})
    assert r.status_code == 400


def test_crontab_run_now_is_for_admins(db, hub, users):  # pylint: disable=unused-argument,redefined-outer-name
    assert client(users["staff"]).post("/mini_buildd/crontab/", {"id": "expire_events"}).status_code == 403
    c = client(users["admin"])
    r = c.post("/mini_buildd/crontab/", {"id": "expire_events"})
    assert r.status_code == 302
    html = get_ok(c, "/mini_buildd/crontab/").content.decode()
    assert "msg-error" in html and "engine" in html.lower()


def test_staff_sees_action_buttons_only_when_staff(db, hub, users, repository):  # pylint: disable=unused-argument,redefined-outer-name
    hub.log(pipeline()[0])
    for who, expect in ((None, False), ("plain", False), ("staff", True)):
        html = get_ok(client(users[who] if who else None), f"/mini_buildd/packages/{SRC}/").content.decode()
        assert ("<th>Actions</th>" in html) == expect, who


def test_nav_links(db):  # pylint: disable=unused-argument
    html = get_ok(client(), "/mini_buildd/sitemap/").content.decode()
    for url in ("/mini_buildd/api/", "/mini_buildd/setup/", "/accounts/profile/", "/mini_buildd/events/", "/mini_buildd/builds/",
                "/mini_buildd/repositories/", "/mini_buildd/builders/", "/mini_buildd/crontab/"):
        assert f'href="{url}"' in html, url


def test_server_error_page_has_no_traceback(db, rf=None):  # pylint: disable=unused-argument
    from django.test import RequestFactory
    r = views.server_error(RequestFactory().get("/x"))
    assert r.status_code == 500 and b"Traceback" not in r.content


def test_buildtimes_svg(db, hub):  # pylint: disable=unused-argument,redefined-outer-name
    evs = [ev(Type.BUILT, i * 100, version=f"1.{i}", arch="amd64", sbuild_status="successful" if i % 3 else "failed",
              sbuild_build_time=str(30 + i * 7)) for i in range(12)]
    evs += [ev(Type.BUILT, 5000, version="2.0", arch="amd64")]  # no build time: left out
    points = svg.build_times(list(reversed(evs)))
    assert [p.version for p in points] == [f"1.{i}" for i in range(12)]
    assert [p.ok for p in points][:3] == [False, True, True]
    doc = ET.fromstring(svg.build_times_svg(points, title="t<&>"))
    bars = doc.findall(".//{http://www.w3.org/2000/svg}rect[@class='bar']")
    assert len(bars) == 12
    heights = [float(b.get("height")) for b in bars]
    assert heights == sorted(heights)  # build time grows
    ET.fromstring(svg.build_times_svg([]))
    for e in evs:
        hub.log(e)
    r = client().get(f"/mini_buildd/packages/{SRC}/buildtimes.svg")
    assert r.status_code == 200 and r["Content-Type"] == "image/svg+xml"
    assert len(ET.fromstring(r.content).findall(".//{http://www.w3.org/2000/svg}rect[@class='bar']")) == 12
    assert 'buildtimes.svg"' in get_ok(client(), f"/mini_buildd/packages/{SRC}/").content.decode()


def test_event_rows_are_cached_and_escaped():
    e = ev(Type.FAILED, error={"detail": "<script>alert(1)</script>"})
    first = eventrows.row(e)
    assert eventrows.row(e) is first
    assert "<script>" not in first and "&lt;script&gt;" in first
    other = ev(Type.FAILED, error={"detail": "x"})
    assert eventrows.row(other) != first


@pytest.mark.parametrize("url", [
    "/mini_buildd/repositories/test/dists/bookworm-test-stable-rollback9/",
    "/mini_buildd/repositories/other/dists/bookworm-test-stable/",
    "/mini_buildd/repositories/test/dists/bookworm-other-stable/",
    "/mini_buildd/repositories/test/dists/trixie-test-stable/",
])
def test_unknown_distribution_of_a_repository_is_404(db, hub, repository, url):  # pylint: disable=unused-argument,redefined-outer-name
    r = get_ok(client(), url, status=404)
    assert b"No distribution" in r.content


def test_pages_have_no_tidy_warnings_either(db, hub, users, repository):  # pylint: disable=unused-argument,redefined-outer-name
    for e in pipeline():
        hub.log(e)
    c = client(users["admin"])
    # (not the login page: Django's own widget has 'autocapitalize', which tidy does not know)
    for url in [p for p in PAGES if not p.startswith("/accounts/")] + [
            "/mini_buildd/repositories/test/dists/bookworm-test-unstable/", "/mini_buildd/packages/none/"]:
        r = c.get(url)
        assert_valid_html(r.content, what=url, strict=True)


def test_cancel_button_on_an_ongoing_build_is_for_staff(db, hub, users):  # pylint: disable=unused-argument,redefined-outer-name
    for e in pipeline()[:2]:
        hub.log(e)
    bkey = f"{SRC}/{VER}/20260102:030405:000000/amd64"
    url = f"/mini_buildd/builds/{bkey}/"
    build_dir = config.paths.build_dir(*bkey.split("/"))
    build_dir.mkdir(parents=True)
    try:
        assert "Cancel this build" not in get_ok(client(users["plain"]), url).content.decode()
        c = client(users["staff"])
        r = get_ok(c, url)
        assert "Cancel this build" in r.content.decode()
        assert_valid_html(r.content, what=url, strict=True)
        r = client().post(url, {"action": "cancel"})
        assert r.status_code == 302 and r["Location"] == f"/accounts/login/?next={url}"
        r = client(users["plain"]).post(url, {"action": "cancel"})
        assert r.status_code == 403 and "cancel builds" in r.content.decode()
        assert client(users["staff"]).post(url, {"action": "explode"}).status_code == 400
        # staff: the cancel call runs; no engine here, so the page shows the call's 503 as a message
        r = c.post(url, {"action": "cancel"})
        assert r.status_code == 302 and r["Location"] == url
        html = get_ok(c, url).content.decode()
        assert "msg-error" in html and f"Cancel build {bkey}: 503" in html, html
        hub.log(pipeline()[2])  # BUILT: finished, no button
        assert "Cancel this build" not in get_ok(c, url).content.decode()
    finally:
        import shutil
        shutil.rmtree(config.paths.build_dir(SRC), ignore_errors=True)


def test_builders_check_buttons_are_for_staff(db, hub, users):  # pylint: disable=unused-argument,redefined-outer-name
    from mini_buildd import models
    remote = models.Remote.objects.create(http="http://127.0.0.1:9")
    url = "/mini_buildd/builders/"
    assert "Check</button>" not in get_ok(client(users["plain"]), url).content.decode()
    c = client(users["staff"])
    r = get_ok(c, url)
    assert f'value="remote:{remote.pk}">Check</button>' in r.content.decode()
    assert_valid_html(r.content, what=url, strict=True)
    data = {"check": f"remote:{remote.pk}"}
    r = client().post(url, data)
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")
    assert client(users["plain"]).post(url, data).status_code == 403
    assert c.post(url, {"check": "toaster:1"}).status_code == 400
    assert c.post(url, {"check": "remote:999999"}).status_code == 404
    # the remote was never prepared: its check fails and the page says why
    r = c.post(url, data)
    assert r.status_code == 302 and r["Location"] == url
    html = get_ok(c, url).content.decode()
    assert "msg-error" in html and "Check remote" in html and "prepare" in html, html
