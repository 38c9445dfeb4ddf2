"""``TrainConfig(fresh_noise=True)``: each patch's stored noise moved at every step."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

import cryostream
from cryostream import NoiseConfig, PrepareConfig, SimulateConfig
from cryostream.patches import moved_noise
from cryostream.prepare import prepare
from cryostream.runs import load_record
from cryostream.training import (
    create_model,
    create_train_state,
    make_optimizer,
    make_train_step,
    train,
)
from tests.conftest import TINY_TRAIN

CONFIG = dataclasses.replace(TINY_TRAIN, steps=4, eval_every=4, checkpoint_every=2)


def _views(a: np.ndarray) -> list[np.ndarray]:
    turned = [np.rot90(a, k) for k in range(4)]
    return turned + [np.flip(t, axis=1) for t in turned]


def test_each_patch_gets_its_own_noise_moved_with_its_values_kept():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(6, 8, 8, 1)).astype(np.float32)
    noise = rng.normal(size=(6, 8, 8, 1)).astype(np.float32)
    out = np.asarray(moved_noise(jax.random.key(3), target + noise, target))
    moved = out - target
    assert not np.allclose(moved, noise)
    found = []
    for i in range(len(noise)):  # the moved noise is a shift and symmetry of the patch's own
        np.testing.assert_allclose(np.sort(moved[i].ravel()), np.sort(noise[i].ravel()), atol=1e-6)
        hits = [(dy, dx, v) for dy in range(8) for dx in range(8)
                for v, view in enumerate(_views(np.roll(noise[i, ..., 0], (dy, dx), (0, 1))))
                if np.allclose(view, moved[i, ..., 0], atol=1e-6)]
        assert hits, f"patch {i}: not a shift and symmetry of its own noise"
        found.append(hits[0])
    assert len(set(found)) > 1  # drawn per patch, not once for the batch
    again = np.asarray(moved_noise(jax.random.key(3), target + noise, target))
    np.testing.assert_array_equal(out, again)  # the key decides
    other = np.asarray(moved_noise(jax.random.key(4), target + noise, target))
    assert not np.array_equal(out, other)


def _move_found(noise: np.ndarray, moved: np.ndarray) -> tuple[int, int, int]:
    """The (shift y, shift x, view) that takes ``noise`` (P, P) to ``moved``."""
    side = noise.shape[0]
    for dy in range(side):
        for dx in range(side):
            for v, view in enumerate(_views(np.roll(noise, (dy, dx), (0, 1)))):
                if np.allclose(view, moved, atol=1e-6):
                    return dy, dx, v
    raise AssertionError("not a shift and symmetry of its own noise")


def test_the_moves_use_every_symmetry_and_shifts_on_both_axes():
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(96, 6, 6, 1)).astype(np.float32)
    target = np.zeros_like(noise)
    moved = np.asarray(moved_noise(jax.random.key(0), noise, target))
    found = [_move_found(noise[i, ..., 0], moved[i, ..., 0]) for i in range(len(noise))]
    assert {v for *_, v in found} == set(range(8))
    assert len({dy for dy, _, _ in found}) > 3 and len({dx for _, dx, _ in found}) > 3


def test_the_train_step_trains_on_the_moved_noise():
    """Same state, same paired batch: the loss differs with fresh noise, and is the same when
    the input holds no noise to move."""
    rng = np.random.default_rng(2)
    target = rng.normal(size=(4, 32, 32)).astype(np.float32)
    noisy = {"input": target + rng.normal(size=target.shape).astype(np.float32), "target": target}
    clean = {"input": target.copy(), "target": target}

    def loss(fresh: bool, batch: dict) -> float:
        tx = make_optimizer(CONFIG)
        graphdef, state = create_train_state(create_model(CONFIG.model_config()), tx)
        step = make_train_step(graphdef, tx, fresh_noise=fresh)
        return float(step(state, {k: jax.numpy.asarray(v) for k, v in batch.items()})[1]["loss"])

    assert loss(True, noisy) != pytest.approx(loss(False, noisy), rel=1e-3)
    assert loss(True, clean) == pytest.approx(loss(False, clean), rel=1e-6)


def test_moved_noise_needs_square_patches():
    a = np.zeros((2, 8, 16, 1), np.float32)
    with pytest.raises(cryostream.ConfigError, match="not square"):
        moved_noise(jax.random.key(0), a, a)


@pytest.fixture(scope="module")
def paired_store(tmp_path_factory):
    """Micrographs paired with their truth (``prepare(targets=...)``), as the general model's."""
    root = tmp_path_factory.mktemp("paired")
    sim = cryostream.simulate(root / "sim", 2, config=SimulateConfig(shape=(128, 128), seed=5))
    cfg = PrepareConfig(patch_size=32, stride=32, test_fraction=0.0, noise=NoiseConfig(model="none"))
    return prepare(sim.micrographs, root / "pairs.h5", cfg, targets=sim.root / "truth").output


def test_fresh_noise_trains_is_recorded_and_must_match_on_resume(paired_store, tmp_path):
    cfg = dataclasses.replace(CONFIG, fresh_noise=True)
    result = train(paired_store, tmp_path / "run", cfg, stop_at=2, log=lambda *_: None)
    assert result.steps == 2
    assert load_record(tmp_path / "run").train.fresh_noise
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["fresh_noise"]
    with pytest.raises(cryostream.ConfigError, match="fresh_noise"):
        train(paired_store, tmp_path / "run", CONFIG, resume=True, log=lambda *_: None)
    resumed = train(paired_store, tmp_path / "run", cfg, resume=True, log=lambda *_: None)
    assert resumed.steps == 4 and np.isfinite(resumed.final_loss)


def test_fresh_noise_on_a_store_whose_noise_is_made_on_the_device_says_so(tmp_path):
    sim = cryostream.simulate(tmp_path / "sim", 2, config=SimulateConfig(shape=(96, 96), seed=7))
    cfg = PrepareConfig(patch_size=32, stride=32, test_fraction=0.0,
                        noise=NoiseConfig(model="gaussian", sigma=0.1, mode="on-device"))
    store = prepare(sim.micrographs, tmp_path / "d.h5", cfg).output
    with pytest.raises(cryostream.ConfigError, match="no stored noisy input"):
        train(store, tmp_path / "run", dataclasses.replace(CONFIG, fresh_noise=True),
              log=lambda *_: None)
    assert not (tmp_path / "run").exists()


def test_fresh_noise_is_refused_where_the_target_has_noise_of_its_own(tmp_path):
    """Stored added noise (its target is the noisy micrograph) and even/odd halves (each
    target is the other half): refused before a run folder is made, naming what to do."""
    sim = cryostream.simulate(tmp_path / "sim", 2, config=SimulateConfig(shape=(96, 96), seed=7,
                                                                         even_odd=True))
    added = PrepareConfig(patch_size=32, stride=32, test_fraction=0.0,
                          noise=NoiseConfig(model="gaussian", sigma=0.1))
    halves = dataclasses.replace(added, noise=NoiseConfig(model="none"))
    stores = {"noise-mode on-device": prepare(sim.micrographs, tmp_path / "a.h5", added).output,
              "even/odd halves": prepare(sim.evens, tmp_path / "h.h5", halves, odd=sim.odds).output}
    for says, store in stores.items():
        with pytest.raises(cryostream.ConfigError, match=f"--fresh-noise.*{says}"):
            train(store, tmp_path / "run", dataclasses.replace(CONFIG, fresh_noise=True),
                  log=lambda *_: None)
        assert not (tmp_path / "run").exists()
