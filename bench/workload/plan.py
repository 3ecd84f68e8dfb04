"""The run plan: stages from the schedule, the endpoint path, timeouts and limits; traces for the plan."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.scenario.loader import resolve_path
from bench.scenario.schema import Load, Scenario, Timeouts
from bench.workload.bodies import ENDPOINT_PATHS
from bench.workload.schedule import Schedule, ScheduledStage

__all__ = [
    "ENDPOINT_PATHS", "RunPlan", "StagePlan", "build_plan", "peak_concurrency", "read_trace_for",
    "stage_note", "stage_plans", "trace_prompts_for",
]




def stage_plans(schedule: Schedule, load: Load) -> list[StagePlan]:
    plans = []
    for spec in schedule.stages:
        if spec.kind == "open":
            mask = schedule.stage == spec.index
            items = schedule.item[mask] if schedule.item is not None else None
            plans.append(StagePlan(spec.index, spec.start_s, offsets=schedule.offsets[mask], items=items))
        else:
            end = spec.end_s if spec.end_s is not None else load.duration
            plans.append(StagePlan(spec.index, spec.start_s, concurrency=spec.concurrency, end_s=end,
                                   think_time_s=load.think_time))
    return plans


def stage_note(spec: ScheduledStage) -> dict[str, Any]:
    return {"index": spec.index, "kind": spec.kind, "start_s": spec.start_s, "duration_s": spec.duration_s,
            "rate": spec.rate, "concurrency": spec.concurrency}


def peak_concurrency(scenario: Scenario, schedule: Schedule) -> int:
    load = scenario.load
    closed = [s.concurrency or 0 for s in schedule.stages if s.kind == "closed"]
    return max([load.max_concurrency or 4096, *closed])


def read_trace_for(scenario: Scenario, scenario_path: Path) -> Any:
    trace = scenario.load.trace
    if trace is None:
        return None
    from bench.scenario.traces import read_trace

    return read_trace(resolve_path(scenario_path, trace.file), trace.format)


def trace_prompts_for(scenario: Scenario, trace: Any) -> list[Any] | None:
    if trace is None:
        return None
    from bench.scenario.traces import trace_prompts

    assert scenario.load.trace is not None
    return trace_prompts(trace, scenario.load.trace.block_tokens, scenario.seed)


def build_plan(scenario: Scenario, in_flight_cap: int | None = None) -> RunPlan:
    """The run's plan; `in_flight_cap` applies when the scenario sets no load.max_concurrency."""
    load = scenario.load
    return RunPlan(
        path=ENDPOINT_PATHS[scenario.target.endpoint],
        endpoint=scenario.target.endpoint,
        keep_output=scenario.tokens is not None,
        timeouts=scenario.target.timeouts,
        max_concurrency=load.max_concurrency or in_flight_cap,
        max_send_lag_s=load.max_send_lag_s,
        drain_s=load.drain_s,
        send_rate_limit=load.send_rate_limit,
        max_requests=load.max_requests,
        warmup_requests=load.warmup.requests,
        warmup_s=load.warmup.seconds,
    )


@dataclass(frozen=True, slots=True)
class StagePlan:
    """One stage: open loop (absolute `offsets` from t0) or closed loop (`concurrency` slots
    sending from `start_s` until `end_s`)."""

    index: int
    start_s: float = 0.0
    offsets: np.ndarray | None = None
    items: np.ndarray | None = None  # trace row per arrival
    concurrency: int | None = None
    end_s: float | None = None
    max_requests: int | None = None
    think_time_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RunPlan:
    path: str  # bench.workload.bodies.ENDPOINT_PATHS: "/chat/completions", "/embeddings", ...
    timeouts: Timeouts
    max_concurrency: int | None = None
    send_rate_limit: float | None = None
    max_requests: int | None = None  # over the whole run
    warmup_requests: int = 0
    warmup_s: float = 0.0
    max_send_lag_s: float | None = None  # open loop: later than this, a request is not sent (counted)
    drain_s: float | None = None  # in-flight requests' time once sending ends (None: their own timeouts)
    endpoint: str = "chat"  # scenario target.endpoint: which recorder reads the answers
    keep_output: bool = False  # keep each answer's text in its record (scenario `tokens:` counts it after the run)
