"""cryoSPARC exposure files (``.cs``) given where a STAR file goes (cryostream.io.cryosparc):
real NumPy tables laid out as a cryoSPARC project lays them out, real micrographs, the real
command line."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import starfile

from cryostream.errors import InvalidMicrographError
from cryostream.io.star import StarFileWarning

_MOTION = "J3/motioncorrected"


def _exposures(path: Path, names: list[str], *, ctf: bool = True, particles: bool = False,
               defocus=(19000.0, 18800.0, 0.5)) -> Path:
    """A ``.cs`` table as a cryoSPARC job writes it: fixed-width byte strings, float32 values,
    ``ctf/*`` fields after CTF estimation (all zero where it was not run)."""
    width = max(len(n) for n in names)
    blob = "blob" if particles else "micrograph_blob"
    fields = [("uid", "<u8"), (f"{blob}/path", f"S{width}"), (f"{blob}/psize_A", "<f4"),
              (f"{blob}/shape", "<u4", (2,)), ("mscope_params/accel_kv", "<f4"),
              ("mscope_params/cs_mm", "<f4")]
    if ctf:
        fields += [(f, "<f4") for f in ("ctf/accel_kv", "ctf/cs_mm", "ctf/amp_contrast",
                                        "ctf/df1_A", "ctf/df2_A", "ctf/df_angle_rad")]
    table = np.zeros(len(names), dtype=fields)
    table["uid"] = np.arange(len(names)) + 10**17
    table[f"{blob}/path"] = [n.encode() for n in names]
    table[f"{blob}/psize_A"] = 0.6575
    table["mscope_params/accel_kv"], table["mscope_params/cs_mm"] = 300, 2.7
    if ctf:
        table["ctf/accel_kv"], table["ctf/cs_mm"], table["ctf/amp_contrast"] = 300, 2.7, 0.07
        table["ctf/df1_A"], table["ctf/df2_A"], table["ctf/df_angle_rad"] = defocus
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # np.save would add .npy to a name without it
        np.save(f, table)
    return path


def _project(tiny_run, root: Path, count: int = 2) -> list[str]:
    """Micrographs where cryoSPARC's Patch Motion Correction puts them, named as it names
    them (the project folder ``root``); their names relative to it."""
    (root / _MOTION).mkdir(parents=True)
    names = []
    for i in range(count):
        name = f"{_MOTION}/{10**17 + i}_m{i}_patch_aligned_doseweighted.mrc"
        shutil.copy(tiny_run.sim.micrographs[i], root / name)
        names.append(name)
    return names


def test_denoise_reads_a_cryosparc_exposures_file_and_writes_a_star_file(
        tiny_run, tmp_path, monkeypatch, notes):
    """``denoise`` given a Patch CTF job's exposures file from outside the project: each
    micrograph is found through the project folder and takes the table's pixel size, optics
    and defocus (the CTF is not fitted again), and the STAR file written lists the outputs."""
    from cryostream.cli import main

    root = tmp_path / "P7"
    names = _project(tiny_run, root)
    truth = starfile.read(tiny_run.sim.micrographs_star).iloc[:2]  # the simulated defocus
    defocus = (truth["rlnDefocusU"], truth["rlnDefocusV"], np.radians(truth["rlnDefocusAngle"]))
    cs = _exposures(root / "J5" / "J5_exposures_ctf_estimated.cs", names, defocus=defocus)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "den"
    assert main(["denoise", str(tiny_run.run), str(cs), "-o", str(out), "--raw", "--tile",
                 "64", "--workers", "1"]) == 0  # raw: 160 × 128 px hold too few Thon rings
    stems = [Path(n).stem for n in names]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*(f"{s}.mrc" for s in stems), *(f"{s}.json" for s in stems), "denoised_micrographs.star"])
    record = json.loads((out / f"{stems[0]}.json").read_text())
    assert record["input"] == str((root / names[0]).resolve())
    assert record["given"]["pixel_size_angstrom"] == pytest.approx(0.6575)
    assert record["given"]["pixel_size_from"] == "cryoSPARC .cs file"  # said as it is
    given = record["given"]["defocus"]
    assert (given["defocus_u_angstrom"], given["defocus_v_angstrom"]) == pytest.approx(
        (truth["rlnDefocusU"][0], truth["rlnDefocusV"][0]), abs=0.01)
    assert given["angle_deg"] == pytest.approx(truth["rlnDefocusAngle"][0] % 180, abs=1e-3)
    assert record["config"]["amplitude_contrast"] == 0.07  # the table's, not the default 0.1
    written = starfile.read(out / "denoised_micrographs.star", always_dict=True)
    optics = written["optics"].iloc[0]
    assert (optics["rlnVoltage"], optics["rlnSphericalAberration"],
            optics["rlnAmplitudeContrast"], optics["rlnMicrographPixelSize"]) == (
        300.0, 2.7, 0.07, 0.6575)
    rows = written["micrographs"]
    assert [Path(n).name for n in rows["rlnMicrographName"]] == [f"{s}.mrc" for s in stems]
    assert list(rows["rlnDefocusU"]) == pytest.approx(list(truth["rlnDefocusU"]), abs=0.01)
    table = np.load(cs)
    table["ctf/amp_contrast"] = 0  # not measured: the default stands in, and is said and written
    np.save(open(cs, "wb"), table)
    notes.clear()
    inside = root / "denoised"  # an output folder in the cryoSPARC project: named from it
    assert main(["denoise", str(tiny_run.run), str(cs), "-o", str(inside), "--raw",
                 "--tile", "64", "--workers", "1"]) == 0
    assert [n for n in notes if "optics" in n] == [
        "2 micrographs have no amplitude contrast from a STAR file or an option (the rest of "
        "their optics given): the output STAR file's optics table takes amplitude contrast 0.1 "
        "(nothing to do if that is your microscope's); for another, pass "
        "--amplitude-contrast (Python: the DenoiseConfig's amplitude_contrast)"]
    written = starfile.read(inside / "denoised_micrographs.star", always_dict=True)
    optics = written["optics"].iloc[0]
    assert (optics["rlnVoltage"], optics["rlnAmplitudeContrast"]) == (300.0, 0.1)
    assert list(written["micrographs"]["rlnMicrographName"]) == [f"denoised/{s}.mrc" for s in stems]


def test_a_float32_astigmatism_angle_is_written_with_the_digits_it_holds(tiny_run, tmp_path):
    """cryoSPARC keeps the astigmatism angle as float32 radians: the STAR file written gives it
    in degrees as the shortest decimal those radians hold (144.2°, written 144.200000 as
    RELION writes numbers, not 144.200007), one that reads back to the same float32, as the
    float32 defocus values are."""
    from cryostream.cli import main

    root = tmp_path / "P7"
    names = _project(tiny_run, root)
    cs = _exposures(root / "J5" / "e.cs", names, defocus=(19123.4, 18800.7, np.radians(144.2)))
    table = np.load(cs)
    table["ctf/df_angle_rad"][1] = 0.61234567  # float32 0.6123457: no round number of degrees
    np.save(open(cs, "wb"), table)
    out = tmp_path / "den"
    assert main(["denoise", str(tiny_run.run), str(cs), "-o", str(out), "--raw", "--tile", "64",
                 "--workers", "1"]) == 0
    text = (out / "denoised_micrographs.star").read_text()
    assert "\t19123.400000\t18800.700000\t144.200000\n" in text
    angles = starfile.read(out / "denoised_micrographs.star", always_dict=True)[
        "micrographs"]["rlnDefocusAngle"]
    assert angles[0] == 144.2
    assert np.float32(np.radians(angles[1])) == table["ctf/df_angle_rad"][1]  # read back alike
    assert f"\t{angles[1]:.6f}\n" in text and f"{angles[1]:.6f}" == "35.084824"


def test_the_tables_of_an_exposures_file(tiny_run, tmp_path, monkeypatch):
    """``read_star`` on a ``.cs`` file: optics groups from the distinct optics, defocus only
    where a CTF was estimated (cryoSPARC leaves zeros), names found from the job folder, an
    export folder further down, or the working directory; a leading '>' is not a name's."""
    from cryostream.io.star import read_star

    root = tmp_path / "P7"
    names = _project(tiny_run, root)
    star = read_star(_exposures(root / "J5" / "e.cs", names))
    assert [m.path for m in star.micrographs] == [root / n for n in names]
    assert {m.optics.group for m in star.micrographs} == {1}
    assert star.micrographs[1].optics.amplitude_contrast == 0.07
    assert star.micrographs[1].defocus.defocus_u_angstrom == 19000.0
    plain = read_star(_exposures(root / "J4" / "e.cs", names, ctf=False))
    assert all(m.defocus is None for m in plain.micrographs)  # no CTF fields: fitted later
    assert plain.micrographs[0].optics.voltage_kv == 300.0  # the microscope's, not the CTF's
    assert plain.micrographs[0].optics.amplitude_contrast is None
    zeros = _exposures(root / "J6" / "e.cs", names, defocus=(0.0, 0.0, 0.0))
    assert all(m.defocus is None for m in read_star(zeros).micrographs)
    table = np.load(zeros)
    table["ctf/accel_kv"] = table["ctf/cs_mm"] = table["ctf/amp_contrast"] = 0  # not estimated
    np.save(open(zeros, "wb"), table)
    (first, _) = read_star(zeros).micrographs
    assert (first.optics.voltage_kv, first.optics.cs_mm) == (300.0, 2.7)  # mscope_params'
    assert first.optics.amplitude_contrast is None  # the option or its default stands in
    table["mscope_params/cs_mm"] = 0  # a Cs-corrected microscope, as entered at import
    np.save(open(zeros, "wb"), table)
    assert read_star(zeros).micrographs[0].optics.cs_mm == 0.0
    table["mscope_params/cs_mm"] = 2.7
    table["ctf/amp_contrast"][0] = 0.07  # one row's: used for none, said
    np.save(open(zeros, "wb"), table)
    with pytest.warns(StarFileWarning, match=r"ctf/amp_contrast on 1 of 2 rows; not used"):
        assert {m.optics.amplitude_contrast for m in read_star(zeros).micrographs} == {None}
    table["ctf/df1_A"][0], table["ctf/df2_A"][0] = 19000, 18800  # one row's defocus only
    np.save(open(zeros, "wb"), table)
    with pytest.warns(StarFileWarning), pytest.raises(
            InvalidMicrographError, match=r"1 of its 2 micrographs has no defocus .*rows 2\)"):
        read_star(zeros)
    export = _exposures(root / "exports" / "groups" / "P7_J5_exposures" / "e.cs",
                        [">" + n for n in names])
    assert [m.path for m in read_star(export).micrographs] == [root / n for n in names]
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "J5").symlink_to(root / "J5")  # the job folder through a link
    linked = read_star(tmp_path / "links" / "J5" / "e.cs")
    assert [m.path for m in linked.micrographs] == [root / n for n in names]
    assert linked.project == root  # output STAR names are relative to it, as RELION's
    monkeypatch.chdir(root)
    away = _exposures(tmp_path / "elsewhere" / "e.cs", names)
    assert [m.path for m in read_star(away).micrographs] == [Path.cwd() / n for n in names]
    odd = read_star(away, "rlnMicrographNameOdd")  # given as --odd: the odd halves' table
    assert [m.path for m in odd.micrographs] == [Path.cwd() / n for n in names]


def test_a_wrong_cs_file_is_named_with_what_to_give(tiny_run, tmp_path, monkeypatch, capsys):
    """A particles table, a table of other things, a file that is not NumPy's, micrographs
    that cannot be found: one line each naming the file and what to do, nothing written;
    ``--permissive`` leaves out the missing micrographs with a warning."""
    from cryostream.cli import main
    from cryostream.io.stack import MicrographSkippedWarning
    from cryostream.io.star import read_star

    root = tmp_path / "P7"
    names = _project(tiny_run, root)
    particles = _exposures(root / "J9" / "J9_particles.cs", names, particles=True)
    with pytest.raises(InvalidMicrographError, match="a particles .cs file .* give the "
                       "exposures .cs file of a cryoSPARC job"):
        read_star(particles)
    text = root / "J9" / "notes.cs"
    text.write_text("not a table\n")
    with pytest.raises(InvalidMicrographError, match="not a cryoSPARC .cs table .*NumPy's "
                       "format, which this file does not start as"):
        read_star(text)
    cut = root / "J9" / "cut.cs"
    cut.write_bytes(particles.read_bytes()[:200])
    with pytest.raises(InvalidMicrographError, match="a NumPy file that cannot be read"):
        read_star(cut)
    wide = root / "J9" / "wide.cs"  # hundreds of fields: a header over NumPy's 10 kB default
    many = np.zeros(2, dtype=[("micrograph_blob/path", "S128"),
                              *((f"field_with_a_long_name/{i}", "<f4") for i in range(400))])
    many["micrograph_blob/path"] = [n.encode() for n in names]
    np.save(open(wide, "wb"), many)
    assert len(read_star(wide).micrographs) == 2
    other = root / "J9" / "other.cs"
    with open(other, "wb") as f:
        np.save(f, np.zeros(3, dtype=[("uid", "<u8"), ("ctf_stats/cross_corr", "<f4")]))
    with pytest.raises(InvalidMicrographError, match="without micrograph_blob/path .*nor a .cs "
                       "file beside it that gives it .*Jn_passthrough_exposures"):
        read_star(other)
    picks = root / "J10" / "J10_picked_particles.cs"  # a picker's: locations, no images
    picks.parent.mkdir()
    with open(picks, "wb") as f:
        np.save(f, np.zeros(3, dtype=[("uid", "<u8"), ("location/micrograph_path", "S8"),
                                      ("location/center_x_frac", "<f4")]))
    with pytest.raises(InvalidMicrographError, match="a particles .cs file"):
        read_star(picks)
    first = _exposures(root / "J4" / "e.cs", [f"{_MOTION}/gone.mrc", *names])
    with pytest.warns(MicrographSkippedWarning, match="row 1's micrograph is not found"):
        assert [m.path for m in read_star(first, permissive=True).micrographs] == [
            root / n for n in names]  # the project found from the others
    table = np.load(gone := _exposures(root / "J2" / "e.cs", names))
    table["micrograph_blob/psize_A"] = 1.1  # the headers say 0.6575 Å
    np.save(open(gone, "wb"), table)
    with pytest.warns(StarFileWarning, match=r"1.1 Å in the cryoSPARC .cs file, 0.6575 Å in the "
                      r"header .*the cryoSPARC .cs file's is used \(cryoSPARC's jobs use it\)"):
        assert main(["denoise", str(tiny_run.run), str(gone), "-o", str(tmp_path / "d2"),
                     "--raw", "--tile", "64", "--workers", "1"]) == 0
    capsys.readouterr()
    table["micrograph_blob/psize_A"] = 500  # named as the table it came from
    np.save(open(gone, "wb"), table)
    assert main(["denoise", str(tiny_run.run), str(gone), "-o", str(tmp_path / "d3"), "--raw"]) == 2
    assert "a pixel size of 500 Å (from its cryoSPARC .cs file) is outside" in capsys.readouterr().err
    gone = _exposures(root / "J5" / "e.cs", [*names, f"{_MOTION}/gone.mrc"])
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "den"
    assert main(["denoise", str(tiny_run.run), str(gone), "-o", str(out), "--raw", "--tile",
                 "64", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "1 of its 3 micrographs are not found (row 3:" in err
    assert "--permissive" in err and not out.exists()
    with pytest.warns(MicrographSkippedWarning, match="row 3's micrograph is not found"):
        assert main(["denoise", str(tiny_run.run), str(gone), "-o", str(out), "--raw", "--tile",
                     "64", "--workers", "1", "--permissive"]) == 0
    assert len(starfile.read(out / "denoised_micrographs.star", always_dict=True)[
        "micrographs"]) == 2
    lost = _exposures(tmp_path / "moved" / "e.cs", names)  # the project is not where it says
    with pytest.raises(InvalidMicrographError, match="none of its 2 micrographs .* is in the "
                       "folders they could be relative to"):
        read_star(lost)


def test_prepare_takes_an_exposures_file(tiny_run, tmp_path):
    """``prepare`` (and ``fit`` and ``plan``, which read their inputs alike) take the ``.cs``
    file's micrographs."""
    import cryostream
    from cryostream import PrepareConfig

    root = tmp_path / "P7"
    names = _project(tiny_run, root, count=3)
    cs = _exposures(root / "J5" / "e.cs", names)
    result = cryostream.prepare(cs, tmp_path / "data.h5",
                                PrepareConfig(patch_size=32, stride=32, test_fraction=0.34))
    assert result.micrographs == 3


def test_a_jobs_main_file_and_its_passthrough_are_joined_whichever_is_given(tiny_run, tmp_path):
    """A Patch CTF Estimation keeps ``ctf/*`` in its main file and passes ``micrograph_blob/*``
    and ``mscope_params/*`` through in ``Jn_passthrough_exposures.cs`` beside it, rows in any
    order: given either, the micrographs come with their defocus. A Curate Exposures job's
    rejected set, beside the accepted one, is not joined to it."""
    from numpy.lib.recfunctions import repack_fields

    from cryostream.io.star import read_star

    root = tmp_path / "P7"
    names = _project(tiny_run, root, count=3)
    whole = np.load(_exposures(tmp_path / "whole.cs", names, defocus=(21000.0, 20500.0, 0.25)))
    ctf = [f for f in whole.dtype.names if f.startswith("ctf/")]
    passed = [f for f in whole.dtype.names if not f.startswith("ctf/")]
    job = root / "J5"
    job.mkdir()
    main_file, passthrough = job / "J5_exposures_ctf_estimated.cs", job / "J5_passthrough_exposures.cs"
    with open(main_file, "wb") as f:
        np.save(f, repack_fields(whole[["uid", *ctf]][::-1]))  # rows in another order
    with open(passthrough, "wb") as f:
        np.save(f, repack_fields(whole[passed]))
    for given in (main_file, passthrough):
        star = read_star(given)
        assert [m.path for m in star.micrographs] == (
            [root / n for n in names[::-1]] if given == main_file else [root / n for n in names])
        assert {m.defocus.defocus_u_angstrom for m in star.micrographs} == {21000.0}
        assert {m.optics.amplitude_contrast for m in star.micrographs} == {0.07}
    curated = root / "J6"
    curated.mkdir()
    for kind, rows in (("accepted", whole[:2]), ("rejected", whole[2:])):
        with open(curated / f"J6_exposures_{kind}.cs", "wb") as f:
            np.save(f, repack_fields(rows[["uid", *ctf]]))
        with open(curated / f"J6_passthrough_exposures_{kind}.cs", "wb") as f:
            np.save(f, repack_fields(rows[passed]))
    accepted = read_star(curated / "J6_exposures_accepted.cs")
    assert [m.path for m in accepted.micrographs] == [root / n for n in names[:2]]
    assert all(m.defocus is not None for m in accepted.micrographs)
    (curated / "J6_passthrough_exposures_accepted.cs").unlink()  # the rejected one's alone
    with pytest.raises(InvalidMicrographError, match="without micrograph_blob/path"):
        read_star(curated / "J6_exposures_accepted.cs")


def test_another_copy_of_the_project_does_not_stand_in_for_missing_micrographs(
        tiny_run, tmp_path, monkeypatch):
    """A ``.cs`` file whose own project lacks a micrograph, run from another copy of the
    project that has them all, is refused naming both files, not read from the copy (whose
    micrographs may differ); a micrograph that is a link to a file gone is named as one."""
    from cryostream.io.star import read_star

    full, partial = tmp_path / "P7", tmp_path / "P8"
    names = _project(tiny_run, full, count=3)
    shutil.copytree(full, partial)
    (partial / names[1]).unlink()
    cs = _exposures(partial / "J5" / "e.cs", names)
    monkeypatch.chdir(full)
    with pytest.raises(InvalidMicrographError, match=r"two different files have the name "
                       rf"{names[0]}: .*P7/{names[0]} and .*P8/{names[0]}"):
        read_star(cs)
    export = _exposures(partial / "exports" / "groups" / "P8_J5_exposures" / "e.cs", names)
    with pytest.raises(InvalidMicrographError, match=r"two different files"):
        read_star(export)  # an export of the project lacking one: not read from the copy either
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidMicrographError, match=r"1 of its 3 micrographs are not found "
                       rf"\(row 2: .*P8/{names[1]}\)"):
        read_star(cs)
    copy = tmp_path / "P7_linked"  # the same files through hard links: no conflict
    shutil.copytree(full, copy, copy_function=os.link)
    monkeypatch.chdir(copy)
    assert [m.path for m in read_star(_exposures(full / "J5" / "e.cs", names)).micrographs] == [
        full / n for n in names]
    shutil.copytree(partial, tmp_path / "P8_linked", copy_function=os.link)
    (tmp_path / "P8_linked" / names[1]).symlink_to(full / names[1])  # P8's own, where P7's are
    monkeypatch.chdir(tmp_path / "P8_linked")
    assert len(read_star(cs).micrographs) == 3  # P8's two and the link: one file, no conflict
    monkeypatch.chdir(tmp_path)
    moved = tmp_path / "raw.mrc"
    (partial / names[1]).symlink_to(moved)  # as J1/imported links to raw data moved away
    with pytest.raises(InvalidMicrographError, match=rf"row 2: .*P8/{names[1]}, a link to "
                       rf"{moved}, which is not there\)"):
        read_star(cs)


def test_imported_micrographs_are_named_after_the_files_their_links_lead_to(tmp_path,
                                                                           monkeypatch):
    """cryoSPARC's Import Micrographs job links each file as ``J1/imported/UID_NAME.mrc``: its
    output is ``NAME.mrc``, the original's name (a link given as a file or by a RELION STAR
    file keeps its own name instead)."""
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.sources import gather_inputs
    from cryostream.io.mrc import write_micrograph

    raw, imported = tmp_path / "raw", tmp_path / "P7" / "J1" / "imported"
    raw.mkdir()
    imported.mkdir(parents=True)
    rng = np.random.default_rng(4)
    names = []
    for i in range(2):
        write_micrograph(raw / f"mic_{i}.mrc", rng.poisson(10, (96, 128)).astype(np.float32), 1.0)
        (imported / f"{10**17 + i}_mic_{i}.mrc").symlink_to(raw / f"mic_{i}.mrc")
        names.append(f"J1/imported/{10**17 + i}_mic_{i}.mrc")
    cs = _exposures(tmp_path / "P7" / "J2" / "exposures.cs", names, ctf=False)
    monkeypatch.chdir(tmp_path)
    got = gather_inputs([cs], config=DenoiseConfig())
    assert [m.named_after()[1] for m in got.micrographs] == ["mic_0", "mic_1"]
    linked = gather_inputs([imported], config=DenoiseConfig())
    assert [m.named_after()[1] for m in linked.micrographs] == [Path(n).stem for n in names]


def test_an_optics_option_a_cs_file_overrides_names_the_cs_file(tmp_path):
    """``--voltage 200`` with a cryoSPARC exposures file at 300 kV: the warning that the option
    is not used names the .cs file and its field, not a STAR file's rlnVoltage and data_optics
    (which a cryoSPARC user has none of)."""
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.sources import gather_inputs
    from tests.conftest import write_mrc

    root, rng, names = tmp_path / "P7", np.random.default_rng(0), []
    for i in range(2):
        names.append(f"{_MOTION}/{10**17 + i}_m{i}_patch_aligned_doseweighted.mrc")
        (root / names[-1]).parent.mkdir(parents=True, exist_ok=True)
        write_mrc(root / names[-1], rng.poisson(20.0, (256, 256)).astype(np.float32))
    cs = _exposures(root / "J5" / "e.cs", names)
    with pytest.warns(StarFileWarning) as caught:
        gather_inputs([cs], config=DenoiseConfig(voltage_kv=200.0))
    assert [str(w.message) for w in caught] == [
        "--voltage 200 kV is not used for 2 micrographs: their cryoSPARC .cs file gives 300 kV "
        "(ctf/accel_kv), and a cryoSPARC .cs file's optics win; if the cryoSPARC .cs file is "
        "wrong, correct it in cryoSPARC"]


def _with_object_fields(path: Path, fields: tuple[str, ...]) -> Path:
    """The ``.cs`` table at ``path`` written again with ``fields`` as Python objects (``O``:
    str for byte strings), as cryoSPARC's files can hold them: NumPy pickles such a table."""
    table = np.load(path)
    dtype = [(f, "O") if f in fields else (f, table.dtype[f]) for f in table.dtype.names]
    out = np.zeros(len(table), dtype=dtype)
    for f in table.dtype.names:
        out[f] = [v.decode() for v in table[f]] if f in fields and table.dtype[f].kind == "S" \
            else table[f]
    with open(path, "wb") as f:
        np.save(f, out, allow_pickle=True)
    return path


def test_a_cs_file_with_object_fields_is_read_without_running_its_pickle(tiny_run, tmp_path,
                                                                         monkeypatch):
    """A ``.cs`` table whose paths are Python strings (``O`` fields: NumPy pickles the table)
    is read, the main file and its passthrough alike, through an unpickler that builds only
    NumPy arrays and plain values; a pickle that would call anything else is refused naming
    the file and the fix, and never runs."""
    from numpy.lib.recfunctions import repack_fields

    from cryostream.cli import main
    from cryostream.io.star import read_star

    root = tmp_path / "P7"
    names = _project(tiny_run, root)
    job = root / "J5"
    whole = np.load(_exposures(tmp_path / "whole.cs", names))
    ctf = [f for f in whole.dtype.names if f.startswith("ctf/")]
    passed = [f for f in whole.dtype.names if not f.startswith("ctf/")]
    job.mkdir()
    main_file, passthrough = job / "J5_exposures.cs", job / "J5_passthrough_exposures.cs"
    with open(main_file, "wb") as f:
        np.save(f, repack_fields(whole[["uid", *ctf]]))
    with open(passthrough, "wb") as f:
        np.save(f, repack_fields(whole[passed]))
    _with_object_fields(passthrough, ("micrograph_blob/path",))
    _with_object_fields(main_file, ("ctf/df1_A",))
    for given in (main_file, passthrough):
        star = read_star(given)
        assert [m.path for m in star.micrographs] == [root / n for n in names]
        assert {m.defocus.defocus_u_angstrom for m in star.micrographs} == {19000.0}
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "den"
    assert main(["denoise", str(tiny_run.run), str(main_file), "-o", str(out), "--raw",
                 "--tile", "64", "--workers", "1"]) == 0
    assert sorted(p.name for p in out.glob("*.mrc")) == sorted(Path(n).name for n in names)

    class Payload:  # what a crafted file could hold: a call on loading
        def __reduce__(self):
            return (os.mkdir, (str(tmp_path / "ran"),))

    crafted = job / "J5_crafted.cs"
    table = np.zeros(2, dtype=[("uid", "<u8"), ("micrograph_blob/path", "O")])
    table["micrograph_blob/path"] = [Payload(), names[1]]
    with open(crafted, "wb") as f:
        np.save(f, table, allow_pickle=True)
    with pytest.raises(InvalidMicrographError, match=r"J5_crafted.cs: holds Python objects "
                       r"other than NumPy's and plain values \(posix.mkdir\), which are not "
                       r"read: cryoSPARC's tables hold none; give the .cs file cryoSPARC wrote"):
        read_star(crafted)
    assert not (tmp_path / "ran").exists()

    class RawObjects:  # NumPy's own class, called on bytes: an object array of raw pointers
        def __reduce__(self):
            return (np.ndarray, ((1,), np.dtype(object), b"\x41" * 8))

    table["micrograph_blob/path"] = [RawObjects(), names[1]]
    with open(crafted, "wb") as f:
        np.save(f, table, allow_pickle=True)
    with pytest.raises(InvalidMicrographError, match=r"\(numpy.ndarray called on its own\)"):
        read_star(crafted)


def test_a_passthrough_file_that_cannot_be_read_is_named_not_passed_over(tiny_run, tmp_path):
    """A CTF job's main ``.cs`` file given, its passthrough beside it (which holds the
    micrographs' paths) holding an object no cryoSPARC table holds: the passthrough is not
    joined, with a warning that names it and why, before the error about the missing paths."""
    from numpy.lib.recfunctions import repack_fields

    from cryostream.io.star import StarFileWarning, read_star

    root = tmp_path / "P8"
    names = _project(tiny_run, root)
    whole = np.load(_exposures(tmp_path / "whole.cs", names))
    job = root / "J5"
    job.mkdir()
    main_file = job / "J5_exposures.cs"
    with open(main_file, "wb") as f:
        np.save(f, repack_fields(whole[["uid", *(n for n in whole.dtype.names if n.startswith("ctf/"))]]))
    crafted = np.zeros(len(whole), dtype=[("uid", "<u8"), ("micrograph_blob/path", "O")])
    crafted["uid"] = whole["uid"]
    crafted["micrograph_blob/path"] = [bytearray(b"x")] * len(whole)  # pickled as builtins.bytearray
    with open(job / "J5_passthrough_exposures.cs", "wb") as f:
        np.save(f, crafted, allow_pickle=True)
    with pytest.warns(StarFileWarning, match=r"J5_exposures.cs: J5_passthrough_exposures.cs beside "
                      r"it is not joined .*holds Python objects other than NumPy's and plain values"):
        with pytest.raises(InvalidMicrographError, match="without micrograph_blob/path"):
            read_star(main_file)


def _pickled_table(path: Path, header: list, shape: tuple, values, dtype_state=None) -> Path:
    """A ``.npy`` file whose header gives ``header`` and ``shape`` and whose pickle describes
    an array of ``shape`` holding ``values`` (NumPy's own ``_reconstruct`` and state, as a
    damaged or crafted file can give them: the state's length and dtype unchecked)."""
    from numpy.lib import format as npy_format

    class Dtype:  # numpy.dtype with the state a file gives: sizes, offsets and flags
        def __reduce__(self):
            return (np.dtype, ("V8", False, True), dtype_state)

    class Array:
        def __reduce__(self):
            dtype = np.dtype(header) if dtype_state is None else Dtype()
            return (np.ndarray.__reduce__(np.zeros(1))[0], (np.ndarray, (0,), b"b"),
                    (1, shape, dtype, False, values))

    with open(path, "wb") as f:
        npy_format.write_array_header_1_0(f, {"descr": npy_format.dtype_to_descr(np.dtype(header)),
                                             "fortran_order": False, "shape": shape})
        pickle.dump(Array(), f, protocol=4)
    return path


def test_a_cs_file_whose_pickle_disagrees_with_itself_is_refused_not_a_crash(tmp_path):
    """A ``.cs`` file whose pickle gives fewer values than its shape, a dtype whose field lies
    past its item or whose object field is not flagged as one, or one small value to fill a
    field of gigabytes, is one line naming the file (status 2), not Python killed by a
    segmentation fault (NumPy's ``__setstate__`` takes a pickle's shape and dtype unchecked)
    nor gigabytes of memory taken."""
    from faults_support import cli_process

    header = [("uid", "<u8"), ("micrograph_blob/path", "O")]
    objects = np.dtype(object)
    files = {
        "short": _pickled_table(tmp_path / "short.cs", header, (100000,), [(1, "a.mrc")]),
        "past": _pickled_table(tmp_path / "past.cs", header, (2,), [(1, "a.mrc"), (2, "b.mrc")],
                               (3, "|", None, ("uid", "micrograph_blob/path"),
                                {"uid": (np.dtype("<u8"), 0), "micrograph_blob/path": (objects, 4)},
                                4, 1, 63)),
        "unflagged": _pickled_table(tmp_path / "unflagged.cs", [("micrograph_blob/path", "O")], (1,),
                                    b"A" * 8, (3, "|", None, ("micrograph_blob/path",),
                                               {"micrograph_blob/path": (objects, 0)}, 8, 1, 0)),
        "filled": _pickled_table(tmp_path / "filled.cs", [*header, ("pad", "u1", (2**30,))], (1,),
                                 [(1, "a.mrc", 0)]),
    }
    for name, path in files.items():
        result = cli_process("prepare", path, "-o", tmp_path / f"{name}.h5", cwd=tmp_path,
                             timeout=120)
        assert (name, result.rc) == (name, 2), result.err
        said = "none of its 2 micrographs (a.mrc …)" if name == "past" else \
            "a NumPy file that cannot be read as a cryoSPARC .cs table (its pickle "
        assert f"{path}: {said}" in result.err, result.err  # past: its own dtype not taken
        assert "Traceback" not in result.err


def test_a_row_without_a_micrograph_path_is_named_as_such(tiny_run, tmp_path, monkeypatch, capsys):
    """A row whose ``micrograph_blob/path`` is empty is a micrograph not found, named by its
    row, not the project folder read as a micrograph ('not a regular file'); ``--permissive``
    leaves that row out; a table of such rows alone says it names no micrograph."""
    from cryostream.cli import main
    from cryostream.io.stack import MicrographSkippedWarning
    from cryostream.io.star import read_star

    root = tmp_path / "P7"
    names = _project(tiny_run, root)
    cs = _exposures(root / "J5" / "J5_exposures.cs", [names[0], "", names[1]])
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "den"
    args = ["denoise", str(tiny_run.run), str(cs), "-o", str(out), "--raw", "--tile", "64",
            "--workers", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "1 of its 3 micrographs are not found (row 2: micrograph_blob/path empty); restore " \
           "them, or pass --permissive" in err and not out.exists()
    with pytest.warns(MicrographSkippedWarning, match=r"^skipping .*J5_exposures.cs: row 2 names "
                      r"no micrograph \(micrograph_blob/path empty\)$"):
        assert main([*args, "--permissive"]) == 0
    assert sorted(p.name for p in out.glob("*.mrc")) == sorted(Path(n).name for n in names)
    empty = _exposures(root / "J6" / "J6_exposures.cs", ["", ""])
    with pytest.raises(InvalidMicrographError, match="none of its 2 rows names a micrograph "
                       r"\(micrograph_blob/path empty\)"):
        read_star(empty)


def test_micrographs_cleared_from_their_project_are_said_so(tiny_run, tmp_path, monkeypatch, capsys):
    """The Patch CTF job's ``.cs`` file in its place, given from the project folder, when the
    Patch Motion job's micrographs are gone (its files cleared in cryoSPARC): the error says
    the project holds that job's folder without them, not to give the file in its place or
    run from the project folder, which the user did."""
    from cryostream.cli import main

    root = tmp_path / "P7"
    names = _project(tiny_run, root)
    cs = _exposures(root / "J5" / "J5_exposures.cs", names)
    shutil.rmtree(root / _MOTION)
    monkeypatch.chdir(root)
    assert main(["denoise", str(tiny_run.run), str(cs.relative_to(root)), "-o", "den",
                 "--raw"]) == 2
    err = capsys.readouterr().err
    assert f"J5/J5_exposures.cs: none of its 2 micrographs ({names[0]} …) is in the cryoSPARC " \
           f"project {root}, which holds the job folder J3 they are in without them: the job's " \
           "files were cleared or moved; restore them (or run J3 again in cryoSPARC)" in err
    assert "run cryostream from the project folder" not in err and not (root / "den").exists()


def test_a_movies_cs_file_says_to_motion_correct_first(tmp_path):
    """An Import Movies job's ``.cs`` file (``movie_blob/path``, no micrographs yet) is named as
    movies, with the job to run first, not listed as 'a .cs file without micrograph_blob/path'."""
    from cryostream.io.star import read_star

    movies = tmp_path / "P7" / "J1" / "J1_imported_movies.cs"
    movies.parent.mkdir(parents=True)
    table = np.zeros(2, dtype=[("uid", "<u8"), ("movie_blob/path", "S40"),
                               ("movie_blob/shape", "<u4", (3,)), ("mscope_params/accel_kv", "<f4")])
    table["movie_blob/path"] = [b"J1/imported/1_a.tif", b"J1/imported/2_b.tif"]
    with open(movies, "wb") as f:
        np.save(f, table)
    with pytest.raises(InvalidMicrographError, match=r"J1_imported_movies.cs: a movies .cs file "
                       r"\(movie_blob/path, and no micrograph_blob/path in it or in a .cs file "
                       r"beside it: movies not motion-corrected yet, as an Import Movies job's\); "
                       r"run Patch Motion Correction in cryoSPARC"):
        read_star(movies)


def test_a_cs_file_with_other_files_is_told_a_fix_for_cryosparc(tmp_path):
    """A ``.cs`` file and an MRC file given at once: the warning that the STAR file written
    leaves out the .cs file's defocus names the .cs file and says to denoise it into an -o
    folder of its own, not to join STAR files with RELION's job (a .cs file is no STAR file)."""
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.sources import gather_inputs
    from tests.conftest import write_mrc

    root, rng, names = tmp_path / "P7", np.random.default_rng(0), []
    for i in range(2):
        names.append(f"{_MOTION}/{10**17 + i}_m{i}_patch_aligned_doseweighted.mrc")
        (root / names[-1]).parent.mkdir(parents=True, exist_ok=True)
        write_mrc(root / names[-1], rng.poisson(20.0, (256, 256)).astype(np.float32), 0.6575)
    cs = _exposures(root / "J5" / "J5_exposures.cs", names)
    other = write_mrc(tmp_path / "other.mrc", rng.poisson(20.0, (256, 256)).astype(np.float32),
                      0.6575)
    with pytest.warns(StarFileWarning) as caught:
        gather_inputs([cs, other], config=DenoiseConfig())
    said = [str(w.message) for w in caught if "come from" in str(w.message)]
    assert said == [f"the micrographs come from a cryoSPARC .cs file and other files ({cs}): the "
                    "STAR file written lists their names and optics only, without their columns "
                    "rlnDefocusU, rlnDefocusV, rlnDefocusAngle; to keep them, denoise each "
                    "cryoSPARC .cs file into an -o folder of its own"]


def test_a_file_beside_it_that_cannot_be_opened_is_named_not_an_error(tmp_path):
    """A ``.cs`` file beside the one given that cannot even be opened (a link whose target is
    gone, a folder named ``*.cs``) stopped the reading of the given one with the operating
    system's error ('No such file or directory'), though the given one holds every field. It is
    passed over with the warning naming it and why, as an unreadable table beside it is."""
    from cryostream.io.star import read_star
    from tests.conftest import write_mrc

    root = tmp_path / "P9"
    names = [f"{_MOTION}/{10**17 + i}_m{i}_patch_aligned_doseweighted.mrc" for i in range(2)]
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write_mrc(root / name, np.ones((64, 64), np.float32), pixel_size=0.6575)
    given = _exposures(root / "J5" / "J5_exposures.cs", names)
    gone = root / "J5" / "J5_passthrough_exposures.cs"
    gone.symlink_to(tmp_path / "elsewhere" / "J5_passthrough_exposures.cs")
    (root / "J5" / "J5_passthrough_exposures_rejected.cs").mkdir()
    with pytest.warns(StarFileWarning) as caught:
        star = read_star(given)
    assert sorted(str(w.message) for w in caught) == [
        f"{given}: {gone.name} beside it is not joined (none of its fields are used): {gone}: "
        "cannot be read (No such file or directory)",
        f"{given}: J5_passthrough_exposures_rejected.cs beside it is not joined (none of its "
        f"fields are used): {gone.parent / 'J5_passthrough_exposures_rejected.cs'}: cannot be "
        "read (Is a directory)"]
    assert [Path(m.path).name for m in star.micrographs] == [Path(n).name for n in names]


def test_a_star_file_and_a_cs_file_given_together_are_named_as_such(tiny_run, tmp_path,
                                                                    monkeypatch):
    """A RELION STAR file and a cryoSPARC exposures file in one call: the warning naming the
    columns left out called them '2 STAR files' and told to denoise 'each STAR file' on its
    own; it names the .cs file as cryoSPARC's. The STAR file written joins both."""
    from cryostream.cli import main

    root = tmp_path / "P7"
    cs = _exposures(root / "J5" / "J5_exposures_ctf_estimated.cs", _project(tiny_run, root, 1))
    relion = tmp_path / "relion"
    (relion / "MotionCorr/job002").mkdir(parents=True)
    shutil.copy(tiny_run.sim.micrographs[1], relion / "MotionCorr/job002/mic1.mrc")
    star = relion / "MotionCorr/job002/corrected_micrographs.star"
    star.write_text("# version 50001\n\ndata_optics\n\nloop_\n_rlnOpticsGroupName #1\n"
                    "_rlnOpticsGroup #2\n_rlnVoltage #3\n_rlnSphericalAberration #4\n"
                    "_rlnAmplitudeContrast #5\n_rlnMicrographPixelSize #6\n"
                    "opticsGroup1 1 300.0 2.7 0.1 0.6575\n\n# version 50001\n\n"
                    "data_micrographs\n\nloop_\n_rlnMicrographName #1\n_rlnOpticsGroup #2\n"
                    "_rlnAccumMotionTotal #3\nMotionCorr/job002/mic1.mrc 1 16.42\n")
    monkeypatch.chdir(relion)
    out = relion / "External/job010"
    with pytest.warns(StarFileWarning) as caught:
        assert main(["denoise", str(tiny_run.run), "MotionCorr/job002/corrected_micrographs.star",
                     str(cs), "-o", str(out), "--raw", "--tile", "64", "--workers", "1"]) == 0
    said = [str(w.message) for w in caught if "come from" in str(w.message)]
    assert len(said) == 1 and said[0].startswith(
        "the micrographs come from 2 STAR and cryoSPARC .cs files (MotionCorr/job002/"
        f"corrected_micrographs.star, {cs}): the STAR file written joins their rows")
    assert said[0].endswith("denoise each STAR file or cryoSPARC .cs file into an -o folder of "
                            "its own")
    assert "rlnAccumMotionTotal" in said[0]
    rows = starfile.read(out / "denoised_micrographs.star", always_dict=True)["micrographs"]
    assert len(rows) == 2
