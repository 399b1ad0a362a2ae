"""The API functions behind the ``debdiff`` and ``debmirror`` calls (upstream §4.2): which
repository, which versions or distributions; the tools themselves run in
:mod:`mini_buildd.tools.debdiff` and :mod:`mini_buildd.tools.debmirror`."""

import glob
import logging
from collections.abc import Iterable, Sequence
from typing import Optional

from debian import debian_support

from mini_buildd import instance
from mini_buildd.archive.operations import RepositoryView
from mini_buildd.models import Repository
from mini_buildd.tools import debdiff as debdiff_tool, debmirror as debmirror_tool

LOG = logging.getLogger(__name__)


def _versions(view: RepositoryView, source: str) -> list[str]:
    """All versions of ``source`` in the repository (any distribution, rollbacks included), oldest first."""
    versions = {entry["version"] for entries in view.reprepro.ls(source).values() for entry in entries}
    return sorted(versions, key=debian_support.Version)


def _pool_dsc(repository: RepositoryView, source: str, version: str) -> str:
    pattern = repository.mbd_path() / "pool" / "*" / "*" / glob.escape(source) / glob.escape(f"{source}_{version.split(':')[-1]}.dsc")
    found = sorted(glob.glob(str(pattern)))
    if not found:
        raise debdiff_tool.DebdiffError(f"No DSC of {source} {version} in the pool of repository '{repository.identity}'.")
    return found[0]


def debdiff(source: str, repository: str, versiona: str = "", versionb: str = "") -> str:
    """API ``debdiff``: debdiff of ``source`` versions A and B in ``repository`` (default: the
    second newest and the newest version there)."""
    repo = Repository.objects.filter(identity=repository).first()
    if repo is None:
        raise debdiff_tool.DebdiffError(f"No repository '{repository}'.")
    view = RepositoryView(repo)
    versions = _versions(view, source)
    if not versions:
        raise debdiff_tool.DebdiffError(f"Source package '{source}' is not in repository '{repository}'.")
    for v in (versiona, versionb):
        if v and v not in versions:
            raise debdiff_tool.DebdiffError(f"Version {v} of '{source}' is not in repository '{repository}' (there: {', '.join(versions)}).")
    b = versionb or versions[-1]
    older = [v for v in reversed(versions) if v != b]
    a = versiona or (older[0] if older else None)
    if a is None:
        raise debdiff_tool.DebdiffError(f"Only one version of '{source}' in repository '{repository}' ({b}): give two versions.")
    LOG.info("debdiff %s %s -> %s in %s.", source, a, b, repository)
    return debdiff_tool.run(_pool_dsc(repo, source, a), _pool_dsc(repo, source, b))


def debmirror(suites: Optional[Sequence[str]] = None, rollbacks: int = 0, repositories: Optional[Iterable[str]] = None,
              codenames: Optional[Sequence[str]] = None, architectures: Optional[Iterable[str]] = None,
              components: Optional[Iterable[str]] = None, destination: str = "~/debmirror/{}") -> dict[str, object]:
    """API ``debmirror``: mirror the chosen suites (plus ``rollbacks`` rollback distributions per
    suite, <0: all) of the chosen repositories and codenames to ``destination`` (per repository)."""
    url = instance.http_url()
    for repo in Repository.objects.select_related("layout").filter(identity__in=list(repositories or [])).order_by("identity"):
        if not repo.mbd_is_active():
            raise debmirror_tool.DebmirrorError(f"Repository '{repo.identity}' is not active.")
        dists: list[str] = []
        archs: set[str] = set()
        comps: set[str] = set()
        for d in repo.mbd_distributions():
            if codenames and d.codename not in codenames:
                continue
            archs.update(d.mbd_architectures())
            comps.update(d.mbd_components())
            for so in repo.layout.mbd_suite_options():
                if suites and so.suite.name not in suites:
                    continue
                dists.append(repo.mbd_diststr(d, so))
                count = so.rollback if rollbacks < 0 else min(rollbacks, so.rollback)
                dists += [repo.mbd_diststr(d, so, r) for r in range(count)]
        if not dists:
            LOG.info("debmirror: nothing selected in repository %s.", repo.identity)
            continue
        dest = debmirror_tool.destination_path(destination, repo.identity)
        dest.mkdir(parents=True, exist_ok=True)
        LOG.info("debmirror: %s (%s) -> %s", repo.identity, ", ".join(dists), dest)
        debmirror_tool.run(url, f"/repositories/{repo.identity}", dest, dists, list(architectures or sorted(archs)),
                           list(components or sorted(comps)))
    return {}
