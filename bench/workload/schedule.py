"""Arrival schedules: absolute send offsets (seconds from run start), precomputed from a seed.

Offsets are absolute, never accumulated sleeps, so a late send does not push every later
send back and the achieved rate matches the offered one.

`build_schedule` turns any load shape into one `Schedule`: the open-loop arrivals of the
whole run (sorted, with the stage each belongs to and, for a trace, the trace row it
replays) plus one `ScheduledStage` per stage, so the runner also knows when closed-loop stages
start and stop. Everything here is pure and deterministic given the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from bench.scenario.schema import Load, Ramp, Stage
from bench.scenario.traces import trace_offsets, trace_period

__all__ = [
    "Schedule", "ScheduledStage", "arrival_offsets", "build_schedule", "ramp_cumulative",
    "ramp_inverse",
]

# Generous upper bound on how many arrivals a duration-bound schedule may hold.
_MAX_SCHEDULE = 50_000_000

# Stream tags for the seeded generators: each shape draws from its own stream, so adding a
# stage (say) does not change the arrivals of the stages before it.
_RATE_STREAM = 0x5C4ED
_RAMP_STREAM = 0x4A3B
_STAGE_STREAM = 0x57A6E


@dataclass(frozen=True)
class ScheduledStage:
    """One stage of a run: open loop at `rate`, or closed loop with `concurrency` slots.

    `duration_s` is None only for a single open-ended stage (a rate bounded by
    max_requests alone, or a closed loop without a duration).
    """

    index: int
    kind: Literal["open", "closed"]
    start_s: float
    duration_s: float | None
    rate: float | None
    concurrency: int | None

    @property
    def end_s(self) -> float | None:
        return None if self.duration_s is None else self.start_s + self.duration_s


@dataclass(frozen=True)
class Schedule:
    """The open-loop arrivals of a run and the stages they belong to.

    offsets: float64, sorted absolute send offsets (s from run start); open-loop only.
    stage: int32 stage index of each arrival.
    item: int64 trace row replayed by each arrival; None unless the load is a trace.
    stages: every stage, open and closed, in time order.
    offered_rate: mean offered rate of the open-loop part (None for a pure closed loop).
    """

    offsets: np.ndarray
    stage: np.ndarray
    item: np.ndarray | None
    stages: tuple[ScheduledStage, ...]
    offered_rate: float | None

    def __len__(self) -> int:
        return len(self.offsets)


def arrival_offsets(load: Load, seed: int) -> np.ndarray | None:
    """Send offsets for an open-loop `rate` load; None for a closed loop (concurrency).

    Kept for callers that only handle the plain rate case; `build_schedule` covers all shapes.
    """
    if load.rate is None:
        return None
    count = _count(load)
    rng = np.random.default_rng([seed, _RATE_STREAM])
    return _rate_offsets(load.arrival, load.rate, load.burstiness, count, rng)


def build_schedule(load: Load, seed: int, trace: pd.DataFrame | None = None) -> Schedule:
    """The whole run's schedule for any load shape.

    `trace` is the frame from `bench.scenario.traces.read_trace` and is required when `load.trace`
    is set (reading it needs the scenario's directory, which this pure layer does not know).
    `load.max_requests` caps the total number of open-loop arrivals; `load.duration`, when
    set on a ramp, stages or trace load, cuts the schedule (and its stages) at that time.
    """
    if load.concurrency is not None:
        spec = ScheduledStage(0, "closed", 0.0, load.duration, None, load.concurrency)
        return Schedule(_empty(np.float64), _empty(np.int32), None, (spec,), None)
    if load.rate is not None:
        offsets = arrival_offsets(load, seed)
        assert offsets is not None
        spec = ScheduledStage(0, "open", 0.0, load.duration, load.rate, None)
        return Schedule(offsets, np.zeros(len(offsets), np.int32), None, (spec,), load.rate)
    if load.ramp is not None:
        schedule = _ramp_schedule(load.ramp, seed)
    elif load.stages is not None:
        schedule = _stages_schedule(load.stages, seed)
    elif load.trace is not None:
        if trace is None:
            raise ValueError("load.trace is set: pass the frame from bench.scenario.traces.read_trace")
        schedule = _trace_schedule(load, trace, seed)
    else:  # pragma: no cover - the Load validator admits nothing else
        raise ValueError("load has no shape")
    return _bounded(schedule, load.duration, load.max_requests)


# --- rate ---------------------------------------------------------------------------------


def _count(load: Load) -> int:
    assert load.rate is not None
    bounds = []
    if load.max_requests is not None:
        bounds.append(load.max_requests)
    if load.duration is not None:
        bounds.append(_count_for(load.rate, load.duration))
    return int(min(min(bounds), _MAX_SCHEDULE))


def _count_for(rate: float, duration: float) -> int:
    # Arrivals at 0, 1/rate, ... strictly before `duration`; the epsilon keeps 10/s * 1 s at 10.
    return max(1, int(np.ceil(rate * duration - 1e-9)))


def _rate_offsets(arrival: str, rate: float, burstiness: float, count: int,
                  rng: np.random.Generator) -> np.ndarray:
    gaps = _gaps(arrival, rate, burstiness, count, rng)
    offsets = np.cumsum(gaps) - gaps[0]  # the first request goes at t=0
    if count > 1 and offsets[-1] > 0:
        # Rescale so the realised mean rate is exactly the offered one; a random draw of a
        # few hundred arrivals would otherwise miss it by several percent. The burst shape
        # (relative gaps, CV) is kept, and the last arrival lands at (count-1)/rate, so a
        # duration-bound count stays inside its duration.
        offsets *= (count - 1) / (rate * offsets[-1])
    return offsets


def _gaps(arrival: str, rate: float, burstiness: float, count: int, rng: np.random.Generator) -> np.ndarray:
    if arrival == "constant":
        return np.full(count, 1.0 / rate)
    if arrival == "poisson":
        return rng.exponential(1.0 / rate, count)
    if arrival == "gamma":
        # shape k = burstiness keeps the mean at 1/rate; CV = 1/sqrt(k).
        return rng.gamma(burstiness, 1.0 / (rate * burstiness), count)
    raise ValueError(f"unknown arrival process {arrival!r}")


# --- ramp ---------------------------------------------------------------------------------


def ramp_cumulative(ramp: Ramp, t: np.ndarray | float) -> np.ndarray:
    """Expected arrivals by time t: the integral of the linear rate a + (b - a) t / T."""
    a, b, T = ramp.from_rate, ramp.to_rate, ramp.duration
    t = np.asarray(t, dtype=np.float64)
    return a * t + (b - a) * t * t / (2.0 * T)


def ramp_inverse(ramp: Ramp, u: np.ndarray) -> np.ndarray:
    """Time at which the cumulative intensity reaches u (the inverse of `ramp_cumulative`).

    Root of (b - a)/(2T) t^2 + a t - u = 0 written as 2u / (a + sqrt(a^2 + 2(b - a)u/T)):
    it has no division by (b - a), so a flat ramp and a ramp from 0 need no special case,
    and it does not lose precision when b is close to a.
    """
    a, b, T = ramp.from_rate, ramp.to_rate, ramp.duration
    u = np.asarray(u, dtype=np.float64)
    # For u <= (a + b) T / 2 the discriminant is >= b^2 >= 0; clip rounding noise only.
    root = np.sqrt(np.maximum(a * a + 2.0 * (b - a) * u / T, 0.0))
    denom = a + root
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(denom > 0, 2.0 * u / np.where(denom > 0, denom, 1.0), 0.0)
    return np.minimum(t, T)


def _ramp_schedule(ramp: Ramp, seed: int) -> Schedule:
    total = float(ramp_cumulative(ramp, ramp.duration))
    if ramp.arrival == "constant":
        # Deterministic: the k-th arrival when the expected count reaches k (k = 0, 1, ...).
        units = np.arange(min(_count_for(1.0, total), _MAX_SCHEDULE), dtype=np.float64)
    else:
        # A unit-rate Poisson process on [0, total): mapped through the inverse cumulative
        # intensity it becomes the inhomogeneous Poisson process with the ramp's rate.
        rng = np.random.default_rng([seed, _RAMP_STREAM])
        units = _unit_poisson(total, rng)
    offsets = ramp_inverse(ramp, units)
    offsets = offsets[offsets < ramp.duration]
    spec = ScheduledStage(0, "open", 0.0, ramp.duration, (ramp.from_rate + ramp.to_rate) / 2, None)
    return Schedule(offsets, np.zeros(len(offsets), np.int32), None, (spec,), spec.rate)


def _unit_poisson(total: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival times of a rate-1 Poisson process on [0, total)."""
    # Draw comfortably more gaps than needed (mean + 10 sd) and top up in the rare miss.
    chunk = int(total + 10 * np.sqrt(total) + 16)
    times = np.cumsum(rng.exponential(1.0, chunk))
    while times[-1] < total and len(times) < _MAX_SCHEDULE:
        times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(1.0, chunk))])
    return times[times < total]


# --- stages -------------------------------------------------------------------------------


def _stages_schedule(stages: list[Stage], seed: int) -> Schedule:
    specs: list[ScheduledStage] = []
    parts: list[np.ndarray] = []
    start = 0.0
    for index, stage in enumerate(stages):
        if stage.rate is None:
            specs.append(ScheduledStage(index, "closed", start, stage.duration, None, stage.concurrency))
        else:
            specs.append(ScheduledStage(index, "open", start, stage.duration, stage.rate, None))
            rng = np.random.default_rng([seed, _STAGE_STREAM, index])
            count = _count_for(stage.rate, stage.duration)
            offsets = _rate_offsets(stage.arrival, stage.rate, stage.burstiness, count, rng)
            parts.append(start + offsets)
        start += stage.duration
    # Consecutive stages do not overlap, so concatenating in stage order keeps offsets sorted.
    open_specs = [s for s in specs if s.kind == "open"]
    offsets = np.concatenate(parts) if parts else _empty(np.float64)
    stage_ids = (np.concatenate([np.full(len(p), s.index, np.int32) for p, s in zip(parts, open_specs, strict=True)])
                 if parts else _empty(np.int32))
    offered = None
    if open_specs:
        open_time = sum(s.duration_s or 0.0 for s in open_specs)
        offered = sum((s.rate or 0.0) * (s.duration_s or 0.0) for s in open_specs) / open_time
    return Schedule(offsets, stage_ids, None, tuple(specs), offered)


# --- trace --------------------------------------------------------------------------------


def _trace_schedule(load: Load, frame: pd.DataFrame, seed: int) -> Schedule:
    spec_trace = load.trace
    assert spec_trace is not None
    offsets, rows = trace_offsets(frame, spec_trace.speedup, spec_trace.target_rate, seed)
    period = trace_period(frame)
    span = period / spec_trace.speedup if period is not None else None
    offered = len(offsets) / span if span else None
    spec = ScheduledStage(0, "open", 0.0, span, offered, None)
    return Schedule(offsets, np.zeros(len(offsets), np.int32), rows, (spec,), offered)


# --- bounds -------------------------------------------------------------------------------


def _bounded(schedule: Schedule, duration: float | None, max_requests: int | None) -> Schedule:
    """Cut a schedule at `duration` (arrivals and stages) and at `max_requests` arrivals."""
    keep = len(schedule.offsets)
    stages = schedule.stages
    if duration is not None:
        keep = int(np.searchsorted(schedule.offsets, duration, side="left"))
        stages = tuple(_clip_stage(s, duration) for s in stages if s.start_s < duration)
    if max_requests is not None:
        keep = min(keep, max_requests)
    if keep == len(schedule.offsets) and stages == schedule.stages:
        return schedule
    item = schedule.item[:keep] if schedule.item is not None else None
    return Schedule(schedule.offsets[:keep], schedule.stage[:keep], item, stages, schedule.offered_rate)


def _clip_stage(spec: ScheduledStage, end: float) -> ScheduledStage:
    if spec.end_s is None or spec.end_s > end:
        return ScheduledStage(spec.index, spec.kind, spec.start_s, end - spec.start_s, spec.rate, spec.concurrency)
    return spec


def _empty(dtype: type) -> np.ndarray:
    return np.empty(0, dtype=dtype)
