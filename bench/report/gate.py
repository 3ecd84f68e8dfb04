"""The regression gate of `bench compare --fail-on`: a run fails it when a difference from
the baseline is both past its threshold and significant.

A threshold is `KEY.STAT:+N%` for a per-request metric (`ttft_ms.p99:+10%`: fail when the
p99 TTFT rises by more than 10 %) or `KEY:-N%` for a run-level one (`output_tokens_per_s:-5%`:
fail when output tokens/s falls by more than 5 %). The sign is the direction that is worse
for the metric (the catalogue's `better`), so a gate cannot be written the wrong way round.

Significance is `bench compare`'s own verdict: the simultaneous bootstrap interval excludes
0 and the difference is at least `--min-effect` of the baseline. Run-level figures are one
number per run and have no interval; the threshold alone decides for them (say so in a CI
recipe by setting their threshold above the run-to-run noise).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bench.analysis.stats import DiffCI, finite_or_none
from bench.errors import BenchInputError
from bench.metrics.catalogue import Better, Metric, compared_metrics
from bench.report.compare import STATISTICS, THROUGHPUT, Comparison, is_significant, verdict

__all__ = ["Breach", "Threshold", "check_gate", "comparison_json", "parse_fail_on"]

_ITEM = re.compile(r"^(?P<key>[a-z_]+)(?:\.(?P<stat>p50|p90|p99|mean))?:(?P<sign>[+-])(?P<pct>\d+(?:\.\d+)?)%$")


@dataclass(frozen=True)
class Threshold:
    metric: Metric
    statistic: str  # p50 | p90 | p99 | mean, or "run" for a run-level metric
    limit: float  # signed share of the baseline, e.g. +0.10 or -0.05

    def spec(self) -> str:
        where = self.metric.key if self.statistic == "run" else f"{self.metric.key}.{self.statistic}"
        return f"{where}:{self.limit:+.0%}"


@dataclass(frozen=True)
class Breach:
    threshold: Threshold
    run: str  # the run's label
    baseline: float
    value: float
    change: float  # value / baseline - 1


def parse_fail_on(spec: str) -> list[Threshold]:
    """`--fail-on` items, comma separated; BenchInputError (one line) naming a bad item."""
    items = [part.strip() for part in spec.split(",") if part.strip()]
    if not items:
        raise BenchInputError("--fail-on: give at least one KEY.STAT:+N% or KEY:-N% item")
    return [_threshold(item) for item in items]


def _threshold(item: str) -> Threshold:
    match = _ITEM.match(item)
    if match is None:
        raise BenchInputError(f"--fail-on: {item!r}: expected KEY.STAT:+N% (STAT p50, p90, p99 or mean) or KEY:-N%")
    key, stat, sign = match["key"], match["stat"], match["sign"]
    per_request = {m.key: m for m in compared_metrics(reasoned=True)}
    run_level = {m.key: m for m in THROUGHPUT}
    if key not in per_request and key not in run_level:
        raise BenchInputError(f"--fail-on: {item!r}: {key} is not compared; one of "
                              f"{', '.join(sorted(per_request.keys() | run_level.keys()))}")
    metric = per_request.get(key) if stat is not None else run_level.get(key)
    if metric is None:  # a per-request metric needs its statistic; a run-level one has none
        form = f"{key}.STAT (STAT one of {', '.join(STATISTICS)})" if key in per_request else f"{key} (no STAT)"
        raise BenchInputError(f"--fail-on: {item!r}: write it as {form}")
    worse = "+" if metric.better is Better.LOWER else "-"
    if sign != worse:
        raise BenchInputError(f"--fail-on: {item!r}: {'higher' if worse == '+' else 'lower'} {key} is worse; "
                              f"write {worse}{match['pct']}%")
    return Threshold(metric, stat or "run", float(f"{sign}{match['pct']}") / 100.0)


def check_gate(cmp: Comparison, thresholds: list[Threshold]) -> list[Breach]:
    """Each (threshold, run) past its limit and, where an interval exists, significant."""
    rows = {(row.metric, row.statistic): row for row in cmp.rows}
    breaches = []
    for threshold in thresholds:
        row = rows.get((threshold.metric.key, threshold.statistic))
        if row is None:  # a reasoning-phase metric, and no run streamed reasoning
            continue
        base = row.values[0]
        for k in range(1, len(row.values)):
            value = row.values[k]
            if not (base and base == base and value == value):  # no baseline value, or NaN
                continue
            change = value / base - 1.0
            past = change > threshold.limit if threshold.limit > 0 else change < threshold.limit
            judged = threshold.statistic == "run" or is_significant(row.diffs[k], cmp.min_effect)
            if past and judged:
                breaches.append(Breach(threshold, cmp.labels[k], base, value, change))
    return breaches


def comparison_json(cmp: Comparison, thresholds: list[Threshold], breaches: list[Breach]) -> dict[str, object]:
    """`bench compare --json`: every cell with its interval and verdict, and the gate."""
    def diff(d: object) -> dict[str, object] | None:
        if d is None:
            return None
        assert isinstance(d, DiffCI)
        return {"diff": finite_or_none(d.diff), "low": finite_or_none(d.low), "high": finite_or_none(d.high), "confidence": d.confidence,
                "verdict": verdict(d, cmp.min_effect)}

    rows = [{"metric": r.metric, "statistic": r.statistic, "values": [finite_or_none(v) for v in r.values],
             "diffs": [diff(d) for d in r.diffs]} for r in cmp.rows]
    return {"runs": cmp.labels, "baseline": cmp.labels[0], "seed": cmp.seed, "resamples": cmp.n_resamples,
            "min_effect": cmp.min_effect, "warnings": cmp.warnings, "rows": rows,
            "gate": {"thresholds": [t.spec() for t in thresholds], "passed": not breaches,
                     "breaches": [{"threshold": b.threshold.spec(), "run": b.run, "baseline": b.baseline,
                                   "value": b.value, "change": b.change} for b in breaches]}}

