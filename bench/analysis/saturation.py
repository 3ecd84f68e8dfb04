"""Saturation: the server takes requests more slowly than they arrive, so the queue in front
of it grows without bound and every latency measures waiting in that queue, not service.

One home for the test, used three ways:
- live, during a run (bench.commands.run.SaturationWatch): `bench run` with
  `load.stop_on_saturation` stops sending, and `bench sweep` cuts a stage short, once
  `saturated_now` holds on samples of the runner's counters and the finished records;
- from the stored run alone (`detect_run`): the same test replayed on the records, then
  the onset found by a two-piece fit; the verdict is said first in every summary and
  report, and the timeline marks the onset.

The test, over the last WINDOW_S seconds of an open-loop stage, once SETTLE_S + WINDOW_S
have passed since it began (in-flight ramps up from 0 at every stage start):
1. the backlog rises: the least-squares trend of requests arrived and not ended rises by at
   least MIN_RISE requests and by at least (1 - MAX_COMPLETION_SHARE) of the arrivals in
   the window (Poisson arrivals make it wander by a few requests either way);
2. completions (requests that ended ok) are at most MAX_COMPLETION_SHARE of the arrivals
   in the window ("well below": a server at capacity completes about as many as arrive);
3. the wait for the first token grows: among the finished requests of the stage, in order
   of arrival, the later half's median time from scheduled arrival to first token exceeds
   the earlier half's by TTFT_RISE (a request that timed out before its first token counts
   as endless), from at least MIN_TTFT_SAMPLES requests that arrived in the last
   WAIT_LOOKBACK_S. This tells a queue from a long
   ramp-up (answers of many seconds fill the server without anyone waiting).

Arrivals are the schedule, so a queue that builds in the client under load.max_concurrency
counts as well as the server's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

__all__ = [
    "DRAIN_TIMEOUT_S",
    "MAX_COMPLETION_SHARE",
    "MIN_RISE",
    "MIN_TTFT_SAMPLES",
    "ONSET_CANDIDATES",
    "SAMPLE_S",
    "SETTLE_S",
    "TIMEOUT_KINDS",
    "TTFT_RISE",
    "WAIT_LOOKBACK_S",
    "WINDOW_S",
    "ProgressSample",
    "Verdict",
    "Wait",
    "backlog_rising",
    "completions_short",
    "detect_run",
    "detect_stage",
    "onset_time",
    "record_wait",
    "saturated_now",
    "series",
    "stored_verdicts",
    "waits_growing",
]

if TYPE_CHECKING:
    from bench.analysis.summary_model import Summary

SETTLE_S = 3.0
WINDOW_S = 5.0
MIN_RISE = 8.0  # requests
MAX_COMPLETION_SHARE = 0.8
TTFT_RISE = 0.2
MIN_TTFT_SAMPLES = 10
WAIT_LOOKBACK_S = 20.0  # test 3 reads the requests that arrived this recently (a late onset)
ONSET_CANDIDATES = 400  # hinge times tried by the onset fit (a long run: every k-th sample)
SAMPLE_S = 0.25  # live sampling period, and the grid the stored records are sampled on
# After the early stop, in-flight requests get this long to finish; the rest are cancelled
# (and kept, as cancelled records). Shared with the sweep's saturated stages.
DRAIN_TIMEOUT_S = 30.0
TIMEOUT_KINDS = ("ttft_timeout", "total_timeout")

# (t seconds from t0, in flight, arrived so far, completed ok so far); live: the runner's
# Progress as (now, in_flight + waiting for a slot, arrived by the schedule, done - errors)
ProgressSample = tuple[float, int, int, int]
# (scheduled arrival, seconds from it to the first token; inf: timed out before one)
Wait = tuple[float, float]


def backlog_rising(samples: list[ProgressSample], start: float) -> bool:
    """Test 1 (module docstring)."""
    window = _window(samples, start)
    if window is None:
        return False
    rise, _ = _rise(window)
    arrived = window[-1][2] - window[0][2]
    return rise >= max(MIN_RISE, (1.0 - MAX_COMPLETION_SHARE) * arrived)


def completions_short(samples: list[ProgressSample]) -> bool:
    """Test 2: over the last WINDOW_S, completions (requests that ended ok: a request
    that timed out left the queue unserved) are at most MAX_COMPLETION_SHARE of arrivals."""
    now = samples[-1][0]
    window = [s for s in samples if s[0] >= now - WINDOW_S]
    arrived = window[-1][2] - window[0][2]
    done = window[-1][3] - window[0][3]
    return arrived > 0 and done <= MAX_COMPLETION_SHARE * arrived


def waits_growing(waits: list[Wait], now: float) -> bool:
    """Test 3: `waits` of finished requests (any order), those that arrived in the last
    WAIT_LOOKBACK_S before `now`; False below MIN_TTFT_SAMPLES."""
    pairs = np.array(waits, dtype=float).reshape(-1, 2)
    return _growing(pairs[:, 0], pairs[:, 1], now)


def _growing(arrivals: np.ndarray, waits: np.ndarray, now: float) -> bool:
    recent = arrivals >= now - WAIT_LOOKBACK_S
    if int(recent.sum()) < MIN_TTFT_SAMPLES:
        return False
    ordered = waits[recent][np.argsort(arrivals[recent], kind="stable")]
    half = len(ordered) // 2
    early, late = float(np.median(ordered[:half])), float(np.median(ordered[half:]))
    return late > early * (1.0 + TTFT_RISE)


def saturated_now(samples: list[ProgressSample], start: float, waits: list[Wait]) -> bool:
    """The test (module docstring) at the time of the last sample."""
    return backlog_rising(samples, start) and completions_short(samples) and waits_growing(waits, samples[-1][0])


def record_wait(scheduled_s: float, first_token_s: float | None, error_kind: str | None) -> Wait | None:
    """One finished request's Wait, or None when it tells nothing about queueing (it
    failed some other way)."""
    if first_token_s is not None and np.isfinite(first_token_s):
        return (scheduled_s, first_token_s - scheduled_s)
    if error_kind in TIMEOUT_KINDS:
        return (scheduled_s, float("inf"))
    return None


def _window(samples: list[ProgressSample], start: float) -> list[ProgressSample] | None:
    now = samples[-1][0]
    if now - start < SETTLE_S + WINDOW_S - 1e-6:  # (sample times are sums of floats)
        return None
    window = [s for s in samples if s[0] >= now - WINDOW_S]
    return window if len(window) >= 3 else None


def _rise(window: list[ProgressSample]) -> tuple[float, np.ndarray]:
    t = np.array([s[0] for s in window])
    n = np.array([s[1] for s in window], dtype=float)
    return float(np.polyfit(t - t[0], n, 1)[0]) * WINDOW_S, n


@dataclass(frozen=True)
class Verdict:
    """Saturation of one open-loop stage (`stage` None: a single-stage run). Times in
    seconds from t0; rates per second over [start_s, end_s] (end: the stage's last send)."""

    stage: int | None
    start_s: float
    end_s: float
    arrivals_per_s: float
    completions_per_s: float
    detected_s: float  # when the live test would have fired

    def message(self) -> str:
        where = f"stage {self.stage}: " if self.stage is not None else ""
        return (f"{where}server saturated from t={self.start_s:.1f}s: arrivals {self.arrivals_per_s:.2f}/s, "
                f"completions {self.completions_per_s:.2f}/s; latencies measure queueing")

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3),
                "arrivals_per_s": self.arrivals_per_s, "completions_per_s": self.completions_per_s,
                "detected_s": round(self.detected_s, 3), "message": self.message()}


def detect_run(requests: pd.DataFrame, stages: list[dict[str, Any]]) -> list[Verdict]:
    """Verdicts for every open-loop stage of a stored run that saturated, in stage order.

    `requests`: the per-request frame (columns stage, scheduled_s, sent_s, end_s, status,
    first_token_s, error_kind); `stages`: the manifest's stage notes (kind, index,
    start_s; stopped_s when the live watch stopped the stage). Closed-loop stages cannot saturate this way: their in-flight is capped."""
    if requests.empty or not {"stage", "sent_s", "end_s"} <= set(requests.columns):
        return []
    notes = {int(n["index"]): n for n in stages if isinstance(n, dict) and "index" in n}
    verdicts = []
    for key, frame in requests.groupby("stage", sort=True):
        index = int(cast(int, key))
        note = notes.get(index, {})
        if note.get("kind", "open") != "open":
            continue
        start = float(note.get("start_s", frame["sent_s"].min()))
        verdict = detect_stage(frame, start, note.get("stopped_s"))
        if verdict is not None:
            verdicts.append(Verdict(index if len(notes) > 1 else None, verdict.start_s, verdict.end_s,
                                    verdict.arrivals_per_s, verdict.completions_per_s, verdict.detected_s))
    return verdicts


def detect_stage(frame: pd.DataFrame, start: float, stopped_s: float | None = None) -> Verdict | None:
    """The stored verdict for one open-loop stage's requests (see `detect_run`): the live
    test replayed every SAMPLE_S on what had ended by then, and the onset of the growth.
    `stopped_s`: when the live watch stopped the sending (the stage note's `stopped_s`), so
    that the replay reaches the moment the watch fired even when nothing arrived since."""
    arrived = np.sort(_arrival_times(frame))
    ended = np.sort(frame["end_s"].to_numpy(dtype=float))
    if len(arrived) < 2:
        return None
    last = max(float(arrived[-1]), float(stopped_s or 0.0))
    ok = frame["status"].to_numpy() == "ok" if "status" in frame else np.ones(len(frame), bool)
    end_ok = np.sort(frame["end_s"].to_numpy(dtype=float)[ok])
    samples = series(arrived, ended, end_ok, start, last)
    wait_end, wait_arrival, wait = _waits(frame)  # by end time
    k = int(WINDOW_S / SAMPLE_S) + 2  # the counter tests read the last window only
    detected = None
    for i, sample in enumerate(samples):
        recent = samples[max(0, i - k): i + 1]
        if backlog_rising(recent, start) and completions_short(recent):
            n = int(np.searchsorted(wait_end, sample[0], side="right"))  # finished by then
            if _growing(wait_arrival[:n], wait[:n], sample[0]):
                detected = sample[0]
                break
    if detected is None:
        return None
    onset = onset_time(samples, start)
    span = max(last - onset, SAMPLE_S)
    arrivals = int(((arrived >= onset) & (arrived <= last)).sum())
    completions = int(((end_ok >= onset) & (end_ok <= last)).sum())
    return Verdict(None, onset, last, arrivals / span, completions / span, detected)


def _waits(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(end, arrival, wait) of every request with a `record_wait`, sorted by end."""
    arrived = _arrival_times(frame)
    first = frame["first_token_s"].to_numpy(dtype=float) if "first_token_s" in frame else np.full(len(frame), np.nan)
    timed_out = frame["error_kind"].isin(TIMEOUT_KINDS).to_numpy(dtype=bool) if "error_kind" in frame \
        else np.zeros(len(frame), bool)
    wait = np.where(np.isfinite(first), first - arrived, np.where(timed_out, np.inf, np.nan))
    keep = ~np.isnan(wait)
    end = frame["end_s"].to_numpy(dtype=float)[keep]
    order = np.argsort(end, kind="stable")
    return end[order], arrived[keep][order], wait[keep][order]


def _arrival_times(frame: pd.DataFrame) -> np.ndarray:
    sent = frame["sent_s"].to_numpy(dtype=float)
    if "scheduled_s" not in frame:
        return sent
    scheduled = frame["scheduled_s"].to_numpy(dtype=float)
    return np.where(np.isnan(scheduled), sent, scheduled)


def series(sent: np.ndarray, ended: np.ndarray, ended_ok: np.ndarray, start: float, stop: float) -> list[ProgressSample]:
    """The live samples as a sampler would have read them, every SAMPLE_S from `start` to
    `stop`, rebuilt from sorted arrival times, end times (all) and end times of ok
    requests (seconds from t0); "in flight" is every request arrived and not ended."""
    grid = start + SAMPLE_S * np.arange(int(np.floor((stop - start) / SAMPLE_S + 1e-9)) + 1)
    if grid[-1] < stop:
        grid = np.append(grid, stop)
    n_sent = np.searchsorted(sent, grid, side="right")
    n_ended = np.searchsorted(ended, grid, side="right")
    n_ok = np.searchsorted(ended_ok, grid, side="right")
    return [(float(t), int(s - e), int(s), int(k)) for t, s, e, k in zip(grid, n_sent, n_ended, n_ok, strict=True)]


def onset_time(samples: list[ProgressSample], start: float) -> float:
    """When unbounded growth began: the hinge of the best two-piece fit of in-flight over
    time (flat, then rising linearly), least squares over every sample point. Hinges are
    tried at ONSET_CANDIDATES points, then at every sample around the best of them."""
    t = np.array([s[0] for s in samples])
    y = np.array([s[1] for s in samples], dtype=float)
    if len(t) < 3:
        return start
    step = max(1, len(t) // ONSET_CANDIDATES)
    coarse = _best_hinge(t, y, range(0, len(t) - 2, step))
    if coarse is None:
        return start
    fine = _best_hinge(t, y, range(max(0, coarse - step), min(len(t) - 2, coarse + step + 1)))
    return float(t[fine if fine is not None else coarse])


def _best_hinge(t: np.ndarray, y: np.ndarray, candidates: range) -> int | None:
    best, best_sse = None, np.inf
    for i in candidates:
        x = np.maximum(0.0, t - t[i])
        design = np.column_stack([np.ones_like(x), x])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        sse = float(((design @ coef - y) ** 2).sum())
        if coef[1] > 0 and sse < best_sse:
            best, best_sse = i, sse
    return best


def stored_verdicts(summary: Summary, requests: pd.DataFrame,
                    stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """summary.json `saturation` (`Verdict.as_dict` entries); computed from the requests for
    runs stored before it was recorded there."""
    verdicts = summary.saturation
    if verdicts is None:
        verdicts = [v.as_dict() for v in detect_run(requests, stages)]
    return list(verdicts)
