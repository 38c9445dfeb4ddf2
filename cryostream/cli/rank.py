"""``cryostream rank``: trained runs ranked on micrographs without ground truth."""

from __future__ import annotations

import argparse
import json

from cryostream.cli.common import add_library_flag, given
from cryostream.cli.denoise import add_pipeline_options, denoise_config
from cryostream.errors import ConfigError

__all__ = ["add_parser", "ranking_lines", "run"]

RANK = "cryostream.denoise:rank_runs"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``rank`` to the subcommands."""
    p = subparsers.add_parser("rank", help="rank trained runs on micrographs without ground truth",
                              description="Score each run's whole denoising pipeline by "
                              "recorruption (the same noise draws for every run) and list the "
                              "runs best first.")
    p.add_argument("runs", nargs="*", metavar="RUN",
                   help="run folders from cryostream train or fit, exported .npz files or "
                   "shipped models' names")
    p.add_argument("-i", "--inputs", nargs="+",
                   help="MRC files, globs, folders, a RELION STAR file or a cryoSPARC "
                   "exposures .cs file to score on (required)")
    add_pipeline_options(p)
    g = p.add_argument_group("scoring")
    add_library_flag(g, "--draws", RANK, "draws", "recorrupted passes per run and micrograph",
                     type=int)
    add_library_flag(g, "--beta", RANK, "beta", "recorruption strength, from 0.01 to 100: the "
                     "scored input carries 1 + β² times the micrograph's noise power, the target "
                     "it is compared with 1 + 1/β² times", type=float)
    add_library_flag(g, "--seed", RANK, "seed", "seed of the noise draws, 0 to 2**32 - 1",
                     type=int)
    p.add_argument("--json", help="also write the scores to this JSON file")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Score the runs and print them best first."""
    config = denoise_config(args)
    from cryostream.denoise import rank_runs
    from cryostream.denoise.network import check_model

    if not args.inputs:  # `rank RUN MICROGRAPHS`, as denoise takes them
        raise ConfigError(
            "no micrographs to score on: give them with -i (cryostream rank RUN [RUN ...] -i "
            "MICROGRAPHS)" + "".join(f"; {name} is not a run" for name in args.runs
                                     if not _looks_like_run(name)))
    if not args.runs:  # `rank -i MICROGRAPHS... RUNS...`: -i took the runs too
        raise ConfigError(
            "no run to rank: -i/--inputs takes every name after it, so name the runs first "
            "(cryostream rank RUN [RUN ...] -i MICROGRAPHS)"
            + "".join(f"; {name} looks like a run" for name in args.inputs if _looks_like_run(name)))

    for model in args.runs:
        check_model(model)  # named as given
    if len(set(args.runs)) == 1:
        import logging

        logging.getLogger("cryostream").info(
            "one run: its score is listed alone (a score means something only beside another "
            "run's on the same micrographs); give two or more runs to rank them")
    if args.json:  # before the scoring, not after it
        from cryostream.io.paths import output_file

        output_file(args.json, "--json", "ranking.json")

    ranked = rank_runs(args.runs, args.inputs, config=config, **given(args, "draws", "beta", "seed"))
    print("\n".join(ranking_lines(ranked)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(ranked, f, indent=1)
    return 0


def ranking_lines(ranked: list[dict]) -> list[str]:
    """The table ``rank`` prints: each run (best first), its score, how far above the best's,
    and on how many of the micrographs it scored above the best (behind on every one: worse; on
    some only: a near-tie, which the mean orders loosely)."""
    best, count = ranked[0], len(ranked[0]["scores"])
    width = max(len(r["run"]) for r in ranked)
    lines = [f"{'run':<{width}}  score (lower is better)  above the best  behind it on"]
    for r in ranked:
        behind = sum(r["scores"].get(k, score) > score for k, score in best["scores"].items())
        lines.append(f"{r['run']:<{width}}  {r['score']:.6g}  {r['score'] - best['score']:+.3g}  "
                     + ("—" if r is best else f"{behind} of {count} micrograph"
                        + "s" * (count != 1)))
    if len(ranked) > 1 and count == 1:
        lines.append("(one micrograph: give several, so that a run behind on every one can be "
                     "told from a near-tie whose order changes from micrograph to micrograph)")
    return lines


def _looks_like_run(name: str) -> bool:
    """A shipped model's name, an exported ``.npz`` or a folder with a run's record."""
    from pathlib import Path

    from cryostream.denoise.network import SHIPPED
    from cryostream.runs import RECORD_FILE

    return name in SHIPPED or name.endswith(".npz") or (Path(name) / RECORD_FILE).is_file()
