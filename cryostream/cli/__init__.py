"""The ``cryostream`` command: each subcommand is a thin wrapper over one library call.

One module per subcommand (``add_parser`` and ``run``); flags that set config fields are
generated from the config dataclasses, so every default is stated once, in
:mod:`cryostream.config` or in the library function's signature (:mod:`cryostream.cli.common`).
User mistakes print one line (``cryostream COMMAND: error: …``) and exit with status 2; they
never print a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from cryostream._version import __version__
from cryostream.cli import (
    denoise,
    evaluate,
    export_bin,
    plan,
    prepare,
    rank,
    show,
    simulate,
    train,
)
from cryostream.cli.common import run_command

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

SUBCOMMANDS = (simulate, plan, prepare, train, denoise, rank, evaluate, show, export_bin)
"""The subcommand modules, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``cryostream`` command (imports no library module)."""
    parser = argparse.ArgumentParser(
        prog="cryostream",
        description="Out-of-core cryo-EM micrograph denoising.",
    )
    parser.add_argument("--version", action="version", version=f"cryostream {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cryostream`` command; returns the exit status."""
    return run_command(build_parser().parse_args(argv))
