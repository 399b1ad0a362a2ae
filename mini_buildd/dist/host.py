"""Host probing: what this host tells about architectures and archives (``setup``, upstream §2.3).

This module owns discovery of the native architectures (``arch-test``/``dpkg``) and of archive
URLs from the host's APT sources (one-line ``*.list`` and deb822 ``*.sources`` files), the origin
of each (the ``Origin`` field of its Release file: apt's own copy, else the archive's) and an
apt-cacher-ng proxy.
"""

import glob
import logging
import os
import re
import shutil

from debian import deb822

from mini_buildd.tools import call

LOG = logging.getLogger(__name__)

_ARCH_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def native_architectures():
    """Architectures this host runs natively: ``arch-test -n``, else dpkg's (+ i386 on amd64 if arch-test confirms)."""
    if shutil.which("arch-test"):
        try:
            archs = [line.strip() for line in call.run(["arch-test", "-n"]).splitlines() if _ARCH_RE.match(line.strip())]
            if archs:
                return list(dict.fromkeys(archs))
        except call.CallError as e:
            LOG.warning("arch-test failed, falling back to dpkg: %s", e)
    archs = [call.run(["dpkg", "--print-architecture"]).strip()]
    if archs == ["amd64"] and shutil.which("arch-test") and call.ok(["arch-test", "-n", "i386"]):
        archs.append("i386")
    return archs


APT_SOURCES_LIST = "/etc/apt/sources.list"
APT_SOURCES_PARTS = "/etc/apt/sources.list.d"
_ARCHIVE_SCHEMES = ("http://", "https://", "ftp://")


def _archive_url(uri):
    """Normalize a URI to an archive base URL with exactly one trailing slash, or None if not usable."""
    if not uri.startswith(_ARCHIVE_SCHEMES):
        return None
    return uri.rstrip("/") + "/"


def _entries_one_line(text):
    """(URI, [suite]) of the ``deb``/``deb-src`` lines of a one-line ``.list`` file."""
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        parts = line.split(None, 1)
        if len(parts) < 2 or parts[0] not in ("deb", "deb-src"):
            continue
        rest = parts[1].strip()
        if rest.startswith("["):
            rest = rest.partition("]")[2].strip()
        if rest:
            words = rest.split()
            yield words[0], words[1:2]


def _entries_deb822(text):
    """(URI, [suite...]) of the enabled ``deb``/``deb-src`` stanzas of a deb822 ``.sources`` file (sources.list(5))."""
    for stanza in deb822.Deb822.iter_paragraphs(text.splitlines(), use_apt_pkg=False):
        if stanza.get("Enabled", "yes").strip().lower() in ("no", "false", "0", "off"):
            continue
        if not set(stanza.get("Types", "").split()) & {"deb", "deb-src"}:
            continue
        for uri in stanza.get("URIs", "").split():
            yield uri, stanza.get("Suites", "").split()


def _apt_source_files(paths):
    if paths is None:
        paths = [APT_SOURCES_LIST, APT_SOURCES_PARTS]
    files = []
    for path in paths:
        path = str(path)
        if os.path.isdir(path):
            files += sorted(glob.glob(os.path.join(path, "*.list")) + glob.glob(os.path.join(path, "*.sources")))
        elif os.path.isfile(path):
            files.append(path)
    return [f for f in files if ".disabled" not in os.path.basename(f)]


def archives_from_apt_sources(paths=None):
    """Archive URLs (sorted, unique, one trailing ``/``) from the host's APT sources.

    ``paths``: files or directories (directories are scanned for ``*.list`` and ``*.sources``);
    default ``/etc/apt/sources.list`` and ``/etc/apt/sources.list.d``. Disabled entries, comments,
    ``cdrom:``, ``file:`` and method-prefixed (``mirror+``, ``tor+``) URIs are skipped.
    """
    return sorted(_apt_source_suites(paths))


def _apt_source_suites(paths=None):
    """``{archive URL: [suite...]}`` of the host's APT sources (see :func:`archives_from_apt_sources`)."""
    suites = {}
    for path in _apt_source_files(paths):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError as e:
            LOG.warning("Can't read APT sources file %s: %s", path, e)
            continue
        entries = _entries_deb822(text) if path.endswith(".sources") else _entries_one_line(text)
        for uri, entry_suites in entries:
            url = _archive_url(uri)
            if url:
                suites.setdefault(url, [])
                suites[url] += [s for s in entry_suites if s not in suites[url] and "/" not in s and "$" not in s]
    return suites


#: Where apt keeps the Release files of the host's sources.
APT_LISTS = "/var/lib/apt/lists"
#: Characters apt quotes (``%xx``) in a list file name (its URItoFileName) besides ``/`` -> ``_``.
_APT_QUOTED = set('\\|{}[]<>"^~_=!@#$%^&*')


def _apt_list_prefix(url):
    """The file name prefix apt gives the index files of archive ``url`` in :data:`APT_LISTS`."""
    rest = url.split("://", 1)[1]
    rest = rest.rpartition("@")[2] if "@" in rest.split("/", 1)[0] else rest
    quoted = "".join(f"%{ord(c):02x}" if c in _APT_QUOTED or ord(c) <= 0x20 or ord(c) >= 0x7f else c for c in rest)
    return quoted.replace("/", "_")


def _release_origin(text):
    try:
        return deb822.Release(text.splitlines()).get("Origin", "").strip() or None
    except (ValueError, KeyError) as e:  # a damaged or foreign file: no origin
        LOG.debug("Unparsable Release file: %s", e)
        return None


def archive_origin(url, suites, lists_dir=APT_LISTS, fetch=True, timeout=10.0):
    """The ``Origin`` of archive ``url`` as the Release file of its first readable suite says:
    apt's copy in ``lists_dir`` first, else (``fetch``) the archive's ``dists/SUITE/Release``; None if unknown."""
    prefix = _apt_list_prefix(url)
    for suite in suites:
        for name in ("InRelease", "Release"):
            path = os.path.join(lists_dir, f"{prefix}dists_{suite.replace('/', '_')}_{name}")
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    origin = _release_origin(f.read())
            except OSError:
                continue
            if origin:
                return origin
    if fetch:
        import requests  # pylint: disable=import-outside-toplevel
        for suite in suites:
            try:
                response = requests.get(f"{url}dists/{suite}/Release", timeout=timeout)
            except requests.RequestException as e:
                LOG.warning("Can't read the Release of %s %s: %s", url, suite, e)
                continue
            origin = _release_origin(response.text) if response.status_code == 200 else None
            if origin:
                return origin
    return None


def archives_from_origins(origins, paths=None, lists_dir=APT_LISTS, fetch=True):
    """The archives of the host's APT sources whose Release ``Origin`` is one of ``origins``
    (``setup --archives-from-origins``: the host's own mirrors of Debian or Ubuntu, not the
    third-party archives its sources may list too)."""
    wanted = set(origins)
    return sorted(url for url, suites in _apt_source_suites(paths).items()
                  if archive_origin(url, suites, lists_dir=lists_dir, fetch=fetch) in wanted)


#: Archive paths an apt-cacher-ng proxy serves by default (remapped to the official mirrors).
PROXY_ARCHIVE_PATHS = ("debian", "debian-security", "ubuntu")
APT_CACHER_NG_PORT = 3142


def archives_from_proxy(fqdn, port=APT_CACHER_NG_PORT, timeout=2.0):
    """If an apt-cacher-ng answers on ``http://<fqdn>:<port>``, return its archive URLs for known paths."""
    import requests  # pylint: disable=import-outside-toplevel

    proxy = f"http://{fqdn}:{port}"
    try:
        requests.get(f"{proxy}/", timeout=timeout, allow_redirects=False)
    except requests.RequestException as e:
        LOG.debug("No apt proxy at %s: %s", proxy, e)
        return []
    return [f"{proxy}/{path}/" for path in PROXY_ARCHIVE_PATHS]
