"""Layout defaults as data (upstream §3.2, §3.3): the one source of the default layouts.

This module owns the default version fields (:data:`DEFAULT_VERSION` and friends, also the
Layout model's field defaults), the default layouts (:data:`LAYOUTS`, created by the data
migration and by ``setup`` through :mod:`mini_buildd.models.layouts`), the suite sort order and
APT's pin priority for a suite's Release flags.
"""

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
