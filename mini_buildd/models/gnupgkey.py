"""Abstract model for objects that hold one GnuPG public key (AptKey, Remote, Uploader)."""

from django.db import models

from mini_buildd import config
from mini_buildd.models import validators
from mini_buildd.models.base import StatusModel, StatusError
from mini_buildd.models.daemon import Daemon
from mini_buildd.tools import gnupg


class GnuPGPublicKeyModel(StatusModel):
    """A public key given by id (fetched on prepare) or pasted armored; key details are read-only."""

    key_id = models.CharField(max_length=100, blank=True, default="", validators=[validators.key_id],
                              help_text="Key id (8+ hex digits): fetched from installed keyrings or the keyserver on prepare.")
    key = models.TextField(blank=True, default="", help_text="ASCII-armored public key (alternative to the key id).")
    key_long_id = models.CharField(max_length=40, blank=True, default="", editable=False)
    key_created = models.CharField(max_length=40, blank=True, default="", editable=False)
    key_expires = models.CharField(max_length=40, blank=True, default="", editable=False)
    key_name = models.CharField(max_length=255, blank=True, default="", editable=False)
    key_fingerprint = models.CharField(max_length=64, blank=True, default="", editable=False)

    mbd_volatile_fields = ("key_long_id", "key_created", "key_expires", "key_name", "key_fingerprint")

    class Meta:
        abstract = True

    def mbd_fetch_key(self):
        """Return the armored key when only ``key_id`` is set (override to fetch elsewhere)."""
        armored, _info = gnupg.fetch_key(self.key_id, Daemon.get().gnupg_keyserver, tmp_parent=config.paths.tmp)
        return armored

    def mbd_prepare_data(self):
        if not self.key:
            if not self.key_id:
                raise StatusError("Neither a key nor a key id given.")
            self.key = self.mbd_fetch_key()
        infos = gnupg.key_info(self.key)
        if not infos:
            raise StatusError("No public key found in the given key data.")
        info = infos[0]
        if self.key_id and not info["fingerprint"].upper().endswith(self.key_id.upper().removeprefix("0X")):
            raise StatusError(f"Key data holds key {info['long_id']}, not the given key id {self.key_id}.")
        self.key_long_id = info["long_id"]
        self.key_fingerprint = info["fingerprint"]
        self.key_name = info.get("name") or ""
        self.key_created = str(info.get("created") or "")
        self.key_expires = str(info.get("expires") or "")
        models.Model.save(self, update_fields=["key", "key_long_id", "key_fingerprint", "key_name", "key_created", "key_expires"])

    def mbd_sync_data(self):
        self.mbd_prepare_data()

    def mbd_check_data(self):
        if not self.key_long_id:
            raise StatusError("Key not prepared.")

    def mbd_remove_data(self):
        if self.key_id:
            # Key was fetched by id: drop the copy so prepare fetches it again.
            self.key = ""
        self.key_long_id = self.key_fingerprint = self.key_name = self.key_created = self.key_expires = ""
        models.Model.save(self, update_fields=["key", "key_long_id", "key_fingerprint", "key_name", "key_created", "key_expires"])
