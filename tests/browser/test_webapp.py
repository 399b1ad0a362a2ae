"""The web application in headless Chromium against the real e2e instance (``instance`` fixture):
log in as admin, run the setup page's inspect, watch an upload go PACKAGING -> BUILDING ->
INSTALLED on the events page without reloading it, open the package's tracking page and migrate
it to testing as staff (the page then shows the version in testing). Every page is saved as a
screenshot in ``test-artifacts/screenshots/`` and its HTML checked with tidy (no errors).

The tests of this module run in order and share one browser session (logged in as admin)."""

# pytest idioms: Django and the code under test are imported after the test set-up.
# pylint: disable=import-outside-toplevel

import time

import pytest
import requests

from tests.helpers.html_check import assert_valid_html
from tests.helpers.instance import ADMIN_PASSWORD
from tests.helpers.packages import dput, make_source_package, write_dput_cf

SOURCE = "mbd-browser-hello"
VERSION = "1.0~test12+1"
UNSTABLE, TESTING = "bookworm-test-unstable", "bookworm-test-testing"
BUILD_TIMEOUT = 900


def wait(driver, timeout, condition, message=""):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout, poll_frequency=0.5).until(condition, message)


def css(driver, selector):
    from selenium.webdriver.common.by import By
    return driver.find_elements(By.CSS_SELECTOR, selector)


def no_server_error(driver):
    assert "Traceback" not in driver.page_source
    assert "500 Internal error" not in driver.title


@pytest.fixture(scope="module")
def session(instance):
    """A requests session logged in as admin (for HTML validation of the same pages)."""
    s = requests.Session()
    s.get(f"{instance.url}/accounts/login/", timeout=30)
    r = s.post(f"{instance.url}/accounts/login/", timeout=30, data={
        "username": "admin", "password": ADMIN_PASSWORD, "csrfmiddlewaretoken": s.cookies["csrftoken"], "next": "/accounts/null/"},
        headers={"Referer": f"{instance.url}/accounts/login/"})
    assert r.url.endswith("/accounts/null/")
    return s


def check_html(session, url):  # pylint: disable=redefined-outer-name
    r = session.get(url, timeout=60)
    assert r.status_code == 200, (url, r.status_code)
    assert_valid_html(r.text, what=url)


def test_login_as_admin(instance, browser, screenshot):
    browser.get(f"{instance.url}/mini_buildd/")
    screenshot(browser, "01-home-anonymous")
    browser.get(f"{instance.url}/accounts/login/")
    screenshot(browser, "02-login")
    css(browser, "#id_username")[0].send_keys("admin")
    css(browser, "#id_password")[0].send_keys(ADMIN_PASSWORD)
    css(browser, "main form button[type=submit]")[0].click()
    wait(browser, 30, lambda d: css(d, "a.user"), "no user link after login")
    assert css(browser, "a.user")[0].text == "admin"
    browser.get(f"{instance.url}/mini_buildd/")
    assert css(browser, "#mbd-engine")[0].text == "running"
    screenshot(browser, "03-home-admin")


def test_setup_page_inspect(instance, browser, screenshot):
    browser.get(f"{instance.url}/mini_buildd/setup/")
    no_server_error(browser)
    css(browser, "#mbd-preset-inspect")[0].click()
    wait(browser, 60, lambda d: "preset=inspect" in d.current_url)
    confirm = css(browser, "#id_confirm")
    if confirm and not confirm[0].is_selected():
        confirm[0].click()
    css(browser, "#mbd-setup-run")[0].click()
    wait(browser, 600, lambda d: css(d, "#mbd-setup-summary") or css(d, ".mbd-error"), "no setup report")
    no_server_error(browser)
    assert css(browser, "#mbd-setup-summary"), browser.page_source[:3000]
    assert len(css(browser, "#mbd-setup-report tbody tr")) > 3
    screenshot(browser, "04-setup-inspect")
    # inspect changed nothing: the engine runs again
    browser.get(f"{instance.url}/mini_buildd/")
    wait(browser, 60, lambda d: css(d, "#mbd-engine") and css(d, "#mbd-engine")[0].text == "running")


def test_upload_appears_live_on_events_page(instance, browser, screenshot, tmp_path):
    browser.get(f"{instance.url}/mini_buildd/events/")
    wait(browser, 30, lambda d: css(d, "#mbd-live"))
    browser.execute_script("window.mbdNoReload = 'still here';")
    screenshot(browser, "05-events-before-upload")

    changes = make_source_package(tmp_path, SOURCE, VERSION, UNSTABLE)
    cf = write_dput_cf(tmp_path / "dput.cf", "mbd-browser", f"127.0.0.1:{instance.ftp_port}")
    proc = dput(cf, "mbd-browser", changes)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    def row(etype):
        return css(browser, f'#mbd-events tr[data-type="{etype}"][data-source="{SOURCE}"]')

    seen = {}
    deadline = time.monotonic() + BUILD_TIMEOUT
    while time.monotonic() < deadline and not (row("INSTALLED") or row("FAILED") or row("REJECTED")):
        for etype in ("PACKAGING", "BUILDING"):
            if etype not in seen and row(etype):
                seen[etype] = time.monotonic()
                screenshot(browser, f"06-events-live-{etype.lower()}")
        time.sleep(0.5)
    assert not row("REJECTED"), row("REJECTED")[0].text
    assert not row("FAILED"), row("FAILED")[0].text
    assert row("INSTALLED"), "INSTALLED did not appear on the events page"
    # All three arrived on the same page: it was never reloaded.
    assert browser.execute_script("return window.mbdNoReload;") == "still here"
    assert row("PACKAGING") and row("BUILDING") and row("BUILT")
    # newest first: INSTALLED above BUILDING above PACKAGING
    types = [tr.get_attribute("data-type") for tr in css(browser, f'#mbd-events tr[data-source="{SOURCE}"]')]
    assert types.index("INSTALLED") < types.index("BUILDING") < types.index("PACKAGING"), types
    screenshot(browser, "07-events-installed")
    # QA letters (issue #18), in the live row as in the page's own: B passed and L has lintian's
    # result (the test package gets warnings), each linking to the real build log with lintian's run.
    for where in ("live", "reloaded"):
        if where == "reloaded":
            browser.get(f"{instance.url}/mini_buildd/events/?source={SOURCE}")
        letters = {a.text: a for a in row("INSTALLED")[0].find_elements("css selector", 'span.qa-arch[data-arch="amd64"] a.qa')}
        assert sorted(letters) == ["A", "B", "L", "P"], (where, sorted(letters))
        assert "qa-pass" in letters["B"].get_attribute("class"), where
        lintian = letters["L"].get_attribute("title")  # e.g. "amd64 lintian: warn"
        assert lintian.startswith("amd64 lintian: ") and lintian.split(": ")[1] in ("pass", "warn", "info"), (where, lintian)
        assert f"qa-{'pass' if lintian.endswith(('pass', 'info')) else 'warn'}" in letters["L"].get_attribute("class")
        log = requests.get(letters["L"].get_attribute("href"), timeout=60)
        assert log.status_code == 200 and "Running lintian..." in log.text and "Status: successful" in log.text, where


def test_pages_render_valid_html(instance, browser, screenshot, session):  # pylint: disable=redefined-outer-name
    bkey = None
    r = session.get(f"{instance.url}/mini_buildd/events/?type=BUILT&source={SOURCE}", timeout=30)
    for line in r.text.split('href="'):
        if line.startswith("/mini_buildd/events-dir/") and line.split('"')[0].endswith(".buildlog"):
            bkey = "/".join(line.split('"')[0][len("/mini_buildd/events-dir/"):].split("/")[:4])
            break
    assert bkey, "no build log link on the BUILT event"
    pages = [
        ("08-builds", "/mini_buildd/builds/"),
        ("09-build", f"/mini_buildd/builds/{bkey}/"),
        ("10-repositories", "/mini_buildd/repositories/"),
        ("11-distribution", f"/mini_buildd/repositories/test/dists/{UNSTABLE}/"),
        ("12-builders", "/mini_buildd/builders/"),
        ("13-crontab", "/mini_buildd/crontab/"),
        ("14-events-filtered", f"/mini_buildd/events/?source={SOURCE}"),
        ("15-events-saved", f"/mini_buildd/events/{SOURCE}/"),
        ("16-events-dir", f"/mini_buildd/events-dir/{SOURCE}/"),
        ("17-api", "/mini_buildd/api/"),
        ("18-profile", "/accounts/profile/"),
        ("19-sitemap", "/mini_buildd/sitemap/"),
        ("20-not-found", "/mini_buildd/packages/no-such-package/"),
    ]
    for name, path in pages:
        browser.get(instance.url + path)
        no_server_error(browser)
        screenshot(browser, name)
        if name != "20-not-found":
            check_html(session, instance.url + path)
    # the build page shows the build log; the repositories page counts the package
    browser.get(f"{instance.url}/mini_buildd/builds/{bkey}/")
    assert "dpkg-buildpackage" in css(browser, "#mbd-buildlog")[0].text or "sbuild" in css(browser, "#mbd-buildlog")[0].text
    r = session.get(f"{instance.url}/mini_buildd/packages/{SOURCE}/buildtimes.svg", timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/svg+xml" and 'class="bar"' in r.text


def test_tracking_page_migrate_to_testing(instance, browser, screenshot, session):  # pylint: disable=redefined-outer-name
    url = f"{instance.url}/mini_buildd/packages/{SOURCE}/"
    browser.get(url)
    no_server_error(browser)
    unstable = css(browser, f'tr[data-distribution="{UNSTABLE}"]')[0]
    assert unstable.get_attribute("data-version") == VERSION
    assert css(browser, f'tr[data-distribution="{TESTING}"]')[0].get_attribute("data-version") == ""
    screenshot(browser, "21-package-before-migrate")
    check_html(session, url)
    from selenium.webdriver.common.by import By
    unstable.find_element(By.CSS_SELECTOR, "form.mbd-migrate button").click()
    wait(browser, 120, lambda d: css(d, "ul.messages li"), "no result message after migrate")
    message = css(browser, "ul.messages li")[0]
    assert "msg-success" in message.get_attribute("class"), message.text
    assert css(browser, f'tr[data-distribution="{TESTING}"]')[0].get_attribute("data-version") == VERSION
    assert VERSION in css(browser, f'tr[data-distribution="{TESTING}"] td.version')[0].text
    screenshot(browser, "22-package-migrated")
    # the MIGRATED event is in its history
    assert css(browser, f'tr[data-type="MIGRATED"][data-distribution="{TESTING}"]')


def test_keyboard_only_migrates_to_stable(instance, browser, screenshot):
    """Issue #18: with the keyboard only (Tab to the button, Enter) the package page migrates the
    version from testing to stable; the focused control shows its focus outline."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    browser.get(f"{instance.url}/mini_buildd/packages/{SOURCE}/")
    target = css(browser, f'tr[data-distribution="{TESTING}"] form.mbd-migrate button')[0]
    for _ in range(200):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        if browser.switch_to.active_element == target:
            break
    else:
        raise AssertionError("Tab never reached the migrate button of testing")
    outline = browser.execute_script("const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth];")
    assert outline[0] != "none" and outline[1] != "0px", outline
    screenshot(browser, "23-package-keyboard-focus")
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    wait(browser, 120, lambda d: css(d, "ul.messages li"), "no result message after migrate")
    assert "msg-success" in css(browser, "ul.messages li")[0].get_attribute("class")
    assert css(browser, 'tr[data-distribution="bookworm-test-stable"]')[0].get_attribute("data-version") == VERSION
