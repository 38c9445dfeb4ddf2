"""Resuming a store whose shards were cut in other bands (an older cryostream): they are made
again, never reused."""

import json

import h5py
import numpy as np

import cryostream
from cryostream.config import PrepareConfig
from cryostream.prepare import prepare
from cryostream.store import shard_folder


def _datasets(store):
    with h5py.File(store) as f:
        return {f"{split}/{kind}": f[split][kind][...] for split in ("train", "test")
                for kind in ("input", "target", "index")}


def test_shards_of_other_bands_are_made_again(tmp_path):
    """A shard folder whose fingerprint records no band heights (or others): its shards are
    dropped and made again (a shard replaced by junk does not survive), the cached statistics
    kept, the store equal to one prepared in one go."""
    sim = cryostream.simulate(tmp_path / "sim", 2, shape=(192, 160), seed=2)
    config = PrepareConfig(patch_size=32, stride=16, test_fraction=0.5)
    whole = prepare(sim.micrographs, tmp_path / "whole.h5", config, log=lambda *_: None).output
    out = prepare(sim.micrographs, tmp_path / "s.h5", config, log=lambda *_: None).output
    out.unlink()  # interrupted after its shards, by a version that cut other bands
    folder = shard_folder(out)
    stamp = json.loads((folder / "prepare.json").read_text())
    assert stamp["band_heights"] == [32] * 5 + [32]
    del stamp["band_heights"]
    (folder / "prepare.json").write_text(json.dumps(stamp))
    shards = sorted(folder.glob("*.h5"))
    shards[0].write_bytes(b"a shard of other bands")
    statistics = (folder / "statistics.json").read_text()
    prepare(sim.micrographs, out, config, log=lambda *_: None)
    assert (folder / "statistics.json").read_text() == statistics
    assert sorted(folder.glob("*.h5")) == shards
    got, want = _datasets(out), _datasets(whole)
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
