"""``cryostream.fit``: a denoiser trained on a user's own micrographs in one call.

:func:`fit` chains what ``prepare`` and ``train`` do with the best validated recipe: each
micrograph's noise is measured and matched noise (``α`` = 1, drawn on the device) is added to
it (:data:`RECIPE_NOISE`, docs/guide/noise.md); the store goes to a work folder; by default the
shipped general model is fine-tuned gently on recorrupted targets and keeps its learned weights
(:data:`FINETUNE_TRAIN`), or the residual ``unet`` trains from scratch with
:class:`~cryostream.config.TrainConfig`'s defaults (:data:`RECIPE_TRAIN`, ``start="scratch"``),
or from another run (``start``), for a budget of minutes or steps. The run folder then
denoises like any other (``cryostream denoise ... --model RUN``). Calling it again with the
same arguments continues: a complete store whose inputs have not changed is kept, training
resumes from its last checkpoint. Every stage notes its progress through :mod:`logging` (the
``cryostream`` logger).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import shlex
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from cryostream._version import __version__
from cryostream.budget import Budget
from cryostream.config import PrepareConfig, TrainConfig, to_dict
from cryostream.config.checks import check_config
from cryostream.denoise.memory import network_memory
from cryostream.errors import ConfigError, InvalidMicrographError
from cryostream.fit_recipe import (
    DEFAULT_START,
    FINETUNE_TRAIN,
    RECIPE_NOISE,
    RECIPE_TRAIN,
    as_made_before,
    check_fit_patch,
    recipe,
    scheduled,
    start_words,
    training,
    training_for,
    warn_within_warmup,
)
from cryostream.fit_run import (
    FIT_RECORD,
    RUN_FILES,
    STORE_NAME,
    STORE_RECORD,
    check_run,
    clear_run,
    logged_loss,
    make_store,
    record_fit,
    record_steps,
    run_patch,
    said_when_stopped,
    say_fit_kept,
)
from cryostream.io.paths import refuse_read_only
from cryostream.io.pixel_sizes import unset_pixel_size, warn_mixed_pixel_sizes
from cryostream.io.simulated import check_sets_finished
from cryostream.io.stack import expand_inputs, given_inputs, listed_inputs, read_headers
from cryostream.locks import folder_lock
from cryostream.prepare import MODEL_MULTIPLE
from cryostream.prepare_output import check_patch_size
from cryostream.progress import TrainProgress, slow_note
from cryostream.runs import checkpoint_steps, last_evaluation
from cryostream.script_guard import refuse_script_rerun, rerun_refused
from cryostream.store import shard_folder
from cryostream.units import format_bytes

__all__ = ["RECIPE_NOISE", "RECIPE_TRAIN", "FINETUNE_TRAIN", "FIT_RECORD", "STORE_RECORD", "Budget",
           "FitResult", "recipe", "training_for", "fit", "given_inputs"]

_log = logging.getLogger("cryostream")


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What :func:`fit` did.

    Attributes
    ----------
    run, store : Path
        The run folder and the store in the work folder (kept for resuming).
    start : str or None
        Where the parameters started (``TrainConfig.init``): ``"general"``, a run folder or an
        exported ``.npz``; ``None`` from scratch.
    steps, target_steps : int
        The run's step now, and the steps it trains for (fewer when the budget ran out).
    final_loss : float
        The last logged training loss (``nan`` when nothing was trained in this call).
    eval : dict
        The last evaluation on the test split (``psnr``, ``noisy_psnr``, …), or ``{}``.
    seconds : float
        Wall clock of the call.
    store_bytes : int
        The store's size on disk.
    next_command : str
        The command that denoises the micrographs with this run, the inputs as they were
        given (:func:`given_inputs`).
    resumed_at : int
        The run's step when the call began (0: a new run).
    kept : str or None
        Why nothing was trained though steps were asked for: the run already had more than
        them (and what to do instead); ``None`` otherwise.
    skipped : tuple of str
        The micrographs left out (``permissive``: unreadable, another shape), also listed with
        why in ``fit.json``.
    recorrupt : bool
        Whether the run trains on recorrupted targets (its output estimates the clean
        micrograph, so its test PSNR against a noisy target is under the input's by design).
    loss_spike : dict or None
        The training's loss spiked and came back (warned; :func:`cryostream.progress.loss_spike`).
    """

    run: Path
    store: Path
    start: str | None
    steps: int
    target_steps: int
    final_loss: float
    eval: dict
    seconds: float
    store_bytes: int
    next_command: str
    resumed_at: int = 0
    kept: str | None = None
    recorrupt: bool = False
    skipped: tuple[str, ...] = ()
    loss_spike: dict | None = None

    def __fspath__(self) -> str:
        """The run folder, so that the result itself may be given as the model
        (``denoise(fit(...), ...)``)."""
        return str(self.run)

    @property
    def finished(self) -> bool:
        """Whether the run has trained all its steps."""
        return self.steps >= self.target_steps

    @property
    def under_input(self) -> bool:
        """Whether the network still scores under the noisy input on the held-out patches
        (against the noisy target of Noisier2Noise it starts there, and should end above; not
        asked of recorrupted training, whose output is compared with a noisy target)."""
        return not self.recorrupt and \
            self.eval.get("psnr", math.inf) < self.eval.get("noisy_psnr", -math.inf)

    def summary(self) -> str:
        """The lines the command prints (the test PSNR only for a network still under the
        input: against a noisy target the PSNR is far under what the outputs reach)."""
        loss = f", loss {self.final_loss:.4g}" if math.isfinite(self.final_loss) else ""
        at = f"step {self.steps} of {self.target_steps}"
        if self.steps > self.resumed_at:
            what = (f"continued {self.run} from step {self.resumed_at}" if self.resumed_at
                    else f"fitted {self.run} from " + ("the general model" if self.start ==
                                                         DEFAULT_START else self.start or "scratch"))
            head = f"{what}: {at}{loss}, {self.seconds:.0f} s"
        else:
            head = "nothing trained: " + (self.kept or f"{self.run} is at {at}" + (
                f" (already trained; a --budget of more than {self.target_steps} steps trains it "
                "further: a time budget keeps the run's steps)" if self.finished else ""))
        state = ("" if self.finished else "; the budget ran out: run the same command again to "
                 "continue")
        under = (f"\nthe network still scores under the noisy input on held-out patches (test "
                 f"PSNR {self.eval['psnr']:.2f} against {self.eval['noisy_psnr']:.2f} dB): train "
                 "it further (a larger --budget)" + (", or fit the general model instead (no --from "
                                                     "scratch or --model; --overwrite or another -o)"
                                                     * (not self.start))
                 if self.under_input else "")
        if self.skipped:
            names = ", ".join(Path(p).name for p in self.skipped[:3]) + " …" * (len(self.skipped) > 3)
            under += (f"\n{len(self.skipped)} micrograph{'s' * (len(self.skipped) > 1)} left out "
                      f"(named with why in {self.run / FIT_RECORD}): {names}")
        return (f"{head}{state}{under}\nthe store in {self.store.parent} "
                f"({format_bytes(self.store_bytes)}) is kept for resuming; remove it when done\n"
                f"denoise with: {self.next_command}")


def fit(inputs: str | os.PathLike | Iterable[str | os.PathLike], run: str | os.PathLike, *,
        start: str | os.PathLike | None = None, budget: str | Budget | None = None,
        work: str | os.PathLike | None = None, patch_size: int | None = None,
        train: TrainConfig | None = None, prepare: PrepareConfig | None = None,
        overwrite: bool = False, permissive: bool = False) -> FitResult:
    """Train a denoiser on the micrographs themselves (self-supervised), in one call.

    Parameters
    ----------
    inputs : paths, globs, folders, a RELION STAR file or a cryoSPARC exposures .cs file
        The micrographs (all one shape).
    run : path-like
        The run folder: what ``cryostream train`` writes, and ``fit.json`` (this request).
    start : str or path-like, optional
        ``"general"`` (the shipped model; the default), a run folder or an exported ``.npz``
        (its network must be this run's), or ``"scratch"`` (random parameters). Recorded as
        ``TrainConfig.init`` in the run's ``config.json``. Without ``start`` and ``train``, the
        fit fine-tunes the general model (:data:`FINETUNE_TRAIN`) and keeps its learned
        weights; a run folder that holds a fit made from scratch before that was the default
        continues as it was made.
    budget : str or Budget, optional
        ``"30m"``, ``"1.5h"`` or ``"2000steps"`` (:class:`Budget`); without it, ``train``'s
        ``steps`` and no time limit. A budget in steps keeps the learning rate's warm-up to its
        share of them (:func:`~cryostream.fit_recipe.scheduled`); a fit that ends within its
        warm-up warns so (:class:`~cryostream.fit_recipe.WarmupWarning`).
    work : path-like, optional
        Where the store goes (``WORK/data.h5``); ``RUN/work`` by default.
    patch_size : int, optional
        The side of the store's patches in px (``--patch``), the stride half of it as in
        :func:`recipe`: a multiple of the network's (32 px, 64 for ``unet-deep``), at most the
        micrographs' shorter side. Smaller patches take less memory in a training step. Without
        it, a fit continued in ``run`` keeps the patch it was made with, and :func:`recipe`
        picks it for the micrographs' shape otherwise (``overwrite`` too); not beside
        ``prepare``, which holds its own. Another patch than a fit's is refused without
        ``overwrite``.
    train : TrainConfig, optional
        The training, as given (from ``start`` if given, else from ``train.init``). Without
        it: :data:`FINETUNE_TRAIN` from the general model or from another model whose output
        estimates the clean micrograph; :data:`RECIPE_TRAIN` from scratch or from a model
        trained for Noisier2Noise.
    prepare : PrepareConfig, optional
        The store; :func:`recipe` for the micrographs' shape (and ``patch_size``) by default.
    overwrite : bool
        Replace a run folder that holds another fit (or a ``train`` run) and train from the
        start; a complete store of the same inputs and options is still kept. Files it would
        replace made read-only (``chmod a-w``, the store's too) are refused before any work.
    permissive : bool
        Skip bad micrographs (unreadable, another shape, NaN/Inf, blank) with a warning
        instead of stopping.

    Returns
    -------
    FitResult

    Raises
    ------
    ConfigError
        A budget, start or option that cannot be (a patch the network cannot take, or larger
        than the micrographs), a different fit in ``run`` (another patch, say) without
        ``overwrite``; before anything is written.
    InvalidMicrographError
        No micrographs, one unreadable, blank or with NaN pixels; nothing is left written.
    StoreError
        ``run`` or ``work`` is a file, or another fit (or a training) is running in either:
        one command at a time in a folder.
    KeyboardInterrupt
        Ctrl-C (SIGTERM: :class:`~cryostream.Terminated`): in the training once the step under
        way is saved, before it at once; its message names what is kept (the checkpoint, the
        store or its finished shards, or nothing yet) and that the same call goes on from it.
    """
    # before anything is written; a process pool's run of the script may only find a fit with
    # all its steps again (no lock: the pool's processes run the same call at once)
    rerun = refuse_script_rerun("fit", writes=overwrite or not Path(run, FIT_RECORD).is_file())
    check_config("train", train, TrainConfig)
    check_config("prepare", prepare, PrepareConfig)
    if patch_size is not None:
        if prepare is not None:
            raise ConfigError(f"patch_size={patch_size!r} beside prepare=: the PrepareConfig holds "
                              f"the patch; give PrepareConfig(patch_size={patch_size!r}, ...) alone, "
                              "or patch_size alone for the recipe's store")
        if isinstance(patch_size, bool) or not isinstance(patch_size, int):
            PrepareConfig(patch_size=patch_size)  # a whole number, or said by name (the rest: _fit)
    network_memory()  # a CRYOSTREAM_NETWORK_MEMORY_GB that is no number: said before any work
    run = Path(run).absolute()
    work = Path(work).absolute() if work is not None else run / "work"
    # removed if nothing is made in them (a pool's process makes nothing: none)
    created = [p for p in (run, work) if not p.exists() and rerun is None]
    with contextlib.ExitStack() as held:
        if rerun is None:  # one command at a time; a stop's words
            held.enter_context(folder_lock(run, work, command="fit", what="the run (-o) and the "
                                           "work (--work)", fix="give this fit another folder "
                                           "(-o, --work)"))
            held.enter_context(said_when_stopped(run, work, overwrite))
        return _fit(inputs, run, work, created, start=start, budget=budget, train=train,
                    patch_size=patch_size, prepare=prepare, overwrite=overwrite,
                    permissive=permissive, rerun=rerun)


def _fit(inputs, run: Path, work: Path, created: list[Path], *, start, budget, train, patch_size,
         prepare, overwrite: bool, permissive: bool, rerun: str | None) -> FitResult:
    t0 = time.perf_counter()
    parsed = Budget.parse(budget)
    store = work / STORE_NAME
    given = listed_inputs(inputs)
    headers, skipped = read_headers([p.absolute() for p in expand_inputs(given,
                                                                         permissive=permissive)],
                                    permissive=permissive)
    paths = [Path(h.path) for h in headers]
    check_sets_finished([*given, *paths])  # before any note: no part of a set taken for the whole
    warn_mixed_pixel_sizes(headers, "one model is trained on all of them", "fit each "
                           "magnification on its own")
    unset = [h for h in headers if not h.pixel_size_angstrom]
    if unset:  # training does without it; the denoise printed at the end does not
        _log.warning("%s%s: %s; the fit goes on, but "
                     "denoising needs it: set it in the headers, or give denoise --pixel-size Å",
                     unset[0].path, f" and {len(unset) - 1} more" if len(unset) > 1 else "",
                     unset_pixel_size(unset[0]))
    config = training(start, train, run)
    if train is None and not overwrite:
        config = as_made_before(run, start, config)
    multiple = max(MODEL_MULTIPLE, config.model_config().multiple)  # unet-deep: 64
    if patch_size is None and prepare is None and not overwrite:  # a fit continued keeps its
        patch_size = run_patch(run, headers[0].shape, multiple)  # patch, as it keeps its steps
    if patch_size is not None:
        check_fit_patch(patch_size, headers[0].shape, multiple)  # > 0, within the micrographs
    prep = prepare or recipe(headers[0].shape, multiple, patch_size)
    if prepare is not None:  # a PrepareConfig's patch, checked as --patch is
        check_fit_patch(prep.patch_size, headers[0].shape, multiple)
    check_patch_size(prep, multiple, config.model if multiple > MODEL_MULTIPLE else None)
    if config.recorrupt and prep.noise.model != "matched":
        raise ConfigError(f"prepare.noise={prep.noise.model!r}: the training on recorrupted "
                          "targets needs the micrographs' own (matched) noise; prepare with "
                          "noise='matched' (the recipe's), or pass start='scratch'")
    init = config.init
    config, own = scheduled(config, parsed, run, overwrite)  # the steps and warm-up
    request = {"kind": "FitRecord", "cryostream_version": __version__,
               "start": config.init or "scratch", "skipped": skipped,
               "inputs": [str(p) for p in paths], "store": str(store),
               "prepare": to_dict(prep), "train": to_dict(config), "schedule": own}
    fresh = check_run(run, request, overwrite)
    done = 0 if fresh else max(checkpoint_steps(run), default=0)
    if rerun is not None and (fresh or done < config.steps):  # (a pool's process: it would train)
        raise rerun_refused(rerun, "fit")
    if fresh or done < config.steps:  # an earlier fit's files made read-only are kept (replaced,
        # or changed by the fit continued: its record, log and figure): said before any work
        refuse_read_only([run / name for name in RUN_FILES], "choose another run folder (-o)")
    kept, state = None, (f"resuming at step {done} of {config.steps}" if done else
                         start_words(config))
    if done >= config.steps:
        state = f"nothing to train: already at step {done} of {config.steps}"
    if done > config.steps:  # a smaller budget than before: the run keeps what it trained
        asked = (f"the budget's {config.steps}" if parsed and parsed.steps else
                 f"the {config.steps} of the recipe (no --budget in steps)")
        state = f"nothing to train: the run already has {done} steps, more than {asked}"
        kept = (f"{run} already has {done} steps, more than {asked}: it is kept as it is (to "
                f"train {config.steps} step{'s' * (config.steps > 1)} from the start instead: "
                "--overwrite, or another folder with -o; to train it further: a --budget of "
                f"more than {done} steps)")
        config = dataclasses.replace(config, steps=done)
        request["train"] = to_dict(config)
        record_steps(run, done, rerun)
    params = None
    if init is not None and done == 0:
        from cryostream.warm_start import start_params

        # checked before anything is written; fit's command line has --model, no --residual
        params = start_params(init, config.model_config(),
                              instead="a run of fit with this network", residual_flag=False)
    _log.info("fit: %d micrograph%s of %d × %d px, patches of %d px (stride %d), %s%s, %s%s",
              len(paths), "s" * (len(paths) != 1), *headers[0].shape, prep.patch_size,
              prep.stride, config.model, " (residual)" if config.residual else "", state,
              "; one micrograph: none held out, so no test PSNR" if len(paths) == 1 else "")
    _log.info("work folder: %s (the store, kept for resuming)", work)  # folder_lock made both
    try:
        dropped = make_store(paths, store, prep, headers, overwrite, permissive, rerun=rerun)
    except (InvalidMicrographError, ConfigError):  # found in the pixels: leave nothing behind
        for path in created:
            shutil.rmtree(path, ignore_errors=True)
        raise
    if fresh:  # an earlier run in the folder goes only once the new store is made
        clear_run(run)
    skipped += [s for s in dropped if s["path"] not in {k["path"] for k in skipped}]  # NaN …
    record_fit(run, request, rerun, found=done >= config.steps)  # (a pool's: where it holds it)

    result = None
    remaining = None if parsed is None or parsed.minutes is None else \
        parsed.minutes * 60 - (time.perf_counter() - t0)
    if done >= config.steps:
        _log.info("already trained: step %d of %d", done, config.steps)  # nothing to do
    elif remaining is not None and remaining <= 0:
        _log.info("the time budget ran out before training began; run the same command again "
                  "to train")
    else:
        from cryostream.training import train as train_run

        _log.info("training %s for %d step%s of %d patches%s: compiling the step first",
                  config.model, config.steps, "s" * (config.steps > 1), config.batch_size,
                  f", resuming at step {done}" if done else "")
        deadline = None if remaining is None else time.perf_counter() + remaining
        notes = TrainProgress(config.steps, config.batch_size, deadline=deadline,
                              slow=slow_note(config))
        try:
            result = train_run(store, run, config, resume=bool(done), init_params=params,
                               time_limit_s=remaining, log=_log.info, on_metrics=notes,
                               on_step=notes.step)
        except KeyboardInterrupt as stop:  # its words: what is kept, how this call goes on
            say_fit_kept(stop, run, work, config.steps, overwrite)
            raise
    steps = result.steps if result is not None else done
    command = shlex.join(["cryostream", "denoise", *given_inputs(given), "-o",
                          f"denoised_{run.name}", "--model", str(run), *["--permissive"] * permissive])
    size = sum(p.stat().st_size for p in [store, *shard_folder(store).glob("*.h5")])
    out = FitResult(run=run, store=store, start=init, steps=steps, target_steps=config.steps,
                    final_loss=result.final_loss if result is not None else logged_loss(run),
                    eval=result.eval if result is not None else {
                        k: v for k, v in last_evaluation(run).items() if k != "step"},
                    seconds=time.perf_counter() - t0, store_bytes=size, next_command=command,
                    resumed_at=done, kept=kept, recorrupt=config.recorrupt,
                    skipped=tuple(s["path"] for s in skipped),
                    loss_spike=result.loss_spike if result is not None else None)
    _log.info("done: step %d of %d%s; denoise with: %s", steps, config.steps,
              "" if out.finished else " (the budget ran out: run the same command again to "
              "continue)", command)
    warn_within_warmup(run, config, steps, own, result)  # its model (nearly) its start's
    return out
