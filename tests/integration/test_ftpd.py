"""FTP incoming (mini_buildd.pipeline.ftpd) against real pyftpdlib on 127.0.0.1, with real clients:
our upload(), Python's ftplib, and Debian's dput."""

# pytest idioms: fixtures are parameters named like them; asserts compare with empty containers on purpose (the
# type counts too).
# pylint: disable=redefined-outer-name,use-implicit-booleaness-not-comparison

import ftplib
import hashlib
import io
import os
import pathlib
import shutil
import socket
import ssl
import stat
import threading
import time

import pytest

from mini_buildd.tools import call
from mini_buildd.pipeline import ftpd
from tests.helpers.daemon import free_port


# --- helpers ------------------------------------------------------------------------------------

def make_changes(directory, source="hello", version="1.0", arch="source", name=None, extra_files=(), signed=False):
    """Write a small source upload (.dsc, .tar.xz) and a changes file listing them with correct
    md5/sha1/sha256/size; return the changes path."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        f"{source}_{version}.dsc": f"Format: 3.0 (native)\nSource: {source}\nVersion: {version}\n",
        f"{source}_{version}.tar.xz": f"pretend tarball of {source} {version}\n" * 20,
    }
    files.update(dict(extra_files))
    for n, content in files.items():
        (directory / n).write_text(content)

    def sums(algo, with_section):
        lines = []
        for n in files:
            data = (directory / n).read_bytes()
            digest = hashlib.new(algo, data).hexdigest()
            lines.append(f" {digest} {len(data)}" + (" devel optional" if with_section else "") + f" {n}")
        return "\n".join(lines)

    body = (
        "Format: 1.8\n"
        "Date: Mon, 01 Jan 2024 00:00:00 +0000\n"
        f"Source: {source}\n"
        f"Architecture: {arch}\n"
        f"Version: {version}\n"
        "Distribution: bookworm-test-unstable\n"
        "Urgency: medium\n"
        "Maintainer: Test <test@example.org>\n"
        "Changed-By: Test <test@example.org>\n"
        "Changes:\n"
        f" {source} ({version}) bookworm-test-unstable; urgency=medium\n"
        " .\n"
        "   * Test upload.\n"
        f"Checksums-Sha1:\n{sums('sha1', False)}\n"
        f"Checksums-Sha256:\n{sums('sha256', False)}\n"
        f"Files:\n{sums('md5', True)}\n"
    )
    if signed:  # fake clear-signature armor: parsing must see through it
        body = ("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n" + body
                + "-----BEGIN PGP SIGNATURE-----\n\nZmFrZQ==\n-----END PGP SIGNATURE-----\n")
    path = directory / (name or f"{source}_{version}_{arch}.changes")
    path.write_text(body)
    return path


def listed(changes):
    return ftpd.changes_file_names(changes)


def wait_for(predicate, timeout=10.0):
    """Poll ``predicate`` until it is true (True) or ``timeout`` passes (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class Consumer:
    """on_session callback like the engine's incoming: records each session's file names (in the
    order handed over) and their modes at hand-over, and moves them out of incoming."""

    def __init__(self, processed):
        self.processed = pathlib.Path(processed)
        self.processed.mkdir(parents=True, exist_ok=True)
        self.sessions = []
        self.modes = {}
        self.lock = threading.Lock()

    def __call__(self, paths):
        with self.lock:
            assert isinstance(paths, list) and all(isinstance(p, pathlib.Path) for p in paths), paths
            self.sessions.append([p.name for p in paths])
            for p in paths:
                self.modes[p.name] = stat.S_IMODE(p.stat().st_mode)
                shutil.move(str(p), str(self.processed / p.name))

    def names(self):
        """The changes files handed over, over all sessions, in order."""
        with self.lock:
            return [n for s in self.sessions for n in s if n.endswith(".changes")]


def home_with_incoming(tmp_path):
    incoming = tmp_path / "home" / "incoming"
    incoming.mkdir(parents=True)
    return incoming


@pytest.fixture
def server(tmp_path):
    """A running FtpD on a free port with an incoming dir and a recording consumer; stopped after."""
    incoming = home_with_incoming(tmp_path)
    consumer = Consumer(tmp_path / "processed")
    port = free_port()
    srv = ftpd.FtpD(f"tcp:interface=127.0.0.1:port={port}", incoming, consumer)
    srv.start()
    srv.consumer, srv.url, srv.port = consumer, f"ftp://127.0.0.1:{port}", port
    yield srv
    srv.stop()


def anonymous(port, cwd="/incoming"):
    """An anonymous FTP session on ``port`` (in ``cwd`` if given)."""
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", port, timeout=10)
    ftp.login()
    if cwd:
        ftp.cwd(cwd)
    return ftp


def store(ftp, name, data=b"data\n"):
    return ftp.storbinary(f"STOR {name}", io.BytesIO(data))


# --- tests --------------------------------------------------------------------------------------

def test_upload_hands_over_changes_once_files_read_only(server, tmp_path):
    changes = make_changes(tmp_path / "up")
    marker = ftpd.upload(changes, server.url)
    assert wait_for(lambda: server.consumer.names() == [changes.name])
    time.sleep(0.3)
    assert server.consumer.names() == [changes.name]  # once only
    # Every listed file and the changes arrived, read-only, identical.
    for name in listed(changes) + [changes.name]:
        assert server.consumer.modes[name] == 0o444, name
        assert (server.consumer.processed / name).read_bytes() == (changes.parent / name).read_bytes()
    assert marker == changes.parent / (changes.name + ".upload")
    assert server.url in marker.read_text(encoding="utf-8")
    assert list(server.incoming.iterdir()) == []


def test_changes_uploaded_last(server, tmp_path, monkeypatch):
    received = []
    orig = ftpd._IncomingHandlerMixin.on_disconnect  # pylint: disable=protected-access

    def spy(self):
        received.extend(os.path.basename(f) for f in self.mbd_received)
        orig(self)
    monkeypatch.setattr(ftpd._IncomingHandlerMixin, "on_disconnect", spy)  # pylint: disable=protected-access
    changes = make_changes(tmp_path / "up")
    ftpd.upload(changes, server.url)
    assert wait_for(lambda: server.consumer.names() == [changes.name])
    assert received == listed(changes) + [changes.name]


def test_dput_upload(server, tmp_path):
    changes = make_changes(tmp_path / "dput", source="dputtest")
    cfg = tmp_path / "dput.cf"
    cfg.write_text(
        "[DEFAULT]\n"
        "method = ftp\n"
        "hash = md5\n"
        "allow_unsigned_uploads = 0\n"
        "run_lintian = 0\n"
        "run_dinstall = 0\n"
        "check_version = 0\n"
        "passive_ftp = 1\n"
        "\n"
        "[mbd-test]\n"
        "method = ftp\n"
        f"fqdn = 127.0.0.1:{server.port}\n"
        "login = anonymous\n"
        "incoming = /incoming\n"
        "allow_unsigned_uploads = 1\n"
    )
    call.run(["dput", "-c", cfg, "mbd-test", changes], cwd=tmp_path, timeout=60, env={"HOME": str(tmp_path)})
    assert wait_for(lambda: server.consumer.names() == [changes.name])
    for name in listed(changes):
        assert (server.consumer.processed / name).read_bytes() == (changes.parent / name).read_bytes()
        assert server.consumer.modes[name] == 0o444


def test_whole_session_handed_over_at_disconnect(server, tmp_path):
    """Every completely received file of a session, stray ones included (sorting them out is the
    incoming quarantine's job), in upload order, once, and only when the client has gone."""
    changes = make_changes(tmp_path / "up", source="crufty")
    ftp = anonymous(server.port)
    store(ftp, "stray-file.txt")
    store(ftp, "other_1.0.tar.xz")
    for name in listed(changes) + [changes.name]:
        with open(changes.parent / name, "rb") as f:
            ftp.storbinary(f"STOR {name}", f)
    # Still connected: nothing handed over yet.
    time.sleep(0.2)
    assert server.consumer.sessions == []
    assert (server.incoming / "stray-file.txt").exists()
    ftp.quit()
    assert wait_for(lambda: server.consumer.sessions != [])
    assert server.consumer.sessions == [["stray-file.txt", "other_1.0.tar.xz"] + listed(changes) + [changes.name]]
    assert list(server.incoming.iterdir()) == []


def test_abrupt_disconnect_hands_over_complete_files_only(server):
    ftp = anonymous(server.port)
    store(ftp, "lonely.deb")
    # A transfer cut off in the middle: the control connection goes away while the data
    # connection is still open (no QUIT).
    conn = ftp.transfercmd("STOR cut.deb")
    conn.sendall(b"x" * 100000)
    assert wait_for((server.incoming / "cut.deb").exists)
    ftp.sock.close()
    ftp.close()
    assert wait_for(lambda: server.consumer.sessions != [])
    conn.close()
    assert server.consumer.sessions == [["lonely.deb"]]
    assert wait_for(lambda: list(server.incoming.iterdir()) == [])
    time.sleep(0.3)
    assert server.consumer.sessions == [["lonely.deb"]]  # once only


def test_session_without_files_hands_over_nothing(server):
    ftp = anonymous(server.port)
    ftp.nlst()
    ftp.quit()
    time.sleep(0.3)
    assert server.consumer.sessions == []


def test_refused_operations(server):
    ftp = anonymous(server.port)
    store(ftp, "keep.txt", b"original\n")
    # No overwrite, no append, no resume.
    with pytest.raises(ftplib.error_perm, match="^550"):
        store(ftp, "keep.txt", b"evil\n")
    with pytest.raises(ftplib.error_perm, match="^55"):
        ftp.storbinary("APPE keep.txt", io.BytesIO(b"more\n"))
    with pytest.raises(ftplib.error_perm, match="^55"):
        ftp.storbinary("STOU", io.BytesIO(b"more\n"))
    assert (server.incoming / "keep.txt").read_bytes() == b"original\n"
    # Path parts and '..' are refused.
    for bad in ("../escape.txt", "sub/x.txt", "/incoming/abs.txt", "..", ".hidden"):
        with pytest.raises(ftplib.error_perm, match="^553"):
            store(ftp, bad)
    assert not (server.incoming.parent / "escape.txt").exists()
    assert sorted(p.name for p in server.incoming.iterdir()) == ["keep.txt"]
    # No delete, rename, mkdir, chmod.
    with pytest.raises(ftplib.error_perm, match="^550"):
        ftp.delete("keep.txt")
    with pytest.raises(ftplib.error_perm, match="^550"):
        ftp.rename("keep.txt", "moved.txt")
    with pytest.raises(ftplib.error_perm, match="^550"):
        ftp.mkd("newdir")
    with pytest.raises(ftplib.error_perm, match="^5"):
        ftp.sendcmd("SITE CHMOD 777 keep.txt")
    assert sorted(p.name for p in server.incoming.iterdir()) == ["keep.txt"]
    assert stat.S_IMODE((server.incoming / "keep.txt").stat().st_mode) == 0o444
    # The area is listable; the FTP root (the instance home) is not.
    assert "keep.txt" in ftp.nlst()
    with pytest.raises(ftplib.error_perm, match="^550"):
        ftp.cwd("/")
    with pytest.raises(ftplib.error_perm, match="^550"):
        ftp.nlst("/")
    ftp.quit()
    # Only anonymous may log in.
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", server.port, timeout=10)
    with pytest.raises(ftplib.error_perm, match="^530"):
        ftp.login("root", "secret")
    ftp.close()


def make_cert(tmp_path):
    key, cert = tmp_path / "ftpd.key", tmp_path / "ftpd.crt"
    call.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
              "-days", "2", "-subj", "/CN=127.0.0.1"], timeout=60)
    return key, cert


def test_ftps(tmp_path):
    key, cert = make_cert(tmp_path)
    incoming = home_with_incoming(tmp_path)
    consumer = Consumer(tmp_path / "processed")
    port = free_port()
    with ftpd.FtpD(f"ssl:interface=127.0.0.1:port={port}:privateKey={key}:certKey={cert}", incoming, consumer):
        changes = make_changes(tmp_path / "up", source="tlstest", signed=True)
        ftpd.upload(changes, f"ftps://127.0.0.1:{port}")
        assert wait_for(lambda: consumer.names() == [changes.name])
        assert sorted(p.name for p in consumer.processed.iterdir()) == sorted(listed(changes) + [changes.name])

        # Plain FTP: login refused (TLS required on the control channel).
        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", port, timeout=10)
        with pytest.raises(ftplib.error_perm, match="^550"):
            ftp.login()
        ftp.close()
        # ... and our client says so clearly.
        other = make_changes(tmp_path / "plain", source="plain")
        with pytest.raises(ftpd.FtpError, match=f"ftp://127.0.0.1:{port}"):
            ftpd.upload(other, f"ftp://127.0.0.1:{port}")
        assert not ftpd.upload_marker(other).exists()

        # TLS control but clear data channel: refused as well.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        ftp = ftplib.FTP_TLS(context=context)
        ftp.connect("127.0.0.1", port, timeout=10)
        ftp.login()
        ftp.cwd("/incoming")
        with pytest.raises(ftplib.error_perm, match="^5"):
            ftp.storbinary("STOR clear.txt", io.BytesIO(b"x"))
        ftp.close()
        assert not (incoming / "clear.txt").exists()


def test_stop_frees_port_quickly(tmp_path):
    incoming = home_with_incoming(tmp_path)
    port = free_port()
    endpoint = f"tcp:interface=127.0.0.1:port={port}"
    srv = ftpd.FtpD(endpoint, incoming, lambda p: None)
    srv.start()
    assert srv.is_running and srv.address[1] == port  # pylint: disable=unsubscriptable-object  # set once running
    client = anonymous(port)  # an open session must not delay stop()
    begin = time.monotonic()
    srv.stop()
    assert time.monotonic() - begin < 3
    assert not srv.is_running
    with pytest.raises((EOFError, OSError, ftplib.Error)):
        client.voidcmd("NOOP")
    client.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    srv.stop()  # idempotent
    # The same port serves again at once (new server and a restart of the old one).
    again = ftpd.FtpD(endpoint, incoming, lambda p: None)
    again.start()
    anonymous(port).quit()
    again.stop()
    srv.start()
    anonymous(port).quit()
    srv.stop()


def _has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
def test_tcp6_endpoint_dual_stack(tmp_path):
    incoming = home_with_incoming(tmp_path)
    consumer = Consumer(tmp_path / "processed")
    port = free_port()
    with ftpd.FtpD(f"tcp6:port={port}", incoming, consumer) as srv:
        assert srv.address[0] == "::"  # pylint: disable=unsubscriptable-object  # set once running
        first = make_changes(tmp_path / "v6", source="six")
        ftpd.upload(first, f"ftp://[::1]:{port}")
        second = make_changes(tmp_path / "v4", source="four")
        ftpd.upload(second, f"ftp://127.0.0.1:{port}")
        assert wait_for(lambda: consumer.names() == [first.name, second.name])


def test_start_errors(tmp_path):
    incoming = home_with_incoming(tmp_path)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        busy = blocker.getsockname()[1]
        with pytest.raises(ftpd.FtpError, match="Can't start FTP server"):
            ftpd.FtpD(f"tcp:interface=127.0.0.1:port={busy}", incoming, print).start()
    with pytest.raises(ftpd.FtpError, match="must be named"):
        ftpd.FtpD("tcp:port=1", tmp_path, print)
    with pytest.raises(ftpd.FtpError, match="passive_ports"):
        ftpd.FtpD("tcp:port=1", incoming, print, options="passive_ports=9-1")
    with pytest.raises(ftpd.FtpError, match="Unknown"):
        ftpd.FtpD("tcp:port=1", incoming, print, options="bogus=1")
    with pytest.raises(ftpd.FtpError, match="not readable"):
        ftpd.FtpD("ssl:port=1:privateKey=/nonexistent.key:certKey=/nonexistent.crt", incoming, print).start()


def test_passive_ports_option(tmp_path):
    incoming = home_with_incoming(tmp_path)
    consumer = Consumer(tmp_path / "processed")
    port, pasv = free_port(), free_port()
    with ftpd.FtpD(f"tcp:interface=127.0.0.1:port={port}", incoming, consumer, options=f"passive_ports={pasv}-{pasv}"):
        ftp = anonymous(port)
        host, data_port = ftplib.parse227(ftp.sendcmd("PASV"))
        assert (host, data_port) == ("127.0.0.1", pasv)
        ftp.close()


def test_upload_marker_and_force(server, tmp_path):
    changes = make_changes(tmp_path / "up", source="marker")
    marker = ftpd.upload_marker(changes)
    assert not marker.exists()
    ftpd.upload(changes, server.url + "/")
    assert wait_for(lambda: server.consumer.names() == [changes.name])
    content = marker.read_text(encoding="utf-8")
    assert content.startswith(server.url + "/ ") and content.strip().split()[-1][:4].isdigit()

    with pytest.raises(ftpd.FtpError, match="already uploaded"):
        ftpd.upload(changes, server.url)
    assert marker.read_text(encoding="utf-8") == content
    time.sleep(0.3)
    assert server.consumer.names() == [changes.name]

    ftpd.upload(changes, server.url, force=True)
    assert wait_for(lambda: server.consumer.names() == [changes.name, changes.name])
    assert marker.read_text(encoding="utf-8").startswith(server.url + " ")


def test_upload_errors(server, tmp_path):
    changes = make_changes(tmp_path / "up", source="errs")
    # Nobody listening.
    dead = free_port()
    with pytest.raises(ftpd.FtpError, match=f"ftp://127.0.0.1:{dead}.*(refused|Errno)"):
        ftpd.upload(changes, f"ftp://127.0.0.1:{dead}", timeout=5)
    assert not ftpd.upload_marker(changes).exists()
    # Bad URLs.
    for url in ("http://127.0.0.1:1", "127.0.0.1:1", "ftp://127.0.0.1:notaport"):
        with pytest.raises(ftpd.FtpError, match="URL|port"):
            ftpd.upload(changes, url)
    # A listed file is missing.
    (changes.parent / listed(changes)[0]).unlink()
    with pytest.raises(ftpd.FtpError, match="missing"):
        ftpd.upload(changes, server.url)
    # Refused by the server: the file already sits in incoming (name collision).
    other = make_changes(tmp_path / "collide", source="coll")
    (server.incoming / listed(other)[0]).write_text("already here\n")
    with pytest.raises(ftpd.FtpError, match=f"at {listed(other)[0]}.*550"):
        ftpd.upload(other, server.url)
    assert not ftpd.upload_marker(other).exists()
    # Not a changes file at all.
    junk = tmp_path / "junk.changes"
    junk.write_text("this is not deb822 with files\n")
    with pytest.raises(ftpd.FtpError, match="lists no files|parse"):
        ftpd.upload(junk, server.url)
