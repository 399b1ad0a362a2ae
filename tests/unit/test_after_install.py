"""The after-install work (installability report, port watch) runs off the packager thread and
coalesces what comes while it works (issue #11: it held up the next upload by seconds)."""

import threading
import types

from mini_buildd.pipeline import after_install


def test_defer_returns_at_once_and_coalesces(monkeypatch):
    release, started, calls = threading.Event(), threading.Event(), []

    def slow_run(identity, diststrs):
        calls.append((identity, diststrs))
        started.set()
        assert release.wait(30)

    monkeypatch.setattr(after_install, "run", slow_run)
    repo = types.SimpleNamespace(identity="test")
    after_install.defer(repo, ["bookworm-test-unstable"])
    assert started.wait(30)
    # The worker is busy: more installs only queue (the caller, the packager, goes on at once).
    after_install.defer(repo, ["bookworm-test-unstable"])
    after_install.defer(repo, ["bookworm-test-experimental"])
    after_install.defer(types.SimpleNamespace(identity="other"), ["bookworm-other-unstable"])
    assert not after_install.join(0.2)
    release.set()
    assert after_install.join(30)
    assert calls == [("test", ["bookworm-test-unstable"]),
                     ("other", ["bookworm-other-unstable"]),
                     ("test", ["bookworm-test-experimental", "bookworm-test-unstable"])]


def _same(repository):
    return repository


def test_a_failing_round_does_not_stop_the_worker(monkeypatch):
    calls = []

    def failing_report(_view, diststrs):
        calls.append(diststrs)
        raise RuntimeError("dose crashed")

    monkeypatch.setattr(after_install.after_change, "report", failing_report)
    monkeypatch.setattr(after_install.Repository.objects, "filter", lambda **kw: types.SimpleNamespace(first=object))
    monkeypatch.setattr(after_install, "RepositoryView", _same)
    repo = types.SimpleNamespace(identity="test")
    after_install.defer(repo, ["bookworm-test-unstable"])
    assert after_install.join(30)
    after_install.defer(repo, ["bookworm-test-testing"])
    assert after_install.join(30)
    assert calls == [["bookworm-test-unstable"], ["bookworm-test-testing"]]
