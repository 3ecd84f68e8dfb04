"""Saturation: the server takes requests more slowly than they arrive, so the queue in front
of it grows without bound and every latency measures waiting in that queue, not service.

One home for the test, used three ways:
- live, on samples of the runner's counters (`in_flight_rising`, `saturated_now`): the
  sweep cuts a stage short, `bench run` with `load.stop_on_saturation` stops sending;
- from the stored run alone (`detect_run`): the verdict said first in every summary and
  report, with the time saturation began (the timeline marks it).

The live test cannot use TTFT: a queued request has none until it leaves the queue, which
is the very delay being detected. The stored verdict adds it (TTFT must grow too).

Thresholds (documented in the README):
- SETTLE_S, WINDOW_S: in-flight ramps up from 0 at every stage start, for about one E2E;
  the trend is judged over the last WINDOW_S seconds once SETTLE_S + WINDOW_S have passed.
- MIN_RISE, RELATIVE_RISE: over one window the fitted in-flight trend rises by at least
  MIN_RISE requests and RELATIVE_RISE of its mean (Poisson arrivals make in-flight wander
  by a few requests either way; a ramp that has settled rises by much less than its mean).
- MAX_COMPLETION_SHARE: over that window, completions are at most this share of arrivals
  ("well below": a server at capacity completes about as many as arrive).
- TTFT_RISE: stored verdict only; among the requests that arrived after the onset, the
  median time to first token from the scheduled arrival of the later half exceeds the
  earlier half's by this share (a request that timed out before its first token counts as
  endless). Skipped below MIN_TTFT_SAMPLES.

"In flight" is every request that has arrived (by its schedule) and not ended, so a queue
that builds in the client under load.max_concurrency counts as well as the server's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

SETTLE_S = 3.0
WINDOW_S = 5.0
MIN_RISE = 8.0  # requests
RELATIVE_RISE = 0.75
MAX_COMPLETION_SHARE = 0.8
TTFT_RISE = 0.2
MIN_TTFT_SAMPLES = 10
ONSET_CANDIDATES = 400  # hinge times tried by the onset fit (a long run: every k-th sample)
SAMPLE_S = 0.25  # live sampling period, and the grid the stored records are sampled on
# After the early stop, in-flight requests get this long to finish; the rest are cancelled
# (and kept, as cancelled records). Shared with the sweep's saturated stages.
DRAIN_TIMEOUT_S = 30.0

# (t seconds from t0, in flight, sent so far, completed ok so far): the runner's Progress
# as (now, in_flight, sent, done - errors)
Sample = tuple[float, int, int, int]


def in_flight_rising(samples: list[Sample], start: float) -> bool:
    """The in-flight trend over the last WINDOW_S rises by more than noise would, once the
    stage (which began at `start`, seconds from t0) has settled. `samples` in time order."""
    now = samples[-1][0]
    if now - start < SETTLE_S + WINDOW_S:
        return False
    window = [s for s in samples if s[0] >= now - WINDOW_S]
    if len(window) < 3:
        return False
    t = np.array([s[0] for s in window])
    n = np.array([s[1] for s in window], dtype=float)
    slope = float(np.polyfit(t - t[0], n, 1)[0])
    return slope * WINDOW_S >= max(MIN_RISE, RELATIVE_RISE * float(n.mean()))


def completions_short(samples: list[Sample]) -> bool:
    """Over the last WINDOW_S, completions (requests that ended ok: a timed-out request
    leaves the queue without being served) are at most MAX_COMPLETION_SHARE of arrivals."""
    now = samples[-1][0]
    window = [s for s in samples if s[0] >= now - WINDOW_S]
    sent = window[-1][2] - window[0][2]
    done = window[-1][3] - window[0][3]
    return sent > 0 and done <= MAX_COMPLETION_SHARE * sent


def saturated_now(samples: list[Sample], start: float) -> bool:
    """The live test: in-flight rising and completions well below arrivals."""
    return in_flight_rising(samples, start) and completions_short(samples)


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
    start_s). Closed-loop stages cannot saturate this way: their in-flight is capped."""
    if requests.empty or not {"stage", "sent_s", "end_s"} <= set(requests.columns):
        return []
    notes = {int(n["index"]): n for n in stages if isinstance(n, dict) and "index" in n}
    verdicts = []
    for index, frame in requests.groupby("stage", sort=True):
        note = notes.get(int(index), {})
        if note.get("kind", "open") != "open":
            continue
        start = float(note.get("start_s", frame["sent_s"].min()))
        verdict = detect_stage(frame, start)
        if verdict is not None:
            verdicts.append(Verdict(int(index) if len(notes) > 1 else None, verdict.start_s, verdict.end_s,
                                    verdict.arrivals_per_s, verdict.completions_per_s, verdict.detected_s))
    return verdicts


def detect_stage(frame: pd.DataFrame, start: float) -> Verdict | None:
    """The stored verdict for one open-loop stage's requests (see `detect_run`).

    Arrivals are the scheduled times: under load.max_concurrency the queue builds in the
    client (sends wait for a slot), and the backlog counts it all the same."""
    arrived = np.sort(_arrival_times(frame))
    ended = np.sort(frame["end_s"].to_numpy(dtype=float))
    if len(arrived) < 2:
        return None
    last = float(arrived[-1])
    ok = frame["status"].to_numpy() == "ok" if "status" in frame else np.ones(len(frame), bool)
    end_ok = np.sort(frame["end_s"].to_numpy(dtype=float)[ok])
    samples = series(arrived, ended, end_ok, start, last)
    k = int(WINDOW_S / SAMPLE_S) + 2  # the tests read the last window only
    detected = next((samples[i][0] for i in range(len(samples))
                     if saturated_now(samples[max(0, i - k): i + 1], start)), None)
    if detected is None:
        return None
    onset = onset_time(samples, start)
    if not ttft_growing(frame, onset):
        return None
    span = max(last - onset, SAMPLE_S)
    arrivals = int(((arrived >= onset) & (arrived <= last)).sum())
    completions = int(((end_ok >= onset) & (end_ok <= last)).sum())
    return Verdict(None, onset, last, arrivals / span, completions / span, detected)


def _arrival_times(frame: pd.DataFrame) -> np.ndarray:
    sent = frame["sent_s"].to_numpy(dtype=float)
    if "scheduled_s" not in frame:
        return sent
    scheduled = frame["scheduled_s"].to_numpy(dtype=float)
    return np.where(np.isnan(scheduled), sent, scheduled)


def series(sent: np.ndarray, ended: np.ndarray, ended_ok: np.ndarray, start: float, stop: float) -> list[Sample]:
    """The live samples as a sampler would have read them, every SAMPLE_S from `start` to
    `stop`, rebuilt from sorted arrival times, end times (all) and end times of ok
    requests (seconds from t0); "in flight" is every request arrived and not ended."""
    grid = np.arange(start, stop + SAMPLE_S / 2, SAMPLE_S)
    n_sent = np.searchsorted(sent, grid, side="right")
    n_ended = np.searchsorted(ended, grid, side="right")
    n_ok = np.searchsorted(ended_ok, grid, side="right")
    return [(float(t), int(s - e), int(s), int(k)) for t, s, e, k in zip(grid, n_sent, n_ended, n_ok, strict=True)]


def onset_time(samples: list[Sample], start: float) -> float:
    """When unbounded growth began: the hinge of the best two-piece fit of in-flight over
    time (flat, then rising linearly), least squares over every sample point."""
    t = np.array([s[0] for s in samples])
    y = np.array([s[1] for s in samples], dtype=float)
    best, best_sse = start, np.inf
    step = max(1, len(t) // ONSET_CANDIDATES)
    for tau in t[:-2:step]:
        x = np.maximum(0.0, t - tau)
        design = np.column_stack([np.ones_like(x), x])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        sse = float(((design @ coef - y) ** 2).sum())
        if coef[1] > 0 and sse < best_sse:
            best, best_sse = float(tau), sse
    return best


def ttft_growing(frame: pd.DataFrame, onset: float) -> bool:
    """Time to first token counted from the scheduled arrival (TTFT plus schedule lag, so
    that a client-side queue counts too) grows among the requests that arrived after
    `onset`: the later half's median exceeds the earlier half's by TTFT_RISE. A request
    that timed out before its first token counts as endless; other failures are left out.
    True below MIN_TTFT_SAMPLES (no evidence against)."""
    frame = frame.assign(_arrived=_arrival_times(frame))
    after = frame[frame["_arrived"] >= onset].sort_values("_arrived")
    if "first_token_s" in after:
        wait = (after["first_token_s"] - after["_arrived"]).to_numpy(dtype=float)
    else:
        wait = np.full(len(after), np.nan)
    if "error_kind" in after:
        timed_out = after["error_kind"].isin(("ttft_timeout", "total_timeout")).to_numpy() & np.isnan(wait)
        wait = np.where(timed_out, np.inf, wait)
    wait = wait[~np.isnan(wait)]
    if len(wait) < MIN_TTFT_SAMPLES:
        return True
    half = len(wait) // 2
    early, late = float(np.median(wait[:half])), float(np.median(wait[half:]))
    return late > early * (1.0 + TTFT_RISE)


def stored_verdicts(summary: dict[str, Any], requests: pd.DataFrame,
                    stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """summary.json `saturation` (`Verdict.as_dict` entries); computed from the requests for
    runs stored before it was recorded there."""
    verdicts = summary.get("saturation")
    if verdicts is None:
        verdicts = [v.as_dict() for v in detect_run(requests, stages)]
    return list(verdicts)
