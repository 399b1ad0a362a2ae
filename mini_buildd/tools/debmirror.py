"""The ``debmirror`` tool: partial local mirrors of our own repositories, fetched over this
instance's HTTP endpoint (the ``debmirror`` API call is :func:`mini_buildd.archive.debtools.debmirror`).

This is the only module that runs ``debmirror``.
"""

import pathlib
import urllib.parse
from collections.abc import Iterable

from mini_buildd.tools import call
from mini_buildd import config, errors


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
