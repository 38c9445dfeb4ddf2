"""What a denoised output says of how it was made: the steps of the first note and of the MRC
history label are the options ``NAME.json`` records (cryostream.denoise.outputs)."""

from __future__ import annotations

import re

import pytest

from cryostream.config import DenoiseConfig, to_dict
from cryostream.denoise.outputs import history_label, recipe_steps


@pytest.mark.parametrize("options, steps", [
    ({"n2n_correction": False, "ctf_gain": True, "ensemble": True}, ["ensemble", "ctf_gain"]),
    # the general model: its learned weights after the gain
    ({"n2n_correction": False, "ctf_gain": True, "ensemble": True, "learned_weights": True,
      "binned_pass": True}, ["ensemble", "ctf_gain", "learned_weights", "binned_pass"]),
    ({"n2n_correction": False, "ctf_gain": True, "ensemble": True, "learned_weights": True,
      "binned_pass": False}, ["ensemble", "ctf_gain", "learned_weights"]),
    # a fit's run: the correction (which keeps the input's mean) and the CTF-shaped gain
    ({"n2n_correction": True, "ctf_gain": True, "ensemble": False},
     ["n2n_correction", "ctf_gain"]),
    ({"n2n_correction": True, "n2n_clamp": True, "ctf_gain": False, "wiener_gain": True,
      "ensemble": True, "calibrate": 4},
     ["ensemble", "n2n_correction", "n2n_clamp", "wiener_gain", "calibrate=4"]),
    ({"n2n_correction": False, "ctf_gain": False, "ensemble": False}, []),
])
def test_the_steps_are_named_by_the_options_that_turn_them_on(options, steps):
    config = DenoiseConfig(**{"learned_weights": False, **options})
    assert recipe_steps(config) == steps
    recorded = to_dict(config)  # as NAME.json holds it
    for step in steps:
        name, _, value = step.partition("=")
        assert recorded[name] == (int(value) if value else True), step
    label = history_label("/data/runs/general_model.npz", config)
    assert label == "cryostream denoise general_model.npz" + (f" {'+'.join(steps)}" if steps
                                                              else "")


def test_the_label_names_the_radial_gain_where_the_ctf_check_failed():
    """The label says what was applied: a CTF-shaped gain that failed its check (NAME.json:
    ``ctf_used`` false) was the radial Wiener gain."""
    config = DenoiseConfig(n2n_correction=False, ctf_gain=True, ensemble=True,
                           learned_weights=False)
    run = "/data/runs/general_model.npz"
    assert history_label(run, config, {"ctf_used": True}).endswith(" ensemble+ctf_gain")
    assert history_label(run, config, {"ctf_used": False}).endswith(" ensemble+wiener_gain")
    assert history_label(run, config, {}).endswith(" ensemble+ctf_gain")  # nothing found yet


def test_an_output_made_otherwise_is_refused_in_the_caller_s_own_words(tiny_run, tmp_path, capsys):
    """Denoising into a folder that holds an output made with other options: a Python caller is
    told ``overwrite=True`` and ``output=``, the command line ``--overwrite`` and ``-o`` alone;
    a rerun's note says how to have the finished ones made again."""
    import shutil

    import cryostream
    from cryostream.cli import main
    from cryostream.errors import ConfigError

    source = tmp_path / "a.mrc"
    shutil.copy(tiny_run.sim.micrographs[0], source)
    out = tmp_path / "out"
    cryostream.denoise(tiny_run.run, [source], out, config=DenoiseConfig.raw(tile=64), workers=1)
    other = DenoiseConfig.raw(tile=64, output_dtype="float16")
    with pytest.raises(ConfigError) as refused:
        cryostream.denoise(tiny_run.run, [source], out, config=other, workers=1)
    assert str(refused.value) == (
        f"{out / 'a.mrc'} exists and is not this run's output for {source} with these options "
        "(made with output_dtype='float32', not 'float16'); pass --overwrite (Python: "
        "overwrite=True) to replace it, or choose another output folder: -o DIR (Python: "
        "output=DIR)")
    argv = ["denoise", str(tiny_run.run), str(source), "-o", str(out), "--raw", "--tile", "64",
            "--workers", "1"]
    capsys.readouterr()
    assert main([*argv, "--dtype", "float16"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"cryostream denoise: error: {out / 'a.mrc'} exists and is not this run's output for "
        f"{source} with these options (made with --dtype 'float32', not 'float16'); pass "
        "--overwrite to replace it, or choose another output folder: -o DIR")
    assert main(argv) == 0
    assert (f"cryostream: 1 of 1 micrographs already denoised in {out} with this run and these "
            "options; kept (delete them to make them again)\n") in capsys.readouterr().err


def test_a_file_denoise_did_not_make_is_never_replaced_even_with_overwrite(tiny_run, tmp_path,
                                                                           capsys):
    """An output folder that holds files of the same names that cryostream did not write (the
    originals, another program's): --overwrite replaced one before, silently. Now it is
    refused, --overwrite or not, naming it, and the file is left byte for byte."""
    import shutil

    from cryostream.cli import main

    source = tmp_path / "a.mrc"
    shutil.copy(tiny_run.sim.micrographs[0], source)
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(tiny_run.sim.micrographs[1], out / "a.mrc")  # someone else's a.mrc
    before = (out / "a.mrc").read_bytes()
    for extra in ([], ["--overwrite"]):
        capsys.readouterr()
        assert main(["denoise", str(tiny_run.run), str(source), "-o", str(out), "--raw",
                     "--tile", "64", "--workers", "1", *extra]) == 2
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"cryostream denoise: error: {out / 'a.mrc'} exists and cryostream denoise did not "
            "make it (no a.json record, no cryostream label): it is never replaced, --overwrite "
            "or not; move it away, or choose another output folder: -o DIR")
    assert (out / "a.mrc").read_bytes() == before and sorted(p.name for p in out.iterdir()) == [
        "a.mrc"]


def test_the_input_folder_as_output_names_the_suffix_that_writes_beside_the_inputs(tiny_run,
                                                                                  tmp_path, capsys):
    """`denoise DIR -o DIR` (the output folder the inputs' own) was refused saying only 'choose
    another output folder', though --suffix writes the outputs beside their inputs. Now the
    refusal names it (Python: output_suffix), and the same command with it denoises there; a
    suffix that still gives the input's name is refused without it."""
    import shutil

    import cryostream
    from cryostream.cli import main
    from cryostream.errors import ConfigError

    folder = tmp_path / "mics"
    folder.mkdir()
    shutil.copy(tiny_run.sim.micrographs[0], folder / "a.mrc")
    argv = ["denoise", str(tiny_run.run), str(folder), "-o", str(folder), "--raw", "--tile", "64",
            "--workers", "1"]
    capsys.readouterr()
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"cryostream denoise: error: {folder}: the output {folder / 'a.mrc'} would replace the "
        "input micrograph itself; choose another output folder: -o DIR, or write beside the "
        "inputs with a suffix: --suffix _denoised")
    with pytest.raises(ConfigError, match=re.escape(
            "-o DIR (Python: output=DIR), or write beside the inputs with a suffix: --suffix "
            "_denoised (Python: DenoiseConfig(output_suffix='_denoised'))")):
        cryostream.denoise(tiny_run.run, folder, folder, config=DenoiseConfig.raw(tile=64))
    assert main([*argv, "--suffix", "_denoised"]) == 0
    assert (folder / "a_denoised.mrc").is_file() and (folder / "a.mrc").is_file()
    for name in ("b.mrc", "b_x.mrc"):  # b's output with the suffix _x: the input b_x itself
        (folder / name).write_bytes((folder / "a.mrc").read_bytes())
    with pytest.raises(ConfigError, match=r"would replace the input micrograph itself; choose "
                       r"another output folder: -o DIR \(Python: output=DIR\)$"):
        cryostream.denoise(tiny_run.run, [folder / "b_x.mrc", folder / "b.mrc"], folder,
                           config=DenoiseConfig.raw(tile=64, output_suffix="_x"))


def test_overwrite_keeps_this_runs_finished_outputs_so_the_same_command_resumes(tiny_run,
                                                                                tmp_path):
    """A folder half made with other options and half by this run (an ``--overwrite`` run
    interrupted): the same call again replaces the others and keeps this run's, unless an
    earlier cryostream version made them. An output damaged since is made again without
    ``--overwrite``."""
    import json
    import os

    import cryostream

    a, b = tiny_run.sim.micrographs[:2]
    out = tmp_path / "out"
    before, now = (DenoiseConfig.raw(tile=64, output_dtype=d) for d in ("float16", "float32"))
    cryostream.denoise(tiny_run.run, [a], out, config=before, workers=1)
    cryostream.denoise(tiny_run.run, [b], out, config=now, workers=1)
    kept = out / b.name
    os.utime(kept, ns=(1, 1))  # a mark: an output made again has the time of now
    cryostream.denoise(tiny_run.run, [a, b], out, config=now, overwrite=True, workers=1)
    assert kept.stat().st_mtime_ns == 1  # this run's: kept
    assert json.loads((out / a.with_suffix(".json").name).read_text())["config"][
        "output_dtype"] == "float32"  # the other options': replaced
    record = kept.with_suffix(".json")
    older = json.loads(record.read_text()) | {"cryostream_version": "0.0.1"}
    record.write_text(json.dumps(older))
    cryostream.denoise(tiny_run.run, [a, b], out, config=now, workers=1)
    assert kept.stat().st_mtime_ns == 1  # without --overwrite an earlier version's is kept
    cryostream.denoise(tiny_run.run, [a, b], out, config=now, overwrite=True, workers=1)
    assert kept.stat().st_mtime_ns > 1  # with it, made again by this version
    whole = kept.read_bytes()
    kept.write_bytes(whole[: len(whole) // 2])  # damaged (a disk error, a copy cut short)
    cryostream.denoise(tiny_run.run, [a, b], out, config=now, workers=1)
    assert kept.read_bytes() == whole  # made again, the same


def test_no_star_file_lists_outputs_made_again_by_a_run_not_finished(tiny_run, tmp_path):
    """A run that makes a finished folder's outputs again with other options and fails (a bad
    micrograph): the earlier STAR file, which described the outputs as they were, is gone, so
    none in the folder lists outputs of two recipes; the run that finishes writes it again. A
    run that only adds to the folder leaves it until then."""
    import mrcfile
    import numpy as np

    import cryostream
    from cryostream.denoise.outputs import STAR_NAME

    a, b = tiny_run.sim.micrographs[:2]
    out, raw = tmp_path / "out", DenoiseConfig.raw(tile=64)
    cryostream.denoise(tiny_run.run, [a], out, config=raw, workers=1)
    listing = (out / STAR_NAME).read_text()
    bad = tmp_path / "bad.mrc"
    with mrcfile.new(bad) as f:
        f.set_data(np.full((160, 128), np.nan, np.float32))
        f.voxel_size = 0.66
    with pytest.raises(cryostream.InvalidMicrographError):  # adds b, keeps a: listing stays
        cryostream.denoise(tiny_run.run, [a, b, bad], out, config=raw, workers=1)
    assert (out / STAR_NAME).read_text() == listing
    other = DenoiseConfig.raw(tile=64, output_dtype="float16")
    with pytest.MonkeyPatch.context() as patch:  # a run stopped before it replaced any: kept
        patch.setenv("CRYOSTREAM_NETWORK_MEMORY_GB", "0.001")
        with pytest.raises(cryostream.ConfigError):
            cryostream.denoise(tiny_run.run, [a, b], out, config=other, overwrite=True,
                               workers=1)
    assert (out / STAR_NAME).read_text() == listing
    with pytest.raises(cryostream.InvalidMicrographError):  # makes a and b again: gone
        cryostream.denoise(tiny_run.run, [a, b, bad], out, config=other, overwrite=True,
                           workers=1)
    assert (out / b.name).is_file() and not (out / STAR_NAME).exists()
    cryostream.denoise(tiny_run.run, [a, b], out, config=other, workers=1)
    assert "sim_0001" in (out / STAR_NAME).read_text()


def _meanwhile(tiny_run, out, others, other_config):
    """A logging handler that, at the note this call gives once its outputs are checked (before
    any computing), denoises ``others`` into ``out`` with ``other_config`` in another thread (a
    real second call) and lets this call go on when that one is done: the second call's output
    lands between this call's checks and its writing, every time. The bytes of the second
    call's MRC files and records, as it left them, go into the dict returned with it."""
    import logging
    import threading

    import cryostream

    main_thread, left = threading.get_ident(), {}

    def second():
        cryostream.denoise(tiny_run.run, others, out, config=other_config, workers=1)
        left.update({p.name: (p.read_bytes(), p.stat().st_ino) for p in out.glob("*.*")})

    class Meanwhile(logging.Handler):
        def handle(self, record):  # not emit: the handler's lock would hold the second call's notes
            if record.thread == main_thread and record.getMessage().startswith("denoising ") \
                    and not left:
                thread = threading.Thread(target=second)
                thread.start()
                thread.join()
            return True

    return Meanwhile(logging.INFO), left


@pytest.mark.parametrize("other_dtype", ["float16", "float32"])
def test_an_output_another_call_made_meanwhile_with_other_options_is_not_replaced(
        tiny_run, tmp_path, other_dtype):
    """Two calls into one folder at once, of other options: the check for outputs made
    otherwise ran only before any computing, so the call finishing last replaced the other's
    output (its MRC, its record, or one of each) silently, both saying they had denoised it.
    Now each output is checked again as it is written, the folder held: the other call's is
    kept, MRC and record as it left them, that micrograph fails naming it and the fix, and the
    others are written. One made again the same (the same options) is replaced as before."""
    import json
    import logging

    import cryostream
    from cryostream.errors import CryostreamError

    a, b = tiny_run.sim.micrographs[:2]
    out = tmp_path / "out"
    config = DenoiseConfig.raw(tile=64)  # float32
    handler, left = _meanwhile(tiny_run, out, [a], DenoiseConfig.raw(tile=64,
                                                                     output_dtype=other_dtype))
    logger = logging.getLogger("cryostream")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        if other_dtype == "float32":  # the same options: replaced, as a rerun would
            cryostream.denoise(tiny_run.run, [a, b], out, config=config, workers=1)
        else:
            with pytest.raises(CryostreamError) as refused:
                cryostream.denoise(tiny_run.run, [a, b], out, config=config, workers=1)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    mrc, record = out / a.name, out / a.with_suffix(".json").name
    assert mrc.name in left and record.name in left  # the second call finished in between
    assert not list(out.glob(".*.lock"))  # each output's lock file goes with its lock
    if other_dtype == "float32":
        assert json.loads(record.read_text())["config"]["output_dtype"] == "float32"
        assert mrc.stat().st_ino != left[mrc.name][1]  # made again by this call
        return
    assert str(refused.value).startswith(
        f"1 of 2 micrographs: bad ({mrc}: made meanwhile by another call, not as this run's "
        f"output for {a} with these options (made with output_dtype='float16', not 'float32'): "
        "not replaced (--overwrite (Python: overwrite=True) replaces it)); not written: their "
        "outputs were made meanwhile by another call (--overwrite replaces them, or choose "
        "another -o)")  # not the advice for bad micrographs (--permissive does not apply)
    assert (mrc.read_bytes(), record.read_bytes()) == (left[mrc.name][0], left[record.name][0])
    assert json.loads((out / b.with_suffix(".json").name).read_text())["config"][
        "output_dtype"] == "float32"  # the other micrograph: denoised and written


def test_permissive_does_not_skip_an_output_another_call_made_meanwhile(tiny_run, tmp_path):
    """--permissive skips bad micrographs and ends with status 0; an output another call made
    meanwhile with other options is not a bad micrograph and is not written: the call still
    fails naming it (status 2 from the command line), the others written, no STAR file of its
    own, so a script never takes the folder for complete."""
    import logging

    import cryostream
    from cryostream.errors import OutputTakenError

    a, b = tiny_run.sim.micrographs[:2]
    out = tmp_path / "out"
    handler, left = _meanwhile(tiny_run, out, [a], DenoiseConfig.raw(tile=64,
                                                                     output_dtype="float16"))
    logger = logging.getLogger("cryostream")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with pytest.raises(OutputTakenError, match="made meanwhile by another call"):
            cryostream.denoise(tiny_run.run, [a, b], out, config=DenoiseConfig.raw(tile=64),
                               workers=1, permissive=True)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert (out / b.name).exists() and (out / b.with_suffix(".json").name).exists()
    star = out / "denoised_micrographs.star"  # the other call's listing, of its output alone
    assert b.name not in star.read_text()


def _relion_job(folder, kind: str | int, *, finished: bool, outputs=()) -> None:
    """A RELION job folder as RELION leaves it: job.star of ``kind`` (a label, or RELION 3.1's
    number), note.txt, run.out, RELION_JOB_EXIT_SUCCESS where ``finished``, and ``outputs``."""
    folder.mkdir(parents=True)
    (folder / "job.star").write_text(
        f"\n# version 30001\n\ndata_job\n\n_rlnJobType    {kind}\n_rlnJobIsContinue    0\n"
        if isinstance(kind, int) else f"\n# version 50001\n\ndata_job\n\n_rlnJobTypeLabel    "
        f"{kind}\n_rlnJobIsContinue    0\n_rlnJobIsTomo    0\n")
    (folder / "note.txt").write_text(" ++++ Executing new job on Mon Jan 12 10:00:00 2026\n")
    (folder / "run.out").write_text("")
    for name in (*outputs, *(["RELION_JOB_EXIT_SUCCESS"] * finished)):
        (folder / name).write_text("")


def test_denoising_into_another_relion_job_s_folder_is_said_in_one_warning(tiny_run, tmp_path):
    """`denoise -o MotionCorr/job002`, another RELION job's folder, wrote the outputs in among
    that job's without a word, where RELION's clean-up, deletion or rerun of the job takes them.
    Now one warning names the job, its kind and the fix, and denoising goes on (an output
    folder is the user's to choose). A new External job RELION made for cryostream (job.star,
    no outputs yet), that job run again once cryostream finished in it, and a folder of one's
    own in the project get no warning."""
    import shutil
    import warnings

    from cryostream.cli import main
    from cryostream.io.relion_jobs import RelionJobWarning

    def denoise(out) -> list[str]:
        """The command into ``project/out``: its warnings of RELION jobs, as it says them."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RelionJobWarning)
            assert main(["denoise", str(tiny_run.run), str(source), "-o", str(project / out),
                         "--raw", "--tile", "64", "--workers", "1", "--quiet"]) == 0
        assert (project / out / "a.mrc").is_file() and (project / out / "a.json").is_file()
        return [warnings.formatwarning(w.message, w.category, w.filename, w.lineno).rstrip()
                for w in caught if w.category is RelionJobWarning]

    project = tmp_path / "project"
    project.mkdir()
    (project / "default_pipeline.star").write_text("data_pipeline_general\n")
    source = project / "a.mrc"
    shutil.copy(tiny_run.sim.micrographs[0], source)
    _relion_job(project / "MotionCorr" / "job002", "relion.motioncorr.own", finished=True,
                outputs=["corrected_micrographs.star", "logfile.pdf"])
    _relion_job(project / "External" / "job007", "relion.external", finished=True,
                outputs=["coords.star"])
    _relion_job(project / "External" / "job010", "relion.external", finished=False)
    _relion_job(project / "CtfFind" / "job003", 2, finished=True, outputs=["micrographs_ctf.star"])
    said = {out: denoise(out) for out in ("MotionCorr/job002", "MotionCorr/job002/denoised",
                                          "External/job007", "External/job010", "Denoised",
                                          "CtfFind/job003")}
    fix = ("the denoised micrographs go in among that job's files, which RELION takes for the "
           "job's own (cleaning the job up, deleting it or running it again takes them too) and "
           "its pipeline does not list as outputs; denoising goes on, but give the outputs a "
           "folder of their own: a new External job's, or -o DIR outside the job folders")
    assert said.pop("MotionCorr/job002") == [
        f"cryostream: warning: {project / 'MotionCorr/job002'}: the folder of the RELION job "
        f"MotionCorr/job002 (a relion.motioncorr.own job, finished): {fix}"]
    assert said.pop("MotionCorr/job002/denoised") == [
        f"cryostream: warning: {project / 'MotionCorr/job002/denoised'}: inside the folder of "
        f"the RELION job MotionCorr/job002 (a relion.motioncorr.own job, finished): {fix}"]
    assert said.pop("External/job007") == [
        f"cryostream: warning: {project / 'External/job007'}: the folder of the RELION job "
        "External/job007 (an External job that finished (RELION_JOB_EXIT_SUCCESS) with outputs "
        f"of its own: coords.star): {fix}"]
    assert said.pop("CtfFind/job003") == [  # RELION 3.1: the kind by its number, named by its folder
        f"cryostream: warning: {project / 'CtfFind/job003'}: the folder of the RELION job "
        f"CtfFind/job003 (a CtfFind job, finished): {fix}"]
    assert said == {"External/job010": [], "Denoised": []}
    # RELION marks the External job finished; cryostream's rerun there (to resume) is its own
    (project / "External" / "job010" / "RELION_JOB_EXIT_SUCCESS").write_text("")
    assert denoise("External/job010") == []


def test_a_finished_external_job_is_said_to_have_outputs_of_its_own_only_where_it_has(tiny_run,
                                                                                     tmp_path):
    """`denoise -o` a finished External job's folder was warned of as 'an External job that
    finished (RELION_JOB_EXIT_SUCCESS) with outputs of its own' without a look for any: a job
    folder of RELION's files alone was said to have some. Now the warning says so only where
    the folder shows one, and names it: the job's RELION_OUTPUT_NODES.star first, else a STAR
    or MRC file in it or a folder inside it that neither RELION's bookkeeping nor cryostream
    wrote (cryostream's own outputs are not the job's)."""
    import shutil
    import warnings

    import numpy as np

    from cryostream.cli import main
    from cryostream.denoise.outputs import STAR_NAME
    from cryostream.io.relion_jobs import RelionJobWarning
    from tests.conftest import write_mrc

    project = tmp_path / "project"
    project.mkdir()
    (project / "default_pipeline.star").write_text("data_pipeline_general\n")
    source = project / "a.mrc"
    shutil.copy(tiny_run.sim.micrographs[0], source)
    job = project / "External" / "job007"
    _relion_job(job, "relion.external", finished=True)  # job.star, note.txt, run.out alone

    def said() -> str:
        """The command into the job's folder: the part of its warning that says the job."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RelionJobWarning)
            assert main(["denoise", str(tiny_run.run), str(source), "-o", str(job), "--raw",
                         "--tile", "64", "--workers", "1", "--quiet"]) == 0
        (job / STAR_NAME).unlink()  # (its STAR file would make the folder cryostream's own)
        [message] = [str(w.message) for w in caught if w.category is RelionJobWarning]
        return message.split(": the denoised micrographs go in")[0]

    head = f"{job}: the folder of the RELION job External/job007 (an External job that finished " \
        "(RELION_JOB_EXIT_SUCCESS)"
    assert said() == f"{head})"
    # a.mrc, which cryostream wrote there, is none of the job's; an image of its own is
    assert (job / "a.mrc").is_file() and said() == f"{head})"
    (job / "Movies").mkdir()
    write_mrc(job / "Movies" / "m.mrc", np.ones((8, 8), np.float32))
    assert said() == f"{head} with outputs of its own: Movies/m.mrc)"
    (job / "RELION_OUTPUT_NODES.star").write_text("data_output_nodes\n")  # its own listing
    assert said() == f"{head} with outputs of its own: RELION_OUTPUT_NODES.star)"


def test_a_finished_external_job_s_own_outputs_in_a_folder_inside_it_are_its_own(tmp_path):
    """An External job that ran cryostream with ``-o External/job007/denoised`` (a folder
    inside the job's) and finished: running the same command again, to resume or add to it,
    was warned of as another job's folder 'with outputs of its own', since only the job's own
    folder was looked in for cryostream's denoised_micrographs.star. The folders from ``-o``
    up to the job's are looked in; a finished External job whose folder holds none of them is
    still warned of, and the project folder never is."""
    import warnings

    from cryostream.denoise.outputs import STAR_NAME
    from cryostream.io.relion_jobs import RelionJobWarning, warn_other_job

    project = tmp_path / "project"
    project.mkdir()
    (project / "default_pipeline.star").write_text("data_pipeline_general\n")
    job = project / "External" / "job007"
    _relion_job(job, "relion.external", finished=True)
    (job / "denoised").mkdir()
    (job / "denoised" / STAR_NAME).write_text("")
    (job / "other").mkdir()

    def said(output) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warn_other_job(output, (STAR_NAME,))
        return [str(w.message).split(" (")[0] for w in caught if w.category is RelionJobWarning]

    assert said(job / "denoised") == []
    assert said(job / "denoised" / "more") == []  # not made yet, inside that folder
    assert said(project) == [] and said(project / "Denoised") == []
    assert said(job / "other") == [f"{job / 'other'}: inside the folder of the RELION job "
                                   "External/job007"]


def test_a_finished_job_whose_nodes_file_lists_only_cryostream_s_star_file_is_its_own(tmp_path):
    """A finished External job whose RELION_OUTPUT_NODES.star lists only
    denoised_micrographs.star, as cryostream-relion leaves it, that STAR file gone (deleted, or
    set aside by a run that failed): denoise -o into it was warned of as another job's folder
    'with outputs of its own: RELION_OUTPUT_NODES.star'. The job is cryostream's own; a nodes
    file listing another program's output is still warned of, naming it."""
    import warnings

    from cryostream.denoise.outputs import STAR_NAME
    from cryostream.io.relion_jobs import RelionJobWarning, warn_other_job

    project = tmp_path / "project"
    project.mkdir()
    (project / "default_pipeline.star").write_text("data_pipeline_general\n")
    job = project / "External" / "job010"
    _relion_job(job, "relion.external", finished=True)
    nodes = ("\n# version 30001\n\ndata_output_nodes\n\nloop_\n_rlnPipeLineNodeName #1\n"
             "_rlnPipeLineNodeTypeLabel #2\n{} MicrographGroupMetadata.star.relion\n\n")
    (job / "RELION_OUTPUT_NODES.star").write_text(nodes.format(f"External/job010/{STAR_NAME}"))

    def said() -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warn_other_job(job, (STAR_NAME,))
        return [str(w.message).split(": the denoised")[0] for w in caught
                if w.category is RelionJobWarning]

    assert said() == []
    (job / "RELION_OUTPUT_NODES.star").write_text(nodes.format("External/job010/picks.star"))
    assert said() == [f"{job}: the folder of the RELION job External/job010 (an External job "
                      "that finished (RELION_JOB_EXIT_SUCCESS) with outputs of its own: "
                      "RELION_OUTPUT_NODES.star)"]


def test_a_relion_3_0_job_is_known_by_its_run_job(tmp_path):
    """RELION 3.0's job folders hold ``run.job`` (``job_type == 1``), no job.star: a
    MotionCorr job's was taken for an External job, said as 'an External job that finished …
    with outputs of its own' once finished and not at all while it ran. Its kind is read from
    run.job, named by its folder as RELION 3.1's number is; an External job's (99) is as any
    External job's."""
    import warnings

    from cryostream.denoise.outputs import STAR_NAME
    from cryostream.io.relion_jobs import RelionJobWarning, relion_job, warn_other_job

    project = tmp_path / "project"
    project.mkdir()
    (project / "default_pipeline.star").write_text("data_pipeline_general\n")
    for folder, number, finished in (("MotionCorr/job002", 1, True), ("MotionCorr/job003", 1, False),
                                     ("External/job004", 99, False)):
        (project / folder).mkdir(parents=True)
        (project / folder / "run.job").write_text(
            f"job_type == {number}\nis_continue == false\nInput movies STAR file: == "
            "Import/job001/movies.star\n")
        if finished:
            (project / folder / "RELION_JOB_EXIT_SUCCESS").write_text("")
    assert [(j.kind, j.external, j.finished) for j in map(relion_job, (
        project / "MotionCorr/job002", project / "MotionCorr/job003", project / "External/job004"))] \
        == [("MotionCorr", False, True), ("MotionCorr", False, False), ("External", True, False)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for folder in ("MotionCorr/job002", "MotionCorr/job003", "External/job004"):
            warn_other_job(project / folder, (STAR_NAME,))
    assert [str(w.message).split("): ")[0] for w in caught if w.category is RelionJobWarning] == [
        f"{project / 'MotionCorr/job002'}: the folder of the RELION job MotionCorr/job002 (a "
        "MotionCorr job, finished",
        f"{project / 'MotionCorr/job003'}: the folder of the RELION job MotionCorr/job003 (a "
        "MotionCorr job"]


def test_what_an_earlier_output_was_made_with_is_said_in_a_users_words():
    """On/off options are said on or off and an option cryostream chose the default (a RELION
    External job's run.err said ``ensemble=False, not True`` and ``tile None, not 512``, Python's
    words for rows that said ``no`` and no row at all; then ``tile unset, not 512``, and
    evaluate's report ``tile 56, not unset``); other values as before."""
    from cryostream.denoise.outputs import what_differs

    said = what_differs({"config": {"tile": None, "ensemble": False, "output_dtype": "float32"}},
                        {"config": {"tile": 512, "ensemble": True, "output_dtype": "float16"}})
    assert said == (" (made with ensemble off, not on; output_dtype='float32', not 'float16'; "
                    "the default tile, not 512)")
    assert what_differs({"config": {"tile": 56}}, {"config": {"tile": None}}) == (
        " (made with tile 56, not the default)")


def test_an_output_made_with_a_star_file_s_defocus_is_said_so_when_refused(tiny_run, tmp_path,
                                                                           capsys):
    """A micrograph denoised from a CtfFind-like STAR file (its defocus and pixel size), then the
    same micrograph given as its MRC file into the same folder: the refusal said only 'made
    with another pixel size, defocus or odd half', leaving which to guess; it names the STAR
    file's defocus and pixel size against this call's (fitted; the header's) now."""
    import shutil

    from cryostream.cli import main

    sim = tmp_path / "sim"
    shutil.copytree(tiny_run.sim.root, sim)
    out = tmp_path / "out"
    options = ["-o", str(out), "--raw", "--tile", "64", "--workers", "1"]
    assert main(["denoise", str(tiny_run.run), str(sim / "micrographs.star"), *options]) == 0
    capsys.readouterr()
    assert main(["denoise", str(tiny_run.run), str(sim / "micrographs" / "sim_0000.mrc"),
                 *options]) == 2
    line = capsys.readouterr().err.splitlines()[-1]
    assert "another pixel size, defocus or odd half" not in line, line
    assert re.search(r"\(made with the pixel size [0-9.]+ Å \(STAR file\), not of its header; "
                     r"the defocus \d+/\d+ Å \(its STAR file's or cryoSPARC table's\), not the "
                     r"defocus fitted from its spectrum \(none given\)\); pass --overwrite", line), line


def test_overwrite_refuses_outputs_made_read_only_before_any_work(tiny_run, tmp_path, capsys):
    """``--overwrite`` replaced an output the user had made read-only (``chmod a-w``) without a
    word. Now such an output, its ``NAME.json`` or the folder's STAR file is named before any
    work, with the fix, and nothing in the folder changes; a read-only output this call keeps
    (the same run and options: resumed) is no reason to refuse, nor a read-only STAR file
    where no output is replaced (it had been, though the call left it as it was), and once
    writable the same command replaces them. Told by the mode bits, so root (who may write
    anything) is refused too."""
    import json

    import cryostream
    from cryostream.cli import main
    from cryostream.denoise.outputs import STAR_NAME

    a, b = tiny_run.sim.micrographs[:2]
    out = tmp_path / "out"
    cryostream.denoise(tiny_run.run, [a, b], out, config=DenoiseConfig.raw(tile=64), workers=1)
    names = [f"{m.stem}{ext}" for m in (a, b) for ext in (".mrc", ".json")] + [STAR_NAME]

    def kept():
        return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out.iterdir())}

    def read_only(*chosen):
        for name in names:
            (out / name).chmod(0o444 if name in chosen else 0o644)

    argv = ["denoise", str(tiny_run.run), str(a), str(b), "-o", str(out), "--raw", "--tile",
            "64", "--workers", "1", "--dtype", "float16", "--overwrite"]
    read_only(a.name)
    before = kept()
    capsys.readouterr()
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"cryostream denoise: error: {out / a.name}: read-only, and this call would replace it; "
        f"make it writable (chmod u+w {out / a.name}) to replace it, or choose another output "
        "folder: -o DIR")
    assert kept() == before
    read_only(*names)  # every one, the STAR file too: the first three named, and the count
    with pytest.raises(cryostream.CryostreamError) as refused:
        cryostream.denoise(tiny_run.run, [a, b], out, overwrite=True, workers=1,
                           config=DenoiseConfig.raw(tile=64, output_dtype="float16"))
    assert str(refused.value) == (
        f"5 read-only files ({out / names[0]}, {out / names[1]}, {out / names[2]} and 2 more): "
        "this call would replace them; make them writable (chmod u+w FILE) to replace them, or "
        "choose another output folder: -o DIR (Python: output=DIR)")
    assert kept() == before
    read_only(a.name)  # kept by the same command resumed: not a reason to refuse
    assert main([*argv[:-3], "--overwrite"]) == 0
    assert kept()[a.name] == before[a.name]
    read_only(STAR_NAME)  # no output replaced: the STAR file neither (resumed), as without it
    assert main([*argv[:-3], "--overwrite"]) == 0
    assert kept()[STAR_NAME] == before[STAR_NAME]
    assert main(argv) == 2  # outputs replaced: the STAR file listing them is refused
    assert f"{out / STAR_NAME}: read-only, and this call would replace it" in \
        capsys.readouterr().err
    assert kept() == before
    read_only()  # writable again: replaced
    assert main(argv) == 0
    assert kept()[a.name] != before[a.name] and json.loads((out / f"{a.stem}.json").read_text())[
        "config"]["output_dtype"] == "float16"


def test_what_differs_in_a_given_value_is_said_to_what_tells_them_apart():
    """The refusal's words for what came with an input (``given``), from records as denoise
    writes them: two defoci alike to the Å were said as the same numbers twice ("the defocus
    18053/17972 Å …, not the defocus 18053/17972 Å …"), and a pixel size given by the option
    was said to come from "argument"."""
    from cryostream.denoise.given import given_differs

    defocus = {"defocus_u_angstrom": 18053.2, "defocus_v_angstrom": 17972.0, "angle_deg": 12.5}
    turned = {"defocus": {**defocus, "angle_deg": 40.0}}
    assert given_differs({"defocus": defocus}, turned) == [
        "the defocus angle 12.5°, not 40° (its STAR file's or cryoSPARC table's)"]
    assert given_differs({"defocus": defocus},
                         {"defocus": {**defocus, "defocus_u_angstrom": 18053.4}}) == [
        "the defocus 18053.20/17972.00 Å, not 18053.40/17972.00 Å (its STAR file's or "
        "cryoSPARC table's)"]
    assert given_differs({"pixel_size_angstrom": 1.2, "pixel_size_from": "argument"}, None) == [
        "the pixel size 1.2 Å (from --pixel-size; Python: pixel_size_angstrom=), not of its "
        "header"]
