"""Serving the manual (:mod:`mini_buildd.manual`) through Django, without a daemon: which
directory is used, the "not installed" page (404), safe path resolution, content types and the
manual's CSP."""

import pathlib

import pytest
from django.test import Client

from mini_buildd import manual


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """No installed and no source-tree manual; returns a directory to put one into."""
    monkeypatch.delenv(manual.ENV, raising=False)
    monkeypatch.setattr(manual, "INSTALLED", tmp_path / "installed")
    monkeypatch.setattr(manual, "SOURCE_BUILD", tmp_path / "source")
    return tmp_path


def client():
    return Client(SERVER_NAME="localhost", HTTP_HOST="localhost")


def write_manual(root):
    """A minimal built manual below ``root``: index, a page and a static file."""
    (root / "_static").mkdir(parents=True)
    (root / "index.html").write_text("<html><body>index</body></html>")
    (root / "page.html").write_text("<html><body>page</body></html>")
    (root / "_static" / "x.js").write_text("var x = 1;")
    (root / "_static" / "x.css").write_text("p {}")
    (root / ".buildinfo").write_text("secret")
    return root


def test_not_installed_page(roots):  # pylint: disable=redefined-outer-name,unused-argument
    r = client().get("/mini_buildd/manual/")
    assert r.status_code == 404
    assert b"mini-buildd-doc" in r.content and b"make manual" in r.content
    assert r["Content-Type"].startswith("text/html")
    assert r["Content-Security-Policy"] == manual.MANUAL_CSP


def test_order_installed_then_source(roots, monkeypatch):  # pylint: disable=redefined-outer-name
    write_manual(roots / "source")
    assert manual.find_root() == roots / "source"
    write_manual(roots / "installed")
    assert manual.find_root() == roots / "installed"
    write_manual(roots / "env")
    monkeypatch.setenv(manual.ENV, str(roots / "env"))
    assert manual.find_root() == roots / "env"


def test_files_and_types(roots):  # pylint: disable=redefined-outer-name
    write_manual(roots / "installed")
    c = client()
    for path, ctype, body in (("", "text/html", b"index"), ("page.html", "text/html", b"page"),
                              ("_static/x.js", "text/javascript", b"var x"), ("_static/x.css", "text/css", b"p {}")):
        r = c.get("/mini_buildd/manual/" + path)
        assert r.status_code == 200, path
        assert r["Content-Type"].startswith(ctype), path
        assert body in b"".join(r.streaming_content)
        assert r["Content-Security-Policy"] == manual.MANUAL_CSP
    assert c.get("/mini_buildd/manual/.buildinfo").status_code == 404
    assert c.get("/mini_buildd/manual/missing.html").status_code == 404
    assert c.post("/mini_buildd/manual/page.html").status_code in (403, 405)


def test_directory_without_slash_redirects(roots):  # pylint: disable=redefined-outer-name
    root = write_manual(roots / "installed")
    (root / "sub").mkdir()
    (root / "sub" / "index.html").write_text("sub")
    r = client().get("/mini_buildd/manual/sub")
    assert r.status_code == 302 and r["Location"] == "/mini_buildd/manual/sub/"


@pytest.mark.parametrize("relpath", ["../x", "a/../../x", "/etc/passwd", ".hidden", "_static/.x", "a\\b", "x\0y",
                                     "./index.html"])
def test_resolve_refuses(tmp_path, relpath):
    write_manual(tmp_path)
    assert manual.resolve(tmp_path, relpath) is None


def test_resolve_symlinks(tmp_path):
    root = write_manual(tmp_path / "html")
    (root / "out").symlink_to("/etc/hostname")
    (root / "in.html").symlink_to(root / "page.html")
    assert manual.resolve(root, "out") is None
    assert manual.resolve(root, "in.html") == (root / "page.html").resolve()
    assert manual.resolve(root, "") == (root / "index.html").resolve()


def test_installed_manual_may_link_into_shared_javascript(tmp_path, monkeypatch):
    """dh_sphinxdoc links the Sphinx scripts of an installed manual into /usr/share/javascript:
    allowed for a manual below the system prefix only."""
    share = tmp_path / "share"
    (share / "javascript" / "jquery").mkdir(parents=True)
    (share / "javascript" / "jquery" / "jquery.js").write_text("jquery")
    (share / "secret").write_text("secret")
    monkeypatch.setattr(manual, "SYSTEM_PREFIX", share)
    monkeypatch.setattr(manual, "SHARED_DIRS", (share / "javascript",))
    for root in (share / "doc" / "mini-buildd-doc" / "html", tmp_path / "elsewhere" / "html"):
        write_manual(root)
        (root / "_static" / "jquery.js").symlink_to(share / "javascript" / "jquery" / "jquery.js")
        (root / "_static" / "secret.js").symlink_to(share / "secret")
        assert manual.resolve(root, "_static/secret.js") is None
        linked = manual.resolve(root, "_static/jquery.js")
        if root.is_relative_to(share):
            assert linked == share / "javascript" / "jquery" / "jquery.js"
        else:
            assert linked is None


def test_shared_dirs_and_types():
    assert pathlib.Path("/usr/share/javascript") in manual.SHARED_DIRS
    assert manual.content_type(pathlib.Path("a.js")).startswith("text/javascript")
    assert manual.content_type(pathlib.Path("a.unknown-suffix")) == "application/octet-stream"
