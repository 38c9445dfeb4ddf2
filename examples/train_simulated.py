"""From simulated micrographs to a trained denoiser, in a script.

Usage: python examples/train_simulated.py [OUTDIR] [--gpu]
On a CPU this trains unet-small on 256² patches: about 6 minutes of CPU time, so 3–4 minutes
on two idle cores and longer while other work shares them (13 minutes beside other jobs on a
2-core machine); with --gpu, the unet preset on 1024² patches of full-size micrographs.
"""

import sys

import cryostream
from cryostream.evaluate import compare_on_store
from cryostream.training import TrainConfig, train

out = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else "train-output"
gpu = "--gpu" in sys.argv

shape, patch = ((7676, 7420), 1024) if gpu else ((2048, 2048), 256)
sim = cryostream.simulate(f"{out}/sim", 8 if gpu else 6, shape=shape, seed=0, overwrite=True)
store = cryostream.prepare(sim.micrographs, f"{out}/data.h5",
                           cryostream.PrepareConfig(patch_size=patch, stride=patch // 2),
                           overwrite=True).output
config = (TrainConfig(model="unet", steps=5000, batch_size=8) if gpu else
          TrainConfig(model="unet-small", precision="fp32", residual=True, steps=200,
                      batch_size=8, learning_rate=2e-3, warmup_steps=20, eval_every=50))
result = train(store, f"{out}/run", config, progress=True)
print(f"trained {result.steps} steps in {result.seconds:.0f} s ({result.patches_per_second:.1f} patches/s)")
print(compare_on_store(result.run, store, patches=64))
