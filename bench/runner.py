"""Runner: sends the workload on its schedule and records every request, ok or not.

Open loop: sends at precomputed absolute offsets from t0 (late sends are recorded with
their lag, never dropped). Closed loop: N slots, each sending its next request as soon as
its previous one ends. Every request ends as exactly one RequestRecord handed to the sink,
including failed and cancelled ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from aiolimiter import AsyncLimiter

from bench.client import ClientError, StreamClient, StreamResponse
from bench.records import RequestRecord
from bench.recorder import StreamProtocolError, StreamRecorder
from bench.scenario import Timeouts
from bench.workload import RequestSpec

_SPIN_S = 0.0015  # sleep until this close to a send time, then yield: asyncio rounds timers to 1 ms


class RecordSink(Protocol):
    def write(self, record: RequestRecord) -> None: ...


@dataclass(frozen=True, slots=True)
class RunPlan:
    path: str  # "/chat/completions" or "/completions"
    timeouts: Timeouts
    offsets: np.ndarray | None = None  # open loop: absolute send offsets (s)
    concurrency: int | None = None  # closed loop
    max_concurrency: int | None = None
    send_rate_limit: float | None = None
    duration_s: float | None = None
    max_requests: int | None = None
    warmup_requests: int = 0
    warmup_s: float = 0.0
    stage: int = 0


@dataclass(slots=True)
class Progress:
    """Live counters for the console; written by the runner only."""

    planned: int | None = None
    sent: int = 0
    done: int = 0
    errors: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    output_chunks: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)


class Runner:
    def __init__(self, plan: RunPlan, next_spec: Callable[[], RequestSpec], client: StreamClient,
                 sink: RecordSink, t0: float, progress: Progress | None = None,
                 first_request_id: int = 0) -> None:
        self._plan = plan
        self._next_spec = next_spec
        self._client = client
        self._sink = sink
        self._t0 = t0
        self.progress = progress or Progress()
        self._next_id = first_request_id
        self._tasks: set[asyncio.Task[None]] = set()
        self._launched = 0  # counted when a task is created, before it first runs
        self._limiter = AsyncLimiter(plan.send_rate_limit, 1) if plan.send_rate_limit else None
        if plan.offsets is not None:
            self.progress.planned = len(plan.offsets)
        elif plan.max_requests is not None:
            self.progress.planned = plan.max_requests

    async def run(self, stop: asyncio.Event) -> str:
        """Run to the end of the plan; returns "completed" or "interrupted"."""
        sender = asyncio.ensure_future(
            self._open_loop() if self._plan.offsets is not None else self._closed_loop()
        )
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({sender, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            await self._cancel_in_flight()
            return "interrupted"
        stopper.cancel()
        sender.result()  # a bug in the sender must surface, not vanish
        while self._tasks:
            waiter = asyncio.ensure_future(stop.wait())
            await asyncio.wait({*self._tasks, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                await self._cancel_in_flight()
                return "interrupted"
            waiter.cancel()
        return "completed"

    async def _cancel_in_flight(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- senders ---------------------------------------------------------------------------

    async def _open_loop(self) -> None:
        plan = self._plan
        assert plan.offsets is not None
        slots = asyncio.Semaphore(plan.max_concurrency) if plan.max_concurrency else None
        for offset in plan.offsets.tolist():
            await _sleep_until(self._t0 + offset)
            if slots is not None:
                await slots.acquire()
            if self._limiter is not None:
                await self._limiter.acquire()
            self._launch(offset, slots)

    def _launch(self, scheduled_s: float, slots: asyncio.Semaphore | None) -> None:
        task = asyncio.create_task(self._request(self._next_spec(), scheduled_s))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if slots is not None:
            task.add_done_callback(lambda _t: slots.release())

    async def _closed_loop(self) -> None:
        plan = self._plan
        assert plan.concurrency is not None
        await _sleep_until(self._t0)
        workers = [asyncio.create_task(self._slot()) for _ in range(plan.concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()

    async def _slot(self) -> None:
        while self._may_send():
            if self._limiter is not None:
                await self._limiter.acquire()
            scheduled = time.perf_counter() - self._t0
            self._launched += 1
            task = asyncio.create_task(self._request(self._next_spec(), scheduled))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            await asyncio.shield(task)

    def _may_send(self) -> bool:
        plan = self._plan
        if plan.max_requests is not None and self._launched >= plan.max_requests:
            return False
        if plan.duration_s is not None and time.perf_counter() - self._t0 >= plan.duration_s:
            return False
        return True

    # -- one request -----------------------------------------------------------------------

    async def _request(self, spec: RequestSpec, scheduled_s: float) -> None:
        request_id = self._next_id
        self._next_id += 1
        progress = self.progress
        progress.sent += 1
        progress.in_flight += 1
        progress.peak_in_flight = max(progress.peak_in_flight, progress.in_flight)
        attempt = _Attempt(self._t0, self._plan.timeouts)
        try:
            await attempt.run(self._client, self._plan.path, spec.body)
        except asyncio.CancelledError:
            attempt.cancelled()
            self._finish(attempt, request_id, spec, scheduled_s)
            raise
        self._finish(attempt, request_id, spec, scheduled_s)

    def _finish(self, attempt: _Attempt, request_id: int, spec: RequestSpec, scheduled_s: float) -> None:
        plan = self._plan
        progress = self.progress
        progress.in_flight -= 1
        progress.done += 1
        progress.output_chunks += attempt.recorder.chunks.kind.count(1)
        if attempt.error_kind is not None:
            progress.errors += 1
            progress.error_kinds[attempt.error_kind] = progress.error_kinds.get(attempt.error_kind, 0) + 1
        warm = request_id < plan.warmup_requests or (plan.warmup_s > 0 and scheduled_s < plan.warmup_s)
        self._sink.write(attempt.record(
            request_id=request_id, stage=plan.stage, phase="warmup" if warm else "measure",
            spec=spec, scheduled_s=scheduled_s,
        ))


class _Attempt:
    """State of one request while it runs; produces its record at the end."""

    def __init__(self, t0: float, timeouts: Timeouts) -> None:
        self.t0 = t0
        self.timeouts = timeouts
        self.recorder = StreamRecorder(t0)
        self.sent_abs = 0.0
        self.headers_abs: float | None = None
        self.end_abs = 0.0
        self.http_status: int | None = None
        self.error_kind: str | None = None
        self.error_message: str | None = None
        self.retry_after_s: float | None = None
        self.server_request_id: str | None = None
        self.status = "ok"

    async def run(self, client: StreamClient, path: str, body: bytes) -> None:
        loop = asyncio.get_running_loop()
        timeouts = self.timeouts
        self.sent_abs = time.perf_counter()
        start = loop.time()
        total_deadline = start + timeouts.total_s
        ttft_deadline = min(start + timeouts.ttft_s, total_deadline)
        response: StreamResponse | None = None
        try:
            async with asyncio.timeout_at(ttft_deadline) as deadline:
                response = await client.open_stream(path, body)
                self.headers_abs = time.perf_counter()
                if response.sent_at is not None:
                    self.sent_abs = response.sent_at
                self.http_status = response.status
                self.server_request_id = response.server_request_id
                await self._read(response, deadline, loop, ttft_deadline, total_deadline)
        except TimeoutError:
            self._fail(self._timeout_kind(loop.time(), total_deadline), "no data before the deadline")
        except ClientError as exc:
            self.http_status = exc.http_status or self.http_status
            self.retry_after_s = exc.retry_after_s
            self.server_request_id = exc.server_request_id or self.server_request_id
            self._fail(exc.kind, str(exc))
        except StreamProtocolError as exc:
            self._fail(exc.kind, str(exc))
        finally:
            self.end_abs = time.perf_counter()
            if response is not None:
                await _close_quietly(response)
        if self.error_kind is None:
            self._check_complete()

    async def _read(self, response: StreamResponse, deadline: asyncio.Timeout,
                    loop: asyncio.AbstractEventLoop, ttft_deadline: float, total_deadline: float) -> None:
        recorder = self.recorder
        idle = self.timeouts.idle_s
        slack = idle * 0.05  # re-arming the timer on every read would cost more than it buys
        if "json" in response.content_type:
            raise StreamProtocolError("not_sse", f"expected text/event-stream, got {response.content_type}")
        async for now_abs, data in response.reads():
            recorder.feed(now_abs, data)
            if recorder.first_token_t is not None:
                now = loop.time()
                target = min(now + idle, total_deadline)
                when = deadline.when()
                if when is None or target - when > slack or target < when:
                    deadline.reschedule(target)
        recorder.close(time.perf_counter())

    def _timeout_kind(self, now: float, total_deadline: float) -> str:
        if now >= total_deadline - 1e-3:
            return "total_timeout"
        if self.recorder.first_token_t is None:
            return "ttft_timeout"
        return "idle_timeout"

    def _check_complete(self) -> None:
        recorder = self.recorder
        if not recorder.done_seen:
            # Some clients end a dropped stream silently; a missing [DONE] is the tell.
            kind = "no_done" if recorder.finish_reasons else "stream_dropped"
            self._fail(kind, "stream ended without [DONE]")

    def _fail(self, kind: str, message: str) -> None:
        if self.error_kind is None:
            self.error_kind = kind
            self.error_message = message
            self.status = "error"

    def cancelled(self) -> None:
        self.end_abs = time.perf_counter()
        self.status = "cancelled"
        self.error_kind = "cancelled"
        self.error_message = "cancelled by interruption"

    def record(self, *, request_id: int, stage: int, phase: str, spec: RequestSpec,
               scheduled_s: float) -> RequestRecord:
        recorder = self.recorder
        prompt_tokens, completion_tokens = recorder.usage_tokens()
        t0 = self.t0
        return RequestRecord(
            request_id=request_id, stage=stage, phase=phase, variant=spec.variant, block=spec.block,
            prompt_index=spec.prompt_index, scheduled_s=scheduled_s,
            sent_s=self.sent_abs - t0,
            headers_s=None if self.headers_abs is None else self.headers_abs - t0,
            end_s=self.end_abs - t0, status=self.status, error_kind=self.error_kind,
            error_message=self.error_message, http_status=self.http_status,
            retry_after_s=self.retry_after_s, finish_reason=recorder.finish_reason(),
            usage_prompt_tokens=prompt_tokens, usage_completion_tokens=completion_tokens,
            server_request_id=self.server_request_id, max_tokens=spec.max_tokens,
            n=spec.n, done_seen=recorder.done_seen, output_chars=recorder.output_chars,
            chunks=recorder.chunks, server_timings=recorder.server_timings,
        )


async def _sleep_until(target: float) -> None:
    delay = target - time.perf_counter()
    if delay > _SPIN_S:
        await asyncio.sleep(delay - _SPIN_S)
    while time.perf_counter() < target:
        await asyncio.sleep(0)


async def _close_quietly(response: StreamResponse) -> None:
    await response.aclose()
