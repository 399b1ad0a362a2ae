"""The one exception hierarchy (:mod:`mini_buildd.errors`): every exception class of mini_buildd
derives from ``errors.Error``, and an API answer for an error carries its class's HTTP status
(registry and the Django view); 500s stay internal errors."""

import ast
import importlib
import inspect
import json
import pathlib
import pkgutil

import pytest

import mini_buildd
from mini_buildd import bootstrap, errors, events, net
from mini_buildd.api import registry
from mini_buildd.api.registry import Call, Problem
from mini_buildd.archive import operations
from mini_buildd.changes import ChangesError
from mini_buildd.pipeline import packager, ports, remotes
from mini_buildd.tools import call as call_mod, debdiff, debmirror, gnupg

ROOT = pathlib.Path(mini_buildd.__file__).resolve().parent

#: Builtin exception bases a class of ours may only use next to an errors class.
_BUILTIN_BASES = {"Exception", "BaseException", "ValueError", "RuntimeError", "OSError", "KeyError", "LookupError",
                  "TypeError", "IOError", "EnvironmentError"}


def _modules():
    for info in pkgutil.walk_packages([str(ROOT)], "mini_buildd."):
        if info.name.endswith("__main__") or ".migrations" in info.name:
            continue
        yield info.name


def _exception_classes():
    found = {}
    for name in _modules():
        module = importlib.import_module(name)
        for _attr, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith("mini_buildd."):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_every_exception_class_derives_from_error():
    classes = _exception_classes()
    assert len(classes) >= 30, sorted(classes)
    outside = sorted(name for name, cls in classes.items() if not issubclass(cls, errors.Error))
    assert not outside, f"not derived from mini_buildd.errors.Error: {outside}"


def test_no_class_derives_from_a_builtin_exception_alone():
    """Also classes defined inside functions (the import scan above does not see them)."""
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.name == "errors.py" and path.parent == ROOT:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            names = [b.id for b in node.bases if isinstance(b, ast.Name)]
            ours = [b for b in node.bases if isinstance(b, ast.Attribute) and isinstance(b.value, ast.Name) and b.value.id == "errors"]
            if set(names) & _BUILTIN_BASES and not ours:
                offenders.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name}")
    assert not offenders, offenders


def test_problem_dict():
    assert errors.problem_dict(404, "nothing") == {"type": "about:blank", "status": 404, "title": "Nothing matches the given URI",
                                                   "detail": "nothing", "instance": "about:blank"}
    assert list(errors.problem_dict(400, "x", title="Upload rejected")) == ["type", "status", "title", "detail", "instance"]
    assert errors.problem_dict(400, "x", title="Upload rejected")["title"] == "Upload rejected"
    assert Problem(409, "in use").to_dict() == errors.problem_dict(409, "in use")


def test_http_status():
    assert errors.http_status(errors.Conflict("x")) == 409
    assert errors.http_status(ValueError("x")) == 400
    assert errors.http_status(KeyError("x")) == 500
    assert errors.http_status(Problem(418, "x")) == 418


# ------------------------------------------------------------------------------------------------ API answers
#: Error classes whose API answer is a problem with the class's status.
ANSWERED = [errors.BadRequest, errors.Unauthorized, errors.Forbidden, errors.NotFound, errors.Conflict, errors.Unavailable,
            errors.Refused, ports.PortError, operations.ArchiveError, packager.Rejected, debdiff.DebdiffError,
            debmirror.DebmirrorError, net.EndpointError, bootstrap.SetupError, events.Shutdown, events.TooManyClients,
            remotes.HandshakeRefused]

#: Error classes (status 500) that stay internal errors: they propagate unchanged (the view answers 500).
INTERNAL = [lambda: errors.Error("boom"), lambda: errors.ToolError("boom"), lambda: errors.ConfigError("boom"),
            lambda: call_mod.CallError(["false"], 1, "boom"), lambda: gnupg.GnupgError("boom"), lambda: ChangesError("boom"),
            lambda: remotes.RemoteError("boom")]


def _raising(exception, name="testcall"):
    def run(_args, _user):
        raise exception
    return Call(name, run, doc="A test call")


@pytest.mark.parametrize("cls", ANSWERED, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_api_answer_carries_the_class_status(cls):
    assert 400 <= cls.http_status < 600 and cls.http_status != 500
    with pytest.raises(Problem) as e:
        registry.execute(_raising(cls("what went wrong")), {})
    assert (e.value.status, e.value.detail) == (cls.http_status, "what went wrong")
    assert e.value.to_dict()["status"] == cls.http_status


@pytest.mark.parametrize("make", INTERNAL)
def test_internal_errors_propagate(make):
    exception = make()
    assert exception.http_status == 500
    with pytest.raises(type(exception)) as e:
        registry.execute(_raising(exception), {})
    assert e.value is exception


@pytest.fixture
def api_call():
    """Register test calls (name -> exception) for the Django view; removed afterwards."""
    added = []

    def add(name, exception):
        registry.register(_raising(exception, name))
        added.append(name)
    yield add
    for name in added:
        registry.CALLS.pop(name, None)


@pytest.fixture
def api_client():
    """A Django test client that the instance's ALLOWED_HOSTS accept."""
    from django.conf import settings  # pylint: disable=import-outside-toplevel
    from django.test import Client, override_settings  # pylint: disable=import-outside-toplevel
    with override_settings(ALLOWED_HOSTS=[*settings.ALLOWED_HOSTS, "testserver"]):
        yield Client()


def test_http_answer_carries_the_class_status(db, api_call, api_client):  # pylint: disable=redefined-outer-name,unused-argument
    api_call("test_errors_conflict", errors.Conflict("in use"))
    api_call("test_errors_rejected", packager.Rejected("not signed"))
    api_call("test_errors_tool", errors.ToolError("tool broke"))
    r = api_client.get("/mini_buildd/api/test_errors_conflict/")
    assert (r.status_code, r["Content-Type"]) == (409, "application/problem+json")
    assert json.loads(r.content) == errors.problem_dict(409, "in use")
    r = api_client.get("/mini_buildd/api/test_errors_rejected/")
    assert r.status_code == 400 and json.loads(r.content)["detail"] == "not signed"
    r = api_client.get("/mini_buildd/api/test_errors_tool/")
    body = json.loads(r.content)
    assert r.status_code == 500 and body["detail"] == "Internal error in API call 'test_errors_tool': ToolError: tool broke"
