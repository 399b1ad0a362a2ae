"""The Remote model: another mini-buildd instance whose builders we share (upstream §2.6, §7).

Prepare fetches the remote's public key (waking the remote first if it has a wake command);
check asks the remote's status, shakes hands with it both ways (signed messages), and requires
our URL among the remote's active remotes and the remote running. The talking is done by
:mod:`mini_buildd.pipeline.remotes` (plugged in as :func:`mini_buildd.models.hooks.remotes`).
"""

import logging

from django.db import models

from mini_buildd.models import hooks
from mini_buildd.models.gnupgkey import GnuPGPublicKeyModel
from mini_buildd.models.base import StatusError
from mini_buildd.tools import gnupg

LOG = logging.getLogger(__name__)


class Remote(GnuPGPublicKeyModel):
    """Another mini-buildd instance whose builders and packages this one uses (upstream §7)."""
    http = models.CharField(primary_key=True, max_length=255, default="tcp:host=YOUR_REMOTE_HOST:port=8066",
                            help_text="The remote's HTTP endpoint (twisted client endpoint or URL).")
    wake_command = models.CharField(max_length=255, blank=True, default="", help_text="Shell command that wakes the remote.")

    def __str__(self):
        return self.http

    def mbd_fetch_key(self):
        remotes = hooks.remotes()
        try:
            return remotes.fetch_key(self)
        except remotes.RemoteError as e:
            raise StatusError(str(e)) from e

    def mbd_prepare_data(self):
        if not self.key:
            # The key always comes from the remote itself (its pub_key call), key id or not.
            self.key = self.mbd_fetch_key()
            if self.key_id:
                infos = gnupg.key_info(self.key)
                if infos and not infos[0]["fingerprint"].upper().endswith(self.key_id.upper().removeprefix("0X")):
                    self.key = ""
                    raise StatusError(f"{self.http} answers with key {infos[0]['long_id']}, not the given key id {self.key_id}.")
        super().mbd_prepare_data()

    def mbd_remove_data(self):
        # The key came from the remote: drop it, prepare fetches it again.
        super().mbd_remove_data()
        if self.key:
            self.key = ""
            models.Model.save(self, update_fields=["key"])

    def mbd_check_data(self):
        super().mbd_check_data()
        remotes = hooks.remotes()
        self.mbd_not_known_yet = False  # pylint: disable=attribute-defined-outside-init  # a Django model
        try:
            remotes.check(self)
        except remotes.NotKnownYet as e:
            self.mbd_not_known_yet = True  # pylint: disable=attribute-defined-outside-init
            raise StatusError(str(e)) from e
        except remotes.RemoteError as e:
            raise StatusError(str(e)) from e

    def mbd_check(self, force=True):
        """A Remote waiting for reactivation keeps waiting when a check fails (remotes come and go)."""
        self._refresh()
        pending = self.mbd_is_reactivate()
        try:
            super().mbd_check(force=force)
        except StatusError:
            if pending:
                self._refresh()
                if self.mbd_is_failed():
                    self._set(last_checked=self.CHECK_REACTIVATE)
            raise

    def mbd_pca(self):
        """As upstream's procedure: when the check fails only because the remote does not know us
        yet (its Remote for us is missing or not active), the activation is kept pending (flag
        ``A``): the next successful check activates. Any other failure (unreachable, wrong key,
        not running) ends Prepared with the failed flag ``x``."""
        self.mbd_prepare()
        try:
            self.mbd_check(force=True)
        except StatusError as e:
            self._refresh()
            if getattr(self, "mbd_not_known_yet", False) and self.mbd_is_prepared() and not self.mbd_is_active():
                self.mbd_activate()  # sets the reactivate flag ('A')
                self._set(message=f"Check failed: {e}. Will activate when the next check succeeds.")
            raise
        self.mbd_activate()
