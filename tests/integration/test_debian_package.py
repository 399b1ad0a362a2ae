"""Integration test of the Debian packaging (owns: tests/integration/test_debian_package.py).

Builds the binary packages from a copy of the work tree with the real ``dpkg-buildpackage -us -uc
-b`` (a clean-clone build: no VCS data, no earlier build artefacts; ``DEB_BUILD_OPTIONS=nocheck``:
the build-time unit test run, debian/rules' ``override_dh_auto_test``, is make check's ``unit``
group, the same command in the same environment with an unwritable HOME; see
:func:`test_build_time_tests_are_make_checks_unit_group`), then inspects the .debs with ``dpkg-deb`` and lintian. Nothing is installed
(tests/e2e/test_package_install.py installs them). Needs the build dependencies of debian/control.
"""

# pytest idioms: fixtures are parameters named like them.
# pylint: disable=redefined-outer-name

import fnmatch
import os
import pathlib
import re
import shutil
import stat

import pytest

from mini_buildd.tools import call

SRC = pathlib.Path(__file__).resolve().parents[2]

#: Not copied: VCS data and anything an earlier build or test run may have left in the tree.
_IGNORE_ANYWHERE = ("__pycache__", "*.pyc", ".pytest_cache")
_IGNORE_BELOW = {
    ".": (".git", ".pybuild", "build", "*.egg-info", ".run-home", "test-artifacts"),
    "debian": (".debhelper", "tmp", "files", "*.substvars", "debhelper-build-stamp", "*.debhelper.log",
               "mini-buildd", "mini-buildd-utils", "python3-mini-buildd", "mini-buildd-doc", "mbd-generated"),
}


def _ignore(directory, names):
    relative = os.path.relpath(directory, SRC)
    patterns = _IGNORE_ANYWHERE + _IGNORE_BELOW.get(relative, ())
    return {name for name in names if any(fnmatch.fnmatch(name, pattern) for pattern in patterns)}


#: The tree's files that are no part of the shipped Python package.
_NOT_SHIPPED = re.compile(r"(^|/)__pycache__(/|$)|\.py[co]$")

BUILD_ENV = {
    # A clean Debian build environment: system tools and /usr/bin/python3 only (no pyenv).
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "PYTHONPATH": "",
    "LC_ALL": "C.UTF-8",
    # Build machines may have no writable home (the build-time unit tests must not need one).
    "HOME": "/nonexistent/mini-buildd-build-home",
    "DEB_BUILD_OPTIONS": "nocheck",
}
PACKAGES = ["mini-buildd", "mini-buildd-doc", "mini-buildd-utils", "python3-mini-buildd"]


def _version():
    text = (SRC / "mini_buildd" / "__init__.py").read_text(encoding="UTF-8")
    return re.search(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", text, re.MULTILINE).group(1)


def _debian_version():
    return call.run(["dpkg-parsechangelog", "-l", str(SRC / "debian" / "changelog"), "-S", "Version"]).strip()


class Deb:
    """One built .deb file, read with dpkg-deb."""

    def __init__(self, path, workdir):
        self.path = path
        self.workdir = workdir

    def field(self, name):
        return call.run(["dpkg-deb", "--field", str(self.path), name]).strip()

    def contents(self):
        """Map of member path (``./usr/...``, no trailing slash) -> mode string (``-rw-r--r--``)."""
        result = {}
        for line in call.run(["dpkg-deb", "--contents", str(self.path)], env=BUILD_ENV).splitlines():
            fields = line.split(None, 5)
            name = fields[5].split(" -> ")[0].rstrip("/")
            result[name] = fields[0]
        return result

    def extract(self):
        """The package's files extracted (once); their dir."""
        target = self.workdir / "x" / self.path.name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            call.run(["dpkg-deb", "--extract", str(self.path), str(target)])
        return target

    def control(self):
        """The package's control files extracted (once); their dir."""
        target = self.workdir / "c" / self.path.name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            call.run(["dpkg-deb", "--control", str(self.path), str(target)])
        return target


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """Build the packages once from a copy of the tree; return ``(copied tree, {package: Deb})``.

    The build log and the .changes stay in the module's work dir (``Deb.workdir``)."""
    workdir = tmp_path_factory.mktemp("debian-package")
    tree = workdir / "mini-buildd"
    shutil.copytree(SRC, tree, symlinks=True, ignore=_ignore)
    log = call.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=tree, env=BUILD_ENV, timeout=600)
    (workdir / "build.log").write_text(log, encoding="UTF-8")
    result = {}
    for deb in sorted(workdir.glob("*.deb")):
        package = deb.name.split("_")[0]
        result[package] = Deb(deb, workdir)
    return tree, result


@pytest.fixture(scope="module")
def debs(build):
    return build[1]


def test_four_packages_built(debs):
    version = _debian_version()
    assert version.split("-")[0] == _version(), "debian/changelog and mini_buildd.__version__ disagree"
    assert sorted(debs) == PACKAGES
    for package, deb in debs.items():
        assert deb.path.name == f"{package}_{version}_all.deb"
        assert deb.field("Version") == version
        assert deb.field("Architecture") == "all"


def test_daemon_package(debs):
    deb = debs["mini-buildd"]
    contents = deb.contents()
    assert "./usr/sbin/mini-buildd" in contents
    assert contents["./usr/sbin/mini-buildd"].startswith("-rwxr-xr-x")
    assert "./usr/bin/mini-buildd" not in contents
    units = {"./lib/systemd/system/mini-buildd.service", "./usr/lib/systemd/system/mini-buildd.service"} & set(contents)
    assert len(units) == 1, units
    # /etc/default/mini-buildd is written by postinst (debconf answers) from this template: no conffile.
    assert "./etc/default/mini-buildd" not in contents
    assert "./usr/share/mini-buildd/mini-buildd-default.template" in contents
    assert "./etc/schroot/mini-buildd/fstab-generic" in contents
    # sudo ignores snippets that are not mode 0440.
    assert contents["./etc/sudoers.d/mini-buildd-sudoers"].startswith("-r--r-----")

    depends = deb.field("Depends")
    for needed in ("sbuild", "schroot", "reprepro", "debootstrap", "gnupg", "gpgv", "devscripts",
                   "dpkg-dev", "arch-test", "sudo", "adduser"):
        assert re.search(rf"(^|, ){re.escape(needed)}(,| |$)", depends), f"{needed} missing in Depends: {depends}"
    assert f"python3-mini-buildd (= {deb.field('Version')})" in depends

    root = deb.extract()
    unit = (root / units.pop()[2:]).read_text(encoding="UTF-8")
    assert re.search(r"^User=mini-buildd$", unit, re.MULTILINE)
    assert re.search(r"^ExecStart=/usr/sbin/mini-buildd \$MINI_BUILDD_OPTIONS$", unit, re.MULTILINE)
    assert re.search(r"^EnvironmentFile=-/etc/default/mini-buildd$", unit, re.MULTILINE)
    assert re.search(r"^WantedBy=multi-user.target$", unit, re.MULTILINE)
    default = (root / "usr/share/mini-buildd/mini-buildd-default.template").read_text(encoding="UTF-8")
    assert re.search(r'^MINI_BUILDD_OPTIONS=""$', default, re.MULTILINE)

    fstab = (root / "etc/schroot/mini-buildd/fstab-generic").read_text(encoding="UTF-8")
    mounts = [line.split() for line in fstab.splitlines() if line.strip() and not line.startswith("#")]
    assert {m[1] for m in mounts} == {"/proc", "/sys", "/dev/pts", "/dev/shm"}
    assert all(len(m) == 6 for m in mounts)

    sudoers = root / "etc/sudoers.d/mini-buildd-sudoers"
    assert re.search(r"^mini-buildd ALL = \(root\) NOPASSWD: ", sudoers.read_text(encoding="UTF-8"), re.MULTILINE)
    if shutil.which("visudo", path=BUILD_ENV["PATH"]):
        call.run(["visudo", "--check", "--quiet", "--file", str(sudoers)], env=BUILD_ENV)


def test_daemon_maintainer_scripts(debs):
    deb = debs["mini-buildd"]
    control = deb.control()
    conffiles = (control / "conffiles").read_text(encoding="UTF-8").split()
    assert set(conffiles) >= {"/etc/schroot/mini-buildd/fstab-generic", "/etc/sudoers.d/mini-buildd-sudoers"}
    assert "/etc/default/mini-buildd" not in conffiles, "postinst edits it: must not be a conffile"
    shellcheck = shutil.which("shellcheck", path=BUILD_ENV["PATH"])
    for script in ("config", "postinst", "prerm", "postrm"):
        path = control / script
        assert path.stat().st_mode & stat.S_IXUSR, f"{script} not executable"
        call.run(["sh", "-n", str(path)], env=BUILD_ENV)
        if shellcheck:
            call.run([shellcheck, "-s", "sh", "-S", "warning", str(path)], env=BUILD_ENV)
    postinst = (control / "postinst").read_text(encoding="UTF-8")
    assert "adduser --system" in postinst and "/var/lib/mini-buildd" in postinst
    assert 'db_get mini-buildd/home' in postinst and 'db_get mini-buildd/options' in postinst
    # The admin password is used once (standard input of the daemon command) and removed from debconf.
    assert "--set-admin-password-file -" in postinst
    assert re.search(r'db_get mini-buildd/admin_password\n\tpassword="\$\{RET\}"\n\tdb_set mini-buildd/admin_password ""\n',
                     postinst), "the password is not cleared right after use"
    # The service (re)start of the debhelper snippet comes after db_stop: the daemon never holds debconf's pipe.
    assert "deb-systemd-invoke $_dh_action" in postinst
    assert postinst.index("db_stop") < postinst.index("deb-systemd-invoke $_dh_action")
    assert re.search(r'adduser --quiet "\$\{MBD_USER\}" sbuild', postinst)
    assert "/etc/schroot/mini-buildd" in postinst
    assert "deb-systemd-helper" in postinst, "systemd unit not enabled by postinst"
    prerm = (control / "prerm").read_text(encoding="UTF-8")
    remove_branch = re.search(r"^\tremove\)\n(.*?);;", prerm, re.MULTILINE | re.DOTALL)
    assert remove_branch and "--remove-system-artifacts" in remove_branch.group(1)
    assert "--help" not in prerm, "prerm must call --remove-system-artifacts unguarded"
    postrm = (control / "postrm").read_text(encoding="UTF-8")
    # The home, the instance's schroot files, /etc/default/mini-buildd and the debconf data go only on purge.
    purge_branch = re.search(r"^\tpurge\)\n(.*?);;", postrm, re.MULTILINE | re.DOTALL)
    assert purge_branch and "mbd_purge_home" in purge_branch.group(1)
    assert "mbd_purge_schroot_files" in purge_branch.group(1) and "/etc/default/mini-buildd" in postrm
    assert postrm.count("mbd_purge_home") == 2  # definition + the purge branch
    assert re.search(r"db_purge", postrm), "no debconf purge (dh_installdebconf snippet)"


def test_debconf(debs):
    control = debs["mini-buildd"].control()
    assert (control / "config").stat().st_mode & stat.S_IXUSR
    templates = (control / "templates").read_text(encoding="UTF-8")
    types = dict(re.findall(r"^Template: (\S+)\nType: (\S+)$", templates, re.MULTILINE))
    assert types == {"mini-buildd/home": "string", "mini-buildd/admin_password": "password",
                     "mini-buildd/options": "string", "mini-buildd/home_error": "error",
                     "mini-buildd/options_error": "error",
                     # what postinst applied last (a change outside debconf wins over the stored answer)
                     "mini-buildd/applied_home": "string", "mini-buildd/applied_options": "string"}, types
    assert re.search(r"^Template: mini-buildd/home\nType: string\nDefault: /var/lib/mini-buildd$", templates, re.MULTILINE)
    config = (control / "config").read_text(encoding="UTF-8")
    for question in ("home", "admin_password", "options"):
        assert f"db_input high mini-buildd/{question}" in config or f"db_input medium mini-buildd/{question}" in config
    assert "debconf" in debs["mini-buildd"].field("Depends")


def test_doc_package(debs):
    deb = debs["mini-buildd-doc"]
    assert deb.field("Section") == "doc"
    assert deb.field("Architecture") == "all"
    contents = deb.contents()
    html = "./usr/share/doc/mini-buildd-doc/html"
    assert f"{html}/index.html" in contents
    assert not any(name.endswith(("/.buildinfo", ".doctree", ".pickle")) for name in contents)
    index = (deb.extract() / html[2:] / "index.html").read_text(encoding="UTF-8")
    assert "mini-buildd" in index
    # dh_sphinxdoc: Sphinx's JavaScript comes from libjs-sphinxdoc, not a copy.
    assert "libjs-sphinxdoc" in deb.field("Depends")


def test_lintian(build):
    """lintian finds no errors in the four packages (warnings are listed in the report, not failed)."""
    lintian = shutil.which("lintian", path=BUILD_ENV["PATH"])
    if lintian is None:
        pytest.skip("lintian is not installed (apt-get install lintian)")
    _tree, debs = build
    changes = sorted(next(iter(debs.values())).workdir.glob("*.changes"))
    assert len(changes) == 1, changes
    proc = call.run(["sh", "-c", 'lintian --tag-display-limit 0 "$1" 2>&1; echo "rc=$?"', "sh", str(changes[0])],
                    env=BUILD_ENV, timeout=600)
    errors = [line for line in proc.splitlines() if line.startswith("E: ")]
    assert not errors, proc


def test_utils_package(debs):
    deb = debs["mini-buildd-utils"]
    contents = deb.contents()
    root = deb.extract()
    for tool, module in (("mini-buildd-api", "api"), ("mini-buildd-dput", "dput"), ("mini-buildd-events", "events")):
        assert contents[f"./usr/bin/{tool}"].startswith("-rwxr-xr-x")
        script = (root / "usr/bin" / tool).read_text(encoding="UTF-8")
        assert script.startswith("#!/usr/bin/python3\n")
        assert f"from mini_buildd.cli.{module} import main\n" in script
    assert f"python3-mini-buildd (= {deb.field('Version')})" in deb.field("Depends")
    daemon = (debs["mini-buildd"].extract() / "usr/sbin/mini-buildd").read_text(encoding="UTF-8")
    assert "from mini_buildd.cli.daemon import main\n" in daemon


#: Commands only other programs run (no --version).
INTERNAL_COMMANDS = {"mini-buildd-chroot-helper"}
#: Console scripts that are root commands: /usr/sbin, man section 8.
SBIN_COMMANDS = {"mini-buildd", "mini-buildd-chroot-helper", "mini-buildd-self-signed-certificate", "mini-buildd-debug-build",
                 "mini-buildd-cruft", "mini-buildd-backup"}


def _console_scripts(tree):
    """``{name: section}`` of every console script of the built tree's setup.py (root commands: /usr/sbin, 8)."""
    text = (tree / "setup.py").read_text(encoding="UTF-8")
    block = re.search(r"^CONSOLE_SCRIPTS = \[(.*?)^\]", text, re.MULTILINE | re.DOTALL).group(1)
    names = re.findall(r"""["']\s*([A-Za-z0-9_.-]+)\s*=""", block)
    assert "mini-buildd" in names and "mini-buildd-api" in names, names
    return {name: "8" if name in SBIN_COMMANDS else "1" for name in names}


def test_man_pages(build):
    """Every shipped command has a generated man page in the package that ships the command,
    which man renders without warnings and which documents its options."""
    tree, debs = build
    commands = _console_scripts(tree)
    for name, section in commands.items():
        binary = f"./usr/{'sbin' if section == '8' else 'bin'}/{name}"
        owner = [p for p, deb in debs.items() if binary in deb.contents()]
        assert len(owner) == 1, f"{binary} in {owner}"
        deb = debs[owner[0]]
        page = f"./usr/share/man/man{section}/{name}.{section}.gz"
        assert page in deb.contents(), f"{page} missing in {owner[0]}"
        path = deb.extract() / page[2:]
        env = dict(BUILD_ENV, MANWIDTH="120", MAN_KEEP_FORMATTING="")
        text = call.run(["man", "--warnings", "-E", "UTF-8", "-l", str(path)], env=env)
        assert text.startswith(f"{name.upper()}({section})"), text[:200]
        for heading in ("NAME", "SYNOPSIS", "OPTIONS"):
            assert re.search(rf"^{heading}$", text, re.MULTILINE), f"{name}: no {heading} section"
        # (groff justifies a long NAME line: more than one space around the dash)
        assert re.search(rf"^\s+{re.escape(name)}\s+-\s+\S", text, re.MULTILINE), f"{name}: NAME line"
        assert "--help" in text
        if name not in INTERNAL_COMMANDS:
            assert "--version" in text, name
        # groff warnings (bad escapes, unknown macros, ...) go to stderr, the page to stdout.
        warnings = call.run(["sh", "-c", 'man --warnings -E UTF-8 -l "$1" 2>&1 >/dev/null', "sh", str(path)], env=env)
        assert warnings.strip() == "", f"{name}: {warnings}"
    api_page = debs["mini-buildd-utils"].extract() / "usr/share/man/man1/mini-buildd-api.1.gz"
    # The API page documents every call of the registry (of the built tree), with its arguments.
    api = call.run(["man", "-E", "UTF-8", "-l", str(api_page)], env=dict(BUILD_ENV, MANWIDTH="200"))
    calls = call.run(["/usr/bin/python3", "-c", "from mini_buildd.api import registry, calls\n"
                      "for c in registry.CALLS.values(): print(c.name, *[f for a in c.args for f in a.flags])"],
                     cwd=tree, env=BUILD_ENV).splitlines()
    assert len(calls) >= 30
    for line in calls:
        name, *flags = line.split()
        section = re.search(rf"^   {re.escape(name)}\n(.*?)(?=^   \S|^[A-Z])", api, re.MULTILINE | re.DOTALL)
        assert section, f"API call {name} not in mini-buildd-api(1)"
        for flag in flags:
            assert flag in section.group(1), f"{name}: {flag} not documented"
        assert re.search(r"Authorization: (NONE|LOGIN|STAFF|ADMIN)", section.group(1)), name


def test_bash_completion(build):
    tree, debs = build
    deb = debs["mini-buildd-utils"]
    path = "./usr/share/bash-completion/completions/mini-buildd-api"
    assert deb.contents()[path].startswith("-rw-r--r--")
    script = deb.extract() / path[2:]
    call.run(["bash", "-n", str(script)], env=BUILD_ENV)
    names = call.run(["/usr/bin/python3", "-c", "from mini_buildd.api import registry, calls\n"
                      "print(*registry.CALLS)"], cwd=tree, env=BUILD_ENV).split()
    # Completing the first word offers every call; after a call, its options.
    probe = ('. "$1"; COMP_WORDS=(mini-buildd-api ""); COMP_CWORD=1; _mini_buildd_api; echo "${COMPREPLY[*]}"; '
             'COMP_WORDS=(mini-buildd-api ls --); COMP_CWORD=2; _mini_buildd_api; echo "${COMPREPLY[*]}"')
    first, ls_options = call.run(["bash", "-c", probe, "bash", str(script)], env=BUILD_ENV).splitlines()
    assert sorted(first.split()) == sorted(names)
    assert {"--repositories", "--codenames", "--version", "--min-version", "--help"} <= set(ls_options.split())


def test_library_package(build):
    tree, debs = build
    deb = debs["python3-mini-buildd"]
    contents = deb.contents()
    pkg = "./usr/lib/python3/dist-packages/mini_buildd"
    assert f"{pkg}/__init__.py" in contents
    assert f"{pkg}/migrations" in contents
    assert f"{pkg}/migrations/__init__.py" in contents
    assert f"{pkg}/webapp/templates" in contents
    assert any(name.startswith(f"{pkg}/webapp/templates/") and name.endswith(".html") for name in contents)

    # Every file of the source package (modules, templates, static files, package templates,
    # ...) of the built tree is shipped, and nothing else.
    source_files = {
        p.relative_to(tree / "mini_buildd").as_posix()
        for p in (tree / "mini_buildd").rglob("*")
        if p.is_file() and not _NOT_SHIPPED.search(p.relative_to(tree).as_posix())
    }
    shipped = {
        name[len(pkg) + 1:] for name, mode in contents.items()
        if name.startswith(pkg + "/") and not mode.startswith("d") and not _NOT_SHIPPED.search(name)
    }
    assert shipped == source_files, f"missing: {sorted(source_files - shipped)}; extra: {sorted(shipped - source_files)}"

    depends = deb.field("Depends")
    for needed in ("python3-django", "python3-twisted", "python3-pyftpdlib", "python3-gnupg", "python3-debian",
                   "python3-requests", "python3-keyring", "python3-openssl", "python3-service-identity"):
        assert re.search(rf"(^|, ){re.escape(needed)}(,| |$)", depends), f"{needed} missing in Depends: {depends}"
    assert not any(name.startswith("./usr/bin") or name.startswith("./usr/sbin") for name in contents)


def test_build_leaves_source_tree_alone(debs):
    """The build ran in a copy: no artefacts in the real tree."""
    assert debs
    for artefact in ("debian/tmp", "debian/mini-buildd", "debian/python3-mini-buildd", "debian/mini-buildd-doc",
                     "debian/files", ".pybuild", "debian/mbd-generated"):
        assert not (SRC / artefact).exists(), f"build artefact {artefact} in {SRC}"


def test_build_time_tests_are_make_checks_unit_group():
    """The package build's test run (``override_dh_auto_test``, skipped above with nocheck) is
    exactly what make check's ``unit`` group runs, in the build environment (no writable HOME):
    a unit test that needs more than a package build gives breaks the unit group too."""
    from tests import run_suite  # pylint: disable=import-outside-toplevel
    rules = (SRC / "debian" / "rules").read_text(encoding="UTF-8")
    block = rules.split("override_dh_auto_test:", 1)[1].split("\nendif", 1)[0]
    assert "\t/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/unit\n" in block + "\n", block
    assert run_suite.GROUPS["unit"] == ["tests/unit"] and run_suite.PYTHON == "/usr/bin/python3"
    env = {k: v for k, v in BUILD_ENV.items() if k != "DEB_BUILD_OPTIONS"}
    assert run_suite.ENV["unit"] == env
    assert not pathlib.Path(env["HOME"]).exists()
