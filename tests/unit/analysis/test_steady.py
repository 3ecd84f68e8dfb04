"""MSER-5 truncation on series with a known warm-up, and its edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from bench.analysis.steady import BATCH, MIN_BATCHES, mser_truncation


@pytest.mark.parametrize("ramp", [20, 40, 75])
def test_a_ramp_then_a_noisy_plateau_is_cut_at_the_ramps_end(ramp):
    rng = np.random.default_rng(ramp)
    series = np.concatenate([np.linspace(0.0, 10.0, ramp), 10.0 + rng.normal(0.0, 0.3, 200 - ramp)])
    cut = mser_truncation(series)
    assert cut % BATCH == 0
    assert ramp - BATCH <= cut <= ramp + BATCH  # the batch holding the ramp's end, or the next
    assert mser_truncation(series[::-1]) == 0  # read backwards, it starts steady


def test_a_steady_series_loses_nothing_and_a_short_one_is_left_alone():
    rng = np.random.default_rng(3)
    assert mser_truncation(5.0 + rng.normal(0.0, 1.0, 200)) <= BATCH
    short = np.concatenate([np.zeros(10), np.ones(MIN_BATCHES * BATCH - 11)])
    assert mser_truncation(short) == 0


def test_at_most_half_is_cut_and_ties_keep_the_earliest():
    rising = np.arange(200, dtype=float)  # never steady: MSER's rule caps the cut at half
    assert mser_truncation(rising) <= 100
    assert mser_truncation(np.ones(200)) == 0  # every truncation scores 0: the earliest wins
