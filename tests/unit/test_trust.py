"""Trust decisions on buildrequests and buildresults (mini_buildd.pipeline.trust), each written as the
attack: a stale, future or replayed buildrequest, one addressed to another builder, an unsigned
one, and buildresults signed by a peer other than the builder the request went to. Real gpg (an
ed25519 key for the test instance and one for a "stranger" remote), real changes files; the
clock is passed in (``now``), never read by the assertions."""

import datetime
import hashlib

import pytest

from mini_buildd import changes, config, instance
from mini_buildd.tools import gnupg
from mini_buildd.pipeline import remotes, trust
from tests.helpers.remote_instances import ED25519, our_daemon_with_key

#: The checks read our Daemon and Remotes: each test in a transaction rolled back afterwards.
pytestmark = pytest.mark.django_db

UTC = datetime.timezone.utc
NOW = datetime.datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
STRANGER_URL = "http://127.0.0.9:8066"


def _tc(when):
    return when.strftime(changes.TIMECODE_FORMAT)


def _file_entry(path):
    data = path.read_bytes()
    return (hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest(), len(data))  # nosec: listing only


def _write(tmp_path, kind, timecode, builder, extra=b"payload"):
    """A buildrequest/buildresult for hello 1.0 amd64 with one listed file (unsigned)."""
    name = changes.name_for("hello", "1.0", kind, "amd64")
    listed = tmp_path / (name + ".tar")
    listed.write_bytes(extra)
    md5, sha256, size = _file_entry(listed)
    path = tmp_path / name
    path.write_text(f"""Format: 1.8
Distribution: bookworm-test-unstable
Source: hello
Version: 1.0
Architecture: amd64
X-Mini-Buildd-Timecode: {timecode}
X-Mini-Buildd-Builder: {builder}
Checksums-Sha256:
 {sha256} {size} {listed.name}
Files:
 {md5} {size} mini-buildd extra {listed.name}
""", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def us(django_db_blocker):
    """Our instance's key (made once, committed)."""
    return our_daemon_with_key(django_db_blocker).gnupg()


@pytest.fixture(scope="module")
def stranger(tmp_path_factory):
    gpg = gnupg.Gnupg(tmp_path_factory.mktemp("stranger") / "gnupg")
    gpg.homedir.mkdir(mode=0o700, parents=True, exist_ok=True)
    gpg.gen_secret_key(ED25519, "stranger", "stranger@example.org")
    yield gpg
    gpg.kill_agents()


@pytest.fixture
def stranger_remote(stranger):
    """The stranger as an active Remote of ours."""
    from mini_buildd import models
    info = stranger.get_secret_key()
    remote = models.Remote.objects.create(http=STRANGER_URL, key=stranger.pub_key(), key_fingerprint=info["fingerprint"],
                                          key_long_id=info["long_id"])
    remote._set(models.StatusModel.STATUS_ACTIVE)  # pylint: disable=protected-access
    yield remote
    models.Remote.objects.filter(http=STRANGER_URL).delete()


@pytest.fixture
def records():
    """A clean accepted-buildrequests record (removed afterwards)."""
    import shutil
    shutil.rmtree(config.paths.accepted_requests, ignore_errors=True)
    yield config.paths.accepted_requests
    shutil.rmtree(config.paths.accepted_requests, ignore_errors=True)


def _ours():
    return remotes.normalize_url(instance.http_url())


# ------------------------------------------------------------------------------------------------ freshness
@pytest.mark.parametrize("age,ok", [(datetime.timedelta(0), True), (datetime.timedelta(hours=23, minutes=59), True),
                                    (-datetime.timedelta(minutes=4), True),
                                    (datetime.timedelta(hours=24, seconds=1), False), (datetime.timedelta(days=30), False)])
def test_stale_buildrequest_refused(tmp_path, age, ok):
    breq = changes.Buildrequest(_write(tmp_path, changes.BUILDREQUEST, _tc(NOW - age), "http://x:1"))
    if ok:
        trust.check_fresh(breq, now=NOW)
    else:
        with pytest.raises(changes.ChangesError, match=r"stale buildrequest \(timecode .* older than 24 h\)"):
            trust.check_fresh(breq, now=NOW)


def test_buildrequest_from_the_future_refused(tmp_path):
    breq = changes.Buildrequest(_write(tmp_path, changes.BUILDREQUEST, _tc(NOW + datetime.timedelta(hours=1)), "http://x:1"))
    with pytest.raises(changes.ChangesError, match="from the future"):
        trust.check_fresh(breq, now=NOW)


# ------------------------------------------------------------------------------------------------ replay record
def test_replay_record(tmp_path, records):
    path = _write(tmp_path, changes.BUILDREQUEST, _tc(NOW), "http://x:1")
    breq = changes.Buildrequest(path)
    assert trust.accepted_before(breq) is None
    trust.accept_buildrequest(breq, now=NOW)
    # a byte-identical copy elsewhere (as re-sent over FTP) is the same request
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    copy = copy_dir / path.name
    copy.write_bytes(path.read_bytes())
    earlier = trust.accepted_before(changes.Buildrequest(copy))
    assert earlier is not None and earlier["bkey"] == breq.bkey and earlier["accepted"].startswith("2030-06-01 12:00:00")
    # claiming it a second time fails: two concurrent copies can't both be accepted
    with pytest.raises(changes.ChangesError, match=r"replayed buildrequest \(accepted before at 2030-06-01 12:00:00"):
        trust.accept_buildrequest(changes.Buildrequest(copy), now=NOW + datetime.timedelta(minutes=1))
    # the record is on disk only (survives a restart), one private file per request, no temp files
    assert [p.name for p in records.iterdir()] == [trust.request_digest(breq)]
    assert records.stat().st_mode & 0o077 == 0
    # one changed byte is another request
    path.write_bytes(path.read_bytes().replace(b"Format: 1.8", b"Format: 1.9"))
    assert trust.accepted_before(changes.Buildrequest(path)) is None


def test_replay_record_pruned_only_when_stale(tmp_path, records):
    breq = changes.Buildrequest(_write(tmp_path, changes.BUILDREQUEST, _tc(NOW), "http://x:1"))
    trust.accept_buildrequest(breq, now=NOW)
    # while the request could still pass the freshness check, its record stays
    assert trust.prune_accepted(now=NOW + trust.MAX_BUILDREQUEST_AGE) == 0
    assert trust.accepted_before(breq) is not None
    with pytest.raises(changes.ChangesError, match="stale"):
        trust.check_fresh(breq, now=NOW + trust.MAX_BUILDREQUEST_AGE + trust.MAX_CLOCK_SKEW + datetime.timedelta(seconds=1))
    assert trust.prune_accepted(now=NOW + trust.MAX_BUILDREQUEST_AGE + trust.MAX_CLOCK_SKEW + datetime.timedelta(seconds=1)) == 1
    assert trust.accepted_before(breq) is None


# ------------------------------------------------------------------------------------------------ signed buildrequests
def test_buildrequest_replay_attack(tmp_path, us, records):  # pylint: disable=unused-argument,redefined-outer-name
    """A real signed buildrequest is accepted once; the very same bytes again are refused as replayed."""
    now = datetime.datetime.now(UTC)
    path = _write(tmp_path, changes.BUILDREQUEST, _tc(now), _ours())
    us.sign_file(path)
    breq = changes.Buildrequest(path)
    trust.check_buildrequest(breq)
    trust.accept_buildrequest(breq)
    with pytest.raises(changes.ChangesError, match=r"replayed buildrequest \(accepted before at "):
        trust.check_buildrequest(changes.Buildrequest(path))


def test_buildrequest_stale_attack(tmp_path, us, records):  # pylint: disable=unused-argument,redefined-outer-name
    """An old signed buildrequest (e.g. downloaded from an events dir) is refused as stale."""
    old = datetime.datetime.now(UTC) - trust.MAX_BUILDREQUEST_AGE - datetime.timedelta(hours=1)
    path = _write(tmp_path, changes.BUILDREQUEST, _tc(old), _ours())
    us.sign_file(path)
    with pytest.raises(changes.ChangesError, match="stale buildrequest"):
        trust.check_buildrequest(changes.Buildrequest(path))
    assert not records.exists() or not any(records.iterdir())


def test_buildrequest_for_another_builder_refused(tmp_path, us, records):  # pylint: disable=unused-argument,redefined-outer-name
    path = _write(tmp_path, changes.BUILDREQUEST, _tc(datetime.datetime.now(UTC)), "http://other-builder:8066")
    us.sign_file(path)
    with pytest.raises(changes.ChangesError, match="addressed to builder http://other-builder:8066, not to us"):
        trust.check_buildrequest(changes.Buildrequest(path))


def test_buildrequest_unsigned_or_by_stranger_refused(tmp_path, us, stranger, records):  # pylint: disable=unused-argument,redefined-outer-name
    path = _write(tmp_path, changes.BUILDREQUEST, _tc(datetime.datetime.now(UTC)), _ours())
    with pytest.raises(changes.ChangesError, match="not signed"):
        trust.check_buildrequest(changes.Buildrequest(path))
    stranger.sign_file(path)   # the stranger is no remote of ours here
    with pytest.raises(changes.ChangesError, match="unknown key"):
        trust.check_buildrequest(changes.Buildrequest(path))


# ------------------------------------------------------------------------------------------------ buildresults
def test_buildresult_from_the_wrong_peer_refused(tmp_path, us, stranger, stranger_remote):  # pylint: disable=unused-argument,redefined-outer-name
    """A result for a build we sent to ourselves, signed by a remote we trust (the stranger), is
    refused naming both; the stranger's result for a build sent to it is accepted."""
    path = _write(tmp_path, changes.BUILDRESULT, _tc(datetime.datetime.now(UTC)), _ours())
    stranger.sign_file(path)
    bres = changes.Buildresult(path)
    with pytest.raises(changes.ChangesError) as e:
        trust.check_buildresult_signer(bres, _ours())
    assert f"expected this instance {_ours()}" in str(e.value) and f"signed by remote {STRANGER_URL}" in str(e.value)
    trust.check_buildresult_signer(bres, STRANGER_URL + "/")   # the builder it went to: fine
    # and the other way round: our signature on a build the stranger holds
    us.sign_file(path)
    with pytest.raises(changes.ChangesError, match=f"expected remote {STRANGER_URL}, signed by this instance"):
        trust.check_buildresult_signer(changes.Buildresult(path), STRANGER_URL)
    trust.check_buildresult_signer(changes.Buildresult(path), _ours())


def test_buildresult_unknown_builder_or_tampered_refused(tmp_path, us, stranger, stranger_remote):  # pylint: disable=unused-argument,redefined-outer-name
    from mini_buildd import models
    path = _write(tmp_path, changes.BUILDRESULT, _tc(datetime.datetime.now(UTC)), STRANGER_URL)
    stranger.sign_file(path)
    with pytest.raises(changes.ChangesError, match="neither this instance nor an active remote"):
        trust.check_buildresult_signer(changes.Buildresult(path), "http://127.0.0.10:8066")
    for nobody in (None, ""):
        with pytest.raises(changes.ChangesError, match="no builder recorded"):
            trust.check_buildresult_signer(changes.Buildresult(path), nobody)
    # a deactivated remote is no builder of ours
    stranger_remote._set(models.StatusModel.STATUS_PREPARED)  # pylint: disable=protected-access
    with pytest.raises(changes.ChangesError, match="neither this instance nor an active remote"):
        trust.check_buildresult_signer(changes.Buildresult(path), STRANGER_URL)
    stranger_remote._set(models.StatusModel.STATUS_ACTIVE)  # pylint: disable=protected-access
    # right signer, listed file swapped
    (tmp_path / (path.name + ".tar")).write_bytes(b"PAYLOAD")
    with pytest.raises(changes.ChangesError, match="checksum mismatch"):
        trust.check_buildresult_signer(changes.Buildresult(path), STRANGER_URL)


def test_buildresult_by_expired_key_of_the_right_builder_refused(tmp_path, us):  # pylint: disable=unused-argument,redefined-outer-name
    """A result signed "in 2020" with a builder's key that expired a day later (a leaked old key,
    or an old result) is refused although the key is the right builder's."""
    from mini_buildd import models
    old = gnupg.Gnupg(tmp_path / "old" / ".gnupg", options=["--faked-system-time", "20200101T000000"])
    old.homedir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        old.gen_secret_key(ED25519.replace("Expire-Date: 0", "Expire-Date: 1d"), "old builder", "old@example.org")
        info = old.get_secret_key()
        url = "http://127.0.0.11:8066"
        remote = models.Remote.objects.create(http=url, key=old.pub_key(), key_fingerprint=info["fingerprint"],
                                              key_long_id=info["long_id"])
        remote._set(models.StatusModel.STATUS_ACTIVE)  # pylint: disable=protected-access
        path = _write(tmp_path, changes.BUILDRESULT, _tc(datetime.datetime.now(UTC)), url)
        # Signed half a day after the key was made (a clock still at the key's creation second can see
        # the key "created in the future" when its generation took over a second: unusable).
        gnupg.Gnupg(old.homedir, options=["--faked-system-time", "20200101T120000"]).sign_file(path)
        with pytest.raises(changes.ChangesError, match="expired"):
            trust.check_buildresult_signer(changes.Buildresult(path), url)
        with pytest.raises(changes.ChangesError, match="expired"):
            instance.check_remote_signed(changes.Buildresult(path), trust.active_remotes())
    finally:
        old.kill_agents()
        models.Remote.objects.filter(http="http://127.0.0.11:8066").delete()
