"""The API over HTTP (Django test client on the test process's home, real gpg and reprepro):
results compared with upstream's reference outputs, every error class with its exact RFC 7807
body, an authorization matrix over all calls, and the real daemon driven by the real
``mini-buildd-api`` command line (including login with a keyring password)."""

import json
import logging
import os
import pathlib
import shutil
import subprocess

import pytest
import requests

from tests.helpers.daemon import Daemon, in_home, run_mbd, PYTHON, ROOT
from tests.helpers.reference import REFERENCE

try:
    import keyring.backend

    class PlainKeyring(keyring.backend.KeyringBackend):
        """Plain-text JSON file keyring for unattended tests: ``PYTHON_KEYRING_BACKEND`` points here,
        ``MBD_TEST_KEYRING_FILE`` names the file."""

        priority = 1

        @staticmethod
        def _path():
            return pathlib.Path(os.environ["MBD_TEST_KEYRING_FILE"])

        def _load(self):
            return json.loads(self._path().read_text()) if self._path().exists() else {}

        def get_password(self, service, username):
            return self._load().get(service, {}).get(username)

        def set_password(self, service, username, password):
            data = self._load()
            data.setdefault(service, {})[username] = password
            self._path().write_text(json.dumps(data))

        def delete_password(self, service, username):
            data = self._load()
            data.get(service, {}).pop(username, None)
            self._path().write_text(json.dumps(data))
except ImportError:  # pragma: no cover
    PlainKeyring = None

PASSWORD = "api-Secret-1"
ED25519 = "Key-Type: EdDSA\nKey-Curve: ed25519\nKey-Usage: sign\nExpire-Date: 0"
MIRROR = "http://MIRROR-HOST/"
PROBLEM_KEYS = ["type", "status", "title", "detail", "instance"]


@pytest.fixture(autouse=True)
def _testserver_allowed():
    """The Django test client's Host ('testserver') is no host of the instance: allow it here."""
    from django.conf import settings as django_settings  # pylint: disable=import-outside-toplevel
    from django.test import override_settings as _override  # pylint: disable=import-outside-toplevel
    with _override(ALLOWED_HOSTS=[*django_settings.ALLOWED_HOSTS, "testserver"]):
        yield


def _reference(name):
    """A reference output of tests/data/reference (in the repository: a missing one fails the test)."""
    return (REFERENCE / name).read_text()


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def instance(django_db_blocker):
    """A populated configuration like the reference instance (identity mbd-ref, HTTP 127.0.0.1:18066,
    FTP 18067, repository 'test' for bookworm/amd64 with the Default layout, an active chroot),
    users of every level, and a fake engine. Rolled back (and files removed) afterwards; the
    module's tests have database access (inside that transaction)."""
    # pylint: disable=import-outside-toplevel
    from django.contrib.auth.models import User
    from django.db import transaction
    from django.utils import timezone
    from mini_buildd import config, models
    from mini_buildd.api import registry

    with django_db_blocker.unblock():
        saved_runtime = (config.runtime.hostname, list(config.runtime.http_endpoints))
        config.runtime.hostname, config.runtime.http_endpoints = "127.0.0.1", ["tcp:port=18066"]
        engine = {"running": True, "log": []}
        registry.set_engine_hooks(lambda: engine["running"],
                                  lambda: engine["log"].append("stop") or engine.update(running=False),
                                  lambda: engine["log"].append("start") or engine.update(running=True),
                                  load=lambda: 0.0)
        gpg_had_key = models.Daemon.get().gnupg().get_secret_key() is not None
        repo_dir = config.paths.repository("test")

        class _Rollback(Exception):
            pass
        try:
            with transaction.atomic():
                daemon = models.Daemon.get()
                daemon.identity = "mbd-ref"
                daemon.ftpd_bind = "tcp:port=18067"
                daemon.gnupg_template = ED25519
                daemon.custom_archive_origin = "Mini-Buildd archive mbd-ref on localhost"
                daemon.save()
                daemon.mbd_prepare()

                source = models.Source.objects.create(origin="Debian", codename="bookworm")
                arch, _ = models.Architecture.objects.get_or_create(name="amd64")
                components = [models.Component.objects.get_or_create(name=n)[0] for n in ("main", "contrib", "non-free", "non-free-firmware")]
                dist = models.Distribution.objects.create(base_source=source)
                dist.components.add(*components)
                models.ArchitectureOption.objects.create(distribution=dist, architecture=arch, build_architecture_all=True)
                for origin, codename, codeversion, path, prio in (("Debian", "bookworm-security", "12", "debian-security/", 500),
                                                                  ("Debian Backports", "bookworm-backports", "~BOOKWORM-BACKPORTS", "debian/", 1)):
                    extra = models.Source.objects.create(origin=origin, codename=codename)
                    extra.codeversion_guessed = codeversion
                    extra.save()
                    archive, _ = models.Archive.objects.get_or_create(url=MIRROR + path, defaults={"ping": 10.0})
                    extra.archives.add(archive)
                    dist.extra_sources.add(models.PrioritySource.objects.create(source=extra, priority=prio))
                repo = models.Repository.objects.create(identity="test", layout=models.Layout.objects.get(name="Default"))
                repo.distributions.add(dist)
                repo.mbd_prepare()
                chroot = models.DirChroot.objects.create(source=source, architecture=arch)
                chroot._set(models.StatusModel.STATUS_ACTIVE, timezone.now())  # pylint: disable=protected-access

                users = {"anonymous": None}
                for name, staff, superuser in (("user", False, False), ("staff", True, False), ("admin", True, True)):
                    users[name] = User.objects.create_user(f"api-{name}", password=PASSWORD, is_staff=staff, is_superuser=superuser)
                yield {"daemon": daemon, "repo": repo, "users": users, "engine": engine, "dist": dist}
                raise _Rollback()
        except _Rollback:
            pass
        finally:
            registry.reset_engine_hooks()
            config.runtime.hostname, config.runtime.http_endpoints = saved_runtime
            shutil.rmtree(repo_dir, ignore_errors=True)
            if not gpg_had_key:
                from mini_buildd.tools import gnupg
                g = gnupg.Gnupg(config.paths.gnupg_home)
                if g.get_secret_key() is not None:
                    g.remove_secret_key()


@pytest.fixture
def engine(instance):  # pylint: disable=redefined-outer-name
    instance["engine"].update(running=True, log=[])
    yield instance["engine"]
    instance["engine"].update(running=True, log=[])


def client(instance, who="anonymous"):  # pylint: disable=redefined-outer-name
    from django.test import Client  # pylint: disable=import-outside-toplevel
    c = Client()
    if instance["users"][who] is not None:
        c.force_login(instance["users"][who])
    return c


def api(instance, call, who="anonymous", **params):  # pylint: disable=redefined-outer-name
    return client(instance, who).get(f"/mini_buildd/api/{call}/", params)


def assert_problem(response, status, detail=None):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = json.loads(response.content)
    assert list(body) == PROBLEM_KEYS
    assert body["type"] == body["instance"] == "about:blank" and body["status"] == status
    if detail is not None:
        assert body["detail"] == detail
    return body


# ------------------------------------------------------------------------------------------------ results
def test_status_matches_reference(instance, engine):  # pylint: disable=unused-argument,redefined-outer-name
    from mini_buildd import __version__  # pylint: disable=import-outside-toplevel
    r = api(instance, "status", output="json")
    assert r.status_code == 200 and r["Content-Type"] == "application/json" and "Cookie" in r["Vary"]
    expected = _reference("http/api_status__output_json.body").replace('"2.4.10"', json.dumps(__version__))
    assert r.content.decode() == expected
    r = api(instance, "status", with_repositories="True", output="json")
    expected = _reference("http/api_status__with_repositories_True_output_json.body").replace('"2.4.10"', json.dumps(__version__))
    assert r.content.decode() == expected


def test_status_load_is_negative_when_engine_stopped(instance, engine):  # pylint: disable=redefined-outer-name
    engine["running"] = False
    assert json.loads(api(instance, "status").content)["load"] == -1.0


def test_pub_key(instance):  # pylint: disable=redefined-outer-name
    key = json.loads(api(instance, "pub_key").content)
    shape = json.loads(_reference("api-pub_key.SHAPE.json"))
    lines = key.strip().splitlines()
    assert (lines[0], lines[-1]) == (shape["first_line"], shape["last_line"])
    assert key == instance["daemon"].gnupg().pub_key()


def test_dput_conf_matches_reference(instance):  # pylint: disable=redefined-outer-name
    r = api(instance, "dput_conf", output="json")
    assert r["Content-Type"] == "application/json"
    assert r.content.decode() == _reference("http/api_dput_conf__output_json.body")
    assert int(r["Content-Length"]) == len(r.content) == 323
    text = json.loads(r.content)
    assert api(instance, "dput_conf", output="plain").content.decode() == text
    without = json.loads(api(instance, "dput_conf", without_global="True").content)
    assert without == text[text.index("# This instance"):]
    profile = json.loads(json.loads(api(instance, "dput_conf", dput_ng_profile="1").content))
    assert profile == {"method": "ftp", "fqdn": "127.0.0.1:18067", "login": "anonymous", "incoming": "/incoming"}


def test_dput_conf_appends_site_config(instance, home):  # pylint: disable=redefined-outer-name
    home.dput_cf.write_text("[site-target]\nmethod = ftp\n")
    try:
        assert json.loads(api(instance, "dput_conf").content).endswith("incoming = /incoming\n\n[site-target]\nmethod = ftp\n")
    finally:
        home.dput_cf.unlink()


def test_sources_list_matches_reference(instance):  # pylint: disable=redefined-outer-name
    r = api(instance, "sources_list", codenames="bookworm", output="json")
    assert r.content.decode() == _reference("http/api_sources_list__codenames_bookworm_output_json.body")
    expected = json.loads(_reference("api-sources_list-bookworm-with-extra-comment.json"))
    assert json.loads(api(instance, "sources_list", codenames="bookworm", with_extra="True", with_comment="True").content) == expected


def test_sources_list_options(instance):  # pylint: disable=redefined-outer-name
    def lines(**params):
        return json.loads(api(instance, "sources_list", **params).content).splitlines()
    base = "http://127.0.0.1:18066/repositories/test"
    comps = "main contrib non-free non-free-firmware"
    assert lines(suites="stable,unstable", types="deb,deb-src", options="arch=amd64") == [
        f"deb [arch=amd64] {base} bookworm-test-stable {comps}", f"deb-src [arch=amd64] {base} bookworm-test-stable {comps}",
        f"deb [arch=amd64] {base} bookworm-test-unstable {comps}", f"deb-src [arch=amd64] {base} bookworm-test-unstable {comps}"]
    assert lines(suites="testing", rollbacks="2") == [f"deb [] {base} bookworm-test-testing{s} {comps}" for s in ("", "-rollback0", "-rollback1")]
    assert len(lines(suites="testing", rollbacks="-1")) == 1 + 3
    assert len(lines(suites="testing", rollbacks="99")) == 1 + 3
    assert lines(suites="stable", snapshot="WEEKLY_2024-05-05T02:13") == [
        f"deb [] {base} bookworm-test-stable/snapshots/WEEKLY_2024-05-05T02:13 {comps}"]
    assert lines(suites="stable", mirror="http://mirror.example/{}") == [f"deb [] http://mirror.example/test bookworm-test-stable {comps}"]
    assert lines(repositories="") == [] and len(lines()) == 6


# ------------------------------------------------------------------------------------------------ output forms
def test_outputs(instance):  # pylint: disable=redefined-outer-name
    r = api(instance, "status", output="plain")
    assert r["Content-Type"] == "text/plain; charset=utf-8" and json.loads(r.content)["identity"] == "mbd-ref"
    assert r.content.decode().startswith('{\n  "version"')
    r = api(instance, "dput_conf", output="html")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/html")
    text = r.content.decode()
    assert "<!DOCTYPE html>" in text and "[mini-buildd-mbd-ref]" in text and "&#x27;ftp-master&#x27;" in text
    r = api(instance, "status", output="html-snippet")
    assert r.content.decode().startswith('<pre class="mbd-api-result">')
    assert_problem(api(instance, "status", output="yaml"), 400, "Unknown output 'yaml' (use one of: json, plain, html, html-snippet)")


def test_index(instance):  # pylint: disable=redefined-outer-name
    from mini_buildd.api import registry  # pylint: disable=import-outside-toplevel
    r = client(instance).get("/mini_buildd/api/")
    assert r.status_code == 200 and "<!DOCTYPE html>" in r.content.decode()
    for name in registry.CALLS:
        assert f"<code>{name}" in r.content.decode() or f">{name}</a>" in r.content.decode()
    described = json.loads(client(instance).get("/mini_buildd/api/", {"output": "json"}).content)
    assert list(described) == list(registry.CALLS)
    assert described["migrate"]["auth"] == "STAFF" and described["migrate"]["flags"] == ["CONFIRM"]


# ------------------------------------------------------------------------------------------------ errors
def test_400_missing_argument_matches_reference(instance):  # pylint: disable=redefined-outer-name
    r = api(instance, "ls", output="json")
    assert_problem(r, 400)
    assert r.content.decode() == _reference("http/api_ls__output_json.body")
    assert int(r["Content-Length"]) == 192


def test_400_unknown_argument(instance):  # pylint: disable=redefined-outer-name
    assert_problem(api(instance, "status", foo="1"), 400, "Unknown argument(s) for API call 'status': foo")


def test_400_bad_values(instance):  # pylint: disable=redefined-outer-name
    body = assert_problem(api(instance, "sources_list", codenames="nosuch"), 400)
    assert body["detail"] == "Argument 'codenames': 'nosuch' is not a valid choice (choose from: bookworm)"
    assert body["title"] == "Bad request syntax or unsupported method"
    assert_problem(api(instance, "sources_list", types="rpm"), 400)
    assert_problem(api(instance, "status", with_repositories="maybe"), 400,
                   "Argument 'with_repositories': not a boolean: 'maybe' (use True or False)")
    assert_problem(api(instance, "sources_list", rollbacks="x"), 400, "Argument 'rollbacks': not an integer: 'x'")


def test_400_missing_confirmation(instance, engine):  # pylint: disable=redefined-outer-name,unused-argument
    assert_problem(api(instance, "reindex", "admin"), 400, "API call 'reindex' needs to be confirmed (add confirm=reindex)")
    assert_problem(api(instance, "reindex", "admin", confirm="start"), 400)
    assert_problem(api(instance, "set_user_key", "user", key="0123456789ABCDEF"), 400)


def test_401_matches_reference(instance):  # pylint: disable=redefined-outer-name
    r = api(instance, "migrate", source="mbd-hello", distribution="bookworm-test-unstable", output="json")
    assert_problem(r, 401)
    assert r.content.decode() == _reference("http/api_migrate__source_mbd-hello_distribution_bookworm-test-unstable_output_json.body")


def test_403(instance):  # pylint: disable=redefined-outer-name
    body = assert_problem(api(instance, "migrate", "user", source="x", distribution="bookworm-test-unstable"), 403,
                          "API call 'migrate' needs authorization: STAFF")
    assert body["title"] == "Request forbidden -- authorization will not help"
    assert_problem(api(instance, "remove", "staff", source="x", distribution="bookworm-test-unstable"), 403)


def test_404_unknown_call(instance):  # pylint: disable=redefined-outer-name
    body = assert_problem(api(instance, "no_such_call", output="json"), 404, "No such API call: 'no_such_call'")
    assert body["title"] == "Nothing matches the given URI"
    assert_problem(api(instance, "no_such_call"), 404)
    r = api(instance, "no_such_call", output="html")
    assert r.status_code == 404 and r["Content-Type"].startswith("text/html") and "no_such_call" in r.content.decode()


def test_cross_site_browser_requests_refused(instance, engine):  # pylint: disable=redefined-outer-name
    """The attack of issue #12 item 1: the admin's browser, on another site's page, sends a
    state-changing call with the admin's cookie. Every browser hint of a cross-site request is
    refused with a 403 naming why, and the engine stays running; without browser headers (CLI) or
    same-origin the call runs; anonymous read calls answer whatever the headers say."""
    admin = client(instance, "admin")
    ours = "http://testserver"
    attacks = [
        {"HTTP_SEC_FETCH_SITE": "cross-site", "HTTP_REFERER": "http://evil.example.org/page.html"},
        {"HTTP_SEC_FETCH_SITE": "same-site"},
        {"HTTP_ORIGIN": "http://127.0.0.2:8066"},
        {"HTTP_ORIGIN": "null"},
        {"HTTP_REFERER": "http://evil.example.org/"},
        {"HTTP_REFERER": "http://testserver:8080/mini_buildd/"},  # our host, another port: another origin
        {"HTTP_SEC_FETCH_SITE": "same-origin", "HTTP_ORIGIN": "http://evil.example.org"},
    ]
    for headers in attacks:
        for method in ("get", "post"):
            r = getattr(admin, method)("/mini_buildd/api/stop/", {"confirm": "stop"}, **headers)
            body = assert_problem(r, 403)
            assert body["detail"].startswith("Refused cross-site request: API call 'stop' changes state, and "), body
            assert engine["log"] == [] and engine["running"], headers
    r = admin.get("/mini_buildd/api/stop/", {"confirm": "stop"}, HTTP_SEC_FETCH_SITE="cross-site")
    assert "Sec-Fetch-Site" in json.loads(r.content)["detail"]
    # Anonymous read-only calls stay usable from anywhere (links to status pages, apt line helpers).
    r = client(instance).get("/mini_buildd/api/status/", HTTP_SEC_FETCH_SITE="cross-site", HTTP_ORIGIN="http://evil.example.org")
    assert r.status_code == 200
    # Same origin (our own pages) and no browser headers (mini-buildd-api) run the call.
    r = admin.post("/mini_buildd/api/stop/", {"confirm": "stop"}, HTTP_SEC_FETCH_SITE="same-origin", HTTP_ORIGIN=ours,
                   HTTP_REFERER=ours + "/mini_buildd/api/stop/?output=html")
    assert r.status_code == 200 and engine["log"] == ["stop"]
    engine.update(running=True, log=[])
    r = admin.get("/mini_buildd/api/stop/", {"confirm": "stop"})
    assert r.status_code == 200 and engine["log"] == ["stop"]


def test_405_other_methods(instance):  # pylint: disable=redefined-outer-name
    r = client(instance).put("/mini_buildd/api/status/")
    assert_problem(r, 405)
    assert r["Allow"] == "GET, HEAD, POST"
    r = client(instance).post("/mini_buildd/api/")
    assert_problem(r, 405)
    assert r["Allow"] == "GET, HEAD"


def test_session_and_csrf_cookies_strict(instance):  # pylint: disable=redefined-outer-name
    from django.test import Client  # pylint: disable=import-outside-toplevel
    c = Client()
    r = c.get("/accounts/login/")
    csrf = r.cookies["csrftoken"]
    assert csrf["samesite"] == "Strict" and csrf["httponly"]
    r = c.post("/accounts/login/", {"username": instance["users"]["admin"].username, "password": PASSWORD,
                                    "csrfmiddlewaretoken": csrf.value, "next": "/accounts/null/"})
    session = r.cookies["mini_buildd_sessionid"]
    assert session["samesite"] == "Strict" and session["httponly"] and not session["secure"]
    # On HTTPS the cookies are Secure.
    r = Client().get("/accounts/login/", secure=True)
    assert r.cookies["csrftoken"]["secure"]


def test_503_engine_not_running(instance, engine):  # pylint: disable=redefined-outer-name
    engine["running"] = False
    assert_problem(api(instance, "uploaders", "admin"), 503, "API call 'uploaders' needs a running engine: start it first")
    # Checked before the confirmation.
    assert_problem(api(instance, "snapshot_create", "admin", distribution="bookworm-test-stable", name="x"), 503)


def test_503_maintenance_busy(instance, engine):  # pylint: disable=redefined-outer-name,unused-argument
    from mini_buildd.api import registry  # pylint: disable=import-outside-toplevel
    with registry.maintenance("test-holder"):
        assert_problem(api(instance, "reindex", "admin", confirm="reindex"), 503,
                       "API call 'reindex': another maintenance call is running, try again later")
        # Other calls still work.
        assert api(instance, "status").status_code == 200


def test_500_is_a_problem_not_a_traceback(instance, monkeypatch):  # pylint: disable=redefined-outer-name
    from mini_buildd.api import registry  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(registry.CALLS["pub_key"], "run", lambda args, user: 1 / 0)
    body = assert_problem(api(instance, "pub_key"), 500)
    assert "ZeroDivisionError" in body["detail"] and "Traceback" not in body["detail"]
    r = api(instance, "pub_key", output="html")
    assert r.status_code == 500 and "Traceback" not in r.content.decode()


def test_calls_are_logged_with_user_and_forwarded_address(instance, caplog):  # pylint: disable=redefined-outer-name
    with caplog.at_level(logging.DEBUG, logger="mini_buildd.api.http"):  # anonymous calls are logged at DEBUG (issue #17)
        client(instance, "staff").get("/mini_buildd/api/status/", HTTP_X_FORWARDED_FOR="10.1.2.3, 192.168.0.1")
        client(instance).get("/mini_buildd/api/status/")
    messages = [r.getMessage() for r in caplog.records]
    assert any("'status' by api-staff from 10.1.2.3" in m for m in messages), messages
    assert any("'status' by anonymous from 127.0.0.1" in m for m in messages), messages
    assert all(r.levelno == logging.DEBUG for r in caplog.records if "'status' by" in r.getMessage())


# ------------------------------------------------------------------------------------------------ authorization matrix
LEVELS = ["anonymous", "user", "staff", "admin"]


@pytest.mark.parametrize("who", LEVELS[:-1])
def test_authorization_matrix(instance, who):  # pylint: disable=redefined-outer-name
    """Below its level, every call answers 401 (anonymous) or 403 (logged in) before looking at arguments."""
    from mini_buildd.api import registry  # pylint: disable=import-outside-toplevel
    level = LEVELS.index(who)
    checked = 0
    for name, call in registry.CALLS.items():
        if level >= int(call.auth):
            continue
        r = api(instance, name, who)
        assert_problem(r, 401 if who == "anonymous" else 403, f"API call '{name}' needs authorization: {call.auth.name}")
        checked += 1
    assert checked == sum(1 for c in registry.CALLS.values() if level < int(c.auth)) > 0


# ------------------------------------------------------------------------------------------------ implemented calls
def test_subscriptions(instance, db):  # pylint: disable=redefined-outer-name,unused-argument
    def call(name, **params):
        r = api(instance, name, "user", **params)
        assert r.status_code == 200, r.content
        return json.loads(r.content)
    assert call("subscribe", source="hello", distribution="") == {"created": True, "source": "hello", "distribution": ""}
    assert call("subscribe", source="hello", distribution="")["created"] is False
    assert call("unsubscribe", source="hello", distribution="") == [{"source": "hello", "distribution": ""}]
    assert call("unsubscribe", source="hello", distribution="") == []


def test_set_user_key(instance, db):  # pylint: disable=redefined-outer-name,unused-argument
    from mini_buildd import models  # pylint: disable=import-outside-toplevel
    key = instance["daemon"].gnupg().pub_key()
    r = api(instance, "set_user_key", "user", key=key, confirm="set_user_key")
    assert r.status_code == 200 and json.loads(r.content) == {}
    uploader = models.Uploader.objects.get(user=instance["users"]["user"])
    assert uploader.mbd_is_prepared() and not uploader.mbd_is_active() and len(uploader.key_long_id) == 16
    assert_problem(api(instance, "set_user_key", "user", key="not-a-key-id", confirm="set_user_key"), 400)


def test_start_stop(instance, engine, db):  # pylint: disable=redefined-outer-name
    from mini_buildd import models  # pylint: disable=import-outside-toplevel
    daemon = models.Daemon.get()
    assert_problem(api(instance, "start", "admin", confirm="start"), 400)
    assert api(instance, "stop", "admin", confirm="stop").status_code == 200
    assert engine["log"] == ["stop"] and not engine["running"]
    daemon._set(models.StatusModel.STATUS_ACTIVE)  # pylint: disable=protected-access
    assert api(instance, "start", "admin", confirm="start").status_code == 200
    assert engine["log"] == ["stop", "start"] and engine["running"]


def test_reindex_is_maintenance(instance, engine, home):  # pylint: disable=redefined-outer-name
    release = home.repository("test") / "dists" / "bookworm-test-unstable" / "Release"
    release.unlink()
    r = api(instance, "reindex", "admin", confirm="reindex")
    assert r.status_code == 200 and json.loads(r.content) == {}
    assert release.exists()
    assert engine["log"] == ["stop", "start"] and engine["running"]
    assert_problem(api(instance, "reindex", "admin", confirm="reindex", repositories="nosuch"), 400)


def test_remake_chroots_selection(instance, engine):  # pylint: disable=redefined-outer-name,unused-argument
    assert json.loads(api(instance, "remake_chroots", "admin", confirm="remake_chroots", keys="").content) == {}
    assert_problem(api(instance, "remake_chroots", "admin", confirm="remake_chroots", keys="sid:amd64"), 400)


def test_uploaders(instance, engine, db):  # pylint: disable=redefined-outer-name,unused-argument
    from mini_buildd import models  # pylint: disable=import-outside-toplevel
    uploader = models.Uploader.objects.get(user=instance["users"]["staff"])
    uploader.may_upload_to.add(instance["repo"])
    uploader.key_long_id = "0123456789ABCDEF"
    uploader.save()
    uploader._set(models.StatusModel.STATUS_ACTIVE)  # pylint: disable=protected-access
    result = json.loads(api(instance, "uploaders", "admin").content)
    assert result == {"test": {"allow_unauthenticated_uploads": False, "extra_uploader_keyrings": [],
                               "uploaders": [{"user": "api-staff", "key_long_id": "0123456789ABCDEF", "key_name": "", "key_fingerprint": ""}]}}


def test_handshake(instance, db):  # pylint: disable=redefined-outer-name,unused-argument
    from mini_buildd.tools import gnupg  # pylint: disable=import-outside-toplevel
    from mini_buildd import models  # pylint: disable=import-outside-toplevel
    from mini_buildd.pipeline import remotes  # pylint: disable=import-outside-toplevel
    gpg = instance["daemon"].gnupg()
    challenge = remotes.new_challenge()
    signed = gpg.sign_message(remotes.handshake_text(remotes.HANDSHAKE_REQUEST, Challenge=challenge, From="http://127.0.0.1:18166"))
    assert_problem(api(instance, "handshake", signed_message=signed), 400, "Signed message does not match any remote's key")
    remote = models.Remote.objects.create(http="tcp:host=127.0.0.1:port=18166", key=gpg.pub_key())
    remote._set(models.StatusModel.STATUS_PREPARED)  # pylint: disable=protected-access
    reply = json.loads(api(instance, "handshake", signed_message=signed).content)
    answer = remotes.parse_handshake(remotes.HANDSHAKE_ANSWER, gnupg.verify_message(reply, [gpg.pub_key()]))
    assert answer["Challenge"] == challenge and answer["To"] == "http://127.0.0.1:18166"
    # the old constant message (or any other text) signed by a remote's key is no handshake request
    assert_problem(api(instance, "handshake", signed_message=gpg.sign_message()), 400,
                   "Signed message is not a handshake request (not a mini-buildd handshake request)")


def test_setup_inspects(instance, engine):  # pylint: disable=redefined-outer-name,unused-argument
    r = api(instance, "setup", "admin", confirm="setup")
    assert r.status_code == 200, r.content
    result = json.loads(r.content)
    assert set(result) == {"setup", "instances", "report"}
    assert_problem(api(instance, "setup", "admin", confirm="setup", chroots_backend="Tarball"), 400)


# ------------------------------------------------------------------------------------------------ real daemon + command line
@pytest.fixture(scope="module")
def real_daemon(tmp_path_factory):
    home = tmp_path_factory.mktemp("api") / "home"
    assert run_mbd(home, "--set-admin-password", PASSWORD).returncode == 0
    in_home(home, "d = models.Daemon.get()\nd.identity = 'mbd-cli'\nd.save()\n")
    d = Daemon(home)
    d.start()
    yield d
    assert d.stop() == 0


def cli(*args, env=None):
    return subprocess.run([PYTHON, "-m", "mini_buildd.cli.api", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def assert_clean_error(proc, *texts):
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    for text in texts:
        assert text in proc.stderr, proc.stderr


def test_cli_status(real_daemon):  # pylint: disable=redefined-outer-name
    proc = cli("status", real_daemon.url)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["identity"] == "mbd-cli" and status["url"] == real_daemon.url and status["load"] == -1.0
    assert proc.stdout == json.dumps(status, indent=2) + "\n"
    proc = cli("status", f"tcp:host=127.0.0.1:port={real_daemon.port}", "-R")
    assert proc.returncode == 0 and json.loads(proc.stdout)["repositories"] == {}


def test_cli_string_results_are_raw(real_daemon):  # pylint: disable=redefined-outer-name
    proc = cli("dput_conf", real_daemon.url)
    assert proc.returncode == 0 and proc.stdout.startswith("# Recommended global config\n") and "[mini-buildd-mbd-cli]" in proc.stdout
    proc = cli("--json", "dput_conf", real_daemon.url)
    assert json.loads(proc.stdout).startswith("# Recommended")


def test_cli_errors_are_clean(real_daemon):  # pylint: disable=redefined-outer-name
    assert_clean_error(cli("--script-mode", "--auto-confirm", "reindex", real_daemon.url), "401", "needs authorization: ADMIN")
    assert_clean_error(cli("ls", real_daemon.url, "hello", "-R", "nosuch"), "400", "'nosuch' is not a valid choice")
    assert_clean_error(cli("status", "http://127.0.0.1:1"), "Can't reach http://127.0.0.1:1")
    proc = cli("status")
    assert proc.returncode == 2 and "ENDPOINT" in proc.stderr


def test_http_404_on_real_daemon(real_daemon):  # pylint: disable=redefined-outer-name
    r = requests.get(real_daemon.url + "/mini_buildd/api/no_such_call/", params={"output": "json"}, timeout=10)
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/problem+json"
    r = requests.get(real_daemon.url + "/mini_buildd/api/no_such_call/", params={"output": "html"}, timeout=10)
    assert r.status_code == 404 and r.headers["Content-Type"].startswith("text/html")


@pytest.mark.skipif(PlainKeyring is None, reason="python3-keyring not installed")
def test_cli_login_with_keyring_password(real_daemon, tmp_path):  # pylint: disable=redefined-outer-name
    store = tmp_path / "keyring.json"
    store.write_text(json.dumps({real_daemon.url: {"admin": PASSWORD}}))
    env = {"PYTHON_KEYRING_BACKEND": "tests.integration.test_api_http.PlainKeyring", "MBD_TEST_KEYRING_FILE": str(store)}
    endpoint = real_daemon.url.replace("://", "://admin@")
    proc = cli("--script-mode", "subscribe", endpoint, "hello", "", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"created": True, "source": "hello", "distribution": ""}
    # Maintenance + confirmation through the command line.
    proc = cli("--script-mode", "--auto-confirm", "reindex", endpoint, env=env)
    assert proc.returncode == 0 and json.loads(proc.stdout) == {}, proc.stderr
    # Without --auto-confirm, script mode can't confirm: the server's 400 is printed.
    assert_clean_error(cli("--script-mode", "reindex", endpoint, env=env), "400", "needs to be confirmed")
    # A wrong stored password is a clean error.
    store.write_text(json.dumps({real_daemon.url: {"admin": "wrong"}}))
    assert_clean_error(cli("--script-mode", "subscribe", endpoint, "hello", "", env=env), "Login as 'admin'", "failed")
    # No password at all, not interactive.
    store.write_text("{}")
    assert_clean_error(cli("--script-mode", "subscribe", endpoint, "hello", "", env=env), "No password for 'admin'")


def test_cli_login_with_environment_password(real_daemon):  # pylint: disable=redefined-outer-name
    endpoint = real_daemon.url.replace("://", "://admin@")
    proc = cli("--script-mode", "unsubscribe", endpoint, "hello", "", env={"MINI_BUILDD_API_PASSWORD": PASSWORD})
    assert proc.returncode == 0, proc.stderr
    assert isinstance(json.loads(proc.stdout), list)
