"""Process-level set-up for a sending process: the event loop, GC settings, CPU affinity."""

from __future__ import annotations

import asyncio
import gc
import os
from contextlib import ExitStack
from typing import Any

__all__ = ["freeze_gc", "run_loop", "separate_cores", "thaw_gc"]




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
