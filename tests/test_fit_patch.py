"""``cryostream fit --patch N``: the store's patch chosen by the user (the stride in the recipe's
ratio to it), checked as ``prepare`` checks it before anything is written, kept by a fit that
continues, and named by the error of a GPU where not even one patch fits."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import cryostream
from cryostream.cli import main
from cryostream.config import PrepareConfig, TrainConfig, to_dict
from cryostream.denoise.memory import ENV
from cryostream.errors import ConfigError
from cryostream.fit import FIT_RECORD, RECIPE_TRAIN, recipe
from cryostream.store import store_facts

#: A time budget spent before training starts: the store is made, nothing trained.
SPENT = ["--budget", "0.000001m"]
#: unet-small from scratch: the cheapest fit on the CPU.
SMALL = ["--model", "unet-small"]


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _error(capsys) -> str:
    """The one line a refused command printed on stderr."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture(scope="module")
def mics(tmp_path_factory) -> list[str]:
    """Two simulated micrographs of 128 × 160 px (the recipe cuts them into 64 px patches)."""
    sim = cryostream.simulate(tmp_path_factory.mktemp("fitpatch") / "sim", 2, shape=(128, 160),
                              seed=3)
    return [str(p) for p in sim.micrographs]


def test_the_patch_is_the_stores_and_the_stride_keeps_the_recipes_ratio(mics, tmp_path, notes,
                                                                          capsys):
    assert recipe((128, 160)).patch_size == 64  # what fit picks without --patch
    assert recipe((128, 160), patch_size=32) == dataclasses.replace(recipe((128, 160)),
                                                                    patch_size=32, stride=16)
    run = tmp_path / "run"
    assert main(["fit", *mics, "-o", str(run), *SMALL, *SPENT, "--patch", "32"]) == 0
    assert json.loads((run / FIT_RECORD).read_text())["prepare"] == to_dict(
        recipe((128, 160), patch_size=32))
    prepared, _ = store_facts(run / "work" / "data.h5")
    assert (prepared.patch_size, prepared.stride, prepared.noise.model) == (32, 16, "matched")
    assert any(n.startswith("fit: 2 micrographs of 128 × 160 px, patches of 32 px (stride 16)")
               for n in notes)
    result = cryostream.fit(mics, tmp_path / "py", start="scratch", budget="0.000001m",
                            patch_size=32)  # the same from Python
    assert store_facts(result.store)[0] == prepared
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--patch N the side of the training patches in px (the stride half of it)" in shown
    assert "Smaller patches take less memory per training step" in shown


@pytest.mark.parametrize("given, said", [
    (["--patch", "48"], "--patch 48: the U-Net presets need patch sides that are multiples of 32; "
     "use --patch 32"),
    (["--patch", "256"], "--patch 256: larger than the micrographs (128 × 160); give at most 128 "
     "(--patch 128), or leave it out: fit picks 64 px for them"),
    (["--patch", "200"], "--patch 200: larger than the micrographs (128 × 160); give at most 128 "
     "(--patch 128), or leave it out: fit picks 64 px for them"),  # the fix: one the network takes
    (["--patch", "0"], "--patch 0: a patch side is a positive multiple of 32 px, at most 128 for "
     "these micrographs (e.g. --patch 64), or leave it out"),
    (["--patch", "-64"], "--patch -64: a patch side is a positive multiple of 32 px, at most 128 "
     "for these micrographs (e.g. --patch 64), or leave it out"),
    (["--patch", "0", "--model", "unet-deep"], "--patch 0: a patch side is a positive multiple of "
     "64 px, at most 128 for these micrographs (e.g. --patch 64), or leave it out"),
    (["--patch", "32", "--model", "unet-deep"], "--patch 32: unet-deep (--model) needs patch sides "
     "that are multiples of 64; use --patch 64"),  # the preset that needs 64 (the others: 32)
])
def test_a_patch_the_network_or_the_micrographs_cannot_take_is_refused_before_anything_is_written(
        mics, tmp_path, capsys, given, said):
    assert main(["fit", *mics, "-o", str(tmp_path / "run"), *SPENT, *given]) == 2
    assert _error(capsys) == f"cryostream fit: error: {said}"
    assert _tree(tmp_path) == []


def test_from_python_the_patch_is_patch_size_and_not_beside_a_store_config(mics, tmp_path):
    with pytest.raises(ConfigError, match=r"^patch_size=32 beside prepare=: the PrepareConfig "
                       r"holds the patch; give PrepareConfig\(patch_size=32, \.\.\.\) alone"):
        cryostream.fit(mics, tmp_path / "run", patch_size=32, prepare=PrepareConfig())
    with pytest.raises(ConfigError, match=r"^patch_size='64': must be an integer"):
        cryostream.fit(mics, tmp_path / "run", patch_size="64")
    with pytest.raises(ConfigError, match=r"^patch_size=0 \(--patch\): a patch side is a positive "
                       r"multiple of 32 px, at most 128 for these micrographs \(e\.g\. --patch 64; "
                       r"Python: patch_size=64\), or leave it out$"):
        cryostream.fit(mics, tmp_path / "run", start="scratch", patch_size=0)
    with pytest.raises(ConfigError, match=r"; give at most 128 \(--patch 128; Python: "
                       r"patch_size=128\), or leave it out"):
        cryostream.fit(mics, tmp_path / "run", start="scratch", patch_size=1024)
    assert _tree(tmp_path) == []


def test_a_fit_continued_keeps_its_patch_another_is_refused_and_overwrite_prepares_it_again(
        mics, tmp_path, capsys, notes):
    """A fit's checkpoints were trained on its store's patches. Continued without --patch, a fit
    keeps its own (as fit --help says), as a time budget keeps its steps: the recipe would pick
    another (64 here), a number the user never typed. Another --patch is refused naming the
    patch and how to go on, the run and its store untouched, as prepare refuses a store of other
    options; --overwrite prepares the store again and starts over; with --overwrite and no
    --patch, the recipe picks."""
    run = tmp_path / "run"
    fit = ["fit", *mics, "-o", str(run), *SMALL, *SPENT]
    assert main([*fit, "--patch", "32"]) == 0
    capsys.readouterr()
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    assert main([*fit, "--patch", "64"]) == 2
    assert _error(capsys) == (
        f"cryostream fit: error: {run}: holds a fit made with patches of 32 px (changed: --patch: "
        "32 → 64); to continue it, give --patch 32 or leave --patch out; to start again there "
        "with patches of 64, pass --overwrite (the run in it is replaced); or choose another "
        "folder (-o) for this one")
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before
    with pytest.raises(ConfigError, match=r"\(Python: patch_size=32 or None\); to start again "
                       r"there with patches of 64, pass overwrite=True \(--overwrite\)"):
        cryostream.fit(mics, run, train=dataclasses.replace(RECIPE_TRAIN, model="unet-small"),
                       budget="0.000001m", patch_size=64)  # (--model unet-small, from Python)
    for again in ([*fit, "--patch", "32"], fit):  # the same command; without --patch: its own
        notes.clear()
        assert main(again) == 0
        assert any("is complete and its micrographs unchanged: kept" in n for n in notes)
        assert any("patches of 32 px (stride 16)" in n for n in notes)
    assert json.loads((run / FIT_RECORD).read_text())["prepare"]["patch_size"] == 32
    notes.clear()
    assert main([*fit, "--patch", "64", "--overwrite"]) == 0
    assert any("differs from this fit's (options differ: patch_size 32 in the store, 64 now; "
               "stride 16 in the store, 32 now): preparing it again" in n for n in notes)
    assert store_facts(run / "work" / "data.h5")[0].patch_size == 64
    assert json.loads((run / FIT_RECORD).read_text())["prepare"]["patch_size"] == 64
    assert main([*fit, "--patch", "32", "--overwrite"]) == 0
    notes.clear()
    assert main([*fit, "--overwrite"]) == 0  # no --patch with --overwrite: the recipe's 64
    assert json.loads((run / FIT_RECORD).read_text())["prepare"]["patch_size"] == 64
    assert any("patches of 64 px (stride 32)" in n for n in notes)


#: One step of one patch: a training whose one-patch step is the step itself (one compile a side).
ONE = TrainConfig(model="unet-small", precision="fp32", steps=1, batch_size=1, eval_batches=1,
                  warmup_steps=1, threads=1)


def _one_patch_plans(store, config: TrainConfig, sides) -> dict[int, int]:
    """XLA's plan of ``config``'s training step on one patch of the store, cut to each side,
    built as train builds it."""
    from cryostream.loader import PatchLoader
    from cryostream.step_memory import step_bytes
    from cryostream.training import create_model, create_train_state, make_optimizer, make_train_step

    loader = PatchLoader(store, batch_size=1, threads=1)
    batch = next(loader.device_batches())
    loader.close()
    tx = make_optimizer(config)
    graphdef, state = create_train_state(create_model(config.model_config()), tx)
    step = make_train_step(graphdef, tx, loss=config.loss, noise=loader.noise, seed=config.seed,
                           noise_table=loader.noise_table)
    return {s: step_bytes(step, state, {k: v[:, :s, :s] if v.ndim == 3 else v
                                        for k, v in batch.items()}) for s in sides}


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_where_one_patch_does_not_fit_the_error_names_the_largest_patch_that_does(
        mics, tmp_path, monkeypatch):
    """The one-patch error had named half the patch, whatever it took: a ladder of retries
    (each preparing the store again) down to a patch that could not fit either. It measures
    XLA's plan of the one-patch step on smaller patches now, and names the largest that fits,
    as --patch N --overwrite (the changed patch needs it); following it trains. Where none
    fits, it says so, with the figure at the smallest patch, and names no --patch."""
    from cryostream.cli.common import for_the_command_line
    from cryostream.denoise.memory import memory_size

    run = tmp_path / "run"
    monkeypatch.setenv(ENV, "0.00001")  # 10 kB: no patch fits
    with pytest.raises(ConfigError) as raised:
        cryostream.fit(mics, run, train=ONE, patch_size=64)
    said = str(raised.value)
    plans = _one_patch_plans(run / "work" / "data.h5", ONE, (32, 64))
    assert said.startswith(f"one training step on a single patch of 64² takes {memory_size(plans[64])}"
                           f", and 10 kB is there for the network ({ENV}=0.00001); no patch fits "
                           f"the unet-small in 10 kB ({memory_size(plans[32])} even at 32²): if "
                           "this machine (or its GPU) has more free memory, set the environment "
                           f"variable {ENV} higher")
    assert "--patch" not in said and "--model" not in said  # the smallest network is the one trained

    assert plans[32] < plans[64]
    monkeypatch.setenv(ENV, f"{(plans[32] + plans[64]) / 2e9:.6f}")  # 32² fits, 64² not
    with pytest.raises(ConfigError) as raised:
        cryostream.fit(mics, run, train=ONE, patch_size=64)  # the same command: the error again
    said = str(raised.value)
    fix = (f"train on patches of 32² (a step on one takes {memory_size(plans[32])}; train: "
           "cryostream prepare --patch 32, then train again; fit: the same command with --patch 32 "
           "--overwrite, which prepares its store again")
    assert f"{fix}; Python: fit(..., patch_size=32, overwrite=True)); or, if this machine" in said
    assert f"{fix}); or, if this machine" in for_the_command_line(said)
    assert "--model unet-small" not in said and "no patch fits" not in said
    assert not list(run.glob("checkpoints/*"))
    result = cryostream.fit(mics, run, train=ONE, patch_size=32, overwrite=True)  # as advised
    assert result.steps == 1 and list(run.glob("checkpoints/*"))


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_where_no_patch_fits_the_unet_the_error_names_a_smaller_network_and_overwrite(
        mics, tmp_path, monkeypatch, capsys):
    """Where not even the smallest patch fits (most of the unet's step is its parameters and
    their optimizer state, whatever the patch), the error says so and names unet-small, with a
    smaller patch if need be (another network, not measured), and --overwrite for fit: a
    failed fit leaves its run record, and the advised command without it is refused."""
    run = tmp_path / "run"
    monkeypatch.setenv(ENV, "0.00001")
    with pytest.raises(ConfigError) as raised:
        cryostream.fit(mics, run, train=dataclasses.replace(ONE, model="unet"), patch_size=64)
    said = str(raised.value)
    assert "; no patch fits the unet in 10 kB (" in said and " even at 32²): train a smaller " \
        "network, with smaller patches if need be (from scratch, at some cost in quality; train: " \
        "--model unet-small, on a store of smaller patches if need be (cryostream prepare --patch " \
        "N); fit: the same command with --model unet-small --overwrite, which replaces this fit's " \
        "run, and --patch N if need be); or, if this machine" in said
    fit = ["fit", *mics, "-o", str(run), "--patch", "64", *SMALL, *SPENT]
    capsys.readouterr()
    assert main(fit) == 2  # without --overwrite: the failed fit's record is another fit's
    assert f"{run}: holds a fit of other inputs or options" in _error(capsys)
    assert main([*fit, "--overwrite"]) == 0
