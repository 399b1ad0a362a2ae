"""Layout, theme, table tools and the header search in headless Chromium against the real e2e
instance (issue #18): no page scrolls sideways at 1280×800 or at 390×844 (a phone), the dark
theme follows the browser's ``prefers-color-scheme``, a table's filter box narrows its rows and
its headers sort it (mouse and keyboard), and the header's search box finds a binary package.
Screenshots of every page at both sizes go to ``test-artifacts/screenshots/layout-*.png``."""

# pytest idioms: Django and the code under test are imported after the test set-up.
# pylint: disable=import-outside-toplevel

import time

import pytest
import requests

from tests.browser.conftest import SCREENSHOTS
from tests.helpers.shared_packages import HELLO, UNSTABLE

SIZES = {"1280": (1280, 800), "390": (390, 844)}


def _pages():
    return [
        ("home", "/mini_buildd/"), ("events", "/mini_buildd/events/"), ("builds", "/mini_buildd/builds/"),
        ("repositories", "/mini_buildd/repositories/"), ("distribution", f"/mini_buildd/repositories/test/dists/{UNSTABLE}/"),
        ("package", f"/mini_buildd/packages/{HELLO}/"), ("search", f"/mini_buildd/packages/?q={HELLO}"),
        ("builders", "/mini_buildd/builders/"), ("crontab", "/mini_buildd/crontab/"), ("api", "/mini_buildd/api/"),
        ("api-ls", "/mini_buildd/api/ls/?output=html"), ("events-dir", "/mini_buildd/events-dir/"),
        ("sitemap", "/mini_buildd/sitemap/"), ("login", "/accounts/login/"), ("manual", "/mini_buildd/manual/"),
    ]


def _viewport(driver, width, height):
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})


def _scheme(driver, value):
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": value}]})


def _css(driver, selector):
    from selenium.webdriver.common.by import By
    return driver.find_elements(By.CSS_SELECTOR, selector)


def _luminance(rgb):
    """Relative luminance (0 black .. 1 white) of a CSS ``rgb(...)``/``rgba(...)`` value."""
    parts = [float(x) / 255 for x in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3]]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in parts]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _colors(driver, selector="body"):
    return driver.execute_script(
        "const s = getComputedStyle(document.querySelector(arguments[0])); return [s.color, s.backgroundColor];", selector)


@pytest.mark.parametrize("size", sorted(SIZES))
def test_no_page_scrolls_sideways(instance, browser, hello, size):  # pylint: disable=redefined-outer-name,unused-argument
    width, height = SIZES[size]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    wide = []
    try:
        _viewport(browser, width, height)
        for name, path in _pages():
            browser.get(instance.url + path)
            assert "Traceback" not in browser.page_source, path
            scroll, inner = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth];")
            if scroll > inner:
                wide.append(f"{path}: scrollWidth {scroll} > innerWidth {inner}")
            browser.save_screenshot(str(SCREENSHOTS / f"layout-{size}-{name}.png"))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert not wide, "\n".join(wide)


def test_dark_theme_follows_the_browser(instance, browser):
    try:
        for scheme in ("dark", "light"):
            _scheme(browser, scheme)
            browser.get(instance.url + "/mini_buildd/repositories/")
            fg, bg = _colors(browser)
            if scheme == "dark":
                assert _luminance(bg) < 0.05 and _luminance(fg) > 0.6, (fg, bg)
                browser.save_screenshot(str(SCREENSHOTS / "layout-dark-repositories.png"))
            else:
                assert _luminance(bg) > 0.9 and _luminance(fg) < 0.05, (fg, bg)
            # WCAG contrast of body text (AA asks for 4.5:1)
            hi, lo = sorted((_luminance(fg), _luminance(bg)), reverse=True)
            assert (hi + 0.05) / (lo + 0.05) >= 7, (scheme, fg, bg)
    finally:
        _scheme(browser, "")


def test_table_filter_and_sort(instance, browser, hello):  # pylint: disable=redefined-outer-name,unused-argument
    from selenium.webdriver.common.keys import Keys
    browser.get(instance.url + "/mini_buildd/api/")
    table = _css(browser, "#mbd-call-dput_conf")[0].find_element("xpath", "./ancestor::table")
    box = table.find_element("xpath", "preceding-sibling::input[1]")
    assert "table-filter" in box.get_attribute("class")

    def visible():
        return [r for r in table.find_elements("css selector", "tbody tr") if r.is_displayed()]
    before = len(visible())
    assert before > 2
    box.send_keys("dput_conf")
    after = visible()
    assert 0 < len(after) < before and all("dput_conf" in r.text for r in after)
    box.clear()
    box.send_keys(Keys.SPACE, Keys.BACKSPACE)
    assert len(visible()) == before
    # Sorting with the keyboard: on the first header, Enter sorts ascending, Enter again descending.
    header = table.find_elements("css selector", "th.sortable")[0]
    assert header.get_attribute("tabindex") == "0"
    header.send_keys(Keys.ENTER)
    assert header.get_attribute("aria-sort") == "ascending"
    names = [r.find_elements("css selector", "td")[0].text for r in visible()]
    assert names == sorted(names, key=str.lower), names
    header.send_keys(Keys.ENTER)
    assert header.get_attribute("aria-sort") == "descending"
    assert [r.find_elements("css selector", "td")[0].text for r in visible()] == sorted(names, key=str.lower, reverse=True)


def test_header_search_finds_a_binary_package(instance, browser, hello):  # pylint: disable=redefined-outer-name,unused-argument
    from selenium.webdriver.common.keys import Keys
    browser.get(instance.url + "/mini_buildd/builders/")
    box = _css(browser, "form.search input[name=q]")[0]
    box.send_keys(HELLO[4:], Keys.ENTER)  # a part of the binary's name
    links = [a.get_attribute("href") for a in _css(browser, "table.search-results a")]
    assert any(link.endswith(f"/mini_buildd/packages/{HELLO}/") for link in links), browser.page_source[-3000:]
    assert HELLO in _css(browser, "table.search-results")[0].text
    # The suggestions list is filled on focus (the names call)
    names = browser.execute_script("return fetch('/mini_buildd/packages/?names=1').then(r => r.json());")
    assert HELLO in names


def _wait_for(condition, what, timeout=60):
    for _ in range(int(timeout * 2)):
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out: {what}")


def _login_admin(instance, browser):
    from tests.helpers.instance import ADMIN_PASSWORD  # pylint: disable=import-outside-toplevel
    browser.get(f"{instance.url}/accounts/login/")
    _css(browser, "#id_username")[0].send_keys("admin")
    _css(browser, "#id_password")[0].send_keys(ADMIN_PASSWORD)
    _css(browser, "main form button[type=submit]")[0].click()
    _wait_for(lambda: _css(browser, "a.user"), "user link after login")


def test_call_buttons_do_what_their_forms_do(instance, browser):
    """Issue #18: the calls next to a repository and the header's engine toggle run the API call
    as its own form does (same answer), a dangerous one only with its confirmation."""
    _login_admin(instance, browser)
    browser.get(instance.url + "/mini_buildd/repositories/")
    calls = _css(browser, "#repo-test div.calls")[0]
    # read-only: a link that runs the call; its answer is the API's
    calls.find_element("css selector", 'a.mbd-call[href^="/mini_buildd/api/sources_list/"]').click()
    shown = _css(browser, "#mbd-api-result")[0].text.strip()
    plain = requests.get(f"{instance.url}/mini_buildd/api/sources_list/", params={"repositories": "test", "output": "plain"}, timeout=60).text
    assert shown and shown == plain.strip(), (shown, plain)
    # confirmable: without the checkbox the browser does not submit; with it, the call runs
    browser.get(instance.url + "/mini_buildd/repositories/")
    form = _css(browser, '#repo-test form.mbd-call[action="/mini_buildd/api/reindex/"]')[0]
    assert browser.execute_script("return arguments[0].checkValidity();", form) is False  # the browser refuses to submit it
    form.find_element("css selector", "button").click()
    time.sleep(1)
    assert browser.current_url.endswith("/mini_buildd/repositories/")  # not submitted
    form.find_element("css selector", 'input[name="confirm"]').click()
    assert browser.execute_script("return arguments[0].checkValidity();", form) is True
    form.find_element("css selector", "button").click()
    _wait_for(lambda: "/mini_buildd/api/reindex/" in browser.current_url and _css(browser, "#mbd-api-result"), "reindex ran")
    # the header's engine toggle: stop, then start again (status says so each time)
    for call, load_ok in (("stop", lambda load: load < 0), ("start", lambda load: load >= 0)):
        browser.get(instance.url + "/mini_buildd/builders/")
        toggle = _css(browser, f'header .engine-toggle form.mbd-call[action="/mini_buildd/api/{call}/"]')[0]
        toggle.find_element("css selector", 'input[name="confirm"]').click()
        toggle.find_element("css selector", "button").click()
        _wait_for(lambda c=call: f"/mini_buildd/api/{c}/" in browser.current_url and _css(browser, "#mbd-api-result"), f"{call} ran")
        for _ in range(60):
            if load_ok(requests.get(f"{instance.url}/mini_buildd/api/status/", timeout=30).json()["load"]):
                break
            time.sleep(1)
        else:
            raise AssertionError(f"engine did not {call}")
