"""Process start-up and shut-down of the mini-buildd service: the home lock (one daemon per
home), home layout and its private modes, logging, Django, HTTP server, engine hook-up, signals.
"""

import errno
import fcntl
import logging
import logging.handlers
import os
import signal
import sys

from mini_buildd import config, errors, events, instance, net, notify, services, webapp
from mini_buildd.pipeline import ftpd
from mini_buildd.tools import schroot, tls

LOG = logging.getLogger(__name__)


class StartError(errors.ConfigError):
    """The daemon can't start; the message is shown as one error line."""


def setup_logging(paths, level_specs, stderr=True):
    """Log to ``~/var/log/daemon.log`` (rotated) and stderr.

    ``level_specs``: ``LEVEL`` for every logger (the root logger and mini-buildd's own, which
    is at INFO while other libraries' stay at WARNING by default), or ``logger.LEVEL`` for one
    logger.
    """
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    handlers = [logging.handlers.RotatingFileHandler(paths.daemon_log, maxBytes=5 * 1024 * 1024, backupCount=9)]
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    root.setLevel(logging.WARNING)
    logging.getLogger("mini_buildd").setLevel(logging.INFO)
    for spec in level_specs or []:
        name, _, level = spec.rpartition(".")
        if not hasattr(logging, level.upper()) or not isinstance(getattr(logging, level.upper()), int):
            raise StartError(f"Unknown log level '{level}' in '{spec}'.")
        for logger in ([name] if name else [None, "mini_buildd"]):
            logging.getLogger(logger).setLevel(getattr(logging, level.upper()))


def _route_twisted_logs():
    from twisted.logger import globalLogBeginner, STDLibLogObserver  # pylint: disable=import-outside-toplevel
    globalLogBeginner.beginLoggingTo([STDLibLogObserver(name="twisted")], redirectStandardIO=False,
                                     discardBuffer=True)


class HomeInUse(StartError):
    """Another daemon holds the home's lock."""


#: The open lock file while we hold the home (kept for the life of the process; close-on-exec,
#: so build processes never inherit the lock).
_HOME_LOCK = None


def lock_home(home):
    """Take the home's exclusive lock (:attr:`mini_buildd.config.Paths.lock_file`) and write our pid
    into it; raise :class:`HomeInUse` naming the holder's pid if another daemon has it.

    This must be the first thing a daemon does with a home: a second daemon must not touch
    anything (no build killed, no session ended, no port bound) of the one running. Only the
    home directory itself is created (mode 0700) if missing; an existing lock file is only read.
    """
    global _HOME_LOCK  # pylint: disable=global-statement
    paths = config.Paths(home)
    try:
        paths.home.mkdir(mode=config.HOME_MODE, parents=True, exist_ok=True)
        fd = os.open(paths.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, config.SECRET_FILE_MODE)
    except OSError as e:
        raise StartError(f"Home '{home}' is not usable: {e.strerror or e}") from e
    lock = os.fdopen(fd, "r+", encoding="ascii")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            lock.close()
            raise StartError(f"Can't lock home '{home}': {e.strerror or e}") from e
        holder = lock.read(32).strip() or "?"
        lock.close()
        raise HomeInUse(f"home '{paths.home}' is in use by the mini-buildd daemon with pid {holder}.") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    _HOME_LOCK = lock
    return lock


def prepare_home(home):
    """Create the home layout; raise StartError if the home is unusable."""
    paths = config.paths if config.paths and str(config.paths.home) == str(home) else config.Paths(home)
    try:
        paths.create()
        probe = paths.tmp / ".write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise StartError(f"Home '{home}' is not usable: {e.strerror or e}") from e
    try:
        schroot.confine_old_fstabs(paths.shared, config.runtime.schroot_prefix)
    except OSError as e:
        LOG.warning("Can't check the schroot fstabs for build confinement: %s", e)
    return paths


def setup_django(paths, debug=False):
    """Configure Django on the instance home and migrate its database."""
    try:
        webapp.setup(paths, debug=debug)
        webapp.migrate()
    except Exception as e:  # pylint: disable=broad-except  # start boundary: any database set-up failure is one StartError line
        raise StartError(f"Database set-up failed: {e}") from e


def validate_endpoints(endpoint_strings):
    """Syntax of every endpoint, and for ``ssl:`` ones a readable key that fits the certificate."""
    for desc in endpoint_strings:
        try:
            tls.check_endpoint_files(net.ServerEndpoint(desc))
        except (net.EndpointError, tls.TlsError) as e:
            raise StartError(str(e)) from e


def validate_smtp(smtp_url):
    """Refuse an SMTP URL that does not parse (before the daemon starts)."""
    if smtp_url is None:
        return
    try:
        notify.parse_smtp_url(smtp_url)
    except ValueError as e:
        raise StartError(str(e)) from e


def make_mailer(daemon_model):
    """The notification mailer when ``--smtp`` was given, else None."""
    if not config.runtime.smtp:
        return None
    LOG.info("Notification mails via %s.", notify.parse_smtp_url(config.runtime.smtp).host)
    return notify.Mailer(config.runtime.smtp, daemon_model.identity, notify.recipients,
                         sender=daemon_model.email_address, http_url=instance.http_url())


class Service:
    """The running service: HTTP server and event hub always, engine while the Daemon model is Active."""

    def __init__(self):
        self.exit_code = 0
        self.ports = []
        self.webhooks = None  # the webhook dispatcher (mini_buildd.webhooks.Dispatcher)

    def _listen_failed(self, failure):
        from twisted.internet import reactor  # pylint: disable=import-outside-toplevel
        err = failure.value
        if hasattr(err, "subFailure"):  # FirstError from gatherResults
            err = err.subFailure.value
        LOG.error("Can't listen: %s", err)
        print(f"mini-buildd: error: can't listen: {err}", file=sys.stderr)
        self.exit_code = 1
        reactor.callWhenRunning(reactor.stop)

    def _listening(self, ports):
        self.ports = ports
        from mini_buildd.models import Daemon  # pylint: disable=import-outside-toplevel
        LOG.info("mini-buildd serving %s (home %s).", ", ".join(config.runtime.http_endpoints), config.paths.home)
        if Daemon.get().mbd_is_active():
            from twisted.internet import reactor  # pylint: disable=import-outside-toplevel
            reactor.callInThread(self._start_engine)

    @staticmethod
    def _start_engine():
        try:
            services.engine.start()
        except ftpd.FtpError as e:  # a configuration error (endpoint, certificate): one line says it
            LOG.error("Engine start failed (the web interface runs; fix the Daemon's FTP settings, then start): %s", e)
        except Exception as e:  # pylint: disable=broad-except  # thread boundary: the engine start thread logs, the web interface runs on
            LOG.exception("Engine start failed: %s", e)

    def _shutdown(self):
        LOG.info("Shutting down...")
        try:
            if services.engine is not None:
                services.engine.stop()
            if self.webhooks is not None:
                self.webhooks.stop()
            if services.events is not None:
                services.events.shutdown()
        finally:
            services.engine = services.events = None
            instance.gnupg().kill_agents()
        LOG.info("Shut down.")

    def run(self):
        """Start the engine and the HTTP server, then run the twisted reactor until shutdown."""
        from twisted.internet import reactor  # pylint: disable=import-outside-toplevel
        from mini_buildd import engine, httpd, webhooks_store  # pylint: disable=import-outside-toplevel
        from mini_buildd.models import Daemon  # pylint: disable=import-outside-toplevel
        _route_twisted_logs()
        daemon = Daemon.get()
        services.events = events.Events(config.paths.events, queue_size=daemon.event_queue_size,
                                        hooks_dir=config.paths.event_hooks, mailer=make_mailer(daemon))
        services.events.load()
        self.webhooks = webhooks_store.start(services.events)
        services.engine = engine.Engine()
        site = httpd.make_site()
        reactor.addSystemEventTrigger("before", "shutdown", self._shutdown)
        d = httpd.listen(site, config.runtime.http_endpoints)
        d.addCallbacks(self._listening, self._listen_failed)
        # A background job inherits SIGINT as ignored; twisted then keeps it that way. We want
        # SIGINT (Ctrl-C) to stop us cleanly whatever started us.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        reactor.run(installSignalHandlers=True)
        return self.exit_code
