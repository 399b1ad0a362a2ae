"""The packager (upstream §1.4 steps 3 and 5): checks user uploads, sends one buildrequest per
architecture to a builder, collects the buildresults and installs (or fails) the package.

Runs one worker thread: uploads and buildresults are handled one at a time, in arrival order.
Every outcome is an event: REJECTED, PACKAGING, INSTALLED or FAILED.
"""

import collections
import glob
import json
import logging
import os
import queue
import shutil
import tempfile
import threading

from mini_buildd import changes, config, dist, errors, faults, instance, services
from mini_buildd.archive.operations import ArchiveError, RepositoryView, resolve
from mini_buildd.archive import after_change, gates
from mini_buildd.events import Event, Type as EventType
from mini_buildd.models import AmbiguousMetaDistribution, Daemon, Repository
from mini_buildd.changes import uploadoptions
from mini_buildd.pipeline import after_install, ftpd, incoming, ports, simulated_builder, trust
from mini_buildd.tools import gnupg

LOG = logging.getLogger(__name__)


class Rejected(errors.Refused):
    """An upload or buildresult is refused; the message says why (400)."""


# ------------------------------------------------------------------------------------------------ helpers
def meta_distribution_map():
    """Global ``{meta: diststr}`` (:meth:`mini_buildd.models.Repository.mbd_meta_distribution_map`;
    raises Rejected when ambiguous)."""
    try:
        return Repository.mbd_meta_distribution_map()
    except AmbiguousMetaDistribution as e:
        raise Rejected(f"Ambiguous meta distribution '{e.meta}' ({e.first}, {e.second}): fix the layouts.") from e


def event_dir(bkey):
    return config.paths.events_of(*bkey.split("/"))


def problem(title, detail, status=400):
    return errors.problem_dict(status, detail, title=title)


# ------------------------------------------------------------------------------------------------ build config
def build_apt_config(repository, distribution, suite_option, internal_priority):
    """(sources.list, preferences, keys) for builds of ``suite_option`` in ``distribution`` (upstream §6.2)."""
    components = distribution.mbd_components()
    lines, prefs, keys = [], [], [instance.gnupg().pub_key()]

    base = distribution.base_source
    lines.append(base.mbd_apt_line(components=components))
    for ps in distribution.extra_sources.select_related("source"):
        lines.append(ps.source.mbd_apt_line(components=components))
        prefs.append(ps.mbd_apt_preferences())
        keys += [k.key for k in ps.source.apt_keys.all() if k.key]

    suites = [suite_option]
    if suite_option.experimental:
        suites += [so for so in repository.layout.suiteoption_set.select_related("suite") if not so.experimental]
    else:
        so = suite_option
        while so.migrates_to_id:
            so = so.migrates_to
            suites.append(so)
    url = instance.http_url()
    origin = Daemon.get().archive_origin
    for so in suites:
        diststr = repository.mbd_diststr(distribution, so)
        lines.append(f"deb [] {url}/repositories/{repository.identity} {diststr} {' '.join(components)}")
        prefs.append(f"Package: *\nPin: release n={diststr}, o={origin}\nPin-Priority: {internal_priority}\n")
    return "\n".join(lines) + "\n", "\n".join(prefs), "\n".join(keys)


# ------------------------------------------------------------------------------------------------ package
class Package:
    """One upload being built: its buildrequests and the buildresults that came back."""

    def __init__(self, upload, repository, distribution, suite_option, diststr):
        self.upload = upload
        self.repository = repository
        self.distribution = distribution
        self.suite_option = suite_option
        self.diststr = diststr
        self.buildrequests = {}   # arch -> Buildrequest
        self.buildresults = {}    # arch -> Buildresult
        self.optional = {}        # arch -> bool
        self.modes = {}           # arch -> (lintian, piuparts, autopkgtest)
        self.auto_ports = []
        self.builders = {}        # arch -> URL of the builder holding the buildrequest
        self.options = None       # upload options (set when accepted)
        self.accepted_source = None  # set when accepted

    @property
    def key(self):
        return self.upload.key

    def complete(self):
        return set(self.buildresults) >= set(self.buildrequests)


class Packager:
    """The packager thread."""

    def __init__(self, builder_select):
        self._queue = queue.Queue()
        self._thread = None
        self._lock = threading.Lock()
        self.ongoing = {}          # key -> Package
        self.builder_select = builder_select
        #: ``bkey -> {builder URL}``: builders a build was taken away from (re-dispatch); their late
        #: results are ignored. Bounded (oldest dropped).
        self.superseded = collections.OrderedDict()

    # ----------------------------------------------------------------------------- thread
    def start(self):
        conclude_interrupted()
        self._thread = threading.Thread(target=self._run, name="packager", daemon=True)
        self._thread.start()

    def stop(self):
        """Stop the thread; ongoing packages are dropped (upstream §1.4 step 7)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(60)
            self._thread = None
        after_install.join(60)
        with self._lock:
            self.ongoing.clear()

    def submit(self, kind, path):
        """Queue work for the thread: ``kind`` "upload" or "buildresult" (``path``: its changes in
        quarantine), or "redispatch" (``path``: ``(key, arch, builder)``, see :meth:`redispatch`)."""
        self._queue.put((kind, path))

    def ongoing_packages(self):
        """The packages being built now (a snapshot list of :class:`Package`)."""
        with self._lock:
            return list(self.ongoing.values())

    def _run(self):
        while True:
            item = self._queue.get()
            if item is None:
                return
            kind, path = item
            try:
                if kind == "upload":
                    self.handle_upload(path)
                elif kind == "redispatch":
                    self.redispatch(*path)
                else:
                    self.handle_buildresult(path)
            except Exception:  # pylint: disable=broad-except  # thread boundary: the packager thread must survive one item
                LOG.exception("Packager: unexpected error on %s", path)

    # ----------------------------------------------------------------------------- uploads
    def reject(self, changes_obj, path, reason, title="Upload rejected"):
        """Log a REJECTED event for an arrival. Only its changes file is kept (in a directory of
        its own, never one of another package); every other file of the arrival is deleted."""
        incoming.reject_arrival(changes_obj, path, reason, title)

    def handle_upload(self, path):
        """A user upload in its quarantine directory: parse, verify, decide, and only then move it
        to ``var/events/<bkey>/`` and request builds."""
        try:
            upload = changes.Upload(path)
        except changes.ChangesError as e:
            self.reject(None, path, str(e))
            return
        try:
            package = self._check_upload(upload)
            incoming.release(upload, event_dir(upload.bkey), extra_names=package.accepted_source)
        except (Rejected, changes.ChangesError, ValueError) as e:
            self.reject(upload, path, str(e))
            return
        try:
            self._request_builds(package)
        except Exception as e:  # pylint: disable=broad-except  # any failure to request builds rejects the upload
            LOG.exception("Buildrequests for %s failed", upload.key)
            self.reject(upload, upload.path, f"Can't request builds: {e}")
            return
        with self._lock:
            self.ongoing[package.key] = package
        save_dir = event_dir(upload.bkey)
        services.log_event(instance.make_event("PACKAGING", upload, {
            "buildrequests": {arch: breq.to_event_extra() for arch, breq in package.buildrequests.items()}},
            distribution=package.diststr), save_dir=save_dir)

    def _check_upload(self, upload):
        diststr = meta_distribution_map().get(upload.distribution, upload.distribution)
        try:
            d, view, distribution, suite_option = resolve(diststr)
        except ArchiveError as e:
            raise Rejected(str(e)) from e
        repository = view.repository
        if d.rollback is not None:
            raise Rejected(f"'{diststr}' is a rollback distribution: uploads are not possible.")
        if not suite_option.uploadable:
            raise Rejected(f"Suite '{d.suite}' is not uploadable (upload to a suite that migrates to it).")
        if not repository.mbd_is_active():
            raise Rejected(f"Repository '{repository}' is not active.")
        if not distribution.mbd_is_active():
            raise Rejected(f"Distribution '{distribution.codename}' is not active (check its sources).")

        upload.check_files()
        check_upload_rights(upload, repository)
        with self._lock:
            busy = [k for k, p in self.ongoing.items() if p.upload.source == upload.source and p.upload.version == upload.version]
        if busy:
            raise Rejected(f"Source {upload.source} {upload.version} is being built already ({busy[0]}).")

        dsc = upload.dsc_path()
        if dsc is None:
            raise Rejected("No DSC in upload (binary-only uploads are not accepted).")
        accepted = self._complete_dsc_files(upload, repository, dsc)

        regex = suite_option.layout.experimental_mandatory_version_regex if suite_option.experimental \
            else suite_option.layout.mandatory_version_regex
        regex = dist.substitute(regex, repository.identity, distribution.base_source.codeversion)
        try:
            view.precheck(diststr, upload.source, upload.version, regex)
        except ArchiveError as e:
            raise Rejected(str(e)) from e

        package = Package(upload, repository, distribution, suite_option, diststr)
        package.options = upload.upload_options()
        check_auto_ports(upload, repository, uploadoptions.get_option(package.options, "auto-ports", default=[]) or [])
        package.accepted_source = accepted
        return package

    @staticmethod
    def _complete_dsc_files(upload, repository, dsc):
        """The DSC must be of the uploaded source and version; every file it lists must be in the
        upload or in the repository pool, with the DSC's SHA-256. Files from the pool are copied
        into the upload's (quarantine) directory. Returns ``{name: sha256}`` of the .dsc and its
        files, as accepted."""
        try:
            parsed = changes.read_dsc(dsc)
            files = changes.read_dsc_files(dsc)  # names checked before any is joined to a path
        except (changes.ChangesError, ValueError) as e:
            raise Rejected(str(e)) from e
        if parsed.get("Source") != upload.source or parsed.get("Version") != upload.version:
            raise Rejected(f"{dsc.name} is of {parsed.get('Source')} {parsed.get('Version')}, "
                           f"not of the uploaded {upload.source} {upload.version}.")
        here = dsc.parent
        listed = {f["name"] for f in upload.files()}
        accepted = {dsc.name: changes.file_sha256(dsc)}
        pool = repository.mbd_path() / "pool"
        for entry in files:
            name, sha256 = entry["name"], entry["sha256"]
            if sha256 is None:
                raise Rejected(f"{dsc.name}: no SHA-256 checksum for {name} (Checksums-Sha256 is required).")
            target = here / name
            if name in listed:
                if changes.file_sha256(target) != sha256:
                    raise Rejected(f"DSC file {name}: SHA-256 differs from the .dsc.")
            else:
                candidates = glob.glob(os.path.join(glob.escape(str(pool)), "*", "*", glob.escape(upload.source), glob.escape(name)))
                found = next((c for c in candidates if not os.path.islink(c) and changes.file_sha256(c) == sha256), None)
                if found is None:
                    raise Rejected(f"DSC file {name} is neither in the upload nor in the repository pool.")
                shutil.copyfile(found, target)
            accepted[name] = sha256
        return accepted

    def _request_builds(self, package):
        upload = package.upload
        dsc = upload.dsc_path()
        dsc_files = [dsc] + [os.path.join(os.path.dirname(dsc), e["name"]) for e in changes.read_dsc_files(dsc)]
        d = package.distribution
        opts = package.options

        def opt(key, arch, default):
            return uploadoptions.get_option(opts, key, arch, default)

        for ao in d.architectureoption_set.select_related("architecture"):
            arch = ao.architecture.name
            lintian = dist.QAMode.parse(opt("lintian-mode", arch, d.lintian_mode))
            piuparts = dist.QAMode.parse(opt("piuparts-mode", arch, d.piuparts_mode))
            autopkgtest = dist.QAMode.parse(opt("autopkgtest-mode", arch, d.autopkgtest_mode))
            sources_list, preferences, keys = build_apt_config(
                package.repository, d, package.suite_option, int(opt("internal-apt-priority", arch, d.internal_apt_priority)))
            builder_url = packager_url = instance.http_url()
            bkey = f"{upload.key}/{arch}"
            buildlog = f"{bkey}/{changes.buildlog_name(upload.source, upload.version, arch)}"
            fields = {
                "Upload-To": instance.ftp_url(Daemon.get()),
                "Packager": packager_url,
                "Build-Dep-Resolver": d.get_build_dep_resolver_display(),
                "Sbuild-Config-Blocks": d.sbuild_config_blocks,
                "Sbuild-Setup-Blocks": d.sbuild_setup_blocks,
                "Deb-Build-Options": opt("deb-build-options", arch, d.deb_build_options),
                "Deb-Build-Profiles": opt("deb-build-profiles", arch, d.deb_build_profiles),
                "Add-Depends": ",".join(opt("add-depends", arch, None) or [x for x in d.add_depends.replace(",", " ").split() if x]),
                "Lintian-Mode": lintian.name,
                "Lintian-Extra-Options": d.lintian_extra_options,
                "Lintian-Warnfail-Options": d.lintian_warnfail_options,
                "Autopkgtest-Mode": autopkgtest.name,
                "Piuparts-Mode": piuparts.name,
                "Buildlog": buildlog,
                "Builder": builder_url,
                "Buildlog-Building": f"{builder_url}/mini_buildd/builds-dir/{buildlog}",
                "Buildlog-Installed": f"{packager_url}/mini_buildd/events-dir/{buildlog}",
                "Build-Time-Limit": int(d.build_time_limit.total_seconds()),
            }
            config_files = {"apt_sources.list": sources_list, "apt_preferences": preferences, "apt_keys": keys,
                            "ssl_cert": instance.ssl_cert(), "chroot_setup_script": d.chroot_setup_script, "sbuildrc_snippet": d.sbuildrc_snippet}
            out_dir = event_dir(bkey)
            out_dir.mkdir(parents=True, exist_ok=True)
            breq = changes.create_buildrequest(upload, arch, out_dir, distribution_str=package.diststr,
                                               arch_all=ao.build_architecture_all, fields=fields,
                                               config_files=config_files, dsc_files=dsc_files,
                                               gnupg=instance.gnupg())
            package.builders[arch] = self.builder_select(breq, f"{d.codename}:{arch}")
            breq = changes.Buildrequest(breq.path)  # as sent: Builder fields set to the chosen builder
            package.buildrequests[arch] = breq
            package.optional[arch] = ao.optional
            package.modes[arch] = (lintian, piuparts, autopkgtest)

    # ----------------------------------------------------------------------------- re-dispatch
    SUPERSEDED_MAX = 1000

    def redispatch(self, key, arch, builder):
        """``builder`` stopped answering while holding ``key``'s build for ``arch`` (see
        :class:`mini_buildd.pipeline.remotes.BuilderWatch`): send the buildrequest to another builder."""
        with self._lock:
            package = self.ongoing.get(key)
        if package is None or arch in package.buildresults or package.builders.get(arch) != builder:
            return
        breq = package.buildrequests[arch]
        try:
            new = self.builder_select(breq, f"{package.distribution.codename}:{arch}", exclude=[builder])
        except Exception as e:  # pylint: disable=broad-except  # re-dispatch is tried again on the next watch round
            LOG.warning("Re-dispatch of %s/%s away from %s failed (will try again): %s", key, arch, builder, e)
            return
        self.superseded.setdefault(breq.bkey, set()).add(builder)
        self.superseded.move_to_end(breq.bkey)
        while len(self.superseded) > self.SUPERSEDED_MAX:
            self.superseded.popitem(last=False)
        package.builders[arch] = new
        LOG.warning("Re-dispatched %s/%s: builder %s stopped answering, now built by %s.", key, arch, builder, new)

    # ----------------------------------------------------------------------------- buildresults
    def handle_buildresult(self, path):
        """A buildresult in its quarantine directory: it must belong to an ongoing package's
        request for its architecture and be signed by the builder that request went to."""
        try:
            bres = changes.Buildresult(path)
        except changes.ChangesError as e:
            self.reject(None, path, f"Bad buildresult: {e}", title="Buildresult rejected")
            return
        with self._lock:
            package = self.ongoing.get(bres.key)
        builder = bres.x_get("Builder") or ""
        if builder in self.superseded.get(bres.bkey, ()) and (package is None or package.builders.get(bres.architecture) != builder):
            LOG.warning("Ignoring late buildresult %s from %s: the build was re-dispatched to %s.", bres.bkey, builder,
                        package.builders.get(bres.architecture) if package else "another builder (done)")
            incoming.discard(bres.path.parent)
            return
        if package is None or bres.architecture not in package.buildrequests:
            self.reject(bres, path, f"Stray buildresult: no ongoing package {bres.key} for {bres.architecture}.",
                        title="Buildresult rejected")
            return
        if bres.architecture in package.buildresults:
            self.reject(bres, path, f"Duplicate buildresult for {bres.bkey}: one was accepted already.",
                        title="Buildresult rejected")
            return
        try:
            trust.check_buildresult_signer(bres, package.builders.get(bres.architecture))
            incoming.release(bres, event_dir(bres.bkey))
        except changes.ChangesError as e:
            self.reject(bres, path, f"Buildresult not trusted: {e}", title="Buildresult rejected")
            return
        package.buildresults[bres.architecture] = bres
        if package.complete():
            with self._lock:
                self.ongoing.pop(package.key, None)
            self._finish(package)

    def _finish(self, package):
        upload = package.upload
        if simulated_builder.refuse_install(package, problem, lambda extra: services.log_event(
                instance.make_event("FAILED", upload, extra, distribution=package.diststr), save_dir=event_dir(upload.bkey))):
            return
        ignore_checks = package.suite_option.experimental
        failed, binaries = [], []
        with tempfile.TemporaryDirectory(dir=config.paths.tmp) as tmp:
            for arch, bres in sorted(package.buildresults.items()):
                ok = bres.succeeded(*package.modes[arch], ignore_checks=ignore_checks)
                if not ok:
                    if not package.optional[arch]:
                        failed.append(f"{arch}: {describe_failure(bres)}")
                    continue
                if bres.sbuild_status == "skipped":
                    continue
                inner = bres.unpack(os.path.join(tmp, arch))
                if inner:
                    binaries.append(inner)
            extra = {"buildresults": {arch: b.to_event_extra() for arch, b in package.buildresults.items()}}
            save_dir = event_dir(upload.bkey)
            if failed:
                extra["error"] = problem("Build failed", "; ".join(failed), 500)
                services.log_event(instance.make_event("FAILED", upload, extra, distribution=package.diststr), save_dir=save_dir)
                return
            try:
                verify_accepted_source(package)
                gates.check_port(RepositoryView(package.repository), package.diststr, upload["Source"], binaries, upload.get("Changes"))
                RepositoryView(package.repository).install(package.diststr, upload.dsc_path(), binaries)
            except Exception as e:  # pylint: disable=broad-except  # any install failure is the package's FAILED event
                extra["error"] = problem("Install failed", str(e), 500)
                services.log_event(instance.make_event("FAILED", upload, extra, distribution=package.diststr), save_dir=save_dir)
                return
        view = RepositoryView(package.repository)
        after_change.snapshot(view, [package.diststr])
        faults.point("package:before-installed-event")
        extra["auto_ports"] = run_auto_ports(package)
        services.log_event(instance.make_event("INSTALLED", upload, extra, distribution=package.diststr), save_dir=save_dir)
        after_install.defer(package.repository, [package.diststr])


TERMINAL_EVENTS = ("INSTALLED", "FAILED", "REJECTED")


def conclude_interrupted():
    """Start-up: every package a previous run left ongoing (a PACKAGING event and no INSTALLED,
    FAILED or REJECTED) gets its terminal event: INSTALLED if its version is in its distribution
    now (an install the previous run finished, or the repository journal completed), else FAILED
    naming the restart. Returns ``[(key, type)]``."""
    done = []
    for packaging in sorted(config.paths.events.glob("*/*/*/*/*_PACKAGING.json")):
        directory = packaging.parent
        if any(any(directory.glob(f"*_{t}.json")) for t in TERMINAL_EVENTS):
            continue
        try:
            data = json.loads(packaging.read_text(encoding="utf-8"))
            diststr, source, version = data["distribution"], data["source"], data["version"]
            extra = {k: v for k, v in data.get("extra", {}).items()
                     if k in ("timecode", "key", "bkey", "changes", "architecture", "changed_by", "maintainer")}
        except (OSError, ValueError, KeyError, TypeError) as e:
            LOG.error("Can't read %s: %s", packaging, e)
            continue
        try:
            installed = resolve(diststr)[1].version_in(diststr, source) == version
        except (ArchiveError, Exception) as e:  # pylint: disable=broad-except
            LOG.warning("Can't look up %s %s in %s: %s", source, version, diststr, e)
            installed = False
        if installed:
            etype = EventType.INSTALLED
            extra["resumed"] = "installed before the restart"
        else:
            etype = EventType.FAILED
            extra["error"] = problem("Interrupted", "The daemon stopped while this package was being built or installed "
                                     "(not resumed): upload it again, or use the 'retry' call.", 500)
        services.log_event(Event(etype, diststr, source, version, extra=extra), save_dir=directory)
        LOG.warning("Package %s/%s ended %s at start-up (interrupted by a restart).", source, version, etype.name)
        done.append((data.get("extra", {}).get("key"), etype.name))
    return done + conclude_released_without_event()


def conclude_released_without_event():
    """Start-up: an upload released from quarantine to its event directory but stopped before its
    PACKAGING (or REJECTED) event (a kill in between) gets a FAILED event; else it would end in no
    state at all. Returns ``[(key, "FAILED")]``."""
    done = []
    for path in sorted(config.paths.events.glob("*/*/*/source/*.changes")):
        directory = path.parent
        if any(directory.glob("*.json")):
            continue
        try:
            upload = changes.Upload(path)
            key = "/".join(directory.relative_to(config.paths.events).parts[:3])
        except (changes.ChangesError, ValueError, OSError) as e:
            LOG.error("Can't read %s: %s", path, e)
            continue
        extra = {"key": key, "changes": path.name,
                 "error": problem("Interrupted", "The daemon stopped before this upload was packaged "
                                  "(not resumed): upload it again.", 500)}
        services.log_event(Event(EventType.FAILED, upload.distribution, upload.source, upload.version, extra=extra),
                           save_dir=directory)
        LOG.warning("Upload %s ended FAILED at start-up (interrupted by a restart before packaging).", key)
        done.append((key, "FAILED"))
    return done


def run_auto_ports(package):
    """The upload's ``auto-ports`` option, run after a successful install (upstream §3.8): one internal
    port per target distribution. A failing port never fails the package: the result is
    ``{diststr: [ok, result or error message]}`` for the INSTALLED event."""
    targets = uploadoptions.get_option(getattr(package, "options", {}) or {}, "auto-ports", default=[]) or []
    results = {}
    for target in targets:
        try:
            done = ports.port(package.upload.source, package.diststr, [target], version=package.upload.version)
            results[target] = [True, done[0]["version"] if done else ""]
            LOG.info("Auto-port of %s %s to %s: %s.", package.upload.source, package.upload.version, target, results[target][1])
        except Exception as e:  # pylint: disable=broad-except  # a failing auto-port never fails the package
            results[target] = [False, str(e)]
            LOG.warning("Auto-port of %s %s to %s failed: %s", package.upload.source, package.upload.version, target, e)
    return results


def describe_failure(bres):
    """Why a build result counts as failed, in words (internal error, cancel, sbuild status and checks)."""
    if bres.internal_error:
        return f"internal error: {bres.internal_error}"
    if bres.canceled_by:
        return f"canceled by {bres.canceled_by}"
    checks = ", ".join(f"{k} {v}" for k, v in bres.sbuild_checks().items())
    tags = f"; lintian: {', '.join(bres.lintian_tags)}" if bres.lintian_tags else ""
    return f"sbuild status {bres.sbuild_status}" + (f" ({checks})" if checks else "") + tags


def check_upload_rights(upload, repository):
    """Unless ``repository`` takes unauthenticated uploads, ``upload`` must be signed by one of its
    uploaders (raises ChangesError)."""
    if not repository.allow_unauthenticated_uploads:
        with gnupg.TmpKeyring(parent=config.paths.tmp) as keyring:
            instance.uploaders_keyring(repository, keyring)
            upload.signature_check(keyring)


def check_auto_ports(upload, repository, targets):
    """Each ``auto-ports`` target must be a distribution the uploader may upload to: in the same
    repository, or in one whose uploader rights the upload meets (auto-ports are signed with the
    instance key, which every repository accepts, so the rights are checked here)."""
    for target in targets:
        try:
            view = resolve(target)[1]
        except ArchiveError as e:
            raise Rejected(f"auto-ports: {e}") from e
        other = view.repository
        if other.pk == repository.pk:
            continue
        try:
            check_upload_rights(upload, other)
        except changes.ChangesError as e:
            raise Rejected(f"auto-ports to {target}: the upload may not go to repository '{other}' ({e}).") from e


def verify_accepted_source(package):
    """Before install: the .dsc and its files in the package's events dir must still have the
    SHA-256 they had when the upload was accepted."""
    here = package.upload.path.parent
    for name, sha256 in (getattr(package, "accepted_source", None) or {}).items():
        path = here / name
        if path.is_symlink() or not path.is_file() or changes.file_sha256(path) != sha256:
            raise Rejected(f"Source file {name} changed since the upload was accepted: not installing.")


def retry(bkey, user=None):  # pylint: disable=unused-argument
    """API: upload a failed or rejected package again (its events dir must hold exactly one
    FAILED/REJECTED event and one changes file)."""
    directory = event_dir(bkey)
    if not directory.is_dir() or ".." in bkey.split("/"):
        raise ValueError(f"No package '{bkey}' in the events.")
    failed = list(directory.glob("*_FAILED.json")) + list(directory.glob("*_REJECTED.json"))
    changes_files = [p for p in directory.glob("*.changes") if "_mini-buildd-" not in p.name]
    if len(failed) != 1 or len(changes_files) != 1:
        raise ValueError(f"'{bkey}' needs exactly one FAILED/REJECTED event and one changes file "
                         f"(found {len(failed)} and {len(changes_files)}).")
    ftpd.upload(changes_files[0], instance.ftp_url(Daemon.get()), force=True)
    return changes_files[0].name
