"""Fast delivery of the repository files apt fetches (issue #17): the HTTP/1.1 channel
(:class:`FastChannel`) answers plain ``GET``/``HEAD`` requests for small files below
``/repositories/`` itself, from a per-path cache of ready answers (:class:`FileAnswers`), and hands
everything else (other paths, bodies, query strings, multi-ranges, big files, HTTP/1.0, anything
unusual) to twisted.web unchanged; plus the buffered access log (:class:`BufferedLogFile`).

Safety is the slow path's (:class:`mini_buildd.httpd.RepositoryFile`): an answer is cached only
after the file was found by walking that resource tree (``lstat`` of each component, internal
symlinks only) and read through :func:`mini_buildd.httpd.open_beneath` (its ``open_fd``); it is
served again only while a ``stat`` of the very same path still shows the same inode, device, size
and modification time (any change, e.g. reprepro's export renaming a new file into place, loads it
again the safe way). The headers are the slow path's: safe type, nosniff, ``CSP: sandbox``.

HTTP: ``ETag``/``If-None-Match`` and ``Last-Modified``/``If-Modified-Since`` answer 304 (the
``If-None-Match`` one wins, RFC 9110), a single ``Range`` 206 (with ``If-Range``) or 416; keep-alive
and pipelining as twisted's channel (answers in order; a request the fast path does not take waits
for twisted to finish the ones before it). Files bigger than :data:`CACHED_BODY_BYTES` are
twisted's: streamed by its producers, never read into memory.
"""

import logging
import math
import os
import stat
import time
import urllib.parse

from twisted.web import http, server, static

LOG = logging.getLogger(__name__)

#: Files up to this size are kept in memory, answered from there.
CACHED_BODY_BYTES = 256 * 1024
#: At most this many bytes of file contents in the cache (oldest dropped first).
CACHE_BYTES = 32 * 1024 * 1024
#: At most this many cached answers.
CACHE_ENTRIES = 20000
#: The access log is written when this much is buffered, else once a second.
LOG_BUFFER_BYTES = 64 * 1024
#: Longest request head (request line and headers) the fast path reads; twisted's limit too.
MAX_HEAD_BYTES = 16384

_FALLBACK_HEADERS = frozenset((b"content-length", b"transfer-encoding", b"expect", b"upgrade", b"http2-settings"))


def etag_of(st):
    """Strong entity tag of a file from its ``stat``: changes with inode, size and mtime."""
    return b'"%x-%x-%x"' % (st.st_ino, st.st_size, st.st_mtime_ns)


class BufferedLogFile:
    """A twisted LogFile whose writes are gathered in memory and written at once
    (:data:`LOG_BUFFER_BYTES`, :meth:`flush` each second by the site, and on close)."""

    def __init__(self, logfile):
        self.logfile = logfile
        self._parts = []
        self._size = 0

    def write(self, data):
        self._parts.append(data)
        self._size += len(data)
        if self._size >= LOG_BUFFER_BYTES:
            self.flush()

    def flush(self):
        """Write what is buffered (one write)."""
        if self._parts:
            data, self._parts, self._size = b"".join(self._parts), [], 0
            try:
                self.logfile.write(data)
            except OSError as e:
                LOG.warning("Access log: can't write: %s", e)

    def close(self):
        """Write what is buffered, close the log file."""
        self.flush()
        self.logfile.close()

    def __getattr__(self, name):
        return getattr(self.logfile, name)


def _escape(value):
    """Like twisted's access log escaping: ``repr`` of bytes, as if in double quotes."""
    text = repr(value)[2:-1]
    return text.replace('"', '\\"').replace("\\'", "'") if repr(value)[1] == "'" else text


_DATE = [0, b""]


def http_date():
    """``Date`` header value, formatted once per second."""
    now = int(time.time())
    if _DATE[0] != now:
        _DATE[0], _DATE[1] = now, http.datetimeToString(now)
    return _DATE[1]


class Entry:
    """A cached file: where it is, its identity, its headers and (small files) contents."""

    __slots__ = ("path", "key", "size", "mtime", "etag", "last_modified", "headers", "body")

    def __init__(self, path, st, headers, body):
        self.path = path
        self.key = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)
        self.size = st.st_size
        self.mtime = int(math.ceil(st.st_mtime))  # as twisted's setLastModified
        self.etag = etag_of(st)
        self.last_modified = http.datetimeToString(self.mtime)
        self.headers = headers + b"Last-Modified: %s\r\nETag: %s\r\n" % (self.last_modified, self.etag)
        self.body = body


class FileAnswers:
    """Ready answers for the small files below ``prefix`` (the URL of ``root``, a
    :class:`mini_buildd.httpd.DataFile` tree), validated by ``stat`` on each use."""

    def __init__(self, prefix, root, data_headers):
        self.prefix = prefix
        self.root = root
        self.common = b"".join(b"%s: %s\r\n" % h for h in data_headers) + b"Accept-Ranges: bytes\r\n"
        self.entries = {}
        self.bytes = 0
        self.counts = {"hit": 0, "load": 0, "pass": 0}

    def _drop(self, target):
        old = self.entries.pop(target, None)
        if old is not None:
            self.bytes -= old.size

    def get(self, target):
        """The valid :class:`Entry` of URL path ``target`` (bytes, no query), or None (not a
        small regular file the slow path would serve: twisted answers)."""
        entry = self.entries.get(target)
        if entry is not None:
            try:
                st = os.stat(entry.path)
            except OSError:
                st = None
            if st is not None and (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns) == entry.key:
                self.counts["hit"] += 1
                return entry
            self._drop(target)
        entry = self._load(target)
        if entry is None:
            self.counts["pass"] += 1
            return None
        self.counts["load"] += 1
        while self.entries and (len(self.entries) >= CACHE_ENTRIES or self.bytes + entry.size > CACHE_BYTES):
            self._drop(next(iter(self.entries)))
        self.entries[target] = entry
        self.bytes += entry.size
        return entry

    def _resource(self, target):
        """The slow path's resource for ``target`` (the same traversal twisted does), or None."""
        node = self.root
        for segment in target[len(self.prefix):].split(b"/"):
            node = node.getChildWithDefault(urllib.parse.unquote_to_bytes(segment), None)
            if not isinstance(node, type(self.root)):
                return None
        return node

    def _load(self, target):
        node = self._resource(target)
        if node is None or node.isdir():
            return None
        try:
            fd = node.open_fd()
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > CACHED_BODY_BYTES:
                return None
            chunks, left = [], st.st_size
            while left > 0:
                chunk = os.read(fd, left)
                if not chunk:
                    return None  # shrank while read: next time
                chunks.append(chunk)
                left -= len(chunk)
        finally:
            os.close(fd)
        ctype, encoding = static.getTypeAndEncoding(node.basename(), node.contentTypes, node.contentEncodings, node.defaultType)
        headers = self.common + b"Content-Type: %s\r\n" % ctype.encode("ascii")
        if encoding:
            headers += b"Content-Encoding: %s\r\n" % encoding.encode("ascii")
        return Entry(os.path.join(node.root, *node.parts), st, headers, b"".join(chunks))


def _parse_range(value, size):
    """``(first, last)`` of a single ``bytes=`` range, ``"unsatisfiable"``, or None (not one
    simple range: twisted answers)."""
    unit, _, spec = value.partition(b"=")
    if unit.strip().lower() != b"bytes" or b"," in spec:
        return None
    first, dash, last = spec.strip().partition(b"-")
    if not dash:
        return None
    try:
        if not first:
            n = int(last)
            if n <= 0:
                return "unsatisfiable"
            return max(size - n, 0), size - 1
        a = int(first)
        b = int(last) if last else size - 1
    except ValueError:
        return None
    if a < 0 or (last and b < a):
        return None
    if a >= size:
        return "unsatisfiable"
    return a, min(b, size - 1)


def _not_modified(entry, headers):
    inm = headers.get(b"if-none-match")
    if inm is not None:
        tags = [t.strip() for t in inm.split(b",")]
        return entry.etag in tags or b"*" in tags or b"W/" + entry.etag in tags
    ims = headers.get(b"if-modified-since")
    if ims is not None:
        try:
            return http.stringToDatetime(ims.split(b";", 1)[0]) >= entry.mtime
        except (ValueError, IndexError):
            return False
    return False


class FastChannel(http.HTTPChannel):
    """twisted's HTTP/1.1 channel, answering simple requests for cached repository files itself
    (see the module doc); everything else goes through twisted.web as before."""

    _mbd_peer = None

    def _mbd_idle(self):
        """Whether twisted has nothing in progress on this connection (no request, no partial one).
        Reads twisted's private parser state: should another twisted version not have it, this is
        False and every request is twisted's (tests/unit/test_httpd_files.py notices)."""
        return bool(not self.requests and not self._handlingRequest and self.line_mode and not getattr(self, "_buffer", b"?")
                    and self.persistent and getattr(self, "_HTTPChannel__first_line", 0))

    def dataReceived(self, data):
        answers = getattr(getattr(self, "site", None), "mbd_files", None)
        if answers is not None and self._mbd_idle():
            data = self._mbd_serve(answers, data)
            if not data:
                return
        super().dataReceived(data)

    def _mbd_serve(self, answers, data):
        """Answer the complete simple requests at the start of ``data``; return the rest."""
        out = []
        close = False
        while data:
            end = data.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES)
            if end < 0:
                break
            try:
                answer = self._mbd_answer(answers, data[:end])
            except Exception:  # pylint: disable=broad-except  # never lose a request: twisted answers it
                LOG.exception("Repository fast path: request left to twisted.web")
                answer = None
            if answer is None:
                break
            out.append(answer[0])
            data = data[end + 4:]
            if answer[1]:
                close = True
                data = b""
                break
        if out:
            self.resetTimeout()
            self.transport.writeSequence(out)
            if close:
                self.persistent = False
                self.transport.loseConnection()
        return data

    def _mbd_answer(self, answers, head):
        """``(bytes, close)`` answering one request head, or None (twisted's)."""
        lines = head.split(b"\r\n")
        request_line = lines[0].split(b" ")
        if len(request_line) != 3:
            return None
        method, target, version = request_line
        if method not in (b"GET", b"HEAD") or version != b"HTTP/1.1" or not target.startswith(answers.prefix) or b"?" in target:
            return None
        headers = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name[-1:].isspace() or line[:1] in (b" ", b"\t"):
                return None
            name = name.lower()
            if name in _FALLBACK_HEADERS or name in headers:
                return None
            headers[name] = value.strip(b" \t")
        entry = answers.get(target)
        if entry is None:
            return None
        close = b"close" in headers.get(b"connection", b"").lower()
        answer = self._mbd_response(entry, method, headers, close)
        if answer is None:
            return None
        code, length, data = answer
        self._mbd_log(method, target, code, length, headers)
        return data, close

    @staticmethod
    def _mbd_response(entry, method, headers, close):
        """``(code, body length, bytes)`` of the answer, or None (twisted's)."""
        start = b"Server: %s\r\nDate: %s\r\n%s" % (server.version, http_date(), b"Connection: close\r\n" if close else b"")
        if _not_modified(entry, headers):
            return 304, None, b"HTTP/1.1 304 Not Modified\r\n%s%s\r\n" % (start, entry.headers)
        body = entry.body
        code, status, extra = 200, b"200 OK", b""
        rng = headers.get(b"range")
        if_range = headers.get(b"if-range")
        if rng is not None and (if_range is None or if_range in (entry.etag, entry.last_modified)):
            parsed = _parse_range(rng, entry.size)
            if parsed is None:
                return None
            if parsed == "unsatisfiable":
                return 416, 0, (b"HTTP/1.1 416 Range Not Satisfiable\r\n%s%sContent-Range: bytes */%d\r\nContent-Length: 0\r\n\r\n"
                                % (start, entry.headers, entry.size))
            first, last = parsed
            body = body[first:last + 1]
            code, status, extra = 206, b"206 Partial Content", b"Content-Range: bytes %d-%d/%d\r\n" % (first, last, entry.size)
        head = b"HTTP/1.1 %s\r\n%s%s%sContent-Length: %d\r\n\r\n" % (status, start, entry.headers, extra, len(body))
        if method == b"HEAD":
            return code, None, head
        return code, len(body), head + body

    def _mbd_log(self, method, target, code, length, headers):
        site = self.site  # pylint: disable=no-member  # set by the site's buildProtocol
        logfile = getattr(site, "logFile", None)
        if logfile is None:
            return
        if self._mbd_peer is None:
            peer = self.transport.getPeer()
            self._mbd_peer = _escape(getattr(peer, "host", "-").encode("ascii", "replace"))
        line = (f'"{self._mbd_peer}" - - {site._logDateTime} "{method.decode("ascii")} {_escape(target)} HTTP/1.1" '  # pylint: disable=protected-access
                f'{code} {"-" if not length else length} "{_escape(headers.get(b"referer", b"-"))}" '
                f'"{_escape(headers.get(b"user-agent", b"-"))}"\n')
        logfile.write(line.encode("utf-8"))


def fast_channel_protocol(_factory):
    """The site's ``protocol``: twisted's switcher (HTTP/2 over TLS with ALPN, when python3-h2 is
    installed) around a :class:`FastChannel` for HTTP/1.1."""
    return http._GenericHTTPChannelProtocol(FastChannel())  # pylint: disable=protected-access  # twisted's own factory does this
