"""Shared fixtures: tiny micrographs the tests make themselves, and one small trained run."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pytest

from cryostream.config import TrainConfig

#: How the shared run is trained (and test_train's other runs): unet-small, 8 steps of 4
#: patches, evaluated and checkpointed at steps 4 and 8.
TINY_TRAIN = TrainConfig(model="unet-small", precision="fp32", steps=8, batch_size=4, eval_every=4,
                         eval_batches=1, checkpoint_every=4, keep_checkpoints=2, warmup_steps=2,
                         threads=2)


def write_mrc(path: Path, data: np.ndarray, pixel_size: float = 0.66) -> Path:
    """Write ``data`` with mrcfile (its dtype picks the mode) and return the path."""
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = pixel_size
    return path


@pytest.fixture(scope="session", autouse=True)
def compile_cache(tmp_path_factory) -> Path:
    """The tests' own JAX compilation cache folder (never the user's ``~/.cache``), shared by
    the session and by the commands it runs in subprocesses."""
    import os

    from cryostream.compile_cache import ENV

    folder = tmp_path_factory.mktemp("jax-cache")
    os.environ[ENV] = str(folder)
    return folder


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def small_mrcs(tmp_path: Path, rng: np.random.Generator) -> list[Path]:
    """Three float32 micrographs of 96 × 80 px with distinct contents, positive as counts are."""
    folder = tmp_path / "mics"
    folder.mkdir()
    return [
        write_mrc(folder / f"m{i}.mrc", rng.normal(10 + i, 1, size=(96, 80)).astype(np.float32))
        for i in range(3)
    ]


@dataclasses.dataclass(frozen=True)
class TinyRun:
    """The shared run: ``root/run`` trained on ``root/data.h5`` (32² patches of ``sim``'s three
    160 × 128 px micrographs, one of them the test split) with :data:`TINY_TRAIN`."""

    run: Path
    store: Path
    sim: Any  # cryostream.simulate's result: .root, .micrographs, .truths
    result: Any  # the TrainResult


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    """One trained run for every test that needs a network: training it (and compiling the
    model) is the slowest part of the suite, so it happens once. Tests only read it."""
    import cryostream
    from cryostream import PrepareConfig
    from cryostream.prepare import prepare
    from cryostream.training import train

    root = tmp_path_factory.mktemp("tiny")
    sim = cryostream.simulate(root / "sim", 3, shape=(160, 128), seed=2)
    store = prepare(sim.micrographs, root / "data.h5",
                    PrepareConfig(patch_size=32, stride=32, test_fraction=0.34)).output
    result = train(store, root / "run", TINY_TRAIN, log=lambda *_: None)
    return TinyRun(run=root / "run", store=store, sim=sim, result=result)


@pytest.fixture
def notes():
    """The ``cryostream`` logger's messages (a list), whatever handlers the command line
    installed."""
    import logging

    said: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            said.append(record.getMessage())

    logger, handler = logging.getLogger("cryostream"), Keep(logging.INFO)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield said
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture(scope="module")
def benchmark_modules():
    """``benchmark_modules("fit_learned_weights", ...)``: those scripts of ``benchmarks/``
    imported as modules (the folder is on the path for the test module's life)."""
    import importlib
    import sys

    folder = str(Path(__file__).resolve().parent.parent / "benchmarks")
    sys.path.insert(0, folder)
    try:
        yield lambda *names: tuple(importlib.import_module(n) for n in names)
    finally:
        sys.path.remove(folder)

