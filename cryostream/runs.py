"""What a trained run is: its typed record, its checkpoints, and its model.

A run folder, written by :func:`cryostream.training.train`, holds ``config.json`` (the
:class:`RunRecord`), ``metrics.jsonl``, ``loss.png`` and ``checkpoints/STEP/``. The
checkpoints are :mod:`cryostream.checkpoints`'s (saved checked, restored verified); this module
re-exports its names. Each has three orbax items: ``state`` (``{"params", "opt_state",
"step"}``, for resuming), ``params`` (the network's parameters alone, for inference) and
``meta`` (the loader position and the record). Runs trained before the ``params`` item existed
load too: only the parameters of their ``state`` item are read.

Inference imports this module, never the trainer: :func:`load_model` builds no optimizer.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryostream._version import __version__
from cryostream.checkpoints import (
    CHECKPOINTS,
    checkpoint_manager,
    checkpoint_steps,
    load_params,
    restore_state,
    save_checkpoint,
    tree_checksum,
)
from cryostream.config import NoiseConfig, PrepareConfig, TrainConfig, from_dict, to_dict
from cryostream.errors import ConfigError, StoreError
from cryostream.io.paths import write_whole

if TYPE_CHECKING:
    from cryostream.models.unet import ModelConfig, UNet

__all__ = ["RECORD_FILE", "CHECKPOINTS", "RunRecord", "check_run", "load_record", "save_record",
           "checkpoint_manager", "checkpoint_steps", "save_checkpoint", "restore_state",
           "load_params", "load_model", "tree_checksum", "resume_differences", "last_evaluation",
           "logged_rows", "check_run_folder", "check_fresh_noise"]

#: The record's file name inside a run folder.
RECORD_FILE = "config.json"


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
    learned_weights : dict, optional
        Tables of output weights fitted on simulated micrographs with their truth
        (:mod:`cryostream.denoise.weights`): ``{"ensemble": …, "single": …}``, each a
        :meth:`~cryostream.denoise.weights.LearnedWeights.to_dict`. ``None`` for runs
        trained on a user's micrographs, which have no truth to fit them on.
    """

    path: Path
    train: TrainConfig
    prepare: PrepareConfig
    store: str
    version: str = __version__
    model_config: ModelConfig | None = None
    learned_weights: dict | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path).absolute())
        object.__setattr__(self, "store", str(self.store))
        if not isinstance(self.train, TrainConfig):
            raise ConfigError(f"train={self.train!r}: must be a TrainConfig")
        if not isinstance(self.prepare, PrepareConfig):
            raise ConfigError(f"prepare={self.prepare!r}: must be a PrepareConfig")
        if self.model_config is None:
            object.__setattr__(self, "model_config", self.train.model_config())
        if self.learned_weights is not None:
            from cryostream.denoise.weights import LearnedWeights

            if not isinstance(self.learned_weights, dict) or not self.learned_weights or \
                    not set(self.learned_weights) <= {"ensemble", "single"}:
                raise ConfigError(f"learned weights: a table for 'ensemble' and/or 'single', not "
                                  f"{self.learned_weights!r:.80}")
            for table in self.learned_weights.values():
                LearnedWeights.from_dict(table)

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
        """The model preset (``unet-small``, ``unet``, ``unet-large``, ``unet-deep``)."""
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

    @property
    def estimates_clean(self) -> bool:
        """Whether the network's output estimates the clean micrograph: trained on targets
        without added noise, or on recorrupted ones. (Trained on micrographs with added noise,
        it estimates the micrograph, and denoising corrects it: Noisier2Noise.)"""
        return self.noise.model == "none" or self.recorrupt

    def to_dict(self) -> dict[str, Any]:
        """The JSON layout of ``config.json`` (``path`` is not written)."""
        out = {"cryostream_version": self.version, "train": to_dict(self.train),
               "model": to_dict(self.model_config), "prepare": to_dict(self.prepare),
               "store": self.store}
        if self.learned_weights is not None:
            out["learned_weights"] = self.learned_weights
        return out

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
        if not isinstance(data, dict) or not expected <= set(data) <= expected | {"learned_weights"}:
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ConfigError(f"{path}: a run record has the keys {sorted(expected)} (and "
                              f"learned_weights), not {keys}")
        return cls(path=Path(path), train=from_dict(TrainConfig, data["train"]),
                   prepare=from_dict(PrepareConfig, data["prepare"]), store=data["store"],
                   version=data["cryostream_version"],
                   model_config=from_dict(ModelConfig, data["model"]),
                   learned_weights=data.get("learned_weights"))


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
    if run.is_file():  # a micrograph or a store given as the model, say
        raise StoreError(f"{run}: a file, not a model (a run folder or an exported .npz); pass "
                         "the folder that cryostream train or fit wrote")
    if not (run / RECORD_FILE).is_file():
        if (run / "fit.json").is_file():  # fit_run.FIT_RECORD: the fit stopped before training
            raise StoreError(f"{run}: its cryostream fit stopped before training began (fit.json, "
                             f"no {RECORD_FILE} or checkpoint yet); run the same fit command "
                             "again: it goes on from its work folder and trains the model")
        raise StoreError(f"{run}: not a run folder (no {RECORD_FILE}); pass the folder that "
                         "cryostream train or fit wrote")
    return run


def load_record(run) -> RunRecord:
    """The :class:`RunRecord` of a run folder (runs of every cryostream version so far).

    Raises
    ------
    StoreError
        If ``run`` is not a run folder, or its ``config.json`` is not JSON.
    ConfigError
        If the record's keys or values are not a run record's (a key missing or unknown, a
        value of the wrong kind or out of range); the message names ``config.json``.
    """
    run = check_run(run)
    path = run / RECORD_FILE
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: not a JSON run record ({exc}); the run folder is damaged: "
                         "train again") from exc
    try:
        return RunRecord.from_dict(data, run)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # ConfigError included
        reason = str(exc).removeprefix(f"{run}: ")
        fix = ("correct it, or remove its learned_weights entry (or fit them again with "
               "benchmarks/fit_learned_weights.py)" if "learned weights" in reason
               else "correct it, or train the run again")
        raise ConfigError(f"{path}: not a valid run record ({reason}); it was edited or "
                          f"damaged: {fix}") from None


def logged_rows(path) -> list[dict]:
    """The rows of a ``metrics.jsonl`` (each a dict with a whole-number ``step``), in order; a
    line cut short (a full disk, a kill while it was written) or not a row is left out, and no
    file gives ``[]``."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def last_evaluation(run) -> dict:
    """The last evaluation on a run folder's test split, from its ``metrics.jsonl``: ``step``,
    ``psnr`` and ``noisy_psnr`` (the network's output and the noisy input against the
    target), …; ``{}`` if it has none (no test split, not evaluated yet, an exported model)."""
    for row in reversed(logged_rows(Path(run) / "metrics.jsonl")):
        if "eval_psnr" in row:
            return {"step": row["step"]} | {k[5:]: v for k, v in row.items() if k.startswith("eval_")}
    return {}


def check_fresh_noise(store, prepared) -> None:
    """A :class:`ConfigError` unless the store's noise can be moved (:class:`TrainConfig`
    ``fresh_noise``): only where ``input − target`` is noise alone and the target has none of
    its own, a store of noisy micrographs paired with clean targets (``prepare(targets=...)``,
    noise ``none``), not even/odd halves."""
    where = f"fresh_noise=True (--fresh-noise): {store}"
    if prepared.noise.mode == "on-device":
        raise ConfigError(f"{where} holds no stored noisy input to move: its noise is drawn on "
                          "the device at every step already; leave --fresh-noise off")
    if prepared.noise.model != "none":
        raise ConfigError(f"{where} stores the micrographs with {prepared.noise.model} noise "
                          "added, whose target keeps the micrograph's own noise; prepare it with "
                          "--noise-mode on-device for a fresh draw at every step instead")
    from cryostream.store import open_dataset

    with open_dataset(store) as f:
        sources, targets = (set(json.loads(f.attrs.get(k, "[]"))) for k in ("sources", "targets"))
    if sources & targets:
        raise ConfigError(f"{where} pairs even/odd halves, whose targets carry noise of their "
                          "own: moving input − target would put the target's noise into the "
                          "input; leave --fresh-noise off for such a store")


#: Files of data a run folder is not: micrographs, movies, stores, lists, arrays.
_DATA = (".mrc", ".mrcs", ".tif", ".tiff", ".eer", ".h5", ".hdf5", ".star", ".cs", ".npz", ".npy")


def check_run_folder(run, resume: bool) -> None:
    """Refuse, before anything is written, a folder that holds no run where one is expected:
    ``resume`` with no run there (a mistyped name would start a new training silently), or a
    folder of data (a simulation's folders, micrographs, stores) to train into. A fit's folder
    (fit checks it), hidden files (the lock) and notes or logs (``train.log``) are no
    obstacle."""
    from cryostream.locks import LOCK_NAME

    run = Path(run)
    if (run / RECORD_FILE).is_file() or (run / "fit.json").is_file():  # fit checks its own
        return
    if resume and not (run / LOCK_NAME).exists():  # (a run being begun: the lock says whose)
        raise StoreError(f"{run}: resume=True (--resume), but no run is there (no {RECORD_FILE}); "
                         "check the folder's name, or leave out --resume to start a run")
    if run.is_file():
        raise StoreError(f"{run}: is a file; give a folder for the run (-o)")
    other = sorted(p.name for p in run.iterdir() if not p.name.startswith(".") and p.name != CHECKPOINTS
                   and (p.is_dir() or p.suffix.lower() in _DATA)) if run.is_dir() else []  # a log: fine
    if other:
        shown = ", ".join(other[:3]) + (" …" if len(other) > 3 else "")
        raise StoreError(f"{run}: holds other files ({shown}), not a run; train into a new or "
                         "empty folder (-o)")


def save_record(run, record: RunRecord) -> None:
    """Write ``record`` as ``run/config.json``, creating the folder if needed."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    write_whole(run / RECORD_FILE, json.dumps(record.to_dict(), indent=2))  # kept if it fails


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
    if not checkpoint_steps(record.path):
        raise StoreError(f"{record.path}: no checkpoint in {record.path / CHECKPOINTS}; train "
                         "first (cryostream train; to finish a run: cryostream train --resume, "
                         "in Python train(..., resume=True)), or, for a run made by cryostream "
                         "fit, run the same fit command again")
    abstract = nnx.eval_shape(lambda: UNet(record.model_config, rngs=nnx.Rngs(0)))
    graphdef, shapes = nnx.split(abstract, nnx.Param)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract_params = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), shapes)
    params, _ = load_params(record.path, abstract_params, step)
    return nnx.merge(graphdef, params), record
