"""``cryostream prepare``: micrographs → normalised, patched, noised HDF5 store.

Also the preprocessing flags shared with ``plan`` (:data:`FLAGS`, :func:`add_prepare_options`,
:func:`prepare_config`).
"""

from __future__ import annotations

import argparse
import dataclasses

from cryostream.cli.common import (
    QUIET_HELP,
    add_config_flags,
    add_library_flag,
    config_from_args,
    given,
)
from cryostream.config import (
    COMPRESSIONS,
    NOISE_MODELS,
    NOISE_MODES,
    STORE_DTYPES,
    NoiseConfig,
    PrepareConfig,
)
from cryostream.errors import ConfigError
from cryostream.patches import EDGE_POLICIES

__all__ = ["FLAGS", "add_parser", "add_prepare_options", "odd_inputs", "prepare_config", "run"]

FLAGS = {
    "patch_size": ("--patch", "patch edge, px"),
    "stride": ("--stride", "patch step, px (half the patch if not given; at most the patch)"),
    "edge": ("--edge", "edge policy", {"choices": EDGE_POLICIES}),
    "percentile": ("--percentile", "per-micrograph percentile mapped to 1.0"),
    "noise.model": ("--noise", "noise model", {"choices": NOISE_MODELS}),
    "noise.sigma": ("--sigma", "Gaussian σ"),
    "noise.dose": ("--dose", "Poisson counts per unit intensity"),
    "noise.mode": ("--noise-mode", "noise stored or drawn on the device",
                   {"choices": NOISE_MODES}),
    "noise.alpha": ("--alpha", "matched: added noise σ over the micrograph's own"),
    "noise.shot": ("--shot", "matched: shot-noise share in [0, 1] (default: each micrograph's "
                   "estimate)"),
    "noise.radius": ("--noise-radius", "matched: radius of the spectrum-shaping kernel, px"),
    "dtype": ("--dtype", "stored sample dtype", {"choices": STORE_DTYPES}),
    "compression": ("--compression", "HDF5 chunk compression", {"choices": COMPRESSIONS}),
    "test_fraction": ("--test-fraction", "fraction of micrographs held out"),
    "seed": ("--seed", "seed of the noise and of the split"),
}
"""The :class:`~cryostream.config.PrepareConfig` fields the preprocessing flags set."""


def add_prepare_options(parser: argparse.ArgumentParser) -> None:
    """The preprocessing options shared by ``plan`` and ``prepare``."""
    group = parser.add_argument_group("preprocessing options")
    add_config_flags(group, PrepareConfig, FLAGS)
    group.add_argument("--permissive", action="store_true",
                       help="skip bad micrographs with a warning")


#: The noise options and the models that use them: given with another, they are refused.
_NOISE_USES = {"sigma": ("gaussian", "poisson-gaussian"), "dose": ("poisson", "poisson-gaussian"),
               "alpha": ("matched",), "shot": ("matched",), "radius": ("matched",)}


def prepare_config(args: argparse.Namespace) -> PrepareConfig:
    """The :class:`~cryostream.config.PrepareConfig` the preprocessing flags describe; a noise
    option the chosen model does not use (``--sigma`` with ``--noise none``) is refused, not
    ignored."""
    config = config_from_args(PrepareConfig, args, FLAGS)
    noise, default = config.noise, NoiseConfig()
    for name, models in _NOISE_USES.items():
        if noise.model not in models and getattr(noise, name) != getattr(default, name):
            raise ConfigError(f"{FLAGS['noise.' + name][0]} {getattr(noise, name)} is for "
                              f"{' and '.join(models)} noise; with --noise {noise.model} it is not "
                              "used: leave it out, or choose a noise that uses it")
    return config


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``prepare`` to the subcommands."""
    p = subparsers.add_parser("prepare", help="normalise, patch and noise micrographs into HDF5",
                              description="Build an HDF5 training store from micrographs with Dask.")
    p.add_argument("inputs", nargs="+", help="MRC files, globs, folders, a RELION STAR file or a "
                   "cryoSPARC exposures .cs file")
    p.add_argument("-o", "--output", required=True, help="the store (DATA.h5)")
    p.add_argument("--targets", nargs="+", metavar="TARGET",
                   help="one target per micrograph (e.g. a simulation's truth/ folder): pair "
                   "them as (input, target) with --noise none")
    p.add_argument("--odd", nargs="*", metavar="ODD",
                   help="the odd-frame sums of the even-frame sums given as inputs (NAME_EVN.mrc "
                   "with NAME_ODD.mrc, or one name in two folders): train Noise2Noise on both "
                   "directions, no noise added (--noise none is implied); with no value, the "
                   "inputs are STAR files and their rlnMicrographNameEven/Odd columns are used, "
                   "each row's two halves paired by the row")
    add_prepare_options(p)
    g = p.add_argument_group("where it runs")
    g.add_argument("--scheduler", help="address of an existing Dask scheduler")
    g.add_argument("--workers", type=int, help="start a LocalCluster of N worker processes")
    g.add_argument("--memory-limit", help="memory limit per worker, e.g. 4GiB")
    add_library_flag(g, "--dashboard", "cryostream.prepare:prepare", "dashboard_address",
                     "dashboard address of a started cluster")
    g.add_argument("--report", help="save a Dask performance report (HTML)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Prepare the store and print its one-line summary."""
    from cryostream.prepare import prepare

    config, odd = prepare_config(args), odd_inputs(args.odd, args.inputs)
    if args.memory_limit and not args.workers:
        raise ConfigError(f"--memory-limit {args.memory_limit} is each --workers process's limit "
                          + ("(a --scheduler's workers have their own)" if args.scheduler else
                             "and prepare runs in threads without --workers")
                          + ": add --workers N, or leave it out")
    if odd is not None and config.noise == NoiseConfig():  # no noise option given
        config = dataclasses.replace(config, noise=NoiseConfig(model="none"))
    result = prepare(
        args.inputs,
        args.output,
        config,
        permissive=args.permissive,
        scheduler=args.scheduler,
        workers=args.workers,
        memory_limit=args.memory_limit,
        report=args.report,
        overwrite=args.overwrite,
        progress=not args.quiet,
        targets=args.targets,
        odd=odd,
        **given(args, "dashboard_address"),
    )
    print(result.summary())  # (a default noise: prepare notes that it is made up)
    return 0


def odd_inputs(odd: list[str] | None, inputs: list[str]) -> list[str] | None:
    """The odd-frame sums ``--odd`` names (``odd``, as argparse gives it with ``nargs="*"``):
    its values, or the ``inputs`` (STAR files, read for their ``rlnMicrographNameOdd`` column)
    when it has none; ``None`` without ``--odd``. Shared by ``prepare`` and ``denoise``.

    Raises
    ------
    ConfigError
        ``--odd`` without values when an input is not a STAR file.
    """
    if odd is None or odd:
        return odd
    not_star = [i for i in inputs if not str(i).lower().endswith(".star")]
    if not_star:
        raise ConfigError(f"--odd without files reads the odd halves from the inputs' STAR files "
                          f"(their rlnMicrographNameOdd column), but {not_star[0]} is not a STAR "
                          "file; give the odd halves' files or folder: --odd ODD...")
    return list(inputs)
