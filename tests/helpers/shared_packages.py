"""Test helper: packages e2e modules share on the shared instance, as session fixtures:
``mbd-e2e-hello`` is uploaded once per run by whichever module needs it first, so each module
also passes alone and in any order (tests/e2e/conftest.py makes the fixtures visible there)."""

import dataclasses

import pytest
import requests

from mini_buildd.tools import gnupg
from tests.helpers.instance import admin_api
from tests.helpers.packages import make_source_package, dput, wait_event, now_iso
from tests.helpers.uploads import reprepro_ls

HELLO, HELLO_VERSION = "mbd-e2e-hello", "1.0~test12+1"
UNSTABLE, STABLE = "bookworm-test-unstable", "bookworm-test-stable"
DEV_TEMPLATE = "Key-Type: EdDSA\nKey-Curve: ed25519\nKey-Usage: sign\nExpire-Date: 0"


@dataclasses.dataclass
class Upload:
    """An upload and what was seen right after its final event (later modules change the listing)."""
    changes: object
    started: str
    event: dict
    listing: dict
    packages_index: str
    incoming: list


@pytest.fixture(scope="session")
def hello(instance, tmp_path_factory):
    """``mbd-e2e-hello`` 1.0~test12+1 as a developer uploads it (signed with a developer key, dput
    configured from the instance's ``dput_conf`` call), built and INSTALLED in unstable: once per
    run (the session's instance is new, so the package is never there before)."""
    tmp_path = tmp_path_factory.mktemp("hello")
    g = gnupg.Gnupg(tmp_path / "gnupg")
    fpr = g.gen_secret_key(DEV_TEMPLATE, "dev", "dev@example.org")
    try:
        changes = make_source_package(tmp_path, HELLO, HELLO_VERSION, UNSTABLE, gnupghome=tmp_path / "gnupg", key_id=fpr,
                                      debhelper=True)
    finally:
        g.kill_agents()
    dput_conf = requests.get(f"{instance.url}/mini_buildd/api/dput_conf/", timeout=10).json()
    cf = tmp_path / "dput.cf"
    cf.write_text(dput_conf)
    target = next(line.strip("[]") for line in dput_conf.splitlines() if line.startswith("[mini-buildd-"))
    started = now_iso()
    proc = dput(cf, target, changes)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), HELLO, HELLO_VERSION, after=started)
    index = requests.get(f"{instance.url}/repositories/test/dists/{UNSTABLE}/main/binary-amd64/Packages", timeout=10).text
    return Upload(changes, started, event, reprepro_ls(instance, HELLO), index, list((instance.home / "incoming").iterdir()))


@pytest.fixture(scope="session")
def hello_in_stable(instance, hello):  # pylint: disable=redefined-outer-name
    """``mbd-e2e-hello`` in stable: migrated unstable -> testing -> stable unless it is there already."""
    assert hello.event["type"] == "INSTALLED", hello.event
    listing = reprepro_ls(instance, HELLO)
    if STABLE not in listing:
        if listing.get("bookworm-test-testing") != listing[UNSTABLE]:
            admin_api(instance, "migrate", source=HELLO, distribution=UNSTABLE)
        admin_api(instance, "migrate", source=HELLO, distribution="bookworm-test-testing")
    listing = reprepro_ls(instance, HELLO)
    assert STABLE in listing, listing
    return listing[STABLE]
