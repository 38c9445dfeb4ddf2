"""What an FEI extended header (``exttyp`` FEI1 or FEI2, as Thermo Fisher's EPU writes it)
says of the microscope: its accelerating voltage, read from the first section's record
without reading the pixels."""

from __future__ import annotations

import numpy as np

__all__ = ["fei_voltage_kv"]

#: Voltages (kV) a transmission microscope's record can give; outside, the field is not one.
_VOLTAGES = (40.0, 400.0)
_HT_BIT = 1 << 5  # the record's "Bitmask 1" says which fields hold values: bit 5, HT


def fei_voltage_kv(path, exttyp: str, nsymbt: int, byte_order: str) -> float:
    """The accelerating voltage (kV) the FEI1/FEI2 extended header of the MRC file ``path``
    gives in its first record (``HT``, in volts, where its bitmask marks it as set); 0.0 where
    the file has no such header, or it gives none a microscope runs at."""
    if exttyp not in ("FEI1", "FEI2") or nsymbt <= 0:
        return 0.0
    from mrcfile.dtypes import get_ext_header_dtype

    dtype = get_ext_header_dtype(exttyp.encode(), "<" if byte_order in ("<", "=", "|") else ">")
    if dtype is None or dtype.itemsize > nsymbt:
        return 0.0
    try:
        with open(path, "rb") as f:
            f.seek(1024)
            raw = f.read(dtype.itemsize)
    except OSError:
        return 0.0
    if len(raw) < dtype.itemsize:
        return 0.0
    first = np.frombuffer(raw, dtype)[0]  # the first section's
    volts = float(first["HT"])
    if not int(first["Bitmask 1"]) & _HT_BIT or not _VOLTAGES[0] <= volts / 1000 <= _VOLTAGES[1]:
        return 0.0
    return round(volts / 1000, 3)
