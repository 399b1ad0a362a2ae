"""Django middleware authenticating ``Authorization: Bearer <token>`` requests with the users' API
tokens (issue #17; :mod:`mini_buildd.tokens`, :class:`mini_buildd.models.ApiToken`).

It runs after Django's AuthenticationMiddleware, on every request (API calls, pages, ``/metrics``):
a request with a valid token runs as the token's scoped user (:func:`mini_buildd.tokens.scoped_user`;
the token wins over a session cookie), records the token's last use, and is exempt from Django's
CSRF check when it carries no session cookie (the cross-site refusal of
:mod:`mini_buildd.webapp.security` exempts the same requests). A malformed, unknown, revoked or
expired token, or one of an inactive user, is answered 401 (RFC 7807 problem, ``WWW-Authenticate:
Bearer``) with the reason; the request goes no further. Requests without a Bearer header are
untouched (session login as always).
"""

import logging

from django.conf import settings
from django.utils import timezone

from mini_buildd import tokens
from mini_buildd.api import registry
from mini_buildd.models.token import ApiToken
from mini_buildd.webapp import security

LOG = logging.getLogger(__name__)


def authenticate(secret, now=None):
    """``(token, None)`` for a valid token secret, else ``(None, reason)``."""
    now = now or timezone.now()
    key = tokens.key_of(secret)
    if key is None:
        return None, f"this is not an API token (expected '{tokens.PREFIX}' and {tokens.KEY_LENGTH + tokens.SECRET_LENGTH} letters or digits)"
    token = next((t for t in ApiToken.objects.select_related("user").filter(key=key) if tokens.matches(secret, t.digest)), None)
    if token is None:
        return None, "unknown API token (wrong, or deleted)"
    state = token.mbd_state(now)
    if state == "revoked":
        return None, f"API token {token.mbd_display()} was revoked on {token.revoked:%Y-%m-%d %H:%M} UTC"
    if state == "expired":
        return None, f"API token {token.mbd_display()} expired on {token.expires:%Y-%m-%d %H:%M} UTC"
    if not token.user.is_active:
        return None, f"API token {token.mbd_display()}: its user is inactive"
    token.mbd_record_use(now)
    return token, None


def unauthorized(request, reason):
    """The 401 answer to a request with a bad token."""
    LOG.warning("Refused API token from %s: %s %s: %s.", security.client_address(request), request.method, request.path, reason)
    response = security.problem_json_response(registry.Problem(401, f"Authorization: Bearer refused: {reason}"))
    response["WWW-Authenticate"] = 'Bearer realm="mini-buildd", error="invalid_token"'
    return response


class Middleware:
    """Bearer token authentication (after AuthenticationMiddleware)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        secret = tokens.bearer(request.META.get("HTTP_AUTHORIZATION"))
        if secret is None:
            return self.get_response(request)
        token, reason = authenticate(secret)
        if token is None:
            return unauthorized(request, reason)
        request.user = tokens.scoped_user(token.user, token.scope, token.mbd_repositories(), token)
        request.mbd_api_token = token
        if settings.SESSION_COOKIE_NAME not in request.COOKIES:
            request._dont_enforce_csrf_checks = True  # pylint: disable=protected-access  # Django's documented flag: no cookie, no CSRF
        LOG.debug("API token %s of %s (%s) from %s: %s %s", token.mbd_display(), token.user, token.scope,
                  security.client_address(request), request.method, request.path)
        return self.get_response(request)
