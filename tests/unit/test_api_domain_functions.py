"""Every API call that delegates to a domain module finds its function, and the function takes
the call's arguments (a missing one would answer 503 "not available yet" at run time)."""

import importlib
import inspect

import pytest

from mini_buildd.api import registry


@pytest.mark.parametrize("name", sorted(registry.domain_functions()))
def test_domain_function_exists_and_takes_the_arguments(name):
    module, function, with_user = registry.domain_functions()[name]
    func = getattr(importlib.import_module(module), function, None)
    assert callable(func), f"{name}: {module}.{function} is missing"
    params = inspect.signature(func).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    wanted = [a.identity for a in registry.get(name).args] + (["user"] if with_user else [])
    assert takes_any or not set(wanted) - set(params), f"{name}: {module}.{function} lacks {set(wanted) - set(params)}"


def test_debmirror_destination(home):
    from mini_buildd.tools import debmirror  # pylint: disable=import-outside-toplevel
    assert debmirror.destination_path("~/debmirror/{}", "test") == home.home / "debmirror" / "test"
    assert str(debmirror.destination_path("/srv/mirror/{}", "test")) == "/srv/mirror/test"
    with pytest.raises(debmirror.DebmirrorError):
        debmirror.destination_path("relative/{}", "test")
