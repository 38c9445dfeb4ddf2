"""Micrographs denoised as arrays in memory (NumPy, Dask, xarray): each image named as its file
where the xarray says which, a result that says it is denoised, the notes files get."""

from __future__ import annotations

import re
import warnings

import jax
import mrcfile
import numpy as np
import pytest
from conftest import write_mrc

import cryostream
from cryostream.config import DenoiseConfig

#: One pass, no binned pass: a micrograph of the shared run in about a second.
QUICK = DenoiseConfig(tile=64, ensemble=False, binned_pass=False)


@pytest.fixture(scope="module")
def trained(tiny_run):
    """The shared run (conftest.py) and the simulation its store was made of: three
    160 × 128 px micrographs."""
    return tiny_run.run, tiny_run.sim


def _done(notes: list[str]) -> list[str]:
    """The notes of micrographs done or skipped, up to their ``:``."""
    return [n.split(":")[0] for n in notes if re.match(r"(denoised )?\d+/\d+ ", n)]


def test_an_xarray_of_files_names_each_image_by_its_file(trained, tmp_path, notes):
    """A stack opened from MRC files (open_micrographs) was denoised with every note, warning
    and error naming its images ``array[0]``, ``array[1]``, though the stack names each one's
    file. Each is named as the file is when the files are given: the note by its file name,
    the warning and the error by its path; a 2-D selection by its one file; an xarray that
    names its images only (a ``micrograph`` coordinate of text) by those names; a NumPy stack
    still ``array[i]``."""
    import xarray as xr

    run, sim = trained
    stack = cryostream.open_micrographs(sim.micrographs[:2])
    cryostream.denoise(run, stack, config=QUICK)
    assert _done(notes) == ["denoised 1/2 sim_0000.mrc", "denoised 2/2 sim_0001.mrc"], notes
    notes.clear()
    one = cryostream.denoise(run, stack[1], config=QUICK)
    assert one.dims == ("y", "x") and _done(notes) == ["denoised 1/1 sim_0001.mrc"], notes
    notes.clear()
    images = stack.values
    named = xr.DataArray(images, dims=("micrograph", "y", "x"),
                         coords={"micrograph": ["left", "right"]},
                         attrs={"pixel_size_angstrom": 0.6575})
    cryostream.denoise(run, named, config=QUICK)
    assert _done(notes) == ["denoised 1/2 left", "denoised 2/2 right"], notes
    notes.clear()
    cryostream.denoise(run, images, config=QUICK, pixel_size_angstrom=0.6575)
    assert _done(notes) == ["denoised 1/2 array[0]", "denoised 2/2 array[1]"], notes

    # a file with NaN pixels (read only when denoised): the error and the warning name its path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (mrcfile's word of the NaN pixels)
        bad = write_mrc(tmp_path / "bad.mrc", np.where(np.arange(160)[:, None] == 7, np.nan,
                                                       images[0]).astype(np.float32), 0.6575)
    with_bad = cryostream.open_micrographs([sim.micrographs[0], bad])
    with pytest.raises(cryostream.InvalidMicrographError, match=f"^{bad.resolve()}: "):
        cryostream.denoise(run, with_bad, config=QUICK)
    notes.clear()
    with pytest.warns(cryostream.MicrographSkippedWarning, match=f"^skipping {bad.resolve()}: "):
        out = cryostream.denoise(run, with_bad, config=QUICK, permissive=True)
    assert _done(notes) == ["denoised 1/2 sim_0000.mrc", "2/2 bad.mrc"], notes
    assert list(out.micrograph.values) == ["sim_0000"]


def test_an_arrays_pixel_size_warning_names_the_file_of_its_image(tmp_path):
    """The pixel-size warning of an xarray opened from files named ``array[0]``; it names the
    file, as for the file given by name."""
    from cryostream.denoise.pixels import PixelSizeWarning

    sim = cryostream.simulate(tmp_path / "sim", 1, shape=(256, 256), seed=3)
    stack = cryostream.open_micrographs(sim.micrographs, pixel_size_angstrom=6.6)
    with pytest.warns(PixelSizeWarning, match=r"\(6\.6 Å, from pixel_size_angstrom=, for "
                      r"sim_0000\.mrc\)"):
        cryostream.denoise("general", stack, config=DenoiseConfig.raw(), pixel_size_angstrom=6.6)


def test_a_result_in_memory_says_it_is_denoised_not_the_raw_files(trained):
    """A stack opened from files and denoised in memory kept the stack's ``sources`` and
    ``headers`` (the raw files' paths and MRC facts) and its ``source`` coordinate, so that the
    result read as the raw micrographs' own. It keeps its ``micrograph`` names, each one's raw
    file as ``denoised_from`` (following a selection), the pixel size and how it was made
    (``denoise_config``, ``run``), and none of the raw files' attrs; so does the result of
    files denoised in memory."""
    run, sim = trained
    raw = DenoiseConfig.raw(tile=64)
    stack = cryostream.open_micrographs(sim.micrographs[:3])
    paths = [str(p.resolve()) for p in sim.micrographs[:3]]
    assert {"sources", "headers", "band_rows", "skipped"} <= set(stack.attrs)  # as opened
    picked = stack.isel(micrograph=[2, 0])
    from_files = cryostream.denoise(run, [sim.micrographs[2], sim.micrographs[0]], config=raw)
    for out in (cryostream.denoise(run, picked, config=raw), from_files):
        assert out.name == "denoised" and "source" not in out.coords
        assert list(out.micrograph.values) == ["sim_0002", "sim_0000"]
        assert list(out.denoised_from.values) == [paths[2], paths[0]]
        assert not {"sources", "headers", "band_rows", "skipped", "pixel_size_from"} & set(out.attrs)
        assert {"denoise_config", "run", "pixel_size_angstrom"} <= set(out.attrs), out.attrs
    np.testing.assert_array_equal(cryostream.denoise(run, picked, config=raw).values,
                                  from_files.values)
    # one of them, 2-D: its file as a scalar coordinate; a user's own name for the array is kept
    one = cryostream.denoise(run, stack[1].rename("mine"), config=raw)
    assert one.name == "mine" and str(one.denoised_from.values) == paths[1]
    assert "sources" not in one.attrs


def test_an_array_gets_the_opening_note_files_get(trained, tmp_path, notes):
    """Files get a note as the call starts (how many, the model, its steps, the backend) and
    on a CPU about how long the ensemble takes; an array stack got neither, only a note as each
    was done. It gets both, as the files' (the same estimate for the same images)."""
    run, sim = trained
    config = DenoiseConfig(tile=64, binned_pass=False)
    cryostream.denoise(run, sim.micrographs[:2], tmp_path / "out", config=config, workers=1)
    (files,) = [n for n in notes if n.startswith("denoising ")]
    assert files.startswith("denoising 2 micrographs with "), files
    timed = [n.split("; other work")[0] for n in notes if n.startswith("the ensemble runs ")]
    notes.clear()
    images = np.stack([mrcfile.read(m).astype(np.float32) for m in sim.micrographs[:2]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (those of the steps: as for the files)
        cryostream.denoise(run, images, config=config, pixel_size_angstrom=0.6575)
    (arrays,) = [n for n in notes if n.startswith("denoising ")]
    assert arrays == files.replace("micrographs with", "micrographs in memory with").replace(
        ", 1 in flight", ""), (arrays, files)
    assert notes.index(arrays) < min(i for i, n in enumerate(notes) if n.startswith("denoised "))
    if jax.default_backend() == "cpu":
        assert len(timed) == 1 and "for all here" in timed[0], timed
        assert [n.split("; other work")[0] for n in notes
                if n.startswith("the ensemble runs ")] == timed


def test_an_array_gets_the_note_of_the_optics_it_assumes_in_python_words(trained, notes):
    """Files without a STAR file's optics get a note of the optics the CTF fit takes and how to
    give others; an array (NumPy, or an xarray, which carries no optics) took 300 kV, Cs 2.7 mm
    and amplitude contrast 0.1 without a word. It gets the note once per call, naming the
    config's fields (denoise takes no --voltage in Python), only those the config leaves at
    their default, and none where the config gives all three."""
    import dataclasses

    import xarray as xr

    run, sim = trained
    images = np.stack([mrcfile.read(m).astype(np.float32) for m in sim.micrographs[:2]])

    def said() -> list[str]:
        found = [n for n in notes if "optics" in n and "microscope" in n]
        notes.clear()
        return found

    cryostream.denoise(run, images, config=QUICK, pixel_size_angstrom=0.6575)
    assert said() == [
        "2 micrographs have no microscope optics from config= (an array carries none): the CTF "
        "fit takes 300 kV, Cs 2.7 mm and amplitude contrast 0.1 (a Krios; nothing to do if they "
        "are your microscope's); for another, pass config=DenoiseConfig(voltage_kv=..., "
        "cs_mm=..., amplitude_contrast=...), e.g. voltage_kv=200 for a Glacios or a Talos Arctica"]
    one = xr.DataArray(images[0], dims=("y", "x"), attrs={"pixel_size_angstrom": 0.6575})
    cryostream.denoise(run, one, config=dataclasses.replace(QUICK, voltage_kv=200.0))
    assert said() == [
        "1 micrograph has no Cs or amplitude contrast from config= (an array carries none) (the "
        "rest of its optics given): the CTF fit takes Cs 2.7 mm and amplitude contrast 0.1 "
        "(nothing to do if that is your microscope's); for another, pass "
        "config=DenoiseConfig(cs_mm=..., amplitude_contrast=...)"]
    given = dataclasses.replace(QUICK, voltage_kv=200.0, cs_mm=1.4, amplitude_contrast=0.07)
    cryostream.denoise(run, one, config=given)
    assert said() == []
