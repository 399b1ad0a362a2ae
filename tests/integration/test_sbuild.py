"""sbuild wrapper (mini_buildd.tools.sbuild): generated files, command line, summary parsing, and real
sbuild builds in the existing chroot ``mini-buildd-bookworm-amd64`` (skipped if it isn't there).

The real builds only open normal (snapshot) sessions through sbuild; the chroot's source is never
touched. Build dirs are made below a directory the chroot's schroot fstab binds at the same path
(the instance's ``var/shared``), as the builder does. ``MBD_TEST_SBUILD=/path/to/sbuild`` runs
the real builds with another sbuild (e.g. a newer release unpacked somewhere);
``MBD_TEST_SBUILD_CHROOT=NAME`` with another (same kind of) schroot chroot.
"""

# pytest idioms: fixtures are parameters named like them; Django and the code under test are imported after the
# test set-up; asserts compare with empty containers on purpose (the type counts too).
# pylint: disable=redefined-outer-name,import-outside-toplevel,use-implicit-booleaness-not-comparison

import os
import pathlib
import re
import shutil
import tempfile
import threading
import time

import pytest

from mini_buildd.tools import call, sbuild, schroot, sbuild_log
from mini_buildd import dist

CHROOT = os.environ.get("MBD_TEST_SBUILD_CHROOT", "mini-buildd-bookworm-amd64")
CODENAME, ARCH = "bookworm", "amd64"
DIST = "bookworm-test-unstable"

# ---------------------------------------------------------------------------------------------
# .sbuildrc
# ---------------------------------------------------------------------------------------------


def test_sbuildrc_blocks_libdir_snippet():
    text = sbuild.sbuildrc("set-default-path ccache", "/home/mbd/var/shared/libdir/bookworm/amd64", "$foo = '%LIBDIR%';")
    assert text.rstrip().endswith("1;")
    assert text.index("$path = '/usr/local/sbin") < text.index("/usr/lib/ccache:") < text.index("$foo")
    assert "'CCACHE_DIR' => '/home/mbd/var/shared/libdir/bookworm/amd64/.ccache'" in text
    assert "$foo = '/home/mbd/var/shared/libdir/bookworm/amd64';" in text
    assert "%LIBDIR%" not in text


def test_sbuildrc_empty_and_list_and_quoting():
    assert sbuild.sbuildrc("", "/x").rstrip().endswith("1;")
    assert "$path" not in sbuild.sbuildrc([], "/x")
    text = sbuild.sbuildrc(["ccache"], "/it's")
    assert r"'/it\'s/.ccache'" in text
    # ccache without set-default-path still yields a full $path
    assert "($path // '/usr/local/sbin" in text


def test_sbuildrc_unknown_block():
    with pytest.raises(ValueError, match="no-such-block"):
        sbuild.sbuildrc("ccache no-such-block", "/x")


@pytest.mark.skipif(not shutil.which("perl"), reason="perl not installed")
def test_sbuildrc_is_valid_perl_for_sbuild(tmp_path):
    """Evaluate the file like sbuild does (strict, variables declared by sbuild)."""
    rc = tmp_path / "sbuildrc"
    rc.write_text(sbuild.sbuildrc("set-default-path ccache", "/l/d", "$build_environment->{'FOO'} = 'bar';"))
    script = ("use strict; use warnings; my $path = undef; my $build_environment = undef; "
              f"my $e = eval `cat {rc}`; die $@ unless defined $e; "
              "print \"$path\\n\"; print join(',', map {\"$_=$build_environment->{$_}\"} sort keys %$build_environment), \"\\n\";")
    out = call.run(["perl", "-e", script]).splitlines()
    assert out[0] == "/usr/lib/ccache:" + sbuild.DEFAULT_PATH
    assert out[1] == "CCACHE_DIR=/l/d/.ccache,FOO=bar"


# ---------------------------------------------------------------------------------------------
# Setup scripts
# ---------------------------------------------------------------------------------------------


def test_setup_scripts_names_order_banner():
    scripts = sbuild.setup_scripts(dist.DEFAULT_SBUILD_SETUP_BLOCKS, custom_script="echo custom")
    assert [n for n, _ in scripts] == ["000_apt-setup", "001_apt-update", "002_ccache", "003_eatmydata",
                                       "004_chroot-setup-script"]
    for name, text in scripts:
        block = name[4:]
        assert text.startswith("#!")
        assert f'echo "MINI_BUILDD: {block}: ' in text
    assert scripts[-1][1].rstrip().endswith("echo custom")


def test_setup_scripts_content():
    scripts = dict(sbuild.setup_scripts("apt-no-check-valid-until apt-setup apt-update eatmydata"))
    setup = scripts["001_apt-setup"]
    assert "/etc/apt/trusted.gpg.d/mini-buildd-buildrequest.asc" in setup
    assert '"${MBD_CONFIG}/apt_sources.list" /etc/apt/sources.list' in setup
    assert '"${MBD_CONFIG}/apt_preferences" /etc/apt/preferences' in setup
    assert "ssl_cert" in setup and "ca-certificates" in setup
    update = scripts["002_apt-update"]
    assert "for mbd_timeout_s in 10 40 80 160 320" in update and "apt-cache policy" in update
    assert "Dpkg::Use-Pty=false" in update and "--force-confnew" in update
    assert 'Check-Valid-Until "false"' in scripts["000_apt-no-check-valid-until"]
    assert "/etc/apt/apt.conf.d/00mbd-$1" in scripts["000_apt-no-check-valid-until"]
    assert "/etc/ld.so.preload" in scripts["003_eatmydata"]


def test_setup_scripts_validation_and_custom():
    with pytest.raises(ValueError, match="Unknown"):
        sbuild.setup_scripts("apt-setup nope")
    with pytest.raises(ValueError, match="Duplicate"):
        sbuild.setup_scripts("apt-setup apt-setup")
    assert sbuild.setup_scripts("", custom_script="  \n") == []
    (name, text), = sbuild.setup_scripts([], custom_script="#!/usr/bin/python3\nprint(1)\n")  # pylint: disable=unbalanced-tuple-unpacking
    assert name == "000_chroot-setup-script" and text == "#!/usr/bin/python3\nprint(1)\n"
    (_, text), = sbuild.setup_scripts([], custom_script="#!/bin/bash\ntrue\n")  # pylint: disable=unbalanced-tuple-unpacking
    assert text.splitlines()[1].startswith('echo "MINI_BUILDD: chroot-setup-script:')


def test_setup_scripts_shell_syntax(tmp_path):
    """Every block is a syntactically valid POSIX shell script (dash and bash)."""
    scripts = sbuild.setup_scripts(" ".join(dist.SBUILD_SETUP_BLOCKS))
    assert len(scripts) == len(dist.SBUILD_SETUP_BLOCKS)
    for name, text in scripts:
        path = tmp_path / name
        path.write_text(text)
        for shell in ("dash", "bash"):
            if shutil.which(shell):
                call.run([shell, "-n", str(path)])


def test_apt_key_binary_dearmors(tmp_path):
    """The dearmor of the apt-key-binary block gives the same bytes as gpg --dearmor, per block."""
    if not shutil.which("gpg"):
        pytest.skip("gpg not installed")
    from mini_buildd.tools import gnupg
    with gnupg.TmpKeyring() as keyring:
        keyring.add_key_file("/usr/share/keyrings/debian-archive-keyring.gpg")
        armored = keyring.export(armor=True)
        binary = keyring.export()
    assert sbuild.DEARMOR_SH in sbuild.SETUP_BLOCKS["apt-key-binary"]
    asc = tmp_path / "keys.asc"
    asc.write_text(armored + armored)  # two armor blocks, as concatenated key exports are
    out = tmp_path / "ours.gpg"
    call.run(["sh", "-c", sbuild.DEARMOR_SH + f'\nmbd_dearmor "{asc}" >"{out}"'])
    assert len(binary) > 1000
    assert out.read_bytes() == binary + binary


def test_write_files(tmp_path):
    paths = sbuild.write_files(tmp_path, "1;\n", sbuild.setup_scripts("apt-setup"))
    assert (tmp_path / ".sbuildrc").read_text() == "1;\n"
    assert paths == [tmp_path.resolve() / ".setup.d" / "000_apt-setup"]
    assert os.access(paths[0], os.X_OK)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def _cmd(**kwargs):
    args = {"setup_scripts": ["/h/var/shared/builds/k/.setup.d/000_apt-setup"], "sbuild_version": (0, 85, 0)}
    args.update(kwargs)
    return sbuild.command(DIST, ARCH, CHROOT, "p_1.0.dsc", **args)


def test_command_basics():
    argv = _cmd(build_dep_resolver="aptitude", arch_all=True, add_depends=["foo (>= 1)", " "], keyid="ABCD", debug=True)
    assert argv[:9] == ["sbuild", "--chroot-mode", "schroot", "--dist", DIST, "--arch", ARCH, "--chroot", CHROOT]
    for expected in ("--build-dep-resolver", "aptitude", "--nolog", "--log-external-command-output",
                     "--log-external-command-error", "--arch-all", "--add-depends=foo (>= 1)", "--debug", "--keyid=ABCD",
                     "--chroot-setup-commands=/h/var/shared/builds/k/.setup.d/000_apt-setup"):
        assert expected in argv
    assert argv.count("--add-depends= ") == 0
    assert argv[-1] == "p_1.0.dsc"
    assert "--no-arch-all" in _cmd() and "--keyid" not in " ".join(_cmd())


def test_command_qa_modes():
    argv = _cmd(lintian_mode="ERRFAIL", lintian_options="--info --suppress-tags a,b", lintian_warnfail_options="--fail-on error,warning")
    assert "--run-lintian" in argv and "--lintian-opts=--info --suppress-tags a,b" in argv
    assert "--lintian-opts=--fail-on error,warning" not in argv
    argv = _cmd(lintian_mode=dist.QAMode.WARNFAIL, lintian_options="--info", lintian_warnfail_options="--fail-on error,warning")
    assert argv.index("--lintian-opts=--info") < argv.index("--lintian-opts=--fail-on error,warning")
    assert "--run-lintian" in _cmd(lintian_mode="ignore")
    argv = _cmd(lintian_mode="disabled")
    assert "--no-run-lintian" in argv and not any(a.startswith("--lintian-opts") for a in argv)
    assert {"--no-run-piuparts", "--no-run-autopkgtest"} <= set(argv)

    argv = _cmd(piuparts_mode="errfail", piuparts_options="--info", piuparts_root_args="sudo", autopkgtest_mode="warnfail")
    assert "--run-piuparts" in argv and "--piuparts-opts=--info" in argv and "--piuparts-root-args=sudo" in argv
    assert (f"--piuparts-opts=--schroot {CHROOT} --dpkg-force-confdef --warn-on-debsums-errors "
            "--warn-on-leftovers-after-purge --warn-on-others --keep-sources-list") in argv
    assert "--run-autopkgtest" in argv and f"--autopkgtest-opts=-- schroot {CHROOT}" in argv
    assert "--autopkgtest-root-args=" in argv
    with pytest.raises(ValueError):
        _cmd(lintian_mode="sometimes")
    with pytest.raises(ValueError):
        _cmd(build_dep_resolver="magic")


@pytest.mark.parametrize("version, lintian, expected, unexpected", [
    ((0, 85, 0), "errfail", ["--no-apt-update"], ["--apt-update", "--no-apt-distclean"]),
    ((0, 89, 3), "errfail", ["--no-apt-update"], ["--apt-update", "--no-apt-distclean"]),
    ((0, 91, 6), "errfail", ["--apt-update"], ["--no-apt-update", "--no-apt-distclean"]),
    ((0, 91, 10), "errfail", ["--apt-update", "--no-apt-distclean"], ["--no-apt-update"]),
    ((0, 91, 10), "disabled", ["--no-apt-update"], ["--apt-update", "--no-apt-distclean"]),
    (None, "warnfail", ["--apt-update"], ["--no-apt-update", "--no-apt-distclean"]),
    (None, "disabled", ["--no-apt-update"], ["--apt-update"]),
])
def test_command_apt_update_per_sbuild_version(version, lintian, expected, unexpected):
    argv = _cmd(sbuild_version=version, lintian_mode=lintian)
    for option in expected:
        assert option in argv
    for option in unexpected:
        assert option not in argv


def test_command_setup_script_paths():
    assert "--chroot-setup-commands=/a%%b/000_x" in _cmd(setup_scripts=["/a%b/000_x"])
    with pytest.raises(sbuild.SbuildError, match="white space"):
        _cmd(setup_scripts=["/a b/000_x"])


def test_parse_version():
    assert sbuild.parse_version("sbuild (Debian sbuild) 0.85.0 (04 January 2023)") == (0, 85, 0)
    assert sbuild.parse_version("sbuild (Debian sbuild) 0.91.10 (27 June 2026)") == (0, 91, 10)
    assert sbuild.parse_version("0.88") == (0, 88, 0)
    assert sbuild.parse_version("no version") is None


def test_environment(tmp_path):
    env = sbuild.environment(tmp_path, gnupg_home="/h/.gnupg", deb_build_options=" nocheck  parallel=2 ", deb_build_profiles="")
    assert env == {"HOME": str(tmp_path.resolve()), "GNUPGHOME": "/h/.gnupg", "DEB_BUILD_OPTIONS": "nocheck parallel=2"}


def test_chroot_preinstall_packages():
    assert sbuild.chroot_preinstall_packages() == ["fakeroot", "eatmydata", "ccache", "lintian"]
    assert "aptitude" in sbuild.chroot_preinstall_packages("aptitude")
    assert "lintian" not in sbuild.chroot_preinstall_packages(lintian=False)


def test_chroot_preinstall_script(tmp_path):
    script = sbuild.chroot_preinstall_script(["lintian", "eatmydata"])
    assert "for p in lintian eatmydata; do" in script
    assert "--force-confdef" in script and "--force-confold" in script and "--no-install-recommends" in script
    path = tmp_path / "pre.sh"
    path.write_text(script)
    call.run(["dash", "-n", str(path)])
    # Only installed packages: a quick no-op (no apt-get run, no output)
    path.write_text(sbuild.chroot_preinstall_script(["dpkg", "coreutils"]))
    assert call.run(["sh", str(path)]) == ""


# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------

SUMMARY_085 = """\
Status: this line is build output, not the summary
+------------------------------------------------------------------------------+
| Summary                                                                      |
+------------------------------------------------------------------------------+

Build Architecture: amd64
Build-Space: 120
Build-Time: 2
Distribution: bookworm-test-unstable
Lintian: pass
Package-Time: 13
Space: 120
Status: successful
Version: 1.0
--------------------------------------------------------------------------------
Finished at 2026-11-22T02:55:59Z
Build needed 00:00:13, 120k disk space
"""

SUMMARY_091 = """\
+------------------------------------------------------------------------------+
| Summary                                      Sun, 22 Nov 2026 02:57:02 +0000 |
+------------------------------------------------------------------------------+

Autopkgtest: no tests
Build-Space: n/a
Build-Time: 0
Fail-Stage: abort
Lintian: successful (worst tag: warn)
Piuparts: fail
Status: failed
--------------------------------------------------------------------------------
"""


def test_parse_summary():
    assert sbuild_log.parse_summary(SUMMARY_085) == {"Build-Space": "120", "Build-Time": "2", "Lintian": "pass",
                                                     "Package-Time": "13", "Space": "120", "Status": "successful"}
    assert sbuild_log.parse_summary(SUMMARY_091) == {"Autopkgtest": "no tests", "Build-Space": "n/a", "Build-Time": "0",
                                                     "Lintian": "successful", "Piuparts": "fail", "Status": "failed"}
    full = sbuild_log.parse_summary(SUMMARY_091, keys=None, full=True)
    assert full["Lintian"] == "successful (worst tag: warn)" and full["Fail-Stage"] == "abort"
    # the last summary counts; no summary gives {}
    assert sbuild_log.parse_summary(SUMMARY_091 + SUMMARY_085)["Status"] == "successful"
    assert sbuild_log.parse_summary("E: sbuild died early\n") == {}


LINTIAN_SECTION = """\
E: before-the-section: must-not-count
+------------------------------------------------------------------------------+
| Run lintian                                                                  |
+------------------------------------------------------------------------------+

/usr/bin/lintian --info mbd-x_1.0_amd64.changes
E: mbd-x: no-copyright-file
N:
N:   The binary package does not contain a copyright file.
W: mbd-x source: some-warning-tag [debian/control]
I: mbd-x: an-info-tag
+------------------------------------------------------------------------------+
| Post Build Chroot                                                            |
+------------------------------------------------------------------------------+
E: after: not-lintian-any-more
"""


#: sbuild 0.85 (bookworm) with lintian 2.116: lintian runs inside the dependencies section, and its
#: exit status 2 (tags at --fail-on) is reported as a runtime error (from a real build log).
LINTIAN_085 = """\
+------------------------------------------------------------------------------+
| Install lintian build dependencies (aptitude-based resolver)                 |
+------------------------------------------------------------------------------+

Building tag database...
Running lintian...
N:
E: mbd-qa-lintian: no-copyright-file
N:
N:   Each binary package has to include a plain file
N:
W: mbd-qa-lintian source: no-debian-copyright-in-source
N:

E: Lintian run failed (runtime error)

+------------------------------------------------------------------------------+
| Post Build                                                                   |
+------------------------------------------------------------------------------+
"""


def test_lintian_085_tags_and_status():
    tags = sbuild_log.parse_lintian_tags(LINTIAN_085)
    assert tags == ["E: mbd-qa-lintian: no-copyright-file", "W: mbd-qa-lintian source: no-debian-copyright-in-source"]
    assert sbuild_log.lintian_status({"Status": "successful", "Lintian": "error"}, LINTIAN_085, tags) == \
        {"Status": "successful", "Lintian": "fail"}
    # A real runtime error (no tags), or another status, stays as sbuild said.
    assert sbuild_log.lintian_status({"Lintian": "error"}, LINTIAN_085, []) == {"Lintian": "error"}
    assert sbuild_log.lintian_status({"Lintian": "pass"}, LINTIAN_085, tags) == {"Lintian": "pass"}
    assert sbuild_log.lintian_status({"Lintian": "error"}, LINTIAN_SECTION, tags) == {"Lintian": "error"}


def test_parse_lintian_tags():
    assert sbuild_log.parse_lintian_tags(LINTIAN_SECTION) == ["E: mbd-x: no-copyright-file",
                                                              "W: mbd-x source: some-warning-tag [debian/control]"]
    assert sbuild_log.parse_lintian_tags(SUMMARY_085) == [] and sbuild_log.parse_lintian_tags(None) == []
    flood = LINTIAN_SECTION.replace("E: mbd-x: no-copyright-file", "\n".join(f"E: mbd-x: tag-{i} {'x' * 500}" for i in range(50)))
    tags = sbuild_log.parse_lintian_tags(flood)
    assert len(tags) == sbuild_log.MAX_LINTIAN_TAGS and all(len(t) == sbuild_log.MAX_LINTIAN_TAG_LENGTH for t in tags)
    assert sbuild_log.parse_summary("") == {}


def test_session_of():
    line = "I: NOTICE: Log filtering will replace 'var/run/schroot/mount/mini-buildd-bookworm-amd64-5ce88738-491e' with '<<CHROOT>>'"
    assert sbuild.session_of("x\n" + line + "\n") == "mini-buildd-bookworm-amd64-5ce88738-491e"
    assert sbuild.session_of("A=b\nSCHROOT_SESSION_ID=mini-buildd-bookworm-amd64-be65\nC=d\n") == "mini-buildd-bookworm-amd64-be65"
    assert sbuild.session_of("nothing") is None


def test_sessions_of():
    argvs = [["/usr/bin/perl", "/usr/bin/sbuild", "--chroot", "mini-buildd-bookworm-amd64"],
             ["schroot", "-d", "/build/x", "-c", "mini-buildd-bookworm-amd64-1234", "--run-session", "-q", "-u", "root", "--", "sleep", "1"],
             ["/usr/bin/schroot", "--chroot=session:s2", "--run-session", "--", "true"],
             ["schroot", "-c", "s3", "--end-session"],
             []]
    assert sbuild.sessions_of(argvs) == {"mini-buildd-bookworm-amd64-1234", "s2"}


def test_call_stop_kills_descendants_in_other_sessions(tmp_path):
    """call.stop(): SIGTERM ignored -> SIGKILL to the process and to a descendant that made its own session."""
    script = "trap '' TERM; setsid sleep 300 & echo started; wait"
    proc = call.popen(["sh", "-c", script], output=tmp_path / "out")
    for _ in range(100):
        if (tmp_path / "out").read_text().strip() == "started" and call.descendants(proc.pid):
            break
        time.sleep(0.05)
    children = call.descendants(proc.pid)
    assert children
    start = time.monotonic()
    killed = call.stop(proc, grace=0.5)
    assert 0.4 < time.monotonic() - start < 10
    assert ["setsid", "sleep", "300"] in killed or ["sleep", "300"] in killed
    assert proc.returncode == -9
    time.sleep(0.2)
    assert not [pid for pid in children if call.cmdline(pid)]
    # a process that ends on SIGTERM is not killed
    proc = call.popen(["sleep", "300"], output=tmp_path / "out2")
    assert call.stop(proc, grace=5) == [] and proc.returncode == -15


# ---------------------------------------------------------------------------------------------
# Real builds
# ---------------------------------------------------------------------------------------------

def _chroot_listed():
    try:
        return f"chroot:{CHROOT}" in schroot.list_chroots()
    except call.CallError:
        return False


def _shared_dir():
    """A directory the chroot's schroot fstab binds at the same path (the instance's var/shared)."""
    try:
        conf = schroot.conf_path(CHROOT).read_text()
        fstab = re.search(r"^setup\.fstab=(.*)$", conf, re.M).group(1).strip()
        lines = (pathlib.Path("/etc/schroot") / fstab).read_text().splitlines()
    except (OSError, AttributeError):
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 4 and not line.startswith("#") and fields[0] == fields[1] and "bind" in fields[3] \
           and not fields[0].startswith(("/proc", "/sys", "/dev")) and os.path.isdir(fields[0]):
            return pathlib.Path(fields[0])
    return None


def _real_build_skip_reason():
    if os.geteuid() != 0:
        return "needs root"
    if not shutil.which("sbuild") or not shutil.which("schroot"):
        return "sbuild/schroot not installed"
    if not _chroot_listed():
        return f"'schroot -l' does not list chroot:{CHROOT} (the e2e fixture or setup creates it)"
    if _shared_dir() is None:
        return f"the schroot fstab of {CHROOT} binds no directory at the same path (no var/shared)"
    return None


needs_chroot = pytest.mark.skipif(_real_build_skip_reason() is not None, reason=str(_real_build_skip_reason()))


@pytest.fixture(autouse=True)
def _other_sbuild(monkeypatch):
    if os.environ.get("MBD_TEST_SBUILD"):
        monkeypatch.setattr(sbuild, "SBUILD", os.environ["MBD_TEST_SBUILD"])


@pytest.fixture
def build_dir():
    """A build dir below the chroot's shared dir (so the setup scripts are visible in the chroot)."""
    shared = _shared_dir()
    if shared is None:  # the chroot went away since collection
        pytest.skip(str(_real_build_skip_reason()))
    parent = shared / "builds" if (shared / "builds").is_dir() else shared
    path = pathlib.Path(tempfile.mkdtemp(prefix="test-sbuild-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


RULES = "#!/usr/bin/make -f\n%:\n\tdh $@\n"
RULES_FAIL = RULES + "\noverride_dh_auto_build:\n\techo 'MBD-TEST: failing on purpose'; exit 1\n"
RULES_SLOW = RULES + "\noverride_dh_auto_build:\n\techo 'MBD-TEST: sleeping'; sleep 600\n"

CONTROL = """\
Source: {name}
Section: misc
Priority: optional
Maintainer: Mini Buildd Test <test@mini-buildd.test>
Build-Depends: debhelper-compat (= 13)
Standards-Version: 4.6.2
Rules-Requires-Root: no

Package: {name}
Architecture: all
Depends: ${{misc:Depends}}
Description: mini-buildd sbuild wrapper test package
 A tiny native package built by the mini-buildd sbuild integration test.
 It only ships one small text file.
"""

COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: {name}

Files: *
Copyright: 2024 Mini Buildd Test <test@mini-buildd.test>
License: GPL-2+
 This program is free software; you can redistribute it and/or modify it under the terms of the
 GNU General Public License as published by the Free Software Foundation; either version 2 of
 the License, or (at your option) any later version.
 .
 On Debian systems, the full text of the GNU General Public License version 2 can be found in
 the file '/usr/share/common-licenses/GPL-2'.
"""


def make_source(directory, name, rules=RULES, version="1.0", distribution=DIST):
    """Create a native source package in ``directory``; return the .dsc name."""
    tree = directory / f"{name}-{version}"
    (tree / "debian" / "source").mkdir(parents=True)
    (tree / "hello.txt").write_text("Hello from mini-buildd.\n")
    (tree / "debian" / "control").write_text(CONTROL.format(name=name))
    (tree / "debian" / "changelog").write_text(
        f"{name} ({version}) {distribution}; urgency=medium\n\n  * Test build.\n\n"
        " -- Mini Buildd Test <test@mini-buildd.test>  Mon, 01 Jan 2024 00:00:00 +0000\n")
    (tree / "debian" / "copyright").write_text(COPYRIGHT.format(name=name))
    (tree / "debian" / "source" / "format").write_text("3.0 (native)\n")
    (tree / "debian" / "install").write_text(f"hello.txt usr/share/{name}/\n")
    (tree / "debian" / "rules").write_text(rules)
    (tree / "debian" / "rules").chmod(0o755)
    call.run(["dpkg-source", "-b", tree.name], cwd=directory)
    shutil.rmtree(tree)
    return f"{name}_{version}.dsc"


def write_config(build_dir, apt_keys=""):
    """The buildrequest's ``.config/`` (upstream §1.5), archives from the host's APT sources."""
    archives = [u for u in dist.archives_from_apt_sources() if u.rstrip("/").endswith("/debian")]
    if not archives:
        pytest.skip("No Debian archive in the host's APT sources")
    config = build_dir / ".config"
    config.mkdir()
    (config / "apt_sources.list").write_text(f"# mbd-test-marker: sources from .config\ndeb {archives[0]} {CODENAME} main\n")
    (config / "apt_preferences").write_text(f"Package: *\nPin: release n={CODENAME}\nPin-Priority: 500\n")
    (config / "apt_keys").write_text(apt_keys)
    (config / "ssl_cert").write_text("")
    (config / "chroot_setup_script").write_text("")
    (config / "sbuildrc_snippet").write_text("")


def prepare(build_dir, name, rules=RULES, lintian_mode="disabled", setup_blocks=dist.DEFAULT_SBUILD_SETUP_BLOCKS,
            custom_script="", apt_keys=""):
    """Source package, .config, .sbuildrc and setup scripts as the builder makes them; return argv."""
    dsc = make_source(build_dir, name, rules)
    write_config(build_dir, apt_keys)
    libdir = build_dir / "libdir"
    libdir.mkdir()
    paths = sbuild.write_files(build_dir, sbuild.sbuildrc(dist.DEFAULT_SBUILD_CONFIG_BLOCKS, libdir),
                               sbuild.setup_scripts(setup_blocks, custom_script))
    return sbuild.command(DIST, ARCH, CHROOT, dsc, setup_scripts=paths, arch_all=True, lintian_mode=lintian_mode,
                          lintian_options=dist.DEFAULT_LINTIAN_EXTRA_OPTIONS,
                          lintian_warnfail_options=dist.DEFAULT_LINTIAN_WARNFAIL_OPTIONS)


def build(build_dir, argv, **kwargs):
    """Run sbuild ``argv`` in ``build_dir``; return (exit code, build log text, parsed summary)."""
    log = build_dir / "build.log"
    start = time.monotonic()
    rc = sbuild.run(build_dir, argv, sbuild.environment(build_dir), log, **kwargs)
    text = log.read_text(errors="replace")
    print(f"sbuild exit {rc} after {time.monotonic() - start:.1f}s: {sbuild.shell_command(argv)}")
    return rc, text, sbuild_log.parse_summary(text)


def _no_session_left(text):
    session = sbuild.session_of(text)
    assert session, "sbuild log names no schroot session"
    assert session not in schroot.list_sessions()


def _armored_debian_keys():
    from mini_buildd.tools import gnupg
    with gnupg.TmpKeyring() as keyring:
        keyring.add_key_file("/usr/share/keyrings/debian-archive-keyring.gpg")
        return keyring.export(armor=True)


@pytest.mark.slow
@needs_chroot
def test_build_lintian_disabled(build_dir):
    argv = prepare(build_dir, "mbd-test-nolintian", lintian_mode="disabled",
                   setup_blocks="apt-setup apt-update ccache eatmydata show-sbuildrc",
                   custom_script="#!/bin/sh -e\necho MBD-TEST-CUSTOM-SCRIPT-RAN\n", apt_keys=_armored_debian_keys())
    assert "--no-apt-update" in argv
    rc, text, summary = build(build_dir, argv)
    assert rc == 0, text[-3000:]
    assert summary["Status"] == "successful"
    assert "Lintian" not in summary
    assert (build_dir / "mbd-test-nolintian_1.0_all.deb").is_file()
    assert (build_dir / f"mbd-test-nolintian_1.0_{ARCH}.changes").is_file()
    # The setup scripts ran in the chroot and read the build dir's .config there
    for block in ("apt-setup", "apt-update", "ccache", "eatmydata", "show-sbuildrc", "chroot-setup-script"):
        assert f"MINI_BUILDD: {block}: " in text
    assert "# mbd-test-marker: sources from .config" in text
    assert "Installed APT keys as /etc/apt/trusted.gpg.d/mini-buildd-buildrequest.asc" in text
    assert "'CCACHE_DIR' =>" in text  # show-sbuildrc
    assert "MBD-TEST-CUSTOM-SCRIPT-RAN" in text
    assert text.index("MINI_BUILDD: show-sbuildrc") < text.index("MBD-TEST-CUSTOM-SCRIPT-RAN")
    assert "Package files:" in text  # apt-cache policy after apt-get update
    _no_session_left(text)


@pytest.mark.slow
@needs_chroot
def test_build_lintian_errfail(build_dir):
    argv = prepare(build_dir, "mbd-test-lintian", lintian_mode="errfail")
    rc, text, summary = build(build_dir, argv)
    assert rc == 0, text[-3000:]
    assert summary["Status"] == "successful"
    assert summary.get("Lintian") in ("pass", "info", "successful"), text[-4000:]
    assert dist.sbuild_check_passes(summary["Lintian"], dist.QAMode.ERRFAIL)
    assert (build_dir / "mbd-test-lintian_1.0_all.deb").is_file()
    assert (build_dir / f"mbd-test-lintian_1.0_{ARCH}.changes").is_file()
    assert "Running lintian" in text
    _no_session_left(text)


@pytest.mark.slow
@needs_chroot
def test_build_failing(build_dir):
    argv = prepare(build_dir, "mbd-test-fail", RULES_FAIL, lintian_mode="errfail", setup_blocks="apt-setup apt-update")
    rc, text, summary = build(build_dir, argv)
    assert rc != 0
    assert summary["Status"] in ("failed", "attempted")
    assert "MBD-TEST: failing on purpose" in text
    assert not list(build_dir.glob("*.deb"))
    _no_session_left(text)


def _run_in_thread(build_dir, argv, **kwargs):
    result = {}

    def target():
        result["rc"], result["text"], result["summary"] = build(build_dir, argv, **kwargs)
    thread = threading.Thread(target=target)
    thread.start()
    return thread, result


def _wait_for_log(build_dir, marker, thread, seconds=300):
    log = build_dir / "build.log"
    end = time.monotonic() + seconds
    while time.monotonic() < end and thread.is_alive():
        if log.exists() and marker in log.read_text(errors="replace"):
            return
        time.sleep(0.5)
    pytest.fail(f"'{marker}' did not appear in the build log")


@pytest.mark.slow
@needs_chroot
def test_build_cancel(build_dir):
    """Cancel while the package builds: sbuild is terminated and cleans up its session."""
    argv = prepare(build_dir, "mbd-test-cancel", RULES_SLOW, setup_blocks="apt-setup apt-update")
    cancel = threading.Event()
    thread, result = _run_in_thread(build_dir, argv, cancel_event=cancel)
    _wait_for_log(build_dir, "MBD-TEST: sleeping", thread)
    canceled_at = time.monotonic()
    cancel.set()
    thread.join(120)
    assert not thread.is_alive()
    print(f"sbuild stopped {time.monotonic() - canceled_at:.1f}s after cancel")
    assert result["rc"] != 0
    assert "MINI_BUILDD: sbuild canceled" in result["text"]
    assert result["summary"].get("Status", "failed") != "successful"
    assert not list(build_dir.glob("*.deb"))
    _no_session_left(result["text"])


@pytest.mark.slow
@needs_chroot
def test_build_timeout_kill(build_dir):
    """A timeout without grace: sbuild is killed with its process group; we end the session it
    left behind. (60 s: sbuild has its session by then, the package build sleeps 600 s.)"""
    argv = prepare(build_dir, "mbd-test-kill", RULES_SLOW, setup_blocks="apt-setup apt-update")
    thread, result = _run_in_thread(build_dir, argv, timeout=60, kill_after=0)
    thread.join(240)
    assert not thread.is_alive()
    assert result["rc"] != 0
    assert "MINI_BUILDD: sbuild timed out after 60s (killed)" in result["text"]
    assert "MBD-TEST: sleeping" in result["text"]
    _no_session_left(result["text"])
    assert not [p for p in call.run(["ps", "-eo", "args"]).splitlines() if str(build_dir) in p or p == "sleep 600"]
