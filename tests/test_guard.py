"""The resource guard: estimate memory and time before building anything, refuse within a second
an experiment over the budget, and say what to shrink.

Expected sizes are computed here by hand from the model's structure (an MLP block is Linear then
activation, so 2·depth leaf outputs of batch × width float32 values), never read back from the
guard. The last section pins defects found and fixed (the guard once drew the real input, read
its budget variables loosely and counted FLOPs only).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import initlab
import initlab.experiment as experiment_module
import initlab.models as models_module
from initlab import Experiment
from initlab.guard import (
    MEMORY_ENV,
    MEMORY_FRACTION,
    TIME_ENV,
    ShapePass,
    available_bytes,
    check_budget,
    estimate,
    matching_seconds,
    memory_budget,
)
from initlab.models import ACTIVATIONS, MODELS
from initlab.outline import meta_model
from initlab.probe import first_tensor

FLOAT = 4  # bytes per float32 value
KEEP = [{"preset": "kaiming_normal"}]


@pytest.fixture(autouse=True)
def _default_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MEMORY_ENV, raising=False)
    monkeypatch.delenv(TIME_ENV, raising=False)


@pytest.fixture(scope="module", autouse=True)
def _meta_kernels_loaded() -> None:
    """The first call on PyTorch's meta device imports its meta kernels (sympy and ~500 other
    modules: 0.3-1 s, once per process); the seconds timed below are what a check costs."""
    for model in ({"name": "cnn", "depth": 1, "channels": 1, "image_size": 4}, {"name": "lenet"}):
        estimate(experiment(model, 1))


def experiment(model: dict[str, Any], batch: int = 8, **rest: Any) -> Experiment:
    return Experiment.from_dict(
        {"model": model, "input": {"batch_size": batch}, "schemes": KEEP, **rest}
    )


def refusal(exp: Experiment) -> tuple[str, float]:
    """The guard's message and how long it took to say it."""
    start = time.perf_counter()
    with pytest.raises(ValueError) as info:
        check_budget(exp)
    return str(info.value), time.perf_counter() - start


# ---------------------------------------------------------------- refusing what is too big


def _no_forward(*args, **kwargs):
    raise AssertionError("the meta forward pass ran: the refusal should come before it")


def test_thousand_layers_of_width_100000_refused_before_any_forward_pass(monkeypatch):
    # How fast that is, is the benchmark's business (a timed test is noise on a shared
    # machine); what a test can pin is that the refusal needs no forward pass at all.
    monkeypatch.setattr(initlab.guard, "_meta_calls", _no_forward)
    exp = experiment({"name": "mlp", "depth": 1000, "width": 100_000})
    message, _ = refusal(exp)
    assert "model.width (100000)" in message or "model.depth (1000)" in message, message
    assert message.startswith("experiment too large") and "\n" not in message


def test_run_refuses_it_before_building_anything(monkeypatch):
    monkeypatch.setattr(initlab.guard, "_meta_calls", _no_forward)
    monkeypatch.setattr(initlab.experiment, "build_initialized", _no_forward)
    exp = experiment({"name": "mlp", "depth": 1000, "width": 100_000})
    with pytest.raises(ValueError, match="too large"):
        initlab.run(exp)


def test_a_big_batch_on_a_mid_size_model_names_the_batch(monkeypatch):
    # 8 conv layers of 128 channels on 32×32: each of the 16 leaf outputs (conv, relu) of a
    # 4096-image batch is 4096·128·32·32·4 B = 2 GiB, against 5 MB of parameters.
    monkeypatch.setenv(MEMORY_ENV, "2000")
    exp = experiment({"name": "cnn", "depth": 8, "channels": 128, "image_size": 32}, 4096)
    message, _ = refusal(exp)
    assert "shrink input.batch_size (4096)" in message, message
    assert "2000 MB" in message or "2.0 GB" in message or MEMORY_ENV in message


def test_memory_budget_environment_variable_lowers_the_budget(monkeypatch):
    exp = experiment({"name": "mlp", "depth": 20, "width": 256}, 64)  # 5 MB of weights
    assert check_budget(exp).peak_bytes < 64 * 2**20
    monkeypatch.setenv(MEMORY_ENV, "1")
    message, _ = refusal(exp)
    assert "experiment too large" in message and MEMORY_ENV in message, message
    assert "1 MB" in message


def test_time_budget_environment_variable_lowers_the_budget(monkeypatch):
    exp = experiment({"name": "mlp", "depth": 20, "width": 256}, 256)
    seconds = check_budget(exp).seconds
    assert 0 < seconds < 600
    monkeypatch.setenv(TIME_ENV, f"{seconds / 10:g}")
    message, _ = refusal(exp)
    assert "experiment too slow" in message and TIME_ENV in message, message
    assert "fewer seeds or schemes" in message


def test_default_memory_budget_is_a_fraction_of_available_memory():
    budget, source = memory_budget()
    assert budget == pytest.approx(MEMORY_FRACTION * available_bytes(), rel=0.05)
    assert MEMORY_ENV in source


# ---------------------------------------------------------------- the estimate, by hand


@pytest.mark.parametrize(
    ("model", "leaf_widths", "param_count"),
    [
        # depth × [Linear, activation]: two leaf outputs of `width` per block; weights only.
        ({"name": "mlp", "depth": 3, "width": 16}, [16] * 6, 3 * 16 * 16),
        ({"name": "mlp", "depth": 1, "width": 5}, [5, 5], 25),
        # with bias and LayerNorm: three leaves per block; W, b, and LayerNorm's scale and shift.
        (
            {"name": "mlp", "depth": 2, "width": 8, "bias": True, "norm": "layernorm"},
            [8] * 6,
            2 * (8 * 8 + 8 + 2 * 8),
        ),
        # widths [16, 8, 4]: fc1 and act1 give 8 values, fc2 and act2 give 4.
        ({"name": "mlp", "widths": [16, 8, 4]}, [8, 8, 4, 4], 16 * 8 + 8 * 4),
    ],
)
def test_estimate_matches_leaf_outputs_counted_by_hand(model, leaf_widths, param_count):
    batch = 8
    est = estimate(experiment(model, batch))
    assert est.activation_bytes == sum(batch * w * FLOAT for w in leaf_widths)
    assert est.param_bytes == param_count * FLOAT
    forward_only = estimate(experiment(model, batch, backward=False))
    assert forward_only.activation_bytes == 2 * batch * max(leaf_widths) * FLOAT
    assert est.runs == 1 and est.peak_bytes >= est.activation_bytes + est.param_bytes


def test_estimate_counts_every_seed_and_scheme():
    one_exp = experiment({"name": "mlp", "depth": 3, "width": 16})
    many_exp = Experiment.from_dict(
        {
            "model": {"name": "mlp", "depth": 3, "width": 16},
            "input": {"batch_size": 8},
            "seeds": [0, 1, 2],
            "schemes": [{"preset": "zeros"}, {"preset": "kaiming_normal"}],
        }
    )
    one, many = estimate(one_exp), estimate(many_exp)
    model = meta_model(one_exp.model)
    assert many.runs == 6
    # Probing scales with the runs; rule matching with the rules and seeds (counted apart).
    probing = [
        e.seconds - matching_seconds(x, model) for e, x in ((one, one_exp), (many, many_exp))
    ]
    assert probing[1] == pytest.approx(6 * probing[0])
    assert many.peak_bytes == one.peak_bytes  # one run at a time


# ---------------------------------------------------------------- nothing built before the check


def test_run_refuses_before_building_anything(monkeypatch):
    """Only the meta-device outline (shapes, no storage) may exist before the budget says yes."""
    real_build = models_module.build_model
    built: list[str] = []

    def build_model(spec, seed=None, device="cpu", allow_custom=None):
        if str(device) != "meta":
            built.append(spec["name"])
            raise AssertionError("a real model was built before the budget check")
        return real_build(spec, seed=seed, device=device, allow_custom=allow_custom)

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("nothing may be initialized or probed before the budget check")

    monkeypatch.setattr(models_module, "build_model", build_model)
    monkeypatch.setattr(experiment_module, "build_initialized", never)
    monkeypatch.setattr(experiment_module, "measure", never)
    monkeypatch.setenv(MEMORY_ENV, "1")
    exp = experiment({"name": "mlp", "depth": 20, "width": 256}, 64)
    with pytest.raises(ValueError, match=r"^experiment too large.*INITLAB_MEMORY_BUDGET_MB"):
        initlab.run(exp)
    assert built == []


# ---------------------------------------------------------------- defects found and fixed


def test_a_huge_input_is_refused_without_drawing_it(monkeypatch):
    real = experiment_module.make_input
    drawn: list[int] = []

    def make_input(exp: Experiment, seed: int):
        numel = exp.input.batch_size
        for size in exp.input_shape():
            numel *= size
        drawn.append(numel * FLOAT)
        if numel * FLOAT > 2**30:  # what the allocator says on a machine without that memory
            raise RuntimeError(f"DefaultCPUAllocator: can't allocate {numel * FLOAT} bytes")
        return real(exp, seed)

    monkeypatch.setattr(experiment_module, "make_input", make_input)
    exp = experiment({"name": "cnn", "image_size": 1024}, 65_536)
    message, _ = refusal(exp)
    assert "input.batch_size" in message
    assert drawn == [], "the guard drew the input it was meant to judge"


def test_a_thousand_layer_experiment_of_many_runs_is_refused_as_too_slow(monkeypatch):
    # 256 runs of 2000 leaf calls each: several minutes on any CPU (about 1.5 s a run here),
    # so well over a one-minute budget although its FLOPs are negligible.
    monkeypatch.setenv("INITLAB_TIME_BUDGET_S", "60")
    exp = Experiment.from_dict(
        {
            "model": {"name": "mlp", "depth": 1000, "width": 1},
            "input": {"batch_size": 1},
            "seeds": list(range(32)),
            "schemes": [{"name": f"s{i}", "preset": "kaiming_normal"} for i in range(8)],
        }
    )
    message, _ = refusal(exp)
    assert "too slow" in message


@pytest.mark.parametrize(
    ("model", "batch"),
    [
        ({"name": "mlp", "depth": 300, "width": 1}, 1),
        ({"name": "transformer", "n_layers": 1, "d_model": 8, "n_heads": 8, "vocab_size": 2,
          "seq_len": 8192}, 2),
    ],
    ids=["300 narrow layers", "8192 tokens"],
)  # fmt: skip
def test_time_estimate_is_within_a_factor_of_ten_of_a_real_run(model, batch):
    exp = experiment(model, batch)
    start = time.perf_counter()
    initlab.run(exp)
    measured = time.perf_counter() - start
    assert estimate(exp).seconds >= measured / 10, (estimate(exp).seconds, measured)


@pytest.mark.parametrize(
    ("variable", "value"),
    [(MEMORY_ENV, "abc"), (MEMORY_ENV, "nan"), (MEMORY_ENV, "inf"), (TIME_ENV, "abc"),
     (TIME_ENV, "nan")],
)  # fmt: skip
def test_a_malformed_budget_variable_is_named(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    message, _ = refusal(experiment({"name": "mlp", "depth": 2, "width": 8}))
    assert variable in message and "experiment too" not in message, message


# ---------------------------------------------------------------- the shape pass


def _leaf_outputs(model: nn.Module, x: torch.Tensor, mode: Any) -> tuple[list, float]:
    """(shape, dtype) of every leaf module's output under `mode`, and the FLOPs it counted."""
    found: list[tuple[tuple[int, ...], torch.dtype]] = []

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        out = first_tensor(output)
        if out is not None and not list(module.children()):
            found.append((tuple(out.shape), out.dtype))

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad(), mode:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    counted = mode.get_total_flops() if isinstance(mode, FlopCounterMode) else mode.flops
    return found, float(counted)


def _zoo_case(spec: dict[str, Any], batch: int = 3) -> tuple[nn.Module, torch.Tensor]:
    entry = MODELS[spec["name"]]
    full = entry.normalize(spec)
    shape = (batch, *entry.input_shape(full))
    dtype = torch.long if entry.tokens(full) else torch.float32
    return meta_model(full), torch.zeros(shape, dtype=dtype, device="meta")


ZOO = [
    *({"name": "mlp", "depth": 3, "width": 16, "activation": a} for a in ACTIVATIONS),
    {"name": "mlp", "depth": 2, "width": 8, "bias": True, "norm": "layernorm"},
    {"name": "mlp", "depth": 2, "width": 8, "bias": True, "norm": "batchnorm"},
    {"name": "lenet"},
    {"name": "cnn", "depth": 2, "channels": 4, "image_size": 9},
    {"name": "cnn", "depth": 2, "channels": 4, "batchnorm": True},
    {"name": "resnet", "blocks": 1, "width": 4},
    {"name": "transformer", "n_layers": 1, "d_model": 16, "n_heads": 2, "seq_len": 5},
    {"name": "transformer", "n_layers": 1, "d_model": 16, "tie_weights": False},
    *({"name": "rnn", "cell": c, "hidden": 8, "seq_len": 4} for c in ("lstm", "gru", "rnn")),
]


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("spec", ZOO, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_shape_pass_gives_every_leaf_output_and_the_flops_of_pytorchs_own_counter(spec, train):
    """The oracle: PyTorch's meta kernels for the shapes and dtypes, FlopCounterMode for the
    FLOPs (same formulas: equal, not merely within a factor)."""
    model, x = _zoo_case(spec)
    model.train(train)
    expected, expected_flops = _leaf_outputs(model, x, FlopCounterMode(display=False))
    got, flops = _leaf_outputs(model, x, ShapePass())
    assert got == expected
    assert expected_flops > 0 and flops == expected_flops


def test_shape_pass_flops_of_a_linear_and_a_conv_in_closed_form():
    batch, cin, cout, k, size, groups = 5, 6, 4, 3, 11, 2
    linear = nn.Linear(cin, cout, device="meta")
    conv = nn.Conv2d(cin, cout, k, stride=2, padding=1, groups=groups, device="meta")
    with torch.no_grad(), ShapePass() as shapes:
        linear(torch.empty(batch, 7, cin, device="meta"))  # 35 rows of cin -> cout
    assert shapes.flops == 2 * batch * 7 * cin * cout
    with torch.no_grad(), ShapePass() as shapes:
        out = conv(torch.empty(batch, cin, size, size, device="meta"))
    side = (size + 2 * 1 - k) // 2 + 1  # 6
    assert out.shape == (batch, cout, side, side)
    assert shapes.flops == 2 * batch * cout * side * side * (cin // groups) * k * k


def test_shape_pass_hands_what_it_does_not_know_to_pytorch():
    # A transposed convolution: PyTorch's kernel gives its shape (output padding and all).
    deconv = nn.ConvTranspose2d(3, 2, 3, stride=2, output_padding=1, device="meta")
    x = torch.empty(1, 3, 5, 5, device="meta")
    with torch.no_grad(), ShapePass() as shapes:
        out = deconv(x)
    assert out.shape == (1, 2, 12, 12) and "aten.convolution.default" in shapes.fallbacks
    assert shapes.flops == 2 * x.numel() * 2 * 3 * 3
    # Shapes that do not fit get PyTorch's own error, as the guard reports a failing model.
    with ShapePass(), pytest.raises(RuntimeError, match="same reduction dim"):
        torch.mm(torch.empty(2, 3, device="meta"), torch.empty(4, 5, device="meta"))


HEAVY_CODE = """import json, sys
import initlab
from initlab.guard import check_budget
for spec in json.loads(sys.argv[1]):
    exp = initlab.Experiment.from_dict({"model": spec, "schemes": [{"preset": "kaiming_normal"}]})
    check_budget(exp)
print(json.dumps([m for m in sys.argv[2].split(",") if m in sys.modules]))
"""


def test_the_check_imports_neither_sympy_nor_distributed_nor_dynamo():
    """In a fresh process, `import initlab` and the guard on the zoo models whose meta outline
    imports nothing either: the shape pass needs none of PyTorch's Python meta kernels."""
    # (The transformer's and rnn's outlines import dynamo themselves: torch.nn.init on meta.)
    specs = [{"name": "mlp"}, *(s for s in ZOO if s["name"] not in ("transformer", "rnn"))]
    heavy = "sympy,torch.distributed.tensor,torch._dynamo,torch.fx.experimental.symbolic_shapes"
    root = Path(__file__).resolve().parents[1]
    args = [sys.executable, "-c", HEAVY_CODE, json.dumps(specs), heavy]
    done = subprocess.run(args, check=True, capture_output=True, text=True, cwd=root)
    assert json.loads(done.stdout) == []


def test_the_time_estimate_still_follows_the_flops():
    # 2·batch·width² per layer: the estimate grows with the batch as the FLOPs do.
    small = estimate(experiment({"name": "mlp", "depth": 4, "width": 512}, 8))
    large = estimate(experiment({"name": "mlp", "depth": 4, "width": 512}, 8 * 64))
    assert math.isfinite(small.seconds) and large.seconds > 10 * small.seconds
