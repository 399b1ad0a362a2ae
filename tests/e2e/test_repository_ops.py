"""Repository operations through the HTTP API with the real reprepro, parallel builds, and a
daemon killed with SIGKILL during a build. (Starts from mbd-e2e-hello 1.0~test12+1 in unstable:
the ``hello`` fixture.)"""

import signal
import subprocess
import time

from mini_buildd.tools import schroot
from tests.helpers.instance import admin_api as api
from tests.helpers.packages import write_dput_cf, dput, wait_event, wait_for, now_iso
from tests.helpers.uploads import dput_upload as upload, reprepro_ls as ls


def test_higher_upload_moves_older_to_rollback0(instance, hello, tmp_path):  # pylint: disable=unused-argument
    upload(instance, tmp_path, "mbd-e2e-hello", "1.0~test12+2")
    event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), "mbd-e2e-hello", "1.0~test12+2")
    assert event["type"] == "INSTALLED", event["extra"].get("error")
    listing = ls(instance, "mbd-e2e-hello")
    assert listing["bookworm-test-unstable"] == "1.0~test12+2"
    assert listing["bookworm-test-unstable-rollback0"] == "1.0~test12+1"


def test_migrate_remove_and_restore(instance, hello):  # pylint: disable=unused-argument
    api(instance, "migrate", source="mbd-e2e-hello", distribution="bookworm-test-unstable")
    assert ls(instance, "mbd-e2e-hello")["bookworm-test-testing"] == "1.0~test12+2"
    api(instance, "migrate", source="mbd-e2e-hello", distribution="bookworm-test-testing")
    assert ls(instance, "mbd-e2e-hello")["bookworm-test-stable"] == "1.0~test12+2"
    # Other packages (the keyring package of test_keyring_apt), and the first version of this one
    # (the hello_in_stable fixture), may have migrated to stable before: wait for this migration.
    wait_for(instance.url, lambda e: e["type"] == "MIGRATED" and e["source"] == "mbd-e2e-hello"
             and e["version"] == "1.0~test12+2" and e["distribution"] == "bookworm-test-stable")

    api(instance, "remove", source="mbd-e2e-hello", distribution="bookworm-test-stable")
    listing = ls(instance, "mbd-e2e-hello")
    assert "bookworm-test-stable" not in listing
    assert listing["bookworm-test-stable-rollback0"] == "1.0~test12+2"

    api(instance, "migrate", source="mbd-e2e-hello", distribution="bookworm-test-stable-rollback0")
    assert ls(instance, "mbd-e2e-hello")["bookworm-test-stable"] == "1.0~test12+2"

    shown = api(instance, "show", source="mbd-e2e-hello")["test"]
    assert shown["bookworm-test-unstable"]["is_migrated"] is True
    assert shown["bookworm-test-unstable"]["rollbacks"]["bookworm-test-unstable-rollback0"]["version"] == "1.0~test12+1"
    r = instance.daemon.session().get(f"{instance.url}/mini_buildd/api/migrate/",
                                      params={"source": "mbd-e2e-hello", "distribution": "bookworm-test-testing"}, timeout=30)
    assert r.status_code == 401


def test_two_uploads_build_in_parallel(instance, tmp_path):
    started = now_iso()
    upload(instance, tmp_path / "a", "mbd-e2e-para-a", "1.0~test12+1")
    upload(instance, tmp_path / "b", "mbd-e2e-para-b", "1.0~test12+1")
    for name in ("mbd-e2e-para-a", "mbd-e2e-para-b"):
        event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), name, "1.0~test12+1", after=started)
        assert event["type"] == "INSTALLED", event["extra"].get("error")
    events = []
    wait_for(instance.url, lambda e: events.append(e) or (e["type"] == "INSTALLED" and e["source"] == "mbd-e2e-para-b"),
             after=started)
    order = [(e["type"], e["source"]) for e in events if e["type"] in ("BUILDING", "BUILT")]
    first_built = next(i for i, x in enumerate(order) if x[0] == "BUILT")
    building_before = {src for typ, src in order[:first_built] if typ == "BUILDING"}
    assert building_before == {"mbd-e2e-para-a", "mbd-e2e-para-b"}, order


def test_sigkill_during_build_then_retry(instance, tmp_path):
    started = now_iso()
    c = upload(instance, tmp_path, "mbd-e2e-killed", "1.0~test12+1")
    wait_for(instance.url, lambda e: e["type"] == "BUILDING" and e["source"] == "mbd-e2e-killed", after=started)
    time.sleep(3)
    instance.restart_daemon(sig=signal.SIGKILL)  # (same arguments: later modules need its --smtp)
    time.sleep(3)  # engine start: orphaned builds killed, stale sessions ended
    basedir = str(instance.home / "repositories" / "test")
    for cmd in ("check", "checkpool"):
        proc = subprocess.run(["reprepro", "--basedir", basedir, cmd], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    for _ in range(60):  # the engine starts in the background
        if not [s for s in schroot.list_sessions() if "mini-buildd-bookworm-amd64" in s]:
            break
        time.sleep(0.5)
    assert not [s for s in schroot.list_sessions() if "mini-buildd-bookworm-amd64" in s]
    started = now_iso()
    cf = write_dput_cf(tmp_path / "dput.cf", "e2e", f"127.0.0.1:{instance.ftp_port}")
    proc = dput(cf, "e2e", c)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), "mbd-e2e-killed", "1.0~test12+1", after=started)
    assert event["type"] == "INSTALLED", event["extra"].get("error")


def test_timed_snapshots_cron_job(instance):
    """The crontab's ``snapshots`` jobs (upstream's ids, one per type; the bare name runs them all)
    take the due weekly/monthly/yearly snapshots of the stable suite only, and a second run right
    after takes none."""
    all_types = {"snapshots (WEEKLY)": True, "snapshots (MONTHLY)": True, "snapshots (YEARLY)": True}
    assert api(instance, "cronjob", id="snapshots") == all_types
    stable = api(instance, "snapshot_ls", distribution="bookworm-test-stable")
    assert sorted(n.split("_")[0] for n in stable if "_" in n) == ["MONTHLY", "WEEKLY", "YEARLY"], stable
    assert not [n for n in api(instance, "snapshot_ls", distribution="bookworm-test-unstable") if n.startswith("WEEKLY_")]
    snap_dir = instance.home / "repositories" / "test" / "dists" / "bookworm-test-stable" / "snapshots"
    weekly = next(n for n in stable if n.startswith("WEEKLY_"))
    assert (snap_dir / weekly / "InRelease").is_file()
    assert api(instance, "cronjob", id="snapshots (WEEKLY)") == {"snapshots (WEEKLY)": True}
    assert api(instance, "cronjob", id="snapshots") == all_types
    assert api(instance, "snapshot_ls", distribution="bookworm-test-stable") == stable
