"""Who may send what: the keyrings that decide whether an upload, a buildrequest or a buildresult
is trusted (upstream §1.4 steps 3b, 4, 5; DESIGN "Trust model").

- user uploads: the repository's uploaders keyring (:func:`uploaders_keyring`);
- buildrequests: signed by our own key or an active remote's (:func:`check_remote_signed`), meant
  for us (``X-Mini-Buildd-Builder`` is our URL), fresh (timecode not older than
  :data:`MAX_BUILDREQUEST_AGE`, not ahead by more than :data:`MAX_CLOCK_SKEW`) and never accepted
  before (:func:`check_buildrequest`, :func:`accept_buildrequest`: a persistent record of the
  SHA-256 of every accepted signed buildrequest, kept as long as the request could be fresh);
- buildresults: signed by the key of the builder the request was sent to
  (:func:`check_buildresult_signer`), not just by any peer.

Signatures made by expired or revoked keys are refused for buildrequests and buildresults.
"""

import datetime
import errno
import json
import logging
import os
import tempfile
import threading

from mini_buildd import changes, config, files
from mini_buildd.tools import gnupg

LOG = logging.getLogger(__name__)

#: A buildrequest whose timecode is older than this is refused as stale (its record is then pruned).
MAX_BUILDREQUEST_AGE = datetime.timedelta(hours=24)
#: A buildrequest whose timecode lies more than this in the future is refused (clock skew allowance).
MAX_CLOCK_SKEW = datetime.timedelta(minutes=5)

#: Serializes pruning within this process (records themselves are claimed atomically).
_LOCK = threading.Lock()


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _iso(when):
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(delta):
    seconds = delta.total_seconds()
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"


# ------------------------------------------------------------------------------------------------ keyrings
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


def _active_remotes():
    from mini_buildd.models import Remote  # pylint: disable=import-outside-toplevel
    return [r for r in Remote.objects.order_by("http") if r.mbd_is_active_or_reactivate() and r.key]


def remotes_keyring(keyring):
    """Our own key plus every active (or auto-reactivating) remote's key."""
    from mini_buildd.models import Daemon  # pylint: disable=import-outside-toplevel
    keyring.add_pub_key(Daemon.get().gnupg().pub_key())
    for remote in _active_remotes():
        keyring.add_pub_key(remote.key)


def _refuse_expired(chg, result):
    """A signature check accepted ``result``: refuse it if the good signature is by an expired key."""
    good = [s for s in result.signatures if s["status"] in (gnupg.VerifyResult.GOOD, gnupg.VerifyResult.EXPIRED_KEY)]
    if good and all(s["status"] == gnupg.VerifyResult.EXPIRED_KEY for s in good):
        raise changes.ChangesError(f"{chg.name}: signed by an expired key ({result.describe()})")


def check_remote_signed(chg):
    """Buildrequests and buildresults: signed by us or an active remote (not by an expired key),
    all files intact (raises ChangesError)."""
    with gnupg.TmpKeyring(parent=config.paths.tmp) as keyring:
        remotes_keyring(keyring)
        result = chg.signature_check(keyring)
    _refuse_expired(chg, result)
    chg.check_files()


# ------------------------------------------------------------------------------------------------ who signed
def _known_signers():
    """``[(label, armored key, fingerprint)]``: our key and every Remote's stored key (any status)."""
    from mini_buildd.pipeline import remotes  # pylint: disable=import-outside-toplevel
    from mini_buildd.models import Daemon, Remote  # pylint: disable=import-outside-toplevel
    gpg = Daemon.get().gnupg()
    own = gpg.get_secret_key() or {}
    result = [(f"this instance {remotes.normalize_url(remotes.our_url())}", gpg.pub_key(), own.get("fingerprint", ""))]
    for remote in Remote.objects.order_by("http"):
        if remote.key:
            result.append((f"remote {remotes.remote_url(remote)}", remote.key, remote.key_fingerprint))
    return result


def describe_signer(chg):
    """Who signed ``chg``, in words (for error messages): a known instance, or unknown key ids."""
    known = _known_signers()
    with gnupg.TmpKeyring(parent=config.paths.tmp) as keyring:
        for _label, key, _fpr in known:
            try:
                keyring.add_pub_key(key)
            except gnupg.GnupgError as e:
                LOG.warning("Unusable stored key (%s): %s", _label, e)
        result = keyring.verify_signature(chg.path)
    if not result.signatures:
        return "nobody (not signed)"
    if result.valid:
        labels = [label for label, _key, fpr in known if fpr and result.fingerprint and fpr.upper() == result.fingerprint.upper()]
        if labels:
            return f"{' and '.join(labels)} (key {result.key_id})"
    return f"key(s) {', '.join(result.signer_key_ids) or '?'} ({result.describe()})"


def expected_builder(builder_url):
    """``(label, armored key)`` of the builder at ``builder_url``: us, or an active Remote
    (raises ChangesError if it is neither)."""
    from mini_buildd.pipeline import remotes  # pylint: disable=import-outside-toplevel
    from mini_buildd.models import Daemon  # pylint: disable=import-outside-toplevel
    if not builder_url:
        raise changes.ChangesError("no builder recorded for this build")
    url = remotes.normalize_url(builder_url)
    if url == remotes.normalize_url(remotes.our_url()):
        return f"this instance {url}", Daemon.get().gnupg().pub_key()
    for remote in _active_remotes():
        if remotes.remote_url(remote) == url:
            return f"remote {url}", remote.key
    raise changes.ChangesError(f"builder {url} is neither this instance nor an active remote")


def check_buildresult_signer(bres, builder_url):
    """Raise ChangesError unless ``bres`` (a Buildresult) is signed by the key of the builder the
    request was sent to (``builder_url``: our own HTTP URL, or an active Remote's), by a key that
    has not expired, and all its files are intact. The error names the expected builder and the
    actual signer."""
    try:
        label, key = expected_builder(builder_url)
    except changes.ChangesError as e:
        raise changes.ChangesError(f"{bres.name}: refused: {e}") from e
    try:
        with gnupg.TmpKeyring(parent=config.paths.tmp) as keyring:
            keyring.add_pub_key(key)
            result = bres.signature_check(keyring)
        _refuse_expired(bres, result)
    except changes.ChangesError as e:
        raise changes.ChangesError(f"{bres.name}: buildresult not signed by the builder the request was sent to: "
                                   f"expected {label}, signed by {describe_signer(bres)} ({str(e).removeprefix(bres.name + ': ')})") from e
    bres.check_files()
    LOG.debug("%s: signed by its builder %s", bres.name, label)


# ------------------------------------------------------------------------------------------------ buildrequests
def timecode_datetime(timecode):
    """A ``changes.TIMECODE_FORMAT`` string as an aware UTC datetime (raises ChangesError)."""
    try:
        return datetime.datetime.strptime(timecode, changes.TIMECODE_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError) as e:
        raise changes.ChangesError(f"malformed timecode {timecode!r}") from e


def check_fresh(breq, now=None):
    """Raise ChangesError unless ``breq``'s timecode is within [now - MAX_BUILDREQUEST_AGE,
    now + MAX_CLOCK_SKEW]."""
    now = now or _now()
    when = timecode_datetime(breq.timecode)
    if when < now - MAX_BUILDREQUEST_AGE:
        raise changes.ChangesError(f"{breq.name}: stale buildrequest (timecode {breq.timecode} = {_iso(when)} "
                                   f"older than {_span(MAX_BUILDREQUEST_AGE)})")
    if when > now + MAX_CLOCK_SKEW:
        raise changes.ChangesError(f"{breq.name}: buildrequest from the future (timecode {breq.timecode} = {_iso(when)} "
                                   f"more than {_span(MAX_CLOCK_SKEW)} ahead of our clock)")


def request_digest(breq):
    """SHA-256 (hex) of the signed buildrequest file's bytes: its identity in the accepted record."""
    return files.sha256(breq.path)


def _record_dir():
    path = config.paths.accepted_requests
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _read_record(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        LOG.warning("Accepted buildrequest record %s unreadable (%s): treated as accepted just now.", path.name, e)
        return {"accepted": _iso(_now()), "expires": (_now() + MAX_BUILDREQUEST_AGE).timestamp()}


def accepted_before(breq):
    """The record (dict: ``accepted``, ``bkey``, ``expires``) of an earlier acceptance of the same
    signed buildrequest, or None."""
    return _read_record(_record_dir() / request_digest(breq))


def prune_accepted(now=None):
    """Drop records of buildrequests that would be refused as stale by now; return how many."""
    now = now or _now()
    pruned = 0
    with _LOCK:
        for path in _record_dir().iterdir():
            if path.name.startswith("."):
                if now.timestamp() - path.stat().st_mtime > 3600:   # left over from a crash while recording
                    path.unlink(missing_ok=True)
                continue
            record = _read_record(path)
            if record is not None and float(record.get("expires", 0)) < now.timestamp():
                path.unlink(missing_ok=True)
                pruned += 1
    if pruned:
        LOG.info("Pruned %d expired accepted-buildrequest record(s).", pruned)
    return pruned


def _check_addressed_to_us(breq):
    from mini_buildd.pipeline import remotes  # pylint: disable=import-outside-toplevel
    builder = breq.x_get("Builder")
    ours = remotes.normalize_url(remotes.our_url())
    if not builder or remotes.normalize_url(builder) != ours:
        raise changes.ChangesError(f"{breq.name}: buildrequest addressed to builder {builder or '(none)'}, not to us ({ours})")


def check_buildrequest(breq, now=None):
    """Raise ChangesError unless ``breq`` is signed by us or an active remote (files intact), is
    addressed to us, its timecode is fresh, and it was not accepted before."""
    check_remote_signed(breq)
    _check_addressed_to_us(breq)
    check_fresh(breq, now=now)
    try:
        prune_accepted(now=now)
    except OSError as e:
        LOG.warning("Pruning accepted buildrequests failed: %s", e)
    record = accepted_before(breq)
    if record is not None:
        raise changes.ChangesError(f"{breq.name}: replayed buildrequest (accepted before at {record.get('accepted', '?')})")


def accept_buildrequest(breq, now=None):
    """Record ``breq`` as accepted (atomic, also across processes; survives restarts). Raises
    ChangesError "replayed buildrequest" if it was recorded meanwhile (a concurrent copy): the
    caller must then refuse it."""
    now = now or _now()
    directory = _record_dir()
    digest = request_digest(breq)
    expires = max(timecode_datetime(breq.timecode), now) + MAX_BUILDREQUEST_AGE + MAX_CLOCK_SKEW
    record = {"accepted": _iso(now), "bkey": breq.bkey, "name": breq.name, "expires": expires.timestamp()}
    fd, tmp = tempfile.mkstemp(prefix=".", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, directory / digest)   # atomic and exclusive: fails if recorded before
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise
            earlier = _read_record(directory / digest) or {}
            raise changes.ChangesError(f"{breq.name}: replayed buildrequest (accepted before at {earlier.get('accepted', '?')})") from None
    finally:
        os.unlink(tmp)
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    LOG.info("Accepted buildrequest %s (%s).", breq.name, digest[:16])
