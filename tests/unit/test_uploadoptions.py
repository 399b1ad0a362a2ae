"""Unit tests for mini_buildd.changes.uploadoptions (MINI_BUILDD_OPTION lines, upstream §3.8)."""

# pytest idioms: asserts compare with empty containers on purpose (the type counts too).
# pylint: disable=use-implicit-booleaness-not-comparison

import pytest

from mini_buildd.dist import QAMode
from mini_buildd.changes.uploadoptions import format_option, get_option, parse_option, parse_upload_options, top_changelog_block

# As python-debian returns a Changes: field value (continuation lines keep their leading space).
CHANGES_FIELD = """
 mbd-hello (1.0~test12+5) bookworm-test-unstable; urgency=medium
 .
   * Fix things.
   * MINI_BUILDD_OPTION: lintian-mode=ignore
   * MINI_BUILDD_OPTION: lintian-mode[i386]=warnfail
   * MINI_BUILDD_OPTION: internal-apt-priority=500
   * MINI_BUILDD_OPTION: auto-ports=bullseye-test-unstable, sid-test-unstable
   * MINI_BUILDD_OPTION: deb-build-options=nocheck  parallel=4
   * MINI_BUILDD_OPTION: add-depends=foo (>= 1.0),bar
 .
 mbd-hello (1.0~test12+4) bookworm-test-unstable; urgency=medium
 .
   * MINI_BUILDD_OPTION: piuparts-mode=errfail
   * MINI_BUILDD_OPTION: no-such-option=1
"""


def test_parse_changes_field():
    options = parse_upload_options(CHANGES_FIELD)
    assert options == {
        "lintian-mode": QAMode.IGNORE,
        "lintian-mode[i386]": QAMode.WARNFAIL,
        "internal-apt-priority": 500,
        "auto-ports": ["bullseye-test-unstable", "sid-test-unstable"],
        "deb-build-options": "nocheck parallel=4",
        "add-depends": ["foo(>=1.0)", "bar"],
    }


def test_top_block_only():
    lines = top_changelog_block(CHANGES_FIELD)
    assert any("Fix things" in line for line in lines)
    assert not any("piuparts-mode" in line for line in lines)
    assert "piuparts-mode" not in parse_upload_options(CHANGES_FIELD)


def test_plain_changelog_text_and_no_options():
    text = "pkg (1.0) unstable; urgency=low\n\n  * MINI_BUILDD_OPTION: autopkgtest-mode=WarnFail\n"
    assert parse_upload_options(text) == {"autopkgtest-mode": QAMode.WARNFAIL}
    assert parse_upload_options("pkg (1.0) unstable; urgency=low\n\n  * Nothing.\n") == {}
    assert parse_upload_options("") == {}


def test_get_option_arch_override():
    options = parse_upload_options(CHANGES_FIELD)
    assert get_option(options, "lintian-mode") is QAMode.IGNORE
    assert get_option(options, "lintian-mode", "amd64") is QAMode.IGNORE
    assert get_option(options, "lintian-mode", "i386") is QAMode.WARNFAIL
    assert get_option(options, "piuparts-mode", "i386", default=QAMode.DISABLED) is QAMode.DISABLED


@pytest.mark.parametrize("line, expected", [
    ("ignore-lintian=true", {"lintian-mode": QAMode.IGNORE}),
    ("ignore-lintian=false", {"lintian-mode": QAMode.ERRFAIL}),
    ("run-lintian=true", {"lintian-mode": QAMode.ERRFAIL}),
    ("run-lintian=False", {"lintian-mode": QAMode.DISABLED}),
    ("ignore-lintian[armhf]=true", {"lintian-mode[armhf]": QAMode.IGNORE}),
])
def test_deprecated_conversions(line, expected):
    assert parse_upload_options(f"p (1) u; urgency=low\n\n  * MINI_BUILDD_OPTION: {line}\n") == expected


def test_ancient_magic():
    text = ("p (1) u; urgency=low\n\n  * MINI_BUILDD: BACKPORT_MODE\n"
            "  * MINI_BUILDD: AUTO_BACKPORTS: bullseye-test-unstable,buster-test-unstable\n")
    assert parse_upload_options(text) == {"lintian-mode": QAMode.IGNORE,
                                          "auto-ports": ["bullseye-test-unstable", "buster-test-unstable"]}


@pytest.mark.parametrize("lines, message", [
    (["no-such-option=1"], "Unknown upload option 'no-such-option'"),
    (["lintian-mode=ignore", "lintian-mode=errfail"], "Duplicate upload option 'lintian-mode'"),
    (["lintian-mode=ignore", "ignore-lintian=true"], "Duplicate upload option 'lintian-mode'"),
    (["lintian-mode[i386]=ignore", "lintian-mode[i386]=ignore"], r"Duplicate upload option 'lintian-mode\[i386\]'"),
    (["lintian-mode=sometimes"], "Invalid value for upload option 'lintian-mode'"),
    (["internal-apt-priority=high"], "Invalid value for upload option 'internal-apt-priority'"),
    (["auto-ports=bullseye"], "Invalid value for upload option 'auto-ports'.*Malformed distribution"),
    (["auto-ports="], "Invalid value for upload option 'auto-ports'"),
    (["ignore-lintian=maybe"], "Invalid value for upload option 'ignore-lintian'"),
    (["lintian-mode"], "Malformed upload option"),
    (["lintian-mode[]=ignore"], "Malformed upload option"),
])
def test_errors(lines, message):
    text = "p (1) u; urgency=low\n\n" + "".join(f"  * MINI_BUILDD_OPTION: {line}\n" for line in lines)
    with pytest.raises(ValueError, match=message):
        parse_upload_options(text)


def test_parse_option_whitespace_and_case():
    assert parse_option(" Lintian-Mode = ERRFAIL ") == ("lintian-mode", QAMode.ERRFAIL)
    assert parse_option("auto-ports= a-b-c ,d-e-f") == ("auto-ports", ["a-b-c", "d-e-f"])


def test_format_option_roundtrip():
    lines = [format_option("lintian-mode", QAMode.IGNORE), format_option("auto-ports", ["a-b-c", "d-e-f"]),
             format_option("internal-apt-priority", 500)]
    assert lines[0] == "MINI_BUILDD_OPTION: lintian-mode=ignore"
    text = "p (1) u; urgency=low\n\n" + "".join(f"  * {line}\n" for line in lines)
    assert parse_upload_options(text) == {"lintian-mode": QAMode.IGNORE, "auto-ports": ["a-b-c", "d-e-f"],
                                          "internal-apt-priority": 500}
