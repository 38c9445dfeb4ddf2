"""The machine this process runs on: the CPU cores and the memory it may take (a batch
system's or a container's share, not the host's whole).

Shared by the commands that size their work to the machine: ``denoise`` (micrographs in
flight), ``prepare`` (a LocalCluster's workers) and ``simulate`` (one micrograph's arrays).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["available_memory", "cgroup_headroom", "cgroup_memory", "cpu_cores"]


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity: a batch system's or container's
    share)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cgroup_memory(root: Path = Path("/")) -> tuple[int, int] | None:
    """``(limit, used)`` bytes of the tightest memory cgroup over this process: its own or any
    above it (a container's, a batch job's: SLURM sets the job's limit above the task's
    cgroup). cgroup v2's ``memory.max`` and ``memory.current``, v1's ``memory.limit_in_bytes``
    and ``memory.usage_in_bytes``; the one with the least left counts. None where none caps
    it. ``root``: the file system's root (a test's folder)."""
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    found = []
    for line in lines:
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0":
            base, files = root / "sys/fs/cgroup", ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            base = root / "sys/fs/cgroup/memory"
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        parts = [p for p in path.strip("/").split("/") if p]
        for depth in range(len(parts), -1, -1):  # the process's cgroup, then each above it
            try:
                limit, used = ((base.joinpath(*parts[:depth]) / name).read_text().strip()
                               for name in files)
                if limit != "max" and int(limit) < 1 << 60:  # v1 writes a huge number for none
                    found.append((int(limit), int(used)))
            except (OSError, ValueError):
                continue
    return min(found, key=lambda f: f[0] - f[1]) if found else None


def cgroup_headroom(root: Path = Path("/")) -> int | None:
    """Bytes this process's memory cgroup may still take (:func:`cgroup_memory`: its limit
    less its use); None where none caps it."""
    found = cgroup_memory(root)
    return None if found is None else max(found[0] - found[1], 0)


def available_memory() -> int:
    """Bytes of memory this process may still take: the host's available memory, or the
    cgroup's headroom where it is less (:func:`cgroup_headroom`)."""
    import psutil

    free = psutil.virtual_memory().available
    headroom = cgroup_headroom()
    return free if headroom is None else min(free, headroom)
