"""`bench compare`'s logic on runs built in memory: the samples and their time blocks, each
row's values and interval, the seed of each cell, the run-level rows, the scenario
mismatch lines, and the verdict rules at their exact edges.

Written against mutants of bench/report/compare.py that survived test_compare_rules.py
(benchmarks/mutation.py); the survivors that cannot change any result are listed with their
reason in docs/mutation.md. The rendering (tables, console, HTML) is not mutated.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.analysis import stats
from bench.analysis import summary as aggregate
from bench.analysis.results import Run
from bench.errors import BenchInputError
from bench.metrics import catalogue, derive
from bench.metrics.catalogue import OUTPUT_TOKENS_PER_S
from bench.records import CHUNK_KINDS
from bench.report import compare
from bench.store import REQUEST_DTYPES
from bench.store.manifest import Manifest

SCENARIO = {"requests": {"synthetic": {"prompt_tokens": 8}}, "load": {"rate": 5, "duration": 2},
            "sampling": {"max_tokens": 4}}


def build_run(path: str, slow: float, model: str = "m", scenario: dict | None = None) -> Run:
    """Six requests sent 0.3 s apart, the first warmup and one failed; tokens every `slow` s."""
    base = {k: None for k in REQUEST_DTYPES}
    base.update(stage=0, phase="measure", variant="", block=0, conversation=-1, turn=0, prompt_index=0,
                n=1, done_seen=True, reconnected=False, output_chars=0, status="ok")
    rows, chunks = [], []
    for i in range(6):
        sent = 0.3 * i
        row = dict(request_id=i, scheduled_s=sent, submitted_s=sent, sent_s=sent, end_s=sent + 4 * slow + 0.05)
        if i == 0:
            row["phase"] = "warmup"
        if i == 4:
            row.update(status="error", error_kind="timeout")
        rows.append({**base, **row})
        chunks += [(i, sent + slow * (k + 1), "content", None, 0) for k in range(3 if i == 3 else 4)]
    raw = pd.DataFrame(rows).astype(REQUEST_DTYPES)
    frame = pd.DataFrame(chunks, columns=["request_id", "t_s", "kind", "tokens", "choice"])
    frame["kind"] = frame["kind"].astype(pd.CategoricalDtype(list(CHUNK_KINDS)))
    frame["tokens"] = frame["tokens"].astype("Int32")
    requests = derive.per_request(raw, frame)
    manifest = Manifest.model_validate({
        "schema_version": 1, "bench_version": "0", "name": Path(path).name, "scenario": scenario or SCENARIO,
        "target": {}, "model": model, "seed": 0, "t0_perf_counter": 0.0, "started_at": "2026-01-01T00:00:00",
        "ended": "completed", "python": "3", "platform": "p", "host": "h"})
    return Run(Path(path), manifest, requests, frame, aggregate.summarize(requests, frame, 5.0))


def test_samples_are_the_counted_requests_in_quarter_second_blocks():
    run = build_run("/runs/a", 0.1)
    samples = compare.run_metric_samples(run)
    assert list(samples) == [m.key for m in catalogue.COMPARED]
    ttft = samples["ttft_ms"]
    np.testing.assert_allclose(ttft.values, [100.0] * 4)  # requests 1, 2, 3, 5
    assert ttft.groups is not None and ttft.groups.tolist() == [1.0, 2.0, 3.0, 6.0]  # sent 0.3, 0.6, 0.9, 1.5
    np.testing.assert_allclose(samples["tpot_ms"].values, [100.0] * 4)
    itl = samples["itl_ms"]
    np.testing.assert_allclose(itl.values, [100.0] * 11)  # 3 + 3 + 2 + 3 gaps
    # each gap's block is its closing chunk's time: request 1's gaps close at 0.5, 0.6, 0.7
    assert itl.groups is not None and itl.groups[:3].tolist() == [2.0, 2.0, 2.0]
    assert itl.groups.tolist() == np.floor(run.itl["t_s"].to_numpy() / 0.25).tolist()


def test_each_row_is_the_point_statistics_and_the_cell_bootstrap():
    runs = [build_run("/runs/a", 0.1), build_run("/runs/b", 0.12), build_run("/runs/c", 0.1)]
    cmp = compare.compare_runs(runs, seed=7, n_resamples=300)
    assert cmp.labels == ["a", "b", "c"] and cmp.seed == 7 and cmp.n_resamples == 300
    assert cmp.min_effect == compare.MIN_EFFECT and cmp.warnings == []
    samples = [compare.run_metric_samples(r) for r in runs]
    per_metric = len(compare.STATISTICS)
    metrics = catalogue.compared_metrics(False)  # these runs stream no reasoning
    assert cmp.n_metrics == len(metrics)
    # the token-count disagreement share only when a run counted its tokens twice: none here
    run_level = [m for m in compare.THROUGHPUT if not m.token_truth]
    assert len(cmp.rows) == len(metrics) * per_metric + len(run_level)
    for m_index, metric in enumerate(metrics):
        rows = cmp.rows[m_index * per_metric:(m_index + 1) * per_metric]
        assert [r.statistic for r in rows] == list(compare.STATISTICS)
        for r_index in (1, 2):
            # one reproducible stream per (metric, run)
            seed = int(np.random.SeedSequence([7, m_index, r_index]).generate_state(1)[0])
            a, b = samples[0][metric.key], samples[r_index][metric.key]
            want = stats.bootstrap_diff(a.values, b.values, compare.STATISTICS, groups_a=a.groups, groups_b=b.groups,
                                        n_resamples=300, seed=seed, confidence=compare.cell_confidence(len(metrics)))
            for row in rows:
                assert row.diffs[r_index] == want[row.statistic]
        for row in rows:
            assert row.label == metric.heading and row.metric == metric.key and row.diffs[0] is None
            assert row.values == [stats.point(s[metric.key].values, row.statistic) for s in samples]
    for row, metric in zip(cmp.rows[-len(run_level):], run_level, strict=True):
        assert row.label == f"{metric.label} (run)" and row.statistic == "run" and row.metric == metric.key
        want = [r.summary.throughput.value(metric) for r in runs]  # None (no request had it) is shown as NaN
        np.testing.assert_array_equal(np.array(row.values, dtype=float), np.array(
            [np.nan if v is None else v for v in want], dtype=float))
        assert row.diffs == [None] * 3
    slower = {(r.metric, r.statistic): r.diffs[1] for r in cmp.rows if r.diffs[1] is not None}
    assert slower[("tpot_ms", "mean")].diff == pytest.approx(20.0)


def test_given_samples_are_used_and_one_run_is_refused():
    runs = [build_run("/runs/a", 0.1), build_run("/runs/b", 0.1)]
    fake = [{m.key: compare.Sample(np.arange(1.0, 301.0) * k) for m in compare.METRICS} for k in (1, 2)]
    cmp = compare.compare_runs(runs, n_resamples=50, min_effect=0.2, samples=fake)
    first = cmp.rows[0]
    assert first.values == [pytest.approx(150.5), pytest.approx(301.0)] and cmp.min_effect == 0.2
    assert compare.verdict(first.diffs[1], cmp.min_effect) == "higher"
    with pytest.raises(BenchInputError, match=r"^compare: give at least two run directories$"):
        compare.compare_runs(runs[:1])


def test_a_missing_throughput_is_nan():
    runs = [build_run("/runs/a", 0.1), build_run("/runs/b", 0.1)]
    empty = build_run("/runs/c", 0.1)
    empty = Run(empty.path, empty.manifest, empty.requests, empty.chunk_frame,
                aggregate.summarize(empty.requests.assign(phase="warmup"), empty.chunk_frame, None))
    cmp = compare.compare_runs([*runs, empty], n_resamples=20)
    row = next(r for r in cmp.rows if r.metric == OUTPUT_TOKENS_PER_S.key and r.statistic == "run")
    assert row.values[0] == runs[0].summary.throughput.output_tokens_per_s and np.isnan(row.values[2])


def test_scenario_mismatch_lines():
    other = {**SCENARIO, "load": {"rate": 9, "duration": 2, "new_field": 1}, "sampling": "greedy"}
    runs = [build_run("/runs/a", 0.1), build_run("/runs/b", 0.1, model="m2", scenario=other),
            build_run("/x/a", 0.1)]
    assert compare.scenario_mismatches(runs) == [
        "runs/b: model 'm2' differs from 'm'",
        "runs/b: load (load:) differ from runs/a: rate: 5 vs 9",
        "runs/b: sampling (sampling:) differ from runs/a: {\"max_tokens\": 4} vs \"greedy\"",
    ]
    # a section only one run has, or a key only one side has, is a newer bench's default: not a mismatch
    newer = {**SCENARIO, "requests": {"synthetic": {"prompt_tokens": 8}, "shared_prefix": 0}, "extra": {"x": 1}}
    assert compare.scenario_mismatches([build_run("/runs/a", 0.1), build_run("/runs/b", 0.1, scenario=newer)]) == []
    long = {**SCENARIO, "requests": {"synthetic": {"prompt_tokens": "y" * 80}}}
    lines = compare.scenario_mismatches([build_run("/runs/a", 0.1), build_run("/runs/b", 0.1, scenario=long)])
    shown = ('{"prompt_tokens": "' + "y" * 80)[:57] + "..."
    assert lines == [f'b: prompts (requests:) differ from a: synthetic: {{"prompt_tokens": 8}} vs {shown}']


@pytest.mark.parametrize(("statistic", "need"), [("mean", 2), ("p50", 2), ("p75", 4), ("p90", 10), ("p95", 20),
                                                 ("p99", 100), ("p99.9", 1000)])
def test_min_samples(statistic, need):
    assert compare.min_samples(statistic) == need


def test_a_difference_of_exactly_the_floor_counts():
    at_floor = stats.DiffCI("p50", 100.0, 105.0, 5.0, 1.0, 9.0, 0.99, 500, 500)
    assert compare.verdict(at_floor) == "higher" and compare.is_significant(at_floor)
    lower = stats.DiffCI("p50", 100.0, 90.0, -10.0, -15.0, -5.0, 0.99, 500, 500)
    assert compare.verdict(lower) == "lower" and compare.is_significant(lower)
    assert not compare.is_significant(None)
    no_base = stats.DiffCI("p50", np.nan, 90.0, np.nan, -15.0, -5.0, 0.99, 500, 500)
    assert compare.verdict(no_base) == "lower"
    tiny = stats.DiffCI("mean", -100.0, -101.0, -1.0, -1.5, -0.5, 0.99, 500, 500)  # 1 % of |a|
    assert compare.verdict(tiny) == "not significant (< 5%)"
    assert compare.verdict(tiny, min_effect=0.005) == "lower"


def test_the_default_seed_is_zero():
    runs = [build_run("/runs/a", 0.1), build_run("/runs/b", 0.11)]
    # repr: equal rows compare equal even where a value is NaN (a run-level rate no request had)
    default = [repr(r) for r in compare.compare_runs(runs, n_resamples=40).rows]
    assert default == [repr(r) for r in compare.compare_runs(runs, seed=0, n_resamples=40).rows]
    assert default != [repr(r) for r in compare.compare_runs(runs, seed=1, n_resamples=40).rows]


def test_sections_that_agree_are_no_mismatch():
    reordered = {"requests": {"synthetic": {"prompt_tokens": 8}}, "sampling": {"max_tokens": 4},
                 "load": {"duration": 2, "rate": 5}}
    nested = {**SCENARIO, "load": {"rate": 5, "duration": 2, "burst": {"b": 2, "a": 1}}}
    nested_other = {**SCENARIO, "load": {"duration": 2, "burst": {"a": 1, "b": 2}, "rate": 5}}
    plain = {"requests": "same text", "load": None}
    for one, two in ((SCENARIO, reordered), (nested, nested_other), (plain, dict(plain))):
        assert compare.scenario_mismatches([build_run("/runs/a", 0.1, scenario=one),
                                            build_run("/runs/b", 0.1, scenario=two)]) == []


def test_every_differing_key_of_a_section_is_listed():
    other = {**SCENARIO, "load": {"rate": 6, "duration": 3}}
    assert compare.scenario_mismatches([build_run("/runs/a", 0.1), build_run("/runs/b", 0.1, scenario=other)]) == [
        "b: load (load:) differ from a: duration: 2 vs 3, rate: 5 vs 6"]


def test_a_value_of_exactly_60_characters_is_shown_whole():
    text = "z" * 58  # 60 characters once quoted
    other = {**SCENARIO, "sampling": {"max_tokens": 4, "stop": text}}
    mine = {**SCENARIO, "sampling": {"max_tokens": 4, "stop": "y"}}
    lines = compare.scenario_mismatches([build_run("/runs/a", 0.1, scenario=mine),
                                         build_run("/runs/b", 0.1, scenario=other)])
    assert lines == [f'b: sampling (sampling:) differ from a: stop: "y" vs "{text}"']


def test_the_token_disagreement_share_is_compared_when_a_run_has_it():
    runs = [build_run("/runs/a", 0.1), build_run("/runs/b", 0.12)]
    counted_twice = dataclasses.replace(runs[1].summary.throughput, token_disagreement_share=0.25)
    runs[1] = dataclasses.replace(runs[1], summary=dataclasses.replace(runs[1].summary, throughput=counted_twice))
    rows = [r for r in compare.compare_runs(runs, seed=7, n_resamples=50).rows
            if r.metric == catalogue.TOKEN_DISAGREEMENT_SHARE.key]
    assert len(rows) == 1 and rows[0].statistic == "run"
    assert np.isnan(rows[0].values[0]) and rows[0].values[1] == 0.25
