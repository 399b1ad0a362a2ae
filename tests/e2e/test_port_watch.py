"""The watcher for ported packages (issue #16), through the real daemon, sbuild and reprepro: a
second repository of the instance, ``origin``, plays the origin archive ("Debian").

- ``mbd-watched`` 1 is installed in origin and ported to ``test`` (INSTALLED there);
- version 2 installed in origin makes the watcher log ``PORT_OUTDATED`` for the port in test (once),
  mailed to the notify list, and listed on the package page;
- with ``auto_update_ports`` on repository test, the hourly ``watch_ports`` job ports version 2
  and the new port is INSTALLED in test;
- a port whose binary depends on a package only the origin has is built but not installed: FAILED,
  naming the missing relation (the installability check of ports, as for migrations).
"""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import time

import pytest
import requests

from tests.helpers.instance import NOTIFY_ADDRESS, admin_api, make_repository
from tests.helpers.packages import now_iso, wait_event, wait_for
from tests.helpers.uploads import dput_upload, reprepro_ls as ls

NAME = "mbd-watched"
ORIGIN = "bookworm-origin-unstable"
TARGET = "bookworm-test-unstable"


@pytest.fixture(scope="module")
def origin(instance):
    """Repository ``origin`` (Default layout, anonymous uploads) for bookworm."""
    return make_repository(instance, "origin")


def _installed(instance, name, version, started, distribution):
    event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), name, version, after=started, timeout=900)
    assert event["type"] == "INSTALLED" and event["distribution"] == distribution, event
    return event


def _wait_mail(instance, subject_part, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for _sender, rcpts, message in list(instance.smtp.mails):
            if subject_part in message["Subject"] and NOTIFY_ADDRESS in rcpts:
                return message
        time.sleep(0.5)
    raise AssertionError(f"no mail with {subject_part!r}: {[m[2]['Subject'] for m in instance.smtp.mails]}")


def test_port_outdated_then_updated(instance, origin, tmp_path):  # pylint: disable=unused-argument
    v1, v2 = "1.0~origin12+1", "2.0~origin12+1"
    started = now_iso()
    dput_upload(instance, tmp_path / "v1", NAME, v1, dist=ORIGIN)
    _installed(instance, NAME, v1, started, ORIGIN)
    started = now_iso()
    [port] = admin_api(instance, "port", source=NAME, from_distribution=ORIGIN, to_distributions=TARGET)
    assert port["origin_version"] == v1, port
    _installed(instance, NAME, port["version"], started, TARGET)

    # The origin moves on: one PORT_OUTDATED for the port in test, mailed, on the package page.
    started = now_iso()
    dput_upload(instance, tmp_path / "v2", NAME, v2, dist=ORIGIN)
    _installed(instance, NAME, v2, started, ORIGIN)
    event = wait_for(instance.url, lambda e: e["type"] == "PORT_OUTDATED" and e["source"] == NAME, after=started, timeout=120)
    assert event["distribution"] == TARGET and event["version"] == v2, event
    assert event["extra"]["from"] == ORIGIN and event["extra"]["ported_version"] == v1, event
    _wait_mail(instance, f"PORT_OUTDATED: {NAME} {v2} ({TARGET})")
    page = requests.get(f"{instance.url}/mini_buildd/packages/{NAME}/", timeout=60).text
    assert f"{TARGET}: ported from {ORIGIN} {v1}, the origin has {v2} now" in page
    assert admin_api(instance, "cronjob", id="watch_ports") == {"watch_ports (HOURLY)": True}
    job_log = (instance.home / "var" / "crontab" / "HOURLY_watch_ports.log").read_text(encoding="utf-8").splitlines()
    assert "outdated 0, ported 0" in job_log[-1], job_log  # told once: no second event
    assert ls(instance, NAME)[TARGET] == port["version"]

    # With auto_update_ports the watcher ports the new version.
    instance.django("models.Repository.objects.filter(identity='test').update(auto_update_ports=True)")
    try:
        started = now_iso()
        assert admin_api(instance, "cronjob", id="watch_ports") == {"watch_ports (HOURLY)": True}
        event = wait_for(instance.url, lambda e: e["type"] == "INSTALLED" and e["source"] == NAME and e["distribution"] == TARGET,
                         after=started, timeout=900)
        assert event["version"].startswith("2.0~") and event["version"] != port["version"], event  # (a port of 2.0~origin12+1)
        assert ls(instance, NAME)[TARGET] == event["version"]
    finally:
        instance.django("models.Repository.objects.filter(identity='test').update(auto_update_ports=False)")
    page = requests.get(f"{instance.url}/mini_buildd/packages/{NAME}/", timeout=60).text
    assert "Outdated ports" not in page


def test_port_that_would_not_be_installable_fails(instance, origin, tmp_path):  # pylint: disable=unused-argument
    lib, app, version = "mbd-origin-only", "mbd-needs-origin", "1.0~origin12+1"
    started = now_iso()
    dput_upload(instance, tmp_path / "lib", lib, version, dist=ORIGIN)
    dput_upload(instance, tmp_path / "app", app, version, dist=ORIGIN, depends=lib)
    _installed(instance, lib, version, started, ORIGIN)
    _installed(instance, app, version, started, ORIGIN)
    started = now_iso()
    [port] = admin_api(instance, "port", source=app, from_distribution=ORIGIN, to_distributions=TARGET)
    event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), app, port["version"], after=started, timeout=900)
    assert event["type"] == "FAILED", event
    detail = event["extra"]["error"]["detail"]
    assert f"Installing this port would leave packages of {TARGET} that can not be installed" in detail, detail
    assert f"depends on {lib}, which is missing" in detail, detail
    assert TARGET not in ls(instance, app)
