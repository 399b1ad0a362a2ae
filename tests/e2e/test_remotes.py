"""Distributed building end to end (upstream §7, issue #7): real daemons on 127.0.0.2 ("bert":
repository ``test``, no chroot), 127.0.0.3 ("grover": bookworm:amd64 chroot, no repository) and
127.0.0.4 ("oscar": like grover), same port numbers, separate homes and schroot prefixes.

- two-sided Remote setup: both sides Active (the first side converges by itself after the second
  side's handshake);
- an upload to bert is built on grover and installed in bert's repository, events on both sides;
- a buildrequest signed with a key nobody knows is rejected by grover and builds nothing;
- a replayed buildrequest (a byte copy of bert's real signed request that grover built already,
  re-sent over FTP) is rejected by grover as replayed and builds nothing;
- a buildresult for bert's ongoing package signed by the other builder (a remote bert trusts, but
  not the one the request went to) is rejected naming expected builder and actual signer, and the
  package still installs from the real builder's result;
- re-dispatch: the builder holding a build is frozen (SIGSTOP); after the (test-short) timeout bert
  sends the request to the other builder, the package is INSTALLED, and the frozen builder's late
  result, once it is thawed, is ignored with a log line.
"""

# pylint: disable=redefined-outer-name  # pytest passes each fixture as the parameter of its name

import os
import pathlib
import re
import subprocess

import pytest
import requests

from mini_buildd import changes
from mini_buildd.tools import gnupg
from tests.helpers.packages import (make_source_package, write_dput_cf, dput, wait_event, raw_ftp_upload, now_iso,
                                    tree_digest)
from tests.helpers.remote_instances import RemoteInstance, common_ports, wait_until, ED25519

HOSTS = {"bert": "127.0.0.2", "grover": "127.0.0.3", "oscar": "127.0.0.4"}
#: Re-dispatch timings for the daemons of this test (seconds).
ENV = {"MINI_BUILDD_REDISPATCH_TIMEOUT": "20", "MINI_BUILDD_BUILDER_POLL": "3"}
V = "1.0~test12+1"
CHROOT = ["--archives-from-apt-sources", "--sources", "bookworm", "--chroots", "bookworm:amd64"]


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """Three running instances on loopback addresses (bert: a repository; grover, oscar: a chroot each)."""
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
        assert not [line for line in pathlib.Path("/proc/mounts").read_text(encoding="utf-8").splitlines() if str(inst.home) in line]


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
    assert _remote_active(b, a)  # pylint: disable=arguments-out-of-order  # the other side


def test_two_sided_remote_setup(net):
    bert, grover = net["bert"], net["grover"]
    _link(bert, grover)
    status = requests.get(f"{bert.url}/mini_buildd/api/status/", timeout=10).json()
    assert status["remotes"] == [grover.url] and status["chroots"] == []
    status = requests.get(f"{grover.url}/mini_buildd/api/status/", timeout=10).json()
    assert status["remotes"] == [bert.url] and status["chroots"] == ["bookworm:amd64"] and status["load"] >= 0


def _upload(bert, tmp_path, name, version):
    changes_path = make_source_package(tmp_path, name, version, "bookworm-test-unstable")
    cf = write_dput_cf(tmp_path / "dput.cf", "bert", f"{bert.host}:{bert.ftp_port}")
    proc = dput(cf, "bert", changes_path)
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


def _bert_buildrequest(bert, source):
    breqs = sorted((bert.home / "var" / "events" / source / V).glob("*/amd64/*_mini-buildd-buildrequest_amd64.changes"))
    assert len(breqs) == 1, breqs
    return breqs[0]


def test_buildrequest_with_unknown_key_is_rejected(net, tmp_path):
    """Bert's real buildrequest, given a fresh timecode (a new build) and signed by a stranger, sent to grover."""
    bert, grover = net["bert"], net["grover"]
    breq = _bert_buildrequest(bert, "mbd-remote-hello")
    work = tmp_path / "forged"
    work.mkdir()
    timecode = changes.timecode_now()
    text = gnupg.unsign(breq.read_text())
    text = re.sub(r"(?m)^X-Mini-Buildd-Timecode: .*$", f"X-Mini-Buildd-Timecode: {timecode}", text)
    forged = work / breq.name
    forged.write_text(text)
    (work / (breq.name + ".tar")).write_bytes((breq.parent / (breq.name + ".tar")).read_bytes())
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
    assert "unknown key" in str(event["extra"]), event
    assert not list((grover.home / "incoming").iterdir())
    # no build: no build log and no buildresult for the forged request
    forged_dir = grover.home / "var" / "shared" / "builds" / "mbd-remote-hello" / V / timecode
    assert not list(forged_dir.rglob("*buildresult*")) and not list(forged_dir.rglob("*.buildlog"))
    after = sorted(p.name for p in (grover.home / "var" / "shared" / "builds" / "mbd-remote-hello" / V).iterdir())
    assert set(before) <= set(after)


def test_replayed_buildrequest_is_rejected(net, tmp_path):
    """Issue #11 item 5: the signed buildrequest bert sent to grover (plain FTP: anyone on the way
    has a copy) is sent to grover again, byte for byte. Grover built it already: REJECTED as
    replayed, nothing built, its build dir unchanged."""
    bert, grover = net["bert"], net["grover"]
    breq = _bert_buildrequest(bert, "mbd-remote-hello")
    assert changes.Buildrequest(breq).x_get("Builder") == grover.url
    work = tmp_path / "replay"
    work.mkdir()
    for name in (breq.name + ".tar", breq.name):
        (work / name).write_bytes((breq.parent / name).read_bytes())
    builds = grover.home / "var" / "shared" / "builds" / "mbd-remote-hello"
    before = tree_digest(builds)
    since = now_iso()
    raw_ftp_upload(grover.host, grover.ftp_port, [work / (breq.name + ".tar"), work / breq.name])
    event = wait_event(grover.url, ("REJECTED", "BUILDING"), "mbd-remote-hello", V, timeout=120, after=since)
    assert event["type"] == "REJECTED", event
    assert "replayed buildrequest (accepted before at" in str(event["extra"]), event
    assert tree_digest(builds) == before
    assert not list((grover.home / "incoming").iterdir())


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


def _slow_source_package(workdir, name, version, distribution, seconds):
    """A source package whose build sleeps ``seconds`` (a build that is surely still running)."""
    return make_source_package(workdir, name, version, distribution, build_sleep=seconds)


def test_buildresult_signed_by_the_wrong_peer_is_rejected(net, tmp_path):
    """Issue #11 item 5: bert has two trusted builders. While one of them builds bert's package,
    a buildresult for it signed by the *other* one (a failed build: accepted, the package would end
    FAILED) reaches bert over FTP. REJECTED naming the expected builder and the actual signer; the
    package then installs from the real builder's result."""
    bert, grover, oscar = net["bert"], net["grover"], net["oscar"]
    for other in (grover, oscar):
        if not (_remote_active(bert, other) and _remote_active(other, bert)):
            _link(bert, other)
    source = "mbd-remote-wrongpeer"
    since = now_iso()
    dsc_changes = _slow_source_package(tmp_path, source, V, "bookworm-test-unstable", 20)
    cf = write_dput_cf(tmp_path / "dput.cf", "bert", f"{bert.host}:{bert.ftp_port}")
    proc = dput(cf, "bert", dsc_changes)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    packaging = wait_event(bert.url, ("PACKAGING", "REJECTED"), source, V, timeout=120, after=since)
    assert packaging["type"] == "PACKAGING", packaging["extra"].get("error")
    builder = {grover.url: grover, oscar.url: oscar}[packaging["extra"]["buildrequests"]["amd64"]["builder"]]
    wrong = oscar if builder is grover else grover

    # The wrong peer's buildresult: as its daemon would make it, from bert's own buildrequest,
    # claiming the real builder, signed with the wrong peer's instance key.
    breq = changes.Buildrequest(_bert_buildrequest(bert, source))
    assert breq.x_get("Builder") == builder.url
    build_dir, out_dir = tmp_path / "forged-build", tmp_path / "forged-result"
    build_dir.mkdir()
    (build_dir / "build.log").write_text("Status: failed\n")
    bres = changes.create_buildresult(breq, build_dir, out_dir, sbuild_summary={"Status": "failed"},
                                      buildlog_path="build.log", gnupg=gnupg.Gnupg(wrong.home / ".gnupg"))
    assert bres.x_get("Builder") == builder.url and bres.timecode == breq.timecode
    raw_ftp_upload(bert.host, bert.ftp_port, bres.file_paths() + [bres.path])

    rejected = wait_event(bert.url, ("REJECTED", "FAILED", "INSTALLED"), source, V, timeout=300, after=since)
    assert rejected["type"] == "REJECTED", rejected
    why = str(rejected["extra"])
    assert f"expected remote {builder.url}" in why and f"signed by remote {wrong.url}" in why, why
    event = wait_event(bert.url, ("INSTALLED", "FAILED"), source, V, timeout=900, after=since)
    assert event["type"] == "INSTALLED", event["extra"].get("error")
    assert event["extra"]["buildresults"]["amd64"]["builder"] == builder.url
    assert _ls(bert, source).get("bookworm-test-unstable") == V
