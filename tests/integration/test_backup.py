"""``mini-buildd-backup`` (owns: tests/integration/test_backup.py): a backup of an instance home
and its restore on "another host".

Instance A (home in the test's temp dir, served on 127.0.0.23, run as root): Daemon key and
repository ``test`` prepared, a prebuilt package installed into ``bookworm-test-unstable`` with the
real reprepro through the archive layer (:class:`mini_buildd.archive.operations.RepositoryView`), a
chroot in the configuration (and chroot data on the disk that must not go into the backup). The
backup is refused while A's daemon runs and taken once it is stopped. It is restored into home B
(another path, owned by another user, ``mbd-test``, with the unprivileged daemon set-up of the
package) whose daemon serves on 127.0.0.24: B re-exports (signs) the repository with the
restored key, and apt in a clean tree trusting only A's archive key (no ``trusted=yes``) verifies
B's repository and installs the package. Bad tarballs (paths outside the home, no manifest) and a
restore over an existing instance are refused without extracting anything.
Needs root; the clean tree comes from the cached bookworm debootstrap tarball (made if missing); no build.
"""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import io
import json
import os
import pathlib
import shutil
import subprocess
import tarfile

import pytest

from mini_buildd.tools import gnupg
from tests.helpers.clean_chroot import in_chroot
from tests.helpers.package_tree import base_tarball
from tests.helpers.daemon import PYTHON, ROOT, Daemon, in_home
from tests.helpers.unprivileged import UnprivilegedUser
from tests.integration.test_cruft import PREPARED
from tests.integration.test_reprepro import make_package

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="restores for another user: needs root")

HOST_A, HOST_B = "127.0.0.23", "127.0.0.24"
SOURCE, VERSION, DIST = "mbd-backup-tiny", "1.0", "bookworm-test-unstable"


def backup_cmd(*args, cwd=ROOT):
    return subprocess.run([PYTHON, "-m", "mini_buildd.cli.backup", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, check=False, env=dict(os.environ, PYTHONPATH=str(ROOT)))


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """``(home A, A's armored archive key, the backup tarball)``."""
    top = tmp_path_factory.mktemp("backup")
    home = top / "a" / "home"
    package = make_package(top / "pkg", VERSION, source=SOURCE, distribution=DIST)
    pub_key = in_home(home, f"""
{PREPARED}
models.DirChroot.objects.create(source=source, architecture=arch)
models.Chroot.objects.update(status=models.Chroot.STATUS_ACTIVE)
from mini_buildd.archive import operations
operations.RepositoryView(repo).install({DIST!r}, {str(package['dsc'])!r}, [{str(package['changes'])!r}])
print(d.gnupg().pub_key())
""", hostname=HOST_A)
    (home / "var" / "ports.json").write_text("{}\n")  # as the port watcher keeps it
    marker = home / "var" / "chroots" / "bookworm" / "amd64" / "source" / "marker"
    marker.parent.mkdir(parents=True)
    marker.write_text("chroot data\n")
    (home / "var" / "shared" / "builds" / "x").write_text("build dir\n")
    tarball = top / "a-backup.tar.gz"
    try:
        with Daemon(home, host=HOST_A) as daemon:
            assert daemon.session().get(f"{daemon.url}/repositories/test/dists/{DIST}/InRelease", timeout=10).status_code == 200
            refused = backup_cmd("--home", str(home), "--output", str(tarball))
            assert refused.returncode == 2 and "in use" in refused.stderr and "Stop it first" in refused.stderr, refused.stderr
            assert not tarball.exists()
        proc = backup_cmd("--home", str(home), "--output", str(tarball))
        assert proc.returncode == 0, proc.stderr
        assert "chroots are not included" in proc.stdout
        yield home, pub_key, tarball
    finally:
        gnupg.kill_agents(home / ".gnupg")


@pytest.fixture
def clean_tree(tmp_path):
    """A clean bookworm tree for apt (the cached debootstrap tarball, made here if missing: never skipped)."""
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["tar", "--extract", "--numeric-owner", "--file", str(base_tarball("bookworm")), "--directory", str(root)],
                   check=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_backup_has_the_home_but_no_chroots(original):
    home, _pub_key, tarball = original
    assert tarball.stat().st_mode & 0o777 == 0o600
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
        manifest = json.loads(tar.extractfile("mini-buildd-backup.json").read())
        db = tar.extractfile("config.sqlite").read()
    assert manifest["home"] == str(home.resolve()) and manifest["format"] == 1
    assert {"config.sqlite", ".django_secret_key", ".gnupg", "repositories/test/conf/distributions", "repositories/test/db/packages.db",
            f"repositories/test/dists/{DIST}/InRelease", "etc/event-hooks", "var/events", "var/journal",
            "var/ports.json"} <= names, sorted(names)
    assert any(n.startswith(f"repositories/test/pool/main/m/{SOURCE}/") for n in names)
    assert any(n.startswith(".gnupg/private-keys-v1.d/") for n in names)
    for name in names:
        assert not name.startswith(("var/chroots", "var/shared", "var/tmp", "incoming", ".mini-buildd.lock")), name
        assert not pathlib.PurePosixPath(name).name.startswith("S."), name  # no agent sockets
    assert db.startswith(b"SQLite format 3\0")


def test_restore_on_another_host_serves_the_same_signed_repository(original, clean_tree):
    _home_a, pub_key, tarball = original
    with UnprivilegedUser() as unpriv:
        home = unpriv.make_home("restored")
        try:
            proc = backup_cmd("--restore", str(tarball), "--home", str(home), "--dedicated-user", unpriv.user)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert "bookworm:amd64 are Removed" in proc.stdout, proc.stdout
            uid, _gid = unpriv.ids()
            for path in [home, home / "config.sqlite", home / ".gnupg", home / "repositories" / "test" / "db" / "packages.db"]:
                assert path.stat().st_uid == uid, path
            assert (home / "config.sqlite").stat().st_mode & 0o777 == 0o600
            options = (home / "repositories" / "test" / "conf" / "options").read_text()
            assert f"gnupghome {home.resolve() / '.gnupg'}" in options, options
            # B signs with the restored key (as its own user), and has its chroot Removed.
            out = in_home(home, "r = models.Repository.objects.get(identity='test')\nr.mbd_reprepro().export()\n"
                                "c = models.Chroot.objects.get()\nprint(c.mbd_status_display(), '|', c.status_message)",
                          hostname=HOST_B, unpriv=unpriv)
            assert out.strip().startswith("Removed") and "not in backups" in out, out
            with Daemon(home, host=HOST_B, unpriv=unpriv) as daemon:
                root = clean_tree
                key = root / "etc" / "apt" / "keyrings" / "mbd-a.asc"
                key.parent.mkdir(parents=True, exist_ok=True)
                key.write_text(pub_key)
                for p in (root / "etc" / "apt" / "sources.list.d").glob("*"):
                    p.unlink()
                sources = root / "etc" / "apt" / "sources.list"
                # Verification is real: with another key apt refuses the repository.
                sources.write_text(f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {daemon.url}/repositories/test {DIST} main\n")
                proc = in_chroot(root, "apt-get", "update")
                assert "NO_PUBKEY" in proc.stdout + proc.stderr or "not signed" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
                sources.write_text(f"deb [signed-by=/etc/apt/keyrings/mbd-a.asc] {daemon.url}/repositories/test {DIST} main\n")
                proc = in_chroot(root, "apt-get", "update")
                assert proc.returncode == 0 and "NO_PUBKEY" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
                assert "W:" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
                proc = in_chroot(root, "apt-get", "install", "--yes", SOURCE)
                assert proc.returncode == 0, proc.stdout + proc.stderr
            assert (root / "usr" / "share" / "doc" / SOURCE / "README").read_text() == f"tiny {VERSION}\n"
            # A second restore into the same home is refused (it has an instance), --force replaces it.
            again = backup_cmd("--restore", str(tarball), "--home", str(home), "--dedicated-user", unpriv.user)
            assert again.returncode == 2 and "--force" in again.stderr, again.stderr
            (home / "repositories" / "test" / "stray").write_text("x")
            forced = backup_cmd("--restore", str(tarball), "--home", str(home), "--dedicated-user", unpriv.user, "--force")
            assert forced.returncode == 0, forced.stderr
            assert not (home / "repositories" / "test" / "stray").exists()
        finally:
            gnupg.kill_agents(home / ".gnupg")


def _tarball(path, members):
    """A gzip tarball of ``members`` (name -> bytes, or ``(type, linkname)``)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                info.type, info.linkname = content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


MANIFEST = json.dumps({"format": 1, "parts": ["config.sqlite", "repositories", ".gnupg"], "home": "/x", "hostname": "h",
                       "created": "now"}).encode()


@pytest.mark.parametrize("members, message", [
    ({"config.sqlite": b""}, "not a mini-buildd-backup tarball"),
    ({"mini-buildd-backup.json": MANIFEST, "config.sqlite": b"", "../escape": b"x"}, "not a relative path"),
    ({"mini-buildd-backup.json": MANIFEST, "config.sqlite": b"", "/etc/evil": b"x"}, "not a relative path"),
    ({"mini-buildd-backup.json": MANIFEST, "config.sqlite": b"", "var/chroots/x": b"x"}, "not a part of a mini-buildd backup"),
    ({"mini-buildd-backup.json": MANIFEST, "config.sqlite": b"", "repositories/l": (tarfile.SYMTYPE, "../../etc")}, "outside the home"),
    ({"mini-buildd-backup.json": MANIFEST, "config.sqlite": b"", "repositories/d": (tarfile.CHRTYPE, "")}, "only files"),
    ({"mini-buildd-backup.json": MANIFEST, "repositories/x": b"x"}, "has no config.sqlite"),
], ids=["no-manifest", "dotdot", "absolute", "not-a-part", "link-out", "device", "no-database"])
def test_bad_tarballs_are_refused_and_nothing_is_extracted(tmp_path, members, message):
    tarball = _tarball(tmp_path / "bad.tar.gz", members)
    home = tmp_path / "home"
    proc = backup_cmd("--restore", str(tarball), "--home", str(home), "--dedicated-user", "root")
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not home.exists() and not (tmp_path / "escape").exists()


def test_backup_of_no_instance_and_bad_options(tmp_path):
    proc = backup_cmd("--home", str(tmp_path / "none"), "--output", str(tmp_path / "b.tar.gz"))
    assert proc.returncode == 2 and "No instance" in proc.stderr and not (tmp_path / "b.tar.gz").exists()
    proc = backup_cmd("--home", str(tmp_path / "none"), "--force")
    assert proc.returncode == 2 and "--force is for --restore" in proc.stderr
