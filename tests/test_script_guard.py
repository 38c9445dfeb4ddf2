"""A script that asks for worker processes: each runs the script again as it starts (Dask
starts them by spawn), so its calls must be under ``if __name__ == "__main__":``. Real scripts,
run as processes of their own."""

from __future__ import annotations

import subprocess
import sys

import pytest

import cryostream
from cryostream.script_guard import GUARD_FIX
from tests.faults_support import child_environment

#: The quick start's first steps as a script: each step that ends is counted in steps.txt.
_STEPS = """
import cryostream

def count(step):
    with open("steps.txt", "a") as f:
        f.write(step + "\\n")

def simulate_here(folder):  # run on a worker by the guarded script: no top level of its own
    return str(cryostream.simulate(folder, 1, shape=(256, 256), seed=1).micrographs[0])

def main():
    sim = cryostream.simulate("sim", 2, shape=(256, 256), seed=0, overwrite=True)
    count("simulated")
    result = cryostream.prepare(sim.micrographs, "d.h5", cryostream.PrepareConfig(patch_size=64),
                                workers=2, progress=False)
    count(f"prepared {result.train_patches + result.test_patches}")
"""

_UNGUARDED = '''"""No guard: naming if __name__ == "__main__": in a docstring is none."""''' + _STEPS + """
count("body")
main()  # if __name__ == "__main__": in a comment is none either
"""

_GUARDED = _STEPS + """
count("body")
if __name__ == "__main__":
    main()
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster, \\
            Client(cluster) as client:
        count("on a worker " + client.submit(simulate_here, "worker_sim").result())
"""


def _run(tmp_path, text: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    script = tmp_path / "steps_script.py"
    script.write_text(text)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=child_environment(),
                          capture_output=True, text=True, timeout=300)
    steps = (tmp_path / "steps.txt").read_text().splitlines()
    return done, steps


def _by_process(steps: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """The steps of this process (``MainProcess``), and those of each process of the pool."""
    here = [s.split(": ", 1)[1] for s in steps if s.startswith("MainProcess: ")]
    there: dict[str, list[str]] = {}
    for name, step in (s.split(": ", 1) for s in steps if not s.startswith("MainProcess: ")):
        there.setdefault(name, []).append(step)
    return here, there


def test_a_script_without_the_guard_says_so_in_one_line_and_its_steps_run_once(tmp_path):
    """The quick start's lines at a script's top level with ``workers=2``: each worker process
    ran the script again, ``simulate(overwrite=True)`` three times at once into one folder
    (racing on its files), and the script ended on a 100-line "Nanny failed to start"
    traceback. Now each worker's run of the script is refused at its first call, before it
    writes anything, and the script's traceback ends in one line naming it and the fix, the
    workers' failure kept as its cause; no store is left behind."""
    done, steps = _run(tmp_path, _UNGUARDED)
    script = tmp_path / "steps_script.py"
    assert done.returncode == 1
    assert steps.count("body") == 3  # this process and two workers ran the script
    assert steps.count("simulated") == 1, steps  # but simulated once, here
    last = done.stderr.strip().splitlines()[-1]
    assert last == (f"cryostream.errors.CryostreamError: {script}: the Dask worker processes "
                    f"failed to start; {GUARD_FIX}")
    assert GUARD_FIX == ('the script\'s calls must go under if __name__ == "__main__": because '
                         'each worker process runs the script again as it starts')
    assert done.stderr.count(f"{script}: cryostream.simulate() was called again, at the script's "
                             f"top level, in a worker process starting; {GUARD_FIX}") == 2
    assert "Nanny failed to start" in done.stderr  # the cause, for debugging
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim", "steps.txt", "steps_script.py"]


def test_a_guarded_script_runs_on_workers_and_its_functions_run_there(tmp_path):
    """The same steps under the guard run with ``workers=2``, each once; a function of the
    script a worker runs (the script being ``__mp_main__`` there too) may call cryostream."""
    done, steps = _run(tmp_path, _GUARDED)
    assert done.returncode == 0, done.stderr
    assert steps.count("body") >= 3  # each worker ran the script up to the guard
    simulated, prepared, on_a_worker = [s for s in steps if s != "body"]
    assert simulated == "simulated" and int(prepared.removeprefix("prepared ")) > 0
    assert on_a_worker.startswith("on a worker ") and on_a_worker.endswith("sim_0000.mrc")
    assert (tmp_path / "d.h5").is_file() and (tmp_path / "worker_sim/simulate.json").is_file()


def test_a_package_run_with_python_m_is_not_taken_for_an_unguarded_script(tmp_path):
    """A worker process does not run a package's ``__main__.py`` again (``python -m pkg``), so a
    cluster that fails to start there is not blamed on a missing guard; a plain script without
    one is."""
    import os
    import subprocess
    import sys

    ask = "from cryostream.script_guard import unguarded_script\nprint(unguarded_script())\n"
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg/__init__.py").write_text("")
    (tmp_path / "pkg/__main__.py").write_text(ask)
    (tmp_path / "plain.py").write_text(ask)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    as_package = subprocess.run([sys.executable, "-m", "pkg"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=60)
    plain = subprocess.run([sys.executable, "plain.py"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
    assert as_package.stdout.strip() == "None", as_package.stderr
    assert plain.stdout.strip().endswith("plain.py"), plain.stderr


#: The quick start's first steps at a script's top level, and a process pool of the script's own
#: under the guard, whose processes run the script again as they start (spawn) and
#: whose function reads the store the top level made. Each step is counted with its process.
_OWN_POOL = """
import concurrent.futures
import multiprocessing

import h5py

import cryostream

def count(step):
    with open("steps.txt", "a") as f:
        f.write(f"{multiprocessing.current_process().name}: {step}\\n")

sim = cryostream.simulate("sim", 2, shape=(256, 256), seed=0, overwrite=OVERWRITE)
count(f"simulated, kept {sim.kept}")
STORE = cryostream.prepare(sim.micrographs, "d.h5", cryostream.PrepareConfig(patch_size=64),
                           progress=False)
count(f"prepared, kept {STORE.kept}")

def patches(split):
    with h5py.File(STORE.output) as f:
        return f"{split} {len(f[split + '/index'])}"

if __name__ == "__main__":
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=spawn) as pool:
        count("ProcessPoolExecutor " + " ".join(pool.map(patches, ["train", "test"])))
"""


def test_a_scripts_own_process_pool_finds_the_top_levels_set_and_store_again(tmp_path):
    """A script that simulates and prepares at its top level and maps a function over a
    process pool of its own under the guard: each process of the pool runs the top level again
    as it starts, and its ``simulate`` and ``prepare`` find the finished set and store again
    (kept, read only, no lock taken) where they had refused, which broke the pool
    (``BrokenProcessPool``, the reason only in the processes' stderr). Two processes start at
    once, neither refused by the other's lock (``multiprocessing.Pool`` runs the script again
    as ``ProcessPoolExecutor`` does)."""
    done, steps = _run(tmp_path, _OWN_POOL.replace("OVERWRITE", "False"))
    assert done.returncode == 0, done.stderr
    here = [s.split(": ", 1)[1] for s in steps if s.startswith("MainProcess: ")]
    assert here == ["simulated, kept False", "prepared, kept False",
                    "ProcessPoolExecutor train 49 test 49"]
    there: dict[str, list[str]] = {}  # each process of the pools: its steps
    for name, step in (s.split(": ", 1) for s in steps if not s.startswith("MainProcess: ")):
        there.setdefault(name, []).append(step)
    assert len(there) == 2, steps  # two at once: one for each task mapped
    assert all(s == ["simulated, kept True", "prepared, kept True"] for s in there.values()), steps
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "d.h5", "d.h5.shards", "sim", "steps.txt", "steps_script.py"]  # no lock file left


def test_a_call_that_would_write_in_a_process_pools_run_of_the_script_is_refused(tmp_path):
    """``simulate(overwrite=True)`` at the top level: each process of the script's own pool
    would simulate the set again as it starts, over the one the script is using; it is refused
    there, before it writes, in one line naming the script and the fix, and the pool breaks."""
    done, steps = _run(tmp_path, _OWN_POOL.replace("OVERWRITE", "True"))
    script = tmp_path / "steps_script.py"
    assert steps == ["MainProcess: simulated, kept False", "MainProcess: prepared, kept False"]
    _refused_in_the_pool(done, script, "simulate")



#: A script whose top level simulates a set of ``SIDE`` × ``SIDE`` px only where a process of
#: its pool runs it (``__name__`` is ``__mp_main__`` there).
_LARGE_IN_THE_POOL = """
import concurrent.futures
import multiprocessing

import cryostream

with open("steps.txt", "a") as f:
    f.write(multiprocessing.current_process().name + "\\n")
if __name__ != "__main__":
    cryostream.simulate("large", 1, shape=(SIDE, SIDE))

if __name__ == "__main__":
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
        print(list(pool.map(abs, [-1])))
"""


def test_simulate_too_large_in_a_process_pools_run_is_refused_by_the_guard_first(tmp_path):
    """A ``simulate`` that would write, in a process pool's run of the script, of a shape
    larger than the memory: the memory was checked first, so the process said the shape does
    not fit instead of the guard's line, which names the script and the fix. Now the guard
    speaks first."""
    from cryostream.config.simulate import MAX_SIDE

    done, steps = _run(tmp_path, _LARGE_IN_THE_POOL.replace("SIDE", str(MAX_SIDE)))
    script = tmp_path / "steps_script.py"
    assert done.returncode == 1 and steps[0] == "MainProcess" and len(steps) >= 2, done.stderr
    assert f"{script}: cryostream.simulate() was called again, at the script's top level, in " \
           "a worker process starting, where it would write" in done.stderr
    assert "takes about" not in done.stderr and not (tmp_path / "large").exists()



#: A script that fits at its top level (on ``MICROGRAPHS`` with ``TRAIN``, ``PREPARE`` and
#: ``BUDGET``) and maps a function over a process pool of its own under the guard that reads
#: the run the top level returned. Each step is counted with its process; ``untouched`` says
#: whether the run folder's files (names and times) are as they were before the pool.
_FITTED_POOL = """
import concurrent.futures
import multiprocessing
from pathlib import Path

import cryostream
from cryostream import NoiseConfig, PrepareConfig, TrainConfig

def count(step):
    with open("steps.txt", "a") as f:
        f.write(f"{multiprocessing.current_process().name}: {step}\\n")

def files():
    return sorted((str(p), p.stat().st_mtime_ns) for p in Path("run").rglob("*"))

FITTED = cryostream.fit(MICROGRAPHS, "run", train=TRAIN, prepare=PREPARE, budget=BUDGET)
count(f"fitted, step {FITTED.steps} of {FITTED.target_steps}")

def checkpoints(_):
    return " ".join(sorted(p.name for p in (FITTED.run / "checkpoints").iterdir()))

if __name__ == "__main__":
    before = files()
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=spawn) as pool:
        count("ProcessPoolExecutor " + " ".join(pool.map(checkpoints, [0, 1])))
    count(f"untouched {files() == before}")
"""

#: The store of the shared run (:func:`tests.conftest.tiny_run`), for a fit of its micrographs.
_TINY_STORE = "PrepareConfig(patch_size=32, stride=32, test_fraction=0.34)"


def _fitting(tiny_run, budget) -> str:
    """:data:`_FITTED_POOL` fitting the shared run's micrographs as it was trained."""
    from tests.conftest import TINY_TRAIN

    mics = [str(m) for m in tiny_run.sim.micrographs]
    return _FITTED_POOL.replace("MICROGRAPHS", repr(mics)).replace(
        "TRAIN", repr(TINY_TRAIN)).replace("PREPARE", _TINY_STORE).replace("BUDGET", budget)


def _check_found_again(done, steps, tmp_path) -> None:
    """The script of :func:`_fitting` ended well, its pool's processes finding the fit of 8
    steps again and writing nothing."""
    assert done.returncode == 0, done.stderr
    here, there = _by_process(steps)
    assert here == ["fitted, step 8 of 8", "ProcessPoolExecutor 4 8 4 8", "untouched True"]
    assert len(there) == 2 and all(s == ["fitted, step 8 of 8"] for s in there.values()), steps
    assert not [p for p in (tmp_path / "run").rglob("*") if "lock" in p.name]


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_a_scripts_own_process_pool_finds_the_top_levels_finished_fit_again(tiny_run, tmp_path):
    """A script that fits at its top level, the fit finished before (its run has all its
    steps: the shared run's checkpoints, copied into a fit of the same micrographs and
    training), and maps a function over a process pool of its own: each process ran the top
    level again and its ``fit`` was refused, though a re-run trains nothing, so the pool broke.
    Now such a fit returns as a re-run does, writing nothing and taking no lock (the run
    folder's files and their times as they were; no lock file left)."""
    _finished_fit(tiny_run, tmp_path)
    done, steps = _run(tmp_path, _fitting(tiny_run, "None"))
    _check_found_again(done, steps, tmp_path)


def _finished_fit(tiny_run, tmp_path) -> None:
    """In ``tmp_path / "run"``, a fit of the shared run's micrographs as :func:`_fitting`
    makes it, finished: its store made, the shared run's checkpoints of all its steps copied
    in (no training compiled)."""
    import shutil

    from tests.conftest import TINY_TRAIN

    run = tmp_path / "run"
    cryostream.fit(tiny_run.sim.micrographs, run, train=TINY_TRAIN, budget="0.000001m",
                   prepare=cryostream.PrepareConfig(patch_size=32, stride=32, test_fraction=0.34))
    shutil.copy(tiny_run.run / "config.json", run / "config.json")
    shutil.copytree(tiny_run.run / "checkpoints", run / "checkpoints")


@pytest.mark.slow  # (a script and two pool processes that import jax: some 15 s on 2 cores)
def test_a_finished_fit_made_read_only_is_found_again_by_the_script_and_its_pool(
        tiny_run, tmp_path):
    """The same script, the finished fit's files made read-only (``chmod a-w``: its record,
    checkpoints and store) before it runs: the script's own ``fit`` found the run again but
    wrote its ``fit.json`` anew, a writable copy in place of the read-only one. Now the fit
    is found again as without ``chmod``, by the script and by each process of its pool (no
    read-only refusal, nor the guard's: neither would write), and every file of the run is
    left as it was, its mode too."""
    import os

    _finished_fit(tiny_run, tmp_path)
    made = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    for path in made:
        path.chmod(path.stat().st_mode & ~0o222)

    def files():
        return {p: (p.stat().st_mtime_ns, p.stat().st_mode) for p in made}

    before = files()
    done, steps = _run(tmp_path, _fitting(tiny_run, "None"))
    _check_found_again(done, steps, tmp_path)
    assert "read-only" not in done.stderr and GUARD_FIX not in done.stderr
    assert files() == before and not any(os.stat(p).st_mode & 0o222 for p in made)


@pytest.mark.slow  # (its training step compiled: some 40 s on a loaded 2-core machine)
def test_a_fit_the_script_trained_is_found_again_by_its_process_pool(tiny_run, tmp_path):
    """The same, the fit trained by the script's own run (its 8 steps) before the pool."""
    done, steps = _run(tmp_path, _fitting(tiny_run, "None"))
    _check_found_again(done, steps, tmp_path)


def _refused_in_the_pool(done, script, call: str) -> None:
    """The script ended (status 1) with its pool broken by the refusal of ``call`` in the
    pool's run of its top level, in one line naming the script and the fix."""
    assert done.returncode == 1
    assert f"{script}: cryostream.{call}() was called again, at the script's top level, in a " \
           "worker process starting, where it would write (only a finished set, store, fit or " \
           "denoise of the same arguments, without overwrite=True, is found again there); " \
           f"{GUARD_FIX}" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        "concurrent.futures.process.BrokenProcessPool")


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_a_fit_with_steps_left_in_a_process_pools_run_is_refused(tiny_run, tmp_path):
    """A fit whose time budget ran out before it trained (its store made, no step): each
    process's ``fit`` would train, over the run the script is using; it is refused there
    before it writes, in one line naming the script and the fix, and the pool breaks; the
    run folder is left as the script left it."""
    done, steps = _run(tmp_path, _fitting(tiny_run, "'0.000001m'"))
    script = tmp_path / "steps_script.py"
    assert steps == ["MainProcess: fitted, step 0 of 8"]
    _refused_in_the_pool(done, script, "fit")
    assert not (tmp_path / "run" / "checkpoints").exists()


#: A script that denoises at its top level micrographs with a run (``MICROGRAPHS``, ``RUN``),
#: and maps a function over a process pool of its own under the guard (spawn: each process runs
#: the top level again as it starts) that reads the outputs the top level returned.
#: ``BEFORE_POOL``: lines run under the guard before the pool. Each step is counted with its
#: process; ``untouched`` says whether the output folder's files (names and times) are as they
#: were before the pool.
_DENOISED_POOL = """
import concurrent.futures
import multiprocessing
from pathlib import Path

import mrcfile

import cryostream

def count(step):
    with open("steps.txt", "a") as f:
        f.write(f"{multiprocessing.current_process().name}: {step}\\n")

def files():
    return sorted((p.name, p.stat().st_mtime_ns) for p in Path("den").iterdir())

DENOISED = cryostream.denoise(RUN, MICROGRAPHS, "den", workers=1,
                              config=cryostream.DenoiseConfig.raw())
count(f"denoised, kept {DENOISED.attrs['kept']}")

def rows(index):
    path = DENOISED.attrs["sources"][index]
    with mrcfile.open(path, permissive=False) as mrc:
        return f"{Path(path).stem} {mrc.data.shape[0]}"

if __name__ == "__main__":
    before = files()
    BEFORE_POOL
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=spawn) as pool:
        count("ProcessPoolExecutor " + " ".join(pool.map(rows, [0, 1])))
    count(f"untouched {files() == before}")
"""


def _denoising(tiny_run, before_pool: str = "pass") -> str:
    """:data:`_DENOISED_POOL` denoising two of the shared run's micrographs with it."""
    mics = [str(m) for m in tiny_run.sim.micrographs[:2]]
    return _DENOISED_POOL.replace("RUN", repr(str(tiny_run.run))).replace(
        "MICROGRAPHS", repr(mics)).replace("BEFORE_POOL", before_pool)


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_a_scripts_own_process_pool_finds_the_top_levels_denoised_micrographs_again(
        tiny_run, tmp_path):
    """A script that denoises at its top level and maps a function over a process pool of its
    own: each process of the pool ran the top level again and its ``denoise`` was refused,
    though every output was there (a re-run skips them all), so the pool broke
    (``BrokenProcessPool``). Now such a denoise returns as a re-run does, writing nothing and
    taking no lock (the folder's files and their times as they were; no lock file left)."""
    done, steps = _run(tmp_path, _denoising(tiny_run))
    assert done.returncode == 0, done.stderr
    here, there = _by_process(steps)
    assert here == ["denoised, kept 0", "ProcessPoolExecutor sim_0000 160 sim_0001 160",
                    "untouched True"]
    assert len(there) == 2 and all(s == ["denoised, kept 2"] for s in there.values()), steps
    assert sorted(p.name for p in (tmp_path / "den").iterdir()) == [
        "denoised_micrographs.star", "sim_0000.json", "sim_0000.mrc", "sim_0001.json",
        "sim_0001.mrc"]


def test_a_denoise_with_an_output_left_to_make_in_a_process_pools_run_is_refused(
        tiny_run, tmp_path):
    """An output removed under the guard before the pool starts: each process's ``denoise``
    would make it again (and write the STAR file), over the folder the script is using; it is
    refused there before it writes, in one line naming the script and the fix, and the pool
    breaks; the folder is left as the script left it."""
    done, steps = _run(tmp_path, _denoising(tiny_run, 'Path("den/sim_0001.mrc").unlink()'))
    script = tmp_path / "steps_script.py"
    assert steps == ["MainProcess: denoised, kept 0"]
    _refused_in_the_pool(done, script, "denoise")
    assert sorted(p.name for p in (tmp_path / "den").iterdir()) == [
        "denoised_micrographs.star", "sim_0000.json", "sim_0000.mrc", "sim_0001.json"]
