"""Account pages (Django test client): login as the API client does it (CSRF, upstream §5.2), logout,
password reset by mail, registration with e-mail activation (off unless enabled), and the profile
(GnuPG key for uploads, subscriptions). Every page passes ``tidy``."""

# pytest idioms: Django and the code under test are imported after the test set-up.
# pylint: disable=import-outside-toplevel

import re

import pytest
from django.test import override_settings

from tests.helpers.html_check import assert_valid_response


@pytest.fixture(autouse=True)
def _testserver_allowed():
    """The Django test client's Host ('testserver') is no host of the instance: allow it here."""
    from django.conf import settings as django_settings  # pylint: disable=import-outside-toplevel
    with override_settings(ALLOWED_HOSTS=[*django_settings.ALLOWED_HOSTS, "testserver"]):
        yield


PASSWORD = "account-Secret-1"
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"


def text(response):
    return response.content.decode()


@pytest.fixture
def user(db):  # pylint: disable=unused-argument,redefined-outer-name
    from django.contrib.auth.models import User
    return User.objects.create_user("account-user", email="account-user@example.org", password=PASSWORD)


def logged_in(u):
    from django.test import Client
    c = Client()
    assert c.login(username=u.username, password=PASSWORD)
    return c


@pytest.fixture
def mailbox():
    """Django's mail outbox (locmem backend) for the test."""
    from django.core import mail
    with override_settings(EMAIL_BACKEND=LOCMEM):
        mail.outbox = []
        yield mail.outbox


# ------------------------------------------------------------------------------------------------ login/logout
def test_api_client_login_with_csrf(user):  # pylint: disable=redefined-outer-name
    from django.test import Client
    c = Client(enforce_csrf_checks=True)
    r = c.get("/accounts/login/")
    assert r.status_code == 200
    assert_valid_response(r)
    token = c.cookies["csrftoken"].value
    assert 'href="/accounts/password_reset/"' in text(r) and 'id="mbd-register"' not in text(r)
    # Without the token: refused.
    r = c.post("/accounts/login/", {"username": user.username, "password": PASSWORD, "next": "/accounts/null/"})
    assert r.status_code == 403
    r = c.post("/accounts/login/", {"username": user.username, "password": PASSWORD, "csrfmiddlewaretoken": token,
                                    "this_is_the_login_form": "1", "next": "/accounts/null/"}, follow=True)
    assert r.redirect_chain[-1][0] == "/accounts/null/" and r.status_code == 200
    # Wrong password: the form again with the error.
    r = Client().post("/accounts/login/", {"username": user.username, "password": "wrong", "next": "/accounts/null/"})
    assert r.status_code == 200 and "didn't match" in text(r)
    assert_valid_response(r)


def test_logout(user):  # pylint: disable=redefined-outer-name
    c = logged_in(user)
    r = c.post("/accounts/logout/")
    assert r.status_code in (200, 302)
    assert c.get("/accounts/profile/").status_code == 302


# ------------------------------------------------------------------------------------------------ password reset
def test_password_reset_by_mail(user, mailbox):  # pylint: disable=redefined-outer-name
    from django.test import Client
    c = Client()
    r = c.get("/accounts/password_reset/")
    assert r.status_code == 200
    assert_valid_response(r)
    r = c.post("/accounts/password_reset/", {"email": "not-an-address"})
    assert r.status_code == 200 and 'id="id_email_error"' in text(r) and not mailbox
    r = c.post("/accounts/password_reset/", {"email": user.email}, follow=True)
    assert r.status_code == 200 and "Password reset sent" in text(r)
    assert_valid_response(r)
    assert len(mailbox) == 1 and mailbox[0].to == [user.email]
    link = re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", mailbox[0].body).group(1)
    r = c.get(link, follow=True)
    assert r.status_code == 200 and 'id="mbd-password-reset-confirm-form"' in text(r)
    assert_valid_response(r)
    form_url = r.redirect_chain[-1][0]
    r = c.post(form_url, {"new_password1": "a", "new_password2": "b"})
    assert r.status_code == 200 and 'id="id_new_password2_error"' in text(r)
    r = c.post(form_url, {"new_password1": "New-Secret-2", "new_password2": "New-Secret-2"}, follow=True)
    assert "Password set" in text(r)
    assert_valid_response(r)
    assert Client().login(username=user.username, password="New-Secret-2")
    # The link is single-use.
    r = Client().get(link, follow=True)
    assert "This link is not valid" in text(r)


# ------------------------------------------------------------------------------------------------ registration
def test_registration_is_off_by_default(db):  # pylint: disable=unused-argument,redefined-outer-name
    from django.test import Client
    r = Client().get("/accounts/register/")
    assert r.status_code == 404 and "Registration closed" in text(r)
    assert_valid_response(r)
    r = Client().post("/accounts/register/", {"username": "x", "email": "x@example.org", "password1": "Aa-1234567", "password2": "Aa-1234567"})
    assert r.status_code == 404
    from django.contrib.auth.models import User
    assert not User.objects.filter(username="x").exists()


def test_registration_with_activation(db, mailbox):  # pylint: disable=unused-argument,redefined-outer-name
    from django.contrib.auth.models import User
    from django.test import Client
    with override_settings(MBD_ALLOW_REGISTRATION=True):
        c = Client()
        assert 'id="mbd-register"' in text(c.get("/accounts/login/"))
        r = c.get("/accounts/register/")
        assert r.status_code == 200
        assert_valid_response(r)
        # Bad input: errors next to the fields, nobody created.
        r = c.post("/accounts/register/", {"username": "new-user", "email": "bad", "password1": "Aa-1234567", "password2": "other"})
        assert r.status_code == 400
        assert_valid_response(r)
        assert 'id="id_email_error"' in text(r) and 'id="id_password2_error"' in text(r)
        assert not User.objects.filter(username="new-user").exists() and not mailbox
        r = c.post("/accounts/register/", {"username": "new-user", "email": "new@example.org",
                                           "password1": "Aa-1234567", "password2": "Aa-1234567"})
        assert r.status_code == 200 and "new@example.org" in text(r)
        assert_valid_response(r)
        new = User.objects.get(username="new-user")
        assert not new.is_active and hasattr(new, "uploader")
        assert not Client().login(username="new-user", password="Aa-1234567")
        assert len(mailbox) == 1 and mailbox[0].to == ["new@example.org"]
        link = re.search(r"https?://[^/\s]+(/accounts/activate/\S+/\S+/)", mailbox[0].body).group(1)
        # Same address again: refused.
        r = c.post("/accounts/register/", {"username": "other-user", "email": "NEW@example.org",
                                           "password1": "Aa-1234567", "password2": "Aa-1234567"})
        assert r.status_code == 400 and 'id="id_email_error"' in text(r)
        # A broken link fails, the real one activates.
        r = c.get(link[:-3] + "xx/")
        assert r.status_code == 400 and "Activation failed" in text(r)
        assert_valid_response(r)
        r = c.get(link)
        assert r.status_code == 200 and "Account activated" in text(r)
        assert_valid_response(r)
        assert User.objects.get(username="new-user").is_active
        assert Client().login(username="new-user", password="Aa-1234567")


def test_registration_mail_failure(db):  # pylint: disable=unused-argument,redefined-outer-name
    from django.contrib.auth.models import User
    from django.test import Client
    with override_settings(MBD_ALLOW_REGISTRATION=True, EMAIL_HOST="127.0.0.1", EMAIL_PORT=1, EMAIL_TIMEOUT=2,
                           EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend"):
        r = Client().post("/accounts/register/", {"username": "nomail", "email": "nomail@example.org",
                                                  "password1": "Aa-1234567", "password2": "Aa-1234567"})
    assert r.status_code == 503 and "could not be sent" in text(r) and "Traceback" not in text(r)
    assert not User.objects.filter(username="nomail").exists()


# ------------------------------------------------------------------------------------------------ profile
def test_profile_needs_login(db):  # pylint: disable=unused-argument,redefined-outer-name
    from django.test import Client
    r = Client().get("/accounts/profile/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/?next=/accounts/profile/")


def test_profile_subscriptions(user):  # pylint: disable=redefined-outer-name
    from mini_buildd import models
    c = logged_in(user)
    r = c.get("/accounts/profile/")
    assert r.status_code == 200 and "No subscriptions." in text(r)
    assert_valid_response(r)
    r = c.post("/accounts/profile/", {"action": "subscribe", "source": "hello", "distribution": ""}, follow=True)
    assert "Subscribed." in text(r)
    assert_valid_response(r)
    assert list(models.Subscription.objects.filter(subscriber=user).values_list("package", "distribution")) == [("hello", "")]
    r = c.post("/accounts/profile/", {"action": "subscribe", "source": "hello", "distribution": ""}, follow=True)
    assert "You already had this subscription." in text(r)
    c.post("/accounts/profile/", {"action": "subscribe", "source": "", "distribution": "bookworm-test-unstable"})
    page = text(c.get("/accounts/profile/"))
    assert "<td>hello</td><td>(any)</td>" in page and "<td>(any)</td><td>bookworm-test-unstable</td>" in page
    r = c.post("/accounts/profile/", {"action": "unsubscribe", "source": "hello", "distribution": ""}, follow=True)
    assert "Unsubscribed (1 removed)." in text(r)
    assert list(models.Subscription.objects.filter(subscriber=user).values_list("package", flat=True)) == [""]
    r = c.post("/accounts/profile/", {"action": "nonsense"})
    assert r.status_code == 400


def test_profile_key_errors_next_to_field(user):  # pylint: disable=redefined-outer-name
    c = logged_in(user)
    r = c.post("/accounts/profile/", {"action": "set_key", "key": ""})
    assert r.status_code == 400 and "empty" in re.search(r'id="id_key_error">(.*?)</span>', text(r)).group(1)
    assert_valid_response(r)
    r = c.post("/accounts/profile/", {"action": "set_key", "key": "not-a-key-id"})
    assert r.status_code == 400 and re.search(r'id="id_key_error">Argument &#x27;key&#x27;', text(r))
    assert 'not-a-key-id</textarea>' in text(r)  # the value is kept
    r = c.post("/accounts/profile/", {"action": "set_key", "key": "-----BEGIN PGP PUBLIC KEY BLOCK-----\ngarbage\n-----END PGP PUBLIC KEY BLOCK-----"})
    assert r.status_code == 400 and 'id="id_key_error"' in text(r) and "Traceback" not in text(r)
    assert_valid_response(r)


def test_profile_set_key(user, monkeypatch):  # pylint: disable=redefined-outer-name
    from mini_buildd import models
    uploader = models.Uploader.objects.get(user=user)
    assert uploader.mbd_is_removed()

    def fake_prepare(self):
        self.key_long_id, self.key_name = "0123456789ABCDEF", "Account User <account-user@example.org>"
        from django.db import models as dj
        dj.Model.save(self, update_fields=["key_long_id", "key_name"])
    monkeypatch.setattr(models.Uploader, "mbd_prepare_data", fake_prepare)
    c = logged_in(user)
    r = c.post("/accounts/profile/", {"action": "set_key", "key": "0123456789ABCDEF"}, follow=True)
    assert r.status_code == 200 and "staff must (re)activate it" in text(r)
    assert_valid_response(r)
    uploader.refresh_from_db()
    assert uploader.key_id == "0123456789ABCDEF" and uploader.mbd_is_prepared() and not uploader.mbd_is_active()
    assert 'id="mbd-uploader-key">0123456789ABCDEF Account User' in text(r)
    assert 'id="mbd-uploader-status">Prepared (-)' in text(r)
