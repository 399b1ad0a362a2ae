"""``mini-buildd --remove-system-artifacts`` (owns: tests/integration/test_remove_system_artifacts.py).

The real command in a subprocess on a temporary home: no instance, an instance without chroots,
a chroot whose schroot config, fstab and data exist (made by hand under a prefix of its own, so
no other chroot of the host is touched; needs root), a home in use by a daemon, and a removal
that fails. No debootstrap.
"""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import fcntl
import os
import pathlib
import pwd
import subprocess

import pytest

from tests.helpers.daemon import PYTHON, ROOT, in_home

USER = pwd.getpwuid(os.geteuid()).pw_name


def remove_artifacts(home, *extra):
    return subprocess.run([PYTHON, "-m", "mini_buildd", "--home", str(home), "--dedicated-user", USER, *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def make_instance(home, prefix=None, chroot=False):
    """A home with a database (and a Dir chroot bookworm:amd64 in it); return the chroot's schroot name."""
    code = ""
    if prefix:
        code += f"config.set_schroot_prefix({prefix!r})\n"
    if chroot:
        code += ("source = models.Source.objects.create(origin='Debian', codename='bookworm')\n"
                 "arch, _ = models.Architecture.objects.get_or_create(name='amd64')\n"
                 "models.DirChroot.objects.create(source=source, architecture=arch)\n")
    code += "print(config.schroot_name('bookworm', 'amd64'))\n"
    return in_home(home, code).strip().splitlines()[-1]


def test_no_instance(tmp_path):
    home = tmp_path / "home"
    proc = remove_artifacts(home, "--remove-system-artifacts")
    assert proc.returncode == 0, proc.stderr
    assert "no system artifacts to remove" in proc.stdout
    assert not home.exists(), "the option must not create a home"


def test_instance_without_chroots(tmp_path):
    home = tmp_path / "home"
    make_instance(home)
    proc = remove_artifacts(home, "-R")
    assert proc.returncode == 0, proc.stderr
    assert "has no chroots" in proc.stdout
    assert not (home / "var" / "log" / "access.log").exists()


def test_daemon_running_on_home(tmp_path):
    home = tmp_path / "home"
    make_instance(home)
    with open(home / ".mini-buildd.lock", "w", encoding="ascii") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("4242\n")
        lock.flush()
        proc = remove_artifacts(home, "--remove-system-artifacts")
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "in use" in proc.stderr and "4242" in proc.stderr, proc.stderr


def test_not_with_admin_password(tmp_path):
    proc = remove_artifacts(tmp_path / "home", "--remove-system-artifacts", "--set-admin-password-file", "-")
    assert proc.returncode != 0 and "can't be combined" in proc.stderr


@pytest.fixture
def chroot_instance(tmp_path):
    """An instance with one chroot whose schroot config, fstab and data exist; cleaned up in any case."""
    if os.geteuid() != 0:
        pytest.skip("writes below /etc/schroot: needs root")
    from mini_buildd import config  # pylint: disable=import-outside-toplevel
    from mini_buildd.tools import schroot  # pylint: disable=import-outside-toplevel
    home = tmp_path / "home"
    prefix = f"mbdtest-rsa{os.getpid()}"
    name = make_instance(home, prefix=prefix, chroot=True)
    assert name == f"{prefix}-bookworm-amd64"
    paths = config.Paths(home)
    chroot_dir = paths.chroot_dir("bookworm", "amd64")
    (chroot_dir / "source" / "etc").mkdir(parents=True)
    (chroot_dir / "source" / "etc" / "debian_version").write_text("12\n")
    ccache = paths.shared / "ccache-test"
    schroot.install_fstab([ccache], name)
    schroot.install_conf(name, schroot.conf_text(name, "test", ["type=directory", f"directory={chroot_dir / 'source'}", "union-type=overlay"],
                                                 users=(USER,), fstab=schroot.fstab_setup_name(name)))
    system_files = [schroot.conf_path(name), schroot.fstab_path(name)]
    try:
        yield home, name, chroot_dir, system_files
    finally:
        for path in system_files:
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)


def test_removes_chroot(chroot_instance):
    home, name, chroot_dir, system_files = chroot_instance
    proc = remove_artifacts(home, "--remove-system-artifacts")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for path in system_files + [chroot_dir]:
        assert not path.exists(), f"{path} left"
        assert str(path) in proc.stdout, f"{path} not reported: {proc.stdout}"
    assert f"removed chroot {name}" in proc.stdout
    assert "1 chroot(s)" in proc.stdout
    # Twice: nothing left, nothing to do, still 0.
    proc = remove_artifacts(home, "-R")
    assert proc.returncode == 0, proc.stderr
    assert "nothing was left on the system" in proc.stdout


def test_reports_what_is_left(chroot_instance):
    home, name, _chroot_dir, system_files = chroot_instance
    conf = system_files[0]
    conf.unlink()
    conf.mkdir()  # a directory where the config file was: its removal fails
    (conf / "keep").write_text("")
    try:
        proc = remove_artifacts(home, "--remove-system-artifacts")
    finally:
        (conf / "keep").unlink()
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mini-buildd: error: ") and name in lines[0], proc.stderr
    assert pathlib.Path(conf).is_dir()
