"""RELION STAR files listing micrographs."""

from __future__ import annotations

from pathlib import Path

import starfile

from cryostream.errors import InvalidMicrographError

__all__ = ["read_micrograph_star"]

_COLUMN = "rlnMicrographName"


def read_micrograph_star(path: str | Path, column: str = _COLUMN) -> list[Path]:
    """The micrograph paths a RELION STAR file lists in ``column`` (default
    ``rlnMicrographName``; ``rlnMicrographNameEven`` / ``rlnMicrographNameOdd`` for the
    even- and odd-frame sums RELION's motion correction writes).

    Relative names are resolved as RELION does, against the project folder: the STAR file's
    folder and up to three folders above it are tried, then the working directory; a name
    found in none of them is resolved against the STAR file's folder (so the error that
    follows names a concrete path).
    """
    path = Path(path)
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises many kinds on malformed text
        raise InvalidMicrographError(
            path, f"not a readable STAR file ({exc})", "check it was written by RELION"
        ) from None
    for block in blocks.values():
        if hasattr(block, "columns") and column in block.columns:
            names = [str(n) for n in block[column]]
            break
    else:
        raise InvalidMicrographError(
            path,
            f"no block has a {column} column",
            "pass a micrographs STAR file (e.g. from MotionCorr or CtfFind)"
            + ("" if column == _COLUMN else " that motion correction wrote with its "
               "even- and odd-frame sums"),
        )
    bases = [path.parent, *list(path.parent.resolve().parents)[:3], Path.cwd()]
    out = []
    for name in names:
        candidate = Path(name)
        if not candidate.is_absolute():
            found = next((b / candidate for b in bases if (b / candidate).exists()), None)
            candidate = found if found is not None else path.parent / candidate
        out.append(candidate)
    return out
