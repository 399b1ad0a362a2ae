"""The incoming quarantine (mini_buildd.pipeline.incoming) on real files in a temporary home: each
arrival gets a private directory of its own with only the files its own FTP session sent; cruft
is deleted; nothing is overwritten; leftovers are picked up at start."""

# pytest idioms: fixtures are parameters named like them; some fixtures are requested for their side effects
# only; Django and the code under test are imported after the test set-up; asserts compare with empty containers
# on purpose (the type counts too).
# pylint: disable=redefined-outer-name,unused-argument,import-outside-toplevel,use-implicit-booleaness-not-comparison

import os
import stat

import pytest

from mini_buildd.pipeline import incoming
from tests.integration.test_ftpd import make_changes


def _received(paths, directory, changes_path, names=None):
    """Copy a changes file and its files (or ``names``) into incoming as if an FTP session sent them."""
    out = []
    for name in (names if names is not None else [p.name for p in directory.iterdir()]):
        target = paths.incoming / name
        target.write_bytes((directory / name).read_bytes())
        os.chmod(target, 0o444)
        out.append(target)
    return out


def test_session_is_quarantined_privately(temp_home, tmp_path):
    c = make_changes(tmp_path / "up", extra_files=[("cruft.html", "<script>alert(1)</script>")])
    c.write_text(c.read_text().replace(" cruft.html", " not-listed.html").replace("cruft.html", "cruft.html"))
    received = _received(temp_home, c.parent, c)
    got = []
    arrivals = incoming.Incoming(got.append).sort_session(received)
    assert got == arrivals and len(arrivals) == 1
    arrival = arrivals[0].parent
    assert arrival.parent == temp_home.quarantine and arrival.name.startswith(incoming.ARRIVAL_PREFIX)
    assert stat.S_IMODE(arrival.stat().st_mode) == 0o700
    assert sorted(p.name for p in arrival.iterdir()) == sorted(["hello_1.0.dsc", "hello_1.0.tar.xz", c.name])
    assert not list(temp_home.incoming.iterdir()), "cruft left in incoming"


def test_arrival_dir_name_never_from_the_upload(temp_home, tmp_path):
    c = make_changes(tmp_path / "up", source="evil", version="1.0")
    received = _received(temp_home, c.parent, c)
    arrival = incoming.Incoming(lambda p: None).sort_session(received)[0].parent
    assert "evil" not in arrival.name


def test_changes_cannot_claim_another_sessions_files(temp_home, tmp_path):
    """Session A sent its tarball (its changes file not yet); session B's changes file lists it:
    B's arrival lacks it, and it stays in incoming for A."""
    a = make_changes(tmp_path / "a")
    a_files = _received(temp_home, a.parent, a, names=["hello_1.0.tar.xz"])
    b = make_changes(tmp_path / "b", name="hello_1.0_b.changes")
    b_files = _received(temp_home, b.parent, b, names=["hello_1.0.dsc", b.name])
    arrival = incoming.Incoming(lambda p: None).sort_session(b_files)[0].parent
    assert "hello_1.0.tar.xz" not in [p.name for p in arrival.iterdir()]
    assert a_files[0].exists()


def test_release_never_overwrites(temp_home, tmp_path):
    from mini_buildd import changes
    c = make_changes(tmp_path / "up")
    arrival = incoming.Incoming(lambda p: None).sort_session(_received(temp_home, c.parent, c))[0]
    target = tmp_path / "events"
    target.mkdir()
    (target / "hello_1.0.dsc").write_text("the ongoing package's .dsc\n")
    with pytest.raises(changes.ChangesError, match="already exist"):
        incoming.release(changes.Upload(arrival), target)
    assert (target / "hello_1.0.dsc").read_text() == "the ongoing package's .dsc\n"
    assert arrival.exists(), "nothing moved on a clash"


def test_oversized_changes_lists_nothing(temp_home, tmp_path):
    big = temp_home.incoming / "big_1.0_source.changes"
    with open(big, "w", encoding="utf-8") as f:
        f.write("Files:\n a 1 b c hello_1.0.dsc\nX: " + "x" * (5 * 1024 * 1024) + "\n")
    assert incoming.listed_names(big) == []


def test_requeue_leftovers(temp_home, tmp_path):
    c = make_changes(tmp_path / "up")
    _received(temp_home, c.parent, c)
    (temp_home.incoming / "stray.bin").write_text("cruft")
    left = temp_home.quarantine / (incoming.ARRIVAL_PREFIX + "old")
    left.mkdir()
    (left / "x_1_source.changes").write_text("x")
    got = []
    found = incoming.Incoming(got.append).requeue_leftovers()
    assert got == found and len(found) == 2
    assert not list(temp_home.incoming.iterdir())


def test_rejection_logs_its_event_before_it_moves_the_changes(temp_home, tmp_path, monkeypatch):
    """A kill during a rejection (item 7 of issue #11, found by tests/e2e/test_load_correctness.py): the
    REJECTED event is saved while the arrival is still whole in quarantine, so no state of the files
    is an event directory holding a changes file without its event (which the next start took for
    an accepted upload and ended FAILED). Killed right after the event, the next start re-queues the
    whole arrival (rejected again) and finds nothing "released without event"."""
    from mini_buildd import services
    from mini_buildd.pipeline import packager
    c = make_changes(tmp_path / "up")
    _received(temp_home, c.parent, c)
    arrival = incoming.Incoming(lambda path: None).requeue_leftovers()[0]
    upload = incoming.changes.Upload(arrival)
    at_event = []

    def killed_after_the_event(event, save_dir=None, after_save=None):
        at_event.append((event.type.value, sorted(p.name for p in arrival.parent.iterdir()), sorted(p.name for p in save_dir.iterdir())))
        (save_dir / "x_REJECTED.json").write_text("{}")  # what the hub saves
        raise SystemExit("killed")  # before after_save (the move) ran
    monkeypatch.setattr(services, "log_event", killed_after_the_event)
    with pytest.raises(SystemExit):
        incoming.reject_arrival(upload, arrival, "unsigned")
    kind, in_quarantine, in_event_dir = at_event[0]
    assert kind == "REJECTED" and arrival.name in in_quarantine and in_event_dir == []
    assert arrival.is_file(), "the arrival stays whole in quarantine"
    assert packager.conclude_released_without_event() == []
    got = []
    assert incoming.Incoming(got.append).requeue_leftovers() == [arrival] == got


def test_rejection_event_readers_find_the_changes_file_in_place(temp_home, tmp_path, monkeypatch):
    """Whoever the REJECTED event reaches (SSE, webhooks, a test polling the event files) finds its
    changes file where the event says, and the arrival's other files gone (the event file is saved
    before the move, the readers are told after it)."""
    from mini_buildd import events, services
    c = make_changes(tmp_path / "up")
    _received(temp_home, c.parent, c)
    arrival = incoming.Incoming(lambda path: None).requeue_leftovers()[0]
    hub = events.Events(temp_home.events)
    seen = []

    def reader(ev):
        seen.append((ev.type.value, (temp_home.events / ev.extra["changes"]).is_file(), arrival.parent.exists()))
    hub.add_listener(reader)
    monkeypatch.setattr(services, "events", hub)
    incoming.reject_arrival(incoming.changes.Upload(arrival), arrival, "unsigned")
    assert seen == [("REJECTED", True, False)]
