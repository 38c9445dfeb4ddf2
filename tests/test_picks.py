"""``cryostream picks-to-originals``: a RELION project whose two motion-corrected micrographs
were denoised by the real ``cryostream denoise`` into ``External/job010``, picked there (a
hand-written RELION 5 ``AutoPick/job011/autopick.star``), and the picks pointed at the
originals for Extract, which pairs micrographs and coordinate files by ``rlnMicrographName``.
Real MRC and STAR files, the real command line."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import starfile
from faults_support import assert_user_error, cli

from cryostream.cli import main
from cryostream.io.stack import MicrographSkippedWarning

ORIGINALS = "CtfFind/job003/micrographs_ctf.star"
PICKS = "AutoPick/job011/autopick.star"

CTF_STAR = """
# version 50001

data_optics

loop_
_rlnOpticsGroupName #1
_rlnOpticsGroup #2
_rlnVoltage #3
_rlnSphericalAberration #4
_rlnAmplitudeContrast #5
_rlnMicrographPixelSize #6
opticsGroup1            1   300.000000     2.700000     0.100000     1.000000


# version 50001

data_micrographs

loop_
_rlnMicrographName #1
_rlnOpticsGroup #2
_rlnCtfImage #3
_rlnDefocusU #4
_rlnDefocusV #5
_rlnDefocusAngle #6
""" + "".join(f"MotionCorr/job002/Movies/FoilHole_{i}_Data.mrc 1 CtfFind/job003/Movies/"
              f"FoilHole_{i}_Data.ctf:mrc {18052.67 + 3000 * i:.6f} {17971.73 + 3000 * i:.6f} "
              f"{7.37 + 10 * i:.6f}\n" for i in range(2))

#: As RELION 5's AutoPick writes it (its trailing spaces kept), on the denoised micrographs.
AUTOPICK = ("\n# version 50001\n\ndata_coordinate_files\n\nloop_ \n_rlnMicrographName #1 \n"
            "_rlnMicrographCoordinates #2 \n"
            + "".join(f"External/job010/FoilHole_{i}_Data.mrc "
                      f"AutoPick/job011/External/job010/FoilHole_{i}_Data_autopick.star \n"
                      for i in range(2)) + " \n")


@pytest.fixture(scope="module")
def denoised_project(tiny_run, tmp_path_factory) -> Path:
    """The project: two 256 × 256 originals, CtfFind's STAR file naming them, ``cryostream
    denoise --raw`` run from the project folder into ``External/job010`` (with the shared
    run's network: the picks' names are no model's), and the picks."""
    root = tmp_path_factory.mktemp("picks") / "project"
    movies = root / "MotionCorr/job002/Movies"
    movies.mkdir(parents=True)
    rng = np.random.default_rng(7)
    for i in range(2):
        with mrcfile.new(movies / f"FoilHole_{i}_Data.mrc") as mrc:
            mrc.set_data(rng.normal(10 + i, 1, (256, 256)).astype(np.float32))
            mrc.voxel_size = 1.0
    (root / "CtfFind/job003").mkdir(parents=True)
    (root / ORIGINALS).write_text(CTF_STAR)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert main(["denoise", ORIGINALS, "-o", "External/job010", "-m", str(tiny_run.run),
                     "--raw", "--workers", "1", "--quiet"]) == 0
    picks = root / "AutoPick/job011/External/job010"
    picks.mkdir(parents=True)
    for i in range(2):
        (picks / f"FoilHole_{i}_Data_autopick.star").write_text(
            "\n# version 50001\n\ndata_\n\nloop_ \n_rlnCoordinateX #1 \n_rlnCoordinateY #2 \n"
            f"   {100 + i}.000000   120.000000 \n   300.000000   {40 + i}.000000 \n \n")
    (root / PICKS).write_text(AUTOPICK)
    return root


@pytest.fixture
def project(denoised_project, tmp_path, monkeypatch) -> Path:
    """A copy of the project of this test's own, the working directory (RELION's)."""
    root = tmp_path / "project"
    shutil.copytree(denoised_project, root)
    monkeypatch.chdir(root)
    return root


def _originals_named(text: str) -> str:
    """``text`` with each denoised micrograph's name replaced by its original's, nothing else."""
    for i in range(2):
        text = text.replace(f"External/job010/FoilHole_{i}_Data.mrc ",
                            f"MotionCorr/job002/Movies/FoilHole_{i}_Data.mrc ")
    return text


@pytest.mark.parametrize("copied", [False, True], ids=["in-place", "project-copied"])
@pytest.mark.parametrize("with_originals", [True, False], ids=["originals", "records-only"])
def test_picks_on_the_denoised_micrographs_name_the_originals_as_extract_reads_them(
        denoised_project, tmp_path, monkeypatch, capsys, with_originals, copied):
    """The new coordinates STAR file names exactly the micrographs of the originals' STAR
    file (Extract pairs them by name, as written), each with its own coordinate file; every
    other byte is the picking job's (its version line, trailing spaces, blank lines). Each
    denoised micrograph's original is the input its ``NAME.json`` records, also in a copy of
    the project (the records name the micrographs where they were denoised)."""
    root = denoised_project
    if copied:
        root = tmp_path / "copy"
        shutil.copytree(denoised_project, root)
    monkeypatch.chdir(root)
    written = tmp_path / "coords_originals.star"
    given = ["--originals", ORIGINALS] if with_originals else []
    result = cli(capsys, "picks-to-originals", PICKS, "-o", written, *given)
    assert result.rc == 0, result.describe()
    assert "2 micrographs" in result.out
    assert written.read_text() == _originals_named(AUTOPICK)
    rows = starfile.read(written, always_dict=True)["coordinate_files"]
    originals = starfile.read(root / ORIGINALS, always_dict=True)["micrographs"]
    assert list(rows["rlnMicrographName"]) == list(originals["rlnMicrographName"])
    assert list(rows["rlnMicrographCoordinates"]) == [
        f"AutoPick/job011/External/job010/FoilHole_{i}_Data_autopick.star" for i in range(2)]
    assert (root / PICKS).read_text() == AUTOPICK  # the input as it was
    assert not list(tmp_path.glob(".*partial"))


def test_a_denoised_micrograph_without_its_record_is_matched_by_name_only_with_the_originals(
        project, capsys):
    """With its ``NAME.json`` removed, a denoised micrograph is no known output: refused
    without ``--originals`` (naming the row and the record), matched by its file name with
    them."""
    (project / "External/job010/FoilHole_1_Data.json").unlink()
    line = assert_user_error(cli(capsys, "picks-to-originals", PICKS, "-o", "new.star"),
                             "External/job010/FoilHole_1_Data.mrc")
    assert "FoilHole_1_Data.json" in line and "--originals" in line and "1 of the 2" in line
    assert not (project / "new.star").exists()
    result = cli(capsys, "picks-to-originals", PICKS, "-o", "new.star", "--originals", ORIGINALS)
    assert result.rc == 0, result.describe()
    assert (project / "new.star").read_text() == _originals_named(AUTOPICK)


def test_a_damaged_record_is_named_as_damaged_not_as_missing(project, capsys):
    """A denoised micrograph whose ``NAME.json`` is cut short (a full disk, a copy stopped) is
    said to have a damaged record, with how to write it again, not to have none beside it."""
    record = project / "External/job010/FoilHole_1_Data.json"
    record.write_text(record.read_text()[:60])
    line = assert_user_error(cli(capsys, "picks-to-originals", PICKS, "-o", "new.star"),
                             "External/job010/FoilHole_1_Data.mrc")
    assert "record FoilHole_1_Data.json is damaged" in line and "denoise its original" in line
    assert "no FoilHole_1_Data.json record beside it" not in line
    assert not (project / "new.star").exists()


def test_a_micrograph_neither_denoised_nor_original_is_refused_or_left_out(project, capsys):
    """A row naming a micrograph that no record and no row of the originals' STAR file
    stands behind is refused with the row, its name and why, nothing written; with
    ``--permissive`` it is left out with a warning naming it, the others pointed at their
    originals."""
    other = project / "Other/job099/stray.mrc"
    other.parent.mkdir(parents=True)
    shutil.copy(project / "MotionCorr/job002/Movies/FoilHole_0_Data.mrc", other)
    text = AUTOPICK.replace(" \n \n", " \nOther/job099/stray.mrc AutoPick/job011/stray.star \n \n")
    (project / "mixed.star").write_text(text)
    for given in ([], ["--originals", ORIGINALS]):
        line = assert_user_error(cli(capsys, "picks-to-originals", "mixed.star", "-o", "new.star",
                                     *given), "Other/job099/stray.mrc")
        assert "row 3" in line and "stray.json record" in line and "--permissive" in line
        assert not (project / "new.star").exists()
        assert not list(project.glob(".*partial"))
    with pytest.warns(MicrographSkippedWarning, match=r"1 of the 3 .*left out.*stray\.mrc"):
        result = cli(capsys, "picks-to-originals", "mixed.star", "-o", "new.star",
                     "--originals", ORIGINALS, "--permissive")
    assert result.rc == 0, result.describe()
    assert "1 left out" in result.out
    # the stray row alone: nothing is left to write, --permissive or not
    (project / "stray.star").write_text(AUTOPICK.split("External/job010")[0]
                                        + "Other/job099/stray.mrc AutoPick/job011/stray.star \n")
    assert_user_error(cli(capsys, "picks-to-originals", "stray.star", "-o", "none.star",
                          "--originals", ORIGINALS, "--permissive"), "stray.mrc")
    assert not (project / "none.star").exists()
    # the stray row gone, the rest pointed at the originals
    assert (project / "new.star").read_text() == _originals_named(AUTOPICK)


def test_an_existing_output_is_replaced_only_with_overwrite_and_the_inputs_never(project,
                                                                                capsys):
    """``-o`` that exists is refused unless ``--overwrite``; the coordinates STAR file and the
    originals' STAR file are never written, ``--overwrite`` or not."""
    (project / "new.star").write_text("mine\n")
    line = assert_user_error(cli(capsys, "picks-to-originals", PICKS, "-o", "new.star"),
                             "new.star")
    assert "--overwrite" in line
    assert (project / "new.star").read_text() == "mine\n"
    assert cli(capsys, "picks-to-originals", PICKS, "-o", "new.star", "--overwrite").rc == 0
    assert (project / "new.star").read_text() == _originals_named(AUTOPICK)
    for target in (PICKS, ORIGINALS):
        before = (project / target).read_text()
        assert_user_error(cli(capsys, "picks-to-originals", PICKS, "-o", target, "--originals",
                              ORIGINALS, "--overwrite"), target)
        assert (project / target).read_text() == before


def test_star_files_that_are_no_relion_4_coordinates_list_are_refused(project, capsys):
    """RELION 3's ``coords_suffix`` file, one micrograph's coordinate file, a micrographs STAR
    file: each refused in one line saying what it is and that RELION 3's form is not
    supported. The denoised micrographs' STAR file given as the originals is refused too."""
    (project / "coords_suffix_autopick.star").write_text(ORIGINALS + "\n")
    for given, said in (("coords_suffix_autopick.star", "RELION 3's coords_suffix file"),
                        ("AutoPick/job011/External/job010/FoilHole_0_Data_autopick.star",
                         "rlnCoordinateX"),
                        (ORIGINALS, "a micrographs STAR file")):
        line = assert_user_error(cli(capsys, "picks-to-originals", given, "-o", "new.star"),
                                 given)
        assert said in line and "RELION 3" in line, line
    line = assert_user_error(cli(capsys, "picks-to-originals", PICKS, "-o", "new.star",
                                 "--originals", "External/job010/denoised_micrographs.star"),
                             "denoised_micrographs.star")
    assert "lists denoised micrographs" in line
    assert not (project / "new.star").exists()


def test_two_rows_that_stand_for_one_original_are_refused(project, capsys):
    """A denoised micrograph and its original both listed: Extract would read one of their
    coordinate files only, so it is refused naming both rows."""
    text = AUTOPICK.replace(" \n \n", " \nMotionCorr/job002/Movies/FoilHole_0_Data.mrc "
                            "AutoPick/job011/other.star \n \n")
    (project / "twice.star").write_text(text)
    line = assert_user_error(cli(capsys, "picks-to-originals", "twice.star", "-o", "new.star",
                                 "--originals", ORIGINALS), "twice.star")
    assert "rows 1" in line and "and 3" in line and "FoilHole_0_Data.mrc" in line
    assert not (project / "new.star").exists()


def test_a_file_of_crlf_lines_keeps_them(project, tmp_path, capsys):
    """A coordinates STAR file saved with Windows line ends (CRLF) is written with them: only
    the names change (they had been turned into LF lines)."""
    (project / PICKS).write_bytes(AUTOPICK.replace("\n", "\r\n").encode())
    written = tmp_path / "coords_originals.star"
    result = cli(capsys, "picks-to-originals", PICKS, "-o", written, "--originals", ORIGINALS)
    assert result.rc == 0, result.describe()
    assert written.read_bytes() == _originals_named(AUTOPICK).replace("\n", "\r\n").encode()


def test_the_same_command_run_again_keeps_the_file_it_wrote(project, capsys):
    """A second run of the same command finds ``-o`` already holding what it would write: it
    says so in one line and ends with status 0, the file untouched (its time too), with or
    without ``--overwrite``. Where the picks changed since, it is refused as before, naming
    ``--overwrite``, the file as it was."""
    command = ("picks-to-originals", PICKS, "-o", "new.star", "--originals", ORIGINALS)
    assert cli(capsys, *command).rc == 0
    written = project / "new.star"
    os.utime(written, ns=(1_000_000_000, 1_000_000_000))  # an hour ago or a year: not now
    for again in ([], ["--overwrite"]):
        result = cli(capsys, *command, *again)
        assert result.rc == 0, result.describe()
        assert result.out.strip().count("\n") == 0, result.out
        assert "new.star" in result.out and "already written" in result.out \
            and "nothing to do" in result.out, result.out
        assert written.stat().st_mtime_ns == 1_000_000_000
        assert written.read_text() == _originals_named(AUTOPICK)
    # the picking job run again since, its second micrograph's coordinates in another file
    picked = project / "AutoPick/job011/External/job010"
    shutil.copy(picked / "FoilHole_1_Data_autopick.star", picked / "FoilHole_1_new.star")
    (project / PICKS).write_text(AUTOPICK.replace("FoilHole_1_Data_autopick", "FoilHole_1_new"))
    line = assert_user_error(cli(capsys, *command), "new.star")
    assert "--overwrite" in line and "exists" in line
    assert written.read_text() == _originals_named(AUTOPICK)
    assert written.stat().st_mtime_ns == 1_000_000_000


def test_a_wrong_file_given_as_originals_is_refused_naming_the_option(project, capsys):
    """A particles STAR file, the denoised micrographs' own STAR file and a STAR file without
    a micrographs table, given to ``--originals``: each refused in one line naming
    ``--originals`` and the file, and saying which file to give (the micrographs STAR file the
    micrographs were denoised from); nothing written."""
    (project / "particles.star").write_text(
        "\ndata_particles\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"
        "_rlnMicrographName #3\n100.0 120.0 MotionCorr/job002/Movies/FoilHole_0_Data.mrc\n")
    (project / "optics.star").write_text(CTF_STAR.split("# version 50001\n\ndata_micrographs")[0])
    for given, said in (("particles.star", "a particles STAR file"),
                        ("External/job010/denoised_micrographs.star",
                         "lists denoised micrographs"),
                        ("optics.star", "no block has a rlnMicrographName column")):
        line = assert_user_error(cli(capsys, "picks-to-originals", PICKS, "-o", "new.star",
                                     "--originals", given), given)
        assert f"--originals {given}:" in line and said in line, line
        assert "micrographs STAR file the micrographs were denoised from" in line, line
        assert "micrographs_ctf.star" in line and "corrected_micrographs.star" in line, line
        assert not (project / "new.star").exists()
