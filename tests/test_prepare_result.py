"""prepare run again on a finished store (cryostream/prepare_result.py): the same inputs and
options keep it untouched, byte for byte, and say so; other inputs or options are refused with
what differs and the fix."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

import cryostream
from cryostream import PrepareConfig, StoreError
from cryostream.prepare import prepare
from cryostream.store import open_dataset, shard_folder
from tests.conftest import write_mrc
from tests.faults_support import assert_user_error, changed, cli, snapshot

PATCH = ["--patch", "64", "--stride", "64"]
CONFIG = PrepareConfig(patch_size=64, stride=64)


@pytest.fixture
def sim(tmp_path):
    return cryostream.simulate(tmp_path / "sim", 3, shape=(160, 128), seed=4)


def test_the_same_command_again_keeps_the_finished_store(sim, tmp_path, capsys, monkeypatch):
    """`prepare FOLDER -o data.h5` run again after it finished: status 0, one line saying the
    store is complete and kept, not a byte of it written (it said 'data.h5 exists; pass
    --overwrite', status 2). The same files given otherwise (a glob, from another folder) are
    the same inputs."""
    out = tmp_path / "data.h5"
    folder = sim.root / "micrographs"
    first = cli(capsys, "prepare", folder, "-o", out, *PATCH, "--quiet")
    assert first.rc == 0, first.describe()
    made = re.search(r": (\d+) train \+ (\d+) test patches", first.out).groups()
    before = snapshot(tmp_path)
    again = cli(capsys, "prepare", folder, "-o", out, *PATCH, "--quiet")
    assert again.rc == 0, again.describe()
    assert again.out.strip() == (
        f"{out} is already complete: 3 micrographs, {made[0]} train + {made[1]} test patches, "
        "prepared from these inputs with these options; kept as it is (--overwrite prepares "
        "it again)")
    assert again.err == ""
    assert not changed(before, snapshot(tmp_path))
    monkeypatch.chdir(tmp_path)
    result = prepare("sim/micrographs/sim_*.mrc", "data.h5", CONFIG)
    assert result.kept and (result.micrographs, result.bytes_written) == (3, 0)
    assert not changed(before, snapshot(tmp_path))


def _rewrite(path):
    """The same pixels written again: another modification time (and header stamp)."""
    import mrcfile

    with mrcfile.open(path) as m:
        image, pixel = m.data.copy(), float(m.voxel_size.x)
    write_mrc(path, image, pixel_size=pixel)
    stamp = path.stat().st_mtime + 10
    os.utime(path, (stamp, stamp))


@pytest.mark.parametrize("what", ["options", "fewer", "more", "order", "changed", "moved"])
def test_other_inputs_or_options_are_refused_saying_what_differs(sim, tmp_path, capsys, what):
    """A finished store given other options, other micrographs or micrographs changed since:
    refused (status 2) with what differs and the fix, the store untouched."""
    mics = list(sim.micrographs)
    out = tmp_path / "data.h5"
    given = mics[:2] if what == "more" else mics
    assert cli(capsys, "prepare", *given, "-o", out, *PATCH, "--quiet").rc == 0
    before = snapshot(tmp_path)
    options, now = list(PATCH), list(mics)
    if what == "options":
        options += ["--seed", "9", "--test-fraction", "0.5"]
    elif what == "fewer":
        now = mics[:2]
    elif what == "order":
        now = mics[::-1]
    elif what == "changed":
        _rewrite(mics[1])
        before = snapshot(tmp_path)
    elif what == "moved":
        shutil.copytree(Path(mics[0]).parent, tmp_path / "moved")
        now = [tmp_path / "moved" / Path(m).name for m in mics]
        before = snapshot(tmp_path)
    line = assert_user_error(cli(capsys, "prepare", *now, "-o", out, *options, "--quiet"),
                             "data.h5")
    assert line.startswith(f"cryostream prepare: error: {out} exists and was prepared from "
                           "other inputs or options: ")
    assert line.endswith("; pass --overwrite to replace it, or choose another name")
    assert {
        "options": "options differ: test_fraction 0.1 in the store, 0.5 now; seed 0 in the store, "
                   "9 now",
        "fewer": "1 of its micrographs is not among the inputs (sim_0002.mrc)",
        "more": "1 input is not in it (sim_0002.mrc)",
        "order": "the same micrographs in another order",
        "changed": "1 of its micrographs changed since (sim_0001.mrc: other size or modification "
                   "time)",
        "moved": f"3 of its micrographs have the inputs' names in another folder "
                 f"({Path(mics[0]).parent} in the store, {tmp_path / 'moved'} now: moved, or "
                 "copies)",
    }[what] in line
    assert not changed(before, snapshot(tmp_path))


def _patches(store) -> dict[str, bytes]:
    with open_dataset(store) as f:
        return {f"{split}/{kind}": f[split][kind][...].tobytes() for split in ("train", "test")
                for kind in ("input", "target", "index")}


def test_a_finished_store_missing_a_shard_is_refused_with_the_repair(sim, tmp_path):
    """The same command on a store whose shard was deleted: refused with open_dataset's repair,
    never called complete; the repair gives the store back (its shards byte for byte)."""
    out = prepare(sim.micrographs, tmp_path / "data.h5", CONFIG).output
    whole, patches = snapshot(tmp_path), _patches(out)
    shard = sorted(shard_folder(out).glob("*.h5"))[0]
    shard.unlink()
    with pytest.raises(StoreError, match=f"its shard data.h5.shards/{shard.name} is missing; "
                       "delete data.h5, then run the same `cryostream prepare` command again"):
        prepare(sim.micrographs, out, CONFIG)
    out.unlink()
    assert not prepare(sim.micrographs, out, CONFIG).kept
    assert changed(whole, snapshot(tmp_path)) <= {str(out)}  # the master, written again
    assert _patches(out) == patches


def test_a_store_without_its_fingerprint_is_refused(sim, tmp_path):
    out = prepare(sim.micrographs, tmp_path / "data.h5", CONFIG).output
    (shard_folder(out) / "prepare.json").unlink()
    with pytest.raises(StoreError, match=r"data.h5 exists, but its shards folder records no "
                       r"fingerprint of its inputs \(.*\): whether it was prepared from these "
                       r"cannot be told; pass overwrite=True \(--overwrite\) to prepare it again, "
                       "or choose another name"):
        prepare(sim.micrographs, out, CONFIG)


def test_an_existing_file_that_is_not_a_store_is_refused_without_overwrite(sim, tmp_path, capsys):
    """-o an existing micrograph (not an input), no --overwrite: refused as not a store (it
    said 'pass --overwrite', which would then be refused too)."""
    target = tmp_path / "precious.mrc"
    target.write_bytes(sim.micrographs[1].read_bytes())
    before = snapshot(tmp_path)
    line = assert_user_error(cli(capsys, "prepare", sim.micrographs[0], "-o", target, *PATCH,
                                 "--quiet"), target.name)
    assert line.endswith(f"{target} exists and is not an HDF5 file (an MRC micrograph?), not a "
                         "cryostream store; choose another name for the store")
    assert not changed(before, snapshot(tmp_path))
