"""The command-line tools against the shared e2e instance, run as real processes (the modules of
setup.py's console scripts): ``mini-buildd-api`` (bad input, ``dput_conf``, ``sources_list`` into
a clean chroot where apt installs from the instance with signature verification),
``mini-buildd-dput -C`` (exit status after INSTALLED / FAILED) and ``mini-buildd-events`` (an
upload's events printed in order while they happen).

Packages: this module uploads its own (``mbd-e2e-cli*``, and the always-failing template
``mbd-test-ftbfs`` in unstable), nothing that later modules look at.
"""

# pylint: disable=redefined-outer-name  # pytest passes each fixture as the parameter of its name

import datetime
import os
import queue
import subprocess
import threading
import time

import pytest
import requests

from mini_buildd.pipeline import ports
from tests.helpers.daemon import PYTHON, ROOT
from tests.helpers.instance import ADMIN_PASSWORD, wait_engine_running
from tests.helpers.packages import make_source_package, wait_event, now_iso
from tests.helpers.clean_chroot import clean_chroot, in_chroot  # noqa: F401  pylint: disable=unused-import

UNSTABLE = "bookworm-test-unstable"
CLI_SRC, CLI_VERSION = "mbd-e2e-cli", "1.0~test12+1"
USER_PASSWORD = "e2e-Cli-pw"


def tool(name, *args, password=None, timeout=120, **kwargs):
    """Run ``mini-buildd-<name>`` (its console script module) to completion."""
    env = {k: v for k, v in os.environ.items() if k != "MINI_BUILDD_API_PASSWORD"}
    if password:
        env["MINI_BUILDD_API_PASSWORD"] = password
    return subprocess.run([PYTHON, "-m", f"mini_buildd.cli.{name}", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False, **kwargs)


def api_cli(*args, **kwargs):
    return tool("api", *args, **kwargs)


def assert_clean_error(proc, *needles):
    """Non-zero exit, a message on stderr naming what is wrong, no traceback."""
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


def with_user(instance, user):
    return f"http://{user}@127.0.0.1:{instance.http_port}"


@pytest.fixture(scope="module", autouse=True)
def engine_running(instance):
    wait_engine_running(instance)


@pytest.fixture(scope="module")
def cli_user(instance):
    """A non-staff user 'cli-user' (password USER_PASSWORD) on the instance."""
    instance.django("from django.contrib.auth.models import User\n"
                    "u, _ = User.objects.get_or_create(username='cli-user')\n"
                    f"u.set_password({USER_PASSWORD!r})\n"
                    "u.save()\n")
    return "cli-user"


@pytest.fixture(scope="module")
def dput_cf(instance, tmp_path_factory):
    """A dput config from ``mini-buildd-api dput_conf``; returns (path, target)."""
    proc = api_cli("dput_conf", instance.url)
    assert proc.returncode == 0, proc.stderr
    path = tmp_path_factory.mktemp("dput") / "dput.cf"
    path.write_text(proc.stdout)
    target = next(line.strip()[1:-1] for line in proc.stdout.splitlines() if line.startswith("[mini-buildd-"))
    return path, target


def dput_check(instance, dput_cf, changes, timeout=1200):
    path, target = dput_cf
    return tool("dput", "-c", str(path), "-C", "--http", instance.url, target, str(changes), timeout=timeout)


# ------------------------------------------------------------------------------------------------ bad input
def test_api_unknown_call(instance):
    assert_clean_error(api_cli("no_such_call", instance.url), "no_such_call")


def test_api_bad_arguments(instance):
    assert_clean_error(api_cli("sources_list", instance.url, "--codenames", "sid"), "400", "sid")
    assert_clean_error(api_cli("ls", instance.url, "mbd-e2e-cli", "--no-such-option"), "--no-such-option")
    assert_clean_error(api_cli("ls", instance.url), "source")
    assert_clean_error(api_cli("sources_list", instance.url, "--rollbacks", "many"), "many")


def test_api_missing_confirm(instance):
    proc = api_cli("stop", with_user(instance, "admin"), "--script-mode", password=ADMIN_PASSWORD)
    assert_clean_error(proc, "confirm")
    assert requests.get(f"{instance.url}/mini_buildd/api/status/", timeout=10).json()["load"] >= 0  # still running


def test_api_call_above_level(instance, cli_user):
    assert_clean_error(api_cli("stop", instance.url, "--auto-confirm", "--script-mode"), "401", "ADMIN")
    proc = api_cli("stop", with_user(instance, cli_user), "--auto-confirm", "--script-mode", password=USER_PASSWORD)
    assert_clean_error(proc, "403", "ADMIN")
    proc = api_cli("stop", with_user(instance, "admin"), "--auto-confirm", "--script-mode", password="wrong")
    assert_clean_error(proc, "admin")
    assert requests.get(f"{instance.url}/mini_buildd/api/status/", timeout=10).json()["load"] >= 0  # still running


def test_api_unreachable_endpoint():
    assert_clean_error(api_cli("status", "http://127.0.0.1:9"), "127.0.0.1:9")
    assert_clean_error(api_cli("status", "nosuchkind:foo"), "nosuchkind")


def test_api_json_and_twisted_endpoint(instance):
    proc = api_cli("status", f"tcp:host=127.0.0.1:port={instance.http_port}", "--json")
    assert proc.returncode == 0, proc.stderr
    import json  # pylint: disable=import-outside-toplevel
    assert json.loads(proc.stdout)["url"] == instance.url


def test_events_bad_input(instance):
    proc = tool("events", "--types", "NOSUCHTYPE", instance.url)
    assert_clean_error(proc, "NOSUCHTYPE")


# ------------------------------------------------------------------------------------------------ dput -C
def test_dput_check_good_upload(instance, dput_cf, tmp_path):
    changes = make_source_package(tmp_path, CLI_SRC, CLI_VERSION, UNSTABLE)
    proc = dput_check(instance, dput_cf, changes)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "INSTALLED" in proc.stdout
    # it returned after the installation, not before
    ls = requests.get(f"{instance.url}/mini_buildd/api/ls/", params={"source": CLI_SRC}, timeout=30).json()
    assert ls["test"][UNSTABLE]["version"] == CLI_VERSION


def _ftbfs_changes(tmp_path, version):
    tree = ports.copy_template("mbd-test-ftbfs", tmp_path)
    changelog = tree / "debian" / "changelog"
    changelog.write_text(f"mbd-test-ftbfs ({version}) {UNSTABLE}; urgency=medium\n\n  * e2e: always fails.\n\n"
                         f" -- mini-buildd test <test@example.org>  Sun, 22 Nov 2026 00:00:00 +0000\n\n" + changelog.read_text())
    subprocess.run(["dpkg-buildpackage", "-S", "-d", "-us", "-uc", "-nc"], cwd=tree, check=True, capture_output=True)
    return tmp_path / f"mbd-test-ftbfs_{version}_source.changes"


def test_dput_check_ftbfs_fails(instance, dput_cf, tmp_path):
    version = "1.0~test12+1"
    started = now_iso()
    proc = dput_check(instance, dput_cf, _ftbfs_changes(tmp_path, version))
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "FAILED" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), "mbd-test-ftbfs", version, after=started, timeout=30)
    assert event["type"] == "FAILED"
    # the build log of the failed build is reachable over HTTP (the event's link)
    result = event["extra"]["buildresults"]["amd64"]
    assert result["sbuild_status"] != "successful", result
    r = requests.get(result["buildlog_installed"], timeout=30)
    assert r.status_code == 200 and "mbd-test-ftbfs" in r.text and "Status: " in r.text, (r.status_code, r.text[-2000:])


# ------------------------------------------------------------------------------------------------ events
def _reader(stream, lines):
    for line in stream:
        lines.put((datetime.datetime.now(datetime.timezone.utc), line.rstrip("\n")))
    lines.put(None)


def test_events_follow_an_upload(instance, dput_cf, tmp_path):
    source = f"{CLI_SRC}-events"
    proc = subprocess.Popen([PYTHON, "-u", "-m", "mini_buildd.cli.events", "--source", source, "--exit-on", "INSTALLED",  # pylint: disable=consider-using-with
                             "--fail-on", "FAILED,REJECTED", instance.url], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        lines = queue.Queue()
        threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
        time.sleep(5)  # attached (it only shows events from its start on)
        assert proc.poll() is None, proc.stderr.read()
        changes = make_source_package(tmp_path, source, CLI_VERSION, UNSTABLE)
        path, target = dput_cf
        up = tool("dput", "-c", str(path), target, str(changes))
        assert up.returncode == 0, up.stdout + up.stderr
        seen = []
        while True:
            item = lines.get(timeout=900)
            if item is None:
                break
            seen.append(item)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    parsed = [(received, line.split()) for received, line in seen]
    assert [fields[1] for _, fields in parsed] == ["PACKAGING", "BUILDING", "BUILT", "INSTALLED"], seen
    assert all(fields[3:5] == [source, CLI_VERSION] for _, fields in parsed), seen
    # as they happen: the first line arrived before the package was even installed
    installed_at = datetime.datetime.fromisoformat(parsed[-1][1][0])
    assert parsed[0][0] < installed_at, seen


# ------------------------------------------------------------------------------------------------ sources_list -> apt
def _keyring_deb(instance, identity):
    """URL of the keyring package's .deb in unstable (built through mini-buildd-api if there is none yet)."""
    name = f"{identity}-archive-keyring"

    def show():
        return requests.get(f"{instance.url}/mini_buildd/api/show/", params={"source": name}, timeout=30).json()
    if UNSTABLE not in show().get("test", {}):
        proc = api_cli("keyring_packages", with_user(instance, "admin"), "--auto-confirm", "--script-mode", "--without-migration",
                       "--distributions", UNSTABLE, password=ADMIN_PASSWORD, timeout=1800)
        assert proc.returncode == 0, proc.stderr
    entry = show()["test"][UNSTABLE]
    pool_dir = entry["dsc_path"].rsplit("/", 1)[0]
    return f"{instance.url}/repositories/{pool_dir}/{name}_{entry['version'].split(':')[-1]}_all.deb"


def test_sources_list_cli_apt_installs_verified(instance, clean_chroot):  # noqa: F811
    root = clean_chroot
    proc = api_cli("sources_list", instance.url, "--codenames", "bookworm")
    assert proc.returncode == 0, proc.stderr
    assert f"{instance.url}/repositories/test {UNSTABLE} main" in proc.stdout, proc.stdout
    identity = requests.get(f"{instance.url}/mini_buildd/api/status/", timeout=10).json()["identity"]
    # trust: the keyring package, installed out of band (like mini-buildd-bootstrap-apt)
    r = requests.get(_keyring_deb(instance, identity), timeout=30)
    assert r.status_code == 200
    (root / "tmp" / "keyring.deb").write_bytes(r.content)
    installed = in_chroot(root, "dpkg", "-i", "/tmp/keyring.deb")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # only the instance's lines, from the CLI, in sources.list.d
    (root / "etc" / "apt" / "sources.list").write_text("")
    for p in (root / "etc" / "apt" / "sources.list.d").glob("*"):
        p.unlink()
    (root / "etc" / "apt" / "sources.list.d" / "mini-buildd.list").write_text(proc.stdout)
    update = in_chroot(root, "apt-get", "update")
    output = update.stdout + update.stderr
    assert update.returncode == 0 and "NO_PUBKEY" not in output and "not signed" not in output and "W:" not in output, output
    install = in_chroot(root, "apt-get", "install", "--yes", CLI_SRC)
    assert install.returncode == 0, install.stdout + install.stderr
    assert (root / "usr" / "share" / CLI_SRC / "hello.txt").read_text().startswith(f"hello from {CLI_SRC}")
