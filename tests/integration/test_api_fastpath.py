"""The API fast path in the real daemon: an instance WITHOUT chroots (setup with the host's apt
archive, bookworm, repository ``test``), one source put in with the real reprepro. ``status`` and
``ls`` answered by the fast path are identical to Django's answers; a bad argument is Django's 400;
``ls`` is never stale after MIGRATED/REMOVED (API calls) nor after a reprepro change made by another
process; ``status`` follows the engine's stop/start at once."""

import json
import re
import time

import pytest
import requests

from mini_buildd import config
from mini_buildd.api.client import Client
from tests.helpers.daemon import Daemon, free_port, in_home, run_mbd
from tests.helpers.packages import make_source_package
from tests.helpers.setup_run import run_setup, WITHOUT_CHROOTS

#: The acceptance setup without its chroot (never create the shared chroot name here).
SETUP = WITHOUT_CHROOTS
UNSTABLE, TESTING = "bookworm-test-unstable", "bookworm-test-testing"
SOURCE = "mbd-fastpath"
PASSWORD = "fastpath-Secret-1"
SESSION = "mini_buildd_sessionid"
#: Results computed within this long after a reprepro change are not kept (fastpath.RACY_NS).
RACY = 1.1


def include(home, dsc):
    in_home(home, "from mini_buildd.tools import reprepro\n"
                  "repo = models.Repository.objects.get(identity='test')\n"
                  f"reprepro.Reprepro(repo.mbd_path()).includedsc({UNSTABLE!r}, {str(dsc)!r})\n")


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    """An instance with its daemon running (set up); stopped after."""
    base = tmp_path_factory.mktemp("fastpath")
    home = base / "home"
    http_port, ftp_port = free_port(), free_port()
    http_ep, ftp_ep = f"tcp:interface=127.0.0.1:port={http_port}", f"tcp:interface=127.0.0.1:port={ftp_port}"
    run_setup(home, *SETUP, "--ftp-endpoint", ftp_ep, http_endpoint=http_ep, timeout=600)
    assert run_mbd(home, "--set-admin-password", PASSWORD).returncode == 0
    dscs = {}
    for version in ("1.0", "1.1"):
        changes = make_source_package(base / f"pkg-{version}", SOURCE, version, UNSTABLE)
        dscs[version] = next(changes.parent.glob(f"{SOURCE}_*.dsc"))  # pylint: disable=stop-iteration-return  # a test failure either way
    include(home, dscs["1.0"])
    # Cache hits are logged at DEBUG (anonymous calls are requests: the access log has them, issue #17).
    daemon = Daemon(home, port=http_port, endpoints=[http_ep], extra_args=["--log-level", "mini_buildd.api.fastpath.DEBUG"]).start()
    daemon.dscs = dscs
    yield daemon
    assert daemon.stop() == 0


def cached_hits(daemon, call):
    log = config.Paths(daemon.home).daemon_log.read_text(encoding="utf-8")
    return len(re.findall(rf"API call '{call}' by anonymous from 127\.0\.0\.1: .* \(cached\)$", log, re.MULTILINE))


def fetch(daemon, query, django=False):
    cookies = {SESSION: "no-such-session"} if django else None
    r = requests.get(f"{daemon.url}/mini_buildd/api/{query}", cookies=cookies, timeout=60)
    headers = {k.lower(): v for k, v in r.headers.items() if k.lower() not in ("date", "set-cookie")}
    return r.status_code, headers, r.content


def ls(daemon):
    r = requests.get(f"{daemon.url}/mini_buildd/api/ls/", params={"source": SOURCE}, timeout=60)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json", r.content
    return r.json().get("test", {})


@pytest.fixture(scope="module")
def admin(instance):  # pylint: disable=redefined-outer-name
    client = Client(instance.url, user="admin")
    assert client.login(PASSWORD)
    return client


@pytest.mark.parametrize("query", ["status/", "status/?with_repositories=True", f"ls/?source={SOURCE}",
                                   f"ls/?source={SOURCE}&codenames=bookworm&output=json"])
def test_fast_path_answers_like_django(instance, query):  # pylint: disable=redefined-outer-name
    time.sleep(RACY)  # the reprepro state of the fixture (or an earlier test) is old enough to be kept
    call = query.split("/")[0]
    hits = cached_hits(instance, call)
    first, second = fetch(instance, query), fetch(instance, query)
    expected = fetch(instance, query, django=True)
    assert expected[0] == 200 and expected[1]["content-type"] == "application/json"
    assert first == second == expected
    assert cached_hits(instance, call) >= hits + 1


@pytest.mark.parametrize("query", ["status/?bad=1", "ls/?source=x&repositories=nosuch", "ls/"])
def test_bad_arguments_are_djangos_problems(instance, query):  # pylint: disable=redefined-outer-name
    fast, django = fetch(instance, query), fetch(instance, query, django=True)
    assert fast == django and fast[0] == 400 and fast[1]["content-type"] == "application/problem+json"
    assert set(json.loads(fast[2])) == {"type", "status", "title", "detail", "instance"}


def test_ls_is_never_stale(instance, admin):  # pylint: disable=redefined-outer-name
    time.sleep(RACY)
    assert set(ls(instance)) == {UNSTABLE} and set(ls(instance)) == {UNSTABLE}
    hits = cached_hits(instance, "ls")
    # MIGRATED (API call in the daemon): the very next ls sees it.
    admin.call("migrate", {"source": SOURCE, "distribution": UNSTABLE}, confirm=True)
    assert set(ls(instance)) == {UNSTABLE, TESTING}
    time.sleep(RACY)
    assert set(ls(instance)) == {UNSTABLE, TESTING} and set(ls(instance)) == {UNSTABLE, TESTING}
    # REMOVED.
    admin.call("remove", {"source": SOURCE, "distribution": TESTING, "without_rollback": "True"}, confirm=True)
    assert set(ls(instance)) == {UNSTABLE}
    time.sleep(RACY)
    assert ls(instance)[UNSTABLE]["version"] == "1.0" and ls(instance)[UNSTABLE]["version"] == "1.0"
    # A change by another process (reprepro directly): seen at once too.
    include(instance.home, instance.dscs["1.1"])
    assert ls(instance)[UNSTABLE]["version"] == "1.1"
    assert cached_hits(instance, "ls") >= hits + 2  # the repeated calls after the pauses were served from the cache


def test_status_follows_engine_stop_and_start(instance, admin):  # pylint: disable=redefined-outer-name
    def load():
        r = requests.get(f"{instance.url}/mini_buildd/api/status/", timeout=60)
        assert r.status_code == 200
        return r.json()["load"]

    admin.call("start", confirm=True)
    assert load() >= 0 and load() >= 0
    hits = cached_hits(instance, "status")
    admin.call("stop", confirm=True)
    assert load() == -1.0 and load() == -1.0
    admin.call("start", confirm=True)
    assert load() >= 0 and load() >= 0
    assert cached_hits(instance, "status") >= hits + 2
