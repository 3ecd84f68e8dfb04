"""Client self-calibration judged from the stored figures: loop lag, CPU and send lag."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.analysis.clientload import client_warnings as warnings_of
from bench.analysis.clientload import send_lag_growth
from bench.store import ClientInfo


def client_warnings(client: dict) -> list:
    """The warnings for run.json `client` as stored (a dict)."""
    return warnings_of(ClientInfo.model_validate(client))


def _stats(lag_p99: float, cpu_mean: float, lag_max: float | None = None) -> dict:
    return {"loop_lag_ms": {"p50": 0.3, "p99": lag_p99, "max": lag_max or lag_p99},
            "cpu_percent": {"mean": cpu_mean, "max": cpu_mean}}


def test_idle_client_gives_no_warning():
    assert client_warnings(_stats(0.8, 12.0)) == []


def test_lag_and_cpu_warnings_name_the_client_as_bound():
    warnings = client_warnings(_stats(40.0, 99.0, 300.0))
    codes = {w.code for w in warnings}
    assert codes == {"client_loop_lag", "client_cpu"}
    assert all("client-bound" in w.message for w in warnings)


def test_lag_with_idle_cpu_blames_the_machine_not_the_client():
    (warning,) = client_warnings(_stats(12.0, 20.0))
    assert warning.code == "client_loop_lag" and "client-bound" not in warning.message


def test_the_lag_warning_says_what_it_distorts_given_where_stamps_came_from():
    (read,) = client_warnings(_stats(12.0, 20.0))
    (kernel,) = client_warnings({**_stats(12.0, 20.0), "arrival_stamps": "kernel"})
    assert "arrival stamps ran late" in read.message
    assert "arrival stamps" not in kernel.message and "read together" in kernel.message


def test_per_worker_stats_are_checked_each():
    client = {**_stats(0.5, 10.0), "workers": [{"index": 0, **_stats(0.5, 20.0)},
                                                {"index": 1, **_stats(0.5, 97.0)}]}
    (warning,) = client_warnings(client)
    assert warning.code == "client_cpu" and "worker 1" in warning.message


def test_send_lag_growing_through_the_run():
    n = 300
    scheduled = np.arange(n) / 100.0
    steady = pd.DataFrame({"phase": "measure", "scheduled_s": scheduled, "sent_s": scheduled + 0.0005})
    assert send_lag_growth(steady, 100.0) == []
    growing = steady.assign(sent_s=scheduled + np.linspace(0.0, 0.5, n))
    (warning,) = send_lag_growth(growing, 100.0)
    assert warning.code == "send_lag_growing"
    assert send_lag_growth(growing, None) == []  # closed loop: no schedule to keep
