"""Extending an existing instance with ``setup`` (mini-buildd issue #15, "Setup"), against the real
daemon in a temp home over HTTP: a first instance is bootstrapped (models only: no PCA, so no
chroot is made and no archive is asked), then ``setup`` with the identity and one repository,
chroot, distribution or remote alone uses the configuration's distribution or source of that
codename and creates only what was given; a codename neither in the options nor in the
configuration stays a 400. ``--from-origins`` (pure computation: no archives here) computes the
codenames of ``--sources-from-origins``. The setup page's Extend and Debian bootstrap presets are
posted through the real web form (update without PCA: the chroot models are checked, none is made)."""

import html.parser
import json
import os

import pytest

from mini_buildd import dist
from tests.helpers.daemon import Daemon, in_home, run_mbd
from tests.helpers.setup_run import run_setup

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

PASSWORD = "setup-Extend-1"
IDENTITY = "mbd-ext"
BOOTSTRAP = {"identity": IDENTITY, "sources": "bookworm", "distributions": "bookworm:amd64",
             "repositories": "test:Default:bookworm", "update": "all"}

#: Every row of the configuration: {"model:pk": fields and "_pk"} (m2m fields as lists of primary keys).
SNAPSHOT = """
import json
from django.apps import apps
from django.core import serializers
rows = {}
for model in apps.get_app_config("mini_buildd").get_models():
    for obj in json.loads(serializers.serialize("json", model.objects.all())):
        rows[f"{obj['model']}:{obj['pk']}"] = {**obj["fields"], "_pk": obj["pk"]}
print(json.dumps(rows))
"""


def _start(home):
    assert run_mbd(home, "--set-admin-password", PASSWORD).returncode == 0
    return Daemon(home).start()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """A real daemon whose configuration was bootstrapped over the API: bookworm (with its extra
    sources), Distribution bookworm (amd64), repository test."""
    d = _start(tmp_path_factory.mktemp("extend") / "home")
    try:
        code, result = call_setup(d, **BOOTSTRAP)
        assert code == 200, result
        yield d
    finally:
        assert d.stop() == 0


def call_setup(d, **params):
    """The setup call over HTTP as the admin: (status code, JSON body)."""
    r = d.session("admin", PASSWORD).get(f"{d.url}/mini_buildd/api/setup/", params={**params, "confirm": "setup"}, timeout=300)
    return r.status_code, json.loads(r.text)


def snapshot(d):
    return json.loads(in_home(d.home, SNAPSHOT))


def new_rows(before, after):
    """Rows of ``after`` not in ``before``; fails if a row of ``before`` changed or went away."""
    changed = {key: (before[key], after.get(key)) for key in before if after.get(key) != before[key]}
    assert not changed, f"setup changed existing configuration: {changed}"
    return {key: fields for key, fields in after.items() if key not in before}


def by_str(result):
    return {i["identity_str"]: i for i in result["instances"]}


def of_model(rows, model):
    return [f for key, f in rows.items() if key.startswith(f"mini_buildd.{model}:")]


def pk_of(rows, model, **fields):
    """The primary key of the one row of ``model`` with ``fields``."""
    found = [f["_pk"] for f in of_model(rows, model) if all(f.get(k) == v for k, v in fields.items())]
    assert len(found) == 1, (model, fields, found)
    return found[0]


# ------------------------------------------------------------------------------------------------ one item alone
def test_repository_alone_uses_the_existing_distribution(daemon):  # pylint: disable=redefined-outer-name
    before = snapshot(daemon)
    code, result = call_setup(daemon, identity=IDENTITY, repositories="sec:Default:bookworm", update="all")
    assert code == 200, result
    instances = by_str(result)
    assert instances["Repository(identity=sec)"]["actions"] == ["created"]
    assert set(instances) == {"Daemon()", "Repository(identity=sec)"}, "only the daemon and the given repository"
    assert not instances["Daemon()"]["actions"] and not instances["Daemon()"]["diff"]["setup"]
    assert result["setup"]["distributions"] == {} and result["setup"]["sources"] == {}
    added = new_rows(before, snapshot(daemon))
    assert list(added) == ["mini_buildd.repository:sec"], added
    bookworm = pk_of(before, "distribution")
    assert next(iter(added.values()))["distributions"] == [bookworm]
    # Inspecting again: nothing to do.
    code, result = call_setup(daemon, identity=IDENTITY, repositories="sec:Default:bookworm")
    assert code == 200 and by_str(result)["Repository(identity=sec)"]["status"] == "DEACTIVATED", result


def test_chroot_alone_uses_the_existing_source(daemon):  # pylint: disable=redefined-outer-name
    before = snapshot(daemon)
    code, result = call_setup(daemon, identity=IDENTITY, chroots="bookworm:amd64", update="all")
    assert code == 200, result
    instances = by_str(result)
    chroot = instances["DirChroot(codename=bookworm, architecture=amd64)"]
    assert chroot["actions"] == ["created"] and chroot["status"] == "DEACTIVATED", chroot  # the model only: no PCA, no debootstrap
    assert set(instances) == {"Daemon()", "DirChroot(codename=bookworm, architecture=amd64)"}
    added = new_rows(before, snapshot(daemon))
    assert sorted(key.split(":")[0] for key in added) == ["mini_buildd.chroot", "mini_buildd.dirchroot"], added
    source = pk_of(before, "source", origin="Debian", codename="bookworm")
    assert added[f"mini_buildd.chroot:{pk_of(added, 'chroot')}"]["source"] == source


def test_remote_alone(daemon):  # pylint: disable=redefined-outer-name
    before = snapshot(daemon)
    code, result = call_setup(daemon, identity=IDENTITY, remotes="tcp:host=127.0.0.1:port=9", update="all")
    assert code == 200, result
    instances = by_str(result)
    assert set(instances) == {"Daemon()", "Remote(http=tcp:host=127.0.0.1:port=9)"}
    assert instances["Remote(http=tcp:host=127.0.0.1:port=9)"]["actions"] == ["created"]
    added = new_rows(before, snapshot(daemon))
    assert [key.split(":")[0] for key in added] == ["mini_buildd.remote"], added


def test_distribution_alone_inspects_the_existing_one(daemon):  # pylint: disable=redefined-outer-name
    """A distribution of an existing source alone: its extra sources are the configured ones, so only
    the new architecture differs (inspected, not updated)."""
    before = snapshot(daemon)
    code, result = call_setup(daemon, identity=IDENTITY, distributions="bookworm:amd64+i386")
    assert code == 200, result
    d = by_str(result)["Distribution(codename=bookworm)"]
    assert d["status"] == "CHANGED" and not d["actions"], d
    assert set(d["diff"]["m2m"]) == {"architectures"}, d["diff"]
    assert d["diff"]["m2m"]["architectures"]["missing"] == ["i386"]
    extras = {f"{e['origin']}:{e['codename']}" for e in result["setup"]["distributions"]["bookworm"]["extra_sources"]}
    assert extras == {"Debian:bookworm-security", "Debian Backports:bookworm-backports", "Debian Backports:bookworm-backports-sloppy"}
    assert not new_rows(before, snapshot(daemon))


def test_codename_in_neither_options_nor_configuration_is_400(daemon):  # pylint: disable=redefined-outer-name
    before = snapshot(daemon)
    for params, text in (({"repositories": "sec2:Default:trixie"},
                          "Repository 'sec2': no distribution 'trixie' in this setup or in the configuration"),
                         ({"repositories": "sec2:Default:nosuch"}, "no distribution 'nosuch'"),
                         ({"chroots": "trixie:amd64"}, "Chroot 'trixie:amd64' needs its source: add 'trixie' to --sources"),
                         ({"distributions": "trixie:amd64"}, "Distribution 'trixie:amd64' needs its source"),
                         ({"chroots": "nosuch:amd64"}, "Unknown codename 'nosuch'")):
        code, problem = call_setup(daemon, identity=IDENTITY, update="all", **params)
        assert code == 400 and problem["status"] == 400, (params, problem)
        assert text in problem["detail"], (params, problem)
    assert snapshot(daemon) == before


def test_command_line_extends_a_home(tmp_path):
    """The same through ``python3 -m mini_buildd.cli.setup`` on a home without a daemon."""
    home = tmp_path / "h"
    run_setup(home, *[f"--{k}={v}" for k, v in BOOTSTRAP.items()])
    code, result, err = run_setup(home, "--identity", IDENTITY, "--repositories", "sec:Default:bookworm", "--chroots", "bookworm:i386",
                                  "--update", "all")
    assert code == 0, err
    assert {i["identity_str"]: i["actions"] for i in result["instances"]} == {
        "Daemon()": [], "Repository(identity=sec)": ["created"], "DirChroot(codename=bookworm, architecture=i386)": ["created"]}
    code, result, err = run_setup(home, "--repositories", "sec2:Default:trixie", "--update", "all", check=False)
    assert code == 2 and result is None and "no distribution 'trixie' in this setup or in the configuration" in err, err
    assert in_home(home, "print(sorted(r.identity for r in models.Repository.objects.all()))").strip() == "['sec', 'test']"


# ------------------------------------------------------------------------------------------------ --from-origins
@pytest.mark.parametrize("origins, extent", [("Debian", ""), ("Debian:lts", "lts"), ("Debian:all", "all"), ("Ubuntu", "")])
def test_from_origins_computes_the_sources(daemon, origins, extent):  # pylint: disable=redefined-outer-name
    """No archives in this configuration: computing the codenames asks no network."""
    before = snapshot(daemon)
    code, result = call_setup(daemon, identity=IDENTITY, from_origins=origins, sources_from_origins="True")
    assert code == 200, result
    origin = origins.split(":")[0]
    codenames = dist.setup_codenames(origin, extent)
    assert codenames and all(dist.CODENAMES[c].origin == origin for c in codenames)
    base = {key for key, s in result["setup"]["sources"].items() if not s["extra_identifiers"] and key.split(":")[1] in dist.CODENAMES}
    assert base == {f"{origin}:{c}" for c in codenames}
    if extent == "all":
        assert set(codenames) == {c for c, info in dist.CODENAMES.items() if info.origin == origin}
    statuses = {i["identity_str"]: i["status"] for i in result["instances"]}
    for c in codenames:
        assert statuses[f"Source(origin={origin}, codename={c})"] == ("DEACTIVATED" if c == "bookworm" else "MISSING")
    assert all(not i["actions"] for i in result["instances"])
    assert not new_rows(before, snapshot(daemon))


def test_from_origins_lts_adds_to_the_supported(daemon):  # pylint: disable=redefined-outer-name
    sources = {}
    for spec in ("Debian", "Debian:lts"):
        code, result = call_setup(daemon, identity=IDENTITY, from_origins=spec, sources_from_origins="True")
        assert code == 200, result
        sources[spec] = set(result["setup"]["sources"])
    assert sources["Debian"] < sources["Debian:lts"]
    code, problem = call_setup(daemon, identity=IDENTITY, from_origins="Nosuch", sources_from_origins="True")
    assert code == 400 and "Unknown origin 'Nosuch'" in problem["detail"]


def test_archives_from_origins_takes_the_hosts_mirrors_of_the_origin(daemon):  # pylint: disable=redefined-outer-name
    """``--archives-from-origins``: the archives of this host's apt sources whose Release says Origin Debian
    (read from apt's lists, as the host's apt saw them); nothing is created without update."""
    expected = dist.archives_from_origins(["Debian"])
    assert expected, "this host's apt sources have no archive of origin Debian"
    before = snapshot(daemon)
    code, result = call_setup(daemon, identity=IDENTITY, from_origins="Debian", archives_from_origins="True")
    assert code == 200, result
    assert result["setup"]["archives"] == expected
    assert set(expected) <= set(dist.archives_from_apt_sources())
    assert not new_rows(before, snapshot(daemon))
    code, result = call_setup(daemon, identity=IDENTITY, from_origins="Ubuntu", archives_from_origins="True")
    assert code == 200 and not set(result["setup"]["archives"]) & set(expected), result
    assert any("origin Ubuntu" in w for w in result["report"]["warnings"]), result["report"]
    code, problem = call_setup(daemon, identity=IDENTITY, archives_from_origins="True")
    assert code == 400 and "--archives-from-origins needs --from-origins" in problem["detail"], problem


# ------------------------------------------------------------------------------------------------ the setup page's presets
class _FormValues(html.parser.HTMLParser):
    """What a browser submits from the form with ``form_id``: text, number and hidden inputs,
    checked checkboxes, the selected option of selects, textareas."""

    def __init__(self, form_id):
        super().__init__()
        self.form_id, self.inside, self.values = form_id, False, []
        self._select = self._textarea = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        elif not self.inside:
            return
        elif tag == "input" and a.get("name"):
            if a.get("type") != "checkbox" or "checked" in a:
                self.values.append((a["name"], a.get("value") or ""))
        elif tag == "select":
            self._select = a.get("name")
        elif tag == "option" and self._select and "selected" in a:
            self.values.append((self._select, a.get("value") or ""))
        elif tag == "textarea":
            self._textarea = [a.get("name"), ""]

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea[1] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self.values.append(tuple(self._textarea))
            self._textarea = None


def preset_form(d, session, preset):
    """The setup form's values as the page shows them for ``preset``."""
    page = session.get(f"{d.url}/mini_buildd/setup/", params={"preset": preset}, timeout=60)
    assert page.status_code == 200, page.text
    parser = _FormValues("mbd-setup-form")
    parser.feed(page.text)
    values = dict(parser.values)
    assert "csrfmiddlewaretoken" in values and "identity" in values, values
    return values


def post_setup(d, session, values):
    r = session.post(f"{d.url}/mini_buildd/setup/", data=values, headers={"Referer": f"{d.url}/mini_buildd/setup/"}, timeout=600)
    return r.status_code, r.text


def page_rows(page):
    """{instance: setup status} of the report table of a setup page."""
    rows = {}
    for row in page.split('<table id="mbd-setup-report"')[1].split("</table>")[0].split("<tr ")[1:]:
        cells = [c.split("</td>")[0] for c in row.split("<td>")[1:]]
        rows[html.unescape(cells[1])] = cells[2]
    return rows


def test_extend_preset_through_the_web_form(daemon):  # pylint: disable=redefined-outer-name
    """Extend on the bootstrapped instance: the codenames of the origin in use are added, the
    existing repository keeps its distribution, nothing existing is dropped."""
    session = daemon.session("admin", PASSWORD)
    values = preset_form(daemon, session, "extend")
    assert values["identity"] == IDENTITY and values["from_origins"] == "Debian" and not values.get("update")
    assert values["repositories_from_distributions"] == "sec:Default,test:Default"
    codenames = dist.setup_codenames("Debian")
    new = [c for c in codenames if c != "bookworm"]
    # Run as given (inspect): a report, nothing created.
    code, page = post_setup(daemon, session, {**values, "confirm": "setup"})
    assert code == 200, page
    rows = page_rows(page)
    for c in new:
        assert rows[f"Source(origin=Debian, codename={c})"] == "MISSING"
        assert rows[f"Distribution(codename={c})"] == "MISSING"
    assert rows["Repository(identity=test)"] == "CHANGED"
    assert f"distributions: missing {', '.join(sorted(new))}" in page and "distributions: unknown" not in page
    before = snapshot(daemon)
    # With update (no PCA: chroot models only): created; bookworm kept in both repositories.
    code, page = post_setup(daemon, session, {**values, "update": "all", "confirm": "setup"})
    assert code == 200, page
    after = snapshot(daemon)
    dists = {f["base_source"]: f["_pk"] for f in of_model(after, "distribution")}
    sources = {f["codename"]: f["_pk"] for f in of_model(after, "source")}
    for rid in ("test", "sec"):
        repo = after[f"mini_buildd.repository:{rid}"]
        assert sorted(repo["distributions"]) == sorted(dists[sources[c]] for c in ["bookworm", *new]), (rid, repo)
    chroot_sources = sorted(f["source"] for f in of_model(after, "chroot"))
    native = len(dist.native_architectures())
    assert chroot_sources.count(sources["bookworm"]) == (native if "bookworm" in codenames else 1)  # amd64 made before
    for c in new:
        assert chroot_sources.count(sources[c]) == native
    assert [k for k, f in after.items() if k in before and f != before[k]] == \
        [f"mini_buildd.repository:{rid}" for rid in ("sec", "test")], "only the repositories changed"


def test_bootstrap_presets_through_the_web_form(tmp_path):
    """Debian bootstrap on a fresh instance (PCA left out here: it would make the chroots); the
    Ubuntu one inspected."""
    d = _start(tmp_path / "home")
    try:
        session = d.session("admin", PASSWORD)
        values = preset_form(d, session, "bootstrap")
        assert values["update"] == "all" and values["pca"] == "all" and values["from_origins"] == "Debian"
        assert values["repositories_from_distributions"] == "test"
        for flag in ("archives_from_origins", "sources_from_origins", "distributions_from_sources", "chroots_from_sources"):
            assert values[flag] == "True", flag
        # The Ubuntu preset, inspected only (update and PCA cleared): the same for Ubuntu's codenames.
        ubuntu = preset_form(d, session, "bootstrap_ubuntu")
        assert {k: v for k, v in ubuntu.items() if k not in ("from_origins", "csrfmiddlewaretoken")} == \
            {k: v for k, v in values.items() if k not in ("from_origins", "csrfmiddlewaretoken")} and ubuntu["from_origins"] == "Ubuntu"
        code, page = post_setup(d, session, {**ubuntu, "update": "", "pca": "", "confirm": "setup"})
        assert code == 200, page
        rows = page_rows(page)
        for c in dist.setup_codenames("Ubuntu"):
            assert rows[f"Source(origin=Ubuntu, codename={c})"] == rows[f"Distribution(codename={c})"] == "MISSING"
        assert not {r for r in rows if "Debian" in r}
        assert in_home(d.home, "print(models.Source.objects.count())").strip() == "0"
        # Debian, with update (PCA cleared).
        code, page = post_setup(d, session, {**values, "pca": "", "confirm": "setup"})
        assert code == 200, page
        rows = page_rows(page)
        codenames = dist.setup_codenames("Debian")
        for c in codenames:
            assert rows[f"Source(origin=Debian, codename={c})"] == "DEACTIVATED"
            assert rows[f"Distribution(codename={c})"] == "EXISTS"
            for arch in dist.native_architectures():
                assert rows[f"DirChroot(codename={c}, architecture={arch})"] == "DEACTIVATED"
        assert rows["Repository(identity=test)"] == "DEACTIVATED"
        assert all(url in page for url in dist.archives_from_origins(["Debian"]))
        out = in_home(d.home, "r = models.Repository.objects.get(identity='test')\n"
                              "print(' '.join(x.codename for x in r.mbd_distributions()))")
        assert out.split() == sorted(codenames)
    finally:
        assert d.stop() == 0
