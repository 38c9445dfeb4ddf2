"""What the subcommands share: flags generated from config fields, library defaults shown
lazily, the one-line error handling and the peak memory.

Every default is stated once. A flag that sets a config field takes its type and default from
the dataclass (:func:`add_config_flags`); a flag that sets a keyword of a library function
shows the function's own default and leaves the keyword out when not given
(:class:`LibraryDefault`, :func:`given`).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import sys
import time
import types
import typing
from collections.abc import Mapping
from typing import Any

from cryostream.cli.kept import INTERRUPTIONS, Interruption
from cryostream.cli.signals import reworded
from cryostream.errors import CryostreamError
from cryostream.interrupts import Terminated

__all__ = [
    "INTERRUPTIONS",
    "QUIET_HELP",
    "FlagSpec",
    "Interruption",
    "LibraryDefault",
    "add_config_flags",
    "add_library_flag",
    "config_from_args",
    "given",
    "peak_rss_mb",
    "run_command",
]

FlagSpec = tuple[str, str] | tuple[str, str, dict[str, Any]]
"""``(flag name, help text)`` or ``(flag name, help text, extra add_argument keywords)``."""


def _field(config: Any, path: str) -> tuple[Any, str]:
    """The (possibly nested) config object owning ``path`` (``"noise.model"``) and the name."""
    *parents, name = path.split(".")
    for parent in parents:
        config = getattr(config, parent)
    if not dataclasses.is_dataclass(config) or name not in {f.name for f in
                                                            dataclasses.fields(config)}:
        raise KeyError(f"{type(config).__name__} has no field {name!r} ({path})")
    return config, name


def _argument_kind(hint: Any, default: Any) -> dict[str, Any]:
    """``add_argument`` keywords for a field of type ``hint``."""
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction if default else "store_true"}
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
        if hint is bool:  # bool | None: --flag / --no-flag, or neither (None)
            return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        return {"type": args[0], "nargs": len(args)}
    return {"type": hint}


def _metavar(flag: str) -> str:
    return flag.lstrip("-").upper().replace("-", "_")


def add_config_flags(parser: argparse.ArgumentParser, config: Any,
                     flags: Mapping[str, FlagSpec]) -> None:
    """Add one flag per config field, with the field's type and default.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Where the flags go (a parser or one of its argument groups).
    config : dataclass type or instance
        The config whose defaults the flags take (a type is instantiated with its defaults).
    flags : mapping
        Field path (``"batch_size"``, or ``"noise.model"`` for a nested config) to
        ``(flag name, help text)`` or ``(flag name, help text, extra add_argument keywords)``.
        Booleans become switches; ``int | None`` an int flag defaulting to ``None``;
        ``tuple[int, int]`` two values. The metavar is the flag's name. A help text without
        ``%(default)s`` gets the default appended unless it is ``None`` or a switch (a tuple as
        its values are typed, ``(7676 7420)``). The
        parsed value is stored under the field path; :func:`config_from_args` reads it back.
    """
    defaults = config() if isinstance(config, type) else config
    for path, (flag, help_text, *extra) in flags.items():
        owner, name = _field(defaults, path)
        default = getattr(owner, name)
        if _declared_default(owner, name) is None:  # derived from other fields when unset
            default = None
        kwargs = _argument_kind(typing.get_type_hints(type(owner))[name], default)
        if "%(default)" not in help_text and default is not None and not isinstance(default, bool):
            # a pair as it is typed (--shape 7676 7420), not as Python writes it
            help_text += (f" ({' '.join(map(str, default))})" if isinstance(default, tuple)
                          else " (%(default)s)")
        kwargs.update(extra[0] if extra else {})
        if "type" in kwargs and "choices" not in kwargs:
            kwargs.setdefault("metavar", _metavar(flag))
        parser.add_argument(flag, dest=path, default=default, help=help_text, **kwargs)


def _declared_default(owner: Any, name: str) -> Any:
    """The default a dataclass field declares (``MISSING`` if none), before ``__post_init__``."""
    field = next(f for f in dataclasses.fields(owner) if f.name == name)
    return field.default


def config_from_args(config: Any, args: argparse.Namespace, flags: Mapping[str, FlagSpec]) -> Any:
    """The config the flags added by :func:`add_config_flags` describe.

    Parameters
    ----------
    config : dataclass type or instance
        The same ``config`` given to :func:`add_config_flags`; fields without a flag keep its
        values.
    args : argparse.Namespace
        The parsed command line.
    flags : mapping
        The same mapping given to :func:`add_config_flags`.

    Raises
    ------
    ConfigError
        When the config rejects a value (the command prints it as one line).
    """
    defaults = config() if isinstance(config, type) else config
    return _rebuild(defaults, {path: getattr(args, path) for path in flags})


def _rebuild(config: Any, values: dict[str, Any]) -> Any:
    own: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path, value in values.items():
        head, _, rest = path.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            own[head] = tuple(value) if isinstance(value, list) else value
    for head, sub in nested.items():
        own[head] = _rebuild(getattr(config, head), sub)
    return dataclasses.replace(config, **own)


class LibraryDefault:
    """The default of a library function's keyword, read from its signature when shown.

    Used as an argparse default: ``--help`` imports the function to show its default, and the
    command leaves the keyword out when the flag was not given (:func:`given`), so the
    function's own default applies. Parsing never imports the function.

    Parameters
    ----------
    function : str
        ``"module:function"``, e.g. ``"cryostream.denoise:denoise"``.
    parameter : str
        The keyword's name.
    """

    def __init__(self, function: str, parameter: str):
        self.function = function
        self.parameter = parameter

    @property
    def value(self) -> Any:
        """The keyword's default (imports the function)."""
        module, name = self.function.split(":")
        function = getattr(importlib.import_module(module), name)
        return inspect.signature(function).parameters[self.parameter].default

    def __str__(self) -> str:
        return str(self.value)

    def __repr__(self) -> str:
        return f"LibraryDefault({self.function!r}, {self.parameter!r})"


def add_library_flag(parser: argparse.ArgumentParser, flag: str,
                     function: str, parameter: str, help_text: str, **kwargs: Any) -> None:
    """Add a flag for keyword ``parameter`` of ``function`` (``"module:function"``), showing the
    function's default in the help unless ``help_text`` says it (``default:``); the value is
    stored under ``parameter``."""
    if "choices" not in kwargs:
        kwargs.setdefault("metavar", _metavar(flag))
    shown = help_text if "default:" in help_text else f"{help_text} (%(default)s)"
    parser.add_argument(flag, dest=parameter, default=LibraryDefault(function, parameter),
                        help=shown, **kwargs)


def given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The keywords among ``names`` that the command line set (library defaults left out)."""
    return {n: getattr(args, n) for n in names
            if not isinstance(getattr(args, n), LibraryDefault)}


def peak_rss_mb() -> float:
    """Peak resident memory of this process or its largest child, MB (10⁶ bytes; the kernel
    counts KiB)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) * 1024 / 1e6


#: Every command's ``--quiet``: stdout keeps its result (the one summary line, a table).
QUIET_HELP = ("no progress notes or bars: stderr has only warnings and errors; stdout keeps "
              "the result (its summary)")


def run_command(args: argparse.Namespace, *, process: bool = False) -> int:
    """Run the parsed subcommand; user mistakes print one line and return 2, never a traceback.

    Returns the exit status: the command's, 2 for a :class:`~cryostream.errors.CryostreamError`,
    130 when interrupted (Ctrl-C) or 143 when terminated (SIGTERM, as a batch system's time
    limit sends it), after a line saying what is kept and how to go on
    (:data:`INTERRUPTIONS`). A second signal ends the process at once with the first's status
    and one line, never a traceback: while the command finishes its work in progress (denoise;
    train and fit, which finish the step and save it) or says how it stopped. ``process``: the
    command is the process's (:func:`cryostream.cli.main` as the program): once interrupted,
    that holds through the process's exit too (:meth:`~cryostream.cli.signals.EndAtOnce.through_the_exit`),
    or it ends at once after its line where the command's work goes on in a thread that no
    signal stops (:attr:`~cryostream.cli.kept.Interruption.ends_process`: ``evaluate``, and
    ``denoise`` on SIGTERM, which gives up the micrographs in progress: ``denoise on SIGTERM``).

    A process started with Ctrl-C ignored (a background job of a shell script) keeps ignoring
    it, as Python does: no handler is made SIGINT's (SIGTERM's is). An error after a SIGTERM
    (the results of a call that had finished every micrograph not gathered, its STAR file not
    written) is said in its one line, and the status is 143 all the same: a batch system sees
    the command terminated.
    """
    import signal
    import threading

    from cryostream.cli.signals import EndAtOnce, StopSoftly, swallowed
    from cryostream.interrupts import ending_at_once
    from cryostream.starting import started

    started()  # (Python's Ctrl-C back from the start's: the command's own ways from here)
    on_cluster = getattr(args, "scheduler", None) or getattr(args, "cluster_workers", None)
    interruption = INTERRUPTIONS.get(f"{args.command} on a cluster" if on_cluster else None,
                                     INTERRUPTIONS.get(args.command))
    if getattr(args, "scheduler", None):  # a scheduler's own, where the command has one
        interruption = INTERRUPTIONS.get(f"{args.command} on a scheduler", interruption)
    # SIGTERM's own way, where the command has one (denoise here: at once)
    on_term = None if on_cluster else INTERRUPTIONS.get(f"{args.command} on SIGTERM")
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGINT) if main else None
    sigint = before is not signal.SIG_IGN  # ignored as the process started: none of ours
    first = interruption.first if interruption is not None and main else None  # (SIGTERM's too)
    soft = first is not None and sigint
    handler = StopSoftly(args.command, first,
                         *([interruption.at_once] if interruption is not None else []),
                         term=on_term.first if on_term is not None else None, sigint=sigint)
    if soft:  # (the others keep Python's Ctrl-C, which training holds back itself, till SIGTERM)
        signal.signal(signal.SIGINT, handler)
    term = signal.signal(signal.SIGTERM, handler) if main else None
    hook = sys.unraisablehook  # a stop's exception swallowed by a callback: raised again
    sys.unraisablehook = swallowed if main else hook
    start, began = time.perf_counter(), time.time()
    stopped = None  # once interrupted: a further signal ends the process at once
    try:
        with ending_at_once(lambda *both: _end_held(args, interruption, both, start, began)):
            return int(args.func(args) or 0)
    except CryostreamError as exc:
        print(f"cryostream {args.command}: error: "
              f"{for_the_command_line(exc, getattr(args, 'option_names', None))}",
              file=sys.stderr)
        return _failed(handler, process and on_term is not None and on_term.ends_process)
    except OSError as exc:  # a full disk, a folder that cannot be written, a file that vanished
        print(f"cryostream {args.command}: error: {os_error(exc)}", file=sys.stderr)
        return _failed(handler, process and on_term is not None and on_term.ends_process)
    except KeyboardInterrupt as exc:
        if on_term is not None and isinstance(exc, Terminated):
            interruption = on_term
        how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        said = f"cryostream {args.command}: {how} after {time.perf_counter() - start:.0f} s"
        if main:  # one while the line is made (the checkpoint kept looked up) says this much
            stopped = EndAtOnce(143 if isinstance(exc, Terminated) else 130, said, sigint)
            stopped.install()
        print(reworded(said + _then(interruption, args, began)), file=sys.stderr)
        if process and interruption is not None and interruption.ends_process:
            from cryostream.cli.signals import end_now

            end_now(143 if isinstance(exc, Terminated) else 130)  # not Python's exit: it waits
        if stopped is not None:
            stopped.line = None
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        sys.unraisablehook = hook
        if stopped is not None and process:
            stopped.through_the_exit()
        elif main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if term is None else term)
            if soft or stopped is not None or signal.getsignal(signal.SIGINT) is handler:
                signal.signal(signal.SIGINT, signal.default_int_handler if before is None
                              else before)


def _failed(handler, ends_process: bool) -> int:
    """The status of a command whose error was just said: 2, or 143 where a SIGTERM had come
    first (``handler``'s, the :class:`~cryostream.cli.signals.StopSoftly` of the command),
    ending the process at once where ``ends_process`` (threads given up on SIGTERM may still
    run: Python's exit would wait for them)."""
    import signal

    if handler.arrivals.first != signal.SIGTERM:
        return 2
    if ends_process:
        from cryostream.cli.signals import end_now

        end_now(143)
    return 143


def _then(interruption: Interruption | None, args: argparse.Namespace, began: float) -> str:
    """What an interrupted command kept and how to go on (``; ...``), or nothing."""
    if interruption is None:
        return ""
    if callable(interruption.then):
        return f"; {interruption.then(args, began)}"
    return f"; {interruption.then.format_map(vars(args))}"


def _end_held(args: argparse.Namespace, interruption: Interruption | None,
              signals: tuple[int, int], start: float, began: float) -> None:
    """A second signal where the command held the first back (train, fit: the step under way,
    its checkpoint): end the process at once, with the first's status and one line naming the
    second (``signals``: the first's and the second's numbers)."""
    from cryostream.cli.signals import at_once, end_now, status_of

    try:
        then = _then(interruption, args, began)
    except Exception:  # (never in the way of stopping)
        then = ""
    from tqdm import tqdm

    below = "\n" if getattr(tqdm, "_instances", None) else ""  # a line of its own, under the bar
    end_now(status_of(signals[0]), f"{below}cryostream {args.command}: {at_once(*signals)} after "
            f"{time.perf_counter() - start:.0f} s{then}")


def os_error(exc: OSError) -> str:
    """An error of the operating system as one line: the path, what went wrong and what to do
    (``/x/out: Read-only file system; give a path on a file system you can write to``)."""
    from cryostream.io.paths import os_fix

    where = f"{exc.filename}: " if exc.filename else ""
    fix = os_fix(exc)
    return f"{where}{exc.strerror or exc}" + (f"; {fix}" if fix else "")


def for_the_command_line(message: object, options: dict[str, str] | None = None) -> str:
    """An error or warning as the command line shows it: without the Python forms of the
    options it names, which mean something only in a script: `` (Python: permissive=True)``
    goes, ``overwrite=True (--overwrite)`` becomes ``--overwrite`` (``ensemble=False
    (--no-ensemble)`` ``--no-ensemble``) and ``patches=0
    (--patches)`` becomes ``--patches 0``. ``options``: the command's options by their
    Python names (``{"count": "--count"}``), so that ``count=0: must be ...`` becomes
    ``--count 0: must be ...`` where the message gives no option (a True or False stays).
    Where another program runs the command (``cryostream-relion``), as that program says it
    (:func:`~cryostream.cli.signals.reworded`). An error with words of its own for the command
    line (``command_line``: a :class:`~cryostream.errors.ClusterError`) is said in those."""
    message = getattr(message, "command_line", None) or message
    return reworded(_without_python(message, options))


def _without_python(message: object, options: dict[str, str] | None) -> str:
    """:func:`for_the_command_line`'s text, before another program's words."""
    import re

    python = r"Python: (?:[^()]|\((?:[^()]|\([^()]*\))*\))*"  # calls two deep: fit(train=X())
    text = re.sub(r" \(" + python + r"\)", "", str(message))
    text = re.sub(r"; " + python + r"(?=\))", "", text)  # (--model unet; Python: ...)
    text = re.sub(r"\b[a-z_]+=True \((--[a-z][a-z-]*)\)", r"\1", text)
    text = re.sub(r"\b[a-z_]+=False \((--no-[a-z][a-z-]*)\)", r"\1", text)
    value = r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s()'"]+)"""  # a repr, whole
    text = re.sub(r"(?<![\w/=.-])[a-z_]+=" + value + r" \((--[a-z][a-z-]*)\)", r"\2 \1", text)
    if not options:
        return text

    used = []

    def named(match, given=None):
        name, given = match.group(1), match.group(2) if given is None else given
        if name not in options or given in ("True", "False"):
            return match.group(0)
        used.append(options[name])
        return f"{options[name]} {given}"

    # a repr whole, or a plain value without its end punctuation, never cut short (possessive)
    plain = r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s()'",;:]++)"""
    number = r"-?(?:[0-9][0-9.e+-]*|inf|nan)"
    pair = rf"\(\s*({number}(?:\s*,\s*{number})+)\s*\)"  # numbers, as an option of two takes them
    text = re.sub(r"(?<![\w/=.-])([a-z_][a-z0-9_]*)=" + pair + r"(?! \(--)", lambda m: named(
        m, " ".join(m.group(2).replace(",", " ").split())), text)
    text = re.sub(r"(?<![\w/=.-])([a-z_][a-z0-9_]*)=" + plain + r"(?! \(--)", named, text)
    for option in used:  # named once is enough: "--x 1.5: must be ... (--x)"
        text = text.replace(f" ({option})", "")
    return text
