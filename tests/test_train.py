"""Training: one compilation, checkpoints and exact resume, metrics, several devices, CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from flax import nnx

import cryostream
from cryostream import NoiseConfig, PrepareConfig
from cryostream.cli import main
from cryostream.loader import PatchLoader
from cryostream.prepare import prepare
from cryostream.runs import load_model
from cryostream.training import (
    create_model,
    create_train_state,
    make_optimizer,
    make_train_step,
    train,
)
from tests.conftest import TINY_TRAIN

CONFIG = TINY_TRAIN  # the shared run's options (conftest.py)


@pytest.fixture(scope="module")
def store(tiny_run):
    """The shared run's store: 32² patches of three simulated 160 × 128 px micrographs."""
    return tiny_run.store


@pytest.mark.slow
def test_the_step_compiles_once(store):
    model = create_model(CONFIG.model_config())
    tx = make_optimizer(CONFIG)
    graphdef, state = create_train_state(model, tx)
    step = make_train_step(graphdef, tx)
    loader = PatchLoader(store, batch_size=4)
    losses = []
    for i, batch in enumerate(loader.device_batches()):
        if i == 0:  # the first loss is the untrained model's mean squared error on the batch
            forward = nnx.jit(lambda m, x: m(x))  # one compilation, not one per layer
            out = np.asarray(forward(model, np.asarray(batch["input"], np.float32)[..., None]))
            out = out[..., 0]
            first = np.mean((out - np.asarray(batch["target"], np.float64)) ** 2)
        state, out = step(state, batch)
        losses.append(float(out["loss"]))
        if i == 3:
            break
    loader.close()
    assert step._cache_size() == 1
    assert int(state["step"]) == 4
    assert losses[0] == pytest.approx(first, rel=1e-5)
    assert losses[3] < 0.8 * losses[0]  # 0.19 → 0.12 on this store


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_the_bands_loss_is_what_the_step_minimises(store):
    """``loss="bands"``: the step's first loss is :func:`training_loss` of the untrained network,
    and a few steps lower it."""
    from cryostream.losses import training_loss

    config = dataclasses.replace(CONFIG, loss="bands")
    model = create_model(config.model_config())
    tx = make_optimizer(config)
    graphdef, state = create_train_state(model, tx)
    step = make_train_step(graphdef, tx, loss="bands")
    loader = PatchLoader(store, batch_size=4)
    losses = []
    for i, batch in enumerate(loader.device_batches()):
        if i == 0:
            out = nnx.jit(lambda m, x: m(x))(model, np.asarray(batch["input"], np.float32)[..., None])
            first = float(training_loss("bands", out, np.asarray(batch["target"])[..., None]))
        state, out = step(state, batch)
        losses.append(float(out["loss"]))
        if i == 5:
            break
    loader.close()
    assert losses[0] == pytest.approx(first, rel=1e-4)
    assert min(losses[3:]) < 0.8 * losses[0]


@pytest.mark.parametrize("beta2", [0.999, 0.99])
def test_the_optimizer_takes_beta2(beta2):
    """AdamW's running mean of squared gradients after one (unclipped) step is (1 − β2)·g²."""
    import optax

    tx = make_optimizer(dataclasses.replace(CONFIG, beta2=beta2))
    params = {"w": np.zeros(2, np.float32)}
    grads = {"w": np.array([0.5, -0.25], np.float32)}
    _, state = tx.update(grads, tx.init(params), params)
    nu = optax.tree_utils.tree_get(state, "nu")["w"]
    np.testing.assert_allclose(np.asarray(nu), (1 - beta2) * grads["w"] ** 2, rtol=1e-6)


@pytest.mark.slow
def test_augmented_training_is_recorded_resumes_exactly_and_differs(tiny_run, store, tmp_path):
    import dataclasses

    from cryostream.runs import load_record

    cfg = dataclasses.replace(CONFIG, augment=True)
    result = train(store, tmp_path / "run", cfg, log=lambda *_: None)
    assert np.isfinite(result.final_loss) and result.steps == CONFIG.steps
    assert load_record(tmp_path / "run").train.augment
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["augment"] is True
    # the views are drawn from the step: stopped and resumed, the same parameters
    train(store, tmp_path / "split", cfg, stop_at=4, log=lambda *_: None)
    with pytest.raises(cryostream.ConfigError, match="augment"):
        train(store, tmp_path / "split", CONFIG, resume=True, log=lambda *_: None)
    train(store, tmp_path / "split", cfg, resume=True, log=lambda *_: None)
    turned, _ = _params(tmp_path / "run")
    for x, y in zip(turned, _params(tmp_path / "split")[0], strict=True):
        np.testing.assert_array_equal(x, y)
    plain, record = _params(tiny_run.run)  # the same run without the symmetries
    assert not record.train.augment
    assert any(not np.array_equal(p, q) for p, q in zip(plain, turned, strict=True))


def _params(run):
    from flax import nnx

    model, record = load_model(run)
    return jax.tree.leaves(nnx.state(model, nnx.Param)), record


def _test_patches(store, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` (input, target) patches of the test split, float32, read with h5py."""
    import h5py

    with h5py.File(store) as f:
        return (f["test"]["input"][:count].astype(np.float32),
                f["test"]["target"][:count].astype(np.float32))


def _psnr_per_patch(estimate, reference) -> np.ndarray:
    mse = np.mean((np.asarray(estimate, np.float64) - reference) ** 2, axis=(1, 2))
    return 10 * np.log10(1 / mse)


@pytest.mark.slow
def test_resume_gives_the_uninterrupted_result(tiny_run, store, tmp_path):
    whole = tiny_run.run  # trained with CONFIG on this store, without a stop
    assert tiny_run.result.steps == 8
    half = train(store, tmp_path / "split", CONFIG, stop_at=4, log=lambda *_: None)
    assert half.steps == 4
    with pytest.raises(cryostream.StoreError, match="pass resume=True"):
        train(store, tmp_path / "split", CONFIG)
    logged = []
    rest = train(store, tmp_path / "split", CONFIG, resume=True, log=logged.append)
    assert logged == ["resumed from step 4"] and rest.steps == 8
    a, record = _params(whole)
    b, _ = _params(tmp_path / "split")
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    # the checkpoint says how the model was made and on what data
    assert record.model_config.width == 16 and record.prepare.patch_size == 32
    assert record.version == cryostream.__version__ and record.train == CONFIG
    assert record.path == whole.absolute() and record.store == str(store.absolute())
    steps = sorted(int(p.name) for p in (whole / "checkpoints").iterdir()
                   if p.name.isdigit())
    assert steps == [4, 8]  # keep_checkpoints=2
    # each checkpoint holds the parameters alone beside the training state, equal to its params
    import orbax.checkpoint as ocp

    for at in steps:
        folder = tmp_path / "split" / "checkpoints" / str(at)
        state = ocp.StandardCheckpointer().restore(folder / "state")
        params = ocp.StandardCheckpointer().restore(folder / "params")
        assert int(state["step"]) == at
        for x, y in zip(jax.tree.leaves(state["params"]), jax.tree.leaves(params), strict=True):
            np.testing.assert_array_equal(x, y)
    for x, y in zip(jax.tree.leaves(params), b, strict=True):  # step 8: what load_model read
        np.testing.assert_array_equal(x, y)


def test_metrics_curve_and_eval(tiny_run, store):
    result, run = tiny_run.result, tiny_run.run  # CONFIG's 8 steps on this store
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 8 and "eval_psnr" in rows[-1] and "eval_noisy_psnr" in rows[-1]
    assert (run / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert result.final_loss == rows[-1]["loss"] and result.eval["loss"] == rows[-1]["eval_loss"]
    # the evaluation is of the first test batch (4 patches), recomputed here from the store
    model, _ = load_model(run)
    noisy, clean = _test_patches(store, 6)
    denoised = np.asarray(nnx.jit(lambda m, x: m(x))(model, noisy[..., None]))[..., 0]
    assert result.eval["patches"] == 4
    assert result.eval["noisy_psnr"] == pytest.approx(_psnr_per_patch(noisy, clean)[:4].mean(),
                                                      abs=1e-4)
    assert result.eval["psnr"] == pytest.approx(_psnr_per_patch(denoised, clean)[:4].mean(),
                                                abs=1e-3)
    assert result.eval["loss"] == pytest.approx(np.mean((denoised[:4] - clean[:4]) ** 2), rel=1e-4)
    # 8 steps of unet-small already beat the noisy input: +0.4 dB here; require +0.2 dB
    assert result.eval["psnr"] > result.eval["noisy_psnr"] + 0.2
    from scipy.ndimage import gaussian_filter

    from cryostream.evaluate import compare_on_store

    scores = compare_on_store(run, store, patches=6)
    assert scores["patches"] == 6

    def psnr(x):
        return 10 * np.log10(1 / np.mean((np.asarray(x, np.float64) - clean) ** 2))

    assert scores["noisy_psnr"] == pytest.approx(psnr(noisy), abs=1e-4)
    assert scores["model_psnr"] == pytest.approx(psnr(denoised), abs=1e-3)
    assert scores["model_psnr"] > scores["noisy_psnr"] + 0.2
    # the best Gaussian is a real low-pass here (σ = 8 px, +4.9 dB over the input): require σ > 0
    # and +3 dB, and its PSNR to be that of the filter at its σ
    sigma = scores["gaussian_sigma"]
    assert sigma > 0 and scores["gaussian_psnr"] > scores["noisy_psnr"] + 3
    assert scores["gaussian_psnr"] == pytest.approx(psnr(gaussian_filter(noisy, (0, sigma, sigma))),
                                                    abs=1e-4)


@pytest.mark.slow
def test_on_device_noise(store, tmp_path):
    import h5py

    with h5py.File(store) as f:
        sources = [s.decode() for s in f["micrographs/source"]]
    cfg = PrepareConfig(patch_size=32, stride=32, test_fraction=0.34, dtype="float16",
                        noise=NoiseConfig(mode="on-device"))
    targets_only = prepare(sources, tmp_path / "t.h5", cfg).output
    result = train(targets_only, tmp_path / "run", CONFIG, log=lambda *_: None)
    with h5py.File(targets_only) as f:
        assert "input" not in f["test"]
        clean = f["test"]["target"][:4].astype(np.float64)
    # Poisson(dose·x)/dose + N(0, σ²) has the variance x/dose + σ² at each pixel (x ≥ 0 here)
    assert clean.min() >= 0
    noise = cfg.noise
    expected = np.mean(10 * np.log10(1 / np.mean(clean / noise.dose + noise.sigma**2, axis=(1, 2))))
    assert result.eval["noisy_psnr"] == pytest.approx(expected, abs=0.3)
    # 8 steps bring the loss on clean targets from 0.19 to about the noise power (0.91 of it
    # here): no more than 1.1 of it (not worse than the identity), no less than half (no leak)
    noise_power = np.mean(clean / noise.dose + noise.sigma**2)
    assert 0.5 * noise_power < result.final_loss < 1.1 * noise_power


_DEVICES = textwrap.dedent("""
    import json, sys
    from cryostream.training import TrainConfig, train
    import jax
    cfg = TrainConfig(model="unet-small", precision="fp32", steps=4, batch_size=4, eval_every=4,
                      eval_batches=1, checkpoint_every=4, warmup_steps=1, threads=2)
    r = train(sys.argv[1], sys.argv[2], cfg, log=lambda *_: None)
    print(json.dumps({"devices": jax.device_count(), "loss": r.final_loss}))
""")


def _run_devices(store, run, count):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={count}",
           "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", _DEVICES, str(store), str(run)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_four_devices_match_one(store, tmp_path):
    one = _run_devices(store, tmp_path / "one", 1)
    four = _run_devices(store, tmp_path / "four", 4)
    assert one["devices"] == 1 and four["devices"] == 4
    assert four["loss"] == pytest.approx(one["loss"], rel=1e-4)


@pytest.mark.slow
def test_batch_must_divide_among_devices(store):
    code = textwrap.dedent("""
        import sys, jax
        from jax.sharding import NamedSharding, PartitionSpec as P
        from cryostream.loader import PatchLoader
        mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
        loader = PatchLoader(sys.argv[1], batch_size=6)
        try:
            next(loader.device_batches(NamedSharding(mesh, P("data"))))
        except Exception as exc:
            print(type(exc).__name__, exc)
    """)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code, str(store)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert "ConfigError batch_size=6 is not divisible by the 4 devices" in out.stdout, out.stderr


@pytest.mark.slow
def test_cli_train(store, tmp_path, capsys):
    assert main(["train", str(store), "-o", str(tmp_path / "run"), "--model", "unet-small",
                 "--steps", "4", "--batch-size", "4", "--precision", "fp32", "--eval-every", "4",
                 "--quiet"]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out.startswith("trained unet-small for 4 steps") and "test PSNR" in out


def test_a_preset_that_cannot_take_the_stores_patches_is_refused_before_anything_is_written(
        store, tmp_path):
    """unet-deep pools six times (multiples of 64): on a store of 32-multiple patches it is
    refused by name with the fix, and no run folder is made (it failed inside the compile)."""
    import dataclasses

    from cryostream.store import store_facts

    patch = store_facts(store)[0].patch_size
    assert patch % 32 == 0 and patch % 64  # the fixture's store is one unet-deep cannot take
    with pytest.raises(cryostream.ConfigError, match=r"unet-deep.*--model.*multiples of 64.*--patch"):
        train(store, tmp_path / "run", dataclasses.replace(CONFIG, model="unet-deep"), log=lambda *_: None)
    assert not (tmp_path / "run").exists()


def test_a_training_within_its_warm_up_is_told_too_short_not_diverged(tiny_run, tmp_path):
    """`train --steps 2` (a newcomer's smoke test) took its second step at the full learning
    rate (the warm-up shortened to one step) and ended "diverged: lower the learning rate",
    though nothing diverged: the network had barely started. It says so, and to train longer."""
    from cryostream.errors import TrainingDivergedError

    config = dataclasses.replace(TINY_TRAIN, steps=2, warmup_steps=100, learning_rate=0.03)
    said = []
    with pytest.raises(TrainingDivergedError, match=r"after 2 steps the network is not trained "
                       r"yet .*within its learning rate's warm-up.*Train for more steps"):
        cryostream.train(tiny_run.store, tmp_path / "run", config, log=said.append)
    assert said == [s for s in said if "diverged" not in s] and any("is far off" in s for s in said)
    from cryostream.denoise.network import check_trained
    from cryostream.errors import StoreError
    from cryostream.runs import load_record

    with pytest.raises(StoreError, match="a training of 2 steps keeps no network still far from "
                       r"trained .*train for more steps"):  # what denoise and evaluate then say
        check_trained(tmp_path / "run", load_record(tmp_path / "run"))


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_a_training_stopped_between_rows_logs_the_step_it_stopped_at(store, tmp_path):
    """Rows are logged every 10 steps; a training stopped at step 13 (a time budget or
    ``stop_at``, as fit's budget stops it) logs that step too, so that its metrics.jsonl is
    never empty after a short budget and holds the checkpointed step's loss."""
    import json

    config = dataclasses.replace(CONFIG, steps=30, eval_every=30, checkpoint_every=30)
    train(store, tmp_path / "run", config, stop_at=13, log=lambda *_: None)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 13] and all(np.isfinite(r["loss"]) for r in rows)
    train(store, tmp_path / "budget", config, stop_at=5, log=lambda *_: None)
    rows = (tmp_path / "budget" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [5]
    # resumed, the run's log is the uninterrupted one's: the row of the stop is dropped
    train(store, tmp_path / "run", config, resume=True, log=lambda *_: None)
    train(store, tmp_path / "whole", config, log=lambda *_: None)
    assert [json.loads(r)["step"] for r in (tmp_path / "run" / "metrics.jsonl").read_text(
        ).splitlines()] == [json.loads(r)["step"] for r in (tmp_path / "whole" / "metrics.jsonl"
                                                              ).read_text().splitlines()] == [10, 20, 30]


def test_a_training_stopped_by_its_time_limit_is_scored_where_it_stopped(tiny_run, tmp_path):
    """A time budget that ran out before the first eval_every (a fit of half a minute) left no
    held-out figure to judge the run by, nor to warn of one under its noisy input: the step it
    stops at is scored too."""
    from cryostream.training import train
    from tests.conftest import TINY_TRAIN

    config = dataclasses.replace(TINY_TRAIN, steps=50, eval_every=40)
    result = train(tiny_run.store, tmp_path / "timed", config, time_limit_s=0, log=lambda *_: None)
    rows = [json.loads(line) for line in (tmp_path / "timed/metrics.jsonl").read_text().splitlines()]
    assert result.steps == 1 and rows[-1]["step"] == 1
    assert np.isfinite(rows[-1]["eval_psnr"]) and np.isfinite(rows[-1]["eval_noisy_psnr"])


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_a_training_from_python_is_noted_on_the_cryostream_logger(store, tmp_path, notes):
    """The quickstart's two logging lines, then ``cryostream.train(...)``: nothing was said
    for the minutes it took (notes came only with ``progress=True``'s bar or a caller's own
    ``on_step``). Now the steps are noted as ``fit`` notes them; with a progress bar, or the
    caller's own ``on_metrics``, they are not."""
    config = dataclasses.replace(CONFIG, steps=12, eval_every=12, checkpoint_every=12)
    train(store, tmp_path / "run", config, log=lambda *_: None)
    said = [n for n in notes if n.startswith("training: step ")]
    assert said and said[0].startswith("training: step 1/12, loss ") and "compiling included" \
        in said[0], notes
    assert said[-1].startswith("training: step 12/12, loss ") and "test PSNR" in said[-1], said
    notes.clear()
    rows = []
    train(store, tmp_path / "own", config, on_metrics=rows.append, log=lambda *_: None)
    train(store, tmp_path / "bar", config, progress=True, log=lambda *_: None)
    assert not [n for n in notes if n.startswith("training: step ")] and rows


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_a_resumed_training_gives_its_speed_or_none_where_nothing_was_timed(store, tmp_path,
                                                                            capsys):
    """A short training resumed: ``patches_per_second`` was nan (its steps were timed only
    from step 2 of the run, which a resumed call never reaches). It is timed from this call's
    second step; where the call made too few steps to time any, it is None, and the command's
    summary leaves the speed out (it never prints nan)."""
    import math

    four = cryostream.TrainConfig(model="unet-small", precision="fp32", steps=4, batch_size=4,
                                  eval_every=4, checkpoint_every=4)  # as the flags below give
    first = train(store, tmp_path / "run", four, log=lambda *_: None)
    assert first.patches_per_second is not None and first.patches_per_second > 0
    more = dataclasses.replace(four, steps=8)
    resumed = train(store, tmp_path / "run", more, resume=True, log=lambda *_: None)
    assert resumed.steps == 8
    assert resumed.patches_per_second is not None and math.isfinite(resumed.patches_per_second)
    assert resumed.patches_per_second > 0
    # one step more: compiled, not timed
    args = ["train", str(store), "-o", str(tmp_path / "run"), "--model", "unet-small",
            "--steps", "9", "--batch-size", "4", "--precision", "fp32", "--eval-every", "4",
            "--checkpoint-every", "4", "--resume", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out.startswith("trained unet-small from step 8 to 9 into ") and "nan" not in out
    assert "patches/s" not in out, out
    # two more: the first compiles, the second starts the clock; none is timed
    once = train(store, tmp_path / "run", dataclasses.replace(four, steps=10), resume=True,
                 log=lambda *_: None)
    assert once.steps == 10 and once.patches_per_second is None
