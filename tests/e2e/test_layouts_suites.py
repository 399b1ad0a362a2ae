"""Suites, rollbacks and meta distributions through the real daemon, sbuild and reprepro (issue #15
"Layouts, suites, rollbacks" and "Meta-distributions").

- the hotfix suite of the Default layout takes an upload and migrates to stable, as upstream's does;
- a repository whose layout keeps one rollback per suite: a third upload to unstable leaves the
  second in ``-rollback0`` and drops the first; ``remove`` inside a rollback distribution removes
  the package from it (and nothing else);
- a layout with a meta distribution: an upload to the meta name lands in the distribution it
  stands for, and its events name the real distribution.

The repository ``rb`` (layout ``mbd-e2e-one-rollback``: unstable with one rollback) is made by a
fixture through the daemon's own models, on the shared instance's bookworm distribution and chroot.
"""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import pytest

from tests.helpers.instance import admin_api as api, make_repository
from tests.helpers.packages import now_iso, wait_event, wait_for
from tests.helpers.uploads import dput_upload as upload, reprepro_ls as ls

LAYOUT = "mbd-e2e-one-rollback"
META = "mbd-e2e-meta"


@pytest.fixture(scope="module")
def rb_repository(instance):
    """Repository ``rb``: one suite, unstable, with one rollback, and the meta name
    ``mbd-e2e-meta`` for its bookworm unstable."""
    return make_repository(instance, "rb", layout=LAYOUT, prelude=f"""
layout, _ = models.Layout.objects.get_or_create(name={LAYOUT!r}, defaults={{"meta_distributions": {{{META!r}: "bookworm-unstable"}}}})
models.SuiteOption.objects.get_or_create(layout=layout, suite=models.Suite.objects.get(name="unstable"), defaults={{"rollback": 1}})
""")


def _installed(instance, name, version, started, dist):
    event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), name, version, after=started, timeout=600)
    assert event["type"] == "INSTALLED", event["extra"].get("error")
    assert event["distribution"] == dist, event
    return event


def test_hotfix_upload_migrates_to_stable(instance, tmp_path):
    name, version = "mbd-e2e-hotfix", "1.0~test12+1"
    started = now_iso()
    upload(instance, tmp_path, name, version, dist="bookworm-test-hotfix")
    _installed(instance, name, version, started, "bookworm-test-hotfix")
    assert ls(instance, name) == {"bookworm-test-hotfix": version}
    api(instance, "migrate", source=name, distribution="bookworm-test-hotfix")
    assert ls(instance, name) == {"bookworm-test-hotfix": version, "bookworm-test-stable": version}
    wait_for(instance.url, lambda e: e["type"] == "MIGRATED" and e["source"] == name and e["distribution"] == "bookworm-test-stable",
             after=started)


def test_uploads_past_the_rollback_count_drop_the_oldest_and_remove_in_a_rollback(instance, rb_repository, tmp_path):
    name, dist = "mbd-e2e-rollback", f"bookworm-{rb_repository}-unstable"
    for n in (1, 2, 3):
        version = f"1.0~{rb_repository}12+{n}"
        started = now_iso()
        upload(instance, tmp_path / str(n), name, version, dist=dist)
        _installed(instance, name, version, started, dist)
    listing = ls(instance, name, repository=rb_repository)
    assert listing == {dist: f"1.0~{rb_repository}12+3", f"{dist}-rollback0": f"1.0~{rb_repository}12+2"}, listing
    # remove inside the rollback distribution: only that one changes
    api(instance, "remove", source=name, distribution=f"{dist}-rollback0")
    assert ls(instance, name, repository=rb_repository) == {dist: f"1.0~{rb_repository}12+3"}


def test_upload_to_a_meta_distribution(instance, rb_repository, tmp_path):
    name, version = "mbd-e2e-meta", f"1.0~{rb_repository}12+1"
    started = now_iso()
    upload(instance, tmp_path, name, version, dist=META)
    _installed(instance, name, version, started, f"bookworm-{rb_repository}-unstable")
    assert ls(instance, name, repository=rb_repository) == {f"bookworm-{rb_repository}-unstable": version}
