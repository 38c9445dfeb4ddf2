"""The store's own pieces: Fletcher-32 against HDF5's, atomic writes, damaged shards."""

import os
import shutil

import h5py
import numpy as np
import pytest

import cryostream
from cryostream.config import PrepareConfig
from cryostream.errors import StoreError
from cryostream.inspect import export_bin, show
from cryostream.prepare import prepare
from cryostream.store import fletcher32, read_patch, shard_folder, shard_of


@pytest.mark.parametrize(
    "make",
    [
        lambda r: r.random((64, 64), dtype=np.float32),
        lambda r: np.zeros((64, 64), np.float32),
        lambda r: np.full((64, 64), np.uint32(0xFFFFFFFF)).view(np.float32),
        lambda r: r.integers(0, 2**16, (300, 7), dtype=np.uint16).view(np.float16),
        lambda r: np.full((4096 * 3 + 10,), np.float16(1.5)),
        lambda r: r.random((1024, 1024), dtype=np.float32),
        lambda r: r.integers(0, 2**16, (2048, 4096), dtype=np.uint16),  # 2048 rows of words
    ],
)
def test_fletcher32_matches_hdf5(tmp_path, make):
    data = make(np.random.default_rng(0))
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=data[None], chunks=(1, *data.shape), fletcher32=True)
    with h5py.File(path, "r") as f:
        _, raw = f["a"].id.read_direct_chunk((0,) * (data.ndim + 1))
    assert raw[-4:] == fletcher32(data.tobytes()).to_bytes(4, "little")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    sim = cryostream.simulate(root / "sim", 3, shape=(128, 96), seed=1)
    config = PrepareConfig(patch_size=32, stride=32, test_fraction=0.34)
    return prepare(sim.micrographs, root / "data.h5", config).output


def _damaged_copy(store, folder, dataset="train/input"):
    """A copy of ``store`` whose shard holding patch 0 of ``dataset`` is cut in half; returns
    the copy and the shard."""
    folder.mkdir()
    copy = folder / store.name
    shutil.copy(store, copy)
    shutil.copytree(shard_folder(store), shard_folder(copy))
    with h5py.File(copy) as f:
        shard = copy.parent / shard_of(f[dataset], 0)[0]
    os.truncate(shard, shard.stat().st_size // 2)
    return copy, shard


def test_shard_of_finds_each_patch(store):
    """shard_of: the shard and the patch's number in it, read back equal to the master's."""
    with h5py.File(store) as f:
        dset = f["train/target"]
        for i in range(dset.shape[0]):
            name, local = shard_of(dset, i)
            with h5py.File(store.parent / name) as shard:
                np.testing.assert_array_equal(shard["target"][local], dset[i])
        assert shard_of(f["train/index"], 0) is None


def test_read_patch_names_a_damaged_shard(store, tmp_path):
    copy, shard = _damaged_copy(store, tmp_path / "bad")
    with h5py.File(copy) as f, pytest.raises(StoreError) as caught:
        read_patch(copy, f["train/input"], 0)
    message = str(caught.value)
    assert message.startswith(f"{shard}:")
    assert "train/input patch 0, patch 0 of the shard" in message and "cut short" in message


def test_show_on_a_damaged_shard_writes_no_figure(store, tmp_path):
    copy, shard = _damaged_copy(store, tmp_path / "bad")
    with pytest.raises(StoreError, match=shard.name):
        show(copy, tmp_path / "s.png", count=100)
    assert not (tmp_path / "s.png").exists()


def test_export_bin_writes_the_datasets_bytes(store, tmp_path):
    written = export_bin(store, tmp_path / "bin")
    assert sorted(p.name for p in written) == ["test_input.bin", "test_target.bin",
                                               "train_input.bin", "train_target.bin"]
    with h5py.File(store) as f:
        for path in written:
            split, kind = path.stem.split("_")
            assert path.read_bytes() == f[split][kind][...].tobytes()
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == sorted(
        [p.name for p in written] + ["bin.json"])


def test_export_bin_on_a_damaged_shard_keeps_an_earlier_export(store, tmp_path):
    """export_bin of a store whose test shard is damaged (the train files already streamed)
    into a folder holding an earlier export: a StoreError naming the shard, no temporary
    left, the earlier files as they were."""
    out = tmp_path / "bin"
    out.mkdir()
    for name in ("train_input.bin", "train_target.bin", "test_input.bin", "test_target.bin",
                 "bin.json"):
        (out / name).write_bytes(f"earlier {name}".encode())
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    copy, shard = _damaged_copy(store, tmp_path / "bad", "test/input")
    with pytest.raises(StoreError, match=shard.name):
        export_bin(copy, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


_SHARD_UNDER_A_SIZE_LIMIT = """
import json, os, resource, sys
from pathlib import Path
import numpy as np
from cryostream.errors import StoreError
from cryostream.store import write_shard

folder, compression = Path(sys.argv[1]), sys.argv[2]
block = np.random.default_rng(0).random((2, 64, 400), dtype=np.float32)
patches = [block[:, :, x : x + 64] for x in range(0, 300, 32)]
write_shard(folder / "whole.h5", patches, dtype="float32", compression=compression, attrs={})
size = (folder / "whole.h5").stat().st_size
found = {}
# no room at all, half of the chunks written, every chunk but not HDF5's metadata (the close)
for limit in (100, size // 2, size - 64):
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    try:
        write_shard(folder / "s.h5", patches, dtype="float32", compression=compression, attrs={})
        found[limit] = "written"
    except StoreError as exc:
        found[limit] = str(exc)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    found[limit] = [found[limit], sorted(p.name for p in folder.iterdir())]
print(json.dumps(found))
"""


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_write_shard_on_a_full_disk_leaves_nothing(tmp_path, compression):
    """write_shard under a file-size limit (EFBIG, as a full disk) that stops it before the
    first chunk, halfway and at HDF5's closing metadata: each time a StoreError naming the
    shard and the system's reason in one line, no shard and no partial file left, nothing on
    stderr."""
    import json
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _SHARD_UNDER_A_SIZE_LIMIT, str(tmp_path),
                             compression], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr[-3000:]
    found = json.loads(result.stdout)
    assert len(found) == 3
    for message, files in found.values():
        assert message.startswith(f"{tmp_path / 's.h5'}: could not write it ([Errno 27] File "
                                  "too large); free disk space"), message
        assert "\n" not in message
        assert files == ["whole.h5"]


def test_a_store_written_again_from_the_same_inputs_is_the_same_bytes(tmp_path):
    """The master file too: HDF5 stamps a virtual dataset with its creation time by default
    (four bytes differed between two writes a second apart)."""
    import time

    sim = cryostream.simulate(tmp_path / "sim", 2, shape=(160, 160), seed=2)
    config = PrepareConfig(patch_size=64, stride=64, test_fraction=0.5)
    out = tmp_path / "d.h5"
    prepare(sim.micrographs, out, config)
    first = {p.relative_to(tmp_path): p.read_bytes()
             for p in [out, *sorted(shard_folder(out).glob("*.h5"))]}
    time.sleep(1.1)  # HDF5 keeps times in seconds
    prepare(sim.micrographs, out, config, overwrite=True)
    again = {p.relative_to(tmp_path): p.read_bytes()
             for p in [out, *sorted(shard_folder(out).glob("*.h5"))]}
    assert again.keys() == first.keys() and len(first) >= 2
    assert all(again[k] == first[k] for k in first)
    with h5py.File(out, "r") as f:  # still virtual datasets over the shards
        assert f["train/input"].is_virtual and f["test/target"].is_virtual
        assert np.isfinite(f["train/input"][...]).all()
