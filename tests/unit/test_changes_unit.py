"""Unit tests for the pure parts of mini_buildd.changes: names, parsing, file checks, event extra,
safe tar extraction, sbuild summary fields and the success matrix, buildrequest and buildresult
data; the file digests and epoch-less versions they use (no gpg, no dpkg)."""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import datetime
import hashlib
import io
import json
import re
import shutil
import tarfile

import pytest

from mini_buildd import changes, dist, files
from mini_buildd.changes import ChangesError
from mini_buildd.dist import QAMode
from tests.helpers.reference import REFERENCE

REF = REFERENCE
REF_FILES = REF / "files"
REF_UPLOAD = REF_FILES / "mbd-hello_1.0~test12+4_source.changes"
REF_BREQ = REF_FILES / "mbd-hello_1.0~test12+4_mini-buildd-buildrequest_amd64.changes"
REF_BRES = REF_FILES / "mbd-hello_1.0~test12+4_mini-buildd-buildresult_amd64.changes"


def ref_event(kind):
    return json.loads((REF / "events" / f"{kind}.sample.json").read_text())


def md5(data):
    return hashlib.md5(data).hexdigest()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def write_upload(directory, files, name="foo_1.0_source.changes", extra="", sha=True, changed_by=True):
    """Write a user upload listing ``files`` ({name: bytes}, written beside it)."""
    directory.mkdir(parents=True, exist_ok=True)
    for fname, data in files.items():
        if "/" not in fname and fname not in (".", ".."):
            (directory / fname).write_bytes(data)
    lines = ["Format: 1.8", "Source: foo", "Architecture: source", "Version: 1.0",
             "Distribution: bookworm-test-unstable", "Maintainer: M <m@example.org>"]
    if changed_by:
        lines.append("Changed-By: C <c@example.org>")
    lines += ["Changes:", " foo (1.0) bookworm-test-unstable; urgency=medium", " .",
              "   * MINI_BUILDD_OPTION: lintian-mode=ignore"]
    if sha:
        lines.append("Checksums-Sha256:")
        lines += [f" {sha256(d)} {len(d)} {n}" for n, d in files.items()]
    lines.append("Files:")
    lines += [f" {md5(d)} {len(d)} misc optional {n}" for n, d in files.items()]
    path = directory / name
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------

def test_timecode_now():
    before = datetime.datetime.now(datetime.timezone.utc)
    tc = changes.timecode_now()
    assert re.fullmatch(r"\d{8}:\d{6}:\d{6}", tc)
    parsed = datetime.datetime.strptime(tc, "%Y%m%d:%H%M%S:%f").replace(tzinfo=datetime.timezone.utc)
    assert before <= parsed <= datetime.datetime.now(datetime.timezone.utc)


def test_names_and_classify():
    assert changes.name_for("foo", "1:2.0-1", "buildrequest", "amd64") == "foo_2.0-1_mini-buildd-buildrequest_amd64.changes"
    assert changes.name_for("foo", "2.0", "buildresult", "i386") == "foo_2.0_mini-buildd-buildresult_i386.changes"
    assert changes.name_for("foo", "3:2.0", "upload", "source") == "foo_2.0_source.changes"
    assert changes.buildlog_name("foo", "1:2.0", "amd64") == "foo_2.0_amd64.buildlog"
    with pytest.raises(ValueError, match="Unknown changes kind"):
        changes.name_for("foo", "1", "nope", "amd64")
    assert changes.classify("/x/foo_2.0_mini-buildd-buildrequest_amd64.changes") == "buildrequest"
    assert changes.classify("foo_2.0_mini-buildd-buildresult_amd64.changes") == "buildresult"
    assert changes.classify("foo_2.0_source.changes") == "upload"
    assert changes.classify("foo_2.0_amd64.changes") == "upload"
    with pytest.raises(ChangesError, match="not a changes file"):
        changes.classify("foo_2.0.dsc")
    assert changes.snake("X-Mini-Buildd-Buildlog-Building") == "buildlog_building"
    assert changes.snake("Changed-By") == "changed_by"


# ---------------------------------------------------------------------------------------------
# Parsing the reference files
# ---------------------------------------------------------------------------------------------

def test_reference_upload():
    upload = changes.load(REF_UPLOAD, timecode="20261122:014956:621502")
    assert isinstance(upload, changes.Upload) and upload.kind == "upload"
    assert (upload.source, upload.version, upload.distribution, upload.architecture) == \
        ("mbd-hello", "1.0~test12+4", "bookworm-test-unstable", "source")
    assert upload.key == "mbd-hello/1.0~test12+4/20261122:014956:621502"
    assert upload.bkey == upload.key + "/source"
    files = upload.files()
    assert [f["name"] for f in files] == ["mbd-hello_1.0~test12+4.dsc", "mbd-hello_1.0~test12+4.tar.xz",
                                          "mbd-hello_1.0~test12+4_source.buildinfo"]
    assert files[0] == {"name": "mbd-hello_1.0~test12+4.dsc", "md5": "7e49dc10ed853b7ac4c535eaf5ed182e", "size": 545,
                        "section": "misc", "priority": "optional", "sha1": "f84e57ff5825053201821b63d5ed6849ac730be8",
                        "sha256": "6f22c487be20ff7f643018712a861f12d3c3b91a8702ef43b0406eae88b49902"}
    assert upload.dsc_path() == REF_FILES / "mbd-hello_1.0~test12+4.dsc"
    assert upload.file_paths()[1] == REF_FILES / "mbd-hello_1.0~test12+4.tar.xz"
    assert "* Test upload 4." in upload.changes_text
    assert upload.upload_options() == {}
    # The reference dir has no source files
    with pytest.raises(ChangesError, match=r"missing file 'mbd-hello_1.0~test12\+4.dsc'"):
        upload.check_files()
    # Without a timecode in the file or the constructor: a new one
    assert re.fullmatch(r"\d{8}:\d{6}:\d{6}", changes.Changes(REF_UPLOAD).timecode)


def test_reference_upload_event_extra():
    upload = changes.Upload(REF_UPLOAD, timecode="20261122:014956:621502")
    extra = upload.to_event_extra()
    ref = ref_event("REJECTED")["extra"]
    ref.pop("error")
    assert list(extra) == list(ref)
    assert extra["changes"] == f"{upload.bkey}/mbd-hello_1.0~test12+4_source.changes"
    assert extra["maintainer"] == extra["changed_by"] == "Reference Peer <mbd-ref@localhost>"


def test_reference_buildrequest():
    breq = changes.load(REF_BREQ)
    assert isinstance(breq, changes.Buildrequest)
    assert breq.timecode == "20261122:014312:561641"
    assert breq.bkey == "mbd-hello/1.0~test12+4/20261122:014312:561641/amd64"
    assert breq.arch_all is True
    assert breq.lintian_mode == QAMode.ERRFAIL and breq.piuparts_mode == QAMode.DISABLED
    assert breq.autopkgtest_mode == QAMode.DISABLED
    assert breq.sbuild_config_blocks == ["set-default-path", "ccache"]
    assert breq.sbuild_setup_blocks == ["apt-setup", "apt-update", "ccache", "eatmydata"]
    assert breq.build_dep_resolver == "aptitude"
    assert breq.deb_build_options == "" and breq.add_depends == []
    assert breq.upload_to == "ftp://127.0.0.1:18067" and breq.packager == "http://127.0.0.1:18066"
    assert breq.buildlog == f"{breq.bkey}/mbd-hello_1.0~test12+4_amd64.buildlog"
    assert breq.buildlog_name == "mbd-hello_1.0~test12+4_amd64.buildlog"
    assert breq.diststr.suite == "unstable"
    assert [f["name"] for f in breq.files()] == [breq.name + ".tar"]

    extra = breq.to_event_extra()
    ref = ref_event("BUILDING")["extra"]
    assert list(extra) == list(ref)
    assert extra["changes"] == f"{breq.bkey}/{breq.name}"
    assert extra["arch_all"] == "Yes" and extra["lintian_mode"] == "ERRFAIL" and extra["deb_build_options"] == ""


def test_reference_buildresult():
    bres = changes.load(REF_BRES)
    assert isinstance(bres, changes.Buildresult)
    assert bres.sbuild_status == "successful"
    assert bres.sbuild_checks() == {"lintian": "successful"}
    assert bres.tar_path == REF_FILES / (bres.name + ".tar")
    assert bres.buildlog_path() == REF_FILES / "mbd-hello_1.0~test12+4_amd64.buildlog"
    extra = bres.to_event_extra()
    ref = ref_event("BUILT")["extra"]
    assert [k for k in extra if k != "sbuild_lintian"] == list(ref)
    assert extra["sbuild_lintian"] == "successful" and extra["sbuild_build_time"] == "2"


# ---------------------------------------------------------------------------------------------
# Parse errors
# ---------------------------------------------------------------------------------------------

GOOD_BREQ = """Distribution: bookworm-test-unstable
Source: foo
Version: 1.0
Architecture: amd64
X-Mini-Buildd-Timecode: 20240101:000000:000001
Files:
 d41d8cd98f00b204e9800998ecf8427e 0 mini-buildd extra foo_1.0_mini-buildd-buildrequest_amd64.changes.tar
"""


@pytest.mark.parametrize("text, message", [
    ("", "empty changes file"),
    ("Source: foo\nVersion: 1.0\nArchitecture: source\nChanged-By: x\n", r"missing mandatory field\(s\): Distribution"),
    ("Distribution: d\nVersion: 1.0\nArchitecture: source\nChanged-By: x\n", r"missing mandatory field\(s\): Source"),
    ("Distribution: d\nSource: foo\nArchitecture: source\nChanged-By: x\n", r"missing mandatory field\(s\): Version"),
    ("Distribution: d\nSource: foo\nVersion: 1.0\nChanged-By: x\n", r"missing mandatory field\(s\): Architecture"),
    ("Distribution: d\nSource: foo\nVersion: 1.0\nArchitecture: source\n", r"missing mandatory field\(s\): Changed-By"),
    ("Distribution: d\nSource: foo\nVersion: 1.0\nArchitecture: source\nChanged-By: x\nthis is no field\n",
     "line 6: malformed"),
    ("Distribution: d\nSource: foo\n\nVersion: 1.0\nArchitecture: source\nChanged-By: x\n", "exactly one paragraph"),
    ("Distribution: d\nSource: foo\nSource: bar\nVersion: 1.0\nArchitecture: source\nChanged-By: x\n",
     "duplicate field 'Source'"),
    (" continued\nDistribution: d\n", "continuation line without a field"),
    ("Distribution: d\nSource: ../evil\nVersion: 1.0\nArchitecture: source\nChanged-By: x\n", "invalid Source"),
    ("Distribution: d\nSource: foo\nVersion: 1.0/../x\nArchitecture: source\nChanged-By: x\n", "invalid Version"),
    ("Distribution: d\nSource: foo\nVersion: 1.0\nArchitecture: source ../x\nChanged-By: x\n", "invalid Architecture"),
    ("Distribution: d\nSource: foo\nVersion: 1.0\nArchitecture: source\nChanged-By: x\nX-Mini-Buildd-Timecode: ../x\n",
     "malformed timecode"),
    ("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nDistribution: d\n", "broken PGP signature armor"),
])
def test_parse_errors(tmp_path, text, message):
    path = tmp_path / "foo_1.0_source.changes"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ChangesError, match=message) as error:
        changes.Changes(path)
    assert str(error.value).startswith("foo_1.0_source.changes: ")


def test_parse_errors_binary_and_missing(tmp_path):
    path = tmp_path / "foo_1.0_source.changes"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(ChangesError, match="not UTF-8"):
        changes.Changes(path)
    with pytest.raises(ChangesError, match="cannot read changes file"):
        changes.Changes(tmp_path / "nope_1_source.changes")


def test_special_kinds(tmp_path):
    path = tmp_path / "foo_1.0_mini-buildd-buildrequest_amd64.changes"
    path.write_text(GOOD_BREQ)
    breq = changes.load(path)  # no Changed-By needed
    assert isinstance(breq, changes.Buildrequest) and breq.timecode == "20240101:000000:000001"
    # Name must match the fields
    wrong = tmp_path / "bar_1.0_mini-buildd-buildrequest_amd64.changes"
    wrong.write_text(GOOD_BREQ)
    with pytest.raises(ChangesError, match="file name does not match its fields"):
        changes.load(wrong)
    two = tmp_path / "foo_1.0_mini-buildd-buildrequest_i386.changes"
    two.write_text(GOOD_BREQ.replace("Architecture: amd64", "Architecture: amd64 i386"))
    with pytest.raises(ChangesError, match="exactly one Architecture"):
        changes.load(two)
    # A kind class refuses other names
    with pytest.raises(ChangesError, match="file name does not fit kind 'buildresult'"):
        changes.Buildresult(path)
    # Bad QA mode in a buildrequest
    bad = tmp_path / "bad" / path.name
    bad.parent.mkdir()
    bad.write_text(GOOD_BREQ.replace("Files:", "X-Mini-Buildd-Lintian-Mode: sometimes\nFiles:"))
    with pytest.raises(ChangesError, match="Lintian-Mode: Invalid QA mode 'sometimes'"):
        _ = changes.Buildrequest(bad).lintian_mode


def test_upload_options_error(tmp_path):
    path = write_upload(tmp_path, {"foo_1.0.dsc": b"x"})
    assert changes.Upload(path).upload_options() == {"lintian-mode": QAMode.IGNORE}
    path.write_text(path.read_text().replace("lintian-mode=ignore", "no-such=1"))
    with pytest.raises(ChangesError, match="Unknown upload option 'no-such'"):
        changes.Upload(path).upload_options()


# ---------------------------------------------------------------------------------------------
# File checks
# ---------------------------------------------------------------------------------------------

FILES = {"foo_1.0.dsc": b"dsc contents\n", "foo_1.0.tar.xz": b"\xfd7zXZ\x00 not really" * 10}


def test_check_files_ok(tmp_path):
    path = write_upload(tmp_path, FILES)
    upload = changes.Upload(path)
    upload.check_files()
    assert upload.dsc_name() == "foo_1.0.dsc"


@pytest.mark.parametrize("corrupt, message", [
    (lambda d: (d / "foo_1.0.tar.xz").write_bytes(FILES["foo_1.0.tar.xz"] + b"x"),
     r"size mismatch for 'foo_1.0.tar.xz': listed 170, file has 171"),
    (lambda d: (d / "foo_1.0.tar.xz").write_bytes(FILES["foo_1.0.tar.xz"][::-1]), "md5 checksum mismatch for 'foo_1.0.tar.xz'"),
    (lambda d: (d / "foo_1.0.dsc").unlink(), "missing file 'foo_1.0.dsc'"),
    (lambda d: ((d / "foo_1.0.dsc").unlink(), (d / "foo_1.0.dsc").symlink_to(d / "foo_1.0.tar.xz")),
     "'foo_1.0.dsc' is not a regular file"),
])
def test_check_files_errors(tmp_path, corrupt, message):
    path = write_upload(tmp_path, FILES)
    corrupt(tmp_path)
    with pytest.raises(ChangesError, match=message):
        changes.Upload(path).check_files()


def test_check_files_sha256_only(tmp_path):
    path = write_upload(tmp_path, FILES)
    text = path.read_text().replace(sha256(FILES["foo_1.0.dsc"]), "0" * 64)
    path.write_text(text)
    with pytest.raises(ChangesError, match="sha256 checksum mismatch for 'foo_1.0.dsc'"):
        changes.Upload(path).check_files()


@pytest.mark.parametrize("name", ["../x", "sub/x", "..", "/etc/passwd"])
def test_check_files_unsafe_names(tmp_path, name):
    path = write_upload(tmp_path / "in", {name: b"evil"}, sha=False)
    (tmp_path / "x").write_bytes(b"evil")
    upload = changes.Upload(path)  # parsing works
    for call in (upload.check_files, upload.file_paths):
        with pytest.raises(ChangesError, match=f"Invalid file name '{re.escape(name)}'"):
            call()


def test_files_field_errors(tmp_path):
    path = write_upload(tmp_path, FILES)
    text = path.read_text()
    path.write_text(text.replace(" misc optional foo_1.0.dsc", " foo_1.0.dsc"))
    with pytest.raises(ChangesError, match="Files line 1: expected 'MD5 SIZE SECTION PRIORITY NAME'"):
        changes.Upload(path).files()
    path.write_text(text.replace(f"{len(FILES['foo_1.0.dsc'])} foo_1.0.dsc", "3 foo_1.0.dsc", 1))
    with pytest.raises(ChangesError, match="size in Files"):
        changes.Upload(path).files()
    path.write_text(text.replace("Files:", f"Checksums-Sha1:\n {'0' * 40} 1 other.deb\nFiles:"))
    with pytest.raises(ChangesError, match=r"Checksums-Sha1 lists file\(s\) missing in Files: other.deb"):
        changes.Upload(path).files()
    path.write_text(text.replace("Files:", "Checksums-Sha1:\n 00 x other.deb\nFiles:"))
    with pytest.raises(ChangesError, match="Checksums-Sha1 line 1: expected 'CHECKSUM SIZE NAME'"):
        changes.Upload(path).files()


def test_move_to(tmp_path):
    path = write_upload(tmp_path / "incoming", FILES)
    (tmp_path / "incoming" / "unrelated").write_text("stays")
    upload = changes.Upload(path)
    target = tmp_path / "events" / "a" / "b"
    new = upload.move_to(target)
    assert new == target / path.name == upload.path
    assert sorted(p.name for p in target.iterdir()) == sorted([path.name] + list(FILES))
    assert [p.name for p in (tmp_path / "incoming").iterdir()] == ["unrelated"]
    upload.check_files()
    # Moving again to the same dir is a no-op; missing listed files are tolerated
    (target / "foo_1.0.dsc").unlink()
    assert upload.move_to(target) == new
    other = upload.move_to(tmp_path / "other")
    assert sorted(p.name for p in other.parent.iterdir()) == sorted([path.name, "foo_1.0.tar.xz"])


# ---------------------------------------------------------------------------------------------
# Safe tar extraction
# ---------------------------------------------------------------------------------------------

def make_tar(path, members):
    """members: list of (TarInfo kwargs, data or None)."""
    with tarfile.open(path, "w") as tar:
        for kwargs, data in members:
            info = tarfile.TarInfo(kwargs.pop("name"))
            for key, value in kwargs.items():
                setattr(info, key, value)
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def test_safe_extract_ok(tmp_path):
    tar = make_tar(tmp_path / "ok.tar", [({"name": ".config", "type": tarfile.DIRTYPE, "mode": 0o700}, None),
                                         ({"name": ".config/apt_keys", "mode": 0o4755}, b"keys"),
                                         ({"name": "foo.dsc", "mode": 0o440}, b"dsc")])
    names = changes.safe_extract(tar, tmp_path / "out")
    assert names == [".config/apt_keys", "foo.dsc"]
    assert (tmp_path / "out" / ".config" / "apt_keys").read_bytes() == b"keys"
    assert (tmp_path / "out" / "foo.dsc").stat().st_mode & 0o7777 == 0o644
    assert (tmp_path / "out" / ".config" / "apt_keys").stat().st_mode & 0o7777 == 0o644
    changes.safe_extract(tar, tmp_path / "out")  # again: overwrites


@pytest.mark.parametrize("member, message", [
    ({"name": "../evil"}, "unsafe member name '../evil'"),
    ({"name": "a/../../evil"}, "unsafe member name"),
    ({"name": "/tmp/evil"}, "unsafe member name '/tmp/evil'"),
    ({"name": "link", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, "only regular files and directories"),
    ({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "../x"}, "only regular files and directories"),
    ({"name": "dev", "type": tarfile.CHRTYPE}, "only regular files and directories"),
    ({"name": "fifo", "type": tarfile.FIFOTYPE}, "only regular files and directories"),
])
def test_safe_extract_refuses(tmp_path, member, message):
    data = b"evil" if member.get("type", tarfile.REGTYPE) == tarfile.REGTYPE else None
    tar = make_tar(tmp_path / "bad.tar", [({"name": "first"}, b"ok"), (dict(member), data)])
    out = tmp_path / "a" / "out"
    with pytest.raises(ChangesError, match=message):
        changes.safe_extract(tar, out)
    # checked before anything is written
    assert not (out / "first").exists()
    assert not (tmp_path / "a" / "evil").exists() and not (tmp_path / "evil").exists()


def test_safe_extract_symlink_in_dest(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (out / "sub").symlink_to(tmp_path / "elsewhere")
    tar = make_tar(tmp_path / "t.tar", [({"name": "sub/file"}, b"x")])
    with pytest.raises(ChangesError, match="would land outside"):
        changes.safe_extract(tar, out)
    assert not (tmp_path / "elsewhere" / "file").exists()


def test_safe_extract_garbage(tmp_path):
    (tmp_path / "g.tar").write_bytes(b"no tar at all" * 100)
    with pytest.raises(ChangesError, match="broken tar"):
        changes.safe_extract(tmp_path / "g.tar", tmp_path / "out")


def test_buildrequest_unpack_refuses_bad_tar(tmp_path):
    name = "foo_1.0_mini-buildd-buildrequest_amd64.changes"
    tar = make_tar(tmp_path / (name + ".tar"), [({"name": "../escaped"}, b"evil")])
    data = tar.read_bytes()
    (tmp_path / name).write_text(GOOD_BREQ.replace("d41d8cd98f00b204e9800998ecf8427e 0", f"{md5(data)} {len(data)}")
                                 .replace("Files:", f"Checksums-Sha256:\n {hashlib.sha256(data).hexdigest()} {len(data)} {name}.tar\nFiles:"))
    breq = changes.Buildrequest(tmp_path / name)
    with pytest.raises(ChangesError, match="unsafe member name '../escaped'"):
        breq.unpack(tmp_path / "build")
    assert not (tmp_path / "escaped").exists()


# ---------------------------------------------------------------------------------------------
# Buildresult: sbuild summary fields and success matrix
# ---------------------------------------------------------------------------------------------

def test_sbuild_summary_fields():
    fields = changes.sbuild_summary_fields({"Status": "successful", "Lintian": "warn (see log)", "Build Time": "2 s",
                                            "Autopkgtest": "no tests", "Fail-Stage": "build", "Version": "1.0"})
    assert fields == [("X-Mini-Buildd-Sbuild-Autopkgtest", "no tests"), ("X-Mini-Buildd-Sbuild-Build-Time", "2"),
                      ("X-Mini-Buildd-Sbuild-Lintian", "warn"), ("X-Mini-Buildd-Sbuild-Status", "successful")]
    assert changes.sbuild_summary_fields({}) == [("X-Mini-Buildd-Sbuild-Status", "error")]
    assert changes.sbuild_summary_fields(None) == [("X-Mini-Buildd-Sbuild-Status", "error")]


def write_bres(directory, sbuild, extra=""):
    """A buildresult changes file in ``directory`` with sbuild summary fields ``sbuild`` (and ``extra`` lines); return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "foo_1.0_mini-buildd-buildresult_amd64.changes"
    lines = ["Distribution: bookworm-test-unstable", "Source: foo", "Version: 1.0", "Architecture: amd64",
             "X-Mini-Buildd-Timecode: 20240101:000000:000001"]
    lines += [f"X-Mini-Buildd-Sbuild-{k}: {v}" for k, v in sbuild.items()]
    path.write_text("\n".join(lines) + "\n" + extra)
    return changes.Buildresult(path)


E, W, I, D = QAMode.ERRFAIL, QAMode.WARNFAIL, QAMode.IGNORE, QAMode.DISABLED


@pytest.mark.parametrize("sbuild, modes, ignore, expected", [
    ({"Status": "successful", "Lintian": "pass"}, (E, D, D), False, True),
    ({"Status": "successful", "Lintian": "successful"}, (W, D, D), False, True),
    ({"Status": "successful", "Lintian": "info"}, (W, D, D), False, True),
    ({"Status": "successful", "Lintian": "fail"}, (E, D, D), False, False),
    ({"Status": "successful", "Lintian": "failed"}, (E, D, D), False, False),
    ({"Status": "successful", "Lintian": "error"}, (W, D, D), False, False),
    ({"Status": "successful", "Lintian": "failed"}, (I, D, D), False, True),
    ({"Status": "successful", "Lintian": "failed"}, (D, D, D), False, True),
    ({"Status": "successful", "Lintian": "failed"}, (E, D, D), True, True),
    ({"Status": "successful", "Lintian": "warn"}, (E, D, D), False, True),
    ({"Status": "successful", "Lintian": "warn"}, (W, D, D), False, False),
    ({"Status": "successful"}, (E, D, D), False, False),          # lintian wanted, but no result
    ({"Status": "successful"}, (D, I, D), False, True),
    ({"Status": "successful", "Piuparts": "fail"}, (D, E, D), False, False),
    ({"Status": "successful", "Piuparts": "pass"}, (D, W, D), False, True),
    ({"Status": "successful", "Autopkgtest": "no tests"}, (D, D, E), False, True),
    ({"Status": "successful", "Autopkgtest": "no tests"}, (D, D, W), False, False),
    ({"Status": "successful", "Autopkgtest": "fail"}, (D, D, E), True, True),
    ({"Status": "skipped", "Lintian": "failed"}, (E, E, E), False, True),
    ({"Status": "attempted", "Lintian": "pass"}, (D, D, D), False, False),
    ({"Status": "failed"}, (D, D, D), True, False),
    ({"Status": "given-back"}, (D, D, D), False, False),
    ({}, (D, D, D), False, False),
])
def test_succeeded_matrix(tmp_path, sbuild, modes, ignore, expected):
    bres = write_bres(tmp_path, sbuild)
    assert bres.succeeded(*modes, ignore_checks=ignore) is expected
    # modes as names work too
    assert bres.succeeded(*(m.name.lower() for m in modes), ignore_checks=ignore) is expected


def test_succeeded_internal_error_or_cancel(tmp_path):
    ok = {"Status": "successful", "Lintian": "pass"}
    assert write_bres(tmp_path / "a", ok).succeeded(E, D, D)
    assert write_bres(tmp_path / "b", {}).sbuild_status == "error"
    bres = write_bres(tmp_path / "c", ok, "X-Mini-Buildd-Internal-Error: boom\n")
    assert bres.internal_error == "boom" and not bres.succeeded(E, D, D)
    bres = write_bres(tmp_path / "d", ok, "X-Mini-Buildd-Canceled-By: admin\n")
    assert bres.canceled_by == "admin" and not bres.succeeded(E, D, D)
    assert bres.unpack(tmp_path / "x") is None  # no tar listed


def test_reference_breq_copy_roundtrip(tmp_path):
    """Copies keep working after move (reference buildrequest without its tar: unpack reports it)."""
    shutil.copy(REF_BREQ, tmp_path)
    breq = changes.Buildrequest(tmp_path / REF_BREQ.name)
    with pytest.raises(ChangesError, match="missing file '.*changes.tar'"):
        breq.unpack(tmp_path / "build")


# ---------------------------------------------------------------------------------------------
# Signature check logic (keyring faked; the real gpg runs in the integration tests)
# ---------------------------------------------------------------------------------------------

class FakeKeyring:
    """Stands in for gnupg.TmpKeyring: returns a prepared VerifyResult-like object."""

    def __init__(self, valid, data=None, signatures=(), key_id=None):
        self.result = type("R", (), {"valid": valid, "data": data, "signatures": list(signatures), "key_id": key_id,
                                     "signer_key_ids": [s["key_id"] for s in signatures],
                                     "describe": lambda self: "signed by " + ", ".join(
                                         f"{s['key_id']} ({s['status']})" for s in self.signatures)})()
        self.checked = []

    def verify_signature(self, path, **_kwargs):
        self.checked.append(path)
        return self.result


def clearsigned(text):
    return ("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n" + text
            + "-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n")


def test_signature_check_logic(tmp_path):
    path = write_upload(tmp_path, FILES)
    payload = path.read_text()
    upload = changes.Upload(path)
    with pytest.raises(ChangesError, match="not signed$"):
        upload.signature_check(FakeKeyring(True, payload.encode()))

    path.write_text(clearsigned(payload))
    upload = changes.Upload(path)
    good = {"key_id": "AAAABBBBCCCCDDDD", "status": "good"}
    keyring = FakeKeyring(True, payload.encode(), [good], "AAAABBBBCCCCDDDD")
    assert upload.signature_check(keyring).key_id == "AAAABBBBCCCCDDDD"
    assert keyring.checked == [path]
    # gpg verified something else than what we parsed
    other = payload.replace("Version: 1.0", "Version: 6.6")
    with pytest.raises(ChangesError, match="signed content differs from the parsed file"):
        upload.signature_check(FakeKeyring(True, other.encode(), [good], "AAAABBBBCCCCDDDD"))
    # unknown keys, bad and expired signatures, nothing found
    unknown = [{"key_id": "1111222233334444", "status": "no-public-key"},
               {"key_id": "5555666677778888", "status": "no-public-key"}]
    with pytest.raises(ChangesError, match=r"signed by unknown key\(s\) 1111222233334444, 5555666677778888$"):
        upload.signature_check(FakeKeyring(False, None, unknown))
    with pytest.raises(ChangesError, match=r"signature check failed: signed by AAAABBBBCCCCDDDD \(bad\)"):
        upload.signature_check(FakeKeyring(False, None, [{"key_id": "AAAABBBBCCCCDDDD", "status": "bad"}]))
    with pytest.raises(ChangesError, match=r"signature check failed: .*\(expired-signature\)"):
        upload.signature_check(FakeKeyring(False, None, [{"key_id": "AAAABBBBCCCCDDDD", "status": "expired-signature"}]))
    with pytest.raises(ChangesError, match="no valid signature found"):
        upload.signature_check(FakeKeyring(False, None, []))


# ---------------------------------------------------------------------------------------------
# File lists from python-debian: a word too many is refused, a one-line field is read
# ---------------------------------------------------------------------------------------------

def test_file_list_surplus_word(tmp_path):
    path = write_upload(tmp_path, FILES)
    text = path.read_text()
    path.write_text(text.replace(" misc optional foo_1.0.dsc", " misc optional foo_1.0.dsc extra"))
    with pytest.raises(ChangesError, match="Files line 1: expected 'MD5 SIZE SECTION PRIORITY NAME'"):
        changes.Upload(path).files()
    path.write_text(text.replace(f" {len(FILES['foo_1.0.dsc'])} foo_1.0.dsc", f" {len(FILES['foo_1.0.dsc'])} foo_1.0.dsc x", 1))
    with pytest.raises(ChangesError, match="Checksums-Sha256 line 1: expected 'CHECKSUM SIZE NAME'"):
        changes.Upload(path).files()


def test_file_list_one_line_field(tmp_path):
    data = FILES["foo_1.0.dsc"]
    path = write_upload(tmp_path, {"foo_1.0.dsc": data}, sha=False)
    path.write_text(path.read_text().replace("Files:\n ", "Files: "))
    upload = changes.Upload(path)
    assert [(f["name"], f["size"], f["md5"]) for f in upload.files()] == [("foo_1.0.dsc", len(data), md5(data))]
    assert upload.get("Files") == f"{md5(data)} {len(data)} misc optional foo_1.0.dsc"


def test_read_dsc_files(tmp_path):
    dsc = tmp_path / "foo_1.0.dsc"
    dsc.write_text("Format: 3.0 (native)\nSource: foo\nVersion: 1.0\n"
                   f"Checksums-Sha256:\n {'A' * 64} 3 foo_1.0.tar.xz\nFiles:\n {'B' * 32} 3 foo_1.0.tar.xz\n")
    assert changes.read_dsc(dsc)["Source"] == "foo"
    assert changes.read_dsc_files(dsc) == [{"name": "foo_1.0.tar.xz", "md5": "b" * 32, "size": 3, "sha256": "a" * 64}]
    dsc.write_text(dsc.read_text().replace("3 foo_1.0.tar.xz\n", "3 ../foo_1.0.tar.xz\n"))
    with pytest.raises(ChangesError, match="Invalid file name '../foo_1.0.tar.xz'"):
        changes.read_dsc_files(dsc)
    dsc.write_text(dsc.read_text().replace(f" {'B' * 32} 3", f" {'B' * 32}"))
    with pytest.raises(ChangesError, match="foo_1.0.dsc: Files line 1: expected 'MD5 SIZE NAME'"):
        changes.read_dsc_files(dsc)
    dsc.write_text("Format: 3.0 (native)\n")
    with pytest.raises(ChangesError, match=r"not a .dsc \(no Source/Version\)"):
        changes.read_dsc(dsc)


# ---------------------------------------------------------------------------------------------
# Buildrequest and buildresult data (dataclasses) from and to the deb822 form
# ---------------------------------------------------------------------------------------------

def test_buildrequest_data():
    breq = changes.load(REF_BREQ)
    data = breq.data
    assert isinstance(data, changes.BuildrequestData)
    assert (data.source, data.architecture, data.timecode) == ("mbd-hello", "amd64", "20261122:014312:561641")
    assert data.arch_all is True and data.lintian_mode == "ERRFAIL" and data.build_time_limit is None
    assert data.sbuild_config_blocks == "set-default-path ccache" and breq.sbuild_config_blocks == ["set-default-path", "ccache"]
    fields = data.to_fields(["SHA256 LINE"], ["FILES LINE"])
    # The file's fields, in its order (the reference file has no Checksums-Sha256)
    assert [name for name, _ in fields] == breq.field_names()[:-1] + ["Checksums-Sha256", "Files"]
    assert all(breq.get(name) == value for name, value in fields[:-2])
    assert fields[-2:] == [("Checksums-Sha256", ["SHA256 LINE"]), ("Files", ["FILES LINE"])]
    # Optional and absent fields
    no_arch_all = changes.BuildrequestData(**dict(vars(data), arch_all=False, build_time_limit="3600"))
    names = [name for name, _ in no_arch_all.to_fields([], [])]
    assert "X-Mini-Buildd-Arch-All" not in names and names[-3] == "X-Mini-Buildd-Build-Time-Limit"


def test_buildresult_data():
    bres = changes.load(REF_BRES)
    data = bres.data
    assert isinstance(data, changes.BuildresultData)
    assert data.builder == "http://127.0.0.1:18066" and data.internal_error is None and data.canceled_by is None
    assert data.sbuild == {"Status": "successful", "Lintian": "successful", "Build-Time": "2", "Package-Time": "43",
                           "Space": "124", "Build-Space": "124"}
    fields = data.to_fields(["SHA256 LINE"], bres.get("Files").splitlines())
    names = [name for name, _ in fields]
    assert [name for name in names if name != "Checksums-Sha256"] == bres.field_names()
    assert all(bres.get(name) == value for name, value in fields if not isinstance(value, list))
    assert changes.sbuild_summary_fields({"Status": "successful", "Build Time": "2 s"}) == \
        changes.BuildresultData(**dict(vars(data), sbuild={"Status": "successful", "Build-Time": "2"})).to_fields([], [])[-2:]


# ---------------------------------------------------------------------------------------------
# Shared helpers: file digests, epoch-less versions
# ---------------------------------------------------------------------------------------------

def test_file_digests(tmp_path):
    path = tmp_path / "data"
    data = b"some data\n" * 100000
    path.write_bytes(data)
    assert files.digests(path, ("md5", "sha1", "sha256")) == {"md5": md5(data), "sha1": hashlib.sha1(data).hexdigest(),
                                                              "sha256": sha256(data)}
    assert files.digest(path, "md5") == md5(data) and files.sha256(path) == sha256(data) == changes.file_sha256(path)


def test_strip_epoch():
    assert dist.strip_epoch("1:2.0-1") == "2.0-1" and dist.strip_epoch("2.0-1") == "2.0-1"
    assert dist.strip_epoch("1:2.0:3-1") == "2.0:3-1"
