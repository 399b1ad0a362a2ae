"""Unit tests of the man page, completion and API reference generator (owns: tests/unit/test_manpages.py)."""

import argparse
import pathlib
import re

import pytest

from mini_buildd.tools import call
from mini_buildd import manpages
from mini_buildd.api import registry
from mini_buildd.api import calls  # noqa: F401  pylint: disable=unused-import

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _setup_console_scripts():
    text = (ROOT / "setup.py").read_text(encoding="UTF-8")
    block = re.search(r"^CONSOLE_SCRIPTS = \[(.*?)^\]", text, re.MULTILINE | re.DOTALL).group(1)
    return dict(re.findall(r"""["']\s*([A-Za-z0-9_.-]+)\s*=\s*([A-Za-z0-9_.:]+)\s*["']""", block))


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("man")
    manpages.generate(manpages.default_commands(), str(out), date="2024-01-02")
    return out


def _api_parser():
    return manpages.command_parser(manpages.COMMANDS[manpages.API_COMMAND])


def test_commands_are_the_console_scripts():
    """The built-in list (used without an install tree) is exactly setup.py's console scripts."""
    assert manpages.COMMANDS == _setup_console_scripts()


def test_every_command_has_a_page(generated):
    names = sorted(p.name for p in generated.iterdir())
    expected = sorted([f"{n}.{'8' if n in manpages.SYSTEM_COMMANDS else '1'}" for n in manpages.COMMANDS] + ["mini-buildd-api"])
    assert names == expected
    for name, (target, section) in manpages.default_commands().items():
        page = (generated / f"{name}.{section}").read_text(encoding="UTF-8")
        assert page.startswith(f'.TH "{name.upper()}" "{section}" "2024-01-02" ')
        assert f'.SH "NAME"\n{name} \\- ' in page
        # Every visible option of the command's parser is documented.
        for action in manpages.command_parser(target)._actions:  # pylint: disable=protected-access
            if action.help == argparse.SUPPRESS:
                continue
            for flag in action.option_strings:
                assert f"\\fB{manpages.option_escape(flag)}\\fR" in page, f"{name}: {flag}"


def test_api_page_covers_every_call(generated):
    page = (generated / "mini-buildd-api.1").read_text(encoding="UTF-8")
    sections = re.split(r'^\.SS "', page, flags=re.MULTILINE)[1:]
    documented = {s.split('"', 1)[0]: s for s in sections}
    assert list(documented) == list(registry.CALLS)
    for name, c in registry.CALLS.items():
        text = documented[name]
        assert f"Authorization: {c.auth.name}" in text
        for a in c.args:
            if a.positional:
                assert f"\\fI{manpages.roff_escape(a.metavar or a.identity)}\\fR" in text, f"{name}: {a.identity}"
            else:
                for flag in a.flags:
                    assert f"\\fB{manpages.option_escape(flag)}\\fR" in text, f"{name}: {flag}"
    # The authorization summary names every call once.
    summary = page.split('.SH "AUTHORIZATION"', 1)[1].split(".SH", 1)[0]
    for name in registry.CALLS:
        assert len(re.findall(rf"(^|, ){re.escape(name)}( \(|,|$)", summary, re.MULTILINE)) == 1, name


def test_pages_render_without_warnings(generated):
    for page in generated.glob("*.[18]"):
        warnings = call.run(["sh", "-c", 'man --warnings -E UTF-8 -l "$1" 2>&1 >/dev/null', "sh", str(page)],
                            env={"MANWIDTH": "100", "LC_ALL": "C.UTF-8"})
        assert warnings.strip() == "", f"{page.name}: {warnings}"


def test_roff_escaping():
    assert manpages.roff_escape(".foo\n'bar\nback\\slash") == "\\&.foo\n\\&'bar\nback\\eslash"
    assert manpages.option_escape("--with-x") == "\\-\\-with\\-x"
    assert manpages._paragraphs("a\nb\n\n.c") == ["a", ".br", "b", ".PP", "\\&.c"]  # pylint: disable=protected-access


def test_help_expansion():
    p = argparse.ArgumentParser(prog="x")
    action = p.add_argument("--foo", default="bar", choices=["bar", "baz"], help="pick (default: %(default)s; %(choices)s); 100%%")
    assert manpages.expand_help(action, "x") == "pick (default: bar; bar, baz); 100%"


def _complete(script, *words):
    probe = ('. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); '
             '_mini_buildd_api; printf "%s\\n" "${COMPREPLY[@]}"')
    return call.run(["bash", "-c", probe, "bash", str(script), *words], env={"HOME": str(script.parent)}).split()


def test_bash_completion(generated):
    script = generated / "mini-buildd-api"
    call.run(["bash", "-n", str(script)])
    assert _complete(script, "mini-buildd-api", "") == list(registry.CALLS)
    assert set(_complete(script, "mini-buildd-api", "sn")) == {c for c in registry.CALLS if c.startswith("sn")}
    assert "--json" in _complete(script, "mini-buildd-api", "--")
    for name, c in registry.CALLS.items():
        offered = set(_complete(script, "mini-buildd-api", "--json", name, "-"))
        expected = {f for a in c.args if not a.positional for f in a.flags} | {"--help", "-h", "--json", "--auto-confirm"}
        assert expected <= offered, f"{name}: missing {expected - offered}"
    # Static choices after an option.
    assert _complete(script, "mini-buildd-api", "sources_list", "http://h:1", "--types", "") == ["deb", "deb-src"]


def test_bash_completion_endpoints_from_dput_cf(generated, tmp_path):
    script = tmp_path / "mini-buildd-api"
    script.write_text((generated / "mini-buildd-api").read_text(encoding="UTF-8"), encoding="UTF-8")
    (tmp_path / ".dput.cf").write_text("[mini-buildd-foo]\nmethod = ftp\nfqdn = build.example.org:8067\n"
                                       "[other]\nfqdn = other.example.org:21\n", encoding="UTF-8")
    assert _complete(script, "mini-buildd-api", "status", "") == ["http://build.example.org:8066"]
    assert _complete(script, "mini-buildd-api", "status", "http://build.example.org:8066", "") == []


def test_installed_commands(tmp_path):
    info = tmp_path / "usr/lib/python3/dist-packages/mini_buildd-1.0.egg-info"
    info.mkdir(parents=True)
    (info / "entry_points.txt").write_text("[console_scripts]\nmini-buildd = mini_buildd.cli.daemon:main\n"
                                           "mini-buildd-api = mini_buildd.cli.api:main\n", encoding="UTF-8")
    (tmp_path / "usr/sbin").mkdir()
    (tmp_path / "usr/bin").mkdir()
    (tmp_path / "usr/sbin/mini-buildd").touch()
    (tmp_path / "usr/bin/mini-buildd-api").touch()
    assert manpages.installed_commands(str(tmp_path)) == {"mini-buildd": ("mini_buildd.cli.daemon:main", "8"),
                                                          "mini-buildd-api": ("mini_buildd.cli.api:main", "1")}
    (tmp_path / "usr/bin/mini-buildd-api").unlink()
    with pytest.raises(RuntimeError, match="neither in usr/bin nor usr/sbin"):
        manpages.installed_commands(str(tmp_path))


def test_markdown_reference_is_current():
    markdown = manpages.api_markdown()
    for name in registry.CALLS:
        assert f"### `{name}`" in markdown
    assert (ROOT / "doc" / "api.md").read_text(encoding="UTF-8") == markdown, \
        "doc/api.md is stale: run /usr/bin/python3 -m mini_buildd.manpages --markdown doc/api.md"
