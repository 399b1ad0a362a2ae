"""Test helper: make small real Debian source packages (native, debhelper) and their source
``.changes``, optionally signed, and wait for events of the daemon."""

import os
import pathlib
import subprocess
import textwrap
import time

import requests

MAINTAINER = "mini-buildd test <test@example.org>"


def source_paragraph(name, build_depends=""):
    """The source paragraph of a test package's ``debian/control`` (lines ending with a newline)."""
    lines = [f"Source: {name}", "Section: misc", "Priority: optional", f"Maintainer: {MAINTAINER}"]
    lines += [f"Build-Depends: {build_depends}"] if build_depends else []
    return "\n".join(lines + ["Standards-Version: 4.6.2", "Rules-Requires-Root: no"]) + "\n"


def make_source_package(workdir, name, version, distribution, *, arch="all", fail=False, build_depends="",
                        changelog_extra="", gnupghome=None, key_id=None, build_sleep=0, payload=None, autopkgtests=None,
                        depends=""):
    """Create ``name_version`` in ``workdir``; return the path of the ``_source.changes``.

    ``autopkgtests``: ``{file name: text}`` written to ``debian/tests/`` (``control`` and the
    tests' scripts; texts starting with ``#!`` are made executable): the package has autopkgtests.
    ``depends``: more relations for the binary package's Depends."""
    workdir = pathlib.Path(workdir)
    src = workdir / f"{name}-{version.split('~')[0]}"
    (src / "debian" / "source").mkdir(parents=True, exist_ok=True)
    bd = "debhelper-compat (= 13)" + (f", {build_depends}" if build_depends else "")
    (src / "debian" / "control").write_text(source_paragraph(name, bd) + textwrap.dedent(f"""\

        Package: {name}
        Architecture: {arch}
        Depends: ${{misc:Depends}}{", " + depends if depends else ""}
        Description: mini-buildd test package {name}
         A package made by the mini-buildd test suite.
        """))
    extra = "".join(f"  * {line}\n" for line in changelog_extra.splitlines() if line)
    (src / "debian" / "changelog").write_text(
        f"{name} ({version}) {distribution}; urgency=medium\n\n  * Test upload.\n{extra}\n"
        f" -- {MAINTAINER}  Sun, 22 Nov 2026 00:00:00 +0000\n")
    rules = "#!/usr/bin/make -f\n%:\n\tdh $@\n"
    if fail:
        rules += "\noverride_dh_auto_build:\n\t@echo 'This package always fails to build.'; false\n"
    elif build_sleep:
        rules += f"\noverride_dh_auto_build:\n\tsleep {int(build_sleep)}\n"
    (src / "debian" / "rules").write_text(rules)
    os.chmod(src / "debian" / "rules", 0o755)
    (src / "debian" / "source" / "format").write_text("3.0 (native)\n")
    (src / "debian" / "copyright").write_text("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
                                              "Files: *\nCopyright: 2026 test\nLicense: GPL-2+\n")
    (src / "hello.txt").write_text(payload or f"hello from {name} {version}\n")
    (src / "debian" / "install").write_text("hello.txt usr/share/" + name + "/\n")
    for test_name, text in (autopkgtests or {}).items():
        (src / "debian" / "tests").mkdir(exist_ok=True)
        (src / "debian" / "tests" / test_name).write_text(text)
        if text.startswith("#!"):
            os.chmod(src / "debian" / "tests" / test_name, 0o755)
    subprocess.run(["dpkg-buildpackage", "-S", "-d", "-us", "-uc", "-nc"], cwd=src, check=True, capture_output=True)
    changes = workdir / f"{name}_{version}_source.changes"
    if key_id:
        env = dict(os.environ, GNUPGHOME=str(gnupghome))
        subprocess.run(["debsign", f"-k{key_id}", "--re-sign", str(changes)], env=env, check=True, capture_output=True)
    return changes


def write_dput_cf(path, target, ftp_host_port):
    path = pathlib.Path(path)
    path.write_text(f"[{target}]\nmethod = ftp\nfqdn = {ftp_host_port}\nlogin = anonymous\nincoming = /incoming\n"
                    "allow_unsigned_uploads = 1\n", encoding="utf-8")
    return path


def dput(dput_cf, target, changes):
    return subprocess.run(["dput", "-f", "-c", str(dput_cf), "-u", target, str(changes)], capture_output=True, text=True,
                          check=False)


def wait_event(url, types, source, version, timeout=900, after=None):
    """Follow the event stream until an event of ``types`` for source/version arrives; return it."""
    return wait_for(url, lambda e: e["type"] in types and e["source"] == source and e["version"] == version,
                    timeout=timeout, after=after)


def raw_ftp_upload(host, port, paths):
    """Upload files as they are (no checks), in the given order, over plain FTP."""
    import ftplib  # pylint: disable=import-outside-toplevel
    ftp = ftplib.FTP()
    ftp.connect(host, port, timeout=30)
    ftp.login()
    ftp.cwd("/incoming")
    for p in paths:
        p = pathlib.Path(p)
        with open(p, "rb") as f:
            ftp.storbinary(f"STOR {p.name}", f)
    ftp.quit()


def now_iso():
    import datetime  # pylint: disable=import-outside-toplevel
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def wait_for(url, predicate, timeout=900, after=None, verify=True):
    """Follow the event stream (from ``after``, default: the whole queue) until ``predicate(event)``;
    ``verify``: as requests' (a CA file for an instance on https)."""
    deadline = time.time() + timeout
    after = after or "1970-01-01T00:00:00+00:00"
    while time.time() < deadline:
        try:
            r = requests.get(f"{url}/static/events.attach", params={"after": after}, timeout=60, verify=verify)
        except requests.Timeout:
            continue
        if r.status_code != 200:
            time.sleep(1)
            continue
        event = r.json()
        after = event["timestamp"]
        if predicate(event):
            return event
    raise AssertionError(f"No matching event within {timeout}s")


def tree_digest(root):
    """{relative path: sha256} of every file below ``root`` (to prove nothing changed)."""
    import hashlib  # pylint: disable=import-outside-toplevel
    root = pathlib.Path(root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}
