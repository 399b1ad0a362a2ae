"""QA regressions between two versions (issue #16), from INSTALLED events as the packager writes them."""

import json

from mini_buildd import config
from mini_buildd.archive import qa_regressions

SOURCE = "mbd-qa-unit"


def _installed(version, buildresults, timecode="20261207:100000:000000"):
    path = config.paths.events_of(SOURCE, version, timecode, "source", f"{SOURCE}_{version}_INSTALLED.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"type": "INSTALLED", "source": SOURCE, "version": version,
                                "extra": {"buildresults": buildresults}}), encoding="utf-8")


def _result(tags=(), **checks):
    return {"lintian_tags": " | ".join(tags), **{f"sbuild_{c}": r for c, r in checks.items()}}


def test_new_lintian_error_and_failing_checks_are_regressions():
    _installed("1", {"amd64": _result(["W: p: old-warning", "E: p: old-error"], lintian="fail", autopkgtest="pass", piuparts="pass"),
                     "i386": _result(autopkgtest="pass")})
    _installed("2", {"amd64": _result(["E: p: old-error", "E: p: new-error x", "W: p: new-warning"], lintian="fail",
                                      autopkgtest="fail", piuparts="pass"),
                     "i386": _result(autopkgtest="pass")})
    assert qa_regressions.regressions(SOURCE, "1", "2") == ["new lintian error: E: p: new-error x", "autopkgtest on amd64: pass -> fail"]
    # The other way round: a fixed error and a test going from fail to pass are no regressions.
    assert not qa_regressions.regressions(SOURCE, "2", "1")
    text = qa_regressions.describe(SOURCE, "1", "2", "d-r-testing", qa_regressions.regressions(SOURCE, "1", "2"))
    assert text.startswith(f"QA regression of {SOURCE} 2 against 1 in d-r-testing:") and "- autopkgtest on amd64" in text


def test_unknown_outcome_is_no_regression():
    _installed("3", {"amd64": _result(["E: p: something"])})
    assert not qa_regressions.regressions(SOURCE, "no-such-version", "3")
    assert qa_regressions.outcome(SOURCE, "no-such-version") is None
    assert qa_regressions.outcome(SOURCE, "3") == {"lintian_errors": {"E: p: something"}, "checks": {"amd64": {}}}


def test_newest_installed_event_counts():
    _installed("4", {"amd64": _result(["E: p: first-build"])}, timecode="20261207:090000:000000")
    _installed("4", {"amd64": _result([])}, timecode="20261207:110000:000000")
    assert qa_regressions.outcome(SOURCE, "4")["lintian_errors"] == set()
