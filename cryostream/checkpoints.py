"""A run's checkpoints: saved checked (a checksum of the parameters, finite values, room on
the disk first) and synchronously, restored verified.

Each checkpoint ``RUN/checkpoints/STEP/`` has three orbax items: ``state``
(``{"params", "opt_state", "step"}``, for resuming), ``params`` (the network's parameters alone,
for inference) and ``meta`` (the loader position, the record and the checksums). A save that
fails (a full disk, a file size limit) leaves no ``*.orbax-checkpoint-tmp*`` folder behind, the
earlier checkpoints as they were, and one :class:`~cryostream.errors.StoreError`.

:mod:`cryostream.runs` re-exports these names; inference imports no optimizer through them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import threading
import time
from pathlib import Path

from cryostream.errors import StoreError

__all__ = ["CHECKPOINTS", "checkpoint_manager", "checkpoint_steps", "finished_steps",
           "tree_checksum", "saved_checksum", "save_checkpoint", "restore_state", "load_params"]

#: The checkpoints' folder name inside a run folder.
CHECKPOINTS = "checkpoints"


def checkpoint_manager(run, keep: int | None = None, *, create: bool = False):
    """The orbax ``CheckpointManager`` of ``run/checkpoints``.

    Parameters
    ----------
    run : path-like
        The run folder.
    keep : int, optional
        Checkpoints kept when saving (the last ``keep``); ``None`` keeps all.
    create : bool
        Create the folder (training), and remove the temporary folder of a save that a kill
        or a second Ctrl-C cut short (``STEP.orbax-checkpoint-tmp``, never a checkpoint; the
        run is held by one training at a time); reading leaves the disk alone.
    """
    import orbax.checkpoint as ocp

    # Synchronous saves: save_checkpoint returns once the checkpoint is complete, or raises.
    return ocp.CheckpointManager(
        (Path(run) / CHECKPOINTS).absolute(),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=create,
                                             enable_async_checkpointing=False,
                                             cleanup_tmp_directories=create),
    )


def checkpoint_steps(run) -> list[int]:
    """The steps of the finished checkpoints in ``run``, ascending (``[]`` if none)."""
    if not (Path(run) / CHECKPOINTS).is_dir():
        return []
    manager = checkpoint_manager(run)
    try:
        return sorted(manager.all_steps())
    finally:
        manager.close()


def tree_checksum(tree) -> tuple[str, bool]:
    """``(sha256, finite)`` of a pytree of arrays: a hash of every leaf's dtype, shape and bytes
    in tree order, and whether every value is finite. Checkpoints record it on save and
    :func:`load_params` / :func:`restore_state` check it on restore."""
    import hashlib

    import jax
    import numpy as np

    digest, finite = hashlib.sha256(), True
    for leaf in jax.tree.leaves(tree):
        array = np.asarray(leaf)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
        if array.dtype.kind == "f":
            finite = finite and bool(np.isfinite(array).all())
    return digest.hexdigest(), finite


def _verified(run, step: int, tree, expected: str | None, what: str):
    """``tree`` if its checksum is ``expected`` (old checkpoints have none) and its values are
    finite; a :class:`StoreError` naming the checkpoint otherwise."""
    digest, finite = tree_checksum(tree)
    if expected is not None and digest != expected:
        raise StoreError(f"{run}: checkpoint step {step} is damaged (its {what} do not match "
                         f"the checksum saved with them); {_other_steps(run, step)}")
    if not finite:
        raise StoreError(f"{run}: checkpoint step {step} is unusable (its {what} hold NaN or "
                         f"Inf values); {_other_steps(run, step)}")
    return tree


def saved_checksum(run, step: int) -> str | None:
    """The checksum of checkpoint ``step``'s parameters saved with it (``params_sha256`` of
    its ``meta``), read from its JSON file without orbax; None where there is none."""
    try:
        meta = json.loads((Path(run) / CHECKPOINTS / str(step) / "meta" / "metadata").read_text())
    except (OSError, ValueError):
        return None
    return meta.get("params_sha256") if isinstance(meta, dict) else None


def _other_steps(run, step: int) -> str:
    others = [s for s in checkpoint_steps(run) if s != step]
    if not others:
        return "train the run again"
    return (f"its other checkpoints are at steps {others}: remove {Path(run) / CHECKPOINTS / str(step)} "
            "to fall back to the one before, or train again")


def save_checkpoint(manager, step: int, state: dict, meta: dict) -> None:
    """Save a training checkpoint: ``state``, its ``params`` alone, and ``meta`` (JSON).

    The save is synchronous and checked: non-finite parameters are refused, the room on the
    disk (free space, and the file size limit) is checked first against the size of the last
    checkpoint, and a save that fails anyway leaves no temporary folder and the earlier
    checkpoints as they were. orbax's own error logs of a failed save are held back.

    Parameters
    ----------
    manager : orbax.checkpoint.CheckpointManager
        From :func:`checkpoint_manager` (``create=True``).
    step : int
        The step the state is at.
    state : dict
        ``{"params", "opt_state", "step"}``.
    meta : dict
        JSON-ready values (the loader position and the record).

    Raises
    ------
    StoreError
        If the parameters hold NaN or Inf values, or the checkpoint cannot be written (a full
        disk, a file size limit); it names the run and the last good checkpoint, which is kept.
    """
    import orbax.checkpoint as ocp

    directory = Path(manager.directory)
    run = directory.parent
    params_sha, finite = tree_checksum(state["params"])
    if not finite:
        raise StoreError(f"{run}: at step {step} the parameters hold NaN or Inf values, so no "
                         "checkpoint was written; training diverged (lower --lr, or check the "
                         "store)")
    _check_room(directory, step, state)
    meta = {**meta, "params_sha256": params_sha, "state_sha256": tree_checksum(state)[0]}
    before = set(threading.enumerate())
    restore_hook = _ignore_orbax_leftovers()
    with _held_logs() as held:
        try:
            manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                       params=ocp.args.StandardSave(state["params"]),
                                                       meta=ocp.args.JsonSave(meta)))
            manager.wait_until_finished()
        except Exception as exc:  # orbax and tensorstore raise many kinds on a failed write
            held.drop()  # the hook stays: writes left in flight end later
            _wait_for_orbax(set(threading.enumerate()) - before)
            _close_orbax_coroutines()
            for tmp in directory.glob(f"{step}.orbax-checkpoint-tmp*"):
                shutil.rmtree(tmp, ignore_errors=True)
            raise StoreError(_not_written(directory, step, _write_failure(exc))) from None
    restore_hook()


def finished_steps(directory: Path) -> list[int]:
    """The steps of the finished checkpoints in ``directory`` (``RUN/checkpoints``), ascending:
    the folders named by the step, which orbax names so once a save is complete (it writes
    into ``STEP.orbax-checkpoint-tmp``, then renames it). Read from the folder alone, without
    orbax: safe where a save may be in progress (a signal handler)."""
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir())


def _not_written(directory: Path, step: int, reason: str, fix: str = "free disk space") -> str:
    """The one-line message of a checkpoint that could not be written."""
    kept = finished_steps(directory)
    then = (f"the last good checkpoint, step {kept[-1]}, is kept: {fix}, then run the same "
            "command with --resume to continue from it" if kept else
            f"no earlier checkpoint was written: {fix}, then run the same command again")
    return f"{directory.parent}: checkpoint step {step} could not be written ({reason}); {then}"


def _write_failure(exc: BaseException) -> str:
    """What a failed save ran into, in words."""
    text = str(exc)
    if "os_error_code='28'" in text or "No space left" in text:
        return "the disk is full"
    if "os_error_code='27'" in text or "File too large" in text:
        return "a file grew past the file size limit (ulimit -f): the disk is full for it"
    first = text.strip().splitlines()[0][:200] if text.strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _check_room(directory: Path, step: int, state: dict) -> None:
    """Refuse, before writing anything, a checkpoint the disk cannot hold: its size is the
    last finished checkpoint's (the same arrays), or the arrays' bytes for the first one."""
    import jax
    import numpy as np

    kept = finished_steps(directory)
    sizes = [f.stat().st_size for f in (directory / str(kept[-1])).rglob("*")
             if f.is_file()] if kept else []
    if not sizes:  # the state, and the parameters again, each in one data file
        sizes = [sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree))
                 for tree in (state, state["params"])]
    total, largest = sum(sizes), max(sizes)
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        limit = None if limit == resource.RLIM_INFINITY else limit
    except (ImportError, OSError, ValueError):  # no such limit on this system
        limit = None
    if limit is not None and largest > limit:
        raise StoreError(_not_written(
            directory, step, f"files may not grow past {limit:,} bytes here (the file size "
            f"limit, ulimit -f) and one of its files takes about {largest:,}",
            "raise the file size limit"))
    need = int(total * 1.1) + (1 << 20)  # a margin for metadata and manifests
    free = shutil.disk_usage(directory if directory.is_dir() else directory.parent).free
    if free < need:
        raise StoreError(_not_written(
            directory, step, f"the disk is full: it takes about {need / 1e6:,.1f} MB and "
            f"{free / 1e6:,.1f} MB are free"))


class _Held(logging.Filter):
    """Holds log records back; :meth:`drop` (a failed save: one StoreError says it) drops them."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] | None = []

    def filter(self, record: logging.LogRecord) -> bool:
        if self.records is not None:
            self.records.append(record)
        return False

    def drop(self) -> None:
        self.records = None


@contextlib.contextmanager
def _held_logs():
    """Hold orbax's and asyncio's log records during a save; pass them on if it succeeds."""
    held = _Held()
    loggers = [logging.getLogger("absl"), logging.getLogger("asyncio")]
    for logger in loggers:
        logger.addFilter(held)
    try:
        yield held
    finally:
        if held.records is None:
            import gc

            gc.collect()  # asyncio reports unretrieved failures when their futures are freed
        for logger in loggers:
            logger.removeFilter(held)
        for record in held.records or []:
            logging.getLogger(record.name).handle(record)


def _ignore_orbax_leftovers():
    """Hold back the unraisable reports of orbax's writes left in flight; returns the function
    that puts the previous ``sys.unraisablehook`` back (a successful save calls it).

    A failed save leaves writes running on event loops orbax has closed: when they end, each
    reports 'Event loop is closed' (and their coroutines, freed at exit, an ImportError) as an
    unraisable exception, during the save and after it. Only those reports are held back: the
    failure is already one StoreError.
    """
    previous = sys.unraisablehook
    if getattr(previous, "cryostream_orbax_leftovers", False):  # left by a failed save
        return lambda: None

    def hook(unraisable) -> None:
        exc, code = unraisable.exc_value, getattr(unraisable.object, "cr_code", None)
        if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
            return
        if code is not None and "orbax" in code.co_filename:
            return
        previous(unraisable)

    def restore() -> None:
        if sys.unraisablehook is hook:
            sys.unraisablehook = previous

    hook.cryostream_orbax_leftovers = True
    sys.unraisablehook = hook
    return restore


def _close_orbax_coroutines() -> None:
    """Close the coroutines a failed save left unfinished on its closed event loops (their
    writes can no longer run), so none reports at exit that it was never awaited."""
    import gc
    import inspect

    for obj in gc.get_objects():
        if (inspect.iscoroutine(obj) and obj.cr_frame is not None and not obj.cr_running
                and "orbax" in obj.cr_code.co_filename):
            try:
                obj.close()
            except BaseException:  # a coroutine whose cleanup fails: it is abandoned anyway
                pass


def _wait_for_orbax(threads: set[threading.Thread], timeout: float = 60.0) -> None:
    """Wait for the threads a failed save left writing (orbax's own, and asyncio's workers
    that run its file writes), so that nothing writes into the folder removed next."""
    deadline = time.monotonic() + timeout
    for thread in threads:
        if type(thread).__module__.startswith("orbax") or thread.name.startswith("asyncio_"):
            try:
                thread.join(max(0.0, deadline - time.monotonic()))
            except Exception:  # orbax's threads re-raise their failure on join: already known
                pass


def restore_state(manager, step: int, like) -> tuple[dict, dict]:
    """The training state and ``meta`` of checkpoint ``step`` (to resume training).

    Parameters
    ----------
    manager : orbax.checkpoint.CheckpointManager
        From :func:`checkpoint_manager`.
    step : int
        A step that was saved.
    like : dict
        A state of the same structure (arrays or ``jax.ShapeDtypeStruct``); the restored
        arrays get its shapes, dtypes and shardings.

    Returns
    -------
    (state, meta)
    """
    import jax
    import orbax.checkpoint as ocp

    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    run = Path(manager.directory).parent
    try:
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    except Exception as exc:  # orbax and tensorstore raise many kinds on damaged files
        raise StoreError(f"{run}: checkpoint step {step} cannot be read ({type(exc).__name__}); "
                         f"it is damaged: {_other_steps(run, step)}") from None
    meta = restored["meta"]
    state = _verified(run, step, restored["state"], meta.get("state_sha256"),
                      "training state values")
    return state, meta


def load_params(run, abstract_params, step: int | None = None):
    """The network parameters of a checkpoint, without the optimizer state.

    Parameters
    ----------
    run : path-like
        The run folder.
    abstract_params : pytree of jax.ShapeDtypeStruct
        The parameters' structure, shapes, dtypes and shardings (``nnx.split(model, nnx.Param)``
        of an abstract model).
    step : int, optional
        The checkpoint's step; the last one by default.

    Returns
    -------
    (params, step)
        The parameters shaped like ``abstract_params``, and the step they were read from.

    Raises
    ------
    StoreError
        If the run has no checkpoint, none at ``step``, or a damaged one (unreadable, a
        checksum that does not match, NaN or Inf values).
    """
    import orbax.checkpoint as ocp

    run = Path(run)
    steps = checkpoint_steps(run)
    if not steps:
        raise StoreError(f"{run}: no checkpoint in {run / CHECKPOINTS}; train first "
                         "(cryostream train; to finish a run: cryostream train --resume, in "
                         "Python train(..., resume=True)), or, for a run made by cryostream fit, "
                         "run the same fit command again")
    step = steps[-1] if step is None else int(step)
    if step not in steps:
        raise StoreError(f"{run}: no checkpoint at step {step}; it has steps {steps}")
    manager = checkpoint_manager(run)
    try:
        if (run / CHECKPOINTS / str(step) / "params").is_dir():
            restored = manager.restore(step, args=ocp.args.Composite(
                params=ocp.args.StandardRestore(abstract_params), meta=ocp.args.JsonRestore()))
            params, expected = restored["params"], restored["meta"].get("params_sha256")
        else:
            # A run trained before the params item: read only state["params"], not the optimizer.
            item = {"params": abstract_params}
            restored = manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.PyTreeRestore(
                    item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
                    partial_restore=True)))
            params, expected = restored["state"]["params"], None
    except StoreError:
        raise
    except Exception as exc:  # orbax and tensorstore raise many kinds on damaged files
        raise StoreError(f"{run}: checkpoint step {step} cannot be read ({type(exc).__name__}); "
                         f"it is damaged: {_other_steps(run, step)}") from None
    finally:
        manager.close()
    return _verified(run, step, params, expected, "parameters"), step
