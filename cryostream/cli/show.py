"""``cryostream show``: a store's input/target pairs, or its measured noise, as a PNG."""

from __future__ import annotations

import argparse

from cryostream.cli.common import add_library_flag, given

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``show`` to the subcommands."""
    p = subparsers.add_parser("show", help="draw input/target pairs of a store with their statistics",
                              description="Draw input/target patch pairs of a store's train or "
                              "test split with their statistics, or (--noise) the micrographs' "
                              "measured noise spectra and shot-noise share, as one PNG.")
    p.add_argument("store", help="a store written by cryostream prepare (data.h5)")
    p.add_argument("-o", "--output", required=True, help="PNG file")
    add_library_flag(p, "--count", "cryostream.inspect:show", "count", "pairs drawn", type=int)
    add_library_flag(p, "--split", "cryostream.inspect:show", "split", "split drawn from",
                     choices=("train", "test"))
    p.add_argument("--noise", action="store_true",
                   help="draw the measured noise spectra and shot-noise share instead")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Draw the figure and print where it went."""
    from cryostream.errors import ConfigError
    from cryostream.inspect import show, show_noise

    if str(args.store).lower().endswith((".mrc", ".mrcs", ".map")):  # a micrograph, not a store
        raise ConfigError(f"{args.store}: show draws a store's patches (a .h5 from cryostream "
                          "prepare), not a micrograph; to look at a micrograph or a denoised "
                          "output, open it in 3dmod or relion_display, or see the quick "
                          "start's matplotlib lines (docs/quickstart.md, \"Look at the result\")")

    if args.noise:
        print(f"wrote {show_noise(args.store, args.output)}")
        return 0
    print(f"wrote {show(args.store, args.output, **given(args, 'count', 'split'))}")
    return 0
