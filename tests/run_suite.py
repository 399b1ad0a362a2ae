#!/usr/bin/python3
"""The whole test suite as ``make check`` runs it: seven pytest processes side by side.

Most of the suite's time is waiting for real tools (debootstrap, apt, sbuild builds, daemons
starting), so seven groups run concurrently on the two cores CI has:

- ``instance``: the end-to-end and browser tests sharing one bootstrapped instance (its chroot
  is ``mini-buildd-bookworm-amd64``);
- ``instance2``: more end-to-end tests on a second shared instance of their own, with the schroot
  prefix :data:`INSTANCE2_PREFIX` (``MBD_E2E_SCHROOT_PREFIX``; see :mod:`tests.helpers.instance`);
- ``peers``: the end-to-end tests with their own instances building for each other (remotes) or
  in unshare chroots (own addresses and schroot prefixes; also the unshare backend's integration
  test);
- ``platforms``: the instances of their own with several codenames (bookworm, trixie, sid) or
  architectures (amd64, i386, arm64 through qemu), and the one under concurrent uploads and a kill;
- ``unit``: the unit tests, in the environment of a Debian package build (the command and
  environment of ``debian/rules``' build-time test run: ``/usr/bin/python3``, a system ``PATH``
  and no writable ``HOME``), so the package build of tests/integration/test_debian_package.py
  need not run them a second time;
- ``host``: the integration tests (their chroots have other schroot names, their daemons other
  ports and homes), except :data:`HOST2`;
- ``host2``: the integration tests that make chroots or packages or run many daemons
  (:data:`HOST2`), the Debian package install test and the TLS instances.

Each group has its own pytest base temp dir (concurrent pytest runs would otherwise remove each
other's), its output goes to ``test-artifacts/check-GROUP.log`` and, line by line with the group
name in front, to standard output, with the slowest tests at the end. The exit code is the worst.
"""

import os
import pathlib
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYTHON = "/usr/bin/python3"
PACKAGE_INSTALL = "tests/e2e/test_package_install.py"
PEERS = ["tests/e2e/test_remotes.py", "tests/e2e/test_unshare_build.py", "tests/integration/test_unshare_backend.py"]
TLS = "tests/e2e/test_tls.py"
#: Instances of their own with several codenames or architectures (each with its chroots), and the
#: one under concurrent uploads and a kill.
PLATFORMS = ["tests/e2e/test_codenames.py", "tests/e2e/test_architectures.py", "tests/e2e/test_load_correctness.py"]
#: Shared-instance tests run on the second instance (their own schroot prefix), beside the first one's.
INSTANCE2 = ["tests/e2e/test_migration_gates.py", "tests/e2e/test_change_snapshots.py", "tests/e2e/test_port_watch.py",
             "tests/e2e/test_qa_piuparts_autopkgtest.py", "tests/e2e/test_debug_build.py", "tests/e2e/test_keyring_apt.py",
             "tests/e2e/test_fault_injection.py", "tests/browser/test_layout.py"]
INSTANCE2_PREFIX = "mbd-e2e-b"

#: Integration tests that make chroots, tarballs or Debian packages: run beside the rest of ``host``.
HOST2 = ["tests/integration/test_chroot_backends.py", "tests/integration/test_chroot_backends_block.py",
         "tests/integration/test_setup.py", "tests/integration/test_debian_package.py",
         "tests/integration/test_root_helper.py", "tests/integration/test_cruft.py", "tests/integration/test_backup.py",
         "tests/integration/test_simulated_builders.py"]

GROUPS = {
    "instance": ["tests/e2e", "tests/browser", f"--ignore={PACKAGE_INSTALL}", f"--ignore={TLS}",
                 *[f"--ignore={p}" for p in PEERS + PLATFORMS + INSTANCE2]],
    "instance2": INSTANCE2,
    "peers": PEERS,
    "platforms": PLATFORMS,
    "unit": ["tests/unit"],
    "host": ["tests/integration", *[f"--ignore={p}" for p in HOST2 + PEERS]],
    "host2": [*HOST2, PACKAGE_INSTALL, TLS],
}
#: The environment of a Debian package build's test run (debian/rules: override_dh_auto_test).
PACKAGE_BUILD_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": "", "LC_ALL": "C.UTF-8",
                     "HOME": "/nonexistent/mini-buildd-build-home"}
#: Extra environment of a group.
ENV = {"instance2": {"MBD_E2E_SCHROOT_PREFIX": INSTANCE2_PREFIX}, "unit": PACKAGE_BUILD_ENV}


def _pump(name, stream, log, lock):
    for line in iter(stream.readline, b""):
        log.write(line)
        log.flush()
        with lock:
            sys.stdout.buffer.write(f"[{name}] ".encode() + line)
            sys.stdout.flush()


def main(argv):
    """Run the test groups side by side (logs in test-artifacts/), list the slowest tests; exit status."""
    extra = argv[1:]
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    lock = threading.Lock()
    runs = {}
    start = time.monotonic()
    for name, args in GROUPS.items():
        if not (ROOT / args[0]).exists():
            continue
        argv_group = [PYTHON, "-m", "pytest", "-ra", "--durations=15", f"--basetemp=/tmp/mbd-check-{name}", *args, *extra]
        log = open(artifacts / f"check-{name}.log", "wb")  # pylint: disable=consider-using-with
        proc = subprocess.Popen(argv_group, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
                                env=dict(os.environ, PYTHONUNBUFFERED="1", **ENV.get(name, {})))
        thread = threading.Thread(target=_pump, args=(name, proc.stdout, log, lock), daemon=True)
        thread.start()
        runs[name] = (proc, thread, log)
    codes = {}
    for name, (proc, thread, log) in runs.items():
        codes[name] = proc.wait()
        thread.join()
        log.close()
        print(f"[{name}] pytest exit code {codes[name]} after {time.monotonic() - start:.0f} s", flush=True)
    # Each group's failures (pytest's short summary lines) and its summary line, last: what a CI
    # log that keeps only the end of the output needs to tell which test failed and why.
    for name in runs:
        lines = (artifacts / f"check-{name}.log").read_text(errors="replace").rstrip().splitlines()
        for line in failure_lines(lines):
            print(f"{name}: {line}")
        print(f"{name}: {lines[-1] if lines else '(no output)'}")
    return max(codes.values(), default=1)


def failure_lines(lines, most=10):
    """pytest's ``FAILED``/``ERROR`` short summary lines among ``lines`` (at most ``most``, then a count)."""
    found = [line for line in lines if line.startswith(("FAILED ", "ERROR "))]
    return found[:most] + ([f"... and {len(found) - most} more"] if len(found) > most else [])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
