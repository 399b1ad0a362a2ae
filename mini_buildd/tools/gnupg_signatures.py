"""GnuPG signatures without a keyring of ours: clear-signed text (:func:`is_clearsigned`,
:func:`unsign`), the outcome of a signature check parsed from gpg's status lines
(:class:`VerifyResult`), checks with ``gpgv`` against an exported keyring (:func:`gpgv_verify`),
and :class:`GnupgError`.

The keyrings that sign and verify (the instance key, temporary keyrings) are
:mod:`mini_buildd.tools.gnupg`, which also makes every name here importable.
"""

import pathlib
from collections.abc import Iterable
from typing import Optional

from mini_buildd import errors
from mini_buildd.tools import call

_CLEARSIGN_BEGIN = "-----BEGIN PGP SIGNED MESSAGE-----"
_SIGNATURE_BEGIN = "-----BEGIN PGP SIGNATURE-----"


class GnupgError(errors.ToolError):
    """A GnuPG operation failed. ``signer_key_ids``: key ids that signed the data in question, if known."""

    def __init__(self, message: str, signer_key_ids: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.signer_key_ids = list(signer_key_ids)


# ---------------------------------------------------------------------------------------------
# Clear-signed text
# ---------------------------------------------------------------------------------------------

def unsign(text: str) -> str:
    """Return the payload of a clear-signed message (dash-escaping undone), WITHOUT verifying it.

    Text that is not clear-signed is returned unchanged. Used to re-sign files; never to trust content.
    """
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.rstrip() == _CLEARSIGN_BEGIN)
    except StopIteration:
        return text
    i = start + 1
    while i < len(lines) and lines[i].strip():  # armor headers ("Hash: ...")
        i += 1
    body = []
    for line in lines[i + 1:]:
        if line.rstrip() == _SIGNATURE_BEGIN:
            break
        body.append(line[2:] if line.startswith("- ") else line)
    else:
        raise GnupgError("Clear-signed text without signature block")
    return "\n".join(body) + "\n"


def is_clearsigned(text: str) -> bool:
    """Whether ``text`` is a clear-signed message (its armor starts within the first 50 lines)."""
    return any(line.rstrip() == _CLEARSIGN_BEGIN for line in text.splitlines()[:50])


# ---------------------------------------------------------------------------------------------
# Signature status parsing (gpg/gpgv --status-fd)
# ---------------------------------------------------------------------------------------------

class VerifyResult:
    """Outcome of a signature check, parsed from gpg status lines.

    ``valid``: at least one acceptable good signature and no bad one. ``fingerprint``/``key_id``/
    ``username``: of the first accepted signature. ``signer_key_ids``: long ids of every signature
    found, verifiable or not. ``signatures``: one dict per signature (``key_id``, ``status``,
    ``fingerprint``, ``username``). ``data``: verified payload (bytes) when it was not detached.
    """

    #: Signature statuses.
    GOOD, EXPIRED_KEY, EXPIRED_SIG, REVOKED, BAD, NO_PUBKEY, ERROR = (
        "good", "expired-key", "expired-signature", "revoked-key", "bad", "no-public-key", "error")
    _SIG_KEYWORDS = {"GOODSIG": GOOD, "EXPKEYSIG": EXPIRED_KEY, "EXPSIG": EXPIRED_SIG,
                     "REVKEYSIG": REVOKED, "BADSIG": BAD}

    def __init__(self, status_text: str, accept_expired_keys: bool = True, data: Optional[bytes] = None, output: str = "") -> None:
        self.status_text = status_text
        self.output = output
        self.data = data
        self.signatures = self._parse(status_text)
        accepted = {self.GOOD, self.EXPIRED_KEY} if accept_expired_keys else {self.GOOD}
        good = [s for s in self.signatures if s["status"] in accepted and s["fingerprint"]]
        self.valid = bool(good) and not any(s["status"] == self.BAD for s in self.signatures)
        first: dict[str, Optional[str]] = good[0] if self.valid else {}
        self.fingerprint = first.get("fingerprint")
        self.key_id = first.get("key_id")
        self.username = first.get("username")
        self.signer_key_ids: list[str] = []
        for sig in self.signatures:
            if sig["key_id"] and sig["key_id"] not in self.signer_key_ids:
                self.signer_key_ids.append(sig["key_id"])

    def __bool__(self) -> bool:
        return self.valid

    def __repr__(self) -> str:
        return f"VerifyResult(valid={self.valid}, key_id={self.key_id}, signers={self.signer_key_ids})"

    @classmethod
    def _parse(cls, status_text: str) -> list[dict[str, Optional[str]]]:
        # pylint: disable=unsubscriptable-object,unsupported-assignment-operation  # (current: never None where used)
        sigs: list[dict[str, Optional[str]]] = []
        current: Optional[dict[str, Optional[str]]] = None

        def new() -> dict[str, Optional[str]]:
            sig: dict[str, Optional[str]] = {"key_id": None, "status": None, "fingerprint": None, "signing_fingerprint": None, "username": None}
            sigs.append(sig)
            return sig

        for raw in status_text.splitlines():
            pos = raw.find("[GNUPG:] ")
            if pos < 0:
                continue
            keyword, _sep, value = raw[pos + 9:].strip().partition(" ")
            fields = value.split()
            if keyword == "NEWSIG":
                current = new()
            elif keyword in cls._SIG_KEYWORDS:
                if current is None or current["status"] is not None:
                    current = new()
                current["status"] = cls._SIG_KEYWORDS[keyword]
                current["key_id"] = fields[0][-16:].upper() if fields else None
                current["username"] = value.partition(" ")[2] or None
            elif keyword == "ERRSIG":
                if current is None or current["status"] is not None:
                    current = new()
                current["key_id"] = fields[0][-16:].upper() if fields else None
                current["status"] = cls.NO_PUBKEY if len(fields) > 5 and fields[5] == "9" else cls.ERROR
                if len(fields) > 6 and fields[6] != "-":
                    current["signing_fingerprint"] = fields[6]
            elif keyword == "NO_PUBKEY" and current is not None:
                current["status"] = cls.NO_PUBKEY
            elif keyword == "VALIDSIG" and current is not None and fields:
                current["signing_fingerprint"] = fields[0]
                current["fingerprint"] = fields[9] if len(fields) > 9 else fields[0]
        return [s for s in sigs if s["status"] is not None]

    def describe(self) -> str:
        """One line for error messages."""
        if not self.signatures:
            return "no signature found"
        return "signed by " + ", ".join(f"{s['key_id']} ({s['status']})" for s in self.signatures)


def gpgv_verify(keyring_path: call.FsPath, data_path: call.FsPath, signature_path: Optional[call.FsPath] = None,
                accept_expired_keys: bool = True) -> list[Optional[str]]:
    """Verify a file with ``gpgv`` against the (binary, exported) keyring ``keyring_path``.

    ``data_path`` is clear-signed/inline-signed data, or the signed data with a detached
    ``signature_path``. Returns the long ids of the accepted signers; raises :class:`GnupgError`
    naming all key ids that signed when no acceptable signature is found. Keys that expired after
    signing are accepted unless ``accept_expired_keys`` is false (archive Release files, upstream §2.3).
    """
    argv: list[call.Arg] = ["gpgv", "--status-fd", "1", "--keyring", pathlib.Path(keyring_path).resolve()]
    if signature_path is not None:
        argv.append(signature_path)
    argv.append(data_path)
    output = call.run([str(a) for a in argv], check=False)
    result = VerifyResult(output, accept_expired_keys=accept_expired_keys)
    if not result.valid:
        raise GnupgError(f"No accepted signature found on {data_path} ({result.describe()}):\n{output.strip()}",
                         signer_key_ids=result.signer_key_ids)
    accepted = {VerifyResult.GOOD, VerifyResult.EXPIRED_KEY} if accept_expired_keys else {VerifyResult.GOOD}
    return [s["key_id"] for s in result.signatures if s["status"] in accepted]
