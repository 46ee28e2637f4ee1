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
from benchmarks import run_cost
from benchmarks.app_reruns import app_reruns, payload_bytes
from benchmarks.probe import (
    PROBE_MODULE,
    capture_table,
    kernels_only,
    make_case,
    parts_table,
    peak_in_subprocess,
    probe_without_statistics,
    probe_without_tables,
    time_table,
)
from benchmarks.run_cost import (
    HEAVY,
    bare_passes,
    cold_start,
    page_experiment,
    target_rows,
    whole_run_row,
)
from initlab import fused
from initlab.probe import probe

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
        assert row["floor ×"] > 0
    captured = capture_table(batch=2, repeats=1, cases=TINY)
    for row in captured:
        assert row["probe ms"] > 0 and row["probe without capture ms"] > 0
        assert math.isfinite(row["capture ÷ bare"])


def test_the_parts_table_steps_from_bare_to_the_whole_probe(monkeypatch):
    rows = parts_table(batch=2, repeats=1, cases=TINY)
    assert [r["case"] for r in rows] == list(TINY)
    steps = ["hooks ×", "recorder ×", "statistics ×", "probe ×", "floor ×"]
    assert all(row[k] > 0 for row in rows for k in steps)
    model, x = make_case(TINY["mlp"], 2)
    calls = []
    real = PROBE_MODULE.summary_and_counts
    monkeypatch.setattr(PROBE_MODULE, "summary_and_counts", lambda *a: calls.append(a) or real(*a))
    probe_without_statistics(model, x)  # its own stand-in replaces the counting one
    assert calls == []
    probe_without_tables(model, x)
    assert len(calls) > 0


@pytest.mark.parametrize("case", list(TINY))
def test_the_floor_reduces_what_the_probe_measures_with_the_kernel(monkeypatch, case):
    model, x = make_case(TINY[case], 4)
    layers = probe(model, x).layers
    seen = []
    real = fused.summary_and_bins

    def counted(a, shape, bounds, dim, bins):
        seen.append((shape, dim))
        return real(a, shape, bounds, dim, bins)

    monkeypatch.setattr(fused, "summary_and_bins", counted)
    kernels_only(model, x)
    # each of the probe's rows (leaves and blocks; these models have no functional activation):
    # forward with a unit axis, backward without
    forward = [s for s in seen if s[1] is not None]
    assert len(forward) == len(layers) > 0 and len(seen) == 2 * len(layers)
    assert set(layers["role"]) >= ({"block"} if case == "transformer" else {"weight"})
    assert all(p.grad is None for p in model.parameters())


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


TINY_PAGE = {
    "model": TINY["mlp"],
    "seeds": [0, 1],
    "schemes": [{"preset": "kaiming_normal"}, {"preset": "xavier_uniform"}],
}


def test_whole_run_against_its_bare_passes_on_a_tiny_page():
    row = whole_run_row(1, page_experiment(TINY_PAGE, batch=2))
    assert row["bare passes ms"] > 0 and row["run() ms"] > 0
    assert row["run() ×"] == pytest.approx(row["run() ms"] / row["bare passes ms"])
    assert "4 runs, batch 2" in row["figure"]


def test_the_bare_passes_are_the_runs_own_builds_inputs_and_passes(monkeypatch):
    """One input per seed, one model per (seed, scheme), each with the run's seed and scheme."""
    built, drawn = [], []
    real_build, real_input = run_cost.build_initialized, run_cost.make_input

    def build(exp, scheme, seed):
        built.append((seed, scheme.name))
        return real_build(exp, scheme, seed)

    def draw(exp, seed):
        drawn.append(seed)
        return real_input(exp, seed)

    monkeypatch.setattr(run_cost, "build_initialized", build)
    monkeypatch.setattr(run_cost, "make_input", draw)
    exp = page_experiment(TINY_PAGE, batch=2)
    bare_passes(exp)
    assert drawn == [0, 1]
    assert built == [(seed, s.name) for seed in (0, 1) for s in exp.schemes]


def test_cold_start_in_a_fresh_process_on_a_tiny_page():
    sample = cold_start({**TINY_PAGE, "input": {"batch_size": 2}})
    assert sample["first"] > 0 and sample["warm"] > 0 and sample["import"] > 0
    assert set(sample["heavy"]) <= set(HEAVY)


def test_targets_compare_each_measured_figure_with_its_goal():
    tables = {
        "time": [
            {"case": "mlp 50×512", "probe ×": 1.1, "floor ×": 1.04},
            {"case": "lenet", "probe ×": 1.3},
        ],
        "cold": [{"figure": "first run", "first − warm s": 0.31}],
    }
    rows = {row["target"]: row for row in target_rows(tables)}
    assert len(rows) == len(run_cost.TARGETS)
    mlp = rows["probe ÷ bare forward+backward, mlp 50×512"]
    assert (mlp["goal"], mlp["measured"], mlp["status"]) == ("≤ 1.15×", "1.10×", "met")
    assert mlp["floor"] == "1.04×"
    assert rows["probe ÷ bare forward+backward, lenet"]["status"] == "**not met**"
    assert rows["probe ÷ bare forward+backward, lenet"]["floor"] == ""
    assert rows["first run() − warm run(), fresh process"]["measured"] == "0.31 s"
    assert rows["first run() − warm run(), fresh process"]["status"] == "**not met**"
    # Figures this run did not measure are blank, never guessed.
    cnn = rows["probe ÷ bare forward+backward, cnn"]
    assert cnn["measured"] == "" and cnn["status"] == ""
