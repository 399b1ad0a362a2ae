"""Upload -> build -> install with the real tools: dput over FTP, sbuild in the shared chroot,
reprepro, events over HTTP."""

import subprocess

import requests

from mini_buildd import gnupg

from tests.e2e.test_bad_uploads import _expect_rejected, _plain, _pkg
from tests.helpers.packages import make_source_package, dput, wait_event


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


def test_version_not_higher_than_installed(instance, tmp_path):
    """Needs an installed version: uses the package test_upload_install installed (1.0~test12+1)."""
    c = _pkg(tmp_path, "mbd-e2e-hello", "1.0~test12+1", "bookworm-test-unstable")
    _expect_rejected(instance, _plain(instance, c), r"(?i)already installed|lower")
    c = _pkg(tmp_path / "lower", "mbd-e2e-hello", "0.9~test12+1", "bookworm-test-unstable")
    _expect_rejected(instance, _plain(instance, c), r"(?i)lower")
