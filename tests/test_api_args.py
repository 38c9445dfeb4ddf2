"""Arguments of the wrong kind given from Python: each is a ConfigError naming the argument and
what to give instead, before anything is read or written (a dict for a config, a number for the
inputs, None for the model had failed deep inside with an AttributeError or a TypeError)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import cryostream
from cryostream import ConfigError


@pytest.fixture(scope="module")
def mics(tmp_path_factory):
    return cryostream.simulate(tmp_path_factory.mktemp("args") / "sim", 2, shape=(64, 64),
                               seed=1).micrographs


CASES = {
    "denoise's config as a dict": (
        lambda m, o: cryostream.denoise("general", m, o / "out", config={"ensemble": False}),
        r"^config=\{'ensemble': False\}: a dict, not a DenoiseConfig; give "
        r"cryostream\.DenoiseConfig\(ensemble=False\)$"),
    "prepare's config as a dict": (
        lambda m, o: cryostream.prepare(m, o / "x.h5", {"patch_size": 256}),
        r"^config=.*: a dict, not a PrepareConfig; give cryostream\.PrepareConfig\(patch_size=256\)"),
    "train's config as a dict": (
        lambda m, o: cryostream.train(o / "x.h5", o / "run", {"model": "unet-small"}),
        r"^config=.*: a dict, not a TrainConfig; give cryostream\.TrainConfig\(model='unet-small'\)"),
    "fit's training as a string": (
        lambda m, o: cryostream.fit(m, o / "run", train="unet-small"),
        r"^train='unet-small': a str, not a TrainConfig; give cryostream\.TrainConfig\(\.\.\.\)"),
    "plan's config as a dict": (
        lambda m, o: cryostream.plan(m, config={"patch_size": 32}),
        r"a dict, not a PrepareConfig"),
    "a number for the inputs": (
        lambda m, o: cryostream.denoise("general", 5, o / "out"),
        r"^inputs=5: 5 is not a path; give micrograph files, globs, folders or a STAR file"),
    "a number for prepare's inputs": (
        lambda m, o: cryostream.prepare(5, o / "x.h5"),
        r"^inputs=5: 5 is not a path"),
    "a number for fit's inputs": (
        lambda m, o: cryostream.fit(5, o / "run"),
        r"^inputs=5: 5 is not a path"),
    "None among the inputs": (
        lambda m, o: cryostream.open_micrographs([*m, None]),
        r"None is not a path"),
    "None for the model": (
        lambda m, o: cryostream.denoise(None, m, o / "out"),
        r"^None is not a model: give a run folder, an exported \.npz or the name of a shipped "
        r"model \('general'"),
    "a pixel size in words": (
        lambda m, o: cryostream.open_micrographs(m, pixel_size_angstrom="abc"),
        r"^pixel_size_angstrom='abc': must be a number of Å, e\.g\. 0\.66, not a str$"),
    "a pixel size as text for denoise": (  # it said "must be a pixel size > 0 Å" of 0.66
        lambda m, o: cryostream.denoise("general", m, o / "out", pixel_size_angstrom="0.66"),
        r"^pixel_size_angstrom='0\.66' \(--pixel-size\): must be a number of Å, e\.g\. 0\.66, "
        r"not a str$"),
    "an array for the inputs": (  # its whole printout, twice, in a 3 KB message
        lambda m, o: cryostream.open_micrographs(np.zeros((64, 80), np.float32)),
        r"^inputs: an array of shape \(64, 80\) \(float32\) is not a path; give micrograph "
        r"files, globs, folders or a STAR file; to give an image in memory, write it as an MRC "
        r"file first: cryostream\.io\.mrc\.write_micrograph\(path, image, "
        r"pixel_size_angstrom\)$"),
    # an image for a call that reads files: told to write it (it was told to denoise it)
    "an image for prepare's inputs": (
        lambda m, o: cryostream.prepare(np.zeros((64, 80)), o / "x.h5"),
        r"^inputs: an array of shape \(64, 80\) \(float64\) is not a path; .*; to give an "
        r"image in memory, write it as an MRC file first: cryostream\.io\.mrc\.write_micrograph"),
    "an image for plan's inputs": (
        lambda m, o: cryostream.plan(np.zeros((64, 80))),
        r"^inputs: an array of shape \(64, 80\) \(float64\) is not a path; .*"
        r"cryostream\.io\.mrc\.write_micrograph\(path, image, pixel_size_angstrom\)$"),
    "a list of images for prepare": (
        lambda m, o: cryostream.prepare([np.zeros((64, 80))] * 2, o / "x.h5"),
        r"^inputs: a list holding images in memory \(arrays of shape \(64, 80\)\), not paths; "
        r".*cryostream\.io\.mrc\.write_micrograph"),
    # denoise takes an array: a list of them is one np.stack away (it had printed the arrays)
    "a list of images for denoise": (
        lambda m, o: cryostream.denoise("general", [np.ones((64, 80))] * 2,
                                        pixel_size_angstrom=0.66),
        r"^inputs: a list of 2 images in memory; denoise takes them as one array: "
        r"np\.stack\(images\) makes the stack \(micrograph, y, x\) of images of one shape "
        r"\(pass pixel_size_angstrom=\), or denoise each on its own$"),
    # a movie's frames or a (1, 1, y, x) stack: xarray's ValueError on the dims it was given
    "a 4-D array for denoise": (
        lambda m, o: cryostream.denoise("general", np.ones((1, 1, 64, 64), np.float32),
                                        pixel_size_angstrom=0.66),
        r"^inputs: an array of shape \(1, 1, 64, 64\): pass one micrograph \(y, x\) or a "
        r"stack \(micrograph, y, x\); np\.squeeze drops axes of length 1$"),
    # a complex array: its imaginary part was dropped in the cast to float32, with NumPy's
    # ComplexWarning at most
    "a complex array for denoise": (
        lambda m, o: cryostream.denoise("general", np.ones((64, 64), np.complex64),
                                        pixel_size_angstrom=0.66),
        r"^inputs: a complex array \(complex64\), where micrographs are real images: pass the "
        r"image, its real part \(np\.real\) or its magnitude \(np\.abs\) as the case may be"),
    # an array's pixel size is checked as a file's: text was a TypeError, -0.66 and NaN "no
    # pixel size", 0.001 Å (nm taken for µm) denoised
    "a pixel size as text for an array": (
        lambda m, o: cryostream.denoise("general", np.ones((64, 64)), pixel_size_angstrom="0.66"),
        r"^pixel_size_angstrom='0\.66' \(--pixel-size\): must be a number of Å, e\.g\. 0\.66, "
        r"not a str$"),
    "a negative pixel size for an array": (
        lambda m, o: cryostream.denoise("general", np.ones((64, 64)), pixel_size_angstrom=-0.66),
        r"^pixel_size_angstrom=-0\.66 \(--pixel-size\): must be a pixel size > 0 Å$"),
    "a pixel size out of range for an array": (
        lambda m, o: cryostream.denoise("general", np.ones((64, 64)), pixel_size_angstrom=0.001),
        r"^pixel_size_angstrom=0\.001 \(--pixel-size\): a pixel size of 0\.001 Å is outside "
        r"0\.05–100 Å; pass the micrographs' pixel size in Å$"),
    "an xarray's pixel size attribute as text": (
        lambda m, o: cryostream.denoise("general", xr.DataArray(
            np.ones((64, 64)), attrs={"pixel_size_angstrom": "0.66"})),
        r"^inputs: the xarray's pixel_size_angstrom attribute is '0\.66', not a pixel size; "
        r"pass pixel_size_angstrom= \(Å\)$"),
    "file names in a table of two columns": (
        lambda m, o: cryostream.prepare(np.array([[str(p), str(p)] for p in m]), o / "x.h5"),
        r"^inputs: an array of file names of shape \(2, 2\): give one column of them \(1-D\), "
        r"e\.g\. a STAR table's df\['rlnMicrographName'\]$"),
    # bytes are names too (as HDF5 gives them), but a table of them is not a list either
    "file names as bytes in a table of two columns": (
        lambda m, o: cryostream.plan(np.array([[bytes(p), bytes(p)] for p in m])),
        r"^inputs: an array of file names of shape \(2, 2\): give one column of them \(1-D\)"),
    # pixels of dtype object (a DataFrame's .values) were called "an array of file names"
    "an image of dtype object for denoise": (
        lambda m, o: cryostream.denoise("general", np.zeros((2, 64, 64), dtype=object),
                                        o / "out", pixel_size_angstrom=1.0),
        r"^inputs: an array of shape \(2, 64, 64\) of Python objects \(dtype object; the "
        r"first is 0\), neither file names nor pixels; give file names as one column \(1-D\), "
        r"e\.g\. a STAR table's df\['rlnMicrographName'\], or an image as numbers "
        r"\(np\.asarray\(image, dtype=np\.float32\)\), which cryostream\.denoise takes and "
        r"the calls that read files take written as an MRC file \(cryostream\.io\.mrc\."
        r"write_micrograph\(path, image, pixel_size_angstrom\)\)$"),
    "an image of dtype object for plan": (
        lambda m, o: cryostream.plan(np.ones((64, 80), dtype=object)),
        r"^inputs: an array of shape \(64, 80\) of Python objects \(dtype object; the first "
        r"is 1\), neither file names nor pixels; "),
    "a number for the simulation config's shape": (  # a TypeError from inside
        lambda m, o: cryostream.SimulateConfig(shape=512),
        r"^shape=512: give two numbers, e\.g\. shape=\(1024, 1024\)$"),
    "a number for the simulated shape": (
        lambda m, o: cryostream.simulate(o / "sim", 1, shape=512),
        r"^shape=512: give \(rows, columns\), e\.g\. shape=\(1024, 1024\)$"),
    "a shape beside a simulation config": (
        lambda m, o: cryostream.simulate(o / "sim", 1, shape=(64, 64),
                                         config=cryostream.SimulateConfig()),
        r"^shape=\(64, 64\) beside config=: the config holds them; give "
        r"SimulateConfig\(shape=\(64, 64\), \.\.\.\) alone$"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_argument_of_the_wrong_kind_is_named_and_nothing_is_written(case, mics, tmp_path):
    call, message = CASES[case]
    with pytest.raises(ConfigError, match=message):
        call(mics, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_rank_runs_takes_one_run_as_well_as_a_list(tiny_run):
    """A run folder given alone is one run, not the letters of its path."""
    config = cryostream.DenoiseConfig.raw(tile=64)
    micrograph = tiny_run.sim.micrographs[:1]
    one = cryostream.rank_runs(str(tiny_run.run), micrograph, config=config, draws=1)
    listed = cryostream.rank_runs([tiny_run.run], micrograph, config=config, draws=1)
    assert [r["run"] for r in one] == [r["run"] for r in listed] == [str(tiny_run.run)]
    assert one[0]["score"] == listed[0]["score"]


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_a_start_of_another_network_names_the_options_that_train_it(tiny_run, tmp_path):
    """``TrainConfig(init="general")`` on a network that is not the general model's: the error
    gives the options that make it so (the general model is a residual unet), not a preset
    alone, and leaves no run folder."""
    with pytest.raises(ConfigError) as info:
        cryostream.train(tiny_run.store, tmp_path / "run",
                         cryostream.TrainConfig(init="general", model="unet", steps=1))
    assert str(info.value) == (
        "init='general' (--from): its network is unet, residual, this run's is unet, not "
        "residual; give this run its network (--model unet --residual; Python: "
        "TrainConfig(model='unet', residual=True)), start from a model of the same shape, or "
        "from scratch (--from scratch)")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_each_steps_result_is_taken_where_its_path_is(tiny_run, tmp_path):
    """A script that passes one step's result to the next (the quickstart teaches `.output`
    and `.run`): `train(prepare(...))` was a TypeError from pathlib, `denoise(train(...))` and
    `denoise(..., simulate(...))` errors that printed the whole object. The results of
    prepare, train and fit are their store and run folder, a simulated set its folder (whose
    error names its STAR file)."""
    import dataclasses
    import os

    from tests.conftest import TINY_TRAIN

    sim = cryostream.simulate(tmp_path / "sim", 2, shape=(128, 160), seed=2)
    prepared = cryostream.prepare(sim.micrographs, tmp_path / "data.h5",
                                  cryostream.PrepareConfig(patch_size=32, stride=16))
    assert os.fspath(prepared) == str(prepared.output)
    trained = cryostream.train(prepared, tmp_path / "run", dataclasses.replace(
        TINY_TRAIN, steps=2, eval_every=2, checkpoint_every=2), log=lambda *_: None)
    assert os.fspath(trained) == str(trained.run)
    out = cryostream.denoise(trained, sim.micrographs, tmp_path / "out",
                             config=cryostream.DenoiseConfig.raw())
    assert sorted(p.name for p in (tmp_path / "out").glob("*.mrc")) == [
        p.name for p in sim.micrographs] and out.kept == 0
    with pytest.raises(cryostream.CryostreamError) as info:
        cryostream.denoise(trained, sim, tmp_path / "whole_set")
    assert str(info.value) == (
        f"{sim.root}: folder holds no .mrc files; it holds a set made by cryostream simulate: "
        f"give {sim.micrographs_star} (or the folder {sim.root / 'micrographs'})")
    assert not (tmp_path / "whole_set").exists()


def test_a_prepare_result_given_to_evaluate_is_recorded_as_its_store(tiny_run, tmp_path):
    """``evaluate(train(...), prepare(...), ...)``: the report scored the store, but its
    report.json named it as the whole result object (``"store": "PrepareResult(output=..."``),
    which no later reading of the report could open. It names the store's path."""
    import json

    prepared = cryostream.prepare(tiny_run.sim.micrographs, tmp_path / "data.h5",
                                  cryostream.PrepareConfig(patch_size=32, stride=32,
                                                           test_fraction=0.34))
    report = cryostream.evaluate(tiny_run.result, prepared, tmp_path / "report", patches=4)
    assert report["run"] == str(tiny_run.run) and report["store"] == str(prepared.output)
    assert json.loads((tmp_path / "report" / "report.json").read_text())["store"] == str(
        prepared.output)


def test_a_pixel_size_read_with_numpy_is_taken_as_a_number(tiny_run, tmp_path):
    """A pixel size as NumPy gives it (``mrc.voxel_size.x``: a float32, 0-d) was refused by
    denoise and evaluate as "must be a number of Å, e.g. 0.66, not a ndarray", and by
    open_micrographs as "must be a pixel size > 0 Å", while an array was denoised with it.
    It is a number: taken, and recorded as one."""
    import json

    import mrcfile

    mic = tiny_run.sim.micrographs[0]
    with mrcfile.open(mic, header_only=True) as mrc:
        pixel = mrc.voxel_size.x  # a NumPy float32, 0-d
    assert pixel.dtype == np.float32 and not isinstance(pixel, float)
    stack = cryostream.open_micrographs([mic], pixel_size_angstrom=pixel)
    assert stack.attrs["pixel_size_angstrom"] == float(pixel)
    cryostream.denoise(tiny_run.run, [mic], tmp_path / "out", pixel_size_angstrom=pixel,
                       config=cryostream.DenoiseConfig.raw())
    record = json.loads((tmp_path / "out" / mic.with_suffix(".json").name).read_text())
    assert record["found"]["pixel_size_angstrom"] == pytest.approx(float(pixel))
    with pytest.raises(cryostream.CryostreamError, match=r"^pixel_size_angstrom=True "
                       r"\(--pixel-size\): must be a number of Å, e\.g\. 0\.66, not a bool$"):
        cryostream.denoise(tiny_run.run, [mic], tmp_path / "bool", pixel_size_angstrom=True)
    assert not (tmp_path / "bool").exists()


def test_file_names_in_an_array_or_series_are_a_list_of_paths(tiny_run, tmp_path):
    """A STAR table's column of names (``df.rlnMicrographName.values``, a NumPy array, or the
    pandas Series itself) is how a script holds a list of micrographs: open_micrographs and
    prepare refused it as "not a path", denoise as if the names were pixels. Each takes it as
    the list of its names."""
    import pandas as pd

    mics = tiny_run.sim.micrographs
    names = np.array([str(p) for p in mics])
    assert names.dtype.kind == "U"
    stack = cryostream.open_micrographs(names)
    assert list(stack.attrs["sources"]) == [str(p) for p in mics]
    prepared = cryostream.prepare(pd.Series(names), tmp_path / "d.h5",
                                  cryostream.PrepareConfig(patch_size=32, stride=32))
    assert prepared.micrographs == len(mics)
    out = cryostream.denoise(tiny_run.run, names[:2], tmp_path / "den",
                             config=cryostream.DenoiseConfig.raw(tile=64))
    assert out.dims == ("micrograph", "y", "x") and out.shape[0] == 2
    assert sorted(p.name for p in (tmp_path / "den").glob("*.mrc")) == [p.name for p in mics[:2]]
    # a Series of Path objects, as pathlib gives them, too
    assert cryostream.open_micrographs(pd.Series(list(mics))).sizes["micrograph"] == len(mics)


def test_file_names_as_bytes_are_a_list_of_paths(tiny_run, tmp_path):
    """Names as bytes (an HDF5 file's column of names, ``np.char.encode``: dtype ``S``) were
    taken for pixels: plan and open_micrographs said "an array of shape (3,) (|S..) is not a
    path; ... write it as an MRC file", denoise "pass one micrograph (y, x) or a stack". They
    are file names, decoded as os.fsdecode does, for every call; a pandas Series of them too."""
    import os

    import pandas as pd

    mics = tiny_run.sim.micrographs
    names = np.array([os.fsencode(p) for p in mics])
    assert names.dtype.kind == "S"
    assert cryostream.plan(names).n_micrographs == len(mics)
    stack = cryostream.open_micrographs(pd.Series(list(names)))  # dtype object, of bytes
    assert list(stack.attrs["sources"]) == [str(p) for p in mics]
    out = cryostream.denoise(tiny_run.run, names[:1], tmp_path / "den",
                             config=cryostream.DenoiseConfig.raw(tile=64))
    assert out.shape[0] == 1
    assert [p.name for p in (tmp_path / "den").glob("*.mrc")] == [mics[0].name]
