"""Version helpers (upstream §3.4, §3.8): ``%IDENTITY%``/``%CODEVERSION%`` placeholders, the
mandatory version check, the versions of internal ports, rebuilds and external ports, and the
epoch-less version used in file names.
"""

import datetime
import logging
import re

LOG = logging.getLogger(__name__)


def strip_epoch(version):
    """``1:2.0-1`` -> ``2.0-1`` (file names never carry the epoch)."""
    return version.split(":", 1)[1] if ":" in version else version


def substitute(template, identity, codeversion):
    """Replace ``%IDENTITY%`` and ``%CODEVERSION%`` placeholders."""
    return template.replace("%IDENTITY%", identity).replace("%CODEVERSION%", codeversion)


def version_matches_mandatory(version, regex):
    """Whether ``regex`` is found anywhere in ``version`` (unanchored search)."""
    return re.search(regex, version) is not None


def port_version(version, source_regex, target_default_version):
    """Version for an internal port to another distribution.

    The rightmost match of the (substituted) source mandatory regex is replaced by the target
    default version, keeping the source's ``+N`` revision and any suffix. A regex like ``.*``
    (matching empty at the end) just appends the target default version, as does a version with
    no match at all.

    >>> port_version("1.2.3-1~testSID+4fud15", r"~testSID\\+[1-9]", "~test70+1")
    '1.2.3-1~test70+4fud15'
    """
    matches = list(re.finditer(source_regex, version))
    if not matches:
        LOG.debug("Port: '%s' does not match '%s', appending '%s'", version, source_regex, target_default_version)
        return version + target_default_version
    match = matches[-1]
    revision = re.search(r"\+[0-9]+$", match.group())
    replacement = (re.sub(r"\+[0-9]+$", "", target_default_version) + revision.group()) if revision else target_default_version
    return version[:match.start()] + replacement + version[match.end():]


def rebuild_version(version, timestamp=None):
    """Version for a rebuild in the same distribution: ``+rebuilt<YYYYMMDDHHMMSS>`` (replacing an earlier one).

    ``timestamp`` is a datetime or a ``YYYYMMDDHHMMSS`` string (default: now, UTC).
    """
    if timestamp is None:
        timestamp = datetime.datetime.now(datetime.timezone.utc)
    if isinstance(timestamp, (datetime.datetime, datetime.date)):
        timestamp = timestamp.strftime("%Y%m%d%H%M%S")
    if not re.fullmatch(r"[0-9]{14}", str(timestamp)):
        raise ValueError(f"Invalid rebuild timestamp '{timestamp}' (expected YYYYMMDDHHMMSS)")
    return re.sub(r"\+rebuilt[0-9]+$", "", version) + f"+rebuilt{timestamp}"


def port_ext_version(version, default_version):
    """Version for an external port: the original version plus the target default version."""
    return version + default_version
