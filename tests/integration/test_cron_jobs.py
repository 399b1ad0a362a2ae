"""The crontab of a real daemon (engine running): upstream's job ids (``<name> (<TYPE>)``) in the
``cronjob`` call, on the crontab page and in the job log names; the weekly ``setup_inspect`` job
writes its inspection to ``var/log/inspect.json`` and the setup page shows it."""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import datetime
import json

import pytest

from mini_buildd.api.client import ApiProblem, Client
from tests.helpers.daemon import BOOKWORM_TEST_REPOSITORY, Daemon, free_port, in_home

ADMIN_PASSWORD = "cron-Secret-1"
ED25519 = "Key-Type: EdDSA\nKey-Curve: ed25519\nKey-Usage: sign\nExpire-Date: 0"

IDS = ["retry_uploads (HOURLY)", "setup_inspect (WEEKLY)", "expire_builds (DAILY)", "expire_events (WEEKLY)",
       "prune_snapshots (HOURLY)", "watch_ports (HOURLY)", "snapshots (WEEKLY)", "snapshots (MONTHLY)", "snapshots (YEARLY)"]

#: An active Daemon (its engine runs when the daemon starts), a prepared (not active) repository
#: 'test' for bookworm/amd64 whose source was never checked, and a superuser.
SETUP = """
d = models.Daemon.get()
d.identity = "mbdcron"
d.gnupg_template = {ed25519!r}
d.ftpd_bind = "tcp:interface=127.0.0.1:port={ftp_port}"
d.save()
d.mbd_pca()
assert models.Daemon.get().mbd_is_active()
""" + BOOKWORM_TEST_REPOSITORY + """from django.contrib.auth.models import User
User.objects.create_superuser("admin", "admin@example.org", {password!r})
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """The real daemon with its engine running; stopped after."""
    home = tmp_path_factory.mktemp("cron") / "home"
    ftp_port = free_port()
    in_home(home, SETUP.format(ed25519=ED25519, ftp_port=ftp_port, password=ADMIN_PASSWORD))
    d = Daemon(home)
    d.ftp_port = ftp_port  # start() waits for the engine's FTP server too
    d.start()
    yield d
    assert d.stop() == 0


@pytest.fixture(scope="module")
def admin(daemon):
    c = Client(daemon.url, user="admin")
    assert c.login(ADMIN_PASSWORD)
    return c


def test_upstream_job_ids_on_crontab_page(daemon):
    s = daemon.session("admin", ADMIN_PASSWORD)
    html = s.get(daemon.url + "/mini_buildd/crontab/", timeout=30).text
    for job_id in IDS:
        assert f"<h2>{job_id}</h2>" in html, job_id
        assert f'name="id" value="{job_id}"' in html, job_id
    assert 'id="job-WEEKLY_setup_inspect"' in html and 'id="job-YEARLY_snapshots"' in html


def test_cronjob_takes_upstream_ids_and_names(daemon, admin):
    assert admin.call("cronjob", {"id": "expire_builds (DAILY)"}, confirm=True) == {"expire_builds (DAILY)": True}
    # a bare name: every job of that name
    assert admin.call("cronjob", {"id": "expire_events"}, confirm=True) == {"expire_events (WEEKLY)": True}
    assert admin.call("cronjob", {"id": "snapshots"}, confirm=True) == {
        "snapshots (WEEKLY)": True, "snapshots (MONTHLY)": True, "snapshots (YEARLY)": True}
    log = daemon.home / "var" / "crontab" / "DAILY_expire_builds.log"
    assert " OK " in log.read_text()
    for wrong in ("expire_builds (WEEKLY)", "expire_builds (every 1 day, 0:00:00)", "nosuchjob"):
        with pytest.raises(ApiProblem) as e:
            admin.call("cronjob", {"id": wrong}, confirm=True)
        assert e.value.problem.status == 400 and wrong in e.value.problem.detail, wrong
        assert "setup_inspect (WEEKLY)" in e.value.problem.detail  # the known ids are named


def test_setup_inspect_job_result_on_setup_page(daemon, admin):
    inspect_json = daemon.home / "var" / "log" / "inspect.json"
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    assert admin.call("cronjob", {"id": "setup_inspect (WEEKLY)"}, confirm=True) == {"setup_inspect (WEEKLY)": True}
    result = json.loads(inspect_json.read_text())
    when = datetime.datetime.fromisoformat(result["time"])
    assert before <= when <= datetime.datetime.now(datetime.timezone.utc)
    instances = {i["identity_str"]: i for i in result["instances"]}
    # The inspection of the current configuration against the setup data: the hand-made repository
    # 'test' differs from what setup makes of a 'test' repository, the source lacks the keys and
    # the extra sources of bookworm's setup data; the active Daemon is fine.
    assert instances["Daemon()"]["status"] == "ACTIVE"
    repo = instances["Repository(identity=test)"]
    assert repo["status"] == "CHANGED"
    assert repo["diff"]["setup"] == {"allow_unauthenticated_uploads": {"current": False, "target": True}}
    assert instances["Source(origin=Debian, codename=bookworm)"]["status"] == "CHANGED"
    assert instances["Source(origin=Debian, codename=bookworm-security)"]["status"] == "MISSING"
    assert any("No archives given" in w for w in result["report"]["warnings"])
    assert result["options"]["repositories"] == "test:Default:bookworm"
    assert all(not i["actions"] for i in result["instances"])  # a dry run
    log = (daemon.home / "var" / "crontab" / "WEEKLY_setup_inspect.log").read_text()
    assert f"OK {result['report']['instances']} instances, severity {result['report']['severity_name']}" in log

    s = daemon.session("admin", ADMIN_PASSWORD)
    html = s.get(daemon.url + "/mini_buildd/setup/", timeout=60).text
    assert f'<span id="mbd-last-inspection-time">{result["time"]}</span>' in html
    assert f"severity <strong>{result['report']['severity_name']}</strong>" in html
    assert "<li>CHANGED Repository(identity=test)" in html and "<li>WARNING: No archives given" in html
    # a dry run: nothing was changed
    assert in_home(daemon.home, "print(models.Repository.objects.get().allow_unauthenticated_uploads, models.AptKey.objects.count())"
                   ).split() == ["False", "0"]
