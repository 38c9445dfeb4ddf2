"""A project moved or copied with its files' times kept (``mv``, ``cp -a``, ``rsync -a``), then
denoised again by the same command: every finished output is found again, not refused nor made
again, and the STAR file names the files where they are now (cryostream.denoise.moved). Real
MRC and STAR files, a real run, the real commands in-process."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import starfile

import cryostream
from cryostream import MicrographSkippedWarning
from cryostream.cli import main
from cryostream.cli.relion_external import main as relion_main
from cryostream.config import SimulateConfig
from cryostream.denoise.star_out import UnlistedOutputWarning

STAR = "denoised_micrographs.star"


def _project(tiny_run, root: Path) -> Path:
    """A folder holding two micrographs (``mics/m0.mrc``, ``mics/m1.mrc``) and a copy of the
    tiny run (``run``), its times kept."""
    (root / "mics").mkdir(parents=True)
    for i, source in enumerate(tiny_run.sim.micrographs[:2]):
        shutil.copy(source, root / "mics" / f"m{i}.mrc")
    shutil.copytree(tiny_run.run, root / "run")
    return root


def _denoise(root: Path, *names: str) -> int:
    """``cryostream denoise`` of the project ``root``'s micrographs ``names`` (``--`` options
    after them) into ``root/out`` with its own run."""
    k = next((i for i, n in enumerate(names) if n.startswith("--")), len(names))
    return main(["denoise", str(root / "run"), *(str(root / "mics" / n) for n in names[:k]), "-o",
                 str(root / "out"), "--raw", "--tile", "64", "--workers", "1", *names[k:]])


def _listed(star: Path) -> list[str]:
    return list(starfile.read(star, always_dict=True)["micrographs"]["rlnMicrographName"])


def _times(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob("*.mrc"))}


def _as_written_before(folder: Path) -> None:
    """The records in ``folder`` as cryostream 0.1.0 wrote them before they named the output's
    own place and their input's ends' digest (``output``, ``output_folder``,
    ``input_ends_sha256``) and a run's checkpoint's checksum (``model_files``'
    ``params_sha256``): the keys of a record that version wrote, each value as it gave it."""
    for sidecar in folder.glob("*.json"):
        record = json.loads(sidecar.read_text())
        for key in ("output", "output_folder", "input_ends_sha256"):
            del record[key]
        record["model_files"].pop("params_sha256", None)
        sidecar.write_text(json.dumps(record, indent=1))


def test_a_moved_project_s_outputs_are_found_again_and_listed_where_they_are(
        tiny_run, tmp_path, monkeypatch, capsys):
    """``mv proj elsewhere/proj2`` (inputs, run and outputs together), then the same command
    with the new paths: both outputs are kept as they were and the STAR file lists each once,
    by its new path. One made again there (deleted first) is listed with the other's earlier
    row, made by the same run in its old place (no .bak: the same model, not another)."""
    monkeypatch.chdir(tmp_path)
    assert _denoise(_project(tiny_run, tmp_path / "proj"), "m0.mrc", "m1.mrc") == 0
    made = json.loads((tmp_path / "proj" / "out" / "m0.json").read_text())
    assert (made["output"], made["output_folder"]) == (  # where it was made, for a move after
        str(tmp_path / "proj" / "out" / "m0.mrc"), str(tmp_path / "proj" / "out"))
    (tmp_path / "elsewhere").mkdir()
    moved = Path(shutil.move(tmp_path / "proj", tmp_path / "elsewhere" / "proj2"))
    before = _times(moved / "out")
    capsys.readouterr()
    assert _denoise(moved, "m0.mrc", "m1.mrc") == 0
    said = capsys.readouterr()
    assert "(2 finished earlier, kept)" in said.out, said
    assert "2 of 2 micrographs already denoised" in said.err
    assert _times(moved / "out") == before
    assert _listed(moved / "out" / STAR) == [f"elsewhere/proj2/out/m{i}.mrc" for i in range(2)]
    # with other options: refused, saying what differs, not the paths that moved
    assert _denoise(moved, "m0.mrc", "--dtype", "float16") == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f"{moved / 'out' / 'm0.mrc'} exists and is not this run's output for "
        f"{moved / 'mics' / 'm0.mrc'} with these options (made with --dtype 'float32', not "
        "'float16'); pass --overwrite to replace it, or choose another output folder: -o DIR")
    # m0 made again in the new place; m1's row, of the same run in its old place, kept
    for made in ("m0.mrc", "m0.json"):
        (moved / "out" / made).unlink()
    assert _denoise(moved, "m0.mrc") == 0
    assert json.loads((moved / "out" / "m0.json").read_text())["run"] == str(moved / "run")
    assert _listed(moved / "out" / STAR) == [f"elsewhere/proj2/out/m{i}.mrc" for i in range(2)]
    assert sorted(p.name for p in (moved / "out").glob("*.bak*")) == []


@pytest.mark.parametrize("records", ["new", "old"])
def test_a_copy_without_its_times_is_made_again_not_refused(tiny_run, tmp_path, monkeypatch,
                                                             capsys, records):
    """A project copied without its times (``cp -r``): its inputs' times are new, so they may
    have been remade (motion correction run again): the outputs are made again, with their
    records naming the copy, not refused as another run's. So too for records made before
    they named the output's own place (``old``: the copy guessed from the folders)."""
    monkeypatch.chdir(tmp_path)
    assert _denoise(_project(tiny_run, tmp_path / "proj"), "m0.mrc", "m1.mrc") == 0
    if records == "old":
        _as_written_before(tmp_path / "proj" / "out")
    copy = Path(shutil.copytree(tmp_path / "proj", tmp_path / "copy", copy_function=shutil.copy))
    for output in (copy / "out").glob("*.mrc"):
        os.utime(output, ns=(1, 1))  # a mark: an output made again has the time of now
    capsys.readouterr()
    assert _denoise(copy, "m0.mrc", "m1.mrc") == 0
    said = capsys.readouterr()
    assert said.err.count("the input or the model changed since") == 2, said.err
    assert all(t > 1 for t in _times(copy / "out").values())
    for i in range(2):
        record = json.loads((copy / "out" / f"m{i}.json").read_text())
        assert record["input"] == str(copy / "mics" / f"m{i}.mrc")
    assert _listed(copy / "out" / STAR) == [f"copy/out/m{i}.mrc" for i in range(2)]


def test_a_micrograph_of_the_same_name_elsewhere_is_not_taken_for_it(tiny_run, tmp_path,
                                                                     capsys):
    """``A/x.mrc`` denoised into ``out``, then another micrograph ``B/x.mrc`` (the same size,
    another time) into the same ``out``: refused as before, the output kept. ``A`` moved with
    its times kept (to another disk, the outputs left where they are) is still ``A``: found
    again."""
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    first, other = (str(shutil.copy(s, tmp_path / f / "x.mrc"))
                    for s, f in zip(tiny_run.sim.micrographs[:2], "AB", strict=True))
    os.utime(other, ns=(10**18, 10**18))
    out = tmp_path / "out"
    options = ["-o", str(out), "--raw", "--tile", "64", "--workers", "1"]

    def denoise(source) -> int:
        return main(["denoise", str(tiny_run.run), str(source), *options])

    assert denoise(first) == 0
    before = _times(out)
    capsys.readouterr()
    assert denoise(other) == 2
    assert f"{out / 'x.mrc'} exists and is not this run's output for {other}" in \
        capsys.readouterr().err
    assert _times(out) == before
    moved = Path(shutil.move(tmp_path / "A", tmp_path / "disk2"))
    assert denoise(moved / "x.mrc") == 0
    assert "(1 finished earlier, kept)" in capsys.readouterr().out
    assert _times(out) == before


def _made_then_refused(tiny_run, first: str, other: str, out: Path, options: list,
                       capsys, between=lambda: None) -> dict:
    """``first`` denoised into ``out``, ``between()`` done, then ``other`` (of the same name)
    refused there, the output untouched; the times of ``out``'s files."""
    assert main(["denoise", str(tiny_run.run), first, *options]) == 0
    between()
    before = _times(out)
    capsys.readouterr()
    assert main(["denoise", str(tiny_run.run), other, *options]) == 2
    assert f"{out / 'x.mrc'} exists and is not this run's output for {other}" in \
        capsys.readouterr().err
    assert _times(out) == before
    return before


def _two_of_one_name(tiny_run, tmp_path):
    """``A/x.mrc`` and ``B/x.mrc``, two micrographs of one name (the second of another time),
    an output folder ``B/out`` and the options of a quick denoise into it."""
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    first, other = (str(shutil.copy(s, tmp_path / f / "x.mrc"))
                    for s, f in zip(tiny_run.sim.micrographs[:2], "AB", strict=True))
    os.utime(other, ns=(10**18, 10**18))
    out = tmp_path / "B" / "out"
    return first, other, out, ["-o", str(out), "--raw", "--tile", "64", "--workers", "1"]


def test_an_output_inside_another_micrograph_s_folder_is_not_taken_for_moved(tiny_run, tmp_path,
                                                                              capsys):
    """``A/x.mrc`` denoised into ``B/out``, then another micrograph ``B/x.mrc`` (another time)
    into the same ``B/out``: refused, the output kept, though it lies in ``B``'s folder: it
    never moved there with ``B/x.mrc`` (``A/x.mrc`` is where it was, and no copy of the output
    lies where it would have been beside it), so the names ending alike are no evidence."""
    first, other, out, options = _two_of_one_name(tiny_run, tmp_path)
    _made_then_refused(tiny_run, first, other, out, options, capsys)
    assert json.loads((out / "x.json").read_text())["input"] == first


def test_an_output_that_never_moved_is_not_taken_for_moved_with_an_input(tiny_run, tmp_path,
                                                                         capsys):
    """``A/x.mrc`` denoised into ``B/out``, then ``A`` moved away (its times kept) and another
    micrograph ``B/x.mrc`` (another time) denoised into the same ``B/out``: refused, the output
    kept. ``A/x.mrc`` has left its place, but the output's record names the output's own path,
    the one it has now: it never moved with ``B/x.mrc`` (a guess from the folders alone took
    ``B/x.mrc`` for ``A/x.mrc`` changed since, and made ``A``'s output again over it). ``A``
    where it is now is still found."""
    first, other, out, options = _two_of_one_name(tiny_run, tmp_path)
    moved = tmp_path / "disk2" / "x.mrc"
    before = _made_then_refused(tiny_run, first, other, out, options, capsys,
                                lambda: shutil.move(tmp_path / "A", moved.parent))
    assert main(["denoise", str(tiny_run.run), str(moved), *options]) == 0
    assert "(1 finished earlier, kept)" in capsys.readouterr().out
    assert _times(out) == before


def test_an_output_folder_copied_elsewhere_keeps_its_outputs(tiny_run, tmp_path, monkeypatch,
                                                             capsys):
    """The output folder copied with its times (``cp -a out /elsewhere/out``), its inputs left
    where they were: the same command into the copy keeps every output there, lists them where
    they are, and leaves the first folder as it was."""
    monkeypatch.chdir(tmp_path)
    project = _project(tiny_run, tmp_path / "proj")
    assert _denoise(project, "m0.mrc", "m1.mrc") == 0
    first = {p.name: p.read_bytes() for p in (project / "out").iterdir()}
    copy = Path(shutil.copytree(project / "out", tmp_path / "second" / "out"))
    before = _times(copy)
    capsys.readouterr()
    assert main(["denoise", str(project / "run"), *(str(project / "mics" / f"m{i}.mrc")
                                                     for i in range(2)),
                 "-o", str(copy), "--raw", "--tile", "64", "--workers", "1"]) == 0
    assert "(2 finished earlier, kept)" in capsys.readouterr().out
    assert _times(copy) == before
    assert _listed(copy / STAR) == [f"second/out/m{i}.mrc" for i in range(2)]
    assert {p.name: p.read_bytes() for p in (project / "out").iterdir()} == first


def test_files_of_one_name_size_and_second_are_told_apart(tiny_run, tmp_path, capsys):
    """Two micrographs unpacked from one archive into ``A`` and ``B``: one name, one size, one
    time to the second (as tar leaves them). ``A/x.mrc`` denoised into ``out``, then
    ``B/x.mrc`` into ``out``: refused, the output kept, not taken for ``A/x.mrc`` moved (the
    record's digest of its input's ends tells them apart where the stamps cannot). ``A``
    moved (its times kept) is still found."""
    second = 1_700_000_000 * 10**9
    paths = []
    for source, folder in zip(tiny_run.sim.micrographs[:2], "AB", strict=True):
        (tmp_path / folder).mkdir()
        paths.append(str(shutil.copy(source, tmp_path / folder / "x.mrc")))
        os.utime(paths[-1], ns=(second, second))
    first, other = paths
    assert os.stat(first).st_size == os.stat(other).st_size
    out = tmp_path / "out"
    options = ["-o", str(out), "--raw", "--tile", "64", "--workers", "1"]
    before = _made_then_refused(tiny_run, first, other, out, options, capsys)
    moved = Path(shutil.move(tmp_path / "A", tmp_path / "disk2")) / "x.mrc"
    assert main(["denoise", str(tiny_run.run), str(moved), *options]) == 0
    assert "(1 finished earlier, kept)" in capsys.readouterr().out
    assert _times(out) == before


@pytest.fixture
def relion_project(tmp_path, monkeypatch) -> Path:
    """A RELION project, the working directory: two simulated micrographs listed by
    ``CtfFind/job003/micrographs_ctf.star`` and the new External job ``External/job010``."""
    root = tmp_path / "project"
    cryostream.simulate(root, 2, config=SimulateConfig(shape=(160, 128), seed=3))
    (root / "default_pipeline.star").write_text("data_pipeline_general\n")
    (root / "CtfFind/job003").mkdir(parents=True)
    (root / "micrographs.star").rename(root / "CtfFind/job003/micrographs_ctf.star")
    job = root / "External/job010"
    job.mkdir(parents=True)
    (job / "job.star").write_text("\n# version 50001\n\ndata_job\n\n_rlnJobTypeLabel    "
                                  "relion.external\n_rlnJobIsContinue    0\n_rlnJobIsTomo    0\n")
    monkeypatch.chdir(root)
    return root


def test_a_moved_relion_project_s_job_run_again_keeps_its_outputs(tiny_run, relion_project,
                                                                   tmp_path, monkeypatch, capsys):
    """A RELION project moved (``mv``), its External job run again from RELION in the new
    place: the finished micrographs are kept, the job succeeds, and its STAR file lists each
    once, each name a file of the project where it is now. One whose micrograph is missing
    now is left out of it and said kept on disk, as it is in a project that never moved."""
    job = "External/job010"

    def run_job(*params: str) -> int:
        return relion_main(["--o", f"{job}/", "--in_mics", "CtfFind/job003/micrographs_ctf.star",
                            "--j", "1", "--pipeline_control", f"{job}/", "--model",
                            str(tiny_run.run), "--raw", "yes", "--tile", "64", "--workers", "1", *params])

    assert run_job() == 0
    (tmp_path / "moved").mkdir()
    moved = Path(shutil.move(relion_project, tmp_path / "moved" / "project2"))
    monkeypatch.chdir(moved)
    before = _times(moved / job)
    capsys.readouterr()
    assert run_job() == 0
    assert "(2 finished earlier, kept)" in capsys.readouterr().out
    assert _times(moved / job) == before
    assert (moved / job / "RELION_JOB_EXIT_SUCCESS").exists()
    names = _listed(moved / job / STAR)
    assert names == [f"{job}/sim_000{i}.mrc" for i in range(2)]
    assert all((moved / name).is_file() for name in names)
    assert sorted(p.name for p in (moved / job).glob("*.bak*")) == []
    # a micrograph missing now: its row left out, its output said kept on disk, as before the move
    (moved / "micrographs/sim_0001.mrc").unlink()
    with pytest.warns(MicrographSkippedWarning, match="sim_0001"), \
            pytest.warns(UnlistedOutputWarning, match=r"\(sim_0001.mrc\): its micrograph is missing now"):
        assert run_job("--permissive", "yes") == 0
    assert _listed(moved / job / STAR) == [f"{job}/sim_0000.mrc"]


def test_the_shipped_model_of_another_installation_is_the_same_model(small_mrcs):
    """An output's record names the shipped model by its path inside the installed package: in
    a new environment (another path) the same model (its digest) is the same, so the output is
    found again; another digest there is the shipped model changed (made again, not refused);
    a model of that file name elsewhere with another digest is another model (refused)."""
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.network import model_path
    from cryostream.denoise.outputs import input_changed, output_identity, same_record

    source = str(small_mrcs[0])
    now = output_identity(model_path("general"), DenoiseConfig.raw(tile=64), source)
    assert now["model_files"]["sha256"]
    other_install = "/opt/old-env/lib/python3.11/site-packages/cryostream/data/general_model.npz"
    found = now | {"run": other_install}
    assert same_record(found, now) and not input_changed(found, now)
    older = found | {"model_files": {**now["model_files"], "sha256": "0" * 16}}
    assert not same_record(older, now) and input_changed(older, now)
    elsewhere = older | {"run": "/data/models/general_model.npz"}
    assert not same_record(elsewhere, now) and not input_changed(elsewhere, now)


def test_an_output_folder_copied_beside_a_twin_is_not_taken_for_the_twin_s(tiny_run, tmp_path,
                                                                            capsys):
    """Two micrographs unpacked from one archive into ``A`` and ``B`` (one name, size and time
    to the second); ``A/x.mrc`` denoised into ``A/out``, that folder copied with its times
    (``cp -a A/out B/out``), then ``B/x.mrc`` into ``B/out``: the copy lies where an output
    moved with its input would, but the digest of the input's ends says ``B/x.mrc`` is not the
    file it was made of: made again of ``B/x.mrc``, never kept as its output; ``A/out`` as it
    was."""
    second = 1_700_000_000 * 10**9
    for source, folder in zip(tiny_run.sim.micrographs[:2], "AB", strict=True):
        (tmp_path / folder).mkdir()
        shutil.copy(source, tmp_path / folder / "x.mrc")
        os.utime(tmp_path / folder / "x.mrc", ns=(second, second))
    options = ["--raw", "--tile", "64", "--workers", "1"]
    a, b = tmp_path / "A", tmp_path / "B"
    assert main(["denoise", str(tiny_run.run), str(a / "x.mrc"), "-o", str(a / "out"), *options]) == 0
    first = {p.name: p.read_bytes() for p in (a / "out").iterdir()}
    shutil.copytree(a / "out", b / "out")
    capsys.readouterr()
    assert main(["denoise", str(tiny_run.run), str(b / "x.mrc"), "-o", str(b / "out"), *options]) == 0
    assert "finished earlier" not in capsys.readouterr().out
    assert json.loads((b / "out" / "x.json").read_text())["input"] == str(b / "x.mrc")
    assert (b / "out" / "x.mrc").read_bytes() != first["x.mrc"]
    assert {p.name: p.read_bytes() for p in (a / "out").iterdir()} == first


def test_a_project_copied_without_its_times_through_a_link_is_made_again(tiny_run, tmp_path,
                                                                         capsys):
    """A project reached through a symbolic link (``/home/u/proj -> /data/proj``), denoised
    with absolute paths through it, then copied without its times (``cp -r``) and linked
    likewise: its outputs are made again, as they are where no link is (the input's path is
    its real one, the output's was the link's: compared as real paths), not refused as
    another input's."""
    data, home = tmp_path / "data", tmp_path / "home"
    (data / "proj" / "mics").mkdir(parents=True)
    home.mkdir()
    shutil.copy(tiny_run.sim.micrographs[0], data / "proj" / "mics" / "x.mrc")
    shutil.copytree(tiny_run.run, data / "proj" / "run")

    def denoise(project: Path) -> int:
        return main(["denoise", str(project / "run"), str(project / "mics" / "x.mrc"), "-o",
                     str(project / "out"), "--raw", "--tile", "64", "--workers", "1"])

    (home / "proj").symlink_to(data / "proj")
    assert denoise(home / "proj") == 0
    shutil.copytree(data / "proj", data / "copy", copy_function=shutil.copy, symlinks=True)
    (home / "copy").symlink_to(data / "copy")
    os.utime(data / "copy" / "out" / "x.mrc", ns=(1, 1))  # a mark: made again has the time of now
    capsys.readouterr()
    assert denoise(home / "copy") == 0
    assert "the input or the model changed since" in capsys.readouterr().err
    assert (data / "copy" / "out" / "x.mrc").stat().st_mtime_ns > 1
    assert json.loads((data / "copy" / "out" / "x.json").read_text())["input"] == str(
        data / "copy" / "mics" / "x.mrc")


def _cut_to_seconds(root: Path, *, rounded: tuple[str, ...] = ()) -> None:
    """Every file and folder under ``root`` given its time cut to a whole second, as a copy
    onto a file system of whole seconds (Lustre, some NFS) leaves it: truncated, or rounded
    for the files named ``rounded``."""
    second = 10**9
    for path in [root, *root.rglob("*")]:
        st = path.stat()
        t = st.st_mtime_ns
        t = (t + second // 2) // second * second if path.name in rounded else t - t % second
        os.utime(path, ns=(st.st_atime_ns - st.st_atime_ns % second, t))


def _fractional_times(root: Path) -> None:
    """The inputs and the run's checkpoints of the project ``root`` given times that are no
    whole second, one to be truncated by a coarse copy (``m0``, the checkpoints), one rounded
    up (``m1``)."""
    base = 1_700_000_000 * 10**9
    for path, fraction in [(root / "mics" / "m0.mrc", 123_456_789),
                           (root / "mics" / "m1.mrc", 876_543_211),
                           *((p, 250_000_000) for p in (root / "run" / "checkpoints").rglob("*"))]:
        os.utime(path, ns=(base + fraction, base + fraction))


def test_a_copy_onto_whole_second_times_keeps_its_outputs(tiny_run, tmp_path, monkeypatch,
                                                          capsys):
    """A project copied with its times (``cp -a``, ``rsync -a``) onto a file system that keeps
    whole seconds alone: every time is cut to its second (truncated, or rounded). The same
    command there keeps every output as it was (its input's size and ends' digest the same;
    the run's last checkpoint the same step and checksum), not made again. A record of before
    checkpoints' checksums were recorded is taken by its checkpoint's time to the second; a
    checkpoint copied without its time since is the same model by its checksum, made again
    only for such a record, with a note naming the checkpoint, not the input."""
    monkeypatch.chdir(tmp_path)
    project = _project(tiny_run, tmp_path / "proj")
    _fractional_times(project)
    assert _denoise(project, "m0.mrc", "m1.mrc") == 0
    records = {i: json.loads((project / "out" / f"m{i}.json").read_text()) for i in range(2)}
    assert all(r["model_files"]["params_sha256"] and r["input_ends_sha256"]
               for r in records.values())
    del records[0]["model_files"]["params_sha256"]  # as recorded before checksums were
    (project / "out" / "m0.json").write_text(json.dumps(records[0], indent=1))
    copy = Path(shutil.copytree(project, tmp_path / "lustre" / "proj"))
    _cut_to_seconds(copy, rounded=("m1.mrc",))
    assert os.stat(copy / "mics" / "m1.mrc").st_mtime_ns == 1_700_000_001 * 10**9
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (copy / "out").iterdir()}
    capsys.readouterr()
    assert _denoise(copy, "m0.mrc", "m1.mrc") == 0
    said = capsys.readouterr()
    assert "(2 finished earlier, kept)" in said.out, said
    assert "2 of 2 micrographs already denoised" in said.err
    assert "changed since" not in said.err
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (copy / "out").iterdir()
            if p.name != STAR} == {k: v for k, v in before.items() if k != STAR}
    assert _listed(copy / "out" / STAR) == [f"lustre/proj/out/m{i}.mrc" for i in range(2)]
    # the run's checkpoint copied since without its time: the same checksum, the same model
    for path in (copy / "run" / "checkpoints").iterdir():
        os.utime(path, ns=(10**18, 10**18))
    assert _denoise(copy, "m0.mrc", "m1.mrc") == 0
    said = capsys.readouterr()
    assert "(1 finished earlier, kept)" in said.out, said
    assert f"changed since {copy / 'out' / 'm0.mrc'} was made (the run's last checkpoint)" in \
        said.err
    assert "m1.mrc was made" not in said.err
    assert (copy / "out" / "m1.mrc").stat().st_mtime_ns == before["m1.mrc"][0]


def test_a_file_of_the_same_size_and_second_with_other_ends_is_made_again(tiny_run, tmp_path,
                                                                          monkeypatch, capsys):
    """After a copy onto whole-second times, an input replaced by another of the same size
    whose time is the record's to the second (motion correction run again within it, or
    another file put in its place): its ends' digest says it changed, so its output is made
    again, the note saying its ends differ, not its size or time. An output whose record has
    no digest of its input's ends (written before they were) is made again as before."""
    monkeypatch.chdir(tmp_path)
    project = _project(tiny_run, tmp_path / "proj")
    _fractional_times(project)
    assert _denoise(project, "m0.mrc", "m1.mrc") == 0
    record = json.loads((project / "out" / "m1.json").read_text())
    del record["input_ends_sha256"]
    (project / "out" / "m1.json").write_text(json.dumps(record, indent=1))
    stamp = os.stat(project / "mics" / "m0.mrc")
    shutil.copyfile(tiny_run.sim.micrographs[2], project / "mics" / "m0.mrc")
    assert os.stat(project / "mics" / "m0.mrc").st_size == stamp.st_size
    os.utime(project / "mics" / "m0.mrc", ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    _cut_to_seconds(project)
    before = {p.name: p.read_bytes() for p in (project / "out").glob("*.mrc")}
    capsys.readouterr()
    assert _denoise(project, "m0.mrc", "m1.mrc") == 0
    said = capsys.readouterr()
    assert "finished earlier" not in said.out, said
    assert (f"changed since {project / 'out' / 'm0.mrc'} was made (the input's first or last "
            "MiB, its size and time to the second the same)") in said.err
    assert (f"changed since {project / 'out' / 'm1.mrc'} was made (the input's size or time "
            "of modification)") in said.err
    assert (project / "out" / "m0.mrc").read_bytes() != before["m0.mrc"]
    assert json.loads((project / "out" / "m1.json").read_text())["input_ends_sha256"]


@pytest.mark.parametrize("records", ["new", "old"])
def test_evaluate_reads_the_outputs_of_a_moved_project(tiny_run, tmp_path, monkeypatch, notes,
                                                       records):
    """``evaluate --residual M --denoised FOLDER`` in a project moved since (``mv``, times
    kept), whose outputs ``denoise`` keeps: it had taken each for another model's or
    micrograph's output (its record names the paths of before) and denoised M again by default
    (minutes a micrograph on a CPU), saying its NAME.json says how it was made. It reads it as
    written, as before the move; so too for records an earlier version wrote (``old``). A copy
    without its times (``cp -r``) is still a micrograph changed since: denoised again."""
    monkeypatch.chdir(tmp_path)
    assert _denoise(_project(tiny_run, tmp_path / "proj"), "m0.mrc", "--quiet") == 0
    if records == "old":
        _as_written_before(tmp_path / "proj" / "out")
    moved = Path(shutil.move(tmp_path / "proj", tmp_path / "moved"))
    copy = Path(shutil.copytree(moved, tmp_path / "copy", copy_function=shutil.copy))
    notes.clear()
    assert main(["evaluate", str(moved / "run"), "-o", str(tmp_path / "rep"), "--residual",
                 str(moved / "mics" / "m0.mrc"), "--denoised", str(moved / "out")]) == 0
    assert not [n for n in notes if "denoised here" in n or "network pass" in n], notes
    row = json.loads((tmp_path / "rep" / "report.json").read_text())["residual"][0]
    assert row["denoised_output"] == str(moved / "out" / "m0.mrc")
    notes.clear()
    assert main(["evaluate", str(copy / "run"), "-o", str(tmp_path / "rep2"), "--residual",
                 str(copy / "mics" / "m0.mrc"), "--denoised", str(copy / "out")]) == 0
    assert [n for n in notes if n.startswith(
        f"{copy / 'out' / 'm0.mrc'}: not this model's output of {copy / 'mics' / 'm0.mrc'} as "
        "it is now") and n.endswith("m0.mrc is denoised here instead, as denoise does by "
                                   "default (the report scores the default)")], notes
