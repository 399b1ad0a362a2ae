"""The webhook API calls (issue #17): ``webhook_create``, ``webhook_list``, ``webhook_delete``.

A logged-in user manages their own webhooks (every event, or the types chosen); staff may also
create repository webhooks (only events of that repository's distributions), list and delete
them; administrators see and delete every webhook. The secret is shown once, by ``webhook_create``.
A webhook of a user who is not an administrator may not point at an internal address (refused here
and at each delivery, see :mod:`mini_buildd.webhook_addresses`).
Registered after :mod:`mini_buildd.api.calls_admin` (:mod:`mini_buildd.api` imports it); the
deliveries themselves are :mod:`mini_buildd.webhooks`'.
"""

import logging

from mini_buildd import webhook_addresses, webhooks
from mini_buildd.api.registry import Argument, Call, Auth, Problem, register, argument_problem, URL, STRING, INT, LIST, CONFIRM, DEVELOPER
from mini_buildd.api.calls import _models, _repositories  # pylint: disable=protected-access
from mini_buildd.events import Type

LOG = logging.getLogger(__name__)

#: Webhooks one user may have (administrators: any number); each has its own delivery thread.
MAX_PER_USER = 20


def is_staff(user):
    """Staff or administrator: may manage repository webhooks."""
    return bool(getattr(user, "is_staff", False) or getattr(user, "is_superuser", False))


def repository_choices():
    """The repositories a repository webhook may be for."""
    return _repositories()


def visible(user):
    """The webhooks ``user`` may list and delete: their own; staff: also every repository webhook;
    administrators: all."""
    hooks = _models().Webhook.objects.select_related("owner", "repository").order_by("id")
    if getattr(user, "is_superuser", False):
        return hooks
    if is_staff(user):
        return hooks.filter(owner=user) | hooks.filter(repository__isnull=False)
    return hooks.filter(owner=user)


def create(user, url, types=(), repository="", secret=""):
    """Create a webhook for ``user``; its JSON with the ``secret`` (the only time it is shown)."""
    m = _models()
    if not getattr(user, "is_superuser", False) and m.Webhook.objects.filter(owner=user).count() >= MAX_PER_USER:
        raise Problem(409, f"You have {MAX_PER_USER} webhooks already (the most one user may have): delete one first")
    try:
        url = webhooks.check_url(url)
        if not getattr(user, "is_superuser", False):
            webhook_addresses.check_url_host(url, allowed_nets=webhook_addresses.allowed_nets_from_environment())
    except ValueError as e:
        raise argument_problem("url", f"Argument 'url': {e}") from e
    try:
        types = webhooks.check_types(types)
    except ValueError as e:
        raise argument_problem("types", f"Argument 'types': {e}") from e
    repo = None
    if repository:
        if not is_staff(user):
            raise Problem(403, "Only staff may create repository webhooks")
        repo = m.Repository.objects.filter(identity=repository).first()
        if repo is None:
            raise argument_problem("repository", f"Argument 'repository': no repository '{repository}'")
    if secret:
        try:
            secret = webhooks.check_secret(secret)
        except ValueError as e:
            raise argument_problem("secret", f"Argument 'secret': {e}") from e
    else:
        secret = webhooks.new_secret()
    hook = m.Webhook.objects.create(owner=user, repository=repo, url=url, types=",".join(types), secret=secret)
    LOG.info("User %s created webhook %s (%s, types %s) to %s.", user, hook.pk, f"repository {repo}" if repo else "user",
             ",".join(types) or "all", url)
    return {**hook.mbd_json(), "secret": secret}


def _create(args, user):
    return create(user, args["url"], args["types"], args["repository"], args["secret"])


def _list(_args, user):
    return [hook.mbd_json() for hook in visible(user).prefetch_related("deliveries")]


def delete(user, webhook_id):
    """Delete a webhook ``user`` may see (404 otherwise); its JSON."""
    hook = visible(user).filter(pk=webhook_id).first()
    if hook is None:
        raise Problem(404, f"No webhook {webhook_id} of yours")
    result = hook.mbd_json()
    hook.delete()
    LOG.info("User %s deleted webhook %s (%s).", user, webhook_id, result["url"])
    return result


def _delete(args, user):
    return delete(user, args["webhook_id"])


_WEBHOOK_JSON = ("{id, owner, repository ('': a user webhook), url, types ([]: all), active, created, deliveries: "
                 "[{delivery_id, type, event, state (pending, delivered, failed), attempts, status_code, last_error, "
                 "created, last_attempt, next_attempt, finished}] (newest first)}")

register(Call(
    "webhook_create", _create, category=DEVELOPER, auth=Auth.LOGIN,
    doc="Create a signed webhook\n\n"
        "Each event (of the types given; none: all) is POSTed as JSON to the URL, signed with the secret "
        "(header X-Mini-Buildd-Signature: sha256=HMAC-SHA256 of the body); failed deliveries are retried with "
        "backoff. With a repository (staff only), only events of its distributions. The secret is shown only now.",
    result_doc=_WEBHOOK_JSON[:-1] + ", secret}",
    args=[Argument("url", type=URL, doc="http or https URL the deliveries are POSTed to"),
          Argument("--types", "-T", type=LIST, choices=[t.value for t in Type], doc="event types (default: all)"),
          Argument("--repository", "-R", type=STRING, choices=_repositories, default="",
                   doc="a repository webhook: only events of this repository (staff only)"),
          Argument("--secret", "-S", type=STRING, default="",
                   doc=f"the signing secret ({webhooks.MIN_SECRET_LENGTH}+ characters; default: a random one)")]))

register(Call(
    "webhook_list", _list, category=DEVELOPER, auth=Auth.LOGIN,
    doc="List webhooks and their delivery logs\n\n"
        "Your own webhooks; staff also see repository webhooks, administrators all. Secrets are never shown.",
    result_doc=f"[{_WEBHOOK_JSON}]"))

register(Call(
    "webhook_delete", _delete, category=DEVELOPER, auth=Auth.LOGIN, flags=[CONFIRM],
    doc="Delete a webhook\n\nIts pending deliveries are dropped. Your own; staff: also repository webhooks.",
    result_doc=_WEBHOOK_JSON + " (the webhook deleted)",
    args=[Argument("webhook_id", type=INT, doc="the webhook's id (see webhook_list)")]))
