"""bench.analysis.saturation on per-request frames with known times: a single-server queue built by
hand (FIFO, fixed service time), so the onset of unbounded queueing is known exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.analysis import saturation


def fifo_frame(arrivals: np.ndarray, service_s: float, servers: int = 1) -> pd.DataFrame:
    """Requests served first come first served by `servers` slots, `service_s` each; the
    first token comes at the start of service."""
    free = np.zeros(servers)
    rows = []
    for i, t in enumerate(arrivals):
        k = int(np.argmin(free))
        begin = max(t, free[k])
        free[k] = begin + service_s
        rows.append({"request_id": i, "stage": 0, "scheduled_s": t, "sent_s": t, "first_token_s": begin + 0.01,
                     "end_s": begin + service_s, "status": "ok", "error_kind": None})
    return pd.DataFrame(rows)


def poisson(rate: float, start: float, end: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1 / rate, int(rate * (end - start) * 2) + 10)
    times = start + np.cumsum(gaps)
    return times[times < end]


def test_a_queue_that_grows_from_10_s_is_saturated_from_about_10_s():
    # Capacity 5/s; 2.5/s for 10 s, then 15/s for 12 s.
    arrivals = np.concatenate([poisson(2.5, 0, 10, 1), poisson(15, 10, 22, 2)])
    verdicts = saturation.detect_run(fifo_frame(arrivals, 0.2), [{"index": 0, "kind": "open", "start_s": 0.0}])
    assert len(verdicts) == 1
    v = verdicts[0]
    assert abs(v.start_s - 10.0) < 1.5, v
    assert v.arrivals_per_s > 12 and 4 < v.completions_per_s < 6
    assert v.start_s < v.detected_s <= 10.0 + saturation.WINDOW_S + 2
    assert v.message().startswith(f"server saturated from t={v.start_s:.1f}s: arrivals ")
    assert v.message().endswith("latencies measure queueing")


def test_below_capacity_and_at_a_long_ramp_up_is_not_saturated():
    frame = fifo_frame(poisson(2.5, 0, 30, 3), 0.2)
    assert saturation.detect_run(frame, [{"index": 0, "kind": "open", "start_s": 0.0}]) == []
    # Long answers (20 s each) on a server with room for all: in-flight ramps up for 20 s,
    # no request waits, so TTFT does not grow: not saturation.
    ramp = fifo_frame(poisson(3.0, 0, 30, 4), 20.0, servers=200)
    assert saturation.detect_run(ramp, [{"index": 0, "kind": "open", "start_s": 0.0}]) == []


def test_closed_loop_stages_are_never_judged():
    frame = fifo_frame(poisson(15, 0, 20, 5), 0.2)
    assert saturation.detect_run(frame, [{"index": 0, "kind": "closed", "start_s": 0.0}]) == []
    assert saturation.detect_run(frame, [{"index": 0, "kind": "open", "start_s": 0.0}]) != []


def test_stages_are_judged_one_by_one():
    low, high = fifo_frame(poisson(2.0, 0, 15, 6), 0.2), fifo_frame(poisson(15, 16, 31, 7), 0.2)
    high["stage"] = 1
    stages = [{"index": 0, "kind": "open", "start_s": 0.0}, {"index": 1, "kind": "open", "start_s": 16.0}]
    verdicts = saturation.detect_run(pd.concat([low, high], ignore_index=True), stages)
    assert [v.stage for v in verdicts] == [1]
    assert verdicts[0].message().startswith("stage 1: server saturated from t=")
    assert abs(verdicts[0].start_s - 16.0) < 1.5


def test_requests_timed_out_in_the_queue_count_as_endless_waits():
    frame = fifo_frame(poisson(15, 0, 20, 8), 0.2)
    late = frame["first_token_s"] - frame["sent_s"] > 5.0
    frame.loc[late, "first_token_s"] = np.nan
    frame.loc[late, "status"] = "error"
    frame.loc[late, "error_kind"] = "ttft_timeout"
    frame.loc[late, "end_s"] = frame.loc[late, "sent_s"] + 5.0
    verdicts = saturation.detect_run(frame, [{"index": 0, "kind": "open", "start_s": 0.0}])
    assert len(verdicts) == 1 and verdicts[0].start_s < 1.5
    assert saturation.record_wait(3.0, None, "ttft_timeout") == (3.0, float("inf"))
    assert saturation.record_wait(3.0, None, "http_500") is None
    assert saturation.record_wait(3.0, 3.5, None) == (3.0, 0.5)


def test_live_test_needs_a_settled_rising_backlog_a_completion_shortfall_and_growing_waits():
    start = 0.0
    t = np.arange(0, 10.01, saturation.SAMPLE_S)
    rising = [(float(x), int(10 * x), int(15 * x), int(5 * x)) for x in t]
    queued = [(a, a) for a in np.linspace(0, 3, 20)]  # each arrival waits longer (FIFO queue)
    steady = [(a, 0.3) for a in np.linspace(0, 3, 20)]  # a long ramp-up: nobody waits
    assert saturation.saturated_now(rising, start, queued)
    assert not saturation.saturated_now(rising, start, steady)
    assert not saturation.saturated_now(rising, start, queued[:5])  # too few to tell
    assert not saturation.saturated_now(rising[: int(7 / saturation.SAMPLE_S)], start, queued)  # not settled
    served = [(float(x), int(10 * x), int(15 * x), int(14 * x)) for x in t]  # completions keep up
    assert not saturation.saturated_now(served, start, queued)
    flat = [(float(x), 20, int(15 * x), int(5 * x)) for x in t]
    assert not saturation.backlog_rising(flat, start)
