"""URL map of the web application (upstream §5.1). Static files and ``/repositories/`` are served by
twisted directly (see :mod:`mini_buildd.httpd`), never through Django.
"""

from django.contrib import admin
from django.urls import include, path

from mini_buildd import manual
from mini_buildd.webapp import views, views_builders, views_builds, views_events, views_repositories

urlpatterns = [
    path("", views.home, name="mbd-root"),
    path("mini_buildd/", views.home, name="mbd-home"),
    path("mini_buildd/sitemap/", views.sitemap, name="mbd-sitemap"),
    path("mini_buildd/events/", views_events.events_page, name="mbd-events"),
    path("mini_buildd/events/<path:path>", views_events.saved_events, name="mbd-events-saved"),
    path("mini_buildd/events-dir/", views_events.dir_browser, {"name": "events"}, name="mbd-events-dir"),
    path("mini_buildd/events-dir/<path:path>", views_events.dir_browser, {"name": "events"}),
    path("mini_buildd/builds-dir/", views_events.dir_browser, {"name": "builds"}, name="mbd-builds-dir"),
    path("mini_buildd/builds-dir/<path:path>", views_events.dir_browser, {"name": "builds"}),
    path("mini_buildd/repositories-dir/", views_events.dir_browser, {"name": "repositories"}, name="mbd-repositories-dir"),
    path("mini_buildd/repositories-dir/<path:path>", views_events.dir_browser, {"name": "repositories"}),
    path("mini_buildd/builds/", views_builds.builds_page, name="mbd-builds"),
    path("mini_buildd/builds/<path:bkey>/", views_builds.build_page, name="mbd-build"),
    path("mini_buildd/repositories/", views_repositories.repositories_page, name="mbd-repositories"),
    path("mini_buildd/repositories/<str:identity>/dists/<str:diststr>/", views_repositories.distribution_page,
         name="mbd-distribution"),
    path("mini_buildd/packages/", views_repositories.package_lookup, name="mbd-package-lookup"),
    path("mini_buildd/packages/<str:source>/", views_repositories.package_page, name="mbd-package"),
    path("mini_buildd/packages/<str:source>/buildtimes.svg", views_repositories.package_buildtimes_svg, name="mbd-package-buildtimes"),
    path("mini_buildd/builders/", views_builders.builders_page, name="mbd-builders"),
    path("mini_buildd/crontab/", views_builders.crontab_page, name="mbd-crontab"),
    path("mini_buildd/manual/", manual.view, name="mbd-manual"),
    path("mini_buildd/manual/<path:path>", manual.view),
    path("", include("mini_buildd.metrics_views")),  # /metrics, /healthz, /readyz, the home page's plots
    # Form pages (API forms, setup, accounts) come before the plain API include: HTML API pages are theirs.
    path("", include("mini_buildd.webapp.urls_forms")),
    path("mini_buildd/api/", include("mini_buildd.api.http")),
    path("accounts/null/", views.null, name="mbd-null"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]

handler404 = "mini_buildd.webapp.views.not_found"
handler500 = "mini_buildd.webapp.views.server_error"
