"""User uploads (upstream §1.4 step 1): any ``*.changes`` that is neither buildrequest nor
buildresult, as made by dpkg; its timecode is always ours.
"""

import os
import typing

from mini_buildd import files
from mini_buildd.changes.model import Changes
from mini_buildd.changes.names import UPLOAD, timecode_now

#: SHA-256 hex digest of a file (what an upload's files are compared with).
file_sha256 = files.sha256


class Upload(Changes):
    """A user upload (any ``*.changes`` that is neither buildrequest nor buildresult).

    Its timecode is always ours (``timecode`` or a new one): an ``X-Mini-Buildd-Timecode`` field
    in an upload is ignored, so no uploader can choose the key of another package."""

    KIND = UPLOAD

    def __init__(self, path: typing.Union[str, os.PathLike[str]], timecode: typing.Optional[str] = None) -> None:
        super().__init__(path, timecode=timecode)
        self._timecode = timecode or timecode_now()
