"""schroot wrapper: chroot configuration files, the mini-buildd fstab, and schroot sessions.

This module is the only one that runs ``schroot`` and the only one that writes below
``/etc/schroot/``. Which data a chroot has (directory, tarball, ...) is decided by
:mod:`mini_buildd.chroot_backends`; here we only render its ``[NAME]`` section and drive sessions.

About the fstab: schroot reads the mounts for a chroot from the file named by ``setup.fstab``
(relative to ``/etc/schroot``). Upstream has one global ``mini-buildd/fstab`` for the one system
instance, binding all of ``var/shared`` read-write into every chroot: every build could then
rewrite every other build's setup scripts and files. We bind only what a build may write and
what must outlive the session: the chroot's own ccache dir (``var/shared/libdir/CODENAME/ARCH/.ccache``).
A build's setup scripts and config are copied into its session instead (see
:mod:`mini_buildd.sbuild`), so other builds' dirs, the libdir and the rest of the home are not
even visible inside the chroot. Because the bind depends on the instance home, and tests (or
several instances) may run with different homes at the same time, :func:`install_fstab` writes a
per-chroot file ``mini-buildd/fstab-NAME``; :func:`ensure_bind_sources` recreates missing bind
sources before a session (a missing one would fail the session).
"""

import contextlib
import logging
import os
import pathlib
import re
import uuid

from mini_buildd import call, config

LOG = logging.getLogger(__name__)

SCHROOT = "schroot"

#: ``setup.fstab`` value of the global fstab (relative to /etc/schroot), as upstream.
GLOBAL_FSTAB = "mini-buildd/fstab"

#: Generic mounts every mini-buildd chroot gets (no /dev bind: the chroot has its own nodes).
GENERIC_FSTAB_LINES = (
    ("/proc", "/proc", "none", "rw,bind"),
    ("/sys", "/sys", "none", "rw,bind"),
    ("/dev/pts", "/dev/pts", "none", "rw,bind"),
    ("tmpfs", "/dev/shm", "tmpfs", "defaults"),
)


class SchrootError(Exception):
    """A schroot operation failed."""


# ---------------------------------------------------------------------------------------------
# Configuration files
# ---------------------------------------------------------------------------------------------

def _csv(values):
    if isinstance(values, str):
        return values
    return ",".join(values)


def conf_text(name, description, backend_lines, users=("mini-buildd",), groups=("sbuild",), personality="linux",
              fstab=GLOBAL_FSTAB):
    """The schroot config (``/etc/schroot/chroot.d/NAME.conf``) for one chroot.

    ``backend_lines`` are the backend specific ``key=value`` lines (``type=...`` etc.);
    ``users``/``groups`` may access the chroot, ``users`` are also its root and source-root
    users. ``fstab`` is the ``setup.fstab`` value (see :func:`install_fstab`).
    """
    lines = [
        f"[{name}]",
        f"description={description}",
        f"setup.fstab={fstab}",
        f"groups={_csv(groups)}",
        f"users={_csv(users)}",
        f"root-groups={_csv(groups)}",
        f"root-users={_csv(users)}",
        f"source-root-users={_csv(users)}",
        f"personality={personality}",
        "",
        "# Backend specific config",
    ]
    lines += list(backend_lines)
    lines.append("")  # upstream ends the section with an empty line
    return "\n".join(lines) + "\n"


def conf_path(name):
    """``/etc/schroot/chroot.d/NAME.conf``."""
    return config.schroot_conf(name)


def _write_root_file(path, text, mode=0o644):
    """Write atomically (schroot rejects files writable by others)."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        for attempt in (1, 2):  # the dir may vanish under us (remove_fstab of another chroot)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                tmp.write_text(text)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def install_conf(name, text):
    """Write the schroot config for ``name``; return its path."""
    path = conf_path(name)
    _write_root_file(path, text)
    LOG.info("Installed schroot config %s", path)
    return path


def remove_conf(name):
    """Remove the schroot config for ``name`` (no error if absent)."""
    path = conf_path(name)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        LOG.info("Removed schroot config %s", path)


def _dirs(rw_dirs):
    if rw_dirs is None:
        return []
    if isinstance(rw_dirs, (str, os.PathLike)):
        return [rw_dirs]
    return list(rw_dirs)


def fstab_text(rw_dirs=None):
    """The mini-buildd fstab: generic mounts, plus a read-write bind of each of ``rw_dirs`` (a
    path or a list of paths) at the same path: nothing else of the host is visible in a session."""
    lines = ["# mini-buildd schroot fstab, generated: do not edit.",
             "# <file system> <mount point> <type> <options> <dump> <pass>"]
    for fs, mountpoint, fstype, options in GENERIC_FSTAB_LINES:
        lines.append(f"{fs}\t{mountpoint}\t{fstype}\t{options}\t0\t0")
    for d in _dirs(rw_dirs):
        d = str(pathlib.Path(d).resolve())
        if any(c.isspace() for c in d):
            raise SchrootError(f"Bind-mounted dir must not contain white space (fstab): {d}")
        lines.append(f"{d}\t{d}\tnone\trw,bind\t0\t0")
    return "\n".join(lines) + "\n"


def bind_sources(name=None):
    """The host dirs the (per-chroot) fstab binds besides the generic mounts."""
    try:
        text = fstab_path(name).read_text(encoding="utf-8")
    except OSError:
        return []
    generic = {fs for fs, _mp, _t, _o in GENERIC_FSTAB_LINES}
    result = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and not fields[0].startswith("#") and "bind" in fields[3].split(",") and fields[0] not in generic:
            result.append(pathlib.Path(fields[0]))
    return result


def ensure_bind_sources(name):
    """Create missing bind sources of chroot ``name``'s own fstab (e.g. a removed ccache dir):
    schroot fails the whole session when one is missing."""
    for d in bind_sources(name):
        if not d.exists():
            LOG.info("Creating missing bind source %s of chroot %s", d, name)
            d.mkdir(parents=True, exist_ok=True)


def fstab_setup_name(name=None):
    """``setup.fstab`` value: ``mini-buildd/fstab``, or ``mini-buildd/fstab-NAME`` for a per-chroot fstab."""
    return GLOBAL_FSTAB if name is None else f"{GLOBAL_FSTAB}-{name}"


def fstab_path(name=None):
    """``/etc/schroot/mini-buildd/fstab`` or ``/etc/schroot/mini-buildd/fstab-NAME``."""
    return config.SCHROOT_CONF_DIR / ("fstab" if name is None else f"fstab-{name}")


def install_fstab(rw_dirs, name=None):
    """Write the mini-buildd fstab binding ``rw_dirs`` (created if missing); return its ``setup.fstab`` value.

    Without ``name``, the global ``/etc/schroot/mini-buildd/fstab`` (one instance per host,
    as upstream); with ``name``, the per-chroot ``/etc/schroot/mini-buildd/fstab-NAME``.
    """
    path = fstab_path(name)
    for d in _dirs(rw_dirs):
        pathlib.Path(d).mkdir(parents=True, exist_ok=True)
    _write_root_file(path, fstab_text(rw_dirs))
    LOG.info("Installed schroot fstab %s", path)
    return fstab_setup_name(name)


def confine_old_fstabs(shared_dir, prefix):
    """Rewrite this instance's per-chroot fstabs (``fstab-PREFIX-CODENAME-ARCH``) that still bind
    all of ``shared_dir`` (made before build confinement) to bind only the chroot's ccache dir.
    Returns the names rewritten; errors are logged (e.g. no write access to /etc/schroot)."""
    shared = pathlib.Path(shared_dir).resolve()
    done = []
    for path in sorted(config.SCHROOT_CONF_DIR.glob(f"fstab-{prefix}-*")):
        name = path.name[len("fstab-"):]
        codename, _, arch = name[len(prefix) + 1:].partition("-")
        if not codename or not arch or shared not in bind_sources(name):
            continue
        try:
            install_fstab([config.shared_ccache_dir(shared, codename, arch)], name)
            done.append(name)
        except (OSError, SchrootError) as e:
            LOG.warning("Can't confine the old fstab %s (builds there still see all of %s): %s", path, shared, e)
    if done:
        LOG.warning("Build confinement: old fstabs of %s now bind only their ccache dirs.", ", ".join(done))
    return done


def remove_fstab(name=None):
    """Remove the (per-chroot) fstab; the directory goes too when empty. No error if absent."""
    path = fstab_path(name)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        LOG.info("Removed schroot fstab %s", path)
    with contextlib.suppress(OSError):
        path.parent.rmdir()


# ---------------------------------------------------------------------------------------------
# Chroots and sessions
# ---------------------------------------------------------------------------------------------

def _run(args, **kwargs):
    return call.run([SCHROOT] + list(args), **kwargs)


def _names(output, namespace):
    prefix = f"{namespace}:"
    return [line.strip()[len(prefix):] for line in output.splitlines() if line.strip().startswith(prefix)]


def list_chroots():
    """``schroot -l``: the configured chroots as printed, e.g. ``['chroot:mini-buildd-bookworm-amd64', ...]``."""
    return [line.strip() for line in _run(["--list"]).splitlines() if re.match(r"^(chroot|source):", line.strip())]


def list_sessions():
    """The ids of all active schroot sessions (without ``session:``)."""
    return _names(_run(["--list", "--all-sessions"]), "session")


def session_info(session):
    """``schroot --info`` of a session as a dict (``Name``, ``Original Chroot Name``, ``Type``, ...)."""
    info = {}
    for line in _run(["--info", "--chroot", f"session:{session}"]).splitlines():
        m = re.match(r"^\s{2}(\S.*?)\s{2,}(.*)$", line)
        if m:
            info[m.group(1).strip()] = m.group(2).strip()
    return info


def session_chroot(session):
    """The chroot name a session was begun from (``None`` if that can't be told)."""
    try:
        info = session_info(session)
    except call.CallError as e:
        LOG.warning("Can't get info on session %s: %s", session, e)
        return None
    return info.get("Original Chroot Name")


def begin_session(chroot, source=False):
    """Begin a session on ``chroot`` (``source:`` chroot if ``source``); return the session id."""
    session = f"{chroot}-{uuid.uuid4()}"
    namespace = "source" if source else "chroot"
    try:
        _run(["--begin-session", "--chroot", f"{namespace}:{chroot}", "--session-name", session])
    except call.CallError as e:
        raise SchrootError(f"Can't begin schroot session on {namespace}:{chroot}: {e}") from e
    LOG.debug("Began schroot session %s on %s:%s", session, namespace, chroot)
    return session


def run_in_session(session, argv, user="root", input=None, directory="/", timeout=None, check=True):  # pylint: disable=redefined-builtin
    """Run ``argv`` in ``session`` as ``user``; return its (combined) output."""
    return _run(["--run-session", "--chroot", f"session:{session}", "--user", user, "--directory", directory, "--"]
                + [str(a) for a in argv], input=input, timeout=timeout, check=check)


def end_session(session, force=True):
    """End ``session``. If that fails and ``force``, retry with ``--force``; raises on failure."""
    try:
        _run(["--end-session", "--chroot", f"session:{session}"])
    except call.CallError as e:
        if not force:
            raise SchrootError(f"Can't end schroot session {session}: {e}") from e
        LOG.warning("Ending schroot session %s failed, forcing: %s", session, e)
        try:
            _run(["--end-session", "--force", "--chroot", f"session:{session}"])
        except call.CallError as e2:
            if session in list_sessions():
                raise SchrootError(f"Can't end schroot session {session} (even forced): {e2}") from e2
            LOG.warning("Schroot session %s vanished while ending it (ended concurrently).", session)
    LOG.debug("Ended schroot session %s", session)


@contextlib.contextmanager
def session(chroot, source=False):
    """Context manager: a session on ``chroot`` that is ended on exit, whatever happens."""
    sid = begin_session(chroot, source=source)
    try:
        yield sid
    finally:
        end_session(sid)


def end_stale_sessions(chroots):
    """End every session begun from one of ``chroots`` (schroot names: this instance's own
    chroots, e.g. after a crash); return their ids.

    Sessions of any other chroot (another instance on this host, with another schroot prefix)
    are left alone, even when their names share a prefix with ours.
    """
    chroots = set(chroots)
    ended = []
    if not chroots:
        return ended
    for sid in list_sessions():
        if _session_origin(sid) in chroots:
            try:
                end_session(sid)
                ended.append(sid)
            except SchrootError as e:
                LOG.error("Stale session %s: %s", sid, e)
    if ended:
        LOG.warning("Ended %s stale schroot session(s): %s", len(ended), " ".join(ended))
    return ended


_UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _session_origin(sid):
    """The chroot ``sid`` was begun from: schroot's word, else the ``CHROOT-UUID`` id form (or None)."""
    origin = session_chroot(sid)
    if origin is None:
        m = re.fullmatch(r"(.+)-" + _UUID_RE, sid)
        origin = m.group(1) if m else None
    return origin


def end_sessions_of(chroot):
    """End all sessions begun from ``chroot`` (plain or source); return their ids.

    A session belongs to ``chroot`` if schroot says so, or (if its info can't be read) if its
    id is schroot's default ``CHROOT-UUID``.
    """
    ended = []
    for sid in list_sessions():
        origin = session_chroot(sid)
        if origin == chroot or (origin is None and re.fullmatch(re.escape(chroot) + "-" + _UUID_RE, sid)):
            end_session(sid)
            ended.append(sid)
    if ended:
        LOG.info("Ended %s session(s) of %s: %s", len(ended), chroot, " ".join(ended))
    return ended
