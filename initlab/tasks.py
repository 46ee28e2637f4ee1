"""The task registry: what a short training run learns — data, loss, and how it adapts a model.

Three tasks, each a fixed data set that depends only on the model's shapes and `data_seed`
(never on the experiment's seeds, so every scheme and seed trains on the same examples):

- `digits`: scikit-learn's bundled 8×8 handwritten digits (1,797 images, no download),
  10-way classification; an mlp takes the 64 pixels, image models a bilinear resize.
- `teacher`: regression onto a fixed random one-hidden-layer tanh network; its floor is 0.
- `tokens`: next-token prediction on a fixed random sparse Markov chain over the model's
  vocabulary; its floor is the chain's entropy rate, known exactly.

Every draw comes from a generator made here from (data_seed, purpose), so the same arguments
give bit-identical tensors and the global random state is never touched.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from initlab.models import MODELS, normalize_model_spec
from initlab.params import shown

Spec = dict[str, Any]
Shape = tuple[int, ...]

# What make_data may hold at once, in tensor elements (256 MB of float32): the returned data
# plus the transient arrays it needs on the way (the teacher's weights, the Markov chain).
MAX_DATA_ELEMENTS = 64_000_000
DIGITS_COUNT, DIGITS_TRAIN = 1797, 1437  # an 80/20 split
DIGITS_CLASSES = 10
TEACHER_HIDDEN = 64
TEACHER_OUTPUTS = 10  # the mlp's output layer for the teacher, as the image models have
TEACHER_TRAIN, TEACHER_HELDOUT, TEACHER_MIN_HELDOUT = 4096, 1024, 64
TOKENS_TRAIN, TOKENS_HELDOUT, TOKENS_MIN_HELDOUT = 2048, 256, 32
SUCCESSORS = 4  # distinct next tokens of each token: a sparse chain even for a big vocabulary
POWER_ITERATIONS, POWER_TOLERANCE = 10_000, 1e-13


@dataclass(frozen=True)
class TaskData:
    """The fixed training and held-out sets of one task on one model, with the reference
    losses a training curve is read against."""

    train_x: torch.Tensor  # as the model takes it: float32, or int64 token ids
    train_y: torch.Tensor
    heldout_x: torch.Tensor
    heldout_y: torch.Tensor
    floor: float | None  # best achievable held-out loss (None where unknown)
    chance: float  # loss of the best input-independent prediction
    classes: int | None  # classes for accuracy; None for regression


@dataclass(frozen=True)
class Task:
    """One task: the models it suits, its loss, and how it adapts the model and makes data."""

    name: str
    summary: str
    suits: tuple[str, ...]  # zoo model names it takes ("custom" where it can)
    inputs: str  # "float" or "tokens": the input the model must take
    loss: str  # "cross_entropy" (over the last dim) or "mse" (over all elements)
    adapt: Callable[[Spec], tuple[Spec, str | None]]
    data: Callable[[Spec, Shape, dict[str, Any], Shape, int], TaskData]
    counts: Callable[[Spec, Shape, Shape], tuple[int, int]]  # returned elements, working ones


# ---------------------------------------------------------------- seeds and small helpers


def _seed(data_seed: int, purpose: str) -> int:
    """An independent 63-bit seed for one purpose of one task's data."""
    digest = hashlib.sha256(f"initlab-task:{data_seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _torch_rng(data_seed: int, purpose: str) -> torch.Generator:
    return torch.Generator().manual_seed(_seed(data_seed, purpose))


def _numpy_rng(data_seed: int, purpose: str) -> np.random.Generator:
    return np.random.default_rng(_seed(data_seed, purpose))


def _too_big(task: str, what: str, needed: int, fix: str) -> ValueError:
    return ValueError(
        f"training.task: '{task}' on {what} needs {needed:,} tensor elements of data, over the "
        f"bound of {MAX_DATA_ELEMENTS:,}; {fix}"
    )


def _as_given(model: Spec) -> Spec:
    """A zoo spec normalized again; a custom one copied as given (normalizing it would import
    the user's code, which the caller has already been allowed to do or not)."""
    return dict(model) if model["name"] == "custom" else normalize_model_spec(model)


def _widths_text(widths: list[int]) -> str:
    """[64, 256, …, 256, 10] for a long list, the whole list for a short one."""
    if len(widths) <= 5:
        return "[" + ", ".join(map(str, widths)) + "]"
    return f"[{widths[0]}, {widths[1]}, …, {widths[-2]}, {widths[-1]}]"


# ---------------------------------------------------------------- digits


@functools.cache
def _digits_cached() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits, loaded once per process (importing sklearn takes seconds)."""
    from sklearn.datasets import load_digits  # lazily: only a digits run pays for the import

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)
    labels = np.asarray(bunch.target, dtype=np.int64)
    images.setflags(write=False)  # the cache is shared by every caller of this process
    labels.setflags(write=False)
    return images, labels


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Copies of the 1,797 digits: images (1797, 8, 8), pixels 0..16; labels (1797,) 0..9."""
    images, labels = _digits_cached()
    return images.copy(), labels.copy()


def _digits_counts(model: Spec, input_shape: Shape, output_shape: Shape) -> tuple[int, int]:
    pixels = math.prod(input_shape)
    # Image models hold a one-channel copy while resizing, before repeating it per channel.
    working = DIGITS_COUNT * (pixels // input_shape[0]) if len(input_shape) == 3 else 0
    return DIGITS_COUNT * (pixels + 1), working


def _digits_shape(model: Spec, input_shape: Shape, output_shape: Shape) -> None:
    if tuple(output_shape) != (DIGITS_CLASSES,):
        raise ValueError(
            f"training.task: 'digits' needs a 10-way output per sample; model "
            f"'{model['name']}' gives {list(output_shape)}"
        )
    if tuple(input_shape) != (64,) and (len(input_shape) != 3 or input_shape[0] != 3):
        raise ValueError(
            f"training.task: 'digits' feeds 64 pixels or 3×H×W images; model "
            f"'{model['name']}' takes {list(input_shape)} per sample"
        )


def _digits_split(data_seed: int) -> tuple[torch.Tensor, ...]:
    """Pixels / 16 as (N, 1, 8, 8) and labels, split by a fixed permutation: train, held-out."""
    images, labels = digits_arrays()
    order = torch.randperm(len(labels), generator=_torch_rng(data_seed, "digits-split"))
    x = torch.from_numpy(images).unsqueeze(1)[order] / 16.0
    y = torch.from_numpy(labels)[order]
    return x[:DIGITS_TRAIN], y[:DIGITS_TRAIN], x[DIGITS_TRAIN:], y[DIGITS_TRAIN:]


def _digits_pixels(x: torch.Tensor, input_shape: Shape) -> torch.Tensor:
    """(N, 1, 8, 8) as the model takes it: flattened, or resized to H×W (one channel)."""
    if len(input_shape) == 1:
        return x.flatten(1)
    size = tuple(input_shape[1:])
    if size == (8, 8):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _digits_data(
    model: Spec, input_shape: Shape, input_spec: dict[str, Any], output_shape: Shape, seed: int
) -> TaskData:
    _digits_shape(model, input_shape, output_shape)
    needed = sum(_digits_counts(model, input_shape, output_shape))
    if needed > MAX_DATA_ELEMENTS:
        # n (3 s² + 1) returned + n s² while resizing ≤ the bound
        side = math.isqrt((MAX_DATA_ELEMENTS // DIGITS_COUNT - 1) // 4)
        raise _too_big(
            "digits",
            f"model.image_size {input_shape[-1]}",
            needed,
            f"choose model.image_size {side} or less",
        )
    tx, ty, hx, hy = _digits_split(seed)
    tx, hx = _digits_pixels(tx, input_shape), _digits_pixels(hx, input_shape)
    # Scalar statistics of the training set only, so the held-out set is new data to it.
    std, mean = torch.std_mean(tx, correction=0)
    tx, hx = tx.sub_(mean).div_(std), hx.sub_(mean).div_(std)  # in place: fresh tensors
    if len(input_shape) == 3:  # the gray channel, once per input channel
        tx, hx = (z.expand(-1, input_shape[0], -1, -1).contiguous() for z in (tx, hx))
    freq = torch.bincount(ty, minlength=DIGITS_CLASSES).double() / len(ty)
    chance = float(-freq.log()[hy].mean())
    return TaskData(tx, ty, hx, hy, None, chance, DIGITS_CLASSES)


def _digits_adapt(model: Spec) -> tuple[Spec, str | None]:
    """An mlp takes the 64 pixels and ends in a 10-way output layer; image models fit as they
    are (they end in a 10-way Linear already)."""
    spec = _as_given(model)
    if spec["name"] != "mlp":
        return spec, None
    given = spec["widths"] or [spec["width"]] * (spec["depth"] + 1)
    widths = [64, *list(given)[1:-1], DIGITS_CLASSES]
    rest = {k: v for k, v in spec.items() if k not in ("width", "depth", "widths", "head")}
    adapted = normalize_model_spec({**rest, "widths": widths, "head": True})
    if adapted == spec:
        return adapted, None
    return adapted, (
        f"the mlp takes the 64 pixels and ends in a 10-way output layer: widths "
        f"{_widths_text(widths)}, no activation after fc{len(widths) - 1}"
    )


# ---------------------------------------------------------------- teacher


def _teacher_sizes(input_shape: Shape, output_shape: Shape) -> tuple[int, int, int]:
    """(train, held-out, teacher weights): 4,096 / 1,024 samples, fewer for a big sample."""
    d_in, d_out = math.prod(input_shape), math.prod(output_shape)
    weights = TEACHER_HIDDEN * (d_in + d_out)
    room = max(MAX_DATA_ELEMENTS - weights, 0) // (5 * (d_in + d_out))
    heldout = max(min(TEACHER_HELDOUT, room), TEACHER_MIN_HELDOUT)
    return 4 * heldout, heldout, weights


def _teacher_counts(model: Spec, input_shape: Shape, output_shape: Shape) -> tuple[int, int]:
    train, heldout, weights = _teacher_sizes(input_shape, output_shape)
    per_sample = math.prod(input_shape) + math.prod(output_shape)
    return (train + heldout) * per_sample, weights


def _teacher_inputs(
    input_spec: dict[str, Any], count: int, input_shape: Shape, g: torch.Generator
) -> torch.Tensor:
    """`count` samples from the experiment's input distribution (normal or uniform)."""
    x = torch.empty((count, *input_shape))
    if input_spec.get("distribution") == "uniform":
        return x.uniform_(input_spec.get("low", -1.0), input_spec.get("high", 1.0), generator=g)
    return x.normal_(input_spec.get("mean", 0.0), input_spec.get("std", 1.0), generator=g)


def _input_location(input_spec: dict[str, Any]) -> tuple[float, float]:
    """Mean and std of the input distribution, so the teacher sees unit-scale input whatever
    the experiment's scale (its tanh units neither saturate nor stay linear because of it)."""
    if input_spec.get("distribution") == "uniform":
        low, high = input_spec.get("low", -1.0), input_spec.get("high", 1.0)
        return (low + high) / 2, (high - low) / math.sqrt(12)
    return input_spec.get("mean", 0.0), input_spec.get("std", 1.0)


def _teacher_apply(
    x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, where: tuple[float, float]
) -> torch.Tensor:
    """tanh(((x - mean) / std) W1) W2, a bounded chunk of rows at a time (no full copy of x)."""
    mean, std = where
    rows = max(1, 2**20 // max(1, w1.shape[0]))
    out = [torch.tanh(((c.flatten(1) - mean) / std) @ w1) @ w2 for c in x.split(rows)]
    return torch.cat(out)


def _teacher_data(
    model: Spec, input_shape: Shape, input_spec: dict[str, Any], output_shape: Shape, seed: int
) -> TaskData:
    _teacher_checks(model, input_shape, input_spec, output_shape)
    train, heldout, _ = _teacher_sizes(input_shape, output_shape)
    d_in, d_out = math.prod(input_shape), math.prod(output_shape)
    g = _torch_rng(seed, "teacher-weights")
    w1 = torch.randn(d_in, TEACHER_HIDDEN, generator=g) / math.sqrt(d_in)
    w2 = torch.randn(TEACHER_HIDDEN, d_out, generator=g) / math.sqrt(TEACHER_HIDDEN)
    tx = _teacher_inputs(input_spec, train, input_shape, _torch_rng(seed, "teacher-train"))
    hx = _teacher_inputs(input_spec, heldout, input_shape, _torch_rng(seed, "teacher-heldout"))
    where = _input_location(input_spec)
    ty, hy = _teacher_apply(tx, w1, w2, where), _teacher_apply(hx, w1, w2, where)
    scale = ty.std(correction=0)  # targets of unit variance over the training set: chance ≈ 1
    ty, hy = (
        (ty / scale).reshape(train, *output_shape),
        (hy / scale).reshape(heldout, *output_shape),
    )
    chance = float(((hy - ty.mean(0)) ** 2).mean())
    return TaskData(tx, ty, hx, hy, 0.0, chance, None)


def _teacher_checks(
    model: Spec, input_shape: Shape, input_spec: dict[str, Any], output_shape: Shape
) -> None:
    """Float input that varies, and data within the bound."""
    if input_spec.get("distribution") == "tokens" or MODELS[model["name"]].tokens(model):
        raise ValueError(
            "training.task: 'teacher' regresses on float input; input.distribution 'tokens' "
            "gives token ids (try 'tokens')"
        )
    if _input_location(input_spec)[1] <= 0:
        raise ValueError(
            "input.std: 0 gives every sample the same input, so the teacher's targets would "
            "all be equal; the 'teacher' task needs input.std > 0"
        )
    needed = sum(_teacher_counts(model, input_shape, output_shape))
    if needed > MAX_DATA_ELEMENTS:
        raise _too_big(
            "teacher",
            f"input.shape {list(input_shape)} (model '{model['name']}')",
            needed,
            "choose a smaller input per sample",
        )


def _teacher_adapt(model: Spec) -> tuple[Spec, str | None]:
    """An mlp ends in a 10-way output layer, as the image models do: ten targets, and no
    activation after the last Linear, so outputs take any sign. (Regressing onto its 256
    outputs, the mean squared error gives each a 256th of the gradient: at a learning rate
    that trains the rest, the mlp would not move off the mean in a few hundred steps.)"""
    spec = _as_given(model)
    if spec["name"] != "mlp":
        return spec, None
    given = spec["widths"] or [spec["width"]] * (spec["depth"] + 1)
    widths = [*list(given)[:-1], TEACHER_OUTPUTS]
    rest = {k: v for k, v in spec.items() if k not in ("width", "depth", "widths", "head")}
    adapted = normalize_model_spec({**rest, "widths": widths, "head": True})
    if adapted == spec:
        return adapted, None
    return adapted, (
        f"the mlp ends in a {TEACHER_OUTPUTS}-way output layer: widths "
        f"{_widths_text(widths)}, no activation after fc{len(widths) - 1}, so outputs take "
        f"any sign"
    )


# ---------------------------------------------------------------- tokens


def _distinct(rng: np.random.Generator, rows: int, k: int, m: int) -> np.ndarray:
    """(rows, k) values from range(m), distinct within each row, uniformly (k ≤ m): draw the
    j-th from m - j values and step it past the ones already taken, in increasing order."""
    chosen: list[np.ndarray] = []
    for j in range(k):
        r = rng.integers(0, m - j, size=rows)
        for taken in np.sort(np.stack(chosen, 1), 1).T if chosen else []:
            r = r + (r >= taken)
        chosen.append(r)
    return np.stack(chosen, 1) if chosen else np.empty((rows, 0), np.int64)


def markov_chain(vocab: int, data_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random sparse Markov chain over `vocab` tokens: successors (V, b), probs (V, b).

    Each token has b = min(4, V) distinct successors with Dirichlet(1) probabilities. One
    successor of token i is (i + 1) mod V, so every token reaches every other (irreducible);
    token 0 is also its own successor, a cycle of length 1, so the chain is aperiodic. Hence a
    unique stationary distribution, which power iteration converges to.
    """
    if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 1:
        raise ValueError(f"vocab: must be an integer of at least 1; got {shown(vocab)}")
    b, i = min(SUCCESSORS, vocab), np.arange(vocab)
    rng = _numpy_rng(data_seed, "tokens-chain")
    # Offsets d give successors (i + d) mod V: 1 always; the others distinct, from 0 and 2..V-1.
    off = _distinct(rng, vocab, b - 1, vocab - 1)
    offsets = np.concatenate([np.ones((vocab, 1), np.int64), np.where(off == 0, 0, off + 1)], 1)
    if vocab > 1:  # token 0: offsets 1 and 0 (itself), the others from 2..V-1
        rest = _distinct(rng, 1, b - 2, vocab - 2)[0] + 2
        offsets[0] = np.concatenate([[1, 0], rest])
    probs = rng.dirichlet(np.ones(b), size=vocab)
    # A probability that underflowed to 0 would cut the chain; keep every edge positive.
    probs = np.maximum(probs, 1e-12)
    return (i[:, None] + offsets) % vocab, probs / probs.sum(1, keepdims=True)


def _stationary(successors: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """π = π P by power iteration on the sparse rows, in float64."""
    vocab = len(successors)
    flat, pi = successors.ravel(), np.full(vocab, 1.0 / vocab)
    for _ in range(POWER_ITERATIONS):
        new = np.bincount(flat, weights=(pi[:, None] * probs).ravel(), minlength=vocab)
        new /= new.sum()
        if np.abs(new - pi).sum() < POWER_TOLERANCE:
            return new
        pi = new
    raise RuntimeError(
        f"the Markov chain's stationary distribution did not converge in {POWER_ITERATIONS} "
        "iterations"
    )


def entropy_rate(successors: np.ndarray, probs: np.ndarray) -> tuple[float, np.ndarray]:
    """The chain's entropy rate H = -Σ_i π_i Σ_j P_ij ln P_ij (nats) and its stationary π."""
    pi = _stationary(successors, probs)
    row_entropy = -(probs * np.log(probs)).sum(1)
    return float(pi @ row_entropy), pi


def stationary_entropy(pi: np.ndarray) -> float:
    """H(π) in nats: the cross-entropy of always predicting π for tokens drawn from π."""
    nonzero = pi[pi > 0]
    return float(-(nonzero * np.log(nonzero)).sum())


def sample_chain(
    successors: np.ndarray,
    probs: np.ndarray,
    stationary: np.ndarray,
    count: int,
    length: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """`count` sequences of `length` tokens (int64): the first from π, then the chain's steps,
    vectorized over the sequences (one loop over positions)."""
    out = np.empty((length, count), np.int64)  # position-major: each step writes one row
    cdf_pi = np.cumsum(stationary)
    first = np.searchsorted(cdf_pi, rng.random(count) * cdf_pi[-1], side="right")
    out[0] = np.minimum(first, len(cdf_pi) - 1)
    b = probs.shape[1]
    cdf = np.cumsum(probs, 1)
    # Successor k is taken when u falls in [cdf_k-1, cdf_k): count the boundaries u passes.
    bounds = [np.ascontiguousarray(cdf[:, k] / cdf[:, -1]) for k in range(b - 1)]
    flat = successors.ravel()
    for t in range(1, length):
        cur, u = out[t - 1], rng.random(count)
        index = cur * b
        for bound in bounds:
            index += u >= bound[cur]
        out[t] = flat[index]
    return np.ascontiguousarray(out.T)


def _token_shapes(model: Spec, input_shape: Shape, input_spec: dict[str, Any]) -> tuple[int, int]:
    """(vocab, seq_len) of a token model: the zoo's own vocabulary or input.vocab_size."""
    vocab = MODELS[model["name"]].tokens(model) or input_spec.get("vocab_size")
    if not vocab:
        raise ValueError(
            "training.task: 'tokens' needs token input: input.distribution 'tokens' with "
            "input.vocab_size for a custom model"
        )
    if len(input_shape) != 1:
        raise ValueError(
            f"training.task: 'tokens' feeds sequences of token ids, input.shape [seq_len]; "
            f"got {list(input_shape)}"
        )
    return int(vocab), input_shape[0]


def _tokens_sizes(vocab: int, seq_len: int) -> tuple[int, int, int]:
    """(train, held-out, chain elements): 2,048 / 256 sequences, fewer for long ones."""
    chain = 4 * vocab * min(SUCCESSORS, vocab)  # successors, probs and their cumulative sums
    room = max(MAX_DATA_ELEMENTS - chain, 0) // (9 * 2 * seq_len)
    heldout = max(min(TOKENS_HELDOUT, room), TOKENS_MIN_HELDOUT)
    return 8 * heldout, heldout, chain


def _tokens_counts(model: Spec, input_shape: Shape, output_shape: Shape) -> tuple[int, int]:
    vocab = MODELS[model["name"]].tokens(model) or output_shape[-1]
    train, heldout, chain = _tokens_sizes(vocab, input_shape[0])
    return (train + heldout) * 2 * input_shape[0], chain


def _tokens_checks(model: Spec, input_shape: Shape, output_shape: Shape, vocab: int) -> None:
    seq_len = input_shape[0]
    if tuple(output_shape) != (seq_len, vocab):
        raise ValueError(
            f"training.task: 'tokens' needs logits of shape [seq_len, vocab] = "
            f"[{seq_len}, {vocab}] per sample; model '{model['name']}' gives {list(output_shape)}"
        )
    needed = sum(_tokens_counts(model, input_shape, output_shape))
    if needed > MAX_DATA_ELEMENTS:
        raise _too_big(
            "tokens",
            f"seq_len {seq_len} and vocab_size {vocab}",
            needed,
            "choose a smaller model.seq_len or vocab_size (input.shape or input.vocab_size "
            "for a custom model)",
        )


def _tokens_data(
    model: Spec, input_shape: Shape, input_spec: dict[str, Any], output_shape: Shape, seed: int
) -> TaskData:
    vocab, seq_len = _token_shapes(model, input_shape, input_spec)
    _tokens_checks(model, input_shape, output_shape, vocab)
    successors, probs = markov_chain(vocab, seed)
    rate, pi = entropy_rate(successors, probs)
    train, heldout, _ = _tokens_sizes(vocab, seq_len)
    sets = []
    for count, purpose in ((train, "tokens-train"), (heldout, "tokens-heldout")):
        seqs = sample_chain(successors, probs, pi, count, seq_len + 1, _numpy_rng(seed, purpose))
        seqs_t = torch.from_numpy(seqs)
        sets += [seqs_t[:, :-1].contiguous(), seqs_t[:, 1:].contiguous()]
    return TaskData(*sets, rate, stationary_entropy(pi), vocab)


def _tokens_adapt(model: Spec) -> tuple[Spec, str | None]:
    return _as_given(model), None


# ---------------------------------------------------------------- the registry

TASKS: dict[str, Task] = {
    "digits": Task(
        name="digits",
        summary="classify scikit-learn's 8×8 handwritten digits (1,437 train / 360 held out)",
        suits=("mlp", "lenet", "cnn", "resnet"),
        inputs="float",
        loss="cross_entropy",
        adapt=_digits_adapt,
        data=_digits_data,
        counts=_digits_counts,
    ),
    "teacher": Task(
        name="teacher",
        summary="regress onto a fixed random tanh network of the same input (best loss 0)",
        suits=("mlp", "lenet", "cnn", "resnet", "rnn", "custom"),
        inputs="float",
        loss="mse",
        adapt=_teacher_adapt,
        data=_teacher_data,
        counts=_teacher_counts,
    ),
    "tokens": Task(
        name="tokens",
        summary="predict the next token of a random sparse Markov chain (best loss: its "
        "entropy rate)",
        suits=("transformer", "custom"),
        inputs="tokens",
        loss="cross_entropy",
        adapt=_tokens_adapt,
        data=_tokens_data,
        counts=_tokens_counts,
    ),
}


# ---------------------------------------------------------------- the interface


def _takes_tokens(model: Spec, input_spec: dict[str, Any] | None) -> bool | None:
    """Whether the model takes token ids; None for a custom model whose input is not known."""
    if model["name"] == "custom":
        return None if input_spec is None else input_spec.get("distribution") == "tokens"
    return MODELS[model["name"]].tokens(model) is not None


def default_task(model: Spec, input_spec: dict[str, Any] | None = None) -> str:
    """tokens for token models, digits for lenet/cnn/resnet, teacher otherwise."""
    if _takes_tokens(model, input_spec):
        return "tokens"
    return "digits" if model["name"] in ("lenet", "cnn", "resnet") else "teacher"


def check_task(
    name: Any, model: Spec, where: str = "training.task", input_spec: dict[str, Any] | None = None
) -> Task:
    """The task named `name` if it suits the model, else a ValueError naming the choices.

    A custom model suits a task by its input (`input_spec`'s distribution), when given.
    """
    if not isinstance(name, str) or name not in TASKS:
        raise ValueError(f"{where}: unknown task {shown(name)}; choose one of: {', '.join(TASKS)}")
    task, tokens = TASKS[name], _takes_tokens(model, input_spec)
    if _suits(task, model, tokens):
        return task
    takes = "token ids" if tokens else "float input"
    others = [t.name for t in TASKS.values() if _suits(t, model, tokens)]
    hint = f" (try {' or '.join(repr(o) for o in others)})" if others else ""
    raise ValueError(
        f"{where}: '{name}' suits {', '.join(task.suits)}; model '{model['name']}' takes "
        f"{takes}{hint}"
    )


def _suits(task: Task, model: Spec, tokens: bool | None) -> bool:
    return model["name"] in task.suits and (tokens is None or tokens == (task.inputs == "tokens"))


def adapt_model(task: Task, model: Spec) -> tuple[Spec, str | None]:
    """The model spec the task trains (normalized again; a custom spec as given) and one
    sentence saying what changed, or None when nothing did."""
    return task.adapt(model)


def _check_seed(data_seed: Any) -> int:
    if isinstance(data_seed, bool) or not isinstance(data_seed, int) or not 0 <= data_seed < 2**63:
        raise ValueError(
            f"training.data_seed: must be an integer from 0 to 2**63 - 1; got {shown(data_seed)}"
        )
    return data_seed


def make_data(
    task: Task,
    model: Spec,
    input_shape: tuple[int, ...],
    input_spec: dict[str, Any],
    output_shape: tuple[int, ...],
    data_seed: int = 0,
) -> TaskData:
    """The task's fixed training and held-out sets for the (adapted) model.

    `input_shape` and `output_shape` are per sample; `input_spec` is the experiment's input
    dict (its distribution feeds the teacher). Same arguments, bit-identical tensors.
    """
    seed = _check_seed(data_seed)
    given = dict(input_spec or {})
    return task.data(model, tuple(input_shape), given, tuple(output_shape), seed)


def data_elements(
    task: Task, model: Spec, input_shape: tuple[int, ...], output_shape: tuple[int, ...]
) -> int:
    """The tensor elements of the data make_data returns (all four sets), before anything is
    built. Its transient arrays on the way (the teacher's weights, the chain) come on top, and
    make_data refuses when the two together pass MAX_DATA_ELEMENTS."""
    return task.counts(model, tuple(input_shape), tuple(output_shape))[0]


def task_loss(task: Task, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The mean loss: cross-entropy over the last dim (every position), or MSE over all
    elements."""
    if task.loss == "mse":
        if output.shape != target.shape:
            raise ValueError(
                f"task '{task.name}': output shape {list(output.shape)} differs from the "
                f"targets' {list(target.shape)}"
            )
        return F.mse_loss(output, target)
    if output.shape[:-1] != target.shape:
        raise ValueError(
            f"task '{task.name}': output shape {list(output.shape)} does not end in class "
            f"logits for targets of shape {list(target.shape)}"
        )
    return F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))


def task_accuracy(task: Task, output: torch.Tensor, target: torch.Tensor) -> float | None:
    """The fraction of predictions (argmax over the last dim) that hit the target; None for
    regression."""
    if task.loss != "cross_entropy":
        return None
    with torch.no_grad():
        return float((output.argmax(-1) == target).double().mean())
