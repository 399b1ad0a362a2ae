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


def test_run_suite_prints_each_groups_failures_last():
    """CI keeps only the end of make check's output: the failed tests' short summary lines are
    repeated there (at most 10 per group, then a count)."""
    import importlib.util  # pylint: disable=import-outside-toplevel
    spec = importlib.util.spec_from_file_location("run_suite", TESTS / "run_suite.py")
    run_suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_suite)
    log = ["tests/e2e/test_a.py ..F", "FAILED tests/e2e/test_a.py::test_x - AssertionError: boom",
           "ERROR tests/e2e/test_b.py::test_y - RuntimeError", "== 1 failed, 1 error =="]
    assert run_suite.failure_lines(log) == log[1:3]
    many = [f"FAILED t.py::test_{i}" for i in range(12)]
    assert run_suite.failure_lines(many) == many[:10] + ["... and 2 more"]
    assert not run_suite.failure_lines(["== 3 passed =="])
