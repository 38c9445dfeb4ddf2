"""The simulated micrographs: EMPIAR-10025-like optics, dose and specimen."""

from __future__ import annotations

import dataclasses
import math

from cryostream.config.checks import check_choice, check_positive, check_seed, store_floats
from cryostream.errors import ConfigError

__all__ = ["PARTICLE_SHAPES", "PARTICLES", "MAX_DOSE", "COUNTS_PER_PIXEL", "MAX_SIDE", "SimulateConfig"]

#: The particle shapes the simulator draws (:mod:`cryostream.simulate.particles`).
PARTICLE_SHAPES = ("t20s", "globular", "filament", "shell")
#: The values of :attr:`SimulateConfig.particle`: one shape, or ``"mixed"`` (each particle's
#: shape drawn from all of them).
PARTICLES = (*PARTICLE_SHAPES, "mixed")
#: The largest total dose, e/Å²: cryo-EM exposures are 10–100 e/Å², a million burns any specimen.
MAX_DOSE = 1e6
#: The electrons per pixel (dose × pixel size²) a micrograph may expect: below the first over
#: 99 % of its pixels would count none (``e^-0.01``); above the last float32 pixels no longer
#: resolve the shot noise well (its relative size, ``1/√N``, nears their rounding) and NumPy's
#: Poisson draws stop at 9.2e18.
COUNTS_PER_PIXEL = (0.01, 1e12)
#: The largest side of a simulated micrograph, px (no detector's frame is wider).
MAX_SIDE = 32768

@dataclasses.dataclass(frozen=True)
class SimulateConfig:
    """EMPIAR-10025-like micrographs (T20S proteasome, 300 kV), with their ground truth.

    The defaults are EMPIAR-10025's; ``particle`` and ``ice_thickness_relative`` widen the
    specimen (other shapes and sizes, thinner or thicker ice) for training on a spread of
    conditions.

    Parameters
    ----------
    shape : (int, int)
        Micrograph size (rows, columns) in pixels, each 64 to :data:`MAX_SIDE`; EMPIAR-10025 is
        7676 × 7420. :func:`cryostream.simulate` also refuses one whose arrays the memory
        cannot hold.
    pixel_size_angstrom : float
        Pixel size in Å.
    dose_e_per_angstrom2 : float
        Total electron dose; 50 e⁻/Å² is ≈22 e⁻ per 0.6575 Å pixel. At most :data:`MAX_DOSE`,
        and the electrons per pixel it gives within :data:`COUNTS_PER_PIXEL`.
    particles_per_micrograph : int
        Particles placed per full-size micrograph (scaled with area for smaller shapes); fewer
        when they do not fit without overlapping.
    defocus_um : (float, float)
        Range of the per-micrograph mean defocus, µm (underfocus positive).
    astigmatism_angstrom : float
        Largest defocus difference between the two astigmatic axes, Å.
    voltage_kv, cs_mm, amplitude_contrast : float
        Optics of the microscope.
    b_factor_angstrom2 : float
        Envelope B-factor damping high frequencies (``exp(-B k² / 4)``).
    ice_contrast : float
        Relative amplitude of the slowly varying ice-thickness background.
    detector_nps_nyquist : float
        Detector response: the shot noise's power at Nyquist relative to zero frequency
        (``1`` = white shot noise; real micrographs read ≈0.03–0.1). The noise power spectrum
        is ``r + (1 - r) · cos²(π f)`` of the Poisson noise (``f`` the radial frequency in cycles
        per pixel, held at ``r`` beyond Nyquist); the signal is not filtered
        (:func:`cryostream.simulate.micrograph.detector_nps`).
    seed : int
        Seed; micrograph ``i`` of a run is fully determined by ``(seed, i)``.
    particle : str
        The specimen (:data:`PARTICLES`): ``"t20s"`` (the T20S proteasome, 690 kDa, ≈170 Å),
        ``"globular"`` (a ≈140 kDa complex of four domains, ≈90 Å), ``"filament"`` (a helical
        filament segment, ≈860 kDa, ≈460 Å long and ≈90 Å wide), ``"shell"`` (a hollow
        virus-like shell, ≈3.5 MDa, ≈280 Å across), or ``"mixed"``: each particle's shape drawn
        from those four (:mod:`cryostream.simulate.particles`).
    ice_thickness_relative : float
        Ice thickness relative to the default specimen's: the amorphous-ice phase texture
        (0.07 rad per pixel at 1) grows with its square root, as the fluctuations of a thicker
        layer add up. The mean transmission and the particles' contrast are left alone (the
        dose sets the counts).
    even_odd : bool
        Also write each micrograph's even- and odd-frame halves, as motion correction does
        (MotionCor2 ``-SplitSum 1``): the dose split in two, each half with its own shot noise,
        the full sum exactly their sum (docs/guide/even_odd.md).
    """

    shape: tuple[int, int] = (7676, 7420)
    pixel_size_angstrom: float = 0.6575
    dose_e_per_angstrom2: float = 50.0
    particles_per_micrograph: int = 50
    defocus_um: tuple[float, float] = (1.47, 1.99)
    astigmatism_angstrom: float = 300.0
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.1
    b_factor_angstrom2: float = 60.0
    ice_contrast: float = 0.02
    detector_nps_nyquist: float = 1.0
    seed: int = 0
    particle: str = "t20s"
    ice_thickness_relative: float = 1.0
    even_odd: bool = False

    def __post_init__(self) -> None:
        for name, example in (("shape", "(1024, 1024)"), ("defocus_um", "(1.0, 2.5)")):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, tuple((int if name == "shape" else float)(v)
                                                     for v in value))
            except (TypeError, ValueError):
                raise ConfigError(f"{name}={value!r}: give two numbers, e.g. {name}={example}") \
                    from None
        if len(self.shape) != 2 or min(self.shape) < 64:
            raise ConfigError(f"shape={self.shape}: must be (rows, columns), each ≥ 64 px")
        if max(self.shape) > MAX_SIDE:
            raise ConfigError(f"shape={self.shape}: each side must be at most {MAX_SIDE} px (no "
                              "detector's frame is wider; EMPIAR-10025's are 7676 × 7420)")
        check_positive("pixel_size_angstrom", self.pixel_size_angstrom)
        check_positive("dose_e_per_angstrom2", self.dose_e_per_angstrom2)
        self._check_dose()
        check_positive("particles_per_micrograph", self.particles_per_micrograph, allow_zero=True)
        check_choice("particle", self.particle, PARTICLES)
        lo, hi = self.defocus_um
        if not (0 < lo <= hi < float("inf")):
            raise ConfigError(f"defocus_um={self.defocus_um}: must be (low, high) with "
                              "0 < low ≤ high, finite")
        check_positive("astigmatism_angstrom", self.astigmatism_angstrom, allow_zero=True)
        check_positive("voltage_kv", self.voltage_kv)
        check_positive("cs_mm", self.cs_mm, allow_zero=True)
        if not (0 <= self.amplitude_contrast < 1):
            raise ConfigError(f"amplitude_contrast={self.amplitude_contrast}: must be in [0, 1)")
        check_positive("b_factor_angstrom2", self.b_factor_angstrom2, allow_zero=True)
        check_positive("ice_contrast", self.ice_contrast, allow_zero=True)
        store_floats(self, "ice_thickness_relative")
        check_positive("ice_thickness_relative", self.ice_thickness_relative, allow_zero=True)
        store_floats(self, "detector_nps_nyquist")
        if not (isinstance(self.detector_nps_nyquist, float) and 0 < self.detector_nps_nyquist <= 1):
            raise ConfigError(f"detector_nps_nyquist={self.detector_nps_nyquist!r}: must be in (0, 1]")
        if not isinstance(self.even_odd, bool):
            raise ConfigError(f"even_odd={self.even_odd!r}: must be True or False")
        check_seed("seed", self.seed)

    def _check_dose(self) -> None:
        """The dose within :data:`MAX_DOSE`, and the electrons it gives a pixel within
        :data:`COUNTS_PER_PIXEL`."""
        dose, ps = self.dose_e_per_angstrom2, self.pixel_size_angstrom
        if dose > MAX_DOSE:
            raise ConfigError(f"dose_e_per_angstrom2={dose!r}: at most 1e6 e/Å² (cryo-EM exposures "
                              "are 10–100 e/Å², a million burns any specimen; NumPy draws no "
                              "Poisson count above 9.2e18); give a dose such as 50 (the default)")
        per_pixel = dose * ps * ps
        low, high = COUNTS_PER_PIXEL
        if per_pixel < low:
            raise ConfigError(
                f"dose_e_per_angstrom2={dose!r}: {per_pixel:.2g} electrons per {ps:g} Å pixel; at "
                f"least {low:g} are needed (below, over 99 % of the pixels count no electron, "
                f"and the micrographs are all but empty): give at least "
                f"{_two_digits_up(low / (ps * ps))} e/Å² (10–100 is a cryo-EM exposure)")
        if per_pixel > high:
            raise ConfigError(
                f"dose_e_per_angstrom2={dose!r}: {per_pixel:.2g} electrons per {ps:g} Å pixel; at "
                "most 1e12 (float32 pixels no longer resolve the shot noise above, and NumPy "
                "draws no Poisson count above 9.2e18): give a smaller dose or pixel size")


def _two_digits_up(x: float) -> str:
    """``x`` rounded up to two significant digits (a least dose that is enough)."""
    step = 10.0 ** (math.floor(math.log10(x)) - 1)
    return f"{math.ceil(x / step * (1 - 1e-12)) * step:.2g}"
