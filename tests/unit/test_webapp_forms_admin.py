"""Django admin of the status models (test client): the status column and filter, the status
actions as list actions, as buttons on an object's page (remove asks first), and the "Save and
PCA" shortcut. Uploader stands in for every status model (its data hooks are replaced: no gpg)."""

# pytest idioms: Django and the code under test are imported after the test set-up.
# pylint: disable=import-outside-toplevel

import re

import pytest


@pytest.fixture(autouse=True)
def _testserver_allowed():
    """The Django test client's Host ('testserver') is no host of the instance: allow it here."""
    from django.conf import settings as django_settings  # pylint: disable=import-outside-toplevel
    from django.test import override_settings as _override  # pylint: disable=import-outside-toplevel
    with _override(ALLOWED_HOSTS=[*django_settings.ALLOWED_HOSTS, "testserver"]):
        yield


PASSWORD = "admin-Secret-1"


@pytest.fixture
def setup(db, monkeypatch):  # pylint: disable=unused-argument,redefined-outer-name
    """An admin client, a developer's Uploader, and the Uploader data actions the admin runs (recorded instead of run)."""
    from django.contrib.auth.models import User
    from django.test import Client
    from mini_buildd import models
    calls = []
    monkeypatch.setattr(models.Uploader, "mbd_prepare_data", lambda self: calls.append(("prepare", self.user.username)))
    monkeypatch.setattr(models.Uploader, "mbd_check_data", lambda self: calls.append(("check", self.user.username)))
    monkeypatch.setattr(models.Uploader, "mbd_remove_data", lambda self: calls.append(("remove", self.user.username)))
    admin = User.objects.create_superuser("admin-test", "admin-test@example.org", PASSWORD)
    dev = User.objects.create_user("admin-dev", password=PASSWORD)
    c = Client()
    assert c.login(username=admin.username, password=PASSWORD)
    return {"client": c, "uploader": models.Uploader.objects.get(user=dev), "calls": calls}


def url(uploader, suffix=""):
    return f"/admin/mini_buildd/uploader/{uploader.pk}/{suffix}"


def fresh(uploader):
    uploader.refresh_from_db()
    return uploader


def test_status_column_and_filter(setup):  # pylint: disable=redefined-outer-name
    c, uploader = setup["client"], setup["uploader"]
    r = c.get("/admin/mini_buildd/uploader/")
    assert r.status_code == 200
    page = r.content.decode()
    assert re.search(r'<span class="mbd-status mbd-status-removed" title="[^"]*">Removed</span>', page)
    assert "?status__exact=2" in page  # filter by status
    assert 'value="mbd_action_pca"' in page and 'value="mbd_action_remove"' in page
    uploader.mbd_prepare()
    page = c.get("/admin/mini_buildd/uploader/").content.decode()
    assert '<span class="mbd-status mbd-status-prepared" title="Prepared.">Prepared (-)</span>' in page


def test_list_actions(setup):  # pylint: disable=redefined-outer-name
    c, uploader = setup["client"], setup["uploader"]
    r = c.post("/admin/mini_buildd/uploader/", {"action": "mbd_action_pca", "_selected_action": [uploader.pk]}, follow=True)
    assert r.status_code == 200 and fresh(uploader).mbd_is_active()
    assert "pca done: Active" in r.content.decode()
    c.post("/admin/mini_buildd/uploader/", {"action": "mbd_action_deactivate", "_selected_action": [uploader.pk]})
    assert fresh(uploader).mbd_is_prepared() and not uploader.mbd_is_active()
    # Remove: a confirmation page first.
    r = c.post("/admin/mini_buildd/uploader/", {"action": "mbd_action_remove", "_selected_action": [uploader.pk]})
    assert r.status_code == 200 and "Really remove?" in r.content.decode() and not fresh(uploader).mbd_is_removed()
    c.post("/admin/mini_buildd/uploader/", {"action": "mbd_action_remove", "_selected_action": [uploader.pk], "mbd_confirm": "yes"})
    assert fresh(uploader).mbd_is_removed()
    # A failing action is reported, not a traceback.
    r = c.post("/admin/mini_buildd/uploader/", {"action": "mbd_action_check", "_selected_action": [uploader.pk]}, follow=True)
    assert r.status_code == 200 and "check failed" in r.content.decode()


def test_object_page_buttons(setup):  # pylint: disable=redefined-outer-name
    c, uploader = setup["client"], setup["uploader"]
    r = c.get(url(uploader, "change/"))
    page = r.content.decode()
    assert r.status_code == 200
    for action in ("prepare", "check", "pca", "activate", "deactivate", "remove"):
        assert f'action="{url(uploader, f"mbd-action/{action}/")}"' in page and f'id="mbd-action-{action}"' in page
    assert 'name="_mbd_save_pca"' in page
    # GET does nothing.
    assert c.get(url(uploader, "mbd-action/prepare/")).status_code == 302 and fresh(uploader).mbd_is_removed()
    r = c.post(url(uploader, "mbd-action/pca/"))
    assert r.status_code == 302 and r["Location"] == url(uploader, "change/")
    assert fresh(uploader).mbd_is_active()
    assert setup["calls"] == [("prepare", "admin-dev"), ("check", "admin-dev")]
    r = c.post(url(uploader, "mbd-action/remove/"))
    assert r.status_code == 200 and "Really remove?" in r.content.decode() and fresh(uploader).mbd_is_active()
    r = c.post(url(uploader, "mbd-action/remove/"), {"mbd_confirm": "yes"})
    assert r.status_code == 302 and fresh(uploader).mbd_is_removed()
    r = c.post(url(uploader, "mbd-action/explode/"), follow=True)
    assert "Unknown status action" in r.content.decode()


def test_object_actions_need_change_permission(setup):  # pylint: disable=redefined-outer-name
    from django.contrib.auth.models import User
    from django.test import Client
    uploader = setup["uploader"]
    User.objects.create_user("admin-viewer", password=PASSWORD, is_staff=True)
    c = Client()
    assert c.login(username="admin-viewer", password=PASSWORD)
    r = c.post(url(uploader, "mbd-action/pca/"))
    assert r.status_code == 403 and fresh(uploader).mbd_is_removed()


def test_save_and_pca_shortcut(setup):  # pylint: disable=redefined-outer-name
    c, uploader = setup["client"], setup["uploader"]
    r = c.post(url(uploader, "change/"), {"user": uploader.user.pk, "key_id": "", "key": "armored", "_mbd_save_pca": "1"})
    assert r.status_code == 302 and r["Location"] == url(uploader, "change/")
    uploader = fresh(uploader)
    assert uploader.key == "armored" and uploader.mbd_is_active()
    # Plain save keeps the usual admin behaviour.
    r = c.post(url(uploader, "change/"), {"user": uploader.user.pk, "key_id": "", "key": "armored2", "_save": "1"})
    assert r.status_code == 302 and r["Location"] == "/admin/mini_buildd/uploader/"
    assert fresh(uploader).mbd_is_changed()
