"""The Pareto front and the best configuration, on tables with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.analysis.configs import best_config, pareto_front


def test_the_front_is_the_points_nothing_beats():
    throughput = np.array([100.0, 200.0, 300.0, 250.0, 300.0, np.nan, 400.0])
    latency = np.array([10.0, 20.0, 30.0, 40.0, 35.0, 1.0, 5.0])
    usable = np.array([True, True, True, True, True, True, False])
    # 0, 1, 2: each faster than the next is cheaper; 3 is beaten by 2 (more, sooner), 4 by 2
    # (as much, sooner); 5 has no throughput; 6 beats all but is not usable (saturated).
    assert pareto_front(throughput, latency, usable).tolist() == [True, True, True, False, False, False, False]
    assert pareto_front(throughput, latency).tolist() == [False, False, False, False, False, False, True]
    # Equal points do not beat each other.
    assert pareto_front(np.array([1.0, 1.0]), np.array([2.0, 2.0])).tolist() == [True, True]


def _table(rows):
    return pd.DataFrame(rows, columns=["config", "stage", "output_tokens_per_s", "slo_met", "saturated"])


def test_the_best_is_the_highest_throughput_that_met_the_slo_unsaturated():
    table = _table([
        ("a", 0, 500.0, True, False), ("a", 1, 900.0, False, False),  # a's faster point broke the SLO
        ("b", 0, 700.0, True, False), ("b", 1, 990.0, True, True),  # b's faster point saturated
        ("c", 0, 650.0, True, False),
    ])
    best = best_config(table)
    assert best is not None and (best.config, best.stage, best.output_tokens_per_s) == ("b", 0, 700.0)
    assert "met the SLO" in best.reason
    assert best_config(_table([("a", 0, 500.0, False, False), ("b", 0, 900.0, True, True)])) is None


def test_without_an_slo_the_best_is_the_highest_unsaturated_throughput():
    table = _table([("a", 0, 500.0, None, False), ("b", 0, 990.0, None, True), ("c", 0, 800.0, None, False)])
    best = best_config(table)
    assert best is not None and best.config == "c" and "no slo" in best.reason
