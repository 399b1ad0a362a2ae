"""Timed snapshots (upstream §3.7): weekly, monthly and yearly reprepro snapshots of every "stable"
distribution (suite neither experimental nor migrating) of every Active repository, named
``<TYPE>_<UTC ISO minutes>`` (``WEEKLY_2026-11-22T07:30``), and their expiry (keep 8 weekly, 12
monthly, 4 yearly).

Unlike a fixed cron schedule, a snapshot is taken when it is *due*: when the newest snapshot of
its type is older than the type's period (or there is none). The crontab asks hourly, so restarts
neither skip nor double a snapshot. Snapshots with other names (made by hand via the API) are
never touched.

:func:`prune_changes` is the cron job that prunes the change snapshots of every distribution
(:mod:`mini_buildd.archive.change_snapshots`) by its suite's retention rule.
"""

import datetime
import logging
import re

from mini_buildd.archive import change_snapshots
from mini_buildd.archive.operations import RepositoryView
from mini_buildd.models import Repository

LOG = logging.getLogger(__name__)

#: type -> (period, how many to keep)
TYPES = {
    "WEEKLY": (datetime.timedelta(weeks=1), 8),
    "MONTHLY": (datetime.timedelta(days=30), 12),
    "YEARLY": (datetime.timedelta(days=365), 4),
}
NAME_FORMAT = "%Y-%m-%dT%H:%M"
_NAME_RE = re.compile(r"^(?P<type>[A-Z]+)_(?P<stamp>\d{4}-\d{2}-\d{2}T\d{2}:\d{2})$")


def name(snapshot_type, now):
    return f"{snapshot_type}_{now.astimezone(datetime.timezone.utc).strftime(NAME_FORMAT)}"


def parse(snapshot_name):
    """``(type, datetime)`` of a timed snapshot name, or None for any other name."""
    m = _NAME_RE.match(snapshot_name)
    if not m or m["type"] not in TYPES:
        return None
    stamp = datetime.datetime.strptime(m["stamp"], NAME_FORMAT).replace(tzinfo=datetime.timezone.utc)
    return m["type"], stamp


def _of_type(names, snapshot_type):
    """``[(datetime, name)]`` of ``snapshot_type``, oldest first."""
    return sorted((p[1], n) for n in names if (p := parse(n)) and p[0] == snapshot_type)


def due(names, snapshot_type, now):
    """Whether a ``snapshot_type`` snapshot is due, given the existing snapshot ``names``."""
    existing = _of_type(names, snapshot_type)
    period = TYPES[snapshot_type][0]
    # a minute of slack: an hourly job must not miss "exactly one week later" by seconds
    return not existing or now - existing[-1][0] >= period - datetime.timedelta(minutes=1)


def expired(names, snapshot_type):
    """Names of ``snapshot_type`` beyond the number to keep (the oldest ones)."""
    existing = _of_type(names, snapshot_type)
    keep = TYPES[snapshot_type][1]
    return [n for _stamp, n in existing[:-keep]] if len(existing) > keep else []


def stable_distributions():
    """``[(RepositoryView, diststr)]`` that get timed snapshots."""
    result = []
    for repo in Repository.objects.filter(status=Repository.STATUS_ACTIVE):
        view = RepositoryView(repo)
        for d in repo.mbd_distributions():
            for so in repo.layout.mbd_suite_options():
                if not so.experimental and not so.migrates_to_id:
                    result.append((view, repo.mbd_diststr(d, so)))
    return result


def run(now=None, types=None):
    """The cron job: take due snapshots (of ``types``, default all), expire old ones; a short summary for the job log."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    created, deleted, errors = [], [], []
    for view, diststr in stable_distributions():
        for snapshot_type in types or TYPES:
            try:
                names = view.reprepro.snapshots(diststr)
                if due(names, snapshot_type, now):
                    new = name(snapshot_type, now)
                    view.reprepro.gensnapshot(diststr, new)
                    created.append(f"{diststr}/{new}")
                    names.append(new)
                for old in expired(names, snapshot_type):
                    view.reprepro.delete_snapshot(diststr, old)
                    deleted.append(f"{diststr}/{old}")
            except Exception as e:  # pylint: disable=broad-except  # cron job boundary: one distribution's failure must not stop the others
                LOG.error("Timed %s snapshot of %s failed: %s", snapshot_type, diststr, e)
                errors.append(f"{diststr} {snapshot_type}: {e}")
    if created or deleted:
        LOG.info("Timed snapshots: created %s; deleted %s.", created or "none", deleted or "none")
    if errors:
        raise RuntimeError("; ".join(errors))
    return f"created {len(created)}, deleted {len(deleted)}"


def prune_changes(now=None):
    """The cron job: delete the change snapshots every suite's retention rule lets go; a summary for the job log."""
    deleted, errors = [], []
    for repo in Repository.objects.filter(status=Repository.STATUS_ACTIVE):
        view = RepositoryView(repo)
        for d in repo.mbd_distributions():
            for so in repo.layout.mbd_suite_options():
                diststr = repo.mbd_diststr(d, so)
                try:
                    gone = change_snapshots.prune(view.reprepro, diststr, so.snapshot_keep_last, so.snapshot_keep_days, now)
                    deleted += [f"{diststr}/{name}" for name in gone]
                except Exception as e:  # pylint: disable=broad-except  # cron job boundary: one distribution's failure must not stop the others
                    LOG.error("Pruning the change snapshots of %s failed: %s", diststr, e)
                    errors.append(f"{diststr}: {e}")
    if deleted:
        LOG.info("Change snapshots pruned: %s.", deleted)
    if errors:
        raise RuntimeError("; ".join(errors))
    return f"deleted {len(deleted)}"
