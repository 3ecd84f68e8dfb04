"""Console output: the live progress line during a run and the summary table after it.

Progress goes to stderr so that `--json` output on stdout stays machine-readable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from bench.runner import Progress

STATS = ("mean", "p50", "p90", "p95", "p99", "p99.9", "max")
ROWS = (("TTFT", "ttft_ms"), ("ITL", "itl_ms"), ("TPOT", "tpot_ms"), ("E2E", "e2e_ms"),
        ("Schedule lag", "schedule_lag_ms"))


@asynccontextmanager
async def live_progress(progress: Progress, enabled: bool) -> AsyncIterator[None]:
    if not enabled:
        yield
        return
    console = Console(stderr=True)
    with Live(_progress_text(progress, 0.0, 0.0), console=console, auto_refresh=False,
              transient=True) as live:
        task = asyncio.create_task(_refresh(live, progress))
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _refresh(live: Live, progress: Progress) -> None:
    last_t, last_chunks = time.perf_counter(), progress.output_chunks
    while True:
        await asyncio.sleep(0.5)
        now = time.perf_counter()
        rate = (progress.output_chunks - last_chunks) / (now - last_t)
        last_t, last_chunks = now, progress.output_chunks
        live.update(_progress_text(progress, rate, now), refresh=True)


def _progress_text(p: Progress, chunks_per_s: float, _now: float) -> Text:
    planned = p.planned
    width = 30
    if planned:
        filled = min(width, int(width * p.done / planned))
        bar = "#" * filled + "-" * (width - filled)
        head = f"[{bar}] {p.done}/{planned}"
    else:
        head = f"{p.done} done"
    errors = ", ".join(f"{k} {v}" for k, v in sorted(p.error_kinds.items())) or "0"
    return Text(f"{head}  in flight {p.in_flight}  errors {errors}  ~{chunks_per_s:,.0f} tok/s")


def summary_table(summary: dict[str, Any], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("metric (ms)")
    for stat in ("n", *STATS):
        table.add_column(stat, justify="right")
    for label, key in ROWS:
        dist = summary.get(key) or {}
        cells = [_fmt(dist.get(stat)) for stat in STATS]
        table.add_row(label, str(dist.get("count", 0)), *cells)
    return table


def summary_lines(summary: dict[str, Any]) -> list[str]:
    req = summary["requests"]
    thr = summary["throughput"]
    rate = summary["rate"]
    errors = ", ".join(f"{k}: {v}" for k, v in req["errors"].items()) or "none"
    offered = f"{rate['offered']:.2f}" if rate.get("offered") is not None else "closed loop"
    lines = [
        f"requests: {req['total']} measured, {req['ok']} ok, errors: {errors}",
        f"throughput: {_fmt(thr['requests_per_s'])} req/s, {_fmt(thr['output_tokens_per_s'])} output tok/s, "
        f"{_fmt(thr['total_tokens_per_s'])} total tok/s over {_fmt(thr['window_s'])} s",
        f"rate: offered {offered}, achieved {_fmt(rate['achieved'])} req/s; "
        f"peak concurrency {summary['concurrency']['peak']}",
    ]
    slo = summary.get("slo")
    if slo:
        limits = ", ".join(f"{k} <= {v:g}" for k, v in slo["limits"].items())
        share = slo["share_meeting_all"]
        verdict = "met" if slo["met"] else "NOT met"
        lines.append(
            f"SLO ({limits} at p{slo['percentile']:g}): {verdict}; "
            f"{'-' if share is None else f'{share:.1%}'} of requests meet every limit; goodput "
            f"{_fmt(slo['goodput_requests_per_s'])} req/s, {_fmt(slo['goodput_output_tokens_per_s'])} tok/s"
        )
    return lines


def print_summary(summary: dict[str, Any], title: str, run_dir: str, warnings: list[str],
                  notes: Sequence[str] = ()) -> None:
    console = Console()
    print_saturation(console, summary)
    console.print(summary_table(summary, title))
    for line in summary_lines(summary) + paired_lines(summary):
        console.print(line, highlight=False)
    for note in notes:
        console.print(f"note: {note}", highlight=False)
    for warning in warnings:
        console.print(f"WARNING: {warning}", style="yellow", highlight=False)
    console.print(f"run directory: {run_dir}", highlight=False)


def print_saturation(console: Console, summary: dict[str, Any]) -> None:
    """The saturation verdict (summary.json `saturation`), before anything else: it changes
    what every number below means."""
    for verdict in summary.get("saturation") or []:
        console.print(f"SATURATED: {verdict['message']}", style="bold red", highlight=False, soft_wrap=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def print_stages(stages: list[dict[str, Any]], max_rate: dict[str, Any] | None) -> None:
    console = Console()
    table = Table(title="sweep stages", title_justify="left")
    for col in ("stage", "load", "achieved req/s", "output tok/s", "TTFT p99 ms", "SLO", "note"):
        table.add_column(col, justify="right" if col not in ("load", "note") else "left")
    for st in stages:
        load = f"rate {st['rate']:.3g}/s" if st.get("rate") is not None else f"concurrency {st['concurrency']}"
        note = "SATURATED (cut short)" if st.get("saturated") else st.get("note", "")
        if st.get("knee"):
            note = (note + "; " if note else "") + "knee: server stops keeping up"
        table.add_row(str(st["index"]), load, _fmt(st.get("achieved_requests_per_s")),
                      _fmt(st.get("output_tokens_per_s")), _fmt(st.get("ttft_p99_ms")),
                      "met" if st.get("slo_met") else "NOT met", note)
    console.print(table)
    if max_rate is not None:
        rate = max_rate.get("rate")
        console.print(f"highest rate meeting the SLO: {_fmt(rate) if rate is not None else 'none found'} req/s "
                      f"(first failing: {_fmt(max_rate.get('first_failing_rate'))})", highlight=False)


def paired_lines(summary: dict[str, Any]) -> list[str]:
    """One line per variant and metric: paired mean difference, its CI, and the verdict."""
    paired = summary.get("paired")
    if not paired:
        return []
    lines = [f"paired vs {paired['baseline']!r} (same prompts; 95 % bootstrap CI of the mean difference):"]
    for name, comp in paired["comparisons"].items():
        for metric, by_stat in comp["metrics"].items():
            ci = by_stat["mean"]
            if ci["diff"] is None:
                continue
            lines.append(f"  {name} {metric}: {ci['diff']:+.2f} [{_fmt(ci['low'])}, {_fmt(ci['high'])}] "
                         f"{ci['verdict']} ({comp['pairs']} pairs)")
        if comp.get("explanation"):
            lines.append(f"  {name}: {comp['explanation']}")
    return lines
