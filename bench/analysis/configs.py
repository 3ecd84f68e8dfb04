"""A server-config sweep's table, Pareto front and best configuration under the SLO.

Everything is read from the stored runs (each configuration's run directory): one row per
(configuration, load point), the point's figures from its stage summary (the whole run's
when the run had one point), `saturated` from the sweep's own stage notes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.results import Run
from bench.analysis.summary_model import Summary
from bench.metrics.catalogue import E2E, ITL, OUTPUT_TOKENS_PER_S, REQUESTS_PER_S, TPOT, TTFT, Metric

__all__ = ["CONFIG", "FRONT_LATENCY", "PERCENTILE", "BestConfig", "best_config", "config_table", "pareto_front"]

CONFIG = "config"
PERCENTILE = "p99"  # the tail the table, the front and the plot show
FRONT_LATENCY: tuple[Metric, ...] = (TTFT, TPOT)  # the front's latency axes (throughput is the other)
_TABLE_LATENCY: tuple[Metric, ...] = (TTFT, TPOT, ITL, E2E)


@dataclass(frozen=True)
class BestConfig:
    """The configuration of the highest output tokens/s at a load point that met the SLO
    (every limit at its percentile) and did not saturate; `reason` says how it was chosen."""

    config: str
    stage: int  # the load point's stage index in the configuration's run
    output_tokens_per_s: float
    reason: str


def config_table(runs: Mapping[str, Run]) -> pd.DataFrame:
    """One row per (configuration, load point), configurations in the given order.

    Columns: config, stage, load (text), rate, concurrency, requests_per_s,
    output_tokens_per_s, `<metric>.p99` for TTFT, TPOT, ITL and E2E (ms), slo_met (bool, or
    None without an SLO), saturated (cut short by the sweep, or a saturation verdict of the
    stored run), requests, errors, and `pareto_<metric>` (on the front of
    throughput against that metric's p99, among unsaturated points).
    """
    rows = [row for name, run in runs.items() for row in _rows(name, run)]
    frame = pd.DataFrame(rows, columns=_columns())
    for metric in FRONT_LATENCY:
        usable = ~frame["saturated"].astype(bool)
        front = pareto_front(frame[OUTPUT_TOKENS_PER_S.key].to_numpy(dtype="float64"),
                             frame[f"{metric.key}.{PERCENTILE}"].to_numpy(dtype="float64"), usable.to_numpy())
        frame[f"pareto_{metric.key}"] = front
    return frame


def _columns() -> list[str]:
    return ([CONFIG, "stage", "load", "rate", "concurrency", REQUESTS_PER_S.key, OUTPUT_TOKENS_PER_S.key]
            + [f"{m.key}.{PERCENTILE}" for m in _TABLE_LATENCY] + ["slo_met", "saturated", "requests", "errors"])


def _rows(name: str, run: Run) -> list[dict[str, Any]]:
    notes = [n for n in run.manifest.stages if isinstance(n, dict)]
    scopes: Sequence[tuple[int, Summary]]
    if run.summary.stages:
        scopes = [(int(key), summary) for key, summary in sorted(run.summary.stages.items(), key=lambda kv: int(kv[0]))]
    else:
        scopes = [(int(notes[0].get("index", 0)) if notes else 0, run.summary)]
    by_index = {int(n.get("index", i)): n for i, n in enumerate(notes)}
    # Saturated: cut short by the sweep's live watch, or found so in the stored run (summary.json
    # verdicts: stage None when the run had one stage).
    verdicts = {v.get("stage") for v in run.summary.saturation or []}
    single = len(scopes) == 1
    return [_row(name, index, summary, by_index.get(index, {}), index in verdicts or (single and None in verdicts))
            for index, summary in scopes]


def _row(name: str, index: int, summary: Summary, note: Mapping[str, Any], saturated: bool) -> dict[str, Any]:
    rate, concurrency = note.get("rate"), note.get("concurrency")
    load = f"rate {rate:g}/s" if rate is not None else (f"concurrency {concurrency}" if concurrency else "")
    row: dict[str, Any] = {
        CONFIG: name, "stage": index, "load": load, "rate": rate, "concurrency": concurrency,
        REQUESTS_PER_S.key: summary.throughput.requests_per_s,
        OUTPUT_TOKENS_PER_S.key: summary.throughput.output_tokens_per_s,
        "slo_met": summary.slo.met if summary.slo is not None else None,
        "saturated": saturated or bool(note.get("saturated", False)),
        "requests": summary.requests.total, "errors": sum(summary.requests.errors.values()),
    }
    for metric in _TABLE_LATENCY:
        value = summary.metric(metric).stat(PERCENTILE)
        row[f"{metric.key}.{PERCENTILE}"] = np.nan if value is None else value
    return row


def pareto_front(throughput: np.ndarray, latency: np.ndarray, usable: np.ndarray | None = None) -> np.ndarray:
    """Mask of the points no other point beats: none has throughput >= and latency <= with
    one of them strict. Points with a non-finite value or not `usable` are never on it."""
    ok = np.isfinite(throughput) & np.isfinite(latency)
    if usable is not None:
        ok &= usable.astype(bool)
    front = np.zeros(len(throughput), dtype=bool)
    for i in np.flatnonzero(ok):
        others = ok.copy()
        others[i] = False
        at_least = (throughput[others] >= throughput[i]) & (latency[others] <= latency[i])
        strictly = (throughput[others] > throughput[i]) | (latency[others] < latency[i])
        front[i] = not np.any(at_least & strictly)
    return front


def best_config(table: pd.DataFrame) -> BestConfig | None:
    """The best configuration (see BestConfig); None when no unsaturated point met the SLO.
    Without an SLO (slo_met all None) the highest throughput of any unsaturated point."""
    usable = table[~table["saturated"].astype(bool)]
    usable = usable[np.isfinite(usable[OUTPUT_TOKENS_PER_S.key].to_numpy(dtype="float64"))]
    has_slo = table["slo_met"].notna().any()
    if has_slo:
        usable = usable[usable["slo_met"].astype(bool)]
    if usable.empty:
        return None
    top = usable.loc[usable[OUTPUT_TOKENS_PER_S.key].astype("float64").idxmax()]
    reason = ("highest output tokens/s at a load point that met the SLO and did not saturate" if has_slo
              else "highest output tokens/s at an unsaturated load point (the scenario has no slo)")
    return BestConfig(str(top[CONFIG]), int(top["stage"]), float(top[OUTPUT_TOKENS_PER_S.key]), reason)
