"""The header's package search (issue #18): source and binary names from the exported index files
(plain, .gz, .xz; snapshots aside), the results page and the suggestions list."""

# pytest idioms: Django and the code under test are imported after the test set-up.
# pylint: disable=import-outside-toplevel

import gzip
import lzma

import pytest
from django.test import Client

from mini_buildd.archive import package_search
from tests.helpers.html_check import assert_valid_html

SOURCES = """Package: mbd-tool
Version: 1.0-1

Package: hello
Version: 2.10-3
"""
PACKAGES = """Package: mbd-tool-bin
Source: mbd-tool (1.0-1)
Version: 1.0-1+b1

Package: libmbd-tool1
Source: mbd-tool
Version: 1.0-1

Package: hello
Version: 2.10-3
"""


@pytest.fixture
def dists(tmp_path):
    """Two distributions' index files (and a snapshot's) as reprepro exports them; ``[(diststr, dir)]``."""
    unstable = tmp_path / "dists" / "bookworm-test-unstable"
    (unstable / "main" / "source").mkdir(parents=True)
    (unstable / "main" / "binary-amd64").mkdir(parents=True)
    (unstable / "main" / "source" / "Sources.xz").write_bytes(lzma.compress(SOURCES.encode()))
    (unstable / "main" / "binary-amd64" / "Packages.gz").write_bytes(gzip.compress(PACKAGES.encode()))
    # A snapshot with another package: not searched.
    snap = unstable / "snapshots" / "20261207T101530Z" / "main" / "binary-amd64"
    snap.mkdir(parents=True)
    (snap / "Packages").write_text("Package: mbd-tool-old\nSource: mbd-tool-old\nVersion: 0.1\n")
    testing = tmp_path / "dists" / "bookworm-test-testing" / "main" / "binary-amd64"
    testing.mkdir(parents=True)
    (testing / "Packages").write_text("Package: libmbd-tool1\nSource: mbd-tool\nVersion: 0.9-1\n")
    return [("bookworm-test-unstable", str(tmp_path / "dists" / "bookworm-test-unstable")),
            ("bookworm-test-testing", str(tmp_path / "dists" / "bookworm-test-testing"))]


def test_binary_name_finds_its_source(dists):  # pylint: disable=redefined-outer-name
    hits = package_search.search(dists, "LIBMBD")
    assert [h.source for h in hits] == ["mbd-tool"]
    assert hits[0].binaries == {"libmbd-tool1"}
    assert hits[0].distributions == {"bookworm-test-unstable": "1.0-1", "bookworm-test-testing": "0.9-1"}


def test_exact_source_first_and_snapshots_aside(dists):  # pylint: disable=redefined-outer-name
    assert [h.source for h in package_search.search(dists, "hello")] == ["hello"]
    assert [h.source for h in package_search.search(dists, "mbd")] == ["mbd-tool"]  # not mbd-tool-old (a snapshot)
    assert not package_search.search(dists, "  ")
    assert package_search.names(dists) == ["hello", "libmbd-tool1", "mbd-tool", "mbd-tool-bin"]


def test_search_page_and_suggestions(db, dists, monkeypatch, settings):  # pylint: disable=unused-argument,redefined-outer-name
    from mini_buildd.webapp import views_repositories
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    monkeypatch.setattr(views_repositories, "_all_dists", lambda: dists)
    c = Client()
    r = c.get("/mini_buildd/packages/", {"q": "tool-bin"})
    assert r.status_code == 200
    assert_valid_html(r.content, what="search", strict=True)
    html = r.content.decode()
    assert 'href="/mini_buildd/packages/mbd-tool/"' in html and "mbd-tool-bin" in html
    assert 'name="q"' in html and 'action="/mini_buildd/packages/"' in html  # the header's box on every page
    r = c.get("/mini_buildd/packages/", {"q": "<nothing>"})
    assert r.status_code == 200 and b"&lt;nothing&gt;" in r.content and b"<nothing>" not in r.content
    r = c.get("/mini_buildd/packages/", {"names": "1"})
    assert r.json() == ["hello", "libmbd-tool1", "mbd-tool", "mbd-tool-bin"]
    assert c.get("/mini_buildd/packages/", {"source": "hello"})["Location"] == "/mini_buildd/packages/hello/"
