"""Cross-site request forgery in a real browser (issue #12 item 1), written as the attack: headless
Chromium logged in as admin on a real daemon (an instance without chroots, its own home) opens
pages of ANOTHER origin (a tiny HTTP server on 127.0.0.2) that try ``remove``, ``stop`` and
``setup`` with a clicked link, ``<img>`` tags, auto-submitted forms (GET and POST) and ``fetch()``.
The daemon's access log shows every attempt arrived; the repository listing (``ls``) and the
daemon/engine state are the same before and after. Then the same calls from ``mini-buildd-api``
still work."""

# pytest idioms: fixtures are parameters named like them; Django and the code under test are imported after the
# test set-up.
# pylint: disable=redefined-outer-name,import-outside-toplevel

import html
import http.server
import json
import os
import subprocess
import threading
import urllib.parse

import pytest
import requests

from mini_buildd import config
from tests.helpers.daemon import PYTHON, ROOT, Daemon, free_port, in_home, run_mbd
from tests.helpers.packages import make_source_package
from tests.helpers.setup_run import run_setup, WITHOUT_CHROOTS

SETUP = WITHOUT_CHROOTS
UNSTABLE = "bookworm-test-unstable"
SOURCE = "mbd-csrf"
PASSWORD = "csrf-Admin-pw1"
ATTACKER_HOST = "127.0.0.2"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """A set-up instance with its daemon running (for the browser); stopped after."""
    if os.geteuid() != 0:
        pytest.skip("needs root (setup)")
    base = tmp_path_factory.mktemp("csrf")
    home = base / "home"
    http_port, ftp_port = free_port(), free_port()
    http_ep, ftp_ep = f"tcp:interface=127.0.0.1:port={http_port}", f"tcp:interface=127.0.0.1:port={ftp_port}"
    run_setup(home, *SETUP, "--ftp-endpoint", ftp_ep, http_endpoint=http_ep, timeout=600)
    (base / "pw").write_text(PASSWORD + "\n")
    assert run_mbd(home, "--set-admin-password-file", str(base / "pw")).returncode == 0
    changes = make_source_package(base / "pkg", SOURCE, "1.0", UNSTABLE)
    dsc = next(changes.parent.glob(f"{SOURCE}_*.dsc"))  # pylint: disable=stop-iteration-return  # a test failure either way
    in_home(home, "from mini_buildd.tools import reprepro\n"
                  "repo = models.Repository.objects.get(identity='test')\n"
                  f"reprepro.Reprepro(repo.mbd_path()).includedsc({UNSTABLE!r}, {str(dsc)!r})\n")
    d = Daemon(home, port=http_port, endpoints=[http_ep]).start()
    yield d
    assert d.stop() == 0


#: The GET vectors; each one's URLs differ by repeated ``output=json`` pairs (same meaning), so the
#: access log shows that each attempt arrived.
GET_VECTORS = ("img", "form", "fetch-no-cors", "fetch-cors", "link")


def attack_url(get, vector):
    return get + "&output=json" * (GET_VECTORS.index(vector) + 1)


def attack_urls(daemon):
    """(call, GET URL, POST action, POST fields) of each attack."""
    calls = {
        "remove": {"source": SOURCE, "distribution": UNSTABLE, "without_rollback": "True", "confirm": "remove", "output": "json"},
        "stop": {"confirm": "stop", "output": "json"},
        "setup": {"identity": "evil", "update": "all", "pca": "all", "confirm": "setup", "output": "json"},
    }
    return [(name, f"{daemon.url}/mini_buildd/api/{name}/?{urllib.parse.urlencode(params)}",
             f"{daemon.url}/mini_buildd/api/{name}/", params) for name, params in calls.items()]


def attack_pages(daemon):
    """The attacker's pages (path -> HTML). Each sets its title to 'done' when its requests settled."""
    urls = attack_urls(daemon)
    esc = html.escape
    pages = {}
    pages["/links.html"] = "<!DOCTYPE html><html><head><title>links</title></head><body>" + "".join(
        f'<p><a id="link-{name}" href="{esc(attack_url(get, "link"))}">win a prize ({name})</a></p>' for name, get, _action, _fields in urls) + "</body></html>"
    imgs = "".join(f'<img src="{esc(attack_url(get, "img"))}" alt="" onload="settled()" onerror="settled()">' for _name, get, _a, _f in urls)
    pages["/img.html"] = ("<!DOCTYPE html><html><head><title>img</title><script>let n = 0; "
                          f"function settled() {{ if (++n === {len(urls)}) document.title = 'done'; }}</script></head>"
                          f"<body>{imgs}</body></html>")
    forms, frames = [], []
    for name, _get, action, fields in urls:
        for method in ("get", "post"):
            target = f"frame-{name}-{method}"
            frames.append(f'<iframe name="{target}" onload="settled()"></iframe>')
            values = list(fields.items()) + ([("output", "json")] * (GET_VECTORS.index("form") + 1) if method == "get" else [])
            inputs = "".join(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in values)
            forms.append(f'<form method="{method}" action="{esc(action)}" target="{target}">{inputs}</form>')
    pages["/forms.html"] = ("<!DOCTYPE html><html><head><title>forms</title><script>let n = 0; "
                            f"function settled() {{ if (++n === {2 * len(frames)}) document.title = 'done'; }}"
                            "window.addEventListener('load', () => { for (const f of document.forms) f.submit(); });"
                            f"</script></head><body>{''.join(frames)}{''.join(forms)}</body></html>")
    fetches = []
    for _name, get, action, fields in urls:
        fetches.append(f"fetch({json.dumps(attack_url(get, 'fetch-no-cors'))}, {{credentials: 'include', mode: 'no-cors'}})")
        fetches.append(f"fetch({json.dumps(action)}, {{method: 'POST', credentials: 'include', mode: 'no-cors', "
                       f"body: new URLSearchParams({json.dumps(fields)})}})")
        fetches.append(f"fetch({json.dumps(attack_url(get, 'fetch-cors'))}, {{credentials: 'include'}})")
    pages["/fetch.html"] = ("<!DOCTYPE html><html><head><title>fetch</title><script>"
                            f"Promise.allSettled([{', '.join(fetches)}]).then(() => {{ document.title = 'done'; }});"
                            "</script></head><body>fetch</body></html>")
    return pages


@pytest.fixture(scope="module")
def attacker(daemon):  # pylint: disable=redefined-outer-name
    """A web server of attack pages on another origin than ``daemon``; stopped after."""
    pages = attack_pages(daemon)

    class Handler(http.server.BaseHTTPRequestHandler):
        """Serves the attack pages (404 for others)."""
        def do_GET(self):  # pylint: disable=invalid-name
            """Answer with the attack page of the path."""
            body = pages.get(self.path, "not found").encode()
            self.send_response(200 if self.path in pages else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet
            pass

    server = http.server.ThreadingHTTPServer((ATTACKER_HOST, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{ATTACKER_HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def state(daemon):  # pylint: disable=redefined-outer-name
    ls = requests.get(f"{daemon.url}/mini_buildd/api/ls/", params={"source": SOURCE}, timeout=60).json()
    status = requests.get(f"{daemon.url}/mini_buildd/api/status/", timeout=60).json()
    return {"ls": ls, "engine_running": status["load"] >= 0, "identity": status["identity"], "chroots": status["chroots"]}


def refusals_logged(daemon, call):  # pylint: disable=redefined-outer-name
    """How many cross-site requests to ``call`` the daemon's log shows refused (each logged at once)."""
    log = config.Paths(daemon.home).daemon_log.read_text(encoding="utf-8")
    return log.count(f"Refused cross-site request from 127.0.0.1: API call '{call}':")


def wait_title(browser, title="done", timeout=120):
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(browser, timeout, poll_frequency=0.2).until(lambda d: d.title == title, f"page title never became {title!r}")


def test_cross_site_attacks_change_nothing(daemon, attacker, browser, screenshot):  # pylint: disable=redefined-outer-name
    from selenium.webdriver.common.by import By
    before = state(daemon)
    assert before["ls"]["test"][UNSTABLE]["version"] == "1.0" and before["engine_running"]

    # Log in as admin in the browser (our own login form).
    browser.get(f"{daemon.url}/accounts/login/")
    browser.find_element(By.ID, "id_username").send_keys("admin")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form[action='/accounts/login/'] button[type=submit]").click()
    browser.get(f"{daemon.url}/mini_buildd/")
    assert "Log out" in browser.page_source
    # Logged in for real: the admin can open the setup page.
    browser.get(f"{daemon.url}/mini_buildd/setup/")
    assert "mbd-setup-form" in browser.page_source

    logged = {name: refusals_logged(daemon, name) for name, *_rest in attack_urls(daemon)}
    for page in ("/img.html", "/forms.html", "/fetch.html"):
        browser.get(attacker + page)
        wait_title(browser)
        screenshot(browser, f"cross-site{page.replace('/', '-').replace('.html', '')}")
        assert state(daemon) == before, page
    for name, _get, _action, _fields in attack_urls(daemon):
        browser.get(attacker + "/links.html")
        browser.find_element(By.ID, f"link-{name}").click()
        from selenium.webdriver.support.ui import WebDriverWait
        WebDriverWait(browser, 120, poll_frequency=0.2).until(lambda d: d.current_url.startswith(daemon.url), "link not followed")
        assert "Refused cross-site request" in browser.page_source or "401" in browser.page_source, browser.page_source[:500]
        assert state(daemon) == before, name
    # Every attempt reached the daemon and was refused: per call 5 GET vectors, the form POST and the fetch POST.
    for name, *_rest in attack_urls(daemon):
        assert refusals_logged(daemon, name) - logged[name] == len(GET_VECTORS) + 2, name
    assert state(daemon) == before

    # The browser is still logged in: the same origin's pages work.
    browser.get(f"{daemon.url}/mini_buildd/setup/")
    assert "mbd-setup-form" in browser.page_source


def test_same_calls_from_mini_buildd_api_work(daemon):  # pylint: disable=redefined-outer-name
    env = {**os.environ, "MINI_BUILDD_API_PASSWORD": PASSWORD}
    endpoint = f"http://admin@127.0.0.1:{daemon.port}"

    def cli(*args):
        proc = subprocess.run([PYTHON, "-m", "mini_buildd.cli.api", "--script-mode", "--auto-confirm", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=600, check=False, env=env, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout
    before = state(daemon)
    cli("stop", endpoint)
    assert state(daemon)["engine_running"] is False
    cli("start", endpoint)
    assert state(daemon)["engine_running"] is True
    report = json.loads(cli("--json", "setup", endpoint))
    assert set(report) == {"setup", "instances", "report"}
    cli("remove", endpoint, SOURCE, UNSTABLE, "--without-rollback")
    after = state(daemon)
    assert after["ls"] == {} or UNSTABLE not in after["ls"].get("test", {}), after
    assert after["identity"] == before["identity"]
