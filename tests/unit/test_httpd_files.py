"""Unit tests of the repository fast path (mini_buildd.httpd_files, issue #17): requests fed to a
FastChannel over an in-memory transport, files in a temporary served tree. Which requests the
fast path answers itself (and which it leaves to twisted.web), 304/206/416, pipelining, stale
entries after a change, symlinks, the buffered access log."""

import os

import pytest
from twisted.internet.testing import StringTransport
from twisted.web import http

from mini_buildd import httpd, httpd_files


class FakeSite:
    """What FastChannel needs of the site; records what twisted would have got."""

    _logDateTime = "[07/Dec/2026:12:00:00 +0000]"

    def __init__(self, answers):
        self.mbd_files = answers
        self.logFile = httpd_files.BufferedLogFile(Sink())  # pylint: disable=invalid-name  # twisted's name


class Sink:
    """A log file in memory, counting its writes."""

    def __init__(self):
        self.data = b""
        self.writes = 0

    def write(self, data):
        self.data += data
        self.writes += 1

    def close(self):
        pass


class Channel(httpd_files.FastChannel):
    """A FastChannel whose twisted side only records what it was given."""

    def __init__(self):
        super().__init__()
        self.passed = b""
        self.site = None

    def _mbd_idle(self):
        return not self.passed

    def lineReceived(self, line):  # pragma: no cover  # never reached: dataReceived below
        raise AssertionError

    def dataReceived(self, data):
        answers = self.site.mbd_files
        if self._mbd_idle():
            data = self._mbd_serve(answers, data)
        self.passed += data


@pytest.fixture(name="tree")
def fixture_tree(tmp_path):
    """A served tree: repository ``r`` with files, a symlink out of it and one inside it."""
    root = tmp_path / "repositories"
    (root / "r" / "dists" / "d").mkdir(parents=True)
    (root / "r" / "dists" / "d" / "Release").write_bytes(b"0123456789" * 10)
    (root / "r" / "dists" / "d" / "Packages.gz").write_bytes(b"\x1f\x8bgz")
    (root / "r" / "pool").mkdir()
    (root / "r" / "pool" / "p.deb").write_bytes(b"!<arch>\n")
    (tmp_path / "secret").write_text("secret")
    os.symlink(tmp_path / "secret", root / "r" / "escape")
    os.symlink("Release", root / "r" / "dists" / "d" / "internal")
    return root


def channel_for(tree):
    """A connected FastChannel serving ``tree`` as ``/repositories/``."""
    resource = httpd.RepositoryFile(str(tree))
    answers = httpd_files.FileAnswers(b"/repositories/", resource, httpd.DATA_HEADERS)
    channel = Channel()
    channel.site = FakeSite(answers)
    channel.makeConnection(StringTransport())
    return channel


def request(path, method=b"GET", **headers):
    lines = [b"%s %s HTTP/1.1" % (method, path), b"Host: x"]
    lines += [b"%s: %s" % (k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def responses(channel):
    """Parsed answers written so far: list of (code, headers dict, body)."""
    data = channel.transport.value()
    channel.transport.clear()
    out = []
    while data:
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        code = int(lines[0].split(b" ")[1])
        headers = {k.lower(): v for k, _, v in (line.partition(b": ") for line in lines[1:])}
        length = int(headers.get(b"content-length", b"0")) if code != 304 else 0
        out.append((code, headers, data[:length]))
        data = data[length:]
    return out


RELEASE = b"/repositories/r/dists/d/Release"


def test_get_head_and_headers(tree):
    ch = channel_for(tree)
    ch.dataReceived(request(RELEASE) + request(RELEASE, b"HEAD"))
    (code, headers, body), (hcode, hheaders, _) = responses(ch)  # pylint: disable=unbalanced-tuple-unpacking
    assert code == 200 and body == b"0123456789" * 10 and ch.passed == b""
    assert headers[b"content-type"] == b"text/plain; charset=utf-8"
    assert headers[b"x-content-type-options"] == b"nosniff" and headers[b"content-security-policy"] == b"sandbox"
    assert headers[b"etag"].startswith(b'"') and headers[b"last-modified"] and headers[b"accept-ranges"] == b"bytes"
    assert hcode == 200 and hheaders[b"content-length"] == b"100"
    ch.dataReceived(request(b"/repositories/r/dists/d/Packages.gz") + request(b"/repositories/r/pool/p.deb"))
    (_, gz, _), (_, deb, _) = responses(ch)  # pylint: disable=unbalanced-tuple-unpacking
    assert gz[b"content-type"] == b"application/gzip" and b"content-encoding" not in gz
    assert deb[b"content-type"] == b"application/vnd.debian.binary-package"


def test_conditional(tree):
    ch = channel_for(tree)
    ch.dataReceived(request(RELEASE))
    (_, headers, _), = responses(ch)  # pylint: disable=unbalanced-tuple-unpacking
    etag, modified = headers[b"etag"].decode(), headers[b"last-modified"].decode()
    ch.dataReceived(request(RELEASE, If_None_Match=etag) + request(RELEASE, If_Modified_Since=modified)
                    + request(RELEASE, If_None_Match='"other"', If_Modified_Since=modified)
                    + request(RELEASE, If_Modified_Since="Mon, 01 Jan 2001 00:00:00 GMT"))
    assert [r[0] for r in responses(ch)] == [304, 304, 200, 200]
    # Changed (a new file renamed into place, like reprepro's export): 200 with a new ETag.
    new = tree / "r" / "dists" / "d" / "Release.new"
    new.write_bytes(b"changed")
    new.rename(tree / "r" / "dists" / "d" / "Release")
    ch.dataReceived(request(RELEASE, If_None_Match=etag))
    (code, headers, body), = responses(ch)  # pylint: disable=unbalanced-tuple-unpacking
    assert code == 200 and body == b"changed" and headers[b"etag"].decode() != etag


def test_ranges(tree):
    ch = channel_for(tree)
    ch.dataReceived(request(RELEASE, Range="bytes=10-19") + request(RELEASE, Range="bytes=-5")
                    + request(RELEASE, Range="bytes=95-") + request(RELEASE, Range="bytes=100-")
                    + request(RELEASE, Range="bytes=0-1", If_Range='"stale"'))
    r = responses(ch)
    assert [x[0] for x in r] == [206, 206, 206, 416, 200]
    assert r[0][2] == b"0123456789" and r[0][1][b"content-range"] == b"bytes 10-19/100"
    assert r[1][2] == b"56789" and r[1][1][b"content-range"] == b"bytes 95-99/100"
    assert r[2][2] == b"56789"
    assert r[3][1][b"content-range"] == b"bytes */100"
    # Several ranges: twisted's (multipart/byteranges).
    ch.dataReceived(request(RELEASE, Range="bytes=0-1,5-6"))
    assert not responses(ch) and b"bytes=0-1,5-6" in ch.passed


@pytest.mark.parametrize("raw", [
    request(b"/repositories/r/escape"),                      # symlink out of the tree
    request(b"/repositories/r/dists/d/missing"),
    request(b"/repositories/r/dists/d/"),                    # listing
    request(b"/repositories/r/dists/d/%2e%2e/%2e%2e/%2e%2e/secret"),
    request(b"/repositories/r/dists/d/Release?x=1"),
    request(b"/mini_buildd/api/status/"),
    request(RELEASE, b"POST"),
    request(RELEASE).replace(b"HTTP/1.1", b"HTTP/1.0"),
    request(RELEASE, Content_Length="5"),
    request(RELEASE, Transfer_Encoding="chunked"),
    request(RELEASE)[:-2] + b" folded\r\n\r\n",
])
def test_left_to_twisted(tree, raw):
    ch = channel_for(tree)
    ch.dataReceived(raw)
    assert not responses(ch) and ch.passed == raw


def test_internal_symlink_and_pipelining_order(tree):
    ch = channel_for(tree)
    # A request the fast path does not take stops it: what follows waits for twisted (order).
    ch.dataReceived(request(b"/repositories/r/dists/d/internal") + request(b"/x") + request(RELEASE))
    r = responses(ch)
    assert len(r) == 1 and r[0][0] == 200 and r[0][2] == b"0123456789" * 10
    assert ch.passed == request(b"/x") + request(RELEASE)


def test_partial_request_left_to_twisted(tree):
    ch = channel_for(tree)
    ch.dataReceived(request(RELEASE) + request(RELEASE)[:10])
    assert len(responses(ch)) == 1 and ch.passed == request(RELEASE)[:10]


def test_connection_close(tree):
    ch = channel_for(tree)
    ch.dataReceived(request(RELEASE, Connection="close") + request(RELEASE))
    r = responses(ch)
    assert len(r) == 1 and r[0][1][b"connection"] == b"close" and ch.transport.disconnecting


def test_big_file_left_to_twisted(tree):
    big = tree / "r" / "pool" / "big.deb"
    with open(big, "wb") as f:
        f.truncate(httpd_files.CACHED_BODY_BYTES + 1)
    ch = channel_for(tree)
    ch.dataReceived(request(b"/repositories/r/pool/big.deb"))
    assert not responses(ch) and ch.passed


def test_swapped_directory_symlink_not_served(tree, tmp_path):
    ch = channel_for(tree)
    ch.dataReceived(request(RELEASE))
    assert responses(ch)[0][0] == 200
    # dists/d replaced by a symlink to a directory outside with a file of the same name.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "Release").write_bytes(b"outside")
    os.rename(tree / "r" / "dists" / "d", tree / "r" / "dists" / "d.old")
    os.symlink(outside, tree / "r" / "dists" / "d")
    ch.dataReceived(request(RELEASE))
    assert not responses(ch)


def test_access_log_buffered(tree):
    ch = channel_for(tree)
    sink = ch.site.logFile.logfile
    ch.dataReceived(request(RELEASE, User_Agent='Debian APT-HTTP/1.3 "q"') * 3)
    assert sink.writes == 0
    ch.site.logFile.flush()
    lines = sink.data.decode().splitlines()
    assert sink.writes == 1 and len(lines) == 3
    assert lines[0] == ('"192.168.1.1" - - [07/Dec/2026:12:00:00 +0000] "GET /repositories/r/dists/d/Release HTTP/1.1" 200 100 "-" '
                        '"Debian APT-HTTP/1.3 \\"q\\""')


def test_parse_range():
    assert httpd_files._parse_range(b"bytes=0-0", 10) == (0, 0)  # pylint: disable=protected-access
    assert httpd_files._parse_range(b"bytes=5-100", 10) == (5, 9)  # pylint: disable=protected-access
    assert httpd_files._parse_range(b"bytes=-0", 10) == "unsatisfiable"  # pylint: disable=protected-access
    assert httpd_files._parse_range(b"bytes=3-2", 10) is None  # pylint: disable=protected-access
    assert httpd_files._parse_range(b"items=0-1", 10) is None  # pylint: disable=protected-access
    assert http.datetimeToString(0)  # twisted's formatter is the one used for dates


def test_error_left_to_twisted(tree, monkeypatch):
    """An unexpected error in the fast path never loses the request: twisted gets it."""
    ch = channel_for(tree)

    def broken(*_args):
        raise RuntimeError("boom")
    monkeypatch.setattr(httpd_files, "_not_modified", broken)
    ch.dataReceived(request(RELEASE))
    assert not responses(ch) and ch.passed == request(RELEASE)


def test_idle_state_of_twisteds_channel(tree):
    """The real channel's idle test (twisted's private parser state): idle when nothing is in
    progress; not idle with a partial request in twisted's hands, or a request it is answering."""
    channel = httpd_files.FastChannel()
    channel.site = FakeSite(channel_for(tree).site.mbd_files)
    channel.makeConnection(StringTransport())
    assert channel._mbd_idle()  # pylint: disable=protected-access
    channel.dataReceived(request(RELEASE))
    assert channel._mbd_idle() and b"200 OK" in channel.transport.value()  # pylint: disable=protected-access
    http.HTTPChannel.dataReceived(channel, b"GET /x HTTP/1.1\r\nHost")  # a partial request: twisted's
    assert not channel._mbd_idle()  # pylint: disable=protected-access
