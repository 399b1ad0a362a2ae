"""The webhook section of the profile page (issue #17; template
``registration/profile_webhooks.html``): the user's webhooks (staff: also the repository
webhooks) with their delivery logs, the form to create one (its secret is shown once, on the page
answering the creation) and a delete button per webhook.

Both actions run the API calls ``webhook_create`` and ``webhook_delete`` (one implementation); the
profile view (:func:`mini_buildd.webapp.views_account.profile`) hands its POSTs with these
``action`` values here.
"""

from django.contrib import messages
from django.shortcuts import redirect

from mini_buildd.api import calls_webhooks
from mini_buildd.events import Type

#: The profile page's POST actions handled here.
ACTIONS = ("webhook_create", "webhook_delete")


def post(request, action, run):
    """Handle a POST ``action`` (``run``: the profile view's call runner). Returns ``(response,
    state)``: a response to answer at once, or None and what :func:`context` shows (the form's
    errors, or the new webhook with its secret)."""
    if action == "webhook_create":
        values = {"url": request.POST.get("webhook_url", ""), "types": ",".join(request.POST.getlist("webhook_types")),
                  "repository": request.POST.get("webhook_repository", ""), "secret": request.POST.get("webhook_secret", "")}
        form, ok, result = run(request, "webhook_create", values)
        if ok:
            messages.success(request, f"Webhook {result['id']} created: copy its secret now, it is not shown again.")
            return None, {"created": result}
        return None, {"form": form, "values": values}
    form, ok, result = run(request, "webhook_delete", {"webhook_id": request.POST.get("webhook_id", "")})
    if ok:
        messages.success(request, f"Webhook {result['id']} ({result['url']}) deleted.")
        return redirect("mbd-profile"), {}
    return None, {"form": form, "values": {}}


def context(request, state=None):
    """The template context of the section (``state``: from :func:`post`)."""
    state = state or {}
    user = request.user
    hooks = list(calls_webhooks.visible(user).prefetch_related("deliveries"))
    values = state.get("values") or {}
    return {"webhooks": hooks,
            "webhook_form": state.get("form"),
            "webhook_created": state.get("created"),
            "webhook_values": values,
            "webhook_checked_types": [t for t in values.get("types", "").split(",") if t],
            "webhook_types": [t.value for t in Type],
            "webhook_repositories": calls_webhooks.repository_choices() if calls_webhooks.is_staff(user) else []}
