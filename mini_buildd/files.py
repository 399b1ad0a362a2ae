"""Small file helpers shared by several modules: atomic and synced writes, the digests (SHA-256 and
others) of a file."""

import hashlib
import os
import pathlib
import shutil
import tempfile


def write_atomic(path, text, mode=0o644, fsync=False):
    """Write ``text`` to ``path`` so that readers never see a partial file (temp file + rename)."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:  # pylint: disable=broad-except  # clean-up, re-raised: no temporary file is left
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class _Digests:
    """Several ``hashlib`` hashes fed the same data (what :func:`hashlib.file_digest` takes as its digest)."""

    def __init__(self, algorithms):
        self.hashes = {algorithm: hashlib.new(algorithm) for algorithm in algorithms}

    def update(self, data):
        for h in self.hashes.values():
            h.update(data)


def digests(path, algorithms=("sha256",)):
    """Hex digests of a file, read once: ``{algorithm: hex digest}`` for ``hashlib`` algorithm names."""
    with open(path, "rb") as f:
        result = hashlib.file_digest(f, lambda: _Digests(algorithms))
    return {algorithm: h.hexdigest() for algorithm, h in result.hashes.items()}


def digest(path, algorithm="sha256"):
    """Hex digest of a file with a ``hashlib`` algorithm."""
    return digests(path, (algorithm,))[algorithm]


def sha256(path):
    """SHA-256 hex digest of a file."""
    return digest(path, "sha256")


def copy_synced(src, dst):
    """Copy ``src`` to ``dst`` and fsync the copy."""
    shutil.copyfile(src, dst)
    with open(dst, "rb+") as f:
        os.fsync(f.fileno())


def fsync_dir(path):
    """fsync a directory (its entries: a rename or link in it is durable afterwards)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
