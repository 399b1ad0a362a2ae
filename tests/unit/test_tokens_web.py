"""Scoped API tokens through Django (issue #17; Django test client, the instance database of the
test home): the API calls ``token_create``/``token_list``/``token_revoke``, ``Authorization: Bearer``
on calls and pages (:mod:`mini_buildd.webapp.tokenauth`), each scope against calls of each level,
the 401 answers, CSRF and the cross-site refusal with and without a session cookie, and the
profile page's tokens section. The real daemon (fast path, CLI, SQLite file): tests/integration/test_tokens.py."""

# pytest idioms: Django and the code under test are imported after the test set-up.
# pylint: disable=import-outside-toplevel,redefined-outer-name

import datetime
import json
import re

import pytest
from django.test import override_settings

from tests.helpers.html_check import assert_valid_response

PASSWORD = "tokens-Secret-1"
EVIL = {"HTTP_ORIGIN": "http://evil.example.org"}


@pytest.fixture(autouse=True)
def _testserver_allowed():
    from django.conf import settings as django_settings
    with override_settings(ALLOWED_HOSTS=[*django_settings.ALLOWED_HOSTS, "testserver"]):
        yield


@pytest.fixture
def users(db):  # pylint: disable=unused-argument
    from django.contrib.auth.models import User
    return {"plain": User.objects.create_user("tok-plain", password=PASSWORD),
            "staff": User.objects.create_user("tok-staff", password=PASSWORD, is_staff=True),
            "admin": User.objects.create_superuser("tok-admin", password=PASSWORD)}


def session(user, **kwargs):
    from django.test import Client
    c = Client(**kwargs)
    assert c.login(username=user.username, password=PASSWORD)
    return c


def bearer(secret):
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def api(client, call, headers=None, method="get", **params):
    r = getattr(client, method)(f"/mini_buildd/api/{call}/", params, **(headers or {}))
    return r.status_code, json.loads(r.content)


def create(user, scope, **params):
    status, result = api(session(user), "token_create", scope=scope, **params)
    assert status == 200, result
    return result


def anonymous(**kwargs):
    from django.test import Client
    return Client(**kwargs)


# ------------------------------------------------------------------------------------------------ create, list, revoke
def test_create_list_revoke_stored_hashed(users):
    from mini_buildd import models
    made = create(users["plain"], "upload-check", name="ci job", expires="30d")
    secret = made["token"]
    assert secret.startswith("mbdt_") and made["scope"] == "upload-check" and made["name"] == "ci job" and made["state"] == "active"
    row = models.ApiToken.objects.get(pk=made["id"])
    assert secret not in (row.key, row.digest, row.name) and row.key == secret[5:17] and len(row.digest) == 64
    status, listed = api(session(users["plain"]), "token_list")
    assert status == 200 and [t["id"] for t in listed] == [made["id"]] and listed[0]["token"] == f"mbdt_{row.key}…"
    assert secret not in json.dumps(listed)
    assert api(session(users["staff"]), "token_list") == (200, [])  # only one's own tokens
    assert api(session(users["staff"]), "token_revoke", token=str(made["id"]))[0] == 404
    status, revoked = api(session(users["plain"]), "token_revoke", token=f"mbdt_{row.key}")
    assert status == 200 and revoked["state"] == "revoked" and revoked["revoked"]


@pytest.mark.parametrize("who,refused", [("plain", ["staff", "admin"]), ("staff", ["admin"]), ("admin", [])])
def test_scope_never_exceeds_the_users_rights(users, who, refused):
    for scope in ("read", "upload-check", "staff", "admin"):
        status, result = api(session(users[who]), "token_create", scope=scope)
        if scope in refused:
            assert status == 403 and "more rights than you" in result["detail"], result
        else:
            assert status == 200 and result["scope"] == scope, result


def test_bad_arguments_and_anonymous(users):
    assert api(session(users["plain"]), "token_create", scope="read", expires="yesterday")[0] == 400
    assert api(session(users["plain"]), "token_create", scope="root")[0] == 400
    assert api(session(users["plain"]), "token_create", scope="read", repositories="nosuchrepo")[0] == 400
    assert api(anonymous(), "token_create", scope="read")[0] == 401


# ------------------------------------------------------------------------------------------------ scopes on calls
def test_scopes_allow_and_refuse_calls_of_each_level(users):
    read = create(users["admin"], "read")["token"]
    check = create(users["admin"], "upload-check")["token"]
    staff = create(users["admin"], "staff")["token"]
    admin = create(users["admin"], "admin")["token"]
    c = anonymous()

    def status_of(secret, call, **params):
        return api(c, call, bearer(secret), **params)

    # NONE: every scope (pub_key answers 503 without a key: past authorization either way)
    for secret in (read, check, staff, admin):
        assert status_of(secret, "dput_conf")[0] == 200
    # LOGIN
    status, result = status_of(read, "subscribe", source="hello", distribution="")
    assert status == 403 and "scope 'read' does not allow it" in result["detail"]
    assert status_of(check, "subscribe", source="hello", distribution="")[0] == 200
    assert status_of(check, "set_user_key", key="0123456789ABCDEF", confirm="set_user_key")[0] == 403
    # STAFF (an unknown distribution: 400 once authorized)
    for secret, expected in ((read, 403), (check, 403), (staff, 400), (admin, 400)):
        assert status_of(secret, "migrate", source="x", distribution="bookworm-nosuch-unstable", confirm="migrate")[0] == expected
    # ADMIN (unknown cron job: past authorization)
    for secret, refused in ((read, True), (check, True), (staff, True), (admin, False)):
        status, result = status_of(secret, "cronjob", id="nosuchjob", confirm="cronjob")
        assert (status == 403) is refused, (status, result)


def test_token_runs_as_its_user_on_pages_and_never_creates_tokens(users):
    read = create(users["plain"], "read")["token"]
    c = anonymous()
    r = c.get("/accounts/profile/", **bearer(read))
    assert r.status_code == 200 and "Profile of tok-plain" in r.content.decode()
    assert "Tokens can&#x27;t create tokens" in r.content.decode() or "Tokens can't create tokens" in r.content.decode()
    assert anonymous().get("/accounts/profile/").status_code == 302
    admin = create(users["admin"], "admin")["token"]
    status, result = api(c, "token_create", bearer(admin), scope="read")
    assert status == 403 and "API tokens can't create API tokens" in result["detail"]
    status, listed = api(c, "token_list", bearer(admin))
    assert status == 200 and len(listed) == 1


def test_staff_scope_of_an_administrator_is_no_administrator_on_pages(users):
    staff = create(users["admin"], "staff")["token"]
    assert anonymous().get("/mini_buildd/setup/", **bearer(staff)).status_code in (302, 403)
    admin = create(users["admin"], "admin")["token"]
    assert anonymous().get("/mini_buildd/setup/", **bearer(admin)).status_code == 200


# ------------------------------------------------------------------------------------------------ 401
def test_bad_tokens_are_401_with_the_reason(users):
    from mini_buildd import models
    c = anonymous()
    made = create(users["plain"], "read")
    good = made["token"]

    def refused(secret, reason):
        r = c.get("/mini_buildd/api/status/", **bearer(secret))
        assert r.status_code == 401 and r["WWW-Authenticate"].startswith("Bearer"), r.content
        detail = json.loads(r.content)["detail"]
        assert reason in detail and (not secret or secret not in detail), detail
    refused("", "this is not an API token")
    refused("nonsense", "this is not an API token")
    refused(good[:-1] + ("x" if good[-1] != "x" else "y"), "unknown API token")
    assert c.get("/mini_buildd/api/status/", **bearer(good)).status_code == 200
    assert models.ApiToken.objects.get(pk=made["id"]).last_used is not None
    models.ApiToken.objects.filter(pk=made["id"]).update(expires=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc))
    refused(good, "expired on 2020-01-01 00:00 UTC")
    models.ApiToken.objects.filter(pk=made["id"]).update(expires=None)
    users["plain"].is_active = False
    users["plain"].save()
    refused(good, "its user is inactive")
    users["plain"].is_active = True
    users["plain"].save()
    assert api(session(users["plain"]), "token_revoke", token=str(made["id"]))[0] == 200
    refused(good, "was revoked on")
    r = c.get("/mini_buildd/", **bearer(good))  # any page, not only the API
    assert r.status_code == 401


# ------------------------------------------------------------------------------------------------ CSRF and cross-site
def test_bearer_without_cookie_needs_no_csrf_and_is_not_cross_site(users):
    check = create(users["plain"], "upload-check")["token"]
    c = anonymous(enforce_csrf_checks=True)
    status, result = api(c, "subscribe", {**bearer(check), **EVIL}, method="post", source="hello", distribution="")
    assert status == 200 and result["created"] is True


def test_bearer_with_session_cookie_keeps_csrf_and_cross_site_refusal(users):
    check = create(users["plain"], "upload-check")["token"]
    c = session(users["plain"], enforce_csrf_checks=True)
    status, result = api(c, "subscribe", {**bearer(check), **EVIL}, source="hello", distribution="")
    assert status == 403 and result["detail"].startswith("Refused cross-site request: API call 'subscribe'")
    r = c.post("/mini_buildd/api/subscribe/", {"source": "hello", "distribution": ""}, **bearer(check))
    assert r.status_code == 403 and "CSRF" in r.content.decode()  # a cookie: Django's CSRF check as always
    status, _result = api(c, "subscribe", {**EVIL}, source="hello", distribution="")
    assert status == 403  # the cookie alone: refused as before


# ------------------------------------------------------------------------------------------------ profile page
def test_profile_tokens_section(users):
    from mini_buildd import models
    c = session(users["staff"])
    r = c.get("/accounts/profile/")
    page = r.content.decode()
    assert r.status_code == 200 and "No API tokens." in page and '<option value="staff"' in page and '<option value="admin"' not in page
    assert_valid_response(r)
    r = c.post("/accounts/profile/", {"action": "token_create", "scope": "staff", "name": "deploy", "expires": "7d"})
    page = r.content.decode()
    assert r.status_code == 200, page
    assert_valid_response(r)
    secret = re.search(r'<code id="mbd-token-secret">(mbdt_\w+)</code>', page).group(1)
    token = models.ApiToken.objects.get(user=users["staff"])
    assert token.scope == "staff" and token.name == "deploy" and token.expires is not None
    page = c.get("/accounts/profile/").content.decode()
    assert secret not in page and f"mbdt_{token.key}…" in page  # shown once
    r = c.post("/accounts/profile/", {"action": "token_create", "scope": "admin"})
    assert r.status_code == 400 and "403 Request forbidden" in r.content.decode() and "more rights than you" in r.content.decode()
    assert_valid_response(r)
    r = c.post("/accounts/profile/", {"action": "token_revoke", "token": str(token.pk)}, follow=True)
    assert "revoked." in r.content.decode() and 'class="mbd-token-revoked"' in r.content.decode()
    assert models.ApiToken.objects.get(pk=token.pk).revoked is not None


# ------------------------------------------------------------------------------------------------ other views: /metrics
def test_metrics_view_sees_the_tokens_user_and_scope(users, monkeypatch, tmp_path):
    from mini_buildd import events, models, services
    monkeypatch.setattr(services, "engine", None)
    monkeypatch.setattr(services, "events", events.Events(tmp_path / "events"))
    models.Daemon.objects.filter(pk=models.Daemon.get().pk).update(metrics_access="staff")
    staff = create(users["staff"], "staff")["token"]
    read = create(users["staff"], "read")["token"]
    c = anonymous()
    assert c.get("/metrics").status_code == 401
    r = c.get("/metrics", **bearer(staff))
    assert r.status_code == 200 and r.content.endswith(b"# EOF\n")
    assert c.get("/metrics", **bearer(read)).status_code == 403  # the user is staff, the token's scope is not
    assert c.get("/metrics", **bearer("mbdt_" + "x" * 52)).status_code == 401
