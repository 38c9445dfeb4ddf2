"""Matched noise end to end: measure, train the reference plan's way, correct, score against the truth.

Simulates micrographs whose shot noise is shaped like a real detector's, prepares a store with
matched noise synthesised on the device, trains, denoises a held-out micrograph with the
Noisier2Noise correction (alone, with the ring clamp, with the clamp and the Wiener gain, and
calibrated), each a :class:`~cryostream.config.DenoiseConfig`, and prints its PSNR against the
ground truth beside the noisy input, the best Gaussian and the oracle Wiener filter; also draws
the store's noise figure.

Usage: python examples/matched_noise.py [OUTDIR] [--gpu]
On a CPU: unet-small, 256² patches, 300 steps (about 11 minutes of CPU time: ≈7 minutes on
two idle cores, 18 minutes beside other jobs on a 2-core machine; the corrected output
then scores 29.2 dB, 32.7 dB with the ring clamp, 33.3 dB with the clamp and the Wiener gain,
and 35.3 dB calibrated by four recorrupted passes, against 35.4 for the oracle Wiener filter).
With --gpu: the unet preset on 512² patches for 3000 steps, residual (≈3 minutes on an H100).
Each configuration denoises the micrograph from the start (the network runs again); to apply
several post-processings to one network output, see ``DenoiseConfig.pipeline()``.
"""

import sys

import mrcfile
import numpy as np

import cryostream
from cryostream.config import DenoiseConfig, NoiseConfig, SimulateConfig
from cryostream.denoise import denoise
from cryostream.inspect import show_noise
from cryostream.metrics import best_gaussian, psnr, wiener_oracle
from cryostream.training import TrainConfig, train

out = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else "matched-output"
gpu = "--gpu" in sys.argv

# 1. Simulate: the last micrograph is held out for scoring.
n, patch = (10, 512) if gpu else (5, 256)
sim = cryostream.simulate(f"{out}/sim", n, config=SimulateConfig(shape=(2048, 2048), seed=7,
                                                                 detector_nps_nyquist=0.1),
                          overwrite=True)

# 2. Prepare with matched noise (α 1) made on the device; the noise of each micrograph is
#    measured in prepare's first pass and stored with it.
config = cryostream.PrepareConfig(patch_size=patch, stride=patch // 2, test_fraction=0.0,
                                  noise=NoiseConfig(model="matched", alpha=1.0, mode="on-device"))
store = cryostream.prepare(sim.micrographs[:-1], f"{out}/data.h5", config, overwrite=True).output
print(f"noise figure: {show_noise(store, f'{out}/noise.png')}")

# 3. Train the reference plan's way: the network learns E[micrograph | micrograph + matched noise].
# On the GPU the model is residual: its output is then not rounded to bfloat16 as a whole,
# a rounding the correction would multiply by (1 + α²) / α².
train_config = (TrainConfig(model="unet", residual=True, steps=3000, batch_size=16,
                            warmup_steps=200, eval_every=10**9) if gpu else
                TrainConfig(model="unet-small", precision="fp32", steps=300, batch_size=8,
                            learning_rate=2e-3, warmup_steps=30, eval_every=10**9))
result = train(store, f"{out}/run", train_config, progress=True)

# 4. Denoise the held-out micrograph, without and with the Noisier2Noise correction (α² = 1,
#    from the run's record), then with the ring clamp, with the Wiener filter's linear response
#    per ring from the micrograph's measured noise, and with the weight of what lies beyond a
#    linear filter fitted by 4 recorrupted passes: each pipeline is one DenoiseConfig.
tile = 1024 if gpu else 512
gain = {"n2n_correction": True, "n2n_clamp": True, "wiener_gain": True}
configs = {"model, uncorrected": DenoiseConfig.raw(tile=tile),
           "model, Noisier2Noise-corrected": DenoiseConfig.raw(tile=tile, n2n_correction=True),
           "  + ring clamp": DenoiseConfig.raw(tile=tile, n2n_correction=True, n2n_clamp=True),
           "  + ring clamp and Wiener gain": DenoiseConfig.raw(tile=tile, **gain),
           "  + the same, calibrated (4 passes)": DenoiseConfig.raw(tile=tile, calibrate=4, **gain)}
noisy = mrcfile.read(sim.micrographs[-1]).astype(np.float32)
truth = mrcfile.read(sim.truths[-1]).astype(np.float32)
scale = np.percentile(noisy, 95)  # PSNR with the noisy micrograph's 95th percentile as 1.0
y, x = noisy / scale, truth / scale
images = {"noisy": y, "best Gaussian": None, "oracle Wiener": wiener_oracle(y, x)}
for name, denoise_config in configs.items():
    images[name] = denoise(result.run, [sim.micrographs[-1]], config=denoise_config).values[0] / scale
print(f"PSNR against the ground truth ({sim.micrographs[-1].name}):")
for name, image in images.items():
    value = best_gaussian(y, x)[0] if image is None else psnr(image, x)
    print(f"  {name:<36} {value:6.2f} dB")
