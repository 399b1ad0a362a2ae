"""Package operations on one repository (upstream §3.6): where a source is (``ls``), installing an
upload with rollback shifting, migrating along the suite chain, rollback restore, and removal.

Everything runs under the repository's reprepro lock, so an operation sees and leaves a
consistent state. Each change (install, migrate, remove; ports install through ``install``) is
planned completely first (:class:`_Plan` simulates the reprepro steps on one listing) and then run
through the repository's write-ahead journal (:mod:`mini_buildd.archive.journal`): all or nothing, also
across SIGKILL; :func:`recover_interrupted` completes or rolls back what a crash left, at daemon
start. Events (MIGRATED, REMOVED) are logged by the callers that own the event context.
"""

import contextvars
import fnmatch
import glob
import logging
import os
import pathlib

from debian import deb822, debian_support

from mini_buildd import config, dist, errors, services
from mini_buildd.archive import after_change, change_snapshots, gates, journal
from mini_buildd.events import Event
from mini_buildd.models import Repository

LOG = logging.getLogger(__name__)


class ArchiveError(errors.BadRequest):
    """An operation is not possible (the message says why; 400)."""


class _Plan:
    """Journal steps of one change, with the listing of its source as it will be after each step
    (``{diststr: [{version, ...}]}``, as :meth:`mini_buildd.tools.reprepro.Reprepro.ls`)."""

    def __init__(self, source, listing):
        self.source = source
        self.listing = {d: [dict(e) for e in entries] for d, entries in listing.items()}
        self.steps = []
        self.touched = set()

    def version_in(self, diststr):
        entries = self.listing.get(diststr)
        return entries[0]["version"] if entries else None

    def point(self, name):
        self.steps.append(journal.point(name))

    def copysrc(self, dst, src, version=None, ignore_errors=False):
        """Plan copying source (all versions, or version) from src to dst."""
        self.steps.append(journal.step("copysrc", dst, src, self.source, *([version] if version else []), ignore_errors=ignore_errors))
        self.touched.add(dst)
        entries = [e for e in self.listing.get(src, []) if version is None or e["version"] == version]
        if entries:
            self.listing[dst] = [dict(e) for e in entries]

    def removesrc(self, diststr, version=None):
        """Plan removing source (all versions, or version) from diststr."""
        self.steps.append(journal.step("removesrc", diststr, self.source, *([version] if version else [])))
        self.touched.add(diststr)
        remaining = [e for e in self.listing.get(diststr, []) if version is not None and e["version"] != version]
        if remaining:
            self.listing[diststr] = remaining
        else:
            self.listing.pop(diststr, None)

    def include(self, cmd, diststr, path):
        self.steps.append(journal.step(cmd, diststr, file=path))
        self.touched.add(diststr)


class RepositoryView:
    """A repository's distributions, suites and rollbacks as reprepro sees them."""

    def __init__(self, repository):
        self.repository = repository
        self.reprepro = repository.mbd_reprepro()

    @property
    def journal(self):
        return journal.Journal(config.paths.journal(self.repository.identity), self.reprepro)

    def _run(self, op, plan):
        """Run ``plan`` through the journal; a failure (rolled back) is an ArchiveError."""
        try:
            self.journal.run(op, plan.source, plan.steps, plan.touched)
        except journal.JournalError as e:
            raise ArchiveError(str(e)) from e

    # ----------------------------------------------------------------------------- naming
    def suite_option(self, suite_name):
        so = self.repository.layout.suiteoption_set.select_related("suite", "migrates_to__suite").filter(suite__name=suite_name).first()
        if so is None:
            raise ArchiveError(f"Repository '{self.repository}' has no suite '{suite_name}'.")
        return so

    def distribution(self, codename):
        d = self.repository.distributions.select_related("base_source").filter(base_source__codename=codename).first()
        if d is None:
            raise ArchiveError(f"Repository '{self.repository}' has no distribution '{codename}'.")
        return d

    def parse(self, diststr):
        """(DistStr, SuiteOption) for a diststr of this repository, validated."""
        try:
            d = dist.DistStr(diststr)
        except ValueError as e:
            raise ArchiveError(str(e)) from e
        if d.repository != self.repository.identity:
            raise ArchiveError(f"Distribution '{diststr}' is not in repository '{self.repository}'.")
        self.distribution(d.codename)
        so = self.suite_option(d.suite)
        if d.rollback is not None and d.rollback >= so.rollback:
            raise ArchiveError(f"'{diststr}': suite '{d.suite}' has only {so.rollback} rollback distribution(s).")
        return d, so

    def rollbacks(self, base, so):
        return [f"{base}-rollback{r}" for r in range(so.rollback)]

    # ----------------------------------------------------------------------------- queries
    def ls(self, source):
        """``{diststr: {version, component, architecture, rollbacks: {rb: {...}}}}`` (rollbacks folded in)."""
        raw = self.reprepro.ls(source)
        out = {}
        for diststr in sorted(raw):
            try:
                d = dist.DistStr(diststr)
            except ValueError:
                continue
            entry = raw[diststr][0]
            if d.rollback is None:
                out.setdefault(diststr, {}).update(entry)
                out[diststr].setdefault("rollbacks", {})
            else:
                out.setdefault(d.get(), {"rollbacks": {}})["rollbacks"][diststr] = entry
        return out

    def version_in(self, diststr, source):
        versions = self.reprepro.versions(diststr, source)
        return versions[0] if versions else None

    def all_versions(self, source):
        """Versions of ``source`` in every non-rollback distribution."""
        return {d: [e["version"] for e in entries] for d, entries in self.reprepro.ls(source).items()
                if dist.DistStr(d).rollback is None}

    # ----------------------------------------------------------------------------- rollbacks
    def _plan_shift(self, plan, diststr, so):
        """Plan moving the version in ``diststr`` into rollback0, rollback0 into rollback1, ...
        (errors of these steps are ignored, as before)."""
        if not so.rollback:
            return
        current = plan.version_in(diststr)
        if current is None:
            return
        rbs = self.rollbacks(diststr, so)
        if any(plan.version_in(rb) == current for rb in rbs):
            LOG.info("%s %s already in a rollback of %s: no shift.", plan.source, current, diststr)
            return
        # Oldest first: each step reads a distribution that later steps write, never the reverse.
        for r in range(so.rollback - 1, -1, -1):
            src = diststr if r == 0 else rbs[r - 1]
            if plan.version_in(src) is not None:
                plan.copysrc(rbs[r], src, ignore_errors=True)

    def shift_rollbacks(self, diststr, source):
        """Move the version in ``diststr`` into rollback0, rollback0 into rollback1, ... (one journaled change)."""
        _d, so = self.parse(diststr)
        with self.reprepro.lock:
            self.journal.recover()
            plan = _Plan(source, self.reprepro.ls(source))
            self._plan_shift(plan, diststr, so)
            if plan.steps:
                self._run("shift", plan)

    # ----------------------------------------------------------------------------- install
    def precheck(self, diststr, source, version, mandatory_regex):
        """Version rules of an upload to ``diststr`` (upstream §3.4); raise ArchiveError."""
        if not dist.version_matches_mandatory(version, mandatory_regex):
            raise ArchiveError(f"Version {version} lacks the mandatory appendix: must match '{mandatory_regex}' "
                               f"(e.g. {version}~<identity><codeversion>+1).")
        listing = self.reprepro.ls(source)
        for d, entries in listing.items():
            if dist.DistStr(d).rollback is None and version in [e["version"] for e in entries]:
                raise ArchiveError(f"Source {source} {version} already installed in {d}.")
        current = listing[diststr][0]["version"] if listing.get(diststr) else None
        if current is not None and debian_support.Version(version) < debian_support.Version(current):
            raise ArchiveError(f"Version {version} is lower than {current} in {diststr}.")

    def install(self, diststr, dsc_path, binary_changes):
        """Shift rollbacks, include the DSC, then each binary changes: all or nothing (journaled)."""
        source = dist_source_of(dsc_path)
        _d, so = self.parse(diststr)
        with self.reprepro.lock:
            self.journal.recover()
            plan = _Plan(source, self.reprepro.ls(source))
            plan.point("install:before-shift")
            self._plan_shift(plan, diststr, so)
            plan.point("install:after-shift")
            plan.include("includedsc", diststr, dsc_path)
            plan.point("install:after-includedsc")
            for changes in binary_changes:
                plan.include("include", diststr, changes)
            plan.point("install:after-include")
            try:
                self._run("install", plan)
            except ArchiveError as e:
                LOG.error("Install of %s to %s failed (rolled back): %s", source, diststr, e)
                raise ArchiveError(f"Installing {source} into {diststr} failed: {e}") from e

    # ----------------------------------------------------------------------------- migrate
    def migrate(self, source, diststr, full=False, version=None, gate=None):
        """Migrate ``source`` from ``diststr`` to its migrates_to suite (along the chain if ``full``).

        On a rollback distribution: restore that version into the base distribution.
        Returns a list of (from, to, version) done. All or nothing (journaled). ``gate(steps)``,
        called under the lock with the planned (from, to, version) steps before anything changes,
        may refuse by raising.
        """
        done = []
        d, so = self.parse(diststr)
        with self.reprepro.lock:
            self.journal.recover()
            plan = _Plan(source, self.reprepro.ls(source))
            plan.point("migrate:before-copy")
            if d.rollback is not None:
                base = d.get()
                v = plan.version_in(diststr)
                if v is None:
                    raise ArchiveError(f"Source {source} is not in {diststr}.")
                if plan.version_in(base) is not None:
                    raise ArchiveError(f"Source {source} is in {base}: remove it there first to restore from {diststr}.")
                plan.copysrc(base, diststr, v)
                done.append((diststr, base, v))
            else:
                while True:
                    if so.migrates_to is None:
                        if not done:
                            raise ArchiveError(f"Suite '{so.suite.name}' does not migrate.")
                        break
                    target = dist.DistStr.build(d.codename, d.repository, so.migrates_to.suite.name).get()
                    v = plan.version_in(diststr)
                    if v is None:
                        raise ArchiveError(f"Source {source} is not in {diststr}.")
                    if version is not None and v != version:
                        raise ArchiveError(f"Source {source} is in {diststr} as {v}, not {version}.")
                    if plan.version_in(target) == v:
                        if not full or done:
                            raise ArchiveError(f"Source {source} {v} is already in {target}.")
                    else:
                        self._plan_shift(plan, target, so.migrates_to)
                        plan.copysrc(target, diststr, v)
                        done.append((diststr, target, v))
                    if not full:
                        break
                    diststr, d, so = target, dist.DistStr(target), so.migrates_to
            plan.point("migrate:after-copy")
            if gate is not None:
                gate(done)
            self._run("migrate", plan)
        return done

    # ----------------------------------------------------------------------------- remove
    def remove(self, source, diststr, without_rollback=False, version=None, gate=None):
        """Remove ``source`` from ``diststr`` (into rollbacks unless ``without_rollback``); return the
        version removed. All or nothing (journaled). ``gate(version)``: as for :meth:`migrate`."""
        d, so = self.parse(diststr)
        with self.reprepro.lock:
            self.journal.recover()
            plan = _Plan(source, self.reprepro.ls(source))
            v = plan.version_in(diststr)
            if v is None or (version is not None and v != version):
                raise ArchiveError(f"Source {source}{' ' + version if version else ''} is not in {diststr}.")
            if d.rollback is None:
                if not without_rollback:
                    self._plan_shift(plan, diststr, so)
                plan.point("remove:before-remove")
                plan.removesrc(diststr, version)
            else:
                plan.point("remove:before-remove")
                plan.removesrc(diststr, version)
                rbs = self.rollbacks(d.get(), so)
                for r in range(d.rollback + 1, len(rbs)):
                    if plan.version_in(rbs[r]) is not None:
                        plan.copysrc(rbs[r - 1], rbs[r])
                        plan.removesrc(rbs[r])
            plan.point("remove:after-remove")
            if gate is not None:
                gate(v)
            self._run("remove", plan)
            return v


def dist_source_of(dsc_path):
    with open(dsc_path, encoding="utf-8", errors="replace") as f:
        return deb822.Dsc(f)["Source"]


# ------------------------------------------------------------------------------------------------ API functions
def _repositories(identities=None):
    qs = Repository.objects.exclude(status=Repository.STATUS_REMOVED)
    if identities:
        qs = qs.filter(identity__in=list(identities))
    return list(qs)


def resolve(diststr, exclude_removed=False):
    """``(DistStr, RepositoryView, Distribution, SuiteOption)`` for ``diststr``; raises ArchiveError."""
    try:
        d = dist.DistStr(diststr)
    except ValueError as e:
        raise ArchiveError(str(e)) from e
    repos = Repository.objects.exclude(status=Repository.STATUS_REMOVED) if exclude_removed else Repository.objects.all()
    repo = repos.filter(identity=d.repository).first()
    if repo is None:
        raise ArchiveError(f"No repository '{d.repository}' (distribution '{diststr}').")
    view = RepositoryView(repo)
    return d, view, view.distribution(d.codename), view.suite_option(d.suite)


def _repository_of(diststr):
    return resolve(diststr)[1]


def _version_ok(v, version, min_version):
    if version and v != version:
        return False
    return not (min_version and debian_support.Version(v) < debian_support.Version(min_version))


def ls(source, repositories=None, codenames=None, version=None, min_version=None, **_kwargs):
    """``{repository: {diststr: {version, component, architecture, rollbacks: {...}}}}``."""
    result = {}
    for repo in _repositories(repositories):
        listing = {}
        for diststr, entry in RepositoryView(repo).ls(source).items():
            if codenames and dist.DistStr(diststr).codename not in codenames:
                continue
            if "version" not in entry or not _version_ok(entry["version"], version, min_version):
                continue
            listing[diststr] = {"rollbacks": entry.get("rollbacks", {}),
                                **{k: entry[k] for k in ("version", "component", "architecture")}}
        if listing:
            result[repo.identity] = listing
    return result


def show(source, **kwargs):
    """``ls`` plus dsc/event/changes paths and migration info."""
    result = ls(source, **kwargs)

    def dsc_path(repository, version):
        pool = sorted(glob.glob(str(repository.mbd_path() / "pool" / "*" / "*" / glob.escape(source) /
                                    glob.escape(f"{source}_{version.split(':')[-1]}.dsc"))))
        return str(pathlib.Path(pool[0]).relative_to(config.paths.repositories)) if pool else None

    for repo_id, dists in result.items():
        view = RepositoryView(_repositories([repo_id])[0])
        for diststr, entry in dists.items():
            d, so = view.parse(diststr)
            entry["dsc_path"] = dsc_path(view.repository, entry["version"])
            for rollback in entry["rollbacks"].values():
                rollback["dsc_path"] = dsc_path(view.repository, rollback["version"])
            installed = sorted(glob.glob(str(config.paths.events_of(glob.escape(source), glob.escape(entry["version"]), "*", "*",
                                                                    "*_INSTALLED.json"))))
            entry["event_path"] = str(pathlib.Path(installed[-1]).relative_to(config.paths.events)) if installed else None
            changes = sorted(glob.glob(str(pathlib.Path(installed[-1]).parent / "*_source*.changes"))) if installed else []
            entry["changes_path"] = str(pathlib.Path(changes[0]).relative_to(config.paths.events)) if changes else None
            entry["uploadable"] = so.uploadable
            target = dist.DistStr.build(d.codename, d.repository, so.migrates_to.suite.name).get() if so.migrates_to else None
            entry["migrates_to"] = target
            entry["is_migrated"] = bool(target and dists.get(target, {}).get("version") == entry["version"])
    return result


def recover_interrupted():
    """At daemon start, before the packager: complete or roll back every repository change that a
    crash interrupted (see :mod:`mini_buildd.archive.journal`). Returns ``{repository identity: outcome}``
    for the repositories that had one ("completed" or "rolled back")."""
    result = {}
    for repo in Repository.objects.all():
        view = RepositoryView(repo)
        if view.journal.pending():
            outcome = view.journal.recover()
            if outcome:
                result[repo.identity] = outcome
    known = {r.identity for r in Repository.objects.all()}
    if config.paths.journals.is_dir():
        for path in sorted(config.paths.journals.iterdir()):
            if path.name.removesuffix(".new") not in known:
                LOG.warning("Journal %s of an unknown repository: ignored.", path)
    if result:
        LOG.warning("Interrupted repository changes recovered: %s", result)
    return result


def _log(etype, diststr, source, version, extra=None):
    services.log_event(Event(etype, diststr, source, version, extra=extra or {}))


def _forced_extra(gate):
    """Event extras of what a gate let through: ``forced`` (overridden by force), ``qa_regression`` (warned)."""
    return {**({"forced": "\n".join(gate.overridden)} if gate.overridden else {}),
            **({"qa_regression": "\n".join(gate.warnings)} if gate.warnings else {})}


def migrate(source, distribution, full=False, version=None, user=None, force=False):
    """API migrate: migrate source (version, default the one there) from distribution on (all the way if full); logged.

    Refused (409) when the installability check fails, unless ``force`` (ADMIN)."""
    if force and user is not None and not getattr(user, "is_superuser", False):
        raise errors.Forbidden("migrate with force (overriding the installability check) needs ADMIN")
    view = _repository_of(distribution)
    gate = gates.MigrationGate(view, source, force=force)
    done = view.migrate(source, distribution, full=bool(full), version=version or None, gate=gate)
    after_change.snapshot(view, [dst for _src, dst, _v in done])
    for src, dst, v in done:
        _log("MIGRATED", dst, source, v, {"from": src, "user": str(user) if user else "", **_forced_extra(gate)})
    after_change.report(view, [dst for _src, dst, _v in done])
    return {"warnings": gate.warnings} if gate.warnings else {}


def remove(source, distribution, without_rollback=False, version=None, user=None, force=False):
    """API remove; refused (409) when it leaves packages of the distribution uninstallable, unless ``force``."""
    view = _repository_of(distribution)
    gate = gates.RemovalGate(view, source, distribution, force=force)
    v = view.remove(source, distribution, without_rollback=bool(without_rollback), version=version or None, gate=gate)
    after_change.snapshot(view, [distribution])
    _log("REMOVED", distribution, source, v, {"user": str(user) if user else "", **_forced_extra(gate)})
    after_change.report(view, [distribution])
    return {}


def snapshot_ls(distribution):
    return _repository_of(distribution).reprepro.snapshots(distribution)


def snapshot_diff(distribution, a, b=change_snapshots.LIVE):
    """What changed in ``distribution`` from snapshot ``a`` to ``b`` (see :func:`mini_buildd.archive.change_snapshots.diff`)."""
    return change_snapshots.diff(_repository_of(distribution).reprepro, distribution, a, b or change_snapshots.LIVE)


def snapshot_create(distribution, name):
    _repository_of(distribution).reprepro.gensnapshot(distribution, name)
    return {}


def snapshot_delete(distribution, name):
    _repository_of(distribution).reprepro.delete_snapshot(distribution, name)
    return {}


#: Most paths :func:`search` returns (None: all); set per request for anonymous callers (the API's
#: HTTP layer sets the Daemon's ``anonymous_search_max_results``).
SEARCH_MAX_RESULTS = contextvars.ContextVar("SEARCH_MAX_RESULTS", default=None)


def search(pattern):
    """Glob search (``*pattern*``, lower case) over source and binary file names of repositories, builds and events.

    Symlinks are neither followed nor reported; at most :data:`SEARCH_MAX_RESULTS` paths (the walk
    stops there)."""
    glob_pattern = f"*{pattern.lower()}*"
    limit = SEARCH_MAX_RESULTS.get()
    result, found = {}, 0
    for area, root in (("repositories", config.paths.repositories), ("builds", config.paths.builds), ("events", config.paths.events)):
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                if not name.endswith((".dsc", ".deb", ".udeb")) or not fnmatch.fnmatch(name.lower(), glob_pattern):
                    continue
                path = pathlib.Path(dirpath, name)
                if path.is_symlink() or not path.is_file():
                    continue
                if limit is not None and found >= limit:
                    LOG.info("search '%s': stopped at %d results (anonymous limit).", pattern, limit)
                    return result
                found += 1
                source = name.split("_")[0]
                result.setdefault(source, {"repositories": [], "builds": [], "events": []})[area].append(
                    str(path.relative_to(root)))
    return result
