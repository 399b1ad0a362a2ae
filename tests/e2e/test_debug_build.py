"""``mini-buildd-debug-build`` against the shared instance (owns: tests/e2e/test_debug_build.py;
issue #15 Daemon and tools, upstream §6.6).

``mbd-e2e-hello`` is built through the daemon first (the shared ``hello`` fixture: dput, INSTALLED).
Then its buildrequest, from the build dir the builder kept, is built again with the tool, run as
the daemon's unprivileged user like an admin would (``sudo -u mini-buildd``), non-interactively:
``-p hello`` and ``--hook-command`` at the default hook (starting-build). The build log proves the
command ran inside the build's chroot at that point (after the build dependencies, before
dpkg-buildpackage; the unpacked source and the extra package are there, the host has neither),
and that the build itself went on. Nothing of the instance changes: repositories (reprepro ls and
every file), events, the daemon's own build dir; no schroot session is left. The tool's refusals
(no terminal for a shell, switching user without root, no buildrequest, bad extra package or
hook command) cost no build and leave no debug dir; root with ``-u`` builds as that user.
"""

# pylint: disable=redefined-outer-name  # pytest passes each fixture as the parameter of its name

import os
import pathlib
import pty
import select
import shutil
import subprocess
import time

from mini_buildd import config
from mini_buildd.tools import schroot
from tests.helpers.daemon import PYTHON, ROOT, as_user
from tests.helpers.packages import tree_digest
from tests.helpers.shared_packages import HELLO, HELLO_VERSION
from tests.helpers.uploads import reprepro_ls

#: Shell command run at the hook: inside the chroot it sees the unpacked source and the extra package.
HOOK_COMMAND = ("echo DEBUG-HOOK-RAN; ls -d /build/*/" + HELLO + "-*/debian && echo DEBUG-HOOK-SOURCE-THERE; "
                "dpkg-query -W -f='DEBUG-HOOK-PKG ${Package} ${Status}\\n' hello debhelper")


def _tool(instance, *args, timeout=1800):
    """Run mini-buildd-debug-build as the instance's user (stdin not a terminal); CompletedProcess."""
    argv, cwd = as_user([PYTHON, "-m", "mini_buildd.cli.debug_build", *map(str, args)], instance.unpriv, instance.home)
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)


def _build_dir_of_hello(instance):
    dirs = sorted(config.Paths(instance.home).builds.glob(f"{HELLO}/{HELLO_VERSION}/*/amd64"))
    assert len(dirs) == 1, dirs
    return dirs[0]


def _chroot_sessions(instance):
    """Sessions of the shared instance's chroot."""
    name = f"{config.read_schroot_prefix(config.Paths(instance.home))}-bookworm-amd64"
    return [s for s in schroot.list_sessions() if name in s]


def test_refusals(instance, hello, tmp_path):
    """Wrong uses end before any build (exit 2, one line saying why), and leave no debug dir."""
    assert hello.event["type"] == "INSTALLED", hello.event
    debug_root = config.Paths(instance.home).debug
    before = sorted(debug_root.iterdir()) if debug_root.exists() else []
    breq_dir = _build_dir_of_hello(instance)
    cases = (
        ((breq_dir,), "An interactive shell needs a terminal"),
        (("-u", "root", "-c", "true", breq_dir), "Only root can run a debug build as user 'root'"),
        (("-c", "true", breq_dir.parent), "Expected one buildrequest in"),
        (("-c", "true", "-p", "bad;name", breq_dir), "Not a package name"),
        (("-c", " ", breq_dir), "Empty hook command"),
    )
    for args, message in cases:
        proc = _tool(instance, "-H", instance.home, *args, timeout=120)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
    # root switches to the user (-u) before it reads the buildrequest: a copy only root may read is refused
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    breq = next(breq_dir.glob("*_mini-buildd-buildrequest_amd64.changes"))
    shutil.copy(breq, private / breq.name)
    proc = subprocess.run([PYTHON, "-m", "mini_buildd.cli.debug_build", "-u", instance.unpriv.user, "-H", str(instance.home),
                           "-c", "true", str(private / breq.name)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "Permission denied" in proc.stderr, (proc.stdout, proc.stderr)
    assert (sorted(debug_root.iterdir()) if debug_root.exists() else []) == before


def test_debug_build_with_hook_command(instance, hello):
    """The hook command runs inside the build's chroot at starting-build, with the extra package
    installed; the rebuild succeeds in its debug dir and the instance is unchanged."""
    assert hello.event["type"] == "INSTALLED", hello.event
    home = pathlib.Path(instance.home)
    paths = config.Paths(home)
    build_dir = _build_dir_of_hello(instance)
    breq = next(build_dir.glob("*_mini-buildd-buildrequest_amd64.changes"))
    listing = reprepro_ls(instance, HELLO)
    repos, events, build = tree_digest(paths.repositories), tree_digest(paths.events), tree_digest(build_dir)
    debug_before = set(paths.debug.iterdir()) if paths.debug.exists() else set()
    assert not pathlib.Path("/build").exists() or not list(pathlib.Path("/build").glob(f"*/{HELLO}-*")), "host has the marker"
    assert subprocess.run(["dpkg-query", "-W", "-f=${Status}", "hello"], capture_output=True, text=True,
                          check=False).stdout.strip() != "install ok installed", "the host must not have package hello"

    started = time.monotonic()
    proc = _tool(instance, "-H", home, "-p", "hello", "--hook-command", HOOK_COMMAND, breq)
    print(f"debug build took {time.monotonic() - started:.0f}s")
    new = set(paths.debug.iterdir()) - debug_before
    try:
        log = proc.stdout
        assert proc.returncode == 0, proc.stderr[-3000:] + log[-6000:]
        assert len(new) == 1, new
        debug_dir = new.pop()
        assert f"the debug build dir is {debug_dir}" in proc.stderr
        assert debug_dir.name.startswith(f"{HELLO}_{HELLO_VERSION}_amd64.")
        # the hook ran once, at starting-build: after the build dependencies, before dpkg-buildpackage
        assert log.count("DEBUG-HOOK-RAN") == 1, log[-6000:]
        hook_section = log.index("Starting Timed Build Commands")
        ran = log.index("\nDEBUG-HOOK-RAN")
        assert log.index("Install package build dependencies") < hook_section < ran < log.index("dpkg-buildpackage", ran), log[-8000:]
        assert "MINI_BUILDD: debug-hook: running at sbuild hook starting-build" in log
        # inside the build's chroot: the unpacked source, the extra package and the build dependencies
        assert "DEBUG-HOOK-SOURCE-THERE" in log, log[ran - 200:ran + 2000]
        assert "DEBUG-HOOK-PKG hello install ok installed" in log, log[ran - 200:ran + 2000]
        assert "DEBUG-HOOK-PKG debhelper install ok installed" in log
        assert "MINI_BUILDD: debug-build: Debug build (extra packages: hello)" in log
        # the builder's own setup ran (same scripts as the daemon's build), and the build went on
        for block in ("apt-setup", "apt-update"):
            assert f"MINI_BUILDD: {block}: " in log
        assert "Status: successful" in log, log[-3000:]
        assert (debug_dir / f"{HELLO}_{HELLO_VERSION}_all.deb").is_file()
        assert (debug_dir / f"{HELLO}_{HELLO_VERSION}_amd64.buildlog").read_text(errors="replace") == log
        # nothing of the instance changed
        assert reprepro_ls(instance, HELLO) == listing
        assert tree_digest(paths.repositories) == repos
        assert tree_digest(paths.events) == events
        assert tree_digest(build_dir) == build
        assert not _chroot_sessions(instance)
    finally:
        for path in new:
            shutil.rmtree(path, ignore_errors=True)


def _run_on_terminal(argv, cwd, answers, timeout=1800):
    """Run ``argv`` on a new pseudo terminal; when its output shows a key of ``answers``, type the
    value (once each). Returns (exit status, all output)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: on the terminal
        try:
            os.chdir(cwd)
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)  # pylint: disable=protected-access  # only if exec failed
    output, pending, deadline = b"", dict(answers), time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            output += chunk
            for key in [k for k in pending if k.encode() in output]:
                os.write(fd, pending.pop(key).encode())
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_debug_build_interactive_shell(instance, hello):
    """Without --hook-command, sbuild's shell opens on the terminal (here at chroot-setup, the
    earliest hook): what is typed there runs, and after ``exit`` the build goes on."""
    assert hello.event["type"] == "INSTALLED", hello.event
    paths = config.Paths(instance.home)
    debug_before = set(paths.debug.iterdir()) if paths.debug.exists() else set()
    argv, cwd = as_user([PYTHON, "-m", "mini_buildd.cli.debug_build", "-H", str(instance.home), "-s", "chroot-setup",
                         str(_build_dir_of_hello(instance))], instance.unpriv, instance.home)
    started = time.monotonic()
    # (the shell's output: 42 only if the shell computed it; the terminal echoes what is typed)
    code, output = _run_on_terminal(argv, cwd, {"bash -i </dev/tty": "echo SHELL-SAYS-$((6*7)); exit\n"})
    print(f"interactive debug build took {time.monotonic() - started:.0f}s")
    new = set(paths.debug.iterdir()) - debug_before
    try:
        assert code == 0, output[-5000:]
        assert "SHELL-SAYS-42" in output, output[-5000:]
        assert "Status: successful" in output, output[-3000:]
        assert not _chroot_sessions(instance)
    finally:
        for path in new:
            shutil.rmtree(path, ignore_errors=True)
