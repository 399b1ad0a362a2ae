"""The API call registry: argument conversion from HTTP queries and command lines, defaults,
choices, authorization levels, confirmation, running engine and the maintenance lock."""

# pytest idioms: some fixtures are requested for their side effects only.
# pylint: disable=unused-argument

import threading
import types

import pytest

from mini_buildd import errors
from mini_buildd.api import registry
from mini_buildd.api.registry import Argument, Auth, Call, Problem


def _call(args=(), auth=Auth.NONE, flags=(), run=None):
    return Call("testcall", run or (lambda args, user: args), doc="A test call\n\nLonger text.", args=args, auth=auth, flags=flags)


def _user(authenticated=True, active=True, staff=False, superuser=False):
    return types.SimpleNamespace(is_authenticated=authenticated, is_active=active, is_staff=staff, is_superuser=superuser)


def _problem(func, *args, **kwargs):
    with pytest.raises(Problem) as e:
        func(*args, **kwargs)
    return e.value


@pytest.fixture
def engine():
    """Fake engine hooks; restores the defaults afterwards."""
    state = types.SimpleNamespace(running=False, log=[])

    def stop():
        state.log.append("stop")
        state.running = False

    def start():
        state.log.append("start")
        state.running = True
    registry.set_engine_hooks(lambda: state.running, stop, start, load=lambda: 0.5)
    yield state
    registry.reset_engine_hooks()


# ------------------------------------------------------------------------------------------------ arguments
def test_identity_and_flags():
    a = Argument("--with-repositories", "-R", type=registry.BOOL)
    assert (a.identity, a.long, a.short, a.positional, a.required, a.default) == ("with_repositories", "--with-repositories", "-R", False, False, False)
    p = Argument("from_distribution")
    assert (p.identity, p.positional, p.required) == ("from_distribution", True, True)
    assert Argument("--keys", type=registry.LIST).default == []


@pytest.mark.parametrize("bad", [{"type": "float"}, {"type": registry.CHOICE}])
def test_bad_definitions(bad):
    with pytest.raises(ValueError):
        Argument("--x", **bad)


def test_positional_with_option_strings_is_refused():
    with pytest.raises(ValueError):
        Argument("source", "-s")


@pytest.mark.parametrize("raw,value", [("True", True), ("true", True), ("1", True), ("yes", True),
                                       ("False", False), ("false", False), ("0", False), ("no", False)])
def test_bool(raw, value):
    assert Argument("--flag", type=registry.BOOL).convert([raw]) is value


def test_bool_bad():
    p = _problem(Argument("--flag", type=registry.BOOL).convert, ["maybe"])
    assert p.status == 400 and "flag" in p.detail and "maybe" in p.detail


def test_int():
    a = Argument("--rollbacks", type=registry.INT, default=0)
    assert a.convert(["-1"]) == -1 and a.convert([" 7 "]) == 7
    assert _problem(a.convert, ["seven"]).status == 400


def test_list_comma_separated_and_repeated():
    a = Argument("--codenames", type=registry.LIST)
    assert a.convert(["bookworm,trixie", " sid ", ""]) == ["bookworm", "trixie", "sid"]
    assert a.convert([""]) == []


def test_list_choices_checked_per_element():
    a = Argument("--types", type=registry.LIST, choices=("deb", "deb-src"))
    assert a.convert(["deb,deb-src"]) == ["deb", "deb-src"]
    p = _problem(a.convert, ["deb,rpm"])
    assert p.status == 400 and "'rpm' is not a valid choice" in p.detail and "deb-src" in p.detail


def test_choice_computed_at_request_time():
    available = ["a"]
    a = Argument("dist", type=registry.CHOICE, choices=lambda: available)
    assert a.convert(["a"]) == "a"
    assert _problem(a.convert, ["b"]).status == 400
    available.append("b")
    assert a.convert(["b"]) == "b"


def test_url():
    a = Argument("dsc", type=registry.URL)
    assert a.convert(["http://h/x.dsc"]) == "http://h/x.dsc"
    assert a.convert(["file:///tmp/x.dsc"]) == "file:///tmp/x.dsc"
    assert _problem(a.convert, ["not a url"]).status == 400


def test_text_keeps_newlines():
    assert Argument("key", type=registry.TEXT).convert(["line1\nline2\n"]) == "line1\nline2\n"


@pytest.mark.parametrize("value,query", [(True, "True"), (False, "False"), (["a", "b"], "a,b"), (3, "3"), ("x", "x")])
def test_to_query_inverts_convert(value, query):
    a = Argument("--x", type={bool: registry.BOOL, list: registry.LIST, int: registry.INT, str: registry.STRING}[type(value)])
    assert a.to_query(value) == query
    assert a.convert([query]) == value


# ------------------------------------------------------------------------------------------------ query parsing
def test_parse_query_defaults_and_server_defaults():
    computed = []

    def server_default():
        computed.append(1)
        return ["all", "repos"]
    c = _call([Argument("source"), Argument("--repositories", "-R", type=registry.LIST, server_default=server_default),
               Argument("--rollbacks", "-r", type=registry.INT, default=0), Argument("--full", type=registry.BOOL)])
    assert c.parse_query({"source": "hello"}) == {"source": "hello", "repositories": ["all", "repos"], "rollbacks": 0, "full": False}
    assert len(computed) == 1
    assert c.parse_query({"source": ["hello"], "repositories": ["test"], "full": "True", "output": "json", "confirm": "x"}) == \
        {"source": "hello", "repositories": ["test"], "rollbacks": 0, "full": True}
    # The upstream client's marker means "server default".
    assert c.parse_query({"source": "x", "repositories": registry.SERVER_DEFAULT_MARKER})["repositories"] == ["all", "repos"]


def test_parse_query_missing_required():
    p = _problem(_call([Argument("source")]).parse_query, {})
    assert p.status == 400
    assert p.to_dict() == {"type": "about:blank", "status": 400, "title": "Bad request syntax or unsupported method",
                           "detail": "Missing required argument: source: given=None, _default=None", "instance": "about:blank"}


def test_parse_query_unknown_argument():
    p = _problem(_call([Argument("--x")]).parse_query, {"y": "1", "z": "2"})
    assert p.status == 400 and "y, z" in p.detail and "testcall" in p.detail


def test_duplicate_identities_refused():
    with pytest.raises(ValueError):
        _call([Argument("--x"), Argument("x")])


# ------------------------------------------------------------------------------------------------ argv
def test_parse_argv_round_trip():
    c = _call([Argument("source"), Argument("to_distributions", type=registry.LIST),
               Argument("--with-extra", "-X", type=registry.BOOL), Argument("--rollbacks", "-r", type=registry.INT, default=0),
               Argument("--codenames", "-C", type=registry.LIST), Argument("--version", "-V", default="")])
    query = c.parse_argv(["hello", "a-test-unstable", "b-test-unstable", "-X", "-r", "3", "--codenames", "bookworm", "trixie,sid"])
    assert query == {"source": "hello", "to_distributions": "a-test-unstable,b-test-unstable", "with_extra": "True",
                     "rollbacks": "3", "codenames": "bookworm,trixie,sid"}
    assert c.parse_query(query) == {"source": "hello", "to_distributions": ["a-test-unstable", "b-test-unstable"], "with_extra": True,
                                    "rollbacks": 3, "codenames": ["bookworm", "trixie", "sid"], "version": ""}
    # Options not given are not sent: the server fills in defaults.
    assert c.parse_argv(["hello", "x"]) == {"source": "hello", "to_distributions": "x"}


def test_parse_argv_errors():
    c = _call([Argument("source"), Argument("--rollbacks", "-r", type=registry.INT)])
    assert _problem(c.parse_argv, []).status == 400
    assert _problem(c.parse_argv, ["x", "-r", "many"]).status == 400


def test_cli_parser_of_every_call_builds_and_has_help():
    from mini_buildd.cli import api as cli  # pylint: disable=import-outside-toplevel
    p = cli.parser()
    for name, call in registry.CALLS.items():
        ns = p.parse_args([name, "http://localhost:8066"] + [("x" if a.type != registry.INT else "1") for a in call.args if a.positional]
                          + [x for a in call.args if a.required and not a.positional for x in (a.long, "x")])
        assert ns.call == name and ns.endpoint == "http://localhost:8066"
        assert call.summary and call.help_text().startswith(call.summary)
    ns = p.parse_args(["--script-mode", "sources_list", "http://h:1", "--json", "-C", "bookworm", "-r", "2"])
    assert (ns.script_mode, ns.json) == (True, True)
    assert registry.CALLS["sources_list"].query_from_namespace(ns) == {"codenames": "bookworm", "rollbacks": "2"}


def test_spec_call_table():
    """Names, auth levels and flags of upstream §4.2."""
    C, R, M = registry.CONFIRM, registry.NEEDS_RUNNING, registry.MAINTENANCE  # pylint: disable=invalid-name  # the flags' initials
    expected = {
        "status": (Auth.NONE, set()), "pub_key": (Auth.NONE, set()), "dput_conf": (Auth.NONE, set()),
        "sources_list": (Auth.NONE, set()), "ls": (Auth.NONE, set()), "show": (Auth.NONE, set()),
        "search": (Auth.NONE, set()), "debdiff": (Auth.NONE, set()), "migrate": (Auth.STAFF, {C}),
        "remove": (Auth.ADMIN, {C}), "port": (Auth.STAFF, {R, C}), "port_ext": (Auth.STAFF, {R, C}),
        "retry": (Auth.STAFF, {R, C}), "cancel": (Auth.STAFF, {R, C}), "set_user_key": (Auth.LOGIN, {C}),
        "subscribe": (Auth.LOGIN, set()), "unsubscribe": (Auth.LOGIN, set()), "remake_chroots": (Auth.ADMIN, {C, M}),
        "reindex": (Auth.ADMIN, {C, M}), "start": (Auth.ADMIN, {C}), "stop": (Auth.ADMIN, {C}), "wake": (Auth.STAFF, {C}),
        "handshake": (Auth.NONE, set()), "cronjob": (Auth.ADMIN, {C}), "uploaders": (Auth.ADMIN, {R}),
        "snapshot_ls": (Auth.NONE, {R}), "snapshot_diff": (Auth.NONE, set()),  # (snapshot_diff: ours, issue #16)
        "snapshot_create": (Auth.ADMIN, {C, R}), "snapshot_delete": (Auth.ADMIN, {C, R}),
        "debmirror": (Auth.ADMIN, {C}), "keyring_packages": (Auth.ADMIN, {R, C}), "test_packages": (Auth.ADMIN, {R, C}),
        "setup": (Auth.ADMIN, {C, M}),
        "webhook_create": (Auth.LOGIN, set()), "webhook_list": (Auth.LOGIN, set()),  # (webhooks: ours, issue #17)
        "webhook_delete": (Auth.LOGIN, {C}),
        "token_create": (Auth.LOGIN, set()), "token_list": (Auth.LOGIN, set()), "token_revoke": (Auth.LOGIN, set()),  # (API tokens: ours, issue #17)
    }
    assert list(registry.CALLS) == list(expected)
    assert {n: (c.auth, set(c.flags)) for n, c in registry.CALLS.items()} == expected
    flags = {a.long or a.identity: a.short for a in registry.CALLS["sources_list"].args}
    assert flags == {"--codenames": "-C", "--repositories": "-R", "--suites": "-S", "--types": "-T", "--options": "-O",
                     "--rollbacks": "-r", "--snapshot": "-P", "--mirror": "-M", "--with-extra": "-X", "--with-comment": "-D"}
    from mini_buildd import bootstrap  # pylint: disable=import-outside-toplevel
    assert [a.identity for a in registry.CALLS["setup"].args] == [o[0] for o in bootstrap.OPTIONS]


# ------------------------------------------------------------------------------------------------ auth, confirm, engine
@pytest.mark.parametrize("level,user,status", [
    (Auth.LOGIN, None, 401),
    (Auth.LOGIN, _user(authenticated=False), 401),
    (Auth.LOGIN, _user(active=False), 401),
    (Auth.LOGIN, _user(), None),
    (Auth.STAFF, _user(), 403),
    (Auth.STAFF, _user(staff=True), None),
    (Auth.ADMIN, _user(staff=True), 403),
    (Auth.ADMIN, _user(staff=True, superuser=True), None),
    (Auth.NONE, None, None),
])
def test_auth(level, user, status):
    c = _call(auth=level)
    if status is None:
        c.check_auth(user)
    else:
        p = _problem(c.check_auth, user)
        assert p.status == status and p.detail == f"API call 'testcall' needs authorization: {level.name}"


def test_execute_order_auth_before_arguments(engine):  # pylint: disable=redefined-outer-name,unused-argument
    c = _call([Argument("source")], auth=Auth.STAFF, flags=[registry.NEEDS_RUNNING, registry.CONFIRM])
    assert _problem(registry.execute, c, {}, user=None).status == 401
    assert _problem(registry.execute, c, {}, user=_user(staff=True)).status == 400
    # arguments fine, engine stopped
    assert _problem(registry.execute, c, {"source": "x"}, user=_user(staff=True)).status == 503
    engine.running = True
    p = _problem(registry.execute, c, {"source": "x"}, user=_user(staff=True))
    assert p.status == 400 and "confirm" in p.detail
    assert _problem(registry.execute, c, {"source": "x"}, user=_user(staff=True), confirm="other").status == 400
    assert registry.execute(c, {"source": "x"}, user=_user(staff=True), confirm="testcall") == {"source": "x"}


def test_execute_maps_domain_errors():
    class Conflict(errors.Conflict):
        pass

    def run(args, user):
        raise {"value": ValueError("bad value"), "status": Conflict("in use")}[args["kind"]]
    c = _call([Argument("kind")], run=run)
    problem = _problem(registry.execute, c, {"kind": "value"})
    assert (problem.status, problem.detail) == (400, "bad value")
    problem = _problem(registry.execute, c, {"kind": "status"})
    assert (problem.status, problem.detail) == (409, "in use")
    with pytest.raises(ZeroDivisionError):
        registry.execute(_call(run=lambda a, u: 1 / 0), {})


def test_engine_load(engine):  # pylint: disable=redefined-outer-name
    assert registry.engine_load() == -1.0
    engine.running = True
    assert registry.engine_load() == 0.5


def test_maintenance_stops_and_restarts_engine(engine):  # pylint: disable=redefined-outer-name
    engine.running = True
    seen = []
    c = _call(flags=[registry.MAINTENANCE], run=lambda a, u: seen.append(engine.running) or "done")
    assert registry.execute(c, {}) == "done"
    assert seen == [False] and engine.running and engine.log == ["stop", "start"]
    # Not running before: not started afterwards.
    engine.running, engine.log = False, []
    registry.execute(c, {})
    assert engine.log == [] and not engine.running


def test_maintenance_restarts_engine_after_failure(engine):  # pylint: disable=redefined-outer-name
    engine.running = True
    c = _call(flags=[registry.MAINTENANCE], run=lambda a, u: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        registry.execute(c, {})
    assert engine.running and not registry.maintenance_busy()


def test_maintenance_is_exclusive(engine):  # pylint: disable=redefined-outer-name,unused-argument
    entered, release = threading.Event(), threading.Event()

    def slow(args, user):
        entered.set()
        release.wait(10)
        return "slow"
    c = _call(flags=[registry.MAINTENANCE], run=slow)
    results = []
    t = threading.Thread(target=lambda: results.append(registry.execute(c, {})))
    t.start()
    try:
        assert entered.wait(10)
        assert registry.maintenance_busy()
        p = _problem(registry.execute, c, {})
        assert p.status == 503 and "maintenance" in p.detail
        # Non-maintenance calls are not blocked.
        assert registry.execute(_call(), {}) == {}
    finally:
        release.set()
        t.join(10)
    assert results == ["slow"] and not registry.maintenance_busy()


def test_get_unknown_call_is_404():
    p = _problem(registry.get, "no_such_call")
    assert p.status == 404 and p.title == "Nothing matches the given URI"


def test_problem_dict_round_trip():
    p = Problem(503, "engine not running")
    assert Problem.from_dict(p.to_dict()).to_dict() == p.to_dict() == {
        "type": "about:blank", "status": 503, "title": "The server cannot process the request due to a high load",
        "detail": "engine not running", "instance": "about:blank"}


def test_delegated_call_not_available_is_503(monkeypatch):
    from mini_buildd.api import calls  # pylint: disable=import-outside-toplevel
    run = calls._delegate("mini_buildd.no_such_module_for_test", "ls")  # pylint: disable=protected-access
    assert _problem(run, {}, None).status == 503
    run = calls._delegate("mini_buildd.api.registry", "no_such_function")  # pylint: disable=protected-access
    p = _problem(run, {}, None)
    assert p.status == 503 and "mini_buildd.api.registry.no_such_function" in p.detail
    # Present: called with the arguments (and the user when asked for).
    fake = types.ModuleType("mini_buildd_fake_domain")
    fake.migrate = lambda **kwargs: kwargs
    monkeypatch.setitem(__import__("sys").modules, "mini_buildd_fake_domain", fake)
    assert calls._delegate("mini_buildd_fake_domain", "migrate", with_user=True)({"source": "x"}, "u") == \
        {"source": "x", "user": "u"}  # pylint: disable=protected-access


def test_client_endpoint_parsing():
    from mini_buildd.api.client import parse_endpoint, ClientError  # pylint: disable=import-outside-toplevel
    assert parse_endpoint("http://admin@host:8066") == ("http://host:8066", "admin")
    assert parse_endpoint("https://host:8066/") == ("https://host:8066", None)
    assert parse_endpoint("tcp:host=example.org:port=8066") == ("http://example.org:8066", None)
    assert parse_endpoint("staff@tls:host=example.org:port=8443") == ("https://example.org:8443", "staff")
    with pytest.raises(ClientError):
        parse_endpoint("ftp://host:21")
    with pytest.raises(ClientError):
        parse_endpoint("unix:/tmp/x")
