"""The API calls (upstream §4.2): each defined exactly once, with its arguments, authorization, flags
and the function that runs it; here the Consumer and Developer calls (registry order: status ...
unsubscribe) and the helpers every call definition shares (argument choices, :func:`_delegate`),
in :mod:`mini_buildd.api.calls_admin` the Administrator section that follows them (remake_chroots ...
setup). Importing :mod:`mini_buildd.api` registers both, in that order.

Calls whose work is plain model/configuration access run here (status, pub_key, dput_conf,
sources_list, set_user_key, subscribe, unsubscribe). Calls whose work belongs to a domain module
(packages in repositories, ports, builds, remotes, cron) import that module's function when they
run; while it does not exist they answer 503 "not available yet" (see :func:`_delegate` and
:func:`mini_buildd.api.registry.domain_functions`).

Domain functions are called with the call's arguments as keyword arguments (plus ``user`` where
noted) and return JSON-able data. They signal a user error by raising a :class:`mini_buildd.errors.Error`
whose class has a 4xx/503 status (e.g. ``errors.BadRequest``: 400) or a ``ValueError`` (400); anything
else is an internal error (500).
"""

import importlib
import json
import logging

from mini_buildd import __version__, config, instance, net
from mini_buildd.pipeline import ftpd, simulated_builder
from mini_buildd.tools import gnupg
from mini_buildd.api.registry import (Argument, Call, Auth, Problem, NotAvailable, register,
                                      URL, TEXT, CHOICE, INT, BOOL, LIST,
                                      CONFIRM, NEEDS_RUNNING, CONSUMER, DEVELOPER)
from mini_buildd.api import registry

LOG = logging.getLogger(__name__)

APT_TYPES = ("deb", "deb-src")


# ------------------------------------------------------------------------------------------------ helpers
def _models():
    from mini_buildd import models  # pylint: disable=import-outside-toplevel
    return models


def _repositories():
    return list(_models().Repository.objects.order_by("identity").values_list("identity", flat=True))


def _codenames():
    m = _models()
    return sorted(set(m.Distribution.objects.values_list("base_source__codename", flat=True)))


def _suites():
    return list(_models().Suite.objects.order_by("name").values_list("name", flat=True))


def _dists(rollbacks=False, active_only=False, suite_filter=None, rollback_filter=None):
    """Distribution strings of all repositories (optionally with rollbacks / only active repositories)."""
    m = _models()
    repos = m.Repository.objects.select_related("layout").order_by("identity")
    if active_only:
        repos = [r for r in repos if r.mbd_is_active()]
    result = []
    for repo in repos:
        for d in repo.mbd_distributions():
            for so in repo.layout.mbd_suite_options():
                if suite_filter is None or suite_filter(so):
                    result.append(repo.mbd_diststr(d, so))
                if rollbacks and (rollback_filter is None or rollback_filter(so)):
                    result += [repo.mbd_diststr(d, so, r) for r in so.mbd_rollback_range()]
    return result


def _all_dists():
    return _dists(rollbacks=True)


def _uploadable_dists():
    return _dists(suite_filter=lambda so: so.uploadable)


def _migratable_dists():
    """Dists whose suite migrates, plus every rollback dist (rollback restore)."""
    return _dists(rollbacks=True, suite_filter=lambda so: so.migrates_to_id is not None)


def _domain_function(module, function):
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module or module.startswith(f"{e.name}."):
            raise NotAvailable(f"Not available yet: {module} is missing") from e
        raise
    func = getattr(mod, function, None)
    if func is None:
        raise NotAvailable(f"Not available yet: {module}.{function} is missing")
    return func


def _delegate(module, function, with_user=False):
    """``run`` that calls ``module.function(**args[, user=user])`` (503 while it doesn't exist)."""
    def run(args, user):
        kwargs = dict(args)
        if with_user:
            kwargs["user"] = user
        return _domain_function(module, function)(**kwargs)
    run.domain = (module, function, with_user)
    return run


def _status_error(e):
    return Problem(400, str(e))


# ------------------------------------------------------------------------------------------------ Consumer
def uploads_refused(daemon):
    """Why FTP uploads are refused right now (free disk below the Daemon's floor), or None."""
    return ftpd.upload_refusal(config.paths.incoming, daemon.min_free_disk * ftpd.MIB)


def _status(args, _user):
    m = _models()
    daemon = m.Daemon.get()
    chroots = m.Chroot.objects.filter(status=m.StatusModel.STATUS_ACTIVE).select_related("source", "architecture")
    remotes = []
    for remote in m.Remote.objects.order_by("http"):
        if remote.mbd_is_active_or_reactivate():
            try:
                remotes.append(net.client_url(remote.http))
            except net.EndpointError:
                remotes.append(remote.http)
    result = {
        "version": __version__,
        "identity": daemon.identity,
        "url": instance.http_url(),
        "incoming_url": instance.ftp_url(daemon),
        "load": registry.engine_load(),
        "chroots": sorted(str(c) for c in chroots),
        "remotes": remotes,
    }
    simulated_builder.amend_status(result)  # bench mode only
    refused = uploads_refused(daemon)
    if refused:  # only then: the usual answer stays upstream's, key for key
        result["uploads_refused"] = refused
    if args["with_repositories"]:
        repos = {}
        for repo in m.Repository.objects.select_related("layout").order_by("identity"):
            options = repo.layout.suiteoption_set.select_related("suite", "migrates_to__suite").order_by("pk")
            repos[repo.identity] = {
                "codenames": [d.codename for d in repo.mbd_distributions()],
                "layout": {so.suite.name: {"uploadable": so.uploadable, "experimental": so.experimental,
                                           "migrates_to": so.migrates_to.suite.name if so.migrates_to else None}
                           for so in options},
            }
        result["repositories"] = repos
    return result


register(Call(
    "status", _status, category=CONSUMER, auth=Auth.NONE, cache=registry.Cache(max_age=1.0),
    doc="Get status of this instance",
    result_doc="{version, identity, url (HTTP), incoming_url (FTP), load (0..1+; -1: engine stopped), "
               "chroots: ['codename:arch'], remotes: [url], uploads_refused?: why FTP uploads are refused now (free "
               "disk below the floor), simulated_builds?: {delay, chroots, note} (bench mode only: no sbuild, nothing "
               "installed), repositories?: {id: {codenames, layout: {suite: {uploadable, experimental, migrates_to}}}}}",
    args=[Argument("--with-repositories", "-R", type=BOOL, doc="also list repositories with their codenames and layout")]))


def _pub_key(_args, _user):
    gpg = _models().Daemon.get().gnupg()
    try:
        if gpg.get_secret_key() is None:
            raise Problem(503, "This instance has no GnuPG key yet (prepare the Daemon)")
        return gpg.pub_key()
    except gnupg.GnupgError as e:
        raise Problem(503, f"Can't read the instance key: {e}") from e


register(Call(
    "pub_key", _pub_key, category=CONSUMER, auth=Auth.NONE,
    doc="Get ASCII-armored GnuPG public key of this instance\n\n"
        "Used to sign the APT repositories ('APT key') and for authorization across instances.",
    result_doc="armored public key (string)"))


def _dput_conf(args, _user):
    daemon = _models().Daemon.get()
    ftp = net.ServerEndpoint(daemon.ftpd_bind, "ftp")
    target = {"method": ftp.scheme, "fqdn": f"{config.runtime.hostname}:{ftp.port}", "login": "anonymous",
              "incoming": "/incoming"}
    if args["dput_ng_profile"]:
        return json.dumps(target, indent=2) + "\n"
    text = ""
    if not args["without_global"]:
        text += ("# Recommended global config\n"
                 "[DEFAULT]\n"
                 "# Avoid accidental uploads to default target (like 'ftp-master' for Debian)\n"
                 "default_host_main = _please_specify_target_explicitly_\n"
                 "\n")
    text += "# This instance's native target\n"
    text += f"[mini-buildd-{daemon.identity}]\n"
    text += "".join(f"{key:<8} = {value}\n" for key, value in target.items())
    text += "\n"
    site = config.paths.dput_cf
    if site.is_file():
        text += site.read_text(encoding="utf-8")
    return text


register(Call(
    "dput_conf", _dput_conf, category=CONSUMER, auth=Auth.NONE,
    doc="Get recommended dput config snippet\n\n"
        "Usually, this is for your personal ~/.dput.cf (works for dput and dput-ng). "
        "Administrators may add site targets in ~mini-buildd/etc/dput.cf.",
    result_doc="dput config (string); with --dput-ng-profile a dput-ng JSON profile (string)",
    args=[Argument("--without-global", type=BOOL, doc="omit the recommended global [DEFAULT] section"),
          Argument("--dput-ng-profile", "-N", type=BOOL, doc="dput-ng JSON profile of this instance's target instead")]))


def _sources_list(args, _user):
    m = _models()
    daemon = m.Daemon.get()
    origin = daemon.archive_origin
    url = instance.http_url()
    options = args["options"].strip()
    types = args["types"] or ["deb"]
    lines, seen_extra = [], set()

    def emit(base_url, diststr, components, comment):
        if args["with_comment"]:
            lines.append(comment)
        for t in types:
            lines.append(f"{t} [{options}] {base_url} {diststr} {' '.join(components)}")

    repos = m.Repository.objects.select_related("layout").filter(identity__in=args["repositories"]).order_by("identity")
    for repo in repos:
        base_url = args["mirror"].replace("{}", repo.identity) if args["mirror"] else f"{url}/repositories/{repo.identity}"
        for d in repo.mbd_distributions():
            if d.codename not in args["codenames"]:
                continue
            components = d.mbd_components()
            if args["with_extra"]:
                for ps in d.extra_sources.select_related("source").order_by("pk"):
                    source = ps.source
                    if source.mbd_archive() is None:
                        LOG.warning("sources_list: extra source %s has no checked archive: skipped.", source)
                        continue
                    line = source.mbd_apt_line(components=components)
                    if line in seen_extra:
                        continue
                    seen_extra.add(line)
                    if args["with_comment"]:
                        lines.append(f"# Source '{source.origin} {source.codename}' ({source.codeversion}): {source.mbd_apt_pin()}")
                    for t in types:
                        lines.append(t + line[len("deb"):])
            for so in repo.layout.mbd_suite_options():
                if so.suite.name not in args["suites"]:
                    continue
                diststr = repo.mbd_diststr(d, so)
                pin = f"release n={diststr}, o={origin}"
                if args["snapshot"]:
                    snap = f"{diststr}/snapshots/{args['snapshot']}"
                    emit(base_url, snap, components, f"# {origin} '{snap}': {pin}")
                    continue
                emit(base_url, diststr, components, f"# {origin} '{diststr}': {pin}")
                count = so.rollback if args["rollbacks"] < 0 else min(args["rollbacks"], so.rollback)
                for r in range(count):
                    rb = repo.mbd_diststr(d, so, r)
                    emit(base_url, rb, components, f"# {origin} '{rb}': release n={rb}, o={origin}")
    return "".join(line + "\n" for line in lines)


register(Call(
    "sources_list", _sources_list, category=CONSUMER, auth=Auth.NONE,
    doc="Get sources.list (apt lines)\n\n"
        "Usually, this output is put to a file like /etc/apt/sources.list.d/mini-buildd-xyz.list.",
    result_doc="apt lines (string)",
    args=[Argument("--codenames", "-C", type=LIST, choices=_codenames, server_default=_codenames, doc="codenames (base distributions)"),
          Argument("--repositories", "-R", type=LIST, choices=_repositories, server_default=_repositories, doc="repository identities"),
          Argument("--suites", "-S", type=LIST, choices=_suites, server_default=_suites, doc="suite names"),
          Argument("--types", "-T", type=LIST, choices=APT_TYPES, default=["deb"], doc="line types"),
          Argument("--options", "-O", doc="apt options, put between the brackets (e.g. 'arch=amd64 signed-by=FILE')", default=""),
          Argument("--rollbacks", "-r", type=INT, default=0, doc="number of rollback distributions per suite to add (<0: all)"),
          Argument("--snapshot", "-P", default="", doc="lines for this snapshot (name) instead of the distributions"),
          Argument("--mirror", "-M", type=URL, default="",
                   doc="URL of a mirror to use instead of this instance's repository URL ('{}' is replaced by the repository identity)"),
          Argument("--with-extra", "-X", type=BOOL, doc="add the extra sources (e.g. security, backports) of the distributions"),
          Argument("--with-comment", "-D", type=BOOL, doc="add a comment line (origin, distribution, apt pin) above each line")]))


_LS_ARGS = (
    lambda: Argument("source", doc="source package name"),
    lambda: Argument("--repositories", "-R", type=LIST, choices=_repositories, server_default=_repositories, doc="repository identities"),
    lambda: Argument("--codenames", "-C", type=LIST, choices=_codenames, server_default=_codenames, doc="codenames (base distributions)"),
    lambda: Argument("--version", "-V", default="", doc="only this version"),
    lambda: Argument("--min-version", "-M", default="", doc="only versions greater than or equal to this"),
)

register(Call(
    "ls", _delegate("mini_buildd.archive.operations", "ls"), category=CONSUMER, auth=Auth.NONE, cache=registry.Cache(repositories=True),
    doc="List source package in repository",
    result_doc="{repository: {distribution: {version, component, architecture, rollbacks: {distribution: {version, component, architecture}}}}}",
    args=[a() for a in _LS_ARGS]))

register(Call(
    "show", _delegate("mini_buildd.archive.operations", "show"), category=CONSUMER, auth=Auth.NONE,
    doc="Show source package in repository",
    result_doc="as ls, plus per distribution dsc_path, event_path, changes_path, uploadable, migrates_to, is_migrated "
               "(rollbacks: dsc_path)",
    args=[a() for a in _LS_ARGS]))

register(Call(
    "search", _delegate("mini_buildd.archive.operations", "search"), category=CONSUMER, auth=Auth.NONE,
    doc="Search for source or binary package names in repositories, builds and events\n\n"
        "Binary package files found outside of repositories: matches only in builds usually failed "
        "installation; matches in events come from the initial (non source-only) user upload (local builds).",
    result_doc="{source: {repositories: [path], builds: [path], events: [path]}}",
    args=[Argument("pattern", doc="glob pattern (matched as *pattern*, lower case)")]))

register(Call(
    "debdiff", _delegate("mini_buildd.archive.debtools", "debdiff"), category=CONSUMER, auth=Auth.NONE,
    doc="Compare two internal source packages",
    result_doc="debdiff output (string)",
    args=[Argument("source", doc="source package name"),
          Argument("repository", type=CHOICE, choices=_repositories, doc="repository identity"),
          Argument("--versiona", "-a", default="", doc="version A (default: the second newest)"),
          Argument("--versionb", "-b", default="", doc="version B (default: the newest)")]))

# ------------------------------------------------------------------------------------------------ Developer
register(Call(
    "migrate", _delegate("mini_buildd.archive.operations", "migrate", with_user=True), category=DEVELOPER, auth=Auth.STAFF,
    flags=[CONFIRM],
    doc="Migrate source package\n\n"
        "Migrates a source package along with all its binary packages. If run for a rollback "
        "distribution, this will perform a rollback restore. Refused (409, the unsatisfied relations "
        "listed) when a binary of the package can not be installed in the target distribution, or a "
        "package there would become uninstallable (dose-distcheck against the base sources); refused "
        "or warned as the repository's qa_regression_gate says when the version has a QA regression "
        "(a new lintian error, piuparts or autopkgtest from pass to fail) against the target's.",
    result_doc="{} (MIGRATED events); {warnings: [text]} when the repository's QA-regression gate warns",
    args=[Argument("source", doc="source package name"),
          Argument("distribution", type=CHOICE, choices=_migratable_dists, doc="distribution to migrate from"),
          Argument("--full", "-F", type=BOOL, doc="migrate along the whole chain (e.g. unstable -> testing -> stable)"),
          Argument("--version", "-V", default="", doc="migrate this version only (when several exist)"),
          Argument("--force", type=BOOL, doc="migrate even if the installability or QA-regression gate refuses "
                                             "(ADMIN; recorded in the event)")]))

register(Call(
    "remove", _delegate("mini_buildd.archive.operations", "remove", with_user=True), category=DEVELOPER, auth=Auth.ADMIN,
    flags=[CONFIRM],
    doc="Remove source package\n\nRemoves a source package along with all its binary packages. Refused (409) "
        "when another package of the distribution depends on it (it would become uninstallable).",
    result_doc="{} (REMOVED event)",
    args=[Argument("source", doc="source package name"),
          Argument("distribution", type=CHOICE, choices=_all_dists, doc="distribution to remove from"),
          Argument("--without-rollback", type=BOOL, doc="don't keep the removed version in the rollback distributions"),
          Argument("--version", "-V", default="", doc="remove this version only (when several exist)"),
          Argument("--force", type=BOOL, doc="remove even if packages of the distribution would become uninstallable "
                                             "(recorded in the event)")]))

register(Call(
    "port", _delegate("mini_buildd.pipeline.ports", "port", with_user=True), category=DEVELOPER, auth=Auth.STAFF,
    flags=[NEEDS_RUNNING, CONFIRM],
    doc="Port internal source package\n\n"
        "An internal 'port' is a no-changes (only the changelog is adapted) rebuild of the given "
        "locally-installed package. When from_distribution equals to_distribution, a rebuild is done.",
    result_doc="[{dsc_url, source, distribution, version, origin_version}] (the port is watched: PORT_OUTDATED when the origin moves on)",
    args=[Argument("source", doc="source package name"),
          Argument("from_distribution", type=CHOICE, choices=_all_dists, doc="distribution to port from"),
          Argument("to_distributions", type=LIST, choices=_uploadable_dists, doc="distributions to port to"),
          Argument("--version", "-V", default="", doc="port this version (default: the one in from_distribution)"),
          Argument("--options", "-O", default="lintian-mode=ignore", doc="upload options, '|'-separated")]))

register(Call(
    "port_ext", _delegate("mini_buildd.pipeline.ports", "port_ext", with_user=True), category=DEVELOPER, auth=Auth.STAFF,
    flags=[NEEDS_RUNNING, CONFIRM],
    doc="Port external source package\n\n"
        "An external 'port' is a no-changes (only the changelog is adapted) rebuild of any given source package.",
    result_doc="[{dsc_url, source, distribution, version, origin_version}] (the port is watched: PORT_OUTDATED when the DSC's directory lists a newer version)",
    args=[Argument("dsc", type=URL, doc="URL of the DSC file"),
          Argument("distributions", type=LIST, choices=_uploadable_dists, doc="distributions to port to"),
          Argument("--allow-unauthenticated", "-u", type=BOOL, doc="don't verify the DSC's signature"),
          Argument("--options", "-O", default="lintian-mode=ignore", doc="upload options, '|'-separated")]))

register(Call(
    "retry", _delegate("mini_buildd.pipeline.packager", "retry", with_user=True), category=DEVELOPER, auth=Auth.STAFF,
    flags=[NEEDS_RUNNING, CONFIRM],
    doc="Retry a previously failed source package",
    result_doc="changes file name that has been re-uploaded (string)",
    args=[Argument("bkey", doc="SOURCE/VERSION/TIMECODE/source (extra.bkey of a FAILED or REJECTED event)")]))

register(Call(
    "cancel", _delegate("mini_buildd.pipeline.builder", "cancel", with_user=True), category=DEVELOPER, auth=Auth.STAFF,
    flags=[NEEDS_RUNNING, CONFIRM],
    doc="Cancel an ongoing package build",
    result_doc="bkey (string)",
    args=[Argument("bkey", doc="SOURCE/VERSION/TIMECODE/ARCH of an ongoing build")]))


def _set_user_key(args, user):
    from django.core.exceptions import ValidationError  # pylint: disable=import-outside-toplevel
    from mini_buildd.models import validators  # pylint: disable=import-outside-toplevel
    m = _models()
    key = args["key"].strip()
    if not key:
        raise registry.argument_problem("key", "Argument 'key': empty")
    uploader, _created = m.Uploader.objects.get_or_create(user=user)
    if "\n" in key:
        uploader.key, uploader.key_id = key + "\n", ""
    else:
        try:
            validators.key_id(key)
        except ValidationError as e:
            raise registry.argument_problem("key", f"Argument 'key': {' '.join(e.messages)}") from e
        uploader.key, uploader.key_id = "", key
    try:
        uploader.mbd_deactivate()
        uploader.save()
        uploader.mbd_prepare()
    except m.StatusError as e:
        raise _status_error(e) from e
    LOG.info("User %s set a new GnuPG key: %s (needs (re)activation by staff).", user, uploader.key_long_id or key)
    return {}


register(Call(
    "set_user_key", _set_user_key, category=DEVELOPER, auth=Auth.LOGIN, flags=[CONFIRM],
    doc="Set a user's GnuPG public key\n\n"
        "A multi-line value is an ASCII-armored key, a one-line value a key id. "
        "The key must be (re)activated by staff before it is used.",
    result_doc="{}",
    args=[Argument("key", type=TEXT, doc="ASCII-armored public key, or key id")]))


def _subscribe(args, user):
    sub, created = _models().Subscription.objects.get_or_create(subscriber=user, package=args["source"],
                                                                distribution=args["distribution"])
    return {"created": created, "source": sub.package, "distribution": sub.distribution}


def _unsubscribe(args, user):
    subs = _models().Subscription.objects.filter(subscriber=user, package=args["source"], distribution=args["distribution"])
    removed = [{"source": s.package, "distribution": s.distribution} for s in subs]
    subs.delete()
    return removed


_SUBSCRIPTION_ARGS = (
    lambda: Argument("source", doc="source package name ('' = any)"),
    lambda: Argument("distribution", doc="distribution ('' = any)"),
)

register(Call(
    "subscribe", _subscribe, category=DEVELOPER, auth=Auth.LOGIN,
    doc="Subscribe to (email) notifications",
    result_doc="{created, source, distribution}",
    args=[a() for a in _SUBSCRIPTION_ARGS]))

register(Call(
    "unsubscribe", _unsubscribe, category=DEVELOPER, auth=Auth.LOGIN,
    doc="Unsubscribe from (email) notifications",
    result_doc="[{source, distribution}] (the subscriptions removed)",
    args=[a() for a in _SUBSCRIPTION_ARGS]))
