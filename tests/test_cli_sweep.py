"""`python -m initlab sweep`: tables, report and resume from the output folder; bad sweep files
refused in one line with exit status 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from initlab import sweep as sweep_mod
from initlab.cli import main

WIDTH = 8
BASE = {
    "model": {"name": "mlp", "depth": 2, "width": WIDTH, "activation": "tanh", "bias": True},
    "input": {"batch_size": 8},
    "schemes": [{"name": "<b>gauss</b>", "rules": [{"layers": "Linear",
                                                   "weight": {"method": "normal", "std": 0.3},
                                                   "bias": {"method": "normal", "std": 0.2}}]}],
}  # fmt: skip
STDS = [math.sqrt(s / WIDTH) for s in (0.5, 2.0)]
SWEEP = {"base": BASE, "axes": {"model.depth": [2, 4], "schemes.0.rules.0.weight.std": STDS}}


def write(tmp_path: Path, data: object) -> str:
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def test_sweep_writes_the_table_and_the_report_then_resumes(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sweep", write(tmp_path, SWEEP), "--out", str(out), "--workers", "1"]) == 0
    printed = capsys.readouterr()
    assert printed.out.split() == [str(out / "sweep.csv"), str(out / "sweep_report.html")]
    assert "[4/4] cells done" in printed.err
    table = pd.read_csv(out / "sweep.csv")
    assert table["cell"].nunique() == 4 and "model.depth" in table.columns
    assert len(list((out / "cells").glob("*.json"))) == 4
    page = (out / "sweep_report.html").read_text(encoding="utf-8")
    assert page.count("plotly.js v") == 1 and "<b>gauss</b>" not in page
    assert main(["sweep", write(tmp_path, SWEEP), "--out", str(out), "--workers", "1"]) == 0
    assert "4 finished cells reused" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ({"model.dpth": [2]}, "axes.model.dpth: unknown path"),
        ({"model.depth": []}, "axes.model.depth: must have 1 to 1000 values; got 0"),
    ],
)
def test_bad_sweep_files_get_one_line_and_exit_2(tmp_path, capsys, axes, message):
    code = main(["sweep", write(tmp_path, {"base": BASE, "axes": axes}), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"initlab: error: {message}") and err.count("\n") == 1


def test_a_grid_over_the_budget_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("INITLAB_SWEEP_TIME_BUDGET_S", "0.0001")
    assert main(["sweep", write(tmp_path, SWEEP), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("initlab: error: sweep too slow") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()  # refused before anything ran


def test_bad_workers_are_refused(tmp_path, capsys):
    args = ["sweep", write(tmp_path, SWEEP), "--out", str(tmp_path / "o")]
    assert main([*args, "--workers", "0"]) == 2
    assert "--workers: must be 1 or more" in capsys.readouterr().err


def test_a_failed_cell_exits_1_and_names_its_coordinates(tmp_path, capsys, monkeypatch):
    real = sweep_mod.run

    def run(exp):
        if exp.model["depth"] == 4:
            raise RuntimeError("boom")
        return real(exp)

    monkeypatch.setattr(sweep_mod, "run", run)  # --workers 1 runs the cells in this process
    out = tmp_path / "o"
    assert main(["sweep", write(tmp_path, SWEEP), "--out", str(out), "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("initlab: failed: cell ") == 2 and "(model.depth=4, " in err
    assert "RuntimeError: boom" in err
    assert pd.read_csv(out / "failed.csv")["cell"].tolist() == [2, 3]
    assert pd.read_csv(out / "sweep.csv")["cell"].unique().tolist() == [0, 1]
