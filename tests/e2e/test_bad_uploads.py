"""Bad uploads: each one gets a REJECTED event naming the reason, its files leave incoming, and
the repository (indexes and pool) stays byte-identical."""

# pylint: disable=redefined-outer-name  # pytest passes each fixture as the parameter of its name

import pytest
from debian import deb822

from mini_buildd.tools import gnupg
from tests.helpers.packages import make_source_package
from tests.helpers.uploads import expect_rejected, files_of, plain

DEV_TEMPLATE = "Key-Type: EdDSA\nKey-Curve: ed25519\nKey-Usage: sign\nExpire-Date: 0"


@pytest.fixture(scope="module")
def keys(tmp_path_factory, instance):
    """Developer key with upload rights to repository 'auth', another with none, one unknown."""
    out = {}
    for name in ("dev", "norights", "stranger"):
        home = tmp_path_factory.mktemp(f"gnupg-{name}")
        g = gnupg.Gnupg(home)
        fpr = g.gen_secret_key(DEV_TEMPLATE, f"{name} test", f"{name}@example.org")
        out[name] = (home, fpr, g.pub_key())
        g.kill_agents()
    instance.django(f"""
from django.contrib.auth.models import User
repo, created = models.Repository.objects.get_or_create(identity="auth", defaults={{"layout": models.Layout.objects.get(name="Default")}})
repo.distributions.set(models.Distribution.objects.all())
repo.mbd_pca()
for name, key, rights in (("dev", {out["dev"][2]!r}, True), ("norights", {out["norights"][2]!r}, False)):
    user, _ = User.objects.get_or_create(username=name)
    up = user.uploader
    up.key = key
    up.save()
    if rights:
        up.may_upload_to.add(repo)
    up.mbd_pca()
    print(name, up.mbd_status_display())
from mini_buildd.archive import snapshots
snapshots.run()  # the due timed snapshots of 'auth' now, not while a test proves nothing changed
""")
    yield out
    for home, _fpr, _pub in out.values():
        gnupg.kill_agents(home)


def _sign(keys, who, changes):
    home, _fpr, _ = keys[who]
    g = gnupg.Gnupg(home)
    try:
        g.sign_file(changes)
    finally:
        g.kill_agents()


def test_unsigned_where_signature_required(instance, keys, tmp_path):  # pylint: disable=unused-argument
    c = make_source_package(tmp_path, "mbd-bad-unsigned", "1.0~auth12+1", "bookworm-auth-unstable")
    expect_rejected(instance, plain(instance, c), r"(?i)not signed|no signature")


def test_signed_by_unknown_key(instance, keys, tmp_path):
    c = make_source_package(tmp_path, "mbd-bad-stranger", "1.0~auth12+1", "bookworm-auth-unstable")
    _sign(keys, "stranger", c)
    expect_rejected(instance, plain(instance, c), r"(?i)unknown key|no accepted|not.*verif")


def test_known_key_without_upload_rights(instance, keys, tmp_path):
    c = make_source_package(tmp_path, "mbd-bad-norights", "1.0~auth12+1", "bookworm-auth-unstable")
    _sign(keys, "norights", c)
    expect_rejected(instance, plain(instance, c), r"(?i)unknown key|no accepted|not.*verif")


def test_checksum_mismatch(instance, tmp_path):
    c = make_source_package(tmp_path, "mbd-bad-checksum", "1.0~test12+1", "bookworm-test-unstable")
    tarball = next(p for p in files_of(c) if p.name.endswith(".tar.xz"))
    tarball.write_bytes(tarball.read_bytes() + b"x")
    expect_rejected(instance, plain(instance, c), r"(?i)size|checksum|md5|sha")


def test_listed_file_missing(instance, tmp_path):
    c = make_source_package(tmp_path, "mbd-bad-missing", "1.0~test12+1", "bookworm-test-unstable")
    files = [p for p in files_of(c) if not p.name.endswith(".tar.xz")]
    expect_rejected(instance, plain(instance, c, files), r"(?i)missing|not found|no such")


def test_file_name_with_path(instance, tmp_path):
    c = make_source_package(tmp_path, "mbd-bad-path", "1.0~test12+1", "bookworm-test-unstable")
    text = c.read_text().replace(" mbd-bad-path_1.0~test12+1.tar.xz", " ../mbd-bad-path_1.0~test12+1.tar.xz")
    c.write_text(text)
    files = [p for p in _files_raw(c) if "/" not in p.name]
    expect_rejected(instance, plain(instance, c, files), r"(?i)path|\.\.|file name")


def _files_raw(changes):
    with open(changes, encoding="utf-8") as f:
        c = deb822.Changes(f)
    return [changes.parent / e["name"] for e in c["Files"] if "/" not in e["name"]]


def test_unknown_distribution(instance, tmp_path):
    c = make_source_package(tmp_path, "mbd-bad-dist", "1.0~test12+1", "bookworm-nosuchrepo-unstable")
    expect_rejected(instance, plain(instance, c), r"(?i)no repository")


def test_not_uploadable_suite(instance, tmp_path):
    c = make_source_package(tmp_path, "mbd-bad-suite", "1.0~test12+1", "bookworm-test-testing")
    expect_rejected(instance, plain(instance, c), r"(?i)not uploadable")


def test_rollback_distribution(instance, tmp_path):
    c = make_source_package(tmp_path, "mbd-bad-rollback", "1.0~test12+1", "bookworm-test-unstable-rollback0")
    expect_rejected(instance, plain(instance, c), r"(?i)rollback")


def test_version_without_appendix(instance, tmp_path):
    c = make_source_package(tmp_path, "mbd-bad-version", "1.0", "bookworm-test-unstable")
    expect_rejected(instance, plain(instance, c), r"(?i)mandatory")


def test_binary_only_upload(instance, tmp_path):
    c = make_source_package(tmp_path, "mbd-bad-binonly", "1.0~test12+1", "bookworm-test-unstable")
    text = c.read_text()
    text = "\n".join(line for line in text.splitlines() if ".dsc" not in line and ".tar.xz" not in line) + "\n"
    c.write_text(text.replace("Architecture: source", "Architecture: all"))
    expect_rejected(instance, plain(instance, c), r"(?i)no dsc|binary")


def test_malformed_changes(instance, tmp_path):
    c = tmp_path / "mbd-bad-malformed_1.0_source.changes"
    c.write_text("This is: not\n a changes file\x00\n")
    expect_rejected(instance, plain(instance, c, []), r"(?i)missing|malformed|field|parse")
