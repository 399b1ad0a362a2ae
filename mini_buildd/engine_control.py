"""The link from the Daemon model's activation to the running engine.

The daemon process registers start/stop callbacks here; activating or deactivating the Daemon
model (admin action, setup call) then starts or stops the engine (FTP incoming, packager,
builder, crontab). Without a registered engine (tests, command-line tools) nothing happens.
"""

import logging

LOG = logging.getLogger(__name__)

_CALLBACKS = {"start": None, "stop": None}


def register(start, stop):
    _CALLBACKS["start"], _CALLBACKS["stop"] = start, stop


def unregister():
    _CALLBACKS["start"] = _CALLBACKS["stop"] = None


def on_daemon_activated():
    if _CALLBACKS["start"]:
        _CALLBACKS["start"]()


def on_daemon_deactivated():
    if _CALLBACKS["stop"]:
        _CALLBACKS["stop"]()
