"""The HTTP side of monitoring (issue #17), as Django views (so session logins and API tokens
authenticate them like every page): ``/metrics`` (OpenMetrics text; anonymous or active staff users
only, per ``Daemon.metrics_access``), ``/healthz`` (200 ``ok`` while the HTTP server answers),
``/readyz`` (200 when ready, else 503 with the reasons, JSON), and the home page's SVG plots
(``/mini_buildd/plots/build-durations.svg``, ``/mini_buildd/plots/queue.svg``, anonymous: they show
what the events page shows). The figures are :mod:`mini_buildd.metrics`'.
"""

import logging

from django.http import HttpResponse, JsonResponse
from django.urls import path

from mini_buildd import events, metrics, metrics_plots, models, services
from mini_buildd.webapp import views

LOG = logging.getLogger(__name__)


def _plain(text, status=200, **headers):
    response = HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def access_refusal(request):
    """None if the request may read ``/metrics``; else the 401 (not logged in) or 403 (not an active
    staff user) answer."""
    if models.Daemon.get().metrics_access != "staff":
        return None
    if not request.user.is_authenticated:
        return _plain("401 Unauthorized: /metrics is for staff users only (Daemon metrics_access): log in or send "
                      "'Authorization: Bearer <token>'.\n", status=401, WWW_Authenticate='Bearer realm="mini-buildd"')
    if not views.is_staff(request.user):
        return _plain("403 Forbidden: /metrics is for staff users only (Daemon metrics_access).\n", status=403)
    return None


def metrics_view(request):
    """``/metrics``: the OpenMetrics text (or the refusal)."""
    refusal = access_refusal(request)
    if refusal is not None:
        return refusal
    response = HttpResponse(metrics.text(), content_type=metrics.CONTENT_TYPE)
    response["Cache-Control"] = "no-store"
    return response


def healthz(request):  # pylint: disable=unused-argument
    return _plain("ok\n")


def readyz(request):  # pylint: disable=unused-argument
    """``/readyz``: 200 when ready, else 503; JSON ``{"ready": bool, "reasons": [...]}``."""
    ready, reasons = metrics.readiness()
    response = JsonResponse({"ready": ready, "reasons": reasons}, status=200 if ready else 503, json_dumps_params={"indent": 1})
    response["Cache-Control"] = "no-store"
    return response


def _svg(text):
    response = HttpResponse(text, content_type="image/svg+xml")
    response["Cache-Control"] = "max-age=30"
    return response


def build_durations_svg(request):  # pylint: disable=unused-argument
    return _svg(metrics_plots.histogram_svg(metrics.event_figures().build_duration))


def queue_svg(request):  # pylint: disable=unused-argument
    hub = services.events
    points = metrics.ongoing_timeline(hub.queue()) if hub is not None else []
    return _svg(metrics_plots.timeline_svg(points, events.utcnow()))


urlpatterns = [
    path("metrics", metrics_view, name="mbd-metrics"),
    path("healthz", healthz, name="mbd-healthz"),
    path("readyz", readyz, name="mbd-readyz"),
    path("mini_buildd/plots/build-durations.svg", build_durations_svg, name="mbd-plot-build-durations"),
    path("mini_buildd/plots/queue.svg", queue_svg, name="mbd-plot-queue"),
]
