"""The general model's data: the spread its training micrographs are drawn from, the held-out
conditions it is scored on, and the worker that simulates one micrograph
(``train_general_model.py``'s ``data`` stage)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

FULL_AREA = 7676 * 7420

#: The training spread, one draw per micrograph (``log``: log-uniform; ``white``: the share of
#: micrographs with white shot noise, the rest log-uniform roll-offs).
SPREAD = {
    "dose_e_per_angstrom2": {"log": [10.0, 80.0]},
    "pixel_size_angstrom": {"uniform": [0.5, 1.5]},
    "defocus_um": [0.5, 3.5],
    "astigmatism_angstrom": 500.0,
    "detector_nps_nyquist": {"white": 1 / 3, "log": [0.1, 1.0]},
    "ice_thickness_relative": {"log": [0.5, 2.0]},
    "ice_contrast": {"uniform": [0.0, 0.05]},
    "b_factor_angstrom2": {"uniform": [30.0, 120.0]},
    "particle": ["t20s", "globular", "filament", "shell", "mixed"],
    "area_fraction": {"uniform": [0.1, 0.45]},
    # the share of micrographs drawn instead from the spread's high-signal corner (many
    # electrons per pixel): ``--high-signal-share`` of train_general_model.py
    "high_signal": {"share": 0.0, "dose_e_per_angstrom2": {"log": [40.0, 80.0]},
                    "pixel_size_angstrom": {"uniform": [1.0, 1.5]}},
    # the share of micrographs whose dose is drawn instead from under the spread's floor (each
    # half of an even/odd pair at 10 e/Å² holds 5): ``--low-dose-share`` of train_general_model.py;
    # the shipped model's 0.2 (before it, 0: calibration sets drawn then had none)
    "low_dose": {"share": 0.2, "dose_e_per_angstrom2": {"log": [4.0, 10.0]}},
}

#: Held-out conditions: the issue-20 grid (T20S at 0.6575 Å/px, EMPIAR-10025's defocus, white
#: and tenfold roll-off, 50/20/10 e/Å²) and four that stretch the spread.
CONDITIONS = {
    "t20s-50e-white": dict(particle="t20s", dose=50, pixel=0.6575, nps=1.0),
    "t20s-20e-white": dict(particle="t20s", dose=20, pixel=0.6575, nps=1.0),
    "t20s-10e-white": dict(particle="t20s", dose=10, pixel=0.6575, nps=1.0),
    "t20s-50e-nps0.1": dict(particle="t20s", dose=50, pixel=0.6575, nps=0.1),
    "t20s-20e-nps0.1": dict(particle="t20s", dose=20, pixel=0.6575, nps=0.1),
    "t20s-10e-nps0.1": dict(particle="t20s", dose=10, pixel=0.6575, nps=0.1),
    "globular-30e-0.5A-thick-ice": dict(particle="globular", dose=30, pixel=0.5, nps=0.3,
                                        defocus=(0.5, 1.0), ice=2.0),
    "filament-40e-1.0A-far-focus": dict(particle="filament", dose=40, pixel=1.0, nps=0.5,
                                        defocus=(2.5, 3.5)),
    "shell-80e-1.5A-nps0.1": dict(particle="shell", dose=80, pixel=1.5, nps=0.1,
                                  defocus=(1.0, 2.0), ice=0.7),
    "mixed-25e-1.2A-thin-ice": dict(particle="mixed", dose=25, pixel=1.2, nps=1.0,
                                    defocus=(1.5, 3.0), ice=0.5),
    # under the spread's floor (10 e/Å²; SPREAD["low_dose"]): each half of a 10 e/Å² even/odd pair
    "t20s-5e-white": dict(particle="t20s", dose=5, pixel=0.6575, nps=1.0),
}
TEST_AREA_FRACTION = 0.15


def particles_for(particle: str, fraction: float, shape, pixel: float) -> int:
    """``particles_per_micrograph`` that covers ``fraction`` of the field with the shape(s)."""
    from cryostream.config.simulate import PARTICLE_SHAPES
    from cryostream.simulate import particle_model

    names = PARTICLE_SHAPES if particle == "mixed" else (particle,)
    area = np.mean([math.pi * particle_model(n).radius_angstrom ** 2 for n in names])
    count = fraction * shape[0] * shape[1] * pixel**2 / area
    return max(1, math.ceil(count * FULL_AREA / (shape[0] * shape[1])))


def training_condition(seed: int, index: int, shape, high_signal_share: float | None = None,
                       dose: tuple[float, float] | None = None,
                       low_dose_share: float | None = None,
                       particles: tuple[str, ...] | None = None) -> dict:
    """The :class:`SimulateConfig` keywords of training micrograph ``index`` (from SPREAD;
    ``high_signal_share`` of them, default SPREAD's, from its high-signal corner;
    ``low_dose_share`` of them, default SPREAD's, with the dose from under its floor). ``dose``:
    the dose drawn from this range (e/Å², log-uniform) instead, the rest as it would be.
    ``particles``: the specimens drawn from instead of SPREAD's (a specialist's training set)."""
    rng = np.random.default_rng([seed, 17, index])
    if high_signal_share is None:
        high_signal_share = SPREAD["high_signal"]["share"]

    def draw(spec):
        if "log" in spec:
            return float(np.exp(rng.uniform(*np.log(spec["log"]))))
        return float(rng.uniform(*spec["uniform"]))

    nps = SPREAD["detector_nps_nyquist"]
    white = rng.uniform() < nps["white"]
    kw = dict(shape=tuple(shape), seed=seed, defocus_um=tuple(SPREAD["defocus_um"]),
              astigmatism_angstrom=SPREAD["astigmatism_angstrom"],
              dose_e_per_angstrom2=draw(SPREAD["dose_e_per_angstrom2"]),
              pixel_size_angstrom=draw(SPREAD["pixel_size_angstrom"]),
              detector_nps_nyquist=1.0 if white else draw(nps),
              ice_thickness_relative=draw(SPREAD["ice_thickness_relative"]),
              ice_contrast=draw(SPREAD["ice_contrast"]),
              b_factor_angstrom2=draw(SPREAD["b_factor_angstrom2"]),
              particle=str(rng.choice(particles or SPREAD["particle"])))
    fraction = draw(SPREAD["area_fraction"])
    # drawn after the rest, so that the other micrographs are the same whatever the share
    if high_signal_share > 0 and rng.uniform() < high_signal_share:
        corner = SPREAD["high_signal"]
        kw["dose_e_per_angstrom2"] = draw(corner["dose_e_per_angstrom2"])
        kw["pixel_size_angstrom"] = draw(corner["pixel_size_angstrom"])
    if low_dose_share is None:
        low_dose_share = SPREAD["low_dose"]["share"]
    if low_dose_share > 0:  # its own draws: every other micrograph stays what it would be
        pick = np.random.default_rng([seed, 23, index])
        if pick.uniform() < low_dose_share:
            low, high = np.log(SPREAD["low_dose"]["dose_e_per_angstrom2"]["log"])
            kw["dose_e_per_angstrom2"] = float(np.exp(pick.uniform(low, high)))
    if dose is not None:  # its own draw: the other keywords stay what they would be
        low, high = np.log(dose)
        kw["dose_e_per_angstrom2"] = float(np.exp(np.random.default_rng([seed, 19, index])
                                                  .uniform(low, high)))
    kw["particles_per_micrograph"] = particles_for(kw["particle"], fraction,
                                                   shape, kw["pixel_size_angstrom"])
    return kw


def held_out_condition(name: str, seed: int, shape) -> dict:
    """The :class:`SimulateConfig` keywords of the held-out condition ``name``."""
    c = CONDITIONS[name]
    kw = dict(shape=tuple(shape), seed=seed + 1, particle=c["particle"],
              dose_e_per_angstrom2=float(c["dose"]), pixel_size_angstrom=float(c["pixel"]),
              detector_nps_nyquist=float(c["nps"]), ice_thickness_relative=float(c.get("ice", 1.0)))
    if "defocus" in c:
        kw["defocus_um"] = c["defocus"]
    kw["particles_per_micrograph"] = particles_for(c["particle"], TEST_AREA_FRACTION, shape,
                                                   kw["pixel_size_angstrom"])
    return kw


def simulate_one(task: dict) -> dict:
    """Worker: simulate one micrograph and write it and its truth (skipped if both exist)."""
    from cryostream import SimulateConfig
    from cryostream.io.mrc import write_micrograph
    from cryostream.simulate import simulate_micrograph

    noisy, truth = Path(task["noisy"]), Path(task["truth"])
    config = SimulateConfig(**task["config"])
    if noisy.exists() and truth.exists():
        return {"index": task["index"], "skipped": True}
    t = time.perf_counter()
    sim = simulate_micrograph(config, task["index"])
    label = f"train_general_model {task['config']['particle']} index={task['index']}"
    write_micrograph(truth, sim.truth, config.pixel_size_angstrom, history=label + " truth",
                     overwrite=True)
    write_micrograph(noisy, sim.noisy, config.pixel_size_angstrom, history=label, overwrite=True)
    return {"index": task["index"], "seconds": round(time.perf_counter() - t, 2),
            "particles": len(sim.particles),
            "shapes": sorted({p.shape for p in sim.particles}),
            "defocus_um": round((sim.defocus_u_angstrom + sim.defocus_v_angstrom) / 2e4, 3)}


def data_tasks(args, work: Path) -> tuple[list[dict], list[dict]]:
    def condition(i: int) -> dict:
        if getattr(args, "train_condition", None):  # the held-out condition's draws, other seeds
            return held_out_condition(args.train_condition, args.seed + 100, args.shape)
        return training_condition(args.seed, i, args.shape, args.high_signal_share,
                                  low_dose_share=args.low_dose_share,
                                  particles=getattr(args, "particles", None))

    train = [{"index": i, "config": condition(i),
              "noisy": str(work / "train" / "micrographs" / f"sim_{i:04d}.mrc"),
              "truth": str(work / "train" / "truth" / f"sim_{i:04d}.mrc")}
             for i in range(args.count)]
    test = []  # micrograph j of a condition is the same whichever conditions run
    for name in args.conditions:
        for j in range(args.test_count):
            test.append({"index": 1000 * list(CONDITIONS).index(name) + j, "condition": name,
                         "config": held_out_condition(name, args.seed, args.test_shape),
                         "noisy": str(work / "test" / name / f"noisy_{j}.mrc"),
                         "truth": str(work / "test" / name / f"truth_{j}.mrc")})
    return train, test
