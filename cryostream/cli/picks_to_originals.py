"""``cryostream picks-to-originals``: a RELION picking job's coordinates STAR file, made on
denoised micrographs, pointed at the original micrographs for Extract."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``picks-to-originals`` to the subcommands."""
    p = subparsers.add_parser(
        "picks-to-originals", help="point a RELION picking job's coordinates at the original "
        "micrographs, for Extract",
        description="Write a copy of a RELION 4/5 coordinates STAR file (AutoPick/jobNNN/"
        "autopick.star, ManualPick/jobNNN/manualpick.star) picked on micrographs that "
        "cryostream denoise wrote, whose rlnMicrographName are the original micrographs' "
        "names, every other value as it was: give it to Extract as the coordinates, with the "
        "originals' micrographs STAR file (CtfFind's micrographs_ctf.star). Each denoised "
        "micrograph's original is the input its NAME.json record names. Run it from the "
        "RELION project folder. RELION 3's coordinate files (found by each micrograph's name "
        "and a suffix) are not supported.")
    p.add_argument("coordinates", metavar="COORDS.star",
                   help="the picking job's coordinates STAR file (never written)")
    p.add_argument("-o", "--output", required=True, metavar="NEW.star",
                   help="the coordinates STAR file to write, e.g. AutoPick/job011/"
                   "coords_originals.star")
    p.add_argument("--originals", metavar="STAR",
                   help="the originals' micrographs STAR file that Extract reads (e.g. "
                   "CtfFind/job003/micrographs_ctf.star): the names are written as it writes "
                   "them, and micrographs whose records are gone are matched by file name; "
                   "needed for outputs of even/odd halves and inputs outside the project folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace NEW.star where it exists (never COORDS.star or --originals)")
    p.add_argument("--permissive", action="store_true",
                   help="leave out, with a warning, the rows whose original is not found "
                   "(without it, they are named and nothing is written)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Write the new coordinates STAR file and say what it lists."""
    from cryostream.io.paths import shown_path
    from cryostream.picks import picks_to_originals

    result = picks_to_originals(args.coordinates, args.output, originals=args.originals,
                                overwrite=args.overwrite, permissive=args.permissive)
    named = (f"as {shown_path(args.originals)} names them" if args.originals else
             "relative to the project folder")
    if result.already_written:  # the same command run again
        print(f"{shown_path(result.output)}: already written with these picks ("
              f"{result.micrographs} micrograph{'' if result.micrographs == 1 else 's'} named "
              f"after their originals {named}); nothing to do")
        return 0
    print(f"wrote {shown_path(result.output)}: {result.micrographs} micrograph"
          f"{'' if result.micrographs == 1 else 's'} with picks, named after their originals "
          f"{named}" + (f" ({len(result.left_out)} left out: see the warning)"
                        if result.left_out else "")
          + "; give it to Extract as the coordinates, with the originals' micrographs STAR file")
    return 0
