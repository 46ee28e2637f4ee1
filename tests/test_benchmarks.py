"""The benchmarks live outside the package (benchmarks/, `python -m benchmarks`): nothing under
initlab/ but initlab/ui/ imports streamlit or the UI, and each benchmark function still runs on
a tiny case, so the moved code cannot rot unnoticed."""

from __future__ import annotations

import ast
import math
import tomllib
from pathlib import Path

import pytest

from benchmarks import __main__ as bench_main
from benchmarks.app_reruns import app_reruns, payload_bytes
from benchmarks.probe import capture_table, peak_in_subprocess, time_table

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "initlab"
FORBIDDEN = ("streamlit", "initlab.ui")
TRANSFORMER = {"n_layers": 1, "d_model": 8, "n_heads": 2, "vocab_size": 16, "seq_len": 4}
TINY = {
    "mlp": {"name": "mlp", "depth": 2, "width": 8},
    "transformer": {"name": "transformer", **TRANSFORMER},
}


def imported_modules(path: Path, package: str | None = None) -> list[str]:
    """Every module an import statement in the file names, at any depth (function-level
    imports included), relative imports resolved against the file's package."""
    if package is None:
        package = ".".join(path.relative_to(ROOT).parts[:-1])
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            names += [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return names


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*parts, *([node.module] if node.module else [])])


def forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def test_nothing_in_the_package_outside_ui_imports_streamlit_or_the_ui():
    modules = [p for p in PACKAGE.rglob("*.py") if (PACKAGE / "ui") not in p.parents]
    assert len(modules) > 15
    found = {
        str(p.relative_to(ROOT)): names
        for p in modules
        if (names := [n for n in imported_modules(p) if forbidden(n)])
    }
    assert found == {}


SPELLINGS = [
    "import streamlit as st",
    "import streamlit.components.v1",
    "from streamlit.testing.v1 import AppTest",
    "from initlab.ui.runner import store",
    "from initlab import ui",
    "from . import ui",
    "from .ui import views",
    "def f():\n    import streamlit",
]


@pytest.mark.parametrize("text", SPELLINGS)
def test_the_import_check_sees_every_spelling(tmp_path: Path, text: str):
    """The checker itself: each way of importing streamlit or the UI is caught (the file is
    read as a module of the package `initlab`)."""
    path = tmp_path / "mod.py"
    path.write_text(text + "\n", encoding="utf-8")
    assert any(forbidden(n) for n in imported_modules(path, "initlab"))


def test_the_import_check_lets_lookalikes_through(tmp_path: Path):
    path = tmp_path / "mod.py"
    path.write_text("import streamlit_extras\nfrom initlab import uis, plots\n", encoding="utf-8")
    assert not any(forbidden(n) for n in imported_modules(path, "initlab"))


def test_the_package_does_not_ship_the_benchmarks():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    assert include == ["initlab*"]
    assert not (PACKAGE / "bench.py").exists() and not (PACKAGE / "ui" / "bench.py").exists()


# ---------------------------------------------------------------- the benchmarks run


def test_time_and_capture_tables_on_tiny_models():
    rows = time_table(batch=2, repeats=1, cases=TINY)
    assert [r["case"] for r in rows] == list(TINY)
    for row in rows:
        assert row["bare ms"] > 0 and row["probe ×"] > 0 and row["hook-and-store ×"] > 0
    captured = capture_table(batch=2, repeats=1, cases=TINY)
    for row in captured:
        assert row["probe ms"] > 0 and row["probe without capture ms"] > 0
        assert math.isfinite(row["capture ÷ bare"])


def test_peak_memory_in_a_subprocess_runs_from_the_moved_module():
    peak = peak_in_subprocess(TINY["mlp"], 2, "probe", True)
    assert math.isfinite(peak) and peak >= 0


def test_figure_payload_of_a_tiny_page():
    page = {"model": TINY["mlp"], "schemes": [{"preset": "kaiming_normal"}]}
    small, large = payload_bytes(2, page), payload_bytes(64, page)
    assert small > 1000
    # Fixed bins: what goes to the browser does not grow with the batch.
    assert large < 1.5 * small


@pytest.mark.usefixtures("empty_app_caches")
def test_app_reruns_once():
    rows = {row["rerun"]: row for row in app_reruns(1)}
    assert list(rows) == ["first load", "display-only change", "scheme change"]
    assert rows["first load"]["probes run"] > 0
    assert rows["display-only change"]["probes run"] == 0
    assert rows["scheme change"]["probes run"] > 0
    assert all(row["seconds"] > 0 for row in rows.values())


def test_print_table_writes_markdown(capsys):
    bench_main.print_table("T", [{"a": 1.23456, "b": "x"}, {"a": 2}])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == ["### T", "", "| a | b |", "|---|---|", "| 1.23 | x |", "| 2 |  |"]
