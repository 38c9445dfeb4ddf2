"""A script's calls run again by each worker process as it starts.

Python's *spawn* start method runs the main script again (as the module ``__mp_main__``) in
each process it starts, before the process takes work; only the lines under
``if __name__ == "__main__":`` are left out. Dask starts a LocalCluster's worker processes so.
A script that calls cryostream at its top level and asks for workers
(``prepare(..., workers=2)``, a ``LocalCluster`` of its own) had every earlier step made again
in every worker at once, into the same files (three ``simulate`` calls racing on one folder),
and then ended on a 100-line "Nanny failed to start" traceback. So each public call that
writes (:func:`refuse_script_rerun`) refuses to run in a Dask worker process's run of the
script, before it reads or writes anything, and the LocalCluster that cryostream starts says,
where its workers failed to start on a script without the guard (:func:`start_cluster`),
what to change, in one line.

A process pool of the script's own (``concurrent.futures.ProcessPoolExecutor``,
``multiprocessing.Pool``, by spawn) runs the script again in each of its processes too, and
there, unlike on a Dask worker, the script's functions it runs need what the top level made
(a store's path): pickle sends a function by its name, to be looked up in the script run
again, where Dask sends one of the script with the values it uses. There a call that only
finds again what the script's own run finished (``simulate`` or ``prepare`` of the same
arguments, without ``overwrite``; a ``fit`` whose run has all its steps, a ``denoise`` whose
every output is there) goes on, reading only and taking no lock (the pool's processes start at
once); a call that would write is refused, naming the script and the fix (the pool breaks,
that line in its process's traceback): at once where that is plain from the arguments, else
once the call finds it (:func:`rerun_refused`), before it writes.
A guarded script, functions of the script run on workers, notebooks and the command line are
not touched.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from cryostream.errors import CryostreamError

__all__ = ["GUARD_FIX", "DASK_WORKER_PROCESS", "refuse_script_rerun", "rerun_refused",
           "unguarded_script", "start_cluster"]

#: What a script without the guard must change, and why: the words of both errors here.
GUARD_FIX = ("the script's calls must go under if __name__ == \"__main__\": because each worker "
             "process runs the script again as it starts")

#: The name of each worker process a Dask ``Nanny`` starts (``distributed.nanny.WorkerProcess``:
#: a LocalCluster's of processes, cryostream's or a script's own), set before the process runs
#: the script again (``multiprocessing.spawn.prepare``).
DASK_WORKER_PROCESS = "Dask Worker process (from Nanny)"


def refuse_script_rerun(call: str, *, writes: bool = True) -> str | None:
    """Refuse ``cryostream.<call>()`` where this process is being started by spawn and runs the
    main script again: some frame of the stack is the top level of ``__mp_main__`` (only such
    a process runs it). Refused always in a Dask worker process (:data:`DASK_WORKER_PROCESS`),
    which needs nothing the script's calls return (Dask sends a function of the script with
    the values it uses); in another (a process pool of the script's own, whose functions are
    looked up in the script run again) only where the call ``writes``: one that would only
    find again what the script's own run finished goes on there. A few attribute look-ups per
    frame.

    Returns
    -------
    str or None
        The script's path where the call goes on in such a run of the script, which must
        then write nothing and take no lock (the other processes of the pool run the same
        call at once); None where this is no such run.

    Raises
    ------
    CryostreamError
        Naming the script and :data:`GUARD_FIX`.
    """
    if "__mp_main__" not in sys.modules:  # not a process started by spawn
        return None
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__mp_main__":
            break
        frame = frame.f_back
    else:
        return None  # a function of the script, run in the process: not its top level
    import multiprocessing

    script = frame.f_code.co_filename
    dask = multiprocessing.current_process().name == DASK_WORKER_PROCESS
    if dask:
        raise CryostreamError(f"{script}: cryostream.{call}() was called again, at the script's "
                              f"top level, in a worker process starting; {GUARD_FIX}")
    if writes:
        raise rerun_refused(script, call)
    return script


def rerun_refused(script: str, call: str) -> CryostreamError:
    """The error of ``cryostream.<call>()`` that would write in a process pool's run of the
    main ``script`` (:func:`refuse_script_rerun`): raised there before anything is written,
    also by a call that found, after the guard let it go on, that it would write after all (a
    fit with steps left, a denoise with micrographs left)."""
    return CryostreamError(f"{script}: cryostream.{call}() was called again, at the script's "
                           "top level, in a worker process starting, where it would write (only "
                           "a finished set, store, fit or denoise of the same arguments, without "
                           f"overwrite=True, is found again there); {GUARD_FIX}")


def unguarded_script() -> str | None:
    """The path of the main script where it is a Python file whose code has no
    ``if __name__ == "__main__":``; None otherwise (an interactive session, a notebook,
    ``python -m``'s module with a guard, a package's ``__main__.py``, which a worker process does
    not run again, the command line)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    spec = getattr(main, "__spec__", None)
    if not path or not str(path).endswith(".py") or \
            getattr(spec, "name", "").endswith(".__main__"):  # (multiprocessing.spawn skips it)
        return None
    try:
        tree = ast.parse(Path(path).read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return None
    return None if any(_is_guard(node) for node in ast.walk(tree)) else str(path)


def _is_guard(node: ast.AST) -> bool:
    """Whether ``node`` is ``__name__ == "__main__"`` (either way round); one in a string or
    a comment (a docstring naming the guard) is no guard."""
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1
            and isinstance(node.ops[0], ast.Eq)):
        return False
    sides = [node.left, node.comparators[0]]
    return (any(isinstance(n, ast.Name) and n.id == "__name__" for n in sides)
            and any(isinstance(n, ast.Constant) and n.value == "__main__" for n in sides))


def start_cluster(make, **options):
    """``make(**options)``: a LocalCluster started. Where its worker processes fail to start
    and the main script has no guard (:func:`unguarded_script`), one line naming the script
    and :data:`GUARD_FIX` is raised instead, the failure its cause (the workers' tracebacks
    stay there); any other failure is raised as it is.

    Raises
    ------
    CryostreamError
        The workers failed to start on a script without the guard.
    """
    try:
        return make(**options)
    except Exception as exc:
        script = unguarded_script() if options.get("processes") else None
        if script is None:
            raise
        raise CryostreamError(f"{script}: the Dask worker processes failed to start; "
                              f"{GUARD_FIX}") from exc
