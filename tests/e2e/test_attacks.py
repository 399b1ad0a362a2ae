"""Attacks of a hostile uploader on the upload pipeline (issue #11), each written as the attack
and asserting that it fails: real daemon, real FTP, real sbuild and reprepro.

Item 1: an unsigned upload colliding with an ongoing package (same source, version and
X-Mini-Buildd-Timecode) must neither replace its files nor get installed.
Item 2: the ongoing build's own buildrequest re-sent over FTP (unsigned, or as a byte-identical
replay) must not touch its build directory nor fail the build.
Item 3: .dsc file names are checked before any path is made from them; a .dsc of another source.
Item 4: auto-ports into a repository the uploader has no rights in.
Item 6: a planted, unsigned buildresult in a build dir is never forwarded by retry_uploads.
Item 8: MD5-only file lists, a .dsc name starting with '-', X-Mini-Buildd-Key/-Bkey fields, and a
changes file of one FTP session claiming another session's files.
"""

import ftplib
import hashlib
import io
import pathlib
import re
import socket
import threading

import pytest

from mini_buildd.tools import gnupg
from mini_buildd.api import calls  # noqa: F401  pylint: disable=unused-import
from mini_buildd.api.client import Client
from tests.helpers.instance import ADMIN_PASSWORD
from tests.helpers.packages import make_source_package, now_iso, raw_ftp_upload, tree_digest, wait_event, wait_for
from tests.helpers.uploads import files_of, ftp_upload

DIST = "bookworm-test-unstable"


def _rejected(instance, name, after, timeout=300):
    return wait_for(instance.url, lambda e: e["type"] in ("REJECTED", "PACKAGING", "INSTALLED")
                    and e["extra"].get("changes", "").endswith(name), after=after, timeout=timeout)


def _digest(directory, names):
    return {n: hashlib.sha256((directory / n).read_bytes()).hexdigest() for n in names}


def _sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _api(instance, call, **params):
    client = Client(instance.url)
    assert client.login(ADMIN_PASSWORD, user="admin")
    return client.call(call, params, confirm=True)


def _pool_sha256(instance, source, name):
    found = list((instance.home / "repositories" / "test" / "pool").glob(f"*/*/{source}/{name}"))
    assert len(found) == 1, found
    return _sha256(found[0])


# ------------------------------------------------------------------------------------------------ items 1 and 2
def test_collisions_with_an_ongoing_package(instance, tmp_path):
    """Item 1 and 2: a slow legitimate build; while it runs, (1) an unsigned upload with the same
    source, version and X-Mini-Buildd-Timecode but other content, (2a) its own buildrequest,
    signature stripped, and (2b) the signed buildrequest replayed byte for byte. All REJECTED;
    the package's files and build dir stay byte-identical; the original source is installed."""
    name, version = "mbd-attack-swap", "1.0~test12+1"
    legit = make_source_package(tmp_path / "legit", name, version, DIST, build_sleep=25)
    legit_tar = next(p for p in files_of(legit) if p.name.endswith(".tar.xz"))
    started = now_iso()
    ftp_upload(instance, legit)
    packaging = wait_event(instance.url, ("PACKAGING", "REJECTED"), name, version, after=started)
    assert packaging["type"] == "PACKAGING", packaging
    key, timecode = packaging["extra"]["key"], packaging["extra"]["timecode"]
    event_dir = instance.home / "var" / "events" / key / "source"
    upload_names = [legit.name] + [p.name for p in files_of(legit)]
    before_upload = _digest(event_dir, upload_names)

    building = wait_event(instance.url, ("BUILDING",), name, version, after=started)
    bkey = building["extra"]["bkey"]
    build_dir = instance.home / "var" / "shared" / "builds" / bkey
    breq_names = [p.name for p in build_dir.glob("*_mini-buildd-buildrequest_*")]
    before_build = _digest(build_dir, breq_names)

    # (1) the stranger's upload: same key, other content
    evil = make_source_package(tmp_path / "evil", name, version, DIST, payload="owned by a stranger\n")
    evil.write_text(evil.read_text().replace("Changes:", f"X-Mini-Buildd-Timecode: {timecode}\nChanges:", 1))
    t1 = now_iso()
    ftp_upload(instance, evil)
    event = _rejected(instance, evil.name, t1)
    assert event["type"] == "REJECTED", event
    assert re.search(r"(?i)being built already", event["extra"]["error"]["detail"]), event
    assert event["extra"]["key"] != key, "the stranger's upload got the ongoing package's key"

    # (2a) the running build's own buildrequest, signature stripped, re-sent over FTP
    breq = next(build_dir.glob("*_mini-buildd-buildrequest_*.changes"))
    stripped = tmp_path / "replay-unsigned" / breq.name
    stripped.parent.mkdir()
    stripped.write_text(gnupg.unsign(breq.read_text()))
    (stripped.parent / (breq.name + ".tar")).write_bytes((build_dir / (breq.name + ".tar")).read_bytes())
    t2 = now_iso()
    raw_ftp_upload("127.0.0.1", instance.ftp_port, [stripped.parent / (breq.name + ".tar"), stripped])
    event = _rejected(instance, breq.name, t2)
    assert event["type"] == "REJECTED" and re.search(r"(?i)not signed", event["extra"]["error"]["detail"]), event

    # (2b) the signed buildrequest replayed byte for byte
    replay = tmp_path / "replay-signed"
    replay.mkdir()
    for n in breq_names:
        (replay / n).write_bytes((build_dir / n).read_bytes())
    t3 = now_iso()
    raw_ftp_upload("127.0.0.1", instance.ftp_port, [replay / (breq.name + ".tar"), replay / breq.name])
    event = _rejected(instance, breq.name, t3)
    assert event["type"] == "REJECTED" and re.search(r"(?i)replay|running here already|built here already",
                                                     event["extra"]["error"]["detail"]), event

    assert _digest(build_dir, breq_names) == before_build
    assert _digest(event_dir, upload_names) == before_upload
    done = wait_event(instance.url, ("INSTALLED", "FAILED"), name, version, after=started)
    assert done["type"] == "INSTALLED", done
    assert done["extra"]["key"] == key
    assert _pool_sha256(instance, name, legit_tar.name) == _sha256(legit_tar)
    sources = (instance.home / "repositories" / "test" / "dists" / DIST / "main" / "source" / "Sources").read_text() \
        if (instance.home / "repositories" / "test" / "dists" / DIST / "main" / "source" / "Sources").exists() else ""
    if sources:
        assert _sha256(legit_tar) in sources
    assert not list((instance.home / "incoming").iterdir())
    assert not list((instance.home / "var" / "quarantine").iterdir())


# ------------------------------------------------------------------------------------------------ item 3
def _rewrite_dsc(changes_path, edit):
    """Apply ``edit(text)`` to the upload's .dsc and fix the checksums of the .dsc in the changes."""
    dsc = next(p for p in files_of(changes_path) if p.name.endswith(".dsc"))
    old = {algo: hashlib.new(algo, dsc.read_bytes()).hexdigest() for algo in ("md5", "sha1", "sha256")}
    old_size = dsc.stat().st_size
    dsc.write_text(edit(dsc.read_text()))
    data = dsc.read_bytes()
    text = changes_path.read_text()
    for algo, digest in old.items():
        text = text.replace(f"{digest} {old_size} ", f"{hashlib.new(algo, data).hexdigest()} {len(data)} ")
    changes_path.write_text(text)
    return dsc


@pytest.mark.parametrize("bad_name, reason", [
    ("../../../../../../etc/passwd", r"(?i)invalid file name"),
    ("-rf", r"(?i)invalid file name"),
])
def test_dsc_file_names_checked_before_use(instance, tmp_path, bad_name, reason):
    tag = hashlib.md5(bad_name.encode()).hexdigest()[:6]
    c = make_source_package(tmp_path, f"mbd-attack-dscname-{tag}", "1.0~test12+1", DIST)
    passwd_md5 = hashlib.md5(pathlib.Path("/etc/passwd").read_bytes()).hexdigest()
    size = pathlib.Path("/etc/passwd").stat().st_size

    def edit(text):
        return text.replace("Files:\n", f"Files:\n {passwd_md5} {size} {bad_name}\n")
    _rewrite_dsc(c, edit)
    t = now_iso()
    ftp_upload(instance, c)
    event = _rejected(instance, c.name, t)
    assert event["type"] == "REJECTED" and re.search(reason, event["extra"]["error"]["detail"]), event
    assert not list((instance.home / "incoming").iterdir())
    assert not (instance.home / "var" / "events" / "rf").exists()


def test_dsc_of_another_source(instance, tmp_path):
    c = make_source_package(tmp_path, "mbd-attack-dscsrc", "1.0~test12+1", DIST)
    _rewrite_dsc(c, lambda text: text.replace("Source: mbd-attack-dscsrc", "Source: mbd-someone-else"))
    t = now_iso()
    ftp_upload(instance, c)
    event = _rejected(instance, c.name, t)
    assert event["type"] == "REJECTED" and re.search(r"(?i)not of the uploaded", event["extra"]["error"]["detail"]), event


# ------------------------------------------------------------------------------------------------ item 4
def test_auto_ports_need_rights_in_the_target_repository(instance, tmp_path):
    instance.django("""
repo, created = models.Repository.objects.get_or_create(identity="guarded", defaults={"layout": models.Layout.objects.get(name="Default")})
repo.distributions.set(models.Distribution.objects.all())
repo.mbd_pca()
print(repo.mbd_status_display())
from mini_buildd.archive import snapshots
snapshots.run()  # its due timed snapshots now, not during the digest comparison below
""")
    guarded = instance.home / "repositories" / "guarded"
    before = tree_digest(guarded)
    c = make_source_package(tmp_path, "mbd-attack-autoport", "1.0~test12+1", DIST,
                            changelog_extra="MINI_BUILDD_OPTION: auto-ports=bookworm-guarded-unstable")
    t = now_iso()
    ftp_upload(instance, c)
    event = _rejected(instance, c.name, t)
    assert event["type"] == "REJECTED", event
    assert re.search(r"(?i)auto-ports to bookworm-guarded-unstable", event["extra"]["error"]["detail"]), event
    assert tree_digest(guarded) == before


# ------------------------------------------------------------------------------------------------ item 6
class _FtpCatcher:
    """A listening socket that records whether anybody connected (an FTP server we'd be sent to)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.settimeout(0.5)
        self.connections = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"ftp://127.0.0.1:{self.sock.getsockname()[1]}"

    def _run(self):
        while not self._stop.is_set():  # pylint: disable=deprecated-method  # pylint 2.16 mistakes Event.is_set for isSet
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self):
        self._stop.set()
        self.thread.join(5)
        self.sock.close()


def test_retry_uploads_does_not_forward_planted_results(instance):
    catcher = _FtpCatcher()
    try:
        planted = instance.home / "var" / "shared" / "builds" / "mbd-planted" / "1.0" / "20260101:000000:000000" / "amd64"
        planted.mkdir(parents=True)
        log = planted / "mbd-planted_1.0_amd64.buildlog"
        log.write_text("planted\n")
        data = log.read_bytes()
        (planted / "mbd-planted_1.0_mini-buildd-buildresult_amd64.changes").write_text(
            "Distribution: bookworm-test-unstable\nSource: mbd-planted\nVersion: 1.0\nArchitecture: amd64\n"
            f"X-Mini-Buildd-Timecode: 20260101:000000:000000\nX-Mini-Buildd-Upload-To: {catcher.url}\n"
            f"Checksums-Sha256:\n {hashlib.sha256(data).hexdigest()} {len(data)} {log.name}\n"
            f"Files:\n {hashlib.md5(data).hexdigest()} {len(data)} mini-buildd extra {log.name}\n"
            "X-Mini-Buildd-Sbuild-Status: successful\n")
        instance.own(instance.home / "var" / "shared" / "builds" / "mbd-planted")
        result = _api(instance, "cronjob", id="retry_uploads")
        assert result, result
        assert catcher.connections == 0
        assert not (planted / "mbd-planted_1.0_mini-buildd-buildresult_amd64.changes.upload").exists()
    finally:
        catcher.close()


# ------------------------------------------------------------------------------------------------ item 8
def test_md5_only_file_list(instance, tmp_path):
    c = make_source_package(tmp_path, "mbd-attack-md5only", "1.0~test12+1", DIST)
    text = c.read_text()
    text = re.sub(r"Checksums-Sha1:\n( .*\n)+", "", text)
    text = re.sub(r"Checksums-Sha256:\n( .*\n)+", "", text)
    c.write_text(text)
    t = now_iso()
    ftp_upload(instance, c)
    event = _rejected(instance, c.name, t)
    assert event["type"] == "REJECTED" and re.search(r"(?i)sha-256", event["extra"]["error"]["detail"]), event


def test_key_fields_do_not_override_event_data(instance, tmp_path):
    c = make_source_package(tmp_path, "mbd-attack-keyfield", "1.0~test12+1", "bookworm-test-unstable-rollback0")
    c.write_text(c.read_text().replace("Changes:", "X-Mini-Buildd-Key: mbd-victim/1.0/x\n"
                                       "X-Mini-Buildd-Bkey: mbd-victim/1.0/x/source\nX-Mini-Buildd-Changes: ../../x.html\nChanges:", 1))
    t = now_iso()
    ftp_upload(instance, c)
    event = _rejected(instance, c.name, t)
    assert event["type"] == "REJECTED", event
    assert event["extra"]["key"].startswith("mbd-attack-keyfield/1.0~test12+1/")
    assert event["extra"]["bkey"].startswith("mbd-attack-keyfield/")
    assert event["extra"]["changes"].endswith(c.name) and ".." not in event["extra"]["changes"]


def test_changes_of_one_session_cannot_claim_another_sessions_files(instance, tmp_path):
    """Session A has stored its tarball but not yet its changes file (still connected); session
    B sends a changes file listing A's tarball. B must not get it; A's upload keeps it."""
    a = make_source_package(tmp_path / "a", "mbd-attack-claim", "1.0~test12+1", "bookworm-test-unstable-rollback0")
    tarball = next(p for p in files_of(a) if p.name.endswith(".tar.xz"))
    ftp_a = ftplib.FTP()
    ftp_a.connect("127.0.0.1", instance.ftp_port, timeout=30)
    ftp_a.login()
    ftp_a.cwd("/incoming")
    for p in files_of(a):
        with open(p, "rb") as f:
            ftp_a.storbinary(f"STOR {p.name}", f)
    # Session B: a changes file of its own, listing A's tarball (and a .dsc of its own).
    b_dir = tmp_path / "b"
    b_dir.mkdir()
    b_changes = b_dir / "mbd-attack-claim_1.0~test12+1_source.changes"
    b_changes.write_text(a.read_text().replace("Distribution: bookworm-test-unstable-rollback0", f"Distribution: {DIST}"))
    t = now_iso()
    _store_only(instance, b_changes, name="mbd-attack-claim_1.0~test12+1_b.changes")
    event_b = _rejected(instance, "mbd-attack-claim_1.0~test12+1_b.changes", t)
    assert event_b["type"] == "REJECTED" and re.search(r"(?i)missing file", event_b["extra"]["error"]["detail"]), event_b
    assert (instance.home / "incoming" / tarball.name).exists(), "session B took session A's file"
    # A finishes: its upload is judged on its own merits (rollback distribution), not on missing files.
    t2 = now_iso()
    with open(a, "rb") as f:
        ftp_a.storbinary(f"STOR {a.name}", f)
    ftp_a.quit()
    event_a = _rejected(instance, a.name, t2)
    assert event_a["type"] == "REJECTED" and re.search(r"(?i)rollback", event_a["extra"]["error"]["detail"]), event_a
    assert not list((instance.home / "incoming").iterdir())


def _store_only(instance, path, name):
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", instance.ftp_port, timeout=30)
    ftp.login()
    ftp.cwd("/incoming")
    ftp.storbinary(f"STOR {name}", io.BytesIO(path.read_bytes()))
    ftp.quit()


# ------------------------------------------------------------------------------------------------ item 7: time limit
def test_build_past_its_time_limit_fails(instance, tmp_path):
    """A build that runs past the distribution's build time limit is stopped and ends FAILED
    naming the limit."""
    instance.django("import datetime\nfor d in models.Distribution.objects.all():\n"
                    "    d.build_time_limit = datetime.timedelta(seconds=8)\n    d.save()\n")
    try:
        name, version = "mbd-attack-slow", "1.0~test12+1"
        c = make_source_package(tmp_path, name, version, DIST, build_sleep=600)
        t = now_iso()
        ftp_upload(instance, c)
        done = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), name, version, after=t, timeout=300)
        assert done["type"] == "FAILED", done
        assert re.search(r"time limit \(0:00:08\) exceeded", done["extra"]["error"]["detail"]), done
    finally:
        instance.django("import datetime\nfor d in models.Distribution.objects.all():\n"
                        "    d.build_time_limit = datetime.timedelta(hours=6)\n    d.save()\n")


# ------------------------------------------------------------------------------------------------ issue #12 item 2
def _add_listed_files(changes_path, files):
    """List extra files (name -> bytes) in a changes file (Files and all Checksums fields)."""
    text = changes_path.read_text()
    for name, data in files.items():
        (changes_path.parent / name).write_bytes(data)
        text = text.replace("Checksums-Sha1:\n", f"Checksums-Sha1:\n {hashlib.sha1(data).hexdigest()} {len(data)} {name}\n")
        text = text.replace("Checksums-Sha256:\n", f"Checksums-Sha256:\n {hashlib.sha256(data).hexdigest()} {len(data)} {name}\n")
        text = text.replace("Files:\n", f"Files:\n {hashlib.md5(data).hexdigest()} {len(data)} misc optional {name}\n")
    changes_path.write_text(text)


XSS = {"x.html": b"<html><script>fetch('/mini_buildd/api/stop/')</script></html>\n",
       "x.svg": b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>\n"}


def test_uploaded_html_is_never_served_as_html(instance, tmp_path):
    """An anonymous upload listing x.html and x.svg: when REJECTED, nothing but its changes file
    is kept; when accepted (kept with the package's events), they are served as text/plain with
    nosniff and a sandbox CSP."""
    import requests  # pylint: disable=import-outside-toplevel
    rejected = make_source_package(tmp_path / "r", "mbd-attack-xss-r", "1.0~test12+1", "bookworm-test-unstable-rollback0")
    _add_listed_files(rejected, XSS)
    t = now_iso()
    ftp_upload(instance, rejected)
    event = _rejected(instance, rejected.name, t)
    assert event["type"] == "REJECTED", event
    kept = instance.home / "var" / "events" / pathlib.Path(event["extra"]["changes"]).parent
    assert sorted(p.name for p in kept.iterdir() if not p.name.endswith(".json")) == [rejected.name]
    r = requests.get(f"{instance.url}/static/events/{event['extra']['changes']}", timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")

    accepted = make_source_package(tmp_path / "a", "mbd-attack-xss-a", "1.0~test12+1", DIST, fail=True)
    _add_listed_files(accepted, XSS)
    t = now_iso()
    ftp_upload(instance, accepted)
    done = wait_event(instance.url, ("FAILED", "INSTALLED", "REJECTED"), "mbd-attack-xss-a", "1.0~test12+1", after=t, timeout=600)
    assert done["type"] == "FAILED", done
    for name in XSS:
        r = requests.get(f"{instance.url}/static/events/{done['extra']['key']}/source/{name}", timeout=30)
        assert r.status_code == 200, (name, r.status_code)
        assert r.headers["Content-Type"].startswith("text/plain"), r.headers
        assert r.headers.get("X-Content-Type-Options") == "nosniff"
        assert "sandbox" in r.headers.get("Content-Security-Policy", "")
