"""Buildrequests (upstream §1.4 step 3): one source for one architecture, made by the packager and
read by the builder, with their ``.changes.tar`` (``.config/`` files and the source).

:class:`BuildrequestData` is what a buildrequest carries (its fields), built from and written to
the deb822 form; :class:`Buildrequest` is a buildrequest file on disk; :func:`create_buildrequest`
writes and signs one in the upstream 2.x wire format.
"""

import dataclasses
import logging
import os
import pathlib
import tarfile
import time
import typing

from mini_buildd.dist import DistStr, QAMode
from mini_buildd.changes import parsing, tars, writing
from mini_buildd.changes.model import Changes
from mini_buildd.changes.names import ARCH_REGEX, BUILDREQUEST, PREFIX, ChangesError, buildlog_name, name_for, snake

LOG = logging.getLogger(__name__)

#: Names of the config files in a buildrequest tar (below ``.config/``), in tar order.
CONFIG_FILES = ("apt_sources.list", "apt_preferences", "apt_keys", "ssl_cert", "chroot_setup_script",
                "sbuildrc_snippet")
CONFIG_DIR = ".config"

#: Buildrequest ``X-Mini-Buildd-*`` fields (without prefix) after the timecode, in file order;
#: ``Arch-All`` is only written for the arch that builds arch:all.
BUILDREQUEST_FIELDS = (
    "Upload-To", "Packager", "Arch-All", "Build-Dep-Resolver", "Sbuild-Config-Blocks", "Sbuild-Setup-Blocks",
    "Deb-Build-Options", "Deb-Build-Profiles", "Add-Depends", "Lintian-Mode", "Lintian-Extra-Options",
    "Lintian-Warnfail-Options", "Autopkgtest-Mode", "Piuparts-Mode", "Buildlog", "Builder", "Buildlog-Building",
    "Buildlog-Installed",
)

#: Optional buildrequest fields (written after the others when given).
BUILDREQUEST_OPTIONAL_FIELDS = ("Build-Time-Limit",)

#: Defaults of fields a buildrequest file may lack.
_DEFAULTS = {"Build-Dep-Resolver": "apt", "Sbuild-Config-Blocks": "", "Sbuild-Setup-Blocks": "",
             "Deb-Build-Options": "", "Deb-Build-Profiles": "", "Add-Depends": "", "Lintian-Mode": "DISABLED",
             "Lintian-Extra-Options": "", "Lintian-Warnfail-Options": "", "Autopkgtest-Mode": "DISABLED",
             "Piuparts-Mode": "DISABLED"}


@dataclasses.dataclass
class BuildrequestData:  # pylint: disable=too-many-instance-attributes
    """The fields of a buildrequest as written in it (one-line texts; QA modes by name).

    An attribute is the snake_case name of its field (``Upload-To``: ``upload_to``); ``arch_all``
    is ``X-Mini-Buildd-Arch-All: Yes``; ``build_time_limit`` is None when not given.
    """

    distribution: str
    source: str
    version: str
    architecture: str
    timecode: str
    upload_to: typing.Optional[str]
    packager: typing.Optional[str]
    arch_all: bool
    build_dep_resolver: str
    sbuild_config_blocks: str
    sbuild_setup_blocks: str
    deb_build_options: str
    deb_build_profiles: str
    add_depends: str
    lintian_mode: str
    lintian_extra_options: str
    lintian_warnfail_options: str
    autopkgtest_mode: str
    piuparts_mode: str
    buildlog: typing.Optional[str]
    builder: typing.Optional[str]
    buildlog_building: typing.Optional[str]
    buildlog_installed: typing.Optional[str]
    build_time_limit: typing.Optional[str] = None

    @classmethod
    def from_changes(cls, changes: Changes) -> "BuildrequestData":
        """The data of a parsed buildrequest (missing fields: their defaults, or None)."""
        values: dict[str, typing.Any]
        values = {snake(name): changes.x_get(name, _DEFAULTS.get(name))
                  for name in BUILDREQUEST_FIELDS + BUILDREQUEST_OPTIONAL_FIELDS if name != "Arch-All"}
        return cls(distribution=changes.distribution, source=changes.source, version=changes.version,
                   architecture=changes.architecture, timecode=changes.timecode,
                   arch_all=(changes.x_get("Arch-All") or "").lower() == "yes", **values)

    def to_fields(self, checksums_sha256: typing.Iterable[str], files: typing.Iterable[str]) -> list[tuple[str, typing.Any]]:
        """``[(field, value)]`` in file order, ending with the given file list lines."""
        fields: list[tuple[str, typing.Any]] = [
            ("Distribution", self.distribution), ("Source", self.source), ("Version", self.version),
            ("Architecture", self.architecture), (PREFIX + "Timecode", self.timecode)]
        for name in BUILDREQUEST_FIELDS:
            value = getattr(self, snake(name))
            if name == "Arch-All":
                if value:
                    fields.append((PREFIX + name, "Yes"))
                continue
            fields.append((PREFIX + name, value))
        fields += [(PREFIX + name, getattr(self, snake(name))) for name in BUILDREQUEST_OPTIONAL_FIELDS
                   if getattr(self, snake(name)) is not None]
        return fields + [("Checksums-Sha256", list(checksums_sha256)), ("Files", list(files))]


def _qa_mode(changes: Changes, name: str, value: str) -> QAMode:
    try:
        return QAMode.parse(value)
    except ValueError as e:
        raise ChangesError(f"{changes.name}: {PREFIX}{name}: {e}") from e


def _data_property(attribute: str) -> typing.Any:
    return property(lambda self: getattr(self.data, attribute))


class Buildrequest(Changes):
    """A buildrequest: one source for one architecture, with its ``.changes.tar`` (config + source).

    ``data``: its :class:`BuildrequestData`; the fields are also properties (QA modes as
    :class:`~mini_buildd.dist.QAMode`, block lists as lists, the build time limit in seconds)."""

    KIND = BUILDREQUEST

    def __init__(self, path: str | os.PathLike[str], timecode: typing.Optional[str] = None) -> None:
        super().__init__(path, timecode=timecode)
        self.data = BuildrequestData.from_changes(self)
        self.unpacked_dir: typing.Optional[pathlib.Path] = None

    @property
    def tar_path(self) -> pathlib.Path:
        return self.path.parent / (self.name + ".tar")

    def unpack(self, build_dir: str | os.PathLike[str]) -> pathlib.Path:
        """Check the listed files, then extract the tar safely into ``build_dir``; return ``build_dir``."""
        self.check_files()
        if tars.listed_tar(self) is None:
            raise ChangesError(f"{self.name}: the tar '{self.tar_path.name}' is not listed in Files")
        tars.safe_extract(self.tar_path, build_dir)
        self.unpacked_dir = pathlib.Path(build_dir)
        LOG.debug("%s: unpacked into %s", self.name, build_dir)
        return self.unpacked_dir

    def tar_names(self) -> list[str]:
        return tars.tar_names(self.tar_path)

    def dsc_name(self) -> str:
        names = [n for n in self.tar_names() if "/" not in n and n.endswith(".dsc")]
        if len(names) != 1:
            raise ChangesError(f"{self.name}: expected exactly one .dsc in the tar, found {len(names)}")
        return names[0]

    def dsc_path(self) -> pathlib.Path:
        """Path of the .dsc in the build dir (after :meth:`unpack`)."""
        if self.unpacked_dir is None:
            raise ChangesError(f"{self.name}: not unpacked yet")
        return self.unpacked_dir / self.dsc_name()

    def config_file(self, name: str) -> str:
        """Text of ``.config/<name>`` (from the build dir after :meth:`unpack`, else from the tar)."""
        if name not in CONFIG_FILES:
            raise ValueError(f"Unknown buildrequest config file '{name}' (known: {', '.join(CONFIG_FILES)})")
        if self.unpacked_dir is not None:
            return (self.unpacked_dir / CONFIG_DIR / name).read_text(encoding="utf-8")
        try:
            return tars.read_member(self.tar_path, f"{CONFIG_DIR}/{name}").decode("utf-8")
        except (OSError, KeyError, tarfile.TarError, AttributeError) as e:
            raise ChangesError(f"{self.name}: cannot read {CONFIG_DIR}/{name} from tar: {e}") from e

    # X-Mini-Buildd fields ----------------------------------------------------------------
    upload_to = _data_property("upload_to")
    packager = _data_property("packager")
    builder = _data_property("builder")
    arch_all = _data_property("arch_all")
    build_dep_resolver = _data_property("build_dep_resolver")
    deb_build_options = _data_property("deb_build_options")
    deb_build_profiles = _data_property("deb_build_profiles")
    lintian_extra_options = _data_property("lintian_extra_options")
    lintian_warnfail_options = _data_property("lintian_warnfail_options")
    buildlog = _data_property("buildlog")
    buildlog_building = _data_property("buildlog_building")
    buildlog_installed = _data_property("buildlog_installed")

    @property
    def build_time_limit(self) -> typing.Optional[int]:
        """Seconds a build may take (``X-Mini-Buildd-Build-Time-Limit``), None if not given or bad."""
        value = self.data.build_time_limit or ""
        return int(value) if value.isdigit() and int(value) > 0 else None

    @property
    def add_depends(self) -> list[str]:
        """The extra build dependencies (``X-Mini-Buildd-Add-Depends``, comma-separated), one each."""
        return [dep.strip() for dep in (self.data.add_depends or "").split(",") if dep.strip()]

    @property
    def sbuild_config_blocks(self) -> list[str]:
        return self.data.sbuild_config_blocks.split()

    @property
    def sbuild_setup_blocks(self) -> list[str]:
        return self.data.sbuild_setup_blocks.split()

    @property
    def lintian_mode(self) -> QAMode:
        return _qa_mode(self, "Lintian-Mode", self.data.lintian_mode)

    @property
    def piuparts_mode(self) -> QAMode:
        return _qa_mode(self, "Piuparts-Mode", self.data.piuparts_mode)

    @property
    def autopkgtest_mode(self) -> QAMode:
        return _qa_mode(self, "Autopkgtest-Mode", self.data.autopkgtest_mode)

    @property
    def diststr(self) -> DistStr:
        """The Distribution as :class:`mini_buildd.dist.DistStr`."""
        try:
            return DistStr(self.distribution)
        except ValueError as e:
            raise ChangesError(f"{self.name}: {e}") from e

    @property
    def buildlog_name(self) -> str:
        return buildlog_name(self.source, self.version, self.architecture)


def _source_files(upload: Changes, dsc_files: typing.Optional[typing.Iterable[str | os.PathLike[str]]]) -> list[pathlib.Path]:
    """The .dsc and the files it lists, in .dsc order, checked against the .dsc (names, sizes)."""
    if dsc_files is None:
        dsc = upload.dsc_path()
        if dsc is None:
            raise ChangesError(f"{upload.name}: no .dsc in upload")
        dsc_files = [dsc] + [dsc.parent / f["name"] for f in parsing.read_dsc_files(dsc)]
    paths = [pathlib.Path(p) for p in dsc_files]
    dscs = [p for p in paths if p.name.endswith(".dsc")]
    if len(dscs) != 1:
        raise ChangesError(f"Buildrequest for {upload.key}: need exactly one .dsc, got {[p.name for p in dscs]}")
    listed = {f["name"]: f for f in parsing.read_dsc_files(dscs[0])}
    given = {p.name: p for p in paths if p != dscs[0]}
    if set(listed) != set(given):
        raise ChangesError(f"{dscs[0].name}: source files do not match the .dsc: "
                           f"missing {sorted(set(listed) - set(given))}, extra {sorted(set(given) - set(listed))}")
    for name, path in given.items():
        if not path.is_file() or path.stat().st_size != listed[name]["size"]:
            raise ChangesError(f"{dscs[0].name}: source file '{name}' missing or of wrong size")
    return [dscs[0]] + [given[f] for f in listed]


def create_buildrequest(upload: Changes, arch: str, out_dir: str | os.PathLike[str], *, distribution_str: str, arch_all: bool,
                        fields: typing.Mapping[str, typing.Any], config_files: typing.Mapping[str, str],
                        dsc_files: typing.Optional[typing.Iterable[str | os.PathLike[str]]] = None, gnupg: typing.Any) -> "Buildrequest":
    """Write and sign ``<src>_<ver>_mini-buildd-buildrequest_<arch>.changes`` + ``.changes.tar`` in ``out_dir``.

    - ``upload``: the user upload (:class:`~mini_buildd.changes.model.Changes`): source, version, timecode.
    - ``distribution_str``: the real diststr (after meta mapping); ``arch_all``: this arch builds arch:all.
    - ``fields``: ``X-Mini-Buildd-*`` values by name without prefix (see :data:`BUILDREQUEST_FIELDS`;
      all required except ``Buildlog``, which defaults to ``<bkey>/<buildlog name>``, and
      ``Arch-All``, which comes from ``arch_all``). :class:`QAMode` values are written by name,
      lists comma-separated; values must fit on one line.
    - ``config_files``: ``{name: text}`` for :data:`CONFIG_FILES` (missing ones are empty).
    - ``dsc_files``: paths of the .dsc and every file it lists (default: the upload's .dsc and its
      files beside the upload).
    - ``gnupg``: :class:`mini_buildd.tools.gnupg.Gnupg` to sign with (``None``: unsigned; tests only).

    Returns the :class:`Buildrequest`.
    """
    if not ARCH_REGEX.match(arch or ""):
        raise ValueError(f"Invalid build architecture '{arch}'")
    DistStr(distribution_str)  # raises ValueError
    unknown = sorted(set(fields) - set(BUILDREQUEST_FIELDS) - set(BUILDREQUEST_OPTIONAL_FIELDS) - {"Arch-All"})
    if unknown:
        raise ValueError(f"Unknown buildrequest field(s): {', '.join(unknown)}")
    unknown = sorted(set(config_files) - set(CONFIG_FILES))
    if unknown:
        raise ValueError(f"Unknown buildrequest config file(s): {', '.join(unknown)}")

    bkey = "/".join(upload.key_parts + (arch,))
    values = dict(fields)
    values.pop("Arch-All", None)
    values.setdefault("Buildlog", f"{bkey}/{buildlog_name(upload.source, upload.version, arch)}")
    missing = [f for f in BUILDREQUEST_FIELDS if f != "Arch-All" and f not in values]
    if missing:
        raise ValueError(f"Missing buildrequest field(s): {', '.join(missing)}")
    data = BuildrequestData(
        distribution=distribution_str, source=upload.source, version=upload.version, architecture=arch,
        timecode=upload.timecode, arch_all=bool(arch_all),
        **{snake(name): writing.one_line(values[name]) for name in BUILDREQUEST_FIELDS if name != "Arch-All"},
        **{snake(name): writing.one_line(values[name]) for name in BUILDREQUEST_OPTIONAL_FIELDS if values.get(name)})
    sources = _source_files(upload, dsc_files)

    out_path = pathlib.Path(out_dir)
    out_path.mkdir(parents=True, exist_ok=True)
    changes_path = out_path / name_for(upload.source, upload.version, BUILDREQUEST, arch)
    tar_path = out_path / (changes_path.name + ".tar")

    now = time.time()
    with tarfile.open(tar_path, "w", dereference=True) as tar:
        for name in CONFIG_FILES:
            tars.add_text(tar, f"{CONFIG_DIR}/{name}", config_files.get(name), now)
        tars.add_files(tar, sources)

    files_line, sha256_line = writing.file_lines(tar_path)
    writing.write_signed(changes_path, writing.render(data.to_fields([sha256_line], [files_line])), gnupg)
    LOG.info("Created buildrequest %s", changes_path)
    return Buildrequest(changes_path)
