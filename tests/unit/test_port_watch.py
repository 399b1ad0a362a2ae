"""The port watcher's records and its reading of a pool directory listing (issue #16)."""

import http.server
import threading

import pytest

from mini_buildd import config
from mini_buildd.pipeline import port_watch

LISTING = """<html><body>
<a href="../">../</a>
<a href="hello_2.10-2.dsc">hello_2.10-2.dsc</a>
<a href="hello_2.10-3.dsc">hello_2.10-3.dsc</a>
<a href="hello_2.9-1.dsc">hello_2.9-1.dsc</a>
<a href="hello_2.10.orig.tar.gz">hello_2.10.orig.tar.gz</a>
<a href="hello-extra_9.0-1.dsc">hello-extra_9.0-1.dsc</a>
<a href="hello_2.10~rc1-1.dsc">hello_2.10~rc1-1.dsc</a>
</body></html>"""


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        found = self.path == "/pool/main/h/hello/"
        self.send_response(200 if found else 404)
        self.end_headers()
        self.wfile.write(LISTING.encode() if found else b"")

    def log_message(self, *_args):
        pass


@pytest.fixture
def server():
    s = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=s.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{s.server_address[1]}"
    s.shutdown()
    s.server_close()


def test_newest_dsc_of_the_source_in_the_directory(server):
    version, url = port_watch._newest_in_directory(f"{server}/pool/main/h/hello/hello_2.10-2.dsc", "hello")  # pylint: disable=protected-access
    assert (version, url) == ("2.10-3", f"{server}/pool/main/h/hello/hello_2.10-3.dsc")
    assert port_watch._newest_in_directory(f"{server}/nowhere/hello_1.dsc", "hello") is None  # pylint: disable=protected-access


def test_records_skip_rebuilds_and_local_files():
    config.paths.port_watch.unlink(missing_ok=True)
    port_watch.record("internal", "a", "bookworm-o-unstable", "1", ["bookworm-o-unstable", "bookworm-t-unstable"])
    port_watch.record("external", "b", "file:///tmp/b_1.dsc", "1", ["bookworm-t-unstable"])
    port_watch.record("external", "c", "https://archive.example.org/pool/main/c/c/c_1.dsc", "1", ["bookworm-t-unstable"],
                      options="lintian-mode=ignore", allow_unauthenticated=True, user="admin")
    records = port_watch.load()
    assert sorted(records) == ["bookworm-t-unstable|a", "bookworm-t-unstable|c"]
    assert records["bookworm-t-unstable|c"]["options"] == "lintian-mode=ignore" and records["bookworm-t-unstable|c"]["allow_unauthenticated"]
    assert not port_watch.outdated_of("a")
    config.paths.port_watch.unlink()
