"""A training step fitted to the memory there is: micro-batches where the whole batch does not
fit, the same update, a note; an error naming the fix where one patch does not fit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import cryostream
from cryostream.denoise.memory import ENV
from cryostream.loader import PatchLoader
from cryostream.runs import load_model
from cryostream.step_memory import MicroBatchedStep, step_bytes, training_out_of_memory
from cryostream.training import (
    create_model,
    create_train_state,
    make_optimizer,
    make_train_step,
    train,
)
from tests.conftest import TINY_TRAIN


def _first_batch(store, size: int = 4) -> dict:
    loader = PatchLoader(store, batch_size=size)
    batch = next(loader.device_batches())
    loader.close()
    return batch


def _whole_step_bytes(store) -> int:
    """XLA's plan for :data:`TINY_TRAIN`'s step on the whole batch (4 patches of 32²)."""
    model = create_model(TINY_TRAIN.model_config())
    tx = make_optimizer(TINY_TRAIN)
    graphdef, state = create_train_state(model, tx)
    return step_bytes(make_train_step(graphdef, tx), state, _first_batch(store))


@pytest.mark.parametrize("parts", [2, 4])
def test_micro_batches_give_the_whole_batchs_step(tiny_run, parts):
    """One step in 2 or 4 micro-batches: the whole batch's loss, gradient norm and update."""
    model = create_model(TINY_TRAIN.model_config())
    tx = make_optimizer(TINY_TRAIN)
    graphdef, state = create_train_state(model, tx)
    batch = _first_batch(tiny_run.store)
    whole, said = make_train_step(graphdef, tx)(jax.tree.map(jnp.copy, state), batch)
    step = make_train_step(graphdef, tx, micro_batches=parts)
    assert isinstance(step, MicroBatchedStep)
    split, told = step(state, batch)
    assert int(split["step"]) == int(whole["step"]) == 1
    for name in ("loss", "grad_norm"):
        assert float(told[name]) == pytest.approx(float(said[name]), rel=1e-5)
    for a, b in zip(jax.tree.leaves(whole["params"]), jax.tree.leaves(split["params"]),
                    strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-7)
    assert step_bytes(step, split, batch) < step_bytes(make_train_step(graphdef, tx), split,
                                                       batch)


def test_training_where_the_batch_does_not_fit_takes_micro_batches_and_the_same_steps(
        tiny_run, tmp_path, monkeypatch, notes):
    """The shared run trained again with the network's memory set under the whole batch's
    step: two micro-batches of 2, said in a note, and the network the whole batch trains."""
    whole = _whole_step_bytes(tiny_run.store)
    monkeypatch.setenv(ENV, f"{whole * 0.8 / 1e9}")
    result = train(tiny_run.store, tmp_path / "run", TINY_TRAIN, log=lambda *_: None)
    assert result.steps == TINY_TRAIN.steps
    said = next(n for n in notes if "micro-batches" in n)
    assert "each batch of 4 patches of 32² is trained in 2 micro-batches of 2" in said
    assert f"{ENV}=" in said and "the update is the whole batch's" in said
    ours = jax.tree.leaves(nnx.state(load_model(tmp_path / "run"), nnx.Param))
    shared = jax.tree.leaves(nnx.state(load_model(tiny_run.run), nnx.Param))
    for a, b in zip(shared, ours, strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-3,
                                   atol=1e-3 * float(np.abs(np.asarray(a)).max()))


def test_held_out_figures_in_micro_batches_are_the_whole_batchs(tiny_run):
    """The evaluation step in the training's micro-batches: each patch's figures, in order."""
    from cryostream.held_out import make_eval_step

    model = create_model(TINY_TRAIN.model_config())
    graphdef, params = nnx.split(model, nnx.Param)
    batch = _first_batch(tiny_run.store)
    step = make_eval_step(graphdef)
    whole = step(params, batch, 3)
    step.parts = 2
    split = step(params, batch, 3)
    for name in ("mse", "noisy_mse", "target_power"):
        np.testing.assert_allclose(np.asarray(split[name]), np.asarray(whole[name]), rtol=1e-5)


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_the_bands_loss_in_micro_batches_is_said_to_be_weighed_within_each(
        tiny_run, tmp_path, monkeypatch, notes):
    import dataclasses

    config = dataclasses.replace(TINY_TRAIN, loss="bands", steps=2, eval_every=2,
                                 checkpoint_every=2)
    monkeypatch.setenv(ENV, f"{_whole_step_bytes(tiny_run.store) * 0.8 / 1e9}")
    train(tiny_run.store, tmp_path / "run", config, log=lambda *_: None)
    said = next(n for n in notes if "micro-batches" in n)
    assert said.endswith("the bands loss is weighed within each micro-batch")


def test_memory_that_holds_no_patch_is_refused_with_the_fix(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, "0.00001")  # 10 kB
    with pytest.raises(cryostream.ConfigError) as raised:
        train(tiny_run.store, tmp_path / "run", TINY_TRAIN, log=lambda *_: None)
    said = str(raised.value)
    assert said.startswith("one training step on a single patch of 32² (the smallest the "
                           "unet-small takes) takes ")
    # 32 px is the smallest patch prepare and fit take (it had said prepare --patch 16, refused)
    assert "--patch" not in said and "PrepareConfig" not in said and "no patch fits" not in said
    assert "--model unet-small" not in said  # the smallest network is the one trained
    assert "is there for the network (" in said and "): if this machine (or its GPU) has more " \
        "free memory, set the environment variable" in said
    assert f"{ENV}=0.00001" in said
    assert not list((tmp_path / "run").glob("checkpoints/*"))
    from cryostream.denoise.network import check_trained
    from cryostream.runs import load_record

    with pytest.raises(cryostream.StoreError, match="its training stopped before its first "
                       "checkpoint .*continue it with cryostream train --resume"):
        check_trained(tmp_path / "run", load_record(tmp_path / "run"))  # what denoise says


def test_at_the_smallest_patch_a_larger_network_is_told_to_take_a_smaller_one(tiny_run,
                                                                            monkeypatch):
    """The unet on the smallest patch there is (32²): nothing smaller to measure, so the
    error names the smaller network alone, with --overwrite for fit (its failed run's record
    is kept)."""
    from cryostream.config import TrainConfig
    from cryostream.step_memory import fitted_step

    monkeypatch.setenv(ENV, "0.00001")
    config = TrainConfig(model="unet", precision="fp32", batch_size=1)
    tx = make_optimizer(config)
    graphdef, state = create_train_state(create_model(config.model_config()), tx)
    with pytest.raises(cryostream.ConfigError) as raised:
        fitted_step(lambda micro_batches: make_train_step(graphdef, tx), state,
                    _first_batch(tiny_run.store, 1), config, 32, 8)
    assert str(raised.value).startswith(
        "one training step on a single patch of 32² (the smallest the unet takes) takes ")
    assert "10 kB is there for the network (" in str(raised.value)
    assert ("): train a smaller network (from scratch, at some cost in quality; train: --model "
            "unet-small; fit: the same command with --model unet-small --overwrite, which replaces "
            "this fit's run); or, if this machine") in str(raised.value)


def test_the_micro_batch_note_never_gives_the_step_and_the_memory_the_same_figure(
        tiny_run, monkeypatch, notes):
    """Where the whole batch's step and the memory there is round to the same figure, the note
    gives them enough digits to differ (it had said "not 1.0 GB at once) to fit the 1.0 GB")."""
    from cryostream.denoise.memory import memory_size, sizes_apart
    from cryostream.step_memory import fitted_step

    whole = _whole_step_bytes(tiny_run.store)
    limit = next(int(whole * f) for f in (0.99, 0.995, 0.999)
                 if memory_size(int(whole * f)) == memory_size(whole))
    monkeypatch.setenv(ENV, f"{limit / 1e9!r}")
    tx = make_optimizer(TINY_TRAIN)
    graphdef, state = create_train_state(create_model(TINY_TRAIN.model_config()), tx)
    step = fitted_step(lambda micro_batches: make_train_step(graphdef, tx, micro_batches=micro_batches),
                       state, _first_batch(tiny_run.store), TINY_TRAIN, 32, 8)
    assert step.parts == 2
    at_once, there = sizes_apart(whole, limit)
    assert at_once != there
    said = next(n for n in notes if "micro-batches" in n)
    assert f"per micro-batch, not {at_once} at once) to fit the {there} there is" in said
    assert sizes_apart(1.04e9, 1.0e9) == ("1.04 GB", "1.00 GB")
    assert sizes_apart(5.08e8, 1.0e9) == ("508 MB", "1.0 GB")  # different already: as they were


def test_a_memory_setting_that_is_no_number_is_refused_before_any_work(tiny_run, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setenv(ENV, "abc")
    with pytest.raises(cryostream.ConfigError, match=f"{ENV}='abc': must be a number"):
        train(tiny_run.store, tmp_path / "run", TINY_TRAIN, log=lambda *_: None)
    assert not (tmp_path / "run").exists()
    with pytest.raises(cryostream.ConfigError, match=f"{ENV}='abc': must be a number"):
        cryostream.fit(tiny_run.sim.micrographs, tmp_path / "fit")
    assert not (tmp_path / "fit").exists()


def test_xla_running_out_of_memory_in_a_step_is_said_as_what_to_change():
    """XLA's own RESOURCE_EXHAUSTED (a real allocation larger than any machine's address space)
    becomes a DeviceMemoryError naming the patches, the setting and how to resume; other
    errors pass."""
    import jax.numpy as jnp

    with pytest.raises(jax.errors.JaxRuntimeError) as raised:
        jnp.zeros((1 << 46,), jnp.float32).block_until_ready()
    found = training_out_of_memory(raised.value, 8, 1024, int(15.7e9), int(8.8e9))
    assert isinstance(found, cryostream.DeviceMemoryError)
    assert str(found).startswith("the training step ran out of memory on the CPU with 8 patches "
                                 "of 1024² at once, 15.7 GB planned (RESOURCE_EXHAUSTED")
    assert f"environment variable {ENV}, e.g. {ENV}=4.4 (it has 8.8 GB now)" in str(found)
    assert "before the command" in str(found)
    assert "a rerun resumes (train: add --resume; fit: the same command)" in str(found)
    assert training_out_of_memory(RuntimeError("RESOURCE_EXHAUSTED"), 8, 1024, None, None) is None
