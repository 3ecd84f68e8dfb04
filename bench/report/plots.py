"""Plots as pure functions `plot_x(ax, data)`: they draw on the given axes and return nothing.

They take plain frames or arrays (never a Run, never files), so they can be reused in the
reports, the comparison, the notebook and by users on their own axes. Figure assembly,
sizes and file formats live in `bench.report.figures`.

Large samples are drawn through a fixed grid of quantiles, so a plot of a million ITL gaps
costs the same as one of a thousand. A sample comes as its values or as a
`metrics.order.SortedSample`, sorted once for every plot of it (`figures.run_samples`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import FixedLocator, NullLocator

from bench.metrics import derive
from bench.metrics.catalogue import OUTPUT_TOKENS_PER_S, REQUESTS_PER_S, STATUS_OK, TTFT, by_key
from bench.metrics.order import SortedSample

__all__ = [
    "ERROR_COLOR", "LADDER_MAX_X", "LADDER_TICKS", "LOG_SCALE_SPAN", "STEP_BINS", "Plotted", "label", "mark_saturation", "mark_window",
    "plot_cdf", "plot_in_flight", "plot_ladder", "plot_latency_vs_throughput",
    "plot_server_metrics", "plot_throughput_vs_offered", "plot_token_rate", "plot_ttft_over_time",
]

# HdrHistogram-style ladder: x = 1 / (1 - p).
LADDER_TICKS = {2.0: "p50", 10.0: "p90", 100.0: "p99", 1e3: "p99.9", 1e4: "p99.99"}
LADDER_MAX_X = 1e4
STEP_BINS = 4000  # a step series of more points is drawn through its envelope in this many bins
Plotted = np.ndarray | SortedSample  # a sample to draw: its values, or sorted once already
_CDF_GRID = np.concatenate([np.linspace(0.0, 0.99, 400), 1.0 - np.logspace(-2, -5, 100)[1:], [1.0]])
ERROR_COLOR = "tab:red"
LOG_SCALE_SPAN = 20.0  # a y range wider than this factor is drawn on a log scale


def label(metric: str) -> str:
    """The axis label of a per-request metric, by its catalogue key; KeyError for a key the
    catalogue lacks (a plot names metrics only through the catalogue)."""
    return by_key(metric).heading


def plot_cdf(ax: Axes, series: Mapping[str, Plotted], metric: str) -> None:
    """Empirical CDF of each named sample (an array, or a `SortedSample` sorted once for
    several plots), overlaid."""
    drawn = False
    for name, values in series.items():
        sample = _sorted(values)
        if sample.count == 0:
            continue
        drawn = True
        if sample.values.size > _CDF_GRID.size:
            probs, xs = _CDF_GRID, sample.quantiles(_CDF_GRID)
        else:
            probs, xs = np.arange(1, sample.values.size + 1) / sample.values.size, sample.values
        ax.step(xs, probs, where="post", label=f"{name} (n={sample.count:,})")
    ax.set_xlabel(label(metric))
    ax.set_ylabel("fraction of samples")
    ax.set_ylim(0, 1.01)
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(fontsize="small", loc="lower right")


def plot_ladder(ax: Axes, series: Mapping[str, Plotted], metric: str) -> None:
    """Percentile ladder: value at percentile p against 1/(1-p) on a log axis (p50 ... p99.99);
    samples as for `plot_cdf`.

    Each curve stops where the sample runs out (1/(1-p) > n): beyond it a "percentile" is
    only the maximum repeated.
    """
    drawn = False
    for name, values in series.items():
        sample = _sorted(values)
        if sample.count < 2:
            continue
        top = min(float(sample.count), LADDER_MAX_X)
        if top <= 2.0:
            continue
        x = np.logspace(np.log10(2.0), np.log10(top), 200)
        ax.plot(x, sample.percentiles(100.0 * (1.0 - 1.0 / x)), label=f"{name} (n={sample.count:,})")
        drawn = True
    ax.set_xscale("log")
    ax.set_xlim(2.0, LADDER_MAX_X)
    ax.xaxis.set_major_locator(FixedLocator(list(LADDER_TICKS)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels(list(LADDER_TICKS.values()))
    ax.set_xlabel("percentile")
    ax.set_ylabel(label(metric))
    ax.grid(True, which="major", alpha=0.3)
    if drawn:
        ax.legend(fontsize="small", loc="upper left")


def plot_in_flight(ax: Axes, requests: pd.DataFrame) -> None:
    """Requests in flight over time, with failed requests marked where they ended."""
    steps = derive.in_flight_over_time(requests)
    if not steps.empty:
        t, count = steps["t_s"].to_numpy(dtype="float64"), steps["in_flight"].to_numpy()
        keep = _envelope(t, count, STEP_BINS)
        ax.step(t[keep], count[keep], where="post", linewidth=0.8)
    _mark_errors(ax, requests)
    ax.set_ylabel("in flight")
    ax.grid(True, alpha=0.3)


def plot_token_rate(ax: Axes, rate: pd.DataFrame, bin_s: float = 1.0) -> None:
    """Output tokens per second, in `bin_s` bins (`scan.token_rate`, or `Run.token_rate`)."""
    if not rate.empty:
        # One filled outline of the bars, not a patch per bar: 1,000 bars took 2 s to draw.
        starts = rate["t_s"].to_numpy(dtype="float64")
        ax.stairs(rate["tokens_per_s"].to_numpy(dtype="float64"), np.append(starts, starts[-1] + bin_s),
                  fill=True, alpha=0.7)
    ax.set_ylabel(f"output tok/s ({bin_s:g} s bins)")
    ax.grid(True, alpha=0.3)


def plot_ttft_over_time(ax: Axes, requests: pd.DataFrame) -> None:
    """TTFT of each request at its send time; warmup greyed, errors marked on the axis."""
    ok = requests[requests["status"] == STATUS_OK]  # warmup too, greyed: not the counted filter
    warm = ok["phase"] == "warmup"
    ax.scatter(ok.loc[~warm, "sent_s"], ok.loc[~warm, TTFT.key], s=4, alpha=0.6, label="measured")
    if warm.any():
        ax.scatter(ok.loc[warm, "sent_s"], ok.loc[warm, TTFT.key], s=4, alpha=0.6, color="grey", label="warmup")
    _mark_errors(ax, requests)
    ax.set_ylabel(TTFT.heading)
    ax.set_xlabel("time since run start (s)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="upper left")


def mark_saturation(axes: Sequence[Axes], start_s: float) -> None:
    """A vertical line on every axis where saturation began, labelled on the top one."""
    for ax in axes:
        ax.axvline(start_s, color=ERROR_COLOR, linestyle="--", linewidth=1.0)
    axes[0].annotate(f"saturated from t={start_s:.1f}s", xy=(start_s, 1.0), xycoords=("data", "axes fraction"),
                     xytext=(3, -12), textcoords="offset points", color=ERROR_COLOR, fontsize="small")


def mark_window(axes: Sequence[Axes], start_s: float, end_s: float, label: str) -> None:
    """Shade [start_s, end_s) on every axes; the label on the first one's legend."""
    for i, ax in enumerate(axes):
        ax.axvspan(start_s, end_s, color="tab:green", alpha=0.08, label=label if i == 0 else None)
    axes[0].legend(fontsize="small", loc="upper right")


def plot_server_metrics(ax: Axes, key: pd.DataFrame) -> None:
    """The server's own view (Prometheus): running and waiting requests, KV-cache use."""
    if key.empty:
        ax.text(0.5, 0.5, "no server metrics", transform=ax.transAxes, ha="center", va="center")
        return
    for column, name in (("running", "running"), ("waiting", "waiting")):
        if column in key and key[column].notna().any():
            ax.step(key["t"], key[column], where="post", linewidth=0.9, label=f"server {name}")
    ax.set_ylabel("server requests")
    ax.grid(True, alpha=0.3)
    if "kv_cache_usage" in key and key["kv_cache_usage"].notna().any():
        twin = ax.twinx()
        twin.plot(key["t"], key["kv_cache_usage"] * 100, color="grey", linestyle="--", linewidth=0.9,
                  label="KV cache %")
        twin.set_ylabel("KV cache %")
        twin.set_ylim(bottom=0)
    ax.legend(fontsize="small", loc="upper left")


def plot_throughput_vs_offered(ax: Axes, stages: pd.DataFrame, knee: float | None = None) -> None:
    """Achieved requests/s (and output tok/s on a twin axis) per stage against the offered rate.

    `stages`: one row per stage with `offered_rate`, `requests_per_s`, `output_tokens_per_s`.
    """
    x = stages["offered_rate"]
    ax.plot(x, stages[REQUESTS_PER_S.key], marker="o", label="achieved req/s")
    finite = x[np.isfinite(x.astype("float64"))]
    if not finite.empty:
        ax.plot([0, finite.max()], [0, finite.max()], linestyle=":", color="grey", label="offered = achieved")
    twin = ax.twinx()
    twin.plot(x, stages[OUTPUT_TOKENS_PER_S.key], marker="s", color="tab:orange", label="output tok/s")
    twin.set_ylabel("output tokens/s")
    twin.set_ylim(bottom=0)  # both axes from zero, or the two curves' shapes mislead
    ax.set_ylim(bottom=0)
    if knee is not None:
        ax.axvline(knee, color=ERROR_COLOR, linestyle="--", label=f"saturation ~{knee:g}/s")
    ax.set_xlabel("offered load (req/s)")
    ax.set_ylabel("achieved requests/s")
    ax.grid(True, alpha=0.3)
    handles = ax.get_legend_handles_labels()
    twin_handles = twin.get_legend_handles_labels()
    ax.legend(handles[0] + twin_handles[0], handles[1] + twin_handles[1], fontsize="small", loc="upper left")


def plot_latency_vs_throughput(ax: Axes, stages: pd.DataFrame, metric: str,
                               slo: tuple[float, str] | None = None, knee_throughput: float | None = None) -> None:
    """`metric` p50/p90/p99 per stage against achieved requests/s; the SLO limit as a line.

    `stages` has columns `requests_per_s` and `<metric>.p50` etc.; `slo` is (limit, percentile).
    """
    x = stages[REQUESTS_PER_S.key]
    drawn = []
    for pname in ("p50", "p90", "p99"):
        column = f"{metric}.{pname}"
        if column in stages:
            ax.plot(x, stages[column], marker="o", label=pname)
            drawn.append(stages[column].to_numpy(dtype="float64"))
    values = _finite(np.concatenate(drawn)) if drawn else np.empty(0)
    if values.size and values.min() > 0 and values.max() / values.min() > LOG_SCALE_SPAN:
        ax.set_yscale("log")  # past the knee latency grows by orders of magnitude
    if slo is not None:
        limit, pname = slo
        ax.axhline(limit, color=ERROR_COLOR, linestyle="--", label=f"SLO {pname} <= {limit:g}")
    if knee_throughput is not None:
        ax.axvline(knee_throughput, color="grey", linestyle=":", label="saturation")
    ax.set_xlabel("achieved requests/s")
    ax.set_ylabel(label(metric))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="upper left")


def _mark_errors(ax: Axes, requests: pd.DataFrame) -> None:
    failed = requests[requests["status"] != STATUS_OK]
    if failed.empty:
        return
    ends = failed["end_s"].fillna(failed["sent_s"])
    # x in data coordinates, y just above the bottom of the axes, whatever the y scale
    ax.plot(ends, np.full(len(ends), 0.03), linestyle="none", marker="x", color=ERROR_COLOR,
            transform=ax.get_xaxis_transform(), label=f"errors ({len(failed)})")


def _finite(values: np.ndarray | pd.Series) -> np.ndarray:
    """The finite values; the array itself when all are (125M ITL gaps are 1 GB a copy)."""
    arr = np.asarray(values, dtype="float64").ravel()
    finite = np.isfinite(arr)
    return arr if finite.all() else arr[finite]


def _sorted(values: Plotted) -> SortedSample:
    return values if isinstance(values, SortedSample) else SortedSample.of(np.asarray(values))


def _envelope(t: np.ndarray, y: np.ndarray, bins: int) -> np.ndarray:
    """The points of a step series (t ascending) to draw: all of them up to 4 x `bins`, else
    per bin of time the first, the last, and the first at the bin's minimum and maximum, so
    that every level reached is drawn and only the order within a bin (a fraction of a
    pixel wide) is lost. 2M steps took seconds to draw; the picture is the same."""
    if t.size <= 4 * bins:
        return np.arange(t.size)
    span = t[-1] - t[0]
    which = np.minimum(((t - t[0]) / span * bins).astype(np.int64), bins - 1) if span > 0 else np.zeros(t.size, np.int64)
    starts = np.flatnonzero(np.diff(which, prepend=-1))
    lengths = np.diff(np.append(starts, t.size))
    picks = [starts, starts + lengths - 1]
    for extreme in (np.minimum, np.maximum):
        at = np.flatnonzero(y == np.repeat(extreme.reduceat(y, starts), lengths))
        picks.append(at[np.unique(which[at], return_index=True)[1]])
    return np.unique(np.concatenate(picks))
