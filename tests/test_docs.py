"""The docs build without warnings, and the examples in docstrings run."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_sphinx_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(ROOT / "docs"), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    api = (tmp_path / "html" / "api.html").read_text()
    assert "open_micrographs" in api and "InvalidMicrographError" in api


def test_no_merge_conflict_is_left_in_the_sources_or_docs():
    """A merge left Git's conflict markers (``<<<<<<< HEAD`` … ``>>>>>>> 8b91967 (…)``) in the
    architecture page's table, where they split it and showed as text: no file of the package,
    its tests, benchmarks or docs holds a line that starts one."""
    import re

    marker = re.compile(r"^(<{7}|>{7}) ", flags=re.M)  # (a lone ======= may underline a title)
    files = [p for folder in ("cryostream", "tests", "benchmarks", "docs")
             for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md", ".toml", ".txt")]
    files += [p for p in ROOT.glob("*") if p.suffix in (".md", ".toml", ".cfg")]
    assert [str(p.relative_to(ROOT)) for p in files
            if marker.search(p.read_text(errors="replace"))] == []
