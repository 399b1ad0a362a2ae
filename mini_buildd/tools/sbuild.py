"""sbuild wrapper: the only module that runs ``sbuild`` (upstream §6.1, §6.2, §6.4, §6.5, §10).

Owns, for one build (one build dir ``var/shared/builds/<bkey>/``):

- :func:`sbuildrc`: the text of ``<build dir>/.sbuildrc`` (config blocks, placeholder
  ``%LIBDIR%``, the distribution's snippet, ``1;``);
- :func:`setup_scripts`: the chroot setup scripts ``.setup.d/NNN_<block>`` (``apt-setup``,
  ``apt-update``, ``ccache``, ``eatmydata`` and the opt-in blocks), plus the custom script;
  :func:`write_files` puts both into the build dir;
- the shell text of these scripts is not here: each block (and the prelude, the copy-in and the
  chroot preinstall script) is a file ``sbuild_blocks/<name>.sh`` shipped as package data
  (:func:`shell_text`); the only templating is explicit ``@KEY@`` placeholders filled in by
  this module (:func:`_render`), and every file passes ``shellcheck`` (tests/unit/test_sbuild_blocks.py);
- :func:`command`: the sbuild argv from explicit parameters (QA modes from
  :class:`mini_buildd.dist.QAMode`); :func:`environment`: its environment;
- :func:`run`: running sbuild with its combined output going live to the build log, with
  cancel (terminate, kill after :data:`KILL_AFTER` seconds) and timeout;
- what a build log says (its summary, lintian's tags): :mod:`mini_buildd.tools.sbuild_log`;
- :func:`chroot_preinstall_packages`: what the chroot check should preinstall.

Chroot modes
------------
:data:`CHROOT_MODES`: ``schroot`` (``--chroot`` is the schroot name; sessions by schroot, its
fstab binds the chroot's ccache dir) and ``unshare`` (``--chroot`` is the path of the chroot's
mmdebstrap tarball, see :mod:`mini_buildd.tools.chroot_backends`): sbuild unpacks it into a
user namespace for each build, so neither the build nor the chroot needs root; the building user
needs subordinate ids (:func:`mini_buildd.tools.mmdebstrap.check_subids`) instead of group
``sbuild``. Nothing of the host is bound into an unshare build, so ``%LIBDIR%`` (the ccache dir)
is :data:`UNSHARE_LIBDIR` inside the chroot: ccache works, but its cache ends with the build.
piuparts and autopkgtest are run by schroot name and are refused in unshare mode. A killed
unshare build's unpack dir (named in its log, :func:`unpack_dir_of`) is removed in a user
namespace mapping our subordinate ids, whose files they are.

How the setup scripts reach their data (build confinement)
----------------------------------------------------------
sbuild runs ``--chroot-setup-commands`` *inside* the chroot session as root. It neither copies
the command into the chroot nor runs it through a shell: the string is split at white space and
executed. So the script file itself must exist at the same absolute path inside the chroot.
Binding the instance's ``var/shared`` into every chroot (upstream's way) lets every build write
into every other build's dir, setup scripts included. Instead, the first external command of
every build (``--pre-build-commands``, run by sbuild on the host right after the session began)
is :data:`COPY_IN` (``.mbd-copy-in`` in the build dir): it pipes a tar of this build's
``.setup.d``, ``.config`` and ``.sbuildrc`` into the session (``%SBUILD_CHROOT_EXEC``, as root)
and unpacks it at the same path there. That copy lives and dies with the session; nothing of
the host's ``var/shared`` is visible inside the chroot except the chroot's own ccache dir (see
:mod:`mini_buildd.tools.schroot`). The scripts find the build dir from their own path (the parent of
``.setup.d``) and read ``.config/*`` (from the buildrequest tar) and ``.sbuildrc`` from there:
nothing about the build dir is baked into the scripts, so the same text works for any build
dir. Build dir paths must not contain white space (sbuild splits the command); ``%`` is escaped
for sbuild.

sbuild versions and lintian (the ``--no-apt-update`` pitfall)
-------------------------------------------------------------
Upstream always passes ``--no-apt-update``: our ``apt-update`` setup block updates the lists
after ``apt-setup`` installed the build's sources. sbuild installs lintian into the session
*after* the build, through a dummy package in its internal archive:

- sbuild < 0.91 (bookworm 0.85, trixie 0.89): the lintian install refreshes only the
  internal archive, so ``--no-apt-update`` works, and we keep it (verified with 0.85).
- sbuild >= 0.91.6 ("Always honor --no-apt-update"): with ``--no-apt-update`` that refresh is
  skipped, apt never sees the dummy package ("Unable to locate package
  sbuild-build-depends-lintian-dummy"), and the summary says ``Lintian: error`` for every build.
  sbuild >= 0.91.3 also runs ``apt-get distclean`` (apt >= 2.7.8 chroots) after installing the
  build dependencies, which deletes the lists lintian's own dependencies would come from.

So for builds that run lintian on sbuild >= 0.91 (or an sbuild whose version we can't read) we
pass ``--apt-update`` (sbuild refreshes all lists before installing lintian), and on sbuild >=
0.91.10 also ``--no-apt-distclean`` (the refresh is then a cheap "not modified" round, not a
download of every index again). Builds without lintian keep ``--no-apt-update``. (Verified with
0.91.10: ``--no-apt-update`` gives ``Lintian: error``, our options a passing lintian run.) sbuild >=
0.90 defaults to the unshare backend: we always pass ``--chroot-mode schroot``; from 0.91 the
schroot backend needs the ``sbuild-schroot`` package. Summary words differ too: lintian says
``pass``/``info``/``warn``/``error``/``fail`` on 0.85, and ``successful (worst tag: warn)`` /
``failed - policy violation`` on 0.91.3+; the first word works with
:func:`mini_buildd.dist.sbuild_check_passes` for both. sbuild (0.85 and later) makes its
internal archive key per build: no ``sbuild-update --keygen`` is needed. A non-root daemon user must be an
*effective* member of group ``sbuild`` (:func:`check_user` tells before sbuild does).

Performance (what costs time, and what we do about it)
------------------------------------------------------
Measured with a trivial arch:all debhelper package, bookworm/amd64, sbuild 0.85, fast mirror,
2 CPUs shared with other work (so +-2 s noise); times of whole sbuild runs, seconds:

=====================================  ==================  ===================================
run                                    plain chroot        chroot with preinstalled packages
=====================================  ==================  ===================================
bare ``sbuild``, no lintian            12.7, 13.9          10.8, 11.2, 15.7
wrapper, default blocks, no lintian    13.4, 16.7          10.3, 11.5, 12.4
bare ``sbuild``, lintian               30.9, 34.8          13.7, 14.9, 15.0
wrapper, default blocks, ERRFAIL       31.5, 37.1          12.9, 13.1, 17.2
=====================================  ==================  ===================================

(sbuild 0.91.10, preinstalled chroot: wrapper ERRFAIL 15.9, 22.9; bare with lintian 16.4, 17.9.)

- Installing tools per build is the big cost: lintian and its ~100 dependencies add ~18 s to
  every lintian run; ``ccache``/``eatmydata`` (default blocks) ~1-3 s, ``fakeroot`` (sbuild
  always installs it), ``aptitude`` (that resolver) ~9 s. The chroot check should preinstall
  :func:`chroot_preinstall_packages` (with :func:`chroot_preinstall_script`) into the chroot's
  source: then our overhead over bare sbuild is within the noise, and lintian ERRFAIL builds
  cost ~2-4 s more than builds without lintian instead of ~20 s. (Trade-off: tools present
  during the build can hide a missing Build-Depends on one of their dependencies;
  ``chroot_preinstall_packages(lintian=False)`` keeps lintian out of the build environment.)
- ``eatmydata`` (default block) makes dpkg skip fsync for everything installed in the session,
  which pays for the setup blocks' own cost.
- Our ``apt-update`` block is needed anyway (the build's sources differ from the chroot's), so
  ``--no-apt-update`` avoids a second update (see above for when we can't).
- ``--no-apt-upgrade``/``--no-apt-distupgrade``: sbuild's default dist-upgrade (after our
  apt-update) keeps builds on current packages, as Debian's buildds do; with an up-to-date
  chroot it costs about a second, so we keep it. Keeping chroots upgraded is the chroot
  maintenance's job.
- The build log is written by sbuild directly into the log file (no copying through Python).
"""

import logging
import os
import pathlib
import re
import shlex
import threading
import time
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Optional, Union

from mini_buildd.tools import call, mmdebstrap
from mini_buildd import dist, errors

LOG = logging.getLogger(__name__)

#: The sbuild executable (tests may point it to another sbuild).
SBUILD = "sbuild"

#: Seconds between SIGTERM and SIGKILL when a build is canceled or timed out (upstream §6.5).
KILL_AFTER = 6.0

#: Subdirectory of the build dir holding the setup scripts; config files come from the breq tar.
SETUP_DIR = ".setup.d"
CONFIG_DIR = ".config"
SBUILDRC = ".sbuildrc"
#: Host-side script (in the build dir) copying the build's setup files into its session.
COPY_IN = ".mbd-copy-in"

#: sbuild's default ``$path`` (sbuild.conf(5)).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/games"

#: Fixed piuparts options (upstream §6.1); ``{chroot}`` is the schroot name.
PIUPARTS_OPTIONS = ("--schroot {chroot} --dpkg-force-confdef --warn-on-debsums-errors --warn-on-leftovers-after-purge "
                    "--warn-on-others --keep-sources-list")
AUTOPKGTEST_OPTIONS = "-- schroot {chroot}"

BUILD_DEP_RESOLVERS = ("apt", "aptitude", "internal", "aspcud", "xapt", "null")

#: sbuild's chroot modes we drive (see module doc).
CHROOT_MODES = ("schroot", "unshare")
#: ``%LIBDIR%`` of unshare mode builds: a path inside the build's own chroot (see module doc).
UNSHARE_LIBDIR = "/tmp/mini-buildd-libdir"
#: sbuild's default unshare unpack dir (sbuild.conf(5) ``UNSHARE_TMPDIR_TEMPLATE``).
UNSHARE_TMPDIR_TEMPLATE = "/tmp/tmp.sbuild.XXXXXXXXXX"

# sbuild versions with behaviour changes we adapt to (see module doc).
_V_APT_UPDATE_FOR_LINTIAN = (0, 91, 0)
_V_NO_APT_DISTCLEAN_OPTION = (0, 91, 10)


class SbuildError(errors.ConfigError):
    """sbuild can't be run (setup problem, not a failed build)."""


# ---------------------------------------------------------------------------------------------
# .sbuildrc (upstream §6.2)
# ---------------------------------------------------------------------------------------------

#: Perl text of each config block; ``%LIBDIR%`` is replaced by the (Perl-quoted) libdir.
CONFIG_BLOCKS = {
    "set-default-path": f"$path = '{DEFAULT_PATH}';\n",
    "ccache": ("$path = '/usr/lib/ccache:' . ($path // '" + DEFAULT_PATH + "');\n"
               "$build_environment = { %{$build_environment // {}}, 'CCACHE_DIR' => '%LIBDIR%/.ccache' };\n"),
}


def _perl_single_quoted(text: object) -> str:
    """``text`` escaped for use inside a Perl single-quoted string."""
    return str(text).replace("\\", "\\\\").replace("'", "\\'")


def _block_names(blocks: Union[str, Iterable[str], None], validate: Callable[[str], list[str]]) -> list[str]:
    if isinstance(blocks, str):
        return validate(blocks)
    return validate(" ".join(blocks or ()))


def sbuildrc(config_blocks: Union[str, Iterable[str], None], libdir: call.FsPath, snippet: str = "") -> str:
    """The text of ``.sbuildrc``: config blocks in the given order (``%LIBDIR%`` = ``libdir``),
    then ``snippet`` (the Distribution's ``sbuildrc_snippet``, placeholders expanded too), then ``1;``.

    ``config_blocks``: space-separated names or a sequence (validated: unknown names raise
    ``ValueError``).
    """
    names = _block_names(config_blocks, dist.validate_config_blocks)
    libdir_perl = _perl_single_quoted(libdir)
    parts = ["# .sbuildrc generated by mini-buildd: do not edit.\n"]
    for name in names:
        parts.append(f"\n# mini-buildd config block: {name}: {dist.SBUILD_CONFIG_BLOCKS[name]}\n")
        parts.append(CONFIG_BLOCKS[name].replace("%LIBDIR%", libdir_perl))
    if snippet and snippet.strip():
        parts.append("\n# Distribution's sbuildrc snippet\n")
        parts.append(snippet.replace("%LIBDIR%", str(libdir)).rstrip("\n") + "\n")
    parts.append("\n1;\n")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# Setup scripts (upstream §6.2)
# ---------------------------------------------------------------------------------------------

#: apt-get options of all setup blocks.
APT_GET = ("apt-get -q -y -o APT::Install-Recommends=false -o Acquire::Languages=none -o Dpkg::Use-Pty=false "
           "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confnew")

#: Timeouts (seconds) of the successive apt-get update attempts of the apt-update block.
APT_UPDATE_TIMEOUTS = (10, 40, 80, 160, 320)

#: The shell text of the setup blocks, the copy-in and the preinstall script: one file each,
#: shipped as package data (their only template syntax: ``@NAME@`` placeholders, see :func:`_render`).
BLOCKS_DIR = pathlib.Path(__file__).resolve().with_name("sbuild_blocks")

_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


def shell_text(name: str) -> str:
    """The text of the shipped shell file ``sbuild_blocks/<name>.sh``."""
    return (BLOCKS_DIR / f"{name}.sh").read_text(encoding="utf-8")


def _render(text: str, **values: object) -> str:
    """``text`` with each ``@KEY@`` replaced by ``values["KEY"]`` (a placeholder without a value raises KeyError)."""
    return _PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), text)


#: Shell function ``mbd_dearmor FILE``: the binary OpenPGP data of all armor blocks in FILE on
#: stdout, without gpg (old chroots have none): base64 body of each block, checksum line dropped.
DEARMOR_SH = shell_text("dearmor")

#: APT configuration blocks: name -> apt.conf text written to /etc/apt/apt.conf.d/00mbd-<name>.
APT_CONF_BLOCKS = {
    "apt-no-check-valid-until": 'Acquire::Check-Valid-Until "false";',
    "apt-allow-unauthenticated": 'APT::Get::AllowUnauthenticated "true"; Acquire::AllowInsecureRepositories "true";',
    "apt-force-yes": 'APT::Get::force-yes "true";',
    "apt-no-cache": 'Acquire::http::No-Cache "true";',
    "apt-no-pipelining": 'Acquire::http::Pipeline-Depth "0";',
}

#: Script body of each setup block (after the common prelude).
SETUP_BLOCKS = {name: shell_text(name) for name in (
    "apt-setup", "ccache", "eatmydata", "show-sbuildrc", "apt-key-add", "apt-clear", "bash-devices", "schroot-shm", "sun-java6-license")}
SETUP_BLOCKS["apt-update"] = _render(shell_text("apt-update"), TIMEOUTS=" ".join(str(t) for t in APT_UPDATE_TIMEOUTS))
SETUP_BLOCKS["apt-key-binary"] = DEARMOR_SH + shell_text("apt-key-binary")
SETUP_BLOCKS.update({name: _render(shell_text("apt-conf"), NAME=name, APT_CONF=text) for name, text in APT_CONF_BLOCKS.items()})

#: Name of the script made from the Distribution's custom ``chroot_setup_script``.
CUSTOM_SCRIPT_NAME = "chroot-setup-script"


def _prelude(name: str, description: str) -> str:
    return "#!/bin/sh\n" + _render(shell_text("prelude"), NAME=name, DESCRIPTION=description, CONFIG_DIR=CONFIG_DIR, APT_GET=APT_GET)


def _custom_script(text: str) -> str:
    """The custom script; shell scripts (or text without ``#!``) get the banner after the first line."""
    banner = f'echo "MINI_BUILDD: {CUSTOM_SCRIPT_NAME}: Custom chroot setup script of the distribution"\n'
    text = text.replace("\r\n", "\n")
    if not text.startswith("#!"):
        return "#!/bin/sh -e\n" + banner + text.rstrip("\n") + "\n"
    first, _, rest = text.partition("\n")
    if re.search(r"\b(sh|bash|dash)\b", first):
        return first + "\n" + banner + rest.rstrip("\n") + "\n"
    return text.rstrip("\n") + "\n"


def setup_scripts(setup_blocks: Union[str, Iterable[str], None], custom_script: str = "") -> list[tuple[str, str]]:
    """The chroot setup scripts as ``[(file name, text), ...]`` in run order.

    ``setup_blocks``: space-separated names or a sequence (validated with
    :func:`mini_buildd.dist.validate_setup_blocks`); file names are ``NNN_<block>``. A non-empty
    ``custom_script`` (the Distribution's ``chroot_setup_script``) comes last as
    ``NNN_chroot-setup-script``. Every script prints ``MINI_BUILDD: <name>: <description>``.
    """
    names = _block_names(setup_blocks, dist.validate_setup_blocks)
    scripts: list[tuple[str, str]] = []
    for number, name in enumerate(names):
        scripts.append((f"{number:03d}_{name}", _prelude(name, dist.SBUILD_SETUP_BLOCKS[name]) + SETUP_BLOCKS[name]))
    if custom_script and custom_script.strip():
        scripts.append((f"{len(names):03d}_{CUSTOM_SCRIPT_NAME}", _custom_script(custom_script)))
    return scripts


def write_files(build_dir: call.FsPath, sbuildrc_text: str, scripts: Iterable[tuple[str, str]]) -> list[pathlib.Path]:
    """Write ``.sbuildrc``, the setup scripts (mode 0755) and the copy-in script
    (:data:`COPY_IN`) below ``build_dir``; return the scripts' absolute paths (for :func:`command`)."""
    build_dir = pathlib.Path(build_dir).resolve()
    (build_dir / SBUILDRC).write_text(sbuildrc_text, encoding="utf-8")
    setup_dir = build_dir / SETUP_DIR
    setup_dir.mkdir(exist_ok=True)
    paths: list[pathlib.Path] = []
    for name, text in scripts:
        path = setup_dir / name
        path.write_text(text, encoding="utf-8")
        path.chmod(0o755)
        paths.append(path)
    entries = " ".join(e for e in (SETUP_DIR, CONFIG_DIR, SBUILDRC) if (build_dir / e).exists())
    copy_in = build_dir / COPY_IN
    copy_in.write_text("#!/bin/sh\n" + _render(shell_text("copy-in"), ENTRIES=entries, COPY_IN=COPY_IN), encoding="utf-8")
    copy_in.chmod(0o755)
    return paths


def copy_in_script(setup_scripts: Iterable[call.FsPath]) -> Optional[pathlib.Path]:  # pylint: disable=redefined-outer-name
    """The copy-in script of the build whose setup scripts are ``setup_scripts`` (None if there are none)."""
    for given in setup_scripts:
        script = pathlib.Path(given)
        if script.parent.name == SETUP_DIR and (script.parent.parent / COPY_IN).exists():
            return script.parent.parent / COPY_IN
    return None


# ---------------------------------------------------------------------------------------------
# Chroot preinstall (performance)
# ---------------------------------------------------------------------------------------------

def chroot_preinstall_packages(build_dep_resolver: str = "apt", lintian: bool = True, ccache: bool = True, eatmydata: bool = True) -> list[str]:
    """Packages the chroot check should install into a chroot's source so builds don't install
    them every time: ``fakeroot`` (sbuild installs it for every build), ``eatmydata``/``ccache``
    (default setup blocks), ``lintian`` (default QA mode ERRFAIL), ``aptitude`` (if that is the
    build dependency resolver). See the module doc for the ``lintian`` trade-off."""
    packages = ["fakeroot"]
    if eatmydata:
        packages.append("eatmydata")
    if ccache:
        packages.append("ccache")
    if lintian:
        packages.append("lintian")
    if build_dep_resolver == "aptitude":
        packages.append("aptitude")
    return packages


def chroot_preinstall_script(packages: Iterable[str]) -> str:
    """Shell script (run as root in a *source* session of the chroot, e.g.
    ``schroot.run_in_session(sid, ["sh", "-c", script])``) that installs the missing ``packages``
    with the chroot's own APT sources; a quick no-op when all are installed.

    Conffile prompts must be answered non-interactively: schroot copies host files such as
    ``/etc/protocols`` into sessions, so e.g. netbase (a lintian dependency) would prompt.
    """
    return _render(shell_text("chroot-preinstall"), PACKAGES=" ".join(shlex.quote(p) for p in packages))


# ---------------------------------------------------------------------------------------------
# sbuild version and command line (upstream §6.1)
# ---------------------------------------------------------------------------------------------

_VERSION_CACHE: dict[str, Optional[tuple[int, ...]]] = {}


def parse_version(text: Optional[str]) -> Optional[tuple[int, ...]]:
    """``(0, 85, 0)`` from ``sbuild --version`` output (or a version string); ``None`` if not found."""
    match = re.search(r"(?:^|\s|\()(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if match is None:
        return None
    return tuple(int(g or 0) for g in match.groups())


def version(sbuild: Optional[str] = None) -> Optional[tuple[int, ...]]:
    """The installed sbuild's version tuple (cached per executable), ``None`` if unknown."""
    program = sbuild or SBUILD
    if program not in _VERSION_CACHE:
        try:
            first = call.run([program, "--version"], timeout=60).strip().splitlines()
            _VERSION_CACHE[program] = parse_version(first[0] if first else "")
        except call.CallError as e:
            LOG.warning("Can't get sbuild version: %s", e)
            return None
    return _VERSION_CACHE[program]


def _opt(name: str, value: object) -> str:
    """``--name=value`` (one argv element: values may start with ``-``)."""
    return f"--{name}={value}"


def _escape_percent(text: object) -> str:
    """sbuild expands ``%x`` escapes in external commands; ``%%`` is a literal ``%``."""
    return str(text).replace("%", "%%")


def command(dist_str: str, arch: str, chroot: str, dsc: call.FsPath, *, build_dep_resolver: str = "apt",
            setup_scripts: Sequence[call.FsPath] = (), arch_all: bool = False, add_depends: Iterable[str] = (),  # pylint: disable=redefined-outer-name
            lintian_mode: Any = dist.QAMode.ERRFAIL, lintian_options: str = "", lintian_warnfail_options: str = "",
            piuparts_mode: Any = dist.QAMode.DISABLED, piuparts_options: str = "", piuparts_root_args: Optional[str] = None,
            autopkgtest_mode: Any = dist.QAMode.DISABLED, keyid: Optional[str] = None, debug: bool = False,
            sbuild_version: Union[str, tuple[int, ...], None] = "auto", chroot_mode: str = "schroot") -> list[str]:
    """The sbuild argv for one build (run it with the build dir as working directory).

    - ``dist_str``: the build's distribution string (``--dist``); ``chroot``: the schroot name
      (``chroot_mode`` schroot) or the chroot tarball's path (``chroot_mode`` unshare);
    - ``setup_scripts``: absolute paths of the setup scripts (inside the shared build dir);
    - ``add_depends``: extra build dependencies (``--add-depends`` each);
    - QA modes (:class:`mini_buildd.dist.QAMode` or names): lintian runs unless DISABLED, with
      ``lintian_options`` and, in WARNFAIL, ``lintian_warnfail_options``; piuparts/autopkgtest
      run unless DISABLED (piuparts: ``piuparts_options`` extra, ``piuparts_root_args`` if given);
    - ``keyid``: sign the result with this key (needs ``GNUPGHOME``, see :func:`environment`);
    - ``debug``: ``--debug``;
    - ``sbuild_version``: version tuple, ``"auto"`` (ask :func:`version`) or ``None`` (unknown):
      decides the lintian workarounds described in the module doc.
    """
    lintian_mode, piuparts_mode, autopkgtest_mode = (dist.QAMode.parse(m) for m in (lintian_mode, piuparts_mode, autopkgtest_mode))
    if build_dep_resolver not in BUILD_DEP_RESOLVERS:
        raise ValueError(f"Unknown build dependency resolver '{build_dep_resolver}' (use {'|'.join(BUILD_DEP_RESOLVERS)})")
    if chroot_mode not in CHROOT_MODES:
        raise ValueError(f"Unknown chroot mode '{chroot_mode}' (use {'|'.join(CHROOT_MODES)})")
    if chroot_mode == "unshare":
        if not os.path.isabs(chroot):
            raise SbuildError(f"Unshare mode needs the chroot tarball's absolute path, not '{chroot}'")
        for tool, mode in (("piuparts", piuparts_mode), ("autopkgtest", autopkgtest_mode)):
            if dist.QAMode.parse(mode) != dist.QAMode.DISABLED:
                raise SbuildError(f"{tool} needs a schroot chroot: it can't run with an unshare mode chroot (disable it in the distribution)")
    known_version = version() if sbuild_version == "auto" else typing.cast(Optional[tuple[int, ...]], sbuild_version)
    run_lintian = lintian_mode != dist.QAMode.DISABLED

    argv = [SBUILD, "--chroot-mode", chroot_mode, "--dist", dist_str, "--arch", arch, "--chroot", chroot,
            "--build-dep-resolver", build_dep_resolver, "--nolog",
            "--log-external-command-output", "--log-external-command-error"]

    # apt update: see module doc
    if run_lintian and (known_version is None or known_version >= _V_APT_UPDATE_FOR_LINTIAN):
        argv.append("--apt-update")
        if known_version is not None and known_version >= _V_NO_APT_DISTCLEAN_OPTION:
            argv.append("--no-apt-distclean")
    else:
        argv.append("--no-apt-update")

    copy_in = copy_in_script(setup_scripts)
    if copy_in is not None:
        if any(c.isspace() for c in str(copy_in)):
            raise SbuildError(f"Build dir must not contain white space (sbuild splits commands): {copy_in}")
        argv.append(_opt("pre-build-commands", _escape_percent(copy_in) + " %SBUILD_CHROOT_EXEC"))
    for given in setup_scripts:
        script = str(given)
        if any(c.isspace() for c in script):
            raise SbuildError(f"Setup script path must not contain white space (sbuild splits commands): {script}")
        argv.append(_opt("chroot-setup-commands", _escape_percent(script)))

    argv.append("--arch-all" if arch_all else "--no-arch-all")
    argv += [_opt("add-depends", dep) for dep in add_depends if dep and dep.strip()]

    if run_lintian:
        argv.append("--run-lintian")
        if lintian_options and lintian_options.strip():
            argv.append(_opt("lintian-opts", lintian_options.strip()))
        if lintian_mode == dist.QAMode.WARNFAIL and lintian_warnfail_options and lintian_warnfail_options.strip():
            argv.append(_opt("lintian-opts", lintian_warnfail_options.strip()))
    else:
        argv.append("--no-run-lintian")

    if piuparts_mode != dist.QAMode.DISABLED:
        argv += ["--run-piuparts", _opt("piuparts-opts", PIUPARTS_OPTIONS.format(chroot=chroot))]
        if piuparts_options and piuparts_options.strip():
            argv.append(_opt("piuparts-opts", piuparts_options.strip()))
        if piuparts_root_args is not None:
            argv.append(_opt("piuparts-root-args", piuparts_root_args))
    else:
        argv.append("--no-run-piuparts")

    if autopkgtest_mode != dist.QAMode.DISABLED:
        argv += ["--run-autopkgtest", _opt("autopkgtest-opts", AUTOPKGTEST_OPTIONS.format(chroot=chroot)),
                 _opt("autopkgtest-root-args", "")]
    else:
        argv.append("--no-run-autopkgtest")

    if debug:
        argv.append("--debug")
    if keyid:
        argv.append(_opt("keyid", keyid))
    argv.append(str(dsc))
    return argv


def environment(build_dir: call.FsPath, gnupg_home: Optional[call.FsPath] = None, deb_build_options: str = "", deb_build_profiles: str = "") -> dict[str, str]:
    """sbuild's environment additions: ``HOME`` = build dir (sbuild reads ``~/.sbuildrc``),
    ``GNUPGHOME`` (for ``--keyid`` signing), ``DEB_BUILD_OPTIONS``/``DEB_BUILD_PROFILES`` if set."""
    env = {"HOME": str(pathlib.Path(build_dir).resolve())}
    if gnupg_home:
        env["GNUPGHOME"] = str(gnupg_home)
    if deb_build_options and deb_build_options.strip():
        env["DEB_BUILD_OPTIONS"] = " ".join(deb_build_options.split())
    if deb_build_profiles and deb_build_profiles.strip():
        env["DEB_BUILD_PROFILES"] = " ".join(deb_build_profiles.split())
    return env


# ---------------------------------------------------------------------------------------------
# Running sbuild (upstream §6.1, §6.5)
# ---------------------------------------------------------------------------------------------

def chroot_mode_of(argv: Sequence[str]) -> str:
    """The ``--chroot-mode`` of sbuild argv ``argv`` (sbuild's default: schroot)."""
    for i, arg in enumerate(argv):
        if arg == "--chroot-mode" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--chroot-mode="):
            return arg.split("=", 1)[1]
    return "schroot"


def check_user(chroot_mode: str = "schroot") -> None:
    """Raise :class:`SbuildError` unless we may run sbuild in ``chroot_mode``: in schroot mode, we
    are root or an effective member of group ``sbuild`` (sbuild refuses otherwise; a daemon
    started before being added to the group isn't); in unshare mode, we have subordinate ids."""
    if chroot_mode == "unshare":
        try:
            mmdebstrap.check_subids()
        except mmdebstrap.MmdebstrapError as e:
            raise SbuildError(str(e)) from e
        return
    if os.geteuid() == 0:
        return
    import grp  # pylint: disable=import-outside-toplevel
    try:
        gid = grp.getgrnam("sbuild").gr_gid
    except KeyError:
        raise SbuildError("Group 'sbuild' does not exist: is sbuild installed?") from None
    if gid not in os.getgroups() and gid != os.getegid():
        import pwd  # pylint: disable=import-outside-toplevel
        user = pwd.getpwuid(os.geteuid()).pw_name
        raise SbuildError(f"User '{user}' is not an effective member of group 'sbuild' "
                          f"(run 'adduser {user} sbuild' and restart the daemon)")


#: Where build logs name the schroot session: sbuild <= 0.89 early ("Log filtering will replace
#: 'var/run/schroot/mount/<session>'"), all versions in the build environment dump.
_SESSION_RES = (re.compile(r"Log filtering will replace '(?:var/)?run/schroot/mount/([^'/]+)'"),
                re.compile(r"^SCHROOT_SESSION_ID=(\S+)$", re.MULTILINE))


def session_of(buildlog_text: Optional[str]) -> Optional[str]:
    """The schroot session id sbuild used, from its build log (``None`` if not there (yet))."""
    for regex in _SESSION_RES:
        match = regex.search(buildlog_text or "")
        if match:
            return match.group(1)
    return None


def sessions_of(argvs: Iterable[Sequence[str]]) -> set[Optional[str]]:
    """Session ids of the ``schroot --run-session`` commands among ``argvs``."""
    sessions: set[Optional[str]] = set()
    for argv in argvs:
        if not argv or os.path.basename(argv[0]) != "schroot" or "--run-session" not in argv:
            continue
        for i, arg in enumerate(argv[:-1]):
            if arg in ("-c", "--chroot"):
                sessions.add(argv[i + 1].removeprefix("session:"))
        sessions.update(a.split("=", 1)[1].removeprefix("session:") for a in argv if a.startswith("--chroot="))
    return sessions


def _end_left_sessions(buildlog_path: call.FsPath, killed_argvs: Iterable[Sequence[str]]) -> None:
    """After sbuild was killed: end the schroot session(s) it left (known from the processes we
    killed and from the log)."""
    from mini_buildd.tools import schroot  # pylint: disable=import-outside-toplevel
    sessions = sessions_of(killed_argvs)
    try:
        sessions.add(session_of(pathlib.Path(buildlog_path).read_text(encoding="utf-8", errors="replace")))
    except OSError as e:
        LOG.warning("Can't read build log %s: %s", buildlog_path, e)
    sessions.discard(None)
    if not sessions:
        LOG.warning("Killed sbuild (%s): no schroot session known (none yet, or one is left behind)", buildlog_path)
    try:
        existing = schroot.list_sessions()
        for session in sorted(s for s in sessions & set(existing) if s is not None):
            LOG.warning("Ending schroot session %s left by killed sbuild", session)
            schroot.end_session(session)
    except (call.CallError, schroot.SchrootError) as e:
        LOG.error("Can't clean up after killed sbuild (%s): %s", buildlog_path, e)


#: Where build logs of unshare mode name the unpack dir (sbuild 0.85+: ``Unpacking TARBALL to DIR...``).
_UNPACK_RE = re.compile(r"^Unpacking \S+ to (/\S+)\.\.\.$", re.MULTILINE)
#: The unpack dirs sbuild makes from :data:`UNSHARE_TMPDIR_TEMPLATE` (nothing else is ever removed).
_UNPACK_DIR_RE = re.compile(re.escape(UNSHARE_TMPDIR_TEMPLATE.removesuffix("XXXXXXXXXX")) + r"[A-Za-z0-9_]{10}")


def unpack_dir_of(buildlog_text: Optional[str]) -> Optional[str]:
    """The unpack dir of an unshare mode build, from its build log (``None`` if not there (yet))."""
    match = _UNPACK_RE.search(buildlog_text or "")
    return match.group(1) if match else None


def _remove_unpack_dir(buildlog_path: call.FsPath) -> None:
    """After sbuild in unshare mode was killed: remove the unpack dir it left. Its files belong to
    our subordinate ids, so ``rm`` runs as root of a user namespace mapping them (as sbuild does)."""
    try:
        unpack_dir = unpack_dir_of(pathlib.Path(buildlog_path).read_text(encoding="utf-8", errors="replace"))
    except OSError as e:
        LOG.warning("Can't read build log %s: %s", buildlog_path, e)
        return
    if unpack_dir is None or not os.path.isdir(unpack_dir):
        return
    if not _UNPACK_DIR_RE.fullmatch(unpack_dir):
        LOG.error("Killed sbuild (%s): not removing '%s' (not an unpack dir of sbuild)", buildlog_path, unpack_dir)
        return
    LOG.warning("Removing unpack dir %s left by killed sbuild", unpack_dir)
    try:
        call.run(["unshare", "--map-auto", "--setuid=0", "--setgid=0", "rm", "-rf", "--one-file-system", "--", unpack_dir], timeout=600)
    except call.CallError as e:
        LOG.error("Can't remove unpack dir %s left by killed sbuild: %s", unpack_dir, e)


def _ensure_bind_sources(argv: Sequence[str]) -> None:
    """The chroot's own bind-mounted dirs (its ccache dir) must exist, or schroot fails the session."""
    from mini_buildd.tools import schroot  # pylint: disable=import-outside-toplevel
    for i, arg in enumerate(argv[:-1]):
        if arg == "--chroot":
            schroot.ensure_bind_sources(argv[i + 1])


def _log_note(buildlog_path: call.FsPath, text: str) -> None:
    with open(buildlog_path, "a", encoding="utf-8") as f:
        f.write(f"\nMINI_BUILDD: {text}\n")


def run(build_dir: call.FsPath, argv: Sequence[str], env: Optional[Mapping[str, str]], buildlog_path: Optional[call.FsPath],
        cancel_event: Optional[threading.Event] = None, timeout: Optional[float] = None, kill_after: float = KILL_AFTER) -> int:
    """Run sbuild ``argv`` in ``build_dir``; its combined output goes live to ``buildlog_path``.

    ``env`` (see :func:`environment`) is added to the daemon's environment (``HOME`` defaults
    to the build dir). If ``cancel_event`` (a ``threading.Event``) gets set, or ``timeout``
    seconds pass, sbuild is terminated (it cleans up its session), killed with its process
    group after ``kill_after`` seconds (we then end its session), and a ``MINI_BUILDD:`` line
    saying so is appended to the log. Returns sbuild's exit code (negative: killed by signal).
    Without ``buildlog_path``, sbuild runs in the foreground on our terminal (a hook's shell works).
    """
    chroot_mode = chroot_mode_of(argv)
    check_user(chroot_mode)
    if chroot_mode == "schroot":
        _ensure_bind_sources(argv)
    build_path = pathlib.Path(build_dir).resolve()
    full_env = {"HOME": str(build_path)}
    full_env.update(env or {})
    if buildlog_path is None:
        return call.foreground(argv, env=full_env, cwd=build_path)
    start = time.monotonic()
    proc = call.popen(argv, output=buildlog_path, env=full_env, cwd=build_path, new_session=True, log_level=logging.INFO)
    reason: Optional[str] = None
    while True:
        try:
            proc.wait(timeout=0.5)
            break
        except call.TimeoutExpired:
            pass
        if cancel_event is not None and cancel_event.is_set():
            reason = "canceled"
        elif timeout is not None and time.monotonic() - start > timeout:
            reason = f"timed out after {timeout}s"
        if reason:
            LOG.warning("sbuild in %s %s: terminating", build_path, reason)
            killed = call.stop(proc, grace=kill_after)
            if killed and chroot_mode == "schroot":
                _end_left_sessions(buildlog_path, killed)
            elif killed:
                _remove_unpack_dir(buildlog_path)
            _log_note(buildlog_path, f"sbuild {reason}" + (" (killed)" if killed else " (terminated)"))
            break
    LOG.info("sbuild in %s: exit %s after %.1fs", build_path, proc.returncode, time.monotonic() - start)
    return proc.returncode


def shell_command(argv: Iterable[object]) -> str:
    """``argv`` as one shell-quoted line (for logs and debugging)."""
    return shlex.join(str(a) for a in argv)
