"""Self-calibration: is the client itself the bottleneck?

`LoopMonitor` runs inside a client process during a run: a task sleeps `interval_s` over
and over and records how late it woke up (event-loop lag: the time every other callback,
including stamping socket reads and sending requests, may have waited), and every
`cpu_window_s` it samples the process CPU time (`time.process_time()` deltas over wall
time, 100 % = one core busy). `stats()` turns the samples into the small dict stored in
run.json under `client` (per worker when there are worker processes; typed there as
bench.store.ProcessLoad).

At high open-loop rates the CPU figure includes the sender's last-millisecond yield loop
(about 30 % of a core at 1,000 req/s): a busy core that is still on schedule. Loop lag and
send lag are the sharper signs of a client at its ceiling.

The judgement (reasons to believe the client, not the server, shaped the figures) is made
from the stored figures: bench.analysis.clientload.client_warnings.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from typing import Any

import numpy as np

__all__ = ["LoopMonitor", "lag_cpu_stats"]


class LoopMonitor:
    """Samples event-loop lag and process CPU in the running loop until `stop()`."""

    def __init__(self, interval_s: float = 0.02, cpu_window_s: float = 0.5, max_samples: int = 200_000) -> None:
        self.interval_s = interval_s
        self.cpu_window_s = cpu_window_s
        self._max = max_samples
        self.lag_s = array("d")
        self.lag_t = array("d")  # perf_counter of each lag sample
        self.cpu_percent = array("d")
        self._task: asyncio.Task[None] | None = None
        self._start_wall = 0.0
        self._start_cpu = 0.0
        self._end_wall = 0.0
        self._end_cpu = 0.0

    def start(self) -> None:
        self._start_wall = time.perf_counter()
        self._start_cpu = time.process_time()
        self._task = asyncio.get_running_loop().create_task(self._sample())

    async def _sample(self) -> None:
        interval = self.interval_s
        perf, cpu = time.perf_counter, time.process_time
        window_wall, window_cpu = perf(), cpu()
        while True:
            before = perf()
            await asyncio.sleep(interval)
            now = perf()
            if len(self.lag_s) < self._max:
                self.lag_s.append(max(0.0, now - before - interval))
                self.lag_t.append(now)
            if now - window_wall >= self.cpu_window_s:
                c = cpu()
                self.cpu_percent.append(100.0 * (c - window_cpu) / (now - window_wall))
                window_wall, window_cpu = now, c

    async def stop(self) -> dict[str, Any]:
        self._end_wall = time.perf_counter()
        self._end_cpu = time.process_time()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        return self.stats()

    def stats(self) -> dict[str, Any]:
        end_wall = self._end_wall or time.perf_counter()
        end_cpu = self._end_cpu or time.process_time()
        stats = lag_cpu_stats(np.frombuffer(self.lag_s, dtype=np.float64) * 1e3,
                              np.frombuffer(self.cpu_percent, dtype=np.float64),
                              wall_s=end_wall - self._start_wall, cpu_s=end_cpu - self._start_cpu,
                              interval_ms=self.interval_s * 1e3)
        return stats


def lag_cpu_stats(lag_ms: np.ndarray, cpu_percent: np.ndarray, wall_s: float, cpu_s: float,
                  interval_ms: float) -> dict[str, Any]:
    """The stored form: loop lag percentiles (ms) and CPU use (% of one core)."""
    lag: dict[str, Any] = {"count": int(lag_ms.size), "interval_ms": interval_ms}
    if lag_ms.size:
        p50, p99 = np.percentile(lag_ms, [50, 99])
        lag.update(p50=round(float(p50), 3), p99=round(float(p99), 3), max=round(float(lag_ms.max()), 3))
        # Lag in the last third against the first: a loop falling further behind.
        third = max(1, lag_ms.size // 3)
        lag["p99_first_third"] = round(float(np.percentile(lag_ms[:third], 99)), 3)
        lag["p99_last_third"] = round(float(np.percentile(lag_ms[-third:], 99)), 3)
    cpu: dict[str, Any] = {"mean": round(100.0 * cpu_s / wall_s, 1) if wall_s > 0 else None,
                           "max": round(float(cpu_percent.max()), 1) if cpu_percent.size else None,
                           "cpu_s": round(cpu_s, 3), "wall_s": round(wall_s, 3)}
    return {"loop_lag_ms": lag, "cpu_percent": cpu}
