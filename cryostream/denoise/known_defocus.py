"""The CTF-shaped Wiener gain with a defocus already measured (a RELION STAR file's, a
cryoSPARC table's, or one fitted on the sum of a micrograph's even and odd halves) instead of
one fitted from each micrograph's spectrum."""

from __future__ import annotations

import dataclasses
import math
import warnings

from cryostream.denoise.steps import WienerGain, checked_gain, fit_with_error, no_rings, zeros_noise
from cryostream.io.star import Defocus

__all__ = ["KnownDefocusGain", "halves_pipeline"]

#: A defocus's fields in a cryoSPARC table and in a RELION STAR file.
_DEFOCUS_FIELDS = ("ctf/df1_A, ctf/df2_A, ctf/df_angle_rad", "rlnDefocusU, rlnDefocusV, rlnDefocusAngle")


@dataclasses.dataclass(frozen=True)
class KnownDefocusGain(WienerGain):
    """The CTF-shaped Wiener gain (:class:`~cryostream.denoise.steps.WienerGain`) with a
    defocus already measured (``defocus``: U, V in Å and the angle in degrees; e.g. CTFFIND's
    in a STAR file) instead of one fitted from the spectrum. One that fails the recorruption
    check (:func:`~cryostream.denoise.scores.ctf_gain_check`), or whose Thon rings are not in
    the spectrum (:func:`~cryostream.ctf.thon_ring_z`, recorded as ``given_defocus_rings_z``;
    V 0.56 µm off U passed the check and cost 0.37 dB), gives way to the defocus fitted here
    if that one passes both, with a :class:`~cryostream.ctf.CTFFallbackWarning` naming both;
    else it is kept as checked (a right one's rings can score under the bar at 10 e/Å²)."""

    defocus: tuple = ()
    source: str = "STAR file"
    #: The check's score measured already (on the sum of even/odd halves, so that both halves
    #: take one decision); None measures it on the micrograph.
    check: float | None = None
    #: The Thon rings' score (:func:`~cryostream.ctf.thon_ring_z`) of a defocus fitted here
    #: (on the sum of even/odd halves); None for one measured elsewhere (a STAR file's).
    rings_z: float | None = None
    #: Where a defocus fitted here has a rival (:attr:`~cryostream.ctf.CTFFit.rival_defocus_angstrom`).
    rival: float | None = None
    name = "wiener_gain"

    def init(self, micrograph):
        import scipy.fft

        fit = self.fit(micrograph.pixel_size_angstrom)
        image = micrograph.image
        spectrum = scipy.fft.rfft2(image - image.mean(), workers=-1)  # once, for all
        if self.check is not None or self.rings_z is not None:  # fitted on even/odd halves
            return self.given_state(micrograph, fit, spectrum)
        from cryostream.ctf import THON_RING_Z, CTFFallbackWarning, thon_ring_z
        from cryostream.denoise.steps import GIVEN_ADVICE, warn_fallback

        z = thon_ring_z(spectrum, image.shape, fit)  # measured elsewhere: are its rings here?
        state = {**self.given_state(micrograph, fit, spectrum, quiet=True), "given_rings_z": z}
        # where it fails, the defocus fitted here, checked as always, may take its place
        fitted = self.fitted(micrograph, spectrum, quiet=True) if no_rings(z) or not \
            state["used"] else {}
        if fitted.get("used"):
            why = (f"its Thon rings are not in the spectrum (score z {z:.2f}, under "
                   f"{THON_RING_Z})" if no_rings(z) else "it does not lower the error by "
                   "recorruption")
            warnings.warn(f"{micrograph.source}: the defocus of its {self.source} "
                          f"({fit.in_words()}) is not used: {why}. The defocus fitted from its "
                          f"spectrum ({fitted['fit'].in_words()}; rings z "
                          f"{fitted['rings_z']:.2f}) passes both checks and is used. Check "
                          f"the {self.source}'s row ({_DEFOCUS_FIELDS[self.source == 'STAR file']}: "
                          "another micrograph's?) and the pixel size "
                          f"({micrograph.pixel_size_angstrom:g} Å used: at a wrong one the rings "
                          "fall elsewhere)", CTFFallbackWarning,
                          stacklevel=2)
            return {**state, **fitted, "refitted": True}
        if not state["used"]:
            warn_fallback(self.what(micrograph, fit), None, GIVEN_ADVICE)
        return state

    def what(self, micrograph, fit) -> str:
        return f"{micrograph.source}: the defocus of its {self.source} ({fit.in_words()})"

    def given_state(self, micrograph, fit, spectrum, quiet: bool = False) -> dict:
        """The state of the gain with the known defocus (``fit``), checked."""
        return {**self.weights_state(micrograph, spectrum),
                **self.checked(micrograph, fit, self.what(micrograph, fit), self.rings_z,
                               spectrum=spectrum, check=self.check, quiet=quiet),
                **({} if self.rings_z is None else {"rings_z": self.rings_z})}

    def fit(self, pixel_size_angstrom: float):
        """The known defocus as a :class:`~cryostream.ctf.CTFFit` (no score)."""
        from cryostream.ctf import CTFFit

        fit = CTFFit(*self.defocus, math.nan, pixel_size_angstrom, **dict(self.optics),
                     rival_defocus_angstrom=self.rival)
        return fit_with_error(fit, self.rings_z)  # one fitted here (on halves): with its error

    def describe(self, state):
        found = super().describe(state)
        if "given_rings_z" in state:  # the known defocus's rings, where they were scored here
            found["given_defocus_rings_z"] = round(state["given_rings_z"], 2)
        found["ctf"].update(**({"defocus_from": "spectrum"} if state.get("refitted") else
                               {"score": None, "defocus_from": self.source}))
        return found


def halves_pipeline(micrograph, config, halves: list, record):
    """The pipeline of ``micrograph`` (an :class:`~cryostream.denoise.sources.InputMicrograph`,
    its own ``pipeline``); for even/odd halves (``halves``: ``(path, image)`` pairs, each
    checked already) the CTF gain of both takes one defocus (fitted on their sum, or the known
    one) and one recorruption check on their sum:
    twice the signal of either, and one filter for the two outputs that are summed. The sum is
    normalised by the run's percentile (``record``: the run's
    :class:`~cryostream.runs.RunRecord`); a sum that cannot be leaves each half its own fit and
    check. A defocus fitted on the sum must show its Thon rings there
    (:func:`~cryostream.ctf.thon_ring_z`), as a single micrograph's must."""
    if len(halves) < 2 or not config.ctf_gain:
        return micrograph.pipeline(config)
    import numpy as np
    import scipy.fft

    from cryostream.matched import estimate_noise, tile_for
    from cryostream.preprocess import image_statistics

    total = halves[0][1] + halves[1][1]
    scale = image_statistics(total, record.percentile)[0]
    if not (np.isfinite(scale) and scale > 0 and total.max() > total.min()):
        return micrograph.pipeline(config)
    total = total / np.float32(scale)
    ps = micrograph.pixel_size_angstrom
    source, fitted, rival = micrograph.listed_in, micrograph.defocus is None, None
    if fitted:
        from cryostream.denoise.steps import fit_for_gain

        fit = fit_for_gain(total, ps, config.optics)
        if fit is None:
            return micrograph.pipeline(config)
        micrograph = dataclasses.replace(micrograph, defocus=Defocus(
            fit.defocus_u_angstrom, fit.defocus_v_angstrom, fit.astigmatism_angle_deg))
        source, rival = "sum of the even and odd halves", fit.rival_defocus_angstrom
    d = micrograph.defocus
    gain = next(s for s in micrograph.pipeline(config, rival=rival).steps
                if isinstance(s, KnownDefocusGain))
    spectrum = scipy.fft.rfft2(total - total.mean(), workers=-1)  # once, for both
    known, rings_z = gain.fit(ps), None  # the defocus (and its rival), no error yet
    if fitted:  # a fit must show its rings, as on one micrograph
        from cryostream.ctf import thon_ring_z

        rings_z = thon_ring_z(spectrum, total.shape, known)
    noise = estimate_noise(total, ps, tile=tile_for(total.shape))
    if not no_rings(rings_z, known):  # the check with the noise at the CTF's zeros, as on one
        noise = zeros_noise(total, noise, known, spectrum)[0]
    check = checked_gain(total, noise, fit_with_error(known, rings_z), f"{micrograph.source} and "
                         f"its odd half: the defocus ({d.defocus_u_angstrom:.0f}/{d.defocus_v_angstrom:.0f} "
                         f"Å, from the {source}), checked on their sum,", rings_z)
    return micrograph.pipeline(config, defocus_from=source, check=check, rings_z=rings_z,
                               rival=rival)
