"""Shared pytest set-up: Django configured on a throw-away instance home for the test process."""

import os
import pathlib
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_HOME = tempfile.mkdtemp(prefix="mbd-test-home-")


def pytest_configure(config):  # pylint: disable=unused-argument
    from mini_buildd import config as mbd_config, webapp
    paths = mbd_config.init(_HOME, hostname="localhost", dedicated_user="root")
    paths.create()
    webapp.setup(paths)
    webapp.migrate()


def pytest_unconfigure(config):  # pylint: disable=unused-argument
    import shutil
    from mini_buildd.tools import gnupg
    try:
        gnupg.Gnupg(pathlib.Path(_HOME) / ".gnupg").kill_agents()
    except Exception:  # pylint: disable=broad-except
        pass
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture
def db():
    """Run the test in a transaction that is rolled back afterwards."""
    from django.db import transaction

    class _Rollback(Exception):
        pass
    try:
        with transaction.atomic():
            yield
            raise _Rollback()
    except _Rollback:
        pass


@pytest.fixture
def home():
    """The test process's instance paths."""
    from mini_buildd import config as mbd_config
    return mbd_config.paths


def free_port():
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


os.environ.setdefault("MBD_TEST_HOME", _HOME)


# The shared end-to-end instance (tests/e2e and tests/browser).
from tests.helpers.instance import instance  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
