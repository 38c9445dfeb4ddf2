"""How many micrographs ``denoise`` keeps in flight when ``workers`` is not given."""

from __future__ import annotations

import logging

import pytest

import cryostream
from cryostream.denoise.workers import BYTES_PER_PIXEL, MAX_IN_FLIGHT, default_workers

FULL = 7676 * 7420  # an EMPIAR-10025 micrograph
PLENTY = 10**12


@pytest.mark.parametrize(("cores", "backend", "expected"), [
    (16, "gpu", 8), (64, "gpu", MAX_IN_FLIGHT), (6, "gpu", 3), (2, "gpu", 2), (1, "gpu", 2),
    (16, "cpu", 2), (2, "cpu", 2)])
def test_half_the_cores_on_a_gpu_and_two_on_a_cpu(cores, backend, expected):
    assert default_workers(FULL, backend, available_bytes=PLENTY, cores=cores) == expected


def test_no_more_than_half_the_available_memory_holds(caplog):
    each = FULL * BYTES_PER_PIXEL  # 6.3 GB
    with caplog.at_level(logging.INFO, logger="cryostream"):
        assert default_workers(FULL, "gpu", available_bytes=int(6.5 * each), cores=16) == 3
    assert "3 micrographs in flight, not 8" in caplog.text and "--workers" in caplog.text
    assert default_workers(FULL, "cpu", available_bytes=int(2.5 * each), cores=2) == 1
    assert default_workers(FULL, "gpu", available_bytes=0, cores=16) == 1  # never none
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cryostream"):
        assert default_workers(4096 * 4096, "gpu", available_bytes=int(20 * each), cores=16) == 8
    assert "in flight, not" not in caplog.text  # the cores set it: no note


def test_denoise_says_how_many_are_in_flight_and_a_given_number_is_kept(tiny_run, tmp_path, notes):
    paths = tiny_run.sim.micrographs
    cryostream.denoise(tiny_run.run, paths, tmp_path / "auto",
                       config=cryostream.DenoiseConfig.raw())
    said = next(n for n in notes if n.startswith("denoising 3 micrographs"))
    assert ", 2 in flight;" in said  # JAX on the CPU here: two
    notes.clear()
    cryostream.denoise(tiny_run.run, paths, tmp_path / "one", config=cryostream.DenoiseConfig.raw(),
                       workers=1)
    assert ", 1 in flight;" in next(n for n in notes if n.startswith("denoising 3 micrographs"))
