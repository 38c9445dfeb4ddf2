"""Where an evaluation report is written: a staging folder inside the report folder, its files
marked as evaluate's and moved in once all are written (``report.md`` last), nothing left of a
failed one, and an earlier report's files that the new one does not have removed. A file of a
report's name that ``evaluate`` did not write is never replaced nor removed
(:func:`check_report_folder`)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import zlib
from pathlib import Path

from cryostream.errors import ConfigError, CryostreamError, StoreError

__all__ = ["staged_report", "check_report_folder", "made_by_evaluate", "writing", "REPORT_FILES",
           "REPORT_KIND"]

#: The files a report is made of (with ``residual_N.png``): an earlier report's that a new
#: one in the same folder does not write are removed, so that none is taken for the new one's.
REPORT_FILES = ("report.md", "report.json", "training.png", "crops.png", "spectra.png",
                "frc.png")

#: ``report.json``'s ``kind``: what says ``evaluate`` wrote it.
REPORT_KIND = "EvaluationReport"

_MARK = "cryostream evaluate"  # report.md's last line and the figures' PNG Software text say it
_PNG = b"\x89PNG\r\n\x1a\n"
_ELSEWHERE = "write the report elsewhere: -o DIR (Python: output=DIR)"


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
    to be (in the report folder) and the fix."""
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
    out = out.absolute()
    created = [p for p in [out, *out.parents] if not p.exists()]  # deepest first
    staging = None
    try:
        try:
            out.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".report-", suffix=".partial", dir=out))
        except OSError as exc:
            raise _write_error(out, exc) from None
        yield staging
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
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        for folder in created:
            try:
                folder.rmdir()  # only while empty
            except OSError:
                break
        raise
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _report_file(name: str) -> bool:
    return name in REPORT_FILES or re.fullmatch(r"residual_\d+\.png", name) is not None
