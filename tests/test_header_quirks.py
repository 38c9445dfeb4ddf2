"""Header quirks that real micrographs carry, as a scientist meets them on the command line."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest

from cryostream.cli.common import for_the_command_line
from tests.conftest import write_mrc


def _negative_pixel_size(path: Path) -> Path:
    """A micrograph whose header's cell lengths are negative: a pixel size of −0.66 Å."""
    write_mrc(path, np.random.default_rng(0).poisson(20.0, (64, 64)).astype(np.float32))
    with mrcfile.open(path, "r+") as mrc:
        mrc.header.cella.x, mrc.header.cella.y = -mrc.header.cella.x, -mrc.header.cella.y
    return path


def test_a_negative_header_pixel_size_is_named_not_called_unset(tmp_path: Path, capsys):
    """A header whose pixel size is −0.66 Å is not one that 'leaves the pixel size unset (0 Å)'
    (which sent the user looking for a zero that is not there): the error names the header's
    value and where it comes from, with the fix; nothing is written, status 2."""
    from cryostream.cli import main

    source = _negative_pixel_size(tmp_path / "neg.mrc")
    assert main(["denoise", str(source), "-o", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"cryostream denoise: error: {source}: the header gives a pixel size of -0.66 Å "
        "(cella.x -42.24 Å over mx 64), which no micrograph has; pass --pixel-size Å")
    assert not (tmp_path / "out").exists()


def test_a_negative_header_pixel_size_from_python(tmp_path: Path):
    """``open_micrographs`` says the same of such a header, and still calls a zero unset;
    ``pixel_size_angstrom=`` serves both."""
    import cryostream
    from cryostream.errors import InvalidMicrographError
    from cryostream.io.mrc import read_header
    from cryostream.io.pixel_sizes import unset_pixel_size

    source = _negative_pixel_size(tmp_path / "neg.mrc")
    with pytest.raises(InvalidMicrographError, match=r"the header gives a pixel size of -0\.66 Å \(cella"):
        cryostream.open_micrographs(source)
    first = write_mrc(tmp_path / "a.mrc", np.ones((64, 64), np.float32))
    with pytest.raises(InvalidMicrographError, match=rf"^{source}: the header gives a pixel size of -0\.66"):
        cryostream.open_micrographs([first, source])  # not 'pixel size 0 Å differs from the 0.66 Å'
    zero = write_mrc(tmp_path / "zero.mrc", np.ones((8, 8), np.float32), pixel_size=0.0)
    assert unset_pixel_size(read_header(zero)) == "the header leaves the pixel size unset (0 Å)"
    assert float(cryostream.open_micrographs(source, pixel_size_angstrom=0.66).x[1]) == pytest.approx(0.66)


def test_the_residual_check_says_what_its_numbers_mean(tiny_run, tmp_path: Path, capsys):
    """``evaluate RUN --residual MIC``: the report and the line printed had given a spectrum
    ratio and a correlation beside pure noise's with no word of what they mean or which way is
    bad; now each micrograph's reading says how far the correlation is from pure noise's
    (nothing of the specimen removed) toward the whole micrograph's, and how much of the noise
    the output keeps (or how much more than noise it took out)."""
    import json

    from cryostream.cli import main

    mic = str(tiny_run.sim.micrographs[2])
    assert main(["evaluate", str(tiny_run.run), "-o", str(tmp_path / "report"), "--residual", mic,
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    row = json.loads((tmp_path / "report" / "report.json").read_text())["residual"][0]
    way = 100 * (row["correlation_with_lowpass"] - row["correlation_if_pure_noise"]) / (
        row["correlation_if_everything"] - row["correlation_if_pure_noise"])
    assert (f"{way:.1f} % of the way from pure noise's" if way > 0 else "at or under pure noise's") \
        in row["reading"]
    assert ("of the noise there left in the output" in row["reading"]) == (row["spectrum_ratio_mean"] < 1)
    assert f"  residual of {Path(mic).name}: {row['reading']}" in out
    assert f"- {Path(mic).name}: {row['reading']}" in (tmp_path / "report" / "report.md").read_text()


def test_raw_is_not_told_of_a_ctf_fit_it_does_not_make(tiny_run, tmp_path: Path, notes):
    """``denoise MIC --raw``: the note of assumed optics said 'the CTF fit and the output STAR
    file's optics table take 300 kV …', though --raw fits no CTF; it now names only the STAR
    file's optics table. The default, which fits one, still names the fit."""
    from cryostream.cli import main
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.pixels import note_assumed_optics
    from cryostream.denoise.sources import gather_inputs

    mic = write_mrc(tmp_path / "a.mrc", np.random.default_rng(0).poisson(20.0, (256, 256)).astype(np.float32))
    assert main(["denoise", str(mic), "-o", str(tmp_path / "out"), "-m", str(tiny_run.run),
                 "--raw"]) == 0
    said = [n for n in notes if "microscope optics" in n]
    assert len(said) == 1 and "the CTF fit" not in said[0], said
    assert "the output STAR file's optics table takes 300 kV, Cs 2.7 mm and amplitude contrast 0.1" in said[0]
    notes.clear()
    micrographs = gather_inputs([mic], config=DenoiseConfig(), note_optics=False).micrographs
    note_assumed_optics(DenoiseConfig(ctf_gain=True), micrographs)
    assert "the CTF fit and the output STAR file's optics table take 300 kV" in notes[0]


def test_the_cpu_time_estimate_says_when_other_work_keeps_the_cores_busy():
    """On a machine whose two cores other work keeps busy (a test suite, another denoise), the
    note 'about 80 seconds for one of 1024 × 1024 on 2 CPU cores (this machine has 2), 4
    minutes for all here' was followed by 875 s for three 1024² micrographs, with nothing said
    of why; the note now names the load, says its times are of idle cores and about how much
    longer to expect at most (its end, :func:`busy_note`, of a load and cores given here); an
    idle machine's note is as before."""
    from cryostream.denoise import workers

    assert workers.busy_note(5.1, 2) == (
        "; other work keeps this machine busy (load average 5.1 on the 2 cores this process may "
        "use) and these times are of idle cores: expect longer, up to about 3.5× as long while "
        "it goes on")
    assert "(load average 9.6 on the 16 cores " in workers.busy_note(9.6, 16) and \
        "up to about 1.6× as long" in workers.busy_note(9.6, 16)
    assert "on the 1 core this process" in workers.busy_note(0.5, 1)
    for load, cores in ((0.9, 2), (7.9, 16), (0.0, 1)):  # under half the cores: idle enough
        assert workers.busy_note(load, cores) == ""


def test_denoise_says_at_its_start_when_the_machine_is_busy(tiny_run, tmp_path: Path, capsys,
                                                            monkeypatch):
    """``cryostream denoise`` on a CPU: its first estimate ends with the load where other work
    keeps the cores this process may use busy, and says nothing of it on an idle machine. The
    load average is set here (os.getloadavg), so that the machine's own load decides nothing."""
    import os

    from cryostream.cli import main
    from cryostream.denoise.workers import cpu_cores

    mic = tiny_run.sim.micrographs[0]
    cores = cpu_cores()
    said = []
    for load, out in ((2.0 * cores, "busy"), (0.0, "idle")):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        assert main(["denoise", str(mic), "-o", str(tmp_path / out), "-m", str(tiny_run.run),
                     "--ensemble"]) == 0
        said.append(next(n for n in capsys.readouterr().err.splitlines()
                         if n.startswith("cryostream: the ensemble runs the network 8 times")))
    assert said[0].endswith(
        f"; other work keeps this machine busy (load average {2.0 * cores:.1f} on the {cores} "
        f"core{'s' * (cores != 1)} this process may use) and these times are of idle cores: "
        "expect longer, up to about 3.0× as long while it goes on"), said[0]
    assert said[1].endswith("or use a GPU"), said[1]


def test_a_single_pass_estimate_is_said_where_a_busy_machine_makes_it_slow(tiny_run, tmp_path,
                                                                           capsys, monkeypatch):
    """``denoise --raw`` (or ``--no-ensemble``) on a CPU gives its estimate only where one
    micrograph takes 30 s or more; the load was not counted, so on two cores at a load of 8 a
    1024² micrograph estimated under 30 s took 150 s with no note of the estimate or the load.
    Now a micrograph that the load makes take 30 s or more gets the note, with the load; on an
    idle machine, as before, none. (The shared run's 160 × 128 micrograph is fast: a load
    set (os.getloadavg) high enough makes it slow.)"""
    import os

    from cryostream.cli import main
    from cryostream.denoise.workers import cpu_cores

    mic, cores = tiny_run.sim.micrographs[0], cpu_cores()
    said = []
    for load, out in ((1e6 * cores, "busy"), (0.0, "idle")):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        assert main(["denoise", str(mic), "-o", str(tmp_path / out), "-m", str(tiny_run.run),
                     "--raw", "--workers", "1"]) == 0
        said.append([n for n in capsys.readouterr().err.splitlines()
                     if n.startswith("cryostream: one network pass per micrograph")])
    assert len(said[0]) == 1 and "other work keeps this machine busy (load average" in said[0][0]
    assert said[1] == []


def test_the_residual_check_says_when_it_takes_a_pixel_size_of_1_angstrom(tiny_run, tmp_path: Path):
    """``evaluate RUN --residual MIC`` where MIC's header has no usable pixel size (0, or
    negative): the check went on at 1 Å per pixel without a word, so its '20 Å low-pass' was
    20 pixels and the CTF fit was made at the wrong scale (denoise refuses such a file). Now a
    warning names the file, what its header gives and the 1 Å taken, and how to set it."""
    from cryostream.cli import main
    from cryostream.io.pixel_sizes import PixelSizeWarning

    data = mrcfile.read(tiny_run.sim.micrographs[2])
    for name, pixel in (("zero.mrc", 0.0), ("neg.mrc", -0.66)):
        mic = tmp_path / name
        write_mrc(mic, data, pixel_size=abs(pixel))
        if pixel < 0:
            with mrcfile.open(mic, "r+") as mrc:
                mrc.header.cella.x = -mrc.header.cella.x
        with pytest.warns(PixelSizeWarning) as caught:  # the command line prints it on stderr
            assert main(["evaluate", str(tiny_run.run), "-o", str(tmp_path / name[:-4]),
                         "--residual", str(mic), "--quiet"]) == 0
        said = "the header leaves the pixel size unset (0 Å)" if pixel == 0 else \
            "the header gives a pixel size of -0.66 Å"
        assert [str(w.message).startswith(f"{mic}: {said}") for w in caught] == [True]
        assert ("; its residual is checked at 1 Å per pixel and reported in pixels (its 20 Å "
                "low-pass is 20 pixels, its CTF fit at that scale): pass --pixel-size Å, write the "
                "pixel size into its header") in for_the_command_line(caught[0].message)


def test_evaluate_takes_the_pixel_size_as_denoise_does(tiny_run, tmp_path: Path, capsys):
    """``evaluate RUN --residual MIC`` had no --pixel-size: a micrograph whose header has none
    was checked at 1 Å per pixel, and nothing but editing its header changed that. It takes
    --pixel-size as denoise does: over the header (no warning where the header has none, a
    PixelSizeWarning where it is twice or half the header's), checked before any work, and
    only with --residual."""
    import json
    import warnings

    from cryostream.cli import main
    from cryostream.io.pixel_sizes import PixelSizeWarning

    data = mrcfile.read(tiny_run.sim.micrographs[2])
    unset = write_mrc(tmp_path / "unset.mrc", data, pixel_size=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PixelSizeWarning)  # the header has none: nothing to say
        assert main(["evaluate", str(tiny_run.run), "-o", str(tmp_path / "a"), "--residual",
                     str(unset), "--pixel-size", "0.66", "--quiet"]) == 0
    row = json.loads((tmp_path / "a" / "report.json").read_text())["residual"][0]
    assert row["pixel_size_angstrom"] == 0.66 and row["band_angstrom"] == [13.2, 1.32]
    assert "| unset.mrc | 0.66 | 13.2–1.32 Å |" in (tmp_path / "a" / "report.md").read_text()
    # one that disagrees with the header is used as given, with denoise's warning
    own = write_mrc(tmp_path / "own.mrc", data, pixel_size=0.66)
    with pytest.warns(PixelSizeWarning) as caught:
        assert main(["evaluate", str(tiny_run.run), "-o", str(tmp_path / "b"), "--residual",
                     str(own), "--pixel-size", "1.5", "--quiet"]) == 0
    assert [str(w.message) for w in caught] == [
        "--pixel-size 1.5 Å is 2.27× the 0.66 Å in the MRC header of own.mrc; it is used as given: "
        "check it (a wrong pixel size misplaces the CTF fit; nothing to do if the micrographs' own "
        "are wrong)"]
    assert json.loads((tmp_path / "b" / "report.json").read_text())["residual"][0][
        "pixel_size_angstrom"] == 1.5
    capsys.readouterr()
    from cryostream.evaluate import select_held_out
    from cryostream.runs import load_record

    held = select_held_out(tiny_run.sim.root, 2, load_record(tiny_run.run).store).pairs[0][0]
    for extra, said in ((["--residual", str(own), "--pixel-size", "1e6"],
                         "--pixel-size 1000000.0: a pixel size of 1e+06 Å is outside 0.05–100 Å; "
                         "pass the micrographs' pixel size in Å"),
                        (["--truth", str(tiny_run.sim.root), "--pixel-size", "0.66"],
                         "--pixel-size 0.66 is for the micrographs checked with --residual and "
                         "the --truth micrographs whose headers have none, and these give theirs "
                         f"(e.g. 0.6575 Å in {held}): leave it out"),
                        (["--pixel-size", "0.66"], "--pixel-size 0.66 is the pixel size of the "
                         "micrographs checked with --residual and of --truth "
                         "micrographs whose headers have none; give those, or leave it out")):
        assert main(["evaluate", str(tiny_run.run), "-o", str(tmp_path / "c"), *extra]) == 2
        assert capsys.readouterr().err.strip() == f"cryostream evaluate: error: {said}"
        assert not (tmp_path / "c").exists()


def test_a_ctf_fallback_names_the_record_field_and_its_score(tmp_path: Path):
    """The warning of a CTF fit whose gain does not lower the error named a Python function,
    '(ctf_gain_check)', which NAME.json does not hold; it now gives the score and its field there
    (``ctf_check``, used only below 0), as a scientist would look it up."""
    import warnings

    from cryostream.ctf import CTFFallbackWarning
    from cryostream.denoise.fallback import FIT_ADVICE, warn_fallback

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_fallback("m.mrc: the CTF fitted from its spectrum", 8.51, FIT_ADVICE,
                      fit={"rival_defocus_angstrom": None}, check=1.7985e-06)
    assert [w.category for w in caught] == [CTFFallbackWarning]
    text = str(caught[0].message)
    assert "ctf_gain_check" not in text
    assert text.startswith("m.mrc: the CTF fitted from its spectrum does not lower the error by "
                           "recorruption (its check scored +1.8e-06, recorded as ctf_check in "
                           "NAME.json; the CTF-shaped gain is kept only where the check scores "
                           "below 0); it is denoised with the radial"), text


def _ringless(n: int = 512) -> np.ndarray:
    """A micrograph (counts over 25) whose signal, a 1/f field, has no Thon rings: a CTF-shaped
    gain, which zeroes the signal at its rings' zeros, does no better than the radial one."""
    rng = np.random.default_rng(0)
    f = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.rfftfreq(n)[None, :])
    field = np.fft.irfft2(np.fft.rfft2(rng.normal(size=(n, n))) / np.maximum(f, 1 / n), s=(n, n))
    field -= field.min()
    return (rng.poisson(field / field.mean() * 20) / 25).astype(np.float32)


def test_clear_rings_whose_check_keeps_the_radial_gain_give_no_warning():
    """A real 4096² micrograph at 41 e/Å² scored its rings z 18.2 and its check +1.4e-05, and
    a real 2048² crop z 14.9: each was warned of, first to check the optics (which were right),
    then that 'the optics and the defocus are not in doubt' (clear rings do not prove the pixel
    size: at 1 Å for 0.6666 the crop's rings were as clear, at 6.08 µm). Nothing is wrong with
    such an output, and on real micrographs it can be every one: no warning (the progress note
    says it, and the first of a call is noted once). Rings near the bar keep the warning, whose
    advice now names the pixel size."""
    import warnings

    from cryostream.ctf import CTFFallbackWarning, CTFFit
    from cryostream.denoise.fallback import FIT_ADVICE, checked_gain
    from cryostream.matched import estimate_noise

    image = _ringless()
    noise, fit = estimate_noise(image, 0.66), CTFFit(15000.0, 15000.0, 0.0, 0.01, 0.66)

    def said(z):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check = checked_gain(image, noise, fit, "m.mrc: the CTF fitted from its spectrum", z,
                                 advice=FIT_ADVICE)
        assert check >= 0  # the radial gain does as well: kept
        return [str(w.message) for w in caught if issubclass(w.category, CTFFallbackWarning)]

    assert said(14.9) == []
    (warned,) = said(5.1)
    assert warned.endswith(FIT_ADVICE) and "not in doubt" not in warned
    assert for_the_command_line(FIT_ADVICE).endswith(
        "check the pixel size (--pixel-size Å), --voltage, --cs and --amplitude-contrast")


#: What denoise recorded (NAME.json's ``found``) of a real EPU micrograph's 2048² crop, at its
#: header's 0.6666 Å and with the header set to 1 Å, and of its 1024² crop: rings clear (z 16.3,
#: 14.95) or not (7.34), each check a little over 0 (the radial gain kept).
_REAL_FOUND = {
    "a.mrc": {"pixel_size_angstrom": 0.666551, "ctf": {
        "defocus_u_angstrom": 27209.9, "defocus_v_angstrom": 27079.8, "astigmatism_angle_deg": 116.3,
        "score": 0.0322, "defocus_error_angstrom": None}, "ctf_rings_z": 16.31,
        "ctf_check": 3.46e-06, "ctf_used": False, "fallback": "radial"},
    "c.mrc": {"pixel_size_angstrom": 1.0, "ctf": {
        "defocus_u_angstrom": 60765.6, "defocus_v_angstrom": 60419.0, "astigmatism_angle_deg": 118.1,
        "score": 0.0173, "defocus_error_angstrom": None}, "ctf_rings_z": 14.95,
        "ctf_check": 5.17e-06, "ctf_used": False, "fallback": "radial"},
    "crop.mrc": {"pixel_size_angstrom": 0.666551, "ctf": {
        "defocus_u_angstrom": 27192.0, "defocus_v_angstrom": 27148.8, "astigmatism_angle_deg": 141.6,
        "score": 0.0110, "defocus_error_angstrom": None}, "ctf_rings_z": 7.34,
        "ctf_check": 1.73e-05, "ctf_used": False, "fallback": "radial"}}


def test_clear_rings_whose_check_keeps_the_radial_gain_are_noted_once(notes):
    """Each micrograph's note said 'CTF check failed' where the radial gain merely did as well
    (no failure of anything); it says what the check found. The first micrograph of a call
    whose rings are clear and whose check kept the radial gain is noted once (not a warning
    per micrograph): the output is sound, and a defocus far from the microscope's says to check
    the pixel size and the optics (the 1 Å header's 6.08 µm)."""
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.micrograph import Progress

    progress = Progress(3, 0, config=DenoiseConfig())
    for name, found in _REAL_FOUND.items():
        progress.note(name, 60.0, found, key=name)
    said = [for_the_command_line(n) for n in notes]
    assert [n.split(": ", 1)[1].split("; about")[0] for n in said if n.startswith("denoised")] == [
        f"60.0 s; defocus {d} µm, CTF check: the CTF shape does no better: radial Wiener gain"
        for d in ("2.72/2.71", "6.08/6.04", "2.72/2.71")]
    assert [n for n in said if not n.startswith("denoised")] == [
        "a.mrc: its Thon rings are clear (z 16.3), so the CTF fit found them (defocus 2.72/2.71 "
        "µm), and the CTF check found the radial gain does as well on it: the radial gain is "
        "kept, and the output is sound (a denoise output's NAME.json records ctf_used false). "
        "Others like it in this call are not noted again (their notes read 'CTF check: the CTF "
        "shape does no better'). If the "
        "fitted defocus is far from the one set on the microscope, check the pixel size "
        "(--pixel-size Å) and the optics (--voltage, --cs, --amplitude-contrast)"]
    assert not any("failed" in n or "not in doubt" in n for n in said)


def _epu(path: Path, volts: float, ht_set: bool = True, *, pixel_size: float = 0.66,
         epu_pixel_size: float = 0.0, pixel_size_set: bool = True) -> Path:
    """A micrograph with an FEI1 extended header, as EPU writes it, whose record gives ``volts``
    (its bitmask marking HT set or not) and, where given, ``epu_pixel_size`` Å (in metres, as
    the record holds it; its bitmask marking Pixel size X and Y set or not); ``pixel_size``: the
    MRC header's (0: unset)."""
    from mrcfile.dtypes import get_ext_header_dtype

    write_mrc(path, np.random.default_rng(1).poisson(20.0, (256, 256)).astype(np.float32),
              pixel_size=pixel_size)
    record = np.zeros(1, get_ext_header_dtype(b"FEI1"))
    record["Metadata size"], record["HT"] = record.dtype.itemsize, volts
    record["Bitmask 1"] = (1 << 5) if ht_set else 0
    if epu_pixel_size:
        record["Pixel size X"] = record["Pixel size Y"] = epu_pixel_size * 1e-10
        record["Bitmask 1"] |= ((1 << 14) | (1 << 15)) if pixel_size_set else 0
    with mrcfile.open(path, "r+") as mrc:
        mrc.set_extended_header(record)
        mrc.header.exttyp = b"FEI1"
    return path


def test_an_epu_micrographs_voltage_comes_from_its_header(tiny_run, tmp_path: Path, notes):
    """An EPU micrograph from a 200 kV microscope (a Glacios) carries its voltage in its FEI
    extended header, yet the CTF gain and the output STAR file took 300 kV, with a note to pass
    --voltage. The header's voltage is now used where no STAR file or option gives one, and the
    note names only what is still assumed; a typed --voltage or a STAR file's wins over it, and
    a record whose bitmask leaves HT unset gives none."""
    import starfile

    from cryostream.cli import main
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.pixels import typed_optics
    from cryostream.denoise.sources import gather_inputs
    from cryostream.io.mrc import read_header

    glacios = _epu(tmp_path / "glacios.mrc", 200000.0)
    assert read_header(glacios).voltage_kv == 200.0
    assert read_header(_epu(tmp_path / "unset.mrc", 200000.0, ht_set=False)).voltage_kv == 0.0
    assert main(["denoise", str(glacios), "-o", str(tmp_path / "out"), "-m", str(tiny_run.run),
                 "--raw"]) == 0
    assert [n.split(" (")[0] for n in notes if "microscope" in n or "contrast from" in n] == [
        "1 micrograph has no Cs or amplitude contrast from a STAR file or an option"]
    optics = starfile.read(tmp_path / "out" / "denoised_micrographs.star", always_dict=True)["optics"]
    assert optics["rlnVoltage"].tolist() == [200.0]
    with typed_optics({"voltage_kv"}):
        (typed,) = gather_inputs([glacios], config=DenoiseConfig(voltage_kv=300.0)).micrographs
    assert typed.optics["voltage_kv"] == 300.0


def test_the_optics_note_names_the_epu_header_that_gave_the_voltage(tiny_run, tmp_path: Path,
                                                                   notes):
    """``denoise`` of an EPU micrograph (300 kV in its FEI extended header) beside one without
    such a header: the note counted both among the micrographs with no microscope optics and
    said that both took 300 kV from cryostream's defaults, the EPU one's voltage its header's.
    Each now has its own note, the EPU one's naming its header as the voltage's source."""
    from cryostream.cli import main

    krios = _epu(tmp_path / "krios.mrc", 300000.0)
    plain = write_mrc(tmp_path / "plain.mrc",
                      np.random.default_rng(2).poisson(20.0, (256, 256)).astype(np.float32))
    assert main(["denoise", str(krios), str(plain), "-o", str(tmp_path / "out"), "-m",
                 str(tiny_run.run), "--raw"]) == 0
    assert [n for n in notes if "optics" in n] == [
        "1 micrograph has no Cs or amplitude contrast from a STAR file or an option (the rest of "
        "its optics given; 300 kV from the micrograph's EPU header): the output STAR file's "
        "optics table takes Cs 2.7 mm and amplitude contrast 0.1 (nothing to do if that is your "
        "microscope's); for another, pass --cs and --amplitude-contrast (Python: the "
        "DenoiseConfig's cs_mm and amplitude_contrast)",
        "1 micrograph has no microscope optics from a STAR file or an option: the output STAR "
        "file's optics table takes 300 kV, Cs 2.7 mm and amplitude contrast 0.1 (a Krios; "
        "nothing to do if they are your microscope's); for another, pass --voltage, --cs and "
        "--amplitude-contrast (Python: the DenoiseConfig's voltage_kv, cs_mm and "
        "amplitude_contrast), e.g. --voltage 200 for a Glacios or a Talos Arctica"]


def test_the_optics_note_counts_the_epu_headers_of_a_group_that_took_its_voltage_elsewhere_too(notes):
    """Micrographs lacking the same optics (Cs, amplitude contrast), one with its voltage from
    its EPU header and one from its STAR file: the note said '200 kV from the micrographs' EPU
    headers' of both; it now says how many of them the EPU headers gave it."""
    import types

    from cryostream.config import DenoiseConfig
    from cryostream.denoise.pixels import note_assumed_optics

    def micrograph(source):
        return types.SimpleNamespace(optics={"voltage_kv": 200.0, "cs_mm": 2.7,
                                             "amplitude_contrast": 0.1},
                                     optics_from={"voltage_kv": source})

    note_assumed_optics(DenoiseConfig(), [micrograph("EPU header"), micrograph("STAR file")])
    (said,) = [n for n in notes if "Cs or amplitude contrast" in n]
    assert said.startswith("2 micrographs have no Cs or amplitude contrast from a STAR file or an "
                           "option (the rest of their optics given; 200 kV from the EPU headers "
                           "of 1 of them): ")
    notes.clear()
    note_assumed_optics(DenoiseConfig(), [micrograph("EPU header")] * 2)
    assert "200 kV from the micrographs' EPU headers)" in notes[0]


def test_an_epu_micrographs_pixel_size_comes_from_its_header_where_the_mrc_header_has_none(
        tiny_run, tmp_path: Path, notes):
    """An EPU micrograph whose MRC header leaves the pixel size unset (0 Å), or gives 1 Å (a
    placeholder), carries its pixel size in its FEI extended header (in metres, with a bit of
    its bitmask), yet ``denoise`` stopped with 'the header leaves the pixel size unset' (or took
    1 Å). The EPU header's is now the micrograph's, written into the output and its STAR file,
    with a note naming where it came from (and a --pixel-size far from it names the EPU header,
    not the MRC header); a record whose bitmask leaves it unset gives none."""
    import starfile

    from cryostream.cli import main
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.pixels import PixelSizeWarning
    from cryostream.denoise.sources import gather_inputs
    from cryostream.denoise.verbose import optics_words
    from cryostream.io.mrc import read_header

    unset = _epu(tmp_path / "unset.mrc", 300000.0, pixel_size=0.0, epu_pixel_size=0.83)
    header = read_header(unset)
    assert (header.pixel_size_angstrom, header.pixel_size_y_angstrom, header.pixel_size_from) == (
        0.83, 0.83, "EPU header")
    no_bit = _epu(tmp_path / "no_bit.mrc", 300000.0, pixel_size=0.0, epu_pixel_size=0.83,
                  pixel_size_set=False)
    assert (read_header(no_bit).pixel_size_angstrom, read_header(no_bit).epu_pixel_size_angstrom) == (0, 0)
    out = tmp_path / "out"
    assert main(["denoise", str(unset), "-o", str(out), "-m", str(tiny_run.run), "--raw"]) == 0
    assert [n for n in notes if "pixel size" in n] == [
        f"{header.path}: the pixel size 0.83 Å comes from the micrograph's EPU header (its MRC "
        "header leaves it unset); pass --pixel-size Å (Python: pixel_size_angstrom=) if it is "
        "not right"]
    rows = starfile.read(out / "denoised_micrographs.star", always_dict=True)["optics"]
    assert rows["rlnMicrographPixelSize"].tolist() == [0.83]
    with mrcfile.open(out / "unset.mrc", header_only=True) as mrc:
        assert float(mrc.voxel_size.x) == pytest.approx(0.83)
    notes.clear()
    placeholder = _epu(tmp_path / "one.mrc", 300000.0, pixel_size=1.0, epu_pixel_size=0.83)
    (got,) = gather_inputs([placeholder], config=DenoiseConfig()).micrographs
    assert got.pixel_size_angstrom == 0.83
    assert optics_words(got, DenoiseConfig()).startswith("pixel size 0.83 Å from its EPU header; ")
    assert got.given() is None  # its file's own: not a value given from elsewhere
    assert [n.split("; ")[0] for n in notes if "pixel size" in n] == [
        f"{got.source}: the pixel size 0.83 Å comes from the micrograph's EPU header (its MRC "
        "header gives 1 Å, taken as a placeholder)"]
    with pytest.warns(PixelSizeWarning) as caught:  # a --pixel-size far off names that header
        gather_inputs([unset], config=DenoiseConfig(), pixel_size_angstrom=8.3)
    assert str(caught[0].message).startswith(
        "--pixel-size 8.3 Å is 10× the 0.83 Å in the EPU header of unset.mrc; it is used as given")


def test_an_mrc_header_pixel_size_its_epu_header_disagrees_with_is_kept_with_a_warning(
        tmp_path: Path):
    """EPU micrographs whose MRC header gives 0.66 Å and whose FEI extended header gives
    0.83 Å keep the MRC header's, with one warning naming both values and the first file; an
    EPU header within 10 % of the MRC header's says nothing (EPU writes the nominal pixel size,
    and a calibrated one a few % off it in the MRC header is routine: cryostream's own outputs
    carry both)."""
    import warnings

    from cryostream.config import DenoiseConfig
    from cryostream.denoise.pixels import PixelSizeWarning
    from cryostream.denoise.sources import gather_inputs

    apart = [_epu(tmp_path / f"{n}.mrc", 300000.0, epu_pixel_size=0.83) for n in "ab"]
    close = _epu(tmp_path / "c.mrc", 300000.0, epu_pixel_size=0.7)  # 6 % off: calibrated
    with pytest.warns(PixelSizeWarning) as caught:
        got = gather_inputs([*apart, close], config=DenoiseConfig())
    assert [str(w.message) for w in caught] == [
        f"{apart[0].resolve()} and 1 more: the MRC header gives a pixel size of 0.66 Å, the EPU "
        "(FEI) extended header 0.83 Å; the MRC header's, 0.66 Å, is used: pass --pixel-size Å "
        "(Python: pixel_size_angstrom=) if it is not right"]
    assert [m.pixel_size_angstrom for m in got.micrographs] == [0.66] * 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gather_inputs([close], config=DenoiseConfig())


def test_a_star_file_s_pixel_size_against_an_epu_header_s_names_that_header(tmp_path: Path):
    """A STAR file listing EPU micrographs whose MRC header leaves the pixel size unset and
    whose FEI extended header gives 0.83 Å, the STAR file saying 0.66 Å: the warning said the
    STAR file's 'differs from the MRC headers' (… 0.83 Å in the header of …)', a value no MRC
    header holds (it leaves it unset). It names the EPU header that gives it; a STAR file
    against MRC headers is said as before."""
    import pandas as pd
    import starfile

    from cryostream.config import DenoiseConfig
    from cryostream.denoise.sources import gather_inputs
    from cryostream.io.star import StarFileWarning

    for name, mrc_pixel in (("epu", 0.0), ("plain", 0.83)):
        folder = tmp_path / name
        folder.mkdir()
        _epu(folder / "a.mrc", 300000.0, pixel_size=mrc_pixel, epu_pixel_size=0.83)
        starfile.write({"optics": pd.DataFrame({
            "rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
            "rlnMicrographPixelSize": [0.66], "rlnVoltage": [300.0],
            "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1]}),
            "micrographs": pd.DataFrame({"rlnMicrographName": ["a.mrc"], "rlnOpticsGroup": [1]})},
            folder / "micrographs.star")
    said = {}
    for name in ("epu", "plain"):
        with pytest.warns(StarFileWarning) as caught:
            got = gather_inputs(tmp_path / name / "micrographs.star", config=DenoiseConfig())
        assert [m.pixel_size_angstrom for m in got.micrographs] == [0.66]
        said[name] = [str(w.message).split("; the STAR file's")[0] for w in caught]
    assert said == {
        "epu": [f"{tmp_path / 'epu' / 'micrographs.star'}: its pixel size differs from the "
                "headers' (0.66 Å in the STAR file, 0.83 Å in the EPU header of a.mrc)"],
        "plain": [f"{tmp_path / 'plain' / 'micrographs.star'}: its pixel size differs from the "
                  "MRC headers' (0.66 Å in the STAR file, 0.83 Å in the header of a.mrc)"]}


def test_denoise_names_a_header_pixel_size_apart_from_the_others(tiny_run, tmp_path: Path):
    """A newcomer denoised a folder of EPU micrographs, one of whose headers had been set to
    1 Å among others at 0.6666 Å: it was denoised at 1 Å without a word (its CTF fit put the
    defocus at 6.08 µm, 2.72 µm at the right size), where prepare and fit warn of headers of
    several pixel sizes. denoise now warns once, in their words: it names the file that stands
    out, its size and the others', says exactly 1 Å is most likely a placeholder, and how to
    fix it; each micrograph is still denoised at its own header's size."""
    import json
    import warnings

    from cryostream.cli import main
    from cryostream.io.pixel_sizes import PixelSizeWarning

    data = mrcfile.read(tiny_run.sim.micrographs[2])
    folder = tmp_path / "in"
    folder.mkdir()
    for name, pixel in (("a", 0.6666), ("b", 0.6666), ("c", 1.0)):
        write_mrc(folder / f"{name}.mrc", data, pixel_size=pixel)
    fast = ["--raw", "--tile", "64", "--workers", "1"]
    with pytest.warns(PixelSizeWarning) as caught:
        assert main(["denoise", str(tiny_run.run), str(folder), "-o", str(tmp_path / "out"),
                     *fast]) == 0
    said = [for_the_command_line(w.message) for w in caught
            if issubclass(w.category, PixelSizeWarning)]
    assert said == [
        "the micrographs' headers give 2 pixel sizes (0.6666 Å (a.mrc and 1 more), 1 Å (c.mrc)); "
        "each micrograph is taken at its own, and a wrong one misplaces its CTF fit (the defocus "
        "comes out scaled by the square of the error) and the scale the network sees. c.mrc "
        "gives 1 Å, the other 2 micrographs 0.6666 Å; exactly 1 Å is most likely a placeholder "
        "(a header whose pixel size was never set), not a measured size. Correct c.mrc's header "
        "(e.g. IMOD's alterheader), or run it on its own with --pixel-size Å; if 1 Å is its "
        "true size, nothing to do"]
    used = {n: json.loads((tmp_path / "out" / f"{n}.json").read_text())["found"]
            ["pixel_size_angstrom"] for n in "abc"}
    assert used == {"a": 0.6666, "b": 0.6666, "c": 1.0}
    # sizes apart by another magnification: the odd one named, the fix for one data set
    write_mrc(folder / "c.mrc", data, pixel_size=1.3)
    with pytest.warns(PixelSizeWarning) as caught:
        assert main(["denoise", str(tiny_run.run), str(folder), "-o", str(tmp_path / "two"),
                     *fast]) == 0
    assert [for_the_command_line(w.message).split(". ", 1)[1] for w in caught] == [
        "c.mrc gives 1.3 Å, the other 2 micrographs 0.6666 Å. If they come from one data set, "
        "correct c.mrc's header (e.g. IMOD's alterheader), or run it on its own with "
        "--pixel-size Å; otherwise nothing to do"]
    # headers within 1 % (one rounded), or --pixel-size over them all: nothing to say
    write_mrc(folder / "c.mrc", data, pixel_size=0.67)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PixelSizeWarning)
        assert main(["denoise", str(tiny_run.run), str(folder), "-o", str(tmp_path / "near"),
                     *fast]) == 0
        write_mrc(folder / "c.mrc", data, pixel_size=1.0)
        assert main(["denoise", str(tiny_run.run), str(folder), "-o", str(tmp_path / "given"),
                     "--pixel-size", "0.6666", *fast]) == 0


def test_odd_pixel_sizes_of_which_one_is_1_angstrom_are_not_all_called_1_angstrom(tmp_path):
    """Headers of 1 Å, 1.3 Å and twice 0.6666 Å: both odd files are named with their sizes,
    1 Å is said to be most likely a placeholder, and the last clause speaks of their sizes (it
    said 'if 1 Å is their true size', as if both were at 1 Å)."""
    import numpy as np

    from cryostream.io.mrc import read_header
    from cryostream.io.pixel_sizes import PixelSizeWarning, warn_mixed_pixel_sizes

    data = np.zeros((8, 8), np.float32)
    for name, pixel in (("a", 0.6666), ("b", 0.6666), ("c", 1.0), ("d", 1.3)):
        write_mrc(tmp_path / f"{name}.mrc", data, pixel_size=pixel)
    headers = [read_header(tmp_path / f"{n}.mrc") for n in "abcd"]
    with pytest.warns(PixelSizeWarning) as caught:
        warn_mixed_pixel_sizes(headers, "each is taken at its own", "nothing to do",
                               option="run {them} on {their} own with --pixel-size Å")
    said = str(caught[0].message)
    assert "c.mrc gives 1 Å; d.mrc gives 1.3 Å, the other 2 micrographs 0.6666 Å" in said, said
    assert "exactly 1 Å is most likely a placeholder" in said
    assert said.endswith("Correct the odd headers (e.g. IMOD's alterheader), or run them on "
                         "their own with --pixel-size Å; if those are their true sizes, nothing "
                         "to do"), said


def test_gain_scaled_integer_micrographs_denoise_as_their_counts_do(tiny_run, tmp_path):
    """EPU writes gain-scaled micrographs (a real one: uint16, its variance over its mean about
    70, not electron counts). Nothing in ``denoise`` takes pixels for counts: it divides a
    micrograph by its percentile and measures its noise on it, so the micrograph times 70
    written as uint16, or divided by 73.3 as float32, gives the same output up to that scale,
    with the same findings; no note is due for such data."""
    import json

    from cryostream.cli import main

    source = tiny_run.sim.micrographs[0]
    with mrcfile.open(source) as mrc:
        counts, size = np.asarray(mrc.data), mrc.voxel_size
    assert np.array_equal(counts, np.rint(counts))  # whole counts: times 70 is exact in uint16
    folder = tmp_path / "in"
    folder.mkdir()
    scales = {"counts": 1.0, "x70_uint16": 70.0, "d73_float32": 1 / 73.3}
    for name, scale in scales.items():
        data = np.rint(counts * 70).astype(np.uint16) if name == "x70_uint16" else \
            (counts * np.float32(scale)).astype(np.float32)
        with mrcfile.new(folder / f"{name}.mrc") as mrc:
            mrc.set_data(data)
            mrc.voxel_size = size
    assert main(["denoise", str(tiny_run.run), str(folder), "-o", str(tmp_path / "out"),
                 "--quiet"]) == 0
    out = {n: mrcfile.read(tmp_path / "out" / f"{n}.mrc").astype(np.float64) / s
           for n, s in scales.items()}
    found = {n: json.loads((tmp_path / "out" / f"{n}.json").read_text())["found"]
             for n in scales}
    for name in ("x70_uint16", "d73_float32"):
        assert np.abs(out[name] - out["counts"]).max() < 1e-4 * out["counts"].std(), name
        assert found[name].keys() == found["counts"].keys(), name
