"""Browser test fixtures: headless Debian Chromium driven by selenium (chromium, chromium-driver,
python3-selenium), a fresh profile per module, and screenshots saved to
``test-artifacts/screenshots/`` at the repository root."""

# pytest idioms: Django and the code under test are imported after the test set-up.
# pylint: disable=import-outside-toplevel

import pathlib
import shutil
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,1024")


@pytest.fixture(scope="module")
def browser():
    """A selenium WebDriver for headless Chromium with a throw-away profile."""
    from selenium import webdriver  # Debian: python3-selenium
    from selenium.webdriver.chrome.service import Service
    for path in (CHROMIUM, CHROMEDRIVER):
        if not pathlib.Path(path).exists():
            raise RuntimeError(f"{path} missing: install Debian packages chromium and chromium-driver")
    profile = tempfile.mkdtemp(prefix="mbd-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def screenshot():
    """``screenshot(driver, name)``: save the whole page as ``test-artifacts/screenshots/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(driver, name):
        height = driver.execute_script("return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight);")
        driver.set_window_size(1280, max(800, min(int(height) + 40, 6000)))
        path = SCREENSHOTS / f"{name}.png"
        driver.save_screenshot(str(path))
        driver.set_window_size(1280, 1024)
        return path
    return take


from tests.helpers.shared_packages import hello  # noqa: E402,F401  pylint: disable=unused-import,wrong-import-position
