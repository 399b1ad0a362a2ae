"""Server-Sent Events (issue #17) against the real daemon (twisted, its FTP server, the event hub) of
an instance without chroots and repositories: events are made with unsigned uploads over FTP (each
one REJECTED). Clients read ``/mini_buildd/api/events/stream`` over real sockets:

- live events with ``id:``, ``event:`` and ``data:`` (the event JSON), narrowed by the filters of
  ``mini-buildd-events``; heartbeats;
- disconnect, more events, reconnect with ``Last-Event-ID`` (header, or ``last_event_id``): exactly
  the missed events, no duplicates; ``after=epoch`` replays the queue, and it agrees with the event
  files below ``var/events``;
- the client cap (503) and bad arguments (400);
- the events page uses the stream (a plain script under the page's CSP) and works without it;
  in headless Chromium a new event appears without reloading;
- on shutdown the streams end cleanly (a ``shutdown`` message, the chunked end), daemon exit 0.
"""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import ftplib
import hashlib
import json
import pathlib
import queue
import re
import socket
import threading
import time

import pytest
import requests

from mini_buildd import config, events, sse
from tests.helpers.daemon import Daemon, free_port, in_home

HOST = "127.0.0.32"
ED25519 = "Key-Type: EdDSA\nKey-Curve: ed25519\nKey-Usage: sign\nExpire-Date: 0"
DIST_A, DIST_B = "bookworm-test-unstable", "trixie-test-unstable"
#: Generous limit for one expected message (the daemon answers in milliseconds; the host may be busy).
WAIT = 90


# ------------------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """An active daemon (fast key), FTP on HOST; no chroots, no repositories; stopped after."""
    base = tmp_path_factory.mktemp("sse")
    home = base / "home"
    ftp_port = free_port(HOST)
    in_home(home, f"d = models.Daemon.get()\nd.gnupg_template = {ED25519!r}\n"
                  f"d.ftpd_bind = 'tcp:interface={HOST}:port={ftp_port}'\nd.save()\nd.mbd_pca()\n"
                  "assert models.Daemon.get().mbd_is_active()\n", hostname=HOST)
    d = Daemon(home, host=HOST)
    d.ftp_port = ftp_port
    d.start(timeout=120)
    d.base, d.count = base, 0
    yield d
    d.stop()


def upload(daemon, source, dist=DIST_A):
    """Upload an unsigned ``source`` (a new version each time) over FTP: it is REJECTED."""
    daemon.count += 1
    version = f"1.{daemon.count}"
    d = daemon.base / "uploads" / f"{source}-{version}"
    d.mkdir(parents=True)
    dsc = d / f"{source}_{version}.dsc"
    dsc.write_text(f"Format: 3.0 (native)\nSource: {source}\nVersion: {version}\n")
    data = dsc.read_bytes()
    sums = {h: hashlib.new(h, data).hexdigest() for h in ("sha1", "sha256", "md5")}
    changes = d / f"{source}_{version}_source.changes"
    changes.write_text(
        f"Format: 1.8\nDate: Mon, 07 Dec 2026 13:00:00 +0000\nSource: {source}\nBinary: {source}\n"
        f"Architecture: source\nVersion: {version}\nDistribution: {dist}\nUrgency: medium\n"
        "Maintainer: Test <test@example.org>\nChanged-By: Test <test@example.org>\n"
        f"Description:\n {source} - test\nChanges:\n {source} ({version}) {dist}; urgency=medium\n .\n   * Test.\n"
        f"Checksums-Sha1:\n {sums['sha1']} {len(data)} {dsc.name}\n"
        f"Checksums-Sha256:\n {sums['sha256']} {len(data)} {dsc.name}\n"
        f"Files:\n {sums['md5']} {len(data)} devel optional {dsc.name}\n")
    ftp = ftplib.FTP()
    ftp.connect(HOST, daemon.ftp_port, timeout=60)
    ftp.login()
    ftp.cwd("/incoming")
    for path in (dsc, changes):
        with open(path, "rb") as f:
            ftp.storbinary(f"STOR {path.name}", f)
    ftp.quit()
    return source, version, dist


class Client:
    """An SSE client on a raw socket (HTTP/1.1, chunked), parsed in a thread: ``get()`` the next
    message (dict of fields; comments as ``{"comment": text}``); ``close()`` disconnects at once."""

    def __init__(self, daemon, params=None, headers=None):
        query = requests.models.RequestEncodingMixin._encode_params(params or {})  # pylint: disable=protected-access
        lines = [f"GET {sse.PATH}{'?' + query if query else ''} HTTP/1.1", f"Host: {HOST}:{daemon.port}",
                 "Accept: text/event-stream"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock = socket.create_connection((HOST, daemon.port), timeout=WAIT)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.file = self.sock.makefile("rb")
        self.status = int(self.file.readline().split(b" ", 2)[1])
        self.headers = {}
        while (line := self.file.readline().decode("latin-1").strip()):
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.messages = queue.Queue()
        self.ended = None  # None while reading; then "clean" or the exception
        self.retry = None
        if self.status == 200:
            threading.Thread(target=self._read, daemon=True).start()
            assert self.comment() == "mini-buildd event stream"
            assert self.retry == sse.RETRY_MS

    def _chunks(self):
        assert self.headers.get("transfer-encoding") == "chunked", self.headers
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("connection closed inside the chunked body")
            size = int(line.strip(), 16)
            data = self.file.read(size + 2)
            if len(data) != size + 2:
                raise ConnectionError("connection closed inside a chunk")
            if size == 0:
                return
            yield data[:-2]

    def _read(self):
        buffer = ""
        try:
            for chunk in self._chunks():
                buffer += chunk.decode("utf-8")
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    fields = {}
                    for line in block.split("\n"):
                        if line.startswith(":"):
                            self.messages.put({"comment": line[1:].strip()})
                        elif line:
                            name, _, value = line.partition(":")
                            fields[name] = value.removeprefix(" ")
                    if set(fields) == {"retry"}:
                        self.retry = int(fields["retry"])
                    elif fields:
                        self.messages.put(fields)
            self.ended = "clean"
        except (OSError, ValueError) as e:
            self.ended = e
        self.messages.put(None)

    def get(self, heartbeats=False):
        """The next message (heartbeats skipped unless asked for); None at the end of the stream."""
        while True:
            message = self.messages.get(timeout=WAIT)
            if message is None or heartbeats or message.get("comment") != "heartbeat":
                return message

    def comment(self):
        message = self.get()
        assert message is not None and "comment" in message, message
        return message["comment"]

    def event(self):
        """The next event message."""
        message = self.get()
        assert message is not None and "data" in message, message
        return message

    def events(self, count):
        return [self.event() for _ in range(count)]

    def close(self):
        """Disconnect now (a blocked read in the thread returns)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.file.close()
        self.sock.close()


def about(message):
    data = json.loads(message["data"])
    return data["source"], data["version"], data["distribution"]


def check_message(message):
    """id, event and data fit together (and the event is a REJECTED upload)."""
    data = json.loads(message["data"])
    assert message["event"] == data["type"] == "REJECTED", message
    assert message["id"] == sse.event_id(events.Event.from_json(data)), message
    assert list(data) == ["type", "distribution", "source", "version", "timestamp", "extra"]


# ------------------------------------------------------------------------------------------------ tests
def test_live_events_filtered(daemon):
    everything = Client(daemon, {"heartbeat": "1"})
    assert everything.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert everything.headers["cache-control"] == "no-cache"
    by_source = Client(daemon, {"source": "sse-b"})
    by_dist = Client(daemon, {"distribution": DIST_B, "types": "REJECTED,INSTALLED"})
    other_type = Client(daemon, {"type": "INSTALLED", "heartbeat": "1"})
    made = [upload(daemon, "sse-a", DIST_A), upload(daemon, "sse-b", DIST_B), upload(daemon, "sse-a", DIST_B)]
    got = everything.events(3)
    for message in got:
        check_message(message)
    assert sorted(about(m) for m in got) == sorted(made)
    assert [about(m) for m in by_source.events(1)] == [made[1]]
    assert sorted(about(m) for m in by_dist.events(2)) == sorted(made[1:])
    # a heartbeat comes while nothing happens; the INSTALLED-only stream saw nothing else meanwhile
    assert everything.get(heartbeats=True) == {"comment": "heartbeat"}
    assert other_type.get(heartbeats=True) == {"comment": "heartbeat"}
    one_more = upload(daemon, "sse-b", DIST_B)
    assert [about(m) for m in by_source.events(1)] == [one_more]
    assert about(everything.event()) == one_more
    for client in (everything, by_source, by_dist, other_type):
        client.close()


def test_resume_with_last_event_id(daemon):
    first = Client(daemon)
    watcher = Client(daemon)  # stays connected: tells when the missed events are logged
    upload(daemon, "sse-r", DIST_A)
    upload(daemon, "sse-r", DIST_A)
    seen = first.events(2)
    watcher.events(2)
    first.close()
    missed = [upload(daemon, "sse-r", DIST_A) for _ in range(3)]
    assert sorted(about(m) for m in watcher.events(3)) == sorted(missed)

    again = Client(daemon, headers={"Last-Event-ID": seen[-1]["id"]})
    replayed = again.events(3)
    assert sorted(about(m) for m in replayed) == sorted(missed)
    assert len({m["id"] for m in seen + replayed}) == 5
    # no duplicate, nothing more: the next message is the next new event
    new = upload(daemon, "sse-r", DIST_A)
    assert about(again.event()) == new
    again.close()
    # the same by query argument (clients that can't set headers), with a filter
    by_arg = Client(daemon, {"last_event_id": seen[-1]["id"], "source": "sse-r"})
    assert [m["id"] for m in by_arg.events(4)] == [m["id"] for m in replayed] + [watcher.events(1)[0]["id"]]
    by_arg.close()
    watcher.close()


def test_replay_agrees_with_event_files(daemon):
    watcher = Client(daemon)
    upload(daemon, "sse-f", DIST_A)
    watcher.event()
    watcher.close()
    files = {}
    for path in events.find_event_files(config.Paths(daemon.home).events):
        event = events.Event.load(path)
        files[sse.event_id(event)] = event.to_json()
    replay = Client(daemon, {"after": "epoch"})
    streamed = {m["id"]: json.loads(m["data"]) for m in replay.events(len(files))}
    replay.close()
    assert files and streamed == files
    # 'since' is the same; a relative time too
    since = Client(daemon, {"since": "1 day ago"})
    assert {m["id"] for m in since.events(len(files))} == set(files)
    since.close()


def raw_stream(daemon):
    """Open a stream on a plain socket; (socket, status code)."""
    sock = socket.create_connection((HOST, daemon.port), timeout=WAIT)
    sock.sendall(f"GET {sse.PATH} HTTP/1.1\r\nHost: {HOST}:{daemon.port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        assert data, head
        head += data
    return sock, int(head.split(b" ", 2)[1])


def test_client_cap_and_bad_arguments(daemon):
    sockets = []
    try:
        for _ in range(sse.MAX_STREAMS):
            sock, status = raw_stream(daemon)
            sockets.append(sock)
            assert status == 200
        r = requests.get(daemon.url + sse.PATH, timeout=30)
        assert r.status_code == 503 and "Too many event streams" in r.json()["detail"], r.text
        # the long poll still has its own room
        r = requests.get(daemon.url + "/static/events.attach", params={"after": "1970-01-01T00:00:00+00:00"}, timeout=30)
        assert r.status_code == 200, r.text
        sockets.pop().close()
        deadline = time.monotonic() + WAIT
        while True:  # the daemon sees the close a moment later
            sock, status = raw_stream(daemon)
            sockets.append(sock)
            if status == 200 or time.monotonic() > deadline:
                break
            sockets.pop().close()
            time.sleep(0.2)
        assert status == 200
    finally:
        for sock in sockets:
            sock.close()
    for params, headers, text in (({"types": "NOPE"}, {}, "Unknown event type"),
                                  ({}, {"Last-Event-ID": "junk"}, "Not an event id"),
                                  ({"after": "whenever"}, {}, "can't read"),
                                  ({"heartbeat": "0"}, {}, "heartbeat")):
        r = requests.get(daemon.url + sse.PATH, params=params, headers=headers, timeout=30)
        assert r.status_code == 400 and text in r.json()["detail"], r.text
        assert r.headers["Content-Type"] == "application/problem+json"


def test_events_page_uses_the_stream(daemon):
    r = requests.get(daemon.url + "/mini_buildd/events/", timeout=30)
    assert r.status_code == 200
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    html = r.text
    assert '<script src="/static/mini_buildd/events_stream.js"></script>' in html
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script on the events page"
    count = len(list(events.find_event_files(config.Paths(daemon.home).events)))
    replay = Client(daemon, {"after": "epoch"})
    last_id = replay.events(count)[-1]["id"]
    replay.close()
    assert f'data-last-event-id="{last_id}"' in html
    # without JavaScript the rows are there already
    assert html.count('<tr class="ev ') == count
    js = requests.get(daemon.url + "/static/mini_buildd/events_stream.js", timeout=30)
    assert js.status_code == 200 and "new EventSource(" in js.text
    assert f'data-stream="{sse.PATH}"' in html


def test_events_page_live_in_chromium(daemon):
    chromium, driver_path = pathlib.Path("/usr/bin/chromium"), pathlib.Path("/usr/bin/chromedriver")
    if not (chromium.exists() and driver_path.exists()):
        pytest.skip("chromium and chromium-driver are not installed (make test-deps installs them)")
    from selenium import webdriver  # pylint: disable=import-outside-toplevel  # Debian: python3-selenium
    from selenium.webdriver.chrome.service import Service  # pylint: disable=import-outside-toplevel
    from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 f"--user-data-dir={daemon.base / 'chromium'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(str(driver_path)), options=options)
    try:
        browser.set_page_load_timeout(120)
        browser.get(daemon.url + "/mini_buildd/events/?source=sse-live")
        deadline = time.monotonic() + WAIT
        status = browser.find_element(By.ID, "mbd-live")
        while "connected" not in status.text and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "connected" in status.text, status.text
        made = [upload(daemon, "sse-other", DIST_A), upload(daemon, "sse-live", DIST_A)]
        while time.monotonic() < deadline:
            rows = browser.find_elements(By.CSS_SELECTOR, '#mbd-events tr[data-source="sse-live"]')
            if rows:
                break
            time.sleep(0.2)
        assert [(r.get_attribute("data-type"), r.get_attribute("data-version")) for r in rows] == [("REJECTED", made[1][1])]
        assert not browser.find_elements(By.CSS_SELECTOR, '#mbd-events tr[data-source="sse-other"]')
        problems = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE" and "/favicon.ico" not in e["message"]]
        assert not problems, problems
    finally:
        browser.quit()


def test_shutdown_ends_streams_cleanly(daemon):
    """Last: stops the daemon."""
    clients = [Client(daemon), Client(daemon, {"types": "INSTALLED"})]
    assert daemon.stop() == 0
    for client in clients:
        message = client.get()
        assert message == {"event": "shutdown", "data": json.dumps({"detail": "shutting down"})}, message
        assert client.get() is None
        assert client.ended == "clean", client.ended
