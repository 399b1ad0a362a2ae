"""Unshare mode chroots (owns: tests/integration/test_unshare_backend.py): the mmdebstrap wrapper
(mini_buildd.tools.mmdebstrap), the unshare block of mini_buildd.tools.chroot_backends, sbuild's
unshare mode command line, and, as an unprivileged user with subordinate ids: the UnshareChroot
model's prepare/check/activate/remove and a real sbuild build of a tiny package in unshare mode.

The real part needs root (to set up the user), mmdebstrap, uidmap and sbuild, and the host's
archive. Its tarball is made once with mmdebstrap and cached in /var/cache/mini-buildd
(:func:`mini_buildd.tools.chroot_backends.cached_unshare_tarball`); the model copies it
(``MINI_BUILDD_DEBOOTSTRAP_CACHE=1``) instead of running mmdebstrap again.
"""

# pytest idioms: fixtures are parameters named like them; code under test imported in the test processes.
# pylint: disable=redefined-outer-name

import json
import os
import pathlib
import re
import shutil
import subprocess
import tarfile
import tempfile

import pytest

from mini_buildd import config, dist
from mini_buildd.tools import chroot_backends, mmdebstrap, sbuild, sbuild_log
from tests.helpers import host_archive
from tests.helpers.daemon import PYTHON, in_home
from tests.helpers.setup_run import by_str, run_setup
from tests.integration import test_sbuild

CODENAME = "bookworm"


# ---------------------------------------------------------------------------------------------
# Command lines and checks (no network, no root)
# ---------------------------------------------------------------------------------------------

def test_mmdebstrap_command():
    argv = mmdebstrap.command("bookworm", "amd64", "/x/t.tar", "http://archive.invalid/debian", keyring_path="/k.gpg",
                              components=["main", "contrib"], include=["fakeroot", "", "lintian"], extra_options="--include=foo,bar --aptopt='A \"b\"'")
    assert argv[:6] == ["mmdebstrap", "--variant=buildd", "--mode=unshare", "--architectures=amd64", "--format=tar",
                        "--components=main,contrib"]
    assert "--keyring=/k.gpg" in argv and "--include=fakeroot,lintian" in argv
    assert argv[-5:] == ["--include=foo,bar", '--aptopt=A "b"', "bookworm", "/x/t.tar", "http://archive.invalid/debian"]
    assert "--keyring" not in " ".join(mmdebstrap.command("bookworm", "amd64", "t.tar", "http://a.invalid/d"))
    with pytest.raises(mmdebstrap.MmdebstrapError, match="Invalid archive URL"):
        mmdebstrap.command("bookworm", "amd64", "t.tar", "http://a.invalid/d main")
    # Whole apt lines (the codename's archive and its security updates) instead of one URL
    lines = ["deb [check-valid-until=yes] http://a.invalid/d bookworm main", "deb [check-valid-until=yes] http://s.invalid/d bookworm-security main"]
    assert mmdebstrap.command("bookworm", "amd64", "t.tar", "http://a.invalid/d", apt_lines=lines)[-4:] == ["bookworm", "t.tar"] + lines
    for bad in ("http://a.invalid/d bookworm main", "deb http://a.invalid/d bookworm main\ndeb http://b.invalid/ x main"):
        with pytest.raises(mmdebstrap.MmdebstrapError, match="Invalid apt line"):
            mmdebstrap.command("bookworm", "amd64", "t.tar", "http://a.invalid/d", apt_lines=[bad])


def test_subids(tmp_path, monkeypatch):
    subuid, subgid = tmp_path / "subuid", tmp_path / "subgid"
    monkeypatch.setattr(mmdebstrap, "SUBUID", subuid)
    monkeypatch.setattr(mmdebstrap, "SUBGID", subgid)
    with pytest.raises(mmdebstrap.MmdebstrapError, match=f"no range of 65536 subordinate ids in {subuid} and {subgid}.*usermod --add-subuids"):
        mmdebstrap.check_subids("someone")
    subuid.write_text("other:100000:65536\nsomeone:200000:65536\n")
    subgid.write_text("someone:300000:1000\n")
    assert mmdebstrap.subid_range(subuid, "someone") == (200000, 65536)
    assert mmdebstrap.subid_range(subgid, "nobody-here") is None
    with pytest.raises(mmdebstrap.MmdebstrapError, match=f"in {subgid} "):
        mmdebstrap.check_subids("someone")
    subgid.write_text("someone:300000:65536\n")
    mmdebstrap.check_subids("someone")


def test_sbuild_command_unshare_mode():
    argv = sbuild.command("bookworm-test-unstable", "amd64", "/h/var/unshare-chroots/bookworm-amd64.tar", "p_1.0.dsc",
                          sbuild_version=(0, 85, 0), chroot_mode="unshare")
    assert argv[:9] == ["sbuild", "--chroot-mode", "unshare", "--dist", "bookworm-test-unstable", "--arch", "amd64", "--chroot",
                        "/h/var/unshare-chroots/bookworm-amd64.tar"]
    assert sbuild.chroot_mode_of(argv) == "unshare"
    assert sbuild.chroot_mode_of(["sbuild", "--chroot-mode=unshare"]) == "unshare"
    assert sbuild.chroot_mode_of(sbuild.command("d", "amd64", "mini-buildd-bookworm-amd64", "p.dsc", sbuild_version=(0, 85, 0))) == "schroot"
    with pytest.raises(sbuild.SbuildError, match="absolute path"):
        sbuild.command("d", "amd64", "bookworm-amd64", "p.dsc", sbuild_version=(0, 85, 0), chroot_mode="unshare")
    with pytest.raises(sbuild.SbuildError, match="piuparts needs a schroot chroot"):
        sbuild.command("d", "amd64", "/t.tar", "p.dsc", sbuild_version=(0, 85, 0), chroot_mode="unshare", piuparts_mode="errfail")
    with pytest.raises(sbuild.SbuildError, match="autopkgtest needs a schroot chroot"):
        sbuild.command("d", "amd64", "/t.tar", "p.dsc", sbuild_version=(0, 85, 0), chroot_mode="unshare", autopkgtest_mode="ignore")
    with pytest.raises(ValueError, match="Unknown chroot mode"):
        sbuild.command("d", "amd64", "/t.tar", "p.dsc", sbuild_version=(0, 85, 0), chroot_mode="sudo")


def test_unpack_dir_of_and_removal_guard(tmp_path, caplog):
    """The unpack dir comes from the log; only sbuild's own /tmp/tmp.sbuild.* dirs are ever removed."""
    assert sbuild.unpack_dir_of("I: x\nUnpacking /h/var/unshare-chroots/b-amd64.tar to /tmp/tmp.sbuild.a5WKWEGpB1...\n") == "/tmp/tmp.sbuild.a5WKWEGpB1"
    assert sbuild.unpack_dir_of("no such line") is None
    assert sbuild._UNPACK_DIR_RE.fullmatch("/tmp/tmp.sbuild.vjxQ_s0rdq")  # pylint: disable=protected-access  # Perl's mkdtemp uses '_' too
    victim = tmp_path / "victim"
    (victim / "etc").mkdir(parents=True)
    log = tmp_path / "build.log"
    log.write_text(f"Unpacking /x.tar to {victim}...\n")
    sbuild._remove_unpack_dir(log)  # pylint: disable=protected-access
    assert (victim / "etc").is_dir()
    assert "not an unpack dir of sbuild" in caplog.text


def test_unshare_digest():
    base = chroot_backends.unshare_digest("buildd", ["main"], ["a", "b"], "")
    assert base == chroot_backends.unshare_digest("buildd", ("main",), ["b", "a"], None)
    assert base != chroot_backends.unshare_digest("buildd", ["main", "contrib"], ["a", "b"], "")
    assert base != chroot_backends.unshare_digest("buildd", ["main"], ["a", "b"], "--include=c")
    with_lines = chroot_backends.unshare_digest("buildd", ["main"], ["a", "b"], "", ["deb http://a.invalid/d bookworm main"])
    assert with_lines not in (base, chroot_backends.unshare_digest("buildd", ["main"], ["a", "b"], "", ["deb http://b.invalid/d bookworm main"]))
    assert re.fullmatch(r"[0-9a-f]{12}", base)


def _small_tarball(path):
    src = path.parent / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "debian_version").write_text("12\n")
    with tarfile.open(path, "w") as tar:
        tar.add(src, arcname=".")
    return path


def test_unshare_prepare_check_remove(tmp_path, monkeypatch):
    """All or nothing from a base tarball, exists-already refused, the check's errors, remove idempotent."""
    base = _small_tarball(tmp_path / "base.tar")
    tarball = tmp_path / "home" / "var" / "unshare-chroots" / "bookworm-amd64.tar"
    chroot_backends.unshare_prepare(tarball, "bookworm", "amd64", "http://archive.invalid/debian", base_tarball=base)
    assert tarball.read_bytes() == base.read_bytes()
    assert tarball.stat().st_mode & 0o777 == 0o600
    assert not tarball.with_name(tarball.name + ".part").exists()
    with pytest.raises(chroot_backends.ChrootError, match="exists already"):
        chroot_backends.unshare_prepare(tarball, "bookworm", "amd64", "http://archive.invalid/debian", base_tarball=base)

    monkeypatch.setattr(mmdebstrap, "SUBUID", tmp_path / "no-subuid")
    with pytest.raises(chroot_backends.ChrootError, match="subordinate ids"):
        chroot_backends.unshare_check(tarball)
    subids = tmp_path / "subids"
    subids.write_text(f"{mmdebstrap._user_name(None)}:300000:65536\n")  # pylint: disable=protected-access
    monkeypatch.setattr(mmdebstrap, "SUBUID", subids)
    monkeypatch.setattr(mmdebstrap, "SUBGID", subids)
    if shutil.which("newuidmap") and shutil.which("unshare"):
        assert "subordinate ids and user namespaces available" in chroot_backends.unshare_check(tarball)
    tarball.write_text("no tar at all")
    with pytest.raises(chroot_backends.ChrootError, match="not a tar archive"):
        chroot_backends.unshare_check(tarball)

    chroot_backends.unshare_remove(tarball)
    assert not tarball.parent.exists()
    chroot_backends.unshare_remove(tarball)  # idempotent
    with pytest.raises(chroot_backends.ChrootError, match="missing"):
        chroot_backends.unshare_check(tarball)


def test_unshare_prepare_failure_leaves_nothing(tmp_path, monkeypatch):
    """mmdebstrap refused (no subordinate ids here): no tarball, no partial one, no dir."""
    monkeypatch.setattr(mmdebstrap, "SUBUID", tmp_path / "no-subuid")
    tarball = tmp_path / "unshare-chroots" / "bookworm-amd64.tar"
    with pytest.raises(mmdebstrap.MmdebstrapError, match="subordinate ids"):
        chroot_backends.unshare_prepare(tarball, "bookworm", "amd64", "http://archive.invalid/debian")
    assert not tarball.parent.exists()


def test_paths():
    paths = config.Paths("/h")
    assert paths.unshare_tarball("bookworm", "amd64") == pathlib.Path("/h/var/unshare-chroots/bookworm-amd64.tar")
    assert paths.unshare_tarball("bookworm", "amd64").parent == paths.unshare_chroots
    assert config.cached_unshare_tarball("bookworm", "amd64", "buildd", "abc").name == "mbd-unshare-bookworm-amd64-buildd-abc.tar"


class _Breq:
    """What the builder reads of a buildrequest (no files: sbuild itself is not run)."""
    distribution, architecture = "mbdunsh-test-unstable", "amd64"
    sbuild_config_blocks, sbuild_setup_blocks = dist.DEFAULT_SBUILD_CONFIG_BLOCKS, "apt-setup"
    build_dep_resolver, arch_all, add_depends = "apt", True, []
    lintian_mode, lintian_extra_options, lintian_warnfail_options = "disabled", "", ""
    piuparts_mode = autopkgtest_mode = "disabled"
    deb_build_options = deb_build_profiles = ""

    class diststr:  # pylint: disable=invalid-name,too-few-public-methods  # as DistStr
        codename = "mbdunsh"

    def unpack(self, build_dir):
        return build_dir

    def config_file(self, _name):
        return ""

    def dsc_name(self):
        return "p_1.0.dsc"


class _NoKey:  # pylint: disable=too-few-public-methods
    """An instance GnuPG without a secret key (the build result is not signed)."""

    @staticmethod
    def get_secret_key():
        return None


def test_builder_chroot_mode(db, tmp_path, monkeypatch):  # pylint: disable=unused-argument,invalid-name  # db: pytest-django
    """The builder builds in unshare mode exactly where the codename/arch has an UnshareChroot."""
    from mini_buildd import models  # pylint: disable=import-outside-toplevel  # Django is set up by conftest
    from mini_buildd.models import chroot as chroot_model  # pylint: disable=import-outside-toplevel
    from mini_buildd.pipeline import builder  # pylint: disable=import-outside-toplevel
    runs = []
    monkeypatch.setattr(sbuild, "run", lambda build_dir, argv, env, log, cancel_event=None: runs.append(argv) or log.write_text("") or 0)

    def build(name):
        build_dir = tmp_path / name
        build_dir.mkdir()
        work = builder.Build(_Breq())
        builder.Builder._sbuild(work, build_dir, build_dir / "build.log", _NoKey())  # pylint: disable=protected-access
        return runs[-1], (build_dir / sbuild.SBUILDRC).read_text()

    assert chroot_model.sbuild_chroot("mbdunsh", "amd64") == ("schroot", config.schroot_name("mbdunsh", "amd64"))
    argv, rc = build("schroot")
    assert argv[1:3] == ["--chroot-mode", "schroot"] and argv[argv.index("--chroot") + 1] == config.schroot_name("mbdunsh", "amd64")
    assert str(config.paths.libdir("mbdunsh", "amd64")) in rc and config.paths.libdir("mbdunsh", "amd64").is_dir()
    shutil.rmtree(config.paths.libdir("mbdunsh", "amd64"))

    source = models.Source.objects.create(origin="Debian", codename="mbdunsh")
    arch, _ = models.Architecture.objects.get_or_create(name="amd64")
    models.UnshareChroot.objects.create(source=source, architecture=arch)
    tarball = str(config.paths.unshare_tarball("mbdunsh", "amd64"))
    assert chroot_model.sbuild_chroot("mbdunsh", "amd64") == ("unshare", tarball)
    assert chroot_model.sbuild_chroot("mbdunsh", "i386")[0] == "schroot"
    argv, rc = build("unshare")
    assert argv[1:3] == ["--chroot-mode", "unshare"] and argv[argv.index("--chroot") + 1] == tarball
    assert f"'CCACHE_DIR' => '{sbuild.UNSHARE_LIBDIR}/.ccache'" in rc
    assert not config.paths.libdir("mbdunsh", "amd64").exists()


# ---------------------------------------------------------------------------------------------
# The real thing: model and build as an unprivileged user
# ---------------------------------------------------------------------------------------------

def _skip_reason():
    if os.geteuid() != 0:
        return "needs root (sets up the unprivileged user)"
    for tool in ("mmdebstrap", "newuidmap", "sbuild", "sudo", "setpriv"):
        if not shutil.which(tool):
            return f"{tool} is not installed (make test-deps)"
    try:
        host_archive.archive_url(CODENAME)
    except LookupError as e:
        return str(e)
    return None


def ensure_subids(user):
    """Give ``user`` a range of subordinate ids if it has none (like a package's postinst would)."""
    if all((mmdebstrap.subid_range(path, user) or (0, 0))[1] >= mmdebstrap.MIN_SUBIDS for path in (mmdebstrap.SUBUID, mmdebstrap.SUBGID)):
        return
    used = [0]
    for path in (mmdebstrap.SUBUID, mmdebstrap.SUBGID):
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                fields = line.split(":")
                if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                    used.append(int(fields[1]) + int(fields[2]))
    first = max(*used, 1000000000)
    last = first + mmdebstrap.MIN_SUBIDS - 1
    subprocess.run(["usermod", "--add-subuids", f"{first}-{last}", "--add-subgids", f"{first}-{last}", user], check=True)


@pytest.fixture(scope="module")
def unpriv():
    """The unprivileged user (with subordinate ids) the daemon and the build run as."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from tests.helpers.unprivileged import UnprivilegedUser  # pylint: disable=import-outside-toplevel  # needs root
    with UnprivilegedUser() as user:
        ensure_subids(user.user)
        yield user


@pytest.fixture(scope="module")
def cached_tarball():
    """The tarball the model makes, made once with mmdebstrap (as root) and cached."""
    if _skip_reason():
        pytest.skip(_skip_reason())
    return chroot_backends.cached_unshare_tarball(
        CODENAME, host_archive.host_arch(), host_archive.archive_url(CODENAME), variant="buildd", components=["main"],
        include=sbuild.chroot_preinstall_packages("aptitude"), extra_options="",
        apt_lines=[f"deb [check-valid-until=yes] {host_archive.archive_url(CODENAME)} {CODENAME} main"])


MODEL_CODE = """
from mini_buildd.models import chroot as chroot_model
chroot = models.Chroot.objects.get().mbd_concrete()
print("CONCRETE", type(chroot).__name__, chroot.get_status_display())
print("MODE", *chroot_model.sbuild_chroot({codename!r}, {arch!r}))
"""

REMOVE_CODE = """
chroot = models.Chroot.objects.get().mbd_concrete()
chroot.mbd_remove()
print("REMOVED", chroot.get_status_display())
"""

BUILD_CODE = """
import json, pathlib, sys, threading, time
from mini_buildd.tools import sbuild
build_dir = pathlib.Path(sys.argv[1])
log = build_dir / "build.log"
cancel = threading.Event()

def cancel_on(marker):  # cancel the build once its log shows marker
    while not cancel.is_set():
        if log.exists() and marker in log.read_text(errors="replace"):
            cancel.set()
        time.sleep(0.5)

if len(sys.argv) > 3:
    threading.Thread(target=cancel_on, args=(sys.argv[3],), daemon=True).start()
rc = sbuild.run(build_dir, json.loads(sys.argv[2]), sbuild.environment(build_dir), log, cancel_event=cancel, kill_after=0.1)
cancel.set()
print("SBUILD-EXIT", rc)
"""


def _build_as(unpriv, home, tarball, name, rules=test_sbuild.RULES, cancel_on=None):
    """Build a tiny package as the builder would (setup scripts, .config, .sbuildrc with the
    in-chroot libdir) with sbuild in unshare mode as the user; return (build dir, process, log)."""
    arch = host_archive.host_arch()
    build_dir = pathlib.Path(tempfile.mkdtemp(prefix="unshare-build-", dir=home.parent))
    dsc = test_sbuild.make_source(build_dir, name, rules)
    test_sbuild.write_config(build_dir)
    scripts = sbuild.write_files(build_dir, sbuild.sbuildrc(dist.DEFAULT_SBUILD_CONFIG_BLOCKS, sbuild.UNSHARE_LIBDIR),
                                 sbuild.setup_scripts(dist.DEFAULT_SBUILD_SETUP_BLOCKS + " show-sbuildrc"))
    argv = sbuild.command(test_sbuild.DIST, arch, str(tarball), dsc, setup_scripts=scripts, arch_all=True, lintian_mode="disabled",
                          chroot_mode="unshare")
    subprocess.run(["chown", "-R", f"{unpriv.user}:{unpriv.user}", str(build_dir)], check=True)
    proc = subprocess.run(unpriv.command([PYTHON, "-c", BUILD_CODE, build_dir, json.dumps(argv)] + ([cancel_on] if cancel_on else []),
                                         home=build_dir),
                          cwd=unpriv.code, capture_output=True, text=True, timeout=900, check=False)
    log = (build_dir / "build.log").read_text(errors="replace") if (build_dir / "build.log").exists() else ""
    return build_dir, proc, log


@pytest.mark.slow
def test_unshare_chroot_model_and_build(unpriv, cached_tarball, monkeypatch):
    """setup (as the daemon's unprivileged user) makes, prepares (from the cached tarball), checks and
    activates an UnshareChroot; sbuild builds a tiny package in unshare mode as that user, and a
    killed build leaves no unpack dir; removing the chroot leaves nothing."""
    arch = host_archive.host_arch()
    monkeypatch.setenv("MINI_BUILDD_DEBOOTSTRAP_CACHE", "1")
    home = unpriv.make_home()
    _, result, _ = run_setup(home, "--archives-from-apt-sources", "--sources", CODENAME, "--chroots", f"{CODENAME}:{arch}",
                             "--chroots-backend", "Unshare", "--update", "all", "--pca", "all", unpriv=unpriv)
    assert by_str(result)[f"UnshareChroot(codename={CODENAME}, architecture={arch})"]["status"] == "ACTIVE", result
    out = in_home(home, MODEL_CODE.format(codename=CODENAME, arch=arch), unpriv=unpriv)
    tarball = config.Paths(home).unshare_tarball(CODENAME, arch)
    assert "CONCRETE UnshareChroot Active" in out, out
    assert f"MODE unshare {tarball}" in out, out
    assert tarball.stat().st_size == cached_tarball.stat().st_size
    assert (tarball.stat().st_uid, tarball.stat().st_mode & 0o777) == (unpriv.ids()[0], 0o600)

    build_dir, proc, log = _build_as(unpriv, home, tarball, "mbd-test-unshare")
    assert "SBUILD-EXIT 0" in proc.stdout, proc.stdout + proc.stderr + log[-4000:]
    assert sbuild_log.parse_summary(log)["Status"] == "successful"
    assert (build_dir / "mbd-test-unshare_1.0_all.deb").is_file()
    assert (build_dir / "mbd-test-unshare_1.0_all.deb").stat().st_uid == unpriv.ids()[0]
    for block in ("apt-setup", "apt-update", "ccache", "eatmydata", "show-sbuildrc"):
        assert f"MINI_BUILDD: {block}: " in log
    assert "MINI_BUILDD: copy-in: setup scripts and config copied into the session" in log
    assert f"'CCACHE_DIR' => '{sbuild.UNSHARE_LIBDIR}/.ccache'" in log
    unpack_dir = sbuild.unpack_dir_of(log)
    assert unpack_dir, log[:3000]
    assert not os.path.exists(unpack_dir), f"sbuild left its unpack dir {unpack_dir}"
    shutil.rmtree(build_dir, ignore_errors=True)

    # A build killed (sbuild given no time to clean up): the unpack dir it leaves is removed
    build_dir, proc, log = _build_as(unpriv, home, tarball, "mbd-test-unshare-killed", rules=test_sbuild.RULES_SLOW, cancel_on="MBD-TEST: sleeping")
    assert "SBUILD-EXIT -9" in proc.stdout, proc.stdout + proc.stderr + log[-4000:]
    assert "MINI_BUILDD: sbuild canceled (killed)" in log
    unpack_dir = sbuild.unpack_dir_of(log)
    assert unpack_dir and not os.path.exists(unpack_dir), f"unpack dir {unpack_dir} left after the kill:\n{proc.stderr[-3000:]}"
    assert "Removing unpack dir" in proc.stderr
    shutil.rmtree(build_dir, ignore_errors=True)

    out = in_home(home, REMOVE_CODE, unpriv=unpriv)
    assert "REMOVED Removed" in out, out
    assert not tarball.exists() and not tarball.parent.exists()
