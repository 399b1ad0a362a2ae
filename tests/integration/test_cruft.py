"""``mini-buildd-cruft`` (owns: tests/integration/test_cruft.py): the real command in a subprocess on
a temporary instance (Daemon key, repository ``test`` prepared with the real reprepro and gpg, a
Dir chroot configured as Active without anything on the system), with cruft of every kind put
on the system: a leftover chroot (schroot config, fstab and data, written through the root
helper under a prefix of its own), a repository dir and journal of no repository, an unconfigured
distribution's dir and a stray pool file in ``test``, an unshare tarball, a ccache dir, an old
build dir and event, a temp dir. Beside it, another home's chroot under the same prefix, and
fresh build dirs and events, which must never be listed or touched. Needs root (``/etc/schroot``);
no debootstrap.
"""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import datetime
import fcntl
import os
import shutil
import subprocess

import pytest

from mini_buildd import config
from mini_buildd.tools import gnupg, reprepro, schroot
from tests.helpers.daemon import BOOKWORM_TEST_REPOSITORY, PYTHON, ROOT, in_home
from tests.helpers.unprivileged import UnprivilegedUser

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="writes below /etc/schroot: needs root")

ED25519 = "Key-Type: EdDSA\nKey-Curve: ed25519\nKey-Usage: sign\nExpire-Date: 0"
OLD_TIMECODE = "20000101:000000:000000"
#: Code for :func:`in_home`: the Daemon's (fast) key and repository ``test`` prepared (``d``, ``source``, ``arch``, ``repo``).
PREPARED = f"""
d = models.Daemon.get()
d.gnupg_template = {ED25519!r}
d.save()
d.mbd_prepare()
{BOOKWORM_TEST_REPOSITORY}
"""


def cruft(home, *args, user="root", stdin=None):
    return subprocess.run([PYTHON, "-m", "mini_buildd.cli.cruft", "--home", str(home), "--dedicated-user", user, *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False, input=stdin)


def findings(proc, direction):
    """``{(kind, what)}`` of the lines of ``direction`` (cruft, missing) in the command's output."""
    result = set()
    for line in proc.stdout.splitlines():
        if line.startswith(f"{direction}: "):
            _d, kind, what, _reason = line.split(": ", 3)
            result.add((kind, what))
    return result


def _leftover_chroot(home, name, codename, arch):
    """A Dir chroot's data, fstab and schroot config, as prepare leaves them (no debootstrap)."""
    paths = config.Paths(home)
    data = paths.chroot_dir(codename, arch) / "source"
    (data / "etc").mkdir(parents=True)
    (data / "etc" / "debian_version").write_text("12\n")
    schroot.install_fstab([config.shared_ccache_dir(paths.shared, codename, arch)], name)
    schroot.install_conf(name, schroot.conf_text(name, "test", ["type=directory", f"directory={data}", "union-type=overlay"],
                                                 users=("root",), fstab=schroot.fstab_setup_name(name)))
    return [schroot.conf_path(name), schroot.fstab_path(name), paths.chroot_dir(codename, arch)]


PREFIX = f"mbdtest-cruft{os.getpid()}"


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """The instance's home and the other home, made once (each test works on copies)."""
    top = tmp_path_factory.mktemp("templates")
    home, other = top / "home", top / "other"
    prefix = PREFIX
    in_home(home, f"""
config.set_schroot_prefix({prefix!r})
{PREPARED}
chroot = models.DirChroot.objects.create(source=source, architecture=arch)
models.Chroot.objects.filter(pk=chroot.pk).update(status=models.Chroot.STATUS_ACTIVE)
# trixie was in repository test (its reprepro conf and dists), then left the configuration without a sync.
trixie = models.Distribution.objects.create(base_source=models.Source.objects.create(origin="Debian", codename="trixie"))
trixie.components.add(main)
models.ArchitectureOption.objects.create(distribution=trixie, architecture=arch, build_architecture_all=True)
repo.distributions.add(trixie)
repo.mbd_write_conf()
repo.mbd_reprepro().reindex()
repo.distributions.remove(trixie)
""")
    in_home(other, f"config.set_schroot_prefix({prefix!r})\n")
    gnupg.kill_agents(home / ".gnupg")
    return home, other


def _copy_home(template, home):
    """A copy of the home ``template`` at ``home`` (its repositories' reprepro conf naming the copy's GnuPG home)."""
    shutil.copytree(template, home, symlinks=True, ignore=shutil.ignore_patterns("S.*", "*.lock"))
    for options in home.glob("repositories/*/conf/options"):
        options.write_text(reprepro.options_conf(home / ".gnupg"))


@pytest.fixture
def instance(tmp_path, templates):
    """``(home, prefix, cruft paths by (kind, what), paths that must stay)``."""
    prefix = PREFIX
    home, other = tmp_path / "home", tmp_path / "other"
    _copy_home(templates[0], home)
    _copy_home(templates[1], other)
    paths = config.Paths(home)
    system_files = []
    try:
        leftover = f"{prefix}-bookworm-i386"
        system_files += _leftover_chroot(home, leftover, "bookworm", "i386")
        # Another instance under the same prefix: its chroot is not this home's cruft.
        theirs = _leftover_chroot(other, f"{prefix}-bookworm-arm64", "bookworm", "arm64")
        system_files += theirs
        repo = paths.repository("test")
        made = {
            ("repository", str(paths.repository("old"))): paths.repository("old") / "conf" / "distributions",
            ("journal", str(paths.journal("old"))): paths.journal("old") / "entry",
            ("distribution", str(repo / "dists" / "bookworm-gone-test-unstable")): repo / "dists" / "bookworm-gone-test-unstable" / "Release",
            ("pool-file", str(repo / "pool" / "main" / "s" / "stray" / "stray_1.0.dsc")): repo / "pool" / "main" / "s" / "stray" / "stray_1.0.dsc",
            ("unshare-tarball", str(paths.unshare_tarball("trixie", "amd64"))): paths.unshare_tarball("trixie", "amd64"),
            ("ccache", str(paths.libdir("trixie", "amd64"))): paths.libdir("trixie", "amd64") / ".ccache" / "x",
            ("build-dir", str(paths.build_dir("src", "1.0", OLD_TIMECODE))): paths.build_dir("src", "1.0", OLD_TIMECODE, "amd64", "x.log"),
            ("event-dir", str(paths.events_of("src", "1.0", OLD_TIMECODE))): paths.events_of("src", "1.0", OLD_TIMECODE, "e.json"),
            ("tmp", str(paths.tmp / "leftover")): paths.tmp / "leftover" / "x",
            ("debug-dir", str(paths.debug / "old")): paths.debug / "old" / "x",
        }
        fresh_timecode = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d:%H%M%S:000000")
        stay = [repo / "conf" / "distributions", repo / "dists" / "bookworm-test-unstable" / "InRelease",
                paths.libdir("bookworm", "amd64") / ".ccache" / "y", paths.build_dir("src", "1.1", fresh_timecode, "amd64", "x.log"),
                paths.events_of("src", "1.1", fresh_timecode, "e.json")] + theirs
        stay.append(paths.debug / "new" / "x")
        for path in list(made.values()) + stay[2:5] + stay[-1:]:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x\n")
        os.utime(paths.debug / "old", (0, 0))
        for path in stay:
            assert path.exists(), path
        trixie = [d for d in reprepro.Reprepro(repo).dists() if d.startswith("trixie-")]
        assert len(trixie) >= 3, trixie
        for dist in trixie:
            made[("distribution", f"test/{dist}")] = repo / "dists" / dist
        made[("chroot", leftover)] = system_files[:3]
        made[("ccache", str(paths.libdir("bookworm", "i386")))] = paths.libdir("bookworm", "i386")  # made by its fstab
        yield home, prefix, made, stay
    finally:
        for path in system_files:
            if path.is_file():
                path.unlink()
        for h in (home, other):
            gnupg.kill_agents(h / ".gnupg")


def _exists(paths):
    return all(p.exists() for p in (paths if isinstance(paths, list) else [paths]))


def _gone(paths):
    return not any(p.exists() for p in (paths if isinstance(paths, list) else [paths]))


MISSING = {("chroot", "bookworm:amd64")}


def test_lists_cruft_and_missing_and_touches_nothing(instance):
    home, _prefix, made, stay = instance
    proc = cruft(home)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert findings(proc, "cruft") == set(made), proc.stdout
    assert findings(proc, "missing") == MISSING, proc.stdout
    missing = [line for line in proc.stdout.splitlines() if line.startswith("missing: ")]
    assert len(missing) == 2 and any("schroot config" in m for m in missing) and any("data dir" in m for m in missing), missing
    for what, paths in made.items():
        assert _exists(paths), what
    for path in stay:
        assert path.exists(), path
    assert f"{len(made)} cruft, 2 missing." in proc.stdout


def test_automatic_remove_removes_exactly_the_cruft(instance):
    home, _prefix, made, stay = instance
    proc = cruft(home, "--automatic-remove")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the missing parts are left
    for what, paths in made.items():
        assert _gone(paths), what
        assert f"removed: {what[0]}: {what[1]}" in proc.stdout, what
    for path in stay:
        assert path.exists(), path
    conf = (config.Paths(home).repository("test") / "conf" / "distributions").read_text()
    assert "trixie" not in conf and "Codename: bookworm-test-unstable" in conf, conf
    # The repository is re-indexed and still verifies (signed by the instance key).
    assert in_home(home, "print(models.Repository.objects.get(identity='test').mbd_reprepro().check() is not None)").strip() == "True"
    again = cruft(home)
    assert again.returncode == 1 and findings(again, "cruft") == set() and findings(again, "missing") == MISSING, again.stdout
    # Without that chroot in the configuration, nothing is missing and its ccache dir is cruft: all removed, exit 0.
    in_home(home, "models.Chroot.objects.all().delete()")
    proc = cruft(home, "--automatic-remove")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert findings(proc, "cruft") == {("ccache", str(config.Paths(home).libdir("bookworm", "amd64")))}
    assert "1 cruft, 0 missing, 1 removed." in proc.stdout
    clean = cruft(home)
    assert clean.returncode == 0 and "0 cruft, 0 missing." in clean.stdout, clean.stdout


def test_interactive_remove_asks_each(instance):
    home, _prefix, made, _stay = instance
    listed = [line.split(": ", 3)[1:3] for line in cruft(home).stdout.splitlines() if line.startswith("cruft: ")]
    target = ("repository", str(config.Paths(home).repository("old")))
    answers = "".join("yes\n" if tuple(item) == target else "n\n" for item in listed)
    proc = cruft(home, "--interactive-remove", stdin=answers)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.count("? [y/N] ") == len(made)
    for what, paths in made.items():
        assert (_gone if what == target else _exists)(paths), what
    # No answer (end of input) is no.
    proc = cruft(home, "--interactive-remove", stdin="")
    assert proc.returncode == 1 and all(_exists(p) for w, p in made.items() if w != target)


def test_removing_needs_the_daemon_stopped(instance):
    home, _prefix, made, _stay = instance
    with open(home / ".mini-buildd.lock", "w", encoding="ascii") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("4242\n")
        lock.flush()
        proc = cruft(home, "--automatic-remove")
        assert proc.returncode == 2 and "4242" in proc.stderr and "Stop the daemon" in proc.stderr, proc.stderr
        listing = cruft(home)
    for paths in made.values():
        assert _exists(paths)
    assert listing.returncode == 1 and "daemon is running" in listing.stdout
    assert findings(listing, "cruft") == {w for w in made if w[0] != "tmp"}  # its temp files are in use


def test_no_instance_and_wrong_user(tmp_path):
    proc = cruft(tmp_path / "none")
    assert proc.returncode == 0 and "no instance" in proc.stdout
    assert not (tmp_path / "none").exists()
    proc = cruft(tmp_path / "none", user="mini-buildd-nosuchuser")
    assert proc.returncode == 2 and "instance user" in proc.stderr


def test_removes_a_leftover_chroot_as_the_instance_user():
    """As the package runs it: cruft as the daemon's unprivileged user removes a leftover chroot of
    its home (root-owned data, schroot config and fstab) through sudo and the root helper."""
    with UnprivilegedUser() as unpriv:
        home = unpriv.make_home()
        prefix = f"mbdtest-crufu{os.getpid()}"
        in_home(home, f"config.set_schroot_prefix({prefix!r})\n", unpriv=unpriv)
        name = f"{prefix}-bookworm-i386"
        paths = config.Paths(home)
        data = paths.chroot_dir("bookworm", "i386") / "source"
        try:
            (data / "etc").mkdir(parents=True)  # root's, as the helper makes it
            ccache = config.shared_ccache_dir(paths.shared, "bookworm", "i386")
            ccache.mkdir(parents=True)
            for path in (ccache, ccache.parent, ccache.parent.parent):  # the daemon's, as it makes them
                os.chown(path, *unpriv.ids())
            schroot.install_fstab([ccache], name)
            schroot.install_conf(name, schroot.conf_text(name, "test", ["type=directory", f"directory={data}", "union-type=overlay"],
                                                         users=(unpriv.user,),
                                                         fstab=schroot.fstab_setup_name(name)))
            # A valid config: every schroot call on the host reads it, and autopkgtest fails on any warning.
            listed = subprocess.run(["schroot", "--list"], capture_output=True, text=True, check=False)
            assert name not in listed.stderr, listed.stderr
            argv = unpriv.command([PYTHON, "-m", "mini_buildd.cli.cruft", "--home", str(home), "--dedicated-user", unpriv.user,
                                   "--automatic-remove"], home=home)
            proc = subprocess.run(argv, cwd=unpriv.code, capture_output=True, text=True, timeout=300, check=False)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert f"removed: chroot: {name}" in proc.stdout and f"removed: ccache: {ccache.parent}" in proc.stdout
            for path in (schroot.conf_path(name), schroot.fstab_path(name), paths.chroot_dir("bookworm", "i386")):
                assert not path.exists(), path
        finally:
            for path in (schroot.conf_path(name), schroot.fstab_path(name)):
                path.unlink(missing_ok=True)
            gnupg.kill_agents(home / ".gnupg")


def test_missing_daemon_key_and_repository(instance):
    """The other direction beyond chroots: the Daemon's key or a repository's dir gone from the home."""
    home, _prefix, _made, _stay = instance
    shutil.rmtree(home / ".gnupg" / "private-keys-v1.d")
    (home / ".gnupg" / "pubring.kbx").unlink()
    shutil.rmtree(home / "repositories" / "test")
    proc = cruft(home)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert {("daemon", str(home / ".gnupg")), ("repository", "test")} <= findings(proc, "missing"), proc.stdout
    assert "no secret key" in proc.stdout and f"its dir {home / 'repositories' / 'test'} is missing" in proc.stdout
