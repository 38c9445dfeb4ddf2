"""The shipped general model's table of learned weights is the one its recorded sums give.

The table is fitted on the H200 from 96 calibration micrographs (the sums are committed,
``docs/results/general_model/h200_learned_weights_fp32.json``) with the shipped recipe
(``benchmarks/fit_learned_weights.py``'s ``SHIPPED_RECIPE``: least squares per band, held to
each calibration micrograph's input FRC where that costs a row at most 0.005 dB). Fitted again
here on a CPU, it must be the shipped table bit for bit, and it must keep more calibration
micrographs at their input's FRC than the least-squares table, for about the PSNR budgeted
(the table is read between its rows, so not every micrograph of a held row stays held)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from cryostream.denoise.network import model_record
from cryostream.denoise.weights import LearnedWeights, WeightSums, fit_learned_weights

ROOT = Path(__file__).resolve().parent.parent
SUMS = ROOT / "docs" / "results" / "general_model" / "h200_learned_weights_fp32.json"


@pytest.fixture(scope="module")
def benchmarks(benchmark_modules):
    return benchmark_modules("fit_learned_weights", "frc_constrained_weights")


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_the_shipped_table_is_refitted_bit_for_bit_from_its_sums(benchmarks):
    fit_module, _ = benchmarks
    recipe = fit_module.SHIPPED_RECIPE
    args = argparse.Namespace(by_size=recipe["by_size"], rows=recipe["rows"],
                              dropped=recipe["dropped"], keep_input_frc=recipe["keep_input_frc"],
                              pixel_groups=fit_module.PIXEL_GROUPS)
    stored = json.loads(SUMS.read_text())
    assert stored["taper"] == recipe["taper"] and stored["seed"] == 2
    tables, _ = fit_module.fit_tables(stored["micrographs"], args, shape=stored["shape"],
                                      taper=stored["taper"])
    shipped = model_record("general").learned_weights
    assert json.dumps(tables, sort_keys=True) == json.dumps(shipped, sort_keys=True)


def test_the_kept_table_keeps_more_micrographs_at_their_input_for_its_budget(benchmarks):
    _, kept_module = benchmarks
    rows = json.loads(SUMS.read_text())["micrographs"]
    sums = [WeightSums(r["ensemble"]["snr"], np.asarray(r["ensemble"]["sums"], np.float64),
                       r["pixel_size"]) for r in rows]
    psnrs = [r["psnr"]["ensemble"] for r in rows]
    least = fit_learned_weights(sums, 2, 4)
    kept = LearnedWeights.from_dict(model_record("general").learned_weights["ensemble"])
    before = kept_module.score(least, least, sums, psnrs)
    after = kept_module.score(kept, least, sums, psnrs)
    assert sum(after["under_input"]) < sum(before["under_input"])
    assert after["under_input"][-1] < before["under_input"][-1]  # 0.25-0.5 cycles/px
    assert 0 < after["psnr_cost_mean"] <= 0.005 + 1e-3  # the budget, rows averaged
