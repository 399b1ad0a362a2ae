"""Ports and generated packages (upstream §3.8 "Internal port", "External port", "Port mechanics", §3.9).

This module owns:

- the no-changes port of a source package to other distributions: internal (:func:`port`, a
  package from one of our repositories, or a rebuild in the same distribution) and external
  (:func:`port_ext`, any DSC URL). Both fetch the DSC (``dget``), unpack it (``dpkg-source -x``),
  add a changelog entry (``debchange``) with the new version, the target distribution and the
  upload options, build the new source package (``dpkg-source -b``), sign the DSC, make the
  source changes (``dpkg-genchanges``), sign them with the instance key and upload them to our
  own FTP incoming;
- the packages made from the templates in ``mini_buildd/package_templates/``: the instance's
  archive keyring package (:func:`keyring_packages`) and the three test packages
  (:func:`test_packages`); both are generated as a source package and then external-ported
  (unauthenticated ``file://`` URL) to their target distributions, and may wait for the outcome
  (INSTALLED/FAILED/REJECTED events).

It is the only caller of ``dget``, ``dpkg-source``, ``debchange`` and ``dpkg-genchanges``.
The ``port*``/``*_packages`` functions are the API domain functions (called with keyword
arguments, returning JSON-able data; user errors raise :class:`PortError`, a ``ValueError``).
"""

import dataclasses
import datetime
import email.utils
import logging
import os
import pathlib
import re
import shutil
import tempfile
import time
import typing
import urllib.parse

from debian import changelog as deb_changelog
from debian import deb822

from mini_buildd.tools import call
from mini_buildd import config, dist, errors, instance, net, services
from mini_buildd.archive import operations
from mini_buildd.archive.operations import ArchiveError, RepositoryView, resolve
from mini_buildd.models import Daemon, Repository
from mini_buildd.changes import uploadoptions
from mini_buildd.pipeline import ftpd, port_watch
from mini_buildd import files as files_mod

LOG = logging.getLogger(__name__)

#: Where the package templates live (shipped with the Python package).
TEMPLATES_DIR = config.PACKAGE_TEMPLATES

#: The test package templates (upstream §3.9) and the outcome each must have.
TEST_PACKAGES = ("mbd-test-archall", "mbd-test-cpp", "mbd-test-ftbfs")
TEST_PACKAGES_EXPECTED = {"mbd-test-archall": "INSTALLED", "mbd-test-cpp": "INSTALLED", "mbd-test-ftbfs": "FAILED"}

#: Template name of the keyring package; placeholders in file names and text files.
KEYRING_TEMPLATE = "%ID%-archive-keyring"
PLACEHOLDERS = ("%ID%", "%KEY_ID%", "%MAINT%")

#: Upload options of a port when none are given (upstream §3.8).
DEFAULT_OPTIONS = ("lintian-mode=ignore",)

#: Events that end a package's way through the instance.
FINAL_EVENTS = ("INSTALLED", "FAILED", "REJECTED")

#: How long keyring_packages and test_packages (with check) wait for the outcome of all packages.
WAIT_TIMEOUT = 3 * 3600

#: Changelog text of the port entry (upstream §3.8).
PORT_MESSAGE = "Automated port via mini-buildd (no changes). Original DSC's SHA1: {sha1}"  # (gates.PORT_MARK: its start)

_TIMESTAMP_FORMAT = "%Y%m%d%H%M%S"


class PortError(errors.BadRequest, ValueError):
    """A port or package generation is not possible; the message says why (HTTP 400)."""


# ------------------------------------------------------------------------------------------------ small helpers
def timestamp(now=None):
    """UTC ``YYYYMMDDHHMMSS`` (the version of generated packages, the suffix of rebuilds)."""
    return (now or datetime.datetime.now(datetime.timezone.utc)).strftime(_TIMESTAMP_FORMAT)


def option_lines(options=None):
    """Changelog texts ``MINI_BUILDD_OPTION: key=value`` for ``options``.

    ``options``: ``None`` (the defaults, :data:`DEFAULT_OPTIONS`), a ``|``-separated string (as the
    API's ``--options``; empty: none) or a list of ``key[[arch]]=value`` strings. Each option is
    validated like an upload's (raises :class:`PortError`).
    """
    if options is None:
        options = list(DEFAULT_OPTIONS)
    elif isinstance(options, str):
        options = options.split("|")
    lines, keys = [], set()
    for option in options:
        option = option.strip()
        if not option:
            continue
        try:
            key, value = uploadoptions.parse_option(option)
        except ValueError as e:
            raise PortError(str(e)) from e
        if key in keys:
            raise PortError(f"Duplicate upload option '{key}'")
        keys.add(key)
        lines.append(uploadoptions.format_option(key, value))
    return lines


def _sha1(path):
    return files_mod.digest(path, "sha1")


def _read_dsc(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return deb822.Dsc(f)


def dsc_files(dsc_path):
    """Paths of the files a DSC lists (beside it)."""
    dsc_path = pathlib.Path(dsc_path)
    return [dsc_path.parent / entry["name"] for entry in _read_dsc(dsc_path).get("Files", [])]


def file_url(path):
    """``file://`` URL of a local path as dget takes it (dget does not unquote: no ``%2B`` for ``+``)."""
    return f"file://{pathlib.Path(path).resolve()}"


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _instance():
    """(Daemon, Gnupg) of the instance; PortError if there is no instance key."""
    daemon = Daemon.get()
    gpg = instance.gnupg()
    if gpg.get_secret_key() is None:
        raise PortError("This instance has no GnuPG key yet (prepare the Daemon first).")
    return daemon, gpg


def _tool_env(daemon):
    """Environment for debchange and friends: the instance is the author of what we write."""
    return {"DEBFULLNAME": daemon.key_name, "DEBEMAIL": daemon.email_address, "NAME": daemon.key_name,
            "EMAIL": daemon.email_address, "TZ": "UTC"}


def _workdir(prefix):
    config.paths.tmp.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(dir=config.paths.tmp, prefix=prefix)


# ------------------------------------------------------------------------------------------------ targets
@dataclasses.dataclass
class Target:
    """An uploadable distribution of one of our repositories."""

    diststr: str
    repository: typing.Any  # a Repository model
    distribution: typing.Any  # a Distribution model
    suite_option: typing.Any  # a SuiteOption model

    @property
    def codeversion(self):
        return self.distribution.base_source.codeversion

    def _substitute(self, template):
        return dist.substitute(template, self.repository.identity, self.codeversion)

    @property
    def default_version(self):
        """The layout's default version appendix for this suite, placeholders substituted."""
        layout = self.repository.layout
        return self._substitute(layout.experimental_default_version if self.suite_option.experimental
                                else layout.default_version)

    @property
    def mandatory_version_regex(self):
        layout = self.repository.layout
        return self._substitute(layout.experimental_mandatory_version_regex if self.suite_option.experimental
                                else layout.mandatory_version_regex)


def _locate(diststr, uploadable=True):
    """:class:`Target` for ``diststr``; with ``uploadable``, it must be an uploadable non-rollback
    distribution. Raises :class:`PortError`."""
    try:
        d, view, distribution, suite_option = resolve(diststr, exclude_removed=True)
    except ArchiveError as e:
        raise PortError(str(e)) from e
    repository = view.repository
    if uploadable:
        if d.rollback is not None:
            raise PortError(f"'{diststr}' is a rollback distribution: can't port to it.")
        if not suite_option.uploadable:
            raise PortError(f"'{diststr}': suite '{d.suite}' is not uploadable.")
    elif d.rollback is not None and d.rollback >= suite_option.rollback:
        raise PortError(f"'{diststr}': suite '{d.suite}' has only {suite_option.rollback} rollback distribution(s).")
    return Target(str(d), repository, distribution, suite_option)


def _targets(distributions):
    if isinstance(distributions, str):
        distributions = [d for d in re.split(r"[,\s]+", distributions) if d]
    targets = [_locate(d) for d in distributions or []]
    if not targets:
        raise PortError("No target distributions given.")
    return targets


def _distributions(suite_filter):
    """Diststrs of active repositories and distributions whose suite passes ``suite_filter``."""
    result = []
    for repo in Repository.objects.select_related("layout").order_by("identity"):
        if not repo.mbd_is_active():
            continue
        for d in repo.mbd_distributions():
            if not d.mbd_is_active():
                continue
            result += [repo.mbd_diststr(d, so) for so in repo.layout.mbd_suite_options() if suite_filter(so)]
    return result


def keyring_distributions():
    """Active distributions whose suite builds keyring packages (Default layout: unstable)."""
    return _distributions(lambda so: so.build_keyring_package)


def experimental_distributions():
    """Active distributions of experimental suites named ``*experimental`` (test package targets)."""
    return _distributions(lambda so: so.experimental and so.suite.name.endswith("experimental"))


# ------------------------------------------------------------------------------------------------ versions
def internal_port_version(version, source, target, now=None):
    """Version of an internal port of ``version`` from :class:`Target` ``source`` to ``target``.

    Same distribution: a rebuild, ``<version>+rebuilt<YYYYMMDDHHMMSS>``. Else the rightmost match
    of the source's mandatory regex is replaced by the target's default version, keeping the
    ``+N`` revision (:func:`mini_buildd.dist.port_version`); when the result does not fit the
    target's mandatory regex (e.g. unstable ``+N`` to experimental ``+0``), the match is replaced
    by the plain target default version.
    """
    if source.diststr == target.diststr:
        return dist.rebuild_version(version, now)
    new = dist.port_version(version, source.mandatory_version_regex, target.default_version)
    if not dist.version_matches_mandatory(new, target.mandatory_version_regex):
        matches = list(re.finditer(source.mandatory_version_regex, version))
        if matches:
            m = matches[-1]
            new = version[:m.start()] + target.default_version + version[m.end():]
    return new


# ------------------------------------------------------------------------------------------------ tools
def _dget(url, directory, allow_unauthenticated):
    """Download the DSC at ``url`` and its files into ``directory``; return the DSC path."""
    name = pathlib.PurePosixPath(urllib.parse.urlsplit(url).path).name
    if not name.endswith(".dsc"):
        raise PortError(f"Not a DSC URL (must end in '.dsc'): {url}")
    # Not --no-conf: dget then skips the signature check (devscripts 2.23); /etc/devscripts.conf
    # and ~/.devscripts (DGET_VERIFY, DSCVERIFY_KEYRINGS) are the administrator's to set.
    argv = ["dget", "--download-only"] + (["--allow-unauthenticated"] if allow_unauthenticated else []) + [url]
    try:
        call.run(argv, cwd=directory, timeout=600)
    except call.CallError as e:
        raise PortError(f"Can't get {url}: {e}") from e
    dsc = pathlib.Path(directory) / name
    if not dsc.is_file():
        raise PortError(f"Can't get {url}: dget did not download {name}")
    return dsc


def _unpack(dsc, directory):
    """``dpkg-source -x`` the DSC into ``directory/<source>-<upstream version>``; return that path."""
    d = _read_dsc(dsc)
    upstream = dist.strip_epoch(d["Version"]).rsplit("-", 1)[0] if "-" in d["Version"] else dist.strip_epoch(d["Version"])
    tree = pathlib.Path(directory) / f"{d['Source']}-{upstream}"
    try:
        call.run(["dpkg-source", "-x", str(dsc), str(tree)], cwd=directory, timeout=600)
    except call.CallError as e:
        raise PortError(f"Can't unpack {d.get('Source')} {d.get('Version')}: {e}") from e
    return tree


def _debchange(tree, env, *args):
    call.run(["debchange", "--no-conf"] + list(args), cwd=tree, env=env, timeout=120)


def _new_entry(tree, env, version, distribution, message):
    """A new changelog entry (never merged into an UNRELEASED top entry: ``--release-heuristic log``)."""
    _debchange(tree, env, "--release-heuristic", "log", "--newversion", version, "--force-distribution",
               "--force-bad-version", "--preserve", "--dist", distribution, message)


def append_to_top_entry(tree, texts):
    """Add one ``  * <text>`` line per text at the end of the top changelog entry.

    Not via ``debchange --append``: it wraps long lines (at blanks and dashes), which would break
    ``MINI_BUILDD_OPTION`` lines (e.g. a long ``auto-ports`` list) and URLs.
    """
    if not texts:
        return
    path = pathlib.Path(tree) / "debian" / "changelog"
    lines = path.read_text(encoding="utf-8", errors="surrogateescape").split("\n")
    trailer = next((i for i, line in enumerate(lines) if line.startswith(" -- ")), None)
    if trailer is None:
        raise PortError(f"{path}: no changelog trailer line")
    at = trailer
    while at > 1 and not lines[at - 1].strip():
        at -= 1
    lines[at:at] = [f"  * {' '.join(text.split())}" for text in texts]
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogateescape")


def _build_source(tree, env):
    """``dpkg-source -b`` the tree; return the path of the new DSC (beside the tree)."""
    cl = _changelog(tree)
    call.run(["dpkg-source", "-b", tree.name], cwd=tree.parent, env=env, timeout=600)
    dsc = tree.parent / f"{cl.package}_{dist.strip_epoch(str(cl.version))}.dsc"
    if not dsc.is_file():
        raise PortError(f"dpkg-source did not build {dsc.name}")
    return dsc


def _genchanges(tree, env, since_version=None, originally_changed_by=None):
    """``dpkg-genchanges -S -sa`` in the tree; return the path of the ``_source.changes``."""
    cl = _changelog(tree)
    changes = tree.parent / f"{cl.package}_{dist.strip_epoch(str(cl.version))}_source.changes"
    argv = ["dpkg-genchanges", "-S", "-sa", f"-O{changes}"]
    if since_version:
        argv.append(f"-v{since_version}")
    if originally_changed_by:
        argv.append(f"-DX-Mini-Buildd-Originally-Changed-By={originally_changed_by}")
    call.run(argv, cwd=tree, env=env, timeout=300)
    return changes


def _changelog(tree):
    with open(pathlib.Path(tree) / "debian" / "changelog", encoding="utf-8", errors="replace") as f:
        return deb_changelog.Changelog(f, max_blocks=None, strict=False)


def original_block(changelog, instance_email):
    """``(version, author)`` of the first changelog block not written by ``instance_email``
    (the top block if all are ours)."""
    blocks = list(changelog)
    if not blocks:
        raise PortError("Empty changelog")
    for block in blocks:
        if email.utils.parseaddr(block.author or "")[1].lower() != instance_email.lower():
            return str(block.version), block.author
    return str(blocks[0].version), blocks[0].author


# ------------------------------------------------------------------------------------------------ the port
def _upload(changes):
    return ftpd.upload(changes, instance.ftp_url(Daemon.get()))


def port_dsc(dsc_url, jobs, allow_unauthenticated=False, options=None, comments=(), user=None):
    """Port the DSC at ``dsc_url`` to each of ``jobs`` and upload the results.

    ``jobs``: ``[(diststr, new_version)]``, ``new_version`` a string or a callable taking the
    original version. Returns ``[{dsc_url, source, distribution, version, origin_version}]``
    (``version`` = the new one). The work happens in a temporary directory below ``~/var/tmp``, removed afterwards.
    """
    daemon, gpg = _instance()
    env = _tool_env(daemon)
    lines = option_lines(options)
    results = []
    with _workdir("port-") as tmp:
        tmp = pathlib.Path(tmp)
        download = tmp / "download"
        download.mkdir()
        dsc = _dget(dsc_url, download, allow_unauthenticated)
        sha1 = _sha1(dsc)
        d = _read_dsc(dsc)
        source, version = d["Source"], d["Version"]
        for number, (diststr, new_version) in enumerate(jobs):
            if callable(new_version):
                new_version = new_version(version)
            work = tmp / f"job{number}"
            work.mkdir()
            for path in [dsc] + dsc_files(dsc):
                _link_or_copy(path, work / path.name)
            tree = _unpack(work / dsc.name, work)
            orig_version, orig_author = original_block(_changelog(tree), daemon.email_address)
            _new_entry(tree, env, new_version, diststr, PORT_MESSAGE.format(sha1=sha1))
            append_to_top_entry(tree, list(comments) + lines)
            new_dsc = _build_source(tree, env)
            gpg.sign_file(new_dsc)
            changes = _genchanges(tree, env, since_version=orig_version, originally_changed_by=orig_author)
            gpg.sign_file(changes)
            LOG.info("Port of %s %s to %s as %s%s: uploading %s", source, version, diststr, new_version,
                     f" (by {user})" if user else "", changes.name)
            _upload(changes)
            results.append({"dsc_url": dsc_url, "source": source, "distribution": diststr, "version": new_version,
                            "origin_version": version})
    return results


def _pool_dsc(target, source, version, component):
    """Path of ``source`` ``version``'s DSC in the repository pool."""
    prefix = source[:4] if source.startswith("lib") else source[:1]
    pool = target.repository.mbd_path() / "pool"
    name = f"{source}_{dist.strip_epoch(version)}.dsc"
    path = pool / component / prefix / source / name
    if path.is_file():
        return path
    found = sorted(pool.glob(f"*/*/{source}/{name}"))
    if not found:
        raise PortError(f"DSC of {source} {version} not found in the pool of repository '{target.repository}'.")
    return found[0]


def port(source, from_distribution, to_distributions, version=None, options=None, user=None):
    """API ``port``: no-changes port of ``source`` (``version``, default: the one there) from one of
    our distributions to uploadable distributions; to the same distribution it is a rebuild."""
    origin = _locate(from_distribution, uploadable=False)
    targets = _targets(to_distributions)
    entries = RepositoryView(origin.repository).reprepro.ls(source).get(origin.diststr, [])
    if not entries:
        raise PortError(f"Source {source} is not in {origin.diststr}.")
    if version:
        entries = [e for e in entries if e["version"] == version]
        if not entries:
            raise PortError(f"Source {source} {version} is not in {origin.diststr}.")
    entry = entries[0]
    dsc = _pool_dsc(origin, source, entry["version"], entry["component"])
    now = datetime.datetime.now(datetime.timezone.utc)
    jobs = [(t.diststr, internal_port_version(entry["version"], origin, t, now)) for t in targets]
    results = port_dsc(file_url(dsc), jobs, allow_unauthenticated=True, options=options,
                       comments=[f"Internal port from: {origin.diststr}"], user=user)
    http = f"{instance.http_url()}/repositories/{dsc.relative_to(config.paths.repositories).as_posix()}"
    for r in results:
        r["dsc_url"] = http
    port_watch.record("internal", source, origin.diststr, entry["version"], [t.diststr for t in targets], options=options, user=user)
    return results


def port_ext(dsc, distributions, allow_unauthenticated=False, options=None, user=None):
    """API ``port_ext``: no-changes port of any DSC (URL) to uploadable distributions; the new
    version is the original plus each target's default version."""
    targets = _targets(distributions)
    jobs = [(t.diststr, lambda v, t=t: dist.port_ext_version(v, t.default_version)) for t in targets]
    results = port_dsc(dsc, jobs, allow_unauthenticated=bool(allow_unauthenticated), options=options,
                       comments=[f"External port from: {dsc}"], user=user)
    if results:
        port_watch.record("external", results[0]["source"], dsc, results[0]["origin_version"], [t.diststr for t in targets],
                          options=options, allow_unauthenticated=allow_unauthenticated, user=user)
    return results


def _port_again(rec, version, dsc_url):
    """Port a watched package again from its origin's new ``version`` (see :mod:`mini_buildd.pipeline.port_watch`)."""
    if rec["kind"] == "internal":
        return port(rec["source"], rec["from"], [rec["to"]], version=version, options=rec["options"] or None, user=rec["user"] or None)
    return port_ext(dsc_url, [rec["to"]], allow_unauthenticated=rec["allow_unauthenticated"], options=rec["options"] or None,
                    user=rec["user"] or None)


port_watch.set_porter(_port_again)


# ------------------------------------------------------------------------------------------------ templates
def _substitute(text, values):
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def copy_template(name, directory, values=None):
    """Copy template ``name`` into ``directory``, placeholders substituted in file names and text
    files; ``debian/rules`` made executable. Returns the new source tree path."""
    values = values or {}
    template = TEMPLATES_DIR / name
    if not template.is_dir():
        raise PortError(f"No package template '{name}'")
    tree = pathlib.Path(directory) / _substitute(name, values)
    for path in sorted(template.rglob("*")):
        rel = pathlib.Path(_substitute(str(path.relative_to(template)), values))
        target = tree / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes()
        try:
            data = _substitute(data.decode("utf-8"), values).encode("utf-8")
        except UnicodeDecodeError:
            pass
        target.write_bytes(data)
    (tree / "debian" / "rules").chmod(0o755)
    return tree


def build_template_package(name, directory, version, values=None, extra_files=None):
    """Make a source package from template ``name`` in ``directory`` with a new changelog entry
    (by the instance) for ``version``; ``extra_files``: ``{relative path: text}`` written into the
    source. Returns the DSC path (unsigned)."""
    daemon, _gpg = _instance()
    env = _tool_env(daemon)
    tree = copy_template(name, directory, values)
    for rel, text in (extra_files or {}).items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    _new_entry(tree, env, version, "UNRELEASED", f"Generated by mini-buildd instance '{daemon.identity}' from template '{name}'.")
    return _build_source(tree, env)


def keyring_files(identity):
    """``{relative path: text}`` generated into the keyring source: the armored instance key, APT
    sources for every repository/distribution/suite/rollback, and the dput-ng profile."""
    daemon, gpg = _instance()
    files = {f"{identity}-archive-keyring.asc": gpg.pub_key()}
    url = instance.http_url()
    origin = daemon.archive_origin
    for repo in Repository.objects.exclude(status=Repository.STATUS_REMOVED).select_related("layout").order_by("identity"):
        for d in repo.mbd_distributions():
            components = " ".join(d.mbd_components())
            for so in repo.layout.mbd_suite_options():
                for rollback in [None] + list(so.mbd_rollback_range()):
                    diststr = repo.mbd_diststr(d, so, rollback)
                    suite = so.suite.name + ("" if rollback is None else f"-rollback{rollback}")
                    base = f"sources.list.d/{d.codename}/{repo.identity}_{suite}"
                    head = f"# {origin} '{diststr}'\n"
                    for kind, suffix in (("deb", ""), ("deb-src", "_src")):
                        files[f"{base}{suffix}.list"] = f"{head}{kind} {url}/repositories/{repo.identity} {diststr} {components}\n"
    ftp = net.ServerEndpoint(daemon.ftpd_bind, "ftp")
    files[f"mini-buildd-{identity}.json"] = (
        "{\n"
        f'  "method": "{ftp.scheme}",\n'
        f'  "fqdn": "{config.runtime.hostname}:{ftp.port}",\n'
        '  "login": "anonymous",\n'
        '  "incoming": "/incoming"\n'
        "}\n")
    files.update(keyring_https_files(identity))
    return files


def keyring_https_files(identity):
    """When we serve HTTPS: our certificate (``https/mini-buildd.crt``, installed as
    ``/usr/share/ID-archive-keyring/certs/mini-buildd.crt``) and an APT snippet trusting it for our
    host name only (``https/apt.conf``, installed as ``/etc/apt/apt.conf.d/50ID-archive-keyring.conf``);
    the template's ``debian/rules`` installs them when present. Else nothing."""
    cert = instance.ssl_cert()
    if not cert:
        return {}
    installed = f"/usr/share/{identity}-archive-keyring/certs/mini-buildd.crt"
    return {"https/mini-buildd.crt": cert,
            "https/apt.conf": (f"// The mini-buildd instance '{identity}' serves HTTPS with this (self-signed) certificate.\n"
                               f'Acquire::https::{config.runtime.hostname}::CaInfo "{installed}";\n')}


def keyring_values():
    """Placeholder values of the keyring template for this instance."""
    daemon, gpg = _instance()
    return {"%ID%": daemon.identity, "%KEY_ID%": gpg.get_secret_key()["long_id"],
            "%MAINT%": f"{daemon.key_name} <{daemon.email_address}>"}


def build_keyring_source(directory, version):
    """Generate the keyring source package for ``version`` in ``directory``; return its DSC path."""
    values = keyring_values()
    return build_template_package(KEYRING_TEMPLATE, directory, version, values, keyring_files(values["%ID%"]))


# ------------------------------------------------------------------------------------------------ waiting
def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def wait_for_outcome(results, after, timeout=WAIT_TIMEOUT):
    """Wait for an INSTALLED, FAILED or REJECTED event for each result entry without ``error``;
    put the event (JSON) into the entry as ``event`` (or an ``error`` on time-out)."""
    pending = {(r["source"], r["version"], r["distribution"]): r for r in results if "error" not in r}
    hub = services.events
    if hub is None:
        for r in pending.values():
            r["error"] = "No event hub (daemon not running): outcome unknown."
        return results
    deadline = time.monotonic() + timeout
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            events = hub.wait(after=after, timeout=min(remaining, 60))
        except (errors.Unavailable, ValueError) as e:  # the hub shut down or is full, or a bad 'after'
            LOG.error("Waiting for events failed: %s", e)
            for r in pending.values():
                r["error"] = f"Waiting for events failed: {e}"
            return results
        for event in events:
            after = max(after, event.timestamp)
            if event.type.value not in FINAL_EVENTS:
                continue
            entry = pending.pop((event.source, event.version, event.distribution), None)
            if entry is None and event.type.value == "REJECTED":
                entry = next((pending.pop(k) for k in list(pending) if k[:2] == (event.source, event.version)), None)
            if entry is not None:
                entry["event"] = event.to_json()
    for r in pending.values():
        r["error"] = f"No outcome within {timeout}s."
    return results


def _outcome(entry):
    return entry.get("event", {}).get("type")


# ------------------------------------------------------------------------------------------------ API: generated packages
def _migrate(entry):
    migrate = getattr(operations, "migrate", None)
    if migrate is None:
        entry["error"] = "Migration not available."
        return
    try:
        migrate(entry["source"], entry["distribution"], full=True, version=entry["version"])
        entry["migrated"] = True
    except Exception as e:  # pylint: disable=broad-except  # result boundary: a failed migration is this entry's error, never the call's
        LOG.error("Migration of %s %s from %s failed: %s", entry["source"], entry["version"], entry["distribution"], e)
        entry["error"] = f"Migration failed: {e}"


def keyring_packages(distributions=None, without_migration=False, timeout=WAIT_TIMEOUT):
    """API ``keyring_packages``: build the instance's keyring package (version: UTC timestamp plus
    each target's default version) for ``distributions`` (default: :func:`keyring_distributions`),
    wait for the outcome and, unless ``without_migration``, migrate installed ones fully."""
    targets = _targets(distributions if distributions else keyring_distributions())
    after = _now()
    with _workdir("keyring-") as tmp:
        dsc = build_keyring_source(tmp, timestamp())
        results = port_ext(file_url(dsc), [t.diststr for t in targets], allow_unauthenticated=True)
    wait_for_outcome(results, after, timeout)
    for entry in results:
        if _outcome(entry) == "INSTALLED":
            if not without_migration:
                _migrate(entry)
        elif "error" not in entry:
            entry["error"] = f"Not installed: {entry['event']['type']}"
    return results


def test_packages(sources=None, distributions=None, auto_ports=None, with_check=False, timeout=WAIT_TIMEOUT):
    """API ``test_packages``: build the test packages ``sources`` (default: all three; version: UTC
    timestamp plus each target's default version) for ``distributions`` (default:
    :func:`experimental_distributions`), optionally with an ``auto-ports`` option line. With
    ``with_check`` wait for the outcome and raise :class:`PortError` unless mbd-test-archall and
    mbd-test-cpp are INSTALLED and mbd-test-ftbfs FAILED."""
    sources = list(sources or TEST_PACKAGES)
    unknown = [s for s in sources if s not in TEST_PACKAGES]
    if unknown:
        raise PortError(f"Unknown test package(s): {', '.join(unknown)} (known: {', '.join(TEST_PACKAGES)})")
    targets = _targets(distributions if distributions else experimental_distributions())
    options = list(DEFAULT_OPTIONS)
    if auto_ports:
        ports = auto_ports.split(",") if isinstance(auto_ports, str) else list(auto_ports)
        options.append(f"auto-ports={','.join(p.strip() for p in ports if p.strip())}")
    option_lines(options)  # validate before building anything
    after = _now()
    results = []
    for source in sources:
        with _workdir("test-package-") as tmp:
            dsc = build_template_package(source, tmp, timestamp())
            results += port_ext(file_url(dsc), [t.diststr for t in targets], allow_unauthenticated=True, options=options)
    if with_check:
        wait_for_outcome(results, after, timeout)
        wrong = [f"{r['source']} {r['version']} ({r['distribution']}): {_outcome(r) or r.get('error')}, "
                 f"expected {TEST_PACKAGES_EXPECTED[r['source']]}"
                 for r in results if _outcome(r) != TEST_PACKAGES_EXPECTED[r["source"]]]
        if wrong:
            raise PortError("Test packages check failed: " + "; ".join(wrong))
    return results
