"""NumPy tables (files in NumPy's ``.npy`` format, such as cryoSPARC's ``.cs``) read without
running code from the file.

NumPy saves a table with object fields (``O``: Python strings, as cryoSPARC's tables can
hold) as a pickle, which ``np.load(allow_pickle=False)`` refuses and ``allow_pickle=True``
would run, calling whatever the file names. :func:`load_table` reads such a file through an
unpickler that builds plain values only (str, bytes, numbers, tuples, lists, dicts): what the
pickle says of NumPy's arrays, dtypes and scalars is kept as a description, and the arrays
are made from it here, each size checked against the data the file holds, never by NumPy's
own ``__setstate__``, which takes a pickle's shape, dtype sizes, offsets and flags unchecked
(a list shorter than its shape, or a dtype's field past its item, crashes Python). Anything
else the pickle asks for is named, not called.
"""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import numpy as np

__all__ = ["ForbiddenObjectError", "load_table"]

_HEADER_LIMIT = 1 << 30  # cryoSPARC's tables have hundreds of fields: over NumPy's 10 kB default
_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")  # NumPy 1's name, NumPy 2's
_KINDS = "biufcSUO"  # what a NumPy array or scalar held in an object field may be
_GROWTH = 16  # bytes an array may take per byte of its pickle: 8-byte objects from 2-byte refs


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


class _Dtype:
    """``numpy.dtype`` as a pickle makes it: its type string and byte order, nothing else of
    its state (sizes, offsets, fields, flags) kept."""

    def __init__(self, spec=None, *args):
        self.spec, self.order = spec, "="

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">"):
            self.order = state[1]

    def build(self) -> np.dtype:
        """The dtype of an array or scalar held in an object field: a number, text or object."""
        try:
            dtype = np.dtype(self.spec) if isinstance(self.spec, str) else None
        except (TypeError, ValueError):
            dtype = None
        if dtype is None or dtype.kind not in _KINDS or dtype.fields or dtype.subdtype:
            raise ForbiddenObjectError(f"numpy.dtype({repr(self.spec)[:60]})")
        return dtype.newbyteorder(self.order) if self.order != "=" else dtype


class _Array:
    """An ``ndarray`` as its pickle gives it (NumPy's ``_reconstruct``, then its state); made
    by :meth:`build`."""

    state = None

    def __setstate__(self, state):
        self.state = state

    def build(self, budget: int, dtype: np.dtype | None = None) -> np.ndarray:
        """The array, of the pickle's shape and of ``dtype`` (the file's header's; default: the
        pickle's, for an array held in an object field), its values checked to fill it, and
        at most ``budget`` bytes."""
        state = self.state
        if not isinstance(state, tuple) or len(state) != 5:
            raise ValueError("its pickle holds an array without NumPy's state")
        _, shape, pickled, fortran, raw = state
        if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
            raise ValueError(f"its pickle gives an array the shape {shape!r}")
        if dtype is None:
            if not isinstance(pickled, _Dtype):
                raise ForbiddenObjectError(f"an array of dtype {type(pickled).__name__}")
            dtype = pickled.build()
        count = math.prod(shape)
        if count * dtype.itemsize > budget:
            raise ValueError(f"its pickle gives an array of shape {shape} and {dtype.itemsize}-byte "
                             "items, more than the file holds")
        if not dtype.hasobject:
            raw = raw.encode("latin1") if isinstance(raw, str) else raw  # Python 2's pickles
            raw = bytes(raw) if isinstance(raw, bytearray) else raw  # protocol 5's
            if not isinstance(raw, bytes) or len(raw) != count * dtype.itemsize:
                raise ValueError(f"its pickle holds {len(raw) if isinstance(raw, bytes) else 'no'} "
                                 f"bytes for an array of shape {shape} and dtype {dtype}")
            return np.frombuffer(raw, dtype).reshape(shape, order="F" if fortran else "C").copy()
        if not isinstance(raw, list) or len(raw) != count:
            raise ValueError(f"its pickle holds {len(raw) if isinstance(raw, list) else 'no'} "
                             f"values for an array of shape {shape}")
        array = np.empty(count, dtype)
        for i, value in enumerate(raw):  # NumPy lists an object array's values in C order
            array[i] = _built(value, budget)
        return array.reshape(shape)


def _built(value, budget: int):
    """``value`` with the arrays and dtypes in it made (:class:`_Array`, :class:`_Dtype`)."""
    if isinstance(value, _Array):
        return value.build(budget)
    if isinstance(value, _Dtype):
        return value.build()
    if isinstance(value, (tuple, list)):
        return type(value)(_built(v, budget) for v in value)
    if isinstance(value, dict):
        return {_built(k, budget): _built(v, budget) for k, v in value.items()}
    return value


def _reconstruct(subtype, shape, dtype) -> _Array:
    """NumPy's ``_reconstruct`` (an empty array that the pickle then fills), for ``ndarray``
    alone: its shape and dtype are NumPy's placeholders, the state gives the array's."""
    if subtype is not _Ndarray:
        raise ForbiddenObjectError(f"numpy's _reconstruct of {subtype!r}")
    return _Array()


def _frombuffer(raw, dtype, shape, order) -> _Array:
    """NumPy's ``_frombuffer``: an array of numbers held in an object field, pickle protocol 5."""
    made = _Array()
    made.state = (1, shape, dtype, order == "F", raw)
    return made


def _scalar(dtype, raw=None):
    """NumPy's ``scalar``: a NumPy number (or text) held in an object field, from its bytes."""
    if not isinstance(dtype, _Dtype):
        raise ForbiddenObjectError(f"numpy's scalar of {type(dtype).__name__}")
    made = dtype.build()
    if made.hasobject:
        return raw
    raw = raw.encode("latin1") if isinstance(raw, str) else raw
    if not isinstance(raw, bytes) or len(raw) != made.itemsize:
        raise ValueError(f"its pickle holds a {made} scalar of {repr(raw)[:60]}")
    return np.frombuffer(raw, made)[0]


def _encode(text, encoding="utf-8"):
    """``_codecs.encode`` as pickle's protocol 2 uses it for bytes: latin-1 alone."""
    if not isinstance(text, str) or encoding != "latin1":
        raise ForbiddenObjectError(f"_codecs.encode of {type(text).__name__} as {encoding!r}")
    return text.encode("latin1")


def _empty_bytes(*args):
    """``bytes()`` as pickle's protocol 2 writes ``b""``: no argument (``bytes(n)`` makes n)."""
    if args:
        raise ForbiddenObjectError(f"bytes of {type(args[0]).__name__}")
    return b""


def _allowed(module: str, name: str):
    """What a pickled NumPy array may ask for: None for anything else."""
    if module in _MULTIARRAY and name == "_reconstruct":
        return _reconstruct
    if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
        return _frombuffer
    if module in _MULTIARRAY and name == "scalar":  # a NumPy number held in an object field
        return _scalar
    return {("numpy", "ndarray"): _Ndarray, ("numpy", "dtype"): _Dtype,
            ("_codecs", "encode"): _encode, ("__builtin__", "bytes"): _empty_bytes,
            ("builtins", "bytes"): _empty_bytes}.get((module, name))  # bytes, pickle protocol 2


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
        The array as saved, of the dtype its header gives; object fields hold what was
        pickled (str, bytes, numbers, NumPy numbers and arrays, tuples, lists, dicts).

    Raises
    ------
    ForbiddenObjectError
        The pickle asks for something other than NumPy arrays, dtypes, scalars and plain
        values: nothing it asked for was called.
    ValueError, OSError, EOFError, pickle.UnpicklingError
        Not NumPy's format, cut short, or a damaged pickle (one whose arrays' shapes and
        values disagree, or that would take more memory than the data the file holds).
    """
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)  # 3.0: 2.0's, UTF-8 names
        shape, _, dtype = read_header(f, max_header_size=_HEADER_LIMIT)
        if dtype.hasobject:
            budget = _GROWTH * (os.fstat(f.fileno()).st_size - f.tell()) + (1 << 20)
            made = _ArraysOnly(f, encoding="latin1").load()  # latin1: NumPy's, for Python 2's
            if not isinstance(made, _Array):
                raise ValueError(f"its pickle holds {type(made).__name__}, not the array its "
                                 "header gives")
            array = made.build(budget, dtype)
            if array.shape != shape:
                raise ValueError(f"its pickle holds an array of shape {array.shape}, not the "
                                 f"shape {shape} its header gives")
            return array
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False,
                   max_header_size=_HEADER_LIMIT)
