"""Monitoring figures (issue #17) without a daemon: the OpenMetrics text writer (checked with Debian's
python3-prometheus-client parser), histogram bucketing, the event figures (each event counted once,
durations from paired events), the queue timeline, the SVG plots, and the readiness rule on the
models."""

import datetime
import math
import xml.dom.minidom

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from mini_buildd import events, metrics, metrics_plots, models, services
from mini_buildd.events import Event, Type

T0 = datetime.datetime(2026, 12, 7, 10, 0, tzinfo=datetime.timezone.utc)


def parse(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(families, name, **labels):
    """The value of the one sample ``name`` with ``labels`` (among all families)."""
    found = [s.value for f in families.values() for s in f.samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, found)
    return found[0]


# ------------------------------------------------------------------------------------------------ writer
def test_format_value():
    assert [metrics.format_value(v) for v in (3, True, 2.0, 0.25, math.nan, math.inf, -math.inf)] == \
        ["3", "1", "2.0", "0.25", "NaN", "+Inf", "-Inf"]


def test_escape_label():
    assert metrics.escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_render_parses_and_ends_with_eof():
    c = metrics.counter("things", "Things\nwith a second line.").add(5, "_total", kind='we"ird\\')
    g = metrics.gauge("size_bytes", "A size.", "bytes").add(1024, repository="test")
    h = metrics.Family("mini_buildd_wait_seconds", "histogram", "Waits.", "seconds")
    hist = metrics.Histogram((1, 10))
    for v in (0.5, 10, 11):
        hist.observe(v)
    hist.add_to(h, outcome="x")
    text = metrics.render([c, g, h])
    assert text.endswith("# EOF\n")
    fams = parse(text)
    assert sample(fams, "mini_buildd_things_total", kind='we"ird\\') == 5
    assert fams["mini_buildd_things"].documentation == "Things\nwith a second line."
    assert fams["mini_buildd_size_bytes"].unit == "bytes"
    assert sample(fams, "mini_buildd_wait_seconds_bucket", outcome="x", le="1.0") == 1
    assert sample(fams, "mini_buildd_wait_seconds_bucket", outcome="x", le="10.0") == 2
    assert sample(fams, "mini_buildd_wait_seconds_bucket", outcome="x", le="+Inf") == 3
    assert sample(fams, "mini_buildd_wait_seconds_count", outcome="x") == 3
    assert sample(fams, "mini_buildd_wait_seconds_sum", outcome="x") == 21.5


def test_family_refuses_bad_type_and_unit():
    with pytest.raises(ValueError):
        metrics.Family("mini_buildd_x", "bogus", "x")
    with pytest.raises(ValueError):
        metrics.Family("mini_buildd_x", "gauge", "x", unit="bytes")


def test_parser_would_catch_a_broken_text():
    """The parser the integration test relies on refuses what we must never write."""
    with pytest.raises(ValueError):
        parse("# TYPE a counter\na_total 1\n")  # no # EOF
    hist = metrics.Family("mini_buildd_h_seconds", "histogram", "h", "seconds").add(1, "_bucket", le="1.0")
    with pytest.raises(ValueError):
        parse(metrics.render([hist]))  # no +Inf bucket


# ------------------------------------------------------------------------------------------------ histogram
def test_histogram_bucketing():
    hist = metrics.Histogram((60, 30, 120))  # unsorted bounds are sorted
    for v in (0, 30, 30.0001, 60, 61, 120, 1000):
        hist.observe(v)
    assert hist.bounds == (30.0, 60.0, 120.0)
    assert hist.counts == [2, 2, 2, 1]   # le=30: 0, 30 | le=60: 30.0001, 60 | le=120: 61, 120 | above: 1000
    assert hist.cumulative() == [("30.0", 2), ("60.0", 4), ("120.0", 6), ("+Inf", 7)]
    assert hist.count == 7 and hist.sum == pytest.approx(1301.0001)


def test_empty_histogram():
    hist = metrics.Histogram(metrics.BUILD_BUCKETS)
    assert hist.cumulative()[-1] == ("+Inf", 0)
    fam = metrics.Family("mini_buildd_e_seconds", "histogram", "e", "seconds")
    hist.add_to(fam)
    assert sample(parse(metrics.render([fam])), "mini_buildd_e_seconds_count") == 0


# ------------------------------------------------------------------------------------------------ event figures
def ev(etype, minutes, key="p/1/t", arch="amd64", **extra):
    bkey = f"{key}/{arch if etype in (Type.BUILDING, Type.BUILT) else 'source'}"
    return Event(etype, "bookworm-test-unstable", "p", "1", timestamp=T0 + datetime.timedelta(minutes=minutes),
                 extra={"key": key, "bkey": bkey, "architecture": arch, **extra})


def newest_first(*evs):
    return sorted(evs, key=lambda e: e.timestamp, reverse=True)


def test_event_figures_count_each_event_once():
    fig = metrics.EventFigures()
    first = [ev(Type.PACKAGING, 0, timecode="20261207:095900:000000"), ev(Type.BUILDING, 1),
             ev(Type.BUILT, 11, sbuild_status="successful")]
    fig.update(newest_first(*first))
    fig.update(newest_first(*first))  # the same queue again: nothing new
    assert fig.by_type == {"PACKAGING": 1, "BUILDING": 1, "BUILT": 1}
    assert fig.builds == {"successful": 1}
    assert fig.build_duration.count == 1 and fig.build_duration.sum == 600.0
    installed = ev(Type.INSTALLED, 12, timecode="20261207:095900:000000")
    rejected = Event(Type.REJECTED, "", "q", "2", timestamp=T0 + datetime.timedelta(minutes=13), extra={"error": "x"})
    fig.update(newest_first(*first[1:], installed, rejected))  # PACKAGING left the queue meanwhile: still counted once
    assert fig.by_type == {"PACKAGING": 1, "BUILDING": 1, "BUILT": 1, "INSTALLED": 1, "REJECTED": 1}
    # PACKAGING gone from the queue: its time was remembered when it was counted
    assert fig.upload_duration["installed"].count == 1 and fig.upload_duration["installed"].sum == 12 * 60.0
    fams = parse(metrics.render(fig.families()))
    assert sample(fams, "mini_buildd_events_total", type="REJECTED") == 1
    assert sample(fams, "mini_buildd_events_total", type="MIGRATED") == 0
    assert sample(fams, "mini_buildd_builds_total", outcome="successful") == 1
    assert sample(fams, "mini_buildd_build_duration_seconds_bucket", le="600.0") == 1
    assert sample(fams, "mini_buildd_build_duration_seconds_bucket", le="300.0") == 0
    assert sample(fams, "mini_buildd_upload_duration_seconds_count", outcome="installed") == 1
    assert sample(fams, "mini_buildd_upload_duration_seconds_count", outcome="failed") == 0


def test_event_figures_follow_a_hub(tmp_path):
    """Queued events are counted when following starts, then every logged event once."""
    hub = events.Events(tmp_path / "events", queue_size=2)
    packaging = hub.log(ev(Type.PACKAGING, 0, timecode="20261207:095000:000000"))
    fig = metrics.EventFigures().follow(hub)
    assert fig.following and fig.by_type == {"PACKAGING": 1}
    fig.observe(packaging)  # queued when following started and handed to the listener too (a race): counted once
    fig.follow(hub)  # once per hub
    assert fig.by_type == {"PACKAGING": 1}
    for minutes in range(1, 6):  # more events than the queue holds, no update in between
        hub.log(Event(Type.REJECTED, "", "q", str(minutes), timestamp=T0 + datetime.timedelta(minutes=minutes)))
    hub.log(ev(Type.INSTALLED, 7, timecode="20261207:095000:000000"))
    assert fig.by_type == {"PACKAGING": 1, "REJECTED": 5, "INSTALLED": 1}
    assert fig.upload_duration["installed"].sum == 7 * 60.0  # from PACKAGING (10:00), not the arrival (09:50)


class _Hub:
    """A hub that queues events but calls its listeners only when told (the moment in between)."""

    def __init__(self):
        self.events, self.listeners = [], []

    def add_listener(self, listener):
        self.listeners.append(listener)

    def queue(self):
        return list(reversed(self.events))


def test_event_figures_queued_before_listeners_run():
    """A scrape between the hub queueing an event and calling its listeners counts it; the listener then does not."""
    hub = _Hub()
    fig = metrics.EventFigures().follow(hub)
    hub.events.append(ev(Type.REJECTED, 1))
    fig.follow(hub).update(hub.queue())   # what each collection does
    assert fig.by_type == {"REJECTED": 1} and len(hub.listeners) == 1
    hub.listeners[0](hub.events[0])
    hub.listeners[0](ev(Type.BUILDING, 2))
    assert fig.by_type == {"REJECTED": 1, "BUILDING": 1}
    fig.update(hub.queue())
    assert fig.by_type == {"REJECTED": 1, "BUILDING": 1}


def test_event_figures_pairs_and_outcomes():
    fig = metrics.EventFigures()
    fig.update(newest_first(
        ev(Type.PACKAGING, 0, key="a/1/t"), ev(Type.FAILED, 5, key="a/1/t"),
        ev(Type.BUILT, 3, key="b/1/t", sbuild_status="failed", sbuild_build_time="42"),  # no BUILDING: sbuild's time
        ev(Type.BUILT, 4, key="c/1/t", sbuild_status="successful", canceled_by="admin"),
        ev(Type.BUILT, 4, key="d/1/t", internal_error="boom"),
        ev(Type.BUILT, 4, key="e/1/t", sbuild_status="Given Back")))
    assert fig.builds == {"failed": 1, "canceled": 1, "internal_error": 1, "given_back": 1}
    assert fig.build_duration.count == 1 and fig.build_duration.sum == 42.0
    assert fig.upload_duration["failed"].sum == 300.0 and fig.upload_duration["installed"].count == 0


def test_ongoing_timeline():
    points = metrics.ongoing_timeline(newest_first(
        ev(Type.PACKAGING, 0), ev(Type.BUILDING, 1), ev(Type.BUILT, 5), ev(Type.INSTALLED, 6),
        Event(Type.REJECTED, "", "q", "2", timestamp=T0)))
    assert [(p[1], p[2]) for p in points] == [(1, 0), (1, 1), (1, 0), (0, 0)]


# ------------------------------------------------------------------------------------------------ plots
def svg_ok(text):
    doc = xml.dom.minidom.parseString(text.encode("utf-8"))
    assert doc.documentElement.tagName == "svg"
    assert "<script" not in text and "on" + "load" not in text
    return doc


def test_plots_are_svg():
    hist = metrics.Histogram(metrics.BUILD_BUCKETS)
    assert "No builds known yet" in metrics_plots.histogram_svg(hist)
    for v in (10, 100, 100, 50000):
        hist.observe(v)
    doc = svg_ok(metrics_plots.histogram_svg(hist))
    assert len([r for r in doc.getElementsByTagName("rect") if r.getAttribute("class") == "bar"]) == len(hist.counts)
    now = T0 + datetime.timedelta(hours=1)
    assert "Nothing was queued" in metrics_plots.timeline_svg([], now)
    points = metrics.ongoing_timeline(newest_first(ev(Type.PACKAGING, 0), ev(Type.BUILDING, 1), ev(Type.BUILT, 5)))
    doc = svg_ok(metrics_plots.timeline_svg(points, now))
    assert {p.getAttribute("class") for p in doc.getElementsByTagName("path")} == {"line-packaging", "line-building"}


def test_duration_label():
    assert [metrics_plots.duration_label(s) for s in (30, 60, 300, 7200, 5400 * 3)] == ["30s", "1m", "5m", "2h", "4h30m"]


# ------------------------------------------------------------------------------------------------ readiness, collection
class _Engine:
    running = True
    builder = None
    packager = None


@pytest.fixture
def test_repository(bookworm_test_repository):  # pylint: disable=invalid-name
    """Repository 'test' marked active (database only)."""
    models.Repository.objects.filter(pk=bookworm_test_repository.pk).update(status=models.Repository.STATUS_ACTIVE)
    return bookworm_test_repository


def test_readiness(test_repository, monkeypatch):  # pylint: disable=redefined-outer-name
    monkeypatch.setattr(services, "engine", None)
    ready, reasons = metrics.readiness()
    assert not ready
    assert reasons[0].startswith("engine: not running")
    assert "chroot bookworm:amd64: missing (needed by repository test)" in reasons
    monkeypatch.setattr(services, "engine", _Engine())
    assert metrics.readiness() == (False, ["chroot bookworm:amd64: missing (needed by repository test)"])
    # A chroot an administrator deactivated does not count itself, but the repository needing it is not served.
    chroot = models.DirChroot.objects.create(source=test_repository.distributions.get().base_source,
                                             architecture=models.Architecture.objects.get(name="amd64"))
    models.Chroot.objects.filter(pk=chroot.pk).update(status=models.Chroot.STATUS_PREPARED)
    assert metrics.readiness() == (False, ["chroot bookworm:amd64: not active (Prepared (-)) (needed by repository test)"])
    models.Chroot.objects.filter(pk=chroot.pk).update(status=models.Chroot.STATUS_ACTIVE)
    assert metrics.readiness() == (True, [])
    models.Chroot.objects.filter(pk=chroot.pk).update(last_checked=models.Chroot.CHECK_FAILED)
    assert metrics.readiness() == (False, ["chroot bookworm:amd64: Active (x)"])
    chroot.delete()
    # A repository an administrator deactivated does not count, nor do the chroots only it needs.
    models.Repository.objects.filter(pk=test_repository.pk).update(status=models.Repository.STATUS_PREPARED)
    assert metrics.readiness() == (True, [])
    # One waiting for reactivation counts, and is not ready.
    models.Repository.objects.filter(pk=test_repository.pk).update(last_checked=models.Repository.CHECK_REACTIVATE)
    ready, reasons = metrics.readiness()
    assert not ready and reasons[0].startswith("repository test: Prepared (A)"), reasons


def test_collect_without_daemon_parses(test_repository, monkeypatch):  # pylint: disable=redefined-outer-name,unused-argument
    monkeypatch.setattr(services, "engine", None)
    monkeypatch.setattr(services, "events", events.Events(metrics.config.paths.events))
    metrics.CACHE.clear()
    fams = parse(metrics.text())
    assert sample(fams, "mini_buildd_engine_running") == 0
    assert sample(fams, "mini_buildd_repository_active", repository="test") == 1
    assert sample(fams, "mini_buildd_repository_size_bytes", repository="test") == 0  # never prepared: no files
    assert sample(fams, "mini_buildd_repository_source_packages", repository="test", distribution="bookworm-test-unstable") == 0
    assert all(name.startswith("mini_buildd_") for name in fams)
    metrics.CACHE.clear()


# ------------------------------------------------------------------------------------------------ views
@pytest.fixture
def client(db, monkeypatch, tmp_path):  # pylint: disable=unused-argument
    """Django's test client (its Host allowed), no engine, a fresh hub."""
    from django.conf import settings as django_settings  # pylint: disable=import-outside-toplevel
    from django.test import Client, override_settings  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(services, "engine", None)
    monkeypatch.setattr(services, "events", events.Events(tmp_path / "events"))
    with override_settings(ALLOWED_HOSTS=[*django_settings.ALLOWED_HOSTS, "testserver"]):
        yield Client()


def test_views_access_rule(client):  # pylint: disable=redefined-outer-name
    from django.contrib.auth.models import User  # pylint: disable=import-outside-toplevel
    assert client.get("/healthz").content == b"ok\n"
    r = client.get("/metrics")
    assert r.status_code == 200 and r["Content-Type"] == metrics.CONTENT_TYPE and r.content.endswith(b"# EOF\n")
    models.Daemon.objects.filter(pk=models.Daemon.get().pk).update(metrics_access="staff")
    r = client.get("/metrics")
    assert r.status_code == 401 and r["WWW-Authenticate"].startswith("Bearer")
    User.objects.create_user("plain", password="plain-Secret-1")
    User.objects.create_user("boss", password="boss-Secret-1", is_staff=True)
    User.objects.create_user("gone", password="gone-Secret-1", is_staff=True, is_active=False)
    client.force_login(User.objects.get(username="plain"))
    assert client.get("/metrics").status_code == 403
    client.force_login(User.objects.get(username="boss"))
    assert parse(client.get("/metrics").content.decode())["mini_buildd_engine_running"].samples[0].value == 0
    client.force_login(User.objects.get(username="gone"))  # an inactive staff user is no staff user
    assert client.get("/metrics").status_code in (401, 403)
    client.logout()
    assert client.get("/metrics").status_code == 401
    r = client.get("/readyz")  # no engine here
    assert r.status_code == 503 and r.json()["reasons"][0].startswith("engine: not running")
    for name in ("queue", "build-durations"):
        r = client.get(f"/mini_buildd/plots/{name}.svg")
        assert r.status_code == 200 and r["Content-Type"] == "image/svg+xml"
        svg_ok(r.content.decode())


def test_metrics_access_change_keeps_the_daemon_active(db):  # pylint: disable=unused-argument
    """Who may read /metrics is read per request: changing it (admin form) does not deactivate the Daemon,
    as a change of a setting the engine uses does."""
    models.Daemon.get()
    models.Daemon.objects.filter(pk=1).update(status=models.Daemon.STATUS_ACTIVE, last_checked=models.Daemon.CHECK_NONE)
    daemon = models.Daemon.get()
    daemon.metrics_access = "staff"
    daemon.save()
    daemon = models.Daemon.get()
    assert daemon.metrics_access == "staff" and daemon.mbd_is_active() and not daemon.mbd_is_changed()
    daemon.event_queue_size += 1
    daemon.save()
    assert models.Daemon.get().mbd_is_changed()
