"""Distributed building (upstream §7): everything this instance says to other instances about
building, and the one place that runs a Remote's wake command.

- :func:`fetch_status` / :func:`status_waking`: a remote's ``status`` call (2 s), waking it first
  with its wake command when it does not answer.
- :func:`check`: the Remote check: status, the signed handshake both ways, our URL in the remote's
  ``remotes`` list, remote running (load >= 0).
- :func:`handshake` / :func:`answer_handshake`: challenge-response. The caller signs a fresh random
  challenge (and its URL); the callee, if a Remote's key made that signature, answers with the
  challenge, addressed to the caller, signed by its own key; the caller checks that answer against
  the key it stored for the remote and its own challenge, so a recorded answer can't be replayed.
  Both texts have a strict form, so the call never signs anything else (no signing oracle).
- :func:`select_builder`: ourselves plus every active (or auto-reactivating) remote that lists the
  ``codename:arch``, tried in ascending load; equal loads go to the builder used least recently
  (fair, instead of upstream's "equal loads shadow each other"); the first builder whose FTP
  incoming takes the buildrequest wins. The buildrequest's ``Builder`` and ``Buildlog-Building``
  fields are set to the chosen builder and the request re-signed before each attempt.
- :class:`BuilderWatch`: beyond upstream: polls (run by the engine) the remote builders holding the
  packager's outstanding builds; a builder that does not answer for :data:`REDISPATCH_TIMEOUT`
  seconds gets its build taken away (the packager re-dispatches it; a late result is ignored).
- :func:`on_handshake`: a remote that shook hands with us while its Remote here waits for
  reactivation is checked again shortly after, so a two-sided setup converges without a second
  manual check.
- :func:`wake`: the ``wake`` API call.

Time limits are module constants; the two for re-dispatch can be set from the environment
(``MINI_BUILDD_REDISPATCH_TIMEOUT``, ``MINI_BUILDD_BUILDER_POLL``: seconds) when the daemon starts.
"""

import logging
import os
import pathlib
import re
import secrets
import threading
import time

from mini_buildd.tools import call, gnupg
from mini_buildd import config, errors, instance, net
from mini_buildd.models import Chroot, Daemon, Remote, StatusModel
from mini_buildd.pipeline import ftpd

LOG = logging.getLogger(__name__)


def _env_seconds(name, default):
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        LOG.error("%s: not a number of seconds: %r (using %s)", name, os.environ.get(name), default)
        return float(default)
    return max(0.1, value)


#: The remote's ``status`` call timeout (upstream: 2 s).
STATUS_TIMEOUT = 2.0
#: Timeout of the handshake call (signing and verifying on the other side take a moment).
HANDSHAKE_TIMEOUT = 20.0
#: Wake command: seconds to sleep after each run, and runs, when waking internally (upstream §7).
WAKE_SLEEP, WAKE_ATTEMPTS = 5, 2
#: A remote builder that holds a build and does not answer its status call for this long loses it.
REDISPATCH_TIMEOUT = _env_seconds("MINI_BUILDD_REDISPATCH_TIMEOUT", 600)
#: How often the builders holding builds are polled.
BUILDER_POLL = _env_seconds("MINI_BUILDD_BUILDER_POLL", 30)
#: After a handshake from a remote waiting for reactivation: delay and attempts of the re-check.
RECHECK_DELAY, RECHECK_ATTEMPTS = 2.0, 5


class RemoteError(errors.ToolError):
    """Talking to a remote failed; the message says what to fix."""


class NotKnownYet(RemoteError):
    """The remote answers but does not (yet) know us: no Remote for us there, or not active."""


# ------------------------------------------------------------------------------------------------ URLs
def normalize_url(url_or_endpoint):
    """Comparable form of an instance URL: scheme and host lower case, no trailing slash."""
    try:
        url = net.client_url(url_or_endpoint)
    except net.EndpointError:
        url = str(url_or_endpoint)
    m = re.match(r"^([A-Za-z]+)://([^/]*)(.*)$", url.strip())
    if not m:
        return url.strip().rstrip("/")
    return f"{m.group(1).lower()}://{m.group(2).lower()}{m.group(3).rstrip('/')}"


def remote_url(remote):
    return normalize_url(remote.http)


# ------------------------------------------------------------------------------------------------ status, wake
def fetch_status(remote_or_url, timeout=STATUS_TIMEOUT):
    """The remote's ``status`` call result (raises :class:`RemoteError`)."""
    import requests  # pylint: disable=import-outside-toplevel
    endpoint = getattr(remote_or_url, "http", remote_or_url)
    try:
        status = net.fetch_api(endpoint, "status", timeout=timeout)
    except (requests.RequestException, ValueError) as e:
        raise RemoteError(f"Status of {endpoint} unavailable: {e}") from e
    if not isinstance(status, dict):
        raise RemoteError(f"Status of {endpoint}: unexpected answer {status!r}")
    return status


def run_wake_command(remote):
    """Run the remote's wake command (a shell command line)."""
    if not remote.wake_command:
        raise RemoteError(f"Remote {remote} has no wake command.")
    LOG.info("Waking remote %s: %s", remote, remote.wake_command)
    try:
        call.run(["/bin/sh", "-c", remote.wake_command], timeout=60, log_level=logging.INFO)
    except call.CallError as e:
        raise RemoteError(f"Wake command of {remote} failed: {e}") from e


def status_waking(remote, sleep=WAKE_SLEEP, attempts=WAKE_ATTEMPTS):
    """The remote's status; when it does not answer and it has a wake command, wake it (``attempts``
    runs, ``sleep`` seconds after each) and ask again."""
    try:
        return fetch_status(remote)
    except RemoteError as e:
        if not remote.wake_command:
            raise
        first = e
    for attempt in range(1, max(1, int(attempts)) + 1):
        run_wake_command(remote)
        time.sleep(max(0, sleep))
        try:
            status = fetch_status(remote)
            LOG.info("Remote %s woke up (attempt %d).", remote, attempt)
            return status
        except RemoteError as e:
            LOG.info("Remote %s still asleep after wake attempt %d: %s", remote, attempt, e)
    raise RemoteError(f"{first} (and still after {attempts} wake attempt(s))")


def wake(remote, sleep=5, attempts=3):
    """API ``wake``: wake ``remote`` (its HTTP endpoint) with its wake command; return its status."""
    obj = Remote.objects.filter(http=remote).first()
    if obj is None:
        raise ValueError(f"No remote '{remote}'.")
    if not obj.wake_command:
        raise ValueError(f"Remote '{remote}' has no wake command.")
    try:
        return status_waking(obj, sleep=sleep, attempts=attempts)
    except RemoteError as e:
        raise ValueError(str(e)) from e


# ------------------------------------------------------------------------------------------------ check
def fetch_key(remote):
    """The remote's armored public key (prepare; wakes the remote first when needed)."""
    import requests  # pylint: disable=import-outside-toplevel
    if remote.wake_command:
        status_waking(remote)
    try:
        key = net.fetch_api(remote.http, "pub_key", timeout=10)
    except (requests.RequestException, ValueError) as e:
        raise RemoteError(f"Can't get the public key of {remote.http}: {e}") from e
    if not isinstance(key, str) or "BEGIN PGP PUBLIC KEY BLOCK" not in key:
        raise RemoteError(f"{remote.http} did not answer with a public key.")
    return key


# ------------------------------------------------------------------------------------------------ handshake
#: First line of a handshake request (signed by the caller) and of its answer (signed by the callee).
HANDSHAKE_REQUEST, HANDSHAKE_ANSWER = "mini-buildd handshake request", "mini-buildd handshake answer"
#: Fields of each, in this order, one ``Name: value`` line each, nothing else.
_HANDSHAKE_FIELDS = {HANDSHAKE_REQUEST: ("Challenge", "From"),
                     HANDSHAKE_ANSWER: ("Challenge", "To", "By", "Fingerprint")}
_HANDSHAKE_VALUES = {
    "Challenge": re.compile(r"^[0-9a-f]{64}$", re.ASCII),
    "From": re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[!-~]{1,250}$", re.ASCII),
    "To": re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[!-~]{1,250}$", re.ASCII),
    "By": re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[!-~]{1,250}$", re.ASCII),
    "Fingerprint": re.compile(r"^[0-9A-F]{40,64}$", re.ASCII),
}


class HandshakeRefused(RemoteError, errors.Refused):
    """The ``handshake`` call refuses a request (not signed by a remote, or not a handshake request)."""

    http_status = errors.Refused.http_status


def new_challenge():
    """A fresh random challenge (256 bits, hex)."""
    return secrets.token_hex(32)


def handshake_text(kind, **fields):
    """The text of a handshake request or answer (``kind``: :data:`HANDSHAKE_REQUEST`/``_ANSWER``)."""
    names = _HANDSHAKE_FIELDS[kind]
    if set(fields) != set(names):
        raise ValueError(f"{kind}: fields {', '.join(names)} needed, got {', '.join(sorted(fields))}")
    lines = [kind] + [f"{name}: {fields[name]}" for name in names]
    parse_handshake(kind, "\n".join(lines))   # never sign what we would not accept
    return "\n".join(lines) + "\n"


def parse_handshake(kind, text):
    """The fields of a handshake request/answer text; raises ValueError unless it is exactly one
    (first line ``kind``, then its fields in order with well-formed values, nothing else). This
    strictness keeps the ``handshake`` call from ever signing anything but a handshake answer."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    names = _HANDSHAKE_FIELDS[kind]
    if len(lines) != len(names) + 1 or lines[0] != kind:
        raise ValueError(f"not a {kind}")
    fields = {}
    for name, line in zip(names, lines[1:]):
        prefix = f"{name}: "
        value = line[len(prefix):] if line.startswith(prefix) else None
        if value is None or not _HANDSHAKE_VALUES[name].match(value):
            raise ValueError(f"{kind}: bad or missing field {name}")
        fields[name] = value
    return fields


def answer_handshake(signed_message):
    """The ``handshake`` call: ``signed_message`` must be a handshake request signed by the key of
    one of our (not removed) Remotes; answer with its challenge, addressed to the caller, signed by
    us. Raises :class:`HandshakeRefused`."""
    remote, payload = None, None
    for candidate in Remote.objects.exclude(status=StatusModel.STATUS_REMOVED).order_by("http"):
        if not candidate.key:
            continue
        try:
            payload = gnupg.verify_message(signed_message, [candidate.key], tmp_parent=config.paths.tmp)
        except gnupg.GnupgError:
            continue
        remote = candidate
        break
    if remote is None:
        raise HandshakeRefused("Signed message does not match any remote's key")
    try:
        request = parse_handshake(HANDSHAKE_REQUEST, payload)
    except ValueError as e:
        LOG.warning("Handshake: message signed by remote %s is no handshake request: %s", remote, e)
        raise HandshakeRefused(f"Signed message is not a handshake request ({e})") from e
    if normalize_url(request["From"]) != remote_url(remote):
        LOG.info("Handshake: remote %s calls itself %s.", remote, request["From"])
    gpg = instance.gnupg()
    try:
        answer = gpg.sign_message(handshake_text(HANDSHAKE_ANSWER, Challenge=request["Challenge"], To=request["From"],
                                                 By=normalize_url(instance.http_url()), Fingerprint=gpg.get_secret_key()["fingerprint"].upper()))
    except (gnupg.GnupgError, TypeError) as e:
        raise RemoteError(f"Can't sign our handshake answer (prepare the Daemon): {e}") from e
    LOG.info("Handshake: answered remote %s.", remote)
    on_handshake(remote)
    return answer


def verify_handshake_answer(remote, answer, challenge):
    """Check ``answer`` (the ``handshake`` call's result) against the key stored for ``remote`` and
    the ``challenge`` we sent; return its fields. Raises :class:`RemoteError`: a replayed answer
    (other challenge), one meant for another caller, or one signed by another key fails."""
    try:
        payload = gnupg.verify_message(answer, [remote.key], tmp_parent=config.paths.tmp)
    except (ValueError, TypeError, gnupg.GnupgError) as e:
        raise RemoteError(f"Handshake answer of {remote.http} is not signed by the stored remote key "
                          f"{remote.key_long_id}: {e}") from e
    try:
        fields = parse_handshake(HANDSHAKE_ANSWER, payload)
    except ValueError as e:
        raise RemoteError(f"Handshake answer of {remote.http} is no handshake answer: {e}") from e
    if not secrets.compare_digest(fields["Challenge"], challenge):
        raise RemoteError(f"Handshake answer of {remote.http} does not answer our challenge (replayed answer?).")
    ours = normalize_url(instance.http_url())
    if normalize_url(fields["To"]) != ours:
        raise RemoteError(f"Handshake answer of {remote.http} is addressed to {fields['To']}, not to us ({ours}).")
    return fields


def handshake(remote):
    """Send a handshake request with a fresh random challenge, signed by us; the remote must accept
    it (it knows our key) and answer with that challenge, addressed to us, signed by the key we
    stored for it. Raises :class:`RemoteError`."""
    import requests  # pylint: disable=import-outside-toplevel
    challenge = new_challenge()
    try:
        signed = instance.gnupg().sign_message(handshake_text(HANDSHAKE_REQUEST, Challenge=challenge,
                                                              From=normalize_url(instance.http_url())))
    except gnupg.GnupgError as e:
        raise RemoteError(f"Can't sign our handshake message (prepare the Daemon): {e}") from e
    url = f"{net.client_url(remote.http)}/mini_buildd/api/handshake/"
    try:
        response = requests.get(url, params={"signed_message": signed, "output": "json"}, timeout=HANDSHAKE_TIMEOUT)
    except requests.RequestException as e:
        raise RemoteError(f"Handshake with {remote.http} failed: {e}") from e
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text[:300]
        raise NotKnownYet(f"{remote.http} refused our handshake ({response.status_code}: {detail}): "
                          f"it needs a Remote for {instance.http_url()} with our key, prepared there.")
    try:
        answer = response.json()
    except ValueError as e:
        raise RemoteError(f"Handshake answer of {remote.http} is not JSON: {e}") from e
    verify_handshake_answer(remote, answer, challenge)
    return True


def check(remote):
    """The Remote check (upstream §7); returns the remote's status. Raises :class:`RemoteError`."""
    status = status_waking(remote)
    handshake(remote)
    ours = normalize_url(instance.http_url())
    listed = [normalize_url(u) for u in status.get("remotes") or []]
    if ours not in listed:
        raise NotKnownYet(f"{remote.http} does not list us ({ours}) among its active remotes "
                          f"(it lists: {', '.join(listed) or 'none'}): activate our Remote there.")
    try:
        load = float(status.get("load", -1))
    except (TypeError, ValueError):
        load = -1.0
    if load < 0:
        raise RemoteError(f"{remote.http} is not running (load {load}): start it.")
    return status


def on_handshake(remote):
    """The ``handshake`` call accepted ``remote``: if its Remote here waits for reactivation, check
    it again in the background (the other side activates its Remote for us right after)."""
    if not remote.mbd_is_reactivate():
        return
    pk = remote.pk

    def recheck():
        from django.db import connection  # pylint: disable=import-outside-toplevel
        try:
            for _attempt in range(RECHECK_ATTEMPTS):
                time.sleep(RECHECK_DELAY)
                obj = Remote.objects.filter(pk=pk).first()
                if obj is None or not obj.mbd_is_reactivate():
                    return
                try:
                    obj.mbd_check()
                    LOG.info("Remote %s: reactivated after its handshake.", obj)
                    return
                except Exception as e:  # pylint: disable=broad-except  # thread boundary: the re-check thread retries
                    LOG.info("Remote %s: re-check after handshake failed (will retry): %s", obj, e)
        finally:
            connection.close()
    threading.Thread(target=recheck, name=f"recheck {pk}", daemon=True).start()


# ------------------------------------------------------------------------------------------------ builder choice
def retarget_buildrequest(breq_path, builder_url, instance_gnupg):
    """Set ``X-Mini-Buildd-Builder`` (and ``-Buildlog-Building``) of a buildrequest to ``builder_url``
    and sign it again."""
    path = pathlib.Path(breq_path)
    text = gnupg.unsign(path.read_text(encoding="utf-8"))
    lines = text.splitlines()
    buildlog = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("X-Mini-Buildd-Buildlog:")), "")
    out, seen = [], False
    for line in lines:
        if line.startswith("X-Mini-Buildd-Builder:"):
            line, seen = f"X-Mini-Buildd-Builder: {builder_url}", True
        elif line.startswith("X-Mini-Buildd-Buildlog-Building:"):
            line = f"X-Mini-Buildd-Buildlog-Building: {builder_url}/mini_buildd/builds-dir/{buildlog}"
        out.append(line)
    if not seen:
        raise RemoteError(f"{path.name}: no X-Mini-Buildd-Builder field.")
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    instance_gnupg.sign_file(path)


class Candidate:
    """One builder that could take a buildrequest."""

    def __init__(self, url, incoming_url, load, remote=None):
        self.url, self.incoming_url, self.load, self.remote = url, incoming_url, load, remote

    def __repr__(self):
        return f"{self.url} (load {self.load:.2f})"


def local_builder_state(codename_arch, own_load):
    """Why this instance does (not) build ``codename_arch``, in words: the builder's state and the
    chroot's status with its last message (what an administrator looks at first)."""
    codename, arch = codename_arch.split(":")
    chroot = Chroot.objects.filter(source__codename=codename, architecture__name=arch).first()
    builder = "builder stopped" if own_load is None or own_load < 0 else "builder running"
    if chroot is None:
        return f"{builder}; no chroot {codename_arch} configured"
    message = f": {chroot.status_message}" if chroot.status_message else ""
    return f"{builder}; chroot {codename_arch} {chroot.mbd_status_display()}{message}"


class Selector:
    """Builder choice with a memory of who was used last (for fair tie breaking)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._last_used = {}   # url -> counter
        self._counter = 0

    def order(self, candidates):
        """Ascending load; equal loads: least recently used first."""
        with self._lock:
            return sorted(candidates, key=lambda c: (round(c.load, 6), self._last_used.get(c.url, -1), c.url))

    def used(self, url):
        with self._lock:
            self._counter += 1
            self._last_used[url] = self._counter

    def candidates(self, codename_arch, exclude=(), own_load=None):
        """Ourselves (if we have the chroot and run) plus every usable active/reactivating remote."""
        exclude = {normalize_url(u) for u in exclude}
        result = []
        codename, arch = codename_arch.split(":")
        own = normalize_url(instance.http_url())
        if own not in exclude and own_load is not None and own_load >= 0 and Chroot.objects.filter(
                source__codename=codename, architecture__name=arch, status=Chroot.STATUS_ACTIVE).exists():
            result.append(Candidate(own, instance.ftp_url(Daemon.get()), float(own_load)))
        for remote in Remote.objects.order_by("http"):
            if not remote.mbd_is_active_or_reactivate() or remote_url(remote) in exclude:
                continue
            try:
                if remote.mbd_is_reactivate():
                    remote.mbd_check()   # becomes Active on success
                status = status_waking(remote)
            except Exception as e:  # pylint: disable=broad-except  # an unusable remote (any failure) is skipped as a builder
                LOG.info("Builder choice for %s: remote %s not usable: %s", codename_arch, remote, e)
                continue
            load = float(status.get("load", -1))
            if load < 0 or codename_arch not in (status.get("chroots") or []):
                continue
            if not status.get("incoming_url"):
                LOG.warning("Remote %s: status lacks incoming_url.", remote)
                continue
            result.append(Candidate(remote_url(remote), status["incoming_url"], load, remote))
        return result

    def select(self, breq_path, codename_arch, instance_gnupg, exclude=(), own_load=None, upload=None):
        """Send the buildrequest to the first builder that takes it; return that builder's URL."""
        upload = upload or (lambda path, url: ftpd.upload(path, url, force=True))
        candidates = self.order(self.candidates(codename_arch, exclude=exclude, own_load=own_load))
        if not candidates:
            raise RemoteError(f"No builder for {codename_arch}" + (f" (excluding {', '.join(sorted(exclude))})" if exclude else "")
                              + f": no active chroot here ({local_builder_state(codename_arch, own_load)}) and no active remote lists it.")
        failures = []
        for c in candidates:
            try:
                retarget_buildrequest(breq_path, c.url, instance_gnupg)
                upload(breq_path, c.incoming_url)
            except Exception as e:  # pylint: disable=broad-except  # a builder not taking it (any failure): try the next one
                LOG.warning("Builder %s did not take %s: %s", c, os.path.basename(str(breq_path)), e)
                failures.append(f"{c.url}: {e}")
                continue
            self.used(c.url)
            LOG.info("Buildrequest %s sent to builder %s (candidates: %s).", os.path.basename(str(breq_path)), c, candidates)
            return c.url
        raise RemoteError(f"No builder took the buildrequest for {codename_arch}: " + "; ".join(failures))


# ------------------------------------------------------------------------------------------------ re-dispatch
class BuilderWatch:
    """Polls the remote builders that hold outstanding builds of ``packager``; hands a build whose
    builder has not answered for ``timeout`` seconds back with ``packager.submit("redispatch", ...)``.

    :meth:`work` is one poll; the engine runs it every ``poll`` seconds off the reactor thread
    (never two at once) with a :class:`mini_buildd.cron.PollService`."""

    def __init__(self, packager, timeout=None, poll=None, status=None):
        self.packager = packager
        self.timeout = REDISPATCH_TIMEOUT if timeout is None else timeout
        self.poll = BUILDER_POLL if poll is None else poll
        self._status = status or fetch_status
        self._last_answer = {}     # (bkey, builder url) -> monotonic time of the last answer (or dispatch)

    def work(self):
        """One round (pool thread); a failure is logged."""
        try:
            self.round()
        except Exception:  # pylint: disable=broad-except  # thread boundary: the watch goes on with the next round
            LOG.exception("Builder watch round failed")

    def outstanding(self):
        """``[(package key, arch, builder url)]`` of builds held by other instances."""
        own = normalize_url(instance.http_url())
        packages = self.packager.ongoing_packages()
        result = []
        for p in packages:
            for arch, url in list(getattr(p, "builders", {}).items()):
                if arch not in p.buildresults and url and normalize_url(url) != own:
                    result.append((p.key, arch, url))
        return result

    def round(self, now=None):
        """One poll over all outstanding remote builds; returns the re-dispatches requested."""
        now = time.monotonic() if now is None else now
        held = self.outstanding()
        alive = {}
        requested = []
        current = set()
        for key, arch, url in held:
            ident = (f"{key}/{arch}", url)
            current.add(ident)
            self._last_answer.setdefault(ident, now)
            if url not in alive:
                try:
                    alive[url] = float(self._status(url).get("load", -1)) >= 0
                except Exception as e:  # pylint: disable=broad-except  # any failure means the builder does not answer
                    LOG.info("Builder %s (holds %s) does not answer: %s", url, ident[0], e)
                    alive[url] = False
            if alive[url]:
                self._last_answer[ident] = now
            elif now - self._last_answer[ident] >= self.timeout:
                LOG.warning("Builder %s has not answered for %.0fs while holding %s: re-dispatching.",
                            url, now - self._last_answer[ident], ident[0])
                self.packager.submit("redispatch", (key, arch, url))
                self._last_answer[ident] = now   # give the re-dispatch a full period
                requested.append((key, arch, url))
        for ident in set(self._last_answer) - current:
            del self._last_answer[ident]
        return requested
