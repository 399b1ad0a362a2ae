"""Scoped API tokens (issue #17), the parts without Django: the secret's form and its hash, the
scopes and what each allows, the repository restriction of a call's arguments, expiry parsing, the
``Authorization: Bearer`` header, and the scoped view of a user a token authenticates as.

Owns:

- the token format: :data:`PREFIX` (``mbdt_``) + :data:`KEY_LENGTH` letters/digits (the *key*, kept
  in clear to find the token) + :data:`SECRET_LENGTH` more; only its SHA-256 (:func:`digest`) is
  stored, and it is compared in constant time (:func:`matches`);
- :data:`SCOPES` and :data:`AUTH_LIMIT`: ``read`` runs anonymous-level calls (authenticated),
  ``upload-check`` also the LOGIN calls an uploader's pipeline needs (not ``set_user_key``),
  ``staff`` staff calls, ``admin`` everything; never more than the user's own rights
  (:func:`check_scope` at creation, :func:`scoped_user` at every use);
- :func:`restrict_args`: a token restricted to repositories refuses (403) a call whose
  repository/distribution arguments name another repository, narrows such list arguments left to
  their server default, and refuses staff/admin calls that act on the whole instance (those without
  such an argument, and ``setup``);
- :func:`bearer` and :func:`cross_site_exempt`: the header, and when a request is exempt from the
  cross-site refusal (a Bearer token and no session cookie: browsers can't send that cross-site).

The model is :class:`mini_buildd.models.token.ApiToken`; the Django middleware that authenticates
requests is :mod:`mini_buildd.webapp.tokenauth`; the API calls are in
:mod:`mini_buildd.api.calls_tokens`.
"""

import copy
import datetime
import hashlib
import hmac
import logging
import re
import secrets
import string

from mini_buildd import errors
from mini_buildd.dist import names

LOG = logging.getLogger(__name__)

PREFIX = "mbdt_"
KEY_LENGTH = 12
SECRET_LENGTH = 40
ALPHABET = string.ascii_letters + string.digits
_TOKEN_RE = re.compile(rf"^{PREFIX}[A-Za-z0-9]{{{KEY_LENGTH + SECRET_LENGTH}}}$", re.ASCII)

READ, UPLOAD_CHECK, STAFF, ADMIN = "read", "upload-check", "staff", "admin"
SCOPES = (READ, UPLOAD_CHECK, STAFF, ADMIN)

#: The highest authorization level (the values of :class:`mini_buildd.api.registry.Auth`: NONE 0,
#: LOGIN 1, STAFF 2, ADMIN 3) of the calls each scope may run.
AUTH_LIMIT = {READ: 0, UPLOAD_CHECK: 1, STAFF: 2, ADMIN: 3}
_LEVEL_NAMES = ("anyone", "a logged-in user", "a staff member", "an administrator")

#: Calls an upload-check token may not run although its level allows them: they change the
#: user's upload identity.
UPLOAD_CHECK_REFUSED = ("set_user_key",)

#: Call arguments naming repositories, and naming distributions (``CODENAME-REPOID-SUITE``).
REPOSITORY_ARGS = ("repository", "repositories")
DISTRIBUTION_ARGS = ("distribution", "distributions", "from_distribution", "to_distributions", "auto_ports")

#: Calls that act on the whole instance although they have a repository argument.
INSTANCE_WIDE_CALLS = ("setup",)

#: Seconds between two writes of a token's last-used time.
LAST_USED_RESOLUTION = 60


# ------------------------------------------------------------------------------------------------ the secret
def generate():
    """A new token: ``(secret, key)``; the secret is shown once, the key kept to find it."""
    key = "".join(secrets.choice(ALPHABET) for _ in range(KEY_LENGTH))
    rest = "".join(secrets.choice(ALPHABET) for _ in range(SECRET_LENGTH))
    return f"{PREFIX}{key}{rest}", key


def key_of(secret):
    """The key of a token secret, or None if it does not have a token's form."""
    if not isinstance(secret, str) or not _TOKEN_RE.match(secret):
        return None
    return secret[len(PREFIX):len(PREFIX) + KEY_LENGTH]


def digest(secret):
    """What is stored of a token: the SHA-256 of its secret (hex)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def matches(secret, stored_digest):
    """Whether ``secret`` is the token of ``stored_digest`` (constant-time comparison)."""
    return hmac.compare_digest(digest(secret), stored_digest or "")


def display(key):
    """How a token is shown after its creation: prefix and key only."""
    return f"{PREFIX}{key}…"


# ------------------------------------------------------------------------------------------------ HTTP
def bearer(authorization):
    """The token of an ``Authorization: Bearer <token>`` header value; None for no header or
    another scheme; ``""`` for a Bearer header without a token."""
    if not authorization:
        return None
    scheme, _sep, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip()


def cross_site_exempt(authorization, cookies, session_cookie):
    """Whether a request is exempt from the cross-site refusal: it carries a Bearer token and no
    session cookie (its authority is the token, which a browser never sends cross-site)."""
    return bearer(authorization) is not None and session_cookie not in cookies


# ------------------------------------------------------------------------------------------------ scopes
def user_level(user):
    """The authorization level of a Django user (0: not an active login ... 3: superuser)."""
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return 0
    if getattr(user, "is_superuser", False):
        return 3
    if getattr(user, "is_staff", False):
        return 2
    return 1


def check_scope(scope, user):
    """Raise :class:`mini_buildd.errors.Forbidden` unless ``user`` may have a token of ``scope``."""
    if scope not in SCOPES:
        raise errors.BadRequest(f"Unknown token scope '{scope}' (choose from: {', '.join(SCOPES)})")
    if AUTH_LIMIT[scope] > user_level(user):
        raise errors.Forbidden(f"A token of scope '{scope}' would have more rights than you: "
                               f"only {_LEVEL_NAMES[AUTH_LIMIT[scope]]} may have it")


def refusal(scope, call_name, call_auth):
    """Why a token of ``scope`` may not run call ``call_name`` (of level ``call_auth``), or None."""
    if int(call_auth) > AUTH_LIMIT[scope] or (scope == UPLOAD_CHECK and call_name in UPLOAD_CHECK_REFUSED):
        return (f"API call '{call_name}' needs authorization: {getattr(call_auth, 'name', call_auth)}; "
                f"the API token's scope '{scope}' does not allow it")
    return None


def parse_repositories(text):
    """Repository identities of a token's stored restriction (empty: all repositories)."""
    return [r for r in (text or "").replace(",", " ").split() if r]


def _repository_of_dist(diststr):
    try:
        return names.DistStr(diststr).repository
    except ValueError:
        return None


def _given(query, identity):
    values = query.get(identity)
    if values is None:
        return False
    values = values if isinstance(values, (list, tuple)) else [values]
    return any(str(v) != "<server_default>" for v in values)


def restrict_args(call, query, args, repositories):
    """The arguments ``args`` of ``call`` (the raw ``query`` they came from) for a token restricted
    to ``repositories``: a value naming another repository raises Forbidden (403); list arguments
    the client did not give (optional ones, server default: all) are narrowed to the token's
    repositories. A staff or admin call without any repository argument, and ``setup``, act on the
    whole instance: Forbidden."""
    allowed = set(repositories)
    has_repository_arg = False
    for argument in call.args:
        identity = argument.identity
        if identity in REPOSITORY_ARGS:
            repository_of = str
        elif identity in DISTRIBUTION_ARGS:
            repository_of = _repository_of_dist
        else:
            continue
        has_repository_arg = True
        value = args.get(identity)
        values = value if isinstance(value, list) else [value]
        outside = [v for v in values if v and repository_of(v) not in allowed]
        if not outside:
            continue
        if isinstance(value, list) and not argument.required and not _given(query, identity):
            args[identity] = [v for v in values if v not in outside]
            continue
        raise errors.Forbidden(f"API call '{call.name}': the API token is restricted to the repositories "
                               f"{', '.join(sorted(allowed))}; '{identity}' names {', '.join(str(v) for v in outside)}")
    if (not has_repository_arg and int(call.auth) >= 2) or call.name in INSTANCE_WIDE_CALLS:
        raise errors.Forbidden(f"API call '{call.name}' acts on the whole instance: the API token is restricted to "
                               f"the repositories {', '.join(sorted(allowed))}")
    return args


# ------------------------------------------------------------------------------------------------ expiry
_RELATIVE_RE = re.compile(r"^(\d+)\s*([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_expiry(text, now):
    """The expiry time of a token from ``text``: empty (never: None), ``N[d|h|m]`` after ``now``,
    or an ISO 8601 date or date and time (UTC unless it says otherwise). BadRequest if it is not
    after ``now``."""
    text = (text or "").strip()
    if not text:
        return None
    match = _RELATIVE_RE.match(text.lower())
    if match:
        when = now + datetime.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    else:
        try:
            when = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise errors.BadRequest(f"Expiry '{text}': use a number of days/hours/minutes ('30d', '12h') "
                                    "or an ISO 8601 date ('2027-01-31', '2027-01-31T12:00')") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
    if when <= now:
        raise errors.BadRequest(f"Expiry '{text}' is not in the future")
    return when


def state(revoked, expires, now):
    """``revoked``, ``expired`` or ``active``."""
    if revoked is not None:
        return "revoked"
    if expires is not None and expires <= now:
        return "expired"
    return "active"


# ------------------------------------------------------------------------------------------------ the user
def _refuse_save(*_args, **_kwargs):
    raise errors.Forbidden("The user of an API token request can't be saved")


def scoped_user(user, scope, repositories, token):
    """The user a request with a token of ``scope`` runs as: a copy of ``user`` (never saved) whose
    staff and superuser flags are those the scope allows, carrying the token (``mbd_api_token``)
    and the checks :func:`mini_buildd.api.registry.execute` applies (``mbd_token_refusal``,
    ``mbd_token_restrict``)."""
    scoped = copy.copy(user)
    limit = AUTH_LIMIT[scope]
    scoped.is_superuser = bool(user.is_superuser) and limit >= 3
    scoped.is_staff = bool(user.is_staff) if limit >= 3 else bool(user.is_staff or user.is_superuser) and limit >= 2
    scoped.save = _refuse_save
    scoped.mbd_api_token = token
    scoped.mbd_token_refusal = lambda call: refusal(scope, call.name, call.auth)
    if repositories:
        scoped.mbd_token_restrict = lambda call, query, args: restrict_args(call, query, args, repositories)
    else:
        scoped.mbd_token_restrict = lambda call, query, args: args
    return scoped
