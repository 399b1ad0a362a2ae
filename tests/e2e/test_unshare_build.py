"""A whole daemon build in an Unshare chroot (owns: tests/e2e/test_unshare_build.py; issue #15
Chroots: "a chroot backend without schroot: sbuild's unshare mode with an mmdebstrap tarball,
selectable per chroot, builds without root for the build itself").

An instance of its own (loopback 127.0.0.25, own home and schroot prefix), run as the unprivileged
user with subordinate ids the way the package runs the daemon: ``setup`` makes repository ``test``
and an UnshareChroot for bookworm:amd64 (``--chroots-backend Unshare``; its mmdebstrap tarball is
copied from the cache in /var/cache/mini-buildd, made by root once). A source package uploaded
over FTP is built by the daemon's builder in sbuild's unshare mode (the build log shows the
tarball unpacked into a user namespace; no schroot session, no schroot config of the instance
exists) and INSTALLED; ``mini-buildd-debug-build`` rebuilds its buildrequest in the same chroot
with a command at a hook. Teardown leaves nothing: no process of the instance, no mount below its
home, no unpack dir, the chroot tarball removed.
"""

# pylint: disable=redefined-outer-name  # pytest passes each fixture as the parameter of its name

import json
import os
import pathlib
import shutil
import subprocess
import time
import types

import pytest

from mini_buildd import config
from mini_buildd.tools import chroot_backends, schroot, sbuild, sbuild_log
from tests.helpers import host_archive
from tests.helpers.daemon import PYTHON, Daemon, as_user, in_home, processes_mentioning, service_addresses
from tests.helpers.packages import dput, make_source_package, now_iso, tree_digest, wait_event, write_dput_cf
from tests.helpers.remote_instances import common_ports, wait_until
from tests.helpers.setup_run import by_str, run_setup
from tests.helpers.uploads import reprepro_ls

HOST = "127.0.0.25"
CODENAME = "bookworm"
NAME, VERSION = "mbd-e2e-unshare", "1.0~test12+1"
DIST = f"{CODENAME}-test-unstable"


def _skip_reason():
    if os.geteuid() != 0:
        return "needs root (sets up the unprivileged user)"
    for tool in ("mmdebstrap", "newuidmap", "sbuild", "sudo", "setpriv", "dput"):
        if not shutil.which(tool):
            return f"{tool} is not installed (make test-deps)"
    if host_archive.host_arch() != "amd64":
        return "the cached Unshare tarball of this test is bookworm:amd64"
    return None


#: What the instance's UnshareChroot will be made of (its mmdebstrap options: components, apt lines
#: of the distribution, tools) and its archive URL, asked from the instance's configuration.
ARGS_CODE = """
import json
from mini_buildd.models import chroot as chroot_model
source = models.Source.objects.filter(codename={codename!r}).first()
chroot = chroot_model.UnshareChroot(source=source, architecture=models.Architecture.objects.get(name={arch!r}))
print("ARGS", json.dumps(dict(chroot._mmdebstrap_args(), archive_url=source.mbd_archive().url)))
"""


def _prime_unshare_cache(home, unpriv):
    """Make (as root, once per host and option set) the cached mmdebstrap tarball the instance's
    chroot will be copied from, as an administrator would; the unprivileged setup then finds it,
    instead of running mmdebstrap itself in every run."""
    out = in_home(home, ARGS_CODE.format(codename=CODENAME, arch="amd64"), hostname=HOST, unpriv=unpriv)
    args = json.loads(out.split("ARGS ", 1)[1])
    chroot_backends.cached_unshare_tarball(CODENAME, "amd64", **args)


@pytest.fixture(scope="module")
def unshare_instance():
    """The running instance with an active UnshareChroot; torn down (and checked clean) after."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from tests.helpers.unprivileged import UnprivilegedUser  # pylint: disable=import-outside-toplevel  # needs root
    from tests.integration.test_unshare_backend import ensure_subids  # pylint: disable=import-outside-toplevel
    prefix = f"mbd-h5u{os.getpid()}"
    with UnprivilegedUser() as unpriv:
        ensure_subids(unpriv.user)
        home = unpriv.make_home()
        http_port, ftp_port = common_ports([HOST])
        http_endpoint, ftp_endpoint, url, _ftp_url = service_addresses(HOST, http_port, ftp_port)
        daemon = None
        try:
            started = time.monotonic()
            base = ("--schroot-prefix", prefix, "--ftp-endpoint", ftp_endpoint, "--archives-from-apt-sources",
                    "--sources", CODENAME, "--distributions", f"{CODENAME}:amd64", "--repositories", f"test:Default:{CODENAME}")
            code, result, err = run_setup(home, *base, "--update", "all", "--pca", "all",
                                          http_endpoint=http_endpoint, hostname=HOST, unpriv=unpriv, check=False)
            assert code == 0 and result, f"setup failed ({code}):\n{result}\n{err[-3000:]}"
            _prime_unshare_cache(home, unpriv)
            code, result, err = run_setup(
                home, *base, "--chroots", f"{CODENAME}:amd64", "--chroots-backend", "Unshare", "--update", "all", "--pca", "all",
                http_endpoint=http_endpoint, hostname=HOST, unpriv=unpriv, check=False)
            print(f"setup took {time.monotonic() - started:.0f}s")
            assert code == 0 and result, f"setup failed ({code}):\n{result}\n{err[-3000:]}"
            assert by_str(result)[f"UnshareChroot(codename={CODENAME}, architecture=amd64)"]["status"] == "ACTIVE", result
            daemon = Daemon(home, port=http_port, host=HOST, endpoints=[http_endpoint], unpriv=unpriv,
                            extra_args=["--schroot-prefix", prefix])
            daemon.ftp_port = ftp_port
            daemon.start()
            yield types.SimpleNamespace(home=home, url=url, ftp_port=ftp_port, prefix=prefix, unpriv=unpriv, daemon=daemon)
        finally:
            if daemon is not None:
                daemon.stop()
            if (home / "config.sqlite").exists():
                in_home(home, "for c in models.Chroot.mbd_concrete_all(): c.mbd_remove()", hostname=HOST, unpriv=unpriv)
            assert not config.Paths(home).unshare_tarball(CODENAME, "amd64").exists()
            assert not processes_mentioning(str(home)), "processes of the instance left"
            assert not [line for line in pathlib.Path("/proc/mounts").read_text(encoding="utf-8").splitlines() if str(home) in line]
            assert not [c for c in schroot.list_chroots() if prefix in c]
            assert not [s for s in schroot.list_sessions() if prefix in s]


def test_upload_builds_in_unshare_chroot(unshare_instance, tmp_path):
    """An FTP upload is built by the daemon in sbuild's unshare mode (no schroot) and INSTALLED."""
    inst = unshare_instance
    home, unpriv = inst.home, inst.unpriv
    tarball = config.Paths(home).unshare_tarball(CODENAME, "amd64")
    assert tarball.is_file() and tarball.stat().st_uid == unpriv.ids()[0]
    changes = make_source_package(tmp_path, NAME, VERSION, DIST)
    cf = write_dput_cf(tmp_path / "dput.cf", "unshare", f"{HOST}:{inst.ftp_port}")
    started, clock = now_iso(), time.monotonic()
    proc = dput(cf, "unshare", changes)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    event = wait_event(inst.url, ("INSTALLED", "FAILED", "REJECTED"), NAME, VERSION, after=started, timeout=1200)
    print(f"upload to INSTALLED took {time.monotonic() - clock:.0f}s")

    build_dirs = list(config.Paths(home).builds.glob(f"{NAME}/{VERSION}/*/amd64"))
    assert len(build_dirs) == 1, build_dirs
    logs = list(build_dirs[0].glob("*.buildlog"))
    log = logs[0].read_text(errors="replace") if logs else ""
    assert event["type"] == "INSTALLED", f"{event}\n{log[-5000:]}\n{inst.daemon.output()[-3000:]}"
    assert reprepro_ls(inst, NAME) == {DIST: VERSION}
    # sbuild's unshare mode: the tarball unpacked into a user namespace, no schroot session
    unpack_dir = sbuild.unpack_dir_of(log)
    assert unpack_dir and f"Unpacking {tarball} to {unpack_dir}..." in log, log[:3000]
    assert not os.path.exists(unpack_dir), f"sbuild left its unpack dir {unpack_dir}"
    assert sbuild.session_of(log) is None, "a schroot session was used"
    assert "schroot" not in log.split("| Summary", maxsplit=1)[0].lower(), [line for line in log.splitlines() if "schroot" in line.lower()][:5]
    assert "MINI_BUILDD: copy-in: setup scripts and config copied into the session" in log
    assert f"'CCACHE_DIR' => '{sbuild.UNSHARE_LIBDIR}/.ccache'" in (build_dirs[0] / sbuild.SBUILDRC).read_text()
    assert sbuild_log.parse_summary(log)["Status"] == "successful"
    # built without root: the results belong to the daemon's user; the instance has no schroot chroot
    deb = build_dirs[0] / f"{NAME}_{VERSION}_all.deb"
    assert deb.is_file() and deb.stat().st_uid == unpriv.ids()[0]
    assert not [c for c in schroot.list_chroots() if inst.prefix in c]
    assert not list(config.SCHROOT_CHROOT_D.glob(f"{inst.prefix}-*"))


def test_debug_build_in_unshare_chroot(unshare_instance):
    """mini-buildd-debug-build rebuilds that buildrequest in the same Unshare chroot (as the daemon's
    user, no root, no schroot), its hook command inside the build; the repository is unchanged."""
    inst = unshare_instance
    paths = config.Paths(inst.home)
    build_dirs = list(paths.builds.glob(f"{NAME}/{VERSION}/*/amd64"))
    assert len(build_dirs) == 1, "needs the build of test_upload_builds_in_unshare_chroot"
    # The cron jobs' first run (a minute after the daemon's start) takes the timed snapshots of the
    # stable suites: wait for it, so that only the debug build could change the repository.
    wait_until(lambda: paths.daemon_log.read_text(encoding="utf-8", errors="replace").count("Timed snapshots:") >= 3, 180, what="timed snapshots")
    repos = tree_digest(paths.repositories)
    debug_before = set(paths.debug.iterdir()) if paths.debug.exists() else set()
    argv, cwd = as_user([PYTHON, "-m", "mini_buildd.cli.debug_build", "-H", str(inst.home), "--hook-command",
                         f"echo UNSHARE-HOOK-$((6*7)); ls -d /build/*/{NAME}-*/debian && echo UNSHARE-HOOK-SOURCE-THERE",
                         build_dirs[0]], inst.unpriv, inst.home)
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=1800, check=False, stdin=subprocess.DEVNULL)
    print(f"unshare debug build took {time.monotonic() - started:.0f}s")
    new = set(paths.debug.iterdir()) - debug_before
    try:
        log = proc.stdout
        assert proc.returncode == 0, proc.stderr[-3000:] + log[-5000:]
        unpack_dir = sbuild.unpack_dir_of(log)
        assert unpack_dir and f"Unpacking {paths.unshare_tarball(CODENAME, 'amd64')} to {unpack_dir}..." in log, log[:3000]
        assert not os.path.exists(unpack_dir)
        assert sbuild.session_of(log) is None
        assert "MINI_BUILDD: debug-build: Debug build (extra packages: none)" in log
        hook = log.index("UNSHARE-HOOK-42")  # at starting-build, inside the unpacked chroot
        assert log.index("Starting Timed Build Commands") < hook < log.index("dpkg-buildpackage", hook)
        assert "UNSHARE-HOOK-SOURCE-THERE" in log
        assert "Status: successful" in log
        assert len(new) == 1 and (new.pop() / f"{NAME}_{VERSION}_all.deb").stat().st_uid == inst.unpriv.ids()[0]
        assert tree_digest(paths.repositories) == repos
    finally:
        for path in set(paths.debug.iterdir()) - debug_before:
            shutil.rmtree(path, ignore_errors=True)
