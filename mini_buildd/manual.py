"""The HTML manual served at ``/mini_buildd/manual/`` (owns: mini_buildd/manual.py).

Where the built manual is (:func:`find_root`): the installed package ``mini-buildd-doc``
(:data:`INSTALLED`), else the build directory of the source tree the daemon runs from
(:data:`SOURCE_BUILD`, made by ``make manual``). ``MINI_BUILDD_MANUAL_DIR`` in the environment
overrides both (tests, unusual installs).

Which file a request path names (:func:`resolve`): only plain relative paths below the manual
root; no ``..``, no absolute paths, no hidden files, no NUL. The resolved real path must lie
inside the manual root; symbolic links may point elsewhere only into :data:`SHARED_DIRS` (the
Debian package's dh_sphinxdoc replaces Sphinx's JavaScript files with links into
``/usr/share/javascript``), and only when the root itself is in ``/usr/share`` (:data:`SYSTEM_PREFIX`).

The Django view (:func:`view`) answers the file with its content type, or a small page saying the
manual is not installed (404) when there is none. Manual pages get :data:`MANUAL_CSP`: the
instance's page policy, which already allows the theme's own scripts and styles from this site.
"""

import mimetypes
import os
import pathlib

#: The installed manual (package mini-buildd-doc).
INSTALLED = pathlib.Path("/usr/share/doc/mini-buildd-doc/html")
#: The manual built in the source tree (``make manual``).
SOURCE_BUILD = pathlib.Path(__file__).resolve().parent.parent / "build" / "manual" / "html"
#: Environment variable naming another manual directory (checked first).
ENV = "MINI_BUILDD_MANUAL_DIR"
#: Where an installed manual lives; only such a manual may link into :data:`SHARED_DIRS`.
SYSTEM_PREFIX = pathlib.Path("/usr/share")
#: Directories symbolic links of an installed manual may point into (dh_sphinxdoc's links to
#: the packaged JavaScript libraries, and the node modules some of those link to in turn).
SHARED_DIRS = (pathlib.Path("/usr/share/javascript"), pathlib.Path("/usr/share/nodejs"))
#: Content-Security-Policy of manual pages (same as the other pages: scripts and styles from this site only).
MANUAL_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
              "font-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".txt": "text/plain; charset=utf-8", ".svg": "image/svg+xml",
          ".png": "image/png", ".ico": "image/x-icon", ".json": "application/json", ".inv": "application/octet-stream",
          ".woff": "font/woff", ".woff2": "font/woff2"}


def candidates():
    """Manual directories in the order they are tried."""
    env = os.environ.get(ENV)
    return ([pathlib.Path(env)] if env else []) + [INSTALLED, SOURCE_BUILD]


def find_root():
    """The first manual directory with an ``index.html``, or None."""
    for root in candidates():
        if (root / "index.html").is_file():
            return root
    return None


def _inside(path, directory):
    try:
        path.relative_to(directory)
        return True
    except ValueError:
        return False


def resolve(root, relpath):
    """The real file ``relpath`` names below ``root`` (a directory names its ``index.html``), or None."""
    relpath = relpath or ""
    if "\0" in relpath or "\\" in relpath or relpath.startswith("/"):
        return None
    parts = [p for p in relpath.split("/") if p]
    if any(p in (".", "..") or p.startswith(".") for p in parts):
        return None
    real_root = pathlib.Path(root).resolve()
    target = real_root.joinpath(*parts)
    if target.is_dir():
        target = target / "index.html"
    try:
        real = target.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    allowed = [real_root]
    if _inside(real_root, SYSTEM_PREFIX.resolve()):
        allowed += [d.resolve() for d in SHARED_DIRS]
    if not any(_inside(real, d) for d in allowed) or not real.is_file():
        return None
    return real


def content_type(path):
    """Content type of a manual file (by suffix; unknown: ``application/octet-stream``)."""
    suffix = path.suffix.lower()
    if suffix in _TYPES:
        return _TYPES[suffix]
    guessed, _encoding = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


NOT_INSTALLED = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Manual not installed</title>
<link rel="stylesheet" href="/static/mini_buildd/style.css"></head>
<body><main><h1>The manual is not installed</h1>
<p>Install the Debian package <code>mini-buildd-doc</code> on this host, or build the manual in the
source tree the daemon runs from with <code>make manual</code>.</p>
<p><a href="/mini_buildd/">Back to mini-buildd</a></p></main></body></html>
"""


def view(request, path=""):
    """Django view: the manual file ``path`` (GET/HEAD; anonymous)."""
    # pylint: disable=import-outside-toplevel
    from django import http
    if request.method not in ("GET", "HEAD"):
        return http.HttpResponseNotAllowed(["GET", "HEAD"])
    root = find_root()
    if root is None:
        response = http.HttpResponse(NOT_INSTALLED, status=404, content_type="text/html; charset=utf-8")
    else:
        real = resolve(root, path)
        if real is not None and path and not path.endswith("/") and real.name == "index.html" \
                and not path.endswith("index.html"):
            response = http.HttpResponseRedirect(request.path + "/")  # relative links need the slash
        elif real is None:
            response = http.HttpResponseNotFound(f"No such page in the manual: {path}\n",
                                                 content_type="text/plain; charset=utf-8")
        else:
            response = http.FileResponse(open(real, "rb"), content_type=content_type(real))  # pylint: disable=consider-using-with
            response["Cache-Control"] = "max-age=300"
    response["Content-Security-Policy"] = MANUAL_CSP
    return response
