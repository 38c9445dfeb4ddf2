"""Train/test split by micrograph, never by patch (overlapping patches would leak)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from cryostream.errors import ConfigError

__all__ = ["held_out_count", "split_micrographs"]


def held_out_count(n_micrographs: int, test_fraction: float) -> int:
    """Micrographs held out: ``round(n · fraction)``, at least one when both splits can be fed."""
    if not 0 <= test_fraction < 1:
        raise ConfigError(f"test_fraction={test_fraction!r}: must be in [0, 1)")
    n = round(n_micrographs * test_fraction)
    if test_fraction > 0 and n == 0 and n_micrographs >= 2:
        n = 1
    return min(n, n_micrographs - 1) if n_micrographs > 1 else 0


def split_micrographs(names: Sequence[str], test_fraction: float, seed: int) -> list[str]:
    """``"train"`` or ``"test"`` for each name, in order.

    The micrographs are ranked by a BLAKE2b hash of ``(seed, name)`` and the first
    :func:`held_out_count` go to test: the split depends only on the names and the seed, not
    on their order, the machine or the scheduler.
    """
    if len(set(names)) != len(names):
        raise ConfigError("micrograph names must be unique to split by micrograph")

    def key(name: str) -> bytes:
        return hashlib.blake2b(f"{seed}\x00{name}".encode(), digest_size=16).digest()

    held_out = set(sorted(names, key=key)[: held_out_count(len(names), test_fraction)])
    return ["test" if n in held_out else "train" for n in names]
