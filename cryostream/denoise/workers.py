"""How many micrographs :func:`~cryostream.denoise.denoise` keeps in flight when ``workers``
is not given: the cores and the memory decide.

On a GPU the network's passes take a second or so per full-size micrograph and the steps after
it (the CTF fit and its check, the gain, the learned weights) tens of seconds on the CPU, so
the CPU's cores are what limits: with the default recipe on a 16-core host, eight micrographs
in flight finished 2.2–2.5 times as many per second as two (``docs/benchmarks.md``; the
device's peak memory did not grow with them). On a CPU the network's passes already take every
core, and two in flight only overlap reading and writing. Each micrograph in flight holds its
steps' arrays: the process peaked at 4.1 GB for the steps on a 7676 × 7420 micrograph on two
cores (``benchmarks/profile_default_steps.py``), about 72 bytes a pixel.

On a CPU, :func:`cpu_time_note` says before the ensemble runs about how long it will take
(from :func:`cpu_times`, which ``evaluate --residual`` says in its own words), after the note
that a call starts (:func:`start_note`), for files and arrays alike.
"""

from __future__ import annotations

import logging
import os
from typing import NamedTuple

from cryostream.errors import ConfigError
from cryostream.host import available_memory, cgroup_headroom, cgroup_memory, cpu_cores
from cryostream.units import spoken_duration

__all__ = ["default_workers", "available_memory", "cgroup_memory", "cgroup_headroom", "cpu_cores",
           "BYTES_PER_PIXEL", "MAX_IN_FLIGHT", "SLOW_PASS_SECONDS",
           "cpu_time_note", "cpu_times", "CpuTimes", "busy_note", "start_note"]

#: Host memory a micrograph in flight may take, per pixel: the steps' measured peak (about 72
#: bytes a pixel) and the network's outputs it holds meanwhile (the ensemble's and the binned
#: pass's), with room to spare.
BYTES_PER_PIXEL = 110
#: The most micrographs in flight chosen for a GPU (measured up to eight).
MAX_IN_FLIGHT = 8

#: A single pass on a CPU this long or longer is announced with its time (the notes of passes
#: done come only while a micrograph's several passes run longer than this).
SLOW_PASS_SECONDS = 30.0


def default_workers(pixels: int, backend: str, *, count: int | None = None,
                    available_bytes: int | None = None, cores: int | None = None) -> int:
    """Micrographs in flight for ``count`` micrographs (None: many) of up to ``pixels`` pixels
    when the network runs on ``backend`` (``jax.default_backend()``): on a GPU half the CPU
    cores, at least 2 and at most :data:`MAX_IN_FLIGHT`; on a CPU 2; never more than
    ``count``, nor than half the memory available (``available_bytes``, else
    :func:`available_memory`) holds at :data:`BYTES_PER_PIXEL`; at least 1. A note says when
    the memory set the number."""
    cores = cpu_cores() if cores is None else cores
    available = available_memory() if available_bytes is None else available_bytes
    wanted = 2 if backend == "cpu" else min(MAX_IN_FLIGHT, max(2, cores // 2))
    wanted = min(wanted, count) if count else wanted
    held = max(1, int(available // 2 // max(pixels * BYTES_PER_PIXEL, 1)))
    if held < wanted:
        logging.getLogger("cryostream").info(
            "%d micrograph%s in flight, not %d: each may hold %.1f GB and %.1f GB of memory is "
            "available (--workers sets the number)", held, "" if held == 1 else "s", wanted,
            pixels * BYTES_PER_PIXEL / 1e9, available / 1e9)
    return min(wanted, held)


class CpuTimes(NamedTuple):
    """About how long the network's passes over some micrographs take on two CPU cores
    (:func:`cpu_times`), in seconds.

    Attributes
    ----------
    shape : tuple of int
        The largest micrograph's.
    each, each_one_pass : float
        One of that shape: with the config's passes (the ensemble's 8 and, with the binned
        pass, its own), and with one pass (and its binned pass) instead.
    total, total_one_pass : float
        All of them, the same two ways.
    offsets, alone : int
        The binned passes per view with the ensemble and with one pass (0: no binned pass).
    """

    shape: tuple
    each: float
    each_one_pass: float
    total: float
    total_one_pass: float
    offsets: int
    alone: int


def cpu_times(run: str, config, shapes) -> CpuTimes | None:
    """About how long the network's passes of ``config`` (the DenoiseConfig, decided for the
    run) take on two CPU cores over micrographs of ``shapes`` (one per image to denoise, two
    for an even/odd pair), their windows at
    :data:`~cryostream.denoise.tiling.CPU_SECONDS_PER_PIXEL`. None where the windows cannot be
    laid out here (no window fits this process's memory, a tile larger than a micrograph): the
    checks before any output refuse that, or on a cluster its workers, with their own memory."""
    from collections import Counter

    from cryostream.denoise.binned import binned_shape
    from cryostream.denoise.network import model_record
    from cryostream.denoise.tiling import cpu_pass_seconds
    from cryostream.denoise.weights import binned_offsets

    offsets, alone = (binned_offsets(model_record(run), e) if config.binned_pass else 0
                      for e in (True, False))
    views = 8 if config.ensemble else 1

    def seconds(shape):  # (the config's passes; one pass and its binned pass)
        one, binned = (cpu_pass_seconds(run, s, config.tile, config.halo, config.precision,
                                        config.batch_size) for s in (shape, binned_shape(shape)))
        return (views * (one + (offsets if config.ensemble else alone) * binned),
                one + alone * binned)

    counts = Counter(tuple(s) for s in shapes)
    try:
        each = {s: seconds(s) for s in counts}
    except ConfigError:  # an estimate refuses nothing: the checks before any output do
        return None
    shape = max(counts, key=lambda s: s[0] * s[1])
    total = [sum(n * each[s][i] for s, n in counts.items()) for i in (0, 1)]
    return CpuTimes(shape, *each[shape], *total, offsets, alone)


def cpu_time_note(run: str, config, shapes) -> None:
    """A note before the ensemble runs on a CPU: about how long it takes for the largest of
    the micrographs of ``shapes`` (:func:`cpu_times`), for them all, and one pass
    (``--no-ensemble``) instead. Without the ensemble (``--raw``, ``--no-ensemble``) the
    note comes only where one micrograph takes :data:`SLOW_PASS_SECONDS` or more (a full-size
    one, minutes; on a busy machine, at the most :func:`busy_factor` says), since a single
    pass gives no note of passes done while it runs. No note where the windows cannot be
    laid out here. ``config``: the DenoiseConfig, decided for the run."""
    times = cpu_times(run, config, shapes)
    if times is None:
        return
    minutes = [spoken_duration(t) for t in times[1:5]]
    offsets, alone, busy, many = times.offsets, times.alone, busy_note(), len(shapes) > 1
    if not config.ensemble:  # one pass: no note of passes done comes while it runs
        if times.each_one_pass * busy_factor() >= SLOW_PASS_SECONDS:  # a busy machine's too
            logging.getLogger("cryostream").info(
                "one network pass per micrograph%s: about %s for one of %d × %d on 2 CPU cores "
                "(this machine has %d)%s%s; a GPU takes seconds%s",
                f" (and {'one' if alone == 1 else alone} binned by 2, the binned pass)" if alone
                else "", minutes[1], *times.shape, cpu_cores(), f", {minutes[3]} for all here"
                if many else "", "" if alone or config.calibrate else ", with no note until each "
                "is done", busy)
        return
    logging.getLogger("cryostream").info(
        "the ensemble runs the network 8 times per micrograph%s: about %s for one of %d × %d "
        "on 2 CPU cores (this machine has %d)%s; for a first look pass --no-ensemble (Python: "
        "ensemble=False in the DenoiseConfig) for one pass (about %s%s), or use a GPU%s",
        f" (and {8 * offsets} times binned by 2, the binned pass)" if offsets else "",
        minutes[0], *times.shape, cpu_cores(),
        f", {minutes[2]} for all here" if many else "", minutes[1],
        f", {minutes[3]} for all" if many else "", busy)


def start_note(run: str, config, count: int, shapes, in_flight: int | None = None,
               what: str = "") -> None:
    """The note as :func:`~cryostream.denoise.denoise` starts on ``count`` micrographs: the
    model, its steps and the backend, ``in_flight`` at once where given (``what``: words after
    the count, an array's ``" in memory"``); on a CPU, then :func:`cpu_time_note` of ``shapes``
    (one per image the network denoises: two for an even/odd pair). ``config``: the
    DenoiseConfig, decided for the run."""
    import jax

    from cryostream.denoise.network import model_name
    from cryostream.denoise.outputs import recipe_steps

    logging.getLogger("cryostream").info(
        "denoising %d micrograph%s%s with %s (%s) on the %s%s; a note as each is done", count,
        "" if count == 1 else "s", what, model_name(run),
        " + ".join(recipe_steps(config)) or "the network alone", jax.default_backend().upper(),
        f", {in_flight} in flight" if in_flight else "")
    if jax.default_backend() == "cpu":
        cpu_time_note(run, config, shapes)


def busy_note(load: float | None = None, cores: int | None = None) -> str:
    """The end of a note of :func:`cpu_times` (:func:`cpu_time_note`'s) where other work keeps
    the cores busy: a 1-minute load average ``load`` of half the ``cores`` or more (by default
    this machine's now, this process's start-up included, and the cores this process may use,
    :func:`cpu_cores`). The estimates are of idle cores; sharing them with that load takes
    longer, up to about ``1 + load / cores`` as long while it goes on (each of the load's
    processes and this one's taking turns on the cores). Measured on two cores (three 1024²
    micrographs, 4 minutes estimated): 1.2× as long at a load of 1.0, 1.7× at 2.6, 2.4× at 5.2
    that fell to 4.4 meanwhile; the load changes while the micrographs run, so the bound is
    said, not a time. "" on an idle machine, or where there is
    no load average (not Linux or macOS)."""
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average on this platform
            return ""
    cores = cpu_cores() if cores is None else cores
    if busy_factor(load, cores) == 1.0:
        return ""
    return (f"; other work keeps this machine busy (load average {load:.1f} on the {cores} "
            f"core{'s' * (cores != 1)} this process may use) and these times are of idle cores: "
            f"expect longer, up to about {1 + load / cores:.1f}× as long while it goes on")


def busy_factor(load: float | None = None, cores: int | None = None) -> float:
    """At most how many times as long as :func:`cpu_times` says the micrographs take while
    other work keeps the cores busy (:func:`busy_note`): ``1 + load / cores`` at a load of half
    the cores or more, else 1 (an idle machine, or no load average on this platform)."""
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            return 1.0
    cores = cpu_cores() if cores is None else cores
    return 1.0 if load < cores / 2 else 1 + load / cores
