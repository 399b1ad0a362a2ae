"""Test helper: make small real Debian source packages (native; plain dpkg tools in ``debian/rules``,
or debhelper on request) and their source ``.changes``, optionally signed, and wait for events of
the daemon."""

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


#: ``debian/rules`` of a test package without debhelper: the binary package @NAME@ holds
#: ``/usr/share/@NAME@/hello.txt``, its copyright file (when the source has one), changelog and
#: md5sums, made with dpkg's own tools. A build then installs no build dependency (build-essential
#: is in every chroot) and runs no helper: a third of a small build's time, in every test that builds.
PLAIN_RULES = """\
#!/usr/bin/make -f
N := @NAME@
D := debian/$(N)

build: build-arch build-indep
build-@OTHER@ binary-@OTHER@:
build-@MINE@:
@BUILD@

binary-@MINE@: build-@MINE@
\trm -rf $(D)
\tinstall -d -m 0755 $(D)/DEBIAN $(D)/usr/share/$(N) $(D)/usr/share/doc/$(N)
\tinstall -m 0644 hello.txt $(D)/usr/share/$(N)/
\t[ ! -f debian/copyright ] || install -m 0644 debian/copyright $(D)/usr/share/doc/$(N)/
\tgzip -9nc debian/changelog > $(D)/usr/share/doc/$(N)/changelog.gz
\tchmod 0644 $(D)/usr/share/doc/$(N)/changelog.gz
\tcd $(D) && find usr -type f | LC_ALL=C sort | xargs md5sum > DEBIAN/md5sums
\tdpkg-gencontrol -p$(N) -P$(D)
\tdpkg-deb --root-owner-group --build $(D) ..

binary: binary-arch binary-indep

clean:
\trm -rf $(D) debian/files debian/*.substvars

.PHONY: build build-arch build-indep binary binary-arch binary-indep clean
"""


def _plain_rules(name, arch, fail, build_sleep, build_commands):
    commands = list(build_commands)
    if fail:
        commands.append("@echo 'This package always fails to build.'; false")
    elif build_sleep:
        commands.append(f"sleep {int(build_sleep)}")
    build = "".join(f"\t{c}\n" for c in commands)
    mine, other = ("indep", "arch") if arch == "all" else ("arch", "indep")
    return PLAIN_RULES.replace("@NAME@", name).replace("@BUILD@", build).replace("@MINE@", mine).replace("@OTHER@", other)


def make_source_package(workdir, name, version, distribution, *, arch="all", fail=False, build_depends="",
                        changelog_extra="", gnupghome=None, key_id=None, build_sleep=0, payload=None, autopkgtests=None,
                        depends="", debhelper=False, build_commands=()):
    """Create ``name_version`` in ``workdir``; return the path of the ``_source.changes``.

    ``autopkgtests``: ``{file name: text}`` written to ``debian/tests/`` (``control`` and the
    tests' scripts; texts starting with ``#!`` are made executable): the package has autopkgtests.
    ``depends``: more relations for the binary package's Depends. ``debhelper``: build with ``dh``
    (Build-Depends debhelper-compat 13, as most Debian packages) instead of :data:`PLAIN_RULES`;
    ``build_commands``: make recipe lines its build runs (before a ``build_sleep`` or ``fail``;
    plain rules only)."""
    workdir = pathlib.Path(workdir)
    src = workdir / f"{name}-{version.split('~')[0]}"
    (src / "debian" / "source").mkdir(parents=True, exist_ok=True)
    bd = ", ".join(x for x in ("debhelper-compat (= 13)" if debhelper else "", build_depends) if x)
    relations = ", ".join(x for x in ("${misc:Depends}" if debhelper else "", depends) if x)
    (src / "debian" / "control").write_text(source_paragraph(name, bd) + textwrap.dedent(f"""\

        Package: {name}
        Architecture: {arch}
        """) + (f"Depends: {relations}\n" if relations else "") + textwrap.dedent(f"""\
        Description: mini-buildd test package {name}
         A package made by the mini-buildd test suite.
        """))
    extra = "".join(f"  * {line}\n" for line in changelog_extra.splitlines() if line)
    (src / "debian" / "changelog").write_text(
        f"{name} ({version}) {distribution}; urgency=medium\n\n  * Test upload.\n{extra}\n"
        f" -- {MAINTAINER}  Sun, 22 Nov 2026 00:00:00 +0000\n")
    if debhelper:
        assert not build_commands, "build_commands: plain rules only"
        rules = "#!/usr/bin/make -f\n%:\n\tdh $@\n"
        if fail:
            rules += "\noverride_dh_auto_build:\n\t@echo 'This package always fails to build.'; false\n"
        elif build_sleep:
            rules += f"\noverride_dh_auto_build:\n\tsleep {int(build_sleep)}\n"
        (src / "debian" / "install").write_text("hello.txt usr/share/" + name + "/\n")
    else:
        rules = _plain_rules(name, arch, fail, build_sleep, build_commands)
    (src / "debian" / "rules").write_text(rules)
    os.chmod(src / "debian" / "rules", 0o755)
    (src / "debian" / "source" / "format").write_text("3.0 (native)\n")
    (src / "debian" / "copyright").write_text("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
                                              "Files: *\nCopyright: 2026 test\nLicense: GPL-2+\n")
    (src / "hello.txt").write_text(payload or f"hello from {name} {version}\n")
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
