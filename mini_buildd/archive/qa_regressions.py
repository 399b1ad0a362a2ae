"""QA regressions between two versions of a source package (issue #16).

This module owns what a build's QA outcome is, as its INSTALLED event keeps it (per architecture:
the lintian tags sbuild's log showed and the lintian, piuparts and autopkgtest results), and the
difference that counts as a regression when a version is to replace another in a suite: a lintian
error (``E:`` tag) the old version did not have, or a piuparts or autopkgtest result that went
from pass to something else. :mod:`mini_buildd.archive.gates` refuses or warns with it, the
package page shows it.
"""

import glob
import json
import logging

from mini_buildd import config

LOG = logging.getLogger(__name__)

#: sbuild's QA checks kept per architecture (event fields ``sbuild_<check>``).
CHECKS = ("lintian", "piuparts", "autopkgtest")
#: Results that count as a pass.
PASSED = ("pass", "passed", "ok")


def outcome(source, version):
    """``{"lintian_errors": set, "checks": {arch: {check: result}}}`` of the newest INSTALLED event of
    ``source`` ``version`` (None: no such event, e.g. a package installed before events were kept)."""
    pattern = str(config.paths.events_of(glob.escape(source), glob.escape(version), "*", "*", "*_INSTALLED.json"))
    found = sorted(glob.glob(pattern))
    if not found:
        return None
    try:
        with open(found[-1], encoding="utf-8") as f:
            results = json.load(f).get("extra", {}).get("buildresults", {})
    except (OSError, ValueError) as e:
        LOG.warning("QA outcome of %s %s unreadable (%s): %s", source, version, found[-1], e)
        return None
    errors, checks = set(), {}
    for arch, result in results.items():
        if not isinstance(result, dict):
            continue
        tags = [t.strip() for t in str(result.get("lintian_tags") or "").split(" | ")]
        errors |= {t for t in tags if t.startswith("E: ")}
        checks[arch] = {c: str(result[f"sbuild_{c}"]) for c in CHECKS if result.get(f"sbuild_{c}")}
    return {"lintian_errors": errors, "checks": checks}


def regressions(source, old_version, new_version):
    """What ``new_version`` does worse than ``old_version`` (sentences; empty: no regression, or unknown)."""
    old, new = outcome(source, old_version), outcome(source, new_version)
    if old is None or new is None:
        return []
    out = [f"new lintian error: {tag}" for tag in sorted(new["lintian_errors"] - old["lintian_errors"])]
    for arch, checks in sorted(new["checks"].items()):
        for check in CHECKS[1:]:
            before, after = old["checks"].get(arch, {}).get(check), checks.get(check)
            if before in PASSED and after is not None and after not in PASSED:
                out.append(f"{check} on {arch}: {before} -> {after}")
    return out


def describe(source, old_version, new_version, target, found):
    return (f"QA regression of {source} {new_version} against {old_version} in {target}:\n"
            + "\n".join(f"- {line}" for line in found))
