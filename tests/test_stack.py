"""Lazy micrograph stacks: laziness, values on awkward chunkings, inputs, bad input sets."""

from __future__ import annotations

import os
import pickle
import re

import dask
import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
import xarray as xr

import cryostream
from cryostream import InvalidMicrographError, MicrographSkippedWarning, open_micrographs
from tests.conftest import write_mrc


def _oracle(paths) -> np.ndarray:
    return np.stack([mrcfile.read(p).astype(np.float32) for p in paths])


def test_dims_coords_attrs(small_mrcs):
    stack = open_micrographs(small_mrcs)
    assert isinstance(stack, xr.DataArray) and isinstance(stack.data, dask.array.Array)
    assert stack.dims == ("micrograph", "y", "x") and stack.shape == (3, 96, 80)
    assert stack.dtype == np.float32
    assert list(stack.micrograph.values) == ["m0", "m1", "m2"]
    assert stack.x.values[1] == pytest.approx(0.66) and stack.y.attrs["units"] == "Å"
    assert stack.attrs["sources"] == [str(p.resolve()) for p in small_mrcs]
    assert stack.attrs["pixel_size_angstrom"] == pytest.approx(0.66)
    assert stack.attrs["headers"][0]["mode"] == 2
    assert stack.attrs["skipped"] == []
    # each micrograph's file follows a selection; the attrs stay the stack's as opened
    picked = stack.isel(micrograph=[2, 0])
    assert list(picked.source.values) == [str(small_mrcs[i].resolve()) for i in (2, 0)]
    assert list(picked.micrograph.values) == ["m2", "m0"]


@pytest.mark.parametrize("chunks", [1, 7, 50, 96, 500, -1, None, {"y": 13}])
def test_values_match_numpy_on_awkward_chunks(small_mrcs, chunks):
    stack = open_micrographs(small_mrcs, chunks=chunks)
    np.testing.assert_array_equal(stack.values, _oracle(small_mrcs))
    # one band of full rows per chunk
    assert stack.data.chunks[2] == (80,)


def test_graph_holds_headers_not_pixels(small_mrcs):
    stack = open_micrographs(small_mrcs, chunks=10)
    graph = dict(stack.data.__dask_graph__())
    size = len(pickle.dumps(graph))
    assert size < 40_000, size  # a few hundred bytes per task, no arrays
    # the stack was built without reading pixels: damage the data, then build succeeds
    # and the damage shows only on compute
    with open(small_mrcs[0], "r+b") as fh:
        fh.seek(1024)
        fh.write(np.full(80, 7, np.float32).tobytes())
    fresh = open_micrographs(small_mrcs, chunks=10)
    assert float(fresh[0, 0, 0]) == 7.0


@pytest.mark.parametrize("scheduler", ["threads", "sync",
                                       pytest.param("processes", marks=pytest.mark.slow)])
def test_schedulers_agree(small_mrcs, scheduler):
    stack = open_micrographs(small_mrcs, chunks=16).data
    np.testing.assert_array_equal(stack.compute(scheduler=scheduler), _oracle(small_mrcs))


def test_reductions_are_lazy_and_exact(small_mrcs):
    stack = open_micrographs(small_mrcs, chunks=9)
    q = stack.quantile(0.95, dim=("y", "x"))
    np.testing.assert_allclose(
        q.values, np.percentile(_oracle(small_mrcs), 95, axis=(1, 2)), rtol=1e-6
    )


def test_glob_folder_and_star_inputs(small_mrcs, tmp_path, monkeypatch):
    folder = small_mrcs[0].parent
    by_folder = open_micrographs(folder)
    by_glob = open_micrographs(str(folder / "m*.mrc"))
    star = tmp_path / "micrographs.star"
    names = [f"mics/{p.name}" for p in small_mrcs]
    starfile.write({"micrographs": pd.DataFrame({"rlnMicrographName": names})}, star)
    monkeypatch.chdir(tmp_path.parent)  # relative names resolve against the STAR's folder
    by_star = open_micrographs(star)
    for s in (by_folder, by_glob, by_star):
        assert s.attrs["sources"] == [str(p.resolve()) for p in small_mrcs]
    twice = open_micrographs([small_mrcs[0], small_mrcs[0], small_mrcs[1]])
    assert twice.sizes["micrograph"] == 2


def test_simulated_star_opens(tmp_path):
    sim = cryostream.simulate(tmp_path, 2, shape=(128, 160))
    stack = open_micrographs(sim.micrographs_star)
    assert stack.shape == (2, 128, 160)
    assert stack.attrs["pixel_size_angstrom"] == pytest.approx(0.6575)


def test_a_folder_notes_the_files_it_leaves_out(small_mrcs, notes):
    """A folder's files other than .mrc are left out with one note that counts them and names
    the first three (they went without a word)."""
    folder = small_mrcs[0].parent
    for name in ("notes.txt", "img.jpg", "m0.log", "m0.star"):
        (folder / name).write_text("not a micrograph\n")
    assert open_micrographs(folder).sizes["micrograph"] == 3
    assert notes == [f"{folder}: left out 4 files that are not MRC micrographs (.mrc): img.jpg, "
                     "m0.log, m0.star, …"]


def test_movies_in_a_folder_are_said_to_need_motion_correction(small_mrcs, tmp_path, notes):
    """Movies (.tif, .tiff, .eer, .mrcs frame stacks) beside the micrographs are named as
    movies to motion-correct first; a folder of movies only is refused saying so (it said only
    'holds no .mrc files')."""
    folder = small_mrcs[0].parent
    for name in ("b.eer", "a.tif", "c.tiff", "d.mrcs", "notes.txt"):
        (folder / name).write_bytes(b"II*\x00")
    assert open_micrographs(folder).sizes["micrograph"] == 3
    assert notes == [f"{folder}: left out 4 movies (a.tif, b.eer, c.tiff, …), which need motion "
                     "correction first (MotionCor2 or RELION's own, for example): give the "
                     "motion-corrected micrographs (.mrc); and 1 file that is not an MRC "
                     "micrograph (.mrc): notes.txt"]
    movies = tmp_path / "movies"
    movies.mkdir()
    for name in ("m1_fractions.tiff", "m2_fractions.tiff"):
        (movies / name).write_bytes(b"II*\x00")
    with pytest.raises(InvalidMicrographError, match=re.escape(
            f"{movies}: folder holds no .mrc files, but 2 movies (m1_fractions.tiff, "
            "m2_fractions.tiff); motion-correct them first (MotionCor2 or RELION's own, for "
            "example) and give the motion-corrected micrographs (.mrc)")):
        open_micrographs(movies)


def test_a_gain_reference_beside_the_micrographs_is_named_as_one(small_mrcs, tmp_path, notes):
    """A gain reference beside the micrographs (EPU's gain_ref.tiff for a K3, a .gain file
    beside EER movies) was named a movie that 'needs motion correction first'. Now it is named
    a gain reference, with nothing to do, and the movies beside it keep their advice; a folder
    of movies and their gain reference counts the movies alone."""
    folder = small_mrcs[0].parent
    for name in ("gain_ref.tiff", "20240101_K3.gain", "again_fractions.tiff"):
        (folder / name).write_bytes(b"II*\x00")
    assert open_micrographs(folder).sizes["micrograph"] == 3
    assert notes == [f"{folder}: left out 2 gain references (20240101_K3.gain, gain_ref.tiff), "
                     "which motion correction uses, not micrographs: nothing to do; and 1 movie "
                     "(again_fractions.tiff), which needs motion correction first (MotionCor2 or "
                     "RELION's own, for example): give the motion-corrected micrographs (.mrc)"]
    for name in ("20240101_K3.gain", "again_fractions.tiff"):
        (folder / name).unlink()
    notes.clear()
    assert open_micrographs(folder).sizes["micrograph"] == 3
    assert notes == [f"{folder}: left out 1 gain reference (gain_ref.tiff), which motion "
                     "correction uses, not a micrograph: nothing to do"]
    movies = tmp_path / "movies"
    movies.mkdir()
    for name in ("m1_fractions.tiff", "gain_ref.tiff"):
        (movies / name).write_bytes(b"II*\x00")
    with pytest.raises(InvalidMicrographError, match=re.escape(
            f"{movies}: folder holds no .mrc files, but 1 movie (m1_fractions.tiff); ")):
        open_micrographs(movies)


def test_half_sums_beside_their_full_sums_are_left_out_with_a_note(small_mrcs, tmp_path,
                                                                   notes):
    """A motion correction folder as MotionCor2 -SplitSum writes it (NAME.mrc, NAME_EVN.mrc and
    NAME_ODD.mrc side by side): the full sums are the micrographs, and the halves are left out
    with a note that says how to denoise them in pairs (each micrograph was opened three times,
    denoised three times and listed three times in the STAR file). Halves without a full sum
    beside them stay micrographs."""
    import shutil

    session = tmp_path / "session"
    folder = session / "mc"
    folder.mkdir(parents=True)
    for m in small_mrcs:
        for suffix in ("", "_EVN", "_ODD"):
            shutil.copy(m, folder / f"{m.stem}{suffix}.mrc")
    stack = open_micrographs(folder)
    assert stack.sizes["micrograph"] == 3
    assert notes == [f"{folder}: left out 6 even/odd half-sums beside their full sums (m0_EVN.mrc, "
                     f"m0_ODD.mrc, m1_EVN.mrc, …): the full sums are the micrographs; to denoise "
                     f"the halves in pairs, give '{folder}/*_EVN.mrc' --odd '{folder}/*_ODD.mrc'"]
    # a quoted glob of that folder (and ** through the folders above) leaves them out alike:
    # it had taken all 9, with a note that called the halves "without their full sums"
    for pattern in (f"{folder}/*.mrc", f"{session}/**/*.mrc"):
        notes.clear()
        assert open_micrographs(pattern).sizes["micrograph"] == 3
        assert notes == [
            f"{pattern}: left out 6 even/odd half-sums beside their full sums (m0_EVN.mrc, "
            f"m0_ODD.mrc, m1_EVN.mrc, …): the full sums are the micrographs; to denoise the "
            f"halves in pairs, give '{pattern[:-5]}*_EVN.mrc' --odd '{pattern[:-5]}*_ODD.mrc'"]
    # named one by one (a glob the shell expanded): left out alike, with the folder's note (all
    # 9 had been taken: each micrograph three times)
    notes.clear()
    assert open_micrographs(sorted(folder.glob("*.mrc"))).sizes["micrograph"] == 3
    assert notes == [f"{folder}: left out 6 even/odd half-sums beside their full sums (m0_EVN.mrc, "
                     f"m0_ODD.mrc, m1_EVN.mrc, …): the full sums are the micrographs; to denoise "
                     f"the halves in pairs, give '{folder}/*_EVN.mrc' --odd '{folder}/*_ODD.mrc'"]
    # the folder above: its own micrograph taken, the sub-folder that holds more named
    shutil.copy(small_mrcs[0], session / "square.mrc")
    notes.clear()
    assert open_micrographs(session).sizes["micrograph"] == 1
    assert notes == [f"{session}: left out 1 sub-folder that holds .mrc files (mc/), not "
                     "searched: give it too if their micrographs are wanted"]
    for m in small_mrcs:
        (folder / m.name).unlink()
    assert open_micrographs(folder).sizes["micrograph"] == 6  # halves alone: as they are


def test_half_sums_named_with_their_full_sums_are_left_out_and_one_alone_is_taken(
        small_mrcs, tmp_path, monkeypatch, notes):
    """Half-sums named one by one with their full sums (``Data/*.mrc`` unquoted: the shell
    gives NAME.mrc, NAME_EVN.mrc and NAME_ODD.mrc) are left out as the folder leaves them out,
    whatever their endings and however the folder is spelled; a half named without its full
    sum is taken as given."""
    import shutil

    data = tmp_path / "Data"
    data.mkdir()
    for m in small_mrcs[:2]:
        for suffix in ("", "_even", "_odd"):
            shutil.copy(m, data / f"{m.stem}{suffix}.mrc")
    monkeypatch.chdir(tmp_path)
    named = ["Data/m0.mrc", str(data / "m0_even.mrc"), "Data/m0_odd.mrc", "Data/../Data/m1.mrc",
             "Data/m1_even.mrc", "Data/m1_odd.mrc"]
    stack = open_micrographs(named)
    assert list(stack.micrograph.values) == ["m0", "m1"]
    assert notes == [f"{data}: left out 4 even/odd half-sums beside their full sums "
                     "(m0_even.mrc, m0_odd.mrc, m1_even.mrc, …): the full sums are the "
                     f"micrographs; to denoise the halves in pairs, give '{data}/*_even.mrc' --odd "
                     f"'{data}/*_odd.mrc'"]  # (the endings the files use)
    notes.clear()
    assert list(open_micrographs(["Data/m0_even.mrc"]).micrograph.values) == ["m0_even"]
    assert list(open_micrographs(["Data/m1.mrc", "Data/m0_even.mrc"]).micrograph.values) == [
        "m1", "m0_even"]  # another micrograph's full sum leaves it be
    assert notes == []
    assert open_micrographs(["Data/m0_even.mrc", "Data/m0_odd.mrc"]).sizes["micrograph"] == 2


def test_half_sums_without_full_sums_stay_micrographs_with_a_note(small_mrcs, tmp_path, notes):
    """A folder of even/odd half-sums alone (NAME_EVN.mrc and NAME_ODD.mrc, no NAME.mrc): each
    half is still a micrograph of its own, and one note says they look like halves and gives
    the --odd globs that take them in pairs (they had been taken one by one without a word);
    the endings the files use (_even/_odd) are the globs'."""
    import shutil

    folder = tmp_path / "halves"
    folder.mkdir()
    for m in small_mrcs:
        for suffix in ("_EVN", "_ODD"):
            shutil.copy(m, folder / f"{m.stem}{suffix}.mrc")
    assert open_micrographs(folder).sizes["micrograph"] == 6
    assert notes == [f"{folder}: 6 files look like even/odd half-sums without their full sums "
                     "(m0_EVN.mrc, m0_ODD.mrc, m1_EVN.mrc, …): each is taken as a micrograph of "
                     "its own; to take them in pairs (the two halves of each micrograph), give "
                     f"'{folder}/*_EVN.mrc' --odd '{folder}/*_ODD.mrc'"]
    other = tmp_path / "lower"
    other.mkdir()
    for suffix in ("_even", "_odd"):
        shutil.copy(small_mrcs[0], other / f"m0{suffix}.mrc")
    shutil.copy(small_mrcs[1], other / "m1_even.mrc")  # no odd half: not said to be a pair
    notes.clear()
    assert open_micrographs(other).sizes["micrograph"] == 3
    assert notes == [f"{other}: 2 files look like even/odd half-sums without their full sums "
                     "(m0_even.mrc, m0_odd.mrc): each is taken as a micrograph of its own; to "
                     "take them in pairs (the two halves of each micrograph), give "
                     f"'{other}/*_even.mrc' --odd '{other}/*_odd.mrc'"]


def test_a_folder_of_denoised_outputs_opens_without_a_note(small_mrcs, notes):
    """What cryostream denoise writes beside its outputs (NAME.json, its STAR file and the
    .bak copies of earlier ones), hidden files and sub-folders are left out without a word."""
    from cryostream.denoise.outputs import STAR_NAME

    folder = small_mrcs[0].parent
    for m in small_mrcs:
        m.with_suffix(".json").write_text("{}\n")
    (folder / STAR_NAME).write_text("data_optics\n")
    for bak in (".bak", ".bak2"):  # an earlier listing kept by a later call
        (folder / f"{STAR_NAME}{bak}").write_text("data_optics\n")
    (folder / ".m0.mrc.partial").write_bytes(b"")
    (folder / "thumbnails").mkdir()
    assert open_micrographs(folder).sizes["micrograph"] == 3
    assert notes == []


# --- bad input sets ------------------------------------------------------------------------


def test_empty_inputs(tmp_path):
    with pytest.raises(InvalidMicrographError, match="<inputs>: no micrographs were given"):
        open_micrographs([])
    with pytest.raises(InvalidMicrographError, match="folder holds no .mrc files"):
        open_micrographs(tmp_path)
    with pytest.raises(InvalidMicrographError, match="the glob matched no files"):
        open_micrographs(str(tmp_path / "*.mrc"))


def test_a_folder_without_micrographs_names_the_sub_folders_that_hold_them(tmp_path):
    """`denoise SESSION -o out` where SESSION holds GridSquare-like sub-folders of micrographs
    said only "check the folder"; now the sub-folders are named, with a glob for all of
    them; one unreadable is passed over."""
    session = tmp_path / "session"
    for name in ("s1", "s2"):
        (session / name).mkdir(parents=True)
        write_mrc(session / name / f"{name}.mrc", np.ones((64, 64), np.float32))
    (session / "notes").mkdir()
    with pytest.raises(InvalidMicrographError) as info:
        open_micrographs(session)
    assert str(info.value) == (
        f"{session}: folder holds no .mrc files; its sub-folders s1/, s2/ hold .mrc files: give "
        f"them ({session / 's1'} {session / 's2'}), or all at once as '{session}/*/*.mrc'")
    assert len(open_micrographs(f"{session}/*/*.mrc").micrograph) == 2
    one = tmp_path / "one"
    (one / "a").mkdir(parents=True)
    write_mrc(one / "a" / "m.mrc", np.ones((64, 64), np.float32))
    with pytest.raises(InvalidMicrographError, match=rf"its sub-folder a/ holds \.mrc files: give "
                       rf"{one / 'a'}$"):
        open_micrographs(one)


def test_star_without_micrograph_column(tmp_path):
    star = tmp_path / "p.star"
    starfile.write({"particles": pd.DataFrame({"rlnCoordinateX": [1.0]})}, star)
    with pytest.raises(InvalidMicrographError, match="no block has a rlnMicrographName column"):
        open_micrographs(star)


def test_a_different_shape_is_named(small_mrcs):
    odd = write_mrc(small_mrcs[0].parent / "odd.mrc", np.zeros((64, 80), np.float32))
    with pytest.raises(InvalidMicrographError) as info:
        open_micrographs([*small_mrcs, odd])
    message = str(info.value)
    assert message.startswith(f"{odd.resolve()}: shape 64 × 80 differs from the 96 × 80 of")
    assert "pass --permissive (Python: permissive=True) to skip it" in message
    # the odd one is named when it comes first too, not the micrographs of the common shape
    assert len(small_mrcs) >= 2
    with pytest.raises(InvalidMicrographError) as info:
        open_micrographs([odd, *small_mrcs])
    message = str(info.value)
    assert message.startswith(f"{odd.resolve()}: shape 64 × 80 differs from the 96 × 80 of "
                              f"{len(small_mrcs)} other micrographs")


def test_micrographs_of_two_sizes_of_one_name_are_told_apart_and_given_the_fix(small_mrcs,
                                                                               tmp_path):
    """Two folders of one file names but two sizes: each odd one is named with a micrograph of
    the common size by its whole path (a bare name, the same in both folders, had said
    nothing), and the fix is to give one size at a time, not to 'repair' files that are fine."""
    other = tmp_path / "other"
    other.mkdir()
    odd = [write_mrc(other / m.name, np.zeros((64, 80), np.float32)) for m in small_mrcs[:2]]
    with pytest.raises(InvalidMicrographError) as info:
        open_micrographs([*small_mrcs, *odd])
    message = str(info.value)
    assert (f"{odd[0].resolve()}: shape 64 × 80 differs from the 96 × 80 of {len(small_mrcs)} "
            f"other micrographs ({small_mrcs[0].resolve()}, …)") in message
    assert message.endswith("give micrographs of one size together (each size on its own), or "
                            "pass --permissive (Python: permissive=True) to skip them")


def test_every_bad_file_is_named_at_once(small_mrcs, tmp_path):
    """Two cut-short files and one of another shape among good ones: one error names all
    three with their problems, before any pixel is read (it named only the first, so a user
    fixed them one run at a time)."""
    folder = tmp_path / "set"
    folder.mkdir()
    cut = []
    for name in ("cut_a.mrc", "cut_b.mrc"):
        data = small_mrcs[0].read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])
        cut.append(folder / name)
    odd = write_mrc(folder / "odd.mrc", np.zeros((64, 80), np.float32))
    with pytest.raises(InvalidMicrographError) as info:
        open_micrographs([*small_mrcs, *cut, odd])
    message = str(info.value)
    assert message.startswith(f"3 of {len(small_mrcs) + 3} micrographs: bad (")
    for path, problem in ((cut[0], "truncated"), (cut[1], "truncated"), (odd, "shape 64 × 80")):
        assert f"{path.resolve()}: {problem}" in message
    assert message.endswith("or pass --permissive (Python: permissive=True) to skip them")
    with pytest.raises(InvalidMicrographError) as info:  # one bad file: its own message
        open_micrographs([*small_mrcs, cut[0]])
    assert str(info.value).startswith(f"{cut[0].resolve()}: truncated")
    assert str(info.value).endswith("copy or download it again; or pass --permissive (Python: "
                                    "permissive=True) to skip it")  # the others are good
    with pytest.raises(InvalidMicrographError) as info:  # the only input: nothing to skip to
        open_micrographs([cut[0]])
    assert str(info.value).endswith("copy or download it again")


def test_a_compressed_mrc_is_named_with_the_command_that_undoes_it(small_mrcs, tmp_path):
    """A gzip'd or bzip2'd MRC (mrcfile opens their headers) is not a cut-short file: the error
    says it is compressed and how to decompress it (it said "truncated: copy or download it
    again", which would not help)."""
    import bz2
    import gzip

    data = small_mrcs[0].read_bytes()
    for name, pack, undo in (("m.mrc.gz", gzip.compress, "gunzip"),
                             ("m.mrc.bz2", bz2.compress, "bunzip2")):
        (tmp_path / name).write_bytes(pack(data))
        with pytest.raises(InvalidMicrographError) as info:
            open_micrographs([tmp_path / name])
        kind = "gzip" if undo == "gunzip" else "bzip2"
        assert str(info.value) == (f"{(tmp_path / name).resolve()}: a {kind}-compressed MRC file; "
                                   f"decompress it first ({undo} {name}), then pass the .mrc")
    (tmp_path / "plain" / "x.mrc").parent.mkdir()  # compressed, and named as if it were not
    (tmp_path / "plain" / "x.mrc").write_bytes(gzip.compress(data))
    with pytest.raises(InvalidMicrographError, match=r"decompress it first \(gunzip -c x.mrc > "
                       r"x_plain.mrc\), then pass the .mrc"):
        open_micrographs([tmp_path / "plain"])


def _broken_set(small_mrcs):
    folder = small_mrcs[0].parent
    missing = folder / "missing.mrc"
    junk = folder / "junk.mrc"
    junk.write_bytes(b"not an mrc" * 200)
    short = folder / "short.mrc"
    short.write_bytes(small_mrcs[0].read_bytes()[:2000])
    odd = write_mrc(folder / "odd.mrc", np.zeros((64, 80), np.float32))
    return [small_mrcs[0], missing, junk, short, odd, *small_mrcs[1:]]


def test_strict_mode_stops_at_the_first_bad_file(small_mrcs):
    with pytest.raises(InvalidMicrographError, match="missing.mrc: no such file"):
        open_micrographs(_broken_set(small_mrcs))


def test_permissive_mode_skips_and_records(small_mrcs):
    inputs = _broken_set(small_mrcs)
    with pytest.warns(MicrographSkippedWarning) as record:
        stack = open_micrographs(inputs, permissive=True)
    assert len(record) == 4
    assert stack.shape == (3, 96, 80)
    skipped = {os.path.basename(s["path"]) for s in stack.attrs["skipped"]}
    assert skipped == {"missing.mrc", "junk.mrc", "short.mrc", "odd.mrc"}
    assert all(s["reason"] for s in stack.attrs["skipped"])
    np.testing.assert_array_equal(stack.values, _oracle(small_mrcs))


def test_nothing_left_after_skipping(tmp_path):
    bad = tmp_path / "bad.mrc"
    bad.write_bytes(b"x" * 2000)
    with pytest.warns(MicrographSkippedWarning), pytest.raises(
        InvalidMicrographError, match="no readable micrograph among 1 inputs"
    ):
        open_micrographs(bad, permissive=True)


def test_pixel_size_mismatch_and_override(small_mrcs):
    other = write_mrc(small_mrcs[0].parent / "other.mrc", np.zeros((96, 80), np.float32), 1.1)
    with pytest.raises(InvalidMicrographError, match="pixel size 1.1 Å differs"):
        open_micrographs([*small_mrcs, other])
    stack = open_micrographs([*small_mrcs, other], pixel_size_angstrom=0.5)
    assert stack.attrs["pixel_size_angstrom"] == 0.5


def test_unset_pixel_size_asks_for_one(tmp_path):
    path = write_mrc(tmp_path / "a.mrc", np.zeros((8, 8), np.float32), pixel_size=0.0)
    with pytest.raises(InvalidMicrographError, match="pass pixel_size_angstrom"):
        open_micrographs(path)


def test_bad_chunks_argument(small_mrcs):
    with pytest.raises(cryostream.ConfigError, match="only 'y' can be chunked"):
        open_micrographs(small_mrcs, chunks={"x": 10})


def test_the_halves_globs_of_a_folder_with_brackets_match_its_halves(tmp_path, caplog):
    """The `--odd` globs a note gives match the halves it names where the folder's name holds
    a glob's characters (``[1]``): the folder's name is escaped (the glob matched nothing)."""
    import glob as globs
    import logging

    data = tmp_path / "Da ta[1]"
    data.mkdir()
    for name in ("m0", "m0_EVN", "m0_ODD"):
        write_mrc(data / f"{name}.mrc", np.ones((64, 64), np.float32))
    with caplog.at_level(logging.INFO, logger="cryostream"):
        assert open_micrographs(data).sizes["micrograph"] == 1
    said = " ".join(r.getMessage() for r in caplog.records)
    even, odd = re.search(r"give '([^']+)' --odd '([^']+)'", said).groups()
    assert globs.glob(even) == [str(data / "m0_EVN.mrc")]
    assert globs.glob(odd) == [str(data / "m0_ODD.mrc")]


def test_half_sums_of_several_folders_named_one_by_one_get_globs_of_all_of_them(tmp_path,
                                                                                monkeypatch,
                                                                                caplog):
    """A shell's expansion of ``Images-Disc1/*/Data/*.mrc`` over grid squares names halves of
    several folders: the note's ``--odd`` globs reach every square's halves (they named the
    first square's folder alone, so following them left the others' halves out)."""
    import glob as globs
    import logging

    monkeypatch.chdir(tmp_path)
    names = []
    for square, stems in (("GridSquare_101", ("a", "b")), ("GridSquare_102", ("c",))):
        data = tmp_path / "epu" / "Images-Disc1" / square / "Data"
        data.mkdir(parents=True)
        for stem in stems:
            for name in (stem, f"{stem}_EVN", f"{stem}_ODD"):
                write_mrc(data / f"{name}.mrc", np.ones((64, 64), np.float32))
                names.append(f"epu/Images-Disc1/{square}/Data/{name}.mrc")
    with caplog.at_level(logging.INFO, logger="cryostream"):
        assert open_micrographs(sorted(names)).sizes["micrograph"] == 3
    said = " ".join(r.getMessage() for r in caplog.records)
    even, odd = re.search(r"give '([^']+)' --odd '([^']+)'", said).groups()
    assert even == "epu/Images-Disc1/*/Data/*_EVN.mrc"
    assert len(globs.glob(even)) == len(globs.glob(odd)) == 3
    deeper = tmp_path / "epu" / "Images-Disc1" / "GridSquare_103" / "more" / "Data"
    deeper.mkdir(parents=True)
    for name in ("d", "d_EVN", "d_ODD"):
        write_mrc(deeper / f"{name}.mrc", np.ones((64, 64), np.float32))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cryostream"):
        open_micrographs(sorted(names) + [str(deeper / f"{n}.mrc") for n in ("d", "d_EVN", "d_ODD")])
    said = " ".join(r.getMessage() for r in caplog.records)
    even, odd = re.search(r"give '([^']+)' --odd '([^']+)'", said).groups()
    assert len(globs.glob(even, recursive=True)) == len(globs.glob(odd, recursive=True)) == 4


def test_a_gain_reference_written_as_mrc_is_no_micrograph(small_mrcs, tmp_path, notes):
    """RELION's and SerialEM's gain references are MRC files (``gain.mrc``, ``CountRef_x.mrc``):
    one beside the micrographs was read, denoised and listed as a micrograph. Now a folder's
    MRC file whose name says gain reference is left out with the note that names gain
    references; a folder whose every MRC name says so is taken as asked."""
    import shutil

    folder = tmp_path / "with_gain"
    folder.mkdir()
    for m in small_mrcs:
        shutil.copy(m, folder / m.name)
    shutil.copy(small_mrcs[0], folder / "gain.mrc")
    shutil.copy(small_mrcs[0], folder / "CountRef_session1.mrc")
    stack = open_micrographs(folder)
    assert stack.sizes["micrograph"] == len(small_mrcs)
    assert notes == [f"{folder}: left out 2 gain references (CountRef_session1.mrc, gain.mrc), "
                     "which motion correction uses, not micrographs: nothing to do"]
    only = tmp_path / "gain_only"
    only.mkdir()
    shutil.copy(small_mrcs[0], only / "gain.mrc")
    assert open_micrographs(only).sizes["micrograph"] == 1
