"""A RELION project as RELION lays it out (``MotionCorr/job002/Movies``, a CtfFind job's
``micrographs_ctf.star`` with its optics table), denoised into ``External/job010`` and read
back as RELION's next jobs read ``denoised_micrographs.star``. Real MRC and STAR files, the
real command line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import starfile

from cryostream.cli import main

OPTICS = """
# version 50001

data_optics

loop_
_rlnOpticsGroupName #1
_rlnOpticsGroup #2
_rlnMtfFileName #3
_rlnMicrographOriginalPixelSize #4
_rlnVoltage #5
_rlnSphericalAberration #6
_rlnAmplitudeContrast #7
_rlnMicrographPixelSize #8
opticsGroup1            1 mtf_k3_300kV.star     0.330000   300.000000     2.700000     0.100000     0.660000
"""

MICROGRAPHS = """
# version 50001

data_micrographs

loop_
_rlnMicrographName #1
_rlnOpticsGroup #2
_rlnCtfImage #3
_rlnDefocusU #4
_rlnDefocusV #5
_rlnDefocusAngle #6
_rlnCtfFigureOfMerit #7
_rlnCtfMaxResolution #8
_rlnCtfIceRingDensity #9
"""


def _project(tiny_run, root: Path, extra: str | None = None) -> Path:
    """``root`` laid out as a RELION project: two motion-corrected micrographs and the CtfFind
    job's STAR file naming them relative to ``root``; its CTF columns hold values RELION
    writes in scientific notation (|v| < 0.001: a poor fit's figure of merit). ``extra``: a
    column more, naming each micrograph's ``.star`` file beside it by its absolute path."""
    movies = root / "MotionCorr/job002/Movies"
    movies.mkdir(parents=True)
    (root / "CtfFind/job003/Movies").mkdir(parents=True)
    (root / "mtf_k3_300kV.star").write_text("data_\nloop_\n_rlnResolutionInversePixel\n"
                                             "_rlnMtfValue\n0 1\n0.5 0.5\n")
    rows = []
    for i, (merit, ice) in enumerate([("4.567800e-05", "1.234500e-04"), ("0.131144", "2.5")]):
        shutil.copy(tiny_run.sim.micrographs[i], movies / f"mic{i}.mrc")
        (root / f"CtfFind/job003/Movies/mic{i}.ctf").write_bytes(b"")
        (movies / f"mic{i}.star").write_text("data_general\n")
        rows.append(f"MotionCorr/job002/Movies/mic{i}.mrc 1 CtfFind/job003/Movies/mic{i}.ctf:mrc "
                    f"18052.670000 17971.730000 7.370000 {merit} 4.809192 {ice}"
                    + (f" {(movies / f'mic{i}.star').as_posix()}" if extra else "") + "\n")
    star = root / "CtfFind/job003/micrographs_ctf.star"
    star.write_text(OPTICS + "\n" + MICROGRAPHS + (f"_{extra} #10\n" if extra else "")
                    + "".join(rows) + "\n")
    return star


def test_the_ctffind_columns_are_carried_with_the_digits_relion_wrote(tiny_run, tmp_path,
                                                                      monkeypatch):
    """Values RELION writes in scientific notation (a figure of merit of 4.5678e-05) come back
    with their digits, as RELION writes them (``4.567800e-05``), not rounded to six decimals
    (``0.000046``); values RELION writes fixed stay so (``18052.670000``)."""
    project = tmp_path / "project"
    star = _project(tiny_run, project)
    monkeypatch.chdir(project)
    assert main(["denoise", str(tiny_run.run), str(star.relative_to(project)), "-o",
                 "External/job010", "--raw", "--tile", "64", "--workers", "1"]) == 0
    written = project / "External/job010/denoised_micrographs.star"
    rows = starfile.read(written, always_dict=True)["micrographs"]
    assert list(rows["rlnCtfFigureOfMerit"]) == pytest.approx([4.5678e-05, 0.131144], rel=1e-6)
    assert list(rows["rlnCtfIceRingDensity"]) == pytest.approx([1.2345e-04, 2.5], rel=1e-6)
    text = written.read_text()
    assert "4.567800e-05" in text and "1.234500e-04" in text
    assert "18052.670000" in text and "0.131144" in text


def test_a_column_of_file_names_cryostream_does_not_know_is_named_from_the_project(
        tiny_run, tmp_path, monkeypatch):
    """A column RELION's list does not hold whose every value names a file in the project (a
    third-party tool's, absolute paths) is named as ``rlnMicrographName`` is: relative to the
    project folder, as the guide says of any such column (pandas 3 reads it as ``str``, not
    ``object``: it was left absolute)."""
    project = tmp_path / "project"
    star = _project(tiny_run, project, extra="xyzMicrographThumbnail")
    monkeypatch.chdir(project)
    assert main(["denoise", str(tiny_run.run), str(star.relative_to(project)), "-o",
                 "External/job010", "--raw", "--tile", "64", "--workers", "1"]) == 0
    rows = starfile.read(project / "External/job010/denoised_micrographs.star",
                         always_dict=True)["micrographs"]
    assert list(rows["xyzMicrographThumbnail"]) == [f"MotionCorr/job002/Movies/mic{i}.star"
                                                    for i in range(2)]
    assert list(rows["rlnMicrographName"]) == [f"External/job010/mic{i}.mrc" for i in range(2)]


def test_an_optics_table_without_the_pixel_size_gets_the_one_used(tiny_run, tmp_path,
                                                                   monkeypatch):
    """An optics table without ``rlnMicrographPixelSize`` (written by hand or by another tool;
    RELION writes it) comes back with the pixel size the micrographs were denoised at, their
    headers', per optics group: RELION's AutoPick and Extract read it there. The rest of the
    table is as it was."""
    from cryostream.io.mrc import read_header

    project = tmp_path / "project"
    star = _project(tiny_run, project)
    text = star.read_text().replace("_rlnMicrographPixelSize #8\n", "")
    star.write_text(text.replace("0.100000     0.660000", "0.100000"))
    monkeypatch.chdir(project)
    assert main(["denoise", str(tiny_run.run), str(star.relative_to(project)), "-o",
                 "External/job010", "--raw", "--tile", "64", "--workers", "1"]) == 0
    optics = starfile.read(project / "External/job010/denoised_micrographs.star",
                           always_dict=True)["optics"]
    header = read_header(project / "MotionCorr/job002/Movies/mic0.mrc").pixel_size_angstrom
    assert list(optics["rlnMicrographPixelSize"]) == pytest.approx([header])
    assert list(optics["rlnMicrographOriginalPixelSize"]) == pytest.approx([0.33])
    assert list(optics["rlnMtfFileName"]) == ["mtf_k3_300kV.star"]


def test_a_folder_takes_a_one_section_mrcs_file_as_a_micrograph(tiny_run, tmp_path, notes):
    """RELION writes a micrograph as a one-section ``.mrcs`` stack at times: in a folder it is a
    micrograph, denoised and listed as ``NAME.mrc`` (it was left out as a movie, without its
    header read); an ``.mrcs`` of many sections is a movie's frames, left out with a note."""
    import mrcfile

    folder = tmp_path / "MotionCorr/job002/Movies"
    folder.mkdir(parents=True)
    shutil.copy(tiny_run.sim.micrographs[0], folder / "mic0.mrc")
    image = mrcfile.read(tiny_run.sim.micrographs[1])
    for name, data in (("mic1.mrcs", image[None]), ("movie.mrcs", image[None].repeat(4, 0))):
        with mrcfile.new(folder / name) as mrc:
            mrc.set_data(data)
            mrc.voxel_size = 0.66
    out = tmp_path / "External/job010"
    assert main(["denoise", str(tiny_run.run), str(folder), "-o", str(out), "--raw", "--tile",
                 "64", "--workers", "1", "--pixel-size", "0.66"]) == 0
    rows = starfile.read(out / "denoised_micrographs.star", always_dict=True)["micrographs"]
    assert [Path(n).name for n in rows["rlnMicrographName"]] == ["mic0.mrc", "mic1.mrc"]
    assert f"{folder}: left out 1 movie (movie.mrcs), which needs motion correction first " \
           "(MotionCor2 or RELION's own, for example): give the motion-corrected micrographs " \
           "(.mrc)" in notes


@pytest.mark.parametrize("version", ["50001", "30001", None])
def test_the_star_file_written_keeps_the_version_line_of_the_input(tiny_run, tmp_path,
                                                                   monkeypatch, version):
    """A RELION 5 input (``# version 50001``) gives ``denoised_micrographs.star`` RELION 5's
    version line, as RELION 5's own jobs write it (it said ``# version 30001``, RELION 3.1's,
    whatever the input); a RELION 3.1 or 4 input keeps its ``30001``, and a file without a
    version line (written by hand or by another tool) gets ``30001``, the form written."""
    project = tmp_path / "project"
    star = _project(tiny_run, project)
    text = star.read_text().replace("# version 50001\n", "")
    star.write_text(text if version is None else text.replace(
        "data_", f"# version {version}\n\ndata_"))
    monkeypatch.chdir(project)
    assert main(["denoise", str(tiny_run.run), str(star.relative_to(project)), "-o",
                 "External/job010", "--raw", "--tile", "64", "--workers", "1"]) == 0
    written = (project / "External/job010/denoised_micrographs.star").read_text()
    lines = [ln for ln in written.splitlines() if ln.startswith("# version")]
    assert lines == [f"# version {version or '30001'}"] * 2


def test_the_closing_line_names_the_output_without_dot_dot(tiny_run, tmp_path, monkeypatch,
                                                           capsys):
    """``-o ../den1`` from the project folder: the closing line names the output folder and
    its STAR file absolute and plain (``/…/den1/denoised_micrographs.star``, not
    ``/…/project/../den1/…``); an output inside the working directory is named relative to it
    (``External/job010/denoised_micrographs.star``, not the absolute path)."""
    project = tmp_path / "project"
    star = _project(tiny_run, project)
    monkeypatch.chdir(project)
    common = ["--raw", "--tile", "64", "--workers", "1"]
    assert main(["denoise", str(tiny_run.run), str(star.relative_to(project)), "-o", "../den1",
                 *common]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"into {tmp_path / 'den1'}, listed in {tmp_path / 'den1/denoised_micrographs.star'}:" \
        in line and ".." not in line
    assert main(["denoise", str(tiny_run.run), str(star.relative_to(project)), "-o",
                 "./External/../External/job010", *common]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "into External/job010, listed in External/job010/denoised_micrographs.star:" in line


def test_a_shown_path_goes_where_the_path_does_through_a_link(tmp_path, monkeypatch):
    """``..`` after a link is the link target's parent, as the system reads it: the plain path
    of ``link/../den1`` is the target's ``den1``, not the working directory's, so a STAR file
    written there lands beside its outputs."""
    from cryostream.io.paths import plain_path, shown_path

    (tmp_path / "data/deep").mkdir(parents=True)
    (tmp_path / "data/den1").mkdir()
    (tmp_path / "P1").mkdir()
    (tmp_path / "P1/link").symlink_to(tmp_path / "data/deep")
    monkeypatch.chdir(tmp_path / "P1")
    assert plain_path("link/../den1") == tmp_path / "data/den1"
    assert shown_path("link/../den1") == str(tmp_path / "data/den1")
    assert shown_path("link/./x") == "link/x" and shown_path("../P1/a") == "a"
