"""Changes files: the three kinds mini-buildd handles, and the files they carry (upstream §1.4, §1.5).

This module owns:

- reading a deb822 ``.changes`` file from disk (strict syntax and mandatory fields), its timecode,
  ``key`` and ``bkey``, the files it lists and their checks (names, sizes, checksums), its
  signature check, moving it with its files, and its ``extra`` data for events;
- the three kinds, told apart by file name (:func:`classify`): a user **upload** (as made by
  dpkg), a **buildrequest** (:class:`Buildrequest`, made by the packager for one architecture)
  and a **buildresult** (:class:`Buildresult`, made by the builder);
- writing buildrequests and buildresults with their ``.changes.tar`` companion in the upstream
  2.x wire format (:func:`create_buildrequest`, :func:`create_buildresult`) and unpacking those
  tars safely.

Parsing is python-debian; signing and signature checks go through :mod:`mini_buildd.tools.gnupg`.
Errors about a changes file or its files are raised as :class:`ChangesError` with a message fit
for a REJECTED/FAILED event.
"""

import datetime
import grp
import hashlib
import io
import logging
import os
import pathlib
import posixpath
import pwd
import re
import shutil
import tarfile
import time

from debian import deb822

from mini_buildd import config
from mini_buildd import files as files_mod
from mini_buildd.tools import gnupg as gpgmod
from mini_buildd.pipeline import uploadoptions
from mini_buildd.dist import (QAMode, DistStr, SBUILD_STATUS_FAIL, SBUILD_STATUS_PASS, SBUILD_STATUS_WARN,
                              sbuild_check_passes)

LOG = logging.getLogger(__name__)

#: Custom field prefix (2.x).
PREFIX = "X-Mini-Buildd-"

#: The three kinds.
UPLOAD, BUILDREQUEST, BUILDRESULT = "upload", "buildrequest", "buildresult"
KINDS = (UPLOAD, BUILDREQUEST, BUILDRESULT)

#: Section and priority of the files mini-buildd lists itself.
OWN_SECTION, OWN_PRIORITY = "mini-buildd", "extra"

#: Refuse changes files larger than this (they are a few KiB; anything huge is not one).
MAX_CHANGES_SIZE = 4 * 1024 * 1024

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

#: Buildrequest fields copied into the buildresult, in file order.
BUILDRESULT_COPIED_FIELDS = ("Timecode", "Builder", "Buildlog", "Buildlog-Installed", "Upload-To")

#: sbuild summary keys recorded as ``X-Mini-Buildd-Sbuild-<key>``.
SBUILD_SUMMARY_KEYS = ("Status", "Lintian", "Piuparts", "Autopkgtest", "Build-Time", "Package-Time", "Space",
                       "Build-Space")

#: QA checks and their buildresult field.
SBUILD_CHECKS = ("lintian", "piuparts", "autopkgtest")

#: sbuild statuses that make a build count as done (``skipped``: nothing to build for this arch).
SBUILD_SUCCESS, SBUILD_SKIPPED = "successful", "skipped"

TIMECODE_FORMAT = "%Y%m%d:%H%M%S:%f"
TIMECODE_REGEX = re.compile(r"^\d{8}:\d{6}:\d{6}$", re.ASCII)
SOURCE_REGEX = re.compile(r"^[a-z0-9][a-z0-9+.-]+$", re.ASCII)
VERSION_REGEX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+~:-]*$", re.ASCII)
ARCH_REGEX = re.compile(r"^[a-z0-9][a-z0-9-]*$", re.ASCII)
_FIELD_LINE = re.compile(r"^(?P<name>[!-9;-~][!-9;-~]*):(?P<value>.*)$", re.ASCII)
_SPECIAL_NAME = re.compile(r"^(?P<source>[^_/]+)_(?P<version>[^_/]+)_mini-buildd-(?P<kind>buildrequest|buildresult)_"
                           r"(?P<arch>[^_/]+)\.changes$")

_MANDATORY = ("Distribution", "Source", "Version", "Architecture")


class ChangesError(Exception):
    """A changes file (or one of its files) is unusable; the message says why."""


# ---------------------------------------------------------------------------------------------
# Names and small helpers
# ---------------------------------------------------------------------------------------------

def timecode_now():
    """A new timecode ``YYYYMMDD:HHMMSS:ffffff`` (UTC)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime(TIMECODE_FORMAT)


def strip_epoch(version):
    """``1:2.0-1`` -> ``2.0-1`` (file names never carry the epoch)."""
    return version.partition(":")[2] if ":" in version else version


def name_for(source, version, kind, arch):
    """File name of a changes file of ``kind`` (upload, buildrequest, buildresult); epoch stripped."""
    if kind not in KINDS:
        raise ValueError(f"Unknown changes kind '{kind}' (use {'|'.join(KINDS)})")
    middle = f"mini-buildd-{kind}_" if kind != UPLOAD else ""
    return f"{source}_{strip_epoch(version)}_{middle}{arch}.changes"


def buildlog_name(source, version, arch):
    """``<source>_<version>_<arch>.buildlog`` (epoch stripped)."""
    return f"{source}_{strip_epoch(version)}_{arch}.buildlog"


def classify(path):
    """Kind of a changes file by its name: ``buildrequest``, ``buildresult`` or ``upload``."""
    name = pathlib.PurePath(path).name
    if not name.endswith(".changes"):
        raise ChangesError(f"{name}: not a changes file (name does not end in '.changes')")
    match = _SPECIAL_NAME.match(name)
    return match.group("kind") if match else UPLOAD


def snake(field):
    """``X-Mini-Buildd-Buildlog-Building`` -> ``buildlog_building`` (prefix dropped)."""
    if field.lower().startswith(PREFIX.lower()):
        field = field[len(PREFIX):]
    return field.lower().replace("-", "_")


def check_file_name(name, where=None):
    """Raise :class:`ChangesError` (prefixed ``where: ``) unless ``name`` is a plain file name
    (no path part, not ``..``); return ``name``."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
            or name[0] in "-." or any(ord(c) < 32 or ord(c) == 127 for c in name)):
        raise ChangesError(f"{where + ': ' if where else ''}Invalid file name {name!r}: "
                           "must be a plain file name (no path, no leading '-' or '.')")
    return name


def _hashes(path):
    """(md5, sha1, sha256) hex digests of a file, read in chunks."""
    md5, sha1, sha256 = hashlib.md5(), hashlib.sha1(), hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            md5.update(chunk)
            sha1.update(chunk)
            sha256.update(chunk)
    return md5.hexdigest(), sha1.hexdigest(), sha256.hexdigest()


def _md5(path):
    return _hashes(path)[0]


def _one_line(value):
    """Any value as a single-line field value (whitespace runs, incl. line breaks, folded to one space)."""
    if isinstance(value, QAMode):
        return value.name
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return " ".join(str(value if value is not None else "").split())


def _render(fields):
    """deb822 text from ``[(name, value)]``; a list value is rendered as one indented line per item.

    Like upstream's files, the text ends with an empty line (kept inside a clear signature)."""
    lines = []
    for name, value in fields:
        if isinstance(value, list):
            lines.append(f"{name}:")
            lines.extend(f" {item}" for item in value)
        else:
            lines.append(f"{name}: {value}" if value else f"{name}:")
    return "\n".join(lines) + "\n\n"


def _files_line(path):
    path = pathlib.Path(path)
    return f"{_md5(path)} {path.stat().st_size} {OWN_SECTION} {OWN_PRIORITY} {path.name}"


def _sha256_line(path):
    path = pathlib.Path(path)
    return f"{_hashes(path)[2]} {path.stat().st_size} {path.name}"


def _owner():
    """(uid, gid, user name, group name) of this process, for tar members we make up."""
    uid, gid = os.getuid(), os.getgid()
    try:
        uname = pwd.getpwuid(uid).pw_name
    except KeyError:
        uname = ""
    try:
        gname = grp.getgrgid(gid).gr_name
    except KeyError:
        gname = ""
    return uid, gid, uname, gname


def _write_signed(path, text, gnupg):
    """Write ``text`` to ``path`` and clear-sign it in place (``gnupg=None``: leave unsigned)."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    if gnupg is not None:
        try:
            gnupg.sign_file(path)
        except gpgmod.GnupgError as e:
            raise ChangesError(f"{path.name}: signing failed: {e}") from e


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------

def _payload(text, name):
    """The unsigned deb822 text of a changes file (signature stripped, not verified)."""
    if gpgmod.is_clearsigned(text):
        try:
            return gpgmod.unsign(text)
        except gpgmod.GnupgError as e:
            raise ChangesError(f"{name}: broken PGP signature armor: {e}") from e
    if "-----BEGIN PGP" in text:
        raise ChangesError(f"{name}: unsupported PGP armor (only clear-signed changes files are accepted)")
    return text


def _check_syntax(payload, name):
    """Strict deb822 check of a one-paragraph text: raise :class:`ChangesError` on the first bad line."""
    lines = payload.splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ChangesError(f"{name}: empty changes file")
    seen = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise ChangesError(f"{name}: line {number}: empty line inside the paragraph "
                               "(a changes file has exactly one paragraph)")
        if line[0] in " \t":
            if number == 1:
                raise ChangesError(f"{name}: line 1: continuation line without a field")
            continue
        match = _FIELD_LINE.match(line)
        if match is None:
            raise ChangesError(f"{name}: line {number}: malformed, expected 'Field: value': {line[:80]!r}")
        field = match.group("name").lower()
        if field in seen:
            raise ChangesError(f"{name}: line {number}: duplicate field '{match.group('name')}'")
        seen.add(field)


def _parse_deb822(text, name):
    """Parse and validate changes text; return a ``deb822.Deb822`` (all values as raw strings)."""
    payload = _payload(text, name)
    _check_syntax(payload, name)
    try:
        return deb822.Deb822(payload)
    except Exception as e:  # python-debian raises various types on garbage
        raise ChangesError(f"{name}: cannot parse changes: {e}") from e


def _file_lines(value, where, columns):
    """Split a ``Files``/``Checksums-*`` field value into lists of ``len(columns)`` words; the
    ``size`` column must be a number. Raises :class:`ChangesError` naming ``where`` on bad lines."""
    rows = []
    for number, line in enumerate((value or "").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != len(columns) or not parts[columns.index("SIZE")].isdigit():
            raise ChangesError(f"{where} line {number}: expected '{' '.join(columns)}': {line.strip()!r}")
        rows.append(parts)
    return rows


class Changes:
    """A deb822 changes file on disk: a user upload, or (subclasses) a buildrequest or buildresult.

    ``Changes(path)`` parses and validates it (syntax, mandatory fields, sane source, version,
    architecture and timecode); its files are not looked at until :meth:`check_files`.
    ``timecode``: use this timecode if the file carries none (default: a new one).
    """

    #: Kind of this class; ``None``: by file name (see :func:`classify`).
    KIND = None

    def __init__(self, path, timecode=None):
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
        self._deb822 = _parse_deb822(self.text, self.path.name)
        self._validate()
        self._timecode = self.get(PREFIX + "Timecode") or timecode or timecode_now()
        if not TIMECODE_REGEX.match(self._timecode):
            raise ChangesError(f"{self.path.name}: malformed timecode '{self._timecode}' (expected YYYYMMDD:HHMMSS:ffffff)")

    def _validate(self):
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

    def __repr__(self):
        return f"{type(self).__name__}({self.bkey})"

    # Fields ------------------------------------------------------------------------------
    def get(self, field, default=None):
        """Value of ``field`` (stripped; multi-line values keep their inner lines), or ``default``."""
        value = self._deb822.get(field)
        return default if value is None else value.strip()

    def __getitem__(self, field):
        value = self.get(field)
        if value is None:
            raise KeyError(field)
        return value

    def __contains__(self, field):
        return field in self._deb822

    def field_names(self):
        """Field names in file order."""
        return list(self._deb822.keys())

    def x_get(self, name, default=None):
        """Value of ``X-Mini-Buildd-<name>``."""
        return self.get(PREFIX + name, default)

    @property
    def name(self):
        return self.path.name

    @property
    def source(self):
        return self.get("Source")

    @property
    def version(self):
        return self.get("Version")

    @property
    def distribution(self):
        return self.get("Distribution")

    @property
    def architecture(self):
        """The Architecture field value (whitespace normalized), e.g. ``source amd64`` or ``amd64``."""
        return " ".join(self.get("Architecture").split())

    @property
    def maintainer(self):
        return self.get("Maintainer")

    @property
    def changed_by(self):
        return self.get("Changed-By")

    @property
    def changes_text(self):
        """The ``Changes:`` field value (changelog), as input to upload options."""
        return self._deb822.get("Changes", "")

    def upload_options(self):
        """Upload options of the top changelog block (upstream §3.8); raise :class:`ChangesError` if invalid."""
        try:
            return uploadoptions.parse_upload_options(self.changes_text)
        except ValueError as e:
            raise ChangesError(f"{self.name}: {e}") from e

    # Identity ----------------------------------------------------------------------------
    @property
    def timecode(self):
        return self._timecode

    @property
    def key_parts(self):
        return (self.source, self.version, self.timecode)

    @property
    def bkey_parts(self):
        """``(source, version, timecode, arch)``: path components below events or builds dir."""
        return self.key_parts + (self.architecture,)

    @property
    def key(self):
        """``SOURCE/VERSION/TIMECODE``."""
        return "/".join(self.key_parts)

    @property
    def bkey(self):
        """``SOURCE/VERSION/TIMECODE/ARCH`` (ARCH: Architecture field value as is)."""
        return "/".join(self.bkey_parts)

    def events_dir(self):
        """``var/events/<bkey>/`` of this changes (not created)."""
        return config.paths.events_of(*self.bkey_parts)

    def build_dir(self):
        """``var/shared/builds/<bkey>/`` of this changes (not created)."""
        return config.paths.build_dir(*self.bkey_parts)

    # Files -------------------------------------------------------------------------------
    def _checksums(self, field, digest_key):
        return {name: {digest_key: digest.lower(), "size": int(size)}
                for digest, size, name in _file_lines(self.get(field), f"{self.name}: {field}", ("CHECKSUM", "SIZE", "NAME"))}

    def files(self):
        """Files listed in ``Files``: dicts ``name, md5, size, section, priority, sha1, sha256``.

        ``sha1``/``sha256`` come from ``Checksums-Sha1``/``-Sha256`` (None if not given). Raises
        :class:`ChangesError` on malformed lines, unsafe names or inconsistent checksum fields.
        """
        sha1 = self._checksums("Checksums-Sha1", "sha1")
        sha256 = self._checksums("Checksums-Sha256", "sha256")
        files = []
        for md5, size, section, priority, name in _file_lines(self.get("Files"), f"{self.name}: Files",
                                                               ("MD5", "SIZE", "SECTION", "PRIORITY", "NAME")):
            check_file_name(name, self.name)
            entry = {"name": name, "md5": md5.lower(), "size": int(size), "section": section, "priority": priority,
                     "sha1": None, "sha256": None}
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

    def file_paths(self):
        """Paths of all listed files (beside the changes file)."""
        return [self.path.parent / f["name"] for f in self.files()]

    def check_files(self):
        """Every listed file must be a regular file beside the changes with matching size and
        checksums, and have a SHA-256 checksum (MD5 alone proves nothing).

        Raises :class:`ChangesError` naming the first bad file. Returns ``{name: sha256}``.
        """
        verified = {}
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
            md5, sha1, sha256 = _hashes(path)
            for what, actual in (("md5", md5), ("sha1", sha1), ("sha256", sha256)):
                if entry[what] is not None and entry[what] != actual:
                    raise ChangesError(f"{self.name}: {what} checksum mismatch for '{entry['name']}'")
            verified[entry["name"]] = sha256
        LOG.debug("%s: all listed files present and intact", self.name)
        return verified

    def dsc_name(self):
        """Name of the ``.dsc`` listed in ``Files`` (None if there is none)."""
        names = [f["name"] for f in self.files() if f["name"].endswith(".dsc")]
        if len(names) > 1:
            raise ChangesError(f"{self.name}: more than one .dsc listed: {', '.join(names)}")
        return names[0] if names else None

    def dsc_path(self):
        """Path of the listed ``.dsc`` beside the changes (None if there is none)."""
        name = self.dsc_name()
        return None if name is None else self.path.parent / name

    def dsc(self):
        """The listed ``.dsc`` parsed (``deb822.Dsc``); raise :class:`ChangesError` if there is none."""
        path = self.dsc_path()
        if path is None:
            raise ChangesError(f"{self.name}: no .dsc in upload (binary-only uploads are not accepted)")
        return read_dsc(path)

    # Signature ---------------------------------------------------------------------------
    def signature_check(self, keyring):
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
            signed = _parse_deb822(result.data.decode("utf-8"), self.name)
        except UnicodeDecodeError as e:
            raise ChangesError(f"{self.name}: signed content is not UTF-8 text") from e
        if dict(signed) != dict(self._deb822):
            raise ChangesError(f"{self.name}: signed content differs from the parsed file (text outside the signature?)")
        LOG.debug("%s: good signature by %s", self.name, result.key_id)
        return result

    # Moving ------------------------------------------------------------------------------
    def move_to(self, directory):
        """Move the changes file and its listed files into ``directory`` (created); return the new path.

        Listed files that are missing or have unsafe names are left alone (logged), so that even a
        broken upload can be archived with its event.
        """
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        try:
            names = [f["name"] for f in self.files()]
        except ChangesError as e:
            LOG.warning("%s: moving the changes file only: %s", self.name, e)
            names = []
        for name in names:
            src = self.path.parent / name
            if src.is_file() and not src.is_symlink():
                if src.resolve() != (directory / name).resolve():
                    shutil.move(str(src), str(directory / name))
            else:
                LOG.warning("%s: listed file '%s' not found, not moved", self.name, name)
        target = directory / self.name
        if self.path.resolve() != target.resolve():
            shutil.move(str(self.path), str(target))
        self.path = target
        return target

    # Events ------------------------------------------------------------------------------
    def to_event_extra(self):
        """The ``extra`` dict of an event about this changes (upstream §5.4, reference events).

        ``changes`` is the path relative to the events dir (``<bkey>/<file name>``), where the file
        is or will be archived; every ``X-Mini-Buildd-*`` field follows in file order, snake_case.
        """
        extra = {
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


class Upload(Changes):
    """A user upload (any ``*.changes`` that is neither buildrequest nor buildresult).

    Its timecode is always ours (``timecode`` or a new one): an ``X-Mini-Buildd-Timecode`` field
    in an upload is ignored, so no uploader can choose the key of another package."""

    KIND = UPLOAD

    def __init__(self, path, timecode=None):
        super().__init__(path, timecode=timecode)
        self._timecode = timecode or timecode_now()


def read_dsc(path):
    """Parse a ``.dsc`` file (signature not checked); raise :class:`ChangesError` if unusable."""
    path = pathlib.Path(path)
    try:
        text = _payload(path.read_text(encoding="utf-8"), path.name)
        dsc = deb822.Dsc(text)
    except (OSError, UnicodeDecodeError) as e:
        raise ChangesError(f"{path.name}: cannot read .dsc: {e}") from e
    if not dsc.get("Source") or not dsc.get("Version"):
        raise ChangesError(f"{path.name}: not a .dsc (no Source/Version)")
    return dsc


def read_dsc_files(path):
    """Files a ``.dsc`` lists: dicts ``name, md5, size, sha256`` (names checked to be plain file
    names; ``sha256`` from ``Checksums-Sha256``, None if the .dsc has none)."""
    path = pathlib.Path(path)
    read_dsc(path)
    raw = deb822.Deb822(_payload(path.read_text(encoding="utf-8"), path.name))
    sha256 = {name: digest.lower() for digest, _size, name in
              _file_lines(raw.get("Checksums-Sha256"), f"{path.name}: Checksums-Sha256", ("CHECKSUM", "SIZE", "NAME"))}
    return [{"name": check_file_name(name, path.name), "md5": md5.lower(), "size": int(size), "sha256": sha256.get(name)}
            for md5, size, name in _file_lines(raw.get("Files"), f"{path.name}: Files", ("MD5", "SIZE", "NAME"))]


def file_sha256(path):
    """SHA-256 hex digest of a file."""
    return files_mod.sha256(path)


def load(path, timecode=None):
    """Parse ``path`` as the class its file name calls for (:class:`Upload`, :class:`Buildrequest`,
    :class:`Buildresult`)."""
    return {UPLOAD: Upload, BUILDREQUEST: Buildrequest, BUILDRESULT: Buildresult}[classify(path)](path, timecode=timecode)


# ---------------------------------------------------------------------------------------------
# Tars of buildrequests and buildresults
# ---------------------------------------------------------------------------------------------

def _safe_member_name(member, tar_name):
    name = member.name
    norm = posixpath.normpath(name)
    if (not name or "\0" in name or name.startswith("/") or norm.startswith("/") or norm in (".", "..")
            or ".." in norm.split("/")):
        raise ChangesError(f"{tar_name}: refusing unsafe member name {name!r}")
    if not (member.isfile() or member.isdir()):
        raise ChangesError(f"{tar_name}: refusing member {name!r}: only regular files and directories allowed")
    return norm


def safe_extract(tar_path, dest):
    """Extract ``tar_path`` into ``dest``: plain files and dirs only, no absolute paths, no ``..``,
    no links or devices, nothing outside ``dest`` (also not via symlinks already in ``dest``); files
    get mode 0644. Every member is checked before anything is written. Returns the file member names."""
    tar_path, dest = pathlib.Path(tar_path), pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    names = []
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            members = tar.getmembers()
            checked = [(m, _safe_member_name(m, tar_path.name)) for m in members]
            for member, name in checked:
                target = root / name
                if root not in target.parents and target != root:
                    raise ChangesError(f"{tar_path.name}: member {name!r} would land outside {dest}")
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                parent = target.parent.resolve()
                if parent != root and root not in parent.parents:
                    raise ChangesError(f"{tar_path.name}: member {name!r} would land outside {dest}")
                if target.is_symlink() or (target.exists() and not target.is_file()):
                    raise ChangesError(f"{tar_path.name}: refusing to overwrite non-file {target}")
                source = tar.extractfile(member)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(source, out)
                os.chmod(target, 0o644)
                names.append(name)
    except (tarfile.TarError, EOFError) as e:
        raise ChangesError(f"{tar_path.name}: broken tar: {e}") from e
    except OSError as e:
        raise ChangesError(f"{tar_path.name}: extraction failed: {e}") from e
    return names


def _tar_path(changes):
    """The ``<changes>.tar`` companion if listed in Files, else None."""
    name = changes.name + ".tar"
    return changes.path.parent / name if any(f["name"] == name for f in changes.files()) else None


def _tar_names(tar_path):
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            return [m.name for m in tar.getmembers() if m.isfile()]
    except (OSError, tarfile.TarError, EOFError) as e:
        raise ChangesError(f"{pathlib.Path(tar_path).name}: cannot read tar: {e}") from e


# ---------------------------------------------------------------------------------------------
# Buildrequest
# ---------------------------------------------------------------------------------------------

def _qa_mode(changes, name):
    value = changes.x_get(name, "DISABLED")
    try:
        return QAMode.parse(value)
    except ValueError as e:
        raise ChangesError(f"{changes.name}: {PREFIX}{name}: {e}") from e


class Buildrequest(Changes):
    """A buildrequest: one source for one architecture, with its ``.changes.tar`` (config + source)."""

    KIND = BUILDREQUEST

    def __init__(self, path, timecode=None):
        super().__init__(path, timecode=timecode)
        self.unpacked_dir = None

    @property
    def tar_path(self):
        return self.path.parent / (self.name + ".tar")

    def unpack(self, build_dir):
        """Check the listed files, then extract the tar safely into ``build_dir``; return ``build_dir``."""
        self.check_files()
        if _tar_path(self) is None:
            raise ChangesError(f"{self.name}: the tar '{self.tar_path.name}' is not listed in Files")
        safe_extract(self.tar_path, build_dir)
        self.unpacked_dir = pathlib.Path(build_dir)
        LOG.debug("%s: unpacked into %s", self.name, build_dir)
        return self.unpacked_dir

    def tar_names(self):
        return _tar_names(self.tar_path)

    def dsc_name(self):
        names = [n for n in self.tar_names() if "/" not in n and n.endswith(".dsc")]
        if len(names) != 1:
            raise ChangesError(f"{self.name}: expected exactly one .dsc in the tar, found {len(names)}")
        return names[0]

    def dsc_path(self):
        """Path of the .dsc in the build dir (after :meth:`unpack`)."""
        if self.unpacked_dir is None:
            raise ChangesError(f"{self.name}: not unpacked yet")
        return self.unpacked_dir / self.dsc_name()

    def config_file(self, name):
        """Text of ``.config/<name>`` (from the build dir after :meth:`unpack`, else from the tar)."""
        if name not in CONFIG_FILES:
            raise ValueError(f"Unknown buildrequest config file '{name}' (known: {', '.join(CONFIG_FILES)})")
        if self.unpacked_dir is not None:
            return (self.unpacked_dir / CONFIG_DIR / name).read_text(encoding="utf-8")
        try:
            with tarfile.open(self.tar_path, "r:*") as tar:
                return tar.extractfile(f"{CONFIG_DIR}/{name}").read().decode("utf-8")
        except (OSError, KeyError, tarfile.TarError, AttributeError) as e:
            raise ChangesError(f"{self.name}: cannot read {CONFIG_DIR}/{name} from tar: {e}") from e

    # X-Mini-Buildd fields ----------------------------------------------------------------
    upload_to = property(lambda self: self.x_get("Upload-To"))
    packager = property(lambda self: self.x_get("Packager"))
    builder = property(lambda self: self.x_get("Builder"))
    build_dep_resolver = property(lambda self: self.x_get("Build-Dep-Resolver", "apt"))
    deb_build_options = property(lambda self: self.x_get("Deb-Build-Options", ""))
    deb_build_profiles = property(lambda self: self.x_get("Deb-Build-Profiles", ""))
    add_depends = property(lambda self: self.x_get("Add-Depends", ""))
    lintian_extra_options = property(lambda self: self.x_get("Lintian-Extra-Options", ""))
    lintian_warnfail_options = property(lambda self: self.x_get("Lintian-Warnfail-Options", ""))
    buildlog = property(lambda self: self.x_get("Buildlog"))
    buildlog_building = property(lambda self: self.x_get("Buildlog-Building"))
    buildlog_installed = property(lambda self: self.x_get("Buildlog-Installed"))

    @property
    def arch_all(self):
        return self.x_get("Arch-All", "").lower() == "yes"

    @property
    def build_time_limit(self):
        """Seconds a build may take (``X-Mini-Buildd-Build-Time-Limit``), None if not given or bad."""
        value = self.x_get("Build-Time-Limit", "")
        return int(value) if value.isdigit() and int(value) > 0 else None

    @property
    def sbuild_config_blocks(self):
        return self.x_get("Sbuild-Config-Blocks", "").split()

    @property
    def sbuild_setup_blocks(self):
        return self.x_get("Sbuild-Setup-Blocks", "").split()

    @property
    def lintian_mode(self):
        return _qa_mode(self, "Lintian-Mode")

    @property
    def piuparts_mode(self):
        return _qa_mode(self, "Piuparts-Mode")

    @property
    def autopkgtest_mode(self):
        return _qa_mode(self, "Autopkgtest-Mode")

    @property
    def diststr(self):
        """The Distribution as :class:`mini_buildd.dist.DistStr`."""
        try:
            return DistStr(self.distribution)
        except ValueError as e:
            raise ChangesError(f"{self.name}: {e}") from e

    @property
    def buildlog_name(self):
        return buildlog_name(self.source, self.version, self.architecture)


def create_buildrequest(upload, arch, out_dir, *, distribution_str, arch_all, fields, config_files, dsc_files=None,
                        gnupg):
    """Write and sign ``<src>_<ver>_mini-buildd-buildrequest_<arch>.changes`` + ``.changes.tar`` in ``out_dir``.

    - ``upload``: the user upload (:class:`Changes`): source, version, timecode.
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
    optional = [(name, values.pop(name)) for name in BUILDREQUEST_OPTIONAL_FIELDS if values.get(name)]
    values.setdefault("Buildlog", f"{bkey}/{buildlog_name(upload.source, upload.version, arch)}")
    missing = [f for f in BUILDREQUEST_FIELDS if f != "Arch-All" and f not in values]
    if missing:
        raise ValueError(f"Missing buildrequest field(s): {', '.join(missing)}")

    # Source files: the .dsc and exactly the files it lists.
    if dsc_files is None:
        dsc = upload.dsc_path()
        if dsc is None:
            raise ChangesError(f"{upload.name}: no .dsc in upload")
        dsc_files = [dsc] + [dsc.parent / f["name"] for f in read_dsc_files(dsc)]
    dsc_files = [pathlib.Path(p) for p in dsc_files]
    dscs = [p for p in dsc_files if p.name.endswith(".dsc")]
    if len(dscs) != 1:
        raise ChangesError(f"Buildrequest for {upload.key}: need exactly one .dsc, got {[p.name for p in dscs]}")
    listed = {f["name"]: f for f in read_dsc_files(dscs[0])}
    given = {p.name: p for p in dsc_files if p != dscs[0]}
    if set(listed) != set(given):
        raise ChangesError(f"{dscs[0].name}: source files do not match the .dsc: "
                           f"missing {sorted(set(listed) - set(given))}, extra {sorted(set(given) - set(listed))}")
    for name, path in given.items():
        if not path.is_file() or path.stat().st_size != listed[name]["size"]:
            raise ChangesError(f"{dscs[0].name}: source file '{name}' missing or of wrong size")

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    changes_path = out_dir / name_for(upload.source, upload.version, BUILDREQUEST, arch)
    tar_path = out_dir / (changes_path.name + ".tar")

    now = time.time()
    with tarfile.open(tar_path, "w", dereference=True) as tar:
        for name in CONFIG_FILES:
            data = (config_files.get(name) or "").encode("utf-8")
            info = tarfile.TarInfo(f"{CONFIG_DIR}/{name}")
            info.size, info.mode, info.mtime = len(data), 0o644, now
            info.uid, info.gid, info.uname, info.gname = _owner()
            tar.addfile(info, fileobj=io.BytesIO(data))
        for path in [dscs[0]] + [given[f] for f in listed]:
            tar.add(str(path), arcname=path.name, recursive=False)

    head = [("Distribution", distribution_str), ("Source", upload.source), ("Version", upload.version),
            ("Architecture", arch), (PREFIX + "Timecode", upload.timecode)]
    for name in BUILDREQUEST_FIELDS:
        if name == "Arch-All":
            if arch_all:
                head.append((PREFIX + name, "Yes"))
            continue
        head.append((PREFIX + name, _one_line(values[name])))
    head += [(PREFIX + name, _one_line(value)) for name, value in optional]
    head.append(("Checksums-Sha256", [_sha256_line(tar_path)]))
    head.append(("Files", [_files_line(tar_path)]))
    _write_signed(changes_path, _render(head), gnupg)
    LOG.info("Created buildrequest %s", changes_path)
    return Buildrequest(changes_path)


# ---------------------------------------------------------------------------------------------
# Buildresult
# ---------------------------------------------------------------------------------------------

def _status_word(value):
    """First word of an sbuild summary value; known multi-word statuses (``no tests``) are kept whole."""
    value = " ".join(str(value or "").split())
    for word in SBUILD_STATUS_PASS + SBUILD_STATUS_WARN + SBUILD_STATUS_FAIL:
        if " " in word and value.lower().startswith(word):
            return value[:len(word)]
    return value.split(" ", 1)[0]


def sbuild_summary_fields(sbuild_summary):
    """``[(X-Mini-Buildd-Sbuild-<Key>, word)]`` sorted by field name, from an sbuild summary dict.

    Only :data:`SBUILD_SUMMARY_KEYS` (case-insensitive, ``Build Time`` = ``Build-Time``) are used;
    Status defaults to ``error`` when missing.
    """
    known = {k.lower(): k for k in SBUILD_SUMMARY_KEYS}
    fields = {}
    for key, value in (sbuild_summary or {}).items():
        canonical = known.get("-".join(str(key).split()).lower())
        word = _status_word(value)
        if canonical and word:
            fields[canonical] = word
    fields.setdefault("Status", "error")
    return sorted((f"{PREFIX}Sbuild-{k}", v) for k, v in fields.items())


def create_buildresult(breq, build_dir, out_dir, *, sbuild_summary, buildlog_path, sbuild_changes_path=None,
                       internal_error=None, canceled_by=None, gnupg):
    """Write and sign ``<src>_<ver>_mini-buildd-buildresult_<arch>.changes`` in ``out_dir``.

    - ``breq``: the :class:`Buildrequest`; ``build_dir``: where sbuild wrote its output.
    - ``sbuild_summary``: parsed sbuild summary (``{"Status": "successful", "Lintian": "pass", ...}``).
    - ``buildlog_path``: the build log (relative paths: below ``build_dir``); copied into ``out_dir``
      as ``<src>_<ver>_<arch>.buildlog``. If it does not exist, a short log stating the
      internal error/cancel is written instead, so every result has a log.
    - ``sbuild_changes_path``: sbuild's ``.changes`` (default: ``<src>_<ver>_<arch>.changes`` in
      ``build_dir`` if it exists); it and all its files go into ``<result>.changes.tar``.
    - ``internal_error``, ``canceled_by``: recorded as ``X-Mini-Buildd-Internal-Error``/``-Canceled-By``.
    - ``gnupg``: :class:`mini_buildd.tools.gnupg.Gnupg` to sign with (``None``: unsigned; tests only).

    A broken sbuild ``.changes`` does not raise: it is recorded as internal error. Returns the
    :class:`Buildresult`.
    """
    build_dir, out_dir = pathlib.Path(build_dir), pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arch = breq.architecture
    changes_path = out_dir / name_for(breq.source, breq.version, BUILDRESULT, arch)
    tar_path = out_dir / (changes_path.name + ".tar")
    errors = [_one_line(internal_error)] if internal_error else []

    # Build log
    log_target = out_dir / buildlog_name(breq.source, breq.version, arch)
    log_source = None if buildlog_path is None else build_dir / buildlog_path
    if log_source is not None and log_source.is_file():
        if log_source.resolve() != log_target.resolve():
            shutil.copyfile(log_source, log_target)
    else:
        note = [f"mini-buildd: no build log for {breq.bkey}"]
        note += [f"Internal error: {internal_error}"] if internal_error else []
        note += [f"Canceled by: {canceled_by}"] if canceled_by else []
        log_target.write_text("\n".join(note) + "\n", encoding="utf-8")
    files = [_files_line(log_target)]
    sha256 = [_sha256_line(log_target)]

    # sbuild's changes and its files
    if sbuild_changes_path is None:
        default = build_dir / name_for(breq.source, breq.version, UPLOAD, arch)
        sbuild_changes_path = default if default.is_file() else None
    if sbuild_changes_path is not None:
        try:
            inner = Changes(build_dir / sbuild_changes_path, timecode=breq.timecode)
            inner.check_files()
            with tarfile.open(tar_path, "w", dereference=True) as tar:
                for path in inner.file_paths() + [inner.path]:
                    tar.add(str(path), arcname=path.name, recursive=False)
            files.append(_files_line(tar_path))
            sha256.append(_sha256_line(tar_path))
        except (ChangesError, OSError, tarfile.TarError) as e:
            LOG.error("%s: unusable sbuild changes: %s", breq.bkey, e)
            errors.append(f"Unusable sbuild changes: {_one_line(e)}")
            tar_path.unlink(missing_ok=True)

    fields = [("Distribution", breq.distribution), ("Source", breq.source), ("Version", breq.version),
              ("Architecture", arch)]
    fields += [(PREFIX + name, breq.x_get(name, "")) for name in BUILDRESULT_COPIED_FIELDS]
    fields.append(("Checksums-Sha256", sha256))
    fields.append(("Files", files))
    fields += sbuild_summary_fields(sbuild_summary)
    if errors:
        fields.append((PREFIX + "Internal-Error", " / ".join(errors)))
    if canceled_by:
        fields.append((PREFIX + "Canceled-By", _one_line(canceled_by)))
    _write_signed(changes_path, _render(fields), gnupg)
    LOG.info("Created buildresult %s", changes_path)
    return Buildresult(changes_path)


class Buildresult(Changes):
    """A buildresult: sbuild's outcome for one architecture, its build log and (maybe) a tar of the
    sbuild ``.changes`` with its files."""

    KIND = BUILDRESULT

    @property
    def tar_path(self):
        """Path of the ``.changes.tar`` if the result has one, else None."""
        return _tar_path(self)

    def buildlog_path(self):
        return self.path.parent / buildlog_name(self.source, self.version, self.architecture)

    def unpack(self, directory):
        """Check the listed files, extract the tar into ``directory``; return the inner sbuild
        ``.changes`` path (its files checked), or None if the result carries none."""
        self.check_files()
        tar = self.tar_path
        if tar is None:
            return None
        names = [n for n in safe_extract(tar, directory) if n.endswith(".changes") and "/" not in n]
        if len(names) != 1:
            raise ChangesError(f"{tar.name}: expected exactly one .changes, found {len(names)}")
        inner = pathlib.Path(directory) / names[0]
        Changes(inner, timecode=self.timecode).check_files()
        return inner

    upload_to = property(lambda self: self.x_get("Upload-To"))
    builder = property(lambda self: self.x_get("Builder"))
    buildlog = property(lambda self: self.x_get("Buildlog"))
    buildlog_installed = property(lambda self: self.x_get("Buildlog-Installed"))
    internal_error = property(lambda self: self.x_get("Internal-Error"))
    canceled_by = property(lambda self: self.x_get("Canceled-By"))

    @property
    def sbuild_status(self):
        """sbuild's Status word (``error`` if none was recorded)."""
        return self.x_get("Sbuild-Status", "error")

    def sbuild_checks(self):
        """``{check: status word}`` for the QA checks sbuild reported (lintian, piuparts, autopkgtest)."""
        result = {}
        for check in SBUILD_CHECKS:
            value = self.x_get(f"Sbuild-{check.capitalize()}")
            if value is not None:
                result[check] = value
        return result

    def succeeded(self, lintian_mode, piuparts_mode, autopkgtest_mode, ignore_checks=False):
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
