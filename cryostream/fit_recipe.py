"""What a fit trains: the store of the validated recipe (:func:`recipe`), and the training for
where it starts (:func:`training_for`): the general model fine-tuned gently on recorrupted
targets (:data:`FINETUNE_TRAIN`, the default), or the recipe's Noisier2Noise training
(:data:`RECIPE_TRAIN`) from scratch or from a model trained for it."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from cryostream.config import NoiseConfig, PrepareConfig, TrainConfig
from cryostream.errors import ConfigError, StoreError
from cryostream.fit_run import made_before
from cryostream.patches import patch_to_fit
from cryostream.prepare import MODEL_MULTIPLE

__all__ = ["RECIPE_NOISE", "RECIPE_TRAIN", "FINETUNE_TRAIN", "DEFAULT_START", "recipe",
           "check_fit_patch", "training_for", "training", "as_made_before", "start_words", "start_label"]

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
