"""bench.metrics.order: percentiles equal bit for bit to numpy's, by partition, by selection
(forced on small samples by lowering SELECT_FROM) and from a sorted copy."""

from __future__ import annotations

import numpy as np
import pytest

from bench.metrics import order

PCTS = [0.0, 0.1, 1.0, 25.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0]


def _samples(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for n in (1, 2, 3, 7, 100, 1001, 5000):
        out.append(rng.exponential(20.0, n))
        out.append(rng.integers(0, 4, n).astype("float64"))  # ties
        out.append(np.round(rng.normal(0.0, 1.0, n), 1))  # negatives and ties
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_percentiles_equal_numpys_bit_for_bit(seed):
    rng = np.random.default_rng(seed + 100)
    for values in _samples(seed):
        pcts = np.concatenate([PCTS, rng.uniform(0, 100, 5)])
        expected = np.percentile(values, pcts)
        assert np.array_equal(order.percentiles(values, pcts), expected)
        sorted_sample = order.SortedSample.of(values)
        assert np.array_equal(sorted_sample.percentiles(pcts), expected)
        assert np.array_equal(sorted_sample.quantiles(pcts / 100), np.quantile(values, pcts / 100))
        assert sorted_sample.mean == float(values.mean())
        assert sorted_sample.max == float(values.max())
        assert sorted_sample.count == values.size


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_selection_finds_the_same_values_as_a_partition(monkeypatch, seed):
    monkeypatch.setattr(order, "SELECT_FROM", 1)
    monkeypatch.setattr(order, "_SLICE", 997)  # several slices, the last one short
    found = []
    real = order._select
    monkeypatch.setattr(order, "_select", lambda arr, ranks: found.append(real(arr, ranks)) or found[-1])
    for values in _samples(seed):
        before = values.copy()
        assert np.array_equal(order.percentiles(values, PCTS), np.percentile(values, PCTS))
        assert np.array_equal(values, before)  # the caller's order is kept
    assert found and all(f is not None for f in found)  # selected, not partitioned


def test_selection_falls_back_to_a_partition_when_a_bracket_misses(monkeypatch):
    monkeypatch.setattr(order, "SELECT_FROM", 1)
    monkeypatch.setattr(order, "_MARGIN_SD", -1e6)  # brackets of nothing: every rank misses
    calls = []
    real = order._select

    def counting(arr, ranks):
        found = real(arr, ranks)
        calls.append(found)
        return found

    monkeypatch.setattr(order, "_select", counting)
    values = np.random.default_rng(3).exponential(1.0, 5000)
    assert np.array_equal(order.percentiles(values, PCTS), np.percentile(values, PCTS))
    assert calls == [None]


def test_a_sorted_sample_keeps_only_finite_values():
    values = np.array([3.0, np.nan, 1.0, np.inf, 2.0, -np.inf])
    sample = order.SortedSample.of(values)
    assert sample.values.tolist() == [1.0, 2.0, 3.0]
    assert sample.mean == 2.0
    empty = order.SortedSample.of(np.array([np.nan]))
    assert empty.count == 0 and empty.mean is None and empty.max is None
    assert np.isnan(empty.percentiles([50.0])).all()


def test_a_drawn_sample_keeps_the_whole_samples_count_and_mean():
    values = np.random.default_rng(4).exponential(1.0, 10_000)
    whole = order.SortedSample.drawn(values, 20_000)
    assert whole.exact and np.array_equal(whole.values, np.sort(values))
    drawn = order.SortedSample.drawn(values, 1000, seed=1)
    assert not drawn.exact and drawn.values.size == 1000 and drawn.max is None
    assert drawn.count == 10_000 and drawn.mean == float(values.mean())
    assert np.all(np.diff(drawn.values) >= 0) and np.isin(drawn.values, values).all()
    assert np.array_equal(drawn.values, order.SortedSample.drawn(values, 1000, seed=1).values)  # seeded
