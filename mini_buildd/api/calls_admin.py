"""The Administrator section of the API calls (upstream §4.2), in registry order after the calls of
:mod:`mini_buildd.api.calls` (whose helpers it uses): chroots, reindex, start/stop, remotes (wake,
handshake), cron jobs, uploaders, snapshots, debmirror, keyring and test packages, setup.
snapshot_ls and snapshot_diff (Consumer calls) are listed here, where the registry has them.

Each call is defined exactly once, with its arguments, authorization, flags and the function that
runs it; :mod:`mini_buildd.api` imports this module right after :mod:`mini_buildd.api.calls`.
"""

import logging

from mini_buildd import bootstrap as mbd_setup
from mini_buildd.api.registry import (Argument, Call, Auth, Problem, register,
                                      STRING, TEXT, CHOICE, INT, BOOL, LIST,
                                      CONFIRM, NEEDS_RUNNING, MAINTENANCE, CONSUMER, ADMINISTRATOR)
from mini_buildd.api import registry
from mini_buildd.api.calls import (_models, _dists, _delegate, _repositories, _codenames, _suites,  # pylint: disable=protected-access
                                   _uploadable_dists)

LOG = logging.getLogger(__name__)

TEST_PACKAGE_SOURCES = ("mbd-test-archall", "mbd-test-cpp", "mbd-test-ftbfs")


# ------------------------------------------------------------------------------------------------ choices
def _base_dists():
    return _dists()


def _keyring_dists():
    return _dists(active_only=True, suite_filter=lambda so: so.build_keyring_package)


def _experimental_dists():
    return _dists(active_only=True, suite_filter=lambda so: so.experimental and so.suite.name.endswith("experimental"))


def _chroot_keys():
    return [str(c) for c in _models().Chroot.objects.select_related("source", "architecture")]


def _remotes():
    return list(_models().Remote.objects.order_by("http").values_list("http", flat=True))


def _prepared_repositories():
    m = _models()
    return list(m.Repository.objects.filter(status__gte=m.StatusModel.STATUS_PREPARED).order_by("identity")
                .values_list("identity", flat=True))


# ------------------------------------------------------------------------------------------------ Administrator
def _remake_chroots(args, _user):
    result = {}
    for chroot in _models().Chroot.mbd_concrete_all():
        key = str(chroot)
        if key not in args["keys"]:
            continue
        try:
            chroot.mbd_remove()
            chroot.mbd_prepare()
            chroot.mbd_check()
            chroot.mbd_activate()
            result[key] = "Success"
        except Exception as e:  # pylint: disable=broad-except  # result boundary: report every chroot's outcome
            LOG.error("remake_chroots: %s failed: %s", key, e)
            result[key] = f"Failed: {e}"
    return result


register(Call(
    "remake_chroots", _remake_chroots, category=ADMINISTRATOR, auth=Auth.ADMIN, flags=[CONFIRM, MAINTENANCE],
    doc="Remake chroots\n\nRun actions 'remove', 'prepare', 'check' and 'activate'.",
    result_doc="{codename:arch: 'Success' | 'Failed: reason'}",
    args=[Argument("--keys", type=LIST, choices=_chroot_keys, server_default=_chroot_keys, doc="chroots (codename:arch)")]))


def _reindex(args, _user):
    m = _models()
    for identity in args["repositories"]:
        repo = m.Repository.objects.get(identity=identity)
        if not repo.mbd_is_prepared():
            raise Problem(400, f"Repository '{identity}' is not prepared")
        LOG.info("Reindexing repository %s.", identity)
        repo.mbd_reprepro().reindex()
    return {}


register(Call(
    "reindex", _reindex, category=ADMINISTRATOR, auth=Auth.ADMIN, flags=[CONFIRM, MAINTENANCE],
    doc="Force repository reindex\n\n"
        "Usually, a repository is reindexed by a check when its configuration changed; use this call to force it. "
        "Also runs 'reprepro flood', making arch:all packages available for added architectures.",
    result_doc="{}",
    args=[Argument("--repositories", "-R", type=LIST, choices=_repositories, server_default=_prepared_repositories,
                   doc="repository identities (default: all prepared)")]))


def _start(_args, _user):
    if not _models().Daemon.get().mbd_is_active():
        raise Problem(400, "The Daemon instance is not active: prepare, check and activate it first (setup or admin)")
    registry.engine_start()
    return {}


def _stop(_args, _user):
    if registry.engine_is_running():
        registry.engine_stop()
    return {}


register(Call(
    "start", _start, category=ADMINISTRATOR, auth=Auth.ADMIN, flags=[CONFIRM],
    doc="Start Daemon (accept incoming)\n\nDoes nothing if already started; fails if the Daemon instance is not activated.",
    result_doc="{}"))

register(Call(
    "stop", _stop, category=ADMINISTRATOR, auth=Auth.ADMIN, flags=[CONFIRM],
    doc="Stop Daemon (stop accepting incoming)\n\n"
        "Does nothing if already stopped. Any ongoing events are canceled. This state is not persisted: "
        "deactivate the Daemon instance to keep it stopped over service restarts.",
    result_doc="{}"))

register(Call(
    "wake", _delegate("mini_buildd.pipeline.remotes", "wake"), category=ADMINISTRATOR, auth=Auth.STAFF, flags=[CONFIRM],
    doc="Wake a remote instance (runs its wake command)",
    result_doc="the remote's status",
    args=[Argument("--remote", "-r", type=CHOICE, choices=_remotes, required=True, doc="remote (its HTTP endpoint)"),
          Argument("--sleep", "-s", type=INT, default=5, doc="seconds to wait after each wake attempt"),
          Argument("--attempts", "-a", type=INT, default=3, doc="wake attempts")]))


def _handshake(args, _user):
    from mini_buildd.pipeline import remotes  # pylint: disable=import-outside-toplevel
    try:
        return remotes.answer_handshake(args["signed_message"])
    except remotes.HandshakeRefused as e:
        raise Problem(400, str(e)) from e
    except remotes.RemoteError as e:
        raise Problem(503, str(e)) from e


register(Call(
    "handshake", _handshake, category=ADMINISTRATOR, auth=Auth.NONE,
    doc="Answer a remote's handshake challenge\n\nThis is for internal use only: the signed message must be a handshake "
        "request (a fresh random challenge and the caller's URL) signed by the key of one of our remotes; the answer "
        "is that challenge, addressed to the caller, signed by us.",
    result_doc="our signed handshake answer (string)",
    args=[Argument("--signed-message", "-S", type=TEXT, required=True, doc="a handshake request clear-signed by the remote")]))

register(Call(
    "cronjob", _delegate("mini_buildd.cron", "run_job"), category=ADMINISTRATOR, auth=Auth.ADMIN, flags=[CONFIRM],
    doc="Run a cron job now (out of schedule)",
    result_doc="{id: success (bool)} of each job run",
    args=[Argument("id", doc="cron job id '<name> (<TYPE>)' as on the crontab page (e.g. 'setup_inspect (WEEKLY)'), "
                             "or a bare name: every job of that name")]))


def _uploaders(args, _user):
    m = _models()
    result = {}
    for repo in m.Repository.objects.filter(identity__in=args["repositories"]).order_by("identity"):
        uploaders = m.Uploader.objects.filter(status=m.StatusModel.STATUS_ACTIVE, user__is_active=True,
                                              may_upload_to=repo).select_related("user").order_by("user__username")
        result[repo.identity] = {
            "allow_unauthenticated_uploads": repo.allow_unauthenticated_uploads,
            "uploaders": [{"user": u.user.username, "key_long_id": u.key_long_id, "key_name": u.key_name,
                           "key_fingerprint": u.key_fingerprint} for u in uploaders],
            "extra_uploader_keyrings": [line.split("#", 1)[0].strip() for line in repo.extra_uploader_keyrings.splitlines()
                                        if line.split("#", 1)[0].strip()],
        }
    return result


register(Call(
    "uploaders", _uploaders, category=ADMINISTRATOR, auth=Auth.ADMIN, flags=[NEEDS_RUNNING],
    doc="Get upload permissions for repositories",
    result_doc="{repository: {allow_unauthenticated_uploads, uploaders: [{user, key_long_id, key_name, key_fingerprint}], "
               "extra_uploader_keyrings: [path]}}",
    args=[Argument("--repositories", "-R", type=LIST, choices=_repositories, server_default=_repositories, doc="repository identities")]))

register(Call(
    "snapshot_ls", _delegate("mini_buildd.archive.operations", "snapshot_ls"), category=CONSUMER, auth=Auth.NONE,
    flags=[NEEDS_RUNNING],
    doc="Get list of repository snapshots for a distribution",
    result_doc="[snapshot name]",
    args=[Argument("distribution", type=CHOICE, choices=_base_dists, doc="distribution")]))

register(Call(
    "snapshot_diff", _delegate("mini_buildd.archive.operations", "snapshot_diff"), category=CONSUMER, auth=Auth.NONE,
    doc="Show what changed between two snapshots of a distribution\n\n"
        "Every install, migration and removal leaves a snapshot named by its UTC time (e.g. 20261207T101530Z); "
        "b defaults to the live distribution ('live').",
    result_doc="{distribution, a, b, sources: {added: {name: version}, removed: {name: version}, changed: {name: [a, b]}}, "
               "binaries: (the same, names as NAME/ARCH)}",
    args=[Argument("distribution", type=CHOICE, choices=_base_dists, doc="distribution"),
          Argument("a", doc="snapshot name (the older state)"),
          Argument("--b", "-b", default="live", doc="snapshot name (the newer state; 'live': the distribution now)")]))

register(Call(
    "snapshot_create", _delegate("mini_buildd.archive.operations", "snapshot_create"), category=ADMINISTRATOR, auth=Auth.ADMIN,
    flags=[NEEDS_RUNNING, CONFIRM],
    doc="Create a repository snapshot",
    result_doc="{}",
    args=[Argument("distribution", type=CHOICE, choices=_base_dists, doc="distribution"),
          Argument("name", doc="snapshot name")]))

register(Call(
    "snapshot_delete", _delegate("mini_buildd.archive.operations", "snapshot_delete"), category=ADMINISTRATOR, auth=Auth.ADMIN,
    flags=[NEEDS_RUNNING, CONFIRM],
    doc="Delete a repository snapshot",
    result_doc="{}",
    args=[Argument("distribution", type=CHOICE, choices=_base_dists, doc="distribution"),
          Argument("name", doc="snapshot name")]))

register(Call(
    "debmirror", _delegate("mini_buildd.archive.debtools", "debmirror"), category=ADMINISTRATOR, auth=Auth.ADMIN, flags=[CONFIRM],
    doc="Make local partial repository mirror via debmirror\n\n"
        "Useful to publish a stripped-down variant (only some repositories, suites, no rollbacks) elsewhere.",
    result_doc="{}",
    args=[Argument("--suites", "-S", type=LIST, choices=_suites, server_default=_suites, doc="suite names"),
          Argument("--rollbacks", "-r", type=INT, default=0, doc="rollback distributions per suite (<0: all)"),
          Argument("--repositories", "-R", type=LIST, choices=_repositories, server_default=_repositories, doc="repository identities"),
          Argument("--codenames", "-c", type=LIST, choices=_codenames, server_default=_codenames, doc="codenames"),
          Argument("--architectures", "-A", type=LIST, default=[], doc="architectures (default: all of the distributions)"),
          Argument("--components", "-C", type=LIST, default=[], doc="components (default: all of the distributions)"),
          Argument("--destination", "-D", default="~/debmirror/{}",
                   doc="destination directory ('{}' = repository identity); its contents are replaced!")]))

register(Call(
    "keyring_packages", _delegate("mini_buildd.pipeline.ports", "keyring_packages"), category=ADMINISTRATOR, auth=Auth.ADMIN,
    flags=[NEEDS_RUNNING, CONFIRM],
    doc="Build keyring packages",
    result_doc="[{dsc_url, source, distribution, version, event? | error?}]",
    args=[Argument("--distributions", "-D", type=LIST, choices=_keyring_dists, server_default=_keyring_dists,
                   doc="distributions (default: all whose suite builds keyring packages)"),
          Argument("--without-migration", "-M", type=BOOL, doc="don't migrate the packages to stable after installation")]))

register(Call(
    "test_packages", _delegate("mini_buildd.pipeline.ports", "test_packages"), category=ADMINISTRATOR, auth=Auth.ADMIN,
    flags=[NEEDS_RUNNING, CONFIRM],
    doc="Build test packages",
    result_doc="[{dsc_url, source, distribution, version, event? | error?}]",
    args=[Argument("--sources", "-S", type=LIST, choices=TEST_PACKAGE_SOURCES, default=list(TEST_PACKAGE_SOURCES), doc="test packages"),
          Argument("--distributions", "-D", type=LIST, choices=_uploadable_dists, server_default=_experimental_dists,
                   doc="distributions (default: active '*experimental' distributions)"),
          Argument("--auto-ports", "-A", type=LIST, default=[], doc="distributions to auto-port to"),
          Argument("--with-check", "-c", type=BOOL,
                   doc="fail unless mbd-test-archall and mbd-test-cpp are INSTALLED and mbd-test-ftbfs FAILED")]))


# setup: arguments from mini_buildd.bootstrap.OPTIONS (one definition, shared with its command line)
_SETUP_TYPES = {"str": STRING, "list": LIST, "bool": BOOL}
_SETUP_SHORT = {"archives": "-A", "chroots_backend": "-C"}


def _setup_args():
    result = []
    for name, kind, default, help_text in mbd_setup.OPTIONS:
        flags = ["--" + name.replace("_", "-")] + ([_SETUP_SHORT[name]] if name in _SETUP_SHORT else [])
        if name == "chroots_backend":
            result.append(Argument(*flags, type=CHOICE, choices=mbd_setup.CHROOT_BACKENDS, default=default, doc=help_text))
        else:
            result.append(Argument(*flags, type=_SETUP_TYPES[kind], default=default, doc=help_text))
    return result


def _setup(args, _user):
    try:
        return mbd_setup.run(**args)
    except mbd_setup.SetupError as e:
        raise Problem(400, str(e)) from e


register(Call(
    "setup", _setup, category=ADMINISTRATOR, auth=Auth.ADMIN, flags=[CONFIRM, MAINTENANCE],
    doc="Create, update or inspect your setup\n\n"
        "Without --update and --pca this only inspects: it shows what would be created or changed.",
    result_doc="{setup, instances, report}",
    args=_setup_args()))
