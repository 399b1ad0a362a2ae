"""All-or-nothing repository changes across SIGKILL (#11 item 7), with the real daemon, FTP,
sbuild and reprepro: the daemon is started with ``MINI_BUILDD_FAULT=<point>``, kills itself at that
point of an install (or migrate), and is restarted without it (its start-up completes or rolls back
the change). Then ``reprepro check``/``checkpool`` are clean, the package is either INSTALLED (in
the pool and in the signed indices) or cleanly absent (nowhere, no pool file, FAILED event), and
the next upload installs.

Lean on builds: one chain of four uploads of one package covers three install points (roll
forward in the middle of the reprepro steps, roll forward of a committed change before its export,
and a kill before the journal exists) and the re-upload of the same version; a migrate point
needs no build.
"""

# pylint: disable=redefined-outer-name  # pytest passes each fixture as the parameter of its name

import json
import signal
import subprocess
import time

import pytest
import requests

from mini_buildd import faults
from tests.helpers.daemon import Daemon
from tests.helpers.instance import ADMIN_PASSWORD
from tests.helpers.packages import make_source_package, write_dput_cf, dput, wait_event, now_iso

NAME = "mbd-e2e-fault"
UNSTABLE, RB0, TESTING = "bookworm-test-unstable", "bookworm-test-unstable-rollback0", "bookworm-test-testing"


def restart(instance, monkeypatch, fault=None):
    """Stop the daemon (if it still runs) and start it again, with ``fault`` armed (or none)."""
    old = instance.daemon
    old.stop()
    if fault:
        monkeypatch.setenv(faults.ENV, fault)
    else:
        monkeypatch.delenv(faults.ENV, raising=False)
    instance.daemon = Daemon(instance.home, port=instance.http_port, endpoints=[instance.http_endpoint], extra_args=old.extra_args,
                             unpriv=instance.unpriv)
    instance.daemon.ftp_port = instance.ftp_port  # a start waits for the engine's FTP server too (unless it dies)
    try:
        instance.daemon.start()
    finally:
        monkeypatch.delenv(faults.ENV, raising=False)


@pytest.fixture
def daemon_restored(instance, monkeypatch):
    """Whatever happens: a normal daemon (no fault armed) runs after the test."""
    yield
    restart(instance, monkeypatch)


def basedir(instance):
    return instance.home / "repositories" / "test"


def ls(instance):
    out = subprocess.run(["reprepro", "--basedir", str(basedir(instance)), "ls", NAME], capture_output=True, text=True, check=True).stdout
    return {line.split("|")[2].strip(): line.split("|")[1].strip() for line in out.splitlines() if "|" in line}


def journal_dir(instance):
    return instance.home / "var" / "journal" / "test"


def assert_clean(instance):
    """No journal left (the engine start recovered it), reprepro check and checkpool clean."""
    for _ in range(120):
        if not journal_dir(instance).exists():
            break
        time.sleep(0.5)
    for cmd in ("check", "checkpool"):
        proc = subprocess.run(["reprepro", "--basedir", str(basedir(instance)), cmd], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not journal_dir(instance).exists() and not journal_dir(instance).with_name("test.new").exists(), "journal left"


def pool_files(instance, version):
    return sorted(p.name for p in (basedir(instance) / "pool").glob(f"*/*/{NAME}/{NAME}_{version}*"))


def indexed_version(instance, diststr):
    """Version of NAME in the published Sources index of ``diststr`` (or None)."""
    sources = (basedir(instance) / "dists" / diststr / "main" / "source" / "Sources").read_text()
    for stanza in sources.split("\n\n"):
        if f"Package: {NAME}\n" in stanza + "\n":
            return next(line.split(": ", 1)[1] for line in stanza.splitlines() if line.startswith("Version: "))
    return None


def journal_state(instance):
    """The state of the journal a kill left (None: no journal)."""
    plan = journal_dir(instance) / "plan.json"
    return json.loads(plan.read_text())["state"] if plan.exists() else None


def upload_and_die(instance, tmp_path, version):
    """Upload ``version``; the daemon (started with a fault armed) must kill itself."""
    c = make_source_package(tmp_path / version, NAME, version, UNSTABLE)
    cf = write_dput_cf(tmp_path / "dput.cf", "e2e", f"127.0.0.1:{instance.ftp_port}")
    proc = dput(cf, "e2e", c)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert instance.daemon.proc.wait(900) == -signal.SIGKILL, instance.daemon.output()[-3000:]
    assert "Fault injection: SIGKILL at" in instance.daemon.output()
    return c


def assert_installed(instance, version, started):
    """The package is INSTALLED in ``version`` and consistent: listed, indexed, in the pool."""
    event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), NAME, version, after=started, timeout=120)
    assert event["type"] == "INSTALLED", event["extra"].get("error")
    assert ls(instance)[UNSTABLE] == version
    assert indexed_version(instance, UNSTABLE) == version
    assert pool_files(instance, version)


def test_install_fault_points(instance, tmp_path, monkeypatch, daemon_restored):  # pylint: disable=unused-argument
    # 1: killed between includedsc and include (the source without its binaries): rolled forward
    restart(instance, monkeypatch, "install:after-includedsc")
    started = now_iso()
    upload_and_die(instance, tmp_path, "1.0~test12+1")
    assert journal_state(instance) == "started"
    assert (ls(instance)[UNSTABLE], indexed_version(instance, UNSTABLE)) == ("1.0~test12+1", None), "not a half install"
    restart(instance, monkeypatch, "install:before-export")
    assert_installed(instance, "1.0~test12+1", started)
    assert_clean(instance)

    # 2: killed after the commit, before the signed export: completed (exported) at start
    started = now_iso()
    upload_and_die(instance, tmp_path, "1.0~test12+2")
    assert journal_state(instance) == "committed"
    assert indexed_version(instance, UNSTABLE) == "1.0~test12+1"
    restart(instance, monkeypatch, "install:before-plan")
    assert_installed(instance, "1.0~test12+2", started)
    assert_clean(instance)
    assert ls(instance)[RB0] == "1.0~test12+1"
    assert indexed_version(instance, RB0) == "1.0~test12+1"

    # 3: killed before anything changed: cleanly absent, FAILED; the same version installs again
    started = now_iso()
    c = upload_and_die(instance, tmp_path, "1.0~test12+3")
    assert journal_state(instance) is None
    restart(instance, monkeypatch)
    event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), NAME, "1.0~test12+3", after=started, timeout=120)
    assert event["type"] == "FAILED"
    assert_clean(instance)
    assert ls(instance) == {UNSTABLE: "1.0~test12+2", RB0: "1.0~test12+1"}
    assert indexed_version(instance, UNSTABLE) == "1.0~test12+2"
    assert pool_files(instance, "1.0~test12+3") == []
    started = now_iso()
    proc = dput(tmp_path / "dput.cf", "e2e", c)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_installed(instance, "1.0~test12+3", started)
    assert ls(instance)[RB0] == "1.0~test12+2"
    assert_clean(instance)


def test_migrate_fault_point(instance, monkeypatch, daemon_restored):  # pylint: disable=unused-argument
    """Killed between the copy to testing and the export: completed at start (no build needed;
    runs after test_install_fault_points)."""
    version = ls(instance).get(UNSTABLE)
    if version is None:
        pytest.skip("needs the package of test_install_fault_points")
    restart(instance, monkeypatch, "migrate:after-copy")
    s = instance.daemon.session("admin", ADMIN_PASSWORD)
    with pytest.raises(requests.ConnectionError):
        s.get(f"{instance.url}/mini_buildd/api/migrate/", timeout=120,
              params={"source": NAME, "distribution": UNSTABLE, "confirm": "migrate", "output": "json"})
    assert instance.daemon.proc.wait(60) == -signal.SIGKILL
    assert journal_state(instance) == "started"
    assert indexed_version(instance, TESTING) != version
    restart(instance, monkeypatch)
    assert_clean(instance)
    assert ls(instance)[TESTING] == version
    assert indexed_version(instance, TESTING) == version
