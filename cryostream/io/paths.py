"""Where output files go and how they are written: checked before any work, so nothing computed
is lost, none made read-only is replaced, and written whole or not at all; and whether paths
given twice name the same files."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from cryostream.errors import ConfigError, StoreError

__all__ = ["output_file", "kept_folders", "write_whole", "holds_text", "partial_path",
           "drop_partial", "os_fix", "record_aside", "same_file", "same_paths", "file_changes",
           "broken_link", "plain_path", "shown_path", "name_depth", "short_name", "drop_empty",
           "read_only", "refuse_read_only"]


def broken_link(path: Path) -> str | None:
    """Where ``path`` leads, if it is a symbolic link whose file is gone (a RELION Import's
    links after the data was moved or archived); else None."""
    return os.readlink(path) if path.is_symlink() and not path.exists() else None


def os_fix(exc: OSError, default: str | None = None) -> str | None:
    """What to do about an error of the operating system, by its kind (a full disk: free some
    space; a read-only one: another path; …), else ``default``."""
    import errno

    cannot = "give a path you can write to, or change its permissions"
    space = "free some space, then run the same command again"
    return {errno.EROFS: "give a path on a file system you can write to",
            errno.EACCES: cannot, errno.EPERM: cannot,
            errno.EEXIST: "a file is in the way where a folder of that name is needed: give "
            "another name, or move the file away",
            errno.ENOTDIR: "a file stands where the path needs a folder: give another path",
            errno.EISDIR: "a folder, where a file is needed: give a file's name",
            errno.ENOSPC: space, errno.EFBIG: space, errno.EDQUOT: space,
            errno.ENOENT: "check the path"}.get(exc.errno, default)


@contextlib.contextmanager
def record_aside(record: Path, data: Path) -> Iterator[None]:
    """While ``data`` is replaced (the block), keep its earlier ``record`` aside
    (``.NAME.before``), so that a kill once the new ``data`` has landed leaves it with no
    record (made again on the next run), never with the earlier one. If the block fails
    before ``data`` is replaced (the same file still there), the record goes back; once it
    succeeds, the earlier one is dropped. One a killed run left aside is dropped first."""
    aside = record.with_name(f".{record.name}.before")
    aside.unlink(missing_ok=True)
    moved = record.is_file()
    before = os.stat(data).st_ino if moved and data.exists() else None
    if moved:
        os.replace(record, aside)
    try:
        yield
    except BaseException:
        same = before is not None and data.exists() and os.stat(data).st_ino == before
        if moved and same and not record.exists():
            os.replace(aside, record)
        raise
    aside.unlink(missing_ok=True)


def partial_path(path: Path) -> Path:
    """Where :func:`write_whole` writes ``path`` first: ``.NAME.partial`` beside it (hidden,
    so a folder's listing leaves it out)."""
    return path.with_name(f".{path.name}.partial")


def write_whole(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all: to :func:`partial_path` first, then
    renamed over it, so a full disk, a file-size limit or a kill leaves the file before as it
    was. On an ``OSError`` the partial file is removed and a :class:`StoreError` names
    ``path`` and the fix (:func:`os_fix`)."""
    partial = partial_path(path)
    try:
        partial.write_text(text)
        os.replace(partial, path)
    except OSError as exc:
        drop_partial(path, partial)  # (a folder there: named)
        raise StoreError(f"{path}: could not write it ({exc.strerror or exc})"
                         + (f"; {fix}" if (fix := os_fix(exc)) else "")) from None
    except BaseException:
        _drop(partial)
        raise


def holds_text(path: Path, text: str) -> bool:
    """Whether ``path`` is a file holding, byte for byte, what :func:`write_whole` would write
    of ``text`` (the locale's encoding and line ends, as ``Path.write_text`` writes them);
    read, never written."""
    import locale

    try:
        wanted = text.replace("\n", os.linesep).encode(locale.getpreferredencoding(False))
        return path.is_file() and path.stat().st_size == len(wanted) \
            and path.read_bytes() == wanted
    except (OSError, UnicodeError):
        return False


def drop_partial(path: Path, *partials: Path) -> None:
    """Each of ``partials`` (where ``path`` is written first) removed where it is a file, after
    an ``OSError``; a :class:`StoreError` naming the first that is a folder (the scientist's,
    left as it is: its name taken, the write could not be) and the fix."""
    for partial in partials:
        _drop(partial)
    if (folder := next((p for p in partials if p.is_dir()), None)) is not None:
        raise StoreError(f"{path}: could not write it: the folder {folder} is where its "
                         "temporary file goes; remove it, then run the same command again") from None


def _drop(partial: Path) -> None:
    """A partial file removed, where there is one (a folder in its place, the scientist's, is
    left, and named by the error)."""
    with contextlib.suppress(OSError):
        partial.unlink(missing_ok=True)


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
        there = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if there is not None and not there.is_dir():  # a file where a folder of the path goes
            raise StoreError(f"{option} {text}: {there} is a file, not a folder; give another path")
        raise StoreError(f"{option} {text}: the folder {folder} does not exist; create it or "
                         "give another path")
    if not os.access(folder, os.W_OK):
        raise StoreError(f"{option} {text}: the folder {folder} is not writable; give another "
                         "path")
    return path


def read_only(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Those of ``paths`` there whose own mode bits give their owner no write permission
    (``chmod a-w`` or ``u-w``), a folder's files and folders at any depth included: files a
    user made read-only to keep them. Told by the mode, not by :func:`os.access`, for which
    every file is writable to root. A link is never read-only: replacing it leaves the file it
    points to as it is."""
    found = []
    for path in dict.fromkeys(map(Path, paths)):  # each once
        below = [] if path.is_symlink() or not path.is_dir() else sorted(path.rglob("*"))
        for each in (path, *below):
            with contextlib.suppress(OSError):  # gone, or not there: nothing to keep
                mode = os.lstat(each).st_mode
                if not stat.S_ISLNK(mode) and not mode & stat.S_IWUSR:
                    found.append(each)
    return found


def refuse_read_only(paths: Iterable[str | os.PathLike], other: str,
                     removed: Iterable[str | os.PathLike] = ()) -> None:
    """A :class:`StoreError` where any of ``paths``, which the call would replace, or of
    ``removed``, which it would remove (and write nothing in their place), is read-only
    (:func:`read_only`), before anything is written: naming them (the first three of each, and
    how many in all), what the call would do to each, and the fix, making them writable or
    ``other`` (another place)."""
    gone = read_only(removed)
    found = [p for p in read_only(paths) if p not in gone]
    if len(found) + len(gone) == 1:
        (path,), verb = (found or gone), "replace" if found else "remove"
        raise StoreError(f"{path}: read-only, and this call would {verb} it; make it writable "
                         f"(chmod u+w {path}) to {verb} it, or {other}")
    if found and gone:
        raise StoreError(f"{len(found) + len(gone)} read-only files: this call would replace "
                         f"{len(found)} ({_some(found)}) and remove {len(gone)} "
                         f"({_some(gone)}); make them writable (chmod u+w FILE) to replace and "
                         f"remove them, or {other}")
    if found or gone:
        verb = "replace" if found else "remove"
        raise StoreError(f"{len(found or gone)} read-only files ({_some(found or gone)}): this "
                         f"call would {verb} them; make them writable (chmod u+w FILE) to "
                         f"{verb} them, or {other}")


def _some(paths: list[Path]) -> str:
    """The first three of ``paths``, and how many more."""
    return ", ".join(map(str, paths[:3])) + (f" and {len(paths) - 3} more" * (len(paths) > 3))


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


def plain_path(path: str | os.PathLike) -> Path:
    """``path`` absolute, without ``.`` or ``..`` parts (``P1/../den1`` is ``den1`` of the
    working directory's parent), links kept; resolved where a link before a ``..`` makes the
    plain name another place."""
    plain = Path(os.path.abspath(path))
    if ".." in Path(path).parts and plain.resolve() != Path(path).resolve():
        return Path(path).resolve()
    return plain


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as a message shows it: relative to the working directory when inside it
    (``External/job010``), else absolute (:func:`plain_path`), never with ``..`` in it."""
    plain, here = plain_path(path), Path.cwd()
    return str(plain.relative_to(here)) if plain.is_relative_to(here) else str(plain)


def same_file(a: Path, b: Path) -> bool:
    """Whether two names are one file: the same path once links are followed (a link whose
    target is gone by where it points), or one file under two names (hard links, bind
    mounts); False where neither can be told."""
    a, b = Path(a), Path(b)
    try:
        return a.resolve() == b.resolve() or os.path.samefile(a, b)
    except (OSError, RuntimeError):
        return False


def same_paths(a, b) -> bool:
    """Whether two paths, or two lists of paths, name the same files (``..`` and links
    resolved)."""
    def real(paths):
        if isinstance(paths, str):
            return os.path.realpath(paths)
        return [os.path.realpath(p) for p in paths] if isinstance(paths, list) else paths

    return real(a) == real(b)


def file_changes(before, now: list) -> str:
    """What changed from the files ``before`` to ``now``: those added and left out (by name,
    the first three), or their order."""
    old = {os.path.realpath(p) for p in before} if isinstance(before, list) else set()
    new = {os.path.realpath(p) for p in now}

    def some(paths):
        names = [Path(p).name for p in sorted(paths)]
        return ", ".join(names[:3]) + (", …" if len(names) > 3 else "")

    said = [f"{len(new - old)} added ({some(new - old)})"] * bool(new - old)
    said += [f"{len(old - new)} left out ({some(old - new)})"] * bool(old - new)
    return ", ".join(said) or "their order"


def name_depth(paths) -> int:
    """How many of their last parts tell ``paths`` apart: 1 where their file names differ, more
    where two folders hold the same name (``job002/Movies/a.mrc`` and ``job005/Movies/a.mrc``:
    3), so that progress notes name each micrograph as itself."""
    parts = [Path(p).parts for p in paths]
    for depth in range(1, max((len(p) for p in parts), default=1) + 1):
        if len({p[-depth:] for p in parts}) == len(set(parts)):
            return depth
    return max((len(p) for p in parts), default=1)


def short_name(path: str | os.PathLike, depth: int = 1) -> str:
    """The last ``depth`` parts of ``path`` (:func:`name_depth`), as a note names it."""
    return "/".join(Path(path).parts[-depth:])


def drop_empty(folder: Path | None) -> None:
    """Remove ``folder`` where it is there and holds nothing (a folder a failed call made); a
    folder gone already, or one that cannot be read, is let be, so the call's own error is
    the one said."""
    with contextlib.suppress(OSError):
        if folder is not None and not any(folder.iterdir()):
            folder.rmdir()
