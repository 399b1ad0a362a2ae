"""Template context shared by every page: instance identity, version and host name.

The identity is cached for a few seconds (and dropped whenever the Daemon is saved) so that
busy pages such as the events page do not need a database query per request.
"""

import threading
import time

from django.db.models.signals import post_save

from mini_buildd import __version__, config
from mini_buildd.pipeline import simulated_builder

#: Seconds the cached Daemon identity is used.
IDENTITY_TTL = 10

_LOCK = threading.Lock()
_IDENTITY = {"value": None, "expires": 0.0}


def _forget_identity(**_kwargs):
    with _LOCK:
        _IDENTITY["expires"] = 0.0


post_save.connect(_forget_identity, sender="mini_buildd.Daemon", dispatch_uid="mbd-context-identity")


def identity():
    """The Daemon's identity ('' if there is no Daemon yet), cached."""
    now = time.monotonic()
    if _IDENTITY["expires"] > now:
        return _IDENTITY["value"]
    from mini_buildd.models import Daemon  # pylint: disable=import-outside-toplevel
    daemon = Daemon.objects.filter(pk=1).only("identity").first()
    value = daemon.identity if daemon else ""
    with _LOCK:
        _IDENTITY.update(value=value, expires=now + IDENTITY_TTL)
    return value


def instance(request):  # pylint: disable=unused-argument
    return {
        "mbd_version": __version__,
        "mbd_identity": identity(),
        "mbd_hostname": config.runtime.hostname,
        "mbd_bench_banner": simulated_builder.banner(),
    }
