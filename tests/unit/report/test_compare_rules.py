"""`bench compare`'s significance rules on constructed inputs with known answers: the
min-effect floor, the n/a rule for tail percentiles, the Bonferroni cell confidence, and the
block (cluster) bootstrap that widens intervals when samples move together."""

from __future__ import annotations

import numpy as np
import pytest

from bench.analysis.stats import DiffCI, bootstrap_diff
from bench.report.compare import FAMILY_CONFIDENCE, METRICS, STATISTICS, cell_confidence, is_significant, verdict


def _ci(stat: str, a: float, b: float, low: float, high: float, n: int = 1000) -> DiffCI:
    return DiffCI(stat, a, b, b - a, low, high, 0.99, n, n)


def test_a_significant_difference_under_the_floor_is_not_significant():
    small = _ci("p50", 100.0, 104.0, 2.0, 6.0)  # +4 %, interval clear of 0
    assert verdict(small) == "not significant (< 5%)" and not is_significant(small)
    assert verdict(small, min_effect=0.01) == "higher" and is_significant(small, min_effect=0.01)
    large = _ci("p50", 100.0, 94.0, -9.0, -3.0)  # -6 %
    assert verdict(large) == "lower"


def test_an_interval_that_contains_zero_is_not_significant_at_any_floor():
    assert verdict(_ci("mean", 100.0, 130.0, -1.0, 61.0), min_effect=0.0) == "not significant"


@pytest.mark.parametrize(("stat", "need"), [("p50", 2), ("p90", 10), ("p99", 100), ("mean", 2)])
def test_a_percentile_from_too_few_samples_has_no_verdict(stat, need):
    assert verdict(_ci(stat, 10.0, 20.0, 5.0, 15.0, n=need - 1)) == f"n/a (n < {need})"
    assert verdict(_ci(stat, 10.0, 20.0, 5.0, 15.0, n=need)) == "higher"


def test_the_cell_confidence_is_bonferroni_over_one_runs_table():
    cells = len(METRICS) * len(STATISTICS)
    assert cells >= 16
    assert cell_confidence() == pytest.approx(1 - (1 - FAMILY_CONFIDENCE) / cells)


def test_a_shift_is_found_and_a_relabelling_is_not():
    rng = np.random.default_rng(1)
    a = rng.lognormal(3.0, 0.3, 4000)
    shifted = bootstrap_diff(a, a * 1.2, ("p50", "mean"), n_resamples=1000, seed=2, confidence=0.99)
    assert all(d.verdict == "higher" and d.low > 0.1 * d.a for d in shifted.values())
    same = bootstrap_diff(a[:2000], a[2000:], ("p50", "mean"), n_resamples=1000, seed=2, confidence=0.99)
    assert all(d.verdict == "not significant" for d in same.values())


def test_the_block_bootstrap_widens_the_interval_of_clustered_samples():
    # 40 blocks of 100 samples each sharing a block offset: the samples are not independent,
    # so the honest interval is several times wider than one that treats them as if they were.
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(40), 100)

    def clustered() -> np.ndarray:
        return 100 + rng.normal(0, 10, 40)[groups] + rng.normal(0, 1, groups.size)

    a, b = clustered(), clustered()
    blocks = bootstrap_diff(a, b, ("mean",), groups_a=groups, groups_b=groups, n_resamples=1000, seed=4)["mean"]
    flat = bootstrap_diff(a, b, ("mean",), n_resamples=1000, seed=4)["mean"]
    assert (blocks.high - blocks.low) > 4 * (flat.high - flat.low)
    assert blocks.low < 0 < blocks.high  # two draws of one process: no difference claimed
