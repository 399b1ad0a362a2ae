"""Reading deb822 text of changes and ``.dsc`` files: the clear signature stripped (not verified),
the strict one-paragraph syntax check, parsing with python-debian (``debian.deb822.Changes``,
``debian.deb822.Dsc``) and the checked file lists (``Files``, ``Checksums-*``) of both.

A ``.dsc`` is parsed in one place only, :func:`read_dsc`. Errors are :class:`ChangesError` with a
message naming the file (and the line, for a bad file list line).
"""

import pathlib
import os
import re
import typing

from debian import deb822

from mini_buildd.tools import gnupg_signatures as gpgmod
from mini_buildd.changes.names import ChangesError, check_file_name

_FIELD_LINE = re.compile(r"^(?P<name>[!-9;-~][!-9;-~]*):(?P<value>.*)$", re.ASCII)

#: Key python-debian puts a word past a file list line's columns under (such a line is refused).
_SURPLUS = "surplus"

#: Column labels in error messages, by python-debian column key.
_LABELS = {"md5sum": "MD5", "size": "SIZE", "section": "SECTION", "priority": "PRIORITY", "name": "NAME"}


def _with_surplus(multivalued_fields: typing.Mapping[str, typing.Iterable[str]]) -> dict[str, list[str]]:
    return {field: list(columns) + [_SURPLUS] for field, columns in multivalued_fields.items()}


class _Changes(deb822.Changes):  # pylint: disable=too-many-ancestors
    """python-debian's ``Changes``; a word too many on a file list line is kept, so it can be refused."""

    _multivalued_fields = _with_surplus(deb822.Changes._multivalued_fields)  # pylint: disable=protected-access


class _Dsc(deb822.Dsc):  # pylint: disable=too-many-ancestors
    """python-debian's ``Dsc``; a word too many on a file list line is kept, so it can be refused."""

    _multivalued_fields = _with_surplus(deb822.Dsc._multivalued_fields)  # pylint: disable=protected-access


def payload(text: str, name: str) -> str:
    """The unsigned deb822 text of a changes (or .dsc) file (signature stripped, not verified)."""
    if gpgmod.is_clearsigned(text):
        try:
            return gpgmod.unsign(text)
        except gpgmod.GnupgError as e:
            raise ChangesError(f"{name}: broken PGP signature armor: {e}") from e
    if "-----BEGIN PGP" in text:
        raise ChangesError(f"{name}: unsupported PGP armor (only clear-signed changes files are accepted)")
    return text


def check_syntax(text: str, name: str) -> None:
    """Strict deb822 check of a one-paragraph text: raise :class:`ChangesError` on the first bad line."""
    lines = text.splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ChangesError(f"{name}: empty changes file")
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise ChangesError(f"{name}: line {number}: empty line inside the paragraph "
                               "(a changes file has exactly one paragraph)")
        if line[0] in " \t":
            if number == 1:
                raise ChangesError(f"{name}: line 1: continuation line without a field")
            continue
        match = _FIELD_LINE.match(line)
        if match is None:
            raise ChangesError(f"{name}: line {number}: malformed, expected 'Field: value': {line[:80]!r}")
        field = match.group("name").lower()
        if field in seen:
            raise ChangesError(f"{name}: line {number}: duplicate field '{match.group('name')}'")
        seen.add(field)


def parse_changes(text: str, name: str) -> deb822.Changes:
    """Strip the signature, check the syntax and parse changes text (python-debian ``Changes``)."""
    unsigned = payload(text, name)
    check_syntax(unsigned, name)
    try:
        return _Changes(unsigned)
    except Exception as e:  # python-debian raises various types on garbage
        raise ChangesError(f"{name}: cannot parse changes: {e}") from e


def is_file_list(parsed: typing.Any, field: str) -> bool:
    """Whether ``field`` is a file list (``Files``, ``Checksums-*``) of the parsed object's kind."""
    return field.lower() in type(parsed)._multivalued_fields  # pylint: disable=protected-access


def file_list(parsed: typing.Any, field: str, where: str) -> list[typing.Any]:
    """Entries (python-debian dicts) of the file list ``field`` of a parsed changes or .dsc; none if
    it is missing or empty. Every line must have exactly its columns and a numeric size, else
    :class:`ChangesError` names ``where`` and the line."""
    value = parsed.get(field)
    if not value:
        return []
    entries = [value] if hasattr(value, "keys") else value
    columns = type(parsed)._multivalued_fields[field.lower()][:-1]  # pylint: disable=protected-access
    for number, entry in enumerate(entries, start=1):
        if list(entry) != columns or not entry["size"].isdigit():
            expected = " ".join(_LABELS.get(c, "CHECKSUM") for c in columns)
            raise ChangesError(f"{where} line {number}: expected '{expected}': {' '.join(entry.values())!r}")
    return entries


def file_list_text(parsed: typing.Any, field: str) -> str:
    """A file list field as text, one line per entry (words separated by one space)."""
    value = parsed.get(field)
    entries = [value] if hasattr(value, "keys") else value
    return "\n".join(" ".join(entry.values()) for entry in entries)


def read_dsc(path: typing.Union[str, os.PathLike[str]]) -> deb822.Dsc:
    """Parse a ``.dsc`` file (signature not checked); raise :class:`ChangesError` if unusable."""
    dsc_path = pathlib.Path(path)
    try:
        dsc = _Dsc(payload(dsc_path.read_text(encoding="utf-8"), dsc_path.name))
    except (OSError, UnicodeDecodeError) as e:
        raise ChangesError(f"{dsc_path.name}: cannot read .dsc: {e}") from e
    if not dsc.get("Source") or not dsc.get("Version"):
        raise ChangesError(f"{dsc_path.name}: not a .dsc (no Source/Version)")
    return dsc


def read_dsc_files(path: typing.Union[str, os.PathLike[str]]) -> list[dict[str, typing.Any]]:
    """Files a ``.dsc`` lists: dicts ``name, md5, size, sha256`` (names checked to be plain file
    names; ``sha256`` from ``Checksums-Sha256``, None if the .dsc has none)."""
    dsc_path = pathlib.Path(path)
    dsc = read_dsc(dsc_path)
    sha256 = {e["name"]: e["sha256"].lower() for e in file_list(dsc, "Checksums-Sha256", f"{dsc_path.name}: Checksums-Sha256")}
    return [{"name": check_file_name(e["name"], dsc_path.name), "md5": e["md5sum"].lower(), "size": int(e["size"]),
             "sha256": sha256.get(e["name"])}
            for e in file_list(dsc, "Files", f"{dsc_path.name}: Files")]
