"""piuparts and autopkgtest QA modes for real (issue #15 "QA"): the real daemon (running as an
unprivileged user, as the package runs it), sbuild, piuparts and autopkgtest.

- A package with a passing autopkgtest (``debian/tests/control``), uploaded with the upload
  options ``piuparts-mode=errfail`` and ``autopkgtest-mode=errfail``: its buildresult says
  ``piuparts pass`` and ``autopkgtest pass``, the package is INSTALLED, and the build page links
  to the parts of the build log where piuparts and autopkgtest ran; following the links gives
  their real output. piuparts runs as root through ``sudo -n``, allowed by the package's own
  sudoers rule (``debian/system/mini-buildd-sudoers``, its piuparts line, installed here for the
  test user): the only piuparts test of the suite (it takes a minute or two).
- A package whose autopkgtest fails: with ``autopkgtest-mode=errfail`` FAILED, the autopkgtest
  status in the event; the same package (another name) with ``autopkgtest-mode=ignore`` INSTALLED.
"""

# pylint: disable=redefined-outer-name  # pytest passes each fixture as the parameter of its name

import contextlib
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import time

import pytest
import requests

from tests.helpers.packages import make_source_package, now_iso, wait_event
from tests.helpers.uploads import ftp_upload, reprepro_ls

DIST = "bookworm-test-unstable"
ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE_SUDOERS = ROOT / "debian" / "system" / "mini-buildd-sudoers"
ARTIFACTS = ROOT / "test-artifacts"


def _tests(command):
    return {"control": f"Test-Command: {command}\nDepends: @\n"}


def _passing(name):
    return _tests(f'grep -q "hello from {name}" /usr/share/{name}/hello.txt && echo MBD-AUTOPKGTEST-PASSED')


FAILING = _tests("echo MBD-AUTOPKGTEST-FAILING; false")


def _modes(**modes):
    return "".join(f"MINI_BUILDD_OPTION: {key}-mode={value}\n" for key, value in modes.items())


@contextlib.contextmanager
def piuparts_rule(user):
    """The package's sudoers rule for piuparts, for ``user``, in /etc/sudoers.d (removed after)."""
    rules = [line.replace("mini-buildd ALL", f"{user} ALL", 1)
             for line in PACKAGE_SUDOERS.read_text(encoding="utf-8").splitlines()
             if line.startswith("mini-buildd ALL") and "/usr/sbin/piuparts" in line]
    assert len(rules) == 1, rules
    target = pathlib.Path("/etc/sudoers.d") / f"mini-buildd-test-piuparts-{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp:
        rule = pathlib.Path(tmp) / "rule"
        rule.write_text(f"Defaults:{user} !requiretty\n{rules[0]}\n", encoding="utf-8")
        subprocess.run(["visudo", "-c", "-q", "-f", str(rule)], check=True)
        os.chmod(rule, 0o440)
        shutil.move(str(rule), str(target))
    try:
        yield target
    finally:
        target.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def piuparts_sudo(instance):
    """The package's piuparts rule for the instance's user, for this module's tests."""
    with piuparts_rule(instance.unpriv.user) as target:
        yield target


def _listed(instance, name, timeout=300):
    """``{distribution: version}`` of ``name`` in repository ``test``: reprepro's lock may be held
    by the daemon's work after an install for a while (snapshots, reports), so wait for it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return reprepro_ls(instance, name)
        except subprocess.CalledProcessError as e:
            if "lock file" not in (e.stderr or "") or time.monotonic() > deadline:
                raise
        time.sleep(2)


def _upload(instance, tmp_path, name, version, autopkgtests, options):
    changes = make_source_package(tmp_path / name, name, version, DIST, changelog_extra=options, autopkgtests=autopkgtests)
    started = now_iso()
    ftp_upload(instance, changes)
    return started


def _wait(instance, name, version, started):
    """The terminal event of the upload, with its amd64 buildresult and build log (over HTTP; also
    kept in test-artifacts/)."""
    event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), name, version, after=started, timeout=900)
    result = event["extra"].get("buildresults", {}).get("amd64")
    assert result, (event["type"], event["extra"].get("error"))
    r = requests.get(result["buildlog_installed"], timeout=30)
    assert r.status_code == 200, (r.status_code, result)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"{name}_amd64.buildlog").write_text(r.text, encoding="utf-8")
    return event, result, r.text


def test_piuparts_and_autopkgtest_pass(instance, piuparts_sudo, tmp_path):
    assert piuparts_sudo.exists()
    name, version = "mbd-qa-apt-pass", "1.0~test12+1"
    started = _upload(instance, tmp_path, name, version, _passing(name), _modes(piuparts="errfail", autopkgtest="errfail"))
    event, result, log = _wait(instance, name, version, started)
    assert event["type"] == "INSTALLED", (event["extra"].get("error"), log[-6000:])
    assert result["sbuild_status"] == "successful", result
    assert result["sbuild_piuparts"] == "pass" and result["sbuild_autopkgtest"] == "pass", (result, log[-6000:])
    assert _listed(instance, name).get(DIST) == version, _listed(instance, name)

    # the build page links to both parts of the build log; each link gives that tool's real output
    page_url = f"{instance.url}/mini_buildd/builds/{result['bkey']}/"
    page = requests.get(page_url, timeout=30)
    assert page.status_code == 200, page.status_code
    links = dict((label, href.replace("&amp;", "&")) for href, label in
                 re.findall(r'<a class="mbd-qa-log" href="([^"]+)">(\w+) log</a>', page.text))
    assert set(links) == {"piuparts", "autopkgtest"}, links
    parts = {}
    for label, href in links.items():
        r = requests.get(instance.url + href, timeout=30)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain"), (label, r.status_code)
        parts[label] = r.text
        assert r.text in log, label
    assert parts["piuparts"].startswith("piuparts\n") and "piuparts" in parts["piuparts"].split("\n", 2)[2], parts["piuparts"][:2000]
    assert re.search(r"PASS: All tests\.", parts["piuparts"]), parts["piuparts"][-3000:]
    assert parts["autopkgtest"].startswith("autopkgtest\n"), parts["autopkgtest"][:2000]
    assert "MBD-AUTOPKGTEST-PASSED" in parts["autopkgtest"] and re.search(r"command1\s+PASS", parts["autopkgtest"]), parts["autopkgtest"][-3000:]
    assert "MBD-AUTOPKGTEST-PASSED" not in parts["piuparts"]
    # a part that did not run is not there
    assert requests.get(f"{page_url}?part=lintian", timeout=30).status_code == 404


def test_failing_autopkgtest_fails_in_errfail_mode_only(instance, tmp_path):
    version = "1.0~test12+1"
    errfail, ignore = "mbd-qa-apt-errfail", "mbd-qa-apt-ignore"
    started = {name: _upload(instance, tmp_path, name, version, FAILING, _modes(autopkgtest=mode))
               for name, mode in ((errfail, "errfail"), (ignore, "ignore"))}

    event, result, log = _wait(instance, errfail, version, started[errfail])
    assert event["type"] == "FAILED", (event["type"], log[-6000:])
    assert result["sbuild_status"] == "successful" and result["sbuild_autopkgtest"] == "fail", result
    assert "sbuild_piuparts" not in result, result  # piuparts stays disabled (the distribution's default)
    assert "autopkgtest fail" in event["extra"]["error"]["detail"], event["extra"]["error"]
    assert "MBD-AUTOPKGTEST-FAILING" in log and re.search(r"command1\s+FAIL", log), log[-6000:]
    assert not _listed(instance, errfail), _listed(instance, errfail)

    event, result, log = _wait(instance, ignore, version, started[ignore])
    assert event["type"] == "INSTALLED", (event["extra"].get("error"), log[-6000:])
    assert result["sbuild_autopkgtest"] == "fail", result
    assert _listed(instance, ignore).get(DIST) == version, _listed(instance, ignore)


SAMPLE_LOG = """\
+------------------------------------------------------------------------------+
| Post Build                                                                   |
+------------------------------------------------------------------------------+


piuparts
--------

sudo -n -- piuparts --schroot c x.changes
0m1.0s INFO: PASS: All tests.

autopkgtest
-----------

autopkgtest [10:00:00]: @@@@@@@@@@@@@@@@@@@@ summary
command1             PASS

+------------------------------------------------------------------------------+
| Summary                                                                      |
+------------------------------------------------------------------------------+
"""


def test_qa_section_of_a_build_log():
    """(No daemon.) The parts the build page links to: from a QA check's header to the next part."""
    from mini_buildd.tools import sbuild_log  # pylint: disable=import-outside-toplevel
    piuparts = sbuild_log.qa_section(SAMPLE_LOG, "piuparts")
    assert piuparts.startswith("piuparts\n--------\n") and "PASS: All tests." in piuparts and "autopkgtest" not in piuparts
    autopkgtest = sbuild_log.qa_section(SAMPLE_LOG, "autopkgtest")
    assert autopkgtest.startswith("autopkgtest\n---") and "command1             PASS" in autopkgtest and "Summary" not in autopkgtest
    assert sbuild_log.qa_section(SAMPLE_LOG, "lintian") is None
    assert sbuild_log.qa_section("", "piuparts") is None and sbuild_log.qa_section(None, "piuparts") is None
    # a header line must be underlined by exactly as many dashes
    assert sbuild_log.qa_section("piuparts\n---\nnot a section\n", "piuparts") is None


PIUPARTS_FIXED = ("--dpkg-force-confdef --warn-on-debsums-errors --warn-on-leftovers-after-purge "
                  "--warn-on-others --keep-sources-list")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (creates a user and a sudoers rule)")
def test_piuparts_sudoers_rule_allows_only_sbuilds_command():
    """(No daemon.) The package's rule lets its user run exactly sbuild's piuparts command line for
    a build's .changes, and no other piuparts options or paths (asked with ``sudo -l -U``)."""
    from tests.helpers.unprivileged import USER, ensure_user  # pylint: disable=import-outside-toplevel
    ensure_user(USER)
    build = "/srv/mbd/home/var/shared/builds/p/1.0~x+1/20261207:093553:904424/amd64/p_1.0~x+1_amd64.changes"

    def allowed(args):
        return subprocess.run(["sudo", "-n", "-l", "-U", USER, "/usr/sbin/piuparts", *args.split()],
                              capture_output=True, check=False).returncode == 0

    with piuparts_rule(USER):
        assert allowed(f"--schroot mini-buildd-bookworm-amd64 {PIUPARTS_FIXED} {build}")
        assert allowed(f"--schroot mbd-cn1-trixie-i386 {PIUPARTS_FIXED} {build}")
        for args in (f"--schroot mini-buildd-bookworm-amd64 {PIUPARTS_FIXED} --save=/etc/shadow {build}",
                     f"--schroot mini-buildd-bookworm-amd64 --log-file=/etc/x {PIUPARTS_FIXED} {build}",
                     f"--schroot mini-buildd-bookworm-amd64 {PIUPARTS_FIXED} /srv/mbd/home/var/shared/builds/../../../../etc/x.changes",
                     f"--schroot mini-buildd-bookworm-amd64 {PIUPARTS_FIXED} /etc/x.changes",
                     f"--schroot mini-buildd-bookworm-amd64 {PIUPARTS_FIXED} {build} {build}",
                     f"--existing-chroot / {PIUPARTS_FIXED} {build}"):
            assert not allowed(args), args
    assert not allowed(f"--schroot mini-buildd-bookworm-amd64 {PIUPARTS_FIXED} {build}")  # rule removed
