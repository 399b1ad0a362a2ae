"""What a debug build (``mini-buildd-debug-build``, upstream §6.6) adds to a builder's sbuild run.

Owns sbuild's external command hooks that run inside the build's chroot (:data:`CHROOT_HOOKS`,
sbuild(1) "EXTERNAL COMMANDS") and the two scripts of a debug build:

- :func:`setup_script`: one more chroot setup script, run after the build's own ones (so the
  build's APT sources are in place): it installs the extra packages asked for;
- :func:`hook_script`: a non-interactive command to run at the hook (tests, scripted checks);
  without one, the hook opens sbuild's interactive shell (``%SBUILD_SHELL``, on ``/dev/tty``).

sbuild runs a hook's command inside the chroot without a shell, split at white space, so a
command is written into a script in the build's ``.setup.d`` (copied into the session with the
setup scripts, see :mod:`mini_buildd.tools.sbuild`) and the hook runs that script's path.
sbuild itself is run by :func:`mini_buildd.tools.sbuild.run` only.
"""

import logging
import re
import shlex
from collections.abc import Iterable, Sequence
from typing import Optional

from mini_buildd.tools import call, sbuild

LOG = logging.getLogger(__name__)

#: sbuild's hooks whose commands run as root inside the build's chroot, in build order (sbuild(1)).
CHROOT_HOOKS = ("chroot-setup", "chroot-update-failed", "build-deps-failed", "starting-build", "build-failed",
                "finished-build", "chroot-cleanup")
#: The hook of a debug build unless another is asked for (upstream's default).
DEFAULT_HOOK = "starting-build"
#: sbuild's escape for an interactive shell on the terminal.
SHELL = "%SBUILD_SHELL"

#: Names (in ``.setup.d``) of the debug build's setup script (after ``NNN_``) and of its hook script.
SETUP_NAME = "debug-build"
HOOK_NAME = "debug-hook"

#: What apt-get install takes as an extra package: ``NAME[:ARCH][=VERSION]``.
_PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]*(?::[a-z0-9-]+)?(?:=[A-Za-z0-9.+~:-]+)?")


def hook_option(hook: str, script: Optional[call.FsPath] = None) -> str:
    """``--HOOK-commands=``: run ``script`` (its absolute path, the same inside the chroot) or,
    without one, an interactive shell."""
    if hook not in CHROOT_HOOKS:
        raise ValueError(f"Unknown sbuild hook '{hook}' (use {'|'.join(CHROOT_HOOKS)})")
    command = SHELL if script is None else str(script).replace("%", "%%")  # sbuild expands %-escapes
    if any(c.isspace() for c in command.replace(SHELL, "")):
        raise ValueError(f"Hook script path must not contain white space (sbuild splits commands): {script}")
    return f"--{hook}-commands={command}"


def with_options(argv: Sequence[str], options: Iterable[str]) -> list[str]:
    """sbuild ``argv`` (from :func:`mini_buildd.tools.sbuild.command`, the DSC last) with ``options`` before the DSC."""
    return [*argv[:-1], *options, argv[-1]]


def setup_script(number: int, packages: Iterable[str]) -> tuple[str, str]:
    """``(file name, text)`` of the debug build's setup script (number ``number``, i.e. after the
    build's own ones): announces the debug build and installs ``packages`` (if any)."""
    names = [p for p in packages if p]
    for name in names:
        if not _PACKAGE_RE.fullmatch(name):
            raise ValueError(f"Not a package name (NAME[:ARCH][=VERSION]): '{name}'")
    words = " ".join(shlex.quote(p) for p in names)
    text = ("#!/bin/sh\nset -e\nexport DEBIAN_FRONTEND=noninteractive\n"
            f'echo "MINI_BUILDD: {SETUP_NAME}: Debug build (extra packages: {words or "none"})"\n')
    if names:
        text += f"{sbuild.APT_GET} install {words}\n"
    return f"{number:03d}_{SETUP_NAME}", text


def hook_script(hook: str, command: str) -> str:
    """The text of the script running shell ``command`` at ``hook`` (its exit status is the script's)."""
    if hook not in CHROOT_HOOKS:
        raise ValueError(f"Unknown sbuild hook '{hook}' (use {'|'.join(CHROOT_HOOKS)})")
    if not command.strip():
        raise ValueError("Empty hook command")
    return (f'#!/bin/sh\necho "MINI_BUILDD: {HOOK_NAME}: running at sbuild hook {hook}"\n'
            f"{command.rstrip()}\n")
