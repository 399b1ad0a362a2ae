"""Integration tests of mini_buildd.tools.gnupg against the real gpg, gpgv and gpgconf."""

# pytest idioms: fixtures are parameters named like them; some fixtures are requested for their side effects
# only; asserts compare with empty containers on purpose (the type counts too).
# pylint: disable=redefined-outer-name,unused-argument,use-implicit-booleaness-not-comparison

import datetime
import glob
import pathlib
import time

import pytest

from mini_buildd.tools import gnupg

FAST_TEMPLATE = "Key-Type: EdDSA\nKey-Curve: ed25519\nKey-Usage: sign"

CHANGES = """Format: 1.8
Date: Sat, 01 Jan 2022 00:00:00 +0000
Source: mbd-hello
Architecture: source
Version: 1.0-1
Distribution: bookworm-test-unstable
Changes:
 mbd-hello (1.0-1) bookworm-test-unstable; urgency=medium
 .
   * Initial.
- a line starting with a dash
Files:
 0123456789abcdef0123456789abcdef 1000 devel optional mbd-hello_1.0-1.dsc
"""


def procs_mentioning(text):
    """Pids of all processes whose command line contains ``text``."""
    pids = []
    for cmdline in pathlib.Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(text).encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            pass
    return pids


@pytest.fixture(autouse=True)
def no_processes_left(tmp_path):
    """Every test must leave no process behind that works on its temp dir."""
    yield
    left = procs_mentioning(tmp_path)
    for pid in left:  # clean up before failing: stop the daemons of every home mentioned
        try:
            argv = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if "--homedir" in argv:
            gnupg.kill_agents(argv[argv.index("--homedir") + 1])
    assert left == [], f"processes left behind for {tmp_path}: {left}"


@pytest.fixture()
def make_gnupg(tmp_path):
    """Factory of instance keyrings below tmp_path; their agents are killed at teardown."""
    made = []

    def make(name, template=FAST_TEMPLATE, email=None, options=()):
        gpg = gnupg.Gnupg(tmp_path / name / ".gnupg", options=options, tmp_parent=tmp_path / "tmp")
        made.append(gpg)
        if template is not None:
            gpg.gen_secret_key(template, f"mini-buildd archive {name}", email or f"mini-buildd@{name}.example.org")
        return gpg

    yield make
    for gpg in made:
        gpg.kill_agents()


def test_template_parsing_and_default_template():
    items = dict(gnupg.parse_template(gnupg.DEFAULT_TEMPLATE))
    assert items == {"Key-Type": "RSA", "Key-Length": "4096", "Expire-Date": "0"}
    gnupg.validate_template(gnupg.DEFAULT_TEMPLATE)  # gpg's %dry-run accepts it
    gnupg.validate_template(FAST_TEMPLATE)
    with pytest.raises(gnupg.GnupgError, match="invalid algorithm"):
        gnupg.validate_template("Key-Type: NOPE\nKey-Length: 4096")
    with pytest.raises(gnupg.GnupgError, match="expected 'Keyword: value'"):
        gnupg.parse_template("Key-Type RSA")
    with pytest.raises(gnupg.GnupgError, match="no 'Key-Type:'"):
        gnupg.parse_template("Key-Length: 4096")


def test_gen_default_rsa_key(make_gnupg):
    started = time.monotonic()
    gpg = make_gnupg("rsa", template=gnupg.DEFAULT_TEMPLATE)
    assert time.monotonic() - started < 60
    key = gpg.get_secret_key()
    assert key["expires"] is None
    assert key["name"] == "mini-buildd archive rsa <mini-buildd@rsa.example.org>"
    info = gnupg.key_info(gpg.pub_key())
    assert len(info) == 1 and info[0]["fingerprint"] == key["fingerprint"]
    # RSA 4096: the armored public key is about as long as upstream's (~1.7k characters)
    assert 1400 < len(gpg.pub_key()) < 2200


def test_secret_key_lifecycle(make_gnupg, tmp_path):
    gpg = make_gnupg("life", template=None)
    home = tmp_path / "life" / ".gnupg"
    assert home.stat().st_mode & 0o777 == 0o700
    assert gpg.get_secret_key() is None
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
    template = FAST_TEMPLATE + "\nName-Real: ignored\n%commit"  # our name wins, our %commit comes last
    fpr = gpg.gen_secret_key(template, "mini-buildd archive life", "mb@life.example.org")
    key = gpg.get_secret_key()
    assert key["fingerprint"] == fpr and len(fpr) == 40
    assert key["long_id"] == fpr[-16:] and len(key["long_id"]) == 16
    assert key["name"] == "mini-buildd archive life <mb@life.example.org>"
    assert key["created"] >= before and key["expires"] is None

    with pytest.raises(gnupg.GnupgError, match="already exists"):
        gpg.gen_secret_key(FAST_TEMPLATE, "second", "second@example.org")

    pub = gpg.pub_key()
    assert pub.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert pub.rstrip().endswith("-----END PGP PUBLIC KEY BLOCK-----")
    assert "PRIVATE" not in pub
    [info] = gnupg.key_info(pub, tmp_parent=tmp_path / "ki")
    assert {k: info[k] for k in ("fingerprint", "long_id", "name", "expires")} == \
        {k: key[k] for k in ("fingerprint", "long_id", "name", "expires")}
    assert list((tmp_path / "ki").iterdir()) == []  # its temp keyring is gone

    gpg.remove_secret_key()
    assert gpg.get_secret_key() is None
    assert gpg.list_keys() == []
    with pytest.raises(gnupg.GnupgError, match="No secret key"):
        gpg.sign("x")
    gpg.remove_secret_key()  # no-op without key


def test_two_secret_keys_are_refused(make_gnupg):
    gpg = make_gnupg("one")
    other = make_gnupg("other")
    secret = other.gpg.export_keys(other.get_secret_key()["fingerprint"], secret=True, expect_passphrase=False)
    assert "PRIVATE KEY" in secret
    result = gpg.gpg.import_keys(secret)
    assert result.sec_imported == 1
    with pytest.raises(gnupg.GnupgError, match="exactly one secret key"):
        gpg.get_secret_key()


def test_sign_verify_round_trip(make_gnupg, tmp_path):
    gpg = make_gnupg("rt")
    key = gpg.get_secret_key()
    text = "Hello wörld\n- dash line\n-----not armor\n"

    signed = gpg.sign(text)
    assert signed.startswith("-----BEGIN PGP SIGNED MESSAGE-----")
    assert gnupg.is_clearsigned(signed) and not gnupg.is_clearsigned(text)
    assert gnupg.unsign(signed) == text
    result = gpg.verify(signed)
    assert result["valid"] is True
    assert result["fingerprint"] == key["fingerprint"] and result["key_id"] == key["long_id"]
    assert result["username"] == key["name"]

    tampered = signed.replace("Hello", "Hallo")
    assert gpg.verify(tampered)["valid"] is False

    with gnupg.TmpKeyring(parent=tmp_path) as keyring:
        assert keyring.add_pub_key(gpg.pub_key()) == [key["fingerprint"]]
        good = keyring.verify(signed)
        assert good.valid and good.fingerprint == key["fingerprint"] and good.key_id == key["long_id"]
        assert good.signer_key_ids == [key["long_id"]]
        assert good.data.decode() == text
        bad = keyring.verify(tampered)
        assert not bad.valid and bad.signer_key_ids == [key["long_id"]] and bad.data is None
        assert bad.signatures[0]["status"] == gnupg.VerifyResult.BAD

        # inline (not clear) signed message
        inline = gpg.sign(text, clear=False)
        assert inline.startswith("-----BEGIN PGP MESSAGE-----")
        result = keyring.verify(inline)
        assert result.valid and result.data.decode() == text

        # detached signature, given as text and as files
        sig = gpg.sign_detached(text)
        assert sig.startswith("-----BEGIN PGP SIGNATURE-----")
        assert keyring.verify(text.encode(), detached_sig=sig).valid
        assert not keyring.verify(b"other data", detached_sig=sig).valid
        (tmp_path / "data").write_text(text)
        (tmp_path / "data.asc").write_text(sig)
        assert keyring.verify(tmp_path / "data", detached_sig=tmp_path / "data.asc").valid
        exported = keyring.export(tmp_path / "kr.gpg")
        assert gnupg.gpgv_verify(exported, tmp_path / "data", tmp_path / "data.asc") == [key["long_id"]]

    # handshake helpers
    message = gpg.sign_message()
    assert gpg.verify_message(message, gpg.pub_key()) == gnupg.HANDSHAKE_MESSAGE + "\n"
    assert gpg.verify_message(gpg.sign_message("ping"), [gpg.pub_key()]) == "ping\n"
    with pytest.raises(gnupg.GnupgError):
        gpg.verify_message(tampered, gpg.pub_key())
    with pytest.raises(gnupg.GnupgError, match="no signature found"):
        gpg.verify_message("not signed at all\n", gpg.pub_key())


def test_sign_file_verified_by_gpgv(make_gnupg, tmp_path):
    gpg = make_gnupg("signer")
    key = gpg.get_secret_key()
    changes = tmp_path / "mbd-hello_1.0-1_source.changes"
    changes.write_text(CHANGES)
    changes.chmod(0o640)

    gpg.sign_file(changes)
    signed = changes.read_text()
    assert signed.startswith("-----BEGIN PGP SIGNED MESSAGE-----")
    assert "\n- - a line starting with a dash\n" in signed  # dash-escaped
    assert changes.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    with gnupg.TmpKeyring(parent=tmp_path) as keyring:
        keyring.add_pub_key(gpg.pub_key())
        keyring_file = keyring.export(tmp_path / "signer.gpg")
        assert keyring_file.read_bytes()[:1] != b"-"  # binary, not armored
        armored = keyring.export(tmp_path / "signer.asc", armor=True)
        assert armored.read_text(encoding="utf-8").startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert gnupg.gpgv_verify(keyring_file, changes) == [key["long_id"]]

    # Re-signing replaces the signature rather than nesting it.
    gpg.sign_file(changes)
    resigned = changes.read_text()
    assert resigned.count("-----BEGIN PGP SIGNED MESSAGE-----") == 1
    assert resigned.count("-----BEGIN PGP SIGNATURE-----") == 1
    assert gnupg.unsign(resigned) == CHANGES
    assert gnupg.gpgv_verify(keyring_file, changes) == [key["long_id"]]

    # A modified file fails.
    changes.write_text(resigned.replace("Version: 1.0-1", "Version: 1.0-2"))
    with pytest.raises(gnupg.GnupgError, match=key["long_id"]):
        gnupg.gpgv_verify(keyring_file, changes)


def test_wrong_key_fails_naming_signer(make_gnupg, tmp_path):
    alice = make_gnupg("alice")
    bob = make_gnupg("bob")
    alice_id = alice.get_secret_key()["long_id"]
    signed = alice.sign("from alice\n")
    (tmp_path / "msg.asc").write_text(signed)

    with gnupg.TmpKeyring(parent=tmp_path) as keyring:
        keyring.add_pub_key(bob.pub_key())
        bob_keyring = keyring.export(tmp_path / "bob.gpg")
        result = keyring.verify(signed)
        assert not result.valid
        assert result.signer_key_ids == [alice_id]
        assert result.signatures[0]["status"] == gnupg.VerifyResult.NO_PUBKEY
        assert alice_id in result.describe()

    with pytest.raises(gnupg.GnupgError, match=alice_id) as error:
        gnupg.gpgv_verify(bob_keyring, tmp_path / "msg.asc")
    assert error.value.signer_key_ids == [alice_id]

    with pytest.raises(gnupg.GnupgError, match=alice_id) as error:
        bob.verify_message(signed, bob.pub_key())
    assert error.value.signer_key_ids == [alice_id]
    assert bob.verify_message(signed, [bob.pub_key(), alice.pub_key()]) == "from alice\n"

    assert bob.verify(signed)["valid"] is False  # bob's own keyring does not know alice


def test_multiple_signatures(make_gnupg, tmp_path):
    """Like Debian's InRelease: several signatures, one unknown key is fine, one bad one is not."""
    alice, bob = make_gnupg("alice"), make_gnupg("bob")
    alice_id, bob_id = alice.get_secret_key()["long_id"], bob.get_secret_key()["long_id"]
    data = b"Origin: Test\n"
    both = alice.sign_detached(data) + bob.sign_detached(data)
    alice_good_bob_bad = alice.sign_detached(data) + bob.sign_detached(b"something else\n")

    with gnupg.TmpKeyring(parent=tmp_path) as keyring:
        keyring.add_pub_key(alice.pub_key())
        result = keyring.verify(data, detached_sig=both)
        assert result.valid and result.key_id == alice_id
        assert result.signer_key_ids == [alice_id, bob_id]
        assert [s["status"] for s in result.signatures] == [gnupg.VerifyResult.GOOD, gnupg.VerifyResult.NO_PUBKEY]

        keyring.add_pub_key(bob.pub_key())
        assert keyring.verify(data, detached_sig=both).valid
        result = keyring.verify(data, detached_sig=alice_good_bob_bad)
        assert not result.valid
        assert [s["status"] for s in result.signatures] == [gnupg.VerifyResult.GOOD, gnupg.VerifyResult.BAD]


def test_expired_key_counts_as_valid_for_archives(make_gnupg, tmp_path):
    # A key made and used "in 2020" that expired one day later.
    old = make_gnupg("old", template=None, options=["--faked-system-time", "20200101T000000"])
    old.gen_secret_key(FAST_TEMPLATE + "\nExpire-Date: 1d", "old archive key", "old@example.org")
    key = old.get_secret_key()
    assert key["expires"] == key["created"] + datetime.timedelta(days=1)
    signed = old.sign("Origin: Old\n")
    (tmp_path / "InRelease").write_text(signed)

    with gnupg.TmpKeyring(parent=tmp_path) as keyring:
        keyring.add_pub_key(old.pub_key())
        result = keyring.verify(signed)
        assert result.valid and result.key_id == key["long_id"]
        assert result.signatures[0]["status"] == gnupg.VerifyResult.EXPIRED_KEY
        assert not keyring.verify(signed, accept_expired_keys=False).valid
        keyring_file = keyring.export(tmp_path / "old.gpg")
        assert keyring.key_info(key["long_id"])["expires"] == key["expires"]  # pylint: disable=unsubscriptable-object
        assert keyring.key_info("0x" + key["fingerprint"])["fingerprint"] == key["fingerprint"]  # pylint: disable=unsubscriptable-object
        assert keyring.key_info("0123456789ABCDEF") is None

    assert gnupg.gpgv_verify(keyring_file, tmp_path / "InRelease") == [key["long_id"]]
    with pytest.raises(gnupg.GnupgError, match=key["long_id"]):
        gnupg.gpgv_verify(keyring_file, tmp_path / "InRelease", accept_expired_keys=False)
    with pytest.raises(gnupg.GnupgError, match="expired-key"):
        old.verify_message(signed, old.pub_key())  # peers must not use expired keys


def test_tmpkeyring_leaves_no_agent(tmp_path):
    keyring = gnupg.TmpKeyring(parent=tmp_path)
    with keyring:
        home = keyring.homedir
        assert home.parent == tmp_path and home.is_dir()
        assert home.stat().st_mode & 0o777 == 0o700
        # Public-key work starts no daemon at all ...
        keyring.import_archive_keyrings(glob=str(tmp_path / "none-*.gpg"))
        keyring.add_pub_key(_any_armored_key(tmp_path))
        assert procs_mentioning(home) == []
        # ... but make sure one runs now (secret key listing autostarts gpg-agent, like upstream).
        keyring.run_gpg(["--list-secret-keys"], autostart=True)
        assert gnupg.agent_pids(home) != []
        assert procs_mentioning(home) != []
    assert procs_mentioning(home) == []
    assert not home.exists()
    keyring.close()  # idempotent


def _any_armored_key(tmp_path):
    """An armored public key made with a throw-away instance keyring (its agent killed)."""
    gpg = gnupg.Gnupg(tmp_path / "throwaway")
    try:
        gpg.gen_secret_key(FAST_TEMPLATE, "throwaway", "throwaway@example.org")
        return gpg.pub_key()
    finally:
        gpg.kill_agents()


def test_recv_key_failure_leaves_no_dirmngr(tmp_path):
    with gnupg.TmpKeyring(parent=tmp_path) as keyring:
        home = keyring.homedir
        with pytest.raises(gnupg.GnupgError, match="2 attempts"):
            keyring.recv_key("F8D2585B8783D481", keyserver="hkp://127.0.0.1:1", retries=2, retry_delay=0)
        assert (home / "dirmngr.conf").read_text().startswith("no-use-tor")
        with pytest.raises(gnupg.GnupgError, match="Not a GnuPG key id"):
            keyring.recv_key("not-a-key", keyserver="hkp://127.0.0.1:1")
    assert procs_mentioning(home) == []


def test_kill_agents(make_gnupg, tmp_path):
    gpg = make_gnupg("agent")
    gpg.sign("starts the agent")
    home = gpg.homedir
    assert gnupg.agent_pids(home) != []
    gpg.kill_agents()
    assert gnupg.agent_pids(home) == []
    assert procs_mentioning(home) == []
    gpg.kill_agents()  # nothing running: fine
    # The key is still usable afterwards (agent restarts on demand) and is killed again.
    assert gpg.verify(gpg.sign("again"))["valid"]
    gpg.kill_agents()
    assert procs_mentioning(home) == []


ARCHIVE_KEYRINGS = glob.glob(gnupg.ARCHIVE_KEYRINGS_GLOB)
IN_RELEASES = sorted(glob.glob("/var/lib/apt/lists/*_InRelease"))


@pytest.mark.skipif(not ARCHIVE_KEYRINGS or not IN_RELEASES, reason="needs installed archive keyrings and apt lists")
def test_real_archive_release(tmp_path):
    in_release = pathlib.Path(IN_RELEASES[0])
    with gnupg.TmpKeyring(parent=tmp_path) as empty:
        unknown = empty.verify(in_release)
        assert not unknown.valid and unknown.signer_key_ids
        assert all(s["status"] == gnupg.VerifyResult.NO_PUBKEY for s in unknown.signatures)

    with gnupg.TmpKeyring(parent=tmp_path) as keyring:
        fingerprints = keyring.import_archive_keyrings()
        assert len(fingerprints) >= 2
        result = keyring.verify(in_release)
        assert result.valid, result.describe()
        assert result.signer_key_ids == unknown.signer_key_ids
        assert b"Origin:" in result.data
        signer = keyring.key_info(result.key_id)
        assert signer["fingerprint"] in fingerprints and signer["name"]  # pylint: disable=unsubscriptable-object
        exported = keyring.export(tmp_path / "archive.gpg")

    signers = gnupg.gpgv_verify(exported, in_release)
    assert signers and set(signers) <= set(unknown.signer_key_ids)


@pytest.mark.skipif(not ARCHIVE_KEYRINGS, reason="needs installed archive keyrings")
def test_fetch_key_from_archive_keyrings(tmp_path):
    with gnupg.TmpKeyring(parent=tmp_path) as keyring:
        fingerprint = keyring.import_archive_keyrings()[0]
        long_id = keyring.key_info(fingerprint)["long_id"]  # pylint: disable=unsubscriptable-object
    armored, info = gnupg.fetch_key(long_id, keyserver="hkp://127.0.0.1:1", retries=1, tmp_parent=tmp_path / "f")
    assert info["fingerprint"] == fingerprint
    assert [k["fingerprint"] for k in gnupg.key_info(armored)] == [fingerprint]
    # Not installed, keyserver unreachable: error after the retries.
    with pytest.raises(gnupg.GnupgError, match="Could not receive key"):
        gnupg.fetch_key("0123456789ABCDEF", keyserver="hkp://127.0.0.1:1", retries=1, tmp_parent=tmp_path / "f")
    assert list((tmp_path / "f").iterdir()) == []
