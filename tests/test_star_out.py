"""The STAR file ``denoise`` writes beside its outputs (cryostream.denoise.star_out): every file
name in it relative to the project folder (the input STAR file's, or the working directory for
other inputs; absolute outside it), read back from that folder as RELION reads it, wherever the
command ran; finished outputs of other inputs in the folder that it leaves out, named. Real MRC
and STAR files, written by ``simulate``, mrcfile and starfile."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest
import starfile

import cryostream
from cryostream.cli import main
from cryostream.config import DenoiseConfig, SimulateConfig
from cryostream.denoise.star_out import UnlistedOutputWarning
from cryostream.io.star import read_micrograph_star

HALVES = ("rlnMicrographNameEven", "rlnMicrographNameOdd")


def _denoise(tiny_run, *argv) -> int:
    return main(["denoise", str(tiny_run.run), *map(str, argv), "--raw", "--tile", "64",
                 "--workers", "1"])


def _rows(out: Path) -> pd.DataFrame:
    return starfile.read(out / "denoised_micrographs.star", always_dict=True)["micrographs"]


def test_names_are_relative_to_the_project_folder_wherever_the_command_runs(
        tiny_run, tmp_path, monkeypatch):
    """A STAR file's project (``sim``, where its names resolve) run from the folder above it:
    outputs inside the project are named relative to it, as are the even/odd halves carried
    over, outputs outside it absolutely, and the output STAR file reads back from the project
    folder, every column, as RELION reads it; run from inside the project's sub-folder, the
    same names. A folder of micrographs (no project) is named relative to the working
    directory."""
    cryostream.simulate(tmp_path / "sim", 2, config=SimulateConfig(shape=(160, 128), seed=3,
                                                                   even_odd=True))
    names = ["sim_0000", "sim_0001"]
    monkeypatch.chdir(tmp_path)
    assert _denoise(tiny_run, "sim/micrographs.star", "-o", "sim/Denoise/job001") == 0
    assert _denoise(tiny_run, "sim/micrographs.star", "-o", "outside") == 0
    assert _denoise(tiny_run, "sim/micrographs", "-o", "from_folder") == 0
    inside, outside = _rows(tmp_path / "sim/Denoise/job001"), _rows(tmp_path / "outside")
    text = (tmp_path / "sim/Denoise/job001/denoised_micrographs.star").read_text()
    assert "# version 30001\n\ndata_optics\n" in text  # as RELION writes each block
    assert "# version 30001\n\ndata_micrographs\n" in text
    assert list(inside["rlnMicrographName"]) == [f"Denoise/job001/{n}.mrc" for n in names]
    assert list(outside["rlnMicrographName"]) == [(tmp_path / f"outside/{n}.mrc").as_posix()
                                                  for n in names]
    assert list(_rows(tmp_path / "from_folder")["rlnMicrographName"]) == [
        f"from_folder/{n}.mrc" for n in names]
    for rows in (inside, outside):
        assert list(rows["rlnMicrographNameEven"]) == [f"even/{n}_EVN.mrc" for n in names]
        assert list(rows["rlnMicrographNameOdd"]) == [f"odd/{n}_ODD.mrc" for n in names]
    monkeypatch.chdir(tmp_path / "sim" / "even")  # inside the project: the same names
    assert _denoise(tiny_run, "../micrographs.star", "-o", "../Denoise/job002") == 0
    assert list(_rows(tmp_path / "sim/Denoise/job002")["rlnMicrographName"]) == [
        f"Denoise/job002/{n}.mrc" for n in names]
    monkeypatch.chdir(tmp_path / "sim")  # RELION reads the names from its project folder
    for written, rows in ((tmp_path / "sim/Denoise/job001", inside), (tmp_path / "outside", outside)):
        for column in ("rlnMicrographName", *HALVES):
            found = read_micrograph_star(written / "denoised_micrographs.star", column)
            assert [p.resolve() for p in found] == [(tmp_path / "sim" / v).resolve()
                                                    for v in rows[column]]
            assert all((tmp_path / "sim" / v).is_file() for v in rows[column])


def test_a_relion_project_s_names_stay_relative_to_it_run_from_elsewhere(
        tiny_run, tmp_path, monkeypatch):
    """Run from elsewhere on a RELION project's CtfFind STAR file (an optics table, names
    relative to the project): the carried halves and ``rlnCtfImage`` (its ``:mrc`` kept) stay
    relative to the project, the outputs outside it are absolute, and the output STAR file
    reads back from the project folder."""
    project = tmp_path / "project"
    for folder in ("Micrographs", "CtfFind/job003/Micrographs", "elsewhere"):
        (project / folder).mkdir(parents=True)
    for i, name in enumerate(("a", "b")):
        for half in ("", "_EVN", "_ODD"):
            shutil.copy(tiny_run.sim.micrographs[i], project / "Micrographs" / f"{name}{half}.mrc")
        (project / "CtfFind/job003/Micrographs" / f"{name}.ctf").write_bytes(b"")
    optics = pd.DataFrame({"rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
                           "rlnMicrographPixelSize": [0.6575], "rlnVoltage": [300.0],
                           "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1]})
    star = project / "CtfFind/job003/micrographs_ctf.star"
    starfile.write({"optics": optics, "micrographs": pd.DataFrame({
        "rlnMicrographName": ["Micrographs/a.mrc", "Micrographs/b.mrc"],
        "rlnMicrographNameEven": ["Micrographs/a_EVN.mrc", "Micrographs/b_EVN.mrc"],
        "rlnMicrographNameOdd": ["Micrographs/a_ODD.mrc", "Micrographs/b_ODD.mrc"],
        "rlnOpticsGroup": [1, 1],
        "rlnCtfImage": ["CtfFind/job003/Micrographs/a.ctf:mrc",
                        "CtfFind/job003/Micrographs/b.ctf:mrc"]})}, star)
    monkeypatch.chdir(project / "elsewhere")
    out = tmp_path / "den"
    assert _denoise(tiny_run, star, "-o", out) == 0
    rows = _rows(out)
    assert list(rows["rlnMicrographName"]) == [(out / f"{n}.mrc").as_posix() for n in "ab"]
    for column, ending in zip(HALVES, ("_EVN.mrc", "_ODD.mrc"), strict=True):
        assert list(rows[column]) == [f"Micrographs/{n}{ending}" for n in "ab"]
    assert list(rows["rlnCtfImage"]) == [f"CtfFind/job003/Micrographs/{n}.ctf:mrc" for n in "ab"]
    monkeypatch.chdir(project)
    for column in ("rlnMicrographName", *HALVES):
        assert [p.resolve() for p in read_micrograph_star(out / "denoised_micrographs.star",
                                                          column)] \
            == [(project / v).resolve() for v in rows[column]]


def test_a_call_of_fewer_inputs_names_the_outputs_its_star_file_leaves_out(tiny_run, tmp_path):
    """A and B denoised into one folder, then A alone: the STAR file lists A, as the call's
    inputs say (a selection that dropped B keeps it out), and one warning names B, still in
    the folder; A and B again list both, without a word."""
    mics = tmp_path / "mics"
    mics.mkdir()
    a, b = (Path(shutil.copy(tiny_run.sim.micrographs[i], mics / f"{n}.mrc"))
            for i, n in enumerate("ab"))
    out, config = tmp_path / "out", DenoiseConfig.raw(tile=64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cryostream.denoise(tiny_run.run, [a, b], out, config=config, workers=1)
    assert not [w for w in caught if issubclass(w.category, UnlistedOutputWarning)]
    with pytest.warns(UnlistedOutputWarning) as caught:
        result = cryostream.denoise(tiny_run.run, [a], out, config=config, workers=1)
    assert [str(w.message) for w in caught] == [
        f"{out / 'denoised_micrographs.star'} lists only this call's 1 micrograph; 1 earlier "
        f"output in {out} is not listed (b.mrc): give its input again with these to list it too "
        "(finished outputs are kept, not made again)"]
    assert result.attrs["kept"] == 1 and (out / "b.mrc").is_file()
    assert [Path(n).name for n in _rows(out)["rlnMicrographName"]] == ["a.mrc"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cryostream.denoise(tiny_run.run, [a, b], out, config=config, workers=1)
    assert not [w for w in caught if issubclass(w.category, UnlistedOutputWarning)]
    assert [Path(n).name for n in _rows(out)["rlnMicrographName"]] == ["a.mrc", "b.mrc"]


def test_several_outputs_left_out_are_named_in_one_warning(tiny_run, tmp_path):
    """Three denoised by the command, then one: one warning names the two left out."""
    mics = tmp_path / "mics"
    mics.mkdir()
    for i in range(3):
        shutil.copy(tiny_run.sim.micrographs[i], mics / f"m{i}.mrc")
    out = tmp_path / "out"
    assert _denoise(tiny_run, mics, "-o", out) == 0
    with pytest.warns(UnlistedOutputWarning) as caught:
        assert _denoise(tiny_run, mics / "m1.mrc", "-o", out) == 0
    assert [str(w.message) for w in caught] == [
        f"{out / 'denoised_micrographs.star'} lists only this call's 1 micrograph; 2 earlier "
        f"outputs in {out} are not listed (m0.mrc, m2.mrc): give their inputs again with these "
        "to list them too (finished outputs are kept, not made again)"]


def test_micrographs_of_one_name_in_two_folders_keep_their_folders(tiny_run, tmp_path,
                                                                     monkeypatch):
    """Sessions merged in one STAR file (``Movies/GridA/mic_000.mrc`` and
    ``Movies/GridB/mic_000.mrc``): the outputs keep the folders below the ones the inputs
    share, as RELION does, instead of refusing the call; the STAR file names them, and the same
    command again keeps them."""
    project = tmp_path / "project"
    movies = project / "MotionCorr/job002/Movies"
    for grid, i in (("GridA", 0), ("GridB", 1)):
        (movies / grid).mkdir(parents=True)
        shutil.copy(tiny_run.sim.micrographs[i], movies / grid / "mic_000.mrc")
    (project / "CtfFind/job003").mkdir(parents=True)
    optics = pd.DataFrame({"rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
                           "rlnMicrographPixelSize": [0.6575], "rlnVoltage": [300.0],
                           "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1]})
    rows = pd.DataFrame({"rlnMicrographName": [f"MotionCorr/job002/Movies/{g}/mic_000.mrc"
                                               for g in ("GridA", "GridB")],
                         "rlnOpticsGroup": [1, 1]})
    starfile.write({"optics": optics, "micrographs": rows},
                   project / "CtfFind/job003/micrographs_ctf.star")
    monkeypatch.chdir(project)
    assert _denoise(tiny_run, "CtfFind/job003/micrographs_ctf.star", "-o", "External/job010") == 0
    out = project / "External/job010"
    assert list(_rows(out)["rlnMicrographName"]) == ["External/job010/GridA/mic_000.mrc",
                                                     "External/job010/GridB/mic_000.mrc"]
    made = {grid: (out / grid / "mic_000.mrc").stat().st_mtime_ns for grid in ("GridA", "GridB")}
    assert all((out / grid / "mic_000.json").is_file() for grid in made)
    assert _denoise(tiny_run, "CtfFind/job003/micrographs_ctf.star", "-o", "External/job010") == 0
    assert made == {grid: (out / grid / "mic_000.mrc").stat().st_mtime_ns for grid in made}


def test_a_name_that_starts_as_a_star_keyword_is_written_so_it_reads_back(tiny_run, tmp_path,
                                                                         monkeypatch):
    """An output folder named ``data_den`` under the working directory: its rows would start
    with ``data_``, which RELION and starfile read as a new block (the file could not be read
    back); written as ``./data_den/…``, the same files, and only the blocks carry RELION's
    version line."""
    monkeypatch.chdir(tmp_path)
    assert _denoise(tiny_run, tiny_run.sim.micrographs[0], "-o", "data_den") == 0
    star = tmp_path / "data_den/denoised_micrographs.star"
    assert list(_rows(tmp_path / "data_den")["rlnMicrographName"]) == ["./data_den/sim_0000.mrc"]
    assert [p.resolve() for p in read_micrograph_star(star)] == [
        (tmp_path / "data_den/sim_0000.mrc").resolve()]
    assert star.read_text().count("# version 30001") == 2
