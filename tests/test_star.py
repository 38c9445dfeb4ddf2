"""STAR files in and out (cryostream.io.star) and even/odd half-sums paired by name
(cryostream.io.halves), on real files written by mrcfile and starfile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
from conftest import write_mrc

from cryostream.errors import ConfigError
from cryostream.io.halves import pair_halves
from cryostream.io.star import read_micrograph_star


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
