import numpy as np
import pytest

from bench.scenario import Load
from bench.schedule import arrival_offsets


def _load(**kw):
    return Load.model_validate(kw)


def test_closed_loop_has_no_schedule():
    assert arrival_offsets(_load(concurrency=4, max_requests=10), seed=1) is None


def test_constant_rate_is_exact():
    offsets = arrival_offsets(_load(rate=10, arrival="constant", max_requests=50), seed=1)
    assert len(offsets) == 50
    assert offsets[0] == 0.0
    np.testing.assert_allclose(np.diff(offsets), 0.1)


def test_poisson_rate_and_dispersion():
    offsets = arrival_offsets(_load(rate=50, arrival="poisson", duration=200), seed=3)
    gaps = np.diff(offsets)
    assert offsets[-1] < 200
    assert len(offsets) == pytest.approx(50 * 200, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("burstiness", [0.25, 4.0])
def test_gamma_cv_follows_burstiness(burstiness):
    offsets = arrival_offsets(_load(rate=20, arrival="gamma", burstiness=burstiness, max_requests=20000), seed=5)
    gaps = np.diff(offsets)
    assert 1 / gaps.mean() == pytest.approx(20, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(1 / np.sqrt(burstiness), rel=0.08)


def test_schedule_is_seeded():
    a = arrival_offsets(_load(rate=5, duration=30), seed=9)
    b = arrival_offsets(_load(rate=5, duration=30), seed=9)
    c = arrival_offsets(_load(rate=5, duration=30), seed=10)
    np.testing.assert_array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)


def test_duration_and_max_requests_both_bound():
    offsets = arrival_offsets(_load(rate=100, arrival="constant", duration=1, max_requests=1000), seed=0)
    assert len(offsets) == 100
    offsets = arrival_offsets(_load(rate=100, arrival="constant", duration=10, max_requests=7), seed=0)
    assert len(offsets) == 7
