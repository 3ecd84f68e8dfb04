"""Figure assembly: lays the pure plots of `bench.report.plots` out on figures, and saves them.

Figures are created with `matplotlib.figure.Figure` directly (no pyplot): no global state,
no GUI backend, always Agg, and nothing leaks between reports rendered in one process.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # headless; must precede any backend use

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.analysis.steady import steady_state
from bench.errors import BenchInputError
from bench.metrics import catalogue
from bench.metrics.catalogue import ITL, OUTPUT_TOKENS_PER_S, REQUESTS_PER_S, Scope
from bench.metrics.order import SortedSample
from bench.report import plots

__all__ = [
    "DPI", "FORMATS", "LATENCY", "PLOT_SAMPLE", "SATURATION_SHORTFALL", "cdf_figure", "compare_figures",
    "formats_for", "ladder_figure", "new_figure", "plot_runs", "run_figures", "run_label",
    "run_labels", "run_samples", "saturation_row", "saturation_verdicts", "save_figures",
    "slo_limits", "stage_frame", "sweep_figure", "timeline_figure", "to_bytes", "variant_samples",
]

if TYPE_CHECKING:
    from bench.analysis.results import Run

LATENCY = tuple(m.key for m in catalogue.PLOTTED)  # every latency figure's metrics, in this order
FORMATS = ("png", "svg")
DPI = 100
# Samples larger than this are drawn from this many of their values, at random (seeded).
PLOT_SAMPLE = 1 << 22
# A stage saturates when its achieved throughput falls this far below the offered rate.
SATURATION_SHORTFALL = 0.05


# --- data for the plots -----------------------------------------------------------------


def run_label(run: Run) -> str:
    return run.path.name or run.name


def run_labels(runs: Sequence[Run]) -> list[str]:
    """Distinct labels for several runs: the directory name, with its parent or a number if needed.

    Plots key their series by label; two runs called `run` would otherwise draw as one.
    """
    labels = [run_label(r) for r in runs]
    if len(set(labels)) < len(labels):
        labels = [f"{r.path.parent.name}/{r.path.name}" for r in runs]
    if len(set(labels)) < len(labels):
        labels = [f"{label} #{i + 1}" for i, label in enumerate(labels)]
    return labels


def run_samples(run: Run) -> dict[str, SortedSample]:
    """The samples behind each plotted metric (by key), sorted once per run (`Run.memo`) for
    every figure and comparison that draws them: the counted requests' values; ITL: their
    pooled gaps (a seeded draw of PLOT_SAMPLE of them when there are more: `SortedSample.drawn`)."""
    return run.memo("plotted_samples", lambda: _samples(run.requests, run.itl_values()))


def _samples(requests: pd.DataFrame, gaps: np.ndarray) -> dict[str, SortedSample]:
    return {m.key: SortedSample.drawn(gaps if m.scope is Scope.GAPS else catalogue.request_values(m, requests),
                                      PLOT_SAMPLE) for m in catalogue.PLOTTED}


def variant_samples(run: Run, column: str = "variant") -> dict[str, dict[str, SortedSample]]:
    """run_samples split by sampling variant ({} when the run has no variants); `column`
    "model": split by the model each request named ({} with one model)."""
    ok = catalogue.counted(run.requests)
    if column not in ok:
        return {}
    names = sorted(v for v in ok[column].dropna().unique().tolist() if v)
    if len(names) < 2:
        return {}
    gaps = run.itl
    gap_variant = gaps["request_id"].map(ok.set_index("request_id")[column])
    return {name: _samples(ok[ok[column] == name], gaps[gap_variant == name][ITL.key].to_numpy(dtype="float64"))
            for name in names}


def stage_frame(run: Run) -> pd.DataFrame | None:
    """One row per stage of a multi-stage run (a sweep), or None for a single-stage run.

    Offered rate per stage comes from the manifest's `stages` entries when they say (keys
    `rate`, `offered_rate` or `offered`), else from the stage summary, else it is the
    achieved send rate (and the saturation test is skipped for that stage).
    """
    stages = run.summary.stages
    if len(stages) < 2:
        return None
    declared = list(run.manifest.stages or [])
    rows = []
    for i, (key, summ) in enumerate(sorted(stages.items(), key=lambda kv: _stage_order(kv[0]))):
        info = declared[i] if i < len(declared) and isinstance(declared[i], dict) else {}
        offered = _first_number(info, ("rate", "offered_rate", "offered")) or summ.rate.offered
        row: dict[str, Any] = {
            "stage": key,
            "offered_rate": offered if offered is not None else summ.rate.achieved,
            "offered_known": offered is not None,
            "achieved_rate": summ.rate.achieved,
            REQUESTS_PER_S.key: summ.throughput.requests_per_s,
            OUTPUT_TOKENS_PER_S.key: summ.throughput.output_tokens_per_s,
            "saturated": bool(info.get("saturated", False)),
            "knee": bool(info.get("knee", False)),
            "requests": summ.requests.total,
            "errors": sum(summ.requests.errors.values()),
        }
        for metric in catalogue.PLOTTED:
            dist = summ.metric(metric)
            for pname in ("p50", "p90", "p99"):
                row[f"{metric.key}.{pname}"] = dist.stat(pname)
        rows.append(row)
    frame = pd.DataFrame(rows)
    numeric = [c for c in frame.columns if c not in ("stage", "offered_known", "saturated", "knee")]
    frame[numeric] = frame[numeric].astype("float64")
    return frame


def saturation_row(stages: pd.DataFrame) -> int | None:
    """Index of the first stage that saturated (the knee), or None.

    A `bench sweep` run marks its knee itself (`knee` in the manifest's stages); use that.
    Otherwise (a `load.stages` run):
    A stage saturated when the run flagged it so, or when its efficiency (completed requests/s
    over offered requests/s) falls SATURATION_SHORTFALL below the best of the stages before
    it. Relative, not absolute: a short stage's throughput window includes the drain of its
    last requests, so even an idle server "achieves" a few per cent less than offered.
    """
    if "knee" in stages and stages["knee"].any():
        return int(stages.index[stages["knee"].to_numpy(dtype=bool)][0])  # bench sweep marked it
    best = 0.0
    for i, row in zip(range(len(stages)), stages.to_dict("records"), strict=True):  # a RangeIndex
        if row["saturated"]:
            return i
        if not (row["offered_known"] and np.isfinite(row[REQUESTS_PER_S.key]) and row["offered_rate"] > 0):
            continue
        efficiency = row[REQUESTS_PER_S.key] / row["offered_rate"]
        if best > 0 and efficiency < (1.0 - SATURATION_SHORTFALL) * best:
            return i
        best = max(best, efficiency)
    return None


def slo_limits(scenario: Mapping[str, Any]) -> dict[str, tuple[float, str]]:
    """SLO limits from a scenario's `slo` section, tolerant of its absence and of its shape.

    Accepts `slo: {ttft_ms: 500, tpot_ms: {limit: 50, percentile: p99}, percentile: 90}` and
    the like, for the catalogue's SLO metrics; the default percentile is p99. Returns
    {metric key: (limit, "pNN")}.
    """
    slo = scenario.get("slo")
    if not isinstance(slo, Mapping):
        return {}
    default = _pname(slo.get("percentile", 99))
    out: dict[str, tuple[float, str]] = {}
    for metric in catalogue.SLO_KEYS:
        spec = slo.get(metric)
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            out[metric] = (float(spec), default)
        elif isinstance(spec, Mapping):
            limit = _first_number(spec, ("limit", "max", "value"))
            if limit is not None:
                out[metric] = (limit, _pname(spec.get("percentile", default)))
    return out


# --- figures ----------------------------------------------------------------------------


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def cdf_figure(samples: Mapping[str, Mapping[str, plots.Plotted]], title: str = "Latency CDFs") -> Figure:
    """2x2 CDFs of TTFT, ITL, TPOT, E2E; `samples` is {run label: run_samples(run)}."""
    return _latency_grid(plots.plot_cdf, samples, title)


def ladder_figure(samples: Mapping[str, Mapping[str, plots.Plotted]], title: str = "Percentile ladder") -> Figure:
    """2x2 percentile ladders of TTFT, ITL, TPOT, E2E; `samples` as for `cdf_figure`."""
    return _latency_grid(plots.plot_ladder, samples, title)


def _latency_grid(plot: Callable[[Axes, Mapping[str, plots.Plotted], str], None],
                  samples: Mapping[str, Mapping[str, plots.Plotted]], title: str) -> Figure:
    fig = new_figure(11, 7.5)
    for ax, metric in zip(fig.subplots(2, 2).ravel(), LATENCY, strict=True):
        plot(ax, {name: s[metric] for name, s in samples.items()}, metric)
    fig.suptitle(title)
    return fig


def timeline_figure(run: Run) -> Figure:
    server = _server_key_series(run)
    rows = 4 if server is not None else 3
    fig = new_figure(11, 8 if rows == 3 else 10.5)
    axes = fig.subplots(rows, 1, sharex=True)
    plots.plot_in_flight(axes[0], run.requests)
    plots.plot_token_rate(axes[1], run.token_rate(1.0), 1.0)
    if server is not None:
        plots.plot_server_metrics(axes[2], server)
    plots.plot_ttft_over_time(axes[-1], run.requests)
    for verdict in saturation_verdicts(run):
        plots.mark_saturation(axes, float(verdict["start_s"]))
    steady = steady_state(run)
    if steady is not None:
        plots.mark_window(axes, steady.start_s, steady.end_s, "steady state (MSER-5)")
    fig.suptitle(f"Timeline: {run_label(run)}")
    return fig


def saturation_verdicts(run: Run) -> list[dict[str, Any]]:
    """summary.json `saturation` (bench.analysis.saturation.stored_verdicts)."""
    from bench.analysis.saturation import stored_verdicts

    return stored_verdicts(run.summary, run.requests, run.manifest.stages)


def _server_key_series(run: Run) -> pd.DataFrame | None:
    frame = run.server_metrics
    if frame is None or frame.empty:
        return None
    from bench.target.promscrape import key_series

    key = key_series(frame)
    return key if not key.empty else None


def sweep_figure(run: Run) -> Figure | None:
    """Throughput vs offered load and latency percentiles vs throughput, for multi-stage runs."""
    stages = stage_frame(run)
    if stages is None:
        return None
    knee_i = saturation_row(stages)
    knee_rate = float(stages["offered_rate"].to_numpy(dtype="float64")[knee_i]) if knee_i is not None else None
    knee_thr = float(stages[REQUESTS_PER_S.key].to_numpy(dtype="float64")[knee_i]) if knee_i is not None else None
    slos = slo_limits(run.manifest.scenario)
    fig = new_figure(11, 11)
    grid = fig.subplots(3, 2)
    plots.plot_throughput_vs_offered(grid[0, 0], stages, knee_rate)
    grid[0, 1].set_axis_off()
    for ax, metric in zip(grid[1:].ravel(), LATENCY, strict=True):
        plots.plot_latency_vs_throughput(ax, stages, metric, slos.get(metric), knee_thr)
    fig.suptitle(f"Sweep: {run_label(run)}")
    return fig


def run_figures(run: Run) -> dict[str, Figure]:
    """Every figure of one run's report, by file stem."""
    samples = {run_label(run): run_samples(run)}
    figs = {
        "latency_cdf": cdf_figure(samples),
        "percentile_ladder": ladder_figure(samples),
        "timeline": timeline_figure(run),
    }
    by_variant = variant_samples(run)
    if by_variant:
        figs["variant_cdf"] = cdf_figure(by_variant, "Latency CDFs by sampling variant")
        figs["variant_ladder"] = ladder_figure(by_variant, "Percentile ladder by sampling variant")
    by_model = variant_samples(run, "model")
    if by_model:
        figs["model_cdf"] = cdf_figure(by_model, "Latency CDFs by model")
        figs["model_ladder"] = ladder_figure(by_model, "Percentile ladder by model")
    sweep = sweep_figure(run)
    if sweep is not None:
        figs["sweep"] = sweep
    return figs


def compare_figures(runs: Sequence[Run], samples: Mapping[str, Mapping[str, plots.Plotted]] | None = None
                    ) -> dict[str, Figure]:
    if samples is None:
        samples = {label: run_samples(r) for label, r in zip(run_labels(runs), runs, strict=True)}
    return {"compare_cdf": cdf_figure(samples, "Latency CDFs, overlaid"),
            "compare_ladder": ladder_figure(samples, "Percentile ladder, overlaid")}


def plot_runs(runs: Sequence[Run]) -> dict[str, Figure]:
    """`bench plot`: each run's figures, plus overlaid CDF/ladder when there are several."""
    if len(runs) == 1:
        return run_figures(runs[0])
    figs: dict[str, Figure] = {}
    for label, run in zip(run_labels(runs), runs, strict=True):
        for stem, fig in run_figures(run).items():
            figs[f"{label.replace('/', '-').replace(' #', '-')}-{stem}"] = fig
    figs.update(compare_figures(runs))
    return figs


# --- output -----------------------------------------------------------------------------


def to_bytes(fig: Figure, fmt: str = "png") -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=DPI)
    return buf.getvalue()


def formats_for(choice: str) -> tuple[str, ...]:
    if choice == "both":
        return FORMATS
    if choice not in FORMATS:
        raise BenchInputError(f"--format: {choice!r} is not one of png, svg, both")
    return (choice,)


def save_figures(figs: Mapping[str, Figure], out_dir: Path, formats: Iterable[str] = ("png",)) -> list[Path]:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchInputError(f"{out_dir}: cannot create output directory: {exc.strerror or exc}") from None
    written = []
    for stem, fig in figs.items():
        for fmt in formats:
            path = out_dir / f"{stem}.{fmt}"
            path.write_bytes(to_bytes(fig, fmt))
            written.append(path)
    return written


def _stage_order(key: str) -> tuple[int, str]:
    return (int(key), key) if key.lstrip("-").isdigit() else (1 << 30, key)


def _first_number(mapping: Mapping[str, Any], keys: Iterable[str]) -> float | None:
    for key in keys:
        value = mapping.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def _pname(value: Any) -> str:
    text = str(value).lstrip("pP")
    try:
        return f"p{float(text):g}"
    except ValueError:
        return "p99"
