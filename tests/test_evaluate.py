"""The evaluation: the truth section scores only micrographs held out of training, the printed
summary agrees with the report's table, and progress notes per micrograph."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import cryostream
from cryostream import PrepareConfig
from cryostream.cli import main
from cryostream.errors import ConfigError
from cryostream.evaluate import select_held_out
from cryostream.prepare import prepare
from tests.conftest import write_mrc


def _tree(folder: Path) -> list[str]:
    """Every file and folder under ``folder``, hidden ones too, relative and sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _split_of(store: Path) -> dict[str, str]:
    """The store's own table: micrograph name → "train" or "test"."""
    with h5py.File(store) as f:
        names = f["micrographs/name"].asstr()[:]
        splits = f["micrographs/split"].asstr()[:]
    return dict(zip(names, splits, strict=True))


@pytest.fixture(scope="module")
def half_held(tmp_path_factory):
    """Four simulated 128² micrographs and a store of them with half held out."""
    root = tmp_path_factory.mktemp("held")
    sim = cryostream.simulate(root / "sim", 4, shape=(128, 128), seed=2)
    store = prepare(sim.micrographs, root / "data.h5",
                    PrepareConfig(patch_size=32, stride=32, test_fraction=0.5)).output
    return sim, store


def test_truth_scores_only_the_micrographs_held_out(half_held):
    sim, store = half_held
    split = _split_of(store)
    test = sorted(f"{n}.mrc" for n, s in split.items() if s == "test")
    train = sorted(f"{n}.mrc" for n, s in split.items() if s == "train")
    assert len(test) == 2 and len(train) == 2
    selection = select_held_out(sim.root, 5, store)
    assert [p[0].name for p in selection.pairs] == test
    assert [p[1] for p in selection.pairs] == [sim.root / "truth" / n for n in test]
    assert list(selection.in_training) == train and selection.checked
    assert f"Scored {', '.join(test)}: held out" in selection.note()
    assert [p[0].name for p in select_held_out(sim.root, 1, store).pairs] == test[:1]


def test_another_simulated_set_with_the_same_names_is_held_out(half_held, tmp_path):
    sim, store = half_held
    other = cryostream.simulate(tmp_path / "other", 4, shape=(128, 128), seed=3)
    assert sorted(p.name for p in other.micrographs) == sorted(p.name for p in sim.micrographs)
    selection = select_held_out(other.root, 4, store)
    assert len(selection.pairs) == 4 and selection.in_training == ()


def test_copies_of_training_micrographs_are_refused(half_held, tmp_path):
    """A copy of the training micrographs elsewhere is what was trained on: refused, naming
    the folder and the fix."""
    sim, store = half_held
    copy = tmp_path / "copy"
    for sub in ("micrographs", "truth"):
        (copy / sub).mkdir(parents=True)
    for name, split in _split_of(store).items():
        if split == "train":
            for sub in ("micrographs", "truth"):
                shutil.copy(sim.root / sub / f"{name}.mrc", copy / sub)
    with pytest.raises(ConfigError, match=rf"truth={copy}: all 2 micrographs are in the "
                       r"training split .*another --seed"):
        select_held_out(copy, 4, store)


def test_renamed_copies_of_training_micrographs_count_as_trained(half_held, tmp_path):
    """Training micrographs copied under other names (a set renamed for a new project) are
    what was trained on, as a simulated set to score and as another store's test split: the
    set is refused, and so is the store (both passed as held out before)."""
    from cryostream.evaluate.held_out import check_store_held_out

    sim, store = half_held
    copy = tmp_path / "renamed"
    for sub in ("micrographs", "truth"):
        (copy / sub).mkdir(parents=True)
    trained = [n for n, s in _split_of(store).items() if s == "train"]
    for i, name in enumerate(trained):
        for sub in ("micrographs", "truth"):
            shutil.copy(sim.root / sub / f"{name}.mrc", copy / sub / f"session2_{i:03d}.mrc")
    with pytest.raises(ConfigError, match=rf"truth={copy}: all 2 micrographs are in the "
                       r"training split"):
        select_held_out(copy, 4, store)
    other = prepare(sorted((copy / "micrographs").glob("*.mrc")), tmp_path / "other.h5",
                    PrepareConfig(patch_size=32, stride=32, test_fraction=0.5)).output
    assert "test" in _split_of(other).values()
    with pytest.raises(ConfigError, match=r"other.h5: its test split holds 1 of the run's "
                       r"training micrographs \(session2_"):
        check_store_held_out(other, store)


def test_half_sums_of_the_same_set_count_as_trained(tmp_path):
    """A store of even/odd half-sums (``prepare --odd``) trained on the micrographs whose
    halves are in its training split, though not on the full sums' files: only the others
    are scored."""
    sim = cryostream.simulate(tmp_path / "sim", 6, config=cryostream.SimulateConfig(
        shape=(128, 128), seed=4, even_odd=True))
    store = prepare(sim.evens, tmp_path / "pairs.h5",
                    PrepareConfig(patch_size=32, stride=32, test_fraction=0.34,
                                  noise=cryostream.NoiseConfig(model="none")),
                    odd=sim.odds).output
    split = _split_of(store)  # NAME_EVN and NAME_ODD rows
    test = sorted(f"{n[:-4]}.mrc" for n, s in split.items() if s == "test" and n.endswith("_EVN"))
    train = sorted(f"{n[:-4]}.mrc" for n, s in split.items() if s == "train" and n.endswith("_EVN"))
    assert len(test) == 2 and len(train) == 4
    selection = select_held_out(sim.root, 6, store)
    assert [p[0].name for p in selection.pairs] == test
    assert list(selection.in_training) == train


def test_a_store_that_is_not_here_is_said_unchecked(half_held, tmp_path):
    sim, _ = half_held
    selection = select_held_out(sim.root, 3, tmp_path / "gone.h5")
    assert len(selection.pairs) == 3 and not selection.checked
    assert "cannot be read here" in selection.note() and "gone.h5" in selection.note()
    # the shipped model's store was named on the machine that trained it: not said to a user
    shipped = select_held_out(sim.root, 3, "/tmp/gm/pairs.h5", shipped=True)
    assert not shipped.checked and "/tmp/gm" not in shipped.note()
    assert "shipped model's training store does not come with it" in shipped.note()


def _table_means(text: str) -> dict[str, float]:
    """The mean PSNR column of report.md's ground-truth table, by method."""
    section = text.split("## Simulated micrographs against their ground truth")[1]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]  # no header
    means = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        means[cells[0]] = float(cells[-1].split(" / ")[0])
    return means


def _printed_means(line: str) -> tuple[dict[str, float], str, float]:
    """The printed ground-truth line: PSNR by method, and the best method with its PSNR."""
    values, best = line.split("PSNR: ", 1)[1].split(" dB; best in the table: ")
    shown = {}
    for part in values.split(" | "):
        name, value = part.rsplit(" ", 1)
        shown[name] = float(value)
    best_name, best_value = best.removesuffix(" dB").rsplit(" ", 1)
    return shown, best_name, float(best_value)


@pytest.mark.slow
def test_cli_summary_agrees_with_the_truth_table(tiny_run, tmp_path, capsys):
    """``cryostream evaluate RUN STORE --truth``: the printed lines are the report's numbers
    (parsed from both), only the store's held-out micrograph is scored, and one progress note
    per micrograph goes to stderr (17 s: the truth section denoises a micrograph)."""
    out = tmp_path / "rep"
    assert main(["evaluate", str(tiny_run.run), str(tiny_run.store), "-o", str(out),
                 "--truth", str(tiny_run.sim.root), "--micrographs", "3", "--tile", "64",
                 "--patches", "4"]) == 0
    captured = capsys.readouterr()
    printed = captured.out.splitlines()
    assert printed[0] == f"wrote {out}/report.md"
    report = json.loads((out / "report.json").read_text())
    text = (out / "report.md").read_text()
    held = sorted(f"{n}.mrc" for n, s in _split_of(tiny_run.store).items() if s == "test")
    assert report["truth_micrographs"]["scored"] == held and len(held) == 1
    assert [r["micrograph"] for r in report["simulated"]] == held
    assert f"Scored {held[0]}: held out of the run's training" in text
    # the summary and the table, each parsed
    means = _table_means(text)
    truth_line = next(line for line in printed if "ground truth" in line)
    shown, best_name, best_value = _printed_means(truth_line)
    assert set(shown) == {"noisy", "Gaussian (best σ)", "oracle Wiener", "model, default recipe"}
    for name, value in shown.items():
        assert value == means[name]
    assert best_value == max(means.values()) == means[best_name]
    split_line = next(line for line in printed if "test split" in line)
    split = report["test_split"]
    assert f"noisy {split['noisy_psnr']:.2f}" in split_line
    assert f"| noisy input | {split['noisy_psnr']:.2f} |" in text
    assert f"model {split['model_psnr']:.2f} dB" in split_line
    assert f"| cryostream model | {split['model_psnr']:.2f} |" in text
    # progress: the test split and one note per micrograph, with its time and scores
    notes = [line for line in captured.err.splitlines() if line.startswith("cryostream: ")]
    assert any(line.startswith("cryostream: test split: 4 patches") for line in notes)
    truth_notes = [line for line in notes if "ground truth" in line]
    assert len(truth_notes) == 1
    assert truth_notes[0].startswith(f"cryostream: ground truth 1/1 {held[0]} (held out): ")
    assert f"model, default recipe {means['model, default recipe']:.2f} dB" in truth_notes[0]


def test_evaluate_refuses_a_truth_set_it_trained_on_before_writing(tiny_run, tmp_path, capsys):
    copy = tmp_path / "copy"
    for sub in ("micrographs", "truth"):
        (copy / sub).mkdir(parents=True)
    for name, split in _split_of(tiny_run.store).items():
        if split == "train":
            for sub in ("micrographs", "truth"):
                shutil.copy(tiny_run.sim.root / sub / f"{name}.mrc", copy / sub)
    out = tmp_path / "rep"
    assert main(["evaluate", str(tiny_run.run), "-o", str(out), "--truth", str(copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cryostream evaluate: error: --truth {copy}: all 2")
    assert not out.exists()


@pytest.mark.parametrize("damage", ["truth of another shape", "truth with NaN",
                                    "micrograph with NaN"])
def test_a_damaged_pair_of_the_truth_set_is_named_before_any_work(tiny_run, tmp_path, capsys,
                                                                   damage):
    """A simulated set whose truth is of another shape than its micrograph had been a
    traceback from the PSNR; a truth or micrograph with a NaN pixel a report of NaN scores,
    status 0. Now one line names the file and the fix, and no report is written."""
    import mrcfile
    import numpy as np

    from tests.conftest import write_mrc

    sim = cryostream.simulate(tmp_path / "other", 1, shape=(160, 128), seed=9)
    sub = "micrographs" if damage.startswith("micrograph") else "truth"
    bad = sim.root / sub / "sim_0000.mrc"
    image = mrcfile.read(bad).copy()
    if damage == "truth of another shape":
        image = image[:100]
    else:
        image[5, 7] = np.nan
    write_mrc(bad, image)
    out = tmp_path / "rep"
    assert main(["evaluate", str(tiny_run.run), "-o", str(out), "--truth", str(sim.root),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cryostream evaluate: error: {bad}: "), err
    assert ("100 × 128 px" if "shape" in damage else "NaN") in err[0], err
    assert "remove sim_0000.mrc from both" in err[0] and "--permissive" not in err[0], err
    assert not out.exists()


def test_evaluate_needs_something_to_score(tiny_run, tmp_path, capsys):
    assert main(["evaluate", str(tiny_run.run), "-o", str(tmp_path / "rep")]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    assert not (tmp_path / "rep").exists()


def test_a_failed_evaluation_leaves_nothing_it_made(tiny_run, tmp_path, capsys):
    """An evaluation that fails once its report has begun (a store that is not there, a tile
    the network cannot take) leaves no report folder (nor the folders above it) where there
    was none, and a folder the user had as it was: an earlier report in it is kept whole."""
    new = tmp_path / "reports" / "first"
    assert main(["evaluate", str(tiny_run.run), str(tmp_path / "nosuch.h5"), "-o", str(new)]) == 2
    assert f"{tmp_path / 'nosuch.h5'}: no such store" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    had = tmp_path / "had"
    had.mkdir()
    (had / "report.md").write_text("an earlier report\n")
    mic = str(tiny_run.sim.micrographs[0])
    assert main(["evaluate", str(tiny_run.run), "-o", str(had), "--residual", mic,
                 "--tile", "7"]) == 2
    assert "--tile 7" in capsys.readouterr().err
    assert _tree(had) == ["report.md"] and (had / "report.md").read_text() == "an earlier report\n"


@pytest.mark.parametrize("tile, said", [
    ("7", "--tile 7: must be a multiple of 8 for this model; give one, e.g. 56"),
    ("8", "--tile 8: smaller than the 56-px halo around it (the network's context on each "
          "side); give one of at least 56"),
    ("0", "--tile 0: must be a whole number of pixels, a multiple of 8 for this model and at "
          "least its 56-px halo; give one, e.g. 56"),
    ("-32", "--tile -32: must be a whole number of pixels, a multiple of 8 for this model and "
            "at least its 56-px halo; give one, e.g. 56"),
])
def test_a_tile_the_run_cannot_take_is_refused_up_front_with_one_that_works(tiny_run, tmp_path,
                                                                            capsys, tile, said):
    """evaluate --tile 7 suggested --tile 8, which failed on evaluate's halo (an option it does
    not have), as 0 and -32 did; without --truth they were taken silently. Each is refused
    before any work with every section, naming a tile that works with the run's 56-px halo."""
    mic = str(tiny_run.sim.micrographs[0])
    for section in (["--truth", str(tiny_run.sim.root)], [str(tiny_run.store)],
                    ["--residual", mic]):
        out = tmp_path / "rep"
        assert main(["evaluate", str(tiny_run.run), *section, "-o", str(out), "--tile", tile]) == 2
        err = capsys.readouterr().err.splitlines()
        assert err == [f"cryostream evaluate: error: {said} (or leave it out: the default is "
                       "chosen for the micrograph and the device)"]
        assert not out.exists()
    if tile == "7":  # the tile suggested works
        assert main(["evaluate", str(tiny_run.run), "-o", str(tmp_path / "rep"), "--tile", "56",
                     "--residual", mic, "--quiet"]) == 0


def _png(path: Path) -> Path:
    """A small real PNG image at ``path`` (any program's)."""
    import matplotlib.image

    matplotlib.image.imsave(path, np.zeros((4, 4)))
    return path


def test_a_failed_report_keeps_what_another_command_wrote_beside_its_folder(tmp_path):
    """The report's staging (cryostream.evaluate.report): two reports into new folders under
    one new parent, the second stopped (Ctrl-C) after the first finished: the parent and the
    first report stay; what the stopped one made goes, and only while empty."""
    from cryostream.evaluate.report import staged_report

    parent = tmp_path / "reports"
    with pytest.raises(KeyboardInterrupt), staged_report(parent / "run2" / "figures") as staging:
        (staging / "report.md").write_text("half\n")
        (parent / "run1").mkdir()  # another evaluation, finished meanwhile
        (parent / "run1" / "report.md").write_text("run1's report\n")
        raise KeyboardInterrupt
    assert _tree(tmp_path) == ["reports", "reports/run1", "reports/run1/report.md"]
    figures = ("frc.png", "crops.png", "residual_0.png", "residual_12.png")
    with staged_report(parent / "run3") as staging:  # a whole report lands, staging gone
        (staging / "report.md").write_text("# Evaluation of `run`\n")
        (staging / "report.json").write_text("{}")
        for name in ("a.png", *figures):
            _png(staging / name)
    assert _tree(parent / "run3") == sorted(["a.png", "report.json", "report.md", *figures])
    # again with fewer sections: the earlier report's figures it does not make go; others stay,
    # a figure's name that evaluate did not write too (put there since)
    _png(parent / "run3" / "spectra.png")
    (parent / "run3" / "mine.png").write_text("mine")
    with staged_report(parent / "run3") as staging:
        for name in ("report.md", "report.json"):
            (staging / name).write_text("{}")
        new = _png(staging / "residual_0.png").read_bytes()
    assert _tree(parent / "run3") == ["a.png", "mine.png", "report.json", "report.md",
                                      "residual_0.png", "spectra.png"]
    assert (parent / "run3" / "residual_0.png").read_bytes().endswith(new[-100:])


def test_a_report_goes_into_a_folder_the_user_had_beside_its_files(tiny_run, tmp_path):
    """Written whole into a folder that holds other files (7 s: the residual check denoises a
    micrograph): the other files stay, nothing else. No --tile: the window is chosen for
    micrographs smaller than any fixed tile (160 × 128), as denoise chooses it."""
    had = tmp_path / "had"
    had.mkdir()
    (had / "notes.txt").write_text("mine\n")
    assert main(["evaluate", str(tiny_run.run), "-o", str(had), "--residual",
                 str(tiny_run.sim.micrographs[0]), "--quiet"]) == 0
    assert _tree(had) == ["notes.txt", "report.json", "report.md", "residual_0.png",
                          "training.png"]
    assert (had / "report.md").read_text().startswith("# Evaluation of ")
    assert (had / "notes.txt").read_text() == "mine\n"


def test_a_store_with_an_empty_test_split_says_how_to_get_one(tiny_run, tmp_path, capsys):
    """evaluate RUN STORE on a store prepared with no test fraction said only "the test split
    is empty"; it says how to get something to score, before anything is written, and the
    store prepared again as it says is scored."""
    store = tmp_path / "data.h5"
    prepare_store = ["prepare", *map(str, tiny_run.sim.micrographs), "-o", str(store), "--patch",
                     "32", "--quiet"]
    assert main([*prepare_store, "--test-fraction", "0"]) == 0
    out = tmp_path / "rep"
    assert main(["evaluate", str(tiny_run.run), str(store), "-o", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"cryostream evaluate: error: {store}: the test split is empty (prepared with "
        "--test-fraction 0 from 3 micrographs), and evaluate scores a store on its test split: "
        "prepare the store again holding some out, e.g. --test-fraction 0.1, or leave the "
        "store out and score simulated micrographs with --truth FOLDER or any micrographs' "
        "residual with --residual MRC"]
    assert not out.exists()
    assert main([*prepare_store, "--test-fraction", "0.1", "--overwrite"]) == 0
    assert main(["evaluate", str(tiny_run.run), str(store), "-o", str(out), "--patches", "4",
                 "--quiet"]) == 0


def test_a_diverged_run_is_not_sent_to_resume(tiny_run, tmp_path, capsys):
    """evaluate on a run whose training diverged (at --lr 0.1 every checkpoint is refused, so
    none is kept) advised `train --resume`, which diverges again. Its record (the loss it
    logged growing past a checkpoint that was due) says it diverged: train again at a lower
    --lr, as train said when it ended; denoise and rank say the same. A run stopped before
    its first checkpoint with nothing logged may have been interrupted or have diverged: the
    line says what to do for each."""
    run = tmp_path / "run"
    assert main(["train", str(tiny_run.store), "-o", str(run), "--model", "unet-small",
                 "--precision", "fp32", "--steps", "20", "--batch-size", "4", "--checkpoint-every",
                 "10", "--eval-every", "20", "--lr", "0.1", "--quiet"]) == 2
    trained = capsys.readouterr().err
    assert "lower learning rate (--lr, half or less)" in trained
    assert not list((run / "checkpoints").iterdir())
    diverged = (f"{run}: no checkpoint in {run / 'checkpoints'}: its training diverged "
                "(metrics.jsonl logs its network diverged at its last step, 20, and no "
                "checkpoint of a diverged network is written), so resuming it is "
                "no use; train again into a new run folder (-o), with `cryostream train` at a "
                "lower learning rate (--lr, half or less of its 0.1) or another --seed; loss.png "
                "shows the curve")
    mic = str(tiny_run.sim.micrographs[0])
    for command in (["evaluate", str(run), str(tiny_run.store), "-o", str(tmp_path / "rep")],
                    ["denoise", str(run), mic, "-o", str(tmp_path / "out")],
                    ["rank", str(run), "-i", mic]):
        assert main([*command, "--quiet"]) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"cryostream {command[0]}: error: {diverged}"]
    assert not (tmp_path / "rep").exists() and not (tmp_path / "out").exists()

    early = tmp_path / "early"  # what a training killed before its first checkpoint leaves
    (early / "checkpoints").mkdir(parents=True)
    shutil.copy(run / "config.json", early)
    assert main(["evaluate", str(early), str(tiny_run.store), "-o", str(tmp_path / "rep")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"cryostream evaluate: error: {early}: no checkpoint in {early / 'checkpoints'}: its "
        "training stopped before its first checkpoint (step 10 of 20). If it was interrupted "
        "or stopped on an error (out of memory, a full disk), continue it with cryostream train "
        "--resume once that is mended; if it ended diverged (train said so), "
        "resuming it is no use: train again into a new run folder (-o), with `cryostream "
        "train` at a lower learning rate (--lr, half or less of its 0.1) or another --seed"]
    falling = tmp_path / "falling"  # a healthy loss falling tenfold, killed at its checkpoint
    shutil.copytree(early, falling)
    (falling / "metrics.jsonl").write_text("".join(
        f'{{"step": {s}, "loss": {v}}}\n' for s, v in ((5, 1.0), (10, 0.3), (15, 0.04))))
    assert main(["evaluate", str(falling), str(tiny_run.store), "-o", str(tmp_path / "rep")]) == 2
    assert "its training stopped before its first checkpoint" in capsys.readouterr().err
    (falling / "metrics.jsonl").write_text('{"step": 3, "diverged": true}\n')  # train stopped it
    assert main(["evaluate", str(falling), str(tiny_run.store), "-o", str(tmp_path / "rep")]) == 2
    assert "its training diverged (metrics.jsonl logs its loss not finite at step 3, and no " \
        "checkpoint of a diverged network is written), so resuming it is no use" in capsys.readouterr().err


def test_a_run_that_diverged_after_its_last_checkpoint_says_so_in_its_report(tiny_run, tmp_path,
                                                                             capsys):
    """A training that ended on a diverged network keeps its last checkpoint from before
    (train writes none of a diverged network) and logs {"diverged": "network"}. evaluate noted
    it on stderr, but the report a scientist keeps said nothing of it: report.md says it near
    the top, and report.json holds both steps."""
    run = tmp_path / "run"  # what `train` leaves when its last step, 8, diverged
    shutil.copytree(tiny_run.run, run)
    shutil.rmtree(run / "checkpoints" / "8")
    with open(run / "metrics.jsonl", "a") as log:
        log.write(json.dumps({"step": 8, "diverged": "network"}) + "\n")
    out = tmp_path / "rep"
    assert main(["evaluate", str(run), str(tiny_run.store), "-o", str(out), "--patches", "4",
                 "--quiet"]) == 0
    said = ("training diverged at step 8 (metrics.jsonl); the network scored is its last "
            "checkpoint, step 4, from before that and trained only that far: a run trained "
            "again at a lower learning rate (--lr) may do better")
    assert (out / "report.md").read_text().splitlines()[:4] == [
        f"# Evaluation of `{run}`", "", f"**Note:** this run's {said}.", ""]
    assert json.loads((out / "report.json").read_text())["diverged"] == {"step": 8,
                                                                         "checkpoint": 4}
    assert main(["evaluate", str(tiny_run.run), str(tiny_run.store), "-o", str(tmp_path / "ok"),
                 "--patches", "4", "--quiet"]) == 0  # a run that did not diverge: no such line
    assert "diverged" not in (tmp_path / "ok" / "report.md").read_text()
    assert "diverged" not in json.loads((tmp_path / "ok" / "report.json").read_text())


def test_progress_of_rank(tiny_run, capsys):
    """``rank``: one note per micrograph on stderr, with what the steps found (these 160 × 128
    micrographs are too small for a CTF fit); with one run, first a note that a score alone
    ranks nothing."""
    mic = str(tiny_run.sim.micrographs[0])
    assert main(["rank", str(tiny_run.run), "-i", mic, "--draws", "1"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("cryostream: one run: its score is listed alone")
    assert err[1].startswith(f"cryostream: scored 1/1 {Path(mic).stem} for 1 run:")
    assert err[1].endswith("s; too small for a CTF fit: radial Wiener gain")


def test_rank_and_the_residual_check_refuse_nan_pixels_naming_the_file(tiny_run, tmp_path,
                                                                         capsys):
    """A micrograph with NaN pixels: rank and evaluate --residual say which file, as denoise
    does (they had said only 'alpha2=nan', or scored NaN), and evaluate writes no report."""
    import mrcfile
    import numpy as np

    from tests.conftest import write_mrc

    image = mrcfile.read(tiny_run.sim.micrographs[0]).copy()
    image[5, 7] = np.nan
    bad = write_mrc(tmp_path / "holey.mrc", image)
    assert main(["rank", str(tiny_run.run), "-i", str(bad), "--draws", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holey.mrc" in err[0] and "NaN" in err[0], err
    out = tmp_path / "rep"
    assert main(["evaluate", str(tiny_run.run), "-o", str(out), "--residual", str(bad),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holey.mrc" in err[0] and "NaN" in err[0], err
    assert not out.exists()



def test_an_output_of_denoise_given_to_residual_is_refused_as_denoise_refuses_it(tiny_run,
                                                                                tmp_path, capsys):
    """--residual is of what denoise gives: an output of denoise among its micrographs (its MRC
    label says so) is refused, naming it, as denoise refuses it (it had been taken as a raw
    micrograph, with no word), without the --permissive evaluate does not have."""
    import mrcfile

    from cryostream.io.mrc import write_micrograph

    done = tmp_path / "den" / "sim_0000.mrc"
    done.parent.mkdir()
    write_micrograph(done, mrcfile.read(tiny_run.sim.micrographs[0]), 0.6575,
                     history="cryostream denoise run")
    out = tmp_path / "rep"
    assert main(["evaluate", str(tiny_run.run), "-o", str(out), "--residual", str(done),
                 str(tiny_run.sim.micrographs[1]), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{done}: written by cryostream denoise" in err[0], err
    assert "--permissive" not in err[0] and err[0].endswith(
        "give its raw micrograph instead (no sim_0000.json beside it names its own) (leave it "
        "out of --residual)"), err
    assert not out.exists()


def test_a_bad_residual_micrograph_is_not_sent_to_a_missing_permissive(tiny_run, tmp_path, capsys):
    """evaluate has no --permissive: a constant or NaN micrograph given to --residual is
    refused with the advice to leave it out, not to pass an option evaluate rejects."""
    import numpy as np

    from tests.conftest import write_mrc

    holey = np.random.default_rng(0).poisson(20, (160, 128)).astype(np.float32)
    holey[5, 7] = np.nan
    for name, image in (("blank.mrc", np.zeros((160, 128), np.float32)), ("holey.mrc", holey)):
        bad = write_mrc(tmp_path / name, image)
        out = tmp_path / f"rep_{name}"
        assert main(["evaluate", str(tiny_run.run), "-o", str(out), "--residual", str(bad),
                     "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and name in err[0], err
        assert "--permissive" not in err[0] and "leave it out of --residual" in err[0], err
        assert not out.exists()



def test_a_store_whose_test_split_the_run_trained_on_is_refused(tiny_run, tmp_path, capsys):
    """Another store of the run's micrographs, split by another seed: its test split held a
    micrograph the run trained on, and evaluate scored it as 'held-out patches' (exit 0, a
    flattering PSNR); it is refused, nothing written. The run's own store is scored."""
    from cryostream.split import split_micrographs

    names = [Path(m).stem for m in tiny_run.sim.micrographs]
    trained = {n for n, s in _split_of(tiny_run.store).items() if s == "train"}
    seed = next(s for s in range(1, 100) if any(n in trained for n, t in zip(
        names, split_micrographs(names, 0.34, s), strict=True) if t == "test"))
    other = prepare(tiny_run.sim.micrographs, tmp_path / "other.h5",
                    PrepareConfig(patch_size=32, stride=32, test_fraction=0.34, seed=seed)).output
    out = tmp_path / "rep"
    assert main(["evaluate", str(tiny_run.run), str(other), "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other.h5" in err[0] and "the run's training micrographs" in err[0]
    assert not out.exists()
    assert main(["evaluate", str(tiny_run.run), str(tiny_run.store), "-o", str(out), "--quiet",
                 "--patches", "2"]) == 0

@pytest.mark.slow
def test_verbose_and_quiet(tiny_run, tmp_path, capsys):
    """-v adds each run's findings to rank's notes; --quiet leaves stderr empty."""
    mic = str(tiny_run.sim.micrographs[0])
    assert main(["rank", str(tiny_run.run), "-i", mic, "--draws", "1", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["rank", str(tiny_run.run), "-i", mic, "--draws", "1", "-v"]) == 0
    assert f"cryostream: run on {Path(mic).stem}: too small for a CTF fit" in capsys.readouterr().err
    assert main(["evaluate", str(tiny_run.run), "-o", str(tmp_path / "rep"), "--quiet",
                 "--truth", str(tiny_run.sim.root), "--tile", "64"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.startswith(f"wrote {tmp_path / 'rep'}/report.md")


def test_a_run_is_scored_on_a_store_whose_matched_noise_is_drawn_on_the_device(tiny_run, tmp_path):
    """The store `cryostream fit` makes (matched noise drawn on the device): its test split is
    scored with each micrograph's own noise (this crashed with a traceback)."""
    import numpy as np

    from cryostream import NoiseConfig
    from cryostream.evaluate.numbers import compare_on_store

    store = prepare(tiny_run.sim.micrographs, tmp_path / "matched.h5", PrepareConfig(
        patch_size=32, stride=32, test_fraction=0.34,
        noise=NoiseConfig(model="matched", alpha=1.0, mode="on-device"))).output
    scores = compare_on_store(tiny_run.run, store, patches=8)
    assert scores["patches"] == 8
    assert all(np.isfinite(scores[k]) for k in ("noisy_psnr", "gaussian_psnr", "model_psnr"))
    assert scores["noisy_psnr"] < scores["gaussian_psnr"]  # noise was added: a filter helps


def test_an_exported_model_is_scored_on_a_store_as_its_run_is(tiny_run, tmp_path):
    """``evaluate MODEL.npz STORE`` (and ``evaluate general STORE``) had refused the model as
    'not a run folder'; an exported run scores as the run does."""
    from cryostream.evaluate.numbers import compare_on_store
    from cryostream.models.export import export_params
    from cryostream.runs import load_model

    model, record = load_model(tiny_run.run)
    npz = export_params(model, record, tmp_path / "tiny.npz")
    assert compare_on_store(npz, tiny_run.store, patches=8) == pytest.approx(
        compare_on_store(tiny_run.run, tiny_run.store, patches=8), abs=1e-4)


def test_a_recorrupted_run_under_its_noisy_input_on_the_test_split_is_explained():
    """A run that estimates the clean micrograph scores under the noisy input against the
    micrograph itself; the report says why (and how to judge it) under the table."""
    from cryostream.evaluate.report import test_split_section

    numbers = {"patches": 9, "noisy_psnr": 16.26, "gaussian_psnr": 18.58, "gaussian_sigma": 0.5,
               "model_psnr": 16.15}
    said = "\n".join(test_split_section(numbers, recorrupt=True))
    assert "scores under the noisy input by design" in said and "`--residual`" in said
    assert "by design" not in "\n".join(test_split_section(numbers))


def test_the_test_split_section_speaks_of_the_store_not_of_a_plan_users_never_saw():
    """The report's heading for a store's test split spoke of 'the reference plan's noise', a
    term no user guide or help text defines; it names the store's added noise instead."""
    from cryostream.evaluate.report import test_split_section

    numbers = {"patches": 9, "noisy_psnr": 16.26, "gaussian_psnr": 18.58, "gaussian_sigma": 0.5,
               "model_psnr": 16.15}
    for recorrupt in (False, True):
        said = " ".join("\n".join(test_split_section(numbers, recorrupt=recorrupt)).split())
        assert "reference plan" not in said
        assert said.startswith("## Test split, with the store's added noise")


def test_the_residual_check_is_of_what_denoise_writes(tiny_run, tmp_path):
    """The residual check, offered as the test of what `denoise` removed, had denoised with the
    network alone (and the correction). It checks `denoise`'s default output now: the same
    computed there as read from where `denoise` wrote it (--denoised), which is what it reads."""
    import mrcfile

    from cryostream.config import DenoiseConfig
    from cryostream.denoise.outputs import recipe_steps
    from cryostream.runs import load_record

    mic = tiny_run.sim.micrographs[0]
    den = tmp_path / "den"
    assert main(["denoise", str(tiny_run.run), str(mic), "-o", str(den), "--tile", "56",
                 "--quiet"]) == 0
    steps = " + ".join(recipe_steps(DenoiseConfig(tile=56).for_run(load_record(tiny_run.run))))
    assert "ensemble" in steps
    rows = []
    for extra in ([], ["--denoised", str(den)], ["--denoised", str(den)]):
        if len(rows) == 2:  # what denoise wrote, emptied: the residual is the micrograph
            with mrcfile.open(den / mic.name, "r+") as f:
                f.data[:] = 0
        out = tmp_path / f"rep{len(rows)}"
        assert main(["evaluate", str(tiny_run.run), "-o", str(out), "--tile", "56", "--residual",
                     str(mic), "--quiet", *extra]) == 0
        assert f"what `denoise` writes by default ({steps})" in (out / "report.md").read_text()
        rows.append(json.loads((out / "report.json").read_text())["residual"][0])
    assert main(["evaluate", str(tiny_run.run), "-o", str(tmp_path / "rep9"), "--residual",
                 str(mic), "--denoised", str(tmp_path / "no_such")]) == 2  # a typo: said, not
    assert not (tmp_path / "rep9").exists()  # quietly denoised again
    numbers = [{k: v for k, v in row.items() if isinstance(v, float)} for row in rows]
    assert numbers[1] == pytest.approx(numbers[0], rel=1e-4)
    assert rows[2]["correlation_with_lowpass"] == pytest.approx(rows[2]["correlation_if_everything"])
    assert rows[2]["correlation_with_lowpass"] > 2 * rows[0]["correlation_with_lowpass"]
    # outputs denoised from a STAR file (its pixel size and defocus in their records) are read
    star = tmp_path / "den_star"
    from cryostream.ctf import CTFFallbackWarning

    with pytest.warns(CTFFallbackWarning):  # 160 × 128 px: too few rings for its defocus
        assert main(["denoise", str(tiny_run.run), str(tiny_run.sim.micrographs_star), "-o",
                     str(star), "--tile", "56", "--quiet"]) == 0
    assert json.loads((star / f"{mic.stem}.json").read_text())["given"]["defocus"]
    with mrcfile.open(star / mic.name, "r+") as f:
        f.data[:] = 0
    assert main(["evaluate", str(tiny_run.run), "-o", str(tmp_path / "rep3"), "--tile", "56",
                 "--residual", str(mic), "--quiet", "--denoised", str(star)]) == 0
    read = json.loads((tmp_path / "rep3" / "report.json").read_text())["residual"][0]
    assert read["correlation_with_lowpass"] == pytest.approx(read["correlation_if_everything"])


def test_the_residual_check_gives_each_micrograph_a_verdict(tiny_run, tmp_path, capsys):
    """``evaluate --residual`` gave the residual's correlation beside pure noise's and how far
    toward the whole micrograph's it was, but no verdict: a scientist could not tell whether
    3 % is fine. Each micrograph now has one, "specimen in the residual" where the correlation
    stands more than 3 standard deviations of pure noise's above it, else "noise-like": in
    report.json (``verdict``, with the standard deviation and how many of them above), the
    table, the line under it and the line printed. What denoise wrote, then that output made
    the micrograph's mean (all of the specimen taken out: specimen in the residual)."""
    import mrcfile

    mic = tiny_run.sim.micrographs[1]
    den = tmp_path / "den"
    assert main(["denoise", str(tiny_run.run), str(mic), "-o", str(den), "--tile", "56",
                 "--quiet"]) == 0
    capsys.readouterr()
    rows = []
    for flattened in (False, True):
        if flattened:
            with mrcfile.open(den / mic.name, "r+") as f:
                f.data[:] = f.data.mean()
        out = tmp_path / f"rep{len(rows)}"
        assert main(["evaluate", str(tiny_run.run), "-o", str(out), "--tile", "56", "--residual",
                     str(mic), "--denoised", str(den), "--quiet"]) == 0
        printed = capsys.readouterr().out
        row = json.loads((out / "report.json").read_text())["residual"][0]
        sd = row["correlation_sd_if_pure_noise"]
        above = (row["correlation_with_lowpass"] - row["correlation_if_pure_noise"]) / sd
        assert sd > 0 and row["sd_above_pure_noise"] == pytest.approx(above)
        assert row["verdict"] == ("specimen in the residual" if above > 3 else "noise-like")
        report = (out / "report.md").read_text()
        assert f"± {sd:.4f}) | {row['correlation_if_everything']:.3f} | {row['verdict']} |" in report
        assert f"- {mic.name}: {row['verdict']}: the residual's correlation" in report
        assert f"  residual of {mic.name}: {row['verdict']}: the residual's correlation" in printed
        rows.append(row)
    assert rows[1]["verdict"] == "specimen in the residual", rows[1]["reading"]
    assert rows[1]["sd_above_pure_noise"] > 3


def test_an_output_made_with_other_options_is_checked_as_written(tiny_run, tmp_path, capsys,
                                                                 notes):
    """``evaluate --residual M --denoised FOLDER`` of an output ``denoise --no-ensemble`` wrote
    had said 'not this model's default output' and denoised M again by the default recipe
    (5–18 minutes a full-size micrograph on a CPU). The output of this model and micrograph
    is checked as written now: its residual is the micrograph − that file, and the report
    (report.md's top line and its line under the table, report.json, the line printed) names
    the options it was made with, so its figures are not taken for the default's."""
    import mrcfile

    from cryostream.config import DenoiseConfig
    from cryostream.denoise.outputs import recipe_steps
    from cryostream.evaluate.numbers import method_noise
    from cryostream.runs import load_record

    mic, den, out = tiny_run.sim.micrographs[0], tmp_path / "den", tmp_path / "rep"
    assert main(["denoise", str(tiny_run.run), str(mic), "-o", str(den), "--no-ensemble",
                 "--quiet"]) == 0
    notes.clear()
    assert main(["evaluate", str(tiny_run.run), "-o", str(out), "--residual", str(mic),
                 "--denoised", str(den)]) == 0
    assert not [n for n in notes if "denoised here" in n or "network pass" in n], notes
    assert [n for n in notes if n.startswith(f"{den / mic.name}: made with ensemble off, not on "
                                             "(n2n_correction + ctf_gain), not as denoise does by "
                                             "default: its residual is checked as denoise wrote "
                                             "it")], notes
    row = json.loads((out / "report.json").read_text())["residual"][0]
    record = load_record(tiny_run.run)
    steps = recipe_steps(DenoiseConfig(ensemble=False).for_run(record))
    assert row["made_with"] == "ensemble off, not on" and row["recipe"] == steps
    assert row["denoised_output"] == str(den / mic.name)
    raw = mrcfile.read(mic).astype(np.float32)  # the residual: the micrograph − that file
    scale = np.float32(np.percentile(raw, record.prepare.percentile))
    mine = method_noise(raw / scale, mrcfile.read(den / mic.name) / scale, 0.6575)
    for key in ("spectrum_ratio_mean", "correlation_with_lowpass", "correlation_if_everything"):
        assert row[key] == pytest.approx(mine[key], rel=1e-4), key
    made = (f" (as denoise wrote it, {den / mic.name}, made with ensemble off, not on; its steps "
            f"{' + '.join(steps)})")
    text = (out / "report.md").read_text()
    default = " + ".join(recipe_steps(DenoiseConfig().for_run(record)))
    assert (f"Micrograph − what `denoise` wrote in `{den}` (--denoised) with other options, "
            f"checked as it is (each one's options are under the table), not what `denoise` "
            f"writes by default ({default}):") in text
    assert f"- {mic.name}{made}: {row['reading']}" in text
    assert f"  residual of {mic.name}{made}: {row['reading']}" in capsys.readouterr().out


def test_an_output_of_another_model_is_denoised_again_with_why(tiny_run, tmp_path, notes):
    """Beside outputs checked as written, the residual check still denoises a micrograph again
    where its output in --denoised is not of this model (here the run exported: another
    model file), saying why; the report names no options for it: it checked the default."""
    from cryostream.models.export import export_params
    from cryostream.runs import load_model

    mic, den, out = tiny_run.sim.micrographs[0], tmp_path / "den", tmp_path / "rep"
    npz = export_params(*load_model(tiny_run.run), tmp_path / "tiny.npz")
    assert main(["denoise", "-m", str(npz), str(mic), "-o", str(den), "--raw", "--quiet"]) == 0
    notes.clear()
    assert main(["evaluate", str(tiny_run.run), "-o", str(out), "--residual", str(mic),
                 "--denoised", str(den)]) == 0
    said = [n for n in notes if "denoised here" in n]
    assert len(said) == 1 and said[0].startswith(
        f"{den / mic.name}: not this model's output of {mic} as it is now (made with the model "
        f"{npz};"), said
    assert said[0].endswith(f"; {mic.name} is denoised here instead, as denoise does by default "
                            "(the report scores the default)")
    row = json.loads((out / "report.json").read_text())["residual"][0]
    assert row["made_with"] is None and row["denoised_output"] is None
    assert row["recipe"][0] == "ensemble"
    assert "with other options" not in (out / "report.md").read_text()


def test_an_output_made_with_other_options_is_scored_against_the_truth_as_written(
        tiny_run, tmp_path, capsys, notes):
    """``evaluate --truth SIM --denoised FOLDER`` of an output ``denoise --no-ensemble --tile
    56`` wrote had said 'not this model's default output' and denoised the micrograph again by
    the default recipe (minutes a full-size one on a CPU), scored in the row 'model, default
    recipe'. It is scored as written now (that file against the truth), in a row of its own
    that names its options, its record in report.json giving its file and steps, the line
    under the table and the line printed naming it. The option evaluate left to cryostream
    reads 'tile 56, not the default' (it read 'tile 56, not unset'), in the residual check
    too."""
    import mrcfile

    from cryostream.config import DenoiseConfig
    from cryostream.denoise.outputs import recipe_steps
    from cryostream.evaluate.numbers import DEFAULT_RECIPE
    from cryostream.metrics import psnr, ssim
    from cryostream.runs import load_record

    sim = cryostream.simulate(tmp_path / "sim", 1, shape=(160, 128), seed=12)
    mic, den, out = sim.micrographs[0], tmp_path / "den", tmp_path / "rep"
    assert main(["denoise", str(tiny_run.run), str(mic), "-o", str(den), "--no-ensemble",
                 "--tile", "56", "--quiet"]) == 0
    notes.clear()
    assert main(["evaluate", str(tiny_run.run), "--truth", str(sim.root), "--denoised", str(den),
                 "-o", str(out)]) == 0
    record = load_record(tiny_run.run)
    steps = recipe_steps(DenoiseConfig(ensemble=False, tile=56).for_run(record))
    options = "ensemble off, not on; tile 56, not the default"
    assert not [n for n in notes if "denoised here" in n], notes
    assert [n for n in notes if n.startswith(f"{den / mic.name}: made with {options} "
                                             f"({' + '.join(steps)}), not as denoise does by "
                                             "default: it is scored as denoise wrote it, in a "
                                             "row of the report's table that names its options")]
    report = json.loads((out / "report.json").read_text())
    name = f"model, as written ({options})"
    row = report["simulated"][0]
    assert DEFAULT_RECIPE not in row and DEFAULT_RECIPE not in report["truth_mean"]
    entry = row[name]
    assert (entry["made_with"], entry["recipe"], entry["denoised_output"]) == (
        options, steps, str(den / mic.name))
    noisy = mrcfile.read(mic).astype(np.float32)  # scored: that file against the truth
    scale = np.float32(np.percentile(noisy, record.prepare.percentile))
    clean = mrcfile.read(sim.root / "truth" / mic.name) / scale
    written = mrcfile.read(den / mic.name) / scale
    assert entry["psnr"] == pytest.approx(psnr(written, clean), rel=1e-5)
    assert entry["ssim"] == pytest.approx(ssim(written, clean), rel=1e-4)
    text = (out / "report.md").read_text()
    cell = f"{entry['psnr']:.2f} / {entry['ssim']:.3f}"
    assert f"| {name} | {cell} | {cell} |" in text
    assert (f"What `denoise` wrote in `{den}` (--denoised) with other options than the default "
            "is scored as it is, in a row of its own that names them") in text
    assert (f"- {mic.name}, in the row `{name}` (as denoise wrote it, {den / mic.name}, made "
            f"with {options}; its steps {' + '.join(steps)})") in text
    assert "unset" not in text
    assert f" | {name} {entry['psnr']:.2f} dB; best in the table: " in capsys.readouterr().out
    # the residual check names it alike
    assert main(["evaluate", str(tiny_run.run), "--residual", str(mic), "--denoised",
                 str(den), "-o", str(tmp_path / "res"), "--quiet"]) == 0
    assert json.loads((tmp_path / "res" / "report.json").read_text())["residual"][0][
        "made_with"] == options


@pytest.mark.slow
def test_truth_outputs_of_another_model_or_a_changed_micrograph_are_denoised_again_with_why(
        tiny_run, tmp_path, capsys, notes):
    """Beside an output scored as written, the truth section still denoises a micrograph again
    where its output in --denoised is of another model (the run exported: another model file)
    or of the micrograph before it changed, each with a note saying why (it said 'not this
    model's default output of …', not why). The table keeps them apart: the default's row has
    those denoised here, the row of the output as written its micrograph alone ('—' in the
    others' cells), each mean over its own; the line printed says of how many (18 s: two
    micrographs denoised by default)."""
    import os

    from cryostream.evaluate.numbers import DEFAULT_RECIPE
    from cryostream.models.export import export_params
    from cryostream.runs import load_model

    sim = cryostream.simulate(tmp_path / "sim", 3, shape=(160, 128), seed=13)
    other, touched, mine = sorted(sim.micrographs)
    den, out = tmp_path / "den", tmp_path / "rep"
    npz = export_params(*load_model(tiny_run.run), tmp_path / "tiny.npz")
    assert main(["denoise", "-m", str(npz), str(other), "-o", str(tmp_path / "by_npz"), "--raw",
                 "--quiet"]) == 0
    assert main(["denoise", str(tiny_run.run), str(touched), "-o", str(den), "--quiet"]) == 0
    assert main(["denoise", str(tiny_run.run), str(mine), "-o", str(tmp_path / "raw"), "--raw",
                 "--quiet"]) == 0
    for folder, made in ((tmp_path / "by_npz", other), (tmp_path / "raw", mine)):
        for name in (made.name, f"{made.stem}.json"):  # all three outputs in one folder
            shutil.copy(folder / name, den / name)
    stamp = touched.stat()
    os.utime(touched, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))
    notes.clear()
    assert main(["evaluate", str(tiny_run.run), "--truth", str(sim.root), "--micrographs", "3",
                 "--denoised", str(den), "-o", str(out)]) == 0
    said = [n for n in notes if "denoised here" in n]
    assert len(said) == 2 and said[0].startswith(
        f"{den / other.name}: not this model's output of {other} as it is now (made with the "
        f"model {npz};"), said
    assert said[1] == (f"{den / touched.name}: not this model's output of {touched} as it is now "
                       f"(its micrograph changed since it was made); {touched.name} is denoised "
                       "here instead, as denoise does by default (the report scores the default)")
    report = json.loads((out / "report.json").read_text())
    rows = report["simulated"]
    assert [(r[DEFAULT_RECIPE]["made_with"], r[DEFAULT_RECIPE]["denoised_output"])
            for r in rows[:2]] == [(None, None)] * 2
    raw = next(n for n in rows[2] if n.startswith("model, as written ("))
    assert rows[2][raw]["made_with"] in raw and DEFAULT_RECIPE not in rows[2]
    assert not [n for n in (*rows[0], *rows[1]) if n.startswith("model, as written")]
    default = report["truth_mean"][DEFAULT_RECIPE]
    assert default["psnr"] == pytest.approx(np.mean([r[DEFAULT_RECIPE]["psnr"]
                                                     for r in rows[:2]]))
    assert report["truth_mean"][raw]["psnr"] == rows[2][raw]["psnr"]
    text = (out / "report.md").read_text()
    cells = [f"{r[DEFAULT_RECIPE]['psnr']:.2f} / {r[DEFAULT_RECIPE]['ssim']:.3f}" for r in rows[:2]]
    assert (f"| {DEFAULT_RECIPE} | {cells[0]} | {cells[1]} | — | {default['psnr']:.2f} / "
            f"{default['ssim']:.3f} |") in text
    assert f"| {raw} | — | — | {rows[2][raw]['psnr']:.2f} / " in text
    assert f"- {mine.name}, in the row `{raw}` (as denoise wrote it, {den / mine.name}, " in text
    printed = capsys.readouterr().out
    assert f" | {DEFAULT_RECIPE} {default['psnr']:.2f} (2 of them) | " in printed
    assert f" | {raw} {rows[2][raw]['psnr']:.2f} (1 of them) dB; " in printed


def test_the_residual_report_speaks_in_angstrom(tiny_run, tmp_path, capsys):
    """``evaluate --residual``: the report gave the spectra's band as '0.05–0.5 cycles/px' beside
    its '20 Å low-pass', and its figure in 1/Å. The band is now in Å by each micrograph's pixel
    size, in the table (with the pixel size), the reading under it, the line printed, the
    progress note and report.json (``band_angstrom``), and the figures' axes read resolution in
    Å; cycles/px are left only for a micrograph whose pixel size nothing gives."""
    import mrcfile

    from cryostream.io.pixel_sizes import PixelSizeWarning

    mic = tiny_run.sim.micrographs[2]
    nopix = write_mrc(tmp_path / "nopix.mrc", mrcfile.read(mic), pixel_size=0.0)
    out = tmp_path / "rep"
    with pytest.warns(PixelSizeWarning, match="nopix.mrc"):
        assert main(["evaluate", str(tiny_run.run), "-o", str(out), "--residual", str(mic),
                     str(nopix)]) == 0
    captured = capsys.readouterr()
    known, unknown = json.loads((out / "report.json").read_text())["residual"]
    assert known["pixel_size_angstrom"] == 0.6575 and known["band_angstrom"] == [13.15, 1.315]
    assert known["lowpass_angstrom"] == 20 and "band_cycles_per_px" not in known
    assert unknown["pixel_size_angstrom"] is None and unknown["band_cycles_per_px"] == [0.05, 0.5]
    assert unknown["lowpass_px"] == 20 and "band_angstrom" not in unknown
    assert "of the noise's at 13.2–1.31 Å (1 is right)" in known["reading"]
    assert "cycles/px" not in known["reading"] and "20 Å low-pass" in known["reading"]
    assert "at 0.05–0.5 cycles/px (1 is right)" in unknown["reading"]
    assert "20-pixel low-pass" in unknown["reading"]
    text = (out / "report.md").read_text()
    assert f"| {mic.name} | 0.6575 | 13.2–1.31 Å | {known['spectrum_ratio_mean']:.3f} |" in text
    assert f"| nopix.mrc | none known | 0.05–0.5 cycles/px | {unknown['spectrum_ratio_mean']:.3f} |" in text
    assert "1/Å" not in text
    assert f"  residual of {mic.name}: {known['reading']}" in captured.out
    assert f"spectrum ratio {known['spectrum_ratio_mean']:.3f} at 13.2–1.31 Å" in captured.err
    # the only report of known pixel sizes says no cycles/px at all
    assert main(["evaluate", str(tiny_run.run), "-o", str(tmp_path / "rep2"), "--residual",
                 str(mic), "--quiet"]) == 0
    assert "cycles/px" not in (tmp_path / "rep2" / "report.md").read_text()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cryostream.evaluate.figures import resolution_axis

    fig, ax = plt.subplots()  # the figures' axes: resolution in Å
    resolution_axis(ax, np.arange(257) / 512 / 0.6575)
    assert ax.get_xlabel() == "resolution (Å)"
    assert [t.get_text() for t in ax.get_xticklabels()][:3] == ["1.4", "1.6", "2"]
    plt.close(fig)


def test_residual_micrographs_named_with_their_half_sums_are_checked_once(tiny_run, tmp_path,
                                                                          notes):
    """``evaluate --residual Data/*.mrc`` unquoted over a motion correction folder: the halves
    beside their full sums are left out, as denoise leaves them out (each micrograph was checked
    three times), also where a file without a pixel size has the inputs taken one by one."""
    import mrcfile

    from cryostream.io.pixel_sizes import PixelSizeWarning

    data = tmp_path / "Data"
    data.mkdir()
    mic = tiny_run.sim.micrographs[2]
    for suffix in ("", "_EVN", "_ODD"):
        shutil.copy(mic, data / f"{mic.stem}{suffix}.mrc")
    named = [str(p) for p in sorted(data.glob("*.mrc"))]
    out = tmp_path / "rep"
    assert main(["evaluate", str(tiny_run.run), "-o", str(out), "--residual", *named]) == 0
    rows = json.loads((out / "report.json").read_text())["residual"]
    assert [Path(r["micrograph"]).name for r in rows] == [mic.name]
    assert [n for n in notes if "left out 2 even/odd half-sums beside their full sums" in n]
    nopix = write_mrc(tmp_path / "nopix.mrc", mrcfile.read(mic), pixel_size=0.0)
    with pytest.warns(PixelSizeWarning, match="nopix.mrc"):
        assert main(["evaluate", str(tiny_run.run), "-o", str(tmp_path / "rep2"), "--residual",
                     *named, str(nopix), "--quiet"]) == 0
    rows = json.loads((tmp_path / "rep2" / "report.json").read_text())["residual"]
    assert [Path(r["micrograph"]).name for r in rows] == [mic.name, "nopix.mrc"]


def test_truth_from_a_simulation_stopped_short_is_refused(tiny_run, tmp_path, capsys):
    """`evaluate --truth SIM` of a set whose simulate was stopped by Ctrl-C scored the
    micrographs made so far as the set. Its simulate.unfinished now makes evaluate refuse it in
    one line, saying to run the same simulate command again, before any report is written."""
    from tests.faults_support import assert_user_error, cli, simulate_stopped

    sim, out = tmp_path / "sim", tmp_path / "report"
    simulate_stopped(sim)
    written = len(list((sim / "micrographs").glob("sim_*.mrc")))
    line = assert_user_error(cli(capsys, "evaluate", tiny_run.run, "-o", out, "--truth", sim))
    assert line == (
        f"cryostream evaluate: error: --truth {sim}: cryostream simulate did not finish this set "
        f"({written} of 500 micrographs written, no simulate.json; simulate.unfinished says so), "
        "so it is only part of the set; run the same cryostream simulate command again, which "
        "simulates the whole set into it (the same micrographs again for the same seed), then "
        "give it again")
    assert not out.exists()


def test_truth_micrographs_of_no_pixel_size_are_scored_in_cycles_per_pixel(tiny_run, tmp_path,
                                                                           capsys):
    """``evaluate --truth`` of a set whose micrographs' headers give no pixel size scored them at
    1 Å per pixel without a word, and its FRC and spectra read as Å. Now a PixelSizeWarning
    names the file and --pixel-size, the report says cycles/px (``truth_pixel_size_angstrom``
    null in report.json); --pixel-size gives the pixel size of those, and is refused (one line,
    nothing written) where every header gives one and no --residual needs it."""
    import mrcfile

    from cryostream.io.pixel_sizes import PixelSizeWarning

    sim = cryostream.simulate(tmp_path / "sim", 1, shape=(160, 128), seed=11)
    given = [str(tiny_run.run), "--truth", str(sim.root), "--tile", "56", "--quiet"]
    assert main(["evaluate", *given, "-o", str(tmp_path / "refused"), "--pixel-size", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "0.6575 Å in" in err[0] and err[0].endswith("leave it out"), err
    assert not (tmp_path / "refused").exists()
    mic = sim.micrographs[0]
    write_mrc(mic, mrcfile.read(mic), pixel_size=0.0)
    out = tmp_path / "rep"
    with pytest.warns(PixelSizeWarning, match=f"{mic}: the header leaves the pixel size unset "
                      r"\(0 Å\); it is scored at 1 Å per pixel, its FRC and power spectra in "
                      r"cycles/px \(the report's figures\): pass --pixel-size Å"):
        assert main(["evaluate", *given, "-o", str(out)]) == 0
    assert json.loads((out / "report.json").read_text())["truth_pixel_size_angstrom"] == {
        mic.name: None}
    assert "the FRC and power spectra are against cycles/px" in (out / "report.md").read_text()
    out = tmp_path / "rep2"  # given: used for it, and nothing said (warnings are errors)
    assert main(["evaluate", *given, "-o", str(out), "--pixel-size", "0.6575"]) == 0
    assert json.loads((out / "report.json").read_text())["truth_pixel_size_angstrom"] == {
        mic.name: 0.6575}
    assert "cycles/px" not in (out / "report.md").read_text()


def test_a_denoised_output_made_at_another_pixel_size_is_said(tiny_run, tmp_path):
    """``evaluate --residual --denoised --pixel-size`` read an output that denoise made at
    another pixel size (its header's) as this model's default, and checked it at the one typed
    without a word. Now one PixelSizeWarning names the output, both values and the one used;
    the same pixel size as the output's, or none typed over a header that agrees, says nothing."""
    from cryostream.io.pixel_sizes import PixelSizeWarning

    mic = tiny_run.sim.micrographs[0]
    den = tmp_path / "den"
    assert main(["denoise", str(tiny_run.run), str(mic), "-o", str(den), "--tile", "56",
                 "--quiet"]) == 0  # at its header's 0.6575 Å
    given = [str(tiny_run.run), "--tile", "56", "--residual", str(mic), "--denoised", str(den),
             "--quiet"]
    with pytest.warns(PixelSizeWarning) as said:
        assert main(["evaluate", *given, "-o", str(tmp_path / "rep"), "--pixel-size", "1"]) == 0
    ours = [str(w.message) for w in said if "denoise made it" in str(w.message)]
    assert ours == [f"{den / mic.name}: its MRC header gives a pixel size of 0.6575 Å (denoise "
                    "made it at that size), 1.52× the 1 Å from --pixel-size; 1 Å is used for the "
                    "residual check (its band and low-pass), and the output is read as it is: "
                    "check it (if 0.6575 Å is right, pass --pixel-size 0.6575; otherwise denoise "
                    "again with the right pixel size, or leave out --denoised to have it "
                    "denoised here)"], ours
    row = json.loads((tmp_path / "rep" / "report.json").read_text())["residual"][0]
    assert row["pixel_size_angstrom"] == 1.0
    for extra in ([], ["--pixel-size", "0.6575"]):  # warnings are errors here
        assert main(["evaluate", *given, "-o", str(tmp_path / "rep2"), *extra]) == 0


def test_truth_scored_beside_outputs_or_truths_of_another_pixel_size_is_said(tiny_run, tmp_path):
    """``evaluate --truth --denoised``: an output denoise made at another pixel size than its
    micrograph's header, and a truth whose header gives another than its micrograph's, were
    passed over. Each is now one PixelSizeWarning naming the file, both values and the one
    used."""
    import mrcfile

    from cryostream.io.pixel_sizes import PixelSizeWarning

    sim = cryostream.simulate(tmp_path / "sim", 1, shape=(160, 128), seed=12)
    mic, truth = sim.micrographs[0], sim.root / "truth" / sim.micrographs[0].name
    write_mrc(truth, mrcfile.read(truth), pixel_size=1.0)
    den = tmp_path / "den"
    assert main(["denoise", str(tiny_run.run), str(mic), "-o", str(den), "--tile", "56",
                 "--pixel-size", "1", "--quiet"]) == 0
    with pytest.warns(PixelSizeWarning) as said:
        assert main(["evaluate", str(tiny_run.run), "--truth", str(sim.root), "--tile", "56",
                     "--denoised", str(den), "-o", str(tmp_path / "rep"), "--quiet"]) == 0
    said = sorted(str(w.message) for w in said)
    assert said == [
        f"{den / mic.name}: its MRC header gives a pixel size of 1 Å (denoise made it at that "
        f"size), 0.657× the 0.6575 Å from the MRC header of {mic.name}; 0.6575 Å is used for the "
        "FRC and spectra (PSNR and SSIM need none), and the output is read as it is: check it "
        f"(if 1 Å is right, correct the MRC header of {mic.name}; "
        "otherwise denoise again with the right pixel size, or leave out --denoised to have it "
        "denoised here)",
        f"{truth}: the truth's header gives a pixel size of 1 Å, its micrograph's 0.6575 Å; the "
        "micrograph's, 0.6575 Å, is used: check the set (the truth and its micrograph are one "
        "sampling)"], said


def test_denoised_given_the_star_file_names_its_folder(tiny_run, tmp_path, capsys):
    """``--denoised External/job010/denoised_micrographs.star`` (the STAR file a RELION user
    has at hand) was refused as 'no such folder', though it is there: the line says it is a
    file and gives the folder to pass instead; nothing is written."""
    out = tmp_path / "External/job010"
    out.mkdir(parents=True)
    star = out / "denoised_micrographs.star"
    star.write_text("data_micrographs\n\nloop_\n_rlnMicrographName #1\nmic0.mrc\n")
    assert main(["evaluate", str(tiny_run.run), "-o", str(tmp_path / "rep"), "--residual",
                 str(tiny_run.sim.micrographs[0]), "--denoised", str(star)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"cryostream evaluate: error: --denoised '{star}': a file, not a "
                   f"folder; give the folder cryostream denoise wrote it in (its -o): "
                   f"--denoised {out}")
    assert not (tmp_path / "rep").exists()


def test_frc_curves_of_several_pixel_sizes_are_averaged_by_their_frequency_in_angstrom(tmp_path):
    """frc.png averages each method's FRC over the micrographs scored against their truth. A
    micrograph at 1 Å per pixel and one at 2 Å have their rings at other frequencies (and
    micrographs of other shapes other counts of rings): they are averaged by frequency in
    1/Å, up to the coarser one's last ring. Ring by ring, on the first micrograph's axis, the
    2 Å one's curve had been drawn at twice its frequencies, and curves of other lengths could
    not be averaged at all (the figure failed)."""
    from cryostream.evaluate.figures import mean_frc, plot_frc
    from cryostream.evaluate.numbers import read_micrograph
    from cryostream.metrics import frc

    def physical(frequency):  # one FRC curve of the frequency in 1/Å, whatever the pixel size
        return np.exp(-frequency / 0.05)

    rng = np.random.default_rng(7)
    pairs = []
    for shape, pixel in (((256, 256), 1.0), ((160, 128), 2.0)):
        path = write_mrc(tmp_path / f"{pixel:g}A.mrc", rng.normal(size=shape).astype(np.float32),
                         pixel)
        image, read = read_micrograph(path)
        frequency, _ = frc(image, image + rng.normal(size=shape), read)
        pairs.append((frequency, physical(frequency)))
    axis, mean = mean_frc(pairs)
    assert axis[0] == pytest.approx(pairs[1][0][0]) and axis[-1] == pytest.approx(pairs[1][0][-1])
    assert len(axis) == np.count_nonzero((pairs[0][0] >= axis[0]) & (pairs[0][0] <= axis[-1]))
    np.testing.assert_allclose(mean, physical(axis), atol=1e-3)  # linear interpolation's error
    # curves on one axis: their plain mean, ring by ring
    same_axis, same_mean = mean_frc([pairs[0], (pairs[0][0], 0.5 * pairs[0][1])])
    np.testing.assert_array_equal(same_axis, pairs[0][0])
    np.testing.assert_allclose(same_mean, 0.75 * pairs[0][1])
    plot_frc(tmp_path / "frc.png", {"noisy": pairs, "model": pairs[::-1]})
    assert (tmp_path / "frc.png").read_bytes()[:4] == b"\x89PNG"


def test_the_residual_checks_note_of_assumed_optics_is_in_evaluates_words(tiny_run, tmp_path,
                                                                          capsys):
    """``evaluate --residual`` of a micrograph with no optics gave denoise's note: "pass
    --voltage, --cs and --amplitude-contrast" (options evaluate does not have) and "the output
    STAR file's optics table" (it writes none). It now says what its residual check assumes,
    that its numbers assume a Krios's optics, and the way it has to give others: a STAR file
    listing the micrograph with its optics, which is taken (a voltage alone: the note names
    only the Cs and amplitude contrast)."""
    import pandas as pd
    import starfile

    mic = shutil.copy(tiny_run.sim.micrographs[0], tmp_path / "a.mrc")
    shutil.copy(mic, tmp_path / "b.mrc")
    star = tmp_path / "micrographs.star"  # RELION 3.0's: the optics in the row, a voltage only
    starfile.write({"micrographs": pd.DataFrame({"rlnMicrographName": ["b.mrc"],
                                                 "rlnVoltage": [200.0]})}, star)
    assert main(["evaluate", str(tiny_run.run), "-o", str(tmp_path / "rep"), "--residual",
                 str(mic), str(star)]) == 0
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if "optics" in line]
    assert said == [
        "cryostream: 1 micrograph has no microscope optics from a STAR file: the residual "
        "check's CTF fit takes 300 kV, Cs 2.7 mm and amplitude contrast 0.1, so its numbers "
        "assume a Krios's optics (nothing to do if they are your microscope's); evaluate has "
        "no option for them: for another microscope, give --residual a STAR file that lists it "
        "with its optics",
        "cryostream: 1 micrograph has no Cs or amplitude contrast from a STAR file (the rest of "
        "its optics given): the residual check's CTF fit takes Cs 2.7 mm and amplitude contrast "
        "0.1, so its numbers assume those (nothing to do if that is your microscope's); "
        "evaluate has no option for them: for another microscope, give --residual a STAR file "
        "that lists it with its optics"], err
    assert "--voltage" not in err and "output STAR" not in err
    rows = json.loads((tmp_path / "rep" / "report.json").read_text())["residual"]
    assert [r["micrograph"] for r in rows] == ["a.mrc", "b.mrc"]


def test_the_best_in_the_table_is_of_the_methods_scored_on_every_micrograph():
    """The printed line's 'best in the table' took the highest mean of any row, one of an
    output scored as written on one micrograph of three among them (its mean over that
    micrograph alone, an easy one here): a mean over other micrographs than the rest's. It is
    the best of the methods scored on every micrograph now; the row as written is still shown,
    with of how many."""
    from cryostream.evaluate.numbers import DEFAULT_RECIPE, GAUSSIAN
    from cryostream.evaluate.report import summary_lines

    written = "model, as written (ensemble off, not on)"

    def scored(psnr, **made):
        return {"psnr": psnr, "ssim": 0.5, **made}

    rows = [{"micrograph": f"m{i}.mrc", "noisy": scored(15.0), GAUSSIAN: scored(20.0 + i),
             **({DEFAULT_RECIPE: scored(22.0 + i, made_with=None)} if i < 2 else
                {written: scored(30.0, made_with="ensemble off, not on")})} for i in range(3)]
    mean = {n: {"psnr": float(np.mean([r[n]["psnr"] for r in rows if n in r])), "ssim": 0.5}
            for n in ("noisy", GAUSSIAN, DEFAULT_RECIPE, written)}
    report = {"simulated": rows, "truth_mean": mean, "truth_micrographs": {"checked": True}}
    line = summary_lines(report, "rep")[1]
    assert line.endswith(f" | {written} 30.00 (1 of them) dB; best in the table: {GAUSSIAN} "
                         "21.00 dB"), line
