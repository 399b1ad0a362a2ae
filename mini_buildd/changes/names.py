"""Names and keys of changes files (upstream §1.4, §1.5): the three kinds and their file names,
timecodes, the ``X-Mini-Buildd-`` field prefix, the syntax of source, version and architecture,
plain file names, and :class:`ChangesError`.

Nothing here reads a file; every other module of :mod:`mini_buildd.changes` builds on this one.
"""

import datetime
import pathlib
import os
import re
import typing

from mini_buildd import errors
from mini_buildd.dist import strip_epoch

#: Custom field prefix (2.x).
PREFIX = "X-Mini-Buildd-"

#: The three kinds.
UPLOAD, BUILDREQUEST, BUILDRESULT = "upload", "buildrequest", "buildresult"
KINDS = (UPLOAD, BUILDREQUEST, BUILDRESULT)

#: Section and priority of the files mini-buildd lists itself.
OWN_SECTION, OWN_PRIORITY = "mini-buildd", "extra"

#: Refuse changes files larger than this (they are a few KiB; anything huge is not one).
MAX_CHANGES_SIZE = 4 * 1024 * 1024

TIMECODE_FORMAT = "%Y%m%d:%H%M%S:%f"
TIMECODE_REGEX = re.compile(r"^\d{8}:\d{6}:\d{6}$", re.ASCII)
SOURCE_REGEX = re.compile(r"^[a-z0-9][a-z0-9+.-]+$", re.ASCII)
VERSION_REGEX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+~:-]*$", re.ASCII)
ARCH_REGEX = re.compile(r"^[a-z0-9][a-z0-9-]*$", re.ASCII)
_SPECIAL_NAME = re.compile(r"^(?P<source>[^_/]+)_(?P<version>[^_/]+)_mini-buildd-(?P<kind>buildrequest|buildresult)_"
                           r"(?P<arch>[^_/]+)\.changes$")


class ChangesError(errors.Error):
    """A changes file (or one of its files) is unusable; the message says why."""


def timecode_now() -> str:
    """A new timecode ``YYYYMMDD:HHMMSS:ffffff`` (UTC)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime(TIMECODE_FORMAT)


def name_for(source: str, version: str, kind: str, arch: str) -> str:
    """File name of a changes file of ``kind`` (upload, buildrequest, buildresult); epoch stripped."""
    if kind not in KINDS:
        raise ValueError(f"Unknown changes kind '{kind}' (use {'|'.join(KINDS)})")
    middle = f"mini-buildd-{kind}_" if kind != UPLOAD else ""
    return f"{source}_{strip_epoch(version)}_{middle}{arch}.changes"


def buildlog_name(source: str, version: str, arch: str) -> str:
    """``<source>_<version>_<arch>.buildlog`` (epoch stripped)."""
    return f"{source}_{strip_epoch(version)}_{arch}.buildlog"


def classify(path: typing.Union[str, os.PathLike[str]]) -> str:
    """Kind of a changes file by its name: ``buildrequest``, ``buildresult`` or ``upload``."""
    name = pathlib.PurePath(path).name
    if not name.endswith(".changes"):
        raise ChangesError(f"{name}: not a changes file (name does not end in '.changes')")
    match = _SPECIAL_NAME.match(name)
    return match.group("kind") if match else UPLOAD


def snake(field: str) -> str:
    """``X-Mini-Buildd-Buildlog-Building`` -> ``buildlog_building`` (prefix dropped)."""
    if field.lower().startswith(PREFIX.lower()):
        field = field[len(PREFIX):]
    return field.lower().replace("-", "_")


def check_file_name(name: str, where: typing.Optional[str] = None) -> str:
    """Raise :class:`ChangesError` (prefixed ``where: ``) unless ``name`` is a plain file name
    (no path part, not ``..``); return ``name``."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
            or name[0] in "-." or any(ord(c) < 32 or ord(c) == 127 for c in name)):
        raise ChangesError(f"{where + ': ' if where else ''}Invalid file name {name!r}: "
                           "must be a plain file name (no path, no leading '-' or '.')")
    return name
