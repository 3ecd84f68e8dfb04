"""The report's steady-state table: the MSER-5 window (bench.analysis.steady) and the figures
inside it beside the whole run's."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from bench.analysis.steady import STEADY_METRICS, SteadyState
from bench.metrics.catalogue import OUTPUT_TOKENS_PER_S, REQUESTS_PER_S
from bench.report.tables import Table, fmt

if TYPE_CHECKING:
    from bench.analysis.summary_model import Summary

__all__ = ["steady_line", "steady_table"]


def steady_table(steady: SteadyState | None, summary: Summary) -> Table | None:
    """None when the run is too short for a window."""
    if steady is None:
        return None
    rows = [["window (s from start)", f"{fmt(steady.start_s)} - {fmt(steady.end_s)}",
             f"warm-up {fmt(steady.warmup_s)} s, cool-down {fmt(steady.cooldown_s)} s"],
            ["requests", fmt(summary.requests.ok), fmt(steady.requests)],
            [REQUESTS_PER_S.label, fmt(summary.throughput.requests_per_s), fmt(steady.requests_per_s)],
            [OUTPUT_TOKENS_PER_S.label, fmt(summary.throughput.output_tokens_per_s), fmt(steady.output_tokens_per_s)]]
    for metric in STEADY_METRICS:
        whole = summary.metric(metric)
        p50, p99 = steady.percentiles[metric.key]
        rows.append([f"{metric.label} p50 / p99 ({metric.unit})", f"{fmt(whole.p50)} / {fmt(whole.p99)}",
                     f"{fmt(p50)} / {fmt(p99)}"])
    return Table("Steady state (MSER-5 on in-flight and token rate)", ["", "whole run", "steady window"], rows,
                 numeric=False)


def steady_line(steady: SteadyState | None) -> str | None:
    """The console's steady-state line (wrapped at 80 columns), or None."""
    if steady is None:
        return None
    p50, p99 = steady.percentiles[STEADY_METRICS[0].key]
    return textwrap.fill(f"steady state {fmt(steady.start_s)}-{fmt(steady.end_s)} s (warm-up {fmt(steady.warmup_s)} s, "
            f"cool-down {fmt(steady.cooldown_s)} s): {fmt(steady.output_tokens_per_s)} output tok/s, "
            f"{fmt(steady.requests_per_s)} req/s, {STEADY_METRICS[0].label} p50 {fmt(p50)} p99 {fmt(p99)} ms",
                         width=80, subsequent_indent="  ")
