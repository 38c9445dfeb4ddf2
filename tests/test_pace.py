"""The time left that denoise's pass notes say while a micrograph's network passes run."""

from __future__ import annotations

import math

import pytest

from cryostream.denoise.pace import PassNotes, time_left

#: Recorded: ``cryostream denoise`` of three simulated 1024² micrographs with the general
#: model's default recipe (8 passes, then 8 binned by 2) on a CPU of two cores that other
#: work kept busy (load average 5.2), two micrographs in flight: when sim_0000.mrc's first pass
#: began and each of its 16 passes ended, in seconds from the command's start.
FIRST = 7.8
ENDS = (40.0, 73.9, 116.2, 154.1, 181.6, 202.1, 238.4, 282.3,
        301.9, 321.8, 341.1, 360.3, 378.2, 396.5, 416.4, 434.4)
WHOLE, BINNED = 1024 * 1024, 512 * 512


@pytest.fixture
def windows(monkeypatch):
    """The windows' estimate of the general model's passes of a 1024² micrograph and of it
    binned by 2, in seconds on two idle cores (a machine with memory enough for them)."""
    from cryostream.denoise.memory import ENV
    from cryostream.denoise.network import model_path
    from cryostream.denoise.tiling import clear_layouts, cpu_pass_seconds

    monkeypatch.setenv(ENV, "100")
    clear_layouts()
    shipped = model_path("general")
    yield {WHOLE: cpu_pass_seconds(shipped, (1024, 1024)),
           BINNED: cpu_pass_seconds(shipped, (512, 512))}
    clear_layouts()


def _said(done: int, estimate: dict) -> float:
    """The time left after the recorded pass ``done`` (1 to 15), as the notes count it."""
    seconds = [b - a for a, b in zip((FIRST, *ENDS), ENDS, strict=False)]  # (FIRST: one more)
    kinds = [WHOLE] * 8 + [BINNED] * 8
    spent, count = {}, {}
    for kind, s in zip(kinds[:done], seconds[:done], strict=True):
        spent[kind], count[kind] = spent.get(kind, 0.0) + s, count.get(kind, 0) + 1
    todo = {k: kinds.count(k) - count.get(k, 0) for k in (WHOLE, BINNED)}
    return time_left(spent, count, todo, estimate)


def test_the_binned_passes_are_counted_at_their_own_cost_not_their_pixels(windows):
    """A 1024² micrograph's binned passes took about half a whole pass's time (19 s against 34
    s), not the quarter their pixels give: the note after the eighth pass said 'about 69
    seconds left' and the micrograph took 152 s more; the notes undershot all along ('5.2
    minutes left' at 137 s, done at 545 s, on a busier machine). Now the passes not yet run of
    a kind count at the windows' estimate (a binned pass of 1024² has a 1024² window, where a
    whole one has 1536²), and once one has run, at what that kind took."""
    actual = [ENDS[-1] - end for end in ENDS[:-1]]
    pixels = {WHOLE: WHOLE, BINNED: BINNED}  # the old count
    assert 0.43 < windows[BINNED] / windows[WHOLE] < 0.46
    assert _said(8, pixels) == pytest.approx(68.5, abs=0.5)  # what the note said
    assert _said(8, windows) == pytest.approx(121.8, abs=0.5)  # 152 s were left
    assert _said(10, windows) == pytest.approx(6 * (19.6 + 19.9) / 2, abs=0.5)  # 112 s
    for done in range(1, 16):  # within 25% of the time that was left, after every pass
        assert abs(_said(done, windows) / actual[done - 1] - 1) < 0.25, done
    worst = min(_said(done, pixels) / actual[done - 1] for done in range(1, 16))
    assert worst < 0.5  # the old count: under half the time left, at its worst


def test_the_time_left_of_kinds_run_and_not_yet_run():
    """Each kind's passes left at that kind's mean so far; a kind not run yet at its estimate
    times the pace of those run; nothing run: no time said."""
    assert time_left({1: 30.0}, {1: 3}, {1: 2, 2: 4}, {1: 5.0, 2: 2.0}) == pytest.approx(
        2 * 10 + 4 * 2 * (30 / 15))
    assert time_left({1: 30.0, 2: 9.0}, {1: 3, 2: 1}, {1: 0, 2: 3}, {1: 5.0, 2: 2.0}) == 27
    assert math.isnan(time_left({}, {}, {1: 8}, {1: 1.0}))


def test_the_ensembles_turned_passes_are_of_the_whole_kind(tiny_run):
    """The ensemble turns a micrograph by 90°: a 160 × 128 one's passes come as 128 × 160 too,
    and are whole passes still; the binned ones (80 × 64) are the other kind, and both are
    foreseen from the first pass (8 of each, for each half of a pair), estimated from the
    run's windows."""
    from cryostream.config import DenoiseConfig

    notes = PassNotes(halves=2)
    notes.begin_half("m_EVN.mrc", DenoiseConfig(ensemble=True, tile=64, binned_pass=True),
                     offsets=1, run=str(tiny_run.run))
    for shape in [(160, 128), (128, 160)] * 4 + [(80, 64), (64, 80)] * 2:
        notes.passing()
        notes.passed(shape, 3600.0)  # no note: the counts alone
    assert notes.total == {160 * 128: 16, 80 * 64: 16}
    assert notes.done_kind == {160 * 128: 8, 80 * 64: 4}
    # the windows' estimate of the run's passes: a binned one more than its quarter of pixels
    assert notes.estimate[80 * 64] / notes.estimate[160 * 128] > 0.3
    assert notes.left(notes.began) >= 0


def test_the_time_to_finish_counts_the_steps_through_the_micrographs_finished():
    """On a GPU the passes take a second and the steps after them most of a micrograph's time:
    a first Ctrl-C's estimate counts them through the seconds a finished micrograph took; with
    none finished, a micrograph whose passes are all done (its steps left) has no estimate,
    not "about 0 s"."""
    import threading
    import time

    from cryostream.config import DenoiseConfig
    from cryostream.denoise.pace import finishing_seconds, forget_notes

    me = threading.get_ident()
    try:
        notes = PassNotes()
        notes.begin_half("a.mrc", DenoiseConfig(ensemble=False))
        notes.start = time.perf_counter() - 5.0  # made 5 s ago
        assert math.isnan(finishing_seconds([me]))  # no pass done, none finished
        assert finishing_seconds([me], typical=20.0) == pytest.approx(15.0, abs=0.5)
        assert finishing_seconds([me], typical=3.0) == 1.0  # slower than the others: at least 1 s
        notes.passing()
        notes.passed((64, 64), every_s=1e9)  # its one pass done: only its steps are left
        assert notes.left(time.perf_counter()) == 0
        assert math.isnan(finishing_seconds([me]))
        assert finishing_seconds([me], typical=20.0) == pytest.approx(15.0, abs=0.5)
    finally:
        forget_notes()
