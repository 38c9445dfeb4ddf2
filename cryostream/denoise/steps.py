"""Post-processing as composable steps, the way optax builds ``adamw`` from small transforms.

A :class:`Step` has one job. :meth:`Step.init` measures what it needs on the micrograph once
(the Noisier2Noise ``α²``, the fitted CTF and its check); :meth:`Step.apply` maps the running
estimate of an image (the micrograph itself, or a recorrupted copy of it when a score or the
calibration runs the pipeline) to the next one. :func:`chain` orders steps into a
:class:`Pipeline`, which also holds how the network is run (once, or averaged over the 8
rotations and flips) and the recorruption calibration. :func:`pipeline_for` builds the pipeline
of a :class:`~cryostream.config.DenoiseConfig`; :class:`Micrograph` is what the steps see.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from cryostream.denoise.binned import binned_estimate
from cryostream.denoise.corrections import (
    NetworkAbove,
    clamp_negative_rings,
    dihedral_mean,
    keep_input_mean,
    match_wiener_gain,
    n2n_alpha2,
    n2n_correct,
)
from cryostream.denoise.fallback import (
    CTF_FIT_SIDE,
    FIT_ADVICE,
    GIVEN_ADVICE,
    checked_gain,
    fallback_words,
    fit_for_gain,
    fit_with_error,
    no_rings,
    noise_below,
    warn_fallback,
    zeros_noise,
)
from cryostream.denoise.scores import calibrate_rings
from cryostream.denoise.weights import binned_offsets

__all__ = ["CTF_FIT_SIDE", "Micrograph", "Step", "N2NCorrection", "RingClamp", "KeepInputMean",
           "WienerGain", "fit_for_gain", "fit_with_error", "zeros_noise", "no_rings",
           "fallback_words", "checked_gain", "warn_fallback", "FIT_ADVICE", "GIVEN_ADVICE",
           "Pipeline", "BoundPipeline", "chain", "pipeline_for"]


@dataclasses.dataclass
class Micrograph:
    """One micrograph as the steps see it.

    Attributes
    ----------
    image : numpy.ndarray, (y, x) float32
        The micrograph divided by its percentile, as in training.
    pixel_size_angstrom : float
    record : cryostream.runs.RunRecord
        How the network was trained.
    source : str
        Its file, for messages.
    """

    image: np.ndarray
    pixel_size_angstrom: float
    record: Any
    source: str = "micrograph"
    _noise: Any = dataclasses.field(default=None, repr=False)

    def noise(self, image: np.ndarray | None = None):
        """The measured noise (:func:`cryostream.matched.estimate_noise`) of ``image`` (default:
        the micrograph, measured once)."""
        from cryostream.matched import estimate_noise, tile_for

        if image is None or image is self.image:
            if self._noise is None:
                self._noise = estimate_noise(self.image, self.pixel_size_angstrom,
                                             tile=tile_for(self.image.shape))
            return self._noise
        return estimate_noise(image, self.pixel_size_angstrom, tile=tile_for(image.shape))


class Step:
    """One post-processing step: :meth:`init` once per micrograph, :meth:`apply` per image."""

    name = "step"

    def init(self, micrograph: Micrograph) -> Any:
        """What the step measures on the micrograph before any image goes through."""
        return None

    def apply(self, estimate: np.ndarray, image: np.ndarray, state: Any,
              micrograph: Micrograph, binned: np.ndarray | None = None) -> np.ndarray:
        """The next estimate of ``image`` (the micrograph or a recorrupted copy of it);
        ``binned``: the network's output on ``image`` binned by 2, where the pipeline makes it
        (:mod:`cryostream.denoise.binned`)."""
        raise NotImplementedError

    def describe(self, state: Any) -> dict:
        """What the step found on the micrograph, for the output's record (JSON values)."""
        return {}


@dataclasses.dataclass(frozen=True)
class N2NCorrection(Step):
    """Noisier2Noise: ``((1 + α²)·f(z) − z) / α²``
    (:func:`~cryostream.denoise.corrections.n2n_correct`), with ``α²`` from the run's noise
    model and the micrograph."""

    name = "n2n_correction"

    def init(self, micrograph):
        return n2n_alpha2(micrograph.record, micrograph.image)

    def apply(self, estimate, image, state, micrograph, binned=None):
        return n2n_correct(estimate, image, state)

    def describe(self, state):
        return {"alpha2": float(state)}


@dataclasses.dataclass(frozen=True)
class RingClamp(Step):
    """Zero the rings where the estimate is anti-correlated with the image
    (:func:`~cryostream.denoise.corrections.clamp_negative_rings`)."""

    name = "ring_clamp"

    def apply(self, estimate, image, state, micrograph, binned=None):
        return clamp_negative_rings(estimate, image)


@dataclasses.dataclass(frozen=True)
class KeepInputMean(Step):
    """Give the estimate the image's mean
    (:func:`~cryostream.denoise.corrections.keep_input_mean`)."""

    name = "keep_input_mean"

    def apply(self, estimate, image, state, micrograph, binned=None):
        return keep_input_mean(estimate, image)


@dataclasses.dataclass(frozen=True)
class WienerGain(Step):
    """The Wiener filter's linear response from the image's measured noise, the rest kept
    (:func:`~cryostream.denoise.corrections.match_wiener_gain`).

    With ``ctf``, the gain above 20 Å follows the micrograph's CTF, fitted once from its own
    spectrum with ``optics`` (:func:`cryostream.ctf.fit_ctf` keywords). The fit is kept only
    if its Thon rings are found in the micrograph's power (:func:`cryostream.ctf.thon_ring_z`
    at least :data:`~cryostream.ctf.THON_RING_Z`) and
    :func:`~cryostream.denoise.scores.ctf_gain_check`, recorrupting with the noise at the
    fit's zeros (:func:`zeros_noise`), finds it lowers the error; otherwise a
    :class:`~cryostream.ctf.CTFFallbackWarning` names the micrograph and the fallback is used.
    Where the rings are not found, the micrograph's signal is too weak for its measured noise
    to set a gain above 20 Å either: the radial gain below 20 Å and the network's own linear
    response above (:class:`~cryostream.denoise.corrections.NetworkAbove`; for a model that
    estimates the clean image, the radial gain in a ring where that response is negative).
    Where they are found but the error check fails, or the micrograph is too small to fit, the
    radial gain.

    ``learned`` (``"ensemble"`` or ``"single"``): the run's table of learned weights for its
    network run as the ensemble or once (:mod:`cryostream.denoise.weights`) weighs the gain's
    linear response and the estimate's rest per band of frequency, by the micrograph's
    pixel size where the table has it and its measured signal-to-noise ratio (recorded as
    ``learned_weights_snr``; its recorrupted copies take the same row).
    """

    ctf: bool = False
    optics: tuple = ()
    learned: str | None = None
    name = "wiener_gain"

    def weights_state(self, micrograph, spectrum=None) -> dict:
        """``{"table": …, "snr": …}``: the run's learned weights for ``learned`` and the
        micrograph's measured ratio (``spectrum``: its mean-removed ``rfft2`` if made
        already), or ``{"table": None}`` without ``learned``."""
        if self.learned is None:
            return {"table": None}
        from cryostream.denoise.weights import measured_snr, weights_for

        table = weights_for(micrograph.record, self.learned == "ensemble")
        if table is None:
            from cryostream.errors import ConfigError

            raise ConfigError(f"{micrograph.record.path}: no table of learned weights for "
                              f"{'the ensemble' if self.learned == 'ensemble' else 'one pass'}")
        image = micrograph.image
        if spectrum is None:
            import scipy.fft

            spectrum = scipy.fft.rfft2(image - image.mean(), workers=-1)
        return {"table": table.for_pixel_size(micrograph.pixel_size_angstrom),
                "snr": measured_snr(spectrum, image.shape, micrograph.noise())}

    def init(self, micrograph):
        import scipy.fft

        if not self.ctf and self.learned is None:
            return None
        image = micrograph.image
        spectrum = scipy.fft.rfft2(image - image.mean(), workers=-1)
        state = self.weights_state(micrograph, spectrum)
        if not self.ctf:
            return state
        return {**state, **self.fitted(micrograph, spectrum)}

    def fitted(self, micrograph, spectrum, quiet: bool = False) -> dict:
        """The state of the CTF fitted from the micrograph's ``spectrum`` (its mean-removed
        ``rfft2``): the fit, its rings' score and its check (:meth:`checked`)."""
        from cryostream.ctf import thon_ring_z

        image = micrograph.image
        fit = fit_for_gain(image, micrograph.pixel_size_angstrom, dict(self.optics))
        if fit is None:  # recorded: found["ctf"] is None
            return {"fit": None, "check": None, "used": False}
        rings = thon_ring_z(spectrum, image.shape, fit)
        fit = fit_with_error(fit, rings)  # the gain fades the rings it cannot place
        return {**self.checked(micrograph, fit, f"{micrograph.source}: the CTF fitted from its "
                               f"spectrum ({fit.defocus_u_angstrom:.0f}/"
                               f"{fit.defocus_v_angstrom:.0f} Å, score {fit.score:.4f})", rings,
                               FIT_ADVICE, spectrum, quiet=quiet), "rings_z": rings}

    def checked(self, micrograph, fit, what: str, rings_z=None, advice: str = GIVEN_ADVICE,
                spectrum=None, check: float | None = None, quiet: bool = False) -> dict:
        """The state of a CTF-shaped gain with ``fit``: the check (:func:`checked_gain`;
        ``check``: made already) with the noise at the fit's zeros (:func:`zeros_noise`)
        unless its rings are not found, and whether the fit is used. (The gain itself needs
        no noise above 20 Å, where it measures each band's noise from the micrograph's own
        spectrum, :func:`~cryostream.ctf.ctf_wiener_gain`; below, the radial gain takes the
        measured noise times the zeros' factor just above 20 Å, :func:`noise_below`.)
        The check's :func:`~cryostream.ctf.ctf_gain_grid` is kept for the gain of a passed
        check (about 6 bytes a pixel until the micrograph is done, 2.5 s of a full-size one's
        CPU time saved)."""
        from cryostream.ctf import ctf_gain_grid

        noise = None if no_rings(rings_z, fit) else zeros_noise(micrograph.image,
                                                                micrograph.noise(), fit, spectrum)
        grid = None
        if check is None:
            grid = None if noise is None else ctf_gain_grid(micrograph.image.shape, fit)
            check = checked_gain(micrograph.image, micrograph.noise() if noise is None
                                 else noise[0], fit, what, rings_z, advice=advice,
                                 quiet=quiet, grid=grid)
        used = check < 0
        return {"fit": fit, "check": check, "used": used,
                **({"zeros_scale": noise[1], "below_scale": noise[2]}
                   if used and noise is not None else {}),
                **({"grid": grid} if used and grid is not None else {})}

    def apply(self, estimate, image, state, micrograph, binned=None):
        if state is not None and state.get("used"):
            shape = state["fit"]
            if "grid" in state and image.shape == micrograph.image.shape:  # the check's grid
                shape = (shape, state["grid"])
        elif state is not None and no_rings(state.get("rings_z"), state.get("fit")):
            shape = NetworkAbove(micrograph.pixel_size_angstrom,
                                 mend_inverted=micrograph.record.estimates_clean)
        else:
            shape = None
        table = None if state is None else state["table"]
        # what the fallback mended, recorded for the micrograph itself (not a recorrupted copy)
        found = {} if isinstance(shape, NetworkAbove) and image is micrograph.image else None
        noise = micrograph.noise(image)
        if state is not None and "below_scale" in state:  # the radial gain's, below 20 Å
            noise = noise_below(noise, state["below_scale"])
        out = match_wiener_gain(estimate, image, noise, ctf=shape,
                                weights=table, snr=None if table is None else state["snr"],
                                binned=binned, found=found)
        if found is not None:
            state["inverted_rings"] = found.get("inverted_rings")
        return out

    def describe(self, state):
        if state is None:
            return {}
        learned = {} if state["table"] is None else {
            "learned_weights_snr": round(float(state["snr"]), 4),  # and the rows it lies among
            "learned_weights_rows": [round(min(state["table"].snr), 4),
                                     round(max(state["table"].snr), 4)]}
        if "fit" not in state:  # the radial gain
            return learned
        fallback = {} if state["used"] else {
            "fallback": "network_above_20A" if no_rings(state.get("rings_z"), state["fit"])
            else "radial"}
        if state.get("inverted_rings"):  # rings of negative response given the radial gain
            fallback["inverted_rings"] = state["inverted_rings"]
        if state["fit"] is None:
            return {"ctf": None, "ctf_used": False, **fallback, **learned}
        fit = state["fit"]
        return {"ctf": {"defocus_u_angstrom": fit.defocus_u_angstrom,
                        "defocus_v_angstrom": fit.defocus_v_angstrom,
                        "astigmatism_angle_deg": fit.astigmatism_angle_deg,
                        "score": fit.score,
                        # the error its rings' score gave it, where the gain used it
                        "defocus_error_angstrom": round(fit.defocus_error_angstrom, 1)
                        if state["used"] else None,
                        **({"rival_defocus_angstrom": round(fit.rival_defocus_angstrom)}
                           if fit.rival_defocus_angstrom is not None else {})},
                **({"ctf_rings_z": round(state["rings_z"], 2)} if "rings_z" in state else {}),
                "ctf_check": float(state["check"]) if math.isfinite(state["check"]) else None,
                "ctf_used": bool(state["used"]), **fallback, **learned,
                **({"noise_scale_at_ctf_zeros": state["zeros_scale"],
                    "noise_scale_below_20A": round(state["below_scale"], 3)}
                   if "zeros_scale" in state else {})}


@dataclasses.dataclass
class BoundPipeline:
    """A :class:`Pipeline` bound to one micrograph and a network: ``self(image)`` is the whole
    denoiser for the micrograph or a recorrupted copy of it (normalised units)."""

    pipeline: Pipeline
    micrograph: Micrograph
    network: Callable[[np.ndarray], np.ndarray]
    states: tuple
    binned_offsets: int = 1

    def __call__(self, image: np.ndarray, binned: np.ndarray | None = None) -> np.ndarray:
        """The denoised ``image``; ``binned``: the binned pass's output on it, if computed
        already (:func:`~cryostream.denoise.binned.binned_estimate`)."""
        if self.pipeline.ensemble:
            out = dihedral_mean(self.network, image)
        else:
            out = self.network(image)
        if self.pipeline.binned and binned is None:
            binned = binned_estimate(self.network, image, self.pipeline.ensemble,
                                     self.micrograph.record.percentile, self.binned_offsets)
        for step, state in zip(self.pipeline.steps, self.states, strict=True):
            out = step.apply(out, image, state, self.micrograph, binned=binned)
        return out

    def describe(self) -> dict:
        """The pixel size the steps used and what each step found on the micrograph (JSON
        values)."""
        found = {"pixel_size_angstrom": float(self.micrograph.pixel_size_angstrom)}
        for step, state in zip(self.pipeline.steps, self.states, strict=True):
            found.update(step.describe(state))
        return found


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """Steps in order, how the network runs (``ensemble``; ``binned``: also on the image
    binned by 2, :mod:`cryostream.denoise.binned`) and the recorruption calibration
    (``calibrate`` passes, :func:`~cryostream.denoise.scores.calibrate_rings`; 0 for none)."""

    steps: tuple[Step, ...] = ()
    ensemble: bool = False
    calibrate: int = 0
    binned: bool = False

    def bind(self, micrograph: Micrograph, network: Callable) -> BoundPipeline:
        """Measure what the steps need on ``micrograph`` (once) and return the denoiser (its
        binned pass as the run's table of learned weights was fitted with)."""
        offsets = binned_offsets(micrograph.record, self.ensemble) if self.binned else 1
        return BoundPipeline(self, micrograph, network,
                             tuple(step.init(micrograph) for step in self.steps), offsets)

    def run(self, micrograph: Micrograph, network: Callable,
            binned: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
        """The denoised micrograph (normalised units) and what the steps found on it;
        ``binned``: the binned pass's output on it, if computed already."""
        bound = self.bind(micrograph, network)
        if self.calibrate:
            estimate = calibrate_rings(bound, micrograph.image, micrograph.noise(),
                                       draws=self.calibrate)[0]
        else:
            estimate = bound(micrograph.image, binned)
        return estimate, bound.describe()


def chain(*steps: Step, ensemble: bool = False, calibrate: int = 0,
          binned: bool = False) -> Pipeline:
    """A :class:`Pipeline` of ``steps``, applied in the order given."""
    return Pipeline(tuple(steps), ensemble=ensemble, calibrate=calibrate, binned=binned)


def pipeline_for(config) -> Pipeline:
    """The pipeline a :class:`~cryostream.config.DenoiseConfig` describes: the Noisier2Noise
    correction, the ring clamp and the input's mean, then the (CTF-shaped) Wiener gain with the
    learned weights."""
    steps: list[Step] = []
    if config.n2n_correction:
        steps.append(N2NCorrection())
        if config.n2n_clamp:
            steps.append(RingClamp())
        steps.append(KeepInputMean())
    if config.wiener_gain or config.ctf_gain:
        learned = ("ensemble" if config.ensemble else "single") if config.learned_weights else None
        steps.append(WienerGain(ctf=config.ctf_gain, optics=tuple(config.optics.items()),
                                learned=learned))
    return chain(*steps, ensemble=config.ensemble, calibrate=config.calibrate,
                 binned=bool(config.binned_pass))
