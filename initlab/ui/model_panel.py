"""The sidebar: model, input and run options, generated from the model registry."""

from __future__ import annotations

from typing import Any

import streamlit as st

from initlab.models import MODELS
from initlab.ui.widgets import param_widget, seed_value

ZOO = [name for name in MODELS if name != "custom"]  # custom models run user code: CLI only
MAX_BATCH = 4096
MAX_SEEDS = 8


def model_key(model: str, param: str) -> str:
    return f"model.{model}.{param}"


def model_ui() -> dict[str, Any]:
    """The model spec, e.g. {"name": "mlp", "depth": 20, ...}."""
    st.header("Model")
    seed_value("model_name", "mlp")
    name = st.selectbox("Model", ZOO, key="model_name", help=_summary_help())
    entry = MODELS[name]
    st.caption(entry.summary)
    spec: dict[str, Any] = {"name": name}
    for p in entry.params:
        if p.default is None:
            continue  # optional alternatives (e.g. mlp widths) are for JSON and the CLI
        spec[p.name] = param_widget(p, model_key(name, p.name), p.default, bounded=True)
    return spec


def _summary_help() -> str:
    return "\n".join(f"- **{m.name}**: {m.summary}" for m in MODELS.values() if m.name in ZOO)


def input_ui(model: dict[str, Any]) -> dict[str, Any]:
    """The random input: batch size and distribution (token models draw token ids)."""
    st.header("Input")
    seed_value("batch_size", 256)
    spec: dict[str, Any] = {"batch_size": st.number_input(
        "Batch size", 1, MAX_BATCH, step=1, key="batch_size")}  # fmt: skip
    if MODELS[model["name"]].tokens(model) is not None:
        st.caption("Random token ids, uniform over the vocabulary.")
        return {**spec, "distribution": "tokens"}
    seed_value("input_distribution", "normal")
    dist = st.radio("Distribution", ["normal", "uniform"], key="input_distribution",
                    horizontal=True)  # fmt: skip
    spec["distribution"] = dist
    first, second = ("mean", "std") if dist == "normal" else ("low", "high")
    defaults = {"mean": 0.0, "std": 1.0, "low": -1.0, "high": 1.0}
    left, right = st.columns(2)
    for column, field in ((left, first), (right, second)):
        seed_value(f"input_{field}", defaults[field])
        spec[field] = column.number_input(field, key=f"input_{field}", format="%g", step=None)
    return spec


def options_ui() -> dict[str, Any]:
    """Seeds, backward pass and the probe's mode."""
    st.header("Run")
    seed_value("n_seeds", 2)
    seed_value("backward", True)
    seed_value("mode", "train")
    n_seeds = st.number_input("Seeds", 1, MAX_SEEDS, step=1, key="n_seeds",
                              help="each seed: new weights and input")  # fmt: skip
    backward = st.checkbox("Backward pass (gradients)", key="backward")
    mode = st.radio("Mode", ["train", "eval"], key="mode", horizontal=True,
                    help="train: BatchNorm normalizes with batch statistics")  # fmt: skip
    options = {"seeds": list(range(int(n_seeds))), "backward": backward, "mode": mode}
    return {**options, "device": _device_ui()}


def _device_ui() -> str:
    """CUDA is offered only where a GPU is present; the run falls back to nothing silently."""
    import torch

    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    seed_value("device", "cpu")
    if st.session_state["device"] not in devices:
        st.session_state["device"] = "cpu"
    return st.radio("Device", devices, key="device", horizontal=True)
