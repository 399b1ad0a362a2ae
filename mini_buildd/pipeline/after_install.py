"""What follows an install, off the packager thread: the renewed installability report of the
changed distribution (:func:`mini_buildd.archive.after_change.report`) and the port watch of ports
made from it (:func:`mini_buildd.pipeline.port_watch.check`).

Neither is part of the install (the package is INSTALLED, its snapshot taken and its event out
before either starts), and both may take seconds (the first report of a daemon run reads the base
indices). Run in the packager thread, they held up the next upload (issue #11: 2.4 s before the
next PACKAGING). Here one background thread does them, coalesced: installs that come while it
works are done together in its next round (a report of the latest state, one port check per
distribution). :func:`join` waits until nothing is pending (tests, shutdown)."""

import logging
import threading

from mini_buildd.archive import after_change
from mini_buildd.archive.operations import RepositoryView
from mini_buildd.models import Repository
from mini_buildd.pipeline import port_watch

LOG = logging.getLogger(__name__)


class _Pending:
    """Distributions waiting for their after-install work (``{repository identity: {diststr}}``),
    done by a thread that lives while there is work."""

    def __init__(self):
        self._todo = {}
        self._cond = threading.Condition()
        self._thread = None

    def add(self, identity, diststrs):
        """Queue ``diststrs`` of repository ``identity`` (the thread is started if none runs)."""
        with self._cond:
            self._todo.setdefault(identity, set()).update(diststrs)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="after-install", daemon=True)
                self._thread.start()

    def _take(self):
        with self._cond:
            todo, self._todo = self._todo, {}
            if not todo:
                self._thread = None
                self._cond.notify_all()
            return todo

    def _run(self):
        from django.db import connection  # pylint: disable=import-outside-toplevel
        try:
            while True:
                todo = self._take()
                if not todo:
                    return
                for identity, diststrs in sorted(todo.items()):
                    run(identity, sorted(diststrs))
        finally:
            connection.close()

    def join(self, timeout=None):
        """Wait until the thread is done (nothing pending); ``False`` on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._thread is None, timeout)


def run(identity, diststrs):
    """The after-install work for ``diststrs`` of repository ``identity`` (now, in this thread);
    failures are logged, never raised (the install is done)."""
    try:
        repository = Repository.objects.filter(identity=identity).first()
        if repository is None:
            return
        after_change.report(RepositoryView(repository), diststrs)
        port_watch.check(origins=diststrs)
    except Exception:  # pylint: disable=broad-except  # thread boundary: a record of a change already done
        LOG.exception("After-install work for %s failed", ", ".join(diststrs))


_PENDING = _Pending()


def defer(repository, diststrs):
    """Queue the after-install work for ``diststrs`` of ``repository``."""
    _PENDING.add(repository.identity, diststrs)


def join(timeout=None):
    """Wait until no after-install work is pending or running; ``False`` on timeout."""
    return _PENDING.join(timeout)
