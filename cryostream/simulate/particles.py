"""The specimens the simulator projects: the T20S proteasome and three other shapes and sizes.

Each shape is a :class:`ParticleModel`: points in Å around the particle's centre, each with a
weight in atomic-number units, so that every shape has the contrast per unit mass of protein
that the T20S atoms give (the simulator turns weight into phase the same way for all).

============  ==================================================  =========  ================
name          what                                                mass       largest extent
============  ==================================================  =========  ================
``t20s``      the T20S proteasome atoms (PDB 1PMA): a barrel      690 kDa    ≈170 Å
``globular``  a small globular complex: four ≈37 kDa domains      ≈140 kDa   ≈90 Å
              at the corners of a tetrahedron
``filament``  an elongated filament segment: 16 subunits of       ≈860 kDa   ≈460 Å long,
              ≈55 kDa on a two-start helix (27.5 Å rise,                     ≈90 Å wide
              −166.7° twist, actin-like)
``shell``     a large spherical virus-like shell: 180 subunits    ≈3.5 MDa   ≈280 Å across
              of ≈20 kDa on a sphere of 120 Å radius, hollow
============  ==================================================  =========  ================

The three built shapes are made of pseudo-atoms drawn uniformly inside the union of their
subunit balls, at the T20S model's density of heavy atoms and with its mean atomic number, so
their texture at atomic scale and their contrast per Å³ match the protein's. They are built
from fixed seeds: the same on every machine, whatever the micrograph's seed.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from cryostream.config.simulate import PARTICLE_SHAPES
from cryostream.simulate.t20s import load_t20s

__all__ = ["T20S_DALTON", "ANGSTROM3_PER_DALTON", "ParticleModel", "particle_model",
           "place_particles"]

#: Mass of the T20S proteasome, Da.
T20S_DALTON = 6.9e5
#: Protein volume per mass, Å³/Da.
ANGSTROM3_PER_DALTON = 1.21

_SEEDS = {"globular": 101, "filament": 102, "shell": 103}


@dataclasses.dataclass(frozen=True)
class ParticleModel:
    """A particle shape: points around its centre, weighted like atoms.

    Attributes
    ----------
    name : str
        One of :data:`cryostream.config.simulate.PARTICLE_SHAPES`.
    xyz_angstrom : numpy.ndarray, (n, 3) float32
        Point coordinates in Å, centred on the particle's centre of weight (read-only).
    weight : numpy.ndarray, (n,) float32
        Each point's weight in atomic-number units (read-only).
    dalton : float
        The particle's mass, Da.
    """

    name: str
    xyz_angstrom: np.ndarray
    weight: np.ndarray
    dalton: float

    @property
    def radius_angstrom(self) -> float:
        """Distance from the centre to the farthest point, Å."""
        return float(np.sqrt((self.xyz_angstrom.astype(np.float64) ** 2).sum(1)).max())


def _frozen(name: str, xyz: np.ndarray, weight: np.ndarray, dalton: float) -> ParticleModel:
    xyz = np.ascontiguousarray(xyz, dtype=np.float32)
    weight = np.ascontiguousarray(weight, dtype=np.float32)
    xyz.setflags(write=False)
    weight.setflags(write=False)
    return ParticleModel(name, xyz, weight, float(dalton))


def _balls(name: str, centres: np.ndarray, radius: float) -> ParticleModel:
    """Pseudo-atoms uniform over the union of balls of ``radius`` Å at ``centres`` (Å)."""
    xyz_t20s, z_t20s = load_t20s()
    per_angstrom3 = len(z_t20s) / (T20S_DALTON * ANGSTROM3_PER_DALTON)
    mean_z = float(z_t20s.sum(dtype=np.float64)) / len(z_t20s)
    dalton_per_z = T20S_DALTON / float(z_t20s.sum(dtype=np.float64))
    rng = np.random.default_rng(_SEEDS[name])
    count = round(per_angstrom3 * 4 / 3 * math.pi * radius**3)
    points = []
    for i, centre in enumerate(centres):
        u = rng.normal(size=(count, 3))
        u *= (radius * rng.uniform(size=count) ** (1 / 3) / np.linalg.norm(u, axis=1))[:, None]
        p = centre + u
        if i:  # keep the density uniform where balls overlap: drop what an earlier ball holds
            earlier = centres[:i]
            near = np.linalg.norm(earlier - centre, axis=1) < 2 * radius
            if near.any():
                d = np.linalg.norm(p[:, None, :] - earlier[near][None], axis=2)
                p = p[(d >= radius).all(axis=1)]
        points.append(p)
    xyz = np.concatenate(points)
    xyz -= xyz.mean(axis=0)
    weight = np.full(len(xyz), mean_z)
    return _frozen(name, xyz, weight, weight.sum() * dalton_per_z)


def _globular() -> ParticleModel:
    corners = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float)
    return _balls("globular", corners / math.sqrt(3) * 22.0, 22.0)


def _filament() -> ParticleModel:
    n, rise, twist = 16, 27.5, math.radians(-166.7)
    k = np.arange(n)
    centres = np.stack([20.0 * np.cos(k * twist), 20.0 * np.sin(k * twist),
                        (k - (n - 1) / 2) * rise], axis=1)
    return _balls("filament", centres, 25.0)


def _shell() -> ParticleModel:
    n = 180  # a Fibonacci lattice: near-uniform points on the sphere
    k = np.arange(n) + 0.5
    polar = np.arccos(1 - 2 * k / n)
    azimuth = math.pi * (1 + math.sqrt(5)) * k
    unit = np.stack([np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth),
                     np.cos(polar)], axis=1)
    return _balls("shell", 120.0 * unit, 18.0)


@functools.cache
def particle_model(name: str) -> ParticleModel:
    """The :class:`ParticleModel` of a shape (built once per process).

    Parameters
    ----------
    name : str
        One of :data:`cryostream.config.simulate.PARTICLE_SHAPES`.

    Raises
    ------
    ValueError
        If ``name`` is not a shape.
    """
    if name == "t20s":
        xyz, z = load_t20s()
        return ParticleModel("t20s", xyz, z, T20S_DALTON)
    builders = {"globular": _globular, "filament": _filament, "shell": _shell}
    if name not in builders:
        raise ValueError(f"particle shape {name!r}: must be one of {', '.join(PARTICLE_SHAPES)}")
    return builders[name]()


def place_particles(rng: np.random.Generator, shape: tuple[int, int],
                    radii_px) -> list[tuple[float, float, int]]:
    """Non-overlapping centres for particles of several sizes, the largest placed first.

    Particle ``i`` of radius ``radii_px[i]`` keeps half its radius inside the edges and at
    least the sum of the radii away from every other centre; one that finds no room after 200
    tries is left out.

    Returns
    -------
    list of (x, y, i)
        Centres in pixels and the index of the particle placed there, in placing order.
    """
    ny, nx = shape
    placed: list[tuple[float, float, int]] = []
    for i in sorted(range(len(radii_px)), key=lambda j: -radii_px[j]):
        r = float(radii_px[i])
        margin = r / 2
        if nx <= 2 * margin or ny <= 2 * margin:
            continue
        for _ in range(200):
            x = rng.uniform(margin, nx - margin)
            y = rng.uniform(margin, ny - margin)
            if all((x - cx) ** 2 + (y - cy) ** 2 >= (r + radii_px[j]) ** 2 for cx, cy, j in placed):
                placed.append((x, y, i))
                break
    return placed
