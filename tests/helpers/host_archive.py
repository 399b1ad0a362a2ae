"""The Debian archive the test host itself uses, looked up at run time.

Tests that debootstrap or run apt need an archive URL; we take it from the host's apt sources
(deb822 ``/etc/apt/sources.list.d/*.sources`` first, then one-line ``sources.list`` files) so
that no mirror host name is ever written into the code base.
"""

import functools
import pathlib
import re

from debian import deb822

from mini_buildd.tools import call

APT_DIR = pathlib.Path("/etc/apt")
KEYRING = pathlib.Path("/usr/share/keyrings/debian-archive-keyring.gpg")
CODENAME = "bookworm"


def _deb822_files(apt_dir):
    return sorted((apt_dir / "sources.list.d").glob("*.sources"))


def _one_line_files(apt_dir):
    return [f for f in [apt_dir / "sources.list"] + sorted((apt_dir / "sources.list.d").glob("*.list")) if f.is_file()]


def _candidates(apt_dir):
    """(url, suites) of every 'deb' source, in the order apt reads them (deb822 first)."""
    for path in _deb822_files(apt_dir):
        with open(path, encoding="utf-8") as f:
            for para in deb822.Deb822.iter_paragraphs(f):
                if para.get("Enabled", "yes").strip().lower() == "no":
                    continue
                if "deb" not in para.get("Types", "").split():
                    continue
                suites = para.get("Suites", "").split()
                for url in para.get("URIs", "").split():
                    yield url, suites
    for path in _one_line_files(apt_dir):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            m = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m:
                yield m.group(1), [m.group(2)]


def archive_url(codename=CODENAME, apt_dir=APT_DIR):
    """URL of the host's archive carrying ``codename`` itself (not -security/-updates); else the first 'deb' URL.

    Raises LookupError if the host has no apt 'deb' sources.
    """
    candidates = list(_candidates(pathlib.Path(apt_dir)))
    if not candidates:
        raise LookupError(f"No apt 'deb' sources found in {apt_dir}")
    for url, suites in candidates:
        if codename in suites:
            return url
    return candidates[0][0]


def keyring_path():
    """The Debian archive keyring file."""
    return KEYRING


@functools.lru_cache(maxsize=None)
def host_arch():
    """``dpkg --print-architecture``."""
    return call.run(["dpkg", "--print-architecture"]).strip()


def sources_list(codename=CODENAME, components=("main",)):
    """A one-line sources.list text for ``codename`` from the host's archive."""
    return f"deb {archive_url(codename)} {codename} {' '.join(components)}\n"
