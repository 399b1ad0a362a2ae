"""Distributed building logic without network or tools: builder order and fair ties, first
accepting builder wins, the builder watch's re-dispatch timing, the packager's re-dispatch and
late-result handling, URL normalisation, schroot prefix and stale-session selection."""

# pytest idioms: some fixtures are requested for their side effects only; Django and the code under test are
# imported after the test set-up; asserts compare with empty containers on purpose (the type counts too).
# pylint: disable=unused-argument,import-outside-toplevel,use-implicit-booleaness-not-comparison

import pathlib
import types

import pytest

from mini_buildd import config, instance
from mini_buildd.pipeline import remotes
from mini_buildd.tools import schroot


# ------------------------------------------------------------------------------------------------ order
def _c(url, load):
    return remotes.Candidate(url, url.replace("http", "ftp"), load)


def test_order_ascending_load():
    s = remotes.Selector()
    got = s.order([_c("http://c:1", 0.5), _c("http://a:1", 1.0), _c("http://b:1", 0.0)])
    assert [c.url for c in got] == ["http://b:1", "http://c:1", "http://a:1"]


def test_equal_loads_take_turns():
    """Equal loads do not shadow each other: the least recently used builder goes first."""
    s = remotes.Selector()
    cands = [_c("http://a:1", 0.0), _c("http://b:1", 0.0), _c("http://c:1", 0.0)]
    chosen = []
    for _ in range(6):
        first = s.order(cands)[0]
        s.used(first.url)
        chosen.append(first.url)
    assert chosen == ["http://a:1", "http://b:1", "http://c:1"] * 2
    # a lower load still wins over fairness
    assert s.order(cands + [_c("http://z:1", -0.5 + 0.25)])[0].url == "http://z:1"


class _Gpg:
    def __init__(self):
        self.signed = []

    def sign_file(self, path):
        self.signed.append(path)


BREQ = """Distribution: bookworm-test-unstable
Source: hello
Version: 1.0
Architecture: amd64
X-Mini-Buildd-Timecode: 20260101:000000:000000
X-Mini-Buildd-Buildlog: hello/1.0/20260101:000000:000000/amd64/hello_1.0_amd64.buildlog
X-Mini-Buildd-Builder: http://old:1
X-Mini-Buildd-Buildlog-Building: http://old:1/mini_buildd/builds-dir/x
Files:
 d41d8cd98f00b204e9800998ecf8427e 0 mini-buildd extra hello_1.0_mini-buildd-buildrequest_amd64.changes.tar
"""


def test_select_first_accepting_builder_wins(tmp_path, monkeypatch):
    breq = tmp_path / "hello_1.0_mini-buildd-buildrequest_amd64.changes"
    breq.write_text(BREQ)
    s = remotes.Selector()
    cands = [_c("http://a:1", 0.0), _c("http://b:1", 0.5), _c("http://c:1", 0.7)]
    monkeypatch.setattr(s, "candidates", lambda *a, **k: cands)
    tried = []

    def upload(path, url):
        tried.append(url)
        if url == "ftp://a:1":
            raise OSError("connection refused")

    gpg = _Gpg()
    assert s.select(breq, "bookworm:amd64", gpg, upload=upload) == "http://b:1"
    assert tried == ["ftp://a:1", "ftp://b:1"]
    text = breq.read_text()
    assert "X-Mini-Buildd-Builder: http://b:1\n" in text
    assert ("X-Mini-Buildd-Buildlog-Building: http://b:1/mini_buildd/builds-dir/"
            "hello/1.0/20260101:000000:000000/amd64/hello_1.0_amd64.buildlog\n") in text
    assert len(gpg.signed) == 2  # re-signed for each attempt


@pytest.mark.django_db
def test_select_nobody_takes_it(tmp_path, monkeypatch):
    breq = tmp_path / "hello_1.0_mini-buildd-buildrequest_amd64.changes"
    breq.write_text(BREQ)
    s = remotes.Selector()
    monkeypatch.setattr(s, "candidates", lambda *a, **k: [_c("http://a:1", 0.0)])

    def upload(path, url):
        raise OSError("full")
    with pytest.raises(remotes.RemoteError, match="No builder took.*full"):
        s.select(breq, "bookworm:amd64", _Gpg(), upload=upload)
    monkeypatch.setattr(s, "candidates", lambda *a, **k: [])
    with pytest.raises(remotes.RemoteError, match=r"No builder for bookworm:amd64: no active chroot here \(builder stopped; "
                       r"no chroot bookworm:amd64 configured\)"):
        s.select(breq, "bookworm:amd64", _Gpg(), upload=upload)


@pytest.mark.django_db
def test_local_builder_state_says_why_the_chroot_does_not_build():
    from mini_buildd import models  # pylint: disable=import-outside-toplevel  # Django is set up by the tests first
    source = models.Source.objects.create(origin="Debian", codename="bookworm")
    arch, _ = models.Architecture.objects.get_or_create(name="amd64")
    chroot = models.DirChroot.objects.create(source=source, architecture=arch)
    chroot._set(models.StatusModel.STATUS_PREPARED, message="Check failed: apt-get update failed")  # pylint: disable=protected-access
    state = remotes.local_builder_state("bookworm:amd64", 0.5)
    assert state.startswith("builder running; chroot bookworm:amd64 ") and state.endswith(": Check failed: apt-get update failed"), state
    assert remotes.local_builder_state("bookworm:amd64", -1.0).startswith("builder stopped; ")


def test_retarget_needs_builder_field(tmp_path):
    p = tmp_path / "x_1_mini-buildd-buildrequest_amd64.changes"
    p.write_text(BREQ.replace("X-Mini-Buildd-Builder: http://old:1\n", ""))
    with pytest.raises(remotes.RemoteError, match="no X-Mini-Buildd-Builder"):
        remotes.retarget_buildrequest(p, "http://new:1", _Gpg())


def test_normalize_url():
    assert remotes.normalize_url("tcp:host=Grover.Example:port=8066") == "http://grover.example:8066"
    assert remotes.normalize_url("HTTP://127.0.0.3:8066/") == "http://127.0.0.3:8066"
    assert remotes.normalize_url("tls:host=h:port=1") == "https://h:1"


# ------------------------------------------------------------------------------------------------ watch
class _Packager:
    def __init__(self, packages):
        import threading
        self._lock = threading.Lock()
        self.ongoing = {p.key: p for p in packages}
        self.submitted = []

    def ongoing_packages(self):
        with self._lock:
            return list(self.ongoing.values())

    def submit(self, kind, item):
        self.submitted.append((kind, item))


def _pkg(key, builders, results=()):
    return types.SimpleNamespace(key=key, builders=dict(builders), buildresults={a: object() for a in results})


def test_watch_redispatches_after_timeout(monkeypatch):
    monkeypatch.setattr(instance, "http_url", lambda: "http://us:1")
    answers = {"http://dead:1": None, "http://alive:1": {"load": 0.5}}
    polled = []

    def status(url):
        polled.append(url)
        if answers[url] is None:
            raise remotes.RemoteError("timeout")
        return answers[url]
    p = _Packager([_pkg("a/1/t", {"amd64": "http://dead:1", "i386": "http://alive:1", "arm64": "http://us:1"}),
                   _pkg("b/1/t", {"amd64": "http://dead:1"}, results=["amd64"])])
    w = remotes.BuilderWatch(p, timeout=10, poll=1, status=status)
    assert w.round(now=100) == []
    assert w.round(now=105) == []
    assert sorted(set(polled)) == ["http://alive:1", "http://dead:1"]  # never ourselves, never finished builds
    assert w.round(now=110) == [("a/1/t", "amd64", "http://dead:1")]
    assert p.submitted == [("redispatch", ("a/1/t", "amd64", "http://dead:1"))]
    # not again at once: a full period for the re-dispatch
    assert w.round(now=111) == []
    # a builder that answers again keeps its build
    answers["http://dead:1"] = {"load": 0.0}
    assert w.round(now=130) == []
    # an engine that stopped (load -1) counts as not answering
    answers["http://dead:1"] = {"load": -1}
    assert w.round(now=135) == []
    assert w.round(now=145) == [("a/1/t", "amd64", "http://dead:1")]


# ------------------------------------------------------------------------------------------------ packager
def test_packager_redispatch_and_late_result(monkeypatch, tmp_path):
    from mini_buildd.pipeline import packager as pk
    calls = []

    def select(breq, codename_arch, exclude=()):
        calls.append((codename_arch, tuple(exclude)))
        return "http://b:1"
    p = pk.Packager(select)
    breq = types.SimpleNamespace(bkey="hello/1.0/t/amd64")
    package = types.SimpleNamespace(key="hello/1.0/t", buildrequests={"amd64": breq}, buildresults={},
                                    builders={"amd64": "http://a:1"},
                                    distribution=types.SimpleNamespace(codename="bookworm"))
    p.ongoing[package.key] = package
    p.redispatch("hello/1.0/t", "amd64", "http://x:1")   # not the holder: nothing
    assert calls == []
    p.redispatch("hello/1.0/t", "amd64", "http://a:1")
    assert calls == [("bookworm:amd64", ("http://a:1",))]
    assert package.builders["amd64"] == "http://b:1"
    assert p.superseded == {"hello/1.0/t/amd64": {"http://a:1"}}

    # A late result of the superseded builder is ignored (and removed from incoming), not rejected.
    def parse(path):
        return types.SimpleNamespace(key="hello/1.0/t", bkey="hello/1.0/t/amd64", architecture="amd64", path=pathlib.Path(path),
                                     x_get=lambda name, default=None: "http://a:1" if name == "Builder" else default)
    monkeypatch.setattr(pk.changes, "Buildresult", parse)
    removed, rejected = [], []
    monkeypatch.setattr(pk.incoming, "discard", removed.append)
    monkeypatch.setattr(p, "reject", lambda *a, **k: rejected.append(a))
    p.handle_buildresult("/q/arrival-1/late.changes")
    assert removed == [pathlib.Path("/q/arrival-1")] and rejected == []
    # ... also after the package finished
    p.ongoing.clear()
    p.handle_buildresult("/q/arrival-2/late2.changes")
    assert removed[-1] == pathlib.Path("/q/arrival-2") and rejected == []


def test_packager_redispatch_without_builder_keeps_holder():
    from mini_buildd.pipeline import packager as pk

    def select(breq, codename_arch, exclude=()):
        raise remotes.RemoteError("No builder")
    p = pk.Packager(select)
    package = types.SimpleNamespace(key="k/1/t", buildrequests={"amd64": types.SimpleNamespace(bkey="k/1/t/amd64")},
                                    buildresults={}, builders={"amd64": "http://a:1"},
                                    distribution=types.SimpleNamespace(codename="bookworm"))
    p.ongoing[package.key] = package
    p.redispatch("k/1/t", "amd64", "http://a:1")
    assert package.builders["amd64"] == "http://a:1" and not p.superseded


# ------------------------------------------------------------------------------------------------ schroot prefix
def test_schroot_prefix(tmp_path, monkeypatch):
    paths = config.Paths(tmp_path / "home")
    paths.create()
    monkeypatch.setattr(config, "paths", paths)
    monkeypatch.setattr(config.runtime, "schroot_prefix", config.DEFAULT_SCHROOT_PREFIX)
    assert config.read_schroot_prefix(paths) == "mini-buildd"
    assert config.schroot_name("bookworm", "amd64") == "mini-buildd-bookworm-amd64"
    config.set_schroot_prefix("mbd-grover")
    assert paths.schroot_prefix_file.read_text(encoding="utf-8").strip() == "mbd-grover"
    assert config.schroot_name("bookworm", "amd64") == "mbd-grover-bookworm-amd64"
    # init of another process on the same home agrees
    monkeypatch.setattr(config.runtime, "schroot_prefix", "other")
    config.init(paths.home)
    assert config.runtime.schroot_prefix == "mbd-grover"
    for bad in ("", "-x", "x-", "a b", "a/b", "x" * 51):
        with pytest.raises(ValueError):
            config.validate_schroot_prefix(bad)
    # no change of prefix under existing chroots
    paths.chroot_dir("bookworm", "amd64").mkdir(parents=True)
    with pytest.raises(ValueError, match="remove them"):
        config.set_schroot_prefix("mbd-oscar")
    config.set_schroot_prefix("mbd-grover")  # same prefix: fine


def test_end_stale_sessions_only_ours(monkeypatch):
    uuid = "0123abcd-0123-4567-89ab-0123456789ab"
    sessions = {
        f"mini-buildd-bookworm-amd64-{uuid}": "mini-buildd-bookworm-amd64",
        f"mini-buildd-grover-bookworm-amd64-{uuid}": "mini-buildd-grover-bookworm-amd64",
        f"custom-name-{uuid}": "mini-buildd-bookworm-amd64",
        f"mini-buildd-bookworm-i386-{uuid}": None,          # info unreadable: judged by its id
        f"mini-buildd-bookworm-arm64-{uuid}": None,
    }
    ended = []
    monkeypatch.setattr(schroot, "list_sessions", lambda: list(sessions))
    monkeypatch.setattr(schroot, "session_chroot", sessions.get)
    monkeypatch.setattr(schroot, "end_session", ended.append)
    got = schroot.end_stale_sessions(["mini-buildd-bookworm-amd64", "mini-buildd-bookworm-i386"])
    assert sorted(got) == sorted(ended) == sorted([f"mini-buildd-bookworm-amd64-{uuid}", f"custom-name-{uuid}",
                                                   f"mini-buildd-bookworm-i386-{uuid}"])
    assert schroot.end_stale_sessions([]) == []


# ------------------------------------------------------------------------------------------------ handshake texts
def test_handshake_texts_round_trip():
    challenge = remotes.new_challenge()
    assert len(challenge) == 64 and challenge != remotes.new_challenge()
    text = remotes.handshake_text(remotes.HANDSHAKE_REQUEST, Challenge=challenge, From="http://a:8066")
    assert text == f"mini-buildd handshake request\nChallenge: {challenge}\nFrom: http://a:8066\n"
    assert remotes.parse_handshake(remotes.HANDSHAKE_REQUEST, text) == {"Challenge": challenge, "From": "http://a:8066"}
    answer = remotes.handshake_text(remotes.HANDSHAKE_ANSWER, Challenge=challenge, To="http://a:8066", By="http://b:8066",
                                    Fingerprint="0123456789ABCDEF0123456789ABCDEF01234567")
    assert remotes.parse_handshake(remotes.HANDSHAKE_ANSWER, answer)["By"] == "http://b:8066"
    # a request is no answer and the other way round
    with pytest.raises(ValueError):
        remotes.parse_handshake(remotes.HANDSHAKE_ANSWER, text)
    with pytest.raises(ValueError):
        remotes.parse_handshake(remotes.HANDSHAKE_REQUEST, answer)


@pytest.mark.parametrize("text", [
    "Hand Shake\n",
    "mini-buildd handshake request\nChallenge: {c}\n",
    "mini-buildd handshake request\nFrom: http://a:1\nChallenge: {c}\n",
    "mini-buildd handshake request\nChallenge: {c}\nFrom: http://a:1\nSource: hello\n",
    "mini-buildd handshake request\nChallenge: {c}\nFrom: http://a:1 Source: hello\n",
    "mini-buildd handshake request\nChallenge: {c}x\nFrom: http://a:1\n",
    "mini-buildd handshake request\nChallenge: {C}\nFrom: http://a:1\n",
    "mini-buildd handshake request\nChallenge:  {c}\nFrom: http://a:1\n",
    "mini-buildd handshake request\nChallenge: {c}\nFrom: http://a:1\n\n",
    "mini-buildd handshake request\r\nChallenge: {c}\r\nFrom: http://a:1\r\n",
    "Source: hello\nVersion: 1.0\nChallenge: {c}\nFrom: http://a:1\n",
])
def test_handshake_request_form_is_strict(text):
    """Nothing but a well-formed request is answered (else the call would sign other texts)."""
    c = "ab" * 32
    with pytest.raises(ValueError):
        remotes.parse_handshake(remotes.HANDSHAKE_REQUEST, text.format(c=c, C=c.upper()))
    with pytest.raises(ValueError):
        remotes.handshake_text(remotes.HANDSHAKE_REQUEST, Challenge=c, From="http://a:1\nSource: hello")
