"""Integration tests for mini_buildd.tools.reprepro against the real reprepro, gpg and dpkg tools."""

import pathlib
import threading

import pytest

from mini_buildd.tools import call, reprepro
from tests.helpers.reference import REFERENCE

REFERENCE_DISTRIBUTIONS = REFERENCE / "files" / "reprepro-test-conf-distributions"
REFERENCE_OPTIONS = REFERENCE / "files" / "reprepro-test-conf-options"

ORIGIN = "Mini-Buildd archive mbd-ref on localhost"
COMPONENTS = ["main", "contrib", "non-free", "non-free-firmware"]

# Verbatim from the upstream reference (first two stanzas and the experimental stanza).
EXPECTED_STABLE = """\
Codename: bookworm-test-stable
Suite: bookworm-test-stable
Label: bookworm-test-stable
AlsoAcceptFor: 
Origin: Mini-Buildd archive mbd-ref on localhost
Components: main contrib non-free non-free-firmware
UDebComponents: main contrib non-free non-free-firmware
Architectures: source amd64
Description: bookworm-test-stable
SignWith: default
NotAutomatic: yes
ButAutomaticUpgrades: yes
DebIndices: Packages Release . .gz .xz
DscIndices: Sources Release . .gz .xz
Contents: .gz

Codename: bookworm-test-stable-rollback0
Suite: bookworm-test-stable-rollback0
Label: bookworm-test-stable-rollback0
AlsoAcceptFor: 
Origin: Mini-Buildd archive mbd-ref on localhost
Components: main contrib non-free non-free-firmware
UDebComponents: main contrib non-free non-free-firmware
Architectures: source amd64
Description: bookworm-test-stable-rollback0
SignWith: default
NotAutomatic: yes
ButAutomaticUpgrades: no
DebIndices: Packages Release . .gz .xz
DscIndices: Sources Release . .gz .xz
Contents: .gz

"""  # noqa: W291

EXPECTED_EXPERIMENTAL = """\
Codename: bookworm-test-experimental
Suite: bookworm-test-experimental
Label: bookworm-test-experimental
AlsoAcceptFor: 
Origin: Mini-Buildd archive mbd-ref on localhost
Components: main contrib non-free non-free-firmware
UDebComponents: main contrib non-free non-free-firmware
Architectures: source amd64
Description: bookworm-test-experimental
SignWith: default
NotAutomatic: yes
ButAutomaticUpgrades: no
DebIndices: Packages Release . .gz .xz
DscIndices: Sources Release . .gz .xz
Contents: .gz

"""  # noqa: W291

# Default layout (upstream §3.2) in reference order: suite, rollbacks, ButAutomaticUpgrades.
DEFAULT_LAYOUT = [
    ("stable", 6, True), ("testing", 3, True), ("unstable", 9, True),
    ("hotfix", 4, True), ("snapshot", 12, True), ("experimental", 6, False),
]

UNSTABLE = "bookworm-test-unstable"
TESTING = "bookworm-test-testing"
UNSTABLE_RB0 = "bookworm-test-unstable-rollback0"
SOURCE = "mbd-tiny"
VERSION = "1.0~test12+1"


def stanzas_for(codename, repo, suites, origin=ORIGIN, components=COMPONENTS, architectures=("amd64",), metas=None):
    """Stanzas for a repository the way the Repository model will build them."""
    metas = metas or {}
    result = []
    for suite, rollbacks, bau in suites:
        diststr = f"{codename}-{repo}-{suite}"
        result.append({"codename": diststr, "also_accept_for": metas.get(diststr, []), "origin": origin,
                       "components": list(components), "architectures": list(architectures),
                       "description": diststr, "not_automatic": True, "but_automatic_upgrades": bau})
        for n in range(rollbacks):
            rb = f"{diststr}-rollback{n}"
            result.append({"codename": rb, "also_accept_for": [], "origin": origin,
                           "components": list(components), "architectures": list(architectures),
                           "description": rb, "not_automatic": True, "but_automatic_upgrades": False})
    return result


# ---------------------------------------------------------------------------------------------
# Conf text (no tools needed)

def test_distributions_conf_reference_stanzas():
    text = reprepro.distributions_conf(stanzas_for("bookworm", "test", [("stable", 1, True)]))
    assert text == EXPECTED_STABLE
    text = reprepro.distributions_conf(stanzas_for("bookworm", "test", [("experimental", 0, False)]))
    assert text == EXPECTED_EXPERIMENTAL


def test_distributions_conf_full_reference_file():
    reference = REFERENCE_DISTRIBUTIONS.read_text()
    origin = next(line.split(": ", 1)[1] for line in reference.splitlines() if line.startswith("Origin: "))
    assert reprepro.distributions_conf(stanzas_for("bookworm", "test", DEFAULT_LAYOUT, origin=origin)) == reference


def test_distributions_conf_meta_and_validation():
    stanzas = stanzas_for("bookworm", "test", [("unstable", 0, True)], architectures=["amd64", "i386"],
                          metas={"bookworm-test-unstable": ["unstable", "sid"]})
    text = reprepro.distributions_conf(stanzas)
    assert "\nAlsoAcceptFor: unstable sid\n" in text
    assert "\nArchitectures: source amd64 i386\n" in text
    assert reprepro.distributions_conf([]) == ""
    bad = dict(stanzas[0], description="two\nlines")
    with pytest.raises(ValueError):
        reprepro.distributions_conf([bad])
    with pytest.raises(ValueError):
        reprepro.distributions_conf([dict(stanzas[0], codename="../evil")])


def test_options_conf():
    text = reprepro.options_conf("/var/lib/mini-buildd/.gnupg")
    assert text == REFERENCE_OPTIONS.read_text()
    assert text == "gnupghome /var/lib/mini-buildd/.gnupg\n\n"
    assert reprepro.options_conf("/h/.gnupg", morguedir=True) == "gnupghome /h/.gnupg\nmorguedir +b/morguedir\n\n"
    assert reprepro.parse_options_conf(reprepro.options_conf("/h/.gnupg", True)) == {"gnupghome": "/h/.gnupg", "morguedir": "+b/morguedir"}


def test_reindex_refuses_without_conf(tmp_path):
    r = reprepro.Reprepro(tmp_path)
    (tmp_path / "dists" / "x").mkdir(parents=True)
    with pytest.raises(reprepro.RepreproError):
        r.reindex()
    assert (tmp_path / "dists" / "x").exists()


def test_lock_per_resolved_basedir(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "r")
    assert reprepro.Reprepro(tmp_path / "r").lock is reprepro.Reprepro(tmp_path / "link").lock
    assert reprepro.Reprepro(tmp_path / "r").lock is not reprepro.Reprepro(tmp_path / "other").lock


# ---------------------------------------------------------------------------------------------
# Fixtures: GnuPG home with a signing key, a tiny package

@pytest.fixture(scope="module")
def gnupghome(tmp_path_factory):
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    env = {"GNUPGHOME": str(home)}
    try:
        call.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "test <t@example.org>", "ed25519", "sign", "never"], env=env)
        pubkey = home.parent / f"{home.name}-pubkey.gpg"
        with open(pubkey, "wb") as f:
            call.run(["gpg", "--batch", "--export"], env=env, stdout=f)
        assert pubkey.stat().st_size > 0
        yield home, pubkey
    finally:
        call.run(["gpgconf", "--kill", "all"], env=env, check=False)


def make_package(top, version, source=SOURCE, distribution=UNSTABLE):
    """Build source package ``source`` ``version`` (.dsc) and a binary-only .changes with one
    arch:all .deb in the new directory ``top``; return ``{dsc, changes, deb}``."""
    top = pathlib.Path(top)
    upstream = version.split("-")[0].split(":")[-1]
    src = top / f"{source}-{upstream}"
    (src / "debian" / "source").mkdir(parents=True)
    (src / "debian" / "source" / "format").write_text("3.0 (native)\n")
    (src / "debian" / "control").write_text(f"""\
Source: {source}
Section: misc
Priority: optional
Maintainer: Test <t@example.org>
Standards-Version: 4.6.2

Package: {source}
Architecture: all
Description: tiny test package
 Tiny test package for mini-buildd.
""")
    (src / "debian" / "changelog").write_text(f"""\
{source} ({version}) {distribution}; urgency=medium

  * Test.

 -- Test <t@example.org>  Sun, 22 Nov 2026 01:00:00 +0000
""")
    (src / "debian" / "rules").write_text("#!/usr/bin/make -f\n%:\n\t@true\n")
    (src / "debian" / "rules").chmod(0o755)
    call.run(["dpkg-source", "-b", src.name], cwd=top)
    dsc = top / f"{source}_{version}.dsc"
    assert dsc.exists()

    # Binary: arch:all .deb + binary-only .changes (after the source package was built).
    root = src / "debian" / "tmp"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr" / "share" / "doc" / source).mkdir(parents=True)
    (root / "usr" / "share" / "doc" / source / "README").write_text(f"tiny {version}\n")
    call.run(["dpkg-gencontrol", f"-p{source}", "-Pdebian/tmp"], cwd=src)
    call.run(["dpkg-deb", "--root-owner-group", "--build", "debian/tmp", ".."], cwd=src)
    changes = top / f"{source}_{version}_all.changes"
    call.run(["dpkg-genchanges", "-b", f"-O{changes}"], cwd=src)
    deb = top / f"{source}_{version}_all.deb"
    assert deb.exists() and changes.exists()
    return {"dsc": dsc, "changes": changes, "deb": deb}


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """Source package (.dsc) and a binary-only .changes with one arch:all .deb."""
    return make_package(tmp_path_factory.mktemp("pkg"), VERSION)


def conf_texts(gnupg_home, architectures=("amd64",), with_testing=True):
    suites = [("unstable", 1, True)] + ([("testing", 0, True)] if with_testing else [])
    stanzas = stanzas_for("bookworm", "test", suites, origin="Mini-Buildd archive t on localhost",
                          components=["main", "contrib"], architectures=architectures)
    return reprepro.distributions_conf(stanzas), reprepro.options_conf(gnupg_home)


@pytest.fixture
def repo(tmp_path, gnupghome):
    r = reprepro.Reprepro(tmp_path / "repositories" / "test")
    assert r.write_conf(*conf_texts(gnupghome[0]))
    r.export()
    return r


def gpgv(pubkey, *files):
    return call.run(["gpgv", "--keyring", str(pubkey), *[str(f) for f in files]])


def release_fields(path):
    fields = {}
    for line in pathlib.Path(path).read_text().splitlines():
        if line and not line.startswith(" ") and ": " in line:
            key, value = line.split(": ", 1)
            fields[key] = value
    return fields


# ---------------------------------------------------------------------------------------------
# Real reprepro

def test_write_conf_and_export_signed(repo, gnupghome):
    _home, pubkey = gnupghome
    assert repo.dists() == [UNSTABLE, UNSTABLE_RB0, TESTING]
    assert not repo.write_conf(*conf_texts(gnupghome[0])), "unchanged conf must report False"
    for dist in repo.dists():
        d = repo.dist_dir(dist)
        assert (d / "InRelease").exists()
        gpgv(pubkey, d / "InRelease")
        gpgv(pubkey, d / "Release.gpg", d / "Release")
        fields = release_fields(d / "Release")
        assert fields["Codename"] == fields["Suite"] == fields["Label"] == dist
        assert fields["Origin"] == "Mini-Buildd archive t on localhost"
        assert fields["NotAutomatic"] == "yes"
        assert fields["ButAutomaticUpgrades"] == ("no" if "rollback" in dist else "yes")
        assert (d / "main" / "source" / "Sources.xz").exists()
        assert (d / "main" / "binary-amd64" / "Packages.gz").exists()
        assert (d / "Contents-amd64.gz").exists()
    # A tampered Release must not verify (so the check above means something).
    release = repo.dist_dir(UNSTABLE) / "Release"
    release.write_text(release.read_text() + "X-Tampered: yes\n")
    with pytest.raises(call.CallError):
        gpgv(pubkey, repo.dist_dir(UNSTABLE) / "Release.gpg", release)


def test_argv_env_and_priority_workaround(repo, package, gnupghome, monkeypatch):
    calls = []
    real_run = call.run

    def spy(argv, **kwargs):
        calls.append((list(argv), kwargs.get("env")))
        return real_run(argv, **kwargs)

    monkeypatch.setattr(call, "run", spy)
    assert not reprepro.dsc_has_priority(package["dsc"])
    repo.includedsc(UNSTABLE, package["dsc"])
    argv, env = calls[-1]
    assert argv[:8] == ["reprepro", "--verbose", "--waitforlock", "10", "--ignore", "unusedarch", "--basedir", str(repo.basedir)]
    assert argv[8:] == ["--priority", "optional", "includedsc", UNSTABLE, str(package["dsc"])]
    assert env == {"GNUPGHOME": str(gnupghome[0])}
    sources = (repo.dist_dir(UNSTABLE) / "main" / "source" / "Sources").read_text()
    assert "\nPriority: optional\n" in sources and f"Package: {SOURCE}\n" in sources

    # DSC with Priority: no extra option; explicit component is passed on.
    dsc2 = package["dsc"].parent / "with-priority.dsc"
    dsc2.write_text(package["dsc"].read_text().replace("Maintainer:", "Priority: extra\nMaintainer:"))
    assert reprepro.dsc_has_priority(dsc2)
    calls.clear()
    with pytest.raises(reprepro.RepreproError):  # unknown dist: only the argv matters here
        repo.includedsc("no-such-dist", dsc2, component="contrib")
    assert calls[-1][0][8:] == ["--component", "contrib", "includedsc", "no-such-dist", str(dsc2)]


def test_install_copy_remove(repo, package):
    assert repo.ls(SOURCE) == {}
    repo.includedsc(UNSTABLE, package["dsc"])
    assert repo.ls(SOURCE) == {UNSTABLE: [{"version": VERSION, "component": "main", "architecture": "source"}]}
    repo.include(UNSTABLE, package["changes"])
    listing = repo.list_dist(UNSTABLE)
    assert {(p["architecture"], p["type"], p["package"], p["version"], p["source"]) for p in listing} == {
        ("source", "dsc", SOURCE, VERSION, SOURCE), ("amd64", "deb", SOURCE, VERSION, SOURCE)}
    assert all(p["distribution"] == UNSTABLE and p["component"] == "main" for p in listing)
    assert repo.list_dist(TESTING) == []

    # Migrate-like copy and rollback shift-like copy; binaries follow the source.
    repo.copysrc(TESTING, UNSTABLE, SOURCE)
    repo.copysrc(UNSTABLE_RB0, UNSTABLE, SOURCE, VERSION)
    ls = repo.ls(SOURCE)
    assert set(ls) == {UNSTABLE, UNSTABLE_RB0, TESTING}
    assert all(v == [{"version": VERSION, "component": "main", "architecture": "source"}] for v in ls.values())
    assert {p["architecture"] for p in repo.list_dist(TESTING)} == {"source", "amd64"}
    assert repo.versions(TESTING, SOURCE) == [VERSION]
    assert f"Package: {SOURCE}\n" in (repo.dist_dir(TESTING) / "main" / "binary-amd64" / "Packages").read_text()

    # Remove: wrong version is a no-op, then the real removal.
    repo.removesrc(UNSTABLE, SOURCE, "0.1")
    assert UNSTABLE in repo.ls(SOURCE)
    repo.removesrc(UNSTABLE, SOURCE)
    assert set(repo.ls(SOURCE)) == {UNSTABLE_RB0, TESTING}
    assert repo.list_dist(UNSTABLE) == []

    # Restore from rollback0.
    repo.copysrc(UNSTABLE, UNSTABLE_RB0, SOURCE)
    assert repo.versions(UNSTABLE, SOURCE) == [VERSION]

    repo.check()
    repo.checkpool()
    repo.checkpool(fast=True)

    # includedeb helper.
    repo.removesrc(TESTING, SOURCE)
    repo.includedeb(TESTING, package["deb"])
    assert [p["architecture"] for p in repo.list_dist(TESTING)] == ["amd64"]


def test_errors_carry_output(repo, package):
    with pytest.raises(reprepro.RepreproError) as e:
        repo.include("bookworm-test-nosuch", package["changes"])
    assert isinstance(e.value, call.CallError)
    assert e.value.returncode != 0
    assert "bookworm-test-nosuch" in e.value.output
    with pytest.raises(ValueError):
        repo.gensnapshot(UNSTABLE, "../x")


def test_checkpool_detects_damage(repo, package):
    repo.includedsc(UNSTABLE, package["dsc"])
    repo.checkpool()
    pool_file = next((repo.basedir / "pool").rglob("*.tar.xz"))
    pool_file.write_bytes(pool_file.read_bytes() + b"x")
    with pytest.raises(reprepro.RepreproError):
        repo.checkpool()
    pool_file.unlink()
    with pytest.raises(reprepro.RepreproError):
        repo.checkpool(fast=True)


def test_snapshots_and_reindex(repo, package, gnupghome):
    _home, pubkey = gnupghome
    repo.includedsc(UNSTABLE, package["dsc"])
    repo.include(UNSTABLE, package["changes"])
    assert repo.snapshots(UNSTABLE) == []
    name = "WEEKLY_2024-05-05T02:13"
    repo.gensnapshot(UNSTABLE, name)
    repo.gensnapshot(TESTING, "T1")
    repo.gensnapshot(UNSTABLE_RB0, "R1")
    assert repo.snapshots(UNSTABLE) == [name]
    snap = repo.snapshot_dir(UNSTABLE, name)
    gpgv(pubkey, snap / "InRelease")
    assert f"Package: {SOURCE}\n" in (snap / "main" / "source" / "Sources").read_text()

    # Source removed from the dist: its pool files stay while the snapshot references them.
    pool_dsc = next((repo.basedir / "pool").rglob("*.dsc"))
    repo.removesrc(UNSTABLE, SOURCE)
    assert pool_dsc.exists()

    # Reindex: stray files go, snapshots stay, dropped dists vanish, new archs get arch:all (flood).
    stray = repo.dist_dir(UNSTABLE) / "main" / "stray-file"
    stray.write_text("x")
    repo.includedsc(UNSTABLE, package["dsc"])
    repo.include(UNSTABLE, package["changes"])
    assert repo.write_conf(*conf_texts(gnupghome[0], architectures=("amd64", "i386"), with_testing=False))
    repo.reindex()
    assert not stray.exists()
    assert not repo.dist_dir(TESTING).exists()
    assert repo.dists() == [UNSTABLE, UNSTABLE_RB0]
    assert repo.snapshots(UNSTABLE) == [name]
    assert repo.snapshots(UNSTABLE_RB0) == ["R1"]
    gpgv(pubkey, snap / "InRelease")
    gpgv(pubkey, repo.dist_dir(UNSTABLE) / "InRelease")
    assert release_fields(repo.dist_dir(UNSTABLE) / "Release")["Architectures"] == "amd64 i386"
    assert {p["architecture"] for p in repo.list_dist(UNSTABLE)} == {"source", "amd64", "i386"}
    assert f"Package: {SOURCE}\n" in (repo.dist_dir(UNSTABLE) / "main" / "binary-i386" / "Packages").read_text()
    references = repo._run("dumpreferences")  # pylint: disable=protected-access
    assert f"={TESTING}=" not in references and f"{TESTING}|" not in references
    repo.check()
    repo.checkpool()

    # Delete the snapshot: pool files only it referenced are deleted.
    repo.removesrc(UNSTABLE, SOURCE)
    repo.delete_snapshot(UNSTABLE_RB0, "R1")
    assert pool_dsc.exists()
    repo.delete_snapshot(UNSTABLE, name)
    assert repo.snapshots(UNSTABLE) == []
    assert not snap.exists()
    assert not pool_dsc.exists()
    assert not list((repo.basedir / "pool").rglob("*.deb"))
    with pytest.raises(reprepro.RepreproError):
        repo.delete_snapshot(UNSTABLE, name)
    repo.check()
    repo.checkpool()


def test_calls_are_serialized(repo):
    holder_has_lock = threading.Event()
    release = threading.Event()

    def holder():
        with reprepro.get_lock(repo.basedir):
            holder_has_lock.set()
            release.wait(30)

    done = threading.Event()

    def worker():
        repo.check()
        done.set()

    t1 = threading.Thread(target=holder)
    t1.start()
    assert holder_has_lock.wait(10)
    t2 = threading.Thread(target=worker)
    t2.start()
    try:
        assert not done.wait(1.0), "reprepro call ran while another thread held the repository lock"
    finally:
        release.set()
        t1.join(10)
    t2.join(30)
    assert done.is_set()


def test_deferred_export_signs_each_changed_dist_once(repo, package, gnupghome):
    """Inside ``deferred_export`` the indices stay as they were; on leaving, every changed
    distribution (and only those) is exported and signed; an error inside still exports."""
    _home, pubkey = gnupghome
    packages = repo.dist_dir(UNSTABLE) / "main" / "source" / "Sources"
    before = {d: (repo.dist_dir(d) / "InRelease").read_bytes() for d in repo.dists()}
    with repo.deferred_export():
        repo.includedsc(UNSTABLE, package["dsc"])
        repo.include(UNSTABLE, package["changes"])
        repo.copysrc(UNSTABLE_RB0, UNSTABLE, SOURCE)
        assert f"Package: {SOURCE}\n" not in packages.read_text()
        assert (repo.dist_dir(UNSTABLE) / "InRelease").read_bytes() == before[UNSTABLE]
    assert f"Package: {SOURCE}\n" in packages.read_text()
    for d in (UNSTABLE, UNSTABLE_RB0):
        assert (repo.dist_dir(d) / "InRelease").read_bytes() != before[d]
        gpgv(pubkey, repo.dist_dir(d) / "InRelease")
    assert (repo.dist_dir(TESTING) / "InRelease").read_bytes() == before[TESTING]

    with pytest.raises(RuntimeError):
        with repo.deferred_export():
            repo.removesrc(UNSTABLE, SOURCE)
            raise RuntimeError("boom")
    assert f"Package: {SOURCE}\n" not in packages.read_text()


def test_db_copy_restore_and_stray_files(repo, package, tmp_path):
    """The journal's primitives: a database copy restored undoes an include (``--keepunreferencedfiles``
    inside ``journaled``: nothing left the pool); the include's new pool files are then strays."""
    repo.includedsc(UNSTABLE, package["dsc"])
    before = {d: repo.list_dist(d) for d in repo.dists()}
    repo.snapshot_db(tmp_path / "copy")
    with repo.journaled():
        repo.removesrc(UNSTABLE, SOURCE)
        repo.include(UNSTABLE, package["changes"])
    assert repo.list_dist(UNSTABLE) != before[UNSTABLE]
    deb_key = next(k for k in repo.known_files() if k.endswith(".deb"))
    assert all((repo.basedir / k).exists() for k in repo.known_files())  # the .dsc's files were kept
    repo.restore_db(tmp_path / "copy")
    assert {d: repo.list_dist(d) for d in repo.dists()} == before
    assert (repo.basedir / deb_key).exists() and deb_key not in repo.known_files()
    assert repo.remove_stray_files(SOURCE, [package["deb"].name, package["dsc"].name]) == [deb_key]
    repo.check()
    repo.checkpool()
    # reprepro's lockfile without a reprepro process on this base dir: stale, removed
    repo.db_lockfile.write_text("")
    repo.wait_unlocked(timeout=5)
    assert not repo.db_lockfile.exists()
    repo.check()


def test_change_snapshots_diff_and_prune(repo, package, tmp_path):
    """Change snapshots (issue #16) with the real reprepro: named by time, the difference between two
    of them and the live distribution, pruning that keeps the pool files a kept snapshot uses."""
    from mini_buildd.archive import change_snapshots  # pylint: disable=import-outside-toplevel  # (this module tests the tool wrapper)
    empty = change_snapshots.take(repo, UNSTABLE)
    repo.includedsc(UNSTABLE, package["dsc"])
    repo.include(UNSTABLE, package["changes"])
    with_v1 = change_snapshots.take(repo, UNSTABLE)
    assert change_snapshots.change_snapshots(repo.snapshots(UNSTABLE)) == [empty, with_v1]
    assert change_snapshots.stamp(empty) is not None and with_v1 != empty
    diff = change_snapshots.diff(repo, UNSTABLE, empty, with_v1)
    assert diff["sources"] == {"added": {SOURCE: VERSION}, "removed": {}, "changed": {}}
    assert diff["binaries"]["added"] == {f"{SOURCE}/all": VERSION}
    repo.gensnapshot(UNSTABLE, "release-1")  # a named snapshot of version 1
    # A newer version replaces it in the live distribution.
    v2 = make_package(tmp_path / "v2", "2.0~test12+1")
    repo.includedsc(UNSTABLE, v2["dsc"])
    repo.include(UNSTABLE, v2["changes"])
    assert change_snapshots.diff(repo, UNSTABLE, with_v1)["sources"]["changed"] == {SOURCE: [VERSION, "2.0~test12+1"]}
    with pytest.raises(change_snapshots.SnapshotNotFound):
        change_snapshots.diff(repo, UNSTABLE, "20000101T000000Z")
    # Named snapshots stay; of the change snapshots the newest one is kept (keep_last=1, no age).
    pool_v1 = next((repo.basedir / "pool").rglob(f"{SOURCE}_{VERSION}.dsc"))
    assert change_snapshots.prune(repo, UNSTABLE, keep_last=1, keep_days=0) == [empty]
    assert sorted(repo.snapshots(UNSTABLE)) == sorted([with_v1, "release-1"])
    assert pool_v1.exists()  # still used by with_v1 and release-1
    assert change_snapshots.prune(repo, UNSTABLE, keep_last=0, keep_days=0) == [with_v1]
    assert pool_v1.exists()  # release-1 still uses it
    repo.delete_snapshot(UNSTABLE, "release-1")
    assert not pool_v1.exists()  # nothing uses it any more
