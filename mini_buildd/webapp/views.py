"""Views of the web application."""

from django.http import HttpResponse
from django.shortcuts import render

from mini_buildd import models


def home(request):
    daemon = models.Daemon.get()
    context = {
        "daemon": daemon,
        "repositories": models.Repository.objects.all(),
        "chroots": models.Chroot.mbd_concrete_all(),
        "remotes": models.Remote.objects.all(),
    }
    return render(request, "mini_buildd/home.html", context)


def null(request):  # pylint: disable=unused-argument
    """Trivial page: the login 'next' target of API clients."""
    return HttpResponse("", content_type="text/plain")


def not_found(request, exception=None):  # pylint: disable=unused-argument
    return render(request, "mini_buildd/error.html", {"status": 404, "title": "Not found", "detail": request.path}, status=404)


def server_error(request):
    return render(request, "mini_buildd/error.html", {"status": 500, "title": "Internal error",
                                                      "detail": "See the daemon log."}, status=500)
