"""Arrival schedules: absolute send offsets (seconds from run start), precomputed from a seed.

Offsets are absolute, never accumulated sleeps, so a late send does not push every later
send back and the achieved rate matches the offered one.
"""

from __future__ import annotations

import numpy as np

from bench.scenario import Load

# Generous upper bound on how many arrivals a duration-bound schedule may hold.
_MAX_SCHEDULE = 50_000_000


def arrival_offsets(load: Load, seed: int) -> np.ndarray | None:
    """Send offsets for an open-loop load; None for a closed loop (concurrency)."""
    if load.rate is None:
        return None
    count = _count_bound(load)
    rng = np.random.default_rng([seed, 0x5C4ED])
    gaps = _gaps(load.arrival, load.rate, load.burstiness, count, rng)
    offsets = np.cumsum(gaps) - gaps[0]  # the first request goes at t=0
    if load.duration is not None:
        offsets = offsets[offsets < load.duration]
    if load.max_requests is not None:
        offsets = offsets[: load.max_requests]
    return offsets


def _count_bound(load: Load) -> int:
    assert load.rate is not None
    if load.max_requests is not None:
        bound = load.max_requests
        if load.duration is not None:
            bound = min(bound, _by_duration(load))
        return bound
    return _by_duration(load)


def _by_duration(load: Load) -> int:
    assert load.rate is not None and load.duration is not None
    mean = load.rate * load.duration
    cv = 1.0 / np.sqrt(load.burstiness) if load.arrival == "gamma" else 1.0
    # Ten standard deviations of the arrival count: a draw never runs short of the duration.
    return int(min(_MAX_SCHEDULE, mean + 10 * cv * np.sqrt(mean + 1) + 16))


def _gaps(arrival: str, rate: float, burstiness: float, count: int, rng: np.random.Generator) -> np.ndarray:
    if arrival == "constant":
        return np.full(count, 1.0 / rate)
    if arrival == "poisson":
        return rng.exponential(1.0 / rate, count)
    if arrival == "gamma":
        # shape k = burstiness keeps the mean at 1/rate; CV = 1/sqrt(k).
        return rng.gamma(burstiness, 1.0 / (rate * burstiness), count)
    raise ValueError(f"unknown arrival process {arrival!r}")
