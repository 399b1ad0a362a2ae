"""Installability of a repository distribution before and after a change (issue #16).

This module owns the question "does this migration (or removal) leave the target distribution
installable?", answered by Debian's dose-distcheck (:mod:`mini_buildd.tools.dose`) on the real
index files: the target's ``Packages`` as reprepro exported them, changed the way the operation
would change them (the source's binaries taken out, the candidate version's put in), checked
against the distribution's base sources (:mod:`mini_buildd.archive.indices`), for each
architecture of the distribution.

A change is refused (:class:`NotInstallable`, HTTP 409) when a binary of the candidate can not
be installed, or when a package of the target that was installable before would not be anymore.
What was broken before stays reported only in the suite report (:func:`refresh`), which the
package page shows.
"""

import dataclasses
import json
import logging
import os
import re
import tempfile

from debian import debfile

from mini_buildd import config, errors
from mini_buildd.archive import indices
from mini_buildd.tools import dose

LOG = logging.getLogger(__name__)


class NotInstallable(errors.Conflict):
    """The change would leave packages that can not be installed (the message lists the relations)."""


@dataclasses.dataclass
class Stanza:
    """One binary package of a repository ``Packages`` file."""

    package: str
    version: str
    source: str
    architecture: str
    depends: list
    text: bytes


_FIELD = re.compile(rb"^(Package|Version|Source|Architecture|Depends|Pre-Depends): *(.*)$", re.MULTILINE)


def read_packages(paths):
    """The :class:`Stanza` list of ``Packages`` files (missing files count as empty)."""
    out = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        for block in data.split(b"\n\n"):
            if not block.strip():
                continue
            fields = {n.decode(): v.decode(errors="replace").strip() for n, v in _FIELD.findall(block)}
            if "Package" not in fields:
                continue
            source = fields.get("Source", fields["Package"]).split(" ")[0]
            depends = indices.relation_names(fields.get("Depends", "")) + indices.relation_names(fields.get("Pre-Depends", ""))
            out.append(Stanza(fields["Package"], fields.get("Version", ""), source, fields.get("Architecture", ""), depends,
                              block.strip(b"\n") + b"\n"))
    return out


def suite_packages(repository, diststr, components, arch):
    """Paths of the ``Packages`` files reprepro exported for ``diststr`` (one per component)."""
    base = repository.mbd_path() / "dists" / diststr
    return [base / component / f"binary-{arch}" / "Packages" for component in components]


def stanzas_of_debs(paths):
    """The :class:`Stanza` of each binary package file (its control, as a ``Packages`` stanza would have it)."""
    out = []
    for path in paths:
        control = debfile.DebFile(str(path)).debcontrol()
        source = control.get("Source", control["Package"]).split(" ")[0]
        depends = indices.relation_names(control.get("Depends", "")) + indices.relation_names(control.get("Pre-Depends", ""))
        out.append(Stanza(control["Package"], control.get("Version", ""), source, control.get("Architecture", ""), depends,
                          control.dump().strip("\n").encode() + b"\n"))
    return out


def _write(stanzas, path):
    with open(path, "wb") as f:
        for s in stanzas:
            f.write(s.text + b"\n")


def _background(distribution, arch, stanzas, tmpdir):
    """Closure-reduced copies of the base indices for what ``stanzas`` may need."""
    names = {n for s in stanzas for n in s.depends}
    out = []
    for i, path in enumerate(indices.base_indices(distribution, arch)):
        index = indices.load(path)
        subset = os.path.join(tmpdir, f"bg{i}.Packages")
        index.write(index.closure(names), subset)
        out.append(subset)
    return out


def _broken(arch, stanzas, background, tmpdir, name):
    if not stanzas:
        return {}
    fg = os.path.join(tmpdir, f"{name}.Packages")
    _write(stanzas, fg)
    return {b.key: b for b in dose.distcheck(arch, [fg], background)}


def check(distribution, repository, diststr, source, candidate=(), arch_list=None):
    """Problems (``[dose.Broken]``) a change of ``diststr`` would cause: ``source``'s binaries replaced
    by ``candidate`` (stanzas; none = removal). Candidate binaries that can not be installed and
    packages of the target that become uninstallable count; nothing else."""
    components = [c.name for c in distribution.components.all()]
    problems = []
    with tempfile.TemporaryDirectory(prefix="installability-", dir=config.paths.tmp) as tmpdir:
        for arch in arch_list or distribution.mbd_architectures():
            before = read_packages(suite_packages(repository, diststr, components, arch))
            arch_candidate = [s for s in candidate if s.architecture in (arch, "all")]
            after = [s for s in before if s.source != source] + arch_candidate
            background = _background(distribution, arch, before + after, tmpdir)
            broken_before = _broken(arch, before, background, tmpdir, f"before-{arch}")
            broken_after = _broken(arch, after, background, tmpdir, f"after-{arch}")
            new = {(s.package, s.architecture) for s in arch_candidate}
            for key, broken in broken_after.items():
                if key in new or key not in broken_before:
                    problems.append(broken)
    return problems


def describe(diststr, problems, removal=False, what=None):
    """The refusal's text: the change, then one line per problem."""
    what = what or ("Removing it" if removal else "Migrating it")
    lines = [f"{what} would leave packages of {diststr} that can not be installed:"]
    lines += [f"- {p}" for p in problems]
    return "\n".join(lines)


def candidate_stanzas(repository, distribution, diststr, source, version):
    """The binaries of ``source`` ``version`` in ``diststr`` (all architectures of the distribution)."""
    components = [c.name for c in distribution.components.all()]
    seen, out = set(), []
    for arch in distribution.mbd_architectures():
        for s in read_packages(suite_packages(repository, diststr, components, arch)):
            if s.source == source and s.version.split(":")[-1] == version.split(":")[-1]:
                key = (s.package, s.architecture)
                if key not in seen:
                    seen.add(key)
                    out.append(s)
    return out


# ------------------------------------------------------------------------------------------------ suite reports
def refresh(distribution, repository, diststr):
    """Check every package of ``diststr`` and store the report for the package page; return it:
    ``{"diststr", "broken": {package: [reason...]}}``."""
    components = [c.name for c in distribution.components.all()]
    broken = {}
    with tempfile.TemporaryDirectory(prefix="installability-", dir=config.paths.tmp) as tmpdir:
        for arch in distribution.mbd_architectures():
            stanzas = read_packages(suite_packages(repository, diststr, components, arch))
            background = _background(distribution, arch, stanzas, tmpdir)
            for b in _broken(arch, stanzas, background, tmpdir, arch).values():
                source = next((s.source for s in stanzas if s.package == b.package), b.package)
                broken.setdefault(source, []).append(str(b))
    report = {"diststr": diststr, "broken": broken}
    path = config.paths.installability_report(diststr)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(json.dumps(report, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return report


def report_of(diststr):
    """The stored report of ``diststr`` (None if never checked)."""
    try:
        return json.loads(config.paths.installability_report(diststr).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
