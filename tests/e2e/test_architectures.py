"""Architectures end to end (issue #15 "Architectures", upstream §2.4 ArchitectureOption): one real
daemon on 127.0.0.22 (own home, schroot prefix ``mbd-arPID``) with the distribution bookworm for
amd64 + i386 (+ arm64 when ``arch-test arm64`` says the host runs it, through qemu-user-static and
binfmt_misc), a Dir chroot for each, repository ``test``. amd64 builds arch:all
(``build_architecture_all``); the last architecture (arm64, else i386) is made optional; lintian is off (tests/e2e/test_qa_* cover it). An
architecture ``arch-test`` refuses is left out; the module is skipped on a host other than amd64
or when neither i386 nor arm64 runs. debootstrap makes the arm64 chroot in one go (no
``--foreign``): with qemu registered with binfmt's F flag, its second stage runs through qemu.

- an upload with an arch:any binary (a small C program) and an arch:all binary builds on every
  architecture; only amd64 builds the arch:all binary (the other buildresults list no ``_all.deb``),
  the pool has the arch:all .deb once and the arch:any .deb for each architecture: INSTALLED;
- an upload whose ``debian/rules`` fails only when ``DEB_HOST_ARCH`` is the optional architecture is
  INSTALLED with the other architectures; the event's buildresult of the optional one says failed;
- arm64 through qemu: the arm64 .deb of the first upload holds an aarch64 ELF executable, which runs
  (binfmt) and says hello. Skipped with ``arch-test``'s reason when the host cannot run arm64.

The module owns its instance: one setup, one upload per test. At teardown the daemon is stopped,
the chroots are removed and no schroot config, session or mount of its prefix is left.
Durations of the setup and of each build are printed (``-s``) and written to
``BASETEMP/architectures-durations.txt``.
"""

# pylint: disable=redefined-outer-name  # pytest passes each fixture as the parameter of its name

import os
import pathlib
import subprocess
import tarfile
import textwrap
import time

import pytest

from tests.helpers import host_archive
from tests.helpers.packages import MAINTAINER, source_paragraph, write_dput_cf, dput, wait_event, now_iso
from tests.helpers.remote_instances import RemoteInstance, common_ports

HOST = "127.0.0.22"
CODENAME = "bookworm"
DIST = "bookworm-test-unstable"
V = "1.0~test12+1"
HELLO, OPTFAIL = "mbd-arch-hello", "mbd-arch-optfail"
ELF_MACHINE = {"amd64": 62, "i386": 3, "arm64": 183}  # e_machine: EM_X86_64, EM_386, EM_AARCH64

pytestmark = pytest.mark.slow


def arch_test(arch):
    """(host can run ``arch``, reason) from ``arch-test ARCH``."""
    try:
        proc = subprocess.run(["arch-test", arch], capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError:
        return False, "arch-test is not installed (package arch-test)"
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip() or f"arch-test {arch}: exit {proc.returncode}"


ARM64_OK, ARM64_REASON = arch_test("arm64")
I386_OK, I386_REASON = arch_test("i386")
ARCHS = ["amd64"] + (["i386"] if I386_OK else []) + (["arm64"] if ARM64_OK else [])
OPTIONAL = ARCHS[-1]

if host_archive.host_arch() != "amd64" or len(ARCHS) < 2:
    pytest.skip(f"needs an amd64 host that runs i386 or arm64 (host {host_archive.host_arch()}; {I386_REASON}; {ARM64_REASON})",
                allow_module_level=True)


# ------------------------------------------------------------------------------------------------ packages
#: debian/rules of the test packages: plain dpkg tools, no debhelper, so a build installs no build
#: dependency (build-essential is in every chroot), which matters most in the arm64 chroot under qemu.
RULES = """\
#!/usr/bin/make -f
include /usr/share/dpkg/architecture.mk
include /usr/share/dpkg/buildtools.mk
include /usr/share/dpkg/buildflags.mk
N := @NAME@
D := debian/$(N)
DD := debian/$(N)-data

build: build-arch build-indep
build-arch: $(N)
build-indep:

$(N): hello.c
@FAIL@\t$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ hello.c

# pkg dir: the package's doc files, its md5sums and control file, then the .deb
define package
\tinstall -d -m 0755 $(1)/DEBIAN $(1)/usr/share/doc/$(2)
\tinstall -m 0644 debian/copyright $(1)/usr/share/doc/$(2)/
\tgzip -9nc debian/changelog > $(1)/usr/share/doc/$(2)/changelog.gz
\tchmod 0644 $(1)/usr/share/doc/$(2)/changelog.gz
\tcd $(1) && find usr -type f | LC_ALL=C sort | xargs md5sum > DEBIAN/md5sums
\tdpkg-gencontrol -p$(2) -P$(1) -Tdebian/$(2).substvars
\tdpkg-deb --root-owner-group --build $(1) ..
endef

binary-arch: build-arch
\trm -rf $(D)
\tinstall -d -m 0755 $(D)/usr/bin
\tinstall -m 0755 --strip-program=$(STRIP) -s $(N) $(D)/usr/bin/
\tdpkg-shlibdeps -Tdebian/$(N).substvars $(D)/usr/bin/$(N)
\t$(call package,$(D),$(N))

binary-indep: build-indep
\trm -rf $(DD)
\tinstall -d -m 0755 $(DD)/usr/share/$(N)-data
\tinstall -m 0644 data.txt $(DD)/usr/share/$(N)-data/
\t$(call package,$(DD),$(N)-data)

binary: binary-arch binary-indep

clean:
\trm -rf $(N) $(D) $(DD) debian/files debian/*.substvars

.PHONY: build build-arch build-indep binary binary-arch binary-indep clean
"""


def make_arch_package(workdir, name, version, *, fail_on=None):
    """Native source ``name`` with binaries ``name`` (Architecture: any, a C hello in /usr/bin) and
    ``name-data`` (Architecture: all); ``fail_on``: its build fails when DEB_HOST_ARCH is that.
    Returns the ``_source.changes`` path."""
    workdir = pathlib.Path(workdir)
    src = workdir / f"{name}-{version.split('~')[0]}"
    (src / "debian" / "source").mkdir(parents=True)
    (src / "debian" / "control").write_text(source_paragraph(name) + textwrap.dedent(f"""\

        Package: {name}
        Architecture: any
        Depends: ${{shlibs:Depends}}
        Description: mini-buildd test package {name} (arch:any)
         A C program that says hello, made by the mini-buildd test suite.

        Package: {name}-data
        Architecture: all
        Description: mini-buildd test package {name} (arch:all)
         Data of {name}, made by the mini-buildd test suite.
        """))
    (src / "debian" / "changelog").write_text(f"{name} ({version}) {DIST}; urgency=medium\n\n  * Test upload.\n\n"
                                              f" -- {MAINTAINER}  Sun, 22 Nov 2026 00:00:00 +0000\n")
    fail = ""
    if fail_on:
        fail = (f"ifeq ($(DEB_HOST_ARCH),{fail_on})\n"
                f"\t@echo 'This package fails to build on {fail_on} only.'; false\nendif\n")
    (src / "debian" / "rules").write_text(RULES.replace("@NAME@", name).replace("@FAIL@", fail))
    os.chmod(src / "debian" / "rules", 0o755)
    (src / "debian" / "source" / "format").write_text("3.0 (native)\n")
    (src / "debian" / "copyright").write_text("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
                                              "Files: *\nCopyright: 2026 test\nLicense: GPL-2+\n")
    (src / "hello.c").write_text('#include <stdio.h>\nint main(void) { puts("hello from ' + name + '"); return 0; }\n')
    (src / "data.txt").write_text(f"data of {name} {version}\n")
    subprocess.run(["dpkg-buildpackage", "-S", "-d", "-us", "-uc", "-nc"], cwd=src, check=True, capture_output=True)
    return workdir / f"{name}_{version}_source.changes"


# ------------------------------------------------------------------------------------------------ instance
class Arches:
    """The module's instance and what the tests record."""

    def __init__(self, inst, workdir):
        self.inst, self.workdir = inst, workdir
        self.durations = {}
        self.results = {}

    def upload(self, name, **kwargs):
        """Upload ``name`` (see :func:`make_arch_package`), wait for its end; its terminal event."""
        work = self.workdir / name
        work.mkdir()
        changes = make_arch_package(work, name, V, **kwargs)
        cf = write_dput_cf(work / "dput.cf", "arches", f"{self.inst.host}:{self.inst.ftp_port}")
        since, start = now_iso(), time.monotonic()
        proc = dput(cf, "arches", changes)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        event = wait_event(self.inst.url, ("INSTALLED", "FAILED", "REJECTED"), name, V, timeout=3600, after=since)
        self.durations[f"upload {name} to {event['type']}"] = time.monotonic() - start
        for arch, result in event["extra"].get("buildresults", {}).items():
            self.durations[f"  build {name}/{arch}: sbuild Build-Time {result.get('sbuild_build_time')} s, "
                           f"Package-Time {result.get('sbuild_package_time')} s, {result.get('sbuild_status')}"] = None
        return event

    def events_dir(self, event, arch):
        """The events dir of ``event``'s buildresult for ``arch``."""
        return self.inst.home / "var" / "events" / event["extra"]["buildresults"][arch]["bkey"]

    def built_files(self, event, arch):
        """File names sbuild's ``.changes`` in ``arch``'s buildresult lists."""
        directory = self.events_dir(event, arch)
        tars = sorted(directory.glob("*_mini-buildd-buildresult_*.changes.tar"))
        assert len(tars) == 1, sorted(p.name for p in directory.iterdir())
        with tarfile.open(tars[0]) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith(".changes") and "/" not in m.name)
            text = tar.extractfile(member).read().decode()
        files, in_files = [], False
        for line in text.splitlines():
            if line.startswith("Files:"):
                in_files = True
            elif in_files and line.startswith(" "):
                files.append(line.split()[-1])
            else:
                in_files = False
        return files

    def pool(self, source):
        """The .deb files of ``source`` in the pool (debug symbol packages aside)."""
        return sorted(p.name for p in (self.inst.home / "repositories" / "test" / "pool").rglob(f"{source}*.deb")
                      if "-dbgsym_" not in p.name)

    def binary(self, name, arch, directory):
        """``/usr/bin/NAME`` of ``name``'s .deb for ``arch`` in the pool, extracted into ``directory``."""
        debs = list((self.inst.home / "repositories" / "test" / "pool").rglob(f"{name}_{V}_{arch}.deb"))
        assert len(debs) == 1, debs
        info = subprocess.run(["dpkg-deb", "-f", str(debs[0]), "Architecture"], capture_output=True, text=True, check=True)
        assert info.stdout.strip() == arch, info.stdout
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(directory)], check=True)
        return pathlib.Path(directory) / "usr" / "bin" / name

    def listing(self, source):
        """``{(package, arch): version}`` of ``source``'s binaries in the distribution (reprepro)."""
        out = subprocess.run(["reprepro", "--basedir", str(self.inst.home / "repositories" / "test"), "listfilter", DIST,
                              f"$Source (== {source})"], capture_output=True, text=True, check=True).stdout
        listing = {}
        for line in out.splitlines():  # "DIST|main|ARCH: PACKAGE VERSION"
            where, _, rest = line.partition(": ")
            package, version = rest.split()
            listing[(package, where.split("|")[2])] = version
        return listing


def _prefix_leftovers(prefix, home):
    """What of ``prefix``/``home`` is left on the host: schroot chroots and sessions, config files, mounts."""
    left = []
    for option in ("--all-chroots", "--all-sessions"):
        out = subprocess.run(["schroot", "--list", option], capture_output=True, text=True, check=False).stdout
        left += [f"schroot {line}" for line in out.splitlines() if prefix in line]
    for directory in (pathlib.Path("/etc/schroot/chroot.d"), pathlib.Path("/etc/schroot/mini-buildd")):
        if directory.is_dir():
            left += [str(p) for p in directory.iterdir() if prefix in p.name]
    left += [f"mount {line}" for line in pathlib.Path("/proc/mounts").read_text(encoding="utf-8").splitlines()
             if str(home) in line or prefix in line]
    return left


@pytest.fixture(scope="module")
def arches(tmp_path_factory):
    """The running instance: distribution bookworm for ARCHS (OPTIONAL optional), a chroot each."""
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests need root")
    root = tmp_path_factory.mktemp("architectures")
    http_port, ftp_port = common_ports([HOST])
    inst = RemoteInstance("arches", HOST, root, http_port, ftp_port, f"mbd-ar{os.getpid()}")
    state = Arches(inst, root / "work")
    state.workdir.mkdir()
    try:
        start = time.monotonic()
        chroots = ",".join(f"{CODENAME}:{a}" for a in ARCHS)
        inst.bootstrap("--archives-from-apt-sources", "--sources", CODENAME, "--distributions", f"{CODENAME}:{'+'.join(ARCHS)}",
                       "--repositories", f"test:Default:{CODENAME}", "--chroots", chroots)
        state.durations[f"setup (debootstrap or cached tarball, check) of {chroots}"] = time.monotonic() - start
        status = inst.django("for c in models.Chroot.mbd_concrete_all():\n"
                             "    print(c.architecture_id, c.mbd_status_display(), c.status_message.replace(chr(10), ' ')[:300])")
        assert all(line.split()[1].startswith("Active") for line in status.strip().splitlines()), status
        # lintian off: the QA tests exercise it; here it would only run once more per architecture,
        # minutes of perl under qemu for arm64.
        inst.django(f"d = models.Distribution.objects.get(base_source__codename={CODENAME!r})\n"
                    f"d.architectureoption_set.filter(architecture__name={OPTIONAL!r}).update(optional=True)\n"
                    "models.Distribution.objects.filter(pk=d.pk).update(lintian_mode=0)")
        inst.start()
        yield state
    finally:
        try:
            inst.teardown()
        finally:
            report = "\n".join(f"{seconds:8.1f} s  {what}" if seconds is not None else f"{'':10}  {what}"
                               for what, seconds in state.durations.items())
            (root.parent / "architectures-durations.txt").write_text(report + "\n", encoding="utf-8")
            print(f"\nDurations (architectures, {'+'.join(ARCHS)}):\n{report}")
    left = _prefix_leftovers(inst.schroot_prefix, inst.home)
    assert not left, left


def test_arch_all_is_built_on_amd64_only(arches, tmp_path):
    """Arch:any on every architecture, arch:all only on the architecture that builds it (amd64)."""
    event = arches.upload(HELLO)
    arches.results[HELLO] = event
    assert event["type"] == "INSTALLED", event["extra"].get("error")
    results = event["extra"]["buildresults"]
    assert sorted(results) == sorted(ARCHS)
    for arch in ARCHS:
        assert results[arch]["sbuild_status"] == "successful", (arch, results[arch])
        files = arches.built_files(event, arch)
        assert f"{HELLO}_{V}_{arch}.deb" in files, (arch, files)
        alls = [f for f in files if f.endswith("_all.deb")]
        assert alls == ([f"{HELLO}-data_{V}_all.deb"] if arch == "amd64" else []), (arch, files)
    assert arches.pool(HELLO) == sorted([f"{HELLO}-data_{V}_all.deb"] + [f"{HELLO}_{V}_{a}.deb" for a in ARCHS])
    listing = arches.listing(HELLO)
    for arch in ARCHS:
        assert listing[(HELLO, arch)] == V and listing[(f"{HELLO}-data", arch)] == V, listing
    assert not [k for k in listing if k[1] not in ARCHS + ["source"]], listing
    for arch in ARCHS:  # each arch:any .deb holds an executable for its architecture
        assert _elf_machine(arches.binary(HELLO, arch, tmp_path / arch)) == ELF_MACHINE[arch], arch


def test_optional_architecture_failure_does_not_fail_the_package(arches):
    """The build fails on OPTIONAL only: INSTALLED with the others; the event says OPTIONAL failed."""
    event = arches.upload(OPTFAIL, fail_on=OPTIONAL)
    assert event["type"] == "INSTALLED", event["extra"].get("error")
    results = event["extra"]["buildresults"]
    # sbuild's word for a build that failed in debian/rules is "attempted"
    assert results[OPTIONAL]["sbuild_status"] in ("attempted", "failed"), results[OPTIONAL]
    for arch in ARCHS:
        if arch != OPTIONAL:
            assert results[arch]["sbuild_status"] == "successful", (arch, results[arch])
    log = arches.events_dir(event, OPTIONAL) / pathlib.Path(results[OPTIONAL]["buildlog"]).name
    assert f"fails to build on {OPTIONAL} only" in log.read_text(errors="replace")
    assert arches.pool(OPTFAIL) == sorted([f"{OPTFAIL}-data_{V}_all.deb"]
                                          + [f"{OPTFAIL}_{V}_{a}.deb" for a in ARCHS if a != OPTIONAL])
    assert (OPTFAIL, OPTIONAL) not in arches.listing(OPTFAIL)


def _elf_machine(path):
    data = pathlib.Path(path).read_bytes()[:20]
    assert data[:4] == b"\x7fELF", data
    return int.from_bytes(data[18:20], "little")


@pytest.mark.skipif(not ARM64_OK, reason=f"host cannot run arm64: {ARM64_REASON}")
def test_foreign_arm64_builds_hello(arches, tmp_path):
    """The arm64 build of the first upload (in a qemu-user arm64 chroot): an aarch64 executable that runs."""
    event = arches.results.get(HELLO)
    if event is None:  # run alone
        event = arches.upload(HELLO)
    assert event["type"] == "INSTALLED", event["extra"].get("error")
    binary = arches.binary(HELLO, "arm64", tmp_path / "x")
    assert _elf_machine(binary) == ELF_MACHINE["arm64"]
    # It runs in a session of the arm64 chroot (its libc; binfmt hands it to qemu), which says aarch64.
    chroot = f"{arches.inst.schroot_prefix}-{CODENAME}-arm64"
    proc = subprocess.run(["schroot", "-c", chroot, "-d", "/", "--", "sh", "-c",
                           f"cat > /tmp/{HELLO} && chmod +x /tmp/{HELLO} && /tmp/{HELLO} && uname -m"],
                          input=binary.read_bytes(), capture_output=True, check=False)
    out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    assert proc.returncode == 0 and f"hello from {HELLO}" in out and "aarch64" in out, (proc.returncode, out, err)
