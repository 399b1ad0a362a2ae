"""The signed upload path of a user, end to end (issue #15 "Uploads and permissions"), with the real
daemon, web pages, gpg, debsign, dput, sbuild and reprepro:

a user registers on the web (the activation link comes by mail), logs in, sets their GnuPG key on
the profile page and subscribes to their package; the administrator activates their Uploader for
repository ``sec`` (signed uploads only; done through the models, as the admin's "PCA" action
does); the user's signed upload is INSTALLED and their subscription mail arrives; an upload
signed by another key is REJECTED; a key in one of the repository's ``extra_uploader_keyrings``
may upload too.

The daemon runs with ``--allow-registration`` during this module (restarted with it, and back).
"""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import re
import subprocess
import time

import pytest
import requests

from mini_buildd.tools import gnupg
from tests.helpers.packages import make_source_package, now_iso, wait_event
from tests.helpers.uploads import ftp_upload, reprepro_ls

ED25519 = "Key-Type: EdDSA\nKey-Curve: ed25519\nKey-Usage: sign\nExpire-Date: 0"
USER, EMAIL, PASSWORD = "mbd-dev", "mbd-dev@example.org", "Dev-Secret-12345"
REPO, DIST = "sec", "bookworm-sec-unstable"


def _csrf(session, url):
    r = session.get(url, timeout=30)
    assert r.status_code == 200, (url, r.status_code)
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', r.text).group(1)


def _post(session, url, data):
    return session.post(url, data={**data, "csrfmiddlewaretoken": _csrf(session, url)}, headers={"Referer": url}, timeout=60)


def _wait_mail(instance, match, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for _sender, rcpts, message in list(instance.smtp.mails):
            if match(rcpts, message):
                return message
        time.sleep(0.5)
    raise AssertionError(f"no such mail: {[m[2]['Subject'] for m in instance.smtp.mails]}")


def _key(tmp_path, name):
    g = gnupg.Gnupg(tmp_path / name / "gnupg")
    g.homedir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fpr = g.gen_secret_key(ED25519, name, f"{name}@example.org")
    return g, fpr


@pytest.fixture(scope="module")
def sec(instance):
    """Repository ``sec`` (Default layout, bookworm, signed uploads only), and the daemon with
    registration on during the module."""
    out = instance.django(f"""
repo, _ = models.Repository.objects.get_or_create(identity={REPO!r}, defaults={{"layout": models.Layout.objects.get(name="Default"),
                                                                               "allow_unauthenticated_uploads": False}})
repo.distributions.set(models.Distribution.objects.filter(base_source__codename="bookworm"))
repo.mbd_pca()
print(repo.mbd_status_display())
""")
    assert out.strip().splitlines()[-1].lower().startswith("active"), out
    instance.restart_daemon(extra_args=[*instance.daemon.extra_args, "--allow-registration"])
    try:
        yield REPO
    finally:
        instance.restart_daemon(extra_args=[a for a in instance.daemon.extra_args if a != "--allow-registration"])


@pytest.fixture(scope="module")
def developer(instance, sec, tmp_path_factory):  # pylint: disable=unused-argument
    """The registered, activated and logged-in user with their key set and activated for ``sec``:
    (session, gnupg, fingerprint)."""
    tmp = tmp_path_factory.mktemp("developer")
    g, fpr = _key(tmp, "developer")
    s = requests.Session()
    # Register; the activation link comes by mail.
    r = _post(s, f"{instance.url}/accounts/register/", {"username": USER, "email": EMAIL, "password1": PASSWORD, "password2": PASSWORD})
    assert r.status_code == 200, r.text[-2000:]
    mail = _wait_mail(instance, lambda rcpts, m: EMAIL in rcpts and "Activate" in m["Subject"])
    body = mail.get_body(preferencelist=("plain",)).get_content() if mail.is_multipart() else mail.get_content()
    link = re.search(r"(https?://\S+/accounts/activate/\S+/)", body).group(1)
    assert s.get(link, timeout=30).status_code == 200
    # Log in, set the key on the profile page, subscribe to the package.
    r = _post(s, f"{instance.url}/accounts/login/", {"username": USER, "password": PASSWORD})
    assert r.status_code == 200 and "logout" in r.text.lower(), r.text[-2000:]
    r = _post(s, f"{instance.url}/accounts/profile/", {"action": "set_key", "key": g.pub_key()})
    assert r.status_code == 200 and "has been set" in r.text, r.text[-3000:]
    r = _post(s, f"{instance.url}/accounts/profile/", {"action": "subscribe", "source": "mbd-e2e-signed", "distribution": ""})
    assert r.status_code == 200 and "Subscribed" in r.text, r.text[-3000:]
    # The administrator lets them upload to sec and activates their key.
    out = instance.django(f"""
u = models.Uploader.objects.get(user__username={USER!r})
u._mbd_internal_m2m = True
u.may_upload_to.add(models.Repository.objects.get(identity={REPO!r}))
u.mbd_pca()
print(u.mbd_status_display(), u.key_fingerprint)
""")
    assert out.strip().splitlines()[-1].lower().startswith("active") and fpr in out, out
    try:
        yield s, g, fpr
    finally:
        g.kill_agents()


def test_signed_upload_installs_and_the_subscription_mails(instance, developer, tmp_path):
    _s, g, fpr = developer
    name, version = "mbd-e2e-signed", "1.0~sec12+1"
    changes = make_source_package(tmp_path, name, version, DIST, gnupghome=g.homedir, key_id=fpr)
    started = now_iso()
    ftp_upload(instance, changes)
    event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), name, version, after=started, timeout=600)
    assert event["type"] == "INSTALLED", event["extra"].get("error")
    assert reprepro_ls(instance, name, repository=REPO) == {DIST: version}
    mail = _wait_mail(instance, lambda rcpts, m: EMAIL in rcpts and name in m["Subject"] and "INSTALLED" in m["Subject"])
    assert mail is not None


def test_upload_signed_by_another_key_is_rejected(instance, developer, tmp_path):  # pylint: disable=unused-argument
    other, fpr = _key(tmp_path, "other")
    try:
        name, version = "mbd-e2e-signed-other", "1.0~sec12+1"
        changes = make_source_package(tmp_path, name, version, DIST, gnupghome=other.homedir, key_id=fpr)
        started = now_iso()
        ftp_upload(instance, changes)
        event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), name, version, after=started, timeout=300)
        assert event["type"] == "REJECTED", event
        assert re.search(r"(?i)signature|not signed|no public key|unknown key", event["extra"]["error"]["detail"]), event["extra"]["error"]
        assert name not in str(reprepro_ls(instance, name, repository=REPO))
    finally:
        other.kill_agents()


def test_extra_uploader_keyring_may_upload(instance, sec, tmp_path):
    extra, fpr = _key(tmp_path, "extra")
    try:
        keyring = instance.home / "extra-uploaders.gpg"
        exported = subprocess.run(["gpg", "--homedir", str(extra.homedir), "--export", fpr], check=True, capture_output=True).stdout
        keyring.write_bytes(exported)
        instance.own(keyring)
        instance.django(f"""
repo = models.Repository.objects.get(identity={sec!r})
models.Repository.objects.filter(pk=repo.pk).update(extra_uploader_keyrings={str(keyring)!r})
""")
        name, version = "mbd-e2e-signed-extra", "1.0~sec12+1"
        changes = make_source_package(tmp_path, name, version, DIST, gnupghome=extra.homedir, key_id=fpr)
        started = now_iso()
        ftp_upload(instance, changes)
        event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), name, version, after=started, timeout=600)
        assert event["type"] == "INSTALLED", event["extra"].get("error")
    finally:
        instance.django(f"models.Repository.objects.filter(identity={sec!r}).update(extra_uploader_keyrings='')")
        extra.kill_agents()
