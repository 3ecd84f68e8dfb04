"""Is the client itself the bottleneck? Judged from its stored self-calibration (run.json
`client`: event-loop lag and CPU per process, measured by bench.runner.loopmon) and, for an
open loop, from the send lag of the stored requests.

`client_warnings` lists the reasons to believe the client, not the server, shaped the
figures: they are stored in run.json (`client.warnings`) and shown as validity warnings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel

from bench.errors import ValidityWarning
from bench.metrics import derive
from bench.store import ClientInfo, WorkerInfo

__all__ = [
    "BUSY_CPU_PERCENT", "CPU_PERCENT_MAX", "LOOP_LAG_MAX_MS", "LOOP_LAG_P99_MS", "SEND_LAG_GROWTH_MS",
    "client_processes", "client_warnings", "send_lag_growth",
]

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


def client_warnings(client: ClientInfo, requests: Any = None, offered_rate: float | None = None,
                    lag_p99_ms: float = LOOP_LAG_P99_MS, cpu_max: float = CPU_PERCENT_MAX) -> list[ValidityWarning]:
    """Reasons to believe the client was near its ceiling during the run.

    `client` is run.json `client` (one process, or `workers` plus the parent); `requests`
    (optional) the per-request frame with `phase`, `scheduled_s`, `sent_s`.
    """
    out: list[ValidityWarning] = []
    for name, stats in client_processes(client):
        out += _process_warnings(name, stats, client, lag_p99_ms, cpu_max)
    if requests is not None and not _slots_full(client, requests):
        out += send_lag_growth(requests, offered_rate)
    return out


def _slots_full(client: ClientInfo, requests: Any) -> bool:
    """Sends waited for an in-flight slot (the cap was reached, or requests went unsent):
    their lag is the cap's queue, which the overload check reports, not the client's CPU."""
    if client.not_sent:
        return True
    cap = client.in_flight_cap
    return cap is not None and not requests.empty and derive.peak_concurrency(requests) >= cap


def _process_warnings(name: str, stats: ClientInfo | WorkerInfo, client: ClientInfo, lag_p99_ms: float,
                      cpu_max: float) -> list[ValidityWarning]:
    out: list[ValidityWarning] = []
    lag, cpu = stats.loop_lag_ms, stats.cpu_percent
    p99, worst = (lag.p99, lag.max) if lag is not None else (None, None)
    mean, peak = (cpu.mean, cpu.max) if cpu is not None else (None, None)
    busy = (mean or 0.0) >= BUSY_CPU_PERCENT or (peak or 0.0) >= cpu_max
    why = ("the client was busy (client-bound; use --workers or a lighter load)" if busy else
           "the client's work came in bursts or its process waited for a CPU (other processes)")
    if p99 is not None and p99 > lag_p99_ms:
        out.append(ValidityWarning("client_loop_lag", (
            f"{name}: event-loop lag p99 {p99:.1f} ms (max {worst:.0f} ms) > {lag_p99_ms:g} ms: {why}; "
            f"{_lag_effect(client)}")))
    elif worst is not None and worst > LOOP_LAG_MAX_MS:
        out.append(ValidityWarning("client_loop_stall", (
            f"{name}: the event loop stalled for {worst:.0f} ms at least once (> {LOOP_LAG_MAX_MS:g} ms): "
            f"{why}; {_lag_effect(client, 'at that moment')}")))
    if mean is not None and mean > cpu_max:
        out.append(ValidityWarning("client_cpu", (
            f"{name}: client CPU {mean:.0f} % of a core on average (> {cpu_max:g} %): the client was "
            "near its ceiling (client-bound; use --workers or a lighter load)")))
    elif peak is not None and peak > max(cpu_max, 95.0):
        out.append(ValidityWarning("client_cpu_peak", (
            f"{name}: client CPU reached {peak:.0f} % of a core in some half-second windows: figures from "
            "those moments may carry client delay")))
    return out


def _lag_effect(client: ClientInfo, when: str = "") -> str:
    """What a late event loop distorts, given where chunk arrival stamps came from."""
    at = f" {when}" if when else ""
    if client.arrival_stamps == "kernel":
        # Stamps are the socket's receive times; what the lag still moves is when requests go
        # out, and a socket read that late can take two chunks at once (one stamp for both).
        return (f"sends{at} went out late by as much (less load than planned), and chunks that waited "
                "that long were read together, so ITL tails can include client delay")
    return f"sends and chunk arrival stamps{at} ran late by as much, so TTFT/ITL tails include client delay"


def client_processes(client: ClientInfo) -> list[tuple[str, ClientInfo | WorkerInfo]]:
    """Every client process with its self-calibration, named for a reader: the client (or
    its parent process when there are workers), then each worker process or Ray actor."""
    procs: list[tuple[str, ClientInfo | WorkerInfo]] = []
    if _recorded(client.loop_lag_ms) or _recorded(client.cpu_percent):
        procs.append(("client" if not client.workers else "client parent", client))
    for i, worker in enumerate(client.workers or []):
        index = worker.index if worker.index is not None else i
        # Ray actors (bench/runner/ray_workers.py) carry their host: name the machine that was overloaded
        name = f"ray actor {index} on {worker.host}" if _recorded(worker.clock) else f"client worker {index}"
        procs.append((name, worker))
    return procs


def _recorded(section: BaseModel | None) -> bool:
    """A stored section present with at least one field (an empty `{}` counts as absent)."""
    return section is not None and bool(section.model_fields_set)


def send_lag_growth(requests: Any, offered_rate: float | None = None) -> list[ValidityWarning]:
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
    return [ValidityWarning("send_lag_growing", (
        f"send lag grew through the run (median {first:.1f} ms in the first third of sends, {last:.1f} ms in the "
        "last): the client could not keep up with the schedule (client-bound)"))]
