"""Fixtures of the e2e modules besides the shared instance (tests/conftest.py): the packages
they share (:mod:`tests.helpers.shared_packages`)."""

from tests.helpers.shared_packages import hello, hello_in_stable  # noqa: F401  pylint: disable=unused-import
