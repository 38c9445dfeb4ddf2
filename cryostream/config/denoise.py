"""How a trained network's output becomes the denoised micrograph."""

from __future__ import annotations

import dataclasses

from cryostream.config.checks import check_positive, store_floats
from cryostream.config.train import PRECISIONS
from cryostream.errors import ConfigError

__all__ = ["DenoiseConfig", "FROM_THE_RUN"]

#: The options that ``None`` leaves to the run (:meth:`DenoiseConfig.for_run`).
FROM_THE_RUN = ("n2n_correction", "ctf_gain", "ensemble", "learned_weights", "binned_pass")


@dataclasses.dataclass(frozen=True)
class DenoiseConfig:
    """How a trained network's output becomes the denoised micrograph.

    Every option of :func:`cryostream.denoise.denoise` and :func:`cryostream.denoise.rank_runs`
    lives here; :meth:`pipeline` builds the ordered post-processing steps
    (:mod:`cryostream.denoise.steps`), and each output records the config it was made with.

    The default is the best validated recipe for the run at hand: ``None`` in
    ``n2n_correction``, ``ctf_gain`` and ``ensemble`` means "what the run was trained for"
    (:meth:`for_run`): the Noisier2Noise correction for runs trained on noisy micrographs with
    added noise, the CTF-shaped Wiener gain (with its check and fallback) and the 8-fold
    ensemble. Set an option to ``True`` or ``False`` to decide it yourself; :meth:`raw` turns
    every step off.

    Parameters
    ----------
    n2n_correction : bool or None
        The Noisier2Noise correction (:class:`~cryostream.denoise.steps.N2NCorrection`), for
        models trained the reference plan's way: synthetic noise added to noisy micrographs.
        ``None``: on exactly for such runs.
    n2n_clamp : bool
        With the correction, zero the rings of spatial frequency where the corrected output is
        anti-correlated with the micrograph.
    wiener_gain : bool
        Give the output the Wiener filter's linear response from each micrograph's measured
        noise, keeping the rest (:class:`~cryostream.denoise.steps.WienerGain`).
    ctf_gain : bool or None
        The Wiener gain shaped above 20 Å by each micrograph's CTF, fitted from its own power
        spectrum, kept only where the fit's Thon rings are found in the spectrum and a
        recorruption check finds it lowers the error; otherwise the fallback of
        :class:`~cryostream.denoise.steps.WienerGain` (implies ``wiener_gain``). ``None``: on.
    ensemble : bool or None
        Average the network over the 8 rotations and flips of each micrograph (8 passes).
        ``None``: on.
    learned_weights : bool or None
        With the (CTF-shaped or radial) Wiener gain, weigh its linear response and the rest of
        the output per band of frequency by a table the model ships, fitted on simulated
        micrographs with their truth and looked up by the micrograph's measured
        signal-to-noise ratio (:mod:`cryostream.denoise.weights`). ``None``: on for models
        that ship one (the general model) whenever a gain is on.
    binned_pass : bool or None
        Run the network on each micrograph binned by 2 as well (as the ensemble where
        ``ensemble`` is on; a quarter of the passes' cost) and mix its output in per band of
        frequency by the learned weights (:mod:`cryostream.denoise.binned`): on twice the
        context it keeps more of the structure above 30 Å. ``None``: on where the model's
        table of learned weights weighs it (the general model).
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
    precision : {"fp32", "bf16"}
        What the network computes in: float32, or bfloat16 on a GPU (faster; its rounding
        loses a little of the finest detail). A CPU computes in float32 either way.
    output_dtype : {"float32", "float16"}
        The pixel type of the denoised MRC files (mode 2 or 12).
    output_suffix : str
        Added to each input's file name: ``NAME{suffix}.mrc`` (default none: ``NAME.mrc``).
    keep_extended_header : bool
        Copy each input's extended header (FEI, SerialEM …) into its output; its origin,
        voxel size and labels are always kept.
    """

    n2n_correction: bool | None = None
    n2n_clamp: bool = False
    wiener_gain: bool = False
    ctf_gain: bool | None = None
    ensemble: bool | None = None
    learned_weights: bool | None = None
    binned_pass: bool | None = None
    calibrate: int = 0
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.1
    tile: int | None = None
    halo: int | None = None
    batch_size: int = 8
    precision: str = "fp32"
    output_dtype: str = "float32"
    output_suffix: str = ""
    keep_extended_header: bool = False

    def __post_init__(self) -> None:
        store_floats(self, "voltage_kv", "cs_mm", "amplitude_contrast")
        for name in ("n2n_correction", "n2n_clamp", "wiener_gain", "ctf_gain", "ensemble",
                     "learned_weights", "binned_pass", "keep_extended_header"):
            value = getattr(self, name)
            if not (isinstance(value, bool) or value is None and name in FROM_THE_RUN):
                raise ConfigError(f"{name}={value!r}: must be True or False"
                                  + (", or None for the run's default" if name in FROM_THE_RUN
                                     else ""))
        if self.learned_weights and self.ctf_gain is False and not self.wiener_gain:
            raise ConfigError("learned_weights (--learned-weights) weighs the Wiener gain's "
                              "output: keep ctf_gain (--ctf-gain) or pass wiener_gain "
                              "(--wiener-gain)")
        if self.binned_pass and self.learned_weights is False:
            raise ConfigError("binned_pass (--binned-pass) is mixed in by the learned weights: "
                              "keep learned_weights (--learned-weights)")
        if self.n2n_clamp and self.n2n_correction is False:
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
                raise ConfigError(f"{name}={value!r}: must be a positive integer (pixels); "
                                  "leave it out for the default")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision={self.precision!r} (--precision): must be fp32 or bf16")
        if self.output_dtype not in ("float32", "float16"):
            raise ConfigError(f"output_dtype={self.output_dtype!r} (--dtype): must be float32 or "
                              "float16")
        if not isinstance(self.output_suffix, str) or any(
                c in self.output_suffix for c in "/\\\0") or self.output_suffix.strip() != \
                self.output_suffix:
            raise ConfigError(f"output_suffix={self.output_suffix!r} (--suffix): must be part of "
                              "a file name (no slash, no surrounding spaces), e.g. _denoised")
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

    @classmethod
    def raw(cls, **options) -> DenoiseConfig:
        """The network's output as it is: every step off (``options`` set the others)."""
        return cls(**{"n2n_correction": False, "ctf_gain": False, "ensemble": False,
                      "learned_weights": False, **options})  # no weights: no binned pass

    @property
    def resolved(self) -> bool:
        """Whether every option is decided (none left to the run; without the learned weights
        there is no binned pass to decide)."""
        return not self.undecided

    @property
    def undecided(self) -> list[str]:
        """The options still left to the run."""
        return [name for name in FROM_THE_RUN if getattr(self, name) is None
                and not (name == "binned_pass" and self.learned_weights is False)]

    def for_run(self, record) -> DenoiseConfig:
        """This config with the options left to the run decided for ``record`` (a
        :class:`~cryostream.runs.RunRecord`): the Noisier2Noise correction for runs trained on
        noisy micrographs with added noise (not on recorrupted or separate targets), the
        CTF-shaped Wiener gain and the ensemble on, and the learned weights where the run ships
        a table for that pipeline, with the binned pass where that table weighs it.

        Raises
        ------
        ConfigError
            If ``learned_weights`` is asked for and the run has no table for it, or
            ``binned_pass`` is asked for (or turned off) and the table does not weigh it (or
            does).
        """
        from cryostream.denoise.weights import weights_for

        decided = {"n2n_correction": not record.estimates_clean, "ctf_gain": True, "ensemble": True}
        config = dataclasses.replace(self, **{name: decided[name] for name in FROM_THE_RUN
                                              if name in decided and getattr(self, name) is None})
        table = weights_for(record, config.ensemble) is not None
        if config.learned_weights is None:
            gain = config.ctf_gain or config.wiener_gain
            config = dataclasses.replace(config, learned_weights=table and gain)
        elif config.learned_weights and not table:
            if weights_for(record, not config.ensemble) is not None:
                fix = (f"; it has one for {'one pass' if config.ensemble else 'the ensemble'}: "
                       "drop --learned-weights, or "
                       + ("pass --no-ensemble" if config.ensemble else "drop --no-ensemble"))
            else:
                fix = (" (only models trained on simulated micrographs with their truth, like "
                       "the general model, ship one); drop the option")
            raise ConfigError(f"learned_weights (--learned-weights): the model {record.path} has "
                              "no table of learned weights for "
                              f"{'the ensemble' if config.ensemble else 'one network pass'}{fix}")
        config = _binned_for_run(config, record)
        if config.n2n_clamp and not config.n2n_correction:
            raise ConfigError("n2n_clamp (--n2n-clamp) refines the Noisier2Noise correction, "
                              f"which does not apply to the run {record.path}; drop --n2n-clamp")
        return config

    def pipeline(self):
        """The post-processing steps, in order (:func:`cryostream.denoise.steps.chain`).

        Raises
        ------
        ConfigError
            If an option is still left to the run: call :meth:`for_run` first.
        """
        from cryostream.denoise.steps import pipeline_for

        if not self.resolved:
            raise ConfigError(f"{', '.join(self.undecided)} left to the run: build the pipeline of "
                              "config.for_run(record)")
        return pipeline_for(self)


def _binned_for_run(config: DenoiseConfig, record) -> DenoiseConfig:
    """``config`` with ``binned_pass`` decided: on exactly where the table of learned weights
    it uses weighs the binned pass (a table fitted with it needs it, one fitted without it
    cannot use it)."""
    from cryostream.denoise.weights import weights_for

    table = weights_for(record, config.ensemble) if config.learned_weights else None
    weighs = table is not None and table.binned is not None
    if config.binned_pass is None:
        return dataclasses.replace(config, binned_pass=weighs)
    if config.binned_pass and not weighs:
        raise ConfigError(f"binned_pass (--binned-pass): the model {record.path} has no "
                          "learned weights for the binned pass"
                          + ("" if config.learned_weights else " (and the learned weights are "
                             "off)") + "; drop the option")
    if not config.binned_pass and weighs:
        raise ConfigError(f"binned_pass=False (--no-binned-pass): the learned weights of the "
                          f"model {record.path} mix in the binned pass; keep it, or pass "
                          "--no-learned-weights as well (the weights' other parts then go too)")
    return config
