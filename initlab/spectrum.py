"""The input-output Jacobian's singular values, and the free-probability prediction beside them.

For a few inputs x of the experiment, J = ∂ model(x) / ∂ x (one sample, output and input
flattened) is computed in float64 on a copy of the initialized model in eval mode:
- exactly (torch.func.vmap over jacrev, then numpy's SVD) when J has at most
  MAX_EXACT_ENTRIES = 2**20 entries (1024 × 1024);
- above that, as an *estimate* (`estimate` True): LANCZOS_STEPS steps of Lanczos on JᵀJ
  (matrix-free, one jvp and one vjp per step, full reorthogonalization). Its largest and
  smallest Ritz values estimate λ_max and λ_min (the smallest converges slowest), and PROBES
  Gaussian probes (Hutchinson) estimate mean(λ) and mean(λ²), hence the normalized variance.

λ = s² are the eigenvalues of JJᵀ. Dynamical isometry is all λ near their mean: the normalized
variance var(λ)/mean(λ)² is 0 for an isometry.

Prediction (Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid in deep learning
through dynamical isometry"): in the large-width limit the layers are asymptotically free, so
the normalized variances of the factors of JJᵀ = Π D_l W_l (...)ᵀ add:

    var(λ)/mean(λ)² = Σ_l [ μ2_l/μ1_l² - 1 + v_W ],   μk_l = E[φ'(√q^l z)^{2k}]

with q^l the mean-field trajectory (`initlab.theory`), v_W = 1 for square i.i.d. weights
(Marchenko–Pastur at ratio 1: WWᵀ has mean σ_w², second moment 2σ_w⁴) and v_W = 0 for square
orthogonal ones. At a fixed point this is their L(μ2/μ1² - 1 - s1), s1 = -1 (Gaussian) or 0
(orthogonal); for a linear network it is L (Gaussian) and 0 (orthogonal). It is not available
(`prediction` says why) for a model that is not a Linear → activation chain, layers that are
not square, sparse weights, or zero weights.

Cost: `spectrum_cost` prices the work as the guard prices a probe, by its meta-device pass of
an equivalent batch (`initlab.guard.estimate`), and `spectrum_table` refuses work over the
memory or time budget before building anything (`check_spectrum_budget`). Exact: jacrev's
backward runs once per output element at every input, so it is a batch of inputs × n_out
samples, whose "input" is the Jacobian itself, holding only the layer being differentiated
(the forward-only peak) above the inputs' saved activations. Estimate: LANCZOS_STEPS + PROBES
products JᵀJ v per input, one sample at a time (each priced by its arithmetic or by reading
the weights GRAM_WEIGHT_READS times, whichever is slower), plus the Lanczos basis. All of
it is float64: twice the probe's bytes; its halved arithmetic speed is about what the
probe's own statistics overhead, counted in the guard's seconds, adds.

Tables (`Spectrum`):
- `values` — one row per (scheme, seed, input, index): `scheme, seed, input, index,
  singular_value, estimate` (exact: every singular value, largest first; estimate: two rows,
  the estimated largest and smallest).
- `summary` — one row per (scheme, seed, input): `scheme, seed, input, count, estimate,
  lambda_mean, norm_var, s_max, s_min, predicted_norm_var, prediction`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import jacrev, jvp, vjp, vmap

from initlab import guard, meanfield, theory
from initlab.csvout import write_tables
from initlab.experiment import Experiment, build_initialized, generator, make_input
from initlab.outline import meta_model
from initlab.probe import first_tensor
from initlab.schemes import Scheme, targets

MAX_EXACT_ENTRIES = 2**20  # per input: a 1024 × 1024 Jacobian is computed exactly
LANCZOS_STEPS = 48
PROBES = 16  # Gaussian probes for the estimated moments
MAX_INPUTS = 16
SVD_FLOPS = 4.0  # × m·n·min(m, n): a dense SVD's singular values (Golub–Van Loan's count)
# One JᵀJ v of a single sample is bound by reading the weights, not by arithmetic: measured on
# a 10 × 2048 tanh MLP (2 cores), 0.5-1.0 s a product, 10 to 18 times one float64 forward pass
# at about 6 GB/s.
GRAM_WEIGHT_READS = 16
BYTES_PER_SECOND = 5e9
VALUE_COLUMNS = ["scheme", "seed", "input", "index", "singular_value", "estimate"]
SUMMARY_COLUMNS = [
    *("scheme", "seed", "input", "count", "estimate", "lambda_mean", "norm_var"),
    *("s_max", "s_min", "predicted_norm_var", "prediction"),
]


def _per_sample(model: nn.Module, shape: tuple[int, ...]):
    """x (flat, one sample) ↦ model output (flat): the function J differentiates."""

    def f(x: torch.Tensor) -> torch.Tensor:
        return model(x.reshape(1, *shape)).reshape(-1)

    return f


def float64_copy(model: nn.Module) -> nn.Module:
    """The model as initialized, in float64 and eval mode (a per-sample Jacobian of a
    batch-statistics layer is not defined), leaving the caller's model alone."""
    return copy.deepcopy(model).double().eval()


def exact_singular_values(model: nn.Module, inputs: torch.Tensor) -> list[np.ndarray]:
    """Every singular value of J at each input (largest first), by jacrev and SVD."""
    f = _per_sample(model, tuple(inputs.shape[1:]))
    flat = inputs.reshape(len(inputs), -1)
    with torch.no_grad():
        jacobians = vmap(jacrev(f))(flat)
    return [np.linalg.svd(j.numpy(), compute_uv=False) for j in jacobians]


Gram = Callable[[torch.Tensor], torch.Tensor]


def gram_operator(model: nn.Module, x: torch.Tensor) -> tuple[Gram, int]:
    """v ↦ JᵀJ v at one input (a jvp, then a vjp), and the input's size n."""
    f = _per_sample(model, tuple(x.shape))
    flat = x.reshape(-1)
    _, pullback = vjp(f, flat)

    def gram(v: torch.Tensor) -> torch.Tensor:
        return pullback(jvp(f, (flat,), (v,))[1])[0].detach()

    return gram, flat.numel()


def lanczos(gram: Gram, n: int, steps: int = LANCZOS_STEPS, generator=None) -> np.ndarray:
    """Ritz values (ascending) of the n × n operator `gram` after `steps` Lanczos steps with
    full reorthogonalization, from a Gaussian start vector; the extremes converge first."""
    v = torch.randn(n, generator=generator, dtype=torch.float64)
    basis, alphas, betas = [v / v.norm()], [], []
    for _ in range(min(steps, n)):
        w = gram(basis[-1])
        alphas.append(float(w @ basis[-1]))
        for b in basis:  # full reorthogonalization: no spurious copies of converged values
            w = w - (w @ b) * b
        beta = float(w.norm())
        if len(basis) == n or beta <= 1e-12 * max(abs(a) for a in alphas):
            break  # an invariant subspace: the Ritz values are exact
        betas.append(beta)
        basis.append(w / beta)
    k = len(alphas)
    tri = np.diag(alphas) + np.diag(betas[: k - 1], 1) + np.diag(betas[: k - 1], -1)
    return np.linalg.eigvalsh(tri)


def hutchinson(gram: Gram, n: int, probes: int = PROBES, generator=None) -> tuple[float, float]:
    """Estimates of mean(λ) = tr(JᵀJ)/n and mean(λ²) = tr((JᵀJ)²)/n from Gaussian probes v
    (E[vᵀAv] = tr A, E[|Av|²] = tr A²)."""
    first = second = 0.0
    for _ in range(probes):
        v = torch.randn(n, generator=generator, dtype=torch.float64)
        w = gram(v)
        first, second = first + float(v @ w), second + float(w @ w)
    return first / (probes * n), second / (probes * n)


def moments(lams: np.ndarray) -> tuple[float, float]:
    """mean(λ) and var(λ)/mean(λ)² (NaN at a zero mean)."""
    mean = float(np.mean(lams))
    return mean, float(np.var(lams) / mean**2) if mean > 0 else math.nan


def jacobian_spectrum(
    model: nn.Module,
    inputs: torch.Tensor,
    probes: torch.Generator | None = None,
    max_entries: int = MAX_EXACT_ENTRIES,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The `values` and `summary` rows (without scheme and seed) of any model at a batch of
    inputs: exact up to `max_entries` Jacobian entries per input, a Lanczos estimate above
    (its random vectors from `probes`, a generator independent of the weights' stream)."""
    model, inputs = float64_copy(model), inputs.double()
    with torch.no_grad():
        n_out = model(inputs[:1]).numel()
    if n_out * inputs[0].numel() <= max_entries:
        found = [(s, False) for s in exact_singular_values(model, inputs)]
    else:
        found = [(_estimated(model, x, probes), True) for x in inputs]
    values = pd.concat([_value_rows(i, s, est) for i, (s, est) in enumerate(found)])
    summary = pd.DataFrame([_summary_row(i, s, est) for i, (s, est) in enumerate(found)])
    return values.reset_index(drop=True), summary


def _estimated(model: nn.Module, x: torch.Tensor, generator) -> dict:
    gram, n = gram_operator(model, x)
    ritz = lanczos(gram, n, generator=generator)
    mean, second = hutchinson(gram, n, generator=generator)
    top, bottom = (math.sqrt(max(float(r), 0.0)) for r in (ritz[-1], ritz[0]))
    norm_var = (second - mean**2) / mean**2 if mean > 0 else math.nan
    return {"s": np.array([top, bottom]), "mean": mean, "norm_var": norm_var, "count": n}


def _value_rows(i: int, found, estimate: bool) -> pd.DataFrame:
    s = found["s"] if estimate else found
    return pd.DataFrame(
        {"input": i, "index": np.arange(len(s)), "singular_value": s, "estimate": estimate}
    )


def _summary_row(i: int, found, estimate: bool) -> dict:
    if estimate:
        s, mean, norm_var, count = found["s"], found["mean"], found["norm_var"], found["count"]
    else:
        s, count = found, len(found)
        mean, norm_var = moments(found**2)
    row = {"input": i, "count": count, "estimate": estimate, "lambda_mean": mean}
    return row | {"norm_var": norm_var, "s_max": float(s[0]), "s_min": float(s[-1])}


# ---------------------------------------------------------------- the prediction

IID = tuple(m for m in theory.ZERO_MEAN_IID if m not in ("zeros", "constant"))


def predicted_norm_var(chain: list[theory.Layer], methods: list[str], x2: float) -> float | str:
    """Σ_l [μ2_l/μ1_l² - 1 + v_W] along the mean-field trajectory, or why it is not available.

    `methods` is each layer's weight method (the Jacobian does not depend on the biases, but
    the trajectory q^l does, and with it the D_l factors).
    """
    for layer, method in zip(chain, methods, strict=True):
        if layer.fan_in != layer.fan_out:
            return f"{layer.name} is not square ({layer.fan_out} × {layer.fan_in})"
        if method not in (*IID, "orthogonal") or layer.sigma_w2 == 0:
            return f"{layer.name}: no free-probability law for {method} weights here"
    total = 0.0
    for layer, method, q in zip(chain, methods, theory.forward(chain, x2), strict=True):
        if layer.activation is not None and layer.activation.name != "identity":
            mu1 = meanfield.derivative_moment(layer.activation, q, 2)
            mu2 = meanfield.derivative_moment(layer.activation, q, 4)
            total += mu2 / mu1**2 - 1 if mu1 > 0 else math.inf
        total += 0.0 if method == "orthogonal" else 1.0
    return total


def scheme_prediction(exp: Experiment, model: nn.Module, scheme: Scheme) -> tuple[float, str]:
    """The predicted normalized variance for one scheme and the words that go with it."""
    chain, x2 = theory.linear_chain(model), theory.input_second_moment(exp)
    if isinstance(chain, str) or isinstance(x2, str):
        return math.nan, f"not available: {chain if isinstance(chain, str) else x2}"
    try:
        filled, _ = theory.with_sigmas(chain, model, scheme)
    except ValueError as exc:
        return math.nan, f"not available: {exc}"
    found = {t.param: t.spec.method for t in targets(model, scheme)}
    value = predicted_norm_var(filled, [found[f"{x.name}.weight"] for x in filled], x2)
    if isinstance(value, str):
        return math.nan, f"not available: {value}"
    return value, "free probability, large-width limit (Pennington et al. 2017)"


@dataclass
class Spectrum:
    """The spectrum tables (columns in the module docstring)."""

    values: pd.DataFrame
    summary: pd.DataFrame

    def write_csv(self, folder: str | Path) -> list[Path]:
        """spectrum.csv (the singular values) and spectrum_summary.csv."""
        return write_tables(folder, {"spectrum": self.values, "spectrum_summary": self.summary})


# ---------------------------------------------------------------- the cost


def jacobian_size(exp: Experiment) -> tuple[int, int]:
    """(n_out, n_in) of one sample's Jacobian, from a meta-device forward pass."""
    model = meta_model(exp.model, allow_custom=True).eval()  # float64_copy's mode
    x = guard.meta_input(exp)[:1]
    with torch.no_grad(), guard.ShapePass():
        out = model(x)
    return first_tensor(out).numel(), x.numel()


def _as_batch(exp: Experiment, batch: int, backward: bool) -> guard.Estimate:
    """The guard's estimate of the experiment's probe on a batch of `batch` samples, in eval
    mode (model_copy: the batch may exceed input.batch_size's bound; only its shape is used)."""
    sized = exp.model_copy(
        update={"input": exp.input.model_copy(update={"batch_size": batch}), "mode": "eval"}
    )
    return guard.estimate(sized.model_copy(update={"backward": backward}))


def spectrum_cost(
    exp: Experiment, inputs: int = 3, size: tuple[int, int] | None = None
) -> guard.Estimate:
    """Bytes at the peak (one (scheme, seed) at a time) and seconds in all of
    `spectrum_table(exp, inputs)`, priced as in the module docstring; `size`: the Jacobian's
    (n_out, n_in) when the caller has it."""
    n_out, n_in = size or jacobian_size(exp)
    inputs = min(inputs, exp.input.batch_size)  # the input has no more samples than that
    if n_out * n_in <= MAX_EXACT_ENTRIES:
        timed = _as_batch(exp, inputs * n_out, backward=True)
        wide = _as_batch(exp, inputs * n_out, backward=False)
        saved = _as_batch(exp, inputs, backward=True).activation_bytes
        peak = 2 * (wide.peak_bytes + saved) + wide.param_bytes  # + the float32 original
        svd = SVD_FLOPS * n_out * n_in * min(n_out, n_in) * inputs / guard.FLOPS_PER_SECOND
        seconds = timed.seconds + timed.runs * svd
    else:
        timed = _as_batch(exp, 1, backward=True)
        peak = 2 * timed.peak_bytes + timed.param_bytes + 8 * (LANCZOS_STEPS + 1) * n_in
        reads = GRAM_WEIGHT_READS * 2 * timed.param_bytes / BYTES_PER_SECOND
        per_product = max(timed.seconds / timed.runs, reads)
        seconds = timed.runs * inputs * (LANCZOS_STEPS + PROBES) * per_product
    activations = peak - 3 * timed.param_bytes  # the float64 copy's parameters and the original
    return guard.Estimate(timed.param_bytes, activations, peak, seconds, timed.runs)


def check_spectrum_budget(exp: Experiment, inputs: int = 3) -> guard.Estimate:
    """Raise ValueError if `spectrum_table(exp, inputs)` would exceed the guard's memory or
    time budget, naming the Jacobian's size and the limit; else the estimate."""
    n_out, n_in = jacobian_size(exp)
    est = spectrum_cost(exp, inputs, (n_out, n_in))
    how = "exact" if n_out * n_in <= MAX_EXACT_ENTRIES else "Lanczos estimate"
    work = (
        f"a {n_out} × {n_in} Jacobian ({how}) at each of {inputs} inputs, for {est.runs} runs "
        "(seeds × schemes)"
    )
    budget, source = guard.memory_budget()
    if est.peak_bytes > budget:
        raise ValueError(
            f"spectrum too large: about {_megabytes(est.peak_bytes)} at its peak for {work}, "
            f"over the budget of {_megabytes(budget)} ({source}); use a smaller model"
        )
    limit, source = guard.time_budget()
    if est.seconds > limit:
        raise ValueError(
            f"spectrum too slow: about {est.seconds:.3g} s estimated for {work}, over the "
            f"budget of {limit:.3g} s ({source}); use fewer inputs, seeds or schemes, or a "
            "smaller model"
        )
    return est


def _megabytes(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def spectrum_table(exp: Experiment, inputs: int = 3) -> Spectrum:
    """The Jacobian's spectrum at the first `inputs` samples of each seed's input, for every
    (scheme, seed), with the prediction beside each summary row; refused (ValueError) above
    the guard's budget before anything is built."""
    if not 1 <= inputs <= MAX_INPUTS:
        raise ValueError(f"inputs: must be from 1 to {MAX_INPUTS}; got {inputs!r}")
    if exp.input_variance() is None:
        raise ValueError("input: token ids have no Jacobian; the spectrum needs a real input")
    check_spectrum_budget(exp, inputs)  # before any model is built
    outline = meta_model(exp.model, allow_custom=True)  # validation checked the permission
    values, summaries = [], []
    for seed in exp.seeds:
        x = make_input(exp, seed)[:inputs]
        for scheme in exp.schemes:
            model, _ = build_initialized(exp, scheme, seed)
            # The estimate's probes get their own stream: drawn from the weights' stream they
            # would be the weights' rows, and tr(JᵀJ) would come out badly biased.
            g = generator(seed, "spectrum")
            v, s = jacobian_spectrum(model, x, g)
            predicted, words = scheme_prediction(exp, outline, scheme)
            tags = {"scheme": scheme.name, "seed": seed}
            values.append(v.assign(**tags))
            summaries.append(s.assign(**tags, predicted_norm_var=predicted, prediction=words))
    return Spectrum(
        pd.concat(values, ignore_index=True)[VALUE_COLUMNS],
        pd.concat(summaries, ignore_index=True)[SUMMARY_COLUMNS],
    )
