"""load.max_concurrency, load.send_rate_limit and load.think_time against the simulator, checked
with the server's own receive and completion times and a leaky-bucket oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd
from benchtest import run_in_process, sim_truth

from bench.sim import start_sim

SYNTHETIC = {"synthetic": {"prompt_tokens": 8, "output_tokens": 12}}


def _peak_overlap(starts: np.ndarray, ends: np.ndarray) -> int:
    """Most intervals [start, end) open at once (an end at t frees its slot before a start at t)."""
    events = sorted([(t, 1) for t in starts] + [(t, -1) for t in ends], key=lambda e: (e[0], e[1]))
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def _measured(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["phase"] == "measure"].sort_values("sent_s")


def test_max_concurrency_caps_requests_in_flight_at_the_server(tmp_path):
    with start_sim(profile="default", seed=2) as sim:
        result = run_in_process(tmp_path, {
            "name": "capped", "seed": 1, "target": {"base_url": sim.base_url}, "requests": SYNTHETIC,
            "load": {"rate": 200, "arrival": "constant", "max_requests": 60, "max_concurrency": 4},
        })
        truth = sim_truth(sim.base_url.removesuffix("/v1"))
    requests = result.run.requests
    assert (requests["status"] == "ok").all() and len(requests) == 60
    server = [truth[i] for i in requests["server_request_id"]]
    received = np.array([t["received_s"] for t in server])
    completed = np.array([t["completed_s"] for t in server])
    assert _peak_overlap(received, completed) == 4  # the server never held a fifth
    assert _peak_overlap(requests["sent_s"].to_numpy(), requests["end_s"].to_numpy()) == 4
    # 60 arrivals in 0.3 s cannot all start on time through 4 slots: the wait is schedule lag
    assert requests["schedule_lag_ms"].max() > 200


def _leaky_bucket(scheduled: np.ndarray, rate: float, capacity: float) -> np.ndarray:
    """When each send may go: the bucket drains at `rate`, holds `capacity`, one per send."""
    out, level, clock = [], 0.0, 0.0
    for t in np.sort(scheduled):
        now = max(t, clock)
        level = max(0.0, level - (now - clock) * rate)
        if level + 1 > capacity:
            now += (level + 1 - capacity) / rate
            level = capacity - 1
        clock = now
        level += 1
        out.append(now)
    return np.array(out)


def test_send_rate_limit_holds_sends_to_the_limit(tmp_path):
    with start_sim(profile="zero", seed=2) as sim:
        result = run_in_process(tmp_path, {
            "name": "limited", "seed": 1, "target": {"base_url": sim.base_url}, "requests": SYNTHETIC,
            "load": {"rate": 400, "arrival": "constant", "max_requests": 120, "send_rate_limit": 40},
        })
    sent = _measured(result.run.requests)
    assert len(sent) == 120 and (sent["status"] == "ok").all()
    expected = _leaky_bucket(sent["scheduled_s"].to_numpy(), rate=40, capacity=40)
    start = sent["sent_s"].to_numpy() - sent["sent_s"].min() + expected.min()
    # past the first full bucket, sends come at the limit: 80 more at 40/s is 2 s, not 0.2 s
    assert abs((start[-1] - start[40]) - (expected[-1] - expected[40])) < 0.1
    assert np.abs(start - expected).max() < 0.1
    tail = np.diff(start[45:])
    assert abs(tail.mean() - 1 / 40) < 0.002


def test_think_time_separates_a_slots_requests(tmp_path):
    with start_sim(profile="zero", seed=2) as sim:
        result = run_in_process(tmp_path, {
            "name": "think", "seed": 1, "target": {"base_url": sim.base_url}, "requests": SYNTHETIC,
            "load": {"concurrency": 1, "think_time": 0.15, "max_requests": 8},
        })
    rows = result.run.requests.sort_values("sent_s")
    gaps = rows["submitted_s"].to_numpy()[1:] - rows["end_s"].to_numpy()[:-1]
    assert len(gaps) == 7
    # the event loop's timers may fire up to a millisecond early (uvloop's resolution)
    assert gaps.min() >= 0.15 - 0.002 and gaps.max() < 0.15 + 0.03
