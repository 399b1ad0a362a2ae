"""Test helper: a clean chroot for apt client tests, i.e. a copy of the pristine debootstrap base
(the cached tarball the instance's chroot was made from, no ``trusted=yes`` anywhere), and a way
to run commands in it with plain ``chroot``."""

import shutil
import subprocess

import pytest

from mini_buildd.tools import chroot_backends
from tests.helpers import host_archive


@pytest.fixture
def clean_chroot(tmp_path):
    """A root tree unpacked from the cached bookworm debootstrap tarball (removed after)."""
    tarball = chroot_backends.cached_tarball_path("bookworm", host_archive.host_arch())
    if not tarball.exists():
        pytest.skip("no cached debootstrap tarball")
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["tar", "--extract", "--numeric-owner", "--file", str(tarball), "--directory", str(root)], check=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def in_chroot(root, *argv):
    """Run ``argv`` in ``root`` (non-interactive, C locale); the CompletedProcess (text)."""
    return subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"})
