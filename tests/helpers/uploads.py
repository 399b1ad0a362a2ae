"""Test helper: uploads to the shared e2e instance and what to check after them (the package's
listing in a repository, an upload that must be REJECTED without changing any repository)."""

import pathlib
import re
import subprocess
import time

from debian import deb822

from tests.helpers.packages import make_source_package, raw_ftp_upload, wait_for, tree_digest, now_iso, write_dput_cf, dput


def reprepro_ls(instance, source, repository="test"):
    """{distribution: version} of ``source`` in ``repository`` of the instance, as reprepro lists it
    (waiting while the daemon's own reprepro holds the repository's lock, e.g. a crontab job)."""
    for _ in range(120):
        proc = subprocess.run(["reprepro", "--basedir", str(instance.home / "repositories" / repository), "ls", source],
                              capture_output=True, text=True, check=False)
        if proc.returncode == 0 or "lock file" not in proc.stderr:
            break
        time.sleep(0.5)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    return {line.split("|")[2].strip(): line.split("|")[1].strip() for line in out.splitlines() if "|" in line}


def dput_upload(instance, tmp_path, name, version, dist="bookworm-test-unstable", **kwargs):
    """Make source package ``name`` ``version`` for ``dist`` and dput it (anonymous FTP); the changes path."""
    changes = make_source_package(tmp_path, name, version, dist, **kwargs)
    cf = write_dput_cf(pathlib.Path(tmp_path) / "dput.cf", "e2e", f"127.0.0.1:{instance.ftp_port}")
    proc = dput(cf, "e2e", changes)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return changes


def files_of(changes):
    """The files a changes file lists (next to it)."""
    with open(changes, encoding="utf-8") as f:
        c = deb822.Changes(f)
    return [changes.parent / e["name"] for e in c["Files"]]


def ftp_upload(instance, changes, files=None):
    """Upload ``files`` (default: the listed ones) then ``changes`` as they are, over plain FTP."""
    files = list(files if files is not None else files_of(changes))
    raw_ftp_upload("127.0.0.1", instance.ftp_port, files + [changes])


def plain(instance, changes, files=None):
    """An upload for :func:`expect_rejected`: ``changes`` (and ``files``) over plain FTP."""
    def do():
        ftp_upload(instance, changes, files)
        return changes.name
    return do, ()


def expect_rejected(instance, upload, reason_regex, repos=("test", "auth")):
    """Run ``upload`` (a ``(function, args)`` pair whose function returns the changes file name):
    it must get a REJECTED event whose detail matches ``reason_regex``, leave incoming empty and
    the repositories ``repos`` (those that exist) byte-identical."""
    roots = [instance.home / "repositories" / r for r in repos if (instance.home / "repositories" / r).exists()]
    before = [tree_digest(r) for r in roots]
    upload_fn, args = upload
    started = now_iso()
    name = upload_fn(*args)
    event = wait_for(instance.url, lambda e: e["type"] in ("REJECTED", "PACKAGING", "INSTALLED")
                     and e["extra"].get("changes", "").endswith(name), after=started)
    assert event["type"] == "REJECTED", event
    detail = event["extra"]["error"]["detail"]
    assert re.search(reason_regex, detail), detail
    assert not list((instance.home / "incoming").iterdir())
    assert [tree_digest(r) for r in roots] == before
