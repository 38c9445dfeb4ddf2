"""The checks ``prepare`` makes on each micrograph's pass-1 statistics beyond those every
command makes (:func:`~cryostream.preprocess.check_statistics`): a micrograph that is not in
counts, for the noise models that follow counts, hot and cold pixels, which the store holds at
the percentile (:func:`~cryostream.preprocess.mend_hot`), and blank rows and columns, which
the noise is measured without; and the separate targets' range (:func:`check_targets`). The
inputs' headers are read and checked first (:func:`read_inputs`)."""

from __future__ import annotations

import math
import os

from cryostream.config import PrepareConfig
from cryostream.errors import ConfigError, InvalidMicrographError
from cryostream.io.pixel_sizes import say_header_pixel_sizes, warn_mixed_pixel_sizes
from cryostream.io.stack import read_headers, warn_if_denoised
from cryostream.preprocess import HOT_CLIP

__all__ = ["cold_statistics", "check_counts", "check_targets", "warn_hot", "warn_blank", "check_pairs",
           "separate_targets", "read_inputs"]

#: The farthest a normalised target pixel may fall from zero in a float16 store (its largest
#: value is 65504), with room for the noise added to it.
FLOAT16_SAFE = 60000.0

#: The most of a micrograph's pixels that may be cold (under −HOT_CLIP times its percentile,
#: held at the percentile in the store) for the noise models that follow counts: a few dead
#: pixels of a gain correction, not a dead area (``denoise`` finds cold pixels by the darkest
#: 0.1 %, so it mends no more either).
COLD_SHARE = 1e-3


def cold_statistics(image, stats) -> tuple[int, float]:
    """How many pixels of a micrograph in memory (pass-1 ``stats``: percentile, finite, min,
    max) are cold, under −:data:`~cryostream.preprocess.HOT_CLIP` times its percentile (the
    store holds the percentile in their place, :func:`~cryostream.preprocess.mend_hot`), and the
    lowest pixel the store keeps. Only a micrograph whose minimum is that low is looked at again
    (in memory: nothing more is read); for the others, ``(0, min)``."""
    value, finite, lo = stats[:3]
    if not (finite and value > 0 and lo < -HOT_CLIP * value):
        return 0, lo
    kept = image[image >= -HOT_CLIP * value]
    return int(image.size - kept.size), float(kept.min()) if kept.size else lo


def check_counts(header, stats, config: PrepareConfig) -> None:
    """A micrograph far below zero (normalised to mean 0 by another program) is not in counts,
    which shot noise follows: an :class:`InvalidMicrographError` for the noise models that
    add or measure it (shot noise clipped every negative pixel, and fit's loss was NaN). Cold
    pixels (``stats[5]``, the lowest pixel kept ``stats[6]``: :func:`cold_statistics`) are held
    at the percentile in the store as hot ones are, and refuse it only where they are more
    than :data:`COLD_SHARE` of its pixels (a dead area, not a few dead pixels); nor do they
    overflow a float16 store any more."""
    value, _, lo, _ = stats[:4]
    cold, kept = stats[5:7]
    if config.noise.model not in ("poisson", "poisson-gaussian", "matched"):
        return
    share = cold / math.prod(header.shape)
    if kept < -value or share > COLD_SHARE:
        many = f"{cold} of them, {100 * share:.2g} %: not a few dead pixels; " if kept >= -value \
            else ""
        raise InvalidMicrographError(
            header.path, f"holds pixels far below zero ({many}as low as "
            f"{kept if kept < -value else lo:.4g}; its {config.percentile:g}th percentile "
            f"{value:.4g}), so it is not in electron counts, which the {config.noise.model} "
            "noise follows", "give the micrographs as motion correction wrote them (counts, not "
            "normalised), or (cryostream prepare) add Gaussian noise instead: --noise gaussian")


def target_range(header) -> tuple[float, float]:
    """Min and max of one target image, from one read (NaN and ±Inf show in one of them)."""
    from cryostream.io.mrc import read_rows

    image = read_rows(header, 0, header.shape[0])
    return float(image.min()), float(image.max())


def check_targets(kept, statistics: dict, config: PrepareConfig, compute, client=None) -> None:
    """The separate targets of the kept micrographs (``kept.target_headers``: ``--targets``, or
    the other halves), checked before any shard is written: an :class:`InvalidMicrographError`
    naming the target for NaN or Inf pixels and, for a float16 store, for pixels that, divided
    by its micrograph's percentile as the store divides them, fall beyond what float16 holds
    (a target in other units than its micrograph's: they had been stored as ±inf). The range
    of a target measured in pass 1 (a half that is also an input, in ``statistics``) is reused;
    the others are read once more (``compute``, on ``client`` if given)."""
    if not kept.target_headers:
        return
    from dask import delayed

    from cryostream.cluster import task_function

    todo = [t for t in kept.target_headers if t.path not in statistics]
    read = compute([delayed(task_function(target_range, client))(t) for t in todo],
                   label=f"pass 1 of 2: range of {len(todo)} targets") if todo else []
    ranges = {t.path: r for t, r in zip(todo, read, strict=True)}
    for h, t, p in zip(kept.headers, kept.target_headers, kept.percentiles, strict=True):
        lo, hi = ranges[t.path] if t.path in ranges else statistics[t.path][2:4]
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise InvalidMicrographError(t.path, f"holds NaN or Inf pixels (the target of {h.path})",
                                         "repair or replace the target")
        far = max(-lo, hi) / p
        if config.dtype == "float16" and far > FLOAT16_SAFE:
            raise InvalidMicrographError(
                t.path, f"holds pixels of {far:.3g} times its micrograph's {config.percentile:g}th "
                f"percentile ({h.path}; the store divides both by it), beyond what a float16 store "
                "holds (±65504: they would be stored as ±inf, and a training on them diverges)",
                "give the target on its micrograph's scale (the same units), or store float32 "
                "(--dtype float32)")


def warn_hot(headers, statistics: dict, percentile: float) -> None:
    """One :class:`~cryostream.denoise.defects.DefectWarning` for micrographs with pixels over
    :data:`~cryostream.preprocess.HOT_CLIP` times their percentile (hot pixels), and one for
    those with pixels under −HOT_CLIP times it (cold pixels), which the store holds at the
    percentile."""
    hot = [(statistics[h.path][3] / statistics[h.path][0], h) for h in headers
           if statistics[h.path][3] > HOT_CLIP * statistics[h.path][0]]
    _warn_held(hot, f"over {HOT_CLIP:g}", percentile, "hot pixels; up to {:.3g} times")
    cold = [(statistics[h.path][5], h) for h in headers if statistics[h.path][5]]
    _warn_held(cold, f"under −{HOT_CLIP:g}", percentile, "cold pixels, written far below zero; "
               "{:d}")


def _warn_held(held: list, where: str, percentile: float, what: str) -> None:
    import warnings

    from cryostream.denoise.defects import DefectWarning

    if held:
        worst, header = max(held, key=lambda pair: pair[0])
        n = len(held)
        warnings.warn(f"{n} micrograph{'s hold' if n > 1 else ' holds'} pixels {where} times "
                      f"{'their' if n > 1 else 'its'} {percentile:g}th percentile "
                      f"({what.format(worst)} in {os.path.basename(header.path)}): the store "
                      "holds the percentile in their place, so that no one pixel rules the "
                      "training", DefectWarning, stacklevel=5)


def warn_blank(found: dict[str, dict]) -> None:
    """One :class:`~cryostream.denoise.defects.DefectWarning` for the micrographs in ``found``
    (path: the record of their :class:`~cryostream.denoise.defects.Defects`) with blank rows
    or columns (a border left by motion correction, a dead line): their noise is measured
    without them, and the store's patches hold them as they are."""
    import warnings

    from cryostream.denoise.defects import DefectWarning

    blank = {path: lines for path, lines in found.items()
             if lines["blank_rows"] or lines["blank_columns"]}
    if not blank:
        return
    path, first = next(iter(blank.items()))
    lines = " and ".join(f"{what} {', '.join(first[key])}" for key, what in (
        ("blank_rows", "rows"), ("blank_columns", "columns")) if first[key])
    n = len(blank)
    warnings.warn(f"{n} micrograph{'s hold' if n > 1 else ' holds'} blank rows or columns (one "
                  f"value along each: a border left by motion correction, a dead line; "
                  f"{os.path.basename(path)}: {lines}): the noise is measured without them, and "
                  "patches that cross them are stored as they are", DefectWarning, stacklevel=4)


def check_pairs(inputs: list[str], targets: list[str], what: str = "targets (--targets)") -> None:
    """A :class:`ConfigError` for pairs that teach nothing or the wrong thing: a micrograph that
    is its own target (inputs equal to targets), or targets of the micrographs' names in
    another order (pairs are taken in order, so each micrograph would learn another's)."""
    same = [i for i, t in zip(inputs, targets, strict=True) if os.path.realpath(i) ==
            os.path.realpath(t)]
    if same:
        raise ConfigError(f"{what}: {same[0]} is its own target ({len(same)} of {len(inputs)} "
                          "pairs are one file twice): the network would learn to change nothing; "
                          "give the separate images (the truth, or the other half)")
    from cryostream.io.halves import EVEN_SUFFIXES, ODD_SUFFIXES, half_key

    suffixes = (*EVEN_SUFFIXES, *ODD_SUFFIXES)
    if all(half_key(i, suffixes) == half_key(t, suffixes) for i, t in zip(inputs, targets,
                                                                           strict=True)):
        return  # even/odd halves (each the other's target): one micrograph's both halves
    stem = [os.path.splitext(os.path.basename(p))[0] for p in inputs]
    names = [os.path.splitext(os.path.basename(p))[0] for p in targets]
    if sorted(stem) == sorted(names) and len(set(stem)) == len(stem) and stem != names:
        i = next(k for k, (a, b) in enumerate(zip(stem, names, strict=True)) if a != b)
        raise ConfigError(f"{what}: the micrographs' names in another order, so {stem[i]} would "
                          f"be paired with {names[i]} (pairs are taken in order); give the "
                          "targets in the micrographs' order (a folder of each: both sorted)")


def separate_targets(target_paths, headers, skipped, config: PrepareConfig):
    """Headers of the separate targets, one per micrograph, checked; ``None`` without targets."""
    if target_paths is None:
        if config.noise.model == "none":
            raise ConfigError("noise=none adds no noise: give the targets (--targets) or choose "
                              "a noise model")
        return None
    if config.noise.model != "none":
        raise ConfigError(f"targets were given with noise={config.noise.model!r}: paired stores "
                          "add no noise; use --noise none")
    if skipped:
        raise ConfigError("with separate targets every micrograph must be readable; fix or "
                          f"remove {skipped[0]['path']}")
    found, _ = read_headers(target_paths, permissive=False)
    if len(found) != len(headers):
        raise ConfigError(f"targets: {len(found)} images for {len(headers)} micrographs; give one "
                          "target per micrograph, in the same order")
    check_pairs([h.path for h in headers], [t.path for t in found])
    for h, t in zip(headers, found, strict=True):
        if t.shape != h.shape:
            raise ConfigError(f"targets: {t.path} is {t.shape[0]} × {t.shape[1]} but its "
                              f"micrograph {h.path} is {h.shape[0]} × {h.shape[1]}")
    return found


def read_inputs(paths, target_paths, config: PrepareConfig, permissive: bool, multiple: int):
    """The micrographs' headers, those skipped, and the targets' headers (``None`` without);
    micrographs smaller than a patch are refused, with a patch that fits them (a multiple of
    ``multiple``, :data:`cryostream.prepare.MODEL_MULTIPLE`)."""
    headers, skipped = read_headers(paths, permissive=permissive)
    warn_if_denoised(headers)
    say_header_pixel_sizes(headers, "correct the header (e.g. IMOD's alterheader)", stacklevel=4)
    warn_mixed_pixel_sizes(headers, "one store holds them all", "prepare each magnification on its own")
    target_headers = separate_targets(target_paths, headers, skipped, config)
    ny, nx = headers[0].shape
    if min(ny, nx) < config.patch_size:
        from cryostream.patches import patch_to_fit

        fits = patch_to_fit((ny, nx), config.patch_size, multiple)
        raise ConfigError(
            f"patch_size={config.patch_size}: larger than the micrographs ({ny} × {nx}, e.g. "
            f"{headers[0].path}); use a smaller --patch (e.g. --patch {fits}, as cryostream fit "
            f"would; Python: PrepareConfig(patch_size={fits}, stride={fits // 2}))"
        )
    return headers, skipped, target_headers
