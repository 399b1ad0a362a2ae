"""The ``debdiff`` tool (devscripts): comparing two source packages of one repository, and the
API function behind the ``debdiff`` call (upstream §4.2).

This is the only module that runs ``debdiff``.
"""

import contextvars
import glob
import logging
from typing import Any

from debian import debian_support

from mini_buildd.tools import call
from mini_buildd import errors

LOG = logging.getLogger(__name__)


class DebdiffError(errors.BadRequest, ValueError):
    """The comparison is not possible (the message says why): a user error (400)."""


#: Time limit (s) of one debdiff run; the API's HTTP layer sets :data:`ANONYMOUS_TIMEOUT` for anonymous callers.
TIMEOUT: contextvars.ContextVar[float] = contextvars.ContextVar("TIMEOUT", default=300)
ANONYMOUS_TIMEOUT = 30


def run(dsc_a: call.FsPath, dsc_b: call.FsPath) -> str:
    """debdiff output of two DSC files (debdiff exits 1 when they differ: that is no error)."""
    try:
        return call.run(["debdiff", str(dsc_a), str(dsc_b)], check=False, timeout=TIMEOUT.get())
    except call.CallError as e:
        raise DebdiffError(f"debdiff failed: {e}") from e


def _versions(view: Any, source: str) -> list[str]:
    """All versions of ``source`` in the repository (any distribution, rollbacks included), oldest first."""
    versions = {entry["version"] for entries in view.reprepro.ls(source).values() for entry in entries}
    return sorted(versions, key=debian_support.Version)


def _pool_dsc(repository: Any, source: str, version: str) -> str:
    pattern = repository.mbd_path() / "pool" / "*" / "*" / glob.escape(source) / glob.escape(f"{source}_{version.split(':')[-1]}.dsc")
    found = sorted(glob.glob(str(pattern)))
    if not found:
        raise DebdiffError(f"No DSC of {source} {version} in the pool of repository '{repository.identity}'.")
    return found[0]


def debdiff(source: str, repository: str, versiona: str = "", versionb: str = "") -> str:
    """API ``debdiff``: debdiff of ``source`` versions A and B in ``repository`` (default: the
    second newest and the newest version there)."""
    from mini_buildd.archive.operations import RepositoryView  # pylint: disable=import-outside-toplevel
    from mini_buildd.models import Repository  # pylint: disable=import-outside-toplevel
    repo = Repository.objects.filter(identity=repository).first()
    if repo is None:
        raise DebdiffError(f"No repository '{repository}'.")
    view = RepositoryView(repo)
    versions = _versions(view, source)
    if not versions:
        raise DebdiffError(f"Source package '{source}' is not in repository '{repository}'.")
    for v in (versiona, versionb):
        if v and v not in versions:
            raise DebdiffError(f"Version {v} of '{source}' is not in repository '{repository}' (there: {', '.join(versions)}).")
    b = versionb or versions[-1]
    older = [v for v in reversed(versions) if v != b]
    a = versiona or (older[0] if older else None)
    if a is None:
        raise DebdiffError(f"Only one version of '{source}' in repository '{repository}' ({b}): give two versions.")
    LOG.info("debdiff %s %s -> %s in %s.", source, a, b, repository)
    return run(_pool_dsc(repo, source, a), _pool_dsc(repo, source, b))
