"""Who may send what: the keyrings that decide whether an upload, a buildrequest or a buildresult
is trusted (SPEC §1.4 steps 3b, 4, 5; DESIGN "Trust model").

- user uploads: the repository's uploaders keyring (:func:`uploaders_keyring`);
- buildrequests: our own key or an active remote's (:func:`check_remote_signed`);
- buildresults: the key of the builder the request was sent to.
"""

import logging
import os

from mini_buildd import config, gnupg

LOG = logging.getLogger(__name__)


def uploaders_keyring(repository, keyring):
    """Add everybody who may upload to ``repository`` to ``keyring`` (a TmpKeyring)."""
    from mini_buildd.models import Daemon, Uploader  # pylint: disable=import-outside-toplevel
    for uploader in Uploader.objects.filter(status=Uploader.STATUS_ACTIVE, user__is_active=True, may_upload_to=repository):
        if uploader.key:
            keyring.add_pub_key(uploader.key)
    for line in repository.extra_uploader_keyrings.splitlines():
        path = line.split("#", 1)[0].strip()
        if path:
            if os.path.exists(path):
                keyring.add_key_file(path)
            else:
                LOG.warning("Repository %s: extra uploader keyring %s missing.", repository, path)
    keyring.add_pub_key(Daemon.get().gnupg().pub_key())


def remotes_keyring(keyring):
    """Our own key plus every active (or auto-reactivating) remote's key."""
    from mini_buildd.models import Daemon, Remote  # pylint: disable=import-outside-toplevel
    keyring.add_pub_key(Daemon.get().gnupg().pub_key())
    for remote in Remote.objects.all():
        if remote.mbd_is_active_or_reactivate() and remote.key:
            keyring.add_pub_key(remote.key)


def check_remote_signed(chg):
    """Buildrequests and buildresults: signed by us or an active remote, all files intact
    (raises ChangesError)."""
    with gnupg.TmpKeyring(parent=config.paths.tmp) as keyring:
        remotes_keyring(keyring)
        chg.signature_check(keyring)
    chg.check_files()
