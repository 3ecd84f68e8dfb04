"""The summary's percentile intervals: the block bootstrap of one sample, exact against a
brute-force resampling of every value, and the flags of imprecise percentiles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.analysis import percentile_ci, precision
from bench.analysis.resample import batches, multinomial, weighted_stats
from bench.analysis.summary import summarize_gaps
from bench.metrics import scan
from bench.metrics.catalogue import E2E, ITL, TTFT
from bench.metrics.distribution import distribution

PERCENTILES = ("p50", "p90", "p95", "p99", "p99.9")


def _brute_force(values: np.ndarray, blocks: np.ndarray, seed: int, n_resamples: int = 1000) -> dict[str, tuple]:
    """Every value weighted by its block's draw count: the resampling the binned form must
    reproduce (same generator, same draws)."""
    rng = np.random.default_rng(seed)
    sizes = np.bincount(blocks)
    filled = np.flatnonzero(sizes)
    weights = np.zeros((n_resamples, sizes.size))
    start = 0
    for size in batches(n_resamples):
        weights[start:start + size, filled] = multinomial(filled.size, size, rng)
        start += size
    order = np.argsort(values, kind="stable")
    parts = [weighted_stats(values[order], weights[i:i + 50][:, blocks[order]], PERCENTILES)
             for i in range(0, n_resamples, 50)]  # 50 resamples at a time: bounded memory
    return {name: tuple(np.percentile(np.concatenate([p[name] for p in parts]), [2.5, 97.5])) for name in PERCENTILES}


def _correlated(n: int, seed: int, integers: bool) -> tuple[np.ndarray, np.ndarray]:
    """Latencies whose blocks move together (a per-block factor), blocks 0..399 with gaps."""
    rng = np.random.default_rng(seed)
    blocks = np.sort(rng.integers(0, 400, n)) // 2 * 2  # every other block empty
    factor = rng.lognormal(0.0, 0.3, 400)
    values = rng.lognormal(3.0, 0.5, n) * factor[blocks]
    return (np.round(values) if integers else values), blocks


@pytest.mark.parametrize("n", [3000, 60_000])
def test_block_summaries_give_the_intervals_of_resampling_every_value(n):
    """On values with ties (whole milliseconds), every value of a second window is an edge,
    so the binned form (above EXACT_SAMPLES) is exact: the same intervals as weighting every
    value by its block's draw count."""
    values, blocks = _correlated(n, seed=n, integers=True)
    assert (n > percentile_ci.EXACT_SAMPLES) == (n == 60_000)
    got = percentile_ci.block_percentile_cis(values, blocks, PERCENTILES, seed=5)
    want = _brute_force(values, blocks, seed=5) if n > percentile_ci.EXACT_SAMPLES else None
    for name in PERCENTILES:
        low, high = got[name]
        assert low <= np.percentile(values, float(name[1:])) <= high
        if want is not None:
            assert (low, high) == pytest.approx(want[name], abs=1e-9)


def test_a_first_pass_over_every_kth_value_still_gives_the_exact_intervals(monkeypatch):
    """Above percentile_ci's thinning threshold the first pass sees every k-th value only;
    the second counts every value, so the intervals stay those of resampling every value."""
    monkeypatch.setattr(percentile_ci, "_THIN", 5_000)
    values, blocks = _correlated(60_000, seed=11, integers=True)
    got = percentile_ci.block_percentile_cis(values, blocks, PERCENTILES, seed=2)
    want = _brute_force(values, blocks, seed=2)
    for name in PERCENTILES:
        assert got[name] == pytest.approx(want[name], abs=1e-9)


def test_binned_intervals_of_continuous_values_are_within_a_bin_of_the_exact_ones():
    values, blocks = _correlated(50_000, seed=3, integers=False)
    got = percentile_ci.block_percentile_cis(values, blocks, PERCENTILES, seed=1)
    want = _brute_force(values, blocks, seed=1, n_resamples=1000)
    for name in PERCENTILES:
        width = want[name][1] - want[name][0]
        assert got[name] == pytest.approx(want[name], abs=0.05 * width)


def test_blocks_that_move_together_widen_the_interval():
    """The same values, once in blocks that each hold one level and once spread over every
    block: resampling blocks must see the first as far less certain."""
    rng = np.random.default_rng(0)
    values = np.sort(rng.lognormal(3.0, 0.5, 20_000))
    by_level = np.arange(values.size) * 200 // values.size  # block i holds the i-th 100 values
    spread = rng.permutation(by_level)
    narrow = percentile_ci.block_percentile_cis(values, spread, ("p50",))["p50"]
    wide = percentile_ci.block_percentile_cis(values, by_level, ("p50",))["p50"]
    assert wide[1] - wide[0] > 3 * (narrow[1] - narrow[0])


def test_a_percentile_of_too_few_values_has_no_interval():
    values = np.arange(150.0)
    cis = percentile_ci.block_percentile_cis(values, np.zeros(150, dtype=int) + np.arange(150) % 7, PERCENTILES)
    assert cis["p99"] is not None and cis["p99.9"] is None  # 1,000 values for a p99.9
    assert percentile_ci.block_percentile_cis(np.array([np.nan]), np.array([0]), PERCENTILES) == dict.fromkeys(
        PERCENTILES)


def _requests(ttft: np.ndarray, e2e: np.ndarray) -> pd.DataFrame:
    n = ttft.size
    sent = np.arange(n) * 0.01
    return pd.DataFrame({
        "request_id": np.arange(n), "stage": 0, "phase": "measure", "variant": None, "status": "ok",
        "error_kind": None, "sent_s": sent, "end_s": sent + e2e / 1000, "schedule_lag_ms": 0.0,
        TTFT.key: ttft, E2E.key: e2e, "tpot_ms": np.nan, "output_tokens": 10.0, "prompt_tokens": 5.0,
        "output_tokens_per_s": np.nan})


def test_the_summary_flags_percentiles_wider_than_a_tenth_of_their_value():
    """2,000 requests sent 10 ms apart (20 s, 80 blocks): TTFT constant (a zero-width interval
    everywhere), E2E 100 ms but 1 s for the 25 requests of one block (1.25 %: the p99 and
    p99.9 are 1 s, but a resample without that block, about a third of them, puts them at
    100 ms; below them, four draws of the block, about 2 %, would be needed to move the p95)."""
    n = 2000
    ttft = np.full(n, 40.0)
    e2e = np.full(n, 100.0)
    e2e[np.arange(n) // 25 == 40] = 1000.0
    requests = _requests(ttft, e2e)
    gaps = scan.ItlGaps(np.full(n, 5.0), np.arange(n, dtype=np.int64), np.ones(n, dtype=np.int64))
    summary = summarize_gaps(requests, gaps, None)
    prec = summary.precision
    assert prec is not None and prec.block_s == 0.25 and prec.confidence == 0.95
    for name in PERCENTILES:
        assert prec.interval(TTFT, name) == (40.0, 40.0) and not prec.flagged(TTFT, name)
        assert prec.interval(ITL, name) == (5.0, 5.0)
    assert [prec.interval(E2E, name) for name in PERCENTILES] == [(100.0, 100.0)] * 3 + [(100.0, 1000.0)] * 2
    assert prec.imprecise[E2E.summary_key] == ["p99", "p99.9"]
    assert TTFT.summary_key not in prec.imprecise
    assert distribution(e2e).p99 == summary.metric(E2E).p99
    assert type(summary).from_json(summary.to_json()) == summary


def test_the_blocks_of_a_long_run_grow_to_keep_their_number_bounded():
    requests = _requests(np.full(1000, 1.0), np.full(1000, 1.0))
    requests["sent_s"] = np.arange(1000) * 1.0  # 999 s
    blocks = precision.RunBlocks.of(requests)
    assert blocks.block_s == pytest.approx(999 / percentile_ci.MAX_BLOCKS)
    assert blocks.blocks.max() == percentile_ci.MAX_BLOCKS and blocks.blocks.min() == 0
    gaps = scan.ItlGaps(np.arange(6.0), np.array([999, 0], dtype=np.int64), np.array([4, 2]))
    assert blocks.of_gaps(gaps, np.array([0, 999])).tolist() == [512] * 4 + [0, 0]
