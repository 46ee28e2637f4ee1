"""The experiment file's JSON Schema (`python -m initlab schema`, initlab/fileformat.py).

The schema is checked against draft 2020-12 itself, against every experiment this project
ships or tests with (examples, the README, every preset on every zoo model, the test suite's
experiments), and against the library's own validation: every refusal in test_refusals'
catalogue that JSON Schema can express is refused by the schema too, and a set of tricky
spellings gets the same verdict from both.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from test_refusals import CATALOGUE, CUSTOM_OK, SMALL

from initlab import METHODS, MODELS, PRESETS, Experiment, preset
from initlab.architectures import ARCHITECTURES
from initlab.cli import main
from initlab.experiment import InputSpec
from initlab.fileformat import DIALECT, experiment_schema
from initlab.schemes import MAX_NAME_CHARS, _has_control

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = experiment_schema()
VALIDATOR = Draft202012Validator(SCHEMA)
# hf (Hugging Face architectures) has its own tests: tests/test_hf_*.py
ZOO = [name for name, entry in MODELS.items() if not entry.custom and name != "hf"]


def schema_accepts(data: Any) -> bool:
    return VALIDATOR.is_valid(data)


def library_accepts(data: Any) -> bool:
    try:
        Experiment.from_dict(copy.deepcopy(data), allow_custom=True)
    except ValueError:
        return False
    return True


def problems(data: Any) -> list[str]:
    errors = VALIDATOR.iter_errors(data)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in errors]


# ---------------------------------------------------------------- the schema itself


def test_the_schema_is_a_valid_draft_2020_12_schema():
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == DIALECT == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["title"] == "initlab experiment"


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for v in node.values() for r in refs(v)
        ]
    return [r for v in node for r in refs(v)] if isinstance(node, list) else []


def test_every_reference_resolves_and_every_definition_is_used():
    found = refs(SCHEMA)
    assert all(r.startswith("#/$defs/") for r in found)
    used = {r.removeprefix("#/$defs/") for r in found}
    assert used == set(SCHEMA["$defs"])


def test_the_registries_are_the_schema():
    defs = SCHEMA["$defs"]
    names = [b["properties"]["name"]["const"] for b in defs["model"]["oneOf"]]
    assert list(dict.fromkeys(names)) == list(MODELS)  # hf: one schema per architecture
    for branch in defs["model"]["oneOf"]:
        entry = MODELS[branch["properties"]["name"]["const"]]
        extra = {"factory", "kwargs"} if entry.custom else set()
        params = entry.params
        if entry.name == "hf":  # an architecture's own config fields
            params += ARCHITECTURES[branch["properties"]["architecture"]["const"]].params
        assert set(branch["properties"]) == {"name", *extra, *(p.name for p in params)}
    for name, method in METHODS.items():
        declared = {"method", "scale", *(p.name for p in method.params)}
        assert set(defs[f"method.{name}"]["properties"]) == declared
    for form in defs["scheme"]["oneOf"]:
        assert form["properties"]["preset"]["enum"] == list(PRESETS)
    assert set(SCHEMA["properties"]) == set(Experiment.model_fields)
    assert set(defs["input"]["properties"]) == set(InputSpec.model_fields)


def test_declared_bounds_and_choices_are_in_the_schema():
    kaiming = SCHEMA["$defs"]["method.kaiming_normal"]["properties"]
    assert kaiming["mode"]["enum"] == ["fan_in", "fan_out"]
    assert kaiming["a"] == {**kaiming["a"], "type": "number", "minimum": 0, "maximum": 1e30}
    sparse = SCHEMA["$defs"]["method.sparse"]["properties"]["sparsity"]
    assert (sparse["minimum"], sparse["exclusiveMaximum"]) == (0, 1)
    groups = SCHEMA["$defs"]["method.dirac"]["properties"]["groups"]
    assert (groups["type"], groups["minimum"]) == ("integer", 1)
    mlp = SCHEMA["$defs"]["model"]["oneOf"][list(MODELS).index("mlp")]["properties"]
    assert (mlp["depth"]["minimum"], mlp["depth"]["maximum"]) == (1, 1000)


# ---------------------------------------------------------------- what must validate


def check_valid(data: dict[str, Any]) -> None:
    assert library_accepts(data), "the library refuses it"
    assert not problems(data), problems(data)
    normalized = Experiment.from_dict(copy.deepcopy(data), allow_custom=True).to_dict()
    assert not problems(normalized), ("its to_dict()", problems(normalized))


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.json")), ids=lambda p: p.name)
def test_every_example_file_validates(path: Path):
    check_valid(json.loads(path.read_text(encoding="utf-8")))


def test_the_readme_experiment_validates():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", readme, flags=re.S)]
    experiments = [b for b in blocks if isinstance(b, dict) and "schemes" in b]
    assert experiments, "the README shows an experiment file"
    for data in experiments:
        check_valid(data)


@pytest.mark.parametrize("key", list(PRESETS))
def test_every_preset_as_an_experiment_validates(key: str):
    """On every zoo model: as `{"preset": key}` and as the rules it stands for."""
    for name in ZOO:
        model = {"name": name, **SMALL[name]}
        rules = preset(key, activation=MODELS[name].activation(MODELS[name].normalize(model)))
        schemes = [{"preset": key}, {**rules.to_dict(), "name": "as rules"}]
        assert not problems({"model": model, "schemes": schemes}), (name, key)


def suite_experiments() -> dict[str, dict[str, Any]]:
    """Module-level experiment literals of the test suite (dicts, or JSON text)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            value = _literal(node)
            candidates = value.values() if _is_collection(value) else [value]
            for i, data in enumerate(candidates):
                if isinstance(data, dict) and {"model", "schemes"} <= set(data):
                    found[f"{path.name}:{node.lineno}:{i}"] = data
    return found


def _literal(node: ast.stmt) -> Any:
    if not isinstance(node, ast.Assign | ast.AnnAssign) or node.value is None:
        return None
    try:
        value = ast.literal_eval(node.value)
        return json.loads(value) if isinstance(value, str) else value
    except (ValueError, SyntaxError, TypeError):
        return None


def _is_collection(value: Any) -> bool:
    return isinstance(value, dict) and "model" not in value


SUITE = suite_experiments()


def test_the_suite_has_experiments_to_check():
    assert len(SUITE) >= 6, list(SUITE)


@pytest.mark.parametrize("where", list(SUITE))
def test_the_test_suites_experiments_get_the_same_verdict(where: str):
    data = SUITE[where]
    if library_accepts(data):
        check_valid(data)
    else:
        assert not schema_accepts(data)


def test_a_custom_model_experiment_validates():
    check_valid({"model": CUSTOM_OK, "input": {"shape": [4]}, "schemes": [{"preset": "zeros"}]})


# ---------------------------------------------------------------- what must be refused

# Refusals that need one value compared with another, the environment, or a value's
# magnitude inside a text: the library's business, not a JSON Schema's.
BEYOND_A_SCHEMA = {
    "uniform low above high": "two values compared",
    "uniform low equals high": "two values compared",
    "uniform a above b": "two values compared",
    "uniform a equals b": "two values compared",
    "trunc_normal a above b": "two values compared",
    "trunc_normal mean far outside [a, b]": "three values compared",
    "vocab_size above the model's": "compared with the model",
    "shape wrong for lenet": "compared with the model",
    "shape wrong for an mlp": "compared with the model",
    "mlp depth disagrees with widths": "two values compared",
    "mlp width disagrees with widths": "two values compared",
    "transformer n_heads does not divide d_model": "two values compared",
    "scheme names repeated": "unique names across objects",
    "preset names repeated": "unique names across objects",
    "custom model without permission": "permission comes from the environment",
    "custom factory cannot be imported": "needs an import",
    "custom factory not callable": "needs an import",
    "xavier gain leaky_relu(1e300)": "a slope's magnitude inside a text",
}


def json_catalogue() -> list[Any]:
    """test_refusals' parse-stage refusals of plain JSON data (NaN and inf are not JSON)."""
    out = []
    for bad in CATALOGUE:
        if bad.stage != "parse" or bad.known or not isinstance(bad.data, dict):
            continue
        try:
            json.dumps(bad.data, allow_nan=False)
        except ValueError:
            continue
        out.append(bad)
    return out


def test_every_expressible_refusal_of_the_catalogue_is_refused_by_the_schema():
    catalogue = json_catalogue()
    assert len(catalogue) > 300
    accepted = {bad.what for bad in catalogue if schema_accepts(bad.data)}
    assert accepted - set(BEYOND_A_SCHEMA) == set()
    # Each exception is still a catalogue entry the schema accepts: the list stays exact.
    assert accepted == set(BEYOND_A_SCHEMA)


def exp(**changes: Any) -> dict[str, Any]:
    base = {"model": {"name": "mlp", "depth": 2, "width": 8}, "schemes": [{"preset": "zeros"}]}
    return {**base, **changes}


def spec(weight: Any, **rule: Any) -> dict[str, Any]:
    return exp(schemes=[{"name": "s", "rules": [{"layers": "Linear", "weight": weight, **rule}]}])


LONG = "x" * (MAX_NAME_CHARS - 2)
AGREEMENT = {
    "method with underscore and spaces": spec(" xavier_normal_ "),
    "method object with underscore": spec({"method": "kaiming_normal_", "mode": "fan_out"}),
    "method in capitals": spec("XAVIER_NORMAL"),
    "method with two underscores": spec("zeros__"),
    "method unknown": spec({"method": "he_normal"}),
    "method missing": spec({"gain": 1.0}),
    "weight null": spec(None),
    "weight default": spec("default"),
    "default with scale 1": spec({"method": "default", "scale": 1}),
    "default with scale 2": spec({"method": "default", "scale": 2.0}),
    "counted scale with spaces": spec({"method": "normal", "scale": " 1 / sqrt( matches ) "}),
    "counted scale misspelt": spec({"method": "normal", "scale": "1/sqrt(match)"}),
    "gain in capitals": spec({"method": "xavier_normal", "gain": " TANH "}),
    "gain leaky_relu slope": spec({"method": "xavier_normal", "gain": "Leaky_ReLU(0.2)"}),
    "gain leaky_relu colon": spec({"method": "xavier_normal", "gain": "leaky_relu: -1e-2"}),
    "gain leaky_relu two parens": spec({"method": "xavier_normal", "gain": "leaky_relu(0.2))"}),
    "gain leaky_relu bad number": spec({"method": "xavier_normal", "gain": "leaky_relu(1.2.3)"}),
    "gain number given as text": spec({"method": "xavier_normal", "gain": "2"}),
    "parameter of another method": spec({"method": "normal", "gain": 1.0}),
    "choice from another method": spec({"method": "kaiming_normal", "mode": "fan_avg"}),
    "int parameter as a whole float": spec({"method": "dirac", "groups": 2.0}),
    "layers with spaces around": spec("zeros", layers=" Linear\t"),
    "layers ending in a newline": spec("zeros", layers="Linear\n"),
    "layers dotted": spec("zeros", layers="torch.nn.Linear"),
    "layers starting with a digit": spec("zeros", layers="1Linear"),
    "layers with a space inside": spec("zeros", layers="Lin ear"),
    "layers of 200 characters": spec("zeros", layers="L" * MAX_NAME_CHARS),
    "layers of 201 characters": spec("zeros", layers="L" * (MAX_NAME_CHARS + 1)),
    "name glob with a newline": spec("zeros", name="*.c_proj\n"),
    "name glob empty": spec("zeros", name=""),
    "name glob null": spec("zeros", name=None),
    "name glob with a bidi override": spec("zeros", name="*\u202e.c_proj"),
    "param glob": spec("zeros", param="weight_hh_l*"),
    "param glob empty": spec("zeros", param=""),
    "rule field unknown": spec("zeros", params="weight"),
    "scheme name padded to 200": exp(schemes=[{"name": f"  a{LONG}b  ", "preset": "zeros"}]),
    "scheme name of 201": exp(schemes=[{"name": f"a{LONG}bc", "preset": "zeros"}]),
    "scheme name ending in a newline": exp(schemes=[{"name": "K\n", "preset": "zeros"}]),
    "scheme name of spaces": exp(schemes=[{"name": "   ", "preset": "zeros"}]),
    "scheme name non-ASCII": exp(schemes=[{"name": "Kaiming · tanh ✓", "preset": "zeros"}]),
    "scheme name with a no-break space": exp(schemes=[{"name": "a\u00a0b", "preset": "zeros"}]),
    "scheme without rules or preset": exp(schemes=[{"name": "s"}]),
    "scheme with rules and preset": exp(schemes=[{"rules": [], "preset": "zeros"}]),
    "preset unknown": exp(schemes=[{"preset": "he"}]),
    "tokens into a transformer": exp(
        model={"name": "transformer", **SMALL["transformer"]}, input={"distribution": "tokens"}
    ),
    "mlp widths null": exp(model={"name": "mlp", "widths": None}),
    "mlp widths": exp(model={"name": "mlp", "widths": [8, 4, 2]}),
    "custom with tokens and vocab_size": exp(
        model=CUSTOM_OK, input={"shape": [4], "distribution": "tokens", "vocab_size": 5}
    ),
    "custom factory with a newline": exp(
        model={**CUSTOM_OK, "factory": "torch.nn:Linear\n"}, input={"shape": [4]}
    ),
    "top-level field unknown": exp(seed=[0]),
    "seeds a text": exp(seeds="0"),
    "input shape empty": exp(input={"shape": []}),
}


@pytest.mark.parametrize("case", list(AGREEMENT))
def test_the_schema_and_the_library_agree(case: str):
    data = AGREEMENT[case]
    assert schema_accepts(data) == library_accepts(data), problems(data) or "schema accepts"


def test_the_agreement_cases_accept_and_refuse():
    verdicts = [library_accepts(data) for data in AGREEMENT.values()]
    assert 15 <= sum(verdicts) <= len(verdicts) - 15


def test_printable_text_is_what_schemes_accept():
    """The class of refused characters is derived from the same predicate as the library's:
    over the whole Basic Multilingual Plane and a sample above it, they agree."""
    printable = re.compile(SCHEMA["$defs"]["printable"]["pattern"])
    codes = [*range(0x10000), *range(0x10000, sys.maxunicode + 1, 97), 0xE0001, 0x1F600]
    disagree = [c for c in codes if bool(printable.search(chr(c))) == _has_control(chr(c))]
    assert disagree == []


# ---------------------------------------------------------------- the command


def test_cli_prints_the_schema_as_json(capsys):
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == SCHEMA
    Draft202012Validator.check_schema(printed)


def test_cli_help_lists_the_schema_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "schema" in capsys.readouterr().out
