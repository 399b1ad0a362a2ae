"""What follows every change of repository distributions (install, migration, removal, rollback
restore): the change snapshot (:mod:`mini_buildd.archive.change_snapshots`) and the renewed
installability report (:mod:`mini_buildd.archive.installability`) of each changed distribution.
Both are records of a change already done: their failures are logged, never raised.

The snapshot is taken before the change is announced (its event), so whoever reacts to the event
finds it and the repository is not written after the event; the report (not in the repository)
may follow."""

from mini_buildd.archive import change_snapshots, gates


def snapshot(view, diststrs):
    """Snapshot ``diststrs`` of ``view``'s repository; ``{diststr: snapshot name}``."""
    return change_snapshots.after_change(view, diststrs)


def report(view, diststrs):
    """Renew the installability reports of ``diststrs``."""
    gates.refresh_reports(view, diststrs)
