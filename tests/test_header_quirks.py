"""Header quirks that real micrographs carry, as a scientist meets them on the command line."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest

from tests.conftest import write_mrc


def _negative_pixel_size(path: Path) -> Path:
    """A micrograph whose header's cell lengths are negative: a pixel size of −0.66 Å."""
    write_mrc(path, np.random.default_rng(0).poisson(20.0, (64, 64)).astype(np.float32))
    with mrcfile.open(path, "r+") as mrc:
        mrc.header.cella.x, mrc.header.cella.y = -mrc.header.cella.x, -mrc.header.cella.y
    return path


def test_a_negative_header_pixel_size_is_named_not_called_unset(tmp_path: Path, capsys):
    """A header whose pixel size is −0.66 Å is not one that 'leaves the pixel size unset (0 Å)'
    (which sent the user looking for a zero that is not there): the error names the header's
    value and where it comes from, with the fix; nothing is written, status 2."""
    from cryostream.cli import main

    source = _negative_pixel_size(tmp_path / "neg.mrc")
    assert main(["denoise", str(source), "-o", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"cryostream denoise: error: {source}: the header gives a pixel size of -0.66 Å "
        "(cella.x -42.24 Å over mx 64), which no micrograph has; pass --pixel-size Å")
    assert not (tmp_path / "out").exists()


def test_a_negative_header_pixel_size_from_python(tmp_path: Path):
    """``open_micrographs`` says the same of such a header, and still calls a zero unset;
    ``pixel_size_angstrom=`` serves both."""
    import cryostream
    from cryostream.errors import InvalidMicrographError
    from cryostream.io.mrc import read_header
    from cryostream.io.pixel_sizes import unset_pixel_size

    source = _negative_pixel_size(tmp_path / "neg.mrc")
    with pytest.raises(InvalidMicrographError, match=r"the header gives a pixel size of -0\.66 Å \(cella"):
        cryostream.open_micrographs(source)
    first = write_mrc(tmp_path / "a.mrc", np.ones((64, 64), np.float32))
    with pytest.raises(InvalidMicrographError, match=rf"^{source}: the header gives a pixel size of -0\.66"):
        cryostream.open_micrographs([first, source])  # not 'pixel size 0 Å differs from the 0.66 Å'
    zero = write_mrc(tmp_path / "zero.mrc", np.ones((8, 8), np.float32), pixel_size=0.0)
    assert unset_pixel_size(read_header(zero)) == "the header leaves the pixel size unset (0 Å)"
    assert float(cryostream.open_micrographs(source, pixel_size_angstrom=0.66).x[1]) == pytest.approx(0.66)


def test_the_residual_check_says_what_its_numbers_mean(tiny_run, tmp_path: Path, capsys):
    """``evaluate RUN --residual MIC``: the report and the line printed had given a spectrum
    ratio and a correlation beside pure noise's with no word of what they mean or which way is
    bad; now each micrograph's reading says how far the correlation is from pure noise's
    (nothing of the specimen removed) toward the whole micrograph's, and how much of the noise
    the output keeps (or how much more than noise it took out)."""
    import json

    from cryostream.cli import main

    mic = str(tiny_run.sim.micrographs[2])
    assert main(["evaluate", str(tiny_run.run), "-o", str(tmp_path / "report"), "--residual", mic,
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    row = json.loads((tmp_path / "report" / "report.json").read_text())["residual"][0]
    way = 100 * (row["correlation_with_lowpass"] - row["correlation_if_pure_noise"]) / (
        row["correlation_if_everything"] - row["correlation_if_pure_noise"])
    assert f"{way:.1f} % of the way from pure noise's" in row["reading"]
    assert ("of the noise there left in the output" in row["reading"]) == (row["spectrum_ratio_mean"] < 1)
    assert f"  residual of {Path(mic).name}: {row['reading']}" in out
    assert f"- {Path(mic).name}: {row['reading']}" in (tmp_path / "report" / "report.md").read_text()
