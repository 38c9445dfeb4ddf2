"""What a newcomer sees in their first hour: help texts and notes as they read them."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from cryostream.cli import build_parser
from tests.conftest import write_mrc


def _helps() -> dict[str, str]:
    subparsers = build_parser()._subparsers._group_actions[0].choices
    return {name: " ".join(sub.format_help().split()) for name, sub in subparsers.items()}


def test_help_shows_defaults_as_they_are_typed():
    """A pair's default reads as the values one types (simulate's --shape showed
    ``((7676, 7420))``), no default reads ``(None)`` (evaluate's --tile did), and no help says
    a default twice (simulate's --pixel-size said ``0.6575 by default) (0.6575)``)."""
    helps = _helps()
    for name, text in helps.items():
        assert "((" not in text and "(None)" not in text, (name, re.findall(r".{40}\(\(|.{40}\(None\)", text))
    assert "--shape H W rows and columns (7676 7420)" in helps["simulate"]
    assert "(1.47 1.99)" in helps["simulate"]
    assert helps["simulate"].count("0.6575") == 1
    assert "--tile PX denoising window core, px (default: chosen for the micrograph" in helps["evaluate"]
    # the STAR file is RELION's; cryoSPARC's Import Micrographs takes the MRC files themselves
    assert "RELION/cryoSPARC" not in helps["denoise"]
    assert "denoised_micrographs.star for RELION; cryoSPARC imports the MRC files" in helps["denoise"]


def _relion_star(folder: Path) -> Path:
    """Two real MRC micrographs and a RELION 3.1 micrographs STAR file at 200 kV listing them."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        write_mrc(folder / f"{name}.mrc", rng.poisson(20.0, (256, 256)).astype(np.float32))
    star = folder / "corrected_micrographs.star"
    star.write_text(
        "data_optics\nloop_\n_rlnOpticsGroupName\n_rlnOpticsGroup\n_rlnMicrographPixelSize\n"
        "_rlnVoltage\n_rlnSphericalAberration\n_rlnAmplitudeContrast\nopticsGroup1 1 0.66 200 2.7 0.1\n\n"
        "data_micrographs\nloop_\n_rlnMicrographName\n_rlnOpticsGroup\na.mrc 1\nb.mrc 1\n")
    return star


def test_an_optics_option_a_star_file_overrides_is_said(tmp_path: Path):
    """``--voltage 120`` with a STAR file whose optics table says 200 kV: the STAR file's wins
    (as documented), and a warning says the option is not used rather than dropping it without
    a word; an option the STAR file agrees with, or a STAR file without that column, warns of
    nothing."""
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.sources import gather_inputs
    from cryostream.io.star import StarFileWarning

    star = _relion_star(tmp_path)
    with pytest.warns(StarFileWarning) as caught:
        gathered = gather_inputs([star], config=DenoiseConfig(voltage_kv=120.0, cs_mm=1.4))
    assert [m.optics["voltage_kv"] for m in gathered.micrographs] == [200.0, 200.0]
    assert [str(w.message) for w in caught] == [
        "--voltage 120 kV is not used for 2 micrographs: their STAR file's optics table gives "
        "200 kV (rlnVoltage), and a STAR file's optics win; if the STAR file is wrong, correct "
        "its data_optics",
        "--cs 1.4 mm is not used for 2 micrographs: their STAR file's optics table gives 2.7 mm "
        "(rlnSphericalAberration), and a STAR file's optics win; if the STAR file is wrong, "
        "correct its data_optics"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", StarFileWarning)
        gather_inputs([star], config=DenoiseConfig(voltage_kv=200.0))
        gather_inputs([tmp_path / "a.mrc"], config=DenoiseConfig(voltage_kv=120.0))


def test_an_optics_option_typed_at_its_default_is_said_too(tiny_run, tmp_path: Path, notes):
    """``--voltage 300`` typed with a STAR file at 200 kV: 300 is cryostream's default, and a
    config cannot tell it typed, so the option was dropped without the warning a typed 120
    gets. The command line now says which were typed; typed at their defaults, the optics
    are given, so no note says they were assumed. (The shared run's network: the optics are
    the model's no more than the notes are, and it is quicker than the general one.)"""
    from cryostream.cli import main
    from cryostream.io.star import StarFileWarning

    star = _relion_star(tmp_path)
    quick = ["-m", str(tiny_run.run), "--raw"]
    with pytest.warns(StarFileWarning) as caught:
        assert main(["denoise", str(star), "-o", str(tmp_path / "out"), *quick,
                     "--voltage", "300"]) == 0
    assert [str(w.message).split(":")[0] for w in caught] == [
        "--voltage 300 kV is not used for 2 micrographs"]
    notes.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", StarFileWarning)
        assert main(["denoise", str(tmp_path / "a.mrc"), "-o", str(tmp_path / "out_a"), *quick,
                     "--voltage", "300", "--cs", "2.7", "--amplitude-contrast", "0.1"]) == 0
    assert not [n for n in notes if "optics" in n]


def test_an_optics_option_given_alone_leaves_the_note_of_the_others(tiny_run, tmp_path: Path,
                                                                   notes):
    """``--cs 2.7`` alone on MRC files (a 200 kV microscope's Cs): the voltage and amplitude
    contrast are still cryostream's defaults, which the note must say. Any optics option had
    silenced it (and ``--cs 2.7``, typed at its default, counts as given), so 300 kV went
    into the CTF gain and the output STAR file without a word."""
    from cryostream.cli import main

    _relion_star(tmp_path)
    assert main(["denoise", str(tmp_path / "a.mrc"), "-o", str(tmp_path / "out"), "-m",
                 str(tiny_run.run), "--raw", "--cs", "2.7"]) == 0
    assert [n.split(" (")[0] for n in notes if "optics" in n] == [
        "1 micrograph has no voltage or amplitude contrast from a STAR file or an option"]
    assert "optics table takes 300 kV and amplitude contrast 0.1" in [n for n in notes if "optics" in n][0]


def test_the_optics_note_is_of_micrographs_still_to_denoise(tiny_run, tmp_path: Path, notes):
    """The note that a micrograph's optics are cryostream's defaults came on every run, even
    one that kept every output from before and denoised nothing; it is now of those denoised
    in the run."""
    from cryostream.cli import main

    _relion_star(tmp_path)
    command = ["denoise", str(tmp_path / "a.mrc"), str(tmp_path / "b.mrc"), "-o", str(tmp_path / "out"),
               "-m", str(tiny_run.run), "--raw"]
    assert main(command[:2] + command[3:]) == 0
    assert [n.split(":")[0] for n in notes if "microscope optics" in n] == [
        "1 micrograph has no microscope optics from a STAR file or an option"]
    notes.clear()
    assert main(command) == 0  # a.mrc kept, b.mrc denoised
    assert [n.split(":")[0] for n in notes if "microscope optics" in n] == [
        "1 micrograph has no microscope optics from a STAR file or an option"]
    notes.clear()
    assert main(command) == 0  # both kept
    assert not [n for n in notes if "microscope optics" in n]


def test_a_single_pass_on_a_cpu_says_how_long_it_takes(tiny_run, notes, monkeypatch,
                                                       tmp_path: Path):
    """``--raw`` (or ``--no-ensemble``) on a full-size micrograph on a CPU runs minutes with no
    note of passes done (a single pass has none): a note before it gives the time, as the
    ensemble's does; a micrograph that takes seconds gets none. The load average is set idle
    here (os.getloadavg): a busy machine's makes one of seconds slow enough for the note too
    (busy_factor; at a load of 18 on two cores, a 512² one), which the tests of the load say."""
    import os

    import cryostream
    from cryostream.config import DenoiseConfig
    from cryostream.denoise import workers
    from cryostream.denoise.network import model_path
    from cryostream.denoise.tiling import cpu_pass_seconds

    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))  # the CI's load decides nothing
    shipped = model_path("general")
    workers.cpu_time_note(shipped, DenoiseConfig.raw(), [(4096, 4096)])
    workers.cpu_time_note(shipped, DenoiseConfig.raw(), [(512, 512)])
    assert cpu_pass_seconds(shipped, (4096, 4096)) >= workers.SLOW_PASS_SECONDS
    assert len(notes) == 1 and notes[0].startswith("one network pass per micrograph: about ")
    assert "for one of 4096 × 4096 on 2 CPU cores" in notes[0] and "no note until each is done" \
        in notes[0]
    # denoise says it before it starts (with the threshold down to a 256² micrograph's time)
    notes.clear()
    monkeypatch.setattr(workers, "SLOW_PASS_SECONDS", 0.0)
    rng = np.random.default_rng(1)
    mrc = write_mrc(tmp_path / "m.mrc", rng.poisson(20.0, (256, 256)).astype(np.float32))
    cryostream.denoise(tiny_run.run, [mrc], tmp_path / "out", config=DenoiseConfig.raw())
    assert [n for n in notes if n.startswith("one network pass per micrograph: about ")]
    assert (tmp_path / "out" / "m.mrc").is_file()


def test_a_broken_link_is_named_as_one(tmp_path: Path):
    """A micrograph given as a link whose file was moved (a RELION Import's links after the
    data went to the archive) is said to be a broken link to its target, not 'no such file',
    which sent one looking for a typo in a path that is there; the command stops before any
    output, status 2."""
    from cryostream.cli import main
    from cryostream.errors import InvalidMicrographError
    from cryostream.io.mrc import read_header

    rng = np.random.default_rng(2)
    (tmp_path / "archive").mkdir()
    target = write_mrc(tmp_path / "archive" / "m.mrc", rng.poisson(20.0, (256, 256)).astype(np.float32))
    (tmp_path / "m.mrc").symlink_to(target)
    target.unlink()
    assert main(["denoise", str(tmp_path / "m.mrc"), "-o", str(tmp_path / "out"), "--raw"]) == 2
    assert not (tmp_path / "out").exists()
    with pytest.raises(InvalidMicrographError) as err:
        read_header(tmp_path / "m.mrc")
    assert str(err.value) == (f"{tmp_path / 'm.mrc'}: a broken link: {target} is not there; "
                              "link the micrograph again, or give its new place")


def test_outputs_left_out_of_a_folder_are_not_called_micrographs_to_denoise(tmp_path: Path, notes):
    """``prepare`` or ``fit`` on a folder holding denoise outputs beside the micrographs leaves
    the outputs out with a note that fits every command: 'not raw micrographs' (it said 'not
    micrographs to denoise' to a command that denoises nothing)."""
    from cryostream.io.folders import folder_micrographs

    rng = np.random.default_rng(3)
    for name in ("a", "a_den"):
        write_mrc(tmp_path / f"{name}.mrc", rng.poisson(20.0, (64, 64)).astype(np.float32))
    (tmp_path / "a_den.json").write_text('{"kind": "DenoiseOutput"}')
    assert folder_micrographs(tmp_path) == [tmp_path / "a.mrc"]
    assert [n.split(": ", 1)[1] for n in notes] == [
        "left out 1 output of cryostream denoise (a_den.mrc; each with its NAME.json), not raw "
        "micrographs"]


def test_a_micrograph_given_as_the_model_is_called_a_file(tmp_path: Path, capsys):
    """``denoise mics/ -o out -m mic.mrc`` (the micrograph where the model goes): the error says
    the model is a file, not a model, rather than 'not a run folder (no config.json)' as if it
    were a folder missing a file; nothing is written, status 2."""
    from cryostream.cli import main

    rng = np.random.default_rng(4)
    mrc = write_mrc(tmp_path / "mic.mrc", rng.poisson(20.0, (256, 256)).astype(np.float32))
    assert main(["denoise", str(mrc), "-o", str(tmp_path / "out"), "-m", str(mrc)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"cryostream denoise: error: {mrc}: a file, not a model (a run folder or an exported "
        ".npz); pass the folder that cryostream train or fit wrote")
    assert not (tmp_path / "out").exists()


def test_a_single_pass_gets_no_note_of_passes_done(tiny_run, tmp_path: Path, notes,
                                                   monkeypatch):
    """``--raw`` on a micrograph that takes long: no 'network pass 1 of 1 done, 147 s so far'
    just before 'denoised 1/1 ... 147.8 s' (the same news twice); with the ensemble's several
    passes the notes of passes done still come (counted alike for any model: the shared run's
    network, quicker than the general one)."""
    import cryostream
    from cryostream.config import DenoiseConfig
    from cryostream.denoise import micrograph

    monkeypatch.setattr(micrograph, "NOTE_EVERY_S", 0.0)  # a note after every pass, however quick
    rng = np.random.default_rng(5)
    mrc = write_mrc(tmp_path / "m.mrc", rng.poisson(20.0, (256, 256)).astype(np.float32))
    cryostream.denoise(tiny_run.run, [mrc], tmp_path / "raw", config=DenoiseConfig.raw())
    assert not [n for n in notes if "network pass" in n]
    assert [n for n in notes if n.startswith("denoised 1/1 m.mrc")]
    cryostream.denoise(tiny_run.run, [mrc], tmp_path / "two", config=DenoiseConfig.raw(calibrate=1))
    assert [n for n in notes if n.startswith("m.mrc: network pass 1 of 2 done")]


def test_the_report_names_a_shipped_model_as_it_was_asked_for(tmp_path: Path):
    """``evaluate general STORE -o REPORT``: the report's title names the shipped model
    ``general``, not the path of the .npz inside the installed package."""
    import cryostream
    from cryostream.cli import main

    rng = np.random.default_rng(6)
    for name in ("a", "b"):
        write_mrc(tmp_path / f"{name}.mrc", rng.poisson(20.0, (512, 512)).astype(np.float32))
    store = cryostream.prepare([tmp_path / "a.mrc", tmp_path / "b.mrc"], tmp_path / "data.h5",
                               cryostream.PrepareConfig(patch_size=256, stride=128)).output
    assert main(["evaluate", "general", str(store), "-o", str(tmp_path / "report"),
                 "--patches", "2", "--quiet"]) == 0
    title = (tmp_path / "report" / "report.md").read_text().splitlines()[0]
    assert title == "# Evaluation of the shipped model `general`"


def test_evaluate_with_nothing_to_score_names_the_options(tmp_path: Path, capsys):
    """``evaluate general -o report`` alone: the one line names the command's options, not the
    Python keywords (it said ``truth= (--truth, …) or residual= (--residual MRC...)``)."""
    from cryostream.cli import main

    assert main(["evaluate", "general", "-o", str(tmp_path / "report")]) == 2
    assert capsys.readouterr().err.strip() == (
        "cryostream evaluate: error: nothing to evaluate: give a store (its test split), --truth "
        "FOLDER (a folder from cryostream simulate) or --residual MRC...")
    assert not (tmp_path / "report").exists()


def test_an_empty_file_is_called_empty(tmp_path: Path, capsys):
    """A 0-byte micrograph (a transfer that never wrote it) or STAR file: the one line says it
    is empty and to copy it again, not 'Couldn't read enough bytes for MRC header' or 'no block
    has a rlnMicrographName column'; nothing is written, status 2."""
    from cryostream.cli import main

    (tmp_path / "m.mrc").write_bytes(b"")
    (tmp_path / "micrographs.star").write_bytes(b"")
    assert main(["denoise", str(tmp_path / "m.mrc"), "-o", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"cryostream denoise: error: {tmp_path / 'm.mrc'}: empty (0 bytes); copy or download it again")
    assert main(["denoise", str(tmp_path / "micrographs.star"), "-o", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"cryostream denoise: error: {tmp_path / 'micrographs.star'}: empty (0 bytes); pass a "
        "micrographs STAR file (e.g. from MotionCorr or CtfFind)")
    assert not (tmp_path / "out").exists()


def test_a_quoted_glob_of_star_files_reads_them_as_star_files(tiny_run, tmp_path: Path,
                                                              monkeypatch):
    """``denoise 'MotionCorr/job00*/corrected_micrographs.star'`` (quoted, so cryostream expands
    it) reads the STAR files it matches as STAR files, as the shell's expansion does: their
    micrographs are denoised with their optics (it read each STAR file as an MRC file and
    stopped: 'not a readable MRC file')."""
    import json

    from cryostream.cli import main

    job = tmp_path / "MotionCorr" / "job002"
    job.mkdir(parents=True)
    _relion_star(job)
    monkeypatch.chdir(tmp_path)
    assert main(["denoise", "MotionCorr/job00*/corrected_micrographs.star", "-o", "External/job010",
                 "-m", str(tiny_run.run), "--raw", "--quiet"]) == 0
    for name in ("a", "b"):
        record = json.loads((tmp_path / "External/job010" / f"{name}.json").read_text())
        assert record["config"]["voltage_kv"] == 200.0  # the STAR file's optics
    assert "External/job010/a.mrc" in (tmp_path / "External/job010/denoised_micrographs.star").read_text()


def _found_notes(err: str, name: str) -> list[str]:
    """The notes of micrograph ``name`` that -v adds (not its progress notes)."""
    return [line for line in err.splitlines() if line.startswith(f"cryostream: {name}: ")
            and "network pass" not in line]


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_verbose_denoise_says_what_the_steps_found_in_words(tmp_path: Path, capsys):
    """``denoise -v`` (help: 'more notes on stderr (each step's details)') printed NAME.json's
    ``found`` block as raw JSON (``{"pixel_size_angstrom": 0.66, "ctf": null, …}``). It says,
    per micrograph, its pixel size and optics with where each came from, then what the steps
    found, in words. Without -v it stays quiet about it."""
    from cryostream.cli import main

    rng = np.random.default_rng(7)
    mrc = write_mrc(tmp_path / "m.mrc", rng.poisson(20.0, (256, 256)).astype(np.float32))
    assert main(["denoise", str(mrc), "-o", str(tmp_path / "a"), "--no-ensemble", "--cs", "2.7",
                 "-v"]) == 0
    err = capsys.readouterr().err
    assert _found_notes(err, "m.mrc") == [
        "cryostream: m.mrc: pixel size 0.66 Å from its header; Cs 2.7 mm from --cs; 300 kV and "
        "amplitude contrast 0.1: cryostream's defaults (a Krios's; no STAR file, option or "
        "header gave them)",
        "cryostream: m.mrc: no CTF fit (under 1024 px a side); gain: the radial Wiener gain, "
        "weighed by the learned weights at its measured signal-to-noise ratio 0.001 (the "
        "table's rows span 0.225–2.09: its first row is used)"]  # noise alone: under them
    assert "{" not in err
    assert main(["denoise", str(mrc), "-o", str(tmp_path / "b"), "--no-ensemble"]) == 0
    assert _found_notes(capsys.readouterr().err, "m.mrc") == []


@pytest.mark.slow
def test_verbose_denoise_says_the_ctf_and_where_each_optics_value_came_from(tmp_path: Path, capsys):
    """``denoise -v`` of a full-size micrograph from a STAR file and one from its header: the
    defocus (the STAR file's, or fitted) with its error, the CTF check's outcome and score and
    the gain used, beside where the pixel size and each optics value came from, as NAME.json
    records them."""
    import json

    from cryostream.cli import main

    assert main(["simulate", str(tmp_path / "sim"), "--count", "2", "--shape", "1024",
                 "1024", "--quiet"]) == 0
    first, second = sorted((tmp_path / "sim" / "micrographs").glob("*.mrc"))
    star = _one_row_star(tmp_path / "one.star", first, 300, (18000.0, 17900.0, 10.0))
    out = tmp_path / "out"
    from cryostream.io.star import StarFileWarning

    with pytest.warns(StarFileWarning, match="without their columns rlnDefocusU"):  # one listed
        assert main(["denoise", str(star), str(second), "-o", str(out), "--no-ensemble",
                     "--voltage", "300", "-v"]) == 0
    err = capsys.readouterr().err
    assert "{" not in err
    for mic, optics in (
            (first, "pixel size 0.6575 Å from its STAR file; 300 kV, Cs 2.7 mm and amplitude "
             "contrast 0.1 from its STAR file"),
            (second, "pixel size 0.6575 Å from its header; 300 kV from --voltage; Cs 2.7 mm and "
             "amplitude contrast 0.1: cryostream's defaults (a Krios's; no STAR file, option or "
             "header gave them)")):
        found = json.loads((out / f"{mic.stem}.json").read_text())["found"]
        fit = found["ctf"]
        notes = _found_notes(err, mic.name)
        assert notes[0] == f"cryostream: {mic.name}: {optics}"
        said = notes[1]
        assert said.startswith(f"cryostream: {mic.name}: defocus U "
                               f"{fit['defocus_u_angstrom'] / 1e4:.3f} µm, V "
                               f"{fit['defocus_v_angstrom'] / 1e4:.3f} µm"), said
        error = fit["defocus_error_angstrom"]
        assert (f" ±{error:.0f} Å, " in said) == bool(error)
        assert ("from its STAR file" if mic == first else "fitted from its power spectrum") in said
        check = found["ctf_check"]
        assert f"CTF check {'passed' if found['ctf_used'] else 'failed'} (score {check:+.2g}" in said
        assert ("gain: the CTF-shaped Wiener gain" if found["ctf_used"]
                else "gain: the radial Wiener gain") in said
        assert len(notes) == 2


def _one_row_star(star: Path, mic: Path, kv: int, defocus: tuple | None = None) -> Path:
    """A RELION STAR file of one micrograph ``mic`` at 0.6575 Å and ``kv``, with ``defocus``
    (U, V, angle) in its row where given."""
    columns = "_rlnDefocusU\n_rlnDefocusV\n_rlnDefocusAngle\n" if defocus else ""
    star.write_text(
        "data_optics\nloop_\n_rlnOpticsGroupName\n_rlnOpticsGroup\n_rlnMicrographPixelSize\n"
        "_rlnVoltage\n_rlnSphericalAberration\n_rlnAmplitudeContrast\n"
        f"opticsGroup1 1 0.6575 {kv} 2.7 0.1\n\n"
        f"data_micrographs\nloop_\n_rlnMicrographName\n_rlnOpticsGroup\n{columns}{mic} 1"
        + "".join(f" {v}" for v in defocus or ()) + "\n")
    return star


def test_the_residual_check_of_a_star_file_reads_what_denoise_wrote_from_it(tiny_run, tmp_path: Path,
                                                                              notes):
    """``denoise corrected_micrographs.star -o out`` then ``evaluate RUN --residual
    corrected_micrographs.star --denoised out``, the STAR file's optics at 200 kV: the check
    takes the outputs denoise wrote (made with the STAR file's optics), as it does for MRC
    inputs; it took them for another recipe ('not this model's default output') and denoised
    every micrograph again, at 300 kV."""
    import cryostream

    mic = Path(tiny_run.sim.micrographs[2])
    star = _one_row_star(tmp_path / "corrected_micrographs.star", mic, 200)
    cryostream.denoise(tiny_run.run, star, tmp_path / "denoised")
    notes.clear()
    report = cryostream.evaluate(tiny_run.run, None, tmp_path / "report", residual=[star],
                                 denoised=tmp_path / "denoised")
    assert not [n for n in notes if "denoised here" in n], notes
    assert [r["micrograph"] for r in report["residual"]] == [mic.name]
    # a micrograph whose header has no pixel size is still checked (taken as 1 Å, as before,
    # now with a warning that says so)
    import mrcfile

    from cryostream.io.pixel_sizes import PixelSizeWarning

    nopix = write_mrc(tmp_path / "nopix.mrc", mrcfile.read(mic), pixel_size=0.0)
    with pytest.warns(PixelSizeWarning, match="its residual is checked at 1 Å per pixel"):
        report = cryostream.evaluate(tiny_run.run, None, tmp_path / "report_nopix", residual=[nopix])
    assert [r["micrograph"] for r in report["residual"]] == ["nopix.mrc"]
    # beside it, the STAR file's micrographs are still taken with its optics: its outputs read
    notes.clear()
    with pytest.warns(PixelSizeWarning, match="nopix.mrc: the header leaves the pixel size unset"):
        report = cryostream.evaluate(tiny_run.run, None, tmp_path / "report_both",
                                     residual=[star, nopix], denoised=tmp_path / "denoised")
    assert [n for n in notes if "denoised here" in n] == [
        f"{tmp_path / 'denoised' / 'nopix.mrc'}: not found; nopix.mrc is denoised here instead, as "
        "denoise does by default (the report scores the default)"]
    assert [r["micrograph"] for r in report["residual"]] == [mic.name, "nopix.mrc"]


def test_a_micrograph_not_found_in_denoised_is_said_to_be_denoised_here(tiny_run, tmp_path: Path,
                                                                         notes):
    """``evaluate RUN --residual m.mrc --denoised FOLDER`` where FOLDER holds no output of it:
    the note says the output is not there and that the micrograph is denoised here instead
    (it read 'FOLDER/m.mrc: not found: denoised here')."""
    import cryostream

    mic = Path(tiny_run.sim.micrographs[2])
    (tmp_path / "empty").mkdir()
    cryostream.evaluate(tiny_run.run, None, tmp_path / "report", residual=[mic],
                        denoised=tmp_path / "empty")
    assert f"{tmp_path / 'empty' / mic.name}: not found; {mic.name} is denoised here instead, as " \
        "denoise does by default (the report scores the default)" in notes


def test_outputs_made_otherwise_are_said_how_before_they_are_denoised_again(tiny_run, tmp_path,
                                                                           notes):
    """``evaluate --denoised`` of outputs made with other options (``denoise --no-ensemble``),
    or of a micrograph changed since: each was denoised again after a note that said only
    "its NAME.json says how it was made"; the note now says what differs. (An output of other
    options is checked as it was written now, its options named: see
    ``tests/test_evaluate.py::test_an_output_made_with_other_options_is_checked_as_written``.)"""
    import os

    import cryostream
    from cryostream.config import DenoiseConfig

    mic = Path(tiny_run.sim.micrographs[2])
    cryostream.denoise(tiny_run.run, [mic], tmp_path / "single", config=DenoiseConfig(
        ensemble=False))
    notes.clear()
    cryostream.evaluate(tiny_run.run, None, tmp_path / "report", residual=[mic],
                        denoised=tmp_path / "single")
    assert not [n for n in notes if "denoised here" in n], notes
    assert [n for n in notes if n.startswith(f"{tmp_path / 'single' / mic.name}: made with "
                                             "ensemble off, not on")], notes
    # the default output, then its micrograph touched: the change is named
    cryostream.denoise(tiny_run.run, [mic], tmp_path / "default")
    stamp = mic.stat()
    os.utime(mic, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))
    notes.clear()
    try:
        cryostream.evaluate(tiny_run.run, None, tmp_path / "report_touched", residual=[mic],
                            denoised=tmp_path / "default")
    finally:  # the micrograph is shared with other tests
        os.utime(mic, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert [n for n in notes if "denoised here" in n] == [
        f"{tmp_path / 'default' / mic.name}: not this model's output of {mic} as it is now (its "
        f"micrograph changed since it was made); {mic.name} is denoised here instead, as denoise "
        "does by default (the report scores the default)"]


def test_no_ensemble_with_its_binned_pass_does_not_promise_silence(notes):
    """``--no-ensemble`` keeps the run's binned pass: two network calls per micrograph, so the
    notes of passes done do come while a full-size one runs ('network pass 1 of 2 done'); the
    note before it gives the time and the binned pass, without 'no note until each is done'
    (which only ``--raw``'s lone pass earns)."""
    from cryostream.config import DenoiseConfig
    from cryostream.denoise import workers
    from cryostream.denoise.network import model_path, model_record

    shipped = model_path("general")
    config = DenoiseConfig(ensemble=False).for_run(model_record(shipped))
    assert config.binned_pass
    workers.cpu_time_note(shipped, config, [(4096, 4096)])
    workers.cpu_time_note(shipped, DenoiseConfig.raw(), [(4096, 4096)])
    assert len(notes) == 2
    assert notes[0].startswith("one network pass per micrograph (and one binned by 2, the binned "
                               "pass): about ") and "no note until" not in notes[0]
    assert "no note until each is done" in notes[1]


def test_a_star_file_of_broken_links_names_them(tmp_path: Path, monkeypatch, capsys):
    """A STAR file whose rows are links to micrographs since moved (a RELION Import job's, the
    data archived): the error says the row's file is a broken link to its target, not 'no such
    file in the RELION project folder', which sent one to look for another project folder."""
    from cryostream.cli import main

    star = _relion_star(tmp_path)
    (tmp_path / "archive").mkdir()
    for name in ("a", "b"):
        (tmp_path / f"{name}.mrc").rename(tmp_path / "archive" / f"{name}.mrc")
        (tmp_path / f"{name}.mrc").symlink_to(tmp_path / "archive" / f"{name}.mrc")
    (tmp_path / "archive" / "a.mrc").unlink()
    monkeypatch.chdir(tmp_path)
    assert main(["denoise", str(star), "-o", str(tmp_path / "out"), "--raw"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"cryostream denoise: error: {star}: row 1 (a.mrc): {tmp_path / 'a.mrc'} is a "
                          f"broken link ({tmp_path / 'archive' / 'a.mrc'} is not there)"), err
    assert err.endswith("; link the micrographs again, or give their new place"), err
    assert not (tmp_path / "out").exists()


def test_the_residual_check_of_a_star_file_denoises_with_its_defocus(tiny_run, tmp_path: Path):
    """``evaluate RUN --residual micrographs_ctf.star`` without ``--denoised`` denoises each
    micrograph here as ``denoise`` does from that STAR file: with the row's defocus, not a fit
    of its own, so its residual is the one of what ``denoise`` wrote (read back with
    ``--denoised``)."""
    import json

    import cryostream

    mic = Path(tiny_run.sim.micrographs[2])
    star = _one_row_star(tmp_path / "micrographs_ctf.star", mic, 300, (9000, 8000, 30))
    cryostream.denoise(tiny_run.run, star, tmp_path / "denoised")
    written = json.loads((tmp_path / "denoised" / mic.with_suffix(".json").name).read_text())
    assert written["found"]["ctf"]["defocus_u_angstrom"] == 9000  # the row's, as given
    read, here = (cryostream.evaluate(tiny_run.run, None, tmp_path / name, residual=[star],
                                      **kw)["residual"]
                  for name, kw in (("read", {"denoised": tmp_path / "denoised"}), ("here", {})))
    # the same output, up to the float32 rounding of the file written and read back
    assert [r.pop("micrograph") for r in here] == [r.pop("micrograph") for r in read]
    for r in here + read:  # the reading's words, from the numbers compared here
        r.pop("reading")
    assert [r.pop("band_angstrom") for r in here] == [r.pop("band_angstrom") for r in read]
    assert [r.pop("verdict") for r in here] == [r.pop("verdict") for r in read]
    assert [r.pop("correlation_sd_parts") for r in here] == [
        pytest.approx(r.pop("correlation_sd_parts"), rel=1e-6) for r in read]
    assert [r.pop("recipe") for r in here] == [r.pop("recipe") for r in read]
    assert [r.pop("made_with") for r in here + read] == [None, None]  # (the default's, both)
    assert [r.pop("denoised_output") for r in read] == [str(tmp_path / "denoised" / mic.name)]
    assert [r.pop("denoised_output", None) for r in here] == [None]
    assert here == [pytest.approx(r, rel=1e-6) for r in read]
