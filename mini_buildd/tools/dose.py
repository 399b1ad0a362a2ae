"""Wrapper for Debian's ``dose-distcheck`` (package dose-distcheck): which binary packages of a set
of ``Packages`` indices can not be installed, and why, in Debian's terms.

Nobody else runs dose-distcheck. :func:`distcheck` checks the *foreground* indices against the
*background* ones (background packages may be used to satisfy relations but are not reported) for
one native architecture, with essential packages always part of an installation (dose's
default), and returns the broken foreground packages with readable reasons, e.g.
``foo 1.0 (amd64): depends on libbar:amd64 (>= 2), which is missing`` or ``qux 1 (amd64):
conflicts with bash 5.2 (unsat-conflict bash:amd64)``.
"""

import dataclasses
import logging
import os
import re
import tempfile
from typing import Any, Iterable

import yaml

from mini_buildd.tools import call

LOG = logging.getLogger(__name__)

PROGRAM = "dose-distcheck"


class DoseError(call.CallError):
    """dose-distcheck failed (exit 64 or more: bad input or options); its output says why."""


@dataclasses.dataclass(frozen=True)
class Broken:
    """A foreground package dose-distcheck can not install, with its reasons (readable sentences)."""

    package: str
    version: str
    architecture: str
    reasons: tuple

    @property
    def key(self) -> tuple:
        return (self.package, self.architecture)

    def __str__(self) -> str:
        return f"{self.package} {self.version} ({self.architecture}): " + "; ".join(self.reasons)


_ARCH_QUALIFIER = re.compile(r"\b([a-z0-9][a-z0-9+.-]*):[a-z0-9][a-z0-9-]*")


def _relation(text: str) -> str:
    """A relation as dose prints it, without the architecture qualifiers it adds (``lib:amd64 (>= 2)`` -> ``lib (>= 2)``)."""
    return _ARCH_QUALIFIER.sub(r"\1", str(text))


def _pkg_str(pkg: dict) -> str:
    return f"{pkg.get('package')} {pkg.get('version')}"


def _reason_text(reason: dict) -> str:
    """One dose reason (``missing`` or ``conflict``) as a sentence."""
    if "missing" in reason:
        pkg = reason["missing"].get("pkg", {})
        chain = ""
        depchains = reason["missing"].get("depchains") or []
        if depchains:
            links = [f"{link.get('package')} -> {_relation(link.get('depends'))}" for link in depchains[0].get("depchain", []) if link.get("depends")]
            chain = f" (via {', '.join(links)})" if links else ""
        return f"{_pkg_str(pkg)} depends on {_relation(pkg.get('unsat-dependency'))}, which is missing{chain}"
    if "conflict" in reason:
        one, two = reason["conflict"].get("pkg1", {}), reason["conflict"].get("pkg2", {})
        what = one.get("unsat-conflict") or two.get("unsat-conflict") or ""
        return f"{_pkg_str(one)} conflicts with {_pkg_str(two)}" + (f" ({_relation(what)})" if what else "")
    return str(reason)


def parse_report(text: str) -> list:
    """The broken packages of a dose-distcheck YAML report (``-f -e`` output)."""
    data: Any = yaml.safe_load(text) or {}
    out = []
    for entry in data.get("report") or []:
        if entry.get("status") != "broken":
            continue
        out.append(Broken(str(entry.get("package")), str(entry.get("version")), str(entry.get("architecture")),
                          tuple(_reason_text(r) for r in entry.get("reasons") or [])))
    return out


def distcheck(native_arch: str, foreground: Iterable[os.PathLike], background: Iterable[os.PathLike] = (),
              timeout: float = 300) -> list:
    """Broken packages of ``foreground`` (``Packages`` files) with ``background`` available, for ``native_arch``."""
    fg, bg = [str(p) for p in foreground], [str(p) for p in background]
    if not fg:
        return []
    with tempfile.NamedTemporaryFile(prefix="dose-", suffix=".yaml") as out:
        argv: list = [PROGRAM, f"--deb-native-arch={native_arch}", "--failures", "--explain", "-o", out.name]
        for path in fg:
            argv += ["--fg", f"deb://{path}"]
        for path in bg:
            argv += ["--bg", f"deb://{path}"]
        try:
            call.run(argv, timeout=timeout)
        except call.CallError as e:
            # Exit 1: some packages are broken (the report says which); 64 and up: a real failure.
            if e.returncode != 1:
                raise DoseError(e.argv, e.returncode, e.output) from e
        with open(out.name, encoding="utf-8", errors="replace") as f:
            return parse_report(f.read())
