"""A snapshot of every change (issue #16): after each install, migration, removal and rollback
restore, the changed distribution is frozen as a reprepro snapshot named by its UTC time
(``20261207T101530Z``), signed like the distribution and addressable by apt as
``deb URL/repositories/REPO DIST/snapshots/TIMESTAMP COMPONENTS``.

This module owns the names of these snapshots, taking them, their retention (a suite's
``snapshot_keep_last`` newest are kept, and every one younger than ``snapshot_keep_days``; unset
fields mean :data:`DEFAULT_KEEP_LAST` and :data:`DEFAULT_KEEP_DAYS`) and the difference between
two snapshots (or a snapshot and the live distribution). Snapshots with other names (manual ones
and the timed ``WEEKLY_…`` ones of :mod:`mini_buildd.archive.snapshots`) are never pruned here;
reprepro deletes a pool file only when no distribution and no snapshot references it.
"""

import datetime
import gzip
import logging
import lzma
import re

from debian import deb822

from mini_buildd import dist, errors

LOG = logging.getLogger(__name__)

NAME_FORMAT = "%Y%m%dT%H%M%SZ"
_NAME_RE = re.compile(r"^(?P<stamp>\d{8}T\d{6}Z)(\.(?P<n>\d+))?$")
DEFAULT_KEEP_LAST = 10
DEFAULT_KEEP_DAYS = 7
#: The pseudo snapshot name of the distribution as it is now (for :func:`diff`).
LIVE = "live"


def stamp(snapshot_name):
    """The UTC time of a change snapshot name, or None for any other name."""
    m = _NAME_RE.match(snapshot_name)
    if not m:
        return None
    return datetime.datetime.strptime(m["stamp"], NAME_FORMAT).replace(tzinfo=datetime.timezone.utc)


def _sort_key(snapshot_name):
    m = _NAME_RE.match(snapshot_name)
    return (m["stamp"], int(m["n"] or 0)) if m else (snapshot_name, 0)


def change_snapshots(names):
    """The change snapshots among ``names``, oldest first."""
    return sorted((n for n in names if stamp(n)), key=_sort_key)


def take(reprepro, diststr, now=None):
    """Snapshot ``diststr`` now (a second change in the same second gets ``.1``, ``.2``, ...); its name."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    base = now.astimezone(datetime.timezone.utc).strftime(NAME_FORMAT)
    existing = set(reprepro.snapshots(diststr))
    name, n = base, 0
    while name in existing:
        n += 1
        name = f"{base}.{n}"
    reprepro.gensnapshot(diststr, name)
    return name


def after_change(view, diststrs):
    """Snapshot each changed distribution (rollback distributions aside); failures are logged only
    (the change itself is done). Returns ``{diststr: snapshot name}``."""
    taken = {}
    for diststr in sorted(set(diststrs)):
        if dist.DistStr(diststr).rollback is not None:
            continue
        try:
            taken[diststr] = take(view.reprepro, diststr)
        except Exception as e:  # pylint: disable=broad-except  # boundary: the change is done, the snapshot is a record of it
            LOG.error("Change snapshot of %s failed: %s", diststr, e)
    return taken


def expired(names, keep_last=None, keep_days=None, now=None):
    """The change snapshots of ``names`` to prune: neither among the ``keep_last`` newest nor younger than ``keep_days``."""
    keep_last = DEFAULT_KEEP_LAST if keep_last is None else keep_last
    keep_days = DEFAULT_KEEP_DAYS if keep_days is None else keep_days
    now = now or datetime.datetime.now(datetime.timezone.utc)
    ordered = change_snapshots(names)
    candidates = ordered[:max(0, len(ordered) - keep_last)]
    return [n for n in candidates if now - stamp(n) >= datetime.timedelta(days=keep_days)]


def prune(reprepro, diststr, keep_last=None, keep_days=None, now=None):
    """Delete the expired change snapshots of ``diststr``; their names."""
    gone = expired(reprepro.snapshots(diststr), keep_last, keep_days, now)
    for name in gone:
        reprepro.delete_snapshot(diststr, name)
    return gone


# ------------------------------------------------------------------------------------------------ diff
class SnapshotNotFound(errors.NotFound):
    """No such snapshot of the distribution."""


def _read_index(directory, name):
    for suffix, opener in (("", open), (".xz", lzma.open), (".gz", gzip.open)):
        path = directory / f"{name}{suffix}"
        if path.exists():
            with opener(path, "rt", encoding="utf-8", errors="replace") as f:
                return f.read()
    return ""


def contents(reprepro, diststr, snapshot_name):
    """``{"sources": {name: version}, "binaries": {"name/arch": version}}`` of a snapshot (or :data:`LIVE`)."""
    if snapshot_name == LIVE:
        root = reprepro.dist_dir(diststr)
    else:
        if snapshot_name not in reprepro.snapshots(diststr):
            raise SnapshotNotFound(f"No snapshot '{snapshot_name}' of {diststr}.")
        root = reprepro.snapshot_dir(diststr, snapshot_name)
    sources, binaries = {}, {}
    for component_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "snapshots"):
        for index_dir in sorted(p for p in component_dir.iterdir() if p.is_dir()):
            if index_dir.name == "source":
                for s in deb822.Sources.iter_paragraphs(_read_index(index_dir, "Sources").splitlines(), use_apt_pkg=False):
                    sources[s["Package"]] = s["Version"]
            elif index_dir.name.startswith("binary-"):
                for b in deb822.Packages.iter_paragraphs(_read_index(index_dir, "Packages").splitlines(), use_apt_pkg=False):
                    binaries[f"{b['Package']}/{b['Architecture']}"] = b["Version"]
    return {"sources": sources, "binaries": binaries}


def _diff_maps(old, new):
    return {"added": {k: new[k] for k in sorted(set(new) - set(old))},
            "removed": {k: old[k] for k in sorted(set(old) - set(new))},
            "changed": {k: [old[k], new[k]] for k in sorted(set(old) & set(new)) if old[k] != new[k]}}


def diff(reprepro, diststr, snapshot_a, snapshot_b=LIVE):
    """What changed from snapshot ``a`` to ``b`` (default: the live distribution): per sources and
    binaries, ``added`` and ``removed`` ``{name: version}`` and ``changed`` ``{name: [old, new]}``."""
    a, b = contents(reprepro, diststr, snapshot_a), contents(reprepro, diststr, snapshot_b)
    return {"distribution": diststr, "a": snapshot_a, "b": snapshot_b,
            "sources": _diff_maps(a["sources"], b["sources"]), "binaries": _diff_maps(a["binaries"], b["binaries"])}
