"""Upload -> build -> install with the real tools: dput over FTP, sbuild in the shared chroot,
reprepro, events over HTTP."""

import json
import subprocess
import time

import requests

from mini_buildd.tools import gnupg

from tests.e2e.test_bad_uploads import _expect_rejected, _plain, _pkg
from tests.helpers.instance import NOTIFY_ADDRESS
from tests.helpers.packages import make_source_package, dput, wait_event, write_dput_cf


def reprepro_ls(instance, source):
    out = subprocess.run(["reprepro", "--basedir", str(instance.home / "repositories" / "test"), "ls", source],
                         capture_output=True, text=True, check=True).stdout
    return {line.split("|")[2].strip(): line.split("|")[1].strip() for line in out.splitlines() if "|" in line}


def test_dput_upload_is_built_and_installed(instance, tmp_path):
    # A developer key signs the upload; dput is configured from the instance's dput_conf call.
    g = gnupg.Gnupg(tmp_path / "gnupg")
    fpr = g.gen_secret_key("Key-Type: EdDSA\nKey-Curve: ed25519\nKey-Usage: sign\nExpire-Date: 0", "dev", "dev@example.org")
    try:
        changes = make_source_package(tmp_path, "mbd-e2e-hello", "1.0~test12+1", "bookworm-test-unstable",
                                      gnupghome=tmp_path / "gnupg", key_id=fpr)
    finally:
        g.kill_agents()
    assert "BEGIN PGP SIGNATURE" in changes.read_text()
    dput_conf = requests.get(f"{instance.url}/mini_buildd/api/dput_conf/", timeout=10).json()
    cf = tmp_path / "dput.cf"
    cf.write_text(dput_conf)
    target = next(line.strip("[]") for line in dput_conf.splitlines() if line.startswith("[mini-buildd-"))
    proc = dput(cf, target, changes)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), "mbd-e2e-hello", "1.0~test12+1")
    assert event["type"] == "INSTALLED", event["extra"].get("error")
    assert event["distribution"] == "bookworm-test-unstable"
    assert event["extra"]["buildresults"]["amd64"]["sbuild_status"] == "successful"
    ls = reprepro_ls(instance, "mbd-e2e-hello")
    assert ls.get("bookworm-test-unstable") == "1.0~test12+1", ls
    r = requests.get(f"{instance.url}/repositories/test/dists/bookworm-test-unstable/main/binary-amd64/Packages", timeout=10)
    assert "Package: mbd-e2e-hello" in r.text
    # incoming is clean again
    assert not list((instance.home / "incoming").iterdir())
    # the instance's notify list got the INSTALLED mail, with the event attached
    mail = wait_for_mail(instance, "INSTALLED", "mbd-e2e-hello")
    sender, rcpts, msg = mail
    assert rcpts == [NOTIFY_ADDRESS] and sender.startswith("mini-buildd@")
    assert msg["Subject"].startswith("[mini-buildd-")
    attached = [json.loads(part.get_content()) for part in msg.iter_attachments()]
    assert [(a["type"], a["source"], a["version"]) for a in attached] == [("INSTALLED", "mbd-e2e-hello", "1.0~test12+1")]


def wait_for_mail(instance, etype, source, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for mail in list(instance.smtp.mails):
            if etype in mail[2]["Subject"] and source in mail[2]["Subject"]:
                return mail
        time.sleep(0.5)
    raise AssertionError(f"no {etype} mail for {source}: {[m[2]['Subject'] for m in instance.smtp.mails]}")


def test_version_not_higher_than_installed(instance, tmp_path):
    """Needs an installed version: uses the package test_upload_install installed (1.0~test12+1)."""
    c = _pkg(tmp_path, "mbd-e2e-hello", "1.0~test12+1", "bookworm-test-unstable")
    _expect_rejected(instance, _plain(instance, c), r"(?i)already installed|lower")
    c = _pkg(tmp_path / "lower", "mbd-e2e-hello", "0.9~test12+1", "bookworm-test-unstable")
    _expect_rejected(instance, _plain(instance, c), r"(?i)lower")


def test_auto_ports_after_install(instance, tmp_path):
    """``auto-ports`` runs after the install: a good target gets a port (built and installed
    there), a bad one is only reported in the INSTALLED event and does not fail the package."""
    options = ("MINI_BUILDD_OPTION: auto-ports=bookworm-test-experimental,bookworm-test-stable")
    changes = make_source_package(tmp_path, "mbd-e2e-autoport", "1.0~test12+1", "bookworm-test-unstable",
                                  changelog_extra=options)
    cf = write_dput_cf(tmp_path / "dput.cf", "plain", f"127.0.0.1:{instance.ftp_port}")
    proc = dput(cf, "plain", changes)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), "mbd-e2e-autoport", "1.0~test12+1")
    assert event["type"] == "INSTALLED", event["extra"].get("error")
    ports = event["extra"]["auto_ports"]
    assert sorted(ports) == ["bookworm-test-experimental", "bookworm-test-stable"]
    ok, version = ports["bookworm-test-experimental"]
    assert ok is True and version.startswith("1.0~test12+"), ports
    assert ports["bookworm-test-stable"][0] is False and "uploadable" in ports["bookworm-test-stable"][1], ports
    ported = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), "mbd-e2e-autoport", version)
    assert ported["type"] == "INSTALLED" and ported["distribution"] == "bookworm-test-experimental", ported
    assert reprepro_ls(instance, "mbd-e2e-autoport").get("bookworm-test-experimental") == version
