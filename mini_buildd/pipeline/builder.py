"""The builder (upstream §1.4 step 4, §6.5): one thread per buildrequest, at most
``max_parallel_builds`` running sbuild at once; each build ends with a signed buildresult sent
back to the packager over FTP (retried by the crontab until it arrives). Events: BUILDING, BUILT
(and REJECTED for buildrequests we don't trust).
"""

import datetime
import logging
import os
import pathlib
import threading
import time

from mini_buildd import changes, config, events, instance, services
from mini_buildd.models import chroot as chroot_model
from mini_buildd.pipeline import ftpd, incoming, simulated_builder, trust
from mini_buildd.tools import gnupg, sbuild, sbuild_log
from mini_buildd.events import Event, Type as EventType

LOG = logging.getLogger(__name__)

#: Seconds a build may run when its request names no limit.
DEFAULT_BUILD_TIME_LIMIT = 6 * 3600

#: How a builder not running as root runs piuparts as root (sbuild's ``--piuparts-root-args``):
#: the package's sudoers rule allows exactly the piuparts command line sbuild then runs
#: (debian/system/mini-buildd-sudoers); ``-n``: never wait for a password.
PIUPARTS_SUDO = "sudo -n --"


def piuparts_root_args():
    """sbuild's ``--piuparts-root-args`` for this builder: :data:`PIUPARTS_SUDO`, or ``env`` (no
    sudo needed) when it runs as root (sbuild reads an empty value as its default, ``sudo --``)."""
    return "env" if os.geteuid() == 0 else PIUPARTS_SUDO


class Build:
    """One build in progress."""

    def __init__(self, breq):
        self.breq = breq
        self.cancel_event = threading.Event()
        self.canceled_by = None
        self.started = None
        self.thread = None
        self.accepted = time.time()

    @property
    def bkey(self):
        return self.breq.bkey


def _event(etype, chg, extra=None):
    ext = chg.to_event_extra()
    ext.update(extra or {})
    return Event(etype, chg.distribution, chg.source, chg.version, extra=ext)


class Builder:
    """Build slots and the builds that wait for or hold them."""

    def __init__(self, slots):
        self.max_slots = max(1, int(slots))
        self._slots = threading.Semaphore(self.max_slots)
        self._lock = threading.Lock()
        self.builds = {}          # bkey -> Build
        self._stopping = False

    def start(self):
        self._stopping = False

    @property
    def load(self):
        with self._lock:
            alive = sum(1 for b in self.builds.values() if b.thread is not None and b.thread.is_alive())
        return alive / self.max_slots

    #: Builds that may wait for a slot, per slot; more buildrequests are rejected.
    MAX_WAITING_PER_SLOT = 20

    def submit(self, path):
        """A buildrequest arrived (in its quarantine directory): verify it there (signature,
        files, freshness, never accepted before, no build of that key here yet), then move it to
        its build dir and build it in a thread. Anything else is REJECTED, and nothing of another
        build is touched."""
        try:
            breq = changes.Buildrequest(path)
        except changes.ChangesError as e:
            incoming.reject_arrival(None, path, str(e), title="Buildrequest rejected")
            return
        build_dir = config.paths.build_dir(*breq.bkey_parts)
        try:
            trust.check_buildrequest(breq)
            with self._lock:
                if breq.bkey in self.builds:
                    raise changes.ChangesError(f"a build of {breq.bkey} is running here already")
                if len(self.builds) >= self.max_slots * (1 + self.MAX_WAITING_PER_SLOT):
                    raise changes.ChangesError(f"too many builds waiting ({len(self.builds)}): try again later")
                if os.path.lexists(build_dir):
                    raise changes.ChangesError(f"{breq.bkey} was built here already")
                trust.accept_buildrequest(breq)  # claims it (a concurrent copy loses here, before anything moves)
                incoming.release(breq, build_dir)
                breq = changes.Buildrequest(breq.path, timecode=breq.timecode)
                build = Build(breq)
                self.builds[breq.bkey] = build
        except changes.ChangesError as e:
            incoming.reject_arrival(breq, path, f"Buildrequest rejected: {e}", title="Buildrequest rejected")
            return
        build.thread = threading.Thread(target=self._run, args=(build,), name=f"build {breq.bkey}", daemon=True)
        build.thread.start()

    def cancel(self, bkey, by="admin"):
        """Cancel the ongoing build bkey (KeyError if there is none), naming who did."""
        with self._lock:
            build = self.builds.get(bkey)
        if build is None:
            raise KeyError(f"No ongoing build '{bkey}'.")
        build.canceled_by = by
        build.cancel_event.set()
        return bkey

    def stop(self, reason="SHUTDOWN", timeout=120):
        """Cancel every build (they still produce a canceled buildresult) and wait for them."""
        self._stopping = True
        with self._lock:
            builds = list(self.builds.values())
        for b in builds:
            b.canceled_by = reason
            b.cancel_event.set()
        deadline = time.monotonic() + timeout
        for b in builds:
            if b.thread is not None:
                b.thread.join(max(0.1, deadline - time.monotonic()))

    # ----------------------------------------------------------------------------- one build
    def _run(self, build):
        breq = build.breq
        try:
            while not self._slots.acquire(timeout=1):  # pylint: disable=consider-using-with  # released when the build ends
                if build.cancel_event.is_set():
                    break
            else:
                try:
                    self._build(build)
                finally:
                    self._slots.release()
                return
            self._build(build)  # canceled while waiting: produce the canceled result
        except Exception:  # pylint: disable=broad-except  # thread boundary: one build's thread
            LOG.exception("Build %s: unexpected error", breq.bkey)
        finally:
            with self._lock:
                self.builds.pop(breq.bkey, None)

    def _build(self, build):
        if simulated_builder.enabled():  # bench mode only: no sbuild
            simulated_builder.build(self, build, _event)
            return
        breq = build.breq
        build_dir = pathlib.Path(breq.path).parent
        events_dir = config.paths.events_of(*breq.bkey_parts)
        buildlog = build_dir / breq.buildlog_name
        instance_gnupg = instance.gnupg()
        services.log_event(_event(EventType.BUILDING, breq), save_dir=events_dir)
        build.started = time.monotonic()
        summary, lintian_tags, internal_error = {}, [], None
        limit = breq.build_time_limit or DEFAULT_BUILD_TIME_LIMIT
        timer = threading.Timer(limit, self._time_is_up, args=(build, limit))
        timer.daemon = True
        timer.start()
        try:
            if not build.cancel_event.is_set():
                try:
                    summary, lintian_tags = self._sbuild(build, build_dir, buildlog, instance_gnupg)
                except Exception as e:  # pylint: disable=broad-except  # an internal error is this build's result (BUILT with internal_error)
                    LOG.exception("Build %s failed internally", breq.bkey)
                    internal_error = str(e)
        finally:
            timer.cancel()
        bres = changes.create_buildresult(breq, build_dir, build_dir, sbuild_summary=summary, buildlog_path=buildlog,
                                          internal_error=internal_error, canceled_by=build.canceled_by,
                                          lintian_tags=lintian_tags, gnupg=instance_gnupg)
        services.log_event(_event(EventType.BUILT, bres), save_dir=events_dir)
        self.upload_result(bres.path)

    @staticmethod
    def _time_is_up(build, limit):
        if not build.cancel_event.is_set():
            LOG.warning("Build %s: time limit of %s exceeded: stopping it.", build.bkey, datetime.timedelta(seconds=limit))
            build.canceled_by = f"time limit ({datetime.timedelta(seconds=limit)}) exceeded"
            build.cancel_event.set()

    @staticmethod
    def _sbuild(build, build_dir, buildlog, instance_gnupg):
        breq = build.breq
        breq.unpack(build_dir)
        codename = breq.diststr.codename
        arch = breq.architecture
        chroot_mode, chroot, libdir = chroot_model.sbuild_target(codename, arch)
        scripts = sbuild.write_files(
            build_dir,
            sbuild.sbuildrc(breq.sbuild_config_blocks, libdir, breq.config_file("sbuildrc_snippet")),
            sbuild.setup_scripts(breq.sbuild_setup_blocks, breq.config_file("chroot_setup_script")))
        key = instance_gnupg.get_secret_key()
        argv = sbuild.command(
            breq.distribution, arch, chroot, breq.dsc_name(), chroot_mode=chroot_mode,
            build_dep_resolver=breq.build_dep_resolver, setup_scripts=scripts, arch_all=breq.arch_all,
            add_depends=breq.add_depends, lintian_mode=breq.lintian_mode, lintian_options=breq.lintian_extra_options,
            lintian_warnfail_options=breq.lintian_warnfail_options, piuparts_mode=breq.piuparts_mode,
            piuparts_root_args=piuparts_root_args(),
            autopkgtest_mode=breq.autopkgtest_mode, keyid=key["long_id"] if key else None,
            debug="sbuild" in config.runtime.debug)
        env = sbuild.environment(build_dir, config.paths.gnupg_home, breq.deb_build_options, breq.deb_build_profiles)
        sbuild.run(build_dir, argv, env, buildlog, cancel_event=build.cancel_event)
        log_text = buildlog.read_text(errors="replace") if buildlog.exists() else ""
        tags = sbuild_log.parse_lintian_tags(log_text)
        return sbuild_log.lintian_status(sbuild_log.parse_summary(log_text), log_text, tags), tags

    # ----------------------------------------------------------------------------- results upload
    @staticmethod
    def upload_result(bres_path):
        """Send a buildresult to its packager; on failure it stays for :meth:`retry_uploads`."""
        bres = changes.Buildresult(bres_path)
        try:
            ftpd.upload(bres.path, bres.upload_to)
            return True
        except ftpd.FtpError as e:
            LOG.warning("Buildresult %s: upload to %s failed (will retry): %s", bres.bkey, bres.upload_to, e)
            return False

    def retry_uploads(self):
        """Upload every buildresult that has no ``.upload`` marker yet (crontab job)."""
        done = failed = 0
        for path in config.paths.builds.glob("*/*/*/*/*_mini-buildd-buildresult_*.changes"):
            if ftpd.upload_marker(path).exists():
                continue
            try:
                check_own_result(path)
            except changes.ChangesError as e:
                LOG.warning("Not uploading %s: %s", path, e)
                failed += 1
                continue
            if self.upload_result(path):
                done += 1
            else:
                failed += 1
        return f"{done} uploaded, {failed} failed"


def check_own_result(bres_path):
    """A buildresult in a build dir is sent only if we made it: signed by our own key, for the
    buildrequest we accepted in the same dir, to that request's ``Upload-To`` (raises
    ChangesError). Builds can write into their own dir: a planted file is never forwarded."""
    bres = changes.Buildresult(bres_path)
    breq_path = bres.path.parent / changes.name_for(bres.source, bres.version, changes.BUILDREQUEST, bres.architecture)
    breq = changes.Buildrequest(breq_path)
    with gnupg.TmpKeyring(parent=config.paths.tmp) as keyring:
        keyring.add_pub_key(instance.gnupg().pub_key())
        bres.signature_check(keyring)
    if bres.upload_to != breq.upload_to or bres.timecode != breq.timecode:
        raise changes.ChangesError(f"{bres.name}: does not fit the buildrequest it sits beside")
    return bres


def expire_build_dirs(older_than):
    """Remove build dirs older than ``older_than`` (crontab job)."""
    return events.expire_key_dirs(config.paths.builds, older_than)


def cancel(bkey, user=None):
    """API: cancel an ongoing build on this instance."""
    if services.engine is None or services.engine.builder is None:
        raise ValueError("The engine is not running.")
    try:
        return services.engine.builder.cancel(bkey, by=str(user) if user else "admin")
    except KeyError as e:
        raise ValueError(str(e)) from e
