"""API calls next to their objects (issue #18; ``templatetags/mbd_calls.py``): rendered from the
call registry, only for users the call would accept, read-only calls as links that run them,
others as POST forms (confirmation checkbox where the call needs one) that do what the call's
full form does, and a link to that form with the arguments filled in."""

# pytest idioms: Django and the code under test are imported after the test set-up.
# pylint: disable=import-outside-toplevel,redefined-outer-name,unused-argument

import pytest
from django.test import Client

from tests.helpers.html_check import assert_valid_html


@pytest.fixture(autouse=True)
def _testserver_allowed(settings):
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]


@pytest.fixture
def admin(db):
    from django.contrib.auth.models import User
    return User.objects.create_superuser("calladmin", "admin@example.org", "pw-admin")


def _page(user, url="/mini_buildd/repositories/"):
    c = Client()
    if user is not None:
        c.force_login(user)
    r = c.get(url)
    assert r.status_code == 200
    assert_valid_html(r.content, what=url, strict=True)
    return c, r.content.decode()


def test_anonymous_gets_the_read_only_calls_only(bookworm_test_repository):
    _c, html = _page(None)
    assert 'class="mbd-call" href="/mini_buildd/api/sources_list/?repositories=test&amp;output=html"' in html
    assert "/mini_buildd/api/reindex/" not in html and "/mini_buildd/api/uploaders/" not in html
    assert "/mini_buildd/api/stop/" not in html and "/mini_buildd/api/start/" not in html


def test_admin_gets_forms_with_confirmation_that_do_what_the_form_does(bookworm_test_repository, admin):
    c, html = _page(admin)
    form = html.split('action="/mini_buildd/api/reindex/"', 1)[1].split("</form>", 1)[0]
    assert '<input type="hidden" name="repositories" value="test">' in form and '<input type="hidden" name="output" value="html">' in form
    assert '<input type="checkbox" name="confirm" value="reindex" required' in form
    assert 'href="/mini_buildd/api/reindex/?repositories=test&amp;output=html"' in form  # the full form, filled in
    assert 'action="/mini_buildd/api/uploaders/"' in html and "confirm" not in html.split('action="/mini_buildd/api/uploaders/"', 1)[1].split("</form>")[0]
    assert 'action="/mini_buildd/api/stop/"' in html or 'action="/mini_buildd/api/start/"' in html  # the engine toggle
    # Submitting the button's form runs the call, as its full form would (the repository is not
    # prepared here: the call's own answer, 400); without the confirmation it does not run.
    r = c.post("/mini_buildd/api/reindex/", {"repositories": "test", "output": "html", "confirm": "reindex"})
    assert r.status_code == 400 and b"Repository &#x27;test&#x27; is not prepared" in r.content
    r = c.post("/mini_buildd/api/reindex/", {"repositories": "test", "output": "html"})
    assert r.status_code == 400 and b"Please confirm to run" in r.content
    # The read-only link runs its call: the repository's apt lines
    r = c.get("/mini_buildd/api/sources_list/", {"repositories": "test", "output": "html"})
    assert r.status_code == 200 and b"/repositories/test bookworm-test-unstable main" in r.content


def test_unknown_argument_is_a_template_error(db):
    from django.template import Context, Template, TemplateSyntaxError
    with pytest.raises(TemplateSyntaxError, match="unknown arguments"):
        Template('{% load mbd_calls %}{% mbd_call "reindex" repository="x" %}').render(Context({}))
