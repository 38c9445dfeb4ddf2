"""The T20S proteasome atomic model the simulator projects.

The package ships ``cryostream/data/t20s_1pma.npz``: every heavy atom of the 28-subunit
complex in PDB entry 1PMA (Löwe et al., Science 1995; T20S proteasome of *Thermoplasma
acidophilum*; wwPDB data are CC0), centred on the complex's centre of mass, as float16
coordinates in Å with the atomic number of each atom. :func:`build_compact_model` rebuilds it
from the PDB file.
"""

from __future__ import annotations

import functools
import gzip
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["ATOMIC_NUMBER", "load_t20s", "build_compact_model"]

#: Atomic numbers of the elements found in protein models.
ATOMIC_NUMBER = {"C": 6, "N": 7, "O": 8, "S": 16, "P": 15, "SE": 34}


def build_compact_model(pdb_path: str | Path, out_path: str | Path) -> int:
    """Write the compact model (centred float16 coordinates, atomic numbers) from a PDB file.

    Returns the number of atoms written. Hydrogens and waters are left out.
    """
    opener = gzip.open if str(pdb_path).endswith(".gz") else open
    coords, numbers = [], []
    with opener(pdb_path, "rt") as fh:
        for line in fh:
            if not line.startswith("ATOM"):
                continue
            element = line[76:78].strip().upper() or line[12:14].strip().upper()
            if element not in ATOMIC_NUMBER:
                continue
            coords.append((float(line[30:38]), float(line[38:46]), float(line[46:54])))
            numbers.append(ATOMIC_NUMBER[element])
    xyz = np.asarray(coords, dtype=np.float64)
    z = np.asarray(numbers, dtype=np.uint8)
    xyz -= np.average(xyz, axis=0, weights=z)
    np.savez_compressed(
        out_path,
        xyz_angstrom=xyz.astype(np.float16),
        atomic_number=z,
        source=np.array("PDB 1PMA (wwPDB, CC0): T20S proteasome, Thermoplasma acidophilum"),
    )
    return len(z)


@functools.cache
def load_t20s() -> tuple[np.ndarray, np.ndarray]:
    """Atom coordinates (n, 3) float32 in Å, centred, and atomic numbers (n,) float32."""
    with resources.files("cryostream.data").joinpath("t20s_1pma.npz").open("rb") as fh:
        data = np.load(fh)
        xyz = data["xyz_angstrom"].astype(np.float32)
        z = data["atomic_number"].astype(np.float32)
    xyz.setflags(write=False)
    z.setflags(write=False)
    return xyz, z
