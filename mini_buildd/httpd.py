"""The HTTP server: twisted serving the Django WSGI app (in the reactor's thread pool), the API
fast path in front of it for ``/mini_buildd/api/`` (:mod:`mini_buildd.api.fastpath`: cacheable
calls answered in the reactor, the rest handed to Django), and plain static resources for
``/static/`` and ``/repositories/`` that never touch Django (small files written in one go; big
ones streamed by twisted's producers). The small repository files apt fetches are answered before
twisted.web parses the request, from a cache validated by ``stat`` (:mod:`mini_buildd.httpd_files`).
Every data file has an ``ETag`` and ``Last-Modified`` (304 answers) and takes ``Range`` (206/416).
Access log with rotation in ``~/var/log/access.log``, written in blocks (at most a second late).

Trust (DESIGN "Trust model"): the data trees (``/static/events/``, ``/static/builds/``,
``/repositories/``) hold files written by uploaders and builds: :class:`DataFile` serves them with
a safe type only, ``nosniff`` and ``Content-Security-Policy: sandbox``, and never follows a symlink
or ``..`` out of (or within) them. Request bodies bigger than the Daemon's limit are refused with
413 here, before Django reads them (:class:`Request`).
"""

import errno
import io
import json
import logging
import os
import stat

from twisted.internet import endpoints, reactor
from twisted.python import logfile
from twisted.web import http, resource, server, static, wsgi

from mini_buildd import config, errors, httpd_files, sse

LOG = logging.getLogger(__name__)

ACCESS_LOG_ROTATE_BYTES = 5 * 1024 * 1024
ACCESS_LOG_KEEP = 9


#: Files up to this size are answered in one write (no producer/cooperator round trip per file).
SMALL_FILE_BYTES = 256 * 1024

#: Type of every served data file that is not a known package, index or log type.
SAFE_DEFAULT_TYPE = "text/plain; charset=utf-8"

#: Types of served data files (var/, repositories/): package, index and log types only, never an
#: active type (HTML, SVG, XML, ...). Anything else is :data:`SAFE_DEFAULT_TYPE`. Compression
#: suffixes (.gz, .bz2, ...) are twisted's content encodings; the name below them is looked up here.
DATA_TYPES = {
    ".deb": "application/vnd.debian.binary-package",
    ".udeb": "application/vnd.debian.binary-package",
    ".ddeb": "application/vnd.debian.binary-package",
    ".tar": "application/x-tar",
    ".tgz": "application/gzip",
    ".xz": "application/x-xz",
    ".lzma": "application/x-lzma",
    ".zst": "application/zstd",
    ".json": "application/json",
    ".db": "application/octet-stream",
    ".dsc": SAFE_DEFAULT_TYPE, ".changes": SAFE_DEFAULT_TYPE, ".buildinfo": SAFE_DEFAULT_TYPE,
    ".buildlog": SAFE_DEFAULT_TYPE, ".log": SAFE_DEFAULT_TYPE, ".diff": SAFE_DEFAULT_TYPE,
    ".gpg": SAFE_DEFAULT_TYPE, ".asc": SAFE_DEFAULT_TYPE, ".txt": SAFE_DEFAULT_TYPE,
}

#: Headers of everything served from var/ and repositories/ (files, listings, errors).
DATA_HEADERS = ((b"X-Content-Type-Options", b"nosniff"), (b"Content-Security-Policy", b"sandbox"),
                (b"Referrer-Policy", b"same-origin"))


class WholeFileProducer(static.StaticProducer):
    """Writes a small file in one go and finishes the request (what NoRangeStaticProducer does in
    ``bufferSize`` pieces through a pull producer, a reactor turn each). Never writes more than the
    ``size`` announced in Content-Length."""

    def __init__(self, request, fileObject, size):
        super().__init__(request, fileObject)
        self.size = size

    def start(self):
        request = self.request
        try:
            data = self.fileObject.read(self.size)
        finally:
            self.stopProducing()  # closes the file, forgets the request
        request.write(data)
        request.finish()

    def resumeProducing(self):
        """Nothing to do: :meth:`start` wrote everything."""


class DirectoryFile(static.File):
    """Static files with directory listings, plain text for unknown types; nosniff."""

    listing = True

    def __init__(self, path, defaultType="text/plain; charset=utf-8", ignoredExts=(), registry=None, allowExt=0):
        super().__init__(path, defaultType, ignoredExts, registry, allowExt)

    def render(self, request):
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        return super().render(request)

    def makeProducer(self, request, fileForReading):
        size = self.getFileSize()
        if request.getHeader(b"range") is None and size <= SMALL_FILE_BYTES:
            self._setContentHeaders(request, size)
            request.setResponseCode(200)
            return WholeFileProducer(request, fileForReading, size)
        return super().makeProducer(request, fileForReading)

    def directoryListing(self):
        if self.listing:
            return super().directoryListing()
        return resource.ForbiddenResource()


class AssetFile(DirectoryFile):
    """Web assets (this package's and Django admin's; trusted, may be symlinks into other Debian
    packages): their proper types, nosniff, no directory listings."""

    listing = False


def _set_data_headers(request):
    for name, value in DATA_HEADERS:
        request.setHeader(name, value)


class DataNotFound(resource.Resource):
    """404 for the served data trees: plain text, with the data headers."""

    isLeaf = True

    def render(self, request):
        _set_data_headers(request)
        request.setResponseCode(404)
        request.setHeader(b"Content-Type", SAFE_DEFAULT_TYPE.encode())
        return b"Not found.\n"


DATA_NOT_FOUND = DataNotFound()


class DataListing(static.DirectoryLister):
    """Directory listing of a data tree (names escaped by twisted), with the data headers."""

    def render(self, request):
        _set_data_headers(request)
        return super().render(request)


_ROOT_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW_DIR = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def open_beneath(root, parts, directory=False):
    """Open ``root/parts...`` without following a symlink in any component below ``root`` (each
    component opened relative to its parent with ``O_NOFOLLOW``); return the fd. Raises OSError
    (ELOOP for a symlink, ENOENT, ...). A file is opened non-blocking (a FIFO can't stall us).
    ``root`` itself is the administrator's choice and may be a symlink."""
    if not all(safe_name(part) for part in parts):
        raise OSError(errno.ENOENT, "not a plain path below the served root")
    fd = os.open(root, _ROOT_DIR)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = _NOFOLLOW_FILE if last and not directory else _NOFOLLOW_DIR
            child = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = child
        return fd
    except BaseException:  # pylint: disable=broad-except  # clean-up, re-raised: no fd leaks
        os.close(fd)
        raise


def safe_name(name):
    """Whether ``name`` is one plain path component (no separator, not ``.``/``..``, no NUL)."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name


class DataFile(DirectoryFile):
    """Files below a served data root (var/events, var/shared/builds, repositories): written partly
    by uploaders and builds, so served defensively: a safe type (:data:`DATA_TYPES`, else
    :data:`SAFE_DEFAULT_TYPE`), nosniff and ``CSP: sandbox`` on every answer; every path component
    checked with ``lstat`` (a symlink, device or FIFO anywhere answers 404) and the file opened
    component by component with ``O_NOFOLLOW`` (no race with a build swapping in a symlink);
    listings without symlinks and dot files."""

    contentTypes = DATA_TYPES

    #: Follow symlinks that stay inside the served root (only for trees no uploader or build
    #: writes: reprepro links ``dists/D/Contents-A.gz`` to ``main/Contents-A.gz``).
    internal_symlinks = False

    def __init__(self, path, defaultType=SAFE_DEFAULT_TYPE, ignoredExts=(), registry=None, allowExt=0, root=None, parts=()):
        super().__init__(path, SAFE_DEFAULT_TYPE, (), registry, allowExt)
        self.root = root if root is not None else path
        self.parts = tuple(parts)
        self._opened = None

    def _internal_target(self, child_path):
        """``(path, parts)`` of what symlink ``child_path`` points to, if that is a regular file
        inside the served root (no symlink on the way there); else None."""
        root = os.path.realpath(self.root)
        target = os.path.realpath(child_path)
        if os.path.commonpath([root, target]) != root or target == root:
            return None
        parts = tuple(os.path.relpath(target, root).split(os.sep))
        try:
            os.close(open_beneath(self.root, parts))
        except OSError:
            return None
        return target, parts

    def render(self, request):
        _set_data_headers(request)
        return super().render(request)

    def getChild(self, path, request):
        try:
            name = path.decode("utf-8")
        except UnicodeDecodeError:
            return DATA_NOT_FOUND
        if not name:
            return self.directoryListing() if self.isdir() else DATA_NOT_FOUND
        if not safe_name(name):
            return DATA_NOT_FOUND
        child_path = os.path.join(self.path, name)
        try:
            st = os.lstat(child_path)
        except OSError:
            return DATA_NOT_FOUND
        parts = self.parts + (name,)
        if stat.S_ISLNK(st.st_mode) and self.internal_symlinks:
            target = self._internal_target(child_path)
            if target is None:
                return DATA_NOT_FOUND
            child_path, parts = target
        elif not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            return DATA_NOT_FOUND
        child = type(self)(child_path, registry=self.registry, root=self.root, parts=parts)
        child.listing = self.listing
        return child

    def render_GET(self, request):
        self.restat(False)
        if not self.exists():
            return DATA_NOT_FOUND.render(request)
        if self.isdir():
            return super().render_GET(request)  # redirect to the slashed URL
        try:
            fd = open_beneath(self.root, self.parts)
        except OSError:
            return DATA_NOT_FOUND.render(request)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            return DATA_NOT_FOUND.render(request)
        if request.setETag(httpd_files.etag_of(st)) is http.CACHED:
            os.close(fd)
            return b""
        if request.getHeader(b"if-none-match") is not None:  # it decides alone (RFC 9110 13.1.3)
            request.requestHeaders.removeHeader(b"if-modified-since")
        os.set_blocking(fd, True)
        self._opened = (os.fdopen(fd, "rb"), st.st_size)
        try:
            return super().render_GET(request)
        finally:
            self._opened = None

    render_HEAD = render_GET

    def open_fd(self):
        """This file opened for reading the safe way (:func:`open_beneath`); raises OSError."""
        return open_beneath(self.root, self.parts)

    def openForReading(self):
        if self._opened is None:
            raise OSError(errno.ENOENT, "not opened")
        return self._opened[0]

    def getFileSize(self):
        return self._opened[1] if self._opened is not None else self.getsize()

    def directoryListing(self):
        if not self.listing:
            return resource.ForbiddenResource()
        try:
            fd = open_beneath(self.root, self.parts, directory=True)
        except OSError:
            return DATA_NOT_FOUND
        try:
            with os.scandir(fd) as it:
                names = sorted(e.name for e in it if not e.name.startswith(".") and not e.is_symlink()
                               and (e.is_file(follow_symlinks=False) or e.is_dir(follow_symlinks=False)))
        finally:
            os.close(fd)
        return DataListing(self.path, names, self.contentTypes, self.contentEncodings, SAFE_DEFAULT_TYPE)

    def createSimilarFile(self, path):
        return DATA_NOT_FOUND  # children come from getChild only


class Root(resource.Resource):
    """Route static prefixes to twisted, ``/mini_buildd/api/...`` to the API fast path (which
    hands what it does not cache to Django), everything else to Django."""

    def __init__(self, wsgi_resource, fastpath=None):
        super().__init__()
        self.wsgi_resource = wsgi_resource
        self.fastpath = fastpath

    def getChild(self, path, request):
        # Not a static child: hand the whole path back to Django (or the fast path).
        request.prepath.pop()
        request.postpath.insert(0, path)
        if self.fastpath is not None and path == b"mini_buildd" and request.postpath[1:2] == [b"api"]:
            return self.fastpath
        return self.wsgi_resource

    def render(self, request):
        return self.wsgi_resource.render(request)


def max_request_body():
    """The request body limit in bytes (Daemon.http_max_request_body MiB; cached, never waits for the
    database: a stale value is refreshed in a thread)."""
    from mini_buildd.webapp import security  # pylint: disable=import-outside-toplevel
    return security.LIMITS.get_nowait(reactor.callInThread)["http_max_request_body"] * 1024 * 1024


class Request(server.Request):
    """A request whose body may not exceed :func:`max_request_body`: a bigger ``Content-Length`` is
    answered ``413`` at once (before the body is read, ``Expect: 100-continue`` not honoured), a
    chunked body as soon as it grows too big; the connection is closed, nothing reaches Django."""

    _mbd_limit = None
    _mbd_received = 0
    _mbd_refused = False

    def gotLength(self, length):
        if length is None or length > 0:
            self._mbd_limit = max_request_body()
            if length is not None and length > self._mbd_limit:
                self._mbd_refuse(length)
                return
        super().gotLength(length)

    def handleContentChunk(self, data):
        if self._mbd_refused:
            return
        self._mbd_received += len(data)
        if self._mbd_limit is not None and self._mbd_received > self._mbd_limit:
            self._mbd_refuse(None)
            return
        super().handleContentChunk(data)

    def requestReceived(self, command, path, version):
        if self._mbd_refused:
            return
        super().requestReceived(command, path, version)

    def connectionLost(self, reason):
        """An answer already (partly) sent when the client closes is logged as it is: e.g. an API
        answer complete by its Content-Length, whose client closed before Django finished it."""
        if self.startedWriting and not self.finished and not self._disconnected:
            factory = getattr(self.channel, "factory", None)
            if factory is not None:
                factory.log(self)
        super().connectionLost(reason)

    def _mbd_refuse(self, length):
        self._mbd_refused = True
        self.content = io.BytesIO()
        self.requestHeaders.removeHeader(b"expect")
        limit_mib = self._mbd_limit // (1024 * 1024)
        size = f"{length} bytes" if length is not None else "a chunked body of more than that"
        detail = f"Request body too large: at most {limit_mib} MiB are accepted here, this request sent {size}."
        body = json.dumps(errors.problem_dict(413, detail, title="Content Too Large")).encode()
        method = getattr(self.channel, "_command", b"") or b""
        path = getattr(self.channel, "_path", b"") or b""
        peer = getattr(self.getClientAddress(), "host", "")
        LOG.warning("HTTP %s %s from %s: refused (413): %s", method.decode("latin-1"), path.decode("latin-1")[:200], peer, detail)
        channel, transport = self.channel, self.channel.transport
        transport.write(b"HTTP/1.1 413 Content Too Large\r\nContent-Type: application/problem+json\r\n"
                        b"X-Content-Type-Options: nosniff\r\nConnection: close\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        # Lingering close: whatever the client still sends is dropped unread (closing with unread
        # data would reset the connection, and the client might lose the answer); our side is
        # closed now, the connection at the latest after REFUSED_LINGER seconds.
        channel.dataReceived = lambda data: None
        try:
            transport.loseWriteConnection()
        except (AttributeError, NotImplementedError):
            channel.loseConnection()
            return
        reactor.callLater(REFUSED_LINGER, _abort, transport)


#: Seconds a connection whose request was refused (413) may still send before it is cut.
REFUSED_LINGER = 10


def _abort(transport):
    if getattr(transport, "connected", False) and not getattr(transport, "disconnected", False):
        transport.abortConnection()


class Site(server.Site):
    """Site with a size-rotated, buffered access log, the request body limit (:class:`Request`)
    and the repository fast path (:class:`mini_buildd.httpd_files.FastChannel`; answers in
    ``mbd_files``)."""

    requestFactory = Request
    protocol = httpd_files.fast_channel_protocol
    #: :class:`mini_buildd.httpd_files.FileAnswers` of ``/repositories/`` (None: no fast path).
    mbd_files = None

    def _openLogFile(self, path):
        return httpd_files.BufferedLogFile(
            logfile.LogFile.fromFullPath(path, rotateLength=ACCESS_LOG_ROTATE_BYTES, maxRotatedFiles=ACCESS_LOG_KEEP))

    def _updateLogDateTime(self):
        super()._updateLogDateTime()
        logfile_ = getattr(self, "logFile", None)
        if isinstance(logfile_, httpd_files.BufferedLogFile):
            logfile_.flush()


class RepositoryFile(DataFile):
    """``/repositories/``: written by reprepro only, so its own links inside the tree are followed
    (never out of it). Compressed indices are files of their own type (``Packages.gz`` is
    ``application/gzip``, no ``Content-Encoding``: apt wants the bytes as they are)."""

    internal_symlinks = True
    contentTypes = dict(DATA_TYPES, **{".gz": "application/gzip", ".bz2": "application/x-bzip2"})
    contentEncodings = {}


def static_root():
    """``/static/``: our web assets plus Django admin's."""
    import django.contrib.admin  # pylint: disable=import-outside-toplevel
    import pathlib  # pylint: disable=import-outside-toplevel
    root = AssetFile(str(config.paths.static_root))
    root.putChild(b"admin", AssetFile(str(pathlib.Path(django.contrib.admin.__file__).parent / "static" / "admin")))
    return root


def _detail(text):
    """JSON body ``{"detail": text}`` of an events.attach error answer."""
    return json.dumps({"detail": text}).encode()


class EventsAttach(resource.Resource):
    """``/static/events.attach[?after=ISO]``: long poll returning one event JSON, without a thread
    per client (upstream §5.4). Replays queued events newer than ``after`` first."""

    isLeaf = True

    def render_GET(self, request):
        """Answer with the first queued event after ``after``, or wait for the next one."""
        from mini_buildd import events, services  # pylint: disable=import-outside-toplevel
        hub = services.events
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        if hub is None:
            request.setResponseCode(503)
            return _detail("events not available")
        after = request.args.get(b"after", [b""])[0].decode(errors="replace") or None
        try:
            if after is not None:
                events.parse_datetime(after)
        except ValueError:
            request.setResponseCode(400)
            return _detail("bad after= datetime")
        finished = []

        def deliver(event):
            def write():
                if finished or request._disconnected:  # pylint: disable=protected-access
                    return
                finished.append(True)
                if event is None:
                    request.setResponseCode(503)
                    request.write(_detail("shutting down"))
                else:
                    request.write(event.dumps().encode())
                request.finish()
            reactor.callFromThread(write)

        try:
            queued = hub.attach(deliver, after=after)
        except (events.TooManyClients, events.Shutdown) as e:
            request.setResponseCode(503)
            return _detail(str(e))
        if queued:
            return queued[0].dumps().encode()
        request.notifyFinish().addErrback(lambda _failure: hub.detach(deliver))
        return server.NOT_DONE_YET


def make_site():
    """The twisted site: Django (WSGI), the static files, the manual and the API fast path."""
    from django.conf import settings  # pylint: disable=import-outside-toplevel
    from django.core.wsgi import get_wsgi_application  # pylint: disable=import-outside-toplevel
    from mini_buildd.api import fastpath  # pylint: disable=import-outside-toplevel
    pool = reactor.getThreadPool()
    pool.adjustPoolsize(10, 100)
    django_resource = wsgi.WSGIResource(reactor, pool, get_wsgi_application())
    fastpath.connect_signals()
    root = Root(django_resource, fastpath.FastPath(django_resource, session_cookie=settings.SESSION_COOKIE_NAME))
    static_files = static_root()
    static_files.putChild(b"events", DataFile(str(config.paths.events)))
    static_files.putChild(b"builds", DataFile(str(config.paths.builds)))
    static_files.putChild(b"events.attach", EventsAttach())
    root.putChild(b"static", static_files)
    repositories = RepositoryFile(str(config.paths.repositories))
    root.putChild(b"repositories", repositories)
    sse.install(root)  # /mini_buildd/api/events/stream (Server-Sent Events)
    site = Site(root, logPath=str(config.paths.access_log))
    site.mbd_files = httpd_files.FileAnswers(b"/repositories/", repositories, DATA_HEADERS)
    return site


def listen(site, endpoint_strings):
    """Start listening on every endpoint; return a Deferred firing with the list of ports."""
    from twisted.internet import defer  # pylint: disable=import-outside-toplevel
    deferreds = []
    for desc in endpoint_strings:
        ep = endpoints.serverFromString(reactor, desc)
        deferreds.append(ep.listen(site))
    return defer.gatherResults(deferreds, consumeErrors=True)
