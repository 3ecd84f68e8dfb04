"""Process-level set-up for a sending process: the event loop, GC settings, CPU affinity."""

from __future__ import annotations

import asyncio
import gc
import os
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

__all__ = ["CONNECTION_CAP", "InFlightCap", "freeze_gc", "in_flight_cap", "peak_rss_mib", "run_loop",
           "separate_cores", "thaw_gc"]

CONNECTION_CAP = 4096  # the client's default connection pool (bench.workload.plan.peak_concurrency)
FD_RESERVE = 256  # descriptors kept for files, the event loop, the server's log, pipes
REQUEST_BYTES = 64 * 1024  # one in-flight request's memory, with margin (measured ~30 KiB at 18k in flight)
MEMORY_SHARE = 0.5  # of the memory available at the start


@dataclass(frozen=True)
class InFlightCap:
    """The default cap on requests in flight (when the scenario sets no load.max_concurrency)."""

    value: int
    reason: str  # which limit set it, for run.json


def in_flight_cap() -> InFlightCap:
    """min(CONNECTION_CAP, the descriptor limit less FD_RESERVE, MEMORY_SHARE of available
    memory / REQUEST_BYTES): past it, requests wait for a slot instead of exhausting the
    machine (each in-flight request holds a socket and its buffers)."""
    limits = {"the connection pool": CONNECTION_CAP}
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY:
            limits[f"the file-descriptor limit ({soft}) less {FD_RESERVE}"] = max(1, soft - FD_RESERVE)
    except (ImportError, OSError, ValueError):
        pass
    try:
        import psutil

        available = psutil.virtual_memory().available
        limits[f"{MEMORY_SHARE:.0%} of {available / 2**30:.1f} GiB available memory"] = max(
            1, int(available * MEMORY_SHARE // REQUEST_BYTES))
    except (ImportError, OSError):
        pass
    reason, value = min(limits.items(), key=lambda kv: kv[1])
    return InFlightCap(value, f"default, from {reason}")


def peak_rss_mib() -> float | None:
    """This process's peak resident memory so far, MiB (None where the OS does not say)."""
    try:
        import resource
    except ImportError:
        return None
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux (bytes on macOS)
    return round(kib / 1024 if os.uname().sysname == "Linux" else kib / 2**20, 1)




def run_loop(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # optional: a plain asyncio loop works, with more wake-up lag
        factory = None
    else:
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def separate_cores(server_pid: int, stack: ExitStack) -> int | None:
    """Put a local server (the embedded simulator, a test's or benchmark's) on a core of its
    own and this process on the others (Linux, >= 2 cores), until `stack` closes.

    Left to the OS scheduler, client and simulator keep landing on one core and every
    timestamp waits for the other process (measured on 2 cores: ~1.1 ms of added lateness
    at 64 streams; ~0.1 ms once separated)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    try:
        os.sched_setaffinity(server_pid, {cpus[-1]})
        os.sched_setaffinity(0, set(cpus[:-1]))
    except OSError:
        return None  # not permitted here: timings stay valid, just noisier
    stack.callback(os.sched_setaffinity, 0, set(cpus))
    return cpus[-1]


_GC_THRESHOLDS: list[tuple[int, int, int]] = []


def freeze_gc() -> None:
    gc.collect()
    gc.freeze()  # half of the timing tail is GC pauses (shared/FACTS.md)
    _GC_THRESHOLDS.append(gc.get_threshold())
    gc.set_threshold(200_000, 50, 100)


def thaw_gc() -> None:
    gc.set_threshold(*_GC_THRESHOLDS.pop())
    gc.unfreeze()
