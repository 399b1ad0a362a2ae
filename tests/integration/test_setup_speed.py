"""First setup speed (issue #17): the faster setup still makes what it made.

One real ``setup`` (the README's bootstrap: bookworm:amd64, repository ``test``, a Dir chroot) on a
home of its own (schroot prefix ``mbd-h6-speed``, endpoints on 127.0.0.36), with the administrator's
``--chroots-cache`` option and NO ``MINI_BUILDD_DEBOOTSTRAP_CACHE`` in the environment: the chroot
comes from the verified base tarball cached in /var/cache/mini-buildd (made once per host), and
arrives active with its build tools and its apt indexes; the chroot and each Source are checked once
(no second apt update for the Daemon's check); the chroot is made beside the repository. No timing
is asserted: bench/setup/first_setup prints the figures.
"""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import json
import os
import pathlib
import re
import subprocess

import pytest

from mini_buildd.tools import gnupg, schroot, schroot_files
from tests.helpers.daemon import PYTHON, ROOT, in_home
from tests.helpers.setup_run import ACCEPTANCE

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroots)")

HOST = "127.0.0.36"
PREFIX = "mbd-h6-speed"
NAME = f"{PREFIX}-bookworm-amd64"
TOOLS = ("fakeroot", "eatmydata", "ccache", "lintian", "aptitude")


def _leftovers():
    return sorted(str(p) for p in (schroot_files.conf_path(NAME), schroot_files.fstab_path(NAME)) if p.exists())


@pytest.fixture(scope="module")
def setup_run(tmp_path_factory):
    """The setup's result, its daemon log and the home; the chroot removed afterwards (asserted)."""
    home = tmp_path_factory.mktemp("setup-speed") / "home"
    env = {k: v for k, v in os.environ.items() if k != "MINI_BUILDD_DEBOOTSTRAP_CACHE"}
    proc = subprocess.run([PYTHON, "-m", "mini_buildd.cli.setup", "--home", str(home), "--hostname", HOST,
                           "--http-endpoint", f"tcp:port=8066:interface={HOST}", "--dedicated-user", "root",
                           "--schroot-prefix", PREFIX, "--json", "--chroots-cache", *ACCEPTANCE],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False)
    try:
        assert proc.stdout.strip().startswith("{"), f"setup failed ({proc.returncode}):\n{proc.stderr[-5000:]}"
        yield json.loads(proc.stdout), (home / "var" / "log" / "daemon.log").read_text(errors="replace"), home
    finally:
        if (home / "config.sqlite").exists():
            in_home(home, "for c in models.Chroot.mbd_concrete_all(): c.mbd_remove()", hostname=HOST)
        gnupg.kill_agents(home / ".gnupg")
        assert not _leftovers(), "the chroot's schroot config and fstab are removed"
        assert not (home / "var" / "chroots" / "bookworm" / "amd64").exists()


def test_setup_makes_everything_active(setup_run):
    result, _log, _home = setup_run
    statuses = {i["identity_str"]: i["status"] for i in result["instances"]}
    assert statuses["DirChroot(codename=bookworm, architecture=amd64)"] == "ACTIVE", statuses
    assert statuses["Repository(identity=test)"] == "ACTIVE" and statuses["Daemon()"] == "ACTIVE", statuses
    assert result["report"]["severity"] < 3


def test_chroot_arrives_with_build_tools_and_indexes(setup_run):
    _result, _log, home = setup_run
    assert f"chroot:{NAME}" in schroot.list_chroots()
    out = subprocess.run(["schroot", "-c", f"source:{NAME}", "-u", "root", "-d", "/", "--", "dpkg-query", "-W",
                          "-f", "${Package} ${Status}\n", *TOOLS], capture_output=True, text=True, check=False).stdout
    installed = {line.split()[0] for line in out.splitlines() if line.endswith("install ok installed")}
    assert installed == set(TOOLS), out
    lists = pathlib.Path(home / "var" / "chroots" / "bookworm" / "amd64" / "source" / "var" / "lib" / "apt" / "lists")
    packages = [p.name for p in lists.glob("*_Packages*")]
    assert any("bookworm_main_binary-amd64_Packages" in p for p in packages), packages
    assert any("bookworm-security" in p for p in packages), "the check's sources (extra sources too) are indexed"


def test_base_system_from_the_cache_by_the_setup_option(setup_run):
    _result, log, _home = setup_run
    assert "Unpacking base tarball /var/cache/mini-buildd/debootstrap-bookworm-amd64-buildd-with-" in log
    assert "Debootstrapping bookworm/amd64 into" not in log.split("Unpacking base tarball", 1)[1]


def test_each_instance_is_checked_once(setup_run):
    _result, log, _home = setup_run
    assert len(re.findall(rf"Checked chroot {NAME}\b", log)) == 1, "the Daemon's check does not check the chroot again"
    assert log.count("source 'Debian 'bookworm'': checked.") == 1
    assert log.count("repository 'test': checked.") == 1


def test_chroot_is_made_beside_the_repository(setup_run):
    _result, log, _home = setup_run
    lines = log.splitlines()

    def first(text):
        return next(i for i, line in enumerate(lines) if text in line)
    assert first(f"Preparing chroot {NAME}") < first("repository 'test': activated.")
