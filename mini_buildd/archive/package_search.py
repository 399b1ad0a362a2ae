"""Package search of the web pages' header box (issue #18): which source packages of this
instance's repositories have a source or binary package whose name contains the query.

Read from the index files reprepro exported (``dists/DIST/COMPONENT/source/Sources`` and
``.../binary-ARCH/Packages``, plain or compressed) of every distribution of every repository
(snapshots aside); each file is parsed again only when it changed (size, mtime). No reprepro run.
"""

import dataclasses
import os
import re
import threading

from mini_buildd.archive import indices

_FIELD = re.compile(rb"^(Package|Source|Version): *(\S+)", re.MULTILINE)
_CACHE = {}
_LOCK = threading.Lock()
#: Results shown at most.
MAX_RESULTS = 200


@dataclasses.dataclass
class Hit:
    """A source package that matched: its name, the binaries that matched, where it is."""

    source: str
    binaries: set = dataclasses.field(default_factory=set)
    distributions: dict = dataclasses.field(default_factory=dict)  # diststr -> version


def _read(path):
    """The uncompressed bytes of an index file (by its suffix, as :data:`mini_buildd.archive.indices.COMPRESSIONS` knows them)."""
    decompress = next(d for suffix, d in indices.COMPRESSIONS if path.endswith(suffix))
    with open(path, "rb") as f:
        return decompress(f.read())


def _entries(path):
    """``[(package, source, version)]`` of an index file (cached while it is unchanged)."""
    st = os.stat(path)
    key = (st.st_size, st.st_mtime_ns)
    with _LOCK:
        cached = _CACHE.get(path)
    if cached and cached[0] == key:
        return cached[1]
    out = []
    for block in _read(path).split(b"\n\n"):
        fields = {k.decode(): v.decode(errors="replace") for k, v in _FIELD.findall(block)}
        if "Package" in fields:
            out.append((fields["Package"], fields.get("Source", fields["Package"]), fields.get("Version", "")))
    with _LOCK:
        _CACHE[path] = (key, out)
    return out


def _index_files(dist_dir):
    """The Sources and Packages files below one distribution dir (one per index: plain preferred)."""
    found = {}
    for root, dirs, files in os.walk(dist_dir):
        dirs[:] = [d for d in dirs if d != "snapshots"]
        for name in files:
            base = name[:-3] if name.endswith((".xz", ".gz")) else name
            if base in ("Sources", "Packages"):
                key = os.path.join(root, base)
                if key not in found or not name.endswith((".xz", ".gz")):
                    found[key] = (base, os.path.join(root, name))
    return sorted(found.values())


def names(repositories_dists, most=5000):
    """Every source and binary package name (sorted; at most ``most``): the search box's suggestions."""
    out = set()
    for _diststr, dist_dir in repositories_dists:
        for _kind, path in _index_files(dist_dir):
            for package, source, _version in _entries(path):
                out.update((package, source.split(" ")[0]))
    return sorted(out)[:most]


def search(repositories_dists, query):
    """Source packages matching ``query`` (case-insensitive substring of a source or binary name),
    exact source matches first: ``[Hit]``. ``repositories_dists``: ``[(diststr, dist dir)]``."""
    q = query.strip().lower()
    if not q:
        return []
    hits = {}
    for diststr, dist_dir in repositories_dists:
        for kind, path in _index_files(dist_dir):
            for package, source, version in _entries(path):
                source = source.split(" ")[0]
                binary_match = kind == "Packages" and q in package.lower()
                if q not in source.lower() and not binary_match:
                    continue
                hit = hits.setdefault(source, Hit(source))
                if binary_match:
                    hit.binaries.add(package)
                if kind == "Sources":
                    hit.distributions[diststr] = version
                else:
                    hit.distributions.setdefault(diststr, version.split(" ")[0])
    ordered = sorted(hits.values(), key=lambda h: (h.source.lower() != q, q not in h.binaries, h.source))
    return ordered[:MAX_RESULTS]
