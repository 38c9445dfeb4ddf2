"""The micrographs of one ``denoise`` call, run in a thread pool here or on a Dask cluster:
their results in order, every bad micrograph named at the end (the others are denoised), an
error every micrograph would meet (the device's memory, a setting) or Ctrl-C stopping the run
as it comes."""

from __future__ import annotations

import logging

from cryostream.errors import (
    ConfigError,
    DeviceMemoryError,
    InvalidMicrographError,
    OutputTakenError,
    one_error,
)

__all__ = ["finish", "gather_cluster"]


def finish(pool, job, todo, total: int, on_stop=None) -> list:
    """``job`` over ``todo`` in ``pool`` (:func:`_gather`). On Ctrl-C or an error every
    micrograph would meet (memory, a setting) those not started are dropped and those in
    progress finish (their outputs whole); after Ctrl-C (``on_stop`` called first), if every
    one had finished, the run completes (its STAR file is written), else the interrupt goes
    on."""
    import concurrent.futures

    futures = [pool.submit(job, item) for item in todo]
    warned: set = set()
    try:
        _stop_on_first(concurrent.futures.as_completed(futures), len(futures) > 1, warned)
        return _gather(futures, total)
    except (DeviceMemoryError, ConfigError):  # every micrograph would fail so: none more starts
        for f in futures:
            f.cancel()
        raise
    except KeyboardInterrupt:
        if on_stop is not None:
            on_stop()
        for f in futures:
            f.cancel()
        concurrent.futures.wait(futures)
        _stop_on_first([f for f in futures if not f.cancelled()], len(futures) > 1, warned)
        if any(f.cancelled() for f in futures):
            raise
        return _gather(futures, total)  # all done: the run completes, or names its bad ones


def gather_cluster(client, futures, total: int, names: list[str] | None = None) -> list:
    """:func:`_gather` for a Dask cluster's futures; an error every micrograph would meet
    (memory, a setting) drops those not started as soon as it comes, as :func:`finish`. The
    futures' results are :func:`cryostream.cluster.on_workers`'s: each one's warnings are
    shown as it is done, and with ``names`` (each future's micrograph) a note."""
    from distributed import as_completed

    from cryostream.cluster import forwarded

    named = dict(zip(futures, names or (), strict=False))

    def noted(completed):  # the worker's warnings and a note as each is done, as here
        for done, future in enumerate(completed, 1):
            if future.status == "finished" and forwarded(future.result()) is not None \
                    and future in named:  # (None: skipped, with its warning)
                logging.getLogger("cryostream").info(
                    "denoised %d/%d on the cluster: %s", done + total - len(futures),
                    total, named[future])
            yield future

    try:
        _stop_on_first(noted(as_completed(futures)), len(futures) > 1, set())
    except (DeviceMemoryError, ConfigError):
        client.cancel(futures)
        raise
    return [forwarded(r, show=False) for r in _gather(futures, total)]


def _stop_on_first(completed, warn: bool, warned: set) -> None:
    """Raise the first error every micrograph would meet (memory, a setting) among the futures
    as they complete, not in their order (one late in the list stops the run at once); with
    ``warn``, a warning for each micrograph that fails its checks as it does (each once:
    ``warned`` holds those said)."""
    for future in completed:
        error = future.exception()
        if isinstance(error, DeviceMemoryError | ConfigError):
            raise error
        if warn and isinstance(error, InvalidMicrographError) and id(future) not in warned:
            warned.add(id(future))
            logging.getLogger("cryostream").warning(
                "%s: not denoised: %s; going on with the others", error.path, error.problem)


def _gather(futures, total: int) -> list:
    """The futures' results in order. A micrograph that fails its checks does not stop the
    others: each is denoised, then one error names every failed micrograph and its problem
    (the STAR file, written last, is not; a rerun keeps the finished outputs)."""
    results, failed = [], []
    for future in futures:
        try:
            results.append(future.result())
        except InvalidMicrographError as exc:
            failed.append(exc)
            results.append(None)
    if failed:  # one micrograph alone: its own error
        taken = all(isinstance(e, OutputTakenError) for e in failed)  # made meanwhile elsewhere
        raise one_error(failed, total, "not written: their outputs were made meanwhile by another "
                        "call (--overwrite replaces them, or choose another -o); the others are "
                        "denoised" if taken else "not denoised: repair or exclude them "
                        "(--permissive (Python: permissive=True) skips them); the others are "
                        "denoised, and a rerun keeps them", single=len(futures) == 1,
                        kind=OutputTakenError if taken else InvalidMicrographError)
    return results
