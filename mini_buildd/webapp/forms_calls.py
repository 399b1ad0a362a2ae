"""HTML forms generated from the API call registry: one :class:`CallForm` per call, with a field
per :class:`mini_buildd.api.registry.Argument` (widget from the argument type; defaults, choices
and help from its definition), the per-field conversion and error attribution, and the
confirmation checkbox of confirmable calls.

Used by the API pages and the setup page (:mod:`mini_buildd.webapp.views_forms`) and the profile
page (:mod:`mini_buildd.webapp.views_account`). No Django form classes: the registry is the only
definition of a call's arguments.
"""

import json
import logging
import re

from mini_buildd.api import registry

LOG = logging.getLogger(__name__)

#: Hidden field marking a submitted form (so an empty submission still runs the call).
SUBMIT_MARKER = "mbd_run"

_ARG_RE = re.compile(r"Argument '(?P<identity>\w+)'")
_MISSING_RE = re.compile(r"Missing required argument: (?P<identity>\w+)")


def problem_field(call, problem):
    """The argument identity (or ``confirm``) a Problem from ``call`` is about, or None."""
    detail = str(problem.detail)
    if "needs to be confirmed" in detail:
        return "confirm"
    for regex in (_ARG_RE, _MISSING_RE):
        match = regex.search(detail)
        if match and any(a.identity == match["identity"] for a in call.args):
            return match["identity"]
    return None


def user_allowed(call, user):
    """(allowed, reason): may ``user`` run ``call``?"""
    try:
        call.check_auth(user)
    except registry.Problem:
        return False, f"Not allowed: needs {call.auth.name}" + ("" if getattr(user, "is_authenticated", False) else " (log in)")
    return True, ""


def pretty(value):
    """Result as text: strings as they are, everything else as indented JSON."""
    return value if isinstance(value, str) else json.dumps(value, indent=2)


class Field:
    """One argument as an HTML form field (what the template needs)."""

    def __init__(self, argument, raw=None, error=""):
        self.argument = argument
        self.name = argument.identity
        self.id = f"id_{argument.identity}"
        self.type = argument.type
        self.required = argument.required
        self.error = error
        self.option = argument.long or argument.short or argument.identity
        self.help = argument.help_text(with_choices=False)
        try:
            self.choices = argument.get_choices()
        except Exception as e:  # pylint: disable=broad-except  # request boundary: the form renders without the choices
            LOG.warning("Choices of argument '%s' not available: %s", argument.identity, e)
            self.choices = None
        self.values = self._initial() if raw is None else list(raw)
        if self.type == registry.BOOL:
            self.widget = "checkbox"
        elif self.type == registry.TEXT:
            self.widget = "textarea"
        elif self.choices is not None and self.type == registry.LIST:
            self.widget = "multiselect"
        elif self.choices is not None:
            self.widget = "select"
        elif self.type == registry.INT:
            self.widget = "number"
        else:
            self.widget = "text"

    def _initial(self):
        if self.required:
            return []
        try:
            default = self.argument.get_default()
        except Exception as e:  # pylint: disable=broad-except  # request boundary: the form renders without the default
            LOG.warning("Default of argument '%s' not available: %s", self.argument.identity, e)
            return []
        if default is None:
            return []
        if isinstance(default, list):
            return [str(v) for v in default]
        return [self.argument.to_query(default)]

    @property
    def value(self):
        """Text value (lists comma-separated)."""
        if self.type == registry.LIST:
            return ",".join(v for v in self.values if v)
        return self.values[-1] if self.values else ""

    @property
    def checked(self):
        return bool(self.values) and self.values[-1].strip().lower() in registry.TRUE_WORDS

    @property
    def options(self):
        """(value, selected) pairs for selects; a value given but not a choice is kept (shown selected)."""
        chosen = set()
        for v in self.values:
            if self.type == registry.LIST:
                chosen.update(x.strip() for x in v.split(","))
            else:
                chosen.add(v)
        choices = [str(c) for c in (self.choices or [])]
        extra = [c for c in sorted(chosen) if c and c not in choices]
        return [(c, c in chosen) for c in choices + extra]

    @property
    def blank_option(self):
        """Selects of optional choice arguments get an empty 'default' entry."""
        return self.widget == "select" and not self.required


class CallForm:
    """The form of one call, bound to submitted values (or unbound: defaults)."""

    def __init__(self, call, data=None, user=None):
        self.call = call
        self.bound = data is not None
        self.errors = {}
        self.error = ""
        self.allowed, self.not_allowed_reason = user_allowed(call, user)
        self.user = user
        self.confirmed = bool(data is not None and data.get("confirm") == call.name)
        self._raw = {}
        if data is not None:
            for a in call.args:
                if a.identity in data:
                    self._raw[a.identity] = [v for v in data.getlist(a.identity) if v != registry.SERVER_DEFAULT_MARKER]

    def query(self):
        """The HTTP-style query (identity -> [str]) of the given values; empty optional values are left out (default)."""
        query = {}
        for a in self.call.args:
            values = self._raw.get(a.identity, [])
            if not a.required:
                values = [v for v in values if v.strip()]
            if values or (a.required and a.identity in self._raw):
                query[a.identity] = values
        return query

    def validate(self):
        """Convert every given value; field errors go to :attr:`errors`. True when all is well."""
        query = self.query()
        for a in self.call.args:
            if a.identity in query:
                try:
                    a.convert(query[a.identity] or [""])
                except registry.Problem as problem:
                    self.errors[a.identity] = problem.detail
            elif a.required:
                self.errors[a.identity] = "This argument is required."
        if self.call.needs_confirmation and not self.confirmed:
            self.errors["confirm"] = f"Please confirm to run '{self.call.name}'."
        return not self.errors

    def add_problem(self, problem):
        field = problem_field(self.call, problem)
        if field is not None:
            self.errors[field] = problem.detail
        else:
            self.error = f"{problem.status} {problem.title}: {problem.detail}"

    def run(self):
        """Run the call via the registry. Returns (status, result or None); errors are kept in the form."""
        if not self.allowed:
            try:
                self.call.check_auth(self.user)
            except registry.Problem as problem:
                self.add_problem(problem)
                return problem.status, None
        if not self.validate():
            return 400, None
        try:
            return 200, registry.execute(self.call, self.query(), user=self.user, confirm=self.call.name if self.confirmed else None)
        except registry.Problem as problem:
            self.add_problem(problem)
            return problem.status, None
        except Exception as e:  # pylint: disable=broad-except  # request boundary: an internal error is a 500 answer, never a traceback
            LOG.exception("API call '%s' (web form): internal error", self.call.name)
            self.error = f"500 Internal error in API call '{self.call.name}': {type(e).__name__}: {e}"
            return 500, None

    @property
    def fields(self):
        return [Field(a, self._raw.get(a.identity) if self.bound else None, self.errors.get(a.identity, "")) for a in self.call.args]

    @property
    def confirm_error(self):
        return self.errors.get("confirm", "")

    def hidden(self):
        """(name, value) pairs re-submitting the given values (follow-up forms)."""
        return [(identity, value) for identity, values in self.query().items() for value in values]
