"""A fit's run folder and work folder: whether a call continues the fit in them or starts
afresh (``fit.json``, the request), and the store kept between calls (``store.json``, its
fingerprint)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

from cryostream.config import PrepareConfig
from cryostream.errors import ConfigError, InvalidMicrographError, StoreError, unnormalisable_fix
from cryostream.io.paths import file_changes, read_only, refuse_read_only, same_paths, write_whole
from cryostream.io.pixel_sizes import PixelSizeWarning
from cryostream.locks import LOCK_NAME
from cryostream.prepare import prepare as prepare_store
from cryostream.prepare_output import fingerprint
from cryostream.prepare_result import differences
from cryostream.progress import PrepareProgress
from cryostream.script_guard import rerun_refused

__all__ = ["FIT_RECORD", "STORE_NAME", "STORE_RECORD", "RUN_FILES", "check_run", "run_patch",
           "made_before", "clear_run", "write_json", "record_fit", "record_steps", "logged_loss",
           "make_store", "store_kept", "say_fit_kept", "said_when_stopped"]

#: What a fit was asked for, in its run folder: a different request is refused.
FIT_RECORD = "fit.json"
#: The store's file name in the work folder.
STORE_NAME = "data.h5"
#: In the work folder: the fingerprint of the complete store (its inputs, their sizes and times).
STORE_RECORD = "store.json"
#: What a run folder holds that ``overwrite`` replaces (other files are left alone).
RUN_FILES = ("config.json", "metrics.jsonl", "loss.png", "checkpoints", FIT_RECORD)

_log = logging.getLogger("cryostream")


def check_run(run: Path, request: dict, overwrite: bool) -> bool:
    """Whether ``run`` starts afresh (True) or continues the same fit (False); refuses a run
    folder of another request unless ``overwrite``, naming what differs."""
    if run.exists() and not run.is_dir():
        raise StoreError(f"{run}: is a file; give a folder for the run (-o)")
    # the lock, and an earlier version's (.fit.lock), are no run's files
    names = [p.name for p in run.iterdir() if p.name not in (LOCK_NAME, ".fit.lock")
             and not (p.name.startswith(".") and p.name.endswith(".partial"))] \
        if run.is_dir() else []  # (nor a file a kill left half-written: never read)
    if not names:
        return True
    record = run / FIT_RECORD
    if not record.is_file():
        if overwrite or names == ["work"]:
            return True  # (a first fit stopped while its store was made: start it again)
        raise StoreError(f"{run}: holds files but no {FIT_RECORD} (not a fit's run folder); "
                         "choose another folder (-o), or pass overwrite=True (--overwrite) to "
                         "replace its run")
    try:
        old = json.loads(record.read_text())
    except (OSError, ValueError) as exc:
        if overwrite:
            return True
        raise StoreError(f"{record}: damaged ({exc}); pass overwrite=True (--overwrite) to "
                         "start again") from None
    changes = _differences(old, request)
    before = old.get("prepare") if isinstance(old, dict) else None
    was, now = before.get("patch_size") if isinstance(before, dict) else None, \
        request["prepare"]["patch_size"]
    if changes == [f"--patch: {was} → {now}"] and not overwrite:  # the patch alone: how to go on
        raise ConfigError(f"{run}: holds a fit made with patches of {was} px (changed: "
                          f"{changes[0]}); to continue it, give --patch {was} or leave --patch out "
                          f"(Python: patch_size={was} or None); to start again there with patches "
                          f"of {now}, pass overwrite=True (--overwrite) (the run in it is "
                          "replaced); or choose another folder (-o) for this one")
    if changes and not overwrite:
        raise ConfigError(f"{run}: holds a fit of other inputs or options (changed: "
                          f"{'; '.join(changes)}); to continue that fit give it the inputs and "
                          "options it was made with, choose another folder (-o) for this one, "
                          "or pass overwrite=True (--overwrite) to train this one there from "
                          "the start (the run in it is replaced)")
    return bool(changes) or overwrite


def _differences(old, new: dict) -> list[str]:
    """What ``new`` changes of the fit ``old`` (a longer or shorter training may continue)."""
    if not isinstance(old, dict):
        return ["the record is not a JSON object"]
    changes = [f"inputs: {file_changes(old.get('inputs'), new['inputs'])}"] * (
        not same_paths(old.get("inputs"), new["inputs"]))  # .. or a link: the same files
    changes += [f"--work: {_folder(old.get('store'))} → {_folder(new['store'])}"] * (
        not same_paths(old.get("store"), new["store"]))  # the store's folder, as it was given
    changes += _store_changes(old.get("prepare"), new["prepare"])
    before = old.get("train") if isinstance(old.get("train"), dict) else {}
    changes += [f"--from: {before.get(k) or 'scratch'} → {v or 'scratch'}" if k == "init" else
                f"{k}: {before.get(k)!r} → {v!r}"  # the start first: the rest follows from it
                for k, v in sorted(new["train"].items(), key=lambda kv: kv[0] != "init")
                if k not in ("steps", "warmup_steps") and before.get(k) != v]
    # the warm-up asked for: the share of it a budget in steps gives follows the steps
    asked = [_asked_warmup(old, before), _asked_warmup(new, new["train"])]
    return changes + [f"warmup_steps: {asked[0]!r} → {asked[1]!r}"] * (asked[0] != asked[1])


def _asked_warmup(request: dict, train: dict):
    """The warm-up a fit's training asked for, before a budget in steps cut it to its share
    (``fit.json``'s ``schedule``; an earlier version's: the one it trained with)."""
    schedule = request.get("schedule") if isinstance(request.get("schedule"), dict) else {}
    return schedule.get("training_warmup_steps", train.get("warmup_steps"))


def _folder(store) -> str:
    """The work folder a fit's store lies in (``fit.json``'s ``store``), or ``?``."""
    return str(Path(store).parent) if isinstance(store, str) and store else "?"


def _store_changes(old, new: dict) -> list[str]:
    """What the store options ``new`` change of ``old`` (``fit.json``'s ``prepare``): the patch
    by its option, ``--patch`` (with the stride that follows it, unsaid), the rest by name."""
    if old == new:
        return []
    if not isinstance(old, dict):
        return ["prepare"]
    said = [f"--patch: {old.get('patch_size')} → {new['patch_size']}"] * (
        old.get("patch_size") != new["patch_size"])
    ratio = [old.get("stride"), old.get("patch_size")]
    follows = bool(said) and all(isinstance(v, int) for v in ratio) and \
        ratio[0] * new["patch_size"] == new["stride"] * ratio[1]  # the same ratio: the recipe's
    rest = [k for k, v in new.items() if old.get(k) != v and k != "patch_size"
            and not (k == "stride" and follows)]
    return said + [f"prepare: {', '.join(rest)}"] * bool(rest)


def run_patch(run: Path, shape: tuple[int, int], multiple: int) -> int | None:
    """The patch side of the fit in ``run`` (its ``fit.json``), which a fit continued there
    keeps when no ``--patch`` is given; None where there is none, or where micrographs of
    ``shape`` or a network of patches of ``multiple`` px could not take it (a fit of other
    inputs or options: refused by :func:`check_run`, naming them)."""
    try:
        patch = json.loads((run / FIT_RECORD).read_text())["prepare"]["patch_size"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    fits = isinstance(patch, int) and not isinstance(patch, bool) and 0 < patch <= min(shape)
    return patch if fits and patch % multiple == 0 else None


def made_before(run: Path, recipe) -> bool:
    """Whether ``run`` holds a fit of ``recipe`` (a :class:`~cryostream.config.TrainConfig`),
    its steps aside, made by a version that did not record the start (before fits started
    from the general model by default)."""
    try:
        request = json.loads((run / FIT_RECORD).read_text())
        old = request["train"] if "start" not in request else None
    except (OSError, ValueError, TypeError, KeyError):
        return False
    from cryostream.config import to_dict

    want = {k: v for k, v in to_dict(recipe).items() if k != "steps"}
    return isinstance(old, dict) and {k: v for k, v in old.items() if k != "steps"} == want


def clear_run(run: Path) -> None:
    """Remove a run's own files (``overwrite``); anything else in the folder stays."""
    for name in RUN_FILES:
        path = run / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def write_json(path: Path, value: dict) -> None:
    """``value`` as ``path``, whole or not at all (:func:`~cryostream.io.paths.write_whole`)."""
    write_whole(path, json.dumps(value, indent=2, sort_keys=True))


def record_fit(run: Path, request: dict, rerun: str | None = None, found: bool = False) -> None:
    """Write ``request`` as the run's :data:`FIT_RECORD`, unless it holds it already (a fit
    found again: the record is left as it is, one made read-only too); in a process pool's run
    of the script ``rerun`` (:func:`~cryostream.script_guard.refuse_script_rerun`), which
    writes nothing, one that does not hold it is :func:`~cryostream.script_guard.rerun_refused`.
    A fit ``found`` with all its steps (nothing trained in this call) keeps a record that
    differs only in the cryostream version that made it, and one made read-only (``chmod
    a-w``), whatever this call would change in it, saying so in one line; a record it cannot
    write is said the same way: the call, its work done, goes on."""
    record = run / FIT_RECORD
    try:
        old = json.loads(record.read_text())
    except (OSError, ValueError):
        old = None
    new = json.loads(json.dumps(request))
    if old == new:
        return
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)) \
        if found and isinstance(old, dict) else []
    if changed == ["cryostream_version"]:  # the fit as that version made it: its own record
        _log.info("%s: kept as it is (made by cryostream %s; this call trained nothing)", record,
                  old.get("cryostream_version"))
        return
    if changed and read_only([record]):
        _log.info("%s: read-only (chmod a-w): left as it is, though this call would write its "
                  "%s anew (the fit has all its steps: nothing trained)", record,
                  ", ".join(changed))
        return
    if rerun is not None:
        raise rerun_refused(rerun, "fit")
    try:
        write_json(record, request)
    except StoreError as exc:
        if not changed:
            raise
        _log.warning("%s; left as it is (the fit has all its steps: nothing trained)", exc)


def record_steps(run: Path, steps: int, rerun: str | None = None) -> None:
    """The run's record says it was trained for ``steps`` (a run stopped short of its own
    target, kept at a smaller budget, is a run of the steps it has); in a process pool's run
    of the script ``rerun`` only where it says so already (:func:`record_fit`). A record made
    read-only (``chmod a-w``) is left as it is, as :func:`record_fit` leaves ``fit.json``,
    saying so in one line; one it cannot write is said in a warning: the call, which trains
    nothing, goes on."""
    from cryostream.runs import RECORD_FILE, load_record, save_record

    record = load_record(run)
    if record.train.steps == steps:
        return
    path, was = run / RECORD_FILE, record.train.steps
    if read_only([path]):
        _log.info("%s: read-only (chmod a-w): left as it is, saying %d steps, though this call "
                  "would write the %d the run has (nothing trained)", path, was, steps)
        return
    if rerun is not None:
        raise rerun_refused(rerun, "fit")
    try:
        save_record(run, dataclasses.replace(record, train=dataclasses.replace(record.train,
                                                                               steps=steps)))
    except StoreError as exc:
        _log.warning("%s; left as it is, saying %d steps for the %d the run has (nothing "
                     "trained)", exc, was, steps)


def logged_loss(run: Path) -> float:
    """The last training loss a run logged (a run trained before this call), NaN if none."""
    from cryostream.runs import logged_rows

    return next((float(r["loss"]) for r in reversed(logged_rows(run / "metrics.jsonl"))
                 if "loss" in r), math.nan)


def make_store(paths, store: Path, config: PrepareConfig, headers, overwrite: bool,
               permissive: bool, *, rerun: str | None = None) -> list[dict]:
    """Prepare the store, or keep it when it is complete and made from these very inputs (its
    record, :data:`STORE_RECORD`, says so; without a record, a fit stopped before it wrote it,
    the store itself: :func:`_whole`); the micrographs ``permissive`` left out for their pixels
    (NaN, blank) with why, as the store records them. In a process pool's run of the script
    ``rerun`` (:func:`record_fit`) only a store kept by its record is taken, nothing written
    or locked."""
    stamp = json.loads(json.dumps(fingerprint(config, headers, None)))
    record = store.parent / STORE_RECORD
    old = None
    if store.is_file() and record.is_file():
        try:
            old = json.loads(record.read_text())
        except (OSError, ValueError):
            pass
        if old == stamp:
            _log.info("the store %s is complete and its micrographs unchanged: kept", store)
            return _skipped(store)
    if rerun is not None:  # (recorded, prepared again or locked: written)
        raise rerun_refused(rerun, "fit")
    if old is None and store.is_file() and _whole(store, stamp):
        _log.info("the store %s is complete and made from these micrographs (the call that made "
                  "it stopped before it recorded so): kept", store)
        write_json(record, stamp)
        return _skipped(store)
    if isinstance(old, dict) and not overwrite and any(
            old.get(k) != stamp[k] for k in ("sources", "config")):  # not the same micrographs
        raise StoreError(f"{store.parent}: holds the store of other micrographs or options "
                         "(another fit's --work?); give this fit its own work folder (--work), "
                         "or pass --overwrite to prepare it again there")
    if store.exists():
        _log.info("the store %s %s: preparing it again", store,
                  f"differs from this fit's ({'; '.join(differences(old, stamp))})"
                  if isinstance(old, dict) else "is not complete, or was made from other "
                  "micrographs or options")
    from cryostream.store import shard_folder

    replace = overwrite or store.exists()  # prepared again whole (else its shards resumed)
    if replace:  # a store made read-only is kept: said before any work, in the fit's words
        refuse_read_only([store, shard_folder(store), record],
                         "give this fit another work folder (--work)")
    store.parent.mkdir(parents=True, exist_ok=True)
    record.unlink(missing_ok=True)
    try:
        with PrepareProgress(len(paths)), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "the micrographs' headers give", PixelSizeWarning)  # fit
            # said it, in its own words (a header of two pixel sizes is prepare's to say)
            prepare_store(paths, store, config, overwrite=replace,
                          permissive=permissive, progress=False, log=_log.info)
    except KeyboardInterrupt as stop:  # prepare's words are those of a script's prepare call:
        stop.args = ()                   # the fit says its own (said_when_stopped)
        raise
    except InvalidMicrographError as exc:  # fit takes no --percentile: prepare's fix, less it
        if exc.fix != unnormalisable_fix():
            raise
        raise InvalidMicrographError(exc.path, exc.problem, unnormalisable_fix(None)) from None
    write_json(record, stamp)
    return _skipped(store)


def _whole(store: Path, stamp: dict) -> bool:
    """Whether ``store``, which has no record, is complete (its master file and every shard)
    and prepared from the inputs and options of ``stamp`` (its fingerprint in the shard
    folder), as ``prepare`` tells a finished store it keeps
    (:func:`~cryostream.prepare_result.keep_finished`): what a fit stopped after its store was
    made and before it recorded it leaves. A replacement a kill stopped is put right first."""
    from cryostream.locks import store_lock
    from cryostream.prepare_output import settle_replacement
    from cryostream.prepare_result import keep_finished

    with store_lock(store, command="fit", fix="give this fit another work folder (--work)"):
        settle_replacement(store)
        try:
            keep_finished(store, stamp, halves=False, start=0.0)
        except (StoreError, KeyError):  # (a master of no store's layout: prepared again)
            return False
    return True


def store_kept(work: Path) -> tuple[str, bool] | None:
    """What of a fit's store the work folder ``work`` keeps, in words, and whether it is whole:
    the store with its record (:data:`STORE_RECORD`, written once it is complete), else the
    finished shards of one being made (in its shard folder, or in the staging folder of one
    made again), which the next call goes on from; None where there is neither."""
    from cryostream.prepare_output import staging_folder
    from cryostream.store import shard_folder

    store = work / STORE_NAME
    if (work / STORE_RECORD).is_file() and store.is_file():
        return f"the store in {work}", True
    if any(next((folder / shard_folder(store).name).glob("*.h5"), None)
           for folder in (work, staging_folder(store))):
        return f"the store's finished shards in {work}", False
    return None


def say_fit_kept(stop: KeyboardInterrupt, run: Path, work: Path, steps: int | None,
                 overwrite: bool, *, training: bool = True) -> None:
    """Give ``stop``, the interrupt (Ctrl-C) or :class:`~cryostream.interrupts.Terminated`
    (SIGTERM) that ended a fit, the fit's words (:func:`~cryostream.interrupts.say_kept`): the
    last checkpoint kept in ``run`` (of ``steps``, where given) and what of the store is kept
    in ``work`` (:func:`store_kept`), and how the same call goes on from them. ``training``:
    whether the fit had begun its training (once its step is kept); before it, with
    ``overwrite``, the run's checkpoints are an earlier fit's, which the call replaces."""
    from cryostream.interrupts import say_kept
    from cryostream.runs import CHECKPOINTS, checkpoint_steps

    kept = max(checkpoint_steps(run), default=None) if training or not overwrite else None
    store, whole = store_kept(work) or (None, False)
    again = "call fit again with the same arguments"
    if kept is None and store is None:
        say_kept(stop, "no checkpoint or shard of the store was written", f"{again} to start",
                 over=True)
        return
    if kept is None:
        say_kept(stop, f"no checkpoint was written; {store} {'is' if whole else 'are'} kept",
                 f"{again} to {'train on it' if whole else 'go on from them'}", over=True)
        return
    of = f" of {steps}" if steps else ""
    say_kept(stop, f"the checkpoint of step {kept}{of} is kept in "
             f"{run / CHECKPOINTS / str(kept)}" + (f" and {store}" if store else ""),
             f"{again} but overwrite=False to continue from that step (with overwrite=True it "
             "trains from the start again)" if overwrite else
             f"{again} to continue from that step", over=True)


@contextlib.contextmanager
def said_when_stopped(run: Path, work: Path, overwrite: bool) -> Iterator[None]:
    """While a fit runs: SIGTERM raises :class:`~cryostream.interrupts.Terminated` (a script's
    fit: :func:`~cryostream.interrupts.sigterm_raised`; the training holds it back itself), and
    an interrupt that stops the fit before its training, which says nothing of itself, is given
    the fit's words (:func:`say_fit_kept`: what is kept, and that the same call goes on)."""
    from cryostream.interrupts import sigterm_raised

    with sigterm_raised():
        try:
            yield
        except KeyboardInterrupt as stop:
            if not stop.args:  # (the training's interrupt has its words: fit's)
                say_fit_kept(stop, run, work, None, overwrite, training=False)
            raise


def _skipped(store: Path) -> list[dict]:
    import h5py

    with h5py.File(store, "r") as f:
        return json.loads(f.attrs.get("skipped", "[]"))
