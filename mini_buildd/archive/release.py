"""Checking a Source against real archives (upstream §2.3): ping every archive, fetch
``dists/<codename>/InRelease`` (or ``Release`` + ``Release.gpg``), verify it with the source's
APT keys, check identifiers and ``Valid-Until``, and record what the Release says.
"""

import datetime
import email.utils
import logging
import time

import requests
from debian import deb822

from mini_buildd import config, dist, errors
from mini_buildd.tools import gnupg

LOG = logging.getLogger(__name__)

TIMEOUT = 20


class ReleaseError(errors.ConfigError):
    """A source does not match any archive; the message says why for each archive."""


def ping(url, timeout=5):
    """Milliseconds for ``GET <url>dists/`` (any HTTP answer, 4xx too, counts as alive); -1 if unreachable."""
    start = time.monotonic()
    try:
        requests.get(url + "dists/", timeout=timeout, allow_redirects=False)
    except requests.RequestException as e:
        LOG.info("Archive %s unreachable: %s", url, e)
        return -1.0
    return (time.monotonic() - start) * 1000.0


def fetch_release(archive_url, codename):
    """Return ``(signed_bytes, detached_sig_bytes_or_None, url)`` or raise ReleaseError."""
    base = f"{archive_url}dists/{codename}/"
    try:
        r = requests.get(base + "InRelease", timeout=TIMEOUT)
        if r.status_code == 200:
            return r.content, None, base + "InRelease"
        r = requests.get(base + "Release", timeout=TIMEOUT)
        if r.status_code == 200:
            sig = requests.get(base + "Release.gpg", timeout=TIMEOUT)
            if sig.status_code != 200:
                raise ReleaseError(f"{base}Release has no Release.gpg (HTTP {sig.status_code})")
            return r.content, sig.content, base + "Release"
        raise ReleaseError(f"{base}: no InRelease or Release (HTTP {r.status_code})")
    except requests.RequestException as e:
        raise ReleaseError(f"{base}: {e}") from e


def available(archive_urls, codename):
    """True if any of the archives carries ``dists/<codename>/`` (InRelease or Release)."""
    for url in archive_urls:
        for name in ("InRelease", "Release"):
            try:
                if requests.head(f"{url}dists/{codename}/{name}", timeout=TIMEOUT, allow_redirects=True).status_code == 200:
                    return True
            except requests.RequestException:
                pass
    return False


def parse_date(value):
    return email.utils.parsedate_to_datetime(value).astimezone(datetime.timezone.utc)


def check_release(release, identifiers, check_valid_until=True, now=None):
    """Raise ReleaseError if the parsed Release does not match ``identifiers`` or has expired."""
    for key, expected in identifiers.items():
        actual = release.get(key)
        if actual != expected:
            raise ReleaseError(f"Release field {key} is '{actual}', expected '{expected}'")
    if check_valid_until and "Valid-Until" in release:
        now = now or datetime.datetime.now(datetime.timezone.utc)
        valid_until = parse_date(release["Valid-Until"])
        if valid_until < now:
            raise ReleaseError(f"Release expired (Valid-Until {release['Valid-Until']}): the archive is outdated, "
                               f"or disable 'check valid until' for this source")


def verified_release(keyring, signed, detached_sig):
    """Verify with ``keyring`` (a TmpKeyring); return the parsed Release or raise naming the signers."""
    result = keyring.verify(signed, detached_sig=detached_sig)
    if not result.valid:
        signers = ", ".join(result.signer_key_ids) or "none"
        raise ReleaseError(f"No accepted signature found (Release signed by key ids: {signers}; "
                           f"add the right APT keys to the source)")
    data = signed if detached_sig is not None else result.data
    return deb822.Release(data)


def check_source(source):
    """Check ``source`` (a Source model) against every Archive; record matching archives and Release info.

    (The Archive, Component and Architecture models are those of the source's relations: this module
    is imported without Django, by the setup operation's command line.)"""
    archives = list(source.archives.model.objects.all())
    if not archives:
        raise ReleaseError("No archives configured: add the archive URLs (setup --archives-from-apt-sources).")
    failures, matches = [], []
    with gnupg.TmpKeyring(parent=config.paths.tmp) as keyring:
        for key in source.apt_keys.all():
            if key.key:
                keyring.add_pub_key(key.key)
        release = None
        for archive in archives:
            archive.ping = ping(archive.url)
            archive.save()
            if archive.ping < 0:
                failures.append(f"{archive.url}: unreachable")
                continue
            try:
                signed, sig, url = fetch_release(archive.url, source.codename)
                this = verified_release(keyring, signed, sig)
                check_release(this, source.identifiers, source.check_valid_until)
            except ReleaseError as e:
                failures.append(f"{archive.url}: {e}")
                continue
            matches.append((archive, url))
            release = release or this
    if not matches:
        raise ReleaseError(f"Source {source} matches no archive: " + "; ".join(failures))

    fastest, url = min(matches, key=lambda m: m[0].ping)
    prefix = source.remove_from_component
    components = sorted({c.removeprefix(prefix) if prefix else c for c in release.get("Components", "").split()})
    architectures = sorted(set(release.get("Architectures", "").split()) - {"all"})
    source.description = release.get("Description", "")[:255]
    source.codeversion_guessed = dist.guess_codeversion(source.origin, release.get("Version", ""), source.codename)
    source.release_url = url
    type(source).objects.filter(pk=source.pk).update(description=source.description, codeversion_guessed=source.codeversion_guessed,
                                                     release_url=url)
    source.archives.set([m[0] for m in matches])
    source.components.set([source.components.model.objects.get_or_create(name=c)[0] for c in components])
    source.architectures.set([source.architectures.model.objects.get_or_create(name=a)[0] for a in architectures])
    LOG.info("Source %s: %d archive(s) match, fastest %s (%.1f ms), codeversion %s.",
             source, len(matches), fastest.url, fastest.ping, source.codeversion)
