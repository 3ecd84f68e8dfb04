"""`bench compare` by model: when the runs split their traffic between several models
(`target.models`), each model the runs have in common is compared on its own requests, with
the same bootstrap and verdicts as the whole-run table (`bench.report.compare`), and the
run-level rows from that model's own summary (`Summary.models`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bench.analysis.summary import model_names
from bench.metrics import catalogue
from bench.report import document as report
from bench.report.compare import MIN_EFFECT, N_RESAMPLES, Comparison, Row, Sample, compare_runs, metric_samples, table

if TYPE_CHECKING:
    from bench.analysis.results import Run

__all__ = ["COMPARE_MODELS_MD", "common_models", "model_comparisons", "model_samples", "write_model_compare"]

COMPARE_MODELS_MD = "compare-models.md"


def common_models(runs: Sequence[Run]) -> list[str]:
    """Models every run sent requests to, when some run named several; else []."""
    per_run = [model_names(run.requests) for run in runs]
    if not any(per_run):
        return []
    named = [set(run.requests["model"].dropna().tolist()) if "model" in run.requests else set() for run in runs]
    return sorted(set.intersection(*named))


def model_samples(run: Run, model: str) -> dict[str, Sample]:
    """`compare.run_metric_samples` restricted to the requests that named `model`."""
    ok = catalogue.counted(run.requests)
    ok = ok[ok["model"] == model]
    itl = run.itl
    return metric_samples(ok, itl[itl["request_id"].isin(ok["request_id"])])


def model_comparisons(runs: Sequence[Run], seed: int = 0, n_resamples: int = N_RESAMPLES,
                      min_effect: float = MIN_EFFECT) -> dict[str, Comparison]:
    """One comparison per model in `common_models(runs)` ({} when there is none)."""
    out = {}
    for model in common_models(runs):
        cmp = compare_runs(runs, seed, n_resamples, min_effect, samples=[model_samples(r, model) for r in runs])
        rows = [_own_throughput(row, runs, model) if row.statistic == "run" else row for row in cmp.rows]
        out[model] = dataclasses.replace(cmp, rows=rows)
    return out


def _own_throughput(row: Row, runs: Sequence[Run], model: str) -> Row:
    metric = catalogue.by_key(row.metric, scope_run=True)
    values = []
    for run in runs:
        part = run.summary.models.get(model)
        value = part.throughput.value(metric) if part is not None else None
        values.append(float(value) if isinstance(value, (int, float)) else float("nan"))
    return dataclasses.replace(row, values=values)


def write_model_compare(comparisons: dict[str, Comparison], out_dir: Path) -> list[Path]:
    """compare-models.md: one comparison table per model; nothing when there is none."""
    if not comparisons:
        return []
    report.ensure_dir(out_dir)
    lines = ["# bench compare by model", ""]
    for model, cmp in comparisons.items():
        lines += [f"## Model {model}", "", *report.markdown_table(table(cmp)), ""]
    return [report.write_text(out_dir / COMPARE_MODELS_MD, "\n".join(lines) + "\n")]
