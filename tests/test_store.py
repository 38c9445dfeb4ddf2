"""The store's own pieces: Fletcher-32 against HDF5's, atomic writes."""

import h5py
import numpy as np
import pytest

from cryostream.store import fletcher32


@pytest.mark.parametrize(
    "make",
    [
        lambda r: r.random((64, 64), dtype=np.float32),
        lambda r: np.zeros((64, 64), np.float32),
        lambda r: np.full((64, 64), np.uint32(0xFFFFFFFF)).view(np.float32),
        lambda r: r.integers(0, 2**16, (300, 7), dtype=np.uint16).view(np.float16),
        lambda r: np.full((4096 * 3 + 10,), np.float16(1.5)),
        lambda r: r.random((1024, 1024), dtype=np.float32),
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
