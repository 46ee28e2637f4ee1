"""The package's layout: imports of initlab modules at the top of each module, no import cycle
among them; and the results tables, now built column by column, equal the frames the
one-dict-per-row construction gave for the same values."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

import initlab
from initlab.probe import HIST_COLUMNS, LAYER_COLUMNS, histogram_table, probe
from initlab.schemes import PARAMS_COLUMNS, apply_scheme, params_table
from initlab.stats import histogram

PACKAGE = Path(initlab.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(path: Path) -> str:
    """The package a module's relative imports start from."""
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


NAMES = {module_name(p) for p in MODULES}


def imported(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    """The initlab modules an import statement loads (`from initlab import plots` loads the
    submodule initlab.plots; `from initlab import preset` the package itself)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "initlab"]
    if node.level:  # relative: `.` is the package itself, each further dot one level up
        parts = package.split(".")
        parts = parts[: len(parts) - node.level + 1]
        base = ".".join([*parts, node.module] if node.module else parts)
    else:
        base = node.module or ""
    if base.split(".")[0] != "initlab":
        return []
    found = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in NAMES]
    return found if len(found) == len(node.names) else [*found, base]


def function_level_imports() -> list[str]:
    """`path:line: import` for every import of an initlab module inside a function."""
    offenders = []
    for path in MODULES:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    for name in imported(node, package_of(path)):
                        rel = path.relative_to(PACKAGE.parent)
                        offenders.append(f"{rel}:{node.lineno}: {name}")
    return sorted(set(offenders))


def top_level_graph() -> dict[str, set[str]]:
    """Module -> the initlab modules it imports when it is imported (module level, including
    imports under `if`/`try` at the top; `if TYPE_CHECKING:` blocks excluded)."""
    graph: dict[str, set[str]] = {}
    for path in MODULES:
        here = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        edges: set[str] = set()
        for node in _module_level(tree.body):
            edges |= set(imported(node, package_of(path)))
        graph[here] = {e for e in edges if e in NAMES and e != here}
    return graph


def _module_level(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            found += _module_level(node.body) + _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            found += _module_level(node.body)
            for handler in node.handlers:
                found += _module_level(handler.body)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a path that comes back to its start), or None: depth-first search."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_initlab_module_is_imported_inside_a_function() -> None:
    offenders = function_level_imports()
    assert not offenders, "imports of initlab modules inside functions:\n" + "\n".join(offenders)


def test_the_checker_sees_function_level_and_relative_imports() -> None:
    """The walk above would pass vacuously if it missed these forms."""
    code = (
        "def f():\n    from initlab.models import build_model\n"
        "def g():\n    import initlab.plots\n"
        "def h():\n    from . import plots\n"
        "def k():\n    import torch\n"
    )
    tree = ast.parse(code)
    found = [
        name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in imported(node, "initlab")
    ]
    assert found == ["initlab.models", "initlab.plots", "initlab.plots"]
    relative = ast.parse("from ..schemes import Scheme").body[0]
    assert imported(relative, "initlab.ui") == ["initlab.schemes"]


def test_the_intra_package_import_graph_has_no_cycle() -> None:
    graph = top_level_graph()
    assert graph["initlab.experiment"] >= {"initlab.schemes", "initlab.presets"}
    assert "initlab.schemes" in graph["initlab.presets"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


# ---------------------------------------------------------------- tables built column-wise


def rowwise(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The same values, built the old way: one dict per row, one DataFrame of them."""
    return pd.DataFrame(frame.to_dict("records"), columns=columns)


def old_histograms(hists: list[tuple[str, str, list[float], list[float]]]) -> pd.DataFrame:
    rows = [
        {"kind": k, "name": n, "bin_left": e[i], "bin_right": e[i + 1], "count": c}
        for k, n, e, counts in hists
        for i, c in enumerate(counts)
    ]
    return pd.DataFrame(rows, columns=HIST_COLUMNS)


def test_histogram_table_equals_the_row_wise_frame() -> None:
    g = torch.Generator().manual_seed(0)
    tensors = [torch.randn(50, 7, generator=g), torch.zeros(3), torch.tensor([math.inf, 1.0])]
    hists = [("activation", f"t{i}", *histogram(t, 8)) for i, t in enumerate(tensors)]
    hists.append(("weight", "empty", *histogram(torch.tensor([math.nan]), 8)))
    table = histogram_table(hists)
    pd.testing.assert_frame_equal(table, old_histograms(hists))
    assert len(table) == 4 * 8
    assert list(table.columns) == HIST_COLUMNS
    pd.testing.assert_frame_equal(histogram_table([]), old_histograms([]))


class _NoFloatOutput(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.long()


@pytest.mark.parametrize("backward", [True, False])
def test_probe_tables_equal_the_row_wise_frames(backward: bool) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3), nn.ReLU())
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(1))
    result = probe(model, x, backward, torch.Generator().manual_seed(2), bins=8)
    pd.testing.assert_frame_equal(result.layers, rowwise(result.layers, LAYER_COLUMNS))
    pd.testing.assert_frame_equal(result.histograms, rowwise(result.histograms, HIST_COLUMNS))
    assert result.layers["grad_var"].notna().all() == backward
    empty = probe(_NoFloatOutput(), torch.ones(2, 2), backward=False)
    pd.testing.assert_frame_equal(empty.layers, pd.DataFrame([], columns=LAYER_COLUMNS))
    pd.testing.assert_frame_equal(empty.histograms, pd.DataFrame([], columns=HIST_COLUMNS))


def test_params_table_equals_the_row_wise_frame() -> None:
    model = initlab.build_model({"name": "cnn", "depth": 2, "channels": 4, "image_size": 8})
    table = apply_scheme(model, initlab.preset("recipe"), torch.Generator().manual_seed(0))
    pd.testing.assert_frame_equal(table, rowwise(table, PARAMS_COLUMNS))
    assert table["fan_in"].isna().any()  # biases: a float column with NaN
    pd.testing.assert_frame_equal(params_table([]), pd.DataFrame([], columns=PARAMS_COLUMNS))
    assert apply_scheme(nn.ReLU(), initlab.preset("zeros")).equals(params_table([]))


@pytest.mark.parametrize(
    "d",
    [
        {
            "model": {"name": "mlp", "depth": 4, "width": 16, "activation": "tanh"},
            "seeds": [0, 1],
            "schemes": [
                {"name": "PyTorch default", "preset": "pytorch_default"},
                {"name": "Kaiming normal", "preset": "kaiming_normal"},
            ],
            "bins": 16,
        },
        {
            "model": {
                "name": "transformer",
                "n_layers": 1,
                "d_model": 16,
                "n_heads": 2,
                "vocab_size": 30,
                "seq_len": 4,
            },
            "input": {"batch_size": 4},
            "backward": False,
            "schemes": [{"name": "GPT-2", "preset": "gpt2"}],
        },
    ],
)
def test_run_results_equal_the_row_wise_frames(d: dict) -> None:
    res = initlab.run(initlab.Experiment.from_dict(d))
    for name in ("layers", "params", "histograms"):
        frame = getattr(res, name)
        pd.testing.assert_frame_equal(frame, rowwise(frame, list(frame.columns)))
