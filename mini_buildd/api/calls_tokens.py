"""The API calls of scoped API tokens (issue #17): ``token_create``, ``token_list`` and
``token_revoke``, a user's own tokens (Developer section, after the Administrator calls of
:mod:`mini_buildd.api.calls_admin`). The token format, scopes and checks are
:mod:`mini_buildd.tokens`; the model :class:`mini_buildd.models.ApiToken`.

A token is shown once, in the answer of ``token_create``; afterwards only its prefix and key
(``mbdt_XXXXXXXXXXXX…``). Requests authenticated by a token may list and revoke the user's tokens
but never create one (a leaked token can't make itself a longer life).
"""

import datetime
import logging

from mini_buildd import errors, tokens
from mini_buildd.api.registry import Argument, Call, Auth, register, CHOICE, LIST, DEVELOPER
from mini_buildd.api.calls import _models, _repositories  # pylint: disable=protected-access

LOG = logging.getLogger(__name__)


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _token_create(args, user):
    if getattr(user, "mbd_api_token", None) is not None:
        raise errors.Forbidden("API tokens can't create API tokens: log in with your password "
                               "(profile page, or mini-buildd-api with USER@ in the endpoint)")
    tokens.check_scope(args["scope"], user)
    expires = tokens.parse_expiry(args["expires"], _now())
    secret, key = tokens.generate()
    token = _models().ApiToken.objects.create(user_id=user.pk, name=args["name"].strip(), key=key,
                                              digest=tokens.digest(secret), scope=args["scope"],
                                              repositories=" ".join(args["repositories"]), expires=expires)
    LOG.info("User %s created API token %s (scope %s, repositories: %s, expires: %s).", user, token.mbd_display(),
             token.scope, token.repositories or "all", token.expires or "never")
    return {**token.mbd_describe(), "token": secret}


register(Call(
    "token_create", _token_create, category=DEVELOPER, auth=Auth.LOGIN,
    doc="Create an API token\n\n"
        "The token is shown only in this answer: keep it (e.g. in python3-keyring or a CI secret) and "
        "send it as 'Authorization: Bearer <token>' (mini-buildd-api: $MINI_BUILDD_API_TOKEN). "
        "Scopes: read (anonymous-level calls, authenticated), upload-check (also your own LOGIN calls "
        "but set_user_key), staff (staff calls), admin (all calls); never more than your own rights. "
        "A token restricted to repositories refuses calls naming others and instance-wide staff/admin calls. "
        "Requests with a token can't create tokens.",
    result_doc="{id, name, token (the secret: shown once), scope, repositories, created, expires, last_used, revoked, state}",
    args=[Argument("scope", type=CHOICE, choices=tokens.SCOPES, doc="what the token may do"),
          Argument("--name", "-N", default="", doc="what the token is for (e.g. the CI job)"),
          Argument("--repositories", "-R", type=LIST, choices=_repositories,
                   doc="restrict the token to these repositories (default: no restriction)"),
          Argument("--expires", "-E", default="",
                   doc="expiry: N days/hours/minutes ('30d', '12h') or an ISO 8601 date/time (UTC); default: never")]))


def _token_list(_args, user):
    return [t.mbd_describe() for t in _models().ApiToken.objects.filter(user_id=user.pk)]


register(Call(
    "token_list", _token_list, category=DEVELOPER, auth=Auth.LOGIN,
    doc="List your API tokens (never their secrets)",
    result_doc="[{id, name, token (prefix and key only), scope, repositories, created, expires, last_used, revoked, state}]"))


def _find(user, ident):
    m = _models()
    ident = ident.strip()
    mine = m.ApiToken.objects.filter(user_id=user.pk)
    if ident.isdigit():
        token = mine.filter(pk=int(ident)).first()
    else:
        key = ident[len(tokens.PREFIX):] if ident.startswith(tokens.PREFIX) else ident
        key = key.rstrip("…")[:tokens.KEY_LENGTH]
        token = mine.filter(key=key).first() if len(key) == tokens.KEY_LENGTH else None
    if token is None:
        raise errors.NotFound(f"You have no API token '{ident}' (see token_list)")
    return token


def _token_revoke(args, user):
    token = _find(user, args["token"])
    if token.revoked is None:
        token.revoked = _now()
        token.save(update_fields=["revoked"])
        LOG.info("User %s revoked API token %s.", user, token.mbd_display())
    return token.mbd_describe()


register(Call(
    "token_revoke", _token_revoke, category=DEVELOPER, auth=Auth.LOGIN,
    doc="Revoke one of your API tokens\n\nA revoked token is answered 401 from then on.",
    result_doc="{id, name, token (prefix and key only), scope, repositories, created, expires, last_used, revoked, state}",
    args=[Argument("token", doc="the token's id, or its prefix and key (mbdt_XXXXXXXXXXXX, as token_list shows it)")]))
