"""EMPIAR-10025 (T20S proteasome) end to end: plan, prepare, train, denoise, evaluate.

Get the data first. The 196 frame-averaged micrographs (7676 × 7420 float32 MRC, 0.66 Å/px,
41 GB) are in the EMPIAR entry https://www.ebi.ac.uk/empiar/EMPIAR-10025/ ; download its
micrographs folder with the tool the entry page offers (Aspera, Globus or HTTP), e.g. into
``empiar-10025/micrographs/``.

Usage: python examples/empiar_10025.py empiar-10025/micrographs WORKDIR

What the planner says for the whole set (`cryostream plan --shape 7676 7420 --count 196`):
196 patches per micrograph with ``--edge cover`` (169 with ``drop``), 176 train and 20 test
micrographs, and a store of 322 GB for float32 with stored noise, 161 GB for float16 or for
on-device noise, and 80.6 GB for float16 with on-device noise — the choice made here, which
also gives fresh noise every epoch. On a 2-core machine prepare runs at ≈5.3 s per
micrograph for the heaviest choice (stored float32, docs/benchmarks.md), so ≈17 minutes
for the set; it resumes if interrupted. Training the ``unet`` preset on an H100 runs at
≈98 patches/s of 1024²; denoising takes ≈0.5 s of GPU time per micrograph.
"""

import sys
from pathlib import Path

import cryostream
from cryostream.config import DenoiseConfig
from cryostream.denoise import denoise
from cryostream.evaluate import evaluate
from cryostream.training import TrainConfig, train

micrographs, work = sys.argv[1], Path(sys.argv[2])
config = cryostream.PrepareConfig(dtype="float16",
                                  noise=cryostream.NoiseConfig(mode="on-device"))
print(cryostream.plan(micrographs, config=config, output=work).table())
store = cryostream.prepare(micrographs, work / "data.h5", config, progress=True)
print(store.summary())
result = train(store.output, work / "run", TrainConfig(model="unet", steps=20_000, batch_size=8),
               resume=(work / "run" / "checkpoints").exists(), progress=True)
print(f"trained: {result.eval}")
# the network's output as it is (tile 3840 on a GPU); DenoiseConfig() would add the run's recipe
# (the Noisier2Noise correction, the CTF-shaped Wiener gain and the 8-fold ensemble: 8 network
# passes per micrograph)
denoise(result.run, micrographs, work / "denoised", config=DenoiseConfig.raw(), workers=8,
        overwrite=True)
evaluate(result.run, store.output, work / "report")
print(f"denoised micrographs in {work / 'denoised'}, report in {work / 'report' / 'report.md'}")
