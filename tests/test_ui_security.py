"""A link or an uploaded file is data: it restores a page and nothing else.

Headless (AppTest): a custom model is never imported from a link or a file, even with
INITLAB_ALLOW_CUSTOM_MODELS=1; a broken address or file is an error message, never an
exception; user text (scheme names, rule globs) reaches no markdown or plotly label unescaped.
The same payloads in a real browser: tests/test_browser.py.
"""

from __future__ import annotations

import ast
import base64
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from conftest import TAB_TITLES, open_tab
from streamlit.testing.v1 import AppTest

import initlab
from initlab import plots
from initlab.models import ALLOW_ENV
from initlab.ui import keys, runner, state
from initlab.ui.results_panel import chip
from initlab.ui.text import md, plain
from initlab.ui.urlstate import decode, encode

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
FIXTURES = ROOT / "tests" / "fixtures"
TRIPWIRE = "initlab_testzoo.tripwire"
SMALL = {"model.mlp.depth": 3, "model.mlp.width": 16, "batch_size": 16, "n_seeds": 1}
DEFAULT_NAMES = ["PyTorch default", "Kaiming normal"]

# Scheme names a link may carry: each would be markup somewhere if it reached it raw.
NAME_PAYLOADS = [
    '<img src=x onerror="window.__pwned=1">',
    '<iframe srcdoc="<script>parent.__pwned=1</script>"></iframe>',
    "[click](http://127.0.0.1:9/x)",
    "![i](http://127.0.0.1:9/i.png)",
    "<b>bold</b>",
]
# Rule globs (the first still matches every `*.c_proj`: `[j<...>]` is a character class).
GLOB_PAYLOADS = ["*.c_pro[j<img src=x onerror=window.__pwned=1>]",
                 "*.c_proj<img src=x onerror=window.__pwned=1>"]  # fmt: skip
TINY_TRANSFORMER = {"name": "transformer", "n_layers": 2, "d_model": 16, "n_heads": 2,
                    "vocab_size": 50, "seq_len": 8}  # fmt: skip
# Markup that escaping must have defused: raw `<`, a link or image opening, a bare link.
UNESCAPED = re.compile(r"(?<!\\)<|(?<!\\)\]\(|(?<!\\)!\[|https?://|www\.")


def payload_experiment(globs: bool = True) -> dict[str, Any]:
    """A valid experiment on a tiny transformer whose scheme names (and, while the library
    takes them, rule globs) are the payloads: every view of the page shows them."""
    rules = initlab.preset("gpt2", "gelu").to_dict()["rules"]
    named = iter(GLOB_PAYLOADS if globs else [])
    rules = [dict(r, name=next(named, r["name"])) if r.get("name") else r for r in rules]
    presets = ["gpt2", "xavier_normal", "kaiming_normal", "pytorch_default"]
    schemes = [{"name": NAME_PAYLOADS[0], "rules": rules}]
    schemes += [{"name": n, "preset": p} for n, p in zip(NAME_PAYLOADS[1:], presets, strict=True)]
    d = {"model": TINY_TRANSFORMER, "input": {"batch_size": 4}, "seeds": [0], "schemes": schemes}
    try:
        initlab.Experiment.from_dict(d)
    except ValueError:
        if not globs:
            raise
        return payload_experiment(globs=False)  # globs refused by validation: names only
    return d


pytestmark = pytest.mark.usefixtures("empty_app_caches")


@pytest.fixture
def armed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Custom models enabled in the environment, and a user package that would be imported."""
    monkeypatch.setenv(ALLOW_ENV, "1")
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.delitem(sys.modules, TRIPWIRE, raising=False)


# ---------------------------------------------------------------- helpers


def run_app(query: dict[str, str] | None = None, **session: Any) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in {**SMALL, **session}.items():
        at.session_state[key] = value
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def errors(at: AppTest) -> list[str]:
    return [plain(e.value) for e in at.error]


def names(at: AppTest) -> list[str]:
    return [at.text_input(key=f"s{e['uid']}.name").value for e in at.session_state["editors"]]


def upload(at: AppTest, content: bytes, name: str = "mine.json") -> None:
    uploader = open_tab(at, "Experiment").get("file_uploader")[0]
    uploader.set_value((name, content, "application/json")).run()
    assert not at.exception, [e.message for e in at.exception]


def custom_experiment() -> dict[str, Any]:
    return {"model": {"name": "custom", "factory": f"{TRIPWIRE}:model"},
            "input": {"batch_size": 4, "shape": [4]}, "seeds": [0],
            "schemes": [{"name": "K", "preset": "kaiming_normal"}]}  # fmt: skip


def markdown_bodies(at: AppTest) -> list[str]:
    """Every text the page renders as markdown: bodies, alerts, captions, labels."""
    bodies = [e.value for kind in ("markdown", "caption", "error", "info", "warning", "success")
              for e in getattr(at, kind)]  # fmt: skip
    bodies += [e.label for e in at.expander] + [t.label for t in at.tabs]
    bodies += [w.label for kind in ("text_input", "selectbox", "number_input", "multiselect")
               for w in getattr(at, kind)]  # fmt: skip
    return bodies


def chart_texts(at: AppTest) -> list[str]:
    """Every text plotly renders with its HTML subset: trace names, hover, annotations."""
    texts = []
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        for trace in spec["data"]:
            texts += [str(trace.get("name", ""))]
            texts += [str(v) for row in trace.get("customdata") or [] for v in row]
        texts += [a.get("text", "") for a in spec["layout"].get("annotations", [])]
    return texts


# ---------------------------------------------------------------- the escaping helper


MORE_MARKUP = ["a -> b <= c", ":red[x] $y$", "line\nbreak", "x@y.com www.z.org", ":material/x:"]


@pytest.mark.parametrize("text", [*NAME_PAYLOADS, *GLOB_PAYLOADS, *MORE_MARKUP])
def test_md_escapes_all_markup_and_displays_the_text(text: str) -> None:
    out = md(text)
    assert "\n" not in out
    assert not UNESCAPED.search(out), out
    assert not re.search(r"(?<!\\)[*_`\[\]()$:#|~]", out.replace("\u2060", "")), out
    assert plain(out) == text.replace("\n", " ")


def test_a_chip_takes_only_a_hex_colour() -> None:
    assert chip("#636EFA") == ':color[●]{foreground="#636EFA"}'
    assert chip('red"} ![x](http://h/i.png) {x="') == ":gray[●]"
    assert chip(None) == ":gray[●]"


def test_plot_labels_are_html_escaped_and_colours_kept() -> None:
    layers = initlab.run(initlab.Experiment.from_dict(payload_experiment())).layers
    fig = plots.variance_by_depth(layers)
    lines = [t for t in fig.data if t.showlegend is not False]
    assert [t.name for t in lines] == [n.replace("<", "&lt;").replace(">", "&gt;")
                                       for n in NAME_PAYLOADS]  # fmt: skip
    assert all("<" not in str(t.name) for t in fig.data)
    colors = plots.scheme_colors(NAME_PAYLOADS)
    assert [t.line.color for t in lines] == [colors[n] for n in NAME_PAYLOADS]
    grid = plots.histogram_grid(initlab.run(initlab.Experiment.from_dict(payload_experiment())
                                            ).histograms, "activation")  # fmt: skip
    titles = grid.layout.annotations[: len(NAME_PAYLOADS)]
    assert all(len(plain_html(t.text)) <= 20 for t in titles), "cut to fit five columns"
    assert [plain_html(t.hovertext) for t in titles] == NAME_PAYLOADS, "whole, on hover"
    assert all("<" not in t.text + (t.hovertext or "") for t in grid.layout.annotations)


def plain_html(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


# ---------------------------------------------------------------- custom models: never


def test_a_link_to_a_custom_model_is_refused_even_when_the_environment_allows_it(
    armed_environment: None,
) -> None:
    at = run_app(query={"experiment": encode(custom_experiment())})
    assert TRIPWIRE not in sys.modules, "the link imported the user's module"
    message = next(e for e in errors(at) if state.ADDRESS_PROBLEM in e)
    assert "custom model" in message and "runs Python code" in message and "CLI" in message
    assert names(at) == DEFAULT_NAMES, "the default page instead"


def test_an_uploaded_custom_model_is_refused_and_the_page_kept(armed_environment: None) -> None:
    at = run_app()
    before = decode(at.query_params["experiment"])
    upload(at, json.dumps(custom_experiment()).encode())
    assert TRIPWIRE not in sys.modules, "the file imported the user's module"
    assert any("mine.json was not loaded" in e and "custom model" in e for e in errors(at))
    assert decode(at.query_params["experiment"]) == before
    assert names(at) == DEFAULT_NAMES


def test_every_experiment_call_in_the_ui_refuses_custom_models() -> None:
    """Static: no call in initlab/ui that validates or builds a model leaves the permission
    to the environment (allow_custom must be passed, and be False)."""
    calls = {"from_dict", "from_text", "from_json", "normalize_model_spec", "build_model",
             "meta_model"}  # fmt: skip
    loose = []
    for path in sorted((ROOT / "initlab" / "ui").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            if name not in calls or _is_scheme_call(node):
                continue
            given = {k.arg: k.value for k in node.keywords}
            value = given.get("allow_custom")
            if not (isinstance(value, ast.Constant) and value.value is False):
                loose.append(f"{path.name}:{node.lineno} {name}")
    assert loose == [], loose


def _is_scheme_call(node: ast.Call) -> bool:
    """`Scheme.from_dict(...)`: a scheme, no model in it."""
    owner = getattr(node.func, "value", None)
    return isinstance(owner, ast.Name) and owner.id == "Scheme"


# ---------------------------------------------------------------- broken input: a message


def _token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (_token(b"[" * 5000), "nested too deeply"),
        (_token(b'{"a":' * 3000 + b"1" + b"}" * 3000), "nested too deeply"),
        (encode({"model": {"name": "mlp"}, "schemes": [{"preset": {"a": 1}, "rules": []}]}),
         "preset"),
        (encode({"model": {"name": "mlp"}, "schemes": [{"preset": ["x"]}]}), "preset"),
        (_token(b'{"model": {"name": "mlp"}, "model": {"name": "custom"}}'), "appears twice"),
        ("%%%" + "A" * 10, "not valid base64 JSON"),
        (_token(b'{"model": "' + b"\xff" * 10 + b'"}'), "not valid base64 JSON"),
    ],
    ids=["deep-list", "deep-object", "unhashable-preset", "list-preset", "duplicate-key",
         "corrupt", "not-utf8"],
)  # fmt: skip
def test_a_broken_address_is_a_message_never_an_exception(token: str, reason: str) -> None:
    at = run_app(query={"experiment": token})
    message = next(e for e in errors(at) if state.ADDRESS_PROBLEM in e)
    assert reason in message, message
    assert "Traceback" not in message
    assert names(at) == DEFAULT_NAMES
    assert at.get("plotly_chart"), "the default page still runs"


def test_any_failure_while_loading_an_address_is_a_message(monkeypatch) -> None:
    """Not only ValueError: whatever validation raises (here a TypeError) stays a message."""

    def broken(data: Any) -> initlab.Experiment:
        raise TypeError("unhashable type: 'dict'")

    monkeypatch.setattr(state, "experiment_from_data", broken)
    at = run_app(query={"experiment": encode({"model": {"name": "mlp"}})})
    assert any("TypeError: unhashable type" in e for e in errors(at)), errors(at)
    assert names(at) == DEFAULT_NAMES


@pytest.mark.parametrize(
    "content",
    [b"[" * 5000, json.dumps({"model": {"name": "mlp"},
                              "schemes": [{"preset": {"a": 1}, "rules": []}]}).encode(),
     b'{"model": {"name": "mlp"}, "model": {"name": "custom"}}'],
    ids=["deep", "unhashable-preset", "duplicate-key"],
)  # fmt: skip
def test_a_broken_upload_is_a_message_and_the_page_kept(content: bytes) -> None:
    at = run_app()
    before = decode(at.query_params["experiment"])
    upload(at, content)
    assert any("mine.json was not loaded" in e for e in errors(at)), errors(at)
    assert decode(at.query_params["experiment"]) == before
    assert names(at) == DEFAULT_NAMES


def test_an_uploaded_files_name_is_escaped_in_the_error() -> None:
    at = run_app()
    name = "![i](http://127.0.0.1:9/i.png).json"
    upload(at, b"{nope", name=name)
    bodies = [e.value for e in at.error]
    assert any(plain(b).startswith(f"{name} was not loaded") for b in bodies), bodies
    assert not any(UNESCAPED.search(b) for b in bodies), bodies


# ---------------------------------------------------------------- user text on the page


@dataclass(frozen=True)
class Shown:
    """What the payload page showed, over every tab (each draws only while it is open)."""

    errors: list[str]
    names: list[str]
    bodies: dict[str, list[str]]  # tab title -> its markdown bodies and labels
    charts: list[str]
    globs: list[str]  # the module-name fields of the first column's rules with a glob


@pytest.fixture(scope="module")
def payload_page() -> Shown:
    st.cache_data.clear()
    runner.store().clear()
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["experiment"] = encode(payload_experiment())
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    prefix = keys.named_rules(at.session_state["editors"][0]["uid"])
    globs = [t.value for t in at.text_input if t.key.startswith(prefix) and t.key.endswith(".name")]
    shown = Shown(errors(at), names(at), {}, [], globs)
    for title in TAB_TITLES:
        open_tab(at, title)
        if title == "Training":  # its verdicts and charts exist once it has trained
            train_briefly(at)
        shown.errors.extend(e for e in errors(at) if e not in shown.errors)
        shown.bodies[title] = markdown_bodies(at)
        shown.charts.extend(chart_texts(at))
    return shown


def train_briefly(at: AppTest, steps: int = 3, wait_s: float = 120) -> None:
    """A few steps of training on the Training view, run to their end."""
    steps_box = next(w for w in at.number_input if w.key == keys.training_widget("steps"))
    steps_box.set_value(steps).run()
    at.button(key="train_button").click().run()
    job, deadline = at.session_state[keys.TRAINING_JOB], time.monotonic() + wait_s
    while job.running:
        assert time.monotonic() < deadline, "the training did not end"
        time.sleep(0.1)
    assert job.error is None, job.error
    at.run()
    assert not at.exception, [e.message for e in at.exception]


def test_the_payload_link_loads_and_renders_every_scheme(payload_page: Shown) -> None:
    assert payload_page.errors == []
    assert payload_page.names == NAME_PAYLOADS
    # verdicts, verdicts, training verdicts, expanders
    for title in ("Variance by depth", "Health", "Training", "Code"):
        shown = " ".join(plain(b) for b in payload_page.bodies[title])
        for name in NAME_PAYLOADS:
            assert name in shown, f"{name!r} is not displayed literally on {title}"


def test_no_markdown_body_or_label_carries_the_payload_unescaped(payload_page: Shown) -> None:
    assert set(payload_page.bodies) == set(TAB_TITLES)
    bodies = [b for tab in payload_page.bodies.values() for b in tab]
    assert bodies
    raw = [b for b in bodies if UNESCAPED.search(b)]
    assert raw == [], raw


def test_rule_globs_are_shown_as_text_not_markup(payload_page: Shown) -> None:
    d = payload_experiment()
    globs = [r["name"] for r in d["schemes"][0]["rules"] if r.get("name")]
    if globs[0] not in GLOB_PAYLOADS:
        pytest.skip("the library refuses these globs; the scheme names carry the payloads")
    # each rule with a glob has a row of its own, its glob in a text field (shown as typed)
    assert payload_page.globs == globs
    bodies = [b for tab in payload_page.bodies.values() for b in tab]
    assert not [b for b in bodies if any(glob in b for glob in globs)], "no raw glob in markup"


def test_no_chart_label_carries_markup(payload_page: Shown) -> None:
    texts = payload_page.charts
    assert any("&lt;b&gt;bold&lt;/b&gt;" in t for t in texts), "the legend names the scheme"
    assert [t for t in texts if "<" in t or ">" in t] == []
