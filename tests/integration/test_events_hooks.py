"""Event hooks (upstream §5.4) running real executables: which files run, in which order, with which
argument; failures and time-outs only logged; a slow hook never blocks logging."""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import json
import logging
import pathlib

import pytest

from mini_buildd import events
from mini_buildd.events import Event, Events, Type


def event_at(seconds=0, type_=Type.INSTALLED, arch="source"):
    tc = f"20261122:0100{seconds:02d}:000000"
    key = f"hello/1.0-1/{tc}"
    return Event(type_, "bookworm-test-unstable", "hello", "1.0-1",
                 f"2026-11-22T01:00:{seconds:02d}+00:00", {"timecode": tc, "key": key, "bkey": f"{key}/{arch}", "architecture": arch})


def save_dir(root, event):
    return pathlib.Path(root, *event.bkey.split("/"))


def hook(hooks_dir, name, body, mode=0o755):
    path = hooks_dir / name
    path.write_text("#!/bin/sh\nset -e\n" + body + "\n")
    path.chmod(mode)
    return path


@pytest.fixture
def dirs(tmp_path):
    (tmp_path / "hooks").mkdir()
    return tmp_path / "events", tmp_path / "hooks", tmp_path / "out"


def test_hooks_run_in_order_with_event_path(dirs, caplog):
    events_dir, hooks_dir, out = dirs
    out.mkdir()
    record = out / "record"
    hook(hooks_dir, "20-second", f'echo "second $1" >> {record}')
    hook(hooks_dir, "10-first", f'echo "first $1" >> {record}\ncat "$1" > {out}/copy.json')
    hook(hooks_dir, "15-fails", f'echo "fails $1" >> {record}\nexit 3')
    hook(hooks_dir, "_skipped", f"touch {out}/skipped-ran")
    hook(hooks_dir, "foo~", f"touch {out}/backup-ran")
    hook(hooks_dir, ".hidden", f"touch {out}/hidden-ran")
    hook(hooks_dir, "17-noexec", f"touch {out}/noexec-ran", mode=0o644)
    caplog.set_level(logging.WARNING, logger="mini_buildd.events")

    hub = Events(events_dir, hooks_dir=hooks_dir)
    event = hub.log(event_at(1), save_dir=save_dir(events_dir, event_at(1)))
    assert hub.join(timeout=60)

    path = event.path
    assert path.is_absolute() and path.is_file()
    assert path == (events_dir / "hello/1.0-1/20261122:010001:000000/source/hello_1.0-1_INSTALLED.json").resolve()
    assert record.read_text().splitlines() == [f"first {path}", f"fails {path}", f"second {path}"]
    assert json.loads((out / "copy.json").read_text()) == event.to_json()
    assert sorted(p.name for p in out.iterdir()) == ["copy.json", "record"]
    assert "15-fails" in caplog.text and "exit 3" in caplog.text
    assert "17-noexec" in caplog.text
    assert hub.queue() == [event]


def test_unsaved_events_run_no_hooks(dirs):
    events_dir, hooks_dir, out = dirs
    hook(hooks_dir, "10-any", f"touch {out}")
    hub = Events(events_dir, hooks_dir=hooks_dir)
    hub.log(event_at(1, Type.REJECTED))
    assert hub.join(timeout=60)
    assert not out.exists()


def test_slow_hook_does_not_block_logging(dirs):
    events_dir, hooks_dir, out = dirs
    out.mkdir()
    go = out / "go"
    # Waits (at most 60 s) until the test says go, then records its argument.
    hook(hooks_dir, "10-slow", f'i=0\nwhile [ ! -e {go} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\necho "$1" >> {out}/record')
    hub = Events(events_dir, hooks_dir=hooks_dir)
    first, second = event_at(1), event_at(2, Type.FAILED)
    hub.log(first, save_dir=save_dir(events_dir, first))
    hub.log(second, save_dir=save_dir(events_dir, second))
    # Both logged and queued while the first hook is still waiting.
    assert hub.queue() == [second, first]
    assert not hub.join(timeout=0.3)
    assert not (out / "record").exists()
    go.touch()
    assert hub.join(timeout=60)
    assert (out / "record").read_text().splitlines() == [str(first.path), str(second.path)]


def test_hook_timeout_is_only_logged(dirs, caplog):
    events_dir, hooks_dir, out = dirs
    out.mkdir()
    hook(hooks_dir, "10-hangs", "exec sleep 60")
    hook(hooks_dir, "20-next", f'echo "$1" > {out}/next')
    caplog.set_level(logging.WARNING, logger="mini_buildd.events")
    hub = Events(events_dir, hooks_dir=hooks_dir, hook_timeout=1)
    event = event_at(3)
    hub.log(event, save_dir=save_dir(events_dir, event))
    assert hub.join(timeout=60)
    assert "10-hangs" in caplog.text and "timed out" in caplog.text
    assert (out / "next").read_text().strip() == str(event.path)


def test_run_hooks_results(dirs):
    events_dir, hooks_dir, _out = dirs
    ok = hook(hooks_dir, "a-ok", 'test -f "$1"')
    bad = hook(hooks_dir, "b-bad", "exit 7")
    events_dir.mkdir()
    target = events_dir / "x_1_REMOVED.json"
    target.write_text("{}")
    assert events.run_hooks(hooks_dir, target) == {ok: 0, bad: 7}
