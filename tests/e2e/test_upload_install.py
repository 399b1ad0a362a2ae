"""Upload -> build -> install with the real tools: dput over FTP, sbuild in the shared chroot,
reprepro, events over HTTP."""

import json
import time

from tests.helpers.instance import NOTIFY_ADDRESS
from tests.helpers.packages import make_source_package, dput, wait_event, write_dput_cf
from tests.helpers.shared_packages import HELLO, HELLO_VERSION, UNSTABLE
from tests.helpers.uploads import expect_rejected, plain, reprepro_ls


def test_dput_upload_is_built_and_installed(instance, hello):
    """The ``hello`` fixture's upload (signed by a developer key, dput configured from the
    instance's dput_conf call): what was seen right after it was installed."""
    assert "BEGIN PGP SIGNATURE" in hello.changes.read_text()
    event = hello.event
    assert event["type"] == "INSTALLED", event["extra"].get("error")
    assert event["distribution"] == UNSTABLE
    assert event["extra"]["buildresults"]["amd64"]["sbuild_status"] == "successful"
    assert hello.listing.get(UNSTABLE) == HELLO_VERSION, hello.listing
    assert f"Package: {HELLO}" in hello.packages_index
    # incoming was clean again
    assert not hello.incoming
    # the instance's notify list got the INSTALLED mail, with the event attached
    mail = wait_for_mail(instance, "INSTALLED", f"{HELLO} {HELLO_VERSION}")
    sender, rcpts, msg = mail
    assert rcpts == [NOTIFY_ADDRESS] and sender.startswith("mini-buildd@")
    assert msg["Subject"].startswith("[mini-buildd-")
    attached = [json.loads(part.get_content()) for part in msg.iter_attachments()]
    assert [(a["type"], a["source"], a["version"]) for a in attached] == [("INSTALLED", HELLO, HELLO_VERSION)]


def wait_for_mail(instance, etype, source, timeout=60):
    """The first mail to the instance's SMTP server whose subject names ``etype`` and ``source``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for mail in list(instance.smtp.mails):
            if etype in mail[2]["Subject"] and source in mail[2]["Subject"]:
                return mail
        time.sleep(0.5)
    raise AssertionError(f"no {etype} mail for {source}: {[m[2]['Subject'] for m in instance.smtp.mails]}")


def test_version_not_higher_than_installed(instance, hello, tmp_path):  # pylint: disable=unused-argument
    """Needs an installed version: the ``hello`` fixture's (1.0~test12+1; maybe 1.0~test12+2 by now)."""
    c = make_source_package(tmp_path, HELLO, HELLO_VERSION, UNSTABLE)
    expect_rejected(instance, plain(instance, c), r"(?i)already installed|lower")
    c = make_source_package(tmp_path / "lower", HELLO, "0.9~test12+1", UNSTABLE)
    expect_rejected(instance, plain(instance, c), r"(?i)lower")


def test_auto_ports_after_install(instance, tmp_path):
    """``auto-ports`` runs after the install: a good target gets a port (built and installed
    there), a bad one is only reported in the INSTALLED event and does not fail the package."""
    options = "MINI_BUILDD_OPTION: auto-ports=bookworm-test-experimental,bookworm-test-stable"
    changes = make_source_package(tmp_path, "mbd-e2e-autoport", "1.0~test12+1", "bookworm-test-unstable",
                                  changelog_extra=options)
    cf = write_dput_cf(tmp_path / "dput.cf", "plain", f"127.0.0.1:{instance.ftp_port}")
    proc = dput(cf, "plain", changes)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), "mbd-e2e-autoport", "1.0~test12+1")
    assert event["type"] == "INSTALLED", event["extra"].get("error")
    ports = event["extra"]["auto_ports"]
    assert sorted(ports) == ["bookworm-test-experimental", "bookworm-test-stable"]
    ok, version = ports["bookworm-test-experimental"]
    assert ok is True and version.startswith("1.0~test12+"), ports
    assert ports["bookworm-test-stable"][0] is False and "uploadable" in ports["bookworm-test-stable"][1], ports
    ported = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), "mbd-e2e-autoport", version)
    assert ported["type"] == "INSTALLED" and ported["distribution"] == "bookworm-test-experimental", ported
    assert reprepro_ls(instance, "mbd-e2e-autoport").get("bookworm-test-experimental") == version
