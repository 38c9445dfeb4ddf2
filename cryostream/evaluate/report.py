"""The evaluation report: numbers (:mod:`~cryostream.evaluate.numbers`) and figures
(:mod:`~cryostream.evaluate.figures`) written as ``report.md``, ``report.json`` and PNGs."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from cryostream.errors import DenoisedInputError, InvalidMicrographError, without_skipping
from cryostream.evaluate.figures import plot_crops, plot_frc, plot_spectra
from cryostream.evaluate.held_out import TruthSelection, check_store_held_out, select_held_out
from cryostream.evaluate.numbers import (
    DEFAULT_RECIPE,
    GAUSSIAN,
    ORACLE_WIENER,
    compare_on_store,
    network_output,
    read_micrograph,
    score_methods,
    truth_methods,
    written_method,
)
from cryostream.evaluate.residual import checked_words, network_time_words, residual_section
from cryostream.evaluate.staging import check_given_up, check_report_folder, staged_report, writing
from cryostream.script_guard import refuse_script_rerun

__all__ = ["evaluate", "staged_report", "test_split_section", "truth_section", "residual_section",
           "summary_lines", "truth_time_note"]

_log = logging.getLogger("cryostream")


def test_split_section(a: dict, recorrupt: bool = False) -> list[str]:
    """Markdown for the store's test split (:func:`compare_on_store`'s numbers); ``recorrupt``:
    the run trained on recorrupted targets (said under the table: its output estimates the
    clean micrograph, which a store of noisy micrographs cannot score)."""
    lines = ["## Test split, with the store's added noise", "",
             f"{a['patches']} held-out patches; PSNR with the normalising percentile as 1.0, "
             "against the store's target, which is itself a noisy micrograph (the store's "
             "synthetic noise is added to the input only): these numbers compare methods "
             "with each other, and are no distance to a clean image (`--truth` gives those).", "",
             "| method | PSNR (dB) |", "|---|---|",
             f"| noisy input | {a['noisy_psnr']:.2f} |",
             f"| best Gaussian low-pass (σ {a['gaussian_sigma']} px) | {a['gaussian_psnr']:.2f} |",
             f"| cryostream model | {a['model_psnr']:.2f} |"]
    if "topaz_psnr" in a:
        lines.append(f"| Topaz-Denoise pretrained U-Net | {a['topaz_psnr']:.2f} |")
    if recorrupt:
        lines += ["", "The model was trained on recorrupted targets: its output estimates the clean "
                  "micrograph, and a store of your micrographs holds no clean one, only the "
                  "micrograph itself, so here it scores under the noisy input by design. Judge "
                  "it by the residual check (`--residual`) or against simulated micrographs' "
                  "truth (`--truth`)."]
    return lines + [""]


def truth_time_note(run, recipe, shapes, denoised=None) -> str:
    """How long the truth section takes to denoise its micrographs of ``shapes`` with
    ``recipe`` (the run's default :class:`~cryostream.config.DenoiseConfig`, whose first pass
    is the model's own, scored too) on a CPU (:func:`network_time_words`), and what saves the
    wait: what ``denoise`` wrote given with ``--denoised`` (where ``denoised``, that folder, is
    not given already: only the model's own pass is made then), fewer micrographs
    (``--micrographs``, where there are several), or a GPU. ``""`` where the network runs
    elsewhere or the windows cannot be laid out."""
    from cryostream.denoise.workers import busy_note

    words = network_time_words(run, recipe, shapes)
    if not words:
        return ""
    fewer = (f"score fewer than these {len(shapes)} with --micrographs N (Python: "
             "micrographs=N), " if len(shapes) > 1 else "")
    return (f"{words}; " + ("to score what cryostream denoise wrote instead of denoising again "
                            "(the model's own pass alone is made), pass --denoised FOLDER (Python: "
                            f"denoised=FOLDER), {fewer}or use a GPU" if denoised is None else
                            "a GPU takes seconds") + busy_note())


def truth_section(run, record, selection: TruthSelection, out: Path, tile: int | None, report: dict,
                  denoised=None, pixels=None) -> list[str]:
    """Score whole simulated micrographs against their ground truth; figures and markdown.

    ``selection`` (:func:`~cryostream.evaluate.held_out.select_held_out`): the micrographs,
    held out of the run's training. Fills ``report["simulated"]`` (one row per micrograph:
    each method's ``psnr`` and ``ssim``; what ``denoise`` gives also its ``recipe``,
    ``made_with`` and ``denoised_output``), ``report["truth_mean"]`` (each method's means over
    the micrographs it has, which the table's last column and :func:`summary_lines` both show)
    and ``report["truth_micrographs"]``. ``denoised``: a folder where ``denoise`` wrote this
    model's outputs (NAME.mrc with its NAME.json), scored as they were made instead of
    denoising again (:meth:`~cryostream.evaluate.denoised.DenoisedOutputs.written_of`): one made
    with other options than the default in a row of its own that names them
    (:func:`~cryostream.evaluate.numbers.written_method`; its line under the table gives its
    file and steps), not as the default recipe. ``pixels``: each
    pair's pixel size (:func:`~cryostream.evaluate.pixels.truth_pixel_sizes`; None: not known,
    scored at 1 Å per pixel and, where any is so, every FRC and spectrum in cycles/px). On a
    CPU, about how long the micrographs take is said before the first (:func:`truth_time_note`;
    with ``denoised``, before each not found there)."""
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.api import describe_found
    from cryostream.denoise.outputs import recipe_steps
    from cryostream.evaluate.denoised import DenoisedOutputs
    from cryostream.evaluate.pixels import truth_pixel_sizes
    from cryostream.io.mrc import read_header

    rows, curves, outputs = [], {}, DenoisedOutputs(denoised, run, record, tile, "truth")
    pairs, recipe = selection.pairs, DenoiseConfig(tile=tile).for_run(record)
    how_long = denoised is None and truth_time_note(run, recipe, [read_header(p).shape
                                                                  for p, _ in pairs])
    if how_long:  # the wait, said before it
        _log.info("scoring %d simulated micrograph%s against their truth, each denoised as "
                  "denoise does (%s): %s", len(pairs), "s" * (len(pairs) != 1),
                  " + ".join(recipe_steps(recipe)), how_long)
    pixels = pixels or truth_pixel_sizes(pairs, None, True)
    known = all(p for p, _ in pixels)  # else the FRC curves (averaged) and spectra in cycles/px
    for number, (noisy_path, truth_path) in enumerate(pairs, 1):
        check_given_up()  # (Ctrl-C on the command line: the report was given up)
        start, (given, where) = time.perf_counter(), pixels[number - 1]
        noisy, clean = read_micrograph(noisy_path)[0], read_micrograph(truth_path)[0]
        pixel = given or 1.0
        scale = np.float32(np.percentile(noisy, record.prepare.percentile))
        noisy_n, clean_n = noisy / scale, clean / scale
        # what denoise wrote, as it was made (in a row naming its options), else made here
        written, how, written_found = outputs.written_of(noisy_path, scale, None, given, where)
        how_long = written is None and denoised and truth_time_note(run, recipe, [noisy.shape],
                                                                    denoised)
        if how_long:  # not in the folder: the wait, said before it
            _log.info("%s: %s", noisy_path.name, how_long)
        den = network_output(run, noisy, scale, tile)
        name = DEFAULT_RECIPE if how is None else written_method(how["options"])
        result = truth_methods(run, record, noisy_n, clean_n, den, pixel, str(noisy_path),
                               tile=tile, written=written, written_found=written_found,
                               written_as=name)
        scores, frcs = score_methods(result.images, clean_n, pixel if known else 1.0)
        scores[GAUSSIAN]["sigma_px"] = result.gaussian_sigma_px
        scores[name].update(  # how what denoise gives was made, as the residual check's rows
            denoised_output=str(Path(denoised) / noisy_path.name) if written is not None
            else None, made_with=how and how["options"],
            recipe=how["recipe"] if how else recipe_steps(recipe))
        rows.append({"micrograph": noisy_path.name, **scores})
        for method, pair in frcs.items():
            curves.setdefault(method, []).append(pair)
        if len(rows) == 1:
            with writing(out / "crops.png") as path:
                plot_crops(path, result.images, clean_n)
            with writing(out / "spectra.png") as path:
                plot_spectra(path, result.images, clean_n, pixel if known else None)
        _log.info("ground truth %d/%d %s (%s): %.1f s%s; PSNR %s %.2f dB, %s %.2f dB",
                  number, len(pairs), noisy_path.name,
                  "held out" if selection.checked else "training set not checked",
                  time.perf_counter() - start, describe_found(result.found), name,
                  scores[name]["psnr"], GAUSSIAN, scores[GAUSSIAN]["psnr"])
    outputs.warn_pixel_sizes("the FRC and spectra (PSNR and SSIM need none)", overrides=False)
    with writing(out / "frc.png") as path:
        plot_frc(path, curves, known)
    names = _truth_methods_of(rows)
    mean = {n: {k: float(np.mean([r[n][k] for r in rows if n in r])) for k in ("psnr", "ssim")}
            for n in names}
    report.update(simulated=rows, truth_mean=mean, truth_micrographs=selection.as_dict(),
                  truth_pixel_size_angstrom={n.name: p for (n, _), (p, _)
                                             in zip(pairs, pixels, strict=True)})
    otherwise = [(r["micrograph"], n, r[n]) for r in rows for n in names
                 if r.get(n, {}).get("made_with")]
    lines = ["## Simulated micrographs against their ground truth", "", selection.note(), "",
             "PSNR (dB) / SSIM of whole micrographs, the noisy micrograph's percentile as 1.0; "
             "FRC with an edge taper (cryostream.metrics.frc)." + ("" if known else
             " A micrograph of no known pixel size is scored at 1 Å per pixel: the FRC and "
             "power spectra are against cycles/px.") + ("" if not otherwise else
             f" What `denoise` wrote in `{denoised}` (--denoised) with other options than the "
             "default is scored as it is, in a row of its own that names them (each one's "
             "output is under the table), not as the default recipe; a row's mean is over the "
             "micrographs it has."), "",
             "| method | " + " | ".join(r["micrograph"] for r in rows) + " | mean |",
             "|---|" + "---|" * (len(rows) + 1)]
    for n in names:
        cells = [f"{r[n]['psnr']:.2f} / {r[n]['ssim']:.3f}"
                 + (f" (σ {r[n]['sigma_px']:g} px)" if n == GAUSSIAN else "") if n in r else "—"
                 for r in rows]
        lines.append(f"| {n} | " + " | ".join(cells)
                     + f" | {mean[n]['psnr']:.2f} / {mean[n]['ssim']:.3f} |")
    under = [f"- {micrograph}, in the row `{n}`{checked_words(entry)}"
             for micrograph, n, entry in otherwise]
    return lines + [""] + (under + [""] if under else []) + [
        "![crops](crops.png)", "", "![FRC](frc.png)", "", "![power spectra](spectra.png)", ""]


def _truth_methods_of(rows: list[dict]) -> list[str]:
    """The methods of the truth section's ``rows``, in the order scored, each once; what
    ``denoise`` gives (its entries name a ``recipe``), by default and as written with other
    options, together where the first of them is."""
    names = list(dict.fromkeys(n for r in rows for n in r if n != "micrograph"))
    made = [n for n in names if any("recipe" in r.get(n, {}) for r in rows)]
    at = names.index(made[0])
    return names[:at] + made + [n for n in names[at:] if n not in made]


def summary_lines(report: dict, output) -> list[str]:
    """What ``cryostream evaluate`` prints: where the report is, then one line per section,
    from the report's numbers (``report["test_split"]``, ``report["truth_mean"]``, its best of
    the methods scored on every micrograph, means alike, ``report["residual"]``)."""
    lines = [f"wrote {output}/report.md"]
    if "test_split" in report:
        a = report["test_split"]
        lines.append(f"  test split, {a['patches']} patches, PSNR: noisy {a['noisy_psnr']:.2f} | "
                     f"best Gaussian {a['gaussian_psnr']:.2f} | model {a['model_psnr']:.2f} dB")
    if "truth_mean" in report:
        rows, mean = report["simulated"], report["truth_mean"]
        shown = [n for n in ("noisy", GAUSSIAN, ORACLE_WIENER, DEFAULT_RECIPE) if n in mean] + [
            n for n in mean if any(r.get(n, {}).get("made_with") for r in rows)]  # as written
        count, has = len(rows), {n: sum(n in r for r in rows) for n in mean}  # (as written: some)
        best = max((n for n in mean if has[n] == count), key=lambda n: mean[n]["psnr"])  # of all
        held = "held-out " if report["truth_micrographs"]["checked"] else ""
        unchecked = "" if held else " (whether the run trained on them was not checked)"
        lines.append(f"  ground truth, mean of {count} {held}micrograph{'s' * (count > 1)}"
                     f"{unchecked}, PSNR: " + " | ".join(f"{n} {mean[n]['psnr']:.2f}" + (
                         f" ({has[n]} of them)" if has[n] < count else "") for n in shown)
                     + f" dB; best in the table: {best} {mean[best]['psnr']:.2f} dB")
    for row in report.get("residual", []):
        lines.append(f"  residual of {row['micrograph']}{checked_words(row)}: {row['reading']}")
    return lines


def evaluate(run, store, output, *, truth=None, patches: int = 64, micrographs: int = 2,
             tile: int | None = None, residual=None, denoised=None,
             pixel_size_angstrom: float | None = None) -> dict:
    """Write an evaluation report (``report.md``, ``report.json``, figures) to ``output``.

    ``run`` is a run folder, an exported ``.npz`` or a shipped model's name (``"general"``).
    (a) With a ``store``: its test split with the store's added noise: PSNR of the noisy
    input, the best Gaussian low-pass and the model. (b) With ``truth`` (a folder written by
    :func:`cryostream.simulate`): whole simulated micrographs against their ground truth, with
    the 95th percentile of the noisy micrograph as 1.0: noisy, best Gaussian, the oracle Wiener
    filter (:func:`cryostream.metrics.wiener_oracle`), the Wiener filter from the measured noise
    (:func:`cryostream.baselines.wiener_measured`), the model and the model post-processed
    (:data:`~cryostream.evaluate.numbers.TRUTH_PIPELINES`); PSNR, SSIM, FRC curves (edge-tapered,
    :func:`cryostream.metrics.frc`), power spectra and crops. Only the first ``micrographs`` of
    the set that the run did not train on are scored
    (:func:`~cryostream.evaluate.held_out.select_held_out`; a
    :class:`~cryostream.errors.ConfigError` before anything is written when it trained on all
    of them); the report names them. Topaz-Denoise's pretrained U-Net joins both when
    ``topaz-em`` is installed. (c) With ``residual`` (MRC paths, e.g. real micrographs): each is denoised
    as :func:`cryostream.denoise` does by default and the residual checked with
    :func:`~cryostream.evaluate.numbers.method_noise`. ``denoised``: a folder of this model's
    outputs from :func:`cryostream.denoise` (with their records), read instead of denoising
    those micrographs again: any of this model and micrograph, taken as it was made (``truth``
    scores it, ``residual`` checks it; its options, where not the default's, named in the
    report, in a row of its own for ``truth``, and in its ``made_with`` and ``recipe``).
    ``pixel_size_angstrom``: the ``residual`` micrographs' pixel size (Å), over their headers
    and STAR file, as :func:`cryostream.denoise` takes it (for micrographs that lack one; a
    :class:`~cryostream.io.pixel_sizes.PixelSizeWarning` where it is twice or half a header's or
    further off), and of the ``truth`` micrographs whose headers give none (without it they are
    scored at 1 Å per pixel, their FRC and spectra in cycles/px, with a ``PixelSizeWarning``
    naming one; :func:`~cryostream.evaluate.pixels.truth_pixel_sizes`). A ``denoised`` output
    whose header gives another pixel size than its micrograph's here is read as it is, with a
    ``PixelSizeWarning`` naming both. ``tile``: the denoising window's core, px (None: chosen
    for the micrograph and the device, as :func:`cryostream.denoise` chooses it; so micrographs
    smaller than a fixed tile work too). A file in ``output`` of a report's name that evaluate
    did not write (one's own notes named ``report.md``) is refused before any work, never replaced
    (:func:`~cryostream.evaluate.staging.check_report_folder`); an earlier report's are.

    Progress goes to the ``cryostream`` logger: the test split's time, on a CPU about how long
    the truth section and the residual check take (:func:`truth_time_note`,
    :func:`~cryostream.evaluate.residual.residual_time_note`), and one note per micrograph
    (its seconds, the fitted defocus and whether the CTF check passed where the default
    recipe fits one, the scores). :func:`summary_lines` sums the report up.
    """
    refuse_script_rerun("evaluate")  # before anything is read or written
    from cryostream.denoise.network import model_path, model_record
    from cryostream.denoise.pixels import check_pixel_size
    from cryostream.errors import ConfigError
    from cryostream.evaluate.held_out import checked_truth
    from cryostream.evaluate.pixels import truth_pixel_sizes

    run = model_path(run)
    record = model_record(run)
    if isinstance(store, os.PathLike):  # (prepare's result): named by its path in the report
        store = Path(os.fspath(store))
    pixel_size_angstrom = check_pixel_size(pixel_size_angstrom)  # as denoise's, before any reading
    if pixel_size_angstrom is not None and not residual and truth is None:
        raise ConfigError(f"pixel_size_angstrom={pixel_size_angstrom!r} (--pixel-size) is the "
                          "pixel size of the micrographs checked with --residual (Python: "
                          "residual=) and of --truth micrographs whose headers have none; give "
                          "those, or leave it out")
    if store is None and truth is None and not residual:
        raise ConfigError("nothing to evaluate: give a store (its test split), --truth FOLDER (a "
                          "folder from cryostream simulate; Python: truth=) or --residual MRC... "
                          "(Python: residual=)")
    if not isinstance(micrographs, int) or micrographs < 1:
        raise ConfigError(f"micrographs={micrographs!r} (--micrographs): must be an integer ≥ 1")
    if denoised is not None and Path(denoised).is_file():  # its denoised_micrographs.star
        raise ConfigError(f"denoised={str(denoised)!r} (--denoised): a file, not a folder; give "
                          f"the folder cryostream denoise wrote it in (its -o): --denoised "
                          f"{Path(denoised).parent}")
    if denoised is not None and not Path(denoised).is_dir():
        raise ConfigError(f"denoised={str(denoised)!r} (--denoised): no such folder; give the "
                          "folder cryostream denoise wrote this model's outputs to (its -o)")
    if store is not None:
        check_test_split(store)
        check_store_held_out(store, record.store)
    if isinstance(patches, bool) or not isinstance(patches, int) or patches < 1:
        raise ConfigError(f"patches={patches!r} (--patches): must be an integer ≥ 1")
    if tile is not None:  # every section's tile, whichever uses it, checked before any work
        from cryostream.denoise.tiling import check_tile

        check_tile(run, tile, None)
    # every input checked before anything is written
    selection = None if truth is None else checked_truth(  # micrographs of the truth's shape
        select_held_out(truth, micrographs, record.store, _shipped(run)), run, record)
    pixels = None if truth is None else truth_pixel_sizes(selection.pairs, pixel_size_angstrom,
                                                          bool(residual))
    if residual:  # each as denoise checks it (NaN pixels, a constant image), before any work
        from cryostream.config import DenoiseConfig
        from cryostream.denoise.micrograph import check_micrograph
        from cryostream.denoise.network import load_network
        from cryostream.io.stack import listed_inputs

        residual = _as_denoise_takes(listed_inputs(residual), pixel_size_angstrom)
        network_config = load_network(run).config
        for path, *_ in residual:
            try:
                check_micrograph(read_micrograph(path)[0], str(path), record, network_config,
                                 DenoiseConfig())
            except InvalidMicrographError as exc:  # evaluate has no --permissive to skip it
                raise without_skipping(exc, "leave it out of --residual") from None
    out = Path(output)
    check_report_folder(out)  # a file, or one of a report's name evaluate did not write: refused
    with staged_report(out) as staging:
        return _write_report(run, record, store, staging, selection, residual, patches=patches,
                             tile=tile, denoised=denoised, pixels=pixels)


def _as_denoise_takes(items: list, pixel_size_angstrom: float | None = None) -> list[tuple]:
    """``(file, pixel size or None, optics, InputMicrograph or None)`` of each micrograph of
    ``items`` as denoise takes them (a STAR file's pixel size, optics and defocus: its outputs
    match; ``pixel_size_angstrom``, given, over theirs); an input that cannot be taken so (no
    pixel size anywhere: its header's reading, :func:`read_micrograph`) as its files alone, the
    others still as denoise takes them."""
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.pixels import note_assumed_optics
    from cryostream.denoise.sources import gather_inputs
    from cryostream.io.stack import expand_inputs

    try:
        taken = gather_inputs(items, config=DenoiseConfig(), one_shape=False, note_optics=False,
                              pixel_size_angstrom=pixel_size_angstrom).micrographs
        note_assumed_optics(DenoiseConfig(), taken, "evaluate")  # its words: it has no options
        return [(m.source, m.pixel_size_angstrom, m.optics, m) for m in taken]
    except DenoisedInputError as exc:  # refused as denoise refuses it, not taken as files
        raise without_skipping(exc, "leave it out of --residual") from None
    except InvalidMicrographError:
        if len(items) > 1:  # one input's failure leaves the others' STAR files their optics
            from cryostream.io.folders import named_halves_left_out

            return [row for item in named_halves_left_out(items, say=False)  # (said above)
                    for row in _as_denoise_takes([item], pixel_size_angstrom)]
        return [(str(p), pixel_size_angstrom, {}, None) for p in expand_inputs(items)]


def check_test_split(store) -> None:
    """A :class:`~cryostream.errors.StoreError` saying how to get something to score if the
    store's test split is empty (a store prepared with no test fraction, or of one micrograph)."""
    from cryostream.errors import StoreError
    from cryostream.store import open_dataset

    with open_dataset(store) as f:
        if f["test"]["target"].shape[0]:
            return
        fraction = f"{json.loads(f.attrs['config'])['config'].get('test_fraction', 0):g}"
        count = f["micrographs/name"].shape[0]
    again = ("prepare the store again from two or more micrographs, with a test fraction (e.g. "
             "test_fraction=0.1 (--test-fraction): whole micrographs are held out)" if count < 2
             else "prepare the store again holding some out, e.g. test_fraction=0.1 "
             "(--test-fraction)")
    raise StoreError(f"{store}: the test split is empty (prepared with test_fraction={fraction} "
                     f"(--test-fraction) from {count} micrograph{'s' * (count != 1)}), and "
                     f"evaluate scores a store on its test split: {again}, or leave the store out "
                     "and score simulated micrographs with truth=FOLDER (--truth) or any "
                     "micrographs' residual with residual=MRC (--residual)")


def _write_report(run, record, store, out: Path, selection: TruthSelection | None,
                  residual: list, *, patches: int, tile: int | None, denoised,
                  pixels=None) -> dict:
    """The sections of :func:`evaluate`'s report, written into ``out``; the report's values."""
    from cryostream.baselines import topaz_available
    from cryostream.denoise.network import model_name, training_divergence

    report: dict = {"run": str(run), "store": None if store is None else str(store)}
    lines = [f"# Evaluation of the shipped model `{model_name(run)}`" if _shipped(run)
             else f"# Evaluation of `{run}`", ""]
    if diverged := training_divergence(run):  # the network scored is from before it: said first
        report["diverged"] = {"step": diverged.step, "checkpoint": diverged.checkpoint}
        lines += [f"**Note:** this run's {diverged.words('scored')}.", ""]
    if store is not None:
        report["test_split"] = a = compare_on_store(run, store, patches=patches, topaz=topaz_available())
        lines += test_split_section(a, record.recorrupt)
    if (Path(run) / "loss.png").exists():
        with writing(out / "training.png") as path:
            shutil.copy(Path(run) / "loss.png", path)
        lines += ["![training curve](training.png)", ""]
    if selection is not None:
        lines += truth_section(run, record, selection, out, tile, report, denoised, pixels)
    if residual:
        lines += residual_section(run, record, residual, out, report, tile, denoised)
    with writing(out / "report.md") as path:
        path.write_text("\n".join(lines) + "\n")
    with writing(out / "report.json") as path:
        path.write_text(json.dumps(report, indent=2))
    return report


def _shipped(run) -> bool:
    """Whether ``run`` is a model shipped with cryostream (named as one asks for it: general)."""
    from cryostream.denoise.network import model_name

    return model_name(run) != Path(str(run)).name
