"""The main job on a built-in default: simulated EMPIAR-10025-like micrographs.

Simulates a small set with ground truth, opens it lazily, prints the sizing plan for it and
for the full EMPIAR-10025 data set, prepares it into an HDF5 training store, trains unet-small
on it, compares the held-out PSNR with the noisy input and the best Gaussian low-pass,
denoises a whole micrograph and writes the evaluation report.
Usage: python examples/demo.py [OUTDIR]
"""

import sys
import time

import cryostream

out = sys.argv[1] if len(sys.argv) > 1 else "demo-output"
start = time.perf_counter()

print("1. simulating 6 EMPIAR-10025-like micrographs of 2048 × 2048 px (T20S, 300 kV, 50 e/Å²)")
sim = cryostream.simulate(f"{out}/simulated", 6, shape=(2048, 2048), seed=0, overwrite=True)
print(f"   wrote {len(sim.micrographs)} micrographs + ground truth under {sim.root} "
      f"in {sim.seconds:.1f} s")

print("2. opening them lazily (nothing is read until computed)")
stack = cryostream.open_micrographs(sim.micrographs_star)
print(f"   {stack.dims} {stack.shape} float32, {stack.data.npartitions} chunks of "
      f"{stack.attrs['band_rows']} rows, pixel {stack.attrs['pixel_size_angstrom']} Å")
means = stack.mean(dim=("y", "x")).compute()
print("   mean electrons per pixel:", " ".join(f"{v:.2f}" for v in means.values))

print("3. the sizing plan for this set (patch 256, stride 128)")
config = cryostream.PrepareConfig(patch_size=256, stride=128)
print(cryostream.plan(sim.micrographs, config=config, output=out).table())

print("\n4. the sizing plan for all of EMPIAR-10025 (196 × 7676 × 7420, patch 1024, stride 512)")
print(cryostream.plan(shape=(7676, 7420), count=196, output=out).table())
print("\n5. preparing the simulated set: normalise, patch 256/128, Poisson+Gaussian noise -> HDF5")
result = cryostream.prepare(sim.micrographs, f"{out}/data.h5", config, overwrite=True)
print("   " + result.summary())
from cryostream.inspect import show  # noqa: E402

print(f"   input/target samples drawn to {show(result.output, f'{out}/samples.png')}")
print("\n6. training unet-small on the CPU for 200 steps (a few minutes on 2 cores)")
from cryostream.evaluate import compare_on_store  # noqa: E402
from cryostream.training import TrainConfig, train  # noqa: E402

train_config = TrainConfig(model="unet-small", precision="fp32", residual=True, steps=200,
                           batch_size=8, learning_rate=2e-3, warmup_steps=20, eval_every=50,
                           checkpoint_every=200, threads=2)
run = f"{out}/run"
import shutil  # noqa: E402

shutil.rmtree(run, ignore_errors=True)
trained = train(result.output, run, train_config, progress=True)
print(f"   {trained.steps} steps in {trained.seconds:.0f} s; metrics and loss.png in {run}")
scores = compare_on_store(run, result.output, patches=64)
print(f"   held-out PSNR on {scores['patches']} test patches (peak 1.0 = 95th percentile):")
print(f"     noisy input            {scores['noisy_psnr']:6.2f} dB")
print(f"     best Gaussian low-pass {scores['gaussian_psnr']:6.2f} dB (sigma {scores['gaussian_sigma']} px)")
print(f"     cryostream unet-small  {scores['model_psnr']:6.2f} dB")
if scores["model_psnr"] <= max(scores["noisy_psnr"], scores["gaussian_psnr"]):
    sys.exit("the trained model did not beat the baselines")

print("\n7. denoising a whole simulated micrograph and writing the evaluation report")
from cryostream.config import DenoiseConfig  # noqa: E402
from cryostream.denoise import denoise  # noqa: E402
from cryostream.evaluate import evaluate  # noqa: E402

denoise(run, sim.micrographs[:1], f"{out}/denoised", config=DenoiseConfig.raw(tile=512), overwrite=True)
print(f"   denoised micrograph: {out}/denoised/{sim.micrographs[0].name}")
report = evaluate(run, result.output, f"{out}/report", truth=sim.root, micrographs=1)
row = report["simulated"][0]
print(f"   against the ground truth ({row['micrograph']}), PSNR dB / SSIM:")
width = max(len(name) for name in row)
for name, value in row.items():
    if name != "micrograph":
        print(f"     {name:<{width}} {value['psnr']:6.2f} / {value['ssim']:.3f}")
print(f"   report: {out}/report/report.md")
print(f"\ndemo finished in {time.perf_counter() - start:.1f} s")
