"""What each micrograph brings to :func:`~cryostream.denoise.denoise`, gathered and checked before
anything is computed: its file (and its odd half), its pixel size, the optics of its CTF gain and a
defocus already measured, from a RELION STAR file or a cryoSPARC table, the MRC header or the
arguments (the CTF gain step that takes it: :mod:`~cryostream.denoise.known_defocus`)."""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from pathlib import Path

from cryostream.denoise.known_defocus import KnownDefocusGain, halves_pipeline
from cryostream.denoise.pixels import (
    argument_disagrees,
    check_pixel_size,
    header_optics,
    note_assumed_optics,
    pixel_size_for,
    say_own_pixel_sizes,
    warn_header_pixel_sizes,
    warn_overridden_optics,
    warn_pixel_size_argument,
)
from cryostream.denoise.steps import WienerGain
from cryostream.errors import InvalidMicrographError
from cryostream.io.cryosparc import list_kind
from cryostream.io.simulated import check_sets_finished
from cryostream.io.star import Defocus, MicrographStar, StarFileWarning, is_micrograph_list, read_star

__all__ = ["InputMicrograph", "DenoiseInputs", "KnownDefocusGain", "halves_pipeline",
           "gather_inputs"]


@dataclasses.dataclass(frozen=True)
class InputMicrograph:
    """One micrograph to denoise.

    Attributes
    ----------
    source : str
        Its file (absolute); for even/odd pairs, the even half (the output is named after the
        micrograph: :meth:`named_after`).
    pixel_size_angstrom : float
        Å: ``--pixel-size``, else its STAR file's optics group, else its header.
    pixel_size_from : str
        ``"argument"``, ``"header"``, ``"EPU header"`` or its list's kind (``"STAR file"``,
        ``"cryoSPARC .cs file"``).
    optics : dict
        ``voltage_kv``, ``cs_mm``, ``amplitude_contrast`` of its CTF gain: its optics group's
        where the STAR file gives them, else the option's, else its header's (an EPU file's
        voltage: :func:`~cryostream.denoise.pixels.header_optics`), else the config's.
    defocus : Defocus or None
        The STAR file's ``rlnDefocusU``/``V``/``Angle``, used instead of a fit.
    odd : str or None
        The odd half-sum (the output is the sum of the two halves' outputs).
    star_row, shape : int or None, (int, int) or None
        Its row in the STAR file's micrographs block; its size in pixels, from its header.
    listed_in : str
        The kind of list that gave its defocus, for its record and messages.
    micrograph : str or None
        For even/odd pairs of a RELION STAR file's row, the micrograph they stand for: its
        ``rlnMicrographName``, resolved against the project folder (the file need not exist).
    given_as : str or None
        Its file as given (absolute, symbolic links not followed), where that differs from
        :attr:`source`: a link's output is named after the link, as RELION names it (not for
        a cryoSPARC ``.cs`` file, whose imported links are named ``UID_NAME.mrc``).
    optics_from : dict
        The keys of :attr:`optics` its STAR file, ``.cs`` file or header gave, each with where
        from: its list's kind, or ``"EPU header"``.
    """

    source: str
    pixel_size_angstrom: float
    pixel_size_from: str
    optics: dict
    defocus: Defocus | None = None
    odd: str | None = None
    star_row: int | None = None
    shape: tuple[int, int] | None = None
    listed_in: str = "STAR file"
    micrograph: str | None = None
    given_as: str | None = None
    optics_from: dict = dataclasses.field(default_factory=dict)

    def named_after(self) -> tuple[str, str]:
        """The file its output is named after and the name (``NAME`` of ``NAME.mrc``): the
        micrograph a STAR file's pair of halves stands for (:attr:`micrograph`), else its own
        file as given (a link, not its target), a pair's even half without its ending
        (``NAME`` for ``NAME_EVN.mrc``)."""
        from cryostream.io.halves import EVEN_SUFFIXES, half_key

        if self.micrograph is not None:
            return self.micrograph, Path(self.micrograph).stem
        source = self.given_as or self.source
        stem = half_key(source, EVEN_SUFFIXES) if self.odd is not None else Path(source).stem
        return source, stem

    def given(self) -> dict | None:
        """What the output owes to elsewhere than its file and the config (JSON values), for
        its record and identity; None when nothing."""
        given = {}
        if self.pixel_size_from not in ("header", "EPU header"):  # its file's own
            given["pixel_size_angstrom"] = self.pixel_size_angstrom
            given["pixel_size_from"] = self.pixel_size_from
        if self.defocus is not None:
            given["defocus"] = dataclasses.asdict(self.defocus)
        if self.odd is not None:
            given["odd"] = self.odd
        return given or None

    def config(self, config):
        """``config`` with this micrograph's optics (:class:`~cryostream.config.DenoiseConfig`)."""
        return dataclasses.replace(config, **self.optics)

    def pipeline(self, config, *, defocus_from: str | None = None, check: float | None = None,
                 rings_z: float | None = None, rival: float | None = None):
        """The post-processing steps for this micrograph: ``config``'s, with the CTF gain
        taking the known defocus (:class:`KnownDefocusGain`, ``defocus_from`` saying where it
        was measured, ``check`` its recorruption check if already measured, ``rings_z`` its
        Thon rings' score and ``rival`` its rival defocus where it was fitted) when there is
        one."""
        pipeline = config.pipeline()
        if self.defocus is None:
            return pipeline
        d = self.defocus
        steps = tuple(KnownDefocusGain(ctf=True, optics=s.optics, learned=s.learned, defocus=(
            d.defocus_u_angstrom, d.defocus_v_angstrom, d.angle_deg), source=defocus_from or self.listed_in,
            check=check, rings_z=rings_z, rival=rival)
            if isinstance(s, WienerGain) and s.ctf else s for s in pipeline.steps)
        return dataclasses.replace(pipeline, steps=steps)


@dataclasses.dataclass(frozen=True)
class DenoiseInputs:
    """The micrographs of one :func:`~cryostream.denoise.denoise` call (:func:`gather_inputs`).

    ``star`` is the STAR file when one STAR file gave every micrograph (its optics table and
    columns are carried into the output's STAR file), else None; ``skipped`` the bad files
    ``permissive`` skipped (``{"path", "reason"}``; an odd half's also ``"even"``, its even
    half's path, where that half is skipped with it).
    """

    micrographs: list[InputMicrograph]
    star: MicrographStar | None
    skipped: list[dict]
    #: each micrograph's STAR file (by its source), where one lists it
    listed: dict = dataclasses.field(default_factory=dict)


def _star_items(items: list, column: str,
                permissive: bool = False) -> tuple[list, list[MicrographStar]]:
    from cryostream.io.stack import glob_matches

    entries, stars, read = [], [], set()
    for item in glob_matches(items):  # a quoted glob of STAR files reads them as STAR files
        p = Path(os.fspath(item))
        if is_micrograph_list(p):
            if p.resolve() in read:  # the same STAR file given twice: read once
                continue
            read.add(p.resolve())
            star = read_star(p, column, permissive=permissive)
            stars.append(star)
            entries += [(m.path, star, m) for m in star.micrographs]
        else:
            from cryostream.io.stack import expand_inputs

            entries += [(q, None, None) for q in expand_inputs([item])]
    return entries, stars


def _rows(entries) -> list[tuple]:
    """``(path, STAR file, row)`` of each ``(path, star, entry)`` (None, None for a file not
    listed by a STAR file), for :meth:`~cryostream.io.halves.HalfKeys.from_rows`."""
    return [(p, None if star is None else star.path, None if entry is None else entry.row)
            for p, star, entry in entries]


def _key(path: Path) -> str:
    try:
        return str(path.resolve())
    except (RuntimeError, OSError):  # a symlink loop: read_header names it
        return str(path)


def gather_inputs(inputs, *, config, odd=None, pixel_size_angstrom: float | None = None,
                  permissive: bool = False, one_shape: bool = True,
                  note_optics: bool = True) -> DenoiseInputs:
    """Every micrograph to denoise, with its pixel size, optics, defocus and odd half, checked
    before anything is written.

    Parameters
    ----------
    inputs : paths, globs, folders or STAR files
        The micrographs; with ``odd``, their even halves (a STAR file's
        ``rlnMicrographNameEven``).
    config : DenoiseConfig
        Its voltage, Cs and amplitude contrast apply where no STAR file gives them.
    odd : paths, globs, folders or STAR files, optional
        The odd halves (a STAR file's ``rlnMicrographNameOdd``): a STAR file given as both
        halves pairs each row's two, whatever their names; other halves pair by name
        (:func:`~cryostream.io.halves.pair_halves`).
    pixel_size_angstrom : float, optional
        Overrides the STAR files and headers.
    permissive : bool
        Skip unreadable micrographs (their odd halves too) and denoise's outputs, warning.
    one_shape : bool
        Whether every micrograph must have one shape (a stack; False: each to its own file).
    note_optics : bool
        Note micrographs of default optics here (False: the caller notes those it denoises).

    Raises
    ------
    InvalidMicrographError, ConfigError
        A bad file, an output of denoise (DenoisedInputError), part of an unfinished simulated
        set, a STAR file lacking an optics group or with a bad defocus, unpaired halves, no pixel size.

    Warns
    -----
    StarFileWarning
        Once per STAR file whose pixel size (used) differs from its micrographs' headers', and
        once for micrographs that two STAR files list (the first file's row is used). A
        micrograph both a STAR file and a path or folder give takes the STAR file's row.
    ~cryostream.denoise.pixels.PixelSizeWarning
        Once where ``pixel_size_angstrom`` (used) is twice or half the headers' or further off,
        and not its STAR file's.
    """
    from cryostream.denoise.denoised_inputs import refuse_denoised
    from cryostream.io.halves import HalfKeys, RowKey, check_swapped, halves_mismatch, pair_halves
    from cryostream.io.stack import MicrographSkippedWarning, listed_inputs, read_headers

    pixel_size_angstrom = check_pixel_size(pixel_size_angstrom)  # before any file is read
    items = listed_inputs(inputs)
    if not items:
        raise InvalidMicrographError("<inputs>", "no micrographs were given",
                                     "pass MRC files, globs, folders or a STAR file")
    check_sets_finished(items)  # never a part of a simulated set taken for the whole
    column = "rlnMicrographName" if odd is None else "rlnMicrographNameEven"
    entries, stars = _star_items(items, column, permissive)
    found: dict[str, tuple] = {}
    twice = []  # (name, first STAR file, second STAR file)
    for path, star, entry in entries:
        first = found.get(_key(path))
        if first is None or (first[1] is None and star is not None):
            found[_key(path)] = (path, star, entry)  # a STAR row says more than a bare path
        elif star is not None and first[1] is not None and first[1] is not star:
            twice.append((Path(path).name, first[1].path.name, star.path.name))
    if twice:
        warnings.warn(f"{len(twice)} micrograph{'s are' if len(twice) > 1 else ' is'} listed by "
                      f"two STAR files ({twice[0][0]} in {twice[0][1]} and {twice[0][2]}"
                      f"{', …' if len(twice) > 1 else ''}): each is denoised once, with the first "
                      "STAR file's values", StarFileWarning, stacklevel=3)
    headers, skipped = read_headers([p for p, _, _ in found.values()], permissive=permissive,
                                    one_shape=one_shape)
    headers = refuse_denoised(headers, skipped, permissive)  # outputs of denoise: not raw
    if odd is None and not any(os.path.isdir(i) for i in items):  # a folder's own note says it
        from cryostream.io.folders import note_lone_halves

        note_lone_halves([p for p, _, _ in found.values()])  # NAME_EVN and NAME_ODD as two
    odds: dict[str, str] = {}
    if odd is not None:
        odd_entries, _ = _star_items([odd] if isinstance(odd, str | os.PathLike) else list(odd),
                                     "rlnMicrographNameOdd", permissive)
        keys = HalfKeys.from_rows(_rows(found.values()), _rows(odd_entries))  # a row pairs its own
        # halves pair by the names given (a header's path is resolved: a link's target's name)
        given = {**{_key(Path(p)): p for p, _, _ in odd_entries},
                 **{k: p for k, (p, _, _) in found.items()}}  # found's keys: resolved already

        def even(path):
            return keys.even(given.get(str(path), path))

        def odd_key(path):
            return keys.odd(given.get(str(path), path))

        gone = {even(s["path"]) for s in skipped}
        odd_paths = [p for p, _, _ in odd_entries if odd_key(p) not in gone]
        if permissive:  # an unreadable or unmatched odd half skips its micrograph
            check_swapped([p for p, _, _ in found.values()], [p for p, _, _ in odd_entries])
            listed = {even(p) for p, _, _ in found.values()}
            said = {even(r["path"]) for star in stars for r in star.skipped}  # rows skipped
            for p in [p for p in odd_paths if odd_key(p) not in listed]:
                if not (isinstance(odd_key(p), RowKey) or odd_key(p) in said):  # else said
                    reason = f"{p}: no even half among the inputs"
                    warnings.warn(f"skipping {reason}", MicrographSkippedWarning, stacklevel=2)
                    skipped.append({"path": str(p), "reason": reason})
            odd_paths = [p for p in odd_paths if odd_key(p) in listed]
            odd_headers, odd_skipped = read_headers(odd_paths, permissive=True,
                                                    one_shape=one_shape)
            by_key = {odd_key(o.path): o for o in odd_headers}
            for h in headers:
                o = by_key.get(even(h.path))
                mismatch = o is not None and halves_mismatch(h.path, h, o.path, o)
                if mismatch:
                    warnings.warn(f"skipping {mismatch}", MicrographSkippedWarning, stacklevel=2)
                    odd_skipped.append({"path": o.path, "reason": mismatch})
            even_of = {even(h.path): h.path for h in headers}
            for lost_odd in odd_skipped:  # its even half's path: the two count as one skipped
                if (partner := even_of.get(odd_key(lost_odd["path"]))) is not None:
                    lost_odd["even"] = partner
            lost = {odd_key(s["path"]) for s in odd_skipped}
            odd_paths = [p for p in odd_paths if odd_key(p) not in lost]
            for h in headers:
                if even(h.path) in lost:
                    reason = (f"{h.path}: its odd half cannot be read or does not match it "
                              "(see the warning above)")
                    warnings.warn(f"skipping {reason}", MicrographSkippedWarning, stacklevel=2)
                    odd_skipped.append({"path": h.path, "reason": reason})
            headers = [h for h in headers if even(h.path) not in lost]
            skipped = skipped + odd_skipped
            paired = {odd_key(p) for p in odd_paths}
            for h in [h for h in headers if even(h.path) not in paired]:
                reason = f"{h.path}: no odd half among the inputs"
                warnings.warn(f"skipping {reason}", MicrographSkippedWarning, stacklevel=2)
                skipped.append({"path": h.path, "reason": reason})
            headers = [h for h in headers if even(h.path) in paired]
        pairs = pair_halves([Path(given.get(h.path, h.path)) for h in headers], odd_paths, keys)
        odds = {_key(Path(e)): str(Path(o).resolve()) for e, o in pairs}
    micrographs, differ, off, entries, own, listed, kinds = [], {}, [], [], [], {}, []
    for h in headers:
        given_path, star, entry = found[h.path] if h.path in found else found[_key(Path(h.path))]
        given_path = os.path.abspath(given_path)  # links kept: the output is named after it
        entries.append(entry)
        if star is not None:
            listed[h.path] = star
        kind = list_kind(star.path) if star is not None else "STAR file"
        kinds.append(kind)
        ps, origin = pixel_size_for(h, entry, pixel_size_angstrom, kind)
        if origin in ("header", "EPU header"):  # said once below, where the header's is used
            own.append(h)
        if origin == "argument" and (disagree := argument_disagrees(ps, h, entry, kind)):
            off.append(disagree)
        if origin == kind and h.pixel_size_angstrom > 0 and not math.isclose(
                ps, h.pixel_size_angstrom, rel_tol=0.01):  # a header 1 % or more off
            differ.setdefault(id(star), (star, []))[1].append(
                (ps, h.pixel_size_angstrom, Path(h.path).name, h.pixel_size_from))
        listed_optics = entry.optics.ctf_keywords() if getattr(entry, "optics", None) is not None else {}
        theirs = {**header_optics(h, config), **listed_optics}  # an EPU header's, under a STAR file's
        micrographs.append(InputMicrograph(
            h.path, ps, origin, {**config.optics, **theirs}, entry.defocus if entry is not None else None,
            odds.get(h.path), entry.row if entry is not None else None, h.shape, kind,
            _micrograph_name(star, entry) if h.path in odds else None,
            # cryoSPARC's imported files are links named UID_NAME.mrc: named NAME, its target
            given_path if given_path != h.path and kind != "cryoSPARC .cs file" else None,
            {k: kind if k in listed_optics else "EPU header" for k in theirs}))
    say_own_pixel_sizes(own)  # where they differ too
    for star, pairs in differ.values():  # once per STAR file
        warn_header_pixel_sizes(star, pairs)
    if off:
        warn_pixel_size_argument(pixel_size_angstrom, off)
    if note_optics:
        note_assumed_optics(config, micrographs)  # of the micrographs kept, not those skipped
    warn_overridden_optics(config, entries, kinds)
    single = stars[0] if len(stars) == 1 and all(s is stars[0] for _, s, _ in found.values()) \
        else None
    gathered = DenoiseInputs(micrographs, single, [row for star in stars for row in star.skipped]
                             + skipped, listed)  # STAR rows whose file is missing, and the bad files
    if single is None and stars:
        _warn_columns_not_carried(gathered)
    return gathered


def _micrograph_name(star: MicrographStar | None, entry) -> str | None:
    """The ``rlnMicrographName`` of a RELION STAR file's row of halves (``entry``), resolved as
    its halves' names are; None for a cryoSPARC .cs file (its names are the halves') and a row
    without one."""
    if star is None or list_kind(star.path) != "STAR file" or "rlnMicrographName" not in star.table.columns:
        return None
    value = star.table["rlnMicrographName"].iloc[entry.row]
    text = "" if isinstance(value, float) and math.isnan(value) else str(value).strip()
    if not text:
        return None
    return str(Path(text) if Path(text).is_absolute() else star.project / text)


#: What the STAR file written for micrographs of several STAR files (or of a STAR file and
#: other files) holds of theirs: the names, optics groups (a new optics table) and defocus.
_CARRIED = {"rlnMicrographName", "rlnOpticsGroup", "rlnOpticsGroupName",
            "rlnMicrographPixelSize", "rlnVoltage", "rlnSphericalAberration",
            "rlnAmplitudeContrast", "rlnMicrographOriginalPixelSize"}


def _warn_columns_not_carried(gathered: DenoiseInputs) -> None:
    """One warning naming the columns of the inputs' STAR files that the output's STAR file
    leaves out, with the fix, where the micrographs come from several STAR files or from a
    STAR file and other files. Of several STAR files with optics tables, the rows and optics
    groups are joined, and only the columns some of the files lack are left out
    (:func:`~cryostream.denoise.star_out.joined_columns`). Otherwise the output's STAR file
    carries only their names, optics and defocus (the defocus only where every micrograph has
    one), and the rest (``rlnCtfImage``, ``rlnCtfMaxResolution``, an optics table's
    ``rlnMtfFileName`` …) is named."""
    from cryostream.denoise.star_out import ROW_OPTICS, joined_columns, joined_stars

    stars = list({id(s): s for s in gathered.listed.values()}.values())
    if not stars:
        return
    named = ", ".join(str(s.path) for s in stars)
    kind = " or ".join(sorted({list_kind(s.path) for s in stars}))  # .cs files: cryoSPARC's
    files = kind.replace(" file or", " and").replace("file", "files")  # STAR and cryoSPARC …
    if joined := joined_stars(gathered):
        lost = joined_columns(joined)
        said = (f"the micrographs come from {len(stars)} {files} ({named}): the STAR file written "
                "joins their rows and optics groups, without the columns only some of them have "
                f"({{}}); to keep those, denoise each {kind} into an -o folder of its own")
    else:
        defocus = all(m.defocus is not None for m in gathered.micrographs)
        carried = _CARRIED | ROW_OPTICS | ({"rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"}
                                           if defocus else set())
        lost = list(dict.fromkeys(c for s in stars for table in (s.table, s.optics_table)
                                  if table is not None for c in table.columns if c not in carried))
        given = f"{len(stars)} {files}" if len(stars) > 1 else f"a {kind} and other files"
        join = ("give one STAR file listing every micrograph (join them first, e.g. with RELION's "
                "Join star files job), or " if kind == "STAR file" else "")  # none joins a .cs
        said = (f"the micrographs come from {given} ({named}): the STAR file written lists "
                f"their names and optics{' and defocus' if defocus else ''} only, without their "
                "columns {}; to keep them, " + join + f"denoise each {kind} into an -o folder of "
                "its own")
    if lost:
        shown = ", ".join(lost[:8]) + (f" and {len(lost) - 8} more" if len(lost) > 8 else "")
        warnings.warn(said.format(shown), StarFileWarning, stacklevel=4)
