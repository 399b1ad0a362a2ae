"""What an sbuild build log says (the sbuild wrapper's reading side, see :mod:`mini_buildd.tools.sbuild`):

- :func:`parse_summary`: the sbuild summary (``Status``, ``Lintian``, ...) of a build log
  (upstream §1.5), :data:`SUMMARY_KEYS` the keys a buildresult records;
- :func:`parse_lintian_tags`: lintian's error and warning tags in a build log;
  :func:`lintian_status`: sbuild's lintian word, corrected where sbuild misreads lintian's exit status;
- :func:`qa_section`: the part of a build log where piuparts or autopkgtest ran (:data:`QA_SECTIONS`).

A build log is written by the build (hostile): nothing here runs or opens what it names.
"""

import re
from collections.abc import Iterable, Sequence
from typing import Optional

from mini_buildd import dist

#: Summary keys recorded in a buildresult (upstream §1.5).
SUMMARY_KEYS = ("Status", "Lintian", "Piuparts", "Autopkgtest", "Build-Time", "Package-Time", "Space", "Build-Space")

_SUMMARY_HEADER = re.compile(r"^\|\s*Summary\b.*\|\s*$", re.MULTILINE)
_SUMMARY_LINE = re.compile(r"^([A-Z][A-Za-z0-9-]*(?: [A-Z][A-Za-z0-9-]*)*): ?(.*)$")
_MULTI_WORD = tuple(w for w in dist.SBUILD_STATUS_PASS + dist.SBUILD_STATUS_WARN + dist.SBUILD_STATUS_FAIL if " " in w)


def first_word(value: object) -> str:
    """First word of a summary value; known multi-word status words (``no tests``) stay whole."""
    text = " ".join(str(value or "").split())
    for word in _MULTI_WORD:
        if text.lower().startswith(word):
            return text[:len(word)]
    return text.split(" ", 1)[0]


def parse_summary(buildlog_text: Optional[str], keys: Optional[Iterable[str]] = SUMMARY_KEYS, full: bool = False) -> dict[str, str]:
    """The summary of sbuild's (last) ``| Summary |`` section in a build log.

    Returns ``{key: first word}`` for ``keys`` that are present (e.g. ``{"Status": "successful",
    "Lintian": "pass", "Build-Time": "2", ...}``); ``keys=None`` returns all summary lines;
    ``full`` keeps whole values (e.g. ``successful (worst tag: warn)``). ``{}`` if there is no
    summary (sbuild died early).
    """
    headers = list(_SUMMARY_HEADER.finditer(buildlog_text or ""))
    if not headers:
        return {}
    lines = (buildlog_text or "")[headers[-1].end():].splitlines()
    result: dict[str, str] = {}
    for line in lines:
        if line.startswith("+---") or not line.strip():
            continue
        if line.startswith("----"):
            break
        match = _SUMMARY_LINE.match(line)
        if match is None:
            break
        key, value = match.group(1), match.group(2).strip()
        if keys is None or key in keys:
            result[key] = value if full else first_word(value)
    return result


#: Where lintian's output starts in a build log: sbuild's ``Running lintian...`` line (sbuild 0.85
#: prints it inside the lintian dependencies section) or a ``| Run lintian |`` section header.
_LINTIAN_START = re.compile(r"^(?:Running lintian\b.*|\|\s*Run lintian\b.*\|\s*)$", re.MULTILINE)
#: lintian's error and warning tag lines (``E: hello: no-copyright-file``, ``W: hello source: some-tag [debian/control]``).
_LINTIAN_TAG = re.compile(r"^[EW]: \S+(?: \S+)?: [a-z0-9][a-z0-9+.-]*(?: .*)?$")
#: At most this many tag lines of at most this many characters are kept (the log has them all).
MAX_LINTIAN_TAGS, MAX_LINTIAN_TAG_LENGTH = 20, 200
#: sbuild 0.85 (bookworm) reads lintian's exit status 2 as a runtime error, but lintian >= 2.105 exits 2
#: for tags at its --fail-on level (and 1 for a runtime error): bookworm's sbuild 0.85 with its
#: lintian 2.116 says ``Lintian: error`` for a package with lintian errors.
_LINTIAN_MISREAD = "Lintian run failed (runtime error)"


def parse_lintian_tags(buildlog_text: Optional[str]) -> list[str]:
    """The error and warning tags lintian printed in a build log (its last lintian run, up to the
    next sbuild section), in log order (the first :data:`MAX_LINTIAN_TAGS`, each cut to
    :data:`MAX_LINTIAN_TAG_LENGTH` characters); ``[]`` if lintian did not run. The text comes from
    the build (hostile): callers only ever show it as text."""
    starts = list(_LINTIAN_START.finditer(buildlog_text or ""))
    if not starts:
        return []
    tags: list[str] = []
    lines = (buildlog_text or "")[starts[-1].end():].splitlines()
    # A section header's closing rule comes first; the next rule opens the next section.
    first = next((i + 1 for i, line in enumerate(lines[:3]) if line.startswith("+---")), 0) if starts[-1].group().startswith("|") else 0
    for line in lines[first:]:
        if line.startswith("+---"):
            break
        if _LINTIAN_TAG.match(line) and len(tags) < MAX_LINTIAN_TAGS:
            tags.append(line[:MAX_LINTIAN_TAG_LENGTH])
    return tags


def lintian_status(summary: dict[str, str], buildlog_text: Optional[str], tags: Sequence[str]) -> dict[str, str]:
    """``summary`` with sbuild's ``Lintian`` word corrected where sbuild misread lintian's exit
    status (see :data:`_LINTIAN_MISREAD`): ``error`` with tags found and that message is ``fail``."""
    if summary.get("Lintian") == "error" and tags and _LINTIAN_MISREAD in (buildlog_text or ""):
        return dict(summary, Lintian="fail")
    return summary


#: The QA checks sbuild runs after a build, each in a sub-subsection of its "Post Build" section
#: (a line with the name, a line of as many dashes) of the same name.
QA_SECTIONS = ("piuparts", "autopkgtest")
#: Where a sub-subsection (``name``, a line of dashes as long) or a section (``+---``) starts.
_SUBSUBSECTION = re.compile(r"^(\S[^\n]*)\n(-+)$", re.MULTILINE)


def qa_section(buildlog_text: Optional[str], name: str) -> Optional[str]:
    """The text of the (last) sub-subsection ``name`` (one of :data:`QA_SECTIONS`) of a build
    log, from its header to the next sub-subsection or section; ``None`` if it did not run."""
    text = buildlog_text or ""
    heads = [m for m in _SUBSUBSECTION.finditer(text) if len(m.group(1)) == len(m.group(2))]
    starts = [m for m in heads if m.group(1) == name]
    if not starts:
        return None
    start = starts[-1]
    ends = [m.start() for m in heads if m.start() > start.start()]
    section = re.search(r"^\+-{3,}", text[start.end():], re.MULTILINE)
    if section is not None:
        ends.append(start.end() + section.start())
    return text[start.start():min(ends)] if ends else text[start.start():]
