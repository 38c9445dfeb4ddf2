"""Memory for the network's calls, so that a GPU or a laptop with less memory runs the same
recipe in smaller pieces instead of running out of it.

One call of the compiled network on a batch of windows takes the memory XLA plans for it: its
temporary buffers (the activations), its inputs and outputs and the parameters, about 620
bytes a window pixel for the ``unet`` in float32 as the CPU's compiler plans it
(``memory_analysis``: 11.7 GB for one 4352² window, a GPU's largest; 1.3 GB for a 1472²
window, a CPU's). The micrographs in flight each send their calls, so several can hold their
memory at once.

:func:`network_memory` is what the calls of this process may take together: on a GPU a share
of the device memory JAX holds (its ``bytes_limit``: 75 % of the card, or what
``XLA_PYTHON_CLIENT_MEM_FRACTION`` sets); on a CPU a quarter of the host's memory (or of its
container's or batch job's), as the micrographs' steps take their own.
``CRYOSTREAM_NETWORK_MEMORY_GB`` sets it (a GPU shared with another job, or with other
processes of a cluster). It depends on the machine, not on the moment, so a micrograph is cut
into the same windows every time it is denoised there.

:func:`fit_layout` fits a window layout to it: fewer windows per call, then smaller windows
(a tile left to ``denoise``), until one call fits; a note says so. :data:`CALLS` then starts a
call only while those under way leave it room, first come first served (one call always may
start).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading

from cryostream.errors import ConfigError, DeviceMemoryError

__all__ = ["ENV", "GPU_SHARE", "HOST_SHARE", "network_memory", "call_bytes", "clear_plans",
           "fit_layout", "memory_size", "sizes_apart", "exhausted", "less_memory", "out_of_memory",
           "CallBudget", "CALLS"]

#: The environment variable that sets the memory the network's calls may take together (GB).
ENV = "CRYOSTREAM_NETWORK_MEMORY_GB"
#: The share of the device memory JAX holds that the calls may take (the rest: the model's
#: parameters, the outputs on their way back, the allocator's slack).
GPU_SHARE = 0.8
#: The share of the host's memory the calls may take on a CPU.
HOST_SHARE = 0.25


def _host_memory() -> int:
    """The host's memory, or its memory cgroup's limit (a container's or a batch job's) where
    that is less."""
    from cryostream.host import cgroup_memory

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    found = cgroup_memory()
    return total if found is None else min(total, found[0])


def memory_size(n: float, digits: int = 0) -> str:
    """``n`` bytes as the memory notes say them: GB to a tenth, MB whole, kB under 1 MB;
    ``digits`` more decimals where two figures must not read the same (:func:`sizes_apart`)."""
    return f"{n / 1e9:.{1 + digits}f} GB" if n >= 1e9 else f"{n / 1e6:.{digits}f} MB" \
        if n >= 1e6 else f"{n / 1e3:.{digits}f} kB"


def sizes_apart(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` bytes as :func:`memory_size` says them, with as many more decimals
    (up to 3) as it takes for two different figures not to read the same.

    >>> sizes_apart(1.04e9, 1.0e9), sizes_apart(5.08e8, 1.0e9)
    (('1.04 GB', '1.00 GB'), ('508 MB', '1.0 GB'))
    """
    digits = 0
    while memory_size(a, digits) == memory_size(b, digits) and a != b and digits < 3:
        digits += 1
    return memory_size(a, digits), memory_size(b, digits)


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

    return _machine_memory(jax.default_backend())


@functools.lru_cache(maxsize=4)
def _machine_memory(backend: str) -> tuple[int | None, str]:
    """:func:`network_memory` without the setting: the machine's, read once per process (each
    network pass asks)."""
    import jax

    if backend == "cpu":
        return int(_host_memory() * HOST_SHARE), "a quarter of this machine's memory"
    stats = jax.devices()[0].memory_stats() or {}
    limit = stats.get("bytes_limit")
    if not limit:
        return None, "the device does not say"
    return int(limit * GPU_SHARE), f"{GPU_SHARE:.0%} of the {limit / 1e9:.1f} GB JAX holds " \
        "on the GPU"


def call_bytes(run: str, precision: str, batch: int, side: int) -> int | None:
    """Bytes one call of the network of ``run`` (computing in ``precision``) takes for
    ``batch`` windows of ``side``²: XLA's plan for the compiled program (its temporary
    buffers, inputs and outputs); None where the backend does not say, or the compile failed
    (tried again next time). The program compiled here is the one the calls run (JAX keeps
    it)."""
    import jax

    try:
        return _planned(run, precision, batch, side)
    except (NotImplementedError, jax.errors.JaxRuntimeError) as exc:
        logging.getLogger("cryostream").debug("no memory plan for %d windows of %d²: %s",
                                              batch, side, exc)
        return None


@functools.lru_cache(maxsize=32)
def _planned(run: str, precision: str, batch: int, side: int) -> int | None:
    import jax
    import jax.numpy as jnp

    from cryostream.denoise.network import load_network

    network = load_network(run, precision)
    windows = jax.ShapeDtypeStruct((batch, side, side, 1), jnp.float32)
    plan = network.apply.lower(network.params, windows).compile().memory_analysis()
    if plan is None:
        return None
    return int(plan.temp_size_in_bytes + plan.argument_size_in_bytes
               + plan.output_size_in_bytes)


def clear_plans() -> None:
    """Forget the plans :func:`call_bytes` made (a model read again)."""
    _planned.cache_clear()


def _more_memory(limit: int, source: str, wanted: float) -> str:
    """How to give the network more memory (``wanted`` bytes at least), for an error."""
    value = max(2 * limit, 1.1 * wanted) / 1e9
    return (f"{memory_size(limit)} is there for it ({source}); if this machine (or its GPU) has more "
            f"free memory, set the environment variable {ENV} higher (e.g. {ENV}={value:.2g} "
            "cryostream denoise ...), or denoise on a machine with more memory")


def fit_layout(run: str, precision: str, tile: int, halo: int, batch: int, *,
               memory: tuple[int | None, str], tile_given: bool, choose_tile, batch_for,
               multiple: int) -> tuple[int, int, int | None]:
    """``(tile, batch, bytes per call)``: the layout given, or one with fewer windows per
    call, then smaller windows, so that one call fits in ``memory`` (:func:`network_memory`:
    bytes and where the figure comes from), each step measured (:func:`call_bytes`).
    ``choose_tile(max_window)`` picks the tile for windows of at most that side
    (:func:`~cryostream.denoise.tiling.auto_tile`; a ConfigError where none is left);
    ``batch_for(tile, batch)`` the windows per call for a tile; tiles are multiples of
    ``multiple``. A tile given (``tile_given``) that cannot fit, or memory that holds no
    window at all, is a :class:`~cryostream.errors.ConfigError`. Bytes per call are None
    where unknown."""
    limit, source = memory
    if limit is None:  # nothing to fit to: no plan needed
        return tile, batch, None
    side = tile + 2 * halo
    need = call_bytes(run, precision, batch, side)
    if need is None or need <= limit:
        return tile, batch, need
    before = (side, batch, need, side**2 / tile**2)
    while need is not None and need > limit and batch > 1:  # fewer windows per call
        batch = max(1, min(batch - 1, int(limit // (need / batch))))
        need = call_bytes(run, precision, batch, side)
    if need is not None and need > limit and tile_given:
        largest = int((math.sqrt(limit / (need / side**2)) - 2 * halo) // multiple * multiple)
        while largest >= max(halo, multiple) and (call_bytes(
                run, precision, 1, largest + 2 * halo) or 0) > limit:  # measured, not scaled
            largest -= multiple
        fix = (f"pass --tile {largest} or less (Python: the DenoiseConfig's tile), or leave it "
               "out to have one chosen" if largest >= max(halo, multiple) else "")
        raise ConfigError(f"tile={tile} (--tile): one window of {side}² (the tile and "
                          f"{halo} px of context on every side) takes {memory_size(need)} in the "
                          f"network and {_more_memory(limit, source, need)}"
                          + (f"; or {fix}" if fix else ""))
    while need is not None and need > limit:  # smaller windows
        window = min(side - multiple, int(math.sqrt(limit / (need / side**2))))
        try:
            tile = choose_tile(window)
        except ConfigError:
            raise ConfigError(
                f"the memory there is for the network holds no window this model can take "
                f"(with its {halo}-px context on every side, at least about {3 * halo}², "
                f"{memory_size(need / side**2 * (3 * halo) ** 2)}): "
                f"{_more_memory(limit, source, need / side**2 * (3 * halo) ** 2)}") from None
        side, batch = tile + 2 * halo, batch_for(tile, 1)
        need = call_bytes(run, precision, batch, side)
    work = side**2 / tile**2 / before[3]  # pixels through the network per pixel kept
    logging.getLogger("cryostream").info(
        "windows of %d² pixels, %d per network call (%s each) to fit the %s there is for the "
        "network (%s), not %d of %d² (%s)%s", side, batch,
        memory_size(need) if need else "size unknown", memory_size(limit), source,
        before[1], before[0], memory_size(before[2]),
        f"; smaller windows repeat more context: about {work:.2g} times the network's work "
        "of the larger ones"
        if work > 1.05 else "")
    return tile, batch, need


def exhausted(error: BaseException) -> tuple[str, str, str] | None:
    """For XLA's ``RESOURCE_EXHAUSTED``: the backend ("GPU"), the error's first line and what
    may also hold the memory there (the start of a message's fix); None for any other
    error."""
    import jax

    if not isinstance(error, jax.errors.JaxRuntimeError) or "RESOURCE_EXHAUSTED" not in str(
            error):
        return None
    where = jax.default_backend().upper()
    return (where, str(error).strip().splitlines()[0][:200],
            "another program may hold GPU memory (nvidia-smi lists them); " if where != "CPU"
            else "other programs may hold the memory; ")


def less_memory(limit: int | None, command: str = "") -> str:
    """An example of a lower :data:`ENV` for a message, from the ``limit`` in use."""
    return (f"e.g. {ENV}={limit / 2e9:.2g}{command} (it has {memory_size(limit)} now)" if limit
            else "e.g. half the device's memory in GB")


def out_of_memory(error: BaseException, side: int, batch: int, need: int | None,
                  limit: int | None) -> DeviceMemoryError | None:
    """A :class:`~cryostream.errors.DeviceMemoryError` for XLA's ``RESOURCE_EXHAUSTED`` in a
    call on ``batch`` windows of ``side``² (``need`` bytes each, ``limit`` for the calls
    together), saying what to change; None for any other error."""
    found = exhausted(error)
    if found is None:
        return None
    where, xla, other = found
    each = f", {memory_size(need)} each" if need else ""
    return DeviceMemoryError(
        f"the network ran out of memory on the {where} with windows of {side}² pixels, {batch} "
        f"per call{each} ({xla}): {other}give the network less with the environment variable {ENV}, "
        f"{less_memory(limit, ' cryostream denoise ...')}; or denoise fewer micrographs at once "
        "(--workers 1 (Python: workers=1)); finished outputs are kept and a rerun resumes")


class CallBudget:
    """Bytes of network calls under way in this process: a call starts while those under way
    and it fit in a limit, or when none is under way; calls that wait start in the order they
    came (a large one is not passed over by small ones for ever). Each thread's bytes are
    kept apart (:meth:`holding`), so that a thread can give back all it took since a point
    whatever stopped it there (Ctrl-C between two calls included)."""

    def __init__(self) -> None:
        self._done = threading.Condition()
        self._queue: list = []
        self._held: dict[int, int] = {}  # bytes by thread: one store takes or gives them

    @property
    def used(self) -> int:
        """The bytes of all calls under way."""
        with self._done:
            return sum(self._held.values())

    def holding(self) -> int:
        """The bytes the calling thread holds."""
        with self._done:
            return self._held.get(threading.get_ident(), 0)

    def _add(self, need: int) -> None:  # under the lock
        me = threading.get_ident()
        held = self._held.get(me, 0) + need
        if held:
            self._held[me] = held
        else:
            self._held.pop(me, None)

    def take(self, need: int, limit: int, *, wait: bool = True) -> bool:
        """Hold ``need`` bytes once they fit under ``limit`` (or nothing else is held) and no
        call that came earlier is waiting; without ``wait``, False at once where they cannot
        be held now (a thread that holds a call must not wait: it lets one go first). Nothing
        (0 bytes) is always taken at once."""
        if not need:
            return True
        with self._done:
            used = sum(self._held.values())
            if not self._queue and (not used or used + need <= limit):
                self._add(need)
                return True
            if not wait:
                return False
            me = object()
            self._queue.append(me)
            try:
                while self._queue[0] is not me or (
                        (used := sum(self._held.values())) and used + need > limit):
                    self._done.wait()
            finally:
                self._queue.remove(me)
                self._done.notify_all()
            self._add(need)
            return True

    def give(self, need: int) -> None:
        """Let go of ``need`` bytes taken with :meth:`take` by this thread."""
        if not need:
            return
        with self._done:
            self._add(-need)
            self._done.notify_all()


#: The calls of this process (its threads share the device).
CALLS = CallBudget()


def _after_fork() -> None:  # a forked child holds none of its parent's calls
    global CALLS
    CALLS = CallBudget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
