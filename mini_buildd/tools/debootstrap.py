"""debootstrap wrapper: creating a minimal Debian/Ubuntu system in a directory.

This module is the only one that runs debootstrap. It knows nothing about schroot or chroot
backends (see :mod:`mini_buildd.tools.chroot_backends`), it only turns a request into one debootstrap
call and a failure into a readable error.

Speed (issue #17, first setup): dpkg inside the new system runs with ``--force-unsafe-io``
(the ``DPKG_FORCE`` environment variable, which debootstrap passes on to the dpkg it runs in the
target): no fsync per unpacked file. A half-written tree after a crash is thrown away anyway
(the caller removes a failed target), so the syncs buy nothing here; they were most of the
second stage's time.
"""

import logging
import pathlib
import shlex
from collections.abc import Sequence
from typing import Optional, Union

from mini_buildd.tools import call
from mini_buildd import errors

LOG = logging.getLogger(__name__)

DEFAULT_COMMAND = "/usr/sbin/debootstrap"

#: How many lines of debootstrap's own log an error shows.
LOG_TAIL_LINES = 25

#: dpkg's force flags while debootstrap installs the base system: dpkg's defaults (``security-mac``,
#: ``downgrade``; ``DPKG_FORCE`` replaces them) plus ``unsafe-io``. dpkg before 1.19.5 ignores it.
DPKG_FORCE = "security-mac,downgrade,unsafe-io"

#: Options as stored in a model field (a string, split shell-like) or as a sequence; None: none.
Options = Union[str, Sequence[object], None]


class DebootstrapError(errors.ToolError):
    """debootstrap failed; the message ends with the tail of debootstrap's log."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        self.log_tail = log_tail
        super().__init__(message + (f"\n{log_tail}" if log_tail else ""))


def _as_list(value: Options) -> list[str]:
    """Options given as a string (as stored in a model field) or as a sequence."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def log_path(target_dir: call.FsPath) -> pathlib.Path:
    """Where debootstrap keeps its log while (and if failed, after) working on ``target_dir``."""
    return pathlib.Path(target_dir) / "debootstrap" / "debootstrap.log"


def _log_tail(target_dir: call.FsPath, output: Optional[str], lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = log_path(target_dir).read_text(errors="replace")
    except OSError:
        text = ""
    if not text.strip():
        text = output or ""
    return "\n".join(text.strip().splitlines()[-lines:])


def command_line(target_dir: call.FsPath, codename: str, archive_url: str, arch: str, keyring_path: Optional[call.FsPath],
                 variant: Optional[str] = "buildd", extra_options: Options = (), command: Options = DEFAULT_COMMAND,
                 include: Options = ()) -> list[str]:
    """The debootstrap argv for these arguments (see :func:`debootstrap`)."""
    argv = _as_list(command or DEFAULT_COMMAND)
    if variant:
        argv.append(f"--variant={variant}")
    if keyring_path:
        argv.append(f"--keyring={keyring_path}")
    argv.append(f"--arch={arch}")
    packages = _as_list(include)
    if packages:
        argv.append("--include=" + ",".join(packages))
    argv += _as_list(extra_options)
    argv += [codename, str(target_dir), archive_url]
    return argv


def debootstrap(target_dir: call.FsPath, codename: str, archive_url: str, arch: str, keyring_path: Optional[call.FsPath],
                variant: Optional[str] = "buildd", extra_options: Options = (), command: Options = DEFAULT_COMMAND,
                include: Options = (), unsafe_io: bool = True) -> str:
    """Debootstrap ``codename`` for ``arch`` from ``archive_url`` into ``target_dir``.

    ``keyring_path`` is the keyring to verify the Release file with. ``extra_options`` and
    ``command`` may be strings (split shell-like) or sequences; ``include`` is a list of extra
    packages. Returns debootstrap's output; raises :class:`DebootstrapError` (with the last
    lines of debootstrap's log) on failure. Cleaning up ``target_dir`` is the caller's job.
    ``unsafe_io``: dpkg in the target does not fsync (see :data:`DPKG_FORCE`).
    """
    argv = command_line(target_dir, codename, archive_url, arch, keyring_path, variant=variant,
                        extra_options=extra_options, command=command, include=include)
    LOG.info("Debootstrapping %s/%s into %s", codename, arch, target_dir)
    try:
        output = call.run(argv, log_level=logging.INFO, env={"DPKG_FORCE": DPKG_FORCE} if unsafe_io else None)
    except call.CallError as e:
        raise DebootstrapError(f"debootstrap of {codename}/{arch} into {target_dir} failed (exit {e.returncode}): "
                               f"{shlex.join(str(a) for a in argv)}",
                               _log_tail(target_dir, e.output)) from e
    LOG.info("Debootstrapped %s/%s into %s", codename, arch, target_dir)
    return output
