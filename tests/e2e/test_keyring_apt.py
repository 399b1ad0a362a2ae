"""Keyring and test packages through the API, then apt in a clean chroot (a copy of the
debootstrapped base, no trusted=yes) installs our keyring package and a built binary over HTTP
with signature verification (mbd-e2e-hello in stable: the ``hello_in_stable`` fixture)."""

import subprocess

import pytest

from tests.helpers.instance import admin_api as api
from tests.helpers.clean_chroot import clean_chroot, in_chroot  # noqa: F401  pylint: disable=unused-import


def test_keyring_packages(instance):
    result = api(instance, "keyring_packages")
    assert result, result
    for entry in result:
        assert "error" not in entry, entry
        assert entry["event"]["type"] == "INSTALLED", entry


def test_test_packages_with_check(instance):
    result = api(instance, "test_packages", with_check="true")
    outcome = {e["source"]: e["event"]["type"] for e in result}
    assert outcome == {"mbd-test-archall": "INSTALLED", "mbd-test-cpp": "INSTALLED", "mbd-test-ftbfs": "FAILED"}, result


@pytest.mark.usefixtures("hello_in_stable")
def test_apt_installs_keyring_and_binary_verified(instance, clean_chroot):  # pylint: disable=redefined-outer-name  # noqa: F811
    root = clean_chroot
    identity = api(instance, "status")["identity"]
    pub_key = api(instance, "pub_key")
    bootstrap = root / "bootstrap.gpg"
    subprocess.run(["gpg", "--batch", "--yes", "--dearmor", "-o", str(bootstrap)], input=pub_key.encode(), check=True)
    line = f"{instance.url}/repositories/test bookworm-test-stable main"
    sources = root / "etc" / "apt" / "sources.list"
    for p in (root / "etc" / "apt" / "sources.list.d").glob("*"):
        p.unlink()
    # 1: bootstrap trust with the instance key (verified, no trusted=yes), install the keyring package
    sources.write_text(f"deb [signed-by=/bootstrap.gpg] {line}\n")
    proc = in_chroot(root, "apt-get", "update")
    assert proc.returncode == 0 and "NO_PUBKEY" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    proc = in_chroot(root, "apt-get", "install", "--yes", f"{identity}-archive-keyring")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (root / "etc" / "apt" / "trusted.gpg.d" / f"{identity}-archive-keyring.gpg").is_file()
    # 2: only the keyring package's key now: update verifies, the built binary installs
    bootstrap.unlink()
    sources.write_text(f"deb {line}\n")
    proc = in_chroot(root, "apt-get", "update")
    assert proc.returncode == 0 and "NO_PUBKEY" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    proc = in_chroot(root, "apt-get", "install", "--yes", "mbd-e2e-hello")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (root / "usr" / "share" / "mbd-e2e-hello" / "hello.txt").read_text().startswith("hello from mbd-e2e-hello")
