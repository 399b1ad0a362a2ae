"""A snapshot of every change (issue #16), through the real daemon, reprepro and apt:

- three installs of ``mbd-snap`` (1, 2, 3) into unstable leave three snapshots named by their time;
- apt in a clean tree whose only source is the first snapshot (verified with the instance key)
  installs version 1 while the live distribution has 3;
- ``snapshot_diff`` (and the distribution page) lists the change from the first to the third;
- a retention rule "keep 2" on the suite, applied by the ``prune_snapshots`` cron job, prunes the
  older change snapshots and keeps every pool file something still uses (the kept snapshots, the
  rollback distributions).
"""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import time

import requests

from mini_buildd.archive import change_snapshots
from tests.helpers.clean_chroot import clean_chroot, in_chroot  # noqa: F401  pylint: disable=unused-import
from tests.helpers.instance import admin_api
from tests.helpers.packages import now_iso, wait_event
from tests.helpers.uploads import dput_upload

NAME = "mbd-snap"
UNSTABLE = "bookworm-test-unstable"
VERSIONS = ["1.0~test12+1", "2.0~test12+1", "3.0~test12+1"]


def _change_snapshots(instance):
    return change_snapshots.change_snapshots(requests.get(f"{instance.url}/mini_buildd/api/snapshot_ls/", params={
        "distribution": UNSTABLE, "output": "json"}, timeout=30).json())


def _install(instance, tmp_path, version):
    """Upload and wait for INSTALLED and the change snapshot that follows it; the snapshot's name."""
    before = set(_change_snapshots(instance))
    started = now_iso()
    dput_upload(instance, tmp_path / version, NAME, version)
    event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), NAME, version, after=started, timeout=900)
    assert event["type"] == "INSTALLED", event["extra"].get("error")
    for _ in range(120):
        new = [n for n in _change_snapshots(instance) if n not in before]
        if new:
            assert len(new) == 1, new
            return new[0]
        time.sleep(0.5)
    raise AssertionError(f"no change snapshot after the install of {version}")


def _pool(instance, version):
    return list((instance.home / "repositories" / "test" / "pool").rglob(f"{NAME}_{version}*"))


def test_every_install_is_a_snapshot_apt_can_use(instance, tmp_path, clean_chroot):  # noqa: F811
    snaps = [_install(instance, tmp_path, v) for v in VERSIONS]
    assert snaps == sorted(snaps, key=change_snapshots.stamp), snaps

    # apt, with the first snapshot as its only source, installs version 1 (the live suite has 3).
    root = clean_chroot
    (root / "etc" / "apt" / "sources.list").write_text("")
    for p in (root / "etc" / "apt" / "sources.list.d").glob("*"):
        p.unlink()
    key = requests.get(f"{instance.url}/mini_buildd/api/pub_key/", params={"output": "json"}, timeout=30).json()
    (root / "etc" / "apt" / "trusted.gpg.d" / "mini-buildd-test.asc").write_text(key)
    lines = admin_api(instance, "sources_list", codenames="bookworm", repositories="test", suites="unstable", snapshot=snaps[0])
    (root / "etc" / "apt" / "sources.list.d" / "snapshot.list").write_text(lines if isinstance(lines, str) else "\n".join(lines))
    update = in_chroot(root, "apt-get", "update")
    assert update.returncode == 0 and "NO_PUBKEY" not in update.stdout + update.stderr, update.stdout + update.stderr
    install = in_chroot(root, "apt-get", "install", "--yes", NAME)
    assert install.returncode == 0, install.stdout + install.stderr
    assert in_chroot(root, "dpkg-query", "-W", "-f", "${Version}", NAME).stdout == VERSIONS[0]
    assert (root / "usr" / "share" / NAME / "hello.txt").read_text(encoding="utf-8").startswith(f"hello from {NAME} {VERSIONS[0]}")
    live = requests.get(f"{instance.url}/mini_buildd/api/ls/", params={"source": NAME, "output": "json"}, timeout=30).json()
    assert live["test"][UNSTABLE]["version"] == VERSIONS[2]

    # What changed from the first to the third, by the call and on the distribution page.
    diff = requests.get(f"{instance.url}/mini_buildd/api/snapshot_diff/", params={
        "distribution": UNSTABLE, "a": snaps[0], "b": snaps[2], "output": "json"}, timeout=30).json()
    assert diff["sources"]["changed"] == {NAME: [VERSIONS[0], VERSIONS[2]]}, diff
    assert diff["binaries"]["changed"][f"{NAME}/all"] == [VERSIONS[0], VERSIONS[2]], diff
    page = requests.get(f"{instance.url}/mini_buildd/repositories/test/dists/{UNSTABLE}/", params={"a": snaps[0], "b": snaps[2]},
                        timeout=30).text
    assert f"{VERSIONS[0]} → {VERSIONS[2]}" in page, page[-3000:]
    repositories = requests.get(f"{instance.url}/mini_buildd/repositories/", timeout=30).text
    assert f'href="/mini_buildd/repositories/test/dists/{UNSTABLE}/#snapshots" title="{snaps[2]}' in repositories
    bad = requests.get(f"{instance.url}/mini_buildd/api/snapshot_diff/", params={
        "distribution": UNSTABLE, "a": "20000101T000000Z", "output": "json"}, timeout=30)
    assert bad.status_code == 404, bad.text

    # Retention "keep 2" (no age rule): the cron job prunes the older ones; the pool keeps what is used.
    instance.django("models.SuiteOption.objects.filter(layout__repository__identity='test', suite__name='unstable')"
                    ".update(snapshot_keep_last=2, snapshot_keep_days=0)")
    try:
        assert admin_api(instance, "cronjob", id="prune_snapshots") == {"prune_snapshots (HOURLY)": True}
    finally:
        instance.django("models.SuiteOption.objects.filter(layout__repository__identity='test', suite__name='unstable')"
                        ".update(snapshot_keep_last=None, snapshot_keep_days=None)")
    assert _change_snapshots(instance) == snaps[1:]
    for version in VERSIONS:  # 1 and 2 in the rollback distributions, 2 and 3 in the kept snapshots
        assert _pool(instance, version), version
