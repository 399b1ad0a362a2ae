"""The manual (doc/manual) for real: it builds with Debian's Sphinx and ``-W`` (no warnings), its
generated reference lists every API call of the registry, its pages need no inline script (the
daemon's Content-Security-Policy allows none), the shell examples marked ``:class: mbd-run`` run
against a real daemon and exit 0, and the real daemon serves the built manual at
``/mini_buildd/manual/`` (safely) and links to it from its pages."""

import http.client
import os
import pathlib
import re
import shlex
import subprocess

import pytest
import requests

from tests.helpers.daemon import Daemon, PYTHON, ROOT

MANUAL_SRC = ROOT / "doc" / "manual"
#: The instance URL the manual's examples use; replaced by the test daemon's.
EXAMPLE_URL = "http://mbd.example.org:8066"
#: Console scripts -> modules (the tests run from the source tree, nothing is installed).
COMMANDS = {"mini-buildd": "mini_buildd", "mini-buildd-api": "mini_buildd.cli.api",
            "mini-buildd-dput": "mini_buildd.cli.dput", "mini-buildd-events": "mini_buildd.cli.events",
            "mini-buildd-self-signed-certificate": "mini_buildd.cli.certificate"}
PASSWORD = "manual-Secret-1"


def build_manual(outdir):
    return subprocess.run([PYTHON, "-m", "sphinx", "-W", "-b", "html", str(MANUAL_SRC), str(outdir)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The HTML manual built (Sphinx) without warnings; its output dir."""
    out = tmp_path_factory.mktemp("manual") / "html"
    proc = build_manual(out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stdout + proc.stderr, proc.stderr
    return out


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, built):  # pylint: disable=redefined-outer-name
    """A daemon serving the built manual (admin password PASSWORD); stopped after."""
    home = tmp_path_factory.mktemp("manual-daemon") / "home"
    proc = subprocess.run([PYTHON, "-m", "mini_buildd", "--home", str(home), "--dedicated-user", "root",
                           "--set-admin-password-file", "-"], input=PASSWORD + "\n", cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    saved = os.environ.get("MINI_BUILDD_MANUAL_DIR")
    os.environ["MINI_BUILDD_MANUAL_DIR"] = str(built)
    try:
        d = Daemon(home).start()
    finally:
        if saved is None:
            os.environ.pop("MINI_BUILDD_MANUAL_DIR", None)
        else:
            os.environ["MINI_BUILDD_MANUAL_DIR"] = saved
    yield d
    assert d.stop() == 0


# ------------------------------------------------------------------------------------------------ build
def test_builds_without_warnings(built):  # pylint: disable=redefined-outer-name
    assert (built / "index.html").is_file()
    for page in ("install", "setup", "uploading", "repositories", "migration", "snapshots", "ports", "chroots",
                 "remotes", "users", "events", "api", "commands", "encryption", "troubleshooting", "upstream",
                 "examples", "consumers"):
        assert (built / f"{page}.html").is_file(), page


def test_reference_is_generated_from_the_registry(built):  # pylint: disable=redefined-outer-name
    from mini_buildd.api import calls, registry  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    api_html = (built / "api.html").read_text()
    for name, call in registry.CALLS.items():
        assert f'id="api-{name.replace("_", "-")}"' in api_html, name
        for arg in call.args:
            assert f"<span class=\"pre\">{arg.identity}</span>" in api_html, (name, arg.identity)
    commands_html = (built / "commands.html").read_text()
    for option in ("--set-admin-password-file", "--schroot-prefix", "--auto-confirm", "--exit-on", "--check"):
        assert option in commands_html, option


def test_pages_need_no_inline_script(built):  # pylint: disable=redefined-outer-name
    for page in built.glob("*.html"):
        text = page.read_text()
        for tag, body in re.findall(r"(<script[^>]*>)(.*?)</script>", text, flags=re.S):
            assert "src=" in tag and not body.strip(), f"{page.name}: inline script {tag}{body[:80]}"
        assert " on" + "click=" not in text and "javascript:" not in text, page.name


# ------------------------------------------------------------------------------------------------ runnable examples
def runnable_examples():
    """``(file, command line)`` of every ``$ …`` line in ``code-block:: console`` blocks with ``:class: mbd-run``."""
    found = []
    for rst in sorted(MANUAL_SRC.glob("*.rst")):
        lines = rst.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip() != ".. code-block:: console":
                continue
            options, j = [], i + 1
            while j < len(lines) and lines[j].strip().startswith(":"):
                options.append(lines[j].strip())
                j += 1
            if ":class: mbd-run" not in options:
                continue
            while j < len(lines) and (not lines[j].strip() or lines[j].startswith("   ")):
                if lines[j].strip().startswith("$ "):
                    found.append((rst.name, lines[j].strip()[2:]))
                j += 1
    return found


def test_there_are_runnable_examples():
    commands = [c for _f, c in runnable_examples()]
    assert len(commands) >= 8, commands
    assert any(c.startswith("mini-buildd-api status ") for c in commands)


@pytest.mark.parametrize("where,command", runnable_examples())
def test_runnable_example(daemon, where, command):  # pylint: disable=redefined-outer-name
    argv = shlex.split(command.replace(EXAMPLE_URL, daemon.url))
    assert argv[0] in COMMANDS, f"{where}: {command}: unknown command"
    proc = subprocess.run([PYTHON, "-m", COMMANDS[argv[0]], *argv[1:]], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False, stdin=subprocess.DEVNULL,
                          env={**os.environ, "MINI_BUILDD_API_PASSWORD": PASSWORD, "COLUMNS": "100"})
    assert proc.returncode == 0, f"{where}: {command}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    if "--help" in argv or argv[1] in ("status", "dput_conf"):
        assert proc.stdout.strip(), f"{where}: {command}: no output"


# ------------------------------------------------------------------------------------------------ serving
def raw_get(daemon, path):  # pylint: disable=redefined-outer-name
    """GET ``path`` exactly as given (no client-side normalisation of dot segments)."""
    conn = http.client.HTTPConnection(daemon.host, daemon.port, timeout=30)
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read()
    finally:
        conn.close()


def test_daemon_serves_the_manual(daemon, built):  # pylint: disable=redefined-outer-name
    r = requests.get(daemon.url + "/mini_buildd/manual/", timeout=30)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["Content-Type"].startswith("text/html")
    assert r.content == (built / "index.html").read_bytes()
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert r.headers["X-Content-Type-Options"] == "nosniff"

    for path, ctype in (("api.html", "text/html"), ("_static/doctools.js", "text/javascript"),
                        ("_static/basic.css", "text/css"), ("searchindex.js", "text/javascript")):
        r = requests.get(daemon.url + "/mini_buildd/manual/" + path, timeout=30)
        assert r.status_code == 200, path
        assert r.headers["Content-Type"].startswith(ctype), (path, r.headers["Content-Type"])
        assert r.content == (built / path).read_bytes()

    r = requests.get(daemon.url + "/mini_buildd/manual/_static", timeout=30, allow_redirects=False)
    assert r.status_code == 404  # no index there
    assert requests.head(daemon.url + "/mini_buildd/manual/index.html", timeout=30).status_code == 200
    assert requests.post(daemon.url + "/mini_buildd/manual/index.html", timeout=30).status_code in (403, 405)


@pytest.mark.parametrize("path", [
    "/mini_buildd/manual/../../etc/passwd",
    "/mini_buildd/manual/%2e%2e/%2e%2e/etc/passwd",
    "/mini_buildd/manual/_static/..%2f..%2f..%2fetc%2fpasswd",
    "/mini_buildd/manual/.buildinfo",
    "/mini_buildd/manual/.doctrees/environment.pickle",
    "/mini_buildd/manual/nonexistent.html",
    "/mini_buildd/manual//etc/passwd",
    "/mini_buildd/manual/%00index.html",
])
def test_no_escape_from_the_manual(daemon, path):  # pylint: disable=redefined-outer-name
    status, _headers, body = raw_get(daemon, path)
    assert status in (400, 404), (path, status)
    assert b"root:" not in body


def test_symlinks_out_of_the_manual_are_not_followed(tmp_path):
    from mini_buildd import manual  # pylint: disable=import-outside-toplevel
    root = tmp_path / "html"
    root.mkdir()
    (root / "index.html").write_text("<p>manual</p>")
    (root / "secret").symlink_to("/etc/passwd")
    (root / "inside.html").symlink_to(root / "index.html")
    assert manual.resolve(root, "secret") is None
    assert manual.resolve(root, "inside.html") == (root / "index.html").resolve()


def test_every_page_links_to_the_manual(daemon):  # pylint: disable=redefined-outer-name
    for path in ("/", "/mini_buildd/", "/mini_buildd/events/", "/mini_buildd/builds/", "/mini_buildd/repositories/",
                 "/mini_buildd/builders/", "/mini_buildd/api/", "/mini_buildd/sitemap/", "/accounts/login/",
                 "/admin/login/", "/mini_buildd/no-such-page/"):
        r = requests.get(daemon.url + path, timeout=30)
        assert 'href="/mini_buildd/manual/"' in r.text, (path, r.status_code)


def test_make_manual_target():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^manual:\n\t\$\(PYTHON\) -m sphinx -W -b html doc/manual build/manual/html$", makefile, re.M)
    assert "python3-sphinx" in makefile.split("TEST_DEPS :=")[1].split("\n# ")[0]


def test_source_tree_build_dir_is_a_candidate():
    from mini_buildd import manual  # pylint: disable=import-outside-toplevel
    assert manual.SOURCE_BUILD == ROOT / "build" / "manual" / "html"
    assert manual.INSTALLED == pathlib.Path("/usr/share/doc/mini-buildd-doc/html")
