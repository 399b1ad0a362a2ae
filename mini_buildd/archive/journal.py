"""All-or-nothing repository changes: a write-ahead journal of reprepro steps, one per repository.

A change (install, migrate, remove, port) is planned completely before reprepro runs: a list of
steps (``copysrc``, ``removesrc``, ``includedsc``, ``include``; ``point`` entries name fault
injection points, :mod:`mini_buildd.faults`). :meth:`Journal.run` then, holding the repository
lock:

1. finishes or rolls back a journal left by a crash (:meth:`Journal.recover`);
2. prepares the journal in a fresh sibling directory and renames it into place (atomic):
   ``inputs/`` (hard links, or copies, of every file the steps install, with their SHA-256 in the
   plan), ``db/`` (a copy of reprepro's database as it is now) and ``plan.json``
   (state ``started``), everything fsync'ed;
3. runs the steps with ``--export=never --keepunreferencedfiles``, so the published indices and the
   pool stay as they were (``done`` in the plan is rewritten, fsync'ed, before each step);
4. commits: ``plan.json`` state ``committed`` (fsync'ed);
5. finishes: ``deleteunreferenced``, one signed ``export`` of every changed distribution, then the
   journal directory is removed.

Recovery (:meth:`Journal.recover`, at daemon start and before every change): a ``committed``
journal is finished (step 5). A ``started`` one is undone first — the database copy restored and
pool files of the inputs that the restored database does not know deleted — and then rolled
forward by replaying every step from that exact state, if every input is still there with its
recorded SHA-256; if not, or if a replayed step fails, it is undone again and stays rolled back.
A step that fails during the first run is undone the same way and its error raised
(:class:`JournalError`): either everything happened or nothing did.

Since indices are only exported after the commit, a rollback needs no export: ``dists/`` never
saw the change. Every stage is idempotent, so a crash during recovery is recovered the same way.
"""

import json
import logging
import os
import pathlib
import shutil

import debian.deb822

from mini_buildd import changes, errors, faults, files
from mini_buildd.tools import reprepro as reprepro_mod

LOG = logging.getLogger(__name__)

PLAN = "plan.json"
INPUTS = "inputs"
DB = "db"
STARTED, COMMITTED = "started", "committed"

#: Commands a step may run (methods of :class:`mini_buildd.tools.reprepro.Reprepro`).
COMMANDS = ("copysrc", "removesrc", "includedsc", "include")


class JournalError(errors.Error):
    """A change failed and was rolled back (the repository is as before)."""


def step(cmd, *args, file=None, ignore_errors=False):
    """One plan entry: ``cmd`` (see :data:`COMMANDS`) with ``args``; ``file``: the path of a
    ``.dsc``/``.changes`` to install (staged with the files it lists); ``ignore_errors``: a failing
    step is logged, not fatal (the rollback shift)."""
    if cmd not in COMMANDS:
        raise ValueError(f"Unknown journal step command {cmd!r}")
    return {"cmd": cmd, "args": [str(a) for a in args], "file": str(file) if file else None, "ignore_errors": bool(ignore_errors)}


def point(name):
    """A fault injection point between steps (run on the first run only, not on replay)."""
    return {"cmd": "point", "name": name}


def _plain(name):
    try:
        return changes.check_file_name(name)
    except changes.ChangesError as e:
        raise JournalError(str(e)) from e


def listed_files(path):
    """Base names of the files a ``.dsc`` or ``.changes`` at ``path`` lists (``Files`` and
    ``Checksums-Sha256``), checked to be plain names."""
    cls = debian.deb822.Dsc if str(path).endswith(".dsc") else debian.deb822.Changes
    with open(path, encoding="utf-8", errors="replace") as f:
        control = cls(f)
    names = []
    for field in ("Files", "Checksums-Sha256"):
        for entry in control.get(field) or []:
            if entry.get("name") and entry["name"] not in names:
                names.append(_plain(entry["name"]))
    return names


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        files.copy_synced(src, dst)


def _write_plan(directory, plan):
    files.write_atomic(pathlib.Path(directory) / PLAN, json.dumps(plan, indent=1, sort_keys=True), mode=0o600, fsync=True)
    files.fsync_dir(directory)


class Journal:
    """The journal of one repository: directory ``directory``, reprepro wrapper ``repo``."""

    def __init__(self, directory, repo):
        self.directory = pathlib.Path(directory)
        self.new_directory = self.directory.with_name(self.directory.name + ".new")
        self.reprepro = repo

    def __repr__(self):
        return f"Journal({self.directory})"

    def pending(self):
        """True if a change was interrupted (a journal is in place)."""
        return self.directory.exists() or self.new_directory.exists()

    def plan(self):
        """The plan in place (or None)."""
        try:
            return json.loads((self.directory / PLAN).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    # ------------------------------------------------------------------------------------ run
    def run(self, op, source, steps, touched):
        """Run the change ``steps`` (of ``op``: install, migrate, remove, port) on package
        ``source``, changing distributions ``touched``; all or nothing. Raises
        :class:`JournalError` (rolled back) on failure."""
        with self.reprepro.lock:
            self.recover()
            faults.point(f"{op}:before-plan")
            try:
                plan = self._prepare(op, source, steps, touched)
            except Exception as e:  # pylint: disable=broad-except  # transaction boundary: any failure to prepare is a JournalError, nothing changed
                shutil.rmtree(self.new_directory, ignore_errors=True)
                raise JournalError(f"{op} of {source}: could not prepare the change (nothing changed): {e}") from e
            try:
                self._apply(plan, replay=False)
            except faults.Fault:
                raise  # a simulated crash: leave everything as a crash would
            except Exception as e:  # pylint: disable=broad-except  # transaction boundary: any failure rolls back (then re-raised as JournalError)
                LOG.error("%s: %s of %s failed, rolling back: %s", self, op, source, e)
                self._undo(plan)
                self._drop()
                raise JournalError(f"{op} of {source} failed (nothing changed): {e}") from e
            self._commit(plan)
            self._finish(plan, first_run=True)

    def _prepare(self, op, source, steps, touched):
        """Stage inputs, copy the database, write the plan; then rename into place."""
        shutil.rmtree(self.new_directory, ignore_errors=True)
        self.new_directory.mkdir(mode=0o700, parents=True)
        inputs, planned = {}, []
        for n, s in enumerate(steps):
            s = dict(s)
            if s.get("file"):
                path = pathlib.Path(s["file"])
                sub = self.new_directory / INPUTS / str(n)
                sub.mkdir(parents=True)
                for name in [_plain(path.name)] + listed_files(path):
                    _link_or_copy(path.parent / name, sub / name)
                    inputs[f"{n}/{name}"] = files.sha256(sub / name)
                files.fsync_dir(sub)
                s["file"] = f"{n}/{path.name}"
            planned.append(s)
        self.reprepro.snapshot_db(self.new_directory / DB)
        plan = {"op": op, "source": source, "steps": planned, "touched": sorted(set(touched)), "inputs": inputs,
                "state": STARTED, "done": 0, "pid": os.getpid()}
        _write_plan(self.new_directory, plan)
        os.rename(self.new_directory, self.directory)
        files.fsync_dir(self.directory.parent)
        return plan

    def _apply(self, plan, replay):
        with self.reprepro.journaled():
            for n, s in enumerate(plan["steps"]):
                if s["cmd"] == "point":
                    if not replay:
                        faults.point(s["name"])
                    continue
                plan["done"] = n
                _write_plan(self.directory, plan)
                args = list(s["args"])
                if s.get("file"):
                    args.append(str(self.directory / INPUTS / s["file"]))
                try:
                    getattr(self.reprepro, s["cmd"])(*args)
                except reprepro_mod.RepreproError as e:
                    if not s.get("ignore_errors"):
                        raise
                    LOG.warning("%s: step %s %s failed (ignored): %s", self, s["cmd"], " ".join(s["args"]), e)

    def _commit(self, plan):
        plan["state"] = COMMITTED
        plan["done"] = len(plan["steps"])
        _write_plan(self.directory, plan)

    def _finish(self, plan, first_run=False):
        op = plan["op"]
        if first_run:
            faults.point(f"{op}:before-export")
        self.reprepro.deleteunreferenced()
        if plan["touched"]:
            self.reprepro.export(*plan["touched"])
        if first_run:
            faults.point(f"{op}:after-export")
        self._drop()

    def _drop(self):
        """Remove the journal: the plan first (so a crash in the middle leaves no plan that could
        refer to a half-deleted database copy), then the rest."""
        try:
            (self.directory / PLAN).unlink()
            files.fsync_dir(self.directory)
        except FileNotFoundError:
            pass
        shutil.rmtree(self.directory)

    def _undo(self, plan):
        """Back to the state before the change: database copy restored, new pool files deleted."""
        self.reprepro.restore_db(self.directory / DB)
        names = {name.split("/", 1)[1] for name in plan.get("inputs", {})}
        if names:
            self.reprepro.remove_stray_files(plan["source"], names)

    def _inputs_ok(self, plan):
        for name, digest in plan.get("inputs", {}).items():
            path = self.directory / INPUTS / name
            try:
                if path.is_symlink() or files.sha256(path) != digest:
                    LOG.warning("%s: input %s changed: no roll forward.", self, name)
                    return False
            except OSError as e:
                LOG.warning("%s: input %s not readable (%s): no roll forward.", self, name, e)
                return False
        return True

    # ------------------------------------------------------------------------------------ recover
    def recover(self):
        """Complete or roll back an interrupted change. Returns None (nothing to do),
        ``"completed"`` or ``"rolled back"``."""
        with self.reprepro.lock:
            if self.new_directory.exists():  # crashed while preparing: nothing was changed yet
                LOG.warning("%s: removing a journal that was never started.", self)
                shutil.rmtree(self.new_directory)
            if not self.directory.exists():
                return None
            plan = self.plan()
            if plan is None:  # a crash while removing it (the plan goes first): nothing left to do
                LOG.warning("%s: no plan (removal interrupted), removing the rest.", self)
                self._drop()
                return None
            what = f"{plan['op']} of {plan['source']} ({plan['state']}, step {plan['done']} of {len(plan['steps'])})"
            if plan["state"] == COMMITTED:
                LOG.warning("%s: finishing interrupted %s.", self, what)
                self._finish(plan)
                return "completed"
            LOG.warning("%s: recovering interrupted %s.", self, what)
            self._undo(plan)
            faults.point("recover:after-restore")
            if self._inputs_ok(plan):
                try:
                    self._apply(plan, replay=True)
                except faults.Fault:
                    raise
                except Exception as e:  # pylint: disable=broad-except  # recovery boundary: a failed replay rolls back
                    LOG.error("%s: replay of %s failed, rolling back: %s", self, what, e)
                    self._undo(plan)
                else:
                    self._commit(plan)
                    faults.point("recover:after-replay")
                    self._finish(plan)
                    LOG.warning("%s: completed interrupted %s.", self, what)
                    return "completed"
            self._drop()
            LOG.warning("%s: rolled back interrupted %s.", self, what)
            return "rolled back"
