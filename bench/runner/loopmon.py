"""Self-calibration: is the client itself the bottleneck?

`LoopMonitor` runs inside a client process during a run: a task sleeps `interval_s` over
and over and records how late it woke up (event-loop lag: the time every other callback,
including stamping socket reads and sending requests, may have waited), and every
`cpu_window_s` it samples the process CPU time (`time.process_time()` deltas over wall
time, 100 % = one core busy). `stats()` turns the samples into the small dict stored in
run.json under `manifest.client` (per worker when there are worker processes).

At high open-loop rates the CPU figure includes the sender's last-millisecond yield loop
(about 30 % of a core at 1,000 req/s): a busy core that is still on schedule. Loop lag and
send lag are the sharper signs of a client at its ceiling.

`client_warnings` is a pure function over that dict (and, optionally, the per-request
frame) listing the reasons to believe the client, not the server, shaped the figures.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from dataclasses import dataclass
from typing import Any

import numpy as np

# Event-loop lag above this at p99 means callbacks (socket reads, sends) ran late by as much.
LOOP_LAG_P99_MS = 5.0
LOOP_LAG_MAX_MS = 50.0
# A client process this busy (one core = 100 %) has no headroom left.
CPU_PERCENT_MAX = 85.0
# Send lag growing by more than this between the first and last third of the open-loop
# sends, and at least this share of the mean inter-arrival time: the client fell behind
# more and more.
SEND_LAG_GROWTH_MS = 2.0
# Loop lag with the process this busy is the client's own work; below, it waited for a CPU.
BUSY_CPU_PERCENT = 50.0


@dataclass(frozen=True)
class ClientWarning:
    code: str
    message: str

    def __str__(self) -> str:
        return self.message


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


def client_warnings(client: dict[str, Any], requests: Any = None, offered_rate: float | None = None,
                    lag_p99_ms: float = LOOP_LAG_P99_MS, cpu_max: float = CPU_PERCENT_MAX) -> list[ClientWarning]:
    """Reasons to believe the client was near its ceiling during the run.

    `client` is `manifest.client` (one process, or `workers: [...]` plus the parent);
    `requests` (optional) the per-request frame with `phase`, `scheduled_s`, `sent_s`.
    """
    out: list[ClientWarning] = []
    for name, stats in _processes(client):
        lag = stats.get("loop_lag_ms") or {}
        cpu = stats.get("cpu_percent") or {}
        p99, worst = lag.get("p99"), lag.get("max")
        busy = (cpu.get("mean") or 0.0) >= BUSY_CPU_PERCENT or (cpu.get("max") or 0.0) >= cpu_max
        why = ("the client was busy (client-bound; use --workers or a lighter load)" if busy else
               "the client's work came in bursts or its process waited for a CPU (other processes)")
        if p99 is not None and p99 > lag_p99_ms:
            out.append(ClientWarning("client_loop_lag", (
                f"{name}: event-loop lag p99 {p99:.1f} ms (max {worst:.0f} ms) > {lag_p99_ms:g} ms: {why}; "
                f"{_lag_effect(client)}")))
        elif worst is not None and worst > LOOP_LAG_MAX_MS:
            out.append(ClientWarning("client_loop_stall", (
                f"{name}: the event loop stalled for {worst:.0f} ms at least once (> {LOOP_LAG_MAX_MS:g} ms): "
                f"{why}; {_lag_effect(client, 'at that moment')}")))
        mean, peak = cpu.get("mean"), cpu.get("max")
        if mean is not None and mean > cpu_max:
            out.append(ClientWarning("client_cpu", (
                f"{name}: client CPU {mean:.0f} % of a core on average (> {cpu_max:g} %): the client was "
                "near its ceiling (client-bound; use --workers or a lighter load)")))
        elif peak is not None and peak > max(cpu_max, 95.0):
            out.append(ClientWarning("client_cpu_peak", (
                f"{name}: client CPU reached {peak:.0f} % of a core in some half-second windows: figures from "
                "those moments may carry client delay")))
    if requests is not None:
        out += send_lag_growth(requests, offered_rate)
    return out


def _lag_effect(client: dict[str, Any], when: str = "") -> str:
    """What a late event loop distorts, given where chunk arrival stamps came from."""
    at = f" {when}" if when else ""
    if client.get("arrival_stamps") == "kernel":
        # Stamps are the socket's receive times; what the lag still moves is when requests go
        # out, and a socket read that late can take two chunks at once (one stamp for both).
        return (f"sends{at} went out late by as much (less load than planned), and chunks that waited "
                "that long were read together, so ITL tails can include client delay")
    return f"sends and chunk arrival stamps{at} ran late by as much, so TTFT/ITL tails include client delay"


def _processes(client: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    procs = []
    if client.get("loop_lag_ms") or client.get("cpu_percent"):
        procs.append(("client" if not client.get("workers") else "client parent", client))
    for i, worker in enumerate(client.get("workers") or []):
        index = worker.get("index", i)
        # Ray actors (bench/runner/ray_workers.py) carry their host: name the machine that was overloaded
        name = f"ray actor {index} on {worker['host']}" if worker.get("clock") else f"client worker {index}"
        procs.append((name, worker))
    return procs


def send_lag_growth(requests: Any, offered_rate: float | None = None) -> list[ClientWarning]:
    """Open loop: median send lag of the last third of sends well above the first third's."""
    frame = requests
    if "phase" in frame:
        frame = frame[frame["phase"] == "measure"]
    if len(frame) < 30 or offered_rate is None:
        return []
    frame = frame.sort_values("scheduled_s")
    lag = (frame["sent_s"].to_numpy(dtype="float64") - frame["scheduled_s"].to_numpy(dtype="float64")) * 1e3
    lag = lag[np.isfinite(lag)]
    if lag.size < 30:
        return []
    third = lag.size // 3
    first, last = float(np.median(lag[:third])), float(np.median(lag[-third:]))
    limit = max(SEND_LAG_GROWTH_MS, 0.5 * 1e3 / offered_rate if offered_rate > 0 else 0.0)
    if last - first <= limit:
        return []
    return [ClientWarning("send_lag_growing", (
        f"send lag grew through the run (median {first:.1f} ms in the first third of sends, {last:.1f} ms in the "
        "last): the client could not keep up with the schedule (client-bound)"))]
