"""The HTTP server: twisted serving the Django WSGI app (in the reactor's thread pool), and plain
static resources for ``/static/`` and ``/repositories/`` that never touch Django. Access log with
rotation in ``~/var/log/access.log``.
"""

import logging

from twisted.internet import endpoints, reactor
from twisted.python import logfile
from twisted.web import resource, server, static, wsgi

from mini_buildd import config

LOG = logging.getLogger(__name__)

ACCESS_LOG_ROTATE_BYTES = 5 * 1024 * 1024
ACCESS_LOG_KEEP = 9


class DirectoryFile(static.File):
    """Static files with directory listings, plain text for unknown types."""

    listing = True

    def __init__(self, path, defaultType="text/plain; charset=utf-8", ignoredExts=(), registry=None, allowExt=0):
        super().__init__(path, defaultType, ignoredExts, registry, allowExt)

    def directoryListing(self):
        if self.listing:
            return super().directoryListing()
        return resource.ForbiddenResource()


class AssetFile(DirectoryFile):
    """Web assets: no directory listings."""

    listing = False


class Root(resource.Resource):
    """Route static prefixes to twisted, everything else to Django."""

    def __init__(self, wsgi_resource):
        super().__init__()
        self.wsgi_resource = wsgi_resource

    def getChild(self, path, request):
        # Not a static child: hand the whole path back to Django.
        request.prepath.pop()
        request.postpath.insert(0, path)
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


def make_site():
    from django.core.wsgi import get_wsgi_application  # pylint: disable=import-outside-toplevel
    pool = reactor.getThreadPool()
    pool.adjustPoolsize(10, 100)
    root = Root(wsgi.WSGIResource(reactor, pool, get_wsgi_application()))
    root.putChild(b"static", static_root())
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
