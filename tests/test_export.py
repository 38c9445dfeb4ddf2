"""Exported networks: one small .npz with the parameters and the record, loaded without orbax."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import jax
import numpy as np
import pytest
from flax import nnx

from cryostream import ConfigError, NoiseConfig, PrepareConfig, RunRecord, StoreError, TrainConfig
from cryostream.models import PRESETS, UNet
from cryostream.models.export import (
    EXPORT_VERSION,
    export_metadata,
    export_params,
    load_exported,
)


def _trained_like(tmp_path, preset: str = "unet-small", seed: int = 3):
    """A network with random (not initial) parameters and the record of a run that made it."""
    train = TrainConfig(model=preset, precision="fp32", residual=True, steps=20)
    record = RunRecord(path=tmp_path / "run", train=train,
                       prepare=PrepareConfig(patch_size=128, stride=64,
                                             noise=NoiseConfig(model="none")),
                       store=tmp_path / "pairs.h5")
    return _random_model(record.model_config, seed), record


def _random_model(config, seed: int = 0):
    """A network of ``config`` with random parameters drawn by NumPy (no JAX initialisers to
    compile: fast on two cores)."""
    abstract = nnx.eval_shape(lambda: UNet(config, rngs=nnx.Rngs(0)))
    graphdef, shapes = nnx.split(abstract, nnx.Param)
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda s: jax.numpy.asarray(rng.normal(0, 0.05, s.shape), s.dtype),
                          shapes)
    return nnx.merge(graphdef, params)


def _arrays(model) -> list[np.ndarray]:
    _, params = nnx.split(model, nnx.Param)
    return [np.asarray(leaf) for leaf in jax.tree.leaves(params)]


def test_round_trip_gives_the_same_parameters_output_and_record(tmp_path):
    model, record = _trained_like(tmp_path)
    path = export_params(model, record, tmp_path / "general.npz", metadata={"steps": 20})
    assert path == tmp_path / "general.npz" and not list(tmp_path.glob(".*partial"))
    loaded, loaded_record = load_exported(path)
    before, after = _arrays(model), _arrays(loaded)
    assert len(before) == len(after) == 23
    for a, b in zip(before, after, strict=True):
        assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b)
    x = np.random.default_rng(0).normal(1, 0.3, (2, 64, 64, 1)).astype(np.float32)
    forward = nnx.jit(lambda m, x: m(x))  # one compilation, not one per layer
    assert np.array_equal(np.asarray(forward(model, x)), np.asarray(forward(loaded, x)))
    assert loaded.config == model.config and loaded.config.residual
    assert loaded_record.train == record.train and loaded_record.prepare == record.prepare
    assert loaded_record.model_config == record.model_config
    assert loaded_record.path == path and loaded_record.store == record.store
    assert loaded_record.noise.model == "none"
    meta = export_metadata(path)
    assert meta["metadata"] == {"steps": 20} and meta["format_version"] == EXPORT_VERSION
    assert meta["parameters"] == sum(a.size for a in before)


def test_the_file_is_a_plain_archive_named_by_parameter(tmp_path):
    model, record = _trained_like(tmp_path)
    path = export_params(model, record, tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as archive:
        assert "encoder/0/kernel" in archive.files and "head_input/kernel" in archive.files
        assert archive["encoder/0/kernel"].shape == (5, 5, 1, 16)  # unet-small's first conv
        meta = json.loads(str(archive["__meta__"][()]))
    assert meta["run"]["train"]["model"] == "unet-small"
    with zipfile.ZipFile(path) as z:  # compressed
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())


def test_without_a_record(tmp_path):
    model = _random_model(PRESETS["unet-small"])
    loaded, record = load_exported(export_params(model, None, tmp_path / "new" / "bare.npz"))
    assert record is None  # and the missing folder was made
    assert all(np.array_equal(a, b) for a, b in zip(_arrays(model), _arrays(loaded), strict=True))


def test_the_unet_preset_fits_in_20_mb(tmp_path):
    model = _random_model(PRESETS["unet"])
    path = export_params(model, None, tmp_path / "unet.npz")
    n = sum(a.size for a in _arrays(model))
    assert 1.0e6 < n < 1.3e6  # Topaz-sized
    assert path.stat().st_size <= 20e6 and path.stat().st_size < 4 * n * 1.01


@pytest.mark.slow
def test_loading_needs_no_orbax(tmp_path):
    model, record = _trained_like(tmp_path)
    path = export_params(model, record, tmp_path / "m.npz")
    code = ("import sys; from cryostream.models.export import load_exported; "
            f"m, r = load_exported({str(path)!r}); "
            "assert not any(k.startswith('orbax') for k in sys.modules), 'orbax imported'; "
            "print(r.preset)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "unet-small"


def test_errors_name_the_file_and_the_fix(tmp_path):
    model, record = _trained_like(tmp_path)
    with pytest.raises(StoreError, match="no such file; pass an exported model"):
        load_exported(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(StoreError, match="text.npz: not an exported model") as caught:
        load_exported(tmp_path / "text.npz")
    assert "pickle" not in str(caught.value)  # no hint to load it unsafely
    (tmp_path / "empty.npz").write_bytes(b"")  # NumPy: EOFError
    with pytest.raises(StoreError, match="empty.npz: not an exported model"):
        load_exported(tmp_path / "empty.npz")
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(StoreError, match="cut.npz: not a readable .npz archive"):
        load_exported(tmp_path / "cut.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(StoreError, match="other.npz: a .npz archive, but not a cryostream model"):
        load_exported(tmp_path / "other.npz")
    other = _random_model(PRESETS["unet"])
    with pytest.raises(ConfigError, match="is not the network's"):
        export_params(other, record, tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()
    with pytest.raises(ConfigError, match="metadata: not JSON values"):
        export_params(model, record, tmp_path / "x.npz", metadata={"a": object()})
    assert not list(tmp_path.glob("*x.npz*"))

    good = export_params(model, record, tmp_path / "good.npz")
    with np.load(good) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(str(arrays["__meta__"][()]))
    newer = dict(arrays, __meta__=np.array(json.dumps({**meta, "format_version": EXPORT_VERSION + 1})))
    np.savez(tmp_path / "newer.npz", **newer)
    with pytest.raises(StoreError, match="newer than this cryostream .* upgrade cryostream"):
        load_exported(tmp_path / "newer.npz")
    bad = dict(arrays, **{"encoder/0/kernel": np.zeros((3, 3, 1, 16), np.float32)})
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(StoreError, match="parameter encoder/0/kernel has shape \\(3, 3, 1, 16\\), "
                                         "the model needs \\(5, 5, 1, 16\\)"):
        load_exported(tmp_path / "bad.npz")
    missing = {k: v for k, v in arrays.items() if k != "head_input/kernel"}
    np.savez(tmp_path / "short.npz", **missing)
    with pytest.raises(StoreError, match="head_input/kernel"):
        load_exported(tmp_path / "short.npz")


def test_a_bfloat16_network_computes_in_float32_on_the_cpu(tmp_path):
    """CPUs have no bfloat16 arithmetic: ``denoise`` computes a bf16-trained network in float32
    there (the same parameters), closer to the network's exact function."""
    from cryostream.denoise.network import load_network

    if jax.default_backend() != "cpu":
        pytest.skip("the float32 compute is the CPU's")
    train = TrainConfig(model="unet-small", precision="bf16", residual=True, steps=20)
    record = RunRecord(path=tmp_path / "run", train=train,
                       prepare=PrepareConfig(patch_size=128, stride=64,
                                             noise=NoiseConfig(model="none")),
                       store=tmp_path / "pairs.h5")
    model = _random_model(record.model_config, 5)
    assert model.config.compute_dtype == "bfloat16"
    path = export_params(model, record, tmp_path / "bf16.npz")
    network = load_network(str(path))
    assert network.compute_dtype == "float32"
    x = np.random.default_rng(1).normal(1, 0.3, (1, 64, 64, 1)).astype(np.float32)
    got = np.asarray(network.apply(network.params, x))
    exact = _random_model(TrainConfig(model="unet-small", precision="fp32",
                                      residual=True).model_config(), 5)
    want = np.asarray(nnx.jit(lambda m, x: m(x))(exact, x))
    bf16 = np.asarray(nnx.jit(lambda m, x: m(x))(model, x))
    assert np.abs(got - want).max() < 1e-5 < np.abs(bf16 - want).max()


@pytest.mark.parametrize("damage", ["bytes changed", "NaN parameters"])
def test_denoise_with_a_damaged_export_is_one_line_naming_it(tmp_path, capsys, damage):
    """An exported model whose bytes changed inside a parameter (a bad copy) had been a
    traceback (``BadZipFile: Bad CRC-32``), read only as its parameters were; one holding NaN
    parameters (a diverged network exported) loaded, and each micrograph was denoised before
    its NaN output was refused. Now both are one line naming the file and the fix, before any
    micrograph is read or output folder made."""
    from cryostream.cli import main
    from tests.conftest import write_mrc

    model, record = _trained_like(tmp_path)
    path = export_params(model, record, tmp_path / "model.npz")
    if damage == "bytes changed":
        with zipfile.ZipFile(path) as archive:
            member = max(archive.infolist(), key=lambda i: i.compress_size)
        data = bytearray(path.read_bytes())
        start = member.header_offset + 30 + len(member.filename) + member.compress_size // 2
        data[start:start + 64] = bytes(b ^ 0xFF for b in data[start:start + 64])
        path.write_bytes(bytes(data))
    else:
        with np.load(path) as archive:
            arrays = {k: archive[k] for k in archive.files}
        arrays["encoder/0/kernel"] = np.full_like(arrays["encoder/0/kernel"], np.nan)
        np.savez(path, **arrays)
    mic = write_mrc(tmp_path / "a.mrc", np.random.default_rng(0).poisson(20, (256, 256))
                    .astype(np.float32))
    out = tmp_path / "out"
    assert main(["denoise", str(mic), "-o", str(out), "-m", str(path), "--raw"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cryostream denoise: error: {path}: "), err
    assert ("damaged" if damage == "bytes changed" else "encoder/0/kernel holds NaN") in err[0]
    assert "pass another model" in err[0]
    assert not out.exists()
