"""The setup operation against the host's real archive: wrong keys, bad input, the File chroot
backend (made and removed by an unprivileged user through the root helper, as the package
does), and removal leaving nothing behind. (The full acceptance run with a Dir chroot shares
the end-to-end instance: tests/e2e/test_setup_acceptance.py.) The File chroot has its own
schroot prefix, so this runs beside the e2e instance's ``mini-buildd-bookworm-amd64``."""

import os
import pathlib

import pytest

from mini_buildd.tools import schroot
from tests.helpers.daemon import in_home, processes_mentioning
from tests.helpers.setup_run import run_setup, by_str
from tests.helpers.unprivileged import UnprivilegedUser

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def test_unknown_codename_is_a_clear_error(tmp_path):
    code, result, err = run_setup(tmp_path / "h", "--sources", "nosuchcodename", check=False)
    assert code == 2 and result is None
    assert "Unknown codename 'nosuchcodename'" in err and "Traceback" not in err


def test_bad_specs_are_clear_errors(tmp_path):
    for args, text in ((["--sources", "bookworm", "--distributions", "bookworm"], "use CODENAME:ARCH"),
                       (["--distributions", "bookworm:amd64"], "add 'bookworm' to --sources"),
                       (["--sources", "bookworm", "--chroots-backend", "Bogus"], "Unsupported chroot backend"),
                       (["--sources", "bookworm", "--repositories", "test:Default:trixie"], "no distribution 'trixie'")):
        code, result, err = run_setup(tmp_path / "h", "--archives-from-apt-sources", *args, check=False)
        assert code == 2 and result is None, (args, err)
        assert text in err and "Traceback" not in err, (args, err)


def test_inspect_only_changes_nothing(tmp_path):
    code, result, _ = run_setup(tmp_path / "h", "--archives-from-apt-sources", "--sources", "bookworm")
    assert code == 0
    statuses = {i["identity_str"]: i["status"] for i in result["instances"]}
    assert statuses["Source(origin=Debian, codename=bookworm)"] == "MISSING"
    assert all(not i["actions"] for i in result["instances"])
    # sloppy is not on the host's mirror: left out with a warning, never an instance
    if not any("codename=bookworm-backports-sloppy" in s for s in statuses):
        assert any("bookworm-backports-sloppy" in w for w in result["report"]["warnings"])
    assert in_home(tmp_path / "h", "print(models.Source.objects.count())").strip() == "0"


def test_wrong_apt_key_names_real_signers(tmp_path):
    home = tmp_path / "h"
    run_setup(home, "--archives-from-apt-sources", "--update", "all")
    out = in_home(home, """
key = models.AptKey.objects.create(key_id="254CF3B5AEC0A8F0")  # security archive key: does not sign bookworm
src = models.Source.objects.create(origin="Debian", codename="bookworm")
src.apt_keys.add(key)
try:
    src.mbd_pca()
except models.StatusError as e:
    print("ERROR", e)
src = models.Source.objects.get(pk=src.pk)
print("STATUS", src.mbd_status_display())
print("MESSAGE", src.status_message)
""")
    assert "STATUS Prepared (x)" in out
    message = next(line for line in out.splitlines() if line.startswith("MESSAGE"))
    assert "No accepted signature found" in message
    # The real bookworm Release is signed by the 11 and 12 archive keys and the bookworm release key.
    assert "B7C5D7D6350947F8" in message or "73A4F27B8DD47936" in message or "F8D2585B8783D481" in message
    assert "254CF3B5AEC0A8F0" not in message.split("signed by key ids:")[1].split(";")[0]


def test_unreachable_archive_fails_source_check(tmp_path):
    home = tmp_path / "h"
    code, result, _ = run_setup(home, "--archives", "http://127.0.0.1:9/debian/", "--sources", "bookworm",
                                "--update", "all", "--pca", "all", check=True)
    src = by_str(result)["Source(origin=Debian, codename=bookworm)"]
    assert src["status"] == "FAILED" and "pca(failed)" in src["actions"]
    assert "unreachable" in src["error"]
    assert result["report"]["severity"] == 3 and code == 1


def test_unknown_architecture_leaves_nothing(tmp_path):
    home = tmp_path / "h"
    _, result, _ = run_setup(home, "--archives-from-apt-sources", "--sources", "bookworm", "--chroots", "bookworm:nosucharch",
                             "--update", "all", "--pca", "all")
    chroot = by_str(result)["DirChroot(codename=bookworm, architecture=nosucharch)"]
    assert chroot["status"] == "DEACTIVATED" and "pca(failed)" in chroot["actions"]
    assert "chroot:mini-buildd-bookworm-nosucharch" not in schroot.list_chroots()
    assert not (home / "var" / "chroots" / "bookworm" / "nosucharch").exists()
    assert not pathlib.Path("/etc/schroot/chroot.d/mini-buildd-bookworm-nosucharch.conf").exists()


def _mounts_below(path):
    return [line for line in pathlib.Path("/proc/mounts").read_text(encoding="utf-8").splitlines() if str(path) in line]


def test_file_chroot_prepares_checks_and_removes_cleanly():
    name = "mbd-itest-bookworm-amd64"
    with UnprivilegedUser() as unpriv:
        home = unpriv.make_home()
        _, result, _ = run_setup(home, "--archives-from-apt-sources", "--sources", "bookworm", "--chroots", "bookworm:amd64",
                                 "--chroots-backend", "File", "--schroot-prefix", "mbd-itest", "--update", "all", "--pca", "all",
                                 unpriv=unpriv)
        chroot = by_str(result)["FileChroot(codename=bookworm, architecture=amd64)"]
        assert chroot["status"] == "ACTIVE", chroot
        assert (home / "var/chroots/bookworm/amd64/source.tar").is_file()
        assert (home / "var/chroots").stat().st_uid == 0, "the root helper owns the chroot data"
        assert f"chroot:{name}" in schroot.list_chroots()
        assert f"users={unpriv.user}\n" in pathlib.Path(f"/etc/schroot/chroot.d/{name}.conf").read_text(encoding="utf-8")
        with schroot.session(name) as sid:
            assert schroot.run_in_session(sid, ["cat", "/etc/debian_version"]).strip().startswith("12")
        in_home(home, "c = models.Chroot.mbd_concrete_all()[0]; c.mbd_remove(); print(c.mbd_status_display())", unpriv=unpriv)
        assert f"chroot:{name}" not in schroot.list_chroots()
        assert not (home / "var/chroots/bookworm/amd64").exists()
        assert not pathlib.Path(f"/etc/schroot/chroot.d/{name}.conf").exists()
        assert not _mounts_below(home)
        assert not [s for s in schroot.list_sessions() if name in s]
        assert not processes_mentioning(str(home / ".gnupg"))
