"""Where a single output file may go: checked before any work, so nothing computed is lost."""

from __future__ import annotations

import os
from pathlib import Path

from cryostream.errors import ConfigError, StoreError

__all__ = ["output_file"]


def output_file(path: str | os.PathLike, option: str, example: str) -> Path:
    """``path`` as an output file's path, or one error naming ``option`` and the fix.

    Refused: a folder (or a name ending in a separator), a folder that does not exist, one
    that cannot be written. ``example`` is a file name to suggest inside a folder given.
    """
    text, path = str(path), Path(path)
    if text.endswith(os.sep) or path.is_dir():
        raise ConfigError(f"{option} {text}: is a folder; give a file name, e.g. "
                          f"{option} {path / example}")
    folder = path.absolute().parent
    if not folder.is_dir():
        raise StoreError(f"{option} {text}: the folder {folder} does not exist; create it or "
                         "give another path")
    if not os.access(folder, os.W_OK):
        raise StoreError(f"{option} {text}: the folder {folder} is not writable; give another "
                         "path")
    return path
