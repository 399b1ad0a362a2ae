"""First setup speed (issue #17): what makes it faster must not change what it makes.

- one ``setup`` run checks each instance once (:func:`mini_buildd.models.base.check_once`), not again
  for every dependant; outside such a scope every check runs;
- debootstrap runs dpkg in the target with ``--force-unsafe-io`` (``DPKG_FORCE``, dpkg's defaults kept);
- the chroot check installs eatmydata first and runs the rest under it, dpkg without fsync, man-db's
  index rebuild off, and still updates, upgrades and installs the build tools (in one dpkg run).
"""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name,unused-argument

import contextlib
import contextvars
import threading

import pytest

from mini_buildd import bootstrap
from mini_buildd.models import AptKey
from mini_buildd.models.base import check_once
from mini_buildd.tools import call, chroot_backends, debootstrap, schroot


@pytest.fixture
def checks(monkeypatch):
    """Record the check hook calls of AptKey (prepare is a no-op)."""
    log = []
    monkeypatch.setattr(AptKey, "mbd_prepare_data", lambda self: None)
    monkeypatch.setattr(AptKey, "mbd_check_data", lambda self: log.append(self.key_id))
    return log


def test_check_once_checks_each_instance_once_per_scope(db, checks):
    key = AptKey.objects.create(key_id="DEADBEEF01")
    other = AptKey.objects.create(key_id="DEADBEEF02")
    for k in (key, other):
        k.mbd_prepare()
    with check_once():
        key.mbd_check(force=True)
        key.mbd_check(force=True)
        other.mbd_check(force=True)
        # a worker thread run in a copy of the scope's context sees the same record
        thread = threading.Thread(target=contextvars.copy_context().run, args=(key.mbd_check,))
        thread.start()
        thread.join()
    assert checks == ["DEADBEEF01", "DEADBEEF02"]
    key.mbd_check(force=True)  # outside the scope: checked again
    assert checks == ["DEADBEEF01", "DEADBEEF02", "DEADBEEF01"]


def test_check_once_retries_a_failed_check(db, monkeypatch):
    key = AptKey.objects.create(key_id="DEADBEEF03")
    monkeypatch.setattr(AptKey, "mbd_prepare_data", lambda self: None)
    key.mbd_prepare()
    attempts = []

    def flaky(self):
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("archive down")
    monkeypatch.setattr(AptKey, "mbd_check_data", flaky)
    with check_once():
        with pytest.raises(Exception):
            key.mbd_check()
        key.mbd_check()
    assert len(attempts) == 2 and AptKey.objects.get(pk=key.pk).mbd_is_checked()


def test_debootstrap_runs_dpkg_with_unsafe_io(monkeypatch, tmp_path):
    seen = {}

    def fake_run(argv, **kwargs):
        seen.update(argv=argv, env=kwargs.get("env"))
        return ""
    monkeypatch.setattr(call, "run", fake_run)
    debootstrap.debootstrap(tmp_path / "t", "bookworm", "http://archive.invalid/debian/", "amd64", None)
    forces = seen["env"]["DPKG_FORCE"].split(",")
    assert "unsafe-io" in forces and {"security-mac", "downgrade"} <= set(forces), "dpkg's default forces are kept"
    assert seen["argv"][-3:] == ["bookworm", str(tmp_path / "t"), "http://archive.invalid/debian/"]
    debootstrap.debootstrap(tmp_path / "t", "bookworm", "http://archive.invalid/debian/", "amd64", None, unsafe_io=False)
    assert not seen["env"]


def _record_check(monkeypatch, packages):
    commands = []

    @contextlib.contextmanager
    def session(name, source=False):
        assert source, "the check changes the chroot's source"
        yield "sid"

    def run_in_session(sid, argv, input=None, **_kwargs):  # pylint: disable=redefined-builtin
        commands.append((list(argv), input))
        return ""
    monkeypatch.setattr(schroot, "session", session)
    monkeypatch.setattr(schroot, "run_in_session", run_in_session)
    chroot_backends.check("mbd-test-bookworm-amd64", "deb http://archive.invalid/debian bookworm main\n", packages=packages)
    return commands


def test_chroot_check_runs_apt_under_eatmydata(monkeypatch):
    commands = _record_check(monkeypatch, ["fakeroot", "eatmydata", "ccache", "lintian"])
    argvs = [argv for argv, _input in commands]
    selections = commands[0][1]
    assert "man-db man-db/auto-update boolean false" in selections and "Noninteractive" in selections
    apt = [argv for argv in argvs if "apt-get" in argv]
    assert all("--option=Dpkg::Options::=--force-unsafe-io" in argv for argv in apt)
    actions = [next(a for a in argv[argv.index("apt-get") + 1:] if not a.startswith("-")) for argv in apt]
    assert actions == ["update", "install", "dist-upgrade", "autoremove", "clean"]
    assert apt[1][-1] == "eatmydata" and apt[0][0] == "env" and apt[1][0] == "env", "eatmydata is installed without it first"
    assert all(argv[0] == "eatmydata" for argv in apt[2:]), "then everything runs under it"
    assert apt[2][-5:] == ["dist-upgrade", "fakeroot", "eatmydata", "ccache", "lintian"], "one dpkg run upgrades and installs"


def test_chroot_check_without_eatmydata(monkeypatch):
    argvs = [argv for argv, _input in _record_check(monkeypatch, ["fakeroot"])]
    apt = [argv for argv in argvs if "apt-get" in argv]
    assert not any("eatmydata" in argv for argv in argvs)
    assert [a for a in apt[-3] if not a.startswith("-")][-2:] == ["dist-upgrade", "fakeroot"]


def test_setup_has_the_chroots_cache_option():
    names = {name: (kind, default) for name, kind, default, _help in bootstrap.OPTIONS}
    assert names["chroots_cache"] == ("bool", False)
    assert bootstrap.default_options()["chroots_cache"] is False
