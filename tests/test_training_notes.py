"""Training notes (``cryostream.progress.TrainProgress``): the first step with the time
compiling took, then by the clock with the speed and the time left, each evaluation beside the
noisy input's PSNR, and once the advice when the steps left are long."""

from __future__ import annotations

import re
import time

import jax.numpy as jnp

from cryostream.progress import TrainProgress

NUMBER = r"[0-9.e+-]+"


def _loss(value: float) -> dict:
    return {"loss": jnp.float32(value), "grad_norm": jnp.float32(1.0)}


def test_each_note_says_step_loss_baseline_speed_and_time_left(notes):
    progress = TrainProgress(100, 8, every_s=0.0, slow="the full unet on a CPU takes "
                             "{estimate}; --model unet-small is faster", slow_s=0.0)
    progress.step(1, _loss(0.5))
    time.sleep(0.01)
    progress.step(2, _loss(0.25))
    progress({"step": 10, "loss": 0.125, "grad_norm": 1.0, "eval_loss": 0.03,
              "eval_psnr": 14.66, "eval_noisy_psnr": 16.19, "eval_patches": 8})
    progress.step(10, _loss(0.125))  # noted already, from its row
    progress.step(100, _loss(0.0625))
    assert len(notes) == 5, notes
    assert re.fullmatch(rf"training: step 1/100, loss 0\.5 \({NUMBER} s since the start, "
                        r"compiling included\)", notes[0])
    speed = rf"{NUMBER} steps/s \({NUMBER} patches/s\)"
    assert re.fullmatch(rf"training: step 2/100, loss 0\.25, {speed}, about {NUMBER} (s|min) "
                        "left", notes[1])
    assert re.fullmatch(rf"training: the full unet on a CPU takes about {NUMBER} (s|min) for the "
                        rf"98 steps left \({NUMBER} s a step\); --model unet-small is faster",
                        notes[2])
    assert re.fullmatch(rf"training: step 10/100, loss 0\.125, test PSNR 14\.66 dB \(noisy "
                        rf"input 16\.19\), {speed}, about {NUMBER} (s|min) left", notes[3])
    assert re.fullmatch(rf"training: step 100/100, loss 0\.0625, {speed}", notes[4])


def test_notes_come_by_the_clock_and_at_evaluations(notes):
    progress = TrainProgress(50, 4, every_s=3600.0, slow="never {estimate}", slow_s=1e9)
    for step in range(1, 50):
        progress.step(step, _loss(1.0 / step))
        if step % 10 == 0:
            progress({"step": step, "loss": 1.0 / step, "grad_norm": 1.0,
                      **({"eval_psnr": 20.0, "eval_noisy_psnr": 18.0} if step == 20 else {})})
    progress({"step": 50, "loss": 0.02, "grad_norm": 1.0})
    assert [n.split(",")[0] for n in notes] == ["training: step 1/50", "training: step 20/50",
                                                "training: step 50/50"]
    assert "test PSNR 20.00 dB (noisy input 18.00)" in notes[1]


def test_a_time_budget_says_where_it_stops(notes):
    progress = TrainProgress(1000, 8, every_s=0.0, deadline=time.perf_counter())
    progress.step(1, _loss(0.5))
    progress.step(2, _loss(0.5))
    assert re.fullmatch(rf"training: step 2/1000, loss 0\.5, {NUMBER} steps/s \({NUMBER} "
                        r"patches/s\), the time budget ends in 0 s, near step 2", notes[1])
