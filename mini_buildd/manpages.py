"""Manual pages, bash completion and the API call reference, generated from the commands' own
argparse parsers (owns: mini_buildd/manpages.py).

Run at package build time (debian/rules)::

    /usr/bin/python3 -m mini_buildd.manpages --destdir debian/tmp --outdir debian/tmp/mbd-generated

Every console script of the package (``[console_scripts]`` of the installed ``entry_points.txt``
below DESTDIR, or :data:`COMMANDS`) is a module with a ``parser()`` function returning its
:class:`argparse.ArgumentParser`; for ``mini-buildd-api`` that parser is built from the API call
registry (:mod:`mini_buildd.api.registry`), so the manual lists every call with its arguments,
authorization and flags. A command installed to ``usr/sbin`` gets section 8, others section 1.

Output (all plain text, no external tool): ``NAME.SECTION`` roff pages, the bash completion
``mini-buildd-api`` (sub-commands = API calls, their options, static choices), and with
``--markdown FILE`` the API call reference (doc/api.md).

The roff is written by hand from the parser's actions: argparse's private attributes
(``_actions``, ``_choices_actions``, ``_SubParsersAction``) are read, nothing else.
"""

import argparse
import configparser
import datetime
import glob
import importlib
import logging
import os
import re
import sys

from mini_buildd import __version__, sse

LOG = logging.getLogger(__name__)

#: Console scripts when there is no installed entry_points.txt (same as setup.py).
COMMANDS = {
    "mini-buildd": "mini_buildd.cli.daemon:main",
    "mini-buildd-api": "mini_buildd.cli.api:main",
    "mini-buildd-dput": "mini_buildd.cli.dput:main",
    "mini-buildd-events": "mini_buildd.cli.events:main",
    "mini-buildd-self-signed-certificate": "mini_buildd.cli.certificate:main",
    "mini-buildd-chroot-helper": "mini_buildd.roothelper:main",
    "mini-buildd-debug-build": "mini_buildd.cli.debug_build:main",
    "mini-buildd-cruft": "mini_buildd.cli.cruft:main",
    "mini-buildd-backup": "mini_buildd.cli.backup:main",
}

#: System administration commands (section 8 even without an install tree; /usr/sbin when installed).
SYSTEM_COMMANDS = ("mini-buildd", "mini-buildd-self-signed-certificate", "mini-buildd-chroot-helper", "mini-buildd-debug-build",
                   "mini-buildd-cruft", "mini-buildd-backup")

#: The command whose sub-commands are API calls.
API_COMMAND = "mini-buildd-api"

SECTION_TITLES = {"1": "User Commands", "8": "System Administration"}


# ------------------------------------------------------------------------------------------------ commands
def read_entry_points(path):
    """``{name: "module:function"}`` from an ``entry_points.txt``."""
    parser = configparser.ConfigParser(delimiters=("=",))
    parser.optionxform = str
    parser.read(path, encoding="UTF-8")
    if not parser.has_section("console_scripts"):
        return {}
    return {name: target.strip() for name, target in parser.items("console_scripts")}


def installed_commands(destdir):
    """``{name: (target, section)}`` of the console scripts installed below DESTDIR."""
    infos = glob.glob(os.path.join(destdir, "usr/lib/python3*/dist-packages/mini_buildd-*.egg-info/entry_points.txt"))
    if len(infos) != 1:
        raise RuntimeError(f"Expected one mini_buildd entry_points.txt below {destdir}, found {infos}")
    result = {}
    for name, target in read_entry_points(infos[0]).items():
        if os.path.exists(os.path.join(destdir, "usr/sbin", name)):
            section = "8"
        elif os.path.exists(os.path.join(destdir, "usr/bin", name)):
            section = "1"
        else:
            raise RuntimeError(f"Console script {name} is neither in usr/bin nor usr/sbin below {destdir}")
        result[name] = (target, section)
    return result


def default_commands():
    return {name: (target, "8" if name in SYSTEM_COMMANDS else "1") for name, target in COMMANDS.items()}


def command_parser(target):
    """The argparse parser of a console script target ``module:function`` (its module's ``parser()``)."""
    module = importlib.import_module(target.partition(":")[0].strip())
    factory = getattr(module, "parser", None)
    if not callable(factory):
        raise RuntimeError(f"{module.__name__} has no parser() function: can't document it")
    return factory()


# ------------------------------------------------------------------------------------------------ argparse reading
def _subparsers_action(parser):
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)  # pylint: disable=protected-access


def _visible(actions):
    return [a for a in actions if a.help != argparse.SUPPRESS and not isinstance(a, argparse._SubParsersAction)]  # pylint: disable=protected-access


def _metavar(action):
    if action.metavar is not None:
        return action.metavar if isinstance(action.metavar, str) else " ".join(action.metavar)
    if action.choices is not None and not action.option_strings:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest.upper() if action.option_strings else action.dest


def _takes_value(action):
    return action.nargs != 0


def expand_help(action, prog):
    """The action's help with argparse's ``%(...)s`` substitutions done (as ``--help`` shows it)."""
    if not action.help:
        return ""
    params = dict(vars(action), prog=prog)
    for name in list(params):
        if params[name] is argparse.SUPPRESS:
            del params[name]
    for name in list(params):
        if hasattr(params[name], "__name__"):
            params[name] = params[name].__name__
    if params.get("choices") is not None:
        params["choices"] = ", ".join(str(c) for c in params["choices"])
    try:
        return action.help % params
    except (KeyError, TypeError, ValueError):
        return action.help


def _usage_parts(actions):
    """Synopsis items: ``(text, optional)`` with text in roff."""
    parts = []
    for a in actions:
        if a.help == argparse.SUPPRESS:
            continue
        if isinstance(a, argparse._SubParsersAction):  # pylint: disable=protected-access
            parts.append((f"\\fI{roff_escape(_metavar(a))}\\fR [\\fIoptions\\fR]", False))
            continue
        if a.option_strings:
            flag = min(a.option_strings, key=len)
            text = f"\\fB{option_escape(flag)}\\fR"
            if _takes_value(a):
                text += f" \\fI{roff_escape(_metavar(a))}\\fR"
                if a.nargs in ("+", "*"):
                    text += " ..."
            parts.append((text, not a.required))
        else:
            text = f"\\fI{roff_escape(_metavar(a))}\\fR"
            if a.nargs in ("+", "*"):
                text += " ..."
            parts.append((text, a.nargs in ("?", "*")))
    return parts


# ------------------------------------------------------------------------------------------------ roff
def roff_escape(text):
    """Escape text for roff: backslashes, and control characters at line starts."""
    text = str(text).replace("\\", "\\e")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line for line in text.split("\n"))


def option_escape(flag):
    """An option string with real minus signs (``\\-``), so it can be copied from the page."""
    return roff_escape(flag).replace("-", "\\-")


def _paragraphs(text):
    """Roff for free text: blank lines separate paragraphs, other line breaks are kept."""
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [line.rstrip() for line in block.split("\n") if line.strip()]
        if not lines:
            continue
        if out:
            out.append(".PP")
        for i, line in enumerate(lines):
            if i:
                out.append(".br")
            out.append(roff_escape(line.strip()))
    return out


def _synopsis(name, parser, skip=frozenset(), lead=""):
    """Roff synopsis; actions with a dest in ``skip`` (options shared with the main command) are left out."""
    items = [f"\\fB{roff_escape(name)}\\fR"] + ([lead] if lead else [])
    actions = [a for a in parser._actions if a.dest not in skip]  # pylint: disable=protected-access
    for text, optional in _usage_parts(actions):
        items.append(f"[{text}]" if optional else text)
    return [".nh", ".ad l", ".HP", " ".join(items), ".hy", ".ad b"]


def _option_items(actions, prog):
    out = []
    for a in actions:
        out.append(".TP")
        if a.option_strings:
            flags = ", ".join(f"\\fB{option_escape(f)}\\fR" for f in a.option_strings)
            if _takes_value(a):
                flags += f" \\fI{roff_escape(_metavar(a))}\\fR"
                if a.nargs in ("+", "*"):
                    flags += " ..."
            out.append(flags)
        else:
            out.append(f"\\fI{roff_escape(_metavar(a))}\\fR" + (" ..." if a.nargs in ("+", "*") else ""))
        help_text = expand_help(a, prog)
        out += _paragraphs(help_text) if help_text else ["\\&"]
    return out


def _action_groups(parser):
    """``[(title, visible actions)]`` in parser order (positionals first, as argparse does)."""
    groups = []
    for group in parser._action_groups:  # pylint: disable=protected-access
        actions = _visible(group._group_actions)  # pylint: disable=protected-access
        if actions:
            title = group.title or "options"
            groups.append((title, actions))
    return groups


def _header(name, section, date):
    source = f"mini-buildd {__version__}"
    return [f'.TH "{name.upper()}" "{section}" "{date}" "{source}" "{SECTION_TITLES.get(section, "")}"']


def _sub_commands(name, parser):
    """Roff for the sub-commands (API calls) of ``parser``, one ``.SS`` each."""
    sub = _subparsers_action(parser)
    out = []
    if sub is None:
        return out
    summaries = {ca.dest: ca.help or "" for ca in sub._choices_actions}  # pylint: disable=protected-access
    out.append(".SH \"API CALLS\"" if name == API_COMMAND else ".SH \"COMMANDS\"")
    group = next((g for g in parser._action_groups if sub in g._group_actions), None)  # pylint: disable=protected-access
    for text in (group.title, group.description) if group is not None else ():
        if text:
            out += _paragraphs(text)
    # Options every sub-command shares with the main command are documented once, under OPTIONS.
    shared = {a.dest for a in parser._actions if a.option_strings} - {argparse.SUPPRESS}  # pylint: disable=protected-access
    shared_here = sorted({f for sp in sub.choices.values() for a in sp._actions  # pylint: disable=protected-access
                          if a.dest in shared for f in a.option_strings})
    if shared_here:
        out += [".PP", "Every call also takes the options " + ", ".join(f"\\fB{option_escape(f)}\\fR" for f in shared_here)
                + " (see \\fBOPTIONS\\fR)."]
    for cmd, subparser in sub.choices.items():
        out.append(f".SS \"{roff_escape(cmd)}\"")
        out += _synopsis(f"{name} {cmd}", subparser, skip=shared)
        description = subparser.description or summaries.get(cmd, "")
        if description:
            out.append(".PP")
            out += _paragraphs(description)
        for _title, actions in _action_groups(subparser):
            out += _option_items([a for a in actions if a.dest not in shared], f"{name} {cmd}")
    return out


def _api_sections():
    """Extra sections for mini-buildd-api from the registry: calls by authorization level."""
    from mini_buildd.api import registry  # pylint: disable=import-outside-toplevel
    out = [".SH \"AUTHORIZATION\"",
           "Calls above level NONE need a logged-in user (give \\fIUSER\\fB@\\fR in the endpoint); "
           "LOGIN = any active user, STAFF = staff users, ADMIN = superusers. "
           "CONFIRM calls ask for confirmation (see \\fB\\-\\-auto\\-confirm\\fR); "
           "NEEDS_RUNNING calls need a started engine; MAINTENANCE calls stop the engine while they run."]
    for auth in registry.Auth:
        calls = [c for c in registry.CALLS.values() if c.auth == auth]
        if not calls:
            continue
        out += [".TP", f"\\fB{auth.name}\\fR"]
        out.append(", ".join(
            roff_escape(c.name) + (f" ({', '.join(f for f in registry.FLAGS if f in c.flags)})" if c.flags else "")
            for c in calls))
    return out


def manpage(name, parser, section="1", date=None, see_also=()):
    """The roff manual page of command ``name`` from its argparse ``parser``."""
    date = date or build_date()
    description = (parser.description or "").strip()
    summary = description.splitlines()[0].rstrip(".") if description else name
    out = _header(name, section, date)
    out += [".SH \"NAME\"", f"{roff_escape(name)} \\- {roff_escape(summary)}"]
    out += [".SH \"SYNOPSIS\""] + _synopsis(name, parser)
    if description:
        out += [".SH \"DESCRIPTION\""] + _paragraphs(description)
    if name == "mini-buildd":
        out += [".PP", "From a source tree, the same command runs as \\fBpython3 \\-m mini_buildd\\fR."]
    for title, actions in _action_groups(parser):
        out += [f".SH \"{roff_escape(title.upper())}\""] + _option_items(actions, name)
    out += _sub_commands(name, parser)
    if name == API_COMMAND:
        out += _api_sections()
    if parser.epilog:
        out += [".SH \"NOTES\""] + _paragraphs(parser.epilog)
    if see_also:
        out += [".SH \"SEE ALSO\"", ",\n".join(f"\\fB{roff_escape(n)}\\fR({s})" for n, s in see_also)]
    return "\n".join(out) + "\n"


def build_date():
    """Date for .TH: SOURCE_DATE_EPOCH (reproducible builds) or today."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch
            else datetime.datetime.now(datetime.timezone.utc))
    return when.strftime("%Y-%m-%d")


# ------------------------------------------------------------------------------------------------ bash completion
def _words(actions):
    return sorted({flag for a in actions for flag in a.option_strings})


def api_static_choices(call_name, action):
    """Static choices of an API call argument (the registry checks them server-side, argparse does not know them)."""
    from mini_buildd.api import registry  # pylint: disable=import-outside-toplevel
    call = registry.CALLS.get(call_name)
    arg = next((a for a in call.args if a.dest == action.dest), None) if call else None
    if arg is not None and isinstance(arg.choices, (list, tuple)):
        return list(arg.choices)
    return None


def _choice_cases(actions, indent, extra_choices=None):
    """``case`` branches completing the static choices of options (``extra_choices(action)`` may add some)."""
    lines = []
    for a in actions:
        if not a.option_strings or not _takes_value(a):
            continue
        choices = a.choices if a.choices is not None else (extra_choices(a) if extra_choices else None)
        if choices:
            words = " ".join(_shell_word(str(c)) for c in choices)
            lines.append(f"{indent}{'|'.join(a.option_strings)}) COMPREPLY=($(compgen -W \"{words}\" -- \"$cur\")); return 0;;")
        else:
            lines.append(f"{indent}{'|'.join(a.option_strings)}) return 0;;")
    return lines


def _shell_word(word):
    if not re.fullmatch(r"[A-Za-z0-9_.,:+/=@%-]+", word):
        raise ValueError(f"Can't put '{word}' into the completion script")
    return word


def bash_completion(name, parser):
    """A bash completion script for ``name`` with sub-commands: sub-command names, then its options.

    After a sub-command, the options of that sub-command (and its static choices after an
    option) are offered; an endpoint is completed from the host names of ``~/.dput.cf``
    ``[mini-buildd-*]`` targets (``http://HOST:FTPPORT-1``).
    """
    func = "_" + re.sub(r"[^A-Za-z0-9_]", "_", name)
    sub = _subparsers_action(parser)
    top = _visible(parser._actions)  # pylint: disable=protected-access
    calls = list(sub.choices) if sub else []
    lines = [
        f"# bash completion for {name} (generated by mini_buildd.manpages from the {name} parser; do not edit)",
        f"{func}_endpoints()",
        "{",
        "\tlocal cf=\"${HOME}/.dput.cf\"",
        "\t[ -r \"$cf\" ] || return 0",
        "\tsed -n -e '/^\\[mini-buildd-/,/^\\[/ s/^fqdn *[=:] *\\([^:]*\\):\\([0-9]*\\).*/http:\\/\\/\\1:\\2/p' \"$cf\" |",
        "\t\twhile IFS= read -r url; do echo \"${url%:*}:$(( ${url##*:} - 1 ))\"; done",
        "}",
        "",
        f"{func}_have_endpoint()",
        "{",
        "\tlocal j",
        "\tfor ((j = i + 1; j < COMP_CWORD; j++)); do",
        "\t\tcase \"${COMP_WORDS[j]}\" in",
        "\t\t\t*://*|tcp:*|tcp6:*|tls:*|*@tcp:*|*@tcp6:*|*@tls:*) return 0;;",
        "\t\tesac",
        "\tdone",
        "\treturn 1",
        "}",
        "",
        f"{func}()",
        "{",
        "\tlocal cur prev call i",
        "\tCOMPREPLY=()",
        "\tcur=\"${COMP_WORDS[COMP_CWORD]}\"",
        "\tprev=\"${COMP_WORDS[COMP_CWORD-1]}\"",
        "\tcall=",
        "\tfor ((i = 1; i < COMP_CWORD; i++)); do",
        "\t\tcase \"${COMP_WORDS[i]}\" in",
        f"\t\t\t{'|'.join(calls) or '__none__'}) call=\"${{COMP_WORDS[i]}}\"; break;;",
        "\t\tesac",
        "\tdone",
        "\tcase \"$call\" in",
        "\t\t\"\")",
        "\t\t\tcase \"$prev\" in",
        *_choice_cases(top, "\t\t\t\t"),
        "\t\t\tesac",
        "\t\t\tif [[ \"$cur\" == -* ]]; then",
        f"\t\t\t\tCOMPREPLY=($(compgen -W \"{' '.join(_words(top))}\" -- \"$cur\"))",
        "\t\t\telse",
        f"\t\t\t\tCOMPREPLY=($(compgen -W \"{' '.join(calls)}\" -- \"$cur\"))",
        "\t\t\tfi",
        "\t\t\t;;",
    ]
    for cmd, subparser in (sub.choices.items() if sub else []):
        actions = _visible(subparser._actions)  # pylint: disable=protected-access
        lines += [
            f"\t\t{cmd})",
            "\t\t\tcase \"$prev\" in",
            *_choice_cases(actions, "\t\t\t\t",
                           (lambda a, cmd=cmd: api_static_choices(cmd, a)) if name == API_COMMAND else None),
            "\t\t\tesac",
            "\t\t\tif [[ \"$cur\" == -* ]]; then",
            f"\t\t\t\tCOMPREPLY=($(compgen -W \"{' '.join(_words(actions))}\" -- \"$cur\"))",
            f"\t\t\telif ! {func}_have_endpoint; then",
            f"\t\t\t\tCOMPREPLY=($(compgen -W \"$({func}_endpoints)\" -- \"$cur\"))",
            "\t\t\tfi",
            "\t\t\t;;",
        ]
    lines += [
        "\tesac",
        "\treturn 0",
        "}",
        f"complete -F {func} {name}",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ markdown
def api_markdown():
    """Markdown reference of every API call (doc/api.md), from the registry."""
    from mini_buildd.api import registry, calls  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    out = ["# mini-buildd API calls", "",
           "Generated from the call registry (`mini_buildd/api/registry.py`, calls in `mini_buildd/api/calls.py`) by",
           "`/usr/bin/python3 -m mini_buildd.manpages --markdown doc/api.md`; do not edit by hand.", "",
           "HTTP: `GET /mini_buildd/api/<call>/?<argument>=<value>&output=json|plain|html` "
           "(`confirm=<call>` for confirmable calls); errors are RFC 7807 `application/problem+json`.",
           "Command line: `mini-buildd-api <call> ENDPOINT [arguments]` (see `man 1 mini-buildd-api`).", ""]
    for category in registry.CATEGORIES:
        members = [c for c in registry.CALLS.values() if c.category == category]
        if not members:
            continue
        out += [f"## {category}", ""]
        for c in members:
            out += [f"### `{c.name}`", ""]
            out += [c.doc or c.name, ""]
            flags = [f for f in registry.FLAGS if f in c.flags]
            out += [f"Authorization: **{c.auth.name}**" + (f"; flags: {', '.join(flags)}" if flags else "") + "  "]
            if c.result_doc:
                out += [f"Result: {c.result_doc}"]
            out += [""]
            if c.args:
                out += ["| argument | command line | type | default | description |", "|---|---|---|---|---|"]
                for a in c.args:
                    flags_txt = ", ".join(f"`{f}`" for f in a.flags)
                    if a.required:
                        default = "required"
                    elif a.server_default is not None:
                        default = "server computed"
                    elif a.default in (None, [], ""):
                        default = ""
                    else:
                        default = f"`{a.to_query(a.default)}`"
                    doc = a.doc + (f" (choices: {', '.join(str(c) for c in a.choices)})"
                                   if isinstance(a.choices, (list, tuple)) else "")
                    doc = doc.replace("|", "\\|").replace("\n", " ")
                    out += [f"| `{a.identity}` | {flags_txt} | {a.type} | {default} | {doc} |"]
                out += [""]
    out += [sse.API_MARKDOWN]  # the event stream: an HTTP endpoint, not a call
    return "\n".join(out).rstrip("\n") + "\n"


# ------------------------------------------------------------------------------------------------ main
def generate(commands, outdir, date=None):
    """Write NAME.SECTION for every command and the API completion to OUTDIR; return written paths."""
    os.makedirs(outdir, exist_ok=True)
    parsers = {name: command_parser(target) for name, (target, _section) in commands.items()}
    written = []
    for name, (_target, section) in sorted(commands.items()):
        see_also = [(n, s) for n, (_t, s) in sorted(commands.items()) if n != name]
        path = os.path.join(outdir, f"{name}.{section}")
        with open(path, "w", encoding="UTF-8") as f:
            f.write(manpage(name, parsers[name], section=section, date=date, see_also=see_also))
        written.append(path)
    if API_COMMAND in parsers:
        path = os.path.join(outdir, API_COMMAND)
        with open(path, "w", encoding="UTF-8") as f:
            f.write(bash_completion(API_COMMAND, parsers[API_COMMAND]))
        written.append(path)
    return written


def main(argv=None):
    """Command line: write man pages and bash completion, or the API call reference."""
    p = argparse.ArgumentParser(prog="python3 -m mini_buildd.manpages",
                                description="Generate man pages and bash completion from the commands' parsers.")
    p.add_argument("--destdir", help="install tree with the console scripts (entry_points.txt, usr/bin, usr/sbin); "
                                     "default: the built-in command list")
    p.add_argument("--outdir", help="where to write NAME.SECTION and the completion script")
    p.add_argument("--markdown", metavar="FILE", help="write the API call reference (markdown) to FILE")
    args = p.parse_args(argv)
    if not args.outdir and not args.markdown:
        p.error("nothing to do: give --outdir and/or --markdown")
    if args.outdir:
        commands = installed_commands(args.destdir) if args.destdir else default_commands()
        for path in generate(commands, args.outdir):
            print(f"mini_buildd.manpages: wrote {path}")
    if args.markdown:
        with open(args.markdown, "w", encoding="UTF-8") as f:
            f.write(api_markdown())
        print(f"mini_buildd.manpages: wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
