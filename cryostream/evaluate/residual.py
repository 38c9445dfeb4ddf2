"""The report's residual check (``evaluate --residual``): each micrograph denoised as ``denoise``
does by default (or read where it wrote it, ``--denoised``, as it was made: other options are
named in the report) and its residual checked against the measured noise. As long as
``denoise`` takes, so said as ``denoise`` says it: on a CPU, about how long before it starts
(:func:`residual_time_note`), and a note of the network passes done while one micrograph takes
minutes (:class:`~cryostream.denoise.pace.PassNotes`)."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from cryostream.evaluate.figures import plot_method_noise
from cryostream.evaluate.numbers import (
    method_noise,
    network_output,
    read_micrograph,
    read_residual,
    recipe_output,
    residual_band,
)
from cryostream.evaluate.staging import check_given_up, writing
from cryostream.evaluate.verdict import NOISE_LIKE, SPECIMEN, VERDICT_SD

__all__ = ["residual_section", "residual_time_note", "network_time_words", "checked_words"]

_log = logging.getLogger("cryostream")


def network_time_words(run, recipe, shapes) -> str:
    """How long the network's passes of ``recipe`` (a :class:`~cryostream.config.DenoiseConfig`
    decided for the run) take over micrographs of ``shapes`` on a CPU, as ``denoise`` estimates
    it (:func:`~cryostream.denoise.workers.cpu_times`), in words: how many passes per
    micrograph, about how long for the largest and for all. ``""`` where the network runs
    elsewhere or the windows cannot be laid out (the checks refuse that themselves). The
    residual check's note (:func:`residual_time_note`) and the truth section's
    (:func:`~cryostream.evaluate.report.truth_time_note`) give it, each with its own advice."""
    import jax

    from cryostream.denoise.workers import cpu_cores, cpu_times
    from cryostream.units import spoken_duration

    times = None if jax.default_backend() != "cpu" else cpu_times(str(run), recipe, shapes)
    if times is None:
        return ""
    views = 8 if recipe.ensemble else 1
    binned = times.offsets if recipe.ensemble else times.alone
    runs = "8 times" if views == 8 else "once"
    also = (f" (and {views * binned} time{'s' * (views * binned != 1)} binned by 2, the binned "
            "pass)" if binned else "")
    total = f", {spoken_duration(times.total)} for all here" if len(shapes) > 1 else ""
    return (f"the network runs {runs} per micrograph{also}: about {spoken_duration(times.each)} "
            f"for one of {times.shape[0]} × {times.shape[1]} on 2 CPU cores (this machine has "
            f"{cpu_cores()}){total}")


def residual_time_note(run, recipe, shapes, denoised=None) -> str:
    """How long the residual check takes to denoise micrographs of ``shapes`` with ``recipe``
    (the run's default :class:`~cryostream.config.DenoiseConfig`) on a CPU
    (:func:`network_time_words`), and what saves the wait: what ``denoise`` wrote given with
    ``--denoised`` (where ``denoised``, that folder, is not given already; its outputs are
    checked as they were made, ``denoise --no-ensemble``'s too), or a GPU. ``""`` where
    the network runs elsewhere or the windows cannot be laid out (the check refuses that
    itself)."""
    from cryostream.denoise.workers import busy_note

    words = network_time_words(run, recipe, shapes)
    if not words:
        return ""
    return (f"{words}; " + ("to check what cryostream denoise wrote instead of denoising again, "
                            "pass --denoised FOLDER (Python: denoised=FOLDER), or use a GPU"
                            if denoised is None else "a GPU takes seconds") + busy_note())


def residual_section(run, record, paths, out: Path, report: dict, tile: int | None,
                     denoised=None) -> list[str]:
    """The residual of what ``denoise`` gives each micrograph of ``paths`` (as
    :func:`~cryostream.denoise.sources.gather_inputs` gives them: a STAR file's pixel size and
    optics) by default (its recipe for the run, :meth:`~cryostream.config.DenoiseConfig.for_run`),
    or what ``denoise`` wrote for it in ``denoised`` with this model, read as it was made
    (:meth:`~cryostream.evaluate.denoised.DenoisedOutputs.written_of`): numbers, figures and
    markdown. An output made with other options than the default is named as such, with its
    options and steps, in ``report.md``'s first line, its line under the table and its row
    (``made_with``, ``recipe``, ``denoised_output``; :func:`checked_words`).
    Before the wait, a note of it (on a CPU, about how long: :func:`residual_time_note`); while a
    micrograph is denoised, a note of the network passes done at most every
    :data:`~cryostream.denoise.micrograph.NOTE_EVERY_S` seconds, as ``denoise`` gives."""
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.micrograph import checked_micrograph
    from cryostream.denoise.network import load_network
    from cryostream.denoise.outputs import recipe_steps
    from cryostream.denoise.steps import Micrograph
    from cryostream.evaluate.denoised import DenoisedOutputs
    from cryostream.evaluate.pixels import pixel_size_source
    from cryostream.io.mrc import read_header

    network_config = load_network(run).config
    recipe = DenoiseConfig(tile=tile).for_run(record)
    lines = ["## Residual of the denoised micrographs (no ground truth needed)", "",
             "Micrograph − what `denoise` writes by default ("
             f"{' + '.join(recipe_steps(recipe))}): its spectrum over the measured noise spectrum "
             "from a period of 20 pixels out to Nyquist (the band, in Å by the micrograph's pixel "
             "size; 1 is right; max deviation: the ring furthest from 1) and its correlation with "
             "the 20 Å low-pass micrograph (pure noise's in brackets, ± how far chance moves it, "
             "one standard deviation; the whole micrograph's after). The verdict: "
             f"{SPECIMEN} where the correlation is more than {VERDICT_SD:g} of those standard "
             f"deviations above pure noise's, else {NOISE_LIKE}. What they mean is under the "
             "table.", "",
             "| micrograph | pixel size (Å) | band | spectrum ratio | max deviation | "
             "correlation (pure noise ± sd) | whole micrograph | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    rows, inputs, outputs = [], paths, DenoisedOutputs(denoised, run, record, tile)
    if denoised is None:  # the wait, said before it
        how_long = residual_time_note(run, recipe, [read_header(p).shape for p, *_ in inputs])
        _log.info("residual check of %d micrograph%s: each denoised as denoise does (%s)%s",
                  len(inputs), "s" * (len(inputs) != 1), " + ".join(recipe_steps(recipe)),
                  f"; {how_long}" if how_long else ", as long as denoise takes; --denoised "
                  "FOLDER (Python: denoised=FOLDER) checks what denoise wrote there instead")
    for i, (source, given_pixel, optics, taken) in enumerate(inputs):
        check_given_up()
        start, path = time.perf_counter(), Path(source)
        raw, pixel = read_micrograph(path, residual=given_pixel is None)  # None: not known
        pixel = given_pixel or pixel
        # as denoise checks and mends it: NaN pixels named with their file, a hot pixel mended
        raw = checked_micrograph(raw, str(path), record, network_config, DenoiseConfig())[1]
        scale = np.float32(np.percentile(raw, record.prepare.percentile))
        image = raw / scale
        origin = taken.pixel_size_from if taken else "argument" if given_pixel else "header"
        # what denoise wrote, as it was made (its options named), else the default made here
        den, how, _ = outputs.written_of(path, scale, optics, pixel,
                                      pixel_size_source(origin, path.name))
        mine, read = dataclasses.replace(recipe, **optics), den is not None
        if den is None:  # denoised here as denoise does it (a STAR row's defocus too)
            how_long = denoised and residual_time_note(run, mine, [raw.shape], denoised)
            if how_long:  # not in the folder: the wait, said before it
                _log.info("%s: %s", path.name, how_long)
            den = recipe_output(run, mine if taken is None else taken.pipeline(mine), Micrograph(
                image, pixel or 1.0, record, str(path)), *_noted_passes(run, record, mine, raw,
                                                                       scale, tile, path))[0]
        check = method_noise(image, den, pixel)
        check["reading"] = read_residual(check)
        _log.info("residual check %d/%d %s%s: %.1f s; spectrum ratio %.3f at %s, correlation "
                  "with the low-pass %.4f (pure noise %.4f ± %.4f): %s", i + 1, len(inputs),
                  Path(path).name, f" (as denoise wrote it, made with {how['options']})"
                  if how else "", time.perf_counter() - start, check["spectrum_ratio_mean"],
                  residual_band(check), check["correlation_with_lowpass"],
                  check["correlation_if_pure_noise"], check["correlation_sd_if_pure_noise"],
                  check["verdict"])
        with writing(out / f"residual_{i}.png") as figure:
            plot_method_noise(figure, check, image, den,
                              title=f"{Path(path).name}: {check['verdict']}")
        rows.append({"micrograph": Path(path).name,
                     **{k: v for k, v in check.items() if not isinstance(v, np.ndarray)},
                     "denoised_output": str(Path(denoised) / path.name) if read else None,
                     "recipe": how["recipe"] if how else recipe_steps(mine),
                     "made_with": how["options"] if how else None})
        lines.append(f"| {Path(path).name} | {f'{pixel:g}' if pixel else 'none known'} | "
                     f"{residual_band(check)} | {check['spectrum_ratio_mean']:.3f} | "
                     f"{check['spectrum_ratio_max_deviation']:.3f} | "
                     f"{check['correlation_with_lowpass']:.4f} "
                     f"({check['correlation_if_pure_noise']:.4f} ± "
                     f"{check['correlation_sd_if_pure_noise']:.4f}) | "
                     f"{check['correlation_if_everything']:.3f} | {check['verdict']} |")
    outputs.warn_pixel_sizes("the residual check (its band and low-pass)")
    report["residual"] = rows
    if any(r["pixel_size_angstrom"] is None for r in rows):  # said only where it is so
        lines[2] = lines[2].replace(" What they mean", " A micrograph of no known pixel size is "
                                    "checked at 1 Å per pixel: its band in cycles/px, its low-pass "
                                    "20 pixels. What they mean")
    otherwise = [r["micrograph"] for r in rows if r["made_with"]]
    if otherwise:  # the figures are of those outputs, not of the default's: said at the top
        default = f"what `denoise` writes by default ({' + '.join(recipe_steps(recipe))})"
        written = (f"what `denoise` wrote in `{denoised}` (--denoised) with other options, "
                   "checked as it is (each one's options are under the table)")
        lines[2] = lines[2].replace(f"{default}:", f"{written}, not {default}:" if len(
            otherwise) == len(rows) else f"{default}; for {', '.join(otherwise)}, {written}:")
    return lines + [""] + [f"- {r['micrograph']}{checked_words(r)}: {r['reading']}"
                           for r in rows] + [""] + [
        f"![residual {i}](residual_{i}.png)" for i in range(len(rows))] + [""]


def checked_words(row: dict) -> str:
    """How the output in a row of the residual check was made, where not as ``denoise`` does
    by default (``""`` there), for the line under the table and the line printed:
    `` (as denoise wrote it, den/m.mrc, made with ensemble off, not on; its steps
    n2n_correction + ctf_gain)``."""
    if not row.get("made_with"):
        return ""
    recipe = row.get("recipe")
    steps = ("" if recipe is None else f"; its steps {' + '.join(recipe)}" if recipe
             else "; the network's output alone")
    return f" (as denoise wrote it, {row['denoised_output']}, made with {row['made_with']}{steps})"


def _noted_passes(run, record, recipe, raw: np.ndarray, scale, tile: int | None, path: Path):
    """The network's pass on the micrograph ``raw`` (normalised by ``scale``) of the run of
    ``record`` with ``recipe`` (its DenoiseConfig for the micrograph), and the network
    pass for the recipe's others (:func:`~cryostream.evaluate.numbers.recipe_output`'s ``own``,
    ``tile`` and ``passes``), each noted as ``denoise`` notes them
    (:func:`~cryostream.denoise.micrograph.network_fn`) and each first checking that the report
    is still wanted (:func:`~cryostream.evaluate.staging.check_given_up`)."""
    from cryostream.denoise import micrograph
    from cryostream.denoise.pace import PassNotes
    from cryostream.denoise.weights import binned_offsets

    notes = PassNotes()
    offsets = binned_offsets(record, recipe.ensemble) if recipe.binned_pass else 1
    network = micrograph.network_fn(str(run), recipe, str(path), offsets, notes)

    def passes(image):
        check_given_up()
        return network(image)

    check_given_up()
    notes.passing()
    own = network_output(run, raw, scale, tile)
    notes.passed(raw.shape, micrograph.NOTE_EVERY_S)  # (read here: a test sets it)
    return own, tile, passes

