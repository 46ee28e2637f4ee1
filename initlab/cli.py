"""`python -m initlab ...`: run an experiment file, train its schemes briefly, run a sweep (a
grid of experiments, locally or on a Ray cluster), list what exists, export code, print the
experiment file's JSON Schema.

Any invalid input ends with one or two lines on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from initlab.codegen import to_module
from initlab.experiment import Experiment, Results, run
from initlab.fileformat import experiment_schema
from initlab.methods import METHODS
from initlab.models import MODELS
from initlab.outline import meta_model
from initlab.plots_sweep import report_html
from initlab.presets import PRESETS
from initlab.report import Extras, build_report
from initlab.spectrum import spectrum_table
from initlab.sweep import Sweep, run_sweep, write_results
from initlab.theory import predict
from initlab.training import Trainer, TrainingResults

EXIT_INVALID = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m initlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run an experiment file; write CSV tables")
    run_p.add_argument("experiment", help="experiment JSON file")
    run_p.add_argument("--out", required=True, help="folder for the results")
    run_p.add_argument(
        "--theory", action="store_true", help="also the mean-field prediction (theory.csv)"
    )
    run_p.add_argument(
        "--spectrum",
        action="store_true",
        help="also the input-output Jacobian's singular values (spectrum.csv)",
    )
    run_p.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        help="run on this device (overrides the experiment's 'device')",
    )
    train_p = sub.add_parser(
        "train", help="train each scheme briefly (the experiment's 'training'); write CSV tables"
    )
    train_p.add_argument("experiment", help="experiment JSON file")
    train_p.add_argument("--out", required=True, help="folder for the results")
    code_p = sub.add_parser("code", help="print a scheme as an initialize_weights function")
    code_p.add_argument("experiment", help="experiment JSON file")
    code_p.add_argument("--scheme", help="scheme name (default: every scheme)")
    sweep_p = sub.add_parser(
        "sweep", help="run a grid of experiments (a sweep file); write sweep.csv and a report"
    )
    sweep_p.add_argument("sweep", help='sweep JSON file: {"base": experiment, "axes": {...}}')
    sweep_p.add_argument("--out", required=True, help="folder for the results (resumed if there)")
    sweep_p.add_argument("--workers", type=int, help="local processes (default: the cores)")
    sweep_p.add_argument(
        "--ray", metavar="ADDRESS", help="run each cell as a task on this Ray cluster ('auto')"
    )
    for p in (run_p, train_p, code_p, sweep_p):
        p.add_argument("--allow-custom-models", action="store_true",
                       help="allow a 'custom' model (imports and runs your factory's code); "
                       "or set INITLAB_ALLOW_CUSTOM_MODELS=1")  # fmt: skip
    for name, text in (("methods", "list methods and their parameters"),
                       ("presets", "list presets"), ("models", "list zoo models"),
                       ("schema", "print the experiment file's JSON Schema")):  # fmt: skip
        sub.add_parser(name, help=text)
    return parser


def _progress() -> Callable[[float, str], None]:
    """Report on stderr, but only once a run has taken more than a second."""
    start = time.perf_counter()

    def report(fraction: float, message: str) -> None:
        if time.perf_counter() - start > 1.0:
            print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)

    return report


def _allow_custom(args: argparse.Namespace) -> bool | None:
    """The flag enables custom models; without it, INITLAB_ALLOW_CUSTOM_MODELS decides."""
    return True if args.allow_custom_models else None


def check_out(out: str) -> Path:
    """`--out` before any work: a folder that exists or can be made, never an existing file
    (found only after a long run, the error would cost the whole run)."""
    if not out.strip():
        raise ValueError("--out: must name a folder for the results; got ''")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out: {out!r} is an existing file; give a folder")
    existing = next(p for p in (path, *path.parents) if p.exists() or p == Path(p.anchor))
    if not existing.is_dir():
        raise ValueError(f"--out: {str(existing)!r} is a file, so {out!r} can't be a folder")
    if not os.access(existing, os.W_OK):
        raise ValueError(f"--out: can't write into {str(existing)!r}")
    return path


def cmd_run(args: argparse.Namespace) -> int:
    out = check_out(args.out)
    exp = Experiment.from_json(args.experiment, allow_custom=_allow_custom(args))
    if args.device:
        exp = exp.model_copy(update={"device": args.device})
    results: Results = run(exp, progress=_progress())
    extras = Extras(
        predict(exp, results) if args.theory else None,
        spectrum_table(exp) if args.spectrum else None,
    )
    _write_all(exp, results, None, out, extras)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """The probe's tables, then the training's, next to them; progress on stderr."""
    out = check_out(args.out)
    exp = Experiment.from_json(args.experiment, allow_custom=_allow_custom(args))
    if exp.training is None:
        raise ValueError(
            f"{args.experiment}: no 'training' section; add one, e.g. "
            '"training": {"task": "teacher", "steps": 300}'
        )
    trainer = Trainer(exp)  # refuses an unsuitable task or a run over budget before any work
    results: Results = run(exp, progress=_progress())
    trainer.run(progress=_progress())
    _write_all(exp, results, trainer.results(), out)
    return 0


def _write_all(
    exp: Experiment,
    results: Results,
    training: TrainingResults | None,
    out: Path,
    extras: Extras | None = None,
) -> None:
    print_warnings(results)
    extras = extras or Extras()
    paths = results.write_csv(out)
    for part in (training, extras.theory, extras.spectrum):
        if part is not None:
            paths += part.write_csv(out)
    (out / "experiment.json").write_text(exp.to_json() + "\n", encoding="utf-8")
    names = ("layers", "params", "histograms", "warnings", "lsuv")
    tables = {name: getattr(results, name) for name in names}
    report = build_report(exp, tables, training, extras)
    (out / "report.html").write_text(report, encoding="utf-8")
    for path in [*paths, out / "experiment.json", out / "report.html"]:
        print(path)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Every cell not finished in --out; exit 1 when a cell failed (the others still ran)."""
    out = check_out(args.out)
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers: must be 1 or more; got {args.workers}")
    sweep = Sweep.from_json(args.sweep, allow_custom=_allow_custom(args))
    executor = "ray" if args.ray else "pool"
    results = run_sweep(sweep, out, executor, args.workers, args.ray, _sweep_progress())
    if results.reused:
        print(f"initlab: {results.reused} finished cells reused from {out}", file=sys.stderr)
    paths = write_results(results, out)
    report = report_html(results.table, results.failed, sweep.to_dict(), list(sweep.axes))
    (out / "sweep_report.html").write_text(report, encoding="utf-8")
    for row in results.failed.itertuples(index=False):
        print(f"initlab: failed: {row.coordinates}: {row.error}", file=sys.stderr)
    for path in [*paths, out / "sweep_report.html"]:
        print(path)
    return 1 if len(results.failed) else 0


def _sweep_progress() -> Callable[[int, int, float | None], None]:
    """Cells done / total and the time left, on stderr, at most once a second (and at the end)."""
    last = [0.0]

    def report(done: int, total: int, left: float | None) -> None:
        now = time.perf_counter()
        if now - last[0] >= 1.0 or done == total:
            last[0] = now
            eta = f", about {left:.0f} s left" if left is not None and done < total else ""
            print(f"[{done}/{total}] cells done{eta}", file=sys.stderr, flush=True)

    return report


def print_warnings(results: Results) -> None:
    """One stderr line per warning; a warning is advice, so the exit status stays 0."""
    for row in results.warnings.itertuples(index=False):
        print(f"initlab: warning: {row.scheme}: {row.message}", file=sys.stderr)


def cmd_code(args: argparse.Namespace) -> int:
    exp = Experiment.from_json(args.experiment, allow_custom=_allow_custom(args))
    schemes = [s for s in exp.schemes if args.scheme in (None, s.name)]
    if not schemes:
        names = ", ".join(repr(s.name) for s in exp.schemes)
        raise ValueError(f"--scheme: no scheme named {args.scheme!r}; the experiment has {names}")
    # the outline is enough to write the code for: types and names, no memory
    print(to_module(schemes, meta_model(exp.model, allow_custom=True)), end="")
    return 0


def _print_entry(head: str, params: tuple) -> None:
    """One registry entry and its declared parameters (methods and models alike)."""
    print(head)
    for p in params:
        print(f"{'':4}{p.name} = {p.default!r}: {p.help} ({p.describe()})")


def cmd_methods(args: argparse.Namespace) -> int:
    for m in METHODS.values():
        _print_entry(f"{m.name:18} {m.summary}  [{m.ranks_text()}]", m.params)
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    for p in PRESETS.values():
        print(f"{p.name:24} {p.why}\n{'':26}source: {p.source}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    for m in MODELS.values():
        _print_entry(f"{m.name:12} {m.summary}", m.params)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """The experiment file's JSON Schema (draft 2020-12), for editors and validators."""
    print(json.dumps(experiment_schema(), indent=2))
    return 0


COMMANDS = {
    "run": cmd_run,
    "train": cmd_train,
    "code": cmd_code,
    "sweep": cmd_sweep,
    "methods": cmd_methods,
    "presets": cmd_presets,
    "models": cmd_models,
    "schema": cmd_schema,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # `python -m initlab methods | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError) as exc:
        print(f"initlab: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_INVALID
    except RecursionError:  # belt and braces: parsing already answers deep nesting
        print("initlab: error: the input is nested too deeply", file=sys.stderr)
        return EXIT_INVALID


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {exc.filename}"
    lines = str(exc).splitlines() or [type(exc).__name__]
    more = f"\n(and {len(lines) - 1} more problem(s); fix this one first)" if len(lines) > 1 else ""
    return lines[0] + more
