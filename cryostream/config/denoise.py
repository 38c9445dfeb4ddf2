"""How a trained network's output becomes the denoised micrograph."""

from __future__ import annotations

import dataclasses

from cryostream.config.checks import check_positive, store_floats
from cryostream.errors import ConfigError

__all__ = ["DenoiseConfig"]

@dataclasses.dataclass(frozen=True)
class DenoiseConfig:
    """How a trained network's output becomes the denoised micrograph.

    Every option of :func:`cryostream.denoise.denoise` and :func:`cryostream.denoise.rank_runs`
    lives here; :meth:`pipeline` builds the ordered post-processing steps
    (:mod:`cryostream.denoise.steps`), and each output records the config it was made with.

    Parameters
    ----------
    n2n_correction : bool
        The Noisier2Noise correction (:class:`~cryostream.denoise.steps.N2NCorrection`), for
        models trained the reference plan's way: synthetic noise added to noisy micrographs.
    n2n_clamp : bool
        With the correction, zero the rings of spatial frequency where the corrected output is
        anti-correlated with the micrograph.
    wiener_gain : bool
        Give the output the Wiener filter's linear response from each micrograph's measured
        noise, keeping the rest (:class:`~cryostream.denoise.steps.WienerGain`).
    ctf_gain : bool
        The Wiener gain shaped above 20 Å by each micrograph's CTF, fitted from its own power
        spectrum, kept only where a recorruption check finds it lowers the error (implies
        ``wiener_gain``).
    ensemble : bool
        Average the network over the 8 rotations and flips of each micrograph (8 passes).
    calibrate : int
        Recorrupted passes that fit, per ring, the weight of the output's part beyond a linear
        filter; 0 for none.
    voltage_kv, cs_mm, amplitude_contrast : float
        The microscope, for the CTF fit of ``ctf_gain``.
    tile, halo : int, optional
        Window core and context per side in pixels (default: the cheapest tile for the
        backend, and the model's receptive field rounded up).
    batch_size : int
        The most windows per device call.
    """

    n2n_correction: bool = False
    n2n_clamp: bool = False
    wiener_gain: bool = False
    ctf_gain: bool = False
    ensemble: bool = False
    calibrate: int = 0
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.1
    tile: int | None = None
    halo: int | None = None
    batch_size: int = 8

    def __post_init__(self) -> None:
        store_floats(self, "voltage_kv", "cs_mm", "amplitude_contrast")
        for name in ("n2n_correction", "n2n_clamp", "wiener_gain", "ctf_gain", "ensemble"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be True or False")
        if self.n2n_clamp and not self.n2n_correction:
            raise ConfigError("n2n_clamp (--n2n-clamp) refines the Noisier2Noise correction; "
                              "pass n2n_correction too (--n2n-correction)")
        if not isinstance(self.calibrate, int) or isinstance(self.calibrate, bool) \
                or self.calibrate < 0:
            raise ConfigError(f"calibrate={self.calibrate!r}: must be an integer ≥ 0 "
                              "(recorrupted passes; 0 for none)")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size!r}: must be an integer ≥ 1")
        for name in ("tile", "halo"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value < 1):
                raise ConfigError(f"{name}={value!r}: must be a positive integer (pixels), or "
                                  "None for the default")
        check_positive("voltage_kv", self.voltage_kv)
        check_positive("cs_mm", self.cs_mm, allow_zero=True)
        if not 0 <= self.amplitude_contrast < 1:
            raise ConfigError(f"amplitude_contrast={self.amplitude_contrast!r}: must be in "
                              "[0, 1) (--amplitude-contrast)")

    @property
    def optics(self) -> dict[str, float]:
        """The microscope as :func:`cryostream.ctf.fit_ctf` keywords."""
        return {"voltage_kv": self.voltage_kv, "cs_mm": self.cs_mm,
                "amplitude_contrast": self.amplitude_contrast}

    def pipeline(self):
        """The post-processing steps, in order (:func:`cryostream.denoise.steps.chain`)."""
        from cryostream.denoise.steps import pipeline_for

        return pipeline_for(self)
