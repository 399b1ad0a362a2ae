"""Installability checks (issue #16) with the real tools: dose-distcheck on real ``Packages``
files, base indices fetched over HTTP from a local archive whose ``InRelease`` is signed with a
real gpg key and verified, their hashes checked, a tampered index refused, the cache used when the
archive is gone; and the check of a change (candidate in, old binaries out) on a real reprepro
export layout.

The Django models a check reads (distribution, its sources) are stood in for by plain objects
with the same attributes: what is tested is the fetching, verifying and checking, not the ORM."""

# pylint: disable=redefined-outer-name  # pytest passes each fixture as the parameter of its name

import hashlib
import http.server
import lzma
import os
import pathlib
import threading
import types

import pytest

from mini_buildd import config
from mini_buildd.archive import indices, installability
from mini_buildd.tools import dose, gnupg

ED25519 = "Key-Type: EdDSA\nKey-Curve: ed25519\nKey-Usage: sign\nExpire-Date: 0"

BASE = """\
Package: libc6
Version: 2.36-9
Architecture: amd64
Depends: libgcc-s1

Package: libgcc-s1
Version: 12.2.0-14
Architecture: amd64
Depends: libc6 (>= 2.35)

Package: base-files
Version: 12.4
Architecture: amd64
Essential: yes

Package: mawk
Version: 1.3.4
Architecture: amd64
Provides: awk
Depends: libc6

Package: old-conflicter
Version: 1
Architecture: amd64
Conflicts: mbd-new

Package: unrelated-big
Version: 1
Architecture: amd64
Depends: unrelated-dep

Package: unrelated-dep
Version: 1
Architecture: amd64
"""


def _stanza(package, version="1.0", source=None, arch="all", depends="", extra=""):
    text = f"Package: {package}\nVersion: {version}\nArchitecture: {arch}\n"
    text += f"Source: {source}\n" if source else ""
    text += f"Depends: {depends}\n" if depends else ""
    return text + extra


# ------------------------------------------------------------------------------------------------ dose-distcheck
def test_dose_names_missing_relations_and_conflicts(tmp_path):
    (tmp_path / "base").write_text(BASE)
    (tmp_path / "fg").write_text("\n".join([
        _stanza("app", depends="libc6, awk, mbd-lib (>= 2)"),
        _stanza("ok", depends="awk | gawk"),
        _stanza("mbd-new", arch="amd64", depends="old-conflicter")]))
    broken = {b.package: b for b in dose.distcheck("amd64", [tmp_path / "fg"], [tmp_path / "base"])}
    assert set(broken) == {"app", "mbd-new"}
    assert broken["app"].reasons == ("app 1.0 depends on mbd-lib (>= 2), which is missing",)
    assert "conflicts with" in broken["mbd-new"].reasons[0] and "mbd-new" in broken["mbd-new"].reasons[0]


def test_dose_error_is_not_a_report(tmp_path):
    (tmp_path / "fg").write_text(_stanza("a"))
    with pytest.raises(dose.DoseError):
        dose.distcheck("amd64", [tmp_path / "fg"], [tmp_path / "missing-file"])


# ------------------------------------------------------------------------------------------------ closure
def test_closure_gives_the_same_answer_as_the_whole_index(tmp_path):
    (tmp_path / "base").write_text(BASE)
    fg = tmp_path / "fg"
    fg.write_text("\n".join([_stanza("app", depends="awk, nosuch"), _stanza("good", depends="libc6")]))
    index = indices.PackagesIndex(tmp_path / "base")
    subset = index.closure(["awk", "nosuch", "libc6"])
    index.write(subset, tmp_path / "subset")
    names = {line.split(": ")[1] for line in (tmp_path / "subset").read_text().splitlines() if line.startswith("Package: ")}
    assert names == {"mawk", "libc6", "libgcc-s1", "base-files"}  # providers, dependencies, essential; nothing else
    whole = [str(b) for b in dose.distcheck("amd64", [fg], [tmp_path / "base"])]
    reduced = [str(b) for b in dose.distcheck("amd64", [fg], [tmp_path / "subset"])]
    assert whole == reduced and len(whole) == 1 and "nosuch" in whole[0]


def test_relation_names():
    assert indices.relation_names("a (>= 1) | b:any, c [amd64], d:native <!nocheck>") == ["a", "b", "c", "d"]
    assert not indices.relation_names("")


# ------------------------------------------------------------------------------------------------ base indices over HTTP
class _Archive:
    """A local archive ``dists/testcn/`` with ``main/binary-amd64/Packages.xz`` and a signed InRelease."""

    def __init__(self, root, gpg):
        self.root, self.gpg = pathlib.Path(root), gpg
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.requests = []

    def _handler(self):
        archive = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            """Files below the archive root; every path asked for is recorded."""

            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(archive.root), **kwargs)

            def do_GET(self):  # noqa: N802
                archive.requests.append(self.path)
                super().do_GET()

            def log_message(self, *_args):
                pass
        return Handler

    def publish(self, packages_text, tamper=False):
        """(Re)write the index and the signed InRelease listing it (``tamper``: the index differs from its hash)."""
        dists = self.root / "dists" / "testcn"
        (dists / "main" / "binary-amd64").mkdir(parents=True, exist_ok=True)
        xz = lzma.compress(packages_text.encode())
        (dists / "main" / "binary-amd64" / "Packages.xz").write_bytes(xz + (b"tampered" if tamper else b""))
        release = (f"Origin: Test\nCodename: testcn\nComponents: main\nArchitectures: amd64\nSHA256:\n"
                   f" {hashlib.sha256(xz).hexdigest()} {len(xz)} main/binary-amd64/Packages.xz\n")
        (dists / "InRelease").write_text(self.gpg.sign(release))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def archive(tmp_path):
    """A local archive signed by a fresh ed25519 key."""
    gpg = gnupg.Gnupg(tmp_path / "archive-gnupg", tmp_parent=tmp_path / "gpgtmp")
    gpg.gen_secret_key(ED25519, "Test Archive", "archive@example.org")
    a = _Archive(tmp_path / "www", gpg)
    yield a
    a.close()
    gpg.kill_agents()


def _objects(queryset):
    return types.SimpleNamespace(all=lambda: list(queryset))


def _distribution(archive, keys):
    """A stand-in for the Distribution model: one base source (origin Test, codename testcn), component main."""
    source = types.SimpleNamespace(
        origin="Test", codename="testcn", identifiers={"Origin": "Test", "Codename": "testcn"}, check_valid_until=False,
        remove_from_component="", apt_keys=_objects([types.SimpleNamespace(key=k) for k in keys]),
        mbd_archive=lambda: types.SimpleNamespace(url=archive.url))
    return types.SimpleNamespace(base_source=source, extra_sources=_objects([]), components=_objects([types.SimpleNamespace(name="main")]),
                                 mbd_architectures=lambda: ["amd64"])


def test_base_index_is_verified_cached_and_refreshed(archive, monkeypatch):
    archive.publish(BASE)
    distribution = _distribution(archive, [archive.gpg.pub_key()])
    [path] = indices.base_indices(distribution, "amd64")
    assert pathlib.Path(path).read_text(encoding="utf-8") == BASE
    assert path == str(config.paths.base_index("Test", "testcn", "main", "amd64"))
    # Fresh: the archive is not asked again.
    count = len(archive.requests)
    assert indices.base_indices(distribution, "amd64") == [path]
    assert len(archive.requests) == count
    # Stale: the Release is read again; the same hash means no download.
    monkeypatch.setattr(indices, "FRESH_FOR", 0)
    indices.base_indices(distribution, "amd64")
    assert [r for r in archive.requests[count:] if r.endswith("Packages.xz")] == []
    # A new index is downloaded.
    archive.publish(BASE + "\n" + _stanza("newcomer", arch="amd64"))
    indices.base_indices(distribution, "amd64")
    assert "Package: newcomer" in pathlib.Path(path).read_text(encoding="utf-8")


def test_base_index_that_does_not_match_its_release_is_refused(archive, monkeypatch):
    monkeypatch.setattr(indices, "FRESH_FOR", 0)
    for p in config.paths.base_index("Test", "testcn", "main", "amd64").parent.glob("Test_testcn_*"):
        p.unlink()
    archive.publish(BASE, tamper=True)
    with pytest.raises(indices.IndexUnavailable, match="does not match its Release"):
        indices.base_indices(_distribution(archive, [archive.gpg.pub_key()]), "amd64")
    assert not config.paths.base_index("Test", "testcn", "main", "amd64").exists()


def test_base_index_signed_by_an_unknown_key_is_not_used(archive, monkeypatch, tmp_path):
    monkeypatch.setattr(indices, "FRESH_FOR", 0)
    for p in config.paths.base_index("Test", "testcn", "main", "amd64").parent.glob("Test_testcn_*"):
        p.unlink()
    archive.publish(BASE)
    other = gnupg.Gnupg(tmp_path / "other-gnupg", tmp_parent=tmp_path / "gpgtmp")
    other.gen_secret_key(ED25519, "Other", "other@example.org")
    try:
        with pytest.raises(indices.IndexUnavailable, match="No accepted signature"):
            indices.base_indices(_distribution(archive, [other.pub_key()]), "amd64")
    finally:
        other.kill_agents()
    # With the right key it is fetched; when the archive is gone later, the cached copy is used.
    good = _distribution(archive, [archive.gpg.pub_key()])
    [path] = indices.base_indices(good, "amd64")
    archive.close()
    assert indices.base_indices(good, "amd64") == [path]


# ------------------------------------------------------------------------------------------------ checking a change
def _suite(root, diststr, stanzas):
    path = root / "dists" / diststr / "main" / "binary-amd64" / "Packages"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(stanzas))


def test_migration_and_removal_checks(archive, tmp_path):
    """The target keeps what it had; the candidate replaces the old version; only new breakage counts."""
    archive.publish(BASE)
    distribution = _distribution(archive, [archive.gpg.pub_key()])
    repo = types.SimpleNamespace(mbd_path=lambda: tmp_path / "repo")
    root = tmp_path / "repo"
    _suite(root, "testcn-r-unstable", [_stanza("app", "2.0", depends="lib (>= 2), awk"), _stanza("lib", "2.0"),
                                       _stanza("lonely", "1.0")])
    _suite(root, "testcn-r-testing", [_stanza("app", "1.0", depends="lib"), _stanza("lib", "1.0"),
                                      _stanza("was-broken", "1", depends="nosuch")])
    # app 2.0 needs lib >= 2, which testing lacks: refused, with the relation.
    candidate = installability.candidate_stanzas(repo, distribution, "testcn-r-unstable", "app", "2.0")
    assert [s.package for s in candidate] == ["app"]
    problems = installability.check(distribution, repo, "testcn-r-testing", "app", candidate)
    assert [str(p) for p in problems] == ["app 2.0 (all): app 2.0 depends on lib (>= 2), which is missing"]
    # lib 2.0 first: fine (was-broken was broken before: not this change's fault).
    lib = installability.candidate_stanzas(repo, distribution, "testcn-r-unstable", "lib", "2.0")
    assert not installability.check(distribution, repo, "testcn-r-testing", "lib", lib)
    # Removing lib from testing breaks app there.
    problems = installability.check(distribution, repo, "testcn-r-testing", "lib")
    assert [p.package for p in problems] == ["app"]
    assert "depends on lib" in installability.describe("testcn-r-testing", problems, removal=True)
    # Removing something nobody needs is fine.
    assert not installability.check(distribution, repo, "testcn-r-unstable", "lonely")
    # The suite report lists what is broken now, by source.
    report = installability.refresh(distribution, repo, "testcn-r-testing")
    assert list(report["broken"]) == ["was-broken"] and "nosuch" in report["broken"]["was-broken"][0]
    assert installability.report_of("testcn-r-testing") == report
    os.unlink(config.paths.installability_report("testcn-r-testing"))
