"""Shared pytest set-up: Django (through pytest-django) configured on a throw-away instance home
for the test process, and the fixtures every test directory may use.

Django settings are mini_buildd.webapp's, built in code for that home in :func:`pytest_configure`
(pytest-django finishes the set-up after it). The instance database of that home, migrated there,
is the test database (no second one is created: :func:`django_db_setup`). As pytest-django does,
database access is blocked unless a test asks for it:

- ``db`` (or ``@pytest.mark.django_db``): the test runs in a transaction rolled back afterwards;
- ``committed_db``: plain access, changes committed, as the daemon's threads and other connections
  must see them (the test cleans up what would disturb others).
"""

import os
import pathlib
import shutil
import sys
import tempfile

import pytest
from _pytest.fixtures import reorder_items  # pytest's own grouping by fixture parameter

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mini_buildd import config as mbd_config, webapp  # noqa: E402  pylint: disable=wrong-import-position
from mini_buildd.tools import gnupg  # noqa: E402  pylint: disable=wrong-import-position

_HOME = tempfile.mkdtemp(prefix="mbd-test-home-")


def pytest_configure(config):  # pylint: disable=unused-argument
    """Django settings for the throw-away home (pytest-django's own pytest_configure, which runs
    after this one, calls django.setup() and blocks database access)."""
    paths = mbd_config.init(_HOME, hostname="localhost", dedicated_user="root")
    paths.create()
    webapp.setup(paths)
    webapp.migrate()


def pytest_unconfigure(config):  # pylint: disable=unused-argument
    """The throw-away home goes, with the gpg-agent of its key."""
    try:
        gnupg.Gnupg(pathlib.Path(_HOME) / ".gnupg").kill_agents()
    except Exception:  # pylint: disable=broad-except
        pass
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture
def temp_home(tmp_path, monkeypatch):
    """An instance home in ``tmp_path`` as ``config.paths`` for this test only (the global is restored
    after it: later tests in the same process keep their own home)."""
    paths = mbd_config.Paths(tmp_path / "home")
    paths.create()
    monkeypatch.setattr(mbd_config, "paths", paths)
    return paths


@pytest.fixture
def bookworm_test_repository(db):  # pylint: disable=unused-argument
    """Repository ``test`` (Default layout) on a Source and Distribution bookworm (main, amd64 building
    arch:all) in the test database only: no reprepro tree, status as created (the rows the
    subprocess tests make, :data:`tests.helpers.daemon.BOOKWORM_TEST_REPOSITORY_ROWS`)."""
    from mini_buildd import models  # pylint: disable=import-outside-toplevel  # Django is set up by now
    from tests.helpers.daemon import BOOKWORM_TEST_REPOSITORY_ROWS  # pylint: disable=import-outside-toplevel
    scope = {"models": models}
    exec(BOOKWORM_TEST_REPOSITORY_ROWS, scope)  # pylint: disable=exec-used  # our own constant, shared with in_home()
    return scope["repo"]


@pytest.hookimpl(hookwrapper=True)
def pytest_collection_modifyitems(items):
    """The order pytest alone gives (file order, tests of a parametrized higher-scoped fixture
    grouped by parameter): pytest-django moves the tests using ``db`` in front of all others, which
    would split modules (their module fixtures set up twice) and change the order within them.
    Nothing here uses ``transactional_db``, so the order does not matter to the database."""
    collected = list(items)
    yield
    kept = {id(item) for item in items}
    items[:] = [item for item in reorder_items(collected) if id(item) in kept]


@pytest.fixture(scope="session")
def django_db_setup():
    """The test database is the instance database of the throw-away home, migrated in
    :func:`pytest_configure`: nothing to create here (pytest-django's would make a new one)."""


@pytest.fixture
def committed_db(django_db_setup, django_db_blocker):  # pylint: disable=redefined-outer-name,unused-argument
    """Database access without a surrounding transaction: changes are committed (see the module doc)."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture
def home():
    """The test process's instance paths."""
    return mbd_config.paths


os.environ.setdefault("MBD_TEST_HOME", _HOME)


# The shared end-to-end instance (tests/e2e and tests/browser).
from tests.helpers.instance import instance  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
