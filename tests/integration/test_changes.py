"""Integration tests of mini_buildd.changes with real tools: a real source package made by
dpkg-buildpackage, signed and verified with real gpg/gpgv, buildrequests and buildresults written,
signed, parsed back and unpacked (dpkg-source extracts the unpacked source)."""

# pytest idioms: fixtures are parameters named like them; asserts compare with empty containers on purpose (the
# type counts too).
# pylint: disable=redefined-outer-name,use-implicit-booleaness-not-comparison

import hashlib
import json
import pathlib
import re
import shutil
import tarfile

import pytest

from mini_buildd.tools import call, gnupg
from mini_buildd import changes
from mini_buildd.changes import ChangesError
from mini_buildd.dist import QAMode
from tests.helpers.reference import REFERENCE

FAST_TEMPLATE = "Key-Type: EdDSA\nKey-Curve: ed25519\nKey-Usage: sign"

REF = REFERENCE
REF_FILES = REF / "files"
REF_VERSION = "1.0~test12+4"
REF_UPLOAD = REF_FILES / f"mbd-hello_{REF_VERSION}_source.changes"
REF_BREQ = REF_FILES / f"mbd-hello_{REF_VERSION}_mini-buildd-buildrequest_amd64.changes"
REF_BRES = REF_FILES / f"mbd-hello_{REF_VERSION}_mini-buildd-buildresult_amd64.changes"
REF_SIGNER = "15FB1CDFD91B1DB6"  # long id of the upstream instance key that signed the reference files

SOURCE, VERSION = "mbd-hello", "1.0~test12+1"
ARCH = "amd64"

CONTROL = f"""Source: {SOURCE}
Section: misc
Priority: optional
Maintainer: Test Maintainer <maint@example.org>
Standards-Version: 4.6.2
Rules-Requires-Root: no

Package: {SOURCE}
Architecture: all
Description: mini-buildd changes test package
 Test.
"""

CHANGELOG = f"""{SOURCE} ({VERSION}) bookworm-test-unstable; urgency=medium

  * Test upload.
  * MINI_BUILDD_OPTION: lintian-mode=ignore

 -- Test Uploader <uploader@example.org>  Mon, 01 Jan 2024 00:00:00 +0000
"""

RULES = "#!/usr/bin/make -f\nclean build build-arch build-indep binary binary-arch binary-indep:\n\ttrue\n"

BREQ_FIELDS = {
    "Upload-To": "ftp://localhost:8067",
    "Packager": "http://localhost:8066",
    "Build-Dep-Resolver": "aptitude",
    "Sbuild-Config-Blocks": "set-default-path ccache",
    "Sbuild-Setup-Blocks": "apt-setup apt-update ccache eatmydata",
    "Deb-Build-Options": "",
    "Deb-Build-Profiles": "",
    "Add-Depends": ["foo (>= 1.0)", "bar"],
    "Lintian-Mode": QAMode.IGNORE,
    "Lintian-Extra-Options": "--info --suppress-tags bad-distribution-in-changes-file",
    "Lintian-Warnfail-Options": "--fail-on error,warning",
    "Autopkgtest-Mode": QAMode.DISABLED,
    "Piuparts-Mode": "ERRFAIL",
    "Builder": "http://builder:8066",
    "Buildlog-Building": "http://builder:8066/mini_buildd/builds-dir/LOG",
    "Buildlog-Installed": "http://localhost:8066/mini_buildd/events-dir/LOG",
}

SUMMARY = {"Status": "successful", "Lintian": "pass", "Build-Time": "2", "Package-Time": "43", "Space": "124",
           "Build-Space": "124 (kB)", "Fail-Stage": "none", "Version": VERSION}


def procs_mentioning(text):
    """Pids of the processes whose command line mentions ``text``."""
    pids = []
    for cmdline in pathlib.Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(text).encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            pass
    return pids


def ref_fields(path):
    """Upstream's field order, plus our deliberate addition: Checksums-Sha256 right before Files
    (SHA-256 is required of every changes file)."""
    fields = changes.Changes(path, timecode="20240101:000000:000000").field_names()
    return fields[:fields.index("Files")] + ["Checksums-Sha256"] + fields[fields.index("Files"):]


def tar_names(path):
    with tarfile.open(path) as tar:
        return tar.getnames()


def ref_listing(name):
    return [line.split()[-1] for line in (REF_FILES / f"{name}.tar.LISTING.txt").read_text().splitlines()]


def md5(path):
    return hashlib.md5(pathlib.Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("changes")


@pytest.fixture(scope="module")
def gpg(workdir):
    """The instance key (ed25519); its agent is stopped at the end, and nothing may survive."""
    instance = gnupg.Gnupg(workdir / "gnupg", tmp_parent=workdir / "gpgtmp")
    instance.gen_secret_key(FAST_TEMPLATE, "mini-buildd archive test", "mini-buildd@test.example.org")
    yield instance
    instance.kill_agents()
    assert procs_mentioning(workdir) == []


@pytest.fixture(scope="module")
def source_package(workdir):
    """A real native source package: dir with .dsc, .tar.xz, _source.buildinfo and unsigned _source.changes."""
    top = workdir / "src"
    tree = top / SOURCE
    (tree / "debian" / "source").mkdir(parents=True)
    (tree / "debian" / "control").write_text(CONTROL)
    (tree / "debian" / "changelog").write_text(CHANGELOG)
    (tree / "debian" / "source" / "format").write_text("3.0 (native)\n")
    (tree / "debian" / "rules").write_text(RULES)
    (tree / "debian" / "rules").chmod(0o755)
    call.run(["dpkg-buildpackage", "-S", "-us", "-uc", "-d"], cwd=tree, timeout=120)
    shutil.rmtree(tree)
    return top


@pytest.fixture
def upload_path(tmp_path, source_package, gpg):
    """A signed copy of the source upload in ``tmp_path/incoming``."""
    incoming = tmp_path / "incoming"
    shutil.copytree(source_package, incoming)
    path = incoming / f"{SOURCE}_{VERSION}_source.changes"
    gpg.sign_file(path)
    return path


@pytest.fixture
def keyring(gpg, tmp_path):
    """A remotes/uploaders keyring holding the instance key."""
    with gnupg.TmpKeyring(parent=tmp_path / "keyrings") as kr:
        kr.add_pub_key(gpg.pub_key())
        yield kr


@pytest.fixture
def empty_keyring(tmp_path):
    with gnupg.TmpKeyring(parent=tmp_path / "keyrings") as kr:
        yield kr


def config_files(gpg):
    return {"apt_sources.list": (REF_FILES / "apt_sources.list").read_text(),
            "apt_preferences": (REF_FILES / "apt_preferences").read_text(),
            "apt_keys": gpg.pub_key(),
            "ssl_cert": ""}


def make_breq(upload, out_dir, gpg, arch_all=True, **kwargs):
    args = {"distribution_str": "bookworm-test-unstable", "arch_all": arch_all, "fields": dict(BREQ_FIELDS),
            "config_files": config_files(gpg), "gnupg": gpg}
    args.update(kwargs)
    return changes.create_buildrequest(upload, ARCH, out_dir, **args)


def fake_sbuild_output(build_dir):
    """What sbuild leaves behind: build log, .deb, .buildinfo and the binary .changes listing them."""
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / f"{SOURCE}_{VERSION}_{ARCH}.build").write_text("sbuild log\n" * 100)
    deb = build_dir / f"{SOURCE}_{VERSION}_all.deb"
    deb.write_bytes(b"!<arch>\n" + bytes(range(256)) * 4)
    buildinfo = build_dir / f"{SOURCE}_{VERSION}_{ARCH}.buildinfo"
    buildinfo.write_text("Format: 1.0\nSource: mbd-hello\n")
    files = [buildinfo, deb]
    text = (f"Format: 1.8\nDate: Mon, 01 Jan 2024 00:00:00 +0000\nSource: {SOURCE}\nBinary: {SOURCE}\n"
            f"Architecture: all\nVersion: {VERSION}\nDistribution: bookworm-test-unstable\n"
            "Maintainer: Test Maintainer <maint@example.org>\nChanged-By: Test Uploader <uploader@example.org>\n"
            "Checksums-Sha256:\n"
            + "".join(f" {hashlib.sha256(f.read_bytes()).hexdigest()} {f.stat().st_size} {f.name}\n" for f in files)
            + "Files:\n"
            + "".join(f" {md5(f)} {f.stat().st_size} misc optional {f.name}\n" for f in files))
    path = build_dir / f"{SOURCE}_{VERSION}_{ARCH}.changes"
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# User uploads
# ---------------------------------------------------------------------------------------------

def test_real_upload(upload_path, keyring, gpg):
    upload = changes.load(upload_path)
    assert isinstance(upload, changes.Upload)
    assert (upload.source, upload.version, upload.architecture) == (SOURCE, VERSION, "source")
    assert upload.changed_by == "Test Uploader <uploader@example.org>"
    assert upload.bkey == f"{SOURCE}/{VERSION}/{upload.timecode}/source"
    assert [f["name"] for f in upload.files()] == [f"{SOURCE}_{VERSION}.dsc", f"{SOURCE}_{VERSION}.tar.xz",
                                                   f"{SOURCE}_{VERSION}_source.buildinfo"]
    assert all(f["sha256"] for f in upload.files())
    upload.check_files()
    result = upload.signature_check(keyring)
    assert result.valid and result.key_id == gpg.get_secret_key()["long_id"]
    assert upload.upload_options() == {"lintian-mode": QAMode.IGNORE}
    assert upload.dsc()["Source"] == SOURCE
    assert [f["name"] for f in changes.read_dsc_files(upload.dsc_path())] == [f"{SOURCE}_{VERSION}.tar.xz"]


def test_upload_signed_by_unknown_key(upload_path, empty_keyring, gpg):
    long_id = gpg.get_secret_key()["long_id"]
    with pytest.raises(ChangesError, match=f"signed by unknown key\\(s\\) {long_id}$"):
        changes.Upload(upload_path).signature_check(empty_keyring)


def test_upload_tampered(upload_path, keyring):
    upload_path.write_text(upload_path.read_text().replace("Urgency: medium", "Urgency: high"))
    upload = changes.Upload(upload_path)
    assert upload.get("Urgency") == "high"  # parsing works
    with pytest.raises(ChangesError, match=r"signature check failed: signed by [0-9A-F]{16} \(bad\)"):
        upload.signature_check(keyring)


def test_upload_unsigned(source_package, keyring):
    upload = changes.Upload(source_package / f"{SOURCE}_{VERSION}_source.changes")
    upload.check_files()
    with pytest.raises(ChangesError, match="source.changes: not signed$"):
        upload.signature_check(keyring)


def test_reference_files_signatures(keyring):
    upload = changes.Upload(REF_UPLOAD)  # the reference user upload is not signed
    assert upload.source == "mbd-hello"
    with pytest.raises(ChangesError, match="not signed"):
        upload.signature_check(keyring)
    for path in (REF_BREQ, REF_BRES):  # signed by the upstream instance key we do not have
        special = changes.load(path)
        assert special.version == REF_VERSION
        with pytest.raises(ChangesError, match=f"signed by unknown key\\(s\\) {REF_SIGNER}$"):
            special.signature_check(keyring)


def _rename_everywhere(path, old, new):
    path.write_text(path.read_text().replace(old, new))


@pytest.mark.parametrize("corrupt, message", [
    (lambda d: (d / f"{SOURCE}_{VERSION}.tar.xz").open("ab").write(b"x"),
     rf"size mismatch for '{SOURCE}_{re.escape(VERSION)}.tar.xz'"),
    (lambda d: (d / f"{SOURCE}_{VERSION}_source.buildinfo").write_text(
        (d / f"{SOURCE}_{VERSION}_source.buildinfo").read_text().replace("Format", "Farmot")),
     rf"md5 checksum mismatch for '{SOURCE}_{re.escape(VERSION)}_source.buildinfo'"),
    (lambda d: (d / f"{SOURCE}_{VERSION}.dsc").unlink(), rf"missing file '{SOURCE}_{re.escape(VERSION)}.dsc'"),
    (lambda d: _rename_everywhere(d / f"{SOURCE}_{VERSION}_source.changes", f"{SOURCE}_{VERSION}_source.buildinfo", "../x"),
     "Invalid file name '../x'"),
])
def test_upload_corrupt_files(upload_path, corrupt, message):
    (upload_path.parent.parent / "x").write_text("outside")
    corrupt(upload_path.parent)
    with pytest.raises(ChangesError, match=message) as error:
        changes.Upload(upload_path).check_files()
    assert str(error.value).startswith(upload_path.name)


def test_upload_malformed(upload_path):
    upload_path.write_text(upload_path.read_text().replace("Urgency: medium", "Urgency medium"))
    with pytest.raises(ChangesError, match=r"source.changes: line \d+: malformed, expected 'Field: value': 'Urgency medium'"):
        changes.Upload(upload_path)


def test_upload_move_to_events(upload_path, home):
    upload = changes.Upload(upload_path)
    target = upload.events_dir()
    assert target == home.events / SOURCE / VERSION / upload.timecode / "source"
    try:
        upload.move_to(target)
        assert upload.path.parent == target
        upload.check_files()
        assert len(list(target.iterdir())) == 4
        assert list(upload_path.parent.iterdir()) == []
    finally:
        shutil.rmtree(home.events / SOURCE, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Buildrequests
# ---------------------------------------------------------------------------------------------

def test_buildrequest(upload_path, keyring, gpg, tmp_path):
    upload = changes.Upload(upload_path)
    breq = make_breq(upload, tmp_path / "spool", gpg)
    assert breq.path == tmp_path / "spool" / f"{SOURCE}_{VERSION}_mini-buildd-buildrequest_{ARCH}.changes"
    assert breq.timecode == upload.timecode and breq.bkey == f"{upload.key}/{ARCH}"

    # Exactly the field order of the upstream buildrequest
    assert breq.field_names() == ref_fields(REF_BREQ)
    text = breq.path.read_text(encoding="utf-8")
    assert text.startswith("-----BEGIN PGP SIGNED MESSAGE-----\n")
    assert "\nX-Mini-Buildd-Deb-Build-Options:\n" in text  # empty value: no trailing blank, as upstream
    assert f"\nX-Mini-Buildd-Timecode: {upload.timecode}\n" in text
    signature_start = r"\.changes\.tar\n\n-----BEGIN PGP SIGNATURE-----\n"  # upstream layout
    assert re.search(signature_start, text) and re.search(signature_start, REF_BREQ.read_text())

    # Signed by the instance key: our keyring and plain gpgv agree
    assert breq.signature_check(keyring).key_id == gpg.get_secret_key()["long_id"]
    gpg.export(tmp_path / "instance.gpg")
    assert gnupg.gpgv_verify(tmp_path / "instance.gpg", breq.path) == [gpg.get_secret_key()["long_id"]]

    # Field values
    assert breq.distribution == "bookworm-test-unstable" and breq.architecture == ARCH
    assert breq.arch_all is True
    assert breq.lintian_mode == QAMode.IGNORE and breq.piuparts_mode == QAMode.ERRFAIL
    assert breq.autopkgtest_mode == QAMode.DISABLED
    assert breq.get("X-Mini-Buildd-Lintian-Mode") == "IGNORE"
    assert breq.add_depends == ["foo (>= 1.0)", "bar"]  # one sbuild --add-depends each (not the characters of a string)
    assert breq.upload_to == "ftp://localhost:8067" and breq.builder == "http://builder:8066"
    assert breq.buildlog == f"{breq.bkey}/{SOURCE}_{VERSION}_{ARCH}.buildlog"
    files = breq.files()
    assert [(f["name"], f["section"], f["priority"]) for f in files] == [(breq.name + ".tar", "mini-buildd", "extra")]
    assert files[0]["md5"] == md5(breq.tar_path) and files[0]["size"] == breq.tar_path.stat().st_size
    breq.check_files()

    # Tar: the upstream layout
    expected = [n.replace(REF_VERSION, VERSION) for n in ref_listing(REF_BREQ.name)]
    assert tar_names(breq.tar_path) == expected
    assert breq.config_file("apt_preferences") == (REF_FILES / "apt_preferences").read_text()
    assert breq.config_file("sbuildrc_snippet") == ""

    # Event extra: the upstream keys
    reference = json.loads((REF / "events" / "BUILDING.sample.json").read_text())["extra"]
    extra = breq.to_event_extra()
    assert list(extra) == list(reference)
    assert extra["changes"] == f"{breq.bkey}/{breq.name}"

    # Unpack into a build dir; dpkg-source accepts the unpacked source
    build_dir = tmp_path / "builds" / "bkey"
    assert breq.unpack(build_dir) == build_dir
    assert sorted(p.name for p in build_dir.iterdir()) == sorted([".config", f"{SOURCE}_{VERSION}.dsc",
                                                                  f"{SOURCE}_{VERSION}.tar.xz"])
    assert breq.config_file("apt_keys") == gpg.pub_key()
    assert (build_dir / ".config" / "apt_sources.list").read_text() == (REF_FILES / "apt_sources.list").read_text()
    assert breq.dsc_path() == build_dir / f"{SOURCE}_{VERSION}.dsc"
    call.run(["dpkg-source", "--require-strong-checksums", "-x", breq.dsc_path(), tmp_path / "extracted"])
    assert (tmp_path / "extracted" / "debian" / "changelog").read_text() == CHANGELOG

    # A buildrequest is moved with its tar
    moved = breq.move_to(tmp_path / "events")
    assert moved.parent == tmp_path / "events" and breq.tar_path.parent == tmp_path / "events"
    breq.check_files()


def test_buildrequest_without_arch_all(upload_path, gpg, tmp_path, keyring):
    breq = make_breq(changes.Upload(upload_path), tmp_path / "spool", gpg, arch_all=False)
    assert breq.arch_all is False
    assert breq.field_names() == [f for f in ref_fields(REF_BREQ) if f != "X-Mini-Buildd-Arch-All"]
    breq.signature_check(keyring)


def test_buildrequest_explicit_dsc_files(upload_path, gpg, tmp_path):
    """Source files from elsewhere (e.g. the orig tarball from the pool)."""
    pool = tmp_path / "pool"
    pool.mkdir()
    tarball = upload_path.parent / f"{SOURCE}_{VERSION}.tar.xz"
    shutil.move(tarball, pool / tarball.name)
    upload = changes.Upload(upload_path)
    breq = make_breq(upload, tmp_path / "spool", gpg, dsc_files=[upload.dsc_path(), pool / tarball.name])
    assert f"{SOURCE}_{VERSION}.tar.xz" in tar_names(breq.tar_path)
    with pytest.raises(ChangesError, match=r"source files do not match the .dsc: missing \['mbd-hello_1.0~test12\+1.tar.xz'\]"):
        make_breq(upload, tmp_path / "spool2", gpg, dsc_files=[upload.dsc_path()])
    with pytest.raises(ChangesError, match="need exactly one .dsc"):
        make_breq(upload, tmp_path / "spool2", gpg, dsc_files=[pool / tarball.name])
    (pool / tarball.name).write_bytes(b"short")
    with pytest.raises(ChangesError, match="missing or of wrong size"):
        make_breq(upload, tmp_path / "spool2", gpg, dsc_files=[upload.dsc_path(), pool / tarball.name])


def test_buildrequest_bad_arguments(upload_path, gpg, tmp_path):
    upload = changes.Upload(upload_path)
    fields = dict(BREQ_FIELDS)
    del fields["Builder"]
    with pytest.raises(ValueError, match=r"Missing buildrequest field\(s\): Builder"):
        make_breq(upload, tmp_path / "s", gpg, fields=fields)
    with pytest.raises(ValueError, match=r"Unknown buildrequest field\(s\): Lintian-Modus"):
        make_breq(upload, tmp_path / "s", gpg, fields=dict(BREQ_FIELDS, **{"Lintian-Modus": "x"}))
    with pytest.raises(ValueError, match=r"Unknown buildrequest config file\(s\): sources.list"):
        make_breq(upload, tmp_path / "s", gpg, config_files={"sources.list": ""})
    with pytest.raises(ValueError, match="Malformed distribution"):
        make_breq(upload, tmp_path / "s", gpg, distribution_str="unstable")
    # Multi-line values are folded to one line: no field injection
    breq = make_breq(upload, tmp_path / "s", gpg,
                     fields=dict(BREQ_FIELDS, **{"Deb-Build-Options": "nocheck\nX-Mini-Buildd-Builder: evil"}))
    assert breq.deb_build_options == "nocheck X-Mini-Buildd-Builder: evil"
    assert breq.builder == "http://builder:8066"


# ---------------------------------------------------------------------------------------------
# Buildresults
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def unpacked_breq(upload_path, gpg, tmp_path):
    breq = make_breq(changes.Upload(upload_path), tmp_path / "spool", gpg)
    breq.unpack(tmp_path / "build")
    return breq


def test_buildresult(unpacked_breq, gpg, keyring, tmp_path):
    breq = unpacked_breq
    build_dir = tmp_path / "build"
    sbuild_changes = fake_sbuild_output(build_dir)
    bres = changes.create_buildresult(breq, build_dir, tmp_path / "out", sbuild_summary=SUMMARY,
                                      buildlog_path=f"{SOURCE}_{VERSION}_{ARCH}.build", gnupg=gpg)
    assert bres.path == tmp_path / "out" / f"{SOURCE}_{VERSION}_mini-buildd-buildresult_{ARCH}.changes"
    assert isinstance(bres, changes.Buildresult) and bres.timecode == breq.timecode and bres.bkey == breq.bkey

    # Exactly the upstream field order (same summary keys as the reference result)
    assert bres.field_names() == ref_fields(REF_BRES)
    assert bres.signature_check(keyring).key_id == gpg.get_secret_key()["long_id"]
    for name in changes.BUILDRESULT_COPIED_FIELDS:
        assert bres.x_get(name) == breq.x_get(name)
    assert bres.sbuild_status == "successful"
    assert bres.get("X-Mini-Buildd-Sbuild-Build-Space") == "124"
    assert bres.sbuild_checks() == {"lintian": "pass"}
    assert "X-Mini-Buildd-Sbuild-Fail-Stage" not in bres
    assert [f["name"] for f in bres.files()] == [f"{SOURCE}_{VERSION}_{ARCH}.buildlog", bres.name + ".tar"]
    bres.check_files()
    assert bres.buildlog_path().read_text() == "sbuild log\n" * 100
    assert tar_names(bres.tar_path) == [n.replace(REF_VERSION, VERSION).replace("_amd64.deb", "_all.deb")
                                        for n in ref_listing(REF_BRES.name)]

    # Success under the breq's modes (lintian IGNORE, piuparts ERRFAIL without result -> fails)
    assert bres.succeeded(breq.lintian_mode, QAMode.DISABLED, breq.autopkgtest_mode)
    assert not bres.succeeded(breq.lintian_mode, breq.piuparts_mode, breq.autopkgtest_mode)
    assert bres.succeeded(breq.lintian_mode, breq.piuparts_mode, breq.autopkgtest_mode, ignore_checks=True)

    # Event extra: the upstream keys (plus the lintian result the reference build did not report)
    reference = json.loads((REF / "events" / "BUILT.sample.json").read_text())["extra"]
    extra = bres.to_event_extra()
    assert [k for k in extra if k != "sbuild_lintian"] == list(reference)
    assert extra["buildlog"] == breq.buildlog and extra["sbuild_status"] == "successful"

    # Packager side: unpack the binary changes and its files
    inner = bres.unpack(tmp_path / "install")
    assert inner == tmp_path / "install" / sbuild_changes.name
    assert changes.Changes(inner).file_paths()[1].read_bytes() == (build_dir / f"{SOURCE}_{VERSION}_all.deb").read_bytes()


def test_buildresult_failed_build(unpacked_breq, gpg, keyring, tmp_path):
    build_dir = tmp_path / "build"
    (build_dir / "log").write_text("it broke\n")
    bres = changes.create_buildresult(unpacked_breq, build_dir, tmp_path / "out",
                                      sbuild_summary={"Status": "attempted", "Fail-Stage": "build"},
                                      buildlog_path=build_dir / "log", gnupg=gpg)
    bres.signature_check(keyring)
    assert bres.sbuild_status == "attempted" and bres.tar_path is None
    assert [f["name"] for f in bres.files()] == [f"{SOURCE}_{VERSION}_{ARCH}.buildlog"]
    assert bres.unpack(tmp_path / "install") is None
    assert not bres.succeeded(QAMode.DISABLED, QAMode.DISABLED, QAMode.DISABLED, ignore_checks=True)


def test_buildresult_lintian_tags(unpacked_breq, gpg, keyring, tmp_path):
    """The tags travel in the signed result (the separator inside a tag can't split it) and reach the event."""
    tags = ["E: mbd-x: no-copyright-file", "W: mbd-x source: odd | tag [debian/control]"]
    bres = changes.create_buildresult(unpacked_breq, tmp_path / "build", tmp_path / "out",
                                      sbuild_summary={"Status": "successful", "Lintian": "fail"},
                                      buildlog_path=None, lintian_tags=tags, gnupg=gpg)
    bres.signature_check(keyring)
    assert bres.lintian_tags == ["E: mbd-x: no-copyright-file", "W: mbd-x source: odd / tag [debian/control]"]
    assert changes.load(bres.path).lintian_tags == bres.lintian_tags
    assert bres.to_event_extra()["lintian_tags"] == "E: mbd-x: no-copyright-file | W: mbd-x source: odd / tag [debian/control]"
    assert not bres.succeeded(QAMode.ERRFAIL, QAMode.DISABLED, QAMode.DISABLED)


def test_buildresult_internal_error_and_cancel(unpacked_breq, gpg, keyring, tmp_path):
    bres = changes.create_buildresult(unpacked_breq, tmp_path / "build", tmp_path / "out", sbuild_summary={},
                                      buildlog_path=None, internal_error="Traceback:\n  boom\nOSError: disk full",
                                      canceled_by="admin <admin@example.org>", gnupg=gpg)
    bres.signature_check(keyring)
    assert bres.sbuild_status == "error"
    assert bres.internal_error == "Traceback: boom OSError: disk full"
    assert bres.canceled_by == "admin <admin@example.org>"
    assert bres.field_names()[-3:] == ["X-Mini-Buildd-Sbuild-Status", "X-Mini-Buildd-Internal-Error",
                                       "X-Mini-Buildd-Canceled-By"]
    log = bres.buildlog_path().read_text()
    assert "disk full" in log and "admin" in log
    bres.check_files()
    assert not bres.succeeded(QAMode.DISABLED, QAMode.DISABLED, QAMode.DISABLED)
    extra = bres.to_event_extra()
    assert extra["internal_error"] == bres.internal_error and extra["canceled_by"] == bres.canceled_by


def test_buildresult_broken_sbuild_changes(unpacked_breq, gpg, tmp_path):
    build_dir = tmp_path / "build"
    fake_sbuild_output(build_dir)
    (build_dir / f"{SOURCE}_{VERSION}_all.deb").write_bytes(b"truncated")
    bres = changes.create_buildresult(unpacked_breq, build_dir, tmp_path / "out", sbuild_summary=SUMMARY,
                                      buildlog_path=f"{SOURCE}_{VERSION}_{ARCH}.build", gnupg=gpg)
    assert bres.tar_path is None
    assert re.search(r"Unusable sbuild changes: .*size mismatch for 'mbd-hello_1.0~test12\+1_all.deb'", bres.internal_error)
    assert not bres.succeeded(QAMode.DISABLED, QAMode.DISABLED, QAMode.DISABLED)
    assert not list((tmp_path / "out").glob("*.tar"))


def test_buildresult_tampered_tar(unpacked_breq, gpg, tmp_path):
    build_dir = tmp_path / "build"
    fake_sbuild_output(build_dir)
    bres = changes.create_buildresult(unpacked_breq, build_dir, tmp_path / "out", sbuild_summary=SUMMARY,
                                      buildlog_path=f"{SOURCE}_{VERSION}_{ARCH}.build", gnupg=gpg)
    with open(bres.tar_path, "r+b") as f:
        f.seek(600)
        f.write(b"X")
    with pytest.raises(ChangesError, match=r"md5 checksum mismatch for '.*buildresult_amd64.changes.tar'"):
        bres.unpack(tmp_path / "install")
