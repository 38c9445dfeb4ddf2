"""Where in a band the default trails Topaz: the FRC ring by ring, and views of shifted grids.

For held-out conditions of ``train_general_model.py`` (its ``data`` stage made them in
``--work``; the same plan arguments), each micrograph divided by its 95th percentile as there:

* the FRC with the truth of every ring (cycles/px, the default taper) for the noisy input, the
  oracle Wiener filter, Topaz's pretrained U-Net (affine-fitted to the truth), the shipped
  model's 8-fold ensemble, its binned pass and its default (``DenoiseConfig().for_run``, as
  ``cryostream denoise`` with no option), with each ring's signal and noise power (truth, and
  noisy less truth), so that the rings Topaz wins can be told by their signal-to-noise ratio;
* the default with more views in its ensemble: the 8 symmetries of the square again on the
  micrograph less its first 16 rows and/or columns (half the network's coarsest pooling cell,
  so every max-pool sees another grid), averaged with the 8 of the whole micrograph (16 and 32
  views; the border the shifted views do not cover keeps the 8-view mean), through the same
  table. The table was fitted for 8 views.

Writes ``OUT/frc_by_ring.json`` (per micrograph: each method's curve, the band means, the
powers) and ``OUT/ring_gram.npz`` (per micrograph, the parts' cross-powers per ring and bin of
``CTF²``, :func:`ring_gram`, keyed ``NAME/A|B``), and prints the band means per condition.
``--save-default CONDITION ...`` also writes the default's output of those conditions'
micrographs as ``OUT/default_NAME.npz`` (float16);
``--forced-ctf`` scores the default with its fitted CTF's gain used whatever the rings' score
and the check say (``default_forced_ctf``: what the CTF-shaped gain would give where the rule
falls back).
One GPU (Topaz from ``--topaz DIR``)::

    python benchmarks/train_general_model.py --work /tmp/gm --out OUT/data --stages data \\
        --count 0 --conditions t20s-10e-white t20s-20e-white
    python benchmarks/frc_by_ring.py --work /tmp/gm --out OUT --count 0 \\
        --conditions t20s-10e-white t20s-20e-white --model-file cryostream/data/general_model.npz \\
        --topaz DIR
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from general_model_spread import data_tasks
from quality_common import FRC_BANDS, affine_fit
from train_general_model import log, parse_args, pool, topaz_function, use_compilation_cache

SHIFT = 16  # half of the `unet`'s coarsest pooling cell (2**5 px)
VIEWS = {"e8": (), "e16": ((SHIFT, SHIFT),), "e32": ((SHIFT, 0), (0, SHIFT), (SHIFT, SHIFT))}


def band_means(f: np.ndarray, c: np.ndarray) -> list[float]:
    return [round(float(c[(f >= a) & (f < b)].mean()), 4) for a, b in FRC_BANDS]


def ring_power(a: np.ndarray) -> np.ndarray:
    """Power per FRC ring of ``a`` (as :func:`cryostream.metrics.frc` tapers and rings it)."""
    from cryostream.metrics import FRC_TAPER, edge_taper
    from cryostream.spectral import ring_index

    a = np.asarray(a, np.float64)
    fa = np.fft.fft2((a - a.mean()) * edge_taper(a.shape, FRC_TAPER))
    n = min(a.shape) // 2
    ring = np.minimum(ring_index(a.shape, "fft"), n)
    return np.bincount(ring.ravel(), (np.abs(fa) ** 2).ravel(), minlength=n + 1)[1:n]


#: Edges of ``CTF²`` (the default's fitted CTF) that split each ring for :func:`ring_gram`.
CTF2_EDGES = (0.1, 0.4, 0.8)
#: The images whose cross-powers :func:`ring_gram` sums, in order.
GRAM_PARTS = ("noisy", "ensemble", "binned_ensemble", "default_e8", "topaz", "truth")


def ring_gram(images: dict, fit, shape) -> dict:
    """``Σ Re(A·conj(B))`` over the ``rfft2`` coefficients (weighted for the full spectrum) of
    each ring and each bin of the fitted ``CTF²`` (:data:`CTF2_EDGES`; all in the first without
    a fit), for every pair of :data:`GRAM_PARTS` present, the images tapered as the FRC tapers
    them: any linear mix of the parts per ring and bin can then be scored by its FRC."""
    from cryostream.ctf import CTFFit, ctf_squared
    from cryostream.metrics import FRC_TAPER, edge_taper
    from cryostream.spectral import rfft_weight, ring_index

    n = min(shape) // 2
    ring = np.minimum(ring_index(shape, "rfft"), n)
    bins = np.zeros(ring.shape, np.int64)
    if fit is not None:
        bins = np.searchsorted(CTF2_EDGES, ctf_squared(shape, CTFFit(**fit)))
    segment = (ring * (len(CTF2_EDGES) + 1) + bins).ravel()
    size = (n + 1) * (len(CTF2_EDGES) + 1)
    weight = rfft_weight(shape).ravel().astype(np.float64)
    taper = edge_taper(shape, FRC_TAPER)
    names = [k for k in GRAM_PARTS if k in images]
    spectra = {k: np.fft.rfft2((images[k] - images[k].mean()) * taper).ravel() for k in names}
    gram = {}
    for i, a in enumerate(names):
        for b in names[i:]:
            v = np.bincount(segment, weight * (spectra[a] * np.conj(spectra[b])).real,
                            minlength=size)
            gram[f"{a}|{b}"] = v.reshape(n + 1, -1)[1:n]
    gram["count"] = np.bincount(segment, weight, minlength=size).reshape(n + 1, -1)[1:n]
    return gram


def score_rings(task: dict) -> dict:
    """Worker: each method's FRC curve and each view count's default on one micrograph."""
    import mrcfile
    from train_general_model import post_process

    from cryostream.config import DenoiseConfig
    from cryostream.metrics import frc, wiener_oracle

    noisy, truth = mrcfile.read(task["noisy"]), mrcfile.read(task["truth"])
    p = np.float32(np.percentile(noisy, 95))
    y, x = noisy / p, truth / p
    images = {"noisy": y, "wiener": wiener_oracle(y, x)}
    if task["topaz"]:
        images["topaz"] = affine_fit(np.load(task["topaz"]), x)
    views = {k: np.load(v) for k, v in task["views"].items()}
    images["ensemble"] = views["e8"]
    images["binned_ensemble"] = np.load(task["binned_ensemble"])
    record = task["record"]
    config = DenoiseConfig().for_run(record)
    for k, e in views.items():
        images[f"default_{k}"], found = post_process(config, y, {"ensemble": e, "raw": e},
                                                      task, record)
        if k == "e8" and task["save"]:  # the default's output, for a look on another machine
            np.savez_compressed(task["save"], default=images[f"default_{k}"].astype(np.float16))
    if task["forced_ctf"]:  # the fitted CTF's gain used whatever its rings' score and check
        from cryostream.denoise import steps

        rule = steps.no_rings, steps.checked_gain
        steps.no_rings, steps.checked_gain = (lambda *a, **k: False), (lambda *a, **k: -1.0)
        try:
            images["default_forced_ctf"], forced = post_process(
                config, y, {"ensemble": views["e8"], "raw": views["e8"]}, task, record)
        finally:
            steps.no_rings, steps.checked_gain = rule
    fit = (found.get("ctf") or None) and {
        **{k: found["ctf"][k] for k in ("defocus_u_angstrom", "defocus_v_angstrom",
                                        "astigmatism_angle_deg", "score")},
        "pixel_size_angstrom": task["pixel_size"]}
    f, _ = frc(y, x)
    row = {"condition": task["condition"], "name": task["name"], "freq": f.round(5).tolist(),
           "signal_power": ring_power(x).tolist(), "noise_power": ring_power(y - x).tolist(),
           "frc": {}, "bands": {},
           "found": json.loads(json.dumps(found, default=float)),
           "gram": ring_gram({**images, "truth": x}, fit, y.shape),
           "found_forced_ctf": json.loads(json.dumps(forced, default=float))
           if task["forced_ctf"] else None}
    for name, image in images.items():
        _, c = frc(image, x)
        row["frc"][name], row["bands"][name] = c.round(5).tolist(), band_means(f, c)
    return row


def main(argv=None) -> int:
    import mrcfile

    from cryostream.denoise import dihedral_mean
    from cryostream.denoise.binned import binned_estimate
    from cryostream.denoise.network import model_record
    from cryostream.denoise.tiling import network_pass
    from cryostream.denoise.weights import weights_for

    argv = list(sys.argv[1:] if argv is None else argv)
    forced = "--forced-ctf" in argv  # this script's own options
    argv = [a for a in argv if a != "--forced-ctf"]
    save = None
    if "--save-default" in argv:  # this script's own option: CONDITION [CONDITION ...]
        i = argv.index("--save-default")
        j = next((k for k in range(i + 1, len(argv)) if argv[k].startswith("--")), len(argv))
        save, argv = argv[i + 1:j], argv[:i] + argv[j:]
    args = parse_args(argv)
    args.save_default, args.forced_ctf = save, forced
    args.out.mkdir(parents=True, exist_ok=True)
    device = use_compilation_cache(args.work)
    run = str(args.model_file.absolute())
    record = model_record(run)
    table = weights_for(record, True)
    offsets = 1 if table is None else table.binned_offsets
    topaz = topaz_function(args)
    _, test = data_tasks(args, args.work)
    folder = args.work / "rings"
    folder.mkdir(parents=True, exist_ok=True)
    net = lambda im: network_pass(run, im, precision=args.inference_precision)  # noqa: E731
    tasks, seconds = [], {"views": [], "topaz": []}
    for t in test:
        name = f"{t['condition']}_{Path(t['noisy']).stem.split('_')[1]}"
        noisy = mrcfile.read(t["noisy"])
        y = noisy / np.float32(np.percentile(noisy, 95))
        t0 = time.perf_counter()
        e8 = dihedral_mean(net, y)
        shifted = {s: dihedral_mean(net, np.ascontiguousarray(y[s[0]:, s[1]:]))
                   for s in VIEWS["e32"]}
        paths = {}
        for k, shifts in VIEWS.items():
            total = e8.astype(np.float64)
            for s in shifts:
                one = e8.copy()  # the border the shifted grid leaves out keeps the 8 views
                one[s[0]:, s[1]:] = shifted[s]
                total += one
            paths[k] = folder / f"{name}_{k}.npy"
            np.save(paths[k], (total / (1 + len(shifts))).astype(np.float32))
        binned = folder / f"{name}_binned_ensemble.npy"
        np.save(binned, binned_estimate(net, y, ensemble=True, offsets=offsets))
        seconds["views"].append(round(time.perf_counter() - t0, 2))
        topaz_path = None
        if topaz is not None:
            t0 = time.perf_counter()
            topaz_path = folder / f"{name}_topaz.npy"
            np.save(topaz_path, topaz(y))
            seconds["topaz"].append(round(time.perf_counter() - t0, 2))
        log(f"  {name}: 32 views and the binned pass {seconds['views'][-1]} s")
        tasks.append({"condition": t["condition"], "name": name, "noisy": t["noisy"],
                      "truth": t["truth"], "record": record,
                      "pixel_size": t["config"]["pixel_size_angstrom"],
                      "views": {k: str(v) for k, v in paths.items()},
                      "binned_ensemble": str(binned), "binned_raw": str(binned),
                      "topaz": str(topaz_path) if topaz_path else None,
                      "forced_ctf": args.forced_ctf,
                      "save": (str(args.out / f"default_{name}.npz")
                               if t["condition"] in (args.save_default or ()) else None)})
    log(f"scoring {len(tasks)} micrographs on {args.workers} processes")
    with pool(args.workers) as ex:
        rows = list(ex.map(score_rings, tasks))
    summary = {}
    for condition in args.conditions:
        mine = [r for r in rows if r["condition"] == condition]
        summary[condition] = {m: np.round(np.mean([r["bands"][m] for r in mine], axis=0), 4).tolist()
                              for m in mine[0]["bands"]}
        print(f"\n{condition} ({len(mine)} micrographs), FRC by band {FRC_BANDS}")
        for m, v in summary[condition].items():
            print(f"  {m:18s} " + " ".join(f"{b:.4f}" for b in v))
    grams = {f"{r['name']}/{k}": v for r in rows for k, v in r.pop("gram").items()}
    np.savez_compressed(args.out / "ring_gram.npz", **grams)
    (args.out / "frc_by_ring.json").write_text(json.dumps(
        {"device": device, "arguments": {k: str(v) for k, v in vars(args).items()},
         "seconds": seconds, "bands": FRC_BANDS, "summary": summary, "micrographs": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
