"""What :func:`cryostream.prepare.prepare` returns: the store it made, or a finished store it
kept because the same command ran again.

A store's shard folder keeps its fingerprint (``prepare.json``, see
:func:`cryostream.prepare_output.fingerprint`): the options, the inputs, each input's size and
modification time, the band heights. A run whose fingerprint is the finished store's keeps it
as it is (not a byte written); any other is refused with what differs (:func:`differences`)
and the fix: ``overwrite`` or another name.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from cryostream.errors import StoreError
from cryostream.store import open_dataset, shard_folder
from cryostream.units import format_bytes

__all__ = ["STAMP_NAME", "PrepareResult", "differences", "keep_finished", "note_made_up_noise"]

#: The fingerprint's file in a store's shard folder.
STAMP_NAME = "prepare.json"


@dataclasses.dataclass(frozen=True)
class PrepareResult:
    """What :func:`~cryostream.prepare.prepare` made, or kept (``kept``: the store was already
    complete, prepared from the same inputs with the same options; nothing was written)."""

    output: Path
    micrographs: int
    train_patches: int
    test_patches: int
    bytes_written: int
    seconds: float
    peak_memory_bytes: int
    skipped: tuple[dict, ...]
    halves: bool = False  # even/odd pairs: each micrograph is two entries (both directions)
    kept: bool = False

    def __fspath__(self) -> str:
        """The store, so that the result itself may be given to :func:`cryostream.train`."""
        return str(self.output)

    def summary(self) -> str:
        """The one-line summary the command prints."""
        what = (f"{self.micrographs // 2} even/odd pairs (both directions)" if self.halves
                else f"{self.micrographs} micrograph{'s' * (self.micrographs != 1)}")
        patches = f"{self.train_patches} train + {self.test_patches} test patches"
        if self.kept:
            return (f"{self.output} is already complete: {what}, {patches}, prepared from these "
                    "inputs with these options; kept as it is (--overwrite prepares it again)")
        return (
            f"prepared {what} into {self.output}: {patches}, "
            f"{format_bytes(self.bytes_written)} written, {self.seconds:.1f} s, "
            f"peak memory {self.peak_memory_bytes / 1e6:,.0f} MB"
        )


def note_made_up_noise(result: PrepareResult, noise, made_up: bool) -> PrepareResult:
    """``result``, after a note (the ``cryostream`` logger, INFO) where ``made_up``: the store's
    noise ``noise`` is the default, whose dose and σ are made up, not measured from the
    micrographs. A script is told as the command line is (the guide says prepare says so)."""
    if made_up:
        import logging

        logging.getLogger("cryostream").info(
            "the store's noise is the default, %s of dose %g and σ %g: made up, not measured "
            "from these micrographs; a denoiser of them learns from noise like their own: "
            "--noise matched (Python: PrepareConfig(noise=NoiseConfig(model='matched'))) (or "
            "cryostream fit, which prepares and trains so; Python: cryostream.fit)", noise.model,
            noise.dose, noise.sigma)
    return result


def keep_finished(output: Path, stamp: dict, *, halves: bool, start: float) -> PrepareResult:
    """The finished store ``output``, kept, when its fingerprint is ``stamp``.

    Parameters
    ----------
    output : Path
        An existing store (its master file).
    stamp : dict
        This run's fingerprint (:func:`cryostream.prepare_output.fingerprint`).
    halves : bool
        Whether the run pairs even/odd halves (for the summary).
    start : float
        When the run began (``time.perf_counter()``).

    Raises
    ------
    StoreError
        A store of other inputs or options (naming what differs), one without a readable
        fingerprint, or one that is not complete (a shard missing: the repair).
    """
    path = shard_folder(output) / STAMP_NAME
    if not path.parent.is_dir():
        raise StoreError(f"{output} exists and is no finished store (no {path.parent.name}/ "
                         "beside it); pass overwrite=True (--overwrite) or choose another name")
    try:
        old = json.loads(path.read_text())
        if not isinstance(old, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise StoreError(f"{output} exists, but its shards folder records no fingerprint of its "
                         f"inputs ({path.name}: {reason}): whether it was prepared from these "
                         "cannot be told; pass overwrite=True (--overwrite) to prepare it again, "
                         "or choose another name") from None
    new = json.loads(json.dumps(stamp))
    if old != new:
        raise StoreError(f"{output} exists and was prepared from other inputs or options: "
                         f"{'; '.join(differences(old, new))}; pass overwrite=True "
                         "(--overwrite) to replace it, or choose another name")
    with open_dataset(output) as f:  # every shard present, or the repair
        counts = [int(f[split]["index"].shape[0]) for split in ("train", "test")]
        micrographs = int(f["micrographs/name"].shape[0])
        skipped = tuple(json.loads(f.attrs.get("skipped", "[]")))
    return PrepareResult(output, micrographs, *counts, bytes_written=0,
                         seconds=time.perf_counter() - start, peak_memory_bytes=0,
                         skipped=skipped, halves=halves, kept=True)


def _names(paths: list[str]) -> str:
    return ", ".join(Path(p).name for p in paths[:3]) + (", …" if len(paths) > 3 else "")


def _flat(value, prefix: str = "") -> dict:
    """A nested config as ``{"noise.sigma": 0.05, …}``, in field order."""
    if not isinstance(value, dict):
        return {prefix: value}
    flat = {}
    for key, item in value.items():
        flat.update(_flat(item, f"{prefix}.{key}" if prefix else key))
    return flat


def _listed(old, new, kind: str) -> list[str]:
    """How two lists of inputs (``kind``: micrographs or targets) differ, in words."""
    old, new = list(old or ()), list(new or ())
    gone, added = [p for p in old if p not in new], [p for p in new if p not in old]
    if gone and sorted(Path(p).name for p in gone) == sorted(Path(p).name for p in added):
        def folders(paths):  # the same names elsewhere: a moved or copied data folder
            return ", ".join(sorted({str(Path(p).parent) for p in paths})[:2])
        return [f"{len(gone)} of its {kind} have the inputs' names in another folder "
                f"({folders(gone)} in the store, {folders(added)} now: moved, or copies)"]
    said = []
    if gone:
        said.append(f"{len(gone)} of its {kind} {'is' if len(gone) == 1 else 'are'} not among "
                    f"the inputs ({_names(gone)})")
    if added:
        what = "input" if kind == "micrographs" else "target"
        said.append(f"{len(added)} {what}{'s' * (len(added) > 1)} "
                    f"{'is' if len(added) == 1 else 'are'} not in it ({_names(added)})")
    if not said and old != new:
        said.append(f"the same {kind} in another order")
    return said


def differences(old: dict, new: dict) -> list[str]:
    """What differs between the fingerprint ``old`` (a store's) and ``new`` (a run's), in words:
    the options, the micrographs and targets, the inputs changed since (size or modification
    time), the bands the shards were cut in. Only the parts ``new`` has are compared."""
    said = []
    if "config" in new:
        before, now = _flat(old.get("config")), _flat(new["config"])
        options = [f"{k} {before.get(k, 'unset')} in the store, {v} now"
                   for k, v in now.items() if before.get(k, "unset") != v]
        if options:
            said.append(f"options differ: {'; '.join(options)}")
    for key, kind in (("sources", "micrographs"), ("targets", "targets")):
        if key in new:
            said += _listed(old.get(key), new[key], kind)
    if "files" in new:
        files = old.get("files")
        if not isinstance(files, dict):
            said.append("it records no sizes and times of its inputs (an older cryostream)")
        else:
            for key, kind in (("sources", "micrographs"), ("targets", "targets")):
                before = dict(zip(map(str, old.get(key) or ()), files.get(key) or (),
                                  strict=False))
                since = [p for p, now in zip(new[key], new["files"][key], strict=True)
                         if p in before and before[p] != now]
                if since:
                    said.append(f"{len(since)} of its {kind} changed since ({_names(since)}: "
                                "other size or modification time)")
    if "band_heights" in new and old.get("band_heights") != new["band_heights"] and not said:
        said.append("its shards were cut in other bands (an older cryostream)")
    return said or ["its fingerprint differs (another version of cryostream?)"]
