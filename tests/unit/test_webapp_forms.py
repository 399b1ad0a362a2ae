"""The API form pages and the setup page (Django test client on the test process's home): the
index lists every registry call with its authorization, each call page has a form generated from
the call's arguments, runs the call and shows the result; bad values come back next to their field;
confirmation and authorization are enforced; non-HTML API requests are untouched. The setup page:
superusers only, presets, the report and the update + PCA follow-up. Every page passes ``tidy``."""

# pytest idioms: some fixtures are requested for their side effects only; Django and the code under test are
# imported after the test set-up.
# pylint: disable=unused-argument,import-outside-toplevel

import json
import re

import pytest

from tests.helpers.html_check import assert_valid_response


@pytest.fixture(autouse=True)
def _testserver_allowed():
    """The Django test client's Host ('testserver') is no host of the instance: allow it here."""
    from django.conf import settings as django_settings  # pylint: disable=import-outside-toplevel
    from django.test import override_settings as _override  # pylint: disable=import-outside-toplevel
    with _override(ALLOWED_HOSTS=[*django_settings.ALLOWED_HOSTS, "testserver"]):
        yield


PASSWORD = "forms-Secret-1"


@pytest.fixture
def users(db):  # pylint: disable=unused-argument,redefined-outer-name
    """A user, a staff user and an administrator (password PASSWORD) by role."""
    from django.contrib.auth.models import User
    made = {}
    for name, staff, superuser in (("user", False, False), ("staff", True, False), ("admin", True, True)):
        made[name] = User.objects.create_user(f"forms-{name}", email=f"{name}@example.org", password=PASSWORD,
                                              is_staff=staff, is_superuser=superuser)
    return made


@pytest.fixture
def engine():
    """A fake engine (running) behind the registry's hooks."""
    from mini_buildd.api import registry
    state = {"running": True, "log": []}
    registry.set_engine_hooks(lambda: state["running"],
                              lambda: state["log"].append("stop") or state.update(running=False),
                              lambda: state["log"].append("start") or state.update(running=True))
    yield state
    registry.reset_engine_hooks()


def test_tidy_check_catches_errors():
    class Bad:  # pylint: disable=too-few-public-methods
        content = b"<!DOCTYPE html><html><head><title>x</title></head><body><foo>x</foo></body></html>"
    with pytest.raises(AssertionError):
        assert_valid_response(Bad)


def client(who=None):
    """A Django test client, logged in as ``who`` if given."""
    from django.test import Client
    c = Client()
    if who is not None:
        assert c.login(username=who.username, password=PASSWORD)
    return c


def text(response):
    return response.content.decode()


def field_error(response, identity):
    """The error text shown next to field ``identity`` (None if there is none)."""
    match = re.search(rf'<span class="mbd-error errorlist" id="id_{identity}_error">(.*?)</span>', text(response), re.S)
    return match.group(1) if match else None


# ------------------------------------------------------------------------------------------------ API index
def test_index_lists_every_call_by_category_with_auth(users):  # pylint: disable=redefined-outer-name
    from mini_buildd.api import registry
    r = client().get("/mini_buildd/api/")
    assert r.status_code == 200
    assert_valid_response(r)
    page = text(r)
    assert '<link rel="stylesheet" href="/static/mini_buildd/forms.css">' in page
    for category in registry.CATEGORIES:
        assert f'id="mbd-category-{category.lower()}"' in page
    for name, call in registry.CALLS.items():
        row = re.search(rf'<tr id="mbd-call-{name}" class="([^"]+)">(.*?)</tr>', page, re.S)
        assert row is not None, name
        assert f'<a href="{name}/?output=html">{name}</a>' in row.group(2)
        assert f"<td>{call.auth.name}" in row.group(2)
        # Anonymous: only NONE calls are allowed.
        assert row.group(1) == ("mbd-allowed" if call.auth == registry.Auth.NONE else "mbd-not-allowed"), name
    # Categories appear in order and every call under its own one.
    positions = [page.index(f'id="mbd-category-{c.lower()}"') for c in registry.CATEGORIES]
    assert positions == sorted(positions)
    setup_pos = page.index('id="mbd-call-setup"')
    assert setup_pos > positions[registry.CATEGORIES.index(registry.ADMINISTRATOR)]


def test_index_levels_per_user(users):  # pylint: disable=redefined-outer-name
    page = text(client(users["staff"]).get("/mini_buildd/api/"))
    assert 'id="mbd-call-migrate" class="mbd-allowed"' in page
    assert 'id="mbd-call-setup" class="mbd-not-allowed"' in page and "Not allowed: needs ADMIN" in page
    page = text(client(users["admin"]).get("/mini_buildd/api/"))
    assert "mbd-not-allowed" not in page


def test_index_other_outputs_are_the_api(users):  # pylint: disable=redefined-outer-name
    from mini_buildd.api import registry
    r = client().get("/mini_buildd/api/", {"output": "json"})
    assert r["Content-Type"] == "application/json" and list(json.loads(r.content)) == list(registry.CALLS)
    r = client().get("/mini_buildd/api/", {"output": "plain"})
    assert r["Content-Type"].startswith("text/plain") and "status" in text(r)


# ------------------------------------------------------------------------------------------------ call pages
def test_call_page_runs_call_without_arguments(users):  # pylint: disable=redefined-outer-name
    r = client().get("/mini_buildd/api/status/", {"output": "html"})
    assert r.status_code == 200
    assert_valid_response(r)
    result = re.search(r'<pre class="mbd-api-result" id="mbd-api-result">(.*?)</pre>', text(r), re.S).group(1)
    assert json.loads(result.replace("&quot;", '"'))["identity"]
    # The form: one checkbox for the BOOL argument, and a link to the same call as JSON.
    assert '<input type="checkbox" name="with_repositories" id="id_with_repositories" value="True">' in text(r)
    assert 'href="/mini_buildd/api/status/?output=json">' in text(r)


def test_call_form_widgets_from_argument_types(users):  # pylint: disable=redefined-outer-name
    from mini_buildd import models
    models.Repository.objects.create(identity="formtest", layout=models.Layout.objects.get(name="Default"))
    r = client().get("/mini_buildd/api/sources_list/", {"output": "html"})
    assert r.status_code == 200
    assert_valid_response(r)
    page = text(r)
    assert 'id="mbd-api-result"' in page  # no required args, no confirmation: runs right away
    # LIST with (computed) choices: multiple select with the server default pre-selected.
    assert re.search(r'<select name="repositories" id="id_repositories" multiple[^>]*>\s*<option value="formtest" selected>', page)
    # LIST with static choices and a static default.
    assert '<option value="deb" selected>deb</option>' in page and '<option value="deb-src">deb-src</option>' in page
    assert '<input type="number" name="rollbacks" id="id_rollbacks" value="0">' in page  # INT with default
    assert '<input type="checkbox" name="with_comment" id="id_with_comment" value="True">' in page  # BOOL
    assert "add a comment line (origin, distribution, apt pin) above each line" in page  # help
    # TEXT -> textarea; required positional; confirmable -> confirm checkbox; not run without a submission.
    r = client(users["user"]).get("/mini_buildd/api/set_user_key/", {"output": "html"})
    assert r.status_code == 200 and 'id="mbd-api-result"' not in text(r)
    assert_valid_response(r)
    assert '<textarea name="key" id="id_key"' in text(r) and "(required)" in text(r)
    assert '<input type="checkbox" name="confirm" id="id_confirm" value="set_user_key">' in text(r)


def test_choice_argument_is_a_select(users):  # pylint: disable=redefined-outer-name
    from mini_buildd import models
    models.Remote.objects.create(http="tcp:host=remote.example.org:port=8066")
    r = client(users["staff"]).get("/mini_buildd/api/wake/", {"output": "html"})
    assert r.status_code == 200
    assert_valid_response(r)
    assert re.search(r'<select name="remote" id="id_remote">\s*<option value="tcp:host=remote.example.org:port=8066">', text(r))


def test_bad_values_show_next_to_their_field(users):  # pylint: disable=redefined-outer-name
    r = client().get("/mini_buildd/api/sources_list/", {"output": "html", "rollbacks": "many", "types": "rpm",
                                                        "mirror": "not a url", "mbd_run": "1"})
    assert r.status_code == 400
    assert_valid_response(r)
    assert "not an integer: &#x27;many&#x27;" in field_error(r, "rollbacks")
    assert "&#x27;rpm&#x27; is not a valid choice" in field_error(r, "types")
    assert "not a URL" in field_error(r, "mirror")
    assert field_error(r, "options") is None and 'id="mbd-api-result"' not in text(r)
    assert "Traceback" not in text(r)
    # The given values are kept in the form.
    assert 'name="rollbacks" id="id_rollbacks" value="many"' in text(r)


def test_missing_required_and_runtime_argument_errors(users):  # pylint: disable=redefined-outer-name
    r = client().get("/mini_buildd/api/ls/", {"output": "html", "mbd_run": "1"})
    assert r.status_code == 400 and field_error(r, "source") == "This argument is required."
    # The call's own check ("Argument 'key': empty") is attributed to the field too.
    r = client(users["user"]).post("/mini_buildd/api/set_user_key/", {"output": "html", "key": "", "confirm": "set_user_key"})
    assert r.status_code == 400 and "empty" in field_error(r, "key")
    r = client(users["user"]).post("/mini_buildd/api/set_user_key/", {"output": "html", "key": "nohex!", "confirm": "set_user_key"})
    assert r.status_code == 400 and field_error(r, "key")
    assert_valid_response(r)


def test_confirmation_required(users, engine):  # pylint: disable=redefined-outer-name
    r = client(users["admin"]).post("/mini_buildd/api/stop/", {"output": "html", "mbd_run": "1"})
    assert r.status_code == 400 and "Please confirm" in field_error(r, "confirm")
    assert engine["log"] == []
    assert_valid_response(r)
    r = client(users["admin"]).post("/mini_buildd/api/stop/", {"output": "html", "mbd_run": "1", "confirm": "stop"})
    assert r.status_code == 200 and 'id="mbd-api-result">{}</pre>' in text(r)
    assert engine["log"] == ["stop"]
    assert "As JSON" not in text(r)  # no re-run links for confirmable calls


def test_not_allowed(users, engine):  # pylint: disable=redefined-outer-name
    r = client().get("/mini_buildd/api/stop/", {"output": "html"})
    assert r.status_code == 200 and 'id="mbd-not-allowed"' in text(r) and "Not allowed: needs ADMIN (log in)" in text(r)
    assert "<fieldset disabled>" in text(r) and 'id="mbd-api-run" disabled' in text(r)
    assert_valid_response(r)
    r = client().post("/mini_buildd/api/stop/", {"output": "html", "mbd_run": "1", "confirm": "stop"})
    assert r.status_code == 401 and 'id="mbd-form-error">401' in text(r)
    r = client(users["staff"]).post("/mini_buildd/api/stop/", {"output": "html", "mbd_run": "1", "confirm": "stop"})
    assert r.status_code == 403
    assert engine["log"] == []


def test_state_changing_form_runs_only_on_post(users, engine):  # pylint: disable=redefined-outer-name
    """A GET of the form page with arguments (a link anyone can plant) fills in the form, never runs the call."""
    r = client(users["admin"]).get("/mini_buildd/api/stop/", {"output": "html", "mbd_run": "1", "confirm": "stop"})
    assert r.status_code == 200 and 'id="mbd-api-result"' not in text(r) and 'id="id_confirm" value="stop" checked' in text(r)
    assert engine["log"] == []
    assert '<form method="post" action="/mini_buildd/api/stop/" id="mbd-api-form">' in text(r)
    assert 'name="csrfmiddlewaretoken"' in text(r)


def test_form_post_needs_the_csrf_token(users, engine):  # pylint: disable=redefined-outer-name
    from django.test import Client
    c = Client(enforce_csrf_checks=True)
    assert c.login(username=users["admin"].username, password=PASSWORD)
    r = c.post("/mini_buildd/api/stop/", {"output": "html", "mbd_run": "1", "confirm": "stop"})
    assert r.status_code == 403 and engine["log"] == []
    page = c.get("/mini_buildd/api/stop/", {"output": "html"})
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', text(page)).group(1)
    r = c.post("/mini_buildd/api/stop/", {"output": "html", "mbd_run": "1", "confirm": "stop", "csrfmiddlewaretoken": token})
    assert r.status_code == 200 and engine["log"] == ["stop"]


def test_internal_error_is_no_traceback(users, monkeypatch):  # pylint: disable=redefined-outer-name
    from mini_buildd.api import registry
    monkeypatch.setattr(registry.CALLS["pub_key"], "run", lambda args, user: 1 / 0)
    r = client().get("/mini_buildd/api/pub_key/", {"output": "html"})
    assert r.status_code == 500 and "ZeroDivisionError" in text(r) and "Traceback" not in text(r)
    assert_valid_response(r)


def test_api_clients_untouched(users):  # pylint: disable=redefined-outer-name
    r = client().get("/mini_buildd/api/status/")
    assert r["Content-Type"] == "application/json" and "identity" in json.loads(r.content)
    r = client().get("/mini_buildd/api/status/", {"output": "plain"})
    assert r["Content-Type"] == "text/plain; charset=utf-8"
    r = client().post("/mini_buildd/api/status/", {"output": "json"})
    assert r.status_code == 200 and "identity" in json.loads(r.content)
    r = client().put("/mini_buildd/api/status/")
    assert r.status_code == 405 and r["Content-Type"] == "application/problem+json"
    r = client().get("/mini_buildd/api/no_such_call/", {"output": "html"})
    assert r.status_code == 404 and "no_such_call" in text(r)
    r = client().get("/mini_buildd/api/ls/")
    assert r.status_code == 400 and json.loads(r.content)["detail"].startswith("Missing required argument: source")


# ------------------------------------------------------------------------------------------------ setup page
def test_setup_page_access(users):  # pylint: disable=redefined-outer-name
    r = client().get("/mini_buildd/setup/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/?next=/mini_buildd/setup/")
    r = client(users["staff"]).get("/mini_buildd/setup/")
    assert r.status_code == 403
    assert_valid_response(r)
    r = client(users["admin"]).get("/mini_buildd/setup/")
    assert r.status_code == 200
    assert_valid_response(r)
    for preset in ("inspect", "extend", "bootstrap"):
        assert f'id="mbd-preset-{preset}"' in text(r)
    assert 'id="mbd-setup-report"' not in text(r)


def test_setup_presets_fill_the_form(users):  # pylint: disable=redefined-outer-name
    from mini_buildd import models
    models.Archive.objects.create(url="http://MIRROR-HOST/debian/")
    daemon = models.Daemon.get()
    r = client(users["admin"]).get("/mini_buildd/setup/", {"preset": "inspect"})
    assert r.status_code == 200
    assert_valid_response(r)
    page = text(r)
    assert f'name="identity" id="id_identity" value="{daemon.identity}"' in page
    assert 'name="archives" id="id_archives" value="http://MIRROR-HOST/debian/"' in page
    assert 'name="update" id="id_update" value=""' in page  # inspect never updates
    r = client(users["admin"]).get("/mini_buildd/setup/", {"preset": "bootstrap"})
    page = text(r)
    assert 'name="update" id="id_update" value="all"' in page and 'name="pca" id="id_pca" value="all"' in page
    assert 'name="from_origins" id="id_from_origins" value="Debian"' in page
    for flag in ("archives_from_origins", "sources_from_origins", "distributions_from_sources", "chroots_from_sources"):
        assert f'name="{flag}" id="id_{flag}" value="True" checked' in page
    assert 'name="repositories_from_distributions" id="id_repositories_from_distributions" value="test"' in page
    r = client(users["admin"]).get("/mini_buildd/setup/", {"preset": "extend"})
    assert 'name="chroots_from_sources" id="id_chroots_from_sources" value="True" checked' in text(r)
    assert_valid_response(r)


def _inspect_post(extra=None):
    from mini_buildd import models
    daemon = models.Daemon.get()
    data = {"identity": daemon.identity, "ftp_endpoint": daemon.ftpd_bind, "archives": "http://MIRROR-HOST/debian/",
            "chroots_backend": "Dir", "update": "", "pca": ""}
    data.update(extra or {})
    return data


def test_setup_inspect_report_and_followup(users):  # pylint: disable=redefined-outer-name
    from mini_buildd import models
    models.Archive.objects.create(url="http://MIRROR-HOST/debian/")
    c = client(users["admin"])
    # No confirmation: error next to the confirm box, nothing run.
    r = c.post("/mini_buildd/setup/", _inspect_post())
    assert r.status_code == 400 and "Please confirm" in field_error(r, "confirm")
    # Inspect with one new archive: a report, the new archive MISSING (not created).
    r = c.post("/mini_buildd/setup/", _inspect_post({"archives": "http://MIRROR-HOST/debian/,http://MIRROR-HOST/new/", "confirm": "setup"}))
    assert r.status_code == 200, text(r)
    assert_valid_response(r)
    page = text(r)
    assert 'id="mbd-setup-report"' in page and 'id="mbd-setup-summary"' in page
    rows = re.findall(r'<tr class="mbd-severity-(\d)">\s*<td><input type="checkbox" name="selected" value="([0-9a-f]{64})"[^>]*>'
                      r'.*?</td>\s*<td>(.*?)</td>\s*<td>(.*?)</td>', page, re.S)
    by_identity = {identity: (status, digest) for _sev, digest, identity, status in rows}
    assert by_identity["Archive(url=http://MIRROR-HOST/new/)"][0] == "MISSING"
    assert by_identity["Archive(url=http://MIRROR-HOST/debian/)"][0] == "EXISTS"
    assert not models.Archive.objects.filter(url="http://MIRROR-HOST/new/").exists()
    # The follow-up form carries the options.
    assert '<input type="hidden" name="archives" value="http://MIRROR-HOST/debian/,http://MIRROR-HOST/new/">' in page
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page.split('id="mbd-setup-followup"')[1]))
    # Follow-up without a selection: error; with the new archive selected: it is created.
    r = c.post("/mini_buildd/setup/", {**hidden, "followup": "selected", "confirm": "setup"})
    assert r.status_code == 400 and 'id="mbd-setup-error"' in text(r)
    r = c.post("/mini_buildd/setup/", {**hidden, "followup": "selected", "confirm": "setup",
                                       "selected": [by_identity["Archive(url=http://MIRROR-HOST/new/)"][1]]})
    assert r.status_code == 200, text(r)
    assert models.Archive.objects.filter(url="http://MIRROR-HOST/new/").exists()
    assert re.search(r"Archive\(url=http://MIRROR-HOST/new/\)</td>\s*<td>EXISTS</td>", text(r))
    assert "created" in text(r)


def test_setup_bad_option_is_shown(users):  # pylint: disable=redefined-outer-name
    r = client(users["admin"]).post("/mini_buildd/setup/", _inspect_post({"chroots_backend": "NoSuchBackend", "confirm": "setup"}))
    assert r.status_code == 400 and "not a valid choice" in field_error(r, "chroots_backend")
    r = client(users["admin"]).post("/mini_buildd/setup/", _inspect_post({"repositories": "broken", "confirm": "setup"}))
    assert r.status_code == 400 and "Bad repository" in text(r) and "Traceback" not in text(r)
    assert_valid_response(r)
