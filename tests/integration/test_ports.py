"""Ports and generated packages (mini_buildd.pipeline.ports) with the real tools: the package templates
build (or, mbd-test-ftbfs, fail) with dpkg-buildpackage, the keyring package carries the
instance key and the APT sources, external (file://, http://) and internal ports produce signed
source changes with the right version, distribution, changelog and fields, and the
keyring/test package calls wait for and judge the outcome events.

Only the final FTP upload is replaced (by a function keeping a copy of the upload); the
end-to-end tests cover the real upload into a running instance.
"""

# pytest idioms: fixtures are parameters named like them; Django and the code under test are imported after the
# test set-up; asserts compare with empty containers on purpose (the type counts too).
# pylint: disable=redefined-outer-name,import-outside-toplevel,use-implicit-booleaness-not-comparison

import functools
import http.server
import itertools
import pathlib
import shutil
import subprocess
import threading
import time

import pytest

from debian import deb822

from mini_buildd import config, events, services
from mini_buildd import instance as this_instance
from mini_buildd.pipeline import ports
from mini_buildd.changes import Changes
from mini_buildd.dist import QAMode

ED25519 = "Key-Type: EdDSA\nKey-Curve: ed25519\nKey-Usage: sign\nExpire-Date: 0"
REPO = "ptest"
UNSTABLE, EXPERIMENTAL, STABLE = (f"bookworm-{REPO}-{s}" for s in ("unstable", "experimental", "stable"))
TEMPLATE_AUTHOR = "Märta Prüfling <maerta.pruefling@example.org>"


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def instance(django_db_blocker):
    """Daemon with an ed25519 key, an active repository 'ptest' (Default layout, bookworm = 12)
    with its reprepro tree; everything rolled back / removed afterwards.
    The module's tests have database access (inside that transaction)."""
    from django.db import transaction
    from django.utils import timezone
    from mini_buildd.tools import gnupg
    from mini_buildd import models

    gpg = gnupg.Gnupg(config.paths.gnupg_home)
    gpg_had_key = gpg.get_secret_key() is not None
    repo_dir = config.paths.repository(REPO)

    with django_db_blocker.unblock():
        class _Rollback(Exception):
            pass
        try:
            with transaction.atomic():
                daemon = models.Daemon.get()
                daemon.identity = "mbdporttest"
                daemon.gnupg_template = ED25519
                daemon.save()
                daemon.mbd_prepare()

                source = models.Source.objects.create(origin="Debian", codename="bookworm", codeversion_override="12")
                arch, _ = models.Architecture.objects.get_or_create(name="amd64")
                main, _ = models.Component.objects.get_or_create(name="main")
                distribution = models.Distribution.objects.create(base_source=source)
                distribution.components.add(main)
                models.ArchitectureOption.objects.create(distribution=distribution, architecture=arch, build_architecture_all=True)
                repo = models.Repository.objects.create(identity=REPO, layout=models.Layout.objects.get(name="Default"))
                repo.distributions.add(distribution)
                repo.mbd_prepare()
                now = timezone.now()
                for obj in (source, repo):
                    obj._set(models.StatusModel.STATUS_ACTIVE, now)  # pylint: disable=protected-access
                yield {"daemon": daemon, "repo": repo, "gpg": gpg, "key": gpg.get_secret_key()}
                raise _Rollback()
        except _Rollback:
            pass
        finally:
            shutil.rmtree(repo_dir, ignore_errors=True)
            if not gpg_had_key and gpg.get_secret_key() is not None:
                gpg.remove_secret_key()


@pytest.fixture
def uploads(monkeypatch, tmp_path):
    """Replace the FTP upload: each upload's changes and files are copied to a directory; yields
    the list of copied changes paths."""
    copied, counter = [], itertools.count()

    def fake_upload(changes):
        target = tmp_path / f"upload{next(counter)}"
        target.mkdir()
        for name in [f["name"] for f in deb822.Changes(changes.read_text(encoding="utf-8")).get("Files", [])]:
            shutil.copy2(changes.parent / name, target / name)
        shutil.copy2(changes, target / changes.name)
        copied.append(target / changes.name)
    monkeypatch.setattr(ports, "_upload", fake_upload)
    return copied


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A real event hub as ``services.events``."""
    h = events.Events(tmp_path / "events")
    monkeypatch.setattr(services, "events", h)
    yield h
    h.shutdown(timeout=5)


def run(argv, cwd, check=True):
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def binary_build(dsc, workdir, check=True):
    """Unpack ``dsc`` in ``workdir`` and build its binary packages; return the dpkg-buildpackage process."""
    d = deb822.Dsc(pathlib.Path(dsc).read_text(encoding="utf-8"))
    tree = pathlib.Path(workdir) / "build-tree"
    run(["dpkg-source", "-x", str(dsc), str(tree)], cwd=workdir)
    proc = run(["dpkg-buildpackage", "-b", "-us", "-uc"], cwd=tree, check=check)
    return proc, d


def deb_contents(deb):
    return run(["dpkg-deb", "-c", str(deb)], cwd=deb.parent).stdout


def tmp_leftovers():
    return sorted(p.name for p in config.paths.tmp.glob("*") if p.name.startswith(("port-", "keyring-", "test-package-")))


# ------------------------------------------------------------------------------------------------ pure logic
def test_option_lines():
    assert ports.option_lines() == ["MINI_BUILDD_OPTION: lintian-mode=ignore"]
    assert ports.option_lines("") == []
    assert ports.option_lines("lintian-mode=errfail|auto-ports=bookworm-a-unstable, bullseye-a-unstable") == [
        "MINI_BUILDD_OPTION: lintian-mode=errfail", "MINI_BUILDD_OPTION: auto-ports=bookworm-a-unstable,bullseye-a-unstable"]
    assert ports.option_lines(["run-lintian=false", "lintian-mode[i386]=ignore"]) == [
        "MINI_BUILDD_OPTION: lintian-mode=disabled", "MINI_BUILDD_OPTION: lintian-mode[i386]=ignore"]
    for bad in ("no-such-option=1", "lintian-mode=sometimes", "auto-ports=notadist", "lintian-mode=ignore|lintian-mode=errfail"):
        with pytest.raises(ports.PortError):
            ports.option_lines(bad)


class _T:
    def __init__(self, diststr, default_version, regex):
        self.diststr, self.default_version, self.mandatory_version_regex = diststr, default_version, regex


def test_internal_port_version():
    unstable12 = _T("bookworm-t-unstable", "~t12+1", r"~t12\+[1-9]")
    unstable11 = _T("bullseye-t-unstable", "~t11+1", r"~t11\+[1-9]")
    experimental12 = _T("bookworm-t-experimental", "~t12+0", r"~t12\+0")
    debdev = _T("sid-debdev-unstable", "~debdev~SID+1", ".*")
    v = "1.2.3-1~t12+4fud15"
    assert ports.internal_port_version(v, unstable12, unstable11) == "1.2.3-1~t11+4fud15"
    assert ports.internal_port_version("1.0~t12+3", unstable12, experimental12) == "1.0~t12+0"
    assert ports.internal_port_version("1.0~t12+0", experimental12, unstable11) == "1.0~t11+1"
    assert ports.internal_port_version("1.0-1", debdev, unstable12) == "1.0-1~t12+1"
    rebuilt = ports.internal_port_version("1.0~t12+2", unstable12, unstable12)
    assert rebuilt.startswith("1.0~t12+2+rebuilt") and len(rebuilt) == len("1.0~t12+2+rebuilt") + 14
    assert ports.internal_port_version(rebuilt, unstable12, unstable12).count("+rebuilt") == 1


def test_original_block():
    from debian.changelog import Changelog
    text = ("p (1.0+port) d; urgency=medium\n\n  * port\n\n -- mini-buildd archive x <mbd@host>  Sat, 01 Mar 2025 12:00:00 +0000\n\n"
            "p (1.0) d; urgency=medium\n\n  * orig\n\n -- Ann Author <ann@example.org>  Fri, 28 Feb 2025 12:00:00 +0000\n")
    assert ports.original_block(Changelog(text), "MBD@host") == ("1.0", "Ann Author <ann@example.org>")
    only_ours = text.split("\n\np (1.0)", maxsplit=1)[0] + "\n"
    assert ports.original_block(Changelog(only_ours), "mbd@host") == ("1.0+port", "mini-buildd archive x <mbd@host>")


def test_templates_exist_and_substitute(tmp_path):
    for name in ports.TEST_PACKAGES + (ports.KEYRING_TEMPLATE,):
        assert (ports.TEMPLATES_DIR / name / "debian" / "rules").is_file(), name
    values = {"%ID%": "myid", "%KEY_ID%": "0123456789ABCDEF", "%MAINT%": "Me <me@example.org>"}
    tree = ports.copy_template(ports.KEYRING_TEMPLATE, tmp_path, values)
    assert tree.name == "myid-archive-keyring"
    assert (tree / "debian" / "rules").stat().st_mode & 0o111
    for path in tree.rglob("*"):
        assert "%" not in path.name
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert not any(p in text for p in ports.PLACEHOLDERS), path
    control = deb822.Deb822((tree / "debian" / "control").read_text(encoding="utf-8"))
    assert control["Source"] == "myid-archive-keyring" and control["Maintainer"] == "Me <me@example.org>"
    assert "gnupg" in [d.split()[0] for d in control["Build-Depends"].split(",")]
    cpp = deb822.Deb822((ports.TEMPLATES_DIR / "mbd-test-cpp" / "debian" / "control").read_text(encoding="utf-8"))
    assert "libssl-dev" in cpp["Build-Depends"] and "dh-autoreconf" in cpp["Build-Depends"]
    with pytest.raises(ports.PortError):
        ports.copy_template("no-such-template", tmp_path)


# ------------------------------------------------------------------------------------------------ targets
def test_targets(instance):  # pylint: disable=unused-argument
    t = ports._locate(UNSTABLE)  # pylint: disable=protected-access
    assert (t.default_version, t.mandatory_version_regex) == (f"~{REPO}12+1", rf"~{REPO}12\+[1-9]")
    e = ports._locate(EXPERIMENTAL)  # pylint: disable=protected-access
    assert (e.default_version, e.mandatory_version_regex) == (f"~{REPO}12+0", rf"~{REPO}12\+0")
    for bad in (STABLE, f"{UNSTABLE}-rollback0", f"bullseye-{REPO}-unstable", "bookworm-nosuchrepo-unstable", "garbage"):
        with pytest.raises(ports.PortError):
            ports._locate(bad)  # pylint: disable=protected-access
    assert ports._locate(f"{UNSTABLE}-rollback8", uploadable=False).diststr == f"{UNSTABLE}-rollback8"  # pylint: disable=protected-access
    with pytest.raises(ports.PortError):
        ports._locate(f"{UNSTABLE}-rollback9", uploadable=False)  # pylint: disable=protected-access
    assert ports.keyring_distributions() == [UNSTABLE]
    assert ports.experimental_distributions() == [EXPERIMENTAL]


# ------------------------------------------------------------------------------------------------ templates build
def test_archall_builds(instance, tmp_path):  # pylint: disable=unused-argument
    dsc = ports.build_template_package("mbd-test-archall", tmp_path, "20250301120000")
    assert dsc.name == "mbd-test-archall_20250301120000.dsc"
    _proc, d = binary_build(dsc, tmp_path)
    assert d["Architecture"] == "all"
    deb = tmp_path / "mbd-test-archall_20250301120000_all.deb"
    assert "./usr/share/mbd-test-archall/greeting.txt" in deb_contents(deb)


@pytest.mark.skipif(not pathlib.Path("/usr/include/openssl/evp.h").exists(), reason="libssl-dev not installed")
def test_cpp_builds(instance, tmp_path):  # pylint: disable=unused-argument
    dsc = ports.build_template_package("mbd-test-cpp", tmp_path, "20250301120000")
    proc, d = binary_build(dsc, tmp_path)
    assert d["Architecture"] == "any"
    assert "PASS: mbd-test-cpp" in proc.stdout + proc.stderr  # make check ran the self test
    deb = next(tmp_path.glob("mbd-test-cpp_20250301120000_*.deb"))
    assert "./usr/bin/mbd-test-cpp" in deb_contents(deb)
    run(["dpkg-deb", "-x", str(deb), "root"], cwd=tmp_path)
    out = run([str(tmp_path / "root" / "usr" / "bin" / "mbd-test-cpp"), "abc"], cwd=tmp_path).stdout
    assert out.startswith("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_ftbfs_fails(instance, tmp_path):  # pylint: disable=unused-argument
    dsc = ports.build_template_package("mbd-test-ftbfs", tmp_path, "20250301120000")
    proc, _d = binary_build(dsc, tmp_path, check=False)
    assert proc.returncode != 0
    assert "failing to build on purpose" in proc.stdout + proc.stderr
    assert not list(tmp_path.glob("*.deb"))


def test_keyring_package_builds(instance, tmp_path):
    key = instance["key"]
    dsc = ports.build_keyring_source(tmp_path, "20250301120000")
    assert dsc.name == "mbdporttest-archive-keyring_20250301120000.dsc"
    _proc, d = binary_build(dsc, tmp_path)
    assert d["Architecture"] == "all" and "gnupg" in d["Build-Depends"]
    deb = tmp_path / "mbdporttest-archive-keyring_20250301120000_all.deb"
    contents = deb_contents(deb)
    for path in ("./usr/share/keyrings/mbdporttest-archive-keyring.gpg", "./etc/apt/trusted.gpg.d/mbdporttest-archive-keyring.gpg",
                 "./usr/share/mbdporttest-archive-keyring/sources.list.d/bookworm/ptest_unstable.list",
                 "./usr/share/mbdporttest-archive-keyring/sources.list.d/bookworm/ptest_unstable_src.list",
                 "./usr/share/mbdporttest-archive-keyring/sources.list.d/bookworm/ptest_unstable-rollback8.list",
                 "./usr/share/mbdporttest-archive-keyring/sources.list.d/bookworm/ptest_experimental-rollback5.list",
                 "./usr/share/mbdporttest-archive-keyring/sources.list.d/bookworm/ptest_stable.list",
                 "./etc/dput.d/profiles/mini-buildd-mbdporttest.json"):
        assert path in contents, path
    assert "ptest_unstable-rollback9" not in contents and "ptest_snapshot-rollback11.list" in contents
    root = tmp_path / "root"
    run(["dpkg-deb", "-x", str(deb), str(root)], cwd=tmp_path)
    # The binary keyring holds exactly the instance key.
    gpg_home = tmp_path / "gpg"
    gpg_home.mkdir(mode=0o700)
    listing = run(["gpg", "--homedir", str(gpg_home), "--batch", "--with-colons", "--show-keys",
                   str(root / "usr/share/keyrings/mbdporttest-archive-keyring.gpg")], cwd=tmp_path).stdout
    fprs = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
    assert fprs[0] == key["fingerprint"]
    assert (root / "etc/apt/trusted.gpg.d/mbdporttest-archive-keyring.gpg").read_bytes() == \
        (root / "usr/share/keyrings/mbdporttest-archive-keyring.gpg").read_bytes()
    line = (root / "usr/share/mbdporttest-archive-keyring/sources.list.d/bookworm/ptest_unstable.list").read_text().splitlines()[-1]
    assert line == f"deb {this_instance.http_url()}/repositories/{REPO} {UNSTABLE} main"
    src_line = (root / "usr/share/mbdporttest-archive-keyring/sources.list.d/bookworm/ptest_unstable_src.list").read_text()
    assert f"deb-src {this_instance.http_url()}/repositories/{REPO} {UNSTABLE} main" in src_line
    # The changelog entry is the instance's.
    changelog = run(["dpkg-parsechangelog", "-l", str(tmp_path / "build-tree" / "debian" / "changelog")], cwd=tmp_path).stdout
    assert f"Maintainer: mini-buildd archive mbdporttest <{instance['daemon'].email_address}>" in changelog
    run(["gpgconf", "--homedir", str(gpg_home), "--kill", "all"], cwd=tmp_path, check=False)


def test_keyring_package_refuses_wrong_key(instance, tmp_path):  # pylint: disable=unused-argument
    values = dict(ports.keyring_values(), **{"%KEY_ID%": "0123456789ABCDEF"})
    dsc = ports.build_template_package(ports.KEYRING_TEMPLATE, tmp_path, "20250301120000", values,
                                       ports.keyring_files(values["%ID%"]))
    proc, _d = binary_build(dsc, tmp_path, check=False)
    assert proc.returncode != 0


# ------------------------------------------------------------------------------------------------ ports
def _check_port_changes(instance, path, distribution, version, option_lines, originally_changed_by=TEMPLATE_AUTHOR):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("-----BEGIN PGP SIGNED MESSAGE-----")
    verified = instance["gpg"].verify(text)
    assert verified["valid"] and verified["fingerprint"] == instance["key"]["fingerprint"]
    c = Changes(path)
    assert path.name == f"{c.source}_{version}_source.changes"
    assert c.distribution == distribution and c.version == version and c.architecture == "source"
    assert c.get("X-Mini-Buildd-Originally-Changed-By") == originally_changed_by
    assert c.get("Changed-By") == f"mini-buildd archive mbdporttest <{instance['daemon'].email_address}>"
    changes_text = " ".join(c.get("Changes").split())
    assert "Automated port via mini-buildd (no changes). Original DSC's SHA1: " in changes_text
    for line in option_lines:
        assert f"\n   * {line}\n" in c.get("Changes") + "\n"  # one unwrapped line each
    c.check_files()
    dsc = c.dsc_path()
    assert dsc.read_text(encoding="utf-8").startswith("-----BEGIN PGP SIGNED MESSAGE-----")
    return c


def test_port_ext_file_url(instance, uploads, tmp_path):
    orig = tmp_path / "orig"
    orig.mkdir()
    dsc = ports.build_template_package("mbd-test-archall", orig, "20250301120000")
    sha1 = __import__("hashlib").sha1(dsc.read_bytes()).hexdigest()
    result = ports.port_ext(ports.file_url(dsc), [UNSTABLE, EXPERIMENTAL], allow_unauthenticated=True,
                            options="lintian-mode=ignore|internal-apt-priority=3")
    assert result == [
        {"dsc_url": ports.file_url(dsc), "source": "mbd-test-archall", "distribution": UNSTABLE, "version": f"20250301120000~{REPO}12+1",
         "origin_version": "20250301120000"},
        {"dsc_url": ports.file_url(dsc), "source": "mbd-test-archall", "distribution": EXPERIMENTAL, "version": f"20250301120000~{REPO}12+0",
         "origin_version": "20250301120000"},
    ]
    assert len(uploads) == 2
    lines = ["MINI_BUILDD_OPTION: lintian-mode=ignore", "MINI_BUILDD_OPTION: internal-apt-priority=3"]
    c = _check_port_changes(instance, uploads[0], UNSTABLE, f"20250301120000~{REPO}12+1", lines)
    assert sha1 in c.get("Changes") and f"External port from: {ports.file_url(dsc)}" in c.get("Changes")
    # -v<original version>: the generation entry and the port entry, not the template's.
    assert "Generated by mini-buildd" in c.get("Changes") and "Template of" not in c.get("Changes")
    assert c.upload_options() == {"lintian-mode": QAMode.IGNORE, "internal-apt-priority": 3}
    _check_port_changes(instance, uploads[1], EXPERIMENTAL, f"20250301120000~{REPO}12+0", lines)
    assert not tmp_leftovers()


def test_port_ext_http_url_and_authentication(instance, uploads, tmp_path):
    orig = tmp_path / "orig"
    orig.mkdir()
    dsc = ports.build_template_package("mbd-test-archall", orig, "20250301120001")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(orig))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{dsc.name}"
        # Unsigned DSC: refused unless unauthenticated ports are allowed.
        with pytest.raises(ports.PortError):
            ports.port_ext(url, [UNSTABLE])
        assert not uploads
        result = ports.port_ext(url, [UNSTABLE], allow_unauthenticated=True, options=None)
        with pytest.raises(ports.PortError):
            ports.port_ext(url.replace(".dsc", "-missing.dsc"), [UNSTABLE], allow_unauthenticated=True)
        with pytest.raises(ports.PortError):
            ports.port_ext(url, [STABLE], allow_unauthenticated=True)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert result[0]["version"] == f"20250301120001~{REPO}12+1" and result[0]["dsc_url"] == url
    _check_port_changes(instance, uploads[0], UNSTABLE, f"20250301120001~{REPO}12+1", ["MINI_BUILDD_OPTION: lintian-mode=ignore"])
    assert not tmp_leftovers()


def test_port_ext_quilt_package(instance, uploads, tmp_path):  # pylint: disable=unused-argument
    """A non-native "3.0 (quilt)" package with a patch: the orig tarball is kept and included (-sa)."""
    tree = ports.copy_template("mbd-test-archall", tmp_path)
    changelog = tree / "debian" / "changelog"
    changelog.write_text(changelog.read_text(encoding="utf-8").replace("(1.0) UNRELEASED", "(1.0-1) unstable"), encoding="utf-8")
    (tree / "debian" / "source" / "format").write_text("3.0 (quilt)\n")
    run(["tar", "-czf", "../mbd-test-archall_1.0.orig.tar.gz", "--exclude=debian", "."], cwd=tree)
    (tree / "debian" / "patches").mkdir()
    (tree / "debian" / "patches" / "series").write_text("greeting.patch\n")
    (tree / "debian" / "patches" / "greeting.patch").write_text(
        "--- a/greeting.txt\n+++ b/greeting.txt\n@@ -1 +1 @@\n"
        "-Greetings from mbd-test-archall, a test package built by mini-buildd.\n"
        "+Patched greetings from mbd-test-archall.\n")
    run(["dpkg-source", "-b", tree.name], cwd=tmp_path)
    dsc = tmp_path / "mbd-test-archall_1.0-1.dsc"
    result = ports.port_ext(ports.file_url(dsc), [UNSTABLE], allow_unauthenticated=True)
    assert result[0]["version"] == f"1.0-1~{REPO}12+1"
    c = _check_port_changes(instance, uploads[0], UNSTABLE, f"1.0-1~{REPO}12+1", ["MINI_BUILDD_OPTION: lintian-mode=ignore"])
    names = [p.name for p in c.file_paths()]
    assert "mbd-test-archall_1.0.orig.tar.gz" in names and f"mbd-test-archall_1.0-1~{REPO}12+1.debian.tar.xz" in names
    # The ported source still carries the patch, applied on unpack.
    out = tmp_path / "check"
    run(["dpkg-source", "-x", str(c.dsc_path()), str(out)], cwd=tmp_path)
    assert (out / "greeting.txt").read_text().startswith("Patched greetings")
    assert c.get("X-Mini-Buildd-Originally-Changed-By") == TEMPLATE_AUTHOR


def test_port_internal(instance, uploads, tmp_path):
    repo = instance["repo"]
    version = f"1.0~{REPO}12+1"
    dsc = ports.build_template_package("mbd-test-archall", tmp_path, version)
    instance["gpg"].sign_file(dsc)
    repo.mbd_reprepro().includedsc(UNSTABLE, dsc)
    try:
        result = ports.port("mbd-test-archall", UNSTABLE, [EXPERIMENTAL, UNSTABLE], options="", user="tester")
        assert [(r["distribution"], r["source"]) for r in result] == [(EXPERIMENTAL, "mbd-test-archall"), (UNSTABLE, "mbd-test-archall")]
        assert result[0]["version"] == f"1.0~{REPO}12+0"
        assert result[1]["version"].startswith(f"{version}+rebuilt")
        assert result[0]["dsc_url"].endswith(f"/repositories/{REPO}/pool/main/m/mbd-test-archall/mbd-test-archall_{version}.dsc")
        c = _check_port_changes(instance, uploads[0], EXPERIMENTAL, f"1.0~{REPO}12+0", [])
        assert "MINI_BUILDD_OPTION" not in c.get("Changes") and f"Internal port from: {UNSTABLE}" in c.get("Changes")
        _check_port_changes(instance, uploads[1], UNSTABLE, result[1]["version"], [])

        ports.port("mbd-test-archall", UNSTABLE, [EXPERIMENTAL], version=version)
        with pytest.raises(ports.PortError):
            ports.port("mbd-test-archall", UNSTABLE, [EXPERIMENTAL], version="0.9")
        with pytest.raises(ports.PortError):
            ports.port("no-such-source", UNSTABLE, [EXPERIMENTAL])
        with pytest.raises(ports.PortError):
            ports.port("mbd-test-archall", UNSTABLE, [f"{UNSTABLE}-rollback0"])
        with pytest.raises(ports.PortError):
            ports.port("mbd-test-archall", UNSTABLE, [])
    finally:
        repo.mbd_reprepro().removesrc(UNSTABLE, "mbd-test-archall")
    assert not tmp_leftovers()


# ------------------------------------------------------------------------------------------------ waiting for outcomes
def _answer_uploads(hub, uploads, outcome, delay=0.3):
    """Log an outcome event (``outcome(source)`` -> type name) for each upload, from a thread."""
    done = set()

    def answer():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for path in list(uploads):
                if path in done:
                    continue
                done.add(path)
                c = Changes(path)
                time.sleep(delay)
                hub.log(events.Event(outcome(c.source), c.distribution, c.source, c.version, extra={"key": c.key}))
            time.sleep(0.05)
            if getattr(answer, "stop", False):
                return
    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread, answer


def test_keyring_packages(instance, uploads, hub, monkeypatch):  # pylint: disable=unused-argument
    from mini_buildd.archive import operations
    migrated = []
    monkeypatch.setattr(operations, "migrate", lambda source, distribution, full=False, version=None, user=None:
                        migrated.append((source, distribution, full, version)) or {}, raising=False)
    thread, answer = _answer_uploads(hub, uploads, lambda source: "INSTALLED")
    try:
        result = ports.keyring_packages(timeout=60)
    finally:
        answer.stop = True
        thread.join()
    assert len(result) == 1 and result[0]["distribution"] == UNSTABLE
    entry = result[0]
    assert entry["source"] == "mbdporttest-archive-keyring" and entry["version"].endswith(f"~{REPO}12+1")
    assert entry["event"]["type"] == "INSTALLED" and entry["migrated"] and "error" not in entry
    assert migrated == [("mbdporttest-archive-keyring", UNSTABLE, True, entry["version"])]
    _check_port_changes(instance, uploads[0], UNSTABLE, entry["version"], ["MINI_BUILDD_OPTION: lintian-mode=ignore"],
                        originally_changed_by=f"mini-buildd archive mbdporttest <{instance['daemon'].email_address}>")

    # Without migration; a FAILED outcome is reported as error.
    uploads.clear()
    migrated.clear()
    thread, answer = _answer_uploads(hub, uploads, lambda source: "FAILED")
    try:
        result = ports.keyring_packages(distributions=[UNSTABLE], without_migration=True, timeout=60)
    finally:
        answer.stop = True
        thread.join()
    assert result[0]["event"]["type"] == "FAILED" and "error" in result[0] and not migrated
    assert not tmp_leftovers()


def test_test_packages(instance, uploads, hub):  # pylint: disable=unused-argument
    good = {"mbd-test-archall": "INSTALLED", "mbd-test-cpp": "INSTALLED", "mbd-test-ftbfs": "FAILED"}
    thread, answer = _answer_uploads(hub, uploads, good.get, delay=0.05)
    try:
        result = ports.test_packages(auto_ports=[UNSTABLE], with_check=True, timeout=60)
    finally:
        answer.stop = True
        thread.join()
    assert [r["source"] for r in result] == list(ports.TEST_PACKAGES)
    assert all(r["distribution"] == EXPERIMENTAL and r["version"].endswith(f"~{REPO}12+0") for r in result)
    assert [r["event"]["type"] for r in result] == ["INSTALLED", "INSTALLED", "FAILED"]
    c = Changes(uploads[1])
    assert c.upload_options()["auto-ports"] == [UNSTABLE]

    # A wrong outcome makes the check fail.
    uploads.clear()
    thread, answer = _answer_uploads(hub, uploads, lambda source: "INSTALLED", delay=0.05)
    try:
        with pytest.raises(ValueError, match="mbd-test-ftbfs"):
            ports.test_packages(sources=["mbd-test-ftbfs"], distributions=[EXPERIMENTAL], with_check=True, timeout=60)
    finally:
        answer.stop = True
        thread.join()

    # Without check: no waiting, no events.
    uploads.clear()
    result = ports.test_packages(sources=["mbd-test-archall"])
    assert len(result) == 1 and "event" not in result[0] and len(uploads) == 1
    with pytest.raises(ValueError):
        ports.test_packages(sources=["no-such-package"])
    assert not tmp_leftovers()
