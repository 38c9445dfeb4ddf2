"""Where ``denoise``'s threads spend their time, from a sampling profile of the process.

Reads the raw output of ``py-spy record --threads -f raw`` (one line per distinct stack,
``thread;frame;…;frame COUNT``) taken of ``profile_default_gpu.py --in-flight-only`` and sorts
the samples of the threads that run micrographs (``ThreadPoolExecutor-…``) into what they were
doing: waiting for room among the device's calls (``CallBudget.take``), waiting for a call's
result and copying it back (``to_host``), the ensemble's rotations on the host, cutting and
placing windows, reading, writing, and each of the default's steps on the CPU (the CTF fit,
its check, the gain). With ``--idle`` samples (every sample of every thread) the shares are of
the threads' time; with ``--gil`` samples (only those holding Python's global lock) the count
against the run's length says how much of it the lock was held.

Usage: python benchmarks/thread_profile.py PROFILE.txt[.gz] [--rate 25] [--json OUT.json]

Taken as (one H100 machine, 16 cores)::

    py-spy record --idle --threads --nonblocking -r 25 -f raw -o idle.txt -- \\
        python benchmarks/profile_default_gpu.py --out OUT --in-flight 8 --micrographs 16 \\
        --in-flight-only
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
from pathlib import Path

#: What a sample's stack says the thread was doing, first match wins (substrings of frames).
CATEGORIES = (
    ("waiting for room among the device's calls", ("CallBudget.take",)),
    ("waiting for a call's result, copying it back", ("to_host",)),
    ("cutting and sending windows", ("send (",)),
    ("placing windows' outputs", ("_place",)),
    ("the CTF check (recorruption)", ("ctf_gain_check", "checked_gain")),
    ("the CTF fit", ("fit_ctf", "fit_for_gain", "thon_ring_z")),
    ("the gain and the learned weights", ("match_wiener_gain", "wiener_gain_outputs",
                                          "WienerGain.init")),
    ("the binned pass on the host", ("binned_estimate",)),
    ("the ensemble's rotations on the host", ("dihedral_mean",)),
    ("reading and checking the micrograph", ("read_", "checked_micrograph", "normalised",
                                             "estimate_noise")),
    ("writing the output", ("write",)),
)
#: A sample whose innermost frame is the pool's own loop: the thread had no micrograph.
IDLE = ("idle: no micrograph to take", "_worker (concurrent/futures/thread.py")


def categorise(stack: str) -> str:
    frames = stack.split(";")[1:]  # the first names the thread
    if frames and IDLE[1] in frames[-1]:
        return IDLE[0]
    for name, keys in CATEGORIES:
        if any(k in f for f in frames for k in keys):
            return name
    return "other"


def summarise(path: Path, rate: float) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        lines = fh.read().splitlines()
    threads, kinds = collections.Counter(), collections.Counter()
    for line in lines:
        stack, count = line.rsplit(" ", 1)
        thread = stack.split(";", 1)[0]
        threads[thread] += int(count)
        if "ThreadPoolExecutor" in thread:
            kinds[categorise(stack)] += int(count)
    workers = sum(kinds.values())
    return {"samples": sum(threads.values()), "rate_hz": rate,
            "seconds_sampled_per_thread": round(max(threads.values()) / rate, 1),
            "micrograph_threads": sum("ThreadPoolExecutor" in t for t in threads),
            "micrograph_thread_samples": workers,
            "shares_of_micrograph_threads": {k: round(v / max(workers, 1), 3)
                                             for k, v in kinds.most_common()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("profile", type=Path)
    ap.add_argument("--rate", type=float, default=25.0, help="py-spy's samples per second (25)")
    ap.add_argument("--json", type=Path, help="write the summary here too")
    args = ap.parse_args(argv)
    result = summarise(args.profile, args.rate)
    for name, share in result["shares_of_micrograph_threads"].items():
        print(f"{100 * share:5.1f} %  {name}")
    print({k: v for k, v in result.items() if k != "shares_of_micrograph_threads"})
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
