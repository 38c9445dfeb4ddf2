"""``cryostream evaluate --residual`` (and ``--truth``) on a CPU, where each micrograph is
denoised as ``denoise`` does (minutes for a full-size one): how long it takes is said before it
starts, its network passes are noted while they run, Ctrl-C and SIGTERM stop it at once with
nothing half-written left, and a micrograph whose file name begins with a minus sign is taken
as a file."""

from __future__ import annotations

import importlib
import json
import logging
import re
import signal
import threading
import time
from pathlib import Path

import mrcfile
import pytest

from cryostream.cli import main
from tests.conftest import write_mrc
from tests.faults_support import start_cli, wait_until

#: The line that ends an interrupted evaluate (``{how}``: interrupted, or terminated (SIGTERM)).
_LAST = ("cryostream evaluate: {how} after N s; nothing half-written is kept in {out}: the "
         "report is written whole at its end, or not at all; run the same command again to "
         "make it")


def test_the_residual_check_says_how_long_it_takes_then_notes_its_passes(tiny_run, tmp_path,
                                                                        capsys, monkeypatch):
    """It said 'as long as denoise takes' and then nothing until the micrograph was done
    (minutes on a CPU), where denoise says about how long before it starts and notes its
    network passes as they go. Now so does the residual check, its advice fitting evaluate
    (--denoised, or a GPU; no --no-ensemble, which evaluate has not)."""
    monkeypatch.setattr(importlib.import_module("cryostream.denoise.micrograph"),
                        "NOTE_EVERY_S", 0.0)  # a note after every pass
    mic = tiny_run.sim.micrographs[0]
    assert main(["evaluate", str(tiny_run.run), "-o", str(tmp_path / "rep"), "--residual",
                 str(mic)]) == 0
    err = capsys.readouterr().err.splitlines()
    note = [n for n in err if n.startswith("cryostream: residual check of 1 micrograph: ")]
    assert len(note) == 1 and re.fullmatch(
        r"cryostream: residual check of 1 micrograph: each denoised as denoise does \([a-z0-9_ +]+"
        r"\); the network runs 8 times per micrograph: about \d+ seconds? for one of 160 × 128 "
        r"on 2 CPU cores \(this machine has \d+\); to check what cryostream denoise wrote "
        r"instead of denoising again, pass --denoised FOLDER, or use a GPU(; other work keeps "
        r"this machine busy .*)?", note[0]), note
    assert "--no-ensemble" not in "\n".join(err)
    passes = [n for n in err if "network pass" in n]
    assert [n.split(": ")[2].split(" done")[0] for n in passes] == [
        f"network pass {i} of 8" for i in range(1, 9)], passes
    assert all(n.startswith(f"cryostream: {mic.name}: ") for n in passes)
    done = next(i for i, n in enumerate(err) if n.startswith("cryostream: residual check 1/1 "))
    assert err.index(note[0]) < err.index(passes[0]) and err.index(passes[-1]) < done
    assert (tmp_path / "rep" / "report.md").is_file()
    # --denoised a folder without its output: said before it is denoised here, no --denoised
    (tmp_path / "den").mkdir()
    assert main(["evaluate", str(tiny_run.run), "-o", str(tmp_path / "rep2"), "--residual",
                 str(mic), "--denoised", str(tmp_path / "den")]) == 0
    err = capsys.readouterr().err.splitlines()
    note = [n for n in err if n.startswith(f"cryostream: {mic.name}: the network runs ")]
    assert len(note) == 1 and re.fullmatch(
        rf"cryostream: {mic.name}: the network runs 8 times per micrograph: about \d+ seconds? "
        r"for one of 160 × 128 on 2 CPU cores \(this machine has \d+\); a GPU takes seconds(; "
        r"other work keeps this machine busy .*)?", note[0]), note
    assert err.index(note[0]) < err.index(next(n for n in err if "network pass 1 of 8" in n))


def test_the_truth_section_says_how_long_it_takes_on_a_cpu(tiny_run, tmp_path, capsys):
    """`evaluate --truth` denoises each micrograph as denoise does (8 passes of the ensemble,
    minutes a micrograph on a CPU) and said nothing of it before it started, where --residual
    says about how long: now it says so too, from denoise's own estimate, with its own advice
    (--denoised, fewer --micrographs, or a GPU); with --denoised, before each micrograph not
    found there."""
    import cryostream

    sim = cryostream.simulate(tmp_path / "sim", 2, shape=(160, 128), seed=9)  # held out
    assert main(["evaluate", str(tiny_run.run), "-o", str(tmp_path / "rep"), "--truth",
                 str(sim.root)]) == 0
    err = capsys.readouterr().err.splitlines()
    note = [n for n in err if n.startswith("cryostream: scoring ")]
    assert len(note) == 1 and re.fullmatch(
        r"cryostream: scoring 2 simulated micrographs against their truth, each denoised as "
        r"denoise does \([a-z0-9_ +]+\): the network runs 8 times per micrograph: about \d+ "
        r"seconds? for one of 160 × 128 on 2 CPU cores \(this machine has \d+\), \d+ seconds? "
        r"for all here; to score what cryostream denoise wrote instead of denoising again \(the "
        r"model's own pass alone is made\), pass --denoised FOLDER, score fewer than these 2 "
        r"with --micrographs N, or use a GPU(; other work keeps this machine busy .*)?",
        note[0]), note
    assert err.index(note[0]) < err.index(next(n for n in err if "ground truth 1/2" in n))
    (tmp_path / "den").mkdir()  # --denoised a folder without their outputs: said before each
    assert main(["evaluate", str(tiny_run.run), "-o", str(tmp_path / "rep2"), "--truth",
                 str(sim.root), "--micrographs", "1", "--denoised", str(tmp_path / "den")]) == 0
    err = capsys.readouterr().err.splitlines()
    name = sim.micrographs[0].name
    assert not [n for n in err if n.startswith("cryostream: scoring ")]
    note = [n for n in err if n.startswith(f"cryostream: {name}: the network runs ")]
    assert len(note) == 1 and re.fullmatch(
        rf"cryostream: {name}: the network runs 8 times per micrograph: about \d+ seconds? "
        r"for one of 160 × 128 on 2 CPU cores \(this machine has \d+\); a GPU takes seconds(; "
        r"other work keeps this machine busy .*)?", note[0]), note
    assert err.index(note[0]) < err.index(next(n for n in err if "ground truth 1/1" in n))


def test_the_time_note_counts_the_binned_passes_of_the_general_model(monkeypatch):
    """The general model's default recipe also runs the network on the micrograph binned by 2:
    the note says so, with the time of a full-size micrograph from denoise's own estimate."""
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.memory import ENV
    from cryostream.denoise.network import model_path, model_record
    from cryostream.denoise.workers import cpu_times
    from cryostream.evaluate.residual import residual_time_note
    from cryostream.units import spoken_duration

    monkeypatch.setenv(ENV, "100")  # the windows of a machine with memory enough for them
    shipped = model_path("general")
    recipe = DenoiseConfig().for_run(model_record(shipped))
    note = residual_time_note(shipped, recipe, [(4096, 4096), (4096, 4096)])
    times = cpu_times(str(shipped), recipe, [(4096, 4096)] * 2)
    assert note.startswith("the network runs 8 times per micrograph (and 8 times binned by 2, "
                           f"the binned pass): about {spoken_duration(times.each)} for one of "
                           f"4096 × 4096 on 2 CPU cores (this machine has "), note
    assert f", {spoken_duration(times.total)} for all here; " in note and times.each > 60
    assert "--no-ensemble" not in note


def test_a_terminated_evaluation_is_given_up_and_its_thread_writes_nothing_more(
        tiny_run, tmp_path, capsys, monkeypatch):
    """SIGTERM while the residual check's network passes run (here sent from the first pass's
    note): the command returns 143 at once with its last line, and the thread that made the
    report, left running in this process, stops at its next pass and writes nothing: no
    report folder, no staging folder."""
    import os

    monkeypatch.setattr(importlib.import_module("cryostream.denoise.micrograph"),
                        "NOTE_EVERY_S", 0.0)

    class Terminate(logging.Handler):
        def emit(self, record):
            if "network pass 1 of" in record.getMessage():
                os.kill(os.getpid(), signal.SIGTERM)

    handler = Terminate()
    logging.getLogger("cryostream").addHandler(handler)
    out = tmp_path / "rep"
    try:
        status = main(["evaluate", str(tiny_run.run), "-o", str(out), "--residual",
                       str(tiny_run.sim.micrographs[0])])
    finally:
        logging.getLogger("cryostream").removeHandler(handler)
    last = re.sub(r"after \d+ s", "after N s", capsys.readouterr().err.splitlines()[-1])
    assert status == 143 and last == _LAST.format(how="terminated (SIGTERM)", out=out)
    for thread in threading.enumerate():
        if thread.name == "cryostream-work":
            thread.join(timeout=60)
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("signum, status, had", [(signal.SIGTERM, 143, False),
                                                 (signal.SIGINT, 130, True)])
def test_evaluate_stops_at_once_with_nothing_half_written(signum, status, had, tmp_path):
    """A full-size micrograph's residual check on a CPU, stopped by SIGTERM (a batch system's
    time limit) or Ctrl-C: it took 16–40 s to end, the network pass under way finished first
    (and then waited for at Python's exit), and its last line said only how long it had run.
    Now it ends at once, with status 143 or 130 and one line saying that nothing half-written
    is kept; the report folder it made is gone, one the user had is as it was."""
    import cryostream

    sim = cryostream.simulate(tmp_path / "sim", 1, shape=(2048, 2048), seed=3)
    out = tmp_path / "rep"
    if had:
        out.mkdir()
        (out / "notes.txt").write_text("mine\n")
    proc = start_cli("evaluate", "general", "-o", out, "--residual", sim.micrographs[0],
                     cwd=tmp_path)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: proc.stderr.read(1), "")))
    reader.start()
    try:  # minutes of network passes ahead, one under way (each some seconds)
        assert wait_until(proc, lambda: "cryostream: residual check of 1 micrograph: " in
                          "".join(err), timeout=60), "".join(err)
        time.sleep(2)
        sent = time.perf_counter()
        proc.send_signal(signum)
        proc.wait(timeout=60)
        ended = time.perf_counter() - sent
    finally:
        proc.kill()
        reader.join(timeout=10)
    text = "".join(err)
    assert proc.returncode == status and "Traceback" not in text, text
    assert ended < 5, (ended, text)
    how = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
    assert re.sub(r"after \d+ s", "after N s", text.splitlines()[-1]) == _LAST.format(
        how=how, out=out), text
    if had:
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    else:
        assert not out.exists()


def test_a_micrograph_named_with_a_leading_minus_and_digit_is_taken_as_a_file(tiny_run, tmp_path,
                                                                            capsys, monkeypatch):
    """``--residual -1.mrc``: argparse took the name for an option and said 'expected at least
    one argument', where a negative value after an option of one value (``--budget -5m``) is
    taken as its value. Now the file is taken too; a name of a minus sign and a letter, which
    may be an option mistyped, is refused saying how to give it (./-a.mrc)."""
    monkeypatch.chdir(tmp_path)
    write_mrc(tmp_path / "-1.mrc", mrcfile.read(tiny_run.sim.micrographs[0]).copy())
    assert main(["evaluate", str(tiny_run.run), "-o", "rep", "--residual", "-1.mrc",
                 "--quiet"]) == 0
    assert [r["micrograph"] for r in json.loads(
        (tmp_path / "rep" / "report.json").read_text())["residual"]] == ["-1.mrc"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", str(tiny_run.run), "-o", "rep2", "--residual", "-a.mrc"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "cryostream evaluate: error: argument --residual: expected at least one argument; "
        "-a.mrc was taken for an option: give a file or folder whose name begins with '-' as "
        "./-a.mrc (see cryostream evaluate --help)"]
    assert not Path("rep2").exists()
