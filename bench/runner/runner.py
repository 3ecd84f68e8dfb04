"""Runner: sends the workload on its schedule and records every request, ok or not.

Open loop: sends at precomputed absolute offsets from t0; at most `max_concurrency`
requests are in flight (the scenario's, or a cap from the machine's limits), so a schedule
far ahead of the server bends instead of filling memory: a late send is recorded with its
lag, and one later than load.max_send_lag_s is not sent at all, counted in `not_sent`. Closed loop: N slots, each sending its next request as soon as
its previous one ends. Every request ends as exactly one RequestRecord handed to the sink,
including failed and cancelled ones.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from typing import Any

from aiolimiter import AsyncLimiter

from bench.records import OUTPUT_KIND_CODES, Progress
from bench.runner.attempt import Attempt, SendLead
from bench.runner.recorder import StreamRecorder
from bench.runner.sender import RecordSink, RequestSource
from bench.runner.streamapi import StreamOpener, sleep_until
from bench.workload.plan import RunPlan, StagePlan
from bench.workload.requests import RequestSpec

__all__ = ["OVERLOAD_DRAIN_S", "Progress", "RecordSink", "RequestSource", "Runner"]

OVERLOAD_DRAIN_S = 30.0


class Runner:
    """One process's sender (a `StageSender`): sends through `client`, records into `sink`.

    Request ids are id_start, id_start + id_step, ... (worker k of K: k, k+K, ...).
    """

    def __init__(self, plan: RunPlan, source: RequestSource, client: StreamOpener,
                 sink: RecordSink, t0: float, progress: Progress | None = None,
                 id_start: int = 0, id_step: int = 1) -> None:
        self._plan = plan
        self._source = source
        self._client = client
        self._sink = sink
        self._t0 = t0
        self.progress = progress or Progress()
        self._next_id = id_start  # worker k of K numbers its requests k, k+K, k+2K, ...
        self._id_step = id_step
        self._tasks: set[asyncio.Task[None]] = set()
        self._launched = 0  # counted when a request is created, before it first runs
        self._stage_launched = 0
        self._stage: StagePlan = StagePlan(0)
        self._limiter = AsyncLimiter(plan.send_rate_limit, 1) if plan.send_rate_limit else None
        self._slots = asyncio.Semaphore(plan.max_concurrency) if plan.max_concurrency else None
        self._lead = SendLead()

    @property
    def t0(self) -> float:
        return self._t0

    async def run(self, stages: list[StagePlan], stop: asyncio.Event) -> str:
        """Send every stage back to back, then wait for in-flight requests (for the drain
        time, see `drain_timeout_s`; those left are then cancelled, and recorded so)."""
        for stage in stages:
            if not await self.send(stage, stop):
                await self.cancel_in_flight()
                return "interrupted"
        if not await self.drain(stop, self.drain_timeout_s()):
            self.progress.drain_cancelled += len(self._tasks)
            await self.cancel_in_flight()
            if stop.is_set():
                return "interrupted"
        return "completed"

    def drain_timeout_s(self) -> float | None:
        """load.drain_s; unset, OVERLOAD_DRAIN_S once requests were not sent (the server is
        far behind the schedule: waiting out every queued request could take hours), else
        None (each request's own timeouts)."""
        if self._plan.drain_s is not None:
            return self._plan.drain_s
        return OVERLOAD_DRAIN_S if self.progress.not_sent else None

    async def send(self, stage: StagePlan, stop: asyncio.Event) -> bool:
        """Send one stage; False when `stop` was set first (in-flight requests go on)."""
        self._stage = stage
        self._stage_launched = 0
        self.progress.stage = stage.index
        if stage.offsets is not None:
            self.progress.planned = (self.progress.planned or 0) + len(stage.offsets)
            sender = asyncio.ensure_future(self._open_loop(stage))
        else:
            sender = asyncio.ensure_future(self._closed_loop(stage))
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({sender, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            return False
        stopper.cancel()
        sender.result()  # a bug in the sender must surface, not vanish
        return True

    async def drain(self, stop: asyncio.Event, timeout_s: float | None = None) -> bool:
        """Wait for in-flight requests; False when `stop` was set or the timeout passed."""
        deadline = None if timeout_s is None else time.perf_counter() + timeout_s
        while self._tasks:
            waiter = asyncio.ensure_future(stop.wait())
            wait_s = None if deadline is None else max(0.0, deadline - time.perf_counter())
            await asyncio.wait({*self._tasks, waiter}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if stop.is_set() or (deadline is not None and time.perf_counter() >= deadline):
                return not self._tasks
        return True

    async def cancel_in_flight(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- senders ---------------------------------------------------------------------------

    async def _open_loop(self, stage: StagePlan) -> None:
        assert stage.offsets is not None
        items = stage.items.tolist() if stage.items is not None else None
        offsets = stage.offsets.tolist()
        slots = self._slots
        i = 0
        while i < len(offsets) and self._may_send(stage):
            offset = offsets[i]
            # Submit early by the client's own build-and-write time, so the request is on
            # the wire at its scheduled time rather than a millisecond or two after it; the
            # client holds it, connection in hand, until that time (never early).
            await sleep_until(self._t0 + offset - self._lead.seconds)
            if slots is not None:
                await slots.acquire()
            if self._limiter is not None:
                await self._limiter.acquire()
            late_from = self._too_late_from(offsets, i)
            if late_from > i:  # every slot was busy past the bound: these are never sent
                self.progress.not_sent += late_from - i
                i = late_from
                if slots is not None:
                    slots.release()
                continue
            spec = self._source.next_spec(items[i] if items is not None else None)
            task = self._launch(spec, offset)
            if slots is not None:
                task.add_done_callback(lambda _t: slots.release())
            i += 1

    def _too_late_from(self, offsets: list[float], i: int) -> int:
        """The first index from `i` on still within load.max_send_lag_s of its scheduled
        time (offsets are sorted): those before it are too late to send."""
        bound = self._plan.max_send_lag_s
        if bound is None:
            return i
        return bisect.bisect_left(offsets, time.perf_counter() - self._t0 - bound, lo=i)

    def _launch(self, spec: RequestSpec, scheduled_s: float) -> asyncio.Task[None]:
        self._launched += 1
        self._stage_launched += 1
        task = asyncio.create_task(self._conversation(spec, scheduled_s, self._stage))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _closed_loop(self, stage: StagePlan) -> None:
        assert stage.concurrency is not None
        await sleep_until(self._t0 + stage.start_s)
        workers = [asyncio.create_task(self._slot(stage)) for _ in range(stage.concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()

    async def _slot(self, stage: StagePlan) -> None:
        first = True
        while self._may_send(stage):
            if not first and stage.think_time_s > 0:
                await asyncio.sleep(stage.think_time_s)
                if not self._may_send(stage):
                    return
            first = False
            if self._limiter is not None:
                await self._limiter.acquire()
            scheduled = time.perf_counter() - self._t0
            await asyncio.shield(self._launch(self._source.next_spec(None), scheduled))

    def _may_send(self, stage: StagePlan) -> bool:
        plan = self._plan
        if plan.max_requests is not None and self._launched >= plan.max_requests:
            return False
        if stage.max_requests is not None and self._stage_launched >= stage.max_requests:
            return False
        if stage.end_s is not None and time.perf_counter() - self._t0 >= stage.end_s:
            return False
        return True

    async def _conversation(self, spec: RequestSpec, scheduled_s: float, stage: StagePlan) -> None:
        """One request, then its follow-up turns (multi-turn workloads) in the same task."""
        while True:
            reply = await self._request(spec, scheduled_s, stage.index)
            if reply is None:
                return
            nxt = self._source.follow_up(spec, *reply)
            if nxt is None:
                return
            spec, think_s = nxt
            scheduled_s = time.perf_counter() - self._t0 + think_s
            await sleep_until(self._t0 + scheduled_s)
            if not self._may_send(stage):
                return
            self._launched += 1
            self._stage_launched += 1

    # -- one request -----------------------------------------------------------------------

    async def _request(self, spec: RequestSpec, scheduled_s: float,
                       stage: int) -> tuple[str, tuple[dict[str, Any], ...]] | None:
        """Send one request and record it; the reply (text, tool calls) when the turn has a follow-up."""
        request_id = self._next_id
        self._next_id += self._id_step
        progress = self.progress
        progress.sent += 1
        progress.in_flight += 1
        progress.peak_in_flight = max(progress.peak_in_flight, progress.in_flight)
        attempt = Attempt(self._t0, self._plan.timeouts, keep_text=self._source.keep_text, lead=self._lead,
                           n=spec.n, endpoint=self._plan.endpoint, inputs=spec.inputs,
                           keep_output=self._plan.keep_output)
        try:
            await attempt.run(self._client, self._plan.path, spec.body, not_before=self._t0 + scheduled_s)
        except asyncio.CancelledError:
            attempt.cancelled()
            self._finish(attempt, request_id, spec, scheduled_s, stage)
            raise
        self._finish(attempt, request_id, spec, scheduled_s, stage)
        if attempt.error_kind is not None or not self._source.keep_text:
            return None
        recorder = attempt.recorder
        return recorder.text(), recorder.tool_calls() if isinstance(recorder, StreamRecorder) else ()

    def _finish(self, attempt: Attempt, request_id: int, spec: RequestSpec, scheduled_s: float,
                stage: int) -> None:
        plan = self._plan
        progress = self.progress
        progress.in_flight -= 1
        progress.done += 1
        progress.output_chunks += sum(map(OUTPUT_KIND_CODES.__contains__, attempt.recorder.chunks.kind))
        if attempt.error_kind is not None:
            progress.errors += 1
            progress.error_kinds[attempt.error_kind] = progress.error_kinds.get(attempt.error_kind, 0) + 1
        warm = request_id < plan.warmup_requests or (plan.warmup_s > 0 and scheduled_s < plan.warmup_s)
        self._sink.write(attempt.record(
            request_id=request_id, stage=stage, phase="warmup" if warm else "measure",
            spec=spec, scheduled_s=scheduled_s,
        ))


