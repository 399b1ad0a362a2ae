"""Builds pages: ongoing and recent builds (``/mini_buildd/builds/``) and one build with its (live)
build log (``/mini_buildd/builds/<bkey>/``; ``?tail=1`` gives the log's tail as plain text for the
JavaScript live view, header ``X-Mini-Buildd-Ongoing: 1|0``; ``?part=piuparts|autopkgtest`` the
part of the log where that QA check ran, as plain text, linked from the page when it ran). Staff
users cancel an ongoing build there (POST ``action=cancel`` runs the ``cancel`` API call).
"""

import logging

from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.safestring import mark_safe

from mini_buildd import config, events
from mini_buildd.tools import sbuild_log
from mini_buildd.webapp import eventrows, views
from mini_buildd.webapp.views_events import _inside

LOG = logging.getLogger(__name__)

#: How much of a build log the page shows (bytes from the end).
TAIL_BYTES = 64 * 1024


def builds_page(request):
    """The builds page: running builds, packaging, recent builds and the slots."""
    ongoing = views.ongoing_events()
    eng = views.engine()
    builder = eng.builder if eng is not None else None
    context = {
        "building": mark_safe(eventrows.table([e for e in ongoing if e.type == events.Type.BUILDING], empty="No builds running.")),
        "packaging": mark_safe(eventrows.table([e for e in ongoing if e.type == events.Type.PACKAGING], empty="Nothing being packaged.")),
        "recent": mark_safe(eventrows.table(views.queued_events(types=[events.Type.BUILT])[:50], empty="No builds recently.")),
        "slots": builder.max_slots if builder is not None else None,
        "load": builder.load if builder is not None else None,
        "has_hub": views.hub() is not None,
    }
    return render(request, "mini_buildd/builds.html", context)


def _logs(directory):
    try:
        return sorted(p for p in directory.iterdir() if p.name.endswith(".buildlog") and p.is_file())
    except OSError:
        return []


def _tail(path):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read()
        text = data.decode("utf-8", errors="replace")
        if size > TAIL_BYTES:
            text = "[...]" + text[text.find("\n"):] if "\n" in text else text
        return text
    except OSError:
        return ""


def _text(path):
    """The whole log as it is (``\r`` kept: tools write progress lines with it)."""
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            return f.read()
    except OSError:
        return ""


def _qa_parts(log):
    """``{check: its part of the build log}`` for the QA checks that ran (piuparts, autopkgtest)."""
    text = _text(log) if log else ""
    parts = {name: sbuild_log.qa_section(text, name) for name in sbuild_log.QA_SECTIONS}
    return {name: part for name, part in parts.items() if part is not None}


def _build_info(bkey):
    """``(events of this build newest first, ongoing, log path, static log URL)``."""
    hub = views.hub()
    queued = [e for e in hub.queue() if e.bkey == bkey] if hub is not None else []
    saved_dir = _inside(config.paths.events, bkey)
    saved = []
    if saved_dir is not None and saved_dir.is_dir():
        for f in events.find_event_files(saved_dir):
            try:
                saved.append(events.Event.load(f))
            except (OSError, ValueError, UnicodeDecodeError):
                pass
    merged = {e.identity(): e for e in saved + queued}
    evs = sorted(merged.values(), key=lambda e: e.timestamp, reverse=True)
    ongoing = hub is not None and any(e.bkey == bkey for e in hub.ongoing())
    build_dir = _inside(config.paths.builds, bkey)
    log, url = None, None
    if saved_dir is not None and _logs(saved_dir) and not ongoing:
        log = _logs(saved_dir)[0]
        url = "/static/events/" + eventrows.quote_path(f"{bkey}/{log.name}")
    elif build_dir is not None and _logs(build_dir):
        log = _logs(build_dir)[0]
        url = "/static/builds/" + eventrows.quote_path(f"{bkey}/{log.name}")
    return evs, ongoing, log, url


def _cancel(request, bkey):
    page = f"/mini_buildd/builds/{eventrows.quote_path(bkey)}/"
    if request.POST.get("action") != "cancel":
        return views.error_page(request, 400, "Bad request", f"Unknown action '{request.POST.get('action', '')}'.")
    refused = views.staff_only(request, page, "cancel builds")
    if refused is not None:
        return refused
    views.run_call(request, "cancel", {"bkey": bkey}, what=f"Cancel build {bkey}")
    return HttpResponseRedirect(page)


def build_page(request, bkey):
    """The page of one build: its events and log; POST cancels it."""
    bkey = bkey.strip("/")
    if _inside(config.paths.builds, bkey) is None and _inside(config.paths.events, bkey) is None \
            and not any(e.bkey == bkey for e in views.queued_events()):
        return views.not_found_page(request, f"No build '{bkey}'.")
    if request.method == "POST":
        return _cancel(request, bkey)
    evs, ongoing, log, url = _build_info(bkey)
    if request.GET.get("tail"):
        response = HttpResponse(_tail(log) if log else "", content_type="text/plain; charset=utf-8")
        response["X-Mini-Buildd-Ongoing"] = "1" if ongoing else "0"
        response["Cache-Control"] = "no-store"
        return response
    qa_parts = _qa_parts(log) if log and not ongoing else {}
    part = request.GET.get("part")
    if part:
        if part not in qa_parts:
            return views.not_found_page(request, f"No {part} part in the build log of '{bkey}'.")
        return HttpResponse(qa_parts[part], content_type="text/plain; charset=utf-8")
    parts = bkey.split("/")
    page = f"/mini_buildd/builds/{eventrows.quote_path(bkey)}/"
    context = {"bkey": bkey, "source": parts[0], "version": parts[1] if len(parts) > 1 else "",
               "arch": parts[3] if len(parts) > 3 else "", "ongoing": ongoing,
               "table": mark_safe(eventrows.table(evs, empty="No events for this build.", cache=False)),
               "log": _tail(log) if log else None, "log_url": url, "log_name": log.name if log else None,
               "package_url": eventrows.package_url(parts[0]), "can_cancel": ongoing and views.is_staff(request.user),
               "qa_links": [(name, f"{page}?part={name}") for name in qa_parts]}
    return render(request, "mini_buildd/build.html", context)
