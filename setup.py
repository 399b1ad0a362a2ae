#!/usr/bin/python3
"""Build and install description of the mini_buildd Python package (owns: setup.py only).

The Debian packaging (debian/) runs this through pybuild. Deliberately simple:

- The version is read from the text of mini_buildd/__init__.py (no import: importing the
  package would pull in Django, which is not needed to build).
- Packages are found with find_packages(), so a new module or subpackage (a directory with an
  __init__.py) is picked up without touching this file.
- Every non-Python file below mini_buildd/ (templates, static files, package templates,
  fixtures, ...) is shipped as package data. The list is computed by walking the tree, so it
  does not depend on MANIFEST.in or on a version control checkout.
- Runtime dependencies are Debian packages (see debian/control), so no install_requires here.
"""

import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "mini_buildd"

#: Console scripts. The target modules may not exist yet: the generated script only imports
#: its module when it is run, so adding the module is enough to make the command work.
#: mini-buildd (the daemon), mini-buildd-self-signed-certificate, mini-buildd-chroot-helper (root) and
#: mini-buildd-debug-build and mini-buildd-cruft (run by the admin as the daemon's user) and mini-buildd-backup
#: (root) are moved to /usr/sbin by debian/rules.
CONSOLE_SCRIPTS = [
    "mini-buildd = mini_buildd.cli.daemon:main",
    "mini-buildd-api = mini_buildd.cli.api:main",
    "mini-buildd-dput = mini_buildd.cli.dput:main",
    "mini-buildd-events = mini_buildd.cli.events:main",
    "mini-buildd-self-signed-certificate = mini_buildd.cli.certificate:main",
    "mini-buildd-chroot-helper = mini_buildd.roothelper:main",
    "mini-buildd-debug-build = mini_buildd.cli.debug_build:main",
    "mini-buildd-cruft = mini_buildd.cli.cruft:main",
    "mini-buildd-backup = mini_buildd.cli.backup:main",
]

#: Never shipped as data.
_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = (".pyc", ".pyo", "~", ".swp", ".orig", ".rej")


def read_version():
    """Return __version__ from mini_buildd/__init__.py without importing it."""
    with open(os.path.join(HERE, PACKAGE, "__init__.py"), encoding="UTF-8") as init:
        match = re.search(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", init.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError("No __version__ found in mini_buildd/__init__.py")
    return match.group(1)


def _is_package_dir(path):
    return os.path.isfile(os.path.join(path, "__init__.py"))


def package_data(packages):
    """Map each package to the data files (relative globs) that live below it.

    A file belongs to the nearest enclosing package. Inside a package directory itself, only
    non-Python files are data (Python modules are installed as modules). Below a directory
    that is not a package (templates/, static/, package-templates/, ...) every file is data,
    Python files included (e.g. a template's setup.py).
    """
    result = {}
    for package in packages:
        pkg_dir = os.path.join(HERE, *package.split("."))
        files = []
        for root, dirs, names in os.walk(pkg_dir):
            in_package_dir = _is_package_dir(root)
            # A package directory directly inside a package directory is a subpackage (found
            # by find_packages, which only descends through package directories): it is
            # handled as a package of its own.
            dirs[:] = sorted(d for d in dirs
                             if d not in _SKIP_DIRS
                             and not (in_package_dir and _is_package_dir(os.path.join(root, d))))
            for name in sorted(names):
                if name.endswith(_SKIP_SUFFIXES):
                    continue
                if in_package_dir and name.endswith(".py"):
                    continue
                rel = os.path.relpath(os.path.join(root, name), pkg_dir)
                # Escape glob characters: setuptools treats package_data entries as globs.
                files.append(re.sub(r"([*?\[])", r"[\1]", rel.replace(os.sep, "/")))
        if files:
            result[package] = files
    return result


PACKAGES = find_packages(where=HERE, include=[PACKAGE, PACKAGE + ".*"])

setup(
    name="mini-buildd",
    version=read_version(),
    description="Custom build daemon for Debian-based distributions",
    long_description=(
        "mini-buildd turns a Debian host into a build and APT archive service: uploads via "
        "FTP(S), builds with sbuild/schroot, archives with reprepro, web UI and JSON API."
    ),
    author="mini-buildd developers",
    author_email="mini-buildd@example.org",
    license="GPL-2+",
    python_requires=">=3.9",
    packages=PACKAGES,
    package_data=package_data(PACKAGES),
    include_package_data=False,
    zip_safe=False,
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Environment :: Web Environment",
        "Framework :: Django",
        "Intended Audience :: System Administrators",
        "License :: OSI Approved :: GNU General Public License v2 or later (GPLv2+)",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Topic :: Software Development :: Build Tools",
    ],
)
