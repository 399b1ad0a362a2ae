"""schroot wrapper: chroot configuration files, the mini-buildd fstab, and schroot sessions.

This module is the only one that runs ``schroot``. Its files below ``/etc/schroot/`` are rendered
by :mod:`mini_buildd.tools.schroot_files` and written as root by :mod:`mini_buildd.roothelper` (through
:mod:`mini_buildd.tools.privileged`), which checks they are the calling instance's. Which data a chroot
has (directory, tarball, ...) is decided by :mod:`mini_buildd.tools.chroot_backends`; here we only
install its ``[NAME]`` section and drive sessions.

About the fstab: schroot reads the mounts for a chroot from the file named by ``setup.fstab``
(relative to ``/etc/schroot``). Upstream has one global ``mini-buildd/fstab`` for the one system
instance, binding all of ``var/shared`` read-write into every chroot: every build could then
rewrite every other build's setup scripts and files. We bind only what a build may write and
what must outlive the session: the chroot's own ccache dir (``var/shared/libdir/CODENAME/ARCH/.ccache``).
A build's setup scripts and config are copied into its session instead (see
:mod:`mini_buildd.tools.sbuild`), so other builds' dirs, the libdir and the rest of the home are not
even visible inside the chroot. Because the bind depends on the instance home, and tests (or
several instances) may run with different homes at the same time, :func:`install_fstab` writes a
per-chroot file ``mini-buildd/fstab-NAME``; :func:`ensure_bind_sources` recreates missing bind
sources before a session (a missing one would fail the session).
"""

import contextlib
import logging
import pathlib
import re
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, Optional

from mini_buildd.tools import call, privileged
from mini_buildd import config
from mini_buildd.tools.schroot_files import (  # noqa: F401  pylint: disable=unused-import; re-exported: the schroot API in one place
    GENERIC_FSTAB_LINES, GLOBAL_FSTAB, Dirs, Names, SchrootError, bind_sources, conf_path, conf_text, dir_list, fstab_path,
    fstab_setup_name, fstab_text, parse_conf)

LOG = logging.getLogger(__name__)

SCHROOT = "schroot"


# ---------------------------------------------------------------------------------------------
# Configuration files (written as root, through mini_buildd.tools.privileged)
# ---------------------------------------------------------------------------------------------

def _home_of(paths: Iterable[call.FsPath]) -> Optional[pathlib.Path]:
    """The instance home of the first of ``paths`` below ``HOME/var/chroots`` or ``HOME/var/shared``."""
    for given in paths:
        path = pathlib.Path(given).resolve()
        for parent in [path] + list(path.parents):
            if parent.name in ("chroots", "shared") and parent.parent.name == "var":
                return parent.parent.parent
    return config.paths.home if config.paths is not None else None


def _data_path(text: str) -> list[str]:
    try:
        _name, values = parse_conf(text)
    except SchrootError:
        return []
    return [values[k] for k in ("directory", "file", "btrfs-source-subvolume") if values.get(k)]


def install_conf(name: str, text: str, home: Optional[call.FsPath] = None) -> pathlib.Path:
    """Write the schroot config ``text`` for ``name`` (its data must be below ``home``, default: the
    home its data path is in); return its path."""
    privileged.install_conf(home or _home_of(_data_path(text)), name, text)
    LOG.info("Installed schroot config %s", conf_path(name))
    return conf_path(name)


def remove_conf(name: str, home: Optional[call.FsPath] = None) -> None:
    """Remove the schroot config for ``name`` (no error if absent)."""
    path = conf_path(name)
    if not path.exists():
        return
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        text = ""
    privileged.remove_conf(home or _home_of(_data_path(text)), name)
    LOG.info("Removed schroot config %s", path)


def ensure_bind_sources(name: str) -> None:
    """Create missing bind sources of chroot ``name``'s own fstab (e.g. a removed ccache dir):
    schroot fails the whole session when one is missing."""
    for d in bind_sources(name):
        if not d.exists():
            LOG.info("Creating missing bind source %s of chroot %s", d, name)
            d.mkdir(parents=True, exist_ok=True)


def install_fstab(rw_dirs: Dirs, name: str, home: Optional[call.FsPath] = None) -> str:
    """Write the per-chroot fstab ``/etc/schroot/mini-buildd/fstab-NAME`` binding ``rw_dirs`` (dirs
    of the instance home, created if missing); return its ``setup.fstab`` value."""
    dirs = dir_list(rw_dirs)
    for d in dirs:
        pathlib.Path(d).mkdir(parents=True, exist_ok=True)
    privileged.install_fstab(home or _home_of(dirs), name, [pathlib.Path(d).resolve() for d in dirs])
    LOG.info("Installed schroot fstab %s", fstab_path(name))
    return fstab_setup_name(name)


def confine_old_fstabs(shared_dir: call.FsPath, prefix: str) -> list[str]:
    """Rewrite this instance's per-chroot fstabs (``fstab-PREFIX-CODENAME-ARCH``) that still bind
    all of ``shared_dir`` (made before build confinement) to bind only the chroot's ccache dir.
    Returns the names rewritten; errors are logged (e.g. no write access to /etc/schroot)."""
    shared = pathlib.Path(shared_dir).resolve()
    done: list[str] = []
    for path in sorted(config.SCHROOT_CONF_DIR.glob(f"fstab-{prefix}-*")):
        name = path.name[len("fstab-"):]
        codename, _, arch = name[len(prefix) + 1:].partition("-")
        if not codename or not arch or shared not in bind_sources(name):
            continue
        try:
            install_fstab([config.shared_ccache_dir(shared, codename, arch)], name)
            done.append(name)
        except (OSError, SchrootError, privileged.PrivilegeError) as e:
            LOG.warning("Can't confine the old fstab %s (builds there still see all of %s): %s", path, shared, e)
    if done:
        LOG.warning("Build confinement: old fstabs of %s now bind only their ccache dirs.", ", ".join(done))
    return done


def remove_fstab(name: str, home: Optional[call.FsPath] = None) -> None:
    """Remove the per-chroot fstab; the directory goes too when empty. No error if absent."""
    path = fstab_path(name)
    if not path.exists():
        return
    privileged.remove_fstab(home or _home_of(bind_sources(name)), name)
    LOG.info("Removed schroot fstab %s", path)


# ---------------------------------------------------------------------------------------------
# Chroots and sessions
# ---------------------------------------------------------------------------------------------

def _run(args: call.Argv, **kwargs: Any) -> str:
    return call.run([SCHROOT] + list(args), **kwargs)


def _names(output: str, namespace: str) -> list[str]:
    prefix = f"{namespace}:"
    return [line.strip()[len(prefix):] for line in output.splitlines() if line.strip().startswith(prefix)]


def list_chroots() -> list[str]:
    """``schroot -l``: the configured chroots as printed, e.g. ``['chroot:mini-buildd-bookworm-amd64', ...]``."""
    return [line.strip() for line in _run(["--list"]).splitlines() if re.match(r"^(chroot|source):", line.strip())]


def list_sessions() -> list[str]:
    """The ids of all active schroot sessions (without ``session:``)."""
    return _names(_run(["--list", "--all-sessions"]), "session")


def session_info(sid: str) -> dict[str, str]:
    """``schroot --info`` of a session as a dict (``Name``, ``Original Chroot Name``, ``Type``, ...)."""
    info: dict[str, str] = {}
    for line in _run(["--info", "--chroot", f"session:{sid}"]).splitlines():
        m = re.match(r"^\s{2}(\S.*?)\s{2,}(.*)$", line)
        if m:
            info[m.group(1).strip()] = m.group(2).strip()
    return info


def session_chroot(sid: str) -> Optional[str]:
    """The chroot name a session was begun from (``None`` if that can't be told)."""
    try:
        info = session_info(sid)
    except call.CallError as e:
        LOG.warning("Can't get info on session %s: %s", sid, e)
        return None
    return info.get("Original Chroot Name")


def begin_session(chroot: str, source: bool = False) -> str:
    """Begin a session on ``chroot`` (``source:`` chroot if ``source``); return the session id."""
    sid = f"{chroot}-{uuid.uuid4()}"
    namespace = "source" if source else "chroot"
    try:
        _run(["--begin-session", "--chroot", f"{namespace}:{chroot}", "--session-name", sid])
    except call.CallError as e:
        raise SchrootError(f"Can't begin schroot session on {namespace}:{chroot}: {e}") from e
    LOG.debug("Began schroot session %s on %s:%s", sid, namespace, chroot)
    return sid


def run_in_session(sid: str, argv: call.Argv, user: str = "root", input: Optional[str] = None,  # pylint: disable=redefined-builtin
                   directory: str = "/", timeout: Optional[float] = None, check: bool = True) -> str:
    """Run ``argv`` in session ``sid`` as ``user``; return its (combined) output."""
    return _run(["--run-session", "--chroot", f"session:{sid}", "--user", user, "--directory", directory, "--"]
                + [str(a) for a in argv], input=input, timeout=timeout, check=check)


def end_session(sid: str, force: bool = True) -> None:
    """End session ``sid``. If that fails and ``force``, retry with ``--force``; raises on failure."""
    try:
        _run(["--end-session", "--chroot", f"session:{sid}"])
    except call.CallError as e:
        if not force:
            raise SchrootError(f"Can't end schroot session {sid}: {e}") from e
        LOG.warning("Ending schroot session %s failed, forcing: %s", sid, e)
        try:
            _run(["--end-session", "--force", "--chroot", f"session:{sid}"])
        except call.CallError as e2:
            if sid in list_sessions():
                raise SchrootError(f"Can't end schroot session {sid} (even forced): {e2}") from e2
            LOG.warning("Schroot session %s vanished while ending it (ended concurrently).", sid)
    LOG.debug("Ended schroot session %s", sid)


@contextlib.contextmanager
def session(chroot: str, source: bool = False) -> Iterator[str]:
    """Context manager: a session on ``chroot`` that is ended on exit, whatever happens."""
    sid = begin_session(chroot, source=source)
    try:
        yield sid
    finally:
        end_session(sid)


def end_stale_sessions(chroots: Iterable[str]) -> list[str]:
    """End every session begun from one of ``chroots`` (schroot names: this instance's own
    chroots, e.g. after a crash); return their ids.

    Sessions of any other chroot (another instance on this host, with another schroot prefix)
    are left alone, even when their names share a prefix with ours.
    """
    ours = set(chroots)
    ended: list[str] = []
    if not ours:
        return ended
    for sid in list_sessions():
        if _session_origin(sid) in ours:
            try:
                end_session(sid)
                ended.append(sid)
            except SchrootError as e:
                LOG.error("Stale session %s: %s", sid, e)
    if ended:
        LOG.warning("Ended %s stale schroot session(s): %s", len(ended), " ".join(ended))
    return ended


_UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _session_origin(sid: str) -> Optional[str]:
    """The chroot ``sid`` was begun from: schroot's word, else the ``CHROOT-UUID`` id form (or None)."""
    origin = session_chroot(sid)
    if origin is None:
        m = re.fullmatch(r"(.+)-" + _UUID_RE, sid)
        origin = m.group(1) if m else None
    return origin


def end_sessions_of(chroot: str) -> list[str]:
    """End all sessions begun from ``chroot`` (plain or source); return their ids.

    A session belongs to ``chroot`` if schroot says so, or (if its info can't be read) if its
    id is schroot's default ``CHROOT-UUID``.
    """
    ended: list[str] = []
    for sid in list_sessions():
        origin = session_chroot(sid)
        if origin == chroot or (origin is None and re.fullmatch(re.escape(chroot) + "-" + _UUID_RE, sid)):
            end_session(sid)
            ended.append(sid)
    if ended:
        LOG.info("Ended %s session(s) of %s: %s", len(ended), chroot, " ".join(ended))
    return ended
