"""All-or-nothing repository changes (mini_buildd.archive.journal) with the real reprepro and gpg.

The real ``RepositoryView.install/migrate/remove`` code (archive.operations) runs on a reprepro base dir
in a temporary directory; only the Django lookups (suite options) are replaced by plain objects.
A crash at each fault point is simulated by raising there (faults.raising): nothing after it runs,
nothing cleans up, the disk is left the way SIGKILL would leave it. Then recovery runs, and the
repository must be either exactly the new state or exactly the old one: ``reprepro check`` and
``checkpool`` clean, no stray pool file, the published (signed) indices equal to the database.
"""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import pathlib
import types

import pytest

from mini_buildd.archive import operations, journal
from mini_buildd import dist, faults
from mini_buildd.tools import reprepro
from tests.integration.test_reprepro import (  # noqa: F401  pylint: disable=unused-import  # fixtures
    SOURCE, TESTING, UNSTABLE, UNSTABLE_RB0, conf_texts, gnupghome, gpgv, make_package)

OLD, NEW = "1.0~test12+1", "1.0~test12+2"
ALL_DISTS = (UNSTABLE, UNSTABLE_RB0, TESTING)


class View(operations.RepositoryView):
    """RepositoryView on a bare reprepro dir: suite options as plain objects (unstable: one
    rollback, migrates to testing; testing: no rollback, no migration)."""

    def __init__(self, repo, journal_dir):  # pylint: disable=super-init-not-called
        self.reprepro = repo
        self.journal_dir = journal_dir
        testing = types.SimpleNamespace(rollback=0, migrates_to=None, suite=types.SimpleNamespace(name="testing"))
        unstable = types.SimpleNamespace(rollback=1, migrates_to=testing, suite=types.SimpleNamespace(name="unstable"))
        self.options = {"unstable": unstable, "testing": testing}

    @property
    def journal(self):
        return journal.Journal(self.journal_dir, self.reprepro)

    def parse(self, diststr):
        d = dist.DistStr(diststr)
        return d, self.options[d.suite]


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    return {v: make_package(tmp_path_factory.mktemp("pkg"), v) for v in (OLD, NEW)}


@pytest.fixture
def view(tmp_path, gnupghome, packages):  # noqa: F811
    """OLD installed in unstable and migrated to testing."""
    r = reprepro.Reprepro(tmp_path / "repositories" / "test")
    r.write_conf(*conf_texts(gnupghome[0]))
    r.export()
    v = View(r, tmp_path / "var" / "journal" / "test")
    v.install(UNSTABLE, packages[OLD]["dsc"], [packages[OLD]["changes"]])
    v.migrate(SOURCE, UNSTABLE)
    return v


def indexed(repo, diststr):
    """(type, package, version) in the published indices of ``diststr`` (signature verified)."""
    d = repo.dist_dir(diststr)
    result = set()
    for kind, path in (("dsc", d / "main" / "source" / "Sources"), ("deb", d / "main" / "binary-amd64" / "Packages")):
        package = None
        for line in path.read_text().splitlines():
            if line.startswith("Package: "):
                package = line.split(": ", 1)[1]
            elif line.startswith("Version: "):
                result.add((kind, package, line.split(": ", 1)[1]))
    return result


def state(repo, pubkey):
    """Database content per distribution, pool files; and checks that must hold in any state."""
    repo.check()
    repo.checkpool()
    db = {}
    for d in ALL_DISTS:
        db[d] = {(p["type"], p["package"], p["version"]) for p in repo.list_dist(d)}
        assert indexed(repo, d) == db[d], f"{d}: published indices differ from the database"
        gpgv(pubkey, repo.dist_dir(d) / "InRelease")
    pool = {str(p.relative_to(repo.basedir)) for p in repo.pool_dir.rglob("*") if p.is_file()}
    assert pool == repo.known_files(), "pool files and database differ (stray or missing files)"
    assert not repo.db_lockfile.exists()
    return db, pool


def expected(unstable, rollback0, testing):
    def entries(version):
        return {("dsc", SOURCE, version), ("deb", SOURCE, version)} if version else set()
    return {UNSTABLE: entries(unstable), UNSTABLE_RB0: entries(rollback0), TESTING: entries(testing)}


INSTALL_POINTS = ["install:before-plan", "install:before-shift", "install:after-shift", "install:after-includedsc",
                  "install:after-include", "install:before-export", "install:after-export"]
COMMITTED_POINTS = ("install:before-export", "install:after-export")


@pytest.mark.parametrize("inputs_intact", [True, False], ids=["roll-forward", "roll-back"])
@pytest.mark.parametrize("point", INSTALL_POINTS)
def test_install_crash_at_each_point(view, packages, gnupghome, point, inputs_intact):  # noqa: F811
    pubkey = gnupghome[1]
    repo = view.reprepro
    old_db, old_pool = state(repo, pubkey)
    assert old_db == expected(OLD, None, OLD)

    with faults.raising(point), pytest.raises(faults.Fault):
        view.install(UNSTABLE, packages[NEW]["dsc"], [packages[NEW]["changes"]])
    assert view.journal.pending() == (point != "install:before-plan")
    if not inputs_intact and view.journal.pending():
        plan = view.journal.plan()
        deb = next(name for name in plan["inputs"] if name.endswith(".deb"))
        (view.journal_dir / journal.INPUTS / deb).unlink()

    outcome = view.journal.recover()
    assert not view.journal.pending()
    db, pool = state(repo, pubkey)
    if point == "install:before-plan":
        assert outcome is None
    elif inputs_intact or point in COMMITTED_POINTS:
        assert outcome == "completed"
    else:
        assert outcome == "rolled back"
    if outcome == "completed":
        assert db == expected(NEW, OLD, OLD)
        assert any(p.endswith(f"{SOURCE}_{NEW}_all.deb") for p in pool)
    else:
        assert (db, pool) == (old_db, old_pool)
        # the same version installs again (not "already installed", no stray pool file in the way)
        view.install(UNSTABLE, packages[NEW]["dsc"], [packages[NEW]["changes"]])
        assert state(repo, pubkey)[0] == expected(NEW, OLD, OLD)


@pytest.mark.parametrize("point", ["recover:after-restore", "recover:after-replay"])
def test_crash_during_recovery(view, packages, gnupghome, point):  # noqa: F811
    with faults.raising("install:after-includedsc"), pytest.raises(faults.Fault):
        view.install(UNSTABLE, packages[NEW]["dsc"], [packages[NEW]["changes"]])
    with faults.raising(point), pytest.raises(faults.Fault):
        view.journal.recover()
    assert view.journal.pending()
    assert view.journal.recover() == "completed"
    assert state(view.reprepro, gnupghome[1])[0] == expected(NEW, OLD, OLD)


def test_failing_step_rolls_back(view, packages, gnupghome, tmp_path):  # noqa: F811
    """A binary include that reprepro refuses (the .deb does not match its .changes): the source
    included just before is undone too; the repository is exactly as before."""
    before = state(view.reprepro, gnupghome[1])
    bad = tmp_path / "bad"
    bad.mkdir()
    for key in ("dsc", "changes", "deb"):
        for f in packages[NEW][key].parent.glob(f"{SOURCE}_{NEW}*"):
            (bad / f.name).write_bytes(f.read_bytes())
    deb = bad / packages[NEW]["deb"].name
    deb.write_bytes(deb.read_bytes() + b"tampered")
    with pytest.raises(operations.ArchiveError, match="nothing changed"):
        view.install(UNSTABLE, bad / packages[NEW]["dsc"].name, [bad / packages[NEW]["changes"].name])
    assert not view.journal.pending()
    assert state(view.reprepro, gnupghome[1]) == before


@pytest.mark.parametrize("point", ["migrate:before-copy", "migrate:after-copy", "migrate:before-export"])
def test_migrate_crash(view, packages, gnupghome, point):  # noqa: F811
    view.install(UNSTABLE, packages[NEW]["dsc"], [packages[NEW]["changes"]])
    with faults.raising(point), pytest.raises(faults.Fault):
        view.migrate(SOURCE, UNSTABLE)
    assert view.journal.recover() == "completed"
    assert state(view.reprepro, gnupghome[1])[0] == expected(NEW, OLD, NEW)


@pytest.mark.parametrize("point", ["remove:before-remove", "remove:after-remove", "remove:before-export"])
def test_remove_crash(view, gnupghome, point):  # noqa: F811
    with faults.raising(point), pytest.raises(faults.Fault):
        view.remove(SOURCE, UNSTABLE)
    assert view.journal.recover() == "completed"
    assert state(view.reprepro, gnupghome[1])[0] == expected(None, OLD, OLD)


def test_next_change_recovers_first_and_stale_reprepro_lock(view, packages, gnupghome):  # noqa: F811
    """A crash inside reprepro leaves its lockfile: recovery removes it (no reprepro runs on the
    base dir) instead of waiting; a new change first recovers the interrupted one."""
    with faults.raising("install:after-includedsc"), pytest.raises(faults.Fault):
        view.install(UNSTABLE, packages[NEW]["dsc"], [packages[NEW]["changes"]])
    view.reprepro.db_lockfile.write_text("")
    view.migrate(SOURCE, UNSTABLE)  # recovers (completes the install), then migrates NEW
    assert not view.journal.pending()
    assert state(view.reprepro, gnupghome[1])[0] == expected(NEW, OLD, NEW)


def test_never_started_journal_is_dropped(view, gnupghome):  # noqa: F811
    before = state(view.reprepro, gnupghome[1])
    view.journal.new_directory.mkdir(parents=True)
    (view.journal.new_directory / "junk").write_text("x")
    assert view.journal.pending()
    assert view.journal.recover() is None
    assert not view.journal.pending()
    assert state(view.reprepro, gnupghome[1]) == before


def test_faults_env_and_names():
    assert faults.ENV == "MINI_BUILDD_FAULT"
    faults.point("install:after-includedsc")  # not armed: a no-op
    with pytest.raises(ValueError):
        with faults.raising("no:such-point"):
            pass
    assert pathlib.Path(faults.__file__).read_text(encoding="utf-8").count("os.kill(os.getpid(), signal.SIGKILL)") == 1


def test_interrupted_journal_removal(view, packages, gnupghome):  # noqa: F811
    """A crash while the journal is removed after the change: the plan goes first, so what is left
    (a partial database copy) is never restored."""
    with faults.raising("install:after-export"), pytest.raises(faults.Fault):
        view.install(UNSTABLE, packages[NEW]["dsc"], [packages[NEW]["changes"]])
    (view.journal_dir / journal.PLAN).unlink()
    for f in sorted((view.journal_dir / journal.DB).iterdir())[:2]:
        f.unlink()
    assert view.journal.recover() is None
    assert not view.journal.pending()
    assert state(view.reprepro, gnupghome[1])[0] == expected(NEW, OLD, OLD)
