"""Ctrl-C during training keeps the last finished step in a checkpoint (never a diverged one)
and ``resume`` continues from it to the uninterrupted result; ``cryostream fit`` interrupted
exits 130 with that checkpoint, and the same command continues."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from flax import nnx

from cryostream.cli import main
from cryostream.denoise.network import check_trained
from cryostream.errors import StoreError, TrainingDivergedError
from cryostream.runs import checkpoint_steps, load_model, load_record
from cryostream.training import train
from tests.conftest import TINY_TRAIN  # 8 steps, checkpoints at 4 and 8

HELD = ("interrupted: finishing the step under way, then saving it (Ctrl-C again stops at once, "
        "without saving it)")


def _params(run) -> list[np.ndarray]:
    model, _ = load_model(run)
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


def _stop_at(at: int, how):
    """An ``on_step`` hook that interrupts the training after step ``at``."""
    def hook(step, metrics):
        if step == at:
            how()
    return hook


def _raise():
    raise KeyboardInterrupt


@pytest.mark.slow
def test_an_interrupt_keeps_the_step_and_resume_continues(tiny_run, tmp_path):
    """A KeyboardInterrupt after step 6 (between the checkpoints at 4 and 8) saves step 6; the
    resumed run ends with the parameters of the shared run, trained without a stop."""
    run, logged = tmp_path / "run", []
    with pytest.raises(KeyboardInterrupt):
        train(tiny_run.store, run, TINY_TRAIN, on_step=_stop_at(6, _raise), log=logged.append)
    assert checkpoint_steps(run) == [4, 6]
    assert logged == ["interrupted: the checkpoint of step 6 of 8 is kept"]
    logged.clear()
    rest = train(tiny_run.store, run, TINY_TRAIN, resume=True, log=logged.append)
    assert logged == ["resumed from step 6"] and rest.steps == 8
    for x, y in zip(_params(tiny_run.run), _params(run), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_an_interrupted_training_draws_its_curve_so_far(tiny_run, tmp_path):
    """loss.png, listed among a run's files, was drawn only by a training that finished."""
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_run.store, run, dataclasses.replace(TINY_TRAIN, steps=12), log=lambda *_: None,
              on_step=_stop_at(11, _raise))  # a row is logged at step 10
    assert checkpoint_steps(run)[-1] == 11
    assert (run / "loss.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_ctrl_c_finishes_the_step_then_saves_it(tiny_run, tmp_path):
    """A real SIGINT during step 2 is held back: the step finishes, is saved, and then
    KeyboardInterrupt stops the training; Python's own handler is back afterwards."""
    run, logged = tmp_path / "run", []
    with pytest.raises(KeyboardInterrupt):
        train(tiny_run.store, run, TINY_TRAIN, log=logged.append,
              on_step=_stop_at(2, lambda: signal.raise_signal(signal.SIGINT)))
    assert checkpoint_steps(run) == [2]
    assert logged == [HELD, "interrupted: the checkpoint of step 2 of 8 is kept"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.slow
def test_a_diverged_step_is_not_saved_on_interrupt(tiny_run, tmp_path):
    """With an absurd learning rate the loss is infinite by step 3 (step 1's rate is 0, step 2
    moves the parameters by ~1e30): interrupted there, nothing is saved and the divergence is
    named."""
    config = dataclasses.replace(TINY_TRAIN, learning_rate=1e30, warmup_steps=1)
    with pytest.raises(TrainingDivergedError, match="training diverged at step 3 .*no checkpoint "
                       "was written"):
        train(tiny_run.store, tmp_path / "run", config, on_step=_stop_at(3, _raise),
              log=lambda *_: None)
    assert checkpoint_steps(tmp_path / "run") == []
    # before its first logged row (every 10 steps): the log says where, and so does denoise
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == '{"step": 3, "diverged": true}\n'
    with pytest.raises(StoreError, match=r"its training diverged \(metrics.jsonl logs its loss "
                       "not finite at step 3, .*lower learning rate"):
        check_trained(tmp_path / "run", load_record(tmp_path / "run"))


class _CtrlCAt(logging.Handler):
    """Sends this process SIGINT when the ``cryostream`` logger notes ``prefix``."""

    def __init__(self, prefix: str):
        super().__init__(logging.INFO)
        self.prefix = prefix

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(self.prefix):
            signal.raise_signal(signal.SIGINT)


@pytest.mark.slow
def _fit_stopped_at(tmp_path, note: str):
    """A ``fit`` of two simulated micrographs into ``tmp_path/run`` (``unet-small``, 3 steps),
    stopped by Ctrl-C as the note starting with ``note`` is logged: its status is 130. Returns
    the simulated set, the run folder and the command."""
    import cryostream

    sim = cryostream.simulate(tmp_path / "sim", 2, shape=(128, 160), seed=3)
    run = tmp_path / "run"
    command = ["fit", str(sim.root / "micrographs"), "-o", str(run), "--model", "unet-small",
               "--budget", "3steps"]
    assert _main_stopped_at(command, note) == 130
    return sim, run, command


def _main_stopped_at(command: list[str], note: str) -> int:
    """The command, given Ctrl-C as the note starting with ``note`` is logged: its status."""
    logger, ctrl_c = logging.getLogger("cryostream"), _CtrlCAt(note)
    logger.addHandler(ctrl_c)
    try:
        return main(command)
    finally:
        logger.removeHandler(ctrl_c)


def test_fit_interrupted_exits_130_and_the_same_command_continues(tmp_path, capsys):
    _, _, command = _fit_stopped_at(tmp_path, "training: step 1/3")
    assert checkpoint_steps(tmp_path / "run") == [1]
    lines = capsys.readouterr().err.splitlines()
    assert f"cryostream: {HELD}" in lines  # said while the logging handler ran: order may vary
    assert lines[-2] == "cryostream: interrupted: the checkpoint of step 1 of 3 is kept"
    assert lines[-1].startswith("cryostream fit: interrupted after ")
    run = tmp_path / "run"  # the last line names what the same command goes on from
    assert lines[-1].endswith(f"; the checkpoint of step 1 is kept in {run} and the store in "
                              f"{run / 'work'}: run the same command again to continue from that "
                              "step")
    assert main(command) == 0
    err = capsys.readouterr().err
    assert "cryostream: resumed from step 1\n" in err
    assert checkpoint_steps(tmp_path / "run") == [1, 3]


def test_fit_interrupted_names_what_it_kept_and_what_the_same_command_goes_on_from(tmp_path,
                                                                                    capsys):
    """A fit's last line after Ctrl-C said 'run the same command again to continue from where it
    stopped (its work folder is kept, and the last checkpoint once training has begun)' whatever
    was kept, and of a fit with --overwrite too, which the same command trains again from the
    start. Now it names what was kept (the store in the work folder, a checkpoint of this fit)
    and what the same command does with it; each is checked by running it."""
    sim, run, command = _fit_stopped_at(tmp_path, "training unet-small for ")
    work = run / "work"
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f"; no checkpoint was written; the store in {work} is kept: run the same command again "
        "to train on it")
    assert main(command) == 0  # trains on the store kept
    assert f"the store {work / 'data.h5'} is complete and its micrographs unchanged: kept" in \
        capsys.readouterr().err
    old = checkpoint_steps(run)
    assert old[-1] == 3
    # a file server whose clock runs an hour ahead of this machine's (its times, not ours, are
    # the files'): the earlier fit's checkpoints look newer than this call's start
    for step in old:
        later = time.time() + 3600
        os.utime(run / "checkpoints" / str(step), (later, later))

    # --overwrite, stopped before the run is replaced: the checkpoints there are the earlier fit's
    assert _main_stopped_at([*command, "--overwrite"], "fit: 2 micrographs") == 130
    assert checkpoint_steps(run) == old
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f"; no checkpoint was written; the store in {work} is kept: run the same command again "
        "to train on it")
    # stopped after a step of its own: the same command would start again; without --overwrite
    assert _main_stopped_at([*command, "--overwrite"], "training: step 1/3") == 130
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f"; the checkpoint of step 1 is kept in {run} and the store in {work}: the same command "
        "without --overwrite continues from that step (with --overwrite it trains from the start "
        "again)")
    assert main(command) == 0
    assert "cryostream: resumed from step 1\n" in capsys.readouterr().err
    assert checkpoint_steps(run)[-1] == 3


def _split_error(run, step: int, store) -> tuple[float, float]:
    """The squared error of a checkpoint's network over the whole train split, and the noisy
    input's: what the network saved is, whatever the logged loss said."""
    from cryostream.loader import PatchLoader
    from cryostream.training import evaluate_split, make_eval_step

    model, _ = load_model(run, step)
    graphdef, params = nnx.split(model, nnx.Param)
    loader = PatchLoader(store, "train", 4, shuffle=False, repeat=False, drop_remainder=True)
    out = evaluate_split(make_eval_step(graphdef), params, loader, 1000)
    return out["loss"], 10 ** (-out["noisy_psnr"] / 10)


def test_no_diverged_network_is_checkpointed_and_a_training_that_ends_diverged_stops(tiny_run,
                                                                                      tmp_path):
    """A peak rate of 0.03 on the tiny store diverges in the warm-up and stays finite, so the
    non-finite check never stops it. Judged by its logged loss (the loss before the step's
    update, on one batch), step 30 looked fine and was once checkpointed, holding a network 370
    times the starting one's error over the split. Judged by the network itself, no diverged
    one is written (each refusal noted): what is kept scores under ten times the noisy input's
    error over the whole split, and the training ends with an error naming the last checkpoint."""
    config = dataclasses.replace(TINY_TRAIN, learning_rate=0.03, steps=40, warmup_steps=39,
                                 checkpoint_every=10, eval_every=40)  # keeps two checkpoints
    run = tmp_path / "run"
    logged = []
    with pytest.raises(TrainingDivergedError, match=r"diverged and did not come back: at its last "
                       r"step the network's squared error .* times the noisy input's.*the last "
                       r"one kept, step 20, is a network trained only that far.*new run folder.*--lr"):
        train(tiny_run.store, run, config, log=logged.append)
    assert checkpoint_steps(run) == [10, 20]
    assert [m.split(" not")[0] for m in logged if "not checkpointed" in m] == ["step 30", "step 40"]
    for step in (10, 20):
        error, noisy = _split_error(run, step, tiny_run.store)
        assert error < 10 * noisy, (step, error, noisy)
    assert (run / "loss.png").exists()  # the curve that shows it


def test_the_command_exits_with_one_line_when_the_training_ended_diverged(tiny_run, tmp_path,
                                                                           capsys):
    """`cryostream train --lr 0.02 --seed 3`: its last logged loss (1.7, one batch before the
    last update) looked like a training, and it once finished with exit 0 and a test PSNR of
    −27 dB. Its last network has diverged: exit 2 with one line saying what to change, and
    the checkpoint of step 40 is not written; the run, used anyway, notes which network it
    gives and why."""
    from tests.faults_support import assert_user_error, cli

    run = tmp_path / "run"
    result = cli(capsys, "train", tiny_run.store, "-o", run, "--model", "unet-small",
                 "--precision", "fp32", "--steps", "40", "--batch-size", "4", "--checkpoint-every",
                 "10", "--eval-every", "40", "--lr", "0.02", "--seed", "3", "--quiet")
    line = assert_user_error(result, "--lr")
    assert "did not come back" in line and "step 30" in line
    assert checkpoint_steps(run) == [10, 20, 30]
    # denoise and evaluate, given the run anyway, say once which network they use and why
    # (they had used step 30 without a word of the divergence); in a process of its own, as a
    # later command's
    code = ("import logging, sys; logging.basicConfig(level=logging.WARNING, stream=sys.stdout); "
            "logging.getLogger('cryostream').setLevel(logging.INFO); "
            "from cryostream.denoise.network import model_record; "
            f"[model_record({str(run)!r}) for _ in range(2)]")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    said = [line.split(":", 2)[2] for line in out.stdout.splitlines() if "diverged" in line]
    assert said == [f"{run}: its training diverged at step 40 (metrics.jsonl); the network used "
                    "is its last checkpoint, step 30, from before that and trained only that far: "
                    "a run trained again at a lower learning rate (--lr) may do better"]


def test_train_interrupted_says_how_to_resume_and_its_notes_go_to_stderr(tiny_run, tmp_path,
                                                                           capsys):
    """`cryostream train` stopped by Ctrl-C had printed its notes (the step it kept) on stdout,
    where the summary goes and --quiet did not reach, and ended with 'interrupted after N s'
    alone: not how to go on. Now its notes are on stderr as fit's are (none with --quiet), and
    the last line names the checkpoint kept and says to add --resume; that command continues."""
    run = tmp_path / "run"
    command = ["train", str(tiny_run.store), "-o", str(run), "--model", "unet-small",
               "--precision", "fp32", "--batch-size", "4", "--checkpoint-every", "4",
               "--eval-every", "4"]
    assert main([*command, "--steps", "4", "--quiet"]) == 0
    capsys.readouterr()
    logger, ctrl_c = logging.getLogger("cryostream"), _CtrlCAt("resumed from step")
    logger.addHandler(ctrl_c)
    try:
        assert main([*command, "--steps", "8", "--resume"]) == 130
    finally:
        logger.removeHandler(ctrl_c)
    said = capsys.readouterr()
    assert said.out == ""
    lines = said.err.splitlines()
    assert "cryostream: resumed from step 4" in lines
    assert lines[-1].startswith("cryostream train: interrupted after ")
    assert lines[-1].endswith(f"; the checkpoint of step 4 is kept in {run}: the same command "
                              "with --resume continues from it")
    assert checkpoint_steps(run) == [4]
    assert main([*command, "--steps", "8", "--resume", "--quiet"]) == 0
    said = capsys.readouterr()
    assert said.err == "" and said.out.startswith("trained unet-small from step 4 to 8 into ")
    assert len(said.out.splitlines()) == 1
    assert checkpoint_steps(run) == [4, 8]


def test_a_fit_stopped_before_training_is_named_so_where_a_model_is_wanted(tmp_path, capsys):
    """A fit stopped by Ctrl-C before its training began leaves its run folder with fit.json and
    the work folder alone: `denoise -m` it had said 'not a run folder; pass the folder that
    cryostream train or fit wrote', which it is. Now it says the fit stopped before training
    and to run the same fit command again."""
    sim, run, _ = _fit_stopped_at(tmp_path, "training unet-small for ")
    assert (run / "fit.json").is_file() and not (run / "config.json").exists()
    capsys.readouterr()
    out = tmp_path / "out"
    assert main(["denoise", str(sim.micrographs[0]), "-o", str(out), "-m", str(run),
                 "--raw"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"cryostream denoise: error: {run}: its cryostream fit stopped before training began "
        "(fit.json, no config.json or checkpoint yet); run the same fit command again: it goes "
        "on from its work folder and trains the model")
    assert not out.exists()


def _train_ctrl_c_twice(store, run, second_after: str,
                        signals=(signal.SIGINT, signal.SIGINT)) -> tuple[int, str]:
    """``cryostream train`` in a child process, given Ctrl-C (the first of ``signals``) once its
    first row is logged and again (the second) 0.2 s (more than a repeat of the first,
    ``DUPLICATE_S``) after its stderr shows ``second_after``: its status and stderr."""
    from tests.faults_support import signalled_cli

    return signalled_cli(
        "train", store, "-o", run, "--model", "unet-small", "--precision", "fp32", "--steps",
        "1000", "--batch-size", "4", "--checkpoint-every", "1000", "--eval-every", "1000",
        cwd=run.parent, signals=[
            (signals[0], lambda err: (run / "metrics.jsonl").is_file()
             and bool((run / "metrics.jsonl").read_text())),
            (signals[1], lambda err: second_after in err)])


@pytest.mark.parametrize("second_after", [HELD, "cryostream train: interrupted after "])
def test_a_second_ctrl_c_ends_train_at_once_with_one_line_and_status_130(tiny_run, tmp_path,
                                                                         second_after):
    """Ctrl-C twice in `cryostream train`. Pressed again while the step under way was finished
    and saved, the second had raised KeyboardInterrupt wherever the program was: in the save
    (orbax's writer threads printed tracebacks, its temporary folder stayed), in a garbage
    collector's callback (a traceback, and the training went on), or, pressed once the last line
    was said, in the command line's own handling or the process's exit (a traceback, or death
    by SIGINT). Now it ends the process at once: status 130, no traceback, the last line naming
    the checkpoint kept; a save it cut short is no checkpoint (orbax's temporary folder, which
    the next training removes) and the same command with --resume goes on."""
    from tests.faults_support import finished_steps

    run = tmp_path / "run"
    status, err = _train_ctrl_c_twice(tiny_run.store, run, second_after)
    assert status == 130 and "Traceback" not in err, err[-3000:]
    last = err.splitlines()[-1]
    kept = finished_steps(run)
    assert last.startswith("cryostream train: stopped at once (Ctrl-C again) after "
                           if second_after == HELD else "cryostream train: "), err[-3000:]
    assert last.endswith(f"; the checkpoint of step {kept[-1]} is kept in {run}: the same "
                         "command with --resume continues from it" if kept else
                         "; no checkpoint was written: run the same command again to start")
    for folder in (run / "checkpoints").iterdir():  # finished and whole, or named unfinished
        assert folder.name.isdigit() or ".orbax-checkpoint-tmp" in folder.name, folder
    if kept:
        load_model(run, kept[-1])  # verified against the checksums saved with it
    again = ["train", str(tiny_run.store), "-o", str(run), "--model", "unet-small", "--precision",
             "fp32", "--steps", str(max(kept, default=0) + 1), "--batch-size", "4",
             "--checkpoint-every", "1000", "--eval-every", "1000", "--quiet",
             *(["--resume"] if kept else [])]
    assert main(again) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == sorted(
        str(s) for s in [*kept, max(kept, default=0) + 1])


@pytest.mark.parametrize("first, second", [(signal.SIGTERM, signal.SIGINT),
                                           (signal.SIGINT, signal.SIGTERM)])
def test_a_second_signal_of_the_other_kind_is_named_as_it_is(tiny_run, tmp_path, first, second):
    """SIGTERM (a batch system's time limit) and then Ctrl-C while `cryostream train` finished
    and saved its step: the line it ended with said 'terminated at once (SIGTERM again)', of a
    SIGTERM never sent again. Now each line names the signal that came: the first's note says
    SIGTERM in its words, the last line the second as it was ('Ctrl-C after SIGTERM', or
    'SIGTERM after Ctrl-C'), the status the first's (143 for SIGTERM, 130 for Ctrl-C)."""
    from tests.faults_support import finished_steps

    run = tmp_path / "run"
    note = f"cryostream: {HELD}" if first == signal.SIGINT else (
        "cryostream: terminated (SIGTERM): finishing the step under way, then saving it (SIGTERM "
        "again stops at once, without saving it)")
    status, err = _train_ctrl_c_twice(tiny_run.store, run, note, (first, second))
    assert status == (143 if first == signal.SIGTERM else 130) and "Traceback" not in err, \
        err[-3000:]
    lines = err.splitlines()
    assert note in err and (first == signal.SIGINT or HELD not in err)  # (after the bar)
    how = ("stopped at once (Ctrl-C after SIGTERM)" if second == signal.SIGINT else
           "terminated at once (SIGTERM after Ctrl-C)")
    assert lines[-1].startswith(f"cryostream train: {how} after "), err[-3000:]
    kept = finished_steps(run)
    assert lines[-1].endswith(f"; the checkpoint of step {kept[-1]} is kept in {run}: the same "
                              "command with --resume continues from it" if kept else
                              "; no checkpoint was written: run the same command again to start")


def test_train_started_with_ctrl_c_ignored_keeps_its_step_on_sigterm(tiny_run, tmp_path):
    """`cryostream train ... &` in a job script (SIGINT ignored as the process starts) and then
    the batch system's SIGTERM: the training did not hold it back (only over Python's own
    SIGINT handler), so SIGTERM raised where the loop was, with no note, and the steps since
    the last checkpoint were lost (`no checkpoint was written`, a thousand steps in). Now SIGTERM
    alone is held back there, as it is otherwise: the step under way is finished and saved,
    status 143, and Ctrl-C stays ignored."""
    from tests.faults_support import finished_steps, signalled_cli

    run = tmp_path / "run"
    status, err = signalled_cli(
        "train", tiny_run.store, "-o", run, "--model", "unet-small", "--precision", "fp32",
        "--steps", "1000", "--batch-size", "4", "--checkpoint-every", "1000", "--eval-every",
        "1000", cwd=tmp_path, sigint_ignored=True, signals=[
            (signal.SIGINT, lambda err: (run / "metrics.jsonl").is_file()
             and bool((run / "metrics.jsonl").read_text())),
            (signal.SIGTERM, lambda err: True)])
    assert status == 143 and "Traceback" not in err, err[-3000:]
    assert ("cryostream: terminated (SIGTERM): finishing the step under way, then saving it "
            "(SIGTERM again stops at once, without saving it)") in err, err[-3000:]
    kept = finished_steps(run)
    assert kept and 10 <= kept[-1] < 1000, kept  # a row was logged at step 10 before it
    assert err.splitlines()[-1].startswith("cryostream train: terminated (SIGTERM) after ")
    assert err.splitlines()[-1].endswith(f"; the checkpoint of step {kept[-1]} is kept in {run}: "
                                         "the same command with --resume continues from it")
    load_model(run, kept[-1])  # whole: verified against its checksums
