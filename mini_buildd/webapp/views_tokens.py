"""The API tokens section of the profile page (issue #17): the user's tokens, a form to create one
(its secret shown once, in the answer to that POST, never stored or redirected through a
session), revocation. Everything runs through the API calls ``token_create``, ``token_list`` and
``token_revoke`` (:mod:`mini_buildd.api.calls_tokens`); the profile view
(:func:`mini_buildd.webapp.views_account.profile`) hands its token actions here; the template is
``registration/_profile_tokens.html``.
"""

import logging

from mini_buildd import models, tokens
from mini_buildd.api import registry

LOG = logging.getLogger(__name__)

#: Profile page actions (the API call of each).
ACTIONS = ("token_create", "token_revoke")


def call_data(action, post):
    """The call arguments of a token action from the profile page's POST."""
    if action == "token_create":
        return {"scope": post.get("scope", ""), "name": post.get("name", ""),
                "repositories": ",".join(post.getlist("repositories")), "expires": post.get("expires", "")}
    return {"token": post.get("token", "")}


def context(request, form=None, created=None):
    """Template context of the tokens section: the user's tokens, the scopes the user may give,
    the repositories, the created token (once), the failed form."""
    user = request.user
    level = tokens.user_level(user)
    listed = []
    try:
        listed = registry.execute(registry.get("token_list"), {}, user=user)
    except registry.Problem as problem:  # e.g. a read-scope token looking at the page
        LOG.debug("Profile tokens section for %s: %s", user, problem)
    return {
        "api_tokens": listed,
        "token_scopes": [s for s in tokens.SCOPES if tokens.AUTH_LIMIT[s] <= level],
        "token_repositories": list(models.Repository.objects.order_by("identity").values_list("identity", flat=True)),
        "token_created": created,
        "token_form": form,
        "token_values": {"name": request.POST.get("name", ""), "scope": request.POST.get("scope", ""),
                         "expires": request.POST.get("expires", "")} if form is not None else {},
        "token_via_token": getattr(request, "mbd_api_token", None) is not None,
    }
