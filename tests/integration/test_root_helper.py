"""The root helper as the package uses it: an unprivileged daemon user calls it through sudo.

First the attacks a compromised or confused daemon user (or a hostile name reaching it) could
try through the helper, each refused with nothing changed; then the real thing: the user makes
a chroot (cached debootstrap tarball), opens a schroot session in it and removes it, all
through ``sudo -n`` and the helper, and nothing is left.
"""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import os
import pathlib
import subprocess
import uuid

import pytest

from mini_buildd import config
from mini_buildd.tools import schroot_files
from tests.helpers import host_archive
from tests.helpers.unprivileged import PYTHON, UnprivilegedUser

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (creates a user, a sudoers rule, chroots)")

CODENAME = "bookworm"


@pytest.fixture(scope="module")
def unpriv():
    with UnprivilegedUser() as u:
        yield u


@pytest.fixture
def home(unpriv):
    """An instance home of the unprivileged user (with var/shared/libdir and var/tmp); its chroot data removed after."""
    h = unpriv.make_home()
    subprocess.run(unpriv.command(["mkdir", "-p", h / "var" / "shared" / "libdir", h / "var" / "tmp"]), check=True)
    yield h
    subprocess.run(unpriv.command([PYTHON, "-c", "import sys; from mini_buildd.tools import privileged; "
                                   f"privileged.remove_data({str(h / 'var' / 'chroots' / CODENAME / 'amd64')!r})"]), check=False)


def helper(unpriv, *args, stdin=None):
    """Run the helper through sudo as the user; (exit code, output)."""
    proc = subprocess.run(unpriv.command(["sudo", "-n", unpriv.helper, *[str(a) for a in args]]),
                          input=stdin, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def conf(name, home, **overrides):
    """A schroot config text of chroot ``name`` below ``home`` as the helper accepts it (``overrides`` changed)."""
    values = {"directory": f"{home}/var/chroots/{CODENAME}/amd64/source", "users": "mbd-test", "root-users": "mbd-test",
              "source-root-users": "mbd-test", "groups": "sbuild", "root-groups": "sbuild",
              "setup.fstab": f"mini-buildd/fstab-{name}", "type": "directory", "union-type": "overlay"}
    values.update(overrides)
    return f"[{name}]\n" + "".join(f"{k}={v}\n" for k, v in values.items())


def test_refuses_a_home_of_someone_else(unpriv, tmp_path):
    other = tmp_path / "root-home"
    (other / "var").mkdir(parents=True)
    os.chmod(tmp_path, 0o755)
    code, out = helper(unpriv, "make-dir", "--home", other, "--codename", CODENAME, "--arch", "amd64")
    assert code == 1 and "is not owned by user 'mbd-test'" in out
    assert not (other / "var" / "chroots").exists()


@pytest.mark.parametrize("codename", ["../../../etc", "a/b", "", "-x"])
def test_refuses_names_that_are_paths(unpriv, home, codename):
    code, out = helper(unpriv, "make-dir", "--home", home, "--codename", codename, "--arch", "amd64")
    assert code != 0 and ("Bad codename" in out or "usage" in out)


@pytest.mark.parametrize("before", ["absent", "the user's"])
def test_chroots_dir_becomes_root_owned(unpriv, home, before):
    if before == "the user's":  # as a daemon before the root helper made it
        subprocess.run(unpriv.command(["mkdir", "-m", "0700", home / "var" / "chroots"]), check=True)
    code, out = helper(unpriv, "make-dir", "--home", home, "--codename", CODENAME, "--arch", "amd64")
    assert code == 0, out
    assert (home / "var" / "chroots").stat().st_uid == 0
    assert (home / "var" / "chroots" / CODENAME / "amd64").stat().st_uid == 0
    assert (home / "var" / "chroots").stat().st_mode & 0o777 == 0o755


def test_refuses_a_chroots_dir_that_is_a_symlink(unpriv, home, tmp_path):
    """The user points var/chroots at a file of root's: nothing of it is taken over or changed."""
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    subprocess.run(unpriv.command(["ln", "-s", victim, home / "var" / "chroots"]), check=True)
    code, out = helper(unpriv, "make-dir", "--home", home, "--codename", CODENAME, "--arch", "amd64")
    assert code == 1 and "is not a plain directory" in out, out
    assert victim.stat().st_mode & 0o777 == 0o700 and not list(victim.iterdir())
    (home / "var" / "chroots").unlink()


@pytest.mark.parametrize("overrides, why", [
    ({"root-users": "mbd-test,root"}, "root-users may only name user 'mbd-test'"),
    ({"users": "nobody"}, "users may only name user 'mbd-test'"),
    ({"groups": "sbuild,root"}, "groups may only name group sbuild"),
    ({"directory": "/"}, "is not below"),
    ({"directory": "/var/lib/mini-buildd/var/chroots/bookworm/amd64/source"}, "is not below"),
    ({"setup.fstab": "default/fstab"}, "setup.fstab must be"),
    ({"command-prefix": "/bin/sh"}, "keys not allowed"),
    ({"type": "plain"}, "type must be"),
])
def test_refuses_hostile_schroot_configs(unpriv, home, overrides, why):
    name = f"mbd-attack-{uuid.uuid4().hex[:8]}"
    code, out = helper(unpriv, "install-conf", "--home", home, "--name", name, stdin=conf(name, home, **overrides))
    assert code == 1 and why in out, out
    assert not schroot_files.conf_path(name).exists()


def test_refuses_to_touch_another_instances_conf(unpriv, home, tmp_path):
    name = f"mbd-other-{uuid.uuid4().hex[:8]}"
    path = schroot_files.conf_path(name)
    path.write_text(conf(name, tmp_path / "other-home", users="root", **{"root-users": "root"}), encoding="utf-8")
    assert helper(unpriv, "make-dir", "--home", home, "--codename", CODENAME, "--arch", "amd64")[0] == 0
    try:
        for op in (["remove-conf"], ["install-conf"]):
            code, out = helper(unpriv, *op, "--home", home, "--name", name, stdin=conf(name, home))
            assert code == 1 and "not one of this instance's chroots" in out, out
            assert "users=root" in path.read_text(encoding="utf-8")
    finally:
        path.unlink()


def test_refuses_fstab_binds_outside_the_home(unpriv, home):
    name = f"mbd-attack-{uuid.uuid4().hex[:8]}"
    for bind in ("/etc", "/root", str(home / ".." / "..")):
        code, out = helper(unpriv, "install-fstab", "--home", home, "--name", name, f"--bind={bind}")
        assert code == 1 and ("is not below the instance home" in out or "not owned" in out), out
    assert not schroot_files.fstab_path(name).exists()


@pytest.mark.parametrize("extra, why", [
    (["--option=--make-tarball=/etc/evil.tgz"], "not allowed"),
    (["--option=--cache-dir=/etc"], "not allowed"),
    (["--option=--keyring=/etc/shadow"], "not allowed"),
    (["--command=/bin/sh"], "not allowed"),
    (["--archive=http://x/ --unpack-tarball=/etc"], "Bad archive URL"),
])
def test_refuses_hostile_debootstrap_arguments(unpriv, home, extra, why):
    assert helper(unpriv, "make-dir", "--home", home, "--codename", CODENAME, "--arch", "amd64")[0] == 0
    args = ["populate", "--home", home, "--codename", CODENAME, "--arch", "amd64", "--subdir", "source"]
    if not any(e.startswith("--archive") for e in extra):
        args.append("--archive=http://127.0.0.1:9/debian")
    code, out = helper(unpriv, *args, *extra)
    assert code == 1 and why in out, out
    assert not (home / "var" / "chroots" / CODENAME / "amd64" / "source").exists()


def test_refuses_a_base_tarball_of_the_user(unpriv, home):
    evil = home / "evil.tar"
    subprocess.run(unpriv.command(["tar", "-cf", evil, "-C", home, "var"]), check=True)
    assert helper(unpriv, "make-dir", "--home", home, "--codename", CODENAME, "--arch", "amd64")[0] == 0
    code, out = helper(unpriv, "populate", "--home", home, "--codename", CODENAME, "--arch", "amd64", "--subdir", "source",
                       "--archive=http://127.0.0.1:9/debian", f"--base-tarball={evil}")
    assert code == 1 and "is not a cached debootstrap tarball" in out, out


@pytest.mark.parametrize("package", ["-oDir::Etc=/tmp", "../../etc/passwd", "a b", "--allow-unauthenticated"])
def test_refuses_hostile_package_names_for_the_cached_tarball(unpriv, package):
    """Names to install into a cached tarball reach apt-get as root: no option, no path, no blank."""
    before = sorted(config.CACHE_DIR.iterdir()) if config.CACHE_DIR.is_dir() else []
    code, out = helper(unpriv, "cache-tarball", "--codename", CODENAME, "--arch", "amd64", "--archive=http://127.0.0.1:9/debian",
                       f"--include={package}")
    assert code == 1 and "Bad package name" in out, out
    assert (sorted(config.CACHE_DIR.iterdir()) if config.CACHE_DIR.is_dir() else []) == before


@pytest.mark.parametrize("line", ["deb [trusted=yes] http://127.0.0.1:9/debian bookworm main",
                                  "deb http://127.0.0.1:9/debian bookworm main\ndeb [trusted=yes] http://127.0.0.1:9/evil bookworm main",
                                  "deb http://127.0.0.1:9/debian -oDir::Etc=/tmp main"])
def test_refuses_hostile_apt_lines_for_the_cached_tarball(unpriv, line):
    """Sources a cached tarball is upgraded from reach apt as root: one plain line each, no trusted=yes, no option."""
    before = sorted(config.CACHE_DIR.iterdir()) if config.CACHE_DIR.is_dir() else []
    code, out = helper(unpriv, "cache-tarball", "--codename", CODENAME, "--arch", "amd64", "--archive=http://127.0.0.1:9/debian",
                       "--include=fakeroot", f"--apt-line={line}")
    assert code == 1 and "Bad apt line" in out, out
    assert (sorted(config.CACHE_DIR.iterdir()) if config.CACHE_DIR.is_dir() else []) == before


def test_without_the_sudoers_rule_the_error_says_so(unpriv, home):
    proc = subprocess.run(unpriv.command([PYTHON, "-c", "from mini_buildd.tools import privileged\n"
                                          f"privileged.make_chroot_dir({str(home / 'var' / 'chroots' / CODENAME / 'amd64')!r})"],
                                         extra_env=["MINI_BUILDD_CHROOT_HELPER=/usr/bin/id"]),
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert "sudo refused to run /usr/bin/id" in proc.stderr and "mini-buildd-sudoers" in proc.stderr


def test_unprivileged_user_makes_uses_and_removes_a_chroot(unpriv, home):
    """What the packaged daemon does: prepare (cached tarball with the build tools), a session as the user, remove."""
    name = f"mini-buildd-{CODENAME}-amd64-unpriv-{uuid.uuid4().hex[:8]}"
    chroot_dir = home / "var" / "chroots" / CODENAME / "amd64"
    code = f"""
import pathlib
from mini_buildd.tools import chroot_backends, schroot, sbuild
tarball = chroot_backends.cached_debootstrap_tarball({CODENAME!r}, "amd64", {host_archive.archive_url(CODENAME)!r},
                                                     {str(host_archive.keyring_path())!r},
                                                     include=sbuild.chroot_preinstall_packages("aptitude"))
args = dict(name={name!r}, codename={CODENAME!r}, arch="amd64", chroot_dir=pathlib.Path({str(chroot_dir)!r}),
            archive_url="http://127.0.0.1:9/unused", users=("mbd-test",), groups=("sbuild",),
            base_tarball=tarball, shared_dir=pathlib.Path({str(home / 'var' / 'shared')!r}))
chroot_backends.prepare("Dir", **args)
with schroot.session({name!r}) as sid:
    print("ID", schroot.run_in_session(sid, ["id", "-un"]).strip())
    print("USER", schroot.run_in_session(sid, ["id", "-un"], user="mbd-test").strip())
    print("TOOLS", schroot.run_in_session(sid, ["dpkg-query", "--showformat=${{Status}} ", "--show", "lintian", "aptitude"]))
chroot_backends.remove("Dir", **args)
print("DONE")
"""
    proc = subprocess.run(unpriv.command([PYTHON, "-c", code], home=home), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ID root\n" in proc.stdout and "USER mbd-test\n" in proc.stdout and "DONE" in proc.stdout
    assert "TOOLS install ok installed install ok installed \n" in proc.stdout, proc.stdout  # from the cached tarball
    assert not config.schroot_conf(name).exists()
    assert not schroot_files.fstab_path(name).exists()
    assert not chroot_dir.exists()
    assert not [line for line in pathlib.Path("/proc/mounts").read_text(encoding="utf-8").splitlines() if str(home) in line]
