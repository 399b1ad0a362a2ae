"""Fault injection for crash tests: named points in the code where the daemon can be made to die.

``MINI_BUILDD_FAULT`` (read once, when this module is imported) is a comma-separated list of point
names, e.g. ``MINI_BUILDD_FAULT=install:after-includedsc``. When the running code reaches a listed
point, :func:`point` kills its own process with SIGKILL: no ``finally`` blocks, no atexit, no
flushing, as after a power cut of the daemon alone. Without the variable :func:`point` is one
truth test and returns.

In-process tests use :func:`raising` instead: the point raises :class:`Fault` (the code above it
is left the way a crash at that point would leave the on-disk state, as long as nothing catches
the exception and cleans up; the journal code never does).

Known points (kept here so tests and docs have one list): see :data:`POINTS`.
"""

import contextlib
import logging
import os
import signal

from mini_buildd import errors

LOG = logging.getLogger(__name__)

#: Environment variable naming the points that SIGKILL the process.
ENV = "MINI_BUILDD_FAULT"

#: Every point name used in the code, in the order an operation passes them.
POINTS = (
    # operations.RepositoryView.install (journal.Journal.run)
    "install:before-plan", "install:before-shift", "install:after-shift", "install:after-includedsc",
    "install:after-include", "install:before-export", "install:after-export",
    # operations.RepositoryView.migrate
    "migrate:before-plan", "migrate:before-copy", "migrate:after-copy", "migrate:before-export", "migrate:after-export",
    # operations.RepositoryView.remove
    "remove:before-plan", "remove:before-remove", "remove:after-remove", "remove:before-export", "remove:after-export",
    # journal recovery itself (a crash while recovering must be recoverable)
    "recover:after-restore", "recover:after-replay",
    # packager: installed, INSTALLED event not yet logged
    "package:before-installed-event",
)

_KILL = frozenset(p.strip() for p in os.environ.get(ENV, "").split(",") if p.strip())
_RAISE = set()


class Fault(errors.Error):
    """Raised at a point armed with :func:`raising` (tests only)."""


def point(name):
    """A named crash point: SIGKILL this process if ``name`` is in ``$MINI_BUILDD_FAULT``."""
    if _KILL or _RAISE:
        _hit(name)


def _hit(name):
    if name in _RAISE:
        LOG.warning("Fault injection: raising at %s", name)
        raise Fault(name)
    if name in _KILL:
        LOG.critical("Fault injection: SIGKILL at %s (%s=%s)", name, ENV, ",".join(sorted(_KILL)))
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def raising(*names):
    """Inside, the points ``names`` raise :class:`Fault` (tests)."""
    unknown = [n for n in names if n not in POINTS]
    if unknown:
        raise ValueError(f"Unknown fault points: {unknown}")
    _RAISE.update(names)
    try:
        yield
    finally:
        _RAISE.difference_update(names)
