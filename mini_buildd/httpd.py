"""The HTTP server: twisted serving the Django WSGI app (in the reactor's thread pool), the API
fast path in front of it for ``/mini_buildd/api/`` (:mod:`mini_buildd.api.fastpath`: cacheable
calls answered in the reactor, the rest handed to Django), and plain static resources for
``/static/`` and ``/repositories/`` that never touch Django (small files written in one go). Access
log with rotation in ``~/var/log/access.log``.
"""

import logging

from twisted.internet import endpoints, reactor
from twisted.python import logfile
from twisted.web import resource, server, static, wsgi

from mini_buildd import config

LOG = logging.getLogger(__name__)

ACCESS_LOG_ROTATE_BYTES = 5 * 1024 * 1024
ACCESS_LOG_KEEP = 9


#: Files up to this size are answered in one write (no producer/cooperator round trip per file).
SMALL_FILE_BYTES = 256 * 1024


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
    """Static files with directory listings, plain text for unknown types."""

    listing = True

    def __init__(self, path, defaultType="text/plain; charset=utf-8", ignoredExts=(), registry=None, allowExt=0):
        super().__init__(path, defaultType, ignoredExts, registry, allowExt)

    def makeProducer(self, request, fileForReading):
        size = self.getsize()
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
    """Web assets: no directory listings."""

    listing = False


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


class Site(server.Site):
    """Site with a size-rotated access log."""

    def _openLogFile(self, path):
        return logfile.LogFile.fromFullPath(path, rotateLength=ACCESS_LOG_ROTATE_BYTES, maxRotatedFiles=ACCESS_LOG_KEEP)


def static_root():
    """``/static/``: our web assets plus Django admin's."""
    import django.contrib.admin  # pylint: disable=import-outside-toplevel
    import pathlib  # pylint: disable=import-outside-toplevel
    root = AssetFile(str(config.paths.static_root))
    root.putChild(b"admin", AssetFile(str(pathlib.Path(django.contrib.admin.__file__).parent / "static" / "admin")))
    return root


class EventsAttach(resource.Resource):
    """``/static/events.attach[?after=ISO]``: long poll returning one event JSON, without a thread
    per client (SPEC §5.4). Replays queued events newer than ``after`` first."""

    isLeaf = True

    def render_GET(self, request):
        from mini_buildd import events, services  # pylint: disable=import-outside-toplevel
        hub = services.events
        request.setHeader(b"Content-Type", b"application/json")
        if hub is None:
            request.setResponseCode(503)
            return b'{"detail": "events not available"}'
        after = request.args.get(b"after", [b""])[0].decode(errors="replace") or None
        try:
            if after is not None:
                events.parse_datetime(after)
        except ValueError:
            request.setResponseCode(400)
            return b'{"detail": "bad after= datetime"}'
        finished = []

        def deliver(event):
            def write():
                if finished or request._disconnected:  # pylint: disable=protected-access
                    return
                finished.append(True)
                if event is None:
                    request.setResponseCode(503)
                    request.write(b'{"detail": "shutting down"}')
                else:
                    request.write(event.dumps().encode())
                request.finish()
            reactor.callFromThread(write)

        try:
            queued = hub.attach(deliver, after=after)
        except (events.TooManyClients, events.Shutdown) as e:
            request.setResponseCode(503)
            return ('{"detail": "%s"}' % e).encode()
        if queued:
            return queued[0].dumps().encode()
        request.notifyFinish().addErrback(lambda _failure: hub.detach(deliver))
        return server.NOT_DONE_YET


def make_site():
    from django.conf import settings  # pylint: disable=import-outside-toplevel
    from django.core.wsgi import get_wsgi_application  # pylint: disable=import-outside-toplevel
    from mini_buildd.api import fastpath  # pylint: disable=import-outside-toplevel
    pool = reactor.getThreadPool()
    pool.adjustPoolsize(10, 100)
    django_resource = wsgi.WSGIResource(reactor, pool, get_wsgi_application())
    fastpath.connect_signals()
    root = Root(django_resource, fastpath.FastPath(django_resource, session_cookie=settings.SESSION_COOKIE_NAME))
    static = static_root()
    static.putChild(b"events", DirectoryFile(str(config.paths.events)))
    static.putChild(b"builds", DirectoryFile(str(config.paths.builds)))
    static.putChild(b"events.attach", EventsAttach())
    root.putChild(b"static", static)
    root.putChild(b"repositories", DirectoryFile(str(config.paths.repositories)))
    return Site(root, logPath=str(config.paths.access_log))


def listen(site, endpoint_strings):
    """Start listening on every endpoint; return a Deferred firing with the list of ports."""
    from twisted.internet import defer  # pylint: disable=import-outside-toplevel
    deferreds = []
    for desc in endpoint_strings:
        ep = endpoints.serverFromString(reactor, desc)
        deferreds.append(ep.listen(site))
    return defer.gatherResults(deferreds, consumeErrors=True)
