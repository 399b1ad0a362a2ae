"""Start-up of the packager after a kill between an upload's release from quarantine and its first
event (packager.conclude_released_without_event): the upload gets exactly one FAILED event that
says why, in its own event directory; an upload that has an event already, and an unreadable
``.changes``, are left alone. Real files in a temp home; events captured where the daemon logs them."""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import pytest

from mini_buildd import services
from mini_buildd.pipeline import packager

CHANGES = ("Format: 1.8\nSource: {source}\nVersion: 1.0-1\nDistribution: bookworm-test-unstable\nArchitecture: source\n"
           "Changed-By: t <t@example.org>\nMaintainer: t <t@example.org>\nChecksums-Sha256:\n"
           " {digest} 3 {source}_1.0-1.dsc\nFiles:\n 900150983cd24fb0d6963f7d28e17f72 3 misc optional {source}_1.0-1.dsc\n")
DIGEST = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256("abc")


@pytest.fixture
def logged(monkeypatch):
    """(event, save_dir) of every event the code logs."""
    seen = []
    monkeypatch.setattr(services, "log_event", lambda event, save_dir=None: seen.append((event, save_dir)))
    return seen


def released(temp_home, source, timecode="20261207:101010:000001", event_file=None, text=None):
    """An upload as the quarantine releases it: events/SOURCE/VERSION/TIMECODE/source/*.changes."""
    directory = temp_home.events / source / "1.0-1" / timecode / "source"
    directory.mkdir(parents=True)
    (directory / f"{source}_1.0-1_source.changes").write_text(text or CHANGES.format(source=source, digest=DIGEST), encoding="utf-8")
    (directory / f"{source}_1.0-1.dsc").write_text("abc", encoding="utf-8")
    if event_file:
        (directory / event_file).write_text("{}", encoding="utf-8")
    return directory


def test_released_upload_without_event_ends_failed_once(temp_home, logged):
    directory = released(temp_home, "hello")
    assert packager.conclude_released_without_event() == [("hello/1.0-1/20261207:101010:000001", "FAILED")]
    assert len(logged) == 1
    event, save_dir = logged[0]
    assert (event.type.name, event.source, event.version, event.distribution) == ("FAILED", "hello", "1.0-1", "bookworm-test-unstable")
    assert save_dir == directory
    assert event.extra["key"] == "hello/1.0-1/20261207:101010:000001"
    assert event.extra["changes"] == "hello_1.0-1_source.changes"
    assert "stopped before this upload was packaged" in event.extra["error"]["detail"]


def test_upload_with_an_event_and_unreadable_changes_are_left_alone(temp_home, logged):
    released(temp_home, "packaged", event_file="20261207:101011:000001_PACKAGING.json")
    released(temp_home, "rejected", event_file="20261207:101011:000002_REJECTED.json")
    broken = released(temp_home, "broken", text="this is not a changes file\n")
    assert not packager.conclude_released_without_event()
    assert not logged
    assert sorted(p.name for p in broken.iterdir()) == ["broken_1.0-1.dsc", "broken_1.0-1_source.changes"]  # nothing removed


def test_nothing_to_do_in_an_empty_home(temp_home, logged):
    assert not any(temp_home.events.iterdir())
    assert not packager.conclude_released_without_event()
    assert not logged
