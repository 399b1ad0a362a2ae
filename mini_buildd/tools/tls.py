"""TLS certificates (owns: every ``openssl`` call, the instance's self-signed certificate and the
certificate an ``ssl:`` endpoint serves).

- :func:`create`, :func:`info`, :func:`remove`: the self-signed certificate of
  ``mini-buildd-self-signed-certificate`` (key and certificate paths from :mod:`mini_buildd.config`):
  CN = the instance host name, subjectAltName DNS (and IP for an address), ``CA:FALSE``,
  ``serverAuth``; the key is written 0640 (group ``mini-buildd`` when that group exists, else
  0600), never readable by others, and never over an existing file unless asked to.
- :func:`check_endpoint_files`: an ``ssl:`` endpoint's ``privateKey``/``certKey`` files are there,
  readable and belong together (so the daemon can refuse to start with one clear line).
- :func:`certificates_pem`: only the ``CERTIFICATE`` blocks of a PEM file (what may travel in
  buildrequests and keyring packages: a combined key+certificate file never leaks its key).
"""

import datetime
import grp
import ipaddress
import os
import pathlib
import re
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any, Optional, Protocol, Union

from mini_buildd.tools import call
from mini_buildd import errors

#: Validity of a new certificate (days).
DEFAULT_DAYS = 3650
#: RSA key size of a new key.
KEY_BITS = 3072
#: Group that may read the key (the daemon's dedicated user's group), if it exists.
KEY_GROUP = "mini-buildd"

_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$")
_PEM_CERT_RE = re.compile(r"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----", re.DOTALL)


class TlsError(errors.ToolError):
    """A certificate operation failed; the message says why in one line."""


class Endpoint(Protocol):
    """What is used of a :class:`mini_buildd.net.ServerEndpoint` here."""

    @property
    def is_ssl(self) -> bool:
        """Whether it is an ``ssl:`` endpoint."""

    @property
    def options(self) -> Mapping[str, str]:
        """Its ``key=value`` options."""


def _openssl(*args: call.Arg, **kwargs: Any) -> str:
    try:
        return call.run(["openssl", *args], **kwargs)
    except call.CallError as e:
        last = (e.output.strip().splitlines() or [f"exit {e.returncode}"])[-1]
        raise TlsError(f"openssl {args[0]} failed: {last}") from e


def _ip(text: str) -> Union[ipaddress.IPv4Address, ipaddress.IPv6Address, None]:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def subject_alt_names(cn: str) -> list[str]:
    """The subjectAltName entries for ``cn``: ``IP:`` (plus ``DNS:localhost`` for loopback) for an
    address, ``DNS:`` for a host name. Raises :class:`TlsError` for anything else."""
    address = _ip(cn)
    if address is not None:
        return [f"IP:{address}"]
    if not _HOSTNAME_RE.match(cn):
        raise TlsError(f"Invalid common name '{cn}': use the instance's host name (letters, digits, '-', '.') or an IP address.")
    return [f"DNS:{cn.rstrip('.')}"]


def _config_text(cn: str, sans: Iterable[str]) -> str:
    return ("[req]\nprompt = no\ndistinguished_name = dn\nx509_extensions = ext\n"
            f"[dn]\nCN = {cn}\n"
            "[ext]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage = serverAuth\nsubjectKeyIdentifier = hash\n"
            f"subjectAltName = {','.join(sans)}\n")


def _key_group() -> Optional[int]:
    try:
        return grp.getgrnam(KEY_GROUP).gr_gid
    except KeyError:
        return None


def _prepare_dirs(cert_path: pathlib.Path, key_path: pathlib.Path, gid: Optional[int]) -> None:
    cert_path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    key_dir = key_path.parent
    key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if gid is not None:
        os.chown(key_dir, -1, gid)
        os.chmod(key_dir, 0o710)
    else:
        os.chmod(key_dir, 0o700)


def create(cert_path: call.FsPath, key_path: call.FsPath, cn: str, days: int = DEFAULT_DAYS, force: bool = False) -> dict[str, Any]:
    """Make a new key and self-signed certificate for ``cn``; return :func:`info` of it.

    Refuses (:class:`TlsError`) when either file exists, unless ``force``. Both files are
    written next to their targets and renamed into place, the key first."""
    cert_file, key_file = pathlib.Path(cert_path), pathlib.Path(key_path)
    sans = subject_alt_names(cn)
    if not force:
        existing = [str(p) for p in (key_file, cert_file) if os.path.lexists(p)]
        if existing:
            raise TlsError(f"{' and '.join(existing)} exist{'s' if len(existing) == 1 else ''} already (use --force to replace).")
    gid = _key_group()
    try:
        _prepare_dirs(cert_file, key_file, gid)
    except OSError as e:
        raise TlsError(f"Can't create the certificate directories: {e}") from e
    with tempfile.TemporaryDirectory(prefix="mbd-tls-", dir=key_file.parent) as tmp_name:
        tmp = pathlib.Path(tmp_name)
        conf = tmp / "req.cnf"
        conf.write_text(_config_text(cn, sans), encoding="utf-8")
        new_key, new_cert = tmp / "key.pem", tmp / "cert.pem"
        old_umask = os.umask(0o077)
        try:
            _openssl("req", "-x509", "-newkey", f"rsa:{KEY_BITS}", "-nodes", "-sha256", "-days", str(int(days)),
                     "-config", conf, "-keyout", new_key, "-out", new_cert)
        finally:
            os.umask(old_umask)
        if gid is not None:
            os.chown(new_key, -1, gid)
            os.chmod(new_key, 0o640)
        else:
            os.chmod(new_key, 0o600)
        os.chmod(new_cert, 0o644)
        cert_tmp = cert_file.with_name(f".{cert_file.name}.new")
        try:
            os.replace(new_key, key_file)
            # The certificate may live on another file system than the key: copy, then rename.
            cert_tmp.write_bytes(new_cert.read_bytes())
            os.chmod(cert_tmp, 0o644)
            os.replace(cert_tmp, cert_file)
        except OSError as e:
            raise TlsError(f"Can't install the new key/certificate: {e}") from e
    return info(cert_file)


def _x509(cert_path: call.FsPath, *args: str) -> str:
    cert_file = pathlib.Path(cert_path)
    if not cert_file.is_file():
        raise TlsError(f"No certificate {cert_file}.")
    if not os.access(cert_file, os.R_OK):
        raise TlsError(f"Certificate {cert_file} is not readable.")
    return _openssl("x509", "-in", cert_file, "-noout", *args)


def info(cert_path: call.FsPath) -> dict[str, Any]:
    """``{"path", "subject", "cn", "sans", "not_after", "expired", "sha256_fingerprint"}`` of a certificate."""
    out = _x509(cert_path, "-subject", "-enddate", "-fingerprint", "-sha256", "-ext", "subjectAltName", "-nameopt", "RFC2253")
    result: dict[str, Any] = {"path": str(cert_path), "subject": "", "cn": "", "sans": [], "not_after": "", "sha256_fingerprint": ""}
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("subject="):
            result["subject"] = line.partition("=")[2].strip()
            match = re.search(r"(?:^|,)CN=([^,]+)", result["subject"])
            result["cn"] = match.group(1) if match else ""
        elif line.startswith("notAfter="):
            result["not_after"] = line.partition("=")[2].strip()
        elif "Fingerprint=" in line:
            result["sha256_fingerprint"] = line.partition("=")[2].strip()
        elif "Subject Alternative Name" in line and i + 1 < len(lines):
            result["sans"] = [s.strip().replace("IP Address:", "IP:") for s in lines[i + 1].split(",") if s.strip()]
    try:
        not_after = datetime.datetime.strptime(result["not_after"], "%b %d %H:%M:%S %Y %Z").replace(tzinfo=datetime.timezone.utc)
        result["expired"] = not_after < datetime.datetime.now(datetime.timezone.utc)
    except ValueError:
        result["expired"] = None
    return result


def remove(cert_path: call.FsPath, key_path: call.FsPath) -> list[str]:
    """Remove key and certificate; return the paths removed (raises :class:`TlsError` when neither exists)."""
    removed: list[str] = []
    for path in (pathlib.Path(key_path), pathlib.Path(cert_path)):
        try:
            path.unlink()
            removed.append(str(path))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise TlsError(f"Can't remove {path}: {e}") from e
    if not removed:
        raise TlsError(f"Nothing to remove: neither {key_path} nor {cert_path} exists.")
    return removed


def check_pair(cert_path: call.FsPath, key_path: call.FsPath) -> None:
    """Raise :class:`TlsError` unless both files are readable and the key belongs to the certificate."""
    for what, given in (("certificate", cert_path), ("private key", key_path)):
        path = pathlib.Path(given)
        if not path.is_file():
            raise TlsError(f"{what} file '{path}' does not exist.")
        if not os.access(path, os.R_OK):
            raise TlsError(f"{what} file '{path}' is not readable.")
    cert_pub = _openssl("x509", "-in", cert_path, "-noout", "-pubkey")
    key_pub = _openssl("pkey", "-in", key_path, "-pubout")
    if cert_pub.strip() != key_pub.strip():
        raise TlsError(f"private key '{key_path}' does not belong to certificate '{cert_path}'.")


def check_endpoint_files(endpoint: Endpoint) -> None:
    """For an ``ssl:`` :class:`mini_buildd.net.ServerEndpoint`: raise :class:`TlsError` (one line,
    naming the endpoint) unless its ``certKey``/``privateKey`` are usable; other kinds pass."""
    if not endpoint.is_ssl:
        return
    try:
        check_pair(endpoint.options["certKey"], endpoint.options["privateKey"])
    except TlsError as e:
        raise TlsError(f"endpoint '{endpoint}': {e}") from e


def certificates_pem(path: call.FsPath) -> str:
    """The ``CERTIFICATE`` PEM blocks of ``path`` (nothing else: never a key), newline-terminated."""
    text = pathlib.Path(path).read_text(encoding="ascii", errors="replace")
    blocks = _PEM_CERT_RE.findall(text)
    if not blocks:
        raise TlsError(f"No certificate in {path}.")
    return "".join(b.replace("\r\n", "\n") + "\n" for b in blocks)


def endpoint_certificate(endpoint: Endpoint) -> str:
    """The certificate (PEM, :func:`certificates_pem`) an ``ssl:`` server endpoint serves, or ``""``."""
    if not endpoint.is_ssl:
        return ""
    return certificates_pem(endpoint.options["certKey"])


def served_certificate(endpoint_strings: Iterable[str]) -> str:
    """The certificate (PEM) of the first ``ssl:`` endpoint among ``endpoint_strings``, or ``""``."""
    from mini_buildd import net  # pylint: disable=import-outside-toplevel
    for desc in endpoint_strings:
        endpoint = net.ServerEndpoint(desc)
        if endpoint.is_ssl:
            return endpoint_certificate(endpoint)
    return ""
