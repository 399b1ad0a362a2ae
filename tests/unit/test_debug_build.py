"""Unit tests of mini-buildd-debug-build's parts (owns: tests/unit/test_debug_build.py): the sbuild
hook options and debug scripts (mini_buildd.tools.sbuild_debug), sbuild.run on the terminal, and
the command line's checks that need no instance (mini_buildd.cli.debug_build). The real debug
build is tests/e2e/test_debug_build.py."""

import os
import pathlib
import shutil
import subprocess

import pytest

from mini_buildd.cli import debug_build
from mini_buildd.tools import sbuild, sbuild_debug


def test_hook_options():
    assert sbuild_debug.hook_option("starting-build") == "--starting-build-commands=%SBUILD_SHELL"
    assert sbuild_debug.hook_option("chroot-cleanup", "/h/d/.setup.d/debug-hook") == "--chroot-cleanup-commands=/h/d/.setup.d/debug-hook"
    assert sbuild_debug.hook_option("build-failed", "/h/50%/x") == "--build-failed-commands=/h/50%%/x"
    assert sbuild_debug.DEFAULT_HOOK in sbuild_debug.CHROOT_HOOKS and len(sbuild_debug.CHROOT_HOOKS) == 7
    with pytest.raises(ValueError, match="Unknown sbuild hook 'post-build'"):
        sbuild_debug.hook_option("post-build")  # runs outside the chroot
    with pytest.raises(ValueError, match="white space"):
        sbuild_debug.hook_option("starting-build", "/h/a b/x")


def test_options_go_before_the_dsc():
    argv = sbuild.command("d", "amd64", "c", "p_1.0.dsc", sbuild_version=(0, 85, 0))
    result = sbuild_debug.with_options(argv, ["--starting-build-commands=%SBUILD_SHELL"])
    assert result[-1] == "p_1.0.dsc" and result[-2] == "--starting-build-commands=%SBUILD_SHELL"
    assert result[:-2] == argv[:-1]


def _shellcheck(tmp_path, text):
    executable = shutil.which("shellcheck")
    assert executable, "shellcheck is not installed"
    path = tmp_path / "script"
    path.write_text(text)
    proc = subprocess.run([executable, "--shell=sh", "--severity=style", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout


def test_scripts(tmp_path):
    name, text = sbuild_debug.setup_script(4, ["hello", "gdb:amd64", "vim=2:9.0"])
    assert name == "004_debug-build"
    assert f"{sbuild.APT_GET} install hello gdb:amd64 vim=2:9.0\n" in text
    assert "MINI_BUILDD: debug-build: Debug build (extra packages: hello gdb:amd64 vim=2:9.0)" in text
    _shellcheck(tmp_path, text)
    name, text = sbuild_debug.setup_script(0, [])
    assert name == "000_debug-build" and "install" not in text and "(extra packages: none)" in text
    _shellcheck(tmp_path, text)
    for bad in ("a;b", "$(x)", "-o", "A"):
        with pytest.raises(ValueError, match="Not a package name"):
            sbuild_debug.setup_script(0, [bad])
    text = sbuild_debug.hook_script("finished-build", "echo one; ls /build")
    assert text.endswith("echo one; ls /build\n") and "at sbuild hook finished-build" in text
    _shellcheck(tmp_path, text)
    with pytest.raises(ValueError, match="Empty hook command"):
        sbuild_debug.hook_script("finished-build", " ")


def test_sbuild_run_on_the_terminal(tmp_path):
    """Without a build log, sbuild.run runs the command in the foreground (our stdio), HOME = build dir."""
    if os.geteuid() != 0:
        pytest.skip("sbuild.run checks the user may run sbuild (root, or group sbuild)")
    rc = sbuild.run(tmp_path, ["/bin/sh", "-c", 'echo "$HOME" >out; exit 3'], {"X": "1"}, None)
    assert rc == 3
    assert (tmp_path / "out").read_text().strip() == str(tmp_path.resolve())


def test_command_line_checks(tmp_path, capsys):
    assert debug_build.parser().parse_args(["x"]).hook == "starting-build"
    assert debug_build.main(["-c", "true", "-H", str(tmp_path), str(tmp_path / "nothing.changes")]) == 2
    assert "No such buildrequest" in capsys.readouterr().err
    assert debug_build.main(["-c", "true", "-H", str(tmp_path), str(tmp_path)]) == 2
    assert "Expected one buildrequest in" in capsys.readouterr().err
    assert debug_build.main(["-c", "true", "-H", str(tmp_path / "no-home"), str(tmp_path)]) == 2
    assert "No such home dir" in capsys.readouterr().err
    user, home = debug_build.resolve_user_and_home(None, tmp_path)
    assert home == pathlib.Path(tmp_path).resolve() and user == debug_build.pwd.getpwuid(tmp_path.stat().st_uid).pw_name
    with pytest.raises(ValueError, match="No such user"):
        debug_build.resolve_user_and_home("no-such-user-here", tmp_path)
