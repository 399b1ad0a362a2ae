"""Monitoring (issue #17) against the real daemon of an instance without chroots, on 127.0.0.31:

- ``/metrics`` is OpenMetrics text that Debian's python3-prometheus-client parser accepts, with
  the exact Content-Type and ``# EOF``; an unsigned upload over FTP (REJECTED) raises
  ``mini_buildd_events_total{type="REJECTED"}`` by one and the FTP byte and file counters by what
  was sent;
- with ``Daemon.metrics_access = staff``, anonymous requests get 401, a logged-in user who is no
  staff 403, the admin's session and a staff-scoped API token of the admin the metrics (a
  read-scoped one 403);
- ``/healthz`` answers 200 ``ok``; ``/readyz`` answers 503 naming the missing chroot
  (``bookworm:amd64``, needed by repository ``test``), and 200 once the repository is deactivated
  (readiness counts only what is meant to be active);
- the home page shows the two plots as images of this site (no inline script) and they are SVG.
"""

import json
import xml.dom.minidom

import pytest
import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.helpers.daemon import Daemon, free_port, in_home, run_mbd, service_addresses
from tests.helpers.packages import make_source_package, now_iso, raw_ftp_upload, wait_for
from tests.helpers.setup_run import run_setup, WITHOUT_CHROOTS
from tests.helpers.uploads import files_of

HOST = "127.0.0.31"
#: The acceptance setup without its chroot.
SETUP = WITHOUT_CHROOTS
PASSWORD = "metrics-Secret-1"
USER, USER_PASSWORD = "watcher", "watcher-Secret-1"
CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    """A set-up instance (no chroot) with its daemon running, an admin and a user who is no staff."""
    base = tmp_path_factory.mktemp("metrics")
    home = base / "home"
    http_port, ftp_port = free_port(HOST), free_port(HOST)
    http_ep, ftp_ep, _url, _ftp = service_addresses(HOST, http_port, ftp_port)
    run_setup(home, *SETUP, "--ftp-endpoint", ftp_ep, http_endpoint=http_ep, hostname=HOST, timeout=600)
    password_file = base / "admin-password"
    password_file.write_text(PASSWORD + "\n")
    proc = run_mbd(home, "--set-admin-password-file", str(password_file))
    assert proc.returncode == 0, proc.stderr
    in_home(home, "from django.contrib.auth.models import User\n"
                  f"User.objects.create_user({USER!r}, password={USER_PASSWORD!r})\n", hostname=HOST)
    daemon = Daemon(home, host=HOST, port=http_port, endpoints=[http_ep])
    daemon.ftp_port = ftp_port
    daemon.start()
    yield daemon
    assert daemon.stop() == 0


def scrape(daemon, session=None):
    """``{(sample name, sorted labels): value}`` of ``/metrics`` (checked: status, type, ``# EOF``, parsing)."""
    r = (session or requests).get(f"{daemon.url}/metrics", timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == CONTENT_TYPE
    assert r.text.endswith("# EOF\n")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def set_daemon(daemon, **fields):
    in_home(daemon.home, f"models.Daemon.objects.filter(pk=1).update(**{fields!r})\n", hostname=HOST)


def test_healthz(instance):  # pylint: disable=redefined-outer-name
    r = requests.get(f"{instance.url}/healthz", timeout=60)
    assert (r.status_code, r.text, r.headers["Content-Type"].split(";")[0]) == (200, "ok\n", "text/plain")


def test_metrics_parse_and_follow_a_rejected_upload(instance, tmp_path):  # pylint: disable=redefined-outer-name
    before = scrape(instance)
    assert all(name.startswith("mini_buildd_") for name, _labels in before)
    assert before[("mini_buildd_engine_running", ())] == 1
    assert before[("mini_buildd_build_slots", ())] >= 1
    assert before[("mini_buildd_repository_active", (("repository", "test"),))] == 1
    assert before[("mini_buildd_repository_size_bytes", (("repository", "test"),))] > 0
    assert before[("mini_buildd_repository_source_packages",
                   (("distribution", "bookworm-test-unstable"), ("repository", "test")))] == 0
    assert ("mini_buildd_build_duration_seconds_bucket", (("le", "+Inf"),)) in before
    rejected = ("mini_buildd_events_total", (("type", "REJECTED"),))
    ftp_bytes, ftp_files = ("mini_buildd_ftp_received_bytes_total", ()), ("mini_buildd_ftp_received_files_total", ())

    changes = make_source_package(tmp_path, "mbd-metrics", "1.0", "bookworm-test-unstable")  # unsigned
    sent = files_of(changes) + [changes]
    started = now_iso()
    raw_ftp_upload(HOST, instance.ftp_port, sent)
    event = wait_for(instance.url, lambda e: e["extra"].get("changes", "").endswith(changes.name), after=started, timeout=120)
    assert event["type"] == "REJECTED", event

    after = scrape(instance)
    assert after[rejected] == before[rejected] + 1
    assert after[ftp_files] == before[ftp_files] + len(sent)
    assert after[ftp_bytes] == before[ftp_bytes] + sum(p.stat().st_size for p in sent)
    assert scrape(instance)[rejected] == after[rejected]  # counted once, however often scraped


def test_metrics_access_staff(instance):  # pylint: disable=redefined-outer-name
    set_daemon(instance, metrics_access="staff")
    try:
        r = requests.get(f"{instance.url}/metrics", timeout=60)
        assert r.status_code == 401 and "Bearer" in r.headers.get("WWW-Authenticate", ""), (r.status_code, r.headers)
        assert "mini_buildd_" not in r.text
        r = instance.session(USER, USER_PASSWORD).get(f"{instance.url}/metrics", timeout=60)
        assert r.status_code == 403 and "mini_buildd_" not in r.text, (r.status_code, r.text)
        admin = instance.session("admin", PASSWORD)
        assert scrape(instance, admin)[("mini_buildd_engine_running", ())] == 1
        # A monitoring system: an API token of a staff user, staff scope (a read-scoped one is no staff).
        for scope, status in (("staff", 200), ("read", 403)):
            r = admin.get(f"{instance.url}/mini_buildd/api/token_create/", params={"scope": scope, "name": "prometheus"}, timeout=60)
            assert r.status_code == 200, r.text
            r = requests.get(f"{instance.url}/metrics", headers={"Authorization": f"Bearer {r.json()['token']}"}, timeout=60)
            assert r.status_code == status and r.text.endswith("# EOF\n") == (status == 200), (scope, r.status_code, r.text)
    finally:
        set_daemon(instance, metrics_access="anonymous")
    scrape(instance)


def test_readyz(instance):  # pylint: disable=redefined-outer-name
    r = requests.get(f"{instance.url}/readyz", timeout=60)
    assert r.status_code == 503, r.text
    assert json.loads(r.text) == {"ready": False, "reasons": ["chroot bookworm:amd64: missing (needed by repository test)"]}
    in_home(instance.home, "models.Repository.objects.filter(identity='test').update(status=models.Repository.STATUS_PREPARED)\n",
            hostname=HOST)
    try:
        r = requests.get(f"{instance.url}/readyz", timeout=60)
        assert (r.status_code, json.loads(r.text)) == (200, {"ready": True, "reasons": []}), r.text
    finally:
        in_home(instance.home, "models.Repository.objects.filter(identity='test').update(status=models.Repository.STATUS_ACTIVE)\n",
                hostname=HOST)
    assert requests.get(f"{instance.url}/readyz", timeout=60).status_code == 503


def test_home_page_plots(instance):  # pylint: disable=redefined-outer-name
    r = requests.get(f"{instance.url}/mini_buildd/", timeout=60)
    assert r.status_code == 200
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    for name in ("queue", "build-durations"):
        src = f"/mini_buildd/plots/{name}.svg"
        assert f'src="{src}"' in r.text
        svg = requests.get(instance.url + src, timeout=60)
        assert svg.status_code == 200 and svg.headers["Content-Type"] == "image/svg+xml"
        assert xml.dom.minidom.parseString(svg.content).documentElement.tagName == "svg"
        assert b"<script" not in svg.content
    # no build ever ran here (no chroot): the histogram is empty
    assert "No builds known yet" in requests.get(f"{instance.url}/mini_buildd/plots/build-durations.svg", timeout=60).text
