"""Sizes and durations as the commands print them: in a unit that suits the number (a few
hundred kB is not "0.00 GB")."""

from __future__ import annotations

__all__ = ["format_bytes", "format_duration", "spoken_duration"]


def format_bytes(n: float) -> str:
    """``n`` bytes in B, kB, MB or GB (decimal units, as disks are sold).

    Examples
    --------
    >>> format_bytes(512), format_bytes(43_200), format_bytes(14_155_776), format_bytes(3.2e11)
    ('512 B', '43.2 kB', '14.2 MB', '320.00 GB')
    """
    if n < 1e3:
        return f"{n:.0f} B"
    if n < 1e6:
        return f"{n / 1e3:.1f} kB"
    if n < 1e9:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e9:,.2f} GB"


def format_duration(seconds: float) -> str:
    """``seconds`` in s, min or h.

    Examples
    --------
    >>> format_duration(0.2), format_duration(42), format_duration(900), format_duration(9000)
    ('under 1 s', '42 s', '15 min', '2.5 h')
    """
    if seconds < 0.5:
        return "under 1 s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def spoken_duration(seconds: float) -> str:
    """``seconds`` in words, for an estimate said in a sentence ("about 1 second"): seconds
    whole (at least 1) under 90, minutes to two figures under 90 min, else hours.

    Examples
    --------
    >>> spoken_duration(0.3), spoken_duration(1.2), spoken_duration(39), spoken_duration(150)
    ('1 second', '1 second', '39 seconds', '2.5 minutes')
    >>> spoken_duration(9000)
    '2.5 hours'
    """
    if seconds < 90:
        whole = max(1, round(seconds))
        return f"{whole} second{'s' * (whole != 1)}"
    if seconds < 5400:
        return f"{seconds / 60:.2g} minutes"
    return f"{seconds / 3600:.3g} hours"
