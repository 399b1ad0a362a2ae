"""The engine: runs while the Daemon model is Active (upstream §1.1). It owns the FTP incoming server,
the packager, the builder, the crontab and the builder watch (re-dispatch, see
:mod:`mini_buildd.pipeline.remotes`), dispatches each finished ``*.changes`` by kind (buildrequests to the
builder, uploads and buildresults to the packager) and chooses the builder of each buildrequest
(ourselves or a remote, :meth:`Engine.select_builder`).
"""

import logging
import os
import threading

from mini_buildd import changes, config
from mini_buildd.pipeline import ftpd, incoming

LOG = logging.getLogger(__name__)


class Engine:
    """Start/stop the engine parts; ``load`` for the status call."""

    def __init__(self):
        self._lock = threading.RLock()
        self.running = False
        self.ftpd = None
        self.packager = None
        self.builder = None
        self.cron = None
        self.watch = None
        self.selector = None
        self.incoming = None

    # ----------------------------------------------------------------------------- life cycle
    def start(self):
        # pylint: disable=import-outside-toplevel
        from mini_buildd.archive import operations
        from mini_buildd.pipeline import builder, packager, remotes
        from mini_buildd import cron
        from mini_buildd.tools import schroot
        from mini_buildd.models import Chroot, Daemon
        with self._lock:
            if self.running:
                return
            daemon = Daemon.get()
            kill_orphaned_builds()
            schroot.end_stale_sessions(c.mbd_schroot_name() for c in Chroot.objects.select_related("source", "architecture"))
            started = []  # all or nothing: no packager or builder without the FTP server (or the reverse)

            def start(part):
                part.start()
                started.append(part)
                return part
            try:
                self.builder = builder.Builder(daemon.max_parallel_builds)
                self.selector = remotes.Selector()
                try:  # before the packager, which looks at what is installed to conclude interrupted packages
                    operations.recover_interrupted()
                except Exception:  # pylint: disable=broad-except
                    LOG.exception("Recovery of interrupted repository changes failed")
                self.packager = start(packager.Packager(self.select_builder))
                self.watch = start(remotes.BuilderWatch(self.packager))
                start(self.builder)
                self.incoming = start(incoming.Incoming(self.dispatch))
                self.ftpd = start(ftpd.FtpD(daemon.ftpd_bind, config.paths.incoming, self.incoming.submit_session,
                                            options=daemon.ftpd_options, limits=ftpd.Limits.from_daemon(daemon)))
                self.cron = start(cron.Crontab(self))
            except BaseException:
                self._stop_parts(started)
                LOG.warning("Engine not started: stopped the %d part(s) that had started.", len(started))
                raise
            self.running = True
            LOG.info("Engine started (FTP %s, %d build slot(s)).", daemon.ftpd_bind, daemon.max_parallel_builds)
        self.incoming.requeue_leftovers()

    def stop(self):
        with self._lock:
            if not self.running:
                return
            self.running = False
            self._stop_parts([self.packager, self.watch, self.builder, self.incoming, self.ftpd, self.cron])
            LOG.info("Engine stopped.")

    def _stop_parts(self, parts):
        """Stop those of the engine's parts that are in ``parts``: FTP server, incoming, crontab and
        watch first, then the builder (cancelling its builds), the packager last."""
        for part in (self.ftpd, self.incoming, self.cron, self.watch):
            if part in parts:
                try:
                    part.stop()
                except Exception as e:  # pylint: disable=broad-except
                    LOG.error("Stopping %s failed: %s", part, e)
        if self.builder in parts:
            self.builder.stop("SHUTDOWN")
        if self.packager in parts:
            self.packager.stop()

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
        from mini_buildd.tools import gnupg  # pylint: disable=import-outside-toplevel
        from mini_buildd.pipeline import remotes  # pylint: disable=import-outside-toplevel
        selector = self.selector or remotes.Selector()
        own_load = self.load if self.running else (self.builder.load if self.builder is not None else -1.0)
        return selector.select(breq.path, codename_arch, gnupg.Gnupg(config.paths.gnupg_home, tmp_parent=config.paths.tmp),
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
    import signal  # pylint: disable=import-outside-toplevel
    import time  # pylint: disable=import-outside-toplevel
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
