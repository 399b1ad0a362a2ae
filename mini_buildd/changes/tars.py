"""The ``.changes.tar`` companions of buildrequests and buildresults: writing members, listing them,
and safe extraction (plain files and directories only, nothing outside the target directory).
"""

import grp
import io
import os
import pathlib
import posixpath
import pwd
import shutil
import tarfile
import typing
from collections.abc import Iterable

from mini_buildd.changes.names import ChangesError


def _owner() -> tuple[int, int, str, str]:
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


def add_text(tar: tarfile.TarFile, name: str, text: typing.Optional[str], mtime: float) -> None:
    """Add a member ``name`` with ``text`` (UTF-8, mode 0644, owned by this process) to an open tar."""
    data = (text or "").encode("utf-8")
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    info.mtime = mtime  # type: ignore[assignment]  # tarfile writes a float mtime as is
    info.uid, info.gid, info.uname, info.gname = _owner()
    tar.addfile(info, fileobj=io.BytesIO(data))


def add_files(tar: tarfile.TarFile, paths: Iterable[typing.Union[str, os.PathLike[str]]]) -> None:
    """Add files (links followed) to an open tar under their plain names."""
    for path in paths:
        tar.add(str(path), arcname=pathlib.Path(path).name, recursive=False)


def listed_tar(changes: typing.Any) -> typing.Optional[pathlib.Path]:
    """The ``<changes>.tar`` companion of a changes file if its Files list it, else None."""
    name = changes.name + ".tar"
    return changes.path.parent / name if any(f["name"] == name for f in changes.files()) else None


def tar_names(tar_path: typing.Union[str, os.PathLike[str]]) -> list[str]:
    """Names of the file members of a tar."""
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            return [m.name for m in tar.getmembers() if m.isfile()]
    except (OSError, tarfile.TarError, EOFError) as e:
        raise ChangesError(f"{pathlib.Path(tar_path).name}: cannot read tar: {e}") from e


def read_member(tar_path: typing.Union[str, os.PathLike[str]], name: str) -> bytes:
    """Bytes of member ``name`` of a tar (exceptions of :mod:`tarfile` and ``OSError`` pass)."""
    with tarfile.open(tar_path, "r:*") as tar:
        member = tar.extractfile(name)
        if member is None:
            raise KeyError(f"{name} is not a regular file")
        return member.read()


def _safe_member_name(member: tarfile.TarInfo, tar_name: str) -> str:
    name = member.name
    norm = posixpath.normpath(name)
    if (not name or "\0" in name or name.startswith("/") or norm.startswith("/") or norm in (".", "..")
            or ".." in norm.split("/")):
        raise ChangesError(f"{tar_name}: refusing unsafe member name {name!r}")
    if not (member.isfile() or member.isdir()):
        raise ChangesError(f"{tar_name}: refusing member {name!r}: only regular files and directories allowed")
    return norm


def safe_extract(tar_path: typing.Union[str, os.PathLike[str]], dest: typing.Union[str, os.PathLike[str]]) -> list[str]:
    """Extract ``tar_path`` into ``dest``: plain files and dirs only, no absolute paths, no ``..``,
    no links or devices, nothing outside ``dest`` (also not via symlinks already in ``dest``); files
    get mode 0644. Every member is checked before anything is written. Returns the file member names."""
    tar_file, dest_dir = pathlib.Path(tar_path), pathlib.Path(dest)
    dest_dir.mkdir(parents=True, exist_ok=True)
    root = dest_dir.resolve()
    names: list[str] = []
    try:
        with tarfile.open(tar_file, "r:*") as tar:
            members = tar.getmembers()
            checked = [(m, _safe_member_name(m, tar_file.name)) for m in members]
            for member, name in checked:
                target = root / name
                if root not in target.parents and target != root:
                    raise ChangesError(f"{tar_file.name}: member {name!r} would land outside {dest_dir}")
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                parent = target.parent.resolve()
                if parent != root and root not in parent.parents:
                    raise ChangesError(f"{tar_file.name}: member {name!r} would land outside {dest_dir}")
                if target.is_symlink() or (target.exists() and not target.is_file()):
                    raise ChangesError(f"{tar_file.name}: refusing to overwrite non-file {target}")
                source = typing.cast(typing.IO[bytes], tar.extractfile(member))  # a file member
                if source is None:  # checked to be a regular file above
                    raise ChangesError(f"{tar_path.name}: cannot read member {name!r}")
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(source, out)
                os.chmod(target, 0o644)
                names.append(name)
    except (tarfile.TarError, EOFError) as e:
        raise ChangesError(f"{tar_file.name}: broken tar: {e}") from e
    except OSError as e:
        raise ChangesError(f"{tar_file.name}: extraction failed: {e}") from e
    return names
