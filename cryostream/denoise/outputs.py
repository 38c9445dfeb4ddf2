"""Where denoised micrographs go, checked before any computing: one output per input inside the
output folder, none replacing an input, finished ones found and skipped, each written whole or not
at all. The STAR file listing them (:data:`STAR_NAME`), written last: :mod:`cryostream.denoise.star_out`."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from cryostream.denoise.moved import changed_since, placed, same_files, same_input_place, same_model_place
from cryostream.errors import ConfigError, StoreError
from cryostream.io.paths import kept_folders, os_fix, record_aside, refuse_read_only
from cryostream.io.relion_jobs import warn_other_job

#: The micrographs STAR file ``denoise`` writes beside its outputs, for RELION.
STAR_NAME = "denoised_micrographs.star"

__all__ = ["STAR_NAME", "OutputPlan", "plan_outputs", "plan_denoise", "check_writable", "write_output",
           "same_record", "input_changed", "input_stamps", "output_identity", "output_record",
           "recipe_steps", "history_label", "made_by_denoise", "same_version", "read_record", "what_differs"]


@dataclasses.dataclass(frozen=True)
class OutputPlan:
    """One input's output: ``path`` (``OUT/NAME.mrc``, or ``OUT/NAME{suffix}.mrc``), its record
    ``sidecar`` (the same name, ``.json``), whether a finished output of the same run,
    config and input is already there, and whether outputs made otherwise may be replaced
    (``overwrite``: checked again as it is written, :func:`write_output`)."""

    source: str
    name: str
    path: Path
    sidecar: Path
    done: bool
    overwrite: bool = False


def read_record(sidecar: Path | dict | None) -> dict | None:
    """The record ``NAME.json`` holds (a dict given is taken as read); None where it is
    missing, unreadable or not a record."""
    if isinstance(sidecar, dict) or sidecar is None:
        return sidecar
    try:
        found = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def same_record(sidecar: Path | dict, record: dict, output: Path | None = None) -> bool:
    """Whether ``sidecar`` (:func:`read_record`) holds ``record`` (the version aside): a finished
    output of the same run, config and input, moved since or not (:mod:`~cryostream.denoise.moved`;
    ``output``: its path now)."""
    found = read_record(sidecar)
    if not (found is not None and _config(found) == _config(record)
            and same_model_place(found, record, output) and same_input_place(found, record, output)):
        return False
    return same_files(found, record)  # (stamps cut to whole seconds, the same content: taken)


def input_changed(sidecar: Path | dict, record: dict, output: Path | None = None) -> bool:
    """Whether ``sidecar`` (:func:`read_record`) is the record of an output of the same run,
    config and input whose input file has changed since (its size or time of modification;
    what came with it, such as a STAR file's defocus, may have changed too), or whose model has
    (a run trained further), or its ends (``moved.ends_differ``): the output is stale, made again
    (an input copied without its times, with the output, ``output``: its path now, is changed;
    one whose times were cut to whole seconds, its content the same, is not: ``moved.same_files``)."""
    found = read_record(sidecar)  # (what came with the input, ``given``, is not compared)
    return (found is not None and _config(found) == _config(record) and same_model_place(
                found, record, output) and same_input_place(found, record, output, given=False)
            and not same_files(found, record))


def _config(record: dict):
    """A record's config, as one written before the binned pass (without it) and the precision
    (computed as its ``computed`` says, else in float32) existed reads."""
    config = record.get("config")
    if not isinstance(config, dict):
        return config
    computed = record.get("computed")
    bf16 = isinstance(computed, dict) and computed.get("dtype") == "bfloat16"
    return {"binned_pass": False, "precision": "bf16" if bf16 else "fp32", **config}


def same_version(sidecar: Path | dict) -> bool:
    """Whether the record ``sidecar`` (:func:`read_record`) was written by this version."""
    from cryostream._version import __version__

    found = read_record(sidecar)
    return found is not None and found.get("cryostream_version") == __version__


def _whole(path: Path) -> bool:
    """Whether an output's MRC file is readable and as long as its header promises."""
    from cryostream.errors import InvalidMicrographError
    from cryostream.io.mrc import read_header

    try:
        read_header(path)
    except InvalidMicrographError:
        return False
    return True


def what_differs(found: dict | None, record: dict) -> str:
    """What made an earlier output other than this call's, in a few words for the refusal:
    `` (made with ensemble off, not on)``; nothing without its record."""
    if found is None:
        return ""
    said = [f"{what} {found.get(key)}" for key, what, alike in (  # (a project moved: alike)
        ("run", "the model", same_model_place(found, record)),
        ("input", "the input", same_input_place(found, record, given=False))) if not alike]
    old, new = _config(found), _config(record)
    if isinstance(old, dict) and isinstance(new, dict):
        said += [_difference(k, old.get(k), new.get(k)) for k in sorted({*old, *new})
                 if old.get(k) != new.get(k)][:4]
    from cryostream.denoise.given import given_differs  # (a STAR file's pixel size, defocus…)
    said += given_differs(found.get("given"), record.get("given"))
    return f" (made with {'; '.join(said)})" if said else ""


def _difference(key: str, old, new) -> str:
    """An option's value before and now: on or off, the default where cryostream chose; else reprs."""
    if not {type(old), type(new)} & {bool, type(None)}:
        return f"{key}={old!r}, not {new!r}"
    on, now = ("the default" if v is None else ("off", "on")[v] if isinstance(v, bool) else v
               for v in (old, new))
    return f"the default {key}, not {now}" if old is None else f"{key} {on}, not {now}"


def plan_outputs(sources: list[str], output, records: list[dict], *,
                 overwrite: bool, suffix: str = "",
                 names: list[str] | None = None) -> list[OutputPlan]:
    """The output of each input in the folder ``output``, or a :class:`ConfigError` before
    anything is computed or written. Each output is named after its input's file:
    ``NAME{suffix}.mrc`` (``names``: the ``NAME`` of each, e.g. a half-sum's micrograph name).

    Refused: two inputs with one file name (their outputs would collide), an output that is
    an input (``suffix`` named as the way to write beside it), a ``NAME.mrc`` already there
    that is not a finished output of the same run, config and input (unless ``overwrite``;
    saying what differs), one that ``denoise`` did not make (neither a record nor a label says
    so: never replaced), and a folder that cannot be written. A ``NAME.mrc`` written by
    ``denoise`` without its ``NAME.json`` (interrupted between the two), or one damaged since
    (shorter than its header promises), is made again. With ``overwrite``, a finished output of
    the same run, config and input is kept where this cryostream version made it (a new one
    would be the same), so that an interrupted ``--overwrite`` run resumes when run again; one
    of another version is made again.
    """
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; denoised micrographs go into a "
                          "folder: give a new name, -o DIR (Python: output=DIR)")
    names = list(names) if names is not None else [Path(s).stem for s in sources]
    seen: dict[str, str] = {}
    for source, name in zip(sources, names, strict=True):
        if name in seen:
            raise ConfigError(f"{seen[name]} and {source} share the name {name!r}: their outputs "
                              f"would both be {out / (name + suffix + '.mrc')}; denoise them in "
                              "two calls, each into its own folder: -o DIR (Python: output=DIR)")
        seen[name] = source
    inputs = {Path(s).resolve() for s in sources}
    plans = []
    for source, name, record in zip(sources, names, records, strict=True):
        path = out / f"{name}{suffix}.mrc"
        if path.resolve() in inputs:  # (beside it only under another name: --suffix)
            raise ConfigError(f"{out}: the output {path} would replace the input micrograph itself; "
                              "choose another output folder: -o DIR (Python: output=DIR)" + (
                                  ", or write beside the inputs with a suffix: --suffix _denoised (Python: "
                                  "DenoiseConfig(output_suffix='_denoised'))") * (not suffix))
        sidecar = path.with_suffix(".json")
        found = read_record(sidecar) if path.is_file() else None  # read once
        done = found is not None and same_record(found, record, path)
        damaged = done and not _whole(path)
        unfinished = path.is_file() and not sidecar.exists() and made_by_denoise(path)
        stale = found is not None and input_changed(found, record, path)
        if stale or damaged:
            logging.getLogger("cryostream").log(
                logging.WARNING if damaged else logging.INFO,
                "%s: %s; denoising it again", source,
                f"its output {path} is damaged (shorter than its header promises)" if damaged
                else f"the input or the model changed since {path} was made "
                f"({changed_since(found, record)})")
        done = done and not damaged and (not overwrite or same_version(found))
        if path.exists() and found is None and not made_by_denoise(path):
            raise ConfigError(f"{path} exists and cryostream denoise did not make it (no "
                              f"{sidecar.name} record, no cryostream label): it is never "
                              "replaced, --overwrite or not; move it away, or choose another "
                              "output folder: -o DIR (Python: output=DIR)")
        if path.exists() and not done and not unfinished and not stale and not damaged \
                and not overwrite:
            raise ConfigError(f"{path} exists and is not this run's output for {source} with "
                              f"these options{what_differs(found, record)}; pass --overwrite "
                              "(Python: overwrite=True) to replace it, or choose another output "
                              "folder: -o DIR (Python: output=DIR)")
        plans.append(OutputPlan(source, name, path, sidecar, done, overwrite))
    return plans


def plan_denoise(run, config, micrographs: list, input_star, output: Path, *,
                 overwrite: bool) -> tuple[list[OutputPlan], Path | None]:
    """The output plans of :func:`~cryostream.denoise.denoise` (:func:`plan_outputs`) and the
    folder the call makes (None if it was there: :func:`check_writable` makes it, after these
    checks), checked before any computing; nothing is written here.

    ``micrographs`` are :class:`~cryostream.denoise.sources.InputMicrograph`; ``input_star``
    the input STAR file (:class:`~cryostream.io.star.MicrographStar`) or None: the output's
    :data:`STAR_NAME` may not replace it.
    """
    sources = [m.source for m in micrographs]
    identities = [output_identity(run, m.config(config), m.source, m.given()) for m in micrographs]
    # a pair of half-sums is one micrograph: its output is named after the micrograph
    after = [m.named_after() for m in micrographs]
    names = kept_folders([file for file, _ in after], [name for _, name in after])
    plans = plan_outputs(sources, output, identities, overwrite=overwrite,
                         suffix=config.output_suffix, names=names)
    odd_halves = {Path(m.odd).resolve() for m in micrographs if m.odd is not None}
    for plan, m in zip(plans, micrographs, strict=True):
        # a pair's NAME.mrc may be the motion correction's full sum beside its halves (or an
        # odd half, in folders): never replaced, --overwrite or not, unless denoise wrote it
        if m.odd is not None and plan.path.exists() and (
                plan.path.resolve() in odd_halves or not made_by_denoise(plan.path)):
            raise ConfigError(f"{output}: the output {plan.path} of the pair {m.source} and "
                              f"{m.odd} would replace a file cryostream did not write (the full "
                              "sum?); choose another output folder: -o DIR (Python: output=DIR)")
    star = output / STAR_NAME
    if input_star is not None and star.resolve() == input_star.path.resolve():
        raise ConfigError(f"{output}: the output's {STAR_NAME} would replace the input STAR "
                          "file; choose another output folder: -o DIR (Python: output=DIR)")
    if overwrite:  # outputs made read-only are kept: said before any work; the STAR file too
        # where an output it lists is replaced (with none, as without --overwrite: resumed)
        remade = [f for p in plans if not p.done for f in (p.path, p.sidecar)]
        refuse_read_only([*remade, *[star] * any(os.path.lexists(f) for f in remade)],
                         "choose another output folder: -o DIR (Python: output=DIR)")
    warn_other_job(output, (STAR_NAME,), 3, made_by_denoise)  # another RELION job's: said
    made = None if output.exists() else output
    finished = sum(p.done for p in plans)
    if finished:
        logging.getLogger("cryostream").info(
            "%d of %d micrographs already denoised in %s with this run and these options; "
            "kept (delete them to make them again)", finished, len(plans), output)
    return plans, made


def made_by_denoise(path: Path) -> bool:
    """Whether an MRC file's labels say ``cryostream denoise`` wrote it: without its record, it
    is an output interrupted between its image and its record, safe to make again."""
    from cryostream.io.mrc import labelled_by

    return labelled_by(path, "cryostream denoise")


def check_writable(folder: Path) -> None:
    """Make ``folder`` and prove a file can be written there, or a :class:`StoreError`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".cryostream-write-test"):
            pass
    except OSError as exc:
        raise StoreError(f"{folder}: cannot write there ({exc.strerror or exc}); choose an "
                         "output folder you can write to: -o DIR (Python: output=DIR)") from None


def write_output(plan: OutputPlan, estimate: np.ndarray, pixel_size_angstrom: float,
                 label: str, record: dict, *, dtype: str = "float32", like=None) -> str:
    """Write ``NAME.mrc`` and its record ``NAME.json`` (``record`` and where the output lies,
    :func:`~cryostream.denoise.moved.placed`), through temporary names, the record last: a
    finished output is the pair, held while written (:func:`~cryostream.denoise.star_keep.held_output`):
    an output another call made there meanwhile with other options is kept unless ``overwrite``.

    ``dtype`` is the pixel type written (float32 or float16); ``like`` the input's
    :class:`~cryostream.io.mrc.HeaderCopy`, whose origin, voxel size, labels (plus ``label``)
    and, when it holds one, extended header the output keeps
    (:func:`~cryostream.io.mrc.write_micrograph`).

    Nothing partial survives an error (a full disk included): the temporary files are removed,
    an earlier output of the name stays as it was, and a :class:`StoreError` names the file.
    Non-finite pixels are refused before anything is written.
    """
    from cryostream.io.mrc import write_micrograph

    if not np.isfinite(estimate).all():
        raise StoreError(f"{plan.source}: denoising gave non-finite pixels, so nothing was written; if "
                         "others denoise well, look at this one (pixels far beyond the rest?), else "
                         "the run's checkpoint may be damaged (train it again, or -m another)")
    largest = float(np.abs(estimate).max()) if estimate.size else 0.0
    if np.dtype(dtype) == np.float16 and largest > float(np.finfo(np.float16).max):
        raise ConfigError(f"{plan.source}: its denoised pixels reach {largest:.4g}, beyond "
                          f"float16's {float(np.finfo(np.float16).max):g}, so nothing was "
                          "written; drop --dtype float16 (Python: output_dtype='float32' in "
                          "the DenoiseConfig): float32 holds them")
    from cryostream.denoise.star_keep import held_output
    from cryostream.io.paths import drop_partial, partial_path

    partial = partial_path(plan.sidecar)
    with held_output(plan, record):  # no other call's output made meanwhile is written over
        _unlist(plan)
        try:
            plan.path.parent.mkdir(parents=True, exist_ok=True)  # a name with its folder: GridA/x
            partial.write_text(json.dumps(placed(record, plan), indent=1))  # where it lies
            with record_aside(plan.sidecar, plan.path):  # never the new MRC with the old record
                write_micrograph(plan.path, estimate, pixel_size_angstrom, history=label,
                                 overwrite=True, dtype=dtype, like=like)
                os.replace(partial, plan.sidecar)
        except OSError as exc:
            drop_partial(plan.path, partial, partial_path(plan.path))  # (a folder there: named)
            raise StoreError(f"{plan.path}: could not be written ({exc.strerror or exc}); "
                             + os_fix(exc, "choose another output folder")
                             + " (finished micrographs are kept)") from None
    return str(plan.path)


def _unlist(plan: OutputPlan) -> None:
    """Before an output is made again, set the folder's :data:`STAR_NAME`, which may list it as
    it was, aside (:func:`~cryostream.denoise.star_keep.set_aside`): the run writes a new one
    last, keeping its other rows, so no STAR file lists outputs of two recipes if it stops."""
    if plan.path.exists():
        from cryostream.denoise.star_keep import set_aside

        folder = plan.path.parents[plan.name.count("/")]  # GridA/x.mrc: the folder above GridA
        set_aside(folder, plan.path.relative_to(folder).as_posix())


def output_identity(run, config, source: str, given: dict | None = None,
                    input_files: list | None = None, model_files: dict | None = None) -> dict:
    """What makes two outputs the same: the run, the input, the config (JSON values),
    ``given``: what came from elsewhere than the input's file and the config (a STAR file's
    pixel size and defocus, ``--pixel-size``, the odd half), left out when there is none, and
    ``input_files``: the size and time of modification of the input (and its odd half), and
    ``model_files``: the model's state (:func:`~cryostream.denoise.network.model_state`; the
    one on disk now when not given)."""
    from cryostream.config import to_dict
    from cryostream.denoise.network import model_state

    identity = {"run": str(run), "input": str(source), "config": to_dict(config)}
    if given:
        identity["given"] = given
    identity["input_files"] = input_stamps(source, given) if input_files is None else input_files
    identity["model_files"] = model_state(run) if model_files is None else model_files
    return identity


def input_stamps(source: str, given: dict | None = None) -> list[dict]:
    """The size and time of modification of an input and its odd half, for
    :func:`output_identity`: taken before its pixels are read, so an input remade while it
    was being denoised shows as changed on the next run."""
    files = [str(source)] + ([str(given["odd"])] if given and given.get("odd") else [])
    return [_stamp(f) for f in files]


def _stamp(path: str) -> dict:
    """A file's size and time of modification (ns), which tell an input remade (motion correction again)."""
    try:
        st = Path(path).stat()
    except OSError:
        return {"bytes": None, "modified_ns": None}
    return {"bytes": st.st_size, "modified_ns": st.st_mtime_ns}


def output_record(run, config, source: str, found: dict, given: dict | None = None,
                  computed: dict | None = None, input_files: list | None = None,
                  model_files: dict | None = None) -> dict:
    """What an output says of how it was made: the run, the config, the input (and ``given``,
    :func:`output_identity`), the cryostream version, what the steps found on the micrograph
    and ``computed``: where the network ran and in what precision (``NAME.json`` beside
    ``NAME.mrc``). ``model_files``: the state of the model that made it (the network's, taken
    when it was loaded)."""
    from cryostream._version import __version__

    return {"kind": "DenoiseOutput", "cryostream_version": __version__,
            **output_identity(run, config, source, given, input_files, model_files),
            "found": found,
            **({"computed": computed} if computed else {})}


def recipe_steps(config) -> list[str]:
    """The steps a resolved :class:`~cryostream.config.DenoiseConfig` applies, in order, by
    the name of the option that turns each on (the names ``NAME.json`` records under
    ``config``): ``ensemble`` first, ``n2n_correction`` (which also keeps the input's mean),
    ``n2n_clamp``, ``ctf_gain`` or ``wiener_gain`` (the radial gain), ``learned_weights``
    (with ``binned_pass``), and ``calibrate=N`` last."""
    names = ["ensemble"] * bool(config.ensemble)
    for step in config.pipeline().steps:
        name = _OPTION_OF_STEP.get(step.name, step.name)
        if name == "wiener_gain" and getattr(step, "ctf", False):
            name = "ctf_gain"
        if name is not None:
            names.append(name)
        if getattr(step, "learned", None):  # the learned weights, part of the gain
            names.append("learned_weights")
            names += ["binned_pass"] * bool(config.binned_pass)
    return names + [f"calibrate={config.calibrate}"] * bool(config.calibrate)


#: Each step's option (:mod:`cryostream.denoise.steps` names → DenoiseConfig fields); None for
#: a step that is part of another option's.
_OPTION_OF_STEP = {"n2n_correction": "n2n_correction", "ring_clamp": "n2n_clamp",
                   "keep_input_mean": None, "wiener_gain": "wiener_gain"}


def history_label(run: str, config, found: dict | None = None) -> str:
    """The MRC history label: the run's name and the steps applied (:func:`recipe_steps`).
    With ``found`` (what the steps found on the micrograph), a CTF-shaped gain whose check
    failed is named as what was applied instead: ``wiener_gain``, the radial gain, or
    ``wiener_gain_below_20A`` (the network's own response above 20 Å)."""
    steps = recipe_steps(config)
    if found and found.get("ctf_used") is False and "ctf_gain" in steps:
        steps[steps.index("ctf_gain")] = ("wiener_gain_below_20A"
                                          if found.get("fallback") == "network_above_20A"
                                          else "wiener_gain")
    from cryostream.denoise.network import model_name

    return f"cryostream denoise {model_name(run)}" + (f" {'+'.join(steps)}" if steps else "")

