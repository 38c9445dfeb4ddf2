"""What a call takes as its micrographs: one path, or a list of them (a list, a tuple, a 1-D
NumPy array or pandas Series of file names, as a STAR table's column gives them; names as
bytes, as HDF5 files and ``np.char.encode`` give them, decoded as :func:`os.fsdecode` does);
anything else refused before any work, with words that fit what was given."""

from __future__ import annotations

import os
import reprlib
from collections.abc import Iterable

from cryostream.errors import ConfigError

__all__ = ["WRITE_FILES", "holds_names", "listed_inputs"]

#: What to do with an image in memory, for a call that reads micrograph files.
WRITE_FILES = ("to give an image in memory, write it as an MRC file first: "
               "cryostream.io.mrc.write_micrograph(path, image, pixel_size_angstrom)")


def _is_array(value) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def holds_names(array) -> bool:
    """Whether ``array`` holds text, bytes or objects (file names), not numbers (pixels)."""
    return getattr(array.dtype, "kind", None) in ("U", "S", "O")


def _not_one_column(array, shape: tuple) -> str:
    """What is wrong with ``array`` of text, bytes or objects of ``shape`` (not 1-D) as
    inputs: a table of file names, or objects that are no names (an image of dtype object,
    e.g. pixels read through pandas), in words that fit it."""
    import numpy as np

    values = np.asarray(array)
    first = values.flat[0] if values.size else None
    if values.dtype.kind != "O" or first is None or isinstance(first, str | bytes | os.PathLike):
        return (f"inputs: an array of file names of shape {shape}: give one column of them "
                "(1-D), e.g. a STAR table's df['rlnMicrographName']")
    return (f"inputs: an array of shape {shape} of Python objects (dtype object; the first "
            f"is {reprlib.repr(first)}), neither file names nor pixels; give file names as one "
            "column (1-D), e.g. a STAR table's df['rlnMicrographName'], or an image as numbers "
            "(np.asarray(image, dtype=np.float32)), which cryostream.denoise takes and the "
            "calls that read files take written as an MRC file "
            "(cryostream.io.mrc.write_micrograph(path, image, pixel_size_angstrom))")


def listed_inputs(inputs) -> list:
    """``inputs`` (one path or an iterable of them: a list, or a 1-D NumPy array or pandas
    Series of file names; a name as bytes decoded by :func:`os.fsdecode`) as a list, or a
    :class:`ConfigError` for anything that is not a path (a number, None), which had failed
    deep inside, and for an array of names that is not one column (2-D or more; one of
    objects that are no names is said to be so). An image in memory (an array of numbers,
    or a list of them) is refused with :data:`WRITE_FILES` (a call that takes one,
    :func:`cryostream.denoise`, takes it before it asks here).

    Examples
    --------
    >>> import numpy as np
    >>> listed_inputs(np.array(["a.mrc", "b.mrc"]))
    ['a.mrc', 'b.mrc']
    >>> listed_inputs(np.array([b"a.mrc", b"b.mrc"]))
    ['a.mrc', 'b.mrc']
    """
    if isinstance(inputs, str | os.PathLike):
        return [inputs]
    if isinstance(inputs, bytes):  # one name as bytes, not a list of its byte values
        return [os.fsdecode(inputs)]
    if _is_array(inputs):
        shape = tuple(inputs.shape)
        if not holds_names(inputs):  # an image in memory
            raise ConfigError(f"inputs: an array of shape {shape} ({inputs.dtype}) is not a path; "
                              f"give micrograph files, globs, folders or a STAR file; {WRITE_FILES}")
        if len(shape) != 1:  # a table of names, or an image of dtype object: not a list
            raise ConfigError(_not_one_column(inputs, shape))
        import numpy as np

        inputs = np.asarray(inputs).tolist()  # NumPy's, pandas' or xarray's: plain str, bytes
    items = [os.fsdecode(i) if isinstance(i, bytes) else i
             for i in (inputs if isinstance(inputs, Iterable) else [inputs])]
    wrong = [i for i in items if not isinstance(i, str | os.PathLike)]
    if wrong and all(_is_array(i) and len(i.shape) >= 2 for i in wrong):
        raise ConfigError(f"inputs: a list holding images in memory (arrays of shape "
                          f"{tuple(wrong[0].shape)}), not paths; give micrograph files, globs, "
                          f"folders or a STAR file; {WRITE_FILES}")
    if wrong:
        raise ConfigError(f"inputs={reprlib.repr(inputs)}: {reprlib.repr(wrong[0])} is not a "
                          "path; give micrograph files, globs, folders or a STAR file (one, or a "
                          "list of them)")
    return items
