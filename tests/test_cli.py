"""The command line: --version, --help everywhere, one clear line for user mistakes."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cryostream import __version__
from cryostream.cli import SUBCOMMANDS, build_parser, main
from cryostream.cli import common as cli_common
from cryostream.cli import denoise as cli_denoise
from cryostream.cli import prepare as cli_prepare
from cryostream.cli import simulate as cli_simulate
from cryostream.cli import train as cli_train
from cryostream.config import (
    MODEL_PRESETS,
    DenoiseConfig,
    NoiseConfig,
    PrepareConfig,
    SimulateConfig,
    TrainConfig,
)
from tests.conftest import write_mrc


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cryostream.cli", *args], capture_output=True, text=True, timeout=120
    )


#: Run in this process by default; as the real command (a new Python) with the slow tests.
REAL = [False, pytest.param(True, marks=pytest.mark.slow)]


def _cli(capsys, real: bool, *args: str) -> tuple[int, str, str]:
    """``cryostream ARGS``: the exit status, stdout and stderr."""
    if real:
        result = _run(*args)
        return result.returncode, result.stdout, result.stderr
    try:
        code = main(list(args))
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("real", REAL)
def test_version(capsys, real):
    code, out, _ = _cli(capsys, real, "--version")
    assert code == 0 and out.strip() == f"cryostream {__version__}"


def test_every_subcommand_has_help(capsys):
    subcommands = build_parser()._subparsers._group_actions[0].choices
    assert {"simulate", "plan"} <= set(subcommands)
    for name in subcommands:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0
        assert "usage: cryostream " + name in capsys.readouterr().out


def test_every_subcommand_says_what_it_does(capsys):
    """Each ``--help`` has a description paragraph between the usage and the arguments."""
    for name in build_parser()._subparsers._group_actions[0].choices:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = capsys.readouterr().out
        between = text.split("\n\n")[1]
        assert not between.startswith(("positional arguments:", "options:")), name


def test_prepare_with_the_default_noise_says_it_is_made_up(small_mrcs, tmp_path, capsys):
    """prepare with no noise option adds Poisson–Gaussian noise of a made-up dose and σ, and a
    network trained on it reported a good test PSNR while leaving the micrographs noisy: it
    says so, and names --noise matched; with a noise chosen it says nothing of it."""
    assert main(["prepare", *map(str, small_mrcs), "-o", str(tmp_path / "a.h5"), "--patch",
                 "32"]) == 0
    assert capsys.readouterr().err.splitlines()[-1] == (
        "cryostream: the store's noise is the default, poisson-gaussian of dose 10 and σ 0.05: "
        "made up, not measured from these micrographs; a denoiser of them learns from noise "
        "like their own: --noise matched (or cryostream fit, which prepares and trains so)")
    assert main(["prepare", *map(str, small_mrcs), "-o", str(tmp_path / "b.h5"), "--patch",
                 "32", "--noise", "gaussian"]) == 0
    assert "noise is the default" not in capsys.readouterr().err


def test_sizes_are_printed_in_a_unit_that_suits_them(small_mrcs, tmp_path, capsys):
    """A store of a few kB is not "0.00 GB": prepare, export-bin and simulate print kB."""
    store = tmp_path / "data.h5"
    assert main(["prepare", *map(str, small_mrcs), "-o", str(store), "--patch", "32",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert " kB written, " in out and "GB" not in out, out
    assert main(["export-bin", str(store), str(tmp_path / "bin")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("wrote 4 .bin files and bin.json to ") and out.endswith(" kB)\n"), out
    import json

    sidecar = json.loads((tmp_path / "bin" / "bin.json").read_text())  # the index's rows named
    assert [(m["row"], m["source"]) for m in sidecar["micrographs"]] == [
        (i, str(p.absolute())) for i, p in enumerate(small_mrcs)]
    rows = {r[0] for r in sidecar["files"]["train_index"] + sidecar["files"]["test_index"]}
    assert rows <= {m["row"] for m in sidecar["micrographs"]}
    assert all(m["split"] in ("train", "test") and m["percentile"] > 0 for m in sidecar["micrographs"])
    assert main(["simulate", str(tmp_path / "sim"), "--count", "1", "--shape", "64", "64",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "(34.8 kB, " in out, out  # two MRC files of 1024 + 64 × 64 × 4 bytes


@pytest.mark.parametrize("real", REAL)
def test_user_mistake_is_one_line_without_traceback(tmp_path, capsys, real):
    code, _, err = _cli(capsys, real, "plan", str(tmp_path / "missing.mrc"))
    assert code == 2
    lines = err.strip().splitlines()
    assert lines == [f"cryostream plan: error: {tmp_path / 'missing.mrc'}: no such file; "
                     "check the path or the glob"]
    code, _, err = _cli(capsys, real, "plan", "--shape", "7676", "7420", "--count", "3",
                        "--stride", "0")
    assert code == 2 and "Traceback" not in err
    assert err.strip() == "cryostream plan: error: --stride 0: must be a finite number > 0"


def test_simulate_then_plan(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "sim"), "--count", "2", "--shape", "256", "300",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("simulated 2 micrographs of 256 × 300 px") and "peak memory" in out
    assert main(["plan", str(tmp_path / "sim" / "micrographs"), "--patch", "128",
                 "--stride", "64", "--edge", "drop"]) == 0
    out = capsys.readouterr().out
    assert "*drop" in out and "split by micrograph: 1 train" in out


def test_simulate_says_its_or_their_halves_by_the_count(tmp_path, capsys):
    """One micrograph simulated with --even-odd was said to come 'with their even/odd halves'."""
    for count, said in (("1", "simulated 1 micrograph of 64 × 64 px with its even/odd halves"),
                        ("2", "simulated 2 micrographs of 64 × 64 px with their even/odd halves")):
        assert main(["simulate", str(tmp_path / count), "--count", count, "--shape", "64", "64",
                     "--even-odd", "--quiet"]) == 0
        assert capsys.readouterr().out.startswith(said)


def test_a_quoted_tilde_is_the_home_folder(tmp_path, capsys, monkeypatch):
    """A path the shell left with its ``~`` (quoted, or from a script or a RELION External
    job's parameters): ``~`` is the home folder, as the shell would have made it; it made a
    folder named ``~`` in the working directory (which ``rm -rf ~`` then takes for home)."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    assert main(["simulate", "~/sim", "--count", "1", "--shape", "64", "64", "--quiet"]) == 0
    assert main(["plan", "~/sim/micrographs", "--patch", "32", "--stride", "32"]) == 0
    capsys.readouterr()
    assert (home / "sim" / "micrographs.star").is_file()
    assert not (work / "~").exists()



def test_a_quoted_tilde_is_the_home_folder_in_rank_and_evaluate_paths(tiny_run, tmp_path, capsys,
                                                                       monkeypatch):
    """rank --json '~/r.json' had been refused ('the folder WORK/~ does not exist'), and
    evaluate --residual/--denoised took '~' as a folder of the working directory."""
    import json
    import shutil

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    shutil.copy(tiny_run.sim.micrographs[0], home / "m.mrc")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    assert main(["rank", str(tiny_run.run), "-i", "~/m.mrc", "--draws", "1", "--no-ensemble",
                 "--quiet", "--json", "~/r.json"]) == 0
    assert json.loads((home / "r.json").read_text())
    assert main(["evaluate", str(tiny_run.run), "-o", "~/rep", "--residual", "~/m.mrc",
                 "--denoised", "~", "--quiet"]) == 0
    capsys.readouterr()
    assert (home / "rep" / "report.md").is_file() and not (work / "~").exists()

def test_plan_of_the_full_data_set(capsys):
    assert main(["plan", "--shape", "7676", "7420", "--count", "196"]) == 0
    out = capsys.readouterr().out
    assert "13 × 13" in out and "14 × 14" in out and "38416" not in out


def test_plan_needs_inputs_or_shape(tmp_path, capsys):
    assert main(["plan"]) == 2
    assert "give INPUTS, or --shape H W and --count N" in capsys.readouterr().err
    path = write_mrc(tmp_path / "a.mrc", np.zeros((8, 8), np.float32))
    assert main(["plan", str(path), "--shape", "8", "8"]) == 2


# --- one module per subcommand, flags generated from the config fields -------------------------

# The documented command line (docs, README, users' scripts): every one of these must stay.
DOCUMENTED_FLAGS = {
    "simulate": {"--count", "--shape", "--seed", "--detector-nps", "--dose", "--overwrite",
                 "--quiet"},
    "plan": {"--shape", "--count", "-o", "--patch", "--stride", "--edge", "--percentile",
             "--noise", "--sigma", "--dose", "--noise-mode", "--alpha", "--shot", "--noise-radius",
             "--dtype", "--compression", "--test-fraction", "--seed", "--permissive"},
    "prepare": {"-o", "--targets", "--patch", "--stride", "--edge", "--percentile", "--noise",
                "--sigma", "--dose", "--noise-mode", "--alpha", "--shot", "--noise-radius",
                "--dtype", "--compression", "--test-fraction", "--seed", "--permissive",
                "--scheduler", "--workers", "--memory-limit", "--dashboard", "--report",
                "--overwrite", "--quiet"},
    "train": {"-o", "--model", "--precision", "--residual", "--recorrupt", "--augment",
              "--fresh-noise", "--steps",
              "--batch-size", "--lr", "--beta2", "--loss", "--eval-every", "--checkpoint-every",
              "--keep", "--seed", "--resume", "--quiet"},
    "fit": {"-o", "--from", "--budget", "--work", "--patch", "--model", "--overwrite"},
    "denoise": {"-o", "--tile", "--halo", "--batch-size", "--n2n-correction", "--n2n-clamp",
                "--wiener-gain", "--ensemble", "--ctf-gain", "--voltage", "--cs",
                "--amplitude-contrast", "--calibrate", "--workers", "--scheduler",
                "--cluster-workers", "--overwrite"},
    "picks-to-originals": {"-o", "--originals", "--overwrite", "--permissive"},
    "rank": {"-i", "--tile", "--halo", "--batch-size", "--n2n-correction", "--n2n-clamp",
             "--wiener-gain", "--ensemble", "--ctf-gain", "--voltage", "--cs",
             "--amplitude-contrast", "--draws", "--beta", "--seed", "--json"},
    "evaluate": {"-o", "--truth", "--patches", "--micrographs", "--tile", "--residual", "--denoised",
                 "--pixel-size"},
    "show": {"-o", "--count", "--split", "--noise"},
    "export-bin": set(),
}

# A minimal command line of each subcommand that builds a config.
MINIMAL = {
    "simulate": (["simulate", "out", "--count", "1"], SimulateConfig, cli_simulate.simulate_config),
    "plan": (["plan"], PrepareConfig, cli_prepare.prepare_config),
    "prepare": (["prepare", "in.mrc", "-o", "d.h5"], PrepareConfig, cli_prepare.prepare_config),
    "train": (["train", "d.h5", "-o", "run"], TrainConfig, cli_train.train_config),
    "denoise": (["denoise", "run", "in.mrc", "-o", "out"], DenoiseConfig,
                cli_denoise.denoise_config),
    "rank": (["rank", "run", "-i", "in.mrc"], DenoiseConfig, cli_denoise.denoise_config),
}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    return build_parser()._subparsers._group_actions[0].choices


def _flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings}


def test_every_subcommand_module_is_registered():
    assert list(_subparsers()) == list(DOCUMENTED_FLAGS)
    assert {m.__name__.rsplit(".", 1)[1].replace("_", "-") for m in SUBCOMMANDS} == set(DOCUMENTED_FLAGS)


@pytest.mark.parametrize("name", list(DOCUMENTED_FLAGS))
def test_documented_flags_are_kept(name):
    assert DOCUMENTED_FLAGS[name] <= set(_flags(_subparsers()[name]))


@pytest.mark.parametrize("name", list(MINIMAL))
def test_no_flag_gives_the_config_defaults(name):
    argv, cls, build = MINIMAL[name]
    assert build(build_parser().parse_args(argv)) == cls()


def _field_default(cls, path: str):
    """The field's default; ``None`` where the field declares it (derived when unset, as the
    stride from the patch)."""
    value = cls()
    for part in path.split("."):
        owner, value = value, getattr(value, part)
    declared = next(f for f in dataclasses.fields(owner) if f.name == part).default
    return None if declared is None else value


@pytest.mark.parametrize("module, cls", [(cli_simulate, SimulateConfig), (cli_prepare, PrepareConfig),
                                         (cli_train, TrainConfig), (cli_denoise, DenoiseConfig)])
def test_each_flag_defaults_to_its_config_field(module, cls):
    subparsers = _subparsers()
    users = [n for n, (_, c, _) in MINIMAL.items() if c is cls]
    for path, (flag, *_) in module.FLAGS.items():
        default = _field_default(cls, path)
        for name in users:
            action = _flags(subparsers[name])[flag]
            assert action.dest == path
            assert action.default == default, (name, flag)


def _default_keywords(source: str) -> list[ast.keyword]:
    return [node for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.keyword) and node.arg == "default"]


def test_no_cli_module_states_a_default():
    """Defaults come from the config dataclasses or the library's signatures, never a literal."""
    modules = sorted(Path(cli_common.__file__).parent.glob("*.py"))
    assert len(modules) >= 11
    for path in modules:
        for keyword in _default_keywords(path.read_text()):
            assert not isinstance(keyword.value, ast.Constant | ast.Tuple | ast.List), (
                f"{path.name}:{keyword.value.lineno} states a default")
    # the check finds a literal default where there is one
    found = _default_keywords('p.add_argument("--batch-size", type=int, default=8)')
    assert [k.value.value for k in found] == [8]


@pytest.mark.parametrize("argv, flag, value, function", [
    (["denoise", "run", "a.mrc", "-o", "out"], "--workers", 7, "cryostream.denoise:denoise"),
    (["rank", "run", "-i", "a.mrc"], "--draws", 7, "cryostream.denoise:rank_runs"),
    (["rank", "run", "-i", "a.mrc"], "--beta", 0.25, "cryostream.denoise:rank_runs"),
    (["rank", "run", "-i", "a.mrc"], "--seed", 7, "cryostream.denoise:rank_runs"),
    (["evaluate", "run", "d.h5", "-o", "rep"], "--patches", 7, "cryostream.evaluate:evaluate"),
    (["evaluate", "run", "d.h5", "-o", "rep"], "--micrographs", 7, "cryostream.evaluate:evaluate"),
    (["evaluate", "run", "d.h5", "-o", "rep"], "--tile", 96, "cryostream.evaluate:evaluate"),
    (["show", "d.h5", "-o", "s.png"], "--count", 7, "cryostream.inspect:show"),
    (["show", "d.h5", "-o", "s.png"], "--split", "test", "cryostream.inspect:show"),
    (["prepare", "a.mrc", "-o", "d.h5"], "--dashboard", ":8788", "cryostream.prepare:prepare"),
])
def test_library_defaults_are_shown_and_left_to_the_library(argv, flag, value, function, capsys):
    """A flag for a library keyword shows the function's default (in words where the library
    decides it: None) and passes only what is given."""
    action = _flags(_subparsers()[argv[0]])[flag]
    module, name = function.split(":")
    signature = inspect.signature(getattr(importlib.import_module(module), name))
    with pytest.raises(SystemExit):
        main([argv[0], "--help"])
    default = signature.parameters[action.dest].default
    shown = " ".join(capsys.readouterr().out.split())
    if default is None and flag == "--workers":
        assert "micrographs in flight (default: half the CPU cores on a GPU, 2 to 8; 2 on a CPU" \
            in shown and "(None)" not in shown.split("--workers N", 2)[-1].split("--scheduler")[0]
    elif default is None:
        assert "(None)" not in shown and "(default: chosen for the micrograph" in shown
    else:
        assert f"({default})" in shown
    assert cli_common.given(build_parser().parse_args(argv), action.dest) == {}
    given = cli_common.given(build_parser().parse_args([*argv, flag, str(value)]), action.dest)
    assert given == {action.dest: value}


def test_denoise_flags_make_the_denoise_config():
    args = build_parser().parse_args(["denoise", "run", "a.mrc", "-o", "out", "--n2n-correction",
                                      "--ctf-gain", "--voltage", "200"])
    assert cli_denoise.denoise_config(args) == DenoiseConfig(n2n_correction=True, ctf_gain=True,
                                                             voltage_kv=200.0)
    every = ["--tile", "256", "--halo", "24", "--batch-size", "3", "--n2n-correction",
             "--n2n-clamp", "--wiener-gain", "--ensemble", "--ctf-gain", "--voltage", "120",
             "--cs", "0.01", "--amplitude-contrast", "0.07", "--calibrate", "2"]
    expected = DenoiseConfig(tile=256, halo=24, batch_size=3, n2n_correction=True, n2n_clamp=True,
                             wiener_gain=True, ensemble=True, ctf_gain=True, voltage_kv=120.0,
                             cs_mm=0.01, amplitude_contrast=0.07, calibrate=2)
    for argv in (["denoise", "run", "a.mrc", "-o", "out"], ["rank", "r1", "r2", "-i", "a.mrc"]):
        assert cli_denoise.denoise_config(build_parser().parse_args([*argv, *every])) == expected


def test_prepare_train_and_simulate_flags_make_their_configs():
    parse = build_parser().parse_args
    args = parse(["prepare", "a.mrc", "-o", "d.h5", "--patch", "128", "--stride", "96", "--edge",
                  "drop", "--percentile", "99", "--noise", "matched", "--alpha", "0.5", "--shot",
                  "0.25", "--noise-radius", "4", "--dtype", "float16", "--compression", "lz4",
                  "--test-fraction", "0.2", "--seed", "7"])
    assert cli_prepare.prepare_config(args) == PrepareConfig(
        patch_size=128, stride=96, edge="drop", percentile=99.0, dtype="float16",
        compression="lz4", test_fraction=0.2, seed=7,
        noise=NoiseConfig(model="matched", alpha=0.5, shot=0.25, radius=4))
    args = parse(["prepare", "a.mrc", "-o", "d.h5", "--patch", "256"])  # the stride follows
    assert cli_prepare.prepare_config(args).stride == 128
    args = parse(["plan", "--noise", "gaussian", "--sigma", "0.2", "--noise-mode", "on-device"])
    assert cli_prepare.prepare_config(args).noise == NoiseConfig(model="gaussian", sigma=0.2,
                                                                 mode="on-device")
    args = parse(["plan", "--noise", "poisson", "--dose", "3"])
    assert cli_prepare.prepare_config(args).noise == NoiseConfig(model="poisson", dose=3.0)
    args = parse(["train", "d.h5", "-o", "run", "--model", "unet-small", "--precision", "fp32",
                  "--residual", "--recorrupt", "--steps", "5", "--batch-size", "2", "--lr", "0.01",
                  "--loss", "l1", "--eval-every", "3", "--checkpoint-every", "4", "--keep", "1",
                  "--seed", "9", "--augment", "--fresh-noise", "--beta2", "0.99"])
    assert cli_train.train_config(args) == TrainConfig(
        model="unet-small", precision="fp32", residual=True, recorrupt=True, steps=5, batch_size=2,
        learning_rate=0.01, beta2=0.99, loss="l1", eval_every=3, checkpoint_every=4,
        keep_checkpoints=1, seed=9, augment=True, fresh_noise=True)
    assert cli_train.train_config(parse(["train", "d.h5", "-o", "run", "--loss", "bands"])).loss == "bands"
    args = parse(["simulate", "out", "--count", "2", "--shape", "64", "80", "--seed", "2",
                  "--detector-nps", "0.1", "--dose", "12.5"])
    assert cli_simulate.simulate_config(args) == SimulateConfig(
        shape=(64, 80), seed=2, detector_nps_nyquist=0.1, dose_e_per_angstrom2=12.5)


def test_train_offers_every_model_preset():
    assert _flags(_subparsers()["train"])["--model"].choices == MODEL_PRESETS


BAD_VALUES = [
    (["denoise", "RUN", "a.mrc", "-o", "OUT", "--n2n-clamp"],
     "n2n_clamp (--n2n-clamp) refines the Noisier2Noise correction; pass n2n_correction too "
     "(--n2n-correction)"),
    (["denoise", "RUN", "a.mrc", "-o", "OUT", "--calibrate", "-1"],
     "--calibrate -1: must be an integer ≥ 0 (recorrupted passes; 0 for none)"),
    (["rank", "RUN", "-i", "a.mrc", "--amplitude-contrast", "1.5"],
     "--amplitude-contrast 1.5: must be in [0, 1)"),
    (["train", "STORE", "-o", "OUT", "--steps", "0"], "--steps 0: must be ≥ 1"),
    (["simulate", "OUT", "--count", "1", "--shape", "10", "10"],
     "--shape 10 10: must be (rows, columns), each ≥ 64 px"),
]


@pytest.mark.parametrize("argv, message", [pytest.param(*BAD_VALUES[0], marks=pytest.mark.slow),
                                           BAD_VALUES[1]])
def test_a_bad_value_is_one_line_and_status_2(tmp_path, argv, message):
    """The real command: status 2, one line on stderr, no traceback, nothing written."""
    argv = [str(tmp_path / a) if a.isupper() else a for a in argv]
    result = _run(*argv)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"cryostream {argv[0]}: error: {message}"]
    assert list(tmp_path.iterdir()) == []  # rejected before anything is read or written


@pytest.mark.parametrize("argv, message", BAD_VALUES)
def test_every_config_error_is_one_line(tmp_path, argv, message, capsys):
    argv = [str(tmp_path / a) if a.isupper() else a for a in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"cryostream {argv[0]}: error: {message}"]
    assert captured.out == "" and list(tmp_path.iterdir()) == []


def test_a_bad_option_is_one_line(capsys):
    """An option argparse rejects (an invalid choice, a missing argument) is one line naming it
    and where help is, not the usage block."""
    from cryostream.cli import main

    for argv in (["denoise", "m.mrc", "-o", "out", "--dtype", "float64"], ["denoise"],
                 ["frobnicate"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("cryostream") and "--help" in err[0], err


# --- Ctrl-C: acknowledged at once, then what is kept and how to go on -------------------------

def _denoise_like(seconds: float, interrupts: int, signum=None, gap: float = 0.2):
    """A command that works like ``denoise``: a job in a thread pool, which tells a first
    Ctrl-C's note that it is one micrograph in progress, its time unknown (as denoise's pool
    does), Ctrl-C pressed ``interrupts`` times (a real SIGINT to this process), ``gap`` seconds
    apart, while the job runs."""
    import concurrent.futures
    import math
    import os
    import signal
    import threading
    import time

    def command(args):
        started = threading.Event()

        def job():
            started.set()
            time.sleep(0.2)
            name, pid = signal.Signals(signum or signal.SIGINT).name[3:], os.getpid()
            if gap < 0.1:  # from another process, ms apart, as timeout sends one signal twice
                # (to the process, then to its group); not from this thread, which holds the GIL
                subprocess.run(["sh", "-c", f"kill -s {name} {pid}; sleep {gap}; "
                                f"kill -s {name} {pid}"], check=True)
            for i in range(interrupts if gap >= 0.1 else 0):
                time.sleep(gap * bool(i))
                os.kill(pid, signum or signal.SIGINT)
            time.sleep(seconds)
            print("the micrograph in progress is finished", file=sys.stderr, flush=True)

        from cryostream.interrupts import told_in_progress

        with concurrent.futures.ThreadPoolExecutor(1) as pool, \
                told_in_progress(lambda: (1, math.nan)):
            future = pool.submit(job)
            started.wait()
            future.result()
        print("not reached", file=sys.stderr)

    return command


def test_ctrl_c_in_denoise_is_acknowledged_at_once_and_says_how_to_resume(capsys, tmp_path):
    import signal

    before = signal.getsignal(signal.SIGINT)
    import re

    out = tmp_path / "den4"
    out.mkdir()  # (the finished micrographs' folder)
    args = argparse.Namespace(command="denoise", output=str(out), func=_denoise_like(0.3, 1))
    assert cli_common.run_command(args) == 130
    err = re.sub(r"after \d+ s", "after N s", capsys.readouterr().err)
    assert err.splitlines() == [
        "cryostream denoise: stopping after the micrograph in progress (it is written whole or "
        "not at all); Ctrl-C again to stop at once",
        "the micrograph in progress is finished",  # after the first line, not before it
        f"cryostream denoise: interrupted after N s; the finished micrographs are kept in {out}: "
        "run the same command again to denoise the rest (it skips the finished ones) and write "
        "denoised_micrographs.star"]
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("signum, status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_one_signal_delivered_twice_at_once_is_one(signum, status):
    """``timeout -s INT`` sends its signal to the process and again to its process group,
    milliseconds apart: one Ctrl-C (the micrograph in progress is finished), not the second
    that stops at once. In a child process: a second would end it."""
    script = ("import argparse, signal, sys\nfrom cryostream.cli.common import run_command\n"
              "from tests.test_cli import _denoise_like\n"
              "sys.exit(run_command(argparse.Namespace(command='denoise', output='den', "
              f"func=_denoise_like(0.5, 2, signal.{signum}, gap=0.01))))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, cwd=Path(__file__).parents[1])
    err = result.stderr.splitlines()
    assert result.returncode == status, result.stderr
    assert err[1] == "the micrograph in progress is finished" and len(err) == 3, err


def test_sigterm_in_denoise_says_it_stops_now_and_what_is_kept(capsys, tmp_path):
    """A batch system's time limit (SIGTERM): denoise said it would finish the micrographs in
    progress (minutes on a CPU, past the SIGKILL that follows 30 s later). Now it says at once
    that it stops now, those in progress dropped, and its last line what is kept and how to go
    on; status 143, SIGTERM's handler put back. (The real command:
    tests/test_signals.py::test_sigterm_stops_denoise_at_once_keeping_the_finished_micrographs.)"""
    import os
    import re
    import signal
    import time

    def terminated(args):
        from cryostream.interrupts import told_in_progress

        with told_in_progress(lambda: (1, float("nan"))):  # (one in progress, as denoise tells)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)  # (the handler raises here)

    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "den5"  # (an output folder there: some micrographs may be finished)
    out.mkdir()
    args = argparse.Namespace(command="denoise", output=str(out), func=terminated)
    assert cli_common.run_command(args) == 143
    err = re.sub(r"after \d+ s", "after N s", capsys.readouterr().err)
    assert err.splitlines() == [
        "cryostream denoise: terminated (SIGTERM): stopping now: the micrographs in progress are "
        "dropped, not written (an output being written is finished first)",
        "cryostream denoise: terminated (SIGTERM) after N s; the finished micrographs are kept "
        f"in {out}; those in progress are not written: run the same command again to denoise "
        "the rest (it skips the finished ones) and write denoised_micrographs.star"]
    assert signal.getsignal(signal.SIGTERM) is before


def test_ctrl_c_in_denoise_on_a_cluster_says_what_the_workers_held_is_lost(capsys):
    """On a LocalCluster (--cluster-workers) the command closes the workers on Ctrl-C (a
    terminal's, kept from them): no promise to finish the micrographs in progress; the last
    line says they are not written and how to go on. (A scheduler's workers finish theirs:
    tests/test_denoise.py.)"""
    import re
    import signal

    before = signal.getsignal(signal.SIGINT)

    def interrupted(args):
        raise KeyboardInterrupt

    for flags in ({"cluster_workers": 2, "scheduler": None},):
        args = argparse.Namespace(command="denoise", output="den5", func=interrupted, **flags)
        assert cli_common.run_command(args) == 130
        err = re.sub(r"after \d+ s", "after N s", capsys.readouterr().err)
        assert "stopping after the micrographs in progress" not in err
        assert err.splitlines() == [
            "cryostream denoise: interrupted after N s; the finished micrographs are kept in "
            "den5; those the cluster's workers were denoising are not written (but one that "
            "finished as the cluster closed): run the same command again to denoise the rest "
            "(it skips the finished ones) and write denoised_micrographs.star"]
    assert signal.getsignal(signal.SIGINT) is before


def test_a_second_ctrl_c_in_denoise_stops_at_once():
    """The real signal twice in a child process: it ends at once with status 130, without
    waiting for the micrograph in progress (30 s)."""
    import time

    script = ("import argparse, sys\nfrom cryostream.cli.common import run_command\n"
              "from tests.test_cli import _denoise_like\n"
              "sys.exit(run_command(argparse.Namespace(command='denoise', output='den', "
              "func=_denoise_like(30, 2))))")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, cwd=Path(__file__).parents[1])
    assert result.returncode == 130 and time.perf_counter() - start < 20
    assert result.stderr.splitlines() == [
        "cryostream denoise: stopping after the micrograph in progress (it is written whole or "
        "not at all); Ctrl-C again to stop at once",
        "cryostream denoise: stopped at once (Ctrl-C again); what was in progress is not written "
        "(run the same command again to resume)"]


def test_sigterm_after_ctrl_c_ends_denoise_at_once_and_says_it_was_sigterm(tiny_run, tmp_path):
    """Ctrl-C, then SIGTERM while `cryostream denoise` finishes its micrograph in progress: the
    SIGTERM is the second signal, which ends the process at once, its line naming it ('SIGTERM
    after Ctrl-C'), with Ctrl-C's status 130; nothing is half-written. (SIGTERM first stops at
    once by itself: tests/test_signals.py.)"""
    import signal
    import time

    import cryostream
    from tests.faults_support import signalled_cli

    seen: list[float] = []

    def second_under_way(err: str) -> bool:  # (the first's note comes as its job ends)
        if not seen and "cryostream: denoised 1/3 " in err:
            seen.append(time.monotonic())
        return bool(seen) and time.monotonic() - seen[0] > 0.5

    sim = cryostream.simulate(tmp_path / "sim", 3, shape=(1024, 1024), seed=5)
    out = tmp_path / "out"  # one at a time; the second, of 1024² px, takes seconds on a CPU:
    status, err = signalled_cli(  # in progress as the signals come
        "denoise", *sim.micrographs, "-o", out, "-m", tiny_run.run, "--no-ensemble", "--workers",
        "1", cwd=tmp_path,
        signals=[(signal.SIGINT, second_under_way),
                 (signal.SIGTERM, lambda err: "Ctrl-C again to stop at once" in err)])
    lines = err.splitlines()
    assert status == 130 and "Traceback" not in err, err
    import re

    assert re.fullmatch(r"cryostream denoise: stopping after the micrograph in progress "
                        r"\((?:about \d+ s; |under 1 s; )?it is written whole or not at all\); "
                        r"Ctrl-C again to stop at once", lines[-2]), err
    assert lines[-1] == (
        "cryostream denoise: terminated at once (SIGTERM after Ctrl-C); 1 output of this call is "
        "written whole, and nothing half-written is left; the micrographs still in progress are "
        "not written (run the same command again to resume)"), err
    first = Path(sim.micrographs[0]).stem  # the one finished: the second was not written
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        f"{first}.json", f"{first}.mrc"]


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_a_local_cluster_keeps_distributeds_info_lines_off_the_screen(tiny_run, tmp_path):
    """`denoise --cluster-workers 2` with a run folder's model, and the same from a script
    that set up logging as the quickstart does: 30–140 `INFO:distributed...` lines (workers
    started, retired, closed) came around the notes, through a root logging handler (the
    script's, or absl's once orbax read the checkpoint, in the command and on each worker).
    Now none; the notes are there and the outputs written."""
    import cryostream
    from tests.faults_support import child_environment

    sim = cryostream.simulate(tmp_path / "sim", 2, shape=(128, 160), seed=4)
    command = [sys.executable, "-m", "cryostream", "denoise", *map(str, sim.micrographs), "-o",
               str(tmp_path / "cli"), "-m", str(tiny_run.run), "--no-ensemble",
               "--cluster-workers", "2"]
    script = ("import logging, sys\nimport cryostream\n"
              "logging.basicConfig(format='%(message)s')\n"
              "logging.getLogger('cryostream').setLevel(logging.INFO)\n"
              "cryostream.denoise(sys.argv[1], sys.argv[2:4], sys.argv[4], config=cryostream."
              "DenoiseConfig(ensemble=False), cluster_workers=2)\n")
    python = [sys.executable, "-c", script, str(tiny_run.run), *map(str, sim.micrographs),
              str(tmp_path / "script")]
    for argv, out in ((command, "cli"), (python, "script")):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                              env=child_environment())
        assert done.returncode == 0, done.stderr
        assert not [line for line in done.stderr.splitlines() if "distributed" in line], \
            done.stderr
        assert "denoising 2 micrographs with" in done.stderr
        assert sorted(p.name for p in (tmp_path / out).glob("*.mrc")) == [
            m.name for m in sim.micrographs]


def test_sigterm_to_denoise_on_a_local_cluster_leaves_no_worker_running(tiny_run, tmp_path):
    """A batch system's kill (SIGTERM to the command's process alone, not to its group, as
    `kill PID` sends it) while `cryostream denoise --cluster-workers 2` denoises: the worker
    processes of the LocalCluster the command started get no signal of their own, yet none is
    left running after it ends (they are the command's to close), and nothing is written after.
    Status 143, no traceback, the last line says what is kept and how to go on; each output
    written is whole, with its record, and no partial file is left."""
    import io
    import json
    import re
    import signal
    import threading
    import time

    import mrcfile
    import psutil

    import cryostream
    from tests.faults_support import leftovers, signalled_cli, snapshot

    sim = cryostream.simulate(tmp_path / "sim", 3, shape=(1024, 1024), seed=5)
    out = tmp_path / "out"
    seen: dict[int, psutil.Process] = {}  # every process below the command's, as it runs

    def watch(proc) -> None:
        def sample():
            while proc.poll() is None:
                try:
                    for p in psutil.Process(proc.pid).children(recursive=True):
                        seen.setdefault(p.pid, p)
                except psutil.Error:
                    return
                time.sleep(0.05)

        threading.Thread(target=sample, daemon=True).start()

    def alive() -> list[psutil.Process]:
        def running(p):
            try:
                return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                return False
        return [p for p in seen.values() if running(p)]

    at_the_signal: list[int] = []

    def first_done(err: str) -> bool:  # (the workers, seen before the signal)
        ready = "cryostream: denoised 1/3 " in err
        if ready:
            at_the_signal.extend(p.pid for p in alive())
        return ready

    status, err = signalled_cli(
        "denoise", *sim.micrographs, "-o", out, "-m", tiny_run.run, "--no-ensemble",
        "--cluster-workers", "2", cwd=tmp_path, timeout=90, started=watch,
        signals=[(signal.SIGTERM, first_done)])
    written = snapshot(out)
    deadline = time.monotonic() + 5  # closing the cluster is the command's: a few seconds
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = {p.pid: p.name() for p in alive()}
    for p in alive():  # (not left behind by the test either)
        p.kill()
    assert len(at_the_signal) >= 2, f"no worker processes seen under way: {seen}"
    assert not left, f"still running after the command ended: {left}"
    assert snapshot(out) == written  # nothing written after the command ended
    assert status == 143 and "Traceback" not in err, err
    assert re.sub(r"after \d+ s", "after N s", err.splitlines()[-1]) == (
        "cryostream denoise: terminated (SIGTERM) after N s; the finished micrographs are kept "
        f"in {out}; those the cluster's workers were denoising are not written (but one that "
        "finished as the cluster closed): run the same command again to denoise the rest (it "
        "skips the finished ones) and write denoised_micrographs.star"), err
    images = sorted(out.glob("*.mrc"))
    assert images and not leftovers(out), sorted(p.name for p in out.iterdir())
    for image in images:  # each whole, with its record
        assert mrcfile.validate(str(image), print_file=io.StringIO()), image
        with mrcfile.open(image, permissive=False) as mrc:
            assert mrc.data.shape == (1024, 1024) and np.isfinite(mrc.data).all(), image
        assert json.loads(image.with_suffix(".json").read_text()), image


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_ctrl_c_in_denoise_on_a_scheduler_waits_for_the_micrographs_under_way(tiny_run,
                                                                             tmp_path):
    """A real Ctrl-C to `cryostream denoise --scheduler ADDRESS` (a LocalCluster of worker
    processes not the command's): as without a cluster, those under way finish and none
    starts; the last line says they are written, and after the command ends nothing more is.
    The client had closed at once while the worker went on: the second micrograph's output
    came after the command ended, whose last line said it was not written."""
    import re
    import signal
    import time

    from distributed import LocalCluster

    import cryostream
    from tests.faults_support import signalled_cli

    sim = cryostream.simulate(tmp_path / "sim", 3, shape=(1024, 1024), seed=5)
    out, out2 = tmp_path / "out", tmp_path / "out2"

    def written(out=out) -> list[str]:
        return sorted(p.name for p in out.iterdir()) if out.exists() else []

    first = (signal.SIGINT, lambda err: "cryostream: denoised 1/3 " in err)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster:  # one at a time: the second is under way
        status, err = signalled_cli(
            "denoise", *sim.micrographs, "-o", out, "-m", tiny_run.run, "--no-ensemble",
            "--scheduler", cluster.scheduler_address, cwd=tmp_path, signals=[first])
        at_the_end = written()
        time.sleep(4)
        later = written()
        # a second Ctrl-C ends it at once; its line says the worker still writes its micrograph
        status2, err2 = signalled_cli(
            "denoise", *sim.micrographs, "-o", out2, "-m", tiny_run.run, "--no-ensemble",
            "--scheduler", cluster.scheduler_address, cwd=tmp_path, signals=[
                first, (signal.SIGINT, lambda err: "Ctrl-C again to stop at once" in err)])
        deadline = time.monotonic() + 120
        while len(written(out2)) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)
        after_at_once = written(out2)
    assert status2 == 130 and err2.splitlines()[-1] == (
        "cryostream denoise: stopped at once (Ctrl-C again); the micrographs under way on the "
        "cluster's workers are written all the same, each whole, as they finish there (run the "
        "same command again to resume)"), err2
    assert after_at_once == at_the_end  # the second, whole, as that line said
    lines = re.sub(r"after \d+ s", "after N s", err).splitlines()
    assert status == 130 and "Traceback" not in err, err
    stems = [Path(m).stem for m in sim.micrographs]
    assert at_the_end == sorted(f"{s}.{e}" for s in stems[:2] for e in ("json", "mrc")), err
    assert later == at_the_end  # nothing written after the command ended
    assert "cryostream denoise: stopping after the micrographs under way on the cluster's " \
           "workers (each is written whole or not at all); Ctrl-C again to stop at once" in lines
    assert any(re.fullmatch(r"cryostream: stopping: waiting for [12] micrographs? under way on "
                            r"the cluster to finish", line) for line in lines), err
    assert lines[-1] == (
        "cryostream denoise: interrupted after N s; the finished micrographs are kept in "
        f"{out}, those under way on the cluster's workers too: run the same command again to "
        "denoise the rest (it skips the finished ones) and write denoised_micrographs.star")


@pytest.mark.parametrize("command, then", [
    # fit: what it kept, read from its folders (here none), and what the same command does
    ("fit", "; no checkpoint or shard of the store was written: run the same command again to "
            "start"),
    # train: what it kept (its note of it is on stderr, none with --quiet) and how to go on
    ("train", "; no checkpoint was written: run the same command again to start"),
    ("plan", ""),
    # evaluate: its report is written whole at the end (it had said only how long it ran)
    ("evaluate", "; nothing half-written is kept in RUN: the report is written whole at its "
                 "end, or not at all; run the same command again to make it"),
    # simulate: its folder holds part of the set (it had said only how long it ran)
    ("simulate", "; SIM holds the micrographs made so far and no simulate.json: the set is not "
                 "finished (prepare, fit, denoise and evaluate --truth refuse it); run the same command "
                 "again to make it whole"),
])
def test_ctrl_c_says_how_each_command_goes_on(command, then, capsys, tmp_path):
    import signal

    def interrupted(args):
        # no early note: Python's own handler stops these commands (fit saves a checkpoint)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        raise KeyboardInterrupt

    assert cli_common.run_command(argparse.Namespace(command=command, func=interrupted,
                                                     output=str(tmp_path / "run"),
                                                     out="SIM")) == 130
    assert capsys.readouterr().err.splitlines() == [
        f"cryostream {command}: interrupted after 0 s{then.replace('RUN', str(tmp_path / 'run'))}"]


@pytest.mark.parametrize("command", [["denoise", "-m", "genral", "MIC", "-o", "OUT"],
                                     ["rank", "general", "genral", "-i", "MIC"],
                                     ["evaluate", "genral", "-o", "OUT"]])
def test_a_mistyped_model_is_named_as_given_with_the_shipped_names(command, tmp_path, capsys):
    mic = write_mrc(tmp_path / "a.mrc", np.ones((64, 64), np.float32))
    argv = [str(mic) if a == "MIC" else str(tmp_path / "out") if a == "OUT" else a
            for a in command]
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"cryostream {command[0]}: error: genral: does not exist (did you mean 'general'?); pass "
        "a run folder that cryostream train or fit wrote, an exported .npz, or the name of a "
        "shipped model: general"]
    assert not (tmp_path / "out").exists()


def test_help_speaks_to_the_user(capsys):
    """Every positional argument says what it takes (train's store is cli/train.py's to
    describe), no help text tells the project's history, and denoise's summary says it needs
    no training."""
    parser = build_parser()
    for name, sub in _subparsers().items():
        assert "reference plan" not in " ".join(sub.format_help().split()), name
        if name != "train":
            assert [a.dest for a in sub._actions if not a.option_strings and not a.help] == [], \
                name
    (summary,) = [a.help for a in parser._subparsers._group_actions[0]._choices_actions
                  if a.dest == "denoise"]
    assert summary == "denoise whole micrographs with the shipped general model or your own run"
    assert "reference plan" not in " ".join(parser.format_help().split())


def test_errors_on_the_command_line_leave_out_the_python_forms(tmp_path, capsys):
    """A micrograph whose header has no pixel size: one line naming the file and the option to
    pass, without the Python keyword that means nothing on the command line."""
    from conftest import write_mrc

    image = np.ones((96, 80), np.float32) + np.eye(96, 80, dtype=np.float32)
    a = write_mrc(tmp_path / "a.mrc", image, pixel_size=0.0)
    assert main(["denoise", str(a), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "a.mrc" in err and "--pixel-size" in err
    assert "Python:" not in err and not (tmp_path / "out").exists()


def test_keyword_forms_become_flags_on_the_command_line(tmp_path, capsys):
    """An output that exists: the line says --overwrite, not overwrite=True (--overwrite)."""
    from cryostream.cli.common import for_the_command_line

    assert for_the_command_line("budget='0' (--budget): must be") == "--budget '0': must be"
    assert for_the_command_line("stride=512 is larger (--stride)") == "stride=512 is larger (--stride)"
    assert for_the_command_line("binned_pass=False (--no-binned-pass): keep it") \
        == "--no-binned-pass: keep it"
    # a Python form holding a call goes whole, alone or after the flags it stands for
    assert for_the_command_line(
        "use a smaller --patch (e.g. --patch 128; Python: PrepareConfig(patch_size=128, "
        "stride=64)), or this", {"patch_size": "--patch"}) == \
        "use a smaller --patch (e.g. --patch 128), or this"
    assert for_the_command_line(
        "give it (--model unet --residual; Python: TrainConfig(model='unet', residual=True)) "
        "(Python: fit(train=TrainConfig()))") == "give it (--model unet --residual)"
    (tmp_path / "x.h5").write_bytes(b"")
    image = np.ones((96, 96), np.float32) + np.eye(96, dtype=np.float32)
    a = write_mrc(tmp_path / "a.mrc", image)
    assert main(["prepare", str(a), "-o", str(tmp_path / "x.h5"), "--patch", "64"]) == 2
    err = capsys.readouterr().err
    assert "pass --overwrite or" in err and "overwrite=True" not in err


def test_errors_naming_a_python_keyword_name_the_option_on_the_command_line(tmp_path, capsys):
    """``count=0: must be ...`` from the library reads ``--count 0: must be ...`` on the
    command line (the option of the command's own parser with that name); a name the command
    has no option for, a True or False, and a path holding ``=`` are left alone."""
    from cryostream.cli.common import for_the_command_line

    options = {"count": "--count", "batch_size": "--batch-size", "split": "--split",
               "beta2": "--beta2", "output": "--output"}
    assert for_the_command_line("count=0: must be an integer", options) == \
        "--count 0: must be an integer"
    assert for_the_command_line("batch_size=64 is not divisible by 3", options) == \
        "--batch-size 64 is not divisible by 3"
    assert for_the_command_line("split='tests': must be", options) == "--split 'tests': must be"
    assert for_the_command_line("output='/data/my run': a file", options) == \
        "--output '/data/my run': a file"  # quoted as the shell needs it
    assert for_the_command_line("beta2=1.5: must be in (0, 1)", options) == \
        "--beta2 1.5: must be in (0, 1)"
    assert for_the_command_line("count=10 (--count 10)", options) == "count=10 (--count 10)"
    assert for_the_command_line("seed=-1: must be", options) == "seed=-1: must be"
    assert for_the_command_line("count=True: no", options) == "count=True: no"
    assert for_the_command_line("/data/a=count=3.mrc: bad", options) == "/data/a=count=3.mrc: bad"
    assert main(["plan", "--shape", "512", "512", "--count", "0"]) == 2
    assert capsys.readouterr().err.strip() == \
        "cryostream plan: error: --count 0: must be an integer ≥ 1"
    assert main(["simulate", str(tmp_path / "sim"), "--count", "0"]) == 2
    assert "error: --count 0: must be" in capsys.readouterr().err
    # an option of two values: the tuple the library names becomes the values as typed
    assert main(["simulate", str(tmp_path / "sim"), "--count", "1", "--defocus", "2", "1"]) == 2
    assert capsys.readouterr().err.strip() == ("cryostream simulate: error: --defocus 2.0 1.0: "
                                               "must be (low, high) with 0 < low ≤ high, finite")
    assert for_the_command_line("shape=(10, 10): must be", {"shape": "--shape"}) == \
        "--shape 10 10: must be"
    assert main(["simulate", str(tmp_path / "sim"), "--count", "1", "--defocus", "1", "inf"]) == 2
    assert "error: --defocus 1.0 inf: must be" in capsys.readouterr().err
    for text in ("give shape=(rows, columns)", "shape=(): x", "seed=(see above)"):  # no values
        assert for_the_command_line(text, {"shape": "--shape", "seed": "--seed"}) == text


def test_simulate_takes_the_pixel_size_and_defocus_range(tmp_path, capsys):
    """A scientist's own pixel size and defocus range, from the command line: the headers and
    the simulation's record carry them, and micrographs.star's defocus is in range."""
    import json

    import mrcfile
    import starfile

    assert main(["simulate", str(tmp_path / "sim"), "--count", "2", "--shape", "256", "256",
                 "--pixel-size", "1.06", "--defocus", "1.0", "1.5", "--quiet"]) == 0
    for path in sorted((tmp_path / "sim" / "micrographs").glob("*.mrc")):
        with mrcfile.open(path) as mrc:
            assert np.isclose(float(mrc.voxel_size.x), 1.06)
    config = json.loads((tmp_path / "sim" / "simulate.json").read_text())["config"]
    assert config["pixel_size_angstrom"] == 1.06 and config["defocus_um"] == [1.0, 1.5]
    table = starfile.read(tmp_path / "sim" / "micrographs.star", always_dict=True)
    rows = next(b for b in table.values() if "rlnDefocusU" in getattr(b, "columns", ()))
    mean = (rows["rlnDefocusU"] + rows["rlnDefocusV"]) / 2
    assert ((mean >= 9000) & (mean <= 15000)).all(), mean.tolist()


def test_an_unknown_option_is_named_by_its_command_with_the_closest_one(capsys):
    """``--apix`` (another program's name), a typo: one line from the subcommand, with its own
    help and the option meant; nothing close: no guess."""
    for args, said in (
            (["denoise", "a.mrc", "-o", "out", "--apix", "0.66"],
             "cryostream denoise: error: unrecognized arguments: --apix 0.66; did you mean "
             "--pixel-size? (see cryostream denoise --help)"),
            (["denoise", "a.mrc", "-o", "out", "--ensembel"],
             "cryostream denoise: error: unrecognized arguments: --ensembel; did you mean "
             "--ensemble? (see cryostream denoise --help)"),
            (["prepare", "a.mrc", "-o", "x.h5", "--zzz", "3"],
             "cryostream prepare: error: unrecognized arguments: --zzz 3 (see cryostream "
             "prepare --help)")):
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 2
        assert capsys.readouterr().err.splitlines() == [said]


def test_rank_without_inputs_says_to_give_them_with_i(tmp_path, capsys):
    """``rank`` takes its runs as positional arguments and the micrographs with -i; micrographs
    given as ``denoise`` takes them are named as not runs, nothing scored."""
    mic = write_mrc(tmp_path / "a.mrc", np.ones((64, 64), np.float32))
    assert main(["rank", "general", str(mic)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "cryostream rank: error: no micrographs to score on: give them with -i (cryostream rank "
        f"RUN [RUN ...] -i MICROGRAPHS); {mic} is not a run"]


def test_the_ctf_fallback_advice_names_the_options_in_both_spellings():
    """A Python caller is told DenoiseConfig's names for the optics; the command line only
    the flags."""
    from cryostream.cli.common import for_the_command_line
    from cryostream.denoise.steps import FIT_ADVICE, GIVEN_ADVICE

    for advice in (FIT_ADVICE, GIVEN_ADVICE):
        assert "voltage_kv, cs_mm, amplitude_contrast" in advice
        shown = for_the_command_line(advice)
        assert shown.endswith("--voltage, --cs, --amplitude-contrast") or shown.endswith(
            "--voltage, --cs and --amplitude-contrast")
        assert "Python" not in shown


@pytest.mark.parametrize("argv, said", [
    (["-o", "OUT", "--out", "OTHER"], "unrecognized arguments: --out OTHER; did you mean "
                                      "--output?"),
    (["-o", "OUT", "-o", "OTHER"], "-o/--output given twice (OUT, OTHER): give it once"),
    (["-o", "OUT", "--output=OTHER"], "-o/--output given twice (OUT, OTHER): give it once"),
])
def test_an_option_is_given_once_and_whole(argv, said, tmp_path, capsys, monkeypatch):
    """A second output option sent every output elsewhere with status 0: ``--out`` was taken
    for ``--output`` and the last of two won. Now neither is guessed; nothing is written."""
    monkeypatch.chdir(tmp_path)
    write_mrc(tmp_path / "a.mrc", np.ones((64, 64), np.float32))
    with pytest.raises(SystemExit) as stop:
        main(["denoise", "a.mrc", *argv])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"cryostream denoise: error: {said} (see cryostream denoise --help)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mrc"]


@pytest.mark.parametrize("argv, said", [
    (["fit", "a.mrc", "-o", "out", "--budget", "-5m"],
     "cryostream fit: error: budget (--budget): -5.0 minutes; give a time > 0, e.g. '30m'"),
    (["fit", "a.mrc", "-o", "out", "--budget", "-100steps"],
     "cryostream fit: error: budget (--budget): -100 steps; give a whole number ≥ 1, e.g. "
     "'2000steps'"),
    (["denoise", "a.mrc", "-o", "out", "--tile", "-512"],
     "cryostream denoise: error: --tile -512: must be a positive integer (pixels); leave it "
     "out for the default"),
])
def test_a_negative_value_is_refused_for_what_it_is(argv, said, tmp_path, capsys, monkeypatch):
    """``--budget -5m`` was taken for an option and refused as a missing value ("expected one
    argument"); the value's own check now says what is wrong with it. Nothing is written."""
    monkeypatch.chdir(tmp_path)
    write_mrc(tmp_path / "a.mrc", np.ones((64, 64), np.float32))
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse's errors exit; the values' checks return
        status = stop.code
    assert status == 2
    assert capsys.readouterr().err.splitlines() == [said]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mrc"]


_DASH_HINT = ("was taken for an option: give a file or folder whose name begins with '-' as "
              "./{}")


@pytest.mark.parametrize("argv, said", [
    (["denoise", "-a.mrc", "-o", "out"], "the following arguments are required: inputs; -a.mrc "
     + _DASH_HINT.format("-a.mrc")),
    (["denoise", "-5.mrc", "-a.mrc", "-o", "out"], "unrecognized arguments: -a.mrc; -a.mrc "
     + _DASH_HINT.format("-a.mrc")),
    (["denoise", "a.mrc", "-o", "out", "-b.STAR"], "unrecognized arguments: -b.STAR; -b.STAR "
     + _DASH_HINT.format("-b.STAR")),
    (["denoise", "-a.mrcs", "-o", "out"], "the following arguments are required: inputs; "
     "-a.mrcs " + _DASH_HINT.format("-a.mrcs")),
    (["denoise", "-j.cs", "-o", "out"], "the following arguments are required: inputs; -j.cs "
     + _DASH_HINT.format("-j.cs")),
    # an option mistyped keeps its own hint; a name like an option's is no file, but a file's is
    (["denoise", "a.mrc", "-o", "out", "--apix", "1"],
     "unrecognized arguments: --apix 1; did you mean --pixel-size?"),
    (["denoise", "a.mrc", "-o", "out", "--outptu"],
     "unrecognized arguments: --outptu; did you mean --output?"),
    (["denoise", "a.mrc", "-o", "out", "--output.star"], "unrecognized arguments: "
     "--output.star; --output.star " + _DASH_HINT.format("--output.star")),
    (["denoise", "-o", "out"], "the following arguments are required: inputs"),
])
def test_an_input_named_with_a_leading_minus_is_refused_saying_how_to_give_it(
        argv, said, tmp_path, capsys, monkeypatch):
    """``denoise -a.mrc -o out`` said only that the inputs were missing, and ``denoise -5.mrc
    -a.mrc -o out`` that -a.mrc was not known, though the hint (./-a.mrc) was given only after
    an option (``--residual -a.mrc``). A word of a minus sign and a name of a file cryostream
    reads now gets it whatever argparse said; other unknown options keep their "did you mean"
    and get no such hint. Nothing is written."""
    monkeypatch.chdir(tmp_path)
    for name in ("a.mrc", "-a.mrc", "-5.mrc"):
        write_mrc(tmp_path / name, np.ones((64, 64), np.float32))
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"cryostream denoise: error: {said} (see cryostream denoise --help)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["-5.mrc", "-a.mrc", "a.mrc"]
    # the name the hint gives is taken as the file
    assert build_parser().parse_args(["denoise", "./-a.mrc", "-o", "out"]).inputs == ["./-a.mrc"]


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_a_tile_off_the_models_multiple_names_the_option_and_a_tile_that_works(tmp_path,
                                                                                capsys):
    mic = write_mrc(tmp_path / "a.mrc", np.ones((256, 256), np.float32)
                    + np.eye(256, dtype=np.float32))
    assert main(["denoise", str(mic), "-o", str(tmp_path / "out"), "--tile", "70"]) == 2
    err = capsys.readouterr().err.splitlines()
    # one line, before the notes of a run under way
    assert err == ["cryostream denoise: error: --tile 70: must be a multiple of 32 for this "
                   "model; give one, e.g. 256 (or leave it out: the default is chosen for the "
                   "micrograph and the device)"]
    assert main(["denoise", str(mic), "-o", str(tmp_path / "out"), "--halo", "40"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "cryostream denoise: error: --halo 40: must be a multiple of 32 for this model; give "
        "one, e.g. 224 (or leave it out: the default is chosen for the micrograph and the "
        "device)"]
    assert not (tmp_path / "out").exists()
    # the values suggested work (64, a multiple, had been suggested: smaller than the halo)
    noisy = write_mrc(tmp_path / "b.mrc", np.random.default_rng(0).normal(
        10, 1, (256, 256)).astype(np.float32))
    assert main(["denoise", str(noisy), "-o", str(tmp_path / "out"), "--tile", "256", "--halo",
                 "224", "--no-ensemble", "--quiet"]) == 0


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_train_resumed_says_what_it_trained_and_a_finished_run_says_nothing_was(tiny_run,
                                                                                 tmp_path, capsys):
    """``train --resume`` of a finished run had said 'trained ... for 4 steps: loss nan' when
    nothing was trained; now it says so, and a longer run resumed says from which step."""
    run = tmp_path / "run"
    argv = ["train", str(tiny_run.store), "-o", str(run), "--model", "unet-small", "--precision",
            "fp32", "--batch-size", "4", "--quiet"]
    assert main([*argv, "--steps", "4"]) == 0
    capsys.readouterr()
    assert main([*argv, "--steps", "4", "--resume"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"nothing to train: {run} is already at step 4 of 4; give more --steps to train it on")
    assert main([*argv, "--steps", "6", "--resume"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(
        f"trained unet-small from step 4 to 6 into {run}: loss ")


def test_show_given_a_micrograph_says_what_it_draws_and_how_to_look_at_one(tmp_path, capsys):
    """A newcomer gave `show` a denoised MRC: one line says show draws a store's patches and
    where to look at a micrograph instead; nothing is written."""
    mic = write_mrc(tmp_path / "sim_0000.mrc", np.ones((64, 64), np.float32))
    assert main(["show", str(mic), "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cryostream show: error: {mic}: show draws a "
                                               "store's patches (a .h5 from cryostream prepare)")
    assert "3dmod" in err[0] and "quick start" in err[0] and not (tmp_path / "x.png").exists()


def test_plan_says_when_a_split_is_empty_or_too_small(capsys):
    """One full-size micrograph leaves no test split; one small micrograph at the default
    patch leaves one patch to train on: the plan says what each means and what to change."""
    assert main(["plan", "--shape", "7676", "7420", "--count", "1"]) == 0
    out = capsys.readouterr().out
    assert "  no test split: training reports no test PSNR" in out and "to train on" not in out
    assert main(["plan", "--shape", "1024", "1024", "--count", "1"]) == 0
    out = capsys.readouterr().out
    assert "  only 1 patch to train on: a network learns so few by heart" in out
    assert main(["plan", "--shape", "7676", "7420", "--count", "196"]) == 0
    out = capsys.readouterr().out
    assert "no test split" not in out and "to train on" not in out


def test_denoise_of_a_glob_the_shell_expanded_leaves_out_the_half_sums_beside_full_sums(
        tiny_run, tmp_path, capsys):
    """``cryostream denoise Data/*.mrc -o OUT`` unquoted, over a motion correction folder: the
    shell names NAME.mrc, NAME_EVN.mrc and NAME_ODD.mrc, and all three were denoised (three
    outputs per micrograph, status 0). The halves beside their full sums are left out now, with
    the note (and the --odd hint) the folder and the quoted glob give; a half named without its
    full sum is denoised as given, and a pair of them is said to lack full sums."""
    import shutil

    data = tmp_path / "Data"
    data.mkdir()
    stems = [Path(m).stem for m in tiny_run.sim.micrographs[:2]]
    for m in tiny_run.sim.micrographs[:2]:
        for suffix in ("", "_EVN", "_ODD"):
            shutil.copy(m, data / f"{Path(m).stem}{suffix}.mrc")
    fast = ["--raw", "--tile", "64", "--workers", "1"]
    named = [str(p) for p in sorted(data.glob("*.mrc"))]  # as the shell gives Data/*.mrc
    assert len(named) == 6
    capsys.readouterr()
    assert main(["denoise", str(tiny_run.run), *named, "-o", str(tmp_path / "out"), *fast]) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*.mrc")) == [f"{s}.mrc" for s in stems]
    err = " ".join(capsys.readouterr().err.split())
    assert (f"{data}: left out 4 even/odd half-sums beside their full sums ({stems[0]}_EVN.mrc, "
            f"{stems[0]}_ODD.mrc, {stems[1]}_EVN.mrc, …): the full sums are the micrographs; to "
            f"denoise the halves in pairs, give '{data}/*_EVN.mrc' --odd '{data}/*_ODD.mrc'") in err
    # a half alone, or both halves without their full sum: taken as given
    lone = str(data / f"{stems[0]}_EVN.mrc")
    assert main(["denoise", str(tiny_run.run), lone, "-o", str(tmp_path / "lone"), *fast]) == 0
    assert [p.name for p in (tmp_path / "lone").glob("*.mrc")] == [f"{stems[0]}_EVN.mrc"]
    assert "left out" not in capsys.readouterr().err
    pair = [lone, str(data / f"{stems[0]}_ODD.mrc")]
    assert main(["denoise", str(tiny_run.run), *pair, "-o", str(tmp_path / "pair"), *fast]) == 0
    assert len(list((tmp_path / "pair").glob("*.mrc"))) == 2
    assert "look like even/odd half-sums without their full sums" in " ".join(
        capsys.readouterr().err.split())


def test_permissive_s_help_says_what_happens_without_it(tiny_run, tmp_path, capsys):
    """Without --permissive, an unreadable file (empty, a broken link) stops denoise before any
    micrograph is denoised, naming both, while NaN pixels found while denoising leave the good
    micrograph denoised and end with status 2 and no STAR file; the help says both (it had said
    the good ones are still denoised, whatever was bad)."""
    import warnings

    import mrcfile

    good = Path(tiny_run.sim.micrographs[0])
    empty = tmp_path / "empty.mrc"
    empty.write_bytes(b"")
    broken = tmp_path / "broken.mrc"
    broken.symlink_to(tmp_path / "nowhere.mrc")
    image = mrcfile.read(good).astype(np.float32)
    image[5, 5] = np.nan
    with warnings.catch_warnings():  # mrcfile warns of the NaN it is given
        warnings.simplefilter("ignore", RuntimeWarning)
        nan = write_mrc(tmp_path / "nan.mrc", image, pixel_size=0.6575)
    fast = ["--raw", "--tile", "64", "--workers", "1"]
    capsys.readouterr()
    assert main(["denoise", str(tiny_run.run), str(good), str(empty), str(broken),
                 "-o", str(tmp_path / "stopped"), *fast]) == 2
    err = capsys.readouterr().err
    assert "empty.mrc" in err and "broken.mrc" in err and "--permissive" in err
    assert not (tmp_path / "stopped").exists()
    assert main(["denoise", str(tiny_run.run), str(good), str(nan), "-o", str(tmp_path / "went"),
                 *fast]) == 2
    assert (tmp_path / "went" / good.name).is_file()
    assert not (tmp_path / "went" / "denoised_micrographs.star").exists()
    said = " ".join(_flags(_subparsers()["denoise"])["--permissive"].help.split())
    assert ("without it, a file that cannot be read (missing, empty or not MRC, a broken link; "
            "with --odd, halves that do not match) stops the command before any micrograph is "
            "denoised, with an error naming every such file, while pixels found bad while "
            "denoising (NaN or Inf, constant, too small) leave the good micrographs denoised and "
            "end the command with an error naming the bad ones (status 2, no STAR file)") in said


def test_quiet_means_the_same_for_every_command(tmp_path, capsys):
    """`--quiet` had three meanings: 'no progress notes, only warnings and errors' for most
    commands, 'no progress bar(s)' for simulate, prepare and train (which silenced their notes
    all the same), while train's notes and prepare's dashboard link went to stdout whatever it
    said. Now every command says one thing and does it: stderr has only warnings and errors,
    stdout keeps the result (here, prepare on a LocalCluster: its summary line alone)."""
    parser = build_parser()
    for name, command in parser.commands.items():
        (quiet,) = [a for a in command._actions if "--quiet" in a.option_strings]
        assert quiet.help == cli_common.QUIET_HELP, name
    rng = np.random.default_rng(0)
    mics = [write_mrc(tmp_path / f"m{i}.mrc", rng.poisson(20, (128, 128)).astype(np.float32))
            for i in range(2)]
    assert main(["prepare", *map(str, mics), "-o", str(tmp_path / "s.h5"), "--patch", "64",
                 "--workers", "1", "--quiet"]) == 0
    said = capsys.readouterr()
    assert said.err == "", said.err
    assert len(said.out.splitlines()) == 1 and said.out.startswith("prepared 2 micrographs")
