"""``cryostream plan``: sizes, counts and the RAM/disk/time estimate of a run."""

from __future__ import annotations

import argparse

from cryostream.cli.prepare import add_prepare_options, prepare_config
from cryostream.errors import CryostreamError

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``plan`` to the subcommands."""
    p = subparsers.add_parser("plan", help="sizes, counts and the RAM/disk/time estimate of a run",
                              description="Plan a preprocessing run: patch grid for both edge "
                              "policies, split, store size per dtype and noise mode, RAM, disk, "
                              "time.")
    p.add_argument("inputs", nargs="*", help="MRC files, globs, folders, a RELION STAR file or a "
                   "cryoSPARC exposures .cs file")
    p.add_argument("--shape", type=int, nargs=2, metavar=("H", "W"),
                   help="plan for hypothetical micrographs of this size")
    p.add_argument("--count", type=int, help="number of hypothetical micrographs")
    p.add_argument("-o", "--output", help="the store prepare would write (DATA.h5; checks the "
                   "free disk there)")
    add_prepare_options(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Print the plan's table."""
    from cryostream.plan import plan

    config = prepare_config(args)
    if args.output:  # refused where prepare -o would refuse it (a folder: give the file's name)
        from pathlib import Path

        from cryostream.prepare_output import check_output

        check_output(Path(args.output).expanduser().absolute(), args.inputs, overwrite=True)
    if args.inputs and (args.shape or args.count is not None):
        given = "--shape" if args.shape else "--count"
        raise CryostreamError(f"plan: {given} is for hypothetical micrographs, and INPUTS were given: "
                              "give INPUTS (planned as they are), or --shape H W --count N, not both")
    if args.inputs:
        p = plan(args.inputs, config=config, output=args.output, permissive=args.permissive)
    else:
        if args.shape is None or args.count is None:
            raise CryostreamError("plan: give INPUTS, or --shape H W and --count N")
        p = plan(shape=tuple(args.shape), count=args.count, config=config, output=args.output)
    print(p.table())
    return 0
