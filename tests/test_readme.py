"""The README's library example runs as written, and its two set-up commands are the ones CI
uses."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_the_library_example_runs(capsys) -> None:
    blocks = python_blocks()
    assert blocks, "the README shows the library API"
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "Kaiming" in out and "def initialize_weights" in out


def test_exactly_two_setup_commands_and_ci_runs_the_test_one() -> None:
    setup = README.split("## Set up", 1)[1].split("##", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", setup, flags=re.S)[0].strip().splitlines()
    assert len(commands) == 2
    assert commands[0].endswith("streamlit run app.py")
    test_command = commands[1].split("&&")[-1].strip()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test_command in ci
    assert "requirements-dev.txt" in commands[1] and "requirements-dev.txt" in ci


def test_the_notebook_example_runs() -> None:
    block = next(b for b in python_blocks() if "initlab.compare(" in b)
    namespace: dict[str, object] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    res = namespace["res"]
    assert set(res.layers["scheme"]) == {"As constructed", "Xavier normal (activation gain)"}
