"""Test helper: a tiny in-process SMTP server that records what smtplib sends it (EHLO, AUTH
PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT), as a pytest fixture and a context manager."""

import base64
import contextlib
import email
import email.policy
import re
import socketserver
import threading

import pytest


class SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: EHLO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT."""

    def send(self, text):
        self.wfile.write(text.encode() + b"\r\n")

    def handle(self):
        srv = self.server
        self.send("220 localhost test smtp")
        sender, rcpts = None, []
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.decode().rstrip("\r\n")
            verb = cmd.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.send("250-localhost\r\n250-AUTH PLAIN\r\n250 8BITMIME")
            elif verb == "HELO":
                self.send("250 localhost")
            elif verb == "AUTH":
                _zid, user, password = base64.b64decode(cmd.split()[2]).decode().split("\0")
                srv.logins.append((user, password))
                self.send("235 ok" if (user, password) == srv.credentials else "535 no")
            elif verb == "MAIL":
                sender, rcpts = re.search(r"<(.*?)>", cmd).group(1), []
                self.send("250 ok")
            elif verb == "RCPT":
                rcpts.append(re.search(r"<(.*?)>", cmd).group(1))
                self.send("250 ok")
            elif verb == "DATA":
                self.send("354 go")
                data = []
                while (line := self.rfile.readline()) not in (b".\r\n", b""):
                    data.append(line[1:] if line.startswith(b"..") else line)
                srv.mails.append((sender, rcpts, email.message_from_bytes(b"".join(data), policy=email.policy.default)))
                self.send("250 queued")
            elif verb in ("RSET", "NOOP"):
                self.send("250 ok")
            elif verb == "QUIT":
                self.send("221 bye")
                return
            else:
                self.send("502 unknown")


@contextlib.contextmanager
def running_smtp_server(host="127.0.0.1"):
    """Start the server; it has ``mails`` [(sender, rcpts, message)], ``logins`` and ``credentials``."""
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer((host, 0), SmtpHandler)
    server.daemon_threads = True
    server.mails, server.logins, server.credentials = [], [], ("mbd", "pw")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture
def smtp_server():
    with running_smtp_server() as server:
        yield server
