"""A trained network as one small file: its parameters and how it was made, without orbax.

A run folder (:mod:`cryostream.runs`) holds orbax checkpoints with the optimizer state; what a
user needs to denoise is the network's parameters and its record. :func:`export_params` writes
them as one compressed NumPy archive (``.npz``):

- one float32 array per parameter, named by its path in the model (``encoder/0/kernel``);
- ``__meta__``: a JSON string with the format's name and version, the cryostream version, the
  :class:`~cryostream.models.ModelConfig`, the run's :class:`~cryostream.runs.RunRecord`
  (``config.json``'s layout) and any extra JSON values (``metadata``: how it was trained and
  scored).

:func:`load_exported` reads it back with NumPy and Flax alone (no pickle, no orbax, no
network). The ``unet`` preset's 1.1 M parameters take ≈4 MB.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from cryostream._version import __version__
from cryostream.config import from_dict, to_dict
from cryostream.errors import ConfigError, CryostreamError, StoreError

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "export_params", "load_exported", "export_metadata",
           "param_name"]

#: The format name written in every exported file.
EXPORT_FORMAT = "cryostream-params"
#: The format's version; files of a later version are refused with a message to upgrade.
EXPORT_VERSION = 1
_META = "__meta__"


def param_name(path) -> str:
    """A parameter's name from its pytree path: the dict keys and list indices, ``/``-joined."""
    parts = []
    for key in path:
        if hasattr(key, "key"):  # DictKey
            parts.append(str(key.key))
        elif hasattr(key, "idx"):  # SequenceKey
            parts.append(str(key.idx))
        # GetAttrKey ('value' of an nnx Variable) adds nothing
    return "/".join(parts)


def _named_leaves(params) -> tuple[list[tuple[str, Any]], Any]:
    import jax

    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    return [(param_name(path), leaf) for path, leaf in leaves], treedef


def export_params(model, record, path: str | os.PathLike, *,
                  metadata: dict[str, Any] | None = None) -> Path:
    """Write a network's parameters and record to one compressed ``.npz`` file.

    Parameters
    ----------
    model : cryostream.models.UNet
        The trained network (e.g. from :func:`cryostream.runs.load_model`).
    record : cryostream.runs.RunRecord or None
        How it was trained; its ``model_config`` must be the network's. ``None`` for a network
        without a run (its config alone is written).
    path : path-like
        The file to write (``.npz`` is the usual suffix; none is added). It is written under a
        temporary name and renamed, so a failed export leaves no file that looks complete.
    metadata : dict, optional
        JSON values stored with it (how it was trained, its scores).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ConfigError
        If the record describes another network, or ``metadata`` is not JSON.
    """
    from flax import nnx

    if record is not None and record.model_config != model.config:
        raise ConfigError(f"the record's model {record.model_config} is not the network's "
                          f"{model.config}; export the network with its own run's record")
    _, params = nnx.split(model, nnx.Param)
    named, _ = _named_leaves(params)
    names = [name for name, _ in named]
    if len(set(names)) != len(names) or _META in names:
        raise ConfigError(f"the network's parameter names are not unique: {names}")
    meta = {"format": EXPORT_FORMAT, "format_version": EXPORT_VERSION,
            "cryostream_version": __version__, "model": to_dict(model.config),
            "run": record.to_dict() if record is not None else None,
            "parameters": int(sum(np.size(leaf) for _, leaf in named)),
            "metadata": metadata or {}}
    try:
        text = json.dumps(meta, sort_keys=True)
    except TypeError as exc:
        raise ConfigError(f"metadata: not JSON values ({exc}); pass numbers, strings, lists "
                          "and dicts") from None
    arrays = {name: np.asarray(leaf, dtype=np.float32) for name, leaf in named}
    arrays[_META] = np.array(text)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _read_meta(archive, path: Path) -> dict[str, Any]:
    if _META not in archive.files:
        raise StoreError(f"{path}: a .npz archive, but not a cryostream model (no {_META}); "
                         "pass a run folder or a shipped model's name ('general')")
    meta = json.loads(str(archive[_META][()]))
    if meta.get("format") != EXPORT_FORMAT:
        raise StoreError(f"{path}: format {meta.get('format')!r}, not {EXPORT_FORMAT!r}")
    if meta.get("format_version", 0) > EXPORT_VERSION:
        raise StoreError(f"{path}: export format version {meta['format_version']} is newer than "
                         f"this cryostream ({__version__}) reads ({EXPORT_VERSION}); upgrade "
                         "cryostream")
    return meta


def _open(path: str | os.PathLike):
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: no such file; pass an exported model (.npz)")
    with open(path, "rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"
    if not zipped:  # empty, text, or anything NumPy would try to unpickle
        raise StoreError(f"{path}: not an exported model (not a .npz archive, {path.stat().st_size} "
                         "bytes); pass a run folder (cryostream train or fit wrote it) or a "
                         "shipped model's name ('general')")
    try:
        return np.load(path, allow_pickle=False), path
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise StoreError(f"{path}: not a readable .npz archive ({exc}); copy it again or pass "
                         "another model") from None


@contextlib.contextmanager
def _damaged(path: Path):
    """A member of the archive ``path`` that cannot be read (cut short or bytes changed: a bad
    CRC, a broken compressed stream) as one :class:`StoreError` naming the file."""
    try:
        yield
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, CryostreamError):
            raise
        raise StoreError(f"{path}: damaged ({exc}); copy it again or pass another model") from None


def export_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """What an exported file says about itself, without its parameters.

    Returns
    -------
    dict
        ``format``, ``format_version``, ``cryostream_version``, ``model`` (the ModelConfig's
        fields), ``run`` (the run record's ``config.json`` layout, or None), ``parameters``
        (their number) and ``metadata`` (what the exporter added).
    """
    archive, path = _open(path)
    with archive, _damaged(path):
        return _read_meta(archive, path)


def load_exported(path: str | os.PathLike):
    """The network of an exported file and its record; NumPy and Flax only.

    Parameters
    ----------
    path : path-like
        A file written by :func:`export_params`.

    Returns
    -------
    (UNet, RunRecord or None)
        The network (call it on float32 ``(batch, y, x, 1)`` arrays) and the run's record,
        whose ``path`` is the exported file (``None`` if it was exported without one).

    Raises
    ------
    StoreError
        If the file is missing, not an export, of a newer format, or its parameters do not
        fit its model.
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from cryostream.models.unet import ModelConfig, UNet
    from cryostream.runs import RunRecord

    archive, path = _open(path)
    with archive, _damaged(path):
        meta = _read_meta(archive, path)
        config = from_dict(ModelConfig, meta["model"])
        abstract = nnx.eval_shape(lambda: UNet(config, rngs=nnx.Rngs(0)))
        graphdef, shapes = nnx.split(abstract, nnx.Param)
        named, treedef = _named_leaves(shapes)
        stored = set(archive.files) - {_META}
        expected = {name for name, _ in named}
        if stored != expected:
            raise StoreError(f"{path}: its parameters {sorted(stored ^ expected)} do not fit "
                             f"its model {config}; the file is damaged or not this format")
        leaves = []
        for name, shape in named:
            value = archive[name]
            if value.shape != tuple(shape.shape):
                raise StoreError(f"{path}: parameter {name} has shape {value.shape}, the model "
                                 f"needs {tuple(shape.shape)}; the file is damaged")
            if not np.isfinite(value).all():
                raise StoreError(f"{path}: parameter {name} holds NaN or Inf values (exported "
                                 "from a network that had diverged?); export a good checkpoint "
                                 "again, or pass another model")
            leaves.append(jnp.asarray(value, dtype=shape.dtype))
    params = jax.tree_util.tree_unflatten(treedef, leaves)
    run = meta["run"]
    try:
        record = RunRecord.from_dict(run, path) if run is not None else None
    except (ConfigError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise StoreError(f"{path}: its run record is not valid ({exc}); the file is damaged or "
                         "was edited: export it again (or fit its learned weights again with "
                         "benchmarks/fit_learned_weights.py)") from None
    return nnx.merge(graphdef, params), record
