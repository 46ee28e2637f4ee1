"""`python -m initlab run --theory --spectrum`: the prediction and the spectrum next to the
measurement, in CSV files and in the report."""

from __future__ import annotations

import json

import pandas as pd

from initlab.cli import main

TANH = {
    "model": {"name": "mlp", "depth": 6, "width": 32, "activation": "tanh"},
    "seeds": [0],
    "schemes": [{"name": "Xavier <i>", "preset": "xavier_normal_gain"}, {"preset": "orthogonal"}],
}


def test_theory_and_spectrum_are_written_and_reported(tmp_path, capsys) -> None:
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(TANH), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--theory", "--spectrum"]) == 0
    theory = pd.read_csv(out / "theory.csv")
    assert set(theory["scheme"]) == {"Xavier <i>", "Orthogonal"}
    assert len(theory) == 2 * 6 and theory["q"].gt(0).all()
    schemes = pd.read_csv(out / "theory_schemes.csv")
    assert set(schemes["phase"]) <= {"ordered", "critical", "chaotic"}
    spectrum = pd.read_csv(out / "spectrum_summary.csv")
    assert set(spectrum["scheme"]) == {"Xavier <i>", "Orthogonal"}
    assert (out / "spectrum.csv").exists()
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "<h2>Theory</h2>" in report and "<h2>Jacobian spectrum</h2>" in report
    assert "Xavier <i>" not in report


def test_without_the_flags_no_theory_files(tmp_path) -> None:
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(TANH), encoding="utf-8")
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 0
    assert not (tmp_path / "o" / "theory.csv").exists()
    assert "<h2>Theory</h2>" not in (tmp_path / "o" / "report.html").read_text(encoding="utf-8")
