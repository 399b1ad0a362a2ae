"""Django forms generated from the API call registry: :func:`form_class` makes one
:class:`CallForm` subclass per call, with an :class:`ArgumentField` per
:class:`mini_buildd.api.registry.Argument` (its widget from the argument type and choices;
default and help from its definition) and a :class:`ConfirmField` for confirmable calls; the
widgets render with our templates (``mini_buildd/forms/widgets/``). Values are the argument's
strings as given (what the HTTP API gets): a field converts them with the registry (its error
messages), and the call runs through :func:`mini_buildd.api.registry.execute`; an argument error
from there is shown next to the field of the argument it names (``Problem.argument``).

Used by the API pages and the setup page (:mod:`mini_buildd.webapp.views_forms`) and the profile
page (:mod:`mini_buildd.webapp.views_account`). The registry is the only definition of a call's
arguments.
"""

import functools
import json
import logging

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS
from django.forms import renderers
from django.forms.utils import ErrorDict

from mini_buildd.api import registry

LOG = logging.getLogger(__name__)

#: Hidden field marking a submitted form (so an empty submission still runs the call).
SUBMIT_MARKER = "mbd_run"

_INPUT = "mini_buildd/forms/widgets/input.html"


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


def given_values(data, name):
    """The strings given for ``name`` in ``data`` (a query: ``get``/``getlist``), without the
    server default marker; None when ``name`` is not there at all."""
    if name not in data:
        return None
    return [v for v in data.getlist(name) if v != registry.SERVER_DEFAULT_MARKER]


def initial_values(argument):
    """The strings an unbound form shows for ``argument``: its default (none for required ones)."""
    if argument.required:
        return []
    try:
        default = argument.get_default()
    except Exception as e:  # pylint: disable=broad-except  # request boundary: the form renders without the default
        LOG.warning("Default of argument '%s' not available: %s", argument.identity, e)
        return []
    if default is None:
        return []
    if isinstance(default, list):
        return [str(v) for v in default]
    return [argument.to_query(default)]


def choices_now(argument):
    """The argument's choices now (strings), or None (none, or not available)."""
    try:
        choices = argument.get_choices()
    except Exception as e:  # pylint: disable=broad-except  # request boundary: the form renders without the choices
        LOG.warning("Choices of argument '%s' not available: %s", argument.identity, e)
        return None
    return None if choices is None else [str(c) for c in choices]


# ------------------------------------------------------------------------------------------------ widgets
class ArgumentWidget(forms.Widget):
    """Widget of an argument. Its value is the list of strings given (None: not given); the
    template gets them as ``widget.text`` (lists comma-separated)."""

    def __init__(self, argument, choices=None):
        super().__init__()
        self.argument = argument
        self.choices = choices

    def value_from_datadict(self, data, files, name):
        return given_values(data, name)

    def value_omitted_from_data(self, data, files, name):
        return name not in data

    def format_value(self, value):
        return [str(v) for v in value or []]

    def text(self, values):
        if self.argument.type == registry.LIST:
            return ",".join(v for v in values if v)
        return values[-1] if values else ""

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        context["widget"]["text"] = self.text(context["widget"]["value"])
        return context


class TextWidget(ArgumentWidget):
    """A one-line text input (also the base of the number and checkbox inputs)."""

    template_name = _INPUT
    input_type = "text"
    size = 60

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        context["widget"].update(type=self.input_type, size=self.size, checked=False)
        return context


class NumberWidget(TextWidget):
    input_type = "number"
    size = None


class CheckboxWidget(TextWidget):
    """A BOOL argument: checked when the last value given is a true word; submits ``True``."""

    input_type = "checkbox"
    size = None

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        values = context["widget"]["value"]
        context["widget"].update(text="True", checked=bool(values) and values[-1].strip().lower() in registry.TRUE_WORDS)
        return context


class TextareaWidget(ArgumentWidget):
    template_name = "mini_buildd/forms/widgets/textarea.html"


class SelectWidget(ArgumentWidget):
    """An argument with choices; a value given that is not a choice is kept (shown selected).
    Optional ones get an empty "(default)" entry."""

    template_name = "mini_buildd/forms/widgets/select.html"
    multiple = False

    def options(self, values):
        """(value, selected) pairs."""
        chosen = set()
        for v in values:
            if self.argument.type == registry.LIST:
                chosen.update(x.strip() for x in v.split(","))
            else:
                chosen.add(v)
        choices = self.choices or []
        extra = [c for c in sorted(chosen) if c and c not in choices]
        return [(c, c in chosen) for c in choices + extra]

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        options = self.options(context["widget"]["value"])
        context["widget"].update(options=options, multiple=self.multiple, size=min(len(options), 6) or 1,
                                 blank=not self.multiple and not self.argument.required)
        return context


class MultiSelectWidget(SelectWidget):
    """A LIST argument with choices."""

    multiple = True


def widget_for(argument, choices):
    """The widget of ``argument`` with ``choices`` (None: no choices)."""
    if argument.type == registry.BOOL:
        return CheckboxWidget(argument)
    if argument.type == registry.TEXT:
        return TextareaWidget(argument)
    if choices is not None:
        return (MultiSelectWidget if argument.type == registry.LIST else SelectWidget)(argument, choices)
    if argument.type == registry.INT:
        return NumberWidget(argument)
    return TextWidget(argument)


class ConfirmWidget(forms.Widget):
    """The confirmation checkbox: submits the call's name."""

    template_name = _INPUT

    def __init__(self, call_name):
        super().__init__()
        self.call_name = call_name

    def value_from_datadict(self, data, files, name):
        return data.get(name)

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        context["widget"].update(type="checkbox", text=self.call_name, checked=value == self.call_name, size=None)
        return context


# ------------------------------------------------------------------------------------------------ fields
class ArgumentField(forms.Field):
    """One argument. The value is the list of strings given (None: not given); cleaning converts
    it with the registry (None: left out, the call's default applies). Required-ness is the
    argument's (checked here: a required argument given empty is passed on, as over HTTP)."""

    def __init__(self, argument):
        self.argument = argument
        super().__init__(required=False, widget=widget_for(argument, [] if argument.choices is not None else None),
                         label=argument.long or argument.short or argument.identity,
                         help_text=argument.help_text(with_choices=False),
                         initial=functools.partial(initial_values, argument))

    def query_values(self, value):
        """The strings ``value`` puts into the call's query, or None (left out)."""
        if value is None:
            return None
        if self.argument.required:
            return list(value)
        values = [v for v in value if v.strip()]
        return values or None

    def clean(self, value):
        values = self.query_values(value)
        if values is None:
            if self.argument.required:
                raise forms.ValidationError("This argument is required.", code="required")
            return None
        try:
            return self.argument.convert(values or [""])
        except registry.Problem as problem:
            raise forms.ValidationError(problem.detail, code="invalid") from problem

    def bound_data(self, data, initial):
        """Not given: the form shows the default."""
        return initial if data is None else data


class ConfirmField(forms.Field):
    """``confirm``: must be the call's name."""

    def __init__(self, call):
        self.call_name = call.name
        super().__init__(required=False, widget=ConfirmWidget(call.name), label="Confirm")

    def clean(self, value):
        if value != self.call_name:
            raise forms.ValidationError(f"Please confirm to run '{self.call_name}'.", code="required")
        return True


# ------------------------------------------------------------------------------------------------ forms
class CallForm(forms.Form):
    """Base of the form of one call (class attribute ``call``; see :func:`form_class`).

    Bound to submitted ``data``: the call is to be run (:meth:`run`); unbound: the form shows
    ``initial`` values (strings per argument identity, and ``confirm``) or the defaults.
    """

    default_renderer = renderers.TemplatesSetting  # our templates (the settings' engine)

    def __init__(self, data=None, initial=None, user=None):
        super().__init__(data=data, initial=initial)
        self.user = user
        self.allowed, self.not_allowed_reason = user_allowed(self.call, user)
        for argument in self.call.args:  # choices (and so the widget) are computed now
            self.fields[argument.identity].widget = widget_for(argument, choices_now(argument))

    @property
    def argument_fields(self):
        return [self[a.identity] for a in self.call.args]

    @property
    def confirm_field(self):
        return self["confirm"] if "confirm" in self.fields else None

    @property
    def confirmed(self):
        return self.is_bound and self.data.get("confirm") == self.call.name

    @property
    def error(self):
        """The form's error (not about one field) as text; empty if there is none."""
        return " ".join(self.non_field_errors())

    @property
    def field_errors(self):
        """``{field: error text}``."""
        return {name: " ".join(errors) for name, errors in self.errors.items() if name != NON_FIELD_ERRORS}

    def query(self):
        """The HTTP-style query (identity -> [str]) of the submitted values; empty optional values are left out (default)."""
        query = {}
        if self.is_bound:
            for a in self.call.args:
                values = self.fields[a.identity].query_values(given_values(self.data, a.identity))
                if values is not None:
                    query[a.identity] = values
        return query

    def hidden(self):
        """(name, value) pairs re-submitting the given values (follow-up forms)."""
        return [(identity, value) for identity, values in self.query().items() for value in values]

    def add_problem(self, problem):
        """Show a Problem of the call: next to the field of the argument it names, else as the form's error."""
        if self._errors is None:  # not validated (refused before): this is the only error shown
            self._errors, self.cleaned_data = ErrorDict(), {}  # pylint: disable=attribute-defined-outside-init
        field = getattr(problem, "argument", None)
        if field in self.fields:
            self.add_error(field, problem.detail)
        else:
            self.add_error(None, f"{problem.status} {problem.title}: {problem.detail}")

    def run(self):
        """Run the call via the registry. Returns (status, result or None); errors are kept in the form."""
        try:
            self.call.check_auth(self.user)
        except registry.Problem as problem:
            self.add_problem(problem)
            return problem.status, None
        if not self.is_valid():
            return 400, None
        try:
            return 200, registry.execute(self.call, self.query(), user=self.user, confirm=self.call.name if self.confirmed else None)
        except registry.Problem as problem:
            self.add_problem(problem)
            return problem.status, None
        except Exception as e:  # pylint: disable=broad-except  # request boundary: an internal error is a 500 answer, never a traceback
            LOG.exception("API call '%s' (web form): internal error", self.call.name)
            self.add_error(None, f"500 Internal error in API call '{self.call.name}': {type(e).__name__}: {e}")
            return 500, None


@functools.lru_cache(maxsize=None)
def form_class(call):
    """The :class:`CallForm` subclass of ``call``: a field per argument, plus ``confirm``."""
    fields = {a.identity: ArgumentField(a) for a in call.args}
    if call.needs_confirmation:
        fields["confirm"] = ConfirmField(call)
    return type(f"CallForm_{call.name}", (CallForm,), {"call": call, "__module__": __name__, **fields})


def call_form(call, data=None, user=None, initial=None):
    """The form of ``call`` for ``user``: bound to submitted ``data``, or unbound showing ``initial``."""
    return form_class(call)(data=data, initial=initial, user=user)


def filled_in(call, data, user=None):
    """An unbound form of ``call`` showing the values in ``data`` (a query; others: defaults)."""
    initial = {a.identity: given_values(data, a.identity) for a in call.args if a.identity in data}
    if "confirm" in data:
        initial["confirm"] = data.get("confirm")
    return call_form(call, user=user, initial=initial)
