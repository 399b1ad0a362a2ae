"""FTP incoming: the pyftpdlib server that receives uploads into ``incoming/``, and the FTP/FTPS
client that uploads a changes file to another instance (upstream §1.2, §1.4 step 1, §7, §8.3).

Server (:class:`FtpD`): anonymous login only; the one usable area is ``/incoming`` (list, enter,
retrieve, store). No delete, rename, mkdir, append, resume or overwrite; file names with path
parts are refused. Each received file is made read-only at once. When a client disconnects, the
files it received completely are handed to the ``on_session`` callback, in upload order (the
incoming quarantine, :mod:`mini_buildd.pipeline.incoming`, sorts them out in its own thread). With an ``ssl:``
endpoint, TLS is required on control and data channels (FTPS, explicit ``AUTH TLS``).

The server also owns the upload limits against anonymous resource exhaustion (:class:`Limits`,
from the Daemon's fields): a file over the file size limit (a ``*.changes`` over
:data:`mini_buildd.changes.MAX_CHANGES_SIZE`), or a session storing more than its quota, is cut off
while it streams (``552`` with the reason, the partial file removed); while the incoming file
system has less free space than the floor, STOR is refused (``452``, :func:`upload_refusal`, which
the home page and the ``status`` call show too); more connections from one address than allowed
get ``421`` with the reason.

Client (:func:`upload`): stores every file a changes file lists, then the changes file itself,
in the other side's ``/incoming``, and writes a ``<changes>.upload`` marker beside it.
"""

import datetime
import ftplib
import logging
import os
import pathlib
import re
import ssl
import threading
import urllib.parse
import warnings

import debian.deb822

from mini_buildd import changes, errors, net

LOG = logging.getLogger(__name__)

#: Name of the one FTP area (the ``incoming`` directory below the FTP root).
INCOMING = "incoming"

#: File name marks of the internal changes (upstream §1.5).
BUILDREQUEST_MARK = "_mini-buildd-buildrequest_"
BUILDRESULT_MARK = "_mini-buildd-buildresult_"

#: Poll interval of the server thread (seconds): the longest stop() waits for the loop.
POLL_INTERVAL = 0.2

#: Files (and their bytes) received completely since the process started, for /metrics (only the server thread writes).
RECEIVED = {"bytes": 0, "files": 0}

#: Characters never allowed in an uploaded file name.
_BAD_NAME_CHARS = re.compile(r"[/\\\x00-\x1f\x7f]")


class FtpError(errors.ConfigError):
    """FTP server set-up or FTP upload failed."""


MIB = 1024 * 1024

#: Received bytes between two free-space checks of a running transfer.
DISK_CHECK_INTERVAL = MIB


class Limits:
    """The server's limits: sizes in bytes (``None``/0: no limit), connections per address
    (``None``/0: no limit). :meth:`from_daemon` takes them from the Daemon model (MiB)."""

    def __init__(self, max_file_size=None, max_session_size=None, max_connections_per_address=None, min_free_disk=0):
        self.max_file_size = max_file_size or None
        self.max_session_size = max_session_size or None
        self.max_connections_per_address = max_connections_per_address or None
        self.min_free_disk = min_free_disk or 0

    @classmethod
    def from_daemon(cls, daemon):
        return cls(max_file_size=daemon.ftpd_max_file_size * MIB, max_session_size=daemon.ftpd_max_session_size * MIB,
                   max_connections_per_address=daemon.ftpd_max_connections_per_address,
                   min_free_disk=daemon.min_free_disk * MIB)

    def file_limit(self, name):
        """(limit in bytes or None, what it is) for a file named ``name``."""
        if name.endswith(".changes"):
            if self.max_file_size is None or changes.MAX_CHANGES_SIZE < self.max_file_size:
                return changes.MAX_CHANGES_SIZE, "the changes file size limit"
        return self.max_file_size, "the upload file size limit"

    def __repr__(self):
        return (f"Limits(file={self.max_file_size}, session={self.max_session_size}, "
                f"connections/address={self.max_connections_per_address}, free disk floor={self.min_free_disk})")


def _mib(size):
    return f"{size / MIB:.0f} MiB" if size >= MIB else f"{size} bytes"


def free_disk(path):
    """Bytes available to us on the file system of ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def upload_refusal(path, min_free_disk):
    """Why uploads into ``path`` (the incoming directory) are refused right now, or ``None``:
    the free space on its file system is below ``min_free_disk`` bytes (0: no floor)."""
    if not min_free_disk:
        return None
    try:
        free = free_disk(path)
    except OSError as e:
        return f"Uploads refused: can't read the free disk space of {path}: {e.strerror or e}."
    if free < min_free_disk:
        return (f"Uploads refused: free disk below the floor ({_mib(free)} free on the incoming file system, "
                f"floor {_mib(min_free_disk)}).")
    return None


def valid_file_name(name):
    """Whether ``name`` is a plain file name fit for incoming (no path parts, no ``.``/``..``,
    no hidden files, no control characters)."""
    return bool(name) and not name.startswith(".") and not _BAD_NAME_CHARS.search(name) and name == name.strip()


def is_internal_changes(name):
    """Whether a changes file name is a buildrequest or buildresult (upstream §1.4 step 2)."""
    return BUILDREQUEST_MARK in name or BUILDRESULT_MARK in name


def changes_file_names(changes_path, strict=False):
    """The names of the files a changes file lists (``Files`` and ``Checksums-*``), in ``Files`` order.

    A changes file that cannot be read or parsed yields ``[]`` (logged), or raises
    :class:`FtpError` when ``strict``.
    """
    try:
        with open(changes_path, encoding="utf-8", errors="replace") as f:
            parsed = debian.deb822.Changes(f)
    except Exception as e:  # pylint: disable=broad-except  # python-debian raises various errors
        if strict:
            raise FtpError(f"Can't parse changes file {changes_path}: {e}") from e
        LOG.warning("Can't parse changes file %s: %s", changes_path, e)
        return []
    names = []
    for field in ("Files", "Checksums-Sha256", "Checksums-Sha1"):
        try:
            entries = parsed.get(field) or []
            for entry in entries:
                name = entry.get("name")
                if name and name not in names:
                    names.append(name)
        except Exception as e:  # pylint: disable=broad-except  # python-debian raises various errors on a bad field
            if strict:
                raise FtpError(f"Bad '{field}' field in changes file {changes_path}: {e}") from e
            LOG.warning("Bad '%s' field in changes file %s: %s", field, changes_path, e)
    if strict and not names:
        raise FtpError(f"Changes file {changes_path} lists no files (no 'Files' field?).")
    return names


def parse_options(options):
    """Parse the Daemon's ``ftpd_options`` (``key=value``, separated by ``;``, ``,`` or blanks).

    Known keys: ``passive_ports=MIN-MAX``, ``masquerade_address=IP``. Returns a dict of
    pyftpdlib handler attributes; raises :class:`FtpError` on anything else.
    """
    result = {}
    for item in re.split(r"[;,\s]+", options or ""):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise FtpError(f"Bad FTP server option '{item}' (use key=value, e.g. passive_ports=MIN-MAX).")
        if key == "passive_ports":
            m = re.fullmatch(r"(\d+)-(\d+)", value)
            if not m or not 0 < int(m.group(1)) <= int(m.group(2)) <= 65535:
                raise FtpError(f"Bad passive_ports '{value}' (use MIN-MAX, 1 <= MIN <= MAX <= 65535).")
            result["passive_ports"] = range(int(m.group(1)), int(m.group(2)) + 1)
        elif key == "masquerade_address":
            result["masquerade_address"] = value
        else:
            raise FtpError(f"Unknown FTP server option '{key}' (known: passive_ports, masquerade_address).")
    return result


def _remove(path, why):
    try:
        os.unlink(path)
        LOG.info("Removed %s from incoming: %s", os.path.basename(path), why)
    except FileNotFoundError:
        pass
    except OSError as e:
        LOG.error("Can't remove %s from incoming: %s", path, e)


def _call(callback, arg):
    try:
        callback(arg)
    except Exception:  # pylint: disable=broad-except  # a failing consumer must not kill the server
        LOG.exception("Incoming callback failed for %s", arg)


class _IncomingHandlerMixin:
    """Mixin for a pyftpdlib handler class: the incoming rules. The concrete class (built by
    :class:`FtpD`) sets ``mbd_incoming`` (real path of ``incoming/``) and ``mbd_on_session``."""

    mbd_incoming = None
    mbd_on_session = None
    mbd_limits = Limits()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.mbd_stored = []     # STOR accepted (file created), in order
        self.mbd_received = []   # completely received, in order
        self.mbd_session_bytes = 0  # size of the files completely received in this session

    def handle_max_cons_per_ip(self):
        limit = self.mbd_limits.max_connections_per_address
        LOG.warning("FTP: connection from %s refused: more than %s from this address.", self.remote_ip, limit)
        self.respond(f"421 Too many connections from your address (at most {limit} at a time); try again later.")
        self.close_when_done()

    def pre_process_command(self, line, cmd, arg):
        """Refuse STOR/APPE of names that are no plain file names (553)."""
        if cmd in ("STOR", "APPE") and arg and not valid_file_name(arg):
            msg = f"File name not allowed: '{arg}' (plain file names only, no path parts)."
            self.respond(f"553 {msg}")
            self.log_cmd(cmd, arg, 553, msg)
            return None
        return super().pre_process_command(line, cmd, arg)

    def ftp_STOR(self, file, mode="w"):
        """Accept an upload into incoming/ only: no append or resume, no other directory, within the limits."""
        resume = self._restart_position  # pylint: disable=access-member-before-definition  # pyftpdlib's
        self._restart_position = 0  # pylint: disable=attribute-defined-outside-init  # pyftpdlib's
        if "a" in mode or resume:
            self.respond("550 Appending or resuming is not allowed.")
            return None
        if os.path.dirname(file) != self.mbd_incoming:
            self.respond("550 Uploads are only allowed in /incoming.")
            return None
        if os.path.lexists(file):
            self.respond("550 File exists: overwriting is not allowed.")
            return None
        limits = self.mbd_limits
        refusal = upload_refusal(self.mbd_incoming, limits.min_free_disk)
        if refusal:
            LOG.warning("FTP: STOR %s from %s refused: %s", os.path.basename(file), self.remote_ip, refusal)
            self.respond(f"452 {refusal}")
            return None
        if limits.max_session_size is not None and self.mbd_session_bytes >= limits.max_session_size:
            reason = self._mbd_session_reason()
            LOG.warning("FTP: STOR %s from %s refused: %s", os.path.basename(file), self.remote_ip, reason)
            self.respond(f"552 {reason}")
            return None
        result = super().ftp_STOR(file, mode)
        if result:
            self.mbd_stored.append(result)
        return result

    def ftp_STOU(self, line):  # pylint: disable=unused-argument
        self.respond("550 STOU is not allowed: store with a file name.")

    def _mbd_session_reason(self):
        return (f"Session limit: one FTP session may store at most {_mib(self.mbd_limits.max_session_size)} "
                "in total; upload the rest in a new session.")

    def on_file_received(self, file):
        """A file is complete: make it read-only and count it."""
        try:
            os.chmod(file, 0o444)
            size = os.lstat(file).st_size
            self.mbd_session_bytes += size
            RECEIVED["bytes"] += size
            RECEIVED["files"] += 1
        except OSError as e:
            LOG.error("Can't make %s read-only: %s", file, e)
        self.mbd_received.append(file)
        LOG.debug("Received %s", file)

    def on_incomplete_file_received(self, file):
        _remove(file, "incomplete upload")

    def on_disconnect(self):
        """Remove incomplete files; hand the session's complete files to the incoming callback."""
        for f in self.mbd_stored:
            if f not in self.mbd_received:
                _remove(f, "incomplete upload")
        received = [pathlib.Path(f) for f in self.mbd_received if os.path.lexists(f)]
        self.mbd_stored, self.mbd_received = [], []
        if received:
            # Nothing is parsed here: the session's files go to the incoming quarantine
            # (mini_buildd.pipeline.incoming), which works in its own thread.
            _call(self.mbd_on_session, received)


class _LimitedDTPMixin:
    """Mixin for a pyftpdlib data channel class: checks the limits after every chunk received
    and cuts the transfer off (``552``/``452`` with the reason; the partial file is removed by
    ``on_incomplete_file_received``) as soon as one is exceeded."""

    _mbd_disk_checked = 0

    def handle_read_event(self):
        super().handle_read_event()
        if self.receive and not self._closed and self.file_obj is not None:
            self._mbd_check()

    def _mbd_check(self):
        channel = self.cmd_channel
        limits = channel.mbd_limits
        size = self.tot_bytes_received
        name = os.path.basename(self.file_obj.name)
        limit, what = limits.file_limit(name)
        if limit is not None and size > limit:
            return self._mbd_abort(552, f"File too large: {name} exceeds {what} ({_mib(limit)}); transfer aborted, "
                                        "nothing stored.")
        if limits.max_session_size is not None and channel.mbd_session_bytes + size > limits.max_session_size:
            return self._mbd_abort(552, channel._mbd_session_reason() + f" Transfer of {name} aborted, nothing stored.")  # pylint: disable=protected-access
        if limits.min_free_disk and size - self._mbd_disk_checked >= DISK_CHECK_INTERVAL:
            self._mbd_disk_checked = size
            refusal = upload_refusal(channel.mbd_incoming, limits.min_free_disk)
            if refusal:
                return self._mbd_abort(452, f"{refusal} Transfer of {name} aborted, nothing stored.")
        return None

    def _mbd_abort(self, code, reason):
        LOG.warning("FTP: upload from %s cut off after %s bytes: %s", self.cmd_channel.remote_ip, self.tot_bytes_received, reason)
        self.transfer_finished = False  # pylint: disable=attribute-defined-outside-init  # pyftpdlib's
        # Unlinked now (still open), so that it is gone before the client reads the reply:
        # pyftpdlib would remove it only after replying.
        _remove(self.file_obj.name, "limit exceeded")
        self._resp = (f"{code} {reason}", logging.getLogger("pyftpdlib").warning)  # pylint: disable=attribute-defined-outside-init  # pyftpdlib's
        self.close()


class FtpD:
    """The FTP (or FTPS) incoming server on one endpoint, running in its own thread.

    ``endpoint``: server endpoint string (``tcp6:port=8067``, ``tcp:interface=127.0.0.1:port=8067``,
    ``ssl:port=8067:privateKey=K:certKey=C``). ``incoming_dir`` must be named ``incoming``; its
    parent is the FTP root (not accessible itself). ``on_session(paths)`` is called (from the
    server thread; keep it short, parse nothing) when a client disconnects, with the files that
    session received completely, in upload order. ``options``: see :func:`parse_options`.
    ``limits``: a :class:`Limits` (default: none but the changes file size limit).
    """

    def __init__(self, endpoint, incoming_dir, on_session, options="", limits=None):
        self.endpoint = endpoint if isinstance(endpoint, net.ServerEndpoint) else net.ServerEndpoint(str(endpoint), "ftp")
        if self.endpoint.kind == "unix":
            raise FtpError(f"FTP server can't listen on a unix socket endpoint ('{endpoint}').")
        self.incoming = pathlib.Path(incoming_dir)
        if self.incoming.name != INCOMING:
            raise FtpError(f"Incoming directory must be named '{INCOMING}' (got {incoming_dir}).")
        self.on_session = on_session
        self.handler_options = parse_options(options)
        self.limits = limits or Limits()
        self._server = None
        self._thread = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def __repr__(self):
        return f"FtpD({self.endpoint})"

    @property
    def bind_address(self):
        """(host, port) to bind, following twisted's defaults: tcp/ssl = IPv4, tcp6 = IPv6 (dual stack)."""
        interface = self.endpoint.options.get("interface")
        if not interface:
            interface = "::" if self.endpoint.kind == "tcp6" else "0.0.0.0"
        return interface.strip("[]"), self.endpoint.port

    @property
    def address(self):
        """The (host, port) actually listened on, while running."""
        return self._server.address if self._server else None

    @property
    def is_running(self):
        return self._thread is not None and self._thread.is_alive()

    def _handler_class(self):
        # pylint: disable=import-outside-toplevel
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import FTPHandler
        root = os.path.realpath(self.incoming.parent)
        incoming = os.path.realpath(self.incoming)
        authorizer = DummyAuthorizer()
        authorizer.add_anonymous(root, perm="")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "write permissions assigned to anonymous user": intended
            authorizer.override_perm("anonymous", incoming, "elrw", recursive=False)
        attrs = {
            "authorizer": authorizer,
            "banner": "mini-buildd incoming FTP server ready (anonymous, /incoming).",
            "permit_foreign_addresses": False,
            "mbd_incoming": incoming,
            "mbd_on_session": staticmethod(self.on_session),
            "mbd_limits": self.limits,
            **self.handler_options,
        }
        base = FTPHandler
        if self.endpoint.is_ssl:
            try:
                from pyftpdlib.handlers import TLS_FTPHandler
            except ImportError as e:
                raise FtpError(f"FTPS endpoint '{self.endpoint}' needs python3-openssl: {e}") from e
            base = TLS_FTPHandler
            for opt in ("certKey", "privateKey"):
                if not os.access(self.endpoint.options[opt], os.R_OK):
                    raise FtpError(f"FTPS endpoint '{self.endpoint}': {opt} file '{self.endpoint.options[opt]}' is not readable.")
            attrs.update(certfile=self.endpoint.options["certKey"], keyfile=self.endpoint.options["privateKey"],
                         tls_control_required=True, tls_data_required=True, ssl_context=None)
        attrs["dtp_handler"] = type("MiniBuilddDTPHandler", (_LimitedDTPMixin, base.dtp_handler), {})
        return type("MiniBuilddFtpHandler", (_IncomingHandlerMixin, base), attrs)

    def start(self):
        """Bind and serve in a new thread. Raises :class:`FtpError` if that fails."""
        # pylint: disable=import-outside-toplevel
        from pyftpdlib.ioloop import IOLoop
        from pyftpdlib.servers import FTPServer
        with self._lock:
            if self.is_running:
                raise FtpError(f"{self} is already running.")
            if not self.incoming.is_dir():
                raise FtpError(f"Incoming directory {self.incoming} does not exist.")
            # A handler on pyftpdlib's logger keeps it from configuring logging itself.
            pyftpdlib_log = logging.getLogger("pyftpdlib")
            if not pyftpdlib_log.handlers:
                pyftpdlib_log.addHandler(logging.NullHandler())
            handler = self._handler_class()
            ioloop = IOLoop()
            try:
                self._server = FTPServer(self.bind_address, handler, ioloop=ioloop)
                self._server.max_cons_per_ip = self.limits.max_connections_per_address or 0
            except Exception as e:  # pylint: disable=broad-except  # start boundary: whatever pyftpdlib raises is a failed start (one FtpError line)
                ioloop.close()
                self._server = None
                raise FtpError(f"Can't start FTP server on '{self.endpoint}': {e}") from e
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="mini-buildd-ftpd", daemon=True)
            self._thread.start()
            host, port = self._server.address[:2]
            LOG.info("FTP%s server listening on %s:%s (incoming %s, %s).", "S" if self.endpoint.is_ssl else "",
                     f"[{host}]" if ":" in host else host, port, self.incoming, self.limits)

    def _run(self):
        server = self._server
        try:
            while not self._stop.is_set():  # pylint: disable=deprecated-method  # pylint 2.16 mistakes Event.is_set for isSet
                try:
                    server.ioloop.loop(timeout=POLL_INTERVAL, blocking=False)
                except Exception:  # pylint: disable=broad-except  # one client's trouble must not end the server
                    LOG.exception("FTP server loop: unexpected error (serving on)")
                    self._stop.wait(POLL_INTERVAL)
        finally:
            server.close_all()

    def stop(self, timeout=10):
        """Close the listening socket and all connections, and join the thread (idempotent)."""
        with self._lock:
            thread = self._thread
            if thread is None:
                return
            self._stop.set()
            thread.join(timeout)
            if thread.is_alive():
                LOG.error("%s: server thread did not end within %ss.", self, timeout)
            self._thread = None
            self._server = None
            LOG.info("FTP server on %s stopped.", self.endpoint)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def _split_url(url):
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("ftp", "ftps") or not parsed.hostname:
        raise FtpError(f"Bad upload URL '{url}' (use ftp://HOST:PORT or ftps://HOST:PORT).")
    try:
        port = parsed.port or 21
    except ValueError as e:
        raise FtpError(f"Bad port in upload URL '{url}': {e}") from e
    path = parsed.path.rstrip("/") or f"/{INCOMING}"
    return parsed.scheme, parsed.hostname, port, path


def upload_marker(changes_path):
    """The ``<changes>.upload`` marker file recording a done upload."""
    changes_path = pathlib.Path(changes_path)
    return changes_path.with_name(changes_path.name + ".upload")


def _client_tls_context():
    # Instances commonly use self-signed certificates, and everything uploaded between instances
    # is GnuPG-signed and verified by the receiver: TLS here gives privacy, not authentication
    # (like ftplib's own default).
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _store(ftp, path):
    """STOR one file; when the server cuts the data connection off (a limit), raise its reply
    (which says why) rather than the bare connection error."""
    with open(path, "rb") as f:
        try:
            ftp.storbinary(f"STOR {path.name}", f)
        except (OSError, EOFError) as e:
            try:
                ftp.sock.settimeout(10)
                ftp.getresp()
            except ftplib.Error as reply:
                raise reply from e
            except (OSError, EOFError, AttributeError):
                pass
            raise


def upload(changes_path, url, force=False, timeout=60, tls_context=None):
    """Upload a changes file and every file it lists to ``url`` (``ftp://H:P`` or ``ftps://H:P``,
    path default ``/incoming``); the changes file goes last. Writes the ``<changes>.upload``
    marker afterwards and returns its path.

    Refuses (:class:`FtpError`) when the marker exists, unless ``force``. Every failure raises
    :class:`FtpError`.
    """
    changes_path = pathlib.Path(changes_path)
    marker = upload_marker(changes_path)
    if marker.exists() and not force:
        done = marker.read_text(encoding="utf-8", errors="replace").strip()
        raise FtpError(f"{changes_path.name} already uploaded ({done}); remove {marker} or force to upload again.")
    if not changes_path.is_file():
        raise FtpError(f"No such changes file: {changes_path}")
    scheme, host, port, path = _split_url(url)
    names = changes_file_names(changes_path, strict=True)
    bad = [n for n in names if not valid_file_name(n)]
    if bad:
        raise FtpError(f"{changes_path.name} lists files with bad names: {', '.join(bad)}")
    files = [changes_path.parent / n for n in names if n != changes_path.name] + [changes_path]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FtpError(f"{changes_path.name}: listed files missing: {', '.join(missing)}")

    if scheme == "ftps":
        ftp = ftplib.FTP_TLS(context=tls_context or _client_tls_context(), timeout=timeout)
    else:
        ftp = ftplib.FTP(timeout=timeout)
    current = None
    try:
        ftp.connect(host, port)
        ftp.login()  # anonymous; FTP_TLS does AUTH TLS first
        if scheme == "ftps":
            ftp.prot_p()
        ftp.cwd(path)
        for current in files:
            _store(ftp, current)
            LOG.debug("Uploaded %s to %s", current.name, url)
        current = None
        try:
            ftp.quit()
        except ftplib.all_errors:
            pass
    except ftplib.all_errors as e:
        what = f" (at {current.name})" if current else ""
        reason = str(e) or type(e).__name__
        raise FtpError(f"FTP upload of {changes_path.name} to {url} failed{what}: {reason}") from e
    finally:
        ftp.close()

    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    marker.write_text(f"{url} {stamp}\n", encoding="utf-8")
    LOG.info("Uploaded %s to %s.", changes_path.name, url)
    return marker
