"""The web side's defences against a hostile browser and a hostile network (issue #12): the
cross-site check of state-changing requests, the Daemon's HTTP limits (read cheaply, cached), the
failed-login lockout and the per-address rate limit of costly anonymous calls, and the Django
middleware that applies them and sets the security headers of every page.

Owns:

- :func:`cross_site_reason`: why a request is a cross-site browser request (``Sec-Fetch-Site``
  other than ``same-origin``/``none``; ``Origin`` or ``Referer`` naming another host:port), or
  ``None``. Requests without any of those headers (command-line clients) are not cross-site.
- :data:`LIMITS`: the Daemon's limit fields (``http_max_request_body``, ``login_max_failures``,
  ``login_lockout``, ``anonymous_search_max_results``, ``anonymous_requests_per_minute``), cached
  and refreshed in a thread when configuration changed (the reactor never waits for the database).
- :data:`LOGINS`: failed logins per client address (in memory); too many lock the address for a
  while (429, and a ``DENIED`` event).
- :data:`ANONYMOUS`: anonymous costly calls per client address and minute (429 beyond).
- :class:`Middleware`: refuses cross-site state-changing requests (403; not those whose authority is an
  API token alone: :func:`bearer_only`) and locked logins (429),
  sets CSP, nosniff, frame, referrer headers, and marks cookies ``Secure`` on HTTPS.
"""

import collections
import json
import logging
import threading
import time
import urllib.parse

from mini_buildd import events, services, tokens
from mini_buildd.api import fastpath, registry

LOG = logging.getLogger(__name__)

#: Content-Security-Policy of the web pages (no inline script; inline style attributes only).
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

#: Paths of the login forms whose failed POSTs are counted.
LOGIN_PATHS = ("/accounts/login/", "/admin/login/")

_API_PREFIX = "/mini_buildd/api/"
_SAFE_SITES = ("same-origin", "none")
_DEFAULT_PORTS = {"http": 80, "https": 443}


# ------------------------------------------------------------------------------------------------ cross-site
def _host_port(netloc, scheme):
    """``(host, port)`` of a netloc (lower case; default port of ``scheme``), or None."""
    try:
        parts = urllib.parse.urlsplit(f"//{netloc}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    return host.lower(), port if port is not None else _DEFAULT_PORTS.get(scheme)


def _url_origin(url):
    """``(scheme, host, port)`` of an http(s) URL, or None."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS:
        return None
    host_port = _host_port(parts.netloc, parts.scheme)
    return None if host_port is None else (parts.scheme, *host_port)


def cross_site_reason(headers, host, scheme):
    """Why a request with ``headers`` (a ``get(name)`` mapping, header names in lower case) sent
    to ``host`` (its Host header) over ``scheme`` is a cross-site browser request; None if it is not."""
    site = headers.get("sec-fetch-site")
    if site and site.strip().lower() not in _SAFE_SITES:
        return f"the browser marked it as a {site.strip().lower()} request (Sec-Fetch-Site)"
    host_port = _host_port(host or "", scheme)
    ours = None if host_port is None else (scheme, *host_port)
    for name in ("origin", "referer"):
        value = headers.get(name)
        if not value:
            continue
        theirs = _url_origin(value.strip())
        if theirs is None or theirs != ours:
            shown = value.strip()[:100]
            return f"it comes from another site ({name.capitalize()}: {shown})"
    return None


def django_cross_site_reason(request):
    """:func:`cross_site_reason` of a Django request."""
    meta = request.META
    headers = {"sec-fetch-site": meta.get("HTTP_SEC_FETCH_SITE"), "origin": meta.get("HTTP_ORIGIN"),
               "referer": meta.get("HTTP_REFERER")}
    return cross_site_reason(headers, meta.get("HTTP_HOST") or meta.get("SERVER_NAME", ""), request.scheme)


def api_call_name(path):
    """The API call name of a ``/mini_buildd/api/<name>/`` path, or None."""
    if not path.startswith(_API_PREFIX):
        return None
    rest = path[len(_API_PREFIX):]
    name = rest[:-1] if rest.endswith("/") else rest
    return name if name and "/" not in name else None


def changes_state(method, call):
    """Whether a request runs a state-changing call (auth above NONE) or is an unsafe method."""
    if method not in ("GET", "HEAD", "OPTIONS"):
        return True
    return call is not None and call.auth != registry.Auth.NONE


# ------------------------------------------------------------------------------------------------ limits
class Limits:
    """The Daemon's HTTP limit fields, cached. :meth:`get` (Django threads) refreshes synchronously
    when stale; :meth:`get_nowait` (the reactor) answers the cached values at once and refreshes
    in a thread. Stale: the configuration generation changed, or ``ttl`` seconds passed."""

    FIELDS = ("http_max_request_body", "login_max_failures", "login_lockout", "anonymous_search_max_results",
              "anonymous_requests_per_minute")

    def __init__(self, ttl=10.0, clock=time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._values = None
        self._stamp = None
        self._refreshing = False

    @staticmethod
    def _generation():
        return fastpath.GENERATION.value

    @classmethod
    def defaults(cls):
        from mini_buildd import models  # pylint: disable=import-outside-toplevel
        return {name: models.Daemon._meta.get_field(name).get_default() for name in cls.FIELDS}

    def _stale(self):
        return self._values is None or self._stamp is None or self._stamp[0] != self._generation() or \
            self.clock() - self._stamp[1] >= self.ttl

    def refresh(self):
        """Read the fields from the Daemon model now (defaults if it can't be read)."""
        stamp = (self._generation(), self.clock())
        try:
            from mini_buildd import models  # pylint: disable=import-outside-toplevel
            row = models.Daemon.objects.filter(pk=1).values(*self.FIELDS).first()
            values = row or self.defaults()
        except Exception as e:  # pylint: disable=broad-except  # request boundary: limits never fail a request (last or default ones)
            LOG.warning("Can't read the Daemon's HTTP limits (using the last or default ones): %s", e)
            values = self._values or self.defaults()
        with self._lock:
            self._values, self._stamp, self._refreshing = values, stamp, False
        return values

    def get(self):
        values = self._values
        if values is None or self._stale():
            values = self.refresh()
        return values

    def get_nowait(self, defer):
        """Cached values; when stale, ``defer(self.refresh)`` (e.g. ``reactor.callInThread``) once."""
        if self._stale():
            with self._lock:
                start = not self._refreshing
                self._refreshing = True
            if start:
                defer(self.refresh)
        return self._values if self._values is not None else self.defaults()

    def invalidate(self):
        with self._lock:
            self._stamp = None


LIMITS = Limits()


class LoginFailures:
    """Failed logins per address; ``max_failures`` within one lockout period lock the address for
    ``lockout`` seconds. In memory; at most ``max_addresses`` addresses are tracked."""

    def __init__(self, clock=time.monotonic, max_addresses=10000):
        self.clock = clock
        self.max_addresses = max_addresses
        self._lock = threading.Lock()
        self._failures = {}   # address -> [count, first failure time]
        self._locked = {}     # address -> locked until

    def locked_for(self, address):
        """Seconds ``address`` is still locked (0: not locked)."""
        with self._lock:
            until = self._locked.get(address)
            if until is None:
                return 0
            left = until - self.clock()
            if left <= 0:
                del self._locked[address]
                return 0
            return left

    def failed(self, address, max_failures, lockout):
        """Count a failure; True if this one locks the address."""
        now = self.clock()
        with self._lock:
            count, first = self._failures.get(address, (0, now))
            if now - first >= lockout:
                count, first = 0, now
            count += 1
            if count >= max_failures:
                self._failures.pop(address, None)
                self._locked[address] = now + lockout
                locks = True
            else:
                self._failures[address] = (count, first)
                locks = False
            if len(self._failures) > self.max_addresses:
                self._failures.pop(next(iter(self._failures)))
            if len(self._locked) > self.max_addresses:
                self._locked.pop(next(iter(self._locked)))
        return locks

    def succeeded(self, address):
        with self._lock:
            self._failures.pop(address, None)

    def clear(self):
        with self._lock:
            self._failures.clear()
            self._locked.clear()


LOGINS = LoginFailures()


class RateLimit:
    """At most N requests per address within a sliding minute (in memory, bounded)."""

    WINDOW = 60.0

    def __init__(self, clock=time.monotonic, max_addresses=10000):
        self.clock = clock
        self.max_addresses = max_addresses
        self._lock = threading.Lock()
        self._seen = collections.OrderedDict()  # address -> deque of times

    def allow(self, address, per_minute):
        """Count one request of ``address``; ``(allowed, retry_after_seconds)``."""
        now = self.clock()
        with self._lock:
            times = self._seen.pop(address, None) or collections.deque()
            while times and now - times[0] >= self.WINDOW:
                times.popleft()
            self._seen[address] = times
            if len(self._seen) > self.max_addresses:
                self._seen.popitem(last=False)
            if len(times) >= per_minute:
                return False, max(1, int(self.WINDOW - (now - times[0])) + 1)
            times.append(now)
            return True, 0

    def clear(self):
        with self._lock:
            self._seen.clear()


ANONYMOUS = RateLimit()


# ------------------------------------------------------------------------------------------------ addresses
def client_address(request):
    """The client's address for the log: first ``X-Forwarded-For`` entry (behind a proxy), else the peer."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if forwarded.strip():
        return forwarded.split(",")[0].strip()
    return request.META.get("REMOTE_ADDR", "")


def peer_address(request):
    """The connection's peer address (``REMOTE_ADDR``): what limits count by. ``X-Forwarded-For`` is
    not used here: any client can send it, and would escape its limits."""
    return request.META.get("REMOTE_ADDR", "")


def _on_login_failed(sender, credentials=None, request=None, **kwargs):  # pylint: disable=unused-argument
    if request is None:
        return
    address = peer_address(request)
    limits = LIMITS.get()
    lockout = limits["login_lockout"].total_seconds()
    user = (credentials or {}).get("username", "")
    LOG.warning("Failed login as '%s' from %s.", user, address)
    if LOGINS.failed(address, limits["login_max_failures"], lockout):
        LOG.warning("Too many failed logins from %s: refused for %d s.", address, lockout)
        services.log_event(events.Event(events.Type.DENIED, "", "login", "", extra={
            "address": address, "username": user,
            "error": {"title": "Too many failed logins",
                      "detail": f"{limits['login_max_failures']} failed logins from {address}: "
                                f"logins from there refused for {int(lockout)} s"}}))


def _on_logged_in(sender, request=None, **kwargs):  # pylint: disable=unused-argument
    if request is not None:
        LOGINS.succeeded(peer_address(request))


def connect_signals():
    from django.contrib.auth import signals  # pylint: disable=import-outside-toplevel
    signals.user_login_failed.connect(_on_login_failed, dispatch_uid="mbd-login-failed")
    signals.user_logged_in.connect(_on_logged_in, dispatch_uid="mbd-logged-in")


# ------------------------------------------------------------------------------------------------ responses
def problem_json_response(problem):
    """The RFC 7807 ``application/problem+json`` response of ``problem`` (a
    :class:`mini_buildd.api.registry.Problem`), with ``Retry-After`` when it has one."""
    from django.http import HttpResponse  # pylint: disable=import-outside-toplevel
    response = HttpResponse(json.dumps(problem.to_dict()), status=problem.status,  # pylint: disable=http-response-with-json-dumps
                            content_type="application/problem+json")  # (JsonResponse is for application/json)
    if problem.retry_after:
        response["Retry-After"] = str(problem.retry_after)
    return response


# ------------------------------------------------------------------------------------------------ middleware
def _too_many_logins(request, seconds):
    from django.shortcuts import render  # pylint: disable=import-outside-toplevel
    minutes = max(1, int(seconds + 59) // 60)
    detail = (f"Too many failed logins from your address: logins are refused for about {minutes} more minute(s). "
              "Try again later.")
    response = render(request, "mini_buildd/error.html", {"status": 429, "title": "Too Many Requests", "detail": detail},
                      status=429)
    response["Retry-After"] = str(int(seconds) + 1)
    return response


def bearer_only(request):
    """Whether a request's authority is an API token alone (``Authorization: Bearer``, no session
    cookie): exempt from the cross-site refusal, as a browser never sends such a header cross-site
    (:func:`mini_buildd.tokens.cross_site_exempt`). With a session cookie the refusal still applies."""
    from django.conf import settings  # pylint: disable=import-outside-toplevel
    return tokens.cross_site_exempt(request.META.get("HTTP_AUTHORIZATION"), request.COOKIES, settings.SESSION_COOKIE_NAME)


def _cross_site_refusal(request, reason, call_name):
    what = f"API call '{call_name}'" if call_name else f"{request.method} {request.path}"
    LOG.warning("Refused cross-site request from %s: %s: %s.", client_address(request), what, reason)
    return problem_json_response(registry.Problem(
        403, f"Refused cross-site request: {what} changes state, and {reason}. "
             "Run it from this instance's own pages or with mini-buildd-api."))


class Middleware:
    """Django middleware (first after SecurityMiddleware): cross-site refusal, login lockout,
    security headers on every response, ``Secure`` cookies on HTTPS."""

    def __init__(self, get_response):
        self.get_response = get_response
        connect_signals()

    def __call__(self, request):
        response = self.refuse(request)
        if response is None:
            response = self.get_response(request)
        self.headers(request, response)
        return response

    @staticmethod
    def refuse(request):
        """A response refusing a cross-site request that would change state, or None."""
        call_name = api_call_name(request.path)
        call = None
        if call_name is not None:
            call = registry.CALLS.get(call_name)
        if changes_state(request.method, call) and not bearer_only(request):
            reason = django_cross_site_reason(request)
            if reason is not None:
                return _cross_site_refusal(request, reason, call.name if call is not None else None)
        if request.method == "POST" and request.path in LOGIN_PATHS:
            seconds = LOGINS.locked_for(peer_address(request))
            if seconds:
                return _too_many_logins(request, seconds)
        return None

    @staticmethod
    def headers(request, response):
        """Add the security headers to a response (and mark cookies secure on HTTPS)."""
        response.setdefault("X-Content-Type-Options", "nosniff")
        response.setdefault("Content-Security-Policy", PAGE_CSP)
        response.setdefault("Referrer-Policy", "same-origin")
        response["X-Frame-Options"] = "DENY"
        if request.is_secure():
            for morsel in response.cookies.values():
                morsel["secure"] = True
