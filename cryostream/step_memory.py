"""Memory for a training step, so that a GPU or a laptop with less memory trains the same
recipe in micro-batches instead of running out of it.

One training step takes the memory XLA plans for it (``memory_analysis``): mostly the
activations the backward pass keeps. For ``fit``'s batch of 8 patches of 1024² (the ``unet``
in bfloat16) that is 7.9–8.9 GB on an H100 (15.7 GB as the CPU's compiler plans it), more than
the 6.6 GB an 11 GB card has for it (JAX holds 75 % of a card). :func:`fitted_step` measures the step compiled
for the whole batch against what the network may take
(:func:`cryostream.denoise.memory.network_memory`: 80 % of the device memory JAX holds, a
quarter of the host's on a CPU, or ``CRYOSTREAM_NETWORK_MEMORY_GB``) and, where it does not
fit, splits each batch into micro-batches whose gradients are summed before the one update
(:class:`MicroBatchedStep`): the same batch, learning rate and steps, in a few more passes.
The losses ``mse`` and ``l1`` are means over the batch, so the summed gradient is the whole
batch's up to rounding; ``bands`` normalises by the power of each micro-batch. A note says so.
"""

from __future__ import annotations

import logging

from cryostream.denoise import memory
from cryostream.denoise.memory import memory_size, sizes_apart
from cryostream.errors import ConfigError, DeviceMemoryError

__all__ = ["micro_batch", "whole_batch", "MicroBatchedStep", "step_bytes", "fitted_step",
           "smaller_patch", "training_out_of_memory"]

_log = logging.getLogger("cryostream")


def micro_batch(x, parts: int, j):
    """Micro-batch ``j`` of ``parts`` of the batch ``x`` (patches ``j, j + parts, …``, so that
    each spans every device of a sharded batch); ``j`` may be traced."""
    import jax.numpy as jnp

    if x.shape[0] % parts:
        raise ValueError(f"micro_batches={parts} must divide the batch of {x.shape[0]} patches")
    return jnp.take(x.reshape(x.shape[0] // parts, parts, *x.shape[1:]), j, axis=1)


def whole_batch(parts_out: list):
    """The per-patch figures of each micro-batch (:func:`micro_batch`), a list of dicts, put
    back in the batch's order."""
    import jax.numpy as jnp

    return {k: jnp.stack([o[k] for o in parts_out], axis=1).reshape(-1) for k in parts_out[0]}


class MicroBatchedStep:
    """A training step ``(state, batch) -> (state, metrics)`` in ``parts`` micro-batches, as
    :func:`cryostream.training.make_train_step` builds it from its pieces: ``inputs(count,
    batch)`` (the network's input and target for the whole batch, noise drawn as for one
    step), ``loss_fn(params, inp, target)`` and ``update(state, loss, gradients)``. Each
    micro-batch is one call of its own compiled program (patches ``j, j + parts, …``, so that
    each spans every device of a sharded batch), whose gradient is added to the sum; the mean
    is the one update. Separate calls, not a loop in one program: XLA runs the
    convolutions of a loop's body many times slower on a CPU, and a plain sequence of the
    parts in one program kept every part's memory in its plan."""

    def __init__(self, inputs, loss_fn, update, parts: int) -> None:
        import jax
        import jax.numpy as jnp

        def add(params, inp, target, j, total):
            return jax.tree.map(jnp.add, total, jax.value_and_grad(loss_fn)(
                params, micro_batch(inp, parts, j), micro_batch(target, parts, j)))

        def zero(params):
            return jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params)

        def mean_update(state, total):
            value, grads = jax.tree.map(lambda x: x / parts, total)
            return update(state, value, grads)

        self.parts = parts
        self.inputs = jax.jit(inputs)
        self.zero = jax.jit(zero)
        self.add = jax.jit(add, donate_argnums=4)
        self.update = jax.jit(mean_update, donate_argnums=0)

    def __call__(self, state, batch):
        inp, target = self.inputs(state["step"], batch)
        total = self.zero(state["params"])
        for j in range(self.parts):
            total = self.add(state["params"], inp, target, j, total)
        return self.update(state, total)

    def lowered(self, state, batch) -> list:
        """Its programs lowered for ``state`` and ``batch`` (for their memory plans), on the
        arrays (and shardings) the calls will see."""
        inp, target = self.inputs(state["step"], batch)
        total = self.zero(state["params"])
        return [self.inputs.lower(state["step"], batch), self.zero.lower(state["params"]),
                self.add.lower(state["params"], inp, target, 0, total),
                self.update.lower(state, total)]


#: What :func:`step_bytes` says of a step whose compiling ran out of device memory.
OVER = 1 << 62


def step_bytes(step, state, batch) -> int | None:
    """Bytes XLA plans for one call of the training ``step`` on ``state`` and ``batch`` (its
    temporary buffers, inputs and outputs; a :class:`MicroBatchedStep`'s largest program);
    None where the backend does not say; :data:`OVER` where compiling it ran out of device
    memory (XLA tunes each convolution on the device). The programs compiled here are those
    the calls run (JAX keeps them)."""
    import jax

    try:
        lowered = step.lowered(state, batch) if isinstance(step, MicroBatchedStep) \
            else [step.lower(state, batch)]
        plans = [program.compile().memory_analysis() for program in lowered]
    except (NotImplementedError, jax.errors.JaxRuntimeError) as exc:
        _log.debug("no memory plan for the training step: %s", exc)
        return OVER if memory.exhausted(exc) else None
    if any(plan is None for plan in plans):
        return None
    return max(int(plan.temp_size_in_bytes + plan.argument_size_in_bytes
                   + plan.output_size_in_bytes) for plan in plans)


def fitted_step(make_step, state, batch, config, patch: int, multiple: int):
    """The training step for ``batch`` (``config.batch_size`` patches of ``patch``²), as
    ``make_step(micro_batches=parts)`` builds it: in one part where XLA's plan fits the memory
    there is for the network, else in the fewest micro-batches (a divisor of the batch) that
    fit, with a note. The step returned turns the device running out of memory after all into
    a :class:`~cryostream.errors.DeviceMemoryError` saying what to change. A batch whose one
    patch does not fit is a :class:`~cryostream.errors.ConfigError` naming the largest smaller
    patch that does, measured (:func:`smaller_patch`; ``multiple``: the side the network's
    patches must be a multiple of), or saying that none does."""
    limit, source = memory.network_memory()
    size = config.batch_size
    parts, step = 1, make_step(micro_batches=1)
    need = step_bytes(step, state, batch) if limit is not None else None
    first = need
    while need is not None and need > limit and parts < size:
        guess = min(size, parts * 2 if need >= OVER  # else the plan goes about as 1/parts
                    else max(parts + 1, -(-need * parts // limit)))
        parts = next(p for p in range(guess, size + 1) if size % p == 0 or p == size)
        step = make_step(micro_batches=parts)
        need = step_bytes(step, state, batch)
    if need is not None and need > limit:  # one patch a micro-batch: ``step`` is that step
        side = _smallest_side(multiple)
        raise _no_patch_fits(need, limit, source, config, patch,
                             smaller_patch(step, state, batch, patch, side, limit))
    if parts > 1:
        whole = ("the update is the whole batch's" if config.loss in ("mse", "l1") else
                 f"the {config.loss} loss is weighed within each micro-batch")
        at_once, there = ("more than fits", memory_size(limit)) if first >= OVER \
            else sizes_apart(first, limit)  # (never the same figure twice: 1.04 GB, 1.00 GB)
        _log.info("each batch of %d patches of %d² is trained in %d micro-batches of %d (%s per "
                  "micro-batch, not %s at once) to fit the %s there is for the network (%s); %s",
                  size, patch, parts, size // parts, memory_size(need) if need else "size unknown",
                  at_once, there, source, whole)
    return _Guarded(step, parts, need, limit, size, patch)


def _smallest_side(multiple: int) -> int:
    """The smallest patch side ``prepare --patch`` and ``fit --patch`` take for a network whose
    patches are multiples of ``multiple``."""
    from cryostream.prepare import MODEL_MULTIPLE

    return max(multiple, MODEL_MULTIPLE)


def smaller_patch(step, state, batch, patch: int, side: int, limit: int) -> tuple[int, int | None]:
    """``(side, bytes)``: the largest of the sides ``patch`` halves to (multiples of ``side``,
    down to it) on which the training ``step`` fits ``limit`` bytes in XLA's plan
    (:func:`step_bytes`), measured on ``batch``'s patches cut to that side (a jit-compiled step
    is compiled again for the new shape: seconds each, so only for the error of a patch that
    does not fit). Where none fits, the smallest side and its bytes; where XLA gives no plan,
    the side and None; ``(patch, None)`` where ``patch`` is the smallest already."""
    at, need = patch, None
    while at > side:
        at = max(side, at // 2 // side * side)
        cut = {k: v[:, :at, :at] if getattr(v, "ndim", 0) == 3 else v for k, v in batch.items()}
        need = step_bytes(step, state, cut)
        if need is None or need <= limit:
            break
    return at, need


def _no_patch_fits(need: int, limit: int, source: str, config, patch: int,
                   smaller: tuple[int, int | None]) -> ConfigError:
    """The error of a training step whose one patch of ``patch``² takes more than the
    ``limit``: the largest smaller patch that fits (``smaller``: :func:`smaller_patch`, on
    sides ``prepare --patch`` and ``fit --patch`` take), else a smaller network (with smaller
    patches if need be: it cannot be measured here, being another model), or more memory, as
    they apply."""
    taken, there = (f"more than {memory_size(limit)}", memory_size(limit)) if need >= OVER \
        else sizes_apart(need, limit)
    wanted = 2 * limit if need >= OVER else 1.1 * need
    at, fits = smaller
    small = config.model == "unet-small"

    # a failed fit leaves its run record: another network's fit is refused without --overwrite
    def network(and_patch: bool = False) -> str:
        train = "--model unet-small" + (
            ", on a store of smaller patches if need be (cryostream prepare --patch N)"
            if and_patch else "")
        fit = ("the same command with --model unet-small --overwrite, which replaces this fit's run"
               + (", and --patch N if need be" if and_patch else ""))
        return f"from scratch, at some cost in quality; train: {train}; fit: {fit}"

    def patch_fix(figure: str = "") -> str:
        return (f"({figure}train: cryostream prepare --patch {at}, then train again; fit: the same "
                f"command with --patch {at} --overwrite, which prepares its store again; Python: "
                f"fit(..., patch_size={at}, overwrite=True))")

    said = f"one training step on a single patch of {patch}²"
    if at == patch:  # the smallest patch there is
        said += f" (the smallest the {config.model} takes)"
    said += f" takes {taken}, and {there} is there for the network ({source})"
    other = [] if small else [f"a smaller network ({network()})"]
    if at == patch:
        fixes = [] if small else [f"train a smaller network ({network()})"]
    elif fits is None:  # XLA gives no plan: the next patch down, unmeasured
        fixes = [f"train on smaller patches {patch_fix()}", *other]
    elif fits <= limit:
        fixes = [f"train on patches of {at}² {patch_fix(f'a step on one takes {memory_size(fits)}; ')}",
                 *other]
    else:
        said += (f"; no patch fits the {config.model} in {there} ("
                 f"{'more than that' if fits >= OVER else memory_size(fits)} even at {at}²)")
        fixes = [] if small else [
            f"train a smaller network, with smaller patches if need be ({network(and_patch=True)})"]
    fix = " or ".join(fixes)
    return ConfigError(
        f"{said}: " + (f"{fix}; or, if" if fix else "if") + " this machine (or its GPU) has more "
        f"free memory, set the environment variable {memory.ENV} higher (e.g. "
        f"{memory.ENV}={wanted / 1e9:.2g})")


class _Guarded:
    """A training step whose running out of device memory is said as what to change."""

    def __init__(self, step, parts: int, need, limit, batch_size: int, patch: int) -> None:
        self.step, self.parts, self.need, self.limit = step, parts, need, limit
        self.batch_size, self.patch = batch_size, patch

    def __call__(self, state, batch):
        try:
            return self.step(state, batch)
        except Exception as error:
            found = training_out_of_memory(error, self.batch_size // self.parts, self.patch,
                                           self.need, self.limit)
            if found is None:
                raise
            raise found from error


def training_out_of_memory(error: BaseException, patches: int, patch: int, need: int | None,
                           limit: int | None) -> DeviceMemoryError | None:
    """A :class:`~cryostream.errors.DeviceMemoryError` for XLA's ``RESOURCE_EXHAUSTED`` in a
    training step on ``patches`` patches of ``patch``² at once (``need`` bytes planned,
    ``limit`` there for the network), saying what to change; None for any other error."""
    found = memory.exhausted(error)
    if found is None:
        return None
    where, xla, other = found
    return DeviceMemoryError(
        f"the training step ran out of memory on the {where} with {patches} patches of "
        f"{patch}² at once{f', {memory_size(need)} planned' if need else ''} ({xla}): {other}give "
        f"the network less with the environment variable {memory.ENV}, "
        f"{memory.less_memory(limit)} before the command, so that each batch is trained in "
        "smaller micro-batches; the checkpoints so far are kept, and a rerun resumes (train: add "
        "--resume; fit: the same command)")
