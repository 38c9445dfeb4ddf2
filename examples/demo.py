"""The main job on a built-in default: simulated EMPIAR-10025-like micrographs.

Simulates a small set with ground truth, opens it lazily, prints the sizing plan for it and
for the full EMPIAR-10025 data set, and prepares it into an HDF5 training store.
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

print("3. the sizing plan for this set (patch 512, stride 256)")
config = cryostream.PrepareConfig(patch_size=512, stride=256)
print(cryostream.plan(sim.micrographs, config=config, output=out).table())

print("\n4. the sizing plan for all of EMPIAR-10025 (196 × 7676 × 7420, patch 1024, stride 512)")
print(cryostream.plan(shape=(7676, 7420), count=196, output=out).table())
print("\n5. preparing the simulated set: normalise, patch 512/256, Poisson+Gaussian noise -> HDF5")
result = cryostream.prepare(sim.micrographs, f"{out}/data.h5", config, overwrite=True)
print("   " + result.summary())
from cryostream.inspect import show  # noqa: E402

print(f"   input/target samples drawn to {show(result.output, f'{out}/samples.png')}")
print(f"\ndemo finished in {time.perf_counter() - start:.1f} s")
