"""The packager's source completion on real files: an upload may omit an orig tarball that is in
the repository pool already (upstream §1.4 3d); the copy from the pool must travel with the upload
out of its quarantine directory (it once stayed behind and the buildrequest then lacked it)."""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import hashlib
import pathlib
import types

import pytest

from mini_buildd import changes
from mini_buildd.pipeline import incoming
from mini_buildd.pipeline.packager import Packager, Rejected

SOURCE, VERSION = "hello", "1.0-2"
ORIG = b"pretend orig tarball\n" * 50
DEBIAN = b"pretend debian tarball, revision 2\n" * 20


def _sums(files, algo):
    return "".join(f" {hashlib.new(algo, data).hexdigest()} {len(data)} {name}\n" for name, data in files.items())


def _dsc(orig=ORIG):
    files = {f"{SOURCE}_1.0.orig.tar.xz": orig, f"{SOURCE}_{VERSION}.debian.tar.xz": DEBIAN}
    return (f"Format: 3.0 (quilt)\nSource: {SOURCE}\nVersion: {VERSION}\nChecksums-Sha256:\n{_sums(files, 'sha256')}"
            f"Files:\n{_sums(files, 'md5')}").encode()


def _upload(directory, dsc):
    """An upload of the .dsc and the debian tarball only (orig omitted), in a quarantine dir."""
    files = {f"{SOURCE}_{VERSION}.dsc": dsc, f"{SOURCE}_{VERSION}.debian.tar.xz": DEBIAN}
    for name, data in files.items():
        (directory / name).write_bytes(data)
    path = directory / f"{SOURCE}_{VERSION}_source.changes"
    path.write_text(f"Format: 1.8\nSource: {SOURCE}\nVersion: {VERSION}\nDistribution: bookworm-test-unstable\n"
                    f"Architecture: source\nChanged-By: t <t@example.org>\nChecksums-Sha256:\n{_sums(files, 'sha256')}"
                    "Files:\n" + "".join(f" {hashlib.md5(d).hexdigest()} {len(d)} misc optional {n}\n" for n, d in files.items()))
    return changes.Upload(path)


@pytest.fixture
def repository(tmp_path):
    """A reprepro-like pool with the package's orig tarball."""
    root = tmp_path / "repo"
    pool = root / "pool" / "main" / "h" / SOURCE
    pool.mkdir(parents=True)
    (pool / f"{SOURCE}_1.0.orig.tar.xz").write_bytes(ORIG)
    return types.SimpleNamespace(mbd_path=lambda: root)


def test_orig_from_the_pool_travels_with_the_upload(temp_home, repository, tmp_path):
    upload = _upload(incoming.new_arrival_dir(), _dsc())
    upload.check_files()
    accepted = Packager._complete_dsc_files(upload, repository, upload.dsc_path())  # pylint: disable=protected-access
    assert set(accepted) == {f"{SOURCE}_{VERSION}.dsc", f"{SOURCE}_1.0.orig.tar.xz", f"{SOURCE}_{VERSION}.debian.tar.xz"}
    target = tmp_path / "events"
    incoming.release(upload, target, extra_names=accepted)
    assert (target / f"{SOURCE}_1.0.orig.tar.xz").read_bytes() == ORIG
    assert not list(temp_home.quarantine.iterdir())
    # ... so the source is complete for the buildrequest
    names = [f["name"] for f in changes.read_dsc_files(upload.dsc_path())]
    assert all((target / n).is_file() for n in names)


def test_pool_file_with_other_content_is_not_taken(temp_home, repository):  # pylint: disable=unused-argument
    upload = _upload(incoming.new_arrival_dir(), _dsc(orig=b"what the uploader claims the orig is\n"))
    with pytest.raises(Rejected, match="neither in the upload nor in the repository pool"):
        Packager._complete_dsc_files(upload, repository, upload.dsc_path())  # pylint: disable=protected-access


def test_pool_is_never_looked_up_through_a_dsc_name(temp_home, repository):  # pylint: disable=unused-argument
    dsc = _dsc().replace(f"{SOURCE}_1.0.orig.tar.xz".encode(), b"../../../../etc/passwd")
    upload = _upload(incoming.new_arrival_dir(), dsc)
    with pytest.raises(Rejected, match="Invalid file name"):
        Packager._complete_dsc_files(upload, repository, upload.dsc_path())  # pylint: disable=protected-access
    assert not pathlib.Path(upload.path.parent / "passwd").exists()
