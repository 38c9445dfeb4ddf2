"""Even/odd half-sums as a paired store: both halves of each micrograph, in both directions.

Motion correction can write the sums of a movie's even and odd frames beside the full sum
(docs/guide/even_odd.md): two images of one specimen whose noise is independent, which is what
Noise2Noise trains on. :func:`half_directions` pairs them (by name, or by the row of a RELION
STAR file that lists both in its ``rlnMicrographNameEven``/``rlnMicrographNameOdd`` columns) and
lists both directions, even→odd and odd→even, as the (input, target) rows of a paired store
(:func:`cryostream.prepare.prepare` with ``odd=``). Both directions of a micrograph carry its
name, so the train/test split keeps them together.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

from cryostream.config import PrepareConfig
from cryostream.errors import ConfigError
from cryostream.io.cryosparc import is_micrograph_list
from cryostream.io.halves import EVEN_SUFFIXES, HalfKeys, half_key, pair_halves
from cryostream.io.star import read_star
from cryostream.split import split_micrographs

__all__ = ["EVEN_COLUMN", "ODD_COLUMN", "HalfDirections", "check_halves_config", "half_directions"]

#: The STAR columns RELION writes for the even- and odd-frame sums.
EVEN_COLUMN, ODD_COLUMN = "rlnMicrographNameEven", "rlnMicrographNameOdd"


@dataclasses.dataclass(frozen=True)
class HalfDirections:
    """The rows of a paired store built from half-sums: for ``n`` micrographs, ``2n`` rows,
    even→odd first (``inputs[i]`` the even half, ``targets[i]`` the odd) then odd→even.

    Attributes
    ----------
    inputs, targets : tuple of Path
        The (input, target) images of each row.
    names : tuple of str
        Each row's name in the store: ``NAME_EVN`` (input the even half) or ``NAME_ODD``.
    micrographs : tuple of str
        Each row's micrograph name ``NAME`` (shared by its two rows).
    """

    inputs: tuple[Path, ...]
    targets: tuple[Path, ...]
    names: tuple[str, ...]
    micrographs: tuple[str, ...]

    def partner(self, row: int) -> int:
        """The row of the other direction of the same micrograph."""
        n = len(self.inputs) // 2
        return (row + n) % (2 * n)

    def splits(self, rows: Iterable[int], test_fraction: float, seed: int) -> list[str]:
        """``"train"`` or ``"test"`` for each of ``rows``, split by micrograph among the
        micrographs of those rows: both directions of a micrograph land on the same side
        (:func:`cryostream.split.split_micrographs`)."""
        of_rows = [self.micrographs[r] for r in rows]
        names = sorted(set(of_rows))
        side = dict(zip(names, split_micrographs(names, test_fraction, seed), strict=True))
        return [side[m] for m in of_rows]


def check_halves_config(config: PrepareConfig) -> None:
    """Refuse a config that adds noise to half-sums: each half's own noise is the training
    noise (Noise2Noise), so the store needs ``noise.model == "none"``.

    Raises
    ------
    ConfigError
        Naming the noise model and the fix.
    """
    if config.noise.model != "none":
        raise ConfigError(f"odd (--odd) was given with noise={config.noise.model!r}: the even and "
                          "odd halves already carry independent noise and are paired as they are; "
                          "use noise model 'none' (--noise none, or leave --noise out with --odd)")


def _star_column(items: Iterable[str | os.PathLike], column: str) -> list[tuple]:
    """``items`` as ``(path, STAR file, row)``, each STAR file replaced by the halves of its
    ``column`` with their rows, other items given as they are (``(item, None, None)``)."""
    out: list = []
    for item in items:
        path = Path(item)
        if is_micrograph_list(path):
            out += [(m.path, path, m.row) for m in read_star(path, column).micrographs]
        else:
            out.append((item, None, None))
    return out


def _listed(items) -> list:
    return [items] if isinstance(items, str | os.PathLike) else list(items)


def half_directions(even, odd) -> HalfDirections:
    """Pair even- and odd-frame sums and list both directions of each pair.

    Parameters
    ----------
    even, odd : paths, globs, folders or RELION STAR files (one or a list)
        The even- and the odd-frame sums. A STAR file among ``even`` contributes its
        ``rlnMicrographNameEven`` column, among ``odd`` its ``rlnMicrographNameOdd`` column, so
        one STAR file may be given as both: then each row pairs its own two halves, whatever
        their names. Other files pair by name (:func:`cryostream.io.halves.pair_halves`:
        ``NAME_EVN.mrc`` with ``NAME_ODD.mrc``, or one name in two folders).

    Returns
    -------
    HalfDirections

    Raises
    ------
    ConfigError
        Unpaired or repeated names, or halves of different shapes (naming the files).
    InvalidMicrographError
        A missing or unreadable half, or a STAR file without the column.
    """
    given_even, given_odd = _star_column(_listed(even), EVEN_COLUMN), _star_column(_listed(odd), ODD_COLUMN)
    pairs = pair_halves([p for p, _, _ in given_even], [p for p, _, _ in given_odd],
                        HalfKeys.from_rows(given_even, given_odd))
    evens = tuple(Path(e) for e, _ in pairs)
    odds = tuple(Path(o) for _, o in pairs)
    keys = tuple(half_key(e, EVEN_SUFFIXES) for e in evens)
    if len(set(keys)) < len(keys):  # rows' halves of one name in two folders: their paths
        keys = tuple(str(e.with_name(k)) for e, k in zip(evens, keys, strict=True))
    return HalfDirections(
        inputs=evens + odds,
        targets=odds + evens,
        names=tuple(f"{k}_EVN" for k in keys) + tuple(f"{k}_ODD" for k in keys),
        micrographs=keys + keys,
    )
