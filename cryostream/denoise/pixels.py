"""Each input micrograph's pixel size: from ``--pixel-size``, its STAR file's optics group or
its header (an EPU file's FEI extended header where the MRC header leaves it unset), in that
order, checked against the range a micrograph can have; the warnings where the sources
disagree; and a note where the microscope's optics are assumed."""

from __future__ import annotations

import contextlib
import contextvars
import math
import warnings

from cryostream.errors import InvalidMicrographError
from cryostream.io.cryosparc import list_kind
from cryostream.io.pixel_sizes import (
    PIXEL_RANGE,
    PixelSizeWarning,
    pixel_size_number,
    say_header_pixel_sizes,
    unset_pixel_size,
    warn_mixed_pixel_sizes,
    warn_unequal_axes,
)
from cryostream.io.star import StarFileWarning

__all__ = ["PIXEL_RANGE", "PixelSizeWarning", "check_pixel_size", "pixel_size_for",
           "warn_unequal_axes", "say_header_pixel_sizes", "say_own_pixel_sizes", "far_from_header",
           "argument_disagrees",
           "warn_header_pixel_sizes", "warn_pixel_size_argument",
           "note_assumed_optics", "typed_optics", "given_optics", "header_optics",
           "warn_outside_model"]


def check_pixel_size(pixel_size_angstrom) -> float | None:
    """A pixel size given as an argument (``--pixel-size``), checked before any file is read:
    as a float (NumPy's numbers too: :func:`~cryostream.io.pixel_sizes.pixel_size_number`), or
    a :class:`~cryostream.errors.ConfigError` unless a number within :data:`PIXEL_RANGE` Å."""
    from cryostream.errors import ConfigError

    if pixel_size_angstrom is None:
        return None
    value = pixel_size_number(pixel_size_angstrom, " (--pixel-size)")
    if not PIXEL_RANGE[0] <= value <= PIXEL_RANGE[1]:  # infinity too
        raise ConfigError(f"pixel_size_angstrom={pixel_size_angstrom!r} (--pixel-size): a pixel "
                          f"size of {value:g} Å is outside {PIXEL_RANGE[0]:g}–"
                          f"{PIXEL_RANGE[1]:g} Å; pass the micrographs' pixel size in Å")
    return value


def pixel_size_for(header, star_entry, pixel_size_angstrom,
                   kind: str = "STAR file") -> tuple[float, str]:
    """``(Å, source)`` of a micrograph (its :class:`~cryostream.io.mrc.MicrographHeader` and
    :class:`~cryostream.io.star.StarMicrograph` or None): ``pixel_size_angstrom`` if given
    (``"argument"``), else its STAR file's (``kind``: ``"STAR file"``, or a cryoSPARC table's),
    else its header's (``"header"``; ``"EPU header"`` where an EPU micrograph's FEI extended
    header gave it, :func:`~cryostream.io.fei.pixel_size_with_fei`); an
    :class:`InvalidMicrographError` where none is set or
    it is outside :data:`PIXEL_RANGE`."""
    optics = star_entry.optics if star_entry is not None else None
    if pixel_size_angstrom is not None:
        value, source, given = float(pixel_size_angstrom), "argument", "--pixel-size"
    elif optics is not None and optics.pixel_size_angstrom:
        value, source, given = optics.pixel_size_angstrom, kind, f"its {kind}"
    elif header.pixel_size_angstrom > 0:  # the MRC header's, or an EPU header's in its place
        source = "EPU header" if header.pixel_size_from == "EPU header" else "header"
        value, given = header.pixel_size_angstrom, f"its {source}"
    else:
        raise InvalidMicrographError(header.path, unset_pixel_size(header)
                                     + (f" and its {kind} gives none" if star_entry else ""),
                                     "pass --pixel-size Å (Python: pixel_size_angstrom=)")
    if not PIXEL_RANGE[0] <= value <= PIXEL_RANGE[1]:  # NaN and infinity too
        raise InvalidMicrographError(header.path, f"a pixel size of {value:g} Å (from {given}) "
                                     f"is outside {PIXEL_RANGE[0]:g}–{PIXEL_RANGE[1]:g} Å",
                                     "pass the right --pixel-size Å (Python: "
                                     "pixel_size_angstrom=), or correct the source")
    return value, source


def say_own_pixel_sizes(headers) -> None:
    """For the micrographs whose pixel size is their headers' (``headers``: no ``--pixel-size``
    or STAR file gives one): :func:`say_header_pixel_sizes`, and one :class:`PixelSizeWarning`
    where they give sizes more than 1 % apart, naming those that stand out and a 1 Å
    placeholder (:func:`~cryostream.io.pixel_sizes.warn_mixed_pixel_sizes`, as ``prepare`` and
    ``fit`` say it). STAR files' pixel sizes are not compared: their optics groups state them,
    and groups of several magnifications are the scientist's to give (a header that differs
    from its STAR file is said by :func:`warn_header_pixel_sizes`)."""
    say_header_pixel_sizes(headers, stacklevel=5)
    warn_mixed_pixel_sizes(headers, "each micrograph is taken at its own, and a wrong one "
                           "misplaces its CTF fit (the defocus comes out scaled by the square of "
                           "the error) and the scale the network sees", "nothing to do",
                           option="run {them} on {their} own with --pixel-size Å (Python: "
                           "pixel_size_angstrom=)", stacklevel=5)


def argument_disagrees(value: float, header, star_entry, kind: str = "STAR file") -> tuple | None:
    """Where a given pixel size ``value`` disagrees with the micrograph's own: ``("its STAR
    file", Å, file name)`` where its STAR file gives another (1 % or more off), ``("the MRC
    header", Å, file name)`` (or the EPU header, where that gave it) where the header is twice or
    half of it or further off (:func:`far_from_header`); else None."""
    from pathlib import Path

    optics = star_entry.optics if star_entry is not None else None
    name = Path(header.path).name
    if optics is not None and optics.pixel_size_angstrom and not math.isclose(
            value, optics.pixel_size_angstrom, rel_tol=0.01):
        return f"its {kind}", optics.pixel_size_angstrom, name
    if far_from_header(value, header, star_entry):
        return f"the {header.pixel_size_from}", header.pixel_size_angstrom, name
    return None


def far_from_header(value: float, header, star_entry) -> bool:
    """Whether a given pixel size is twice or half the header's or further off (a typo, a
    binning mix-up), and not the micrograph's STAR file's either."""
    if header.pixel_size_angstrom <= 0 or 1 / 1.9 < value / header.pixel_size_angstrom < 1.9:
        return False
    optics = star_entry.optics if star_entry is not None else None
    return optics is None or optics.pixel_size_angstrom != value


def warn_header_pixel_sizes(star, differ: list[tuple]) -> None:
    """One :class:`~cryostream.io.star.StarFileWarning` for a STAR file whose pixel size is
    used where its micrographs' headers give another (``differ``: STAR value, header value,
    file name and, optionally, the header that gave it, ``"MRC header"`` or ``"EPU header"``),
    each pair of values named with one of its files and the header it is in."""
    pairs: dict[tuple, list[str]] = {}
    for star_value, header_value, name, *header in differ:
        pairs.setdefault((star_value, header_value, *(header or ["MRC header"])), []).append(name)
    kind = list_kind(star.path)
    why = "RELION's headers are often wrong" if kind == "STAR file" else "cryoSPARC's jobs use it"
    listed = "; ".join(f"{s:g} Å in the {kind}, {h:g} Å in the "
                       f"{'header' if header == 'MRC header' else header} of {names[0]}"
                       + (f" and {len(names) - 1} more" if len(names) > 1 else "")
                       for (s, h, header), names in list(pairs.items())[:4])
    headers = "MRC headers'" if all(h == "MRC header" for _, _, h in pairs) else "headers'"
    warnings.warn(f"{star.path}: its pixel size differs from the {headers} ({listed}); the "
                  f"{kind}'s is used ({why}): pass --pixel-size Å "
                  "(Python: pixel_size_angstrom=) if it is not right", StarFileWarning,
                  stacklevel=4)


def warn_pixel_size_argument(value: float, off: list[tuple]) -> None:
    """One :class:`PixelSizeWarning` for ``--pixel-size`` (``value``, used) where it disagrees
    with micrographs' own (``off``: :func:`argument_disagrees` of each)."""
    where, other, name = off[0]
    more = f" and {len(off) - 1} more" if len(off) > 1 else ""
    warnings.warn(f"--pixel-size {value:g} Å is {value / other:.3g}× the {other:g} Å in {where} "
                  f"of {name}{more}; it is used as given: check it (a wrong pixel size "
                  "misplaces the CTF fit; nothing to do if the micrographs' own are wrong)",
                  PixelSizeWarning, stacklevel=4)


_TYPED = contextvars.ContextVar("typed_optics", default=frozenset())


@contextlib.contextmanager
def typed_optics(keys):
    """Within it, the optics options in ``keys`` (``voltage_kv``, ``cs_mm``,
    ``amplitude_contrast``) count as given even at cryostream's default value: the command
    line knows ``--voltage 300`` was typed, which a config of 300 kV cannot tell."""
    token = _TYPED.set(frozenset(keys))
    try:
        yield
    finally:
        _TYPED.reset(token)


def given_optics(config) -> dict:
    """The config's optics given by the user: those other than cryostream's defaults, and
    those typed (:func:`typed_optics`)."""
    from cryostream.config import DenoiseConfig

    default, typed = DenoiseConfig().optics, _TYPED.get()
    return {k: v for k, v in config.optics.items() if v != default[k] or k in typed}


def header_optics(header, config) -> dict:
    """The optics a micrograph's MRC header gives where no option does (:func:`given_optics`):
    the voltage of an EPU file's FEI extended header
    (:attr:`~cryostream.io.mrc.MicrographHeader.voltage_kv`); a STAR file's win over them."""
    if header.voltage_kv > 0 and "voltage_kv" not in given_optics(config):
        return {"voltage_kv": header.voltage_kv}
    return {}


def note_assumed_optics(config, micrographs: list, command: str = "denoise") -> None:
    """A note where micrographs (each an :class:`~cryostream.denoise.sources.InputMicrograph`,
    those about to be denoised) take their optics from no STAR file (:attr:`optics_from`) and
    no option: the CTF fit and the output STAR file's optics table then take cryostream's
    defaults. Where only some of the voltage, Cs and amplitude contrast are missing (the rest
    from the STAR file, an option or the header), the note names those, and the voltages an EPU
    header gave. One note for each set of missing ones, so that a micrograph whose header gave
    its voltage is not counted among those that take 300 kV. ``command``: ``"evaluate"`` for
    its residual check, which has no optics options and writes no STAR file: the note says its
    numbers assume those optics and that a STAR file listing the micrographs gives others;
    ``"arrays"`` for micrographs given to :func:`~cryostream.denoise.denoise` as an array
    (:func:`~cryostream.denoise.arrays.array_micrographs`), which carry no optics and write no
    STAR file: the note names the config's fields to give, in Python (none where
    ``config.ctf_gain`` is False: no CTF is fitted, so no optics are used)."""
    if command == "arrays" and config.ctf_gain is False:
        return
    given = given_optics(config)  # an option given is no default taken: the others still are
    keys = ("voltage_kv", "cs_mm", "amplitude_contrast")
    groups: dict[tuple, list] = {}
    for m in micrographs:
        if lack := tuple(k for k in keys if k not in m.optics_from and k not in given):
            groups.setdefault(lack, []).append(m)
    for lack, group in groups.items():
        _note_lacking(config, lack, group, command)


def _note_lacking(config, which: tuple, micrographs: list, command: str = "denoise") -> None:
    """The note of :func:`note_assumed_optics` for ``micrographs`` that all lack the optics
    ``which`` (keys of :attr:`~cryostream.config.DenoiseConfig.optics`)."""
    import logging

    count, every = len(micrographs), len(which) == 3
    has = " has" if count == 1 else "s have"
    named = {"voltage_kv": ("voltage", f"{config.voltage_kv:g} kV", "--voltage"),
             "cs_mm": ("Cs", f"Cs {config.cs_mm:g} mm", "--cs"),
             "amplitude_contrast": ("amplitude contrast",
                                    f"amplitude contrast {config.amplitude_contrast:g}",
                                    "--amplitude-contrast")}
    values = _listed([named[k][1] for k in which])
    if command == "evaluate":  # it has no option to set them and writes no STAR file
        source, take = "a STAR file", "the residual check's CTF fit takes"
        assumed = (f"{values}, so its numbers assume "
                   + ("a Krios's optics" if every else "those" if len(which) > 1 else "that")
                   + f" (nothing to do if {'they are' if every else 'that is'} your "
                   "microscope's)")
        it, its = ("it", "its") if count == 1 else ("them", "their")
        fix = (f"evaluate has no option for them: for another microscope, give --residual a STAR "
               f"file that lists {it} with {its} optics (Python: residual=STAR_FILE)")
    elif command == "arrays":  # no STAR file gives them, none is written: the config alone
        source, take = "config= (an array carries none)", "the CTF fit takes"
        assumed = values + (" (a Krios; nothing to do if they are your microscope's)" if every
                            else " (nothing to do if that is your microscope's)")
        fix = (f"for another, pass config=DenoiseConfig({', '.join(f'{k}=...' for k in which)})"
               + (", e.g. voltage_kv=200 for a Glacios or a Talos Arctica" if every else ""))
    else:
        source = "a STAR file or an option"
        # --raw (ctf_gain False) fits no CTF: only the STAR file's optics table takes them
        take = ("the CTF fit and the output STAR file's optics table take"
                if config.ctf_gain is not False else "the output STAR file's optics table takes")
        assumed = values + (" (a Krios; nothing to do if they are your microscope's)" if every
                            else " (nothing to do if that is your microscope's)")
        fix = (f"for another, pass {_listed([named[k][2] for k in which])} (Python: the "
               f"DenoiseConfig's {_listed(which)})"
               + (", e.g. --voltage 200 for a Glacios or a Talos Arctica" if every else ""))
    log = logging.getLogger("cryostream").info
    if every:
        log("%d micrograph%s no microscope optics from %s: %s %s; %s", count, has, source, take,
            assumed, fix)
        return
    epus = [m for m in micrographs if m.optics_from.get("voltage_kv") == "EPU header"]
    volts = sorted({m.optics["voltage_kv"] for m in epus})
    headers = ("the micrograph's EPU header" if count == 1 else "the micrographs' EPU headers"
               if len(epus) == count else f"the EPU headers of {len(epus)} of them")
    epu = (f"; {' and '.join(f'{v:g}' for v in volts)} kV from {headers}" if volts else "")
    log("%d micrograph%s no %s from %s (the rest of %s optics given%s): %s %s; %s", count, has,
        " or ".join(named[k][0] for k in which), source, "its" if count == 1 else "their", epu,
        take, assumed, fix)


def _listed(words) -> str:
    """``"a, b and c"``."""
    words = list(words)
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def warn_overridden_optics(config, entries: list, kinds: list | None = None) -> None:
    """One :class:`~cryostream.io.star.StarFileWarning` per option among ``--voltage``,
    ``--cs`` and ``--amplitude-contrast`` given (:func:`given_optics`) where a STAR
    file's optics give micrographs (``entries``: each one's
    :class:`~cryostream.io.star.StarMicrograph` or None) another value: the STAR file's win, so
    the option is not used for them, which would otherwise pass without a word. ``kinds``: what
    lists each one (:func:`~cryostream.io.cryosparc.list_kind`; default: STAR files), named
    with its own field and fix."""
    named = {"voltage_kv": ("--voltage", " kV", "rlnVoltage", "ctf/accel_kv"),
             "cs_mm": ("--cs", " mm", "rlnSphericalAberration", "ctf/cs_mm"),
             "amplitude_contrast": ("--amplitude-contrast", "", "rlnAmplitudeContrast",
                                    "ctf/amp_contrast")}
    kinds = kinds or ["STAR file"] * len(entries)
    for key, value in given_optics(config).items():
        for kind in dict.fromkeys(kinds):
            theirs = [e.optics.ctf_keywords()[key] for e, k in zip(entries, kinds, strict=True)
                      if k == kind and e is not None and e.optics is not None
                      and e.optics.ctf_keywords().get(key, value) != value]
            if not theirs:
                continue
            flag, unit, column, field = named[key]
            star = kind == "STAR file"
            table = "'s optics table" if star else ""
            many = len(theirs) > 1
            warnings.warn(
                f"{flag} {value:g}{unit} is not used for {len(theirs)} micrograph"
                f"{'s' if many else ''}: {'their' if many else 'its'} "
                f"{kind}{table} gives {theirs[0]:g}{unit} "
                f"({column if star else field}), and a {kind}'s optics win; if the {kind} is "
                "wrong, correct " + ("its data_optics" if star else "it in cryoSPARC"),
                StarFileWarning, stacklevel=4)


def warn_outside_model(run: str, micrographs: list) -> None:
    """One :class:`PixelSizeWarning` where micrographs (``InputMicrograph``, or an array's:
    :func:`~cryostream.denoise.arrays.array_micrographs`) have a pixel size
    well outside those the model's learned weights were fitted on (from 0.8 times the smallest
    to 1.2 times the largest: 0.47–1.62 Å for the general model, trained on 0.5–1.5 Å): its
    network sees the particles at a scale it was not trained on."""
    from pathlib import Path

    from cryostream.denoise.network import model_name, model_record

    table = (model_record(run).learned_weights or {}).get("ensemble") or {}
    sizes = [p for p in table.get("pixel_size") or () if p]
    if not sizes:
        return
    low, high = 0.8 * min(sizes), 1.2 * max(sizes)
    off = [m for m in micrographs if not low <= m.pixel_size_angstrom <= high]
    if off:
        first = off[0]
        source = first.pixel_size_from  # an array's: "pixel_size_angstrom=" or its attribute
        given = source in ("argument", "pixel_size_angstrom=")
        where = "--pixel-size" if source == "argument" else source if given else f"its {source}"
        fix = "" if given else (" (pixel_size_angstrom= corrects a wrong one)"
                                if source.startswith("xarray") else
                                " (--pixel-size Å corrects a wrong one)")
        warnings.warn(
            f"{len(off)} micrograph{'s have' if len(off) > 1 else ' has'} a pixel size outside "
            f"the {low:.2f}–{high:.2f} Å that the model ({model_name(run)}) was trained and "
            "calibrated on "
            f"({first.pixel_size_angstrom:g} Å, from {where}, for {Path(first.source).name}): "
            f"its network sees the particles at another scale; check the pixel size{fix}, or "
            "fit a model on these micrographs (cryostream fit)", PixelSizeWarning, stacklevel=3)
