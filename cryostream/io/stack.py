"""Lazy stacks of micrographs: an xarray.DataArray (micrograph, y, x) over a Dask array.

The Dask graph holds only headers (paths, offsets, dtypes); every task reads one band of
full rows with one positioned read (:func:`cryostream.io.mrc.read_rows`). Nothing is loaded
or memory-mapped while the stack is built, so building it for thousands of files is cheap
and the graph runs unchanged on threads, processes or a Dask cluster (with a shared
filesystem).
"""

from __future__ import annotations

import collections
import glob
import hashlib
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from cryostream.errors import ConfigError, InvalidMicrographError, one_error
from cryostream.io.cryosparc import LIST_SUFFIXES, is_micrograph_list
from cryostream.io.folders import folder_micrographs, halves_left_out, named_halves_left_out
from cryostream.io.inputs import listed_inputs
from cryostream.io.mrc import MicrographHeader, read_header, read_rows
from cryostream.io.pixel_sizes import pixel_size_number, unset_pixel_size
from cryostream.io.star import read_micrograph_star

__all__ = [
    "DenoisedInputWarning",
    "MicrographSkippedWarning",
    "expand_inputs",
    "glob_matches",
    "listed_inputs",
    "given_inputs",
    "read_headers",
    "warn_if_denoised",
    "micrograph_uid",
    "micrograph_names",
    "stack_from_headers",
    "open_micrographs",
]

MRC_SUFFIXES = (".mrc", ".mrcs", ".rec", ".map")


class DenoisedInputWarning(UserWarning):
    """Some inputs are outputs of ``cryostream denoise`` (their MRC labels say so)."""


class MicrographSkippedWarning(UserWarning):
    """A bad micrograph was skipped because ``permissive=True``."""


def micrograph_uid(name: str) -> int:
    """A stable 63-bit id of a micrograph name (BLAKE2b), the same on every machine."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def glob_matches(items: list) -> list:
    """``items`` with each glob (a name with ``*``, ``?`` or ``[`` that is no file) replaced by
    its matches in name order, as a shell expands it, so that a STAR file or a folder a quoted
    glob matches is read as one given by name; a glob that matches nothing is an
    :class:`InvalidMicrographError`. Even/odd half-sums beside their full sums are left out,
    with a note, whether a glob matched them or they were named with their full sums."""
    out = []
    for item in named_halves_left_out(items):  # named one by one (a glob the shell expanded)
        text = os.fspath(item)
        if any(ch in text for ch in "*?[") and not os.path.lexists(text):
            found = sorted(glob.glob(text, recursive=True), key=Path)  # (** as a shell's
            if not found:                                           # globstar), as Paths sort
                raise InvalidMicrographError(text, "the glob matched no files", "check the pattern")
            out += halves_left_out(found, text)  # as a folder leaves them out
        else:
            out.append(item)
    return out


def expand_inputs(inputs: str | os.PathLike | Iterable[str | os.PathLike], *,
                  permissive: bool = False) -> list[Path]:
    """Turn paths, globs, folders and RELION STAR files into a list of micrograph paths.

    Folders contribute their ``*.mrc`` files (and one-section ``*.mrcs`` files) in name order,
    with one note (logging, INFO) for the other files left out
    (:func:`~cryostream.io.folders.folder_micrographs`); a glob that matches nothing, a folder
    without ``.mrc`` files, an empty list or a symbolic link that cannot be followed (a loop)
    is an :class:`InvalidMicrographError`. Repeated paths are kept once. A glob's matches are
    taken as if given one by one (:func:`glob_matches`): a STAR file or folder it matches is
    read as such. ``permissive``: STAR rows whose file is missing
    are left out with a :class:`MicrographSkippedWarning`.
    """
    items = listed_inputs(inputs)
    if not items:
        raise InvalidMicrographError(
            "<inputs>", "no micrographs were given",
            "pass MRC files, globs, folders, a STAR file or a .cs file"
        )
    paths: list[Path] = []
    for item in glob_matches(items):
        p = Path(os.fspath(item))
        if p.is_dir():
            paths += folder_micrographs(p)
        elif is_micrograph_list(p):
            paths += read_micrograph_star(p, permissive=permissive)
        else:
            paths.append(p)
    seen: set[Path] = set()
    unique = []
    for p in paths:
        try:
            key = p.resolve()
        except (RuntimeError, OSError) as exc:  # a symlink loop (RuntimeError before 3.13)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise InvalidMicrographError(
                p, f"is a symbolic link that cannot be followed ({reason})",
                "remove the link or point it at a micrograph",
            ) from None
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def given_inputs(inputs: Iterable[str | os.PathLike]) -> list[str]:
    """The inputs as given, for a command to show: folders, globs and STAR files as they are;
    more than three files of one folder and suffix (a glob the shell expanded) as one glob,
    ``FOLDER/*.mrc`` or ``FOLDER/START*.mrc`` (the start their names share), only when it
    matches exactly those files; else the files one by one.

    Examples
    --------
    >>> given_inputs(["micrographs/", "a.star"])
    ['micrographs/', 'a.star']
    """
    words: list = []
    groups: dict[tuple[str, str], list[str]] = {}
    for item in map(os.fspath, inputs):
        path = Path(item)
        if not path.is_file() or path.suffix.lower() in LIST_SUFFIXES or glob.escape(item) != item:
            words.append(item)
            continue
        key = (os.path.dirname(item), path.suffix)
        if key not in groups:
            words.append(key)
        groups.setdefault(key, []).append(item)
    shown = []
    for word in words:
        files = groups.get(word, []) if isinstance(word, tuple) else [word]
        if len(files) <= 3:
            shown += files
            continue
        folder, suffix = word
        start = os.path.commonprefix([Path(f).stem for f in files])
        given = {Path(f) for f in files}
        for pattern in (os.path.join(glob.escape(folder), "*" + glob.escape(suffix)),
                        os.path.join(glob.escape(folder), glob.escape(start) + "*"
                                     + glob.escape(suffix))):
            if {Path(p) for p in glob.glob(pattern)} == given:  # exactly these files
                shown.append(pattern)
                break
        else:
            shown += files
    return shown


def read_headers(
    paths: Iterable[Path], *, permissive: bool = False, one_shape: bool = True
) -> tuple[list[MicrographHeader], list[dict[str, str]]]:
    """Read and cross-check the headers of all ``paths``, before any pixel is read.

    All micrographs must share one shape (unless ``one_shape`` is False: each is denoised
    on its own). With ``permissive=False`` bad files raise one
    :class:`InvalidMicrographError` that names each of them
    (:func:`~cryostream.errors.one_error`); with ``permissive=True`` they are skipped with a
    :class:`MicrographSkippedWarning` and listed as ``{"path", "reason"}`` in the second
    return value. The most common shape is the reference (a tie: the first file's), so the
    micrograph of an odd shape is the one named or skipped.
    """
    headers, skipped, bad, shaped = [], [], [], []

    def skip(path: object, reason: str) -> None:
        skipped.append({"path": str(path), "reason": reason})
        warnings.warn(f"skipping {reason}", MicrographSkippedWarning, stacklevel=3)

    paths = list(paths)
    for p in paths:
        try:
            headers.append(read_header(p))
        except InvalidMicrographError as exc:
            if not permissive:
                bad.append(exc)
                continue
            skip(p, f"{exc.path}: {exc.problem}")
    if headers and one_shape:
        # the odd one out is the micrograph of a rarer shape (a tie: the first file's shape)
        shape, count = collections.Counter(h.shape for h in headers).most_common(1)[0]
        example = next(h.path for h in headers if h.shape == shape)
        kept = []
        for h in headers:
            if h.shape == shape:
                kept.append(h)
                continue
            exc = InvalidMicrographError(
                h.path,
                f"shape {h.shape[0]} × {h.shape[1]} differs from the {shape[0]} × {shape[1]} "
                f"of {example if count == 1 else f'{count} other micrographs ({example}, …)'}",
                "remove it from the inputs, or pass --permissive (Python: permissive=True) to skip it",
            )
            if not permissive:
                bad.append(exc)
                shaped.append(exc)
                continue
            skip(h.path, f"{exc.path}: {exc.problem}")
        headers = kept
    if len(bad) == 1 and len(paths) > 1 and "--permissive" not in bad[0].fix:  # one of many
        raise InvalidMicrographError(bad[0].path, bad[0].problem, f"{bad[0].fix}; or pass "
                                     "--permissive (Python: permissive=True) to skip it")
    if bad:
        fix = "give micrographs of one size together (each size on its own)" \
            if len(shaped) == len(bad) else "repair them or remove them from the inputs"
        raise one_error(bad, len(paths), f"{fix}, or pass --permissive (Python: permissive=True) "
                        "to skip them")
    if not headers:
        raise InvalidMicrographError(
            "<inputs>",
            f"no readable micrograph among {len(skipped)} inputs",
            "see the warnings for each file",
        )
    return headers, skipped


def warn_if_denoised(headers: list[MicrographHeader]) -> None:
    """One :class:`DenoisedInputWarning` if any of a command's inputs were written by
    ``cryostream denoise`` (their MRC labels say so): denoising, fitting or preparing them
    would treat them as raw micrographs."""
    denoised = [h for h in headers if h.denoised_by]
    if denoised:
        names = ", ".join(Path(h.path).name for h in denoised[:3])
        names += ", …" if len(denoised) > 3 else ""
        warnings.warn(
            f"{len(denoised)} of the {len(headers)} inputs were written by cryostream denoise "
            f"({names}; their MRC labels say so: '{denoised[0].denoised_by}'): they would be "
            "used as if they were raw micrographs; give the original micrographs (each "
            "output's NAME.json names its input)", DenoisedInputWarning, stacklevel=3)


def _normalise_band_rows(chunks: object, ny: int) -> int:
    if chunks is None or chunks == -1 or chunks == "micrograph":
        return ny
    if isinstance(chunks, dict):
        unknown = set(chunks) - {"y"}
        if unknown:
            raise ConfigError(
                f"chunks={chunks!r}: only 'y' can be chunked (bands of full rows are one read)"
            )
        return _normalise_band_rows(chunks.get("y", 512), ny)
    if isinstance(chunks, int) and not isinstance(chunks, bool) and chunks > 0:
        return min(chunks, ny)
    raise ConfigError(f"chunks={chunks!r}: give rows per band (int), -1 for whole micrographs")


def _read_band(header: MicrographHeader, row_start: int, row_stop: int) -> np.ndarray:
    return read_rows(header, row_start, row_stop)[None]


def stack_from_headers(
    headers: list[MicrographHeader], band_rows: int | tuple[int, ...]
) -> da.Array:
    """A Dask array (micrograph, y, x) float32 of row bands, one positioned read per task.

    ``band_rows`` is the height of every band (the last one shorter), or the explicit heights.
    """
    ny, nx = headers[0].shape
    if isinstance(band_rows, int):
        bands = tuple(min(band_rows, ny - s) for s in range(0, ny, band_rows))
    else:
        bands = tuple(int(b) for b in band_rows)
        if sum(bands) != ny or min(bands) < 1:
            raise ValueError(f"band heights {bands} do not tile {ny} rows")
    starts = [sum(bands[:i]) for i in range(len(bands))]
    stamp = [(h, os.stat(h.path).st_mtime_ns) for h in headers]
    name = "micrographs-" + tokenize(stamp, band_rows)
    dsk = {
        (name, m, b, 0): (_read_band, h, s, s + rows)
        for m, h in enumerate(headers)
        for b, (s, rows) in enumerate(zip(starts, bands, strict=True))
    }
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    chunks = ((1,) * len(headers), bands, (nx,))
    return da.Array(graph, name, chunks, meta=np.empty((0, 0, 0), dtype=np.float32))


def micrograph_names(headers: list[MicrographHeader]) -> list[str]:
    """Names of micrographs: file stems, or full paths when two stems collide."""
    stems = [Path(h.path).stem for h in headers]
    if len(set(stems)) == len(stems):
        return stems
    return [h.path for h in headers]


def open_micrographs(
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    chunks: int | dict | None = 512,
    permissive: bool = False,
    pixel_size_angstrom: float | None = None,
) -> xr.DataArray:
    """Open micrographs lazily as one stack.

    Parameters
    ----------
    inputs : path, glob, folder, STAR file, or a list of them
        The micrographs. All must have one shape.
    chunks : int, dict or None
        Rows per chunk (bands of full rows, each read with one positioned read); ``{"y": n}``
        is the same; ``-1`` or ``None`` gives one chunk per micrograph.
    permissive : bool
        Skip bad files with a :class:`MicrographSkippedWarning` instead of raising; they are
        listed in ``attrs["skipped"]``.
    pixel_size_angstrom : float, optional
        Override the header's pixel size (needed when headers leave it unset).

    Returns
    -------
    xarray.DataArray of float32, dims (micrograph, y, x)
        Backed by a Dask array. Coordinates: ``micrograph`` (file stems), ``source`` (each
        micrograph's file, along ``micrograph``: it follows a selection such as
        ``stack.isel(micrograph=[2])``), ``y`` and ``x`` in Å. Attrs, of the stack as opened
        (a selection keeps them whole): ``sources``, ``pixel_size_angstrom``, ``headers``
        (per-file facts), ``skipped`` (the files ``permissive`` skipped), ``band_rows``.

    Raises
    ------
    InvalidMicrographError
        A file is missing, not MRC, truncated, of an unsupported mode or of another shape
        (unless ``permissive``), or no micrograph is left.

    Examples
    --------
    >>> import cryostream, tempfile
    >>> sim = cryostream.simulate(tempfile.mkdtemp(), 2, shape=(256, 320))
    >>> stack = cryostream.open_micrographs(sim.micrographs)
    >>> stack.dims, stack.shape
    (('micrograph', 'y', 'x'), (2, 256, 320))
    """
    paths = expand_inputs(inputs, permissive=permissive)
    headers, skipped = read_headers(paths, permissive=permissive)
    ny, nx = headers[0].shape
    band_rows = _normalise_band_rows(chunks, ny)
    if pixel_size_angstrom is None:
        ps = headers[0].pixel_size_angstrom
        for h in headers:  # an unset one is named as such, not as one that differs
            if h.pixel_size_angstrom <= 0:
                raise InvalidMicrographError(
                    h.path,
                    unset_pixel_size(h),
                    "write it into the header (e.g. IMOD's alterheader, or mrcfile's voxel_size), "
                    "or from Python pass pixel_size_angstrom=",
                )
            if abs(h.pixel_size_angstrom - ps) > 1e-3 * ps:
                raise InvalidMicrographError(
                    h.path,
                    f"pixel size {h.pixel_size_angstrom:g} Å differs from the {ps:g} Å of "
                    f"{headers[0].path}",
                    "process data of one pixel size together, or pass pixel_size_angstrom",
                )
    else:
        ps = pixel_size_number(pixel_size_angstrom)
    data = stack_from_headers(headers, band_rows)
    axis_attrs = {"units": "Å"}
    return xr.DataArray(
        data,
        dims=("micrograph", "y", "x"),
        coords={
            "micrograph": micrograph_names(headers),
            "source": ("micrograph", [h.path for h in headers]),
            "y": ("y", np.arange(ny) * ps, axis_attrs),
            "x": ("x", np.arange(nx) * ps, axis_attrs),
        },
        name="micrographs",
        attrs={
            "sources": [h.path for h in headers],
            "pixel_size_angstrom": ps,
            "headers": [h.facts() for h in headers],
            "skipped": skipped,
            "band_rows": band_rows,
        },
    )
