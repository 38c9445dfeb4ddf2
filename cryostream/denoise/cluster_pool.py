"""The micrographs of one ``denoise`` call on a Dask cluster (:func:`gather_cluster`): each
run on a worker with what its note here needs (:class:`Finished`), noted as it comes back, and
on a stop those not started dropped and those under way waited for (:func:`let_go`), as
:func:`~cryostream.denoise.pool.finish` does in a thread pool here."""

from __future__ import annotations

import logging
from typing import NamedTuple

from cryostream.denoise.pool import gather, in_a_script, stop_on_first
from cryostream.errors import ConfigError, DeviceMemoryError

__all__ = ["Finished", "timed", "gather_cluster", "left_to_the_workers", "let_go",
           "CLUSTER_STOPPING"]

#: What a script is told at its first Ctrl-C while micrographs are under way on the workers of
#: a scheduler it gave (an address, a Client or a cluster object), as
#: :data:`~cryostream.denoise.pool.SCRIPT_STOPPING` in a thread pool here (the command line says
#: it in its own words: cryostream.cli.kept).
CLUSTER_STOPPING = ("interrupted: stopping after the micrographs under way on the cluster's "
                    "workers (each is written whole or not at all; none more starts); Ctrl-C "
                    "again to stop waiting for them (the workers write them all the same)")


class Finished(NamedTuple):
    """A micrograph denoised on a cluster's worker: its result, and for its note here the file
    the note names (its output), its seconds on the worker and what the steps found
    (``{"skipped": why}``: skipped)."""

    result: object
    name: str
    seconds: float
    found: dict | None


class _Timing:
    """In place of a :class:`~cryostream.denoise.micrograph.Progress` on a worker: keeps the
    note the micrograph is given, for :class:`Finished`."""

    noted: tuple = ("", 0.0, None)

    def begin(self, key: str) -> None:
        pass

    def failed(self, key: str) -> None:
        pass

    def note(self, source, seconds: float, found: dict | None, key: str | None = None) -> None:
        self.noted = (str(source), seconds, found)


def timed(job, item) -> Finished:
    """``job(item)`` (:func:`~cryostream.denoise.micrograph.denoise_item`) on a worker, with
    what its note needs."""
    timing = _Timing()
    result = job(item, progress=timing)
    return Finished(result, *timing.noted)


def gather_cluster(client, job, todo: list, progress, output=None) -> list:
    """``job`` over ``todo`` (``(micrograph, plan)`` items) on a Dask cluster:
    :func:`~cryostream.denoise.pool.gather` of its futures. An error every micrograph would
    meet (memory, a setting), or Ctrl-C or SIGTERM on a scheduler given by address (a
    LocalCluster's workers stop with the call), drops those not started as soon as it comes
    and waits for those under way (:func:`let_go`), as :func:`~cryostream.denoise.pool.finish`
    lets them finish: nothing of the call is written after it ends (a script is told so at
    once: :data:`CLUSTER_STOPPING`; its second Ctrl-C stops the wait, and its
    ``KeyboardInterrupt`` says that the workers may still write those into ``output``, the
    call's folder: :func:`left_to_the_workers`). As each is done its warnings (raised on the
    worker: :func:`cryostream.cluster.on_workers`) are shown here, and ``progress`` (a
    :class:`~cryostream.denoise.micrograph.Progress`) notes it with its time on the worker,
    what the steps found and about how long those left take over the cluster's threads.
    Meanwhile a first Ctrl-C's note is told how many are not done
    (:func:`~cryostream.interrupts.told_in_progress`; no pace: NaN seconds)."""
    import functools
    import math

    from distributed import as_completed

    from cryostream.cluster import forwarded, on_workers
    from cryostream.interrupts import told_in_progress

    futures = client.map(on_workers(functools.partial(timed, job)), todo)
    keys = {f.key: m.source for f, (m, _) in zip(futures, todo, strict=True)}

    def noted(completed):  # the worker's warnings and a note as each is done, as here
        for future in completed:
            if future.status == "finished":
                done = forwarded(future.result())
                progress.note(done.name, done.seconds, done.found, key=keys[future.key])
            else:
                progress.failed(keys[future.key])
            yield future

    try:
        with told_in_progress(lambda: (sum(not f.done() for f in futures), math.nan)):
            stop_on_first(noted(as_completed(futures)), len(futures) > 1, set())
    except (DeviceMemoryError, ConfigError):
        let_go(client, futures)
        raise
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM: as here, those under way finish, none starts
        if client.cluster is None:  # a scheduler's workers, not ours: they would go on after
            progress.stop()         # the call (a LocalCluster's stop with it: nothing written)
            if in_a_script() and not all(f.done() for f in futures):  # said at once
                logging.getLogger("cryostream").warning(CLUSTER_STOPPING)
            try:
                let_go(client, futures)  # (a second signal ends the command line's at once)
            except KeyboardInterrupt as again:  # a script's second Ctrl-C: one traceback,
                left_to_the_workers(again, output)  # saying the workers may still write theirs
                raise again from None
        raise
    return [None if r is None else forwarded(r, show=False).result
            for r in gather(futures, progress.total)]


def left_to_the_workers(stop: KeyboardInterrupt, output) -> None:
    """Give ``stop``, a script's second Ctrl-C while the micrographs under way on a
    scheduler's workers were waited for, the words its traceback ends with: the wait is given
    up, not those micrographs (a worker cannot stop a task's thread, and the scheduler is not
    the call's to close), so the workers may still write them into ``output``, each whole with
    its record; the same call again skips the finished ones."""
    from cryostream.denoise.outputs import STAR_NAME
    from cryostream.interrupts import say_kept

    say_kept(stop, f"the finished micrographs are kept in {output}, and the cluster's workers, "
             "which go on after this call, may still write there the micrographs they were "
             "denoising, each whole with its record", "call denoise again with the same "
             f"arguments to denoise the rest (it skips the finished ones) and write {STAR_NAME}")


def let_go(client, futures, poll_s: float = 0.2) -> None:
    """Cancel ``futures`` on ``client``'s cluster and wait until no worker holds one: those
    not started are dropped, those under way finish (a worker cannot stop a task's thread),
    their outputs whole, as :func:`~cryostream.denoise.pool.finish` lets them. Cancelling
    alone returns at once while they go on: the call's cleanup (its output folder removed if
    empty) would race their writing, which may make the folder again after the call has
    failed. Said in a note while it waits; a scheduler or worker lost meanwhile ends the wait
    (nothing more runs there)."""
    import time

    keys = [f.key for f in futures]
    client.cancel(futures)
    said, quiet = False, 0
    while quiet < 2:  # none twice in a row: a task on its way to a worker at the cancel is there
        try:
            counts = client.run(_held, keys).values()
        except Exception:  # the cluster went away: nothing of this call runs on it
            return
        held, running = (sum(c[i] for c in counts) for i in (0, 1))
        if running and not said:  # (not those done or queued there, which the cancel drops)
            said = True
            logging.getLogger("cryostream").info(
                "stopping: waiting for %d micrograph%s under way on the cluster to finish",
                running, "" if running == 1 else "s")
        quiet = 0 if held else quiet + 1
        time.sleep(poll_s)


def _held(keys, dask_worker=None) -> tuple[int, int]:
    """On a worker (``client.run``): how many of the tasks ``keys`` it still holds (running,
    waiting to, or done), and how many of those run (a task cancelled while it runs is
    ``cancelled`` there, its state before ``previous``)."""
    running = ("executing", "long-running")
    held = [dask_worker.state.tasks[k] for k in keys if k in dask_worker.state.tasks]
    return len(held), sum(t.state in running or t.state == "cancelled" and t.previous in running
                          for t in held)
