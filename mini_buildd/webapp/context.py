"""Template context shared by every page: instance identity, version, host name and the
instance key's id (the footer).

The identity and the key id are cached for a few seconds (and dropped whenever the Daemon is
saved) so that busy pages such as the events page need neither a database query nor a GnuPG run
per request.
"""

import logging
import threading
import time

from django.db.models.signals import post_save

from mini_buildd import __version__, config
from mini_buildd.pipeline import simulated_builder

LOG = logging.getLogger(__name__)

#: Seconds the cached Daemon identity is used.
IDENTITY_TTL = 10

_LOCK = threading.Lock()
_IDENTITY = {"value": None, "expires": 0.0}
_KEY_ID = {"value": "", "expires": 0.0}
#: Seconds the cached key id is used.
KEY_ID_TTL = 300


def _forget_identity(**_kwargs):
    with _LOCK:
        _IDENTITY["expires"] = 0.0
        _KEY_ID["expires"] = 0.0


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


def key_id():
    """The long key id of the instance's GnuPG key ('' without one), cached."""
    now = time.monotonic()
    if _KEY_ID["expires"] > now:
        return _KEY_ID["value"]
    from mini_buildd.models import Daemon  # pylint: disable=import-outside-toplevel
    value = ""
    try:
        daemon = Daemon.objects.filter(pk=1).first()
        key = daemon.gnupg().get_secret_key() if daemon else None
        value = (key or {}).get("long_id", "")
    except Exception as e:  # pylint: disable=broad-except  # page boundary: the footer shows no key id
        LOG.debug("No key id for the footer: %s", e)
    with _LOCK:
        _KEY_ID.update(value=value, expires=now + KEY_ID_TTL)
    return value


def _engine_running():
    from mini_buildd.api import registry  # pylint: disable=import-outside-toplevel
    return registry.engine_is_running()


def instance(request):  # pylint: disable=unused-argument
    return {
        "mbd_version": __version__,
        "mbd_key_id": key_id(),
        "mbd_engine_running": _engine_running(),
        "mbd_identity": identity(),
        "mbd_hostname": config.runtime.hostname,
        "mbd_bench_banner": simulated_builder.banner(),
    }
