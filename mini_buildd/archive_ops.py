"""Package operations on one repository (SPEC §3.6): where a source is (``ls``), installing an
upload with rollback shifting, migrating along the suite chain, rollback restore, and removal.

Everything runs under the repository's reprepro lock, so an operation sees and leaves a
consistent state. Events (MIGRATED, REMOVED) are logged by the callers that own the event context.
"""

import contextvars
import logging
import pathlib

from debian import debian_support

from mini_buildd import dist

LOG = logging.getLogger(__name__)


class ArchiveError(Exception):
    http_status = 400
    """An operation is not possible (the message says why)."""


class RepositoryView:
    """A repository's distributions, suites and rollbacks as reprepro sees them."""

    def __init__(self, repository):
        self.repository = repository
        self.reprepro = repository.mbd_reprepro()

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
    def shift_rollbacks(self, diststr, source, listing=None):
        """Move the version in ``diststr`` into rollback0, rollback0 into rollback1, ... (errors
        ignored). ``listing``: a fresh ``reprepro.ls(source)`` to save asking again."""
        d, so = self.parse(diststr)
        if not so.rollback:
            return
        listing = self.reprepro.ls(source) if listing is None else listing

        def version_in(name):
            entries = listing.get(name)
            return entries[0]["version"] if entries else None
        current = version_in(diststr)
        if current is None:
            return
        rbs = self.rollbacks(diststr, so)
        if any(version_in(rb) == current for rb in rbs):
            LOG.info("%s %s already in a rollback of %s: no shift.", source, current, d.get())
            return
        # Oldest first: each step reads a distribution that later steps write, never the reverse,
        # so the listing taken before the loop stays valid.
        for r in range(so.rollback - 1, -1, -1):
            src = diststr if r == 0 else rbs[r - 1]
            if version_in(src) is None:
                continue
            try:
                self.reprepro.copysrc(rbs[r], src, source)
            except Exception as e:  # pylint: disable=broad-except
                LOG.warning("Rollback shift %s -> %s of %s failed (ignored): %s", src, rbs[r], source, e)

    # ----------------------------------------------------------------------------- install
    def precheck(self, diststr, source, version, mandatory_regex):
        """Version rules of an upload to ``diststr`` (SPEC §3.4); raise ArchiveError."""
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
        """Shift rollbacks, include the DSC, then each binary changes; restore from rollback0 on failure."""
        source = dist_source_of(dsc_path)
        # one export (and signature) per changed distribution at the end, not one per command
        with self.reprepro.deferred_export():
            _d, so = self.parse(diststr)
            listing = self.reprepro.ls(source)
            had_version = bool(listing.get(diststr))
            self.shift_rollbacks(diststr, source, listing=listing)
            self.reprepro.includedsc(diststr, dsc_path)
            try:
                for changes in binary_changes:
                    self.reprepro.include(diststr, changes)
            except Exception as e:
                LOG.error("Binary install of %s to %s failed: %s: restoring.", source, diststr, e)
                self.reprepro.removesrc(diststr, source)
                if had_version and so.rollback:
                    self.reprepro.copysrc(diststr, f"{diststr}-rollback0", source)
                raise ArchiveError(f"Installing binaries of {source} into {diststr} failed: {e}") from e

    # ----------------------------------------------------------------------------- migrate
    def migrate(self, source, diststr, full=False, version=None):
        """Migrate ``source`` from ``diststr`` to its migrates_to suite (along the chain if ``full``).

        On a rollback distribution: restore that version into the base distribution.
        Returns a list of (from, to, version) done.
        """
        done = []
        with self.reprepro.deferred_export():
            d, so = self.parse(diststr)
            if d.rollback is not None:
                base = d.get()
                v = self.version_in(diststr, source)
                if v is None:
                    raise ArchiveError(f"Source {source} is not in {diststr}.")
                if self.version_in(base, source) is not None:
                    raise ArchiveError(f"Source {source} is in {base}: remove it there first to restore from {diststr}.")
                self.reprepro.copysrc(base, diststr, source, v)
                return [(diststr, base, v)]
            while True:
                if so.migrates_to is None:
                    if not done:
                        raise ArchiveError(f"Suite '{so.suite.name}' does not migrate.")
                    break
                target = dist.DistStr.build(d.codename, d.repository, so.migrates_to.suite.name).get()
                v = self.version_in(diststr, source)
                if v is None:
                    raise ArchiveError(f"Source {source} is not in {diststr}.")
                if version is not None and v != version:
                    raise ArchiveError(f"Source {source} is in {diststr} as {v}, not {version}.")
                if self.version_in(target, source) == v:
                    if not full or done:
                        raise ArchiveError(f"Source {source} {v} is already in {target}.")
                else:
                    self.shift_rollbacks(target, source)
                    self.reprepro.copysrc(target, diststr, source, v)
                    done.append((diststr, target, v))
                if not full:
                    break
                diststr, d, so = target, dist.DistStr(target), so.migrates_to
        return done

    # ----------------------------------------------------------------------------- remove
    def remove(self, source, diststr, without_rollback=False, version=None):
        """Remove ``source`` from ``diststr`` (into rollbacks unless ``without_rollback``); return the version removed."""
        with self.reprepro.deferred_export():
            d, so = self.parse(diststr)
            v = self.version_in(diststr, source)
            if v is None or (version is not None and v != version):
                raise ArchiveError(f"Source {source}{' ' + version if version else ''} is not in {diststr}.")
            if d.rollback is None:
                if not without_rollback:
                    self.shift_rollbacks(diststr, source)
                self.reprepro.removesrc(diststr, source, version)
            else:
                self.reprepro.removesrc(diststr, source, version)
                rbs = self.rollbacks(d.get(), so)
                for r in range(d.rollback + 1, len(rbs)):
                    if self.version_in(rbs[r], source) is not None:
                        self.reprepro.copysrc(rbs[r - 1], rbs[r], source)
                        self.reprepro.removesrc(rbs[r], source)
            return v


def dist_source_of(dsc_path):
    from debian import deb822  # pylint: disable=import-outside-toplevel
    with open(dsc_path, encoding="utf-8", errors="replace") as f:
        return deb822.Dsc(f)["Source"]


# ------------------------------------------------------------------------------------------------ API functions
def _repositories(identities=None):
    from mini_buildd.models import Repository  # pylint: disable=import-outside-toplevel
    qs = Repository.objects.exclude(status=Repository.STATUS_REMOVED)
    if identities:
        qs = qs.filter(identity__in=list(identities))
    return list(qs)


def resolve(diststr, exclude_removed=False):
    """``(DistStr, RepositoryView, Distribution, SuiteOption)`` for ``diststr``; raises ArchiveError."""
    from mini_buildd.models import Repository  # pylint: disable=import-outside-toplevel
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
    from mini_buildd import config  # pylint: disable=import-outside-toplevel
    import glob  # pylint: disable=import-outside-toplevel
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


def _log(etype, diststr, source, version, extra=None):
    from mini_buildd import services  # pylint: disable=import-outside-toplevel
    from mini_buildd.events import Event  # pylint: disable=import-outside-toplevel
    services.log_event(Event(etype, diststr, source, version, extra=extra or {}))


def migrate(source, distribution, full=False, version=None, user=None):
    view = _repository_of(distribution)
    done = view.migrate(source, distribution, full=bool(full), version=version or None)
    for src, dst, v in done:
        _log("MIGRATED", dst, source, v, {"from": src, "user": str(user) if user else ""})
    return {}


def remove(source, distribution, without_rollback=False, version=None, user=None):
    view = _repository_of(distribution)
    v = view.remove(source, distribution, without_rollback=bool(without_rollback), version=version or None)
    _log("REMOVED", distribution, source, v, {"user": str(user) if user else ""})
    return {}


def snapshot_ls(distribution):
    return _repository_of(distribution).reprepro.snapshots(distribution)


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
    import fnmatch  # pylint: disable=import-outside-toplevel
    import os  # pylint: disable=import-outside-toplevel
    from mini_buildd import config  # pylint: disable=import-outside-toplevel
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
