"""One global seeded schedule, sharded across K client workers (processes or Ray actors).

- open loop: arrival i goes to worker i mod K (each keeps the global offsets, so the
  union is exactly the single-process schedule); the workload skips the specs of the
  other workers, so request i carries the same prompt as in a single-process run;
- closed loop: the concurrency (and max_requests) split as evenly as possible.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.scenario.prompts import TokenModel
from bench.scenario.schema import Scenario
from bench.workload.plan import RunPlan, StagePlan
from bench.workload.requests import RequestSpec, Workload

__all__ = [
    "AUTO_RATE_PER_WORKER", "AUTO_STREAMS_PER_WORKER", "ShardedSource", "WorkerConfig", "resolve_workers",
    "shard_plan", "shard_stages",
]

# `auto`: one process is enough below these (measured ceilings in the README, with headroom).
AUTO_RATE_PER_WORKER = 1000.0
AUTO_STREAMS_PER_WORKER = 512


@dataclass(frozen=True)
class WorkerConfig:
    index: int
    count: int
    scenario: Scenario
    scenario_path: Path
    base_url: str
    api_key: str | None
    model: str
    max_connections: int
    plan: RunPlan
    token_model: TokenModel | None = None  # from the parent's probe: the prompt sizes a single process uses


def resolve_workers(value: int | str, offered_rate: float | None, peak_streams: int,
                    simulated: bool = False, cpus: int | None = None) -> int:
    """`load.workers`: a number, or `auto`: as many as the load needs, at most one per core
    (one core left to the built-in simulator when it runs on this machine)."""
    if value != "auto":
        return max(1, int(value))
    cores = cpus or os.cpu_count() or 1
    available = max(1, cores - (1 if simulated else 0))
    needed = 1
    if offered_rate:
        needed = max(needed, int(np.ceil(offered_rate / AUTO_RATE_PER_WORKER)))
    if peak_streams:
        needed = max(needed, int(np.ceil(peak_streams / AUTO_STREAMS_PER_WORKER)))
    return max(1, min(needed, available))


def _split(total: int | None, k: int, count: int) -> int | None:
    if total is None:
        return None
    return total // count + (1 if k < total % count else 0)


def shard_stages(stages: list[StagePlan], k: int, count: int) -> list[StagePlan]:
    """Worker k's part of every stage (see the module docstring)."""
    out = []
    for stage in stages:
        if stage.offsets is not None:
            items = stage.items[k::count] if stage.items is not None else None
            out.append(replace(stage, offsets=stage.offsets[k::count], items=items,
                               max_requests=_split(stage.max_requests, k, count)))
        else:
            out.append(replace(stage, concurrency=_split(stage.concurrency, k, count),
                               max_requests=_split(stage.max_requests, k, count)))
    return out


def shard_plan(plan: RunPlan, k: int, count: int) -> RunPlan:
    max_concurrency = _split(plan.max_concurrency, k, count)
    rate_limit = plan.send_rate_limit / count if plan.send_rate_limit else None
    return replace(plan, max_requests=_split(plan.max_requests, k, count),
                   max_concurrency=max(1, max_concurrency) if max_concurrency is not None else None,
                   send_rate_limit=rate_limit)


class ShardedSource:
    """Worker k's view of the workload: the spec the single-process run would send as the
    same request (the others' specs are drawn and passed over, keeping every generator in
    step). Two workers therefore never send the same draw, and synthetic prompts, one per
    draw, never repeat across workers."""

    def __init__(self, inner: Workload, index: int, count: int) -> None:
        self._inner = inner
        self._index = index
        self._count = count
        self.keep_text = inner.keep_text

    def next_spec(self, item: int | None = None) -> RequestSpec:
        if item is not None:
            return self._inner.next_spec(item)
        spec = None
        for i in range(self._count):
            if i == self._index:
                spec = self._inner.next_spec(None)
            else:
                self._inner.skip_spec(None)  # not built: the prompt is made only where it is sent
        assert spec is not None
        return spec

    def follow_up(self, spec: RequestSpec, reply: str,
                  tool_calls: tuple[dict[str, Any], ...] = ()) -> tuple[RequestSpec, float] | None:
        return self._inner.follow_up(spec, reply, tool_calls)
