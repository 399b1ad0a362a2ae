"""The cached base tarballs' names (config.cached_tarball) and the root helper's check of the apt
lines a cached tarball is upgraded from (roothelper_base.check_apt_line): what an unprivileged
daemon user may pass to a root action."""

import pytest

from mini_buildd import config
from mini_buildd.roothelper_base import HelperError, check_apt_line

TOOLS = ["fakeroot", "eatmydata", "ccache", "lintian", "aptitude"]
LINES = ["deb [check-valid-until=yes] http://archive.example/debian/ bookworm main",
         "deb [check-valid-until=yes] http://archive.example/debian-security/ bookworm-security main"]


def test_names_differ_by_tools_and_sources():
    pristine = config.cached_tarball("bookworm", "amd64")
    tools = config.cached_tarball("bookworm", "amd64", include=TOOLS)
    upgraded = config.cached_tarball("bookworm", "amd64", include=TOOLS, apt_lines=LINES)
    assert pristine.name == "debootstrap-bookworm-amd64-buildd.tar"
    assert len({pristine, tools, upgraded}) == 3
    assert config.cached_tarball("bookworm", "amd64", include=list(reversed(TOOLS))) == tools  # names sorted
    assert config.cached_tarball("bookworm", "amd64", include=TOOLS, apt_lines=LINES[:1]) != upgraded
    # The tools-only name is what it was before apt lines existed (caches made then stay valid).
    assert tools.name == "debootstrap-bookworm-amd64-buildd-with-b8467cf3ac7b.tar"


@pytest.mark.parametrize("line", LINES + ["deb http://127.0.0.1:8066/debian bookworm main contrib non-free-firmware",
                                          "deb [check-valid-until=no] https://mirror.example/ubuntu/ jammy-updates main universe",
                                          "deb file:/srv/mirror/debian trixie main"])
def test_plain_lines_pass(line):
    assert check_apt_line(line) == line


@pytest.mark.parametrize("line", [
    "deb http://archive.example/debian bookworm main\ndeb http://evil.example/debian bookworm main",  # a second line
    "deb [trusted=yes] http://evil.example/debian bookworm main extra\n",
    "deb [trusted=yes allow-insecure=yes]http://evil.example/debian bookworm main",
    "deb-src http://archive.example/debian bookworm main",
    "deb http://archive.example/debian bookworm",  # no component
    "deb http://archive.example/debian -oDir::Etc=/tmp main",
    "deb http://archive.example/debian bookworm --allow-unauthenticated",
    "deb ftp://archive.example/debian bookworm main",
    "deb [trusted=yes] http://evil.example/debian bookworm main",  # would turn off apt's signature check
    "deb 'http://archive.example/debian' bookworm main",
    "", "deb",
])
def test_hostile_lines_refused(line):
    with pytest.raises(HelperError, match="Bad apt line"):
        check_apt_line(line)
