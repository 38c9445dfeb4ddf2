"""Where Dask work runs: the threaded scheduler, a LocalCluster, or an existing scheduler.

A LocalCluster started here serves its dashboard on 127.0.0.1 only (a dashboard on every
interface would let anyone on the network watch and steer it); the real link comes from
``client.dashboard_link``, said only where that page is there (:mod:`cryostream.dashboard`).
"""

from __future__ import annotations

import contextlib
import logging
import resource
import threading
from collections.abc import Iterator

import psutil

from cryostream.dashboard import note_dashboard
from cryostream.errors import ClusterError, ConfigError
from cryostream.schedulers import reachable_scheduler, scheduler_address, scheduler_host_port
from cryostream.script_guard import start_cluster

__all__ = ["WORKERS_PER_CORE", "check_cluster_options", "check_local_workers",
           "compute_context", "computer", "forwarded",
           "on_workers", "task_function", "Forwarded", "PeakMemory"]

#: The most LocalCluster worker processes per CPU core this process may use: each is a Python
#: process of its own, and far more than the cores only wait on each other (1000 on two cores
#: had failed to start, with FileNotFoundError tracebacks, then hung).
WORKERS_PER_CORE = 4


def check_cluster_options(*, scheduler: str | None = None, workers: int | None = None,
                          memory_limit: str | int | float | None = None) -> None:
    """Check the cluster options before anything is started or written.

    Parameters
    ----------
    scheduler : str, optional
        A Dask scheduler address (``tcp://HOST:PORT``, or ``HOST:PORT``).
    workers : int, optional
        The number of LocalCluster workers: at least 1, and without a ``scheduler`` at most
        :data:`WORKERS_PER_CORE` times the cores (:func:`check_local_workers`).
    memory_limit : str, int or float, optional
        Memory per worker: ``"auto"``, bytes (``"4GiB"``, ``4e9``), a fraction of the memory
        (≤ 1) or 0 (no limit).

    Raises
    ------
    ConfigError
        Naming the option (its flag) and the fix.
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ConfigError(f"workers={workers!r} (--workers): must be a whole number ≥ 1; leave it "
                          "out to compute on threads in this process")
    if workers is not None and scheduler is None:  # a scheduler's workers are its own
        check_local_workers(workers)
    if memory_limit is not None and memory_limit != "auto":
        _check_memory_limit(memory_limit)
    if scheduler is not None:
        scheduler_host_port(scheduler)


def check_local_workers(workers: int, name: str = "workers") -> None:
    """Check that a LocalCluster of ``workers`` processes fits the CPU cores this process may
    use (:func:`~cryostream.host.cpu_cores`, a batch job's share): at most
    :data:`WORKERS_PER_CORE` times as many. ``name``: the keyword, whose flag the error names.

    Raises
    ------
    ConfigError
        Naming the workers, the cores and the fix.
    """
    from cryostream.host import cpu_cores

    cores = cpu_cores()
    if workers > WORKERS_PER_CORE * cores:
        flag = f"--{name.replace('_', '-')}"
        raise ConfigError(f"{name}={workers!r} ({flag}): more than {WORKERS_PER_CORE} times the "
                          f"{cores} CPU core{'' if cores == 1 else 's'} this process may use (each "
                          f"worker is a process of its own); give at most {WORKERS_PER_CORE * cores}"
                          f", e.g. {flag} {cores}, or connect to a cluster's scheduler with "
                          "--scheduler")


def _check_memory_limit(memory_limit) -> None:
    from dask.utils import parse_bytes

    fix = "give bytes such as 4GiB or 500MB, a fraction of the memory such as 0.5, or auto"
    try:
        value = float(memory_limit)
    except (TypeError, ValueError):
        try:
            value = parse_bytes(memory_limit)
        except (TypeError, ValueError):
            raise ConfigError(f"memory_limit={memory_limit!r} (--memory-limit): not an amount "
                              f"of memory; {fix}") from None
    if not value >= 0:
        raise ConfigError(f"memory_limit={memory_limit!r} (--memory-limit): must not be negative; "
                          f"{fix}")


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


def _check_report(report) -> None:
    """A :class:`ConfigError` where the performance report could not be written at the end
    (after all the work): a folder, or a folder that is missing or cannot be written."""
    import os
    from pathlib import Path

    path = Path(report)
    folder = path.absolute().parent
    problem = ("is a folder; give a file, e.g. " + str(path / "report.html")) if path.is_dir() \
        else f"its folder {folder} does not exist" if not folder.is_dir() \
        else f"its folder {folder} cannot be written" if not os.access(folder, os.W_OK) else None
    if problem:
        raise ConfigError(f"report={str(report)!r} (--report): {problem}; the report is written "
                          "at the end, so give a path that can be written")


@contextlib.contextmanager
def compute_context(
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    memory_limit: str | None = None,
    dashboard_address: str = "127.0.0.1:0",
    report: str | None = None,
    log=None,
    call: str,
) -> Iterator[object | None]:
    """Yield a ``distributed.Client`` (or None for the threaded scheduler).

    ``scheduler`` connects to an existing scheduler by address; ``workers`` starts a
    LocalCluster of that many single-threaded worker processes. ``report`` saves a Dask
    performance report (needs a client; one in-process worker is started when neither is
    given). ``log`` receives the dashboard link, or that the scheduler serves none
    (:func:`~cryostream.dashboard.note_dashboard`; None: a note of the ``cryostream`` logger,
    on stderr from the command line). The options are checked first (:func:`check_cluster_options`, and
    :func:`~cryostream.schedulers.reachable_scheduler` for a scheduler): a mistake is a
    :class:`~cryostream.errors.ConfigError`, never a hang. A Client or a cluster object in
    ``scheduler`` is taken as its scheduler's address (:func:`~cryostream.schedulers.scheduler_address`).
    ``call``: the call it runs (``prepare``, ``denoise``), which the error of a cluster lost
    meanwhile names (a :class:`~cryostream.errors.ClusterError`: how to go on, what is kept).
    """
    scheduler = scheduler_address(scheduler)
    check_cluster_options(scheduler=scheduler, workers=workers, memory_limit=memory_limit)
    if report is not None:
        _check_report(report)
    if scheduler is None and workers is None and report is None:
        yield None
        return
    import concurrent.futures

    from distributed import Client, LocalCluster, performance_report
    from distributed.comm.core import CommClosedError

    from cryostream.cluster_logs import (
        ctrl_c_here_alone,
        quiet_closing,
        quiet_distributed,
        quiet_interrupted_gathers,
        worker_processes,
    )

    reachable_scheduler(scheduler)
    quiet_interrupted_gathers()  # (a Ctrl-C in a gather: one record for each of its tasks)

    stack = contextlib.ExitStack()
    client_log = logging.getLogger("distributed.client")
    quiet = client_log.disabled
    try:
        with stack:
            if scheduler is not None:
                client = stack.enter_context(Client(scheduler))
            else:  # distributed's INFO held back till it has closed, here and on its workers
                stack.enter_context(quiet_distributed())
                with ctrl_c_here_alone():  # (the workers' Ctrl-C is the call's: it closes them)
                    cluster = stack.enter_context(start_cluster(  # (a script without the guard:
                        LocalCluster,                            # said so in one line)
                        n_workers=workers or 1,
                        threads_per_worker=1 if workers else 2,
                        processes=bool(workers),
                        worker_class=worker_processes() if workers else None,
                        memory_limit=memory_limit or "auto",
                        dashboard_address=dashboard_address,
                        host="127.0.0.1",
                        # in-process workers default to the inproc transport, where "127.0.0.1"
                        # is no valid address ("Cluster failed to start"): listen on TCP, locally
                        protocol="tcp://",
                    ))
                client = stack.enter_context(Client(cluster))
                stack.callback(quiet_closing)  # (first as it closes: its chatter is ours)
            note_dashboard(client, log)  # only where the scheduler serves one
            if report is not None:
                stack.enter_context(performance_report(filename=report))
            try:
                yield client
            except (concurrent.futures.CancelledError, CommClosedError) as exc:
                # distributed's FutureCancelledError: the work was dropped on the cluster
                client_log.disabled = True
                raise _cluster_lost(exc, scheduler, call) from None
    finally:  # the client's close after a lost scheduler logs its tracebacks: said in one line
        client_log.disabled = quiet


#: What each call keeps of a run its cluster stopped, and makes again (:func:`_cluster_lost`).
_KEPT = {"prepare": "prepare keeps the shards it wrote and makes only the rest",
         "denoise": "denoise keeps the micrographs it wrote and makes only the rest"}


def _cluster_lost(exc, scheduler: str | None, call: str) -> ClusterError:
    """The :class:`ClusterError` of the work of ``call`` (``prepare``, ``denoise``) that the
    cluster dropped: its scheduler went away (the connection lost) or the work was cancelled
    there (from the dashboard, another client). Said in a script's words (call it again; the
    ``scheduler=`` keyword), and in the command line's (the same command; ``--scheduler``)."""
    reason = getattr(exc, "reason", None) or type(exc).__name__
    where = f"at {scheduler}" if scheduler is not None else "started here"
    lost = reason in ("scheduler-connection-lost", "CommClosedError")
    what = f"went away during {call}" if lost else f"cancelled {call}'s work"
    back = scheduler is not None and lost  # without the scheduler: on this machine
    said = f"the Dask cluster {where} {what} ({reason}): {{}}; {_KEPT[call]}"
    script = f"call {call} again with the same arguments" + (
        " once the scheduler is back (or without scheduler=, to run on this machine)" if back else "")
    command = "run the same command again" + (
        " once the scheduler is back (or without --scheduler)" if back else "")
    return ClusterError(said.format(script), command_line=said.format(command))


def on_workers(function):
    """``function`` for ``client.map`` or a dask graph: its result comes back as
    :class:`Forwarded`, with the warnings raised in the task's thread on the worker (a skipped
    micrograph, a CTF fallback, NumPy's overflow), which :func:`forwarded` shows here; only the
    client that asked sees them. Named and signed as ``function``: dask names the tasks (and
    progress bars) after it and gives it ``block_info`` where it takes one."""
    return _OnWorkers(function)


class _OnWorkers:
    def __init__(self, function):
        from dask.utils import funcname

        self.__wrapped__, self.__name__ = function, funcname(function)

    def __call__(self, *args, **kwargs) -> Forwarded:
        return _with_warnings(self.__wrapped__, *args, **kwargs)

    def __dask_tokenize__(self):
        from dask.base import tokenize

        return "on_workers", tokenize(self.__wrapped__)


def task_function(function, client):
    """``function`` for the tasks of a graph :func:`computer`'s ``compute`` runs on ``client``:
    :func:`on_workers`'s on a cluster, whose warnings ``compute`` shows here; on the threaded
    scheduler (``client`` None) ``function`` itself, whose warnings are raised here already."""
    return function if client is None else on_workers(function)


class Forwarded:
    """A task's result and the warnings its thread raised on a worker, ``(category, text)``."""

    def __init__(self, value, warned: list):
        self.value, self.warned = value, warned


def forwarded(value, show: bool = True):
    """The result inside a :class:`Forwarded` (anything else as it is), its warnings shown here
    first with ``show``."""
    import warnings

    if not isinstance(value, Forwarded):
        return value
    for category, text in value.warned if show else ():
        warnings.warn(text, category, stacklevel=2)
    return value.value


_sinks = threading.local()  # the warnings of the task running in this thread, or None
_capturing = threading.Lock()


def _with_warnings(function, *args, **kwargs) -> Forwarded:
    _capture_warnings()
    _sinks.warned = warned = []
    try:
        return Forwarded(function(*args, **kwargs), warned)
    finally:
        _sinks.warned = None


def _capture_warnings() -> None:
    """Route warnings shown in a thread running a task (:func:`_with_warnings`) to that task's
    list instead of the worker's stderr; other threads' are shown as before. Installed once in
    a process, and again if something replaced it since."""
    import warnings

    with _capturing:
        if getattr(warnings.showwarning, "_cryostream_capture", False):
            return
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            warned = getattr(_sinks, "warned", None)
            if warned is None:
                return shown(message, category, filename, lineno, file, line)
            warned.append((category, str(message)))

        show._cryostream_capture = True
        warnings.showwarning = show


def computer(client, progress: bool):
    """A function ``compute(objs, label=None, values=True)`` computing a list of dask objects on
    ``client`` (a ``distributed.Client``), or on the threaded scheduler when it is None; with
    ``progress``, the label is noted (``logging``) and a progress bar shown on stderr (stdout
    stays for what a command prints as its result). On a cluster, a :class:`Forwarded` result
    (:func:`task_function`) comes back as its value, its workers' warnings shown here.
    ``values=False``: the objects are computed for what their tasks do (write files); on a
    cluster each block of an array then comes back on its own (blocks of Forwarded results
    cannot be joined into an array) and None is returned."""
    import contextlib
    import logging
    import sys

    import dask

    def compute(objs, label: str | None = None, values: bool = True):
        if progress and label:
            logging.getLogger("cryostream").info(label)
        if client is None:
            if progress:
                from dask.diagnostics import ProgressBar

                with ProgressBar(out=sys.stderr):
                    return list(dask.compute(*objs, scheduler="threads"))
            return list(dask.compute(*objs, scheduler="threads"))
        from distributed import futures_of

        futures = client.compute(objs) if values else futures_of(client.persist(objs))
        if progress:
            from distributed.diagnostics.progressbar import TextProgressBar

            bar = None
            with contextlib.redirect_stdout(sys.stderr):  # its bar writes to sys.stdout
                try:
                    bar = TextProgressBar(futures, complete=True)  # (distributed.progress's)
                finally:  # cut short (Ctrl-C, the cluster lost): the bar, not erased as at its
                    if getattr(bar, "status", None) not in ("finished", "error"):  # end, has
                        print(file=sys.stderr)  # its line ended: the next line is one of its own
        results = [forwarded(r) for r in client.gather(futures)]
        return results if values else None

    return compute
