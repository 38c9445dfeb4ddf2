"""Denoised MRC files faithful to their inputs (origin, voxel size, labels plus one history
label, the extended header on request, float16 or float32, a suffix), the same bytes every
time; even/odd half-sums averaged; --pixel-size. Real MRC files written by mrcfile, read back
after ``cryostream denoise``."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from mrcfile.dtypes import get_ext_header_dtype

from cryostream.cli import main
from cryostream.ctf import CTFFallbackWarning
from cryostream.io.stack import MicrographSkippedWarning

LABELS = ["EPU 3.2 acquisition", "MotionCor2 1.6.4 dose-weighted"]


def _rich_mrc(path: Path, data: np.ndarray, pixel_size=0.6575, voxel_size=None) -> bytes:
    """An MRC file as a microscope's software writes it: an origin, two labels and an FEI1
    extended header; returns the extended header's bytes."""
    ext = np.zeros(1, dtype=get_ext_header_dtype(b"FEI1"))
    ext["Metadata size"] = ext.dtype.itemsize
    ext["HT"] = 300000.0
    ext["Dose"] = 47.5
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(data.astype(np.float32))
        m.voxel_size = voxel_size if voxel_size is not None else pixel_size
        m.header.origin.x, m.header.origin.y, m.header.origin.z = 12.5, -3.25, 0.0
        m.header.exttyp = b"FEI1"
        m.set_extended_header(ext)
        m.header.label[:] = b""
        m.header.nlabl = 0
        for label in LABELS:
            m.add_label(label)
    return ext.tobytes()


def _denoise(tiny_run, inputs, out: Path, *options: str, tile: int = 64) -> int:
    return main(["denoise", str(tiny_run.run), *map(str, inputs), "-o", str(out), "--raw",
                 "--tile", str(tile), "--workers", "1", *map(str, options)])


def test_outputs_keep_the_origin_labels_voxel_size_and_on_request_the_extended_header(
        tiny_run, tmp_path):
    source = tmp_path / "mic_001.mrc"
    ext = _rich_mrc(source, mrcfile.read(tiny_run.sim.micrographs[0]))
    assert _denoise(tiny_run, [source], tmp_path / "a") == 0
    with mrcfile.open(tmp_path / "a" / "mic_001.mrc") as m:  # the input's own name
        assert m.header.mode == 2 and m.data.dtype == np.float32
        assert tuple(m.header.origin.item()) == (12.5, -3.25, 0.0)
        assert m.voxel_size.x == pytest.approx(0.6575) and m.voxel_size.y == pytest.approx(0.6575)
        labels = m.get_labels()
        assert labels[:2] == LABELS and len(labels) == 3
        assert labels[2].startswith("cryostream denoise run")
        assert int(m.header.nsymbt) == 0  # not asked for
        default = m.data.copy()
    assert _denoise(tiny_run, [source], tmp_path / "b", "--keep-extended-header", "--dtype",
                    "float16", "--suffix", "_den") == 0
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "denoised_micrographs.star", "mic_001_den.json", "mic_001_den.mrc"]
    with mrcfile.open(tmp_path / "b" / "mic_001_den.mrc") as m:
        assert m.header.mode == 12 and m.data.dtype == np.float16
        np.testing.assert_array_equal(m.data, default.astype(np.float16))
        assert bytes(m.header.exttyp) == b"FEI1" and m.extended_header.tobytes() == ext
        assert m.indexed_extended_header["HT"][0] == 300000.0
        assert tuple(m.header.origin.item()) == (12.5, -3.25, 0.0)
        assert m.get_labels()[:2] == LABELS
    record = json.loads((tmp_path / "b" / "mic_001_den.json").read_text())
    assert record["config"]["output_dtype"] == "float16" and record["config"]["output_suffix"] == "_den"


def test_outputs_are_the_same_bytes_every_time(tiny_run, tmp_path):
    source = tmp_path / "mic_001.mrc"
    _rich_mrc(source, mrcfile.read(tiny_run.sim.micrographs[0]))
    for folder in ("a", "b"):
        assert _denoise(tiny_run, [source], tmp_path / folder, "--keep-extended-header") == 0
    assert (tmp_path / "a" / "mic_001.mrc").read_bytes() == \
        (tmp_path / "b" / "mic_001.mrc").read_bytes()


def test_pixel_size_option_for_headers_without_one(tiny_run, tmp_path, capsys):
    source = tmp_path / "nopixel.mrc"
    _rich_mrc(source, mrcfile.read(tiny_run.sim.micrographs[0]), voxel_size=0.0)
    assert _denoise(tiny_run, [source], tmp_path / "a") == 2
    err = capsys.readouterr().err
    assert f"{source}: the header leaves the pixel size unset (0 Å)" in err and "--pixel-size" in err
    assert not (tmp_path / "a").exists()  # nothing written
    assert _denoise(tiny_run, [source], tmp_path / "a", "--pixel-size", "0.9") == 0
    with mrcfile.open(tmp_path / "a" / "nopixel.mrc") as m:
        assert m.voxel_size.x == pytest.approx(0.9)
    record = json.loads((tmp_path / "a" / "nopixel.json").read_text())
    assert record["given"] == {"pixel_size_angstrom": 0.9, "pixel_size_from": "argument"}


def test_a_header_of_two_pixel_sizes_is_used_along_x_with_a_warning(tiny_run, tmp_path):
    """A header whose x and y pixel sizes differ (0.6575 and 1.2 Å): x's is used, with one
    PixelSizeWarning naming the file, both values, the one used and --pixel-size (it had been
    used without a word), and the output's header gives x's along both; a micrograph of square
    pixels beside it says nothing, and with --pixel-size there is nothing to say."""
    from cryostream.denoise.pixels import PixelSizeWarning

    image = mrcfile.read(tiny_run.sim.micrographs[0])
    _rich_mrc(tmp_path / "wide.mrc", image, voxel_size=(0.6575, 1.2, 1.0))
    _rich_mrc(tmp_path / "square.mrc", image)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _denoise(tiny_run, [tmp_path / "wide.mrc", tmp_path / "square.mrc"],
                        tmp_path / "out") == 0
    said = [str(w.message) for w in caught if issubclass(w.category, PixelSizeWarning)]
    assert said == [f"{tmp_path / 'wide.mrc'}: the MRC header gives two pixel sizes, 0.6575 Å "
                    "along x and 1.2 Å along y; x's, 0.6575 Å, is used (pixels are taken as "
                    "square): pass --pixel-size Å (Python: pixel_size_angstrom=) if it is not "
                    "right"]
    with mrcfile.open(tmp_path / "out" / "wide.mrc") as m:  # square, as it was denoised
        assert (m.voxel_size.x, m.voxel_size.y) == pytest.approx((0.6575, 0.6575))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _denoise(tiny_run, [tmp_path / "wide.mrc"], tmp_path / "given",
                        "--pixel-size", "1.2") == 0
    assert not [w for w in caught if issubclass(w.category, PixelSizeWarning)]


def test_even_and_odd_halves_give_the_sum_of_their_outputs(tiny_run, tmp_path, capsys):
    """``denoise EVEN --odd ODD``: the output, named after the micrograph (``m.mrc`` for
    ``m_EVN.mrc``), is the sum of what the pipeline makes of each half (the full sum's scale);
    from files or from a STAR file's even/odd columns."""
    import pandas as pd
    import starfile

    halves = tmp_path / "halves"
    halves.mkdir()
    even, odd = halves / "m_EVN.mrc", halves / "m_ODD.mrc"
    shutil.copy(tiny_run.sim.micrographs[0], even)
    shutil.copy(tiny_run.sim.micrographs[1], odd)
    assert _denoise(tiny_run, [even, odd], tmp_path / "each") == 0
    expected = (mrcfile.read(tmp_path / "each" / "m_EVN.mrc")
                + mrcfile.read(tmp_path / "each" / "m_ODD.mrc"))
    assert _denoise(tiny_run, [even], tmp_path / "pair", "--odd", odd) == 0
    assert sorted(p.name for p in (tmp_path / "pair").iterdir()) == [
        "denoised_micrographs.star", "m.json", "m.mrc"]
    np.testing.assert_allclose(mrcfile.read(tmp_path / "pair" / "m.mrc"), expected,
                               rtol=1e-6, atol=1e-6 * np.abs(expected).max())
    record = json.loads((tmp_path / "pair" / "m.json").read_text())
    assert record["given"]["odd"] == str(odd.resolve()) and "odd_half" in record["found"]
    assert record["found"]["halves"].startswith("the sum of the pipeline's outputs")
    star = halves / "corrected.star"
    starfile.write({"micrographs": pd.DataFrame({
        "rlnMicrographName": ["m.mrc"], "rlnMicrographNameEven": ["m_EVN.mrc"],
        "rlnMicrographNameOdd": ["m_ODD.mrc"]})}, star)
    assert _denoise(tiny_run, [star], tmp_path / "star", "--odd", star) == 0
    np.testing.assert_array_equal(mrcfile.read(tmp_path / "star" / "m.mrc"),
                                  mrcfile.read(tmp_path / "pair" / "m.mrc"))
    shutil.copy(tiny_run.sim.micrographs[2], halves / "n_EVN.mrc")
    capsys.readouterr()
    assert _denoise(tiny_run, [even, halves / "n_EVN.mrc"], tmp_path / "bad", "--odd", odd) == 2
    assert f"no odd half for {halves / 'n_EVN.mrc'}" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_odd_alone_reads_the_odd_halves_from_the_input_star_file(tiny_run, tmp_path, capsys):
    """``denoise STAR --odd`` with no files, as the even/odd guide says and ``prepare`` does:
    the odd halves come from the same STAR file (its rlnMicrographNameOdd column), the outputs
    as with ``--odd STAR``; with inputs that are not STAR files, one line saying to give the
    odd halves, nothing written."""
    from cryostream.config import SimulateConfig
    from cryostream.simulate import simulate

    sim = simulate(tmp_path / "sim", 2, config=SimulateConfig(shape=(160, 128), seed=3,
                                                              even_odd=True))
    star = sim.micrographs_star
    assert _denoise(tiny_run, [star], tmp_path / "alone", "--odd") == 0
    assert _denoise(tiny_run, [star], tmp_path / "named", "--odd", star) == 0
    for name, odd in zip(("sim_0000", "sim_0001"), sim.odds, strict=True):
        np.testing.assert_array_equal(mrcfile.read(tmp_path / "alone" / f"{name}.mrc"),
                                      mrcfile.read(tmp_path / "named" / f"{name}.mrc"))
        record = json.loads((tmp_path / "alone" / f"{name}.json").read_text())
        assert record["given"]["odd"] == str(odd.resolve())
    capsys.readouterr()
    assert _denoise(tiny_run, [sim.root / "even"], tmp_path / "bad", "--odd") == 2
    assert capsys.readouterr().err == (
        "cryostream denoise: error: --odd without files reads the odd halves from the inputs' "
        f"STAR files (their rlnMicrographNameOdd column), but {sim.root / 'even'} is not a STAR "
        "file; give the odd halves' files or folder: --odd ODD...\n")
    assert not (tmp_path / "bad").exists()


def test_even_and_odd_halves_share_one_ctf_fit_on_their_sum(tiny_run, tmp_path, monkeypatch):
    """With the CTF gain, one defocus fitted on the sum of the halves shapes the gain of both
    (each half alone has half the signal, and the two outputs are summed), with the defocus
    error its ring score gives it, in the gain and in the check alike."""
    import cryostream
    from cryostream.config import SimulateConfig
    from cryostream.denoise import fallback

    checked, check = [], fallback.ctf_gain_check

    def spy(noisy, noise, fit, **kw):  # the real check, noting the defocus error it was given
        checked.append(fit.defocus_error_angstrom)
        return check(noisy, noise, fit, **kw)

    monkeypatch.setattr(fallback, "ctf_gain_check", spy)
    sim = cryostream.simulate(tmp_path / "sim", 1, config=SimulateConfig(
        shape=(1024, 1024), seed=3, even_odd=True))
    assert _denoise(tiny_run, sim.evens, tmp_path / "out", "--odd", *sim.odds, "--ctf-gain",
                    tile=512) == 0  # (1024² halves: fewer, larger windows are quicker)
    found = json.loads((tmp_path / "out" / "sim_0000.json").read_text())["found"]
    even_ctf, odd_ctf = found["ctf"], found["odd_half"]["ctf"]
    assert even_ctf["defocus_from"] == "sum of the even and odd halves"
    assert [even_ctf[k] for k in ("defocus_u_angstrom", "defocus_v_angstrom")] == [
        odd_ctf[k] for k in ("defocus_u_angstrom", "defocus_v_angstrom")]
    # one Thon-ring score and one recorruption check, on the sum, decide the gain of both
    assert found["ctf_rings_z"] == found["odd_half"]["ctf_rings_z"]
    assert found["ctf_check"] == found["odd_half"]["ctf_check"]
    assert found["ctf_used"] == found["odd_half"]["ctf_used"] is True
    sigma = even_ctf["defocus_error_angstrom"]  # from the ring score, as recorded (rounded)
    assert sigma == odd_ctf["defocus_error_angstrom"] == pytest.approx(
        fallback.DEFOCUS_ERROR_SCALE / found["ctf_rings_z"] ** 1.5, rel=1e-2)
    assert checked == [pytest.approx(sigma, abs=0.05)]  # one check, on the sum, faded


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_halves_whose_sum_has_no_thon_rings_fall_back_together(tiny_run, tmp_path):
    """A defocus fitted on the sum of two halves with no Thon rings (a smooth blob and noise)
    is not used for either: one warning names the pair and why, and both records say so."""
    from conftest import write_mrc
    from scipy.ndimage import gaussian_filter

    from cryostream.ctf import CTFFallbackWarning

    rng = np.random.default_rng(1)
    blob = 1 + gaussian_filter(rng.normal(size=(1024, 1024)), 30) * 20
    halves = [write_mrc(tmp_path / f"mic_{h}.mrc", (blob + rng.normal(0, 0.3, blob.shape))
                        .astype(np.float32)) for h in ("EVN", "ODD")]
    with pytest.warns(CTFFallbackWarning, match=r"mic_EVN.mrc and its odd half: .* has no Thon "
                      r"rings in the spectrum \(their score z is -?\d+\.\d\d, under the 3.5 "
                      r"needed\); it is denoised with the radial Wiener gain below 20 Å and the "
                      r"network's own response above"):
        assert _denoise(tiny_run, halves[:1], tmp_path / "out", "--odd", halves[1],
                        "--ctf-gain") == 0
    found = json.loads((tmp_path / "out" / "mic.json").read_text())["found"]
    for half in (found, found["odd_half"]):
        assert half["ctf_used"] is False and half["ctf_check"] is None
        assert half["ctf_rings_z"] < 3.5 and half["fallback"] == "network_above_20A"


def test_even_and_odd_halves_with_a_known_defocus_take_one_decision(tiny_run, tmp_path):
    """A STAR file's defocus for a pair of halves: both halves use it, and one check on their
    sum decides whether its CTF shapes the gain."""
    import pandas as pd
    import starfile

    import cryostream
    from cryostream.config import SimulateConfig

    sim = cryostream.simulate(tmp_path / "sim", 1, config=SimulateConfig(
        shape=(512, 512), seed=3, even_odd=True))
    star = tmp_path / "sim" / "halves.star"
    starfile.write({"micrographs": pd.DataFrame({
        "rlnMicrographName": ["micrographs/sim_0000.mrc"],
        "rlnMicrographNameEven": [str(sim.evens[0].relative_to(tmp_path / "sim"))],
        "rlnMicrographNameOdd": [str(sim.odds[0].relative_to(tmp_path / "sim"))],
        "rlnDefocusU": [18000.0], "rlnDefocusV": [17800.0], "rlnDefocusAngle": [30.0]})}, star)
    assert _denoise(tiny_run, [star], tmp_path / "out", "--odd", star, "--ctf-gain",
                    tile=512) == 0  # (one window a half: quicker than 64 of 64²)
    found = json.loads((tmp_path / "out" / "sim_0000.json").read_text())["found"]
    for half in (found, found["odd_half"]):
        assert half["ctf"]["defocus_from"] == "STAR file"
        assert half["ctf"]["defocus_u_angstrom"] == 18000.0
    assert found["ctf_check"] == found["odd_half"]["ctf_check"]
    assert found["ctf_used"] == found["odd_half"]["ctf_used"]
    for half in (found, found["odd_half"]):  # a STAR file's defocus is taken as exact
        assert half["ctf"]["defocus_error_angstrom"] == (0.0 if half["ctf_used"] else None)


def test_a_pair_never_replaces_the_full_sum_beside_its_halves(tiny_run, tmp_path, capsys):
    """MotionCor2 writes NAME.mrc (the full sum) beside NAME_EVN.mrc and NAME_ODD.mrc: a pair's
    output NAME.mrc in that folder is refused, --overwrite or not, and the sum is untouched."""
    folder = tmp_path / "Movies"
    folder.mkdir()
    for name, i in (("m", 0), ("m_EVN", 1), ("m_ODD", 2)):
        shutil.copy(tiny_run.sim.micrographs[i], folder / f"{name}.mrc")
    before = (folder / "m.mrc").read_bytes()
    capsys.readouterr()
    assert _denoise(tiny_run, [folder / "m_EVN.mrc"], folder, "--odd", folder / "m_ODD.mrc",
                    "--overwrite") == 2
    assert (f"{folder / 'm.mrc'} exists and cryostream denoise did not make it"
            in capsys.readouterr().err)
    assert (folder / "m.mrc").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["m.mrc", "m_EVN.mrc", "m_ODD.mrc"]


def test_float16_refuses_pixels_beyond_its_range(tiny_run, tmp_path, capsys):
    """Denoised pixels beyond float16's 65504 are refused with --dtype float16 (they would be
    written as inf), and nothing is written for that micrograph."""
    source = tmp_path / "bright.mrc"
    with mrcfile.new(source) as m:
        m.set_data(mrcfile.read(tiny_run.sim.micrographs[0]).astype(np.float32) * 1e5)
        m.voxel_size = 0.6575
    capsys.readouterr()
    assert _denoise(tiny_run, [source], tmp_path / "out", "--dtype", "float16") != 0
    assert "beyond float16's 65504" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("*.mrc"))


def test_known_defocus_through_the_command_line_is_recorded(tiny_run, tmp_path):
    """A STAR file's defocus reaches the CTF gain of ``--ctf-gain`` (no fit, even on a small
    micrograph) and the output's record, whatever the check decides."""
    import pandas as pd
    import starfile

    from cryostream.ctf import CTFFallbackWarning

    shutil.copy(tiny_run.sim.micrographs[0], tmp_path / "a.mrc")
    star = tmp_path / "ctf.star"
    starfile.write({"optics": pd.DataFrame({"rlnOpticsGroup": [1], "rlnMicrographPixelSize": [0.6575],
                                            "rlnVoltage": [300.0], "rlnSphericalAberration": [2.7],
                                            "rlnAmplitudeContrast": [0.1]}),
                    "micrographs": pd.DataFrame({"rlnMicrographName": ["a.mrc"], "rlnOpticsGroup": [1],
                                                 "rlnDefocusU": [19000.0], "rlnDefocusV": [18800.0],
                                                 "rlnDefocusAngle": [92.0]})}, star)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _denoise(tiny_run, [star], tmp_path / "d", "--ctf-gain") == 0
    found = json.loads((tmp_path / "d" / "a.json").read_text())["found"]
    assert found["ctf"]["defocus_u_angstrom"] == 19000.0 and found["ctf"]["defocus_from"] == "STAR file"
    fell_back = any(issubclass(w.category, CTFFallbackWarning) for w in caught)
    assert found["ctf_used"] is not fell_back


def test_permissive_skips_a_pair_whose_odd_half_is_unreadable(tiny_run, tmp_path, capsys):
    """A truncated odd half is refused before anything is written; with --permissive its
    micrograph (both halves) is skipped with a warning and the other pairs are denoised."""
    halves = tmp_path / "halves"
    halves.mkdir()
    for name, i in (("a_EVN", 0), ("a_ODD", 1), ("b_EVN", 2), ("b_ODD", 0)):
        shutil.copy(tiny_run.sim.micrographs[i], halves / f"{name}.mrc")
    (halves / "b_ODD.mrc").write_bytes((halves / "b_ODD.mrc").read_bytes()[:2000])
    evens, odds = sorted(halves.glob("*_EVN.mrc")), sorted(halves.glob("*_ODD.mrc"))
    capsys.readouterr()
    assert _denoise(tiny_run, evens, tmp_path / "strict", "--odd", *odds) == 2
    assert "b_ODD.mrc: truncated" in capsys.readouterr().err
    assert not (tmp_path / "strict").exists()
    with pytest.warns(MicrographSkippedWarning) as caught:
        assert _denoise(tiny_run, evens, tmp_path / "lenient", "--odd", *odds,
                        "--permissive") == 0
    said = [str(w.message) for w in caught]
    assert any("b_ODD.mrc: truncated" in m for m in said)
    assert any("b_EVN.mrc: its odd half cannot be read" in m for m in said)
    assert "(1 skipped: see the warnings)" in capsys.readouterr().out  # the pair counts once
    assert sorted(p.name for p in (tmp_path / "lenient").iterdir()) == [
        "a.json", "a.mrc", "denoised_micrographs.star"]
    assert json.loads((tmp_path / "lenient" / "a.json").read_text())["computed"] == {
        "backend": "cpu", "dtype": "float32"}


def test_a_half_with_nan_pixels_stops_or_skips_its_pair_before_any_work(tiny_run, tmp_path,
                                                                         capsys):
    """Both halves are checked before either is denoised: NaN pixels in an odd half stop the
    run with one line naming it, or with --permissive skip the pair (both halves named, and
    its progress note says why)."""
    halves = tmp_path / "halves"
    halves.mkdir()
    shutil.copy(tiny_run.sim.micrographs[0], halves / "a_EVN.mrc")
    with mrcfile.open(tiny_run.sim.micrographs[1]) as source:
        image, voxel = source.data.copy(), source.voxel_size.x
    image[5:9, 5:9] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mrcfile's note on NaN
        with mrcfile.new(halves / "a_ODD.mrc") as mrc:
            mrc.set_data(image)
            mrc.voxel_size = voxel
    capsys.readouterr()
    assert _denoise(tiny_run, [halves / "a_EVN.mrc"], tmp_path / "strict", "--odd",
                    halves / "a_ODD.mrc", "--ctf-gain") == 2
    err = capsys.readouterr().err
    assert "a_ODD.mrc: holds NaN or Inf pixels" in err and "Warning" not in err
    assert not list((tmp_path / "strict").glob("*.mrc"))
    with pytest.warns(MicrographSkippedWarning, match="and its other half .*a_EVN.mrc") as seen:
        assert _denoise(tiny_run, [halves / "a_EVN.mrc"], tmp_path / "lenient", "--odd",
                        halves / "a_ODD.mrc", "--ctf-gain", "--permissive") == 2
    assert not [w for w in seen if "--permissive" in str(w.message)]  # it was given
    err = capsys.readouterr().err
    assert "no usable micrograph left" in err
    # its note says it was skipped and why (it had read 'denoised 1/1 a_EVN.mrc: skipped')
    assert "cryostream: 1/1 a_EVN.mrc: skipped (a_ODD.mrc: holds NaN or Inf pixels)\n" in err
    assert "denoised 1/1" not in err
    assert not (tmp_path / "lenient").exists()  # the folder this call made, empty: removed


def test_the_summary_counts_what_permissive_skipped(tiny_run, tmp_path, capsys):
    """One good and one NaN micrograph with --permissive: status 0, the skipped one named in a
    warning without the advice to pass --permissive, and counted on the summary line."""
    from conftest import write_mrc

    good = tmp_path / "in" / "good.mrc"
    good.parent.mkdir()
    image = mrcfile.read(tiny_run.sim.micrographs[0])
    write_mrc(good, image, pixel_size=0.6575)
    bad = image.copy()
    bad[3, 3] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mrcfile's note on NaN
        write_mrc(tmp_path / "in" / "bad.mrc", bad, pixel_size=0.6575)
    capsys.readouterr()
    with pytest.warns(MicrographSkippedWarning, match="bad.mrc: holds NaN") as seen:
        assert _denoise(tiny_run, [good, tmp_path / "in" / "bad.mrc"], tmp_path / "out",
                        "--permissive") == 0
    assert not [w for w in seen if "--permissive" in str(w.message)]
    out = capsys.readouterr().out
    assert "denoised 1 micrograph into" in out and "(1 skipped: see the warnings)" in out


def test_micrographs_of_two_shapes_go_to_one_folder(tiny_run, tmp_path, capsys):
    """Each micrograph is denoised on its own, so two shapes in one call are fine with an
    output folder: both outputs are made, each the same as denoising it alone, and the STAR
    file lists both. In memory (no folder) a stack needs one shape and the call says so."""
    from conftest import write_mrc

    from cryostream.config import DenoiseConfig
    from cryostream.denoise import denoise
    from cryostream.errors import InvalidMicrographError

    image = mrcfile.read(tiny_run.sim.micrographs[0])
    (tmp_path / "in").mkdir()
    small = write_mrc(tmp_path / "in" / "small.mrc", image[:128, :128].copy(), 0.6575)
    large = write_mrc(tmp_path / "in" / "large.mrc", image, 0.6575)
    assert _denoise(tiny_run, [small, large], tmp_path / "out") == 0
    assert "denoised 2 micrographs" in capsys.readouterr().out
    for path in (small, large):
        alone = denoise(tiny_run.run, [path], config=DenoiseConfig.raw(tile=64), workers=1)
        np.testing.assert_array_equal(mrcfile.read(tmp_path / "out" / path.name),
                                      alone.values[0])
    star = (tmp_path / "out" / "denoised_micrographs.star").read_text()
    assert "small.mrc" in star and "large.mrc" in star
    # from Python the result lists the outputs, as a stack's "sources" does (a rerun keeps them)
    listed = denoise(tiny_run.run, [small, large], tmp_path / "out",
                     config=DenoiseConfig.raw(tile=64), workers=1)
    assert listed.attrs["sources"] == [str(tmp_path / "out" / p.name) for p in (small, large)]
    assert list(listed.values) == listed.attrs["sources"] and listed.attrs["kept"] == 2
    with pytest.raises(InvalidMicrographError, match="differs"):
        denoise(tiny_run.run, [small, large], config=DenoiseConfig.raw(tile=64))


def test_even_odd_pairs_of_two_shapes_go_to_one_folder(tiny_run, tmp_path, capsys):
    """Pairs of halves of two shapes in one call: each pair is denoised on its own (the sum of
    its halves' outputs), as micrographs of two shapes are; a pair whose halves differ in
    shape is still refused before anything is written."""
    from conftest import write_mrc

    image = [mrcfile.read(p) for p in tiny_run.sim.micrographs[:2]]
    (tmp_path / "in").mkdir()
    paths = {}
    for name, crop in (("small", (slice(0, 128), slice(0, 128))), ("large", (slice(None),) * 2)):
        for half, source in (("EVN", image[0]), ("ODD", image[1])):
            paths[name, half] = write_mrc(tmp_path / "in" / f"{name}_{half}.mrc",
                                          source[crop].copy(), 0.6575)
    evens = [paths["small", "EVN"], paths["large", "EVN"]]
    odds = [paths["small", "ODD"], paths["large", "ODD"]]
    assert _denoise(tiny_run, evens, tmp_path / "pairs", "--odd", *odds) == 0
    assert "denoised 2 micrographs" in capsys.readouterr().out
    for name in ("small", "large"):
        alone = tmp_path / f"alone_{name}"
        assert _denoise(tiny_run, [paths[name, "EVN"]], alone, "--odd", paths[name, "ODD"]) == 0
        np.testing.assert_array_equal(mrcfile.read(tmp_path / "pairs" / f"{name}.mrc"),
                                      mrcfile.read(alone / f"{name}.mrc"))
    mismatched = write_mrc(tmp_path / "in" / "m_ODD.mrc", image[1][:128, :96].copy(), 0.6575)
    shutil.copy(paths["large", "EVN"], tmp_path / "in" / "m_EVN.mrc")
    capsys.readouterr()
    assert _denoise(tiny_run, [tmp_path / "in" / "m_EVN.mrc"], tmp_path / "bad", "--odd",
                    mismatched) == 2
    assert "m_ODD.mrc" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    # --permissive: both good pairs of two shapes made, the pair that does not match skipped
    with pytest.warns(UserWarning) as seen:
        assert _denoise(tiny_run, [*evens, tmp_path / "in" / "m_EVN.mrc"], tmp_path / "some",
                        "--odd", *odds, mismatched, "--permissive") == 0
    assert sorted(p.name for p in (tmp_path / "some").glob("*.mrc")) == ["large.mrc", "small.mrc"]
    assert any("m_ODD.mrc" in str(w.message) and "one shape" in str(w.message) for w in seen)


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_halves_whose_sum_fits_an_unsettled_defocus_fall_back_together(tiny_run, tmp_path,
                                                                       benchmark_modules):
    """The defocus fitted on the sum of two halves carries its rival as a micrograph's own fit
    does (``tests/test_ctf.py::test_a_fit_whose_spectra_disagree_is_used_only_with_clear_rings``:
    the same micrograph, here split into two equal halves): its spectra disagree and its rings
    are too faint to choose, so neither half uses it, and both records name the rival."""
    from cryostream.config import SimulateConfig
    from cryostream.simulate.micrograph import simulate_micrograph

    (spread,) = benchmark_modules("general_model_spread")
    config = SimulateConfig(**spread.training_condition(3, 32, (2048, 2048)))
    half = (simulate_micrograph(config, 32).noisy / 2).astype(np.float32)  # the sum: exact
    paths = [tmp_path / name / "mic.mrc" for name in ("even", "odd")]
    for path in paths:
        path.parent.mkdir()
        with mrcfile.new(path) as mrc:
            mrc.set_data(half)
            mrc.voxel_size = config.pixel_size_angstrom
    with pytest.warns(CTFFallbackWarning, match="not settled: its 1024-px spectrum puts the "
                      r"defocus at 1\.40 µm"):
        assert main(["denoise", str(tiny_run.run), str(paths[0]), "-o", str(tmp_path / "out"),
                     "--raw", "--tile", "512", "--odd", str(paths[1]), "--ctf-gain"]) == 0
    found = json.loads((tmp_path / "out" / "mic.json").read_text())["found"]
    for part in (found, found["odd_half"]):
        assert part["ctf_used"] is False and part["fallback"] == "network_above_20A"
        assert part["ctf"]["rival_defocus_angstrom"] == 14000
