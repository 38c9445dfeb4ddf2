"""One micrograph through the whole denoiser: read it, check it, normalise it, run the
network (with a note while slow passes run) and the steps, write its output; even/odd pairs
checked before any work on either. :func:`cryostream.denoise.denoise` runs
:func:`denoise_item` over micrographs, with :class:`Progress` saying as each is done."""

from __future__ import annotations

import contextlib
import logging
import time
import types
import warnings
from pathlib import Path

import numpy as np

from cryostream.config import DenoiseConfig
from cryostream.denoise.defects import DefectWarning, find_defects, mend, mostly_blank, restore
from cryostream.denoise.outputs import OutputPlan, history_label, input_stamps, output_record, write_output
from cryostream.denoise.pace import PassNotes
from cryostream.denoise.pool import Abandoned, given_up
from cryostream.denoise.sources import gather_inputs
from cryostream.denoise.steps import Micrograph, no_rings
from cryostream.denoise.tiling import network_pass
from cryostream.denoise.verbose import NO_BETTER
from cryostream.denoise.weights import binned_offsets
from cryostream.errors import InvalidMicrographError
from cryostream.io.paths import name_depth, short_name

__all__ = ["NOTE_EVERY_S", "CountsWarning", "read_micrograph", "check_micrograph", "checked_micrograph",
           "normalised", "network_fn", "denoise_image", "denoise_micrograph", "describe_found",
           "Progress", "denoise_item"]


class CountsWarning(UserWarning):
    """A micrograph is not in electron counts (normalised to mean 0 by another program): the
    network, trained on counts, denoises it less well."""


def read_micrograph(source: str):
    """A micrograph's header and its pixels (native float32), with one read."""
    from cryostream.io.mrc import read_header, read_rows

    header = read_header(source)
    return header, read_rows(header, 0, header.shape[0])


def check_micrograph(image: np.ndarray, source: str, record, network_config,
                     config: DenoiseConfig) -> float:
    """The checks ``prepare`` makes (NaN or Inf pixels, a constant image, a percentile that
    cannot normalise), and a size the network can take; an
    :class:`~cryostream.errors.InvalidMicrographError` naming the file otherwise. Returns the
    run's percentile of the micrograph (exact, as ``prepare`` computes it), which normalises it."""
    from cryostream.denoise.tiling import default_halo
    from cryostream.preprocess import check_statistics, image_statistics

    statistics = image_statistics(image, record.percentile)
    check_statistics(types.SimpleNamespace(path=str(source)), statistics, record.percentile,
                     "give it as counts, positive as a detector's are (the network normalises "
                     "by this percentile, as in its training)")
    value, _, lo, _ = statistics
    step = max(1, int(np.sqrt(image.size / 4e6)))
    # far below zero: normalised by another program (mean 0), not counts; not a few cold
    # pixels (a detector's defects, mended before the network)
    if lo < -value and np.percentile(image[::step, ::step], 0.1) < -value:
        warnings.warn(f"{source}: holds pixels far below zero (as low as {lo:.4g}; its "
                      f"{record.percentile:g}th percentile {value:.4g}), so it is not in "
                      "electron counts (normalised by another program?); the network learned "
                      "counts and denoises it less well: give the micrographs as motion "
                      "correction wrote them", CountsWarning, stacklevel=3)
    smallest = max(64, config.halo or default_halo(network_config))
    if min(image.shape) < smallest:
        raise InvalidMicrographError(source, f"is {image.shape[0]} × {image.shape[1]} pixels; "
                                     f"this run's network needs at least {smallest} on each side",
                                     "exclude it, or skip it with --permissive (Python: permissive=True)")
    return statistics[0]


def checked_micrograph(image: np.ndarray, source: str, record, network_config,
                       config: DenoiseConfig) -> tuple[float | None, np.ndarray, object]:
    """:func:`check_micrograph`, then its detector defects found and mended
    (:mod:`~cryostream.denoise.defects`, with a :class:`DefectWarning`): ``(percentile, image,
    defects)``, the image mended (the percentile None: it is the mended image's) and the
    defects found, or the image as it is and None. A micrograph mostly blank is an
    :class:`~cryostream.errors.InvalidMicrographError`."""
    value = check_micrograph(image, source, record, network_config, config)
    defects = find_defects(image)
    blank = mostly_blank(image, defects)
    if blank:
        raise InvalidMicrographError(source, blank, "exclude it, or skip it with --permissive "
                                     "(Python: permissive=True)")
    mended = mend(image, defects) if defects else image
    _check_extremes(mended, value, source, record.percentile)
    if not defects:
        return value, image, None
    warnings.warn(f"{source}: {defects.describe()}", DefectWarning, stacklevel=3)
    return None, mended, defects


#: Pixels beyond this many times a micrograph's percentile once its defects are mended are not
#: counts (shot noise stays under ten times the 95th percentile) and overflow the spectra.
EXTREME = 1e4


def _check_extremes(image: np.ndarray, value: float, source: str, percentile: float) -> None:
    """An :class:`~cryostream.errors.InvalidMicrographError` where pixels left after the
    defects are mended (more than the darkest and brightest 0.1 %, too many to be hot or cold
    pixels) lie beyond :data:`EXTREME` times the percentile ``value``: the steps' spectra
    overflowed into NaN on them, a traceback."""
    worst = max(float(image.max()), -float(image.min()))
    if worst > EXTREME * value:
        raise InvalidMicrographError(
            source, f"holds pixels of {worst:.3g} in size, {worst / value:.3g} times its "
            f"{percentile:g}th percentile: too many to be hot or cold pixels (those are mended), "
            "and beyond any count", "repair it (was it scaled or written by another program?) "
            "or exclude it, or skip it with --permissive (Python: permissive=True)")


def normalised(image: np.ndarray, pixel_size_angstrom: float, record,
               source: str, percentile: float | None = None) -> tuple[Micrograph, float]:
    """The :class:`Micrograph` the steps see (the pixels divided by the run's percentile, as in
    training) and that percentile (``percentile``: already computed by
    :func:`check_micrograph`)."""
    if percentile is None:  # NaN for an image with NaN or Inf pixels, as NumPy's
        from cryostream.preprocess import image_statistics

        percentile = image_statistics(image, record.prepare.percentile)[0]
    return Micrograph(image / np.float32(percentile), pixel_size_angstrom, record,
                      source=str(source)), percentile


#: Seconds between notes while one micrograph is still being denoised (minutes on a CPU).
NOTE_EVERY_S = 30.0


def network_fn(run: str, config: DenoiseConfig, source: str | None = None, offsets: int = 1,
               notes: PassNotes | None = None):
    """The network pass the steps call (once, 8 times for the ensemble, more to calibrate, as
    many again on the image binned by 2 for the binned pass, at each of its ``offsets``);
    with ``source``, a note at most every :data:`NOTE_EVERY_S` seconds while they run, with
    the time left for the micrograph at the pace so far (``notes``: a pair's, shared by its
    halves, whose time left counts both; :class:`~cryostream.denoise.pace.PassNotes`). None
    starts for a micrograph its call gave up (:func:`~cryostream.denoise.pool.given_up`)."""
    if source is not None:
        notes = notes or PassNotes()
        notes.begin_half(source, config, offsets, run)

    def network(image):
        if given_up():  # (nothing of it is written: its thread ends soon, not passes later)
            raise Abandoned("given up before its network passes were done")
        if source is not None:
            notes.passing()
        out = network_pass(run, image, tile=config.tile, halo=config.halo,
                           batch_size=config.batch_size, precision=config.precision)
        if source is not None:
            notes.passed(image.shape, NOTE_EVERY_S)
        return out

    return network


def denoise_image(image: np.ndarray, pixel_size_angstrom: float, source: str, run: str,
                  config: DenoiseConfig, *, permissive: bool = False, pipeline=None,
                  checked: tuple | None = None, notes: PassNotes | None = None):
    """One 2-D micrograph in memory through the whole pipeline: checks, detector defects,
    percentile, network, steps. Returns ``(estimate, found)``: the denoised image in the
    micrograph's units and what the steps found on it (``found["defects"]``: what was
    mended); ``(None, {"skipped": problem})`` when ``permissive`` skips a micrograph that
    fails the checks (:func:`checked_micrograph`, with a
    :class:`~cryostream.MicrographSkippedWarning`).
    ``pipeline`` replaces ``config.pipeline()`` (e.g. one taking a known defocus,
    :meth:`~cryostream.denoise.sources.InputMicrograph.pipeline`). ``checked``: what
    :func:`checked_micrograph` already returned for this image (not made again). ``notes``:
    the pass notes of a pair's halves, one for both (:func:`network_fn`)."""
    from cryostream.denoise.network import load_network
    from cryostream.io.stack import MicrographSkippedWarning

    network = load_network(run)
    try:
        value, mended, defects = checked or checked_micrograph(
            image, source, network.record, network.config, config)
    except InvalidMicrographError as exc:
        if not permissive:
            raise
        warnings.warn(f"skipping {exc.path}: {exc.problem}", MicrographSkippedWarning,
                      stacklevel=2)
        return None, {"skipped": exc.problem}
    micrograph, percentile = normalised(mended, pixel_size_angstrom, network.record, source,
                                        value)
    offsets = binned_offsets(network.record, config.ensemble) if config.binned_pass else 1
    estimate, found = (pipeline or config.pipeline()).run(
        micrograph, network_fn(run, config, source, offsets, notes))
    estimate *= np.float32(percentile)
    if defects:  # the blank lines as they were
        restore(estimate, image, defects)
        found = {**found, "defects": defects.record()}
    return estimate, found


def denoise_micrograph(source: str, run: str, config: DenoiseConfig, *,
                       plan: OutputPlan | None = None, permissive: bool = False):
    """One micrograph file through the whole pipeline (:func:`denoise_image`), read once.

    With ``plan`` (:func:`~cryostream.denoise.outputs.plan_outputs`), writes ``NAME.mrc`` with
    a history label and its record ``NAME.json`` (:func:`output_record`) and returns the MRC
    path; otherwise returns the denoised array in the micrograph's units (None when skipped).
    """
    (micrograph,) = gather_inputs([source], config=config).micrographs
    return denoise_item((micrograph, plan), run=run, config=config, permissive=permissive)


def describe_found(found: dict) -> str:
    """What the steps found on a micrograph, in a few words for a progress note."""
    if "ctf_used" not in found:
        return ""
    fallback = ("radial gain below 20 Å, network above"
                if found.get("fallback") == "network_above_20A" else "radial Wiener gain")
    mended = found.get("inverted_rings")
    if mended:  # rings where the network's response was negative took the radial gain
        low, high = mended["angstrom"]
        fallback += f" (radial at {low:.1f}–{high:.1f} Å too, where its response was inverted)"
    fit = found.get("ctf")
    if fit is None:
        return f"; too small for a CTF fit: {fallback}"
    defocus = f"defocus {fit['defocus_u_angstrom'] / 1e4:.2f}/{fit['defocus_v_angstrom'] / 1e4:.2f} µm"
    if found["ctf_used"]:  # with how far off the fit may be (its rings fade past that)
        error = fit.get("defocus_error_angstrom")
        return f"; {defocus}{f' ±{error:.0f} Å' if error else ''}, CTF check passed: " \
               "CTF-shaped gain"
    if no_rings(found.get("ctf_rings_z")):  # the fit's best guess: no result to read
        return f"; Thon rings not found (the fit's best guess, {defocus}, not used): {fallback}"
    if no_rings(found.get("ctf_rings_z"), fit):  # two defoci, neither clearly
        return (f"; {defocus} or {fit['rival_defocus_angstrom'] / 1e4:.2f} µm, rings too faint "
                f"to choose (z {found['ctf_rings_z']:.2f}), not used: {fallback}")
    return f"; {defocus}, {'CTF check not made' if found.get('ctf_check') is None else NO_BETTER}: {fallback}"


class Progress:
    """One note per finished micrograph: its number, name, seconds and what the steps found,
    and while some are left, about how long they take: the mean time of those finished, for
    the ones not started and for what is left of those in progress, over the ``workers`` that
    run at once. With ``-v`` (the debug level), each one's optics and findings in words
    (:class:`~cryostream.denoise.verbose.MicrographNotes` of ``config`` and ``micrographs``,
    the call's)."""

    def __init__(self, total: int, already: int, workers: int = 1, config=None, micrographs=()):
        import threading

        from cryostream.denoise.verbose import MicrographNotes

        self.total, self.count, self.lock = total, already, threading.Lock()
        self.verbose = MicrographNotes(config, micrographs)  # -v: each one's optics and findings
        self.first, self.workers, self.stopping = already, max(1, workers), False
        self.spent, self.running = 0.0, {}  # seconds of those finished; starts of those running
        self.failures, self.depth = 0, name_depth([m.source for m in micrographs])

    def failed(self, key: str) -> None:
        """A micrograph (started as ``key``) failed: done, without a note (the last of a call:
        the call's notes of them all, :meth:`~cryostream.denoise.verbose.MicrographNotes.end`)."""
        with self.lock:
            self.count, self.failures = self.count + 1, self.failures + 1
            self.running.pop(key, None)
            if self.count == self.total:
                self.verbose.end()

    def begin(self, key: str) -> None:
        """A micrograph starts."""
        with self.lock:
            self.running[key] = time.perf_counter()

    def stop(self) -> None:
        """Ctrl-C came: those in progress finish, no more start (no time left is said)."""
        self.stopping = True

    def note(self, source: str, seconds: float, found: dict | None, key: str | None = None) -> None:
        """A micrograph (started as ``key``) is done in ``seconds``: its note, which says why
        where it was skipped (``found`` None, or ``{"skipped": why}``); the last of a call,
        the call's notes of them all too."""
        from cryostream.units import format_duration

        with self.lock:
            self.count += 1
            self.spent += seconds
            self.running.pop(key, None)
            skipped, why = found is None or "skipped" in found, (found or {}).get("skipped")
            what = (f"{seconds:.1f} s{describe_found(found)}" if not skipped
                    else f"skipped ({why})" if why else "skipped")
            if self.count < self.total and not self.stopping:
                mean = self.spent / (self.count - self.first - self.failures)
                now = time.perf_counter()
                queued = self.total - self.count - len(self.running)
                work = queued * mean + sum(max(0.0, mean - (now - t)) for t in self.running.values())
                left = format_duration(work / self.workers)
                what += f"; {left} left" if left == "under 1 s" else f"; about {left} left"
            # the output's name; where names repeat, the input's folders that tell them apart
            name = short_name(source if self.depth == 1 else key or source, self.depth)
            logging.getLogger("cryostream").info("%s%d/%d %s: %s", "" if skipped else "denoised ",
                                                 self.count, self.total, name, what)
            if found and not skipped:  # -v: in words, as NAME.json; clear rings kept: once
                self.verbose.say(name, key, found)
            if self.count == self.total:  # those above the learned weights' last row: once
                self.verbose.end()


def _record(run: str):
    from cryostream.denoise.network import load_network

    return load_network(run).record


def _computed_on(run: str, precision: str) -> dict:
    """Where the network runs and in what precision, for the output's record: bf16 is computed
    in float32 on a CPU, and a GPU's float32 convolutions round differently from a CPU's, so
    outputs differ between machines in the last digits."""
    import jax

    from cryostream.denoise.network import load_network

    return {"backend": jax.default_backend(),
            "dtype": load_network(run, precision).compute_dtype}


def _checked(halves: list, run: str, config: DenoiseConfig, permissive: bool) -> list | str:
    """Every half of a micrograph passes :func:`checked_micrograph` before any work on either
    (its defects mended before the pair's CTF is fitted): what it returned for each; with
    ``permissive`` a bad half of a pair skips the pair with a warning naming both (instead,
    why, for its note: the half and its problem)."""
    from cryostream.denoise.network import load_network
    from cryostream.io.stack import MicrographSkippedWarning

    network = load_network(run)
    values = []
    for (half, image), (other, _) in zip(halves, halves[::-1], strict=True):
        try:
            values.append(checked_micrograph(image, half, network.record, network.config,
                                             config))
        except InvalidMicrographError as exc:
            if not permissive:
                raise
            warnings.warn(f"skipping {exc.path}: {exc.problem} (and its other half {other})",
                          MicrographSkippedWarning, stacklevel=3)
            return f"{Path(exc.path).name}: {exc.problem}"
    return values


def denoise_item(item: tuple, *, run: str, config: DenoiseConfig, permissive: bool,
                 progress: Progress | None = None, gate=None):
    """Denoise one micrograph of a call (``item``: it and its output's plan), noted in
    ``progress``; one that fails is counted there as done (its error says why). Its output
    and note go through ``gate`` (a :class:`~cryostream.denoise.pool.Gate`), where given:
    closed (SIGTERM), nothing is written (:class:`~cryostream.denoise.pool.Abandoned`)."""
    try:
        return _denoise_item(item, run=run, config=config, permissive=permissive,
                             progress=progress, gate=gate)
    except BaseException:
        if progress is not None:
            progress.failed(item[0].source)
        raise


def _denoise_item(item: tuple, *, run: str, config: DenoiseConfig, permissive: bool,
                  progress: Progress | None = None, gate=None):

    from cryostream.denoise.sources import halves_pipeline
    from cryostream.io.mrc import read_header_copy

    micrograph, plan = item
    start = time.perf_counter()
    if progress is not None:
        progress.begin(micrograph.source)
    stamps = input_stamps(micrograph.source, micrograph.given())  # before any pixel is read
    config = micrograph.config(config)
    halves = [(half, read_micrograph(half)[1]) for half in (micrograph.source, micrograph.odd)
              if half is not None]
    # a single micrograph is checked by denoise_image, which skips it under permissive
    checked = [None] if len(halves) == 1 else _checked(halves, run, config, permissive)
    if isinstance(checked, str):  # a pair skipped: why
        checked, found = None, {"skipped": checked}
    else:
        found = {}
    pipeline = (halves_pipeline(micrograph, config, [  # the halves mended, where they were
        (half, c[1] if c else image) for (half, image), c in zip(halves, checked, strict=True)],
        _record(run)) if checked is not None else None)
    estimate = None
    notes = PassNotes(len(halves), plan and plan.name)  # a pair's time left: both halves'
    for (half, image), value in zip(halves, checked, strict=True) if checked is not None else ():
        out, seen = denoise_image(image, micrograph.pixel_size_angstrom, half, run, config,
                                  permissive=permissive, pipeline=pipeline, checked=value,
                                  notes=notes)
        if out is None:
            estimate, found = None, seen  # skipped: why
            break
        if estimate is None:
            estimate, found = out, seen
        else:  # the odd half: the full sum's estimate is the sum of the halves' (cryoCARE's way)
            estimate = estimate + out
            found = {**found, "odd_half": seen,
                     "halves": "the sum of the pipeline's outputs on the even and odd halves "
                     "(the full sum's scale)"}
    with gate.writing(plan is not None and estimate is not None) if gate else contextlib.nullcontext():
        if estimate is not None and plan is not None:
            from cryostream.denoise.network import load_network

            like = read_header_copy(micrograph.source, extended_header=config.keep_extended_header)
            estimate = write_output(plan, estimate, micrograph.pixel_size_angstrom,
                                    history_label(run, config, found),
                                    output_record(run, config, micrograph.source, found,
                                                  micrograph.given(),
                                                  _computed_on(run, config.precision), stamps,
                                                  load_network(run).state),
                                    dtype=config.output_dtype, like=like)
        if progress is not None:  # its output; a pair: the micrograph; one skipped: its input
            named = plan.path if plan is not None and estimate is not None else micrograph.source
            progress.note(named, time.perf_counter() - start, found, key=micrograph.source)
    return estimate
