"""The package's shape, as docs/architecture.md states it: every module listed, no private
name crossing a module border, modules of a readable size, the import directions kept."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cryostream"
MODULES = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py"))


def _imports(path: Path) -> list[tuple[str, str]]:
    """``(module, name)`` of every ``from cryostream… import name`` and ``import cryostream…``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cryostream"):
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names if alias.name.startswith("cryostream")]
    return found


def test_every_module_is_on_the_architecture_page():
    page = (ROOT / "docs" / "architecture.md").read_text()
    listed = set(re.findall(r"^\| `([\w/]+\.py)` \|", page, flags=re.M))
    assert listed == set(MODULES), (sorted(set(MODULES) - listed), sorted(listed - set(MODULES)))


@pytest.mark.parametrize("folder", ["cryostream", "tests", "benchmarks", "examples"])
def test_no_private_name_crosses_a_module_border(folder):
    crossing = [f"{path.relative_to(ROOT)}: {module}.{name}"
                for path in sorted((ROOT / folder).rglob("*.py"))
                for module, name in _imports(path)
                if name.startswith("_") and not name.startswith("__")
                or any(part.startswith("_") and not part.startswith("__") and part != "_version"
                       for part in module.split("."))]
    assert crossing == []


def test_modules_stay_readable():
    sizes = {m: len((PACKAGE / m).read_text().splitlines()) for m in MODULES}
    assert {m: n for m, n in sizes.items() if n > 420} == {}


def _imported_modules(path: Path) -> set[str]:
    return {module for module, _ in _imports(path)}


def test_inference_does_not_import_training():
    for path in [PACKAGE / "runs.py", *(PACKAGE / "denoise").glob("*.py"),
                 *(PACKAGE / "evaluate").glob("*.py")]:
        assert "cryostream.training" not in _imported_modules(path), path


def test_the_simulator_and_the_analysis_meet_only_in_the_spectral_layer():
    analysis = ["matched.py", "ctf.py", "metrics.py", "baselines.py", "spectral/rings.py",
                "spectral/welch.py", "spectral/optics.py", "spectral/wiener.py",
                *[f"denoise/{p.name}" for p in (PACKAGE / "denoise").glob("*.py")],
                *[f"evaluate/{p.name}" for p in (PACKAGE / "evaluate").glob("*.py")]]
    for name in analysis:
        assert not any(m.startswith("cryostream.simulate") for m in
                       _imported_modules(PACKAGE / name)), name
    for path in (PACKAGE / "simulate").glob("*.py"):
        imported = _imported_modules(path)
        assert not imported & {"cryostream.matched", "cryostream.ctf", "cryostream.metrics"}, path


def test_run_records_are_read_only_through_runs():
    keyed = re.compile(r"""record\w*\s*\[\s*["']""")
    readers = [p.relative_to(ROOT).as_posix() for p in sorted(PACKAGE.rglob("*.py"))
               if p.name != "runs.py" and keyed.search(p.read_text())]
    assert readers == []
