"""Template context shared by every page: instance identity, version and URLs."""

from mini_buildd import __version__, config


def instance(request):  # pylint: disable=unused-argument
    from mini_buildd.models import Daemon  # pylint: disable=import-outside-toplevel
    daemon = Daemon.objects.filter(pk=1).first()
    return {
        "mbd_version": __version__,
        "mbd_identity": daemon.identity if daemon else "",
        "mbd_hostname": config.runtime.hostname,
    }
