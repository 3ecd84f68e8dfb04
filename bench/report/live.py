"""The live view of a running `bench run`: progress, rolling latencies, errors, the client's
own load, refreshed twice a second on a terminal; a plain line every PLAIN_EVERY_S seconds
(and one at the end) when stderr is not a terminal; nothing with `--quiet`.

The rolling TTFT, ITL and schedule lag come from the records finished in the last
WINDOW_S seconds (`LiveStats.observe`, fed by the run's record sink). They are a view for
the operator, not a measurement: the stored run is the measurement. Records written in
batches by client worker processes are not observed, so with `--workers` those rows show "-".
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import numpy as np
import psutil
from rich.console import Console
from rich.live import Live
from rich.text import Text

from bench.records import OUTPUT_KIND_TABLE, Progress, RequestRecord

__all__ = ["BUSY_CPU_PERCENT", "BUSY_LOOP_LAG_MS", "PLAIN_EVERY_S", "REFRESH_S", "WINDOW_S", "LiveStats",
           "live_progress", "panel_text", "plain_line"]

REFRESH_S = 0.5
PLAIN_EVERY_S = 2.0
WINDOW_S = 10.0
BUSY_CPU_PERCENT = 90.0  # the client process near one full core: it shapes what it measures
BUSY_LOOP_LAG_MS = 20.0


class LiveStats:
    """Latencies (ms) of the records finished in the last `window_s` seconds."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._items: deque[tuple[float, float | None, np.ndarray, float]] = deque()
        self.cpu_percent: float | None = None
        self.loop_lag_ms: float | None = None

    def observe(self, record: RequestRecord) -> None:
        chunks = record.chunks
        times = np.frombuffer(chunks.t, dtype=np.float64) if len(chunks.t) else np.zeros(0)
        kinds = np.frombuffer(chunks.kind, dtype=np.uint8) if len(chunks.kind) else np.zeros(0, np.uint8)
        output = OUTPUT_KIND_TABLE.take(kinds)  # (np.isin cost 30 us a record: 4 % of a 1,024-stream client's CPU)
        first_choice = (np.frombuffer(chunks.choice, dtype=np.int32) == 0) if len(chunks.choice) else output
        out = times[output & first_choice]
        ttft = (float(out[0]) - record.sent_s) * 1e3 if out.size and record.status == "ok" else None
        gaps = np.diff(out) * 1e3 if record.status == "ok" else np.zeros(0)
        self._items.append((time.perf_counter(), ttft, gaps, (record.sent_s - record.scheduled_s) * 1e3))

    def snapshot(self) -> dict[str, float | None]:
        """p50 / p99 of TTFT and ITL, p99 of schedule lag over the window (None: no sample)."""
        horizon = time.perf_counter() - self.window_s
        while self._items and self._items[0][0] < horizon:
            self._items.popleft()
        ttft = np.array([i[1] for i in self._items if i[1] is not None])
        itl = np.concatenate([i[2] for i in self._items]) if self._items else np.zeros(0)
        lag = np.array([i[3] for i in self._items])

        def pct(values: np.ndarray, q: float) -> float | None:
            return float(np.percentile(values, q)) if values.size else None

        return {"ttft_p50": pct(ttft, 50), "ttft_p99": pct(ttft, 99), "itl_p50": pct(itl, 50),
                "itl_p99": pct(itl, 99), "lag_p99": pct(lag, 99)}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _busy(stats: LiveStats) -> str | None:
    cpu, lag = stats.cpu_percent, stats.loop_lag_ms
    if (cpu is not None and cpu >= BUSY_CPU_PERCENT) or (lag is not None and lag >= BUSY_LOOP_LAG_MS):
        return (f"WARNING: the client is saturated (CPU {_ms(cpu)} %, loop lag {_ms(lag)} ms): "
                "its own delays are in the latencies; use --workers or fewer streams")
    return None


def _head(p: Progress) -> str:
    if p.planned:
        filled = min(30, int(30 * p.done / p.planned))
        return f"[{'#' * filled}{'-' * (30 - filled)}] {p.done}/{p.planned}"
    return f"{p.done} done"


def panel_text(p: Progress, stats: LiveStats, tokens_per_s: float) -> Text:
    """The terminal panel: progress, rolling latencies, errors by kind, the client's load."""
    s = stats.snapshot()
    errors = ", ".join(f"{k} {v}" for k, v in sorted(p.error_kinds.items())) or "none"
    lines = [f"{_head(p)}  in flight {p.in_flight}  ~{tokens_per_s:,.0f} tok/s",
             f"last {stats.window_s:g} s: TTFT p50 {_ms(s['ttft_p50'])} p99 {_ms(s['ttft_p99'])} ms  "
             f"ITL p50 {_ms(s['itl_p50'])} p99 {_ms(s['itl_p99'])} ms  sched lag p99 {_ms(s['lag_p99'])} ms",
             f"errors: {errors}",
             f"client CPU {_ms(stats.cpu_percent)} %  loop lag {_ms(stats.loop_lag_ms)} ms"]
    text = Text("\n".join(lines))
    warning = _busy(stats)
    if warning is not None:
        text.append("\n" + warning, style="bold yellow")
    return text


def plain_line(p: Progress, stats: LiveStats, tokens_per_s: float) -> str:
    """One line for a log file or CI: the panel's figures without terminal control."""
    s = stats.snapshot()
    planned = f"/{p.planned}" if p.planned else ""
    line = (f"progress: {p.done}{planned} done, {p.in_flight} in flight, {p.errors} errors, "
            f"~{tokens_per_s:,.0f} tok/s, TTFT p99 {_ms(s['ttft_p99'])} ms, ITL p99 {_ms(s['itl_p99'])} ms, "
            f"client CPU {_ms(stats.cpu_percent)} %")
    warning = _busy(stats)
    return line if warning is None else f"{line}\n{warning}"


@asynccontextmanager
async def live_progress(progress: Progress, enabled: bool, stats: LiveStats | None = None) -> AsyncIterator[None]:
    """Show the live view while the body runs (stderr); `enabled` False: nothing."""
    if not enabled:
        yield
        return
    stats = stats if stats is not None else LiveStats()
    console = Console(stderr=True)
    if not console.is_terminal:
        task = asyncio.create_task(_plain(console, progress, stats))
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            console.print(plain_line(progress, stats, 0.0), highlight=False, markup=False, soft_wrap=True)
        return
    with Live(panel_text(progress, stats, 0.0), console=console, auto_refresh=False, transient=True) as live:
        task = asyncio.create_task(_refresh(progress, stats, lambda rate: live.update(
            panel_text(progress, stats, rate), refresh=True), REFRESH_S))
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _plain(console: Console, progress: Progress, stats: LiveStats) -> None:
    await _refresh(progress, stats, lambda rate: console.print(plain_line(progress, stats, rate), highlight=False,
                                                               markup=False, soft_wrap=True), PLAIN_EVERY_S)


async def _refresh(progress: Progress, stats: LiveStats, show: Callable[[float], None], every_s: float) -> None:
    me = psutil.Process()
    me.cpu_percent(None)  # the first reading only starts the interval
    last_t, last_chunks = time.perf_counter(), progress.output_chunks
    while True:
        slept = time.perf_counter()
        await asyncio.sleep(every_s)
        now = time.perf_counter()
        stats.loop_lag_ms = max(0.0, (now - slept - every_s) * 1e3)  # how late this wake-up came
        stats.cpu_percent = me.cpu_percent(None)
        rate = (progress.output_chunks - last_chunks) / (now - last_t)
        last_t, last_chunks = now, progress.output_chunks
        show(rate)
