"""What an FEI extended header (``exttyp`` FEI1 or FEI2, as Thermo Fisher's EPU writes it)
says of the microscope and the micrograph: its accelerating voltage and pixel size, read from
the first section's record without reading the pixels. (The record's dose is not read: nothing
in cryostream takes a micrograph's dose.)"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from cryostream.io.pixel_sizes import PIXEL_RANGE

__all__ = ["FeiRecord", "read_fei_record", "pixel_size_with_fei"]

#: Voltages (kV) a transmission microscope's record can give; outside, the field is not one.
_VOLTAGES = (40.0, 400.0)
# The record's "Bitmask 1" says which fields hold values, a bit each in the record's order from
# Timestamp (bit 0): HT is bit 5, Pixel size X and Y bits 14 and 15.
_HT_BIT, _PIXEL_X_BIT, _PIXEL_Y_BIT = 1 << 5, 1 << 14, 1 << 15


@dataclasses.dataclass(frozen=True)
class FeiRecord:
    """What the first record of an FEI1/FEI2 extended header gives; 0.0 where it gives none
    (its bitmask leaves the field unset, or the value is none a micrograph can have).

    Attributes
    ----------
    voltage_kv : float
        ``HT``, kV (the record's is in volts).
    pixel_size_angstrom, pixel_size_y_angstrom : float
        ``Pixel size X`` and ``Pixel size Y``, Å (the record's are in metres).
    """

    voltage_kv: float = 0.0
    pixel_size_angstrom: float = 0.0
    pixel_size_y_angstrom: float = 0.0


def read_fei_record(path, exttyp: str, nsymbt: int, byte_order: str) -> FeiRecord:
    """What the FEI1/FEI2 extended header of the MRC file ``path`` gives in its first record
    (:class:`FeiRecord`); all 0.0 where the file has no such header."""
    if exttyp not in ("FEI1", "FEI2") or nsymbt <= 0:
        return FeiRecord()
    from mrcfile.dtypes import get_ext_header_dtype

    dtype = get_ext_header_dtype(exttyp.encode(), "<" if byte_order in ("<", "=", "|") else ">")
    if dtype is None or dtype.itemsize > nsymbt:
        return FeiRecord()
    try:
        with open(path, "rb") as f:
            f.seek(1024)
            raw = f.read(dtype.itemsize)
    except OSError:
        return FeiRecord()
    if len(raw) < dtype.itemsize:
        return FeiRecord()
    first = np.frombuffer(raw, dtype)[0]  # the first section's
    bits = int(first["Bitmask 1"])

    def field(name: str, bit: int, scale: float, low: float, high: float) -> float:
        value = float(first[name]) * scale
        return round(value, 6) if bits & bit and low <= value <= high else 0.0  # NaN: 0.0

    return FeiRecord(voltage_kv=field("HT", _HT_BIT, 1e-3, *_VOLTAGES),
                     pixel_size_angstrom=field("Pixel size X", _PIXEL_X_BIT, 1e10, *PIXEL_RANGE),
                     pixel_size_y_angstrom=field("Pixel size Y", _PIXEL_Y_BIT, 1e10, *PIXEL_RANGE))


def pixel_size_with_fei(x: float, y: float, fei: FeiRecord) -> tuple[float, float, str]:
    """An MRC header's pixel sizes ``x`` and ``y`` (Å, 0.0 unset) with those of its FEI
    extended header ``fei`` where that gives one and the MRC header's is unset, or exactly
    1 Å (a placeholder: ``cella`` of the image's size in pixels) where the FEI record's is
    1 % or more off it: ``(x, y, source)``, ``source`` ``"MRC header"`` or ``"EPU header"``.
    Where both are set and disagree, the MRC header's stays (it is the one other programs
    read); :func:`~cryostream.io.pixel_sizes.say_epu_pixel_sizes` warns of it."""
    ours = fei.pixel_size_angstrom
    if ours > 0 and (x <= 0 or x == 1.0 and not math.isclose(ours, 1.0, rel_tol=0.01)):
        return ours, fei.pixel_size_y_angstrom or ours, "EPU header"
    return x, y, "MRC header"
