"""Running external commands: the one subprocess helper every tool wrapper uses.

Wrappers (gnupg, reprepro, schroot, debootstrap, sbuild, ...) call :func:`run`; nothing else in
the code base starts processes directly.
"""

import logging
import os
import shlex
import subprocess

LOG = logging.getLogger(__name__)


class CallError(Exception):
    """A command failed; carries the command line, exit code and its output."""

    def __init__(self, argv, returncode, output):
        self.argv = [str(a) for a in argv]
        self.returncode = returncode
        self.output = output or ""
        tail = "\n".join(self.output.strip().splitlines()[-15:])
        super().__init__(f"Command failed (exit {returncode}): {shlex.join(str(a) for a in self.argv)}" + (f"\n{tail}" if tail else ""))


def run(argv, *, input=None, env=None, cwd=None, timeout=None, check=True, stdout=None, log_level=logging.DEBUG):
    """Run ``argv``; return its combined stdout/stderr as text (or ``stdout`` file if given).

    ``env`` entries are added to the current environment. Raises :class:`CallError` on a
    non-zero exit when ``check`` is true, and on a missing program.
    """
    full_env = dict(os.environ)
    if env:
        full_env.update({k: str(v) for k, v in env.items()})
    LOG.log(log_level, "Calling: %s", shlex.join(str(a) for a in argv))
    try:
        proc = subprocess.run([str(a) for a in argv],
                              input=input.encode() if isinstance(input, str) else input,
                              stdout=stdout if stdout is not None else subprocess.PIPE,
                              stderr=subprocess.STDOUT,
                              env=full_env, cwd=cwd, timeout=timeout, check=False)
    except FileNotFoundError as e:
        raise CallError(argv, 127, str(e)) from e
    except subprocess.TimeoutExpired as e:
        raise CallError(argv, -1, f"timed out after {timeout}s: {e.output or ''}") from e
    output = proc.stdout.decode(errors="replace") if proc.stdout is not None else ""
    if check and proc.returncode != 0:
        raise CallError(argv, proc.returncode, output)
    return output


def ok(argv, **kwargs):
    """Return True if ``argv`` exits 0 (output discarded)."""
    try:
        run(argv, **kwargs)
        return True
    except CallError:
        return False
