"""Views of the web application: home, sitemap, error pages, and the helpers the page modules share
(``views_events``, ``views_builds``, ``views_repositories``, ``views_builders``).

Pages read the running services (:mod:`mini_buildd.services`) and the models; actions run API
calls through :func:`run_call` (the call registry), never their own copy of the logic.
"""

import logging

from django.contrib import messages
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.safestring import mark_safe

from mini_buildd import models, services
from mini_buildd.api import registry
from mini_buildd.api import calls as _calls  # noqa: F401  pylint: disable=unused-import
from mini_buildd.webapp import eventrows

LOG = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ helpers
def hub():
    """The event hub, or None (no daemon in this process)."""
    return services.events


def queued_events(**filters):
    h = hub()
    return h.queue(**filters) if h is not None else []


def ongoing_events():
    h = hub()
    return h.ongoing() if h is not None else []


def engine():
    return services.engine if services.engine_running() else None


def error_page(request, status, title, detail):
    return render(request, "mini_buildd/error.html", {"status": status, "title": title, "detail": detail}, status=status)


def not_found_page(request, detail):
    return error_page(request, 404, "Not found", detail)


def forbidden_page(request, detail="You may not do this."):
    return error_page(request, 403, "Forbidden", detail)


def staff_only(request, next_url, what):
    """None if the request's user is staff; else the response: the login page (anonymous, back to
    ``next_url`` afterwards) or a 403 page saying that only staff users may ``what``."""
    if not request.user.is_authenticated:
        return HttpResponseRedirect(f"/accounts/login/?next={next_url}")
    if not is_staff(request.user):
        return forbidden_page(request, f"Only staff users may {what}.")
    return None


def run_call(request, name, query, what=None):
    """Run API call ``name`` (confirmed) for the request's user; put the result or the problem into
    the request's messages. Returns ``(ok, result_or_problem)``."""
    call = registry.get(name)
    what = what or name
    try:
        result = registry.execute(call, query, user=request.user, confirm=name)
    except registry.Problem as problem:
        LOG.warning("Web action %s by %s: %s", name, request.user, problem)
        messages.error(request, f"{what}: {problem.status} {problem.title}: {problem.detail}")
        return False, problem
    except Exception as e:  # pylint: disable=broad-except  # request boundary: an internal error is a message, never a traceback
        LOG.exception("Web action %s by %s failed", name, request.user)
        messages.error(request, f"{what}: internal error: {type(e).__name__}: {e}")
        return False, e
    messages.success(request, f"{what}: done." + (f" Result: {result}" if result not in ({}, [], None, "") else ""))
    return True, result


def is_staff(user):
    return bool(user.is_authenticated and user.is_active and (user.is_staff or user.is_superuser))


# ------------------------------------------------------------------------------------------------ pages
def home(request):
    """The home page: daemon status, chroots, remotes, running and recent events."""
    daemon = models.Daemon.get()
    chroots = [c for c in models.Chroot.mbd_concrete_all() if c.mbd_is_active()]
    remotes = [r for r in models.Remote.objects.order_by("http") if r.mbd_is_active_or_reactivate()]
    ongoing = ongoing_events()
    context = {
        "daemon": daemon,
        "engine_running": services.engine_running(),
        "load": registry.engine_load(),
        "repositories": models.Repository.objects.all(),
        "chroots": chroots,
        "remotes": remotes,
        "packaging": [e for e in ongoing if e.type.value == "PACKAGING"],
        "building": [e for e in ongoing if e.type.value == "BUILDING"],
        "latest": mark_safe(eventrows.table(queued_events()[:10])),
        "has_hub": hub() is not None,
        "uploads_refused": _calls.uploads_refused(daemon),
        "metrics_public": daemon.metrics_access == "anonymous",
    }
    return render(request, "mini_buildd/home.html", context)


SITEMAP = (
    ("/mini_buildd/", "Home: instance status"),
    ("/mini_buildd/events/", "Events (live)"),
    ("/mini_buildd/builds/", "Builds: ongoing and recent, live build logs"),
    ("/mini_buildd/repositories/", "Repositories: distributions, suites, package counts, apt lines"),
    ("/mini_buildd/builders/", "Builders: chroots, build slots, remotes"),
    ("/mini_buildd/crontab/", "Crontab: jobs, last runs, logs"),
    ("/mini_buildd/api/", "API calls"),
    ("/mini_buildd/setup/", "Setup (administrators)"),
    ("/mini_buildd/events-dir/", "Event files"),
    ("/mini_buildd/builds-dir/", "Build directories"),
    ("/mini_buildd/repositories-dir/", "Repository directories"),
    ("/repositories/", "APT repositories (static)"),
    ("/accounts/profile/", "Your profile"),
    ("/admin/", "Django administration"),
)


def sitemap(request):
    return render(request, "mini_buildd/sitemap.html", {"entries": SITEMAP})


def null(request):  # pylint: disable=unused-argument
    """Trivial page: the login 'next' target of API clients."""
    return HttpResponse("", content_type="text/plain")


def not_found(request, exception=None):  # pylint: disable=unused-argument
    return not_found_page(request, f"There is nothing at {request.path}.")


_PLAIN_500 = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>500 Internal error</title></head>'
              '<body><h1>500 Internal error</h1><p>Something went wrong on the server; see the daemon log.</p></body></html>\n')


def server_error(request):
    """Never a traceback: the error page, or a minimal one if even that fails (e.g. database gone)."""
    try:
        return render(request, "mini_buildd/error.html", {"status": 500, "title": "Internal error",
                                                          "detail": "Something went wrong on the server; see the daemon log."},
                      status=500)
    except Exception:  # pylint: disable=broad-except  # last resort of the error page itself
        LOG.exception("Rendering the error page failed")
        return HttpResponse(_PLAIN_500, status=500, content_type="text/html; charset=utf-8")
