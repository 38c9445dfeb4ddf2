"""RELION micrographs STAR files written for import (``denoised_micrographs.star``)."""

from __future__ import annotations

import os
from pathlib import Path

import starfile

from cryostream.errors import StoreError
from cryostream.io.paths import os_fix

__all__ = ["write_micrograph_star"]


def write_micrograph_star(path: str | os.PathLike, optics_table, micrographs_table) -> None:
    """Write a RELION 3.1+ micrographs STAR file (``data_optics``, ``data_micrographs``, each
    after RELION's ``# version 30001``) atomically: through a temporary name and a rename,
    nothing partial left on error. The same tables give the same bytes (no clock in the
    file), and a file already holding them is left untouched.

    Parameters
    ----------
    path : path-like
        The ``.star`` file.
    optics_table, micrographs_table : pandas.DataFrame
        The blocks, columns named as RELION names them (``rlnOpticsGroup`` …).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        starfile.write({"optics": optics_table, "micrographs": micrographs_table}, tmp,
                       overwrite=True)
        text = "".join(f"# version 30001\n\n{ln}" if ln in ("data_optics\n", "data_micrographs\n")
                       else ln for ln in tmp.read_text().splitlines(True) if not ln.startswith("# Created"))
        if path.is_file() and path.read_text() == text:
            tmp.unlink()
            return
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:  # a full disk: the STAR file named (the outputs it lists are kept)
        tmp.unlink(missing_ok=True)
        raise StoreError(f"{path}: could not be written ({exc.strerror or exc}); "
                         + os_fix(exc, "run the same command again") + " (finished outputs are "
                         "kept)") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
