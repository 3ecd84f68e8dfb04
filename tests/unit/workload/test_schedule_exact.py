"""Exact schedule values the broader statistical tests in test_schedule.py leave loose.

Written against mutants of bench/workload/schedule.py that survived them (benchmarks/mutation.py);
the survivors that cannot change any result are listed with their reason in docs/mutation.md.
"""

import numpy as np
import pandas as pd
import pytest

from bench.scenario.schema import Load
from bench.workload.schedule import ScheduledStage, arrival_offsets, build_schedule, ramp_cumulative, ramp_inverse


def _load(**kw):
    return Load.model_validate(kw)


@pytest.mark.parametrize("arrival", ["constant", "poisson", "gamma"])
def test_two_arrivals_are_exactly_one_gap_apart(arrival):
    # Rescaling puts the last of `count` arrivals at (count - 1) / rate, whatever the draw.
    offsets = arrival_offsets(_load(rate=10, arrival=arrival, burstiness=0.5, max_requests=2), seed=4)
    np.testing.assert_allclose(offsets, [0.0, 0.1], rtol=0, atol=1e-12)


def test_extremely_bursty_gamma_rescales_whenever_time_passes_and_never_gives_nan():
    # Shape 1e-3: about half the gamma gaps underflow to exactly 0.0. Whenever the draw put
    # the last arrival after 0, it is rescaled to (count - 1) / rate; an all-zero draw stays
    # all zero (nothing to rescale) rather than turning into NaN.
    seen = set()
    for seed in range(12):
        offsets = arrival_offsets(_load(rate=10, arrival="gamma", burstiness=1e-3, max_requests=3), seed=seed)
        assert np.all(np.isfinite(offsets)) and offsets[0] == 0.0
        if offsets[-1] == 0.0:
            seen.add("all zero")
        else:
            assert offsets[-1] == pytest.approx(0.2, abs=1e-12)
            seen.add("second at zero" if offsets[1] == 0.0 else "second after zero")
    assert seen == {"all zero", "second at zero", "second after zero"}  # every case was drawn


def test_a_duration_shorter_than_one_gap_still_sends_one_request():
    offsets = arrival_offsets(_load(rate=0.5, arrival="constant", duration=1), seed=0)
    np.testing.assert_array_equal(offsets, [0.0])


def test_ramp_inverse_inverts_the_cumulative_intensity_on_a_slow_ramp():
    # A ramp from 0 to 1/s over 100 s: the cumulative intensity is t^2 / 200, so it reaches u
    # at sqrt(200 u), also where a + sqrt(...) is below 1 (small u).
    ramp = _load(ramp={"from_rate": 0, "to_rate": 1, "duration": 100}).ramp
    u = np.array([0.0, 0.01, 0.5, 1.0, 2.0, 49.0])
    np.testing.assert_allclose(ramp_inverse(ramp, u), np.sqrt(200 * u), rtol=1e-12)
    t = np.array([0.5, 3.0, 40.0, 99.0])
    np.testing.assert_allclose(ramp_inverse(ramp, ramp_cumulative(ramp, t)), t, rtol=1e-12)


def test_slow_constant_ramp_sends_at_sqrt_of_200_k():
    schedule = build_schedule(_load(ramp={"from_rate": 0, "to_rate": 1, "duration": 100, "arrival": "constant"}),
                              seed=0)
    np.testing.assert_allclose(schedule.offsets, np.sqrt(200 * np.arange(50)), rtol=1e-12)


@pytest.mark.parametrize("to_rate", [0.2, 5.0])
def test_poisson_ramp_with_few_arrivals_expected(to_rate):
    # Expected counts 1 and 25 (0 -> to_rate over 10 s): the gap buffer must still be a valid size.
    schedule = build_schedule(_load(ramp={"from_rate": 0, "to_rate": to_rate, "duration": 10}), seed=5)
    assert schedule.offsets.dtype == np.float64
    assert np.all((schedule.offsets >= 0) & (schedule.offsets < 10))


def test_all_closed_stages_have_int32_stage_ids():
    schedule = build_schedule(_load(stages=[{"concurrency": 2, "duration": 5}]), seed=0)
    assert schedule.stage.dtype == np.int32 and schedule.offsets.dtype == np.float64
    assert len(schedule.stage) == 0


def test_duration_ending_on_a_stage_boundary_drops_the_next_stage():
    schedule = build_schedule(_load(stages=[{"rate": 10, "duration": 10, "arrival": "constant"},
                                            {"rate": 10, "duration": 10, "arrival": "constant"}], duration=10),
                              seed=0)
    assert schedule.stages == (ScheduledStage(0, "open", 0.0, 10.0, 10.0, None),)
    assert len(schedule) == 100 and set(schedule.stage) == {0}


def test_duration_that_cuts_only_a_closed_stage_still_clips_it():
    # Every arrival is before the cut, so only the stages change.
    schedule = build_schedule(_load(stages=[{"rate": 10, "duration": 10, "arrival": "constant"},
                                            {"concurrency": 2, "duration": 10}], duration=15), seed=0)
    assert len(schedule) == 100
    assert schedule.stages == (ScheduledStage(0, "open", 0.0, 10.0, 10.0, None),
                               ScheduledStage(1, "closed", 10.0, 5.0, None, 2))


def test_duration_clips_an_open_stage_keeping_its_rate():
    schedule = build_schedule(_load(stages=[{"rate": 10, "duration": 10, "arrival": "constant"}], duration=4),
                              seed=0)
    assert schedule.stages == (ScheduledStage(0, "open", 0.0, 4.0, 10.0, None),)
    np.testing.assert_allclose(schedule.offsets, np.arange(40) / 10)
    assert schedule.offered_rate == 10.0


def test_capped_ramp_keeps_its_offered_rate():
    schedule = build_schedule(_load(ramp={"from_rate": 10, "to_rate": 30, "duration": 10}, max_requests=5), seed=0)
    assert len(schedule) == 5 and schedule.offered_rate == 20.0


def test_trace_without_frame_message():
    with pytest.raises(ValueError, match=r"^load\.trace is set: pass the frame from "
                                         r"bench\.scenario\.traces\.read_trace$"):
        build_schedule(_load(trace={"file": "t.csv"}), seed=0)


# --- traces ---------------------------------------------------------------------------------


def _trace(times: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"timestamp_s": times, "input_tokens": [10] * len(times), "output_tokens": [5] * len(times),
                         "hash_ids": [None] * len(times)})


def test_a_trace_replayed_at_double_speed():
    frame = _trace([0.0, 1.0, 3.0, 4.0])  # period 4 * 4/3 s, at speedup 2: 8/3 s
    schedule = build_schedule(_load(trace={"file": "t.csv", "speedup": 2}), seed=0, trace=frame)
    np.testing.assert_allclose(schedule.offsets, [0.0, 0.5, 1.5, 2.0])
    assert schedule.item is not None and schedule.item.tolist() == [0, 1, 2, 3]
    assert schedule.stage.dtype == np.int32 and schedule.stage.tolist() == [0, 0, 0, 0]
    assert schedule.offered_rate == pytest.approx(4 / (8 / 3))
    assert schedule.stages == (ScheduledStage(0, "open", 0.0, pytest.approx(8 / 3), pytest.approx(1.5), None),)


def test_a_re_rated_trace_depends_on_the_seed():
    frame = _trace([float(t) for t in range(40)])
    load = _load(trace={"file": "t.csv", "target_rate": 0.5})
    a, b = build_schedule(load, seed=1, trace=frame), build_schedule(load, seed=2, trace=frame)
    assert len(a) == len(b) == 20 and a.offered_rate == pytest.approx(0.5)
    assert not np.array_equal(a.item, b.item)


def test_a_trace_spanning_no_time_has_no_rate():
    schedule = build_schedule(_load(trace={"file": "t.csv"}), seed=0, trace=_trace([5.0]))
    assert schedule.offered_rate is None and len(schedule) == 1
    assert schedule.stages == (ScheduledStage(0, "open", 0.0, None, None, None),)
