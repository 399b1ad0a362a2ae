"""The test tree's layout: ``make check`` collects ``tests/unit`` with ``tests/integration`` and
``tests/e2e`` with ``tests/browser`` in one pytest run each (see tests/run_suite.py), where (the
test dirs are no packages) two test files of the same name make the collection of the second
fail. Within each of these pairs every test file name is unique."""

import collections
import pathlib

import pytest

TESTS = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("dirs", [("unit", "integration"), ("e2e", "browser")])
def test_test_file_names_are_unique_within_one_run(dirs):
    by_name = collections.defaultdict(list)
    for d in dirs:
        for path in (TESTS / d).rglob("test_*.py"):
            by_name[path.name].append(str(path.relative_to(TESTS)))
    assert {name: paths for name, paths in by_name.items() if len(paths) > 1} == {}
