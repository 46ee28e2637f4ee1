"""`python -m initlab train`: the training tables next to the probe's, the report with the
training figures, and one-line refusals with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pandas as pd
import pytest

from initlab.cli import main
from initlab.experiment import Experiment
from initlab.fileformat import experiment_schema
from initlab.training import PARAMS_COLUMNS, RUNS_COLUMNS, TRAINING_COLUMNS

SMALL = {
    "model": {"name": "mlp", "depth": 3, "width": 16},
    "seeds": [0],
    "schemes": [{"name": "Kaiming <b>", "preset": "kaiming_normal"}, {"preset": "too_small"}],
    "training": {"task": "teacher", "steps": 12, "eval_every": 4, "record_at": [0, 5, 12]},
}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_train_writes_training_tables_next_to_the_probes(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["train", str(write(tmp_path, SMALL)), "--out", str(out)]) == 0
    for name in ("layers", "params", "histograms", "training", "training_layers"):
        assert (out / f"{name}.csv").exists(), name
    training = pd.read_csv(out / "training.csv")
    assert list(training.columns) == TRAINING_COLUMNS
    assert set(training["step"]) == set(range(13))  # train rows 0..11, held-out up to 12
    assert list(pd.read_csv(out / "training_params.csv").columns) == PARAMS_COLUMNS
    runs = pd.read_csv(out / "training_runs.csv")
    assert list(runs.columns) == RUNS_COLUMNS and set(runs["status"]) == {"finished"}
    layers = pd.read_csv(out / "training_layers.csv")
    assert sorted(set(layers["step"])) == [0, 5, 12]
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "Training: teacher, 12 steps" in report
    assert "Kaiming <b>" not in report and "Kaiming &lt;b&gt;" in report


def test_the_written_experiment_keeps_its_training_section(tmp_path) -> None:
    out = tmp_path / "out"
    main(["train", str(write(tmp_path, SMALL)), "--out", str(out)])
    written = json.loads((out / "experiment.json").read_text(encoding="utf-8"))
    assert written["training"]["steps"] == 12 and written["training"]["task"] == "teacher"
    jsonschema.validate(written, experiment_schema())


@pytest.mark.parametrize(
    "training, words",
    [
        ({"optimizer": {"name": "sgd", "lr": 0}}, "training.optimizer.lr: must be > 0"),
        ({"steps": 100000}, "training.steps: must be <= 5000"),
        ({"task": "tokens"}, "training.task: 'tokens' suits"),
        ({"optimizer": {"name": "adam", "momentum": 0.5}}, "adam has no momentum"),
    ],
)
def test_bad_training_is_one_line_and_exit_2(tmp_path, capsys, training, words) -> None:
    data = {**SMALL, "training": training}
    out = tmp_path / "out"
    assert main(["train", str(write(tmp_path, data)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and not out.exists()


def test_train_without_a_training_section_says_what_to_add(tmp_path, capsys) -> None:
    data = {k: v for k, v in SMALL.items() if k != "training"}
    assert main(["train", str(write(tmp_path, data)), "--out", str(tmp_path / "o")]) == 2
    assert "no 'training' section" in capsys.readouterr().err


def test_the_schema_knows_the_training_section() -> None:
    schema = experiment_schema()
    jsonschema.validate(SMALL, schema)
    for bad in ({"optimizer": {"name": "adam", "momentum": 0.9}}, {"task": "mnist"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**SMALL, "training": bad}, schema)


def test_the_readme_training_example_is_a_valid_experiment() -> None:
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "python -m initlab train examples/lenet_digits.json" in readme
    exp = Experiment.from_json(root / "examples" / "lenet_digits.json")
    assert exp.training is not None and exp.training.task == "digits"
    jsonschema.validate(exp.to_dict(), experiment_schema())
