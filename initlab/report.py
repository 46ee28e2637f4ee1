"""A standalone HTML report: the app's figures and tables in one file that opens offline
(plotly.js is embedded once, so no network is needed to view it)."""

from __future__ import annotations

import html
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go

from initlab import plots, plots_lsuv, plots_theory, plots_training
from initlab.codegen import to_code
from initlab.experiment import Experiment
from initlab.health import default_role, layer_health, verdicts
from initlab.outline import meta_model
from initlab.spectrum import Spectrum
from initlab.theory import Theory
from initlab.training import TrainingResults
from initlab.training_words import training_verdicts

STYLE = """
body { font-family: Inter, Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; }
h1 { margin-bottom: 0.1em; } .sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; font-size: 12px; } td, th { padding: 2px 8px; }
tr:nth-child(even) { background: #f6f6f6; } pre { background: #f6f6f6; padding: 1em;
overflow-x: auto; } .dot { font-size: 20px; }
"""


def _figures(
    tables: dict[str, pd.DataFrame], colors: dict[str, str], input_var: float | None
) -> list[go.Figure]:
    """The page's figures: variance by depth on the model's own depth (its blocks where it
    has them), histograms with exact moments."""
    layers, hists = tables["layers"], tables["histograms"]
    role = default_role(layers)
    figs = [
        plots.variance_by_depth(layers, role=role, colors=colors, input_var=input_var),
        plots.grad_variance_by_depth(layers, role=role, colors=colors),
    ]
    moments = plots.histogram_moments(layers, tables["params"])
    for kind in plots.HISTOGRAM_KINDS:
        if (hists["kind"] == kind).any():
            grid = plots.histogram_grid(hists, kind, colors=colors, max_rows=6, moments=moments)
            figs.append(grid)
    return figs


def _figure_html(figs: list[go.Figure]) -> list[str]:
    # plotly.js goes into the first figure only; the rest reuse it.
    return [fig.to_html(full_html=False, include_plotlyjs=i == 0) for i, fig in enumerate(figs)]


def _verdicts_html(exp: Experiment, layers: pd.DataFrame, colors: dict[str, str]) -> str:
    input_var = exp.input_variance()
    items = [
        f"<li><span class='dot' style='color:{colors[s]}'>●</span> <b>{html.escape(s)}</b>: "
        f"{html.escape(v)}</li>"
        for s, v in verdicts(layers, input_var).items()
    ]
    return "<ul>" + "".join(items) + "</ul>"


def _warnings_html(tables: dict[str, pd.DataFrame]) -> str:
    """The warnings table as a list; every text in it is escaped (scheme names and the rule
    labels and globs quoted in messages come from the experiment)."""
    warnings = tables.get("warnings")
    if warnings is None:
        return ""
    if warnings.empty:
        return "<h2>Warnings</h2><p>None.</p>"
    items = [
        f"<li><b>{html.escape(str(w.scheme))}</b> ({html.escape(str(w.check))}): "
        f"{html.escape(str(w.message))}</li>"
        for w in warnings.itertuples(index=False)
    ]
    return "<h2>Warnings</h2><ul>" + "".join(items) + "</ul>"


def _training_html(training: TrainingResults | None, colors: dict[str, str]) -> list[str]:
    """The training section: one line per scheme, then its figures (plotly.js already loaded)."""
    if training is None:
        return []
    lines = training_verdicts(training.training, training.runs, training.chance, training.floor)
    items = [
        f"<li><span class='dot' style='color:{colors.get(s, '#444')}'>●</span> "
        f"<b>{html.escape(s)}</b>: {html.escape(v)}</li>"
        for s, v in lines.items()
    ]
    note = f"<p>{html.escape(training.note)}</p>" if training.note else ""
    figs = [
        plots_training.loss_figure(training.training, training.floor, training.chance),
        plots_training.accuracy_figure(training.training),
        plots_training.update_ratio_figure(training.params),
        plots_training.activation_heatmap(training.layers),
    ]
    body = [fig.to_html(full_html=False, include_plotlyjs=False) for fig in figs if fig]
    head = f"<h2>Training: {html.escape(training.task)}, {training.steps} steps</h2>"
    return [head, note, "<ul>" + "".join(items) + "</ul>", *body]


@dataclass(frozen=True)
class Extras:
    """What the report shows when it was asked for: the theory and the Jacobian spectrum."""

    theory: Theory | None = None
    spectrum: Spectrum | None = None


def _theory_html(extras: Extras, layers: pd.DataFrame, colors: dict[str, str]) -> list[str]:
    """Predicted against measured variance (dashed: the mean-field length map), one line per
    scheme (its phase, or why there is no prediction), and the spectrum's histograms."""
    parts: list[str] = []
    if extras.theory is not None:
        rows = extras.theory.schemes.itertuples(index=False)
        items = [
            f"<li><b>{html.escape(str(r.scheme))}</b>: {html.escape(_said(r))}</li>" for r in rows
        ]
        fig = plots_theory.variance_with_theory(layers, extras.theory.layers, colors=colors)
        parts += ["<h2>Theory</h2>", "<ul>" + "".join(items) + "</ul>"]
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False))
    if extras.spectrum is not None:
        sp = extras.spectrum
        fig = plots_theory.spectrum_histograms(sp.values, sp.summary, colors=colors)
        parts += [
            "<h2>Jacobian spectrum</h2>",
            fig.to_html(full_html=False, include_plotlyjs=False),
        ]
        parts.append(sp.summary.to_html(index=False, float_format="%.4g"))
    return parts


def _lsuv_html(tables: dict[str, pd.DataFrame], colors: dict[str, str]) -> list[str]:
    """The LSUV passes of every layer a scheme gives `lsuv` (the whole log is lsuv.csv)."""
    log = tables.get("lsuv")
    if log is None or log.empty:
        return []
    fig = plots_lsuv.lsuv_log(log, colors)
    summary = plots_lsuv.lsuv_summary(log).to_html(index=False, float_format="%.4g")
    return ["<h2>LSUV</h2>", fig.to_html(full_html=False, include_plotlyjs=False), summary]


def _said(row: object) -> str:
    verdict, reason = getattr(row, "verdict", ""), getattr(row, "reason", "")
    return str(verdict) if isinstance(verdict, str) and verdict else str(reason)


def build_report(
    exp: Experiment,
    tables: dict[str, pd.DataFrame],
    training: TrainingResults | None = None,
    extras: Extras | None = None,
) -> str:
    """The whole report as one HTML string; with `training`, its section after the verdicts,
    and the theory and the spectrum where `extras` holds them."""
    colors = plots.scheme_colors([s.name for s in exp.schemes])
    # An experiment is only built with the caller's permission for its model, so its outline
    # may be built here; the code then names the classes this model has.
    model = meta_model(exp.model, allow_custom=True)
    parts = [
        f"<style>{STYLE}</style>",
        "<h1>initlab report</h1>",
        f"<p class='sub'>{html.escape(_model_line(exp))}</p>",
        _verdicts_html(exp, tables["layers"], colors),
        _warnings_html(tables),
        *_figure_html(_figures(tables, colors, exp.input_variance())),
        *_training_html(training, colors),
        *_theory_html(extras or Extras(), tables["layers"], colors),
        *_lsuv_html(tables, colors),
        "<h2>Health</h2>",
        layer_health(tables["layers"]).to_html(index=False),
        "<h2>Parameters</h2>",
        tables["params"].to_html(index=False, float_format="%.4g"),
        "<h2>Code</h2>",
        *(
            f"<h3>{html.escape(s.name)}</h3><pre>{html.escape(to_code(s, model))}</pre>"
            for s in exp.schemes
        ),
        "<h2>Experiment</h2>",
        f"<pre>{html.escape(exp.to_json())}</pre>",
    ]
    body = "\n".join(parts)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>initlab report</title>"
        f"</head><body>{body}</body></html>"
    )


def _model_line(exp: Experiment) -> str:
    model = ", ".join(f"{k}={v}" for k, v in exp.model.items() if k != "name" and v is not None)
    return (
        f"{exp.model['name']}({model}) · batch {exp.input.batch_size} · "
        f"seeds {list(exp.seeds)} · backward {'on' if exp.backward else 'off'}"
    )
