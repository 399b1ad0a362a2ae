"""The ``debdiff`` tool (devscripts): comparing two source packages (the ``debdiff`` API call is
:func:`mini_buildd.archive.debtools.debdiff`).

This is the only module that runs ``debdiff``.
"""

import contextvars

from mini_buildd.tools import call
from mini_buildd import errors


class DebdiffError(errors.BadRequest, ValueError):
    """The comparison is not possible (the message says why): a user error (400)."""


#: Time limit (s) of one debdiff run; the API's HTTP layer sets :data:`ANONYMOUS_TIMEOUT` for anonymous callers.
TIMEOUT: contextvars.ContextVar[float] = contextvars.ContextVar("TIMEOUT", default=300)
ANONYMOUS_TIMEOUT = 30


def run(dsc_a: call.FsPath, dsc_b: call.FsPath) -> str:
    """debdiff output of two DSC files (debdiff exits 1 when they differ: that is no error)."""
    try:
        return call.run(["debdiff", str(dsc_a), str(dsc_b)], check=False, timeout=TIMEOUT.get())
    except call.CallError as e:
        raise DebdiffError(f"debdiff failed: {e}") from e
