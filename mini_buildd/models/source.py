"""The sources group: Archive, Architecture, Component, AptKey, Source and PrioritySource (upstream §2.3)."""

import logging

from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import models

from mini_buildd.models import hooks, validators
from mini_buildd.models.base import StatusModel
from mini_buildd.models.gnupgkey import GnuPGPublicKeyModel

LOG = logging.getLogger(__name__)


class Archive(models.Model):
    """A mirror URL (base of ``dists/``); ``ping`` in ms, -1 when unreachable."""

    url = models.CharField(primary_key=True, max_length=512, validators=[validators.archive_url])
    ping = models.FloatField(default=-1.0, editable=False)

    class Meta:
        ordering = ["url"]

    def __str__(self):
        return f"{self.url} (ping {self.ping:.1f} ms)" if self.ping >= 0 else f"{self.url} (unreachable)"


class Architecture(models.Model):
    """A Debian architecture name (e.g. amd64)."""
    name = models.CharField(primary_key=True, max_length=50)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Component(models.Model):
    """An archive component name (e.g. main)."""
    name = models.CharField(primary_key=True, max_length=50)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @staticmethod
    def sort_key(name):
        """``main`` first, then alphabetical."""
        return (name != "main", name)


class AptKey(GnuPGPublicKeyModel):
    """An archive signing key."""

    class Meta:
        verbose_name = "APT key"

    def __str__(self):
        return f"{self.key_long_id or self.key_id} {self.key_name}".strip()

    def clean(self):
        super().clean()
        if not self.key and not self.key_id:
            raise ValidationError("Give a key id or an armored key.")
        if self.key_id and AptKey.objects.filter(key_id__iexact=self.key_id).exclude(pk=self.pk).exists():
            raise ValidationError({"key_id": f"An APT key with id {self.key_id} already exists."})

    def mbd_reverse_dependencies(self):
        return list(self.source_set.all())


class Source(StatusModel):
    """A Debian/Ubuntu distribution source (``dists/<codename>``) checked against the archives."""

    origin = models.CharField(max_length=100, default="Debian", help_text="Exact Release 'Origin'.")
    codename = models.CharField(max_length=100, default="bookworm", help_text="Directory name below 'dists/'.")
    extra_identifiers = models.JSONField(default=dict, blank=True,
                                         help_text='Extra Release fields to match and pin, e.g. {"Suite": "bookworm-backports"}.')
    apt_keys = models.ManyToManyField(AptKey, blank=True)
    codeversion_override = models.CharField(max_length=50, blank=True, default="")
    check_valid_until = models.BooleanField(default=True)
    remove_from_component = models.CharField(max_length=50, blank=True, default="",
                                             help_text="Prefix to strip from Release components (e.g. 'updates/').")
    # Read-only, set by check
    description = models.CharField(max_length=255, blank=True, default="", editable=False)
    codeversion_guessed = models.CharField(max_length=50, blank=True, default="", editable=False)
    archives = models.ManyToManyField(Archive, blank=True, editable=False)
    components = models.ManyToManyField(Component, blank=True, editable=False)
    architectures = models.ManyToManyField(Architecture, blank=True, editable=False)
    release_url = models.CharField(max_length=512, blank=True, default="", editable=False,
                                   help_text="Release file of the fastest matching archive.")

    mbd_volatile_fields = ("description", "codeversion_guessed", "release_url")

    class Meta:
        unique_together = ("origin", "codename")
        ordering = ["origin", "codename"]

    def __str__(self):
        return f"{self.origin} '{self.codename}'"

    def clean(self):
        super().clean()
        if not isinstance(self.extra_identifiers, dict):
            raise ValidationError({"extra_identifiers": "Must be a JSON object."})
        if "Origin" in self.extra_identifiers:
            raise ValidationError({"extra_identifiers": "'Origin' is given by the origin field."})

    @property
    def codeversion(self):
        return self.codeversion_override or self.codeversion_guessed

    @property
    def identifiers(self):
        """All Release fields that must match (Origin, Codename unless overridden, extras)."""
        ids = {"Origin": self.origin, "Codename": self.codename}
        ids.update(self.extra_identifiers or {})
        return ids

    def mbd_archive(self):
        """The fastest matching archive (or None before a successful check)."""
        best = [a for a in self.archives.all() if a.ping >= 0]
        return min(best, key=lambda a: a.ping) if best else None

    def mbd_apt_pin(self):
        """apt preferences pin: ``release o=...,n=...``."""
        abbrev = {"Origin": "o", "Codename": "n", "Suite": "a", "Archive": "a", "Label": "l", "Version": "v"}
        return "release " + ", ".join(f"{abbrev[k]}={v}" for k, v in self.identifiers.items() if k in abbrev)

    def mbd_apt_line(self, components=None, archive=None):
        archive = archive or self.mbd_archive()
        comps = components if components is not None else [c.name for c in self.components.all()]
        return (f"deb [check-valid-until={'yes' if self.check_valid_until else 'no'}] "
                f"{archive.url if archive else ''} {self.codename} {' '.join(sorted(comps, key=Component.sort_key))}")

    def mbd_dependencies(self):
        return list(self.apt_keys.all())

    def mbd_reverse_dependencies(self):
        # Chroot and Repository import this module: taken from Django's registry, not imported back.
        chroot_model, repository_model = apps.get_model("mini_buildd", "Chroot"), apps.get_model("mini_buildd", "Repository")
        repos = repository_model.objects.filter(distributions__base_source=self) | \
            repository_model.objects.filter(distributions__extra_sources__source=self)
        return chroot_model.mbd_concrete_all(chroot_model.objects.filter(source=self)) + list(repos.distinct())

    def mbd_check_data(self):
        hooks.check_source(self)

    def mbd_remove_data(self):
        self.archives.clear()
        self.components.clear()
        self.architectures.clear()


class PrioritySource(models.Model):
    """A Source with an apt pin priority, used as an extra source of distributions."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE)
    priority = models.IntegerField(default=1)

    class Meta:
        unique_together = ("source", "priority")

    def __str__(self):
        return f"{self.source} with priority {self.priority}"

    def mbd_apt_preferences(self):
        return f"Package: *\nPin: {self.source.mbd_apt_pin()}\nPin-Priority: {self.priority}\n"
