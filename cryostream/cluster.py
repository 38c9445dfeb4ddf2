"""Where Dask work runs: the threaded scheduler, a LocalCluster, or an existing scheduler.

A LocalCluster started here serves its dashboard on 127.0.0.1 only (a dashboard on every
interface would let anyone on the network watch and steer it); the real link comes from
``client.dashboard_link``.
"""

from __future__ import annotations

import contextlib
import resource
import threading
from collections.abc import Iterator

import psutil

__all__ = ["compute_context", "computer", "PeakMemory"]


class PeakMemory:
    """Peak RSS of this process and all its children (workers too).

    This process's own peak comes from the kernel (``ru_maxrss``, exact); the children are
    sampled in a thread every ``interval`` seconds (walking /proc is not free, so not often).
    """

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self._sampled = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def peak(self) -> int:
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return max(own, self._sampled)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(self.interval):
            try:
                procs = [me, *me.children(recursive=True)]
                self._sampled = max(self._sampled, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def compute_context(
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    memory_limit: str | None = None,
    dashboard_address: str = "127.0.0.1:0",
    report: str | None = None,
    log=print,
) -> Iterator[object | None]:
    """Yield a ``distributed.Client`` (or None for the threaded scheduler).

    ``scheduler`` connects to an existing scheduler by address; ``workers`` starts a
    LocalCluster of that many single-threaded worker processes. ``report`` saves a Dask
    performance report (needs a client; one in-process worker is started when neither is
    given).
    """
    if scheduler is None and workers is None and report is None:
        yield None
        return
    from distributed import Client, LocalCluster, performance_report

    stack = contextlib.ExitStack()
    with stack:
        if scheduler is not None:
            client = stack.enter_context(Client(scheduler))
        else:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers or 1,
                    threads_per_worker=1 if workers else 2,
                    processes=bool(workers),
                    memory_limit=memory_limit or "auto",
                    dashboard_address=dashboard_address,
                    host="127.0.0.1",
                )
            )
            client = stack.enter_context(Client(cluster))
        if client.dashboard_link:
            log(f"Dask dashboard: {client.dashboard_link}")
        if report is not None:
            stack.enter_context(performance_report(filename=report))
        yield client


def computer(client, progress: bool):
    """A function ``compute(objs, label=None)`` computing a list of dask objects on ``client``
    (a ``distributed.Client``), or on the threaded scheduler when it is None; with
    ``progress``, the label is noted (``logging``) and a progress bar shown."""
    import logging

    import dask

    def compute(objs, label: str | None = None):
        if progress and label:
            logging.getLogger("cryostream").info(label)
        if client is None:
            if progress:
                from dask.diagnostics import ProgressBar

                with ProgressBar():
                    return list(dask.compute(*objs, scheduler="threads"))
            return list(dask.compute(*objs, scheduler="threads"))
        futures = client.compute(objs)
        if progress:
            from distributed import progress as show_progress

            show_progress(futures)
        return client.gather(futures)

    return compute
