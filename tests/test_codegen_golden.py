"""Golden files of exported code: the recipe on LeNet and GPT-2 on the zoo's transformer,
compared exactly (`pytest --update-golden` rewrites them after an intended change)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from initlab.codegen import load_initializer, to_code
from initlab.models import MODELS, build_model, normalize_model_spec
from initlab.presets import preset
from initlab.schemes import Scheme, apply_scheme

GOLDEN = Path(__file__).parent / "golden"
CASES = {
    "recipe_lenet.py": ("recipe", {"name": "lenet"}),
    "gpt2_transformer.py": ("gpt2", {"name": "transformer"}),
}


def _case(file: str) -> tuple[Scheme, dict]:
    key, spec = CASES[file]
    spec = normalize_model_spec(spec)
    return preset(key, MODELS[spec["name"]].activation(spec)), spec


@pytest.mark.parametrize("file", CASES)
def test_export_matches_its_golden_file(file: str, update_golden: bool) -> None:
    scheme, spec = _case(file)
    code = to_code(scheme, build_model(spec, seed=0))
    if update_golden:
        (GOLDEN / file).write_text(code, encoding="utf-8")
    assert code == (GOLDEN / file).read_text(encoding="utf-8")


@pytest.mark.parametrize("file", CASES)
def test_golden_file_is_bit_identical_to_apply_scheme(file: str) -> None:
    scheme, spec = _case(file)
    applied, exported = build_model(spec, seed=1), build_model(spec, seed=1)
    apply_scheme(applied, scheme, torch.Generator().manual_seed(2))
    code = (GOLDEN / file).read_text(encoding="utf-8")
    load_initializer(code)(exported, torch.Generator().manual_seed(2))
    for (name, a), b in zip(
        applied.state_dict().items(), exported.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_the_recipe_on_lenet_is_short() -> None:
    code = (GOLDEN / "recipe_lenet.py").read_text(encoding="utf-8")
    body = code.split("-> None:\n", 1)[1].splitlines()
    assert len(body) <= 15, body
    assert "nn.init.xavier_normal_(m.weight, generator=generator)" in code
    assert "for m in model.modules():" in code and "_untied" not in code


def test_golden_files_are_ruff_clean() -> None:
    pytest.importorskip("ruff")
    for command in (["format", "--check"], ["check"]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--isolated", str(GOLDEN)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
