"""Events (upstream §5.4): JSON format against the saved upstream events, file names, the queue,
ongoing tracking, waiting clients (threads and callbacks), reload after restart, expiry, SMTP
URL parsing and notification mails (against a tiny in-test SMTP server)."""

# pytest idioms: fixtures are parameters named like them; some fixtures are requested for their side effects
# only; asserts compare with empty containers on purpose (the type counts too).
# pylint: disable=redefined-outer-name,unused-argument,use-implicit-booleaness-not-comparison

import datetime
import json
import logging
import pathlib
import threading
import time

import pytest

from mini_buildd import events, notify
from mini_buildd.events import Event, Events, Type
from tests.helpers.smtp import smtp_server  # noqa: F401  pylint: disable=unused-import
from tests.helpers.reference import REFERENCE as REFERENCE_ROOT

REFERENCE = REFERENCE_ROOT / "events"
SAMPLES = sorted(REFERENCE.glob("*.sample.json"))
UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 11, 22, 1, 0, 0, tzinfo=UTC)


def make(type_, source="hello", version="1.0-1", dist="bookworm-test-unstable", seconds=0, arch="source", timecode=None, **extra):
    """An event at T0 + seconds with the usual key fields."""
    ts = T0 + datetime.timedelta(seconds=seconds)
    timecode = timecode or ts.strftime("%Y%m%d:%H%M%S:%f")
    key = f"{source}/{version}/{timecode}"
    extra = {"timecode": timecode, "key": key, "bkey": f"{key}/{arch}", "architecture": arch, **extra}
    return Event(Type(type_) if isinstance(type_, str) else type_, dist, source, version, ts, extra)


def save_dir_of(root, event):
    return pathlib.Path(root, *event.bkey.split("/"))


@pytest.fixture
def hub(tmp_path):
    h = Events(tmp_path / "events", queue_size=500)
    yield h
    h.shutdown(timeout=10)


# ---------------------------------------------------------------------- JSON
def test_samples_present():
    # DENIED (failed-login lockout) and PORT_OUTDATED (port watcher) are ours: upstream has no such events.
    assert {p.name.split(".")[0] for p in SAMPLES} == {t.value for t in Type} - {"DENIED", "PORT_OUTDATED"}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name.split(".")[0])
def test_json_round_trip_equals_reference(sample):
    data = json.loads(sample.read_text())
    event = Event.from_json(data)
    assert event.to_json() == data
    assert list(event.to_json()) == ["type", "distribution", "source", "version", "timestamp", "extra"]
    assert json.loads(event.dumps()) == data
    # From text, too; and the timestamp is an aware UTC datetime.
    again = Event.from_json(sample.read_text())
    assert again == event
    assert again.timestamp.utcoffset() == datetime.timedelta(0)
    assert again.type.value == sample.name.split(".")[0]


def test_timestamp_normalized_to_utc():
    naive = Event(Type.REMOVED, "d", "s", "1", datetime.datetime(2026, 1, 2, 3, 4, 5))
    assert naive.to_json()["timestamp"] == "2026-01-02T03:04:05.000000+00:00"
    cet = datetime.timezone(datetime.timedelta(hours=1))
    other = Event(Type.REMOVED, "d", "s", "1", datetime.datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=cet))
    assert other.to_json()["timestamp"] == "2026-01-02T02:04:05.000007+00:00"
    zulu = Event.from_json({"type": "REMOVED", "distribution": "d", "source": "s", "version": "1",
                            "timestamp": "2026-01-02T03:04:05.5Z", "extra": {}})
    assert zulu.timestamp == datetime.datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)
    now = Event(Type.REMOVED, "d", "s", "1")
    assert abs(now.timestamp - datetime.datetime.now(UTC)) < datetime.timedelta(seconds=10)


@pytest.mark.parametrize("bad", [
    "{not json", "[]", {"type": "BUILT"}, {"type": "EXPLODED", "distribution": "d", "source": "s", "version": "1", "timestamp": "2026-01-01T00:00:00+00:00"},
    {"type": "BUILT", "distribution": "d", "source": "s", "version": "1", "timestamp": "yesterday"},
])
def test_from_json_rejects_garbage(bad):
    with pytest.raises(ValueError):
        Event.from_json(bad)


# ---------------------------------------------------------------------- names
def test_file_names_of_samples():
    names = {p.name.split(".")[0]: Event.from_json(p.read_text()).file_name() for p in SAMPLES}
    assert names["BUILDING"] == "mbd-test-ftbfs_20261122014633~test12+0_BUILDING_amd64.json"
    assert names["BUILT"] == "mbd-test-ftbfs_20261122014633~test12+0_BUILT_amd64.json"
    assert names["PACKAGING"] == "mbd-test-ftbfs_20261122014633~test12+0_PACKAGING.json"
    assert names["FAILED"] == "mbd-test-ftbfs_20261122014633~test12+0_FAILED.json"
    assert names["INSTALLED"] == "mbd-test-cpp_20261122014631~test12+0_INSTALLED.json"
    assert names["REJECTED"] == "mbd-hello_1.1_REJECTED.json"
    assert names["MIGRATED"] == "mbd-ref-archive-keyring_20261122013839~test12+1_MIGRATED.json"
    assert names["REMOVED"] == "mbd-test-archall_20261122014630~test12+0_REMOVED.json"


def test_file_name_strips_epoch():
    assert make(Type.INSTALLED, version="2:1.0-1").file_name() == "hello_1.0-1_INSTALLED.json"
    assert make(Type.BUILT, version="1:3.0", arch="i386").file_name() == "hello_3.0_BUILT_i386.json"
    assert make(Type.PACKAGING, arch="amd64").file_name() == "hello_1.0-1_PACKAGING.json"


def test_one_liner():
    built = Event.from_json((REFERENCE / "BUILT.sample.json").read_text())
    assert built.one_liner() == "BUILT: mbd-test-ftbfs 20261122014633~test12+0 (bookworm-test-experimental) [amd64]: attempted"
    rejected = Event.from_json((REFERENCE / "REJECTED.sample.json").read_text())
    assert rejected.one_liner().startswith("REJECTED: mbd-hello 1.1 (bookworm-test-unstable): Version restrictions failed")
    assert str(make(Type.MIGRATED)) == "MIGRATED: hello 1.0-1 (bookworm-test-unstable)"
    long = make(Type.FAILED, error={"detail": "x" * 500})
    assert len(long.one_liner()) < 200 and "\n" not in long.one_liner()


def test_ongoing_predicates():
    assert [t for t in Type if make(t).is_ongoing_start()] == [Type.BUILDING, Type.PACKAGING]
    assert {t for t in Type if make(t).is_ongoing_end()} == {Type.BUILT, Type.INSTALLED, Type.FAILED}
    p, i = make(Type.PACKAGING, arch="source"), make(Type.INSTALLED, arch="source")
    assert p.ongoing_id() == i.ongoing_id() == (Type.PACKAGING, "hello/1.0-1/20261122:010000:000000")
    b, r = make(Type.BUILDING, arch="amd64"), make(Type.BUILT, arch="amd64")
    assert b.ongoing_id() == r.ongoing_id() == (Type.BUILDING, "hello/1.0-1/20261122:010000:000000/amd64")
    assert make(Type.REJECTED).ongoing_id() is None


# ---------------------------------------------------------------------- queue
def test_queue_size_limit(tmp_path):
    hub = Events(tmp_path, queue_size=3)
    logged = [hub.log(make(Type.MIGRATED, version=f"1.{i}", seconds=i)) for i in range(5)]
    assert hub.queue() == logged[:1:-1]
    assert [e.version for e in hub.queue()] == ["1.4", "1.3", "1.2"]


def test_queue_filters(hub):
    a = hub.log(make(Type.PACKAGING, source="a", dist="bookworm-test-unstable", seconds=1))
    b = hub.log(make(Type.REJECTED, source="b", dist="bookworm-test-unstable", seconds=2))
    c = hub.log(make(Type.INSTALLED, source="a", dist="bookworm-test-experimental", seconds=3))
    assert hub.queue() == [c, b, a]
    assert hub.queue(types=[Type.PACKAGING, Type.INSTALLED]) == [c, a]
    assert hub.queue(types=["rejected"]) == [b]
    assert hub.queue(types=Type.INSTALLED) == [c]
    assert hub.queue(source="a") == [c, a]
    assert hub.queue(distribution="bookworm-test-unstable") == [b, a]
    assert hub.queue(source="a", distribution="bookworm-test-unstable") == [a]
    assert hub.queue(after=a.timestamp) == [c, b]
    assert hub.queue(after=b.timestamp.isoformat()) == [c]
    assert hub.queue(source="nope") == []


def test_ongoing_tracking(hub):
    tc = "20261122:010000:000000"
    pkg = hub.log(make(Type.PACKAGING, timecode=tc, seconds=1))
    other = hub.log(make(Type.PACKAGING, source="other", timecode=tc, seconds=2))
    b64 = hub.log(make(Type.BUILDING, arch="amd64", timecode=tc, seconds=3))
    b32 = hub.log(make(Type.BUILDING, arch="i386", timecode=tc, seconds=4))
    assert hub.ongoing() == [b32, b64, other, pkg]
    hub.log(make(Type.BUILT, arch="amd64", timecode=tc, seconds=5))
    assert hub.ongoing() == [b32, other, pkg]
    hub.log(make(Type.BUILT, arch="i386", timecode=tc, seconds=6))
    assert hub.ongoing() == [other, pkg]
    # FAILED of some other upload of the same package (other key) ends nothing.
    hub.log(make(Type.FAILED, timecode="20261122:000000:000000", seconds=7))
    assert hub.ongoing() == [other, pkg]
    hub.log(make(Type.INSTALLED, timecode=tc, seconds=8))
    assert hub.ongoing() == [other]
    hub.log(make(Type.FAILED, source="other", timecode=tc, seconds=9))
    assert hub.ongoing() == []


# ---------------------------------------------------------------------- waiting: threads
def test_wait_wakes_on_log_from_other_thread(hub):
    event = make(Type.BUILT, arch="amd64")
    timer = threading.Timer(0.3, hub.log, args=(event,))
    start = time.monotonic()
    timer.start()
    try:
        got = hub.wait(timeout=20)
    finally:
        timer.join()
    assert got == [event]
    assert time.monotonic() - start < 10
    assert hub.attached() == 0


def test_wait_returns_queued_newer_at_once_oldest_first(hub):
    a, b, c = (hub.log(make(Type.MIGRATED, version=f"1.{i}", seconds=i)) for i in range(3))
    assert hub.wait(after=a.timestamp, timeout=0) == [b, c]
    assert hub.wait(after=a.timestamp.isoformat(), timeout=0) == [b, c]


def test_wait_times_out_empty(hub):
    a = hub.log(make(Type.MIGRATED))
    start = time.monotonic()
    assert hub.wait(after=a.timestamp, timeout=0.3) == []
    assert time.monotonic() - start >= 0.25


# ---------------------------------------------------------------------- waiting: callbacks
def test_attach_called_once_with_next_event(hub):
    got = []
    assert hub.attach(got.append) == []
    assert hub.attached() == 1
    first = hub.log(make(Type.REJECTED, seconds=1))
    hub.log(make(Type.REJECTED, seconds=2))
    assert got == [first]
    assert hub.attached() == 0


def test_attach_replays_newer_queued_events(hub):
    a, b, c = (hub.log(make(Type.REMOVED, version=f"1.{i}", seconds=i)) for i in range(3))
    got = []
    assert hub.attach(got.append, after=a.timestamp.isoformat()) == [b, c]
    assert hub.attached() == 0  # not registered when answered at once
    assert hub.attach(got.append, after=c.timestamp) == []
    assert hub.attached() == 1
    d = hub.log(make(Type.REMOVED, version="1.3", seconds=3))
    assert got == [d]


def test_detach(hub):
    got = []
    hub.attach(got.append)
    assert hub.detach(got.append) is True
    assert hub.detach(got.append) is False
    hub.log(make(Type.REJECTED))
    assert got == []


def test_failing_callback_does_not_break_logging(hub, caplog):
    def boom(event):
        raise RuntimeError("client gone")
    got = []
    hub.attach(boom)
    hub.attach(got.append)
    event = hub.log(make(Type.REJECTED))
    assert got == [event]
    assert hub.queue() == [event]


def test_max_attached(hub):
    assert hub.max_attached == 70
    callbacks = [lambda e, i=i: None for i in range(70)]
    for cb in callbacks:
        assert hub.attach(cb) == []
    with pytest.raises(events.TooManyClients):
        hub.attach(lambda e: None)
    with pytest.raises(events.TooManyClients):
        hub.wait(timeout=0)
    # Replays are answered at once and need no slot.
    queued = hub.log(make(Type.REJECTED))
    assert hub.attached() == 0
    for cb in callbacks:
        hub.attach(cb)
    assert hub.attach(lambda e: None, after=queued.timestamp - datetime.timedelta(seconds=1)) == [queued]
    hub.detach(callbacks[0])
    assert hub.attach(lambda e: None) == []


def test_shutdown_wakes_everyone(hub):
    got = []
    hub.attach(got.append)
    result = {}

    def waiter():
        try:
            result["events"] = hub.wait(timeout=20)
        except events.Shutdown as e:
            result["shutdown"] = e
    thread = threading.Thread(target=waiter)
    thread.start()
    deadline = time.monotonic() + 10
    while hub.attached() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hub.attached() == 2
    hub.shutdown()
    thread.join(10)
    assert not thread.is_alive()
    assert got == [None]
    assert "shutdown" in result
    with pytest.raises(events.Shutdown):
        hub.attach(got.append)
    with pytest.raises(events.Shutdown):
        hub.wait(timeout=0)
    # Logging still works (builds cancelled during shutdown still report BUILT).
    built = hub.log(make(Type.BUILT, arch="amd64"))
    assert hub.queue() == [built] and got == [None]


# ---------------------------------------------------------------------- saving, loading, expiry
def test_log_saves_json(tmp_path):
    root = tmp_path / "events"
    hub = Events(root)
    event = make(Type.BUILDING, arch="amd64")
    hub.log(event, save_dir=save_dir_of(root, event))
    path = root / "hello/1.0-1/20261122:010000:000000/amd64/hello_1.0-1_BUILDING_amd64.json"
    assert event.path == path
    assert json.loads(path.read_text()) == event.to_json()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    assert path.stat().st_mode & 0o777 == 0o644


def test_load_after_restart(tmp_path):
    root = tmp_path / "events"
    hub = Events(root)
    for i in range(6):
        for t in (Type.PACKAGING, Type.INSTALLED):
            e = make(t, version=f"1.{i}", seconds=10 * i + (t == Type.INSTALLED))
            hub.log(e, save_dir=save_dir_of(root, e))
    hub.log(make(Type.REJECTED, seconds=1000))  # not saved: gone after restart
    before = [e.to_json() for e in hub.queue()][1:]

    restarted = Events(root, queue_size=10)
    assert restarted.load() == 10
    assert [e.to_json() for e in restarted.queue()] == before[:10]
    assert restarted.queue()[0].path.is_file()
    assert restarted.ongoing() == []  # ongoing state is not restored
    assert restarted.load() == 10  # no duplicates
    assert [e.to_json() for e in restarted.queue()] == before[:10]

    big = Events(root)
    assert big.load() == 12
    assert [e.to_json() for e in big.queue()] == before


def test_load_picks_newest_by_timestamp_and_merges(tmp_path):
    root = tmp_path / "events"
    writer = Events(root)
    # Logged in reverse time order: load() must sort by timestamp, not by file order.
    for i in reversed(range(5)):
        e = make(Type.MIGRATED, version=f"1.{i}", seconds=i)
        writer.log(e, save_dir=save_dir_of(root, e))
    hub = Events(root, queue_size=3)
    live = hub.log(make(Type.REJECTED, seconds=100))
    assert hub.load() == 3
    assert [e.version for e in hub.queue()] == ["1.0-1", "1.4", "1.3"]
    assert hub.queue()[0] is live


def test_load_ignores_unparsable(tmp_path, caplog):
    root = tmp_path / "events"
    good = make(Type.REMOVED)
    Events(root).log(good, save_dir=save_dir_of(root, good))
    bad = root / "x/1/20261122:010000:000000/source"
    bad.mkdir(parents=True)
    (bad / "x_1_FAILED.json").write_text("{broken")
    (bad / "x_1_BUILT_amd64.json").write_text(json.dumps({"type": "BUILT"}))
    (bad / "x_1_source.changes.json").write_text("not an event file name: not even looked at")
    caplog.set_level(logging.WARNING, logger="mini_buildd.events")
    hub = Events(root)
    assert hub.load() == 1
    assert hub.queue() == [good]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2 and all("x_1_" in w for w in warned)


def test_expire(tmp_path):
    root = tmp_path / "events"
    hub = Events(root)
    now = T0 + datetime.timedelta(days=30)
    old = make(Type.INSTALLED, source="old", seconds=0)
    new = make(Type.INSTALLED, source="new", seconds=29 * 86400)
    mixed_old = make(Type.INSTALLED, source="mixed", seconds=1)
    mixed_new = make(Type.INSTALLED, source="mixed", seconds=29 * 86400 + 1)
    for e in (old, new, mixed_old, mixed_new):
        hub.log(e, save_dir=save_dir_of(root, e))
        hub.log(make(Type.BUILT, source=e.source, arch="amd64", seconds=(e.timestamp - T0).total_seconds(), timecode=e.extra["timecode"]),
                save_dir=save_dir_of(root, e).parent / "amd64")
    (root / "README").write_text("stray files are left alone")
    removed = hub.expire(datetime.timedelta(days=7), now=now)
    assert sorted(p.relative_to(root).parts[0] for p in removed) == ["mixed", "old"]
    assert not (root / "old").exists()
    assert (root / "mixed").is_dir() and [p.name for p in (root / "mixed" / "1.0-1").iterdir()] == [mixed_new.extra["timecode"]]
    assert (root / "new" / "1.0-1" / new.extra["timecode"] / "amd64").is_dir()
    assert (root / "README").is_file()
    assert {e.source for e in hub.queue()} == {"new", "mixed"}
    assert all(e.timestamp > now - datetime.timedelta(days=7) for e in hub.queue())
    assert hub.expire(datetime.timedelta(days=7), now=now) == []


# ---------------------------------------------------------------------- hooks selection
def test_hook_selection(tmp_path, caplog):
    for name, mode in (("10-first", 0o755), ("02-second", 0o755), ("_skipped", 0o755), ("foo~", 0o755),
                       (".hidden", 0o755), ("30-noexec", 0o644)):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(mode)
    (tmp_path / "40-dir").mkdir()
    assert events.hooks(tmp_path) == [tmp_path / "02-second", tmp_path / "10-first"]
    assert "30-noexec" in caplog.text
    assert events.hooks(tmp_path / "missing") == [] and events.hooks(None) == []


# ---------------------------------------------------------------------- mail
@pytest.mark.parametrize("url, expected", [
    (":@smtp://localhost:25", ("", "", False, "localhost", 25)),
    ("smtp://mail.example.org", ("", "", False, "mail.example.org", 25)),
    ("bob:s3cr:et@ssmtp://mail.example.org:2465", ("bob", "s3cr:et", True, "mail.example.org", 2465)),
    ("bob@example.org:p@ss@smtp://127.0.0.1:587", ("bob@example.org", "p@ss", False, "127.0.0.1", 587)),
    ("u:@ssmtp://[::1]", ("u", "", True, "::1", 465)),
])
def test_parse_smtp_url(url, expected):
    assert tuple(notify.parse_smtp_url(url)) == expected


@pytest.mark.parametrize("url", ["", "localhost:25", "http://localhost", "smtp://", "smtp://host:port", "user@smtp://host"])
def test_parse_smtp_url_rejects(url):
    with pytest.raises(ValueError):
        notify.parse_smtp_url(url)


def test_mail(smtp_server):  # noqa: F811
    port = smtp_server.server_address[1]
    event = Event.from_json((REFERENCE / "INSTALLED.sample.json").read_text())
    event.extra["auto_ports"] = {"bullseye-test-unstable": "ok"}
    asked = []

    def recipients(e):
        asked.append(e)
        return [("Admin <admin@example.org>", "you are the admin"), "Dev <dev@example.org>",
                ("ADMIN@example.org", "listed twice"), "not-an-address"]
    mailer = notify.Mailer(f"mbd:pw@smtp://127.0.0.1:{port}", "mbd-ref", recipients, "mini-buildd <mini-buildd@localhost>",
                           http_url="http://127.0.0.1:18066/")
    sent = mailer(event)
    assert asked == [event]
    assert sent == ["Admin <admin@example.org>", "Dev <dev@example.org>"]
    assert smtp_server.logins == [("mbd", "pw")]
    assert [(m[0], m[1]) for m in smtp_server.mails] == [("mini-buildd@localhost", ["admin@example.org"]),
                                                         ("mini-buildd@localhost", ["dev@example.org"])]
    msg = smtp_server.mails[0][2]
    assert msg["Subject"] == "[mini-buildd-mbd-ref] INSTALLED: mbd-test-cpp 20261122014631~test12+0 (bookworm-test-experimental)"
    assert msg["To"] == "Admin <admin@example.org>"
    body = msg.get_body(("plain",)).get_content()
    assert "http://127.0.0.1:18066/mini_buildd/events-dir/mbd-test-cpp/20261122014631~test12+0/20261122:014633:068688/source/" \
           "mbd-test-cpp_20261122014631~test12+0_source.changes" in body
    assert event.extra["buildresults"]["amd64"]["buildlog_installed"] in body
    assert "bullseye-test-unstable: ok" in body
    assert "Üdo Ümlauß" in body
    assert "you are the admin" in body and "you are the admin" not in smtp_server.mails[1][2].get_body(("plain",)).get_content()
    attachments = list(msg.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["mbd-test-cpp_20261122014631~test12+0_INSTALLED.json"]
    assert json.loads(attachments[0].get_content()) == event.to_json()


def test_mail_bad_login_raises(smtp_server):  # noqa: F811
    port = smtp_server.server_address[1]
    mailer = notify.Mailer(f"mbd:wrong@smtp://127.0.0.1:{port}", "x", lambda e: ["a@example.org"], "m@localhost")
    with pytest.raises(Exception):
        mailer(make(Type.REJECTED))
    assert smtp_server.mails == []


def test_mail_no_recipients_no_connection():
    mailer = notify.Mailer("smtp://127.0.0.1:1", "x", lambda e: [], "m@localhost")
    assert mailer(make(Type.REJECTED)) == []


def test_ssmtp_uses_smtp_over_tls(monkeypatch):
    made = []

    class FakeSSL:
        """Stands in for smtplib.SMTP_SSL: records where it connects."""
        def __init__(self, host, port, timeout=None):
            made.append((host, port))

        def login(self, user, password):
            made.append((user, password))

        def send_message(self, msg, from_addr, to_addrs):
            made.append(to_addrs)

        def quit(self):
            pass
    monkeypatch.setattr(notify.smtplib, "SMTP_SSL", FakeSSL)
    mailer = notify.Mailer("u:p@ssmtp://mail.example.org", "x", lambda e: ["a@example.org"], "m@localhost")
    mailer(make(Type.REJECTED))
    assert made == [("mail.example.org", 465), ("u", "p"), ["a@example.org"]]


def test_events_mail_in_background_and_errors_only_logged(tmp_path, smtp_server, caplog):  # noqa: F811
    port = smtp_server.server_address[1]
    mailer = notify.Mailer(f"smtp://127.0.0.1:{port}", "x", lambda e: ["a@example.org"], "m@localhost")
    hub = Events(tmp_path, mailer=mailer)
    event = hub.log(make(Type.FAILED, error={"detail": "boom"}))
    assert hub.join(timeout=20)
    assert len(smtp_server.mails) == 1
    assert smtp_server.mails[0][2]["Subject"] == "[mini-buildd-x] FAILED: hello 1.0-1 (bookworm-test-unstable): boom"

    def broken(e):
        raise OSError("connection refused")
    hub.mailer = broken
    caplog.set_level(logging.ERROR, logger="mini_buildd.events")
    second = hub.log(make(Type.REJECTED, seconds=5))
    assert hub.join(timeout=20)
    assert hub.queue() == [second, event]
    assert "connection refused" in caplog.text


def test_cli_knows_every_event_type():
    from mini_buildd.cli import events as cli_events  # pylint: disable=import-outside-toplevel
    assert set(cli_events.TYPES) == {t.value for t in Type}
