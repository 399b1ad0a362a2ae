"""Scoped API tokens against the real daemon (issue #17; twisted + Django, the API fast path, the
``mini-buildd-api`` command, the SQLite file) of an instance without chroots on 127.0.0.33, with
two repositories (``test``, ``other``) holding one source package each, an administrator, a staff
user and a plain user:

- tokens are made with the API call ``token_create`` over a session login (as upstream clients log
  in) by each user, never with more rights than the user's; each scope runs the calls of its level
  and is refused (403) those above, on the HTTP API and through the fast path's calls;
- a token restricted to ``test`` is refused calls naming ``other`` and instance-wide ones, and its
  listings default to ``test`` only; an expired, revoked or wrong token is 401 with the reason, also
  for a call the fast path has cached;
- the secret is in neither the database file nor its WAL: only its SHA-256;
- ``mini-buildd-api`` with ``$MINI_BUILDD_API_TOKEN`` runs a staff call without a password;
- the cross-site refusal still holds for session cookies, also beside a Bearer token.
"""

import datetime
import json
import os
import sqlite3
import subprocess

import pytest
import requests

from mini_buildd import config
from tests.helpers.daemon import PYTHON, ROOT, Daemon, free_port, in_home, run_mbd
from tests.helpers.packages import make_source_package
from tests.helpers.setup_run import run_setup

HOST = "127.0.0.33"
SETUP = ["--archives-from-apt-sources", "--sources", "bookworm", "--distributions", "bookworm:amd64",
         "--repositories", "test:Default:bookworm", "other:Default:bookworm", "--update", "all", "--pca", "all"]
SOURCE = "mbd-tokpkg"
PASSWORD = "tokens-Secret-1"
USERS = {"admin": PASSWORD, "sam": PASSWORD, "alice": PASSWORD}
EVIL = {"Origin": "http://evil.example.org", "Sec-Fetch-Site": "cross-site"}


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    """The set-up instance (two repositories with SOURCE 1.0 in unstable) with its daemon running."""
    base = tmp_path_factory.mktemp("tokens")
    home = base / "home"
    http_port, ftp_port = free_port(HOST), free_port(HOST)
    http_ep, ftp_ep = f"tcp:interface={HOST}:port={http_port}", f"tcp:interface={HOST}:port={ftp_port}"
    run_setup(home, *SETUP, "--ftp-endpoint", ftp_ep, http_endpoint=http_ep, hostname=HOST, timeout=600)
    password_file = base / "admin-password"
    password_file.write_text(PASSWORD + "\n")
    proc = run_mbd(home, "--set-admin-password-file", str(password_file))
    assert proc.returncode == 0, proc.stderr
    changes = {repo: make_source_package(base / f"pkg-{repo}", SOURCE, "1.0", f"bookworm-{repo}-unstable") for repo in ("test", "other")}
    dscs = {repo: str(next(c.parent.glob(f"{SOURCE}_*.dsc"))) for repo, c in changes.items()}  # pylint: disable=stop-iteration-return
    in_home(home, "from mini_buildd.tools import reprepro\n"
                  "from django.contrib.auth.models import User\n"
                  f"for identity, dsc in {dscs!r}.items():\n"
                  "    repo = models.Repository.objects.get(identity=identity)\n"
                  "    reprepro.Reprepro(repo.mbd_path()).includedsc(f'bookworm-{identity}-unstable', dsc)\n"
                  f"User.objects.create_user('sam', password={PASSWORD!r}, is_staff=True)\n"
                  f"User.objects.create_user('alice', password={PASSWORD!r})\n", hostname=HOST)
    daemon = Daemon(home, port=http_port, host=HOST, endpoints=[http_ep]).start()
    yield daemon
    assert daemon.stop() == 0


def call(daemon, call_name, bearer=None, session=None, headers=None, **params):
    """``(status, JSON answer)`` of API call ``call_name`` (with the token ``bearer``, or in ``session``)."""
    all_headers = dict(headers or {})
    if bearer is not None:
        all_headers["Authorization"] = f"Bearer {bearer}"
    r = (session or requests).get(f"{daemon.url}/mini_buildd/api/{call_name}/", params=params, headers=all_headers, timeout=120)
    return r.status_code, r.json()


@pytest.fixture(scope="module")
def made(instance):  # pylint: disable=redefined-outer-name
    """Tokens made by each user over a session login: ``{name: answer of token_create}``."""
    sessions = {user: instance.session(user, password) for user, password in USERS.items()}
    result = {}
    for name, user, params in (("admin", "admin", {"scope": "admin"}), ("admin-staff", "admin", {"scope": "staff"}),
                               ("admin-test", "admin", {"scope": "admin", "repositories": "test"}),
                               ("staff", "sam", {"scope": "staff", "name": "deploy"}),
                               ("check", "alice", {"scope": "upload-check", "expires": "30d"}),
                               ("read", "alice", {"scope": "read"}),
                               ("doomed", "alice", {"scope": "read"}), ("expiring", "alice", {"scope": "read"})):
        status, answer = call(instance, "token_create", session=sessions[user], **params)
        assert status == 200 and answer["token"].startswith("mbdt_") and answer["state"] == "active", answer
        result[name] = answer
    return result


def test_users_create_tokens_within_their_rights(instance, made):  # pylint: disable=redefined-outer-name
    alice, sam = instance.session("alice", PASSWORD), instance.session("sam", PASSWORD)
    for session, scope in ((alice, "staff"), (alice, "admin"), (sam, "admin")):
        status, answer = call(instance, "token_create", session=session, scope=scope)
        assert status == 403 and "more rights than you" in answer["detail"], answer
    status, listed = call(instance, "token_list", session=alice)
    assert status == 200 and [t["id"] for t in listed] == [made[n]["id"] for n in ("check", "read", "doomed", "expiring")]
    assert all(t["token"].endswith("…") and len(t["token"]) == 18 for t in listed)
    assert not any(made[n]["token"] in json.dumps(listed) for n in made)
    assert call(instance, "token_create", scope="read")[0] == 401  # anonymous


def test_each_scope_runs_its_level_and_no_more(instance, made):  # pylint: disable=redefined-outer-name
    tok = {n: made[n]["token"] for n in made}
    for name in ("read", "check", "staff", "admin"):  # NONE (status: a fast path call)
        assert call(instance, "status", tok[name])[0] == 200
        assert call(instance, "dput_conf", tok[name])[0] == 200
    status, answer = call(instance, "subscribe", tok["read"], source=SOURCE, distribution="")  # LOGIN
    assert status == 403 and "scope 'read' does not allow it" in answer["detail"]
    assert call(instance, "subscribe", tok["check"], source=SOURCE, distribution="")[0] == 200
    assert call(instance, "set_user_key", tok["check"], key="0123456789ABCDEF", confirm="set_user_key")[0] == 403
    migrate = {"source": SOURCE, "distribution": "bookworm-test-unstable", "version": "9.9", "confirm": "migrate"}
    for name, refused in (("read", True), ("check", True), ("staff", False), ("admin-staff", False), ("admin", False)):  # STAFF
        status, answer = call(instance, "migrate", tok[name], **migrate)
        assert (status == 403) is refused and status not in (401, 500), (name, status, answer)
    for name in ("read", "check", "staff", "admin-staff"):  # ADMIN
        status, answer = call(instance, "stop", tok[name], confirm="stop")
        assert status == 403 and "does not allow it" in answer["detail"], (name, answer)
    assert call(instance, "stop", tok["admin"], confirm="stop")[0] == 200
    assert call(instance, "status")[1]["load"] == -1
    assert call(instance, "start", tok["admin"], confirm="start")[0] == 200
    assert call(instance, "status")[1]["load"] >= 0
    r = requests.get(f"{instance.url}/accounts/profile/", headers={"Authorization": f"Bearer {tok['read']}"}, timeout=60)
    assert r.status_code == 200 and "Profile of alice" in r.text  # authenticated on pages too


def test_repository_restriction(instance, made):  # pylint: disable=redefined-outer-name
    tok = made["admin-test"]["token"]
    assert made["admin-test"]["repositories"] == ["test"]
    status, answer = call(instance, "ls", tok, source=SOURCE, repositories="other")
    assert status == 403 and "restricted to the repositories test" in answer["detail"]
    assert call(instance, "ls", tok, source=SOURCE, repositories="test,other")[0] == 403
    status, answer = call(instance, "ls", tok, source=SOURCE, repositories="test")
    assert status == 200 and list(answer) == ["test"]
    status, answer = call(instance, "ls", tok, source=SOURCE)  # default: the token's repositories only
    assert status == 200 and list(answer) == ["test"], answer
    assert sorted(call(instance, "ls", made["admin"]["token"], source=SOURCE)[1]) == ["other", "test"]
    migrate = {"source": SOURCE, "version": "9.9", "confirm": "migrate"}
    status, answer = call(instance, "migrate", tok, distribution="bookworm-other-unstable", **migrate)
    assert status == 403 and "'distribution' names bookworm-other-unstable" in answer["detail"], answer
    status, answer = call(instance, "migrate", tok, distribution="bookworm-test-unstable", **migrate)
    assert status not in (401, 403, 500), answer  # past the restriction (no version 9.9 there)
    status, answer = call(instance, "stop", tok, confirm="stop")
    assert status == 403 and "acts on the whole instance" in answer["detail"]
    assert call(instance, "status")[1]["load"] >= 0


def test_expired_revoked_wrong_tokens_are_401_also_past_the_fast_path(instance, made):  # pylint: disable=redefined-outer-name
    for _ in range(3):  # the fast path keeps the anonymous answer
        assert call(instance, "status")[0] == 200

    def refused(token, reason):
        r = requests.get(f"{instance.url}/mini_buildd/api/status/", headers={"Authorization": f"Bearer {token}"}, timeout=60)
        assert r.status_code == 401 and r.headers["Content-Type"] == "application/problem+json", r.text
        assert reason in r.json()["detail"] and r.headers["WWW-Authenticate"].startswith("Bearer"), r.text
    good = made["doomed"]["token"]
    assert call(instance, "status", good)[0] == 200
    refused("mbdt_" + "x" * 52, "unknown API token")
    refused(good[:-1] + ("x" if good[-1] != "x" else "y"), "unknown API token")
    refused("garbage", "this is not an API token")
    status, answer = call(instance, "token_revoke", made["check"]["token"], token=str(made["doomed"]["id"]))  # a token may revoke
    assert status == 200 and answer["state"] == "revoked"
    refused(good, "was revoked on")
    in_home(instance.home, "import datetime\n"
                           f"models.ApiToken.objects.filter(pk={made['expiring']['id']}).update("
                           "expires=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc))\n", hostname=HOST)
    refused(made["expiring"]["token"], "expired on 2020-01-01")
    assert call(instance, "status", made["read"]["token"])[0] == 200
    assert call(instance, "token_create", made["admin"]["token"], scope="read")[0] == 403  # tokens never make tokens


def test_only_the_hash_is_stored(instance, made):  # pylint: disable=redefined-outer-name
    db = config.Paths(instance.home).config_db
    raw = b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-journal")) if p.exists())
    for answer in made.values():
        assert answer["token"].encode() not in raw
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = dict(conn.execute("SELECT id, digest FROM mini_buildd_apitoken").fetchall())
        used = conn.execute("SELECT last_used FROM mini_buildd_apitoken WHERE id = ?", (made["read"]["id"],)).fetchone()[0]
    import hashlib  # pylint: disable=import-outside-toplevel
    assert all(rows[a["id"]] == hashlib.sha256(a["token"].encode()).hexdigest() for a in made.values())
    assert used is not None


def cli(instance, call_name, *args, token=None):  # pylint: disable=redefined-outer-name
    env = {k: v for k, v in os.environ.items() if k not in ("MINI_BUILDD_API_TOKEN", "MINI_BUILDD_API_PASSWORD")}
    if token:
        env["MINI_BUILDD_API_TOKEN"] = token
    return subprocess.run([PYTHON, "-m", "mini_buildd.cli.api", "--script-mode", "--auto-confirm", "--json", call_name, instance.url, *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False, env=env, stdin=subprocess.DEVNULL)


def test_cli_with_environment_token_runs_a_staff_call(instance, made):  # pylint: disable=redefined-outer-name
    proc = cli(instance, "migrate", SOURCE, "bookworm-test-unstable")
    assert proc.returncode != 0 and "401" in proc.stderr, proc.stderr  # no token, no login
    proc = cli(instance, "migrate", SOURCE, "bookworm-test-unstable", token=made["check"]["token"])
    assert proc.returncode != 0 and "403" in proc.stderr and "does not allow it" in proc.stderr, proc.stderr
    proc = cli(instance, "migrate", SOURCE, "bookworm-test-unstable", token=made["staff"]["token"])
    assert proc.returncode == 0, proc.stderr
    status, answer = call(instance, "ls", source=SOURCE, repositories="test")
    assert status == 200 and answer["test"]["bookworm-test-testing"]["version"] == "1.0", answer
    proc = cli(instance, "token_list", token=made["staff"]["token"])
    assert proc.returncode == 0 and [t["name"] for t in json.loads(proc.stdout)] == ["deploy"], proc.stderr


def test_cross_site_protection_unchanged_for_cookies(instance, made):  # pylint: disable=redefined-outer-name
    admin = instance.session("admin", PASSWORD)
    status, answer = call(instance, "stop", session=admin, headers=EVIL, confirm="stop")
    assert status == 403 and answer["detail"].startswith("Refused cross-site request: API call 'stop'")
    status, answer = call(instance, "stop", made["admin"]["token"], session=admin, headers=EVIL, confirm="stop")
    assert status == 403 and answer["detail"].startswith("Refused cross-site request"), answer  # cookie + Bearer
    r = admin.post(f"{instance.url}/mini_buildd/api/stop/", data={"confirm": "stop"}, timeout=60,
                   headers={"Authorization": f"Bearer {made['admin']['token']}"})
    assert r.status_code == 403  # a cookie: Django's CSRF check as always
    assert call(instance, "status")[1]["load"] >= 0
    status, answer = call(instance, "subscribe", made["check"]["token"], headers=EVIL, source="hello", distribution="")
    assert status == 200, answer  # the token alone: no cookie to abuse
    r = requests.post(f"{instance.url}/mini_buildd/api/unsubscribe/", data={"source": "hello", "distribution": ""}, timeout=60,
                      headers={"Authorization": f"Bearer {made['check']['token']}"})
    assert r.status_code == 200 and r.json() == [{"source": "hello", "distribution": ""}]  # no CSRF token needed


def test_expiry_is_in_the_answer(made):  # pylint: disable=redefined-outer-name
    expires = datetime.datetime.fromisoformat(made["check"]["expires"])
    created = datetime.datetime.fromisoformat(made["check"]["created"])
    assert datetime.timedelta(days=29) < expires - created <= datetime.timedelta(days=30, seconds=5)
    assert made["read"]["expires"] is None
