"""Memory for the network's calls, so that a GPU or a laptop with less memory runs the same
recipe in smaller pieces instead of running out of it.

One call of the compiled network on a batch of windows takes the memory XLA plans for it: its
temporary buffers (the activations), its inputs and its outputs, about 610 bytes a window
pixel for the ``unet`` in float32 (XLA's ``memory_analysis``: 11.5 GB for one 4352² window,
a GPU's largest; 1.3 GB for a 1472² window, a CPU's). The micrographs in flight each send
their calls, so several can hold their memory at once.

:func:`network_memory` is what the calls may take together: on a GPU a share of the device
memory JAX holds (its ``bytes_limit``: 75 % of the card, or what
``XLA_PYTHON_CLIENT_MEM_FRACTION`` sets); on a CPU a quarter of the host's memory (or of its
container's), as the micrographs' steps take their own. ``CRYOSTREAM_NETWORK_MEMORY_GB`` sets
it (a GPU shared with another job). It depends on the machine, not on the moment, so a
micrograph is cut into the same windows every time it is denoised there.

:func:`fit_layout` fits a window layout to it: fewer windows per call, then smaller windows
(a tile left to ``denoise``), until one call fits; a note says so. :data:`CALLS` then starts a
call only while those under way leave it room (one call always may start).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading

from cryostream.errors import ConfigError, DeviceMemoryError

__all__ = ["ENV", "GPU_SHARE", "HOST_SHARE", "network_memory", "call_bytes", "fit_layout",
           "out_of_memory", "CallBudget", "CALLS"]

#: The environment variable that sets the memory the network's calls may take together (GB).
ENV = "CRYOSTREAM_NETWORK_MEMORY_GB"
#: The share of the device memory JAX holds that the calls may take (the rest: the model's
#: parameters, the outputs on their way back, the allocator's slack).
GPU_SHARE = 0.8
#: The share of the host's memory the calls may take on a CPU.
HOST_SHARE = 0.25


def _host_memory() -> int:
    """The host's memory, or its container's limit where that is less (cgroup v2 or v1)."""
    from pathlib import Path

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for name in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = Path(name).read_text().strip()
        except OSError:
            continue
        if limit.isdigit() and int(limit) < total:
            return int(limit)
    return total


def network_memory() -> tuple[int | None, str]:
    """Bytes the network's calls may take together, and where the figure comes from (for
    notes): ``CRYOSTREAM_NETWORK_MEMORY_GB`` where set; on a GPU :data:`GPU_SHARE` of the
    device memory JAX holds (None where the device does not say); on a CPU :data:`HOST_SHARE`
    of the host's memory."""
    given = os.environ.get(ENV, "").strip()
    if given:
        try:
            value = float(given)
        except ValueError:
            value = -1.0
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{ENV}={given!r}: must be a number of GB > 0 (the memory the "
                              "network's calls may take together), or unset for the default")
        return int(value * 1e9), f"{ENV}={given}"
    import jax

    if jax.default_backend() == "cpu":
        return int(_host_memory() * HOST_SHARE), "a quarter of this machine's memory"
    stats = jax.devices()[0].memory_stats() or {}
    limit = stats.get("bytes_limit")
    if not limit:
        return None, "the device does not say"
    return int(limit * GPU_SHARE), f"{GPU_SHARE:.0%} of the {limit / 1e9:.1f} GB JAX holds " \
        "on the GPU"


@functools.lru_cache(maxsize=32)
def call_bytes(run: str, precision: str, batch: int, side: int) -> int | None:
    """Bytes one call of the network of ``run`` (computing in ``precision``) takes for
    ``batch`` windows of ``side``²: XLA's plan for the compiled program (its temporary
    buffers, inputs and outputs); None where the backend does not say. The program compiled
    here is the one the calls run (JAX keeps it)."""
    import jax
    import jax.numpy as jnp

    from cryostream.denoise.network import load_network

    network = load_network(run, precision)
    windows = jax.ShapeDtypeStruct((batch, side, side, 1), jnp.float32)
    try:
        plan = network.apply.lower(network.params, windows).compile().memory_analysis()
    except (NotImplementedError, jax.errors.JaxRuntimeError):
        return None
    if plan is None:
        return None
    return int(plan.temp_size_in_bytes + plan.argument_size_in_bytes
               + plan.output_size_in_bytes)


def fit_layout(run: str, precision: str, tile: int, halo: int, batch: int, *,
               memory: tuple[int | None, str], tile_given: bool, choose_tile,
               batch_for) -> tuple[int, int, int | None]:
    """``(tile, batch, bytes per call)``: the layout given, or one with fewer windows per
    call, then smaller windows, so that one call fits in ``memory`` (:func:`network_memory`:
    bytes and where the figure comes from). ``choose_tile(max_window)`` picks the tile for
    windows of at most that side (:func:`~cryostream.denoise.tiling.auto_tile`);
    ``batch_for(tile, batch)`` the windows per call for a tile. A tile given (``tile_given``)
    that cannot fit is a :class:`~cryostream.errors.ConfigError`. Bytes per call are None
    where unknown."""
    limit, source = memory
    side = tile + 2 * halo
    need = call_bytes(run, precision, batch, side)
    if limit is None or need is None or need <= limit:
        return tile, batch, need
    per_pixel = need / (batch * side**2)
    before = (side, batch, need)
    fits = int(limit // (per_pixel * side**2))
    if fits >= 1:
        batch = fits
    elif tile_given:
        raise ConfigError(
            f"tile={tile}: one window of {side}² takes {per_pixel * side**2 / 1e9:.1f} GB in "
            f"the network and {limit / 1e9:.1f} GB is there for it ({source}); pass a smaller "
            "--tile (Python: the DenoiseConfig's tile) or leave it out to have one chosen")
    else:
        tile = choose_tile(int(math.sqrt(limit / per_pixel)))
        side, batch = tile + 2 * halo, batch_for(tile, 1)
    need = call_bytes(run, precision, batch, side)
    logging.getLogger("cryostream").info(
        "windows of %d² pixels, %d per network call (%.1f GB each) to fit the %.1f GB there is "
        "for the network (%s), not %d of %d² (%.1f GB)", side, batch, (need or 0) / 1e9,
        limit / 1e9, source, before[1], before[0], before[2] / 1e9)
    return tile, batch, need


def out_of_memory(error: BaseException, side: int, batch: int, need: int | None,
                  limit: int | None) -> DeviceMemoryError | None:
    """A :class:`~cryostream.errors.DeviceMemoryError` for XLA's ``RESOURCE_EXHAUSTED`` in a
    call on ``batch`` windows of ``side``² (``need`` bytes each, ``limit`` for the calls
    together), saying what to change; None for any other error."""
    import jax

    if not isinstance(error, jax.errors.JaxRuntimeError) or "RESOURCE_EXHAUSTED" not in str(
            error):
        return None
    xla = str(error).strip().splitlines()[0][:200]
    each = f", {need / 1e9:.1f} GB each" if need else ""
    below = f" below {limit / 1e9:.1f}" if limit else ""
    return DeviceMemoryError(
        f"the network ran out of memory on the {jax.default_backend().upper()} with windows of "
        f"{side}² pixels, {batch} per call{each} ({xla}); set {ENV}{below} (the GB the "
        "network's calls may take together: the windows and the calls at once are fitted to "
        "it), or denoise fewer micrographs at once (--workers 1); finished outputs are kept "
        "and a rerun resumes")


class CallBudget:
    """Bytes of network calls under way in this process: a call starts while those under way
    and it fit in a limit, or when none is under way."""

    def __init__(self) -> None:
        self._done = threading.Condition()
        self.used = 0

    def take(self, need: int, limit: int, *, wait: bool = True) -> bool:
        """Hold ``need`` bytes once they fit under ``limit`` (or nothing else is held);
        without ``wait``, False at once where they do not fit now. Nothing (0 bytes) is always
        taken at once."""
        if not need:
            return True
        with self._done:
            while self.used and self.used + need > limit:
                if not wait:
                    return False
                self._done.wait()
            self.used += need
            return True

    def give(self, need: int) -> None:
        """Let go of ``need`` bytes taken with :meth:`take`."""
        if not need:
            return
        with self._done:
            self.used -= need
            self._done.notify_all()


#: The calls of this process (its threads share the device).
CALLS = CallBudget()


def _after_fork() -> None:  # a forked child holds none of its parent's calls
    global CALLS
    CALLS = CallBudget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
