"""The bootstrap of bench.analysis.stats against a plain re-statement of it, resample by resample.

The product draws multinomial weights and takes weighted statistics over the sorted sample,
vectorised in batches; the oracle here draws the same indices from the same seeded stream one
resample at a time and takes numpy's own statistics (the inverted-CDF percentile), so every
interval must agree to rounding. Then the rules around it: statistic names, NaN handling,
subsampling, groups, the verdict of an interval.

Written against mutants of bench/analysis/stats.py that survived test_compare_rules.py
(benchmarks/mutation.py); the survivors that cannot change any result are listed with their
reason in docs/mutation.md.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.analysis import stats

STATS = ("p50", "p90", "p99", "mean")


def _stat(sample: np.ndarray, name: str) -> float:
    if name == "mean":
        return float(sample.mean())
    return float(np.percentile(sample, float(name[1:]), method="inverted_cdf"))


def _boot(values: np.ndarray, groups: np.ndarray | None, n_resamples: int, rng: np.random.Generator) -> dict:
    """Resampled statistics, one resample at a time: whole groups drawn with replacement."""
    labels = np.arange(values.size) if groups is None else groups  # no groups: each value its own
    order = np.argsort(values, kind="stable")
    values = values[order]
    codes = np.unique(labels[order], return_inverse=True)[1]  # groups numbered by label
    n_groups = int(codes.max()) + 1
    members = [np.flatnonzero(codes == g) for g in range(n_groups)]
    out: dict[str, list[float]] = {name: [] for name in STATS}
    for _ in range(n_resamples):
        drawn = rng.integers(0, n_groups, n_groups)
        sample = np.concatenate([values[members[g]] for g in drawn])
        for name in STATS:
            out[name].append(_stat(sample, name))
    return {name: np.array(v) for name, v in out.items()}


def _interval(diffs: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return float(low), float(high)


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("n_resamples", [250, 401])  # batches of 200 and a remainder
def test_unpaired_intervals_match_a_resample_by_resample_oracle(grouped, n_resamples):
    rng = np.random.default_rng(5)
    a = np.round(rng.lognormal(3.0, 0.5, 60), 3)
    b = np.round(rng.lognormal(3.1, 0.5, 45), 3)
    ga = np.repeat(np.arange(12), 5) if grouped else None
    gb = np.repeat(np.arange(9), 5) + 100 if grouped else None
    got = stats.bootstrap_diff(a, b, STATS, groups_a=ga, groups_b=gb, n_resamples=n_resamples, seed=3,
                               confidence=0.9)
    oracle_rng = np.random.default_rng(3)
    boot_a = _boot(a, ga, n_resamples, oracle_rng)
    boot_b = _boot(b, gb, n_resamples, oracle_rng)
    for name in STATS:
        low, high = _interval(boot_b[name] - boot_a[name], 0.9)
        d = got[name]
        assert (d.low, d.high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12)), name
        point_a = float(np.mean(a)) if name == "mean" else float(np.percentile(a, float(name[1:])))
        point_b = float(np.mean(b)) if name == "mean" else float(np.percentile(b, float(name[1:])))
        assert d.a == pytest.approx(point_a) and d.b == pytest.approx(point_b)
        assert d.diff == pytest.approx(point_b - point_a) and d.confidence == 0.9
        assert (d.n_a, d.n_b, d.statistic) == (60, 45, name)


def test_paired_intervals_match_a_resample_by_resample_oracle():
    rng = np.random.default_rng(8)
    a = np.round(rng.normal(100, 10, 70), 2)
    b = a + np.round(rng.normal(3, 2, 70), 2)
    got = stats.paired_bootstrap_diff(a, b, STATS, n_resamples=300, seed=4, confidence=0.8)
    oracle_rng = np.random.default_rng(4)
    diffs: dict[str, list[float]] = {name: [] for name in STATS}
    for _ in range(300):
        idx = oracle_rng.integers(0, 70, 70)
        for name in STATS:
            diffs[name].append(_stat(b[idx], name) - _stat(a[idx], name))
    for name in STATS:
        low, high = _interval(np.array(diffs[name]), 0.8)
        assert (got[name].low, got[name].high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
        assert got[name].n_a == got[name].n_b == 70


def test_non_finite_values_are_dropped_and_pairs_with_one_dropped_whole():
    a = np.array([1.0, np.nan, 2.0, np.inf, 3.0, 4.0])
    b = np.array([2.0, 5.0, np.nan, 6.0, 7.0, 8.0])
    unpaired = stats.bootstrap_diff(a, b, ("mean",), n_resamples=50)["mean"]
    assert (unpaired.n_a, unpaired.n_b) == (4, 5)
    assert unpaired.a == pytest.approx(2.5) and unpaired.b == pytest.approx(5.6)
    paired = stats.paired_bootstrap_diff(a, b, ("mean",), n_resamples=50)["mean"]
    assert (paired.n_a, paired.n_b) == (3, 3)  # pairs 0, 4, 5
    assert paired.a == pytest.approx(8 / 3) and paired.b == pytest.approx(17 / 3)


def test_identical_constant_samples_have_a_zero_width_interval():
    d = stats.bootstrap_diff(np.full(30, 2.0), np.full(40, 5.0), STATS, n_resamples=60)
    for name in STATS:
        assert (d[name].low, d[name].high, d[name].diff) == (3.0, 3.0, 3.0)
        assert d[name].significant and d[name].verdict == "higher" and d[name].ratio == 2.5


def test_an_empty_side_has_no_interval():
    d = stats.bootstrap_diff(np.array([np.nan]), np.arange(5.0), ("p50", "mean"), n_resamples=20)
    for ci in d.values():
        assert np.isnan(ci.low) and np.isnan(ci.high) and np.isnan(ci.a) and ci.n_a == 0
        assert not ci.significant and ci.verdict == "n/a" and np.isnan(ci.ratio)
    p = stats.paired_bootstrap_diff(np.array([np.nan, 1.0]), np.array([1.0, np.nan]), ("mean",), n_resamples=20)
    assert np.isnan(p["mean"].low) and p["mean"].n_a == 0 and p["mean"].verdict == "n/a"


def test_subsampling_keeps_the_cap_and_the_full_point_estimates():
    rng = np.random.default_rng(2)
    a, b = rng.normal(10, 1, 400), rng.normal(10, 1, 400) + 0.5
    capped = stats.bootstrap_diff(a, b, ("mean",), n_resamples=200, max_samples=50)["mean"]
    full = stats.bootstrap_diff(a, b, ("mean",), n_resamples=200)["mean"]
    assert capped.a == full.a == pytest.approx(float(a.mean())) and capped.n_a == 400
    assert (capped.high - capped.low) > 2 * (full.high - full.low)  # ~sqrt(8) wider from 50 of 400
    # the oracle on the seeded subsample
    oracle_rng = np.random.default_rng(0)
    pick_a = oracle_rng.choice(400, size=50, replace=False)
    pick_b = oracle_rng.choice(400, size=50, replace=False)
    # each kept value is its own group, numbered by its index in the full sample
    boot_a, boot_b = _boot(a[pick_a], pick_a, 200, oracle_rng), _boot(b[pick_b], pick_b, 200, oracle_rng)
    low, high = _interval(boot_b["mean"] - boot_a["mean"], stats.CONFIDENCE)
    assert (capped.low, capped.high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
    paired = stats.paired_bootstrap_diff(a, b, ("mean",), n_resamples=100, max_samples=50)["mean"]
    assert paired.n_a == 400 and paired.a == pytest.approx(float(a.mean()))


def test_defaults():
    rng = np.random.default_rng(6)
    a, b = rng.normal(10, 1, 80), rng.normal(10.2, 1, 80)
    d = stats.bootstrap_diff(a, b)
    assert set(d) == set(STATS) and d["mean"].confidence == stats.CONFIDENCE == 0.95
    again = stats.bootstrap_diff(a, b, n_resamples=stats.N_RESAMPLES, seed=0, confidence=0.95)
    assert d["p90"] == again["p90"]
    p = stats.paired_bootstrap_diff(a, b)
    assert set(p) == set(STATS) and p["p50"] == stats.paired_bootstrap_diff(a, b, STATS, seed=0, n_resamples=1000)["p50"]


def test_group_labels_must_match_the_sample():
    with pytest.raises(ValueError, match=r"^groups must match the sample's length \(3 != 4\)$"):
        stats.bootstrap_diff(np.arange(4.0), np.arange(4.0), groups_a=np.arange(3))
    with pytest.raises(ValueError, match=r"^paired samples must be 1-d and of equal length, got \(3,\) and \(4,\)$"):
        stats.paired_bootstrap_diff(np.arange(3.0), np.arange(4.0))
    with pytest.raises(ValueError, match="1-d"):
        stats.paired_bootstrap_diff(np.ones((2, 2)), np.ones((2, 2)))


@pytest.mark.parametrize("name", ["mean", "p50", "p0.1", "p99.9", "p1", "p99"])
def test_statistic_names_accepted(name):
    stats.check_statistic(name)


@pytest.mark.parametrize("name", ["p0", "p100", "p100.5", "median", "p", "P50", "p50x", "mean "])
def test_statistic_names_refused(name):
    with pytest.raises(ValueError, match=rf"^unknown statistic {name!r}: use mean or pNN, e.g. p50, p99.9$"):
        stats.check_statistic(name)
    with pytest.raises(ValueError):
        stats.bootstrap_diff(np.arange(3.0), np.arange(3.0), (name,))
    with pytest.raises(ValueError):
        stats.paired_bootstrap_diff(np.arange(3.0), np.arange(3.0), (name,))


def test_point():
    values = np.array([4.0, np.nan, 1.0, 3.0, 2.0, np.inf])
    assert stats.point(values, "mean") == 2.5
    assert stats.point(values, "p50") == 2.5 and stats.point(values, "p25") == pytest.approx(1.75)
    assert stats.point(np.array([7.0]), "p90") == 7.0
    assert np.isnan(stats.point(np.array([np.nan]), "mean"))
    with pytest.raises(ValueError):
        stats.point(values, "q50")


@pytest.mark.parametrize(("low", "high", "significant", "verdict"), [
    (1.0, 2.0, True, "higher"), (-2.0, -1.0, True, "lower"), (-1.0, 1.0, False, "not significant"),
    (0.0, 1.0, False, "not significant"), (-1.0, 0.0, False, "not significant"),
    (np.nan, 1.0, False, "n/a"), (1.0, np.inf, False, "n/a"),
])
def test_the_verdict_of_an_interval(low, high, significant, verdict):
    d = stats.DiffCI("p50", 10.0, 12.0, 2.0, low, high, 0.95, 5, 5)
    assert d.significant is significant and d.verdict == verdict


def test_ratio_and_finite_or_none():
    assert stats.DiffCI("mean", 4.0, 5.0, 1.0, 0, 2, 0.95, 1, 1).ratio == 1.25
    assert np.isnan(stats.DiffCI("mean", 0.0, 5.0, 5.0, 0, 2, 0.95, 1, 1).ratio)
    assert np.isnan(stats.DiffCI("mean", np.nan, 5.0, 5.0, 0, 2, 0.95, 1, 1).ratio)
    assert stats.finite_or_none(2.5) == 2.5 and isinstance(stats.finite_or_none(np.float32(1.5)), float)
    assert stats.finite_or_none(np.nan) is None and stats.finite_or_none(-np.inf) is None


def test_a_sample_of_exactly_the_cap_is_not_subsampled():
    rng = np.random.default_rng(9)
    a, b = rng.normal(10, 1, 50), rng.normal(11, 1, 50)
    assert stats.bootstrap_diff(a, b, ("p50",), n_resamples=100, max_samples=50) == \
        stats.bootstrap_diff(a, b, ("p50",), n_resamples=100, max_samples=51)
    assert stats.paired_bootstrap_diff(a, b, ("p50",), n_resamples=100, max_samples=50) == \
        stats.paired_bootstrap_diff(a, b, ("p50",), n_resamples=100, max_samples=51)


def test_paired_subsample_is_drawn_without_replacement():
    rng = np.random.default_rng(12)
    a = rng.normal(10, 1, 300)
    b = a + rng.normal(0.5, 1, 300)
    got = stats.paired_bootstrap_diff(a, b, ("mean",), n_resamples=150, max_samples=40, seed=5)["mean"]
    oracle_rng = np.random.default_rng(5)
    pick = oracle_rng.choice(300, size=40, replace=False)
    pa, pb = a[pick], b[pick]
    diffs = []
    for _ in range(150):
        idx = oracle_rng.integers(0, 40, 40)
        diffs.append(pb[idx].mean() - pa[idx].mean())
    low, high = _interval(np.array(diffs), stats.CONFIDENCE)
    assert (got.low, got.high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))


def test_one_pair_has_a_zero_width_interval():
    d = stats.paired_bootstrap_diff(np.array([3.0]), np.array([5.0]), ("mean", "p50"), n_resamples=30)
    assert (d["mean"].low, d["mean"].high) == (2.0, 2.0) and (d["p50"].low, d["p50"].high) == (2.0, 2.0)


def test_statistics_in_any_order():
    rng = np.random.default_rng(1)
    a, b = rng.normal(10, 1, 40), rng.normal(10, 1, 40)
    first = stats.bootstrap_diff(a, b, ("mean", "p50", "p90"), n_resamples=60)
    last = stats.bootstrap_diff(a, b, ("p50", "p90", "mean"), n_resamples=60)
    assert first == last
    paired = stats.paired_bootstrap_diff(a, b, ("mean", "p50"), n_resamples=60)
    assert paired["p50"] == stats.paired_bootstrap_diff(a, b, ("p50", "mean"), n_resamples=60)["p50"]
