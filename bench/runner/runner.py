"""Runner: sends the workload on its schedule and records every request, ok or not.

Open loop: sends at precomputed absolute offsets from t0 (late sends are recorded with
their lag, never dropped). Closed loop: N slots, each sending its next request as soon as
its previous one ends. Every request ends as exactly one RequestRecord handed to the sink,
including failed and cancelled ones.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol

from aiolimiter import AsyncLimiter

from bench.runner.client import ClientError, SendLog, StreamClient, StreamResponse
from bench.records import OUTPUT_KIND_CODES, RequestRecord
from bench.runner.recorder import StreamRecorder
from bench.runner.sse import StreamProtocolError, json_body_error
from bench.scenario.schema import Timeouts
from bench.workload.plan import RunPlan, StagePlan
from bench.workload.requests import RequestSpec

_SPIN_S = 0.0015  # sleep until this close to a send time, then yield: asyncio rounds timers to 1 ms


class RecordSink(Protocol):
    def write(self, record: RequestRecord) -> None: ...


class RequestSource(Protocol):
    """Where requests come from (the workload): next spec, and follow-up turns."""

    keep_text: bool

    def next_spec(self, item: int | None = None) -> RequestSpec: ...

    def follow_up(self, spec: RequestSpec, reply: str) -> tuple[RequestSpec, float] | None: ...


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
    stage: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)


class Runner:
    def __init__(self, plan: RunPlan, source: RequestSource, client: StreamClient,
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
        """Send every stage back to back, then wait for in-flight requests."""
        for stage in stages:
            if not await self.send(stage, stop):
                await self.cancel_in_flight()
                return "interrupted"
        if not await self.drain(stop):
            await self.cancel_in_flight()
            return "interrupted"
        return "completed"

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
        slots = self._slots
        for i, offset in enumerate(stage.offsets.tolist()):
            if not self._may_send(stage):
                return
            # Submit early by the client's own build-and-write time, so the request is on
            # the wire at its scheduled time rather than a millisecond or two after it; the
            # client holds it, connection in hand, until that time (never early).
            await _sleep_until(self._t0 + offset - self._lead.seconds)
            if slots is not None:
                await slots.acquire()
            if self._limiter is not None:
                await self._limiter.acquire()
            spec = self._source.next_spec(items[i] if items is not None else None)
            task = self._launch(spec, offset)
            if slots is not None:
                task.add_done_callback(lambda _t: slots.release())

    def _launch(self, spec: RequestSpec, scheduled_s: float) -> asyncio.Task[None]:
        self._launched += 1
        self._stage_launched += 1
        task = asyncio.create_task(self._conversation(spec, scheduled_s, self._stage))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _closed_loop(self, stage: StagePlan) -> None:
        assert stage.concurrency is not None
        await _sleep_until(self._t0 + stage.start_s)
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
            text = await self._request(spec, scheduled_s, stage.index)
            if text is None:
                return
            nxt = self._source.follow_up(spec, text)
            if nxt is None:
                return
            spec, think_s = nxt
            scheduled_s = time.perf_counter() - self._t0 + think_s
            await _sleep_until(self._t0 + scheduled_s)
            if not self._may_send(stage):
                return
            self._launched += 1
            self._stage_launched += 1

    # -- one request -----------------------------------------------------------------------

    async def _request(self, spec: RequestSpec, scheduled_s: float, stage: int) -> str | None:
        """Send one request and record it; the reply text when the turn has a follow-up."""
        request_id = self._next_id
        self._next_id += self._id_step
        progress = self.progress
        progress.sent += 1
        progress.in_flight += 1
        progress.peak_in_flight = max(progress.peak_in_flight, progress.in_flight)
        attempt = _Attempt(self._t0, self._plan.timeouts, keep_text=self._source.keep_text, lead=self._lead,
                           n=spec.n)
        try:
            await attempt.run(self._client, self._plan.path, spec.body, not_before=self._t0 + scheduled_s)
        except asyncio.CancelledError:
            attempt.cancelled()
            self._finish(attempt, request_id, spec, scheduled_s, stage)
            raise
        self._finish(attempt, request_id, spec, scheduled_s, stage)
        if attempt.error_kind is not None or not self._source.keep_text:
            return None
        return attempt.recorder.text()

    def _finish(self, attempt: _Attempt, request_id: int, spec: RequestSpec, scheduled_s: float,
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


class SendLead:
    """Running estimate of the time from handing a request to the client to its last byte
    leaving on the socket (request building, pool checkout or connecting, write), not
    counting the time the client held it for its schedule (`SendLog.held_s`).

    The lead is applied before anyone knows whether the request will go out on a pooled
    connection or on a new one (a server that closes after every stream makes every one new),
    so it cannot fit each; the client's hold makes a too-large lead harmless (the request
    waits, connection in hand, for its time) while a too-small one makes it late. Hence it
    sits high in the overhead's spread (about its 70th percentile), not low. Requests
    retried after a stale pooled connection are not observed: the retry happens after the
    hold, whatever the lead, so their extra time is schedule lag that no lead can remove.
    """

    MAX_S = 0.005  # bounds the time a request waits in the client, connection in hand

    def __init__(self) -> None:
        self.seconds = 0.0
        self._count = 0

    def observe(self, overhead_s: float) -> None:
        if not 0.0 <= overhead_s < 0.1:
            return
        self._count += 1
        target = min(overhead_s, self.MAX_S)
        if self._count == 1:
            self.seconds = target
            return
        # Steps up 4x larger than down: settles where the mean excess above it is a quarter
        # of the mean shortfall below it (two thirds of the way up a uniform spread). Fast
        # at first, steady later.
        rate = 0.3 if self._count < 20 else 0.05
        step = rate if target > self.seconds else rate / 4
        self.seconds += step * (target - self.seconds)


class _Attempt:
    """State of one request while it runs; produces its record at the end."""

    def __init__(self, t0: float, timeouts: Timeouts, keep_text: bool = False,
                 lead: SendLead | None = None, n: int = 1) -> None:
        self.t0 = t0
        self.timeouts = timeouts
        self.lead = lead
        self.submitted_abs = 0.0
        self.reconnected = False
        self.recorder = StreamRecorder(t0, n=n)
        self.recorder.keep_text = keep_text
        self.sent_abs = 0.0
        self.headers_abs: float | None = None
        self.end_abs = 0.0
        self.http_status: int | None = None
        self.error_kind: str | None = None
        self.error_message: str | None = None
        self.retry_after_s: float | None = None
        self.server_request_id: str | None = None
        self.status = "ok"
        self._seen = 0  # chunks seen when the idle deadline was last moved
        self._last_event_abs = 0.0
        self._first_token: asyncio.Future[None] | None = None
        self._done_abs: float | None = None  # when [DONE] arrived
        self._done_wake: asyncio.Future[None] | None = None

    async def run(self, client: StreamClient, path: str, body: bytes, not_before: float = 0.0) -> None:
        """`not_before`: perf_counter time before which no byte of the request is written."""
        loop = asyncio.get_running_loop()
        timeouts = self.timeouts
        self.sent_abs = self.submitted_abs = time.perf_counter()
        log = SendLog(not_before=not_before)
        start = loop.time()
        total_deadline = start + timeouts.total_s
        ttft_deadline = min(start + timeouts.ttft_s, total_deadline)
        response: StreamResponse | None = None
        try:
            async with asyncio.timeout_at(ttft_deadline) as deadline:
                response = await client.open_stream(path, body, log)
                self.headers_abs = time.perf_counter()
                self._sent(log, response.reconnected)
                self.http_status = response.status
                self.reconnected = response.reconnected
                self.server_request_id = response.server_request_id
                await self._read(response, deadline, loop, ttft_deadline, total_deadline)
        except TimeoutError:
            self._fail(self._timeout_kind(loop.time(), total_deadline), "no data before the deadline")
        except ClientError as exc:
            self.reconnected = self.reconnected or exc.reconnected
            self.http_status = exc.http_status or self.http_status
            self.retry_after_s = exc.retry_after_s
            self.server_request_id = exc.server_request_id or self.server_request_id
            self._fail(exc.kind, str(exc))
        except StreamProtocolError as exc:
            self._fail(exc.kind, str(exc))
        finally:
            if response is None:  # failed or cut short before a response: it may still have gone out
                self._sent(log, self.reconnected)
            self.end_abs = time.perf_counter()
            if response is not None:
                await response.aclose()
        if self.error_kind is None:
            self._check_complete()

    def _sent(self, log: SendLog, reconnected: bool) -> None:
        """When the request went out. Not written at all (refused, say): when it would have
        been, `not_before`, or the failure if that came first (the validity checks leave
        such requests out of "sent early")."""
        if log.sent_at is None:
            self.sent_abs = max(self.submitted_abs, min(log.not_before, time.perf_counter()))
            return
        self.sent_abs = log.sent_at
        if self.lead is not None and not reconnected:
            self.lead.observe(log.sent_at - self.submitted_abs - log.held_s)

    async def _read(self, response: StreamResponse, deadline: asyncio.Timeout,
                    loop: asyncio.AbstractEventLoop, ttft_deadline: float, total_deadline: float) -> None:
        recorder = self.recorder
        idle = self.timeouts.idle_s
        slack = idle * 0.05  # re-arming the timer on every read would cost more than it buys
        if "json" in response.content_type:
            await _json_body_failure(response)
        done = response.start_feeding(self._on_read)
        if done is not None:
            await self._wait_body(done, deadline, loop, ttft_deadline, total_deadline)
            return
        seen = 0
        async for now_abs, data in response.reads():
            recorder.feed(now_abs, data)
            if recorder.done_seen:
                break  # the answer is complete: a proxy's heartbeats after [DONE] are not waited for
            # Only events re-arm the idle deadline: keep-alive comments from a proxy in front
            # of a stuck backend must not hold it off.
            if recorder.first_token_t is not None and len(recorder.chunks) > seen:
                seen = len(recorder.chunks)
                now = loop.time()
                target = min(now + idle, total_deadline)
                when = deadline.when()
                if (when is None or target - when > slack or target < when
                        or (target == total_deadline and when != target)):
                    deadline.reschedule(target)
        recorder.close(time.perf_counter())

    def _on_read(self, t_abs: float, data: bytes) -> None:
        """One socket read, fed from the connection's callback (no task wake-up per read)."""
        recorder = self.recorder
        recorder.feed(t_abs, data)
        if recorder.done_seen:
            if self._done_abs is None:
                self._done_abs = t_abs
            wake = self._done_wake
            if wake is not None and not wake.done():
                wake.set_result(None)  # to the short wait for the end of the body
            return
        # Only events re-arm the idle deadline: keep-alive comments from a proxy in front
        # of a stuck backend must not hold it off.
        if len(recorder.chunks) != self._seen and recorder.first_token_t is not None:
            self._seen = len(recorder.chunks)
            self._last_event_abs = t_abs
            first = self._first_token
            if first is not None and not first.done():
                first.set_result(None)  # from the TTFT deadline to the idle one

    async def _wait_body(self, done: asyncio.Future[None], deadline: asyncio.Timeout,
                         loop: asyncio.AbstractEventLoop, ttft_deadline: float, total_deadline: float) -> None:
        """Sleep until the body ends; wake only when a deadline may have passed: TTFT until the
        first token, then the idle deadline from the last event (checked lazily, never re-armed
        per read), never beyond the total deadline. After `[DONE]` the answer is complete: the
        body gets DONE_GRACE_S to end (so the connection can go back to the pool), then it is
        closed, whatever a proxy still sends (heartbeats after [DONE])."""
        deadline.reschedule(None)
        recorder = self.recorder
        idle = self.timeouts.idle_s
        perf = time.perf_counter
        self._done_wake = loop.create_future()
        while not done.done():
            if recorder.done_seen:
                done_abs = self._done_abs = self._done_abs or perf()
                remaining = min(done_abs + DONE_GRACE_S - perf(), total_deadline - loop.time())
                if remaining <= 0:
                    return
                await asyncio.wait((done,), timeout=remaining)
                continue
            waiting: tuple[asyncio.Future[None], ...] = (done, self._done_wake)
            if recorder.first_token_t is None:
                target = ttft_deadline
                self._first_token = loop.create_future()
                waiting = (*waiting, self._first_token)
            else:
                target = min(loop.time() + (self._last_event_abs + idle - perf()), total_deadline)
            remaining = target - loop.time()
            if remaining <= 0:
                raise TimeoutError
            await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            self._first_token = None
        done.result()  # the error that ended the body, if any
        recorder.close(perf())

    def _timeout_kind(self, now: float, total_deadline: float) -> str:
        if now >= total_deadline - 1e-3:
            return "total_timeout"
        if self.recorder.first_token_t is None:
            return "ttft_timeout"
        return "idle_timeout"

    def _check_complete(self) -> None:
        problem = self.recorder.incomplete()
        if problem is not None:
            self._fail(*problem)

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
            conversation=spec.conversation, turn=spec.turn,
            prompt_index=spec.prompt_index, scheduled_s=scheduled_s,
            submitted_s=self.submitted_abs - t0, sent_s=self.sent_abs - t0,
            headers_s=None if self.headers_abs is None else self.headers_abs - t0,
            end_s=self.end_abs - t0, status=self.status, error_kind=self.error_kind,
            error_message=self.error_message, http_status=self.http_status,
            retry_after_s=self.retry_after_s, finish_reason=recorder.finish_reason(),
            usage_prompt_tokens=prompt_tokens, usage_completion_tokens=completion_tokens,
            server_request_id=self.server_request_id, max_tokens=spec.max_tokens,
            n=spec.n, done_seen=recorder.done_seen, reconnected=self.reconnected, output_chars=recorder.output_chars,
            chunks=recorder.chunks, server_timings=recorder.server_timings,
        )


# After [DONE] the body normally ends at once (the chunked terminator); a body still open
# this long after it is a proxy sending heartbeats, and is closed without more waiting.
DONE_GRACE_S = 0.25
_JSON_BODY_LIMIT = 1 << 20  # an error body is small; a bigger one is not read to its end


async def _json_body_failure(response: StreamResponse) -> None:
    """A JSON body where a stream was asked for: the server's error when it is one (HTTP 200
    with {"error": ...}), else not_sse. Always raises StreamProtocolError."""
    parts: list[bytes] = []
    size = 0
    async for _t, data in response.reads():
        parts.append(data)
        size += len(data)
        if size > _JSON_BODY_LIMIT:
            break
    message = json_body_error(b"".join(parts))
    if message is not None:
        raise StreamProtocolError("server_error_body", message)
    raise StreamProtocolError("not_sse", f"expected text/event-stream, got {response.content_type}")


async def _sleep_until(target: float) -> None:
    delay = target - time.perf_counter()
    if delay > _SPIN_S:
        await asyncio.sleep(delay - _SPIN_S)
    while time.perf_counter() < target:
        await asyncio.sleep(0)
