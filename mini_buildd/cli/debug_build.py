"""``mini-buildd-debug-build [-s HOOK] [-u USER] [-p EXTRA_PACKAGE]... BUILDREQUEST`` (upstream §6.6):
build one buildrequest again by hand, the way the builder built it, with a shell (or a command)
inside the build's chroot at one of sbuild's hooks.

Owns the command line and the steps of a debug build:

1. run as the instance's user (``-u``; root may switch to it, default: the owner of the home);
2. copy the buildrequest and its tar into a new dir below ``var/shared/debug/`` and unpack it
   there (the build dir the builder used stays as it is);
3. write ``.sbuildrc`` and the setup scripts as :mod:`mini_buildd.pipeline.builder` does, plus
   the debug setup script installing the extra packages (:mod:`mini_buildd.tools.sbuild_debug`);
4. run sbuild (:func:`mini_buildd.tools.sbuild.run`) in the chroot the builder would use (schroot
   or unshare mode, from the configuration), with sbuild's interactive shell at the hook, or with
   ``--hook-command`` a command there (its output is in the build log, printed at the end).

Nothing is signed, uploaded or installed: the result stays in the debug dir (printed at the end)
until removed. piuparts and autopkgtest (they run after every hook) are left out.
"""

import argparse
import logging
import os
import pathlib
import pwd
import shutil
import signal
import sys
import tempfile
import threading

from mini_buildd import __version__, changes, config, errors, webapp
from mini_buildd.changes.names import strip_epoch
from mini_buildd.tools import sbuild, sbuild_debug

LOG = logging.getLogger(__name__)

PROG = "mini-buildd-debug-build"


def parser():
    """The command line parser of mini-buildd-debug-build."""
    p = argparse.ArgumentParser(
        prog=PROG, description="Build a buildrequest of a mini-buildd instance again, with a shell inside the build's chroot "
                               "at an sbuild hook. The build runs in a new dir below the home's var/shared/debug/ and "
                               "changes no repository.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    p.add_argument("-H", "--home", default=None,
                   help="the instance's home (default: the home directory of the user, see -u)")
    p.add_argument("-u", "--user", default=None,
                   help="run as this user, the daemon's (root may switch to it; default: the owner of the home given "
                        "with -H, else the current user)")
    p.add_argument("-s", "--hook", default=sbuild_debug.DEFAULT_HOOK, choices=sbuild_debug.CHROOT_HOOKS,
                   help="the sbuild hook (inside the chroot, as root) to open the shell at (default: %(default)s)")
    p.add_argument("-p", "--extra-package", dest="extra_packages", action="append", default=[], metavar="EXTRA_PACKAGE",
                   help="install this package into the chroot after the build's own setup (e.g. an editor); repeatable")
    p.add_argument("-c", "--hook-command", default=None, metavar="COMMAND",
                   help="run this shell command at the hook instead of an interactive shell (no terminal needed; its "
                        "output is in the build log, which is printed at the end)")
    p.add_argument("-l", "--log-level", default="WARNING", help="log level (default: %(default)s)")
    p.add_argument("buildrequest",
                   help="the buildrequest: its changes file (*_mini-buildd-buildrequest_ARCH.changes) or the build dir "
                        "holding it (var/shared/builds/SOURCE/VERSION/TIMECODE/ARCH)")
    return p


def resolve_user_and_home(user, home):
    """``(user name, home path)`` from the options (see the parser's help)."""
    if home is not None:
        home = pathlib.Path(home).resolve()
        if not home.is_dir():
            raise ValueError(f"No such home dir: {home}")
        user = user or pwd.getpwuid(home.stat().st_uid).pw_name
    else:
        user = user or pwd.getpwuid(os.geteuid()).pw_name
        home = pathlib.Path(_passwd(user).pw_dir)
    _passwd(user)
    return user, home


def _passwd(user):
    try:
        return pwd.getpwnam(user)
    except KeyError:
        raise ValueError(f"No such user: {user}") from None


def become(user):
    """Run as ``user`` from now on (with its groups); only root may switch."""
    entry = _passwd(user)
    if os.geteuid() == entry.pw_uid:
        return
    if os.geteuid() != 0:
        raise ValueError(f"Only root can run a debug build as user '{user}' (run as that user, or as root with -u)")
    os.initgroups(user, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ.update(USER=user, LOGNAME=user, HOME=entry.pw_dir)
    LOG.info("Running as user %s", user)


def find_buildrequest(given):
    """The buildrequest changes file ``given`` names (a file, or a build dir with exactly one)."""
    path = pathlib.Path(given).resolve()
    if path.is_dir():
        found = sorted(path.glob(f"*_mini-buildd-{changes.BUILDREQUEST}_*.changes"))
        if len(found) != 1:
            raise ValueError(f"Expected one buildrequest in {path}, found {len(found)}")
        return found[0]
    if not path.is_file():
        raise ValueError(f"No such buildrequest: {path}")
    return path


def copy_buildrequest(breq_path, debug_root):
    """A copy of the buildrequest (with its files) in a new dir below ``debug_root``, unpacked there."""
    breq = changes.Buildrequest(breq_path)
    breq.check_files()
    debug_root.mkdir(parents=True, exist_ok=True)
    build_dir = pathlib.Path(tempfile.mkdtemp(prefix=f"{breq.source}_{strip_epoch(breq.version)}_{breq.architecture}.",
                                              dir=debug_root))
    try:
        for path in [breq.path, *breq.file_paths()]:
            shutil.copy2(path, build_dir)
        copy = changes.Buildrequest(build_dir / breq.path.name, timecode=breq.timecode)
        copy.unpack(build_dir)
    except BaseException:
        shutil.rmtree(build_dir, ignore_errors=True)
        raise
    return copy, build_dir


def sbuild_argv(breq, build_dir, args):
    """The sbuild argv and environment of the debug build: the builder's, plus the hook (see the module doc)."""
    from mini_buildd.models import chroot as chroot_model  # pylint: disable=import-outside-toplevel  # Django is set up first
    codename, arch = breq.diststr.codename, breq.architecture
    chroot_mode, chroot, libdir = chroot_model.sbuild_target(codename, arch)
    scripts = sbuild.setup_scripts(breq.sbuild_setup_blocks, breq.config_file("chroot_setup_script"))
    scripts.append(sbuild_debug.setup_script(len(scripts), args.extra_packages))
    paths = sbuild.write_files(build_dir, sbuild.sbuildrc(breq.sbuild_config_blocks, libdir, breq.config_file("sbuildrc_snippet")),
                               scripts)
    hook_script = None
    if args.hook_command is not None:
        hook_script = build_dir / sbuild.SETUP_DIR / sbuild_debug.HOOK_NAME  # copied into the session with the setup scripts
        hook_script.write_text(sbuild_debug.hook_script(args.hook, args.hook_command), encoding="utf-8")
        hook_script.chmod(0o755)
    argv = sbuild.command(
        breq.distribution, arch, chroot, breq.dsc_name(), chroot_mode=chroot_mode,
        build_dep_resolver=breq.build_dep_resolver, setup_scripts=paths, arch_all=breq.arch_all,
        add_depends=breq.add_depends, lintian_mode=breq.lintian_mode, lintian_options=breq.lintian_extra_options,
        lintian_warnfail_options=breq.lintian_warnfail_options, debug="sbuild" in config.runtime.debug)
    argv = sbuild_debug.with_options(argv, [sbuild_debug.hook_option(args.hook, hook_script)])
    return argv, sbuild.environment(build_dir, None, breq.deb_build_options, breq.deb_build_profiles)


def _cancel_on_signals():
    """An event set by SIGINT/SIGTERM: :func:`mini_buildd.tools.sbuild.run` then stops sbuild cleanly."""
    event = threading.Event()

    def handler(signum, _frame):
        LOG.warning("Signal %s: stopping the build", signum)
        event.set()
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return event


def debug_build(args):
    """Do the debug build of ``args`` (as parsed); return sbuild's exit code."""
    user, home = resolve_user_and_home(args.user, args.home)
    breq_path = find_buildrequest(args.buildrequest)
    if args.hook_command is None and not (sys.stdin.isatty() and os.path.exists("/dev/tty")):
        raise ValueError("An interactive shell needs a terminal: run on one, or give --hook-command")
    sbuild_debug.setup_script(0, args.extra_packages)  # (checks the names before anything is made)
    if args.hook_command is not None:
        sbuild_debug.hook_script(args.hook, args.hook_command)
    become(user)
    paths = config.init(home)
    if not paths.config_db.is_file():
        raise ValueError(f"Not a mini-buildd home (no {paths.config_db.name}): {home}")
    webapp.setup(paths)
    breq, build_dir = copy_buildrequest(breq_path, paths.debug)
    print(f"{PROG}: {breq.bkey} in {build_dir} (hook {args.hook})", file=sys.stderr)
    try:
        argv, env = sbuild_argv(breq, build_dir, args)
    except BaseException:
        shutil.rmtree(build_dir, ignore_errors=True)  # nothing ran in it yet
        raise
    LOG.info("sbuild: %s", sbuild.shell_command(argv))
    if args.hook_command is None:
        rc = sbuild.run(build_dir, argv, env, None)
    else:
        buildlog = build_dir / breq.buildlog_name
        rc = sbuild.run(build_dir, argv, env, buildlog, cancel_event=_cancel_on_signals())
        sys.stdout.write(buildlog.read_text(encoding="utf-8", errors="replace") if buildlog.exists() else "")
    print(f"{PROG}: sbuild exited with {rc}; the debug build dir is {build_dir} (remove it when done)", file=sys.stderr)
    return rc


def main(argv=None):
    """Command line: one debug build; exit status: sbuild's (2 on errors before it ran)."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format=f"{PROG}: %(levelname)s: %(message)s")
    try:
        rc = debug_build(args)
    except (ValueError, OSError, errors.Error) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
