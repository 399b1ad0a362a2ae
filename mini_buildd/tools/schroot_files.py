"""schroot's files as text: the ``[NAME]`` chroot configuration and the mini-buildd fstab.

Pure rendering and parsing, no writing: the daemon side (:mod:`mini_buildd.tools.schroot`) renders a
configuration, the root side (:mod:`mini_buildd.roothelper`) checks it and writes it below
``/etc/schroot``. Both import this module, neither imports the other.
"""

import os
import pathlib
from collections.abc import Iterable
from typing import Optional, Union

from mini_buildd import config, errors

#: A file system path.
FsPath = Union[str, os.PathLike[str]]
#: Read-write bind dirs: None, one path, or paths.
Dirs = Union[None, str, pathlib.PurePath, Iterable[FsPath]]
#: Users or groups: a comma-separated string, or names.
Names = Union[str, Iterable[str]]

#: ``setup.fstab`` value of the global fstab (relative to /etc/schroot), as upstream.
GLOBAL_FSTAB = "mini-buildd/fstab"

#: Generic mounts every mini-buildd chroot gets (no /dev bind: the chroot has its own nodes).
GENERIC_FSTAB_LINES = (
    ("/proc", "/proc", "none", "rw,bind"),
    ("/sys", "/sys", "none", "rw,bind"),
    ("/dev/pts", "/dev/pts", "none", "rw,bind"),
    ("tmpfs", "/dev/shm", "tmpfs", "defaults"),
)


class SchrootError(errors.ToolError):
    """A schroot operation failed, or a schroot file is not what mini-buildd writes."""


def _csv(values: Names) -> str:
    if isinstance(values, str):
        return values
    return ",".join(values)


def conf_text(name: str, description: str, backend_lines: Iterable[str], users: Names = ("mini-buildd",),
              groups: Names = ("sbuild",), personality: str = "linux", fstab: str = GLOBAL_FSTAB) -> str:
    """The schroot config (``/etc/schroot/chroot.d/NAME.conf``) for one chroot.

    ``backend_lines`` are the backend specific ``key=value`` lines (``type=...`` etc.);
    ``users``/``groups`` may access the chroot, ``users`` are also its root and source-root
    users. ``fstab`` is the ``setup.fstab`` value (see :func:`fstab_setup_name`).
    """
    lines = [
        f"[{name}]",
        f"description={description}",
        f"setup.fstab={fstab}",
        f"groups={_csv(groups)}",
        f"users={_csv(users)}",
        f"root-groups={_csv(groups)}",
        f"root-users={_csv(users)}",
        f"source-root-users={_csv(users)}",
        f"personality={personality}",
        "",
        "# Backend specific config",
    ]
    lines += list(backend_lines)
    lines.append("")  # upstream ends the section with an empty line
    return "\n".join(lines) + "\n"


def parse_conf(text: str) -> tuple[str, dict[str, str]]:
    """``(name, {key: value})`` of a one-section schroot config; raises :class:`SchrootError`
    for anything else (several sections, a line that is no ``key=value``, a key twice)."""
    name: Optional[str] = None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            if name is not None:
                raise SchrootError(f"line {number}: a second section")
            name = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if name is None or not sep:
            raise SchrootError(f"line {number}: not a 'key=value' line of a section: {raw!r}")
        if key in values:
            raise SchrootError(f"line {number}: '{key}' given twice")
        values[key] = value
    if name is None:
        raise SchrootError("no section")
    return name, values


def conf_path(name: str) -> pathlib.Path:
    """``/etc/schroot/chroot.d/NAME.conf``."""
    return config.schroot_conf(name)


def dir_list(rw_dirs: Dirs) -> list[FsPath]:
    """``rw_dirs`` (None, one path, or paths) as a list."""
    if rw_dirs is None:
        return []
    if isinstance(rw_dirs, (str, pathlib.PurePath)):
        return [rw_dirs]
    return list(rw_dirs)


def fstab_text(rw_dirs: Dirs = None) -> str:
    """The mini-buildd fstab: generic mounts, plus a read-write bind of each of ``rw_dirs`` (a
    path or a list of paths) at the same path: nothing else of the host is visible in a session."""
    lines = ["# mini-buildd schroot fstab, generated: do not edit.",
             "# <file system> <mount point> <type> <options> <dump> <pass>"]
    for fs, mountpoint, fstype, options in GENERIC_FSTAB_LINES:
        lines.append(f"{fs}\t{mountpoint}\t{fstype}\t{options}\t0\t0")
    for rw_dir in dir_list(rw_dirs):
        d = str(pathlib.Path(rw_dir).resolve())
        if any(c.isspace() for c in d):
            raise SchrootError(f"Bind-mounted dir must not contain white space (fstab): {d}")
        lines.append(f"{d}\t{d}\tnone\trw,bind\t0\t0")
    return "\n".join(lines) + "\n"


def fstab_binds(text: str) -> list[pathlib.Path]:
    """The host dirs an fstab text binds besides the generic mounts."""
    generic = {fs for fs, _mp, _t, _o in GENERIC_FSTAB_LINES}
    result = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and not fields[0].startswith("#") and "bind" in fields[3].split(",") and fields[0] not in generic:
            result.append(pathlib.Path(fields[0]))
    return result


def bind_sources(name: Optional[str] = None) -> list[pathlib.Path]:
    """The host dirs the (per-chroot) fstab of ``name`` binds besides the generic mounts."""
    try:
        return fstab_binds(fstab_path(name).read_text(encoding="utf-8"))
    except OSError:
        return []


def fstab_setup_name(name: Optional[str] = None) -> str:
    """``setup.fstab`` value: ``mini-buildd/fstab``, or ``mini-buildd/fstab-NAME`` for a per-chroot fstab."""
    return GLOBAL_FSTAB if name is None else f"{GLOBAL_FSTAB}-{name}"


def fstab_path(name: Optional[str] = None) -> pathlib.Path:
    """``/etc/schroot/mini-buildd/fstab`` or ``/etc/schroot/mini-buildd/fstab-NAME``."""
    return config.SCHROOT_CONF_DIR / ("fstab" if name is None else f"fstab-{name}")
