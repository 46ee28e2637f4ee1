"""The Training view's pieces without a page: the settings round-trip the experiment's
`training` section, their problems name the field, the training key treats an absent section
as its defaults, the probe's key ignores the section, and a job runs (and fails) in its thread
without raising.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

import initlab
from initlab.tasks import TASKS, check_task
from initlab.training import TrainingResults
from initlab.training_spec import OPTIMIZER_FIELDS, TrainingSpec
from initlab.ui import runner, training_settings
from initlab.ui.training_job import Job, training_key

BASE: dict[str, Any] = {
    "model": {"name": "mlp", "depth": 3, "width": 8},
    "input": {"batch_size": 4},
    "seeds": [0],
    "schemes": [
        {"name": "PyTorch default", "preset": "pytorch_default"},
        {"name": "Kaiming normal", "preset": "kaiming_normal"},
    ],
}


def experiment(training: dict[str, Any] | None = None) -> initlab.Experiment:
    extra = {} if training is None else {"training": training}
    return initlab.Experiment.from_dict({**BASE, **extra})


@pytest.mark.parametrize(
    "section",
    [
        {},
        {"task": "digits", "steps": 40, "batch_size": 16, "eval_every": 4},
        {"optimizer": {"name": "adam", "lr": 0.003}},
        {"optimizer": {"name": "adamw", "weight_decay": 0.2}, "steps": 50, "record_at": [0, 7, 50]},
        {"optimizer": "sgd", "steps": 3},
    ],
)
def test_the_settings_spell_the_section_they_were_loaded_from(section: dict) -> None:
    spec = TrainingSpec.model_validate(section)
    spelled = TrainingSpec.model_validate(
        training_settings.spelled(training_settings.store_from_spec(spec))
    )
    # the optimizer's defaults come out written in: the same settings, field for field
    assert spelled.optimizer.settings() == spec.optimizer.settings()
    assert spelled.model_dump(exclude={"optimizer"}) == spec.model_dump(exclude={"optimizer"})


def test_the_defaults_are_an_absent_section() -> None:
    spelled = TrainingSpec.model_validate(training_settings.spelled(training_settings.defaults()))
    assert spelled.optimizer.settings() == TrainingSpec().optimizer.settings()
    assert spelled.model_dump(exclude={"optimizer"}) == TrainingSpec().model_dump(
        exclude={"optimizer"}
    )
    # every optimizer keeps its own fields, each with torch's declared default
    store = training_settings.defaults()
    for name, fields in OPTIMIZER_FIELDS.items():
        assert {f: store[f"{name}.{f}"] for f in fields} == fields


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"optimizer": {"name": "sgd", "lr": 0.0}}, "lr", "greater than 0"),
        ({"optimizer": {"name": "sgd", "momentum": 1.0}}, "momentum", "less than 1"),
        ({"optimizer": {"name": "adam", "weight_decay": -1.0}}, "weight_decay", "greater than"),
        ({"steps": 5001}, "steps", "5000"),
        ({"batch_size": 0}, "batch_size", "greater than or equal to 1"),
        ({"eval_every": None}, "eval_every", "integer"),
        ({"steps": 10, "record_at": [0, 20]}, "record_at", "beyond the run's 10 steps"),
    ],
)
def test_a_problem_names_its_field(change: dict, field: str, words: str) -> None:
    section = training_settings.spelled(training_settings.defaults()) | change
    found = training_settings.problems(section)
    assert list(found) == [field], found
    assert words in found[field], found


@pytest.mark.parametrize(
    ("model", "inputs"),
    [
        ({"name": "mlp"}, {}),
        ({"name": "lenet"}, {}),
        ({"name": "transformer"}, {"distribution": "tokens"}),
    ],
)
def test_the_tasks_offered_are_those_the_engine_accepts(model: dict, inputs: dict) -> None:
    spec = initlab.models.normalize_model_spec(model, allow_custom=False)
    offered = training_settings.suitable_tasks(spec, inputs)
    for name in TASKS:
        if name in offered:
            assert check_task(name, spec, input_spec=inputs).name == name
        else:
            with pytest.raises(ValueError, match="suits"):
                check_task(name, spec, input_spec=inputs)
    assert offered, "every zoo model trains on something"


def test_the_training_key_fills_in_the_defaults() -> None:
    written = {"task": "teacher", "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9}}
    assert training_key(experiment()) == training_key(experiment(written))
    assert training_key(experiment()) != training_key(experiment({"steps": 301}))
    lr = {"optimizer": {"name": "sgd", "lr": 0.02}}
    assert training_key(experiment()) != training_key(experiment(lr))


def test_the_probe_key_ignores_the_training_section() -> None:
    plain, trained = experiment(), experiment({"steps": 7, "optimizer": "adam"})
    for a, b in zip(plain.schemes, trained.schemes, strict=True):
        assert runner.scheme_key(plain, a) == runner.scheme_key(trained, b)
    other = initlab.Experiment.from_dict({**BASE, "seeds": [1]})
    assert runner.scheme_key(plain, plain.schemes[0]) != runner.scheme_key(other, other.schemes[0])


def wait(job: Job, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while job.running:
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.05)


def test_a_job_trains_in_its_thread_and_reports_progress() -> None:
    exp = experiment({"steps": 5, "batch_size": 8})
    job = Job(training_key(exp), exp)
    job.start()
    wait(job)
    assert job.error is None
    results = job.results()
    assert isinstance(results, TrainingResults)
    assert list(results.runs["status"]) == ["finished", "finished"]
    assert job.fraction == 1.0 and job.message == "step 5 of 5"


def test_a_job_the_guard_refuses_leaves_a_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INITLAB_TIME_BUDGET_S", "1")  # a probe fits, 5000 steps do not
    exp = experiment({"steps": 5000})
    job = Job(training_key(exp), exp)
    job.start()
    wait(job)
    assert job.error is not None and job.error.startswith("training too slow"), job.error
    assert job.results() is None


def test_a_stopped_job_stops_every_run_at_one_step() -> None:
    exp = experiment({"steps": 5000, "batch_size": 8})
    job = Job(training_key(exp), exp)
    job.start()
    deadline = time.monotonic() + 120
    while job.fraction == 0.0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    job.stop.set()
    wait(job)
    runs = job.results().runs
    assert set(runs["status"]) == {"stopped"}
    assert runs["steps"].nunique() == 1 and 0 < runs["steps"].iloc[0] < 5000
