"""URL patterns of the form pages: API index and call forms, the setup page, and the account pages
(registration, activation, profile). Included by :mod:`mini_buildd.webapp.urls` with
``path("", include("mini_buildd.webapp.urls_forms"))``; must come *before* the plain
``mini_buildd/api/`` include there so that the HTML API pages are ours (non-HTML outputs are handed
to :mod:`mini_buildd.api.http` unchanged).
"""

from django.urls import path

from mini_buildd.webapp import views_account, views_forms

urlpatterns = [
    path("mini_buildd/api/", views_forms.api_index, name="mbd-api-index"),
    path("mini_buildd/api/<str:name>/", views_forms.api_call, name="mbd-api-form"),
    path("mini_buildd/setup/", views_forms.setup, name="mbd-setup"),
    path("accounts/register/", views_account.register, name="mbd-register"),
    path("accounts/activate/<str:uidb64>/<str:token>/", views_account.activate, name="mbd-activate"),
    path("accounts/profile/", views_account.profile, name="mbd-profile"),
]
