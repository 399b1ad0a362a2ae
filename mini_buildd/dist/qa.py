"""QA check modes and sbuild status words (upstream §6.4).

This module owns :class:`QAMode` (lintian, piuparts, autopkgtest) and the rule whether a check
with a given sbuild summary word passes (:func:`sbuild_check_passes`).
"""

import enum


class QAMode(enum.IntEnum):
    """How a QA check (lintian, piuparts, autopkgtest) affects a build."""

    DISABLED = 0   # don't run
    IGNORE = 1     # run, ignore the result
    ERRFAIL = 2    # fail on errors
    WARNFAIL = 3   # fail on warnings

    @classmethod
    def parse(cls, value):
        """From a QAMode, an int, or a name (case-insensitive, e.g. 'errfail', 'ERRFAIL', '2')."""
        if isinstance(value, cls):
            return value
        try:
            if isinstance(value, int) and not isinstance(value, bool):
                return cls(value)
            text = str(value).strip()
            return cls(int(text)) if text.isdigit() else cls[text.upper()]
        except (KeyError, ValueError):
            names = "|".join(m.name.lower() for m in cls)
            raise ValueError(f"Invalid QA mode '{value}' (use {names})") from None


SBUILD_STATUS_PASS = ("pass", "info", "successful")
SBUILD_STATUS_WARN = ("warn", "no tests", "unknown")
SBUILD_STATUS_FAIL = ("error", "fail", "failed")


def sbuild_check_passes(status_word, mode, ignore=False):
    """Whether a QA check with sbuild summary ``status_word`` passes under ``mode``.

    ``ignore`` (e.g. experimental suites) always passes. Unknown status words count as failures.
    """
    mode = QAMode.parse(mode)
    status = (status_word or "").strip().lower()
    return (ignore
            or status in SBUILD_STATUS_PASS
            or mode in (QAMode.DISABLED, QAMode.IGNORE)
            or (status in SBUILD_STATUS_WARN and mode != QAMode.WARNFAIL))
