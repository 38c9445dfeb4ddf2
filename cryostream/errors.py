"""The errors cryostream raises for user mistakes and bad input.

Every error names the file or argument, says what is wrong and how to fix it. Each class
also derives from the builtin exception it refines, so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "CryostreamError",
    "ConfigError",
    "InvalidMicrographError",
    "OutputTakenError",
    "DenoisedInputError",
    "NotMicrographListError",
    "StoreError",
    "TrainingDivergedError",
    "DeviceMemoryError",
    "ClusterError",
    "one_error",
    "without_skipping",
    "unnormalisable_fix",
]


class CryostreamError(Exception):
    """Base class of every error cryostream raises on purpose."""


class ConfigError(CryostreamError, ValueError):
    """An argument or configuration value is out of range or of the wrong kind."""


class InvalidMicrographError(CryostreamError, ValueError):
    """A micrograph file is missing, unreadable, truncated or inconsistent with the rest."""

    def __init__(self, path: object, problem: str, fix: str):
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.path}: {problem}; {fix}")


class OutputTakenError(InvalidMicrographError):
    """A micrograph's output was made meanwhile by another call, with another model or other
    options, and is kept: that micrograph is not written (``--overwrite`` replaces it)."""


class DenoisedInputError(InvalidMicrographError):
    """An input is an output of ``cryostream denoise`` (its MRC labels say so): denoising it
    again would take it for a raw micrograph, so it is refused before any work."""


class NotMicrographListError(InvalidMicrographError):
    """A file given as a micrographs STAR file is another kind of file: not STAR, a particles
    or movies STAR file, or one without a table of micrographs (or without rows). A command
    that takes it through an option can name the option and the file it wants instead."""


class StoreError(CryostreamError, OSError):
    """An output store cannot be created, written or read back intact."""


class TrainingDivergedError(CryostreamError, ArithmeticError):
    """Training reached a non-finite loss, or ended on a network that diverged
    (:class:`cryostream.divergence.DivergenceGuard`); the checkpoints written before are kept."""


class DeviceMemoryError(CryostreamError, MemoryError):
    """The network's calls ran out of the device's memory (another job on the GPU, or more
    micrographs in flight than it holds); finished outputs are kept."""


class ClusterError(CryostreamError, ConnectionError):
    """The Dask cluster a computation ran on went away during it (its scheduler stopped or the
    connection to it was lost); what the command had finished is kept. Its message is a
    script's (``call prepare again``, ``scheduler=``); ``command_line``, where given, the same
    in the command line's words (``run the same command again``, ``--scheduler``), which the
    command prints instead."""

    def __init__(self, message: str, command_line: str | None = None):
        super().__init__(message)
        self.command_line = command_line


def one_error(errors: list[InvalidMicrographError], total: int, fix: str, *,
              single: bool = True, kind: type = InvalidMicrographError) -> InvalidMicrographError:
    """One error for the bad micrographs among ``total``: a single one as it is (unless
    ``single`` is False), several as one line of class ``kind`` that names each with its
    problem (the first five, then how many more) and ``fix``."""
    if single and len(errors) == 1:
        return errors[0]
    shown = "; ".join(f"{e.path}: {e.problem}" for e in errors[:5])
    more = f"; and {len(errors) - 5} more" if len(errors) > 5 else ""
    return kind(f"{len(errors)} of {total} micrographs", f"bad ({shown}{more})", fix)


def without_skipping(error: InvalidMicrographError, why: str) -> InvalidMicrographError:
    """``error`` as a command without ``--permissive`` says it: its fix without the advice to
    skip the micrograph with ``--permissive``, followed by ``why`` in brackets (why the command
    skips none, and what it can do instead); an error without that advice as it is."""
    import re

    if "--permissive" not in error.fix:
        return error
    fix = re.sub(r"[,;]? or (?:pass |skip (?:it|them) with )?--permissive"
                 r"(?: \(Python: permissive=True\))?(?: to (?:skip|leave) (?:it|them)(?: out)?)?",
                 "", error.fix)
    fix = re.sub(r" \(--permissive skips (?:it|them)\)", "", fix).strip(" ;,")
    return InvalidMicrographError(error.path, error.problem, f"{fix} ({why})" if fix else why)


def unnormalisable_fix(fix: str | None = "choose another --percentile") -> str:
    """What to do with a micrograph whose percentile is not positive
    (:func:`~cryostream.preprocess.check_statistics`): the two things every command can do, and
    ``fix`` (None: those two only)."""
    done = "give it as motion correction wrote it"
    return f"{done}, exclude it (--permissive skips it) or {fix}" if fix else \
        f"{done}, or exclude it (--permissive skips it)"
