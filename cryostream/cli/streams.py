"""The command's stdout and stderr where the pipe they write to closes (``cryostream denoise
... 2>&1 | head -1``, once ``head`` has its line): the first write that finds it closed points
the stream at /dev/null, as Python's documentation advises (the ``signal`` module's *Note on
SIGPIPE*), and the command goes on in silence to its end and its status; Ctrl-C and SIGTERM stop
it as ever. A write into the closed pipe had raised :class:`BrokenPipeError` wherever it came:
in the handler of a Ctrl-C, which then stopped nothing (the command went on with every
micrograph), or in the summary at the end, which turned a finished command into a traceback."""

from __future__ import annotations

import contextlib
import io
import os
import sys

__all__ = ["SilencedWhenClosed", "to_devnull", "silenced_when_closed"]


def to_devnull(fd: int) -> None:
    """Point the file descriptor ``fd`` at /dev/null: whatever is written to it later, from
    Python or from a library's C code, goes nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class SilencedWhenClosed(io.FileIO):
    """Writes to the file descriptor ``fd`` (left open when this closes); the first that finds
    its pipe closed points it at /dev/null (:func:`to_devnull`), and counts as written, as all
    later writes are."""

    def __init__(self, fd: int):
        super().__init__(fd, "w", closefd=False)

    def write(self, data) -> int:
        try:
            return super().write(data)
        except BrokenPipeError:
            to_devnull(self.fileno())
            return memoryview(data).nbytes


def silenced_when_closed() -> None:
    """Make ``sys.stdout`` and ``sys.stderr`` anew over :class:`SilencedWhenClosed`, each with
    the file descriptor, encoding, errors and buffering it had; for the command as the process's
    program (its first call: a stream that is no file, as a test's capture, is left as it
    is). A closed pipe then silences the stream instead of raising where it is written."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, io.TextIOWrapper) or \
                isinstance(getattr(stream.buffer, "raw", None), SilencedWhenClosed):
            continue
        try:
            fd = stream.fileno()
        except (OSError, ValueError):  # (no file descriptor; closed)
            continue
        with contextlib.suppress(OSError):  # (what was written before, where it can go)
            stream.flush()
        setattr(sys, name, io.TextIOWrapper(
            io.BufferedWriter(SilencedWhenClosed(fd)), encoding=stream.encoding,
            errors=stream.errors, line_buffering=stream.line_buffering,
            write_through=stream.write_through))
