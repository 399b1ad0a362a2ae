"""Every API call of the registry over real HTTP against the shared e2e instance, through the
real client (mini_buildd.api.client: Django login with the CSRF cookie), each with meaningful
arguments and an assertion on its result.

Coverage is taken from the registry: a call without a ``test_call_<name>`` function here fails
:func:`test_every_registered_call_has_a_test`, and :func:`test_zz_every_call_ran_over_http` fails
unless every registered call answered over HTTP in this module (with success; ``wake`` with its
4xx for an unknown remote and ``handshake`` with its 400 for a message no remote signed, as
this instance has no remotes).

Packages: this module uploads its own (``mbd-e2e-api*``) and leaves ``mbd-e2e-hello`` (the
``hello`` fixture of tests/e2e/conftest.py) alone. Maintenance calls (setup, reindex,
remake_chroots) and start/stop run last, when no build is ongoing.

``remake_chroots``: remaking the shared chroot would debootstrap it again (minutes, and a
failure would break every later module), so the test checks the authorization and confirmation
path and a harmless real run with an empty ``keys`` list (maintenance lock taken, engine stopped
and started again, nothing remade: result ``{}``); its chroot is still Active afterwards.
"""

# pylint: disable=redefined-outer-name  # pytest passes each fixture as the parameter of its name

import json
import subprocess
import time

import pytest
import requests

from mini_buildd.archive import change_snapshots
from mini_buildd.api import registry
from mini_buildd.api import calls  # noqa: F401  pylint: disable=unused-import
from mini_buildd.api.client import ApiProblem, Client
from tests.helpers.instance import ADMIN_PASSWORD, wait_engine_running
from tests.helpers.packages import make_source_package, write_dput_cf, dput, wait_event, wait_for, now_iso

USER_PASSWORD = "e2e-User-pw"
SRC = "mbd-e2e-api"
VERSION = "1.0~test12+1"
UNSTABLE, TESTING, EXPERIMENTAL = "bookworm-test-unstable", "bookworm-test-testing", "bookworm-test-experimental"
FINAL = ("INSTALLED", "FAILED", "REJECTED")

#: Calls that answered over HTTP in this module: name -> set of HTTP statuses.
ANSWERED = {}
#: Calls for which a 4xx answer is all this module can check (see the module doc): they need a
#: Remote, which this instance has not (their success paths: test_remotes).
ONLY_ERRORS = {"wake", "handshake"}


# ------------------------------------------------------------------------------------------------ helpers
class Api:
    """Runs calls as anonymous, a plain user, staff or admin through the real HTTP client."""

    def __init__(self, instance):
        self.instance = instance
        self.clients = {}

    def client(self, user):
        """A logged-in API client of ``user`` (None: anonymous), made once."""
        if user not in self.clients:
            c = Client(self.instance.url)
            if user is not None:
                assert c.login(ADMIN_PASSWORD if user == "admin" else USER_PASSWORD, user=user), f"login as {user} failed"
            self.clients[user] = c
        return self.clients[user]

    @staticmethod
    def query(name, args):
        call = registry.get(name)
        return {k: call.arg(k).to_query(v) for k, v in args.items()}

    def __call__(self, name, /, user="admin", confirm=True, **args):
        """Result of a successful call (fails the test on a problem)."""
        try:
            result = self.client(user).call(name, self.query(name, args), confirm=confirm)
        except ApiProblem as e:
            ANSWERED.setdefault(name, set()).add(e.problem.status)
            raise AssertionError(f"API call {name} {args} as {user}: {e}") from e
        ANSWERED.setdefault(name, set()).add(200)
        return result

    def problem(self, name, /, user="admin", confirm=True, **args):
        """The problem of a call that must fail."""
        try:
            result = self.client(user).call(name, self.query(name, args), confirm=confirm)
        except ApiProblem as e:
            ANSWERED.setdefault(name, set()).add(e.problem.status)
            assert e.problem.detail, e.problem
            return e.problem
        raise AssertionError(f"API call {name} {args} as {user} succeeded: {result}")


@pytest.fixture(scope="module")
def api(instance):
    """The API caller of the module: users api-user and api-staff made, the engine running."""
    instance.django(
        "from django.contrib.auth.models import User\n"
        "for name, staff in (('api-user', False), ('api-staff', True)):\n"
        "    u, _ = User.objects.get_or_create(username=name)\n"
        "    u.is_staff = staff\n"
        f"    u.set_password({USER_PASSWORD!r})\n"
        "    u.save()\n")
    wait_engine_running(instance)
    return Api(instance)


def upload(instance, tmp_path, name, version, dist=UNSTABLE, **kwargs):
    """Upload a new source package to ``dist`` by FTP; return its changes path."""
    changes = make_source_package(tmp_path, name, version, dist, **kwargs)
    cf = write_dput_cf(tmp_path / "dput.cf", "e2e", f"127.0.0.1:{instance.ftp_port}")
    proc = dput(cf, "e2e", changes)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return changes


def installed(instance, source, version, after, dist=None):
    """Wait for the final event of an upload; it must be INSTALLED (to ``dist``)."""
    event = wait_event(instance.url, FINAL, source, version, after=after)
    assert event["type"] == "INSTALLED", (event["type"], event["extra"].get("error"))
    if dist:
        assert event["distribution"] == dist
    return event


@pytest.fixture(scope="module")
def package(instance, tmp_path_factory):
    """SRC VERSION built and installed in unstable by this module."""
    started = now_iso()
    upload(instance, tmp_path_factory.mktemp("api-pkg"), SRC, VERSION)
    installed(instance, SRC, VERSION, started, UNSTABLE)
    return SRC


def gpgv_verify(tmp_path, armored_key, signed_text):
    keyring = tmp_path / "key.gpg"
    subprocess.run(["gpg", "--batch", "--yes", "--dearmor", "-o", str(keyring)], input=armored_key.encode(), check=True)
    return subprocess.run(["gpgv", "--keyring", str(keyring)], input=signed_text.encode(), capture_output=True, check=False)


# ------------------------------------------------------------------------------------------------ coverage
def test_every_registered_call_has_a_test():
    tested = {name[len("test_call_"):] for name in globals() if name.startswith("test_call_")}
    assert set(registry.CALLS) - tested == set(), "API calls without a test here"
    assert tested - set(registry.CALLS) == set(), "tests for calls that are not registered"


# ------------------------------------------------------------------------------------------------ Consumer
def test_call_status(instance, api):
    status = api("status", user=None, with_repositories=True)
    assert status["url"] == instance.url
    assert status["incoming_url"] == f"ftp://127.0.0.1:{instance.ftp_port}"
    assert status["load"] >= 0
    assert "bookworm:amd64" in status["chroots"]
    assert status["repositories"]["test"]["codenames"] == ["bookworm"]
    layout = status["repositories"]["test"]["layout"]
    assert layout["unstable"] == {"uploadable": True, "experimental": False, "migrates_to": "testing"}
    assert layout["experimental"]["experimental"] is True
    assert "repositories" not in api("status", user=None)


def test_call_pub_key(instance, api, tmp_path):
    key = api("pub_key", user=None)
    assert key.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----"), key
    in_release = requests.get(f"{instance.url}/repositories/test/dists/{UNSTABLE}/InRelease", timeout=10).text
    proc = gpgv_verify(tmp_path, key, in_release)
    assert proc.returncode == 0, proc.stderr.decode()


def test_call_dput_conf(instance, api):
    identity = api("status", user=None)["identity"]
    conf = api("dput_conf", user=None)
    assert "default_host_main = _please_specify_target_explicitly_" in conf
    section = conf[conf.index(f"[mini-buildd-{identity}]"):]
    values = dict(line.split("=", 1) for line in section.splitlines()[1:5])
    assert {k.strip(): v.strip() for k, v in values.items()} == {
        "method": "ftp", "fqdn": f"127.0.0.1:{instance.ftp_port}", "login": "anonymous", "incoming": "/incoming"}
    assert "[DEFAULT]" not in api("dput_conf", user=None, without_global=True)
    profile = json.loads(api("dput_conf", user=None, dput_ng_profile=True))
    assert profile["fqdn"] == f"127.0.0.1:{instance.ftp_port}" and profile["method"] == "ftp"


def test_call_sources_list(instance, api):
    base = f"{instance.url}/repositories/test"
    text = api("sources_list", user=None, codenames=["bookworm"], repositories=["test"], suites=["unstable"],
               types=["deb", "deb-src"], options="arch=amd64", rollbacks=1, with_comment=True)
    lines = text.splitlines()
    assert len(lines) == 6, text
    assert lines[0].startswith("# ") and f"'{UNSTABLE}'" in lines[0]
    assert lines[1].startswith(f"deb [arch=amd64] {base} {UNSTABLE} main")
    assert lines[2].startswith(f"deb-src [arch=amd64] {base} {UNSTABLE} main")
    assert lines[4].startswith(f"deb [arch=amd64] {base} {UNSTABLE}-rollback0 main")
    # Defaults: every codename, repository and suite. Other e2e modules add repositories (e.g.
    # 'auth') to the shared instance: check the 'test' lines, and that each line is a plain 'deb'.
    everything = api("sources_list", user=None).splitlines()
    ours = [line for line in everything if line.startswith(f"deb [] {base} ")]
    assert len(ours) == 6 and all(line.startswith(f"deb [] {base} bookworm-test-") for line in ours), everything
    assert all(line.startswith(f"deb [] {instance.url}/repositories/") for line in everything), everything
    problem = api.problem("sources_list", user=None, codenames=["sid"])
    assert problem.status == 400 and "sid" in problem.detail


def test_call_ls(api, package):
    listing = api("ls", user=None, source=package)
    entry = listing["test"][UNSTABLE]
    assert (entry["version"], entry["component"]) == (VERSION, "main")
    assert api("ls", user=None, source=package, version="0.1") == {}
    assert api("ls", user=None, source=package, min_version="9.0") == {}
    assert api("ls", user=None, source="mbd-no-such-package") == {}


def test_call_show(instance, api, package):
    entry = api("show", user=None, source=package, codenames=["bookworm"])["test"][UNSTABLE]
    assert entry["version"] == VERSION
    assert entry["dsc_path"].endswith(f"/{SRC}_{VERSION}.dsc")
    r = requests.get(f"{instance.url}/repositories/{entry['dsc_path']}", timeout=10)
    assert r.status_code == 200 and f"Source: {SRC}" in r.text
    assert entry["event_path"].endswith("_INSTALLED.json") and (instance.home / "var" / "events" / entry["event_path"]).is_file()
    assert entry["uploadable"] is True and entry["migrates_to"] == TESTING and entry["is_migrated"] is False


def test_call_search(api, package):
    found = api("search", user=None, pattern="E2E-API")[package]
    assert any(p.endswith(f"{SRC}_{VERSION}.dsc") for p in found["repositories"]), found
    assert any(p.endswith(f"{SRC}_{VERSION}_all.deb") for p in found["repositories"]), found
    assert api("search", user=None, pattern="no-such-package-anywhere") == {}


# ------------------------------------------------------------------------------------------------ Developer
def test_call_port(instance, api, package):
    """Internal port in the same distribution = a rebuild; it is installed as the newer version."""
    after = now_iso()
    assert api.problem("port", user="api-user", source=package, from_distribution=UNSTABLE, to_distributions=[UNSTABLE]).status == 403
    result = api("port", user="api-staff", source=package, from_distribution=UNSTABLE, to_distributions=[UNSTABLE])
    assert len(result) == 1 and result[0]["source"] == package and result[0]["distribution"] == UNSTABLE, result
    assert result[0]["version"].startswith(f"{VERSION}+rebuilt"), result
    installed(instance, package, result[0]["version"], after, UNSTABLE)
    entry = api("ls", user=None, source=package)["test"][UNSTABLE]
    assert entry["version"] == result[0]["version"]
    assert entry["rollbacks"][f"{UNSTABLE}-rollback0"]["version"] == VERSION


def test_call_debdiff(api, package):
    rebuilt = api("ls", user=None, source=package)["test"][UNSTABLE]["version"]
    diff = api("debdiff", user=None, source=package, repository="test")
    assert rebuilt in diff and VERSION in diff, diff
    same = api("debdiff", user=None, source=package, repository="test", versiona=VERSION, versionb=VERSION)
    assert rebuilt not in same
    problem = api.problem("debdiff", user=None, source=package, repository="test", versiona="0.0.1")
    assert problem.status == 400 and "0.0.1" in problem.detail


def test_call_port_ext(instance, api, package):
    dsc_path = api("show", user=None, source=package)["test"][UNSTABLE]["rollbacks"][f"{UNSTABLE}-rollback0"]["dsc_path"]
    after = now_iso()
    result = api("port_ext", user="api-staff", dsc=f"{instance.url}/repositories/{dsc_path}", distributions=[EXPERIMENTAL],
                 allow_unauthenticated=True)
    assert len(result) == 1 and result[0]["distribution"] == EXPERIMENTAL and result[0]["source"] == package, result
    installed(instance, package, result[0]["version"], after, EXPERIMENTAL)
    assert api("ls", user=None, source=package)["test"][EXPERIMENTAL]["version"] == result[0]["version"]
    problem = api.problem("port_ext", user="api-staff", dsc="not a url", distributions=[EXPERIMENTAL])
    assert problem.status == 400


def test_call_migrate(api, package):
    version = api("ls", user=None, source=package)["test"][UNSTABLE]["version"]
    assert api.problem("migrate", user="api-staff", confirm=False, source=package, distribution=UNSTABLE).status == 400
    assert api.problem("migrate", user="api-user", source=package, distribution=UNSTABLE).status == 403
    assert api("migrate", user="api-staff", source=package, distribution=UNSTABLE) == {}
    listing = api("ls", user=None, source=package)["test"]
    assert listing[TESTING]["version"] == version
    problem = api.problem("migrate", user="api-staff", source=package, distribution=UNSTABLE)
    assert problem.status == 400 and "already" in problem.detail


def test_call_remove(api, package):
    version = api("ls", user=None, source=package)["test"][TESTING]["version"]
    assert api.problem("remove", user="api-staff", source=package, distribution=TESTING).status == 403
    assert api("remove", source=package, distribution=TESTING) == {}
    listing = api("ls", user=None, source=package)["test"]
    assert TESTING not in listing
    assert api("ls", user=None, source=package, codenames=["bookworm"])["test"][UNSTABLE]["version"] == version


def _slow_package(tmp_path, name, version):
    """A package whose build sleeps (so it can be canceled while BUILDING), then fails."""
    changes = make_source_package(tmp_path, name, version, UNSTABLE, fail=True)
    tree = tmp_path / f"{name}-{version.split('~')[0]}"
    rules = tree / "debian" / "rules"
    rules.write_text(rules.read_text().replace("false", "sleep 900; false"))
    subprocess.run(["dpkg-buildpackage", "-S", "-d", "-us", "-uc", "-nc"], cwd=tree, check=True, capture_output=True)
    return changes


def _cancel_when_building(instance, api, source, version, after):
    building = wait_for(instance.url, lambda e: e["type"] == "BUILDING" and e["source"] == source and e["version"] == version,
                        timeout=600, after=after)
    bkey = building["extra"]["bkey"]
    assert api("cancel", user="api-staff", bkey=bkey) == bkey
    failed = wait_event(instance.url, FINAL, source, version, after=after, timeout=300)
    assert failed["type"] == "FAILED", failed
    return failed


def test_call_cancel(instance, api, tmp_path):
    assert api.problem("cancel", user="api-staff", bkey="mbd-no-such/1.0/20000101000000/amd64").status == 400
    started = now_iso()
    _slow_package(tmp_path, f"{SRC}-slow", VERSION)
    cf = write_dput_cf(tmp_path / "dput.cf", "e2e", f"127.0.0.1:{instance.ftp_port}")
    proc = dput(cf, "e2e", tmp_path / f"{SRC}-slow_{VERSION}_source.changes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    t0 = time.monotonic()
    failed = _cancel_when_building(instance, api, f"{SRC}-slow", VERSION, started)
    assert time.monotonic() - t0 < 600
    test_call_cancel.failed_bkey = failed["extra"]["bkey"]


def test_call_retry(instance, api):
    bkey = getattr(test_call_cancel, "failed_bkey", None)
    assert bkey, "needs test_call_cancel"
    assert api.problem("retry", user="api-staff", bkey="mbd-no-such/1.0/20000101000000/source").status == 400
    started = now_iso()
    changes = api("retry", user="api-staff", bkey=bkey)
    assert changes == f"{SRC}-slow_{VERSION}_source.changes"
    _cancel_when_building(instance, api, f"{SRC}-slow", VERSION, started)


def test_call_set_user_key(instance, api):
    assert api.problem("set_user_key", user=None, key="0123456789ABCDEF").status == 401
    assert api.problem("set_user_key", user="api-user", confirm=False, key="0123456789ABCDEF").status == 400
    pub_key = api("pub_key", user=None)
    assert api("set_user_key", user="api-user", key=pub_key) == {}
    out = instance.django("u = models.Uploader.objects.get(user__username='api-user')\n"
                          "print(repr(u.key_id), u.key.startswith('-----BEGIN PGP PUBLIC KEY BLOCK-----'), u.key_long_id, u.mbd_is_active())\n")
    key_long_id = out.split()[2]
    assert out.split() == ["''", "True", key_long_id, "False"], out  # needs (re)activation by staff
    assert len(key_long_id) == 16, out
    # a key id is fetched from a keyserver: this one exists nowhere (and tests have no network)
    problem = api.problem("set_user_key", user="api-user", key="0123456789ABCDEF")
    assert problem.status == 400 and "0123456789ABCDEF" in problem.detail, problem
    assert api.problem("set_user_key", user="api-user", key="not-a-key-id").status == 400


def test_call_subscribe(api, package):
    assert api.problem("subscribe", user=None, source=package, distribution="").status == 401
    assert api("subscribe", user="api-user", source=package, distribution="") == {"created": True, "source": package, "distribution": ""}
    assert api("subscribe", user="api-user", source=package, distribution="")["created"] is False
    assert api("subscribe", user="api-user", source="", distribution=UNSTABLE)["created"] is True


def test_call_unsubscribe(api, package):
    assert api("unsubscribe", user="api-user", source=package, distribution="") == [{"source": package, "distribution": ""}]
    assert api("unsubscribe", user="api-user", source=package, distribution="") == []
    assert api("unsubscribe", user="api-user", source="", distribution=UNSTABLE) == [{"source": "", "distribution": UNSTABLE}]


def _token_client(api, secret):
    client = Client(api.instance.url)
    client.use_token(secret)
    return client


def test_call_token_create(api):  # (API tokens: ours, issue #17; more in integration/test_tokens.py)
    assert api.problem("token_create", user=None, scope="read").status == 401
    assert api.problem("token_create", user="api-user", scope="staff").status == 403
    made = api("token_create", user="api-staff", scope="staff", name="e2e", repositories=["test"], expires="1d")
    assert made["token"].startswith("mbdt_") and made["repositories"] == ["test"] and made["state"] == "active", made
    client = _token_client(api, made["token"])
    assert "version" in client.call("status")
    with pytest.raises(ApiProblem) as refused:
        client.call("stop", confirm=True)  # above the scope
    assert refused.value.problem.status == 403


def test_call_token_list(api):
    made = api("token_create", user="api-user", scope="read", name="e2e-list")
    listed = api("token_list", user="api-user")
    assert made["id"] in [t["id"] for t in listed] and made["token"] not in json.dumps(listed)
    assert made["id"] not in [t["id"] for t in api("token_list", user="api-staff")]


def test_call_token_revoke(api):
    made = api("token_create", user="api-user", scope="upload-check")
    assert _token_client(api, made["token"]).call("token_list")
    assert api("token_revoke", user="api-user", token=str(made["id"]))["state"] == "revoked"
    with pytest.raises(ApiProblem) as refused:
        _token_client(api, made["token"]).call("status")
    assert refused.value.problem.status == 401 and "revoked" in refused.value.problem.detail
    assert api.problem("token_revoke", user="api-staff", token=str(made["id"])).status == 404


#: A receiver host that never resolves (RFC 2606): accepted at creation, never delivered to.
HOOK = "http://mbd-receiver.invalid:9"


def test_call_webhook_create(api):  # (signed webhooks: ours, issue #17; deliveries in integration/test_webhooks.py)
    assert api.problem("webhook_create", user=None, url=f"{HOOK}/hook").status == 401
    assert api.problem("webhook_create", user="api-user", url="file:///etc/passwd").status == 400
    assert api.problem("webhook_create", user="api-user", url=f"{HOOK}/hook", repository="test").status == 403
    internal = api.problem("webhook_create", user="api-staff", url="http://127.0.0.1:9/hook")  # the daemon's host itself
    assert internal.status == 400 and "internal address" in internal.detail, internal
    made = api("webhook_create", user="api-staff", url=f"{HOOK}/hook", types=["INSTALLED", "FAILED"], repository="test")
    assert made["secret"] and made["repository"] == "test" and sorted(made["types"]) == ["FAILED", "INSTALLED"], made
    api("webhook_delete", user="api-staff", webhook_id=made["id"])  # no deliveries to a dead port for the later tests


def test_call_webhook_list(api):
    made = api("webhook_create", user="api-user", url=f"{HOOK}/list")
    listed = api("webhook_list", user="api-user")
    assert made["id"] in [h["id"] for h in listed] and made["secret"] not in json.dumps(listed)
    assert made["id"] not in [h["id"] for h in api("webhook_list", user="api-staff")]


def test_call_webhook_delete(api):
    made = api("webhook_create", user="api-user", url=f"{HOOK}/delete")
    assert api.problem("webhook_delete", user="api-user", confirm=False, webhook_id=made["id"]).status == 400
    assert api.problem("webhook_delete", user="api-staff", webhook_id=made["id"]).status == 404
    assert api("webhook_delete", user="api-user", webhook_id=made["id"])["id"] == made["id"]
    assert made["id"] not in [h["id"] for h in api("webhook_list", user="api-user")]


# ------------------------------------------------------------------------------------------------ Administrator
def test_call_wake(api):
    problem = api.problem("wake", user="api-staff", remote="http://no-such-remote.invalid:8066")
    assert 400 <= problem.status < 500 and "no-such-remote" in problem.detail, problem
    assert api.problem("wake", user="api-user", remote="http://no-such-remote.invalid:8066").status == 403


def test_call_handshake(api):
    problem = api.problem("handshake", user=None, signed_message="not signed at all")
    assert problem.status == 400, problem


def test_call_cronjob(api):
    result = api("cronjob", id="expire_builds")
    assert len(result) == 1 and next(iter(result)).startswith("expire_builds") and next(iter(result.values())) is True, result
    problem = api.problem("cronjob", id="no_such_job")
    assert problem.status == 400 and "no_such_job" in problem.detail
    assert api.problem("cronjob", user="api-staff", id="expire_builds").status == 403


def test_call_uploaders(api):
    result = api("uploaders", repositories=["test"])
    assert list(result) == ["test"]
    assert result["test"]["allow_unauthenticated_uploads"] is True
    assert all("api-user" != u["user"] for u in result["test"]["uploaders"])  # its key is not activated
    assert api.problem("uploaders", user="api-staff").status == 403


@pytest.mark.usefixtures("package")
def test_call_snapshot_create(instance, api):
    assert api("snapshot_create", distribution=UNSTABLE, name="api-e2e") == {}
    r = requests.get(f"{instance.url}/repositories/test/dists/{UNSTABLE}/snapshots/api-e2e/InRelease", timeout=10)
    assert r.status_code == 200, r.status_code
    lines = api("sources_list", user=None, codenames=["bookworm"], repositories=["test"], suites=["unstable"],
                snapshot="api-e2e").splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"deb [] {instance.url}/repositories/test {UNSTABLE}/snapshots/api-e2e main"), lines
    assert api.problem("snapshot_create", user="api-staff", distribution=UNSTABLE, name="x").status == 403


def test_call_snapshot_ls(api):
    assert "api-e2e" in api("snapshot_ls", user=None, distribution=UNSTABLE)
    # (the migration above made a change snapshot of testing, named by its time; no named snapshot there)
    assert [n for n in api("snapshot_ls", user=None, distribution=TESTING) if not change_snapshots.stamp(n)] == []
    assert api.problem("snapshot_ls", user=None, distribution="bookworm-nosuch-unstable").status == 400


def test_call_snapshot_diff(api):
    """(Issue #16) The named snapshot against the live distribution: anonymous; names checked."""
    diff = api("snapshot_diff", user=None, distribution=UNSTABLE, a="api-e2e")
    assert diff["a"] == "api-e2e" and diff["b"] == "live" and set(diff["sources"]) == {"added", "removed", "changed"}, diff
    assert api("snapshot_diff", user=None, distribution=UNSTABLE, a="api-e2e", b="api-e2e")["sources"] == {
        "added": {}, "removed": {}, "changed": {}}
    assert api.problem("snapshot_diff", user=None, distribution=UNSTABLE, a="no-such-snapshot").status == 404
    assert api.problem("snapshot_diff", user=None, distribution=UNSTABLE, a="../../../etc").status == 404


def test_call_snapshot_delete(instance, api):
    assert api("snapshot_delete", distribution=UNSTABLE, name="api-e2e") == {}
    assert "api-e2e" not in api("snapshot_ls", user=None, distribution=UNSTABLE)
    r = requests.get(f"{instance.url}/repositories/test/dists/{UNSTABLE}/snapshots/api-e2e/InRelease", timeout=10)
    assert r.status_code == 404


def test_call_debmirror(instance, api, package):
    dest = instance.home.parent / "mirror"  # written by the daemon: a dir its user may write
    dest.mkdir()
    instance.own(dest)
    assert api("debmirror", suites=["unstable"], repositories=["test"], codenames=["bookworm"], architectures=["amd64"],
               components=["main"], destination=str(dest) + "/{}") == {}
    release = (dest / "test" / "dists" / UNSTABLE / "Release").read_text()
    assert f"Codename: {UNSTABLE}" in release
    assert list((dest / "test" / "pool").rglob(f"{package}_*_all.deb")), sorted(dest.rglob("*"))
    assert not (dest / "test" / "dists" / TESTING).exists()


def test_call_keyring_packages(api):
    identity = api("status", user=None)["identity"]
    result = api("keyring_packages", distributions=[UNSTABLE], without_migration=True)
    assert len(result) == 1 and result[0]["event"]["type"] == "INSTALLED" and "error" not in result[0], result
    listing = api("ls", user=None, source=f"{identity}-archive-keyring")["test"]
    assert listing[UNSTABLE]["version"] == result[0]["version"]
    assert TESTING not in listing  # without_migration


def test_call_test_packages(api):
    result = api("test_packages", sources=["mbd-test-archall"], distributions=[EXPERIMENTAL], with_check=True)
    assert [(r["source"], r["distribution"], r["event"]["type"]) for r in result] == [("mbd-test-archall", EXPERIMENTAL, "INSTALLED")]
    problem = api.problem("test_packages", sources=["mbd-test-nosuch"])
    assert problem.status == 400


def test_call_stop(api):
    assert api.problem("stop", user="api-staff").status == 403
    assert api("stop") == {}
    assert api("status", user=None)["load"] == -1
    problem = api.problem("uploaders")
    assert problem.status == 503, problem


def test_call_start(api):
    assert api("start") == {}
    assert api("status", user=None)["load"] >= 0
    assert api("uploaders", repositories=["test"])["test"]["allow_unauthenticated_uploads"] is True


def test_call_reindex(instance, api, tmp_path):
    assert api.problem("reindex", confirm=False).status == 400
    assert api("reindex", repositories=["test"]) == {}
    in_release = requests.get(f"{instance.url}/repositories/test/dists/{UNSTABLE}/InRelease", timeout=10).text
    assert gpgv_verify(tmp_path, api("pub_key", user=None), in_release).returncode == 0
    assert api("status", user=None)["load"] >= 0  # engine running again after the maintenance call


def test_call_remake_chroots(api):
    assert api.problem("remake_chroots", user="api-staff").status == 403
    assert api.problem("remake_chroots", confirm=False).status == 400
    assert api.problem("remake_chroots", keys=["bookworm:i386"]).status == 400
    assert api("remake_chroots", keys=[]) == {}
    status = api("status", user=None)
    assert "bookworm:amd64" in status["chroots"] and status["load"] >= 0


def test_call_setup(instance, api):
    """Inspection (no update, no pca) with the bootstrap's own options: everything is there, nothing changes."""
    assert api.problem("setup", confirm=False).status == 400
    result = api("setup", archives_from_apt_sources=True, ftp_endpoint=instance.ftp_endpoint, sources=["bookworm"],
                 distributions=["bookworm:amd64"], repositories=["test:Default:bookworm"], chroots=["bookworm:amd64"])
    statuses = {i["identity_str"]: i for i in result["instances"]}
    assert all(i["status"] in ("ACTIVE", "EXISTS") for i in result["instances"]), \
        [(i["identity_str"], i["status"], i["diff"]) for i in result["instances"] if i["status"] not in ("ACTIVE", "EXISTS")]
    assert statuses["Repository(identity=test)"]["status"] == "ACTIVE", statuses["Repository(identity=test)"]
    assert statuses["DirChroot(codename=bookworm, architecture=amd64)"]["status"] == "ACTIVE"
    assert all(not i["actions"] for i in result["instances"]), "inspection must not change anything"
    assert api("status", user=None)["load"] >= 0


def test_zz_every_call_ran_over_http():
    missing = {name for name in registry.CALLS
               if not (200 in ANSWERED.get(name, ()) or (name in ONLY_ERRORS and any(400 <= s < 500 for s in ANSWERED.get(name, ()))))}
    assert not missing, f"calls that did not run over HTTP here: {sorted(missing)} (answered: {ANSWERED})"
