"""Distributed building end to end (SPEC §7, issue #7): real daemons on 127.0.0.2 ("bert":
repository ``test``, no chroot), 127.0.0.3 ("grover": bookworm:amd64 chroot, no repository) and
127.0.0.4 ("oscar": like grover), same port numbers, separate homes and schroot prefixes.

- two-sided Remote setup: both sides Active (the first side converges by itself after the second
  side's handshake);
- an upload to bert is built on grover and installed in bert's repository, events on both sides;
- a buildrequest signed with a key nobody knows is rejected by grover and builds nothing;
- re-dispatch: the builder holding a build is frozen (SIGSTOP); after the (test-short) timeout bert
  sends the request to the other builder, the package is INSTALLED, and the frozen builder's late
  result, once it is thawed, is ignored with a log line.
"""

import os
import re
import subprocess

import pytest
import requests

from mini_buildd import gnupg
from tests.helpers.packages import make_source_package, write_dput_cf, dput, wait_event, raw_ftp_upload, now_iso
from tests.helpers.remote_instances import RemoteInstance, common_ports, wait_until, ED25519

HOSTS = {"bert": "127.0.0.2", "grover": "127.0.0.3", "oscar": "127.0.0.4"}
#: Re-dispatch timings for the daemons of this test (seconds).
ENV = {"MINI_BUILDD_REDISPATCH_TIMEOUT": "20", "MINI_BUILDD_BUILDER_POLL": "3"}
V = "1.0~test12+1"
CHROOT = ["--archives-from-apt-sources", "--sources", "bookworm", "--chroots", "bookworm:amd64"]


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests need root")
    root = tmp_path_factory.mktemp("remotes")
    http_port, ftp_port = common_ports(list(HOSTS.values()))
    tag = f"mbd-e2e{os.getpid()}"
    insts = {name: RemoteInstance(name, host, root, http_port, ftp_port, f"{tag}-{name}") for name, host in HOSTS.items()}
    try:
        bert = insts["bert"]
        bert.bootstrap("--archives-from-apt-sources", "--sources", "bookworm", "--distributions", "bookworm:amd64",
                       "--repositories", "test:Default:bookworm")
        bert.django("r = models.Repository.objects.get(identity='test')\nr.allow_unauthenticated_uploads = True\n"
                    "r.save()\nr.mbd_pca()")
        for name in ("grover", "oscar"):
            insts[name].bootstrap(*CHROOT)
        for inst in insts.values():
            inst.start(ENV)
        yield insts
    finally:
        for inst in insts.values():
            inst.teardown()
    for inst in insts.values():
        names = subprocess.run(["schroot", "--list", "--all"], capture_output=True, text=True, check=False).stdout
        assert inst.schroot_prefix not in names
        assert not [line for line in open("/proc/mounts", encoding="utf-8") if str(inst.home) in line]


def _remote_active(a, b):
    return a.remote_status(b).startswith("Active")


def _link(a, b):
    """Upstream's procedure: Remote on a (can't activate yet: pending), Remote on b (Active); a follows."""
    first = a.add_remote(b)
    assert first["status_display"] == "Prepared (A)", first
    assert "does not" in first.get("status_message", "") or "refused" in first.get("status_message", ""), first
    second = b.add_remote(a)
    assert second["status"] == "ACTIVE", second
    # a's Remote for b is re-checked after b's handshake and becomes Active by itself.
    wait_until(lambda: _remote_active(a, b), 60, what=f"{a.name}'s Remote for {b.name} Active")
    assert _remote_active(b, a)


def test_two_sided_remote_setup(net):
    bert, grover = net["bert"], net["grover"]
    _link(bert, grover)
    status = requests.get(f"{bert.url}/mini_buildd/api/status/", timeout=10).json()
    assert status["remotes"] == [grover.url] and status["chroots"] == []
    status = requests.get(f"{grover.url}/mini_buildd/api/status/", timeout=10).json()
    assert status["remotes"] == [bert.url] and status["chroots"] == ["bookworm:amd64"] and status["load"] >= 0


def _upload(bert, tmp_path, name, version):
    changes = make_source_package(tmp_path, name, version, "bookworm-test-unstable")
    cf = write_dput_cf(tmp_path / "dput.cf", "bert", f"{bert.host}:{bert.ftp_port}")
    proc = dput(cf, "bert", changes)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _ls(inst, source):
    out = subprocess.run(["reprepro", "--basedir", str(inst.home / "repositories" / "test"), "ls", source],
                         capture_output=True, text=True, check=True).stdout
    return {line.split("|")[2].strip(): line.split("|")[1].strip() for line in out.splitlines() if "|" in line}


def test_upload_to_bert_is_built_on_grover(net, tmp_path):
    bert, grover = net["bert"], net["grover"]
    since = now_iso()
    _upload(bert, tmp_path, "mbd-remote-hello", V)
    packaging = wait_event(bert.url, ("PACKAGING", "REJECTED"), "mbd-remote-hello", V, timeout=120, after=since)
    assert packaging["type"] == "PACKAGING", packaging["extra"].get("error")
    assert packaging["extra"]["buildrequests"]["amd64"]["builder"] == grover.url
    built = wait_event(grover.url, ("BUILT",), "mbd-remote-hello", V, timeout=900, after=since)
    assert built["extra"]["sbuild_status"] == "successful", built
    event = wait_event(bert.url, ("INSTALLED", "FAILED"), "mbd-remote-hello", V, timeout=300, after=since)
    assert event["type"] == "INSTALLED", event["extra"].get("error")
    assert event["extra"]["buildresults"]["amd64"]["builder"] == grover.url
    assert _ls(bert, "mbd-remote-hello").get("bookworm-test-unstable") == V
    # grover has no repository: nothing was installed there; its build dir holds the build.
    assert not list((grover.home / "repositories").iterdir())
    assert list((grover.home / "var" / "shared" / "builds" / "mbd-remote-hello").iterdir())


def test_buildrequest_with_unknown_key_is_rejected(net, tmp_path):
    """Bert's real buildrequest, given a fresh timecode and signed by a stranger, sent to grover."""
    bert, grover = net["bert"], net["grover"]
    breqs = sorted((bert.home / "var" / "events" / "mbd-remote-hello" / V).glob("*/amd64/*_mini-buildd-buildrequest_amd64.changes"))
    assert breqs
    work = tmp_path / "forged"
    work.mkdir()
    text = gnupg.unsign(breqs[0].read_text())
    text = re.sub(r"(?m)^X-Mini-Buildd-Timecode: .*$", "X-Mini-Buildd-Timecode: 20300101:000000:000000", text)
    forged = work / breqs[0].name
    forged.write_text(text)
    (work / (breqs[0].name + ".tar")).write_bytes((breqs[0].parent / (breqs[0].name + ".tar")).read_bytes())
    stranger = gnupg.Gnupg(tmp_path / "stranger")
    try:
        stranger.gen_secret_key(ED25519, "stranger", "stranger@example.org")
        stranger.sign_file(forged)
    finally:
        stranger.kill_agents()
    since = now_iso()
    before = sorted(p.name for p in (grover.home / "var" / "shared" / "builds" / "mbd-remote-hello" / V).iterdir())
    raw_ftp_upload(grover.host, grover.ftp_port, [work / (forged.name + ".tar"), forged])
    event = wait_event(grover.url, ("REJECTED", "BUILDING"), "mbd-remote-hello", V, timeout=120, after=since)
    assert event["type"] == "REJECTED", event
    assert "20300101:000000:000000" in event["extra"].get("timecode", "") + event["extra"].get("bkey", "")
    assert not list((grover.home / "incoming").iterdir())
    # no build: no build log and no buildresult for the forged request
    forged_dir = grover.home / "var" / "shared" / "builds" / "mbd-remote-hello" / V / "20300101:000000:000000"
    assert not list(forged_dir.rglob("*buildresult*")) and not list(forged_dir.rglob("*.buildlog"))
    after = sorted(p.name for p in (grover.home / "var" / "shared" / "builds" / "mbd-remote-hello" / V).iterdir())
    assert set(before) <= set(after)


def test_redispatch_when_builder_stops_answering(net, tmp_path):
    bert, grover, oscar = net["bert"], net["grover"], net["oscar"]
    _link(bert, oscar)
    status = requests.get(f"{bert.url}/mini_buildd/api/status/", timeout=10).json()
    assert sorted(status["remotes"]) == sorted([grover.url, oscar.url])

    since = now_iso()
    _upload(bert, tmp_path, "mbd-remote-redispatch", V)
    packaging = wait_event(bert.url, ("PACKAGING", "REJECTED"), "mbd-remote-redispatch", V, timeout=120, after=since)
    assert packaging["type"] == "PACKAGING", packaging["extra"].get("error")
    first_url = packaging["extra"]["buildrequests"]["amd64"]["builder"]
    # Equal loads: the builder used least recently (oscar; grover built the first package) goes first.
    assert first_url == oscar.url
    first, second = (oscar, grover)
    wait_event(first.url, ("BUILDING",), "mbd-remote-redispatch", V, timeout=120, after=since)
    first.pause()
    try:
        event = wait_event(bert.url, ("INSTALLED", "FAILED"), "mbd-remote-redispatch", V, timeout=900, after=since)
        assert event["type"] == "INSTALLED", event["extra"].get("error")
        assert event["extra"]["buildresults"]["amd64"]["builder"] == second.url
        assert "Re-dispatched" in bert.log_text()
    finally:
        first.resume()
    # The thawed builder finishes its build and sends the result: bert ignores it with a log line.
    wait_until(lambda: "Ignoring late buildresult" in bert.log_text(), 600, interval=3, what="late result ignored")
    assert _ls(bert, "mbd-remote-redispatch").get("bookworm-test-unstable") == V
