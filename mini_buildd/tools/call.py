"""Running external commands: the one subprocess helper every tool wrapper uses.

Wrappers (gnupg, reprepro, schroot, debootstrap, sbuild, ...) call :func:`run`; nothing else in
the code base starts processes directly. Long-running commands whose output must be readable
while they run (sbuild's build log) use :func:`popen` and, to cancel them, :func:`stop`;
interactive ones (a debug build's shell) :func:`foreground`.
"""

import logging
import os
import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import IO, Any, Optional, Union, cast

from mini_buildd import errors

LOG = logging.getLogger(__name__)

#: A file system path.
FsPath = Union[str, os.PathLike[str]]
#: One command line argument (made a string with ``str()``).
Arg = Union[str, os.PathLike[str], int]
#: A command line.
Argv = Sequence[Arg]
#: Environment entries added to the current environment (values made strings).
Env = Optional[Mapping[str, object]]

#: Raised by ``Popen.wait(timeout=...)`` of a :func:`popen` process.
TimeoutExpired = subprocess.TimeoutExpired


class CallError(errors.ToolError):
    """A command failed; carries the command line, exit code and its output."""

    def __init__(self, argv: Argv, returncode: int, output: Optional[str]) -> None:
        self.argv = [str(a) for a in argv]
        self.returncode = returncode
        self.output = output or ""
        tail = "\n".join(self.output.strip().splitlines()[-15:])
        super().__init__(f"Command failed (exit {returncode}): {shlex.join(str(a) for a in self.argv)}" + (f"\n{tail}" if tail else ""))


def _full_env(env: Env) -> dict[str, str]:
    full_env = dict(os.environ)
    if env:
        full_env.update({k: str(v) for k, v in env.items()})
    return full_env


def run(argv: Argv, *, input: Union[str, bytes, None] = None, env: Env = None,  # pylint: disable=redefined-builtin
        cwd: Optional[FsPath] = None, timeout: Optional[float] = None, check: bool = True,
        stdout: Optional[IO[bytes]] = None, log_level: int = logging.DEBUG) -> str:
    """Run ``argv``; return its combined stdout/stderr as text (or ``stdout`` file if given).

    ``env`` entries are added to the current environment. Raises :class:`CallError` on a
    non-zero exit when ``check`` is true, and on a missing program.
    """
    full_env = _full_env(env)
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


def ok(argv: Argv, **kwargs: Any) -> bool:
    """Return True if ``argv`` exits 0 (output discarded)."""
    try:
        run(argv, **kwargs)
        return True
    except CallError:
        return False


def popen(argv: Argv, *, output: Union[FsPath, IO[bytes]], env: Env = None, cwd: Optional[FsPath] = None, new_session: bool = True,
          log_level: int = logging.DEBUG) -> "subprocess.Popen[bytes]":
    """Start ``argv`` in the background; return its ``subprocess.Popen``.

    stdout and stderr go, combined and unbuffered by us, straight into ``output``: a path (created
    or truncated) or an open binary file. So the output can be read (served) while the command
    runs. stdin is ``/dev/null``. ``env`` entries are added to the current environment. With
    ``new_session`` the command gets its own session and process group, so :func:`stop` can
    kill it with all its children. Raises :class:`CallError` on a missing program. The caller
    must ``wait()`` for the process (or :func:`stop` it).
    """
    LOG.log(log_level, "Starting: %s", shlex.join(str(a) for a in argv))
    own_file = not hasattr(output, "fileno")
    out = open(cast(FsPath, output), "wb") if own_file else cast(IO[bytes], output)  # pylint: disable=consider-using-with
    try:
        return subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
                                env=_full_env(env), cwd=cwd, start_new_session=new_session)
    except FileNotFoundError as e:
        raise CallError(argv, 127, str(e)) from e
    finally:
        if own_file:
            out.close()  # the child has its own copy of the descriptor


def foreground(argv: Argv, *, env: Env = None, cwd: Optional[FsPath] = None) -> int:
    """Run ``argv`` to its end with our stdin, stdout, stderr and terminal (an interactive command:
    a shell it opens on ``/dev/tty`` works); return its exit code (negative: killed by signal)."""
    LOG.info("Running in the foreground: %s", shlex.join(str(a) for a in argv))
    try:
        proc = subprocess.Popen([str(a) for a in argv], env=_full_env(env), cwd=cwd)  # pylint: disable=consider-using-with
    except FileNotFoundError as e:
        raise CallError(argv, 127, str(e)) from e
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # the terminal's SIGINT reached the command too: it ends (and cleans up) itself
            LOG.warning("Interrupted: waiting for %s to end", argv[0])


def _children() -> dict[int, list[int]]:
    """``{ppid: [pid, ...]}`` of all processes (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    """PIDs of all processes below ``pid`` (children, grandchildren, ...), from /proc."""
    children, todo = _children(), [pid]
    result: list[int] = []
    while todo:
        for child in children.get(todo.pop(), []):
            result.append(child)
            todo.append(child)
    return result


def cmdline(pid: int) -> list[str]:
    """The argv of process ``pid`` (``[]`` if it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def stop(proc: "subprocess.Popen[bytes]", grace: float = 6.0) -> list[list[str]]:
    """Stop a :func:`popen` process: SIGTERM to it; if it still runs after ``grace`` seconds,
    SIGKILL to its process group and to all its descendants (also those that made their own
    session). Waits for it. Returns ``[]`` if it ended on SIGTERM, else the argvs of the killed
    processes (it and its descendants, as they were just before the kill), so the caller can
    clean up after them."""
    if proc.poll() is not None:
        return []
    proc.terminate()
    try:
        proc.wait(timeout=grace)
        return []
    except subprocess.TimeoutExpired:
        pass
    LOG.warning("Process %s did not stop within %ss after SIGTERM: killing it and its descendants", proc.pid, grace)
    pids = [proc.pid] + descendants(proc.pid)
    argvs = [cmdline(pid) for pid in pids]
    try:
        os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait()
    return [a for a in argvs if a]
