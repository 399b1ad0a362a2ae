"""The deb822 model of a changes file on disk (upstream §1.4, §1.5): :class:`Changes` reads it
(size limit, UTF-8, strict syntax, mandatory fields, sane source, version, architecture and
timecode), gives its fields, ``key``/``bkey`` and the files it lists (from python-debian's parsed
``Files``/``Checksums-*``), checks those files (names, sizes, checksums, SHA-256 required) and its
signature, moves it with its files, and makes the ``extra`` data of events about it.

The kinds (:mod:`~mini_buildd.changes.upload`, :mod:`~mini_buildd.changes.buildrequest`,
:mod:`~mini_buildd.changes.buildresult`) are subclasses.
"""

import logging
import pathlib
import os
import shutil
import typing

from debian import deb822

from mini_buildd import config, files as files_mod
from mini_buildd.tools import gnupg_signatures as gpgmod
from mini_buildd.changes import uploadoptions
from mini_buildd.changes import parsing
from mini_buildd.changes.names import (ARCH_REGEX, MAX_CHANGES_SIZE, PREFIX, SOURCE_REGEX, TIMECODE_REGEX, UPLOAD,
                                       VERSION_REGEX, ChangesError, check_file_name, classify, name_for, snake,
                                       timecode_now)

LOG = logging.getLogger(__name__)

_MANDATORY = ("Distribution", "Source", "Version", "Architecture")


class Changes:
    """A deb822 changes file on disk: a user upload, or (subclasses) a buildrequest or buildresult.

    ``Changes(path)`` parses and validates it (syntax, mandatory fields, sane source, version,
    architecture and timecode); its files are not looked at until :meth:`check_files`.
    ``timecode``: use this timecode if the file carries none (default: a new one).
    """

    #: Kind of this class; ``None``: by file name (see :func:`classify`).
    KIND: typing.Optional[str] = None

    def __init__(self, path: typing.Union[str, os.PathLike[str]], timecode: typing.Optional[str] = None) -> None:
        self.path = pathlib.Path(path)
        self.kind = self.KIND or classify(self.path)
        if self.KIND is not None and classify(self.path) != self.KIND:
            raise ChangesError(f"{self.path.name}: file name does not fit kind '{self.KIND}' "
                               f"(expected '{name_for('SOURCE', 'VERSION', self.KIND, 'ARCH')}')")
        try:
            size = self.path.stat().st_size
            if size > MAX_CHANGES_SIZE:
                raise ChangesError(f"{self.path.name}: too large for a changes file ({size} bytes)")
            raw = self.path.read_bytes()
        except OSError as e:
            raise ChangesError(f"{self.path.name}: cannot read changes file: {e.strerror or e}") from e
        try:
            self.text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ChangesError(f"{self.path.name}: not UTF-8 text ({e})") from e
        self._deb822 = parsing.parse_changes(self.text, self.path.name)
        self._validate()
        self._timecode = self.get(PREFIX + "Timecode") or timecode or timecode_now()
        if not TIMECODE_REGEX.match(self._timecode):
            raise ChangesError(f"{self.path.name}: malformed timecode '{self._timecode}' (expected YYYYMMDD:HHMMSS:ffffff)")

    def _validate(self) -> None:
        name = self.path.name
        mandatory = _MANDATORY + (("Changed-By",) if self.kind == UPLOAD else ())
        missing = [f for f in mandatory if not self.get(f)]
        if missing:
            raise ChangesError(f"{name}: missing mandatory field(s): {', '.join(missing)}")
        if not SOURCE_REGEX.match(self.source):
            raise ChangesError(f"{name}: invalid Source '{self.source}'")
        if not VERSION_REGEX.match(self.version):
            raise ChangesError(f"{name}: invalid Version '{self.version}'")
        archs = self.architecture.split()
        bad = [a for a in archs if not ARCH_REGEX.match(a)]
        if bad:
            raise ChangesError(f"{name}: invalid Architecture '{self.architecture}'")
        if self.kind != UPLOAD:
            if len(archs) != 1:
                raise ChangesError(f"{name}: a {self.kind} needs exactly one Architecture, got '{self.architecture}'")
            expected = name_for(self.source, self.version, self.kind, self.architecture)
            if name != expected:
                raise ChangesError(f"{name}: file name does not match its fields (expected '{expected}')")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.bkey})"

    # Fields ------------------------------------------------------------------------------
    def get(self, field: str, default: typing.Optional[str] = None) -> typing.Optional[str]:
        """Value of ``field`` (stripped; multi-line values keep their inner lines; a file list one line
        per file), or ``default``."""
        value = self._deb822.get(field)
        if value is None:
            return default
        if parsing.is_file_list(self._deb822, field):
            return parsing.file_list_text(self._deb822, field)
        return value.strip()

    def __getitem__(self, field: str) -> str:
        value = self.get(field)
        if value is None:
            raise KeyError(field)
        return value

    def __contains__(self, field: object) -> bool:
        return field in self._deb822

    def field_names(self) -> list[str]:
        """Field names in file order."""
        return list(self._deb822.keys())

    def x_get(self, name: str, default: typing.Optional[str] = None) -> typing.Optional[str]:
        """Value of ``X-Mini-Buildd-<name>``."""
        return self.get(PREFIX + name, default)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def source(self) -> str:
        return typing.cast(str, self.get("Source"))  # mandatory

    @property
    def version(self) -> str:
        return typing.cast(str, self.get("Version"))  # mandatory

    @property
    def distribution(self) -> str:
        return typing.cast(str, self.get("Distribution"))  # mandatory

    @property
    def architecture(self) -> str:
        """The Architecture field value (whitespace normalized), e.g. ``source amd64`` or ``amd64``."""
        return " ".join(typing.cast(str, self.get("Architecture")).split())  # mandatory

    @property
    def maintainer(self) -> typing.Optional[str]:
        return self.get("Maintainer")

    @property
    def changed_by(self) -> typing.Optional[str]:
        return self.get("Changed-By")

    @property
    def changes_text(self) -> str:
        """The ``Changes:`` field value (changelog), as input to upload options."""
        return self._deb822.get("Changes", "")

    def upload_options(self) -> typing.Any:
        """Upload options of the top changelog block (upstream §3.8); raise :class:`ChangesError` if invalid."""
        try:
            return uploadoptions.parse_upload_options(self.changes_text)
        except ValueError as e:
            raise ChangesError(f"{self.name}: {e}") from e

    # Identity ----------------------------------------------------------------------------
    @property
    def timecode(self) -> str:
        return self._timecode

    @property
    def key_parts(self) -> tuple[str, ...]:
        return (self.source, self.version, self.timecode)

    @property
    def bkey_parts(self) -> tuple[str, ...]:
        """``(source, version, timecode, arch)``: path components below events or builds dir."""
        return self.key_parts + (self.architecture,)

    @property
    def key(self) -> str:
        """``SOURCE/VERSION/TIMECODE``."""
        return "/".join(self.key_parts)

    @property
    def bkey(self) -> str:
        """``SOURCE/VERSION/TIMECODE/ARCH`` (ARCH: Architecture field value as is)."""
        return "/".join(self.bkey_parts)

    def events_dir(self) -> pathlib.Path:
        """``var/events/<bkey>/`` of this changes (not created)."""
        return config.paths.events_of(*self.bkey_parts)

    def build_dir(self) -> pathlib.Path:
        """``var/shared/builds/<bkey>/`` of this changes (not created)."""
        return config.paths.build_dir(*self.bkey_parts)

    # Files -------------------------------------------------------------------------------
    def _file_list(self, field: str) -> list[typing.Any]:
        return parsing.file_list(self._deb822, field, f"{self.name}: {field}")

    def _checksums(self, field: str, digest_key: str) -> dict[str, dict[str, typing.Any]]:
        return {e["name"]: {digest_key: e[digest_key].lower(), "size": int(e["size"])} for e in self._file_list(field)}

    def files(self) -> list[dict[str, typing.Any]]:
        """Files listed in ``Files``: dicts ``name, md5, size, section, priority, sha1, sha256``.

        ``sha1``/``sha256`` come from ``Checksums-Sha1``/``-Sha256`` (None if not given). Raises
        :class:`ChangesError` on malformed lines, unsafe names or inconsistent checksum fields.
        """
        sha1 = self._checksums("Checksums-Sha1", "sha1")
        sha256 = self._checksums("Checksums-Sha256", "sha256")
        files: list[dict[str, typing.Any]] = []
        for listed in self._file_list("Files"):
            name = check_file_name(listed["name"], self.name)
            entry = {"name": name, "md5": listed["md5sum"].lower(), "size": int(listed["size"]),
                     "section": listed["section"], "priority": listed["priority"], "sha1": None, "sha256": None}
            for table, key in ((sha1, "sha1"), (sha256, "sha256")):
                if name in table:
                    if table[name]["size"] != entry["size"]:
                        raise ChangesError(f"{self.name}: {name}: size in Files ({entry['size']}) differs from "
                                           f"Checksums-{key.capitalize()} ({table[name]['size']})")
                    entry[key] = table[name][key]
            files.append(entry)
        names = {f["name"] for f in files}
        for table, field in ((sha1, "Checksums-Sha1"), (sha256, "Checksums-Sha256")):
            extra = sorted(set(table) - names)
            if extra:
                raise ChangesError(f"{self.name}: {field} lists file(s) missing in Files: {', '.join(extra)}")
        return files

    def file_paths(self) -> list[pathlib.Path]:
        """Paths of all listed files (beside the changes file)."""
        return [self.path.parent / f["name"] for f in self.files()]

    def check_files(self) -> dict[str, str]:
        """Every listed file must be a regular file beside the changes with matching size and
        checksums, and have a SHA-256 checksum (MD5 alone proves nothing).

        Raises :class:`ChangesError` naming the first bad file. Returns ``{name: sha256}``.
        """
        verified: dict[str, str] = {}
        for entry in self.files():
            path = self.path.parent / entry["name"]
            try:
                st = path.lstat()
            except FileNotFoundError:
                raise ChangesError(f"{self.name}: missing file '{entry['name']}'") from None
            if not path.is_file() or path.is_symlink():
                raise ChangesError(f"{self.name}: '{entry['name']}' is not a regular file")
            if st.st_size != entry["size"]:
                raise ChangesError(f"{self.name}: size mismatch for '{entry['name']}': "
                                   f"listed {entry['size']}, file has {st.st_size}")
            if not entry["sha256"]:
                raise ChangesError(f"{self.name}: no SHA-256 checksum for '{entry['name']}' (Checksums-Sha256 is required)")
            actual = files_mod.digests(path, ("md5", "sha1", "sha256"))
            for what in ("md5", "sha1", "sha256"):
                if entry[what] is not None and entry[what] != actual[what]:
                    raise ChangesError(f"{self.name}: {what} checksum mismatch for '{entry['name']}'")
            verified[entry["name"]] = actual["sha256"]
        LOG.debug("%s: all listed files present and intact", self.name)
        return verified

    def dsc_name(self) -> typing.Optional[str]:
        """Name of the ``.dsc`` listed in ``Files`` (None if there is none)."""
        names = [f["name"] for f in self.files() if f["name"].endswith(".dsc")]
        if len(names) > 1:
            raise ChangesError(f"{self.name}: more than one .dsc listed: {', '.join(names)}")
        return names[0] if names else None

    def dsc_path(self) -> typing.Optional[pathlib.Path]:
        """Path of the listed ``.dsc`` beside the changes (None if there is none)."""
        name = self.dsc_name()
        return None if name is None else self.path.parent / name

    def dsc(self) -> deb822.Dsc:
        """The listed ``.dsc`` parsed (``deb822.Dsc``); raise :class:`ChangesError` if there is none."""
        path = self.dsc_path()
        if path is None:
            raise ChangesError(f"{self.name}: no .dsc in upload (binary-only uploads are not accepted)")
        return parsing.read_dsc(path)

    # Signature ---------------------------------------------------------------------------
    def signature_check(self, keyring: typing.Any) -> gpgmod.VerifyResult:
        """Check the signature against ``keyring`` (a :class:`mini_buildd.tools.gnupg.TmpKeyring` or other
        keyring with ``verify_signature``); return the :class:`mini_buildd.tools.gnupg.VerifyResult`.

        Raises :class:`ChangesError`: "not signed", "signed by unknown key(s) ...", or the signature
        status when it is bad/expired/revoked; also if the signed content differs from what was parsed.
        """
        if not gpgmod.is_clearsigned(self.text):
            raise ChangesError(f"{self.name}: not signed")
        result = keyring.verify_signature(self.path, accept_expired_keys=False)
        if not result.valid:
            if not result.signatures:
                raise ChangesError(f"{self.name}: no valid signature found")
            if all(s["status"] == gpgmod.VerifyResult.NO_PUBKEY for s in result.signatures):
                raise ChangesError(f"{self.name}: signed by unknown key(s) {', '.join(result.signer_key_ids)}")
            raise ChangesError(f"{self.name}: signature check failed: {result.describe()}")
        try:
            signed = parsing.parse_changes(result.data.decode("utf-8"), self.name)
        except UnicodeDecodeError as e:
            raise ChangesError(f"{self.name}: signed content is not UTF-8 text") from e
        if dict(signed) != dict(self._deb822):
            raise ChangesError(f"{self.name}: signed content differs from the parsed file (text outside the signature?)")
        LOG.debug("%s: good signature by %s", self.name, result.key_id)
        return result

    # Moving ------------------------------------------------------------------------------
    def move_to(self, directory: typing.Union[str, os.PathLike[str]]) -> pathlib.Path:
        """Move the changes file and its listed files into ``directory`` (created); return the new path.

        Listed files that are missing or have unsafe names are left alone (logged), so that even a
        broken upload can be archived with its event.
        """
        target_dir = pathlib.Path(directory)
        target_dir.mkdir(parents=True, exist_ok=True)
        try:
            names = [f["name"] for f in self.files()]
        except ChangesError as e:
            LOG.warning("%s: moving the changes file only: %s", self.name, e)
            names = []
        for name in names:
            src = self.path.parent / name
            if src.is_file() and not src.is_symlink():
                if src.resolve() != (target_dir / name).resolve():
                    shutil.move(str(src), str(target_dir / name))
            else:
                LOG.warning("%s: listed file '%s' not found, not moved", self.name, name)
        target = target_dir / self.name
        if self.path.resolve() != target.resolve():
            shutil.move(str(self.path), str(target))
        self.path = target
        return target

    # Events ------------------------------------------------------------------------------
    def to_event_extra(self) -> dict[str, typing.Any]:
        """The ``extra`` dict of an event about this changes (upstream §5.4, reference events).

        ``changes`` is the path relative to the events dir (``<bkey>/<file name>``), where the file
        is or will be archived; every ``X-Mini-Buildd-*`` field follows in file order, snake_case.
        """
        extra: dict[str, typing.Any] = {
            "timecode": self.timecode,
            "key": self.key,
            "bkey": self.bkey,
            "changes": f"{self.bkey}/{self.name}",
            "architecture": self.architecture,
        }
        for field, key in (("Maintainer", "maintainer"), ("Changed-By", "changed_by")):
            if field in self:
                extra[key] = self.get(field)
        for field in self.field_names():
            # Fields of the file never override our own data (X-Mini-Buildd-Key, -Bkey, ...).
            if field.lower().startswith(PREFIX.lower()) and snake(field) not in extra:
                extra[snake(field)] = self.get(field)
        return extra
