"""Console output: the live progress line during a run and the summary table after it.

Progress goes to stderr so that `--json` output on stdout stays machine-readable.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from bench.analysis.precision import MIN_TAIL_BLOCKS
from bench.analysis.summary_model import Summary
from bench.metrics.catalogue import (
    FROM_SCHEDULE,
    LATENCY_TABLE,
    OUTPUT_TOKENS_PER_S,
    REASONING,
    TOKEN_COUNT_DIFF,
    TOKEN_DISAGREEMENT_SHARE,
    TPOT,
    TTFT,
    Metric,
)
from bench.metrics.distribution import STATISTICS, Distribution
from bench.report.tables import has_reasoning

__all__ = [
    "DROP_ORDER", "ROWS", "SECONDS_FROM_MS", "STATS", "paired_lines",
    "precision_lines", "print_saturation", "print_stages", "print_summary", "print_wrapped", "stages_table",
    "summary_lines", "summary_table",
]

if TYPE_CHECKING:  # the run's counters; `bench compare` prints without importing the runner
    pass

STATS = tuple(stat for stat in STATISTICS if stat != "count")  # the count has its own column, n
# Statistics left out, in this order, when the console is too narrow for all; p50, p99 and
# max always stay. Every one is in `--json` and in the reports.
DROP_ORDER = ("p99.9", "mean", "p95", "p90")
ROWS: tuple[Metric, ...] = LATENCY_TABLE  # the latency table's rows, in the catalogue's order
# A latency row whose largest value reaches this many milliseconds is shown in seconds.
SECONDS_FROM_MS = 10_000.0


def summary_table(summary: Summary, title: str, width: int | None = None) -> Table | Text:
    """The latency table (one row per metric in ROWS, one column per statistic in STATS).

    `width` (console columns): statistics are left out in DROP_ORDER until the table fits,
    which the caption says; p50, p99 and max always stay (narrower than those need, about 60
    columns: one wrapped line per metric). None: every statistic. A row whose
    largest value reaches SECONDS_FROM_MS is shown in seconds; the unit is in the header
    (one for all rows) or in each row's label. Numbers are never cut: their columns do not
    shrink below the widest number.
    """
    rows = [_latency_row(metric.console, summary.metric(metric)) for metric in ROWS]
    stats = list(STATS)
    dropped: list[str] = []
    table = _latency_table(rows, stats, title, dropped, width)
    for stat in DROP_ORDER:
        if width is None or _natural_width(table) <= width:
            return table
        stats.remove(stat)
        dropped.append(stat)
        table = _latency_table(rows, stats, title, dropped, width)
    if width is not None and _natural_width(table) > width:  # under ~60 columns: a line per metric
        return _latency_lines(rows, stats, title, width)
    return table


def _latency_lines(rows: list[_LatencyRow], stats: list[str], title: str, width: int) -> Text:
    lines = [textwrap.fill(title, width=width)]
    for row in rows:
        cells = ", ".join(f"{stat} {row.cells[stat]}" for stat in stats)
        lines.append(textwrap.fill(f"{row.label} ({row.unit}): n {row.count}, {cells}", width=width,
                                   subsequent_indent="  ", break_long_words=False, break_on_hyphens=False))
    return Text("\n".join(lines))


@dataclass(frozen=True)
class _LatencyRow:
    label: str
    unit: str  # "ms" or "s"
    count: str
    cells: dict[str, str]  # statistic -> formatted value in `unit`


def _latency_row(label: str, dist: Distribution) -> _LatencyRow:
    values = [dist.stat(stat) for stat in STATS]
    largest = max((abs(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)), default=0.0)
    seconds = largest >= SECONDS_FROM_MS
    cells = {stat: _fmt_seconds(v) if seconds else _fmt(v) for stat, v in zip(STATS, values, strict=True)}
    return _LatencyRow(label, "s" if seconds else "ms", str(dist.count), cells)


def _latency_table(rows: list[_LatencyRow], stats: list[str], title: str, dropped: list[str],
                   width: int | None) -> Table:
    units = {row.unit for row in rows}
    shared = units.pop() if len(units) == 1 else None
    caption = None
    if dropped:
        caption = (f"{', '.join(dropped)} left out to fit {width} columns; every statistic is in --json "
                   "and the reports")
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    labels = [row.label if shared else f"{row.label} ({row.unit})" for row in rows]
    table.add_column(f"metric ({shared})" if shared else "metric", no_wrap=True,
                     min_width=max(len(label) for label in labels))
    columns = [[row.count for row in rows]] + [[row.cells[stat] for row in rows] for stat in stats]
    for header, cells in zip(("n", *stats), columns, strict=True):
        table.add_column(header, justify="right", no_wrap=True, overflow="fold",
                         min_width=max(len(header), *(len(c) for c in cells)))
    for i, label in enumerate(labels):
        table.add_row(label, *(column[i] for column in columns))
    return table


def _natural_width(renderable: Any) -> int:
    """Columns `renderable` takes when nothing limits it."""
    console = Console(file=io.StringIO(), width=10_000)
    return Measurement.get(console, console.options, renderable).maximum


def summary_lines(summary: Summary) -> list[str]:
    req, thr, rate = summary.requests, summary.throughput, summary.rate
    errors = ", ".join(f"{k}: {v}" for k, v in req.errors.items()) or "none"
    offered = f"{rate.offered:.2f}" if rate.offered is not None else "closed loop"
    lines = [
        f"requests: {req.total} measured, {req.ok} ok, peak {summary.concurrency.peak} in flight; errors: {errors}",
        f"throughput: {_fmt(thr.requests_per_s)} req/s, {_fmt(thr.output_tokens_per_s)} output tok/s, "
        f"{_fmt(thr.total_tokens_per_s)} total tok/s"
        + (f", {_fmt(thr.inputs_per_s)} inputs/s" if thr.inputs_per_s is not None else ""),
        f"  (ok requests over {_fmt(thr.window_s)} s, first send to last end)",
        f"send rate: offered {offered}, achieved {_fmt(rate.achieved)} req/s (first to last send)",
    ]
    if thr.prefix_cache_hit_share is not None:
        lines.append(f"prefix cache: {thr.prefix_cache_hit_share:.1%} of the prompt tokens were cached")
    share = thr.value(TOKEN_DISAGREEMENT_SHARE)
    if share is not None:
        diff = summary.metric(TOKEN_COUNT_DIFF)
        lines.append(f"token counts: {share:.1%} of {diff.count} requests with two counts disagree; "
                     f"{TOKEN_COUNT_DIFF.label} p50 {_fmt(diff.p50)}, p99 {_fmt(diff.p99)} {TOKEN_COUNT_DIFF.unit}")
    if has_reasoning(summary):
        lines.append("reasoning p50: " + ", ".join(f"{m.console} {_fmt(summary.metric(m).p50)}"
                                                  + ("" if m.unit == "tokens" else f" {m.unit}") for m in REASONING))
    if rate.offered is not None and any(summary.metric(m).count for m in FROM_SCHEDULE):
        lines.append("from the scheduled send (open loop): " + ", ".join(
            f"{m.console} p50 {_fmt(summary.metric(m).p50)} p99 {_fmt(summary.metric(m).p99)} ms" for m in FROM_SCHEDULE))
    slo = summary.slo
    if slo is not None:
        limits = ", ".join(f"{k} <= {v:g}" for k, v in slo.limits.items())
        share = slo.share_meeting_all
        verdict = "met" if slo.met else "NOT met"
        lines.append(
            f"SLO ({limits} at p{slo.percentile:g}): {verdict}; "
            f"{'-' if share is None else f'{share:.1%}'} of requests meet every limit; goodput "
            f"{_fmt(slo.goodput_requests_per_s)} req/s, {_fmt(slo.goodput_output_tokens_per_s)} tok/s"
        )
    for name, part in sorted(summary.models.items()):
        lines.append(f"model {name}: {part.requests.total} requests ({part.requests.ok} ok), TTFT p50 "
                     f"{_fmt(part.metric(TTFT).p50)} ms, "
                     f"TPOT p50 {_fmt(part.metric(TPOT).p50)} ms, {_fmt(part.throughput.output_tokens_per_s)} output tok/s")
    return lines


def precision_lines(summary: Summary) -> list[str]:
    """The p50 and p99 intervals of the latency table's metrics, and every flagged percentile
    (summary.json `precision`; none for runs stored before it)."""
    prec = summary.precision
    if prec is None:
        return []
    cells = []
    for metric in ROWS:
        low, high = prec.interval(metric, "p50"), prec.interval(metric, "p99")
        if low is not None or high is not None:
            cells.append(f"{metric.console} {_ci(low)} / {_ci(high)}")
    lines = [f"{prec.confidence:.0%} CI of p50 / p99 (ms, block bootstrap): " + "; ".join(cells)] if cells else []
    reruns = [f"{metric.console} {_ci(prec.rerun(metric, 'p99'))}" for metric in ROWS
              if prec.rerun(metric, "p99") is not None]
    if reruns:
        lines.append(f"p99 of a re-run like this one ({prec.confidence:.0%}, ms): " + "; ".join(reruns))
    flagged = [f"{metric.console} {', '.join(prec.imprecise[metric.summary_key])}"
               for metric in (*ROWS, *(REASONING if has_reasoning(summary) else ()))
               if metric.summary_key in prec.imprecise]
    if flagged:
        lines.append(f"imprecise (CI wider than {prec.max_relative_width:.0%} of the value, too few samples, or a "
                     f"tail in fewer than {MIN_TAIL_BLOCKS} blocks of run time): "
                     + "; ".join(flagged))
    return lines


def _ci(interval: tuple[float, float] | None) -> str:
    return "-" if interval is None else f"[{_fmt(interval[0])}, {_fmt(interval[1])}]"


def print_summary(summary: Summary, title: str, run_dir: str, warnings: list[str],
                  notes: Sequence[str] = ()) -> None:
    console = Console()
    print_saturation(console, summary)
    console.print(summary_table(summary, title, console.width))
    for line in summary_lines(summary) + precision_lines(summary) + paired_lines(summary):
        print_wrapped(console, line)
    for note in notes:
        print_wrapped(console, f"note: {note}")
    for warning in warnings:
        print_wrapped(console, f"WARNING: {warning}", style="yellow")
    console.print(f"run directory: {run_dir}", highlight=False, markup=False, soft_wrap=True)


def print_wrapped(console: Console, line: str, style: str | None = None) -> None:
    """`line` wrapped at word boundaries to the console's width, continuation lines indented
    (a word longer than the width, such as a path, stays whole)."""
    indent = " " * (len(line) - len(line.lstrip(" ")) + 2)
    text = textwrap.fill(line, width=max(console.width, 20), subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False)
    console.print(text, style=style, highlight=False, markup=False, soft_wrap=True)


def print_saturation(console: Console, summary: Summary) -> None:
    """The saturation verdict (summary.json `saturation`), before anything else: it changes
    what every number below means."""
    for verdict in summary.saturation or []:
        console.print(f"SATURATED: {verdict['message']}", style="bold red", highlight=False, soft_wrap=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _fmt_seconds(value_ms: Any) -> str:
    """Milliseconds shown in seconds: 3 decimals under 10 s, 1 under 1000 s, then whole seconds."""
    if not isinstance(value_ms, (int, float)) or isinstance(value_ms, bool):
        return "-"
    value = value_ms / 1e3
    if abs(value) < 10:
        return f"{value:.3f}"
    return f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"


def print_stages(stages: list[dict[str, Any]], max_rate: dict[str, Any] | None) -> None:
    console = Console()
    console.print(stages_table(stages))
    if max_rate is not None:
        rate = max_rate.get("rate")
        print_wrapped(console, f"highest rate meeting the SLO: {_fmt(rate) if rate is not None else 'none found'} "
                               f"req/s (first failing: {_fmt(max_rate.get('first_failing_rate'))})")


def stages_table(stages: list[dict[str, Any]]) -> Table:
    """One row per sweep stage. Number columns never shrink below their widest cell; the
    load and note columns wrap instead."""
    rows = []
    for st in stages:
        load = f"rate {st['rate']:.3g}/s" if st.get("rate") is not None else f"concurrency {st['concurrency']}"
        note = "SATURATED (cut short)" if st.get("saturated") else st.get("note", "")
        if st.get("knee"):
            note = (note + "; " if note else "") + "knee: server stops keeping up"
        rows.append([str(st["index"]), load, _fmt(st.get("achieved_requests_per_s")),
                     _fmt(st.get(OUTPUT_TOKENS_PER_S.key)), _fmt(st.get("ttft_p99_ms")),
                     "met" if st.get("slo_met") else "NOT met", note])
    table = Table(title="sweep stages", title_justify="left")
    headers = ("stage", "load", "achieved req/s", "output tok/s", f"{TTFT.label} p99 {TTFT.unit}", "SLO", "note")
    for i, col in enumerate(headers):
        if col in ("load", "note"):
            table.add_column(col, justify="left", overflow="fold")
        else:
            widest = max((len(row[i]) for row in rows), default=0)
            table.add_column(col, justify="right", no_wrap=True, overflow="fold", min_width=widest)
    for row in rows:
        table.add_row(*row)
    return table


def paired_lines(summary: Summary) -> list[str]:
    """One line per variant and metric: paired mean difference, its CI, and the verdict."""
    paired = summary.paired
    if paired is None:
        return []
    lines = [f"paired vs {paired.baseline!r} (same prompts; 95 % bootstrap CI of the mean difference):"]
    for name, comp in paired.comparisons.items():
        for metric, by_stat in comp.metrics.items():
            ci = by_stat["mean"]
            if ci.diff is None:
                continue
            lines.append(f"  {name} {metric}: {ci.diff:+.2f} [{_fmt(ci.low)}, {_fmt(ci.high)}] "
                         f"{ci.verdict} ({comp.pairs} pairs)")
        if comp.explanation:
            lines.append(f"  {name}: {comp.explanation}")
    return lines
