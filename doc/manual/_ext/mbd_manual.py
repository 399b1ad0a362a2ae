"""Sphinx extension of the mini-buildd manual (owns: doc/manual/_ext/mbd_manual.py).

Generates reference text at build time, so that nothing is written twice:

- ``.. mbd-api-calls::``: every API call of the call registry (:mod:`mini_buildd.api.registry`,
  calls defined in :mod:`mini_buildd.api.calls`), by category, with authorization, flags, result
  and an argument table (the same source as ``doc/api.md`` and the man pages).
- ``.. mbd-command-help:: COMMAND``: the ``--help`` text of a console script (``mini-buildd``,
  ``mini-buildd-api``, ``mini-buildd-dput``, ``mini-buildd-events``), from its ``parser()``
  (:data:`mini_buildd.manpages.COMMANDS`), as a literal block.

Only core Sphinx and docutils APIs are used (works with Sphinx 5.3 to 8).
"""

import os
import re

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList
from sphinx.util.nodes import nested_parse_with_titles

_SPECIAL = re.compile(r"([\\`*_|\[\]<>])")


def rst_escape(text):
    """Inline text with reStructuredText markup characters escaped, on one line."""
    return _SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def api_calls_rst():
    """reStructuredText lines describing every API call of the registry."""
    # pylint: disable=import-outside-toplevel
    from mini_buildd.api import registry, calls  # noqa: F401  pylint: disable=unused-import
    out = []
    for category in registry.CATEGORIES:
        members = [c for c in registry.CALLS.values() if c.category == category]
        if not members:
            continue
        out += [f"{category} calls", "-" * (len(category) + 6), ""]
        for c in members:
            title = f"``{c.name}``"
            out += [".. _api-" + c.name.replace("_", "-") + ":", "", title, "~" * len(title), ""]
            for paragraph in re.split(r"\n\s*\n", c.doc or c.name):
                out += [rst_escape(paragraph), ""]
            flags = [f for f in registry.FLAGS if f in c.flags]
            out += [f":Authorization: {c.auth.name}"]
            if flags:
                out += [f":Flags: {', '.join(flags)}"]
            if c.result_doc:
                out += [f":Result: {rst_escape(c.result_doc)}"]
            out += [f":HTTP: ``GET /mini_buildd/api/{c.name}/``", ""]
            if c.args:
                out += [".. list-table::", "   :header-rows: 1", "",
                        "   * - argument", "     - command line", "     - type", "     - default", "     - description"]
                for a in c.args:
                    if a.required:
                        default = "required"
                    elif a.server_default is not None:
                        default = "computed by the server"
                    elif a.default in (None, [], ""):
                        default = ""
                    else:
                        default = f"``{a.to_query(a.default)}``"
                    doc = rst_escape(a.doc)
                    if isinstance(a.choices, (list, tuple)):
                        doc += " (choices: " + ", ".join(f"``{ch}``" for ch in a.choices) + ")"
                    out += [f"   * - ``{a.identity}``",
                            "     - " + ", ".join(f"``{f}``" for f in a.flags),
                            f"     - {a.type}",
                            f"     - {default}" if default else "     -",
                            f"     - {doc}" if doc else "     -"]
                out += [""]
    return out


def command_help(name):
    """The ``--help`` text of console script ``name`` (as a terminal of 100 columns shows it)."""
    # pylint: disable=import-outside-toplevel
    from mini_buildd import manpages
    target = manpages.COMMANDS[name]
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        parser = manpages.command_parser(target)
        parser.prog = name
        text = parser.format_help()
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return text


class ApiCalls(Directive):
    """``.. mbd-api-calls::``: sections describing every API call."""

    has_content = False

    def run(self):
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, StringList(api_calls_rst(), source="mini_buildd/api/calls.py"), node)
        return node.children


class CommandHelp(Directive):
    """``.. mbd-command-help:: COMMAND``: the command's ``--help`` as a literal block."""

    required_arguments = 1
    has_content = False

    def run(self):
        text = command_help(self.arguments[0])
        block = nodes.literal_block(text, text)
        block["language"] = "none"
        return [block]


def setup(app):
    app.add_directive("mbd-api-calls", ApiCalls)
    app.add_directive("mbd-command-help", CommandHelp)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
