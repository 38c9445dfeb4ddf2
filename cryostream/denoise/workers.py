"""How many micrographs :func:`~cryostream.denoise.denoise` keeps in flight when ``workers``
is not given: the cores and the host memory decide.

On a GPU the network's passes take a second or so per full-size micrograph and the steps after
it (the CTF fit and its check, the gain, the learned weights) tens of seconds on the CPU, so
the CPU's cores are what limits: with the default recipe on a 16-core host, eight micrographs
in flight finished 2.2 times as many per second as two (``docs/benchmarks.md``). On a CPU the
network's passes already take every core, and two in flight only overlap reading and writing.
Each micrograph in flight holds its steps' arrays: 5.2 GB at the peak for a 7676 × 7420
micrograph on two cores (``benchmarks/profile_default_steps.py``), about 91 bytes a pixel.
"""

from __future__ import annotations

import logging
import os

__all__ = ["default_workers", "BYTES_PER_PIXEL", "MAX_IN_FLIGHT"]

#: Host memory a micrograph in flight may take, per pixel: the steps' measured peak (91 bytes
#: a pixel) and the network's outputs it holds meanwhile (the ensemble's and the binned pass's).
BYTES_PER_PIXEL = 110
#: The most micrographs in flight chosen for a GPU (measured up to eight).
MAX_IN_FLIGHT = 8


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_workers(pixels: int, backend: str, *, available_bytes: int | None = None,
                    cores: int | None = None) -> int:
    """Micrographs in flight for micrographs of ``pixels`` pixels when the network runs on
    ``backend`` (``jax.default_backend()``): on a GPU half the CPU cores, at least 2 and at most
    :data:`MAX_IN_FLIGHT`; on a CPU 2; in either case no more than half the host's available
    memory (``available_bytes``, else measured) holds at :data:`BYTES_PER_PIXEL`, and at
    least 1. A note says when the memory set the number."""
    import psutil

    cores = cpu_cores() if cores is None else cores
    available = psutil.virtual_memory().available if available_bytes is None else available_bytes
    wanted = 2 if backend == "cpu" else min(MAX_IN_FLIGHT, max(2, cores // 2))
    held = max(1, int(available // 2 // max(pixels * BYTES_PER_PIXEL, 1)))
    if held < wanted:
        logging.getLogger("cryostream").info(
            "%d micrograph%s in flight, not %d: each may hold %.1f GB and %.1f GB of memory is "
            "available (--workers sets the number)", held, "" if held == 1 else "s", wanted,
            pixels * BYTES_PER_PIXEL / 1e9, available / 1e9)
    return min(wanted, held)
