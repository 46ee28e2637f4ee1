"""Sweeps: a grid of experiments over dotted paths into the experiment, run on one core, a
local process pool or a Ray cluster, with the same numbers bit for bit whichever ran them.

A sweep file is a base experiment plus `axes`, each a dotted path (list indices as numbers)
with a list of values, `{"linspace": [a, b, n]}` or `{"logspace": [a, b, n]}` (10**a to 10**b):

    {"base": {...an experiment...},
     "axes": {"model.depth": [10, 20, 50],
              "schemes.0.rules.0.weight.std": {"logspace": [-3, 0, 13]},
              "seeds": [0, 1]}}

The grid is every combination (the first axis varies slowest). It is validated as a whole
before anything runs: every cell's experiment is checked (a refused cell names its
coordinates) and the guard estimates the whole grid. A cell is a pure function of its
experiment (`initlab.run`, on one thread, so a pool, Ray and this process agree bit for bit);
each finished cell is one file in the output folder, named by a hash of its experiment, so an
interrupted sweep resumes without redoing finished cells.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from initlab.csvout import write_csv
from initlab.experiment import LAYERS_OUT, Experiment, InputSpec, run
from initlab.guard import TIME_ENV, check_budget, env_number, time_budget
from initlab.models import MODELS
from initlab.outline import meta_model
from initlab.params import shown
from initlab.reading import parse_json, read_bounded
from initlab.schemes import validate_scheme

MAX_AXES = 6
MAX_VALUES = 1000  # per axis
MAX_CELLS = 4096  # every cell is validated and estimated before anything runs
MAX_PATH_CHARS = 200
SWEEP_TIME_ENV = "INITLAB_SWEEP_TIME_BUDGET_S"
CELLS_DIR = "cells"
EXECUTORS = ("sequential", "pool", "ray")
# Derived per (cell, scheme, seed): the mean-field σ_w² (a weight's variance times its fan-in)
# and σ_b² (a bias's variance), as the scheme set them, so a phase diagram can use them.
DERIVED = ["sigma_w2", "sigma_b2"]
Progress = Callable[[int, int, "float | None"], None]  # cells done, total, seconds left
Stop = Callable[[], bool]  # asked after each finished cell: True ends the sweep there


@dataclass(frozen=True)
class Cell:
    """One point of the grid: its index, its coordinates (path -> value) and experiment."""

    index: int
    coords: dict[str, Any]
    experiment: Experiment
    key: str  # sha256 of the experiment's canonical JSON

    def words(self) -> str:
        return cell_words(self.index, self.coords)


def cell_words(index: int, coords: dict[str, Any]) -> str:
    """How messages name a cell: its index and coordinates."""
    where = ", ".join(f"{path}={shown(value)}" for path, value in coords.items())
    return f"cell {index} ({where})"


@dataclass(frozen=True)
class Sweep:
    """A validated sweep. Build it with `from_dict` / `from_json`."""

    base: dict[str, Any]
    axes: dict[str, tuple[Any, ...]]
    cells: tuple[Cell, ...]
    seconds: float  # the guard's estimate, summed over cells (compute, whatever the executor)

    @classmethod
    def from_dict(
        cls, d: Any, allow_custom: bool | None = None, max_cells: int = MAX_CELLS
    ) -> Sweep:
        """Validate a sweep dict as a whole; any problem is one ValueError naming it. A grid of
        more than `max_cells` is refused before any cell is built (a page sets a lower cap)."""
        if not isinstance(d, dict) or set(d) - {"base", "axes"} or "base" not in d:
            raise ValueError('a sweep must be a JSON object {"base": experiment, "axes": {...}}')
        base = _normalized_base(d["base"], allow_custom)
        axes = _parse_axes(d.get("axes"), base, min(max_cells, MAX_CELLS))
        cells = tuple(_cells(base, axes, allow_custom))
        return cls(base, axes, cells, _check_grid_budget(cells))

    @classmethod
    def from_json(cls, source: str | Path, allow_custom: bool | None = None) -> Sweep:
        path = Path(source)
        if path.is_dir():
            raise ValueError(f"{path}: a folder, not a sweep file")
        text = read_bounded(path).decode("utf-8", errors="replace")
        return cls.from_dict(parse_json(text, str(path)), allow_custom)

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "axes": {k: list(v) for k, v in self.axes.items()}}


@dataclass
class SweepResults:
    """`table`: a row per (cell, scheme, seed, layer): `cell`, the axes, the probe's layers
    columns, sigma_w2 and sigma_b2. `failed`: a row per failed cell (cell, coordinates, error).
    `ran`: cells run by this call; `reused`: finished cells read back from the output folder;
    `stopped`: the sweep was stopped before every cell had run (the table has those that did)."""

    table: pd.DataFrame
    failed: pd.DataFrame
    ran: int = 0
    reused: int = 0
    paths: list[Path] = field(default_factory=list)
    stopped: bool = False


# ---------------------------------------------------------------- the sweep file


def _normalized_base(base: Any, allow_custom: bool | None) -> dict[str, Any]:
    """The base with every default filled in, so a path may name a field the file left out."""
    try:
        exp = Experiment.from_dict(base, allow_custom)
    except ValueError as exc:
        raise ValueError(f"base: {exc}") from None
    if exp.training is not None:
        raise ValueError(
            "base.training: a sweep runs each cell's probe (initlab.run); remove the training "
            "section"
        )
    return exp.to_dict()


def _parse_axes(axes: Any, base: dict[str, Any], max_cells: int) -> dict[str, tuple[Any, ...]]:
    if not isinstance(axes, dict) or not axes:
        raise ValueError('axes: must map dotted paths to values, e.g. {"model.depth": [10, 20]}')
    if len(axes) > MAX_AXES:
        raise ValueError(f"axes: at most {MAX_AXES} axes; got {len(axes)}")
    parsed = {}
    for path, spec in axes.items():
        _check_path(base, path)
        parsed[path] = axis_values(path, spec)
    cells = math.prod(len(v) for v in parsed.values())
    if cells > max_cells:
        sizes = " × ".join(str(len(v)) for v in parsed.values())
        raise ValueError(f"axes: {sizes} = {cells} cells; a sweep has at most {max_cells}")
    return parsed


def axis_values(path: str, spec: Any) -> tuple[Any, ...]:
    """A list as it is; linspace / logspace as numpy computes them (as Python floats)."""
    if isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in ("linspace", "logspace"):
        kind, args = next(iter(spec.items()))
        ok = isinstance(args, list) and len(args) == 3 and all(_number(a) for a in args[:2])
        if not ok or not isinstance(args[2], int) or isinstance(args[2], bool):
            raise ValueError(f"axes.{path}.{kind}: must be [start, stop, count]; got {shown(args)}")
        values = getattr(np, kind)(args[0], args[1], args[2]).tolist() if args[2] > 0 else []
    elif isinstance(spec, list):
        values = spec
    else:
        raise ValueError(
            f"axes.{path}: must be a list of values, {{'linspace': [a, b, n]}} or "
            f"{{'logspace': [a, b, n]}}; got {shown(spec)}"
        )
    if not 1 <= len(values) <= MAX_VALUES:
        raise ValueError(f"axes.{path}: must have 1 to {MAX_VALUES} values; got {len(values)}")
    return tuple(values)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _parts(path: Any) -> list[str | int]:
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_CHARS:
        raise ValueError(f"axes: a path must be a dotted name of a field; got {shown(path)}")
    parts = path.split(".")
    if any(not p for p in parts):
        raise ValueError(f"axes.{path}: empty part in the path")
    return [int(p) if p.isdigit() else p for p in parts]


def _check_path(base: dict[str, Any], path: str) -> None:
    """Every part must exist in the (normalized) base, or be a declared field of its section."""
    node: Any = base
    parts = _parts(path)
    for depth, part in enumerate(parts):
        where = ".".join(str(p) for p in parts[:depth]) or "the experiment"
        last = depth == len(parts) - 1
        if isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif isinstance(node, dict) and (part in node or (last and part in _declared(base, parts))):
            node = node.get(part)
        else:
            raise ValueError(f"axes.{path}: unknown path: {where} has no {shown(part)}{_has(node)}")


def _declared(base: dict[str, Any], parts: list[str | int]) -> set[str]:
    """Optional fields a normalized experiment leaves out (model.widths, input.shape, ...)."""
    if len(parts) == 1:
        return set(Experiment.model_fields) - {"training"}
    if len(parts) == 2 and parts[0] == "model":
        return {p.name for p in MODELS[base["model"]["name"]].params}
    if len(parts) == 2 and parts[0] == "input":
        return set(InputSpec.model_fields)
    return set()


def _has(node: Any) -> str:
    if isinstance(node, dict):
        return f"; it has: {', '.join(map(str, node))}"
    if isinstance(node, list):
        return f"; it is a list of {len(node)} (indices 0 to {len(node) - 1})"
    return f" (it is a value: {shown(node)})"


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = _parts(path)
    node: Any = doc
    for part in parents:
        node = node[part]
    # One seed on the `seeds` axis is that seed alone: the table's seed column tells them apart.
    node[last] = [value] if path == "seeds" and isinstance(value, int) else copy.deepcopy(value)


def cell_key(exp: Experiment) -> str:
    return hashlib.sha256(canonical(exp.to_dict()).encode()).hexdigest()


def canonical(d: Any) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def _cells(
    base: dict[str, Any], axes: dict[str, tuple[Any, ...]], allow_custom: bool | None
) -> Iterator[Cell]:
    for index, values in enumerate(itertools.product(*axes.values())):
        coords = dict(zip(axes, values, strict=True))
        doc = copy.deepcopy(base)
        for path, value in coords.items():
            _set(doc, path, value)
        try:
            exp = Experiment.from_dict(doc, allow_custom)
        except ValueError as exc:
            raise ValueError(f"{cell_words(index, coords)}: {exc}") from None
        yield Cell(index, coords, exp, cell_key(exp))


def sweep_time_budget() -> tuple[float, str]:
    """A sweep's own budget (seconds of compute over all cells), else the guard's."""
    own = env_number(SWEEP_TIME_ENV)
    if own is not None:
        return own, SWEEP_TIME_ENV
    seconds, source = time_budget()
    return seconds, f"{TIME_ENV}: {source}"


def _check_grid_budget(cells: tuple[Cell, ...]) -> float:
    """Each cell fits the guard's per-experiment budget and its schemes fit its model; the
    grid's estimated seconds, summed, fit the sweep's budget."""
    total = 0.0
    models: dict[str, Any] = {}  # one meta model per distinct model spec
    for cell in cells:
        spec = canonical(cell.experiment.model)
        model = models.setdefault(spec, meta_model(cell.experiment.model, allow_custom=True))
        try:
            total += check_budget(cell.experiment, model).seconds
            for scheme in cell.experiment.schemes:
                validate_scheme(scheme, model)
        except ValueError as exc:
            raise ValueError(f"{cell.words()}: {exc}") from None
    limit, source = sweep_time_budget()
    if total > limit:
        raise ValueError(
            f"sweep too slow: about {total:.3g} s of compute estimated for {len(cells)} cells, "
            f"over the budget of {limit:.3g} s ({source}); a sweep may have its own larger "
            f"budget: set {SWEEP_TIME_ENV} (seconds summed over cells), or use fewer cells"
        )
    return total


# ---------------------------------------------------------------- one cell


@contextmanager
def _one_thread() -> Iterator[None]:
    """PyTorch on one thread while a cell runs: thread counts can change a reduction's order,
    and N workers on N cores should not each start N threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_cell(experiment_json: str) -> str:
    """One cell, in whatever process runs it: its probe's layers table (and σ_w², σ_b² per
    scheme and seed) as JSON, or the error in one line. Python's JSON writes floats exactly."""
    try:
        # The sweep validated the experiment, permission for a custom model included.
        exp = Experiment.from_dict(json.loads(experiment_json), allow_custom=True)
        with _one_thread():
            results = run(exp)
        layers = _with_derived(results.layers, results.params)
        payload = {"status": "ok", "layers": layers.to_dict(orient="list")}
    except Exception as exc:  # the cell's own failure, whatever its type: reported, not raised
        return _error_payload(exc)
    return json.dumps(payload)


def _error_payload(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines() or [""]
    return json.dumps({"status": "error", "error": f"{type(exc).__name__}: {lines[0]}"[:500]})


def _with_derived(layers: pd.DataFrame, params: pd.DataFrame) -> pd.DataFrame:
    """σ_w² = expected std² × fan-in averaged over weight matrices, σ_b² = expected std² of the
    biases (0 without any), per (scheme, seed): what the scheme asked for, not the sample."""
    std = params["expected_std"].where(params["expected_std"].notna(), params["std"])
    var = std.astype(float) ** 2
    weights = params["param"].str.endswith("weight") & params["fan_in"].notna()
    biases = params["param"].str.endswith("bias")
    keys = [params["scheme"], params["seed"]]
    sw2 = (var * params["fan_in"].astype(float))[weights].groupby([k[weights] for k in keys])
    sb2 = var[biases].groupby([k[biases] for k in keys])
    rows = list(zip(layers["scheme"], layers["seed"], strict=True))
    sw2_of, sb2_of = sw2.mean().to_dict(), sb2.mean().to_dict()
    return layers.assign(
        sigma_w2=[_round(sw2_of.get(r, math.nan)) for r in rows],
        sigma_b2=[_round(sb2_of.get(r, 0.0)) for r in rows],
    )


def _round(x: float) -> float:
    """12 significant digits: std² × fan-in of std = sqrt(1.6 / 128) is 1.6 within rounding,
    and a phase diagram's column must not split on the last bit."""
    return float(f"{x:.12g}")


# ---------------------------------------------------------------- executors

Job = tuple[Cell, str]  # a cell and its experiment's JSON


def _sequential(jobs: list[Job]) -> Generator[tuple[Cell, str], None, None]:
    for cell, text in jobs:
        yield cell, run_cell(text)


def _pool(jobs: list[Job], workers: int) -> Generator[tuple[Cell, str], None, None]:
    """A local process pool. Workers fork from a server process that has imported initlab and
    nothing else (forking a process that has used PyTorch's thread pools can hang the child;
    spawning imports PyTorch afresh in every worker of every pool)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["initlab.sweep"])  # instead of the caller's __main__
    pool = ProcessPoolExecutor(workers, mp_context=context)
    try:
        futures = {pool.submit(run_cell, text): cell for cell, text in jobs}
        for future in as_completed(futures):
            try:
                yield futures[future], future.result()
            except Exception as exc:  # the worker died (memory, a signal): that cell failed
                yield futures[future], _error_payload(exc)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ValueError("--ray: Ray is not installed; pip install 'initlab[ray]'") from None
    return ray


def _ray(jobs: list[Job], address: str | None) -> Generator[tuple[Cell, str], None, None]:
    """Each cell a Ray task on the cluster at `address` ('auto': the one this machine is part
    of); a driver already connected (ray.init called before) is used as it is."""
    ray = _import_ray()
    connected = ray.is_initialized()
    if not connected and not address:
        raise ValueError("--ray: give the cluster's address ('auto' for this machine's cluster)")
    if not connected:
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError) as exc:
            raise ValueError(f"--ray {address}: no Ray cluster there ({exc})") from None
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(run_cell)
        refs = {task.remote(text): cell for cell, text in jobs}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                yield refs[done[0]], ray.get(done[0])
            except Exception as exc:  # the task's worker or node died: that cell failed
                yield refs[done[0]], _error_payload(exc)
    finally:
        if not connected:  # disconnects this driver; the cluster stays as it was
            ray.shutdown()


def _execute(
    jobs: list[Job], executor: str, workers: int | None, address: str | None, isolated: bool
) -> Generator[tuple[Cell, str], None, None]:
    """`isolated`: a pool even for one cell or one worker, never this process (whose PyTorch
    thread setting the other threads of a server share)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor: must be one of {', '.join(EXECUTORS)}; got {shown(executor)}")
    if executor == "ray":
        return _ray(jobs, address)
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"--workers: must be 1 or more; got {workers}")
    if executor == "sequential" and isolated:
        raise ValueError("executor: sequential runs in this process; use pool or ray")
    if executor == "sequential" or (not isolated and (workers == 1 or len(jobs) <= 1)):
        return _sequential(jobs)
    return _pool(jobs, min(workers, len(jobs)))


# ---------------------------------------------------------------- the output folder


def _cell_path(out: Path, key: str) -> Path:
    return out / CELLS_DIR / f"{key}.json"


def _write_atomic(path: Path, text: str) -> None:
    """Write then rename: an interrupted write never leaves a half file under the real name."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _finished(out: Path, cell: Cell) -> dict[str, Any] | None:
    """A finished cell's payload, trusted only if its key is the cell's and its recorded
    experiment hashes to that key; anything else is run again."""
    path = _cell_path(out, cell.key)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(payload, dict) and payload.get("key") == cell.key
    if not ok or not isinstance(payload.get("layers"), dict):
        return None
    return payload if cell_key_of(payload.get("experiment")) == cell.key else None


def cell_key_of(experiment: Any) -> str | None:
    return hashlib.sha256(canonical(experiment).encode()).hexdigest() if experiment else None


def _record(out: Path | None, cell: Cell, payload: dict[str, Any]) -> None:
    if out is None:
        return
    record = {"key": cell.key, "coords": cell.coords, "experiment": cell.experiment.to_dict()}
    _write_atomic(_cell_path(out, cell.key), json.dumps({**record, **payload}))


# ---------------------------------------------------------------- running a sweep


def run_sweep(
    sweep: Sweep,
    out: str | Path | None = None,
    executor: str = "pool",
    workers: int | None = None,
    address: str | None = None,
    progress: Progress | None = None,
    stop: Stop | None = None,
    isolated: bool = False,
) -> SweepResults:
    """Run every cell not already finished in `out` (None: keep nothing on disk); a failing
    cell is reported in `failed` and the others go on. `executor`: sequential, pool (`workers`
    processes, default the cores) or ray (`address`, or the driver already connected).
    `stop` is asked after each finished cell (True: the cells not finished are cancelled);
    `isolated`: every cell in another process, even one (for a multi-threaded server)."""
    folder = Path(out) if out is not None else None
    if folder is not None:
        (folder / CELLS_DIR).mkdir(parents=True, exist_ok=True)
        _write_atomic(folder / "sweep.json", json.dumps(sweep.to_dict(), indent=2) + "\n")
    payloads: dict[str, dict[str, Any]] = {}
    for cell in sweep.cells:
        found = _finished(folder, cell) if folder is not None else None
        if found is not None:
            payloads[cell.key] = found
    reused = len(payloads)
    todo = list({c.key: c for c in sweep.cells if c.key not in payloads}.values())
    how = (executor, workers, address, isolated)
    failed, ran = _run_cells(todo, payloads, folder, how, progress, stop)
    table = sweep_table(sweep, payloads)
    stopped = ran < len(todo)
    return SweepResults(table, failed_table(failed), ran=ran, reused=reused, stopped=stopped)


def _run_cells(
    todo: list[Cell],
    payloads: dict[str, dict[str, Any]],
    folder: Path | None,
    how: tuple[str, int | None, str | None, bool],
    progress: Progress | None,
    stop: Stop | None = None,
) -> tuple[list[tuple[Cell, str]], int]:
    """Run `todo`, recording each finished cell as it arrives, until `stop` says so; returns
    the failures and how many cells ran."""
    jobs = [(cell, json.dumps(cell.experiment.to_dict())) for cell in todo]
    failed, start, done = [], time.perf_counter(), 0
    if stop is not None and stop():
        return failed, done
    results = _execute(jobs, *how)
    try:
        for done, (cell, text) in enumerate(results, start=1):
            payload = json.loads(text)
            if payload["status"] == "ok":
                _record(folder, cell, payload)
                payloads[cell.key] = payload
            else:
                failed.append((cell, payload["error"]))
            if progress:
                elapsed = time.perf_counter() - start
                progress(done, len(todo), elapsed / done * (len(todo) - done))
            if stop is not None and stop():
                break
    finally:  # now, not when collected: a pool cancels the cells it has not started
        results.close()
    return failed, done


def failed_table(failed: list[tuple[Cell, str]]) -> pd.DataFrame:
    rows = [(c.index, c.words(), error) for c, error in sorted(failed, key=lambda f: f[0].index)]
    return pd.DataFrame(rows, columns=["cell", "coordinates", "error"])


def _axis_value(value: Any) -> Any:
    """A coordinate as a table cell: numbers and text as they are, lists and objects as JSON."""
    return value if value is None or isinstance(value, int | float | str) else canonical(value)


def sweep_table(sweep: Sweep, payloads: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """The tidy table, in cell order, built only from the payloads (as files give them), so
    a resumed sweep's table equals a fresh one's."""
    frames = []
    for cell in sweep.cells:
        payload = payloads.get(cell.key)
        if payload is None:
            continue
        frame = pd.DataFrame(payload["layers"])
        axes = {path: _axis_value(value) for path, value in cell.coords.items()}
        frames.append(frame.assign(cell=cell.index, **axes))
    columns = ["cell", *sweep.axes, *LAYERS_OUT, *DERIVED]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def write_results(results: SweepResults, out: str | Path) -> list[Path]:
    """sweep.csv, and failed.csv when a cell failed."""
    folder = Path(out)
    paths = [folder / "sweep.csv"]
    write_csv(results.table, paths[0])
    failed = folder / "failed.csv"
    if len(results.failed):
        write_csv(results.failed, failed)
        paths.append(failed)
    elif failed.exists():
        failed.unlink()  # from an earlier try whose failed cells have now finished
    return paths
