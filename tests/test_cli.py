"""The command line: --version, --help everywhere, one clear line for user mistakes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from cryostream import __version__
from cryostream.cli import build_parser, main
from tests.conftest import write_mrc


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cryostream.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_version():
    result = _run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"cryostream {__version__}"


def test_every_subcommand_has_help(capsys):
    subcommands = build_parser()._subparsers._group_actions[0].choices
    assert {"simulate", "plan"} <= set(subcommands)
    for name in subcommands:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0
        assert "usage: cryostream " + name in capsys.readouterr().out


def test_user_mistake_is_one_line_without_traceback(tmp_path):
    result = _run("plan", str(tmp_path / "missing.mrc"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"cryostream plan: error: {tmp_path / 'missing.mrc'}: no such file; "
                     "check the path or the glob"]
    bad = _run("plan", "--shape", "7676", "7420", "--count", "3", "--stride", "0")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == "cryostream plan: error: stride=0: must be a finite number > 0"


def test_simulate_then_plan(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "sim"), "--count", "2", "--shape", "256", "300",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("simulated 2 micrographs of 256 × 300 px") and "peak memory" in out
    assert main(["plan", str(tmp_path / "sim" / "micrographs"), "--patch", "128",
                 "--stride", "64", "--edge", "drop"]) == 0
    out = capsys.readouterr().out
    assert "*drop" in out and "split by micrograph: 1 train" in out


def test_plan_of_the_full_data_set(capsys):
    assert main(["plan", "--shape", "7676", "7420", "--count", "196"]) == 0
    out = capsys.readouterr().out
    assert "13 × 13" in out and "14 × 14" in out and "38416" not in out


def test_plan_needs_inputs_or_shape(tmp_path, capsys):
    assert main(["plan"]) == 2
    assert "give INPUTS, or --shape H W and --count N" in capsys.readouterr().err
    path = write_mrc(tmp_path / "a.mrc", np.zeros((8, 8), np.float32))
    assert main(["plan", str(path), "--shape", "8", "8"]) == 2
