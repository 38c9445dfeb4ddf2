"""A trained run's network, loaded once per process: parameters only, compiled once per shape."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

__all__ = ["Network", "load_network"]


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
    """

    apply: Any
    params: Any
    config: Any
    record: Any


@functools.lru_cache(maxsize=4)
def load_network(run: str) -> Network:
    """The :class:`Network` of a run folder (its last checkpoint), cached per process."""
    import jax
    from flax import nnx

    from cryostream.runs import load_model

    model, record = load_model(run)
    graphdef, params = nnx.split(model)
    apply = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))
    return Network(apply=apply, params=params, config=model.config, record=record)
