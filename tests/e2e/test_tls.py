"""Running encrypted end to end (issue #13; owns: tests/e2e/test_tls.py): two real daemons,
each with its own ``mini-buildd-self-signed-certificate`` (CN = its loopback address), HTTP only
on ``ssl:`` and FTPS incoming: "tlsbert" (127.0.0.8: repository ``test``, no chroot) and
"tlsgrover" (127.0.0.9: bookworm:amd64 chroot).

- the two-sided Remote set-up (status, key, signed handshake) runs over HTTPS, verified: each
  daemon trusts the other's self-signed certificate through ``REQUESTS_CA_BUNDLE`` (what an
  administrator does with ``update-ca-certificates`` or the daemon's environment);
- an upload with ``mini-buildd-dput`` (FTPS, certificate verified) to tlsbert is built on
  tlsgrover: the buildrequest goes over FTPS, carries tlsbert's certificate as ``ssl_cert`` (the
  build chroot trusts it and fetches tlsbert's https sources), the buildresult comes back over
  FTPS, INSTALLED;
- apt in a clean chroot installs the package from tlsbert over ``https://``, trusting the
  certificate with ``Acquire::https::CaInfo``; without it, apt refuses the server.
"""

# pylint: disable=redefined-outer-name  # pytest passes each fixture as the parameter of its name

import os
import re
import subprocess

import pytest
import requests

from mini_buildd import changes as mbd_changes
from tests.helpers.clean_chroot import clean_chroot, in_chroot  # noqa: F401  pylint: disable=unused-import
from tests.helpers.daemon import PYTHON, ROOT, Daemon
from tests.helpers.packages import make_source_package, now_iso, wait_event
from tests.helpers.remote_instances import RemoteInstance, common_ports, wait_until

HOSTS = {"tlsbert": "127.0.0.8", "tlsgrover": "127.0.0.9"}
V = "1.0~test12+1"
SOURCE = "mbd-tls-remote"


class TlsInstance(RemoteInstance):
    """A :class:`RemoteInstance` on ``ssl:`` endpoints (HTTPS, FTPS) with its own self-signed certificate."""

    def __init__(self, name, host, root, http_port, ftp_port, schroot_prefix, ssl_dir, bundle):
        super().__init__(name, host, root, http_port, ftp_port, schroot_prefix)
        proc = subprocess.run([PYTHON, "-m", "mini_buildd.cli.certificate", "--dir", str(ssl_dir), "create", "--cn", host],
                              cwd=ROOT, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        self.cert, self.key = ssl_dir / "certs" / "mini-buildd.crt", ssl_dir / "private" / "mini-buildd.key"
        files = f"privateKey={self.key}:certKey={self.cert}"
        self.http_endpoint = f"ssl:interface={host}:port={http_port}:{files}"
        self.ftp_endpoint = f"ssl:interface={host}:port={ftp_port}:{files}"
        self.url = f"https://{host}:{http_port}"
        self.ftp_url = f"ftps://{host}:{ftp_port}"
        self.bundle = bundle

    def start(self, env=None):
        self.daemon = Daemon(self.home, port=self.http_port, host=self.host, endpoints=[self.http_endpoint],
                             extra_args=["--schroot-prefix", self.schroot_prefix], scheme="https", verify=str(self.bundle))
        self.daemon.start()
        return self


@pytest.fixture(scope="module")
def tls_net(tmp_path_factory):
    """Instances with self-signed certificates (HTTPS, FTPS) that trust each other through a bundle."""
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests need root")
    root = tmp_path_factory.mktemp("tls")
    http_port, ftp_port = common_ports(list(HOSTS.values()))
    bundle = root / "peers-bundle.pem"
    tag = f"mbd-e2etls{os.getpid()}"
    insts = {name: TlsInstance(name, host, root, http_port, ftp_port, f"{tag}-{name}", root / f"{name}-ssl", bundle)
             for name, host in HOSTS.items()}
    bundle.write_text("".join(i.cert.read_text() for i in insts.values()))
    # Setup runs, the daemons (started from here) and this test's own requests verify against the bundle.
    saved = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = str(bundle)
    try:
        bert, grover = insts["tlsbert"], insts["tlsgrover"]
        bert.bootstrap("--archives-from-apt-sources", "--sources", "bookworm", "--distributions", "bookworm:amd64",
                       "--repositories", "test:Default:bookworm")
        bert.django("r = models.Repository.objects.get(identity='test')\nr.allow_unauthenticated_uploads = True\n"
                    "r.save()\nr.mbd_pca()")
        grover.bootstrap("--archives-from-apt-sources", "--sources", "bookworm", "--chroots", "bookworm:amd64")
        for inst in insts.values():
            inst.start()
        yield insts
    finally:
        for inst in insts.values():
            inst.teardown()
        if saved is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = saved
    for inst in insts.values():
        names = subprocess.run(["schroot", "--list", "--all"], capture_output=True, text=True, check=False).stdout
        assert inst.schroot_prefix not in names


def _active(a, b):
    return a.remote_status(b).startswith("Active")


def test_remotes_over_https(tls_net):
    bert, grover = tls_net["tlsbert"], tls_net["tlsgrover"]
    first = bert.add_remote(grover)
    assert first["status_display"] == "Prepared (A)", first
    second = grover.add_remote(bert)
    assert second["status"] == "ACTIVE", second
    wait_until(lambda: _active(bert, grover), 60, what="tlsbert's Remote for tlsgrover Active")
    status = requests.get(f"{bert.url}/mini_buildd/api/status/", params={"output": "json"}, timeout=10).json()
    assert status["remotes"] == [grover.url] and grover.url.startswith("https://")
    # without the bundle, the peer's certificate is refused
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{grover.url}/mini_buildd/api/status/", timeout=10, verify=str(bert.cert))


def test_upload_built_on_the_remote_over_https_and_ftps(tls_net, tmp_path):
    bert, grover = tls_net["tlsbert"], tls_net["tlsgrover"]
    if not _active(bert, grover):
        pytest.skip("remotes not linked (see test_remotes_over_https)")
    conf = requests.get(f"{bert.url}/mini_buildd/api/dput_conf/", params={"output": "json"}, timeout=10).json()
    cf = tmp_path / "dput.cf"
    cf.write_text(conf)
    changes = make_source_package(tmp_path, SOURCE, V, "bookworm-test-unstable")
    since = now_iso()
    proc = subprocess.run([PYTHON, "-m", "mini_buildd.cli.dput", "-c", str(cf), "--ca-file", str(bert.cert),
                           "mini-buildd-tlsbert", str(changes)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and f"to {bert.ftp_url}/incoming" in proc.stdout, proc.stdout + proc.stderr
    packaging = wait_event(bert.url, ("PACKAGING", "REJECTED"), SOURCE, V, timeout=120, after=since)
    assert packaging["type"] == "PACKAGING", packaging["extra"].get("error")
    assert packaging["extra"]["buildrequests"]["amd64"]["builder"] == grover.url
    # the buildrequest: results back to tlsbert's FTPS, tlsbert's certificate for the chroot
    breqs = list((bert.home / "var" / "events" / SOURCE / V).glob("*/amd64/*_mini-buildd-buildrequest_amd64.changes"))
    assert len(breqs) == 1, breqs
    breq = mbd_changes.Buildrequest(breqs[0])
    assert breq.upload_to == bert.ftp_url
    event = wait_event(bert.url, ("INSTALLED", "FAILED"), SOURCE, V, timeout=900, after=since)
    assert event["type"] == "INSTALLED", event["extra"].get("error")
    assert event["extra"]["buildresults"]["amd64"]["builder"] == grover.url
    logs = list((grover.home / "var" / "shared" / "builds" / SOURCE / V).rglob("*.buildlog"))
    assert len(logs) == 1, logs
    log = logs[0].read_text(errors="replace")
    # the chroot trusted tlsbert's certificate and fetched its https sources
    repo = re.escape(f"https://{bert.host}:{bert.http_port}/repositories/test")
    assert "apt-setup: https sources" in log and "Updating certificates in /etc/ssl/certs" in log, log[-4000:]
    assert re.search(rf"(?m)^(Get|Hit):\d+ {repo} ", log), log[-6000:]
    assert not re.search(rf"(?m)^(Err|Ign):\d+ {repo} ", log), log[-6000:]


def test_apt_installs_from_the_instance_over_https(tls_net, clean_chroot):  # noqa: F811
    bert = tls_net["tlsbert"]
    if not list((bert.home / "repositories" / "test" / "pool").rglob(f"{SOURCE}_*.deb")):
        pytest.skip(f"{SOURCE} was not installed (see test_upload_built_on_the_remote_over_https_and_ftps)")
    root = clean_chroot
    pub_key = requests.get(f"{bert.url}/mini_buildd/api/pub_key/", params={"output": "json"}, timeout=10).json()
    subprocess.run(["gpg", "--batch", "--yes", "--dearmor", "-o", str(root / "bert.gpg")], input=pub_key.encode(), check=True)
    (root / "bert.crt").write_text(bert.cert.read_text())
    for p in (root / "etc" / "apt" / "sources.list.d").glob("*"):
        p.unlink()
    (root / "etc" / "apt" / "sources.list").write_text(
        f"deb [signed-by=/bert.gpg] {bert.url}/repositories/test bookworm-test-unstable main\n")
    refused = in_chroot(root, "apt-get", "update")
    assert "certificate" in (refused.stdout + refused.stderr).lower(), refused.stdout + refused.stderr
    trusted = ["-o", f"Acquire::https::{bert.host}::CaInfo=/bert.crt"]
    proc = in_chroot(root, "apt-get", *trusted, "update")
    assert proc.returncode == 0 and "NO_PUBKEY" not in proc.stdout + proc.stderr and "Err:" not in proc.stdout, \
        proc.stdout + proc.stderr
    proc = in_chroot(root, "apt-get", *trusted, "install", "--yes", SOURCE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (root / "usr" / "share" / SOURCE / "hello.txt").read_text().startswith(f"hello from {SOURCE}")
