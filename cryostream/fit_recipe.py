"""What a fit trains: the store of the validated recipe (:func:`recipe`), and the training for
where it starts (:func:`training_for`): the general model fine-tuned gently on recorrupted
targets (:data:`FINETUNE_TRAIN`, the default), or the recipe's Noisier2Noise training
(:data:`RECIPE_TRAIN`) from scratch or from a model trained for it; how long it trains for its
budget, and its learning rate's warm-up (:func:`scheduled`), said where a fit ends within it
(:func:`warn_within_warmup`)."""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from pathlib import Path

from cryostream.config import NoiseConfig, PrepareConfig, TrainConfig
from cryostream.errors import ConfigError, StoreError
from cryostream.fit_run import FIT_RECORD, made_before
from cryostream.patches import patch_to_fit
from cryostream.prepare import MODEL_MULTIPLE

__all__ = ["RECIPE_NOISE", "RECIPE_TRAIN", "FINETUNE_TRAIN", "DEFAULT_START", "recipe",
           "check_fit_patch", "training_for", "training", "as_made_before", "start_words", "start_label",
           "WarmupWarning", "scheduled", "warn_within_warmup"]

_log = logging.getLogger("cryostream")

#: The added noise of the validated recipe: each micrograph's own measured noise, as strong
#: (``α`` = 1), drawn fresh on the device every step (``prepare --noise matched --alpha 1``).
RECIPE_NOISE = NoiseConfig(model="matched", alpha=1.0, mode="on-device")
#: The training of the validated recipe (``train --model unet --residual``), the rest
#: :class:`~cryostream.config.TrainConfig`'s defaults. The shipped general model has this shape.
RECIPE_TRAIN = TrainConfig(model="unet", residual=True)
#: How a fit trains from the general model (the default): gently (a tenth of the recipe's
#: learning rate, 600 steps) on recorrupted targets (``y − m/α`` against ``y + α·m``, ``m`` the
#: store's matched noise; Pang et al., CVPR 2021), so the network's output still estimates the
#: clean micrograph, as the general model's does, and the general model's table of learned
#: weights still applies (:func:`~cryostream.warm_start.inherited_weights`).
FINETUNE_TRAIN = dataclasses.replace(RECIPE_TRAIN, recorrupt=True, learning_rate=1e-4, steps=600,
                                     init="general")
#: Where a fit starts when ``start`` and ``train`` are not given.
DEFAULT_START = "general"


def recipe(shape: tuple[int, int], multiple: int = MODEL_MULTIPLE,
           patch_size: int | None = None) -> PrepareConfig:
    """The store of the validated recipe for micrographs of ``shape`` (rows, columns).

    :class:`~cryostream.config.PrepareConfig`'s defaults with :data:`RECIPE_NOISE`; the patch
    is its default (1024 px, stride half of it) on micrographs at least twice as large, and
    halved until two fit along the shorter side on smaller ones (never under the network's
    ``multiple``: 32 px, 64 for ``unet-deep``; :func:`~cryostream.patches.patch_to_fit`).
    ``patch_size`` (``fit --patch``) is the patch instead, the stride in the same ratio to it
    (half); ``fit`` checks that the network takes it and that the micrographs hold it.

    Raises
    ------
    ConfigError
        Without ``patch_size``, if the micrographs are smaller than one patch of ``multiple``
        px; a ``patch_size`` that is no whole number > 0.
    """
    default = PrepareConfig()
    patch = patch_to_fit(shape, default.patch_size, multiple) if patch_size is None else \
        PrepareConfig(patch_size=patch_size).patch_size  # a whole number > 0, or said by name
    stride = max(1, patch * default.stride // default.patch_size)
    return dataclasses.replace(default, patch_size=patch, stride=stride, noise=RECIPE_NOISE)


def check_fit_patch(patch: int, shape: tuple[int, int], multiple: int) -> None:
    """Refuse a patch side (``fit --patch``) of 0 px or less, or larger than micrographs of
    ``shape``, saying what a patch side is and naming one that would do (a multiple of the
    network's ``multiple``, at most the micrographs' side), or none: the size :func:`recipe`
    picks. (A ConfigError of its own where the micrographs hold no patch at all.)"""
    if 0 < patch <= min(shape):
        return
    (ny, nx), most = shape, min(shape) // multiple * multiple
    picked = recipe(shape, multiple).patch_size  # (micrographs under one patch: said there)
    if patch <= 0:
        raise ConfigError(f"patch_size={patch} (--patch): a patch side is a positive multiple of "
                          f"{multiple} px, at most {most} for these micrographs (e.g. --patch "
                          f"{picked}; Python: patch_size={picked}), or leave it out")
    raise ConfigError(f"patch_size={patch} (--patch): larger than the micrographs ({ny} × {nx}); "
                      f"give at most {most} (--patch {most}; Python: patch_size={most}), or leave "
                      f"it out: fit picks {picked} px for them")


def training_for(start, run: Path) -> TrainConfig:
    """The training a fit from ``start`` (``"scratch"``, ``"general"``, a run folder or an
    ``.npz``) gets when none is given: :data:`FINETUNE_TRAIN` from a model whose output
    estimates the clean micrograph, :data:`RECIPE_TRAIN` from scratch or from a model trained
    for Noisier2Noise (or without a record); ``init`` set. ``run``: the absolute run folder."""
    from cryostream.denoise.network import model_record

    if str(start) == "scratch":
        return RECIPE_TRAIN
    init = start_label(start, run)
    try:
        clean = model_record(init).estimates_clean
    except StoreError:  # no such model (start_params names it), or an export without a record
        clean = False
        if Path(init).is_file():
            _log.info("%s has no run record to say what its output estimates: it trains on as "
                      "from scratch (Noisier2Noise, learning rate %g)", init,
                      RECIPE_TRAIN.learning_rate)
    return dataclasses.replace(FINETUNE_TRAIN if clean else RECIPE_TRAIN, init=init)


def training(start, train: TrainConfig | None, run: Path) -> TrainConfig:
    """The training of a fit (see :func:`fit`'s ``start`` and ``train``), ``init`` set."""
    if train is None:
        return training_for(DEFAULT_START if start is None else start, run)
    if start is None:
        return train
    return dataclasses.replace(train, init=None if str(start) == "scratch" else
                               start_label(start, run))


def as_made_before(run: Path, start, config: TrainConfig) -> TrainConfig:
    """``config``, or the training of a fit in ``run`` that an earlier version made with the
    recipe it used for this ``start`` (Noisier2Noise, :data:`RECIPE_TRAIN`, from scratch when
    no start was given): the same command continues it as it was made."""
    if str(start) == "scratch":
        return config
    earlier = dataclasses.replace(RECIPE_TRAIN, init=None if start is None else
                                  start_label(start, run))
    if earlier == config or not made_before(run, earlier):
        return config
    _log.info("%s holds a fit that an earlier version made %s, its default then: continued as it "
              "was made (--overwrite fits it anew %s)", run, start_words(earlier),
              start_words(config))
    return earlier


def start_words(config: TrainConfig) -> str:
    """Where a new fit starts and how it trains, in words."""
    if config.init is None:
        return "from scratch"
    what = "the general model" if config.init == DEFAULT_START else config.init
    if not config.recorrupt:
        return f"from {what}"
    return (f"from {what}, fine-tuned gently (recorrupted targets, learning rate "
            f"{config.learning_rate:g}; its learned weights kept where it has them)")


def start_label(start, run: Path) -> str:
    """``start`` as recorded: a shipped model's name, or an absolute path."""
    from cryostream.denoise.network import SHIPPED

    if str(start) in SHIPPED:
        return str(start)
    path = Path(start).absolute()
    if path == run:
        raise ConfigError(f"start={str(Path(start))!r} (--from): that is the output run itself; to "
                          "continue it, run the same command without --from changes")
    return str(path)


class WarmupWarning(UserWarning):
    """A fit ended within its learning rate's warm-up: its model is the one it started from
    (after one step, whose rate is 0), or nearly."""


def scheduled(config: TrainConfig, budget, run: Path, overwrite: bool) -> tuple[TrainConfig, dict]:
    """The training of a fit for ``budget`` (a :class:`~cryostream.budget.Budget` or None): its
    steps and its learning rate's warm-up, and what ``fit.json`` records of the training's own
    before the budget (``{"training_steps", "training_warmup_steps"}``).

    A budget in steps sets the steps, and the warm-up keeps its share of them, at least one
    step: the general model's fine-tuning warms up over 100 of its 600 steps, so over 10 of a
    budget of 60 (it had warmed up over all of them but one, and a budget of 1 step, whose
    rate is 0, left the general model as it was); a budget of at least the training's own
    steps keeps its warm-up (``--budget 600steps`` trains as no budget does). A time budget
    keeps the steps of the run it continues (those of a budget in steps that made it), or the
    training's own, and the warm-up that goes with them. A run continued from its checkpoints
    keeps the warm-up it was trained with (unless ``overwrite``)."""
    own = {"training_steps": config.steps, "training_warmup_steps": config.warmup_steps}
    before = {} if overwrite else _recorded(run)
    train = before.get("train") if isinstance(before.get("train"), dict) else {}
    steps = budget.steps if budget is not None and budget.steps else None
    if budget is not None and steps is None and _whole(train.get("steps")):  # a time budget
        steps = train["steps"]  # goes on with the run's own schedule (a budget in steps set it)
    steps = steps or config.steps
    warmup = min(config.warmup_steps, max(1, config.warmup_steps * steps // max(config.steps, 1)))
    schedule = before.get("schedule") if isinstance(before.get("schedule"), dict) else {}
    asked = schedule.get("training_warmup_steps", train.get("warmup_steps"))  # (earlier: as used)
    if asked == config.warmup_steps and _whole(train.get("warmup_steps")) and _trained(run):
        warmup = train["warmup_steps"]  # its checkpoints' schedule (an earlier version's too)
    return dataclasses.replace(config, steps=steps, warmup_steps=warmup), own


def _recorded(run: Path) -> dict:
    """The request of an earlier fit in ``run`` (its ``fit.json``), or ``{}``."""
    try:
        request = json.loads((run / FIT_RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return request if isinstance(request, dict) else {}


def _whole(value) -> bool:
    """Whether ``value`` is a whole number > 0 (a count of steps a record gives)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _trained(run: Path) -> bool:
    """Whether ``run`` holds a checkpoint (a training begun, whose schedule a resume keeps)."""
    from cryostream.runs import checkpoint_steps

    return bool(checkpoint_steps(run))


def warn_within_warmup(run: Path, config: TrainConfig, steps: int, own: dict,
                       result=None) -> None:
    """Warn (:class:`WarmupWarning`) where the run, at ``steps`` of ``config.steps``, has not
    trained past its learning rate's warm-up: after one step its model is the one it started
    from (the first step's rate is 0), within the warm-up nearly so. The warning says how much
    more it needs: the steps (and, at the pace of ``result``, this call's
    :class:`~cryostream.training.TrainResult`, about how long) to leave the warm-up and to end
    the fit, or, for a fit that trained all its steps, a budget of more (``own``: the
    training's own steps, :func:`scheduled`)."""
    from cryostream.progress import duration

    warmup = min(config.warmup_steps, max(config.steps - 1, 1))  # as training.make_optimizer cuts it
    if not 0 < steps <= warmup:
        return
    start = ("its random start (from scratch)" if config.init is None else "the general model"
             if config.init == DEFAULT_START else f"the model it started from ({config.init})")
    rate = ("its one step trains at a learning rate of 0" if steps == 1 else
            f"its last step at {100 * (steps - 1) / warmup:.0f}% of the full rate")
    pace = getattr(result, "patches_per_second", None)
    per_step = config.batch_size / pace if pace else None

    def more(count: int) -> str:
        return f"{count} more step{'s' * (count > 1)}" + (
            f" (about {duration(count * per_step)} at this call's pace)" if per_step else "")

    if steps < config.steps:  # the time ran out
        then = (f"it needs {more(warmup + 1 - steps)} to leave the warm-up, and "
                f"{more(config.steps - steps)} to end its {config.steps}: run the same command "
                "again (a larger --budget trains more in one call)")
    else:
        total = max(own.get("training_steps") or 0, 10 * steps)
        then = (f"a --budget of more steps continues it: --budget {total}steps, say, "
                f"{more(total - steps)}")
    what = "is" if steps == 1 else "is still nearly"
    warnings.warn(f"{run}: trained {steps} step{'s' * (steps > 1)}, within the learning rate's "
                  f"warm-up ({warmup} step{'s' * (warmup > 1)}; {rate}), so its model {what} "
                  f"{start}; {then}", WarmupWarning, stacklevel=4)  # (fit → _fit → here)
