"""Test helper (issue #17, repository delivery): an instance without chroots whose ``test``
repository holds a real reprepro distribution with one small binary package, for
``tests/integration/test_delivery.py`` and ``bench/delivery``."""

import pathlib
import subprocess

from tests.helpers.daemon import free_port, in_home
from tests.helpers.setup_run import run_setup, WITHOUT_CHROOTS

#: The acceptance setup without its chroot (never create the shared chroot name here).
SETUP = WITHOUT_CHROOTS
DIST = "bookworm-test-unstable"
PACKAGE = "mbd-delivery"


def make_deb(workdir, name=PACKAGE, version="1.0", payload=b""):
    """Build ``name_version_all.deb`` with dpkg-deb in ``workdir``; return its path."""
    root = pathlib.Path(workdir) / f"{name}-{version}"
    (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: Test <t@example.org>\n"
        f"Section: misc\nPriority: optional\nDescription: delivery test package\n Served by mini-buildd.\n")
    doc = root / "usr" / "share" / "doc" / name
    doc.mkdir(parents=True, exist_ok=True)
    (doc / "README").write_bytes(b"delivery test package\n" + payload)
    deb = pathlib.Path(workdir) / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)],
                   check=True, capture_output=True)
    return deb


def include_deb(home, deb, dist=DIST):
    """``reprepro includedeb`` of ``deb`` into ``dist`` of repository ``test`` (exports and signs)."""
    in_home(home, "from mini_buildd.tools import reprepro\n"
                  "repo = models.Repository.objects.get(identity='test')\n"
                  f"reprepro.Reprepro(repo.mbd_path()).includedeb({dist!r}, {str(deb)!r})\n")


def make_instance(base, host="127.0.0.1"):
    """Set up ``base/home`` (no chroots) with one package in :data:`DIST`; return ``(home, http
    endpoint, port)`` (the daemon is not started)."""
    base = pathlib.Path(base)
    home = base / "home"
    http_port, ftp_port = free_port(host), free_port(host)
    http_ep, ftp_ep = f"tcp:interface={host}:port={http_port}", f"tcp:interface={host}:port={ftp_port}"
    run_setup(home, *SETUP, "--ftp-endpoint", ftp_ep, http_endpoint=http_ep, hostname=host, timeout=600)
    include_deb(home, make_deb(base))
    return home, http_ep, http_port


def repository_paths(dist=DIST, package=PACKAGE, version="1.0"):
    """URL paths (below ``/repositories/test/``) of the files apt fetches: name -> path."""
    return {
        "Release": f"dists/{dist}/Release",
        "InRelease": f"dists/{dist}/InRelease",
        "Packages": f"dists/{dist}/main/binary-amd64/Packages",
        "Packages.xz": f"dists/{dist}/main/binary-amd64/Packages.xz",
        ".deb": f"pool/main/{package[0]}/{package}/{package}_{version}_all.deb",
    }
