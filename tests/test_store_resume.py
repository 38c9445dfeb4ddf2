"""Resuming a store whose shards were cut in other bands (an older cryostream): they are made
again, never reused; the fingerprint a resumed run writes again is written whole or not at all."""

import json

import h5py
import numpy as np

import cryostream
from cryostream.config import PrepareConfig
from cryostream.prepare import prepare
from cryostream.store import shard_folder
from tests.faults_support import cli, cli_process, leftovers


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


def test_a_fingerprint_that_cannot_be_written_again_leaves_the_one_before(small_mrcs, tmp_path,
                                                                          capsys):
    """`prepare` run again on a store stopped after its shards (no master file) first writes
    the fingerprint of its inputs and options (prepare.json) again. Where it cannot (a full
    disk; here a file-size limit under its size, in a real process), one line names it, and
    the fingerprint before is left whole: it had been cut short, and the next run refused the
    shards as damaged (only --overwrite prepared them again). The next run goes on from them."""
    out = tmp_path / "s.h5"
    command = ["prepare", *small_mrcs, "-o", out, "--patch", "32"]
    assert cli(capsys, *command).rc == 0
    out.unlink()  # stopped before its master
    folder = shard_folder(out)
    stamp, shards = (folder / "prepare.json").read_text(), sorted(folder.glob("*.h5"))
    assert len(stamp) > 200

    failed = cli_process(*command, cwd=tmp_path, file_size_limit=200)
    assert failed.rc == 2 and f"{folder / 'prepare.json'}: could not write it" in failed.err, \
        failed.describe()
    assert (folder / "prepare.json").read_text() == stamp and leftovers(folder) == []

    again = cli(capsys, *command)
    assert again.rc == 0 and out.is_file(), again.describe()
    assert sorted(folder.glob("*.h5")) == shards
