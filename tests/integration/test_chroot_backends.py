"""Integration tests for chroot backends (Dir/overlay, File/tarball) with real debootstrap, tar and schroot.

Needs root. The base system is debootstrapped once into a cache (mini_buildd.config.CACHE_DIR)
and unpacked by each test; the first run takes a few minutes, later runs seconds (plus apt-get
update against the host's archive in the checks).
"""

# pytest idioms: fixtures are parameters named like them; some fixtures are requested for their side effects
# only.
# pylint: disable=redefined-outer-name,unused-argument

import os
import shutil
import uuid

import pytest

from mini_buildd.tools import call, chroot_backends, debootstrap, schroot
from mini_buildd import config
from tests.helpers import host_archive

CODENAME = "bookworm"

#: The schroot config upstream 2.4.10 writes for a Dir chroot (golden format).
REFERENCE_CONF = """\
[mini-buildd-bookworm-amd64]
description=Mini-Buildd chroot mini-buildd-bookworm-amd64
setup.fstab=mini-buildd/fstab
groups=sbuild
users=mini-buildd
root-groups=sbuild
root-users=mini-buildd
source-root-users=mini-buildd
personality=linux

# Backend specific config
type=directory
directory=/var/lib/mini-buildd/var/chroots/bookworm/amd64/source
union-type=overlay

"""

#: The generic mounts of upstream's fstab (besides the bind of the home's var/shared).
REFERENCE_FSTAB_GENERIC = [
    ["/proc", "/proc", "none", "rw,bind", "0", "0"],
    ["/sys", "/sys", "none", "rw,bind", "0", "0"],
    ["/dev/pts", "/dev/pts", "none", "rw,bind", "0", "0"],
    ["tmpfs", "/dev/shm", "tmpfs", "defaults", "0", "0"],
]

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (schroot config, mounts)"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("schroot", "tar")) or not os.path.exists(debootstrap.DEFAULT_COMMAND),
                       reason="needs debootstrap, schroot and tar"),
]


# ---------------------------------------------------------------------------------------------
# Fixtures and checks
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def arch():
    return host_archive.host_arch()


@pytest.fixture(scope="module")
def archive_url():
    return host_archive.archive_url(CODENAME)


@pytest.fixture(scope="module")
def base_tarball(arch, archive_url):
    return chroot_backends.cached_debootstrap_tarball(CODENAME, arch, archive_url, host_archive.keyring_path())


@pytest.fixture
def paths(tmp_path):
    p = config.Paths(tmp_path / "home")
    p.create()
    return p


@pytest.fixture
def name(arch):
    """A schroot name of the upstream form, with a suffix that can't clash with a real instance's."""
    return f"mini-buildd-{CODENAME}-{arch}-test-{uuid.uuid4().hex[:8]}"


def mounts_under(*fragments):
    """Lines of /proc/mounts whose mount point contains any of ``fragments``."""
    with open("/proc/mounts", encoding="utf-8") as f:
        return [line for line in f if any(frag in line.split()[1] for frag in fragments)]


def assert_nothing_left(name, chroot_dir, tmp_path):
    """No schroot config, fstab, chroot dir or session of chroot ``name`` is left."""
    assert not config.schroot_conf(name).exists()
    assert not schroot.fstab_path(name).exists()
    assert not chroot_dir.exists()
    assert not chroot_dir.parent.exists(), "empty CODENAME dir should go too"
    assert f"chroot:{name}" not in schroot.list_chroots()
    assert [s for s in schroot.list_sessions() if s.startswith(name)] == []
    assert mounts_under(str(tmp_path), name) == []
    # Nothing left by schroot for our sessions either
    for state_dir in ("/var/lib/schroot/session", "/var/lib/schroot/union/overlay", "/var/lib/schroot/unpack"):
        if os.path.isdir(state_dir):
            assert [e for e in os.listdir(state_dir) if e.startswith(name)] == []


@pytest.fixture
def chroot_args(name, arch, archive_url, paths, base_tarball):
    """Arguments for prepare/remove; the chroot is removed after the test whatever happened."""
    args = {
        "name": name,
        "codename": CODENAME,
        "arch": arch,
        "chroot_dir": paths.chroot_dir(CODENAME, arch),
        "archive_url": archive_url,
        "keyring_path": host_archive.keyring_path(),
        "users": ("root",),
        "groups": ("root",),
        "personality": "linux",
        "debootstrap_command": debootstrap.DEFAULT_COMMAND,
        "extra_options": (),
        "base_tarball": base_tarball,
        "shared_dir": paths.shared,
    }
    yield args
    for backend in ("Dir", "File"):
        chroot_backends.remove(backend, **args)


def exercise_sessions(name, paths):
    """A command runs in a session; the instance's var/shared is NOT visible there (builds are
    confined: each gets its own files copied in). Leaves a marker in the (thrown away) session."""
    (paths.shared / "marker").write_text("from the host\n")
    with schroot.session(name) as sid:
        assert sid.startswith(name)
        assert sid in schroot.list_sessions()
        assert schroot.run_in_session(sid, ["cat", "/etc/debian_version"]).strip().startswith("12.")
        with pytest.raises(call.CallError):
            schroot.run_in_session(sid, ["cat", str(paths.shared / "marker")])
        assert schroot.run_in_session(sid, ["cat"], input="piped\n") == "piped\n"
        assert schroot.run_in_session(sid, ["id", "-u"]).strip() == "0"
        schroot.run_in_session(sid, ["touch", "/etc/mbd-session-only"])
        with pytest.raises(call.CallError):
            schroot.run_in_session(sid, ["false"])
    assert sid not in schroot.list_sessions()


def check_and_verify(name):
    """check() succeeds and its sources.list persists in the chroot (source session changes are kept,
    plain session changes from :func:`exercise_sessions` are not)."""
    sources_list = host_archive.sources_list(CODENAME)
    output = chroot_backends.check(name, sources_list)
    assert "Reading package lists" in output
    with schroot.session(name) as sid:
        assert schroot.run_in_session(sid, ["cat", "/etc/apt/sources.list"]) == sources_list
        assert schroot.run_in_session(sid, ["sh", "-c", "test -e /etc/mbd-session-only || echo gone"]) == "gone\n"
        assert schroot.run_in_session(sid, ["debconf-show", "debconf"]).count("Noninteractive") == 1
        # apt-get clean ran
        assert schroot.run_in_session(sid, ["sh", "-c", "ls /var/cache/apt/archives/*.deb 2>/dev/null || true"]).strip() == ""


# ---------------------------------------------------------------------------------------------
# Pure logic of the step runner and the config text
# ---------------------------------------------------------------------------------------------

def test_conf_text_matches_reference():
    text = schroot.conf_text("mini-buildd-bookworm-amd64", "Mini-Buildd chroot mini-buildd-bookworm-amd64",
                             chroot_backends.DirBackend("/var/lib/mini-buildd/var/chroots/bookworm/amd64").schroot_lines())
    assert text == REFERENCE_CONF


def test_fstab_text_has_reference_mounts(tmp_path):
    def entries(text):
        return [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert entries(schroot.fstab_text()) == REFERENCE_FSTAB_GENERIC
    assert entries(schroot.fstab_text(tmp_path)) == REFERENCE_FSTAB_GENERIC + [[str(tmp_path), str(tmp_path), "none", "rw,bind", "0", "0"]]


def test_run_steps_undoes_done_steps_in_reverse_on_failure():
    log = []

    def boom():
        raise RuntimeError("boom")

    def bad_undo():
        raise OSError("undo failed")

    steps = [chroot_backends.Step("a", lambda: log.append("do a"), lambda: log.append("undo a")),
             chroot_backends.Step("b", lambda: log.append("do b"), bad_undo),
             chroot_backends.Step("c", lambda: log.append("do c"), None),
             chroot_backends.Step("d", boom, lambda: log.append("undo d")),
             chroot_backends.Step("e", lambda: log.append("do e"), lambda: log.append("undo e"))]
    with pytest.raises(RuntimeError, match="boom"):
        chroot_backends.run_steps(steps)
    # d failed: its own undo is not run (do cleans up after itself); b's failing undo doesn't stop a's
    assert log == ["do a", "do b", "do c", "undo a"]

    log.clear()
    with pytest.raises(chroot_backends.ChrootError, match="b: undo failed"):
        chroot_backends.undo_steps(steps)
    assert log == ["undo e", "undo d", "undo a"]


def test_unknown_backend_and_compression(tmp_path):
    with pytest.raises(chroot_backends.ChrootError, match="Unsupported chroot backend"):
        chroot_backends.get_backend("NoSuchBackend", tmp_path)
    with pytest.raises(chroot_backends.ChrootError, match="Unknown compression"):
        chroot_backends.get_backend("File", tmp_path, compression="lzma")


# ---------------------------------------------------------------------------------------------
# Real chroots
# ---------------------------------------------------------------------------------------------

def test_dir_backend(chroot_args, name, paths, tmp_path):
    chroot_dir = chroot_args["chroot_dir"]
    chroot_backends.prepare("Dir", **chroot_args)

    assert f"chroot:{name}" in schroot.list_chroots()
    conf = config.schroot_conf(name).read_text()
    assert f"directory={chroot_dir / 'source'}\n" in conf
    assert "type=directory\n" in conf and "union-type=overlay\n" in conf
    assert f"setup.fstab=mini-buildd/fstab-{name}\n" in conf
    assert (chroot_dir / "source" / "etc" / "debian_version").exists()

    exercise_sessions(name, paths)
    check_and_verify(name)

    # A session left open (e.g. after a crash) is ended by remove
    open_sid = schroot.begin_session(name)
    assert mounts_under(open_sid)
    chroot_backends.remove("Dir", **chroot_args)
    assert_nothing_left(name, chroot_dir, tmp_path)
    chroot_backends.remove("Dir", **chroot_args)  # idempotent
    assert_nothing_left(name, chroot_dir, tmp_path)


def test_file_backend_gzip(chroot_args, name, paths, tmp_path):
    chroot_dir = chroot_args["chroot_dir"]
    chroot_backends.prepare("File", compression="gzip", **chroot_args)

    tarball = chroot_dir / "source.tar.gz"
    assert sorted(p.name for p in chroot_dir.iterdir()) == ["source.tar.gz"]  # tmp dir is gone
    assert tarball.read_bytes()[:2] == b"\x1f\x8b"
    assert "./etc/debian_version" in call.run(["tar", "--list", "--gzip", f"--file={tarball}"]).splitlines()
    assert f"chroot:{name}" in schroot.list_chroots()
    conf = config.schroot_conf(name).read_text()
    assert f"type=file\nfile={tarball}\n" in conf

    exercise_sessions(name, paths)
    check_and_verify(name)  # the source session repacked the tarball

    chroot_backends.remove("File", compression="gzip", **chroot_args)
    assert_nothing_left(name, chroot_dir, tmp_path)


def test_failed_debootstrap_leaves_nothing(chroot_args, name, tmp_path):
    args = dict(chroot_args, archive_url="http://127.0.0.1:9/debian/", base_tarball=None)
    with pytest.raises(debootstrap.DebootstrapError) as e:
        chroot_backends.prepare("Dir", **args)
    assert "127.0.0.1:9" in str(e.value)
    assert e.value.log_tail  # tail of debootstrap's log is shown
    assert_nothing_left(name, chroot_args["chroot_dir"], tmp_path)


def test_failed_last_step_rolls_back(chroot_args, name, tmp_path, monkeypatch):
    """The data was made, then installing the schroot config fails: everything goes again."""
    def fail(*_args, **_kwargs):
        raise OSError("no space left (simulated)")
    monkeypatch.setattr(schroot, "install_conf", fail)
    with pytest.raises(OSError, match="simulated"):
        chroot_backends.prepare("File", compression="none", **chroot_args)
    assert_nothing_left(name, chroot_args["chroot_dir"], tmp_path)


def test_prepare_refuses_existing(chroot_args, name, tmp_path):
    chroot_dir = chroot_args["chroot_dir"]
    chroot_dir.mkdir(parents=True)
    (chroot_dir / "keep").write_text("precious")
    with pytest.raises(chroot_backends.ChrootError, match="exists already"):
        chroot_backends.prepare("Dir", **chroot_args)
    assert (chroot_dir / "keep").read_text() == "precious"
    assert not config.schroot_conf(name).exists()
    assert not schroot.fstab_path(name).exists()


def test_end_stale_sessions(chroot_args, name):
    chroot_backends.prepare("Dir", **chroot_args)
    sids = {schroot.begin_session(name), schroot.begin_session(name, source=True)}
    assert sids <= set(schroot.list_sessions())
    assert set(schroot.end_stale_sessions([name])) == sids
    assert not sids & set(schroot.list_sessions())
