"""The task registry: each task's data checked against an independent oracle (a dense
eigen-solve of the Markov chain, scikit-learn's own digits, counts recomputed here), its
refusals, and the models it adapts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from initlab import build_model, tasks
from initlab.models import MODELS, normalize_model_spec
from initlab.tasks import (
    MAX_DATA_ELEMENTS,
    TASKS,
    TaskData,
    adapt_model,
    check_task,
    data_elements,
    default_task,
    digits_arrays,
    entropy_rate,
    make_data,
    markov_chain,
    sample_chain,
    stationary_entropy,
    task_accuracy,
    task_loss,
)

CUSTOM_TOKENS = {"name": "custom", "factory": "mypkg.models:make", "kwargs": {}}
NORMAL: dict[str, Any] = {"distribution": "normal", "mean": 0.0, "std": 1.0}


def spec(**fields: Any) -> dict[str, Any]:
    return normalize_model_spec(fields)


def shapes(model: dict[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(input, output) per sample of a zoo model, the output from a real forward pass."""
    input_shape = MODELS[model["name"]].input_shape(model)
    net = build_model(model, seed=0)
    vocab = MODELS[model["name"]].tokens(model)
    x = torch.zeros((1, *input_shape), dtype=torch.long if vocab else torch.float32)
    with torch.no_grad():
        return input_shape, tuple(net(x).shape[1:])


def data_for(name: str, model: dict[str, Any], seed: int = 0, **inputs: Any) -> TaskData:
    task = TASKS[name]
    adapted, _ = adapt_model(task, model)
    input_shape, output_shape = shapes(adapted)
    return make_data(task, adapted, input_shape, {**NORMAL, **inputs}, output_shape, seed)


def tensors(data: TaskData) -> list[torch.Tensor]:
    return [data.train_x, data.train_y, data.heldout_x, data.heldout_y]


def dense(successors: np.ndarray, probs: np.ndarray) -> np.ndarray:
    vocab = len(successors)
    p = np.zeros((vocab, vocab))
    np.add.at(
        p, (np.repeat(np.arange(vocab), successors.shape[1]), successors.ravel()), probs.ravel()
    )
    return p


def reachable_in(pattern: np.ndarray, steps: int) -> np.ndarray:
    """Which tokens reach which in exactly `steps` steps: a boolean matrix power by squaring."""
    result, base = np.eye(len(pattern), dtype=bool), pattern
    while steps:
        if steps & 1:
            result = (result.astype(np.int64) @ base.astype(np.int64)) > 0
        base = (base.astype(np.int64) @ base.astype(np.int64)) > 0
        steps >>= 1
    return result


# ---------------------------------------------------------------- tokens: the chain


@pytest.mark.parametrize("vocab", [1, 2, 3, 5, 50])
def test_the_chain_is_sparse_irreducible_and_aperiodic(vocab: int) -> None:
    successors, probs = markov_chain(vocab, 3)
    b = min(4, vocab)
    assert successors.shape == probs.shape == (vocab, b)
    assert all(len(set(row)) == b for row in successors.tolist())  # distinct successors
    assert all((i + 1) % vocab in row for i, row in enumerate(successors.tolist()))
    assert 0 in successors[0]
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=0, atol=1e-12)
    assert probs.min() > 0
    # Primitive (irreducible and aperiodic) iff some power of the pattern is all positive;
    # (V - 1)² + 1 is Wielandt's bound on that power.
    pattern = dense(successors, probs) > 0
    assert reachable_in(pattern, (vocab - 1) ** 2 + 1).all()


@pytest.mark.parametrize("vocab", [5, 50])
def test_entropy_rate_and_chance_match_a_dense_eigen_solve(vocab: int) -> None:
    successors, probs = markov_chain(vocab, 7)
    p = dense(successors, probs)
    values, vectors = np.linalg.eig(p.T)
    k = int(np.argmin(np.abs(values - 1.0)))
    assert abs(values[k] - 1.0) < 1e-12
    pi = np.real(vectors[:, k])
    pi = pi / pi.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(p), 0.0)
    oracle_rate = float(-(pi[:, None] * plogp).sum())
    oracle_chance = float(-(pi * np.log(pi)).sum())
    rate, stationary = entropy_rate(successors, probs)
    np.testing.assert_allclose(stationary, pi, rtol=0, atol=1e-12)
    assert rate == pytest.approx(oracle_rate, abs=1e-9)
    assert stationary_entropy(stationary) == pytest.approx(oracle_chance, abs=1e-9)
    # make_data reports the same numbers for a transformer of that vocabulary.
    model = spec(name="transformer", vocab_size=vocab, seq_len=8, d_model=8, n_heads=1)
    data = make_data(TASKS["tokens"], model, (8,), {}, (8, vocab), data_seed=7)
    assert data.floor == pytest.approx(oracle_rate, abs=1e-9)
    assert data.chance == pytest.approx(oracle_chance, abs=1e-9)
    assert data.classes == vocab
    assert 0 < data.floor < data.chance <= math.log(vocab) + 1e-12


def test_sampled_sequences_follow_the_chain() -> None:
    """20,000 sequences of 20 tokens over V = 5: about 76,000 transitions leave each token on
    average, so each empirical P_ij has a standard error under 0.002 (tolerance 0.01, 5σ+),
    and 20,000 first tokens give π with a standard error under 0.0036 (tolerance 0.02)."""
    successors, probs = markov_chain(5, 1)
    _, pi = entropy_rate(successors, probs)
    seqs = sample_chain(successors, probs, pi, 20_000, 20, np.random.default_rng(11))
    assert seqs.shape == (20_000, 20) and seqs.dtype == np.int64
    counts = np.zeros((5, 5))
    np.add.at(counts, (seqs[:, :-1].ravel(), seqs[:, 1:].ravel()), 1)
    empirical = counts / counts.sum(1, keepdims=True)
    np.testing.assert_allclose(empirical, dense(successors, probs), rtol=0, atol=0.01)
    first = np.bincount(seqs[:, 0], minlength=5) / len(seqs)
    np.testing.assert_allclose(first, pi, rtol=0, atol=0.02)
    # Every position is distributed as π, since the first one is.
    np.testing.assert_allclose(np.bincount(seqs[:, -1], minlength=5) / len(seqs), pi, atol=0.02)


def test_token_data_is_shifted_sequences_of_the_chain() -> None:
    model = spec(name="transformer", vocab_size=50, seq_len=12, d_model=8, n_heads=1)
    data = data_for("tokens", model, seed=5)
    assert data.train_x.shape == data.train_y.shape == (2048, 12)
    assert data.heldout_x.shape == (256, 12)
    assert all(t.dtype == torch.int64 for t in tensors(data))
    assert torch.equal(data.train_x[:, 1:], data.train_y[:, :-1])  # target = next token
    successors, _ = markov_chain(50, 5)
    edges = set(zip(np.repeat(np.arange(50), 4).tolist(), successors.ravel().tolist(), strict=True))
    steps = zip(data.heldout_x.ravel().tolist(), data.heldout_y.ravel().tolist(), strict=True)
    assert all(step in edges for step in steps)
    again = data_for("tokens", model, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(tensors(data), tensors(again), strict=True))
    other = data_for("tokens", model, seed=6)
    assert not torch.equal(data.heldout_x, other.heldout_x)


# ---------------------------------------------------------------- digits


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        ({"name": "mlp", "depth": 3, "width": 32}, (64,)),
        ({"name": "lenet"}, (3, 32, 32)),
        ({"name": "cnn", "image_size": 16, "depth": 2, "channels": 4}, (3, 16, 16)),
    ],
)
def test_digits_shapes_split_and_standardization(model: dict[str, Any], shape: tuple) -> None:
    data = data_for("digits", spec(**model))
    assert data.train_x.shape == (1437, *shape) and data.heldout_x.shape == (360, *shape)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert set(data.train_y.tolist()) == set(data.heldout_y.tolist()) == set(range(10))
    train = data.train_x.double()
    assert abs(float(train.mean())) < 1e-5
    assert float(train.std(correction=0)) == pytest.approx(1.0, abs=1e-5)
    if len(shape) == 3:  # the gray channel repeated
        assert torch.equal(data.train_x[:, 0], data.train_x[:, 2])
    assert data.floor is None and data.classes == 10
    freq = np.bincount(data.train_y.numpy(), minlength=10) / 1437
    assert data.chance == pytest.approx(-np.log(freq[data.heldout_y.numpy()]).mean(), abs=1e-12)
    assert data.chance == pytest.approx(math.log(10), abs=0.01)


def test_digits_are_scikit_learns_digits_standardized_by_the_training_set() -> None:
    data = data_for("digits", spec(name="mlp", depth=2, width=16))
    reference = load_digits()
    assert reference.data.min() == 0 and reference.data.max() == 16
    # Standardizing is one affine map; the data span 0..16, so its inverse is known.
    x = torch.cat([data.train_x, data.heldout_x]).double()
    pixels = (x - x.min()) / (x.max() - x.min()) * 16.0
    assert torch.allclose(pixels, torch.round(pixels), rtol=0, atol=1e-4)
    pixels = torch.round(pixels)
    labels = torch.cat([data.train_y, data.heldout_y])
    got = np.column_stack([labels.numpy(), pixels.long().numpy()])
    expected = np.column_stack([reference.target, reference.data.astype(np.int64)])
    got, expected = (a[np.lexsort(a.T[::-1])] for a in (got, expected))
    np.testing.assert_array_equal(got, expected)  # every image once, with its own label
    train = pixels[:1437] / 16.0
    standardized = (train - train.mean()) / train.std(correction=0)
    np.testing.assert_allclose(data.train_x.double(), standardized, rtol=0, atol=1e-5)


def test_digits_cnn_without_resize_matches_the_mlp_pixels() -> None:
    flat = data_for("digits", spec(name="mlp", depth=2, width=16))
    image = data_for("digits", spec(name="cnn", image_size=8, depth=1, channels=2))
    np.testing.assert_allclose(image.train_x[:, 1].flatten(1), flat.train_x, rtol=0, atol=1e-6)
    assert torch.equal(image.heldout_y, flat.heldout_y)


def test_digits_data_is_fixed_and_returned_as_copies() -> None:
    model = spec(name="mlp", depth=2, width=16)
    first = data_for("digits", model)
    kept = [t.clone() for t in tensors(first)]
    for t in tensors(first):
        t.zero_()
    images, labels = digits_arrays()
    images[:] = -1.0
    labels[:] = 3
    second = data_for("digits", model)
    assert all(torch.equal(a, b) for a, b in zip(kept, tensors(second), strict=True))
    assert digits_arrays()[0].max() == 16.0
    other = data_for("digits", model, seed=1)
    assert not torch.equal(other.heldout_y, second.heldout_y)  # data_seed picks the split


def test_digits_refuses_an_image_too_big() -> None:
    model = spec(name="resnet", image_size=1024)
    with pytest.raises(ValueError, match=r"training\.task: 'digits'.*model\.image_size 1024"):
        make_data(TASKS["digits"], model, (3, 1024, 1024), NORMAL, (10,))
    assert data_elements(TASKS["digits"], model, (3, 1024, 1024), (10,)) > MAX_DATA_ELEMENTS


# ---------------------------------------------------------------- teacher


def test_teacher_targets_are_unit_scale_and_fixed_by_data_seed() -> None:
    model = spec(name="mlp", depth=3, width=32)
    data = data_for("teacher", model, seed=0)
    assert data.train_x.shape == (4096, 32) and data.train_y.shape == (4096, 10)
    assert data.heldout_x.shape == (1024, 32) and data.heldout_y.shape == (1024, 10)
    assert float(data.train_y.double().std(correction=0)) == pytest.approx(1.0, abs=1e-5)
    assert data.floor == 0.0 and data.classes is None
    mean = data.train_y.double().mean(0)
    chance = float(((data.heldout_y.double() - mean) ** 2).mean())
    assert data.chance == pytest.approx(chance, rel=1e-5)
    assert 0.8 < data.chance < 1.2
    same = data_for("teacher", model, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(tensors(data), tensors(same), strict=True))
    other = data_for("teacher", model, seed=1)
    assert not torch.equal(data.train_x, other.train_x)
    assert not torch.equal(data.train_y, other.train_y)


def test_teacher_targets_are_a_smooth_function_of_the_input() -> None:
    """Nearby inputs get nearby targets (a fixed tanh network), unlike shuffled targets."""
    data = data_for("teacher", spec(name="mlp", depth=2, width=8), seed=2)
    x, y = data.train_x[:500].double(), data.train_y[:500].double()
    d_in, d_out = torch.cdist(x, x), torch.cdist(y, y)
    off = ~torch.eye(500, dtype=torch.bool)
    near, far = off & (d_in < d_in[off].quantile(0.01)), d_in > d_in[off].quantile(0.99)
    assert d_out[near].mean() < 0.5 * d_out[far].mean()
    shuffled = torch.cdist(y[torch.randperm(500, generator=torch.Generator().manual_seed(0))], y)
    assert shuffled[near].mean() > 0.7 * shuffled[far].mean()


@pytest.mark.parametrize(
    "inputs",
    [
        {"distribution": "normal", "mean": 2.0, "std": 3.0},
        {"distribution": "uniform", "low": -1.0, "high": 5.0},
    ],
)
def test_teacher_inputs_follow_the_experiment(inputs: dict[str, Any]) -> None:
    data = data_for("teacher", spec(name="mlp", depth=1, width=16), **inputs)
    x = torch.cat([data.train_x, data.heldout_x]).double()
    if inputs["distribution"] == "normal":
        assert float(x.mean()) == pytest.approx(2.0, abs=0.02)
        assert float(x.std()) == pytest.approx(3.0, rel=0.01)
    else:
        assert float(x.min()) >= -1.0 and float(x.max()) < 5.0
        assert float(x.mean()) == pytest.approx(2.0, abs=0.02)
    assert float(data.train_y.std(correction=0)) == pytest.approx(1.0, abs=1e-5)


def test_teacher_on_an_rnn_regresses_every_step() -> None:
    model = spec(name="rnn", seq_len=5, input_size=3, hidden=4, layers=1)
    data = data_for("teacher", model)
    assert data.train_x.shape == (4096, 5, 3) and data.train_y.shape == (4096, 5, 10)


def test_teacher_refusals() -> None:
    model = spec(name="mlp", depth=1, width=4)
    with pytest.raises(ValueError, match=r"training\.task: 'teacher'.*'tokens'"):
        make_data(TASKS["teacher"], CUSTOM_TOKENS, (4,), {"distribution": "tokens"}, (4,))
    transformer = spec(name="transformer", vocab_size=20, seq_len=4, d_model=8)
    with pytest.raises(ValueError, match=r"training\.task: 'teacher'.*'tokens'"):
        make_data(TASKS["teacher"], transformer, (4,), {}, (4, 20))
    with pytest.raises(ValueError, match=r"input\.std"):
        make_data(TASKS["teacher"], model, (4,), {"mean": 1.0, "std": 0.0}, (4,))
    big = spec(name="resnet", image_size=1024)
    with pytest.raises(ValueError, match=r"training\.task: 'teacher'.*input\.shape"):
        make_data(TASKS["teacher"], big, (3, 1024, 1024), NORMAL, (10,))


# ---------------------------------------------------------------- choosing and adapting


def test_check_task_refusals_name_the_task_the_models_and_the_choices() -> None:
    transformer = spec(name="transformer")
    with pytest.raises(ValueError) as caught:
        check_task("digits", transformer)
    assert str(caught.value) == (
        "training.task: 'digits' suits mlp, lenet, cnn, resnet; model 'transformer' takes "
        "token ids (try 'tokens')"
    )
    with pytest.raises(ValueError) as caught:
        check_task("tokens", spec(name="mlp"))
    message = str(caught.value)
    assert "'tokens' suits transformer, custom" in message
    assert "model 'mlp' takes float input" in message and "'digits' or 'teacher'" in message
    with pytest.raises(ValueError, match=r"^x\.task: unknown task 'mnist'; choose one of: "):
        check_task("mnist", transformer, where="x.task")
    with pytest.raises(ValueError, match="digits, teacher, tokens"):
        check_task(None, transformer)
    with pytest.raises(ValueError, match="'digits' suits"):
        check_task("digits", CUSTOM_TOKENS)
    with pytest.raises(ValueError, match="takes token ids"):
        check_task("teacher", CUSTOM_TOKENS, input_spec={"distribution": "tokens"})
    assert check_task("teacher", CUSTOM_TOKENS) is TASKS["teacher"]  # input not known yet
    assert check_task("tokens", CUSTOM_TOKENS, input_spec={"distribution": "tokens"})


def test_the_registry_and_default_tasks() -> None:
    assert list(TASKS) == ["digits", "teacher", "tokens"]
    assert all(task.name == name and task.summary for name, task in TASKS.items())
    expected = {
        "transformer": "tokens",
        "lenet": "digits",
        "cnn": "digits",
        "resnet": "digits",
        "mlp": "teacher",
        "rnn": "teacher",
    }
    for name, task in expected.items():
        model = spec(name=name)
        assert default_task(model) == task
        assert check_task(task, model) is TASKS[task]
    assert default_task(CUSTOM_TOKENS) == "teacher"
    assert default_task(CUSTOM_TOKENS, {"distribution": "tokens"}) == "tokens"


@pytest.mark.parametrize(
    ("given", "widths", "text"),
    [
        ({"depth": 20, "width": 256}, [64, *[256] * 19, 10], "widths [64, 256, …, 256, 10]"),
        ({"depth": 1, "width": 256}, [64, 10], "widths [64, 10]"),
        ({"widths": [32, 100, 50, 7]}, [64, 100, 50, 10], "widths [64, 100, 50, 10]"),
    ],
)
def test_adapt_mlp_for_digits(given: dict[str, Any], widths: list[int], text: str) -> None:
    model = spec(name="mlp", activation="tanh", **given)
    adapted, note = adapt_model(TASKS["digits"], model)
    assert list(adapted["widths"]) == widths and adapted["head"] is True
    assert adapted["depth"] == len(widths) - 1 == model["depth"]
    assert adapted == normalize_model_spec(adapted)
    assert note is not None and text in note
    assert note.endswith(f"no activation after fc{len(widths) - 1}")
    net = build_model(adapted, seed=0)
    assert isinstance(list(net.children())[-1], nn.Linear)
    data = make_data(TASKS["digits"], adapted, (64,), NORMAL, (10,))
    assert net(data.heldout_x[:7]).shape == (7, 10)
    assert adapt_model(TASKS["digits"], adapted) == (adapted, None)  # nothing left to change


def test_adapt_mlp_for_teacher_and_the_rest_unchanged() -> None:
    model = spec(name="mlp", depth=20, width=256, activation="tanh")
    adapted, note = adapt_model(TASKS["teacher"], model)
    widths = (*[256] * 20, 10)
    assert adapted == {**model, "widths": widths, "head": True}
    assert note is not None and "no activation after fc20" in note and "any sign" in note
    assert "[256, 256, …, 256, 10]" in note
    assert isinstance(list(build_model(adapted).children())[-1], nn.Linear)
    assert adapt_model(TASKS["teacher"], adapted) == (adapted, None)
    for name, task in [("lenet", "digits"), ("cnn", "teacher"), ("transformer", "tokens")]:
        zoo = spec(name=name)
        assert adapt_model(TASKS[task], zoo) == (zoo, None)
    assert adapt_model(TASKS["tokens"], CUSTOM_TOKENS) == (CUSTOM_TOKENS, None)
    _, output = shapes(adapt_model(TASKS["digits"], spec(name="lenet"))[0])
    assert output == (10,)


# ---------------------------------------------------------------- sizes, loss, accuracy


@pytest.mark.parametrize(
    ("task", "model"),
    [
        ("digits", {"name": "mlp", "depth": 2, "width": 8}),
        ("digits", {"name": "cnn", "image_size": 12, "depth": 1, "channels": 2}),
        ("teacher", {"name": "rnn", "seq_len": 4, "input_size": 3, "hidden": 4, "layers": 1}),
        ("teacher", {"name": "cnn", "image_size": 16, "depth": 1, "channels": 2}),
        ("tokens", {"name": "transformer", "vocab_size": 30, "seq_len": 6, "d_model": 8}),
    ],
)
def test_data_elements_counts_what_make_data_returns(task: str, model: dict[str, Any]) -> None:
    adapted, _ = adapt_model(TASKS[task], spec(**model))
    input_shape, output_shape = shapes(adapted)
    data = make_data(TASKS[task], adapted, input_shape, NORMAL, output_shape)
    counted = data_elements(TASKS[task], adapted, input_shape, output_shape)
    assert counted == sum(t.numel() for t in tensors(data)) <= MAX_DATA_ELEMENTS
    assert len(data.heldout_x) <= len(data.train_x)


def test_big_samples_get_fewer_examples_within_the_bound() -> None:
    model = spec(name="cnn", image_size=128, depth=1, channels=2)
    d_in = 3 * 128 * 128
    # (train + held-out) (d_in + 10) + the teacher's 64 (d_in + 10) weights ≤ the bound
    heldout = (MAX_DATA_ELEMENTS - 64 * (d_in + 10)) // (5 * (d_in + 10))
    assert heldout < 1024
    counted = data_elements(TASKS["teacher"], model, (3, 128, 128), (10,))
    assert counted == 5 * heldout * (d_in + 10)
    long = dict(CUSTOM_TOKENS)
    counted = data_elements(TASKS["tokens"], long, (100_000,), (100_000, 50))
    assert counted <= MAX_DATA_ELEMENTS and counted % (9 * 2 * 100_000) == 0
    assert counted < (2048 + 256) * 2 * 100_000


def test_shrunk_data_still_matches_its_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a lower bound the teacher and token sets shrink, and the count follows."""
    monkeypatch.setattr(tasks, "MAX_DATA_ELEMENTS", 2_000_000)
    cases = [
        ("teacher", spec(name="cnn", image_size=16, depth=1, channels=2), (3, 16, 16), (10,)),
        (
            "tokens",
            spec(name="transformer", vocab_size=30, seq_len=1000, d_model=8),
            (1000,),
            (1000, 30),
        ),
    ]
    for name, model, input_shape, output_shape in cases:
        data = make_data(TASKS[name], model, input_shape, NORMAL, output_shape)
        counted = data_elements(TASKS[name], model, input_shape, output_shape)
        assert counted == sum(t.numel() for t in tensors(data)) <= 2_000_000
        assert len(data.heldout_x) < (1024 if name == "teacher" else 256)
        assert len(data.train_x) == (4 if name == "teacher" else 8) * len(data.heldout_x)
    monkeypatch.setattr(tasks, "MAX_DATA_ELEMENTS", 100_000)
    with pytest.raises(ValueError, match=r"training\.task: 'teacher'"):
        make_data(TASKS["teacher"], cases[0][1], (3, 16, 16), NORMAL, (10,))


def test_tokens_refuses_a_chain_beyond_the_bound_before_building_it() -> None:
    inputs = {"distribution": "tokens", "vocab_size": 10_000_000}
    with pytest.raises(ValueError, match=r"training\.task: 'tokens'.*vocab_size"):
        make_data(TASKS["tokens"], CUSTOM_TOKENS, (16,), inputs, (16, 10_000_000))
    with pytest.raises(ValueError, match=r"logits of shape \[seq_len, vocab\] = \[16, 50\]"):
        make_data(TASKS["tokens"], CUSTOM_TOKENS, (16,), {"vocab_size": 50}, (16, 10))


def test_loss_and_accuracy_against_a_hand_computation() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, 7, generator=g)
    target = torch.randint(0, 7, (6, 5), generator=g)
    lp = logits.double() - torch.logsumexp(logits.double(), -1, keepdim=True)
    expected = -lp.gather(-1, target[..., None]).mean()
    loss = task_loss(TASKS["tokens"], logits, target)
    assert loss.shape == () and float(loss) == pytest.approx(float(expected), rel=1e-6)
    hits = sum(
        int(row.argmax()) == int(t)
        for row, t in zip(logits.reshape(-1, 7), target.ravel(), strict=True)
    )
    assert task_accuracy(TASKS["tokens"], logits, target) == pytest.approx(hits / 30)
    out, y = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g)
    mse = float(((out.double() - y.double()) ** 2).mean())
    assert float(task_loss(TASKS["teacher"], out, y)) == pytest.approx(mse, rel=1e-6)
    assert task_accuracy(TASKS["teacher"], out, y) is None
    with pytest.raises(ValueError, match="output shape"):
        task_loss(TASKS["teacher"], out, y[:, :2])
    with pytest.raises(ValueError, match="output shape"):
        task_loss(TASKS["digits"], out, y[:, 0].long()[:4])
    assert float(task_loss(TASKS["digits"], out, y[:, 0].abs().long() % 3)) == pytest.approx(
        float(F.cross_entropy(out, y[:, 0].abs().long() % 3))
    )


def test_no_global_random_state_is_touched() -> None:
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    data_for("teacher", spec(name="mlp", depth=1, width=4))
    data_for("tokens", spec(name="transformer", vocab_size=20, seq_len=4, d_model=8))
    data_for("digits", spec(name="mlp", depth=1, width=4))
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(
        np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state, strict=True)
    )


def test_data_seed_must_be_a_non_negative_integer() -> None:
    model = spec(name="mlp", depth=1, width=4)
    for bad in (-1, True, 1.5, 2**63):
        with pytest.raises(ValueError, match=r"training\.data_seed"):
            make_data(TASKS["teacher"], model, (4,), NORMAL, (4,), bad)
