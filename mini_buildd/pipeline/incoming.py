"""The incoming quarantine: what becomes of the files an FTP session left in ``incoming/``.

Everything in ``incoming/`` was written by an anonymous FTP client. This module owns the first
step of the trust model (verify → decide → move): per arrival, a fresh private directory below
``var/quarantine/`` whose name never comes from the upload, and nothing else.

- :class:`Incoming` runs one worker thread: the FTP server hands it each finished session's
  received files (:meth:`Incoming.submit_session`); the worker (never the FTP thread) checks each
  ``*.changes`` file's size before it parses it, moves it and the files it lists *that the same
  session received* into a new quarantine directory (:func:`quarantine`), deletes every other file
  of the session as cruft, and calls ``dispatch(quarantined_changes_path)``.
- Start-up (:meth:`Incoming.requeue_leftovers`): quarantine directories left by a previous run are
  handed to ``dispatch`` again; ``*.changes`` left in ``incoming/`` are quarantined with the
  files they list (no session to tell them apart any more), the rest is cruft.

What is dispatched is still unverified: the packager and the builder check checksums, signature
and rights inside the quarantine directory, and only then move it to its place
(:func:`release`), or reject it (:func:`reject_arrival`: its REJECTED event, its changes file kept
below the events, the rest of its quarantine directory deleted with :func:`discard`).
"""

import logging
import os
import pathlib
import queue
import shutil
import tempfile
import threading

from debian import deb822

from mini_buildd import changes, config, errors, instance, services
from mini_buildd.events import Event, Type as EventType

LOG = logging.getLogger(__name__)

#: Prefix of the quarantine directories.
ARRIVAL_PREFIX = "arrival-"


def _remove(path, why):
    try:
        os.unlink(path)
        LOG.info("Removed %s from incoming: %s", os.path.basename(str(path)), why)
    except FileNotFoundError:
        pass
    except OSError as e:
        LOG.error("Can't remove %s from incoming: %s", path, e)


def listed_names(path):
    """Plain file names a changes file lists (``Files``, ``Checksums-*``), read leniently; a
    changes file over :data:`mini_buildd.changes.MAX_CHANGES_SIZE` or unparsable lists nothing.
    Names that are not plain file names are left out."""
    path = pathlib.Path(path)
    names = []
    try:
        if path.lstat().st_size > changes.MAX_CHANGES_SIZE or not path.is_file() or path.is_symlink():
            return names
        with open(path, encoding="utf-8", errors="replace") as f:
            parsed = deb822.Changes(f)
        for field in ("Files", "Checksums-Sha256", "Checksums-Sha1"):
            for entry in parsed.get(field) or []:
                name = entry.get("name") if hasattr(entry, "get") else None
                if name and name not in names and _plain(name):
                    names.append(name)
    except Exception as e:  # pylint: disable=broad-except  # python-debian raises various errors on garbage
        LOG.warning("Can't read the file list of %s: %s", path.name, e)
    return names


def _plain(name):
    try:
        changes.check_file_name(name)
        return True
    except changes.ChangesError:
        return False


def new_arrival_dir():
    """A fresh, private (0700) directory for one arrival."""
    config.paths.quarantine.mkdir(parents=True, exist_ok=True)
    return pathlib.Path(tempfile.mkdtemp(prefix=ARRIVAL_PREFIX, dir=config.paths.quarantine))


def quarantine(changes_path, available):
    """Move ``changes_path`` and the files it lists that are in ``available`` (paths in incoming,
    a set; used ones are removed from it) into a new arrival directory; return the new path of
    the changes file. Nothing is overwritten: the directory is new."""
    changes_path = pathlib.Path(changes_path)
    arrival = new_arrival_dir()
    for name in listed_names(changes_path):
        src = changes_path.parent / name
        if src in available and src != changes_path:
            available.discard(src)
            try:
                os.rename(src, arrival / name)
            except OSError as e:
                LOG.warning("Can't quarantine %s: %s", name, e)
    target = arrival / changes_path.name
    os.rename(changes_path, target)
    return target


def release(changes_obj, directory, extra_names=()):
    """Move a verified arrival (its changes file, its listed files and ``extra_names``, e.g.
    source files the packager copied in from the pool) from its quarantine directory into
    ``directory``, which must not hold any of these files yet; the quarantine directory is
    removed. Raises :class:`mini_buildd.changes.ChangesError` on a clash (nothing is moved then)."""
    directory = pathlib.Path(directory)
    arrival = changes_obj.path.parent
    names = [f["name"] for f in changes_obj.files()] + [changes_obj.name]
    names += [n for n in extra_names if n not in names]
    directory.mkdir(parents=True, exist_ok=True)
    clash = [n for n in names if os.path.lexists(directory / n)]
    if clash:
        raise changes.ChangesError(f"{changes_obj.name}: {', '.join(clash)} already exist(s) for {changes_obj.bkey}: "
                                   "an arrival never replaces another package's files")
    for name in names:
        os.rename(arrival / name, directory / name)
    changes_obj.path = directory / changes_obj.name
    discard(arrival)
    return changes_obj.path


def discard(arrival_dir):
    """Delete an arrival's quarantine directory (only ever below ``var/quarantine``)."""
    arrival_dir = pathlib.Path(arrival_dir)
    if arrival_dir.parent == config.paths.quarantine and arrival_dir.name.startswith(ARRIVAL_PREFIX):
        shutil.rmtree(arrival_dir, ignore_errors=True)


def is_quarantined(path):
    path = pathlib.Path(path)
    return path.parent.parent == config.paths.quarantine and path.parent.name.startswith(ARRIVAL_PREFIX)


class Incoming:
    """The quarantine worker: ``dispatch(path)`` gets each quarantined changes file."""

    def __init__(self, dispatch):
        self.dispatch = dispatch
        self._queue = queue.Queue()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, name="incoming", daemon=True)
        self._thread.start()

    def stop(self, timeout=30):
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def submit_session(self, received):
        """FTP thread: a session ended; ``received`` are its completely received files."""
        self._queue.put([pathlib.Path(p) for p in received])

    def _run(self):
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self.sort_session(item)
            except Exception:  # pylint: disable=broad-except  # thread boundary: the incoming thread must survive one session's trouble
                LOG.exception("Incoming: unexpected error on a session's files")

    def sort_session(self, received):
        """Quarantine each received ``*.changes`` with its own session's files, delete the rest,
        dispatch each arrival (in upload order). Returns the quarantined changes paths."""
        available = {p for p in received if os.path.lexists(p)}
        arrivals = self._quarantine_all([p for p in received if p.name.endswith(".changes") and p in available], available,
                                        "cruft (no changes file of the same upload lists it)")
        for arrival in arrivals:
            LOG.info("Incoming: %s", arrival.name)
            self._dispatch(arrival)
        return arrivals

    @staticmethod
    def _quarantine_all(changes_paths, available, cruft_reason):
        """Quarantine ``changes_paths`` (in order) with the files of ``available`` they list;
        delete what is left of ``available``. Returns the quarantined changes paths."""
        arrivals = []
        for path in changes_paths:
            available.discard(path)
            arrivals.append(quarantine(path, available))
        for path in available:
            _remove(path, cruft_reason)
        return arrivals

    def _dispatch(self, path):
        try:
            self.dispatch(path)
        except Exception:  # pylint: disable=broad-except  # callback boundary: one failing dispatch must not stop the others
            LOG.exception("Dispatch of %s failed", path)

    def requeue_leftovers(self):
        """Start-up: dispatch arrivals a previous run left in quarantine, then quarantine and
        dispatch the ``*.changes`` left in incoming (user uploads first, then internal ones, oldest
        first); delete everything else in incoming. Returns the dispatched paths."""
        found = []
        quarantine_dir = config.paths.quarantine
        if quarantine_dir.is_dir():
            for arrival in sorted(quarantine_dir.iterdir()):
                listed = list(arrival.glob("*.changes")) if arrival.name.startswith(ARRIVAL_PREFIX) else []
                if len(listed) == 1:
                    found.append(listed[0])
                elif arrival.is_dir() and not arrival.is_symlink():
                    LOG.warning("Dropping unusable quarantine entry %s.", arrival.name)
                    shutil.rmtree(arrival, ignore_errors=True)
                else:
                    LOG.warning("Dropping unusable quarantine entry %s.", arrival.name)
                    arrival.unlink()
        incoming = config.paths.incoming
        files = {p for p in incoming.iterdir() if p.is_file() or p.is_symlink()}

        def order(p):
            try:
                mtime = p.lstat().st_mtime
            except OSError:
                mtime = 0
            return (changes.classify(p.name) != changes.UPLOAD, mtime, p.name)
        leftovers = sorted((p for p in files if p.name.endswith(".changes") and not p.is_symlink()), key=order)
        found += self._quarantine_all(leftovers, set(files), "cruft (no changes file in incoming lists it)")
        for path in found:
            LOG.info("Re-queueing leftover: %s", path.name)
            self._dispatch(path)
        return found


def _plain_part(value, regex):
    return value if value and regex.match(value) else "_unknown"


def reject_arrival(changes_obj, path, reason, title="Upload rejected"):
    """REJECTED event for an arrival (``changes_obj``: parsed, or None if it could not be); its
    changes file is kept in a fresh events directory of its own, the rest of its quarantine
    directory is deleted."""
    path = pathlib.Path(path)
    LOG.warning("REJECTED %s: %s", path.name, reason)
    extra = {"error": errors.problem_dict(400, reason, title=title)}
    if changes_obj is None:
        parts = path.name.split("_")
        source = _plain_part(parts[0], changes.SOURCE_REGEX)
        version = _plain_part(parts[1] if len(parts) >= 3 else "", changes.VERSION_REGEX)
        save_dir = config.paths.events_of(source, version, changes.timecode_now(), "_unparsable")
        event = Event(EventType.REJECTED, "", source, version, extra=dict(extra, changes=path.name))
    else:
        source, version = changes_obj.source, changes_obj.version
        # Never the directory of another package: a fresh timecode of ours.
        timecode = changes_obj.timecode if changes_obj.kind == changes.UPLOAD else changes.timecode_now()
        save_dir = config.paths.events_of(source, version, timecode, changes_obj.architecture.replace(" ", "_")
                                          if changes_obj.kind != changes.UPLOAD else changes_obj.architecture)
        if path.parent != save_dir and os.path.lexists(save_dir / path.name):
            save_dir = config.paths.events_of(source, version, changes.timecode_now(), "_rejected")
        event = instance.make_event("REJECTED", changes_obj, extra)
        event.extra["changes"] = str(save_dir.relative_to(config.paths.events) / path.name)
    try:
        save_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        LOG.error("Can't make %s for rejected %s: %s", save_dir, path.name, e)

    def keep_changes():
        try:
            if path.is_file() and not path.is_symlink() and not os.path.lexists(save_dir / path.name):
                os.rename(path, save_dir / path.name)
        except OSError as e:
            LOG.error("Can't keep rejected %s: %s", path.name, e)
        if is_quarantined(path):
            discard(path.parent)
    # The event file first, then the changes file, then the event's readers: killed before the
    # move, the arrival is still whole in quarantine and the next start rejects it again (the same
    # reason). The other order could leave the changes file in an event directory without an event,
    # which the next start takes for an accepted upload interrupted before its PACKAGING (it ended
    # FAILED instead of REJECTED).
    services.log_event(event, save_dir=save_dir, after_save=keep_changes)
