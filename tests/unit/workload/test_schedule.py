import numpy as np
import pytest

from bench.scenario.schema import Load
from bench.workload.schedule import arrival_offsets


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
    # The draw is rescaled to the offered rate exactly: 10,000 arrivals, the last at 9,999/50 s.
    assert len(offsets) == 50 * 200 and offsets[0] == 0.0
    assert offsets[-1] == pytest.approx(9999 / 50, rel=1e-12)
    assert gaps.mean() == pytest.approx(1 / 50, rel=1e-12)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)  # the shape stays a random draw's


@pytest.mark.parametrize("burstiness", [0.25, 4.0])
def test_gamma_cv_follows_burstiness(burstiness):
    offsets = arrival_offsets(_load(rate=20, arrival="gamma", burstiness=burstiness, max_requests=20000), seed=5)
    gaps = np.diff(offsets)
    assert len(offsets) == 20000 and offsets[-1] == pytest.approx(19999 / 20, rel=1e-12)
    assert 1 / gaps.mean() == pytest.approx(20, rel=1e-12)  # rescaled to the offered rate exactly
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


# --- build_schedule ------------------------------------------------------------------------

from bench.workload.schedule import Schedule, ScheduledStage, build_schedule, ramp_cumulative  # noqa: E402


def _cv(offsets: np.ndarray) -> float:
    gaps = np.diff(offsets)
    return float(gaps.std() / gaps.mean())


def _check_shape(schedule: Schedule) -> None:
    assert schedule.offsets.dtype == np.float64
    assert schedule.stage.dtype == np.int32
    assert len(schedule.stage) == len(schedule.offsets)
    assert np.all(np.diff(schedule.offsets) >= 0)


def test_build_closed_loop_is_one_closed_stage():
    schedule = build_schedule(_load(concurrency=8, duration=30), seed=0)
    _check_shape(schedule)
    assert len(schedule) == 0 and schedule.item is None and schedule.offered_rate is None
    assert schedule.stages == (ScheduledStage(0, "closed", 0.0, 30.0, None, 8),)


def test_build_rate_matches_arrival_offsets():
    load = _load(rate=7, arrival="gamma", burstiness=0.5, duration=60)
    schedule = build_schedule(load, seed=4)
    _check_shape(schedule)
    np.testing.assert_array_equal(schedule.offsets, arrival_offsets(load, 4))
    assert schedule.offered_rate == 7
    assert schedule.stages == (ScheduledStage(0, "open", 0.0, 60.0, 7.0, None),)
    assert set(schedule.stage) == {0}


def _ramp(**kw):
    return _load(ramp=kw)


@pytest.mark.parametrize("arrival,tolerance", [("constant", 1.0), ("poisson", None)])
@pytest.mark.parametrize("from_rate,to_rate", [(5, 50), (0, 40), (60, 10)])
def test_ramp_rate_per_window_follows_the_line(arrival, tolerance, from_rate, to_rate):
    ramp = _ramp(from_rate=from_rate, to_rate=to_rate, duration=100, arrival=arrival)
    schedule = build_schedule(ramp, seed=11)
    _check_shape(schedule)
    offsets = schedule.offsets
    assert offsets[0] >= 0 and offsets[-1] < 100
    edges = np.linspace(0, 100, 11)
    counts = np.histogram(offsets, edges)[0]
    expected = np.diff(ramp_cumulative(ramp.ramp, edges))
    # Constant arrivals sit on the inverse of the integral: off by at most one per window.
    # Poisson counts: within 4 standard deviations (sqrt of the expected count) + 1.
    allowed = tolerance if tolerance is not None else 4 * np.sqrt(expected) + 1
    assert np.all(np.abs(counts - expected) <= allowed), (counts, expected)
    total = (from_rate + to_rate) / 2 * 100
    assert len(offsets) == pytest.approx(total, abs=1 if arrival == "constant" else 4 * np.sqrt(total))
    assert schedule.offered_rate == pytest.approx((from_rate + to_rate) / 2)
    assert schedule.stages == (ScheduledStage(0, "open", 0.0, 100.0, (from_rate + to_rate) / 2, None),)


def test_ramp_from_zero_constant_starts_at_zero_and_spaces_by_sqrt():
    # Cumulative intensity t^2 (b=20, T=10): arrival k at sqrt(k).
    schedule = build_schedule(_ramp(from_rate=0, to_rate=20, duration=10, arrival="constant"), seed=0)
    np.testing.assert_allclose(schedule.offsets, np.sqrt(np.arange(100)))


def test_ramp_poisson_is_poisson_within_a_window():
    # A flat "ramp" is a homogeneous Poisson process: CV of gaps ~ 1.
    schedule = build_schedule(_ramp(from_rate=30, to_rate=30, duration=300), seed=2)
    assert len(schedule) == pytest.approx(9000, rel=0.04)
    assert _cv(schedule.offsets) == pytest.approx(1.0, abs=0.05)


def test_stages_boundaries_rates_and_closed_specs():
    load = _load(stages=[
        {"rate": 10, "duration": 20, "arrival": "constant"},
        {"concurrency": 4, "duration": 15},
        {"rate": 40, "duration": 30, "arrival": "poisson"},
        {"rate": 20, "duration": 50, "arrival": "gamma", "burstiness": 0.25},
    ])
    schedule = build_schedule(load, seed=3)
    _check_shape(schedule)
    assert schedule.stages == (
        ScheduledStage(0, "open", 0.0, 20.0, 10.0, None),
        ScheduledStage(1, "closed", 20.0, 15.0, None, 4),
        ScheduledStage(2, "open", 35.0, 30.0, 40.0, None),
        ScheduledStage(3, "open", 65.0, 50.0, 20.0, None),
    )
    assert schedule.item is None
    for spec in schedule.stages:
        mine = schedule.offsets[schedule.stage == spec.index]
        if spec.kind == "closed":
            assert len(mine) == 0
            continue
        assert mine[0] == pytest.approx(spec.start_s)  # each open stage starts on its boundary
        assert mine[-1] < spec.end_s
        count = round(spec.rate * spec.duration_s)  # exactly the offered rate over the stage
        assert len(mine) == count and mine[-1] == pytest.approx(spec.start_s + (count - 1) / spec.rate, abs=1e-9)
        assert np.all((schedule.offsets >= spec.start_s) & (schedule.offsets < spec.end_s)
                      == (schedule.stage == spec.index))
    assert _cv(schedule.offsets[schedule.stage == 2]) == pytest.approx(1.0, abs=0.1)
    assert _cv(schedule.offsets[schedule.stage == 3]) == pytest.approx(2.0, rel=0.15)
    assert schedule.offered_rate == pytest.approx((10 * 20 + 40 * 30 + 20 * 50) / 100)


def test_stages_all_closed_have_no_arrivals():
    schedule = build_schedule(_load(stages=[{"concurrency": 1, "duration": 5}, {"concurrency": 8, "duration": 5}]),
                              seed=0)
    assert len(schedule) == 0 and schedule.offered_rate is None
    assert [(s.kind, s.start_s, s.concurrency) for s in schedule.stages] == [("closed", 0.0, 1), ("closed", 5.0, 8)]


def test_stage_arrivals_do_not_depend_on_later_stages():
    first = {"rate": 5, "duration": 10}
    a = build_schedule(_load(stages=[first]), seed=1)
    b = build_schedule(_load(stages=[first, {"rate": 50, "duration": 10}]), seed=1)
    np.testing.assert_array_equal(a.offsets, b.offsets[b.stage == 0])


def test_max_requests_caps_every_shape():
    capped = build_schedule(_load(stages=[{"rate": 10, "duration": 10}, {"rate": 10, "duration": 10}],
                                  max_requests=150), seed=0)
    assert len(capped) == 150 and list(np.bincount(capped.stage)) == [100, 50]
    ramp = build_schedule(_load(ramp={"from_rate": 1, "to_rate": 100, "duration": 60}, max_requests=20), seed=0)
    assert len(ramp) == 20


def test_duration_cuts_stages_and_arrivals():
    schedule = build_schedule(_load(stages=[{"rate": 10, "duration": 10, "arrival": "constant"},
                                            {"concurrency": 2, "duration": 10},
                                            {"rate": 10, "duration": 10}], duration=15), seed=0)
    assert len(schedule) == 100
    assert schedule.stages == (ScheduledStage(0, "open", 0.0, 10.0, 10.0, None),
                               ScheduledStage(1, "closed", 10.0, 5.0, None, 2))


@pytest.mark.parametrize("load", [
    {"rate": 5, "arrival": "poisson", "duration": 30},
    {"ramp": {"from_rate": 1, "to_rate": 9, "duration": 30}},
    {"stages": [{"rate": 3, "duration": 10, "arrival": "gamma", "burstiness": 0.5}, {"rate": 9, "duration": 10}]},
])
def test_build_schedule_is_seeded(load):
    a = build_schedule(_load(**load), seed=21)
    b = build_schedule(_load(**load), seed=21)
    c = build_schedule(_load(**load), seed=22)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.stage, b.stage)
    assert len(a) != len(c) or not np.array_equal(a.offsets, c.offsets)


def test_trace_load_needs_the_frame():
    with pytest.raises(ValueError, match="read_trace"):
        build_schedule(_load(trace={"file": "t.csv"}), seed=0)
