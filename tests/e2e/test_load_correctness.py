"""Concurrent uploads with a SIGKILL (issue #17, "Proof under load and at scale", items 1 and 2, the
small correctness version of ``bench/load/run``): an instance of its own (127.0.0.37, its own schroot
prefix, 2 build slots, a chroot from the cached base tarball, lintian off to keep the builds short)
gets 2 good signed uploads and 4 bad ones (unsigned where signing is required, signed by an unknown
key, a checksum mismatch, a listed file missing) at once through real FTP, each from its own client address; when the first build runs the
daemon is SIGKILLed and restarted on the same home, and a good upload the kill ended FAILED is sent
again (the rule of :mod:`tests.helpers.load`). Then: every good package INSTALLED exactly once and in
the repository, every bad one REJECTED with its reason and nothing else, nothing left ongoing, the
event stream (reconnected with ``Last-Event-ID`` after the kill) and the event files agree, no event
streamed twice, ``reprepro check`` and ``checkpool`` clean, no journal left. Teardown: daemon stopped,
chroot removed, no schroot config, mount or process of the instance left.
"""

# pylint: disable=redefined-outer-name  # pytest passes each fixture as the parameter of its name

import os

import pytest

from tests.helpers import load

HOST = "127.0.0.37"
#: Two good uploads fill the two slots: the kill at the first build ends one or both FAILED, sent again.
GOOD = 2


@pytest.fixture(scope="module")
def inst(tmp_path_factory):
    """The running instance; torn down after, nothing of it left on the host."""
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests need root")
    root = tmp_path_factory.mktemp("load")
    instance = load.LoadInstance(root, HOST, f"mbd-e2eload{os.getpid()}", slots=2, lintian=False)
    try:
        instance.create()
        instance.start()
        yield instance
    finally:
        instance.teardown()
    assert not load.leftovers(instance)


def _building(evs):
    return any(e.type.value == "BUILDING" for e in evs.values())


def test_concurrent_uploads_with_a_kill(inst, tmp_path):
    uploads = load.make_uploads(inst, tmp_path, good=GOOD, bad=4, tag="e2eload")
    result = load.run(inst, uploads, timeout=900, kill_when=_building, log=lambda text: None)
    figures, mismatches = load.check(inst, uploads, result, faults=True)
    assert inst.kills == 1
    assert not mismatches, "\n".join(figures + mismatches)
    assert {u.kind for u in uploads if not u.good} == {"unsigned", "stranger", "checksum", "missing"}
