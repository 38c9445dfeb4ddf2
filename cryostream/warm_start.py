"""Where a training starts: the parameters of a shipped model, an exported ``.npz`` or another
run, checked against the network they initialise.

:func:`start_params` loads them (``TrainConfig.init``, ``cryostream fit --from``) and refuses a
network of another shape; :func:`matching_params` puts any parameter tree into the tree of the
network being trained, or names the first parameter that does not fit. The optimizer always
starts fresh: only the parameters carry over, and (:func:`inherited_weights`) the start's table
of learned weights where the run's output keeps its meaning.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from cryostream.errors import ConfigError

__all__ = ["describe_network", "same_network", "start_params", "inherited_weights",
           "matching_params"]


def _bare(config):
    return dataclasses.replace(config, compute_dtype="float32")


def same_network(a, b) -> bool:
    """Whether two :class:`~cryostream.models.ModelConfig` describe the same network: every
    field equal but the compute precision (parameters are float32 either way)."""
    return _bare(a) == _bare(b)


def describe_network(config) -> str:
    """A network's shape in words: ``"unet, residual"``, or its fields when it is no preset."""
    from cryostream.models.unet import PRESETS

    plain = dataclasses.replace(_bare(config), residual=False)
    default = type(config)()
    shaped = "".join(words.format(getattr(config, field)) for field, words in (
        ("growth", ", channels ×{} per level"), ("max_width", ", at most {} channels"),
        ("encoder_convs", ", {} convolutions per encoder level"))
        if getattr(config, field) != getattr(default, field))
    name = next((n for n, p in PRESETS.items() if _bare(p) == plain),
                f"a U-Net of width {config.width}, {config.levels} levels, first kernel "
                f"{config.first_kernel}, head {config.head}{shaped}")
    return f"{name}, {'residual' if config.residual else 'not residual'}"


def start_params(init: str, model_config, instead: str = "a model of the same shape",
                 residual_flag: bool = True):
    """The parameters a run starts from, for a network of ``model_config``.

    Parameters
    ----------
    init : str
        A shipped model's name (``"general"``, :data:`cryostream.denoise.network.SHIPPED`), an
        exported ``.npz`` (:mod:`cryostream.models.export`) or a run folder (its last
        checkpoint's parameters).
    model_config : cryostream.models.ModelConfig
        The network being trained; ``init``'s must equal it (:func:`same_network`).

    Returns
    -------
    nnx.State
        The parameters (float32), in the tree of a network of ``model_config``.

    Raises
    ------
    ConfigError
        If ``init`` names nothing, or its network has another shape (naming both).
    StoreError
        If the run folder has no checkpoint or the file is not an export.
    """
    from flax import nnx

    from cryostream.denoise.network import SHIPPED, load_model_file, model_path

    path = Path(model_path(init))
    if init not in SHIPPED and not path.exists():
        raise ConfigError(f"init={init!r} (--from): no such run folder or file; pass a shipped "
                          f"model ({', '.join(map(repr, sorted(SHIPPED)))}), a run folder that "
                          "cryostream train or fit wrote or an exported .npz (with fit, "
                          "'scratch' starts from random parameters)")
    model, _ = load_model_file(str(path))
    if not same_network(model.config, model_config):
        raise ConfigError(f"init={init!r} (--from): its network is {describe_network(model.config)}"
                          f", this run's is {describe_network(model_config)}; give this run "
                          f"its network{_options_for(model.config, residual_flag)}, start from {instead}, or "
                          "from scratch (--from scratch)")
    return nnx.split(model, nnx.Param)[1]


def _options_for(config, residual_flag: bool) -> str:
    """The options that train a network of ``config``, where it is a preset: `` (--model unet
    --residual; Python: TrainConfig(model='unet', residual=True))`` (no ``--residual`` without
    ``residual_flag``: fit's command line trains residual networks); else nothing."""
    from cryostream.models.unet import PRESETS

    plain = dataclasses.replace(_bare(config), residual=False)
    name = next((n for n, p in PRESETS.items() if _bare(p) == plain), None)
    if name is None:
        return ""
    flags, fields = f"--model {name}", f"model={name!r}"
    if config.residual:
        fields += ", residual=True"
        if residual_flag:
            flags += " --residual"
    elif not residual_flag:  # fit's command line trains residual networks only
        return f" (fit's command line trains residual networks only; Python: TrainConfig({fields}))"
    return f" ({flags}; Python: TrainConfig({fields}))"


def inherited_weights(record) -> dict | None:
    """The table of learned weights a run of ``record`` (a
    :class:`~cryostream.runs.RunRecord`) carries from the model it starts from
    (``record.train.init``), or ``None``.

    The table weighs the network's output as an estimate of the clean micrograph, against the
    truth (:mod:`cryostream.denoise.weights`); a run that starts from a model with a table and
    still estimates the clean micrograph (recorrupted targets, :attr:`RunRecord.estimates_clean
    <cryostream.runs.RunRecord.estimates_clean>`) keeps it: a gentle fine-tuning from the
    general model (``cryostream fit``'s default) denoises with the general model's recipe. A
    run trained for Noisier2Noise estimates the noisy micrograph instead and has none.
    """
    from cryostream.denoise.network import model_record
    from cryostream.errors import StoreError

    if record.train.init is None or not record.estimates_clean:
        return None
    try:
        return model_record(record.train.init).learned_weights
    except StoreError:  # an export without its record: it has no table to pass on
        return None


def matching_params(own, given, where: str = "the given parameters"):
    """``given``'s values in the tree of ``own``, the parameters of the network being trained.

    Parameters
    ----------
    own : pytree
        The network's own parameters (``nnx.split(model, nnx.Param)[1]``).
    given : pytree
        Parameters of the same network: an ``nnx.State``, or nested dicts and lists of arrays
        with the same names (``State.to_pure_dict()``).
    where : str
        What ``given`` is, for the message.

    Returns
    -------
    pytree
        ``own``'s tree holding ``given``'s values, in ``own``'s dtypes.

    Raises
    ------
    ConfigError
        If a parameter is missing, extra, or of another shape.
    """
    import jax
    import jax.numpy as jnp

    from cryostream.models.export import param_name

    own_leaves, treedef = jax.tree_util.tree_flatten_with_path(own)
    have = {param_name(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(given)[0]}
    want = {param_name(p): leaf for p, leaf in own_leaves}
    if set(have) != set(want):
        odd = sorted(set(have) ^ set(want))
        raise ConfigError(f"{where}: parameters {', '.join(odd[:4])}{' …' if len(odd) > 4 else ''}"
                          " are not this network's; start from parameters of the same model")
    for name, leaf in want.items():
        if tuple(np.shape(have[name])) != tuple(leaf.shape):
            raise ConfigError(f"{where}: parameter {name} has shape {tuple(np.shape(have[name]))},"
                              f" this network's {tuple(leaf.shape)}; start from parameters of "
                              "the same model")
    return jax.tree_util.tree_unflatten(
        treedef, [jnp.asarray(have[param_name(p)], dtype=leaf.dtype) for p, leaf in own_leaves])
