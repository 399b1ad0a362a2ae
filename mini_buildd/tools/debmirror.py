"""The ``debmirror`` tool: partial local mirrors of our own repositories, fetched over this
instance's HTTP endpoint, and the API function behind the ``debmirror`` call (upstream §4.2).

This is the only module that runs ``debmirror``.
"""

import logging
import pathlib
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Optional

from mini_buildd.tools import call
from mini_buildd import config, errors, instance

LOG = logging.getLogger(__name__)


class DebmirrorError(errors.BadRequest, ValueError):
    """The mirror can't be made (the message says why)."""


def destination_path(template: str, identity: str) -> pathlib.Path:
    """Destination directory: ``{}`` is the repository identity, a leading ``~`` the instance home."""
    text = template.replace("{}", identity)
    if text == "~" or text.startswith("~/"):
        return config.paths.home.joinpath(text[2:]) if len(text) > 2 else config.paths.home
    path = pathlib.Path(text)
    if not path.is_absolute():
        raise DebmirrorError(f"Destination '{template}' must be absolute (or start with '~/', the instance home).")
    return path


def run(url: str, root: str, destination: call.FsPath, dists: Iterable[str], architectures: Iterable[str], components: Iterable[str],
        timeout: float = 3600) -> str:
    """Mirror ``dists`` of the archive at ``url`` + ``root`` into ``destination`` (its contents are replaced)."""
    parts = urllib.parse.urlsplit(url)
    argv = ["debmirror", f"--method={parts.scheme}", f"--host={parts.netloc}", f"--root={root}",
            f"--dist={','.join(dists)}", f"--arch={','.join(architectures)}", f"--section={','.join(components)}",
            "--ignore-release-gpg", "--no-check-gpg", "--diff=none", "--rsync-extra=none", "--omit-suite-symlinks",
            "--postcleanup", str(destination)]
    try:
        return call.run(argv, timeout=timeout, env={"no_proxy": parts.hostname or "", "NO_PROXY": parts.hostname or ""})
    except call.CallError as e:
        raise DebmirrorError(f"debmirror failed: {e}") from e


def debmirror(suites: Optional[Sequence[str]] = None, rollbacks: int = 0, repositories: Optional[Iterable[str]] = None,
              codenames: Optional[Sequence[str]] = None, architectures: Optional[Iterable[str]] = None,
              components: Optional[Iterable[str]] = None, destination: str = "~/debmirror/{}") -> dict[str, object]:
    """API ``debmirror``: mirror the chosen suites (plus ``rollbacks`` rollback distributions per
    suite, <0: all) of the chosen repositories and codenames to ``destination`` (per repository)."""
    from mini_buildd.models import Repository  # pylint: disable=import-outside-toplevel
    url = instance.http_url()
    for repo in Repository.objects.select_related("layout").filter(identity__in=list(repositories or [])).order_by("identity"):
        if not repo.mbd_is_active():
            raise DebmirrorError(f"Repository '{repo.identity}' is not active.")
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
        dest = destination_path(destination, repo.identity)
        dest.mkdir(parents=True, exist_ok=True)
        LOG.info("debmirror: %s (%s) -> %s", repo.identity, ", ".join(dists), dest)
        run(url, f"/repositories/{repo.identity}", dest, dists, list(architectures or sorted(archs)),
            list(components or sorted(comps)))
    return {}
