"""Repository delivery as apt uses it (issue #17), against the real daemon of an instance without
chroots (real reprepro repository with one small ``.deb``) on 127.0.0.35:

- ``ETag``/``If-None-Match`` and ``Last-Modified``/``If-Modified-Since`` answer 304 for the index
  files and ``.deb``s, and 200 again after a reprepro export changed them;
- ``Range``: 206 with the right bytes and ``Content-Range``, 416 out of range, several ranges as
  ``multipart/byteranges``; the data-tree headers (safe type, nosniff, ``CSP: sandbox``) on every
  answer of the fast path too;
- a 200 MB sparse file in the repository tree is served whole (and by range) while the daemon's
  resident memory grows much less than the file (streamed, never read into memory);
- apt itself updates (verifying the signature), updates again (304: ``Hit``) and downloads the
  ``.deb``;
- anonymous ``status`` calls are in the access log and not at INFO in ``daemon.log``;
- ``examples/delivery/nginx-repositories.conf`` serves the same bytes with the same safety headers
  and refuses a symlink out of the tree (if nginx is available).
"""

import os
import re
import shutil
import socket
import subprocess
import time
import uuid

import pytest
import requests

from mini_buildd import config
from tests.helpers import delivery_instance
from tests.helpers.daemon import ROOT, Daemon, free_port

HOST = "127.0.0.35"
INDEXES = ("Release", "InRelease", "Packages", "Packages.xz", ".deb")
BIG_BYTES = 200 * 1024 * 1024


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """The instance's daemon on 127.0.0.35 (``base``: its directory)."""
    base = tmp_path_factory.mktemp("delivery")
    home, http_ep, port = delivery_instance.make_instance(base, host=HOST)
    d = Daemon(home, host=HOST, port=port, endpoints=[http_ep]).start()
    d.base = base
    yield d
    assert d.stop() == 0


def url(d, name):
    return f"{d.url}/repositories/test/{delivery_instance.repository_paths()[name]}"


def local(d, name):
    return config.Paths(d.home).repositories / "test" / delivery_instance.repository_paths()[name]


def assert_data_headers(r):
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Security-Policy"] == "sandbox"


@pytest.mark.parametrize("name", INDEXES)
def test_conditional_304(daemon, name):  # pylint: disable=redefined-outer-name
    r = requests.get(url(daemon, name), timeout=30)
    assert r.status_code == 200 and r.content == local(daemon, name).read_bytes()
    assert_data_headers(r)
    etag, modified = r.headers["ETag"], r.headers["Last-Modified"]
    for headers in ({"If-None-Match": etag}, {"If-Modified-Since": modified}, {"If-None-Match": f'"x", {etag}'}):
        c = requests.get(url(daemon, name), headers=headers, timeout=30)
        assert c.status_code == 304 and c.content == b"" and c.headers["ETag"] == etag, headers
    # If-None-Match decides alone: another tag is a 200 even with a matching date.
    c = requests.get(url(daemon, name), headers={"If-None-Match": '"other"', "If-Modified-Since": modified}, timeout=30)
    assert c.status_code == 200 and c.content == r.content


def test_changed_after_export(daemon):  # pylint: disable=redefined-outer-name
    before = {name: requests.get(url(daemon, name), timeout=30).headers for name in ("Release", "InRelease", "Packages")}
    delivery_instance.include_deb(daemon.home, delivery_instance.make_deb(daemon.base, name="mbd-delivery-two", version="1.1"))
    for name, headers in before.items():
        # Exported seconds after setup: a later Last-Modified, so If-Modified-Since sees the change too.
        assert requests.head(url(daemon, name), timeout=30).headers["Last-Modified"] != headers["Last-Modified"], name
        for conditional in ({"If-None-Match": headers["ETag"]}, {"If-Modified-Since": headers["Last-Modified"]}):
            r = requests.get(url(daemon, name), headers=conditional, timeout=30)
            assert r.status_code == 200 and r.content == local(daemon, name).read_bytes(), (name, conditional)
            assert r.headers["ETag"] != headers["ETag"]
    assert b"Package: mbd-delivery-two" in requests.get(url(daemon, "Packages"), timeout=30).content


@pytest.mark.parametrize("name", ("Release", ".deb"))
def test_range(daemon, name):  # pylint: disable=redefined-outer-name
    data = local(daemon, name).read_bytes()
    size = len(data)
    r = requests.get(url(daemon, name), headers={"Range": "bytes=10-99"}, timeout=30)
    assert r.status_code == 206 and r.content == data[10:100]
    assert r.headers["Content-Range"] == f"bytes 10-99/{size}"
    assert_data_headers(r)
    r = requests.get(url(daemon, name), headers={"Range": "bytes=-20"}, timeout=30)
    assert r.status_code == 206 and r.content == data[-20:]
    # apt resuming a partial download: If-Range with the ETag it has.
    etag = requests.head(url(daemon, name), timeout=30).headers["ETag"]
    r = requests.get(url(daemon, name), headers={"Range": "bytes=5-", "If-Range": etag}, timeout=30)
    assert r.status_code == 206 and r.content == data[5:]
    r = requests.get(url(daemon, name), headers={"Range": "bytes=5-", "If-Range": '"stale"'}, timeout=30)
    assert r.status_code == 200 and r.content == data
    r = requests.get(url(daemon, name), headers={"Range": f"bytes={size}-"}, timeout=30)
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{size}"
    r = requests.get(url(daemon, name), headers={"Range": "bytes=0-1,4-5"}, timeout=30)
    assert r.status_code == 206 and r.headers["Content-Type"].startswith("multipart/byteranges")
    assert data[0:2] in r.content and data[4:6] in r.content


def test_types_and_head(daemon):  # pylint: disable=redefined-outer-name
    types = {".deb": "application/vnd.debian.binary-package", "Packages.xz": "application/x-xz",
             "Release": "text/plain; charset=utf-8"}
    for name, ctype in types.items():
        r = requests.head(url(daemon, name), timeout=30)
        assert r.status_code == 200 and r.headers["Content-Type"] == ctype and r.content == b""
        assert int(r.headers["Content-Length"]) == local(daemon, name).stat().st_size
    r = requests.get(url(daemon, "Packages") + ".gz", timeout=30)
    assert r.headers["Content-Type"] == "application/gzip" and "Content-Encoding" not in r.headers
    assert r.content[:2] == b"\x1f\x8b"


def test_no_escape_from_repositories(daemon):  # pylint: disable=redefined-outer-name
    """The fast path keeps the tree's rules: a symlink out of it, ``..`` and a swapped-in directory
    symlink answer 404 (also after the file was cached); reprepro's own links inside it work."""
    paths = config.Paths(daemon.home)
    test = paths.repositories / "test"
    escape = test / "escape"
    os.symlink(paths.home / "config.sqlite", escape)
    try:
        for path in ("escape", "dists/%2e%2e/%2e%2e/%2e%2e/config.sqlite", "dists/../../../config.sqlite"):
            r = requests.get(f"{daemon.url}/repositories/test/{path}", timeout=30)
            assert r.status_code == 404 and b"SQLite" not in r.content, path
    finally:
        escape.unlink()
    contents = f"{daemon.url}/repositories/test/dists/{delivery_instance.DIST}/Contents-amd64.gz"
    r = requests.get(contents, timeout=30)
    assert r.status_code == 200 and r.content == (test / "dists" / delivery_instance.DIST / "main" / "Contents-amd64.gz").read_bytes()
    # A cached file whose directory is swapped for a symlink out of the tree: not served any more.
    pool = test / "pool" / "main" / "s"
    (pool / "swap").mkdir(parents=True)
    (pool / "swap" / "file.deb").write_bytes(b"inside")
    outside = daemon.base / "outside"
    outside.mkdir()
    (outside / "file.deb").write_bytes(b"outside")
    try:
        swap_url = f"{daemon.url}/repositories/test/pool/main/s/swap/file.deb"
        assert requests.get(swap_url, timeout=30).content == b"inside"
        (pool / "swap").rename(pool / "swap.old")
        os.symlink(outside, pool / "swap")
        r = requests.get(swap_url, timeout=30)
        assert r.status_code == 404 and r.content != b"outside"
    finally:
        shutil.rmtree(pool)
        shutil.rmtree(outside)


def vm_rss_kb(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])


def test_big_file_streamed(daemon):  # pylint: disable=redefined-outer-name
    pool = config.Paths(daemon.home).repositories / "test" / "pool" / "main" / "b" / "big"
    pool.mkdir(parents=True)
    big = pool / "big_1.0_all.deb"
    with open(big, "wb") as f:
        f.seek(BIG_BYTES - 5)
        f.write(b"tail\n")
    try:
        big_url = f"{daemon.url}/repositories/test/pool/main/b/big/big_1.0_all.deb"
        pid = daemon.proc.pid
        before = peak = vm_rss_kb(pid)
        received = 0
        with requests.get(big_url, stream=True, timeout=120) as r:
            assert r.status_code == 200 and int(r.headers["Content-Length"]) == BIG_BYTES
            assert_data_headers(r)
            last = b""
            for chunk in r.iter_content(1024 * 1024):
                received += len(chunk)
                last = (last + chunk)[-5:]
                peak = max(peak, vm_rss_kb(pid))
        assert received == BIG_BYTES and last == b"tail\n"
        growth_mb = (max(peak, vm_rss_kb(pid)) - before) / 1024
        assert growth_mb < 40, f"RSS grew by {growth_mb:.0f} MB serving a {BIG_BYTES >> 20} MB file"
        r = requests.get(big_url, headers={"Range": f"bytes={BIG_BYTES - 5}-"}, timeout=30)
        assert r.status_code == 206 and r.content == b"tail\n"
        assert r.headers["Content-Range"] == f"bytes {BIG_BYTES - 5}-{BIG_BYTES - 1}/{BIG_BYTES}"
        assert requests.get(big_url, headers={"Range": f"bytes={BIG_BYTES}-"}, timeout=30).status_code == 416
        etag = r.headers["ETag"]
        assert requests.get(big_url, headers={"If-None-Match": etag}, timeout=30).status_code == 304
    finally:
        shutil.rmtree(pool)


def test_status_calls_in_access_log_only(daemon):  # pylint: disable=redefined-outer-name
    probe = f"delivery-probe-{uuid.uuid4().hex}"
    paths = config.Paths(daemon.home)
    for _ in range(3):  # the first through Django, the others from the API cache
        r = requests.get(f"{daemon.url}/mini_buildd/api/status/", headers={"User-Agent": probe}, timeout=30)
        assert r.status_code == 200
    r = requests.get(url(daemon, "Release"), headers={"User-Agent": probe}, timeout=30)
    deadline = time.monotonic() + 30
    lines = []
    while time.monotonic() < deadline:
        lines = [line for line in paths.access_log.read_text(encoding="utf-8").splitlines() if probe in line]
        if len(lines) >= 4:
            break
        time.sleep(0.2)
    assert len([line for line in lines if '"GET /mini_buildd/api/status/ HTTP/1.1" 200' in line]) == 3, lines
    assert len([line for line in lines if "/Release HTTP/1.1\" 200" in line]) == 1, lines
    daemon_log = paths.daemon_log.read_text(encoding="utf-8")
    assert not re.search(r"^\S+ \S+ INFO .*API call 'status'", daemon_log, re.MULTILINE)
    assert "mini-buildd serving" in daemon_log  # real events are still there


def _apt(tmp_path, *args, cwd=None):
    """apt-get with its own configuration in ``tmp_path`` (lists, cache, no host sources)."""
    proc = subprocess.run(["apt-get", "-q", *args], env=dict(os.environ, APT_CONFIG=str(tmp_path / "apt.conf"), LC_ALL="C"),
                          cwd=cwd or tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and "W: " not in proc.stdout + proc.stderr and "E: " not in proc.stderr, proc.stdout + proc.stderr
    return proc.stdout


def test_apt_update_and_download(daemon, tmp_path):  # pylint: disable=redefined-outer-name
    """apt itself: update (InRelease verified with the instance's key), update again (304: Hit),
    download of the .deb (checksum checked by apt)."""
    for sub in ("lists/partial", "archives/partial", "cache", "parts", "debs"):
        (tmp_path / sub).mkdir(parents=True)
    key = requests.get(f"{daemon.url}/mini_buildd/api/pub_key/?output=plain", timeout=30).text
    subprocess.run(["gpg", "--batch", "--yes", "--dearmor", "-o", str(tmp_path / "key.gpg")], input=key.encode(), check=True)
    (tmp_path / "status").touch()
    (tmp_path / "sources.list").write_text(
        f"deb [signed-by={tmp_path}/key.gpg] {daemon.url}/repositories/test {delivery_instance.DIST} main\n", encoding="utf-8")
    (tmp_path / "apt.conf").write_text("".join(f'{k} "{v}";\n' for k, v in {
        "Dir::Etc::SourceList": tmp_path / "sources.list", "Dir::Etc::SourceParts": tmp_path / "parts",
        "Dir::Etc::Parts": tmp_path / "parts", "Dir::Etc::PreferencesParts": tmp_path / "parts",
        "Dir::State::Lists": tmp_path / "lists", "Dir::State::status": tmp_path / "status", "Dir::Cache": tmp_path / "cache",
        "Dir::Cache::Archives": tmp_path / "archives", "Debug::NoLocking": "true", "APT::Architecture": "amd64",
        "APT::Sandbox::User": "root", "Acquire::Languages": "none"}.items()), encoding="utf-8")
    first = _apt(tmp_path, "update")
    assert re.search(r"^Get:\d+ \S+ \S+ InRelease", first, re.MULTILINE), first
    second = _apt(tmp_path, "update")
    assert re.search(r"^Hit:\d+ \S+ \S+ InRelease", second, re.MULTILINE), second
    _apt(tmp_path, "download", delivery_instance.PACKAGE, cwd=tmp_path / "debs")
    assert (tmp_path / "debs" / "mbd-delivery_1.0_all.deb").read_bytes() == local(daemon, ".deb").read_bytes()
    access_log = config.Paths(daemon.home).access_log
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not re.search(r'/InRelease HTTP/1.1" 304 .*APT', access_log.read_text(encoding="utf-8")):
        time.sleep(0.2)
    assert re.search(r'/InRelease HTTP/1.1" 304 .*APT', access_log.read_text(encoding="utf-8"))


def _nginx_conf(tmp_path, repositories, port):
    text = (ROOT / "examples" / "delivery" / "nginx-repositories.conf").read_text(encoding="utf-8")
    text = text.replace("listen 80;", f"listen {HOST}:{port};").replace("listen [::]:80;", "")
    text = text.replace("/var/lib/mini-buildd/repositories", str(repositories))
    text = text.replace("/var/log/nginx/", f"{tmp_path}/")
    main = tmp_path / "nginx.conf"
    main.write_text("user root;\n"  # the test home is 0700 root
                    f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
                    "http {\n"
                    + "".join(f"  {kind}_temp_path {tmp_path}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
                    + text + "\n}\n", encoding="utf-8")
    return main


def test_nginx_example(daemon, tmp_path, tmp_path_factory):  # pylint: disable=redefined-outer-name
    from tests.integration.test_examples import nginx_binary  # pylint: disable=import-outside-toplevel
    nginx = nginx_binary(tmp_path_factory)
    if not nginx:
        pytest.skip("nginx is neither installed nor downloadable from the host's apt sources")
    repositories = config.Paths(daemon.home).repositories
    escape = repositories / "test" / "escape"
    os.symlink(config.Paths(daemon.home).home / "config.sqlite", escape)
    port = free_port(HOST)
    main = _nginx_conf(tmp_path, repositories, port)
    proc = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(main)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    server = subprocess.Popen([nginx, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(main),  # pylint: disable=consider-using-with
                               "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        base = f"http://{HOST}:{port}/repositories/test/"
        for name, path in delivery_instance.repository_paths().items():
            ours = requests.get(url(daemon, name), timeout=30)
            theirs = requests.get(base + path, timeout=30)
            assert theirs.status_code == 200 and theirs.content == ours.content, name
            assert theirs.headers["Content-Type"] == ours.headers["Content-Type"], name
            assert_data_headers(theirs)
            assert requests.get(base + path, headers={"If-None-Match": theirs.headers["ETag"]}, timeout=30).status_code == 304
            r = requests.get(base + path, headers={"Range": "bytes=1-3"}, timeout=30)
            assert r.status_code == 206 and r.content == ours.content[1:4]
        assert requests.get(base + "escape", timeout=30).status_code in (403, 404)
        assert requests.get(f"http://{HOST}:{port}/", timeout=30).status_code == 404
        assert requests.post(base + delivery_instance.repository_paths()["Release"], timeout=30).status_code == 403
    finally:
        server.terminate()
        server.wait(30)
        escape.unlink()
