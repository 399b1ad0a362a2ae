"""Writing the changes files mini-buildd makes itself (buildrequests, buildresults): one-line field
values, the deb822 text in upstream's layout, the ``Files``/``Checksums-Sha256`` lines of a file,
and the clear signature.
"""

import os
import pathlib
import typing
from collections.abc import Iterable

from mini_buildd import files
from mini_buildd.dist import QAMode
from mini_buildd.tools import gnupg_signatures as gpgmod
from mini_buildd.changes.names import OWN_PRIORITY, OWN_SECTION, ChangesError


def one_line(value: object) -> str:
    """Any value as a single-line field value (whitespace runs, incl. line breaks, folded to one space)."""
    if isinstance(value, QAMode):
        return value.name
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return " ".join(str(value if value is not None else "").split())


def render(fields: Iterable[tuple[str, typing.Any]]) -> str:
    """deb822 text from ``[(name, value)]``; a list value is rendered as one indented line per item.

    Like upstream's files, the text ends with an empty line (kept inside a clear signature)."""
    lines = []
    for name, value in fields:
        if isinstance(value, list):
            lines.append(f"{name}:")
            lines.extend(f" {item}" for item in value)
        else:
            lines.append(f"{name}: {value}" if value else f"{name}:")
    return "\n".join(lines) + "\n\n"


def file_lines(path: typing.Union[str, os.PathLike[str]]) -> tuple[str, str]:
    """``(Files line, Checksums-Sha256 line)`` of a file we list (our section and priority)."""
    file_path = pathlib.Path(path)
    size = file_path.stat().st_size
    digests = files.digests(file_path, ("md5", "sha256"))
    return (f"{digests['md5']} {size} {OWN_SECTION} {OWN_PRIORITY} {file_path.name}",
            f"{digests['sha256']} {size} {file_path.name}")


def write_signed(path: typing.Union[str, os.PathLike[str]], text: str, gnupg: typing.Any) -> None:
    """Write ``text`` to ``path`` and clear-sign it in place (``gnupg=None``: leave unsigned)."""
    file_path = pathlib.Path(path)
    tmp = file_path.with_name(f".{file_path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, file_path)
    if gnupg is not None:
        try:
            gnupg.sign_file(file_path)
        except gpgmod.GnupgError as e:
            raise ChangesError(f"{file_path.name}: signing failed: {e}") from e
