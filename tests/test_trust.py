"""Files, links and the CLI are data: every read bounded, every input answered in words, work
the guard can see, CSV a spreadsheet can't run, `--out` checked before anything runs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import initlab
from initlab import Experiment
from initlab.cli import main
from initlab.csvout import neutralized, write_csv
from initlab.experiment import MAX_GLOBS
from initlab.guard import PER_MATCH_S, estimate, matching_seconds
from initlab.outline import meta_model
from initlab.reading import MAX_FILE_BYTES, read_bounded
from initlab.schemes import MAX_RULES

BASE: dict[str, Any] = {
    "model": {"name": "mlp", "depth": 2, "width": 8},
    "input": {"batch_size": 8},
    "schemes": [{"name": "z", "preset": "zeros"}],
}


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "exp.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def _cli(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "initlab", *args], input=stdin,
                          capture_output=True, timeout=120)  # fmt: skip


# ---------------------------------------------------------------- bounded reads


def test_a_device_is_read_no_further_than_the_cap() -> None:
    with pytest.raises(ValueError, match=r"/dev/zero: larger than 1000 KB"):
        Experiment.from_json("/dev/zero")


def test_a_pipe_on_stdin_is_read_and_bounded() -> None:
    ok = _cli(["code", "/dev/stdin"], stdin=json.dumps(BASE).encode())
    assert ok.returncode == 0, ok.stderr
    assert b"def initialize_weights" in ok.stdout
    big = _cli(["code", "/dev/stdin"], stdin=b" " * (MAX_FILE_BYTES + 10))
    assert big.returncode == 2
    assert big.stderr.decode().strip().endswith("larger than 1000 KB; not an experiment")


def test_a_folder_is_not_an_experiment(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a folder, not an experiment file"):
        Experiment.from_json(tmp_path)


# ---------------------------------------------------------------- unbounded work, refused


def _globs(n: int) -> list[dict[str, Any]]:
    return [{"layers": "Linear", "name": f"*.x{i}", "weight": "zeros"} for i in range(n)]


def test_tens_of_thousands_of_globs_are_refused_before_any_matching(tmp_path: Path) -> None:
    rules = [{"layers": "A", "name": f"{i:x}"} for i in range(33_000)]
    data = {**BASE, "schemes": [{"name": "g", "rules": rules}]}
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
    assert path.stat().st_size < MAX_FILE_BYTES  # the 979 KB file fits the read cap
    with pytest.raises(ValueError, match=rf"schemes.0.rules: at most {MAX_RULES} rules"):
        Experiment.from_json(path)


def test_globs_are_capped_over_the_whole_experiment() -> None:
    per = MAX_RULES
    schemes = [{"name": f"s{i}", "rules": _globs(per)} for i in range(MAX_GLOBS // per + 1)]
    with pytest.raises(ValueError, match=rf"at most {MAX_GLOBS} rules with a name glob"):
        Experiment.from_dict({**BASE, "schemes": schemes})


def test_the_guard_counts_matching_rules_against_modules() -> None:
    schemes = [{"name": f"s{i}", "rules": _globs(MAX_RULES)} for i in range(2)]
    exp = Experiment.from_dict({**BASE, "seeds": [0, 1, 2], "schemes": schemes})
    model = meta_model(exp.model)
    modules = len(list(model.modules()))
    walks = 3 + 3  # three seeds, validation, and the warnings' two structural walks
    assert matching_seconds(exp, model) == pytest.approx(
        modules * 2 * MAX_RULES * walks * PER_MATCH_S
    )
    plain = [{"name": f"s{i}", "preset": "zeros"} for i in range(2)]
    bare = Experiment.from_dict({**BASE, "seeds": [0, 1, 2], "schemes": plain})
    extra = estimate(exp, model).seconds - estimate(bare, model).seconds
    assert extra == pytest.approx(matching_seconds(exp, model) - matching_seconds(bare, model))


# ---------------------------------------------------------------- answers, not tracebacks


def test_deep_brackets_in_text_are_an_answer() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        Experiment.from_text("[" * 5000)


def test_985_deep_nesting_under_a_field_is_one_line_from_the_cli(tmp_path: Path) -> None:
    text = json.dumps(BASE).replace('"depth": 2', '"depth": ' + "[" * 985 + "]" * 985)
    proc = _cli(["run", str(_write(tmp_path, text)), "--out", str(tmp_path / "out")])
    assert proc.returncode == 2
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("initlab: error: model.depth: must be")
    assert len(lines[0]) < 300


def test_a_dict_for_a_preset_is_an_answer() -> None:
    with pytest.raises(ValueError, match=r"schemes.0.preset: unknown preset \{'a': 1\}"):
        Experiment.from_dict({**BASE, "schemes": [{"preset": {"a": 1}, "rules": []}]})


def test_duplicate_keys_are_refused_naming_the_key() -> None:
    text = '{"model": {"name": "mlp"}, "seeds": [0], "seeds": [1], "schemes": []}'
    with pytest.raises(ValueError, match=r"the key 'seeds' appears twice"):
        Experiment.from_text(text)


# ---------------------------------------------------------------- CSV and --out


FORMULAS = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


def test_text_cells_that_start_like_formulas_are_neutralized() -> None:
    frame = pd.DataFrame({"scheme": [*FORMULAS, "plain"], "act_mean": [-1.0] * 7})
    out = neutralized(frame)
    assert list(out["scheme"]) == ["'" + f for f in FORMULAS] + ["plain"]
    assert list(out["act_mean"]) == [-1.0] * 7  # numbers stay numbers
    assert frame["scheme"].iloc[0] == FORMULAS[0]  # the caller's frame is left alone


def test_the_cli_writes_neutral_csv(tmp_path: Path) -> None:
    data = {**BASE, "schemes": [{"name": FORMULAS[0], "preset": "kaiming_normal"}]}
    assert main(["run", str(_write(tmp_path, data)), "--out", str(tmp_path / "o")]) == 0
    for name in ("layers", "params", "histograms"):
        first = (tmp_path / "o" / f"{name}.csv").read_text().splitlines()[1]
        assert first.startswith("\"'=cmd") or first.startswith("'=cmd"), first
        assert pd.read_csv(tmp_path / "o" / f"{name}.csv")["scheme"].iloc[0] == "'" + FORMULAS[0]


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("", "--out: must name a folder"),
        ("{file}", "is an existing file"),
        ("{file}/sub", "is a file, so"),
    ],
)
def test_out_is_checked_before_any_work(tmp_path, capsys, monkeypatch, out, message) -> None:
    def no_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the experiment ran before --out was checked")

    monkeypatch.setattr(initlab.cli, "run", no_run)
    monkeypatch.setattr(Experiment, "from_json", no_run)
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["run", "exp.json", "--out", out.format(file=afile)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_fifo_nobody_writes_to_is_refused_in_bounded_time(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="no end of data within 1 s"):
        read_bounded(fifo, seconds=1.0)


def test_a_carriage_return_inside_a_text_cell_stays_in_its_cell(tmp_path: Path) -> None:
    frame = pd.DataFrame({"layer": ["a\r=3+4", "\r=cmd"], "act_var": [1.0, 2.0]})
    path = tmp_path / "t.csv"
    write_csv(frame, path)
    rows = list(csv.reader(path.open(newline="")))
    assert rows == [["layer", "act_var"], ["a\r=3+4", "1.0"], ["'\r=cmd", "2.0"]]
    raw = path.read_bytes()
    assert raw.count(b"\n") == 3 and b'"a\r=3+4"' in raw  # quoted: three records, no extra row


def test_out_with_a_tilde_writes_every_file_into_the_one_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    data = _write(tmp_path, BASE)
    assert main(["run", str(data), "--out", "~/res"]) == 0
    assert sorted(p.name for p in (tmp_path / "~" / "res").iterdir()) == [
        "experiment.json",
        "histograms.csv",
        "layers.csv",
        "params.csv",
        "report.html",
    ]
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("name", ["\r=cmd", "a\n", " a", "\x1b[2J"])
def test_names_built_in_code_are_kept_exactly_or_refused(name: str) -> None:
    with pytest.raises(ValueError):
        initlab.Scheme(name)
    with pytest.raises(ValueError):
        initlab.Rule("Linear" + name)


def test_the_refused_factory_is_quoted_and_short() -> None:
    d = {**BASE, "model": {"name": "custom", "factory": "\x1b[2J" + "x" * 5000}}
    with pytest.raises(ValueError) as info:
        Experiment.from_dict(d, allow_custom=False)
    message = str(info.value)
    assert "\x1b" not in message and "\\x1b" in message and len(message) < 400
