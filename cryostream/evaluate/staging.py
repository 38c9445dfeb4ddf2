"""Where an evaluation report is written: a staging folder inside the report folder, its files
marked as evaluate's and moved in once all are written (``report.md`` last), nothing left of a
failed one, and an earlier report's files that the new one does not have removed. A file of a
report's name that ``evaluate`` did not write is never replaced nor removed
(:func:`check_report_folder`). A report given up from another thread (:func:`give_up_reports`:
the command line's Ctrl-C or SIGTERM, while a network pass holds the thread that writes it) is
removed at once, and that thread writes nothing more."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import threading
import weakref
import zlib
from pathlib import Path

from cryostream.errors import ConfigError, CryostreamError, StoreError

__all__ = ["staged_report", "check_report_folder", "made_by_evaluate", "writing", "REPORT_FILES",
           "REPORT_KIND", "ReportGivenUp", "give_up_reports", "check_given_up"]

#: The files a report is made of (with ``residual_N.png``): an earlier report's that a new
#: one in the same folder does not write are removed, so that none is taken for the new one's.
REPORT_FILES = ("report.md", "report.json", "training.png", "crops.png", "spectra.png",
                "frc.png")

#: ``report.json``'s ``kind``: what says ``evaluate`` wrote it.
REPORT_KIND = "EvaluationReport"

_MARK = "cryostream evaluate"  # report.md's last line and the figures' PNG Software text say it
_PNG = b"\x89PNG\r\n\x1a\n"
_ELSEWHERE = "write the report elsewhere: -o DIR (Python: output=DIR)"

#: The reports being written: each staging folder, with the folders its call created and the
#: thread writing it. Changed, and a report's files written or moved in, under :data:`_GUARD`.
_OPEN: dict[Path, tuple[list[Path], threading.Thread]] = {}
_GUARD = threading.RLock()
#: The threads whose reports were given up (:func:`give_up_reports`).
_GIVEN_UP: weakref.WeakSet = weakref.WeakSet()


class ReportGivenUp(KeyboardInterrupt):
    """Raised in a thread whose report was given up (:func:`give_up_reports`) where it would
    go on: it ends that thread's work, which nothing waits for any more."""


def check_given_up() -> None:
    """Raise :class:`ReportGivenUp` in a thread whose report was given up; call it between
    long pieces of work (a network pass) so that such a thread ends soon."""
    if threading.current_thread() in _GIVEN_UP:
        raise ReportGivenUp


def give_up_reports(thread: threading.Thread) -> None:
    """Give up the report ``thread`` writes, from another thread (the one that waited for it,
    stopped by Ctrl-C or SIGTERM while ``thread`` is held in a network pass that no signal
    stops): its staging folder is removed at once, with the folders its call created while they
    are empty, and ``thread`` writes nothing more (a file under way is finished first: at most
    a figure; a report being moved in is moved in whole). ``thread`` raises
    :class:`ReportGivenUp` where it goes on (:func:`check_given_up`, :func:`writing`)."""
    with _GUARD:
        _GIVEN_UP.add(thread)
        for staging, (created, writer) in list(_OPEN.items()):
            if writer is thread:
                del _OPEN[staging]
                _remove(staging, created)


def _remove(staging: Path | None, created: list[Path]) -> None:
    """Remove ``staging`` and, while they are empty, the folders of ``created`` (deepest
    first): another command may have written beside them meanwhile, which stays."""
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)
    for folder in created:
        try:
            folder.rmdir()  # only while empty
        except OSError:
            break


def check_report_folder(out: Path) -> None:
    """Refuse, before any work, a report folder the report cannot go into: a file, one under a
    file, or one holding a file of a report's name (``report.md``, ``report.json``, a figure)
    that ``evaluate`` did not write (:func:`made_by_evaluate`): one :class:`ConfigError` naming
    it and the fix. An earlier report's files are replaced, as are none of the others."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file; give a folder for the report (-o)")
    there = next((p for p in out.absolute().parents if p.exists()), None)
    if there is not None and not there.is_dir():
        raise ConfigError(f"{out}: {there} is a file, not a folder; {_ELSEWHERE}")
    if out.is_dir():
        legacy = _legacy(out)
        for path in sorted(out.iterdir()):
            _refuse_foreign(path, legacy)


def _refuse_foreign(path: Path, legacy: bool) -> None:
    """A :class:`ConfigError` if ``path`` has a report's name and ``evaluate`` did not write it."""
    if _report_file(path.name) and (path.exists() or path.is_symlink()) \
            and not made_by_evaluate(path, legacy):
        raise ConfigError(f"{path} exists and cryostream evaluate did not make it (no mark of "
                          "an evaluation report in it): it is never replaced; move it away, or "
                          + _ELSEWHERE)


def made_by_evaluate(path: Path, legacy: bool = False) -> bool:
    """Whether ``evaluate`` wrote the report file ``path``: ``report.json`` whose ``kind`` is
    :data:`REPORT_KIND`, ``report.md`` ending in its mark, a figure whose PNG text says
    ``cryostream evaluate``. ``legacy``: the folder's ``report.json`` is one that evaluate wrote
    before it marked its files (:func:`_legacy`), so its ``report.md`` (by its title) and
    figures (PNG files) are taken as its too."""
    if not path.is_file():
        return False
    if path.name == "report.json":
        return _record(path).get("kind") == REPORT_KIND or _legacy(path.parent)
    if path.name == "report.md":
        last = (_tail(path).rstrip().splitlines() or [""])[-1]  # nothing written after it
        return (last.startswith(f"<!-- {_MARK} ") or legacy and re.match(
            r"# Evaluation of (the shipped model )?`", _head(path)) is not None)
    texts = _png_texts(path)
    return texts is not None and (any(t.startswith(b"Software\0" + _MARK.encode())
                                       for t in texts) or legacy)


def _record(path: Path) -> dict:
    """``report.json``'s values (as :func:`~cryostream.denoise.outputs.read_record` reads a
    record: nothing where it is unreadable or no dict)."""
    from cryostream.denoise.outputs import read_record

    return read_record(path) or {}


def _legacy(out: Path) -> bool:
    """Whether ``out/report.json`` is one that ``evaluate`` wrote before it marked its files:
    no ``kind``, its run and store and one section's numbers."""
    found = _record(out / "report.json")
    return ("kind" not in found and {"run", "store"} <= set(found)
            and any(k in found for k in ("test_split", "simulated", "residual")))


def _head(path: Path) -> str:
    with open(path, "rb") as f:
        return f.read(256).decode("utf-8", "replace")


def _tail(path: Path) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 1024))
        return f.read().decode("utf-8", "replace")


def _png_texts(path: Path) -> list[bytes] | None:
    """The tEXt chunks before a PNG's image data; None where ``path`` is no PNG."""
    with open(path, "rb") as f:
        if f.read(8) != _PNG:
            return None
        texts = []
        while len(head := f.read(8)) == 8 and head[4:] not in (b"IDAT", b"IEND"):
            body = f.read(int.from_bytes(head[:4], "big"))
            f.seek(4, os.SEEK_CUR)  # its CRC
            if head[4:] == b"tEXt":
                texts.append(body)
        return texts


def _mark(path: Path) -> None:
    """Mark a report file as evaluate's (:func:`made_by_evaluate`): ``report.json`` gets
    ``kind`` and the version first, ``report.md`` a last line (an HTML comment: not shown), a PNG
    a Software text after its header. Other files are left as they are."""
    from cryostream._version import __version__

    mark = f"{_MARK} {__version__}"
    if path.name == "report.json":
        try:
            found = json.loads(path.read_text())
        except ValueError:
            return
        if isinstance(found, dict):
            path.write_text(json.dumps({"kind": REPORT_KIND, "cryostream_version": __version__,
                                        **found}, indent=2))
    elif path.name == "report.md":
        newline = "" if path.read_bytes().endswith(b"\n") else "\n"
        with open(path, "a") as f:
            f.write(f"{newline}<!-- {mark}: its files here are replaced by the next evaluation "
                    "written here -->\n")
    elif path.suffix == ".png" and (data := path.read_bytes()).startswith(_PNG):
        end = 8 + 12 + int.from_bytes(data[8:12], "big")  # the signature, then IHDR
        text = b"tEXt" + b"Software\0" + mark.encode()
        chunk = (len(text) - 4).to_bytes(4, "big") + text + zlib.crc32(text).to_bytes(4, "big")
        path.write_bytes(data[:end] + chunk + data[end:])


def _write_error(path: Path, exc: OSError) -> StoreError:
    """A report file that could not be written: its path, why, and the fix."""
    from cryostream.io.paths import os_fix

    fix = os_fix(exc)
    return StoreError(f"{path}: could not write it ({exc.strerror or exc}); "
                      + (f"{fix}; or {_ELSEWHERE}" if fix else _ELSEWHERE)
                      + "; nothing of this report was kept")


@contextlib.contextmanager
def writing(path: Path):
    """While the file ``path`` of a staging folder (:func:`staged_report`) is written, an
    ``OSError`` (a full disk) becomes a :class:`StoreError` naming the report's file it was
    to be (in the report folder) and the fix. Written under :data:`_GUARD`, and not at all
    where the report was given up (:func:`give_up_reports`): :class:`ReportGivenUp`."""
    with _GUARD:
        check_given_up()
        try:
            yield path
        except CryostreamError:
            raise
        except OSError as exc:
            raise _write_error(path.parent.parent / path.name, exc) from None


@contextlib.contextmanager
def staged_report(out: Path):
    """A folder inside ``out`` to write the report in, its files marked as evaluate's
    (:func:`made_by_evaluate`) and moved into ``out`` once all are written (``report.md`` last:
    it is what says a report is there). On any failure (an error part-way, a full disk,
    Ctrl-C) nothing this call made is left: the staging folder goes, and ``out`` and the
    folders above it that this call created go while they are empty (another command may have
    written beside them meanwhile: that stays); a folder the user had, and an earlier report in
    it, stay as they were. Once written, an earlier report's files that this one does not have
    (a figure of a section not asked for this time, :data:`REPORT_FILES`) are removed; other
    files in ``out`` stay, and one of a report's name that evaluate did not write (put there
    while the report was made) is neither replaced nor removed: a :class:`ConfigError`."""
    check_given_up()  # (nothing made for a report given up before it began)
    out = out.absolute()
    created = [p for p in [out, *out.parents] if not p.exists()]  # deepest first
    staging = None
    try:
        with _GUARD:
            check_given_up()
            try:
                out.mkdir(parents=True, exist_ok=True)
                staging = Path(tempfile.mkdtemp(prefix=".report-", suffix=".partial", dir=out))
            except OSError as exc:
                raise _write_error(out, exc) from None
            _OPEN[staging] = (created, threading.current_thread())
        yield staging
        with _GUARD:  # moved in whole, or not at all where given up meanwhile
            check_given_up()
            _move_in(staging, out)
            _OPEN.pop(staging, None)  # (written: nothing to give up)
    except BaseException:
        with _GUARD:
            if _OPEN.pop(staging, None) is not None or staging is None:  # not given up
                _remove(staging, created)
        raise
    finally:
        with _GUARD:
            _OPEN.pop(staging, None)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _move_in(staging: Path, out: Path) -> None:
    """The report's files in ``staging`` marked and moved into ``out`` (:func:`staged_report`),
    an earlier report's that this one has not removed."""
    legacy = _legacy(out)  # before this report's report.json lands
    files = sorted(staging.iterdir(), key=lambda p: (p.name == "report.md",
                                                     p.name == "report.json", p.name))
    for path in files:
        with writing(path):
            _mark(path)
    for path in files:  # each checked again, all before any is moved in
        _refuse_foreign(out / path.name, legacy)
    for path in files:
        with writing(path):
            os.replace(path, out / path.name)
    made = {p.name for p in files}
    for stale in out.iterdir():  # an earlier report's files this one has not
        if stale.name not in made and _report_file(stale.name) \
                and made_by_evaluate(stale, legacy):
            stale.unlink(missing_ok=True)


def _report_file(name: str) -> bool:
    return name in REPORT_FILES or re.fullmatch(r"residual_\d+\.png", name) is not None
