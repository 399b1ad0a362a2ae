"""Build confinement (issue #12 item 3), as the attack: a source package whose ``debian/rules``
tries to rewrite another build's setup script, plant files in another build's dir, the libdir
and ``var/shared``, through the real daemon, dput, sbuild and schroot. Each target is unchanged
after the build (which itself succeeds: the attack is made to run, and the log shows it did)."""

import os
import subprocess

import requests

from mini_buildd.tools import gnupg

from tests.helpers.packages import make_source_package, dput, wait_event

NAME, VERSION = "mbd-e2e-confine", "1.0~test12+1"
ORIGINAL = "#!/bin/sh\necho original setup script of another build\n"


def _attack_commands(targets):
    lines = ["id", "@echo LS-BEGIN; ls -la $(dir " + targets["victim_script"] + ") 2>&1 || true; echo LS-END"]
    for path in targets.values():
        lines.append(f"-echo 'pwned by {NAME}' > {path} && echo 'MBD-ATTACK: WROTE {path}'")
    lines.append(f"-echo 'pwned by {NAME}' > /proc/1/root{targets['victim_script']} && echo 'MBD-ATTACK: WROTE via /proc/1/root'")
    lines.append("@echo MBD-ATTACK-DONE")
    return lines


def _source_package(tmp_path, targets):
    g = gnupg.Gnupg(tmp_path / "gnupg")
    try:
        fpr = g.gen_secret_key("Key-Type: EdDSA\nKey-Curve: ed25519\nKey-Usage: sign\nExpire-Date: 0", "dev", "dev@example.org")
        changes = make_source_package(tmp_path, NAME, VERSION, "bookworm-test-unstable", build_commands=_attack_commands(targets))
        subprocess.run(["debsign", f"-k{fpr}", "--re-sign", str(changes)], env=dict(os.environ, GNUPGHOME=str(tmp_path / "gnupg")),
                       check=True, capture_output=True)
    finally:
        g.kill_agents()
    return changes


def test_build_cannot_write_outside_its_own_dir(instance, tmp_path):
    home = instance.home
    victim_dir = home / "var" / "shared" / "builds" / "victim-build"
    (victim_dir / ".setup.d").mkdir(parents=True)
    victim_script = victim_dir / ".setup.d" / "000_apt-setup"
    victim_script.write_text(ORIGINAL)
    libdir = home / "var" / "shared" / "libdir" / "bookworm" / "amd64"
    libdir.mkdir(parents=True, exist_ok=True)
    libdir_file = libdir / "victim"
    libdir_file.write_text("original libdir file\n")
    instance.own(victim_dir, libdir_file)
    targets = {
        "victim_script": victim_script,                              # another build's setup script
        "victim_new": victim_dir / "planted",                        # a new file in another build's dir
        "libdir_file": libdir_file,                                  # the chroot's persistent libdir
        "libdir_other_arch": home / "var" / "shared" / "libdir" / "planted",
        "shared": home / "var" / "shared" / "planted",               # the rest of var/shared
        "builds": home / "var" / "shared" / "builds" / "planted",
        "home": home / "planted",                                    # the home itself
    }
    try:
        changes = _source_package(tmp_path, {k: str(v) for k, v in targets.items()})
        dput_conf = requests.get(f"{instance.url}/mini_buildd/api/dput_conf/", timeout=10).json()
        cf = tmp_path / "dput.cf"
        cf.write_text(dput_conf)
        target = next(line.strip("[]") for line in dput_conf.splitlines() if line.startswith("[mini-buildd-"))
        proc = dput(cf, target, changes)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        event = wait_event(instance.url, ("INSTALLED", "FAILED", "REJECTED"), NAME, VERSION)
        logs = [p for p in home.rglob(f"{NAME}_*.buildlog") if p.is_file()]
        log = "\n".join(p.read_text(errors="replace") for p in logs)
        assert event["type"] == "INSTALLED", (event["extra"].get("error"), log[-3000:])
        assert "MBD-ATTACK-DONE" in log, "the attack did not run: this test could not have failed"

        assert victim_script.read_text() == ORIGINAL
        assert libdir_file.read_text() == "original libdir file\n"
        for key in ("victim_new", "libdir_other_arch", "shared", "builds", "home"):
            assert not targets[key].exists(), f"{key}: {targets[key]} was planted by the build"
        # (Writes to these paths may succeed inside the session: they land in its own throw-away
        # copy of the chroot, never on the host, which is what the checks above show.)
        # The other build's dir is not even visible in the chroot.
        listing = log.split("LS-BEGIN\n", 1)[1].split("LS-END", 1)[0]
        assert "000_apt-setup" not in listing, listing
    finally:
        subprocess.run(["rm", "-rf", str(victim_dir), str(libdir_file)] + [str(p) for p in targets.values()], check=False)
