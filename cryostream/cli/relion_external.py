"""``cryostream-relion``: ``cryostream denoise`` run as a RELION (4, 5) External job.

RELION's External job runs the program typed in its *External executable* field from the
project folder, as ``EXE --o External/job010/ --in_mics CtfFind/job003/micrographs_ctf.star
--j 4 --pipeline_control External/job010/ --NAME VALUE ...`` (a ``--NAME VALUE`` pair for each
row of the *Params* tab). This program turns that call into ``cryostream denoise
CtfFind/job003/micrographs_ctf.star -o External/job010/ [--workers 4] [--NAME VALUE ...]`` and
runs it through :func:`cryostream.cli.main`, so every check, note and error is denoise's own;
then it leaves in the job's folder what RELION reads: ``RELION_OUTPUT_NODES.star`` listing
``denoised_micrographs.star`` and ``RELION_JOB_EXIT_SUCCESS``, or ``RELION_JOB_EXIT_FAILURE``
(and no nodes file) when denoising did not finish. Its exit status is denoise's.

RELION's *Abort running* leaves ``RELION_JOB_ABORT_NOW`` in the job's folder: while denoise
runs, a thread looks for it every :data:`ABORT_POLL_SECONDS` and, once it is there, stops
denoise as a first Ctrl-C does (a SIGINT to the main thread): the micrographs in progress are
finished whole, none more is started. The job then leaves ``RELION_JOB_EXIT_ABORTED`` (no nodes
file), removes ``RELION_JOB_ABORT_NOW`` and ends with denoise's status (130). One left by an
earlier run is removed at the start. SIGTERM (a queue's time limit, ``scancel``) stops denoise
at once, the micrographs in progress dropped (:mod:`cryostream.denoise.pool`): the process
ends within seconds, leaving ``RELION_JOB_EXIT_FAILURE`` on its way out
(:data:`~cryostream.cli.signals.LAST_WORDS`), before the queue's SIGKILL would leave none.

- ``--j N`` (the *Running* tab's threads): ``--workers N``, micrographs in flight, where N > 1;
  RELION's default 1 leaves denoise's own choice (a Params row ``workers`` wins over it).
- A Params row names a ``denoise`` option with or without its dashes, ``_`` for ``-``
  (``model``, ``batch_size``, ``--no-ensemble``) and gives its value. An on/off option takes
  ``yes``/``true``/``on``/``1`` or an empty value for on, ``no``/``false``/``off``/``0`` for off
  (``ensemble no`` is ``--no-ensemble``); ``odd yes`` is ``--odd`` alone (the STAR file's
  even/odd columns).
- ``--in_movies``, ``--in_parts``, ``--in_coords``, ``--in_3dref`` and ``--in_mask`` are refused:
  denoise reads micrographs (*Input micrographs*).
- What denoise says names Params rows, not its options (``add a Params row `overwrite` `yes```
  for ``pass --overwrite``; :mod:`cryostream.cli.relion_words`).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from cryostream.errors import ConfigError, CryostreamError

__all__ = ["ABORT_NAME", "ABORT_POLL_SECONDS", "EXIT_FILES", "NODES_NAME", "NODE_TYPE", "PROG",
           "RELION_WORDS", "USAGE", "denoise_argv", "main"]

PROG = "cryostream-relion"
#: Where an External job lists its outputs for RELION's pipeline, and the kind of node
#: ``denoised_micrographs.star`` is there (a micrographs STAR file, as MotionCorr's).
NODES_NAME = "RELION_OUTPUT_NODES.star"
NODE_TYPE = "MicrographGroupMetadata.star.relion"
#: The files by which RELION learns how a job ended.
EXIT_FILES = ("RELION_JOB_EXIT_SUCCESS", "RELION_JOB_EXIT_FAILURE", "RELION_JOB_EXIT_ABORTED")
#: The file RELION's *Abort running* makes in the job's folder, and how often it is looked for.
ABORT_NAME = "RELION_JOB_ABORT_NOW"
ABORT_POLL_SECONDS = 1.0
#: How denoise's lines on an interruption are said in a RELION job: it is stopped by *Abort
#: running* (once), and run again as a job.
RELION_WORDS = [("; Ctrl-C again to stop at once", ""),
                ("run the same command again", "run the job again")]
#: RELION's own arguments: each takes one value.
_RELION = ("--o", "--in_mics", "--j", "--pipeline_control")
#: RELION's other inputs, which denoise does not read, by the Input tab's field that gives them.
_NOT_READ = {"--in_movies": "Input movies", "--in_parts": "Input particles",
             "--in_coords": "Input coordinates", "--in_3dref": "Input 3D reference",
             "--in_mask": "Input 3D mask"}
_ON = ("", "yes", "y", "true", "on", "1")
#: What ``cryostream-relion --help`` (``-h``) prints, and, on stderr, a call with no arguments.
USAGE = f"""\
usage: {PROG} --o JOB_FOLDER --in_mics MICROGRAPHS.star [--j N] [--NAME VALUE ...]

cryostream denoise as a RELION (4, 5) External job: give {PROG} as the job's External
executable. RELION runs it from the project folder, e.g.
  {PROG} --o External/job010/ --in_mics CtfFind/job003/micrographs_ctf.star --j 4 \\
      --pipeline_control External/job010/ --model Runs/denoiser1
which runs 'cryostream denoise CtfFind/job003/micrographs_ctf.star -o External/job010/
--workers 4 --model Runs/denoiser1', then leaves RELION_OUTPUT_NODES.star and
RELION_JOB_EXIT_SUCCESS in the job's folder (RELION_JOB_EXIT_FAILURE where it failed).

options (RELION gives them):
  --o FOLDER             the job's folder: denoise's output folder (-o)
  --in_mics STAR         the Input tab's 'Input micrographs' (MotionCorr's or CtfFind's)
  --j N                  the Running tab's threads: micrographs at once (--workers N), N > 1
  --pipeline_control F   where the RELION_JOB_EXIT files go (default: --o)
  --NAME VALUE           a Params tab row: the denoise option NAME ('batch_size' is
                         --batch-size) with its value; yes or no for an on/off option
Words after --j's value (the Running tab's Additional arguments) go to denoise as typed.

See docs/guide/relion.md, and cryostream denoise --help for denoise's options.
"""
_OFF = ("no", "n", "false", "off", "0")


def _pairs(argv: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The call as ``(--NAME, [values])``: each ``--NAME`` with the words after it up to the
    next ``--NAME`` (none for an empty Params value; several for one the shell split)."""
    pairs: list[tuple[str, list[str]]] = []
    for word in argv:
        if word.startswith("--") and len(word) > 2:
            pairs.append((word, []))
        elif pairs:
            pairs[-1][1].append(word)
        else:
            raise ConfigError(f"{word!r} before any --NAME: RELION's External job gives "
                              "--o, --in_mics and the Params tab's --NAME VALUE pairs")
    return pairs


def _job_folders(argv: Sequence[str]) -> tuple[Path | None, Path | None]:
    """The job's folder (``--o``) and where the EXIT files go (``--pipeline_control``, else
    ``--o``), read leniently (None where not given), for a call refused as much as for one run."""
    found = {}
    for i, word in enumerate(argv[:-1]):
        if word in ("--o", "--pipeline_control") and not argv[i + 1].startswith("--"):
            found.setdefault(word, Path(argv[i + 1]))
    output = found.get("--o")
    return output, found.get("--pipeline_control", output)


def denoise_argv(argv: Sequence[str]) -> list[str]:
    """The ``cryostream`` arguments (``["denoise", STAR, "-o", FOLDER, ...]``) that RELION's
    External job call ``argv`` stands for.

    Raises
    ------
    ConfigError
        For a call without ``--o`` or ``--in_mics``, one of RELION's arguments without its
        value or given twice, an input denoise does not read (``--in_parts``…), or a Params row
        that is no option of ``denoise`` or whose value it cannot take.
    """
    relion: dict[str, str] = {}
    params: list[tuple[str, list[str]]] = []
    extra: list[str] = []  # words RELION puts after --j: denoise's own options, as typed
    for name, values in _pairs(argv):
        if name in _NOT_READ:
            raise ConfigError(f"{name} {' '.join(values)}: cryostream denoises micrographs; "
                              f"leave the Input tab's '{_NOT_READ[name]}' empty and give the "
                              "micrographs STAR file in 'Input micrographs'")
        if name not in _RELION:
            params.append((name, values))
            continue
        if name == "--j" and len(values) > 1:  # the Running tab's Additional arguments
            values, extra = values[:1], [*extra, *values[1:]]
        if len(values) != 1 or name in relion:
            raise ConfigError(f"{name} {'given twice' if name in relion else 'needs one value'}"
                              f" ({' '.join([relion.get(name, ''), *values]).strip() or 'none'}):"
                              " RELION gives it once, with its value")
        relion[name] = values[0]
    if "--o" not in relion:
        raise ConfigError("no --o: RELION's External job gives its folder as --o; run "
                          f"{PROG} as the job's External executable, or give --o FOLDER")
    if not relion.get("--in_mics"):
        raise ConfigError("no --in_mics: give the micrographs STAR file (MotionCorr's "
                          "corrected_micrographs.star or CtfFind's micrographs_ctf.star) in "
                          "the Input tab's 'Input micrographs'")
    mics = Path(relion["--in_mics"])
    if not mics.exists() and not Path("default_pipeline.star").is_file():
        raise ConfigError(f"--in_mics {mics}: no such file in {Path.cwd()}, which is no RELION "
                          "project folder (no default_pipeline.star); RELION runs an External "
                          f"job from its project folder: run {PROG} from there")
    options = _denoise_options()
    translated = [word for name, values in params for word in _option(name, values, options)]
    workers = []
    if "--j" in relion:
        threads = relion["--j"]
        if not threads.isdigit() or int(threads) < 1:
            raise ConfigError(f"--j {threads}: the Running tab's number of threads must be a "
                              "whole number, 1 or more")
        if int(threads) > 1 and "--workers" not in translated:
            workers = ["--workers", threads]
    return ["denoise", relion["--in_mics"], "-o", relion["--o"], *workers, *translated, *extra]


def _denoise_options() -> dict:
    """Each option string of ``cryostream denoise`` with its :class:`argparse.Action`."""
    from cryostream.cli import build_parser

    return {o: a for a in build_parser().commands["denoise"]._actions for o in a.option_strings}


def _option(label: str, values: list[str], options: dict) -> list[str]:
    """The ``denoise`` words for the Params row ``label`` (``--model``, ``--batch_size``,
    ``--raw``) with ``values``."""
    import difflib

    name = label.lstrip("-").replace("_", "-")
    given = f"{label} {' '.join(values)}".strip()
    if name in ("o", "output"):
        raise ConfigError(f"Params: {given}: the output folder is the job's own (RELION gives "
                          "it as --o); remove this row")
    option = next((o for o in (f"--{name}", f"-{name}") if o in options
                   and o not in ("-h", "--help")), None)
    if option is None:
        known = [o for o in options if o.startswith("--") and o not in ("--help", "--output")]
        guess = difflib.get_close_matches(f"--{name}", known, n=1, cutoff=0.75)
        raise ConfigError(f"Params: {label} is no option of cryostream denoise"
                          + (f"; did you mean {guess[0][2:]}?" if guess else "")
                          + " (see cryostream denoise --help)")
    action = options[option]
    value = " ".join(values).strip().lower()
    if action.nargs == 0:  # on/off
        if value in _ON:
            return [option]
        if value not in _OFF:
            raise ConfigError(f"Params: {given}: {name} is on or off: give yes or no")
        other = [o for o in action.option_strings if o.startswith("--") and o != option]
        return other[:1] if len(action.option_strings) > 1 else []  # a store_true's off: as left
    if action.nargs == "*":  # --odd: alone (yes), or the odd halves' files
        return [option] if value in _ON else [] if value in _OFF else [option, *values]
    if len(values) != 1:
        raise ConfigError(f"Params: {given}: {name} takes one value, "
                          + (f"not {len(values)} (a path with spaces: quote it)" if values
                             else "and the row's value is empty"))
    return [option, values[0]]


def _clear(output: Path, control: Path) -> None:
    """Remove an earlier run's EXIT files, nodes file and abort request, so that RELION reads
    this run's (and an old *Abort running* does not stop it)."""
    for path in (*(control / name for name in (*EXIT_FILES, ABORT_NAME)), output / NODES_NAME):
        if path.is_file() or path.is_symlink():
            path.unlink()


def _other_job(output: Path | None, control: Path | None) -> str | None:
    """Why ``--o``/``--pipeline_control`` cannot be this job's: a folder of another kind of
    RELION job (``MotionCorr/job002/`` typed by hand), whose EXIT files would be changed; None
    for an External job's folder or one outside any job."""
    from cryostream.denoise.outputs import STAR_NAME
    from cryostream.io.relion_jobs import listed_outputs, relion_job

    for option, folder in (("--o", output), ("--pipeline_control", control)):
        job = relion_job(folder) if folder is not None else None
        if job is not None and not job.external:
            return (f"{option} {folder}: {job.name} is a {job.kind} job's folder, not an "
                    "External job's; nothing was changed in it. Run cryostream-relion as a "
                    "RELION External job (RELION gives the job's own folder as --o), or give "
                    "--o a folder of its own")
        theirs = [] if job is None else [n for n in listed_outputs(job.folder)
                                         if Path(n).name != STAR_NAME]
        if theirs:
            return (f"{option} {folder}: {job.name} is another program's External job (its "
                    f"{NODES_NAME} lists {theirs[0]}); nothing was changed in it. Make a new "
                    "External job for cryostream-relion")
    return None


def _mark(folder: Path, name: str) -> None:
    """Leave the (empty) file ``name`` in ``folder``, where RELION made it for the job."""
    if folder.is_dir():
        (folder / name).write_bytes(b"")


class _AbortWatch:
    """While the block runs, a daemon thread looks for ``RELION_JOB_ABORT_NOW`` in ``folder``
    every :data:`ABORT_POLL_SECONDS`; once it is there, the thread says so and sends SIGINT to
    the main thread, once: denoise stops as at a first Ctrl-C. ``seen``: whether it did. Only
    where the block runs in the main thread (the one that handles signals)."""

    def __init__(self, folder: Path):
        self.path, self.seen = folder / ABORT_NAME, False
        self._over, self._lock = threading.Event(), threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="relion-abort", daemon=True)

    def __enter__(self) -> _AbortWatch:
        if threading.current_thread() is threading.main_thread():
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:  # no signal is sent once the command is over
            self._over.set()

    def _watch(self) -> None:
        while not self._over.wait(ABORT_POLL_SECONDS):
            try:
                there = self.path.exists()
            except OSError:
                continue
            if there:
                with self._lock:
                    if not self._over.is_set():
                        self.seen = True
                        print(f"{PROG}: {self.path} found (RELION's Abort running): stopping "
                              "denoise after the micrographs in progress", file=sys.stderr,
                              flush=True)
                        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
                return


def _write_nodes(output: Path, star: Path) -> None:
    """``RELION_OUTPUT_NODES.star`` listing ``star`` for RELION's pipeline, written whole: named
    from the project folder (``External/job010/denoised_micrographs.star``), as RELION reads it,
    wherever this was run from; as given where the job's folder is in no project."""
    from cryostream.io.relion_jobs import relion_job
    from cryostream.io.star_write import star_version

    version = star_version(star) or 30001
    job = relion_job(output)
    name = star
    if job is not None and not Path(job.name).is_absolute():  # in a project: from its folder
        project = job.folder.parents[len(Path(job.name).parts) - 1]
        name = Path(os.path.relpath(star.absolute(), project))
    text = (f"# version {version}\n\ndata_output_nodes\n\nloop_\n_rlnPipeLineNodeName #1\n"
            f"_rlnPipeLineNodeTypeLabel #2\n{name.as_posix()} {NODE_TYPE}\n\n")
    temporary = output / f".{NODES_NAME}.partial"
    temporary.write_text(text)
    os.replace(temporary, output / NODES_NAME)


def _aborted(control: Path, finished: bool) -> None:
    """Remove RELION's abort request, once acted on, and say how the job ended."""
    with contextlib.suppress(FileNotFoundError):
        (control / ABORT_NAME).unlink()
    print(f"{PROG}: " + ("every micrograph was denoised before the abort took hold: the job "
                         "succeeded" if finished else
                         f"aborted ({control / EXIT_FILES[2]}); the finished micrographs are "
                         "kept: run the job again to denoise the rest"), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cryostream-relion``; returns the exit status (denoise's; 2 for a call
    refused before denoising), which the EXIT file it leaves agrees with."""
    from cryostream import cli
    from cryostream.cli import notes_on_stdout
    from cryostream.cli.relion_words import InJobTerms
    from cryostream.cli.signals import LAST_WORDS, REWORDED
    from cryostream.starting import started

    started()  # (its job folder's files are marked from here: the start's line would not)
    given = list(sys.argv[1:] if argv is None else argv)
    if not given or given[0] in ("-h", "--help"):  # before any folder is looked at
        print(USAGE, end="", file=sys.stdout if given else sys.stderr)
        return 0 if given else 2
    output, control = _job_folders(given)
    if (other := _other_job(output, control)) is not None:
        print(f"{PROG}: error: {other}", file=sys.stderr)  # its EXIT files are its own
        return 2
    if output is not None:
        _clear(output, control)
    try:
        words = denoise_argv(given)
    except CryostreamError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        if output is not None:
            _mark(control, EXIT_FILES[1])
        return 2
    print(f"{PROG}: running cryostream {shlex.join(words)}", flush=True)
    if argv is None and threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL):
        # RELION starts a local job in the background of a shell, with SIGINT ignored: the
        # abort's signal (and Ctrl-C) must reach the command whatever path it takes
        signal.signal(signal.SIGINT, signal.default_int_handler)
    status, watch = None, _AbortWatch(control)

    def ended_at_once(_status: int) -> None:  # a second signal: no finally runs after it
        _unmark(output, control)
        _mark(control, EXIT_FILES[2 if watch.seen else 1])

    LAST_WORDS.append(ended_at_once)
    said = [*RELION_WORDS, InJobTerms(_denoise_options())]  # Params rows, not options
    REWORDED.extend(said)
    try:
        with notes_on_stdout(), watch:  # the watch ends first: no signal after it
            status = cli.main(words, process=argv is None)
    except SystemExit as exc:  # denoise's parser refused a value (--tile abc): said in one line
        status = exc.code if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:  # the abort's signal, come as denoise had just ended
        status = 130 if status is None else status
    finally:
        try:
            status = _leave(output, control, status, watch.seen)
        finally:
            LAST_WORDS.remove(ended_at_once)
            for entry in said:
                REWORDED.remove(entry)
    return status


def _unmark(output: Path, control: Path) -> None:
    """Remove a SUCCESS and a nodes file this run may have left (the job did not finish)."""
    for path in (control / EXIT_FILES[0], output / NODES_NAME):
        with contextlib.suppress(OSError):
            path.unlink()


def _leave(output: Path, control: Path, status: int | None, aborted: bool) -> int:
    """Leave the job's folder as RELION reads it after denoise ended with ``status``: the nodes
    file and SUCCESS where it finished and listed its outputs, else FAILURE (ABORTED after
    *Abort running*); the exit status that agrees with it. Where the nodes or EXIT file cannot
    be written (a full disk), FAILURE where it can be, and 2."""
    from cryostream.denoise.outputs import STAR_NAME

    star = Path(os.path.normpath(output / STAR_NAME))
    done = status == 0 and star.is_file()
    try:
        if done:
            _write_nodes(output, star)
            _mark(control, EXIT_FILES[0])
            print(f"{PROG}: {star.as_posix()} listed in {output / NODES_NAME} for the next job")
        else:
            _mark(control, EXIT_FILES[2 if aborted else 1])
        if aborted:
            _aborted(control, done)
    except OSError as exc:
        print(f"{PROG}: error: the job's folder {control}: {exc}", file=sys.stderr)
        _unmark(output, control)
        with contextlib.suppress(OSError):
            _mark(control, EXIT_FILES[1])
        return 2
    if status == 0 and not star.is_file():
        print(f"{PROG}: error: denoise wrote no {star}", file=sys.stderr)
        return 2
    return 2 if status is None else status
