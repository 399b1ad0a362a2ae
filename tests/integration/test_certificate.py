"""Running encrypted (issue #13; owns: tests/integration/test_certificate.py), no chroot needed:

- ``mini-buildd-self-signed-certificate`` create/show/remove in a ``--dir`` (modes, refusals, one-line errors);
- the real daemon on an ``ssl:`` HTTP endpoint and an ``ssl:`` (FTPS) incoming with that
  certificate: Python (requests), curl and apt (``apt-helper download-file``, GnuTLS) accept it
  when told to trust it and refuse it otherwise; FTPS incoming refuses plain FTP and verifies;
- ``mini-buildd-dput`` (the instance's own ``dput_conf``) and dput-ng (the instance's profile)
  upload over FTPS into incoming: the upload arrives (judged REJECTED: no repository);
- a missing certificate, or a key of another certificate: the daemon exits 1 with one line;
- the keyring package built from the template ships the served certificate and an APT snippet
  that apt reads as ``Acquire::https::HOST::CaInfo``; buildrequests' ``ssl_cert`` is that certificate.
"""

# pytest idioms: fixtures are parameters named like them; Django and the code under test are imported after the
# test set-up; asserts compare with empty containers on purpose (the type counts too).
# pylint: disable=redefined-outer-name,import-outside-toplevel,use-implicit-booleaness-not-comparison

import ftplib
import json
import os
import pathlib
import shutil
import ssl
import subprocess
import time

import pytest
import requests

from tests.helpers.daemon import PYTHON, ROOT, Daemon, free_port, in_home, run_mbd
from tests.helpers.dput_ng import dput_ng
from tests.helpers.packages import make_source_package, wait_for

ED25519 = "Key-Type: EdDSA\nKey-Curve: ed25519\nKey-Usage: sign\nExpire-Date: 0"
HOST = "127.0.0.1"
IDENTITY = "tlstest"
TOOL = [PYTHON, "-m", "mini_buildd.cli.certificate"]


def tool(*args, env=None):
    return subprocess.run([*TOOL, *args], cwd=ROOT, capture_output=True, text=True, check=False,
                          env=dict(os.environ, **(env or {})))


def one_line_error(proc):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("mini-buildd-self-signed-certificate: error: "), proc
    return lines[0]


def openssl_fingerprint(cert):
    out = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-fingerprint", "-sha256"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().partition("=")[2]


def make_cert(directory, cn=HOST):
    proc = tool("--dir", str(directory), "create", "--cn", cn)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return pathlib.Path(directory) / "certs" / "mini-buildd.crt", pathlib.Path(directory) / "private" / "mini-buildd.key"


# --- the command ---------------------------------------------------------------------------------

def test_create_show_remove(tmp_path):
    d = tmp_path / "ssl"
    cert, key = d / "certs" / "mini-buildd.crt", d / "private" / "mini-buildd.key"
    proc = tool("--dir", str(d), "create", "--cn", "mbd.example.org")
    assert proc.returncode == 0, proc.stderr
    assert cert.is_file() and key.is_file()
    assert key.stat().st_mode & 0o777 in (0o600, 0o640) and key.parent.stat().st_mode & 0o007 == 0
    assert cert.stat().st_mode & 0o777 == 0o644
    assert "PRIVATE KEY" not in cert.read_text()
    show = tool("--dir", str(d), "show")
    assert show.returncode == 0, show.stderr
    assert "subject:     CN=mbd.example.org" in show.stdout
    assert "alt names:   DNS:mbd.example.org" in show.stdout
    assert "expires:" in show.stdout and openssl_fingerprint(cert) in show.stdout
    # upstream's name for show, and the directory from the environment
    assert tool("status", env={"MINI_BUILDD_SSL_DIR": str(d)}).stdout == show.stdout
    # never over existing files without --force; with it, a new key
    before = openssl_fingerprint(cert), key.read_bytes()
    assert "exist already (use --force to replace)" in one_line_error(tool("--dir", str(d), "create"))
    assert (openssl_fingerprint(cert), key.read_bytes()) == before
    assert tool("--dir", str(d), "create", "--force", "--cn", "127.0.0.1").returncode == 0
    assert openssl_fingerprint(cert) != before[0] and key.read_bytes() != before[1]
    assert "alt names:   IP:127.0.0.1" in tool("--dir", str(d), "show").stdout
    assert "Invalid common name" in one_line_error(tool("--dir", str(d), "create", "--force", "--cn", "bad name/x"))
    removed = tool("--dir", str(d), "remove")
    assert removed.returncode == 0 and not cert.exists() and not key.exists(), removed
    assert "No certificate" in one_line_error(tool("--dir", str(d), "show"))
    assert "Nothing to remove" in one_line_error(tool("--dir", str(d), "remove"))


# --- the daemon on ssl: endpoints ---------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_instance(tmp_path_factory):
    """An instance serving HTTPS and FTPS with a self-signed certificate; stopped after."""
    base = tmp_path_factory.mktemp("tls")
    cert, key = make_cert(base / "ssl")
    home = base / "home"
    ftp_port = free_port()
    in_home(home, f"d = models.Daemon.get()\nd.gnupg_template = {ED25519!r}\nd.identity = {IDENTITY!r}\n"
                  f"d.ftpd_bind = 'ssl:interface={HOST}:port={ftp_port}:privateKey={key}:certKey={cert}'\n"
                  "d.save()\nd.mbd_pca()\nassert models.Daemon.get().mbd_is_active()\n")
    port = free_port()
    daemon = Daemon(home, port=port, host=HOST, scheme="https", verify=str(cert),
                    endpoints=[f"ssl:interface={HOST}:port={port}:privateKey={key}:certKey={cert}"])
    daemon.ftp_port = ftp_port
    daemon.start()
    daemon.cert, daemon.key, daemon.base = cert, key, base
    yield daemon
    assert daemon.stop() == 0


def test_https_clients_trust_only_what_they_are_told(tls_instance, tmp_path):
    url = tls_instance.url + "/mini_buildd/api/status/?output=json"
    cert = tls_instance.cert
    assert requests.get(url, verify=str(cert), timeout=30).json()["identity"] == IDENTITY
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, timeout=30)  # the system's CAs do not know it
    ok = subprocess.run(["curl", "-sS", "--fail", "--cacert", str(cert), url], capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and json.loads(ok.stdout)["identity"] == IDENTITY, ok.stderr
    bad = subprocess.run(["curl", "-sS", "--fail", url], capture_output=True, text=True, check=False)
    assert bad.returncode == 60, bad  # peer certificate cannot be authenticated
    # apt's https method (GnuTLS), trusting it for this host only, as the keyring package's snippet does
    apt = ["/usr/lib/apt/apt-helper", "-o", "APT::Sandbox::User=root", "-o", "Acquire::Retries=0"]
    out = tmp_path / "status.json"
    proc = subprocess.run([*apt, "-o", f"Acquire::https::{HOST}::CaInfo={cert}", "download-file", url, str(out)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and json.loads(out.read_text())["identity"] == IDENTITY, proc.stdout + proc.stderr
    out.unlink()
    proc = subprocess.run([*apt, "download-file", url, str(out)], capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and not out.exists(), proc.stdout + proc.stderr
    assert "certificate" in (proc.stdout + proc.stderr).lower(), proc.stdout + proc.stderr


def test_ftps_incoming_requires_tls_and_verifies(tls_instance):
    port = tls_instance.ftp_port
    plain = ftplib.FTP()
    plain.connect(HOST, port, timeout=30)
    with pytest.raises(ftplib.error_perm, match="SSL/TLS required"):
        plain.login()
    plain.close()
    context = ssl.create_default_context(cafile=str(tls_instance.cert))  # verifies chain and host name
    ftps = ftplib.FTP_TLS(context=context, timeout=30)
    ftps.connect(HOST, port)
    ftps.login()
    ftps.prot_p()
    ftps.cwd("/incoming")
    assert ftps.nlst() == []
    ftps.quit()
    with pytest.raises(ssl.SSLCertVerificationError):  # the system's CAs do not know it
        _login(ftplib.FTP_TLS(context=ssl.create_default_context(), timeout=30), port)


def _login(ftps, port):
    ftps.connect(HOST, port)
    ftps.login()


def api(instance, call, **args):
    r = requests.get(f"{instance.url}/mini_buildd/api/{call}/", params={**args, "output": "json"},
                     verify=str(instance.cert), timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def _events_after(instance, source, version, timeout=60):
    return wait_for(instance.url, lambda e: e["source"] == source and e["version"] == version, timeout=timeout,
                    verify=str(instance.cert))


def test_mini_buildd_dput_uploads_over_ftps(tls_instance, tmp_path):
    conf = api(tls_instance, "dput_conf")
    assert f"[mini-buildd-{IDENTITY}]" in conf and "method   = ftps" in conf, conf
    cf = tmp_path / "dput.cf"
    cf.write_text(conf)
    changes = make_source_package(tmp_path, "mbd-tls-hello", "1.0", "bookworm-test-unstable")
    dput = [PYTHON, "-m", "mini_buildd.cli.dput", "-c", str(cf)]
    # verifying against another certificate: refused before anything is sent
    other, _ = make_cert(tmp_path / "other")
    proc = subprocess.run([*dput, "--ca-file", str(other), f"mini-buildd-{IDENTITY}", str(changes)], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "certificate verify failed" in proc.stderr, proc.stdout + proc.stderr
    proc = subprocess.run([*dput, "--ca-file", str(tls_instance.cert), f"mini-buildd-{IDENTITY}", str(changes)], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and f"to ftps://{HOST}:{tls_instance.ftp_port}/incoming" in proc.stdout, proc.stdout + proc.stderr
    event = _events_after(tls_instance, "mbd-tls-hello", "1.0")
    assert event["type"] == "REJECTED", event


def test_dput_ng_uploads_over_ftps_with_the_instance_profile(tls_instance, tmp_path):
    """Debian's dput-ng (installed, or the real packages unpacked beside the classic dput: they
    conflict) uploads with the profile the instance hands out."""
    profile = api(tls_instance, "dput_conf", dput_ng_profile="true")
    assert json.loads(profile)["method"] == "ftps", profile
    home = tmp_path / "home"
    (home / ".dput.d" / "profiles").mkdir(parents=True)
    (home / ".dput.d" / "profiles" / f"mini-buildd-{IDENTITY}.json").write_text(profile)
    changes = make_source_package(tmp_path, "mbd-tls-ng", "1.0", "bookworm-test-unstable")
    proc = dput_ng().run(["-u", f"mini-buildd-{IDENTITY}", changes], home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    event = _events_after(tls_instance, "mbd-tls-ng", "1.0")
    assert event["type"] == "REJECTED", event


def test_daemon_refuses_missing_or_mismatched_certificate(tls_instance, tmp_path):
    port = free_port()
    missing = tmp_path / "missing.crt"
    proc = run_mbd(tmp_path / "home", "--hostname", HOST, "--http-endpoint",
                   f"ssl:interface={HOST}:port={port}:privateKey={tls_instance.key}:certKey={missing}", timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stdout + proc.stderr
    assert f"certificate file '{missing}' does not exist" in lines[0], lines
    other_cert, _ = make_cert(tmp_path / "other")
    proc = run_mbd(tmp_path / "home", "--hostname", HOST, "--http-endpoint",
                   f"ssl:interface={HOST}:port={port}:privateKey={tls_instance.key}:certKey={other_cert}", timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "does not belong to certificate" in lines[0], proc.stdout + proc.stderr


def test_ftps_endpoint_with_a_missing_certificate_one_line_and_no_half_started_engine(tmp_path):
    """The Daemon's FTP endpoint names a certificate file that is gone: the web interface runs,
    the engine is not running (no packager or builder left running without the FTP server), and
    the log says why in one line, without a traceback."""
    cert, key = make_cert(tmp_path / "ssl")
    home, ftp_port = tmp_path / "home", free_port()
    in_home(home, f"d = models.Daemon.get()\nd.gnupg_template = {ED25519!r}\nd.identity = {IDENTITY!r}\n"
                  f"d.ftpd_bind = 'ssl:interface={HOST}:port={ftp_port}:privateKey={key}:certKey={cert}'\n"
                  "d.save()\nd.mbd_pca()\nassert models.Daemon.get().mbd_is_active()\n")
    cert.unlink()
    daemon = Daemon(home, port=free_port(), host=HOST).start()
    try:
        deadline = time.monotonic() + 60
        while "Engine not started" not in daemon.output() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert requests.get(daemon.url + "/mini_buildd/api/status/?output=json", timeout=30).json()["load"] == -1
    finally:
        daemon.stop()
    out = daemon.output()
    errors = [line for line in out.splitlines() if "Engine start failed" in line]
    assert len(errors) == 1 and f"certKey file '{cert}' is not readable" in errors[0], out
    assert "Traceback" not in out, out
    assert "Engine not started: stopped the 4 part(s) that had started." in out, out


def test_keyring_package_and_buildrequests_carry_the_certificate(tls_instance, tmp_path):
    served = tls_instance.endpoints[0]
    code = (f"config.runtime.http_endpoints = [{served!r}]\n"
            "from mini_buildd import instance\n"
            "from mini_buildd.pipeline import ports\n"
            f"open({str(tmp_path / 'ssl_cert')!r}, 'w').write(instance.ssl_cert())\n"
            f"print(ports.build_keyring_source({str(tmp_path)!r}, '20260101000000'))\n"
            "config.runtime.http_endpoints = ['tcp:port=1']\n"
            "assert instance.ssl_cert() == ''\n")
    dsc = pathlib.Path(in_home(tls_instance.home, code, hostname=HOST).strip().splitlines()[-1])
    cert_text = tls_instance.cert.read_text()
    assert (tmp_path / "ssl_cert").read_text() == cert_text  # what a buildrequest's ssl_cert carries
    src = tmp_path / "src"
    subprocess.run(["dpkg-source", "-x", str(dsc), str(src)], check=True, capture_output=True)
    # (this instance has no repository, so no APT sources were generated: give dh_install one)
    (src / "sources.list.d" / "none").mkdir(parents=True, exist_ok=True)
    (src / "sources.list.d" / "none" / "README").write_text("no repositories\n")
    proc = subprocess.run(["dpkg-buildpackage", "-b", "-us", "-uc"], cwd=src, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    deb = next(tmp_path.glob(f"{IDENTITY}-archive-keyring_*_all.deb"))
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    shipped = root / "usr" / "share" / f"{IDENTITY}-archive-keyring" / "certs" / "mini-buildd.crt"
    assert shipped.read_text() == cert_text
    snippet = root / "etc" / "apt" / "apt.conf.d" / f"50{IDENTITY}-archive-keyring.conf"
    conffiles = subprocess.run(["dpkg-deb", "-I", str(deb), "conffiles"], capture_output=True, text=True, check=True).stdout
    assert f"/etc/apt/apt.conf.d/50{IDENTITY}-archive-keyring.conf" in conffiles
    # apt reads the snippet as CaInfo for our host; pointed at the unpacked copy, apt's https fetch succeeds
    local = tmp_path / "apt.conf"
    local.write_text(snippet.read_text().replace(f"/usr/share/{IDENTITY}-archive-keyring/certs/mini-buildd.crt", str(shipped)))
    dump = subprocess.run(["apt-config", "-c", str(local), "dump", f"Acquire::https::{HOST}::CaInfo"], capture_output=True,
                          text=True, check=True).stdout
    assert str(shipped) in dump, dump
    out = tmp_path / "status.json"
    proc = subprocess.run(["/usr/lib/apt/apt-helper", "-c", str(local), "-o", "APT::Sandbox::User=root", "download-file",
                           tls_instance.url + "/mini_buildd/api/status/?output=json", str(out)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and json.loads(out.read_text())["identity"] == IDENTITY, proc.stdout + proc.stderr
    shutil.rmtree(src)


def test_only_certificates_travel(tmp_path):
    """A combined key+certificate file (twisted accepts one as certKey): only the certificate is
    sent in buildrequests and shipped in the keyring package."""
    from mini_buildd.tools import tls
    cert, key = make_cert(tmp_path / "ssl")
    combined = tmp_path / "combined.pem"
    combined.write_text(key.read_text() + cert.read_text())
    endpoint = f"ssl:port=1:privateKey={combined}:certKey={combined}"
    assert tls.served_certificate(["tcp:port=2", endpoint]) == cert.read_text()
    assert "PRIVATE KEY" not in tls.served_certificate([endpoint])
    assert tls.served_certificate(["tcp:port=2"]) == ""
