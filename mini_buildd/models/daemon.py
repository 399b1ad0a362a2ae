"""The Daemon model (exactly one: the instance, its GnuPG key and engine settings) and EmailAddress."""

import datetime
import logging
import os
import socket

from django.apps import apps
from django.core.validators import MinValueValidator
from django.db import models

from mini_buildd import config, instance, services
from mini_buildd.models import validators
from mini_buildd.models.base import StatusModel, StatusError

LOG = logging.getLogger(__name__)

DEFAULT_GNUPG_TEMPLATE = """Key-Type: RSA
Key-Length: 4096
Expire-Date: 0"""


def default_identity():
    name = socket.gethostname().split(".")[0]
    return "".join(c for c in name if c.isalnum() or c == "-") or "mini-buildd"


def default_email():
    return f"mini-buildd@{config.runtime.hostname}"


def default_allow_emails_to():
    return f".*@{config.runtime.hostname}"


def default_max_parallel_builds():
    return os.cpu_count() or 1


def _model(name):
    """A model of this app that imports this module (Repository, Chroot, Remote): from Django's
    registry, not imported back."""
    return apps.get_model("mini_buildd", name)


class EmailAddress(models.Model):
    """A mail address to notify."""

    address = models.EmailField(primary_key=True, max_length=255)
    name = models.CharField(blank=True, max_length=255)

    class Meta:
        verbose_name_plural = "email addresses"

    def __str__(self):
        return f"{self.name} <{self.address}>" if self.name else self.address


class Daemon(StatusModel):
    """The instance: identity, GnuPG archive key, FTP endpoint and engine settings."""

    identity = models.CharField(max_length=100, default=default_identity, validators=[validators.daemon_identity],
                                help_text="Instance identity: key name, keyring package <identity>-archive-keyring, dput target.")
    custom_archive_origin = models.CharField(max_length=255, blank=True, default="",
                                             help_text="Release 'Origin'; empty: 'Mini-Buildd archive <identity> on <fqdn>'.")
    email_address = models.CharField(max_length=255, default=default_email, help_text="Key Name-Email and mail sender.")
    gnupg_template = models.TextField(default=DEFAULT_GNUPG_TEMPLATE, help_text="gpg --batch --gen-key parameters for the instance key.")
    gnupg_keyserver = models.CharField(max_length=255, default="keyserver.ubuntu.com")
    ftpd_bind = models.CharField(max_length=255, default="tcp6:port=8067", help_text="FTP server endpoint (twisted server endpoint string).")
    ftpd_options = models.CharField(max_length=255, blank=True, default="", help_text="e.g. passive_ports=MIN-MAX")
    max_parallel_builds = models.PositiveSmallIntegerField(default=default_max_parallel_builds, validators=[MinValueValidator(1)])
    event_queue_size = models.PositiveIntegerField(default=500)
    expire_events_after = models.DurationField(default=datetime.timedelta(weeks=48))
    expire_builds_after = models.DurationField(default=datetime.timedelta(days=5))
    notify = models.ManyToManyField(EmailAddress, blank=True)
    allow_emails_to = models.CharField(max_length=255, default=default_allow_emails_to, validators=[validators.regex])

    # Limits against anonymous resource exhaustion (FTP, HTTP, disk). Sizes in MiB.
    ftpd_max_file_size = models.PositiveIntegerField(
        default=2048, validators=[MinValueValidator(1)],
        help_text="FTP: largest single file an upload may contain (MiB); bigger ones are refused with 552.")
    ftpd_max_session_size = models.PositiveIntegerField(
        default=4096, validators=[MinValueValidator(1)],
        help_text="FTP: most bytes one FTP session may store (MiB); more is refused with 552.")
    ftpd_max_connections_per_address = models.PositiveSmallIntegerField(
        default=8, validators=[MinValueValidator(1)], help_text="FTP: simultaneous connections from one client address.")
    min_free_disk = models.PositiveIntegerField(
        default=1024, help_text="Uploads are refused while the home's file system has less free space than this (MiB); 0: no floor.")
    http_max_request_body = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(1)], help_text="HTTP: largest request body (MiB); bigger ones get 413.")
    login_max_failures = models.PositiveSmallIntegerField(
        default=10, validators=[MinValueValidator(1)],
        help_text="Failed logins from one address before it is refused (429) for login_lockout.")
    login_lockout = models.DurationField(default=datetime.timedelta(minutes=15),
                                         help_text="How long an address is refused after too many failed logins.")
    anonymous_search_max_results = models.PositiveIntegerField(
        default=200, validators=[MinValueValidator(1)], help_text="Most results an anonymous search returns.")
    anonymous_requests_per_minute = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1)],
        help_text="Anonymous costly calls (search, debdiff) per client address and minute; more get 429.")

    METRICS_ACCESS_CHOICES = (("anonymous", "anyone"), ("staff", "active staff users only"))
    metrics_access = models.CharField(
        max_length=16, choices=METRICS_ACCESS_CHOICES, default="anonymous",
        help_text="Who may read /metrics: anyone, or only active staff users (logged in, or with an API token); others get 401/403.")

    mbd_lethal_dependencies = False
    #: Read at every request: changing who may read /metrics needs no prepare (the Daemon stays active).
    mbd_volatile_fields = ("metrics_access",)

    class Meta:
        verbose_name = "daemon"

    def __str__(self):
        return self.identity

    def save(self, *args, **kwargs):
        self.pk = 1  # exactly one
        super().save(*args, **kwargs)

    @classmethod
    def get(cls):
        """The one Daemon instance (created on first access)."""
        obj, _created = cls.objects.get_or_create(pk=1)
        return obj

    # ----------------------------------------------------------------- derived values
    @property
    def archive_origin(self):
        return self.custom_archive_origin or f"Mini-Buildd archive {self.identity} on {config.runtime.hostname}"

    @property
    def key_name(self):
        return f"mini-buildd archive {self.identity}"

    def gnupg(self):
        """The instance keyring holding this Daemon's key (:func:`mini_buildd.instance.gnupg`)."""
        return instance.gnupg()

    # ----------------------------------------------------------------- status hooks
    def mbd_prepare_data(self):
        gpg = self.gnupg()
        if gpg.get_secret_key() is None:
            LOG.info("Generating instance key '%s' (may take a while)...", self.key_name)
            gpg.gen_secret_key(self.gnupg_template, self.key_name, self.email_address)

    def mbd_sync_data(self):
        # Never regenerate the key on a configuration change.
        if self.gnupg().get_secret_key() is None:
            self.mbd_prepare_data()

    def mbd_check_data(self):
        if self.gnupg().get_secret_key() is None:
            raise StatusError("Instance GnuPG key missing: prepare the Daemon.")
        if not _model("Repository").objects.filter(status=StatusModel.STATUS_ACTIVE).exists() \
           and not _model("Chroot").objects.filter(status=StatusModel.STATUS_ACTIVE).exists():
            LOG.warning("Daemon: no active repository and no active chroot: this instance can do nothing useful yet.")

    def mbd_remove_data(self):
        gpg = self.gnupg()
        if gpg.get_secret_key() is not None:
            gpg.remove_secret_key()

    def mbd_dependencies(self):
        objs = list(_model("Repository").objects.all()) + _model("Chroot").mbd_concrete_all() + list(_model("Remote").objects.all())
        return [o for o in objs if o.mbd_is_active_or_reactivate()]

    def mbd_on_activate(self):
        services.on_daemon_activated()

    def mbd_on_deactivate(self):
        services.on_daemon_deactivated()
