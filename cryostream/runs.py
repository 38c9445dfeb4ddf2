"""What a trained run is: its typed record, its checkpoints, and its model.

A run folder, written by :func:`cryostream.training.train`, holds ``config.json`` (the
:class:`RunRecord`), ``metrics.jsonl``, ``loss.png`` and ``checkpoints/STEP/``. Each checkpoint
has three orbax items: ``state`` (``{"params", "opt_state", "step"}``, for resuming),
``params`` (the network's parameters alone, for inference) and ``meta`` (the loader position
and the record). Runs trained before the ``params`` item existed load too: only the
parameters of their ``state`` item are read.

Inference imports this module, never the trainer: :func:`load_model` builds no optimizer.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryostream._version import __version__
from cryostream.config import NoiseConfig, PrepareConfig, TrainConfig, from_dict, to_dict
from cryostream.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from cryostream.models.unet import ModelConfig, UNet

__all__ = ["RECORD_FILE", "CHECKPOINTS", "RunRecord", "check_run", "load_record", "save_record",
           "checkpoint_manager", "checkpoint_steps", "save_checkpoint", "restore_state",
           "load_params", "load_model", "tree_checksum", "resume_differences"]

#: The record's file name inside a run folder.
RECORD_FILE = "config.json"
#: The checkpoints' folder name inside a run folder.
CHECKPOINTS = "checkpoints"


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """How a run was trained and on what data; written as ``config.json`` in the run folder.

    Parameters
    ----------
    path : Path
        The run folder (absolute). Not written to ``config.json``: a run folder can move.
    train : TrainConfig
        The training config (preset, precision, residual, recorrupt, optimiser, seed…).
    prepare : PrepareConfig
        The store's config: its noise model (``prepare.noise``) with ``α``, and the
        normalisation percentile (``prepare.percentile``).
    store : str
        The store trained on, as an absolute path when training began.
    version : str
        The cryostream version that trained the run.
    model_config : ModelConfig, optional
        The network's shape and numerics; ``None`` takes ``train.model_config()``. Records
        keep the one they were trained with, so a later change of a preset cannot change the
        shape of an old run's network.
    """

    path: Path
    train: TrainConfig
    prepare: PrepareConfig
    store: str
    version: str = __version__
    model_config: ModelConfig | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path).absolute())
        object.__setattr__(self, "store", str(self.store))
        if not isinstance(self.train, TrainConfig):
            raise ConfigError(f"train={self.train!r}: must be a TrainConfig")
        if not isinstance(self.prepare, PrepareConfig):
            raise ConfigError(f"prepare={self.prepare!r}: must be a PrepareConfig")
        if self.model_config is None:
            object.__setattr__(self, "model_config", self.train.model_config())

    @property
    def noise(self) -> NoiseConfig:
        """The store's noise model (``prepare.noise``)."""
        return self.prepare.noise

    @property
    def alpha(self) -> float:
        """The store's ``α``: the added noise's strength relative to the micrograph's own."""
        return self.prepare.noise.alpha

    @property
    def percentile(self) -> float:
        """The normalisation percentile: each micrograph is divided by this percentile."""
        return self.prepare.percentile

    @property
    def preset(self) -> str:
        """The model preset (``unet-small``, ``unet``, ``unet-large``)."""
        return self.train.model

    @property
    def precision(self) -> str:
        """Compute precision, ``"bf16"`` or ``"fp32"``."""
        return self.train.precision

    @property
    def residual(self) -> bool:
        """Whether the network predicts a correction added to its input."""
        return self.train.residual

    @property
    def recorrupt(self) -> bool:
        """Whether the run trained on recorrupted targets (no Noisier2Noise correction)."""
        return self.train.recorrupt

    def to_dict(self) -> dict[str, Any]:
        """The JSON layout of ``config.json`` (``path`` is not written)."""
        return {"cryostream_version": self.version, "train": to_dict(self.train),
                "model": to_dict(self.model_config), "prepare": to_dict(self.prepare),
                "store": self.store}

    @classmethod
    def from_dict(cls, data: dict[str, Any], path) -> RunRecord:
        """Rebuild a record from :meth:`to_dict` output; ``path`` is the run folder.

        Raises
        ------
        ConfigError
            If a key is missing or unknown, or a value is invalid.
        """
        from cryostream.models.unet import ModelConfig

        expected = {"cryostream_version", "train", "model", "prepare", "store"}
        if not isinstance(data, dict) or set(data) != expected:
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ConfigError(f"{path}: a run record has the keys {sorted(expected)}, not {keys}")
        return cls(path=Path(path), train=from_dict(TrainConfig, data["train"]),
                   prepare=from_dict(PrepareConfig, data["prepare"]), store=data["store"],
                   version=data["cryostream_version"],
                   model_config=from_dict(ModelConfig, data["model"]))


#: TrainConfig fields a resumed run may change: the length, the logging and the loader's threads.
RESUMABLE_CHANGES = ("steps", "eval_every", "eval_batches", "checkpoint_every",
                     "keep_checkpoints", "threads", "prefetch")


def resume_differences(stored: RunRecord, new: RunRecord) -> list[str]:
    """What ``new`` changes that resuming ``stored`` cannot take: ``"field: old → new"`` for
    the training options (other than :data:`RESUMABLE_CHANGES`), the store and its config."""
    changes = [f"{f.name}: {getattr(stored.train, f.name)!r} → {getattr(new.train, f.name)!r}"
               for f in dataclasses.fields(TrainConfig) if f.name not in RESUMABLE_CHANGES
               and getattr(stored.train, f.name) != getattr(new.train, f.name)]
    if stored.store != new.store:
        changes.append(f"store: {stored.store} → {new.store}")
    elif stored.prepare != new.prepare:
        changes.append("the store's preparation (it was prepared again with other options)")
    return changes


def check_run(run) -> Path:
    """``run`` as a path, or a :class:`StoreError` naming it if it is not a run folder.

    Parameters
    ----------
    run : path-like
        A folder written by :func:`cryostream.training.train` (``cryostream train -o``).
    """
    run = Path(run)
    if not (run / RECORD_FILE).is_file():
        raise StoreError(f"{run}: not a run folder (no {RECORD_FILE}); pass the folder that "
                         "cryostream train wrote")
    return run


def load_record(run) -> RunRecord:
    """The :class:`RunRecord` of a run folder (runs of every cryostream version so far).

    Raises
    ------
    StoreError
        If ``run`` is not a run folder, or its ``config.json`` is not JSON.
    ConfigError
        If the record's keys or values are not a run record's.
    """
    run = check_run(run)
    try:
        data = json.loads((run / RECORD_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{run / RECORD_FILE}: not a JSON run record ({exc}); the run folder "
                         "is damaged: train again") from exc
    return RunRecord.from_dict(data, run)


def save_record(run, record: RunRecord) -> None:
    """Write ``record`` as ``run/config.json``, creating the folder if needed."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    (run / RECORD_FILE).write_text(json.dumps(record.to_dict(), indent=2))


def checkpoint_manager(run, keep: int | None = None, *, create: bool = False):
    """The orbax ``CheckpointManager`` of ``run/checkpoints``.

    Parameters
    ----------
    run : path-like
        The run folder.
    keep : int, optional
        Checkpoints kept when saving (the last ``keep``); ``None`` keeps all.
    create : bool
        Create the folder (training); reading leaves the disk alone.
    """
    import orbax.checkpoint as ocp

    return ocp.CheckpointManager(
        (Path(run) / CHECKPOINTS).absolute(),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=create),
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


def _other_steps(run, step: int) -> str:
    others = [s for s in checkpoint_steps(run) if s != step]
    if not others:
        return "train the run again"
    return (f"its other checkpoints are at steps {others}: remove {Path(run) / CHECKPOINTS / str(step)} "
            "to fall back to the one before, or train again")


def save_checkpoint(manager, step: int, state: dict, meta: dict) -> None:
    """Save a training checkpoint: ``state``, its ``params`` alone, and ``meta`` (JSON).

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
    """
    import orbax.checkpoint as ocp

    params_sha, finite = tree_checksum(state["params"])
    if not finite:
        raise StoreError(f"step {step}: the parameters hold NaN or Inf values, so no checkpoint "
                         "was written; training diverged (lower --lr, or check the store)")
    meta = {**meta, "params_sha256": params_sha, "state_sha256": tree_checksum(state)[0]}
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               params=ocp.args.StandardSave(state["params"]),
                                               meta=ocp.args.JsonSave(meta)))


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

    run = check_run(run)
    steps = checkpoint_steps(run)
    if not steps:
        raise StoreError(f"{run}: no checkpoint in {run / CHECKPOINTS}; train first "
                         "(cryostream train, or train(..., resume=True) to finish a run)")
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


def load_model(run, step: int | None = None) -> tuple[UNet, RunRecord]:
    """The trained network of a run folder and its record; parameters only, no optimizer.

    Parameters
    ----------
    run : path-like
        A folder written by :func:`cryostream.training.train`.
    step : int, optional
        The checkpoint's step; the last one by default.

    Returns
    -------
    (UNet, RunRecord)
        The network (call it on float32 ``(batch, y, x, 1)`` arrays) and the run's record.

    Raises
    ------
    StoreError
        If ``run`` is not a run folder, has no checkpoint, or none at ``step``.
    """
    import jax
    from flax import nnx

    from cryostream.models.unet import UNet

    record = load_record(run)
    abstract = nnx.eval_shape(lambda: UNet(record.model_config, rngs=nnx.Rngs(0)))
    graphdef, shapes = nnx.split(abstract, nnx.Param)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract_params = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), shapes)
    params, _ = load_params(record.path, abstract_params, step)
    return nnx.merge(graphdef, params), record
