"""Who may send what: the keyrings that decide whether an upload, a buildrequest or a buildresult
is trusted (upstream §1.4 steps 3b, 4, 5; DESIGN "Trust model").

- user uploads: the repository's uploaders keyring (:func:`mini_buildd.instance.uploaders_keyring`);
- buildrequests: signed by our own key or an active remote's (:func:`mini_buildd.instance.check_remote_signed`
  with :func:`active_remotes`), meant
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

from mini_buildd import changes, config, files, instance
from mini_buildd.models import Remote
from mini_buildd.pipeline import remotes
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


# ------------------------------------------------------------------------------------------------ remotes
def active_remotes():
    """The Remotes whose signatures we accept: active (or auto-reactivating) ones with a key."""
    return [r for r in Remote.objects.order_by("http") if r.mbd_is_active_or_reactivate() and r.key]


# ------------------------------------------------------------------------------------------------ who signed
def _known_signers():
    """``[(label, armored key, fingerprint)]``: our key and every Remote's stored key (any status)."""
    gpg = instance.gnupg()
    own = gpg.get_secret_key() or {}
    result = [(f"this instance {remotes.normalize_url(instance.http_url())}", gpg.pub_key(), own.get("fingerprint", ""))]
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
    if not builder_url:
        raise changes.ChangesError("no builder recorded for this build")
    url = remotes.normalize_url(builder_url)
    if url == remotes.normalize_url(instance.http_url()):
        return f"this instance {url}", instance.gnupg().pub_key()
    for remote in active_remotes():
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
        instance.refuse_expired(bres, result)
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
    builder = breq.x_get("Builder")
    ours = remotes.normalize_url(instance.http_url())
    if not builder or remotes.normalize_url(builder) != ours:
        raise changes.ChangesError(f"{breq.name}: buildrequest addressed to builder {builder or '(none)'}, not to us ({ours})")


def check_buildrequest(breq, now=None):
    """Raise ChangesError unless ``breq`` is signed by us or an active remote (files intact), is
    addressed to us, its timecode is fresh, and it was not accepted before."""
    instance.check_remote_signed(breq, active_remotes())
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
