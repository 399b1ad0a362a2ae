"""URL map of the web application (SPEC §5.1). Static files and ``/repositories/`` are served by
twisted directly (see :mod:`mini_buildd.httpd`), never through Django.
"""

from django.contrib import admin
from django.urls import include, path

from mini_buildd.webapp import views

urlpatterns = [
    path("", views.home, name="mbd-root"),
    path("mini_buildd/", views.home, name="mbd-home"),
    path("mini_buildd/api/", include("mini_buildd.api.http")),
    path("accounts/null/", views.null, name="mbd-null"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]

handler404 = "mini_buildd.webapp.views.not_found"
handler500 = "mini_buildd.webapp.views.server_error"
