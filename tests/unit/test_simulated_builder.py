"""Bench mode settings, status, banner and the packager's refusal (mini_buildd.pipeline.simulated_builder)."""

import pytest

from mini_buildd import config
from mini_buildd.pipeline import simulated_builder as sim


@pytest.fixture
def restore_runtime():
    saved = config.runtime.simulated_builds
    yield
    config.runtime.simulated_builds = saved


def test_off_without_setting():
    assert sim.parse_settings({}) is None
    assert sim.parse_settings({"MINI_BUILDD_SIMULATED_BUILDS": "", "MINI_BUILDD_BENCH_MODE": "1"}) is None


def test_refused_without_opt_in():
    with pytest.raises(sim.SimulatedError, match="MINI_BUILDD_BENCH_MODE=1"):
        sim.parse_settings({"MINI_BUILDD_SIMULATED_BUILDS": "1"})
    with pytest.raises(sim.SimulatedError, match="MINI_BUILDD_BENCH_MODE=1"):
        sim.parse_settings({"MINI_BUILDD_SIMULATED_BUILDS": "1", "MINI_BUILDD_BENCH_MODE": "yes"})


@pytest.mark.parametrize("delay,chroots", [("x", None), ("-1", None), ("4000", None), ("1", "bookworm"), ("1", " , "),
                                           ("1", "bookworm:amd64,../x:y")])
def test_bad_values(delay, chroots):
    env = {"MINI_BUILDD_SIMULATED_BUILDS": delay, "MINI_BUILDD_BENCH_MODE": "1"}
    if chroots is not None:
        env["MINI_BUILDD_SIMULATED_CHROOTS"] = chroots
    with pytest.raises(sim.SimulatedError):
        sim.parse_settings(env)


def test_settings_status_banner(restore_runtime):  # pylint: disable=redefined-outer-name,unused-argument
    env = {"MINI_BUILDD_SIMULATED_BUILDS": "0.5", "MINI_BUILDD_BENCH_MODE": "1",
           "MINI_BUILDD_SIMULATED_CHROOTS": "bookworm:amd64, trixie:arm64"}
    assert sim.parse_settings(env) == (0.5, ["bookworm:amd64", "trixie:arm64"])
    assert sim.configure({"MINI_BUILDD_SIMULATED_BUILDS": "1"}) is not None   # refused: the daemon exits
    assert sim.configure({}) is None and not sim.enabled() and sim.banner() == ""
    assert sim.amend_status({"chroots": ["sid:amd64"]}) == {"chroots": ["sid:amd64"]}
    assert sim.configure(env) is None and sim.enabled()
    assert "BENCH MODE" in sim.banner() and "never installed" in sim.banner()
    status = sim.amend_status({"chroots": ["sid:amd64"]})
    assert status["chroots"] == ["bookworm:amd64", "sid:amd64", "trixie:arm64"]
    assert status["simulated_builds"]["delay"] == 0.5


class FakeResult:
    """A buildresult, simulated or not."""
    def __init__(self, simulated):
        self.simulated = simulated

    def x_get(self, name, default=None):
        return "1" if name == "Simulated" and self.simulated else default

    @staticmethod
    def to_event_extra():
        return {}


class FakePackage:
    """A package with its buildresults."""
    key = "p/1/tc"

    def __init__(self, **results):
        self.buildresults = results


def test_packager_refuses_simulated_results():
    logged = []

    def problem(title, detail, status):
        return {"title": title, "detail": detail, "status": status}

    assert not sim.refuse_install(FakePackage(amd64=FakeResult(False)), problem, logged.append)
    assert not logged
    assert sim.refuse_install(FakePackage(amd64=FakeResult(False), i386=FakeResult(True)), problem, logged.append)
    assert logged[0]["simulated"] == ["i386"] and logged[0]["error"]["title"] == sim.REFUSED_TITLE
