"""Integration tests of the block device chroot backends (BtrfsSnapshot, LVM, LoopLVM) with real
btrfs, LVM, losetup, schroot and sbuild: each backend prepares a chroot, checks it, builds a tiny
package in it with sbuild and removes it, leaving nothing behind (schroot files, mounts, btrfs
subvolumes, LVM volumes, loop devices).

Every file system lives on a loop file in the test's temp dir. LVM and LoopLVM need
device-mapper: where the kernel has none (``/dev/mapper/control`` missing, ``dmsetup version``
failing; e.g. in containers) they are skipped with that reason. The base system comes from the
cached debootstrap tarball (debootstrapped once, see test_chroot_backends.py). Schroot, volume
group and loop names carry ``mbd-blk`` (or are derived from a unique home), so they cannot meet
another test's or a real instance's.
"""

# pytest idioms: fixtures are parameters named like them; some fixtures are requested for their side effects only.
# pylint: disable=redefined-outer-name,unused-argument

import contextlib
import os
import pathlib
import shutil
import time
import uuid

import pytest

from mini_buildd import config, roothelper, roothelper_blocks
from mini_buildd.tools import blockdevices, call, chroot_backends, debootstrap, privileged, sbuild, schroot, sbuild_log
from tests.helpers import host_archive
from tests.helpers.daemon import in_home
from tests.helpers.setup_run import by_str, run_setup
from tests.helpers.unprivileged import UnprivilegedUser
from tests.integration.test_sbuild import make_source, write_config

CODENAME = "bookworm"
DIST = "bookworm-test-unstable"
SPARSE_GB = 3

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (loop devices, mounts, schroot config)")
needs_tools = pytest.mark.skipif(not all(shutil.which(t) for t in ("schroot", "sbuild", "tar", "losetup", "btrfs", "mkfs.btrfs"))
                                 or not os.path.exists(debootstrap.DEFAULT_COMMAND),
                                 reason="needs debootstrap, schroot, sbuild, tar, losetup and btrfs-progs")


def _btrfs_missing():
    try:
        with open("/proc/filesystems", encoding="utf-8") as f:
            return None if any(line.split()[-1:] == ["btrfs"] for line in f) else "no btrfs in this kernel (/proc/filesystems)"
    except OSError as e:
        return str(e)


needs_btrfs = pytest.mark.skipif(_btrfs_missing() is not None, reason=str(_btrfs_missing()))


def _lvm_missing():
    return blockdevices.device_mapper_missing()


needs_lvm = pytest.mark.skipif(_lvm_missing() is not None, reason=f"LVM backends: {_lvm_missing()}")


# ---------------------------------------------------------------------------------------------
# Pure logic: schroot lines, names, the root helper's checks
# ---------------------------------------------------------------------------------------------

def test_backends_registered_with_upstream_names():
    assert {"BtrfsSnapshot", "LVM", "LoopLVM"} <= set(chroot_backends.BACKENDS)


def test_schroot_lines(tmp_path):
    d = tmp_path / "home" / "var" / "chroots" / "bookworm" / "amd64"
    assert chroot_backends.get_backend("BtrfsSnapshot", d).schroot_lines() == [
        "type=btrfs-snapshot", f"btrfs-source-subvolume={d}/source", f"btrfs-snapshot-directory={d}/snapshot"]
    lvm = chroot_backends.get_backend("LVM", d, volume_group="vg0", filesystem="ext4", snapshot_size=7)
    assert lvm.schroot_lines() == ["type=lvm-snapshot", "device=/dev/vg0/mini-buildd-bookworm-amd64",
                                   "mount-options=-t ext4 -o noatime", "lvm-snapshot-options=--size 7G"]
    loop = chroot_backends.get_backend("LoopLVM", d, loop_size=5)
    assert loop.volume_group == "mini-buildd-loop-bookworm-amd64" and loop.loop_size == 5
    assert loop.loop_image == d / "lvmloop.image"
    assert loop.schroot_lines()[1:3] == ["device=/dev/mini-buildd-loop-bookworm-amd64/mini-buildd-bookworm-amd64",
                                         "mount-options=-t ext2 -o noatime"]
    with pytest.raises(chroot_backends.ChrootError, match="Unknown file system"):
        chroot_backends.get_backend("LVM", d, filesystem="vfat")


def test_lvm_needs_a_volume_group(tmp_path):
    step = [s for s in chroot_backends.get_backend("LVM", tmp_path / "c" / "a").data_steps(lambda _d: None) if "logical volume" in s.description]
    with pytest.raises(chroot_backends.ChrootError, match="existing volume group"):
        step[0].do()


def test_models_name_their_backends(tmp_path):
    """Each chroot model's backend and options make the backend with the model's settings (and setup offers them)."""
    from mini_buildd import bootstrap, models  # pylint: disable=import-outside-toplevel  # Django is set up by conftest
    d = tmp_path / "home" / "var" / "chroots" / "bookworm" / "amd64"
    cases = [(models.BtrfsSnapshotChroot(), chroot_backends.BtrfsSnapshotBackend, {}),
             (models.LVMChroot(volume_group="vg1", filesystem="ext4", snapshot_size=3), chroot_backends.LVMBackend,
              {"volume_group": "vg1", "filesystem": "ext4", "snapshot_size": 3}),
             (models.LoopLVMChroot(loop_size=7), chroot_backends.LoopLVMBackend,
              {"volume_group": "mini-buildd-loop-bookworm-amd64", "filesystem": "ext2", "snapshot_size": 4, "loop_size": 7})]
    for chroot, cls, expected in cases:
        be = chroot_backends.get_backend(chroot.mbd_backend, d, **chroot.mbd_backend_args())
        assert type(be) is cls  # pylint: disable=unidiomatic-typecheck  # LoopLVM is an LVM subclass: the exact class counts
        assert {k: getattr(be, k) for k in expected} == expected
        assert chroot.mbd_backend in bootstrap.CHROOT_BACKENDS
        assert type(chroot).__name__ == f"{chroot.mbd_backend}Chroot"  # setup makes the model from the backend name


def _conf(name, lines):
    return schroot.conf_text(name, "d", lines, users=("root",), groups=("root",), fstab=schroot.GLOBAL_FSTAB)


@needs_root
def test_helper_checks_block_configs(tmp_path):
    home = tmp_path / "home"
    config.Paths(home).create()
    root = roothelper.chroots_root(roothelper.Caller(0), home)
    d = root / "bookworm" / "amd64"
    caller = roothelper.Caller(0)
    roothelper.check_conf(caller, home, "x-mbd-blk", _conf("x-mbd-blk", chroot_backends.BtrfsSnapshotBackend(d).schroot_lines()))
    outside_snapshots = ["type=btrfs-snapshot", f"btrfs-source-subvolume={d}/source", "btrfs-snapshot-directory=/tmp"]
    with pytest.raises(roothelper.HelperError, match="btrfs-snapshot-directory must be below"):
        roothelper.check_conf(caller, home, "x-mbd-blk", _conf("x-mbd-blk", outside_snapshots))
    outside_source = ["type=btrfs-snapshot", "btrfs-source-subvolume=/", f"btrfs-snapshot-directory={d}/snapshot"]
    with pytest.raises(roothelper.HelperError, match="is not below"):
        roothelper.check_conf(caller, home, "x-mbd-blk", _conf("x-mbd-blk", outside_source))
    lvm = chroot_backends.LVMBackend(d, volume_group="mbd-blk-no-such-vg").schroot_lines()
    with pytest.raises(roothelper.HelperError, match="not a logical volume of this instance"):
        roothelper.check_conf(caller, home, "x-mbd-blk", _conf("x-mbd-blk", lvm))
    roothelper.check_conf(caller, home, "x-mbd-blk", _conf("x-mbd-blk", lvm), existing=True)  # a config whose volume is gone may go
    for bad in (["type=lvm-snapshot", "device=/dev/sda1", "mount-options=-t ext2 -o noatime", "lvm-snapshot-options=--size 4G"],
                lvm[:2] + ["mount-options=-t ext2 -o noatime,x-systemd.requires=/x"] + lvm[3:],
                lvm[:3] + ["lvm-snapshot-options=--size 4G --zero n"]):
        with pytest.raises(roothelper.HelperError):
            roothelper.check_conf(caller, home, "x-mbd-blk", _conf("x-mbd-blk", bad), existing=True)
    with pytest.raises(roothelper.HelperError, match="bad size"):
        roothelper.run(["lvm-fill", "--home", str(home), "--codename", "bookworm", "--arch", "amd64", "--vg", "vg0", "--size", "0"], caller)
    with pytest.raises(roothelper.HelperError, match="Bad volume group"):
        roothelper.run(["lvm-remove", "--home", str(home), "--codename", "bookworm", "--arch", "amd64", "--vg", "../x"], caller)
    assert roothelper_blocks.lvm_tag(root) != roothelper_blocks.lvm_tag(tmp_path)


class FakeLVM:
    """The LVM and loop device side of :mod:`mini_buildd.tools.blockdevices`, in memory: what the root
    helper asks for, in order (where the kernel has device-mapper, the real tests below run too)."""

    def __init__(self, monkeypatch):
        self.vgs, self.lvs, self.loops, self.calls = {}, {}, {}, []
        for fn in ("vg_tags", "lv_tags", "lv_create", "lv_remove", "vg_create", "vg_remove", "pv_remove", "vg_activate",
                   "mkfs", "fsck", "mount", "copy_tree", "loop_attach", "loop_detach", "loop_devices_of"):
            monkeypatch.setattr(blockdevices, fn, getattr(self, fn))

    def vg_tags(self, vg):
        return self.vgs.get(vg)

    def lv_tags(self, vg, lv):
        return self.lvs.get((vg, lv))

    def lv_create(self, vg, lv, size_gb, tag):
        self.calls.append(("lv_create", vg, lv, size_gb))
        self.lvs[(vg, lv)] = [tag]

    def lv_remove(self, vg, lv):
        self.calls.append(("lv_remove", vg, lv))
        del self.lvs[(vg, lv)]

    def vg_create(self, vg, device, tag):
        self.calls.append(("vg_create", vg, device))
        self.vgs[vg] = [tag]

    def vg_remove(self, vg):
        self.calls.append(("vg_remove", vg))
        del self.vgs[vg]
        self.lvs = {k: v for k, v in self.lvs.items() if k[0] != vg}

    def pv_remove(self, device):
        self.calls.append(("pv_remove", device))

    def vg_activate(self, vg):
        self.calls.append(("vg_activate", vg))

    def mkfs(self, filesystem, device):
        self.calls.append(("mkfs", filesystem, str(device)))

    def fsck(self, filesystem, device):
        self.calls.append(("fsck", filesystem, str(device)))
        return "clean\n"

    def mount(self, device, target, options=""):
        self.calls.append(("mount", str(device)))

    def copy_tree(self, source, target):
        self.calls.append(("copy_tree", pathlib.Path(source).name, pathlib.Path(target).name))

    def loop_attach(self, image):
        self.calls.append(("loop_attach",))
        return self.loops.setdefault(str(image), "/dev/loop-fake")

    def loop_detach(self, device):
        self.calls.append(("loop_detach", device))
        self.loops = {k: v for k, v in self.loops.items() if v != device}

    def loop_devices_of(self, image):
        return [self.loops[str(image)]] if str(image) in self.loops else []


@needs_root
@needs_tools
def test_loop_lvm_steps_with_fake_volumes(chroot_args, name, monkeypatch):
    """Prepare, activate and remove of a LoopLVM chroot as the root helper carries them out (volumes in
    memory, real schroot config and chroot dir): names, tags, order, and nothing left."""
    fake = FakeLVM(monkeypatch)
    monkeypatch.setattr(privileged, "populate", lambda chroot_dir, subdir, *_a, **_k: (pathlib.Path(chroot_dir) / subdir).mkdir())
    options = {"loop_size": 9, "snapshot_size": 2, "filesystem": "ext4"}
    vg, lv = "mini-buildd-loop-bookworm-" + chroot_args["arch"], "mini-buildd-bookworm-" + chroot_args["arch"]
    chroot_backends.prepare("LoopLVM", **chroot_args, **options)
    try:
        chroot_dir = chroot_args["chroot_dir"]
        assert sorted(p.name for p in chroot_dir.iterdir()) == ["lvmloop.image"]  # tmp and mnt are gone
        assert (chroot_dir / "lvmloop.image").stat().st_size == 9 * 1024 ** 3
        assert (chroot_dir / "lvmloop.image").stat().st_blocks == 0  # sparse
        tag = roothelper_blocks.lvm_tag(chroot_dir.parent.parent)
        assert fake.vgs == {vg: [tag]} and fake.lvs == {(vg, lv): [tag]}
        assert fake.calls == [("loop_attach",), ("vg_create", vg, "/dev/loop-fake"), ("lv_create", vg, lv, 2),
                              ("mkfs", "ext4", f"/dev/{vg}/{lv}"), ("mount", f"/dev/{vg}/{lv}"), ("copy_tree", "tmp", "mnt")]
        assert f"device=/dev/{vg}/{lv}\nmount-options=-t ext4 -o noatime\nlvm-snapshot-options=--size 2G\n" \
            in config.schroot_conf(name).read_text()
        # After a "reboot" the check attaches the loop file again, activates and fscks
        fake.loops.clear()
        fake.calls.clear()
        chroot_backends.get_backend("LoopLVM", chroot_dir, **options).activate()
        assert fake.calls == [("loop_attach",), ("vg_activate", vg), ("fsck", "ext4", f"/dev/{vg}/{lv}")]
        # A volume group of the same name without this home's tag is never removed
        fake.vgs[vg] = ["mini-buildd-someone-else"]
        with pytest.raises(privileged.PrivilegeError, match="not one of this instance's"):
            privileged.loop_vg_remove(chroot_dir)
        fake.vgs[vg] = [tag]
        fake.calls.clear()
    finally:
        chroot_backends.remove("LoopLVM", **chroot_args, **options)
    assert fake.calls == [("lv_remove", vg, lv), ("vg_remove", vg), ("pv_remove", "/dev/loop-fake"), ("loop_detach", "/dev/loop-fake")]
    assert not fake.vgs and not fake.lvs and not fake.loops
    assert_no_schroot_left(name)
    assert not chroot_args["chroot_dir"].exists()


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def arch():
    return host_archive.host_arch()


@pytest.fixture(scope="module")
def base_tarball(arch):
    return chroot_backends.cached_debootstrap_tarball(CODENAME, arch, host_archive.archive_url(CODENAME), host_archive.keyring_path())


@pytest.fixture
def paths(tmp_path):
    p = config.Paths(tmp_path / "home")
    p.create()
    return p


def _losetup_of(image):
    return call.run(["losetup", "--noheadings", "--output", "NAME", "--associated", str(image)]).split()


@contextlib.contextmanager
def loop_device(image, size_gb=SPARSE_GB):
    """A sparse file ``image`` attached to a loop device; detached (and checked so) afterwards."""
    call.run(["truncate", "--size", f"{size_gb}G", str(image)])
    device = call.run(["losetup", "--find", "--show", str(image)]).strip()
    try:
        yield device
    finally:
        with contextlib.suppress(call.CallError):
            call.run(["losetup", "--detach", device])
        # A device still held (btrfs lets go of it shortly after umount) is only marked autoclear: wait for it
        for _ in range(100):
            if not _losetup_of(image):
                break
            time.sleep(0.1)
        assert _losetup_of(image) == [], "loop device left attached"
        image.unlink()


@pytest.fixture
def btrfs_chroots(paths, tmp_path):
    """``HOME/var/chroots`` on a fresh btrfs file system (a loop file in the temp dir); yields the mount point."""
    image = tmp_path / "chroots-btrfs.img"
    with loop_device(image) as device:
        call.run(["mkfs.btrfs", "--quiet", device])
        call.run(["mount", device, str(paths.chroots)])
        try:
            yield paths.chroots
        finally:
            call.run(["umount", str(paths.chroots)])


def mounts_below(path):
    with open("/proc/mounts", encoding="utf-8") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(str(path))]


@pytest.fixture
def name(arch):
    return f"mini-buildd-{CODENAME}-{arch}-mbd-blk-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def chroot_args(name, arch, paths, base_tarball):
    return {"name": name, "codename": CODENAME, "arch": arch, "chroot_dir": paths.chroot_dir(CODENAME, arch),
            "archive_url": host_archive.archive_url(CODENAME), "keyring_path": host_archive.keyring_path(),
            "users": ("root",), "groups": ("root",), "base_tarball": base_tarball, "shared_dir": paths.shared}


def assert_no_schroot_left(name):
    assert not config.schroot_conf(name).exists()
    assert not schroot.fstab_path(name).exists()
    assert f"chroot:{name}" not in schroot.list_chroots()
    assert [s for s in schroot.list_sessions() if s.startswith(name)] == []


def build_tiny_package(name, arch, tmp_path):
    """A real sbuild build of a tiny native package in chroot ``name``; returns the build log text."""
    build_dir = tmp_path / "build"
    build_dir.mkdir()
    dsc = make_source(build_dir, "mbd-blk-hello", distribution=DIST)
    write_config(build_dir)
    libdir = build_dir / "libdir"
    libdir.mkdir()
    scripts = sbuild.write_files(build_dir, sbuild.sbuildrc("", libdir), sbuild.setup_scripts("apt-setup apt-update"))
    argv = sbuild.command(DIST, arch, name, dsc, setup_scripts=scripts, arch_all=True, lintian_mode="disabled")
    log = build_dir / "build.log"
    start = time.monotonic()
    rc = sbuild.run(build_dir, argv, sbuild.environment(build_dir), log)
    text = log.read_text(errors="replace")
    print(f"sbuild in {name}: exit {rc} after {time.monotonic() - start:.1f}s")
    assert rc == 0, text[-3000:]
    assert sbuild_log.parse_summary(text)["Status"] == "successful"
    assert (build_dir / "mbd-blk-hello_1.0_all.deb").is_file()
    session = sbuild.session_of(text)
    assert session and session.startswith(name) and session not in schroot.list_sessions()
    return text


def prepare_check_build(backend, chroot_args, tmp_path, **options):
    """The flow every backend must pass: prepare, a session, check, a real build. Returns the backend."""
    name, arch = chroot_args["name"], chroot_args["arch"]
    chroot_backends.prepare(backend, **chroot_args, **options)
    be = chroot_backends.get_backend(backend, chroot_args["chroot_dir"], **options)
    assert f"chroot:{name}" in schroot.list_chroots()
    conf = config.schroot_conf(name).read_text()
    assert "\n".join(be.schroot_lines()) in conf
    with schroot.session(name) as sid:  # a plain session's changes are thrown away
        assert schroot.run_in_session(sid, ["cat", "/etc/debian_version"]).strip().startswith("12.")
        schroot.run_in_session(sid, ["touch", "/etc/mbd-blk-session-only"])
    sources_list = host_archive.sources_list(CODENAME)
    assert "Reading package lists" in chroot_backends.check(name, sources_list, backend=be)
    with schroot.session(name) as sid:  # the check's source session changes are kept
        assert schroot.run_in_session(sid, ["cat", "/etc/apt/sources.list"]) == sources_list
        assert schroot.run_in_session(sid, ["sh", "-c", "test -e /etc/mbd-blk-session-only || echo gone"]) == "gone\n"
    build_tiny_package(name, arch, tmp_path)
    return be


# ---------------------------------------------------------------------------------------------
# BtrfsSnapshot
# ---------------------------------------------------------------------------------------------

def subvolumes(mountpoint):
    return call.run(["btrfs", "subvolume", "list", str(mountpoint)]).splitlines()


@pytest.mark.slow
@needs_root
@needs_tools
@needs_btrfs
def test_btrfs_snapshot_backend(btrfs_chroots, chroot_args, name, tmp_path):
    chroot_dir = chroot_args["chroot_dir"]
    try:
        be = prepare_check_build("BtrfsSnapshot", chroot_args, tmp_path)
        assert sorted(p.name for p in chroot_dir.iterdir()) == ["snapshot", "source"]  # tmp is gone
        assert blockdevices.is_subvolume(be.source_dir)
        assert not blockdevices.is_subvolume(be.snapshot_dir) and not list(be.snapshot_dir.iterdir())
        assert [line for line in subvolumes(btrfs_chroots) if line.endswith(f"{CODENAME}/{chroot_args['arch']}/source")]
        # A session is a snapshot subvolume in the snapshot dir; a session left open is ended by remove
        sid = schroot.begin_session(name)
        assert [p.name for p in be.snapshot_dir.iterdir()] == [sid]
        assert blockdevices.is_subvolume(be.snapshot_dir / sid)
    finally:
        chroot_backends.remove("BtrfsSnapshot", **chroot_args)
    assert_no_schroot_left(name)
    assert not chroot_dir.exists() and not chroot_dir.parent.exists()
    assert subvolumes(btrfs_chroots) == []
    assert mounts_below(tmp_path) == [str(btrfs_chroots)]  # only the test's own file system is left (unmounted by the fixture)
    chroot_backends.remove("BtrfsSnapshot", **chroot_args)  # idempotent


@pytest.mark.slow
@needs_root
@needs_tools
@needs_btrfs
def test_btrfs_snapshot_chroot_through_setup_as_the_daemon_user(tmp_path, arch):
    """The model way, as the package runs it: setup makes a BtrfsSnapshotChroot as an unprivileged
    user (root actions through sudo and the root helper), prepares, checks and activates it; the
    model's remove leaves nothing."""
    name = f"mbd-blk-itest-{CODENAME}-{arch}"
    with UnprivilegedUser() as unpriv:
        home = unpriv.make_home()
        (home / "var").mkdir(mode=0o755)
        shutil.chown(home / "var", unpriv.user, unpriv.user)
        chroots = home / "var" / "chroots"
        chroots.mkdir()
        with loop_device(tmp_path / "chroots-btrfs.img") as device:
            call.run(["mkfs.btrfs", "--quiet", device])
            call.run(["mount", device, str(chroots)])
            try:
                _, result, _ = run_setup(home, "--archives-from-apt-sources", "--sources", CODENAME, "--chroots", f"{CODENAME}:{arch}",
                                         "--chroots-backend", "BtrfsSnapshot", "--schroot-prefix", "mbd-blk-itest",
                                         "--update", "all", "--pca", "all", unpriv=unpriv)
                chroot = by_str(result)[f"BtrfsSnapshotChroot(codename={CODENAME}, architecture={arch})"]
                assert chroot["status"] == "ACTIVE", chroot
                assert blockdevices.is_subvolume(chroots / CODENAME / arch / "source")
                conf = config.schroot_conf(name).read_text()
                assert "type=btrfs-snapshot\n" in conf and f"users={unpriv.user}\n" in conf
                with schroot.session(name) as sid:  # the check installed what builds need
                    assert schroot.run_in_session(sid, ["sh", "-c", "for p in fakeroot lintian; do command -v $p; done"]).count("/usr/bin/") == 2
                out = in_home(home, "c = models.Chroot.mbd_concrete_all()[0]; print(type(c).__name__); c.mbd_remove(); print(c.mbd_status_display())",
                              unpriv=unpriv)
                assert "BtrfsSnapshotChroot" in out
                assert_no_schroot_left(name)
                assert not (chroots / CODENAME).exists()
                assert subvolumes(chroots) == []
            finally:
                chroot_backends.remove("BtrfsSnapshot", name=name, chroot_dir=chroots / CODENAME / arch)  # after a failure
                call.run(["umount", str(chroots)])


@needs_root
@needs_tools
def test_btrfs_snapshot_needs_btrfs(chroot_args, name, tmp_path):
    """On another file system prepare fails with the reason before making the base system, and
    nothing is left; the root helper refuses too."""
    with pytest.raises(chroot_backends.ChrootError, match="on a '.*' file system, not btrfs"):
        chroot_backends.prepare("BtrfsSnapshot", **chroot_args)
    assert_no_schroot_left(name)
    assert not chroot_args["chroot_dir"].exists()
    chroot_dir = chroot_args["chroot_dir"]
    privileged.make_chroot_dir(chroot_dir)
    try:
        (chroot_dir / "tmp").mkdir()
        with pytest.raises(privileged.PrivilegeError, match="not btrfs"):
            privileged.btrfs_fill(chroot_dir)
        assert sorted(p.name for p in chroot_dir.iterdir()) == ["tmp"]
    finally:
        privileged.remove_data(chroot_dir)


# ---------------------------------------------------------------------------------------------
# LVM and LoopLVM (need device-mapper)
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def volume_group(tmp_path):
    """A volume group of its own on a loop file in the temp dir (removed afterwards)."""
    vg = f"mbd-blk-vg-{uuid.uuid4().hex[:8]}"
    with loop_device(tmp_path / "vg.img", size_gb=6) as device:
        blockdevices.vg_create(vg, device, "mbd-blk-test")
        try:
            yield vg
        finally:
            blockdevices.vg_remove(vg)
            blockdevices.pv_remove(device)


@pytest.mark.slow
@needs_root
@needs_tools
@needs_lvm
def test_lvm_backend(volume_group, chroot_args, name, tmp_path):
    options = {"volume_group": volume_group, "filesystem": "ext2", "snapshot_size": 2}
    be = chroot_backends.get_backend("LVM", chroot_args["chroot_dir"], **options)
    try:
        prepare_check_build("LVM", chroot_args, tmp_path, **options)
        assert blockdevices.lv_tags(volume_group, be.logical_volume) is not None
        assert sorted(p.name for p in chroot_args["chroot_dir"].iterdir()) == []
    finally:
        chroot_backends.remove("LVM", **chroot_args, **options)
    assert_no_schroot_left(name)
    assert blockdevices.lv_tags(volume_group, be.logical_volume) is None
    assert not chroot_args["chroot_dir"].exists()
    assert mounts_below(tmp_path) == []


@pytest.mark.slow
@needs_root
@needs_tools
@needs_lvm
def test_loop_lvm_backend(chroot_args, name, tmp_path):
    options = {"loop_size": SPARSE_GB, "snapshot_size": 1}
    be = chroot_backends.get_backend("LoopLVM", chroot_args["chroot_dir"], **options)
    if blockdevices.vg_tags(be.volume_group) is not None:
        pytest.skip(f"volume group {be.volume_group} exists on this host (a real LoopLVM chroot)")
    try:
        prepare_check_build("LoopLVM", chroot_args, tmp_path, **options)
        assert be.loop_image.is_file() and _losetup_of(be.loop_image)
    finally:
        chroot_backends.remove("LoopLVM", **chroot_args, **options)
    assert_no_schroot_left(name)
    assert blockdevices.vg_tags(be.volume_group) is None
    assert not chroot_args["chroot_dir"].exists()
    assert mounts_below(tmp_path) == []


def test_lvm_skip_reason_is_detected(tmp_path, monkeypatch):
    """The LVM tests above run exactly when the kernel has device-mapper and the LVM tools are there."""
    misc = tmp_path / "misc"
    monkeypatch.setattr(blockdevices, "PROC_MISC", str(misc))
    misc.write_text(" 10 loop-control\n183 hw_random\n")
    assert "no device-mapper in this kernel" in blockdevices.device_mapper_missing()
    misc.write_text(" 10 loop-control\n236 device-mapper\n")
    monkeypatch.setattr(shutil, "which", lambda _tool: None)
    assert blockdevices.device_mapper_missing() == "LVM tools missing (install lvm2)"
