"""HTTP client for the API of a mini-buildd instance (upstream §4.1, §5.2): endpoint parsing,
Django session login, running calls, passwords (python3-keyring, the environment or a prompt), and
API tokens (issue #17: ``$MINI_BUILDD_API_TOKEN`` or python3-keyring, sent as ``Authorization: Bearer``
instead of a login).

Used by ``mini-buildd-api`` and by anything else that talks to an instance. Errors are raised as
:class:`ClientError` (network, login) or :class:`ApiProblem` (the server's RFC 7807 problem).
"""

import getpass
import logging
import os
import sys
import urllib.parse

from mini_buildd import errors, net
from mini_buildd.api.registry import Problem

LOG = logging.getLogger(__name__)

LOGIN_PATH = "/accounts/login/"
#: The login "next" target; login succeeded iff we end up there.
NEXT_PATH = "/accounts/null/"
#: Password for unattended use (scripts, tests); checked before the keyring.
PASSWORD_ENV = "MINI_BUILDD_API_PASSWORD"
#: API token (issue #17); checked before the keyring.
TOKEN_ENV = "MINI_BUILDD_API_TOKEN"
#: python3-keyring user name of a token when the endpoint names no user.
TOKEN_KEYRING_USER = "token"
DEFAULT_TIMEOUT = 600


class ClientError(errors.ToolError):
    """The instance can't be reached, or login failed."""


class ApiProblem(ClientError):
    """The server answered with an error (RFC 7807 problem)."""

    def __init__(self, problem):
        super().__init__(str(problem))
        self.problem = problem


def parse_endpoint(endpoint):
    """``(base URL, user or None)`` of ``http[s]://[USER@]HOST:PORT``, ``[USER@]tcp:host=H:port=P`` or ``tls:…``."""
    endpoint = endpoint.strip()
    if "://" in endpoint:
        parts = urllib.parse.urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClientError(f"Unsupported endpoint URL '{endpoint}' (use http[s]://[USER@]HOST:PORT)")
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        netloc = host + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", "")), parts.username
    user = None
    head, sep, rest = endpoint.partition("@")
    if sep and ":" not in head:
        user, endpoint = head, rest
    try:
        return net.client_url(endpoint), user
    except net.EndpointError as e:
        raise ClientError(str(e)) from e


class Passwords:
    """Password look-up: ``$MINI_BUILDD_API_PASSWORD``, python3-keyring (service = endpoint URL), prompt.

    ``interactive``: may prompt; ``auto_save``: save prompted passwords to the keyring without asking.
    """

    def __init__(self, interactive=False, auto_save=False):
        self.interactive = interactive
        self.auto_save = auto_save

    @staticmethod
    def _keyring():
        try:
            import keyring  # pylint: disable=import-outside-toplevel
            return keyring
        except ImportError:
            return None

    def lookup(self, service, user):
        """``(password, origin)`` without prompting; ``(None, None)`` if there is none."""
        password = os.environ.get(PASSWORD_ENV)
        if password:
            return password, "environment"
        keyring = self._keyring()
        if keyring is not None:
            try:
                password = keyring.get_password(service, user)
            except Exception as e:  # pylint: disable=broad-except  # keyring backends raise their own error types
                LOG.debug("No password from keyring: %s", e)
                password = None
            if password:
                return password, "keyring"
        return None, None

    def token(self, url, user=None):
        """``(token, origin)`` of an API token for the instance at ``url``: ``$MINI_BUILDD_API_TOKEN``,
        else python3-keyring (service :func:`token_service`, user ``user`` or ``token``); ``(None, None)``."""
        token = os.environ.get(TOKEN_ENV, "").strip()
        if token:
            return token, "environment"
        keyring = self._keyring()
        if keyring is not None:
            try:
                token = keyring.get_password(token_service(url), user or TOKEN_KEYRING_USER)
            except Exception as e:  # pylint: disable=broad-except  # keyring backends raise their own error types
                LOG.debug("No API token from keyring: %s", e)
                token = None
            if token:
                return token.strip(), "keyring"
        return None, None

    def prompt(self, service, user):
        if not self.interactive:
            return None
        return getpass.getpass(f"Password for '{user}' on {service}: ")

    def save(self, service, user, password):
        """Save a password to python3-keyring (if available; asks first unless auto-save)."""
        keyring = self._keyring()
        if keyring is None:
            return
        if not self.auto_save:
            if not self.interactive or not ask(f"Save password for '{user}' on {service} (python3-keyring)? [y/N] "):
                return
        try:
            keyring.set_password(service, user, password)
            LOG.info("Password for '%s' on %s saved to the keyring.", user, service)
        except Exception as e:  # pylint: disable=broad-except  # keyring backends raise their own error types
            LOG.warning("Could not save password to the keyring: %s", e)

    def forget(self, service, user):
        """Delete a saved password from python3-keyring (if available)."""
        keyring = self._keyring()
        if keyring is not None:
            try:
                keyring.delete_password(service, user)
            except Exception as e:  # pylint: disable=broad-except  # keyring backends raise their own error types
                LOG.debug("Could not delete password from the keyring: %s", e)


def token_service(url):
    """The python3-keyring service name of the API tokens for the instance at ``url``."""
    return f"mini-buildd-token:{url}"


def ask(question):
    """Yes/no question on the terminal (False when there is none)."""
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:
        return False


class Client:
    """A session with one instance: ``login()`` (Django session), then ``call()``."""

    def __init__(self, endpoint, user=None, timeout=DEFAULT_TIMEOUT, verify=True):
        import requests  # pylint: disable=import-outside-toplevel
        self.url, endpoint_user = parse_endpoint(endpoint)
        self.user = user or endpoint_user
        self.timeout = timeout
        self.session = requests.Session()
        self.session.verify = verify
        self.logged_in = False
        self.token = None

    def use_token(self, token):
        """Send ``token`` as ``Authorization: Bearer`` with every request (instead of a login)."""
        self.token = token
        self.session.headers["Authorization"] = f"Bearer {token}"

    def __repr__(self):
        return f"Client({self.user + '@' if self.user else ''}{self.url})"

    def _request(self, method, path, **kwargs):
        import requests  # pylint: disable=import-outside-toplevel
        try:
            return self.session.request(method, self.url + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as e:
            raise ClientError(f"Can't reach {self.url}: {e}") from e

    def login(self, password, user=None):
        """Django session login (upstream §5.2); True on success."""
        import requests  # pylint: disable=import-outside-toplevel
        if user:
            self.user = user
        if self.token is not None:  # a password login replaces the token (the server prefers a token)
            self.token = None
            self.session.headers.pop("Authorization", None)
        if not self.user:
            raise ClientError("Login needs a user name (give the endpoint as http://USER@HOST:PORT)")
        r = self._request("GET", LOGIN_PATH)
        if r.status_code != 200:
            raise ClientError(f"Login page {self.url}{LOGIN_PATH}: HTTP {r.status_code}")
        try:
            token = self.session.cookies.get("csrftoken")
        except requests.cookies.CookieConflictError as e:
            raise ClientError(f"Login: several csrftoken cookies: {e}") from e
        if not token:
            raise ClientError(f"Login page {self.url}{LOGIN_PATH} sent no csrftoken cookie")
        r = self._request("POST", LOGIN_PATH, headers={"Referer": self.url + LOGIN_PATH},
                          data={"username": self.user, "password": password, "csrfmiddlewaretoken": token,
                                "this_is_the_login_form": "1", "next": NEXT_PATH})
        self.logged_in = urllib.parse.urlsplit(r.url).path == NEXT_PATH and r.status_code == 200
        LOG.debug("Login as %s on %s: %s", self.user, self.url, "ok" if self.logged_in else "failed")
        return self.logged_in

    def login_with(self, passwords, attempts=3):
        """Log in with a password from ``passwords`` (a :class:`Passwords`); raise ClientError on failure."""
        password, origin = passwords.lookup(self.url, self.user)
        for _ in range(attempts):
            if password is None:
                password, origin = passwords.prompt(self.url, self.user), "prompt"
                if password is None:
                    raise ClientError(f"No password for '{self.user}' on {self.url} (python3-keyring or ${PASSWORD_ENV}), "
                                      "and not interactive")
            if self.login(password):
                if origin == "prompt":
                    passwords.save(self.url, self.user, password)
                return
            LOG.warning("Login as '%s' on %s with password from %s failed.", self.user, self.url, origin)
            if origin == "keyring" and passwords.interactive:
                passwords.forget(self.url, self.user)
            if not passwords.interactive:
                break
            password = None
        raise ClientError(f"Login as '{self.user}' on {self.url} failed")

    def call(self, name, args=None, confirm=False):
        """Run API call ``name`` with string ``args``; return the JSON result or raise ApiProblem."""
        params = dict(args or {})
        params["output"] = "json"
        if confirm:
            params["confirm"] = name
        r = self._request("GET", f"/mini_buildd/api/{name}/", params=params)
        if r.status_code == 200:
            try:
                return r.json()
            except ValueError as e:
                raise ClientError(f"API call '{name}': no JSON in the answer: {e}") from e
        if "problem+json" in r.headers.get("Content-Type", ""):
            try:
                raise ApiProblem(Problem.from_dict(r.json()))
            except ValueError:
                pass
        raise ApiProblem(Problem(r.status_code, f"API call '{name}': HTTP {r.status_code} {r.reason}"))


def is_interactive(script_mode=False):
    return not script_mode and sys.stdin.isatty()
