"""RELION micrographs STAR files written for import (``denoised_micrographs.star``)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from cryostream.errors import StoreError
from cryostream.io.paths import os_fix

__all__ = ["RELION_31_VERSION", "write_micrograph_star", "micrograph_star_text", "star_version"]

#: The version line RELION 3.1 and 4 write before each block (``# version 30001``); RELION 5
#: writes 50001. The tables written are of the form every one of them reads.
RELION_31_VERSION = 30001

_VERSION = re.compile(r"#\s*version\s+(\d+)\s*")


def star_version(path: str | os.PathLike) -> int | None:
    """The version of RELION that wrote the STAR file ``path``, as its first ``# version N``
    line says (``50001`` for RELION 5, ``30001`` for 3.1 and 4); None where it has none (RELION
    3.0, another program) or cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if found := _VERSION.fullmatch(line.strip()):
                    return int(found.group(1))
    except OSError:
        return None
    return None


def _relion_number(value: float) -> str:
    """``value`` as RELION writes a number in a STAR file: six decimals, or six digits after
    the point in scientific notation where it is below 0.001 and not zero (``4.567800e-05``,
    whose digits six decimals would round away). Numbers above 100 000, which RELION also
    writes so, keep six decimals: more digits, read back the same."""
    return f"{value:.6e}" if 0 < abs(value) < 0.001 else f"{value:.6f}"


def write_micrograph_star(path: str | os.PathLike, optics_table, micrographs_table,
                          version: int = RELION_31_VERSION) -> None:
    """Write a RELION 3.1+ micrographs STAR file (``data_optics``, ``data_micrographs``, each
    after RELION's ``# version N`` line, ``version``: that of the input's RELION, as
    :func:`star_version` reads it; numbers as :func:`_relion_number` writes them)
    atomically: through a temporary file of its own beside it (two writers never share one)
    and a rename, nothing partial left on error. The same
    tables give the same bytes (no clock in the file), and a file already holding them is left
    untouched.

    Parameters
    ----------
    path : path-like
        The ``.star`` file.
    optics_table, micrographs_table : pandas.DataFrame
        The blocks, columns named as RELION names them (``rlnOpticsGroup`` …).
    version : int
        The version line's number: 30001 (RELION 3.1 and 4, the default) or RELION 5's 50001.
    """
    path = Path(path)
    tmp = None
    try:
        text = micrograph_star_text(optics_table, micrographs_table, version)
        if path.is_file() and path.read_text() == text:
            return
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        tmp.write_text(text)
        # mkstemp's 0600 to the permissions of the file it replaces (or a new file's), after the
        # writing: a read-only earlier file (0444) must not make its replacement unwritable
        os.chmod(tmp, _mode(path))
        os.replace(tmp, path)
    except OSError as exc:  # a full disk: the STAR file named (the outputs it lists are kept)
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise StoreError(f"{path}: could not be written ({exc.strerror or exc}); "
                         + os_fix(exc, "run the same command again") + " (finished outputs are "
                         "kept)") from None
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise


def micrograph_star_text(optics_table, micrographs_table,
                         version: int = RELION_31_VERSION) -> str:
    """The text :func:`write_micrograph_star` writes for these tables: starfile's, without the
    clock of its first line, a ``# version`` line before each block."""
    import starfile

    text = starfile.to_string({"optics": optics_table, "micrographs": micrographs_table},
                              float_format=_relion_number)
    return "".join(f"# version {int(version)}\n\n{ln}"
                   if ln in ("data_optics\n", "data_micrographs\n") else ln
                   for ln in text.splitlines(True) if not ln.startswith("# Created"))


def _mode(path: Path) -> int:
    """The permissions of the file ``path`` replaces, or of a new file under the umask."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        pass
    try:  # the umask, read without setting it (os.umask would, for every thread)
        status = Path("/proc/self/status").read_text()
        umask = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("Umask:")), 8)
    except (OSError, StopIteration, ValueError, IndexError):
        umask = 0o022
    return 0o666 & ~umask
