#!/usr/bin/python3
"""A small client of the mini-buildd JSON API (example; owns: examples/api-client/mbd_client.py).

Uses only python3-requests. Anonymous calls need no login; for calls that need a user, the client
logs in with a Django session like ``mini-buildd-api`` does: it fetches the login page for the
CSRF cookie, posts the form with a same-origin ``Referer``, and checks that the login redirected
to the ``next`` page. Errors come back as RFC 7807 problem documents (``status``, ``title``,
``detail``).

Usage::

    mbd_client.py URL CALL [NAME=VALUE ...]
    MBD_USER=admin MBD_PASSWORD=... mbd_client.py http://mbd.example.org:8066 uploaders

Prints the call's JSON result; exits 1 with the problem's text on an error.
"""

import json
import os
import sys

import requests


class Problem(Exception):
    """The instance answered with an error."""

    def __init__(self, status, title, detail):
        super().__init__(f"{status} {title}: {detail}")
        self.status = status


class MiniBuilddClient:
    """One instance: ``login()`` once if needed, then ``call()`` as often as you like."""

    LOGIN = "/accounts/login/"
    NEXT = "/accounts/null/"

    def __init__(self, url, timeout=60, verify=True):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.verify = verify

    def login(self, user, password):
        self.session.get(self.url + self.LOGIN, timeout=self.timeout).raise_for_status()
        token = self.session.cookies.get("csrftoken")
        reply = self.session.post(self.url + self.LOGIN, timeout=self.timeout,
                                  headers={"Referer": self.url + self.LOGIN},
                                  data={"username": user, "password": password, "csrfmiddlewaretoken": token,
                                        "next": self.NEXT})
        if not reply.url.endswith(self.NEXT):
            raise Problem(reply.status_code if reply.status_code != 200 else 401, "Login failed",
                          f"could not log in as '{user}' on {self.url}")

    def call(self, name, confirm=False, **args):
        """Run API call ``name``; keyword arguments are the call's arguments (see the manual)."""
        params = {key: self._value(value) for key, value in args.items()}
        params["output"] = "json"
        if confirm:
            params["confirm"] = name
        reply = self.session.get(f"{self.url}/mini_buildd/api/{name}/", params=params, timeout=self.timeout)
        if reply.status_code != 200:
            try:
                problem = reply.json()
            except ValueError:
                problem = {}
            raise Problem(reply.status_code, problem.get("title", reply.reason), problem.get("detail", reply.text[:200]))
        return reply.json()

    @staticmethod
    def _value(value):
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (list, tuple)):
            return ",".join(str(v) for v in value)
        return str(value)


def main(argv):
    if len(argv) < 2:
        print(__doc__.split("Usage::")[1].strip().splitlines()[0].strip(), file=sys.stderr)
        return 2
    url, name, *pairs = argv
    client = MiniBuilddClient(url)
    try:
        if os.environ.get("MBD_USER"):
            client.login(os.environ["MBD_USER"], os.environ.get("MBD_PASSWORD", ""))
        result = client.call(name, **dict(pair.split("=", 1) for pair in pairs))
    except Problem as e:
        print(f"mbd_client: {e}", file=sys.stderr)
        return 1
    except requests.RequestException as e:
        print(f"mbd_client: can't reach {url}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
