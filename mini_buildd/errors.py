"""The one exception hierarchy of mini-buildd, and the RFC 7807 problem form of an error.

Every exception class defined in :mod:`mini_buildd` derives from :class:`Error` (classes that callers
catch as ``ValueError`` keep ``ValueError`` as a second base). An error's class says what HTTP
status an API answer for it carries (:attr:`Error.http_status`):

- :class:`BadRequest` (400): the request or its input is wrong; the message says what to fix.
- :class:`Unauthorized` (401), :class:`Forbidden` (403): not logged in / not allowed.
- :class:`NotFound` (404), :class:`Conflict` (409): nothing there / not possible in this state.
- :class:`Unavailable` (503): not possible now (shutting down, too busy); try again later.
- :class:`Refused` (400): a security rejection (a bad or missing signature, an unknown key, a
  replayed request); a bad request like any other to the caller, the message says why.
- :class:`ToolError` (500): an external program or instance failed.
- :class:`ConfigError` (500): the configuration or set-up does not allow it.

A 500 is an internal error: the API answers it as such and logs the traceback
(:func:`mini_buildd.api.registry.as_problem`). This module imports nothing of mini-buildd.
"""

import http


class Error(Exception):
    """Base of every mini-buildd exception; ``http_status``: the status of an API answer for it."""

    http_status = 500


class BadRequest(Error):
    """The request or its input is wrong; the message says what to fix."""

    http_status = 400


class Unauthorized(Error):
    """Not logged in (or not as an active user)."""

    http_status = 401


class Forbidden(Error):
    """Logged in, but not allowed."""

    http_status = 403


class NotFound(Error):
    """What is asked for does not exist."""

    http_status = 404


class Conflict(Error):
    """Not possible in the current state."""

    http_status = 409


class Unavailable(Error):
    """Not possible now (not running, shutting down, too busy); try again later."""

    http_status = 503


class Refused(BadRequest):
    """A security rejection: a bad or missing signature, an unknown key, a replayed or refused request."""


class ToolError(Error):
    """An external program (or another instance) failed."""


class ConfigError(Error):
    """The configuration or set-up does not allow it."""


def status_title(status):
    """The default title of an HTTP status (as upstream: the status' long description)."""
    return http.HTTPStatus(int(status)).description


def problem_dict(status, detail, title=None):
    """The RFC 7807 problem (``application/problem+json``) as a dict; ``title`` defaults to
    :func:`status_title`."""
    status = int(status)
    return {"type": "about:blank", "status": status, "title": title or status_title(status), "detail": detail,
            "instance": "about:blank"}


def http_status(exception):
    """The status of an API answer for ``exception``: its class's for an :class:`Error`, 400 for any other
    ``ValueError`` (bad input found by code outside the hierarchy), else 500."""
    if isinstance(exception, Error):
        return exception.http_status
    if isinstance(exception, ValueError):
        return 400
    return 500
