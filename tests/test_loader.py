"""PatchLoader: order, values, resume, checksums, compressed and on-device stores."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import cryostream
from cryostream import NoiseConfig, PrepareConfig, StoreError
from cryostream.loader import LoaderState, PatchLoader
from cryostream.prepare import prepare
from cryostream.store import shard_folder, shard_of

CONFIG = PrepareConfig(patch_size=32, stride=32, test_fraction=0.34)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    sim = cryostream.simulate(root / "sim", 3, shape=(128, 96), seed=1)
    return prepare(sim.micrographs, root / "data.h5", CONFIG).output


def _take(loader, n):
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == n:
            break
    loader.close()
    return out


def test_epochs_cover_every_patch_in_a_new_order(store):
    loader = PatchLoader(store, batch_size=4, seed=3, threads=3)
    n, per_epoch = loader.n, loader.batches_per_epoch
    batches = _take(loader, 2 * per_epoch)
    first = np.concatenate([b["index"] for b in batches[:per_epoch]])
    second = np.concatenate([b["index"] for b in batches[per_epoch:]])
    assert per_epoch == n // 4
    for epoch in (first, second):  # no patch twice within an epoch, only the remainder left out
        assert len(set(epoch)) == len(epoch) == n - n % 4
    assert not np.array_equal(first, second)
    again = _take(PatchLoader(store, batch_size=4, seed=3, threads=1), per_epoch)
    assert np.array_equal(np.concatenate([b["index"] for b in again]), first)


def test_values_match_h5py(store):
    batch = _take(PatchLoader(store, batch_size=5, seed=0), 1)[0]
    with h5py.File(store) as f:
        for kind in ("input", "target"):
            for j, i in enumerate(batch["index"]):
                np.testing.assert_array_equal(batch[kind][j], f["train"][kind][i])


def test_position_resumes_the_same_batches(store):
    loader = PatchLoader(store, batch_size=4, seed=1)
    seq = [b["index"] for b in _take(loader, 7)]
    resumed = PatchLoader(store, batch_size=4, seed=1)
    _take(resumed, 3)
    state = resumed.position
    fresh = PatchLoader(store, batch_size=4, seed=1)
    fresh.restore({"epoch": state.epoch, "batch": state.batch})
    rest = [b["index"] for b in _take(fresh, 4)]
    for a, b in zip(seq[3:], rest, strict=True):
        np.testing.assert_array_equal(a, b)


def test_one_pass_for_evaluation(store):
    loader = PatchLoader(store, "test", batch_size=4, shuffle=False, repeat=False)
    seen = np.concatenate([b["index"] for b in loader])
    assert np.array_equal(seen, np.arange(loader.batches_per_epoch * 4))
    assert loader.position == LoaderState(1, 0)
    left = loader.n % 4
    assert repr(loader).endswith(f"batches of 4 an epoch{f' ({left} left out)' if left else ''}, "
                                 "in order, once)")
    every = PatchLoader(store, "test", batch_size=4, shuffle=False, repeat=False,
                        drop_remainder=False)
    assert np.array_equal(np.concatenate([b["index"] for b in every]), np.arange(every.n))
    assert "left out" not in repr(every)


def test_corrupted_chunk_is_refused(store, tmp_path):
    import shutil

    copy = tmp_path / "data.h5"
    shutil.copy(store, copy)
    shutil.copytree(shard_folder(store), shard_folder(copy))
    shard = sorted(shard_folder(copy).glob("*.h5"))[0]
    with h5py.File(shard) as f:
        offset = f["target"].id.get_chunk_info(0).byte_offset
    raw = bytearray(shard.read_bytes())
    raw[offset + 10] ^= 0x01
    shard.write_bytes(bytes(raw))
    loader = PatchLoader(copy, batch_size=64, shuffle=False, drop_remainder=False)
    with pytest.raises(StoreError, match="fails its checksum"):
        _take(loader, 100)


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_compressed_on_device_float16(store, tmp_path, compression):
    import mrcfile  # noqa: F401

    with h5py.File(store) as f:
        sources = [s.decode() for s in f["micrographs/source"]]
    cfg = PrepareConfig(**{**CONFIG.__dict__, "dtype": "float16", "compression": compression,
                           "noise": NoiseConfig(mode="on-device")})
    out = prepare(sources, tmp_path / "c.h5", cfg).output
    loader = PatchLoader(out, batch_size=4, seed=0)
    assert loader.kinds == ("target",) and loader.noise.mode == "on-device"
    batch = _take(loader, 1)[0]
    with h5py.File(store) as f:
        ref = f["train/target"][sorted(batch["index"])].astype(np.float16)
    np.testing.assert_array_equal(batch["target"][np.argsort(batch["index"])], ref)
    assert batch["target"].dtype == np.float16


def test_bad_arguments(store):
    with pytest.raises(cryostream.ConfigError, match="split="):
        PatchLoader(store, "val")
    with pytest.raises(cryostream.ConfigError, match="larger than the"):
        PatchLoader(store, batch_size=10_000)


def _copy_store(store, folder):
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / store.name
    shutil.copy(store, copy)
    shutil.copytree(shard_folder(store), shard_folder(copy))
    return copy


def test_truncated_shard_is_named_and_the_fix_it_gives_repairs_the_store(store, tmp_path):
    """A shard cut in half: StoreError naming it and its micrograph; doing what the message
    says (delete the shard and the master, run prepare again) gives the same patches back."""
    import os

    copy = _copy_store(store, tmp_path / "bad")
    with h5py.File(copy) as f:
        shard = copy.parent / shard_of(f["train/target"], 0)[0]
    os.truncate(shard, shard.stat().st_size // 2)
    with pytest.raises(StoreError) as caught:
        PatchLoader(copy, batch_size=4)
    message = str(caught.value)
    assert message.startswith(f"{shard}:") and "cut short" in message
    assert f"delete {shard.name} and {copy.name}" in message and "cryostream prepare" in message
    with h5py.File(store) as f:
        sources = [s.decode() for s in f["micrographs/source"]]
        names = [n.decode() for n in f["micrographs/name"]]
    assert any(f"micrograph {n}" in message for n in names)
    shard.unlink()
    copy.unlink()
    prepare(sources, copy, CONFIG)
    got = _take(PatchLoader(copy, batch_size=4, shuffle=False, drop_remainder=False), 100)
    want = _take(PatchLoader(store, batch_size=4, shuffle=False, drop_remainder=False), 100)
    for a, b in zip(got, want, strict=True):
        for kind in ("input", "target", "index"):
            np.testing.assert_array_equal(a[kind], b[kind])


def test_corrupt_compressed_chunk_names_the_shard_and_patch(store, tmp_path):
    """A zstd store with a flipped byte in one chunk: the read fails with a StoreError naming
    the shard and the patch, not HDF5's bare 'filter returned failure'."""
    with h5py.File(store) as f:
        sources = [s.decode() for s in f["micrographs/source"]]
    cfg = PrepareConfig(**{**CONFIG.__dict__, "compression": "zstd"})
    out = prepare(sources, tmp_path / "z.h5", cfg).output
    loader = PatchLoader(out, batch_size=4, shuffle=False, drop_remainder=False)
    with h5py.File(out) as f:
        shard = out.parent / shard_of(f["train/target"], 0)[0]
    with h5py.File(shard) as f:
        info = f["target"].id.get_chunk_info(0)
    raw = bytearray(shard.read_bytes())
    for i in range(info.byte_offset + info.size // 2, info.byte_offset + info.size // 2 + 8):
        raw[i] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="fails its checksum or cannot be decompressed") as caught:
        _take(loader, 100)
    message = str(caught.value)
    assert message.startswith(f"{shard}:") and "train/target patch" in message
    assert "patch 0 of the shard" in message
