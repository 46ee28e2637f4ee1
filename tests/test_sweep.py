"""Sweeps: the same table bit for bit in this process, a process pool and a real local Ray
instance; resume runs only the missing cells; the phase diagram's boundary where the mean
field puts it (the prediction recomputed here with scipy's quad); bad sweeps refused."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import quad

from initlab import sweep as sweep_mod
from initlab.plots_sweep import cell_ratios
from initlab.sweep import Sweep, run_sweep

WIDTH = 16
STD_AXIS = "schemes.0.rules.0.weight.std"


def base(width: int = WIDTH, batch: int = 16, input_std: float = 1.0) -> dict:
    return {
        "model": {"name": "mlp", "depth": 3, "width": width, "activation": "tanh", "bias": True},
        "input": {"batch_size": batch, "std": input_std},
        "seeds": [0],
        "schemes": [
            {"name": "gauss", "rules": [{"layers": "Linear",
                                         "weight": {"method": "normal", "std": 0.1},
                                         "bias": {"method": "normal", "std": 0.1}}]},
        ],
    }  # fmt: skip


def small_grid() -> Sweep:
    """3 depths × 3 σ_w × 2 seeds on a tiny MLP."""
    stds = [math.sqrt(s / WIDTH) for s in (0.5, 1.0, 2.0)]
    return Sweep.from_dict({"base": base(), "axes": {"model.depth": [2, 3, 4], STD_AXIS: stds,
                                                     "seeds": [0, 1]}})  # fmt: skip


@pytest.fixture(scope="module")
def sequential() -> pd.DataFrame:
    return run_sweep(small_grid(), executor="sequential").table


def test_the_grid_is_every_combination_with_the_axes_as_columns(sequential):
    grid = small_grid()
    assert len(grid.cells) == 18 and len({c.key for c in grid.cells}) == 18
    assert list(sequential.columns[:4]) == ["cell", "model.depth", STD_AXIS, "seeds"]
    per_cell = sequential.groupby("cell")["layer"].count()
    # depth × [Linear, Tanh] rows per cell: one scheme, one seed each
    depths = [c.coords["model.depth"] for c in grid.cells]
    assert per_cell.tolist() == [2 * d for d in depths]
    assert (sequential["seed"] == sequential["seeds"]).all()
    expected_w2 = sequential[STD_AXIS] ** 2 * WIDTH
    np.testing.assert_allclose(sequential["sigma_w2"], expected_w2, rtol=1e-11)
    np.testing.assert_allclose(sequential["sigma_b2"], 0.01, rtol=1e-11)


def test_a_cell_is_initlab_run_of_its_experiment(sequential):
    cell = small_grid().cells[7]
    with sweep_mod._one_thread():
        direct = sweep_mod.run(cell.experiment).layers
    mine = sequential[sequential["cell"] == 7].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine[direct.columns], direct, check_exact=True)


def test_pool_gives_the_same_table_bit_for_bit(sequential):
    pooled = run_sweep(small_grid(), executor="pool", workers=2).table
    pd.testing.assert_frame_equal(pooled, sequential, check_exact=True)


def test_ray_gives_the_same_table_bit_for_bit(sequential):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = run_sweep(small_grid(), executor="ray").table
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(on_ray, sequential, check_exact=True)


def test_ray_without_an_address_or_a_driver_starts_nothing():
    pytest.importorskip("ray")
    with pytest.raises(ValueError, match="address"):
        run_sweep(small_grid(), executor="ray")


REAL_RUN_CELL = sweep_mod.run_cell


class Interrupted(BaseException):
    """Stands for a kill: not an Exception, so no cell catches it."""


def counting_cell(monkeypatch, stop_after: int | None = None) -> list[str]:
    calls: list[str] = []

    def cell(text: str) -> str:
        if stop_after is not None and len(calls) == stop_after:
            raise Interrupted
        calls.append(text)
        return REAL_RUN_CELL(text)

    monkeypatch.setattr(sweep_mod, "run_cell", cell)
    return calls


def test_resume_runs_only_the_missing_cells(tmp_path, monkeypatch, sequential):
    calls = counting_cell(monkeypatch, stop_after=5)
    with pytest.raises(Interrupted):
        run_sweep(small_grid(), tmp_path, executor="sequential")
    assert len(list((tmp_path / "cells").glob("*.json"))) == 5
    calls = counting_cell(monkeypatch)
    resumed = run_sweep(small_grid(), tmp_path, executor="sequential")
    assert (resumed.ran, resumed.reused, len(calls)) == (13, 5, 13)
    pd.testing.assert_frame_equal(resumed.table, sequential, check_exact=True)
    again = run_sweep(small_grid(), tmp_path, executor="sequential")
    assert (again.ran, again.reused) == (0, 18)


def test_a_file_whose_key_does_not_match_is_run_again(tmp_path, monkeypatch):
    grid = small_grid()
    run_sweep(grid, tmp_path, executor="sequential")
    path = tmp_path / "cells" / f"{grid.cells[0].key}.json"
    record = json.loads(path.read_text())
    record["experiment"]["seeds"] = [99]  # no longer the experiment its name says
    path.write_text(json.dumps(record))
    (tmp_path / "cells" / f"{grid.cells[1].key}.json").write_text("{not json")
    calls = counting_cell(monkeypatch)
    assert run_sweep(grid, tmp_path, executor="sequential").ran == 2 and len(calls) == 2


def test_a_failing_cell_is_reported_with_its_coordinates_and_the_others_finish(monkeypatch):
    real = sweep_mod.run

    def run(exp):
        if exp.model["depth"] == 3 and exp.seeds == (1,):
            raise RuntimeError("boom")
        return real(exp)

    monkeypatch.setattr(sweep_mod, "run", run)
    results = run_sweep(small_grid(), executor="sequential")
    assert len(results.failed) == 3 and results.table["cell"].nunique() == 15
    first = results.failed.iloc[0]
    assert "model.depth=3" in first["coordinates"] and "seeds=1" in first["coordinates"]
    assert first["error"] == "RuntimeError: boom"


# ---------------------------------------------------------------- the phase diagram

SIGMA_B2 = 0.05


def gauss_mean(f) -> float:
    """E[f(z)], z ~ N(0, 1), by adaptive quadrature."""
    return quad(lambda z: f(z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi), -12, 12)[0]


def fixed_point(sigma_w2: float) -> float:
    q = 1.0
    for _ in range(300):
        new = sigma_w2 * gauss_mean(lambda z, q=q: math.tanh(math.sqrt(q) * z) ** 2) + SIGMA_B2
        if abs(new - q) < 1e-12:
            break
        q = new
    return q


def chi1(sigma_w2: float) -> float:
    q = fixed_point(sigma_w2)
    return sigma_w2 * gauss_mean(lambda z: (1 - math.tanh(math.sqrt(q) * z) ** 2) ** 2)


def predicted_sigma_w2() -> float:
    lo, hi = 1.0, 3.0
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if chi1(mid) < 1 else (lo, mid)
    return (lo + hi) / 2


def test_the_gradient_ratio_crosses_one_where_the_mean_field_says():
    predicted = predicted_sigma_w2()
    q_star = fixed_point(predicted)
    # The input's variance puts the first layer at the fixed point, as the theory assumes.
    width, step = 128, 0.2
    input_std = math.sqrt((q_star - SIGMA_B2) / predicted)
    sigma_w2 = [round(1.0 + step * i, 2) for i in range(9)]
    stds = [math.sqrt(s / width) for s in sigma_w2]
    b = base(width, batch=128, input_std=input_std)
    b["seeds"] = [0, 1]
    b["schemes"][0]["rules"][0]["bias"]["std"] = math.sqrt(SIGMA_B2)
    grid = Sweep.from_dict({"base": b, "axes": {"model.depth": [10, 30], STD_AXIS: stds}})
    ratios = cell_ratios(run_sweep(grid, executor="pool", workers=2).table)
    logs = np.log(ratios["gradient_ratio"]).groupby([ratios["model.depth"], ratios["sigma_w2"]])
    for depth, curve in logs.mean().groupby(level=0):
        values, xs = curve.to_numpy(), curve.index.get_level_values(1).to_numpy()
        assert values[0] < 0 < values[-1], f"depth {depth}: no crossing in {values}"
        i = int(np.argmax(values > 0))  # the first σ_w² past the boundary
        crossing = np.interp(0.0, values[i - 1 : i + 1], xs[i - 1 : i + 1])
        assert abs(crossing - predicted) <= step, (depth, crossing, predicted)


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ({"model.dpth": [2, 3]}, "axes.model.dpth: unknown path: model has no 'dpth'"),
        ({"schemes.3.name": ["a"]}, "unknown path: schemes has no 3"),
        ({"model.depth.x": [1]}, "unknown path: model.depth has no 'x'"),
        ({"model.depth": []}, "axes.model.depth: must have 1 to 1000 values; got 0"),
        ({"model.depth": {"linspace": [1, 2, 0]}}, "must have 1 to 1000 values; got 0"),
        ({"model.depth": {"range": [1, 2]}}, "axes.model.depth: must be a list of values"),
        ({"model.depth": [2, 0]}, "cell 1 (model.depth=0): model.depth: must be"),
        ({}, "axes: must map dotted paths"),
        ({"model.depth": list(range(1, 70)), "model.width": list(range(1, 70))},
         "69 × 69 = 4761 cells; a sweep has at most 4096"),
    ],
)  # fmt: skip
def test_bad_sweeps_are_refused_naming_the_problem(axes, message):
    with pytest.raises(ValueError) as info:
        Sweep.from_dict({"base": base(), "axes": axes})
    assert message in str(info.value)


def test_a_grid_over_the_budget_is_refused_with_the_sweeps_own_budget(monkeypatch):
    monkeypatch.setenv("INITLAB_SWEEP_TIME_BUDGET_S", "0.001")
    with pytest.raises(ValueError, match=r"sweep too slow: .* 18 cells.*INITLAB_SWEEP_TIME"):
        small_grid()
    monkeypatch.setenv("INITLAB_SWEEP_TIME_BUDGET_S", "1e6")
    monkeypatch.setenv("INITLAB_TIME_BUDGET_S", "0.001")  # per cell: the guard's own budget
    with pytest.raises(ValueError, match=r"^cell 0 \(.*\): experiment too slow"):
        small_grid()


def test_optional_fields_are_known_paths_and_one_seed_is_a_list():
    grid = Sweep.from_dict({"base": base(), "axes": {"input.distribution": ["uniform"],
                                                     "seeds": [3]}})  # fmt: skip
    assert grid.cells[0].experiment.input.distribution == "uniform"
    assert grid.cells[0].experiment.seeds == (3,)
