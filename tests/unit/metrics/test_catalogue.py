"""The metric catalogue: every metric declared once, and named only through it.

A table, plot, SLO or comparison cannot name a metric the catalogue lacks: the package
holds no metric key string outside the catalogue's declaration (checked on the source),
the summary's metric entries are exactly the catalogue's, and the lookups by key refuse
anything else.
"""

from __future__ import annotations

import ast
import json
from dataclasses import fields, replace
from pathlib import Path

import pytest

import bench
from bench.analysis.summary_model import Summary
from bench.metric_catalogue import (
    CACHED_TOKENS,
    FROM_SCHEDULE,
    INPUT_TOKENS_PER_S,
    INPUTS_PER_S,
    METRICS,
    PREFIX_CACHE_HIT_SHARE,
    REASONING,
    SLO_KEYS,
    SUMMARISED,
    TOKEN_DISAGREEMENT_SHARE,
    TOKEN_TRUTH,
    Scope,
    by_key,
)
from bench.metrics.distribution import STATISTICS, Distribution
from bench.report import compare, plots
from bench.scenario.schema import Slo

PACKAGE = Path(bench.__file__).parent
DECLARATION = PACKAGE / "metric_catalogue.py"
STORED_SUMMARY = Path(__file__).parents[2] / "data" / "summaries" / "summary-2026-11-floor-plan.json"
KEYS = {m.key for m in METRICS} | {m.summary_key for m in SUMMARISED}


def _string_literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


# The layers that compute, summarise, render and compare metrics. Upstream of them, the
# scenario, the workload and the probe use `output_tokens` for the requested output length
# (a workload parameter, not the metric); the simulator stands alone.
DOWNSTREAM = ("metrics", "analysis", "report", "commands")
# The same workload parameter, in the synthetic scenario `bench calibrate` writes.
NOT_METRICS = {("commands/calibrate.py", "output_tokens")}


def test_no_metric_key_is_written_outside_the_catalogue():
    """Every metric key string appears in one declaration; every table, plot, SLO and
    comparison refers to catalogue entries, so none can name a metric the catalogue lacks."""
    found = []
    for path in sorted(p for layer in DOWNSTREAM for p in (PACKAGE / layer).rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        found += [f"{name}:{line}: {value!r}" for line, value in _string_literals(path)
                  if value in KEYS and (name, value) not in NOT_METRICS]
    assert found == []


def test_each_key_is_declared_once():
    literals = [value for _, value in _string_literals(DECLARATION) if value in KEYS]
    per_request = [m.key for m in METRICS if m.scope is not Scope.RUN]
    run_level = [m.key for m in METRICS if m.scope is Scope.RUN]
    assert len(per_request) == len(set(per_request)) and len(run_level) == len(set(run_level))
    # a key is written once per metric it names (output_tokens_per_s: per request and per run)
    assert sorted(literals) == sorted([m.key for m in METRICS] + [m.summary_name for m in METRICS if m.summary_name])


def test_the_summary_metric_entries_are_the_catalogues():
    data = json.loads(STORED_SUMMARY.read_text(encoding="utf-8"))
    sections = {"saturation", "requests", "throughput", "rate", "concurrency", "slo", "stages", "variants", "paired"}
    # the stored file predates the reasoning-phase, from-schedule, cached-token and token-truth
    # metrics: it has every other, in catalogue order
    older = [m.summary_key for m in SUMMARISED if m not in (*REASONING, *FROM_SCHEDULE, CACHED_TOKENS, *TOKEN_TRUTH)]
    assert [k for k in data if k not in sections] == older
    summary = Summary.from_json(data)
    for stage in (summary, *summary.stages.values(), *summary.variants.values()):
        assert list(stage.distributions) == older
    # after this file: absent, read as None
    later = {INPUT_TOKENS_PER_S.key, INPUTS_PER_S.key, PREFIX_CACHE_HIT_SHARE.key, TOKEN_DISAGREEMENT_SHARE.key}
    assert set(summary.throughput.to_json()) - {"window_s"} == {m.key for m in METRICS if m.scope is Scope.RUN} - later
    assert summary.throughput.input_tokens_per_s is None and summary.throughput.inputs_per_s is None
    full = replace(summary.throughput, input_tokens_per_s=1.0, inputs_per_s=2.0, prefix_cache_hit_share=0.5,
                   token_disagreement_share=0.25)
    assert set(full.to_json()) - {"window_s"} == {m.key for m in METRICS if m.scope is Scope.RUN}
    assert summary.slo is not None and set(summary.slo.limits) <= set(SLO_KEYS)
    assert summary.paired is not None
    for comparison in summary.paired.comparisons.values():
        assert list(comparison.metrics) == [m.key for m in METRICS if m.paired]
    with pytest.raises(ValueError, match="unknown summary keys"):
        Summary.from_json({**data, "queue_ms": data["ttft_ms"]})


def test_the_scenario_slo_takes_its_limits_from_the_catalogue():
    assert [name for name in Slo.model_fields if name != "percentile"] == list(SLO_KEYS)
    assert SLO_KEYS == ("ttft_ms", "tpot_ms", "e2e_ms")  # ITL has no SLO: goodput is per request


def test_renderers_refuse_a_metric_the_catalogue_lacks():
    with pytest.raises(KeyError):
        plots.label("queue_ms")
    with pytest.raises(KeyError):
        by_key("queue_ms")
    assert plots.label("ttft_ms") == "TTFT (ms)"
    assert all(m in METRICS for m in (*compare.METRICS, *compare.THROUGHPUT))


def test_a_distribution_has_the_summary_statistics():
    assert [f.name for f in fields(Distribution)] == [s.replace(".", "_") for s in STATISTICS]
    assert STATISTICS == ("count", "mean", "p50", "p90", "p95", "p99", "p99.9", "max")
    with pytest.raises(KeyError):
        Distribution().stat("p42")
