"""The calibration micrographs of a learned-weights table (``benchmarks/fit_learned_weights.py``)
are never the held-out micrographs the table is scored on."""

from __future__ import annotations

import argparse

import pytest


@pytest.fixture(scope="module")
def benchmarks(benchmark_modules):
    return benchmark_modules("fit_learned_weights", "general_model_spread")


def test_a_conditions_calibration_micrographs_are_drawn_as_it_but_are_not_its_test_set(
        benchmarks, tmp_path):
    fit_module, spread = benchmarks
    name, shape = "t20s-10e-white", (1024, 1024)
    args = argparse.Namespace(seed=2, shape=shape, dose=None, condition=name)
    drawn = fit_module.calibration_draws(args)
    assert name in drawn["folder"]
    tasks = fit_module.calibration_tasks(3, shape, args.seed, tmp_path, condition=name)
    test = spread.held_out_condition(name, 0, shape)  # train_general_model.py's test set
    for task in tasks:
        config = task["config"]
        assert config["dose_e_per_angstrom2"] == test["dose_e_per_angstrom2"]
        assert config["pixel_size_angstrom"] == test["pixel_size_angstrom"]
        assert config["seed"] != test["seed"]
    spread_tasks = fit_module.calibration_tasks(3, shape, args.seed, tmp_path)
    assert [t["config"] for t in spread_tasks] != [t["config"] for t in tasks]
    with pytest.raises(SystemExit):  # a condition sets its own dose
        fit_module.parse_args(["--out", str(tmp_path), "--work", str(tmp_path),
                               "--condition", name, "--dose", "5", "10"])
