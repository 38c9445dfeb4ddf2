"""How the CTF fit chooses among its candidate defoci, and how to tell when the choice is
ambiguous: every candidate's score on each spectrum, and several candidates refined.

:func:`cryostream.ctf.fit_ctf` searches the mean defocus on 512² and 1024² Welch spectra, keeps
their highest peaks, and refines the one its finest spectrum (2048² tiles, or the largest power
of two that fits) explains best. On a 2048² micrograph that finest spectrum is one tile, a
single periodogram, and a wrong peak can edge out the true one there (research notes, "The CTF
fit's error at low dose": one fit used 24 330 Å off in 31). For each simulated micrograph
(``training_condition`` seed 3, as ``ctf_defocus_error.py --fit-error``) this records:

- each candidate's mean defocus and the power the 512², 1024² and finest spectra explain at it
  (no astigmatism);
- up to :data:`REFINED` distinct candidates refined as the fit refines its first (the finest
  spectrum's best, then the next two of it, then the 1024² and the 512² spectra's best, each
  skipped within 1000 Å of one already refined): each refined fit's error against the
  simulator's defocus (rms over directions), its score on the finest spectrum, its Thon-ring
  score ``z`` (:func:`~cryostream.ctf.thon_ring_z`) and whether ``denoise`` would use it (the
  fit with its error, :meth:`WienerGain.checked <cryostream.denoise.steps.WienerGain.checked>`).

The first refined fit is the fit :func:`~cryostream.ctf.fit_ctf` makes, its ``used`` judged
without the rival rule (the refined fits carry no rival): "shipped" in the rules' names is the
choice before that rule, which the rule ending "(SETTLED_Z)" adds. ``--evaluate`` scores rules
on the records: how many wrong fits (over 1000 Å off) each would use and how many right ones
(within 500 Å) it would lose or gain.

Usage (one process per core; on 2 cores about 15 s a 2048² micrograph)::

    python benchmarks/ctf_candidates.py --count 300 --shape 2048 2048 --out a.jsonl
    python benchmarks/ctf_candidates.py --count 150 --first 300 --dose 10 20 --out b.jsonl
    python benchmarks/ctf_candidates.py --evaluate a.jsonl b.jsonl --out summary.json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one process per core

import numpy as np  # noqa: E402
from general_model_spread import training_condition

#: How many distinct candidates are refined per micrograph.
REFINED = 5
#: Candidates closer than this (Å of mean defocus) to one already refined are not refined again.
APART = 1000.0


def _rms_error(true, fit) -> float:
    from cryostream.spectral import astigmatic_defocus

    theta = np.linspace(0, np.pi, 180, endpoint=False)
    a, b = (astigmatic_defocus(theta, (u + v) / 2, u - v, g) for u, v, g in (
        (true.defocus_u_angstrom, true.defocus_v_angstrom, true.astigmatism_angle_deg),
        (fit.defocus_u_angstrom, fit.defocus_v_angstrom, fit.astigmatism_angle_deg)))
    return float(np.sqrt(np.mean((a - b) ** 2)))


def one(index: int, shape: tuple[int, int], dose) -> dict | None:
    """The candidates and refined fits of micrograph ``index`` (None: too small to fit)."""
    import scipy.fft

    from cryostream import ctf
    from cryostream.config import DenoiseConfig, SimulateConfig
    from cryostream.denoise.fallback import FIT_ADVICE, fit_high_angstrom, fit_with_error
    from cryostream.denoise.steps import Micrograph, WienerGain
    from cryostream.simulate import simulate_micrograph

    start = time.perf_counter()
    config = training_condition(3, index, tuple(shape), dose=dose)
    cfg = SimulateConfig(**config)
    sim = simulate_micrograph(cfg, index)
    y = (sim.noisy / np.float32(np.percentile(sim.noisy, 95))).astype(np.float32)
    pixel = cfg.pixel_size_angstrom
    high = fit_high_angstrom(y.shape, pixel)  # as denoise fits it
    if high is None:
        return None
    optics = dict(DenoiseConfig().optics)
    low, tile, band_width = 20.0, 512, 1 / 256
    candidates, stages, _ = ctf.search_defocus(y, pixel, (0.3, 6.0), low, high, tile, 2048,
                                               band_width, optics)
    middle = ctf.explained_power(y, 2 * tile, pixel, low, high, band_width, optics)
    scores = {"512": [stages[0][0](d) for d in candidates], "1024": [middle(d) for d in candidates],
              "finest": [stages[-1][0](d) for d in candidates]}
    order = [*range(min(3, len(candidates))), int(np.argmax(scores["1024"])),
             int(np.argmax(scores["512"]))]
    starts: list[int] = []
    for i in order:
        if len(starts) < REFINED and all(abs(candidates[i] - candidates[j]) >= APART
                                         for j in starts):
            starts.append(i)
    spectrum = scipy.fft.rfft2(y - y.mean())
    micrograph = Micrograph(y, pixel, None, f"simulated {index}")
    gain = WienerGain(ctf=True, optics=tuple(DenoiseConfig().optics.items()))
    refined = []
    for i in starts:
        fit = ctf.refine_defocus(candidates[i], stages, pixel, optics)
        z = ctf.thon_ring_z(spectrum, y.shape, fit)
        fit = fit_with_error(fit, z)
        state = gain.checked(micrograph, fit, "candidate", z, FIT_ADVICE, spectrum, quiet=True)
        mean = (fit.defocus_u_angstrom + fit.defocus_v_angstrom) / 2
        refined.append({"candidate": i, "mean": round(mean, 1),
                        "defocus": [round(fit.defocus_u_angstrom), round(fit.defocus_v_angstrom),
                                    round(fit.astigmatism_angle_deg, 1)],
                        "error_angstrom": round(_rms_error(sim, fit), 1),
                        "finest": float(stages[-1][0](mean, *_components(fit))),
                        "score_512": fit.score, "rings_z": round(z, 3),
                        "stated_error_angstrom": round(fit.defocus_error_angstrom, 1),
                        "used": bool(state["used"])})
    return {"index": index, "shape": list(shape), "particle": config["particle"],
            "dose": round(config["dose_e_per_angstrom2"], 2), "pixel": round(pixel, 4),
            "defocus_true": [round(sim.defocus_u_angstrom), round(sim.defocus_v_angstrom)],
            "candidates": [round(c, 1) for c in candidates],
            "scores": {k: [float(v) for v in s] for k, s in scores.items()},
            "refined": refined, "seconds": round(time.perf_counter() - start, 2)}


def _components(fit) -> tuple[float, float]:
    """The fit's astigmatism as the coordinates ``(ax, ay)`` that
    :func:`cryostream.ctf.refine_defocus` refines."""
    half = (fit.defocus_u_angstrom - fit.defocus_v_angstrom) / 2
    angle = np.radians(2 * fit.astigmatism_angle_deg)
    return half * np.cos(angle), half * np.sin(angle)


def run(args) -> None:
    out = Path(args.out)
    done = set()
    if out.exists():  # resumable: the micrographs already written are skipped
        done = {json.loads(line)["index"] for line in out.read_text().splitlines() if line}
    todo = [i for i in range(args.first, args.first + args.count) if i not in done]
    dose = tuple(args.dose) if args.dose else None
    with concurrent.futures.ProcessPoolExecutor(args.workers) as pool, \
            out.open("a") as f:
        jobs = [pool.submit(one, i, tuple(args.shape), dose) for i in todo]
        for job in concurrent.futures.as_completed(jobs):
            row = job.result()
            if row is not None:
                f.write(json.dumps(row) + "\n")
                f.flush()
                chosen = row["refined"][0]
                print(f"{row['index']}: {chosen['error_angstrom']:.0f} Å off, z "
                      f"{chosen['rings_z']:.2f}, used {chosen['used']}, {row['seconds']} s",
                      flush=True)


WRONG, RIGHT = 1000.0, 500.0


def _tally(rows: list, choose) -> dict:
    """Of ``rows``, with ``choose(row)`` the refined fit used (None: the fit is not used)."""
    used = [r for r in map(choose, rows) if r is not None and r["used"]]
    return {"used": len(used), "wrong_used": sum(r["error_angstrom"] > WRONG for r in used),
            "off_500_used": sum(r["error_angstrom"] > RIGHT for r in used),
            "right_used": sum(r["error_angstrom"] <= RIGHT for r in used),
            "worst_used": max((r["error_angstrom"] for r in used), default=None)}


def _rival_margin(row: dict) -> float:
    """The largest ring score of a refined candidate over :data:`WRONG` Å from the chosen fit,
    less the chosen fit's (−inf where there is none)."""
    chosen = row["refined"][0]
    far = [r["rings_z"] for r in row["refined"][1:] if abs(r["mean"] - chosen["mean"]) > WRONG]
    return max(far, default=-np.inf) - chosen["rings_z"]


def _disagree(row: dict) -> bool:
    """Whether the 1024² spectrum's best candidate is over :data:`WRONG` Å from the chosen fit
    (as ``CTFFit.rival_defocus_angstrom``; at 1024² the finest spectrum is the 1024² one)."""
    if row["shape"][0] <= 1024 or row["shape"][1] <= 1024:
        return False
    best = row["candidates"][int(np.argmax(row["scores"]["1024"]))]
    return abs(best - row["refined"][0]["mean"]) > WRONG


def rules() -> dict:
    """Choices of the fit to use, each ``row -> refined fit or None``."""
    def best_of(key):
        return lambda row: max(row["refined"], key=lambda r: r[key])

    out = {"shipped (finest spectrum's best candidate)": lambda row: row["refined"][0],
           "the refined fit the finest spectrum explains best": best_of("finest"),
           "the refined fit with the best ring score": best_of("rings_z"),
           "the 1024² spectrum's best candidate": lambda row: next(
               r for r in row["refined"] if r["candidate"] == int(np.argmax(row["scores"]["1024"]))
               ) if any(r["candidate"] == int(np.argmax(row["scores"]["1024"]))
                        for r in row["refined"]) else row["refined"][0]}
    out["shipped, not used if the 1024² spectrum's best candidate is over 1000 Å from it "
        "and its ring score under 4.3 (SETTLED_Z)"] = (
        lambda row: None if _disagree(row) and row["refined"][0]["rings_z"] < 4.3
        else row["refined"][0])
    for margin in (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 1.0, 1.5):
        out[f"shipped, not used if a far candidate's ring score is over its own + {margin}"] = (
            lambda row, m=margin: None if _rival_margin(row) > m else row["refined"][0])
    return out


def evaluate(paths: list, out: Path | None) -> dict:
    rows = [json.loads(line) for p in paths for line in Path(p).read_text().splitlines() if line]
    groups: dict = {}
    for row in rows:
        groups.setdefault(f"{row['shape'][0]}x{row['shape'][1]}", []).append(row)
    summary = {"machine": {"processor": platform.processor(), "python": platform.python_version()},
               "files": [str(p) for p in paths], "groups": {}}
    for name, group in sorted(groups.items()):
        margins = [_rival_margin(r) for r in group]
        wrong = [m for r, m in zip(group, margins, strict=True)
                 if r["refined"][0]["error_angstrom"] > WRONG and r["refined"][0]["used"]]
        right = [m for r, m in zip(group, margins, strict=True)
                 if r["refined"][0]["error_angstrom"] <= RIGHT and r["refined"][0]["used"]]
        summary["groups"][name] = {
            "micrographs": len(group),
            "any_candidate_right": sum(any(c["error_angstrom"] <= RIGHT for c in r["refined"])
                                       for r in group),
            "rival_margin_of_wrong_used": sorted(round(m, 3) for m in wrong),
            "rival_margin_of_right_used_top": sorted((round(m, 3) for m in right
                                                      if np.isfinite(m)), reverse=True)[:10],
            "seconds_median": float(np.median([r["seconds"] for r in group])),
            "rules": {k: _tally(group, f) for k, f in rules().items()}}
    text = json.dumps(summary, indent=1)
    print(text)
    if out:
        out.write_text(text + "\n")
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON lines (one per micrograph), "
                    "or with --evaluate the summary")
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--shape", type=int, nargs=2, default=[2048, 2048])
    ap.add_argument("--dose", type=float, nargs=2, help="dose drawn log-uniform from LOW HIGH "
                    "(e/Å²) instead of the spread's")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--evaluate", nargs="+", help="score the rules on these JSON-lines files")
    args = ap.parse_args()
    if args.evaluate:
        evaluate(args.evaluate, args.out)
    else:
        run(args)


if __name__ == "__main__":
    main()
