"""Webhooks with Django (the test home's database): which webhooks get an event (types, repository
distributions, meta names, inactive owners), recording attempts and pruning the log, the API calls'
rights and visibility, and the profile page section (create shows the secret once, errors, delete)."""

# pytest idioms: Django and the code under test are imported after the test set-up.
# pylint: disable=import-outside-toplevel,redefined-outer-name

import re
import time

import pytest
from django.test import override_settings

from mini_buildd import webhooks
from mini_buildd.events import Event, Type

PASSWORD = "webhook-Secret-1"


@pytest.fixture(autouse=True)
def _testserver_allowed():
    from django.conf import settings as django_settings
    with override_settings(ALLOWED_HOSTS=[*django_settings.ALLOWED_HOSTS, "testserver"]):
        yield


@pytest.fixture(autouse=True)
def _loopback_allowed(monkeypatch):
    """The test receivers' addresses (127.0.0.34) are loopback: allowed as an administrator may allow a network."""
    monkeypatch.setenv("MINI_BUILDD_WEBHOOK_ALLOW_NETS", "127.0.0.0/8")


@pytest.fixture
def users(db):  # pylint: disable=unused-argument
    from django.contrib.auth.models import User
    return {"dev": User.objects.create_user("wh-dev", password=PASSWORD),
            "other": User.objects.create_user("wh-other", password=PASSWORD),
            "staff": User.objects.create_user("wh-staff", password=PASSWORD, is_staff=True),
            "admin": User.objects.create_superuser("wh-admin", password=PASSWORD)}


@pytest.fixture
def repo(db):  # pylint: disable=unused-argument
    """Repository ``whrepo`` on bookworm (Default layout), not prepared."""
    from mini_buildd import models
    source = models.Source.objects.create(origin="Debian", codename="bookworm")
    dist = models.Distribution.objects.create(base_source=source)
    r = models.Repository.objects.create(identity="whrepo", layout=models.Layout.objects.get(name="Default"))
    r.distributions.add(dist)
    return r


def event(etype=Type.REJECTED, distribution="bookworm-whrepo-unstable"):
    return Event(etype, distribution, "pkg", "1.0")


def run(name, user, **args):
    from mini_buildd.api import registry
    return registry.execute(registry.CALLS[name], {k: str(v) for k, v in args.items()}, user=user,
                            confirm=name if registry.CALLS[name].needs_confirmation else None)


def problem(name, user, **args):
    from mini_buildd.api import registry
    with pytest.raises(registry.Problem) as e:
        run(name, user, **args)
    return e.value


def test_store_matches_types_and_repositories(users, repo):
    from mini_buildd import models, webhooks_store
    own = run("webhook_create", users["dev"], url="http://127.0.0.34:1/a")
    installed = run("webhook_create", users["dev"], url="http://127.0.0.34:1/b", types="INSTALLED")
    of_repo = run("webhook_create", users["staff"], url="http://127.0.0.34:1/c", repository=repo.identity)
    gone = run("webhook_create", users["other"], url="http://127.0.0.34:1/d")
    users["other"].is_active = False
    users["other"].save()
    store = webhooks_store.Store(webhooks.Policy(log_size=2))

    def wanted(ev):
        return sorted(d.webhook_id for d in store.create(ev))
    assert wanted(event()) == [own["id"], of_repo["id"]]
    assert wanted(event(Type.INSTALLED)) == [own["id"], installed["id"], of_repo["id"]]
    assert wanted(event(distribution="bookworm-other-unstable")) == [own["id"]]
    assert wanted(event(distribution="trixie-whrepo-unstable")) == [own["id"]]  # not one of its codenames
    assert wanted(event(distribution="")) == [own["id"]]
    assert gone["id"] not in wanted(event())
    # Stored as pending, with the event and the instance.
    row = models.WebhookDelivery.objects.filter(webhook_id=own["id"]).first()
    assert (row.state, row.attempts, row.event_type) == ("pending", 0, "REJECTED")
    assert [d.delivery_id for d in store.pending()][:1] == [models.WebhookDelivery.objects.order_by("created", "id").first().delivery_id]
    assert store.target(own["id"])[0] == "http://127.0.0.34:1/a" and store.target(gone["id"] + 100) is None


def test_store_records_and_prunes(users):
    from mini_buildd import models, webhooks_store
    hook = run("webhook_create", users["dev"], url="http://127.0.0.34:1/a")
    store = webhooks_store.Store(webhooks.Policy(log_size=2))
    deliveries = [store.create(event())[0] for _ in range(4)]
    now = time.time()
    first = deliveries[0]
    first.attempts = 1
    assert store.record(first, webhooks.Outcome(webhooks.PENDING, 500, "HTTP 500", now, now + 10))
    first.attempts = 2
    assert store.record(first, webhooks.Outcome(webhooks.DELIVERED, 200, "", now + 10))
    row = models.WebhookDelivery.objects.get(delivery_id=first.delivery_id)
    assert (row.state, row.attempts, row.status_code, row.last_error, row.next_attempt) == ("delivered", 2, 200, "HTTP 500", None)
    for i, d in enumerate(deliveries[1:]):
        d.attempts = 1
        store.record(d, webhooks.Outcome(webhooks.FAILED, None, "refused", now + 20 + i))
    kept = list(models.WebhookDelivery.objects.filter(webhook_id=hook["id"]).values_list("delivery_id", flat=True))
    assert sorted(kept) == sorted(d.delivery_id for d in deliveries[2:])  # the newest 2 finished
    models.Webhook.objects.filter(pk=hook["id"]).delete()
    assert not store.record(deliveries[3], webhooks.Outcome(webhooks.FAILED, None, "x", now))


def test_calls_rights_and_visibility(users, repo):
    created = run("webhook_create", users["dev"], url="https://ci.example.org/hook", types="FAILED,INSTALLED")
    assert len(created["secret"]) >= 40 and created["types"] == ["FAILED", "INSTALLED"] and created["owner"] == "wh-dev"
    assert problem("webhook_create", users["dev"], url="http://x/", repository=repo.identity).status == 403
    assert problem("webhook_create", users["dev"], url="ftp://x/").argument == "url"
    assert problem("webhook_create", users["dev"], url="http://x/", secret="short").argument == "secret"
    assert problem("webhook_create", users["staff"], url="http://x/", repository="nope").status == 400
    assert problem("webhook_create", None, url="http://x/").status == 401
    of_repo = run("webhook_create", users["staff"], url="http://x/", repository=repo.identity)
    other = run("webhook_create", users["other"], url="http://y/")

    def ids(user):
        return [h["id"] for h in run("webhook_list", user)]
    assert ids(users["dev"]) == [created["id"]]
    assert ids(users["staff"]) == [of_repo["id"]]
    assert ids(users["admin"]) == [created["id"], of_repo["id"], other["id"]]
    assert all("secret" not in h for h in run("webhook_list", users["admin"]))
    assert problem("webhook_delete", users["dev"], webhook_id=other["id"]).status == 404
    assert problem("webhook_delete", users["dev"], webhook_id=of_repo["id"]).status == 404
    assert run("webhook_delete", users["staff"], webhook_id=of_repo["id"])["id"] == of_repo["id"]
    assert run("webhook_delete", users["admin"], webhook_id=other["id"])["id"] == other["id"]
    assert ids(users["admin"]) == [created["id"]]
    # At most MAX_PER_USER webhooks per user (their threads), administrators apart.
    from mini_buildd.api import calls_webhooks
    for i in range(calls_webhooks.MAX_PER_USER - 1):
        run("webhook_create", users["dev"], url=f"http://x/{i}")
    assert problem("webhook_create", users["dev"], url="http://x/more").status == 409
    for i in range(calls_webhooks.MAX_PER_USER + 1):
        run("webhook_create", users["admin"], url=f"http://x/{i}")


def test_profile_section(users, repo):  # pylint: disable=unused-argument  # users: the accounts logged in
    from django.test import Client
    from tests.helpers.html_check import assert_valid_response
    c = Client()
    assert c.login(username="wh-dev", password=PASSWORD)
    page = c.get("/accounts/profile/")
    assert_valid_response(page)
    text = page.content.decode()
    assert 'id="mbd-webhooks-none"' in text and 'id="id_webhook_repository"' not in text  # no repository choice
    r = c.post("/accounts/profile/", {"action": "webhook_create", "webhook_url": "gopher://x/"})
    assert r.status_code == 400 and 'id="id_webhook_url_error"' in r.content.decode()
    r = c.post("/accounts/profile/", {"action": "webhook_create", "webhook_url": "http://127.0.0.34:9/x",
                                      "webhook_types": ["REJECTED", "FAILED"]})
    assert r.status_code == 200
    assert_valid_response(r)
    text = r.content.decode()
    secret = re.search(r'<pre id="mbd-webhook-secret">([^<]+)</pre>', text).group(1)
    hook_id = int(re.search(r'<h3 id="mbd-webhook-(\d+)">', text).group(1))
    assert "FAILED,REJECTED" in text and "No deliveries yet." in text
    assert secret not in c.get("/accounts/profile/").content.decode()
    r = c.post("/accounts/profile/", {"action": "webhook_delete", "webhook_id": hook_id})
    assert r.status_code == 302
    assert 'id="mbd-webhooks-none"' in c.get("/accounts/profile/").content.decode()
    staff = Client()
    assert staff.login(username="wh-staff", password=PASSWORD)
    assert f'<option value="{repo.identity}">' in staff.get("/accounts/profile/").content.decode()


@pytest.mark.parametrize("url", ["http://127.0.0.1:8066/mini_buildd/api/", "http://169.254.169.254/latest/meta-data/",
                                 "http://[::1]:22/", "https://10.0.0.1/", "http://localhost/"])
def test_users_webhook_to_an_internal_address_refused(users, monkeypatch, url):
    """The attack: a user points a webhook at the daemon's own loopback API, the cloud metadata
    address or the LAN, to make the daemon's host send requests there. Refused with the reason and
    nothing stored; an administrator may (a configured host's own receivers)."""
    from mini_buildd import models
    monkeypatch.delenv("MINI_BUILDD_WEBHOOK_ALLOW_NETS")
    for who in ("dev", "staff"):
        p = problem("webhook_create", users[who], url=url)
        assert p.status == 400 and "internal address" in p.detail and "MINI_BUILDD_WEBHOOK_ALLOW_NETS" in p.detail, p.detail
    assert not models.Webhook.objects.exists()
    assert run("webhook_create", users["admin"], url=url)["url"] == url
