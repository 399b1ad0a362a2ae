"""Builders and crontab pages: chroots with status and build slots, remotes with status and load
(``/mini_buildd/builders/``; staff users run a chroot's or remote's check there: POST
``check=chroot:<pk>|remote:<pk>``); cron jobs with their last runs and logs, and "run now" for
administrators (``/mini_buildd/crontab/``, POST runs the ``cronjob`` API call).
"""

import collections
import datetime
import logging

from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import render

from mini_buildd import config, events, models
from mini_buildd.webapp import eventrows, views

LOG = logging.getLogger(__name__)

#: Seconds to wait for a remote's status on the builders page.
REMOTE_TIMEOUT = 3
#: Log lines shown per cron job.
CRON_LOG_LINES = 20


def _remote_load(remote):
    """The remote's load: kept on the model if it has it, else asked from the (active) remote; None if unknown."""
    for name in ("mbd_load", "load", "last_load"):
        value = getattr(remote, name, None)
        if callable(value):
            try:
                value = value()
            except Exception:  # pylint: disable=broad-except  # request boundary: an unknown load, not a failed page
                value = None
        if isinstance(value, (int, float)):
            return value
    if not remote.mbd_is_active_or_reactivate():
        return None
    from mini_buildd.pipeline import remotes  # pylint: disable=import-outside-toplevel
    try:
        status = remotes.fetch_status(remote, timeout=REMOTE_TIMEOUT)
        return float(status.get("load"))
    except (remotes.RemoteError, TypeError, ValueError) as e:  # no (numeric) load
        LOG.info("Builders page: no status of remote %s: %s", remote, e)
        return None


def _check(request):
    """Run the check of the chroot or remote named by ``check`` (``chroot:PK`` or ``remote:PK``)."""
    refused = views.staff_only(request, "/mini_buildd/builders/", "check builders")
    if refused is not None:
        return refused
    kind, _, pk = request.POST.get("check", "").partition(":")
    if kind == "chroot":
        chroot = models.Chroot.objects.filter(pk=pk).first() if pk.isdigit() else None
        target = chroot.mbd_concrete() if chroot is not None else None
    elif kind == "remote":
        target = models.Remote.objects.filter(pk=pk).first()
    else:
        return views.error_page(request, 400, "Bad request", "Nothing to check: 'check' must be chroot:ID or remote:ID.")
    if target is None:
        return views.not_found_page(request, f"No {kind} '{pk}'.")
    ok, detail = target.mbd_run_reported("check")
    (messages.success if ok else messages.error)(request, f"Check {kind} {target}: {detail}" + ("." if ok else ""))
    return HttpResponseRedirect("/mini_buildd/builders/")


def builders_page(request):
    """The builders page: chroots, build slots and running builds; POST checks a chroot."""
    if request.method == "POST":
        return _check(request)
    eng = views.engine()
    builder = eng.builder if eng is not None else None
    building = collections.defaultdict(list)
    for ev in views.ongoing_events():
        if ev.type == events.Type.BUILDING:
            building[f"{ev.distribution.split('-')[0]}:{ev.extra.get('architecture')}"].append(
                {"bkey": ev.bkey, "url": eventrows.build_url(ev.bkey), "source": ev.source, "version": ev.version})
    chroots = []
    for c in models.Chroot.mbd_concrete_all():
        chroots.append({"key": str(c), "pk": c.pk, "backend": type(c).__name__.replace("Chroot", "") or "Chroot", "status": c.mbd_status_display(),
                        "active": c.mbd_is_active(), "message": c.status_message, "builds": building.get(str(c), []),
                        "admin_url": f"/admin/mini_buildd/{type(c).__name__.lower()}/{c.pk}/change/"})
    remotes = [{"http": r.http, "pk": r.pk, "status": r.mbd_status_display(), "active": r.mbd_is_active_or_reactivate(),
                "load": _remote_load(r), "message": r.status_message} for r in models.Remote.objects.order_by("http")]
    context = {
        "chroots": chroots, "remotes": remotes, "engine_running": eng is not None,
        "slots": builder.max_slots if builder is not None else models.Daemon.get().max_parallel_builds,
        "busy": sum(len(v) for v in building.values()),
        "load": builder.load if builder is not None else None,
        "staff": views.is_staff(request.user),
    }
    return render(request, "mini_buildd/builders.html", context)


def _tail_lines(path, count):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return list(collections.deque(f, maxlen=count))
    except OSError:
        return []


def _when(value):
    if value is None:
        return None
    if isinstance(value, (int, float)):
        value = datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def crontab_page(request):
    """The crontab page: the scheduled jobs; POST (administrators) runs one now."""
    eng = views.engine()
    cron = eng.cron if eng is not None else None
    if request.method == "POST":
        if not request.user.is_authenticated:
            return HttpResponseRedirect("/accounts/login/?next=/mini_buildd/crontab/")
        if not request.user.is_superuser:
            return views.forbidden_page(request, "Only administrators may run cron jobs.")
        job = request.POST.get("id", "")
        views.run_call(request, "cronjob", {"id": job}, what=f"Run cron job {job}")
        return HttpResponseRedirect("/mini_buildd/crontab/")
    jobs = []
    for job in (cron.jobs if cron is not None else []):
        jobs.append({"id": job.id, "name": job.name, "type": job.type, "log_name": job.log_name, "interval": job.interval,
                     "last_run": _when(job.last_run), "last_result": job.last_result, "next_run": _when(job.next_run),
                     "log": "".join(_tail_lines(config.paths.crontab_log(job.log_name), CRON_LOG_LINES))})
    return render(request, "mini_buildd/crontab.html", {"jobs": jobs, "engine_running": eng is not None})
