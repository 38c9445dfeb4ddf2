"""``cryostream export-bin``: a store's patches as flat binary files for other training code."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``export-bin`` to the subcommands."""
    p = subparsers.add_parser(
        "export-bin", help="copy a store's patches into flat binary files for other training code",
        description="Write train_input.bin, train_target.bin, test_input.bin and test_target.bin: "
        "raw arrays of (patch, y, x) in the store's dtype, C order, no header, byte for byte the "
        "store's patches; and bin.json: each file's shape and dtype, each split's patch index "
        "(micrograph row, y, x in pixels) and the store's preparation config. Read one with "
        "numpy.fromfile(path, dtype).reshape(shape).")
    p.add_argument("store", help="a store written by cryostream prepare (data.h5)")
    p.add_argument("outdir", help="folder for the .bin files and bin.json (made if needed; "
                   "files of an earlier export there are replaced only once all are written)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Export and print the file count and size."""
    from cryostream.inspect import export_bin
    from cryostream.units import format_bytes

    paths = export_bin(args.store, args.outdir)
    total = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} .bin files and bin.json to {args.outdir} ({format_bytes(total)})")
    from cryostream.store import store_facts

    if store_facts(args.store)[0].noise.mode == "on-device":  # a note, as every command's
        import logging

        logging.getLogger("cryostream").info(
            "%s holds no noisy inputs (its noise is drawn as it trains: --noise-mode on-device), "
            "so only the targets are written; draw the noise in your own training, or prepare a "
            "store with --noise-mode stored", args.store)
    return 0
