"""MRC headers, positioned row-band reads, and writing micrographs faithful to their inputs.

The header of each file is read once (``mrcfile.open(..., header_only=True)``) and checked
against the file's size. Pixel data are then read by byte range: a band of full rows is one
contiguous range, so it is one ``os.preadv`` straight into the output buffer (native float32)
or into a scratch buffer converted to float32 (other modes, big-endian files).

An output written from an input (:func:`write_micrograph` with ``like=``,
:func:`read_header_copy`) keeps the input's origin, voxel size and labels, adds its history
label, and keeps the extended header on request."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path

import mrcfile
import numpy as np
from mrcfile import utils as mrc_utils

from cryostream._version import __version__
from cryostream.errors import InvalidMicrographError
from cryostream.io.fei import pixel_size_with_fei, read_fei_record
from cryostream.io.paths import broken_link

__all__ = ["SUPPORTED_MODES", "OUTPUT_DTYPES", "HeaderCopy", "MicrographHeader", "read_header",
           "read_header_copy", "read_rows", "write_micrograph", "labelled_by"]

#: MRC modes read into float32: int8 (unsigned where IMOD's header says so), int16, float32,
#: uint16, float16.
SUPPORTED_MODES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}

#: The pixel types :func:`write_micrograph` writes: MRC mode 2 and mode 12.
OUTPUT_DTYPES = ("float32", "float16")

_HEADER_BYTES = 1024
_SECTIONS_FIX = ("if it is a movie (frames of one exposure), motion-correct it first (MotionCor2 or "
                 "RELION's own, for example) and give the summed micrograph; if a stack of "
                 "micrographs, split it into one file per micrograph")


@dataclasses.dataclass(frozen=True)
class MicrographHeader:
    """The facts about one MRC micrograph that reading needs.

    Attributes
    ----------
    path : str
        Absolute path of the file.
    shape : (int, int)
        (ny, nx) in pixels.
    mode : int
        MRC data mode.
    dtype : str
        On-disk NumPy dtype string with byte order, e.g. ``"<f4"`` or ``">u2"``.
    data_offset : int
        Byte offset of the first pixel (1024 + extended header size).
    pixel_size_angstrom : float
        Pixel size along x from the header, Å (0.0 when the header leaves it unset): the MRC
        header's, or an FEI1/FEI2 extended header's (EPU's) where the MRC header leaves it
        unset or gives a 1 Å placeholder (:func:`~cryostream.io.fei.pixel_size_with_fei`).
    pixel_size_y_angstrom : float
        Pixel size along y, Å (0.0 unset): where it differs from x's, x's is used.
    pixel_size_from : str
        Which header gave them: ``"MRC header"`` or ``"EPU header"``.
    epu_pixel_size_angstrom : float
        The pixel size along x an FEI1/FEI2 extended header gives, Å; 0.0 if none.
    pixel_size_written : (float, int)
        ``cella.x`` (Å) and ``mx`` as the header writes them, to name a value that is no pixel size.
    voltage_kv : float
        The accelerating voltage an FEI1/FEI2 extended header (EPU's) gives, kV; 0.0 if none.
    extended_header_type : str
        ``exttyp`` of the header (``"FEI1"``, ``"FEI2"`` …) or ``""``.
    extended_header_bytes : int
        Size of the extended header.
    denoised_by : str
        The header's ``cryostream denoise …`` history label if ``cryostream denoise`` wrote
        the file, else ``""``.
    """

    path: str
    shape: tuple[int, int]
    mode: int
    dtype: str
    data_offset: int
    pixel_size_angstrom: float
    extended_header_type: str
    extended_header_bytes: int
    denoised_by: str = ""
    pixel_size_y_angstrom: float = 0.0
    pixel_size_written: tuple[float, int] = (0.0, 0)
    voltage_kv: float = 0.0
    pixel_size_from: str = "MRC header"
    epu_pixel_size_angstrom: float = 0.0

    @property
    def data_bytes(self) -> int:
        """Bytes of pixel data the header promises."""
        return self.shape[0] * self.shape[1] * np.dtype(self.dtype).itemsize

    def facts(self) -> dict[str, object]:
        """Header facts as plain values, for attrs and provenance."""
        return {"path": self.path, "mode": self.mode, "dtype": self.dtype, "shape": list(self.shape),
                "pixel_size_angstrom": self.pixel_size_angstrom,
                "extended_header_type": self.extended_header_type,
                "extended_header_bytes": self.extended_header_bytes}


#: Compressed files mrcfile opens, by the class it opens them with: (name, the command that
#: undoes it). Their headers read, but the pixels are not where positioned reads go.
_COMPRESSIONS = {"GzipMrcFile": ("gzip", "gunzip"), "Bzip2MrcFile": ("bzip2", "bunzip2")}


def read_header(path: str | os.PathLike) -> MicrographHeader:
    """Read and check one MRC header without touching the pixel data.

    Raises
    ------
    InvalidMicrographError
        The file is missing, not MRC, of an unsupported mode, a volume or stack rather than
        one image, or shorter than its header promises (or longer by whole sections).
    """
    path = Path(path)
    if not path.exists():
        if (target := broken_link(path)) is not None:  # its micrograph moved or archived
            raise InvalidMicrographError(path, f"a broken link: {target} is not there",
                                         "link the micrograph again, or give its new place")
        raise InvalidMicrographError(path, "no such file", "check the path or the glob")
    if not path.is_file():
        raise InvalidMicrographError(path, "not a regular file", "pass MRC files or a folder")
    if path.stat().st_size == 0:  # a copy or transfer that never wrote it
        raise InvalidMicrographError(path, "empty (0 bytes)", "copy or download it again")
    try:  # strict (not permissive): a bad header raises; no warnings filter, which is global
        with mrcfile.open(path, header_only=True) as mrc:  # state that threads would share
            compressed = _COMPRESSIONS.get(type(mrc).__name__)
            header = mrc.header
            nsymbt = int(header.nsymbt)
            exttyp = bytes(header.exttyp).decode("ascii", "replace").strip("\x00 ")
            # not voxel_size, which divides by a zero sampling
            pixel_size = round(_pixel_size(float(header.cella.x), int(header.mx)), 6)
            pixel_size_y = round(_pixel_size(float(header.cella.y), int(header.my)), 6)
            written = (float(header.cella.x), int(header.mx))
            mode = int(header.mode)
            nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
            byte_order = header.mode.dtype.byteorder
            labels = (bytes(header.label[i]).decode("ascii", "replace").strip("\x00 ")
                      for i in range(min(max(int(header.nlabl), 0), 10)))
            denoised_by = next((lb for lb in labels if lb.startswith("cryostream denoise")), "")
    except (ValueError, OSError) as exc:
        if path.suffix.lower() in (".tif", ".tiff", ".eer"):  # a movie's frames, not MRC
            raise InvalidMicrographError(
                path, f"a movie's frames ({path.suffix}), not an MRC micrograph",
                "motion-correct the movies first (MotionCor2 or RELION's own, for example) and "
                "give the motion-corrected micrographs (RELION: its MotionCorr job's "
                "corrected_micrographs.star, or the CtfFind job's STAR file)") from None
        raise InvalidMicrographError(
            path, f"not a readable MRC file ({exc})", "check that it is an MRC2014 micrograph"
        ) from None
    if compressed:
        undo = f"{compressed[1]} {path.name}" if path.suffix.lower() in (".gz", ".bz2") \
            else f"{compressed[1]} -c {path.name} > {path.stem}_plain.mrc"  # keeps its name
        raise InvalidMicrographError(path, f"a {compressed[0]}-compressed MRC file",
                                     f"decompress it first ({undo}), then pass the .mrc")
    if mode not in SUPPORTED_MODES:
        raise InvalidMicrographError(path, f"MRC mode {mode} is not supported", f"convert it to one "
                                     f"of modes {sorted(SUPPORTED_MODES)} (e.g. float32, mode 2)")
    if min(nx, ny, nz) < 1:  # a header that sizes no image at all: not a stack of 0
        raise InvalidMicrographError(path, f"its header sizes an empty image (nx={nx}, ny={ny}, "
                                     f"nz={nz}): the file is damaged or was not written whole",
                                     "export or copy the micrograph again")
    if nz != 1:
        raise InvalidMicrographError(path, f"holds {nz} sections (nz={nz}), not one micrograph",
                                     _SECTIONS_FIX)
    dtype = mrc_utils.dtype_from_mode(mode).newbyteorder(byte_order)
    if mode == 0 and _imod_unsigned(path, byte_order):
        dtype = np.dtype(np.uint8)
    fei = read_fei_record(path, exttyp, nsymbt, byte_order)
    pixel_size, pixel_size_y, pixel_size_from = pixel_size_with_fei(pixel_size, pixel_size_y, fei)
    result = MicrographHeader(
        path=str(path.resolve()),
        shape=(ny, nx),
        mode=mode,
        dtype=dtype.str,
        data_offset=_HEADER_BYTES + nsymbt,
        pixel_size_angstrom=pixel_size,
        extended_header_type=exttyp,
        extended_header_bytes=nsymbt,
        denoised_by=denoised_by,
        pixel_size_y_angstrom=pixel_size_y,
        pixel_size_written=written,
        voltage_kv=fei.voltage_kv,
        pixel_size_from=pixel_size_from,
        epu_pixel_size_angstrom=fei.pixel_size_angstrom,
    )
    size, expected = path.stat().st_size, result.data_offset + result.data_bytes
    if size < expected:
        raise InvalidMicrographError(path, f"truncated: {size} bytes, but its header promises "
                                     f"{expected} ({ny} × {nx} {dtype.name})", "copy or download it again")
    if size - expected >= result.data_bytes:  # whole sections more than its header says
        raise InvalidMicrographError(
            path, f"holds {size} bytes, room for {1 + (size - expected) // result.data_bytes} "
            f"sections of {ny} × {nx} {dtype.name}, but its header says one (nz=1): the header "
            "is wrong", "copy the micrograph again, or mend its nz; " + _SECTIONS_FIX)
    return result


@dataclasses.dataclass(frozen=True)
class HeaderCopy:
    """What an output keeps of its input's MRC header (:func:`read_header_copy`).

    Attributes
    ----------
    origin : (float, float, float)
        ``origin`` x, y, z, Å.
    start : (int, int, int)
        ``nxstart``, ``nystart``, ``nzstart``.
    cell : (float, float, float)
        ``cella`` x, y, z, Å.
    sampling : (int, int, int)
        ``mx``, ``my``, ``mz``: with ``cell``, the voxel size.
    labels : tuple of bytes
        The input's label lines as stored (80 bytes each at most).
    extended_header_type : str
        ``exttyp`` (``"FEI1"`` …) or ``""``.
    extended_header : bytes
        The extended header as stored; empty unless asked for.
    """

    origin: tuple[float, float, float]
    start: tuple[int, int, int]
    cell: tuple[float, float, float]
    sampling: tuple[int, int, int]
    labels: tuple[bytes, ...]
    extended_header_type: str = ""
    extended_header: bytes = b""

    @property
    def pixel_size_angstrom(self) -> float:
        """Pixel size along x, Å (0.0 when unset)."""
        return _pixel_size(self.cell[0], self.sampling[0])


def _pixel_size(cell: float, sampling: int) -> float:
    """The pixel size (Å) from a header's cell length and sampling along one axis; 0.0 (unset)
    where either is zero, negative or not finite."""
    return cell / sampling if sampling > 0 and 0 < cell < float("inf") else 0.0


def read_header_copy(path: str | os.PathLike, *, extended_header: bool = False) -> HeaderCopy:
    """The header fields of an MRC file that an output made from it keeps (origin, voxel
    size, labels) and, with ``extended_header``, its extended header's bytes.

    Raises
    ------
    InvalidMicrographError
        The file is not a readable MRC file.
    """
    try:
        with mrcfile.open(path, header_only=True, permissive=True) as mrc:
            h = mrc.header
            count = min(int(h.nlabl), 10)
            labels = tuple(bytes(h.label[i]).rstrip(b"\x00 ") for i in range(count))
            exttyp = bytes(h.exttyp).decode("ascii", "replace").strip("\x00 ")
            nsymbt = int(h.nsymbt)
            copy = HeaderCopy(
                origin=(float(h.origin.x), float(h.origin.y), float(h.origin.z)),
                start=(int(h.nxstart), int(h.nystart), int(h.nzstart)),
                cell=(float(h.cella.x), float(h.cella.y), float(h.cella.z)),
                sampling=(int(h.mx), int(h.my), int(h.mz)),
                labels=tuple(label for label in labels if label), extended_header_type=exttyp)
    except (ValueError, OSError) as exc:
        raise InvalidMicrographError(path, f"not a readable MRC file ({exc})",
                                     "check that it is an MRC2014 micrograph") from None
    if extended_header and nsymbt:
        with open(path, "rb") as f:
            f.seek(_HEADER_BYTES)
            copy = dataclasses.replace(copy, extended_header=f.read(nsymbt))
    return copy


def _imod_unsigned(path: Path, byte_order: str) -> bool:
    """Whether a mode-0 file's bytes are unsigned, as IMOD marks them: its stamp (header word
    39) present and flag bit 0 (word 40: signed bytes) clear. MRC2014 reads mode 0 as signed
    (IMOD's unsigned 128–255 had come out as −128 to −1)."""
    with open(path, "rb") as f:
        f.seek(152)
        words = np.frombuffer(f.read(8).ljust(8, b"\0"), np.dtype("i4").newbyteorder(byte_order))
    return int(words[0]) == 1146047817 and not int(words[1]) & 1


def read_rows(header: MicrographHeader, row_start: int, row_stop: int) -> np.ndarray:
    """Rows ``[row_start, row_stop)`` of a micrograph as native float32, with one positioned read.

    Returns
    -------
    numpy.ndarray of float32, shape (row_stop - row_start, nx)
    """
    ny, nx = header.shape
    if not (0 <= row_start <= row_stop <= ny):
        raise ValueError(f"rows [{row_start}, {row_stop}) outside 0..{ny}")
    disk = np.dtype(header.dtype)
    out = np.empty((row_stop - row_start, nx), dtype=np.float32)
    native = disk == np.dtype(np.float32) and disk.isnative
    buf = out if native else np.empty(out.shape, dtype=disk)
    offset = header.data_offset + row_start * nx * disk.itemsize
    view = memoryview(buf).cast("B")
    done = 0
    fd = os.open(header.path, os.O_RDONLY)
    try:
        while done < view.nbytes:
            n = os.preadv(fd, [view[done:]], offset + done)
            if n == 0:
                raise InvalidMicrographError(
                    header.path,
                    f"ended after {offset + done} bytes while reading rows {row_start}–{row_stop}",
                    "the file changed or was truncated since it was opened; copy it again",
                )
            done += n
    finally:
        os.close(fd)
    if not native:
        out[...] = buf
    return out


def write_micrograph(path: str | os.PathLike, data: np.ndarray, pixel_size_angstrom: float, *,
                     history: str | None = None, overwrite: bool = False, dtype: str = "float32",
                     like: HeaderCopy | None = None) -> None:
    """Write a 2-D micrograph as MRC (mode 2, or 12 for float16), atomically (temporary name,
    rename; the temporary file is removed if writing fails).

    Parameters
    ----------
    path : path-like
        Destination ``.mrc``.
    data : numpy.ndarray, shape (ny, nx)
        Pixel values; cast to ``dtype``.
    pixel_size_angstrom : float
        Written to the header's voxel size (``like``'s cell and sampling are kept as they are
        when they give this pixel size).
    history : str, optional
        Recorded in the header's labels, 80 characters each (a longer one goes on in the
        next, from a ``+`` or a space). No label holds the time: the same data and history
        give the same bytes.
    overwrite : bool
        Replace an existing file.
    dtype : {"float32", "float16"}
        The pixel type written (:data:`OUTPUT_DTYPES`).
    like : HeaderCopy, optional
        The input's header (:func:`read_header_copy`): its origin, start, voxel size and
        labels are kept, ``history`` added after them (the input's last ones replaced when all
        10 are taken), and its extended header kept when the copy holds one. Without it the
        labels are ``Created by cryostream VERSION`` and ``history``.
    """
    if dtype not in OUTPUT_DTYPES:
        raise ValueError(f"dtype={dtype!r}: write one of {OUTPUT_DTYPES}")
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True or choose another name")
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            pixels = np.asarray(data, dtype=dtype)  # (an overflow here, into ±inf, is said)
            with np.errstate(over="ignore"):  # mrcfile's float32 rms of large values overflows
                mrc.set_data(pixels)
            mrc.header.rms = mrc.header.rms if np.isfinite(mrc.header.rms) else pixels.std(dtype=float)
            mrc.voxel_size = pixel_size_angstrom
            # mrcfile's own label holds the clock; without it the same data gives the same bytes
            mrc.header.label[:] = b""  # (nlabl: set below)
            # 80 characters a label: a longer history goes on, from a "+" or a space, below
            lines = [s.strip() for s in re.findall(r".{1,80}(?=[+ ]|$)|.{1,80}", history or "")]
            if like is None:
                labels = [f"Created by cryostream {__version__}".encode()]
            else:
                _copy_header(mrc, like, pixel_size_angstrom)
                labels = list(like.labels[:max(0, 10 - len(lines))])
            labels += [line.encode("ascii", "replace") for line in lines]
            for i, label in enumerate(labels[:10]):
                mrc.header.label[i] = label[:80]
            mrc.header.nlabl = min(len(labels), 10)
        os.replace(tmp, path)
    except BaseException:  # a full disk, an interrupt: no partial file is left behind
        tmp.unlink(missing_ok=True)
        raise


def _copy_header(mrc, like: HeaderCopy, pixel_size_angstrom: float) -> None:
    h = mrc.header
    h.origin.x, h.origin.y, h.origin.z = like.origin
    h.nxstart, h.nystart, h.nzstart = like.start
    if all(math.isclose(_pixel_size(cell, m), pixel_size_angstrom, rel_tol=1e-5)  # x and y
           for cell, m in zip(like.cell[:2], like.sampling[:2], strict=True)):
        h.mx, h.my, h.mz = like.sampling
        h.cella.x, h.cella.y, h.cella.z = like.cell
    if like.extended_header:
        mrc.set_extended_header(np.frombuffer(like.extended_header, dtype=np.uint8).copy())
        h.exttyp = like.extended_header_type.encode("ascii", "replace")[:4]


def labelled_by(path, program: str) -> bool:
    """Whether an MRC file's labels say ``program`` (``"cryostream denoise"``) wrote it; False
    for a file that is no MRC file (no ``MAP`` at byte 208). Only its 1024-byte header is read
    (not an extended header that other bytes may say is gigabytes long), without warnings."""
    try:
        with open(path, "rb") as f:
            header = f.read(1024)
    except OSError:
        return False
    if len(header) < 1024 or header[208:212] != b"MAP ":
        return False
    order = "big" if header[212] == 0x11 else "little"  # the machine stamp's byte order
    count = min(max(int.from_bytes(header[220:224], order, signed=True), 0), 10)
    labels = (header[224 + 80 * i:304 + 80 * i].decode("latin-1") for i in range(count))
    return any(label.startswith(program) for label in labels)
