"""The real daemon in a temporary home: HTTP (Django over twisted), login, admin, static
repository delivery with a signed InRelease, HTTPS, clean shut-down and start-up errors."""

# pytest idioms: fixtures are parameters named like them; Django and the code under test are imported after the
# test set-up.
# pylint: disable=redefined-outer-name,import-outside-toplevel

import os
import pathlib
import signal
import subprocess

import pytest
import requests

from tests.helpers.daemon import BOOKWORM_TEST_REPOSITORY, Daemon, in_home, run_mbd, free_port, processes_mentioning

ADMIN_PASSWORD = "s3cret-Pass"

SETUP_REPOSITORY = """
from mini_buildd.models.layouts import create_default_layouts
daemon = models.Daemon.get()
daemon.gnupg_template = "Key-Type: EdDSA\\nKey-Curve: ed25519\\nKey-Usage: sign\\nExpire-Date: 0"
daemon.identity = "mbdtest"
daemon.save()
daemon.mbd_prepare()
""" + BOOKWORM_TEST_REPOSITORY + """repo.mbd_check()
print(daemon.gnupg().pub_key())
"""


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    """A home with admin password and a prepared repository 'test'; yields (home, armored pub key)."""
    home = tmp_path_factory.mktemp("daemon") / "home"
    proc = run_mbd(home, "--set-admin-password", ADMIN_PASSWORD)
    assert proc.returncode == 0, proc.stderr
    pub_key = in_home(home, SETUP_REPOSITORY)
    yield home, pub_key
    # No helper process may outlive the daemon or the test set-up.
    assert not processes_mentioning(str(home / ".gnupg")), "gpg helper processes left behind"


@pytest.fixture(scope="module")
def daemon(instance):
    """The daemon running on the set-up instance home; stopped after."""
    home, _ = instance
    d = Daemon(home)
    d.start()
    yield d
    assert d.stop() == 0


def test_home_layout_and_secret_key(instance, daemon):  # pylint: disable=unused-argument
    home, _ = instance
    for d in ("incoming", "repositories", "etc/event-hooks", "var/events", "var/shared/builds", "var/chroots",
              "var/crontab", "var/log", "var/tmp", ".gnupg"):
        assert (home / d).is_dir(), d
    assert (home / "config.sqlite").is_file()
    assert (home / ".django_secret_key").stat().st_mode & 0o777 == 0o600


def test_root_is_html(daemon):
    r = requests.get(daemon.url + "/", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert "<!DOCTYPE html>" in r.text and "mbdtest" in r.text


def test_login_and_admin(daemon):
    anonymous = requests.get(daemon.url + "/admin/", timeout=10, allow_redirects=False)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous.headers["Location"]
    s = daemon.session("admin", ADMIN_PASSWORD)
    r = s.get(daemon.url + "/admin/", timeout=10)
    assert r.status_code == 200 and "mini-buildd administration" in r.text
    r = s.get(daemon.url + "/admin/mini_buildd/repository/", timeout=10)
    assert r.status_code == 200 and "Prepared" in r.text


def test_wrong_password_fails(daemon):
    with pytest.raises(AssertionError, match="login as admin failed"):
        daemon.session("admin", "wrong")


def test_static_assets_served_by_twisted(daemon):
    r = requests.get(daemon.url + "/static/admin/css/base.css", timeout=10)
    assert r.status_code == 200 and "text/css" in r.headers["Content-Type"]
    # twisted, not Django: no session/CSRF cookies, twisted's Server header
    assert "TwistedWeb" in r.headers.get("Server", "")


def _gpgv_verify(tmp_path, pub_key, data):
    keyring = tmp_path / "instance.gpg"
    subprocess.run(["gpg", "--batch", "--yes", "--dearmor", "-o", str(keyring)], input=pub_key.encode(), check=True)
    signed = tmp_path / "InRelease"
    signed.write_bytes(data)
    return subprocess.run(["gpgv", "--keyring", str(keyring), str(signed)], capture_output=True, text=True, check=False)


def test_inrelease_served_and_verifies(tmp_path, instance, daemon):
    _, pub_key = instance
    for suite in ("unstable", "stable", "experimental"):
        r = requests.get(f"{daemon.url}/repositories/test/dists/bookworm-test-{suite}/InRelease", timeout=10)
        assert r.status_code == 200
        assert "TwistedWeb" in r.headers.get("Server", "")
        assert f"Codename: bookworm-test-{suite}" in r.text
        result = _gpgv_verify(tmp_path, pub_key, r.content)
        assert result.returncode == 0, result.stderr
    r = requests.get(f"{daemon.url}/repositories/test/dists/bookworm-test-unstable-rollback8/Release", timeout=10)
    assert r.status_code == 200 and "ButAutomaticUpgrades: no" in r.text


def test_tampered_inrelease_fails_gpgv(tmp_path, instance, daemon):
    _, pub_key = instance
    r = requests.get(f"{daemon.url}/repositories/test/dists/bookworm-test-unstable/InRelease", timeout=10)
    result = _gpgv_verify(tmp_path, pub_key, r.content.replace(b"bookworm-test-unstable", b"bookworm-test-unstablE"))
    assert result.returncode != 0


def test_access_log(instance, daemon):
    home, _ = instance
    requests.get(daemon.url + "/accounts/null/?access-log-probe", timeout=10)
    log = home / "var" / "log" / "access.log"
    for _ in range(50):
        if "access-log-probe" in log.read_text():
            break
        import time
        time.sleep(0.1)
    assert "access-log-probe" in log.read_text()
    assert (home / "var" / "log" / "daemon.log").read_text().count("serving") >= 1


def _own_home(instance, tmp_path):
    """A copy of the instance home: one daemon per home, and the module's daemon holds that one."""
    import shutil  # pylint: disable=import-outside-toplevel
    import sqlite3  # pylint: disable=import-outside-toplevel
    home, _ = instance
    copy = tmp_path / "own-home"
    shutil.copytree(home, copy, symlinks=True,
                    ignore=shutil.ignore_patterns(".mini-buildd.lock", "S.*", "config.sqlite*"))
    with sqlite3.connect(str(home / "config.sqlite")) as src, sqlite3.connect(str(copy / "config.sqlite")) as dst:
        src.backup(dst)
    return copy


def test_https_endpoint(tmp_path, instance):
    _, pub_key = instance
    home = _own_home(instance, tmp_path)
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    port = free_port()
    with Daemon(home, port=port, endpoints=[f"ssl:port={port}:interface=127.0.0.1:privateKey={key}:certKey={cert}"],
                scheme="https", verify=str(cert)):
        url = f"https://127.0.0.1:{port}"
        assert requests.get(url + "/", timeout=10, verify=str(cert)).status_code == 200
        r = requests.get(url + "/repositories/test/dists/bookworm-test-unstable/InRelease", timeout=10, verify=str(cert))
        assert r.status_code == 200
        assert _gpgv_verify(tmp_path, pub_key, r.content).returncode == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/", timeout=5)


def test_sigint_stops_cleanly(tmp_path, instance):
    home = _own_home(instance, tmp_path)
    d = Daemon(home).start()
    assert d.stop(signal.SIGINT) == 0
    assert "Shut down." in d.output()


def test_sigint_stops_even_when_started_with_sigint_ignored(instance, tmp_path):
    """Like a background job of a non-interactive shell (e.g. 'make run &')."""
    home = _own_home(instance, tmp_path)
    d = Daemon(home)
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the child
    try:
        d.start()
    finally:
        signal.signal(signal.SIGINT, old)
    assert d.stop(signal.SIGINT, timeout=20) == 0
    assert "Shut down." in d.output()


# ---------------------------------------------------------------------------------------------- bad input
def _assert_clean_error(proc, text):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, proc.stderr
    assert text in lines[0], lines[0]


def test_bad_endpoint(tmp_path):
    _assert_clean_error(run_mbd(tmp_path / "h", "--http-endpoint", "bogus:port=1"), "Unsupported endpoint type")
    _assert_clean_error(run_mbd(tmp_path / "h", "--http-endpoint", "tcp:port=notaport"), "valid port")
    _assert_clean_error(run_mbd(tmp_path / "h", "--http-endpoint", "ssl:port=8443"), "privateKey")


def test_unwritable_home(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    _assert_clean_error(run_mbd(blocker / "home", "--http-endpoint", f"tcp:port={free_port()}"), "is not usable")


def test_port_in_use(tmp_path, instance, daemon):  # pylint: disable=unused-argument
    home = tmp_path / "other"
    _assert_clean_error(run_mbd(home, "--http-endpoint", f"tcp:interface=127.0.0.1:port={daemon.port}"), "can't listen")


def test_wrong_user(tmp_path):
    proc = subprocess.run(["/usr/bin/python3", "-m", "mini_buildd", "--home", str(tmp_path / "h"), "--dedicated-user", "mini-buildd-nobody"],
                          cwd=pathlib.Path(__file__).resolve().parents[2], capture_output=True, text=True, check=False)
    _assert_clean_error(proc, "dedicated user is 'mini-buildd-nobody'")


def test_bad_log_level(tmp_path):
    _assert_clean_error(run_mbd(tmp_path / "h", "--log-level", "LOUD", "--http-endpoint", f"tcp:port={free_port()}"),
                        "Unknown log level")


def test_bad_smtp_url(tmp_path):
    _assert_clean_error(run_mbd(tmp_path / "h", "--smtp", "mail.example.org:25", "--http-endpoint", f"tcp:port={free_port()}"),
                        "Bad SMTP URL")


def test_secret_key_is_stable(instance):
    home, _ = instance
    key = (home / ".django_secret_key").read_text()
    assert run_mbd(home, "--set-admin-password", ADMIN_PASSWORD).returncode == 0
    assert (home / ".django_secret_key").read_text() == key
    assert os.stat(home / ".django_secret_key").st_mode & 0o777 == 0o600
