"""The engine: runs while the Daemon model is Active (upstream §1.1). It owns the FTP incoming server,
the packager, the builder, the crontab and the builder watch (re-dispatch, see
:mod:`mini_buildd.pipeline.remotes`), dispatches each finished ``*.changes`` by kind (buildrequests to the
builder, uploads and buildresults to the packager) and chooses the builder of each buildrequest
(ourselves or a remote, :meth:`Engine.select_builder`).

The engine is a twisted :class:`~twisted.application.service.MultiService` of its parts (each a
:class:`~twisted.application.service.Service`): they start in the order added (packager, builder,
watch, incoming, FTP server, crontab) and stop in reverse; a start is all or nothing (a part failing
to start stops the ones started before it). Start and stop are synchronous (they return when all
parts are started or stopped) and may be called from any thread.
"""

import logging
import os
import signal
import threading
import time

from twisted.application import service

from mini_buildd import changes, config, cron, instance
from mini_buildd.archive import operations
from mini_buildd.models import Chroot, Daemon
from mini_buildd.pipeline import builder, ftpd, incoming, packager, remotes
from mini_buildd.tools import schroot

LOG = logging.getLogger(__name__)


class Part(service.Service):
    """An engine part with its own ``start()``/``stop()`` (packager, builder, incoming, FTP server) as
    a service. Stopping never raises: a failure is logged (the other parts still stop)."""

    def __init__(self, name, part, stop=None):
        self.name = name
        self.part = part
        self._stop = stop or part.stop

    def __repr__(self):
        return repr(self.part)

    def startService(self):
        self.part.start()
        super().startService()

    def stopService(self):
        super().stopService()
        try:
            self._stop()
        except Exception as e:  # pylint: disable=broad-except  # stop boundary: the other parts still stop
            LOG.error("Stopping %s failed: %s", self.part, e)


class Engine(service.MultiService):
    """Start/stop the engine parts; ``load`` for the status call. ``running`` (twisted's service
    flag) is true once every part has started, false again as soon as a stop begins."""

    def __init__(self):
        super().__init__()
        self._lock = threading.RLock()
        self.ftpd = None
        self.packager = None
        self.builder = None
        self.cron = None
        self.watch = None
        self.selector = None
        self.incoming = None

    # ----------------------------------------------------------------------------- life cycle
    def start(self):
        """Start the engine (nothing if it runs): this run's parts, all or none; raises what stopped a part from starting."""
        with self._lock:
            if self.running:
                return
            daemon = Daemon.get()
            kill_orphaned_builds()
            schroot.end_stale_sessions(c.mbd_schroot_name() for c in Chroot.objects.select_related("source", "architecture"))
            for part in list(self):  # the parts of the last run
                part.disownServiceParent()
            try:
                self._add_parts(daemon)
            except BaseException:
                LOG.warning("Engine not started: stopped the %d part(s) that had started.", 0)
                raise
            self.startService()
            LOG.info("Engine started (FTP %s, %d build slot(s)).", daemon.ftpd_bind, daemon.max_parallel_builds)
        self.incoming.requeue_leftovers()

    def _add_parts(self, daemon):
        """Make this run's parts, in start order: no packager or builder without the FTP server (or the reverse)."""
        self.builder = builder.Builder(daemon.max_parallel_builds)
        self.selector = remotes.Selector()
        try:  # before the packager, which looks at what is installed to conclude interrupted packages
            operations.recover_interrupted()
        except Exception:  # pylint: disable=broad-except
            LOG.exception("Recovery of interrupted repository changes failed")
        self.packager = packager.Packager(self.select_builder)
        self.watch = remotes.BuilderWatch(self.packager)
        self.incoming = incoming.Incoming(self.dispatch)
        self.ftpd = ftpd.FtpD(daemon.ftpd_bind, config.paths.incoming, self.incoming.submit_session,
                              options=daemon.ftpd_options, limits=ftpd.Limits.from_daemon(daemon))
        self.cron = cron.Crontab(self)
        for part in (Part("packager", self.packager),
                     Part("builder", self.builder, stop=lambda: self.builder.stop("SHUTDOWN")),
                     cron.PollService("builder watch", self.watch.poll, self.watch.work),
                     Part("incoming", self.incoming),
                     Part("ftpd", self.ftpd),
                     self.cron):
            part.setServiceParent(self)

    def startService(self):
        """Start the parts in order, all or nothing: when one fails, those started before it are
        stopped (in reverse) and the error is raised. ``running`` is set when all have started."""
        started = []
        try:
            for part in self:
                part.startService()
                started.append(part)
        except BaseException:
            for part in reversed(started):
                part.stopService()
            LOG.warning("Engine not started: stopped the %d part(s) that had started.", len(started))
            raise
        service.Service.startService(self)

    def stop(self):
        """Stop the engine (nothing if it does not run): the parts in reverse start order; returns when they have stopped."""
        with self._lock:
            if not self.running:
                return
            self.stopService()  # running false at once, then the parts in reverse start order
            LOG.info("Engine stopped.")

    @property
    def load(self):
        """Build load (alive builds / slots); -1 when stopped."""
        if not self.running or self.builder is None:
            return -1.0
        return self.builder.load

    # ----------------------------------------------------------------------------- dispatch
    def dispatch(self, path):
        """A ``*.changes`` arrived (in its quarantine directory, not verified yet)."""
        path = str(path)
        kind = changes.classify(path)
        LOG.info("Incoming %s (%s).", os.path.basename(path), kind)
        if kind == "buildrequest":
            self.builder.submit(path)
        else:
            self.packager.submit(kind, path)

    def select_builder(self, breq, codename_arch, exclude=()):
        """Send ``breq`` to the least loaded builder (ourselves or a remote) that has
        ``codename_arch`` and takes it over FTP; return that builder's URL (upstream §7)."""
        selector = self.selector or remotes.Selector()
        own_load = self.load if self.running else (self.builder.load if self.builder is not None else -1.0)
        return selector.select(breq.path, codename_arch, instance.gnupg(),
                               exclude=exclude, own_load=own_load)


def _in_builds(pid, builds):
    """Whether process ``pid`` works for a build below ``builds`` (cwd or HOME there: sbuild and
    everything it starts get HOME = the build dir)."""
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
        if cwd == builds or cwd.startswith(builds + os.sep):
            return True
        with open(f"/proc/{pid}/environ", "rb") as f:
            for var in f.read().split(b"\0"):
                if var.startswith(b"HOME="):
                    home = var[5:].decode(errors="replace")
                    return home.startswith(builds + os.sep)
    except OSError:
        pass
    return False


def kill_orphaned_builds():
    """Kill build processes a previous (killed) daemon left running in our build dirs."""
    builds = str(config.paths.builds)
    victims = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid() and _in_builds(p, builds)]
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + 10
    while victims and time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in victims):
        time.sleep(0.2)
    if victims:
        LOG.warning("Killed %d orphaned build process(es) of a previous run.", len(victims))
    return len(victims)
