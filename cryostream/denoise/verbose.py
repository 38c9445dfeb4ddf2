"""What ``denoise -v`` says of each micrograph: its pixel size and optics with where each came
from, then what the steps found (the CTF's defocus and its error, the Thon rings, the CTF check
and its score, the gain used), in words; ``NAME.json``'s ``found`` holds every number. And,
without ``-v``, once a call, the note of a micrograph whose Thon rings are clear and whose CTF
check kept the radial gain (no warning: its output is sound)."""

from __future__ import annotations

import math

from cryostream.denoise.fallback import clear_rings_kept, no_rings, unsettled

__all__ = ["NO_BETTER", "optics_words", "found_words", "clear_rings_note", "MicrographNotes"]

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


def _gain(found: dict, config) -> str:
    """The gain the micrograph's output took, in words."""
    mended = found.get("inverted_rings")
    inverted = (f" (the radial gain at {mended['angstrom'][0]:.1f}–{mended['angstrom'][1]:.1f} Å "
                "too, where the network's response was inverted)") if mended else ""
    learned, rows = found.get("learned_weights_snr"), found.get("learned_weights_rows")
    beyond = "" if rows is None or rows[0] <= (learned or 0) <= rows[1] else (
        f" (the table's rows span {rows[0]:.3g}–{rows[1]:.3g}: its "
        f"{'last' if learned > rows[1] else 'first'} row is used)")
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


class MicrographNotes:
    """The ``-v`` notes of a call's micrographs (each an
    :class:`~cryostream.denoise.sources.InputMicrograph`, ``config`` the call's
    :class:`~cryostream.config.DenoiseConfig`): their optics' words made here, where the
    options typed are known (:func:`~cryostream.denoise.pixels.typed_optics`), and said with
    what the steps found as each is done; and once in a call, the note of the first micrograph
    whose rings are clear and whose check kept the radial gain (:func:`clear_rings_note`)."""

    def __init__(self, config, micrographs):
        self.config, self.clear_said = config, False
        self.optics = {m.source: optics_words(m, config) for m in micrographs}

    def say(self, name: str, key: str | None, found: dict) -> None:
        """The notes of the micrograph ``name`` (started as ``key``): at the debug level, and
        the first of a call whose rings are clear and whose check kept the radial gain."""
        import logging

        log = logging.getLogger("cryostream")
        if not self.clear_said and (note := clear_rings_note(name, found)):
            self.clear_said = True
            log.info("%s", note)
        if not log.isEnabledFor(logging.DEBUG):
            return
        if key in self.optics:
            log.debug("%s: %s", name, self.optics[key])
        log.debug("%s: %s", name, found_words(found, self.config))
