"""Binary package indices for installability checks (issue #16).

This module owns:

- the base sources' ``Packages`` indices of a distribution (base source and extra sources, each of
  its components, one architecture): fetched from the source's fastest archive, checked against
  the sizes and SHA256 sums of the source's Release file (itself verified with the source's APT
  keys, as :mod:`mini_buildd.archive.release` does when the source is checked) and cached
  uncompressed in the home (``config.paths.base_index``); a cached index is reused while the
  archive's Release still lists the same hash, and when the archive can not be reached;
- :class:`PackagesIndex`: a ``Packages`` file read once (cached per file and modification) into
  what a check needs: where each stanza is, who provides what, which names a stanza depends on,
  which packages are essential;
- :meth:`PackagesIndex.closure`: the stanzas an installation of some packages can possibly use
  (the dependency closure over names and provides, essential packages included), so
  dose-distcheck reads a few hundred stanzas instead of a whole distribution.
"""

import bz2
import gzip
import hashlib
import logging
import lzma
import os
import re
import threading
import time

import requests

from mini_buildd import config, errors
from mini_buildd.archive import release
from mini_buildd.tools import gnupg

LOG = logging.getLogger(__name__)

#: Compressions tried, best first: (suffix, decompressor).
COMPRESSIONS = ((".xz", lzma.decompress), (".gz", gzip.decompress), (".bz2", bz2.decompress), ("", bytes))
#: A cached index is trusted without asking the archive for this long (seconds).
FRESH_FOR = 600
TIMEOUT = 60


class IndexUnavailable(errors.Unavailable):
    """A base index can not be had (no archive answers and nothing is cached): the check can not run."""


# ------------------------------------------------------------------------------------------------ relations
_RELATION_NAME = re.compile(r"^\s*([a-z0-9][a-z0-9+.-]*)")


def relation_names(value):
    """Package names of a relation field (``a (>= 1) | b:any, c [amd64] <!nocheck>``), alternatives included."""
    names = []
    for alternative in re.split(r"[,|]", value or ""):
        m = _RELATION_NAME.match(alternative)
        if m:
            names.append(m.group(1))
    return names


# ------------------------------------------------------------------------------------------------ Packages files
_FIELD = re.compile(rb"^(Package|Provides|Depends|Pre-Depends|Essential): *(.*)$", re.MULTILINE)


class PackagesIndex:
    """One ``Packages`` file, read for dependency closures (see the module doc)."""

    def __init__(self, path):
        self.path = str(path)
        #: name -> [(offset, length)] of the stanzas of that package (several versions possible)
        self.stanzas = {}
        #: name -> [(offset, length)] of the stanzas providing that name
        self.providers = {}
        #: (offset, length) -> names it depends on (Depends, Pre-Depends)
        self.depends = {}
        self.essential = []
        with open(self.path, "rb") as f:
            data = f.read()
        pos = 0
        for block in data.split(b"\n\n"):
            where = (pos, len(block))
            pos += len(block) + 2
            if not block.strip():
                continue
            fields = {name.decode(): value.decode(errors="replace").strip() for name, value in _FIELD.findall(block)}
            package = fields.get("Package")
            if not package:
                continue
            self.stanzas.setdefault(package, []).append(where)
            for provided in relation_names(fields.get("Provides", "")):
                self.providers.setdefault(provided, []).append(where)
            self.depends[where] = relation_names(fields.get("Depends", "")) + relation_names(fields.get("Pre-Depends", ""))
            if fields.get("Essential", "").lower() == "yes":
                self.essential.append(where)

    def names(self):
        return set(self.stanzas)

    def closure(self, names, with_essential=True):
        """Every stanza an installation of ``names`` (and of the essential packages) may use."""
        todo = list(names)
        seen_names, out = set(), set()
        pending = list(self.essential) if with_essential else []
        while todo or pending:
            while todo:
                name = todo.pop()
                if name in seen_names:
                    continue
                seen_names.add(name)
                pending += self.stanzas.get(name, []) + self.providers.get(name, [])
            while pending:
                where = pending.pop()
                if where in out:
                    continue
                out.add(where)
                todo += [n for n in self.depends.get(where, []) if n not in seen_names]
        return sorted(out)

    def write(self, stanzas, out_path):
        """Write the ``stanzas`` (offsets from :meth:`closure`) as a ``Packages`` file."""
        with open(self.path, "rb") as src, open(out_path, "wb") as out:
            for offset, length in stanzas:
                src.seek(offset)
                out.write(src.read(length).strip(b"\n") + b"\n\n")


_LOADED = {}
_LOADED_LOCK = threading.Lock()


def load(path):
    """The :class:`PackagesIndex` of ``path``, read again only when the file changed (size, mtime)."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _LOADED_LOCK:
        index = _LOADED.get(str(path))
        if index is not None and index[0] == key:
            return index[1]
    index = PackagesIndex(path)
    with _LOADED_LOCK:
        _LOADED[str(path)] = (key, index)
    return index


# ------------------------------------------------------------------------------------------------ base indices
def _release_entries(rel):
    """``{file name: (sha256, size)}`` of a parsed Release."""
    return {e["name"]: (e["sha256"], int(e["size"])) for e in rel.get("SHA256", [])}


def _verified_release(source, archive_url):
    with gnupg.TmpKeyring(parent=config.paths.tmp) as keyring:
        for key in source.apt_keys.all():
            if key.key:
                keyring.add_pub_key(key.key)
        signed, sig, _url = release.fetch_release(archive_url, source.codename)
        rel = release.verified_release(keyring, signed, sig)
    release.check_release(rel, source.identifiers, source.check_valid_until)
    return rel


def _candidates(source, component, arch):
    prefix = source.remove_from_component
    names = [f"{component}/binary-{arch}/Packages"]
    if prefix and not component.startswith(prefix):
        names.append(f"{prefix}{component}/binary-{arch}/Packages")
    return [(name + suffix, decompress) for name in names for suffix, decompress in COMPRESSIONS]


def _fresh(path):
    sidecar = f"{path}.sha256"
    return os.path.exists(path) and os.path.exists(sidecar) and time.time() - os.path.getmtime(sidecar) < FRESH_FOR


def _fetch(source, archive_url, rel, component, arch, path):
    """Download, verify and store one index; return False if the Release lists none for it."""
    entries = _release_entries(rel)
    sidecar = f"{path}.sha256"
    for name, decompress in _candidates(source, component, arch):
        if name not in entries:
            continue
        sha256, size = entries[name]
        if os.path.exists(path) and os.path.exists(sidecar):
            with open(sidecar, encoding="utf-8") as f:
                if f.read().strip() == sha256:
                    os.utime(sidecar)
                    return True
        response = requests.get(f"{archive_url}dists/{source.codename}/{name}", timeout=TIMEOUT)
        if response.status_code != 200:
            LOG.warning("%s %s: HTTP %s", archive_url, name, response.status_code)
            continue
        data = response.content
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
            raise IndexUnavailable(f"{archive_url}dists/{source.codename}/{name} does not match its Release (size or SHA256): refused")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.new"
        with open(tmp, "wb") as f:
            f.write(decompress(data))
        os.replace(tmp, path)
        with open(sidecar, "w", encoding="utf-8") as f:
            f.write(sha256 + "\n")
        LOG.info("Base index %s: %s (%d bytes) verified and stored.", os.path.basename(path), name, size)
        return True
    # The source has no such index (e.g. a component it does not carry): remembered as empty.
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb"):
        pass
    with open(sidecar, "w", encoding="utf-8") as f:
        f.write("absent\n")
    return False


def base_indices(distribution, arch):
    """Paths of the verified ``Packages`` indices of ``distribution``'s base and extra sources for ``arch``
    (fetched or refreshed as needed; see the module doc)."""
    sources = [distribution.base_source] + [ps.source for ps in distribution.extra_sources.all()]
    components = [c.name for c in distribution.components.all()]
    paths = []
    for source in sources:
        targets = [(c, config.paths.base_index(source.origin, source.codename, c, arch)) for c in components]
        if all(_fresh(p) for _c, p in targets):
            paths += [p for _c, p in targets if os.path.getsize(p)]
            continue
        archive = source.mbd_archive()
        try:
            if archive is None:
                raise release.ReleaseError(f"source {source} has no checked archive")
            rel = _verified_release(source, archive.url)
            for component, path in targets:
                if _fetch(source, archive.url, rel, component, arch, path):
                    paths.append(path)
        except (release.ReleaseError, requests.RequestException, OSError, lzma.LZMAError, EOFError) as e:
            cached = [p for _c, p in targets if os.path.exists(p)]
            if not cached:
                raise IndexUnavailable(f"No index of {source} for {arch}: {e}") from e
            LOG.warning("Base indices of %s (%s): using the cached copies (%s).", source, arch, e)
            paths += cached
    return [str(p) for p in paths]
