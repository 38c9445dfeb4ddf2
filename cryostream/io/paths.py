"""Where a single output file may go: checked before any work, so nothing computed is lost."""

from __future__ import annotations

import os
from pathlib import Path

from cryostream.errors import ConfigError, StoreError

__all__ = ["output_file", "kept_folders", "write_whole", "partial_path"]


def partial_path(path: Path) -> Path:
    """Where :func:`write_whole` writes ``path`` first: ``.NAME.partial`` beside it (hidden,
    so a folder's listing leaves it out)."""
    return path.with_name(f".{path.name}.partial")


def write_whole(path: Path, text: str, fix: str = "free some space, then run the same command "
                "again") -> None:
    """Write ``text`` to ``path`` whole or not at all: to :func:`partial_path` first, then
    renamed over it, so a full disk, a file-size limit or a kill leaves the file before as it
    was. On an ``OSError`` the partial file is removed and a :class:`StoreError` names
    ``path`` and ``fix``."""
    partial = partial_path(path)
    try:
        partial.write_text(text)
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise StoreError(f"{path}: could not write it ({exc.strerror or exc}); {fix}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


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


def kept_folders(sources: list[str], names: list[str]) -> list[str]:
    """The output names of inputs ``sources`` (``names``: each one's own, such as its file's
    stem): as they are, or, where inputs in different folders share a name (sessions merged in
    one RELION STAR file: ``Movies/GridA/mic_000.mrc`` and ``Movies/GridB/mic_000.mrc``), every
    name with its input's folders below the folder the inputs share (``GridA/mic_000``), as
    RELION keeps them.

    Examples
    --------
    >>> kept_folders(["m/A/x.mrc", "m/B/x.mrc"], ["x", "x"])
    ['A/x', 'B/x']
    >>> kept_folders(["m/A/x.mrc", "m/B/y.mrc"], ["x", "y"])
    ['x', 'y']
    """
    if len(set(names)) == len(names):
        return list(names)
    folders = [Path(os.path.abspath(s)).parent for s in sources]
    common = Path(os.path.commonpath(folders))
    return [(folder.relative_to(common) / name).as_posix()
            for folder, name in zip(folders, names, strict=True)]
