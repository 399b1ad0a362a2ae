"""mmdebstrap wrapper: a Debian/Ubuntu base system as a tarball, made without root (``--mode=unshare``).

This module is the only one that runs mmdebstrap. It also owns the check of what mmdebstrap's
and sbuild's unshare mode need from the host for the calling user: a subordinate user and group
id range (``/etc/subuid``, ``/etc/subgid``, see subuid(5)) and the setuid helpers ``newuidmap``
and ``newgidmap`` (package uidmap). The chroot logic (where a tarball lives, when it is made) is
in :mod:`mini_buildd.tools.chroot_backends`.
"""

import logging
import os
import pathlib
import pwd
import shlex
import shutil
from collections.abc import Iterable, Sequence
from typing import Optional, Union

from mini_buildd.tools import call
from mini_buildd import errors

LOG = logging.getLogger(__name__)

MMDEBSTRAP = "mmdebstrap"

#: Subordinate id files (subuid(5), subgid(5)).
SUBUID, SUBGID = pathlib.Path("/etc/subuid"), pathlib.Path("/etc/subgid")

#: How many ids a user namespace of a build needs at least (a chroot's users and groups: 65536 covers all).
MIN_SUBIDS = 65536

#: Options as stored in a model field (a string, split shell-like) or as a sequence; None: none.
Options = Union[str, Sequence[object], None]

#: How many lines of mmdebstrap's output an error shows.
OUTPUT_TAIL_LINES = 25


class MmdebstrapError(errors.ToolError):
    """mmdebstrap failed, or the host lacks what its unshare mode needs."""


def _as_list(value: Options) -> list[str]:
    """Options given as a string (split shell-like) or as a sequence (None: none)."""
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value or ()]


def command(codename: str, arch: str, target: call.FsPath, archive_url: str, *, keyring_path: Optional[call.FsPath] = None,
            variant: str = "buildd", mode: str = "unshare", components: Iterable[str] = ("main",), include: Iterable[str] = (),
            extra_options: Options = None, apt_lines: Sequence[str] = ()) -> list[str]:
    """The mmdebstrap argv making ``target`` (an uncompressed tarball, whatever its name) of
    ``codename``/``arch`` from ``archive_url`` (one ``deb`` line with ``components``), or from
    ``apt_lines`` when given (whole ``deb ...`` lines, e.g. the codename's archive and its
    security updates: the tarball then has those updates, and no build installs them again).

    ``keyring_path``: the archive keyring (default: the host's apt keyrings); ``include``: extra
    packages; ``extra_options``: further mmdebstrap options (e.g. ``--include=foo,bar``);
    ``mode``: ``unshare`` (no root; needs :func:`check_subids`) or ``root``/``auto``.
    """
    if not archive_url or any(c.isspace() for c in archive_url):
        raise MmdebstrapError(f"Invalid archive URL '{archive_url}'")
    argv = [MMDEBSTRAP, f"--variant={variant}", f"--mode={mode}", f"--architectures={arch}", "--format=tar",
            f"--components={','.join(components)}"]
    if keyring_path:
        argv.append(f"--keyring={keyring_path}")
    packages = [p for p in include if p]
    if packages:
        argv.append(f"--include={','.join(packages)}")
    argv += _as_list(extra_options)
    for line in apt_lines:
        if not line.startswith("deb ") or "\n" in line or "\r" in line:
            raise MmdebstrapError(f"Invalid apt line '{line}'")
    argv += [codename, str(target)] + (list(apt_lines) or [archive_url])
    return argv


def create(codename: str, arch: str, target: call.FsPath, archive_url: str, timeout: Optional[float] = 3600, **kwargs: object) -> pathlib.Path:
    """Make tarball ``target`` with mmdebstrap (see :func:`command` for ``kwargs``).

    The tarball is written to ``target.part`` and renamed when complete, so ``target`` never is
    a partial tarball; on failure nothing is left and :class:`MmdebstrapError` (with the tail of
    mmdebstrap's output) is raised.
    """
    target = pathlib.Path(target)
    part = target.with_name(target.name + ".part")
    argv = command(codename, arch, part, archive_url, **kwargs)  # type: ignore[arg-type]
    if kwargs.get("mode", "unshare") == "unshare":
        check_subids()
    LOG.info("Creating %s with mmdebstrap", target)
    try:
        call.run(argv, timeout=timeout, log_level=logging.INFO)
        os.replace(part, target)
    except call.CallError as e:
        part.unlink(missing_ok=True)
        tail = "\n".join(e.output.strip().splitlines()[-OUTPUT_TAIL_LINES:])
        raise MmdebstrapError(f"mmdebstrap of {codename}/{arch} failed (exit {e.returncode})" + (f":\n{tail}" if tail else "")) from e
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return target


def version() -> Optional[str]:
    """``mmdebstrap --version`` (e.g. ``1.3.5``), ``None`` if not installed."""
    try:
        return call.run([MMDEBSTRAP, "--version"], timeout=60).split()[-1]
    except (call.CallError, IndexError):
        return None


# ---------------------------------------------------------------------------------------------
# Subordinate ids (mmdebstrap and sbuild in unshare mode)
# ---------------------------------------------------------------------------------------------

def _user_name(user: Union[str, int, None]) -> str:
    if user is None:
        user = os.geteuid()
    if isinstance(user, int):
        return pwd.getpwuid(user).pw_name
    return user


def subid_range(path: call.FsPath, user: Union[str, int, None] = None) -> Optional[tuple[int, int]]:
    """``(first, count)`` of the first range of ``user`` (name; default: the effective user) in
    subuid/subgid file ``path``, as sbuild reads it (by name); ``None`` if there is none."""
    name = _user_name(user)
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        fields = line.strip().split(":")
        if len(fields) == 3 and fields[0] == name and fields[1].isdigit() and fields[2].isdigit():
            return int(fields[1]), int(fields[2])
    return None


def check_subids(user: Union[str, int, None] = None) -> None:
    """Raise :class:`MmdebstrapError` (saying how to fix it) unless ``user`` (default: the
    effective user) can make user namespaces with a full id range: an entry with at least
    :data:`MIN_SUBIDS` ids in :data:`SUBUID` and :data:`SUBGID`, and ``newuidmap``/``newgidmap``."""
    name = _user_name(user)
    missing = [str(path) for path in (SUBUID, SUBGID) if (subid_range(path, name) or (0, 0))[1] < MIN_SUBIDS]
    if missing:
        raise MmdebstrapError(f"User '{name}' has no range of {MIN_SUBIDS} subordinate ids in {' and '.join(missing)} "
                              f"(needed by the unshare chroot mode): add one, e.g. 'usermod --add-subuids FIRST-LAST "
                              f"--add-subgids FIRST-LAST {name}' with a range no other user has")
    tools = [t for t in ("newuidmap", "newgidmap") if shutil.which(t, path=os.environ.get("PATH", "") + ":/usr/bin") is None]
    if tools:
        raise MmdebstrapError(f"{' and '.join(tools)} not found (install package uidmap)")
