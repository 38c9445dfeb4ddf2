"""Where an evaluation report is written: a staging folder inside the report folder, its files
moved in once all are written (``report.md`` last), nothing left of a failed one, and an earlier
report's files that the new one does not have removed."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["staged_report", "REPORT_FILES"]


@contextlib.contextmanager
def staged_report(out: Path):
    """A folder inside ``out`` to write the report in, its files moved into ``out`` once all
    are written (``report.md`` last: it is what says a report is there). On any failure (an
    error part-way, Ctrl-C) nothing this call made is left: the staging folder goes, and
    ``out`` and the folders above it that this call created go while they are empty (another
    command may have written beside them meanwhile: that stays); a folder the user had, and an
    earlier report in it, stay as they were. Once written, an earlier report's files that this
    one does not have (a figure of a section not asked for this time, :data:`REPORT_FILES`)
    are removed; other files in ``out`` stay."""
    out = out.absolute()
    created = [p for p in [out, *out.parents] if not p.exists()]  # deepest first
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".report-", suffix=".partial", dir=out))
    try:
        yield staging
        made = {p.name for p in staging.iterdir()}
        for path in sorted(staging.iterdir(), key=lambda p: (p.name == "report.md", p.name)):
            os.replace(path, out / path.name)
        for stale in out.iterdir():  # an earlier report's files this one has not
            if stale.name not in made and _report_file(stale.name):
                stale.unlink(missing_ok=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:
            try:
                folder.rmdir()  # only while empty
            except OSError:
                break
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


#: The files a report is made of (with ``residual_N.png``): an earlier report's that a new
#: one in the same folder does not write are removed, so that none is taken for the new one's.
REPORT_FILES = ("report.md", "report.json", "training.png", "crops.png", "spectra.png",
                "frc.png")


def _report_file(name: str) -> bool:
    import re

    return name in REPORT_FILES or re.fullmatch(r"residual_\d+\.png", name) is not None
