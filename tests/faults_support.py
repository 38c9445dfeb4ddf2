"""Helpers of the fault suite (tests/test_faults.py): run the real command, damage real files,
and check that a failure is one line, exit 2, and that nothing good was lost or changed.

Everything here works on files and processes; nothing is mocked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np

import cryostream

__all__ = [
    "REPO",
    "Result",
    "cli",
    "cli_process",
    "start_cli",
    "signalled_cli",
    "wait_until",
    "small_then_large",
    "simulate_stopped",
    "error_lines",
    "assert_user_error",
    "snapshot",
    "changed",
    "copy_store",
    "copy_run",
    "flip_bytes",
    "corrupt_checkpoint",
    "corrupt_chunks",
    "truncate",
    "read_only_folder",
    "finished_steps",
    "leftovers",
    "store_contents",
    "assert_same_contents",
    "run_parameters",
]

#: The checkout whose ``cryostream`` this process imported; child processes use the same one.
REPO = Path(cryostream.__file__).resolve().parents[1]


@dataclasses.dataclass
class Result:
    """How one command ended: its exit status (``"raised"`` when an exception escaped
    ``main``, ``"timeout"`` when a child process had to be killed), stdout, stderr, seconds."""

    rc: int | str
    out: str
    err: str
    seconds: float

    def describe(self) -> str:
        """The status and the end of stderr, for assertion messages."""
        tail = "\n".join(self.err.strip().splitlines()[-6:])
        return f"exit status {self.rc!r} after {self.seconds:.1f} s; stderr ends:\n{tail}"


def cli(capsys, *args) -> Result:
    """Run ``cryostream.cli.main(args)`` in this process, as the command would.

    An exception escaping ``main`` becomes ``rc="raised"`` with its traceback as stderr (the
    user would have seen that traceback); argparse's ``SystemExit`` gives its code.
    """
    from cryostream.cli import main

    capsys.readouterr()
    start = time.perf_counter()
    extra = ""
    try:
        rc: int | str = main([str(a) for a in args])
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    except Exception:
        rc = "raised"
        extra = traceback.format_exc()
    captured = capsys.readouterr()
    return Result(rc, captured.out, captured.err + extra, time.perf_counter() - start)


def child_environment(**extra: str) -> dict[str, str]:
    """The environment of a child ``python -m cryostream``: this checkout, JAX on the CPU."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.update(extra)
    return env


# A child whose files may not grow past a limit: its writes past it fail with EFBIG (an
# OSError: SIGXFSZ is ignored), as on a full disk. The limit is set in the child itself, not in
# a preexec_fn, which is unsafe in a parent that runs threads (JAX does).
_FILE_SIZE_LIMITED = (
    "import resource, runpy, signal, sys\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
    "limit = int(sys.argv.pop(1))\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))\n"
    "runpy.run_module('cryostream', run_name='__main__', alter_sys=True)\n"
)


# A child in which one function of cryostream is slow, as on a busy disk: it sleeps before or
# after its call (``before``, ``after``), saying ``[slowed] NAME FIRST-ARGUMENT`` on stderr as
# it begins to, for a test to send a signal then; its calls before the ``first`` (counted from
# 1) go at their own pace. The function is looked up where the code calls it from
# (``cryostream.io.mrc.write_micrograph``, which denoise imports as it writes).
_SLOWED = (
    "import importlib, itertools, runpy, sys, time\n"
    "where, seconds, when = sys.argv.pop(1), float(sys.argv.pop(1)), sys.argv.pop(1)\n"
    "first, calls = int(sys.argv.pop(1)), itertools.count(1)\n"
    "module, name = where.rsplit('.', 1)\n"
    "module = importlib.import_module(module)\n"
    "plain = getattr(module, name)\n"
    "def slowed(*args, **kwargs):\n"
    "    if next(calls) < first:\n"
    "        return plain(*args, **kwargs)\n"
    "    result = plain(*args, **kwargs) if when == 'after' else None\n"
    "    sys.stderr.write(f'[slowed] {name} {args[0] if args else \"\"}\\n')\n"
    "    sys.stderr.flush()\n"
    "    time.sleep(seconds)\n"
    "    return result if when == 'after' else plain(*args, **kwargs)\n"
    "setattr(module, name, slowed)\n"
    "runpy.run_module('cryostream', run_name='__main__', alter_sys=True)\n"
)


def start_cli(*args, cwd: Path, file_size_limit: int | None = None,
              slowed: tuple[str, float, str] | tuple[str, float, str, int] | None = None,
              sigint_ignored: bool = False) -> subprocess.Popen:
    """Start ``python -m cryostream ARGS`` as a child process (stdout and stderr as pipes).

    ``file_size_limit`` (bytes): no file the child writes may grow past it (``RLIMIT_FSIZE``),
    so a write past it fails with EFBIG as on a full disk. ``slowed``: ``(function, seconds,
    "before" or "after")``, a function of cryostream (``"cryostream.io.mrc.write_micrograph"``)
    that sleeps that long before or after its call in the child, saying ``[slowed] NAME
    FIRST-ARGUMENT`` on stderr as it begins to (a fault injected: a slow disk); a fourth item,
    ``first``, slows only its calls from that one on (counted from 1; 1 when left out).
    ``sigint_ignored``: the child starts with SIGINT ignored, as a background job of a
    non-interactive shell script does (``cmd &``): a shell ignores it (``trap '' INT``) and
    execs Python, which inherits that.
    """
    if file_size_limit is not None:
        command = [sys.executable, "-c", _FILE_SIZE_LIMITED, str(int(file_size_limit))]
    elif slowed is not None:
        command = [sys.executable, "-c", _SLOWED, *map(str, (*slowed, 1)[:4])]
    else:
        command = [sys.executable, "-m", "cryostream"]
    if sigint_ignored:  # (no preexec_fn: unsafe in a parent that runs threads, as JAX does)
        command = ["bash", "-c", 'trap "" INT; exec "$@"', "bash", *command]
    return subprocess.Popen([*command, *map(str, args)], cwd=cwd, env=child_environment(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def cli_process(*args, cwd: Path, timeout: float = 600,
                file_size_limit: int | None = None) -> Result:
    """Run ``python -m cryostream ARGS`` in a child process (see :func:`start_cli`); kill it
    after ``timeout`` s."""
    start = time.perf_counter()
    proc = start_cli(*args, cwd=cwd, file_size_limit=file_size_limit)
    try:
        out, err = proc.communicate(timeout=timeout)
        rc: int | str = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        rc = "timeout"
        err += f"\n[killed by the test after {timeout:.0f} s]"
    return Result(rc, out, err, time.perf_counter() - start)


def simulate_stopped(sim: Path, count: int = 500, *extra: str) -> list[str]:
    """`cryostream simulate SIM --count COUNT [EXTRA]` run here and stopped by a real Ctrl-C
    (SIGINT to this process) once its third micrograph is written (where one was there already,
    an earlier set's: once it is replaced): status 130. Returns the command."""
    import signal
    import threading

    from cryostream.cli import main

    command = ["simulate", str(sim), "--count", str(count), "--shape", "64", "64", "--quiet",
               *extra]
    done = threading.Event()
    third = sim / "micrographs" / "sim_0002.mrc"

    def stamp(path: Path) -> tuple[int, int] | None:
        try:
            return path.stat().st_ino, path.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    earlier = stamp(third)  # (one written anew: another time, and inode)

    def ctrl_c_at_the_third() -> None:
        while stamp(third) in (None, earlier):
            if done.wait(0.002):
                return
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=ctrl_c_at_the_third)
    thread.start()
    try:
        assert main(command) == 130
    finally:
        done.set()
        thread.join()
    return command


def wait_until(proc: subprocess.Popen, condition: Callable[[], bool], timeout: float = 600,
               interval: float = 0.02) -> bool:
    """Poll ``condition`` until it holds (True) or ``proc`` ends or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return condition()
        time.sleep(interval)
    return False


def signalled_cli(*args, cwd: Path, signals: list[tuple[int, Callable[[str], bool]]],
                  timeout: float = 120,
                  started: Callable[[subprocess.Popen], object] | None = None,
                  slowed: tuple[str, float, str] | tuple[str, float, str, int] | None = None,
                  sigint_ignored: bool = False) -> tuple[int, str]:
    """Run ``python -m cryostream ARGS`` in a child process (:func:`start_cli`, ``slowed`` and
    ``sigint_ignored`` as there) and send it each of ``signals`` (``(signum, ready)``: once
    ``ready`` holds of its stderr so far, and 0.2 s at least after the signal before: more than
    a repeat of that one, ``DUPLICATE_S``). Returns its exit status and its stderr.
    ``started``: called with the child process as soon as it is started (to watch it, e.g. the
    processes it starts)."""
    import threading

    proc = start_cli(*args, cwd=cwd, slowed=slowed, sigint_ignored=sigint_ignored)
    if started is not None:
        started(proc)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: proc.stderr.read(1), "")))
    reader.start()
    try:
        for i, (signum, ready) in enumerate(signals):
            assert wait_until(proc, lambda ready=ready: ready("".join(err)), timeout=timeout), \
                "".join(err)
            if i:
                time.sleep(0.2)
            proc.send_signal(signum)
        proc.wait(timeout=timeout)
    finally:
        proc.kill()
        reader.join(timeout=10)
    return proc.returncode, "".join(err)


_ERROR = re.compile(r"^cryostream( [\w-]+)?: error: ")


def small_then_large(folder: Path, large: int = 2048,
                     small: int = 512) -> tuple[list[Path], Path]:
    """Micrographs that take long to denoise, after one that does not: ``a_small.mrc``
    (``small`` px square), then ``b_large.mrc`` and ``c_large.mrc`` (``large`` px square) in
    ``folder``, and ``micrographs.star`` beside it listing them with their optics and defocus
    (named from ``folder``'s parent, a RELION project). With the general model and
    ``--no-ensemble`` on a CPU of two cores, a first of 512² takes about 10 s (one of 256², the
    least the general model takes, about 5 s), each large one of 2048² a minute or more."""
    import starfile

    tables = []
    for name, shape, seed in (("a_small", small, 5), ("b_large", large, 3),
                              ("c_large", large, 4)):
        sim = cryostream.simulate(folder / f".{name}", 1, shape=(shape, shape), seed=seed)
        Path(sim.micrographs[0]).rename(folder / f"{name}.mrc")
        table = starfile.read(folder / f".{name}" / "micrographs.star", always_dict=True)
        tables.append(table["micrographs"].assign(rlnMicrographName=f"{folder.name}/{name}.mrc"))
        shutil.rmtree(folder / f".{name}")
    import pandas as pd

    star = folder.parent / "micrographs.star"
    starfile.write({"micrographs": pd.concat(tables, ignore_index=True)}, star)
    return [folder / f"{n}.mrc" for n in ("a_small", "b_large", "c_large")], star


def error_lines(stderr: str) -> tuple[list[str], list[str]]:
    """The error lines of ``stderr`` (``cryostream [COMMAND]: error: …``) and its foreign lines:
    those neither an error nor one of the command's own notes and warnings (``cryostream: …``,
    one line each), leaving out the usage block argparse prints before its error."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    if lines and lines[0].startswith("usage:"):
        i = 1
        while i < len(lines) and lines[i].startswith(" "):
            i += 1
        lines = lines[i:]
    errors = [line for line in lines if _ERROR.match(line)]
    foreign = [line for line in lines if not _ERROR.match(line)
               and not line.startswith("cryostream: ")]
    return errors, foreign


def assert_user_error(result: Result, *names: str) -> str:
    """Exit status 2, no traceback, one error line on stderr that names one of ``names``
    (case-insensitive: a file's name, or the argument), and nothing else on stderr but the
    command's own one-line notes and warnings; returns the error line."""
    assert result.rc == 2, result.describe()
    assert "Traceback" not in result.err, result.describe()
    errors, foreign = error_lines(result.err)
    assert len(errors) == 1, f"{len(errors)} error lines on stderr, not one:\n{result.err[-3000:]}"
    assert not foreign, "lines on stderr that are not the command's one-line notes:\n" + "\n".join(
        foreign[-20:])
    line = errors[0]
    if names:
        assert any(n.lower() in line.lower() for n in names), f"{line!r} names none of {names}"
    return line


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file (SHA-256 of its bytes), folder and link under ``roots``, by absolute path."""
    found: dict[str, str] = {}
    for root in roots:
        root = Path(root)
        if not root.exists() and not root.is_symlink():
            continue
        items = [root] if not root.is_dir() or root.is_symlink() else [root, *root.rglob("*")]
        for p in items:
            if p.is_symlink():
                found[str(p)] = "link -> " + os.readlink(p)
            elif p.is_dir():
                found[str(p)] = "folder"
            else:
                found[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    """The paths added, removed or changed between two snapshots."""
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def copy_store(store: Path, folder: Path) -> Path:
    """Copy a store (the master file and its shard folder) into ``folder``; returns the copy."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / store.name
    shutil.copy2(store, target)
    shards = store.with_name(store.name + ".shards")
    shutil.copytree(shards, target.with_name(target.name + ".shards"))
    return target


def copy_run(run: Path, target: Path) -> Path:
    """Copy a run folder (record, metrics, checkpoints) to ``target``."""
    shutil.copytree(run, target)
    return target


def flip_bytes(path: Path, count: int = 64, offset: int | None = None) -> None:
    """Invert ``count`` bytes of ``path`` in place, from ``offset`` (default: the middle)."""
    size = path.stat().st_size
    offset = max(0, size // 2 - count // 2) if offset is None else offset
    with open(path, "r+b") as f:
        f.seek(offset)
        data = bytearray(f.read(count))
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in data))


def finished_steps(run: Path) -> list[int]:
    """The steps of the checkpoint folders that orbax finished (named by their step alone)."""
    folder = run / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def corrupt_checkpoint(run: Path) -> list[Path]:
    """Flip 64 bytes in the largest file of each item of the run's last checkpoint (the
    training state, and the parameters alone where the run has that item); returns them."""
    last = run / "checkpoints" / str(finished_steps(run)[-1])
    damaged = []
    for item in sorted(p for p in last.iterdir() if p.is_dir() and p.name in ("state", "params")):
        largest = max((p for p in item.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
        flip_bytes(largest)
        damaged.append(largest)
    assert damaged, f"no state or params item in {last}"
    return damaged


def corrupt_chunks(shard: Path, count: int = 8) -> None:
    """Flip ``count`` bytes in the middle of every stored chunk of every dataset of a shard."""
    spans = []
    with h5py.File(shard, "r") as f:
        for name in f:
            dset = f[name]
            for i in range(dset.id.get_num_chunks()):
                info = dset.id.get_chunk_info(i)
                spans.append((info.byte_offset, info.size))
    for offset, size in spans:
        flip_bytes(shard, min(count, size), offset + max(0, size // 2 - count // 2))


def truncate(path: Path, fraction: float = 0.5) -> None:
    """Cut ``path`` to ``fraction`` of its size."""
    os.truncate(path, int(path.stat().st_size * fraction))


@contextlib.contextmanager
def read_only_folder(parent: Path) -> Iterator[Path]:
    """A folder nothing can be written into, even by root: mode 0o555, and the immutable
    attribute where permissions do not stop the user. Where neither works, a path below a
    regular file (no folder can be made there) stands in for it."""
    folder = parent / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if os.access(folder, os.W_OK):
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    try:
        if os.access(folder, os.W_OK) and not immutable:
            stand_in = parent / "a-file"
            stand_in.write_text("")
            yield stand_in
        else:
            yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def leftovers(folder: Path) -> list[Path]:
    """Files under ``folder`` whose names mark them unfinished (``*.partial``, ``*tmp*``)."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.rglob("*")
                  if p.name.endswith(".partial") or ".partial" in p.name or "tmp" in p.name)


def store_contents(store: Path) -> dict[str, object]:
    """Every dataset (read through the master file: patches, index, table) and every attribute
    of a store, by name; attributes as ``"name@attr"``."""
    found: dict[str, object] = {}
    with h5py.File(store, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                found[name] = obj[...]
            for key, value in obj.attrs.items():
                found[f"{name}@{key}"] = np.asarray(value)

        visit("/", f)
        f.visititems(visit)
    return found


def assert_same_contents(got: dict[str, object], want: dict[str, object]) -> None:
    """Two :func:`store_contents` equal, NaN included."""
    assert got.keys() == want.keys(), sorted(got.keys() ^ want.keys())
    for key, value in want.items():
        a, b = np.asarray(got[key]), np.asarray(value)
        same = np.array_equal(a, b, equal_nan=a.dtype.kind in "fc" and b.dtype.kind in "fc")
        assert same, f"{key} differs"


def run_parameters(run: Path) -> list[np.ndarray]:
    """The network parameters of a run's last checkpoint, as NumPy arrays."""
    from flax import nnx

    try:
        from cryostream.runs import load_model
    except ImportError:  # before runs.py existed
        from cryostream.training import load_model
    model, _ = load_model(run)
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]
