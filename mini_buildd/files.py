"""Small file helpers shared by several modules: atomic writes."""

import os
import pathlib
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
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
