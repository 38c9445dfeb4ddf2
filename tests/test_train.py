"""Training: one compilation, checkpoints and exact resume, metrics, several devices, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import cryostream
from cryostream import NoiseConfig, PrepareConfig
from cryostream.cli import main
from cryostream.loader import PatchLoader
from cryostream.prepare import prepare
from cryostream.training import (
    TrainConfig,
    create_model,
    create_train_state,
    load_model,
    make_optimizer,
    make_train_step,
    train,
)

CONFIG = TrainConfig(model="unet-small", precision="fp32", steps=8, batch_size=4, eval_every=4,
                     eval_batches=1, checkpoint_every=4, keep_checkpoints=2, warmup_steps=2,
                     threads=2)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    sim = cryostream.simulate(root / "sim", 3, shape=(160, 128), seed=2)
    return prepare(sim.micrographs, root / "data.h5",
                   PrepareConfig(patch_size=32, stride=32, test_fraction=0.34)).output


def test_the_step_compiles_once(store):
    model = create_model(CONFIG.model_config())
    tx = make_optimizer(CONFIG)
    graphdef, state = create_train_state(model, tx)
    step = make_train_step(graphdef, tx)
    loader = PatchLoader(store, batch_size=4)
    losses = []
    for i, batch in enumerate(loader.device_batches()):
        state, out = step(state, batch)
        losses.append(float(out["loss"]))
        if i == 3:
            break
    loader.close()
    assert step._cache_size() == 1
    assert int(state["step"]) == 4 and all(np.isfinite(losses))


def _params(run):
    model, record = load_model(run)
    from flax import nnx

    return jax.tree.leaves(nnx.state(model, nnx.Param)), record


def test_resume_gives_the_uninterrupted_result(store, tmp_path):
    whole = train(store, tmp_path / "whole", CONFIG, log=lambda *_: None)
    assert whole.steps == 8
    half = train(store, tmp_path / "split", CONFIG, stop_at=4, log=lambda *_: None)
    assert half.steps == 4
    with pytest.raises(cryostream.StoreError, match="pass resume=True"):
        train(store, tmp_path / "split", CONFIG)
    logged = []
    rest = train(store, tmp_path / "split", CONFIG, resume=True, log=logged.append)
    assert logged == ["resumed from step 4"] and rest.steps == 8
    a, record = _params(tmp_path / "whole")
    b, _ = _params(tmp_path / "split")
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    # the checkpoint says how the model was made and on what data
    assert record["model"]["width"] == 16 and record["prepare"]["patch_size"] == 32
    assert record["cryostream_version"] == cryostream.__version__
    steps = sorted(int(p.name) for p in (tmp_path / "whole" / "checkpoints").iterdir()
                   if p.name.isdigit())
    assert steps == [4, 8]  # keep_checkpoints=2


def test_metrics_curve_and_eval(store, tmp_path):
    result = train(store, tmp_path / "run", CONFIG, log=lambda *_: None)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 8 and "eval_psnr" in rows[-1] and "eval_noisy_psnr" in rows[-1]
    assert (tmp_path / "run" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert result.eval["patches"] == 4 and np.isfinite(result.final_loss)
    from cryostream.evaluate import compare_on_store

    scores = compare_on_store(tmp_path / "run", store, patches=6)
    assert scores["patches"] == 6
    assert scores["gaussian_psnr"] >= scores["noisy_psnr"]  # σ = 0 is among the candidates
    assert np.isfinite(scores["model_psnr"])


def test_on_device_noise(store, tmp_path):
    import h5py

    with h5py.File(store) as f:
        sources = [s.decode() for s in f["micrographs/source"]]
    cfg = PrepareConfig(patch_size=32, stride=32, test_fraction=0.34, dtype="float16",
                        noise=NoiseConfig(mode="on-device"))
    targets_only = prepare(sources, tmp_path / "t.h5", cfg).output
    result = train(targets_only, tmp_path / "run", CONFIG, log=lambda *_: None)
    assert np.isfinite(result.final_loss) and result.eval["noisy_psnr"] < 40


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


def test_four_devices_match_one(store, tmp_path):
    one = _run_devices(store, tmp_path / "one", 1)
    four = _run_devices(store, tmp_path / "four", 4)
    assert one["devices"] == 1 and four["devices"] == 4
    assert four["loss"] == pytest.approx(one["loss"], rel=1e-4)


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


def test_cli_train(store, tmp_path, capsys):
    assert main(["train", str(store), "-o", str(tmp_path / "run"), "--model", "unet-small",
                 "--steps", "4", "--batch-size", "4", "--precision", "fp32", "--eval-every", "4",
                 "--quiet"]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out.startswith("trained unet-small for 4 steps") and "test PSNR" in out
