"""Generate the small sample traces shipped next to this script (seeded, reproducible).

    python scenarios/traces/make_samples.py

Arrivals follow a Markov-modulated Poisson process: a quiet state and a burst state with a
several-times higher rate, each held for an exponentially distributed while. That gives
the clustered arrivals of production traces (gap CV well above 1), which a plain Poisson
sample would not, so re-rating and replay tests exercise real burstiness.

- azure_sample.csv: the Azure LLM inference trace layout (TIMESTAMP with 7 fractional
  digits, ContextTokens, GeneratedTokens), lognormal lengths like the conversation trace.
- mooncake_sample.jsonl: Mooncake layout (timestamp in ms, input_length, output_length,
  hash_ids of 512-token blocks). Requests share a few system-prompt blocks, and follow-up
  turns of a session extend the previous turn's blocks, as in the Mooncake traces.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BLOCK = 512


def bursty_times(rng: np.random.Generator, count: int, quiet_rate: float, burst_rate: float,
                 quiet_s: float, burst_s: float) -> np.ndarray:
    """`count` arrival times (s, first at 0) of a two-state Markov-modulated Poisson process."""
    times: list[float] = []
    t = 0.0
    burst = False
    while len(times) < count:
        hold = rng.exponential(burst_s if burst else quiet_s)
        rate = burst_rate if burst else quiet_rate
        arrival = t + rng.exponential(1 / rate)
        while arrival < t + hold and len(times) < count:
            times.append(arrival)
            arrival += rng.exponential(1 / rate)
        t += hold
        burst = not burst
    out = np.asarray(times)
    return out - out[0]


def lognormal_tokens(rng: np.random.Generator, count: int, median: float, sigma: float,
                     low: int, high: int) -> np.ndarray:
    return np.clip(np.rint(rng.lognormal(np.log(median), sigma, count)), low, high).astype(int)


def make_azure(rng: np.random.Generator, count: int = 300) -> str:
    times = bursty_times(rng, count, quiet_rate=2.0, burst_rate=12.0, quiet_s=8.0, burst_s=2.5)
    context = lognormal_tokens(rng, count, median=900, sigma=0.9, low=8, high=8000)
    generated = lognormal_tokens(rng, count, median=180, sigma=0.8, low=1, high=1500)
    start = datetime(2023, 11, 16, 18, 15, 46, 680590)
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for t, c, g in zip(times, context, generated):
        stamp = start + timedelta(seconds=float(t))
        # The Azure files print 7 fractional digits (100 ns ticks); datetime has 6.
        rows.append(f"{stamp:%Y-%m-%d %H:%M:%S}.{stamp.microsecond:06d}{rng.integers(10)},{c},{g}")
    return "\n".join(rows) + "\n"


def make_mooncake(rng: np.random.Generator, count: int = 300) -> str:
    times = bursty_times(rng, count, quiet_rate=1.5, burst_rate=10.0, quiet_s=10.0, burst_s=3.0)
    next_id = 0

    def new_blocks(k: int) -> list[int]:
        nonlocal next_id
        ids = list(range(next_id, next_id + k))
        next_id += k
        return ids

    systems = [new_blocks(int(rng.integers(1, 3))) for _ in range(4)]  # shared system prompts
    sessions: list[list[int]] = []
    lines = []
    for t in times:
        if sessions and rng.random() < 0.45:
            # A follow-up turn: the previous turn's blocks plus the new exchange.
            index = int(rng.integers(len(sessions)))
            ids = sessions[index] + new_blocks(int(rng.integers(1, 3)))
            if len(ids) > 16:  # the session ends; keep prompts within a few thousand tokens
                sessions.pop(index)
                ids = systems[int(rng.integers(len(systems)))] + new_blocks(1)
            else:
                sessions[index] = ids
        else:
            ids = systems[int(rng.integers(len(systems)))] + new_blocks(int(rng.integers(1, 4)))
            sessions.append(ids)
        # The last block is usually partial.
        input_length = (len(ids) - 1) * BLOCK + int(rng.integers(1, BLOCK + 1))
        output_length = int(lognormal_tokens(rng, 1, median=150, sigma=0.8, low=1, high=1200)[0])
        record = {"timestamp": int(round(t * 1000)), "input_length": input_length,
                  "output_length": output_length, "hash_ids": ids}
        lines.append(json.dumps(record, separators=(", ", ": ")))
    return "\n".join(lines) + "\n"


def main() -> None:
    (HERE / "azure_sample.csv").write_text(make_azure(np.random.default_rng(20231116)))
    (HERE / "mooncake_sample.jsonl").write_text(make_mooncake(np.random.default_rng(20240701)))


if __name__ == "__main__":
    main()
