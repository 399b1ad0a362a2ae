"""Views of the form pages: the API index and one form page per call (``/mini_buildd/api/``,
``/mini_buildd/api/<call>/?output=html``) and the setup page (``/mini_buildd/setup/``).

The API URLs stay the HTTP API of :mod:`mini_buildd.api.http`: every request that is not an HTML
page request (``output`` other than ``html``, other methods, unknown calls) is handed to it
unchanged. An HTML call page shows the call's form; it runs the call (through
:func:`mini_buildd.api.registry.execute`) when the form was submitted (a ``POST`` with Django's CSRF
token), or, for calls that change nothing (auth ``NONE``), on a ``GET`` with arguments or right away
when the call needs neither arguments nor confirmation (as the plain ``output=html`` always did). A
``GET`` with arguments of a state-changing call only fills in the form.
"""

import json
import logging
import urllib.parse

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import FieldDoesNotExist
from django.shortcuts import render

from mini_buildd import bootstrap as mbd_setup, config, models
from mini_buildd.api import http as api_http, registry
from mini_buildd.webapp import forms_calls

LOG = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ API pages
def api_index(request):
    """``/mini_buildd/api/``: every call by category with its authorization (HTML); other outputs as the API."""
    if request.method not in ("GET", "HEAD") or request.GET.get("output", "html") != "html":
        return api_http.index_view(request)
    categories = []
    for category in registry.CATEGORIES:
        entries = []
        for call in (c for c in registry.CALLS.values() if c.category == category):
            allowed, reason = forms_calls.user_allowed(call, request.user)
            entries.append({"call": call, "allowed": allowed, "reason": reason,
                            "flags": [f for f in registry.FLAGS if f in call.flags],
                            "synopsis": " ".join(a.identity if a.positional else f"[{a.long or a.short}]" for a in call.args)})
        categories.append({"name": category, "entries": entries})
    return render(request, "mini_buildd/forms/api_index.html", {"categories": categories})


def _wants_run(request, call):
    if any(key != "output" for key in request.GET):
        return True
    return not any(a.required for a in call.args) and not call.needs_confirmation


def _html_request(request):
    data = request.POST if request.method == "POST" else request.GET
    return request.method in ("GET", "HEAD", "POST") and data.get("output") == "html"


def api_call(request, name):
    """``/mini_buildd/api/<name>/?output=html``: the call's form (and result); other outputs as the API."""
    if not _html_request(request) or name not in registry.CALLS:
        return api_http.call_view(request, name)
    call = registry.CALLS[name]
    status, result, ran = 200, None, False
    changes_state = call.auth != registry.Auth.NONE
    if request.method == "POST" or (not changes_state and _wants_run(request, call)):
        data = request.POST if request.method == "POST" else request.GET
        form = forms_calls.call_form(call, data, request.user)
        who = f"{api_http._user_str(request)} from {api_http.client_address(request)}"  # pylint: disable=protected-access
        level = api_http.call_log_level(call)
        LOG.log(level, "API call '%s' by %s (web form): %s", name, who, registry.redacted(form.query()))
        try:
            with api_http.anonymous_bounds(request, call):
                status, result = form.run()
        except registry.Problem as problem:
            form.add_problem(problem)
            status, result = problem.status, None
        ran = status == 200
        LOG.log(level if ran else logging.WARNING, "API call '%s' by %s (web form): %s", name, who,
                "done." if ran else (form.error or form.field_errors))
    elif any(key != "output" for key in request.GET):
        form = forms_calls.filled_in(call, request.GET, request.user)  # not run: submitting POSTs it
    else:
        form = forms_calls.call_form(call, None, request.user)
    context = {"call": call, "form": form, "ran": ran, "result": forms_calls.pretty(result) if ran else "",
               "flags": [f for f in registry.FLAGS if f in call.flags], "status": status,
               "json_query": urllib.parse.urlencode(form.hidden() + [("output", "json")])
               if ran and not call.needs_confirmation and not changes_state else None}
    return render(request, "mini_buildd/forms/api_call.html", context, status=status)


# ------------------------------------------------------------------------------------------------ setup presets
def _list(values):
    return ",".join(values)


def current_options():
    """Setup options (string values) that regenerate the current configuration: the 'Current (inspect)' preset."""
    daemon = models.Daemon.get()
    distributions = list(models.Distribution.objects.select_related("base_source").order_by("base_source__codename"))
    chroots = models.Chroot.mbd_concrete_all()
    backends = {type(c).__name__.replace("Chroot", "") for c in chroots}
    return {
        "identity": daemon.identity,
        "ftp_endpoint": daemon.ftpd_bind,
        "archives": _list(models.Archive.objects.order_by("url").values_list("url", flat=True)),
        "sources": _list(d.codename for d in distributions),
        "distributions": _list(f"{d.codename}:{'+'.join(o.architecture_id for o in d.architectureoption_set.order_by('pk'))}"
                               for d in distributions if d.architectureoption_set.exists()),
        "repositories": _list(f"{r.identity}:{r.layout.name}:{'+'.join(d.codename for d in r.mbd_distributions())}"
                              for r in models.Repository.objects.select_related("layout").order_by("identity")),
        "chroots": _list(str(c) for c in chroots),
        "chroots_backend": next(iter(backends)) if len(backends) == 1 and backends <= set(mbd_setup.CHROOT_BACKENDS) else "Dir",
        "remotes": _list(models.Remote.objects.order_by("http").values_list("http", flat=True)),
    }


def _current_origins():
    origins = sorted(set(models.Distribution.objects.values_list("base_source__origin", flat=True)))
    return origins or ["Debian"]


def extend_options():
    """The 'Extend' preset: keep identity and FTP endpoint, add everything the origins and sources bring."""
    current = current_options()
    return {
        "identity": current["identity"], "ftp_endpoint": current["ftp_endpoint"],
        "from_origins": _list(_current_origins()),
        "archives_from_origins": "True", "sources_from_origins": "True", "distributions_from_sources": "True",
        "repositories_from_distributions": _list(f"{r.identity}:{r.layout.name}" for r in
                                                 models.Repository.objects.select_related("layout").order_by("identity")),
        "chroots_from_sources": "True", "chroots_backend": current["chroots_backend"],
    }


def bootstrap_options(origin="Debian"):
    """The 'Debian bootstrap' (or Ubuntu) preset: create and activate a complete setup from the host's apt sources
    of that origin (its own mirrors of the origin, not third-party archives)."""
    return {"update": "all", "pca": "all", "from_origins": origin, "archives_from_origins": "True",
            "sources_from_origins": "True", "distributions_from_sources": "True",
            "repositories_from_distributions": "test", "chroots_from_sources": "True"}


PRESETS = {
    "inspect": ("Current (inspect)", "Regenerates the options of the current configuration; without update and PCA "
                                     "it only shows what is there and what differs.", current_options),
    "extend": ("Extend", "Adds the codenames of the origins in use (sources, distributions, chroots) to the existing "
                         "repositories, which keep their distributions (set from_origins to e.g. 'Debian:lts' for more); run it, check "
                         "the report, then update + PCA.", extend_options),
    "bootstrap": ("Debian bootstrap", "Creates and activates a complete setup for the supported Debian codenames from "
                                      "this host's Debian mirrors (its apt sources of origin Debian), with a 'test' repository (makes chroots: takes long).",
                  bootstrap_options),
    "bootstrap_ubuntu": ("Ubuntu bootstrap", "The same for the supported Ubuntu codenames (the host's apt sources must "
                                             "have Ubuntu archives).", lambda: bootstrap_options("Ubuntu")),
}


class _Query(dict):
    """Minimal QueryDict stand-in (key -> list of strings) for preset and follow-up values."""

    def __init__(self, values=()):
        super().__init__((k, list(v) if isinstance(v, (list, tuple)) else [v]) for k, v in dict(values).items())

    def get(self, key, default=None):
        values = super().get(key)
        return values[-1] if values else default

    def getlist(self, key):
        return list(super().get(key, []))


def _inspect_file():
    """The last weekly inspection (``var/log/inspect.json``), or None."""
    try:
        path = config.paths.inspect_json
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    except (ValueError, OSError, AttributeError) as e:
        LOG.warning("Can't read the last inspection: %s", e)
        return None


def _setup_followup(data):
    """Query of a follow-up submission: the hidden options with update + pca set to 'all' or the selected hashes."""
    values = {key: data.getlist(key) for key in data if key not in ("csrfmiddlewaretoken", "followup", "selected")}
    if data.get("followup") == "selected":
        hashes = data.getlist("selected")
        if not hashes:
            return None
        values["update"] = values["pca"] = ",".join(hashes)
    else:
        values["update"] = values["pca"] = "all"
    return _Query(values)


#: The Daemon's limit fields (against anonymous resource exhaustion), shown on the setup page.
LIMIT_FIELDS = ("ftpd_max_file_size", "ftpd_max_session_size", "ftpd_max_connections_per_address", "min_free_disk",
                "http_max_request_body", "login_max_failures", "login_lockout", "anonymous_search_max_results",
                "anonymous_requests_per_minute")


def daemon_limits():
    """``[(field name, current value, default, help text)]`` of the Daemon's limits that exist."""
    daemon = models.Daemon.get()
    rows = []
    for name in LIMIT_FIELDS:
        try:
            field = models.Daemon._meta.get_field(name)  # pylint: disable=protected-access
        except FieldDoesNotExist:
            continue
        rows.append((name, getattr(daemon, name), field.get_default(), field.help_text))
    return rows


def setup(request):
    """``/mini_buildd/setup/`` (superusers): presets, the setup form, the report and the update + PCA follow-up."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not request.user.is_superuser:
        return render(request, "mini_buildd/error.html", {"status": 403, "title": "Forbidden",
                                                          "detail": "The setup page is for administrators (superusers) only."}, status=403)
    call = registry.CALLS["setup"]
    preset = request.GET.get("preset", "")
    status, result, error = 200, None, ""
    if request.method == "POST":
        data = request.POST
        if "followup" in data:
            data = _setup_followup(data)
        if data is None:
            error = "Select the instances to update and PCA (or use 'all')."
            form = forms_calls.filled_in(call, request.POST, request.user)
            status = 400
        else:
            form = forms_calls.call_form(call, data, request.user)
            LOG.info("Setup page: setup by %s: %s", request.user, form.query())
            status, result = form.run()
    elif preset in PRESETS:
        form = forms_calls.filled_in(call, _Query(PRESETS[preset][2]()), request.user)
    else:
        form = forms_calls.call_form(call, None, request.user)
    if result is not None:
        for inst in result["instances"]:
            inst["diff_lines"] = _diff_lines(inst.get("diff", {}))
    context = {"form": form, "call": call, "result": result, "error": error,
               "presets": [(key, label, doc) for key, (label, doc, _f) in PRESETS.items()], "preset": preset,
               "inspection": _inspect_file() if result is None else None, "limits": daemon_limits()}
    return render(request, "mini_buildd/forms/setup.html", context, status=status)


def _diff_lines(diff):
    lines = [f"{field}: {json.dumps(d.get('current'))} → {json.dumps(d.get('target'))}" for field, d in diff.get("setup", {}).items()]
    for field, d in diff.get("m2m", {}).items():
        if d.get("missing"):
            lines.append(f"{field}: missing {', '.join(map(str, d['missing']))}")
        if d.get("unknown"):
            lines.append(f"{field}: unknown {', '.join(map(str, d['unknown']))}")
    return lines
