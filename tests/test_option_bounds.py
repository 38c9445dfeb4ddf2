"""Numbers a command cannot use are refused up front: one line naming the option and the fix,
status 2, nothing written (each had been a traceback, a hang or a nonsense result)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryostream.cli import main
from cryostream.config import NoiseConfig, PrepareConfig, SimulateConfig, TrainConfig
from cryostream.config.checks import SEED_MAX
from cryostream.errors import ConfigError


def _error(capsys) -> str:
    """The one line a refused command printed on stderr."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.fixture
def store(tmp_path: Path, small_mrcs) -> Path:
    """A tiny store of the three small micrographs (32² patches)."""
    out = tmp_path / "data.h5"
    assert main(["prepare", *map(str, small_mrcs), "-o", str(out), "--patch", "32", "--quiet"]) == 0
    return out


@pytest.mark.parametrize("seed", ["-1", str(2**32), "99999999999999999999999"])
def test_a_seed_outside_0_to_2_32_is_refused_by_every_command(tmp_path, capsys, small_mrcs,
                                                                store, seed):
    """``--seed -1`` had been a NumPy traceback (train also left a run folder with config.json
    and an empty checkpoints/), a seed of 2**64 or more JAX's OverflowError, and one from 2**32
    trained as its low 32 bits (2**32 as 0)."""
    fix = f"--seed {seed}: must be a whole number from 0 to {SEED_MAX} (2**32 - 1)"
    run = tmp_path / "run"
    assert main(["train", str(store), "-o", str(run), "--model", "unet-small", "--steps", "2",
                 "--seed", seed]) == 2
    assert fix in _error(capsys)
    assert not run.exists()
    sim = tmp_path / "sim"
    assert main(["simulate", str(sim), "--count", "1", "--shape", "64", "64", "--seed", seed]) == 2
    assert fix in _error(capsys)
    assert not sim.exists()
    out = tmp_path / "other.h5"
    assert main(["prepare", *map(str, small_mrcs), "-o", str(out), "--patch", "32",
                 "--seed", seed]) == 2
    assert fix in _error(capsys)
    assert not out.exists() and not Path(f"{out}.shards").exists()
    assert main(["rank", "general", "-i", str(small_mrcs[0]), "--raw", "--quiet", "--seed", seed]) == 2
    assert fix in _error(capsys)


def test_the_configs_take_seeds_from_0_to_2_32_minus_1():
    for config in (SimulateConfig, PrepareConfig, TrainConfig):
        assert config(seed=0).seed == 0 and config(seed=SEED_MAX).seed == SEED_MAX
        for seed in (-1, SEED_MAX + 1, 1.5, True, "3"):
            with pytest.raises(ConfigError, match="seed="):
                config(seed=seed)


@pytest.mark.parametrize(("option", "value", "said"), [
    ("--beta", "inf", "--beta inf: must be a finite number from 0.01 to 100"),
    ("--beta", "nan", "--beta nan: must be a finite number from 0.01 to 100"),
    ("--beta", "0", "--beta 0.0: must be a finite number from 0.01 to 100"),
    ("--beta", "-0.5", "--beta -0.5: must be a finite number from 0.01 to 100"),
    ("--beta", "1e9", "--beta 1000000000.0: must be a finite number from 0.01 to 100"),
    ("--draws", "0", "--draws 0: must be a whole number ≥ 1"),
])
def test_rank_refuses_a_recorruption_it_cannot_score(tmp_path, capsys, small_mrcs, option, value,
                                                     said):
    """``--beta inf`` had ranked every run ``nan +nan``: the recorrupted input is then all
    infinities. The range names what beta does to the input's and the target's noise."""
    scores = tmp_path / "ranking.json"
    assert main(["rank", "general", "-i", str(small_mrcs[0]), "--raw", "--quiet",
                 "--json", str(scores), option, value]) == 2
    line = _error(capsys)
    assert line.startswith("cryostream rank: error: ") and said in line
    assert not scores.exists()


@pytest.mark.parametrize(("dose", "said"), [
    ("1e30", "--dose 1e+30: at most 1e6 e/Å²"),  # had been NumPy's "lam value too large"
    ("1e-30", "--dose 1e-30: 4.3e-31 electrons per 0.6575 Å pixel; at least 0.01 are needed"),
    ("0.02", "give at least 0.024 e/Å²"),  # 0.0086 per pixel: 99.1 % of the pixels 0
])
def test_simulate_refuses_a_dose_it_cannot_draw_or_that_leaves_the_pixels_empty(tmp_path, capsys,
                                                                               dose, said):
    out = tmp_path / "sim"
    assert main(["simulate", str(out), "--count", "1", "--shape", "64", "64", "--dose", dose]) == 2
    assert said in _error(capsys)
    assert not out.exists()  # it had left empty micrographs/ and truth/ folders


def test_simulate_takes_the_doses_at_the_bounds(tmp_path, capsys):
    for dose in ("1e6", "0.024"):
        assert main(["simulate", str(tmp_path / dose), "--count", "1", "--shape", "64", "64",
                     "--dose", dose, "--quiet"]) == 0
    assert SimulateConfig(dose_e_per_angstrom2=10.0, pixel_size_angstrom=1e3)  # 1e7 per pixel
    with pytest.raises(ConfigError, match="at most 1e12"):  # beyond float32's resolution
        SimulateConfig(dose_e_per_angstrom2=1e5, pixel_size_angstrom=1e4)


@pytest.mark.parametrize("model", ["poisson", "poisson-gaussian"])
@pytest.mark.parametrize(("dose", "said"), [
    ("1e30", "--dose 1e+30: at most 1e6 counts per unit intensity for Poisson noise"),
    ("1e-30", "--dose 1e-30: at least 0.01 counts per unit intensity for Poisson noise"),
])
def test_prepare_refuses_a_poisson_dose_it_cannot_draw_or_that_leaves_the_inputs_empty(
        tmp_path, capsys, small_mrcs, model, dose, said):
    """1e30 had been NumPy's "lam value too large" traceback with a .shards folder left behind;
    1e-30 a store of all-zero inputs without a word."""
    out = tmp_path / "data.h5"
    assert main(["prepare", *map(str, small_mrcs), "-o", str(out), "--patch", "32",
                 "--noise", model, "--dose", dose]) == 2
    assert said in _error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mics"]
    assert main(["plan", *map(str, small_mrcs), "--patch", "32", "--noise", model,
                 "--dose", dose]) == 2
    assert said in _error(capsys)


def test_the_poisson_dose_is_checked_only_where_it_is_used():
    assert NoiseConfig(model="poisson", dose=0.01).dose == 0.01
    assert NoiseConfig(model="poisson-gaussian", dose=1e6).dose == 1e6
    assert NoiseConfig(model="gaussian", dose=1e-30).dose == 1e-30  # no Poisson part


def test_simulate_refuses_a_shape_wider_than_any_detector(tmp_path, capsys):
    """``--shape 200000 200000`` had been NumPy's _ArrayMemoryError (298 GiB) with empty
    micrographs/ and truth/ folders left."""
    out = tmp_path / "sim"
    assert main(["simulate", str(out), "--count", "1", "--shape", "200000", "200000"]) == 2
    assert "--shape 200000 200000: each side must be at most 32768 px" in _error(capsys)
    assert not out.exists()


def test_simulate_refuses_a_micrograph_the_memory_cannot_hold(tmp_path, capsys):
    from cryostream.config.simulate import MAX_SIDE
    from cryostream.host import available_memory
    from cryostream.simulate.micrograph import BYTES_PER_PIXEL

    if MAX_SIDE**2 * BYTES_PER_PIXEL <= available_memory():
        pytest.skip("this machine could simulate the widest micrograph")
    out = tmp_path / "sim"
    assert main(["simulate", str(out), "--count", "1", "--shape", str(MAX_SIDE), str(MAX_SIDE)]) == 2
    line = _error(capsys)
    assert f"one micrograph of {MAX_SIDE} × {MAX_SIDE} px takes about" in line
    assert line.startswith(f"cryostream simulate: error: --shape {MAX_SIDE} {MAX_SIDE}: ")
    assert "is available; give a smaller shape, or simulate on a machine" in line
    assert not out.exists()


def test_prepare_refuses_far_more_local_workers_than_cores(tmp_path, capsys, small_mrcs):
    """``--workers 1000`` on two cores had failed to start its workers (FileNotFoundError
    tracebacks) and then hung. A scheduler's workers are not counted: they are its own."""
    from cryostream.cluster import WORKERS_PER_CORE, check_local_workers
    from cryostream.host import cpu_cores

    cores = cpu_cores()
    too_many = str(WORKERS_PER_CORE * cores + 1)
    out = tmp_path / "data.h5"
    assert main(["prepare", *map(str, small_mrcs), "-o", str(out), "--patch", "32",
                 "--workers", too_many]) == 2
    line = _error(capsys)
    assert line.startswith(f"cryostream prepare: error: --workers {too_many}: more than "
                           f"{WORKERS_PER_CORE} times the {cores} CPU core")
    assert f"give at most {WORKERS_PER_CORE * cores}, e.g. --workers {cores}" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mics"]
    check_local_workers(WORKERS_PER_CORE * cores)  # as many as that is fine
    # with a scheduler the count is not checked against this machine's cores (the address is:
    # nothing listens on port 1)
    assert main(["prepare", *map(str, small_mrcs), "-o", str(out), "--patch", "32",
                 "--workers", too_many, "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "no scheduler reachable at 127.0.0.1:1" in _error(capsys)
    assert main(["denoise", "-m", "general", str(small_mrcs[0]), "-o", str(tmp_path / "den"),
                 "--cluster-workers", too_many]) == 2
    assert f"--cluster-workers {too_many}: more than" in _error(capsys)
    assert not (tmp_path / "den").exists()


def test_stores_and_runs_made_before_the_bounds_still_load():
    """The bounds apply to configs made now: a store or run recorded with a seed over 2**32 or
    a Poisson dose outside the range (made before the bounds) is read back as it was made."""
    from cryostream.config.serial import from_dict, to_dict

    recorded = to_dict(PrepareConfig()) | {"seed": 2**40}
    recorded["noise"] = to_dict(NoiseConfig()) | {"dose": 1e-3}
    loaded = from_dict(PrepareConfig, recorded)
    assert (loaded.seed, loaded.noise.dose) == (2**40, 1e-3)
    assert from_dict(TrainConfig, to_dict(TrainConfig()) | {"seed": 2**40}).seed == 2**40
    with pytest.raises(ConfigError, match="seed="):  # made now: refused
        PrepareConfig(seed=2**40)
    with pytest.raises(ConfigError, match="dose="):
        NoiseConfig(dose=1e-3)
