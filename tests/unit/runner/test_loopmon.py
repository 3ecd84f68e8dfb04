"""Self-calibration: loop lag and CPU samples, and their stored form."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from bench.analysis.clientload import client_warnings
from bench.runner.loopmon import LoopMonitor, lag_cpu_stats
from bench.store import ClientInfo, ProcessLoad


def test_monitor_sees_a_blocked_loop_and_busy_cpu():
    async def main() -> dict:
        monitor = LoopMonitor(interval_s=0.005, cpu_window_s=0.05)
        monitor.start()
        await asyncio.sleep(0.05)
        end = time.perf_counter() + 0.08
        while time.perf_counter() < end:  # hold the loop (and a core) for 80 ms
            pass
        await asyncio.sleep(0.05)
        return await monitor.stop()

    stats = asyncio.run(main())
    lag = stats["loop_lag_ms"]
    assert lag["count"] >= 5
    assert lag["max"] >= 60.0  # the sleeper woke up ~80 ms late once
    assert stats["cpu_percent"]["max"] > 30.0
    assert stats["cpu_percent"]["wall_s"] > 0.15


def test_stats_of_no_samples():
    stats = lag_cpu_stats(np.empty(0), np.empty(0), wall_s=0.0, cpu_s=0.0, interval_ms=20.0)
    assert stats["loop_lag_ms"]["count"] == 0 and stats["cpu_percent"]["mean"] is None
    assert client_warnings(ClientInfo.model_validate(stats)) == []


def test_stored_stats_are_typed_and_round_trip():
    stats = lag_cpu_stats(np.array([0.1, 0.4, 9.0]), np.array([12.0, 40.0]), wall_s=2.0, cpu_s=0.5, interval_ms=20.0)
    load = ProcessLoad.model_validate(stats)  # extra="forbid": a new key must be declared there
    assert load.loop_lag_ms is not None and load.loop_lag_ms.max == 9.0 and load.loop_lag_ms.count == 3
    assert load.cpu_percent is not None and load.cpu_percent.mean == 25.0
    assert load.model_dump() == stats
