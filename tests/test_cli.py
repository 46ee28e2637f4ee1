"""`python -m initlab`: run an experiment file, list the registries, fail in one or two lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from initlab import METHODS, MODELS, PRESETS, Experiment
from initlab.cli import main

ROOT = Path(__file__).resolve().parents[1]

EXPERIMENT = {
    "model": {"name": "mlp", "depth": 2, "width": 8, "activation": "tanh", "bias": True},
    "input": {"batch_size": 16},
    "seeds": [0, 1],
    "schemes": [
        {"name": "Kaiming", "preset": "kaiming_normal"},
        {"name": "small", "rules": [{"layers": "Linear",
                                     "weight": {"method": "normal", "std": 0.01}}]},
    ],
}  # fmt: skip


def write(tmp_path: Path, data, name: str = "exp.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_run_writes_tables_and_normalized_experiment(tmp_path, capsys):
    path = write(tmp_path, EXPERIMENT)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    names = ["layers.csv", "params.csv", "histograms.csv", "experiment.json", "report.html"]
    assert [Path(p).name for p in printed] == names
    for name in names:
        assert (out / name).is_file()
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "Kaiming" in report and "plotly" in report and "initialize_weights" in report
    layers = pd.read_csv(out / "layers.csv")
    assert len(layers) == 2 * 2 * 4
    assert list(layers.columns[:4]) == ["scheme", "seed", "order", "layer"]
    assert set(layers["scheme"]) == {"Kaiming", "small"}
    params = pd.read_csv(out / "params.csv")
    assert len(params) == 2 * 2 * 4 and "expected_std" in params.columns
    hists = pd.read_csv(out / "histograms.csv")
    assert set(hists["kind"]) == {"activation", "gradient", "weight"}
    # experiment.json is normalized (defaults filled in) and loads back to the same experiment
    saved = json.loads((out / "experiment.json").read_text(encoding="utf-8"))
    assert saved["model"]["bias"] is True and saved["model"]["norm"] == "none"
    assert saved["schemes"][0]["rules"]  # the preset's rules are written out
    again = Experiment.from_json(out / "experiment.json")
    assert again.to_dict() == Experiment.from_dict(EXPERIMENT).to_dict()


def test_run_numbers_match_the_library(tmp_path):
    from initlab import run

    path = write(tmp_path, EXPERIMENT)
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 0
    from_csv = pd.read_csv(tmp_path / "o" / "layers.csv")
    direct = run(Experiment.from_dict(EXPERIMENT)).layers
    pd.testing.assert_series_equal(from_csv["act_var"], direct["act_var"], rtol=1e-12)


@pytest.mark.parametrize(
    ("command", "registry"), [("methods", METHODS), ("presets", PRESETS), ("models", MODELS)]
)
def test_listings_name_every_entry(command, registry, capsys):
    assert main([command]) == 0
    out = capsys.readouterr().out
    starts = {line.split()[0] for line in out.splitlines() if line and not line[0].isspace()}
    assert set(registry) <= starts
    for name in registry:
        assert name in out


def test_methods_listing_shows_parameters(capsys):
    main(["methods"])
    out = capsys.readouterr().out
    assert "nonlinearity = 'leaky_relu'" in out
    assert "[2-D]" in out  # eye's accepted rank


def error_of(capsys, argv) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


def assert_short_error(err: str, *parts: str) -> None:
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= 2, err
    assert lines[0].startswith("initlab: error:")
    assert "Traceback" not in err
    for part in parts:
        assert part in err


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({**EXPERIMENT, "colour": "red"}, "colour"),
        ({**EXPERIMENT, "input": {"batch_size": 0}}, "input.batch_size"),
        ({**EXPERIMENT, "schemes": [{"preset": "nope"}]}, "schemes.0.preset"),
        ({**EXPERIMENT, "model": {"name": "mlp", "bias": True, "depth": 0}}, "model.depth"),
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
    ],
)
def test_invalid_experiment_exit_2_short_message(tmp_path, capsys, data, field):
    path = write(tmp_path, data)
    err = error_of(capsys, ["run", str(path), "--out", str(tmp_path / "out")])
    assert_short_error(err, field)
    assert not (tmp_path / "out").exists()


def test_scheme_invalid_for_model_exit_2(tmp_path, capsys):
    rules = [{"layers": "Conv", "weight": "eye"}]
    data = {"model": {"name": "lenet"}, "schemes": [{"name": "id", "rules": rules}]}
    err = error_of(capsys, ["run", str(write(tmp_path, data)), "--out", str(tmp_path / "o")])
    assert_short_error(err, "conv1.weight", "dirac")


def test_missing_file_exit_2(tmp_path, capsys):
    missing = tmp_path / "nowhere.json"
    err = error_of(capsys, ["run", str(missing), "--out", str(tmp_path / "o")])
    assert_short_error(err, "nowhere.json")


def test_many_errors_still_at_most_two_lines(tmp_path, capsys):
    data = {**EXPERIMENT, "colour": 1, "seeds": "x", "backward": "yes", "bins": 1}
    err = error_of(capsys, ["run", str(write(tmp_path, data)), "--out", str(tmp_path / "o")])
    assert_short_error(err, "seeds")


def test_subprocess_python_m_initlab(tmp_path):
    bad = write(tmp_path, {**EXPERIMENT, "input": {"batch_size": 4, "std": -1}})
    proc = subprocess.run(
        [sys.executable, "-m", "initlab", "run", str(bad), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert_short_error(proc.stderr, "input.std")
