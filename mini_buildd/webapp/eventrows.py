"""HTML of events for the web pages: one table row per event, rendered once per event and cached
(events never change once logged), so pages that list the whole in-memory queue cost a string
join, not a template loop. Also the links worth clicking for an event (changes, build logs).

The JavaScript live update (static/mini_buildd/events_stream.js) builds the same row from the event
JSON; keep both in step (columns, ``data-*`` attributes, classes).
"""

import html
import threading
import urllib.parse

from mini_buildd.dist.qa import SBUILD_STATUS_FAIL, SBUILD_STATUS_PASS, SBUILD_STATUS_WARN
from mini_buildd.events import Type

#: Table head matching :func:`row`.
HEAD = ("<thead><tr><th>Time (UTC)</th><th>Type</th><th>Distribution</th><th>Source</th>"
        "<th>Version</th><th>Details</th></tr></thead>")

_CACHE = {}  # id(event) -> (event, html)
_CACHE_MAX = 4000
_LOCK = threading.Lock()


def quote_path(path):
    """URL-quote a relative file path (keeps ``/``, ``~``, ``:`` and ``+`` readable)."""
    return urllib.parse.quote(str(path), safe="/~:+@")


def package_url(source):
    return f"/mini_buildd/packages/{quote_path(source)}/"


def build_url(bkey):
    return f"/mini_buildd/builds/{quote_path(bkey)}/"


def events_dir_url(path):
    return f"/mini_buildd/events-dir/{quote_path(path)}"


def builds_dir_url(path):
    return f"/mini_buildd/builds-dir/{quote_path(path)}"


def links(event):
    """(label, URL) pairs for ``event``: changes, build (live) logs, build pages. Relative URLs."""
    extra = event.extra
    result = []
    building = event.type == Type.BUILDING
    changes = extra.get("changes")
    if changes:
        result.append(("changes", builds_dir_url(changes) if building else events_dir_url(changes)))

    def logs(info, arch):
        if not isinstance(info, dict):
            return
        log = info.get("buildlog")
        if event.type in (Type.BUILDING, Type.PACKAGING):
            if info.get("bkey"):
                result.append((f"live log {arch}", build_url(info["bkey"])))
        elif log:
            result.append((f"build log {arch}", events_dir_url(log)))

    if event.type in (Type.BUILDING, Type.BUILT):
        logs(extra, extra.get("architecture") or "?")
    for group in ("buildrequests", "buildresults"):
        for arch, info in sorted((extra.get(group) or {}).items()):
            logs(info, arch)
    return result


#: The QA letters of a build result: (letter, check, event field).
QA_CHECKS = (("B", "build", "sbuild_status"), ("L", "lintian", "sbuild_lintian"),
             ("P", "piuparts", "sbuild_piuparts"), ("A", "autopkgtest", "sbuild_autopkgtest"))


def qa_state(field, word):
    """``pass``, ``warn``, ``fail`` or ``none`` (not run, skipped, not reported) of one result word."""
    w = " ".join(str(word or "").lower().split())
    if field == "sbuild_status":
        return "pass" if w == "successful" else "none" if w in ("", "skipped") else "fail"
    if w in SBUILD_STATUS_PASS:
        return "pass"
    if w in SBUILD_STATUS_FAIL:
        return "fail"
    return "warn" if w in SBUILD_STATUS_WARN and w != "unknown" else "none"


def qa_results(event):
    """``[(arch, result dict)]`` of the build results an event carries (BUILT: its own; INSTALLED
    and FAILED: every architecture's)."""
    extra = event.extra
    if event.type == Type.BUILT:
        return [(extra.get("architecture") or "?", extra)]
    if event.type in (Type.INSTALLED, Type.FAILED):
        return [(arch, info) for arch, info in sorted((extra.get("buildresults") or {}).items()) if isinstance(info, dict)]
    return []


def qa_html(event):
    """Per architecture, a coloured letter per check (Build, Lintian, Piuparts, Autopkgtest; its
    title says the result word), each linking to that architecture's build log (where sbuild
    writes every check's output). '' for events without build results."""
    e = html.escape
    out = []
    for arch, info in qa_results(event):
        log = info.get("buildlog")
        letters = []
        for letter, check, field in QA_CHECKS:
            word = info.get(field) or "none"
            attrs = f'class="qa qa-{qa_state(field, info.get(field))}" title="{e(arch)} {check}: {e(str(word))}"'
            letters.append(f'<a {attrs} href="{e(events_dir_url(log))}">{letter}</a>' if log else f"<span {attrs}>{letter}</span>")
        out.append(f'<span class="qa-arch" data-arch="{e(arch)}">{e(arch)} {"".join(letters)}</span>')
    return " ".join(out)


def detail(event):
    """The short detail text of ``event`` (error, build status, migration origin), or ''."""
    extra = event.extra
    error = extra.get("error")
    if error:
        text = (error.get("detail") or error.get("title") or "") if isinstance(error, dict) else str(error)
    elif event.type in (Type.BUILT, Type.INSTALLED, Type.FAILED):
        text = ""  # the QA letters (:func:`qa_html`) say it
    elif event.type == Type.MIGRATED and extra.get("from"):
        text = f"from {extra['from']}"
    elif event.type in (Type.BUILDING, Type.BUILT) and extra.get("architecture"):
        text = extra["architecture"]
    else:
        text = ""
    text = " ".join(str(text).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _render(event):
    e = html.escape
    ts = event.timestamp
    when = ts.strftime("%Y-%m-%d %H:%M:%S")
    arch = event.extra.get("architecture") if event.type in (Type.BUILDING, Type.BUILT) else None
    link_html = " ".join(f'<a href="{e(url)}">{e(label)}</a>' for label, url in links(event))
    text = detail(event)
    if arch and text == arch:
        text = ""
    details = " ".join(part for part in ("" if event.type == Type.BUILT else f"[{e(arch)}]" if arch else "", e(text), qa_html(event), link_html)
                       if part)
    return (f'<tr class="ev ev-{event.type.value}" data-type="{event.type.value}" data-source="{e(event.source)}" '
            f'data-distribution="{e(event.distribution)}" data-version="{e(event.version)}">'
            f'<td><time datetime="{e(ts.isoformat())}">{when}</time></td>'
            f'<td><span class="etype etype-{event.type.value}">{event.type.value}</span></td>'
            f'<td>{e(event.distribution)}</td>'
            f'<td><a href="{e(package_url(event.source))}">{e(event.source)}</a></td>'
            f'<td>{e(event.version)}</td><td>{details}</td></tr>\n')


def row(event, cache=True):
    """The ``<tr>`` of ``event`` (cached unless ``cache`` is false: for events loaded just for one page)."""
    if not cache:
        return _render(event)
    key = id(event)
    cached = _CACHE.get(key)
    if cached is not None and cached[0] is event:
        return cached[1]
    text = _render(event)
    with _LOCK:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[key] = (event, text)
    return text


def rows(events, cache=True):
    """The rows of ``events`` joined."""
    return "".join([row(ev, cache) for ev in events])


def table(events, empty="No events.", live=False, cache=True):
    """A complete events table, or a paragraph when there are none. ``live``: the one table of a page
    that the JavaScript live update fills (ids ``mbd-events-table``, ``mbd-events``, ``mbd-events-empty``;
    present, but hidden, when empty)."""
    body = rows(events, cache)
    if not live:
        if not events:
            return f'<p class="empty">{html.escape(empty)}</p>'
        return f'<table class="events">{HEAD}<tbody>{body}</tbody></table>'
    if not events:
        # An empty <tbody> is fine HTML, but keep one placeholder row so validators do not complain.
        return (f'<p class="empty" id="mbd-events-empty">{html.escape(empty)}</p>'
                f'<table class="events" id="mbd-events-table" hidden>{HEAD}<tbody id="mbd-events"></tbody></table>')
    return f'<table class="events" id="mbd-events-table">{HEAD}<tbody id="mbd-events">{body}</tbody></table>'
