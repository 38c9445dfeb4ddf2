"""``cryostream export-bin``: a store's datasets as the reference plan's flat ``.bin`` files."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``export-bin`` to the subcommands."""
    p = subparsers.add_parser("export-bin",
                              help="write the reference plan's train_input.bin … layout + JSON")
    p.add_argument("store")
    p.add_argument("outdir")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Export and print the file count and size."""
    from cryostream.inspect import export_bin

    paths = export_bin(args.store, args.outdir)
    total = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} .bin files and bin.json to {args.outdir} ({total / 1e9:.2f} GB)")
    return 0
