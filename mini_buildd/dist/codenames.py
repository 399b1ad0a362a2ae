"""Codename knowledge: what mini-buildd knows about Debian/Ubuntu codenames (upstream §2.3, §4.3).

This module owns:

- the archive signing keys (long ids) per release and which of them sign a codename's sources;
- the codeversion rule (:func:`guess_codeversion`);
- the codename table (:data:`CODENAMES`, :class:`Codename`): origin, version, keys, extra
  sources (security, backports; :class:`ExtraSource`), components, per-codename Distribution
  and Chroot options used by the ``setup`` call, and the Distribution model defaults these
  options differ from;
- generated defaults for unknown codenames and the codenames ``setup --from-origins`` selects
  (distro-info when installed).
"""

import dataclasses
import datetime
import logging
import re

LOG = logging.getLogger(__name__)

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
