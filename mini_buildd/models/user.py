"""Per-user models: Uploader (one per Django user: GnuPG key and upload rights) and Subscription."""

from django.conf import settings
from django.db import models

from mini_buildd.models.gnupgkey import GnuPGPublicKeyModel
from mini_buildd.models.repository import Repository


class Uploader(GnuPGPublicKeyModel):
    """A user's upload permission: its key and the repositories it may upload to."""
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    may_upload_to = models.ManyToManyField(Repository, blank=True)

    def __str__(self):
        return f"Uploader {self.user.username}"


class Subscription(models.Model):
    """A user's mail subscription to a package and/or distribution (empty: any)."""
    subscriber = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    package = models.CharField(max_length=100, blank=True, default="", help_text="Empty: any package.")
    distribution = models.CharField(max_length=100, blank=True, default="", help_text="Empty: any distribution.")

    class Meta:
        unique_together = ("subscriber", "package", "distribution")

    def __str__(self):
        return f"{self.subscriber}: {self.package or 'any package'} in {self.distribution or 'any distribution'}"
