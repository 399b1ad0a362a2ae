"""Scoped API tokens without Django (:mod:`mini_buildd.tokens`, issue #17): the secret's form and
hash, the Bearer header and the cross-site exemption, scopes against users and calls, the
repository restriction of real registry calls, expiry, the scoped user and the registry's use of
it; and the client side (:mod:`mini_buildd.api.client`, ``mini-buildd-api``): the token from the
environment or python3-keyring, sent as ``Authorization: Bearer`` instead of a login."""

import datetime
import types

import pytest

from mini_buildd import errors, tokens
from mini_buildd.api import client, registry
from mini_buildd.cli import api as cli_api

NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.timezone.utc)


def user(level):
    """A Django-like user of authorization ``level`` (0 inactive ... 3 superuser)."""
    return types.SimpleNamespace(username=f"u{level}", pk=level, is_authenticated=level > 0, is_active=level > 0,
                                 is_staff=level >= 2, is_superuser=level >= 3)


# ------------------------------------------------------------------------------------------------ the secret
def test_generated_tokens_have_the_form_and_are_found_by_key():
    secret, key = tokens.generate()
    assert secret.startswith("mbdt_") and len(secret) == 5 + 12 + 40 and secret.isascii()
    assert tokens.key_of(secret) == key and secret[5:17] == key
    assert tokens.generate()[0] != secret
    assert tokens.display(key) == f"mbdt_{key}…" and secret not in tokens.display(key)


@pytest.mark.parametrize("bad", [None, "", "mbdt_", "mbdt_short", "xxxx_" + "a" * 52, "mbdt_" + "a" * 51, "mbdt_" + "a" * 53,
                                 "mbdt_" + "a" * 51 + "-", "mbdt_" + "ä" * 52])
def test_malformed_tokens_have_no_key(bad):
    assert tokens.key_of(bad) is None


def test_only_the_sha256_is_kept_and_compared():
    secret, _key = tokens.generate()
    stored = tokens.digest(secret)
    assert len(stored) == 64 and secret not in stored and stored == tokens.digest(secret)
    assert tokens.matches(secret, stored)
    assert not tokens.matches(secret[:-1] + ("A" if secret[-1] != "A" else "B"), stored)
    assert not tokens.matches(secret, "") and not tokens.matches(secret, None)


# ------------------------------------------------------------------------------------------------ HTTP
@pytest.mark.parametrize("header,expected", [
    (None, None), ("", None), ("Basic YWRtaW46eA==", None), ("Bearer mbdt_x", "mbdt_x"), ("bearer  mbdt_x ", "mbdt_x"),
    ("Bearer", ""), ("Bearer ", ""),
])
def test_bearer_header(header, expected):
    assert tokens.bearer(header) == expected


def test_cross_site_exemption_only_without_session_cookie():
    assert tokens.cross_site_exempt("Bearer mbdt_x", {}, "sid")
    assert tokens.cross_site_exempt("Bearer mbdt_x", {"csrftoken": "t"}, "sid")
    assert not tokens.cross_site_exempt("Bearer mbdt_x", {"sid": "s"}, "sid")
    assert not tokens.cross_site_exempt(None, {}, "sid")
    assert not tokens.cross_site_exempt("Basic x", {}, "sid")


# ------------------------------------------------------------------------------------------------ scopes
@pytest.mark.parametrize("level,allowed", [
    (1, ["read", "upload-check"]), (2, ["read", "upload-check", "staff"]), (3, list(tokens.SCOPES)),
])
def test_scopes_never_exceed_the_users_rights(level, allowed):
    for scope in tokens.SCOPES:
        if scope in allowed:
            tokens.check_scope(scope, user(level))
        else:
            with pytest.raises(errors.Forbidden, match="more rights than you"):
                tokens.check_scope(scope, user(level))
    with pytest.raises(errors.BadRequest):
        tokens.check_scope("root", user(3))


def test_scope_refusals_follow_call_levels():
    calls = registry.CALLS
    allowed = {scope: sorted(n for n, c in calls.items() if tokens.refusal(scope, n, c.auth) is None) for scope in tokens.SCOPES}
    assert "status" in allowed["read"] and "subscribe" not in allowed["read"]
    assert "subscribe" in allowed["upload-check"] and "token_list" in allowed["upload-check"]
    assert "set_user_key" not in allowed["upload-check"] and "migrate" not in allowed["upload-check"]
    assert "migrate" in allowed["staff"] and "set_user_key" in allowed["staff"] and "stop" not in allowed["staff"]
    assert allowed["admin"] == sorted(calls)
    assert "scope 'staff' does not allow it" in tokens.refusal("staff", "stop", calls["stop"].auth)


# ------------------------------------------------------------------------------------------------ repository restriction
def restrict(name, query, args, repositories=("test",)):
    return tokens.restrict_args(registry.CALLS[name], query, dict(args), list(repositories))


def test_restriction_refuses_other_repositories_given():
    with pytest.raises(errors.Forbidden, match="'repositories' names other"):
        restrict("ls", {"repositories": ["test,other"]}, {"source": "p", "repositories": ["test", "other"]})
    with pytest.raises(errors.Forbidden, match="'distribution' names bookworm-other-unstable"):
        restrict("migrate", {"distribution": ["bookworm-other-unstable"]}, {"distribution": "bookworm-other-unstable"})
    with pytest.raises(errors.Forbidden, match="'repository' names other"):
        restrict("debdiff", {"repository": ["other"]}, {"source": "p", "repository": "other"})
    with pytest.raises(errors.Forbidden, match="'to_distributions'"):
        restrict("port", {}, {"from_distribution": "bookworm-test-unstable", "to_distributions": ["bookworm-other-unstable"]})
    with pytest.raises(errors.Forbidden):  # not a distribution string: not in the restriction either
        restrict("subscribe", {"distribution": "unstable"}, {"source": "p", "distribution": "unstable"})


def test_restriction_passes_own_repositories_and_narrows_defaults():
    args = {"source": "p", "repositories": ["test"]}
    assert restrict("ls", {"repositories": ["test"]}, args) == args
    assert restrict("ls", {}, {"source": "p", "repositories": ["other", "test"]})["repositories"] == ["test"]
    assert restrict("ls", {"repositories": ["<server_default>"]}, {"source": "p", "repositories": ["other"]})["repositories"] == []
    assert restrict("migrate", {}, {"distribution": "bookworm-test-unstable-rollback1"})["distribution"] == "bookworm-test-unstable-rollback1"
    assert restrict("subscribe", {}, {"source": "p", "distribution": ""}) == {"source": "p", "distribution": ""}
    assert restrict("status", {}, {"with_repositories": True}) == {"with_repositories": True}


@pytest.mark.parametrize("name", ["stop", "start", "setup", "cancel", "retry", "wake", "remake_chroots", "cronjob"])
def test_restriction_refuses_instance_wide_staff_and_admin_calls(name):
    with pytest.raises(errors.Forbidden, match="acts on the whole instance"):
        restrict(name, {}, {})


# ------------------------------------------------------------------------------------------------ expiry and state
def test_expiry():
    assert tokens.parse_expiry("", NOW) is None
    assert tokens.parse_expiry("30d", NOW) == NOW + datetime.timedelta(days=30)
    assert tokens.parse_expiry("12h", NOW) == NOW + datetime.timedelta(hours=12)
    assert tokens.parse_expiry("5 M", NOW) == NOW + datetime.timedelta(minutes=5)
    assert tokens.parse_expiry("2027-01-31", NOW) == datetime.datetime(2027, 1, 31, tzinfo=datetime.timezone.utc)
    assert tokens.parse_expiry("2027-01-31T12:00+01:00", NOW).utcoffset() == datetime.timedelta(hours=1)
    for bad in ("yesterday", "0d", "2026-12-07T12:00", "2020-01-01", "-3d"):
        with pytest.raises(errors.BadRequest):
            tokens.parse_expiry(bad, NOW)


def test_state():
    later = NOW + datetime.timedelta(seconds=1)
    assert tokens.state(None, None, NOW) == "active" and tokens.state(None, later, NOW) == "active"
    assert tokens.state(None, NOW, NOW) == "expired" and tokens.state(NOW, later, NOW) == "revoked"


# ------------------------------------------------------------------------------------------------ the scoped user
@pytest.mark.parametrize("scope,staff,superuser", [("read", False, False), ("upload-check", False, False),
                                                   ("staff", True, False), ("admin", True, True)])
def test_scoped_user_has_the_scopes_flags_and_is_never_saved(scope, staff, superuser):
    real = user(3)
    scoped = tokens.scoped_user(real, scope, [], "TOKEN")
    assert (scoped.is_staff, scoped.is_superuser) == (staff, superuser)
    assert (real.is_staff, real.is_superuser) == (True, True) and scoped.mbd_api_token == "TOKEN"
    with pytest.raises(errors.Forbidden):
        scoped.save()
    plain = tokens.scoped_user(user(1), "admin", [], "T")  # the scope never raises the user's own flags
    assert not plain.is_staff and not plain.is_superuser


def test_registry_applies_scope_and_restriction():
    ran = []
    login = registry.Call("t_login", lambda args, u: ran.append(args) or "ok", auth=registry.Auth.LOGIN,
                          args=[registry.Argument("--repositories", type=registry.LIST, choices=["test", "other"],
                                                  server_default=lambda: ["test", "other"])])
    read = tokens.scoped_user(user(3), "read", [], "T")
    with pytest.raises(registry.Problem) as refused:
        registry.execute(login, {}, user=read)
    assert refused.value.status == 403 and "scope 'read'" in refused.value.detail and not ran
    check = tokens.scoped_user(user(1), "upload-check", ["test"], "T")
    assert registry.execute(login, {}, user=check) == "ok" and ran[-1] == {"repositories": ["test"]}
    with pytest.raises(registry.Problem) as refused:
        registry.execute(login, {"repositories": ["other"]}, user=check)
    assert refused.value.status == 403 and "restricted to the repositories test" in refused.value.detail
    assert registry.execute(login, {}, user=user(1)) == "ok" and ran[-1] == {"repositories": ["test", "other"]}


# ------------------------------------------------------------------------------------------------ client side
class FakeKeyring:
    """python3-keyring's get_password over a dict."""

    def __init__(self, entries):
        self.entries = entries
        self.asked = []

    def get_password(self, service, username):
        self.asked.append((service, username))
        return self.entries.get((service, username))


def test_token_from_environment_then_keyring(monkeypatch):
    ring = FakeKeyring({("mini-buildd-token:http://h:8066", "token"): "mbdt_ring", ("mini-buildd-token:http://h:8066", "ci"): "mbdt_ci"})
    monkeypatch.setattr(client.Passwords, "_keyring", staticmethod(lambda: ring))
    monkeypatch.delenv(client.TOKEN_ENV, raising=False)
    passwords = client.Passwords()
    assert passwords.token("http://h:8066") == ("mbdt_ring", "keyring")
    assert passwords.token("http://h:8066", "ci") == ("mbdt_ci", "keyring")
    assert passwords.token("http://other:8066") == (None, None)
    monkeypatch.setenv(client.TOKEN_ENV, " mbdt_env\n")
    assert passwords.token("http://h:8066") == ("mbdt_env", "environment")


def test_cli_sends_the_token_and_does_not_log_in(monkeypatch):
    seen = {}

    def fake_call(self, name, args=None, confirm=False):  # pylint: disable=unused-argument
        seen.update(name=name, confirm=confirm, authorization=self.session.headers.get("Authorization"))
        return {"ok": True}

    def no_login(self, passwords, attempts=3):
        raise AssertionError("logged in although there is a token")
    monkeypatch.setattr(client.Client, "call", fake_call)
    monkeypatch.setattr(client.Client, "login_with", no_login)
    monkeypatch.setenv(client.TOKEN_ENV, "mbdt_secret")
    assert cli_api.main(["stop", "--auto-confirm", "--script-mode", "http://admin@127.0.0.1:1"]) == 0
    assert seen == {"name": "stop", "confirm": True, "authorization": "Bearer mbdt_secret"}


def test_client_login_drops_the_token():
    c = client.Client("http://127.0.0.1:1")
    c.use_token("mbdt_x")
    assert c.session.headers["Authorization"] == "Bearer mbdt_x"
    with pytest.raises(client.ClientError):  # nothing listens there: the login fails, the token is gone already
        c.login("pw", user="u")
    assert "Authorization" not in c.session.headers and c.token is None
