"""What the GPU did during a ``jax.profiler`` trace: kernels, copies each way, and the gaps.

Reads the ``*.xplane.pb`` a ``jax.profiler.trace`` wrote and sums the device's events by kind
(a kernel, a copy from the host, a copy to the host, a copy on the device), over all of its
streams: the time each kind took, the time the device was busy with any of them (the union of
the events: overlapping streams count once), and the idle time between busy spells by length
(a gap of a few microseconds is a kernel launch; one of milliseconds is the device waiting for
the host). The kernels that took most time are listed by name.

Usage: python benchmarks/device_timeline.py TRACE_DIR [--json OUT.json] [--top 15]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

#: Gap lengths (s) the idle time is binned by.
GAP_EDGES = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def kind_of(name: str) -> str:
    """An event's kind from its name: ``h2d``, ``d2h``, ``d2d`` copies, or ``kernel``."""
    low = name.lower()
    if "memcpy" in low or "memset" in low:
        for kind, marks in (("h2d", ("htod", "h2d")), ("d2h", ("dtoh", "d2h")), ("d2d", ("dtod", "d2d"))):
            if any(m in low for m in marks):
                return kind
        return "memset" if "memset" in low else "copy"
    return "kernel"


def device_events(trace_dir: Path):
    """``(plane name, line name, event name, start s, duration s)`` of every event on a GPU
    plane of the trace's ``.xplane.pb`` files: its streams' lines, where it names them so."""
    from jax.profiler import ProfileData

    files = sorted(Path(trace_dir).rglob("*.xplane.pb"))
    if not files:
        raise SystemExit(f"{trace_dir}: no .xplane.pb file (was the trace written?)")
    for file in files:
        data = ProfileData.from_file(str(file))
        for plane in data.planes:
            if not plane.name.startswith("/device:GPU"):
                continue
            lines = list(plane.lines)
            # the streams' own events; "XLA Modules" and "XLA Ops" lines repeat them as spans
            streams = [line for line in lines if line.name.startswith("Stream")]
            for line in streams or lines:
                for event in line.events:
                    yield (plane.name, line.name, event.name, event.start_ns * 1e-9,
                           event.duration_ns * 1e-9)


def summarise(events, top: int = 15) -> dict:
    """Time by kind, the union of busy time, idle gaps by length and the top kernels."""
    by_kind: dict[str, list] = {}
    kernels: dict[str, list] = {}
    intervals = []
    lines = set()
    for plane, line, name, start, duration in events:
        lines.add(f"{plane} {line}")
        kind = kind_of(name)
        entry = by_kind.setdefault(kind, [0, 0.0])
        entry[0] += 1
        entry[1] += duration
        if kind == "kernel":
            k = kernels.setdefault(name[:90], [0, 0.0])
            k[0] += 1
            k[1] += duration
        intervals.append((start, start + duration))
    if not intervals:
        return {"events": 0}
    intervals.sort()
    busy, gaps = 0.0, []
    cur_start, cur_end = intervals[0]
    for start, end in intervals[1:]:
        if start > cur_end:
            busy += cur_end - cur_start
            gaps.append(start - cur_end)
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    busy += cur_end - cur_start
    span = cur_end - intervals[0][0]
    edges = (0.0, *GAP_EDGES, float("inf"))
    binned = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = [g for g in gaps if lo <= g < hi]
        binned.append({"from_s": lo, "to_s": hi if hi != float("inf") else None,
                       "count": len(inside), "total_s": round(sum(inside), 4)})
    return {
        "events": len(intervals), "lines": sorted(lines), "span_s": round(span, 4),
        "busy_s": round(busy, 4), "busy_percent": round(100 * busy / span, 1) if span else None,
        "by_kind": {k: {"count": n, "total_s": round(t, 4)} for k, (n, t) in sorted(by_kind.items())},
        "idle_gaps": binned,
        "top_kernels": [{"name": n, "count": c, "total_s": round(t, 4)} for n, (c, t) in
                        sorted(kernels.items(), key=lambda kv: -kv[1][1])[:top]],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trace", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)
    summary = summarise(device_events(args.trace), args.top)
    text = json.dumps(summary, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
