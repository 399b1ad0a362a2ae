"""The registry of API calls (upstream §4.1): what a call is (:class:`Call`), what its arguments are
(:class:`Argument`), authorization levels (:class:`Auth`), flags (:data:`CONFIRM`,
:data:`NEEDS_RUNNING`, :data:`MAINTENANCE`), the one error type every delivery layer turns into an
RFC 7807 problem (:class:`Problem`), what the HTTP fast path may cache (:class:`Cache`), and the
hooks to the engine (:func:`set_engine_hooks`).

Every call is defined once (in :mod:`mini_buildd.api.calls`); the HTTP view, the
``mini-buildd-api`` argparse sub-commands, and later web forms and docs are all generated from
the definitions kept here. This module imports no Django: argument values come in as strings
(HTTP query or command line) and are converted and checked here.

Execution order of one call (:func:`execute`): authorization (401/403; an API token's scope) ->
arguments (400; an API token's repository restriction: 403) ->
running engine (503) -> confirmation (400) -> maintenance lock (503 when busy) -> run.
"""

import argparse
import contextlib
import enum
import logging
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Optional, Union

from mini_buildd import errors

LOG = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------ types
STRING, URL, TEXT, CHOICE, INT, BOOL, LIST = "string", "url", "text", "choice", "int", "bool", "list"
TYPES = (STRING, URL, TEXT, CHOICE, INT, BOOL, LIST)

#: Value an (upstream) client may send meaning "use the server-side default".
SERVER_DEFAULT_MARKER = "<server_default>"

TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")

# ------------------------------------------------------------------------------------------------ flags
CONFIRM = "CONFIRM"
NEEDS_RUNNING = "NEEDS_RUNNING"
MAINTENANCE = "MAINTENANCE"
FLAGS = (CONFIRM, NEEDS_RUNNING, MAINTENANCE)

#: Documentation categories.
CONSUMER, DEVELOPER, ADMINISTRATOR = "Consumer", "Developer", "Administrator"
CATEGORIES = (CONSUMER, DEVELOPER, ADMINISTRATOR)

#: Query parameters that are not call arguments.
META_PARAMETERS = ("output", "confirm")

#: Arguments whose values are never logged (a webhook's secret).
SECRET_ARGUMENTS = ("secret",)


def redacted(query: Mapping[str, Any]) -> dict[str, Any]:
    """``query`` for a log line: the values of :data:`SECRET_ARGUMENTS` replaced by ``***``."""
    return {key: ("***" if key in SECRET_ARGUMENTS else value) for key, value in query.items()}


class Auth(enum.IntEnum):
    """Who may run a call (Django users: active login, ``is_staff``, ``is_superuser``)."""

    NONE = 0
    LOGIN = 1
    STAFF = 2
    ADMIN = 3


class Problem(errors.Error):
    """An API error with an HTTP status; rendered as RFC 7807 ``application/problem+json``.

    ``retry_after``: seconds for a ``Retry-After`` header (429, 503), or None."""

    def __init__(self, status: int, detail: str, title: Optional[str] = None, retry_after: Optional[int] = None) -> None:
        super().__init__(detail)
        self.http_status = self.status = int(status)
        self.detail = detail
        self.title = title or errors.status_title(self.status)  # as upstream (reference outputs)
        self.retry_after = retry_after
        #: The argument (identity, or ``confirm``) that caused it, if any (see :func:`argument_problem`).
        self.argument: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return errors.problem_dict(self.status, self.detail, title=self.title)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Problem":
        return cls(data.get("status", 500), data.get("detail", ""), title=data.get("title"))

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail}"


class NotAvailable(Problem):
    """The domain code of a call is not there (yet): 503."""

    def __init__(self, detail: str) -> None:
        super().__init__(503, detail)


def argument_problem(identity: str, detail: str) -> Problem:
    """Problem 400 caused by argument ``identity`` (or ``confirm``), named by its ``argument``
    attribute (web forms show the error next to that field)."""
    problem = Problem(400, detail)
    problem.argument = identity
    return problem


# ------------------------------------------------------------------------------------------------ arguments
class Argument:
    """One call argument.

    ``flags``: either one positional name (``"source"``, always required), or option strings
    (``"--with-repositories", "-R"``). The *identity* (HTTP query name, ``run()`` key) is the first
    flag without dashes, ``-`` replaced by ``_``.

    ``default`` is a static default (of the argument's Python type); ``server_default`` a callable
    computing it at request time (e.g. "all repositories"). ``choices`` is a sequence or a callable
    returning one (computed at request time); for lists every element must be a choice.
    """

    def __init__(self, *flags: str, type: str = STRING, doc: str = "", default: Any = None,  # pylint: disable=redefined-builtin
                 server_default: Optional[Callable[[], Any]] = None, choices: Union[Sequence[Any], Callable[[], Iterable[Any]], None] = None,
                 required: Optional[bool] = None, metavar: Optional[str] = None) -> None:
        if not flags:
            raise ValueError("Argument needs a name or option strings")
        if type not in TYPES:
            raise ValueError(f"Unknown argument type '{type}'")
        if type == CHOICE and choices is None:
            raise ValueError(f"Choice argument {flags[0]} needs choices")
        self.flags = tuple(flags)
        self.positional = not flags[0].startswith("-")
        if self.positional and len(flags) > 1:
            raise ValueError(f"Positional argument {flags[0]} can't have option strings")
        if not self.positional and not all(f.startswith("-") for f in flags):
            raise ValueError(f"Option {flags[0]}: all option strings must start with '-'")
        self.identity = flags[0].lstrip("-").replace("-", "_")
        self.type = type
        self.doc = doc
        self.required = True if self.positional else bool(required)
        self.server_default = server_default
        self.choices = choices
        self.metavar = metavar
        if default is None and not self.required:
            default = {BOOL: False, LIST: []}.get(type)
        self.default = default

    def __repr__(self) -> str:
        return f"Argument({', '.join(self.flags)}: {self.type})"

    @property
    def long(self) -> Optional[str]:
        return None if self.positional else next((f for f in self.flags if f.startswith("--")), None)

    @property
    def short(self) -> Optional[str]:
        return None if self.positional else next((f for f in self.flags if not f.startswith("--")), None)

    def get_choices(self) -> Optional[list[Any]]:
        """Choices now (calls the choices function), or None."""
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)

    def get_default(self) -> Any:
        """Default now (calls the server default function)."""
        if self.server_default is not None:
            return self.server_default()
        return list(self.default) if isinstance(self.default, list) else self.default

    # -------------------------------------------------------------------------- conversion
    def _error(self, message: str) -> Problem:
        return argument_problem(self.identity, f"Argument '{self.identity}': {message}")

    def convert(self, raw_values: Iterable[object]) -> Any:
        """Python value from the string value(s) given (HTTP: all values of the parameter)."""
        texts = [str(v) for v in raw_values]
        value: Any
        if self.type == LIST:
            value = [item.strip() for raw in texts for item in raw.split(",") if item.strip()]
        else:
            raw = texts[-1]
            if self.type == BOOL:
                word = raw.strip().lower()
                if word in TRUE_WORDS:
                    value = True
                elif word in FALSE_WORDS:
                    value = False
                else:
                    raise self._error(f"not a boolean: '{raw}' (use True or False)")
            elif self.type == INT:
                try:
                    value = int(raw.strip())
                except ValueError:
                    raise self._error(f"not an integer: '{raw}'") from None
            elif self.type == URL:
                value = raw.strip()
                parsed = urllib.parse.urlsplit(value)
                if value and (not parsed.scheme or not (parsed.netloc or parsed.path)):
                    raise self._error(f"not a URL: '{raw}'")
            else:
                value = raw
        self.check_choices(value)
        return value

    def check_choices(self, value: Any) -> None:
        """Raise the argument's Problem 400 unless ``value`` (each element of a list) is a choice."""
        choices = self.get_choices()
        if choices is None:
            return
        for v in (value if isinstance(value, list) else [value]):
            if v not in choices:
                raise self._error(f"'{v}' is not a valid choice (choose from: {', '.join(str(c) for c in choices) or 'nothing available'})")

    def to_query(self, value: Any) -> str:
        """String form of a Python value for the HTTP query (inverse of :meth:`convert`)."""
        if self.type == LIST:
            items = value if isinstance(value, (list, tuple)) else [value]
            return ",".join(str(i) for i in items)
        if self.type == BOOL:
            return "True" if value else "False"
        return str(value)

    # -------------------------------------------------------------------------- argparse
    @property
    def dest(self) -> str:
        """argparse destination (prefixed: never clashes with the client's own options)."""
        return f"mbdarg_{self.identity}"

    def help_text(self, with_choices: bool = True) -> str:
        """The argument's help: its doc, its choices (static ones, if ``with_choices``) and its default."""
        parts = [self.doc] if self.doc else []
        if with_choices and isinstance(self.choices, (list, tuple)):
            parts.append(f"choices: {', '.join(str(c) for c in self.choices)}")
        if self.server_default is not None:
            parts.append("default: computed by the server")
        elif not self.required and self.default not in (None, False, [], ""):
            parts.append(f"default: {self.to_query(self.default)}")
        return "; ".join(parts)

    def add_to_parser(self, parser: argparse.ArgumentParser) -> None:
        """Add the argument to an argparse parser (destination :attr:`dest`)."""
        help_text = self.help_text().replace("%", "%%")
        kwargs: dict[str, Any]
        if self.positional:
            kwargs = {"metavar": self.metavar or self.identity, "help": help_text}
            if self.type == LIST:
                kwargs["nargs"] = "+"
            elif self.type == INT:
                kwargs["type"] = int
            parser.add_argument(self.dest, **kwargs)
            return
        kwargs = {"dest": self.dest, "help": help_text, "default": argparse.SUPPRESS}
        if self.type == BOOL:
            kwargs["action"] = "store_true"
        else:
            kwargs["metavar"] = self.metavar or self.identity.upper()
            if self.type == LIST:
                kwargs["nargs"] = "+"
                kwargs["action"] = "extend"
            elif self.type == INT:
                kwargs["type"] = int
            if self.required:
                kwargs["required"] = True
        parser.add_argument(*self.flags, **kwargs)

    def describe(self) -> dict[str, Any]:
        choices = self.choices if isinstance(self.choices, (list, tuple)) else None
        return {"identity": self.identity, "flags": list(self.flags), "type": self.type, "doc": self.doc,
                "required": self.required, "default": None if self.server_default else self.default,
                "server_default": self.server_default is not None, "choices": choices,
                "computed_choices": callable(self.choices)}


# ------------------------------------------------------------------------------------------------ caching
class Cache:
    """How the HTTP fast path (:mod:`mini_buildd.api.fastpath`) may answer a call from a cache.

    Only for :attr:`Auth.NONE` calls, and only their default ``output=json``. A cached result is
    always dropped when any mini-buildd model is saved or deleted, and when the engine starts or
    stops. Besides:

    ``max_age``: seconds a result may be served after it was computed (None: no time limit).
    ``repositories``: the result depends on the packages in the repositories: dropped as soon as
    any repository's reprepro database changes.
    """

    def __init__(self, max_age: Optional[float] = None, repositories: bool = False) -> None:
        if max_age is not None and max_age <= 0:
            raise ValueError(f"Cache max_age must be > 0: {max_age}")
        self.max_age = max_age
        self.repositories = bool(repositories)

    def __repr__(self) -> str:
        return f"Cache(max_age={self.max_age}, repositories={self.repositories})"


# ------------------------------------------------------------------------------------------------ calls
class Call:
    """One API call: name, doc, category, arguments, authorization, flags and the function.

    ``run(args, request_user)`` gets a dict ``{identity: value}`` with every argument (defaults
    filled in) and the Django user (or None); it returns JSON-able data.

    ``cache``: a :class:`Cache` if the HTTP fast path may cache the JSON result (NONE calls only).
    """

    def __init__(self, name: str, run: Callable[[dict[str, Any], Any], Any], doc: str = "", category: str = CONSUMER,
                 args: Iterable[Argument] = (), auth: Union[Auth, int] = Auth.NONE, flags: Iterable[str] = (), result_doc: str = "",
                 cache: Optional[Cache] = None) -> None:
        unknown = set(flags) - set(FLAGS)
        if unknown:
            raise ValueError(f"Call {name}: unknown flags {unknown}")
        if category not in CATEGORIES:
            raise ValueError(f"Call {name}: unknown category {category}")
        self.name = name
        self.run = run
        self.doc = doc.strip()
        self.category = category
        self.args = list(args)
        self.auth = Auth(auth)
        self.flags = frozenset(flags)
        self.result_doc = result_doc.strip()
        if cache is not None and (not isinstance(cache, Cache) or self.auth != Auth.NONE or self.flags):
            raise ValueError(f"Call {name}: only NONE calls without flags can be cached (cache={cache!r})")
        self.cache = cache
        identities = [a.identity for a in self.args]
        if len(set(identities)) != len(identities):
            raise ValueError(f"Call {name}: duplicate argument identities {identities}")

    def __repr__(self) -> str:
        return f"Call({self.name})"

    @property
    def summary(self) -> str:
        return self.doc.splitlines()[0] if self.doc else ""

    @property
    def needs_confirmation(self) -> bool:
        return CONFIRM in self.flags

    @property
    def needs_running(self) -> bool:
        return NEEDS_RUNNING in self.flags

    @property
    def is_maintenance(self) -> bool:
        return MAINTENANCE in self.flags

    def arg(self, identity: str) -> Argument:
        return next(a for a in self.args if a.identity == identity)

    # -------------------------------------------------------------------------- checks
    def check_auth(self, user: Any) -> None:
        """Raise Problem 401 (not logged in) or 403 (logged in, not enough rights; or the scope of the
        API token the user comes with does not allow the call: see :mod:`mini_buildd.tokens`)."""
        token_refusal = getattr(user, "mbd_token_refusal", None)
        reason = token_refusal(self) if token_refusal is not None else None
        if reason:
            raise Problem(403, reason)
        if self.auth == Auth.NONE:
            return
        detail = f"API call '{self.name}' needs authorization: {self.auth.name}"
        if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
            raise Problem(401, detail)
        superuser = getattr(user, "is_superuser", False)
        if self.auth == Auth.STAFF and not (getattr(user, "is_staff", False) or superuser):
            raise Problem(403, detail)
        if self.auth == Auth.ADMIN and not superuser:
            raise Problem(403, detail)

    def parse_query(self, query: Mapping[str, Any]) -> dict[str, Any]:
        """``{identity: value}`` from ``{name: str | [str, ...]}`` (meta parameters ignored)."""
        given: dict[str, list[str]] = {}
        for key, values in query.items():
            if key in META_PARAMETERS:
                continue
            given[key] = [str(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
        known = {a.identity for a in self.args}
        unknown = sorted(set(given) - known)
        if unknown:
            raise Problem(400, f"Unknown argument(s) for API call '{self.name}': {', '.join(unknown)}")
        result: dict[str, Any] = {}
        for a in self.args:
            values = [v for v in given.get(a.identity, []) if v != SERVER_DEFAULT_MARKER]
            if values:
                result[a.identity] = a.convert(values)
            elif a.required:
                raise argument_problem(a.identity, f"Missing required argument: {a.identity}: given=None, _default=None")
            else:
                result[a.identity] = a.get_default()
        return result

    def check_confirm(self, confirm: Optional[str]) -> None:
        if self.needs_confirmation and confirm != self.name:
            raise argument_problem("confirm", f"API call '{self.name}' needs to be confirmed (add confirm={self.name})")

    # -------------------------------------------------------------------------- command line
    def add_parser(self, subparsers: Any, parents: Iterable[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
        """The call's sub-command parser in ``subparsers`` (its arguments: :meth:`add_arguments`)."""
        p = subparsers.add_parser(self.name, help=self.summary, description=self.help_text(),
                                  formatter_class=argparse.RawDescriptionHelpFormatter, parents=list(parents))
        p.set_defaults(call=self.name)
        return p

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        for a in self.args:
            a.add_to_parser(parser)

    def query_from_namespace(self, namespace: argparse.Namespace) -> dict[str, str]:
        """HTTP query dict (strings) of the arguments given on the command line (absent ones left out)."""
        query: dict[str, str] = {}
        for a in self.args:
            if hasattr(namespace, a.dest):
                query[a.identity] = a.to_query(getattr(namespace, a.dest))
        return query

    def parse_argv(self, argv: Sequence[str]) -> dict[str, str]:
        """HTTP query dict from this call's command line arguments (no endpoint): for tests and tools."""
        p = argparse.ArgumentParser(prog=self.name, add_help=False, exit_on_error=False)
        self.add_arguments(p)
        try:
            ns = p.parse_args(argv)
        except (argparse.ArgumentError, SystemExit) as e:
            raise Problem(400, f"API call '{self.name}': bad command line {argv}: {e}") from None
        return self.query_from_namespace(ns)

    def help_text(self) -> str:
        """The call's help: doc, result, authorization and flags."""
        lines = [self.doc or self.name, ""]
        if self.result_doc:
            lines += ["Result: " + self.result_doc, ""]
        flags = [f for f in FLAGS if f in self.flags]
        lines.append(f"Authorization: {self.auth.name}" + (f"; flags: {', '.join(flags)}" if flags else ""))
        if self.is_maintenance:
            lines.append("This is a MAINTENANCE call: the engine is stopped while it runs (ongoing builds are canceled).")
        return "\n".join(lines)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "doc": self.doc, "category": self.category, "auth": self.auth.name,
                "flags": [f for f in FLAGS if f in self.flags], "result": self.result_doc,
                "args": [a.describe() for a in self.args]}


#: All calls by name, in definition order.
CALLS: dict[str, Call] = {}


def register(call: Call) -> Call:
    if call.name in CALLS:
        raise ValueError(f"API call '{call.name}' defined twice")
    CALLS[call.name] = call
    return call


def domain_functions() -> dict[str, Any]:
    """The domain functions the delegating calls expect: call name -> (module, function, gets user)
    (see :func:`mini_buildd.api.calls._delegate`)."""
    return {c.name: c.run.domain for c in CALLS.values() if hasattr(c.run, "domain")}


def get(name: str) -> Call:
    """The call ``name``; Problem 404 if there is none."""
    try:
        return CALLS[name]
    except KeyError:
        raise Problem(404, f"No such API call: '{name}'") from None


# ------------------------------------------------------------------------------------------------ engine hooks
def _services_engine() -> Any:
    try:
        from mini_buildd import services  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    return getattr(services, "engine", None)


def _default_is_running() -> bool:
    engine = _services_engine()
    return bool(engine is not None and getattr(engine, "running", False))


def _default_stop() -> None:
    engine = _services_engine()
    if engine is None:
        raise NotAvailable("There is no engine in this process")
    engine.stop()


def _default_start() -> None:
    engine = _services_engine()
    if engine is None:
        raise NotAvailable("There is no engine in this process")
    engine.start()


def _default_load() -> float:
    engine = _services_engine()
    return float(getattr(engine, "load", 0.0)) if engine is not None else -1.0


_DEFAULT_HOOKS: dict[str, Callable[[], Any]] = {"is_running": _default_is_running, "stop": _default_stop, "start": _default_start, "load": _default_load}
_HOOKS = dict(_DEFAULT_HOOKS)


def set_engine_hooks(is_running: Callable[[], bool], stop: Callable[[], Any], start: Callable[[], Any],
                     load: Optional[Callable[[], float]] = None) -> None:
    """Connect the calls to an engine: ``is_running() -> bool``, ``stop()``, ``start()``, ``load() -> float``.

    Without this, the engine in :mod:`mini_buildd.services` (if any) is used.
    """
    _HOOKS.update(is_running=is_running, stop=stop, start=start,
                  load=load or (lambda: 0.0 if is_running() else -1.0))


def reset_engine_hooks() -> None:
    _HOOKS.update(_DEFAULT_HOOKS)


def engine_is_running() -> bool:
    return bool(_HOOKS["is_running"]())


def engine_load() -> float:
    """Build load (>= 0) while the engine runs, -1 when it does not."""
    if not engine_is_running():
        return -1.0
    return float(_HOOKS["load"]())


def engine_start() -> None:
    _HOOKS["start"]()


def engine_stop() -> None:
    _HOOKS["stop"]()


_MAINTENANCE_LOCK = threading.Lock()


@contextlib.contextmanager
def maintenance(name: str) -> Iterator[None]:
    """Hold the global maintenance lock (503 when busy), the engine stopped while inside."""
    if not _MAINTENANCE_LOCK.acquire(blocking=False):  # pylint: disable=consider-using-with
        raise Problem(503, f"API call '{name}': another maintenance call is running, try again later")
    try:
        was_running = engine_is_running()
        if was_running:
            LOG.info("Maintenance call '%s': stopping the engine.", name)
            engine_stop()
        try:
            yield
        finally:
            if was_running:
                LOG.info("Maintenance call '%s' done: starting the engine again.", name)
                try:
                    engine_start()
                except Exception as e:  # pylint: disable=broad-except  # clean-up: the call's own outcome must stand
                    LOG.error("Restarting the engine after '%s' failed: %s", name, e)
    finally:
        _MAINTENANCE_LOCK.release()


def maintenance_busy() -> bool:
    return _MAINTENANCE_LOCK.locked()


# ------------------------------------------------------------------------------------------------ execution
def as_problem(exception: BaseException) -> Optional[Problem]:
    """Problem for an exception: a Problem as is; else one with the status :func:`mini_buildd.errors.http_status`
    gives it (an :class:`mini_buildd.errors.Error`'s class status, 400 for other ``ValueError``), unless that is
    500: None then (an internal error, left to propagate)."""
    if isinstance(exception, Problem):
        return exception
    status = errors.http_status(exception)
    if status == 500 or not 400 <= status < 600:
        return None
    return Problem(status, str(exception))


def execute(call: Call, query: Mapping[str, Any], user: Any = None, confirm: Optional[str] = None) -> Any:
    """Run ``call`` for ``user`` with the string ``query``; return its result or raise Problem.

    Exceptions that are not user errors (see :func:`as_problem`) propagate unchanged.
    """
    call.check_auth(user)
    args = call.parse_query(query)
    token_restrict = getattr(user, "mbd_token_restrict", None)
    if token_restrict is not None:  # an API token restricted to repositories (mini_buildd.tokens)
        try:
            args = token_restrict(call, query, args)
        except errors.Error as e:
            raise Problem(errors.http_status(e), str(e)) from e
    if call.needs_running and not engine_is_running():
        raise Problem(503, f"API call '{call.name}' needs a running engine: start it first")
    call.check_confirm(confirm)
    try:
        if call.is_maintenance:
            with maintenance(call.name):
                return call.run(args, user)
        return call.run(args, user)
    except (errors.Error, ValueError) as e:
        problem = as_problem(e)
        if problem is None or problem is e:
            raise
        raise problem from e
