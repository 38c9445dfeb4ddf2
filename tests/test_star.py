"""STAR files in and out (cryostream.io.star) and even/odd half-sums paired by name
(cryostream.io.halves), on real files written by mrcfile and starfile."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
from conftest import write_mrc

from cryostream.errors import ConfigError
from cryostream.io.halves import pair_halves
from cryostream.io.star import StarFileWarning, read_micrograph_star


def _image(shape=(64, 48)):
    return np.zeros(shape, np.float32) + np.arange(shape[1], dtype=np.float32)


def test_pair_halves_by_suffix_and_by_folder(tmp_path: Path):
    for name in ("a_EVN", "b_EVN", "a_ODD", "b_odd"):
        write_mrc(tmp_path / f"{name}.mrc", _image())
    even = [tmp_path / "b_EVN.mrc", tmp_path / "a_EVN.mrc"]
    pairs = pair_halves(even, [tmp_path / "a_ODD.mrc", tmp_path / "b_odd.mrc"])
    assert pairs == [(tmp_path / "b_EVN.mrc", tmp_path / "b_odd.mrc"),
                     (tmp_path / "a_EVN.mrc", tmp_path / "a_ODD.mrc")]
    (tmp_path / "even").mkdir()
    (tmp_path / "odd").mkdir()
    write_mrc(tmp_path / "even" / "m1.mrc", _image())
    write_mrc(tmp_path / "odd" / "m1.mrc", _image())
    assert pair_halves(tmp_path / "even", tmp_path / "odd") == [
        (tmp_path / "even" / "m1.mrc", tmp_path / "odd" / "m1.mrc")]


def test_pair_halves_refuses_unmatched_names_and_shapes(tmp_path: Path):
    for name in ("a_EVN", "b_EVN", "a_ODD"):
        write_mrc(tmp_path / f"{name}.mrc", _image())
    write_mrc(tmp_path / "c_ODD.mrc", _image((64, 40)))
    before = sorted(tmp_path.iterdir())
    with pytest.raises(ConfigError) as err:
        pair_halves([tmp_path / "a_EVN.mrc", tmp_path / "b_EVN.mrc"],
                    [tmp_path / "a_ODD.mrc", tmp_path / "c_ODD.mrc"])
    message = str(err.value)
    assert f"no odd half for {tmp_path / 'b_EVN.mrc'}" in message
    assert f"no even half for {tmp_path / 'c_ODD.mrc'}" in message
    assert "pass both halves of every micrograph" in message
    write_mrc(tmp_path / "b_ODD.mrc", _image((64, 40)))
    with pytest.raises(ConfigError, match=r"b_EVN.mrc is 64 × 48 px but its odd half .*b_ODD.mrc "
                       r"is 64 × 40"):
        pair_halves([tmp_path / "a_EVN.mrc", tmp_path / "b_EVN.mrc"],
                    [tmp_path / "a_ODD.mrc", tmp_path / "b_ODD.mrc"])
    assert sorted(tmp_path.iterdir()) == sorted([*before, tmp_path / "b_ODD.mrc"])  # nothing written
    write_mrc(tmp_path / "b_ODD.mrc", _image(), pixel_size=1.32)  # the right shape, another pixel
    with pytest.raises(ConfigError, match=r"b_EVN.mrc has 0.66 Å pixels but its odd half "
                       r".*b_ODD.mrc has 1.32 Å"):
        pair_halves([tmp_path / "a_EVN.mrc", tmp_path / "b_EVN.mrc"],
                    [tmp_path / "a_ODD.mrc", tmp_path / "b_ODD.mrc"])


def test_read_micrograph_star_even_and_odd_columns(tmp_path: Path):
    for name in ("m_EVN", "m_ODD", "m"):
        write_mrc(tmp_path / f"{name}.mrc", _image())
    star = tmp_path / "corrected.star"
    starfile.write({"micrographs": pd.DataFrame({
        "rlnMicrographName": ["m.mrc"], "rlnMicrographNameEven": ["m_EVN.mrc"],
        "rlnMicrographNameOdd": ["m_ODD.mrc"]})}, star)
    assert read_micrograph_star(star) == [tmp_path / "m.mrc"]
    assert read_micrograph_star(star, column="rlnMicrographNameEven") == [tmp_path / "m_EVN.mrc"]
    assert read_micrograph_star(star, "rlnMicrographNameOdd") == [tmp_path / "m_ODD.mrc"]


# --- STAR in: optics per group, defocus, checked ----------------------------------------------

OPTICS = pd.DataFrame({"rlnOpticsGroupName": ["opticsGroup1", "opticsGroup2"],
                       "rlnOpticsGroup": [1, 2], "rlnMicrographPixelSize": [1.0, 1.25],
                       "rlnVoltage": [300.0, 200.0], "rlnSphericalAberration": [2.7, 0.01],
                       "rlnAmplitudeContrast": [0.1, 0.07]})


def _star(tmp_path: Path, rows: dict, optics=OPTICS, name="micrographs_ctf.star") -> Path:
    star = tmp_path / name
    blocks = {"micrographs": pd.DataFrame(rows)}
    if optics is not None:
        blocks = {"optics": optics, **blocks}
    starfile.write(blocks, star)
    return star


def test_read_star_gives_each_micrograph_its_optics_group_and_defocus(tmp_path: Path):
    from cryostream.io.star import Defocus, Optics, read_star

    for name in ("a", "b"):
        write_mrc(tmp_path / f"{name}.mrc", _image())
    star = _star(tmp_path, {"rlnMicrographName": ["a.mrc", "b.mrc"], "rlnOpticsGroup": [2, 1],
                            "rlnDefocusU": [15000.0, 9000.0], "rlnDefocusV": [14000.0, 9500.0],
                            "rlnDefocusAngle": [30.0, 170.0], "rlnCtfMaxResolution": [3.1, 4.2]})
    got = read_star(star)
    assert [m.path for m in got.micrographs] == [tmp_path / "a.mrc", tmp_path / "b.mrc"]
    a, b = got.micrographs
    assert a.optics == Optics(2, 1.25, 200.0, 0.01, 0.07)
    assert b.optics == Optics(1, 1.0, 300.0, 2.7, 0.1)
    assert a.defocus == Defocus(15000.0, 14000.0, 30.0)
    assert b.defocus == Defocus(9500.0, 9000.0, 80.0)  # U < V: the same ellipse, turned 90°
    assert list(got.table["rlnCtfMaxResolution"]) == [3.1, 4.2]
    assert got.project == tmp_path


@pytest.mark.parametrize("column, value, problem, fix", [
    ("rlnOpticsGroup", 3, "row 1 (a.mrc): optics group 3 is not in data_optics (groups 1, 2)",
     "add the group to data_optics"),
    ("rlnDefocusU", -1200.0, "row 1 (a.mrc): rlnDefocusU=-1200 Å is not a defocus",
     "remove the micrograph's row"),
    ("rlnDefocusV", float("nan"), "row 1 (a.mrc): rlnDefocusV has no value (empty or nan)",
     "run the CTF estimation again, or remove the row"),
    ("rlnDefocusV", "abc", "row 1 (a.mrc): rlnDefocusV='abc' is not a number",
     "correct the column"),
    ("rlnDefocusU", 250000.0, "row 1 (a.mrc): rlnDefocusU=250000 Å is not a defocus",
     "remove the micrograph's row"),
])
def test_read_star_refuses_a_missing_optics_group_and_nonsense_defocus(tmp_path, column, value,
                                                                        problem, fix):
    from cryostream.errors import InvalidMicrographError
    from cryostream.io.star import read_star

    write_mrc(tmp_path / "a.mrc", _image())
    rows = {"rlnMicrographName": ["a.mrc"], "rlnOpticsGroup": [1], "rlnDefocusU": [15000.0],
            "rlnDefocusV": [14000.0], "rlnDefocusAngle": [30.0]}
    star = _star(tmp_path, {**rows, column: [value]})
    with pytest.raises(InvalidMicrographError) as err:
        read_star(star)
    assert str(err.value).startswith(f"{star}: {problem}")
    assert fix in err.value.fix


def test_read_star_of_relion_3_0_takes_the_optics_from_each_row(tmp_path: Path):
    from cryostream.io.star import Optics, read_star

    write_mrc(tmp_path / "a.mrc", _image())
    star = _star(tmp_path, {"rlnMicrographName": ["a.mrc"], "rlnVoltage": [300.0],
                            "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1],
                            "rlnDetectorPixelSize": [5.0], "rlnMagnification": [50000.0]},
                 optics=None)
    assert read_star(star).micrographs[0].optics == Optics(None, 1.0, 300.0, 2.7, 0.1)


@pytest.mark.slow  # 6–11 s: the 1024² simulation and two recorruption checks
def test_a_known_defocus_replaces_the_fit_and_a_wrong_one_gives_way_to_the_fit(tmp_path: Path):
    """The STAR file's defocus goes into the CTF gain (no fit) and its Thon rings' score is
    recorded. One 40 % off, or with V 0.56 µm off U, fails the checks: the defocus fitted from
    the spectrum passes them and is used, with one warning naming both. Where no fit can be
    made (a micrograph under 512 px a side), the wrong one falls back to the radial gain."""
    import warnings

    from cryostream.config import DenoiseConfig, PrepareConfig, SimulateConfig, TrainConfig
    from cryostream.ctf import CTFFallbackWarning, CTFFit
    from cryostream.denoise import match_wiener_gain
    from cryostream.denoise.sources import InputMicrograph
    from cryostream.denoise.steps import Micrograph
    from cryostream.io.star import Defocus
    from cryostream.matched import estimate_noise, tile_for
    from cryostream.runs import RunRecord
    from cryostream.simulate.micrograph import simulate_micrograph

    sim = simulate_micrograph(SimulateConfig(shape=(1024, 1024), seed=5,
                                             detector_nps_nyquist=0.1), 0)
    noisy = (sim.noisy / np.percentile(sim.noisy, 95)).astype(np.float32)
    record = RunRecord(path=tmp_path, train=TrainConfig(), prepare=PrepareConfig(), store="s.h5")
    config = DenoiseConfig.raw(ctf_gain=True)
    true = (sim.defocus_u_angstrom, sim.defocus_v_angstrom, sim.astigmatism_angle_deg % 180)
    wrong = [Defocus(true[0] * 1.4, true[1] * 1.4, true[2]),
             Defocus(true[0], true[1] + 5600, true[2])]
    for image, defocus in [(noisy, Defocus(*true))] + [(noisy, d) for d in wrong] \
            + [(noisy[:480, :480].copy(), wrong[0])]:
        kind = "cryoSPARC .cs file" if defocus is wrong[1] else "STAR file"  # a table's fields
        micrograph = InputMicrograph("m.mrc", 0.6575, kind, config.optics, defocus, listed_in=kind)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got, found = micrograph.pipeline(config).run(
                Micrograph(image, 0.6575, record), lambda image: image)
        fallbacks = [str(w.message) for w in caught if issubclass(w.category, CTFFallbackWarning)]
        ctf = found["ctf"]
        if defocus == Defocus(*true):  # used as given, its rings found
            assert found["ctf_used"] and ctf["defocus_from"] == "STAR file" and not fallbacks
            assert ctf["defocus_u_angstrom"] == defocus.defocus_u_angstrom
            assert found["given_defocus_rings_z"] >= 3.5 and ctf["score"] is None
            fit = CTFFit(*dataclasses.astuple(defocus), 0.0, 0.6575)
        elif image is noisy:  # the fit is used in its place
            assert found["ctf_used"] and ctf["defocus_from"] == "spectrum", found
            assert abs(ctf["defocus_u_angstrom"] - true[0]) < 300
            assert abs(ctf["defocus_v_angstrom"] - true[1]) < 300
            assert len(fallbacks) == 1 and "is not used" in fallbacks[0]
            fit = CTFFit(ctf["defocus_u_angstrom"], ctf["defocus_v_angstrom"],
                         ctf["astigmatism_angle_deg"], 0.0, 0.6575)
            given = CTFFit(*dataclasses.astuple(defocus), 0.0, 0.6575)
            assert given.in_words() in fallbacks[0] and fit.in_words() in fallbacks[0]
            assert ("ctf/df1_A" if kind != "STAR file" else "rlnDefocusU") in fallbacks[0]
            assert f"of its {kind}" in fallbacks[0]
            assert kind == "STAR file" or "STAR" not in fallbacks[0]
        else:  # nothing to fit: the radial gain, the given defocus named
            assert not found["ctf_used"] and ctf["defocus_from"] == kind
            assert len(fallbacks) == 1 and "radial Wiener gain" in fallbacks[0]
            fit = None
        noise = estimate_noise(image, 0.6575, tile=tile_for(image.shape))
        if fit is None or image is not noisy or defocus == Defocus(*true):
            expected = match_wiener_gain(image, image, noise, ctf=fit)
            np.testing.assert_array_equal(got, expected)


@pytest.mark.slow  # about 20 s: two 1024² micrographs, each checked and one fitted again
def test_a_wrong_star_defocus_warns_once_when_micrographs_run_side_by_side(tiny_run,
                                                                             tmp_path: Path):
    """Two micrographs denoised at once (two workers): the one whose row has V 5600 Å off U
    takes the fitted defocus with one warning naming it; the other keeps its row's, with
    none. (The check's warnings are not caught and re-raised, which two threads at once would
    lose.)"""
    import warnings

    import cryostream
    from cryostream.config import DenoiseConfig, SimulateConfig
    from cryostream.ctf import CTFFallbackWarning
    from cryostream.simulate.micrograph import simulate_micrograph

    sim = simulate_micrograph(SimulateConfig(shape=(1024, 1024), seed=5,
                                             detector_nps_nyquist=0.1), 0)
    for name in ("a", "b"):
        write_mrc(tmp_path / f"{name}.mrc", sim.noisy.astype(np.float32), 0.6575)
    u, v, angle = sim.defocus_u_angstrom, sim.defocus_v_angstrom, sim.astigmatism_angle_deg
    star = _star(tmp_path, {"rlnMicrographName": ["a.mrc", "b.mrc"], "rlnOpticsGroup": [1, 1],
                            "rlnDefocusU": [u, u], "rlnDefocusV": [v, v + 5600],
                            "rlnDefocusAngle": [angle, angle]}, optics=pd.DataFrame({
                                "rlnOpticsGroup": [1], "rlnVoltage": [300.0],
                                "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1],
                                "rlnMicrographPixelSize": [0.6575]}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cryostream.denoise(tiny_run.run, star, tmp_path / "out", workers=2,
                           config=DenoiseConfig.raw(ctf_gain=True, tile=128))
    fallbacks = [str(w.message) for w in caught if issubclass(w.category, CTFFallbackWarning)]
    assert len(fallbacks) == 1 and fallbacks[0].startswith(str(tmp_path / "b.mrc")), fallbacks
    found = {n: json.loads((tmp_path / "out" / f"{n}.json").read_text())["found"]
             for n in ("a", "b")}
    assert found["a"]["ctf"]["defocus_from"] == "STAR file" and found["a"]["ctf_used"]
    assert found["b"]["ctf"]["defocus_from"] == "spectrum" and found["b"]["ctf_used"]
    assert found["a"]["given_defocus_rings_z"] >= 3.5


# --- not a list of micrographs: a particles STAR file, a micrograph on two rows ---------------

def test_a_particles_star_file_is_refused_before_anything_is_written(tiny_run, tmp_path, capsys):
    """A particles STAR file (many rows per micrograph, with coordinates) given where the
    micrographs STAR file belongs: one line naming it, how many particles on how many
    micrographs, and which file to give; nothing written (it denoised each micrograph once and
    carried the coordinates into the output STAR file)."""
    from cryostream.cli import main

    for name in ("a", "b"):
        write_mrc(tmp_path / f"{name}.mrc", _image())
    optics = OPTICS.drop(columns="rlnMicrographPixelSize").assign(rlnImagePixelSize=[1.0, 1.25])
    star = tmp_path / "particles.star"
    starfile.write({"optics": optics, "particles": pd.DataFrame({
        "rlnCoordinateX": [10.0, 20.0, 30.0, 12.0, 22.0], "rlnCoordinateY": [5.0, 6.0, 7.0, 8.0, 9.0],
        "rlnMicrographName": ["a.mrc", "a.mrc", "a.mrc", "b.mrc", "b.mrc"],
        "rlnOpticsGroup": [1] * 5, "rlnDefocusU": [15000.0] * 5, "rlnDefocusV": [14000.0] * 5,
        "rlnDefocusAngle": [30.0] * 5})}, star)
    problem = (f"{star}: a particles STAR file (data_particles: 5 particles on 2 micrographs), "
               "not a micrographs one; give the micrographs STAR file instead (e.g. "
               "CtfFind/job003/micrographs_ctf.star or MotionCorr/job002/"
               "corrected_micrographs.star)")
    out = tmp_path / "out"
    assert main(["denoise", str(tiny_run.run), str(star), "-o", str(out)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"cryostream denoise: error: {problem}"]
    assert not out.exists()
    assert main(["plan", str(star)]) == 2  # every command that reads micrographs
    assert capsys.readouterr().err.splitlines() == [f"cryostream plan: error: {problem}"]


def test_a_movies_star_file_is_said_to_need_motion_correction(tmp_path, capsys):
    """The movies STAR file of a RELION Import job (``data_movies`` with
    ``rlnMicrographMovieName``) given where the micrographs belong: named as movies to
    motion-correct, with the file to give after (it said only that no block has a
    rlnMicrographName column)."""
    from cryostream.cli import main

    star = tmp_path / "Import/job001/movies.star"
    star.parent.mkdir(parents=True)
    optics = OPTICS.drop(columns="rlnMicrographPixelSize").assign(
        rlnMicrographMoviePixelSize=[0.66, 0.66])
    starfile.write({"optics": optics, "movies": pd.DataFrame({
        "rlnMicrographMovieName": ["Movies/a.tiff", "Movies/b.tiff", "Movies/c.tiff"],
        "rlnOpticsGroup": [1, 1, 2]})}, star)
    assert main(["denoise", str(star), "-o", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"cryostream denoise: error: {star}: a movies STAR file (data_movies: 3 movies, in "
        "rlnMicrographMovieName), not a micrographs one; motion-correct the movies first "
        "(RELION's MotionCorr job) and give the micrographs STAR file it writes (e.g. "
        "MotionCorr/job002/corrected_micrographs.star)"]
    assert not (tmp_path / "out").exists()


def test_a_micrograph_on_two_rows_that_disagree_is_refused_and_on_two_alike_rows_used_once(
        tmp_path: Path):
    """Two rows naming one micrograph with different values (here its defocus) are refused,
    naming the file, the micrograph and both rows; two alike rows give it once, with a
    warning naming it (the second row was dropped without a word)."""
    from cryostream.errors import InvalidMicrographError
    from cryostream.io.star import read_star

    for name in ("a", "b"):
        write_mrc(tmp_path / f"{name}.mrc", _image())
    rows = {"rlnMicrographName": ["a.mrc", "b.mrc", "a.mrc"], "rlnOpticsGroup": [1, 1, 1],
            "rlnDefocusU": [15000.0, 9000.0, 16000.0], "rlnDefocusV": [14000.0, 8000.0, 14000.0],
            "rlnDefocusAngle": [30.0, 30.0, 30.0]}
    star = _star(tmp_path, rows)
    with pytest.raises(InvalidMicrographError) as err:
        read_star(star)
    assert str(err.value) == (f"{star}: rows 1 and 3 both list a.mrc and they disagree "
                              "(rlnDefocusU 15000.0 and 16000.0); remove the wrong row (RELION "
                              "lists each micrograph once)")
    star = _star(tmp_path, {**rows, "rlnDefocusU": [15000.0, 9000.0, 15000.0]})
    with pytest.warns(StarFileWarning) as caught:
        got = read_star(star)
    assert [str(w.message) for w in caught] == [
        f"{star}: rows 1 and 3 both list a.mrc with the same values; the micrograph is used once"]
    assert [(m.path, m.row) for m in got.micrographs] == [(tmp_path / "a.mrc", 0),
                                                          (tmp_path / "b.mrc", 1)]


def test_every_row_with_a_bad_defocus_is_named_in_one_line(tmp_path: Path):
    """A CTF job that failed on several micrographs: the first five bad rows are named with
    their problem (an empty field says so), then how many more; not the first one alone."""
    from cryostream.errors import InvalidMicrographError
    from cryostream.io.star import read_star

    names = [f"m{i}.mrc" for i in range(8)]
    for name in names:
        write_mrc(tmp_path / name, _image())
    nan = float("nan")
    star = _star(tmp_path, {"rlnMicrographName": names, "rlnOpticsGroup": [1] * 8,
                            "rlnDefocusU": [15000.0, nan, -5.0, 15000.0, 0.0, 15000.0, nan, nan],
                            "rlnDefocusV": [14000.0, nan, 14000.0, nan, 14000.0, 14000.0, 1.0,
                                            nan]})
    with pytest.raises(InvalidMicrographError) as err:
        read_star(star)
    empty = "has no value (empty or nan)"
    bound = "Å is not a defocus (expected 0 < defocus ≤ 100000 Å, underfocus positive)"
    assert str(err.value) == (
        f"{star}: 6 of the 8 rows have a bad defocus (row 2 (m1.mrc): rlnDefocusU {empty}; "
        f"row 3 (m2.mrc): rlnDefocusU=-5 {bound}; row 4 (m3.mrc): rlnDefocusV {empty}; "
        f"row 5 (m4.mrc): rlnDefocusU=0 {bound}; row 7 (m6.mrc): rlnDefocusU {empty}; and 1 "
        "more); run the CTF estimation again, or remove those micrographs' rows")


# --- the pixel size: the STAR file's, with a word where the header says otherwise ---------------

def test_a_star_pixel_size_other_than_the_header_s_is_used_with_one_warning(tmp_path: Path):
    """The STAR file's pixel size wins over the MRC headers' (RELION's headers are often wrong),
    but where they differ one warning per STAR file names it, both values and which is used;
    none where they agree or ``--pixel-size`` decides."""
    import warnings

    from cryostream.config import DenoiseConfig
    from cryostream.denoise.sources import gather_inputs

    for name in ("a", "b", "c"):
        write_mrc(tmp_path / f"{name}.mrc", _image(), pixel_size=0.66)
    rows = {"rlnMicrographName": ["a.mrc", "b.mrc", "c.mrc"], "rlnOpticsGroup": [1, 1, 1]}
    star = _star(tmp_path, rows, optics=OPTICS.assign(rlnMicrographPixelSize=[1.32, 1.25]))
    with pytest.warns(StarFileWarning) as caught:
        got = gather_inputs(star, config=DenoiseConfig())
    assert [str(w.message) for w in caught] == [
        f"{star}: its pixel size differs from the MRC headers' (1.32 Å in the STAR file, 0.66 Å "
        "in the header of a.mrc and 2 more); the STAR file's is used (RELION's headers are often "
        "wrong): pass --pixel-size Å (Python: pixel_size_angstrom=) if it is not right"]
    assert [(m.pixel_size_angstrom, m.pixel_size_from) for m in got.micrographs] == [
        (1.32, "STAR file")] * 3
    agreeing = _star(tmp_path, rows, optics=OPTICS.assign(rlnMicrographPixelSize=[0.66, 1.25]),
                     name="agreeing.star")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gather_inputs(agreeing, config=DenoiseConfig())
        gather_inputs(star, config=DenoiseConfig(), pixel_size_angstrom=1.32)


def test_star_optics_groups_of_several_pixel_sizes_are_not_compared(tmp_path: Path):
    """denoise warns where the headers it takes pixel sizes from give sizes apart (prepare's
    and fit's warning); a STAR file's optics groups state each group's pixel size, and groups of
    several magnifications (1 and 1.25 Å here, their headers agreeing) are the scientist's to
    give: no warning, and a group's 1 Å is no placeholder. Files given beside the STAR file
    take their headers' sizes, compared among themselves: the one at 1 Å is named."""
    import warnings

    from cryostream.config import DenoiseConfig
    from cryostream.denoise.pixels import PixelSizeWarning
    from cryostream.denoise.sources import gather_inputs

    for name, pixel in (("a", 1.0), ("b", 1.25), ("x", 0.66), ("y", 0.66), ("z", 1.0)):
        write_mrc(tmp_path / f"{name}.mrc", _image(), pixel_size=pixel)
    star = _star(tmp_path, {"rlnMicrographName": ["a.mrc", "b.mrc"], "rlnOpticsGroup": [1, 2]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = gather_inputs(star, config=DenoiseConfig(), note_optics=False)
    assert [m.pixel_size_angstrom for m in got.micrographs] == [1.0, 1.25]
    loose = [tmp_path / f"{n}.mrc" for n in "xyz"]
    with pytest.warns(PixelSizeWarning) as caught:
        gather_inputs([star, *loose], config=DenoiseConfig(), note_optics=False)
    said = [str(w.message) for w in caught if issubclass(w.category, PixelSizeWarning)]
    assert len(said) == 1 and said[0].startswith(
        "the micrographs' headers give 2 pixel sizes (0.66 Å (x.mrc and 1 more), 1 Å (z.mrc))"), said
    assert "z.mrc gives 1 Å, the other 2 micrographs 0.66 Å; exactly 1 Å is most likely a " \
        "placeholder" in said[0]


def test_a_micrograph_given_by_a_star_file_and_by_its_path_takes_the_star_row(tmp_path: Path):
    """A micrograph named both by a STAR file and by its path (or a folder) is denoised once
    with the STAR file's row (its defocus and optics), whichever came first; two STAR files
    that list it give one warning and the first file's row."""
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.sources import gather_inputs
    from cryostream.io.star import Defocus

    for name in ("a", "b"):
        write_mrc(tmp_path / f"{name}.mrc", _image(), pixel_size=1.0)
    rows = {"rlnMicrographName": ["a.mrc", "b.mrc"], "rlnOpticsGroup": [1, 1],
            "rlnDefocusU": [15000.0, 9000.0], "rlnDefocusV": [14000.0, 8500.0]}
    star = _star(tmp_path, rows)
    for inputs in ([tmp_path / "a.mrc", star], [tmp_path, star], [star, tmp_path / "a.mrc"]):
        got = gather_inputs(inputs, config=DenoiseConfig())
        assert got.star is not None  # the output STAR file carries its tables
        assert [(Path(m.source).name, m.defocus) for m in got.micrographs] == [
            ("a.mrc", Defocus(15000.0, 14000.0, 0.0)), ("b.mrc", Defocus(9000.0, 8500.0, 0.0))]
    again = gather_inputs([star, tmp_path / star.name, star], config=DenoiseConfig())  # one file
    assert len(again.micrographs) == 2 and again.star is not None
    other = _star(tmp_path, {**rows, "rlnDefocusU": [20000.0, 9000.0]}, name="other.star")
    with pytest.warns(StarFileWarning) as caught:
        got = gather_inputs([star, other], config=DenoiseConfig())
    assert [str(w.message) for w in caught] == [
        "2 micrographs are listed by two STAR files (a.mrc in micrographs_ctf.star and "
        "other.star, …): each is denoised once, with the first STAR file's values"]
    assert got.micrographs[0].defocus.defocus_u_angstrom == 15000.0


def test_a_pixel_size_argument_far_from_the_headers_is_used_with_one_warning(tmp_path: Path):
    """``--pixel-size`` 10× the headers' (a typo, a binning mix-up) is used as given, with one
    warning naming both values; near the headers' (a header rounded, a placeholder 1 Å), or
    the value the STAR file gives, none."""
    import warnings

    from cryostream.config import DenoiseConfig
    from cryostream.denoise.pixels import PixelSizeWarning
    from cryostream.denoise.sources import gather_inputs

    paths = [write_mrc(tmp_path / f"{n}.mrc", _image(), pixel_size=0.6575) for n in "abc"]
    with pytest.warns(PixelSizeWarning) as caught:
        got = gather_inputs(paths, config=DenoiseConfig(), pixel_size_angstrom=6.575)
    assert [str(w.message) for w in caught] == [
        "--pixel-size 6.575 Å is 10× the 0.6575 Å in the MRC header of a.mrc and 2 more; it is "
        "used as given: check it (a wrong pixel size misplaces the CTF fit; nothing to do if "
        "the micrographs' own are wrong)"]
    assert {m.pixel_size_angstrom for m in got.micrographs} == {6.575}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gather_inputs(paths, config=DenoiseConfig(), pixel_size_angstrom=0.66)
        gather_inputs(paths, config=DenoiseConfig(), pixel_size_angstrom=1.0)
    # a STAR file's pixel size replaced by one 1 % or more off: said, whatever the headers say
    star = _star(tmp_path, {"rlnMicrographName": ["a.mrc", "b.mrc"], "rlnOpticsGroup": [1, 1]})
    with pytest.warns(PixelSizeWarning) as caught:
        gather_inputs([star], config=DenoiseConfig(), pixel_size_angstrom=1.5)
    assert [str(w.message) for w in caught][0].startswith(
        "--pixel-size 1.5 Å is 1.5× the 1 Å in its STAR file of a.mrc and 1 more; it is used "
        "as given")


def test_optics_taken_from_no_star_file_or_option_are_said(tmp_path: Path, notes):
    """Micrographs without a STAR file's optics, and no --voltage, --cs or
    --amplitude-contrast: one note says the defaults the CTF fit and the output STAR file
    take, and how to give others; with a STAR file's optics, or all given, none; with some
    given, one of the others."""
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.sources import gather_inputs

    paths = [write_mrc(tmp_path / f"{n}.mrc", _image(), pixel_size=0.6575) for n in "ab"]
    gather_inputs(paths, config=DenoiseConfig())
    assert [n for n in notes if "optics" in n] == [
        "2 micrographs have no microscope optics from a STAR file or an option: the CTF fit and "
        "the output STAR file's optics table take 300 kV, Cs 2.7 mm and amplitude contrast 0.1 "
        "(a Krios; nothing to do if they are your microscope's); for another, pass --voltage, "
        "--cs and --amplitude-contrast (Python: the DenoiseConfig's voltage_kv, cs_mm and "
        "amplitude_contrast), e.g. --voltage 200 for a Glacios or a Talos Arctica"]
    notes.clear()
    gather_inputs(paths, config=DenoiseConfig(voltage_kv=200.0))  # the others still assumed
    assert [n.split(" (")[0] for n in notes if "optics" in n] == [
        "2 micrographs have no Cs or amplitude contrast from a STAR file or an option"]
    notes.clear()
    gather_inputs(paths, config=DenoiseConfig(voltage_kv=200.0, cs_mm=1.4, amplitude_contrast=0.07))
    gather_inputs([_star(tmp_path, {"rlnMicrographName": ["a.mrc", "b.mrc"],
                                    "rlnOpticsGroup": [1, 2]})], config=DenoiseConfig())
    assert not [n for n in notes if "optics" in n]
    # micrographs skipped under permissive are not counted (it said 3 for the 2 denoised)
    from cryostream.io.stack import MicrographSkippedWarning

    (tmp_path / "empty.mrc").write_bytes(b"")
    with pytest.warns(MicrographSkippedWarning, match="empty.mrc"):
        gather_inputs([*paths, tmp_path / "empty.mrc"], config=DenoiseConfig(), permissive=True)
    assert [n.split(":")[0] for n in notes if "optics" in n] == [
        "2 micrographs have no microscope optics from a STAR file or an option"]


# --- STAR out: denoised_micrographs.star, read back with starfile -----------------------------


def _project(tiny_run, root: Path) -> Path:
    """A RELION project: two micrographs under Micrographs/ and CTFFIND's STAR file in
    CtfFind/job003/ naming them relative to the project folder."""
    import shutil

    (root / "Micrographs").mkdir(parents=True)
    (root / "CtfFind" / "job003").mkdir(parents=True)
    for i, name in enumerate(("a", "b")):
        shutil.copy(tiny_run.sim.micrographs[i], root / "Micrographs" / f"{name}.mrc")
    return _star(root / "CtfFind" / "job003", {
        "rlnMicrographName": ["Micrographs/a.mrc", "Micrographs/b.mrc"], "rlnOpticsGroup": [1, 2],
        "rlnCtfImage": ["CtfFind/job003/Micrographs/a.ctf:mrc", "CtfFind/job003/Micrographs/b.ctf:mrc"],
        "rlnDefocusU": [19000.0, 21000.0], "rlnDefocusV": [18800.0, 20500.0],
        "rlnDefocusAngle": [92.0, 10.0], "rlnCtfMaxResolution": [3.1, 4.2]})


def test_denoise_reads_a_relion_star_file_and_writes_one_for_import(tiny_run, tmp_path,
                                                                    monkeypatch):
    """Run from the project folder, as RELION runs: the output STAR file's names, its own and
    those carried over (rlnCtfImage), are relative to it."""
    from cryostream.cli import main

    root = tmp_path / "project"
    star = _project(tiny_run, root)
    out = root / "External" / "job010"
    monkeypatch.chdir(root)
    with pytest.warns(StarFileWarning) as caught:  # the headers say 0.6575 Å
        assert main(["denoise", str(tiny_run.run), str(star), "-o", str(out), "--raw", "--tile",
                     "64", "--workers", "1"]) == 0
    assert [str(w.message) for w in caught] == [
        f"{star}: its pixel size differs from the MRC headers' (1 Å in the STAR file, 0.6575 Å "
        "in the header of a.mrc; 1.25 Å in the STAR file, 0.6575 Å in the header of b.mrc); the "
        "STAR file's is used (RELION's headers are often wrong): pass --pixel-size Å (Python: "
        "pixel_size_angstrom=) if it is not right"]
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.mrc", "b.json", "b.mrc",
                                                     "denoised_micrographs.star"]
    for name, pixel, voltage in (("a", 1.0, 300.0), ("b", 1.25, 200.0)):  # the optics group's
        with mrcfile.open(out / f"{name}.mrc") as m:
            assert m.voxel_size.x == pytest.approx(pixel)
        record = json.loads((out / f"{name}.json").read_text())
        assert record["config"]["voltage_kv"] == voltage
        assert record["given"]["pixel_size_from"] == "STAR file"
    written = starfile.read(out / "denoised_micrographs.star", always_dict=True)
    pd.testing.assert_frame_equal(written["optics"], OPTICS)  # as it was
    rows = written["micrographs"]
    assert list(rows["rlnMicrographName"]) == ["External/job010/a.mrc", "External/job010/b.mrc"]
    original = starfile.read(star, always_dict=True)["micrographs"]
    for column in original.columns.drop("rlnMicrographName"):  # every other column carried over
        assert list(rows[column]) == list(original[column]), column


def test_pixel_size_option_reaches_the_output_star_optics(tiny_run, tmp_path):
    """``--pixel-size`` corrects a STAR file's pixel size: the outputs' headers and the output
    STAR file's optics table agree on it (RELION and cryoSPARC read the STAR file)."""
    from cryostream.cli import main

    root = tmp_path / "project"
    star = _project(tiny_run, root)
    out = root / "den"
    from cryostream.denoise.pixels import PixelSizeWarning

    with pytest.warns(PixelSizeWarning, match="1.5 Å is 1.5× the 1 Å in its STAR file of a.mrc"):
        assert main(["denoise", str(tiny_run.run), str(star), "-o", str(out), "--raw", "--tile",
                     "64", "--workers", "1", "--pixel-size", "1.5"]) == 0  # the headers say 0.6575
    with mrcfile.open(out / "a.mrc") as m:
        assert m.voxel_size.x == pytest.approx(1.5)
    written = starfile.read(out / "denoised_micrographs.star", always_dict=True)
    assert list(written["optics"]["rlnMicrographPixelSize"]) == [1.5, 1.5]


def test_the_particle_pixel_size_is_not_the_micrograph_s(tmp_path: Path):
    """``rlnImagePixelSize`` (the particle boxes', often binned) never sets a micrograph's."""
    from cryostream.io.star import read_star

    write_mrc(tmp_path / "a.mrc", _image())
    optics = OPTICS.drop(columns="rlnMicrographPixelSize").assign(rlnImagePixelSize=[4.0, 4.0])
    star = _star(tmp_path, {"rlnMicrographName": ["a.mrc"], "rlnOpticsGroup": [1]}, optics=optics)
    assert read_star(star).micrographs[0].optics.pixel_size_angstrom is None


def test_star_out_from_mrc_inputs_has_an_optics_table_of_the_header_and_config(
        tiny_run, tmp_path, monkeypatch):
    from cryostream.cli import main

    monkeypatch.chdir(tmp_path)  # the project folder RELION runs in
    assert main(["denoise", str(tiny_run.run), *map(str, tiny_run.sim.micrographs[:2]), "-o", "den",
                 "--raw", "--tile", "64", "--workers", "1", "--voltage", "200", "--cs", "2.7"]) == 0
    written = starfile.read(tmp_path / "den" / "denoised_micrographs.star", always_dict=True)
    optics = written["optics"]
    assert list(optics["rlnOpticsGroup"]) == [1]
    assert optics["rlnMicrographPixelSize"][0] == pytest.approx(0.6575)
    assert (optics["rlnVoltage"][0], optics["rlnSphericalAberration"][0],
            optics["rlnAmplitudeContrast"][0]) == (200.0, 2.7, 0.1)
    names = [Path(p).name for p in tiny_run.sim.micrographs[:2]]
    assert list(written["micrographs"]["rlnMicrographName"]) == [f"den/{n}" for n in names]
    assert list(written["micrographs"]["rlnOpticsGroup"]) == [1, 1]


def test_star_out_from_a_star_without_optics_table_carries_its_other_columns(
        tiny_run, tmp_path, monkeypatch):
    """A RELION 3.0 STAR file (optics in each row, as ``simulate`` writes): the output gets an
    optics table of those values and keeps the rows' other columns (here the even/odd names)."""
    from cryostream.cli import main

    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        shutil.copy(tiny_run.sim.micrographs[0], tmp_path / f"{name}.mrc")
    star = _star(tmp_path, {"rlnMicrographName": ["a.mrc", "b.mrc"],
                            "rlnMicrographNameEven": ["a_EVN.mrc", "b_EVN.mrc"],
                            "rlnCtfMaxResolution": [4.5, 5.5],
                            "rlnVoltage": [200.0, 200.0], "rlnSphericalAberration": [2.7, 2.7],
                            "rlnAmplitudeContrast": [0.07, 0.07]}, optics=None)
    assert main(["denoise", str(tiny_run.run), str(star), "-o", "den", "--raw", "--tile", "64",
                 "--workers", "1"]) == 0
    written = starfile.read(tmp_path / "den" / "denoised_micrographs.star", always_dict=True)
    rows = written["micrographs"]
    assert list(rows["rlnMicrographName"]) == ["den/a.mrc", "den/b.mrc"]
    assert list(rows["rlnMicrographNameEven"]) == ["a_EVN.mrc", "b_EVN.mrc"]
    assert list(rows["rlnCtfMaxResolution"]) == [4.5, 5.5]
    assert "rlnVoltage" not in rows.columns
    assert (written["optics"]["rlnVoltage"][0], written["optics"]["rlnAmplitudeContrast"][0]) == (
        200.0, 0.07)


def test_a_star_row_of_a_missing_optics_group_writes_nothing(tiny_run, tmp_path, capsys):
    from cryostream.cli import main

    write_mrc(tmp_path / "a.mrc", _image())
    star = _star(tmp_path, {"rlnMicrographName": ["a.mrc"], "rlnOpticsGroup": [7]})
    assert main(["denoise", str(tiny_run.run), str(star), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{star}: row 1 (a.mrc): optics group 7 is not in data_optics (groups 1, 2)" in err
    assert "add the group to data_optics" in err and not (tmp_path / "out").exists()


# --- a row whose file is missing ---------------------------------------------------------------

def _relion_layout(root: Path, names: list[str]) -> Path:
    """CtfFind/job003/micrographs_ctf.star under ``root`` naming MotionCorr's micrographs
    relative to the project folder ``root``; only ``a.mrc`` is there."""
    folder = root / "MotionCorr" / "job002" / "Micrographs"
    folder.mkdir(parents=True)
    # a ramp in both directions: no row or column of one value (prepare refuses those)
    write_mrc(folder / "a.mrc", _image() + 0.5 * np.arange(64, dtype=np.float32)[:, None])
    (root / "CtfFind" / "job003").mkdir(parents=True)
    return _star(root / "CtfFind" / "job003", {
        "rlnMicrographName": [f"MotionCorr/job002/Micrographs/{n}" for n in names],
        "rlnOpticsGroup": [1] * len(names)}, optics=OPTICS.assign(rlnMicrographPixelSize=[0.66, 1.25]))


def test_a_missing_row_names_the_star_file_the_row_and_where_it_was_looked_for(
        tmp_path, monkeypatch):
    """RELION's names are relative to the project folder (where RELION runs): the message
    names the STAR file, the row and its name, where it was looked for and the fix (the row,
    where earlier rows were found; else the folder cryostream runs from: a moved project, below);
    ``permissive`` leaves the row out with that message as a warning."""
    from cryostream.errors import InvalidMicrographError
    from cryostream.io.stack import MicrographSkippedWarning
    from cryostream.io.star import read_star

    root = (tmp_path / "project").resolve()
    star = _relion_layout(root, ["a.mrc", "sim_0009.mrc"])
    monkeypatch.chdir(root)
    relative = Path("CtfFind/job003/micrographs_ctf.star")
    # row 1 was found in the working directory: the project folder of every row, so the
    # row is what is wrong, not where cryostream runs
    problem = (f"{relative}: row 2 (MotionCorr/job002/Micrographs/sim_0009.mrc): no such file "
               f"in the RELION project folder {root}, where the rows before it were found; "
               "correct the row's rlnMicrographName, or pass --permissive to skip it")
    with pytest.raises(InvalidMicrographError) as err:
        read_star(relative)
    assert str(err.value) == problem
    with pytest.warns(MicrographSkippedWarning) as caught:
        kept = read_star(relative, permissive=True).micrographs
    # the warning without the advice to pass --permissive, which was passed
    assert [str(w.message) for w in caught] == [f"skipping {problem.rsplit('; ', 1)[0]}"]
    assert [(m.path, m.row) for m in kept] == [(root / "MotionCorr/job002/Micrographs/a.mrc", 0)]
    with pytest.warns(MicrographSkippedWarning, match="row 2"):
        assert read_micrograph_star(star, permissive=True) == [m.path for m in kept]


def test_a_missing_row_through_the_command_is_one_line(tmp_path, monkeypatch, capsys):
    from cryostream.cli import main

    root = tmp_path / "project"
    _relion_layout(root, ["a.mrc", "b.mrc"])
    monkeypatch.chdir(root)
    assert main(["plan", "CtfFind/job003/micrographs_ctf.star"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(
        "cryostream plan: error: CtfFind/job003/micrographs_ctf.star: row 2 "
        "(MotionCorr/job002/Micrographs/b.mrc): no such file in the RELION project folder")


def test_a_missing_first_row_is_named_in_the_folder_where_the_others_are(tmp_path, monkeypatch):
    """The first rows' micrographs gone, a later row's there (a few micrographs deleted from a
    project): the project folder is the one the rows found are in, so the error names the rows
    as what is wrong and says how to skip them; it said to run cryostream from the project
    folder, where it was run, and named the folders above the STAR file it looked in."""
    from cryostream.errors import InvalidMicrographError
    from cryostream.io.stack import MicrographSkippedWarning
    from cryostream.io.star import read_star

    root = (tmp_path / "project").resolve()
    _relion_layout(root, ["gone.mrc", "lost.mrc", "a.mrc"])
    monkeypatch.chdir(root)
    relative = Path("CtfFind/job003/micrographs_ctf.star")
    with pytest.raises(InvalidMicrographError) as err:
        read_star(relative)
    assert str(err.value) == (
        f"{relative}: row 1 (MotionCorr/job002/Micrographs/gone.mrc): no such file in the RELION "
        f"project folder {root}, where other rows are found; 2 of the 3 rows are not found there; "
        "correct the row's rlnMicrographName, or pass --permissive to skip it")
    with pytest.warns(MicrographSkippedWarning) as caught:
        kept = read_star(relative, permissive=True)
    assert [str(w.message) for w in caught] == [
        f"skipping {relative}: row {i} (MotionCorr/job002/Micrographs/{name}): no such file in "
        f"the RELION project folder {root}, where other rows are found"
        for i, name in ((1, "gone.mrc"), (2, "lost.mrc"))]
    assert [m.row for m in kept.micrographs] == [2] and kept.project == root


def test_a_moved_project_says_how_many_rows_are_missing(tmp_path, monkeypatch):
    """Every row's micrograph gone (a project moved without its MotionCorr folder): the error
    names the first row and says how many of the rows are not found, not one row a run."""
    from cryostream.errors import InvalidMicrographError
    from cryostream.io.star import read_star

    root = tmp_path / "project"
    _relion_layout(root, ["a.mrc", "b.mrc", "c.mrc"])
    for name in ("a.mrc", "b.mrc", "c.mrc"):
        (root / "MotionCorr/job002/Micrographs" / name).unlink(missing_ok=True)
    monkeypatch.chdir(root)
    with pytest.raises(InvalidMicrographError) as err:
        read_star("CtfFind/job003/micrographs_ctf.star")
    assert "row 1 (MotionCorr/job002/Micrographs/a.mrc): no such file" in str(err.value)
    assert "; 3 of the 3 rows are not found there; run cryostream from" in str(err.value)


def test_permissive_does_not_skip_every_row_of_a_star_file_found_nowhere(tiny_run, tmp_path,
                                                                         monkeypatch, capsys):
    """``denoise --permissive`` on a STAR file none of whose rows is found (run from outside
    the project, or the project copied without its micrographs): the one line that says where
    to run from and how many rows are not found, nothing written. It skipped each row with a
    warning and ended on '<inputs>: no readable micrograph among 0 inputs; see the warnings'
    (and a RELION job with the Params row ``permissive`` failed so)."""
    from cryostream.cli import main
    from cryostream.errors import InvalidMicrographError
    from cryostream.io.star import read_star

    root = tmp_path / "project"
    star = _relion_layout(root, ["a.mrc", "b.mrc", "c.mrc"])
    (root / "MotionCorr/job002/Micrographs/a.mrc").unlink()
    monkeypatch.chdir(root)
    with pytest.raises(InvalidMicrographError, match="; 3 of the 3 rows are not found there; "
                       "run cryostream from the RELION project folder"):
        read_star(star, permissive=True)
    assert main(["denoise", str(tiny_run.run), str(star), "-o", "External/job011",
                 "--permissive", "--raw"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "3 of the 3 rows are not found there" in err[0], err
    assert not (root / "External").exists()


def test_a_name_found_in_two_project_folders_is_refused(tmp_path, monkeypatch):
    """A name found both in the working directory and beside the STAR file, as two different
    files, is refused naming both: another project's micrograph must never be denoised with
    this file's defocus. One file reached both ways is fine."""
    from cryostream.errors import InvalidMicrographError
    from cryostream.io.star import read_star

    root = tmp_path / "project"
    for folder in (root, root / "CtfFind"):
        (folder / "Micrographs").mkdir(parents=True)
        write_mrc(folder / "Micrographs" / "a.mrc", _image())
    star = _star(root / "CtfFind", {"rlnMicrographName": ["Micrographs/a.mrc"],
                                    "rlnOpticsGroup": [1]})
    monkeypatch.chdir(root)
    with pytest.raises(InvalidMicrographError, match="two different files have this name, "
                       f"{root / 'Micrographs' / 'a.mrc'} and "
                       f"{root / 'CtfFind' / 'Micrographs' / 'a.mrc'}"):
        read_star(star)
    (root / "CtfFind" / "Micrographs" / "a.mrc").unlink()
    got = read_star(star)
    assert got.micrographs[0].path == root / "Micrographs" / "a.mrc" and got.project == root


def test_denoise_permissive_skips_a_star_row_whose_file_is_missing(tiny_run, tmp_path,
                                                                    monkeypatch, capsys):
    """``denoise --permissive`` on a STAR file with a missing micrograph: the row is skipped
    with a warning, the others are denoised and listed; without it, nothing is made."""
    import shutil

    from cryostream.cli import main
    from cryostream.io.stack import MicrographSkippedWarning

    root = tmp_path / "project"
    star = _relion_layout(root, ["a.mrc", "gone.mrc"])
    shutil.copy(tiny_run.sim.micrographs[0], root / "MotionCorr/job002/Micrographs/a.mrc")
    monkeypatch.chdir(root)
    options = ["--raw", "--tile", "64", "--workers", "1"]
    assert main(["denoise", str(tiny_run.run), str(star), "-o", "External/job011",
                 *options]) == 2
    assert "row 2 (MotionCorr/job002/Micrographs/gone.mrc)" in capsys.readouterr().err
    assert not (root / "External").exists()
    with pytest.warns(MicrographSkippedWarning, match="row 2"):
        assert main(["denoise", str(tiny_run.run), str(star), "-o", "External/job011",
                     "--permissive", *options]) == 0
    assert "denoised 1 micrograph into External/job011 (1 skipped" in capsys.readouterr().out
    written = starfile.read(root / "External/job011/denoised_micrographs.star", always_dict=True)
    assert list(written["micrographs"]["rlnMicrographName"]) == ["External/job011/a.mrc"]
    with pytest.warns(MicrographSkippedWarning, match="row 2"):  # all done: no rate
        assert main(["denoise", str(tiny_run.run), str(star), "-o", "External/job011",
                     "--permissive", *options]) == 0
    summary = capsys.readouterr().out
    assert "denoised 0 micrographs" in summary and "(1 finished earlier, kept)" in summary
    assert "per micrograph" not in summary and "micrographs/s" not in summary


def test_prepare_permissive_skips_a_star_row_whose_file_is_missing(tmp_path, monkeypatch):
    """``prepare --permissive`` (and ``fit``, ``plan``) leave out a STAR row whose micrograph is
    missing with a warning, as ``denoise`` does; without it the row stops the command."""
    import cryostream
    from cryostream import NoiseConfig, PrepareConfig
    from cryostream.errors import InvalidMicrographError
    from cryostream.io.stack import MicrographSkippedWarning

    root = tmp_path / "project"
    star = _relion_layout(root, ["a.mrc", "gone.mrc"])
    monkeypatch.chdir(root)
    config = PrepareConfig(patch_size=32, stride=16, noise=NoiseConfig(model="gaussian"))
    with pytest.raises(InvalidMicrographError, match="row 2"):
        cryostream.prepare(star, tmp_path / "strict.h5", config)
    assert not (tmp_path / "strict.h5").exists()
    with pytest.warns(MicrographSkippedWarning, match="row 2"):
        result = cryostream.prepare(star, tmp_path / "lenient.h5", config, permissive=True)
    assert result.micrographs == 1


def test_a_pixel_size_outside_the_models_range_is_said(tmp_path: Path):
    """A micrograph at 6.575 Å (an nm/Å mix-up) for the general model, fitted on 0.58–1.35 Å:
    one warning naming it, its pixel size and where it came from; one inside the range, none."""
    import types
    import warnings

    from cryostream.denoise.network import model_path
    from cryostream.denoise.pixels import PixelSizeWarning, warn_outside_model

    general = str(model_path("general"))

    def micrograph(name, size):
        return types.SimpleNamespace(source=str(tmp_path / name), pixel_size_angstrom=size,
                                     pixel_size_from="header")

    with pytest.warns(PixelSizeWarning, match=r"^1 micrograph has a pixel size outside the "
                      r"0\.47–1\.62 Å that the model \(general\) was trained and calibrated on \(6\.575 "
                      r"Å, from "
                      r"its header, for b\.mrc\).*--pixel-size Å corrects a wrong one"):
        warn_outside_model(general, [micrograph("a.mrc", 0.66), micrograph("b.mrc", 6.575)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_outside_model(general, [micrograph("a.mrc", 0.5), micrograph("c.mrc", 1.5)])


def test_a_defocus_column_one_letter_off_is_named_in_the_error(tmp_path: Path):
    """rlnDefocusV typed _rlnDefocusVV: the file is refused (half a defocus is none), and the
    error names the column it nearly spells rather than only the one missing."""
    from cryostream.errors import InvalidMicrographError
    from cryostream.io.star import read_star

    write_mrc(tmp_path / "a.mrc", _image())
    rows = {"rlnMicrographName": ["a.mrc"], "rlnOpticsGroup": [1], "rlnDefocusU": [15000.0],
            "rlnDefocusVV": [14000.0], "rlnDefocusAngle": [30.0]}
    with pytest.raises(InvalidMicrographError, match=r"has rlnDefocusU, rlnDefocusAngle but not "
                       r"both rlnDefocusU and rlnDefocusV; _rlnDefocusVV \(_rlnDefocusV\?\) "
                       r"nearly spells it; correct the column's name$"):
        read_star(_star(tmp_path, rows))


def test_a_required_column_misspelled_gives_the_error_alone(tmp_path: Path, monkeypatch, capsys):
    """_rlnMicrographname for _rlnMicrographName: denoise had warned that "a default … stands
    in" for it, then stopped on "no block has a rlnMicrographName column": it says one line,
    the error, naming the column that nearly spells it and the fix; nothing is written. So
    does a misspelled rlnOpticsGroup where data_optics has two groups."""
    from cryostream.cli import main

    write_mrc(tmp_path / "a.mrc", _image())
    star = _star(tmp_path, {"rlnMicrographname": ["a.mrc"], "rlnOpticsGroup": [1]})
    monkeypatch.chdir(tmp_path)
    assert main(["denoise", star.name, "-o", "out"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["cryostream denoise: error: micrographs_ctf.star: no block has a "
                   "rlnMicrographName column; _rlnMicrographname (_rlnMicrographName?) nearly "
                   "spells it; correct the column's name"], err
    star = _star(tmp_path, {"rlnMicrographName": ["a.mrc"], "rlnOpticsGroupp": [1]})
    assert main(["denoise", star.name, "-o", "out"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["cryostream denoise: error: micrographs_ctf.star: row 1 (a.mrc): no "
                   "rlnOpticsGroup column, and data_optics has 2 groups; _rlnOpticsGroupp "
                   "(_rlnOpticsGroup?) nearly spells it; correct the column's name"], err
    assert not (tmp_path / "out").exists()


def test_a_column_one_letter_off_one_that_is_read_is_said(tmp_path: Path):
    """_rlnVoltag in data_optics (rlnVoltage missing): one warning naming it and the column
    it nearly spells; RELION's own neighbours (rlnMicrographOriginalPixelSize, rlnOpticsGroupName)
    and a correct file give none."""
    import warnings

    from cryostream.io.star import read_star

    write_mrc(tmp_path / "a.mrc", _image())
    rows = {"rlnMicrographName": ["a.mrc"], "rlnOpticsGroup": [1]}
    typo = OPTICS.rename(columns={"rlnVoltage": "rlnVoltag"})
    with pytest.warns(StarFileWarning, match=r"_rlnVoltag \(_rlnVoltage\?\) is not a column "
                      "cryostream reads"):
        got = read_star(_star(tmp_path, rows, optics=typo))
    assert got.micrographs[0].optics.voltage_kv is None  # the default stands in, as said
    named = OPTICS.assign(rlnMicrographOriginalPixelSize=OPTICS["rlnMicrographPixelSize"],
                          rlnOpticsGroupName=["opticsGroup1", "opticsGroup2"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_star(_star(tmp_path, rows, optics=named, name="named.star"))


def test_micrographs_of_a_star_file_and_mrc_files_warn_of_the_columns_the_output_drops(
        tmp_path: Path):
    """A STAR file and MRC files given at once: the STAR file written lists the micrographs'
    names and optics only, so one warning names the columns it drops (rlnCtfImage,
    rlnMtfFileName …; the defocus too where an MRC file has none) and says how to keep them;
    two STAR files of the same columns are joined whole, and one STAR file gives none."""
    import warnings

    from cryostream.config import DenoiseConfig
    from cryostream.denoise.sources import gather_inputs
    from cryostream.denoise.star_out import star_tables

    for name in ("a", "b", "c"):
        write_mrc(tmp_path / f"{name}.mrc", _image(), pixel_size=1.0)
    optics = OPTICS.assign(rlnMtfFileName=["mtf.star", "mtf.star"])
    rows = {"rlnOpticsGroup": [1], "rlnDefocusU": [15000.0], "rlnDefocusV": [14000.0],
            "rlnDefocusAngle": [10.0], "rlnCtfImage": ["a.ctf:mrc"], "rlnCtfMaxResolution": [3.5]}
    first = _star(tmp_path, {"rlnMicrographName": ["a.mrc"], **rows}, optics)
    second = _star(tmp_path, {"rlnMicrographName": ["b.mrc"], **rows}, optics, name="job007.star")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gather_inputs(first, config=DenoiseConfig()).star is not None
        joined = gather_inputs([first, second], config=DenoiseConfig())
    optics_out, rows_out = star_tables(joined, {m.source: str(tmp_path / "den" / Path(m.source).name)
                                                for m in joined.micrographs})
    pd.testing.assert_frame_equal(optics_out, optics)  # one group of the same values and name
    assert list(rows_out["rlnCtfImage"]) == ["a.ctf:mrc", "a.ctf:mrc"]
    third = _star(tmp_path, {"rlnMicrographName": ["c.mrc"], "rlnDefocusU": [15000.0],
                             "rlnDefocusV": [14000.0], "rlnDefocusAngle": [10.0]},
                  OPTICS.iloc[[0]], name="job009.star")  # one group: rows need not name it
    with pytest.warns(StarFileWarning, match="without the columns only some of them have "
                      r"\(rlnCtfImage, rlnCtfMaxResolution, rlnMtfFileName\)"):
        joined = gather_inputs([first, third], config=DenoiseConfig())
    optics_out, rows_out = star_tables(joined, {m.source: str(tmp_path / "den" / Path(m.source).name)
                                                for m in joined.micrographs})
    pd.testing.assert_frame_equal(optics_out, OPTICS)
    assert list(rows_out.columns) == ["rlnMicrographName", "rlnOpticsGroup", "rlnDefocusU",
                                      "rlnDefocusV", "rlnDefocusAngle"]
    assert list(rows_out["rlnOpticsGroup"]) == [1, 1]
    with pytest.warns(StarFileWarning) as caught:
        gather_inputs([first, tmp_path / "c.mrc"], config=DenoiseConfig())
    (message,) = [str(w.message) for w in caught]
    assert "come from a STAR file and other files" in message and (
        "lists their names and optics only, without their columns rlnDefocusU, rlnDefocusV, "
        "rlnDefocusAngle, rlnCtfImage, rlnCtfMaxResolution, rlnMtfFileName; to keep them, give "
        "one STAR file listing every micrograph") in message


def test_micrographs_of_two_star_files_keep_their_rows_and_optics_groups(tiny_run, tmp_path,
                                                                          monkeypatch):
    """Two CtfFind jobs of one RELION project (two sessions), denoised at once: the STAR file
    written joins their rows, every column carried (it had listed names, optics and defocus
    only), and their optics tables: job007's group 1, of another pixel size, becomes group 2
    under a name of its own, so each micrograph keeps its optics; a column only job007 has is
    left out, with one warning naming it and the fix."""
    from cryostream.cli import main

    root = tmp_path / "project"
    first = _project(tiny_run, root)
    (root / "CtfFind" / "job007").mkdir()
    import shutil

    shutil.copy(tiny_run.sim.micrographs[2], root / "Micrographs" / "c.mrc")
    second = _star(root / "CtfFind" / "job007", {
        "rlnMicrographName": ["Micrographs/c.mrc"], "rlnOpticsGroup": [1],
        "rlnCtfImage": ["CtfFind/job007/Micrographs/c.ctf:mrc"], "rlnDefocusU": [15000.0],
        "rlnDefocusV": [14500.0], "rlnDefocusAngle": [30.0], "rlnCtfMaxResolution": [3.7],
        "rlnCtfIceRingDensity": [0.02]}, OPTICS.iloc[[1]].assign(rlnOpticsGroup=[1],
                                                                  rlnOpticsGroupName=["opticsGroup1"]))
    out = root / "External" / "job010"
    monkeypatch.chdir(root)
    with pytest.warns(StarFileWarning) as caught:
        assert main(["denoise", str(tiny_run.run), str(first), str(second), "-o", str(out),
                     "--raw", "--tile", "64", "--workers", "1"]) == 0
    said = [str(w.message) for w in caught if "come from" in str(w.message)]
    assert said == [f"the micrographs come from 2 STAR files ({first}, {second}): the STAR file "
                    "written joins their rows and optics groups, without the columns only some of "
                    "them have (rlnCtfIceRingDensity); to keep those, denoise each STAR file into "
                    "an -o folder of its own"]
    written = starfile.read(out / "denoised_micrographs.star", always_dict=True)
    expected = pd.concat([OPTICS, OPTICS.iloc[[1]].assign(rlnOpticsGroup=[3],
                                                          rlnOpticsGroupName=["opticsGroup3"])],
                         ignore_index=True)  # job007's group 1: job003's 2nd in all but its name
    pd.testing.assert_frame_equal(written["optics"], expected)
    rows = written["micrographs"]
    assert list(rows["rlnMicrographName"]) == ["External/job010/a.mrc", "External/job010/b.mrc",
                                               "External/job010/c.mrc"]
    assert list(rows["rlnOpticsGroup"]) == [1, 2, 3]
    assert list(rows["rlnCtfImage"]) == ["CtfFind/job003/Micrographs/a.ctf:mrc",
                                         "CtfFind/job003/Micrographs/b.ctf:mrc",
                                         "CtfFind/job007/Micrographs/c.ctf:mrc"]
    assert list(rows["rlnDefocusU"]) == [19000.0, 21000.0, 15000.0]
    assert "rlnCtfIceRingDensity" not in rows.columns
