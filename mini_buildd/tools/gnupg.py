"""GnuPG keyrings: the wrapper around ``gpg`` and ``gpgconf`` for every keyring mini-buildd uses.

Owns:

- the instance keyring (``~/.gnupg``) and its one secret key, the Daemon key (upstream §2.2):
  generation from a batch template, signing (messages, detached, ``.changes``/``.dsc`` files in
  place), verification, export of the public key;
- temporary keyrings (:class:`TmpKeyring`) used to look at foreign keys and to check signatures
  against a chosen set of keys: AptKey import from installed archive keyrings or a keyserver
  (§2.3), Remote/Uploader keys (§2.6), archive ``Release`` files, the Remote handshake (§7);
- the life time of every ``gpg-agent``/``dirmngr``/``keyboxd`` started for any of these homes:
  nothing of it may outlive its keyring (§10: upstream left one agent per temp keyring behind).

What needs no keyring of ours (clear-signed text, parsing gpg's signature status into a
:class:`VerifyResult`, ``gpgv`` checks, :class:`GnupgError`) is :mod:`mini_buildd.tools.gnupg_signatures`;
its names are importable from here too.

High-level operations go through python-gnupg; direct ``gpg``/``gpgconf`` calls go through
:func:`mini_buildd.tools.call.run`. gpg always runs with ``--batch --no-tty`` and loopback
pinentry, so it never prompts; keys made here carry no passphrase.
"""

import datetime
import glob as globmod
import logging
import os
import pathlib
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Iterable
from typing import Any, Optional, Union

import gnupg

from mini_buildd.tools import call
from mini_buildd.tools.gnupg_signatures import GnupgError, VerifyResult, gpgv_verify, is_clearsigned, unsign

LOG = logging.getLogger(__name__)

#: A key description (see :func:`key_info`): fingerprint, long_id, name, uids, created, expires.
KeyDict = dict[str, Any]
#: Signed data: a path (``os.PathLike``, or a one-line ``str``), signed text, or bytes.
Signed = Union[str, bytes, "os.PathLike[str]"]

#: Default gpg batch key template of the Daemon key (``Daemon.gnupg_template``): RSA 4096, no expiry.
DEFAULT_TEMPLATE = "Key-Type: RSA\nKey-Length: 4096\nExpire-Date: 0"

#: Default keyserver for AptKeys given by id only.
DEFAULT_KEYSERVER = "keyserver.ubuntu.com"

#: Installed archive keyrings tried before any keyserver.
ARCHIVE_KEYRINGS_GLOB = "/usr/share/keyrings/*archive*.gpg"

#: Text exchanged in the Remote handshake (§7).
HANDSHAKE_MESSAGE = "Hand Shake"

#: dirmngr settings for temporary keyrings: no Tor auto-detection (breaks keyserver access since
#: gpg 2.1.22, upstream §10) and bounded connect time.
_DIRMNGR_CONF = "no-use-tor\nconnect-quick-timeout 10\nconnect-timeout 30\n"

#: Background programs gpg starts per home directory.
_DAEMONS = ("gpg-agent", "dirmngr", "keyboxd", "scdaemon")

#: Template keywords we always set ourselves.
_OWN_TEMPLATE_KEYS = ("name-real", "name-email", "passphrase",
                      "%commit", "%no-protection", "%dry-run", "%ask-passphrase")

__all__ = [
    "DEFAULT_TEMPLATE", "DEFAULT_KEYSERVER", "ARCHIVE_KEYRINGS_GLOB", "HANDSHAKE_MESSAGE",
    "GnupgError", "VerifyResult", "gpgv_verify", "is_clearsigned", "unsign",
    "parse_template", "agent_pids", "kill_agents", "Gnupg", "TmpKeyring", "key_info", "fetch_key", "verify_message",
    "validate_template",
]


# ---------------------------------------------------------------------------------------------
# Helpers without any keyring
# ---------------------------------------------------------------------------------------------

def _utc(epoch: Optional[str]) -> Optional[datetime.datetime]:
    """Datetime (UTC, aware) from a gpg epoch string; None for empty/0."""
    if not epoch or str(epoch) == "0":
        return None
    return datetime.datetime.fromtimestamp(int(epoch), tz=datetime.timezone.utc)


def _unescape_colons(value: str) -> str:
    """Undo gpg's ``--with-colons`` escaping (``\\xNN``) in a user id."""
    if "\\x" not in value:
        return value
    raw = re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]), value.encode("utf-8"))
    return raw.decode("utf-8", errors="replace")


def _key_dict(key: dict[str, Any]) -> KeyDict:
    """Our key description from one python-gnupg ``list_keys()`` entry."""
    uids = [_unescape_colons(u) for u in key.get("uids") or []]
    return {
        "fingerprint": key["fingerprint"],
        "long_id": key["keyid"],
        "name": uids[0] if uids else "",
        "uids": uids,
        "created": _utc(key.get("date")),
        "expires": _utc(key.get("expires")),
    }


def _normalize_key_id(key_id: object) -> str:
    kid = re.sub(r"\s+", "", str(key_id))
    if kid.lower().startswith("0x"):
        kid = kid[2:]
    if not re.fullmatch(r"[0-9A-Fa-f]{8,40}", kid):
        raise GnupgError(f"Not a GnuPG key id or fingerprint: {kid!r}")
    return kid.upper()


def parse_template(template: str) -> list[tuple[str, str]]:
    """Parse a gpg batch key template into ``[(keyword, value), ...]``.

    Empty lines and ``#`` comments are skipped; control lines (``%...``) keep an empty value.
    Raises :class:`GnupgError` on a line that is neither. This is a syntax check only; see
    :func:`validate_template` for gpg's own opinion.
    """
    items: list[tuple[str, str]] = []
    for number, raw in enumerate(str(template).splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("%"):
            items.append((line.split()[0], ""))
            continue
        keyword, colon, value = line.partition(":")
        if not colon or not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", keyword.strip()) or not value.strip():
            raise GnupgError(f"GnuPG key template line {number}: expected 'Keyword: value', got {line!r}")
        items.append((keyword.strip(), value.strip()))
    if not any(k.lower() == "key-type" for k, _v in items):
        raise GnupgError("GnuPG key template has no 'Key-Type:'")
    return items


def _gen_key_input(template: str, name_real: str, name_email: str, dry_run: bool = False) -> str:
    """Full ``gpg --gen-key`` batch input: the template plus our name, no protection, commit."""
    for what, value in (("Name-Real", name_real), ("Name-Email", name_email)):
        if not value or "\n" in value or "\r" in value:
            raise GnupgError(f"Invalid {what} for GnuPG key: {value!r}")
    lines = []
    for keyword, value in parse_template(template):
        if keyword.lower() in _OWN_TEMPLATE_KEYS:
            LOG.warning("GnuPG key template: ignoring '%s' (set by mini-buildd)", keyword)
            continue
        lines.append(f"{keyword}: {value}" if value else keyword)
    lines += [f"Name-Real: {name_real}", f"Name-Email: {name_email}", "%no-protection"]
    if dry_run:
        lines.append("%dry-run")
    lines.append("%commit")
    return "\n".join(lines) + "\n"


def _run(argv: call.Argv, **kwargs: Any) -> str:
    """:func:`call.run` with every argument as ``str``."""
    return call.run([str(a) for a in argv], **kwargs)


# ---------------------------------------------------------------------------------------------
# Agent processes
# ---------------------------------------------------------------------------------------------

def agent_pids(homedir: call.FsPath) -> list[int]:
    """Pids of gpg background programs (agent, dirmngr, keyboxd, scdaemon) running for ``homedir``."""
    home = str(pathlib.Path(homedir).resolve())
    pids: list[int] = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not argv or os.path.basename(argv[0]) not in _DAEMONS:
            continue
        if home in argv or f"--homedir={home}" in argv:
            pids.append(int(entry.name))
    return pids


def _wait_gone(homedir: call.FsPath, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while True:
        pids = agent_pids(homedir)
        if not pids or time.monotonic() >= deadline:
            return pids
        time.sleep(0.05)


def kill_agents(homedir: call.FsPath, remove_socketdir: bool = False) -> None:
    """Stop every gpg-agent/dirmngr/keyboxd of ``homedir``: ``gpgconf --kill all``, then signals
    to the stragglers' pids. ``remove_socketdir`` also drops a ``/run/user`` socket dir (temp homes)."""
    home = pathlib.Path(homedir).resolve()
    if home.is_dir():
        _run(["gpgconf", "--homedir", home, "--kill", "all"], check=False)
        left = _wait_gone(home, 5)
    else:  # gpgconf needs the home; daemons of a deleted home get signals right away
        left = agent_pids(home)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not left:
            break
        LOG.warning("gpg daemons of %s survived 'gpgconf --kill all', sending %s: %s", home, sig.name, left)  # pylint: disable=no-member  # a signal.Signals
        for pid in left:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        left = _wait_gone(home, 3)
    if left:
        raise GnupgError(f"Could not stop gpg daemons of {home}: pids {left}")
    if remove_socketdir and home.is_dir():
        _run(["gpgconf", "--homedir", home, "--remove-socketdir"], check=False)


# ---------------------------------------------------------------------------------------------
# Keyrings
# ---------------------------------------------------------------------------------------------

class _GpgHome:
    """One gpg home directory: python-gnupg access, CLI access, key listing, agents."""

    def __init__(self, homedir: call.FsPath, options: Iterable[object] = (), autostart: bool = True,
                 tmp_parent: Optional[call.FsPath] = None) -> None:
        self.homedir = pathlib.Path(homedir).resolve()
        self.homedir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.homedir, 0o700)
        # gpg >= 2.4.1 puts "use-keyboxd" into a new home's common.conf (one more daemon, no
        # pubring.kbx for gpgv); an empty common.conf keeps the classic keybox. gpg 2.2 ignores it.
        common_conf = self.homedir / "common.conf"
        if not common_conf.exists() and not any(self.homedir.glob("pubring.*")):
            common_conf.touch(mode=0o600)
        self._options = [str(o) for o in options]
        self._autostart = autostart
        self._tmp_parent = tmp_parent
        self._gpg: Optional[gnupg.GPG] = None

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.homedir})"

    def _common_options(self, autostart: Optional[bool] = None) -> list[str]:
        opts = ["--pinentry-mode", "loopback"]
        if not (self._autostart if autostart is None else autostart):
            opts.append("--no-autostart")
        return opts + self._options

    @property
    def gpg(self) -> gnupg.GPG:
        """python-gnupg handle on this home."""
        if self._gpg is None:
            self._gpg = gnupg.GPG(gnupghome=str(self.homedir), options=self._common_options())
            self._gpg.encoding = "utf-8"
            self._gpg.decode_errors = "replace"
        return self._gpg

    def run_gpg(self, args: Iterable[call.Arg], autostart: Optional[bool] = None, **kwargs: Any) -> str:
        """Run ``gpg`` on this home, never interactive; returns combined output (see :func:`call.run`)."""
        argv: list[call.Arg]
        argv = ["gpg", "--homedir", self.homedir, "--batch", "--no-tty", "--yes",
                *self._common_options(autostart), *args]
        return _run(argv, **kwargs)

    def _tmpdir(self) -> "tempfile.TemporaryDirectory[str]":
        if self._tmp_parent is not None:
            pathlib.Path(self._tmp_parent).mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(prefix="mbd-gpg-io-", dir=self._tmp_parent)

    # Keys --------------------------------------------------------------------------------
    def list_keys(self) -> list[KeyDict]:
        """Public keys in this keyring (key dicts, see :func:`key_info`)."""
        return [_key_dict(k) for k in self.gpg.list_keys()]

    def key_info(self, key_id: str) -> Optional[KeyDict]:
        """Key dict of ``key_id`` (any id/fingerprint form gpg takes) in this keyring, or None."""
        keys = self.gpg.list_keys(keys=[_normalize_key_id(key_id)])
        return _key_dict(keys[0]) if keys else None

    def add_pub_key(self, armored: Union[str, bytes]) -> list[str]:
        """Import (armored or binary) public key data; return the imported fingerprints."""
        data = armored.encode("utf-8") if isinstance(armored, str) else bytes(armored)
        result = self.gpg.import_keys(data)
        fingerprints = sorted(set(f for f in result.fingerprints if f))
        if not fingerprints:
            raise GnupgError(f"No GnuPG key could be imported into {self.homedir}: {result.stderr.strip()}")
        LOG.debug("Imported into %s: %s", self.homedir, fingerprints)
        return fingerprints

    def add_key_file(self, path: call.FsPath) -> list[str]:
        """Import a key file (binary keyring such as ``/usr/share/keyrings/*.gpg``, or armored)."""
        try:
            return self.add_pub_key(pathlib.Path(path).read_bytes())
        except GnupgError as e:
            raise GnupgError(f"{path}: {e}") from e

    def export(self, path: Optional[call.FsPath] = None, armor: bool = False, key_ids: Iterable[str] = ()) -> Any:
        """Export public keys (all, or ``key_ids``). Binary by default: usable as ``gpgv``/
        ``debootstrap --keyring``. Writes ``path`` (returned) or returns the data if no path."""
        data = self.gpg.export_keys([_normalize_key_id(k) for k in key_ids], armor=armor)
        if not data:
            raise GnupgError(f"No keys to export from {self.homedir}")
        if path is None:
            return data
        out = pathlib.Path(path)
        if armor:
            out.write_text(data, encoding="utf-8")
        else:
            out.write_bytes(data)
        return out

    # Verification ------------------------------------------------------------------------
    def verify_signature(self, signed: Signed, detached_sig: Optional[Signed] = None, accept_expired_keys: bool = True) -> VerifyResult:
        """Check ``signed`` against the keys of this keyring; return a :class:`VerifyResult`.

        ``signed`` is a path (``os.PathLike``, or a one-line ``str``), signed text (``str`` with line
        breaks) or ``bytes``. Without ``detached_sig`` it must carry its signature (clear-signed or
        inline); the verified payload is then in ``result.data``. ``detached_sig`` takes the same forms.
        """
        with self._tmpdir() as tmp_name:
            tmp = pathlib.Path(tmp_name)
            data_path = self._as_file(signed, tmp / "data")
            status_path = tmp / "status"
            if detached_sig is None:
                out_path = tmp / "payload"
                output = self.run_gpg(["--status-file", status_path, "--output", out_path, "--decrypt", data_path],
                                      autostart=False, check=False)
                payload = out_path.read_bytes() if out_path.exists() else None
            else:
                sig_path = self._as_file(detached_sig, tmp / "data.sig")
                output = self.run_gpg(["--status-file", status_path, "--verify", sig_path, data_path],
                                      autostart=False, check=False)
                payload = None
            status = status_path.read_text(errors="replace") if status_path.exists() else ""
        result = VerifyResult(status, accept_expired_keys=accept_expired_keys, output=output)
        result.data = payload if result.valid else None
        LOG.debug("Signature check in %s: %r", self.homedir, result)
        return result

    @staticmethod
    def _as_file(thing: Signed, path: pathlib.Path) -> pathlib.Path:
        if isinstance(thing, os.PathLike) or (isinstance(thing, str) and "\n" not in thing):
            return pathlib.Path(thing).resolve()
        path.write_bytes(thing.encode("utf-8") if isinstance(thing, str) else bytes(thing))
        return path

    # Processes ---------------------------------------------------------------------------
    def kill_agents(self) -> None:
        """``gpgconf --kill all`` for this home: no agent/dirmngr/keyboxd outlives us."""
        kill_agents(self.homedir)


class Gnupg(_GpgHome):
    """The instance keyring (``~/.gnupg``) holding exactly one secret key, the Daemon key.

    ``options``: extra gpg options for every call (e.g. ``--faked-system-time`` in tests);
    ``tmp_parent``: where temporary files and keyrings go (default: system temp dir).
    """

    def __init__(self, homedir: call.FsPath, options: Iterable[object] = (), tmp_parent: Optional[call.FsPath] = None) -> None:
        super().__init__(homedir, options=options, tmp_parent=tmp_parent)

    # The secret key ----------------------------------------------------------------------
    def _secret_keys(self) -> Any:
        return self.gpg.list_keys(secret=True)

    def get_secret_key(self) -> Optional[KeyDict]:
        """Key dict (fingerprint, long_id, name, created, expires) of the instance key, or None."""
        keys = self._secret_keys()
        if not keys:
            return None
        if len(keys) > 1:
            raise GnupgError(f"Expected exactly one secret key in {self.homedir}, found {len(keys)}: "
                             + ", ".join(k["fingerprint"] for k in keys))
        return _key_dict(keys[0])

    def _fingerprint(self) -> str:
        key = self.get_secret_key()
        if key is None:
            raise GnupgError(f"No secret key in {self.homedir}")
        return key["fingerprint"]

    def gen_secret_key(self, template: str, name_real: str, name_email: str) -> str:
        """Generate the instance key from a gpg batch ``template`` (see :data:`DEFAULT_TEMPLATE`).

        Name-Real/Name-Email come from the arguments; the key has no passphrase. Refuses if a
        secret key exists already. Returns the fingerprint. (Slow without entropy; upstream §10.)
        """
        existing = self._secret_keys()
        if existing:
            raise GnupgError(f"Secret key already exists in {self.homedir}: {existing[0]['fingerprint']}")
        key_input = _gen_key_input(template, name_real, name_email)
        LOG.info("Generating GnuPG key for '%s <%s>' in %s (may take a while) ...", name_real, name_email, self.homedir)
        started = time.monotonic()
        result = self.gpg.gen_key(key_input)
        if not result.fingerprint:
            raise GnupgError(f"GnuPG key generation failed in {self.homedir}: {result.stderr.strip()}")
        LOG.info("Generated GnuPG key %s in %.1fs", result.fingerprint, time.monotonic() - started)
        return result.fingerprint

    def remove_secret_key(self) -> None:
        """Delete secret and public part of the instance key (no-op without one)."""
        key = self.get_secret_key()
        if key is None:
            LOG.info("No secret key to remove in %s", self.homedir)
            return
        fpr = key["fingerprint"]
        for secret in (True, False):
            result = self.gpg.delete_keys(fpr, secret=secret, expect_passphrase=False)
            if not result:
                what = "secret" if secret else "public"
                raise GnupgError(f"Could not delete {what} key {fpr}: {result.status}: {result.stderr.strip()}")
        if self._secret_keys():
            raise GnupgError(f"Secret key {fpr} still present in {self.homedir} after removal")
        LOG.info("Removed GnuPG key %s from %s", fpr, self.homedir)

    def pub_key(self) -> str:
        """ASCII-armored public key of the instance key."""
        data = self.gpg.export_keys(self._fingerprint(), armor=True)
        if not data:
            raise GnupgError(f"Could not export public key from {self.homedir}")
        return data

    # Signing -----------------------------------------------------------------------------
    def _sign(self, data: Union[str, bytes], clear: bool, detach: bool) -> str:
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        result = self.gpg.sign(payload, keyid=self._fingerprint(), clearsign=clear, detach=detach)
        if not result or not result.data:
            raise GnupgError(f"Signing with {self.homedir} failed: {result.status}: {result.stderr.strip()}")
        return result.data.decode("utf-8")

    def sign(self, data: Union[str, bytes], clear: bool = True) -> str:
        """Sign ``data`` with the instance key: clear-signed text, or an armored signed message if not ``clear``."""
        return self._sign(data, clear=clear, detach=False)

    def sign_detached(self, data: Union[str, bytes]) -> str:
        """ASCII-armored detached signature of ``data``."""
        return self._sign(data, clear=False, detach=True)

    def sign_file(self, path: call.FsPath, clear: bool = True) -> None:
        """Sign a text file (``.changes``, ``.dsc``) in place; an existing clear signature is replaced."""
        file_path = pathlib.Path(path)
        text = unsign(file_path.read_text(encoding="utf-8"))
        signed = self.sign(text, clear=clear)
        tmp = file_path.with_name(f".{file_path.name}.signing")
        tmp.write_text(signed, encoding="utf-8")
        shutil.copymode(file_path, tmp)
        os.replace(tmp, file_path)
        LOG.debug("Signed %s", file_path)

    # Verification ------------------------------------------------------------------------
    def verify(self, signed_text: Union[str, bytes]) -> dict[str, Any]:
        """Check signed text against this keyring: dict(valid, fingerprint, key_id, username, status)."""
        data = signed_text.encode("utf-8") if isinstance(signed_text, str) else bytes(signed_text)
        result = self.gpg.verify(data)
        return {
            "valid": bool(result.valid),
            "fingerprint": result.pubkey_fingerprint or result.fingerprint,
            "key_id": result.key_id,
            "username": result.username,
            "status": result.status,
        }

    # Handshake (§7) ----------------------------------------------------------------------
    def sign_message(self, text: str = HANDSHAKE_MESSAGE) -> str:
        """Clear-sign a message for a peer (Remote handshake)."""
        return self.sign(text, clear=True)

    def verify_message(self, signed_text: Union[str, bytes], armored_pub_keys: Union[str, bytes, Iterable[Union[str, bytes]]]) -> str:
        """Verify a peer's signed message against ``armored_pub_keys`` only (not this keyring).

        Returns the verified payload text; raises :class:`GnupgError` naming the signers otherwise.
        """
        return verify_message(signed_text, armored_pub_keys, tmp_parent=self._tmp_parent)


class TmpKeyring(_GpgHome):
    """A throw-away keyring in a fresh temp dir (below ``parent``, default system temp dir).

    Use as a context manager (or call :meth:`close`): on exit its agents are killed and the dir is
    deleted. gpg runs with ``--no-autostart`` except for keyserver access, so usually no daemon
    is started at all.
    """

    def __init__(self, parent: Optional[call.FsPath] = None, options: Iterable[object] = ()) -> None:
        if parent is not None:
            pathlib.Path(parent).mkdir(parents=True, exist_ok=True)
        super().__init__(tempfile.mkdtemp(prefix="mbd-kr-", dir=parent), options=options, autostart=False)
        self._tmp_parent = str(self.homedir)
        self.closed = False

    def __enter__(self) -> "TmpKeyring":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill agents, delete the directory (idempotent)."""
        if self.closed:
            return
        self.closed = True
        try:
            kill_agents(self.homedir, remove_socketdir=True)
        finally:
            shutil.rmtree(self.homedir, ignore_errors=True)

    def recv_key(self, key_id: str, keyserver: str = DEFAULT_KEYSERVER, retries: int = 5, retry_delay: float = 2.0,
                 timeout: float = 120) -> KeyDict:
        """Fetch ``key_id`` from ``keyserver`` (``retries`` attempts); return its key dict."""
        key_id = _normalize_key_id(key_id)
        conf = self.homedir / "dirmngr.conf"
        if not conf.exists():
            conf.write_text(_DIRMNGR_CONF)
        output = ""
        for attempt in range(1, max(1, retries) + 1):
            try:
                output = self.run_gpg(["--status-fd", "1", "--keyserver", keyserver, "--recv-keys", key_id],
                                      autostart=True, check=False, timeout=timeout)
            except call.CallError as e:  # timeout
                output = str(e)
            info = self.key_info(key_id)
            if info is not None:
                return info
            LOG.warning("Receiving key %s from %s failed (attempt %s/%s): %s", key_id, keyserver, attempt, retries,
                        output.strip().splitlines()[-1:] or "")
            if attempt < retries:
                time.sleep(retry_delay)
        raise GnupgError(f"Could not receive key {key_id} from keyserver {keyserver} ({retries} attempts):\n"
                         f"{output.strip()}")

    def import_archive_keyrings(self, glob: str = ARCHIVE_KEYRINGS_GLOB) -> list[str]:
        """Import every installed keyring matching ``glob``; return the imported fingerprints."""
        fingerprints: set[str] = set()
        for path in sorted(globmod.glob(glob)):
            try:
                fingerprints.update(self.add_key_file(path))
            except GnupgError as e:
                LOG.warning("Skipping archive keyring: %s", e)
        return sorted(fingerprints)

    def verify(self, signed_text_or_path: Signed, detached_sig: Optional[Signed] = None,
               accept_expired_keys: bool = True) -> VerifyResult:
        """See :meth:`_GpgHome.verify_signature` (expired keys count as valid by default)."""
        return self.verify_signature(signed_text_or_path, detached_sig=detached_sig,
                                     accept_expired_keys=accept_expired_keys)


def key_info(armored_key: Union[str, bytes], tmp_parent: Optional[call.FsPath] = None) -> list[KeyDict]:
    """Describe the public key(s) in ``armored_key`` (str or bytes, armored or binary) without touching
    any persistent keyring: list of dicts (fingerprint, long_id, name, uids, created, expires)."""
    with TmpKeyring(parent=tmp_parent) as keyring:
        fingerprints = keyring.add_pub_key(armored_key)
        return [k for k in keyring.list_keys() if k["fingerprint"] in fingerprints]


def fetch_key(key_id: str, keyserver: str = DEFAULT_KEYSERVER, retries: int = 5, archive_keyrings: Optional[str] = ARCHIVE_KEYRINGS_GLOB,
              tmp_parent: Optional[call.FsPath] = None) -> tuple[str, KeyDict]:
    """Get a public key by id (AptKey prepare, upstream §2.3): from the installed archive keyrings if
    there, else from ``keyserver``. Returns ``(armored_key, key_dict)``; raises :class:`GnupgError`."""
    with TmpKeyring(parent=tmp_parent) as keyring:
        if archive_keyrings:
            keyring.import_archive_keyrings(glob=archive_keyrings)
        info = keyring.key_info(key_id)
        if info is None:
            info = keyring.recv_key(key_id, keyserver=keyserver, retries=retries)
        else:
            LOG.info("Key %s found in installed archive keyrings", key_id)
        return keyring.export(armor=True, key_ids=[info["fingerprint"]]), info


def verify_message(signed_text: Union[str, bytes], armored_pub_keys: Union[str, bytes, Iterable[Union[str, bytes]]],
                   tmp_parent: Optional[call.FsPath] = None) -> str:
    """Verify a clear-signed message against the given public key(s) only; return the payload text.

    Raises :class:`GnupgError` (with ``signer_key_ids``) if no given key made a good signature.
    Keys that are expired are not accepted here.
    """
    keys = [armored_pub_keys] if isinstance(armored_pub_keys, (str, bytes)) else armored_pub_keys
    with TmpKeyring(parent=tmp_parent) as keyring:
        for key in keys:
            keyring.add_pub_key(key)
        data = signed_text if isinstance(signed_text, bytes) else signed_text.encode("utf-8")
        result = keyring.verify_signature(data, accept_expired_keys=False)
    if not result.valid or result.data is None:
        raise GnupgError(f"Message verification failed ({result.describe()})", signer_key_ids=result.signer_key_ids)
    return result.data.decode("utf-8")


def validate_template(template: str) -> None:
    """Let gpg check a key template (``%dry-run``, nothing generated); raise :class:`GnupgError` if bad."""
    key_input = _gen_key_input(template, "mini-buildd template check", "template-check@localhost", dry_run=True)
    with TmpKeyring() as keyring:
        try:
            keyring.run_gpg(["--status-fd", "1", "--gen-key"], input=key_input)
        except call.CallError as e:
            raise GnupgError(f"Invalid GnuPG key template:\n{e.output.strip()}") from e
