"""The Remote model: another mini-buildd instance whose builders we share (SPEC §2.6, §7).

Prepare fetches the remote's public key; check (status, handshake) arrives with distributed
building.
"""

from django.db import models

from mini_buildd.models.gnupgkey import GnuPGPublicKeyModel


class Remote(GnuPGPublicKeyModel):
    http = models.CharField(primary_key=True, max_length=255, default="tcp:host=YOUR_REMOTE_HOST:port=8066",
                            help_text="The remote's HTTP endpoint (twisted client endpoint or URL).")
    wake_command = models.CharField(max_length=255, blank=True, default="", help_text="Shell command that wakes the remote.")

    def __str__(self):
        return self.http

    def mbd_fetch_key(self):
        from mini_buildd import net  # pylint: disable=import-outside-toplevel
        return net.fetch_api(self.http, "pub_key")
