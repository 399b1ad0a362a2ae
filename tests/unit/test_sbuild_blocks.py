"""The shell files of the sbuild wrapper (mini_buildd/tools/sbuild_blocks/*.sh) pass shellcheck.

Checked twice: every shipped file as it is (with its ``@KEY@`` placeholders), and every script
the wrapper generates from them (each setup block with its prelude, the copy-in script, the chroot
preinstall script). Any shellcheck finding, of any severity, fails. shellcheck must be installed
(Build-Depends: shellcheck <!nocheck>): a missing shellcheck is a failure, not a skip.
"""

import shutil
import subprocess

import pytest

from mini_buildd import dist
from mini_buildd.tools import sbuild

BLOCK_FILES = sorted(sbuild.BLOCKS_DIR.glob("*.sh"))


def _shellcheck(*paths):
    """Run shellcheck (POSIX sh) on ``paths``; fail the test with its output on any finding."""
    executable = shutil.which("shellcheck")
    assert executable, "shellcheck is not installed (apt-get install shellcheck): the shell blocks can't be checked"
    result = subprocess.run([executable, "--shell=sh", "--severity=style", "--external-sources", *map(str, paths)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    assert result.returncode == 0, f"shellcheck findings:\n{result.stdout}"


def test_blocks_dir_is_package_data():
    """Every file below sbuild_blocks/ is a shell file (setup.py ships all non-Python files)."""
    assert sbuild.BLOCKS_DIR.is_dir()
    assert BLOCK_FILES
    assert sorted(sbuild.BLOCKS_DIR.iterdir()) == BLOCK_FILES


def test_every_setup_block_has_its_file():
    """Every setup block name is a file of its own, or an APT configuration block (apt-conf.sh)."""
    names = {path.stem for path in BLOCK_FILES}
    for block in dist.SBUILD_SETUP_BLOCKS:
        assert block in names or block in sbuild.APT_CONF_BLOCKS, block
    assert {"prelude", "copy-in", "chroot-preinstall", "dearmor", "apt-conf"} <= names


@pytest.mark.parametrize("path", BLOCK_FILES, ids=lambda path: path.name)
def test_shipped_block_passes_shellcheck(path):
    _shellcheck(path)


def test_generated_scripts_pass_shellcheck(tmp_path):
    scripts = sbuild.setup_scripts(" ".join(dist.SBUILD_SETUP_BLOCKS))
    paths = sbuild.write_files(tmp_path, "1;\n", scripts)
    preinstall = tmp_path / "chroot-preinstall"
    preinstall.write_text(sbuild.chroot_preinstall_script(sbuild.chroot_preinstall_packages("aptitude")))
    assert len(paths) == len(dist.SBUILD_SETUP_BLOCKS)
    _shellcheck(*paths, tmp_path / sbuild.COPY_IN, preinstall)


def test_no_placeholder_left_in_generated_scripts(tmp_path):
    paths = sbuild.write_files(tmp_path, "1;\n", sbuild.setup_scripts(" ".join(dist.SBUILD_SETUP_BLOCKS)))
    texts = [p.read_text() for p in paths] + [(tmp_path / sbuild.COPY_IN).read_text(), sbuild.chroot_preinstall_script(["x"])]
    for text in texts:
        assert sbuild._PLACEHOLDER.search(text) is None  # pylint: disable=protected-access


def test_render_unknown_placeholder():
    with pytest.raises(KeyError):
        sbuild._render("echo @NOPE@", NAME="x")  # pylint: disable=protected-access
    assert sbuild._render('set -- "$@"; echo @NAME@', NAME="a@B@") == 'set -- "$@"; echo a@B@'  # pylint: disable=protected-access
