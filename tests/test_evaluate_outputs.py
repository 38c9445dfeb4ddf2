"""``cryostream evaluate``'s report folder: a file of a report's name that evaluate did not
write is never replaced (refused before any work), an earlier report's files are; a report that
cannot be written (a full disk) names the file and the fix and leaves nothing of itself; a
--truth folder that is not there is named so."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cryostream.cli import main
from cryostream.evaluate.staging import check_report_folder, made_by_evaluate
from tests.faults_support import assert_user_error, cli_process, leftovers, snapshot


def _png(path: Path) -> Path:
    """A small PNG image of some other program's at ``path``."""
    import matplotlib.image

    matplotlib.image.imsave(path, np.ones((4, 4)))
    return path


def _evaluate(tiny_run, out: Path, *more: str) -> list[str]:
    """``cryostream evaluate RUN -o OUT --residual MIC`` (7 s: the check denoises it)."""
    return ["evaluate", str(tiny_run.run), "-o", str(out), "--residual",
            str(tiny_run.sim.micrographs[0]), *more]


@pytest.fixture(scope="module")
def earlier(tiny_run, tmp_path_factory) -> Path:
    """A report ``cryostream evaluate`` wrote (read only: tests copy it)."""
    out = tmp_path_factory.mktemp("earlier") / "rep"
    assert main(_evaluate(tiny_run, out, "--quiet")) == 0
    return out


@pytest.mark.parametrize("name", ["report.md", "report.json", "residual_0.png", "training.png"])
def test_a_file_of_a_reports_name_that_evaluate_did_not_write_is_refused_before_any_work(
        tiny_run, tmp_path, capsys, name):
    """A scientist's own notes named report.md (or a report.json, a figure of a report's name)
    in -o had been replaced, status 0. Now one line names the file and the fix, before any
    micrograph is denoised, and the folder is as it was."""
    had = tmp_path / "had"
    had.mkdir()
    (had / "notes.txt").write_text("mine\n")
    if name.endswith(".png"):
        _png(had / name)
    else:
        (had / name).write_text('{"my": "notes"}\n' if name.endswith(".json") else "# My notes\n")
    before = snapshot(had)
    assert main(_evaluate(tiny_run, had)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert not [line for line in err if "cryostream: residual check" in line]  # nothing denoised
    assert err[-1:] == [f"cryostream evaluate: error: {had / name} exists and cryostream evaluate did "
                   "not make it (no mark of an evaluation report in it): it is never replaced; "
                   "move it away, or write the report elsewhere: -o DIR"]
    assert snapshot(had) == before


def test_an_earlier_reports_files_are_replaced(tiny_run, earlier, tmp_path, capsys):
    """Each file evaluate writes says so (report.json's kind, report.md's last line, the
    figures' PNG text): a report written again into its folder replaces them, status 0, and
    the other files stay."""
    again = tmp_path / "again"
    shutil.copytree(earlier, again)
    (again / "notes.txt").write_text("mine\n")
    assert json.loads((again / "report.json").read_text())["kind"] == "EvaluationReport"
    assert (again / "report.md").read_text().splitlines()[-1].startswith(
        "<!-- cryostream evaluate ")
    assert all(made_by_evaluate(p) for p in again.iterdir() if p.name != "notes.txt")
    import matplotlib.image  # still a PNG every reader takes

    assert matplotlib.image.imread(again / "residual_0.png").shape[-1] == 4
    files = {p.name: p.stat().st_ino for p in again.iterdir()}
    assert main(_evaluate(tiny_run, again, "--quiet")) == 0
    assert sorted(p.name for p in again.iterdir()) == ["notes.txt", "report.json", "report.md",
                                                       "residual_0.png", "training.png"]
    assert all(p.stat().st_ino != files[p.name] for p in again.iterdir()  # replaced
               if p.name != "notes.txt")
    assert (again / "notes.txt").read_text() == "mine\n"


def test_a_report_from_before_evaluate_marked_its_files_is_taken_as_its(earlier, tmp_path):
    """A report evaluate wrote before its files were marked (report.json without its kind, no
    mark in report.md or the figures) is recognised by report.json's own fields, and replaced;
    a report.md edited since into one's own notes is not."""
    old = tmp_path / "old"
    shutil.copytree(earlier, old)
    found = json.loads((old / "report.json").read_text())
    del found["kind"], found["cryostream_version"]
    (old / "report.json").write_text(json.dumps(found, indent=2))
    text = (old / "report.md").read_text()
    (old / "report.md").write_text(text[:text.index("<!-- cryostream evaluate")])
    for figure in ("residual_0.png", "training.png"):
        shutil.copy(earlier / figure, old / figure)
        _png(old / figure)  # as any program writes it: no mark
    check_report_folder(old)  # taken as evaluate's: no error
    (old / "report.md").write_text("# My notes on run 3\n")
    with pytest.raises(Exception, match=f"{old / 'report.md'} exists and cryostream evaluate "
                                        "did not make it"):
        check_report_folder(old)


@pytest.mark.slow
@pytest.mark.parametrize("folder", ["new", "earlier report"])
def test_a_report_that_cannot_be_written_names_the_file_and_leaves_nothing(
        tiny_run, earlier, tmp_path, folder):
    """A disk that fills up as the report is written (no file may pass 100 kB: residual_0.png
    is 300 kB) had said only what the system says. Now one line names the file being written
    and the fix, and nothing of the report is left: a new folder goes, an earlier report stays
    whole (20 s: a child process that compiles the network)."""
    out = tmp_path / "rep"
    if folder == "earlier report":
        shutil.copytree(earlier, out)
    before = snapshot(tmp_path)
    result = cli_process(*_evaluate(tiny_run, out, "--quiet"), cwd=tmp_path,
                         file_size_limit=100_000)
    line = assert_user_error(result, "residual_0.png")
    assert line == (f"cryostream evaluate: error: {out / 'residual_0.png'}: could not write it "
                    "(File too large); free some space, then run the same command again; or "
                    "write the report elsewhere: -o DIR; nothing of this report was kept")
    assert snapshot(tmp_path) == before and not leftovers(tmp_path)


def test_a_report_folder_under_a_file_is_refused_before_any_work(tiny_run, tmp_path, capsys):
    (tmp_path / "notes").write_text("mine\n")
    out = tmp_path / "notes" / "rep"
    assert main(_evaluate(tiny_run, out, "--quiet")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"cryostream evaluate: error: {out}: {tmp_path / 'notes'} is a file, not a "
                   "folder; write the report elsewhere: -o DIR"]
    assert (tmp_path / "notes").read_text() == "mine\n"


@pytest.mark.parametrize("what", ["no such folder", "is a file, not a folder"])
def test_a_truth_folder_that_is_not_there_is_named_so(tiny_run, tmp_path, capsys, what):
    """`--truth simm` (a typo) had said "no micrographs/NAME.mrc with truth/NAME.mrc"."""
    typo = tmp_path / "simm"
    if what.startswith("is a file"):
        typo.write_text("")
    assert main(["evaluate", str(tiny_run.run), "-o", str(tmp_path / "rep"), "--truth",
                 str(typo)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"cryostream evaluate: error: --truth {typo}: {what}; give the folder "
                   "cryostream simulate wrote (its OUT: micrographs/ and truth/ are in it)"]
    assert not (tmp_path / "rep").exists()
