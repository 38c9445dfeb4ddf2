"""A trained network, loaded once per process (parameters only, compiled once per shape): a run
folder from ``cryostream train``, an exported ``.npz`` (:mod:`cryostream.models.export`) or a
model shipped in the package by name (:data:`SHIPPED`)."""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import Any

from cryostream.config.train import PRECISIONS
from cryostream.errors import ConfigError

__all__ = ["SHIPPED", "DEFAULT_MODEL", "Network", "model_path", "model_name", "check_model",
           "model_record", "model_state", "check_trained", "Divergence", "training_divergence",
           "load_model_file", "load_network", "backend", "to_device", "to_host"]

#: Models shipped inside the package: name → file in ``cryostream/data``. ``general`` is trained
#: on simulated micrographs over a spread of doses, pixel sizes, defocus, detector noise, ice
#: and particle shapes (``benchmarks/train_general_model.py``, docs/benchmarks.md).
SHIPPED = {"general": "general_model.npz"}

#: The model ``denoise`` uses when none is given.
DEFAULT_MODEL = "general"


def model_name(path) -> str:
    """How notes and labels name a model: a shipped model's name (``general``), else the run
    folder's or file's name."""
    shipped = {model_path(name): name for name in SHIPPED}
    return shipped.get(str(path), Path(str(path)).name)


def model_path(model) -> str:
    """The absolute path of a model: a shipped name (:data:`SHIPPED`), an exported ``.npz`` or
    a run folder."""
    import os
    from pathlib import Path

    if not isinstance(model, str | os.PathLike):
        from cryostream.errors import ConfigError

        raise ConfigError(f"{model!r} is not a model: give a run folder, an exported .npz or "
                          f"the name of a shipped model ({', '.join(repr(n) for n in SHIPPED)})")
    if str(model) in SHIPPED:
        from importlib.resources import files

        return str(files("cryostream.data") / SHIPPED[str(model)])
    return str(Path(model).absolute())


def check_model(model) -> str:
    """The absolute path of a model (:func:`model_path`), or a
    :class:`~cryostream.errors.StoreError` if there is nothing of that name: it says the path
    does not exist, lists the shipped models (:data:`SHIPPED`) and suggests the closest one to
    a mistyped name."""
    import difflib
    from pathlib import Path

    from cryostream.errors import StoreError

    path = model_path(model)
    if str(model) in SHIPPED or Path(path).exists():
        return path
    close = difflib.get_close_matches(Path(str(model)).name, list(SHIPPED), n=1)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    raise StoreError(f"{model}: does not exist{guess}; pass a run folder that cryostream train "
                     "or fit wrote, an exported .npz, or the name of a shipped model: "
                     f"{', '.join(SHIPPED)}")


def model_record(model):
    """The :class:`~cryostream.runs.RunRecord` of a model (see :func:`model_path`).

    Raises
    ------
    StoreError
        If there is no such model (:func:`check_model`), the run folder has no record, or an
        export was made without it.
    """
    from cryostream.errors import StoreError
    from cryostream.runs import load_record

    path = check_model(model)
    if path.endswith(".npz"):
        record = load_network(path).record
        if record is None:
            raise StoreError(f"{path}: an exported model without its run record cannot denoise "
                             "(it does not say how micrographs were normalised); export it "
                             "with its record")
        return record
    record = load_record(path)
    check_trained(path, record)
    return record


@dataclasses.dataclass(frozen=True)
class Network:
    """A run's U-Net ready to apply.

    Attributes
    ----------
    apply : callable
        ``apply(params, windows)``: jit-compiled forward pass on ``(batch, y, x, 1)`` float32.
    params : pytree
        The trained parameters.
    config : cryostream.models.ModelConfig
        The network's shape (levels, pooling factor, first kernel).
    record : cryostream.runs.RunRecord
        How the run was trained.
    compute_dtype : str
        What the network computes in here (:func:`load_network`'s ``precision``).
    state : dict
        :func:`model_state` of the files, taken before they were read.
    """

    apply: Any
    params: Any
    config: Any
    record: Any
    compute_dtype: str = "float32"
    state: dict | None = None


def model_state(run) -> dict:
    """Which state of a model made an output: a run folder's last checkpoint (its step, time
    of modification and the checksum of its parameters saved with it, ``params_sha256``,
    where it has one: a run trained further has a new one; copied, the same checksum), or an
    exported or shipped ``.npz``'s size and content digest (the same model installed again is
    the same). Compared by :func:`~cryostream.denoise.moved.same_model_state`."""
    path = Path(str(run))
    if path.is_dir():
        from cryostream.checkpoints import saved_checksum

        steps = [int(p.name) for p in (path / "checkpoints").glob("*") if p.name.isdigit()]
        if not steps:
            return {"checkpoint": None}
        last = path / "checkpoints" / str(max(steps))
        checksum = saved_checksum(path, max(steps))
        return {"checkpoint": max(steps), "modified_ns": last.stat().st_mtime_ns,
                **({"params_sha256": checksum} if checksum else {})}
    try:
        st = path.stat()
    except OSError:
        return {"bytes": None}
    return {"bytes": st.st_size, "sha256": _digest(str(path), st.st_size, st.st_mtime_ns)}


@functools.lru_cache(maxsize=8)
def _digest(path: str, size: int, modified_ns: int) -> str:
    """A file's SHA-256 (16 hex digits), read once per size and time of modification."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def load_model_file(path: str):
    """The network and its run record from an exported ``.npz`` or a run folder (its last
    checkpoint's parameters): :func:`~cryostream.models.export.load_exported` or
    :func:`~cryostream.runs.load_model`."""
    if str(path).endswith(".npz"):
        from cryostream.models.export import load_exported

        return load_exported(path)
    from cryostream.runs import load_model, load_record

    check_trained(path, load_record(path))
    return load_model(path)


def check_trained(run, record) -> None:
    """A :class:`~cryostream.errors.StoreError` if the run folder ``run`` has no checkpoint,
    saying what its record tells: a training that diverged (a checkpoint was due, none was
    kept and the logged loss grew: no diverged network is checkpointed) is to be trained
    again at a lower learning rate, not resumed; one that stopped before its first checkpoint
    is resumed, or trained again if it diverged."""

    from cryostream.checkpoints import checkpoint_steps
    from cryostream.errors import StoreError
    from cryostream.runs import CHECKPOINTS, logged_rows

    run = Path(str(run))
    rows = logged_rows(run / "metrics.jsonl")
    if checkpoint_steps(run):
        _note_diverged(run)
        return
    train = record.train
    due = min(train.checkpoint_every, train.steps)
    losses = [float(r["loss"]) for r in rows if "loss" in r]
    last = max((r["step"] for r in rows), default=0)
    stopped = any(r.get("diverged") is True for r in rows)  # train stopped: a loss not finite
    network = any(r.get("diverged") == "network" for r in rows)  # ended on a diverged network
    grew = stopped or network or any(not v == v or abs(v) == float("inf") for v in losses) or (  # after
        losses and min(losses) > 0 and losses[-1] >= 10 * min(losses))  # its lowest: a fall is none
    again = ("train again into a new run folder (-o), with `cryostream train` at a lower "
             f"learning rate (--lr, half or less of its {train.learning_rate:g}) or another --seed")
    where = f"{run}: no checkpoint in {run / CHECKPOINTS}"
    if (last >= due or stopped) and grew:
        logs = (f"its loss not finite at step {last}" if stopped else
                f"its network diverged at its last step, {last}" if network else
                f"its loss growing to step {last}, past the checkpoint due at step {due}")
        raise StoreError(f"{where}: its training diverged (metrics.jsonl logs {logs}, and no "
                         f"checkpoint of a diverged network is written), so resuming it is no use; {again}"
                         + ("; loss.png shows the curve" if (run / "loss.png").is_file() else ""))
    from cryostream.divergence import too_short

    fit = ("run the same cryostream fit command again" if (run / "fit.json").is_file() else
           "continue it with cryostream train --resume (Python: train(..., resume=True))")
    if not stopped and too_short(train.steps, train.warmup_steps) and last >= train.steps:
        # a smoke test that ran to its end (one stopped earlier, by an error, is said below)
        raise StoreError(f"{where}: a training of {train.steps} step{'s' * (train.steps > 1)} "
                         "keeps no network still far from trained (train said so); train for "
                         "more steps (--steps, a few hundred or more) into a new run folder (-o)")
    raise StoreError(f"{where}: its training stopped before its first checkpoint (step {due} of "
                     f"{train.steps}). If it was interrupted or stopped on an error (out of memory, a "
                     f"full disk), {fit} once that is mended; if it ended diverged (train "
                     f"said so), resuming it is no use: {again}")


@dataclasses.dataclass(frozen=True)
class Divergence:
    """A run's training that diverged after its last checkpoint: ``step``, the step its
    metrics.jsonl logs it diverged at; ``checkpoint``, the step of its last checkpoint, the
    network a run folder gives (no diverged network is checkpointed): one from before the
    divergence, trained only that far."""

    step: int
    checkpoint: int

    def words(self, network: str = "used") -> str:
        """What it means for the network ``network`` (``"used"``, ``"scored"``), in words."""
        return (f"training diverged at step {self.step} (metrics.jsonl); the network "
                f"{network} is its last checkpoint, step {self.checkpoint}, from before that and "
                "trained only that far: a run trained again at a lower learning rate (--lr) may "
                "do better")


def training_divergence(run) -> Divergence | None:
    """The :class:`Divergence` of the run folder ``run`` where its metrics.jsonl logs its
    training diverged (``{"diverged": true}``, a loss not finite; ``{"diverged": "network"}``,
    it ended on a diverged network) after its last checkpoint; None where it did not, where it
    has no checkpoint (:func:`check_trained` refuses it) and for an exported ``.npz``."""
    from cryostream.checkpoints import checkpoint_steps
    from cryostream.runs import logged_rows

    run = Path(str(run))
    if not run.is_dir() or not (steps := checkpoint_steps(run)):
        return None
    at = max((r["step"] for r in logged_rows(run / "metrics.jsonl") if r.get("diverged")),
             default=0)
    return Divergence(at, max(steps)) if at > max(steps) else None


_said_diverged: set = set()  # (run, step) noted in this process


def _note_diverged(run: Path) -> None:
    """Note once per process that the training of ``run`` diverged after its last checkpoint,
    the network used (:func:`training_divergence`)."""
    diverged = training_divergence(run)
    if diverged and (run, diverged.step) not in _said_diverged:
        _said_diverged.add((run, diverged.step))
        logging.getLogger("cryostream").info("%s: its %s", run, diverged.words())


def load_network(run: str, precision: str = "fp32") -> Network:
    """The :class:`Network` of a run folder (its last checkpoint) or an exported ``.npz`` (an
    absolute path, :func:`model_path`), computing in ``precision``
    (:data:`~cryostream.config.PRECISIONS`): ``"fp32"``, float32 (the default); ``"bf16"``,
    bfloat16 on a GPU, where a pass takes about a third less time but its rounding costs a
    little of the finest detail (float32 on a CPU, which has no bfloat16 arithmetic). The
    parameters are float32 either way. The model is read once per process and shared by both
    precisions; the compiled function is kept per precision computed."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}: one of {', '.join(PRECISIONS)}")
    import jax

    dtype = "bfloat16" if precision == "bf16" and jax.default_backend() != "cpu" else "float32"
    return _network(run, dtype)


@functools.lru_cache(maxsize=4)
def _read(run: str) -> tuple:
    """A run's model, record and the state of its files (taken before they were read)."""
    from cryostream.compile_cache import enable_compile_cache

    enable_compile_cache()
    state = model_state(run)  # before reading: a run trained meanwhile shows as changed
    model, record = load_model_file(run)
    return model, record, state


@functools.lru_cache(maxsize=8)
def _network(run: str, dtype: str) -> Network:
    import jax
    from flax import nnx

    model, record, state = _read(run)
    graphdef, params = nnx.split(model)
    if dtype != model.config.compute_dtype:  # the same function of the same parameters
        from cryostream.models.unet import UNet

        config = dataclasses.replace(model.config, compute_dtype=dtype)
        graphdef, _ = nnx.split(nnx.eval_shape(lambda: UNet(config, rngs=nnx.Rngs(0))))
    apply = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))
    return Network(apply=apply, params=params, config=model.config, record=record,
                   compute_dtype=dtype, state=state)


def _clear_caches() -> None:
    """Forget every model read and network built (a run trained further is read again), and
    the window layouts and memory plans made for them."""
    from cryostream.denoise import memory, tiling

    _network.cache_clear()
    _read.cache_clear()
    memory.clear_plans()
    tiling.clear_layouts()


load_network.cache_clear = _clear_caches


def backend() -> str:
    """``"gpu"`` or ``"cpu"``: the kind of JAX's default backend."""
    import jax

    return "gpu" if jax.default_backend() in ("gpu", "cuda", "rocm") else "cpu"


def to_device(array):
    """``array`` on JAX's default device, copied explicitly: a NumPy argument of a compiled
    function is copied too, but 5.5× slower on an H200 (1.3 against 7.2 GB/s)."""
    import jax

    return jax.device_put(array)


def to_host(array):
    """A device array as NumPy. On a GPU it goes through pinned (page-locked) host memory,
    which the GPU copies to at full speed: 303 MB of windows came back in 7 ms that way on an
    H200 against 175 ms for the plain copy. Where the JAX in use has no pinned host memory,
    the plain copy."""
    import numpy as np

    if backend() == "gpu" and not _no_pinned:
        import jax

        array.block_until_ready()  # the call's own errors come through as they are
        try:
            pinned = array.sharding.with_memory_kind("pinned_host")
            return np.asarray(jax.device_put(array, pinned))
        except (ValueError, TypeError, NotImplementedError, RuntimeError, AttributeError) as exc:
            import logging

            if "RESOURCE_EXHAUSTED" not in str(exc):  # pinned memory short now, not for good
                _no_pinned.append(exc)  # not tried again in this process
            logging.getLogger("cryostream").debug("copies back from the GPU go the plain way "
                                                  "(no pinned host memory: %s)", exc)
    return np.asarray(array)


_no_pinned: list = []  # why the pinned copy back failed, once it has
