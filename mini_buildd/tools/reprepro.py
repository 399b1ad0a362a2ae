"""reprepro: the one wrapper around the ``reprepro`` APT repository tool (upstream §3.6, §3.7, §10).

Owns the text of a repository's ``conf/distributions`` and ``conf/options``, every ``reprepro``
invocation, and the layout *inside* one reprepro base directory (``conf/``, ``dists/``,
``dists/<dist>/snapshots/``). Where the base directory itself lives is decided by the caller
(``mini_buildd.config.Paths.repository()``).

All calls on one base directory are serialized by an in-process lock (:attr:`Reprepro.lock`,
re-entrant, so callers may hold it around multi-step operations such as "shift rollbacks, then
install"); reprepro's own ``--waitforlock 10`` covers other processes.
"""

import contextlib
import glob
import logging
import os
import pathlib
import re
import shutil
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Optional, Union

import debian.deb822

from mini_buildd.tools import call
from mini_buildd import files

LOG = logging.getLogger(__name__)

#: Global options given to every reprepro call (upstream §3.6). ``unusedarch`` is ignored for
#: packages (e.g. ``make deb-pkg`` kernels) that mislabel the architecture of some binaries.
#: Files (path parts) inside a base directory whose change means "the packages may have changed":
#: reprepro rewrites ``db/packages.db`` on include/copy/remove, not on queries or exports (every
#: call rewrites ``db/version``, so the ``db`` directory itself tells nothing).
STATE_FILES = (("db", "packages.db"), ("conf", "distributions"))

GLOBAL_OPTIONS = ("--verbose", "--waitforlock", "10", "--ignore", "unusedarch")

#: Morgue directory (removed pool files are moved there) relative to the base dir, reprepro syntax.
MORGUEDIR = "+b/morguedir"

#: Index fields written identically for every distribution.
DEB_INDICES = "Packages Release . .gz .xz"
DSC_INDICES = "Sources Release . .gz .xz"
CONTENTS = ".gz"

#: Name of the snapshots directory below ``dists/<dist>/``.
SNAPSHOTS_DIR = "snapshots"

#: Output format for :meth:`Reprepro.list_dist` (one record per line, ``|``-separated).
_LIST_FIELDS = ("distribution", "component", "architecture", "type", "package", "version", "source", "source_version")
_LIST_FORMAT = "${$codename}|${$component}|${$architecture}|${$type}|${package}|${version}|${$source}|${$sourceversion}\n"

#: What we accept as distribution and snapshot names (also keeps path traversal out).
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+~-]*$")

_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


class RepreproError(call.CallError):
    """A reprepro operation failed; ``argv``, ``returncode`` and ``output`` describe it."""


def get_lock(basedir: call.FsPath) -> threading.RLock:
    """The process-wide re-entrant lock for the reprepro base directory ``basedir``."""
    key = str(pathlib.Path(basedir).resolve())
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.RLock())


def _check_name(name: object, what: str = "name") -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"Invalid {what} for reprepro: {name!r}")
    return name


def _one_line(value: object, field: str) -> str:
    text = str(value)
    if "\n" in text or "\r" in text:
        raise ValueError(f"reprepro conf field {field} must be one line: {text!r}")
    return text


def _words(values: Iterable[object], field: str) -> str:
    return " ".join(_one_line(v, field) for v in values)


def _yes_no(value: object) -> str:
    return "yes" if value else "no"


def distributions_conf(stanzas: Iterable[Mapping[str, Any]]) -> str:
    """Return the text of ``conf/distributions`` for ``stanzas`` (upstream §3.6).

    Each stanza is a dict: ``codename`` (the diststr, also used as Suite and Label),
    ``also_accept_for`` (list of meta-distributions; empty for rollbacks), ``origin``,
    ``components`` (list; also used as UDebComponents), ``architectures`` (list, without
    ``source``), ``description`` (default: the diststr), ``not_automatic`` (default True),
    ``but_automatic_upgrades`` (default True). Stanzas are written in the given order, each
    followed by a blank line.
    """
    out = []
    for stanza in stanzas:
        diststr = _check_name(_one_line(stanza["codename"], "Codename"), "distribution")
        if not stanza["components"]:
            raise ValueError(f"{diststr}: no components")
        if not stanza["architectures"]:
            raise ValueError(f"{diststr}: no architectures")
        components = _words(stanza["components"], "Components")
        lines = [
            ("Codename", diststr),
            ("Suite", diststr),
            ("Label", diststr),
            ("AlsoAcceptFor", _words(stanza.get("also_accept_for") or [], "AlsoAcceptFor")),
            ("Origin", _one_line(stanza["origin"], "Origin")),
            ("Components", components),
            ("UDebComponents", components),
            ("Architectures", "source " + _words(stanza["architectures"], "Architectures")),
            ("Description", _one_line(stanza.get("description") or diststr, "Description")),
            ("SignWith", "default"),
            ("NotAutomatic", _yes_no(stanza.get("not_automatic", True))),
            ("ButAutomaticUpgrades", _yes_no(stanza.get("but_automatic_upgrades", True))),
            ("DebIndices", DEB_INDICES),
            ("DscIndices", DSC_INDICES),
            ("Contents", CONTENTS),
        ]
        out.append("".join(f"{key}: {value}\n" for key, value in lines) + "\n")
    return "".join(out)


def options_conf(gnupghome: call.FsPath, morguedir: Union[bool, str] = False) -> str:
    """Return the text of ``conf/options``: ``gnupghome`` and, if ``morguedir`` is true, a
    ``morguedir`` line (``+b/morguedir`` for ``True``, else the given reprepro path)."""
    lines = [f"gnupghome {_one_line(gnupghome, 'gnupghome')}"]
    if morguedir:
        lines.append(f"morguedir {MORGUEDIR if morguedir is True else _one_line(morguedir, 'morguedir')}")
    return "".join(f"{line}\n" for line in lines) + "\n"


def parse_options_conf(text: str) -> dict[str, str]:
    """Parse ``conf/options`` text into a dict (option name -> value, ``""`` for flags)."""
    result: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _sep, value = line.partition(" ")
        result[key] = value.strip()
    return result


def _write_if_changed(path: pathlib.Path, text: str) -> bool:
    """Atomically write ``text`` to ``path`` unless it already has that content; return True if written."""
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    files.write_atomic(path, text)
    return True


def _rm(path: pathlib.Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def dsc_has_priority(dsc_path: call.FsPath) -> bool:
    """True if the source stanza of the DSC at ``dsc_path`` has a ``Priority`` field."""
    with open(dsc_path, encoding="utf-8", errors="replace") as f:
        return "Priority" in debian.deb822.Dsc(f)


class Reprepro:
    """One reprepro base directory (a mini-buildd repository)."""

    def __init__(self, basedir: call.FsPath) -> None:
        self.basedir = pathlib.Path(basedir).resolve()
        self.lock = get_lock(self.basedir)
        #: Inside :meth:`deferred_export`: the distributions changed so far (else None).
        self._deferred: Optional[set[str]] = None
        #: Inside :meth:`journaled`: changes keep unreferenced pool files (a rollback needs them).
        self._journaled = False

    @contextlib.contextmanager
    def deferred_export(self) -> Iterator[None]:
        """Group changes: inside, changing commands run with ``--export=never``; on leaving (also
        on errors) every changed distribution is exported (and signed) once. Holds the lock."""
        with self.lock:
            if self._deferred is not None:  # nested: the outer one exports
                yield
                return
            self._deferred = set()
            try:
                yield
            finally:
                touched, self._deferred = sorted(self._deferred), None
                if touched:
                    self.export(*touched)

    @contextlib.contextmanager
    def journaled(self) -> Iterator[None]:
        """Inside (lock held), changing commands run with ``--export=never --keepunreferencedfiles``:
        indices and pool stay as they were until the caller (the journal) commits with
        :meth:`deleteunreferenced` and :meth:`export`, so that restoring the database
        (:meth:`restore_db`) is a complete rollback."""
        with self.lock:
            previous, self._journaled = self._journaled, True
            try:
                yield
            finally:
                self._journaled = previous

    def _change(self, dist: str, *args: str) -> str:
        """Run a command that changes ``dist`` (export deferred inside :meth:`deferred_export`)."""
        if self._journaled:
            return self._run("--export=never", "--keepunreferencedfiles", *args)
        if self._deferred is not None:
            self._deferred.add(dist)
            return self._run("--export=never", *args)
        return self._run(*args)

    def __repr__(self) -> str:
        return f"Reprepro({self.basedir})"

    # Paths inside the base dir (reprepro's own layout)
    @property
    def conf_dir(self) -> pathlib.Path:
        return self.basedir / "conf"

    @property
    def distributions_file(self) -> pathlib.Path:
        return self.conf_dir / "distributions"

    @property
    def options_file(self) -> pathlib.Path:
        return self.conf_dir / "options"

    @property
    def db_dir(self) -> pathlib.Path:
        return self.basedir / "db"

    @property
    def db_lockfile(self) -> pathlib.Path:
        """reprepro's own lock (left behind when reprepro itself is killed)."""
        return self.db_dir / "lockfile"

    @property
    def pool_dir(self) -> pathlib.Path:
        return self.basedir / "pool"

    @property
    def dists_dir(self) -> pathlib.Path:
        return self.basedir / "dists"

    def dist_dir(self, dist: str) -> pathlib.Path:
        return self.dists_dir / _check_name(dist, "distribution")

    def snapshots_dir(self, dist: str) -> pathlib.Path:
        return self.dist_dir(dist) / SNAPSHOTS_DIR

    def snapshot_dir(self, dist: str, name: str) -> pathlib.Path:
        return self.snapshots_dir(dist) / _check_name(name, "snapshot name")

    # Running reprepro
    def _env(self) -> Optional[dict[str, str]]:
        try:
            options = parse_options_conf(self.options_file.read_text())
        except FileNotFoundError:
            return None
        gnupghome = options.get("gnupghome")
        return {"GNUPGHOME": gnupghome} if gnupghome else None

    def _run(self, *args: str) -> str:
        argv = ["reprepro", *GLOBAL_OPTIONS, "--basedir", str(self.basedir), *args]
        with self.lock:
            started = time.monotonic()
            try:
                output = call.run(argv, env=self._env())
            except call.CallError as e:
                raise RepreproError(e.argv, e.returncode, e.output) from e
        LOG.debug("reprepro %s (%.3f s): %s", " ".join(args), time.monotonic() - started, output.strip())
        return output

    # Configuration
    def write_conf(self, distributions_text: str, options_text: str) -> bool:
        """Write ``conf/distributions`` and ``conf/options``; return True if either changed."""
        with self.lock:
            self.conf_dir.mkdir(parents=True, exist_ok=True)
            changed = _write_if_changed(self.distributions_file, distributions_text)
            changed = _write_if_changed(self.options_file, options_text) or changed
        if changed:
            LOG.info("%s: configuration changed", self)
        return changed

    def dists(self) -> list[str]:
        """Codenames configured in ``conf/distributions``, in file order."""
        try:
            with open(self.distributions_file, encoding="utf-8") as f:
                return [p["Codename"] for p in debian.deb822.Deb822.iter_paragraphs(f) if "Codename" in p]
        except FileNotFoundError:
            return []

    # Whole repository
    def export(self, *dists: str) -> str:
        """(Re-)generate and sign the indices of ``dists`` (all if none given)."""
        return self._run("export", *[_check_name(d, "distribution") for d in dists])

    def check(self) -> str:
        """``reprepro check``: every referenced file is known to the database."""
        return self._run("check")

    def checkpool(self, fast: bool = False) -> str:
        """``reprepro checkpool``: pool files exist (``fast``) and have the recorded checksums."""
        return self._run("checkpool", *(["fast"] if fast else []))

    def clearvanished(self) -> str:
        """Forget (and delete the files of) distributions no longer configured."""
        return self._run("--delete", "clearvanished")

    def deleteunreferenced(self) -> str:
        return self._run("deleteunreferenced")

    def flood(self, dist: str) -> str:
        """Make arch:all packages available to all architectures of ``dist``."""
        return self._run("flood", _check_name(dist, "distribution"))

    def reindex(self) -> None:
        """Rebuild all indices from the database (2.x semantics).

        Removes the exportable index files below ``dists/<dist>/`` (keeping ``snapshots/``),
        drops the directories (and snapshot references) of distributions no longer configured,
        then ``--delete clearvanished``, ``export`` and ``flood`` for every distribution.
        """
        with self.lock:
            configured = set(self.dists())
            if not configured:
                raise RepreproError(["reprepro", "reindex"], 1, f"{self.distributions_file}: no distributions configured")
            unreferenced = False
            if self.dists_dir.is_dir():
                for dist_dir in sorted(self.dists_dir.iterdir()):
                    if dist_dir.name in configured:
                        for entry in dist_dir.iterdir():
                            if entry.name != SNAPSHOTS_DIR:
                                _rm(entry)
                    else:
                        snapshots = dist_dir / SNAPSHOTS_DIR
                        if dist_dir.is_dir() and not dist_dir.is_symlink() and snapshots.is_dir():
                            for snapshot in sorted(snapshots.iterdir()):
                                LOG.info("%s: unreferencing snapshot %s of removed distribution %s", self, snapshot.name, dist_dir.name)
                                self._run("unreferencesnapshot", dist_dir.name, snapshot.name)
                                unreferenced = True
                        LOG.info("%s: removing directory of unconfigured distribution %s", self, dist_dir.name)
                        _rm(dist_dir)
            self.clearvanished()
            if unreferenced:
                self.deleteunreferenced()
            self.export()
            for dist in self.dists():
                self.flood(dist)

    # Queries
    def ls(self, source: str) -> dict[str, list[dict[str, str]]]:
        """Where source package ``source`` is: ``{diststr: [{version, component, architecture}]}``.

        Parsed from ``--type dsc lsbycomponent``; every distribution (rollbacks included) is its own key.
        """
        result: dict[str, list[dict[str, str]]] = {}
        for line in self._run("--type", "dsc", "lsbycomponent", source).splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) != 5 or parts[0] != source:
                continue
            _name, version, dist, component, architecture = parts
            result.setdefault(dist, []).append({"version": version, "component": component, "architecture": architecture})
        return result

    def versions(self, dist: str, source: str) -> list[str]:
        """Versions of source package ``source`` in ``dist`` (more than one only across components)."""
        return [item["version"] for item in self.ls(source).get(dist, [])]

    def list_dist(self, dist: str) -> list[dict[str, str]]:
        """All packages in ``dist``: list of dicts with keys distribution, component,
        architecture (``source`` for sources), type (dsc, deb, udeb), package, version, source,
        source_version."""
        result: list[dict[str, str]] = []
        output = self._run("--list-format", _LIST_FORMAT, "list", _check_name(dist, "distribution"))
        for line in output.splitlines():
            parts = line.split("|")
            if len(parts) == len(_LIST_FIELDS):
                result.append(dict(zip(_LIST_FIELDS, parts)))
        return result

    # Changing packages
    def includedsc(self, dist: str, dsc_path: call.FsPath, component: Optional[str] = None, add_priority_optional: bool = True) -> str:
        """Install a source package. Adds ``--priority optional`` when the DSC has no Priority
        field (and ``add_priority_optional``), working around Debian #1106857."""
        args: list[str] = []
        if component:
            args += ["--component", component]
        if add_priority_optional and not dsc_has_priority(dsc_path):
            args += ["--priority", "optional"]
        return self._change(dist, *args, "includedsc", _check_name(dist, "distribution"), str(dsc_path))

    def include(self, dist: str, changes_path: call.FsPath) -> str:
        """Install everything a ``.changes`` lists (e.g. a buildresult's binaries)."""
        return self._change(dist, "include", _check_name(dist, "distribution"), str(changes_path))

    def includedeb(self, dist: str, deb_path: call.FsPath, component: Optional[str] = None) -> str:
        """Install one binary package."""
        args = ["--component", component] if component else []
        return self._change(dist, *args, "includedeb", _check_name(dist, "distribution"), str(deb_path))

    def copysrc(self, dst: str, src: str, source: str, version: Optional[str] = None) -> str:
        """Copy source package ``source`` (all versions, or ``version``) with its binaries from
        dist ``src`` to dist ``dst``. reprepro silently does nothing if there is no match."""
        return self._change(dst, "copysrc", _check_name(dst, "distribution"), _check_name(src, "distribution"), source,
                            *([version] if version else []))

    def removesrc(self, dist: str, source: str, version: Optional[str] = None) -> str:
        """Remove source package ``source`` (all versions, or ``version``) with its binaries from
        ``dist``. reprepro silently does nothing if there is no match."""
        return self._change(dist, "removesrc", _check_name(dist, "distribution"), source, *([version] if version else []))

    # Snapshots (upstream §3.7)
    def gensnapshot(self, dist: str, name: str) -> str:
        """Freeze ``dist`` as ``dists/<dist>/snapshots/<name>/``."""
        return self._run("gensnapshot", _check_name(dist, "distribution"), _check_name(name, "snapshot name"))

    def snapshots(self, dist: str) -> list[str]:
        """Sorted names of the snapshots of ``dist``."""
        try:
            return sorted(p.name for p in self.snapshots_dir(dist).iterdir() if p.is_dir())
        except FileNotFoundError:
            return []

    def delete_snapshot(self, dist: str, name: str) -> None:
        """Delete snapshot ``name`` of ``dist`` and the pool files only it referenced."""
        with self.lock:
            path = self.snapshot_dir(dist, name)
            if not path.is_dir():
                raise RepreproError(["reprepro", "delete_snapshot", dist, name], 1, f"No such snapshot: {dist}/{name}")
            self._run("unreferencesnapshot", dist, name)
            self.clearvanished()
            self.deleteunreferenced()
            shutil.rmtree(path)

    # Database copies and pool files (for all-or-nothing changes, see mini_buildd.archive.journal)
    def db_files(self) -> list[pathlib.Path]:
        """The database files (``db/*`` but reprepro's lockfile), sorted."""
        try:
            return sorted(p for p in self.db_dir.iterdir() if p.is_file() and p.name != self.db_lockfile.name)
        except FileNotFoundError:
            return []

    def snapshot_db(self, dest: call.FsPath) -> None:
        """Copy the database files into the (new, empty) directory ``dest``, fsync'ed. Lock held:
        no reprepro command runs meanwhile, so the copy is consistent."""
        dest_dir = pathlib.Path(dest)
        with self.lock:
            self.wait_unlocked()
            dest_dir.mkdir(parents=True)
            for path in self.db_files():
                files.copy_synced(path, dest_dir / path.name)
            files.fsync_dir(dest_dir)

    def restore_db(self, src: call.FsPath) -> None:
        """Make ``db/`` exactly the copy in ``src`` (files not in the copy are deleted). Each file
        is replaced atomically; if interrupted, calling it again completes it."""
        src_dir = pathlib.Path(src)
        with self.lock:
            self.wait_unlocked()
            self.db_dir.mkdir(parents=True, exist_ok=True)
            wanted = {p.name for p in src_dir.iterdir() if p.is_file()}
            for name in sorted(wanted):
                tmp = self.db_dir / f".{name}.restore"
                files.copy_synced(src_dir / name, tmp)
                os.replace(tmp, self.db_dir / name)
            for path in self.db_files():
                if path.name not in wanted:
                    path.unlink()
            files.fsync_dir(self.db_dir)

    def wait_unlocked(self, timeout: float = 120.0) -> None:
        """Wait until reprepro's own lockfile is gone. A lockfile that no running reprepro process
        on this base directory holds (reprepro was killed) is removed."""
        deadline = time.monotonic() + timeout
        while self.db_lockfile.exists():
            if not self._reprepro_running():
                LOG.warning("%s: removing stale reprepro lockfile (no reprepro process on this base directory).", self)
                with contextlib.suppress(FileNotFoundError):
                    self.db_lockfile.unlink()
                break
            if time.monotonic() > deadline:
                raise RepreproError(["reprepro"], 1, f"{self.db_lockfile}: still locked by a running reprepro")
            time.sleep(0.2)

    def _reprepro_running(self) -> bool:
        needle = str(self.basedir).encode()
        for proc in pathlib.Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and os.path.basename(argv[0]) == b"reprepro" and needle in argv:
                return True
        return False

    def known_files(self) -> set[str]:
        """Pool file keys (``pool/...``) the database knows (``_listchecksums``)."""
        return {line.split(" ", 1)[0] for line in self._run("_listchecksums").splitlines() if line.startswith("pool/")}

    def pool_candidates(self, source: str, names: Iterable[str]) -> set[str]:
        """Pool files (as file keys) named ``names`` in the pool directories of ``source``."""
        result: set[str] = set()
        for component_dir in sorted(self.pool_dir.glob("*")) if self.pool_dir.is_dir() else []:
            for name in names:
                for path in component_dir.glob(f"*/{glob.escape(source)}/{glob.escape(name)}"):
                    result.add(str(path.relative_to(self.basedir)))
        return result

    def remove_stray_files(self, source: str, names: Iterable[str]) -> list[str]:
        """Delete pool files of ``source`` named ``names`` that the database does not know (left by
        an interrupted include whose database change was rolled back); return their file keys."""
        with self.lock:
            stray = sorted(self.pool_candidates(source, names) - self.known_files())
            for key in stray:
                LOG.info("%s: removing stray pool file %s", self, key)
                (self.basedir / key).unlink()
            return stray
