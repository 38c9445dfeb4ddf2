"""What ``denoise -v`` says of each micrograph: its pixel size and optics with where each came
from, then what the steps found (the CTF's defocus and its error, the Thon rings, the CTF check
and its score, the gain used), in words; ``NAME.json``'s ``found`` holds every number. And,
without ``-v``, once a call, the note of a micrograph whose Thon rings are clear and whose CTF
check kept the radial gain (no warning: its output is sound), and at the call's end the note
of those whose measured signal-to-noise ratio lies above the learned weights' last row."""

from __future__ import annotations

import math

from cryostream.denoise.fallback import clear_rings_kept, no_rings, unsettled

__all__ = ["NO_BETTER", "optics_words", "found_words", "clear_rings_note", "beyond_rows",
           "beyond_rows_note", "MEASURED", "BEYOND_ADVICE", "MEASURED_TIMES", "UNMEASURED_ADVICE",
           "MicrographNotes"]

#: The progress note's words for a CTF check that kept the radial gain: it does as well.
NO_BETTER = "CTF check: the CTF shape does no better"

#: Each optics value: its words and the option that gives it.
_OPTICS = {"voltage_kv": ("{:g} kV", "--voltage (Python: voltage_kv=)"),
           "cs_mm": ("Cs {:g} mm", "--cs (Python: cs_mm=)"),
           "amplitude_contrast": ("amplitude contrast {:g}",
                                  "--amplitude-contrast (Python: amplitude_contrast=)")}


def _source(where: str) -> str:
    """A source of a value in words: ``"argument"``, ``"header"`` or a list's kind."""
    return {"argument": "--pixel-size (Python: pixel_size_angstrom=)",
            "header": "its header"}.get(where, f"its {where}")


def optics_words(micrograph, config) -> str:
    """The pixel size and optics of ``micrograph`` (an
    :class:`~cryostream.denoise.sources.InputMicrograph`), each with where it came from (its
    STAR file, its header, an option, or cryostream's defaults), e.g. ``pixel size 0.6575 Å
    from its header; 300 kV from --voltage; Cs 2.7 mm and amplitude contrast 0.1:
    cryostream's defaults …``. ``config``: the call's :class:`~cryostream.config.DenoiseConfig` (which
    options were given: :func:`~cryostream.denoise.pixels.given_optics`)."""
    from cryostream.denoise.pixels import given_optics

    given = given_optics(config)
    groups: dict[str, list[str]] = {}
    for key, (words, option) in _OPTICS.items():
        where = micrograph.optics_from.get(key)
        source = _source(where) if where else option if key in given else None
        groups.setdefault(source, []).append(words.format(micrograph.optics[key]))
    said = [f"pixel size {micrograph.pixel_size_angstrom:g} Å from "
            f"{_source(micrograph.pixel_size_from)}"]
    for source, values in sorted(groups.items(), key=lambda g: g[0] is None):  # defaults last
        listed = " and ".join([", ".join(values[:-1]), values[-1]] if len(values) > 1 else values)
        said.append(f"{listed} from {source}" if source else
                    f"{listed}: cryostream's defaults (a Krios's; no STAR file, option or header "
                    "gave them)")
    return "; ".join(said)


def _defocus(found: dict, fit: dict) -> str:
    """A CTF's defocus: U and V in µm with the error the gain gave it, the angle of U, where it
    came from, the fit's score and the Thon rings' against the bar they had to clear."""
    from cryostream.ctf import SETTLED_Z, THON_RING_Z

    where = fit.get("defocus_from")
    origin = ("fitted from its power spectrum" if where in (None, "spectrum") else
              f"from its {where}")
    error = fit.get("defocus_error_angstrom")
    details = [f"fit score {fit['score']:.4f}"] if fit.get("score") is not None else []
    z = found.get("ctf_rings_z", found.get("given_defocus_rings_z"))
    if z is not None:
        details.append(f"Thon rings z {z:.2f}, {SETTLED_Z if unsettled(fit) else THON_RING_Z:g} "
                       "needed")
    return (f"defocus U {fit['defocus_u_angstrom'] / 1e4:.3f} µm, V "
            f"{fit['defocus_v_angstrom'] / 1e4:.3f} µm" + (f" ±{error:.0f} Å" if error else "")
            + f", astigmatism angle {fit['astigmatism_angle_deg']:.1f}°, {origin}"
            + (f" ({'; '.join(details)})" if details else ""))


def beyond_rows(found: dict) -> str | None:
    """Where a micrograph's measured signal-to-noise ratio lies against the rows of its
    model's learned weights (its record ``found``: ``learned_weights_snr`` and
    ``learned_weights_rows``): ``"above"`` the last row, ``"below"`` the first, or None
    (among them, or no learned weights)."""
    ratio, rows = found.get("learned_weights_snr"), found.get("learned_weights_rows")
    if ratio is None or rows is None:
        return None
    return "above" if ratio > rows[1] else "below" if ratio < rows[0] else None


def _gain(found: dict, config) -> str:
    """The gain the micrograph's output took, in words."""
    mended = found.get("inverted_rings")
    inverted = (f" (the radial gain at {mended['angstrom'][0]:.1f}–{mended['angstrom'][1]:.1f} Å "
                "too, where the network's response was inverted)") if mended else ""
    learned, rows = found.get("learned_weights_snr"), found.get("learned_weights_rows")
    side = beyond_rows(found)
    beyond = "" if side is None else (
        f" (the table's rows span {rows[0]:.3g}–{rows[1]:.3g}: its "
        f"{'last' if side == 'above' else 'first'} row is used)")
    weights = (f", weighed by the learned weights at its measured signal-to-noise ratio "
               f"{learned:.3g}{beyond}") if learned is not None else ""
    if found.get("ctf_used"):
        gain = "the CTF-shaped Wiener gain above 20 Å, the radial one below"
    elif found.get("fallback") == "network_above_20A":
        gain = "the radial Wiener gain below 20 Å, the network's own response above" + inverted
    elif "ctf_used" in found or learned is not None or getattr(config, "wiener_gain", False):
        gain = "the radial Wiener gain"
    else:
        return "no gain: the network's output as it is"
    return f"gain: {gain}{weights}"


def found_words(found: dict, config) -> str:
    """What the steps found on a micrograph (its ``NAME.json``'s ``found``), in words: the
    CTF's defocus (fitted, or its STAR file's) with its error and the Thon rings' score, the
    CTF check's outcome and score, the gain used; the Noisier2Noise correction's α² and the
    detector defects mended where there were some. ``config``: the call's
    :class:`~cryostream.config.DenoiseConfig`."""
    said = []
    if "alpha2" in found:
        said.append(f"Noisier2Noise correction with α² {found['alpha2']:.3g}")
    defects = found.get("defects")
    if defects:
        mended = [f"{defects[k]} {what} pixel{'s' * (defects[k] != 1)}" for k, what in
                  (("hot_pixels", "hot"), ("cold_pixels", "cold")) if defects.get(k)]
        mended += [f"blank {what} {', '.join(defects[k])}" for k, what in
                   (("blank_rows", "rows"), ("blank_columns", "columns")) if defects.get(k)]
        said.append("mended: " + ", ".join(mended))
    if "ctf_used" in found:
        fit = found.get("ctf")
        if fit is None:
            coarse = found.get("pixel_size_angstrom", 0) >= 8
            said.append("no CTF fit (" + ("pixels of 8 Å or more leave no Thon ring finer than "
                                          "20 Å" if coarse else "under 1024 px a side") + ")")
        else:
            said.append(_defocus(found, fit))
            check = found.get("ctf_check")
            if no_rings(found.get("ctf_rings_z"), fit):
                rival = fit.get("rival_defocus_angstrom")
                said.append("CTF check not made: " + (
                    f"its 1024-px spectrum puts the mean defocus at {rival / 1e4:.3f} µm instead"
                    if unsettled(fit) and not no_rings(found.get("ctf_rings_z")) else
                    "no Thon rings found") + "; the fit is not used")
            elif check is None or not math.isfinite(check):
                said.append("CTF check not made")
            else:
                said.append(f"CTF check passed (score {check:+.2g}, under 0: the CTF-shaped gain "
                            "lowers the error by recorruption)" if check < 0 else
                            f"{NO_BETTER} (score {check:+.2g}, not under 0: the CTF-shaped "
                            "gain does not lower the error by recorruption, and the radial one "
                            "is kept)")
    said.append(_gain(found, config))
    if "odd_half" in found:
        said.append("output: the sum of the even and odd halves' outputs (the even half's "
                    "findings; NAME.json has the odd half's)")
    return "; ".join(said)


def clear_rings_note(name: str, found: dict) -> str | None:
    """The note of a micrograph (``name``, its record ``found``) whose Thon rings are clear and
    whose CTF check found the radial gain does as well
    (:func:`~cryostream.denoise.fallback.clear_rings_kept`), or None for another: nothing is
    wrong with its output, yet clear rings do not prove the pixel size or the optics, so a
    defocus far from the microscope's says to check them (at a wrong pixel size the rings are as
    clear, at a defocus scaled by the square of its error)."""
    fit = found.get("ctf")
    if found.get("ctf_used") or not fit or not clear_rings_kept(found.get("ctf_rings_z"),
                                                               found.get("ctf_check")):
        return None
    return (f"{name}: its Thon rings are clear (z {found['ctf_rings_z']:.1f}), so the CTF fit "
            f"found them (defocus {fit['defocus_u_angstrom'] / 1e4:.2f}/"
            f"{fit['defocus_v_angstrom'] / 1e4:.2f} µm), and the CTF check found the radial gain "
            "does as well on it: the radial gain is kept, and the output is sound (a denoise "
            "output's NAME.json records ctf_used false). Others like it in this call are not "
            "noted again (their notes read "
            f"'{NO_BETTER}'). If the fitted defocus is far from the one set on the microscope, "
            "check the pixel size (--pixel-size Å; Python: pixel_size_angstrom=) and the optics "
            "(--voltage, --cs, --amplitude-contrast; Python: DenoiseConfig voltage_kv, cs_mm, "
            "amplitude_contrast)")


def beyond_rows_note(above: list[tuple[str, float, float]], weighed: int) -> str | None:
    """The one note of a call whose micrographs measure a signal-to-noise ratio above the last
    row of their model's learned weights (``above``: each one's name, ratio and that row's
    ratio; ``weighed``: how many the weights weighed), or None where none does. The last
    row's weights are used there as they are (:meth:`~cryostream.denoise.weights.LearnedWeights.at`),
    where few or none of the simulated micrographs the table was fitted on lie (the general
    model's: at 0.50–0.92 Å/px, 8 of 48 above the 2.09 of its last row there, none above
    3.53). Below the first row, its simulated micrographs reach down to ratios of 0.03–0.14 in
    each pixel-size group, so its weights there were fitted on such micrographs: no note.
    What that cost on simulated micrographs is said (:data:`BEYOND_ADVICE`), and, where one
    lies more than :data:`MEASURED_TIMES` its row's ratio, that it was not measured so far
    above (:data:`UNMEASURED_ADVICE`)."""
    if not above:
        return None
    names = sorted(name for name, *_ in above)
    listed = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    who = (f"the micrograph denoised here ({listed}) measures" if weighed == 1 else
           f"all {weighed} micrographs denoised here ({listed}) measure" if len(above) == weighed
           else f"{len(above)} of the {weighed} micrographs denoised here ({listed}) measure")
    ratios, rows = [r for _, r, _ in above], sorted({round(row, 3) for *_, row in above})
    measured = f"{min(ratios):.3g}" + (f"–{max(ratios):.3g}" if len(ratios) > 1 else "")
    row = f"{rows[0]:.3g}" + (f"–{rows[-1]:.3g} by pixel size" if len(rows) > 1 else "")
    return (f"{who} a signal-to-noise ratio of {measured}, above the last row "
            f"of the model's learned weights ({row}), where few or none of the simulated "
            "micrographs the table was fitted on lie: the last row's weights are used as they "
            "are (each one's NAME.json gives its ratio, found.learned_weights_snr). "
            + _advice(max(r / last for _, r, last in above)))


def _advice(times: float) -> str:
    """:data:`BEYOND_ADVICE` where the ratios lie at most ``times`` their row's within what it
    was measured at (:data:`MEASURED_TIMES`), else :data:`UNMEASURED_ADVICE` naming ``times``."""
    return BEYOND_ADVICE if times <= MEASURED_TIMES else UNMEASURED_ADVICE.format(times=times)


#: What was measured above the learned weights' last row (benchmarks/above_table_gpu.py, three
#: simulated 2048² micrographs at 0.6575 Å/px each, white and rolled-off noise, H200, 2026-12-07;
#: the H100 ones of the same day agree): at 1.5–8.6 times the last row's 2.09 the default's FRC
#: with the truth was above --no-learned-weights' in every band; its error over the truth's
#: variance −1.3 to +0.8 % of that one's up to 5.2 times, +3.5 % at 8.6 times.
MEASURED = ("On simulated micrographs at up to 8.6 times that row's ratio, the output's FRC with "
            "the truth was higher in every band than without the learned weights, and its error "
            "within 1 % of that one's up to 5 times (3.5 % more at 8.6 times)")

#: What to do within what was measured.
BEYOND_ADVICE = (MEASURED + ": nothing needs doing; to see the difference on yours, denoise a "
                 "few with --no-learned-weights (Python: learned_weights=False)")

#: The most times the last row's ratio :data:`MEASURED` reaches (17.96 / 2.09).
MEASURED_TIMES = 8.6

#: The advice beyond :data:`MEASURED_TIMES` the last row's ratio: what was measured, and that
#: it says nothing there.
UNMEASURED_ADVICE = (MEASURED + "; at up to {times:.3g} times, as here, that was not measured: "
                     "denoise a few with --no-learned-weights (Python: learned_weights=False) "
                     "and compare")


class MicrographNotes:
    """The ``-v`` notes of a call's micrographs (each an
    :class:`~cryostream.denoise.sources.InputMicrograph`, ``config`` the call's
    :class:`~cryostream.config.DenoiseConfig`): their optics' words made here, where the
    options typed are known (:func:`~cryostream.denoise.pixels.typed_optics`), and said with
    what the steps found as each is done; and once in a call, the note of the first micrograph
    whose rings are clear and whose check kept the radial gain (:func:`clear_rings_note`), and
    at its end the note of those above the learned weights' last row (:meth:`end`)."""

    def __init__(self, config, micrographs):
        self.config, self.clear_said = config, False
        self.optics = {m.source: optics_words(m, config) for m in micrographs}
        self.weighed, self.above = 0, []  # by learned weights; those above their last row

    def end(self) -> None:
        """The call's last micrograph is done: its one note of those whose ratio lies above
        the learned weights' last row (:func:`beyond_rows_note`), where there are some."""
        import logging

        if note := beyond_rows_note(self.above, self.weighed):
            logging.getLogger("cryostream").info("%s", note)

    def say(self, name: str, key: str | None, found: dict) -> None:
        """The notes of the micrograph ``name`` (started as ``key``): at the debug level, and
        the first of a call whose rings are clear and whose check kept the radial gain; its
        ratio kept for :meth:`end` where the learned weights weighed it."""
        import logging

        log = logging.getLogger("cryostream")
        if "learned_weights_snr" in found:  # noted once, at the call's end (:meth:`end`)
            self.weighed += 1
            if beyond_rows(found) == "above":
                self.above.append((name, found["learned_weights_snr"],
                                   found["learned_weights_rows"][1]))
        if not self.clear_said and (note := clear_rings_note(name, found)):
            self.clear_said = True
            log.info("%s", note)
        if not log.isEnabledFor(logging.DEBUG):
            return
        if key in self.optics:
            log.debug("%s: %s", name, self.optics[key])
        log.debug("%s: %s", name, found_words(found, self.config))
