"""Signed webhooks (issue #17): :class:`Webhook` (where events are POSTed: a user's own, or a
repository's set by staff; its URL, event types and secret) and :class:`WebhookDelivery` (one event
to one webhook: the persisted queue of pending deliveries, which survives a restart, and the
delivery log, pruned to the newest entries per webhook). Sending is :mod:`mini_buildd.webhooks`'.
"""

import json

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from mini_buildd import webhooks
from mini_buildd.dist import DistStr
from mini_buildd.models.repository import Repository


def validate_url(value):
    """A webhook URL: http or https (see :func:`mini_buildd.webhooks.check_url`)."""
    try:
        webhooks.check_url(value)
    except ValueError as e:
        raise ValidationError(str(e)) from e


def validate_types(value):
    """Comma-separated event type names."""
    try:
        webhooks.check_types(value)
    except ValueError as e:
        raise ValidationError(str(e)) from e


class Webhook(models.Model):
    """A URL that gets a signed POST for each event of the chosen types: a user webhook (no
    repository: every event) or a repository webhook (only events of its distributions)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mbd_webhooks",
                              help_text="Who configured it (and may list and delete it).")
    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, null=True, blank=True,
                                   help_text="Empty: a user webhook (all events); else only events of this "
                                             "repository's distributions (staff only).")
    url = models.CharField(max_length=webhooks.MAX_URL_LENGTH, validators=[validate_url],
                           help_text="http or https URL the deliveries are POSTed to.")
    types = models.CharField(max_length=300, blank=True, default="", validators=[validate_types],
                             help_text="Comma-separated event types; empty: all.")
    secret = models.CharField(max_length=webhooks.MAX_SECRET_LENGTH,
                              help_text="Key of the HMAC-SHA256 signature (kept in clear: it must sign).")
    active = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"Webhook {self.pk} of {self.repository or self.owner}: {self.url}"

    def mbd_types(self):
        return webhooks.check_types(self.types)

    def mbd_wants(self, event, meta_map=None):
        """Whether this webhook gets ``event`` (an :class:`mini_buildd.events.Event`)."""
        types = self.mbd_types()
        if types and event.type.value not in types:
            return False
        if self.repository_id is None:
            return True
        diststr = (meta_map or {}).get(event.distribution, event.distribution)
        try:
            dist = DistStr(diststr)
        except ValueError:
            return False
        return (dist.repository == self.repository_id
                and dist.codename in {d.codename for d in self.repository.mbd_distributions()})

    def mbd_json(self):
        """What ``webhook_list`` shows (never the secret)."""
        return {"id": self.pk, "owner": self.owner.get_username(), "repository": self.repository_id or "",
                "url": self.url, "types": self.mbd_types(), "active": self.active, "created": self.created.isoformat(),
                "deliveries": [d.mbd_json() for d in self.deliveries.all()]}


class WebhookDelivery(models.Model):
    """One event to one webhook: pending (queued or waiting for a retry), delivered or failed."""

    STATE_CHOICES = tuple((s, s) for s in webhooks.STATES)

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    delivery_id = models.CharField(max_length=64, unique=True)
    event_type = models.CharField(max_length=30)
    event = models.TextField(help_text="The event's JSON.")
    instance = models.TextField(default="{}", help_text="This instance's identity and URL (JSON) when it was queued.")
    state = models.CharField(max_length=10, choices=STATE_CHOICES, default=webhooks.PENDING, db_index=True)
    attempts = models.IntegerField(default=0)
    status_code = models.IntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created = models.DateTimeField()
    last_attempt = models.DateTimeField(null=True, blank=True)
    next_attempt = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self):
        return f"Delivery {self.delivery_id} ({self.event_type}) to webhook {self.webhook_id}: {self.state}"

    def mbd_summary(self):
        """The event in a few words (source, version, distribution)."""
        try:
            data = json.loads(self.event)
            return f"{data.get('source', '')} {data.get('version', '')} ({data.get('distribution', '')})"
        except (ValueError, AttributeError):
            return ""

    def mbd_json(self):
        def iso(value):
            return value.isoformat() if value else None
        return {"delivery_id": self.delivery_id, "type": self.event_type, "event": self.mbd_summary(), "state": self.state,
                "attempts": self.attempts, "status_code": self.status_code, "last_error": self.last_error,
                "created": iso(self.created), "last_attempt": iso(self.last_attempt), "next_attempt": iso(self.next_attempt),
                "finished": iso(self.finished)}
