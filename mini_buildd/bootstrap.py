"""The ``setup`` operation (upstream §4.3): turn options into a target configuration, compare it with
the current model instances, optionally create/update them (``update``) and prepare, check and
activate them (``pca``), and report per instance.

This is the function behind the API call ``setup`` and the web setup page; its command line is
:mod:`mini_buildd.cli.setup`.

Extending an instance (as upstream 2.4): a distribution, repository or chroot spec may name a codename
this setup does not bring (not in ``sources``/``distributions``) when the configuration has it (its
Source, or its Distribution for repositories); only the given instances are then created or updated.
``repositories_from_distributions`` never drops an existing repository's distributions. A codename in
neither is a :class:`SetupError` (400).

Result: ``{"setup": <computed target>, "instances": [...], "report": {...}}``. Each instance has
``identity`` ({class, identifiers}), ``identity_hash`` (sha256 of the identity JSON, usable in
``update``/``pca`` selectors), ``identity_str``, ``diff`` ({setup: {field: {current, target}},
m2m: {field: {missing, unknown}}}), ``status`` (MISSING, EXISTS, ACTIVE, CHANGED, FAILED,
DEACTIVATED), ``status_severity`` and ``actions``.
"""

import concurrent.futures
import contextvars
import hashlib
import json
import logging

from mini_buildd import config, dist, errors, net
from mini_buildd.archive import release

LOG = logging.getLogger(__name__)

SEVERITY = {"ACTIVE": 0, "EXISTS": 0, "MISSING": 1, "CHANGED": 1, "DEACTIVATED": 2, "FAILED": 3}
SEVERITY_NAMES = {0: "none", 1: "notable", 2: "warning", 3: "error"}
CHROOT_BACKENDS = ("Dir", "File", "BtrfsSnapshot", "LVM", "LoopLVM", "Unshare")
ORIGINS = (dist.DEBIAN, dist.UBUNTU)


class SetupError(errors.BadRequest, ValueError):
    """Bad setup options (or an inconsistent current setup)."""


# ------------------------------------------------------------------------------------------------ options
#: (name, kind, default, help): the setup call's arguments; kinds: str, list, bool.
OPTIONS = (
    ("update", "str", "", "create missing / overwrite differing instances: '' (never), 'all', or comma-separated identity hashes"),
    ("pca", "str", "", "prepare, check and activate instances: '' (never), 'all', or comma-separated identity hashes"),
    ("identity", "str", "", "instance identity (default: keep current, or the host name)"),
    ("ftp_endpoint", "str", "", "FTP server endpoint (default: the HTTP endpoint with port + 1)"),
    ("from_origins", "list", [], "ORIGIN[:lts|all]: codenames for the *_from_origins options (Debian, Ubuntu)"),
    ("archives", "list", [], "archive URLs"),
    ("archives_from_apt_sources", "bool", False, "add the archives of this host's apt sources"),
    ("archives_from_origins", "bool", False, "add the archives of this host's apt sources whose Release Origin is an "
                                             "origin of --from-origins (the host's Debian or Ubuntu mirrors only)"),
    ("archives_from_proxy", "bool", False, "add the archives of an apt-cacher-ng proxy on this host"),
    ("sources", "list", [], "base source codenames (with their extra sources)"),
    ("sources_from_origins", "bool", False, "add the codenames of --from-origins to --sources"),
    ("distributions", "list", [], "CODENAME:ARCH[+ARCH...] ('native' = the host's native architectures; CODENAME of --sources "
                                  "or of an existing Source)"),
    ("distributions_from_sources", "bool", False, "a distribution (native architectures) for every source"),
    ("repositories", "list", [], "ID:LAYOUT:CODENAME[+CODENAME...] (CODENAMEs of --distributions or of existing Distributions; "
                                 "empty LAYOUT: the existing repository's, else Default)"),
    ("repositories_from_distributions", "list", [], "ID[:LAYOUT]: repositories with all setup distributions "
                                                    "(an existing repository keeps its own too)"),
    ("chroots", "list", [], "CODENAME:ARCH (CODENAME of --sources or of an existing Source)"),
    ("chroots_from_sources", "bool", False, "a chroot for every source and native architecture"),
    ("chroots_backend", "str", "Dir", "chroot backend for new chroots: Dir, File, BtrfsSnapshot, LVM, LoopLVM or Unshare "
                                      "(LVM: set the volume group of each chroot afterwards; Unshare: no schroot, no root)"),
    ("remotes", "list", [], "remote instances (twisted client endpoints or URLs)"),
    ("chroots_cache", "bool", False, "prepare chroots from the base tarball cached per codename/arch in /var/cache/mini-buildd "
                                     "(debootstrap once per host, with the build tools; shared by all chroots and instances; "
                                     "the check then updates it)"),
)


def default_options():
    return {name: (list(default) if isinstance(default, list) else default) for name, _kind, default, _help in OPTIONS}


def _models():
    """The configuration models (imported when first used: Django is set up by then)."""
    from mini_buildd import models  # pylint: disable=import-outside-toplevel
    return models


def _split_list(value):
    if isinstance(value, str):
        value = [value]
    out = []
    for v in value or []:
        out += [x for x in v.replace(",", " ").split() if x]
    return out


def _selector(value):
    """'' -> None (nothing), 'all' -> True (everything), else the set of hashes."""
    if not value:
        return None
    if value == "all":
        return True
    return set(_split_list(value))


def _selected(selector, instance):
    return selector is True or (selector is not None and instance.identity_hash in selector)


# ------------------------------------------------------------------------------------------------ target
def _archives(opts, report):
    archives = list(_split_list(opts["archives"]))
    if opts["archives_from_apt_sources"]:
        archives += dist.archives_from_apt_sources()
    if opts["archives_from_origins"]:
        origins = [spec.partition(":")[0] for spec in _split_list(opts["from_origins"])]
        if not origins:
            raise SetupError("--archives-from-origins needs --from-origins (e.g. Debian)")
        found = dist.archives_from_origins(origins)
        if not found:
            report["warnings"].append(f"No archive of this host's apt sources has the origin {' or '.join(origins)}.")
        archives += found
    if opts["archives_from_proxy"]:
        archives += dist.archives_from_proxy(config.runtime.hostname)
    out = []
    for url in archives:
        url = url.rstrip("/") + "/"
        if url not in out:
            out.append(url)
    if not out:
        out = [a.url for a in _models().Archive.objects.all()]
        if not out:
            report["warnings"].append("No archives given (use --archives-from-apt-sources or --archives URL...).")
    return out


def _origin_codenames(opts):
    codenames = []
    for spec in _split_list(opts["from_origins"]):
        origin, _, extent = spec.partition(":")
        if origin not in ORIGINS:
            raise SetupError(f"Unknown origin '{origin}' in --from-origins (known: {', '.join(ORIGINS)})")
        codenames += dist.setup_codenames(origin, extent)
    return codenames


def _source_target(origin, codename, apt_keys, extra_identifiers=None, remove_from_component=""):
    return {"origin": origin, "codename": codename, "apt_keys": list(apt_keys),
            "extra_identifiers": dict(extra_identifiers or {}), "remove_from_component": remove_from_component}


def _codename_info(codename):
    try:
        return dist.codename_info(codename)
    except ValueError as e:
        raise SetupError(str(e)) from e


# Codenames of the existing configuration: a spec naming a codename this setup does not bring uses the
# configuration's Source or Distribution of that codename (extending an instance, as upstream 2.4).
def _configured_source(codename):
    """The configuration's base Source of ``codename`` (the setup data's origin first), or None."""
    sources = _models().Source.objects.filter(codename=codename)
    known = dist.CODENAMES.get(codename)
    return (sources.filter(origin=known.origin).first() if known else None) or sources.order_by("pk").first()


def _configured_distribution(codename):
    """Whether the configuration has a Distribution of ``codename``."""
    return _models().Distribution.objects.filter(base_source__codename=codename).exists()


def _configured_repository(rid):
    return _models().Repository.objects.select_related("layout").filter(identity=rid).first()


def _configured_extras(info):
    """The extra sources of ``info`` the configuration has Sources of (a distribution of a configured source)."""
    source = _models().Source
    return [{"origin": e.origin, "codename": e.codename, "priority": e.priority} for e in info.extra_sources
            if source.objects.filter(origin=e.origin, codename=e.codename).exists()]


def _source_of(codename, spec, what, extras_of):
    """``(origin, Codename info, extra sources)`` of a spec's codename: from this setup's sources, else from the
    configuration's Source of that codename; a clear error if neither has it."""
    if codename in extras_of:
        info = _codename_info(codename)
        return info.origin, info, extras_of[codename]
    source = _configured_source(codename)
    if source is None:
        _codename_info(codename)  # an unknown codename says so
        raise SetupError(f"{what} '{spec}' needs its source: add '{codename}' to --sources "
                         f"(the configuration has no Source '{codename}' either).")
    try:
        info = dist.codename_info(codename, source.origin)
    except ValueError as e:
        raise SetupError(str(e)) from e
    return source.origin, info, _configured_extras(info)


def compute(opts, report):  # pylint: disable=too-many-locals  # one pass over every option of the setup
    """The target setup (JSON-able) for ``opts``."""
    daemon = _models().Daemon.get()
    identity = opts["identity"] or daemon.identity
    ftp_endpoint = opts["ftp_endpoint"]
    if not ftp_endpoint:
        http = net.ServerEndpoint(config.runtime.http_endpoint)
        ftp_endpoint = str(http.with_port(http.port + 1))
    try:
        net.ServerEndpoint(ftp_endpoint, "ftp")
    except net.EndpointError as e:
        raise SetupError(f"Bad FTP endpoint: {e}") from e

    archives = _archives(opts, report)
    origin_codenames = _origin_codenames(opts)
    codenames = _split_list(opts["sources"]) + (origin_codenames if opts["sources_from_origins"] else [])
    codenames = list(dict.fromkeys(codenames))

    sources, extras_of = {}, {}
    for codename in codenames:
        info = _codename_info(codename)
        sources[f"{info.origin}:{codename}"] = _source_target(info.origin, codename, info.apt_keys)
        extras_of[codename] = []
        for extra in info.extra_sources:
            if archives and not release.available(archives, extra.codename):
                report["warnings"].append(f"Extra source '{extra.codename}' ({extra.origin}) is not on any archive: left out.")
                continue
            sources[f"{extra.origin}:{extra.codename}"] = _source_target(
                extra.origin, extra.codename, extra.apt_keys, extra.extra_identifiers, extra.remove_from_component)
            extras_of[codename].append({"origin": extra.origin, "codename": extra.codename, "priority": extra.priority})

    native = None

    def archs_of(spec):
        nonlocal native
        archs = []
        for a in spec.split("+"):
            if a == "native":
                native = native or dist.native_architectures()
                archs += native
            elif a:
                archs.append(a)
        return list(dict.fromkeys(archs))

    dist_specs = _split_list(opts["distributions"])
    if opts["distributions_from_sources"]:
        dist_specs += [f"{c}:native" for c in codenames if f"{c}:" not in " ".join(dist_specs)]
    distributions = {}
    for spec in dist_specs:
        codename, _, arch_spec = spec.partition(":")
        if not arch_spec:
            raise SetupError(f"Bad distribution '{spec}': use CODENAME:ARCH[+ARCH...]")
        origin, info, extras = _source_of(codename, spec, "Distribution", extras_of)
        archs = archs_of(arch_spec)
        optional = [a for a in archs if a in info.optional_architectures]
        build_all = next((a for a in archs if a not in optional), None)
        if build_all is None:
            raise SetupError(f"Distribution '{spec}': at least one non-optional architecture is needed.")
        distributions[codename] = {
            "base_source": {"origin": origin, "codename": codename},
            "extra_sources": extras,
            "components": info.components,
            "architectures": [{"architecture": a, "optional": a in optional, "build_architecture_all": a == build_all} for a in archs],
            "options": info.distribution_options,
        }

    repo_specs = _split_list(opts["repositories"])
    for spec in _split_list(opts["repositories_from_distributions"]):
        rid, _, layout = spec.partition(":")
        existing = _configured_repository(rid)
        codes = [d.codename for d in existing.mbd_distributions()] if existing else []  # extends, never drops
        repo_specs.append(f"{rid}:{layout}:{'+'.join(codes + [c for c in distributions if c not in codes])}")
    repositories = {}
    for spec in repo_specs:
        parts = spec.split(":")
        if len(parts) != 3 or not parts[0]:
            raise SetupError(f"Bad repository '{spec}': use ID:LAYOUT:CODENAME[+CODENAME...]")
        rid, layout, codes = parts
        existing = _configured_repository(rid)
        layout = layout or (existing.layout.name if existing else ("Debian Developer" if rid == "debdev" else "Default"))
        codes = list(dict.fromkeys(c for c in codes.split("+") if c))
        for c in codes:
            if c not in distributions and not _configured_distribution(c):
                raise SetupError(f"Repository '{rid}': no distribution '{c}' in this setup or in the configuration "
                                 "(add it to --distributions).")
        repositories[rid] = {
            "layout": layout, "codenames": codes,
            "allow_unauthenticated_uploads": rid == "test",
            "extra_uploader_keyrings": "/usr/share/keyrings/debian-keyring.gpg" if rid == "debdev" else "",
        }

    backend = opts["chroots_backend"] or "Dir"
    if backend not in CHROOT_BACKENDS:
        raise SetupError(f"Unsupported chroot backend '{backend}' (use {', '.join(CHROOT_BACKENDS)})")
    chroot_specs = _split_list(opts["chroots"])
    if opts["chroots_from_sources"]:
        chroot_specs += [f"{c}:{a}" for c in codenames for a in archs_of("native")]
    chroots = {}
    for spec in chroot_specs:
        codename, _, arch = spec.partition(":")
        if not arch or "+" in arch:
            raise SetupError(f"Bad chroot '{spec}': use CODENAME:ARCH")
        origin, info, _extras = _source_of(codename, spec, "Chroot", extras_of)
        chroots[f"{codename}:{arch}"] = {"backend": backend, "origin": origin, "codename": codename,
                                         "architecture": arch, "options": info.chroot_options}

    remotes = [net.client_url(r) if "://" in r else r for r in _split_list(opts["remotes"])]
    return {"daemon": {"identity": identity, "ftpd_bind": ftp_endpoint}, "archives": archives, "sources": sources,
            "distributions": distributions, "repositories": repositories, "chroots": chroots, "remotes": remotes}


# ------------------------------------------------------------------------------------------------ instances
class Instance:
    """One model instance the setup wants: how to find it, its target fields and relations."""

    def __init__(self, cls_name, identifiers, fields=None, m2m=None, status_model=True):
        self.cls_name = cls_name
        self.identifiers = identifiers
        self.fields = fields or {}
        self.m2m = m2m or {}            # field -> {"target": set of str, "resolve": callable returning objects}
        self.status_model = status_model
        self.actions = []
        self.error = ""

    @property
    def identity(self):
        return {"class": self.cls_name, "identifiers": self.identifiers}

    @property
    def identity_hash(self):
        return hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()

    @property
    def identity_str(self):
        return f"{self.cls_name}({', '.join(f'{k}={v}' for k, v in self.identifiers.items())})"

    # The methods below are set per kind by the builders.
    def lookup(self):
        raise NotImplementedError

    def create(self):
        raise NotImplementedError

    def current_m2m(self, obj, field):  # pylint: disable=unused-argument
        return set()

    def set_m2m(self, obj, field, objects):
        getattr(obj, field).set(objects)

    def diff(self, obj):
        """What differs between obj and the wanted fields and relations: {"setup": {field: ...}, "m2m": {field: ...}}."""
        d = {"setup": {}, "m2m": {}}
        if obj is None:
            return d
        for field, target in self.fields.items():
            current = getattr(obj, field)
            if current != target:
                d["setup"][field] = {"current": _jsonable(current), "target": _jsonable(target)}
        for field, spec in self.m2m.items():
            current = self.current_m2m(obj, field)
            missing, unknown = sorted(spec["target"] - current), sorted(current - spec["target"])
            if missing or unknown:
                d["m2m"][field] = {"missing": missing, "unknown": unknown}
        return d

    def status(self, obj):
        """MISSING, CHANGED, EXISTS, or (status models) ACTIVE, FAILED or DEACTIVATED: the state of obj."""
        if obj is None:
            return "MISSING"
        d = self.diff(obj)
        if d["setup"] or d["m2m"]:
            return "CHANGED"
        if not self.status_model:
            return "EXISTS"
        if obj.mbd_is_active():
            return "ACTIVE"
        if obj.mbd_is_failed() or obj.mbd_is_reactivate():
            return "FAILED"
        return "DEACTIVATED"

    def update(self):
        """Create the instance, or update its fields and relations where they differ; record what was done; return it."""
        obj = self.lookup()
        if obj is None:
            obj = self.create()
            self.actions.append("created")
        elif self.status(obj) == "CHANGED":
            changed = False
            for field, target in self.fields.items():
                if getattr(obj, field) != target:
                    setattr(obj, field, target)
                    changed = True
            if changed:
                obj.full_clean(validate_unique=False)
                obj.save()
            self.actions.append("updated")
        else:
            return obj
        for field, spec in self.m2m.items():
            if self.current_m2m(obj, field) != spec["target"]:
                self.set_m2m(obj, field, spec["resolve"]())
        return obj

    def pca(self):
        """Prepare, check and activate the instance (it must exist); record the outcome."""
        obj = self.lookup()
        if obj is None:
            self.actions.append("pca(failed)")
            self.error = "missing (needs update)"
            return
        try:
            obj.mbd_pca()
            self.actions.append("pca")
        except Exception as e:  # pylint: disable=broad-except  # report boundary: the setup report says which instance failed and why
            self.actions.append("pca(failed)")
            self.error = str(e)
            LOG.warning("setup: PCA of %s failed: %s", self.identity_str, e)

    def result(self):
        """The JSON-able outcome of this instance: identity, diff, status, actions, error."""
        obj = self.lookup()
        status = self.status(obj)
        r = {"identity": self.identity, "identity_hash": self.identity_hash, "identity_str": self.identity_str,
             "diff": self.diff(obj), "status": status, "status_severity": SEVERITY[status], "actions": list(self.actions)}
        if self.status_model and obj is not None:
            r["status_display"] = obj.mbd_status_display()
            if obj.status_message:
                r["status_message"] = obj.status_message
        if self.error:
            r["error"] = self.error
        return r


def _jsonable(value):
    if isinstance(value, (str, int, float, bool, type(None), list, dict)):
        return value
    return str(value)


def _make(cls_name, identifiers, lookup, create, fields=None, m2m=None, current_m2m=None, set_m2m=None, status_model=True):
    inst = Instance(cls_name, identifiers, fields, m2m, status_model)
    inst.lookup = lookup
    inst.create = create
    if current_m2m:
        inst.current_m2m = current_m2m
    if set_m2m:
        inst.set_m2m = set_m2m
    return inst


def _source_key(origin, codename):
    return f"{origin}:{codename}"


def instances(target):
    """Instances in dependency order: daemon, archives, keys, sources, distributions, repositories, chroots, remotes."""
    # pylint: disable=too-many-locals
    m = _models()
    out = []

    daemon_fields = dict(target["daemon"])
    out.append(_make("Daemon", {}, lambda: m.Daemon.get(), lambda: m.Daemon.get(), fields=daemon_fields))  # pylint: disable=unnecessary-lambda

    for url in target["archives"]:
        out.append(_make("Archive", {"url": url}, lambda url=url: m.Archive.objects.filter(url=url).first(),
                         lambda url=url: m.Archive.objects.create(url=url), status_model=False))

    key_ids = []
    for s in target["sources"].values():
        key_ids += [k for k in s["apt_keys"] if k not in key_ids]
    for kid in key_ids:
        out.append(_make("AptKey", {"key_id": kid}, lambda kid=kid: m.AptKey.objects.filter(key_id__iexact=kid).first(),
                         lambda kid=kid: m.AptKey.objects.create(key_id=kid)))

    for s in target["sources"].values():
        def lookup(s=s):
            return m.Source.objects.filter(origin=s["origin"], codename=s["codename"]).first()

        def create(s=s):
            return m.Source.objects.create(origin=s["origin"], codename=s["codename"], extra_identifiers=s["extra_identifiers"],
                                           remove_from_component=s["remove_from_component"])
        out.append(_make(
            "Source", {"origin": s["origin"], "codename": s["codename"]}, lookup, create,
            fields={"extra_identifiers": s["extra_identifiers"], "remove_from_component": s["remove_from_component"]},
            m2m={"apt_keys": {"target": {k.upper() for k in s["apt_keys"]},
                              "resolve": lambda s=s: [m.AptKey.objects.filter(key_id__iexact=k).first() for k in s["apt_keys"]]}},
            current_m2m=lambda obj, field: {k.key_id.upper() for k in obj.apt_keys.all()}))

    for codename, d in target["distributions"].items():
        out.append(_distribution_instance(m, codename, d))

    for rid, r in target["repositories"].items():
        def r_lookup(rid=rid):
            return m.Repository.objects.filter(identity=rid).first()

        def r_create(rid=rid, r=r):
            return m.Repository.objects.create(identity=rid, layout=m.Layout.objects.get(name=r["layout"]),
                                               allow_unauthenticated_uploads=r["allow_unauthenticated_uploads"],
                                               extra_uploader_keyrings=r["extra_uploader_keyrings"])
        layout = m.Layout.objects.filter(name=r["layout"]).first()
        if layout is None:
            raise SetupError(f"Repository '{rid}': unknown layout '{r['layout']}'.")
        out.append(_make(
            "Repository", {"identity": rid}, r_lookup, r_create,
            fields={"layout_id": layout.pk, "allow_unauthenticated_uploads": r["allow_unauthenticated_uploads"],
                    "extra_uploader_keyrings": r["extra_uploader_keyrings"]},
            m2m={"distributions": {"target": set(r["codenames"]),
                                   "resolve": lambda r=r: [m.Distribution.objects.get(base_source__codename=c) for c in r["codenames"]]}},
            current_m2m=lambda obj, field: {d.codename for d in obj.distributions.all()}))

    for key, c in target["chroots"].items():
        out.append(_chroot_instance(m, key, c))

    for url in target["remotes"]:
        out.append(_make("Remote", {"http": url}, lambda url=url: m.Remote.objects.filter(http=url).first(),
                         lambda url=url: m.Remote.objects.create(http=url)))
    return out


def _distribution_instance(m, codename, d):
    def lookup():
        return m.Distribution.objects.filter(base_source__codename=codename).first()

    def base_source():
        return m.Source.objects.get(origin=d["base_source"]["origin"], codename=codename)

    def create():
        return m.Distribution.objects.create(base_source=base_source(), **d["options"])

    def prio_sources():
        out = []
        for e in d["extra_sources"]:
            src = m.Source.objects.get(origin=e["origin"], codename=e["codename"])
            out.append(m.PrioritySource.objects.get_or_create(source=src, priority=e["priority"])[0])
        return out

    def arch_str(a):
        return f"{a['architecture']}{'(optional)' if a['optional'] else ''}{'(all)' if a['build_architecture_all'] else ''}"

    def current_m2m(obj, field):
        if field == "components":
            return {c.name for c in obj.components.all()}
        if field == "extra_sources":
            return {f"{p.source.origin}:{p.source.codename}:{p.priority}" for p in obj.extra_sources.select_related("source")}
        return {arch_str({"architecture": o.architecture_id, "optional": o.optional, "build_architecture_all": o.build_architecture_all})
                for o in obj.architectureoption_set.all()}

    def set_m2m(obj, field, objects):
        if field == "architectures":
            obj.architectureoption_set.all().delete()
            for a in d["architectures"]:
                m.ArchitectureOption.objects.create(distribution=obj, architecture=m.Architecture.objects.get_or_create(name=a["architecture"])[0],
                                                    optional=a["optional"], build_architecture_all=a["build_architecture_all"])
        else:
            getattr(obj, field).set(objects)
        for repo in obj.repository_set.all():
            repo.mbd_set_changed()

    return _make(
        "Distribution", {"codename": codename}, lookup, create, fields=dict(d["options"]),
        m2m={"components": {"target": set(d["components"]),
                            "resolve": lambda: [m.Component.objects.get_or_create(name=c)[0] for c in d["components"]]},
             "extra_sources": {"target": {f"{e['origin']}:{e['codename']}:{e['priority']}" for e in d["extra_sources"]},
                               "resolve": prio_sources},
             "architectures": {"target": {arch_str(a) for a in d["architectures"]}, "resolve": lambda: []}},
        current_m2m=current_m2m, set_m2m=set_m2m, status_model=False)


def _chroot_instance(m, _key, c):
    model = getattr(m, f"{c['backend']}Chroot")

    def lookup():
        obj = m.Chroot.objects.filter(source__codename=c["codename"], architecture__name=c["architecture"]).first()
        return obj.mbd_concrete() if obj else None

    def create():
        existing = lookup()
        if existing is not None:  # other backend: replace
            existing.mbd_remove()
            existing.delete()
        source = m.Source.objects.get(origin=c["origin"], codename=c["codename"])
        arch = m.Architecture.objects.get_or_create(name=c["architecture"])[0]
        return model.objects.create(source=source, architecture=arch, **c["options"])

    inst = _make(f"{c['backend']}Chroot", {"codename": c["codename"], "architecture": c["architecture"]}, lookup, create,
                 fields=dict(c["options"]))
    base_status = inst.status

    def status(obj):
        if obj is not None and not isinstance(obj, model):
            return "CHANGED"
        return base_status(obj)

    def update():
        obj = lookup()
        if obj is not None and not isinstance(obj, model):
            inst.actions.append("created")
            return create()
        return Instance.update(inst)
    inst.status = status
    inst.update = update
    return inst


# ------------------------------------------------------------------------------------------------ run
def _is_active(inst):
    obj = inst.lookup()
    return obj is not None and obj.mbd_is_active_or_reactivate()


def _pca_in_thread(inst):
    """PCA of ``inst`` in a worker thread (its own database connection, closed afterwards)."""
    from django import db  # pylint: disable=import-outside-toplevel
    try:
        inst.pca()
    finally:
        db.connections.close_all()


def run(**kwargs):
    """Run setup with the given options (see :data:`OPTIONS`); return ``{setup, instances, report}``."""
    m = _models()
    from mini_buildd.models.layouts import create_default_layouts  # pylint: disable=import-outside-toplevel
    opts = default_options()
    unknown = set(kwargs) - set(opts)
    if unknown:
        raise SetupError(f"Unknown setup option(s): {', '.join(sorted(unknown))}")
    opts.update({k: v for k, v in kwargs.items() if v is not None})
    report = {"warnings": []}

    if m.Distribution.objects.values("base_source__codename").distinct().count() != m.Distribution.objects.count():
        raise SetupError("Several Distributions share a codename: fix that in the admin first.")
    create_default_layouts(m.Layout, m.Suite, m.SuiteOption)

    target = compute(opts, report)
    insts = instances(target)
    update, pca = _selector(opts["update"]), _selector(opts["pca"])

    by_class = {}
    for inst in insts:
        by_class.setdefault("Chroot" if inst.cls_name.endswith("Chroot") else inst.cls_name, []).append(inst)

    def do_update(classes):
        for cls in classes:
            for inst in by_class.get(cls, []):
                if _selected(update, inst):
                    inst.update()

    def do_pca(classes):
        for cls in classes:
            for inst in by_class.get(cls, []):
                if inst.status_model and _selected(pca, inst):
                    inst.pca()

    from mini_buildd.models.base import check_once  # pylint: disable=import-outside-toplevel
    saved_cache = config.runtime.debootstrap_cache
    config.runtime.debootstrap_cache = saved_cache or bool(opts["chroots_cache"])
    try:
        with check_once():  # each instance is checked once per run, not again for every dependant
            do_update(["Daemon", "Archive", "AptKey", "Source"])
            do_pca(["AptKey", "Source"])
            do_update(["Distribution", "Repository", "Chroot", "Remote"])
            # Chroots (debootstrap, apt) take most of the time and need only their Source: they run beside
            # the key generation, repositories and remotes, up to two at a time. An active chroot starts
            # after the Daemon's prepare (which prepares its active dependencies), a new one before.
            chroots = [inst for inst in by_class.get("Chroot", []) if _selected(pca, inst)]
            new_chroots = [inst for inst in chroots if not _is_active(inst)]
            with concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="setup-chroot") as pool:
                futures = [pool.submit(contextvars.copy_context().run, _pca_in_thread, inst) for inst in new_chroots]
                if pca is not None and _selected(pca, by_class["Daemon"][0]):
                    m.Daemon.get().mbd_prepare()  # the key is needed by repositories
                futures += [pool.submit(contextvars.copy_context().run, _pca_in_thread, inst)
                            for inst in chroots if inst not in new_chroots]
                do_pca(["Repository", "Remote"])
                for future in futures:
                    future.result()
            do_pca(["Daemon"])
    finally:
        config.runtime.debootstrap_cache = saved_cache

    results = [inst.result() for inst in insts]
    counts = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    severity = max([r["status_severity"] for r in results] + [2 if report["warnings"] else 0])
    report.update({"counts": counts, "severity": severity, "severity_name": SEVERITY_NAMES[severity],
                   "instances": len(results)})
    return {"setup": target, "instances": results, "report": report}
