"""Events pages: the live event queue (``/mini_buildd/events/``, filterable by type, source and
distribution; kept up to date by ``static/mini_buildd/events_stream.js`` from the Server-Sent
Events stream, :mod:`mini_buildd.sse`, resuming after the page's newest event), saved events below
``var/events`` (``/mini_buildd/events/<path>``), and the directory browsers over the events,
builds and repositories trees (``*-dir/<path>``: listings; files are handed to the static file
server). Symlinks there (planted by uploads or builds) are neither followed nor listed.

The queue page must stay cheap (it is the busiest page): rows come pre-rendered from
:mod:`mini_buildd.webapp.eventrows`, no database query per event.
"""

import datetime
import heapq
import logging
import os
import pathlib
import stat

from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.utils.safestring import mark_safe

from mini_buildd import config, events, sse
from mini_buildd.webapp import eventrows, views

LOG = logging.getLogger(__name__)

TYPES = [t.value for t in events.Type]
#: At most this many saved events are shown for one path.
MAX_SAVED = 500


def _filters(request):
    """``(filters for Events.queue, form values, errors)`` from the query."""
    errors = []
    types = [t.strip().upper() for t in request.GET.getlist("type") if t.strip()]
    bad = [t for t in types if t not in TYPES]
    if bad:
        errors.append(f"Unknown event type(s): {', '.join(bad)} (known: {', '.join(TYPES)}).")
        types = [t for t in types if t in TYPES]
    source = request.GET.get("source", "").strip()
    distribution = request.GET.get("distribution", "").strip()
    filters = {"types": types or None, "source": source or None, "distribution": distribution or None}
    return filters, {"types": types, "source": source, "distribution": distribution}, errors


def events_page(request):
    """``/mini_buildd/events/``: the in-memory queue, newest first; live updates by JavaScript."""
    filters, form, errors = _filters(request)
    hub = views.hub()
    if hub is None:
        shown, newest = [], None
    else:
        everything = hub.queue()  # once: the rows and the stream's resume point agree
        newest = everything[0] if everything else None
        shown = [e for e in everything if (not filters["types"] or e.type.value in filters["types"])
                 and filters["source"] in (None, e.source) and filters["distribution"] in (None, e.distribution)]
    after = (newest.timestamp if newest else datetime.datetime.now(datetime.timezone.utc)).isoformat()
    context = {
        "table": mark_safe(eventrows.table(shown, empty="No events (yet)." if not any(filters.values()) else "No matching events.",
                                           live=hub is not None)),
        "count": len(shown), "form": form, "type_choices": TYPES, "errors": errors,
        "live": hub is not None, "after": after, "has_hub": hub is not None,
        # the stream resumes after the newest queued event (the last one logged), filtered or not
        "last_event_id": sse.event_id(newest) if newest else "", "stream_path": sse.PATH,
    }
    return render(request, "mini_buildd/events.html", context, status=400 if errors else 200)


def _inside(root, path):
    """``root/path``, or None if it does not exist or is not a plain path below ``root``: no ``..``
    or ``.`` component, and no symlink (nor device, FIFO, ...) in any component (files there are
    written by uploaders and builds)."""
    target = pathlib.Path(root)
    for part in (p for p in path.split("/") if p):
        if part in (".", "..") or "\0" in part:
            return None
        target = target / part
        try:
            st = os.lstat(target)
        except OSError:
            return None
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            return None
    return target if target.exists() else None


def saved_events(request, path):
    """``/mini_buildd/events/<path>``: the events saved below ``var/events/<path>``, newest first."""
    target = _inside(config.paths.events, path)
    if target is None:
        return views.not_found_page(request, f"No saved events at '{path}'.")
    files = [target] if target.is_file() else [f for f in events.find_event_files(target) if not f.is_symlink()]
    loaded = []
    for f in files:
        try:
            loaded.append(events.Event.load(f))
        except (OSError, ValueError, UnicodeDecodeError) as e:
            LOG.warning("Unreadable event file %s: %s", f, e)
    if not loaded:
        return views.not_found_page(request, f"No saved events at '{path}'.")
    shown = heapq.nlargest(MAX_SAVED, loaded, key=lambda e: e.timestamp)
    context = {"table": mark_safe(eventrows.table(shown, cache=False)), "count": len(shown), "path": path,
               "truncated": len(loaded) > len(shown), "dir_url": eventrows.events_dir_url(path)}
    return render(request, "mini_buildd/events_saved.html", context)


# ------------------------------------------------------------------------------------------------ directory browsers
DIRS = {
    # name: (root path function, title, static URL prefix)
    "events": (lambda: config.paths.events, "Event files", "/static/events/"),
    "builds": (lambda: config.paths.builds, "Build directories", "/static/builds/"),
    "repositories": (lambda: config.paths.repositories, "Repository directories", "/repositories/"),
}


def _entries(target, path):
    result = []
    with os.scandir(target) as it:
        for entry in sorted(it, key=lambda e: (not e.is_dir(follow_symlinks=False), e.name)):
            if entry.name.startswith(".") or entry.is_symlink():
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            if not is_dir and not entry.is_file(follow_symlinks=False):
                continue
            rel = f"{path}{entry.name}" + ("/" if is_dir else "")
            result.append({"name": entry.name + ("/" if is_dir else ""), "rel": eventrows.quote_path(rel), "is_dir": is_dir,
                           "size": "" if is_dir else st.st_size,
                           "mtime": datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")})
    return result


def dir_browser(request, name, path=""):
    """``/mini_buildd/<name>-dir/<path>``: directory listing; a file redirects to its static URL."""
    root_func, title, static_prefix = DIRS[name]
    root = root_func()
    target = _inside(root, path)
    if target is None:
        return views.not_found_page(request, f"Nothing at '{path}' in the {title.lower()}.")
    if target.is_file():
        return HttpResponseRedirect(static_prefix + eventrows.quote_path(path))
    if path and not path.endswith("/"):
        return HttpResponseRedirect(f"/mini_buildd/{name}-dir/{eventrows.quote_path(path)}/")
    parts = [p for p in path.split("/") if p]
    crumbs = [{"name": p, "url": f"/mini_buildd/{name}-dir/" + eventrows.quote_path("/".join(parts[:i + 1])) + "/"}
              for i, p in enumerate(parts)]
    context = {"title": title, "name": name, "path": path, "crumbs": crumbs, "entries": _entries(target, path),
               "base": f"/mini_buildd/{name}-dir/", "static_url": static_prefix + eventrows.quote_path(path)}
    return render(request, "mini_buildd/dir.html", context)
