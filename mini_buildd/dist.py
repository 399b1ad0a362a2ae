"""Distribution knowledge: what mini-buildd knows about Debian/Ubuntu codenames, and pure helpers.

This module owns:

- distribution strings (``CODENAME-REPOID-SUITE[-rollbackN]``, :class:`DistStr`);
- the codename table: origin, version, archive signing keys (long ids), codeversion rule,
  extra sources (security, backports), components, per-codename Distribution and Chroot options
  used by the ``setup`` call (upstream §2.3, §4.3);
- discovery of native architectures (``arch-test``/``dpkg``) and of archive URLs from the host's
  APT sources or an apt-cacher-ng proxy;
- layout defaults as data (:data:`LAYOUTS`, upstream §3.2, §3.3) and suite sort order;
- QA check modes and sbuild status words (upstream §6.4), sbuild block names (upstream §6.2);
- version helpers: placeholders, mandatory regex check, port/rebuild versions (upstream §3.4, §3.8).

It imports no Django. Upload option parsing lives in :mod:`mini_buildd.pipeline.uploadoptions`.
"""

import dataclasses
import datetime
import enum
import glob
import logging
import os
import re
import shutil

from mini_buildd.tools import call

LOG = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Distribution strings (upstream §3.1)
# ---------------------------------------------------------------------------------------------

DISTSTR_REGEX = re.compile(r"^(\w+)-(\w+)-(\w+)(?:-rollback(\d+))?$", re.ASCII)


class DistStr:
    """A parsed distribution string ``CODENAME-REPOID-SUITE[-rollbackN]``.

    >>> d = DistStr("bookworm-test-unstable-rollback2")
    >>> d.codename, d.repository, d.suite, d.rollback
    ('bookworm', 'test', 'unstable', 2)
    >>> d.get(), d.get(rollback=0), str(d)
    ('bookworm-test-unstable', 'bookworm-test-unstable-rollback0', 'bookworm-test-unstable-rollback2')
    """

    def __init__(self, diststr):
        match = DISTSTR_REGEX.match(diststr or "")
        if match is None:
            raise ValueError(f"Malformed distribution '{diststr}': expected CODENAME-REPOID-SUITE[-rollbackN] "
                             "(three alphanumeric parts separated by '-', e.g. 'bookworm-test-unstable')")
        self.codename, self.repository, self.suite = match.group(1), match.group(2), match.group(3)
        self.rollback = None if match.group(4) is None else int(match.group(4))

    @classmethod
    def build(cls, codename, repository, suite, rollback=None):
        """Construct from parts (validated like a parsed string)."""
        return cls(f"{codename}-{repository}-{suite}" + ("" if rollback is None else f"-rollback{rollback}"))

    def get(self, rollback=None):
        """Return ``CODENAME-REPOID-SUITE``, with ``-rollback<rollback>`` appended if ``rollback`` is given."""
        base = f"{self.codename}-{self.repository}-{self.suite}"
        return base if rollback is None else f"{base}-rollback{int(rollback)}"

    @property
    def is_rollback(self):
        return self.rollback is not None

    def __str__(self):
        return self.get(self.rollback)

    def __repr__(self):
        return f"DistStr('{self}')"

    def __eq__(self, other):
        return isinstance(other, DistStr) and str(self) == str(other)

    def __hash__(self):
        return hash(str(self))


# ---------------------------------------------------------------------------------------------
# Archive signing keys (long ids of primary keys; checked against the installed keyrings by tests)
# ---------------------------------------------------------------------------------------------

#: "Debian Archive Automatic Signing Key (N/codename)", by major release number.
DEBIAN_ARCHIVE_KEYS = {
    5: "9AA38DCD55BE302B",
    6: "AED4B06F473041FA",
    7: "8B48AD6246925553",
    8: "7638D0442B90D010",
    9: "E0B11894F66AEC98",
    10: "DC30D7C23CBBABEE",
    11: "73A4F27B8DD47936",
    12: "B7C5D7D6350947F8",
    13: "225629DF75B188BD",
}

#: "Debian Security Archive Automatic Signing Key (N/codename)" (exists since jessie).
DEBIAN_SECURITY_KEYS = {
    8: "9D6D8F6BC857C906",
    9: "EDA0D2388AE22BA9",
    10: "4DFAB270CAA96DFA",
    11: "A48449044AAD5C5D",
    12: "254CF3B5AEC0A8F0",
    13: "9904613D4CCE68C6",
}

#: "Debian Stable Release Key" per release.
DEBIAN_RELEASE_KEYS = {
    5: "4D270D06F42584E6",
    6: "64481591B98321F9",
    7: "6FB2A1C265FFB764",
    8: "CBF8D6FD518E17E1",
    9: "EF0F382A1A7B6500",
    10: "DCC9EFBF77E11517",
    11: "605C66F00D6C9793",
    12: "F8D2585B8783D481",
    13: "762F67A0B2C39DE4",
}

#: "Ubuntu Archive Automatic Signing Key" (2004), (2012) and (2018).
UBUNTU_ARCHIVE_KEYS = {
    2004: "40976EAF437D05B5",
    2012: "3B4FE6ACC0B21F32",
    2018: "871920D1991BC93C",
}


def _keys_around(table, rank, before=1, after=2):
    """Keys of ``table`` for releases ``rank-before .. rank+after`` (those that exist).

    A release's Release files are signed by the automatic keys current at signing time: its own,
    the previous one and (while it stays on the mirror, or when re-signed in the archive) later ones.
    """
    return [table[r] for r in range(rank - before, rank + after + 1) if r in table]


def _current(table, count=3):
    """The newest ``count`` keys of ``table`` (used for unreleased and rolling codenames)."""
    return [table[r] for r in sorted(table)[-count:]]


def _release_keys(table, rank, released):
    """Keys for a release: around its rank if released and known there, else the current ones."""
    return (_keys_around(table, rank) if released else []) or _current(table)


def _unique(items):
    return list(dict.fromkeys(items))


# ---------------------------------------------------------------------------------------------
# Codeversion (upstream §2.3)
# ---------------------------------------------------------------------------------------------

def guess_codeversion(origin, version_string, codename):
    """Guess the codeversion from a Release ``Version`` field.

    Debian >= wheezy: major only; Debian <= squeeze and others (Ubuntu): major+minor digits;
    no version (rolling, testing): ``~`` + uppercase codename.

    >>> guess_codeversion("Debian", "12.11", "bookworm"), guess_codeversion("Debian", "6.0.10", "squeeze")
    ('12', '60')
    >>> guess_codeversion("Ubuntu", "18.04", "bionic"), guess_codeversion("Debian", "", "sid")
    ('1804', '~SID')
    """
    numbers = re.findall(r"\d+", version_string or "")
    if not numbers:
        return "~" + codename.upper()
    if origin == "Debian" and int(numbers[0]) >= 7:
        return str(int(numbers[0]))
    return "".join(numbers[:2])


# ---------------------------------------------------------------------------------------------
# Codename table
# ---------------------------------------------------------------------------------------------

DEBIAN, UBUNTU = "Debian", "Ubuntu"
DEBIAN_BACKPORTS = "Debian Backports"

#: Components per origin; Debian >= bookworm adds non-free-firmware.
COMPONENTS = {
    "debian": ("main", "contrib", "non-free"),
    "debian-nff": ("main", "contrib", "non-free", "non-free-firmware"),
    "ubuntu": ("main", "universe", "restricted", "multiverse"),
}

#: Defaults of the Distribution model fields this module overrides per codename (upstream §2.4).
DEFAULT_SBUILD_CONFIG_BLOCKS = "set-default-path ccache"
DEFAULT_SBUILD_SETUP_BLOCKS = "apt-setup apt-update ccache eatmydata"
DEFAULT_LINTIAN_EXTRA_OPTIONS = ("--info --suppress-tags "
                                 "bad-distribution-in-changes-file,bogus-mail-host,bogus-mail-host-in-debian-changelog")
DEFAULT_LINTIAN_WARNFAIL_OPTIONS = "--fail-on error,warning"
DEFAULT_PIUPARTS_EXTRA_OPTIONS = "--info"
DEFAULT_PIUPARTS_ROOT_ARG = "sudo"
DEFAULT_INTERNAL_APT_PRIORITY = 1
DEFAULT_DEBOOTSTRAP_COMMAND = "/usr/sbin/debootstrap"


@dataclasses.dataclass
class ExtraSource:
    """An extra source (PrioritySource) that comes with a base codename in ``setup``."""

    origin: str
    codename: str                      # directory below dists/
    priority: int                      # APT pin priority of the PrioritySource
    apt_keys: tuple = ()
    extra_identifiers: dict = dataclasses.field(default_factory=dict)
    remove_from_component: str = ""

    def as_dict(self):
        return dataclasses.asdict(self) | {"apt_keys": list(self.apt_keys)}


@dataclasses.dataclass(frozen=True)
class Codename:
    """What we know about one base codename.

    ``rank`` is the Debian major release number (or the Ubuntu YYMM number) used for ordering and
    for the "older than" workarounds; ``version`` is the expected Release ``Version`` ("" while not
    released or rolling); ``known`` is false for a generated default.
    """

    codename: str
    origin: str
    rank: int                          # 5..14 for Debian, 1804.. for Ubuntu; 9999 = rolling/unknown
    version: str = ""
    lts: bool = False                  # Ubuntu LTS
    known: bool = True

    @property
    def is_debian(self):
        return self.origin == DEBIAN

    @property
    def released(self):
        return bool(self.version)

    @property
    def codeversion(self):
        """The codeversion this codename is expected to get (same rule as for Release files)."""
        return guess_codeversion(self.origin, self.version, self.codename)

    # -- keys ----------------------------------------------------------------------------------

    @property
    def apt_keys(self):
        """Long ids of the keys that sign the base source's Release file."""
        if self.is_debian:
            release_key = _keys_around(DEBIAN_RELEASE_KEYS, self.rank, 0, 0) if self.released else []
            return _unique(_release_keys(DEBIAN_ARCHIVE_KEYS, self.rank, self.released) + release_key)
        return self._ubuntu_keys()

    def _ubuntu_keys(self):
        keys = [UBUNTU_ARCHIVE_KEYS[2012], UBUNTU_ARCHIVE_KEYS[2018]]
        if self.rank <= 1804:
            keys.insert(0, UBUNTU_ARCHIVE_KEYS[2004])
        return keys

    # -- extra sources (upstream §4.3) -------------------------------------------------------------

    @property
    def extra_sources(self):
        return self._debian_extra_sources() if self.is_debian else self._ubuntu_extra_sources()

    def _debian_extra_sources(self):
        name, rank, released = self.codename, self.rank, self.released
        extras = []
        if name != "sid":
            if released and rank <= 8:  # before (and when) the security key came, archive keys signed security
                security_keys = _unique(_keys_around(DEBIAN_ARCHIVE_KEYS, rank) + _keys_around(DEBIAN_SECURITY_KEYS, rank))
            else:
                security_keys = _release_keys(DEBIAN_SECURITY_KEYS, rank, released)
            if released and rank <= 10:
                extras.append(ExtraSource(DEBIAN, f"{name}/updates", 500, tuple(security_keys),
                                          {"Codename": name, "Label": "Debian-Security"}, "updates/"))
            else:
                extras.append(ExtraSource(DEBIAN, f"{name}-security", 500, tuple(security_keys), {}, "updates/"))

        backports_keys = tuple(_release_keys(DEBIAN_ARCHIVE_KEYS, rank, released))
        # Backports exist in the main archive since squeeze; -sloppy once the next release is out.
        if (released and rank >= 6) or not self.known:
            extras.append(ExtraSource(DEBIAN_BACKPORTS, f"{name}-backports", 1, backports_keys))
            newest_released = max(c.rank for c in CODENAMES.values() if c.is_debian and c.released)
            if rank < newest_released or not self.known:
                extras.append(ExtraSource(DEBIAN_BACKPORTS, f"{name}-backports-sloppy", 1, backports_keys))
        return extras

    def _ubuntu_extra_sources(self):
        keys = tuple(self._ubuntu_keys())
        return [ExtraSource(UBUNTU, f"{self.codename}-{suite}", prio, keys,
                            {"Codename": self.codename, "Suite": f"{self.codename}-{suite}"})
                for suite, prio in (("security", 500), ("backports", 1))]

    # -- distribution and chroot options -------------------------------------------------------

    @property
    def components(self):
        if not self.is_debian:
            return list(COMPONENTS["ubuntu"])
        return list(COMPONENTS["debian-nff"] if self.rank >= 12 else COMPONENTS["debian"])

    @property
    def optional_architectures(self):
        """Architectures whose build failures are tolerated (ArchitectureOption.optional)."""
        return ["i386"] if not self.is_debian else []

    @property
    def distribution_options(self):
        """Distribution model field values that differ from the model defaults for this codename."""
        if not self.is_debian:
            return {"deb_build_options": "noddebs"}
        options = {}
        rank = self.rank
        if rank <= 10:   # lintian < 2.77 has no --fail-on
            options["lintian_warnfail_options"] = "--fail-on-warnings"
        if rank <= 6:    # lintian < 2.5 has no --suppress-tags
            options["lintian_extra_options"] = "--info"
        if rank <= 6:
            blocks = "apt-allow-unauthenticated apt-no-check-valid-until apt-setup apt-key-binary apt-key-add apt-update ccache"
            options["sbuild_setup_blocks"] = blocks + ("" if rank <= 5 else " eatmydata")
        elif rank == 7:
            options["sbuild_setup_blocks"] = "apt-allow-unauthenticated apt-setup apt-key-binary apt-update ccache eatmydata"
        elif rank == 8:
            options["sbuild_setup_blocks"] = "apt-no-check-valid-until apt-setup apt-key-binary apt-update ccache eatmydata"
        return options

    @property
    def chroot_options(self):
        """Chroot model field values that differ from the defaults for this codename."""
        options = {}
        if self.is_debian and self.rank <= 7:
            options["debootstrap_extra_options"] = "--include=realpath"  # coreutils < 8.15 lacks realpath
        if self.is_debian and self.rank <= 5:
            options["debootstrap_command"] = "/usr/sbin/mini-buildd-debootstrap-uname-2.6"
        return options

    def as_dict(self):
        """Everything ``setup`` needs for this codename, JSON-able."""
        return {
            "codename": self.codename, "origin": self.origin, "version": self.version,
            "codeversion": self.codeversion, "known": self.known,
            "apt_keys": list(self.apt_keys),
            "extra_sources": [e.as_dict() for e in self.extra_sources],
            "components": self.components,
            "optional_architectures": self.optional_architectures,
            "distribution_options": self.distribution_options,
            "chroot_options": self.chroot_options,
        }


ROLLING_RANK = 9999


def _table():
    entries = [
        Codename("lenny", DEBIAN, 5, "5.0"),
        Codename("squeeze", DEBIAN, 6, "6.0"),
        Codename("wheezy", DEBIAN, 7, "7"),
        Codename("jessie", DEBIAN, 8, "8"),
        Codename("stretch", DEBIAN, 9, "9"),
        Codename("buster", DEBIAN, 10, "10"),
        Codename("bullseye", DEBIAN, 11, "11"),
        Codename("bookworm", DEBIAN, 12, "12"),
        Codename("trixie", DEBIAN, 13, "13"),
        Codename("forky", DEBIAN, 14, ""),         # testing, not released
        Codename("sid", DEBIAN, ROLLING_RANK, ""),
        Codename("bionic", UBUNTU, 1804, "18.04", lts=True),
        Codename("focal", UBUNTU, 2004, "20.04", lts=True),
        Codename("jammy", UBUNTU, 2204, "22.04", lts=True),
        Codename("noble", UBUNTU, 2404, "24.04", lts=True),
    ]
    return {c.codename: c for c in entries}


#: Known codenames (setup data), ordered oldest first per origin.
CODENAMES = _table()


def _distro_info(origin):
    try:
        import distro_info  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    try:
        return {DEBIAN: distro_info.DebianDistroInfo, UBUNTU: distro_info.UbuntuDistroInfo}[origin]()
    except Exception as e:  # pylint: disable=broad-except  # missing or broken distro-info-data
        LOG.debug("distro-info unavailable for %s: %s", origin, e)
        return None


def _generated(codename, origin):
    """A generated default for a codename not in the table (uses distro-info for the version if available)."""
    version, rank = "", ROLLING_RANK
    info = _distro_info(origin)
    if info is not None:
        for release in info.get_all("object"):
            if release.series == codename and release.version:
                released = release.release is not None and release.release <= datetime.date.today()
                numbers = re.findall(r"\d+", release.version)
                if numbers and released:
                    version = ".".join(numbers[:2]) if origin == UBUNTU else numbers[0]
                    rank = int("".join(numbers[:2])) if origin == UBUNTU else int(numbers[0])
    return Codename(codename, origin, rank, version, lts=False, known=False)


def codename_info(codename, origin=None):
    """Return the :class:`Codename` for ``codename``; for unknown ones a generated default of ``origin``.

    Raises ValueError for an unknown codename without (or with an unsupported) origin.
    """
    known = CODENAMES.get(codename)
    if known is not None and origin in (None, known.origin):
        return known
    if origin not in (DEBIAN, UBUNTU):
        raise ValueError(f"Unknown codename '{codename}' (origin {origin!r}): no setup data; known: {', '.join(CODENAMES)}")
    return _generated(codename, origin)


def setup_codenames(origin, extent=""):
    """Codenames ``setup --from-origins ORIGIN[:EXTENT]`` selects (newest first).

    ``extent`` "" = supported, "lts" = also LTS/ELTS (Debian) or ESM (Ubuntu), "all" = every known.
    Uses distro-info when installed, else a static approximation from the table.
    """
    if extent not in ("", "lts", "all"):
        raise ValueError(f"Unknown origin extent '{extent}' (use '', 'lts' or 'all')")
    table = [c for c in CODENAMES.values() if c.origin == origin]
    if not table:
        raise ValueError(f"Unknown origin '{origin}' (known: {DEBIAN}, {UBUNTU})")
    table.sort(key=lambda c: c.rank, reverse=True)
    if extent == "all":
        return [c.codename for c in table]

    info = _distro_info(origin)
    if info is not None:
        wanted = set(info.supported())
        if extent == "lts":
            for method in ("lts_supported", "elts_supported", "supported_esm"):
                if hasattr(info, method):
                    wanted.update(getattr(info, method)())
    else:
        released = [c for c in table if c.released]
        unreleased = [c.codename for c in table if not c.released]
        if origin == DEBIAN:
            wanted = set(unreleased) | {c.codename for c in released[:3 if extent == "lts" else 1]}
        else:
            wanted = {c.codename for c in released[:4 if extent == "lts" else 2]}
    return [c.codename for c in table if c.codename in wanted]


# ---------------------------------------------------------------------------------------------
# Host discovery: native architectures, archives
# ---------------------------------------------------------------------------------------------

_ARCH_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def native_architectures():
    """Architectures this host runs natively: ``arch-test -n``, else dpkg's (+ i386 on amd64 if arch-test confirms)."""
    if shutil.which("arch-test"):
        try:
            archs = [line.strip() for line in call.run(["arch-test", "-n"]).splitlines() if _ARCH_RE.match(line.strip())]
            if archs:
                return _unique(archs)
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


def _uris_one_line(text):
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        parts = line.split(None, 1)
        if len(parts) < 2 or parts[0] not in ("deb", "deb-src"):
            continue
        rest = parts[1].strip()
        if rest.startswith("["):
            rest = rest.partition("]")[2].strip()
        if rest:
            yield rest.split()[0]


def _uris_deb822(text):
    stanzas, current, last = [], {}, None
    for line in text.splitlines() + [""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                stanzas.append(current)
            current, last = {}, None
        elif line[0] in " \t" and last:
            current[last] += " " + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            last = key.strip().lower()
            current[last] = value.strip()
    for stanza in stanzas:
        if stanza.get("enabled", "yes").lower() in ("no", "false", "0", "off"):
            continue
        if not set(stanza.get("types", "").split()) & {"deb", "deb-src"}:
            continue
        yield from stanza.get("uris", "").split()


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
    urls = set()
    for path in _apt_source_files(paths):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError as e:
            LOG.warning("Can't read APT sources file %s: %s", path, e)
            continue
        uris = _uris_deb822(text) if path.endswith(".sources") else _uris_one_line(text)
        urls.update(u for u in (_archive_url(uri) for uri in uris) if u)
    return sorted(urls)


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


# ---------------------------------------------------------------------------------------------
# Layouts (upstream §3.2, §3.3)
# ---------------------------------------------------------------------------------------------

DEFAULT_VERSION = "~%IDENTITY%%CODEVERSION%+1"
MANDATORY_VERSION_REGEX = r"~%IDENTITY%%CODEVERSION%\+[1-9]"
EXPERIMENTAL_DEFAULT_VERSION = "~%IDENTITY%%CODEVERSION%+0"
EXPERIMENTAL_MANDATORY_VERSION_REGEX = r"~%IDENTITY%%CODEVERSION%\+0"

#: Sort position of well-known suite names (stable first, experimental last).
SUITE_SORT = {"stable": 0, "testing": 1, "unstable": 2, "hotfix": 3, "snapshot": 4, "experimental": 5}


def suite_sort_key(name, experimental=False):
    """Sort key for suites: non-experimental before experimental, known names in SUITE_SORT order,
    ``experimental`` itself last of all, unknown names alphabetically within their group."""
    if name == "experimental":
        return (2, 0, name)
    return (1 if experimental else 0, SUITE_SORT.get(name, len(SUITE_SORT)), name)


def _suite(uploadable=True, experimental=False, migrates_to=None, rollback=0, build_keyring_package=False,
           not_automatic=True, but_automatic_upgrades=True):
    return {"uploadable": uploadable, "experimental": experimental, "migrates_to": migrates_to, "rollback": rollback,
            "build_keyring_package": build_keyring_package, "not_automatic": not_automatic,
            "but_automatic_upgrades": but_automatic_upgrades}


_DEFAULT_SUITES = {
    "stable": _suite(uploadable=False, rollback=6),
    "testing": _suite(uploadable=False, migrates_to="stable", rollback=3),
    "unstable": _suite(migrates_to="testing", rollback=9, build_keyring_package=True),
    "hotfix": _suite(migrates_to="stable", rollback=4),
    "snapshot": _suite(experimental=True, rollback=12),
    "experimental": _suite(experimental=True, rollback=6, but_automatic_upgrades=False),
}

_VERSIONS = {
    "default_version": DEFAULT_VERSION,
    "mandatory_version_regex": MANDATORY_VERSION_REGEX,
    "experimental_default_version": EXPERIMENTAL_DEFAULT_VERSION,
    "experimental_mandatory_version_regex": EXPERIMENTAL_MANDATORY_VERSION_REGEX,
}

#: Default layouts, created by the data migration / setup: name -> suites (ordered) + version fields.
LAYOUTS = {
    "Default": {
        "suites": {name: dict(options) for name, options in _DEFAULT_SUITES.items()},
        **_VERSIONS,
        "meta_distributions": {},
    },
    "Default (no rollbacks)": {
        "suites": {name: dict(options, rollback=0) for name, options in _DEFAULT_SUITES.items()},
        **_VERSIONS,
        "meta_distributions": {},
    },
    "Debian Developer": {
        "suites": {name: dict(_DEFAULT_SUITES[name], rollback=0) for name in ("stable", "testing", "unstable", "experimental")},
        **_VERSIONS,
        "mandatory_version_regex": ".*",
        "experimental_mandatory_version_regex": ".*",
        "meta_distributions": {"unstable": "sid-unstable", "experimental": "sid-experimental"},
    },
}


def apt_pin_priority(not_automatic, but_automatic_upgrades):
    """APT's default pin priority for a Release with these flags (upstream §3.2)."""
    if not not_automatic:
        return 500
    return 100 if but_automatic_upgrades else 1


# ---------------------------------------------------------------------------------------------
# QA modes and sbuild status words (upstream §6.4)
# ---------------------------------------------------------------------------------------------

class QAMode(enum.IntEnum):
    """How a QA check (lintian, piuparts, autopkgtest) affects a build."""

    DISABLED = 0   # don't run
    IGNORE = 1     # run, ignore the result
    ERRFAIL = 2    # fail on errors
    WARNFAIL = 3   # fail on warnings

    @classmethod
    def parse(cls, value):
        """From a QAMode, an int, or a name (case-insensitive, e.g. 'errfail', 'ERRFAIL', '2')."""
        if isinstance(value, cls):
            return value
        try:
            if isinstance(value, int) and not isinstance(value, bool):
                return cls(value)
            text = str(value).strip()
            return cls(int(text)) if text.isdigit() else cls[text.upper()]
        except (KeyError, ValueError):
            names = "|".join(m.name.lower() for m in cls)
            raise ValueError(f"Invalid QA mode '{value}' (use {names})") from None


SBUILD_STATUS_PASS = ("pass", "info", "successful")
SBUILD_STATUS_WARN = ("warn", "no tests", "unknown")
SBUILD_STATUS_FAIL = ("error", "fail", "failed")


def sbuild_check_passes(status_word, mode, ignore=False):
    """Whether a QA check with sbuild summary ``status_word`` passes under ``mode``.

    ``ignore`` (e.g. experimental suites) always passes. Unknown status words count as failures.
    """
    mode = QAMode.parse(mode)
    status = (status_word or "").strip().lower()
    return (ignore
            or status in SBUILD_STATUS_PASS
            or mode in (QAMode.DISABLED, QAMode.IGNORE)
            or (status in SBUILD_STATUS_WARN and mode != QAMode.WARNFAIL))


# ---------------------------------------------------------------------------------------------
# sbuild config and setup blocks (upstream §6.2): names and validation; contents live in sbuild.py
# ---------------------------------------------------------------------------------------------

SBUILD_CONFIG_BLOCKS = {
    "set-default-path": "Set sbuild's default $path explicitly",
    "ccache": "Prepend /usr/lib/ccache to $path and keep CCACHE_DIR in the per-chroot libdir",
}

SBUILD_SETUP_BLOCKS = {
    "apt-setup": "Install APT keys, sources.list and preferences for the build",
    "apt-update": "Run apt-get update (with timeouts and retries) and show apt-cache policy",
    "ccache": "Install ccache",
    "eatmydata": "Install eatmydata and preload it",
    "show-sbuildrc": "Print the generated .sbuildrc",
    "apt-key-binary": "Dearmor APT keys (for APT without armored key support, <= jessie)",
    "apt-key-add": "Add APT keys via apt-key (<= squeeze)",
    "apt-no-check-valid-until": "Ignore expired Valid-Until in Release files",
    "apt-allow-unauthenticated": "Allow unauthenticated APT sources",
    "apt-force-yes": "Use APT's --force-yes",
    "apt-no-cache": "Disable HTTP caching in APT",
    "apt-no-pipelining": "Disable HTTP pipelining in APT",
    "apt-clear": "Clear APT sources and keys of the chroot",
    "bash-devices": "Provide /dev/fd etc. for bash",
    "schroot-shm": "Mount a fresh /dev/shm",
    "sun-java6-license": "Pre-accept the sun-java6 license",
}


def validate_blocks(text, known=None):
    """Split a space-separated block list; raise ValueError on unknown or duplicate names.

    ``known`` defaults to :data:`SBUILD_SETUP_BLOCKS`.
    """
    known = SBUILD_SETUP_BLOCKS if known is None else known
    names = (text or "").split()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"Unknown sbuild block(s): {' '.join(unknown)} (known: {' '.join(known)})")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Duplicate sbuild block(s): {' '.join(duplicates)}")
    return names


def validate_setup_blocks(text):
    return validate_blocks(text, SBUILD_SETUP_BLOCKS)


def validate_config_blocks(text):
    return validate_blocks(text, SBUILD_CONFIG_BLOCKS)


# ---------------------------------------------------------------------------------------------
# Version helpers (upstream §3.4, §3.8)
# ---------------------------------------------------------------------------------------------

def substitute(template, identity, codeversion):
    """Replace ``%IDENTITY%`` and ``%CODEVERSION%`` placeholders."""
    return template.replace("%IDENTITY%", identity).replace("%CODEVERSION%", codeversion)


def version_matches_mandatory(version, regex):
    """Whether ``regex`` is found anywhere in ``version`` (unanchored search)."""
    return re.search(regex, version) is not None


def port_version(version, source_regex, target_default_version):
    """Version for an internal port to another distribution.

    The rightmost match of the (substituted) source mandatory regex is replaced by the target
    default version, keeping the source's ``+N`` revision and any suffix. A regex like ``.*``
    (matching empty at the end) just appends the target default version, as does a version with
    no match at all.

    >>> port_version("1.2.3-1~testSID+4fud15", r"~testSID\\+[1-9]", "~test70+1")
    '1.2.3-1~test70+4fud15'
    """
    matches = list(re.finditer(source_regex, version))
    if not matches:
        LOG.debug("Port: '%s' does not match '%s', appending '%s'", version, source_regex, target_default_version)
        return version + target_default_version
    match = matches[-1]
    revision = re.search(r"\+[0-9]+$", match.group())
    replacement = (re.sub(r"\+[0-9]+$", "", target_default_version) + revision.group()) if revision else target_default_version
    return version[:match.start()] + replacement + version[match.end():]


def rebuild_version(version, timestamp=None):
    """Version for a rebuild in the same distribution: ``+rebuilt<YYYYMMDDHHMMSS>`` (replacing an earlier one).

    ``timestamp`` is a datetime or a ``YYYYMMDDHHMMSS`` string (default: now, UTC).
    """
    if timestamp is None:
        timestamp = datetime.datetime.now(datetime.timezone.utc)
    if isinstance(timestamp, (datetime.datetime, datetime.date)):
        timestamp = timestamp.strftime("%Y%m%d%H%M%S")
    if not re.fullmatch(r"[0-9]{14}", str(timestamp)):
        raise ValueError(f"Invalid rebuild timestamp '{timestamp}' (expected YYYYMMDDHHMMSS)")
    return re.sub(r"\+rebuilt[0-9]+$", "", version) + f"+rebuilt{timestamp}"


def port_ext_version(version, default_version):
    """Version for an external port: the original version plus the target default version."""
    return version + default_version
