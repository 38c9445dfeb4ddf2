"""Records written whole or not at all: a run's ``config.json`` and ``metrics.jsonl``, a fit's
``fit.json`` and a denoised micrograph's MRC and ``NAME.json``, under a real file-size limit
(``ulimit -f`` in a child process: Python ignores SIGXFSZ, so a write past it fails with
EFBIG as on a full disk), and what a kill mid-write leaves read back as nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import mrcfile
import numpy as np
import pytest

from cryostream.errors import StoreError
from cryostream.fit_run import check_run
from cryostream.runs import logged_rows


def _limited(kib: int, code: str) -> subprocess.CompletedProcess:
    """``code`` run by this Python under a file-size limit of ``kib`` KiB."""
    script = textwrap.dedent(code)
    return subprocess.run(["bash", "-c", f'ulimit -f {kib} && exec "$0" -c "$1"', sys.executable,
                           script], capture_output=True, text=True, timeout=120)


def test_a_record_that_cannot_be_written_leaves_the_one_before(tmp_path):
    """train --resume rewrote config.json in place, so a full disk cut it to its first KiB and
    every command then refused the run as damaged. Now it is written aside and renamed: the
    run's record stays whole, the error names the file, nothing half-written is left."""
    from cryostream.config import PrepareConfig, TrainConfig
    from cryostream.runs import RunRecord, load_record, save_record

    run = tmp_path / "run"
    record = RunRecord(path=run, train=TrainConfig(), prepare=PrepareConfig(), store="s.h5")
    save_record(run, record)
    before = (run / "config.json").read_bytes()
    assert len(before) > 1024
    done = _limited(1, f"""
        import dataclasses, pathlib
        from cryostream.errors import StoreError
        from cryostream.runs import load_record, save_record
        run = pathlib.Path({str(run)!r})
        record = load_record(run)
        try:
            save_record(run, dataclasses.replace(record, train=dataclasses.replace(
                record.train, steps=record.train.steps + 1, learning_rate=0.000123456789)))
        except StoreError as exc:
            print(exc)
        """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{run / 'config.json'}: could not write it (File too large); "
                                  "free some space")
    assert (run / "config.json").read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]
    assert load_record(run).train == record.train


def test_a_log_line_cut_short_is_left_out(tmp_path):
    """A metrics.jsonl whose last line a full disk cut short made train --resume stop with a
    JSONDecodeError traceback; the rows before it are read, the cut one left out."""
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 10, "loss": 0.5}\n{"step": 20, "loss": 0.25, "eval_psnr": 20.5}\n'
                    '{"step": 30, "lo')
    assert logged_rows(path) == [{"step": 10, "loss": 0.5},
                                 {"step": 20, "loss": 0.25, "eval_psnr": 20.5}]
    assert logged_rows(tmp_path / "none.jsonl") == []


def test_a_fit_record_left_half_written_does_not_block_the_same_fit(tmp_path):
    """A fit killed (or out of space) while writing fit.json left ``.fit.json.partial`` beside
    its finished store, and the same command then refused the folder as not a fit's."""
    run = tmp_path / "fit"
    (run / "work").mkdir(parents=True)
    (run / ".fit.json.partial").write_text('{"inpu')
    assert check_run(run, {"inputs": []}, overwrite=False) is True
    (run / "notes.txt").write_text("mine")  # a file of the user's is still no run's
    with pytest.raises(StoreError, match="holds files but no fit.json"):
        check_run(run, {"inputs": []}, overwrite=False)


def _write_limited(path, sidecar, value: float, kib: int = 16) -> str:
    """write_output of a 256² output (256 KiB) at ``path`` in a child whose files may not grow
    past ``kib`` KiB (the record fits, the MRC does not); the error it printed."""
    done = _limited(kib, f"""
        import pathlib, numpy as np
        from cryostream.errors import StoreError
        from cryostream.denoise.outputs import OutputPlan, write_output
        plan = OutputPlan(source="in.mrc", name="m", path=pathlib.Path({str(path)!r}),
                          sidecar=pathlib.Path({str(sidecar)!r}), done=False, overwrite=True)
        try:
            write_output(plan, np.full((256, 256), {value}, np.float32), 1.0,
                         "cryostream denoise x", {{"run": "x"}})
        except StoreError as exc:
            print(exc)
        """)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_an_output_made_again_is_never_left_with_the_record_before(tmp_path):
    """denoise renamed a new NAME.mrc into place before its NAME.json: killed between, another
    model's output kept the record of the one before, and the next run kept it as finished.
    The record before is set aside (``.NAME.json.before``) while the MRC is replaced: put back
    where the new MRC could not be written, dropped once it is, and one a killed run left
    aside is never put back beside another output."""
    from cryostream.denoise.outputs import OutputPlan, read_record, write_output

    path, sidecar = tmp_path / "m.mrc", tmp_path / "m.json"
    # another model's output made again: an --overwrite run's
    plan = OutputPlan(source="in.mrc", name="m", path=path, sidecar=sidecar, done=False,
                      overwrite=True)
    write_output(plan, np.ones((64, 64), np.float32), 1.0, "cryostream denoise first",
                 {"run": "first"})
    write_output(plan, np.full((64, 64), 2, np.float32), 1.0, "cryostream denoise second",
                 {"run": "second"})
    assert read_record(sidecar)["run"] == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.mrc"]  # nothing aside
    said = _write_limited(path, sidecar, 3)  # the MRC cannot be written: the pair before stays
    assert said.startswith(f"{path}: could not be written (File too large); free some space")
    assert read_record(sidecar)["run"] == "second"
    with mrcfile.open(path) as f:
        assert float(f.data.mean()) == 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.mrc"]
    # what a kill after the new MRC landed leaves: the MRC, the old record aside, no record
    sidecar.rename(tmp_path / ".m.json.before")
    said = _write_limited(path, sidecar, 4)  # then a run that cannot write its own
    assert said.startswith(f"{path}: could not be written")
    assert not sidecar.exists()  # the stale record is not put back beside another MRC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mrc"]


def test_a_folder_where_a_records_temporary_file_goes_is_named(tmp_path):
    """A folder at a record's temporary name (``.config.json.partial``, made by hand or by a
    copy tool): the write raised a bare IsADirectoryError (its clean-up could not remove a
    folder). Now one error names the record and the folder to remove; the record before is
    left as it was, and the folder too."""
    from cryostream.io.paths import partial_path, write_whole

    record = tmp_path / "config.json"
    record.write_text("{}")
    partial_path(record).mkdir()
    with pytest.raises(StoreError) as caught:
        write_whole(record, '{"steps": 4}')
    assert str(caught.value) == (
        f"{record}: could not write it: the folder {partial_path(record)} is where its "
        "temporary file goes; remove it, then run the same command again")
    assert record.read_text() == "{}" and partial_path(record).is_dir()


@pytest.mark.parametrize("taken", ["record", "image"])
def test_a_folder_where_a_denoised_outputs_temporary_file_goes_is_named(tiny_run, tmp_path,
                                                                        taken):
    """A folder at a denoised output's temporary name (``.NAME.json.partial`` of its record,
    ``.NAME.mrc.partial`` of its image): the error said '.NAME.json.partial: Is a directory;
    ... give a file's name' (no file's name was given: ``-o`` is a folder), or named the output
    ``NAME.mrc`` alone. Now it names the output and the folder to remove, which is left, and
    nothing is written."""
    import shutil

    import cryostream
    from cryostream.io.paths import partial_path

    mic = tmp_path / "m.mrc"
    shutil.copy(tiny_run.sim.micrographs[0], mic)
    out = tmp_path / "out"
    folder = partial_path(out / ("m.json" if taken == "record" else "m.mrc"))
    folder.mkdir(parents=True)
    with pytest.raises(StoreError) as caught:
        cryostream.denoise(tiny_run.run, [mic], out, config=cryostream.DenoiseConfig.raw(),
                           workers=1)
    assert str(caught.value) == (
        f"{out / 'm.mrc'}: could not write it: the folder {folder} is where its temporary file "
        "goes; remove it, then run the same command again")
    assert folder.is_dir() and sorted(p.name for p in out.iterdir()) == [folder.name]
