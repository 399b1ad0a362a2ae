"""Repository pages: the overview (``/mini_buildd/repositories/``: per repository a distributions ×
suites table with package counts and apt lines), one distribution
(``/mini_buildd/repositories/<id>/dists/<diststr>/``), and the package tracking page
(``/mini_buildd/packages/<source>/``: versions in every distribution and rollback, event history,
build logs, changes, build-time picture ``buildtimes.svg``; staff actions migrate, remove and port
POST to the API calls).

Listings come from :mod:`mini_buildd.archive.operations` (``show``); actions go through the API call
registry (:func:`mini_buildd.webapp.views.run_call`).
"""

import datetime
import logging

from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.utils.safestring import mark_safe

from mini_buildd.archive import change_snapshots, installability, operations, package_search, qa_regressions
from mini_buildd import config, dist, events, models, sse
from mini_buildd.api import registry
from mini_buildd.pipeline import port_watch
from mini_buildd.webapp import eventrows, svg, views

LOG = logging.getLogger(__name__)

#: Saved events shown on a package page at most.
MAX_PACKAGE_EVENTS = 300


def _sources_list(query):
    """Lines of the ``sources_list`` call (or [] with a log message)."""
    try:
        text = registry.execute(registry.get("sources_list"), query)
    except Exception as e:  # pylint: disable=broad-except  # request boundary: the page renders without the lines
        LOG.warning("sources_list %s: %s", query, e)
        return []
    # (an empty option list "[]" is left out: it is noise in a line meant for copying)
    return [line.replace(" [] ", " ", 1) for line in text.splitlines() if line.strip()]


def _snapshot_names(repo, diststr):
    """Snapshot names of ``diststr``, newest first (the snapshot dirs; no reprepro run)."""
    try:
        return sorted((p.name for p in repo.mbd_reprepro().snapshots_dir(diststr).iterdir() if p.is_dir()), reverse=True)
    except OSError:
        return []


def _repository_table(repo):
    suite_options = list(repo.layout.mbd_suite_options())
    rows = []
    for d in repo.mbd_distributions():
        components = d.mbd_components()
        cells = []
        for so in suite_options:
            diststr = repo.mbd_diststr(d, so)
            apt = _sources_list({"repositories": [repo.identity], "codenames": [d.codename], "suites": [so.suite.name]})
            cells.append({"diststr": diststr, "count": repo.mbd_source_package_count(diststr, components), "apt": apt[0] if apt else "",
                          "url": f"/mini_buildd/repositories/{repo.identity}/dists/{diststr}/", "so": so,
                          "snapshots": _snapshot_names(repo, diststr)})
        rows.append({"distribution": d, "cells": cells})
    return {"repo": repo, "suites": suite_options, "rows": rows}


def repositories_page(request):
    repos = [_repository_table(r) for r in models.Repository.objects.select_related("layout").order_by("identity")]
    return render(request, "mini_buildd/repositories.html", {"repositories": repos})


def distribution_page(request, identity, diststr):
    """The page of one distribution of a repository: its packages and suite options."""
    try:
        d, view, distribution, so = operations.resolve(diststr)
        if d.repository != identity:
            raise operations.ArchiveError(f"Distribution '{diststr}' is not in repository '{identity}'.")
        view.parse(diststr)
    except operations.ArchiveError as e:
        return views.not_found_page(request, f"No distribution '{diststr}' in repository '{identity}': {e}")
    repo = view.repository
    regex = so.layout.experimental_mandatory_version_regex if so.experimental else so.layout.mandatory_version_regex
    base = d.get()
    packages, snapshots, error = [], [], None
    try:
        packages = sorted({(p["package"], p["version"]) for p in view.reprepro.list_dist(diststr) if p.get("type") == "dsc"})
        snapshots = view.reprepro.snapshots(base) if d.rollback is None else []
    except Exception as e:  # pylint: disable=broad-except  # request boundary: the page shows the error
        LOG.warning("Distribution page %s: %s", diststr, e)
        error = str(e)
    context = {
        "repo": repo, "diststr": diststr, "d": d, "so": so, "distribution": distribution,
        "mandatory_regex": dist.substitute(regex, repo.identity, distribution.base_source.codeversion),
        "rollbacks": [repo.mbd_diststr(distribution, so, r) for r in so.mbd_rollback_range()] if d.rollback is None else [],
        "apt": _sources_list({"repositories": [repo.identity], "codenames": [d.codename], "suites": [d.suite],
                              "rollbacks": "-1", "with_comment": "True"}),
        "packages": [{"source": s, "version": v, "url": eventrows.package_url(s)} for s, v in packages],
        "snapshots": list(reversed(snapshots)), "error": error,
        "base_url": f"/mini_buildd/repositories/{repo.identity}/dists/",
    }
    context.update(_snapshot_diff(request, view, base, snapshots))
    return render(request, "mini_buildd/distribution.html", context)


def _snapshot_diff(request, view, diststr, snapshots):
    """The page's snapshot difference (``?a=NAME[&b=NAME|live]``): context entries ``diff`` or ``diff_error``."""
    a, b = request.GET.get("a", ""), request.GET.get("b", "") or change_snapshots.LIVE
    if not a:
        return {"diff_a": "", "diff_b": change_snapshots.LIVE}
    out = {"diff_a": a, "diff_b": b}
    if a not in snapshots or (b != change_snapshots.LIVE and b not in snapshots):
        return {**out, "diff_error": f"No such snapshot of {diststr}: {a if a not in snapshots else b}"}
    try:
        return {**out, "diff": change_snapshots.diff(view.reprepro, diststr, a, b)}
    except Exception as e:  # pylint: disable=broad-except  # request boundary: the page shows the error
        LOG.warning("Snapshot diff %s %s..%s: %s", diststr, a, b, e)
        return {**out, "diff_error": str(e)}


# ------------------------------------------------------------------------------------------------ package tracking
def package_events(source):
    """Every known event of ``source`` (saved files and the queue), newest first."""
    found = {}
    root = config.paths.events_of(source)
    if source not in ("", ".", "..") and "/" not in source and root.is_dir():
        for path in events.find_event_files(root):
            try:
                ev = events.Event.load(path)
            except (OSError, ValueError, UnicodeDecodeError):
                continue
            found[ev.identity()] = ev
    for ev in views.queued_events(source=source):
        found.setdefault(ev.identity(), ev)
    return sorted(found.values(), key=lambda e: e.timestamp, reverse=True)


def _listing(source):
    """``({repository id: {diststr: entry}}, error)`` from the ``show`` domain function."""
    try:
        return operations.show(source), None
    except Exception as e:  # pylint: disable=broad-except  # request boundary: the page shows the error
        LOG.warning("Package page %s: show failed: %s", source, e)
        return {}, str(e)


def _installability(diststr, source):
    """``{"state": "installable" | "broken" | "unknown", "reasons": [...]}`` of ``source`` in ``diststr`` from the
    distribution's last installability report (renewed after every change of it)."""
    report = installability.report_of(diststr)
    if report is None:
        return {"state": "unknown", "reasons": []}
    reasons = report.get("broken", {}).get(source, [])
    return {"state": "broken" if reasons else "installable", "reasons": reasons}


def _qa_regressions(source, version, target_version):
    """What ``version`` does worse in QA than the version in the suite it migrates to (sentences)."""
    if not version or not target_version or version == target_version:
        return []
    return qa_regressions.regressions(source, target_version, version)


def _distribution_rows(listing, source):
    """Per repository: every distribution of it with the version of the package there (``listing``, and rollbacks)."""
    result = []
    for repo in models.Repository.objects.exclude(status=models.Repository.STATUS_REMOVED).select_related("layout").order_by("identity"):
        in_repo = listing.get(repo.identity, {})
        rows = []
        for d in repo.mbd_distributions():
            for so in repo.layout.mbd_suite_options():
                diststr = repo.mbd_diststr(d, so)
                entry = in_repo.get(diststr, {})
                rollbacks = entry.get("rollbacks", {})
                rb = [{"diststr": repo.mbd_diststr(d, so, r), "version": (rollbacks.get(repo.mbd_diststr(d, so, r)) or {}).get("version")}
                      for r in so.mbd_rollback_range()]
                migrates_to = repo.mbd_diststr(d, so.migrates_to) if so.migrates_to else None
                rows.append({"diststr": diststr, "version": entry.get("version"), "component": entry.get("component"),
                             "installability": _installability(diststr, source) if entry.get("version") else None,
                             "qa_regressions": _qa_regressions(source, entry.get("version"), in_repo.get(migrates_to, {}).get("version")),
                             "suite": so, "rollbacks": rb, "migrates_to": migrates_to,
                             "is_migrated": entry.get("is_migrated"), "uploadable": so.uploadable,
                             "changes_url": eventrows.events_dir_url(entry["changes_path"]) if entry.get("changes_path") else None,
                             "dsc_url": "/repositories/" + eventrows.quote_path(entry["dsc_path"]) if entry.get("dsc_path") else None})
        if in_repo or rows:
            result.append({"repo": repo, "rows": rows, "max_rollbacks": max((len(r["rollbacks"]) for r in rows), default=0),
                           "has_source": bool(in_repo)})
    return result


def _build_logs(evs):
    """(time, version, arch, status, log URL) of finished builds, newest first."""
    logs = []
    for ev in evs:
        if ev.type == events.Type.BUILT and ev.extra.get("buildlog"):
            logs.append({"timestamp": ev.timestamp, "version": ev.version, "arch": ev.extra.get("architecture"),
                         "status": ev.extra.get("sbuild_status") or ev.extra.get("internal_error") or "?",
                         "url": eventrows.events_dir_url(ev.extra["buildlog"]), "distribution": ev.distribution})
    return logs


def _changes(evs):
    seen, result = set(), []
    for ev in evs:
        path = ev.extra.get("changes")
        if path and path not in seen and ev.type in (events.Type.PACKAGING, events.Type.INSTALLED, events.Type.FAILED,
                                                     events.Type.BUILT, events.Type.REJECTED):
            seen.add(path)
            result.append({"name": path.rsplit("/", 1)[-1], "url": eventrows.events_dir_url(path), "timestamp": ev.timestamp,
                           "type": ev.type.value})
    return result


#: Form action -> API call (the call decides who may run it: migrate/port staff, remove admin).
ACTIONS = {"migrate": "migrate", "remove": "remove", "port": "port"}


def _post_action(request, source):
    action = request.POST.get("action", "")
    if action not in ACTIONS:
        return views.error_page(request, 400, "Bad request", f"Unknown action '{action}'.")
    refused = views.staff_only(request, eventrows.package_url(source), f"{action} packages")
    if refused is not None:
        return refused
    distribution = request.POST.get("distribution", "")
    version = request.POST.get("version", "")
    if action == "migrate":
        query = {"source": source, "distribution": distribution, "version": version}
        if request.POST.get("full"):
            query["full"] = "True"
        what = f"Migrate {source} {version} from {distribution}"
    elif action == "remove":
        query = {"source": source, "distribution": distribution, "version": version}
        what = f"Remove {source} {version} from {distribution}"
    else:
        targets = [t for t in request.POST.getlist("to_distributions") if t]
        query = {"source": source, "from_distribution": distribution, "to_distributions": targets, "version": version}
        what = f"Port {source} {version} from {distribution} to {', '.join(targets) or '(nothing)'}"
    views.run_call(request, ACTIONS[action], query, what=what)
    return HttpResponseRedirect(eventrows.package_url(source))


def package_page(request, source):
    """The page of a source package: where it is, its events; POST runs an action on it."""
    if request.method == "POST":
        return _post_action(request, source)
    listing, error = _listing(source)
    evs = package_events(source)
    if not listing and not evs and error is None:
        return views.not_found_page(request, f"No source package '{source}': it is in no repository and has no events.")
    shown = evs[:MAX_PACKAGE_EVENTS]
    user = request.user
    hub = views.hub()
    queued = hub.queue() if hub is not None else []
    newest = queued[0] if queued else None
    context = {
        # live: new events of this source come from the event stream (static/mini_buildd/events_stream.js)
        "live": hub is not None, "last_event_id": sse.event_id(newest) if newest else "", "stream_path": sse.PATH,
        "after": (newest.timestamp if newest else datetime.datetime.now(datetime.timezone.utc)).isoformat(),
        "event_types": ",".join(t.value for t in events.Type),
        "source": source, "error": error,
        "repositories": _distribution_rows(listing, source),
        "events": mark_safe(eventrows.table(shown, empty="No events.", cache=False, live=hub is not None)), "events_count": len(evs),
        "events_truncated": len(evs) > len(shown),
        "build_logs": _build_logs(evs)[:50], "changes": _changes(evs)[:50],
        "has_build_times": bool(svg.build_times(evs)),
        "staff": views.is_staff(user), "admin": bool(user.is_authenticated and user.is_superuser),
        "uploadable": _uploadable(), "outdated_ports": port_watch.outdated_of(source),
    }
    return render(request, "mini_buildd/package.html", context)


def _uploadable():
    try:
        return registry.get("port").arg("to_distributions").get_choices()
    except Exception:  # pylint: disable=broad-except  # request boundary: the page renders without the port form's choices
        return []


def package_buildtimes_svg(request, source):  # pylint: disable=unused-argument
    points = svg.build_times(package_events(source))
    response = HttpResponse(svg.build_times_svg(points, title=f"Build times of {source}"), content_type="image/svg+xml")
    response["Cache-Control"] = "max-age=30"
    return response


def _all_dists():
    """``[(diststr, dist dir)]`` of every repository's distributions (rollbacks too)."""
    out = []
    for repo in models.Repository.objects.all():
        rep = repo.mbd_reprepro()
        out += [(d, str(rep.dists_dir / d)) for d in rep.dists()]
    return out


def package_lookup(request):
    """``/mini_buildd/packages/?source=NAME``: go to that package's page. ``?q=TEXT`` (the header's
    search box): the source packages whose source or binary package names contain TEXT.
    ``?names=1``: every package name (JSON list; the search box's suggestions)."""
    source = request.GET.get("source", "").strip()
    if source:
        return HttpResponseRedirect(eventrows.package_url(source))
    if request.GET.get("names"):
        response = JsonResponse(package_search.names(_all_dists()), safe=False)
        response["Cache-Control"] = "max-age=60"
        return response
    query = request.GET.get("q", "").strip()[:100]
    if not query:
        return HttpResponseRedirect("/mini_buildd/repositories/")
    hits = package_search.search(_all_dists(), query)
    return render(request, "mini_buildd/search.html", {
        "query": query, "max": package_search.MAX_RESULTS,
        "hits": [{"source": h.source, "url": eventrows.package_url(h.source), "binaries": sorted(h.binaries),
                  "distributions": sorted(h.distributions.items())} for h in hits]})
