"""QA modes and build-changing upload options through the real daemon, sbuild and lintian (issue #15 "QA").

- lintian in ERRFAIL mode (the distributions' default): a package whose binary lacks its copyright
  file (lintian error ``no-copyright-file``) ends FAILED, with lintian's tags in the event and its
  build log reachable over HTTP; nothing is installed.
- the ``deb-build-options``, ``deb-build-profiles``, ``add-depends`` and ``internal-apt-priority``
  upload options change the real build: its ``debian/rules`` prints the build options and profiles
  it got and whether the added build dependency is installed, and the build log (over HTTP, the
  event's link) shows them, and the apt pin priority of the repository's distributions.
"""

import pathlib
import re
import subprocess

import requests

from tests.helpers.packages import make_source_package, now_iso, wait_event
from tests.helpers.uploads import ftp_upload, reprepro_ls

DIST = "bookworm-test-unstable"
ARTIFACTS = pathlib.Path(__file__).resolve().parents[2] / "test-artifacts"


def _rebuild_source(tmp_path, name, version):
    """Build the source package again after its tree was edited; the changes path."""
    src = tmp_path / f"{name}-{version.split('~', maxsplit=1)[0]}"
    subprocess.run(["dpkg-buildpackage", "-S", "-d", "-us", "-uc", "-nc"], cwd=src, check=True, capture_output=True)
    return src


def _buildlog(event, arch="amd64"):
    """The build result of ``arch`` in the event and its build log over HTTP (also kept in
    test-artifacts/ to read after a failure)."""
    result = event["extra"]["buildresults"][arch]
    r = requests.get(result["buildlog_installed"], timeout=30)
    assert r.status_code == 200, (r.status_code, result)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"{event['source']}_{arch}.buildlog").write_text(r.text, encoding="utf-8")
    return result, r.text


def test_lintian_error_fails_the_build_with_its_tags(instance, tmp_path):
    name, version = "mbd-qa-lintian", "1.0~test12+1"
    changes = make_source_package(tmp_path, name, version, DIST)
    src = tmp_path / f"{name}-1.0"
    # No copyright file in the binary package: a lintian error.
    (src / "debian" / "copyright").unlink()
    _rebuild_source(tmp_path, name, version)
    started = now_iso()
    ftp_upload(instance, changes)
    event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), name, version, after=started, timeout=600)
    result, log = _buildlog(event)
    assert event["type"] == "FAILED", (event, log[-4000:])
    detail = event["extra"]["error"]["detail"]
    assert "lintian fail" in detail and "no-copyright-file" in detail, (detail, log[-6000:])
    assert result["sbuild_status"] == "successful" and result["sbuild_lintian"] == "fail", result
    assert re.search(rf"^E: {name}: no-copyright-file", result["lintian_tags"]), result
    assert f"E: {name}: no-copyright-file" in log
    assert not reprepro_ls(instance, name)  # in no distribution


#: The build shows what the options changed (make recipe lines of the package's build).
SHOW_OPTIONS = ('@echo "MBD-OPT deb-build-options=[$$DEB_BUILD_OPTIONS]"',
                '@echo "MBD-OPT deb-build-profiles=[$$DEB_BUILD_PROFILES]"',
                "@echo \"MBD-OPT add-depends=[$$(dpkg-query -W -f '$${Status}' hello 2>&1)]\"")


def test_upload_options_change_the_build(instance, tmp_path):
    name, version = "mbd-qa-options", "1.0~test12+1"
    options = ("MINI_BUILDD_OPTION: deb-build-options=nocheck mbdmarker\n"
               "MINI_BUILDD_OPTION: deb-build-profiles=nodoc\n"
               "MINI_BUILDD_OPTION: add-depends=hello\n"
               "MINI_BUILDD_OPTION: internal-apt-priority=543\n")
    changes = make_source_package(tmp_path, name, version, DIST, changelog_extra=options, build_commands=SHOW_OPTIONS)
    started = now_iso()
    ftp_upload(instance, changes)
    event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), name, version, after=started, timeout=600)
    _result, log = _buildlog(event)
    assert event["type"] == "INSTALLED", (event["extra"].get("error"), log[-6000:])
    seen = dict(re.findall(r"^MBD-OPT ([a-z-]+)=\[(.*)\]$", log, re.MULTILINE))
    assert "nocheck" in seen.get("deb-build-options", "").split() and "mbdmarker" in seen["deb-build-options"].split(), seen
    assert seen.get("deb-build-profiles") == "nodoc", seen
    assert seen.get("add-depends") == "install ok installed", seen
    # internal-apt-priority: the apt preferences the build's apt-setup wrote (shown in the log) pin
    # this repository's distributions at the given priority
    pins = re.findall(r"^Pin: release n=(bookworm-test-\w+), o=.*\nPin-Priority: (\d+)$", log, re.MULTILINE)
    assert pins and all(priority == "543" for _dist, priority in pins) and ("bookworm-test-unstable", "543") in pins, pins
