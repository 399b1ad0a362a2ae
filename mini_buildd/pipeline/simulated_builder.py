"""Simulated builds (bench mode; issue #17, "Simulated builder network"): a test mode in which a
builder turns each buildrequest into a signed buildresult after a fixed delay, with no sbuild and
no chroot. It measures dispatch (builder choice, transfers, results, re-dispatch), not building.

Enabled only by two explicit environment settings read when the daemon starts
(:func:`configure`):

- ``MINI_BUILDD_SIMULATED_BUILDS=SECONDS``: the delay of each simulated build;
- ``MINI_BUILDD_BENCH_MODE=1``: the opt-in; without it a daemon given the first one refuses to start.

``MINI_BUILDD_SIMULATED_CHROOTS`` (``codename:arch[,...]``, default ``bookworm:amd64``) lists the
chroots such a builder announces in its ``status`` (it has no real ones), so packagers pick it.
The mode shows in the ``status`` answer (``simulated_builds``) and as a banner on every web page.

Results are never installed: every simulated buildresult carries ``X-Mini-Buildd-Simulated`` and a
packager (in any mode) ends such a package with a FAILED event saying so (:func:`refuse_install`).
"""

import logging
import os
import pathlib
import re
import time

from mini_buildd import changes, config, errors, instance, services
from mini_buildd.events import Type as EventType
from mini_buildd.tools import gnupg

LOG = logging.getLogger(__name__)

ENV_DELAY, ENV_OPT_IN, ENV_CHROOTS = "MINI_BUILDD_SIMULATED_BUILDS", "MINI_BUILDD_BENCH_MODE", "MINI_BUILDD_SIMULATED_CHROOTS"
DEFAULT_CHROOTS = "bookworm:amd64"
#: Buildresult fields of a simulated build (the delay; epoch seconds of the builder's acceptance).
FIELD, FIELD_ACCEPTED = "X-Mini-Buildd-Simulated", "X-Mini-Buildd-Simulated-Accepted"
#: The error title of a package ended because its results are simulated.
REFUSED_TITLE = "Simulated build: never installed"
_CHROOT_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]*:[a-z0-9-]+$")


class SimulatedError(errors.BadRequest, ValueError):
    """The bench settings are wrong (the daemon refuses to start)."""


def parse_settings(environ):
    """``(delay seconds, [codename:arch])`` from ``environ``, or None when the mode is off.
    Raises :class:`SimulatedError` without the opt-in or on bad values."""
    value = environ.get(ENV_DELAY)
    if value is None or value == "":
        return None
    if environ.get(ENV_OPT_IN) != "1":
        raise SimulatedError(f"{ENV_DELAY} is set but {ENV_OPT_IN}=1 is not: simulated builds are a bench mode "
                             "(their results are never installed); set both to use it.")
    try:
        delay = float(value)
    except ValueError as e:
        raise SimulatedError(f"{ENV_DELAY}: not a number of seconds: {value!r}") from e
    if not 0 <= delay <= 3600:
        raise SimulatedError(f"{ENV_DELAY}: {delay} is not within 0..3600 seconds")
    chroots = [c.strip() for c in environ.get(ENV_CHROOTS, DEFAULT_CHROOTS).split(",") if c.strip()]
    bad = [c for c in chroots if not _CHROOT_RE.match(c)]
    if bad or not chroots:
        raise SimulatedError(f"{ENV_CHROOTS}: not codename:arch: {', '.join(bad) or '(empty)'}")
    return delay, chroots


def configure(environ=None):
    """Daemon start: set ``config.runtime.simulated_builds`` from the environment; return an error
    text (the daemon then refuses to start) or None."""
    try:
        settings = parse_settings(os.environ if environ is None else environ)
    except SimulatedError as e:
        return str(e)
    config.runtime.simulated_builds = settings
    if settings:
        LOG.warning("BENCH MODE: simulated builds (%ss, chroots %s): no sbuild runs, results are never installed.",
                    settings[0], ", ".join(settings[1]))
    return None


def enabled():
    return bool(getattr(config.runtime, "simulated_builds", None))


def banner():
    """The web banner text in this mode, else ''."""
    if not enabled():
        return ""
    delay, chroots = config.runtime.simulated_builds
    return (f"BENCH MODE: simulated builds ({delay:g} s, {', '.join(chroots)}): no sbuild runs here and "
            "results are never installed.")


def amend_status(result):
    """The ``status`` call in this mode: ``simulated_builds`` and the simulated chroots announced."""
    if not enabled():
        return result
    delay, chroots = config.runtime.simulated_builds
    result["simulated_builds"] = {"delay": delay, "chroots": list(chroots),
                                  "note": "bench mode: no sbuild, results are never installed"}
    result["chroots"] = sorted(set(result.get("chroots") or []) | set(chroots))
    return result


# ------------------------------------------------------------------------------------------------ builder side
def mark(bres_path, gpg, accepted):
    """Add the simulated fields to a buildresult (after its timecode) and sign it again."""
    path = pathlib.Path(bres_path)
    lines = gnupg.unsign(path.read_text(encoding="utf-8")).splitlines()
    at = next((i + 1 for i, line in enumerate(lines) if line.startswith("X-Mini-Buildd-Timecode:")), 1)
    delay = config.runtime.simulated_builds[0]
    lines[at:at] = [f"{FIELD}: {delay:g}", f"{FIELD_ACCEPTED}: {accepted:.6f}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    gpg.sign_file(path)


def build(builder, build_obj, make_event):
    """One simulated build (in the build's thread, holding a slot): BUILDING, wait the delay (a
    cancel ends it early), a signed buildresult with the simulated fields, BUILT, upload."""
    breq = build_obj.breq
    build_dir = pathlib.Path(breq.path).parent
    events_dir = config.paths.events_of(*breq.bkey_parts)
    gpg = instance.gnupg()
    services.log_event(make_event(EventType.BUILDING, breq), save_dir=events_dir)
    build_obj.started = time.monotonic()
    delay = config.runtime.simulated_builds[0]
    build_obj.cancel_event.wait(delay)
    canceled = build_obj.cancel_event.is_set()
    buildlog = build_dir / breq.buildlog_name
    buildlog.write_text(f"Simulated build (bench mode, {ENV_DELAY}={delay:g}): no sbuild ran, nothing was built.\n",
                        encoding="utf-8")
    bres = changes.create_buildresult(breq, build_dir, build_dir, sbuild_summary={} if canceled else {"Status": "successful"},
                                      buildlog_path=buildlog, canceled_by=build_obj.canceled_by if canceled else None,
                                      gnupg=gpg)
    mark(bres.path, gpg, getattr(build_obj, "accepted", time.time()))
    bres = changes.Buildresult(bres.path)
    services.log_event(make_event(EventType.BUILT, bres, {"simulated": True}), save_dir=events_dir)
    builder.upload_result(bres.path)


# ------------------------------------------------------------------------------------------------ packager side
def simulated_archs(buildresults):
    """Architectures whose buildresult is simulated (``{arch: Buildresult}``)."""
    return sorted(arch for arch, bres in buildresults.items() if bres.x_get("Simulated"))


def refuse_install(package, problem, log_failed):
    """A package with any simulated buildresult is never installed: ``log_failed(extra)`` ends it
    (a FAILED event naming the reason); True if it did."""
    archs = simulated_archs(package.buildresults)
    if not archs:
        return False
    LOG.warning("Package %s: simulated buildresults (%s): not installed.", package.key, ", ".join(archs))
    log_failed({"buildresults": {arch: b.to_event_extra() for arch, b in package.buildresults.items()},
                "simulated": archs,
                "error": problem(REFUSED_TITLE, f"Results of simulated builds (bench mode) for {', '.join(archs)} "
                                 "are never installed into a repository.", 409)})
    return True
