"""Watcher for ported packages (issue #16; upstream's roadmap "watcher").

This module owns the record of every port (internal ``port`` from one of our distributions, and
``port_ext`` from a DSC URL) with the origin's version it was made from, and the check whether the
origin moved on: the version in the origin distribution now (internal ports), or the newest
``<source>_<version>.dsc`` the DSC URL's directory lists (external ports: a pool directory of an
archive with directory listings, as Debian's mirrors and our own repositories have). When the
origin has another version, one ``PORT_OUTDATED`` event is logged (the package page shows it and
the instance mails it to the package's subscribers); when the target's repository has
``auto_update_ports``, the port is made again from the new version.

Records are kept in ``var/ports.json`` (``{"TARGET|SOURCE": record}``). Rebuilds (origin = target)
and ports of local files (``file://``: the generated keyring and test packages) are not watched.
The check runs after every install (for the distribution it changed) and hourly (cron job
``watch_ports``). The re-port itself is done by :mod:`mini_buildd.pipeline.ports`, which registers
it here (:func:`set_porter`), so this module imports nothing of the port machinery.
"""

import datetime
import json
import logging
import os
import re
import threading
import urllib.parse

import requests
from debian import debian_support

from mini_buildd import config, dist, services
from mini_buildd.events import Event, Type
from mini_buildd.models import Repository

LOG = logging.getLogger(__name__)

_LOCK = threading.Lock()
_PORTER = None
TIMEOUT = 30


def set_porter(porter):
    """``porter(record, origin_version)`` makes a port again (registered by :mod:`mini_buildd.pipeline.ports`)."""
    global _PORTER  # pylint: disable=global-statement  # one registration at import time
    _PORTER = porter


def _path():
    return config.paths.port_watch


def load():
    """All records, ``{key: record}``."""
    try:
        with open(_path(), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError as e:
        LOG.error("Port watch records unreadable (%s): starting anew", e)
        return {}


def _save(records):
    path = _path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(json.dumps(records, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def record(kind, source, origin, version, targets, options=None, allow_unauthenticated=False, user=None):
    """Watch the port of ``source`` ``version`` from ``origin`` (a distribution, or a DSC URL) to ``targets``."""
    if kind == "external" and not str(origin).startswith(("http://", "https://")):
        return
    with _LOCK:
        records = load()
        for target in targets:
            if kind == "internal" and target == origin:
                continue  # a rebuild
            records[f"{target}|{source}"] = {
                "kind": kind, "source": source, "from": origin, "version": version, "to": target,
                "options": options or "", "allow_unauthenticated": bool(allow_unauthenticated),
                "user": str(user) if user else "", "since": _now(), "outdated": None}
        _save(records)


_DSC_HREF = re.compile(r'href="([^"/?]+\.dsc)"')


def _newest_in_directory(dsc_url, source):
    """``(version, dsc URL)`` of the newest ``source`` DSC the directory of ``dsc_url`` lists (None if unknown)."""
    directory = dsc_url.rsplit("/", 1)[0] + "/"
    response = requests.get(directory, timeout=TIMEOUT)
    if response.status_code != 200:
        LOG.info("Port watch: %s answers %s", directory, response.status_code)
        return None
    found = []
    for href in _DSC_HREF.findall(response.text):
        name = urllib.parse.unquote(href)
        if name.startswith(f"{source}_"):
            found.append((debian_support.Version(name[len(source) + 1:-4]), urllib.parse.urljoin(directory, href)))
    if not found:
        return None
    version, url = max(found)
    return str(version), url


def origin_version(rec):
    """``(version, dsc URL or None)`` of the origin now; None if the origin does not have the source (any more)."""
    if rec["kind"] == "internal":
        d = dist.DistStr(rec["from"])
        repository = Repository.objects.filter(identity=d.repository).first()
        if repository is None:
            return None
        entries = repository.mbd_reprepro().ls(rec["source"]).get(rec["from"], [])
        return (entries[0]["version"], None) if entries else None
    return _newest_in_directory(rec["from"], rec["source"])


def _outdated(rec, version):
    services.log_event(Event(Type.PORT_OUTDATED, rec["to"], rec["source"], version, extra={
        "from": rec["from"], "ported_version": rec["version"], "origin_version": version, "kind": rec["kind"]}))


def check(origins=None):
    """Check the watched ports (those from ``origins`` only, if given); log PORT_OUTDATED for each
    origin that moved on, and port again where the target's repository auto-updates ports.
    Returns ``[(key, origin version, "outdated"|"ported"|error)]``."""
    results = []
    with _LOCK:
        records = load()
    for key, rec in sorted(records.items()):
        if origins is not None and rec["from"] not in origins:
            continue
        try:
            now = origin_version(rec)
        except Exception as e:  # pylint: disable=broad-except  # one origin's failure must not stop the others
            LOG.warning("Port watch %s: origin not readable: %s", key, e)
            results.append((key, None, f"error: {e}"))
            continue
        if now is None or dist.strip_epoch(now[0]) == dist.strip_epoch(rec["version"]):
            continue
        version, dsc_url = now
        if rec.get("outdated") != version:
            _outdated(rec, version)
            rec["outdated"] = version
            results.append((key, version, "outdated"))
        target_repo = Repository.objects.filter(identity=dist.DistStr(rec["to"]).repository).first()
        if target_repo is not None and target_repo.auto_update_ports and _PORTER is not None:
            try:
                _PORTER(rec, version, dsc_url)
                rec.update(version=version, outdated=None, since=_now())
                results.append((key, version, "ported"))
            except Exception as e:  # pylint: disable=broad-except  # the event says outdated; the next check tries again
                LOG.error("Port watch %s: port of %s failed: %s", key, version, e)
                results.append((key, version, f"error: {e}"))
        with _LOCK:
            current = load()
            if key in current:
                current[key] = rec
                _save(current)
    return results


def outdated_of(source):
    """The watched ports of ``source`` whose origin moved on (for the package page)."""
    return [r for r in load().values() if r["source"] == source and r.get("outdated")]


def run():
    """The cron job: check every watched port; a summary for the job log."""
    results = check()
    errors = [f"{key}: {what}" for key, _v, what in results if what.startswith("error")]
    if errors:
        raise RuntimeError("; ".join(errors))
    return f"outdated {sum(1 for r in results if r[2] == 'outdated')}, ported {sum(1 for r in results if r[2] == 'ported')}"
