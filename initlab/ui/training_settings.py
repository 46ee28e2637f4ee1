"""The Training view's settings, and the experiment's `training` section they spell.

The view's widgets exist only while its tab is open, and streamlit drops the state of a widget
that a run does not draw; so what was typed is kept in a plain session entry
(`keys.TRAINING`, one value per field, per optimizer for its own fields) and the section is
assembled from that on every run, whichever tab is open. The entry is absent until a setting
is changed or an experiment with a `training` section is loaded: an experiment nobody trained
keeps the shape it always had (no `training` in its file or address).
"""

from __future__ import annotations

from typing import Any

import streamlit as st
from pydantic import ValidationError

from initlab.tasks import TASKS, check_task, default_task
from initlab.training_spec import MAX_BATCH, MAX_STEPS, OPTIMIZER_FIELDS, TrainingSpec
from initlab.ui import keys
from initlab.ui.text import md

Store = dict[str, Any]
LABELS = {
    "task": "Task",
    "optimizer": "Optimizer",
    "lr": "Learning rate",
    "momentum": "Momentum",
    "weight_decay": "Weight decay",
    "steps": "Steps",
    "batch_size": "Batch size",
    "eval_every": "Held-out every",
}
HELP = {
    "lr": "the optimizer's step size (> 0, at most 10)",
    "momentum": "SGD's momentum (0 ≤ momentum < 1)",
    "weight_decay": "L2 penalty (Adam) or decoupled decay (AdamW), 0 to 1",
    "steps": f"updates per run (1 to {MAX_STEPS}); every scheme and seed trains in lockstep",
    "batch_size": f"training samples per update (1 to {MAX_BATCH}); the same batches for "
    "every scheme of a seed",
    "eval_every": "steps between two measurements of the held-out loss (and the last step)",
}


def defaults() -> Store:
    """The settings of an experiment without a `training` section (task: the model's own)."""
    spec = TrainingSpec()
    store: Store = {
        "task": None,
        "optimizer": spec.optimizer.name,
        "steps": spec.steps,
        "batch_size": spec.batch_size,
        "eval_every": spec.eval_every,
    }
    for name, fields in OPTIMIZER_FIELDS.items():
        store |= {f"{name}.{field}": float(value) for field, value in fields.items()}
    return store


def store_from_spec(spec: TrainingSpec | None) -> Store | None:
    """The settings a loaded `training` section holds (None: the experiment has none)."""
    if spec is None:
        return None
    store = defaults() | {
        "task": spec.task,
        "optimizer": spec.optimizer.name,
        "steps": spec.steps,
        "batch_size": spec.batch_size,
        "eval_every": spec.eval_every,
    }
    name = spec.optimizer.name
    store |= {f"{name}.{f}": float(v) for f, v in spec.optimizer.settings().items()}
    if spec.record_at is not None:  # no widget: kept as loaded
        store["record_at"] = list(spec.record_at)
    return store


def load(spec: TrainingSpec | None) -> None:
    """Put a loaded experiment's section into the view (before its widgets are drawn)."""
    for key in [k for k in st.session_state if str(k).startswith(keys.TRAINING_WIDGETS)]:
        del st.session_state[key]
    store = store_from_spec(spec)
    if store is None:
        st.session_state.pop(keys.TRAINING, None)
    else:
        st.session_state[keys.TRAINING] = store


def current() -> Store:
    """What the view shows: the kept settings, else the defaults."""
    return st.session_state.get(keys.TRAINING) or defaults()


# ---------------------------------------------------------------- the section


def spelled(store: Store) -> dict[str, Any]:
    """The `training` section the settings spell, as typed (not validated)."""
    name = store["optimizer"]
    own = OPTIMIZER_FIELDS.get(name, {})
    section: dict[str, Any] = {
        "optimizer": {"name": name, **{f: store.get(f"{name}.{f}") for f in own}},
        "steps": store["steps"],
        "batch_size": store["batch_size"],
        "eval_every": store["eval_every"],
    }
    if store.get("task") is not None:
        section["task"] = store["task"]
    if store.get("record_at") is not None:
        section["record_at"] = store["record_at"]
    return section


def problems(section: dict[str, Any]) -> dict[str, str]:
    """{field: what is wrong with it} for a spelled section; a check of the whole section
    (the record steps beyond the run's steps) is record_at's."""
    try:
        TrainingSpec.model_validate(section)
    except ValidationError as exc:
        return {_field(e["loc"]): _message(e) for e in exc.errors()}
    return {}


def _field(loc: tuple[Any, ...]) -> str:
    named = [str(part) for part in loc if str(part) in LABELS or str(part) == "record_at"]
    return named[-1] if named else "record_at"


def _message(error: dict[str, Any]) -> str:
    text = str(error.get("msg", "not valid"))
    return text.removeprefix("Value error, ")


def suitable_tasks(model: dict[str, Any], inputs: dict[str, Any]) -> list[str]:
    """The tasks this model can train on, in the registry's order."""
    out = []
    for name in TASKS:
        try:
            check_task(name, model, input_spec=inputs)
        except ValueError:
            continue
        out.append(name)
    return out


def section(model: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any] | None:
    """The experiment's `training` section: None while nothing was set; a field with a problem
    (shown in the view) is left to its default, and a task this model can't take (another
    model was picked) to the model's own, so the experiment stays valid and the probe runs."""
    store = st.session_state.get(keys.TRAINING)
    if store is None:
        return None
    out = spelled(store)
    if out.get("task") not in suitable_tasks(model, inputs):
        out.pop("task", None)
    for _ in range(3):  # a dropped field can reveal the next check (record_at vs steps)
        found = problems(out)
        if not found:
            return out
        for field in found:
            _drop(out, field)
    return None


def _drop(out: dict[str, Any], field: str) -> None:
    if field in ("lr", "momentum", "weight_decay"):
        out["optimizer"].pop(field, None)
    else:
        out.pop(field, None)


# ---------------------------------------------------------------- the widgets


def _typed(field: str) -> None:
    """`on_change` of a setting: keep its value where an undrawn tab cannot lose it."""
    store = current()
    store[field] = st.session_state[keys.training_widget(field)]
    st.session_state[keys.TRAINING] = store


def _seed(field: str, value: Any) -> str:
    key = keys.training_widget(field)
    if key not in st.session_state:
        st.session_state[key] = value
    return key


def _number(field: str, label_field: str, value: Any, problem: str | None) -> None:
    """One number setting (int fields step by 1), its problem right under it."""
    key = _seed(field, value)
    integer = isinstance(value, int)
    st.number_input(
        LABELS[label_field],
        key=key,
        step=1 if integer else None,
        format="%d" if integer else "%g",
        help=HELP[label_field],
        on_change=_typed,
        args=(field,),
    )
    if problem:
        st.error(md(problem))


def task_ui(model: dict[str, Any], inputs: dict[str, Any], store: Store) -> None:
    """The tasks that suit the model; a kept task another model needed is said, not lost."""
    tasks = suitable_tasks(model, inputs)
    own = default_task(model, inputs)
    chosen = store.get("task") if store.get("task") in tasks else own
    key = keys.training_widget("task")
    if st.session_state.get(key) not in tasks:
        st.session_state[key] = chosen
    help_text = "\n".join(f"- **{t}**: {TASKS[t].summary}" for t in tasks)
    task = st.selectbox(
        LABELS["task"], tasks, key=key, help=help_text, on_change=_typed, args=("task",)
    )
    st.caption(md(TASKS[task].summary))
    kept = store.get("task")
    if kept is not None and kept not in tasks:
        st.caption(md(f"{kept} does not suit this model: it trains on {own}"))


def settings_ui(model: dict[str, Any], inputs: dict[str, Any]) -> tuple[dict[str, str], Any]:
    """The settings in two rows, each problem under its control; returns the problems (none:
    the experiment's `training` section is exactly what the rows show) and the second row's
    last cell, left for the Train button."""
    store = current()
    found = problems(spelled(store))
    found = found | {"steps": found.get("steps") or found.get("record_at", "")}
    task, optimizer, *first = st.columns([1.6, 1, 1, 1])
    with task:
        task_ui(model, inputs, store)
    with optimizer:
        key = _seed("optimizer", store["optimizer"])
        name = st.selectbox(
            LABELS["optimizer"],
            list(OPTIMIZER_FIELDS),
            key=key,
            help="torch.optim's SGD, Adam or AdamW",
            on_change=_typed,
            args=("optimizer",),
        )
    *second, spare = st.columns([1, 1, 1, 1.6], vertical_alignment="bottom")
    own = [(f"{name}.{f}", f) for f in OPTIMIZER_FIELDS[name]]
    rest = [(f, f) for f in ("steps", "batch_size", "eval_every")]
    for column, (field, label) in zip([*first, *second], own + rest, strict=True):
        with column:
            _number(field, label, store[field], found.get(label))
    return {k: v for k, v in found.items() if v}, spare
