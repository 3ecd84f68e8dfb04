"""`bench compare` with a run that streamed reasoning: the reasoning-phase metrics join the
compared family, and the family's size (the Bonferroni correction) is theirs too.

Written against mutants of bench/report/compare.py that survived the 2026-11-30 run
(benchmarks/mutation.py): `reasoned` dropped, and the family's size left at its default.
"""

from __future__ import annotations

import numpy as np
from test_compare_exact import build_run

from bench.metrics import catalogue
from bench.report import compare


def fake_samples(metrics: tuple, reasoning: bool) -> list[dict[str, compare.Sample]]:
    out = []
    for k in (1, 2):
        samples = {m.key: compare.Sample(np.arange(1.0, 301.0) * k) for m in metrics}
        if not reasoning:
            samples[compare.REASONING_TIME.key] = compare.Sample(np.full(300, np.nan))
        out.append(samples)
    return out


def test_a_run_with_reasoning_compares_the_reasoning_phases_too():
    runs = [build_run("/runs/a", 0.1), build_run("/runs/b", 0.1)]
    metrics = catalogue.compared_metrics(True)
    assert compare.REASONING_TIME.key in [m.key for m in metrics]
    assert len(metrics) > len(catalogue.compared_metrics(False))
    cmp = compare.compare_runs(runs, n_resamples=50, samples=fake_samples(metrics, reasoning=True))
    assert cmp.n_metrics == len(metrics)
    per_metric = len(compare.STATISTICS)
    assert [r.metric for r in cmp.rows[:len(metrics) * per_metric:per_metric]] == [m.key for m in metrics]


def test_reasoning_times_all_nan_leave_the_family_without_them():
    runs = [build_run("/runs/a", 0.1), build_run("/runs/b", 0.1)]
    every = catalogue.compared_metrics(True)
    metrics = catalogue.compared_metrics(False)
    cmp = compare.compare_runs(runs, n_resamples=50, samples=fake_samples(every, reasoning=False))
    assert cmp.n_metrics == len(metrics)
    per_metric = len(compare.STATISTICS)
    assert [r.metric for r in cmp.rows[:len(metrics) * per_metric:per_metric]] == [m.key for m in metrics]
    assert compare.REASONING_TIME.key not in {r.metric for r in cmp.rows}
