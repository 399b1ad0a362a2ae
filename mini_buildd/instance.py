"""This instance, in one place: what the other parts of mini-buildd need to know or do as "us".

- its URLs: :func:`http_url` (the primary HTTP endpoint: what remotes list us as, what buildrequests
  name as packager), :func:`ftp_url` (the FTP incoming), :func:`ssl_cert` (the certificate our HTTPS
  serves);
- its GnuPG key: :func:`gnupg` (``~/.gnupg`` with the Daemon key; the only place that builds it);
- the keyrings built around that key: :func:`uploaders_keyring` (who may upload to a repository),
  :func:`remotes_keyring` and :func:`check_remote_signed` (a buildrequest or buildresult signed by
  us or one of the remotes we work with), :func:`refuse_expired`;
- the event of a package: :func:`make_event`.

It imports neither Django nor the models: what needs a model object (the Daemon, a Repository, the
Remotes) gets it as an argument. So the models, the pipeline, the API definitions (also imported by
command-line clients, without Django) and the daemon all use it, and it uses none of them.
"""

import logging
import os

from mini_buildd import changes, config, net
from mini_buildd.events import Event, Type as EventType
from mini_buildd.tools import gnupg as gnupg_tool, tls

LOG = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ URLs
def http_url():
    """Our primary HTTP URL (the first HTTP endpoint, with our host name)."""
    return net.ServerEndpoint(config.runtime.http_endpoint).url(config.runtime.hostname)


def ftp_url(daemon):
    """Our FTP incoming URL (``daemon``: the Daemon model, whose ``ftpd_bind`` it is)."""
    return net.ServerEndpoint(daemon.ftpd_bind, "ftp").url(config.runtime.hostname)


def ssl_cert():
    """The certificate (PEM) our HTTPS serves: of the first ``ssl:`` HTTP endpoint (the primary's
    when that is one), ``""`` without any. Sent as ``ssl_cert`` in buildrequests (the build chroot
    trusts it for https sources) and shipped in the keyring package."""
    return tls.served_certificate(config.runtime.http_endpoints)


# ------------------------------------------------------------------------------------------------ key, keyrings
def gnupg():
    """The instance keyring (``~/.gnupg``, holding the Daemon key); temporary files go below ``~/var/tmp``."""
    return gnupg_tool.Gnupg(config.paths.gnupg_home, tmp_parent=config.paths.tmp)


def uploaders_keyring(repository, keyring):
    """Add everybody who may upload to ``repository`` (a Repository model) to ``keyring`` (a
    TmpKeyring): its active uploaders (of active users), its extra uploader keyrings, and us."""
    for uploader in repository.uploader_set.filter(status=repository.STATUS_ACTIVE, user__is_active=True):
        if uploader.key:
            keyring.add_pub_key(uploader.key)
    for line in repository.extra_uploader_keyrings.splitlines():
        path = line.split("#", 1)[0].strip()
        if path:
            if os.path.exists(path):
                keyring.add_key_file(path)
            else:
                LOG.warning("Repository %s: extra uploader keyring %s missing.", repository, path)
    keyring.add_pub_key(gnupg().pub_key())


def remotes_keyring(keyring, remotes):
    """Add our own key and the key of each of ``remotes`` (Remote models) to ``keyring``."""
    keyring.add_pub_key(gnupg().pub_key())
    for remote in remotes:
        keyring.add_pub_key(remote.key)


def refuse_expired(chg, result):
    """A signature check accepted ``result``: refuse it (ChangesError) if the good signature is by an expired key."""
    good = [s for s in result.signatures if s["status"] in (gnupg_tool.VerifyResult.GOOD, gnupg_tool.VerifyResult.EXPIRED_KEY)]
    if good and all(s["status"] == gnupg_tool.VerifyResult.EXPIRED_KEY for s in good):
        raise changes.ChangesError(f"{chg.name}: signed by an expired key ({result.describe()})")


def check_remote_signed(chg, remotes):
    """Buildrequests and buildresults: signed by us or one of ``remotes`` (the active ones), not by
    an expired key, all files intact (raises ChangesError)."""
    with gnupg_tool.TmpKeyring(parent=config.paths.tmp) as keyring:
        remotes_keyring(keyring, remotes)
        result = chg.signature_check(keyring)
    refuse_expired(chg, result)
    chg.check_files()


# ------------------------------------------------------------------------------------------------ refused arrivals
def make_event(etype, changes_obj, extra=None, distribution=None):
    """An event (``etype``: a Type or its name) about ``changes_obj`` (or about nothing, if None)."""
    ext = changes_obj.to_event_extra() if changes_obj is not None else {}
    ext.update(extra or {})
    return Event(EventType[etype] if isinstance(etype, str) else etype,
                 distribution or (changes_obj.distribution if changes_obj else ""),
                 changes_obj.source if changes_obj else "", changes_obj.version if changes_obj else "", extra=ext)
