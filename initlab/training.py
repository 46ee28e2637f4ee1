"""Short training runs per (scheme, seed), side by side, with the network's statistics over the
steps.

Fair by construction: for a given seed every scheme gets a model built from the same stream,
the same batches in the same order (drawn from the seed's own 'batches' stream, never from
the scheme) and the same held-out set; only the initialization differs. All runs advance in
lockstep, step by step, so a stopped training leaves every scheme at the same step.

At the `record_at` steps the probe measures every layer on a fixed probe batch (the first
held-out samples, a training batch's worth) with the task's own loss as the backward, and the
step's update is compared with the weights it changes (std of the update ÷ std of the weight,
per parameter).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from initlab.csvout import write_tables
from initlab.experiment import (
    LSUV_OUT,
    Experiment,
    generator,
    initialized,
    resolve_device,
    validate_against_model,
)
from initlab.guard import ShapePass, estimate, memory_budget, meta_input, time_budget
from initlab.outline import meta_model
from initlab.probe import LAYER_COLUMNS, first_tensor, probe, without_dropout
from initlab.schemes import Scheme, uses_data
from initlab.stats import summarize
from initlab.tasks import (
    Task,
    TaskData,
    adapt_model,
    check_task,
    data_elements,
    default_task,
    make_data,
    task_accuracy,
    task_loss,
)
from initlab.training_spec import TrainingSpec

Progress = Callable[[float, str], None]
TRAINING_COLUMNS = ["scheme", "seed", "step", "split", "loss", "accuracy", "batch"]
LAYERS_COLUMNS = ["scheme", "seed", "step", *LAYER_COLUMNS]
PARAMS_COLUMNS = [
    "scheme",
    "seed",
    "step",
    "param",
    "layer",
    "ndim",
    "grad_norm",
    "weight_std",
    "update_std",
    "update_ratio",
]
RUNS_COLUMNS = ["scheme", "seed", "status", "steps", "diverged_at", "final_loss"]
EVAL_CHUNK = 1024  # held-out samples per forward pass
# The fixed probe batch: the first held-out samples, as many as a training batch (at most
# this many), so a recorded step measures what one step of the run sees.
PROBE_BATCH = 256
OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


@dataclass
class TrainingResults:
    """The tidy tables of a training run (DESIGN.md, *Results columns*) and what frames them."""

    training: pd.DataFrame  # TRAINING_COLUMNS: a row per (scheme, seed, step, split)
    layers: pd.DataFrame  # LAYERS_COLUMNS: the probe's row per layer at each record step
    params: pd.DataFrame  # PARAMS_COLUMNS: gradient norm and update ratio per parameter
    runs: pd.DataFrame  # RUNS_COLUMNS: finished, diverged at step k, or stopped
    task: str = ""
    floor: float | None = None  # best achievable held-out loss (tokens: the entropy rate)
    chance: float = math.nan  # the best input-independent prediction's held-out loss
    note: str | None = None  # how the task adapted the model, in words
    steps: int = 0
    # scheme, seed, LSUV_COLUMNS: the LSUV passes on each run's first batch (none without lsuv)
    lsuv: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=LSUV_OUT))

    def write_csv(self, folder: str | Path) -> list[Path]:
        """training*.csv; training_lsuv.csv when a scheme uses LSUV."""
        tables = {"training": self.training, "training_layers": self.layers}
        tables |= {"training_params": self.params, "training_runs": self.runs}
        tables |= {"training_lsuv": self.lsuv} if len(self.lsuv) else {}
        return write_tables(folder, tables)


# ---------------------------------------------------------------- what is trained


def training_of(exp: Experiment) -> TrainingSpec:
    return exp.training if exp.training is not None else TrainingSpec()


def task_of(exp: Experiment) -> Task:
    spec, inputs = training_of(exp), exp.input.model_dump()
    return check_task(spec.task or default_task(exp.model, inputs), exp.model, input_spec=inputs)


def trained_experiment(exp: Experiment) -> tuple[Experiment, str | None]:
    """The experiment as trained: its model adapted by the task (a 10-way output layer on the
    mlp for digits, ...), validated again, and the sentence that says what changed."""
    model, note = adapt_model(task_of(exp), exp.model)
    return exp.model_copy(update={"model": model}), note


def output_shape(exp: Experiment) -> tuple[int, ...]:
    """The model's per-sample output shape, from a forward pass on the meta device."""
    model = meta_model(exp.model, allow_custom=True)
    x = meta_input(exp.model_copy(update={"input": exp.input.model_copy(update={"batch_size": 2})}))
    with torch.no_grad(), ShapePass():
        out = first_tensor(model(x))
    if out is None:
        raise ValueError("model: its output has no floating-point tensor to train")
    return tuple(out.shape[1:])


# ---------------------------------------------------------------- the guard


def check_training_budget(exp: Experiment, task: Task, out_shape: tuple[int, ...]) -> None:
    """Refuse, before anything is built, a training run over the memory or time budget."""
    spec = training_of(exp)
    batch = exp.model_copy(
        update={"input": exp.input.model_copy(update={"batch_size": spec.batch_size})}
    )
    try:
        one = estimate(batch)  # one probed forward + backward per (scheme, seed)
    except ValueError as exc:
        raise ValueError(str(exc).replace("input.batch_size", "training.batch_size")) from None
    # Every run is alive at once (lockstep): weights, gradients and two optimizer moments each.
    data = data_elements(task, exp.model, exp.input_shape(), out_shape) * 4
    peak = one.peak_bytes + one.runs * one.param_bytes * 4 + data
    budget, source = memory_budget()
    if peak > budget:
        raise ValueError(
            f"training too large: about {peak / 2**20:.0f} MB at its peak for {one.runs} runs "
            f"(seeds × schemes) held at once, over the budget of {budget / 2**20:.0f} MB "
            f"({source}); use fewer seeds or schemes, a smaller training.batch_size or model"
        )
    # LSUV's passes come once per run, before the first step: not once per step.
    _check_training_time(spec, one.seconds - one.lsuv_seconds, one.runs, one.lsuv_seconds)


def _check_training_time(
    spec: TrainingSpec, probe_seconds: float, runs: int, once: float = 0.0
) -> None:
    # A training step is a bare forward + backward + update, cheaper than a probed pass; the
    # probed passes at record steps and the held-out evaluations come on top.
    passes = spec.steps * 0.6 + len(spec.records()) + len(spec.evaluations()) * 0.5
    seconds = probe_seconds * passes + once
    limit, source = time_budget()
    if seconds > limit:
        raise ValueError(
            f"training too slow: about {seconds:.0f} s estimated for {spec.steps} steps × "
            f"{runs} runs (seeds × schemes), over the budget of {limit:.0f} s ({source}); "
            f"use fewer training.steps, seeds or schemes, or a smaller training.batch_size"
        )


# ---------------------------------------------------------------- one run


class BatchOrder:
    """The training set's indices in the seed's own order: a fresh permutation per epoch,
    drawn from the seed's 'batches' stream, so every scheme of a seed sees the same batches."""

    def __init__(self, seed: int, size: int) -> None:
        self.generator = generator(seed, "batches")
        self.size = size
        self.pending = torch.empty(0, dtype=torch.long)

    def next(self, batch: int) -> torch.Tensor:
        while self.pending.numel() < batch:
            epoch = torch.randperm(self.size, generator=self.generator)
            self.pending = torch.cat([self.pending, epoch])
        out, self.pending = self.pending[:batch], self.pending[batch:]
        return out


def checksum(indices: torch.Tensor) -> int:
    """A 56-bit fingerprint of a batch's indices (fits a CSV integer column exactly)."""
    digest = hashlib.blake2b(indices.numpy().tobytes(), digest_size=7).digest()
    return int.from_bytes(digest, "little")


@dataclass
class Run:
    """One (scheme, seed): its model, optimizer and batch order, and how far it got."""

    scheme: Scheme
    seed: int
    model: nn.Module
    optimizer: torch.optim.Optimizer
    order: BatchOrder
    status: str = "running"
    steps: int = 0
    diverged_at: int | None = None
    final_loss: float = math.nan


def make_optimizer(spec: TrainingSpec, model: nn.Module) -> torch.optim.Optimizer:
    settings = spec.optimizer.settings()
    return OPTIMIZERS[spec.optimizer.name](model.parameters(), **settings)


# ---------------------------------------------------------------- the trainer


@dataclass
class Tables:
    """Rows as they are measured; turned into DataFrames only when results are asked for."""

    training: list[tuple] = field(default_factory=list)
    layers: list[pd.DataFrame] = field(default_factory=list)
    params: list[tuple] = field(default_factory=list)


class Trainer:
    """Every (scheme, seed) of an experiment trained in lockstep; `results()` may be called
    from another thread while `run` goes on (the app draws the curves as they grow)."""

    def __init__(self, exp: Experiment) -> None:
        validate_against_model(exp)
        self.task = task_of(exp)
        self.exp, self.note = trained_experiment(exp)
        self.spec = training_of(exp)
        out_shape = output_shape(self.exp)
        check_training_budget(self.exp, self.task, out_shape)
        self.device = resolve_device(exp.device)
        self.data = self._data(out_shape)
        self.lsuv: list[pd.DataFrame] = []  # each run's LSUV log, kept by _start
        self.runs = [self._start(scheme, seed) for seed in exp.seeds for scheme in exp.schemes]
        self.tables = Tables()
        self.lock = threading.Lock()
        self.step = 0

    def _data(self, out_shape: tuple[int, ...]) -> TaskData:
        data = make_data(
            self.task,
            self.exp.model,
            self.exp.input_shape(),
            self.exp.input.model_dump(),
            out_shape,
        )
        to = self.device
        return TaskData(
            data.train_x.to(to),
            data.train_y.to(to),
            data.heldout_x.to(to),
            data.heldout_y.to(to),
            data.floor,
            data.chance,
            data.classes,
        )

    def _start(self, scheme: Scheme, seed: int) -> Run:
        model, done = initialized(self.exp, scheme, seed, self._first_batch(scheme, seed), True)
        if len(done.lsuv):
            self.lsuv.append(done.lsuv.assign(scheme=scheme.name, seed=seed)[LSUV_OUT])
        model.to(self.device)
        order = BatchOrder(seed, self.data.train_x.shape[0])
        return Run(scheme, seed, model, make_optimizer(self.spec, model), order)

    def _first_batch(self, scheme: Scheme, seed: int) -> torch.Tensor | None:
        """What LSUV rescales on: the run's first training batch (a fresh order of the seed
        draws the same one), on the CPU where the model is initialized."""
        if not uses_data(scheme):
            return None
        first = BatchOrder(seed, self.data.train_x.shape[0]).next(self.spec.batch_size)
        return self.data.train_x[first.to(self.data.train_x.device)].cpu()

    def run(self, progress: Progress | None = None, stop: Callable[[], bool] | None = None) -> None:
        """Train every run to the last step, or until `stop()` answers True."""
        records, evals = set(self.spec.records()), set(self.spec.evaluations())
        for step in range(self.spec.steps + 1):
            if stop is not None and stop():
                self._finish("stopped")
                return
            for run in self.runs:
                if run.status == "running":
                    self._advance(run, step, step in records, step in evals)
            with self.lock:
                self.step = step
            if progress is not None:
                progress(step / self.spec.steps, f"step {step} of {self.spec.steps}")
        self._finish("finished")

    def _finish(self, status: str) -> None:
        with self.lock:
            for run in self.runs:
                if run.status == "running":
                    run.status = status

    def _advance(self, run: Run, step: int, record: bool, evaluate: bool) -> None:
        with without_dropout(run.model, off=not self.exp.dropout):
            if record:
                self._record_layers(run, step)
            if evaluate:
                self._evaluate(run, step)
            if step < self.spec.steps:
                self._update(run, step, record)

    # ------------------------------------------------------------ measuring

    def _record_layers(self, run: Run, step: int) -> None:
        n = min(PROBE_BATCH, self.spec.batch_size, self.data.heldout_x.shape[0])
        x, y = self.data.heldout_x[:n], self.data.heldout_y[:n]

        def loss(out: torch.Tensor) -> torch.Tensor:
            return task_loss(self.task, out, y)

        train = self.exp.mode == "train"
        result = probe(run.model, x, True, None, self.exp.bins, train=train, loss=loss)
        frame = result.layers.assign(scheme=run.scheme.name, seed=run.seed, step=step)
        with self.lock:
            self.tables.layers.append(frame[LAYERS_COLUMNS])

    @torch.no_grad()
    def _evaluate(self, run: Run, step: int) -> None:
        was_training = run.model.training
        run.model.eval()
        total, correct, weight = 0.0, 0.0, 0
        for start in range(0, self.data.heldout_x.shape[0], EVAL_CHUNK):
            x = self.data.heldout_x[start : start + EVAL_CHUNK]
            y = self.data.heldout_y[start : start + EVAL_CHUNK]
            out = first_tensor(run.model(x))
            total += task_loss(self.task, out, y).item() * y.numel()
            acc = task_accuracy(self.task, out, y)
            correct += (acc if acc is not None else math.nan) * y.numel()
            weight += y.numel()
        run.model.train(was_training)
        loss, accuracy = total / weight, correct / weight
        run.final_loss = loss
        self._row(run, step, "heldout", loss, accuracy, -1)

    def _row(self, run: Run, step: int, split: str, loss: float, acc: float, batch: int) -> None:
        with self.lock:
            self.tables.training.append((run.scheme.name, run.seed, step, split, loss, acc, batch))

    # ------------------------------------------------------------ one update

    def _update(self, run: Run, step: int, record: bool) -> None:
        indices = run.order.next(self.spec.batch_size)
        x, y = (
            self.data.train_x[indices.to(self.device)],
            self.data.train_y[indices.to(self.device)],
        )
        run.model.train()
        out = first_tensor(run.model(x))
        loss = task_loss(self.task, out, y)
        value = loss.item()
        if not math.isfinite(value):
            self._row(run, step, "train", value, math.nan, checksum(indices))
            self._diverged(run, step)
            return
        acc = task_accuracy(self.task, out.detach(), y)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        before = self._snapshot(run) if record else None
        run.optimizer.step()
        run.steps = step + 1
        self._row(run, step, "train", value, math.nan if acc is None else acc, checksum(indices))
        if before is not None:
            self._record_params(run, step, before)

    def _diverged(self, run: Run, step: int) -> None:
        with self.lock:
            run.status, run.diverged_at, run.final_loss = "diverged", step, math.nan

    def _snapshot(self, run: Run) -> dict[str, tuple[torch.Tensor, float]]:
        """Each parameter before the update, with its gradient's norm."""
        out = {}
        for name, p in run.model.named_parameters():
            norm = p.grad.double().norm().item() if p.grad is not None else math.nan
            out[name] = (p.detach().clone(), norm)
        return out

    def _record_params(self, run: Run, step: int, before: dict) -> None:
        rows = []
        for name, p in run.model.named_parameters():
            old, grad_norm = before[name]
            weight_std = summarize(old).std
            update_std = summarize(p.detach() - old).std
            ratio = update_std / weight_std if weight_std > 0 else math.nan
            layer = name.rpartition(".")[0]
            rows.append((name, layer, p.dim(), grad_norm, weight_std, update_std, ratio))
        with self.lock:
            key = (run.scheme.name, run.seed, step)
            self.tables.params.extend((*key, *row) for row in rows)

    # ------------------------------------------------------------ results

    def results(self) -> TrainingResults:
        """The tables so far, as fresh DataFrames (safe to hand to another thread)."""
        with self.lock:
            training = pd.DataFrame(self.tables.training, columns=TRAINING_COLUMNS)
            layers = _concat(self.tables.layers, LAYERS_COLUMNS)
            params = pd.DataFrame(self.tables.params, columns=PARAMS_COLUMNS)
            runs = pd.DataFrame([_run_row(r) for r in self.runs], columns=RUNS_COLUMNS)
        lsuv = _concat(self.lsuv, LSUV_OUT)  # written once, before the first step
        return TrainingResults(
            training,
            layers,
            params,
            runs,
            task=self.task.name,
            floor=self.data.floor,
            chance=self.data.chance,
            note=self.note,
            steps=self.spec.steps,
            lsuv=lsuv,
        )


def _run_row(run: Run) -> tuple[Any, ...]:
    diverged = math.nan if run.diverged_at is None else run.diverged_at
    return (run.scheme.name, run.seed, run.status, run.steps, diverged, run.final_loss)


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def train(
    exp: Experiment, progress: Progress | None = None, stop: Callable[[], bool] | None = None
) -> TrainingResults:
    """Train every (scheme, seed) of `exp` as its `training` section says (defaults when it
    has none); return the training tables. Refused before anything runs if over budget."""
    trainer = Trainer(exp)
    trainer.run(progress, stop)
    return trainer.results()
