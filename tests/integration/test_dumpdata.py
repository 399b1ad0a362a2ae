"""The daemon's ``--dumpdata``/``--loaddata``: the configuration of one home (made by setup, no
chroot data) exported and imported into a fresh second home, which then has the same
configuration (its home-bound objects Removed) and runs."""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import json
import os

import pytest

from tests.helpers.daemon import Daemon, in_home, run_mbd
from tests.helpers.setup_run import by_str, run_setup

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

ADMIN_PASSWORD = "dump-Secret-1"
ED25519 = "Key-Type: EdDSA\nKey-Curve: ed25519\nKey-Usage: sign\nExpire-Date: 0"
#: Objects (models, no chroot data: --update without --pca) of a whole setup.
SETUP = ["--archives-from-apt-sources", "--sources", "bookworm", "--distributions", "bookworm:amd64",
         "--repositories", "test:Default:bookworm", "--chroots", "bookworm:amd64", "--update", "all"]

#: Every configuration model, each object's fields (status fields apart) by primary key, as JSON.
MODELS = """
import json
from django.apps import apps
from django.core import serializers
from django.contrib.auth.models import User
out = {}
for model in list(apps.get_app_config("mini_buildd").get_models()) + [User]:
    objs = json.loads(serializers.serialize("json", model.objects.order_by("pk"), use_natural_foreign_keys=True))
    for o in objs:
        for f in ("status", "last_checked", "status_message", "last_login"):
            o["fields"].pop(f, None)
    out[model.__name__] = objs
print(json.dumps(out))
"""
STATUSES = """
import json
print(json.dumps({str(o): [o.mbd_status_display(), o.status_message] for m in (models.Daemon, models.Repository, models.Chroot,
                                                                             models.Source, models.Uploader)
                  for o in m.objects.order_by("pk")}))
"""


def dump(home, *labels):
    proc = run_mbd(home, *[a for label in labels for a in ("--dumpdata", label)])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def home_a(tmp_path_factory):
    """Home A: set up (models only), its Daemon key and repository prepared, a second user with upload rights."""
    home = tmp_path_factory.mktemp("dump") / "a"
    _code, result, _err = run_setup(home, *SETUP)
    assert by_str(result)["Repository(identity=test)"]["actions"] == ["created"]
    assert run_mbd(home, "--set-admin-password", ADMIN_PASSWORD).returncode == 0
    in_home(home, f"""
d = models.Daemon.get()
d.gnupg_template = {ED25519!r}
d.save()
d.mbd_prepare()
models.Repository.objects.get(identity="test").mbd_prepare()
from django.contrib.auth.models import User
dev = User.objects.create_user("dev", "dev@example.org", "dev-Secret-1")
dev.uploader.may_upload_to.add(models.Repository.objects.get(identity="test"))
""")
    return home


def test_dump_load_gives_the_same_configuration(tmp_path, home_a):
    dumped = dump(home_a, "mini_buildd", "auth")
    objects = json.loads(dumped)  # nothing but JSON on standard output
    kinds = {o["model"] for o in objects}
    assert {"mini_buildd.daemon", "mini_buildd.source", "mini_buildd.distribution", "mini_buildd.repository", "mini_buildd.layout",
            "mini_buildd.dirchroot", "mini_buildd.uploader", "auth.user"} <= kinds, kinds
    dump_file = tmp_path / "conf.json"
    dump_file.write_text(dumped)

    home_b = tmp_path / "b"
    proc = run_mbd(home_b, "--loaddata", str(dump_file))
    assert proc.returncode == 0, proc.stderr
    assert "Installed" in proc.stdout and "prepare, check and activate" in proc.stdout

    a, b = json.loads(in_home(home_a, MODELS)), json.loads(in_home(home_b, MODELS))
    for name in ("Daemon", "Archive", "AptKey", "Source", "PrioritySource", "Distribution", "ArchitectureOption", "Layout", "Suite",
                 "SuiteOption", "Repository", "Chroot", "DirChroot", "Uploader", "User"):
        assert a[name], name  # there is something to compare
    assert a == b
    assert [u["fields"]["username"] for u in b["User"]] == ["admin", "dev"]
    dev_uploader = next(u for u in b["Uploader"] if u["fields"]["user"] == ["dev"])
    assert dev_uploader["fields"]["may_upload_to"] == [b["Repository"][0]["pk"]]

    # Home-bound objects are Removed in B (A's key and reprepro dir are not there); the rest keeps its status.
    status_a, status_b = json.loads(in_home(home_a, STATUSES)), json.loads(in_home(home_b, STATUSES))
    assert status_a["test"][0].startswith("Prepared") and status_b["test"][0].startswith("Removed")
    assert "--loaddata" in status_b["test"][1]
    assert status_b[next(k for k in status_b if "bookworm" in k and "amd64" in k)][0].startswith("Removed")
    assert {k: v[0] for k, v in status_a.items() if k.startswith("Debian")} == {k: v[0] for k, v in status_b.items() if k.startswith("Debian")}

    # B works with it: the admin of A logs in, the Daemon and the repository can be prepared in B.
    with Daemon(home_b) as daemon:
        daemon.session("admin", ADMIN_PASSWORD)
    out = in_home(home_b, "d = models.Daemon.get(); d.mbd_prepare()\n"
                          "r = models.Repository.objects.get(identity='test'); r.mbd_prepare(); print(r.mbd_status_display())")
    assert out.strip().startswith("Prepared") and (home_b / "repositories" / "test" / "conf" / "distributions").is_file()


def test_bad_input_is_a_clear_error_and_loads_nothing(tmp_path, home_a):
    home_b = tmp_path / "b"
    bad = tmp_path / "bad.json"
    bad.write_text('[{"model": "mini_buildd.nosuchmodel", "pk": 1, "fields": {}}]')
    proc = run_mbd(home_b, "--loaddata", str(bad))
    assert proc.returncode == 1 and "can't load" in proc.stderr and "Traceback" not in proc.stderr
    assert "doesn't have a 'nosuchmodel' model" in proc.stderr
    # users missing: the uploaders of A refer to them; all or nothing
    partial = tmp_path / "partial.json"
    partial.write_text(dump(home_a, "mini_buildd"))
    proc = run_mbd(home_b, "--loaddata", str(partial))
    assert proc.returncode == 1 and "can't load" in proc.stderr and "mini_buildd.Uploader" in proc.stderr, proc.stderr
    assert in_home(home_b, "print(models.Repository.objects.count(), models.Source.objects.count())").split() == ["0", "0"]
    proc = run_mbd(home_b, "--loaddata", str(tmp_path / "missing.json"))
    assert proc.returncode == 1 and "can't read" in proc.stderr
    proc = run_mbd(home_a, "--dumpdata", "nosuchapp")
    assert proc.returncode == 1 and "can't dump nosuchapp" in proc.stderr and proc.stdout == ""


def test_loaddata_refused_while_the_daemon_runs(tmp_path, home_a):
    dump_file = tmp_path / "conf.json"
    dump_file.write_text(dump(home_a, "mini_buildd", "auth"))
    with Daemon(home_a):
        assert [o["pk"] for o in json.loads(dump(home_a, "mini_buildd.repository"))] == ["test"]  # dumping may run beside it
        proc = run_mbd(home_a, "--loaddata", str(dump_file))
        assert proc.returncode == 1 and "in use" in proc.stderr, proc.stderr
