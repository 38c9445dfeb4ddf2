"""``cryostream.train``: a U-Net trained on a store, with jit-compiled steps, checkpoints, metrics.

The program is a handful of pure pieces: :func:`create_train_state`, :func:`make_train_step`,
:func:`make_eval_step`, and :func:`train`, which runs them over a :class:`PatchLoader`.
State is a plain pytree ``{"params", "opt_state", "step"}``; the model's graph definition is
static. With several devices the batch is sharded over them and the state replicated. Run
records and checkpoints are :mod:`cryostream.runs`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import time
from pathlib import Path

from cryostream import store as stores
from cryostream.compile_cache import enable_compile_cache
from cryostream.config import NoiseConfig, TrainConfig
from cryostream.config.checks import check_config
from cryostream.denoise.memory import network_memory
from cryostream.divergence import DivergenceGuard
from cryostream.errors import ConfigError, StoreError, TrainingDivergedError
from cryostream.held_out import evaluate_split, make_eval_step
from cryostream.interrupts import Terminated, as_sigterm, held_interrupt, say_kept
from cryostream.io.paths import write_whole
from cryostream.loader import PatchLoader, model_input
from cryostream.locks import folder_lock
from cryostream.losses import training_loss
from cryostream.progress import TrainProgress, loss_spike, plot_curve, warn_loss_spike
from cryostream.runs import (
    CHECKPOINTS,
    RunRecord,
    check_fresh_noise,
    check_run_folder,
    checkpoint_manager,
    checkpoint_steps,
    load_record,
    logged_rows,
    restore_state,
    resume_differences,
    save_checkpoint,
    save_record,
)
from cryostream.script_guard import refuse_script_rerun
from cryostream.step_memory import MicroBatchedStep, fitted_step
from cryostream.warm_start import inherited_weights, matching_params, start_params

__all__ = ["TrainConfig", "TrainResult", "create_model", "create_train_state", "make_optimizer",
           "model_input", "make_train_step", "make_eval_step", "evaluate_split", "train"]


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What :func:`train` did."""

    run: Path
    steps: int
    final_loss: float
    eval: dict
    seconds: float
    patches_per_second: float | None  #: after this call's first two steps; None: none timed
    #: :func:`~cryostream.progress.loss_spike`: the loss spiked and came back (warned), or None
    loss_spike: dict | None = None

    def __fspath__(self) -> str:
        """The run folder, so that the result itself may be given as the model
        (``denoise(train(...), ...)``)."""
        return str(self.run)


def create_model(config, seed: int = 0):
    """A freshly initialised :class:`~cryostream.models.UNet`."""
    from flax import nnx

    from cryostream.models.unet import UNet

    return UNet(config, rngs=nnx.Rngs(seed))


def make_optimizer(config: TrainConfig):
    """AdamW with warm-up, cosine decay to 1 % of the peak, and global-norm clipping."""
    import optax

    warmup = min(config.warmup_steps, max(config.steps - 1, 1))
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, warmup, max(config.steps, warmup + 1),
        end_value=config.learning_rate * 0.01,
    )
    return optax.chain(optax.clip_by_global_norm(config.clip_norm),
                       optax.adamw(schedule, b2=config.beta2,
                                   weight_decay=config.weight_decay))


def create_train_state(model, tx, params=None, *, where: str = "the given parameters"):
    """Split a model into its static graph and the trainable state pytree; with ``params``
    (a tree of the same network, :func:`~cryostream.warm_start.matching_params`, else a
    :class:`ConfigError` naming ``where``) those parameters and a fresh optimizer state."""
    import jax.numpy as jnp
    from flax import nnx

    graphdef, own = nnx.split(model, nnx.Param)
    own = own if params is None else matching_params(own, params, where)
    return graphdef, {"params": own, "opt_state": tx.init(own), "step": jnp.zeros((), jnp.int32)}


def make_train_step(graphdef, tx, *, loss: str = "mse", noise: NoiseConfig | None = None,
                    seed: int = 0, noise_table: dict | None = None,
                    recorrupt_alpha2: float | None = None, augment: bool = False,
                    fresh_noise: bool = False, micro_batches: int = 1):
    """The jit-compiled step ``(state, batch) -> (state, metrics)``; the state is donated.

    ``recorrupt_alpha2``: train on recorrupted targets (:class:`TrainConfig` ``recorrupt``);
    ``augment``: one random symmetry of the square per step (:class:`TrainConfig` ``augment``);
    ``fresh_noise``: each patch's stored noise moved per step (:class:`TrainConfig` ``fresh_noise``);
    ``micro_batches``: the gradient summed over that many parts of the batch, one call each
    (:class:`cryostream.step_memory.MicroBatchedStep`; less memory, the same update).
    """
    import jax
    import optax
    from flax import nnx

    from cryostream.patches import dihedral, moved_noise

    def loss_fn(params, inp, target):
        return training_loss(loss, nnx.merge(graphdef, params)(inp), target)

    def inputs(count, batch):
        inp, target = model_input(batch, noise, seed, count, noise_table, recorrupt_alpha2)
        if fresh_noise:  # its own stream, apart from the noise's and the views'
            moves = jax.random.fold_in(jax.random.key(seed), 2**32 - 2)
            inp = moved_noise(jax.random.fold_in(moves, count), inp, target)
        if augment:
            views = jax.random.fold_in(jax.random.key(seed), 2**32 - 1)  # not the noise's stream
            inp, target = dihedral(jax.random.fold_in(views, count), inp, target)
        return inp, target

    def update(state, value, grads):
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        new = {"params": params, "opt_state": opt_state, "step": state["step"] + 1}
        return new, {"loss": value, "grad_norm": optax.tree.norm(grads)}

    def step(state, batch):
        value, grads = jax.value_and_grad(loss_fn)(state["params"],
                                                   *inputs(state["step"], batch))
        return update(state, value, grads)

    if micro_batches > 1:
        return MicroBatchedStep(inputs, loss_fn, update, micro_batches)
    return jax.jit(step, donate_argnums=0)


def _mesh_sharding():
    import jax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    devices = jax.devices()
    if len(devices) == 1:
        return None, None
    mesh = jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    return NamedSharding(mesh, P("data")), NamedSharding(mesh, P())


def train(store, run, config: TrainConfig | None = None, *, resume: bool = False,
          progress: bool = False, stop_at: int | None = None, time_limit_s: float | None = None,
          init_params=None, on_metrics=None, on_step=None, log=print) -> TrainResult:
    """Train a denoiser on a store's train split; evaluate on its test split. A Ctrl-C
    finishes the step under way, checkpoints it (if its loss is finite) and raises
    :class:`KeyboardInterrupt`, SIGTERM :class:`~cryostream.interrupts.Terminated`, whose
    message names the checkpoint kept and how to go on (where Python's handler has Ctrl-C, in
    the main thread); a second signal stops at once. One that comes as the first step compiles
    stops before it trains (nothing to save). ``resume`` continues. No
    diverged network is checkpointed (:class:`~cryostream.divergence.DivergenceGuard`), and a
    training that ends on one raises :class:`TrainingDivergedError`; a run folder another
    training (or fit) uses, ``resume`` where no run is, or a folder of other files, a
    :class:`StoreError` naming it.

    Parameters
    ----------
    store : path-like
        A store made by :func:`cryostream.prepare`.
    run : path-like
        Run folder: ``config.json``, ``metrics.jsonl``, ``loss.png``, ``checkpoints/``.
    config : TrainConfig, optional
    resume : bool
        Continue from the last checkpoint of ``run`` (same batches, same result as an
        uninterrupted run).
    progress : bool
        Show a progress bar. Without it, and without ``on_metrics`` and ``on_step`` of the
        caller's, the training is noted on the ``cryostream`` logger at level INFO (after the
        first step, then every 30 s and at each evaluation: the step, the loss, the speed and
        the time left), as ``fit`` notes it; Python shows them once logging is set to INFO.
    stop_at : int, optional
        Stop (with a checkpoint) after this step, as if interrupted; ``resume`` continues.
    time_limit_s : float, optional
        Wall-clock seconds from the call (compilation included); the first step after them is
        checkpointed and training stops, as with ``stop_at``.
    init_params : pytree, optional
        Start from these parameters instead of ``config.init``'s (not when resuming).
    on_metrics : callable, optional
        Called with each ``metrics.jsonl`` row (a dict) as it is written.
    on_step : callable, optional
        Called after each step with the step and its metrics as device arrays (reading one
        waits for the step), for notes by the clock (:meth:`.progress.TrainProgress.step`).

    Returns
    -------
    TrainResult
    """
    refuse_script_rerun("train")  # before anything is read or written
    config, run = check_config("config", config, TrainConfig) or TrainConfig(), Path(run).absolute()
    if not progress and on_metrics is None and on_step is None:  # a script's call: notes
        on_metrics = TrainProgress(config.steps, config.batch_size)
        on_step = on_metrics.step
    check_run_folder(run, resume)  # before the lock makes the folder
    network_memory()  # a CRYOSTREAM_NETWORK_MEMORY_GB that is no number: said before any work
    with folder_lock(run, command="train", fix="give this training another run folder (-o)",
                     what="the run (-o)"):  # one command at a time in a run folder
        return _train(store, run, config, resume, progress, stop_at, time_limit_s, init_params,
                      on_metrics, on_step, log)


def _train(store, run, config, resume, progress, stop_at, time_limit_s, init_params, on_metrics,
           on_step, log) -> TrainResult:
    import jax

    enable_compile_cache()  # a second run of these shapes loads its compiled step from disk
    start_time = time.perf_counter()
    prepared, test_size = stores.store_facts(store)
    multiple = config.model_config().multiple  # unet-deep's sixth level needs multiples of 64
    if prepared.patch_size % multiple:
        raise ConfigError(f"model={config.model!r} (--model) needs patch sides that are multiples "
                          f"of {multiple}; {store} holds patches of {prepared.patch_size}: choose "
                          f"another preset, or prepare a store with --patch {multiple * 8}")
    alpha2 = stores.recorrupt_alpha2(store, prepared) if config.recorrupt else None
    if config.fresh_noise:
        check_fresh_noise(store, prepared)
    loader = PatchLoader(store, "train", config.batch_size, seed=config.seed,
                         threads=config.threads, prefetch=config.prefetch)
    test = PatchLoader(store, "test", config.batch_size, shuffle=False, repeat=False,
                       threads=config.threads, prefetch=2, drop_remainder=True) \
        if test_size >= config.batch_size else None
    noise = loader.noise if "input" not in loader.kinds else None
    record = RunRecord(path=run, train=config, prepare=prepared, store=Path(store).absolute())
    stored = None
    if checkpoint_steps(run):
        if not resume:
            raise StoreError(f"{run} already holds checkpoints; pass resume=True (--resume) to "
                             "continue, or choose another run folder")
        stored = load_record(run)
        changes = resume_differences(stored, record)  # before anything is written
        if changes:
            raise ConfigError(f"{run}: resuming needs the options it was trained with; changed: "
                              f"{'; '.join(changes)}. Pass the same options, or train into a "
                              "new folder")
    resuming = stored is not None
    model = create_model(config.model_config(), config.seed)
    if init_params is None and config.init is not None and not resuming:
        init_params = start_params(config.init, model.config)
    tx = make_optimizer(config)
    graphdef, state = create_train_state(  # checked before anything is written
        model, tx, None if resuming else init_params,
        where=f"init={config.init!r}" if config.init else "init_params")
    record = dataclasses.replace(record, learned_weights=stored.learned_weights if resuming
                                 else inherited_weights(record))
    manager = checkpoint_manager(run, config.keep_checkpoints, create=True)
    save_record(run, record)
    batch_sharding, replicated = _mesh_sharding()
    if replicated is not None:
        state = jax.device_put(state, replicated)
    metrics_path = run / "metrics.jsonl"
    rows = []
    if resuming:
        step0 = manager.latest_step()
        state, meta = restore_state(manager, step0, state)
        loader.restore(meta["loader"])
        rows = [r for r in logged_rows(metrics_path) if r["step"] <= step0
                and not r.get("stopped")]
        log(f"resumed from step {step0}")
    write_whole(metrics_path, "".join(json.dumps(r) + "\n" for r in rows))

    make_step = functools.partial(  # in micro-batches where the memory is short (fitted_step)
        make_train_step, graphdef, tx, loss=config.loss, noise=noise, seed=config.seed,
        noise_table=loader.noise_table, recorrupt_alpha2=alpha2, augment=config.augment,
        fresh_noise=config.fresh_noise)
    step_fn = None
    eval_fn = make_eval_step(graphdef, noise=noise, seed=config.seed, noise_table=loader.noise_table)
    guard = DivergenceGuard(eval_fn, log, warmup=config.warmup_steps)
    step = begun = int(state["step"])  # a resumed run's first step here compiles too
    if progress:
        from tqdm.auto import tqdm
    bar = tqdm(total=config.steps, initial=step, desc="train", unit="step") if progress else None
    timed_steps, timed_seconds, t_mark, last = 0, 0.0, None, {}

    def check_loss(at: int, loss: float) -> None:
        """Stop with a clear message at a non-finite loss; the checkpoints so far stay."""
        if math.isfinite(loss):
            return
        with contextlib.suppress(OSError), open(metrics_path, "a") as log_file:  # the log says
            log_file.write(json.dumps({"step": at, "diverged": True}) + "\n")  # so (check_trained)
        loader.close()
        manager.wait_until_finished()
        kept = manager.all_steps()
        raise TrainingDivergedError(
            f"{run}: training diverged at step {at} (loss {loss}); "
            + (f"the last good checkpoint, step {max(kept)}, is kept" if kept
               else "no checkpoint was written")
            + ": lower the learning rate (--lr) or check the store")

    def save(at: int, loss: float, batch) -> None:
        """Checkpoint step ``at`` unless the network diverged (a loss not finite: stop; its
        error on ``batch`` far above the references, :class:`DivergenceGuard`: skip); a failed
        save (a full disk) stops training with one StoreError, the checkpoints before stay."""
        check_loss(at, loss)
        if guard.diverged(state["params"], batch, at):
            return
        meta = {"loader": dataclasses.asdict(loader.position), "config": record.to_dict()}
        try:
            save_checkpoint(manager, at, state, meta)
        except StoreError:
            loader.close()
            raise

    deadline = None if time_limit_s is None else start_time + time_limit_s
    done = None  # the last step whose state and loader position go together
    with open(metrics_path, "a") as metrics_file, held_interrupt(lambda: "interrupted: " + (
            "finishing the step under way, then saving it (Ctrl-C again stops at once, without "
            "saving it)" if step_fn is not None else "stopping once the step is compiled, "
            "before it trains (Ctrl-C again stops at once)"), log) as interrupt:
        batches = loader.device_batches(batch_sharding)
        end = config.steps if stop_at is None else min(stop_at, config.steps)
        try:
            while step < end and not interrupt.requested:
                done = None
                batch = next(batches)
                if step_fn is None:  # the held-out figures in the same micro-batches
                    step_fn = fitted_step(make_step, state, batch, config,
                                          prepared.patch_size, multiple)
                    eval_fn.parts = step_fn.parts
                    interrupt.check()  # one that came as it compiled: nothing trained to save
                state, out = step_fn(state, batch)
                step = done = step + 1
                if step == begun + 2:  # the first step compiled; time from here
                    jax.block_until_ready(out)
                    t_mark = time.perf_counter()
                elif t_mark is not None:
                    timed_steps += 1
                late = deadline is not None and time.perf_counter() > deadline
                if step % 10 == 0 or step in (config.steps, end) or late:  # a row where it stops
                    last = {k: float(v) for k, v in out.items()}
                    check_loss(step, last["loss"])
                    row = {"step": step, **last}
                    if step % 10 and step != config.steps:  # logged as it stops: a resume
                        row["stopped"] = True  # drops it, as an uninterrupted run has none
                    # held-out figures where it stops too (a budget's end): a run stopped
                    # before its first eval_every had none to be judged by
                    if step % config.eval_every == 0 or step in (config.steps, end) or late:
                        if test is not None:
                            ev = evaluate_split(eval_fn, state["params"], test,
                                                config.eval_batches, batch_sharding)
                            row.update({f"eval_{k}": v for k, v in ev.items()})
                    metrics_file.write(json.dumps(row) + "\n")
                    metrics_file.flush()
                    rows.append(row)
                    if on_metrics is not None:
                        on_metrics(row)
                    if bar is not None:
                        bar.set_postfix(loss=f"{last['loss']:.4g}")
                if bar is not None:
                    bar.update(1)
                if on_step is not None:
                    on_step(step, out)
                if step % config.checkpoint_every == 0 or step == end or late:
                    save(step, float(out["loss"]), batch)  # never a diverged network
                if late:
                    break
            interrupt.check()
        except KeyboardInterrupt as stop:
            if bar is not None:  # its last state, and the notes below it (not redrawn at exit)
                bar.close()
            if done is not None and not interrupt.forced and done not in manager.all_steps():
                save(done, float(out["loss"]), batch)  # never a diverged network
            loader.close()
            kept = max(manager.all_steps(), default=None)
            manager.close()
            if rows and not interrupt.forced:  # the curve so far, as a finished one draws it
                with contextlib.suppress(Exception):  # (never in the way of the interrupt)
                    plot_curve(run / "loss.png", rows)
            said = "interrupted: " + (f"the checkpoint of step {kept} of {config.steps} is kept"
                                      if kept else "no checkpoint was written")
            log(as_sigterm(said) if isinstance(stop, Terminated) else said)
            say_kept(stop, f"the checkpoint of step {kept} of {config.steps} is kept in "
                     f"{run / CHECKPOINTS / str(kept)}" if kept else "no checkpoint was written",
                     "train(..., resume=True) with the same store, run and config continues "
                     "from it" if kept else "call train again with the same arguments to start")
            raise
        loader.close()
    jax.block_until_ready(state)
    if t_mark is not None and timed_steps:
        timed_seconds = time.perf_counter() - t_mark
    manager.wait_until_finished()
    manager.close()
    if bar is not None:
        bar.close()
    plot_curve(run / "loss.png", rows)
    step = guard.finish(run, step, config.steps, max(checkpoint_steps(run), default=None))
    spike = loss_spike(rows)
    warn_loss_spike(run, spike)
    final_eval = next((r for r in reversed(rows) if "eval_psnr" in r), {})
    rate = timed_steps * config.batch_size / timed_seconds if timed_seconds else None
    return TrainResult(run=run, steps=step, final_loss=last.get("loss", math.nan),
                       eval={k[5:]: v for k, v in final_eval.items() if k.startswith("eval_")},
                       seconds=time.perf_counter() - start_time, patches_per_second=rate,
                       loss_spike=spike)

