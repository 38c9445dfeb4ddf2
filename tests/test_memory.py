"""The network's calls fitted to the memory there is for them (cryostream.denoise.memory): fewer
windows per call, then smaller windows, and no more calls at once than fit; the output stays
the network's."""

from __future__ import annotations

import threading
import time

import mrcfile
import numpy as np
import pytest

import cryostream
from cryostream.config import DenoiseConfig
from cryostream.denoise import memory, tiling
from cryostream.denoise.memory import ENV, CallBudget, call_bytes, network_memory
from cryostream.denoise.tiling import default_halo, load_network, network_pass, window_layout


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    """Each test fits its layouts afresh and counts its own calls."""
    tiling.clear_layouts()
    monkeypatch.setattr(memory, "CALLS", CallBudget())
    yield
    tiling.clear_layouts()


@pytest.fixture(scope="module")
def run(tiny_run):
    return str(tiny_run.run)


@pytest.fixture(scope="module")
def image(tiny_run):
    """One of the tiny run's micrographs, normalised, tiled 2 × 4 (320 × 512)."""
    one = np.asarray(mrcfile.read(tiny_run.sim.micrographs[0]), np.float32)
    one /= np.percentile(one, 95)
    return np.ascontiguousarray(np.tile(one, (2, 4)))


def side_of(run, tile):
    return tile + 2 * default_halo(load_network(run).config)


def test_a_call_takes_what_xla_plans_for_it_about_in_proportion_to_its_pixels(run):
    one, four = call_bytes(run, "fp32", 1, side_of(run, 64)), call_bytes(run, "fp32", 4,
                                                                         side_of(run, 64))
    assert one > side_of(run, 64) ** 2 * 4 * 2  # more than its input and output
    assert 3.5 * one < four < 4.0 * one


def test_the_memory_for_the_network_is_a_quarter_of_the_machine_on_a_cpu(monkeypatch):
    import psutil

    monkeypatch.delenv(ENV, raising=False)
    limit, source = network_memory()
    assert 0 < limit <= psutil.virtual_memory().total * memory.HOST_SHARE and "quarter" in source
    monkeypatch.setenv(ENV, "2.5")
    assert network_memory() == (2_500_000_000, f"{ENV}=2.5")
    for bad in ("0", "-1", "lots", "nan"):
        monkeypatch.setenv(ENV, bad)
        with pytest.raises(cryostream.ConfigError, match=f"{ENV}={bad!r}: must be a number"):
            network_memory()


def test_less_memory_means_fewer_windows_per_call_and_the_same_output(run, image, monkeypatch,
                                                                      notes):
    side = side_of(run, 64)
    free = network_pass(run, image, tile=64, batch_size=8)
    assert window_layout(run, image.shape, 64, None, 8, "fp32").batch == 8
    two = call_bytes(run, "fp32", 2, side)
    monkeypatch.setenv(ENV, f"{two * 1.2 / 1e9}")  # two windows fit, three do not
    layout = window_layout(run, image.shape, 64, None, 8, "fp32")
    assert (layout.tile, layout.batch, layout.need) == (64, 2, two)
    assert any(f"windows of {side}² pixels, 2 per network call" in n
               and f"not 8 of {side}²" in n for n in notes)
    np.testing.assert_allclose(network_pass(run, image, tile=64, batch_size=8), free,
                               rtol=1e-5, atol=1e-5 * np.abs(free).max())


def test_a_window_too_large_for_the_memory_is_made_smaller_unless_its_tile_was_given(
        run, image, monkeypatch, notes):
    chosen = window_layout(run, image.shape, None, None, 1, "fp32")
    free = network_pass(run, image, batch_size=1)
    small = side_of(run, 64)
    monkeypatch.setenv(ENV, f"{call_bytes(run, 'fp32', 1, small) * 1.05 / 1e9}")
    layout = window_layout(run, image.shape, None, None, 1, "fp32")
    assert chosen.tile > 64 and layout.tile <= 64 and layout.batch == 1
    assert layout.need <= layout.limit
    fitted = next(n for n in notes if "to fit the" in n and f"{ENV}=" in n)
    work = (layout.tile + 2 * layout.halo) ** 2 / layout.tile**2 \
        / ((chosen.tile + 2 * chosen.halo) ** 2 / chosen.tile**2)  # what the note says it costs
    assert f"about {work:.2g} times the network's work of the larger ones" in fitted
    np.testing.assert_allclose(network_pass(run, image, batch_size=1), free, rtol=1e-5,
                               atol=1e-5 * np.abs(free).max())
    with pytest.raises(cryostream.ConfigError, match=r"tile=128 \(--tile\): one window of \d+² "
                       r"\(the tile and \d+ px of context on every side\) takes .* MB in the "
                       r"network and .* MB is there for it \(CRYOSTREAM_NETWORK_MEMORY_GB=.*\); "
                       r"if this machine \(or its GPU\) has more free memory, set the "
                       r"environment variable CRYOSTREAM_NETWORK_MEMORY_GB higher .*; or pass "
                       r"--tile \d+ or less") as refused:
        window_layout(run, image.shape, 128, None, 1, "fp32")
    named = int(str(refused.value).split("pass --tile ")[1].split()[0])
    assert named < 128 and window_layout(run, image.shape, named, None, 1, "fp32").tile == named
    monkeypatch.setenv(ENV, "0.001")  # 1 MB: no window of this model fits
    with pytest.raises(cryostream.ConfigError, match=r"^the memory there is for the network "
                       r"holds no window this model can take .*: 1 MB is there for it "
                       r"\(CRYOSTREAM_NETWORK_MEMORY_GB=0.001\); if this machine \(or its GPU\) "
                       r"has more free memory, set the environment variable "
                       r"CRYOSTREAM_NETWORK_MEMORY_GB higher"):
        window_layout(run, image.shape, None, None, 1, "fp32")


def test_calls_at_once_stay_within_the_memory_and_never_wait_on_each_other(run, image,
                                                                          monkeypatch):
    """Four threads denoise at once, each sending several calls with the next sent before the
    last comes back; there is room for one and a half calls: never more than one is under
    way, and all finish."""
    want = network_pass(run, image, tile=64, batch_size=2)
    need = call_bytes(run, "fp32", 2, side_of(run, 64))
    monkeypatch.setenv(ENV, f"{need * 1.5 / 1e9}")
    seen, running = [], True

    def watch():
        while running:
            seen.append(memory.CALLS.used)
            time.sleep(0.0005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    outs = [None] * 4

    def work(i):
        outs[i] = network_pass(run, image, tile=64, batch_size=2)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    running = False
    watcher.join()
    assert not any(t.is_alive() for t in threads)
    assert max(seen) == need and memory.CALLS.used == 0
    for out in outs:
        np.testing.assert_array_equal(out, want)


def test_a_call_that_fails_gives_its_memory_back(run, monkeypatch):
    """A window that cannot be cut (an error while the batch is made) with calls under way:
    the error comes through and the calls' bytes are free again."""
    network = load_network(run)
    halo = default_halo(network.config)
    out = np.zeros((128, 512), np.float32)
    cuts = []

    def cut(wy, wx, dst):
        cuts.append((wy, wx))
        if len(cuts) == 5:
            raise OSError("the micrograph's file went away")
        dst[...] = 0

    need = call_bytes(run, "fp32", 1, 64 + 2 * halo)
    with pytest.raises(OSError, match="went away"):
        tiling._through_network(network, [(cut, out)], 64, halo, 1, (need, 10 * need))
    assert memory.CALLS.used == 0


def test_ctrl_c_between_calls_gives_back_this_passs_memory_only(run, monkeypatch):
    """Ctrl-C as a result is taken to be placed (off the list of calls under way, its bytes
    not yet given back), with a second call under way: the pass gives back every byte it
    took, and what the thread held before the pass is still held."""
    network = load_network(run)
    halo = default_halo(network.config)
    need = call_bytes(run, "fp32", 1, 64 + 2 * halo)
    placed, place = [], tiling._place

    def interrupted(*args):
        placed.append(args[1])
        if len(placed) == 2:
            raise KeyboardInterrupt
        return place(*args)

    monkeypatch.setattr(tiling, "_place", interrupted)
    assert memory.CALLS.take(7, 10 * need)  # held before the pass (a pass within a pass)
    with pytest.raises(KeyboardInterrupt):
        tiling._through_network(network, [(lambda wy, wx, dst: dst.fill(0),
                                           np.zeros((128, 512), np.float32))], 64, halo, 1,
                                (need, 10 * need))
    assert len(placed) == 2 and memory.CALLS.holding() == memory.CALLS.used == 7
    memory.CALLS.give(7)
    assert memory.CALLS.used == 0


def test_the_budget_lets_one_call_through_whatever_its_size_and_waits_for_room():
    budget = CallBudget()
    assert budget.take(10, 5)  # alone, a call larger than the limit still runs
    assert not budget.take(1, 5, wait=False)
    got = []
    waiter = threading.Thread(target=lambda: got.append(budget.take(3, 5)), daemon=True)
    waiter.start()
    time.sleep(0.05)
    assert not got
    budget.give(10)
    waiter.join(timeout=5)
    assert got == [True] and budget.used == 3
    assert budget.take(0, 0, wait=False) and budget.used == 3  # nothing is always taken


def test_denoise_on_a_small_memory_gives_the_same_micrographs(tiny_run, tmp_path, monkeypatch,
                                                            notes):
    """``denoise`` as a user runs it, with the network's memory set small: the same outputs
    as with the machine's memory, and a note on the windows it chose."""
    config = DenoiseConfig.raw(batch_size=8)
    free = cryostream.denoise(tiny_run.run, tiny_run.sim.micrographs[:2], tmp_path / "a",
                              config=config)
    run = str(tiny_run.run)
    shape = free.shape[1:]
    chosen = window_layout(run, shape, None, None, 8, "fp32")
    monkeypatch.setenv(ENV, f"{call_bytes(run, 'fp32', 1, side_of(run, 64)) * 1.05 / 1e9}")
    small = cryostream.denoise(tiny_run.run, tiny_run.sim.micrographs[:2], tmp_path / "b",
                               config=config)
    assert window_layout(run, shape, None, None, 8, "fp32").tile < chosen.tile
    assert any("to fit the" in n for n in notes)
    np.testing.assert_allclose(small.values, free.values, rtol=1e-5,
                               atol=1e-5 * np.abs(free.values).max())


def test_xla_running_out_of_memory_is_said_as_what_to_change(run):
    """XLA's own RESOURCE_EXHAUSTED (a real allocation larger than any machine's address space)
    in a call becomes a DeviceMemoryError naming the windows, the setting and --workers, and
    the calls' bytes are free again; other errors pass."""
    import jax
    import jax.numpy as jnp

    from cryostream.denoise.network import Network
    from cryostream.errors import DeviceMemoryError

    with pytest.raises(jax.errors.JaxRuntimeError) as raised:
        jnp.zeros((1 << 46,), jnp.float32).block_until_ready()
    found = memory.out_of_memory(raised.value, 1472, 2, int(2.6e9), int(5e9))
    assert isinstance(found, DeviceMemoryError) and isinstance(found, cryostream.CryostreamError)
    assert str(found).startswith("the network ran out of memory on the CPU with windows of "
                                 "1472² pixels, 2 per call, 2.6 GB each (RESOURCE_EXHAUSTED")
    assert f"environment variable {ENV}, e.g. {ENV}=2.5 cryostream denoise" in str(found)
    assert "--workers 1 (Python: workers=1)" in str(found)
    assert memory.out_of_memory(RuntimeError("RESOURCE_EXHAUSTED"), 1472, 2, None, None) is None

    config = load_network(run).config  # a network whose every call asks for 256 TiB
    greedy = Network(apply=lambda params, x: jnp.zeros((1 << 46,) + x.shape[1:], jnp.float32),
                     params=None, config=config, record=None)
    halo = default_halo(config)
    out = np.zeros((64, 256), np.float32)
    with pytest.raises(DeviceMemoryError, match=rf"windows of {64 + 2 * halo}² pixels, 1 per "
                       r"call, .* each \(RESOURCE_EXHAUSTED"):
        tiling._through_network(greedy, [(lambda wy, wx, dst: dst.fill(0), out)], 64, halo, 1,
                                (1000, 10_000))
    assert memory.CALLS.used == 0


def test_a_large_call_is_not_passed_over_by_small_ones():
    """Calls that wait start in the order they came: one that needs the whole limit gets it
    while three threads keep taking and giving small calls."""
    budget = CallBudget()
    stop, got = threading.Event(), []

    def small():
        while not stop.is_set():
            budget.take(1, 10)
            time.sleep(0.001)
            budget.give(1)

    threads = [threading.Thread(target=small, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    large = threading.Thread(target=lambda: got.append(budget.take(10, 10)), daemon=True)
    large.start()
    large.join(timeout=5)
    assert got == [True]
    budget.give(10)
    stop.set()
    for t in threads:
        t.join(timeout=5)
    assert budget.used == 0


def test_an_error_that_stops_the_run_drops_the_micrographs_not_started():
    """denoise's pool: a DeviceMemoryError on the first micrograph (one in flight) stops the
    run; the others are not started (a bad micrograph's error does not stop the others)."""
    import concurrent.futures

    from cryostream.denoise import pool as pool_module
    from cryostream.errors import DeviceMemoryError

    started = []

    def job(item):
        started.append(item)
        if item == 0:
            raise DeviceMemoryError("out of memory")
        return item

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        with pytest.raises(DeviceMemoryError):
            pool_module.finish(pool, job, list(range(5)), 5)
    assert started == [0]

    def late(item):  # the error on the second while the first is still under way
        started.append(item)
        time.sleep(1.0 if item == 0 else 0.2)
        if item == 1:
            raise DeviceMemoryError("out of memory")
        return item

    started.clear()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        with pytest.raises(DeviceMemoryError):
            pool_module.finish(pool, late, list(range(6)), 6)
    assert {0, 1} <= set(started) and len(started) <= 3  # stopped as it came, not in order

    def odd(item):  # an error of one micrograph's own: the others are still denoised
        started.append(item)
        if item == 0:
            raise RuntimeError("one micrograph's trouble")
        return item

    started.clear()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        with pytest.raises(RuntimeError):
            pool_module.finish(pool, odd, list(range(5)), 5)
    assert started == [0, 1, 2, 3, 4]


def test_memory_too_small_is_refused_before_anything_is_read_or_written(tiny_run, tmp_path,
                                                                       monkeypatch, capsys):
    """denoise as a user runs it, with the network's memory too small for any window: one
    line naming the setting, exit 2, no output folder (the layouts are fitted up front)."""
    from cryostream.cli import main

    monkeypatch.setenv(ENV, "0.0001")
    out = tmp_path / "out"
    assert main(["denoise", str(tiny_run.run), str(tiny_run.sim.micrographs[0]), "-o",
                 str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds no window this model can take" in err and f"{ENV}=" in err
    assert not out.exists()


def test_the_program_planned_is_the_one_the_calls_run(run):
    """Planning a call compiles the network for its shape once: the calls of that shape then
    compile nothing more (a GPU's full-size compile takes seconds), a new shape does."""
    import jax

    from cryostream.denoise.network import to_device

    network = load_network(run)
    compiled = []

    def keep(event, seconds, **_):
        if event == "/jax/core/compile/backend_compile_duration":  # each XLA compile's
            compiled.append(seconds)

    jax.monitoring.register_event_duration_secs_listener(keep)
    try:
        assert call_bytes(run, "fp32", 3, 200) > 0
        assert len(compiled) == 1
        windows = np.zeros((3, 200, 200, 1), np.float32)
        jax.block_until_ready(network.apply(network.params, to_device(windows)))
        assert len(compiled) == 1
        jax.block_until_ready(network.apply(network.params, to_device(windows[:2])))
        assert len(compiled) == 2
    finally:
        jax.monitoring.unregister_event_duration_listener(keep)


def test_the_cpu_note_counts_the_windows_of_the_micrographs_at_hand(notes, monkeypatch):
    """On a CPU the ensemble's note gives the time from the windows of the micrographs' size
    at the measured 6.38 s per 1472² window (two cores): a full-size micrograph's pass is 64
    windows of 1472², its binned pass 16; a 512² micrograph's one window of 1024²."""
    from cryostream.denoise import api
    from cryostream.denoise.network import model_path
    from cryostream.denoise.tiling import cpu_pass_seconds
    from cryostream.denoise.workers import cpu_time_note

    monkeypatch.setenv(ENV, "100")  # the windows of a machine with memory enough for them
    shipped = model_path("general")
    assert cpu_pass_seconds(shipped, (7676, 7420)) == pytest.approx(64 * 6.38)
    assert cpu_pass_seconds(shipped, (3838, 3710)) == pytest.approx(16 * 6.38)
    assert cpu_pass_seconds(shipped, (512, 512)) == pytest.approx(6.38 * 1024**2 / 1472**2)
    config = api.config_for(shipped, None)  # the shipped model's default: its binned pass too
    cpu_time_note(shipped, config, [(7676, 7420)])
    cpu_time_note(shipped, config, [(512, 512)])
    cpu_time_note(shipped, config, [(512, 512)] * 9 + [(7676, 7420)])  # a set: its total too
    assert "8 times binned by 2" in notes[0] and "about 68 minutes for one of 7676 × 7420 on " \
        "2 CPU cores" in notes[0] and "for one pass (about 8.5 minutes)" in notes[0]
    assert "about 39 seconds for one of 512 × 512" in notes[1] and "(about 5 seconds)" in notes[1]
    assert " here" not in notes[1] and "for all" not in notes[1]  # one micrograph: no total
    assert "about 68 minutes for one of 7676 × 7420" in notes[2]  # the largest, and the total:
    assert "74 minutes for all here" in notes[2] and "9.2 minutes for all" in notes[2]


def test_a_bad_micrograph_is_said_when_it_fails_not_at_the_end():
    """denoise's pool: the first of five fails its checks at once while the others take a
    while: its warning comes before the others are done (it came only at the end)."""
    import concurrent.futures
    import logging

    from cryostream.denoise import pool as pool_module
    from cryostream.errors import InvalidMicrographError

    done, said = [], []

    def job(item):
        if item == 0:
            raise InvalidMicrographError("bad.mrc", "holds NaN or Inf pixels", "repair it")
        time.sleep(0.2)
        done.append(item)
        return item

    class When(logging.Handler):
        def emit(self, record):
            said.append((record.getMessage(), len(done)))

    logger, handler = logging.getLogger("cryostream"), When(logging.WARNING)
    logger.addHandler(handler)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            with pytest.raises(InvalidMicrographError, match="1 of 5 micrographs"):
                pool_module.finish(pool, job, list(range(5)), 5)
    finally:
        logger.removeHandler(handler)
    assert len(said) == 1 and said[0][0].startswith("bad.mrc: not denoised: holds NaN")
    assert said[0][1] < 4  # before the last of the others was done
