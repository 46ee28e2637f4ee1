"""Every session-state key of the page, in one place.

Panels draw widgets with these keys, `state.load_experiment` writes them when a link or a file
is loaded, and the tests drive them: a new widget is one entry here, so the restore can't be the
edit that gets forgotten. The view's keys are also the address's query parameters (widgets
bound with `bind="query-params"`), so their names are part of the page's links.
"""

from __future__ import annotations

import zlib

# ---------------------------------------------------------------- the experiment's widgets

MODEL_NAME = "model_name"
BATCH_SIZE = "batch_size"
INPUT_DISTRIBUTION = "input_distribution"
INPUT_SHAPE = "input_shape"  # a loaded input.shape, kept while it is the model's own
N_SEEDS = "n_seeds"
SEED_TEXT = "seed_text"
BACKWARD = "backward"
MODE = "mode"
DROPOUT = "dropout"
BINS = "bins"
DEVICE = "device"
OFFER_AUTO = "offer_auto_device"  # set when a loaded experiment asked for device "auto"
DEVICE_NOTE = "device_note"  # why a loaded device was replaced (said while it still is)
# Experiment fields whose widget holds the value as it is (field name → key).
RUN_FIELDS = {
    "backward": BACKWARD,
    "mode": MODE,
    "dropout": DROPOUT,
    "bins": BINS,
    "device": DEVICE,
}


def model_param(model: str, param: str) -> str:
    """A zoo model's parameter widget: each model keeps its own values."""
    return f"model.{model}.{param}"


def input_field(field: str) -> str:
    """An input number: mean, std, low, high or vocab_size."""
    return f"input_{field}"


# ---------------------------------------------------------------- scheme columns

EDITORS = "editors"  # the columns: {"uid", "preset", "rules", "activation", ...} each
ACTIVATION = "activation"  # the model's activation, which preset gains follow
NEXT_UID = "next_uid"


def column(uid: int) -> str:
    """The prefix of every key of one column (forgotten together when it is removed)."""
    return f"s{uid}."


def column_box(uid: int) -> str:
    """The column's bordered container (its CSS class `st-key-column-<uid>` in the page)."""
    return f"column-{uid}"


def scheme_name(uid: int) -> str:
    return f"s{uid}.name"


def scheme_preset(uid: int) -> str:
    return f"s{uid}.preset"


def scheme_rules(uid: int) -> str:
    """The rules the column's widgets composed on its last valid run."""
    return f"s{uid}.rules"


def slot(uid: int, family: str, slot_name: str) -> str:
    """One (family, weight|bias) of a column; its method is `slot(...) + '.method'`."""
    return f"s{uid}.{family}.{slot_name}"


def slot_method(uid: int, family: str, slot_name: str) -> str:
    return f"{slot(uid, family, slot_name)}.method"


def slot_param(uid: int, family: str, slot_name: str, method: str, param: str) -> str:
    """A method parameter's widget: per method, so switching back finds what was typed."""
    return f"{slot(uid, family, slot_name)}.{method}.{param}"


def named_rules(uid: int) -> str:
    """The prefix of the widgets of a column's rules with a glob ('#' is in no class name)."""
    return f"s{uid}.#"


def named_rule(uid: int, index: int, part: str) -> str:
    """A widget of the column's `index`-th rule (one with a name or parameter glob)."""
    return f"{named_rules(uid)}{index}.{part}"


def button(uid: int, action: str) -> str:
    return f"s{uid}.{action}"


# ---------------------------------------------------------------- the view (in the address)

TAB = "tab"
VIEW_ROLE = "view_role"
HIST_KIND = "hist_kind"
HIST_SCALE = "hist_scale"
HEALTH_ALL = "health_all"
THEORY_OVERLAY = "theory.overlay"  # the mean-field toggle: `theory.overlay=false` when off
VIEW_KEYS = (TAB, VIEW_ROLE, HIST_KIND, HIST_SCALE, HEALTH_ALL, THEORY_OVERLAY)


def hist_names(kind: str, model_json: str) -> str:
    """The layers picked for one histogram kind, per model: another model's picks would name
    layers it doesn't have."""
    return f"hist_names_{kind}_{zlib.crc32(model_json.encode()):08x}"


# ---------------------------------------------------------------- the Training view

TRAINING = "training_settings"  # field -> value typed in the Training view (None: defaults)
TRAINING_WIDGETS = "train."  # the prefix of the view's widgets (seeded from TRAINING)
TRAINING_JOB = "training_job"  # the session's one training (initlab.ui.training_job.Job)
TRAINED = "trained"  # training key -> TrainingResults, the last few (training_job.CACHED)
TRAININGS_RUN = "trainings_run"  # counted for the tests: trainings started


def training_widget(field: str) -> str:
    """A Training setting's widget; a field of the optimizer is per optimizer (`sgd.lr`), so
    switching back finds what was typed."""
    return f"{TRAINING_WIDGETS}{field}"


# ---------------------------------------------------------------- the page's memory

TYPED = "typed"  # widget key -> the value it last had; survives runs that do not draw it
LAST_GOOD = "last_good"  # (experiment JSON, tables) of the last run that succeeded
LOAD_ERROR = "load_error"  # why a link or a file was not loaded (markdown, user text escaped)
LOAD_TEXT = "load_text"  # the text that failed to load, shown with the error
URL_CHECKED = "url_checked"
UPLOAD = "upload"
PROBES_RUN = "probes_run"  # counted for the benchmark and the tests: runs that probed
