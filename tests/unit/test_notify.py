"""Notification recipients (upstream §5.4) computed from the models: the Daemon's notify list,
Changed-By filtered by ``allow_emails_to``, subscriptions by package and distribution, inactive
users and users without mail left out."""

# pytest idioms: some fixtures are requested for their side effects only.
# pylint: disable=unused-argument

from django.contrib.auth.models import User

from mini_buildd import notify
from mini_buildd.events import Event, Type
from mini_buildd.models import Daemon, EmailAddress, Subscription


def event(source="hello", dist="bookworm-nosuchrepo-unstable", **extra):
    return Event(Type.INSTALLED, dist, source, "1.0-1", "2026-11-22T01:00:00+00:00",
                 {"timecode": "20261122:010000:000000", "key": f"{source}/1.0-1/20261122:010000:000000", **extra})


def addresses(result):
    return [a for a, _reason in result]


def test_daemon_notify_and_changed_by(db):
    daemon = Daemon.get()
    daemon.allow_emails_to = r".*@example\.org$"
    daemon.save()
    daemon.notify.add(EmailAddress.objects.create(address="admin@example.org", name="Admin"))
    result = notify.recipients(event(changed_by="Dev <dev@example.org>", maintainer="Maint <m@example.org>"))
    # maintainer only with a repository that wants it; changed_by with no repository
    assert addresses(result) == ["Admin <admin@example.org>", "Dev <dev@example.org>"]
    assert all(reason for _a, reason in result)
    # changed_by outside allow_emails_to: dropped
    assert addresses(notify.recipients(event(changed_by="Evil <x@elsewhere.net>"))) == ["Admin <admin@example.org>"]


def test_subscriptions(db):
    def user(name, active=True, mail=True):
        return User.objects.create(username=name, email=f"{name}@example.org" if mail else "", is_active=active)
    Subscription.objects.create(subscriber=user("all"))
    Subscription.objects.create(subscriber=user("pkg"), package="hello")
    Subscription.objects.create(subscriber=user("other"), package="other")
    Subscription.objects.create(subscriber=user("dist"), distribution="bookworm-nosuchrepo-unstable")
    Subscription.objects.create(subscriber=user("otherdist"), distribution="bookworm-nosuchrepo-testing")
    Subscription.objects.create(subscriber=user("inactive", active=False))
    Subscription.objects.create(subscriber=user("nomail", mail=False))
    assert sorted(addresses(notify.recipients(event()))) == ["all@example.org", "dist@example.org", "pkg@example.org"]
    assert sorted(addresses(notify.recipients(event(source="other")))) == ["all@example.org", "dist@example.org", "other@example.org"]
