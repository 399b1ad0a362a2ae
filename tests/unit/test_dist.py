"""Unit tests for mini_buildd.dist (distribution knowledge and pure helpers)."""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import datetime
import glob
import http.server
import os
import re
import shutil
import socket
import threading

import pytest

from mini_buildd.tools import gnupg, call
from mini_buildd import dist

# ---------------------------------------------------------------------------------------------
# DistStr
# ---------------------------------------------------------------------------------------------


def test_diststr_parse():
    d = dist.DistStr("bookworm-test-unstable")
    assert (d.codename, d.repository, d.suite, d.rollback) == ("bookworm", "test", "unstable", None)
    assert not d.is_rollback
    assert d.get() == str(d) == "bookworm-test-unstable"
    assert d.get(rollback=3) == "bookworm-test-unstable-rollback3"


def test_diststr_rollback():
    d = dist.DistStr("sid-debdev-experimental-rollback11")
    assert (d.codename, d.repository, d.suite, d.rollback) == ("sid", "debdev", "experimental", 11)
    assert d.is_rollback
    assert d.get() == "sid-debdev-experimental"
    assert str(d) == "sid-debdev-experimental-rollback11"
    assert d.get(rollback=0) == "sid-debdev-experimental-rollback0"


def test_diststr_build_and_equality():
    assert dist.DistStr.build("bullseye", "test", "stable", 2) == dist.DistStr("bullseye-test-stable-rollback2")
    assert dist.DistStr.build("bullseye", "test", "stable") != dist.DistStr("bullseye-test-stable-rollback2")
    assert len({dist.DistStr("a-b-c"), dist.DistStr("a-b-c")}) == 1
    with pytest.raises(ValueError):
        dist.DistStr.build("bull-seye", "test", "stable")


@pytest.mark.parametrize("bad", [
    "", "bookworm", "bookworm-test", "bookworm-test-unstable-rollback", "bookworm-test-unstable-rollbackX",
    "bookworm-test-unstable-extra", "book.worm-test-unstable", "bookworm-test-unstable ", "bookwörm-test-unstable",
    "bookworm--unstable",
])
def test_diststr_bad(bad):
    with pytest.raises(ValueError, match=r"CODENAME-REPOID-SUITE\[-rollbackN\]"):
        dist.DistStr(bad)


# ---------------------------------------------------------------------------------------------
# Codeversion
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("origin, version, codename, expected", [
    ("Debian", "12.11", "bookworm", "12"),
    ("Debian", "12", "bookworm", "12"),
    ("Debian", "11.9", "bullseye", "11"),
    ("Debian", "7.11", "wheezy", "7"),
    ("Debian", "8", "jessie", "8"),
    ("Debian", "6.0.10", "squeeze", "60"),
    ("Debian", "5.0.10", "lenny", "50"),
    ("Ubuntu", "18.04", "bionic", "1804"),
    ("Ubuntu", "24.04", "noble", "2404"),
    ("Debian", "", "sid", "~SID"),
    ("Debian", None, "forky", "~FORKY"),
    ("Ubuntu", "", "devel", "~DEVEL"),
])
def test_guess_codeversion(origin, version, codename, expected):
    assert dist.guess_codeversion(origin, version, codename) == expected


@pytest.mark.parametrize("codename, expected", [
    ("wheezy", "7"), ("jessie", "8"), ("stretch", "9"), ("buster", "10"), ("bullseye", "11"), ("bookworm", "12"),
    ("trixie", "13"), ("forky", "~FORKY"), ("sid", "~SID"), ("squeeze", "60"), ("lenny", "50"),
    ("bionic", "1804"), ("focal", "2004"), ("jammy", "2204"), ("noble", "2404"),
])
def test_table_codeversions(codename, expected):
    assert dist.codename_info(codename).codeversion == expected


def test_table_origins_and_release_state():
    assert {c for c, i in dist.CODENAMES.items() if i.origin == "Ubuntu"} == {"bionic", "focal", "jammy", "noble"}
    assert {"wheezy", "jessie", "stretch", "buster", "bullseye", "bookworm", "trixie", "forky", "sid"} <= set(dist.CODENAMES)
    assert not dist.codename_info("forky").released
    assert not dist.codename_info("sid").released
    assert dist.codename_info("trixie").released


# ---------------------------------------------------------------------------------------------
# Archive keys: checked against the installed keyrings, never guessed
# ---------------------------------------------------------------------------------------------

DEBIAN_KEYRINGS = ["/usr/share/keyrings/debian-archive-keyring.gpg", "/usr/share/keyrings/debian-archive-removed-keys.gpg"]


@pytest.fixture(scope="module")
def installed_debian_keys(tmp_path_factory):
    """{long id: user id} of all keys in the installed Debian archive keyrings."""
    if not all(os.path.exists(k) for k in DEBIAN_KEYRINGS) or not shutil.which("gpg"):
        pytest.skip("debian-archive-keyring or gpg not installed")
    keys = {}
    env = {"GNUPGHOME": str(tmp_path_factory.mktemp("gnupg"))}
    for keyring in DEBIAN_KEYRINGS:
        current = None
        for line in call.run(["gpg", "--show-keys", "--with-colons", keyring], env=env).splitlines():
            fields = line.split(":")
            if fields[0] == "pub":
                current = fields[4]
            elif fields[0] == "uid" and current and current not in keys:
                keys[current] = fields[9]
    gnupg.kill_agents(env["GNUPGHOME"])
    return keys


_DEBIAN_NAMES = {c.rank: c.codename for c in dist.CODENAMES.values() if c.is_debian}


@pytest.mark.parametrize("table, pattern", [
    (dist.DEBIAN_ARCHIVE_KEYS, r"^Debian Archive Automatic Signing Key \({n}(\.0)?/{c}\)"),
    (dist.DEBIAN_SECURITY_KEYS, r"^Debian Security Archive Automatic Signing Key \({n}/{c}\)"),
    (dist.DEBIAN_RELEASE_KEYS, r"^(Debian Stable Release Key \({n}/{c}\)|{C} Stable Release Key)"),
])
def test_debian_key_ids_match_installed_keyrings(installed_debian_keys, table, pattern):
    for number, key_id in table.items():
        name = _DEBIAN_NAMES[number]
        assert key_id in installed_debian_keys, f"{key_id} ({name}) not in installed Debian keyrings"
        uid = installed_debian_keys[key_id]
        assert re.match(pattern.format(n=number, c=name, C=name.capitalize()), uid), f"{key_id}: {uid}"


def test_all_table_keys_are_known_ids(installed_debian_keys):
    ubuntu = set(dist.UBUNTU_ARCHIVE_KEYS.values())
    for info in dist.CODENAMES.values():
        keys = list(info.apt_keys) + [k for e in info.extra_sources for k in e.apt_keys]
        assert keys, info.codename
        for key in keys:
            assert re.fullmatch(r"[0-9A-F]{16}", key)
            assert key in (installed_debian_keys if info.is_debian else ubuntu), (info.codename, key)


def test_bookworm_keys():
    keys = dist.codename_info("bookworm").apt_keys
    assert {dist.DEBIAN_ARCHIVE_KEYS[11], dist.DEBIAN_ARCHIVE_KEYS[12], dist.DEBIAN_RELEASE_KEYS[12]} <= set(keys)
    assert "B7C5D7D6350947F8" in keys and "F8D2585B8783D481" in keys
    assert len(keys) == len(set(keys))
    security = dist.codename_info("bookworm").extra_sources[0]
    assert dist.DEBIAN_SECURITY_KEYS[12] in security.apt_keys


def test_ubuntu_keys():
    assert set(dist.codename_info("jammy").apt_keys) == {"3B4FE6ACC0B21F32", "871920D1991BC93C"}
    assert "40976EAF437D05B5" in dist.codename_info("bionic").apt_keys
    ubuntu_keyring = "/usr/share/keyrings/ubuntu-archive-keyring.gpg"
    if os.path.exists(ubuntu_keyring):
        listing = call.run(["gpg", "--show-keys", "--with-colons", ubuntu_keyring])
        for key in dist.codename_info("noble").apt_keys:
            assert f":{key}:" in listing


@pytest.mark.parametrize("codename, extra_index", [("bookworm", None), ("bookworm-security", 0)])
def test_host_release_signatures_verify(tmp_path, codename, extra_index):
    """If the host has APT lists for bookworm, their InRelease must verify with our key sets only."""
    files = glob.glob(f"/var/lib/apt/lists/*_dists_{codename}_InRelease")
    if not files or not shutil.which("gpgv") or not os.path.exists(DEBIAN_KEYRINGS[0]):
        pytest.skip(f"no APT list for {codename} on this host")
    info = dist.codename_info("bookworm")
    keys = info.apt_keys if extra_index is None else info.extra_sources[extra_index].apt_keys
    env = {"GNUPGHOME": str(tmp_path)}
    exported = tmp_path / "export.gpg"
    call.run(["gpg", "--no-default-keyring", "--keyring", DEBIAN_KEYRINGS[0], "--output", exported, "--export", *keys], env=env)
    keyring = tmp_path / "keys.gpg"
    call.run(["gpg", "--no-default-keyring", "--keyring", keyring, "--import", exported], env=env)
    try:
        output = call.run(["gpgv", "--keyring", keyring, files[0]], env=env)
    finally:
        gnupg.kill_agents(tmp_path)
    assert "Good signature" in output


# ---------------------------------------------------------------------------------------------
# Extra sources, components, per-codename options
# ---------------------------------------------------------------------------------------------


def _extras(codename, origin=None):
    return {e.codename: e for e in dist.codename_info(codename, origin).extra_sources}


def test_extra_sources_bookworm():
    extras = _extras("bookworm")
    assert list(extras) == ["bookworm-security", "bookworm-backports", "bookworm-backports-sloppy"]
    sec = extras["bookworm-security"]
    assert (sec.origin, sec.priority, sec.remove_from_component, sec.extra_identifiers) == ("Debian", 500, "updates/", {})
    for name in ("bookworm-backports", "bookworm-backports-sloppy"):
        assert (extras[name].origin, extras[name].priority, extras[name].remove_from_component) == ("Debian Backports", 1, "")


def test_extra_sources_old_security_layout():
    for codename in ("wheezy", "jessie", "stretch", "buster"):
        sec = _extras(codename)[f"{codename}/updates"]
        assert sec.extra_identifiers == {"Codename": codename, "Label": "Debian-Security"}
        assert (sec.origin, sec.priority, sec.remove_from_component) == ("Debian", 500, "updates/")
    assert "bullseye-security" in _extras("bullseye")


def test_extra_sources_testing_sid_newest():
    assert _extras("sid") == {}
    assert list(_extras("forky")) == ["forky-security"]
    assert list(_extras("trixie")) == ["trixie-security", "trixie-backports"]   # no -sloppy before the next release


def test_extra_sources_ubuntu():
    extras = _extras("jammy")
    assert list(extras) == ["jammy-security", "jammy-backports"]
    assert extras["jammy-security"].priority == 500 and extras["jammy-backports"].priority == 1
    assert extras["jammy-security"].extra_identifiers == {"Codename": "jammy", "Suite": "jammy-security"}
    assert extras["jammy-backports"].extra_identifiers == {"Codename": "jammy", "Suite": "jammy-backports"}
    assert all(e.origin == "Ubuntu" for e in extras.values())


def test_generated_defaults():
    debian = dist.codename_info("zzzunknown", "Debian")
    assert not debian.known and debian.codeversion == "~ZZZUNKNOWN"
    assert list(_extras("zzzunknown", "Debian")) == ["zzzunknown-security", "zzzunknown-backports", "zzzunknown-backports-sloppy"]
    assert debian.apt_keys and debian.components == ["main", "contrib", "non-free", "non-free-firmware"]
    ubuntu = dist.codename_info("zzzunknown", "Ubuntu")
    assert list(_extras("zzzunknown", "Ubuntu")) == ["zzzunknown-security", "zzzunknown-backports"]
    identifiers = _extras("zzzunknown", "Ubuntu")["zzzunknown-security"].extra_identifiers
    assert identifiers == {"Codename": "zzzunknown", "Suite": "zzzunknown-security"}
    assert ubuntu.distribution_options == {"deb_build_options": "noddebs"}
    with pytest.raises(ValueError, match="zzzunknown"):
        dist.codename_info("zzzunknown")
    with pytest.raises(ValueError):
        dist.codename_info("zzzunknown", "PureOS")


def test_generated_default_without_distro_info(monkeypatch):
    monkeypatch.setattr(dist.codenames, "_distro_info", lambda origin: None)
    info = dist.codename_info("zzznew", "Ubuntu")
    assert info.version == "" and info.codeversion == "~ZZZNEW"


def test_as_dict_is_jsonable():
    import json  # pylint: disable=import-outside-toplevel
    data = json.loads(json.dumps(dist.codename_info("buster").as_dict()))
    assert data["codeversion"] == "10"
    assert data["extra_sources"][0]["extra_identifiers"]["Label"] == "Debian-Security"


@pytest.mark.parametrize("codename, components", [
    ("bookworm", ["main", "contrib", "non-free", "non-free-firmware"]),
    ("trixie", ["main", "contrib", "non-free", "non-free-firmware"]),
    ("sid", ["main", "contrib", "non-free", "non-free-firmware"]),
    ("bullseye", ["main", "contrib", "non-free"]),
    ("wheezy", ["main", "contrib", "non-free"]),
    ("noble", ["main", "universe", "restricted", "multiverse"]),
])
def test_components(codename, components):
    assert dist.codename_info(codename).components == components


def test_distribution_options():
    assert dist.codename_info("bookworm").distribution_options == {}
    assert dist.codename_info("sid").distribution_options == {}
    jammy = dist.codename_info("jammy")
    assert jammy.distribution_options == {"deb_build_options": "noddebs"}
    assert jammy.optional_architectures == ["i386"]
    assert dist.codename_info("bookworm").optional_architectures == []
    wheezy = dist.codename_info("wheezy").distribution_options
    assert wheezy["sbuild_setup_blocks"] == "apt-allow-unauthenticated apt-setup apt-key-binary apt-update ccache eatmydata"
    squeeze = dist.codename_info("squeeze").distribution_options["sbuild_setup_blocks"].split()
    assert {"apt-no-check-valid-until", "apt-key-add"} <= set(squeeze)
    assert squeeze.index("apt-setup") < squeeze.index("apt-key-add") < squeeze.index("apt-update")
    assert dist.codename_info("squeeze").distribution_options["lintian_extra_options"] == "--info"
    assert dist.codename_info("buster").distribution_options == {"lintian_warnfail_options": "--fail-on-warnings"}
    for info in dist.CODENAMES.values():
        dist.validate_setup_blocks(info.distribution_options.get("sbuild_setup_blocks", dist.DEFAULT_SBUILD_SETUP_BLOCKS))


def test_chroot_options():
    assert dist.codename_info("bookworm").chroot_options == {}
    assert dist.codename_info("jammy").chroot_options == {}
    assert dist.codename_info("wheezy").chroot_options == {"debootstrap_extra_options": "--include=realpath"}
    assert dist.codename_info("lenny").chroot_options["debootstrap_command"] == "/usr/sbin/mini-buildd-debootstrap-uname-2.6"


def test_setup_codenames():
    debian_all = dist.setup_codenames("Debian", "all")
    assert debian_all[:3] == ["sid", "forky", "trixie"] and debian_all[-1] == "lenny"
    supported = dist.setup_codenames("Debian")
    assert "sid" in supported and set(supported) <= set(dist.setup_codenames("Debian", "lts")) <= set(debian_all)
    assert dist.setup_codenames("Ubuntu", "all") == ["noble", "jammy", "focal", "bionic"]
    with pytest.raises(ValueError):
        dist.setup_codenames("PureOS")
    with pytest.raises(ValueError):
        dist.setup_codenames("Debian", "esm")


def test_setup_codenames_without_distro_info(monkeypatch):
    monkeypatch.setattr(dist.codenames, "_distro_info", lambda origin: None)
    assert dist.setup_codenames("Debian") == ["sid", "forky", "trixie"]
    assert dist.setup_codenames("Debian", "lts") == ["sid", "forky", "trixie", "bookworm", "bullseye"]
    assert dist.setup_codenames("Ubuntu") == ["noble", "jammy"]


# ---------------------------------------------------------------------------------------------
# Native architectures
# ---------------------------------------------------------------------------------------------


def _fake_tools(monkeypatch, present, outputs):
    calls = []

    def run(argv, **_kwargs):
        calls.append(list(argv))
        result = outputs.get(tuple(argv))
        if isinstance(result, Exception):
            raise result
        if result is None:
            raise call.CallError(argv, 1, "no")
        return result

    def ok(argv, **kwargs):
        try:
            run(argv, **kwargs)
            return True
        except call.CallError:
            return False

    monkeypatch.setattr(dist.host.shutil, "which", lambda name: f"/usr/bin/{name}" if name in present else None)
    monkeypatch.setattr(dist.host.call, "run", run)
    monkeypatch.setattr(dist.host.call, "ok", ok)
    return calls


def test_native_architectures_arch_test(monkeypatch):
    _fake_tools(monkeypatch, {"arch-test"}, {("arch-test", "-n"): "amd64\ni386\nx32\n"})
    assert dist.native_architectures() == ["amd64", "i386", "x32"]


def test_native_architectures_dpkg_fallback(monkeypatch):
    calls = _fake_tools(monkeypatch, set(), {("dpkg", "--print-architecture"): "amd64\n"})
    assert dist.native_architectures() == ["amd64"]
    assert ["arch-test", "-n"] not in calls


def test_native_architectures_arch_test_fails(monkeypatch):
    _fake_tools(monkeypatch, {"arch-test"}, {("arch-test", "-n"): call.CallError(["arch-test"], 2, "boom"),
                                             ("dpkg", "--print-architecture"): "amd64\n",
                                             ("arch-test", "-n", "i386"): "i386: ok\n"})
    assert dist.native_architectures() == ["amd64", "i386"]
    _fake_tools(monkeypatch, {"arch-test"}, {("arch-test", "-n"): call.CallError(["arch-test"], 2, "boom"),
                                             ("dpkg", "--print-architecture"): "arm64\n"})
    assert dist.native_architectures() == ["arm64"]


def test_native_architectures_real():
    archs = dist.native_architectures()
    assert call.run(["dpkg", "--print-architecture"]).strip() in archs
    assert all(re.fullmatch(r"[a-z0-9-]+", a) for a in archs)


# ---------------------------------------------------------------------------------------------
# Archives from APT sources and proxy
# ---------------------------------------------------------------------------------------------


def _write_sources(root):
    (root / "sources.list.d").mkdir()
    (root / "sources.list").write_text(
        "# deb http://commented.example.org/debian bookworm main\n"
        "deb http://mirror.example.org/debian bookworm main contrib\n"
        "deb-src http://mirror.example.org/debian/ bookworm main\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://security.example.org/debian-security//"
        "  bookworm-security main\n"
        "deb [ trusted=yes ] https://other.example.net/ubuntu jammy main  # trailing comment\n"
        "deb cdrom:[Debian GNU/Linux 12]/ bookworm main\n"
        "deb file:/srv/local-mirror bookworm main\n"
        "\n"
        "   \n")
    (root / "sources.list.d" / "extra.list").write_text("deb http://extra.example.org/debian sid main\n")
    (root / "sources.list.d" / "disabled.list.disabled-by-farm").write_text("deb http://disabled1.example.org/debian sid main\n")
    (root / "sources.list.d" / "main.sources").write_text(
        "# deb822 comment\n"
        "Types: deb deb-src\n"
        "URIs: http://deb822a.example.org/debian http://deb822b.example.org/debian/\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        "\n"
        "Types: deb\n"
        "URIs: http://off.example.org/debian\n"
        "Suites: bookworm\n"
        "Enabled: no\n"
        "\n"
        "Types: deb\n"
        "URIs:\n"
        " http://continued.example.org/debian-security\n"
        "# comment inside a stanza\n"
        "Suites: bookworm-security\n"
        "Components: main\n"
        "\n"
        "Types: deb\n"
        "URIs: mirror+file:///etc/apt/mirrors/debian.list\n"
        "Suites: trixie\n")
    (root / "sources.list.d" / "off.sources.disabled").write_text(
        "Types: deb\nURIs: http://disabled2.example.org/debian\nSuites: sid\n")


EXPECTED_ARCHIVES = [
    "http://continued.example.org/debian-security/",
    "http://deb822a.example.org/debian/",
    "http://deb822b.example.org/debian/",
    "http://extra.example.org/debian/",
    "http://mirror.example.org/debian/",
    "http://security.example.org/debian-security/",
    "https://other.example.net/ubuntu/",
]


def test_archives_from_apt_sources(tmp_path):
    _write_sources(tmp_path)
    paths = [tmp_path / "sources.list", tmp_path / "sources.list.d", tmp_path / "missing"]
    result = dist.archives_from_apt_sources(paths)
    assert result == EXPECTED_ARCHIVES
    assert all(u.endswith("/") and not u.endswith("//") for u in result)


def test_archives_from_apt_sources_single_files(tmp_path):
    _write_sources(tmp_path)
    assert dist.archives_from_apt_sources([tmp_path / "sources.list.d" / "extra.list"]) == ["http://extra.example.org/debian/"]
    assert dist.archives_from_apt_sources([tmp_path / "sources.list.d" / "off.sources.disabled"]) == []
    assert dist.archives_from_apt_sources([]) == []


def test_archives_from_apt_sources_default_paths(monkeypatch, tmp_path):
    _write_sources(tmp_path)
    monkeypatch.setattr(dist.host, "APT_SOURCES_LIST", str(tmp_path / "sources.list"))
    monkeypatch.setattr(dist.host, "APT_SOURCES_PARTS", str(tmp_path / "sources.list.d"))
    assert dist.archives_from_apt_sources() == EXPECTED_ARCHIVES


def _release(origin, signed=False):
    body = f"Origin: {origin}\nLabel: {origin}\nSuite: stable\nCodename: bookworm\nComponents: main\n"
    if signed:
        return f"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n{body}-----BEGIN PGP SIGNATURE-----\n\nxyz\n-----END PGP SIGNATURE-----\n"
    return body


def test_apt_list_prefix_as_apt_names_its_files():
    """apt's URItoFileName: scheme and credentials dropped, its special characters quoted, '/' -> '_'."""
    assert dist.host._apt_list_prefix("http://mirror.example.org/debian/") == "mirror.example.org_debian_"  # pylint: disable=protected-access
    assert dist.host._apt_list_prefix("https://u:pw@h.example.org:8080/a_b~c/") == "h.example.org:8080_a%5fb%7ec_"  # pylint: disable=protected-access


def test_archives_from_origins_reads_apt_lists(tmp_path):
    """Origins from apt's own Release copies (clear-signed InRelease or Release), no network."""
    _write_sources(tmp_path)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "mirror.example.org_debian_dists_bookworm_InRelease").write_text(_release("Debian", signed=True))
    (lists / "security.example.org_debian-security_dists_bookworm-security_Release").write_text(_release("Debian"))
    (lists / "other.example.net_ubuntu_dists_jammy_InRelease").write_text(_release("Ubuntu", signed=True))
    (lists / "deb822b.example.org_debian_dists_bookworm-updates_InRelease").write_text(_release("Third Party"))
    paths = [tmp_path / "sources.list", tmp_path / "sources.list.d"]
    debian = dist.archives_from_origins(["Debian"], paths=paths, lists_dir=str(lists), fetch=False)
    assert debian == ["http://mirror.example.org/debian/", "http://security.example.org/debian-security/"]
    assert dist.archives_from_origins(["Ubuntu"], paths=paths, lists_dir=str(lists), fetch=False) == ["https://other.example.net/ubuntu/"]
    assert dist.archives_from_origins(["Debian", "Ubuntu"], paths=paths, lists_dir=str(lists), fetch=False) == \
        ["http://mirror.example.org/debian/", "http://security.example.org/debian-security/", "https://other.example.net/ubuntu/"]
    assert dist.archives_from_origins(["Nosuch"], paths=paths, lists_dir=str(lists), fetch=False) == []


class _ReleaseHandler(http.server.BaseHTTPRequestHandler):
    """An archive with one suite: ``/debian/dists/bookworm/Release`` (Origin Debian); anything else 404."""

    def do_GET(self):  # noqa: N802
        found = self.path == "/debian/dists/bookworm/Release"
        self.send_response(200 if found else 404)
        self.end_headers()
        self.wfile.write(_release("Debian").encode() if found else b"no")

    def log_message(self, *_args):
        pass


def test_archives_from_origins_asks_the_archive_without_apt_lists(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _ReleaseHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        (tmp_path / "a.sources").write_text(f"Types: deb\nURIs: http://127.0.0.1:{port}/debian\nSuites: bookworm\n\n"
                                            f"Types: deb\nURIs: http://127.0.0.1:{port}/other\nSuites: bookworm\n")
        assert dist.archives_from_origins(["Debian"], paths=[tmp_path / "a.sources"], lists_dir=str(tmp_path / "none")) == \
            [f"http://127.0.0.1:{port}/debian/"]
        assert dist.archives_from_origins(["Debian"], paths=[tmp_path / "a.sources"], lists_dir=str(tmp_path / "none"), fetch=False) == []
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802  # apt-cacher-ng answers "/" with a usage page and status 406
        self.send_response(406)
        self.end_headers()
        self.wfile.write(b"usage")

    def log_message(self, *_args):
        pass


def test_archives_from_proxy():
    server = http.server.HTTPServer(("127.0.0.1", 0), _QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        assert dist.archives_from_proxy("127.0.0.1", port=port) == [
            f"http://127.0.0.1:{port}/debian/", f"http://127.0.0.1:{port}/debian-security/", f"http://127.0.0.1:{port}/ubuntu/"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_archives_from_proxy_absent():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert dist.archives_from_proxy("127.0.0.1", port=port, timeout=1) == []


# ---------------------------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------------------------

# suite: (uploadable, experimental, migrates_to, rollback, not_automatic, but_automatic_upgrades) -- upstream §3.2
DEFAULT_TABLE = {
    "experimental": (True, True, None, 6, True, False),
    "snapshot": (True, True, None, 12, True, True),
    "unstable": (True, False, "testing", 9, True, True),
    "testing": (False, False, "stable", 3, True, True),
    "hotfix": (True, False, "stable", 4, True, True),
    "stable": (False, False, None, 6, True, True),
}


def test_default_layout_table():
    suites = dist.LAYOUTS["Default"]["suites"]
    assert set(suites) == set(DEFAULT_TABLE)
    for name, (upl, exp, mig, rb, na, bau) in DEFAULT_TABLE.items():
        s = suites[name]
        actual = (s["uploadable"], s["experimental"], s["migrates_to"], s["rollback"], s["not_automatic"],
                  s["but_automatic_upgrades"])
        assert actual == (upl, exp, mig, rb, na, bau), name
    assert [n for n, s in suites.items() if s["build_keyring_package"]] == ["unstable"]
    assert dist.LAYOUTS["Default"]["meta_distributions"] == {}


def test_no_rollbacks_layout():
    default, norb = dist.LAYOUTS["Default"]["suites"], dist.LAYOUTS["Default (no rollbacks)"]["suites"]
    assert set(default) == set(norb)
    for name, options in norb.items():
        assert options["rollback"] == 0
        assert dict(options, rollback=default[name]["rollback"]) == default[name]


def test_debian_developer_layout():
    layout = dist.LAYOUTS["Debian Developer"]
    assert list(layout["suites"]) == ["stable", "testing", "unstable", "experimental"]
    assert layout["mandatory_version_regex"] == ".*" and layout["experimental_mandatory_version_regex"] == ".*"
    assert layout["default_version"] == dist.LAYOUTS["Default"]["default_version"]
    assert layout["meta_distributions"] == {"unstable": "sid-unstable", "experimental": "sid-experimental"}
    assert all(s["rollback"] == 0 for s in layout["suites"].values())


@pytest.mark.parametrize("name", list(dist.LAYOUTS))
def test_layouts_are_valid(name):
    """upstream §2.4 SuiteOption validation rules hold for every default layout."""
    suites = dist.LAYOUTS[name]["suites"]
    for suite, s in suites.items():
        assert re.fullmatch(r"[a-z]+", suite)
        if s["build_keyring_package"]:
            assert s["uploadable"]
        if s["experimental"]:
            assert s["uploadable"] and s["migrates_to"] is None
        if s["migrates_to"]:
            assert s["migrates_to"] in suites and not suites[s["migrates_to"]]["uploadable"]


def test_layout_versions():
    layout = dist.LAYOUTS["Default"]
    assert layout["default_version"] == "~%IDENTITY%%CODEVERSION%+1"
    assert layout["mandatory_version_regex"] == r"~%IDENTITY%%CODEVERSION%\+[1-9]"
    assert layout["experimental_default_version"] == "~%IDENTITY%%CODEVERSION%+0"
    assert layout["experimental_mandatory_version_regex"] == r"~%IDENTITY%%CODEVERSION%\+0"
    # Examples of upstream §3.2 (repo test, bullseye=11)
    regex = dist.substitute(layout["mandatory_version_regex"], "test", "11")
    exp_regex = dist.substitute(layout["experimental_mandatory_version_regex"], "test", "11")
    for version in ("1.0~test11+3", "1.0~test11+2", "1.0~test11+2+hotfix1", "1.0~test11+1"):
        assert dist.version_matches_mandatory(version, regex)
        assert not dist.version_matches_mandatory(version, exp_regex)
    assert dist.version_matches_mandatory("1.0~test11+0", exp_regex)
    assert not dist.version_matches_mandatory("1.0~test11+0", regex)


def test_suite_sort():
    suites = dist.LAYOUTS["Default"]["suites"]
    ordered = sorted(suites, key=lambda n: dist.suite_sort_key(n, suites[n]["experimental"]))
    assert ordered == ["stable", "testing", "unstable", "hotfix", "snapshot", "experimental"]
    mixed = sorted(["experimental", "zzz", "aaa", "stable", "qa"], key=lambda n: dist.suite_sort_key(n, n == "qa"))
    assert mixed == ["stable", "aaa", "zzz", "qa", "experimental"]


def test_apt_pin_priority():
    assert dist.apt_pin_priority(False, False) == 500
    assert dist.apt_pin_priority(True, False) == 1
    assert dist.apt_pin_priority(True, True) == 100


# ---------------------------------------------------------------------------------------------
# QA modes, sbuild status words, blocks
# ---------------------------------------------------------------------------------------------


def test_qamode_values_and_parse():
    assert [(m.name, int(m)) for m in dist.QAMode] == [("DISABLED", 0), ("IGNORE", 1), ("ERRFAIL", 2), ("WARNFAIL", 3)]
    for value in ("errfail", "ERRFAIL", "ErrFail", " errfail ", 2, "2", dist.QAMode.ERRFAIL):
        assert dist.QAMode.parse(value) is dist.QAMode.ERRFAIL
    for bad in ("fail", "", "4", 7, None, True):
        with pytest.raises(ValueError, match="disabled|ignore|errfail|warnfail"):
            dist.QAMode.parse(bad)


@pytest.mark.parametrize("status, mode, ignore, expected", [
    ("pass", "warnfail", False, True),
    ("info", "warnfail", False, True),
    ("successful", "errfail", False, True),
    ("warn", "errfail", False, True),
    ("warn", "warnfail", False, False),
    ("no tests", "warnfail", False, False),
    ("no tests", "errfail", False, True),
    ("unknown", "errfail", False, True),
    ("error", "errfail", False, False),
    ("fail", "warnfail", False, False),
    ("failed", "errfail", False, False),
    ("error", "ignore", False, True),
    ("error", "disabled", False, True),
    ("error", "errfail", True, True),
    ("Error", "errfail", False, False),
    ("PASS", "errfail", False, True),
    ("garbage", "errfail", False, False),
])
def test_sbuild_check_passes(status, mode, ignore, expected):
    assert dist.sbuild_check_passes(status, mode, ignore=ignore) is expected


def test_validate_blocks():
    assert dist.validate_blocks(dist.DEFAULT_SBUILD_SETUP_BLOCKS) == ["apt-setup", "apt-update", "ccache", "eatmydata"]
    assert dist.validate_config_blocks(dist.DEFAULT_SBUILD_CONFIG_BLOCKS) == ["set-default-path", "ccache"]
    assert dist.validate_blocks("") == []
    with pytest.raises(ValueError, match="Unknown sbuild block.*no-such-block"):
        dist.validate_blocks("apt-setup no-such-block")
    with pytest.raises(ValueError, match="Unknown"):
        dist.validate_config_blocks("apt-setup")
    with pytest.raises(ValueError, match="Duplicate.*ccache"):
        dist.validate_setup_blocks("ccache apt-setup ccache")
    assert {"show-sbuildrc", "apt-key-binary", "apt-key-add", "apt-no-check-valid-until", "apt-allow-unauthenticated",
            "apt-force-yes", "apt-no-cache", "apt-no-pipelining", "apt-clear", "bash-devices", "schroot-shm",
            "sun-java6-license"} <= set(dist.SBUILD_SETUP_BLOCKS)


# ---------------------------------------------------------------------------------------------
# Version helpers
# ---------------------------------------------------------------------------------------------


def test_substitute():
    assert dist.substitute("~%IDENTITY%%CODEVERSION%+1", "test", "12") == "~test12+1"
    assert dist.substitute(r"~%IDENTITY%%CODEVERSION%\+[1-9]", "test", "~SID") == r"~test~SID\+[1-9]"


def test_version_matches_mandatory():
    bookworm = r"~test12\+[1-9]"
    assert dist.version_matches_mandatory("1.0~test12+4", bookworm)
    assert dist.version_matches_mandatory("1.0-1~test12+4fud", bookworm)   # unanchored
    assert not dist.version_matches_mandatory("1.0~test12+0", bookworm)
    assert not dist.version_matches_mandatory("1.0~test11+1", bookworm)
    assert dist.version_matches_mandatory("1.0~test~SID+1", r"~test~SID\+[1-9]")
    assert dist.version_matches_mandatory("anything", ".*")


@pytest.mark.parametrize("version, regex, target, expected", [
    ("1.2.3-1~testSID+4fud15", r"~testSID\+[1-9]", "~test70+1", "1.2.3-1~test70+4fud15"),   # upstream §3.8
    ("1.0~test12+4", r"~test12\+[1-9]", "~test11+1", "1.0~test11+4"),
    ("1.0~test12+12", r"~test12\+[1-9]", "~test11+1", "1.0~test11+12"),
    ("1.0~test~SID+2", r"~test~SID\+[1-9]", "~test12+1", "1.0~test12+2"),
    ("1.0~test12+0", r"~test12\+0", "~test~SID+0", "1.0~test~SID+0"),
    ("1.0~test12+1~test12+3", r"~test12\+[1-9]", "~test13+1", "1.0~test12+1~test13+3"),   # rightmost match
    ("1.2.3-1", ".*", "~debdev~SID+1", "1.2.3-1~debdev~SID+1"),                          # just append
    ("1.2.3-1", r"~test12\+[1-9]", "~test13+1", "1.2.3-1~test13+1"),                       # no match: append
    ("1.0~test12", "~test12", "~test13+1", "1.0~test13+1"),                                 # no +N in match: whole default
])
def test_port_version(version, regex, target, expected):
    assert dist.port_version(version, regex, target) == expected


def test_rebuild_version():
    stamp = datetime.datetime(2024, 5, 6, 7, 8, 9)
    assert dist.rebuild_version("1.0~test12+1", stamp) == "1.0~test12+1+rebuilt20240506070809"
    assert dist.rebuild_version("1.0~test12+1+rebuilt20240506070809", "20250101000000") == "1.0~test12+1+rebuilt20250101000000"
    now = dist.rebuild_version("1.0")
    assert re.fullmatch(r"1\.0\+rebuilt[0-9]{14}", now)
    with pytest.raises(ValueError):
        dist.rebuild_version("1.0", "2024-05-06")


def test_port_ext_version():
    assert dist.port_ext_version("1.2.3", "~test12+1") == "1.2.3~test12+1"
    assert dist.port_ext_version("2:1.0-3", dist.substitute(dist.DEFAULT_VERSION, "test", "~SID")) == "2:1.0-3~test~SID+1"
