"""What came with an earlier output's input, other than its file and the options, said where it
differs from this call's: a STAR file's or ``--pixel-size``'s pixel size, a STAR file's or a
cryoSPARC table's defocus, the odd half (a record's ``given``), for the refusal to replace it."""

from __future__ import annotations

__all__ = ["given_differs"]


def given_differs(old: dict | None, new: dict | None) -> list[str]:
    """Each thing that the records' ``given`` (``old``: the earlier output's, ``new``: this
    call's; None: nothing given) say differently, in words (``"the defocus 18053/17972 Å
    (its STAR file's or cryoSPARC table's), not the defocus fitted from its spectrum (none
    given)"``); none where they agree."""
    old, new = old or {}, new or {}
    said = []
    if old.get("pixel_size_angstrom") != new.get("pixel_size_angstrom"):
        said.append(f"the pixel size {_pixel(old)}, not {_pixel(new)}")
    if old.get("defocus") != new.get("defocus"):
        said.append(f"{_defocus(old.get('defocus'))}, not {_defocus(new.get('defocus'))}")
        if said[-1].split(", not ")[0] == said[-1].split(", not ")[1]:  # alike to the Å
            said[-1] = _finer(old["defocus"], new["defocus"])
    if old.get("odd") != new.get("odd"):
        said.append(f"the odd half {old.get('odd') or 'none (a full sum)'}, not "
                    f"{new.get('odd') or 'none (a full sum)'}")
    if not said and old != new:  # the same values, of another source
        said.append(f"the pixel size of its {old.get('pixel_size_from', 'header')}, not of its "
                    f"{new.get('pixel_size_from', 'header')}")
    return said


def _pixel(given: dict) -> str:
    """A record's pixel size and where it came from; its header's where none was given."""
    if "pixel_size_angstrom" not in given:
        return "of its header"
    origin = given.get("pixel_size_from", "given")
    origin = "from --pixel-size; Python: pixel_size_angstrom=" if origin == "argument" else origin
    return f"{given['pixel_size_angstrom']:g} Å ({origin})"


def _defocus(defocus: dict | None) -> str:
    """A given defocus in Å (U/V), or that it was fitted from the micrograph's spectrum."""
    if not defocus:
        return "the defocus fitted from its spectrum (none given)"
    return (f"the defocus {defocus.get('defocus_u_angstrom', 0):.0f}/"
            f"{defocus.get('defocus_v_angstrom', 0):.0f} Å (its STAR file's or cryoSPARC table's)")


def _finer(old: dict, new: dict) -> str:
    """Two given defoci alike to the Å: their angles, where those differ, else U/V to 0.01 Å."""
    if old.get("angle_deg") != new.get("angle_deg"):
        return (f"the defocus angle {old.get('angle_deg'):g}°, not {new.get('angle_deg'):g}° (its "
                "STAR file's or cryoSPARC table's)")
    return ("the defocus {:.2f}/{:.2f} Å, not {:.2f}/{:.2f} Å (its STAR file's or cryoSPARC "
            "table's)").format(*(d.get(k, 0) for d in (old, new)
                                 for k in ("defocus_u_angstrom", "defocus_v_angstrom")))
