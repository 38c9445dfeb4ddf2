"""A folder without micrographs of its own: where below it they are (EPU sessions, RELION
projects), or the movies there are, said in its error, with the folder or quoted glob to give."""

from __future__ import annotations

import os
import re

import mrcfile
import numpy as np
import pytest

from cryostream import InvalidMicrographError, open_micrographs
from cryostream.cli import main
from tests.conftest import write_mrc


def _mrc(path, sections: int = 1):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (64, 64) if sections == 1 else (sections, 64, 64)
    return write_mrc(path, np.ones(shape, np.float32) + np.eye(64, dtype=np.float32))


def _movie(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"II*\x00")  # a TIFF's first bytes, as EPU and SerialEM write movies


def _error(folder) -> str:
    with pytest.raises(InvalidMicrographError) as info:
        open_micrographs(folder)
    return str(info.value)


def test_an_epu_session_names_its_data_folders_with_a_glob(tmp_path, capsys):
    """`denoise SESSION -o out`, SESSION as EPU writes it (Images-Disc1/GridSquare_N/ with the
    square's image, FoilHoles/ and Data/): it said "check the folder" (the micrographs are three
    levels down); now the Data folders are named, with the glob that takes them alone (not the
    squares' and foil holes' images)."""
    session = tmp_path / "Session"
    for g in (1, 2, 3, 4):
        square = session / "Images-Disc1" / f"GridSquare_{g}"
        _mrc(square / f"GridSquare_{g}.mrc")
        _mrc(square / "FoilHoles" / f"FoilHole_{g}.mrc")
        for k in (1, 2):
            _mrc(square / "Data" / f"FoilHole_{g}_Data_{k}.mrc")
            _movie(square / "Data" / f"FoilHole_{g}_Data_{k}_fractions.tiff")
    (session / "Metadata").mkdir()
    glob = f"{session}/Images-Disc1/*/Data/*.mrc"
    assert _error(session) == (
        f"{session}: folder holds no .mrc files; its sub-folders Images-Disc1/GridSquare_1/Data/, "
        "Images-Disc1/GridSquare_2/Data/, Images-Disc1/GridSquare_3/Data/, … (12 in all) hold "
        f".mrc files, 8 of their 16 in '{glob}': give that glob, or the folders wanted")
    assert len(open_micrographs(glob).micrograph) == 8  # as pasted: the Data folders' alone
    # on the command line: one line, exit 2, nothing written
    out = tmp_path / "out"
    assert main(["denoise", str(session), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"'{glob}'" in err and not out.exists()
    # a session of one square: its Data folder, the most of the .mrc files, named first
    one = tmp_path / "One"
    _mrc(one / "GridSquare_1" / "GridSquare_1.mrc")
    for k in (1, 2):
        _mrc(one / "GridSquare_1" / "Data" / f"d{k}.mrc")
    assert _error(one) == (
        f"{one}: folder holds no .mrc files; its sub-folders GridSquare_1/Data/, GridSquare_1/ "
        f"hold .mrc files, 2 of their 3 in '{one}/GridSquare_1/Data/*.mrc': give that glob, or "
        "the folders wanted")


def test_a_relion_project_names_its_motion_correction_folder(tmp_path):
    """The project folder of RELION: its MotionCorr job's micrographs are three levels down
    (five where the movies' own folders are mirrored below Movies/); the gain reference and
    3D classes' maps beside them are counted but not in the glob; hidden folders (.Nodes) are
    passed over."""
    project = tmp_path / "Project"
    for k in range(3):
        _mrc(project / "MotionCorr" / "job002" / "Movies" / f"m{k}.mrc")
    _mrc(project / "Movies" / "gain.mrc")
    _movie(project / "Movies" / "m0.tiff")
    for k in (1, 2):
        _mrc(project / "Class3D" / "job010" / f"run_it025_class00{k}.mrc")
    _mrc(project / ".Nodes" / "x" / "a.mrc")
    assert _error(project) == (
        f"{project}: folder holds no .mrc files; its sub-folders MotionCorr/job002/Movies/, "
        "Class3D/job010/, Movies/ hold .mrc files, 3 of their 6 in "
        f"'{project}/MotionCorr/job002/Movies/*.mrc': give that glob, or the folders wanted")
    mirrored = tmp_path / "Mirrored"
    movies = mirrored / "MotionCorr" / "job002" / "Movies" / "Images-Disc1"
    for g in (1, 2):
        _mrc(movies / f"GridSquare_{g}" / "Data" / "m.mrc")
    assert _error(mirrored) == (
        f"{mirrored}: folder holds no .mrc files; its sub-folders "
        "MotionCorr/job002/Movies/Images-Disc1/GridSquare_1/Data/, "
        "MotionCorr/job002/Movies/Images-Disc1/GridSquare_2/Data/ hold .mrc files: give them "
        f"({movies / 'GridSquare_1' / 'Data'} {movies / 'GridSquare_2' / 'Data'}), or all at "
        f"once as '{mirrored}/MotionCorr/job002/Movies/Images-Disc1/*/Data/*.mrc'")
    alone = tmp_path / "Alone"
    _mrc(alone / "MotionCorr" / "job002" / "Movies" / "m.mrc")
    assert _error(alone) == (
        f"{alone}: folder holds no .mrc files; its sub-folder MotionCorr/job002/Movies/ holds "
        f".mrc files: give {alone / 'MotionCorr' / 'job002' / 'Movies'}")


def test_the_search_below_is_bounded_and_passes_over_links_back_up(tmp_path):
    """A huge tree is not walked whole (1000 folders listed at most): the error says how far
    it looked; a link back up to the folder, and one that leads nowhere, are passed over."""
    tree = tmp_path / "tree"
    _mrc(tree / "a" / "m.mrc")
    (tree / "a" / "up").symlink_to(tree)
    (tree / "a" / "nowhere").symlink_to(tmp_path / "gone")
    for k in range(1100):
        (tree / f"f{k:04d}").mkdir()
    _mrc(tree / "f1099" / "late" / "m.mrc")  # below the 1000th folder: not reached
    assert _error(tree) == (
        f"{tree}: folder holds no .mrc files; its sub-folder a/ holds .mrc files: give "
        f"{tree / 'a'} (1 in the first 1000 folders looked in)")
    (tree / "a" / "m.mrc").unlink()
    assert _error(tree) == (
        f"{tree}: folder holds no .mrc files; check the folder (none in the first 1000 folders "
        "below it, 6 levels down at most)")


def test_movies_below_or_alone_need_motion_correction_first(tmp_path):
    """A folder whose sub-folders hold movies alone (EPU's raw Data folders: .tiff, .eer, MRC
    stacks of frames) says so (it said "check the folder"); one of movies beside a folder of
    motion-corrected micrographs names that folder too; a folder of movies alone (.eer, a
    stack of frames) is said to need motion correction, as before."""
    raw = tmp_path / "raw"
    _movie(raw / "GridSquare_2" / "Data" / "a_fractions.tiff")
    _movie(raw / "GridSquare_1" / "Data" / "b.eer")
    _mrc(raw / "stacks" / "c.mrcs", sections=3)
    _mrc(raw / "single" / "d.mrcs")  # a micrograph RELION wrote as a stack of one: no movie
    assert _error(raw) == (
        f"{raw}: folder holds no .mrc files; its sub-folders GridSquare_1/Data/, "
        "GridSquare_2/Data/, stacks/ hold movies, not micrographs: motion-correct them first "
        "(MotionCor2 or RELION's own, for example) and give the motion-corrected micrographs "
        "(.mrc)")
    frames = tmp_path / "frames"
    _movie(frames / "x.eer")
    _mrc(frames / "y.mrcs", sections=3)
    assert mrcfile.read(frames / "y.mrcs").shape[0] == 3
    assert _error(frames) == (
        f"{frames}: folder holds no .mrc files, but 2 movies (x.eer, y.mrcs); motion-correct "
        "them first (MotionCor2 or RELION's own, for example) and give the motion-corrected "
        "micrographs (.mrc)")
    _mrc(frames / "motioncorr" / "x.mrc")
    assert re.fullmatch(
        re.escape(f"{frames}: folder holds no .mrc files, but 2 movies (x.eer, y.mrcs); ")
        + r".*\(\.mrc\); " + re.escape(f"its sub-folder motioncorr/ holds .mrc files: give "
                                       f"{frames / 'motioncorr'}"), _error(frames))


def _relion_star(path, names):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "data_optics\n\nloop_\n_rlnOpticsGroupName #1\n_rlnOpticsGroup #2\n"
        "_rlnMicrographPixelSize #3\n_rlnVoltage #4\n_rlnSphericalAberration #5\n"
        "_rlnAmplitudeContrast #6\nopticsGroup1 1 0.660000 300.000000 2.700000 0.100000\n\n\n"
        "data_micrographs\n\nloop_\n_rlnMicrographName #1\n_rlnOpticsGroup #2\n"
        + "".join(f"{n} 1\n" for n in names))


def test_a_relion_project_or_job_names_its_star_file(tmp_path, monkeypatch):
    """A RELION project (or its MotionCorr job) given as the folder: its STAR file is named, the
    CtfFind job's where there is one (it adds the defocus), the latest job's where several are;
    the STAR file named is read from wherever the command runs."""
    project = tmp_path / "Project"
    names = [f"MotionCorr/job002/Movies/m{k}.mrc" for k in range(2)]
    for n in names:
        _mrc(project / n)
    corrected = project / "MotionCorr" / "job002" / "corrected_micrographs.star"
    _relion_star(corrected, names)
    assert _error(project) == (
        f"{project}: folder holds no .mrc files; it is a RELION project or job: give its STAR "
        f"file {corrected} (the micrographs with their pixel size and optics, read from the "
        "project folder)")
    assert _error(project / "MotionCorr").endswith(f"give its STAR file {corrected} (the "
                                                   "micrographs with their pixel size and optics, "
                                                   "read from the project folder)")
    assert _error(corrected.parent).endswith(f"give its STAR file {corrected} (the micrographs "
                                             "with their pixel size and optics, read from the "
                                             "project folder)")
    ctf = project / "CtfFind" / "job004" / "micrographs_ctf.star"
    _relion_star(ctf, names)
    later = project / "CtfFind" / "job007" / "micrographs_ctf.star"
    _relion_star(later, names)
    os.utime(ctf, (1, 1))
    assert f"give its STAR file {later} (" in _error(project)
    monkeypatch.chdir(tmp_path)
    stack = open_micrographs(later)
    assert stack.shape[0] == 2
