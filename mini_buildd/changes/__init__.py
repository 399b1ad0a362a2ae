"""Changes files: the three kinds mini-buildd handles, and the files they carry (upstream §1.4, §1.5).

The package is split by concern; every public name is importable from here
(``from mini_buildd import changes; changes.Upload(path)``):

- :mod:`~mini_buildd.changes.names`: the kinds and their file names (:func:`classify`,
  :func:`name_for`), timecodes, ``key``/``bkey`` syntax, plain file names, :class:`ChangesError`;
- :mod:`~mini_buildd.changes.parsing`: signature stripping, the strict deb822 syntax check, parsing
  with python-debian, the checked ``Files``/``Checksums-*`` lists, the one ``.dsc`` reader;
- :mod:`~mini_buildd.changes.model`: :class:`Changes`, a changes file on disk (fields, identity,
  listed files and their checks, signature check, moving, event ``extra``);
- :mod:`~mini_buildd.changes.upload`: :class:`Upload`, a user upload (as made by dpkg);
- :mod:`~mini_buildd.changes.buildrequest`: :class:`Buildrequest` and its data, made by the packager
  for one architecture (:func:`create_buildrequest`);
- :mod:`~mini_buildd.changes.buildresult`: :class:`Buildresult` and its data, made by the builder
  (:func:`create_buildresult`), and whether a build counts as done;
- :mod:`~mini_buildd.changes.tars`: the ``.changes.tar`` companions and their safe extraction;
- :mod:`~mini_buildd.changes.writing`: the deb822 text of the files mini-buildd writes, signed.

Errors about a changes file or its files are raised as :class:`ChangesError` with a message fit
for a REJECTED/FAILED event. :func:`load` parses a file as the class its name calls for.
"""

import os
import typing

from mini_buildd.changes.names import (
    PREFIX, UPLOAD, BUILDREQUEST, BUILDRESULT, KINDS, OWN_SECTION, OWN_PRIORITY, MAX_CHANGES_SIZE, TIMECODE_FORMAT,
    TIMECODE_REGEX, SOURCE_REGEX, VERSION_REGEX, ARCH_REGEX, ChangesError, timecode_now, name_for, buildlog_name,
    classify, snake, check_file_name)
from mini_buildd.changes.parsing import read_dsc, read_dsc_files
from mini_buildd.changes.tars import safe_extract
from mini_buildd.changes.model import Changes
from mini_buildd.changes.upload import Upload, file_sha256
from mini_buildd.changes.buildrequest import (
    CONFIG_FILES, CONFIG_DIR, BUILDREQUEST_FIELDS, BUILDREQUEST_OPTIONAL_FIELDS, BuildrequestData, Buildrequest,
    create_buildrequest)
from mini_buildd.changes.buildresult import (
    BUILDRESULT_COPIED_FIELDS, SBUILD_SUMMARY_KEYS, SBUILD_CHECKS, SBUILD_SUCCESS, SBUILD_SKIPPED, BuildresultData,
    Buildresult, sbuild_summary_words, sbuild_summary_fields, create_buildresult)

__all__ = [
    "PREFIX", "UPLOAD", "BUILDREQUEST", "BUILDRESULT", "KINDS", "OWN_SECTION", "OWN_PRIORITY", "MAX_CHANGES_SIZE",
    "TIMECODE_FORMAT", "TIMECODE_REGEX", "SOURCE_REGEX", "VERSION_REGEX", "ARCH_REGEX", "ChangesError", "timecode_now",
    "name_for", "buildlog_name", "classify", "snake", "check_file_name",
    "read_dsc", "read_dsc_files", "safe_extract", "Changes", "Upload", "file_sha256",
    "CONFIG_FILES", "CONFIG_DIR", "BUILDREQUEST_FIELDS", "BUILDREQUEST_OPTIONAL_FIELDS", "BuildrequestData",
    "Buildrequest", "create_buildrequest",
    "BUILDRESULT_COPIED_FIELDS", "SBUILD_SUMMARY_KEYS", "SBUILD_CHECKS", "SBUILD_SUCCESS", "SBUILD_SKIPPED",
    "BuildresultData", "Buildresult", "sbuild_summary_words", "sbuild_summary_fields", "create_buildresult",
    "load",
]


def load(path: str | os.PathLike[str], timecode: typing.Optional[str] = None) -> Changes:
    """Parse ``path`` as the class its file name calls for (:class:`Upload`, :class:`Buildrequest`,
    :class:`Buildresult`)."""
    return {UPLOAD: Upload, BUILDREQUEST: Buildrequest, BUILDRESULT: Buildresult}[classify(path)](path, timecode=timecode)
