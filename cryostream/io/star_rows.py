"""A STAR file's row whose micrograph is not found: the folder its name should be in (the
project folder, where the other rows are), the error that names the row, where it was looked
for and the fix, and the warning that skips it (``permissive``)."""

from __future__ import annotations

import warnings
from pathlib import Path

from cryostream.errors import InvalidMicrographError
from cryostream.io.paths import broken_link

__all__ = ["missing_rows", "first_folder", "row_not_found", "skip_row"]


def missing_rows(names, bases: list[Path]) -> int:
    """How many relative ``names`` are in none of ``bases``."""
    return sum(not Path(str(n)).is_absolute() and not any((b / str(n)).exists() for b in bases)
               for n in names)


def first_folder(names, bases: list[Path]) -> Path | None:
    """The first of ``bases`` that holds the first of the relative ``names`` found in any (the
    project folder the rows found are read from); None where none is."""
    for name in names:
        if not Path(str(name)).is_absolute():
            found = next((b for b in bases if (b / str(name)).exists()), None)
            if found is not None:
                return found
    return None


def row_not_found(path: Path, where: str, column: str, text: str, bases: list[Path],
                  settled: str = "") -> InvalidMicrographError:
    """The error of a row whose relative name is in none of ``bases`` (the first: the working
    directory, RELION's project folder). ``settled``, where other rows were found in
    ``bases[0]`` (so the project folder is right and the row is what is wrong), says which
    (``"the rows before it were found"``, ``"other rows are found"``)."""
    broken = next((b / text for b in bases if broken_link(b / text)), None)
    if broken is not None:  # a RELION Import's links, after the data went to the archive
        return InvalidMicrographError(
            path, f"{where}: {broken} is a broken link ({broken_link(broken)} is not there)",
            "link the micrographs again, or give their new place")
    tried = ", ".join(f"{b}{' (the working directory)' if b == Path.cwd() else ''}"
                      for b in bases)
    if settled:
        return InvalidMicrographError(
            path, f"{where}: no such file in the RELION project folder {bases[0]}, where {settled}",
            f"correct the row's {column}, or pass --permissive to skip it")
    return InvalidMicrographError(
        path, f"{where}: no such file in the RELION project folder or near the STAR file "
        f"(looked in {tried})", f"run cryostream from the RELION project folder (the one {text} "
        f"is relative to), or correct the row's {column}")


def skip_row(problem: InvalidMicrographError) -> None:
    """Warn that the row of ``problem`` is skipped (``permissive``)."""
    from cryostream.io.stack import MicrographSkippedWarning  # stack imports star, which this

    # its fix without the advice to pass --permissive, which this call was given
    said = problem if "--permissive" not in problem.fix else f"{problem.path}: {problem.problem}"
    warnings.warn(f"skipping {said}", MicrographSkippedWarning, stacklevel=3)
