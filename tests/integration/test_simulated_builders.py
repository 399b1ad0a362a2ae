"""Simulated builder network (issue #17), correctness only: a packager (127.0.0.38, repository
``test``, no chroot) and 3 builder daemons in bench mode (127.0.1.1-3, no chroots, simulated
builds of 4 s), linked as Remotes both ways; 30 uploads, one builder SIGKILLed mid-run.

- every upload ends with exactly one final event, FAILED as "Simulated build: never installed",
  with exactly one accepted (simulated) buildresult: none lost;
- the builds the killed builder held were re-dispatched to the others;
- nothing reached the repository;
- the mode shows in ``status`` (with the simulated chroots) and as the banner of every page;
- a daemon given ``MINI_BUILDD_SIMULATED_BUILDS`` without ``MINI_BUILDD_BENCH_MODE=1`` refuses to start.
"""

# pylint: disable=redefined-outer-name  # pytest passes each fixture as the parameter of its name

import os
import pathlib
import subprocess

import pytest
import requests

from bench.builders import simnet
from tests.helpers.daemon import mbd_command
from tests.helpers.remote_instances import wait_until

REQUESTS = 30


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """The packager and three bench-mode builders, linked both ways."""
    if os.geteuid() != 0:
        pytest.skip("needs root (like the other multi-instance tests)")
    root = tmp_path_factory.mktemp("simnet")
    n = simnet.SimNet(root, 3, delay=4.0, redispatch_timeout=8, poll=2)
    try:
        n.up(parallel=3)
        yield n
    finally:
        n.teardown()
    assert not simnet_processes(root)


def simnet_processes(root):
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=False).stdout
    return [line for line in out.splitlines() if str(root) in line and "ps -eo" not in line]


def test_status_and_banner(net):
    # The builders were started from threads with bench mode in their environment only: this
    # process's is unchanged (it once kept it, and every later daemon of the run simulated builds).
    from mini_buildd.pipeline import simulated_builder  # pylint: disable=import-outside-toplevel
    assert not {simulated_builder.ENV_DELAY, simulated_builder.ENV_OPT_IN} & set(os.environ)
    b = net.builders[0]
    status = requests.get(f"{b.url}/mini_buildd/api/status/", timeout=10).json()
    assert status["simulated_builds"]["delay"] == 4.0
    assert "bookworm:amd64" in status["chroots"]
    for path in ("/mini_buildd/", "/mini_buildd/builders/", "/accounts/login/"):
        assert "BENCH MODE: simulated builds" in requests.get(b.url + path, timeout=10).text, path
    packager = requests.get(f"{net.packager.url}/mini_buildd/api/status/", timeout=10).json()
    assert "simulated_builds" not in packager
    assert "BENCH MODE" not in requests.get(net.packager.url + "/mini_buildd/", timeout=10).text


def test_requests_none_lost_redispatched_nothing_installed(net, tmp_path):
    uploads = simnet.make_sources(tmp_path, REQUESTS)
    killed = []

    def progress(count):
        if count == REQUESTS // 2 and not killed:
            victim = net.builders[-1]
            wait_until(lambda: requests.get(f"{victim.url}/mini_buildd/api/status/", timeout=10).json()["load"] > 0, 30,
                       interval=0.2, what="the victim holds a build")
            killed.extend(net.kill(1))

    simnet.send(net.packager.host, net.ftp_port, uploads, rate=10, connections=2, on_progress=progress)
    names = [name for name, _files in uploads]
    events = simnet.wait_done(net.packager.home, names, timeout=180, log=lambda _m: None)
    assert {name: t for name, t in events.items() if t != ["FAILED"]} == {}
    results = simnet.accepted_results(net.packager.home)
    assert sorted(r["name"] for r in results) == sorted(names)
    assert all(r["simulated"] for r in results)
    for name in names[:3]:
        failed = next((net.packager.home / "var" / "events" / name).rglob(f"{name}_*_FAILED.json"))
        assert simnet_simulated_title() in failed.read_text(encoding="utf-8")
    # the killed builder's unfinished builds went elsewhere: results from it are only ones it finished before
    assert killed
    log = (net.packager.home / "var" / "log" / "daemon.log").read_text(encoding="utf-8", errors="replace")
    redispatched = log.count(f"builder {killed[0]} stopped answering")
    held = sum(1 for r in results if r["builder"] == killed[0])
    ran_elsewhere = {r["builder"] for r in results} - set(killed)
    assert len(ran_elsewhere) == 2
    assert redispatched >= 1, (held, log[-3000:])
    assert simnet.installed_anything(net.packager.home) == []
    assert not list((net.packager.home / "repositories" / "test" / "pool").rglob("*.deb")) if \
        (net.packager.home / "repositories" / "test" / "pool").exists() else True


def simnet_simulated_title():
    from mini_buildd.pipeline import simulated_builder  # pylint: disable=import-outside-toplevel
    return simulated_builder.REFUSED_TITLE


def test_refuses_to_start_without_opt_in(tmp_path):
    home = pathlib.Path(tmp_path) / "home"
    home.mkdir()
    env = dict(os.environ, MINI_BUILDD_SIMULATED_BUILDS="1")
    env.pop("MINI_BUILDD_BENCH_MODE", None)
    proc = subprocess.run(mbd_command(home, "--http-endpoint", "tcp:interface=127.0.1.60:port=0"), capture_output=True,
                          text=True, timeout=60, env=env, check=False)
    assert proc.returncode != 0
    assert "MINI_BUILDD_BENCH_MODE=1" in proc.stderr + proc.stdout
