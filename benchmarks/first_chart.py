"""Time to first chart in a real headless Chromium, on a warm `streamlit run app.py`.

Starts the app on a free port (or measures `--url`), opens the page once to warm the run
cache, then `--runs` fresh browser contexts, each timed from `page.goto` until the first
plotly chart has drawn. Per run: DOMContentLoaded, the first streamlit element, the first
chart, DOM size, JS bundles, websocket payload (decoded as Streamlit ForwardMsgs), the
main-thread time and the first chart's top edge.

    python benchmarks/first_chart.py [--runs 5] [--pages default lenet] [--url URL] [--json F]
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from initlab.ui.urlstate import encode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python benchmarks/first_chart.py` from anywhere

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
CHART = ".js-plotly-plot .main-svg"
RUNNING = '[data-testid="stStatusWidgetRunningIcon"], [data-testid="stStatusWidgetRunningManIcon"]'
STARTUP_S = 90
WARM_TIMEOUT_MS = 300_000  # the warm-up may run the probes (a cold torch: a minute or more)
RUN_TIMEOUT_MS = 120_000
PROFILE_INTERVAL_US = 1000
LENET = {
    "model": {"name": "lenet"},
    "schemes": [
        {"name": "PyTorch default", "preset": "pytorch_default"},
        {"name": "Kaiming", "preset": "kaiming_normal"},
    ],
}

# In the page before any of its scripts: when each selector first matches (ms since the
# navigation's time origin), the DOM size at the first chart, and the long tasks.
MARKS_JS = """(() => {
  const marks = {longtasks: []};
  window.__firstChart = marks;
  const watch = {element: '[data-testid="stElementContainer"]',
                 chartBox: '[data-testid="stPlotlyChart"]',
                 chart: '.js-plotly-plot .main-svg', traces: '.js-plotly-plot .trace'};
  const check = () => {
    for (const [name, sel] of Object.entries(watch)) {
      if (!(name in marks) && document.querySelector(sel)) {
        marks[name] = performance.now();
        if (name === 'chart') marks.domAtChart = document.getElementsByTagName('*').length;
      }
    }
    if ('chart' in marks && 'traces' in marks) observer.disconnect();
  };
  const observer = new MutationObserver(check);
  observer.observe(document, {childList: true, subtree: true});
  new PerformanceObserver(list => list.getEntries().forEach(
    e => marks.longtasks.push([e.startTime, e.duration]))).observe({type: 'longtask'});
})()"""

PAGE_JS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const resources = performance.getEntriesByType('resource').map(r => ({
    name: r.name, type: r.initiatorType, transfer: r.transferSize, encoded: r.encodedBodySize,
    decoded: r.decodedBodySize, start: r.startTime, end: r.responseEnd, duration: r.duration}));
  return {marks: window.__firstChart, timeOrigin: performance.timeOrigin, resources,
          dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
          docTransfer: nav.transferSize, domAtIdle: document.getElementsByTagName('*').length};
}"""


# ---------------------------------------------------------------- the server


def free_port() -> int:
    """A port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def server_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]


@contextmanager
def streamlit_server() -> Iterator[str]:
    """`streamlit run app.py` on a free port until the block ends; always terminated."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(server_command(port), cwd=ROOT, stdout=log, stderr=log)
        try:
            wait_ready(url, process, log)
            yield url
        finally:
            stop(process)


def stop(process: subprocess.Popen) -> None:
    """Terminate the server, killing it if it has not gone within 15 s."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_ready(url: str, process: subprocess.Popen, log: Any) -> None:
    deadline = time.monotonic() + STARTUP_S
    while not healthy(url):
        if process.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            raise RuntimeError(f"streamlit did not come up on {url}:\n{log.read()[-3000:]}")
        time.sleep(0.3)


# ---------------------------------------------------------------- websocket frames


def frame_kind(data: bytes) -> tuple[str, str | None, int]:
    """(kind, plotly chart id or None, plotly spec bytes) of one ForwardMsg frame."""

    try:
        msg = ForwardMsg.FromString(data)
    except Exception:  # not a ForwardMsg: counted, not decoded
        return "undecoded", None, 0
    kind = msg.WhichOneof("type") or "none"
    if kind != "delta":
        return kind, None, 0
    sub = msg.delta.WhichOneof("type") or "none"
    if sub != "new_element":
        return f"delta.{sub}", None, 0
    element = msg.delta.new_element
    name = element.WhichOneof("type") or "none"
    if name == "plotly_chart":
        return name, element.plotly_chart.id, len(element.plotly_chart.spec.encode())
    return name, None, 0


class Recorder:
    """CDP network events of one page: the document's clock, and every websocket frame."""

    def __init__(self, cdp: Any) -> None:
        self.doc: tuple[float, float] | None = None  # (monotonic timestamp s, wall time s)
        self.frames: list[tuple[float, bytes]] = []  # (monotonic s, payload bytes)
        self.cdp = cdp
        cdp.on("Network.requestWillBeSent", self._request)
        cdp.on("Network.webSocketFrameReceived", self._frame)
        cdp.send("Network.enable")
        cdp.send("Performance.enable")

    def _request(self, event: dict[str, Any]) -> None:
        """The document request's clocks: CDP's monotonic one and the wall clock."""
        if self.doc is not None or event.get("type") != "Document":
            return
        self.doc = (event["timestamp"], event["wallTime"])

    def _frame(self, event: dict[str, Any]) -> None:
        response = event["response"]
        text = response["payloadData"]
        data = base64.b64decode(text) if response["opcode"] == 2 else text.encode()
        self.frames.append((event["timestamp"], data))

    def page_ms(self, timestamp: float, time_origin: float) -> float:
        """A CDP timestamp as ms on the page's performance.now() clock."""
        if self.doc is None:
            return float("nan")
        return (self.doc[1] + timestamp - self.doc[0]) * 1000 - time_origin

    def start_profile(self) -> None:
        """Sample the page's JS every PROFILE_INTERVAL_US until stop_profile."""
        self.cdp.send("Profiler.enable")
        self.cdp.send("Profiler.setSamplingInterval", {"interval": PROFILE_INTERVAL_US})
        self.cdp.send("Profiler.start")

    def stop_profile(self) -> dict[str, Any]:
        """Self time (ms) by JS file and by function, from the sampled profile."""
        nodes = self.cdp.send("Profiler.stop")["profile"]["nodes"]
        by_file: dict[str, float] = defaultdict(float)
        by_function: dict[str, float] = defaultdict(float)
        for node in nodes:
            frame, ms = node["callFrame"], node.get("hitCount", 0) * PROFILE_INTERVAL_US / 1000
            where = bundle(frame["url"]) if frame["url"] else frame["functionName"] or "(idle)"
            by_file[where] += ms
            by_function[f"{frame['functionName'] or '(anonymous)'} @ {where}"] += ms
        return {"by_file": top(by_file), "by_function": top(by_function)}


def top(values: dict[str, float], count: int = 15) -> dict[str, float]:
    """The largest `count` entries, largest first."""
    ordered = sorted(values.items(), key=lambda kv: -kv[1])
    kept = [(key, ms) for key, ms in ordered if ms > 0][:count]
    return {key: round(ms, 1) for key, ms in kept}


def decoded_frames(rec: Recorder, time_origin: float) -> list[dict[str, Any]]:
    """Every frame received: when (page ms), its kind, bytes, and a plotly chart's spec."""
    rows = []
    for timestamp, data in rec.frames:
        kind, chart_id, spec = frame_kind(data)
        at = rec.page_ms(timestamp, time_origin)
        rows.append(
            {"at_ms": at, "kind": kind, "bytes": len(data), "id": chart_id, "spec_bytes": spec}
        )
    return rows


def frame_summary(rec: Recorder, time_origin: float, chart_ms: float) -> dict[str, Any]:
    """Websocket payload received: before the first chart and in all, by message kind."""
    frames = decoded_frames(rec, time_origin)
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for f in frames:
        by_kind[f["kind"]][0] += 1
        by_kind[f["kind"]][1] += f["bytes"]
    charts = [f for f in frames if f["id"] is not None]
    finished = [f["at_ms"] for f in frames if f["kind"] == "script_finished"]
    return {
        "ws_msgs": len(frames),
        "ws_bytes_total": sum(f["bytes"] for f in frames),
        "ws_bytes_before_chart": sum(f["bytes"] for f in frames if f["at_ms"] <= chart_ms),
        "first_plotly_msg_ms": min((f["at_ms"] for f in charts), default=float("nan")),
        "script_finished_ms": min(finished, default=float("nan")),
        "plotly_msgs_total": len(charts),
        "plotly_spec_bytes_total": sum(f["spec_bytes"] for f in charts),
        "ws_by_kind": {k: {"msgs": n, "bytes": b} for k, (n, b) in by_kind.items()},
        "plotly_msgs": [{k: f[k] for k in ("id", "spec_bytes", "at_ms")} for f in charts],
    }


# ---------------------------------------------------------------- one navigation


def bundle(name: str) -> str:
    """A static file's group: 'PlotlyChart' for static/js/PlotlyChart.D9Z0_fxz.js."""
    file = name.split("?")[0].rsplit("/", 1)[-1]
    if not file:  # the document itself, or a URL ending in /
        return name
    return file.split(".")[0] or file


def resource_summary(resources: list[dict[str, Any]], chart_ms: float) -> dict[str, Any]:
    js = [r for r in resources if r["name"].split("?")[0].endswith(".js")]
    plotly = [r for r in js if bundle(r["name"]) == "PlotlyChart"]
    return {
        "requests": len(resources),
        "js_files": len(js),
        "js_transfer_bytes": sum(r["transfer"] for r in js),
        "js_decoded_bytes": sum(r["decoded"] for r in js),
        "js_files_before_chart": sum(r["end"] <= chart_ms for r in js),
        "plotly_chunk_decoded": plotly[0]["decoded"] if plotly else 0,
        "plotly_chunk_transfer": plotly[0]["transfer"] if plotly else 0,
        "plotly_chunk_start_ms": plotly[0]["start"] if plotly else float("nan"),
        "plotly_chunk_end_ms": plotly[0]["end"] if plotly else float("nan"),
    }


# CDP Performance metrics at the first chart: durations and CPU times in s, counts as they are
METRICS = {
    "ScriptDuration": "script_ms",
    "V8CompileDuration": "v8_compile_ms",
    "LayoutDuration": "layout_ms",
    "RecalcStyleDuration": "style_ms",
    "TaskDuration": "task_ms",
    "ThreadTime": "main_thread_cpu_ms",
    "ProcessTime": "renderer_cpu_ms",
    "Nodes": "nodes",
    "LayoutObjects": "layout_objects",
    "JSHeapUsedSize": "js_heap_bytes",
}


def main_thread(metrics: list[dict[str, Any]], marks: dict[str, Any], chart: float) -> dict:
    """The page's CPU and main-thread time until the first chart, and the long tasks."""
    values = {m["name"]: m["value"] for m in metrics}
    out = {}
    for name, key in METRICS.items():
        scale = 1000 if key.endswith("_ms") else 1
        out[key] = values.get(name, float("nan")) * scale
    before = [d for start, d in marks["longtasks"] if start < chart]
    out["longtasks_before_chart"] = len(before)
    out["longtask_ms_before_chart"] = sum(before)
    out["longest_task_ms"] = max(before, default=0.0)
    return out


def wait_idle(page: Any) -> float:
    """Until the script run has ended; the seconds it took after the first chart."""
    start = time.perf_counter()
    page.wait_for_timeout(300)
    page.wait_for_selector(RUNNING, state="detached")
    return time.perf_counter() - start


def navigate(page: Any, rec: Recorder, url: str, timeout_ms: float) -> tuple[float, list]:
    """goto → first chart drawn: wall ms, and the CDP Performance metrics at that moment."""
    start = time.perf_counter()
    page.goto(url, wait_until="commit", timeout=timeout_ms)
    page.wait_for_selector(CHART, timeout=timeout_ms)
    wall = (time.perf_counter() - start) * 1000
    return wall, rec.cdp.send("Performance.getMetrics")["metrics"]


def measure(
    browser: Any, url: str, viewport: dict[str, int], timeout_ms: float, profile: bool = False
) -> dict[str, Any]:
    """One navigation in a fresh context (empty cache, new streamlit session); with
    `profile`, a sampled CPU profile of the page until the first chart as well."""
    context = browser.new_context(viewport=viewport)
    try:
        page = context.new_page()
        page.add_init_script(MARKS_JS)
        rec = Recorder(context.new_cdp_session(page))
        if profile:
            rec.start_profile()
        wall, metrics = navigate(page, rec, url, timeout_ms)
        profiled = rec.stop_profile() if profile else None
        idle_s = wait_idle(page)
        box = page.locator('[data-testid="stPlotlyChart"]').first.bounding_box()
        info = page.evaluate(PAGE_JS)
        return {**run_row(info, rec, metrics, wall, idle_s, box), "profile": profiled}
    finally:
        context.close()


def run_row(info: dict, rec: Recorder, metrics: list, wall: float, idle_s: float, box: Any) -> dict:
    marks = info["marks"]
    chart = marks["chart"]
    return {
        "wall_to_chart_ms": wall,
        "dcl_ms": info["dcl"],
        "first_element_ms": marks.get("element", float("nan")),
        "chart_box_ms": marks.get("chartBox", float("nan")),
        "first_chart_ms": chart,
        "traces_ms": marks.get("traces", float("nan")),
        "dom_at_chart": marks.get("domAtChart", 0),
        "dom_at_idle": info["domAtIdle"],
        "idle_after_chart_ms": idle_s * 1000,
        "chart_top_y": box["y"] if box else float("nan"),
        **main_thread(metrics, marks, chart),
        **resource_summary(info["resources"], chart),
        **frame_summary(rec, info["timeOrigin"], chart),
        "resources": info["resources"],
    }


# ---------------------------------------------------------------- runs and the report


def page_url(base: str, name: str) -> str:
    """The default page, or the LeNet experiment restored from the address."""
    return f"{base}/?experiment={encode(LENET)}" if name == "lenet" else f"{base}/"


def bench_page(browser: Any, base: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One warm-up navigation (it fills the run cache), then `args.runs` measured ones, then
    with `args.profile` one more under the CPU profiler (not in the timings)."""
    url, viewport = page_url(base, name), {"width": args.width, "height": args.height}
    warmup = measure(browser, url, viewport, WARM_TIMEOUT_MS)
    rows = []
    for i in range(args.runs):
        rows.append(measure(browser, url, viewport, RUN_TIMEOUT_MS))
        print(f"  {name} run {i + 1}: first chart {rows[-1]['first_chart_ms']:.0f} ms", flush=True)
    profiled = measure(browser, url, viewport, RUN_TIMEOUT_MS, True) if args.profile else None
    return {
        "page": name,
        "url": url,
        "viewport": viewport,
        "warmup_first_chart_ms": warmup["first_chart_ms"],
        "summary": summarize(rows),
        "top_resources": top_resources(rows),
        "ws_by_kind": rows[-1]["ws_by_kind"],
        "plotly_msgs": rows[-1]["plotly_msgs"],
        "profile": profiled
        and {"first_chart_ms": profiled["first_chart_ms"], **profiled["profile"]},
        "runs": [{k: v for k, v in r.items() if k not in ("resources", "profile")} for r in rows],
    }


def compare_page(browser: Any, bases: dict[str, str], name: str, args: argparse.Namespace) -> dict:
    """Two servers (e.g. before and after a change) side by side: one warm-up each, then
    `args.runs` navigations alternating between them, so the machine's load hits both alike."""
    viewport = {"width": args.width, "height": args.height}
    for base in bases.values():
        measure(browser, page_url(base, name), viewport, WARM_TIMEOUT_MS)
    rows: dict[str, list[dict[str, Any]]] = {label: [] for label in bases}
    for _ in range(args.runs):
        for label, base in bases.items():
            rows[label].append(measure(browser, page_url(base, name), viewport, RUN_TIMEOUT_MS))
    keys = (
        "first_chart_ms",
        "dom_at_chart",
        "chart_top_y",
        "js_files",
        "js_decoded_bytes",
        "ws_bytes_total",
        "script_ms",
    )
    return {
        label: {k: statistics.median(r[k] for r in runs) for k in keys if k in runs[0]}
        for label, runs in rows.items()
    }


def print_comparison(name: str, result: dict[str, dict[str, float]]) -> None:
    labels = list(result)
    print(f"\n== {name}: medians of alternating runs")
    print(f"{'measure':<20}" + "".join(f"{label:>16}" for label in labels) + f"{'ratio':>10}")
    for key in result[labels[0]]:
        values = [result[label][key] for label in labels]
        ratio = values[0] / values[1] if len(values) == 2 and values[1] else float("nan")
        print(f"{key:<20}" + "".join(f"{v:>16,.0f}" for v in values) + f"{ratio:>10.2f}")


def scalar_keys(row: dict[str, Any]) -> list[str]:
    """The measures of a run that are one number each (the table's rows)."""

    keys = []
    for key, value in row.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            keys.append(key)
    return keys


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median, min and max of every scalar measure over the runs."""
    out = {}
    for key in scalar_keys(rows[0]):
        values = [row[key] for row in rows]
        out[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return out


def top_resources(rows: list[dict[str, Any]], count: int = 10) -> list[dict[str, Any]]:
    """The largest resources (decoded bytes), with median transfer size and timings."""
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        for r in row["resources"]:
            by_name[r["name"].split("?")[0].rsplit("/", 1)[-1]].append(r)

    keys = ("decoded", "transfer", "start", "end", "duration")
    table = [
        {"file": name, **{k: statistics.median(e[k] for e in entries) for k in keys}}
        for name, entries in by_name.items()
    ]
    return sorted(table, key=lambda r: -r["decoded"])[:count]


def print_report(result: dict[str, Any]) -> None:
    print(
        f"\n== {result['page']} page at {result['viewport']['width']}x"
        f"{result['viewport']['height']} (warm-up first chart "
        f"{result['warmup_first_chart_ms']:.0f} ms)"
    )
    print(f"{'measure':<28}{'median':>14}{'min':>14}{'max':>14}")
    for key, s in result["summary"].items():
        print(f"{key:<28}{s['median']:>14,.0f}{s['min']:>14,.0f}{s['max']:>14,.0f}")
    print(f"\n{'largest resources':<44}{'decoded B':>12}{'transfer B':>12}{'start':>8}{'end':>8}")
    for r in result["top_resources"]:
        print(
            f"{r['file'][:43]:<44}{r['decoded']:>12,.0f}{r['transfer']:>12,.0f}"
            f"{r['start']:>8.0f}{r['end']:>8.0f}"
        )
    print_frames(result)
    if result["profile"]:
        print_profile(result["profile"])


def print_frames(result: dict[str, Any]) -> None:
    print(f"\n{'websocket messages (last run)':<44}{'msgs':>8}{'bytes':>12}")
    kinds = sorted(result["ws_by_kind"].items(), key=lambda kv: -kv[1]["bytes"])
    for kind, s in kinds[:12]:
        print(f"{kind[:43]:<44}{s['msgs']:>8}{s['bytes']:>12,}")
    for chart in result["plotly_msgs"]:
        print(
            f"  plotly {chart['id'][-40:]:<40} spec {chart['spec_bytes']:>9,} B"
            f" at {chart['at_ms']:>7.0f} ms"
        )


def print_profile(profile: dict[str, Any]) -> None:
    print(f"\nCPU self time until the first chart ({profile['first_chart_ms']:,.0f} ms, profiled)")
    for title in ("by_file", "by_function"):
        for where, ms in profile[title].items():
            print(f"  {title:<12}{where[:70]:<72}{ms:>9,.0f} ms")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="measure this running server instead of starting one")
    parser.add_argument("--runs", type=int, default=5, help="measured navigations per page")
    parser.add_argument("--pages", nargs="+", choices=("default", "lenet"), default=["default"])
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--profile", action="store_true", help="one extra run, CPU-profiled")
    parser.add_argument(
        "--against",
        help="a second running server (e.g. the code before a change): both are "
        "measured alternately and printed side by side, with --url as the first",
    )
    return parser.parse_args(argv)


def run_all(base: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            return [bench_page(browser, base, name, args) for name in args.pages]
        finally:
            browser.close()


def compare_all(args: argparse.Namespace) -> int:
    bases = {"this": args.url.rstrip("/"), "against": args.against.rstrip("/")}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            results = {name: compare_page(browser, bases, name, args) for name in args.pages}
        finally:
            browser.close()
    for name, result in results.items():
        print_comparison(name, result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.against:
        return compare_all(args)
    if args.url:
        results = run_all(args.url.rstrip("/"), args)
    else:
        with streamlit_server() as base:
            results = run_all(base, args)
    for result in results:
        print_report(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
