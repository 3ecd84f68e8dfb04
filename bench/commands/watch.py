"""The early stop (load.stop_on_saturation): watch a running session and stop sending once
the server is saturated."""

from __future__ import annotations

import asyncio
from typing import Protocol

import numpy as np

from bench.analysis import saturation
from bench.commands.rundir import GuardedSink
from bench.records import OUTPUT_KIND_CODES, Progress, RequestRecord
from bench.runner.sender import StageSender
from bench.workload.plan import StagePlan

__all__ = ["WAITS_PRUNE_AT", "SaturationWatch", "WatchedSession", "run_watched"]


class WatchedSession(Protocol):
    """What the watch reads and sets on a running session (`bench.commands.run.RunSession`)."""

    stop: asyncio.Event
    progress: Progress
    sink: GuardedSink
    end_reason: str | None
    stopped: tuple[int, float | None] | None

    @property
    def stage_runner(self) -> StageSender: ...

    def now_s(self) -> float: ...


async def run_watched(session: WatchedSession, stages: list[StagePlan]) -> str:
    """`Runner.run` with the early stop (load.stop_on_saturation): send the stages while a
    watcher samples the runner's counters; once `saturation.saturated_now` holds, stop
    sending, drain for saturation.DRAIN_TIMEOUT_S (cancelling what is left, every record
    kept) and end "saturated". Returns completed | saturated | interrupted."""
    runner = session.stage_runner
    halt = asyncio.Event()
    watch = SaturationWatch(session, stages, halt)
    watcher = asyncio.ensure_future(watch.run())
    try:
        for stage in stages:
            if not await runner.send(stage, halt):
                break
        if session.stop.is_set():
            await runner.cancel_in_flight()
            return "interrupted"
        saturated = watch.reason is not None
        if not await runner.drain(session.stop, saturation.DRAIN_TIMEOUT_S if saturated else None):
            await runner.cancel_in_flight()
        if session.stop.is_set():
            return "interrupted"
        if saturated:
            session.end_reason = watch.reason
            session.stopped = (watch.stage, watch.stopped_s)
            return "saturated"
        return "completed"
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


WAITS_PRUNE_AT = 16_384  # finished-request waits held by the watch before old ones are dropped


class SaturationWatch:
    """Samples `session.progress` every saturation.SAMPLE_S during the open-loop stages and
    reads the finished records' waits for a first token (`saturation.saturated_now`); sets
    `halt` on the user's stop or on saturation (then `reason` says why). Arrivals are the
    stage's schedule, so requests waiting for a load.max_concurrency slot count as queued."""

    def __init__(self, session: WatchedSession, stages: list[StagePlan], halt: asyncio.Event) -> None:
        self.session = session
        self.stages = {s.index: s for s in stages if s.offsets is not None}
        self.halt = halt
        self.reason: str | None = None
        self.stopped_s: float | None = None  # when the watch fired (seconds from t0)
        self.waits: list[saturation.Wait] = []
        self.stage = -1
        session.sink.observers.append(self._observe)

    def _observe(self, record: RequestRecord) -> None:
        if record.stage != self.stage:
            return
        chunks = record.chunks  # in arrival order: the first output chunk is the first token
        first = next((t for t, kind in zip(chunks.t, chunks.kind, strict=True) if kind in OUTPUT_KIND_CODES), None)
        wait = saturation.record_wait(record.scheduled_s, first, record.error_kind)
        if wait is not None:
            self.waits.append(wait)

    async def run(self) -> None:
        session = self.session
        progress = session.progress
        samples: list[saturation.ProgressSample] = []
        sent_before = 0
        keep = int((saturation.SETTLE_S + saturation.WINDOW_S) / saturation.SAMPLE_S) + 4
        try:
            while not session.stop.is_set():
                now = session.now_s()
                if progress.stage != self.stage:
                    self.stage, sent_before, samples, self.waits = progress.stage, progress.sent, [], []
                plan = self.stages.get(self.stage)
                if plan is not None and now > plan.start_s:
                    assert plan.offsets is not None
                    arrived = int(np.searchsorted(plan.offsets, now, side="right"))
                    waiting = max(0, arrived - (progress.sent - sent_before))  # for a concurrency slot
                    samples.append((now, progress.in_flight + waiting, arrived, progress.done - progress.errors))
                    del samples[:-keep]
                    if len(self.waits) > WAITS_PRUNE_AT:  # keep memory bounded on long stages
                        self.waits = [w for w in self.waits if w[0] >= now - saturation.WAIT_LOOKBACK_S]
                    if saturation.saturated_now(samples, plan.start_s, self.waits):
                        self.stopped_s = now
                        self.reason = self._why(samples, self.stage)
                        break
                await asyncio.sleep(saturation.SAMPLE_S)
        finally:
            session.sink.observers.remove(self._observe)
            self.halt.set()

    def _why(self, samples: list[saturation.ProgressSample], stage: int) -> str:
        window = [s for s in samples if s[0] >= samples[-1][0] - saturation.WINDOW_S]
        span = window[-1][0] - window[0][0]
        sent, done = window[-1][2] - window[0][2], window[-1][3] - window[0][3]
        where = f"stage {stage}, " if len(self.stages) > 1 else ""
        return (f"load.stop_on_saturation: stopped sending at t={samples[-1][0]:.1f}s ({where}in flight "
                f"{window[0][1]} -> {window[-1][1]}; arrivals {sent / span:.2f}/s, completions "
                f"{done / span:.2f}/s over the last {span:.1f} s)")
