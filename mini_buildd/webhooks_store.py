"""The daemon's webhook store (issue #17): the database side of :class:`mini_buildd.webhooks.Dispatcher`.

It decides which webhooks get an event (:meth:`Store.create`, persisting one pending
:class:`mini_buildd.models.WebhookDelivery` each), gives the pending deliveries back after a restart
(:meth:`Store.pending`), each webhook's current URL and secret (:meth:`Store.target`), and records
attempts (:meth:`Store.record`), pruning each webhook's log of finished deliveries to the newest
``Policy.log_size``. Every method runs in one of the dispatcher's threads, with that thread's own
database connection (closed by :meth:`Store.close` when the thread ends).
"""

import datetime
import json
import logging
import uuid

from django.db import DatabaseError, connection, transaction

from mini_buildd import instance, models, webhooks

LOG = logging.getLogger(__name__)


def _aware(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc) if epoch is not None else None


def _epoch(value):
    return value.timestamp() if value is not None else 0.0


def _instance():
    try:
        return {"identity": models.Daemon.get().identity, "url": instance.http_url()}
    except DatabaseError as e:
        LOG.warning("Webhooks: no instance identity: %s", e)
        return {"identity": "", "url": ""}


def _delivery(row):
    return webhooks.Delivery(pk=row.pk, webhook_id=row.webhook_id, delivery_id=row.delivery_id, event_type=row.event_type,
                             event=row.event, instance=json.loads(row.instance or "{}"), attempts=row.attempts,
                             due=_epoch(row.next_attempt or row.created))


class Store:
    """Webhooks and their deliveries in the configuration database."""

    def __init__(self, policy=None):
        self.policy = policy or webhooks.Policy.from_environment()

    @staticmethod
    def pending():
        """Pending deliveries of active webhooks, oldest first."""
        rows = models.WebhookDelivery.objects.filter(state=webhooks.PENDING, webhook__active=True).order_by("created", "id")
        return [_delivery(r) for r in rows]

    @staticmethod
    def _meta_map():
        try:
            return models.Repository.mbd_meta_distribution_map()
        except models.StatusError:  # ambiguous meta names: only full distribution names match
            return {}

    def create(self, event):
        """Pending deliveries of ``event`` (a :class:`mini_buildd.events.Event`) for each active webhook that wants it."""
        hooks = [w for w in models.Webhook.objects.filter(active=True).select_related("repository", "owner")
                 if w.owner.is_active]
        meta_map = self._meta_map() if any(w.repository_id for w in hooks) else {}
        wanted = [w for w in hooks if w.mbd_wants(event, meta_map)]
        if not wanted:
            return []
        now = datetime.datetime.now(datetime.timezone.utc)
        event_json, instance_json = event.dumps(), json.dumps(_instance())
        with transaction.atomic():
            rows = [models.WebhookDelivery.objects.create(
                webhook=w, delivery_id=str(uuid.uuid4()), event_type=event.type.value, event=event_json,
                instance=instance_json, created=now, next_attempt=now) for w in wanted]
        return [_delivery(r) for r in rows]

    @staticmethod
    def target(webhook_id):
        """``(url, secret, privileged)`` of an active webhook (privileged: its owner is an administrator,
        whose webhooks may reach internal addresses), or None (deleted or inactive)."""
        hook = models.Webhook.objects.filter(pk=webhook_id, active=True).values_list("url", "secret", "owner__is_superuser").first()
        return (hook[0], hook[1], bool(hook[2])) if hook else None

    def record(self, delivery, outcome):
        """Record an attempt (``outcome``: :class:`mini_buildd.webhooks.Outcome`); False if the
        delivery is gone (its webhook was deleted)."""
        finished = _aware(outcome.attempted) if outcome.state != webhooks.PENDING else None
        fields = {"state": outcome.state, "attempts": delivery.attempts, "status_code": outcome.status_code,
                  "last_attempt": _aware(outcome.attempted), "next_attempt": _aware(outcome.due), "finished": finished}
        if outcome.error:  # a later success keeps the error of the attempt before it
            fields["last_error"] = outcome.error[:2000]
        updated = models.WebhookDelivery.objects.filter(pk=delivery.pk).update(**fields)
        if updated and finished is not None:
            self.prune(delivery.webhook_id)
        return bool(updated)

    def prune(self, webhook_id):
        """Keep the newest ``log_size`` finished deliveries of a webhook."""
        done = models.WebhookDelivery.objects.filter(webhook_id=webhook_id).exclude(state=webhooks.PENDING)
        old = list(done.order_by("-finished", "-id").values_list("pk", flat=True)[self.policy.log_size:])
        if old:
            models.WebhookDelivery.objects.filter(pk__in=old).delete()

    @staticmethod
    def close():
        """Close this thread's database connection."""
        connection.close()


def start(hub, policy=None):
    """Start a dispatcher on ``hub`` (:class:`mini_buildd.events.Events`); return it (``stop()`` it on shut-down)."""
    policy = policy or webhooks.Policy.from_environment()
    dispatcher = webhooks.Dispatcher(Store(policy), policy).start()
    hub.add_listener(dispatcher.listener)
    LOG.info("Webhooks: dispatcher started (%s attempts, retry after %ss x%s up to %ss, timeout %ss).",
             policy.attempts, policy.delay, policy.factor, policy.max_delay, policy.timeout)
    return dispatcher
