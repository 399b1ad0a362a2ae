"""Process-wide running services, registered by the daemon process: the event hub (always there
while the service runs) and the engine (FTP incoming, packager, builder, crontab; runs while the
Daemon model is Active). Models and API calls reach them here; without a daemon (tests,
command-line tools) they are absent and callers degrade gracefully.
"""

import logging

LOG = logging.getLogger(__name__)

#: The :class:`mini_buildd.events.Events` hub, or None.
events = None  # pylint: disable=invalid-name  # not a constant: set when the daemon starts
#: The :class:`mini_buildd.engine.Engine`, or None.
engine = None  # pylint: disable=invalid-name  # not a constant: set when the daemon starts


def engine_running():
    return engine is not None and engine.running


def on_daemon_activated():
    """Daemon model became Active: start the engine (if this process runs one)."""
    if engine is not None:
        engine.start()


def on_daemon_deactivated():
    if engine is not None:
        engine.stop()


def log_event(event, save_dir=None, after_save=None):
    """Log ``event`` to the hub if there is one (else only to the log); ``after_save``: see
    :meth:`mini_buildd.events.Events.log` (run here too without a hub)."""
    if events is not None:
        events.log(event, save_dir=save_dir, after_save=after_save)
    else:
        if after_save is not None:
            after_save()
        LOG.info("Event (no hub): %s", event)
