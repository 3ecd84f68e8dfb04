"""The engine's unit of work and its ground truth: one request as a `Seq`, its `Truth` record,
the `Sink` it streams to (with the sink's return codes) and the zero-latency `Coalescer`."""

from __future__ import annotations

import asyncio
from array import array
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["CHOICE_DONE", "GONE", "OK", "Coalescer", "Seq", "Sink", "Truth"]

# Sink return codes.
OK, CHOICE_DONE, GONE = 0, 1, 2


@dataclass(eq=False, slots=True)
class Coalescer:
    """Zero-latency profiles only: while `active`, sinks buffer their chunks and register
    in `dirty`; the engine flushes each once after several steps (one write per stream,
    recorded as `coalesced` in the ground truth, every chunk stamped with that write)."""

    active: bool = False
    dirty: list[Any] = field(default_factory=list)


class Sink(Protocol):
    def emit(self, choice: int, pos: int, count: int, reason: str | None, now: float) -> int: ...

    def backlog(self) -> int: ...

    def alive(self) -> bool: ...


@dataclass(eq=False, slots=True)
class Truth:
    """Server-side ground truth of one request (times are perf_counter, seconds)."""

    id: str
    endpoint: str
    model: str
    stream: bool
    n: int
    prompt_tokens: int
    received_s: float
    fault: str | None = None
    cached_tokens: int = 0
    response_start_s: float | None = None
    admitted_s: float | None = None
    prefill_end_s: float | None = None
    completed_s: float | None = None
    token_times: array = field(default_factory=lambda: array("d"))
    chunk_write_times: array = field(default_factory=lambda: array("d"))
    chunk_choice: array = field(default_factory=lambda: array("i"))
    output_tokens: int = 0
    finish_reasons: list[str | None] = field(default_factory=list)
    coalesced: bool = False
    cancelled: bool = False
    status: int = 200
    body: Any = None  # the request's JSON body, when the profile records them
    received_end_s: float | None = None  # the request's last bytes reached the process
    tool_call: str | None = None  # the function a tool-call answer called

    def to_json(self) -> dict[str, Any]:
        reasons = self.finish_reasons
        out = {
            "id": self.id,
            "endpoint": self.endpoint,
            "model": self.model,
            "stream": self.stream,
            "status": self.status,
            "received_s": self.received_s,
            "received_end_s": self.received_end_s,
            "response_start_s": self.response_start_s,
            "admitted_s": self.admitted_s,
            "prefill_end_s": self.prefill_end_s,
            "completed_s": self.completed_s,
            "token_times_s": self.token_times.tolist(),
            "chunk_write_times_s": self.chunk_write_times.tolist(),
            "chunk_choice_index": self.chunk_choice.tolist(),
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "output_tokens": self.output_tokens,
            "finish_reason": reasons[0] if reasons else None,
            "finish_reasons": list(reasons),
            "n": self.n,
            "fault": self.fault,
            "coalesced": self.coalesced,
            "cancelled": self.cancelled,
            "tool_call": self.tool_call,
        }
        if self.body is not None:
            out["body"] = self.body
        return out


@dataclass(eq=False, slots=True)
class Seq:
    """One request in the engine; its `n` choices decode in lockstep as n sequences."""

    truth: Truth
    prompt_tokens: int
    targets: list[int]  # planned output tokens per choice
    reasons: list[str]  # finish reason when a choice reaches its target ("stop"/"length")
    sink: Sink
    done: asyncio.Future
    block_hashes: tuple[int, ...] = ()
    stall_after: int | None = None  # chunk count after which the stream stalls
    stall_seconds: float = 0.0
    prefilled: int = 0
    need: int = 0  # prompt tokens to compute (after prefix-cache hits), >= 1
    generated: list[int] = field(default_factory=list)
    live: list[bool] = field(default_factory=list)
    n_live: int = 0
    steps: int = 0  # chunks emitted per choice so far
    reserved: int = 0
    kv_used: int = 0
    paused_until: float = 0.0
    admitted: bool = False
    finished: bool = False

    @property
    def n(self) -> int:
        return len(self.targets)
