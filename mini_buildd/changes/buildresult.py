"""Buildresults (upstream §1.4 steps 4, 5): sbuild's outcome for one architecture, made by the
builder and read by the packager, with the build log and (maybe) a ``.changes.tar`` of sbuild's
``.changes`` and its files.

:class:`BuildresultData` is what a buildresult carries (its fields), built from and written to the
deb822 form; :class:`Buildresult` is a buildresult file on disk (and whether the build counts as
done); :func:`create_buildresult` writes and signs one in the upstream 2.x wire format.
"""

import dataclasses
import logging
import os
import pathlib
import shutil
import tarfile
import typing

from mini_buildd.dist import SBUILD_STATUS_FAIL, SBUILD_STATUS_PASS, SBUILD_STATUS_WARN, sbuild_check_passes
from mini_buildd.changes import tars, writing
from mini_buildd.changes.model import Changes
from mini_buildd.changes.names import BUILDRESULT, PREFIX, UPLOAD, ChangesError, buildlog_name, name_for, snake

LOG = logging.getLogger(__name__)

#: Buildrequest fields copied into the buildresult, in file order.
BUILDRESULT_COPIED_FIELDS = ("Timecode", "Builder", "Buildlog", "Buildlog-Installed", "Upload-To")

#: sbuild summary keys recorded as ``X-Mini-Buildd-Sbuild-<key>``.
SBUILD_SUMMARY_KEYS = ("Status", "Lintian", "Piuparts", "Autopkgtest", "Build-Time", "Package-Time", "Space",
                       "Build-Space")

#: Separates the lintian tag lines in ``X-Mini-Buildd-Lintian-Tags`` (a one-line field).
LINTIAN_TAGS_SEPARATOR = " | "

#: QA checks and their buildresult field.
SBUILD_CHECKS = ("lintian", "piuparts", "autopkgtest")

#: sbuild statuses that make a build count as done (``skipped``: nothing to build for this arch).
SBUILD_SUCCESS, SBUILD_SKIPPED = "successful", "skipped"


def _status_word(value: object) -> str:
    """First word of an sbuild summary value; known multi-word statuses (``no tests``) are kept whole."""
    text = " ".join(str(value or "").split())
    for word in SBUILD_STATUS_PASS + SBUILD_STATUS_WARN + SBUILD_STATUS_FAIL:
        if " " in word and text.lower().startswith(word):
            return text[:len(word)]
    return text.split(" ", 1)[0]


def sbuild_summary_words(sbuild_summary: typing.Optional[typing.Mapping[str, typing.Any]]) -> dict[str, str]:
    """``{key: word}`` of an sbuild summary dict for :data:`SBUILD_SUMMARY_KEYS` (case-insensitive,
    ``Build Time`` = ``Build-Time``); Status defaults to ``error`` when missing."""
    known = {k.lower(): k for k in SBUILD_SUMMARY_KEYS}
    words: dict[str, str] = {}
    for key, value in (sbuild_summary or {}).items():
        canonical = known.get("-".join(str(key).split()).lower())
        word = _status_word(value)
        if canonical and word:
            words[canonical] = word
    words.setdefault("Status", "error")
    return words


def _sbuild_fields(words: typing.Mapping[str, str]) -> list[tuple[str, typing.Any]]:
    return sorted((f"{PREFIX}Sbuild-{k}", v) for k, v in words.items())


def sbuild_summary_fields(sbuild_summary: typing.Optional[typing.Mapping[str, typing.Any]]) -> list[tuple[str, typing.Any]]:
    """``[(X-Mini-Buildd-Sbuild-<Key>, word)]`` sorted by field name, from an sbuild summary dict
    (see :func:`sbuild_summary_words`)."""
    return _sbuild_fields(sbuild_summary_words(sbuild_summary))


@dataclasses.dataclass
class BuildresultData:  # pylint: disable=too-many-instance-attributes
    """The fields of a buildresult as written in it (one-line texts).

    The copied buildrequest fields (:data:`BUILDRESULT_COPIED_FIELDS`) are attributes by their
    snake_case names; ``sbuild``: ``{summary key: word}``; ``internal_error``/``canceled_by``:
    None when not recorded; ``lintian_tags``: lintian's error and warning tag lines of the build
    (``X-Mini-Buildd-Lintian-Tags``, joined by :data:`LINTIAN_TAGS_SEPARATOR`).
    """

    distribution: str
    source: str
    version: str
    architecture: str
    timecode: typing.Optional[str]
    builder: typing.Optional[str]
    buildlog: typing.Optional[str]
    buildlog_installed: typing.Optional[str]
    upload_to: typing.Optional[str]
    sbuild: dict = dataclasses.field(default_factory=dict)
    internal_error: typing.Optional[str] = None
    canceled_by: typing.Optional[str] = None
    lintian_tags: list = dataclasses.field(default_factory=list)

    @classmethod
    def from_changes(cls, changes: Changes) -> "BuildresultData":
        """The data of a parsed buildresult (fields it lacks: None)."""
        sbuild = {key: changes.x_get(f"Sbuild-{key}") for key in SBUILD_SUMMARY_KEYS
                  if changes.x_get(f"Sbuild-{key}") is not None}
        return cls(distribution=changes.distribution, source=changes.source, version=changes.version,
                   architecture=changes.architecture, sbuild=sbuild,
                   internal_error=changes.x_get("Internal-Error"), canceled_by=changes.x_get("Canceled-By"),
                   lintian_tags=[t for t in (changes.x_get("Lintian-Tags") or "").split(LINTIAN_TAGS_SEPARATOR) if t.strip()],
                   **{snake(name): changes.x_get(name) for name in BUILDRESULT_COPIED_FIELDS})

    def to_fields(self, checksums_sha256: typing.Iterable[str], files: typing.Iterable[str]) -> list[tuple[str, typing.Any]]:
        """``[(field, value)]`` in file order, with the given file list lines."""
        fields: list[tuple[str, typing.Any]] = [("Distribution", self.distribution), ("Source", self.source),
                                                ("Version", self.version), ("Architecture", self.architecture)]
        fields += [(PREFIX + name, getattr(self, snake(name))) for name in BUILDRESULT_COPIED_FIELDS]
        fields += [("Checksums-Sha256", list(checksums_sha256)), ("Files", list(files))]
        fields += _sbuild_fields(self.sbuild)
        if self.internal_error is not None:
            fields.append((PREFIX + "Internal-Error", self.internal_error))
        if self.canceled_by is not None:
            fields.append((PREFIX + "Canceled-By", self.canceled_by))
        if self.lintian_tags:
            fields.append((PREFIX + "Lintian-Tags", LINTIAN_TAGS_SEPARATOR.join(writing.one_line(t) for t in self.lintian_tags)))
        return fields


def _data_property(attribute: str) -> typing.Any:
    return property(lambda self: getattr(self.data, attribute))


class Buildresult(Changes):
    """A buildresult: sbuild's outcome for one architecture, its build log and (maybe) a tar of the
    sbuild ``.changes`` with its files. ``data``: its :class:`BuildresultData`."""

    KIND = BUILDRESULT

    def __init__(self, path: str | os.PathLike[str], timecode: typing.Optional[str] = None) -> None:
        super().__init__(path, timecode=timecode)
        self.data = BuildresultData.from_changes(self)

    @property
    def tar_path(self) -> typing.Optional[pathlib.Path]:
        """Path of the ``.changes.tar`` if the result has one, else None."""
        return tars.listed_tar(self)

    def buildlog_path(self) -> pathlib.Path:
        return self.path.parent / buildlog_name(self.source, self.version, self.architecture)

    def unpack(self, directory: str | os.PathLike[str]) -> typing.Optional[pathlib.Path]:
        """Check the listed files, extract the tar into ``directory``; return the inner sbuild
        ``.changes`` path (its files checked), or None if the result carries none."""
        self.check_files()
        tar = self.tar_path
        if tar is None:
            return None
        names = [n for n in tars.safe_extract(tar, directory) if n.endswith(".changes") and "/" not in n]
        if len(names) != 1:
            raise ChangesError(f"{tar.name}: expected exactly one .changes, found {len(names)}")
        inner = pathlib.Path(directory) / names[0]
        Changes(inner, timecode=self.timecode).check_files()
        return inner

    upload_to = _data_property("upload_to")
    builder = _data_property("builder")
    buildlog = _data_property("buildlog")
    buildlog_installed = _data_property("buildlog_installed")
    internal_error = _data_property("internal_error")
    canceled_by = _data_property("canceled_by")
    lintian_tags = _data_property("lintian_tags")

    @property
    def sbuild_status(self) -> str:
        """sbuild's Status word (``error`` if none was recorded)."""
        return self.data.sbuild.get("Status", "error")

    def sbuild_checks(self) -> dict[str, str]:
        """``{check: status word}`` for the QA checks sbuild reported (lintian, piuparts, autopkgtest)."""
        return {check: self.data.sbuild[check.capitalize()] for check in SBUILD_CHECKS
                if check.capitalize() in self.data.sbuild}

    def succeeded(self, lintian_mode: typing.Any, piuparts_mode: typing.Any, autopkgtest_mode: typing.Any, ignore_checks: bool = False) -> bool:
        """Whether this arch counts as built (upstream §1.4 step 5, §6.4).

        ``skipped`` succeeds; ``successful`` succeeds if every QA check passes under its mode
        (:func:`mini_buildd.dist.sbuild_check_passes`; a check sbuild did not report counts as an
        unknown status); ``ignore_checks`` (experimental suites) ignores the checks. A result with
        an internal error or a cancel never succeeds.
        """
        if self.internal_error or self.canceled_by:
            return False
        status = self.sbuild_status.lower()
        if status == SBUILD_SKIPPED:
            return True
        if status != SBUILD_SUCCESS:
            return False
        checks = self.sbuild_checks()
        modes = {"lintian": lintian_mode, "piuparts": piuparts_mode, "autopkgtest": autopkgtest_mode}
        return all(sbuild_check_passes(checks.get(name), mode, ignore=ignore_checks) for name, mode in modes.items())


def _build_log(breq: typing.Any, build_dir: pathlib.Path, out_dir: pathlib.Path, buildlog_path: typing.Any,
               internal_error: typing.Optional[str], canceled_by: typing.Optional[str]) -> pathlib.Path:
    """Copy the build log into ``out_dir`` (or write a note saying why there is none); return its path."""
    log_target = out_dir / buildlog_name(breq.source, breq.version, breq.architecture)
    log_source = None if buildlog_path is None else build_dir / buildlog_path
    if log_source is not None and log_source.is_file():
        if log_source.resolve() != log_target.resolve():
            shutil.copyfile(log_source, log_target)
    else:
        note = [f"mini-buildd: no build log for {breq.bkey}"]
        note += [f"Internal error: {internal_error}"] if internal_error else []
        note += [f"Canceled by: {canceled_by}"] if canceled_by else []
        log_target.write_text("\n".join(note) + "\n", encoding="utf-8")
    return log_target


def create_buildresult(breq: typing.Any, build_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                       sbuild_summary: typing.Optional[typing.Mapping[str, typing.Any]], buildlog_path: typing.Any,
                       sbuild_changes_path: typing.Any = None, internal_error: typing.Optional[str] = None,
                       canceled_by: typing.Optional[str] = None, lintian_tags: typing.Sequence[str] = (),
                       gnupg: typing.Any) -> "Buildresult":
    """Write and sign ``<src>_<ver>_mini-buildd-buildresult_<arch>.changes`` in ``out_dir``.

    - ``breq``: the :class:`~mini_buildd.changes.buildrequest.Buildrequest`; ``build_dir``: where
      sbuild wrote its output.
    - ``sbuild_summary``: parsed sbuild summary (``{"Status": "successful", "Lintian": "pass", ...}``).
    - ``buildlog_path``: the build log (relative paths: below ``build_dir``); copied into ``out_dir``
      as ``<src>_<ver>_<arch>.buildlog``. If it does not exist, a short log stating the
      internal error/cancel is written instead, so every result has a log.
    - ``sbuild_changes_path``: sbuild's ``.changes`` (default: ``<src>_<ver>_<arch>.changes`` in
      ``build_dir`` if it exists); it and all its files go into ``<result>.changes.tar``.
    - ``internal_error``, ``canceled_by``: recorded as ``X-Mini-Buildd-Internal-Error``/``-Canceled-By``.
    - ``lintian_tags``: lintian's error and warning tag lines (recorded as ``X-Mini-Buildd-Lintian-Tags``).
    - ``gnupg``: :class:`mini_buildd.tools.gnupg.Gnupg` to sign with (``None``: unsigned; tests only).

    A broken sbuild ``.changes`` does not raise: it is recorded as internal error. Returns the
    :class:`Buildresult`.
    """
    build_dir, out_dir = pathlib.Path(build_dir), pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arch = breq.architecture
    changes_path = out_dir / name_for(breq.source, breq.version, BUILDRESULT, arch)
    tar_path = out_dir / (changes_path.name + ".tar")
    errors = [writing.one_line(internal_error)] if internal_error else []

    files_line, sha256_line = writing.file_lines(_build_log(breq, build_dir, out_dir, buildlog_path, internal_error,
                                                            canceled_by))
    files, sha256 = [files_line], [sha256_line]

    # sbuild's changes and its files
    if sbuild_changes_path is None:
        default = build_dir / name_for(breq.source, breq.version, UPLOAD, arch)
        sbuild_changes_path = default if default.is_file() else None
    if sbuild_changes_path is not None:
        try:
            inner = Changes(build_dir / sbuild_changes_path, timecode=breq.timecode)
            inner.check_files()
            with tarfile.open(tar_path, "w", dereference=True) as tar:
                tars.add_files(tar, inner.file_paths() + [inner.path])
            files_line, sha256_line = writing.file_lines(tar_path)
            files.append(files_line)
            sha256.append(sha256_line)
        except (ChangesError, OSError, tarfile.TarError) as e:
            LOG.error("%s: unusable sbuild changes: %s", breq.bkey, e)
            errors.append(f"Unusable sbuild changes: {writing.one_line(e)}")
            tar_path.unlink(missing_ok=True)

    data = BuildresultData(
        distribution=breq.distribution, source=breq.source, version=breq.version, architecture=arch,
        sbuild=sbuild_summary_words(sbuild_summary),
        internal_error=" / ".join(errors) if errors else None,
        canceled_by=writing.one_line(canceled_by) if canceled_by else None,
        lintian_tags=[t.replace(LINTIAN_TAGS_SEPARATOR.strip(), "/") for t in lintian_tags],
        **{snake(name): breq.x_get(name, "") for name in BUILDRESULT_COPIED_FIELDS})
    writing.write_signed(changes_path, writing.render(data.to_fields(sha256, files)), gnupg)
    LOG.info("Created buildresult %s", changes_path)
    return Buildresult(changes_path)
