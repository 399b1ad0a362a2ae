"""The ApiToken model (issue #17): a user's scoped API token, stored hashed (see :mod:`mini_buildd.tokens`
for the format, the scopes and the checks). The secret itself is never stored: only its key (to
find it) and its SHA-256."""

import logging

from django.conf import settings
from django.db import models
from django.utils import timezone

from mini_buildd import tokens

LOG = logging.getLogger(__name__)


class ApiToken(models.Model):
    """One API token of a user: scope, optional repository restriction and expiry, last use, revocation."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mbd_api_tokens")
    name = models.CharField(max_length=100, blank=True, default="", help_text="What the token is for (e.g. the CI job).")
    key = models.CharField(max_length=tokens.KEY_LENGTH, db_index=True, editable=False,
                           help_text="The token's key (the characters after its prefix): finds it; not a secret.")
    digest = models.CharField(max_length=64, editable=False, help_text="SHA-256 of the token's secret.")
    scope = models.CharField(max_length=20, choices=[(s, s) for s in tokens.SCOPES], default=tokens.READ)
    repositories = models.CharField(max_length=1000, blank=True, default="",
                                    help_text="Repository identities the token is restricted to (space separated; empty: all).")
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(null=True, blank=True, help_text="Empty: never.")
    last_used = models.DateTimeField(null=True, blank=True, editable=False)
    revoked = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ("created", "pk")

    def __str__(self):
        return f"API token {tokens.display(self.key)} of {self.user} ({self.scope})"

    def mbd_repositories(self):
        return tokens.parse_repositories(self.repositories)

    def mbd_state(self, now=None):
        return tokens.state(self.revoked, self.expires, now or timezone.now())

    def mbd_display(self):
        return tokens.display(self.key)

    def mbd_record_use(self, now=None):
        """Record the token's last use (written at most every :data:`mini_buildd.tokens.LAST_USED_RESOLUTION` s)."""
        now = now or timezone.now()
        if self.last_used is None or (now - self.last_used).total_seconds() >= tokens.LAST_USED_RESOLUTION:
            # update(): no model signal (a token use is no configuration change for the API cache)
            ApiToken.objects.filter(pk=self.pk).update(last_used=now)
            self.last_used = now

    def mbd_describe(self):
        """JSON-able description (never the secret)."""
        def iso(value):
            return value.isoformat() if value is not None else None
        return {"id": self.pk, "name": self.name, "token": self.mbd_display(), "scope": self.scope,
                "repositories": self.mbd_repositories(), "created": iso(self.created), "expires": iso(self.expires),
                "last_used": iso(self.last_used), "revoked": iso(self.revoked), "state": self.mbd_state()}
