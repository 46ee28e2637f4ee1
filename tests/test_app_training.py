"""The Training view, headless (AppTest): Train trains every scheme in a background job and the
view shows a verdict per scheme and the charts; editing a scheme or a setting never trains, and a
training setting never probes again; the settings survive a closed tab and travel with the
address; a link's training section is restored, and a bad one is a message; Stop stops.

Models are tiny (mlp depth 4 × width 16, probe batch 8, one seed) and trainings short.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import open_tab
from streamlit.testing.v1 import AppTest

from initlab.training_spec import TrainingSpec
from initlab.ui import keys
from initlab.ui.text import plain
from initlab.ui.urlstate import decode, encode

APP = str(Path(__file__).resolve().parents[1] / "app.py")
SMALL = {"model.mlp.depth": 4, "model.mlp.width": 16, "batch_size": 8, "n_seeds": 1}
SCHEMES = [
    {"name": "PyTorch default", "preset": "pytorch_default"},
    {"name": "Kaiming normal", "preset": "kaiming_normal"},
]
WAIT_S = 120  # a short training on two slow, busy cores

pytestmark = pytest.mark.usefixtures("empty_app_caches", "one_thread")


# ---------------------------------------------------------------- helpers


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.message for e in at.exception]
    return at


def run_app(query: dict[str, str] | None = None, **session: Any) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in {**SMALL, **session}.items():
        at.session_state[key] = value
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return ok(at.run())


def link(training: dict[str, Any], **model: Any) -> dict[str, str]:
    exp = {
        "model": {"name": "mlp", "depth": 4, "width": 16, **model},
        "input": {"batch_size": 8},
        "seeds": [0],
        "schemes": SCHEMES,
        "training": training,
    }
    return {"experiment": encode(exp)}


def experiment(at: AppTest) -> dict[str, Any]:
    return decode(at.query_params["experiment"])


def setting(at: AppTest, field: str) -> Any:
    key = keys.training_widget(field)
    found = [w for w in (*at.number_input, *at.selectbox) if w.key == key]
    assert found, f"no widget {key} on the page"
    return found[0]


def counted(at: AppTest, key: str) -> int:
    return at.session_state[key] if key in at.session_state else 0  # noqa: SIM401 (no .get)


def train(at: AppTest) -> AppTest:
    """Press Train and rerun until the job has ended (bounded)."""
    ok(at.button(key="train_button").click().run())
    job = at.session_state[keys.TRAINING_JOB]
    deadline = time.monotonic() + WAIT_S
    while job.running:
        assert time.monotonic() < deadline, f"the training did not end in {WAIT_S} s"
        time.sleep(0.2)
    assert job.error is None, job.error
    return ok(at.run())


def chart_titles(at: AppTest) -> dict[str, str]:
    """Each plotly chart's key → its figure's title text."""
    out = {}
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        out[chart.proto.id.rsplit("-", 1)[-1]] = spec["layout"]["title"]["text"]
    return out


def verdicts(at: AppTest) -> dict[str, str]:
    """Scheme → its verdict line, from the markdown lines that start with a colour chip."""
    out = {}
    for line in (plain(m.value) for m in at.markdown):
        if line.startswith(":color[●]"):
            name, _, words = line.split("} ", 1)[1].partition(": ")
            out[name.strip("*")] = words
    return out


def short_training(steps: int = 12) -> AppTest:
    at = open_tab(run_app(), "Training")
    ok(setting(at, "steps").set_value(steps).run())
    return at


# ---------------------------------------------------------------- training


def test_train_shows_a_verdict_per_scheme_and_the_charts() -> None:
    at = short_training()
    assert "Press **Train**" in at.info[0].value
    assert counted(at, keys.TRAININGS_RUN) == 0, "nothing trains before Train is pressed"
    train(at)
    assert counted(at, keys.TRAININGS_RUN) == 1
    lines = verdicts(at)
    assert set(lines) == {"PyTorch default", "Kaiming normal"}, lines
    assert all("at step 12" in line for line in lines.values()), lines
    titles = chart_titles(at)
    assert titles["fig_train_loss"].startswith("Loss during training"), titles
    assert titles["fig_train_ratio"].startswith("Update-to-weight ratio"), titles
    assert titles["fig_train_heatmap"].startswith("Activation variance during training"), titles
    assert "fig_train_accuracy" not in titles, "teacher is a regression: no accuracy"
    assert at.button(key="train_button").label == "Train again"


def test_digits_shows_the_accuracy_and_the_adapted_model() -> None:
    at = short_training()
    ok(setting(at, "task").set_value("digits").run())
    assert experiment(at)["training"]["task"] == "digits"
    notes = [plain(c.value) for c in at.caption if plain(c.value).startswith("To train on")]
    assert notes == [
        "To train on digits: the mlp takes the 64 pixels and ends in a 10-way "
        "output layer: widths [64, 16, 16, 16, 10], no activation after fc4."
    ]
    train(at)
    assert "fig_train_accuracy" in chart_titles(at)
    assert all("accurate" in line for line in verdicts(at).values()), verdicts(at)


def test_editing_a_scheme_or_switching_tabs_never_trains() -> None:
    at = train(short_training())
    open_tab(at, "Health")
    open_tab(at, "Training")
    assert counted(at, keys.TRAININGS_RUN) == 1
    assert verdicts(at), "the cached results are shown again, not retrained"
    uid = at.session_state[keys.EDITORS][0]["uid"]
    ok(at.text_input(key=keys.scheme_name(uid)).set_value("renamed").run())
    assert counted(at, keys.TRAININGS_RUN) == 1, "editing a scheme started a training"
    assert "Press **Train**" in at.info[0].value
    assert not at.get("plotly_chart"), "the earlier experiment's curves are not shown as this one's"


def test_training_settings_never_probe_again() -> None:
    at = short_training()
    probes = counted(at, keys.PROBES_RUN)
    assert probes > 0
    ok(setting(at, "optimizer").set_value("adam").run())
    ok(setting(at, "adam.lr").set_value(0.003).run())
    ok(setting(at, "batch_size").set_value(16).run())
    assert counted(at, keys.PROBES_RUN) == probes
    assert experiment(at)["training"] == {
        "optimizer": {"name": "adam", "lr": 0.003, "weight_decay": 0.0},
        "steps": 12,
        "batch_size": 16,
        "eval_every": 25,
    }
    assert counted(at, keys.TRAININGS_RUN) == 0


def test_settings_survive_a_closed_tab() -> None:
    at = short_training()
    ok(setting(at, "sgd.momentum").set_value(0.5).run())
    open_tab(at, "Code")
    assert experiment(at)["training"]["optimizer"]["momentum"] == 0.5, "kept while undrawn"
    open_tab(at, "Training")
    assert setting(at, "sgd.momentum").value == 0.5
    assert setting(at, "steps").value == 12


def test_the_experiment_file_carries_the_training_section() -> None:
    at = open_tab(short_training(7), "Experiment")
    shown = json.loads(at.code[0].value)
    assert shown["training"]["steps"] == 7


def test_a_page_nobody_trained_keeps_its_address_without_training() -> None:
    at = open_tab(run_app(), "Training")
    assert "training" not in experiment(at)


# ---------------------------------------------------------------- links


def test_a_link_restores_the_training_settings() -> None:
    training = {
        "task": "digits",
        "optimizer": {"name": "adamw", "lr": 0.002, "weight_decay": 0.05},
        "steps": 9,
        "batch_size": 32,
        "eval_every": 3,
    }
    at = open_tab(run_app(link(training)), "Training")
    assert setting(at, "task").value == "digits"
    assert setting(at, "optimizer").value == "adamw"
    assert setting(at, "adamw.lr").value == pytest.approx(0.002)
    assert setting(at, "adamw.weight_decay").value == pytest.approx(0.05)
    assert (setting(at, "steps").value, setting(at, "batch_size").value) == (9, 32)
    assert setting(at, "eval_every").value == 3
    assert TrainingSpec.model_validate(experiment(at)["training"]) == TrainingSpec(**training)


@pytest.mark.parametrize(
    ("training", "words"),
    [
        ({"task": "tokens"}, "suits transformer"),
        ({"task": "cooking"}, "unknown task"),
        ({"steps": 10**6}, "training.steps"),
    ],
)
def test_a_bad_training_section_in_a_link_is_a_message(training: dict, words: str) -> None:
    at = open_tab(run_app(link(training)), "Training")
    problem = plain(at.session_state[keys.LOAD_ERROR])
    assert words in problem, problem
    assert "training" not in experiment(at), "the page goes on with its defaults"


# ---------------------------------------------------------------- bad values, stop


def test_a_bad_value_is_an_error_under_its_control_and_is_kept() -> None:
    at = short_training()
    ok(setting(at, "sgd.lr").set_value(0.0).run())
    assert any("greater than 0" in plain(e.value) for e in at.error), [e.value for e in at.error]
    assert at.button(key="train_button").disabled
    assert setting(at, "sgd.lr").value == 0.0, "what was typed stays"
    assert "lr" not in experiment(at)["training"]["optimizer"], "the address keeps a valid one"
    open_tab(at, "Health")
    open_tab(at, "Training")
    assert setting(at, "sgd.lr").value == 0.0
    ok(setting(at, "sgd.lr").set_value(0.05).run())
    assert not at.error and not at.button(key="train_button").disabled


def test_stop_ends_the_training_with_every_run_stopped() -> None:
    at = short_training(5000)
    ok(at.button(key="train_button").click().run())
    job = at.session_state[keys.TRAINING_JOB]
    deadline = time.monotonic() + WAIT_S
    while job.results() is None or job.results().training.empty:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    ok(at.run())
    assert at.button(key="train_button").disabled, "Train is off while this one trains"
    assert at.get("progress"), "the live part draws a progress bar"
    ok(at.button(key="train_stop").click().run())
    while job.running:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    ok(at.run())
    assert all(line.startswith("stopped") for line in verdicts(at).values()), verdicts(at)


def test_train_for_another_experiment_stops_the_running_one() -> None:
    at = short_training(5000)
    ok(at.button(key="train_button").click().run())
    first = at.session_state[keys.TRAINING_JOB]
    ok(setting(at, "steps").set_value(6).run())
    assert first.running, "a setting edited meanwhile leaves the job alone"
    assert "earlier experiment" in " ".join(plain(c.value) for c in at.caption)
    train(at)
    assert not first.running and first.stop.is_set()
    assert counted(at, keys.TRAININGS_RUN) == 2
    assert all("at step 6" in line for line in verdicts(at).values()), verdicts(at)


def test_a_training_the_guard_refuses_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INITLAB_TIME_BUDGET_S", "1")  # the probe fits, 5000 steps do not
    at = short_training(5000)
    ok(at.button(key="train_button").click().run())
    job = at.session_state[keys.TRAINING_JOB]
    deadline = time.monotonic() + WAIT_S
    while job.running:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    ok(at.run())
    assert any(plain(e.value).startswith("training too slow") for e in at.error), at.error
    assert not verdicts(at) and at.button(key="train_button").label == "Train"
