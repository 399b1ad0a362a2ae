"""``--log-level``: a bare LEVEL is every logger's (also mini-buildd's own, INFO by default while
other libraries stay at WARNING); ``LOGGER.LEVEL`` is that logger's only. (A bare DEBUG used to
leave mini-buildd's loggers at INFO: no DEBUG line of our own code reached daemon.log.)"""

import logging

import pytest

from mini_buildd import config, daemon


@pytest.fixture
def restore_logging():
    """The logging configuration as it was before the test."""
    root, ours = logging.getLogger(), logging.getLogger("mini_buildd")
    saved = (list(root.handlers), root.level, ours.level, logging.getLogger("mini_buildd.api").level)
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
        if h not in saved[0]:
            h.close()
    for h in saved[0]:
        root.addHandler(h)
    root.setLevel(saved[1])
    ours.setLevel(saved[2])
    logging.getLogger("mini_buildd.api").setLevel(saved[3])


@pytest.mark.parametrize("specs, root_level, ours_level, api_level", [
    ([], logging.WARNING, logging.INFO, logging.INFO),
    (["DEBUG"], logging.DEBUG, logging.DEBUG, logging.DEBUG),
    (["warning"], logging.WARNING, logging.WARNING, logging.WARNING),
    (["mini_buildd.api.DEBUG"], logging.WARNING, logging.INFO, logging.DEBUG),
])
def test_levels(tmp_path, restore_logging, specs, root_level, ours_level, api_level):  # pylint: disable=redefined-outer-name,unused-argument
    paths = config.Paths(tmp_path / "home")
    paths.create()
    logging.getLogger("mini_buildd.api").setLevel(logging.NOTSET)
    daemon.setup_logging(paths, specs, stderr=False)
    assert logging.getLogger().level == root_level
    assert logging.getLogger("mini_buildd.tools.reprepro").getEffectiveLevel() == ours_level
    assert logging.getLogger("mini_buildd.api.fastpath").getEffectiveLevel() == api_level
