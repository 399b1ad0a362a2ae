"""The HTTP side of the API (upstream §4.1): the Django views for ``/mini_buildd/api/`` (index) and
``/mini_buildd/api/<call>/`` (one call), and their URL patterns (included by the web app's URL
map).

``GET /mini_buildd/api/<call>/?<arg>=<value>&output=json|plain|html|html-snippet&confirm=<call>``
(command-line clients), or ``POST`` with the same parameters in the form body and Django's CSRF
token (web pages). State-changing calls are refused when a browser says the request is cross-site
(:mod:`mini_buildd.webapp.security`, before this view). Costly anonymous calls (``search``,
``debdiff``) are rate-limited per client address (429) and bounded (:func:`anonymous_bounds`).
Results: ``output=json`` (default) the JSON value; ``plain`` strings as text, other values as
pretty JSON; ``html`` a page, ``html-snippet`` only the result block. Errors are RFC 7807
``application/problem+json`` (an HTML error page for the html outputs); never a traceback. Every
call is logged with the user and the client address (``X-Forwarded-For`` honoured).
"""

import contextlib
import html
import json
import logging

from django.http import HttpResponse
from django.shortcuts import render
from django.template import engines
from django.urls import path

from mini_buildd.api import registry
from mini_buildd.api import calls  # noqa: F401  pylint: disable=unused-import
from mini_buildd.archive import operations
from mini_buildd.tools import debdiff
from mini_buildd.webapp import security

LOG = logging.getLogger(__name__)

OUTPUTS = ("json", "plain", "html", "html-snippet")
HTML_OUTPUTS = ("html", "html-snippet")

_PAGE = """{% extends "mini_buildd/base.html" %}
{% block title %}{{ heading }}{% endblock %}
{% block content %}
<h1>{{ heading }}</h1>
{{ body }}
{% endblock %}"""


#: The client's address: first ``X-Forwarded-For`` entry (behind a proxy), else the peer.
client_address = security.client_address


def _user_str(request):
    user = getattr(request, "user", None)
    return user.get_username() if user is not None and user.is_authenticated else "anonymous"


def _json_text(value):
    return json.dumps(value)


def _pretty(value):
    return value if isinstance(value, str) else json.dumps(value, indent=2)


def _page(request, heading, body_html, status=200):
    from django.utils.safestring import mark_safe  # pylint: disable=import-outside-toplevel
    template = engines["django"].from_string(_PAGE)
    return HttpResponse(template.render({"heading": heading, "body": mark_safe(body_html)}, request),
                        status=status, content_type="text/html; charset=utf-8")


def problem_response(request, problem, output="json"):
    """The error response for ``problem`` in the requested output form."""
    if output == "html":
        return render(request, "mini_buildd/error.html",
                      {"status": problem.status, "title": problem.title, "detail": problem.detail}, status=problem.status)
    if output == "html-snippet":
        return HttpResponse(f'<div class="mbd-api-problem"><strong>{problem.status} {html.escape(problem.title)}</strong>: '
                            f'{html.escape(problem.detail)}</div>', status=problem.status, content_type="text/html; charset=utf-8")
    return security.problem_json_response(problem)


def result_response(request, call, result, output):
    """The HTTP response of a call result in the requested output format (json, plain, html)."""
    if output == "json":
        return HttpResponse(_json_text(result), content_type="application/json")  # pylint: disable=http-response-with-content-type-json  # our JSON text
    if output == "plain":
        return HttpResponse(_pretty(result), content_type="text/plain; charset=utf-8")
    snippet = f'<pre class="mbd-api-result">{html.escape(_pretty(result))}</pre>'
    if output == "html-snippet":
        return HttpResponse(snippet, content_type="text/html; charset=utf-8")
    return _page(request, f"API call: {call.name}", f"<p>{html.escape(call.summary)}</p>\n{snippet}")


#: Anonymous calls that cost time: rate-limited per client address, results bounded.
COSTLY_ANONYMOUS = ("search", "debdiff")


@contextlib.contextmanager
def anonymous_bounds(request, call):
    """Around running ``call`` for ``request``: an anonymous costly call (:data:`COSTLY_ANONYMOUS`)
    is counted against the Daemon's ``anonymous_requests_per_minute`` for its address (Problem 429
    beyond), and runs with the anonymous bounds (``search``: at most ``anonymous_search_max_results``
    results; ``debdiff``: a short time limit)."""
    user = getattr(request, "user", None)
    if call.name not in COSTLY_ANONYMOUS or (user is not None and user.is_authenticated):
        yield
        return
    limits = security.LIMITS.get()
    allowed, retry_after = security.ANONYMOUS.allow(security.peer_address(request), limits["anonymous_requests_per_minute"])
    if not allowed:
        raise registry.Problem(429, f"API call '{call.name}': too many anonymous requests from your address "
                                    f"(at most {limits['anonymous_requests_per_minute']} a minute); try again in "
                                    f"{retry_after} s, or log in", retry_after=retry_after)
    search_token = operations.SEARCH_MAX_RESULTS.set(limits["anonymous_search_max_results"])
    debdiff_token = debdiff.TIMEOUT.set(debdiff.ANONYMOUS_TIMEOUT)
    try:
        yield
    finally:
        operations.SEARCH_MAX_RESULTS.reset(search_token)
        debdiff.TIMEOUT.reset(debdiff_token)


def _params(request):
    """The call's parameters: the form body of a POST, else the query string."""
    return request.POST if request.method == "POST" else request.GET


def _output(request):
    output = _params(request).get("output", "json") or "json"
    if output not in OUTPUTS:
        raise registry.Problem(400, f"Unknown output '{output}' (use one of: {', '.join(OUTPUTS)})")
    return output


def _method_not_allowed(request, allow="GET, HEAD, POST", what="API calls are GET (or POST with a CSRF token)"):
    response = problem_response(request, registry.Problem(405, f"Method {request.method} not allowed: {what}"))
    response["Allow"] = allow
    return response


#: Form fields of a POST that are no call parameters.
_FORM_FIELDS = ("csrfmiddlewaretoken", "mbd_run")


def call_view(request, name):
    """``/mini_buildd/api/<name>/``: run one call (GET; POST from web pages, CSRF checked by Django)."""
    if request.method not in ("GET", "HEAD", "POST"):
        return _method_not_allowed(request)
    output = "json"
    who = f"{_user_str(request)} from {client_address(request)}"
    params = _params(request)
    query = {key: params.getlist(key) for key in params if key not in registry.META_PARAMETERS and key not in _FORM_FIELDS}
    try:
        output = _output(request)
        call = registry.get(name)
        level = call_log_level(call)
        LOG.log(level, "API call '%s' by %s: %s", name, who, registry.redacted(query))
        with anonymous_bounds(request, call):
            result = registry.execute(call, query, user=request.user, confirm=params.get("confirm"))
    except registry.Problem as problem:
        LOG.warning("API call '%s' by %s: %s", name, who, problem)
        return problem_response(request, problem, output)
    except Exception as e:  # pylint: disable=broad-except  # request boundary: an internal error is a 500 answer, never a traceback
        LOG.exception("API call '%s' by %s: internal error", name, who)
        return problem_response(request, registry.Problem(500, f"Internal error in API call '{name}': {type(e).__name__}: {e}"), output)
    LOG.log(level, "API call '%s' by %s: done.", name, who)
    return result_response(request, call, result, output)


def call_log_level(call):
    """Log level of running ``call``: INFO for calls that need a login (they change things or are
    privileged: real events of daemon.log); DEBUG for anonymous calls (``status``, ``ls``, ...),
    which are requests: the access log has them (issue #17)."""
    return logging.DEBUG if call.auth == registry.Auth.NONE else logging.INFO


def _index_html():
    rows = []
    for category in registry.CATEGORIES:
        rows.append(f"<h2>{html.escape(category)}</h2>\n<dl>")
        for call in (c for c in registry.CALLS.values() if c.category == category):
            flags = ", ".join(f for f in registry.FLAGS if f in call.flags)
            runnable = call.auth == registry.Auth.NONE and not any(a.required for a in call.args)
            name = (f'<a href="{html.escape(call.name)}/?output=html">{html.escape(call.name)}</a>' if runnable
                    else html.escape(call.name))
            args = " ".join(html.escape(a.identity if a.positional else f"[{a.long or a.short}]") for a in call.args)
            rows.append(f"<dt><code>{name} {args}</code> <small>({call.auth.name}{'; ' + flags if flags else ''})</small></dt>"
                        f"<dd>{html.escape(call.summary)}</dd>")
        rows.append("</dl>")
    return "\n".join(rows)


def index_view(request):
    """``/mini_buildd/api/``: all calls (HTML by default; ``output=json`` for their descriptions)."""
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed(request, "GET, HEAD", "the API index is GET only")
    output = request.GET.get("output", "html")
    if output == "json":
        return HttpResponse(_json_text({name: call.describe() for name, call in registry.CALLS.items()}),  # pylint: disable=http-response-with-content-type-json  # noqa: E501
                            content_type="application/json")
    if output == "plain":
        text = "\n".join(f"{c.name:<18} {c.auth.name:<6} {c.summary}" for c in registry.CALLS.values()) + "\n"
        return HttpResponse(text, content_type="text/plain; charset=utf-8")
    if output not in HTML_OUTPUTS:
        return problem_response(request, registry.Problem(400, f"Unknown output '{output}' (use one of: {', '.join(OUTPUTS)})"))
    if output == "html-snippet":
        return HttpResponse(_index_html(), content_type="text/html; charset=utf-8")
    return _page(request, "API calls", _index_html())


urlpatterns = [
    path("", index_view, name="mbd-api"),
    path("<str:name>/", call_view, name="mbd-api-call"),
]
