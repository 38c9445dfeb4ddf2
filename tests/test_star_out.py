"""The STAR file ``denoise`` writes beside its outputs (cryostream.denoise.star_out): every file
name in it relative to the project folder (the input STAR file's, or the working directory for
other inputs; absolute outside it, and where the input STAR file's names are absolute), read
back from that folder as RELION reads it, wherever the command ran; the rows of the file it
replaces kept where their outputs are still in the folder (or that file kept as ``.bak``);
finished outputs in the folder that it leaves out, named. Real MRC and STAR files, written by
``simulate``, mrcfile and starfile."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import mrcfile
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


def test_a_relion_3_0_star_file_s_path_columns_share_its_project_folder_run_from_elsewhere(
        tiny_run, tmp_path, monkeypatch):
    """A STAR file without an optics table (RELION 3.0, as ``simulate`` writes) in its project
    folder, naming micrographs and ``rlnCtfImage`` files relative to it, denoised from a
    sibling folder into the project and outside it: ``rlnMicrographName`` and ``rlnCtfImage``
    are both named from the project folder (relative inside it, absolute outside), never one
    from the working directory, and every name reads back from the project as RELION reads
    it."""
    project = tmp_path / "project"
    cryostream.simulate(project, 2, config=SimulateConfig(shape=(160, 128), seed=3))
    (project / "CtfFind").mkdir()
    names = ["sim_0000", "sim_0001"]
    for n in names:
        (project / "CtfFind" / f"{n}.ctf").write_bytes(b"")
    rows = starfile.read(project / "micrographs.star", always_dict=True)["micrographs"]
    rows["rlnCtfImage"] = [f"CtfFind/{n}.ctf:mrc" for n in names]
    starfile.write({"micrographs": rows}, project / "micrographs_ctf.star")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    star = Path("../project/micrographs_ctf.star")
    assert _denoise(tiny_run, star, "-o", "../project/Denoise/job001") == 0
    assert _denoise(tiny_run, star, "-o", "den") == 0
    inside, outside = _rows(project / "Denoise/job001"), _rows(tmp_path / "elsewhere/den")
    assert list(inside["rlnMicrographName"]) == [f"Denoise/job001/{n}.mrc" for n in names]
    assert list(outside["rlnMicrographName"]) == [
        (tmp_path / f"elsewhere/den/{n}.mrc").as_posix() for n in names]
    for written in (inside, outside):
        assert list(written["rlnCtfImage"]) == [f"CtfFind/{n}.ctf:mrc" for n in names]
    monkeypatch.chdir(project)  # RELION reads every name from its project folder
    for written in (project / "Denoise/job001", tmp_path / "elsewhere/den"):
        listed = _rows(written)
        assert all((project / v).is_file() for v in listed["rlnMicrographName"])
        assert all((project / v.removesuffix(":mrc")).is_file() for v in listed["rlnCtfImage"])


OPTICS = pd.DataFrame({"rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
                       "rlnMicrographPixelSize": [0.6575], "rlnVoltage": [300.0],
                       "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1]})


def _ctffind_project(tiny_run, project: Path, names=("a", "b", "c"), absolute=False) -> Path:
    """A RELION project: micrographs in MotionCorr/job002/Micrographs, CTFFIND's files and its
    STAR file (the CTF columns, rlnCtfImage) in CtfFind/job003; names relative to the project,
    or absolute."""
    mics, ctf = project / "MotionCorr/job002/Micrographs", project / "CtfFind/job003/Micrographs"
    mics.mkdir(parents=True)
    ctf.mkdir(parents=True)
    for i, name in enumerate(names):
        shutil.copy(tiny_run.sim.micrographs[i % 3], mics / f"{name}.mrc")
        (ctf / f"{name}.ctf").write_bytes(b"")
    root = f"{project.as_posix()}/" if absolute else ""
    star = project / "CtfFind/job003/micrographs_ctf.star"
    starfile.write({"optics": OPTICS, "micrographs": pd.DataFrame({
        "rlnMicrographName": [f"{root}MotionCorr/job002/Micrographs/{n}.mrc" for n in names],
        "rlnOpticsGroup": [1] * len(names),
        "rlnCtfImage": [f"{root}CtfFind/job003/Micrographs/{n}.ctf:mrc" for n in names],
        "rlnCtfMaxResolution": [4.0 + i for i in range(len(names))]})}, star)
    return star


def _subset(star: Path, rows: list[int], name: str, **changed) -> Path:
    """A Subset selection of ``star``'s rows beside it (its columns ``changed``)."""
    blocks = starfile.read(star, always_dict=True)
    blocks["micrographs"] = blocks["micrographs"].iloc[rows].assign(**changed)
    starfile.write(blocks, star.parent / name)
    return star.parent / name


def test_a_subset_denoised_again_into_the_folder_keeps_the_rows_it_does_not_list(
        tiny_run, tmp_path, monkeypatch):
    """A whole CtfFind STAR file denoised into External/job010, then a Subset of its row b
    (its CTF refined) into the same folder: the STAR file still lists a, b and c, in their
    order, b's row updated, a's and c's as they were, with no UnlistedOutputWarning (one
    WARNING line says 2 earlier rows come from outside this call's inputs); a micrograph given
    as an MRC file then (no CTF columns: its rows cannot join the others) gets a STAR file of
    its own, the earlier one kept as ``denoised_micrographs.star.bak``, and one warning names
    the outputs now unlisted and the backup."""
    project = tmp_path / "project"
    star = _ctffind_project(tiny_run, project)
    monkeypatch.chdir(project)
    out = project / "External/job010"
    assert _denoise(tiny_run, star, "-o", "External/job010") == 0
    first = _rows(out)
    subset = _subset(star, [1], "subset.star", rlnCtfMaxResolution=[3.5])
    said, caught = _denoise_heard(monkeypatch, tiny_run, subset, "-o", "External/job010")
    assert not [w for w in caught if issubclass(w.category, UnlistedOutputWarning)]
    assert [m for level, m in said if level == "WARNING"] == [
        f"{out / 'denoised_micrographs.star'} lists this call's 1 micrograph and 2 earlier rows "
        "from outside this call's inputs (their outputs are in the folder); a folder of its own "
        "(-o) lists only the selection"]
    rows = _rows(out)
    assert list(rows["rlnMicrographName"]) == [f"External/job010/{n}.mrc" for n in "abc"]
    assert list(rows["rlnCtfMaxResolution"]) == [4.0, 3.5, 6.0]
    pd.testing.assert_frame_equal(rows.drop(index=1), first.drop(index=1))
    assert not list(out.glob("*.bak*"))
    mrc = Path(shutil.copy(tiny_run.sim.micrographs[0], project / "d.mrc"))
    with pytest.warns(UnlistedOutputWarning) as caught:
        assert _denoise(tiny_run, mrc, "-o", "External/job010") == 0
    bak = out / "denoised_micrographs.star.bak"
    assert [str(w.message) for w in caught] == [
        f"{out / 'denoised_micrographs.star'} lists only this call's 1 micrograph; 3 earlier "
        f"outputs in {out} are not listed (a.mrc, b.mrc, c.mrc): give their inputs again with "
        "these to list them too (finished outputs are kept, not made again); the STAR file it "
        f"replaces is kept as {bak}: its rows cannot join this call's (other columns: "
        "rlnCtfImage, rlnCtfMaxResolution only in it)"]
    assert list(_rows(out)["rlnMicrographName"]) == ["External/job010/d.mrc"]
    pd.testing.assert_frame_equal(starfile.read(bak, always_dict=True)["micrographs"], rows)


def test_a_call_of_fewer_inputs_keeps_the_earlier_rows_and_names_what_no_row_lists(
        tiny_run, tmp_path, monkeypatch):
    """MRC files: A (0.6575 Å) and B (1 Å) denoised into one folder, then B alone: the STAR
    file lists A and B, in their order, each with its optics group (A's group added back
    under a free number), with no UnlistedOutputWarning, only the WARNING line that 1 earlier
    row is kept from outside this call's inputs; its outputs removed, A's row goes too. With the STAR
    file removed by hand, C alone lists C, and one warning names A and B, unlisted; A again
    lists C and A, and names B. A STAR file there that cannot be read is kept as ``.bak``,
    with the warning saying so."""
    import mrcfile

    mics = tmp_path / "mics"
    mics.mkdir()
    a, b, c = (Path(shutil.copy(tiny_run.sim.micrographs[i], mics / f"{n}.mrc"))
               for i, n in enumerate("abc"))
    with mrcfile.open(b, "r+") as m:
        m.voxel_size = 1.0
    out, config = tmp_path / "out", DenoiseConfig.raw(tile=64)

    def denoise(*inputs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = cryostream.denoise(tiny_run.run, list(inputs), out, config=config, workers=1)
        return result, [str(w.message) for w in caught
                        if issubclass(w.category, UnlistedOutputWarning)]

    assert denoise(a, b)[1] == []
    logged = _levels(monkeypatch)
    try:
        result, said = denoise(b)
    finally:
        _unhook()
    assert said == [] and result.attrs["kept"] == 1
    assert [m for level, m in logged if level == "WARNING"] == [
        f"{out / 'denoised_micrographs.star'} lists this call's 1 micrograph and 1 earlier row "
        "from outside this call's inputs (their outputs are in the folder); a folder of its own "
        "(-o) lists only the selection"]
    written = starfile.read(out / "denoised_micrographs.star", always_dict=True)
    rows, optics = written["micrographs"], written["optics"].set_index("rlnOpticsGroup")
    assert [Path(n).name for n in rows["rlnMicrographName"]] == ["a.mrc", "b.mrc"]
    assert [optics.loc[g, "rlnMicrographPixelSize"] for g in rows["rlnOpticsGroup"]] == [
        pytest.approx(0.6575), pytest.approx(1.0)]
    assert sorted(optics["rlnOpticsGroupName"]) == ["opticsGroup1", "opticsGroup2"]
    for gone in ("a.mrc", "a.json"):
        (out / gone).unlink()
    denoise(b)
    assert [Path(n).name for n in _rows(out)["rlnMicrographName"]] == ["b.mrc"]
    denoise(a)
    (out / "denoised_micrographs.star").unlink()
    assert denoise(c)[1] == [
        f"{out / 'denoised_micrographs.star'} lists only this call's 1 micrograph; 2 earlier "
        f"outputs in {out} are not listed (a.mrc, b.mrc): give their inputs again with these to "
        "list them too (finished outputs are kept, not made again)"]
    assert denoise(a)[1] == [
        f"{out / 'denoised_micrographs.star'} lists this call's 1 micrograph and 1 of its earlier "
        f"rows; 1 earlier output in {out} is not listed (b.mrc): give its input again with these "
        "to list it too (finished outputs are kept, not made again)"]
    assert [Path(n).name for n in _rows(out)["rlnMicrographName"]] == ["c.mrc", "a.mrc"]
    assert not list(out.glob("*.bak*"))
    (out / "denoised_micrographs.star").write_text("not a STAR file\n")
    said = denoise(a)[1]
    assert len(said) == 1 and said[0].startswith(
        f"{out / 'denoised_micrographs.star'} lists only this call's 1 micrograph; 2 earlier "
        f"outputs in {out} are not listed (b.mrc, c.mrc)")
    assert (f"; the STAR file it replaces is kept as {out / 'denoised_micrographs.star.bak'}: its "
            "rows cannot join this call's (it could not be read as a micrographs STAR file: ") \
        in said[0]
    assert (out / "denoised_micrographs.star.bak").read_text() == "not a STAR file\n"


def test_several_outputs_left_out_are_named_in_one_warning(tiny_run, tmp_path):
    """Three denoised by the command, their STAR file removed, then one: one warning names the
    two left out."""
    mics = tmp_path / "mics"
    mics.mkdir()
    for i in range(3):
        shutil.copy(tiny_run.sim.micrographs[i], mics / f"m{i}.mrc")
    out = tmp_path / "out"
    assert _denoise(tiny_run, mics, "-o", out) == 0
    (out / "denoised_micrographs.star").unlink()
    with pytest.warns(UnlistedOutputWarning) as caught:
        assert _denoise(tiny_run, mics / "m1.mrc", "-o", out) == 0
    assert [str(w.message) for w in caught] == [
        f"{out / 'denoised_micrographs.star'} lists only this call's 1 micrograph; 2 earlier "
        f"outputs in {out} are not listed (m0.mrc, m2.mrc): give their inputs again with these "
        "to list them too (finished outputs are kept, not made again)"]


def test_a_star_file_of_absolute_names_is_listed_by_absolute_names(tiny_run, tmp_path,
                                                                    monkeypatch):
    """A CtfFind STAR file naming its micrographs and CTF images by absolute paths, denoised
    from the project folder into External/job010: the outputs are named by absolute paths and
    rlnCtfImage stays absolute (it had been made relative to the STAR file's folder, a file
    RELION would look for in the project folder); a Subset denoised again keeps the other rows,
    absolute too, and every name reads back to its file."""
    project = tmp_path / "project"
    star = _ctffind_project(tiny_run, project, names=("a", "b"), absolute=True)
    monkeypatch.chdir(project)
    out = project / "External/job010"
    for given in (star, _subset(star, [1], "subset.star")):
        assert _denoise(tiny_run, given, "-o", "External/job010") == 0
        rows = _rows(out)
        assert list(rows["rlnMicrographName"]) == [(out / f"{n}.mrc").as_posix() for n in "ab"]
        assert list(rows["rlnCtfImage"]) == [
            f"{project.as_posix()}/CtfFind/job003/Micrographs/{n}.ctf:mrc" for n in "ab"]
        assert [p.resolve() for p in read_micrograph_star(out / "denoised_micrographs.star")] \
            == [(out / f"{n}.mrc").resolve() for n in "ab"]
        assert all(Path(v.removesuffix(":mrc")).is_file() for v in rows["rlnCtfImage"])


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


def test_halves_from_a_star_file_are_named_after_its_micrograph_name(tiny_run, tmp_path,
                                                                      monkeypatch, capsys):
    """``denoise STAR --odd`` on halves whose names are not the micrograph's (MotionCor2's
    ``NAME_EVN.mrc``/``NAME_ODD.mrc`` beside its dose-weighted ``NAME_DW.mrc``): each output is
    named after the row's rlnMicrographName, not after its even half, and so is the written
    STAR file's name; two rows of one rlnMicrographName are still refused before anything is
    written."""
    project = tmp_path / "project"
    movies = project / "MotionCorr/job002/Movies"
    movies.mkdir(parents=True)
    names = ["mic001", "mic002"]
    for i, name in enumerate(names):
        for ending in ("_DW", "_EVN", "_ODD"):
            shutil.copy(tiny_run.sim.micrographs[i], movies / f"{name}{ending}.mrc")
    rows = pd.DataFrame({
        "rlnMicrographName": [f"MotionCorr/job002/Movies/{n}_DW.mrc" for n in names],
        "rlnMicrographNameEven": [f"MotionCorr/job002/Movies/{n}_EVN.mrc" for n in names],
        "rlnMicrographNameOdd": [f"MotionCorr/job002/Movies/{n}_ODD.mrc" for n in names],
        "rlnOpticsGroup": [1, 1]})
    starfile.write({"optics": OPTICS, "micrographs": rows}, project / "corrected.star")
    monkeypatch.chdir(project)
    assert _denoise(tiny_run, "corrected.star", "--odd", "-o", "External/job010") == 0
    out = project / "External/job010"
    assert sorted(p.name for p in out.glob("*.mrc")) == [f"{n}_DW.mrc" for n in names]
    written = _rows(out)
    assert list(written["rlnMicrographName"]) == [f"External/job010/{n}_DW.mrc" for n in names]
    assert list(written["rlnMicrographNameEven"]) == list(rows["rlnMicrographNameEven"])
    rows["rlnMicrographName"] = ["MotionCorr/job002/Movies/mic001_DW.mrc"] * 2
    starfile.write({"optics": OPTICS, "micrographs": rows}, project / "twice.star")
    capsys.readouterr()
    assert _denoise(tiny_run, "twice.star", "--odd", "-o", "External/job011") == 2
    assert "share the name 'mic001_DW'" in capsys.readouterr().err
    assert not (project / "External/job011").exists()


def test_a_star_row_pairs_its_own_halves_whatever_their_names(tiny_run, tmp_path, monkeypatch,
                                                              capsys):
    """``denoise STAR --odd`` on rows whose halves do not pair by name (``mic001_even_sum.mrc``
    with ``mic001_odd_sum.mrc``, ``a.mrc`` with ``b.mrc``): each row's two halves are one
    micrograph's, as the row says (they had been refused with 'no odd half for'). The checks
    stay: a row whose halves differ in shape is refused before anything is written, and with
    --permissive skipped with a warning, the other rows denoised."""
    from cryostream.io.stack import MicrographSkippedWarning

    project = tmp_path / "project"
    movies = project / "MotionCorr/job002/Movies"
    movies.mkdir(parents=True)
    halves = [("mic001_even_sum.mrc", "mic001_odd_sum.mrc"), ("a.mrc", "b.mrc")]
    for i, pair in enumerate(halves):
        for name in pair:
            shutil.copy(tiny_run.sim.micrographs[i], movies / name)
    rows = pd.DataFrame({
        "rlnMicrographName": ["MotionCorr/job002/Movies/mic001.mrc",
                              "MotionCorr/job002/Movies/mic002.mrc"],
        "rlnMicrographNameEven": [f"MotionCorr/job002/Movies/{e}" for e, _ in halves],
        "rlnMicrographNameOdd": [f"MotionCorr/job002/Movies/{o}" for _, o in halves],
        "rlnOpticsGroup": [1, 1]})
    starfile.write({"optics": OPTICS, "micrographs": rows}, project / "corrected.star")
    monkeypatch.chdir(project)
    assert _denoise(tiny_run, "corrected.star", "--odd", "-o", "External/job010") == 0
    out = project / "External/job010"
    assert sorted(p.name for p in out.glob("*.mrc")) == ["mic001.mrc", "mic002.mrc"]
    for name, (_, odd) in zip(("mic001", "mic002"), halves, strict=True):
        record = json.loads((out / f"{name}.json").read_text())
        assert record["given"]["odd"] == str((movies / odd).resolve())
    assert list(_rows(out)["rlnMicrographNameOdd"]) == list(rows["rlnMicrographNameOdd"])
    # a third row whose odd half is another shape: refused, nothing written; --permissive skips it
    shutil.copy(tiny_run.sim.micrographs[2], movies / "c.mrc")
    image = mrcfile.read(tiny_run.sim.micrographs[2])
    with mrcfile.new(movies / "d.mrc") as m:
        m.set_data(image[:, :96].copy())
        m.voxel_size = mrcfile.open(tiny_run.sim.micrographs[2]).voxel_size
    rows.loc[2] = ["MotionCorr/job002/Movies/mic003.mrc", "MotionCorr/job002/Movies/c.mrc",
                   "MotionCorr/job002/Movies/d.mrc", 1]
    starfile.write({"optics": OPTICS, "micrographs": rows}, project / "three.star")
    capsys.readouterr()
    assert _denoise(tiny_run, "three.star", "--odd", "-o", "External/job011") == 2
    err = capsys.readouterr().err
    assert f"{movies / 'c.mrc'} is 160 × 128 px but its odd half {movies / 'd.mrc'} is 160 × 96" \
        in err, err
    assert not (project / "External/job011").exists()
    with pytest.warns(MicrographSkippedWarning) as caught:
        assert _denoise(tiny_run, "three.star", "--odd", "-o", "External/job012",
                        "--permissive") == 0
    assert [str(w.message).split(":")[0] for w in caught] == [
        f"skipping {movies / 'c.mrc'} is 160 × 128 px but its odd half {movies / 'd.mrc'} is 160 × 96",
        f"skipping {movies / 'c.mrc'}"]
    assert "denoised 2 micrographs" in (said := capsys.readouterr().out), said
    assert "(1 skipped: see the warnings)" in said, said  # its two halves: one micrograph
    assert sorted(p.name for p in (project / "External/job012").glob("*.mrc")) == [
        "mic001.mrc", "mic002.mrc"]


def test_permissive_skips_a_micrograph_whose_even_half_is_missing(tiny_run, tmp_path,
                                                                    monkeypatch, capsys):
    """--permissive with a STAR row whose even half is gone: the row is skipped (its warning
    names it) and the others denoised, as for any bad micrograph; its odd half, left without a
    partner, had made the whole call fail with 'no even half for'. An odd half given as a file
    with no even half among the inputs is skipped the same way, with a warning of its own; one
    whose even half was a skipped row of the STAR file is that row's micrograph, said and
    counted once."""
    from cryostream.io.stack import MicrographSkippedWarning

    project = tmp_path / "project"
    movies = project / "MotionCorr/job002/Movies"
    movies.mkdir(parents=True)
    for i, pair in enumerate([("a1.mrc", "a2.mrc"), ("b1.mrc", "b2.mrc")]):
        for name in pair:
            shutil.copy(tiny_run.sim.micrographs[i], movies / name)
    rows = pd.DataFrame({
        "rlnMicrographName": ["MotionCorr/job002/Movies/a.mrc", "MotionCorr/job002/Movies/b.mrc"],
        "rlnMicrographNameEven": ["MotionCorr/job002/Movies/a1.mrc", "MotionCorr/job002/Movies/b1.mrc"],
        "rlnMicrographNameOdd": ["MotionCorr/job002/Movies/a2.mrc", "MotionCorr/job002/Movies/b2.mrc"],
        "rlnOpticsGroup": [1, 1]})
    starfile.write({"optics": OPTICS, "micrographs": rows}, project / "corrected.star")
    (movies / "b1.mrc").unlink()
    monkeypatch.chdir(project)
    capsys.readouterr()
    with pytest.warns(MicrographSkippedWarning, match="row 2 .*b1.mrc"):
        assert _denoise(tiny_run, "corrected.star", "--odd", "-o", "out", "--permissive") == 0
    said = capsys.readouterr().out
    assert "denoised 1 micrograph" in said and "(1 skipped" in said, said
    assert sorted(p.name for p in (project / "out").glob("*.mrc")) == ["a.mrc"]
    # halves paired by name: an odd half with no even half among the inputs
    for sub in ("even", "odd"):
        (project / sub).mkdir()
    shutil.copy(tiny_run.sim.micrographs[0], project / "even" / "m1.mrc")
    for name in ("m1.mrc", "m2.mrc"):
        shutil.copy(tiny_run.sim.micrographs[0], project / "odd" / name)
    with pytest.warns(MicrographSkippedWarning) as caught:
        assert _denoise(tiny_run, "even", "--odd", "odd", "-o", "out2", "--permissive") == 0
    assert [str(w.message) for w in caught] == [
        f"skipping {Path('odd') / 'm2.mrc'}: no even half among the inputs"]
    assert sorted(p.name for p in (project / "out2").glob("*.mrc")) == ["m1.mrc"]
    # the even halves from the STAR file, the odd ones a folder: the row's warning alone, one
    # micrograph skipped (its odd half had been warned of and counted as a second)
    (project / "odd3").mkdir()
    for name, odd in (("a1.mrc", "a2.mrc"), ("b1.mrc", "b2.mrc")):
        shutil.copy(movies / odd, project / "odd3" / name)  # one name in two folders
    capsys.readouterr()
    with pytest.warns(MicrographSkippedWarning) as caught:
        assert _denoise(tiny_run, "corrected.star", "--odd", "odd3", "-o", "out3",
                        "--permissive") == 0
    assert len(caught) == 1 and "b1.mrc" in str(caught[0].message), [str(w.message) for w in caught]
    assert "(1 skipped" in capsys.readouterr().out


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


def _grid_project(tiny_run, project: Path) -> Path:
    """Sessions merged in one CtfFind STAR file: GridA/mic_000.mrc and GridB/mic_000.mrc."""
    movies = project / "MotionCorr/job002/Movies"
    for grid, i in (("GridA", 0), ("GridB", 1)):
        (movies / grid).mkdir(parents=True)
        shutil.copy(tiny_run.sim.micrographs[i], movies / grid / "mic_000.mrc")
    (project / "CtfFind/job003").mkdir(parents=True)
    star = project / "CtfFind/job003/micrographs_ctf.star"
    starfile.write({"optics": OPTICS, "micrographs": pd.DataFrame({
        "rlnMicrographName": [f"MotionCorr/job002/Movies/{g}/mic_000.mrc" for g in ("GridA", "GridB")],
        "rlnOpticsGroup": [1, 1], "rlnDefocusU": [20000.0, 15000.0],
        "rlnDefocusV": [19000.0, 14000.0], "rlnDefocusAngle": [0.0, 0.0]})}, star)
    return star


def test_a_subset_of_one_grid_replaces_the_row_of_its_input(tiny_run, tmp_path, monkeypatch):
    """GridA/mic_000 and GridB/mic_000 denoised into External/job010 (GridA/mic_000.mrc …),
    then a Subset of GridA's alone (its output is mic_000.mrc: no other input shares its
    name): the earlier row of GridA, made from the same input, is replaced by this call's in
    its place, not kept beside it; the STAR file lists each micrograph once."""
    project = tmp_path / "project"
    star = _grid_project(tiny_run, project)
    monkeypatch.chdir(project)
    assert _denoise(tiny_run, star, "-o", "External/job010") == 0
    assert _denoise(tiny_run, _subset(star, [0], "subset.star"), "-o", "External/job010") == 0
    rows = _rows(project / "External/job010")
    assert list(rows["rlnMicrographName"]) == ["External/job010/mic_000.mrc",
                                               "External/job010/GridB/mic_000.mrc"]
    assert list(rows["rlnDefocusU"]) == [20000.0, 15000.0]


def test_a_subset_then_the_whole_file_names_the_subset_s_output_as_a_duplicate(
        tiny_run, tmp_path, monkeypatch):
    """A Subset of GridA's mic_000 denoised into External/job010 (mic_000.mrc), then the whole
    file (GridA/mic_000.mrc, GridB/mic_000.mrc): mic_000.mrc, made from an input this call
    gave again, is no missing row: no warning asks to give its input again; an INFO note names
    it as an earlier output of an input denoised under another name, which can be deleted."""
    project = tmp_path / "project"
    star = _grid_project(tiny_run, project)
    monkeypatch.chdir(project)
    out = project / "External/job010"
    assert _denoise(tiny_run, _subset(star, [0], "subset.star"), "-o", "External/job010") == 0
    said, caught = _denoise_heard(monkeypatch, tiny_run, star, "-o", "External/job010")
    assert [str(w.message) for w in caught if issubclass(w.category, UnlistedOutputWarning)] == []
    assert list(_rows(out)["rlnMicrographName"]) == ["External/job010/GridA/mic_000.mrc",
                                                     "External/job010/GridB/mic_000.mrc"]
    assert ("INFO", f"{out}: mic_000.mrc is an earlier output of an input this call denoised, "
            "under another name: it is listed by its new name; the earlier file can be deleted") \
        in said


def _denoise_heard(monkeypatch, tiny_run, *args) -> tuple[list, list]:
    """:func:`_denoise` (which must succeed) with the logger's records (:func:`_levels`) and
    the warnings raised."""
    said = _levels(monkeypatch)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert _denoise(tiny_run, *args) == 0
    finally:
        _unhook()
    return said, caught


def _unhook() -> None:
    """The handler of :func:`_levels` taken off the cryostream logger."""
    import logging

    logger = logging.getLogger("cryostream")
    logger.handlers[:] = [h for h in logger.handlers if type(h).__name__ != "Keep"]


def _levels(monkeypatch) -> list[tuple[str, str]]:
    """The cryostream logger's records (level name, message), as they come."""
    import logging

    said: list[tuple[str, str]] = []

    class Keep(logging.Handler):
        def emit(self, record):
            said.append((record.levelname, record.getMessage()))

    logger = logging.getLogger("cryostream")
    handler = Keep(logging.INFO)
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "level", logging.INFO)
    monkeypatch.setattr(logger, "_cache", {})  # isEnabledFor's answers for the earlier level
    return said


def test_an_output_made_again_keeps_the_other_rows(tiny_run, tmp_path, monkeypatch):
    """a, b and c denoised, then b alone once its input is remade (a new time of
    modification), then once its output is damaged (cut short): each time b's output is made
    again, and the STAR
    file (set aside meanwhile, under a hidden name that is no listing's) still lists a, b and
    c, in their order; nothing is left aside, no .bak is made, and one WARNING line says the
    STAR file brings back 2 rows from outside this call's inputs, and that a folder of its own
    lists only the selection."""
    import logging
    import os
    import time

    (a, b, c), out, config = _abc(tiny_run, tmp_path)
    said = _levels(monkeypatch)
    try:
        for how in ("touched", "damaged"):
            made = (out / "b.mrc").stat().st_mtime_ns
            if how == "touched":
                os.utime(b, (time.time() + 100, time.time() + 100))
            else:
                os.truncate(out / "b.mrc", (out / "b.mrc").stat().st_size - 100)
            said.clear()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = cryostream.denoise(tiny_run.run, [b], out, config=config, workers=1)
            assert result.attrs["kept"] == 0 and (out / "b.mrc").stat().st_mtime_ns != made
            assert not [w for w in caught if issubclass(w.category, UnlistedOutputWarning)]
            assert [Path(n).name for n in _rows(out)["rlnMicrographName"]] == [
                "a.mrc", "b.mrc", "c.mrc"]
            assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
            assert not list(out.glob("*.bak*"))
            star = out / "denoised_micrographs.star"
            assert [m for level, m in said if level == "WARNING" and "star" in m] == [
                f"{star} lists this call's 1 micrograph and 2 earlier rows from outside this "
                "call's inputs (their outputs are in the folder); a folder of its own (-o) lists "
                "only the selection"]
    finally:
        logging.getLogger("cryostream").handlers[:] = [
            h for h in logging.getLogger("cryostream").handlers if type(h).__name__ != "Keep"]


def test_outputs_of_other_options_are_not_listed_with_this_call_s(tiny_run, tmp_path):
    """a and b denoised with --tile 64, then c with --tile 128 into the same folder: a STAR
    file lists outputs of one recipe, so it lists c alone; the earlier file is kept as
    ``.bak``, and the warning names a and b as unlisted and says why (other options). The
    same with another run (another model)."""
    mics = tmp_path / "mics"
    mics.mkdir()
    a, b, c = (Path(shutil.copy(tiny_run.sim.micrographs[i], mics / f"{n}.mrc"))
               for i, n in enumerate("abc"))
    out = tmp_path / "out"
    cryostream.denoise(tiny_run.run, [a, b], out, config=DenoiseConfig.raw(tile=64), workers=1)
    with pytest.warns(UnlistedOutputWarning) as caught:
        cryostream.denoise(tiny_run.run, [c], out, config=DenoiseConfig.raw(tile=128), workers=1)
    star, bak = out / "denoised_micrographs.star", out / "denoised_micrographs.star.bak"
    assert [str(w.message) for w in caught] == [
        f"{star} lists only this call's 1 micrograph; 2 earlier outputs in {out} are not listed "
        "(a.mrc, b.mrc): give their inputs again with these to list them too (finished outputs "
        f"are kept, not made again); the STAR file it replaces is kept as {bak}: its rows cannot "
        "join this call's (a.mrc, b.mrc made with other options)"]
    assert [Path(n).name for n in _rows(out)["rlnMicrographName"]] == ["c.mrc"]
    assert [Path(n).name for n in starfile.read(bak, always_dict=True)["micrographs"][
        "rlnMicrographName"]] == ["a.mrc", "b.mrc"]
    other = tmp_path / "other_run"
    shutil.copytree(tiny_run.run, other)
    with pytest.warns(UnlistedOutputWarning) as caught:
        cryostream.denoise(other, [a], out, config=DenoiseConfig.raw(tile=64), workers=1,
                           overwrite=True)
    assert str(caught[0].message).endswith("(c.mrc made with another model)")
    assert [Path(n).name for n in _rows(out)["rlnMicrographName"]] == ["a.mrc"]


def test_rows_that_cannot_be_merged_are_kept_as_bak_not_a_crash(tiny_run, tmp_path):
    """A STAR file there whose kept row names its optics group by a word (no number): the
    call does not fail after denoising; its STAR file lists its own micrograph and the earlier
    file is kept as ``.bak``, the warning saying why."""
    mics = tmp_path / "mics"
    mics.mkdir()
    a, b = (Path(shutil.copy(tiny_run.sim.micrographs[i], mics / f"{n}.mrc")) for i, n in
            enumerate("ab"))
    out, config = tmp_path / "out", DenoiseConfig.raw(tile=64)
    cryostream.denoise(tiny_run.run, [a, b], out, config=config, workers=1)
    star = out / "denoised_micrographs.star"
    text = star.read_text()
    name = [ln for ln in text.splitlines() if "a.mrc" in ln][0]
    edited = text.replace(name, name.rsplit(None, 1)[0] + " first")
    star.write_text(edited)
    with pytest.warns(UnlistedOutputWarning) as caught:
        cryostream.denoise(tiny_run.run, [b], out, config=config, workers=1)
    assert "its rows could not be merged: ValueError" in str(caught[0].message)
    assert [Path(n).name for n in _rows(out)["rlnMicrographName"]] == ["b.mrc"]
    assert (out / "denoised_micrographs.star.bak").read_text() == edited


def test_afis_groups_of_the_same_optics_stay_apart(tiny_run, tmp_path, monkeypatch):
    """Two AFIS optics groups of the same values, told apart by their names (a in afis_1, b
    in afis_2), denoised; then a Subset of a whose optics table holds afis_1 alone: b's row
    keeps afis_2 (added back), not folded into afis_1."""
    project = tmp_path / "project"
    star = _ctffind_project(tiny_run, project, names=("a", "b"))
    blocks = starfile.read(star, always_dict=True)
    blocks["optics"] = pd.concat([OPTICS.assign(rlnOpticsGroupName="afis_1"),
                                  OPTICS.assign(rlnOpticsGroupName="afis_2", rlnOpticsGroup=2)],
                                 ignore_index=True)
    blocks["micrographs"]["rlnOpticsGroup"] = [1, 2]
    starfile.write(blocks, star)
    subset = project / "CtfFind/job003/subset.star"
    starfile.write({"optics": blocks["optics"].iloc[[0]],
                    "micrographs": blocks["micrographs"].iloc[[0]]}, subset)
    monkeypatch.chdir(project)
    out = project / "External/job010"
    for given in (star, subset):
        assert _denoise(tiny_run, given, "-o", "External/job010") == 0
    written = starfile.read(out / "denoised_micrographs.star", always_dict=True)
    names = written["optics"].set_index("rlnOpticsGroup")["rlnOpticsGroupName"]
    assert [(Path(n).name, names[g]) for n, g in zip(written["micrographs"]["rlnMicrographName"],
                                                     written["micrographs"]["rlnOpticsGroup"],
                                                     strict=True)] == [("a.mrc", "afis_1"),
                                                                       ("b.mrc", "afis_2")]


def test_the_listing_waits_for_another_call_s_and_shares_no_temporary_file(tiny_run, tmp_path):
    """While another call holds the output folder (its own listing, here held for a second by
    another thread), the listing waits for it, then is written; a temporary file of the fixed
    name another writer would use is left alone (each writer has one of its own)."""
    import threading
    import time

    from cryostream.locks import folder_lock

    out = tmp_path / "out"
    out.mkdir()
    other = out / ".denoised_micrographs.star.partial"
    other.write_text("another writer's\n")
    held, released = threading.Event(), []

    def hold():
        with folder_lock(out, command="denoise", fix="-", what="-o"):
            held.set()
            time.sleep(1.5)
            released.append(time.time())

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait()
    try:
        cryostream.denoise(tiny_run.run, [tiny_run.sim.micrographs[0]], out,
                           config=DenoiseConfig.raw(tile=64), workers=1)
    finally:
        thread.join()
    assert (out / "denoised_micrographs.star").stat().st_mtime >= released[0] - 0.05
    assert other.read_text() == "another writer's\n"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes a read-only file: the permission is never in the way")
def test_a_read_only_earlier_star_file_is_replaced_keeping_its_permissions(tmp_path):
    """An earlier STAR file made read-only (0444) is replaced (a new file renamed over it, as
    its folder allows), the new one read-only too: its permissions are given to the temporary
    file once written, not before (a read-only temporary file could not be written)."""
    from cryostream.io.star_write import write_micrograph_star

    star = tmp_path / "denoised_micrographs.star"
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnMicrographPixelSize": [1.0]})
    write_micrograph_star(star, optics, pd.DataFrame({"rlnMicrographName": ["a.mrc"],
                                                      "rlnOpticsGroup": [1]}))
    star.chmod(0o444)
    write_micrograph_star(star, optics, pd.DataFrame({"rlnMicrographName": ["b.mrc"],
                                                      "rlnOpticsGroup": [1]}))
    assert list(_rows(tmp_path)["rlnMicrographName"]) == ["b.mrc"]
    assert star.stat().st_mode & 0o777 == 0o444
    assert not list(tmp_path.glob("*.partial"))


def _abc(tiny_run, tmp_path):
    """a, b and c (MRC files) denoised into ``out``: the inputs, the folder and the config."""
    mics = tmp_path / "mics"
    mics.mkdir()
    a, b, c = (Path(shutil.copy(tiny_run.sim.micrographs[i], mics / f"{n}.mrc"))
               for i, n in enumerate("abc"))
    out, config = tmp_path / "out", DenoiseConfig.raw(tile=64)
    cryostream.denoise(tiny_run.run, [a, b, c], out, config=config, workers=1)
    return (a, b, c), out, config


def test_a_listing_moved_aside_while_it_is_read_is_merged_from_the_aside_file(
        tiny_run, tmp_path, monkeypatch):
    """Another call remaking an output sets the STAR file aside without waiting for the folder:
    moved just as this call's listing goes to read it, its rows are read from the aside file
    (no crash after the outputs are computed, no .bak), and nothing is left aside; a folder
    without a STAR file has nothing to set aside."""
    import os

    from cryostream.denoise import star_keep

    (a, b, c), out, config = _abc(tiny_run, tmp_path)
    star, aside = out / "denoised_micrographs.star", out / star_keep.ASIDE_NAME
    real, moved = star_keep._merged, []

    def merged(earlier, *args):
        if not moved:  # set aside by the other call, between choosing the file and reading it
            os.replace(star, aside)
            moved.append(earlier.name)
        return real(earlier, *args)

    monkeypatch.setattr(star_keep, "_merged", merged)
    cryostream.denoise(tiny_run.run, [b], out, config=config, workers=1)
    assert moved == ["denoised_micrographs.star"]
    assert [Path(n).name for n in _rows(out)["rlnMicrographName"]] == ["a.mrc", "b.mrc", "c.mrc"]
    assert not aside.exists() and not list(out.glob("*.bak*"))
    star.unlink()
    star_keep.set_aside(out, "b.mrc")  # nothing there (or moved by another call meanwhile)
    assert not aside.exists() and not star.exists()


def test_a_run_stopped_after_remaking_an_output_leaves_the_listing_aside_and_the_next_writes_it(
        tiny_run, tmp_path, monkeypatch):
    """a, b and c denoised; b's input remade, and the call that makes b again stopped before
    its listing is written (Ctrl-C): the STAR file, which listed b as it was, is set aside
    (hidden, under a name that is no listing's), and there is no STAR file; the same command
    again lists a, b and c and leaves nothing aside."""
    import os
    import time

    from cryostream.denoise import api, star_keep

    (a, b, c), out, config = _abc(tiny_run, tmp_path)
    star, aside = out / "denoised_micrographs.star", out / star_keep.ASIDE_NAME
    listed = star.read_text()
    os.utime(b, (time.time() + 100, time.time() + 100))

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(api, "write_listing", stop)
        with pytest.raises(KeyboardInterrupt):
            cryostream.denoise(tiny_run.run, [b], out, config=config, workers=1)
    assert aside.read_text() == listed and not star.exists()
    cryostream.denoise(tiny_run.run, [b], out, config=config, workers=1)
    assert [Path(n).name for n in _rows(out)["rlnMicrographName"]] == ["a.mrc", "b.mrc", "c.mrc"]
    assert not aside.exists() and not list(out.glob(".denoised_micrographs.star*"))


def test_a_folder_that_cannot_be_locked_gets_a_note_not_a_warning_for_the_listing(
        tmp_path, monkeypatch):
    """On a file system without ``flock`` (Lustre without ``-o flock``, some NFS) the
    listing's short hold of the folder is said in an INFO note, not a warning on every run;
    the listing waits up to 120 s (longer than an NFS lock's lease) for another call's."""
    import errno
    import fcntl
    import inspect

    from cryostream.denoise import star_keep

    def no_flock(fd, how):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    said = _levels(monkeypatch)
    try:
        with star_keep._held(tmp_path):
            pass
    finally:
        _unhook()
    assert [level for level, m in said if "cannot be locked" in m] == ["INFO"]
    assert inspect.signature(star_keep._held).parameters["wait_s"].default == 120.0


def test_set_aside_says_where_and_a_run_trained_further_is_an_earlier_checkpoint(
        tmp_path, monkeypatch):
    """set_aside's note names the aside file and says that the same command again writes the
    STAR file if this run stops first; an earlier output made by the same run folder with
    other model files is of an earlier checkpoint of this run, not of another model."""
    from cryostream.denoise import star_keep

    (tmp_path / "denoised_micrographs.star").write_text("listing\n")
    said = _levels(monkeypatch)
    try:
        star_keep.set_aside(tmp_path, "b.mrc")
    finally:
        _unhook()
    assert [level for level, m in said] == ["INFO"]
    assert ".denoised_micrographs.star.aside" in said[0][1]
    assert "running the same command again writes it" in said[0][1]
    mine = {"kind": "DenoiseOutput", "run": "/runs/r1", "model_files": {"last.pt": "2"},
            "config": {"tile": 64}}
    assert star_keep._recipe(mine | {"model_files": {"last.pt": "1"}}, mine, set()) == \
        "an earlier checkpoint of this run"
    assert star_keep._recipe(mine | {"run": "/runs/r2"}, mine, set()) == "another model"


def test_temporary_files_of_killed_writes_are_removed_when_stale(tiny_run, tmp_path):
    """A ``.denoised_micrographs.star.*.partial`` left by a write killed over an hour ago is
    removed when the listing is next written; a recent one (a write maybe in progress) is
    left."""
    import os
    import time

    out = tmp_path / "out"
    out.mkdir()
    old, new = (out / ".denoised_micrographs.star.old1.partial",
                out / ".denoised_micrographs.star.new1.partial")
    for f in (old, new):
        f.write_text("half\n")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    cryostream.denoise(tiny_run.run, [tiny_run.sim.micrographs[0]], out,
                       config=DenoiseConfig.raw(tile=64), workers=1)
    assert not old.exists() and new.exists()



def test_a_row_whose_micrograph_is_gone_is_left_out_with_its_output_kept(tiny_run, tmp_path,
                                                                         monkeypatch):
    """A STAR file of three denoised into a folder, then row 2's micrograph removed and the
    same command run with --permissive: the STAR file had listed the earlier output of that
    row still, with a WARNING line calling it "from outside this call's inputs". Now, as a
    new folder's would, it lists the two denoised (what can be used), and one warning names
    the output kept on disk but not listed, why (its micrograph missing now), and what lists
    it again; restored, the same command lists all three. A micrograph that is bad now is said
    skipped (see its warning)."""
    sim = cryostream.simulate(tmp_path / "sim", 3, config=SimulateConfig(shape=(160, 128), seed=3))
    star, out = tmp_path / "sim" / "micrographs.star", tmp_path / "out"
    assert _denoise(tiny_run, star, "-o", out) == 0
    gone = sim.micrographs[1]
    shutil.copy2(gone, tmp_path / "kept.mrc")
    gone.unlink()
    said, caught = _denoise_heard(monkeypatch, tiny_run, star, "-o", out, "--permissive")
    names = ["sim_0000", "sim_0001", "sim_0002"]
    assert list(_rows(out)["rlnMicrographName"]) == [str(out / f"{n}.mrc") for n in names[::2]]
    assert (out / "sim_0001.mrc").is_file() and (out / "sim_0001.json").is_file()
    assert [m for level, m in said if level == "WARNING"] == []  # none "outside the inputs"
    assert [str(w.message) for w in caught if issubclass(w.category, UnlistedOutputWarning)] == [
        f"{out / 'denoised_micrographs.star'} lists only this call's 2 micrographs; 1 earlier "
        f"output in {out} of this call's inputs is not listed (sim_0001.mrc): its micrograph is "
        f"missing now ({gone}): this call skipped it, and its row is left out, as a new "
        "folder's STAR file would leave it out; the output is kept on disk: restore the "
        "micrograph and run the same command again to list it, or delete sim_0001.mrc and "
        "sim_0001.json"]
    shutil.copy2(tmp_path / "kept.mrc", gone)  # restored as it was: its output is kept
    said, caught = _denoise_heard(monkeypatch, tiny_run, star, "-o", out, "--permissive")
    assert list(_rows(out)["rlnMicrographName"]) == [str(out / f"{n}.mrc") for n in names]
    assert not [w for w in caught if issubclass(w.category, UnlistedOutputWarning)]
    sim.micrographs[2].write_bytes(b"not an MRC file")
    said, caught = _denoise_heard(monkeypatch, tiny_run, star, "-o", out, "--permissive")
    assert list(_rows(out)["rlnMicrographName"]) == [str(out / f"{n}.mrc") for n in names[:2]]
    assert [str(w.message).split("; ", 1)[1] for w in caught
            if issubclass(w.category, UnlistedOutputWarning)] == [
        f"1 earlier output in {out} of this call's inputs is not listed (sim_0002.mrc): this "
        "call skipped its micrograph (see the warnings), and its row is left out, as a new "
        "folder's STAR file would leave it out; the output is kept on disk: restore the "
        "micrograph and run the same command again to list it, or delete sim_0002.mrc and "
        "sim_0002.json"]
