"""One request while it runs: send, read the stream under its deadlines, record the result.

`Attempt.run` sends through any `StreamOpener` (the real client, or a test's fake), feeds
every read to a `StreamRecorder`, and ends with exactly one outcome: ok, or an error with
its kind (HTTP status, timeouts, dropped streams, protocol faults), or cancelled.
`Attempt.record` turns it into a `RequestRecord`.
"""

from __future__ import annotations

import asyncio
import time

from bench.records import RequestRecord
from bench.runner.recorder import StreamRecorder
from bench.runner.responses import ResponsesRecorder
from bench.runner.sse import StreamProtocolError, json_body_error
from bench.runner.streamapi import ClientError, SendLog, StreamOpener, StreamResponse
from bench.runner.unary import EmbeddingsReader
from bench.scenario.schema import Timeouts
from bench.workload.requests import RequestSpec

__all__ = ["DONE_GRACE_S", "Attempt", "Recorder", "SendLead", "make_recorder"]

# What reads an answer, by endpoint: all three have StreamRecorder's interface.
Recorder = StreamRecorder | ResponsesRecorder | EmbeddingsReader


def make_recorder(endpoint: str, t_origin: float, n: int = 1, inputs: int | None = None) -> Recorder:
    """The reader of one answer of `endpoint` (scenario target.endpoint)."""
    if endpoint == "embeddings":
        return EmbeddingsReader(t_origin, inputs or 1)
    if endpoint == "responses":
        return ResponsesRecorder(t_origin)
    return StreamRecorder(t_origin, n=n)

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


class Attempt:
    """State of one request while it runs; produces its record at the end."""

    def __init__(self, t0: float, timeouts: Timeouts, keep_text: bool = False,
                 lead: SendLead | None = None, n: int = 1, endpoint: str = "chat", inputs: int | None = None,
                 keep_output: bool = False) -> None:
        self.t0 = t0
        self.timeouts = timeouts
        self.lead = lead
        self.submitted_abs = 0.0
        self.reconnected = False
        self.recorder: Recorder = make_recorder(endpoint, t0, n, inputs)
        self.recorder.keep_text = keep_text
        self.recorder.keep_output = keep_output
        self.sent_abs = 0.0
        self.headers_abs: float | None = None
        self.end_abs = 0.0
        self.http_status: int | None = None
        self.error_kind: str | None = None
        self.error_message: str | None = None
        self.retry_after_s: float | None = None
        self.server_request_id: str | None = None
        self.status = "ok"
        self._done_abs: float | None = None  # when [DONE] arrived
        self._wake: asyncio.Future[None] | None = None  # what `_wait_body` sleeps on, while it does
        self._wake_on_first = False  # it sleeps until the first token

    async def run(self, client: StreamOpener, path: str, body: bytes, not_before: float = 0.0) -> None:
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
            if isinstance(self.recorder, StreamRecorder):
                # No cycle (attempt -> recorder -> attempt): freed at once, not left for the
                # GC, whose young-generation pass over a thousand streams' attempts stalled
                # the loop for 30-150 ms (chunks then coalesce in one read).
                self.recorder.watch = None
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
        if isinstance(recorder, EmbeddingsReader):
            await _read_whole(response, recorder)
            return
        idle = self.timeouts.idle_s
        slack = idle * 0.05  # re-arming the timer on every read would cost more than it buys
        if "json" in response.content_type:
            await _json_body_failure(response)
        if isinstance(recorder, StreamRecorder):  # the recorder says when the first token and [DONE] came
            recorder.watch = self._progress
            done = response.start_feeding(recorder.feed, recorder.take)
        else:
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
        self.recorder.feed(t_abs, data)
        self._progress(t_abs)

    def _progress(self, t_abs: float) -> None:
        """After a read at `t_abs`: wake `_wait_body` when [DONE] came or the first token did."""
        recorder = self.recorder
        if recorder.done_seen:
            if self._done_abs is None:
                self._done_abs = t_abs
            self._wake_up()  # to the short wait for the end of the body
            return
        # The idle deadline runs from the last event, which `_wait_body` reads from the
        # recorder when it wakes: nothing to move here per read.
        if self._wake_on_first and recorder.first_token_t is not None:
            self._wake_on_first = False
            self._wake_up()  # from the TTFT deadline to the idle one

    def _wake_up(self, _done: object = None) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _sleep(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        """Until `_wake_up` (the body's end, [DONE], the first token) or `seconds` pass. One
        future and one timer: `asyncio.wait` costs several times that, two or three times
        a request."""
        wake = self._wake = loop.create_future()
        timer = loop.call_later(seconds, self._wake_up)
        try:
            await wake
        finally:
            timer.cancel()
            self._wake = None

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
        done.add_done_callback(self._wake_up)
        while not done.done():
            if recorder.done_seen:
                done_abs = self._done_abs = self._done_abs or perf()
                remaining = min(done_abs + DONE_GRACE_S - perf(), total_deadline - loop.time())
                if remaining <= 0:
                    return
                await self._sleep(loop, remaining)
                continue
            if recorder.first_token_t is None:
                target = ttft_deadline
                self._wake_on_first = True
            else:
                # Only events re-arm the idle deadline (keep-alive comments from a proxy in
                # front of a stuck backend must not hold it off): from the last chunk's arrival.
                times = recorder.chunks.t
                last_event_abs = self.t0 + times[-1] if times else perf()
                target = min(loop.time() + (last_event_abs + idle - perf()), total_deadline)
            remaining = target - loop.time()
            if remaining <= 0:
                raise TimeoutError
            await self._sleep(loop, remaining)
        done.result()  # the error that ended the body, if any
        recorder.close(perf())

    def _timeout_kind(self, now: float, total_deadline: float) -> str:
        if now >= total_deadline - 1e-3:
            return "total_timeout"
        if isinstance(self.recorder, EmbeddingsReader):
            return "response_timeout"  # no tokens: the whole answer is due within ttft_s
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
            chunks=recorder.chunks, server_timings=recorder.server_timings, inputs=spec.inputs,
            body_s=recorder.body_t if isinstance(recorder, EmbeddingsReader) else None,
            usage_reasoning_tokens=recorder.reasoning_tokens(), model=spec.model or None,
            usage_cached_tokens=recorder.cached_tokens(), output_texts=recorder.output_texts(),
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


async def _read_whole(response: StreamResponse, reader: EmbeddingsReader) -> None:
    """A non-streamed answer: every read of the body, then its end (the TTFT deadline, set
    by the caller, bounds the whole answer)."""
    async for now_abs, data in response.reads():
        reader.feed(now_abs, data)
    reader.close(time.perf_counter())

