"""NumPy tables (files in NumPy's ``.npy`` format, such as cryoSPARC's ``.cs``) read without
running code from the file.

NumPy saves a table with object fields (``O``: Python strings, as cryoSPARC's tables can
hold) as a pickle, which ``np.load(allow_pickle=False)`` refuses and ``allow_pickle=True``
would run, calling whatever the file names. :func:`load_table` reads such a file through an
unpickler that builds NumPy arrays, dtypes and scalars and plain values (str, bytes, numbers,
tuples, lists, dicts) only: anything else the pickle asks for is named, not called.
"""

from __future__ import annotations

import _codecs
import pickle
from pathlib import Path

import numpy as np

__all__ = ["ForbiddenObjectError", "load_table"]

_HEADER_LIMIT = 1 << 30  # cryoSPARC's tables have hundreds of fields: over NumPy's 10 kB default
_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")  # NumPy 1's name, NumPy 2's


class ForbiddenObjectError(pickle.UnpicklingError):
    """A pickled table asks for an object other than NumPy's and plain values; ``name`` is
    the one asked for (``module.name``)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class _Ndarray:
    """``numpy.ndarray`` as a pickle names it: the class :func:`_reconstruct` is given, never
    called (``numpy.ndarray(shape, object, buffer)`` would take raw bytes for objects)."""

    def __new__(cls, *args, **kwargs):
        raise ForbiddenObjectError("numpy.ndarray called on its own")


def _reconstruct(subtype, shape, dtype):
    """NumPy's ``_reconstruct`` (an empty array that the pickle then fills), for ``ndarray``
    alone."""
    if subtype is not _Ndarray:
        raise ForbiddenObjectError(f"numpy's _reconstruct of {subtype!r}")
    return np.ndarray.__reduce__(np.zeros(1, dtype=object))[0](np.ndarray, shape, dtype)


def _allowed(module: str, name: str):
    """What a pickled NumPy array may ask for, taken from NumPy itself (never imported by the
    name the file gives): None for anything else."""
    if module in _MULTIARRAY and name == "_reconstruct":
        return _reconstruct
    if module in _MULTIARRAY and name == "scalar":  # a NumPy number held in an object field
        return np.float32(0).__reduce__()[0]
    return {("numpy", "ndarray"): _Ndarray, ("numpy", "dtype"): np.dtype,
            ("_codecs", "encode"): _codecs.encode}.get((module, name))  # bytes, pickle protocol 2


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module, name):
        found = _allowed(module, name)
        if found is None:
            raise ForbiddenObjectError(f"{module}.{name}")
        return found


def load_table(path: Path, mmap: bool = False) -> np.ndarray:
    """The array in the NumPy file at ``path``, object fields included, no code of the file run.

    Parameters
    ----------
    path : Path
        A file in NumPy's ``.npy`` format (any name: cryoSPARC's end in ``.cs``).
    mmap : bool
        Map the file rather than read it, where it can be (no object fields).

    Returns
    -------
    numpy.ndarray
        The array as saved; object fields hold what was pickled (str, bytes, numbers).

    Raises
    ------
    ForbiddenObjectError
        The pickle asks for something other than NumPy arrays, dtypes, scalars and plain
        values: nothing it asked for was called.
    ValueError, OSError, EOFError, pickle.UnpicklingError
        Not NumPy's format, cut short, or a damaged pickle.
    """
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)  # 3.0: 2.0's, UTF-8 names
        shape, _, dtype = read_header(f, max_header_size=_HEADER_LIMIT)
        if dtype.hasobject:
            array = _ArraysOnly(f, encoding="latin1").load()  # latin1: NumPy's, for Python 2's
            if not isinstance(array, np.ndarray) or array.shape != shape:
                raise ValueError(f"its pickle holds {type(array).__name__} {getattr(array, 'shape', '')}"
                                 f", not the array of shape {shape} its header gives")
            return array
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False,
                   max_header_size=_HEADER_LIMIT)
