"""The gates of migrate and remove (issue #16), through the real daemon, sbuild, lintian, reprepro
and dose-distcheck against the real bookworm indices of the host's archive.

Installability:

- ``mbd-inst-app`` depends on ``mbd-inst-lib (>= 1.0~)``; both are built and INSTALLED in unstable.
  Migrating the app to testing first is refused (409) naming the missing relation, and testing is
  unchanged; after the library migrates, the app does;
- removing the library from testing (the app there depends on it) is refused the same way;
  ``force=True`` (ADMIN) removes it and the REMOVED event records what was overridden; a staff user
  may not force;
- the package page shows per distribution "installable" or the broken relation, as the reports
  renewed after each change say.

QA regressions: ``mbd-qagate`` 1 (clean) is in testing; 2 (its binary lacks the copyright file: a
lintian error, installed with ``lintian-mode=ignore``) is in unstable. With the repository's gate
on "refuse" its migration is refused (409) naming the new lintian error, and the package page
shows the regression; on "warn" (the default) it migrates, the answer and the MIGRATED event say so.
"""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import subprocess

import pytest
import requests

from tests.helpers.instance import ADMIN_PASSWORD, admin_api
from tests.helpers.packages import make_source_package, now_iso, wait_event, wait_for
from tests.helpers.uploads import dput_upload, ftp_upload, reprepro_ls as ls

LIB, APP = "mbd-inst-lib", "mbd-inst-app"
VERSION = "1.0~test12+1"
UNSTABLE, TESTING = "bookworm-test-unstable", "bookworm-test-testing"
STAFF, STAFF_PASSWORD = "inst-staff", "inst-Staff-pw1"


def _call(instance, call, user="admin", password=ADMIN_PASSWORD, **args):
    """(status, JSON body) of API ``call`` as ``user``, confirmed."""
    s = instance.daemon.session(user, password)
    r = s.get(f"{instance.url}/mini_buildd/api/{call}/", params={**args, "confirm": call, "output": "json"}, timeout=600)
    return r.status_code, r.json()


@pytest.fixture(scope="module")
def packages(instance, tmp_path_factory):
    """Library and app (depending on it) INSTALLED in unstable."""
    tmp = tmp_path_factory.mktemp("installability")
    started = now_iso()
    dput_upload(instance, tmp / "lib", LIB, VERSION)
    dput_upload(instance, tmp / "app", APP, VERSION, depends=f"{LIB} (>= 1.0~)")
    for name in (LIB, APP):
        event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), name, VERSION, after=started, timeout=900)
        assert event["type"] == "INSTALLED", event["extra"].get("error")
    instance.django("from django.contrib.auth.models import User\n"
                    f"u, _ = User.objects.get_or_create(username={STAFF!r})\n"
                    f"u.is_staff = True\nu.set_password({STAFF_PASSWORD!r})\nu.save()\n")
    return started


def _package_page(instance, source):
    r = requests.get(f"{instance.url}/mini_buildd/packages/{source}/", timeout=60)
    assert r.status_code == 200
    return r.text


def _installability_cell(page, diststr):
    row = page.split(f'data-distribution="{diststr}"', 1)[1].split("</tr>", 1)[0]
    return row.split('class="installability"', 1)[1].split("</td>", 1)[0]


def test_migrate_refused_until_the_dependency_is_there(instance, packages):  # pylint: disable=unused-argument
    assert ls(instance, APP) == {UNSTABLE: VERSION}
    code, problem = _call(instance, "migrate", source=APP, distribution=UNSTABLE)
    assert code == 409, problem
    assert f"{APP} {VERSION} depends on {LIB} (>= 1.0~), which is missing" in problem["detail"], problem
    assert ls(instance, APP) == {UNSTABLE: VERSION}
    admin_api(instance, "migrate", source=LIB, distribution=UNSTABLE)
    admin_api(instance, "migrate", source=APP, distribution=UNSTABLE)
    assert ls(instance, APP) == ls(instance, LIB) == {UNSTABLE: VERSION, TESTING: VERSION}
    cell = _installability_cell(_package_page(instance, APP), TESTING)
    assert 'data-state="installable"' in cell and "installable" in cell, cell


def test_remove_refused_while_another_package_needs_it_force_records(instance, packages):
    code, problem = _call(instance, "remove", source=LIB, distribution=TESTING)
    assert code == 409, problem
    assert f"{APP} {VERSION} depends on {LIB} (>= 1.0~), which is missing" in problem["detail"], problem
    assert ls(instance, LIB) == {UNSTABLE: VERSION, TESTING: VERSION}
    # Migrate's force is ADMIN's: a staff user is refused before anything is checked.
    code, problem = _call(instance, "migrate", user=STAFF, password=STAFF_PASSWORD, source=APP, distribution=TESTING, force=True)
    assert code == 403 and "needs ADMIN" in problem["detail"], problem
    started = now_iso()
    admin_api(instance, "remove", source=LIB, distribution=TESTING, force=True)
    assert ls(instance, LIB) == {UNSTABLE: VERSION, f"{TESTING}-rollback0": VERSION}
    event = wait_for(instance.url, lambda e: e["type"] == "REMOVED" and e["source"] == LIB, after=started)
    assert event["distribution"] == TESTING
    assert f"{APP} {VERSION} depends on {LIB} (>= 1.0~)" in event["extra"]["forced"], event
    # The app's page now says why it is not installable in testing (and that it is in unstable).
    page = _package_page(instance, APP)
    cell = _installability_cell(page, TESTING)
    assert 'data-state="broken"' in cell and f"depends on {LIB} (&gt;= 1.0~), which is missing" in cell, cell
    assert 'data-state="installable"' in _installability_cell(page, UNSTABLE)
    assert packages  # (the module's uploads)


QA = "mbd-qagate"


def _install(instance, tmp_path, version, lintian_error=False):
    started = now_iso()
    changes = make_source_package(tmp_path, QA, version, UNSTABLE, changelog_extra="MINI_BUILDD_OPTION: lintian-mode=ignore")
    if lintian_error:
        src = tmp_path / f"{QA}-{version.split('~', maxsplit=1)[0]}"
        (src / "debian" / "copyright").unlink()
        subprocess.run(["dpkg-buildpackage", "-S", "-d", "-us", "-uc", "-nc"], cwd=src, check=True, capture_output=True)
    ftp_upload(instance, changes)
    event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), QA, version, after=started, timeout=900)
    assert event["type"] == "INSTALLED", event["extra"].get("error")
    return event


def _set_gate(instance, mode):
    instance.django(f"models.Repository.objects.filter(identity='test').update(qa_regression_gate={mode})")


def test_qa_regression_refused_or_warned(instance, tmp_path):
    v1, v2 = "1.0~test12+1", "2.0~test12+1"
    _install(instance, tmp_path / "v1", v1)
    admin_api(instance, "migrate", source=QA, distribution=UNSTABLE)
    event = _install(instance, tmp_path / "v2", v2, lintian_error=True)
    assert f"E: {QA}: no-copyright-file" in event["extra"]["buildresults"]["amd64"]["lintian_tags"], event
    assert {d: ls(instance, QA).get(d) for d in (UNSTABLE, TESTING)} == {UNSTABLE: v2, TESTING: v1}
    try:
        _set_gate(instance, 2)  # refuse
        code, problem = _call(instance, "migrate", source=QA, distribution=UNSTABLE)
        assert code == 409, problem
        assert f"QA regression of {QA} {v2} against {v1} in {TESTING}" in problem["detail"], problem
        assert f"new lintian error: E: {QA}: no-copyright-file" in problem["detail"], problem
        assert {d: ls(instance, QA).get(d) for d in (UNSTABLE, TESTING)} == {UNSTABLE: v2, TESTING: v1}
        cell = _installability_cell(_package_page(instance, QA), UNSTABLE)
        assert f"QA regression against {TESTING}" in cell and "no-copyright-file" in cell, cell
    finally:
        _set_gate(instance, 1)  # warn (the default)
    started = now_iso()
    result = admin_api(instance, "migrate", source=QA, distribution=UNSTABLE)
    assert f"new lintian error: E: {QA}: no-copyright-file" in result["warnings"][0], result
    assert ls(instance, QA)[TESTING] == v2
    event = wait_for(instance.url, lambda e: e["type"] == "MIGRATED" and e["source"] == QA and e["version"] == v2, after=started)
    assert "no-copyright-file" in event["extra"]["qa_regression"], event
