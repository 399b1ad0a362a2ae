"""Remote prepare/check against a real peer daemon (real gpg, real HTTP), from the test process's
instance ("us", http://localhost:8066, not serving): handshake refusal, forged and replayed
handshakes, the handshake call as a signing oracle, the
pending activation while the peer does not know us, a wrong URL, a wrong key, and success once
the peer has an active Remote for us. No chroot, no build."""

# pytest idioms: fixtures are parameters named like them; Django and the code under test are imported after the
# test set-up.
# pylint: disable=redefined-outer-name,import-outside-toplevel

import os

import pytest
import requests

from mini_buildd.tools import gnupg
from mini_buildd import net
from tests.helpers.daemon import free_port
from tests.helpers.remote_instances import ED25519, our_daemon_with_key, RemoteInstance

PEER_HOST = "127.0.0.5"
#: The handshakes read and write our Remotes as the daemon does (committed; remotes_cleanup removes them).
pytestmark = pytest.mark.usefixtures("committed_db")


@pytest.fixture(scope="module")
def us(django_db_blocker):
    """The test process's Daemon with an ed25519 key."""
    return our_daemon_with_key(django_db_blocker)


@pytest.fixture(scope="module")
def peer(tmp_path_factory):
    """A second instance (the remote peer) on a loopback address; torn down after."""
    if os.geteuid() != 0:
        pytest.skip("needs root (the daemon runs as its dedicated user root)")
    port = free_port(PEER_HOST)
    inst = RemoteInstance("peer", PEER_HOST, tmp_path_factory.mktemp("remote-peer"), port, free_port(PEER_HOST), "mbd-it-peer")
    try:
        inst.bootstrap()
        inst.start()
        yield inst
    finally:
        inst.teardown()


@pytest.fixture
def remotes_cleanup():
    from mini_buildd import models
    yield
    models.Remote.objects.all().delete()


def _remote(url, key=""):
    from mini_buildd import models
    return models.Remote.objects.create(http=url, key=key)


def _peer_knows_us(peer, us, activate):
    """A Remote for us on the peer, with our key pasted (we serve no HTTP): its check fails (we are
    unreachable), so it is Prepared (x); ``activate`` makes it pending (A) = listed in its status."""
    code = (f"r, _ = models.Remote.objects.get_or_create(http='http://localhost:8066')\n"
            f"r.key = {us.gnupg().pub_key()!r}\nr.save()\nr.mbd_prepare()\n")
    if activate:
        code += "r.mbd_activate()\n"
    code += "print(r.mbd_status_display())"
    return peer.django(code).strip()


def _request(gpg, challenge=None, from_url="http://localhost:8066"):
    from mini_buildd.pipeline import remotes
    challenge = challenge or remotes.new_challenge()
    return challenge, gpg.sign_message(remotes.handshake_text(remotes.HANDSHAKE_REQUEST, Challenge=challenge, From=from_url))


def test_forged_handshake_fails(peer, us, tmp_path):
    from mini_buildd.pipeline import remotes
    url = f"{peer.url}/mini_buildd/api/handshake/"
    # a peer without Remotes knows nobody
    r = requests.get(url, params={"signed_message": _request(us.gnupg())[1]}, timeout=20)
    assert r.status_code == 400 and "does not match" in r.json()["detail"]
    _peer_knows_us(peer, us, activate=False)
    try:
        challenge, signed = _request(us.gnupg())
        ok = requests.get(url, params={"signed_message": signed}, timeout=20)
        assert ok.status_code == 200
        peer_key = requests.get(f"{peer.url}/mini_buildd/api/pub_key/", timeout=10).json()
        answer = remotes.parse_handshake(remotes.HANDSHAKE_ANSWER, gnupg.verify_message(ok.json(), [peer_key]))
        assert answer["Challenge"] == challenge and answer["To"] == "http://localhost:8066" and answer["By"] == peer.url
        # signed by a stranger
        stranger = gnupg.Gnupg(tmp_path / "stranger")
        try:
            stranger.gen_secret_key(ED25519, "stranger", "stranger@example.org")
            forged = _request(stranger)[1]
        finally:
            stranger.kill_agents()
        r = requests.get(url, params={"signed_message": forged}, timeout=20)
        assert r.status_code == 400
        # our signature, other text
        tampered = signed.replace(challenge, "0" * 64)
        r = requests.get(url, params={"signed_message": tampered}, timeout=20)
        assert r.status_code == 400
        # not signed at all
        r = requests.get(url, params={"signed_message": gnupg.unsign(signed)}, timeout=20)
        assert r.status_code == 400
    finally:
        peer.django("models.Remote.objects.all().delete()")


def test_handshake_is_no_signing_oracle(peer, us):
    """Anything signed by a remote's key (the old constant message, a buildrequest-like text, a
    request with a line smuggled in) is refused: the peer signs nothing but handshake answers."""
    from mini_buildd.pipeline import remotes
    url = f"{peer.url}/mini_buildd/api/handshake/"
    _peer_knows_us(peer, us, activate=False)
    challenge = remotes.new_challenge()
    try:
        for text in ("Hand Shake",
                     "Distribution: bookworm-test-unstable\nSource: hello\nVersion: 1.0\nArchitecture: amd64\n",
                     f"{remotes.HANDSHAKE_REQUEST}\nChallenge: {challenge}\nFrom: http://localhost:8066\nSource: hello\n",
                     f"{remotes.HANDSHAKE_ANSWER}\nChallenge: {challenge}\nFrom: http://localhost:8066\n",
                     f"{remotes.HANDSHAKE_REQUEST}\nChallenge: {challenge}\nFrom: http://localhost:8066 Source: hello\n"):
            r = requests.get(url, params={"signed_message": us.gnupg().sign_message(text)}, timeout=20)
            assert r.status_code == 400 and "not a handshake request" in r.json()["detail"], (text, r.text)
            assert "BEGIN PGP" not in r.text
    finally:
        peer.django("models.Remote.objects.all().delete()")


class _Replayer:
    """An attacker's HTTP server (e.g. where the remote's name points after DNS spoofing): it
    answers every handshake with one recorded answer of the real peer."""

    def __init__(self, answer):
        import http.server
        import json
        import threading
        body = json.dumps(answer).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            """Answers every GET with the recorded JSON."""
            def do_GET(self):  # pylint: disable=invalid-name
                """The recorded answer."""
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args):
                pass
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def test_replayed_handshake_answer_refused(peer, us, remotes_cleanup):  # pylint: disable=unused-argument
    """A recorded, genuinely signed handshake answer of the peer, replayed by someone else at the
    peer's address, does not pass our handshake; neither does an answer the peer gave another
    caller. The real peer passes (control)."""
    from mini_buildd.pipeline import remotes
    peer_key = requests.get(f"{peer.url}/mini_buildd/api/pub_key/", timeout=10).json()
    _peer_knows_us(peer, us, activate=False)
    try:
        real = _remote(peer.url, key=peer_key)
        assert remotes.handshake(real) is True
        old_challenge, signed = _request(us.gnupg())
        recorded = requests.get(f"{peer.url}/mini_buildd/api/handshake/", params={"signed_message": signed}, timeout=20).json()
        assert remotes.verify_handshake_answer(real, recorded, old_challenge)["Challenge"] == old_challenge
        replayer = _Replayer(recorded)
        try:
            impostor = _remote(replayer.url, key=peer_key)
            with pytest.raises(remotes.RemoteError, match="does not answer our challenge"):
                remotes.handshake(impostor)
        finally:
            replayer.close()
        # an answer the peer gave another caller (From: someone else) is not for us
        challenge, signed = _request(us.gnupg(), from_url="http://127.0.0.77:8066")
        other = requests.get(f"{peer.url}/mini_buildd/api/handshake/", params={"signed_message": signed}, timeout=20).json()
        with pytest.raises(remotes.RemoteError, match="addressed to http://127.0.0.77:8066, not to us"):
            remotes.verify_handshake_answer(real, other, challenge)
    finally:
        peer.django("models.Remote.objects.all().delete()")


def test_wrong_url(peer, us, remotes_cleanup):  # pylint: disable=unused-argument
    from mini_buildd.models import StatusError
    nowhere = f"http://127.0.0.1:{free_port()}"
    # No key to fetch: prepare fails, says why.
    r = _remote(nowhere)
    with pytest.raises(StatusError):
        r.mbd_pca()
    r.refresh_from_db()
    assert r.mbd_is_removed() and "Can't get the public key" in r.status_message
    # Key given, but nobody answers there: Prepared with the failed flag.
    peer_key = requests.get(f"{peer.url}/mini_buildd/api/pub_key/", timeout=10).json()
    r = _remote(f"http://127.0.0.1:{free_port()}", key=peer_key)
    with pytest.raises(StatusError):
        r.mbd_pca()
    r.refresh_from_db()
    assert r.mbd_status_display() == "Prepared (x)" and "unavailable" in r.status_message


def test_wrong_key(peer, us, remotes_cleanup, tmp_path):  # pylint: disable=unused-argument
    from mini_buildd.models import StatusError
    other = gnupg.Gnupg(tmp_path / "other")
    try:
        other.gen_secret_key(ED25519, "other", "other@example.org")
        other_key = other.pub_key()
    finally:
        other.kill_agents()
    _peer_knows_us(peer, us, activate=True)
    try:
        r = _remote(peer.url, key=other_key)
        with pytest.raises(StatusError):
            r.mbd_pca()
        r.refresh_from_db()
        assert r.mbd_status_display() == "Prepared (x)"
        assert "not signed by the stored remote key" in r.status_message
    finally:
        peer.django("models.Remote.objects.all().delete()")


def test_pending_until_peer_knows_us_then_active(peer, us, remotes_cleanup):  # pylint: disable=unused-argument
    from mini_buildd.pipeline import remotes
    from mini_buildd.models import StatusError
    r = _remote(peer.url)
    with pytest.raises(StatusError):
        r.mbd_pca()
    r.refresh_from_db()
    # key fetched from the peer; activation pending (A) because the peer does not know us
    assert r.key_long_id and r.mbd_status_display() == "Prepared (A)"
    assert "refused our handshake" in r.status_message
    assert not r.mbd_is_active()
    # peer has us, but not active: handshake works, we are not listed -> still pending
    _peer_knows_us(peer, us, activate=False)
    try:
        with pytest.raises(StatusError, match="does not list us"):
            r.mbd_check()
        r.refresh_from_db()
        assert r.mbd_status_display() == "Prepared (A)"
        # the peer activates (pending there: it can't reach us) -> listed -> our check activates
        assert _peer_knows_us(peer, us, activate=True) == "Prepared (A)"
        r.mbd_check()
        r.refresh_from_db()
        assert r.mbd_is_active()
        status = remotes.fetch_status(r)
        assert status["remotes"] == ["http://localhost:8066"] and status["load"] >= 0
        assert net.client_url(r.http) == peer.url
    finally:
        peer.django("models.Remote.objects.all().delete()")
    # the peer forgot us: the next check fails, the Remote waits for reactivation (A)
    with pytest.raises(StatusError):
        r.mbd_check()
    r.refresh_from_db()
    assert r.mbd_status_display() == "Prepared (A)"


def test_wake_without_command(peer, remotes_cleanup):  # pylint: disable=unused-argument
    from mini_buildd.pipeline import remotes
    _remote(peer.url)
    with pytest.raises(ValueError, match="no wake command"):
        remotes.wake(peer.url)
    with pytest.raises(ValueError, match="No remote"):
        remotes.wake("http://nowhere:1")


def test_wake_command_runs(tmp_path, remotes_cleanup):  # pylint: disable=unused-argument
    """A sleeping remote (nothing listens) is woken by its wake command: here the command starts
    nothing, so the status stays unavailable, but the command ran each attempt."""
    from mini_buildd.pipeline import remotes
    marker = tmp_path / "woken"
    url = f"http://127.0.0.1:{free_port()}"
    r = _remote(url)
    r.wake_command = f"echo x >> {marker}"
    r.save()
    with pytest.raises(ValueError, match="wake attempt"):
        remotes.wake(url, sleep=0, attempts=3)
    assert marker.read_text().count("x") == 3
