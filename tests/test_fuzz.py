"""Property-based fuzzing of experiments: dicts, JSON text, files and the CLI.

Experiments are drawn from the registries (every zoo model, preset and method) and then broken:
values replaced by junk, by out-of-range numbers or by names from another vocabulary, keys
deleted or invented, JSON text cut short or sprinkled with stray characters. The property:
`Experiment.from_dict` returns or raises ValueError, never anything else; what it accepts,
`initlab.run` turns into Results with the documented columns or refuses with a ValueError; an
unbroken small experiment runs. The CLI exits 0 or 2 and never prints a traceback.

A library defect found later can be listed in KNOWN_DEFECTS (exact exception and message) until
it is fixed: it is then counted, not failed on, so the fuzz keeps guarding everything else; the
counts are printed (`pytest -s`). The list is empty. `derandomize=True` makes every run draw the
same examples.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import tempfile
import traceback
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import initlab
from initlab import Experiment
from initlab.cli import main
from initlab.experiment import HISTS_OUT, LAYERS_OUT, PARAMS_OUT
from initlab.gains import GAIN_NAMES
from initlab.layers import FAMILIES
from initlab.models import ACTIVATIONS, ALLOW_ENV
from initlab.params import Param

NAN, INF = float("nan"), float("inf")
# hf (Hugging Face architectures) has its own tests: tests/test_hf_*.py
ZOO = [name for name, entry in initlab.MODELS.items() if not entry.custom and name != "hf"]
ACTS = list(ACTIVATIONS)
MEMORY_BUDGET_MB = "64"  # the guard refuses the odd big experiment a mutation makes, fast
TIME_BUDGET_S = "5"


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


@pytest.fixture(scope="module", autouse=True)
def _small_budgets():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INITLAB_MEMORY_BUDGET_MB", MEMORY_BUDGET_MB)
        mp.setenv("INITLAB_TIME_BUDGET_S", TIME_BUDGET_S)
        mp.delenv(ALLOW_ENV, raising=False)
        yield


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


# ---------------------------------------------------------------- valid, small experiments


def optional(fields: dict[str, st.SearchStrategy]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


@st.composite
def small_models(draw: st.DrawFn) -> dict[str, Any]:
    """Every zoo model at a size that runs in milliseconds."""
    name = draw(st.sampled_from(ZOO))
    if name == "mlp":
        if draw(st.booleans()):
            spec = {"widths": draw(st.lists(st.integers(1, 12), min_size=2, max_size=5))}
        else:
            spec = {"depth": draw(st.integers(1, 4)), "width": draw(st.integers(1, 12))}
        norms = st.sampled_from(["none", "batchnorm", "layernorm"])
        spec |= draw(optional({"activation": st.sampled_from(ACTS), "bias": st.booleans(),
                               "norm": norms}))  # fmt: skip
    elif name == "cnn":
        spec = {"depth": draw(st.integers(1, 3)), "channels": draw(st.integers(1, 6)),
                "image_size": draw(st.integers(4, 10))}  # fmt: skip
        spec |= draw(optional({"activation": st.sampled_from(ACTS), "batchnorm": st.booleans()}))
    elif name == "resnet":
        spec = {"stages": draw(st.integers(1, 3)), "blocks": draw(st.integers(1, 2)),
                "width": draw(st.integers(1, 6)),
                "image_size": draw(st.integers(4, 10))}  # fmt: skip
    elif name == "transformer":
        spec = {"n_layers": draw(st.integers(1, 2)), "d_model": draw(st.sampled_from([8, 16])),
                "n_heads": draw(st.sampled_from([1, 2, 4, 8])),
                "vocab_size": draw(st.integers(2, 32)), "seq_len": draw(st.integers(1, 6)),
                "tie_weights": draw(st.booleans())}  # fmt: skip
    else:
        spec = {}  # lenet: no parameters
    assert set(spec) <= {p.name for p in initlab.MODELS[name].params}, "a new model parameter?"
    return {"name": name, **spec}


def sane_value(p: Param) -> st.SearchStrategy:
    """A valid value of a declared method parameter, in a range that stays finite in float32."""
    if p.kind == "float":
        low = p.low if p.low is not None else -2.0
        high = p.high if p.high is not None else low + 4.0
        return st.floats(low, high, exclude_min=p.low_open, exclude_max=p.high_open)
    if p.kind == "int":
        return st.just(int(p.low or 1))  # dirac's groups: 1 divides every channel count
    if p.kind == "choice":
        return st.sampled_from(p.choices)
    if p.kind == "gain":
        return st.one_of(st.floats(0, 3), st.sampled_from(GAIN_NAMES), st.just("leaky_relu(0.2)"))
    return st.booleans()


@st.composite
def method_specs(draw: st.DrawFn, names: list[str]) -> Any:
    """A valid method spec: a bare name, or an object with registry-drawn parameters."""
    name = draw(st.sampled_from(names))
    method = initlab.METHODS[name]
    if not method.params and draw(st.booleans()):
        return name
    spec: dict[str, Any] = {"method": name}
    for p in method.params:
        if draw(st.booleans()):
            spec[p.name] = draw(sane_value(p))
    if name in ("uniform", "trunc_normal"):  # a < b, and the mean inside for trunc_normal
        spec["a"] = draw(st.floats(-3, -1.5))
        spec["b"] = draw(st.floats(1.5, 3))
        if name == "trunc_normal":
            spec["mean"] = draw(st.floats(-1, 1))
            spec["std"] = draw(st.floats(0.05, 2))
    # default keeps torch's values and lsuv sets the scale from the data: neither takes one
    if name != "default" and not method.data_dependent and draw(st.integers(0, 3)) == 0:
        spec["scale"] = draw(st.one_of(st.floats(-2, 2), st.just("1/sqrt(matches)")))
    return spec


ONE_D = ["default", "uniform", "normal", "trunc_normal", "constant", "ones", "zeros"]
TWO_D = [m for m in initlab.METHODS if m != "dirac"]
CONV = [m for m in initlab.METHODS if m not in ("eye", "sparse")]
WEIGHTS = {"Linear": TWO_D, "Embedding": TWO_D, "Conv": CONV, "BatchNorm": ONE_D,
           "LayerNorm": ONE_D, "GroupNorm": ONE_D}  # fmt: skip
GLOBS = ["*", "fc1", "conv*", "*.c_proj", "h.0.*", "layer1.*", "*.bn2"]


@st.composite
def safe_rules(draw: st.DrawFn) -> dict[str, Any]:
    """A rule every zoo model accepts: each family gets methods of its tensors' ranks."""
    family = draw(st.sampled_from(sorted(WEIGHTS)))
    rule: dict[str, Any] = {"layers": family}
    if draw(st.booleans()):
        rule["weight"] = draw(method_specs(WEIGHTS[family]))
    if draw(st.booleans()):
        rule["bias"] = draw(method_specs(ONE_D))
    if draw(st.integers(0, 3)) == 0:
        rule["name"] = draw(st.sampled_from(GLOBS))
    return rule


@st.composite
def clean_experiments(draw: st.DrawFn) -> dict[str, Any]:
    """A valid experiment small enough to run in well under a second."""
    schemes = []
    for i in range(draw(st.sampled_from([1, 1, 2, 3]))):
        if draw(st.booleans()):
            schemes.append(
                {"name": f"s{i}", "preset": draw(st.sampled_from(list(initlab.PRESETS)))}
            )
        else:
            schemes.append({"name": f"s{i}", "rules": draw(st.lists(safe_rules(), max_size=4))})
    d: dict[str, Any] = {
        "model": draw(small_models()),
        # >= 2 samples: BatchNorm in train mode needs two values per channel
        "input": {"batch_size": draw(st.integers(2, 4))},
        "seeds": draw(st.sampled_from([[0], [1], [2**40], [3, 7]])),
        "schemes": schemes,
    }
    d |= draw(optional({"backward": st.booleans(), "mode": st.sampled_from(["train", "eval"]),
                        "bins": st.integers(4, 32)}))  # fmt: skip
    if d["model"]["name"] != "transformer" and draw(st.booleans()):
        if draw(st.booleans()):
            d["input"] |= {"distribution": "normal", "mean": draw(st.floats(-2, 2)),
                           "std": draw(st.floats(0, 3))}  # fmt: skip
        else:
            d["input"] |= {"distribution": "uniform", "low": -1.0, "high": draw(st.floats(0, 3))}
    return d


# ---------------------------------------------------------------- breaking them

VOCABULARY = [
    *initlab.METHODS, *initlab.PRESETS, *initlab.MODELS, *FAMILIES, *ACTS, *GAIN_NAMES,
    "fan_in", "fan_avg", "tokens", "uniform", "train", "eval", "cpu", "auto", "cuda",
    "1/sqrt(matches)", "leaky_relu(0.2)", "default", "Conv2d", "", " ",
]  # fmt: skip
# No whole numbers between 2 and 10**7: a mutation must not make a valid but huge model
# (a float like 900.0 would be a valid depth). Out of range, non-integer or not finite only.
NUMBERS = st.one_of(
    st.sampled_from([-1, 0, 1, 10**7, 2**63, -(2**31), 10**400, -0.0, 0.5, 1e39, -1e39, 1e308,
                     -1e308, 5e-324, NAN, INF, -INF]),
    st.floats(allow_nan=True, allow_infinity=True).filter(
        lambda x: not math.isfinite(x) or not x.is_integer() or abs(x) > 1e7
    ),
)  # fmt: skip
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    NUMBERS,
    st.text(max_size=12),
    st.sampled_from(VOCABULARY),
    st.lists(st.one_of(st.none(), st.integers(-2, 3), st.text(max_size=3)), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(-2, 3), max_size=2),
)


def places(node: Any, found: list | None = None) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in a nested structure of dicts and lists."""
    found = [] if found is None else found
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in list(items):
        found.append((node, key))
        if isinstance(value, dict | list) and value:
            places(value, found)
    return found


@st.composite
def broken(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """`base` with 1-3 mutations: replace, delete, add a key, wrap in a list, or junk it all."""
    d = copy.deepcopy(base)
    if draw(st.integers(0, 40)) == 0:
        return draw(JUNK)  # not an object at all
    for _ in range(draw(st.integers(1, 4))):
        spots = places(d)
        if not spots:
            break
        container, key = draw(st.sampled_from(spots))
        op = draw(st.sampled_from(["replace", "replace", "delete", "add", "wrap"]))
        if op == "replace":
            container[key] = draw(JUNK)
        elif op == "delete":
            del container[key]
        elif op == "wrap":
            container[key] = [container[key]]
        elif isinstance(container[key], dict):
            container[key][draw(st.sampled_from(["colour", "Depth", "std ", "", "method"]))] = draw(
                JUNK
            )
        else:
            d[draw(st.text(min_size=1, max_size=6))] = draw(JUNK)
    return d


@st.composite
def experiment_dicts(draw: st.DrawFn) -> tuple[bool, Any]:
    """(clean, experiment): a fifth left valid, the rest broken."""
    base = draw(clean_experiments())
    if draw(st.integers(0, 4)) == 0:
        return True, base
    return False, draw(broken(base))


# ---------------------------------------------------------------- the property

# Library defects still open (exception type, message fragment) -> description. Empty: every
# defect the fuzzing found is fixed; one found later is listed here until it is.
KNOWN_DEFECTS: dict[tuple[str, str], str] = {}
SEEN: Counter[str] = Counter()


def known_or_fail(exc: BaseException, where: str) -> str:
    for (kind, fragment), what in KNOWN_DEFECTS.items():
        if type(exc).__name__ == kind and fragment in str(exc):
            SEEN[what] += 1
            return "known defect"
    detail = "".join(traceback.format_exception(exc))
    pytest.fail(f"{where} raised {type(exc).__name__}, not ValueError:\n{detail}")


def assert_clear(exc: ValueError) -> None:
    message = str(exc)
    lines = message.splitlines()
    assert message.strip() and "Traceback" not in message, message
    assert len(lines) <= 4 and len(lines[0]) < 600, message[:300]


def check_results(res: initlab.Results, exp: Experiment) -> None:
    assert list(res.layers.columns) == LAYERS_OUT
    assert list(res.params.columns) == PARAMS_OUT
    assert list(res.histograms.columns) == HISTS_OUT
    assert len(res.layers) > 0
    assert set(res.layers["scheme"]) == {s.name for s in exp.schemes}
    assert set(res.layers["seed"]) == set(exp.seeds)


def input_bytes(exp: Experiment) -> int:
    return 4 * exp.input.batch_size * math.prod(exp.input_shape())


def outcome(d: Any, text: str | None = None, clean: bool = False) -> str:
    """'refused', 'refused at run', 'ran' or 'known defect'; fails on anything else."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's trunc_normal_ warns about far-off means
        try:
            exp = Experiment.from_text(text) if text is not None else Experiment.from_dict(d)
        except ValueError as exc:
            assert not clean, f"a valid experiment was refused: {exc}\n{d}"
            assert_clear(exc)
            return "refused"
        except Exception as exc:
            return known_or_fail(exc, "Experiment.from_dict/from_text")
        # Keep what a mutation can make below 64 MB of input: the valid runs stay fast.
        if input_bytes(exp) > 2**26:
            return "refused"
        try:
            res = initlab.run(exp)
        except ValueError as exc:
            assert not clean, f"a valid experiment did not run: {exc}\n{d}"
            assert_clear(exc)
            return "refused at run"
        except Exception as exc:
            return known_or_fail(exc, "initlab.run")
    check_results(res, exp)
    return "ran"


def report(name: str, counts: Counter[str]) -> None:
    total = sum(counts.values())
    print(f"\n{name}: {total} examples: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if SEEN:
        print(
            "  known library defects met so far: " + ", ".join(f"{k} ×{v}" for k, v in SEEN.items())
        )


# ---------------------------------------------------------------- the tests


def test_fuzz_experiment_dicts():
    counts: Counter[str] = Counter()

    @fuzz(1000)
    @given(experiment_dicts())
    def prop(example: tuple[bool, Any]) -> None:
        clean, d = example
        counts[outcome(d, clean=clean)] += 1

    prop()
    report("experiment dicts", counts)
    assert counts["ran"] >= 200 and counts["refused"] >= 300, counts


def test_fuzz_clean_experiments_all_run():
    """Unbroken experiments drawn from every model, preset and method always run."""
    counts: Counter[str] = Counter()

    @fuzz(150)
    @given(clean_experiments())
    def prop(d: dict[str, Any]) -> None:
        counts[outcome(d, clean=True)] += 1

    prop()
    report("clean experiments", counts)
    assert counts["ran"] == sum(counts.values())


@st.composite
def broken_texts(draw: st.DrawFn) -> str:
    """A valid experiment's JSON, cut, spliced and sprinkled with stray characters."""
    text = json.dumps(draw(clean_experiments()), indent=draw(st.sampled_from([None, 1])))
    stray = st.one_of(
        st.text(max_size=4),
        st.sampled_from(['{', '}', '[', ']', ',', ':', '"', "NaN", "1e400", "-", "0", "\\",
                         "\\u0000", "\\ud800", "null", "true", "//", "\ufeff", "9" * 30]),
    )  # fmt: skip
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 12)))
        op = draw(st.sampled_from(["cut", "insert", "delete", "replace", "repeat"]))
        if op == "cut":
            text = text[:i]
        elif op == "insert":
            text = text[:i] + draw(stray) + text[i:]
        elif op == "delete":
            text = text[:i] + text[j:]
        elif op == "replace":
            text = text[:i] + draw(stray) + text[j:]
        else:
            text = text[:j] + text[i:j] + text[j:]
    return text


def test_fuzz_json_text():
    counts: Counter[str] = Counter()

    @fuzz(800)
    @given(broken_texts())
    def prop(text: str) -> None:
        counts[outcome(None, text=text)] += 1

    prop()
    report("JSON text", counts)
    assert counts["refused"] >= 300 and counts["ran"] >= 20, counts


def test_fuzz_files_of_random_bytes(tmp_path: Path):
    counts: Counter[str] = Counter()
    path = tmp_path / "experiment.json"

    @fuzz(200)
    @given(st.one_of(st.binary(max_size=300), broken_texts().map(lambda t: t.encode("utf-8")),
                     st.tuples(broken_texts(), st.binary(min_size=1, max_size=4)).map(
                         lambda p: p[0].encode("utf-8") + p[1])))  # fmt: skip
    def prop(data: bytes) -> None:
        path.write_bytes(data)
        try:
            Experiment.from_json(path)
            counts["parsed"] += 1
        except ValueError as exc:  # UnicodeDecodeError is one
            counts["refused"] += 1
            assert str(exc).strip()
        except Exception as exc:
            counts[known_or_fail(exc, "Experiment.from_json")] += 1

    prop()
    report("files of bytes", counts)
    assert counts["refused"] >= 100, counts


@st.composite
def sized_experiments(draw: st.DrawFn) -> dict[str, Any]:
    """Small models with one or two size fields at their declared maximum: the guard's work."""
    d = draw(clean_experiments())
    entry = initlab.MODELS[d["model"]["name"]]
    # Widths only: a depth or an image size at its maximum is a slow run, not a refusal.
    wide = [p for p in entry.params if p.kind == "int" and p.name in
            ("width", "channels", "d_model", "vocab_size")]  # fmt: skip
    d["model"] = {k: v for k, v in d["model"].items() if k != "widths"}
    if d["model"]["name"] == "mlp":
        d["model"].setdefault("depth", 2)
    for p in draw(st.lists(st.sampled_from(wide), max_size=2, unique=True)) if wide else []:
        d["model"][p.name] = int(p.high)
    if d["model"]["name"] == "transformer":
        d["model"]["n_heads"] = 1  # divides any d_model
    return d


def test_fuzz_big_models_are_refused_or_run():
    counts: Counter[str] = Counter()

    @fuzz(60)
    @given(sized_experiments())
    def prop(d: dict[str, Any]) -> None:
        result = outcome(d)
        assert result in ("ran", "refused at run", "known defect"), (result, d)
        counts[result] += 1

    prop()
    report("big models", counts)
    assert counts["refused at run"] >= 10, counts


def test_fuzz_cli(tmp_path: Path):
    counts: Counter[str] = Counter()

    @fuzz(100)
    @given(st.one_of(experiment_dicts().map(lambda e: json.dumps(e[1])), broken_texts()))
    def prop(text: str) -> None:
        with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
            path = Path(folder) / "experiment.json"
            path.write_text(text, encoding="utf-8")
            err, out = io.StringIO(), io.StringIO()
            try:
                with (
                    contextlib.redirect_stderr(err),
                    contextlib.redirect_stdout(out),
                    warnings.catch_warnings(),
                ):
                    warnings.simplefilter("ignore")
                    code = main(["run", str(path), "--out", str(Path(folder) / "out")])
            except Exception as exc:
                counts[known_or_fail(exc, "python -m initlab run")] += 1
                return
        stderr = err.getvalue()
        assert code in (0, 2), (code, stderr)
        assert "Traceback" not in stderr, stderr
        if code == 2:
            lines = stderr.strip().splitlines()
            assert 1 <= len(lines) <= 2 and lines[0].startswith("initlab: error:"), stderr
        counts[f"exit {code}"] += 1

    prop()
    report("CLI", counts)
    assert counts["exit 0"] >= 10 and counts["exit 2"] >= 30, counts
