"""Issue acceptance for setup: the bootstrap of the shared e2e instance ends all Active, the chroot
works, the repository exports signed indexes for all suites and rollbacks, and a second identical
run changes nothing."""

import subprocess

import requests

from mini_buildd.tools import schroot
from tests.helpers.setup_run import ACCEPTANCE, by_str

ROLLBACKS = {"stable": 6, "testing": 3, "unstable": 9, "hotfix": 4, "snapshot": 12, "experimental": 6}


def test_first_run_all_active(instance):
    result = instance.setup_result
    for inst in result["instances"]:
        assert inst["status"] in ("ACTIVE", "EXISTS"), inst
        assert "pca(failed)" not in inst["actions"], inst
    statuses = by_str(result)
    assert statuses["Repository(identity=test)"]["status"] == "ACTIVE"
    assert statuses["DirChroot(codename=bookworm, architecture=amd64)"]["status"] == "ACTIVE"
    assert statuses["Source(origin=Debian, codename=bookworm)"]["status"] == "ACTIVE"


def test_chroot_listed_and_usable(instance):  # pylint: disable=unused-argument
    assert "chroot:mini-buildd-bookworm-amd64" in schroot.list_chroots()
    with schroot.session("mini-buildd-bookworm-amd64") as sid:
        assert schroot.run_in_session(sid, ["cat", "/etc/debian_version"]).strip().startswith("12")
    out = subprocess.run(["schroot", "-l"], capture_output=True, text=True, check=True).stdout
    assert "chroot:mini-buildd-bookworm-amd64" in out


def test_signed_indexes_for_all_suites_and_rollbacks(instance):
    dists = instance.home / "repositories" / "test" / "dists"
    for suite, rollbacks in ROLLBACKS.items():
        assert (dists / f"bookworm-test-{suite}" / "InRelease").is_file()
        found = sorted(p.name for p in dists.glob(f"bookworm-test-{suite}-rollback*"))
        assert len(found) == rollbacks, (suite, found)
        for p in found:
            assert (dists / p / "InRelease").is_file()
    r = requests.get(f"{instance.url}/repositories/test/dists/bookworm-test-unstable/InRelease", timeout=10)
    assert r.status_code == 200 and "Codename: bookworm-test-unstable" in r.text


def test_second_identical_run_changes_nothing(instance):
    before = sorted(p.relative_to(instance.home) for p in (instance.home / "repositories").rglob("*") if p.is_file())
    _code, result, _err = instance.setup(*ACCEPTANCE)
    for inst in result["instances"]:
        assert inst["status"] in ("ACTIVE", "EXISTS"), inst
        assert not {"created", "updated"} & set(inst["actions"]), inst
        assert not inst["diff"]["setup"] and not inst["diff"]["m2m"], inst
    after = sorted(p.relative_to(instance.home) for p in (instance.home / "repositories").rglob("*") if p.is_file())
    assert before == after
