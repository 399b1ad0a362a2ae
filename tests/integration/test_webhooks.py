"""Signed webhooks (issue #17) against the real daemon of an instance without chroots on
127.0.0.34; events come from unsigned FTP uploads (REJECTED); receivers are ``http.server``
threads on the same address (:mod:`tests.helpers.webhook_receiver`). Retry settings are small
(``MINI_BUILDD_WEBHOOK_*``: 3 attempts, 1 s then 2 s).

- a user creates a webhook on the profile page (the secret is shown once): each upload's event
  arrives signed with that secret (HMAC-SHA256 of the raw body), with a unique delivery id, and the
  profile page and ``webhook_list`` show the delivery log;
- type filter; repository webhooks (staff only) get only their repository's events; non-http(s)
  URLs are refused;
- a receiver answering 500 twice then 200 gets 3 attempts of one delivery with growing gaps; the
  log says delivered after 3 attempts, with the error before;
- a receiver holding its answer does not delay another webhook (it gets the next events while
  the first is still held) nor the event log;
- a dead receiver (closed port) ends as failed after the attempts;
- a delivery pending when the daemon stops is sent after its restart.
"""

import re
import time

import pytest

from mini_buildd import config, webhooks
from tests.helpers.daemon import Daemon, free_port, in_home, run_mbd, service_addresses
from tests.helpers.packages import make_source_package, now_iso, raw_ftp_upload, wait_for
from tests.helpers.setup_run import run_setup, WITHOUT_CHROOTS
from tests.helpers.uploads import files_of
from tests.helpers.webhook_receiver import HOST, Receiver, dead_url

# pytest fixtures are arguments of the tests that use them.
# pylint: disable=redefined-outer-name

#: The acceptance setup without its chroot.
SETUP = WITHOUT_CHROOTS
UNSTABLE = "bookworm-test-unstable"
SOURCE = "mbd-webhook"
ADMIN_PASSWORD, DEV_PASSWORD = "webhook-Admin-1", "webhook-Dev-1"
ENV = {"MINI_BUILDD_WEBHOOK_ATTEMPTS": "3", "MINI_BUILDD_WEBHOOK_DELAY": "1", "MINI_BUILDD_WEBHOOK_FACTOR": "2",
       "MINI_BUILDD_WEBHOOK_TIMEOUT": "20", "MINI_BUILDD_WEBHOOK_ALLOW_NETS": "127.0.0.34/32"}


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    """A set-up instance (no chroots) with its daemon running on 127.0.0.34; user ``dev`` (not staff)."""
    base = tmp_path_factory.mktemp("webhooks")
    home = base / "home"
    http_port, ftp_port = free_port(HOST), free_port(HOST)
    http_ep, ftp_ep, _url, _ftp = service_addresses(HOST, http_port, ftp_port)
    run_setup(home, *SETUP, "--ftp-endpoint", ftp_ep, http_endpoint=http_ep, hostname=HOST, timeout=600)
    (base / "admin-password").write_text(ADMIN_PASSWORD + "\n")
    proc = run_mbd(home, "--set-admin-password-file", str(base / "admin-password"))
    assert proc.returncode == 0, proc.stderr
    in_home(home, f"from django.contrib.auth.models import User\nUser.objects.create_user('dev', password={DEV_PASSWORD!r})\n",
            hostname=HOST)
    daemon = Daemon(home, host=HOST, port=http_port, endpoints=[http_ep])
    daemon.ftp_port = ftp_port
    daemon.base = base
    daemon.uploads = 0
    with pytest.MonkeyPatch.context() as mp:
        for name, value in ENV.items():
            mp.setenv(name, value)
        daemon.start()
        yield daemon
        assert daemon.stop() == 0


@pytest.fixture(scope="module")
def admin(instance):
    return instance.session("admin", ADMIN_PASSWORD)


@pytest.fixture(scope="module")
def dev(instance):
    return instance.session("dev", DEV_PASSWORD)


def api(instance, session, name, status=200, **params):
    r = session.get(f"{instance.url}/mini_buildd/api/{name}/", params={"output": "json", **params}, timeout=60)
    assert r.status_code == status, r.text
    return r.json()


@pytest.fixture
def hooks(instance, admin):
    """Webhook ids created by the test (deleted after it)."""
    created = []
    yield created
    for hook_id in created:
        api(instance, admin, "webhook_delete", webhook_id=hook_id, confirm="webhook_delete")


def create(instance, session, hooks, url, **params):
    result = api(instance, session, "webhook_create", url=url, **params)
    hooks.append(result["id"])
    return result


def upload(instance, distribution=UNSTABLE):
    """An unsigned upload over FTP; returns (version, its REJECTED event)."""
    instance.uploads += 1
    version = f"1.{instance.uploads}"
    changes = make_source_package(instance.base / f"pkg-{version}", SOURCE, version, distribution)
    started = now_iso()
    raw_ftp_upload(HOST, instance.ftp_port, files_of(changes) + [changes])
    event = wait_for(instance.url, lambda e: e["source"] == SOURCE and e["version"] == version, timeout=120, after=started)
    assert event["type"] == "REJECTED", event
    return version, event


def listed(instance, session, hook_id):
    return next(h for h in api(instance, session, "webhook_list") if h["id"] == hook_id)


def wait_state(instance, session, hook_id, state, timeout=60):
    """The webhook's newest delivery once it is in ``state``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deliveries = listed(instance, session, hook_id)["deliveries"]
        if deliveries and deliveries[0]["state"] == state:
            return deliveries[0]
        time.sleep(0.3)
    raise AssertionError(f"webhook {hook_id}: no delivery {state} in {timeout}s: {deliveries}")


def test_profile_webhook_signed_unique_deliveries(instance, dev, hooks):
    with Receiver() as rcv:
        page = dev.get(f"{instance.url}/accounts/profile/", timeout=60)
        r = dev.post(f"{instance.url}/accounts/profile/", timeout=60, headers={"Referer": page.url},
                     data={"csrfmiddlewaretoken": dev.cookies["csrftoken"], "action": "webhook_create", "webhook_url": rcv.url})
        assert r.status_code == 200, r.text
        hook_id = int(re.search(r'<h3 id="mbd-webhook-(\d+)">', r.text).group(1))
        hooks.append(hook_id)
        secret = re.search(r'<pre id="mbd-webhook-secret">([^<]+)</pre>', r.text).group(1)
        assert len(secret) >= 40
        assert secret not in dev.get(f"{instance.url}/accounts/profile/", timeout=60).text  # shown once
        identity = api(instance, dev, "status")["identity"]

        versions = [upload(instance)[0], upload(instance)[0]]
        got = rcv.wait(2)
        for received, version in zip(got, versions):
            assert webhooks.verify(secret, received.body, received.headers[webhooks.H_SIGNATURE]), received.headers
            assert not webhooks.verify(secret + "x", received.body, received.headers[webhooks.H_SIGNATURE])
            data = received.json
            assert data["id"] == received.headers[webhooks.H_DELIVERY]
            assert data["type"] == received.headers[webhooks.H_EVENT] == "REJECTED"
            assert str(data["timestamp"]) == received.headers[webhooks.H_TIMESTAMP]
            assert (data["event"]["source"], data["event"]["version"], data["event"]["distribution"]) == (SOURCE, version, UNSTABLE)
            assert data["event"]["extra"]["error"]["detail"]
            assert data["instance"]["identity"] == identity
        assert got[0].json["id"] != got[1].json["id"]

        wait_state(instance, dev, hook_id, "delivered")  # the newest: sent (and recorded) after the older one
        hook = listed(instance, dev, hook_id)
        assert "secret" not in hook and hook["url"] == rcv.url and hook["types"] == [] and hook["repository"] == ""
        assert [d["delivery_id"] for d in hook["deliveries"]] == [g.json["id"] for g in reversed(got)]  # newest first
        for d in hook["deliveries"]:
            assert (d["state"], d["attempts"], d["status_code"], d["last_error"]) == ("delivered", 1, 200, "")
        profile = dev.get(f"{instance.url}/accounts/profile/", timeout=60).text
        log = re.search(rf'<table class="mbd-webhook-deliveries" id="mbd-webhook-deliveries-{hook_id}">(.*?)</table>', profile, re.S)
        for g in got:
            assert g.json["id"] in log.group(1)
        assert log.group(1).count('<tr class="mbd-delivery-delivered">') == 2


def test_types_repositories_and_urls(instance, admin, dev, hooks):
    with Receiver() as installed, Receiver() as rejected, Receiver() as repo_test:
        only_installed = create(instance, dev, hooks, installed.url, types="INSTALLED")["id"]
        given = "given-secret-0123456789"
        only_rejected = create(instance, dev, hooks, rejected.url, types="REJECTED", secret=given)
        assert only_rejected["secret"] == given and only_rejected["types"] == ["REJECTED"]
        log = config.Paths(instance.home).daemon_log.read_text(encoding="utf-8")
        assert given not in log and "'secret': '***'" in log  # a given secret is never logged
        repo_hook = create(instance, admin, hooks, repo_test.url, repository="test")["id"]
        # Refused: a repository webhook of a non-staff user, other schemes.
        api(instance, dev, "webhook_create", status=403, url=installed.url, repository="test")
        for url in ("ftp://127.0.0.34/x", "file:///etc/passwd"):
            problem = api(instance, dev, "webhook_create", status=400, url=url)
            assert "only http and https" in problem["detail"], problem
        # Refused: internal addresses outside the allowed network (only 127.0.0.34 here), for a user.
        for url in ("http://127.0.0.1:8066/", "http://169.254.169.254/latest/meta-data/"):
            problem = api(instance, dev, "webhook_create", status=400, url=url)
            assert "internal address" in problem["detail"], problem

        version, _ = upload(instance)
        got = rejected.wait(1)[0]
        assert webhooks.verify(given, got.body, got.headers[webhooks.H_SIGNATURE]) and got.json["event"]["version"] == version
        assert repo_test.wait(1)[0].json["event"]["version"] == version
        other, _ = upload(instance, "bookworm-other-unstable")  # no repository 'other': not the test repository's event
        assert rejected.wait(2)[1].json["event"]["version"] == other
        # Deliveries are made for every wanting webhook before any is sent: none for these.
        assert listed(instance, dev, only_installed)["deliveries"] == [] and not installed.received
        assert [d["event"] for d in listed(instance, admin, repo_hook)["deliveries"]] == [f"{SOURCE} {version} ({UNSTABLE})"]
        # A user sees only their own webhooks; staff also the repository ones.
        assert repo_hook not in [h["id"] for h in api(instance, dev, "webhook_list")]
        api(instance, dev, "webhook_delete", status=404, webhook_id=repo_hook, confirm="webhook_delete")


def test_retry_500_twice_then_200(instance, dev, hooks):
    with Receiver(statuses=[500, 500]) as rcv:
        hook_id = create(instance, dev, hooks, rcv.url)["id"]
        upload(instance)
        got = rcv.wait(3)
        assert len({g.json["id"] for g in got}) == 1
        assert [g.headers[webhooks.H_ATTEMPT] for g in got] == ["1", "2", "3"]
        first_gap, second_gap = got[1].arrived - got[0].arrived, got[2].arrived - got[1].arrived
        assert first_gap >= 1 and second_gap >= 2  # the backoff's lower bounds: 1 s, then 2 s
        d = wait_state(instance, dev, hook_id, "delivered")
        assert (d["attempts"], d["status_code"], d["last_error"]) == (3, 200, "HTTP 500")
        assert d["delivery_id"] == got[0].json["id"] and d["last_attempt"] > d["created"]


def test_held_receiver_does_not_delay_other_webhooks(instance, dev, hooks):
    with Receiver(hold=True) as slow, Receiver() as fast:
        create(instance, dev, hooks, slow.url)
        create(instance, dev, hooks, fast.url)
        first, _ = upload(instance)
        assert slow.wait(1)[0].json["event"]["version"] == first  # now held (up to 30 s)
        second, _ = upload(instance)  # the event log goes on meanwhile
        assert [g.json["event"]["version"] for g in fast.wait(2)] == [first, second]
        with slow.cond:
            assert slow.finished == 0 and len(slow.received) == 1, "the other webhook waited for the held one"
        slow.release()
        assert slow.wait(2)[1].json["event"]["version"] == second


def test_dead_receiver_fails_after_attempts(instance, dev, hooks):
    hook_id = create(instance, dev, hooks, dead_url())["id"]
    upload(instance)
    d = wait_state(instance, dev, hook_id, "failed")
    assert (d["attempts"], d["status_code"]) == (3, None) and "Connection refused" in d["last_error"], d
    assert d["finished"] and d["next_attempt"] is None


def test_pending_delivery_survives_restart(instance, dev, hooks):
    with Receiver(hold=True, hold_max=60) as rcv:
        hook_id = create(instance, dev, hooks, rcv.url)["id"]
        upload(instance)
        first = rcv.wait(1)[0]  # held: the attempt is in flight when the daemon stops
        assert instance.stop() == 0
        assert "resumed" not in instance.output()
        rcv.hold = False
        instance.start()
        again = rcv.wait(2)[1]
        assert again.json["id"] == first.json["id"]
        assert "Webhooks: resumed 1 pending deliveries." in instance.output()
        d = wait_state(instance, dev, hook_id, "delivered")
        assert (d["delivery_id"], d["status_code"]) == (first.json["id"], 200)
