"""``cryostream-relion``, denoise as a RELION External job (cryostream.cli.relion_external): run
as RELION runs it, from the project folder with ``--o External/job010/ --in_mics … --j N
--pipeline_control External/job010/`` and the Params tab's pairs, it leaves the job's folder as
RELION reads it. Real MRC and STAR files from ``simulate``, the real command in-process."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import starfile

import cryostream
from cryostream.cli.relion_external import PROG, denoise_argv, main
from cryostream.config import SimulateConfig
from cryostream.io.relion_jobs import RelionJobWarning

JOB = "External/job010"
NODES = f"""# version 30001

data_output_nodes

loop_
_rlnPipeLineNodeName #1
_rlnPipeLineNodeTypeLabel #2
{JOB}/denoised_micrographs.star MicrographGroupMetadata.star.relion

"""


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A RELION project, the working directory: two simulated micrographs listed by
    ``CtfFind/job003/micrographs_ctf.star`` (names relative to the project), simulate's
    particles STAR file, and the new External job RELION made (job.star, note.txt, run.out)."""
    root = tmp_path / "project"
    cryostream.simulate(root, 2, config=SimulateConfig(shape=(160, 128), seed=3))
    (root / "default_pipeline.star").write_text("data_pipeline_general\n")
    (root / "CtfFind/job003").mkdir(parents=True)
    (root / "micrographs.star").rename(root / "CtfFind/job003/micrographs_ctf.star")
    job = root / JOB
    job.mkdir(parents=True)
    (job / "job.star").write_text("\n# version 50001\n\ndata_job\n\n_rlnJobTypeLabel    "
                                  "relion.external\n_rlnJobIsContinue    0\n_rlnJobIsTomo    0\n")
    (job / "note.txt").write_text(" ++++ Executing new job on Sun Dec 6 10:00:00 2026\n")
    (job / "run.out").write_text("")
    monkeypatch.chdir(root)
    return root


def _relion(tiny_run, *params: str, mics: str = "CtfFind/job003/micrographs_ctf.star",
            threads: str = "1") -> tuple[int, list[str]]:
    """The External job's call, as RELION makes it, with the tiny run as the Params tab's
    model: its status and the RELION job warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RelionJobWarning)
        status = main(["--o", f"{JOB}/", "--in_mics", mics, "--j", threads, "--pipeline_control",
                       f"{JOB}/", "--model", str(tiny_run.run), "--raw", "yes", "--tile", "64",
                       "--workers", "1", *params])
    return status, [str(w.message) for w in caught if w.category is RelionJobWarning]


def _exits(project: Path) -> list[str]:
    return sorted(p.name for p in (project / JOB).glob("RELION_JOB_EXIT_*"))


def test_the_job_lists_every_micrograph_and_tells_relion_it_succeeded(tiny_run, project):
    """The job's folder gets the denoised micrographs, denoised_micrographs.star listing each
    (named from the project), RELION_OUTPUT_NODES.star listing that STAR file as a micrographs
    node, and RELION_JOB_EXIT_SUCCESS; an earlier run's RELION_JOB_EXIT_FAILURE is gone."""
    (project / JOB / "RELION_JOB_EXIT_FAILURE").write_text("")  # an earlier run's
    status, said = _relion(tiny_run)
    assert status == 0 and said == []
    job = project / JOB
    assert (job / "RELION_OUTPUT_NODES.star").read_text() == NODES
    assert _exits(project) == ["RELION_JOB_EXIT_SUCCESS"]
    rows = starfile.read(job / "denoised_micrographs.star", always_dict=True)["micrographs"]
    assert list(rows["rlnMicrographName"]) == [f"{JOB}/sim_000{i}.mrc" for i in range(2)]
    assert all((project / name).is_file() for name in rows["rlnMicrographName"])
    assert sorted(p.name for p in job.glob(".*")) == []  # no temporary file left


def test_a_refused_input_fails_the_job_with_one_line_and_no_nodes_file(tiny_run, project,
                                                                        capsys):
    """A refused call ends with status 2, RELION_JOB_EXIT_FAILURE, one error line on stderr
    (RELION's run.err) and no RELION_OUTPUT_NODES.star, an earlier run's SUCCESS and nodes
    file removed: denoise's own refusal (a particles STAR file as the micrographs), a Params
    row that is no option of denoise, a value denoise's parser refuses, and RELION's particles
    input."""
    job = project / JOB
    for call, error in (
            ({"mics": "particles.star"}, "cryostream denoise: error: particles.star"),
            ({"params": ("--tiles", "64")}, "cryostream-relion: error: Params: --tiles is no "
             "option of cryostream denoise; did you mean tile? (see cryostream denoise --help)"),
            ({"params": ("--calibrate", "many")}, "cryostream denoise: error: argument "
             "--calibrate: invalid int value: 'many'"),
            ({"params": ("--in_parts", "Extract/job007/particles.star")},
             "cryostream-relion: error: --in_parts Extract/job007/particles.star: cryostream "
             "denoises micrographs; leave the Input tab's 'Input particles' empty")):
        (job / "RELION_JOB_EXIT_SUCCESS").write_text("")  # an earlier run's
        (job / "RELION_OUTPUT_NODES.star").write_text(NODES)
        capsys.readouterr()
        status, _ = _relion(tiny_run, *call.get("params", ()),
                            **{k: v for k, v in call.items() if k != "params"})
        lines = capsys.readouterr().err.splitlines()
        assert status == 2, call
        assert [line for line in lines if "error" in line] == lines[-1:], lines
        assert lines[-1].startswith(error), (lines[-1], error)
        assert _exits(project) == ["RELION_JOB_EXIT_FAILURE"]
        assert not (job / "RELION_OUTPUT_NODES.star").exists()
        assert not (job / "denoised_micrographs.star").exists()


def test_running_the_job_again_keeps_its_outputs_and_warns_of_no_other_job(tiny_run, project,
                                                                         capsys):
    """RELION runs the finished job again (its SUCCESS, nodes file and outputs there): the
    outputs are kept, no warning takes the job for another's, and the job succeeds again."""
    assert _relion(tiny_run) == (0, [])
    capsys.readouterr()
    assert _relion(tiny_run) == (0, [])
    assert "(2 finished earlier, kept)" in capsys.readouterr().out
    assert (project / JOB / "RELION_OUTPUT_NODES.star").read_text() == NODES
    assert _exits(project) == ["RELION_JOB_EXIT_SUCCESS"]


def test_params_rows_and_threads_reach_denoise_as_its_options(tiny_run, project):
    """A Params row is denoise's option, named with or without dashes, ``_`` for ``-``: a
    value option with its value, an on/off one on for yes (or an empty value) and off for no
    (``ensemble no``: --no-ensemble), ``odd yes`` --odd alone; the Running tab's threads are
    --workers where more than 1, unless a Params row gives --workers. Run, ``--suffix`` names
    the outputs."""
    base = ["--o", f"{JOB}/", "--in_mics", "in.star", "--pipeline_control", f"{JOB}/"]
    head = ["denoise", "in.star", "-o", f"{JOB}/"]
    assert denoise_argv([*base, "--j", "4", "--batch_size", "8", "--ensemble", "no", "--raw",
                         "--odd", "yes", "--no-ctf-gain", "false", "--keep_extended_header",
                         "no"]) == [*head, "--workers", "4", "--batch-size", "8",
                                    "--no-ensemble", "--raw", "--odd", "--ctf-gain"]
    assert denoise_argv([*base, "--j", "1"]) == head
    assert denoise_argv([*base, "--j", "4", "--workers", "1"]) == [*head, "--workers", "1"]
    status, said = _relion(tiny_run, "--suffix", "_den", threads="3")
    assert status == 0 and said == []
    rows = starfile.read(project / JOB / "denoised_micrographs.star",
                         always_dict=True)["micrographs"]
    assert list(rows["rlnMicrographName"]) == [f"{JOB}/sim_000{i}_den.mrc" for i in range(2)]


def test_relion_abort_stops_after_the_micrograph_in_progress_and_marks_the_job_aborted(
        tiny_run, project, capsys):
    """RELION's *Abort running* makes RELION_JOB_ABORT_NOW in the job's folder (here once the
    first micrograph's note is out): the job stops as at a first Ctrl-C, the micrograph in
    progress finished whole and the last one never started; it leaves RELION_JOB_EXIT_ABORTED,
    no SUCCESS, no nodes file and no STAR file, removes RELION_JOB_ABORT_NOW and ends with
    status 130. One left by an earlier run is removed at the start, not taken as an abort."""
    import logging

    import mrcfile

    job = project / JOB
    (job / "RELION_JOB_ABORT_NOW").write_text("")  # an earlier run's
    cryostream.simulate(project / "big", 3, config=SimulateConfig(shape=(768, 768), seed=4))
    star = project / "big/micrographs.star"
    star.write_text(star.read_text().replace("micrographs/sim_", "big/micrographs/sim_"))

    class AbortAfterFirst(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("denoised 1/"):
                (job / "RELION_JOB_ABORT_NOW").write_text("")  # as RELION's GUI does

    handler, log = AbortAfterFirst(logging.INFO), logging.getLogger("cryostream")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        status, _ = _relion(tiny_run, mics="big/micrographs.star")
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    err = capsys.readouterr().err
    assert status == 130, err
    assert _exits(project) == ["RELION_JOB_EXIT_ABORTED"]
    assert not (job / "RELION_JOB_ABORT_NOW").exists()
    assert not (job / "RELION_OUTPUT_NODES.star").exists()
    assert not (job / "denoised_micrographs.star").exists()
    written = sorted(p.name for p in job.glob("sim_*.mrc"))
    assert written[0] == "sim_0000.mrc" and "sim_0002.mrc" not in written, written
    for name in written:  # each finished whole
        assert mrcfile.read(job / name).shape == (768, 768)
        assert (job / name).with_suffix(".json").is_file()
    assert sorted(p.name for p in job.glob(".*")) == []  # no temporary file left
    lines = err.splitlines()
    assert f"{PROG}: {JOB}/RELION_JOB_ABORT_NOW found (RELION's Abort running): stopping " \
        "denoise after the micrographs in progress" in lines, err
    assert lines[-1] == (f"{PROG}: aborted ({JOB}/RELION_JOB_EXIT_ABORTED); the finished "
                         "micrographs are kept: run the job again to denoise the rest")
    # denoise's own lines say it in RELION's terms: no Ctrl-C, no command typed again
    import re

    assert any(re.fullmatch(  # how many are in progress, and about how long they take
        r"cryostream denoise: stopping after the (?:micrograph|\d+ micrographs) in progress "
        r"\((?:about \d+ s; |under 1 s; )?(?:it|each) is written whole or not at all\)", line)
        for line in lines), err
    assert any(line.startswith("cryostream denoise: interrupted after ") and line.endswith(
        "run the job again to denoise the rest (it skips the finished ones) and write "
        "denoised_micrographs.star") for line in lines), err
    assert "Ctrl-C" not in err and "same command" not in err


def test_notes_go_to_run_out_and_another_kind_of_job_is_left_as_it_was(tiny_run, project,
                                                                       capsys):
    """RELION shows run.err as errors: denoise's notes (one per micrograph) go to stdout, its
    run.out, and only warnings and errors to stderr. An --o that is another kind of job's
    folder (MotionCorr/job002/ typed by hand) is refused in one line before anything in it is
    changed: its RELION_JOB_EXIT_SUCCESS stays, no EXIT file or nodes file of ours is left."""
    status, _ = _relion(tiny_run)
    out, err = capsys.readouterr()
    assert status == 0
    assert "cryostream: denoised 1/2 sim_0000.mrc" in out and "denoised 1/2" not in err, err
    motion = project / "MotionCorr/job002"
    motion.mkdir(parents=True)
    (motion / "job.star").write_text("data_job\n\n_rlnJobTypeLabel relion.motioncorr.own\n")
    (motion / "RELION_JOB_EXIT_SUCCESS").write_text("")
    status = main(["--o", "MotionCorr/job002/", "--in_mics", "CtfFind/job003/micrographs_ctf.star",
                   "--j", "1", "--pipeline_control", "MotionCorr/job002/",
                   "--model", str(tiny_run.run)])
    err = capsys.readouterr().err
    assert status == 2
    assert err.splitlines() == [
        f"{PROG}: error: --o MotionCorr/job002: MotionCorr/job002 is a relion.motioncorr.own "
        "job's folder, not an External job's; nothing was changed in it. Run cryostream-relion "
        "as a RELION External job (RELION gives the job's own folder as --o), or give --o a "
        "folder of its own"]
    assert sorted(p.name for p in motion.iterdir()) == ["RELION_JOB_EXIT_SUCCESS", "job.star"]


def test_a_second_signal_still_leaves_the_exit_file_relion_waits_for(tiny_run, project):
    """A second signal ends the process at once (no cleanup of Python's runs after it): the
    job's RELION_JOB_EXIT_FAILURE is written on the way out all the same, or RELION would show
    the job running for ever. A child process, a real SIGINT (as the abort sends it), then a
    SIGTERM while the micrograph in progress is finished."""
    import signal

    from faults_support import wait_until

    cryostream.simulate(project / "big", 3, config=SimulateConfig(shape=(1024, 1024), seed=4))
    star = project / "big/micrographs.star"
    star.write_text(star.read_text().replace("micrographs/sim_", "big/micrographs/sim_"))
    proc = _job_process("big/micrographs.star", "--model", str(tiny_run.run), "--raw", "yes",
                        "--tile", "64", "--workers", "1")
    said: list[str] = []  # run.err, read as it comes
    reader = threading.Thread(target=lambda: said.extend(iter(lambda: proc.stderr.read(1), "")))
    reader.start()
    try:
        for line in proc.stdout:  # the notes: run.out
            if "denoised 1/3" in line:
                break
        time.sleep(0.5)  # the second under way (its note came as the first's job ended)
        proc.send_signal(signal.SIGINT)
        # the second once the first is taken (two handled together are one signal sent twice)
        assert wait_until(proc, lambda: "stopping after" in "".join(said), timeout=120), said
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        proc.stdout.read()  # to the end: the process has ended
        proc.wait(timeout=120)
    finally:
        proc.kill()
        reader.join(timeout=10)
    err = "".join(said)
    assert proc.returncode == 130, err
    assert "terminated at once (SIGTERM after Ctrl-C)" in err, err
    assert _exits(project) == ["RELION_JOB_EXIT_FAILURE"]
    assert not (project / JOB / "RELION_OUTPUT_NODES.star").exists()


def test_sigterm_ends_the_job_at_once_and_leaves_its_exit_file(project):
    """A queue's time limit or `scancel` (SIGTERM) while the job denoises two micrographs of
    2048² on a CPU (a minute or more each): it waited for them to finish, and Slurm's SIGKILL
    30 s after its SIGTERM then left no RELION_JOB_EXIT file (RELION shows such a job running
    for ever) and no line saying what was kept. Now the job ends within seconds with status
    143 and RELION_JOB_EXIT_FAILURE: those in progress are given up (no output, no partial
    file), the one finished kept whole with its record, no STAR or nodes file written."""
    import re
    import signal

    import mrcfile
    from faults_support import small_then_large

    small_then_large(project / "mix", small=256)  # the small one done in seconds
    proc = _job_process("micrographs.star", "--ensemble", "no", j="2")
    said: list[str] = []  # run.err, read as it comes
    reader = threading.Thread(target=lambda: said.extend(iter(lambda: proc.stderr.read(1), "")))
    reader.start()
    try:
        for line in proc.stdout:  # the notes: run.out
            if "denoised 1/3 a_small.mrc" in line:
                break
        time.sleep(1)  # both large ones under way
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        seconds = time.monotonic() - sent
    finally:
        proc.kill()
        reader.join(timeout=10)
    err = "".join(said)
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert seconds < 8, (seconds, err)
    assert _exits(project) == ["RELION_JOB_EXIT_FAILURE"]
    job = project / JOB
    assert sorted(p.name for p in job.iterdir()) == [
        "RELION_JOB_EXIT_FAILURE", "a_small.json", "a_small.mrc", "job.star", "note.txt",
        "run.out"]
    assert mrcfile.read(job / "a_small.mrc").shape == (256, 256)
    assert re.sub(r"after \d+ s", "after N s", err.splitlines()[-1]) == (
        f"cryostream denoise: terminated (SIGTERM) after N s; the finished micrographs are kept "
        f"in {JOB}/; those in progress are not written: run the job again to denoise the rest "
        "(it skips the finished ones) and write denoised_micrographs.star"), err


def _job_process(mics: str, *params: str, j: str = "1") -> subprocess.Popen:
    """``cryostream-relion`` as RELION starts it, in a child process run from the project
    folder (the working directory), its stdout (run.out) and stderr (run.err) as pipes."""
    from faults_support import child_environment

    return subprocess.Popen(
        [sys.executable, "-c", "from cryostream.cli.relion_external import main; "
         "raise SystemExit(main())", "--o", f"{JOB}/", "--in_mics", mics, "--j", j,
         "--pipeline_control", f"{JOB}/", *params], env=child_environment(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_additional_arguments_another_programs_job_and_a_nodes_file_that_cannot_be_written(
        tiny_run, project, capsys):
    """The Running tab's *Additional arguments* come after --j's value: they go to denoise as
    typed (they had made '--j needs one value (1 -v)'). An External job of another program
    (its nodes file lists its own outputs) is refused before its SUCCESS and nodes file are
    touched. And a nodes file that cannot be written leaves FAILURE and status 2, not a job
    RELION shows running for ever."""
    base = ["--o", f"{JOB}/", "--in_mics", "CtfFind/job003/micrographs_ctf.star"]
    assert denoise_argv([*base, "--j", "1", "-v", "--pipeline_control", f"{JOB}/"]) == [
        "denoise", "CtfFind/job003/micrographs_ctf.star", "-o", f"{JOB}/", "-v"]
    # a long option among them is read as a Params row would be: the same option
    assert sorted(denoise_argv([*base, "--j", "3", "-v", "--quiet"])[-4:]) == sorted([
        "--workers", "3", "-v", "--quiet"])
    cryolo = project / "External/job005"
    cryolo.mkdir(parents=True)
    (cryolo / "job.star").write_text("data_job\n\n_rlnJobTypeLabel relion.external\n")
    nodes = "data_output_nodes\nloop_\n_rlnPipeLineNodeName #1\n_rlnPipeLineNodeTypeLabel #2\n" \
        "External/job005/autopick.star MicrographsCoords.star.relion.autopick\n"
    (cryolo / "RELION_OUTPUT_NODES.star").write_text(nodes)
    (cryolo / "RELION_JOB_EXIT_SUCCESS").write_text("")
    capsys.readouterr()
    assert main(["--o", "External/job005/", "--in_mics", "CtfFind/job003/micrographs_ctf.star",
                 "--j", "1", "--model", str(tiny_run.run)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{PROG}: error: --o External/job005: External/job005 is another program's External "
        "job (its RELION_OUTPUT_NODES.star lists External/job005/autopick.star); nothing was "
        "changed in it. Make a new External job for cryostream-relion"]
    assert (cryolo / "RELION_OUTPUT_NODES.star").read_text() == nodes
    assert (cryolo / "RELION_JOB_EXIT_SUCCESS").is_file()
    (project / JOB / "RELION_OUTPUT_NODES.star").mkdir()  # in the way of the nodes file
    status, _ = _relion(tiny_run)
    err = capsys.readouterr().err
    assert status == 2, err
    assert _exits(project) == ["RELION_JOB_EXIT_FAILURE"]
    assert err.splitlines()[-1].startswith(f"{PROG}: error: the job's folder {JOB}"), err


def _tree(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its time of modification (ns)."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_help_prints_a_usage_and_no_arguments_print_it_as_an_error(project, capsys):
    """``cryostream-relion --help`` and ``-h`` had been refused ("'-h' before any --NAME",
    status 2): they print what the program is, how RELION calls it and the options it takes,
    with status 0, and touch no folder; run with no arguments it prints the same on stderr,
    status 2. A real process for --help and no arguments, as a terminal runs them."""
    import subprocess
    import sys

    from faults_support import child_environment

    before = _tree(project)
    call = [sys.executable, "-c", "from cryostream.cli.relion_external import main; "
            "raise SystemExit(main())"]
    shown = subprocess.run([*call, "--help"], cwd=project, env=child_environment(),
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    text = shown.stdout
    assert text.startswith(f"usage: {PROG} --o JOB_FOLDER --in_mics MICROGRAPHS.star [--j N] "
                           "[--NAME VALUE ...]\n"), text
    assert "cryostream denoise as a RELION (4, 5) External job" in text
    for option in ("--o FOLDER", "--in_mics STAR", "--j N", "--pipeline_control", "--NAME VALUE"):
        assert f"\n  {option}" in text, option
    assert "docs/guide/relion.md" in text and "cryostream denoise --help" in text
    assert main(["-h"]) == 0
    assert capsys.readouterr() == (text, "")
    bare = subprocess.run(call, cwd=project, env=child_environment(), capture_output=True,
                          text=True, timeout=120)
    assert (bare.returncode, bare.stdout, bare.stderr) == (2, "", text)
    assert _tree(project) == before  # no EXIT file, no folder made or changed


def test_denoise_by_hand_into_a_finished_jobs_folder_says_it_changed_that_job(tiny_run, project,
                                                                                capsys):
    """After the External job succeeded, ``cryostream denoise other.star -o External/job010``
    typed by hand added the other micrographs to the job's denoised_micrographs.star, which
    RELION had taken as the job's output, with only the note that earlier rows were kept: the
    warning now says the job had finished and its outputs changed behind RELION's back."""
    import shutil

    from cryostream.cli import main as cryostream_main

    assert _relion(tiny_run)[0] == 0
    other = project / "Other"
    cryostream.simulate(other, 1, config=SimulateConfig(shape=(160, 128), seed=9))
    shutil.move(other / "micrographs/sim_0000.mrc", other / "micrographs/new_0000.mrc")
    star = other / "micrographs.star"
    star.write_text(star.read_text().replace("micrographs/sim_0000", "Other/micrographs/new_0000"))
    capsys.readouterr()
    assert cryostream_main(["denoise", str(star.relative_to(project)), "-o", JOB, "--model",
                            str(tiny_run.run), "--raw", "--tile", "64", "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert f"{JOB} is the RELION job {JOB}, which had finished (RELION_JOB_EXIT_SUCCESS): RELION " \
        "took its outputs as they were, and this call changed them behind its back" in err, err
    # the job run again from RELION (its EXIT files cleared first) is not warned of
    assert _relion(tiny_run)[0] == 0
    assert "behind its back" not in capsys.readouterr().err


def test_run_outside_the_project_folder_says_where_to_run_it(tiny_run, project, monkeypatch,
                                                             capsys):
    """Run from another folder than the project's, the job's --in_mics (relative to the
    project) had been 'no such file; check the path or the glob', with nothing on why."""
    monkeypatch.chdir(project.parent)
    status = main(["--o", f"{JOB}/", "--in_mics", "CtfFind/job003/micrographs_ctf.star", "--j",
                   "1", "--pipeline_control", f"{JOB}/", "--model", str(tiny_run.run)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err == [
        f"{PROG}: error: --in_mics CtfFind/job003/micrographs_ctf.star: no such file in "
        f"{project.parent}, which is no RELION project folder (no default_pipeline.star); RELION "
        f"runs an External job from its project folder: run {PROG} from there"], err
    assert not (project.parent / "External").exists()


def _row(line: str, label: str) -> list[str]:
    """The Params row ``label`` that ``line`` advises (``a Params row `overwrite` `yes```), as
    RELION passes it: ``["--overwrite", "yes"]``."""
    import re

    found = re.search(rf"a Params row `{label}` `([^`]*)`", line)
    assert found, (label, line)
    return [f"--{label}", found.group(1)]


def test_the_job_s_errors_advise_params_rows_and_a_new_job_not_options(tiny_run, project,
                                                                       capsys):
    """run.err had said "pass --overwrite … or choose another output folder: -o DIR" and
    "(--permissive skips them)", which a RELION user, who sets Params rows and types no
    command, cannot follow. The job run again with another Params row (dtype float16) says to
    add the row `overwrite` `yes` or make a new External job, and the row it names, added as
    RELION passes it, lets the job succeed; a micrograph that cannot be denoised is said to be
    skipped by the row `permissive` `yes`, which, added, does so. No option is named."""
    import numpy as np
    from conftest import write_mrc

    from cryostream.denoise.star_out import UnlistedOutputWarning
    from cryostream.io.stack import MicrographSkippedWarning

    assert _relion(tiny_run)[0] == 0
    capsys.readouterr()
    status, _ = _relion(tiny_run, "--dtype", "float16")
    out, err = capsys.readouterr()
    last = err.splitlines()[-1]
    assert status == 2 and _exits(project) == ["RELION_JOB_EXIT_FAILURE"], err
    assert last.startswith(f"cryostream denoise: error: {JOB}/sim_0000.mrc exists and is not "
                           "this run's output"), last
    assert "(made with `dtype` `float32`, not 'float16')" in last, last
    assert last.endswith("; add a Params row `overwrite` `yes` to replace it, or make a new "
                         "External job"), last
    assert "--" not in err and "-o DIR" not in err, err
    assert _relion(tiny_run, "--dtype", "float16", *_row(last, "overwrite"))[0] == 0
    assert _exits(project) == ["RELION_JOB_EXIT_SUCCESS"]
    write_mrc(project / "micrographs/sim_0001.mrc", np.zeros((160, 128), np.float32))
    capsys.readouterr()
    status, _ = _relion(tiny_run, "--dtype", "float16")
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert status == 2 and "is constant" in last, err
    assert "a Params row `permissive` `yes`" in last and "--" not in err, err
    with warnings.catch_warnings():  # the micrograph skipped, with a warning, and its earlier
        warnings.simplefilter("always", MicrographSkippedWarning)  # output kept on disk,
        warnings.simplefilter("always", UnlistedOutputWarning)  # not listed, with another
        assert _relion(tiny_run, "--dtype", "float16", *_row(last, "permissive"))[0] == 0
    assert _exits(project) == ["RELION_JOB_EXIT_SUCCESS"]
    assert "--" not in capsys.readouterr().err


def test_every_option_an_error_names_is_said_as_the_params_row_that_gives_it(project):
    """Each option of denoise that is a Params row, named in advice ("pass OPTION [VALUE]"),
    is said as a row that cryostream-relion takes back as that option (the row's label and
    value through denoise_argv); the output folder (-o DIR) is a new External job; options
    that are no Params row (another command's --steps, --help) and a command in backticks
    stay as they are."""
    import re

    from cryostream.cli import build_parser
    from cryostream.cli.relion_words import InJobTerms

    options = {o: a for a in build_parser().commands["denoise"]._actions
               for o in a.option_strings}
    said = InJobTerms(options)
    base = ["--o", f"{JOB}/", "--in_mics", "CtfFind/job003/micrographs_ctf.star"]
    head = ["denoise", "CtfFind/job003/micrographs_ctf.star", "-o", f"{JOB}/"]
    rows = [o for o in options if o not in ("-h", "--help", "-o", "--output")]
    assert "--overwrite" in rows and "--no-ensemble" in rows and "-m" in rows
    for option in rows:
        value = [] if options[option].nargs == 0 else ["512"]
        line = said(f"x.mrc: bad; pass {' '.join([option, *value])} to go on")
        assert option not in line.split() and line.startswith("x.mrc: bad; add a Params row `"), \
            (option, line)
        label, *given = re.search(r"a Params row `([^`]+)`(?: `([^`]+)`)? to go on$",
                                  line).groups()
        got = denoise_argv([*base, f"--{label}", *[g for g in given if g]])[len(head):]
        long = options[option].option_strings[-1] if option in ("-m", "-v") else option
        assert got == [long, *value], (option, got)
    assert said("x: pass --overwrite to replace it, or choose another output folder: -o DIR") \
        == "x: add a Params row `overwrite` `yes` to replace it, or make a new External job"
    kept = "train again into a new run folder (-o), with `cryostream train --steps 500 -o r` " \
        "(see cryostream denoise --help)"
    assert said(kept) == kept


def test_run_from_another_folder_lists_the_output_from_the_project_folder(tiny_run, project,
                                                                          monkeypatch):
    """Run by hand from above the project (paths typed from there), the job's
    RELION_OUTPUT_NODES.star had named its STAR file from that folder
    (``project/External/job010/…``), a node RELION, reading from the project folder, never
    finds; it is named from the project folder, as RELION names its own."""
    monkeypatch.chdir(project.parent)
    status = main(["--o", f"project/{JOB}/", "--in_mics", "project/CtfFind/job003/micrographs_ctf"
                   ".star", "--j", "1", "--pipeline_control", f"project/{JOB}/", "--model",
                   str(tiny_run.run), "--raw", "yes", "--tile", "64", "--workers", "1"])
    assert status == 0
    assert (project / JOB / "RELION_OUTPUT_NODES.star").read_text() == NODES
    assert _exits(project) == ["RELION_JOB_EXIT_SUCCESS"]
