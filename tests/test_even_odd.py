"""Even/odd half-sums: simulated halves, paired stores of both directions, Noise2Noise training."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import h5py
import mrcfile
import numpy as np
import pytest

from cryostream.cli import main
from cryostream.config import NoiseConfig, PrepareConfig, SimulateConfig, from_dict
from cryostream.errors import ConfigError
from cryostream.io.stack import MicrographSkippedWarning
from cryostream.prepare import prepare
from cryostream.simulate import simulate, simulate_micrograph
from tests.conftest import TINY_TRAIN, write_mrc

PAIRED = PrepareConfig(patch_size=64, stride=64, test_fraction=0.34,
                       noise=NoiseConfig(model="none"))


@pytest.fixture(scope="module")
def halves_set(tmp_path_factory):
    """Three simulated 128 × 160 px micrographs with their even/odd halves."""
    root = tmp_path_factory.mktemp("eo")
    return simulate(root / "sim", 3, config=SimulateConfig(shape=(128, 160), seed=4,
                                                           even_odd=True))


@pytest.fixture(scope="module")
def paired_store(halves_set, tmp_path_factory):
    """The halves prepared into a store of both directions."""
    out = tmp_path_factory.mktemp("store") / "pairs.h5"
    return prepare(halves_set.evens, out, PAIRED, odd=halves_set.odds)


def _read(path) -> np.ndarray:
    return mrcfile.read(path).astype(np.float64)


def _nps_mean(shape, ratio):
    """Mean over the rfft grid of the documented detector spectrum r + (1 − r)·cos²(πf)."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    f = np.minimum(np.hypot(fy, fx), 0.5)
    nps = ratio + (1 - ratio) * np.cos(np.pi * f) ** 2
    weight = np.full(nps.shape, 2.0)  # the rfft's half plane: inner columns count twice
    weight[:, 0] = 1
    if shape[1] % 2 == 0:
        weight[:, -1] = 1
    return float((nps * weight).sum() / weight.sum())


def test_simulated_halves_sum_to_the_full_sum_with_half_dose_shot_noise(halves_set):
    star = halves_set.micrographs_star.read_text()
    assert "rlnMicrographNameEven" in star and "even/sim_0000_EVN.mrc" in star
    for full_path, even_path, odd_path, truth_path in zip(
            halves_set.micrographs, halves_set.evens, halves_set.odds, halves_set.truths,
            strict=True):
        assert (even_path.parent.name, odd_path.parent.name) == ("even", "odd")
        assert even_path.name == full_path.stem + "_EVN.mrc"
        full, even, odd = (mrcfile.read(p) for p in (full_path, even_path, odd_path))
        assert np.array_equal(full, even + odd)  # exactly, in float32
        half = _read(truth_path) / 2
        for image in (even, odd):  # Poisson: variance = expectation, counts are integers
            assert np.array_equal(image, np.round(image))
            ratio = np.var(image - half) / half.mean()
            assert 0.95 < ratio < 1.05, ratio
        r = np.corrcoef((even - half).ravel(), (odd - half).ravel())[0, 1]
        assert abs(r) < 0.03, r  # independent halves


def test_detector_response_shapes_each_half_and_leaves_the_default_alone():
    base = SimulateConfig(shape=(192, 256), seed=8, detector_nps_nyquist=0.1)
    sim = simulate_micrograph(dataclasses.replace(base, even_odd=True), 2)
    plain = simulate_micrograph(base, 2)
    assert plain.even is None and plain.odd is None
    assert np.array_equal(sim.truth, plain.truth)
    assert np.array_equal(sim.noisy, sim.even + sim.odd)
    # The same draw as without halves, up to float32 rounding of even + odd.
    np.testing.assert_allclose(sim.noisy, plain.noisy, rtol=0, atol=1e-4 * plain.noisy.max())
    half = sim.truth.astype(np.float64) / 2
    expected = half.mean() * _nps_mean(base.shape, 0.1)
    for image in (sim.even, sim.odd):
        ratio = np.var(image - half) / expected
        assert 0.95 < ratio < 1.05, ratio
    white = SimulateConfig(shape=(128, 160), seed=8)
    assert np.array_equal(simulate_micrograph(dataclasses.replace(white, even_odd=True), 1).noisy,
                          simulate_micrograph(white, 1).noisy)
    again = simulate_micrograph(dataclasses.replace(base, even_odd=True), 2)
    assert np.array_equal(again.even, sim.even) and np.array_equal(again.odd, sim.odd)


def test_prepare_stores_both_directions_of_every_pair(halves_set, paired_store):
    with h5py.File(paired_store.output) as f:
        table = f["micrographs"]
        names = [n.decode() for n in table["name"][:]]
        sources = [Path(s.decode()) for s in table["source"][:]]
        splits = [s.decode() for s in table["split"][:]]
        percentiles = table["percentile"][:]
        assert json.loads(f.attrs["noise"])["model"] == "none"
        assert json.loads(f.attrs["targets"]) == [str(p) for p in halves_set.odds + halves_set.evens]
        stored = {split: (f[f"{split}/index"][:], f[f"{split}/input"][:], f[f"{split}/target"][:])
                  for split in ("train", "test")}
    keys = [p.stem for p in halves_set.micrographs]
    assert names == [f"{k}_EVN" for k in keys] + [f"{k}_ODD" for k in keys]
    assert sources == [p.absolute() for p in halves_set.evens + halves_set.odds]
    assert splits[:3] == splits[3:] and sorted(splits[:3]) == ["test", "train", "train"]
    evens = [_read(p) for p in halves_set.evens]
    odds = [_read(p) for p in halves_set.odds]
    pairs = [(e, o) for e, o in zip(evens, odds, strict=True)]
    pairs += [(o, e) for e, o in zip(evens, odds, strict=True)]
    seen = 0
    for split, (index, inputs, targets) in stored.items():
        for (m, y, x), given, target in zip(index, inputs, targets, strict=True):
            assert splits[m] == split
            source, other = pairs[m]
            scale = np.percentile(source, 95)  # the input half's percentile, for both
            assert percentiles[m] == pytest.approx(scale, rel=1e-6)
            np.testing.assert_allclose(given, source[y:y + 64, x:x + 64] / scale, rtol=1e-5)
            np.testing.assert_allclose(target, other[y:y + 64, x:x + 64] / scale, rtol=1e-5)
            seen += 1
    assert seen == 6 * 2 * 3  # six directions of 2 × 3 patches (the last column shifted in)


def test_cli_pairs_folders_and_star_columns_with_no_noise(halves_set, tmp_path, capsys):
    root = halves_set.root
    out = tmp_path / "cli.h5"
    assert main(["prepare", str(root / "even"), "--odd", str(root / "odd"), "-o", str(out),
                 "--patch", "64", "--stride", "64", "--quiet"]) == 0
    assert "prepared 3 even/odd pairs (both directions)" in capsys.readouterr().out
    star_out = tmp_path / "star.h5"
    assert main(["prepare", str(halves_set.micrographs_star), "--odd", "-o", str(star_out),
                 "--patch", "64", "--stride", "64", "--quiet"]) == 0
    for store in (out, star_out):
        with h5py.File(store) as f:
            assert json.loads(f.attrs["noise"])["model"] == "none"
            sources = [Path(s.decode()).resolve() for s in f["micrographs/source"][:]]
        assert sources == [p.resolve() for p in halves_set.evens + halves_set.odds]


def _refused(capsys, tmp_path, argv, *expected):
    out = tmp_path / "bad.h5"
    assert main(["prepare", *argv, "-o", str(out), "--patch", "64", "--stride", "64",
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for text in expected:
        assert text in err, err
    assert not out.exists() and not Path(f"{out}.shards").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".h5") == []


def test_bad_halves_are_refused_before_anything_is_written(tmp_path, capsys):
    rng = np.random.default_rng(0)
    even, odd = tmp_path / "even", tmp_path / "odd"
    even.mkdir()
    odd.mkdir()
    for name in ("a", "b"):
        write_mrc(even / f"{name}_EVN.mrc", rng.poisson(10, (96, 128)).astype(np.float32))
    write_mrc(odd / "a_ODD.mrc", rng.poisson(10, (96, 128)).astype(np.float32))
    write_mrc(odd / "c_ODD.mrc", rng.poisson(10, (96, 128)).astype(np.float32))
    _refused(capsys, tmp_path, [str(even), "--odd", str(odd)],
             f"no odd half for {even / 'b_EVN.mrc'}", f"no even half for {odd / 'c_ODD.mrc'}")
    (odd / "c_ODD.mrc").rename(odd / "b_ODD.mrc")
    write_mrc(odd / "b_ODD.mrc", rng.poisson(10, (128, 96)).astype(np.float32))
    _refused(capsys, tmp_path, [str(even), "--odd", str(odd)],
             str(even / "b_EVN.mrc"), str(odd / "b_ODD.mrc"), "96 × 128", "128 × 96")
    write_mrc(odd / "b_ODD.mrc", rng.poisson(10, (96, 128)).astype(np.float32))
    _refused(capsys, tmp_path, [str(even), "--odd", str(odd), "--noise", "gaussian"],
             "noise='gaussian'", "--noise none")
    _refused(capsys, tmp_path, [str(even), "--odd"], f"{even} is not a STAR file", "--odd ODD")
    # the halves given the wrong way round: said so (it named every half as lacking its partner)
    _refused(capsys, tmp_path, [str(odd), "--odd", str(even)],
             f"the inputs are odd halves ({odd / 'a_ODD.mrc'}, …) and --odd gives even halves "
             f"({even / 'a_EVN.mrc'}, …): swap them")
    # so with denoise --permissive too (it had skipped every half as unpaired, then said there
    # was no micrograph to denoise)
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.sources import gather_inputs

    with pytest.raises(ConfigError, match=r"the inputs are odd halves .*: swap them"):
        gather_inputs([odd], config=DenoiseConfig(), odd=[even], pixel_size_angstrom=1.0,
                      permissive=True)
    with pytest.raises(ConfigError, match="--noise none"):
        prepare(even, tmp_path / "py.h5", PrepareConfig(patch_size=64), odd=odd)
    assert not (tmp_path / "py.h5").exists()


def test_prepare_pairs_each_star_row_s_own_halves_whatever_their_names(tmp_path, capsys):
    """``prepare STAR --odd`` on rows whose halves do not pair by name (``mic001_even_sum.mrc``
    with ``mic001_odd_sum.mrc``; ``a.mrc`` with ``b.mrc`` in two grids' folders): each row's two
    halves are one micrograph's (they had been refused with 'no odd half for'), the store's
    names unique; a row whose halves differ in shape is still refused before anything is
    written."""
    import pandas as pd
    import starfile

    rng = np.random.default_rng(2)
    halves = [("mic001_even_sum.mrc", "mic001_odd_sum.mrc"), ("GridA/a.mrc", "GridA/b.mrc"),
              ("GridB/a.mrc", "GridB/b.mrc")]
    for pair in halves:
        for name in pair:
            (tmp_path / name).parent.mkdir(exist_ok=True)
            write_mrc(tmp_path / name, rng.poisson(10, (96, 128)).astype(np.float32))
    star = tmp_path / "corrected.star"
    starfile.write({"micrographs": pd.DataFrame({
        "rlnMicrographName": ["mic001.mrc", "GridA/mic002.mrc", "GridB/mic002.mrc"],
        "rlnMicrographNameEven": [e for e, _ in halves],
        "rlnMicrographNameOdd": [o for _, o in halves]})}, star)
    out = tmp_path / "good" / "pairs.h5"
    out.parent.mkdir()
    assert main(["prepare", str(star), "--odd", "-o", str(out), "--patch", "64", "--stride", "64",
                 "--quiet"]) == 0
    assert "prepared 3 even/odd pairs (both directions)" in capsys.readouterr().out
    with h5py.File(out) as f:
        sources = [Path(s.decode()).resolve() for s in f["micrographs/source"][:]]
        names = [n.decode() for n in f["micrographs/name"][:]]
        splits = [s.decode() for s in f["micrographs/split"][:]]
    assert sources == [(tmp_path / e).resolve() for e, _ in halves] + [
        (tmp_path / o).resolve() for _, o in halves]
    assert len(set(names)) == 6 and splits[:3] == splits[3:]
    write_mrc(tmp_path / "GridB/b.mrc", rng.poisson(10, (128, 96)).astype(np.float32))
    _refused(capsys, tmp_path, [str(star), "--odd"], str(tmp_path / "GridB/a.mrc"),
             str(tmp_path / "GridB/b.mrc"), "96 × 128", "128 × 96")


def test_a_micrograph_two_star_files_list_pairs_by_its_rows(tmp_path):
    """Two STAR files given as both halves that both list one micrograph (the first file's row
    used): its halves pair, in denoise (any order of the odd STAR files, --permissive or not)
    and in prepare, as they did by name; its odd half had been keyed by the second file's row
    and its even by the first's, so the call was refused ('no odd half for'), and with
    --permissive the micrograph dropped."""
    import pandas as pd
    import starfile

    from cryostream.config import DenoiseConfig
    from cryostream.denoise.sources import gather_inputs
    from cryostream.prepare_halves import half_directions

    rng = np.random.default_rng(3)
    halves = [(f"even/m{i}.mrc", f"odd/m{i}_other.mrc") for i in range(3)]
    for pair in halves:
        for name in pair:
            (tmp_path / name).parent.mkdir(exist_ok=True)
            write_mrc(tmp_path / name, rng.poisson(10, (96, 128)).astype(np.float32))
    stars = []
    for name, rows in (("a.star", halves[:2]), ("b.star", halves[1:])):
        stars.append(str(tmp_path / name))
        starfile.write({"micrographs": pd.DataFrame({
            "rlnMicrographName": [f"m{e[-5]}.mrc" for e, _ in rows],
            "rlnMicrographNameEven": [e for e, _ in rows],
            "rlnMicrographNameOdd": [o for _, o in rows]})}, stars[-1])
    expected = [(str((tmp_path / e).resolve()), str((tmp_path / o).resolve())) for e, o in halves]
    for odd in (stars, stars[::-1]):
        for permissive in (False, True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = gather_inputs(stars, config=DenoiseConfig(), odd=odd,
                                    pixel_size_angstrom=1.0, permissive=permissive)
            assert [(m.source, m.odd) for m in got.micrographs] == expected, (odd, permissive)
            assert got.skipped == []
        directions = half_directions(stars, odd)
        assert [(str(e.resolve()), str(o.resolve())) for e, o in
                zip(directions.inputs[:3], directions.targets[:3], strict=True)] == expected


def test_halves_in_folders_of_links_pair_by_the_links_names(tmp_path):
    """Warp's layout made of symbolic links (``even/m0.mrc`` → ``…/exposure0_EVN.mrc``,
    ``odd/m0.mrc`` → ``…/exposure0_ODD.mrc``, as a project that links its raw data has): the
    halves pair by the names they were given, --permissive or not; the even half had been
    paired by its target's name and the call refused ('no odd half for')."""
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.sources import gather_inputs

    rng = np.random.default_rng(5)
    (tmp_path / "raw").mkdir()
    for half in ("even", "odd"):
        (tmp_path / half).mkdir()
        for i in range(2):
            target = tmp_path / "raw" / f"exposure{i}_{'EVN' if half == 'even' else 'ODD'}.mrc"
            write_mrc(target, rng.poisson(10, (96, 128)).astype(np.float32))
            (tmp_path / half / f"m{i}.mrc").symlink_to(target)
    for permissive in (False, True):
        got = gather_inputs([tmp_path / "even"], config=DenoiseConfig(), odd=[tmp_path / "odd"],
                            pixel_size_angstrom=1.0, permissive=permissive)
        assert [(Path(m.source).name, Path(m.odd).name) for m in got.micrographs] == [
            ("exposure0_EVN.mrc", "exposure0_ODD.mrc"), ("exposure1_EVN.mrc", "exposure1_ODD.mrc")
        ], permissive
        assert got.skipped == []
        # and each output is named after the link, not its target (out/m0.mrc)
        assert [m.named_after() for m in got.micrographs] == [
            (str(tmp_path / "even" / f"m{i}.mrc"), f"m{i}") for i in range(2)]


def test_a_micrograph_given_as_a_link_is_named_after_the_link(tmp_path, monkeypatch):
    """A folder of symbolic links (RELION's Import job, a project linking its raw data): each
    output is named after the link as given (``links/mic_A.mrc`` → ``out/mic_A.mrc``), as RELION
    names it; the target's name (``sim_0000.mrc``) had been used. A link given by a relative
    path, and a file given both as itself and through a link, are named as given first."""
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.sources import gather_inputs

    rng = np.random.default_rng(2)
    (tmp_path / "raw").mkdir()
    (tmp_path / "links").mkdir()
    for i in range(2):
        write_mrc(tmp_path / "raw" / f"sim_000{i}.mrc", rng.poisson(10, (96, 128)).astype(np.float32))
        (tmp_path / "links" / f"mic_{'AB'[i]}.mrc").symlink_to(tmp_path / "raw" / f"sim_000{i}.mrc")
    monkeypatch.chdir(tmp_path)
    got = gather_inputs(["links", "raw/sim_0000.mrc"], config=DenoiseConfig(), pixel_size_angstrom=1.0)
    assert [(Path(m.source).name, m.named_after()) for m in got.micrographs] == [
        ("sim_0000.mrc", (str(tmp_path / "links" / "mic_A.mrc"), "mic_A")),
        ("sim_0001.mrc", (str(tmp_path / "links" / "mic_B.mrc"), "mic_B"))]
    plain = gather_inputs(["raw"], config=DenoiseConfig(), pixel_size_angstrom=1.0)
    assert [m.named_after()[1] for m in plain.micrographs] == ["sim_0000", "sim_0001"]
    assert all(m.given_as is None for m in plain.micrographs)


def test_the_even_folder_given_as_odd_too_is_said_to_be_the_same_files(tmp_path, capsys):
    """prepare EVEN --odd EVEN (NAME_EVN.mrc files both times) had said 'no odd half for' and
    'no even half for' every file; it says they are the same files."""
    rng = np.random.default_rng(0)
    even = tmp_path / "even"
    even.mkdir()
    for name in ("a", "b"):
        write_mrc(even / f"{name}_EVN.mrc", rng.poisson(10, (96, 128)).astype(np.float32))
    _refused(capsys, tmp_path, [str(even), "--odd", str(even)],
             f"{even / 'a_EVN.mrc'} is given as both its even and its odd half (the same file; "
             "2 of the 2 even halves are)", "--odd")
    _refused(capsys, tmp_path, [str(even), "--odd", str(even / "b_EVN.mrc")],
             f"{even / 'b_EVN.mrc'} is given as both its even and its odd half (the same file)")


def test_a_run_on_halves_gets_no_noisier2noise_correction(paired_store, tmp_path):
    """The record a run on the store carries (the store's own config) decides plain
    Noise2Noise: the default denoising recipe applies no Noisier2Noise correction."""
    from cryostream.config.denoise import DenoiseConfig
    from cryostream.runs import RunRecord

    with h5py.File(paired_store.output) as f:
        stored = from_dict(PrepareConfig, json.loads(f.attrs["config"])["config"])
    assert stored == PAIRED
    record = RunRecord(tmp_path / "run", TINY_TRAIN, stored, str(paired_store.output))
    assert DenoiseConfig().for_run(record).n2n_correction is False


@pytest.mark.slow
def test_train_on_halves_learns_plain_noise2noise(paired_store, tmp_path):
    """unet-small, two steps on the paired store (≈45 s here, mostly compiling)."""
    from cryostream.config.denoise import DenoiseConfig
    from cryostream.runs import load_record
    from cryostream.training import train

    config = dataclasses.replace(TINY_TRAIN, steps=2, eval_every=2, checkpoint_every=2)
    result = train(paired_store.output, tmp_path / "run", config, log=lambda *_: None)
    assert result.steps == 2 and np.isfinite(result.final_loss)
    record = load_record(tmp_path / "run")
    assert record.noise.model == "none"
    assert DenoiseConfig().for_run(record).n2n_correction is False


def test_permissive_drops_both_directions_of_a_bad_half(tmp_path):
    rng = np.random.default_rng(1)
    even, odd = tmp_path / "even", tmp_path / "odd"
    even.mkdir()
    odd.mkdir()
    for name in ("a", "b", "c"):
        for folder, suffix in ((even, "_EVN"), (odd, "_ODD")):
            image = rng.poisson(10, (96, 128)).astype(np.float32)
            if (name, suffix) == ("b", "_ODD"):
                image[3, 3] = np.nan
            with warnings.catch_warnings():  # mrcfile warns of the NaN it writes
                warnings.simplefilter("ignore", RuntimeWarning)
                write_mrc(folder / f"{name}{suffix}.mrc", image)
    with pytest.warns(MicrographSkippedWarning, match="b_ODD.mrc"):
        result = prepare(even, tmp_path / "s.h5", PAIRED, odd=odd, permissive=True)
    assert [s["path"] for s in result.skipped] == [str(odd / "b_ODD.mrc"), str(even / "b_EVN.mrc")]
    with h5py.File(result.output) as f:
        names = [n.decode() for n in f["micrographs/name"][:]]
        splits = [s.decode() for s in f["micrographs/split"][:]]
    assert names == ["a_EVN", "c_EVN", "a_ODD", "c_ODD"]
    assert splits[:2] == splits[2:]



def test_halves_given_by_name_are_said_to_pair_with_odd(tmp_path, caplog):
    """NAME_EVN.mrc and NAME_ODD.mrc given by name or by a glob, without --odd, are denoised
    as micrographs of their own: a note says so and gives the --odd globs that pair them, as
    a folder's note does (once, for a folder); with --odd, or with no such pair, none."""
    import logging

    from cryostream.config import DenoiseConfig
    from cryostream.denoise.sources import gather_inputs

    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    for name in ("mic_a_EVN", "mic_a_ODD", "mic_b_EVN", "mic_b_ODD", "other"):
        write_mrc(tmp_path / "in" / f"{name}.mrc", rng.normal(size=(64, 64)).astype(np.float32))

    def notes(inputs, **kw):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="cryostream"):
            found = gather_inputs(inputs, config=DenoiseConfig(), **kw)
        return found, [r.getMessage() for r in caplog.records if "half-sums" in r.getMessage()]

    found, said = notes([str(tmp_path / "in" / "*.mrc")])
    assert len(found.micrographs) == 5  # as given: each on its own
    assert said == [f"{tmp_path / 'in'}: 4 files look like even/odd half-sums without their full "
                    "sums (mic_a_EVN.mrc, mic_a_ODD.mrc, mic_b_EVN.mrc, …): each is taken as a "
                    "micrograph of its own; to take them in pairs (the two halves of each "
                    f"micrograph), give '{tmp_path / 'in' / '*_EVN.mrc'}' --odd "
                    f"'{tmp_path / 'in' / '*_ODD.mrc'}'"]
    assert len(notes([tmp_path / "in"])[1]) == 1  # the folder's note alone
    paired, said = notes([str(tmp_path / "in" / "*_EVN.mrc")],
                         odd=[str(tmp_path / "in" / "*_ODD.mrc")])
    assert len(paired.micrographs) == 2 and not said
    assert not notes([tmp_path / "in" / "mic_a_EVN.mrc", tmp_path / "in" / "other.mrc"])[1]
