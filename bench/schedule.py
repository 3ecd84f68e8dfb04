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
    count = _count(load)
    rng = np.random.default_rng([seed, 0x5C4ED])
    gaps = _gaps(load.arrival, load.rate, load.burstiness, count, rng)
    offsets = np.cumsum(gaps) - gaps[0]  # the first request goes at t=0
    if count > 1 and offsets[-1] > 0:
        # Rescale so the realised mean rate is exactly the offered one; a random draw of a
        # few hundred arrivals would otherwise miss it by several percent. The burst shape
        # (relative gaps, CV) is kept.
        offsets *= (count - 1) / (load.rate * offsets[-1])
    return offsets


def _count(load: Load) -> int:
    assert load.rate is not None
    bounds = []
    if load.max_requests is not None:
        bounds.append(load.max_requests)
    if load.duration is not None:
        bounds.append(max(1, int(np.ceil(load.rate * load.duration - 1e-9))))
    return int(min(min(bounds), _MAX_SCHEDULE))


def _gaps(arrival: str, rate: float, burstiness: float, count: int, rng: np.random.Generator) -> np.ndarray:
    if arrival == "constant":
        return np.full(count, 1.0 / rate)
    if arrival == "poisson":
        return rng.exponential(1.0 / rate, count)
    if arrival == "gamma":
        # shape k = burstiness keeps the mean at 1/rate; CV = 1/sqrt(k).
        return rng.gamma(burstiness, 1.0 / (rate * burstiness), count)
    raise ValueError(f"unknown arrival process {arrival!r}")
