"""Which simulated micrographs a run never trained on, from its store's record of the split:
the ground truth is scored only on those."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path

from cryostream.errors import ConfigError
from cryostream.evaluate.numbers import simulated_pairs

__all__ = ["HALF_SUFFIXES", "TrainingMicrograph", "training_micrographs", "TruthSelection",
           "select_held_out", "checked_truth", "check_store_held_out"]


#: File-name endings of even- and odd-frame half-sums (MotionCor2, RELION, Warp): a store's
#: ``NAME_EVN`` came from the micrograph ``NAME``.
HALF_SUFFIXES = ("_EVN", "_ODD", "_even", "_odd", "-even", "-odd", ".even", ".odd")


@dataclasses.dataclass(frozen=True)
class TrainingMicrograph:
    """One micrograph of a store's training split.

    Attributes
    ----------
    name : str
        Its name in the store (the file stem, or the path where two stems collide).
    source : str
        The image patched as the network's input (absolute path when prepared).
    target : str or None
        The image patched as the target of a paired store (``prepare --targets``, half-sums).
    """

    name: str
    source: str
    target: str | None

    @property
    def micrograph(self) -> str:
        """The micrograph it came from: the name's stem less a half-sum ending
        (:data:`HALF_SUFFIXES`)."""
        stem = Path(self.name).stem if os.sep in self.name else self.name
        for suffix in HALF_SUFFIXES:
            if stem.lower().endswith(suffix.lower()) and len(stem) > len(suffix):
                return stem[: -len(suffix)]
        return stem


def training_micrographs(store) -> list[TrainingMicrograph] | None:
    """The micrographs of ``store``'s training split (its ``micrographs/split`` table), or
    ``None`` when the store cannot be read here (moved, deleted, or a shipped model's)."""
    return training_micrographs_of_split(store, "train")


def training_micrographs_of_split(store, which: str) -> list[TrainingMicrograph] | None:
    """:func:`training_micrographs` of the split ``which`` ("train" or "test")."""
    import h5py

    try:
        with h5py.File(store, "r") as f:
            table = f["micrographs"]
            names, sources = table["name"].asstr()[:], table["source"].asstr()[:]
            splits = table["split"].asstr()[:]
            targets = json.loads(f.attrs.get("targets", "[]")) or [None] * len(names)
    except (OSError, KeyError, ValueError):
        return None
    if len(targets) != len(names):
        targets = [None] * len(names)
    return [TrainingMicrograph(str(n), str(s), t) for n, s, t, split
            in zip(names, sources, targets, splits, strict=True) if split == which]


def _fingerprint(path, block: int = 1 << 15) -> tuple[int, str] | None:
    """A file's size and a hash of ``block`` bytes after the MRC header and ``block`` at its
    middle: one for copies of a micrograph under any name, read once per file and change in a
    process (None where it cannot be read)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return _fingerprint_of(os.path.realpath(path), stat.st_size, stat.st_mtime_ns, block)


@functools.lru_cache(maxsize=65536)
def _fingerprint_of(path: str, size: int, mtime_ns: int, block: int) -> tuple[int, str] | None:
    import hashlib

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for offset in (1024, max(1024, size // 2)):
                f.seek(offset)
                digest.update(f.read(block))
    except OSError:
        return None
    return size, digest.hexdigest()


def _copies_of(training: list[TrainingMicrograph]) -> set:
    """The fingerprints of ``training``'s sources that can be read here."""
    return {fp for fp in map(_fingerprint, dict.fromkeys(t.source for t in training))
            if fp is not None}


def _trained_on(noisy: Path, truth: Path, training: list[TrainingMicrograph],
                copies: set) -> bool:
    """Whether a simulated micrograph (or its truth) is among ``training``: the same file, a
    copy of one under any name (its fingerprint among ``copies``), or the same micrograph name
    and either the same simulated set (its half-sums beside it) or a file no longer where it
    was prepared from (moved: assumed the same)."""
    if _fingerprint(noisy) in copies:
        return True
    here = {str(noisy.resolve()), str(truth.resolve())}
    root = noisy.resolve().parent.parent
    for t in training:
        files = {t.source} | ({t.target} if t.target else set())
        if files & here:
            return True
        if t.micrograph != noisy.stem:
            continue
        source = Path(t.source)
        if source.parent.parent == root or not source.exists():
            return True
    return False


@dataclasses.dataclass(frozen=True)
class TruthSelection:
    """The simulated micrographs the truth section scores: those the run never trained on.

    Attributes
    ----------
    pairs : tuple of (Path, Path)
        ``(micrographs/NAME.mrc, truth/NAME.mrc)`` scored, sorted by name.
    in_training : tuple of str
        File names of the set's micrographs in the run's training split, left out.
    store : str
        The store the run was trained on (from its record).
    checked : bool
        Whether that store could be read to check; ``False`` when it is not on this machine
        (e.g. a shipped model's), and every micrograph is scored.
    shipped : bool
        The model is one shipped with cryostream (its store, named where it was trained, does
        not come with it).
    """

    pairs: tuple[tuple[Path, Path], ...]
    in_training: tuple[str, ...]
    store: str
    checked: bool
    shipped: bool = False

    def note(self) -> str:
        """One sentence for the report: what was scored and why it is held out."""
        names = ", ".join(p[0].name for p in self.pairs)
        if not self.checked and self.shipped:
            return (f"Scored {names}. The shipped model's training store does not come with it, "
                    "so whether it held these micrographs was not checked.")
        if not self.checked:
            return (f"Scored {names}. The run's training store ({self.store}) cannot be read "
                    "here, so whether it held these micrographs was not checked.")
        left = (f"; left out, in its training split: {', '.join(self.in_training)}"
                if self.in_training else "")
        return (f"Scored {names}: held out of the run's training (not in the training split "
                f"of {self.store}){left}.")

    def as_dict(self) -> dict:
        """JSON values for ``report.json``."""
        return {"scored": [p[0].name for p in self.pairs], "in_training": list(self.in_training),
                "store": self.store, "checked": self.checked}


def select_held_out(truth_root, limit: int, training_store, shipped: bool = False) -> TruthSelection:
    """The first ``limit`` micrographs of the simulated set ``truth_root`` that a run trained
    on ``training_store`` (its record's ``store``) never saw (``shipped``: the run is a model
    shipped with cryostream, :attr:`TruthSelection.shipped`).

    A micrograph counts as trained on when its file or its truth is a source or target of the
    store's training split (:func:`training_micrographs`), or a training micrograph has its
    name and is from the same simulated set (its even/odd halves) or no longer where it was
    prepared from, or it is a copy of a training micrograph under any name (the same bytes).
    Raises :class:`ConfigError` naming the folder and the fix when every micrograph was trained
    on; when the store cannot be read, all are scored and ``checked`` is False.
    """
    pairs = simulated_pairs(Path(truth_root))
    store = str(training_store)
    training = training_micrographs(store)
    if training is None:
        return TruthSelection(tuple(pairs[:limit]), (), store, False, shipped)
    held, trained, copies = [], [], _copies_of(training)
    for noisy, truth in pairs:
        (trained if _trained_on(noisy, truth, training, copies) else held).append((noisy, truth))
    if not held:
        gone = any(not Path(t.source).exists() for t in training)
        raise ConfigError(
            f"truth={truth_root}: all {len(pairs)} micrographs are in the training split of "
            f"the run's store {store}, so scoring them would flatter the run"
            + (" (or share their names with training micrographs whose files are gone, which "
               "cannot be told apart: keep the training micrographs where they were prepared "
               "from)" if gone else "")
            + "; simulate a new set to score (cryostream simulate with another --seed) or "
            "prepare the store with a test split (--test-fraction) and train again")
    return TruthSelection(tuple(held[:limit]), tuple(n.name for n, _ in trained), store, True,
                          shipped)


def checked_truth(selection: TruthSelection, run, record) -> TruthSelection:
    """``selection``, each of its ``(micrograph, truth)`` pairs checked before any is scored: the
    micrograph as ``denoise`` checks it (NaN or Inf pixels, constant, too small), its truth of
    the micrograph's shape with finite pixels; an
    :class:`~cryostream.errors.InvalidMicrographError` naming the file and the fix otherwise
    (a truth of another shape had been a traceback, one with NaN pixels a report of NaN scores)."""
    import numpy as np

    from cryostream.config import DenoiseConfig
    from cryostream.denoise.micrograph import check_micrograph
    from cryostream.denoise.network import load_network
    from cryostream.errors import InvalidMicrographError, without_skipping
    from cryostream.evaluate.numbers import read_micrograph
    from cryostream.io.mrc import read_header

    for noisy, truth in selection.pairs:
        fix = (f"remove {noisy.name} from both the set's micrographs and truth folders, or "
               "simulate the set again (cryostream simulate)")
        shape, truth_shape = read_header(noisy).shape, read_header(truth).shape
        if shape != truth_shape:
            raise InvalidMicrographError(truth, f"the truth is {truth_shape[0]} × {truth_shape[1]} "
                                         f"px, its micrograph {noisy} {shape[0]} × {shape[1]} px",
                                         fix)
        try:
            check_micrograph(read_micrograph(noisy)[0], str(noisy), record,
                             load_network(run).config, DenoiseConfig())
        except InvalidMicrographError as exc:  # evaluate has no --permissive to skip it
            raise without_skipping(exc, fix) from None
        if not np.isfinite(read_micrograph(truth)[0]).all():
            raise InvalidMicrographError(truth, "the truth holds NaN or Inf pixels", fix)
    return selection


def check_store_held_out(store, training_store) -> None:
    """A :class:`ConfigError` when a micrograph of ``store``'s test split is in the training
    split of ``training_store`` (the run's, from its record): the same source file, or a copy
    of one under any name (the same bytes). Its test patches would flatter the run (another store of the
    same micrographs splits them by its own seed and fraction). Nothing is said when either
    store cannot be read here, or when they are one file."""
    if os.path.realpath(store) == os.path.realpath(training_store):
        return
    training = training_micrographs(training_store)
    scored = training_micrographs_of_split(store, "test")
    if not training or not scored:
        return
    sources, copies = {os.path.realpath(t.source) for t in training}, _copies_of(training)
    seen = [m.name for m in scored if os.path.realpath(m.source) in sources
            or _fingerprint(m.source) in copies]
    if seen:
        names = ", ".join(seen[:3]) + (", …" if len(seen) > 3 else "")
        raise ConfigError(
            f"{store}: its test split holds {len(seen)} of the run's training micrographs "
            f"({names}; in the training split of {training_store}), so its test patches would "
            "flatter the run; score the run's own store, or a store of micrographs it never "
            "trained on")
