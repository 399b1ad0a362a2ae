"""What follows every change of repository distributions (install, migration, removal, rollback
restore): the change snapshot (:mod:`mini_buildd.archive.change_snapshots`) and the renewed
installability report (:mod:`mini_buildd.archive.installability`) of each changed distribution.
Both are records of a change already done: their failures are logged, never raised."""

from mini_buildd.archive import change_snapshots, gates


def run(view, diststrs):
    """Snapshot and re-check ``diststrs`` of ``view``'s repository; ``{diststr: snapshot name}``."""
    taken = change_snapshots.after_change(view, diststrs)
    gates.refresh_reports(view, diststrs)
    return taken
