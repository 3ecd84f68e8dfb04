"""The report's tables, built once from a stored run and rendered to every format
(`bench.report.document`): plain rows of formatted cells. Metrics are named through the
catalogue (`bench.metrics.catalogue`), statistics through `distribution.STATISTICS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.analysis.precision import MIN_TAIL_BLOCKS, PERCENTILES, Precision
from bench.analysis.results import is_open_loop
from bench.analysis.summary_model import Summary
from bench.metrics.catalogue import (
    E2E,
    FROM_SCHEDULE,
    LATENCY_TABLE,
    OUTPUT_TOKENS,
    REASONING,
    REASONING_TOKENS,
    THROUGHPUT,
    TOKEN_COUNT_DIFF,
    TOKEN_DISAGREEMENT_SHARE,
    TOKEN_TRUTH,
    TPOT,
    TTFT,
    TTFT_REASONING,
    Metric,
)
from bench.metrics.distribution import STATISTICS
from bench.store import ClientInfo, ClockOffset, CpuUse, LoopLag, Provenance

if TYPE_CHECKING:
    from bench.analysis.results import Run

__all__ = [
    "IMPRECISE",
    "LATENCY_ROWS",
    "STATS",
    "Table",
    "client_workers_table",
    "errors_table",
    "fmt",
    "has_reasoning",
    "latency_table",
    "metadata_table",
    "models_table",
    "paired_table",
    "precision_table",
    "reasoning_table",
    "report_tables",
    "schedule_table",
    "slo_table",
    "stages_table",
    "throughput_table",
    "token_truth_table",
    "variants_table",
]

LATENCY_ROWS: tuple[Metric, ...] = LATENCY_TABLE
STATS = STATISTICS
# The per-stage and per-variant tables: (metric, statistic) columns.
VARIANT_CELLS = ((TTFT, "p50"), (TTFT, "p99"), (TPOT, "p50"), (TPOT, "p99"), (E2E, "p50"), (E2E, "p99"))
STAGE_CELLS = ((TTFT, "p50"), (TTFT, "p99"), (TPOT, "p50"), (TPOT, "p99"), (E2E, "p99"))
IMPRECISE = "(imprecise)"  # marks an interval wider than the summary's max_relative_width of its value


@dataclass(frozen=True)
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    numeric: bool = True  # right-align all but the first column


def fmt(value: Any) -> str:
    """Numbers for humans: 3 significant-ish decimals, thousands separated, '-' for missing."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def report_tables(run: Run) -> list[Table]:
    """Everything tabular in the report, in order."""
    summary = run.summary
    tables = [metadata_table(run), latency_table(summary), throughput_table(summary), errors_table(summary)]
    for optional in (schedule_table(summary, is_open_loop(run.manifest)), precision_table(summary),
                     reasoning_table(summary), token_truth_table(summary), slo_table(summary), stages_table(summary, run.manifest.stages), variants_table(summary),
                     models_table(summary),
                     paired_table(summary), client_workers_table(run.manifest.client, run.requests)):
        if optional is not None:
            tables.append(optional)
    return tables


def metadata_table(run: Run) -> Table:
    m = run.manifest
    load = m.scenario.get("load") or {}
    ended = m.ended + (f" ({m.end_reason})" if m.end_reason else "")
    rows = [
        ["scenario", m.name],
        ["scenario file", m.scenario_path or "-"],
        ["model", m.model or "-"],
        ["target", f"{m.target.get('base_url', '-')} ({m.target.get('description', '')})"],
        ["endpoint", str(m.target.get("endpoint", "-"))],
        ["seed", str(m.seed)],
        ["load", _describe_load(load)],
        ["started", m.started_at],
        ["ended at", m.ended_at or "-"],
        ["how it ended", ended],
        ["bench version", m.bench_version],
        ["run directory", str(run.path)],
    ]
    return Table("Run", ["field", "value"], rows + _provenance_rows(m.provenance), numeric=False)


def _provenance_rows(made: Provenance | None) -> list[list[str]]:
    """How to make the run again (run.json `provenance`; absent in older runs)."""
    if made is None:
        return []
    revision = (made.git_revision or "-")[:12] + (" (with uncommitted changes)" if made.git_dirty else "")
    machine = ", ".join(x for x in (made.cpu_model, f"{made.logical_cores} cores" if made.logical_cores else None,
                                    f"{made.memory_gib:g} GiB" if made.memory_gib else None, *made.gpus) if x)
    return [["command", " ".join(made.command) if made.command else "-"], ["bench revision", revision],
            ["client machine", machine or "-"]]


def latency_table(summary: Summary, title: str = "Latency (ms, measured requests)") -> Table:
    rows = []
    for metric in LATENCY_ROWS:
        dist = summary.metric(metric)
        rows.append([metric.label, *(fmt(dist.stat(stat)) for stat in STATS)])
    return Table(title, ["metric", *STATS], rows)


def precision_table(summary: Summary) -> Table | None:
    """The percentiles' confidence intervals (summary.json `precision`), a flagged one marked
    with IMPRECISE; None for runs stored before the intervals were."""
    prec = summary.precision
    if prec is None:
        return None
    rows = []
    for metric in (*LATENCY_ROWS, *(REASONING if has_reasoning(summary) else ())):
        if metric.summary_key in prec.intervals:
            rerun = prec.rerun(metric, "p99")
            rows.append([metric.heading, *(_interval_cell(prec, metric, stat) for stat in PERCENTILES),
                         "-" if rerun is None else f"{fmt(rerun[0])} - {fmt(rerun[1])}"])
    title = (f"Precision: {prec.confidence:.0%} confidence intervals of the percentiles (block bootstrap over "
             f"run time, {prec.block_s:g} s blocks, {prec.resamples} resamples; {IMPRECISE} wider than "
             f"{prec.max_relative_width:.0%} of the value, too few samples, or a tail in fewer than {MIN_TAIL_BLOCKS} "
             "blocks of run time) and the range a re-run's p99 "
             "should fall in")
    return Table(title, ["metric", *PERCENTILES, "p99 re-run"], rows)


def _interval_cell(prec: Precision, metric: Metric, stat: str) -> str:
    ci = prec.interval(metric, stat)
    text = "-" if ci is None else f"{fmt(ci[0])} - {fmt(ci[1])}"
    return f"{text} {IMPRECISE}" if prec.flagged(metric, stat) else text


def schedule_table(summary: Summary, open_loop: bool) -> Table | None:
    """Open loop: TTFT and E2E from the scheduled send (catalogue FROM_SCHEDULE), beside the
    same from the real send; None for closed-loop runs and runs stored before them."""
    if not open_loop or not any(summary.metric(m).count for m in FROM_SCHEDULE):
        return None
    rows = []
    for metric, sent in zip(FROM_SCHEDULE, (TTFT, E2E), strict=True):
        rows.append([sent.heading, *(fmt(summary.metric(sent).stat(stat)) for stat in STATS)])
        rows.append([metric.heading, *(fmt(summary.metric(metric).stat(stat)) for stat in STATS)])
    return Table("Open loop: latency from the scheduled send (what a user arriving on schedule waited) "
                 "and from the real send", ["metric", *STATS], rows)


def has_reasoning(summary: Summary) -> bool:
    """Whether the run streamed reasoning: a first reasoning token, or reasoning tokens in the usage."""
    return summary.metric(TTFT_REASONING).count > 0 or bool(summary.metric(REASONING_TOKENS).max)


def reasoning_table(summary: Summary) -> Table | None:
    """The reasoning-phase metrics (catalogue REASONING), when the run streamed reasoning."""
    if not has_reasoning(summary):
        return None
    rows = [[metric.heading, *(fmt(summary.metric(metric).stat(stat)) for stat in STATS)] for metric in REASONING]
    return Table("Reasoning phases (measured requests)", ["metric", *STATS], rows)


def token_truth_table(summary: Summary) -> Table | None:
    """The output-token count differences (catalogue TOKEN_TRUTH), when requests had two counts
    (the scenario's `tokens:` section); None otherwise."""
    if summary.metric(TOKEN_COUNT_DIFF).count == 0:
        return None
    share = summary.throughput.value(TOKEN_DISAGREEMENT_SHARE)
    rows = [[metric.heading, *(fmt(summary.metric(metric).stat(stat)) for stat in STATS)]
            for metric in TOKEN_TRUTH if metric.summarised]
    return Table(f"Token counts: output tokens used (token_source) minus the next independent count "
                 f"(token_check_source); {TOKEN_DISAGREEMENT_SHARE.label} {fmt(share)}", ["metric", *STATS], rows)


def throughput_table(summary: Summary) -> Table:
    thr, rate, req = summary.throughput, summary.rate, summary.requests
    rows = [
        ["requests measured / ok", f"{fmt(req.total)} / {fmt(req.ok)}"],
        ["window (s)", fmt(thr.window_s)],
        *([metric.label, fmt(thr.value(metric))] for metric in THROUGHPUT),
        ["offered rate (req/s)", fmt(rate.offered) if rate.offered is not None else "closed loop"],
        ["achieved send rate (req/s)", fmt(rate.achieved)],
        ["peak concurrency", fmt(summary.concurrency.peak)],
    ]
    return Table("Throughput and rate", ["quantity", "value"], rows)


def errors_table(summary: Summary) -> Table:
    errors = summary.requests.errors
    rows = [[kind, fmt(count)] for kind, count in sorted(errors.items())] or [["none", "0"]]
    return Table("Errors by kind", ["kind", "count"], rows)


def client_workers_table(client: ClientInfo, requests: Any = None) -> Table | None:
    """Load per client worker process or Ray actor (`client.workers`): an overloaded
    generator (high CPU, loop lag) shows up here. Worker k of K sent request ids k mod K."""
    workers = client.workers or []
    if not workers:
        return None
    ids = requests["request_id"].to_numpy() % len(workers) if requests is not None and "request_id" in requests \
        else None
    rows = []
    for i, w in enumerate(workers):
        index = w.index if w.index is not None else i
        lag, cpu, clock = w.loop_lag_ms or LoopLag(), w.cpu_percent or CpuUse(), w.clock or ClockOffset()
        offset = (f"{clock.offset_ms:+.3f} ± {clock.uncertainty_ms:.3f}"
                  if clock.offset_ms is not None and clock.uncertainty_ms is not None else "-")
        where = w.host or (f"pid {w.pid}" if w.pid else "-")
        if w.lost:
            where += " (lost)"
        rows.append([str(index), where, fmt(int((ids == index).sum())) if ids is not None else "-",
                     fmt(cpu.mean), fmt(cpu.max), fmt(lag.p99), fmt(lag.max), offset])
    return Table("Client workers (load per process or Ray actor)",
                 ["worker", "host", "requests", "CPU mean %", "CPU max %", "loop lag p99 ms", "loop lag max ms",
                  "clock offset ms"], rows)


def slo_table(summary: Summary) -> Table | None:
    """The scenario's SLO, when it has one: limits, values at the percentile, shares, goodput."""
    slo = summary.slo
    if slo is None or not slo.limits:
        return None
    pct = slo.percentile
    pname = f"p{pct:g}" if isinstance(pct, (int, float)) else "p?"
    values = slo.value_at_percentile
    shares = slo.share_meeting
    rows = []
    for metric, limit in slo.limits.items():
        value = values.get(metric)
        rows.append([metric, fmt(limit), fmt(value), "yes" if value is not None and value <= limit else "NO",
                     _share(shares.get(metric))])
    rows.append(["all limits", "", "", "yes" if slo.met else "NO", _share(slo.share_meeting_all)])
    rows.append(["goodput", "", "", "", f"{fmt(slo.goodput_requests_per_s)} req/s, "
                                        f"{fmt(slo.goodput_output_tokens_per_s)} tok/s"])
    return Table(f"SLO (limits at {pname})", ["metric", "limit", f"value at {pname}", "met", "share of requests"], rows)


def _cells(summary: Summary, cells: Sequence[tuple[Metric, str]]) -> list[str]:
    return [fmt(summary.metric(metric).stat(stat)) for metric, stat in cells]


def _headers(cells: Sequence[tuple[Metric, str]]) -> list[str]:
    return [f"{metric.label} {stat}" for metric, stat in cells]


def variants_table(summary: Summary) -> Table | None:
    variants = summary.variants
    if not variants:
        return None
    header = ["variant", "requests", "errors", "out tok/req p50", *_headers(VARIANT_CELLS)]
    rows = []
    for name in sorted(variants):
        v = variants[name]
        rows.append([name, fmt(v.requests.total), fmt(sum(v.requests.errors.values())),
                     fmt(v.metric(OUTPUT_TOKENS).p50), *_cells(v, VARIANT_CELLS)])
    return Table("Per variant (ms)", header, rows)


def models_table(summary: Summary) -> Table | None:
    """One row per model when the requests named several (target.models): its share of the
    measured requests, errors, output tok/s and latency percentiles."""
    models = summary.models
    if not models:
        return None
    header = ["model", "requests", "share", "errors", "out tok/s", "out tok/req p50", *_headers(VARIANT_CELLS)]
    total = sum(m.requests.total for m in models.values()) or 1
    rows = [[name, fmt(m.requests.total), f"{m.requests.total / total:.1%}", fmt(sum(m.requests.errors.values())),
             fmt(m.throughput.output_tokens_per_s), fmt(m.metric(OUTPUT_TOKENS).p50), *_cells(m, VARIANT_CELLS)]
            for name, m in sorted(models.items())]
    return Table("Per model (ms)", header, rows)


def paired_table(summary: Summary) -> Table | None:
    """The per-prompt paired comparison of variants (`Summary.paired`, from bench.analysis.paired)."""
    paired = summary.paired
    if paired is None or not paired.comparisons:
        return None
    base = paired.baseline
    rows = []
    for name, comp in sorted(paired.comparisons.items()):
        for metric, by_stat in comp.metrics.items():
            for stat, ci in by_stat.items():
                rows.append([f"{name} vs {base}", metric, stat, fmt(ci.a), fmt(ci.b),
                             f"{fmt(ci.diff)} [{fmt(ci.low)}, {fmt(ci.high)}]", ci.verdict])
        if comp.explanation:
            rows.append([f"{name} vs {base}", "note", "", "", "", "", comp.explanation])
    return Table("Paired variant comparison (same prompts; simultaneous bootstrap CIs)",
                 ["variants", "metric", "stat", "baseline", "variant", "diff [CI]", "verdict"], rows)


def _share(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.1%}"


def stages_table(summary: Summary, declared: Sequence[dict[str, Any]] = ()) -> Table | None:
    """One row per stage; the offered rate comes from the run's stage list when the summary lacks it."""
    stages = summary.stages
    if len(stages) < 2:
        return None
    header = ["stage", "requests", "errors", "offered/s", "sent/s", "done/s", "out tok/s", *_headers(STAGE_CELLS)]
    rows = []
    for i, key in enumerate(sorted(stages, key=lambda k: (len(k), k))):
        s = stages[key]
        info = declared[i] if i < len(declared) and isinstance(declared[i], dict) else {}
        offered = s.rate.offered if s.rate.offered is not None else info.get("rate")
        rows.append([key, fmt(s.requests.total), fmt(sum(s.requests.errors.values())),
                     fmt(offered), fmt(s.rate.achieved), fmt(s.throughput.requests_per_s),
                     fmt(s.throughput.output_tokens_per_s), *_cells(s, STAGE_CELLS)])
    return Table("Per stage", header, rows)


def _describe_load(load: dict[str, Any]) -> str:
    parts = []
    if load.get("rate") is not None:
        parts.append(f"open loop, {load['rate']:g} req/s {load.get('arrival', '')}".rstrip())
    if load.get("concurrency") is not None:
        parts.append(f"closed loop, concurrency {load['concurrency']}")
    for key in ("max_concurrency", "duration", "max_requests"):
        if load.get(key) is not None:
            parts.append(f"{key} {load[key]}")
    warm = load.get("warmup") or {}
    if warm.get("requests") or warm.get("seconds"):
        parts.append(f"warmup {warm.get('requests') or 0} requests / {warm.get('seconds') or 0:g} s")
    return ", ".join(parts) or "-"


