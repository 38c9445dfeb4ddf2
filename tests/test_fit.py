"""``cryostream fit``: the recipe on the user's micrographs in one call, resumable, a warm start
from the shipped general model or another run, and every refusal before anything is written."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import mrcfile
import numpy as np
import pytest

import cryostream
from cryostream.cli import main
from cryostream.config import NoiseConfig, PrepareConfig, TrainConfig, to_dict
from cryostream.errors import ConfigError, InvalidMicrographError, StoreError
from cryostream.fit import FINETUNE_TRAIN, FIT_RECORD, RECIPE_TRAIN, Budget, given_inputs, recipe
from tests.conftest import TINY_TRAIN

#: unet-small on the CPU: 4 steps of 4 patches, checkpoints at 2 and 4.
SMALL = TrainConfig(model="unet-small", precision="fp32", steps=4, batch_size=4, eval_every=2,
                    eval_batches=1, checkpoint_every=2, warmup_steps=1, threads=1)
#: A time budget spent before training starts (preparing the store takes longer).
SPENT = Budget(minutes=1e-6)
GENERAL = Path(cryostream.__file__).parent / "data" / "general_model.npz"


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def mics(tmp_path_factory) -> list[Path]:
    """Two simulated micrographs of 128 × 160 px."""
    sim = cryostream.simulate(tmp_path_factory.mktemp("fitsim") / "sim", 2, shape=(128, 160),
                              seed=3)
    return list(sim.micrographs)


# --- the budget and the recipe ------------------------------------------------------------------

@pytest.mark.parametrize("text, budget", [
    ("30m", Budget(minutes=30.0)), ("45 min", Budget(minutes=45.0)), ("1.5h", Budget(minutes=90.0)),
    ("2000steps", Budget(steps=2000)), ("7 steps", Budget(steps=7)), ("1step", Budget(steps=1)),
])
def test_a_budget_is_minutes_or_steps(text, budget):
    assert Budget.parse(text) == budget


@pytest.mark.parametrize("text, message", [
    ("soon", "budget='soon' (--budget): give minutes ('30m', '1.5h') or steps ('2000steps')"),
    ("30", "budget='30' (--budget): give minutes ('30m', '1.5h') or steps ('2000steps')"),
    ("-5m", "budget (--budget): -5.0 minutes; give a time > 0, e.g. '30m'"),
    ("-100steps", "budget (--budget): -100 steps; give a whole number ≥ 1, e.g. '2000steps'"),
    ("0m", "budget (--budget): 0.0 minutes; give a time > 0, e.g. '30m'"),
    ("0steps", "budget (--budget): 0 steps; give a whole number ≥ 1, e.g. '2000steps'"),
    ("999999999999999steps", "budget (--budget): 999999999999999 steps is more than 10,000,000 "
     "(weeks of training on any GPU); give fewer, e.g. '2000steps', or a time, e.g. '2h'"),
    ("2.5steps", "budget='2.5steps' (--budget): steps are whole, e.g. '2steps'"),
    ("-1.5steps", "budget='-1.5steps' (--budget): steps are whole, e.g. '2steps'"),
    ("0.5steps", "budget='0.5steps' (--budget): steps are whole, e.g. '2steps'"),
])
def test_budget_nonsense_is_refused_by_name(text, message):
    with pytest.raises(ConfigError) as info:
        Budget.parse(text)
    assert str(info.value) == message


@pytest.mark.parametrize("shape, patch, stride", [
    ((7676, 7420), 1024, 512), ((2048, 2048), 1024, 512), ((1024, 1500), 512, 256),
    ((128, 160), 64, 32), ((40, 40), 32, 16),
])
def test_the_recipe_cuts_patches_to_suit_the_micrographs(shape, patch, stride):
    config = recipe(shape)
    assert (config.patch_size, config.stride) == (patch, stride)
    assert (config.noise.model, config.noise.alpha, config.noise.mode) == ("matched", 1.0,
                                                                            "on-device")
    assert (config.percentile, config.test_fraction) == (95.0, 0.1)  # PrepareConfig's defaults


def test_the_recipe_trains_the_residual_unet_with_the_defaults():
    assert RECIPE_TRAIN == TrainConfig(model="unet", residual=True)
    with pytest.raises(ConfigError, match="too small to train on"):
        recipe((20, 300))


def _requested_training(run: Path) -> dict:
    return json.loads((run / FIT_RECORD).read_text())["train"]


def test_by_default_a_fit_fine_tunes_the_general_model_gently(mics, tmp_path, notes):
    """No start and no training given: the general model, recorrupted targets (its output still
    estimates the clean micrograph), a tenth of the recipe's learning rate, 600 steps."""
    assert FINETUNE_TRAIN == dataclasses.replace(RECIPE_TRAIN, recorrupt=True,
                                                 learning_rate=1e-4, steps=600, init="general")
    result = cryostream.fit(mics, tmp_path / "run", budget=SPENT)
    assert (result.start, result.target_steps, result.recorrupt) == ("general", 600, True)
    assert _requested_training(tmp_path / "run") == to_dict(
        dataclasses.replace(FINETUNE_TRAIN, init="general"))
    assert any(n.endswith("from the general model, fine-tuned gently (recorrupted targets, "
                          "learning rate 0.0001; its learned weights kept where it has them)")
               for n in notes)
    scratch = cryostream.fit(mics, tmp_path / "scratch", start="scratch", budget=SPENT)
    assert (scratch.start, scratch.target_steps, scratch.recorrupt) == (None, 1000, False)
    assert _requested_training(tmp_path / "scratch") == to_dict(RECIPE_TRAIN)


def _as_an_earlier_version_wrote_it(run: Path) -> None:
    """``run``'s fit.json without the start, as versions before the fine-tuning default wrote."""
    request = json.loads((run / FIT_RECORD).read_text())
    del request["start"]
    (run / FIT_RECORD).write_text(json.dumps(request))


def test_a_fit_an_earlier_version_made_continues_as_it_was_made(mics, tmp_path, notes):
    """The same command on a run folder that an earlier version fitted with the recipe it then
    used (Noisier2Noise: from scratch with no --from, or from the general model with
    --from general) continues it, and says so; --overwrite fits anew. A fit made from scratch
    now (its start recorded) is not continued by a command without --from scratch: refused,
    naming the start."""
    run = tmp_path / "run"
    cryostream.fit(mics, run, start="scratch", budget=SPENT)
    before = _requested_training(run)
    assert json.loads((run / FIT_RECORD).read_text())["start"] == "scratch"
    with pytest.raises(ConfigError, match=r"changed: --from: scratch → general; recorrupt: False "
                       r"→ True; learning_rate: 0.001 → 0.0001\)"):
        cryostream.fit(mics, run, budget=SPENT)
    _as_an_earlier_version_wrote_it(run)
    notes.clear()
    again = cryostream.fit(mics, run, budget=SPENT)
    assert again.start is None and _requested_training(run) == before
    assert any(n == f"{run} holds a fit that an earlier version made from scratch, its default "
               "then: continued as it was made (--overwrite fits it anew from the general model, "
               "fine-tuned gently (recorrupted targets, learning rate 0.0001; its learned weights "
               "kept where it has them))" for n in notes)
    cryostream.fit(mics, run, budget=SPENT, overwrite=True)
    assert _requested_training(run)["init"] == "general"

    earlier_general = tmp_path / "general"  # the quick start's `fit ... --from general` before
    cryostream.fit(mics, earlier_general, start="general", budget=SPENT,
                   train=dataclasses.replace(RECIPE_TRAIN, init="general"))
    _as_an_earlier_version_wrote_it(earlier_general)
    kept = cryostream.fit(mics, earlier_general, start="general", budget=SPENT)
    assert (kept.start, kept.recorrupt) == ("general", False)
    assert _requested_training(earlier_general) == to_dict(
        dataclasses.replace(RECIPE_TRAIN, init="general"))


def test_the_training_follows_what_the_starts_output_estimates(mics, tmp_path, notes):
    """Without ``train``: from a model whose output estimates the clean micrograph (the general
    model), the gentle fine-tuning; from one trained for Noisier2Noise, or an export without a
    record (said in a note), the recipe from scratch's training. A record starting from an
    export without a record inherits no table."""
    from cryostream.denoise.network import load_model_file
    from cryostream.fit import training_for
    from cryostream.models.export import export_params
    from cryostream.warm_start import inherited_weights

    model, record = load_model_file(str(GENERAL))
    n2n = export_params(model, dataclasses.replace(record, prepare=dataclasses.replace(
        record.prepare, noise=NoiseConfig(model="matched", alpha=1.0, mode="on-device"))),
        tmp_path / "n2n.npz")
    bare = export_params(model, None, tmp_path / "bare.npz")
    run = tmp_path / "run"
    assert training_for("general", run) == FINETUNE_TRAIN
    assert training_for(n2n, run) == dataclasses.replace(RECIPE_TRAIN, init=str(n2n))
    assert training_for(bare, run) == dataclasses.replace(RECIPE_TRAIN, init=str(bare))
    assert any(n.startswith(f"{bare} has no run record to say what its output estimates")
               for n in notes)
    assert training_for("scratch", run) == RECIPE_TRAIN
    cryostream.fit(mics, run, start=n2n, budget=SPENT)
    assert _requested_training(run) == to_dict(dataclasses.replace(RECIPE_TRAIN, init=str(n2n)))
    def starting(init):
        return dataclasses.replace(record, train=dataclasses.replace(record.train, init=init,
                                                                     recorrupt=True))

    assert inherited_weights(starting("general")) == record.learned_weights is not None
    assert inherited_weights(starting(str(bare))) is None


def test_the_cli_fits_the_general_model_by_default_and_other_presets_from_scratch(mics, tmp_path):
    budget = ["--budget", "0.000001m"]
    assert main(["fit", *map(str, mics), "-o", str(tmp_path / "a"), *budget]) == 0
    assert _requested_training(tmp_path / "a") == to_dict(FINETUNE_TRAIN)
    assert main(["fit", *map(str, mics), "-o", str(tmp_path / "b"), "--model", "unet", *budget,
                 "--from", "scratch"]) == 0
    assert _requested_training(tmp_path / "b") == to_dict(RECIPE_TRAIN)
    assert main(["fit", *map(str, mics), "-o", str(tmp_path / "c"), "--model", "unet-small",
                 *budget]) == 0
    assert _requested_training(tmp_path / "c") == to_dict(dataclasses.replace(
        RECIPE_TRAIN, model="unet-small"))


def test_recorrupted_targets_without_matched_noise_are_refused_before_anything_is_written(
        mics, tmp_path):
    prepare = dataclasses.replace(recipe((128, 160)), noise=NoiseConfig(model="gaussian"))
    with pytest.raises(ConfigError, match=r"prepare.noise='gaussian': the training on recorrupted "
                       r"targets needs the micrographs' own \(matched\) noise; .* or pass "
                       r"start='scratch'"):
        cryostream.fit(mics, tmp_path / "run", prepare=prepare)
    assert _tree(tmp_path) == []


# --- the suggested denoise command ---------------------------------------------------------------

def test_the_next_command_shows_the_inputs_as_given(tmp_path, monkeypatch):
    """Files a shell expanded from a glob come back as one glob, not a thousand names: the
    folder's ``*.mrc`` when they are all of them, else the start their names share, only
    when the glob matches exactly them; a few files, folders, globs and STAR files stay as
    they were typed."""
    monkeypatch.chdir(tmp_path)
    mics = Path("mics")
    mics.mkdir()
    for i in range(12):
        (mics / f"sim_{i:04d}.mrc").write_bytes(b"")
    (mics / "list.star").write_text("")
    every = sorted(str(p) for p in mics.glob("*.mrc"))
    assert given_inputs(every) == ["mics/*.mrc"]
    assert given_inputs(every[:10]) == ["mics/sim_000*.mrc"]  # sim_0010, sim_0011 not given
    assert given_inputs(every[:3]) == every[:3]
    assert given_inputs(["mics", "mics/sim_*.mrc", "mics/list.star"]) == [
        "mics", "mics/sim_*.mrc", "mics/list.star"]
    monkeypatch.chdir(mics)
    here = sorted(p.name for p in Path().glob("*.mrc"))
    assert given_inputs([*here, "../mics"]) == ["*.mrc", "../mics"]
    # two files of one folder stay; ten of another share "sim_00" with the two not given, so
    # no glob would be exactly them: they are listed, never a glob that adds files
    assert given_inputs([f"../mics/{n}" for n in here[:2]] + here[2:]) == [
        "../mics/sim_0000.mrc", "../mics/sim_0001.mrc", *here[2:]]


# --- the shipped general model as a start -------------------------------------------------------

def _by_name(params) -> dict[str, np.ndarray]:
    """Each parameter by its path, ``/``-joined as the export names them."""
    import jax

    return {"/".join(str(getattr(k, "key", getattr(k, "idx", ""))) for k in path
                     if hasattr(k, "key") or hasattr(k, "idx")): leaf
            for path, leaf in jax.tree_util.tree_leaves_with_path(params)}


def test_start_params_are_the_shipped_arrays():
    from cryostream.warm_start import start_params

    params = _by_name(start_params("general", RECIPE_TRAIN.model_config()))
    with np.load(GENERAL) as npz:
        stored = {k: npz[k] for k in npz.files if k != "__meta__"}
    assert set(params) == set(stored) and len(stored) > 20
    for name, array in stored.items():
        np.testing.assert_array_equal(params[name], array, err_msg=name)


def test_a_start_of_another_shape_is_refused_before_anything_is_written(mics, tmp_path):
    with pytest.raises(ConfigError) as info:
        cryostream.fit(mics, tmp_path / "run", start="general", train=SMALL)
    assert str(info.value) == (
        "init='general' (--from): its network is unet, residual, this run's is unet-small, not "
        "residual; give this run its network (--model unet; Python: TrainConfig(model='unet', "
        "residual=True)), start from a run of fit with this network, or from scratch (--from "
        "scratch)")  # fit's command line has no --residual: its networks are residual
    assert _tree(tmp_path) == []
    with pytest.raises(ConfigError, match=r"init='.*nowhere' \(--from\): no such run folder"):
        cryostream.fit(mics, tmp_path / "run", start=tmp_path / "nowhere", train=SMALL)
    assert _tree(tmp_path) == []


def test_unet_deep_gets_patches_it_can_take_or_is_refused_before_anything_is_written(mics,
                                                                                      tmp_path):
    """unet-deep pools six times: the recipe never cuts patches under 64 px for it, and a
    given store config it cannot take is refused before the store is made (it failed in
    train, after the store and the fit's record were written, and blocked the retry)."""
    assert recipe((128, 160), 64).patch_size == 64 and recipe((128, 160)).patch_size == 64
    assert recipe((100, 100), 64).patch_size == 64 and recipe((100, 100)).patch_size == 32
    with pytest.raises(ConfigError, match="at least 64 px"):
        recipe((50, 300), 64)
    deep = TrainConfig(model="unet-deep", residual=True)
    with pytest.raises(ConfigError, match="multiples of 64"):
        cryostream.fit(mics, tmp_path / "run", train=deep,
                       prepare=PrepareConfig(patch_size=96, stride=48))
    assert _tree(tmp_path) == []


def test_parameters_of_another_network_are_named():
    """Checked by name and shape against the network's own (abstract here: no compiling)."""
    from flax import nnx

    from cryostream.models import UNet
    from cryostream.warm_start import matching_params

    def abstract(config):
        return nnx.split(nnx.eval_shape(lambda: UNet(config, rngs=nnx.Rngs(0))), nnx.Param)[1]

    own = abstract(SMALL.model_config())
    narrow = {k: np.zeros(v.shape, np.float32)
              for k, v in _by_name(abstract(dataclasses.replace(SMALL.model_config(),
                                                                width=8))).items()}
    with pytest.raises(ConfigError, match=r"^theirs: parameter decoder/0/0/bias has shape \(16,\), "
                       r"this network's \(32,\); start from parameters of the same model$"):
        matching_params(own, _nested(narrow), where="theirs")
    with pytest.raises(ConfigError, match=r"^the given parameters: parameters head/9/kernel are "
                       r"not this network's"):
        matching_params(own, _nested({**_by_name(own), "head/9/kernel": np.zeros(1)}))
    rng = np.random.default_rng(0)
    given = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in _by_name(own).items()}
    placed = _by_name(matching_params(own, _nested(given)))
    assert placed.keys() == given.keys()
    for name, array in given.items():
        np.testing.assert_array_equal(placed[name], array)


def _nested(flat: dict[str, np.ndarray]) -> dict:
    """``{"a/0/b": x}`` as ``{"a": {0: {"b": x}}}`` (the layout of ``nnx.to_pure_dict``)."""
    tree: dict = {}
    for name, value in flat.items():
        *parents, last = [int(p) if p.isdigit() else p for p in name.split("/")]
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return tree


# --- refusals: one line naming the thing and the fix, nothing written ----------------------------

def test_no_micrographs_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidMicrographError) as info:
        cryostream.fit(tmp_path / "empty", tmp_path / "run")
    assert str(info.value) == f"{tmp_path / 'empty'}: folder holds no .mrc files; check the folder"
    assert _tree(tmp_path) == ["empty"]


def test_an_unreadable_micrograph_is_refused(mics, tmp_path):
    bad = tmp_path / "bad.mrc"
    bad.write_bytes(b"not an MRC file")
    with pytest.raises(InvalidMicrographError) as info:
        cryostream.fit([*mics, bad], tmp_path / "run")
    assert str(info.value).startswith(f"{bad}: not a readable MRC file")
    assert _tree(tmp_path) == ["bad.mrc"]


def test_a_blank_micrograph_leaves_nothing(mics, tmp_path):
    """Found only when its pixels are read (the store's first pass): what was made is removed."""
    import mrcfile

    blank = tmp_path / "mics" / "blank.mrc"
    blank.parent.mkdir()
    with mrcfile.new(blank) as mrc:
        mrc.set_data(np.zeros((128, 160), np.float32))
    with pytest.raises(InvalidMicrographError) as info:
        cryostream.fit([*mics, blank], tmp_path / "run", train=SMALL, budget=SPENT)
    assert str(info.value).startswith(str(blank))
    assert _tree(tmp_path) == ["mics", "mics/blank.mrc"]



def test_an_inverted_micrograph_is_not_sent_to_a_percentile_fit_does_not_take(mics, tmp_path,
                                                                             capsys):
    """A micrograph whose 95th percentile is negative (inverted): fit had advised 'choose
    another --percentile', an option fit does not take; it advises what fit can do."""
    from tests.conftest import write_mrc

    (tmp_path / "mics").mkdir()
    inverted = write_mrc(tmp_path / "mics" / "inverted.mrc", -mrcfile.read(mics[0]))
    assert main(["fit", *map(str, mics), str(inverted), "-o", str(tmp_path / "run"),
                 "--model", "unet-small", "--budget", "1steps", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "inverted.mrc" in err[0] and "cannot be normalised" in err[0], err
    assert "--percentile" not in err[0] and "--permissive skips it" in err[0], err
    assert _tree(tmp_path) == ["mics", "mics/inverted.mrc"]

def test_overwrite_keeps_the_earlier_run_when_the_new_micrographs_are_bad(mics, tmp_path):
    """``overwrite`` replaces an earlier fit only once the new store is made: a micrograph bad
    in its pixels leaves the earlier run's files as they were."""
    import mrcfile

    run = tmp_path / "run"
    cryostream.fit(mics, run, train=SMALL, budget=SPENT)
    before = {p: p.read_bytes() for p in run.iterdir() if p.is_file()}
    blank = tmp_path / "blank.mrc"
    with mrcfile.new(blank) as mrc:
        mrc.set_data(np.zeros((128, 160), np.float32))
    with pytest.raises(InvalidMicrographError):
        cryostream.fit([*mics, blank], run, train=SMALL, budget=SPENT, overwrite=True)
    assert before and {p: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_the_cli_says_one_line(mics, tmp_path, capsys):
    assert main(["fit", *map(str, mics), "-o", str(tmp_path / "run"), "--budget", "soon"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "cryostream fit: error: --budget 'soon': give minutes ('30m', '1.5h') or steps "
        "('2000steps')"]
    assert _tree(tmp_path) == []


def test_a_folder_of_other_files_is_refused(mics, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="holds files but no fit.json"):
        cryostream.fit(mics, tmp_path / "run", train=SMALL, budget=SPENT)
    assert _tree(tmp_path) == ["run", "run/notes.txt"]


def test_a_first_fit_stopped_while_making_its_store_starts_again(mics, tmp_path):
    """Ctrl-C while the first fit makes its store leaves RUN/work and no fit.json: the same
    command again starts the fit, it is not refused as another folder."""
    (tmp_path / "run" / "work").mkdir(parents=True)
    (tmp_path / "run" / "work" / ".data.h5.partial").write_bytes(b"half")
    result = cryostream.fit(mics, tmp_path / "run", train=SMALL, budget=SPENT)
    assert (tmp_path / "run" / "fit.json").is_file() and result.store.is_file()


def test_the_summary_flags_a_network_still_under_the_noisy_input(tmp_path):
    """Against the noisy target of self-supervision the test PSNR starts under the input's;
    only a network that ends there gets a line (with the numbers and what to do)."""
    from cryostream.fit import FitResult

    def summary(psnr):
        return FitResult(run=tmp_path / "run", store=tmp_path / "run/work/data.h5", start=None,
                         steps=20, target_steps=20, final_loss=0.1,
                         eval={"psnr": psnr, "noisy_psnr": 16.17} if psnr else {}, seconds=9.0,
                         store_bytes=10**7, next_command="cryostream denoise x -o y").summary()

    assert ("the network still scores under the noisy input on held-out patches (test PSNR "
            "15.47 against 16.17 dB): train it further (a larger --budget), or fit the general "
            "model instead (no --from scratch or --model; --overwrite or another -o)"
            in summary(15.47))
    assert "PSNR" not in summary(17.0) and "PSNR" not in summary(None)
    recorrupted = FitResult(run=tmp_path / "run", store=tmp_path / "run/work/data.h5",
                            start="general", steps=20, target_steps=20, final_loss=0.1,
                            eval={"psnr": 15.47, "noisy_psnr": 16.17}, seconds=9.0,
                            store_bytes=10**7, next_command="x", recorrupt=True)
    assert not recorrupted.under_input and "PSNR" not in recorrupted.summary()  # by design


def test_the_summary_says_a_run_continued_and_sizes_a_small_store_in_mb(tmp_path):
    """A call that resumed says from which step (not "from scratch"); a store of a few MB is
    not "0.01 GB"."""
    from cryostream.fit import FitResult

    text = FitResult(run=tmp_path / "run", store=tmp_path / "run/work/data.h5", start="general",
                     steps=8, target_steps=8, final_loss=0.1, eval={}, seconds=9.0,
                     store_bytes=8_012_345, next_command="cryostream denoise x -o y",
                     resumed_at=6).summary()
    assert text.splitlines()[:2] == [
        f"continued {tmp_path / 'run'} from step 6: step 8 of 8, loss 0.1, 9 s",
        f"the store in {tmp_path / 'run/work'} (8.0 MB) is kept for resuming; remove it when done"]


def test_a_fit_run_again_says_what_it_does_with_the_steps_it_has(tiny_run, tmp_path, notes):
    """A fit whose run holds 8 trained steps (the shared run's checkpoints, copied in) notes
    that it resumes at step 8 of 12; with a budget of 8 steps that there is nothing to train;
    with a budget of 4 that the run already has 8, more than the budget, what is done (nothing)
    and how to start afresh: in the notes and in the summary the command prints (the only
    words left with --quiet). Nothing is trained here."""
    import shutil

    from tests.conftest import TINY_TRAIN

    run = tmp_path / "run"
    longer = dataclasses.replace(TINY_TRAIN, steps=12)

    def fitted(budget, train=TINY_TRAIN) -> tuple[str, str]:
        notes.clear()
        result = cryostream.fit(tiny_run.sim.micrographs, run, train=train, budget=budget,
                                prepare=PrepareConfig(patch_size=32, stride=32,
                                                      test_fraction=0.34))
        (said,) = [n for n in notes if n.startswith("fit: ")]
        return said.split(f"{TINY_TRAIN.model}, ", 1)[1], result.summary().splitlines()[0]

    assert fitted(SPENT, longer) == ("from scratch", f"nothing trained: {run} is at step 0 of 12; "
                                     "the budget ran out: run the same command again to continue")
    for name in ("config.json", "checkpoints"):
        (shutil.copytree if name == "checkpoints" else shutil.copy)(tiny_run.run / name, run / name)
    assert fitted(SPENT, longer) == ("resuming at step 8 of 12", f"nothing trained: {run} is at "
                                     "step 8 of 12; the budget ran out: run the same command "
                                     "again to continue")
    assert fitted("8steps") == ("nothing to train: already at step 8 of 8", f"nothing trained: "
                                f"{run} is at step 8 of 8 (already trained; a --budget of more "
                                "than 8 steps trains it further: a time budget keeps the run's "
                                "steps)")
    assert fitted("4steps") == (
        "nothing to train: the run already has 8 steps, more than the budget's 4",
        f"nothing trained: {run} already has 8 steps, more than the budget's 4: it is kept as it "
        "is (to train 4 steps from the start instead: --overwrite, or another folder with -o; to "
        "train it further: a --budget of more than 8 steps)")


def test_permissive_notes_count_the_micrographs_the_store_holds(mics, tmp_path, notes):
    """A micrograph skipped under ``permissive`` (NaN pixels) is measured with the others but
    not counted among those the store is prepared from, and is named as left out."""
    from cryostream.io.stack import MicrographSkippedWarning

    bad = tmp_path / "nan.mrc"
    data = mrcfile.read(mics[0]).copy()
    data[5, 5] = np.nan
    with mrcfile.new(bad) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 0.6575
    with pytest.warns(MicrographSkippedWarning, match="nan.mrc"):
        result = cryostream.fit([*mics, bad], tmp_path / "run", train=SMALL, budget=SPENT,
                                permissive=True)
    said = list(notes)
    assert "measuring the noise: 3/3 micrographs" in said
    assert "preparing the store: 2/2 micrographs" in said
    # named as a file left unread is: in the result, its summary and fit.json, with why
    assert result.skipped == (str(bad),) and "1 micrograph left out" in result.summary()
    (left,) = json.loads((tmp_path / "run" / FIT_RECORD).read_text())["skipped"]
    assert left["path"] == str(bad) and "NaN" in left["reason"]
    again = cryostream.fit([*mics, bad], tmp_path / "run", train=SMALL, budget=SPENT,
                           permissive=True)  # the store kept, not measured again: still named
    assert again.skipped == (str(bad),) and "1 micrograph left out" in again.summary()


def test_a_micrograph_left_out_is_named_and_the_next_command_leaves_it_out_too(mics, tmp_path,
                                                                               tiny_run):
    """A truncated micrograph under ``permissive``: the summary names it, ``fit.json`` says
    why, and the printed denoise command is permissive as well (else it stops on that file)."""
    from cryostream.io.stack import MicrographSkippedWarning

    folder = tmp_path / "mics"
    folder.mkdir()
    for m in mics:
        (folder / m.name).write_bytes(m.read_bytes())
    (folder / "cut.mrc").write_bytes(mics[0].read_bytes()[:3000])
    with pytest.warns(MicrographSkippedWarning, match="cut.mrc"):
        result = cryostream.fit(folder, tmp_path / "run", train=SMALL, budget=SPENT,
                                permissive=True)
    assert result.skipped == (str(folder / "cut.mrc"),)
    assert f"1 micrograph left out (named with why in {tmp_path / 'run' / FIT_RECORD}): cut.mrc" \
        in result.summary()
    (left,) = json.loads((tmp_path / "run" / FIT_RECORD).read_text())["skipped"]
    assert left["path"] == str(folder / "cut.mrc") and "truncated" in left["reason"]
    args = result.next_command.split()[1:]
    assert args[-1] == "--permissive"  # the run (untrained here) swapped for a trained one
    args[args.index("--model") + 1] = str(tiny_run.run)
    args[args.index("-o") + 1] = str(tmp_path / "d")
    with pytest.warns(MicrographSkippedWarning, match="cut.mrc"):
        assert main([*args, "--raw", "--tile", "64"]) == 0
    assert sorted(p.name for p in (tmp_path / "d").glob("*.mrc")) == sorted(m.name for m in mics)


def test_a_spent_budget_prepares_and_another_fit_is_refused(mics, tmp_path, notes):
    """The store is made (and said where), no step trained; a different request into the same
    run folder is refused, naming what changed, unless ``overwrite``."""
    run = tmp_path / "run"
    result = cryostream.fit(mics, run, train=SMALL, budget=SPENT)
    assert (result.steps, result.target_steps, result.finished) == (0, 4, False)
    assert result.store == run / "work" / "data.h5" and result.store.is_file()
    said = list(notes)
    assert f"work folder: {run / 'work'} (the store, kept for resuming)" in said
    assert "measuring the noise: 2/2 micrographs" in said
    assert "preparing the store: 2/2 micrographs" in said
    assert any("time budget ran out before training began" in n for n in said)
    assert said[-1].endswith(f"denoise with: cryostream denoise {mics[0]} {mics[1]} -o "
                              f"denoised_run --model {run}")  # a folder of its own
    # its files untouched (the folders' times move with the lock the refused fit took and let go)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError) as info:
        cryostream.fit(mics[:1], run, train=dataclasses.replace(SMALL, seed=1), budget=SPENT)
    assert str(info.value) == (
        f"{run}: holds a fit of other inputs or options (changed: inputs: 1 left out "
        f"({mics[1].name}); seed: 0 → 1); to continue that fit give it the inputs and options "
        "it was made with, choose another folder (-o) for this one, or pass overwrite=True "
        "(--overwrite) to train this one there from the start (the run in it is replaced)")
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before
    notes.clear()
    # the same request, the run folder reached by another path: the store kept
    cryostream.fit(mics, run.parent / ".." / run.parent.name / run.name, train=SMALL,
                   budget=SPENT)
    assert any("is complete and its micrographs unchanged: kept" in n for n in notes)
    assert not any("measuring the noise" in n for n in notes)
    cryostream.fit(mics[:1], run, train=SMALL, budget=SPENT, overwrite=True)
    assert json.loads((run / FIT_RECORD).read_text())["inputs"] == [str(mics[0])]


def test_micrographs_of_several_pixel_sizes_are_fitted_with_a_warning(mics, tmp_path):
    import shutil

    other = tmp_path / "other.mrc"
    shutil.copy(mics[1], other)
    with mrcfile.open(other, mode="r+") as mrc:
        mrc.voxel_size = 1.0
    with pytest.warns(UserWarning, match=r"2 pixel sizes \(0.6575 Å \(.*\), 1 Å \(other.mrc\)\)") as caught:
        cryostream.fit([mics[0], other], tmp_path / "run", train=SMALL, budget=SPENT)
    said = [str(w.message) for w in caught if "pixel sizes" in str(w.message)]
    assert len(said) == 1 and said[0].endswith(  # not prepare's too; 1 Å: a placeholder
        "other.mrc gives 1 Å, the other micrograph 0.6575 Å; exactly 1 Å is most likely a "
        "placeholder (a header whose pixel size was never set), not a measured size. Correct "
        "other.mrc's header (e.g. IMOD's alterheader); if 1 Å is its true size, fit each "
        "magnification on its own"), said


# --- real training ---------------------------------------------------------------------------------

@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_a_fit_that_still_estimates_the_clean_micrograph_keeps_its_starts_table(mics, tmp_path,
                                                                                 tiny_run):
    """From a run whose record holds a table of learned weights (the shared run, copied, with
    the general model's table): recorrupted training keeps the table (and resuming keeps it),
    so the run denoises with it by default; Noisier2Noise training has none."""
    import shutil

    from cryostream.config import DenoiseConfig
    from cryostream.denoise.network import model_record
    from cryostream.runs import load_record, save_record

    start = tmp_path / "start"
    shutil.copytree(tiny_run.run, start)
    table = model_record("general").learned_weights
    save_record(start, dataclasses.replace(load_record(start), learned_weights=table))
    clean = dataclasses.replace(SMALL, recorrupt=True)
    kept = cryostream.fit(mics, tmp_path / "kept", start=start, train=clean, budget="2steps")
    assert kept.steps == 2 and load_record(kept.run).learned_weights == table
    resumed = cryostream.fit(mics, tmp_path / "kept", start=start, train=clean)
    assert resumed.steps == 4 and load_record(kept.run).learned_weights == table
    config = DenoiseConfig().for_run(load_record(kept.run))
    assert config.learned_weights and config.binned_pass and not config.n2n_correction
    n2n = cryostream.fit(mics, tmp_path / "n2n", start=start, train=SMALL, budget="2steps")
    assert load_record(n2n.run).learned_weights is None
    out = cryostream.denoise(kept.run, mics[:1], tmp_path / "denoised")
    assert np.isfinite(out.values).all()


@pytest.mark.slow
def test_a_fit_resumes_from_its_checkpoint(mics, tmp_path, notes):
    """Interrupted at step 2 (``train(stop_at=2)`` on the fit's own store and config), the same
    call continues from that checkpoint to step 4 and denoises with ``--model RUN``."""
    from cryostream.runs import checkpoint_steps, load_record
    from cryostream.training import train

    run = tmp_path / "run"
    first = cryostream.fit(mics, run, train=SMALL, budget=SPENT)
    train(first.store, run, SMALL, stop_at=2, log=lambda *_: None)
    assert checkpoint_steps(run) == [2]
    # stopped short of its 4 steps, then a smaller budget: kept at 2, and both records say 2
    short = cryostream.fit(mics, run, train=SMALL, budget="1step")
    assert (short.steps, short.target_steps, short.finished) == (2, 2, True)
    assert load_record(run).train.steps == 2 == \
        json.loads((run / "fit.json").read_text())["train"]["steps"]
    result = cryostream.fit(mics, run, train=SMALL)
    assert (result.steps, result.finished) == (4, True) and checkpoint_steps(run) == [2, 4]
    assert "training unet-small for 4 steps of 4 patches, resuming at step 2: compiling the step " \
           "first" in notes
    assert "resumed from step 2" in notes
    assert any(n.startswith("fit: ") and n.endswith("resuming at step 2 of 4") for n in notes)
    assert not any(n.startswith("fit: ") and "from scratch" in n for n in notes[-10:])
    assert any(n.startswith("training: step 4/4, loss ") for n in notes)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4]  # one row each 10 steps, and the last
    assert load_record(run).train == SMALL
    notes.clear()
    again = cryostream.fit(mics, run, train=SMALL)
    assert again.steps == 4 and "already trained: step 4 of 4" in notes
    # its result reads the loss and evaluation the run logged (they were NaN and {})
    assert again.final_loss == rows[-1]["loss"] == result.final_loss
    assert again.eval == result.eval and "psnr" in again.eval
    notes.clear()  # a smaller budget keeps the run, and its record says the steps it has
    fewer = cryostream.fit(mics, run, train=SMALL, budget="2steps")
    assert (fewer.steps, fewer.target_steps, fewer.finished) == (4, 4, True)
    assert any(n.endswith("nothing to train: the run already has 4 steps, more than the "
                          "budget's 2") for n in notes)
    assert json.loads((run / "fit.json").read_text())["train"]["steps"] == 4 == \
        load_record(run).train.steps
    out = cryostream.denoise(run, mics[:1], tmp_path / "denoised")
    assert out.shape == (1, 128, 160) and np.isfinite(out.values).all()


@pytest.mark.slow
def test_from_general_starts_at_the_shipped_weights(mics, tmp_path):
    """One step from the general model: the step's learning rate is 0 (linear warm-up from 0),
    so the checkpoint holds the shipped arrays exactly; the record says where it started."""
    config = dataclasses.replace(RECIPE_TRAIN, precision="fp32", batch_size=2, eval_batches=1,
                                 threads=1)
    result = cryostream.fit(mics, tmp_path / "run", start="general", budget="1step", train=config)
    assert result.start == "general" and result.steps == 1
    model, record = cryostream.load_model(tmp_path / "run")
    assert record.train.init == "general" and record.train.steps == 1
    from flax import nnx

    params = _by_name(nnx.split(model, nnx.Param)[1])
    with np.load(GENERAL) as npz:
        for name in npz.files:
            if name != "__meta__":
                np.testing.assert_array_equal(params[name], npz[name], err_msg=name)


@pytest.mark.slow
def test_from_a_run_and_a_time_limit(mics, tmp_path, tiny_run):
    """A run of another network is refused; ``train(time_limit_s=0)`` trains one step, saves it
    and stops."""
    from cryostream.runs import checkpoint_steps
    from cryostream.training import train

    with pytest.raises(ConfigError, match=r"its network is unet-small, not residual, this run's "
                       r"is unet, residual"):
        cryostream.fit(mics, tmp_path / "run", start=tiny_run.run)
    assert _tree(tmp_path) == []
    result = train(tiny_run.store, tmp_path / "timed", dataclasses.replace(SMALL, steps=50),
                   time_limit_s=0, log=lambda *_: None)
    assert result.steps == 1 and checkpoint_steps(tmp_path / "timed") == [1]


# --- the learning rate's warm-up of a short budget ------------------------------------------------

#: The recipe's schedule in proportion (a warm-up of 100 of 600 steps), on unet-small from the
#: shared run (a network that trains fast on the CPU).
SHARE = dataclasses.replace(TINY_TRAIN, steps=600, warmup_steps=100, eval_every=600,
                            checkpoint_every=600)


def test_a_budget_in_steps_keeps_the_warmup_s_share_and_no_budget_trains_as_before(tmp_path):
    """The warm-up (100 steps of the general model's 600) took all of a budget in steps but one:
    `--budget 1steps` trained at a rate of 0, `--budget 30steps` mostly near it. Now a budget
    in steps keeps the warm-up's share of the training's steps (at least one); no budget, a
    time budget and a budget of the training's own steps or more train as before, bit for bit
    (the same TrainConfig: the default fit's results were measured with it)."""
    from cryostream.fit_recipe import scheduled

    def cut(config, budget):
        return scheduled(config, Budget.parse(budget), tmp_path / "none", False)

    for budget in (None, "30m", "600steps"):
        assert cut(FINETUNE_TRAIN, budget) == (FINETUNE_TRAIN, {
            "training_steps": 600, "training_warmup_steps": 100})
    assert cut(FINETUNE_TRAIN, "6000steps")[0] == dataclasses.replace(FINETUNE_TRAIN, steps=6000)
    assert [cut(FINETUNE_TRAIN, f"{n}steps")[0].warmup_steps for n in (1, 6, 12, 60, 300)] == \
        [1, 1, 2, 10, 50]
    assert [cut(RECIPE_TRAIN, f"{n}steps")[0].warmup_steps for n in (3, 50, 999)] == [1, 5, 99]
    assert cut(SMALL, "2steps")[0] == dataclasses.replace(SMALL, steps=2)  # a warm-up of 1 stays


def _fitted_from(start, mics, run: Path, budget) -> tuple:
    """A real fit of ``mics`` from the run ``start`` with :data:`SHARE` into ``run`` (its store
    in the folder beside it, ``work``): its result and the warm-up's warnings' words."""
    import warnings

    from cryostream.fit_recipe import WarmupWarning

    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        result = cryostream.fit(mics, run, start=start, train=SHARE, budget=budget,
                                work=run.parent / "work")
    return result, [str(w.message) for w in said if w.category is WarmupWarning]


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_a_fit_of_one_step_says_its_model_is_its_start_s(mics, tmp_path, tiny_run):
    """A budget of 1 step leaves the start's parameters as they were (the step's learning rate
    is 0, the warm-up's first): it was reported 'fitted ... step 1 of 1' and nothing more. Now
    a warning says so, and what budget trains it."""
    from flax import nnx

    one, start = tmp_path / "one", tiny_run.run
    result, said = _fitted_from(start, mics, one, "1step")
    assert result.steps == 1 and said == [
        f"{one}: trained 1 step, within the learning rate's warm-up (1 step; its one step trains "
        f"at a learning rate of 0), so its model is the model it started from ({start}); a "
        "--budget of more steps continues it: --budget 600steps, say, 599 more steps"]
    fitted = _by_name(nnx.split(cryostream.load_model(one)[0], nnx.Param)[1])
    for name, value in _by_name(nnx.split(cryostream.load_model(start)[0], nnx.Param)[1]).items():
        np.testing.assert_array_equal(fitted[name], value, err_msg=name)


@pytest.mark.slow
def test_a_budget_in_steps_warms_up_over_its_share_recorded_in_fit_json(mics, tmp_path, tiny_run):
    """A budget of 12 steps (the warm-up 100 of 600) warms up over 2, recorded in fit.json (with
    the training's own schedule) and the run's record, and says nothing of the warm-up; the
    fit whose store a first call made (a time budget, nothing trained, a warm-up of 100
    recorded) goes on, not refused for its warm-up."""
    from cryostream.runs import load_record

    run = tmp_path / "run"
    assert _fitted_from(tiny_run.run, mics, run, SPENT)[0].steps == 0
    assert json.loads((run / FIT_RECORD).read_text())["schedule"] == {
        "training_steps": 600, "training_warmup_steps": 100}
    result, said = _fitted_from(tiny_run.run, mics, run, "12steps")
    assert (result.steps, said) == (12, [])
    request = json.loads((run / FIT_RECORD).read_text())
    assert (request["train"]["steps"], request["train"]["warmup_steps"]) == (12, 2)
    assert load_record(run).train.warmup_steps == 2


@pytest.mark.slow
def test_a_fit_stopped_within_its_warmup_says_how_many_steps_it_needs(mics, tmp_path, tiny_run):
    """A run stopped within the warm-up (3 steps of 600, the warm-up 100: as a time budget
    stops it) says, as a fit call ends on it, that its model is nearly its start's and the
    steps it needs to leave the warm-up and to end; its warm-up is kept (its checkpoints')."""
    from cryostream.training import train

    stopped, start = tmp_path / "stopped", tiny_run.run
    _fitted_from(start, mics, stopped, SPENT)
    train(tmp_path / "work" / "data.h5", stopped, dataclasses.replace(SHARE, init=str(start)),
          stop_at=3, log=lambda *_: None)
    result, said = _fitted_from(start, mics, stopped, SPENT)
    assert (result.steps, result.finished) == (3, False) and said == [
        f"{stopped}: trained 3 steps, within the learning rate's warm-up (100 steps; its last "
        "step at 2% of the full rate), so its model is still nearly the model it started from "
        f"({start}); it needs 98 more steps to leave the warm-up, and 597 more steps to end its "
        "600: run the same command again (a larger --budget trains more in one call)"]


# --- one fit at a time in a folder --------------------------------------------------------------

@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_a_second_fit_on_a_folder_in_use_is_refused_naming_the_first(mics, tmp_path):
    """Two fits on one run folder (another terminal, a job sent twice) would write one store
    and one run at once: while a real ``cryostream fit`` runs there, a second is refused,
    naming the process, and writes nothing; the first goes on and releases the folder."""
    import os
    import subprocess
    import sys
    import time

    from cryostream.locks import LOCK_NAME

    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "cryostream", "fit", *map(str, mics), "-o",
                              str(run), "--from", "scratch", "--model", "unet-small",
                              "--budget", "3steps"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):  # the lock comes first, before the store
            if (run / LOCK_NAME).is_file() and (run / LOCK_NAME).stat().st_size:
                break
            time.sleep(0.1)
        assert first.poll() is None, "the first fit ended before the test could meet it"
        with pytest.raises(StoreError) as info:
            cryostream.fit(mics, run, train=SMALL, budget=SPENT)
        assert str(info.value).startswith(f"{run}: in use by cryostream fit: process {first.pid} ")
        assert str(info.value).endswith("wait for it to finish or stop it, or give this fit "
                                        "another folder (-o, --work)")
        # another run folder, but the running fit's store: refused as well, and nothing made
        with pytest.raises(StoreError, match=f"^{run / 'work'}: in use by cryostream fit"):
            cryostream.fit(mics, tmp_path / "other", work=run / "work", train=SMALL,
                           budget=SPENT)
        assert not (tmp_path / "other").exists()
    finally:
        assert first.wait(timeout=600) == 0
    assert not (run / LOCK_NAME).exists() and (run / FIT_RECORD).is_file()
    assert not (run / "work" / LOCK_NAME).exists() and os.listdir(run / "checkpoints")


def test_a_lock_left_by_a_process_that_is_gone_is_taken_over(mics, tmp_path, caplog):
    """A fit killed outright (out of memory, a node lost) leaves its lock file, but no process
    holds it any more: the next fit says whose it was, takes it over and runs."""
    import json
    import socket
    import subprocess
    import sys

    from cryostream.locks import LOCK_NAME

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text(json.dumps({"pid": int(ended.stdout), "started": "earlier",
                                             "host": socket.gethostname()}))
    with caplog.at_level("WARNING", logger="cryostream"):
        result = cryostream.fit(mics, run, train=SMALL, budget=SPENT)
    assert result.store.is_file() and (run / FIT_RECORD).is_file()
    assert f"taking over the lock of cryostream fit: process {int(ended.stdout)}" in caplog.text
    assert not (run / LOCK_NAME).exists()


def test_a_refused_fit_leaves_no_folders_and_a_file_for_the_run_is_named(mics, tmp_path):
    """The lock makes the run and work folders first: a fit refused afterwards (a micrograph
    that is not there) leaves none of them, nor the parents it made; a file where the run
    folder should be is named as such."""
    with pytest.raises(InvalidMicrographError):
        cryostream.fit([*mics, tmp_path / "gone.mrc"], tmp_path / "results" / "a" / "run",
                       work=tmp_path / "scratch" / "work", train=SMALL, budget=SPENT)
    assert _tree(tmp_path) == []
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(StoreError, match="run: is a file; give a folder for the run"):
        cryostream.fit(mics, tmp_path / "run", train=SMALL, budget=SPENT)
    assert _tree(tmp_path) == ["run"]


def test_a_micrograph_without_a_pixel_size_is_fitted_with_a_warning(mics, tmp_path, caplog):
    """A header whose pixel size is unset (0 Å): the fit goes on (training does without it)
    but says that the denoise it prints will need one (it had ended with a command that
    failed)."""
    import mrcfile
    from conftest import write_mrc

    unset = [write_mrc(tmp_path / p.name, mrcfile.read(p).astype(np.float32), pixel_size=0.0)
             for p in mics]
    with caplog.at_level("WARNING", logger="cryostream"):
        result = cryostream.fit(unset, tmp_path / "run", train=SMALL, budget=SPENT)
    assert result.store.is_file()
    assert (f"{unset[0]} and 1 more: the header leaves the pixel size unset (0 Å); the fit goes "
            "on, but denoising needs it") in caplog.text


def test_another_fits_work_folder_is_refused_not_prepared_again(mics, tmp_path):
    """Two fits pointed at one --work, one after the other: the second had prepared the
    first's store again from its own micrographs (rc 0, one note), leaving the first pointing
    at a store of other micrographs. Now it is refused naming the folder, and --overwrite
    prepares it there on purpose; the same fit again keeps its store."""
    others = cryostream.simulate(tmp_path / "others", 2, shape=(128, 160), seed=9).micrographs
    work = tmp_path / "shared"
    first = cryostream.fit(mics, tmp_path / "a", work=work, train=SMALL, budget=SPENT)
    made = first.store.stat().st_mtime_ns
    with pytest.raises(StoreError, match=rf"^{work}: holds the store of other micrographs or "
                       r"options \(another fit's --work\?\); give this fit its own work folder"):
        cryostream.fit(others, tmp_path / "b", work=work, train=SMALL, budget=SPENT)
    assert first.store.stat().st_mtime_ns == made and not (tmp_path / "b").exists()
    again = cryostream.fit(mics, tmp_path / "a", work=work, train=SMALL, budget=SPENT)
    assert again.store.stat().st_mtime_ns == made  # its own: kept
    replaced = cryostream.fit(others, tmp_path / "b", work=work, train=SMALL, budget=SPENT,
                              overwrite=True)
    assert replaced.store.is_file()


def test_a_fit_continued_with_another_work_folder_names_both(mics, tmp_path):
    """The same fit given another --work was refused as "(changed: store)", which named
    neither folder; now both are named, as the option the scientist gave, and nothing of
    the run or the new folder is made."""
    run = tmp_path / "run"
    cryostream.fit(mics, run, train=SMALL, budget=SPENT)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError) as info:
        cryostream.fit(mics, run, work=tmp_path / "elsewhere", train=SMALL, budget=SPENT)
    assert str(info.value).startswith(
        f"{run}: holds a fit of other inputs or options (changed: --work: {run / 'work'} → "
        f"{tmp_path / 'elsewhere'}); to continue that fit give it the inputs and options")
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "elsewhere").exists()


def test_a_fit_of_one_micrograph_says_none_is_held_out(mics, tmp_path, notes):
    """One micrograph: no test split, so no test PSNR; the note says so (it said '1
    micrographs' and nothing else)."""
    cryostream.fit(mics[:1], tmp_path / "run", train=SMALL, budget=SPENT)
    (said,) = [n for n in notes if n.startswith("fit: ")]
    assert said.startswith("fit: 1 micrograph of 128 × 160 px")
    assert said.endswith("; one micrograph: none held out, so no test PSNR")


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_a_time_budget_goes_on_with_the_schedule_a_budget_in_steps_set(mics, tmp_path, notes):
    """A fit made with a budget in steps and continued with a time budget kept the recipe's
    steps instead (its schedule changed silently: 'resuming at step 30 of 1000' after
    200steps); now the run's own steps stay."""
    run = tmp_path / "run"
    cryostream.fit(mics, run, train=SMALL, budget="2steps")
    notes.clear()
    cryostream.fit(mics, run, train=SMALL, budget="30m")
    (said,) = [n for n in notes if n.startswith("fit: ")]
    assert said.endswith("nothing to train: already at step 2 of 2")


def test_overwrite_refuses_a_fit_s_files_made_read_only(mics, tmp_path, capsys):
    """``fit --overwrite`` replaced an earlier fit's files (``fit.json``, its checkpoints) and
    its store even where the user had made them read-only (``chmod a-w``). Now they are named
    before any work, with the fix, and nothing changes; a read-only store the fit keeps (the
    same micrographs and options) is no reason to refuse, and once writable they are
    replaced."""
    run = tmp_path / "run"
    store = cryostream.fit(mics, run, train=SMALL, budget=SPENT).store
    record = run / FIT_RECORD

    def files():
        return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(tmp_path.rglob("*"))
                if p.is_file() and not p.name.startswith(".")}  # (the folders' lock files)

    record.chmod(0o444)
    before = files()
    capsys.readouterr()
    assert main(["fit", str(mics[0]), "-o", str(run), "--budget", "0.0001m", "--overwrite"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"cryostream fit: error: {record}: read-only, and this call would replace it; make it "
        f"writable (chmod u+w {record}) to replace it, or choose another run folder (-o)")
    assert files() == before
    record.chmod(0o644)
    store.chmod(0o444)  # kept by a fit of the same micrographs and options: no reason to refuse
    cryostream.fit(mics, run, train=SMALL, budget=SPENT, overwrite=True)
    assert files()[store] == before[store]
    before = files()
    with pytest.raises(StoreError, match=rf"^{store}: read-only, and this call would replace "
                       rf"it; make it writable \(chmod u\+w {store}\) to replace it, or give this "
                       r"fit another work folder \(--work\)$"):
        cryostream.fit(mics[:1], run, train=SMALL, budget=SPENT, overwrite=True)
    assert files() == before
    store.chmod(0o644)
    assert cryostream.fit(mics[:1], run, train=SMALL, budget=SPENT, overwrite=True).store.read_bytes(
        ) != before[store][0]


def _fitted_read_only(mics, tmp_path, budget):
    """A fit of ``budget`` in ``tmp_path / "run"``, its ``fit.json`` made read-only: the run,
    the record and a snapshot of every file under ``tmp_path`` (bytes, time, mode)."""
    run = tmp_path / "run"
    cryostream.fit(mics, run, train=SMALL, budget=budget)
    record = run / FIT_RECORD
    record.chmod(0o444)

    def files():
        return {p: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_mode)
                for p in sorted(tmp_path.rglob("*")) if p.is_file() and "lock" not in p.name}

    return run, record, files


def test_a_fit_found_again_leaves_its_read_only_record_as_it_is(mics, tmp_path):
    """The same fit called again (nothing to change in its run) wrote its ``fit.json`` anew,
    though it held this very request: one the user had made read-only (``chmod a-w``) was
    replaced by a writable copy, without a word. Now a record that holds the request is left
    as it is (its bytes, time and mode); the run's other files too."""
    run, record, files = _fitted_read_only(mics, tmp_path, "1step")
    before = files()
    assert cryostream.fit(mics, run, train=SMALL, budget="1step").steps == 1
    assert files() == before
    assert record.stat().st_mode & 0o777 == 0o444


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_a_fit_continued_refuses_its_files_made_read_only_before_any_work(mics, tmp_path):
    """A fit continued with a larger budget trained on and wrote its ``fit.json`` anew, a
    writable copy over one the user had made read-only (``chmod a-w``). Now it stops before
    any work, naming the file and the fix, and nothing changes; once writable, it continues."""
    run, record, files = _fitted_read_only(mics, tmp_path, "2steps")
    before = files()
    with pytest.raises(StoreError) as refused:
        cryostream.fit(mics, run, train=SMALL, budget="4steps")
    assert str(refused.value) == (
        f"{record}: read-only, and this call would replace it; make it writable (chmod u+w "
        f"{record}) to replace it, or choose another run folder (-o)")
    assert files() == before
    record.chmod(0o644)
    assert cryostream.fit(mics, run, train=SMALL, budget="4steps").steps == 4


def test_a_finished_fit_found_again_never_rewrites_its_read_only_record(mics, tmp_path, caplog):
    """A finished fit called again whose ``fit.json`` differed from the request only in what
    this call would write anew (the cryostream version that made it, or its micrographs'
    paths as an earlier call recorded them, through ``..``: the same files) was written anew,
    a writable copy over one the user had made read-only (``chmod a-w``), though nothing was
    trained. Now a record that differs only in the version is kept as the fit's own, read-only
    or not, and a read-only one is left as it is whatever would change, each said in one line;
    the call succeeds, and every file stays as it was."""
    run, record, files = _fitted_read_only(mics, tmp_path, "1step")
    made = json.loads(record.read_text())
    record.chmod(0o644)
    record.write_text(json.dumps({**made, "cryostream_version": "0.0.1"}, indent=2))
    record.chmod(0o444)
    before = files()
    caplog.set_level("INFO", logger="cryostream")
    assert cryostream.fit(mics, run, train=SMALL, budget="1step").steps == 1
    assert files() == before
    assert f"{record}: kept as it is (made by cryostream 0.0.1; this call trained nothing)" in \
        caplog.messages
    record.chmod(0o644)  # writable: the version alone is no reason to write it either
    before = files()
    assert cryostream.fit(mics, run, train=SMALL, budget="1step").steps == 1
    assert files() == before
    record.write_text(json.dumps({**made, "inputs": [  # the same files, another way
        str(m.parent / ".." / m.parent.name / m.name) for m in mics]}, indent=2))
    record.chmod(0o444)
    caplog.clear()
    before = files()
    assert cryostream.fit(mics, run, train=SMALL, budget="1step").steps == 1
    assert files() == before
    assert f"{record}: read-only (chmod a-w): left as it is, though this call would write its " \
           "inputs anew (the fit has all its steps: nothing trained)" in caplog.messages


def test_a_fit_kept_at_a_smaller_budget_never_rewrites_its_read_only_run_record(mics, tmp_path,
                                                                                caplog):
    """A fit stopped short of its 4 steps (a checkpoint at step 2) and called again with a
    budget of 1 step keeps the run, and its ``config.json`` says the 2 steps it has: one the
    user had made read-only (``chmod a-w``) was replaced by a writable copy, though nothing was
    trained (``fit.json`` is left as it is already). Now it is left as it is, said in one line;
    one that cannot be written is a warning, and the call, its work done, succeeds."""
    from cryostream.runs import load_record
    from cryostream.training import train

    run = tmp_path / "run"
    first = cryostream.fit(mics, run, train=SMALL, budget=SPENT)  # its store, then stopped short
    train(first.store, run, SMALL, stop_at=2, log=lambda *_: None)
    record = run / "config.json"
    record.chmod(0o444)
    before = (record.read_bytes(), record.stat().st_mtime_ns, record.stat().st_mode)
    caplog.set_level("INFO", logger="cryostream")
    short = cryostream.fit(mics, run, train=SMALL, budget="1step")
    assert (short.steps, short.target_steps, short.finished) == (2, 2, True)
    assert (record.read_bytes(), record.stat().st_mtime_ns, record.stat().st_mode) == before
    assert f"{record}: read-only (chmod a-w): left as it is, saying 4 steps, though this call " \
           "would write the 2 the run has (nothing trained)" in caplog.messages
    record.chmod(0o644)  # writable, but it cannot be written: where it is written first, a link
    partial = run / ".config.json.partial"  # to itself (ELOOP), which the failed write removes
    partial.symlink_to(partial.name)
    caplog.clear()
    assert cryostream.fit(mics, run, train=SMALL, budget="1step").steps == 2
    assert record.read_bytes() == before[0] and load_record(run).train.steps == 4
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and warned[0].startswith(f"{record}: could not write it (")
    assert warned[0].endswith("; left as it is, saying 4 steps for the 2 the run has (nothing "
                              "trained)")
    assert not partial.is_symlink()  # once it can be written, it says the 2 steps
    assert cryostream.fit(mics, run, train=SMALL, budget="1step").steps == 2
    assert load_record(run).train.steps == 2
