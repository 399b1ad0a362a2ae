"""The files in examples/ used for real: the dput target and dput-ng profile match what a real
instance hands out and are read by dput (and dput-ng, when it is the installed dput), the Python
API client and the consumer APT script run against a real daemon, the event hook is run by the
daemon's hook mechanism, the keyring configuration is loaded by python3-keyring, the shell
scripts pass ``sh -n`` (and shellcheck when installed), and the nginx reverse proxy passes
``nginx -t`` and proxies a login to a real daemon (Debian's nginx, unpacked if not installed)."""

import configparser
import json
import os
import pathlib
import shutil
import socket
import subprocess
import time

import pytest
import requests

from mini_buildd.events import Event, Events, Type
from tests.helpers.daemon import Daemon, free_port, in_home, PYTHON, ROOT
from tests.helpers.dput_ng import dput_ng

EXAMPLES = ROOT / "examples"
PASSWORD = "examples-Secret-1"
ED25519 = "Key-Type: EdDSA\nKey-Curve: ed25519\nKey-Usage: sign\nExpire-Date: 0"
SHELL_SCRIPTS = ["consumer/setup-apt.sh", "nspawn/mini-buildd-container.sh", "hooks/50-log-installed"]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """A real daemon with an active Daemon (fast key; engine and FTP running), identity 'mbd',
    superuser admin."""
    home = tmp_path_factory.mktemp("examples") / "home"
    ftp_port = free_port()
    in_home(home, f"d = models.Daemon.get()\nd.gnupg_template = {ED25519!r}\nd.identity = 'mbd'\n"
                  f"d.ftpd_bind = 'tcp:interface=127.0.0.1:port={ftp_port}'\nd.save()\nd.mbd_pca()\n"
                  "assert models.Daemon.get().mbd_is_active()\n"
                  "from django.contrib.auth.models import User\n"
                  f"User.objects.create_superuser('admin', 'admin@example.org', {PASSWORD!r})\n")
    d = Daemon(home)
    d.ftp_port = ftp_port
    d.start(timeout=120)
    yield d
    assert d.stop() == 0


def api(daemon, call, **params):  # pylint: disable=redefined-outer-name
    r = requests.get(f"{daemon.url}/mini_buildd/api/{call}/", params={"output": "json", **params}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


# ------------------------------------------------------------------------------------------------ dput
def read_ini(text):
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read_string(text)
    return cfg


def test_dput_cf_is_what_the_instance_hands_out(daemon):  # pylint: disable=redefined-outer-name
    example = read_ini((EXAMPLES / "dput" / "dput.cf").read_text())
    served = read_ini(api(daemon, "dput_conf"))
    assert example.sections() == served.sections() == ["mini-buildd-mbd"]
    assert dict(example["DEFAULT"]) == dict(served["DEFAULT"])
    assert set(example["mini-buildd-mbd"]) == set(served["mini-buildd-mbd"])
    for key in ("method", "login", "incoming"):
        assert example["mini-buildd-mbd"][key] == served["mini-buildd-mbd"][key]
    assert served["mini-buildd-mbd"]["fqdn"] == f"127.0.0.1:{daemon.ftp_port}"
    assert example["mini-buildd-mbd"]["fqdn"] == "mbd.example.org:8067"


def test_dput_cf_is_read_by_mini_buildd_dput():
    from mini_buildd.cli import dput  # pylint: disable=import-outside-toplevel
    assert dput.target_url(str(EXAMPLES / "dput" / "dput.cf"), "mini-buildd-mbd") == "ftp://mbd.example.org:8067/incoming"


def dput_env(tmp_path):
    home = tmp_path / "dput-home"
    home.mkdir()
    return home, {**os.environ, "HOME": str(home)}


def load_dput_ng_profile(home, name):
    """dput-ng's own profile loader (it reads ~/.dput.cf and ~/.dput.d/profiles/), validated by dput-ng
    (the installed one, or the real packages unpacked: :mod:`tests.helpers.dput_ng`)."""
    code = ("import json, dput.profile, dput.util\n"
            f"p = dput.profile.load_profile({name!r})\n"
            f"dput.util.validate_object('config', p, {name!r})\n"
            "print(json.dumps({k: p[k] for k in ('method', 'fqdn', 'login', 'incoming')}))\n")
    proc = dput_ng().python(code, home)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_dput_cf_is_read_by_dput(tmp_path):
    """Both dput implementations read the example: the installed one's host list, and dput-ng's loader."""
    if not shutil.which("dput"):
        pytest.skip("dput is not installed")
    home, env = dput_env(tmp_path)
    shutil.copy(EXAMPLES / "dput" / "dput.cf", home / ".dput.cf")
    expected = {"method": "ftp", "fqdn": "mbd.example.org:8067", "login": "anonymous", "incoming": "/incoming"}
    assert load_dput_ng_profile(home, "mini-buildd-mbd") == expected
    if not is_dput_ng():
        proc = subprocess.run(["dput", "-H"], env=env, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        assert "mini-buildd-mbd" in proc.stdout and "mbd.example.org" in proc.stdout


def is_dput_ng():
    """Whether the installed dput is dput-ng."""
    dput = shutil.which("dput")
    if not dput:
        return False
    with open(dput, "rb") as f:
        head = f.read(65536)
    return b"dput.core" in head or b"from dput" in head


def test_dput_ng_profile_is_what_the_instance_hands_out(daemon):  # pylint: disable=redefined-outer-name
    example = json.loads((EXAMPLES / "dput-ng" / "mini-buildd-mbd.json").read_text())
    served = json.loads(api(daemon, "dput_conf", dput_ng_profile="true"))
    assert set(example) == set(served)
    assert {k: v for k, v in example.items() if k != "fqdn"} == {k: v for k, v in served.items() if k != "fqdn"}


def test_dput_ng_profile_fits_dput_ngs_schema():
    schema_path = dput_ng().data_dir / "schemas" / "config.json"
    profile = json.loads((EXAMPLES / "dput-ng" / "mini-buildd-mbd.json").read_text())
    schema = json.loads(schema_path.read_text())
    types = {"string": str, "boolean": bool, "array": list, "object": dict, "integer": int}
    for key, value in profile.items():
        assert key in schema["properties"], key
        expected = schema["properties"][key].get("type")
        if isinstance(expected, str):
            assert isinstance(value, types[expected]), (key, value)
    try:
        import jsonschema  # pylint: disable=import-outside-toplevel
    except ImportError:
        return
    jsonschema.validate(profile, schema)


def test_dput_ng_loads_the_profile(tmp_path):
    home, _env = dput_env(tmp_path)
    (home / ".dput.d" / "profiles").mkdir(parents=True)
    shutil.copy(EXAMPLES / "dput-ng" / "mini-buildd-mbd.json", home / ".dput.d" / "profiles" / "mini-buildd-mbd.json")
    profile = load_dput_ng_profile(home, "mini-buildd-mbd")
    assert profile == json.loads((EXAMPLES / "dput-ng" / "mini-buildd-mbd.json").read_text())


# ------------------------------------------------------------------------------------------------ API client
def client(daemon, *args, env=None):  # pylint: disable=redefined-outer-name
    return subprocess.run([PYTHON, str(EXAMPLES / "api-client" / "mbd_client.py"), daemon.url, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None})


def test_api_client(daemon):  # pylint: disable=redefined-outer-name
    proc = client(daemon, "status", env={"MBD_USER": None})
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["identity"] == "mbd" and status["load"] >= 0

    proc = client(daemon, "dput_conf", "dput_ng_profile=true", env={"MBD_USER": None})
    assert proc.returncode == 0 and "anonymous" in json.loads(proc.stdout)

    proc = client(daemon, "uploaders", env={"MBD_USER": "admin", "MBD_PASSWORD": PASSWORD})
    assert proc.returncode == 0, proc.stderr
    assert isinstance(json.loads(proc.stdout), dict)

    proc = client(daemon, "uploaders", env={"MBD_USER": None})
    assert proc.returncode == 1 and proc.stderr.startswith("mbd_client: 401"), proc.stderr

    proc = client(daemon, "uploaders", env={"MBD_USER": "admin", "MBD_PASSWORD": "wrong"})
    assert proc.returncode == 1 and "Login failed" in proc.stderr, proc.stderr


# ------------------------------------------------------------------------------------------------ consumer
def test_consumer_apt_setup(daemon, tmp_path):  # pylint: disable=redefined-outer-name
    dest = tmp_path / "root"
    proc = subprocess.run(["sh", str(EXAMPLES / "consumer" / "setup-apt.sh"), daemon.url], cwd=tmp_path,
                          env={**os.environ, "DESTDIR": str(dest)}, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    keyring = dest / "etc/apt/keyrings/mini-buildd-mbd.gpg"
    listing = dest / "etc/apt/sources.list.d/mini-buildd-mbd.list"
    assert keyring.is_file() and listing.is_file()
    assert listing.read_text().startswith(f"# mini-buildd instance mbd at {daemon.url}")
    shown = subprocess.run(["gpg", "--batch", "--with-colons", "--show-keys", str(keyring)], capture_output=True,
                           text=True, timeout=60, check=False, env={**os.environ, "GNUPGHOME": str(tmp_path)})
    assert shown.returncode == 0, shown.stderr
    assert "mbd" in shown.stdout  # the instance key's user id
    # the lines ask for exactly this keyring (when there are lines)
    lines = [line for line in listing.read_text().splitlines() if line.startswith("deb")]
    assert all("signed-by=/etc/apt/keyrings/mini-buildd-mbd.gpg" in line for line in lines)


def test_consumer_script_usage():
    proc = subprocess.run(["sh", str(EXAMPLES / "consumer" / "setup-apt.sh")], capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 2 and "usage" in proc.stderr


# ------------------------------------------------------------------------------------------------ hook
def test_event_hook_run_by_the_daemons_hook_mechanism(tmp_path, monkeypatch):
    hooks = tmp_path / "event-hooks"
    hooks.mkdir()
    shutil.copy(EXAMPLES / "hooks" / "50-log-installed", hooks / "50-log-installed")
    assert os.access(hooks / "50-log-installed", os.X_OK)
    log = tmp_path / "packages.log"
    monkeypatch.setenv("MBD_HOOK_LOG", str(log))
    hub = Events(tmp_path / "events", hooks_dir=hooks)
    for i, type_ in enumerate((Type.PACKAGING, Type.INSTALLED, Type.FAILED, Type.MIGRATED)):
        tc = f"20261122:01000{i}:000000"
        event = Event(type_, "bookworm-test-unstable", "hello", f"1.0-{i}", f"2026-11-22T01:00:0{i}+00:00",
                      {"timecode": tc, "key": f"hello/1.0-{i}/{tc}", "bkey": f"hello/1.0-{i}/{tc}/source"})
        hub.log(event, save_dir=tmp_path / "events" / "hello" / f"1.0-{i}" / tc / "source")
    assert hub.join(timeout=60)
    assert log.read_text().splitlines() == [
        "2026-11-22T01:00:01.000000+00:00 INSTALLED hello 1.0-1 bookworm-test-unstable",
        "2026-11-22T01:00:02.000000+00:00 FAILED hello 1.0-2 bookworm-test-unstable"]


# ------------------------------------------------------------------------------------------------ keyring
def test_keyringrc_is_loaded_by_python3_keyring(tmp_path):
    config_dir = tmp_path / "config" / "python_keyring"
    config_dir.mkdir(parents=True)
    text = (EXAMPLES / "keyring" / "keyringrc.cfg").read_text()
    code = "import keyring, keyring.core\nk = keyring.get_keyring()\nprint(type(k).__module__ + '.' + type(k).__name__)\n"
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data")}
    env.pop("PYTHON_KEYRING_BACKEND", None)
    for backend in ("keyring.backends.SecretService.Keyring", "keyring.backends.null.Keyring"):
        (config_dir / "keyringrc.cfg").write_text(
            text.replace("default-keyring = keyring.backends.SecretService.Keyring", f"default-keyring = {backend}"))
        assert backend in (config_dir / "keyringrc.cfg").read_text()
        proc = subprocess.run([PYTHON, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0 and "SecretService" in backend and "Unable to initialize SecretService" in proc.stderr:
            continue  # keyring chose the configured back end; there is no D-Bus session here
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == backend, proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------------ shell scripts
@pytest.mark.parametrize("script", SHELL_SCRIPTS)
def test_shell_scripts_parse(script):
    path = EXAMPLES / script
    assert os.access(path, os.X_OK), script
    assert path.read_text().startswith("#!/bin/sh\n")
    proc = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    if shutil.which("shellcheck"):
        proc = subprocess.run(["shellcheck", "-s", "sh", str(path)], capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stdout


def test_nspawn_recipe_checks_its_arguments():
    """Without the right arguments the recipe stops before touching anything (no container is made)."""
    script = str(EXAMPLES / "nspawn" / "mini-buildd-container.sh")
    for args, text in (((), "usage"), (("Bad_Name", "bookworm", "http://archive.example.org/debian", "/nonexistent"), "NAME"),
                       (("mbd", "buster", "http://archive.example.org/debian", "/nonexistent"), "CODENAME")):
        proc = subprocess.run(["sh", script, *args], capture_output=True, text=True, timeout=30, check=False)
        assert proc.returncode == 2 and text in proc.stderr, proc.stderr
    for line in ("Capability=CAP_SYS_ADMIN", "VirtualEthernet=no", "Boot=yes"):
        assert line in pathlib.Path(script).read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------ reverse proxy
_NGINX = {}


def nginx_binary(tmp_path_factory):
    """The installed nginx, else the real Debian package unpacked (``apt-get download nginx``:
    installing it would start a system nginx on port 80); None if neither is possible."""
    installed = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if installed or "nginx" in _NGINX:
        return installed or _NGINX["nginx"]
    base = tmp_path_factory.mktemp("nginx-deb")
    subprocess.run(["apt-get", "download", "-q", "nginx"], cwd=base, capture_output=True, check=False, timeout=300)
    debs = list(base.glob("nginx_*.deb"))
    binary = None
    if debs and subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(base / "root")], check=False).returncode == 0:
        binary = str(base / "root" / "usr" / "sbin" / "nginx")
    _NGINX["nginx"] = binary
    return binary


def self_signed(tmp_path):
    """A self-signed localhost key and certificate in ``tmp_path``: (key, cert)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"],
                   capture_output=True, check=True, timeout=60)
    return key, cert


def nginx_config(tmp_path, public, port, backend):
    """The example with this test's certificate, public name, listening port and backend."""
    key, cert = self_signed(tmp_path)
    text = (EXAMPLES / "reverse-proxy" / "nginx-mini-buildd.conf").read_text()
    text = text.replace("/etc/ssl/mini-buildd/certs/mini-buildd.crt", str(cert))
    text = text.replace("/etc/ssl/mini-buildd/private/mini-buildd.key", str(key))
    text = text.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;").replace("listen [::]:443 ssl;\n", "")
    text = text.replace("mbd\\.example\\.org", public.replace(".", "\\.")).replace("mbd.example.org", public)
    text = text.replace("http://127.0.0.1:8066", backend)
    site = tmp_path / "site.conf"
    site.write_text(text)
    main = tmp_path / "nginx.conf"
    main.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
                    f"http {{\n  access_log off;\n"
                    + "".join(f"  {kind}_temp_path {tmp_path}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
                    + f"  include {site};\n}}\n")
    return main


def test_nginx_reverse_proxy(daemon, tmp_path, tmp_path_factory):  # pylint: disable=redefined-outer-name
    nginx = nginx_binary(tmp_path_factory)
    if not nginx:
        pytest.skip("nginx is neither installed nor downloadable from the host's apt sources")
    port = free_port()
    public = f"localhost:{port}"
    main = nginx_config(tmp_path, public, port, daemon.url)
    proc = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(main)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr

    server = subprocess.Popen([nginx, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(main),  # pylint: disable=consider-using-with
                               "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        url = f"https://{public}"
        s = requests.Session()
        s.verify = str(tmp_path / "cert.pem")
        r = s.get(url + "/mini_buildd/api/status/?output=json", timeout=30, verify=s.verify)
        assert r.status_code == 200 and r.json()["identity"] == "mbd"
        # A browser login through the proxy: its https origin is this site, mapped for the daemon.
        s.get(url + "/accounts/login/", timeout=30, verify=s.verify)
        r = s.post(url + "/accounts/login/", timeout=30, allow_redirects=False, verify=s.verify,
                   headers={"Origin": url, "Referer": url + "/accounts/login/", "Sec-Fetch-Site": "same-origin"},
                   data={"username": "admin", "password": PASSWORD, "csrfmiddlewaretoken": s.cookies["csrftoken"],
                         "next": "/accounts/null/"})
        assert r.status_code == 302 and r.headers["Location"] == "/accounts/null/", (r.status_code, r.text[:500])
        # Another site's origin is passed on unchanged, and the daemon refuses it.
        r = s.post(url + "/accounts/login/", timeout=30, allow_redirects=False, verify=s.verify,
                   headers={"Origin": "https://evil.example.org", "Referer": "https://evil.example.org/"},
                   data={"username": "admin", "password": PASSWORD, "csrfmiddlewaretoken": s.cookies["csrftoken"]})
        assert r.status_code == 403, r.status_code
    finally:
        server.terminate()
        server.wait(30)
