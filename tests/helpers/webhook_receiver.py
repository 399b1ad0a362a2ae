"""Test helper: a webhook receiver (``http.server`` in a thread, on 127.0.0.34 by default) that
records every POST (headers, raw body, arrival time) and answers with scripted statuses; optionally
it holds each answer until released (a slow receiver). Also :func:`dead_url`: a closed port."""

import dataclasses
import http.server
import json
import socket
import threading
import time

HOST = "127.0.0.34"


@dataclasses.dataclass
class Received:
    """One request the receiver got."""
    headers: dict
    body: bytes
    arrived: float  # time.monotonic()

    @property
    def json(self):
        return json.loads(self.body)


class Receiver:
    """``statuses``: the answers of the first requests (then ``default``); ``hold``: answer only
    once :meth:`release` is called (at most ``hold_max`` seconds)."""

    def __init__(self, statuses=(), default=200, hold=False, hold_max=30.0, host=HOST):
        self.statuses, self.default = list(statuses), default
        self.received = []
        self.finished = 0  # requests answered
        self.cond = threading.Condition()
        self.hold, self.hold_max = hold, hold_max
        self._released = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            """Record, answer (after the hold)."""

            def do_POST(self):  # noqa: N802  pylint: disable=invalid-name  # http.server's name
                """Record the request, answer with the next scripted status."""
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.cond:
                    receiver.received.append(Received(dict(self.headers.items()), raw, time.monotonic()))
                    status = receiver.statuses.pop(0) if receiver.statuses else receiver.default
                    receiver.cond.notify_all()
                if receiver.hold:
                    receiver._released.wait(receiver.hold_max)  # pylint: disable=protected-access
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the sender gave up (timeout)
                    pass
                with receiver.cond:
                    receiver.finished += 1
                    receiver.cond.notify_all()

            def log_message(self, *_args):  # quiet
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, count, timeout=60.0):
        """The first ``count`` requests, once they arrived (AssertionError after ``timeout``)."""
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(f"{self.url}: {len(self.received)} of {count} requests after {timeout}s")
            return list(self.received[:count])

    def release(self):
        self._released.set()

    def close(self):
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def dead_url(host=HOST):
    """A URL on a port nobody listens on (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    return f"http://{host}:{port}/hook"
