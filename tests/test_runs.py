"""Run records and parameters-only loading: old and new checkpoints, no trainer, clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import cryostream
from cryostream import runs
from cryostream.config import NoiseConfig, PrepareConfig, TrainConfig
from cryostream.errors import ConfigError, StoreError
from cryostream.models import ModelConfig, UNet

#: ``config.json`` as cryostream 0.1.0 wrote it, before the ``params`` checkpoint item.
OLD_RECORD = {
    "cryostream_version": "0.1.0",
    "train": {"model": "unet-small", "precision": "fp32", "residual": False, "steps": 5,
              "batch_size": 4, "learning_rate": 0.001, "warmup_steps": 1, "weight_decay": 0.0001,
              "clip_norm": 1.0, "loss": "mse", "eval_every": 5, "eval_batches": 1,
              "checkpoint_every": 5, "keep_checkpoints": 3, "seed": 0, "threads": 2,
              "prefetch": 4},
    "model": {"width": 16, "levels": 3, "first_kernel": 5, "head": [16, 8],
              "compute_dtype": "float32", "residual": False},
    "prepare": {"compression": "none", "dtype": "float32", "edge": "cover",
                "noise": {"alpha": 1.0, "dose": 10.0, "mode": "stored", "model": "poisson-gaussian",
                          "radius": 16, "shot": None, "sigma": 0.05},
                "patch_size": 32, "percentile": 95.0, "seed": 0, "stride": 32,
                "test_fraction": 0.34},
    "store": "/data/old.h5",
}
SMALL = ModelConfig(width=16, levels=3, first_kernel=5, head=(16, 8), compute_dtype="float32")


def _params(seed: int, config: ModelConfig = SMALL):
    return nnx.split(UNet(config, rngs=nnx.Rngs(seed)), nnx.Param)[1]


def _arrays(params) -> dict[str, np.ndarray]:
    """Each parameter as a NumPy copy, by its path."""
    return {jax.tree_util.keystr(path): np.array(leaf)
            for path, leaf in jax.tree_util.tree_leaves_with_path(params)}


def _state(params, step: int) -> dict:
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))
    return {"params": params, "opt_state": tx.init(params), "step": jnp.asarray(step, jnp.int32)}


def _assert_params(model, expected: dict[str, np.ndarray]) -> None:
    got = _arrays(nnx.state(model, nnx.Param))
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


@pytest.fixture(scope="module")
def old_run(tmp_path_factory):
    """A run written the way training wrote them before the ``params`` item: steps 2 and 5."""
    run = tmp_path_factory.mktemp("old") / "run"
    manager = ocp.CheckpointManager((run / "checkpoints").absolute(),
                                    options=ocp.CheckpointManagerOptions(create=True))
    saved = {}
    for step, seed in ((2, 1), (5, 2)):
        params = _params(seed)
        saved[step] = _arrays(params)
        manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(_state(params, step)),
            meta=ocp.args.JsonSave({"loader": {"epoch": 0, "batch": step}, "config": OLD_RECORD})))
    manager.wait_until_finished()
    manager.close()
    (run / "config.json").write_text(json.dumps(OLD_RECORD, indent=2))
    return run, saved


def _record(run, **train) -> runs.RunRecord:
    return runs.RunRecord(
        path=run, train=TrainConfig(**{"model": "unet-small", "precision": "fp32", **train}),
        prepare=PrepareConfig(patch_size=32, stride=32,
                              noise=NoiseConfig(model="matched", alpha=0.5, radius=8)),
        store="/data/new.h5")


@pytest.fixture(scope="module")
def new_run(tmp_path_factory):
    """A run written with :func:`runs.save_checkpoint`, as training writes them now."""
    run = tmp_path_factory.mktemp("new") / "run"
    record = _record(run, residual=True, recorrupt=True)
    runs.save_record(run, record)
    params = _params(7, record.model_config)
    saved = _arrays(params)
    manager = runs.checkpoint_manager(run, create=True)
    runs.save_checkpoint(manager, 3, _state(params, 3), {"config": record.to_dict()})
    manager.wait_until_finished()
    manager.close()
    return run, saved


def test_an_old_run_loads_its_parameters_without_the_optimizer(old_run):
    run, saved = old_run
    assert not (run / "checkpoints" / "5" / "params").exists()  # the old layout
    model, record = runs.load_model(run)
    _assert_params(model, saved[5])
    model, _ = runs.load_model(run, step=2)
    _assert_params(model, saved[2])
    assert model.config == SMALL
    assert record.preset == "unet-small" and record.version == "0.1.0"
    assert record.noise.model == "poisson-gaussian" and record.alpha == 1.0
    assert record.recorrupt is False and record.percentile == 95.0
    assert record.path == run.absolute() and record.store == "/data/old.h5"
    with pytest.raises(StoreError, match=r"no checkpoint at step 3; it has steps \[2, 5\]"):
        runs.load_model(run, step=3)


def test_a_new_run_loads_from_its_params_item_alone(new_run, tmp_path):
    run, saved = new_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "checkpoints" / "3" / "state")  # inference never reads the state
    model, record = runs.load_model(copy)
    _assert_params(model, saved)
    assert model.config == record.model_config and model.config.residual
    assert record.recorrupt and record.alpha == 0.5 and record.noise.model == "matched"


def test_training_checkpoints_keep_the_state_and_the_parameters(new_run):
    run, saved = new_run
    manager = runs.checkpoint_manager(run)
    like = _state(_params(0, SMALL), 0)
    state, meta = runs.restore_state(manager, 3, like)
    manager.close()
    assert int(state["step"]) == 3 and meta["config"]["train"]["recorrupt"] is True
    for key, value in _arrays(state["params"]).items():
        np.testing.assert_array_equal(value, saved[key], err_msg=key)


_INFER = textwrap.dedent("""
    import sys
    import numpy as np
    from cryostream.runs import load_model
    for run in sys.argv[1:]:
        model, record = load_model(run)
        out = np.asarray(model(np.ones((1, 32, 32, 1), np.float32)))
        print(record.preset, out.shape)
    print("training imported:", "cryostream.training" in sys.modules)
""")


@pytest.mark.slow
def test_inference_loads_without_the_trainer(old_run, new_run):
    result = subprocess.run([sys.executable, "-c", _INFER, str(old_run[0]), str(new_run[0])],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["unet-small (1, 32, 32, 1)", "unet-small (1, 32, 32, 1)",
                                          "training imported: False"]


def test_a_folder_that_is_not_a_run(tmp_path):
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    message = (f"{folder}: not a run folder (no config.json); pass the folder that "
               "cryostream train or fit wrote")
    for read in (runs.load_model, runs.load_record, runs.check_run):
        with pytest.raises(StoreError) as info:
            read(folder)
        assert str(info.value) == message and isinstance(info.value, OSError)


def test_a_run_without_checkpoints(tmp_path):
    runs.save_record(tmp_path / "run", _record(tmp_path / "run"))
    with pytest.raises(StoreError) as info:
        runs.load_model(tmp_path / "run")
    assert str(info.value) == (
        f"{tmp_path / 'run'}: no checkpoint in {tmp_path / 'run' / 'checkpoints'}; train first "
        "(cryostream train; to finish a run: cryostream train --resume, in Python "
        "train(..., resume=True)), or, for a run made by cryostream fit, run the same fit "
        "command again")


@pytest.mark.parametrize("model, guess", [("genral", " (did you mean 'general'?)"),
                                          ("nonexist_run", "")])
def test_a_model_that_does_not_exist(model, guess, tmp_path, monkeypatch):
    """A path that is not there says so, lists the shipped models and, for a mistyped name,
    suggests the closest; a shipped name or an existing path passes."""
    from cryostream.denoise.network import check_model, model_record

    monkeypatch.chdir(tmp_path)
    message = (f"{model}: does not exist{guess}; pass a run folder that cryostream train or fit "
               "wrote, an exported .npz, or the name of a shipped model: general")
    with pytest.raises(StoreError) as info:
        check_model(model)
    assert str(info.value) == message
    with pytest.raises(StoreError, match=f"^{tmp_path / model}: does not exist"):
        model_record(tmp_path / model)  # as denoise passes it
    assert Path(check_model("general")).is_file()
    (tmp_path / model).mkdir()  # there, but not a run: load_record says what it lacks
    assert check_model(model) == str(tmp_path / model)
    with pytest.raises(StoreError, match="not a run folder"):
        model_record(model)


def test_damaged_and_foreign_records(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(StoreError, match="not a JSON run record"):
        runs.load_record(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**OLD_RECORD, "extra": 1}))
    with pytest.raises(ConfigError, match="a run record has the keys"):
        runs.load_record(tmp_path)
    bad = {**OLD_RECORD, "train": {**OLD_RECORD["train"], "optimizer": "sgd"}}
    (tmp_path / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match=r"TrainConfig: unknown keys \['optimizer'\]"):
        runs.load_record(tmp_path)


@pytest.mark.parametrize("train", [{}, {"residual": True, "recorrupt": True, "precision": "bf16"}])
def test_a_record_round_trips(tmp_path, train):
    record = _record(tmp_path / "run", **train)
    runs.save_record(tmp_path / "run", record)
    assert runs.load_record(tmp_path / "run") == record
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert set(written) == {"cryostream_version", "train", "model", "prepare", "store"}
    assert written["cryostream_version"] == cryostream.__version__
    assert written["prepare"]["noise"] == {"model": "matched", "sigma": 0.05, "dose": 10.0,
                                           "mode": "stored", "alpha": 0.5, "shot": None,
                                           "radius": 8}


def test_an_old_record_reads_as_typed_configs(old_run):
    run, _ = old_run
    record = runs.load_record(run)
    assert record.train == TrainConfig(model="unet-small", precision="fp32", steps=5, batch_size=4,
                                       warmup_steps=1, eval_every=5, eval_batches=1,
                                       checkpoint_every=5, threads=2)
    assert record.prepare == PrepareConfig(patch_size=32, stride=32, test_fraction=0.34)
    assert record.model_config == SMALL and record.precision == "fp32" and not record.residual


@pytest.mark.parametrize("key, value, named", [
    ("batch_size", "four", "TrainConfig.batch_size='four': must be an integer"),
    ("residual", 1, "TrainConfig.residual=1: must be true or false"),
    ("learning_rate", None, "TrainConfig.learning_rate=None: must be a number"),
    ("steps", 0, "steps=0: must be ≥ 1"),
])
def test_a_wrong_value_in_the_record_names_the_file_and_the_key(tmp_path, key, value, named):
    """A config.json value of the wrong kind or out of range: a ConfigError naming the file
    and the key, never a TypeError from a config's checks."""
    bad = {**OLD_RECORD, "train": {**OLD_RECORD["train"], key: value}}
    (tmp_path / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError) as info:
        runs.load_record(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'config.json'}: not a valid run record (")
    assert named in message and "train the run again" in message


_FULL_DISK = textwrap.dedent("""
    import resource, signal, sys
    from pathlib import Path
    import jax.numpy as jnp
    from cryostream import runs
    from cryostream.errors import StoreError
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    run, limit, first = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    # many small arrays: the tree's metadata files are larger than its data
    params = {f"layer{i:03d}": {"kernel": jnp.full((3,), float(i)), "bias": jnp.zeros(2)}
              for i in range(300)}
    state = {"params": params, "opt_state": {"mu": params}, "step": jnp.zeros((), jnp.int32)}
    manager = runs.checkpoint_manager(run, create=True)
    if first:
        runs.save_checkpoint(manager, first, state, {"loader": {}})
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    try:
        runs.save_checkpoint(manager, 9, state, {"loader": {}})
    except StoreError as exc:
        print(exc)
    if first:  # the earlier checkpoint reads back whole: its checksums are verified
        restored, _ = runs.restore_state(manager, first, state)
        print("restored step", first)
""")


@pytest.mark.slow
@pytest.mark.parametrize("first", [0, 4], ids=["first-checkpoint", "after-step-4"])
def test_a_checkpoint_on_a_full_disk_is_one_error_and_leaves_nothing(tmp_path, first):
    """save_checkpoint where files may not grow past 20 kB (a full disk, through
    RLIMIT_FSIZE in a child process): one StoreError naming the run and what is kept, no
    temporary folder, the earlier checkpoint unchanged, nothing else on stderr. The first
    checkpoint fails inside orbax (its size is guessed from the arrays, which fit); the second
    is refused before writing (the last checkpoint shows that it cannot fit)."""
    run = tmp_path / "run"
    result = subprocess.run([sys.executable, "-c", _FULL_DISK, str(run), "20000", str(first)],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
    message, *rest = result.stdout.strip().splitlines()
    assert rest == ([f"restored step {first}"] if first else [])
    assert message.startswith(f"{run}: checkpoint step 9 could not be written (")
    assert "file size limit" in message
    if first:
        assert "the last good checkpoint, step 4, is kept" in message and "--resume" in message
    else:
        assert "no earlier checkpoint was written" in message
    checkpoints = run / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ([str(first)] if first else [])
