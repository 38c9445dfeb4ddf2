"""Draw the simulator beside the real EPU micrograph: images and power spectra.

Usage: python docs/figures/simulator_vs_real.py REAL.mrc OUT.png
(REAL.mrc: the 4096 × 4096 EPU 2.9 example shipped with mrcfile's source distribution.)
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mrcfile
import numpy as np

from cryostream import SimulateConfig
from cryostream.simulate.micrograph import simulate_micrograph
from cryostream.spectral import contrast_transfer, radial_average, welch_spectrum

real_path, out = sys.argv[1], sys.argv[2]
with mrcfile.open(real_path) as m:
    real = np.asarray(m.data, dtype=np.float32).squeeze()
    real_ps = float(m.voxel_size.x)
sim = simulate_micrograph(SimulateConfig(shape=(4096, 4096), seed=0), 0)
defocus = (sim.defocus_u_angstrom + sim.defocus_v_angstrom) / 2


def binned(a, f=8):
    n = a.shape[0] // f * f
    return a[:n, :n].reshape(n // f, f, n // f, f).mean((1, 3))


def show_spectrum(ax, image, ps, title):
    spec = welch_spectrum(image, 1024)
    c = spec.shape[0] // 2
    crop = np.log(spec[c - 384 : c + 384, c - 384 : c + 384])
    ax.imshow(crop, cmap="gray", vmin=np.percentile(crop, 2), vmax=np.percentile(crop, 99.7),
              extent=[-384 / (1024 * ps), 384 / (1024 * ps)] * 2)
    ax.set_title(title)
    ax.set_xlabel("spatial frequency (1/Å)")


fig, axes = plt.subplots(2, 3, figsize=(15, 10))
for ax, img, title in (
    (axes[0, 0], sim.noisy, "simulated micrograph (4096², 8× binned)"),
    (axes[0, 1], sim.truth, "its ground truth"),
    (axes[0, 2], real, "real EPU micrograph (4096², 8× binned)"),
):
    b = binned(img)
    ax.imshow(b, cmap="gray", vmin=np.percentile(b, 1), vmax=np.percentile(b, 99))
    ax.set_title(title)
    ax.axis("off")
show_spectrum(axes[1, 0], sim.noisy, 0.6575, "simulated: power spectrum (Thon rings)")
show_spectrum(axes[1, 2], real, real_ps, "real: power spectrum")
ax = axes[1, 1]
for img, ps, label in ((sim.noisy, 0.6575, "simulated"), (real, real_ps, "real")):
    f, p = radial_average(welch_spectrum(img, 1024), ps)
    ax.semilogy(f[4:], p[4:] / np.median(p[len(p) // 2 :]), label=label, lw=0.8)
ctf2 = contrast_transfer(f**2, defocus) ** 2
ax.plot(f[4:], 1 + 0.5 * ctf2[4:], color="k", lw=0.4, alpha=0.5, label=f"CTF² at {defocus:.0f} Å")
ax.set_xlabel("spatial frequency (1/Å)")
ax.set_ylabel("power / high-frequency median")
ax.set_xlim(0, 0.76)
ax.legend()
ax.set_title("radially averaged power")
fig.tight_layout()
fig.savefig(out, dpi=80)
print("wrote", out)
