"""Upload options: ``MINI_BUILDD_OPTION`` lines in the top changelog block of an upload (upstream §3.8).

This module owns parsing and validating these options from a ``.changes`` ``Changes:`` text,
converting deprecated and ancient forms, and looking values up per architecture. Pure Python.

Line form (in the top changelog block only)::

    * MINI_BUILDD_OPTION: <key>[[<arch>]]=<value>

The result of :func:`parse_upload_options` maps ``key`` or ``key[arch]`` to a typed value; an
arch-qualified value overrides the plain one (see :func:`get_option`).
"""

import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Callable, Optional

from mini_buildd.dist import DistStr, QAMode

LOG = logging.getLogger(__name__)


def _qa_mode(value: str) -> QAMode:
    return QAMode.parse(value)


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"not an integer: '{value}'") from None


def _nospace(value: str) -> str:
    return re.sub(r"\s+", "", value)


def _list(value: str) -> list[str]:
    items = [item for item in _nospace(value).split(",") if item]
    if not items:
        raise ValueError("empty list")
    return items


def _diststrs(value: str) -> list[str]:
    items = _list(value)
    for item in items:
        DistStr(item)  # raises ValueError with a clear message
    return items


def _string(value: str) -> str:
    # Build options/profiles are space-separated lists themselves: normalize whitespace only.
    return " ".join(value.split())


#: Known option keys and their value parsers.
OPTIONS: dict[str, Callable[[str], Any]] = {
    "lintian-mode": _qa_mode,
    "piuparts-mode": _qa_mode,
    "autopkgtest-mode": _qa_mode,
    "internal-apt-priority": _int,
    "auto-ports": _diststrs,
    "deb-build-options": _string,
    "deb-build-profiles": _string,
    "add-depends": _list,
}

_BOOL = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}

#: Deprecated keys: key -> (new key, {bool: new value}).
DEPRECATED = {
    "ignore-lintian": ("lintian-mode", {True: "ignore", False: "errfail"}),
    "run-lintian": ("lintian-mode", {True: "errfail", False: "disabled"}),
}

OPTION_PREFIX = "MINI_BUILDD_OPTION:"
_OPTION_LINE = re.compile(r"^\s*\*\s*MINI_BUILDD_OPTION:\s*(?P<option>.*?)\s*$")
_OPTION = re.compile(r"^(?P<key>[A-Za-z0-9-]+)(?:\[(?P<arch>[a-z0-9-]+)\])?\s*=\s*(?P<value>.*)$")
_MAGIC_BACKPORT_MODE = re.compile(r"^\s*\*?\s*MINI_BUILDD:\s*BACKPORT_MODE\s*$")
_MAGIC_AUTO_BACKPORTS = re.compile(r"^\s*\*?\s*MINI_BUILDD:\s*AUTO_BACKPORTS:\s*(?P<value>.*?)\s*$")
_CHANGELOG_HEADER = re.compile(r"^[a-z0-9][a-z0-9+.-]+ \([^ ()]+\) [^;]*;")


def top_changelog_block(changes_text: Optional[str]) -> list[str]:
    """Lines of the first changelog block of a ``Changes:`` field value (header excluded).

    Accepts the raw field value (continuation lines with a leading space, ``.`` for empty lines)
    as well as plain changelog text.
    """
    lines: list[str] = []
    headers = 0
    for raw in (changes_text or "").splitlines():
        line = raw[1:] if raw.startswith(" ") else raw
        if line.strip() == ".":
            line = ""
        if _CHANGELOG_HEADER.match(line):
            headers += 1
            if headers > 1:
                break
            continue
        lines.append(line)
    return lines


def _option_lines(lines: Iterable[str]) -> Iterator[str]:
    for line in lines:
        match = _OPTION_LINE.match(line)
        if match:
            yield match.group("option")
        elif _MAGIC_BACKPORT_MODE.match(line):
            yield "lintian-mode=ignore"
        else:
            magic = _MAGIC_AUTO_BACKPORTS.match(line)
            if magic:
                yield f"auto-ports={magic.group('value')}"


def parse_option(option: str) -> tuple[str, Any]:
    """Parse one ``key[[arch]]=value`` into ``(dict_key, typed value)``; deprecated keys converted."""
    match = _OPTION.match(option.strip())
    if match is None:
        raise ValueError(f"Malformed upload option '{option}': expected KEY[[ARCH]]=VALUE")
    key, arch, value = match.group("key").lower(), match.group("arch"), match.group("value").strip()

    if key in DEPRECATED:
        new_key, mapping = DEPRECATED[key]
        flag = _BOOL.get(_nospace(value).lower())
        if flag is None:
            raise ValueError(f"Invalid value for upload option '{key}': '{value}' (use true|false)")
        LOG.info("Deprecated upload option '%s=%s' converted to '%s=%s'", key, value, new_key, mapping[flag])
        key, value = new_key, mapping[flag]

    parser = OPTIONS.get(key)
    if parser is None:
        raise ValueError(f"Unknown upload option '{key}' (known: {', '.join(list(OPTIONS) + list(DEPRECATED))})")
    try:
        typed = parser(value)
    except ValueError as e:
        raise ValueError(f"Invalid value for upload option '{key}': {e}") from None
    return (f"{key}[{arch}]" if arch else key), typed


def parse_upload_options(changes_text: Optional[str]) -> dict[str, Any]:
    """Parse upload options from a changes ``Changes:`` text (top changelog block only).

    Returns a dict ``{key or key[arch]: value}``; raises ValueError on unknown keys, bad values,
    malformed lines or duplicates (also a deprecated key converting to an already given key).
    """
    options: dict[str, Any] = {}
    for option in _option_lines(top_changelog_block(changes_text)):
        key, value = parse_option(option)
        if key in options:
            raise ValueError(f"Duplicate upload option '{key}'")
        options[key] = value
    return options


def get_option(options: Mapping[str, Any], key: str, arch: Optional[str] = None, default: Any = None) -> Any:
    """Look up ``key`` for ``arch``: an arch-qualified value overrides the plain one."""
    if arch is not None and f"{key}[{arch}]" in options:
        return options[f"{key}[{arch}]"]
    return options.get(key, default)


def format_option(key: str, value: Any) -> str:
    """Render one option as the changelog line text that :func:`parse_upload_options` reads back."""
    if isinstance(value, QAMode):
        value = value.name.lower()
    elif isinstance(value, (list, tuple)):
        value = ",".join(value)
    return f"{OPTION_PREFIX} {key}={value}"
