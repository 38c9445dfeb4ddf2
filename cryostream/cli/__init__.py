"""The ``cryostream`` command: each subcommand is a thin wrapper over one library call.

One module per subcommand (``add_parser`` and ``run``); flags that set config fields are
generated from the config dataclasses, so every default is stated once, in
:mod:`cryostream.config` or in the library function's signature (:mod:`cryostream.cli.common`).
User mistakes print one line (``cryostream COMMAND: error: …``) and exit with status 2; they
never print a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
from collections.abc import Sequence

from cryostream._version import __version__
from cryostream.cli import (
    denoise,
    evaluate,
    export_bin,
    fit,
    picks_to_originals,
    plan,
    prepare,
    rank,
    show,
    simulate,
    train,
)
from cryostream.cli.common import QUIET_HELP, run_command

__all__ = ["SUBCOMMANDS", "OneLineErrors", "build_parser", "main", "notes_on_stdout"]

SUBCOMMANDS = (simulate, plan, prepare, train, fit, denoise, picks_to_originals, rank, evaluate,
               show, export_bin)
"""The subcommand modules, in the order ``--help`` lists them."""


class OneLineErrors(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the command, the problem, where help is),
    not the whole usage block; its subcommands' parsers are of this class too."""

    def __init__(self, *args, **kwargs):
        # no abbreviations: `--out x` beside `-o y` was taken for `--output` and won silently
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}{_dash_hint(message, self)} (see {self.prog} "
                  "--help)\n")

    def _parse_optional(self, arg_string):
        """argparse's (None: a value, not an option), but a minus sign and a digit or point
        begin a value, never an option (no option of cryostream's is so named): a negative
        value (``--budget -5m``, ``--tile -512``), refused by its own check for what it is, or a
        file whose name begins so (``--residual -1.mrc``). argparse took them for options and
        said the value was missing ("expected one argument")."""
        if _NEGATIVE.match(arg_string):
            return None
        return super()._parse_optional(arg_string)

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but options no subcommand knows are named by the subcommand they
        were given to, with the closest option it has (``--angpix``: ``--pixel-size``), and
        an option of one value given twice is refused (argparse keeps the last silently)."""
        argv = list(sys.argv[1:] if args is None else args)
        for parser in (self, *getattr(self, "commands", {}).values()):
            parser.argv = argv  # (what an error's hint reads)
        parsed, extras = self.parse_known_args(argv, namespace)
        command = getattr(self, "commands", {}).get(getattr(parsed, "command", None), self)
        if extras:
            command.error(f"unrecognized arguments: {' '.join(extras)}{_closest(extras, command)}")
        twice = _given_twice(argv, command)
        if twice:
            command.error(twice)
        return parsed


#: What begins a value, never an option: a minus sign and a digit or point.
_NEGATIVE = re.compile(r"^-[\d.]")


def _dash_hint(message: str, parser: argparse.ArgumentParser) -> str:
    """``"; -a.mrc was taken for an option: give a file or folder whose name begins with '-'
    as ./-a.mrc"`` where argparse took a name of a minus sign and a letter for an option, else
    ``""`` (a name of a minus sign and a digit, ``-1.mrc``, is taken as it is:
    :meth:`OneLineErrors._parse_optional`). Two ways it shows: argparse's ``argument
    --residual: expected at least one argument`` where the word after the option begins with
    ``-`` and is no option of ``parser`` (``--residual -a.mrc``); and an input missing or an
    argument not known (``denoise -a.mrc -o out``, ``denoise -5.mrc -a.mrc -o out``) where a
    word looks like a file cryostream reads (:data:`_DASHED_FILE`: ``-a.mrc``, ``-b.star``),
    which no option is named like (an option mistyped, ``--apix``, gets no hint)."""
    found = re.match(r"argument (\S+): expected (?:one|at least one) argument", message)
    argv = getattr(parser, "argv", [])
    if found is not None:
        known = {o for action in parser._actions for o in action.option_strings}
        after = [argv[i + 1] for i, token in enumerate(argv[:-1])
                 if token in found.group(1).split("/")]
        word = next((w for w in after if w.startswith("-") and w != "--" and w.split("=")[0]
                     not in known), None)
    elif message.startswith(("the following arguments are required", "unrecognized arguments")):
        words = argv[:argv.index("--")] if "--" in argv else argv
        word = next((w for w in words if _DASHED_FILE.match(w)), None)
    else:
        word = None
    return "" if word is None else (f"; {word} was taken for an option: give a file or folder "
                                    f"whose name begins with '-' as ./{word}")


#: A word argparse takes for an option that names a file cryostream reads (``-a.mrc``; a
#: minus sign and a digit or point begins a value: :data:`_NEGATIVE`).
_DASHED_FILE = re.compile(r"^-(?![\d.])[^=]*\.(?:mrcs?|star|cs)$", re.IGNORECASE)


def _given_twice(argv: list[str], parser: argparse.ArgumentParser) -> str:
    """``"-o/--output given twice (a, b): give it once"`` for the first option of one value
    that ``argv`` gives more than once, else ``""``."""
    tokens = argv[:argv.index("--")] if "--" in argv else argv
    for action in parser._actions:
        if type(action) is not argparse._StoreAction or action.nargs is not None:
            continue
        values = []
        for i, token in enumerate(tokens):
            for option in action.option_strings:
                if token == option and i + 1 < len(tokens):
                    values.append(tokens[i + 1])
                elif option.startswith("--") and token.startswith(option + "="):
                    values.append(token.split("=", 1)[1])
        if len(values) > 1:
            return f"{'/'.join(action.option_strings)} given twice ({', '.join(values)}): give it once"
    return ""


#: What other cryo-EM programs call an option, and cryostream's name for it.
SYNONYMS = {"--angpix": "--pixel-size", "--apix": "--pixel-size", "--pixelsize": "--pixel-size",
            "--output": "-o"}


def _closest(extras: list[str], parser: argparse.ArgumentParser) -> str:
    """``"; did you mean --x?"`` for the first unknown option that resembles one of
    ``parser``'s, else ``""``."""
    import difflib

    known = [o for action in parser._actions for o in action.option_strings]
    for extra in extras:
        name = extra.split("=")[0]
        if not name.startswith("-") or _DASHED_FILE.match(extra):  # a file: _dash_hint
            continue
        guess = SYNONYMS.get(name) if SYNONYMS.get(name) in known else next(
            iter(difflib.get_close_matches(name, known, n=1, cutoff=0.75)), None)
        if guess:
            return f"; did you mean {guess}?"
    return ""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``cryostream`` command (imports no library module)."""
    parser = OneLineErrors(
        prog="cryostream",
        description="Out-of-core cryo-EM micrograph denoising.",
    )
    parser.add_argument("--version", action="version", version=f"cryostream {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parser.commands = {}
    for module in SUBCOMMANDS:
        command = module.add_parser(sub)
        parser.commands[command.prog.split()[-1]] = command
        command.add_argument("-v", "--verbose", action="store_true",
                             help="more notes on stderr (each step's details)")
        try:
            command.add_argument("--quiet", action="store_true", help=QUIET_HELP)
        except argparse.ArgumentError:  # the command has its own --quiet (for its bars)
            pass
        # each option's name in Python, for errors that name it so (for_the_command_line)
        command.set_defaults(option_names=_option_names(command))
    return parser


def _option_names(command: argparse.ArgumentParser) -> dict[str, str]:
    """Each option of ``command`` by the names Python gives it: its ``dest``, and for a field
    of a nested config (``noise.sigma``) also the field's own name (``sigma=``, as the config
    says it) and the flat keyword (``noise_sigma``), where no other option has that name."""
    names = {a.dest: a.option_strings[-1] for a in command._actions
             if a.option_strings and a.dest != "help"}
    for dest, option in list(names.items()):
        if "." in dest:
            head, field = dest.rsplit(".", 1)
            names.setdefault(field, option)
            names.setdefault(f"{head.replace('.', '_')}_{field}", option)
    return names


class _Stderr(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` (``sys.stdout`` with ``to_stdout``) is when
    a record comes."""

    def __init__(self, to_stdout: bool = False):
        super().__init__()
        self.to_stdout = to_stdout

    @property
    def stream(self):
        return sys.stdout if self.to_stdout else sys.stderr

    @stream.setter
    def stream(self, value):
        pass


class _Notes(logging.Formatter):
    """``cryostream: NOTE``, the note without the Python forms of the options it names."""

    def format(self, record: logging.LogRecord) -> str:
        from cryostream.cli.common import for_the_command_line

        return for_the_command_line(super().format(record))


def _log_to_stderr(level: int) -> None:
    """The library's notes (``logging`` under ``cryostream``) as lines on stderr, as the
    command line says them (:func:`~cryostream.cli.common.for_the_command_line`)."""
    logger = logging.getLogger("cryostream")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(_Notes("cryostream: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False  # once, here, whatever the root logger does
    logger.setLevel(level)


@contextlib.contextmanager
def notes_on_stdout():
    """While the block runs, the library's notes go to stdout and only its warnings and errors
    to stderr (``cryostream-relion``: RELION shows a job's ``run.err`` as its errors, its
    ``run.out`` as its progress)."""
    notes, problems = _Stderr(to_stdout=True), _Stderr()
    problems.setLevel(logging.WARNING)
    notes.addFilter(lambda record: record.levelno < logging.WARNING)
    log = logging.getLogger("cryostream")
    before = [h for h in log.handlers if isinstance(h, _Stderr)], log.propagate
    for handler in before[0]:  # an earlier command's in this process: these say it instead
        log.removeHandler(handler)
    for handler in (notes, problems):
        handler.setFormatter(_Notes("cryostream: %(message)s"))
        log.addHandler(handler)
    log.propagate = False
    try:
        yield
    finally:
        for handler in (notes, problems):
            log.removeHandler(handler)
        for handler in before[0]:
            log.addHandler(handler)
        log.propagate = before[1]


def _one_line_warnings() -> None:
    """cryostream's own warnings (a skipped micrograph, a CTF fallback) as one line each."""
    import warnings

    plain = warnings.formatwarning

    def formatwarning(message, category, filename, lineno, line=None):
        if category.__module__.startswith("cryostream"):
            from cryostream.cli.common import for_the_command_line

            return f"cryostream: warning: {for_the_command_line(message)}\n"
        return plain(message, category, filename, lineno, line)

    warnings.formatwarning = formatwarning


#: The arguments that name files or folders, where a ``~`` the shell left (quoted, or from a
#: script or a RELION External job's parameters) is the home folder, not a folder named ``~``.
_PATHS = ("output", "inputs", "odd", "out", "outdir", "store", "run", "runs", "model", "work",
          "truth", "targets", "report", "json", "residual", "denoised", "start")


def _expand_home(args: argparse.Namespace) -> None:
    """A leading ``~`` of the path arguments expanded to the home folder, as the shell would
    have: ``-o '~/denoised'`` made a folder named ``~`` in the working directory."""
    import os

    for name in _PATHS:
        value = getattr(args, name, None)
        if isinstance(value, str):
            setattr(args, name, os.path.expanduser(value))
        elif isinstance(value, list):
            setattr(args, name, [os.path.expanduser(v) if isinstance(v, str) else v
                                 for v in value])


def main(argv: Sequence[str] | None = None, *, process: bool | None = None) -> int:
    """Entry point of the ``cryostream`` command; returns the exit status.

    Without ``argv`` it is the program, reading ``sys.argv``: a command interrupted there keeps
    its status through the process's exit, a further Ctrl-C ending it at once and in silence
    (:func:`~cryostream.cli.common.run_command`'s ``process``), and its stdout and stderr go
    silent where the pipe they write to closes (:mod:`cryostream.cli.streams`). ``process``:
    whether the command is the process's all the same, for another program's entry point that
    gives ``argv`` (``cryostream-relion``); by default, whether ``argv`` is None."""
    process = argv is None if process is None else process
    if process:  # a pipe that closes (`| head`) silences the output, not the command
        from cryostream.cli.streams import silenced_when_closed

        silenced_when_closed()
    args = build_parser().parse_args(argv)
    _expand_home(args)
    _log_to_stderr(logging.WARNING if args.quiet else logging.DEBUG if args.verbose
                   else logging.INFO)
    _one_line_warnings()
    return run_command(args, process=process)
