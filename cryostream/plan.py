"""The sizing planner: patches, bytes, RAM, disk and time for a preprocessing run.

What the reference plan worked out by hand, done right: both edge policies, the split by micrograph,
every storage choice, and whether it fits this machine.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import psutil

from cryostream.config import PrepareConfig
from cryostream.config.checks import check_config
from cryostream.errors import ConfigError
from cryostream.io.stack import expand_inputs, micrograph_names, read_headers, warn_if_denoised
from cryostream.patches import patch_grid_shape, patch_to_fit, uncovered_pixels
from cryostream.prepare import MODEL_MULTIPLE
from cryostream.prepare_output import check_patch_size
from cryostream.split import held_out_count, split_micrographs
from cryostream.units import format_bytes, format_duration

__all__ = ["Plan", "plan", "COMPRESSION_RATIO"]

#: Lossless ratios measured on noisy normalised patches (bitshuffle-LZ4, Zstd level 3).
COMPRESSION_RATIO = {
    ("none", "float32"): 1.0,
    ("none", "float16"): 1.0,
    ("lz4", "float32"): 1.31,
    ("lz4", "float16"): 1.43,
    ("zstd", "float32"): 1.19,
    ("zstd", "float16"): 1.19,
}

# Throughput model of one preprocessing run (documented in docs/benchmarks.md).
_READ_BYTES_PER_S = 1.0e9
_WRITE_BYTES_PER_S = 0.25e9  # measured: prepare writes ≈253 MB/s on 2 cores (docs/benchmarks.md)
# matched and none: from the cost of their noise per input pixel beside gaussian and
# poisson-gaussian in one run (85, 11 and 60 ns), on the line through those two
_CPU_NS_PER_OUTPUT_PIXEL = {"gaussian": 6.0, "poisson": 14.0, "poisson-gaussian": 20.0,
                            "matched": 27.0, "none": 3.0}
_CPU_NS_PER_INPUT_PIXEL = 8.0  # percentile and normalisation


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes of a preprocessing run (see :func:`plan`). Byte counts are exact for ``none``.

    ``asked_patch_size`` is the patch asked for when it was larger than the micrographs and
    the plan took the one ``fit`` chooses instead (``config.patch_size``), else ``None``.
    """

    n_micrographs: int
    shape: tuple[int, int]
    config: PrepareConfig
    grid: dict[str, tuple[int, int]]
    uncovered: dict[str, tuple[int, int]]
    n_train_micrographs: int
    n_test_micrographs: int
    input_bytes: int
    ram_bytes: int
    disk_free_bytes: int | None
    cores: int
    asked_patch_size: int | None = None

    @property
    def patches_per_micrograph(self) -> int:
        """Patches per micrograph under the chosen edge policy."""
        ny, nx = self.grid[self.config.edge]
        return ny * nx

    @property
    def train_patches(self) -> int:
        return self.n_train_micrographs * self.patches_per_micrograph

    @property
    def test_patches(self) -> int:
        return self.n_test_micrographs * self.patches_per_micrograph

    def array_bytes(self, dtype: str | None = None) -> int:
        """Bytes of one array (all patches of train + test, inputs or targets), uncompressed."""
        itemsize = np.dtype(dtype or self.config.dtype).itemsize
        p = self.config.patch_size
        return (self.train_patches + self.test_patches) * p * p * itemsize

    def store_bytes(self, dtype: str | None = None, mode: str | None = None) -> int:
        """Bytes of the whole store (inputs only in ``stored`` mode), after compression."""
        dtype = dtype or self.config.dtype
        mode = mode or self.config.noise.mode
        arrays = 2 if mode == "stored" else 1
        ratio = COMPRESSION_RATIO[(self.config.compression, dtype)]
        return int(arrays * self.array_bytes(dtype) / ratio)

    def seconds(self) -> float:
        """Estimated wall time on this machine (the throughput model in docs/benchmarks.md)."""
        p = self.config.patch_size
        out_pixels = (self.train_patches + self.test_patches) * p * p
        in_pixels = self.n_micrographs * self.shape[0] * self.shape[1]
        noise = self.config.noise
        ns = _CPU_NS_PER_OUTPUT_PIXEL[noise.model] if noise.mode == "stored" else 1.0
        cpu = (out_pixels * ns + in_pixels * _CPU_NS_PER_INPUT_PIXEL) * 1e-9 / self.cores
        return max(
            self.input_bytes / _READ_BYTES_PER_S,
            self.store_bytes() / _WRITE_BYTES_PER_S,
            cpu,
        )

    @property
    def fits_in_ram(self) -> bool:
        return self.store_bytes() < self.ram_bytes

    @property
    def fits_on_disk(self) -> bool | None:
        return None if self.disk_free_bytes is None else self.store_bytes() < self.disk_free_bytes

    def to_dict(self) -> dict[str, object]:
        """The plan as plain values."""
        return {
            "micrographs": self.n_micrographs,
            "shape": list(self.shape),
            "patch_size": self.config.patch_size,
            "asked_patch_size": self.asked_patch_size,
            "stride": self.config.stride,
            "edge": self.config.edge,
            "grid": {k: list(v) for k, v in self.grid.items()},
            "patches_per_micrograph": self.patches_per_micrograph,
            "train_micrographs": self.n_train_micrographs,
            "test_micrographs": self.n_test_micrographs,
            "train_patches": self.train_patches,
            "test_patches": self.test_patches,
            "store_bytes": {
                f"{dtype}/{mode}": self.store_bytes(dtype, mode)
                for dtype in ("float32", "float16")
                for mode in ("stored", "on-device")
            },
            "input_bytes": self.input_bytes,
            "fits_in_ram": self.fits_in_ram,
            "fits_on_disk": self.fits_on_disk,
            "estimated_seconds": self.seconds(),
        }

    def table(self) -> str:
        """A human-readable table of the plan."""
        c = self.config
        ny, nx = self.shape
        lines = [
            f"{self.n_micrographs} micrograph{'s' * (self.n_micrographs != 1)} of {ny} × {nx} px "
            f"({format_bytes(self.input_bytes)} to read), patch {c.patch_size}, stride {c.stride}",
            *self._patch_note(),
            "",
            "edge policy   grid (rows × cols)   patches/micrograph   pixels never seen",
        ]
        for edge in ("drop", "cover"):
            gy, gx = self.grid[edge]
            uy, ux = self.uncovered[edge]
            mark = "*" if edge == c.edge else " "
            lines.append(
                f"{mark}{edge:<12} {gy:>4} × {gx:<4}           {gy * gx:>8}"
                f"             {uy} rows, {ux} columns"
            )
        lines += [
            "",
            f"split by micrograph: {self.n_train_micrographs} train ({_patches(self.train_patches)}"
            f"), {self.n_test_micrographs} test ({_patches(self.test_patches)})",
            *self._split_note(),
            "",
            f"store size (compression {c.compression})    stored noise   on-device noise",
        ]
        for dtype in ("float32", "float16"):
            mark = "*" if dtype == c.dtype else " "
            lines.append(
                f"{mark}{dtype:<28} {format_bytes(self.store_bytes(dtype, 'stored')):>12}"
                f"   {format_bytes(self.store_bytes(dtype, 'on-device')):>12}"
            )
        size = self.store_bytes()
        disk = (
            "not checked (give -o/--output, the store's place, to check its free space; "
            "Python: output=)"
            if self.disk_free_bytes is None
            else f"{format_bytes(self.disk_free_bytes)} free: "
            + ("fits" if self.fits_on_disk else "TOO SMALL")
        )
        lines += [
            "",
            f"chosen ({c.dtype}, {c.noise.mode} noise): {format_bytes(size)}, "
            + (f"within this machine's {format_bytes(self.ram_bytes)} of RAM" if self.fits_in_ram
               else f"more than this machine's {format_bytes(self.ram_bytes)} of RAM: training streams it "
                    "from disk"),
            f"disk at the output: {disk}",
            f"estimated time on {self.cores} cores: {format_duration(self.seconds())}",
        ]
        return "\n".join(lines)

    def _split_note(self) -> list[str]:
        """What a split too small to train on or to evaluate means (a line each), or nothing."""
        notes = []
        if self.test_patches == 0:
            notes.append("  no test split: training reports no test PSNR (more micrographs, or "
                         "--test-fraction, set one aside)")
        if 0 < self.train_patches < 50:
            notes.append(f"  only {_patches(self.train_patches)} to train on: a network "
                         "learns so few by heart; a smaller --patch or more micrographs give "
                         "more")
        return notes

    def _patch_note(self) -> list[str]:
        """Why the patch is not the one asked for (a line), or nothing."""
        if self.asked_patch_size is None:
            return []
        c = self.config
        flags = f"--patch {c.patch_size}" + (f" --stride {c.stride}" if 2 * c.stride != c.patch_size
                                              else "")
        return [f"(patch {self.asked_patch_size} is larger than the micrographs: planned with "
                f"{c.patch_size}, the patch cryostream fit chooses for them; prepare them with "
                f"{flags}; Python: PrepareConfig(patch_size={c.patch_size}, stride={c.stride}))"]


def plan(
    inputs: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
    *,
    shape: tuple[int, int] | None = None,
    count: int | None = None,
    config: PrepareConfig | None = None,
    output: str | os.PathLike | None = None,
    permissive: bool = False,
) -> Plan:
    """Plan a preprocessing run from real inputs or from a shape and a count.

    Parameters
    ----------
    inputs : paths, globs, folders or a STAR file, optional
        Micrographs to plan for; their headers are read (no pixels).
    shape : (int, int), optional
        (rows, columns) of hypothetical micrographs, with ``count``, when there are no inputs.
    count : int, optional
        Number of hypothetical micrographs.
    config : PrepareConfig, optional
        Preprocessing options (defaults otherwise).
    output : path-like, optional
        Where the store would go, to check the free disk space there.
    permissive : bool
        Skip bad input files as :func:`cryostream.open_micrographs` does.

    Returns
    -------
    Plan

    Examples
    --------
    >>> p = plan(shape=(7676, 7420), count=196)
    >>> p.grid["drop"], p.grid["cover"]
    ((13, 13), (14, 14))
    """
    check_config("config", config, PrepareConfig)
    config = config or PrepareConfig()
    check_patch_size(config, MODEL_MULTIPLE)  # as prepare refuses it
    asked = None
    if inputs is not None:
        if shape is not None or count is not None:
            raise ConfigError("give either inputs or shape and count, not both")
        headers, _ = read_headers(expand_inputs(inputs, permissive=permissive),
                                  permissive=permissive)
        warn_if_denoised(headers)
        shape = headers[0].shape
        names = micrograph_names(headers)
        n_test = split_micrographs(names, config.test_fraction, config.seed).count("test")
        input_bytes = sum(h.data_bytes for h in headers)
        n = len(headers)
    else:
        if shape is None or count is None:
            raise ConfigError("give inputs, or both shape (--shape H W) and count (--count N)")
        if not isinstance(count, int) or count < 1:
            raise ConfigError(f"count={count!r}: must be an integer ≥ 1")
        shape = (int(shape[0]), int(shape[1]))
        n = count
        n_test = held_out_count(n, config.test_fraction)
        input_bytes = n * shape[0] * shape[1] * 4
    if config.patch_size > min(shape):  # the patch fit would take, or why there is none
        asked, patch = config.patch_size, patch_to_fit(shape, config.patch_size, MODEL_MULTIPLE)
        config = dataclasses.replace(config, patch_size=patch,
                                     stride=max(1, config.stride * patch // config.patch_size))
    p, s = config.patch_size, config.stride
    grid = {e: patch_grid_shape(shape, p, s, e) for e in ("drop", "cover")}
    uncovered = {
        e: (uncovered_pixels(shape[0], p, s, e), uncovered_pixels(shape[1], p, s, e))
        for e in ("drop", "cover")
    }
    disk_free = None
    if output is not None:
        where = Path(output).resolve()
        while not where.exists():
            where = where.parent
        disk_free = shutil.disk_usage(where).free
    return Plan(
        n_micrographs=n,
        shape=shape,
        config=config,
        grid=grid,
        uncovered=uncovered,
        n_train_micrographs=n - n_test,
        n_test_micrographs=n_test,
        input_bytes=input_bytes,
        ram_bytes=psutil.virtual_memory().total,
        disk_free_bytes=disk_free,
        cores=os.cpu_count() or 1,
        asked_patch_size=asked,
    )


def _patches(n: int) -> str:
    return f"{n} patch{'es' * (n != 1)}"
