"""The interfaces around sending: what feeds the runner, where records go, and the `Sender`
protocol that the single-process `Runner`, the `WorkerPool` and the `RayPool` all satisfy,
so that `bench run` drives any of them alike.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from bench.records import Progress, RequestRecord
from bench.workload.plan import StagePlan
from bench.workload.requests import RequestSpec

__all__ = ["Pool", "RecordSink", "RequestSource", "Sender", "StageSender"]


class RecordSink(Protocol):
    def write(self, record: RequestRecord) -> None: ...


class RequestSource(Protocol):
    """Where requests come from (the workload): next spec, and follow-up turns."""

    keep_text: bool

    def next_spec(self, item: int | None = None) -> RequestSpec: ...

    def follow_up(self, spec: RequestSpec, reply: str,
                  tool_calls: tuple[dict[str, Any], ...] = ()) -> tuple[RequestSpec, float] | None: ...


class Sender(Protocol):
    """Sends a run's stages from the common start time `t0` (perf_counter seconds), every
    request ending as one record in the sink it was given; `progress` is kept current."""

    progress: Progress

    @property
    def t0(self) -> float: ...

    async def run(self, stages: list[StagePlan], stop: asyncio.Event) -> str:
        """Send every stage, then wait for what is in flight: "completed", or "interrupted"
        when `stop` was set first (in-flight requests cancelled and recorded). A pool raises
        RunFailed when a worker or actor failed."""
        ...

    async def cancel_in_flight(self) -> None:
        """Cancel what is in flight (each cancelled request is still recorded)."""
        ...


class StageSender(Sender, Protocol):
    """A sender driven one stage at a time (`bench sweep`, the early stop): one process."""

    async def send(self, stage: StagePlan, stop: asyncio.Event) -> bool:
        """Send one stage; False when `stop` was set first (in-flight requests go on)."""
        ...

    async def drain(self, stop: asyncio.Event, timeout_s: float | None = None) -> bool:
        """Wait for in-flight requests; False when `stop` was set or the timeout passed."""
        ...


class Pool(Sender, Protocol):
    """Several client processes or Ray actors behind one sender. Started before `t0` is
    known (`start`); `t0` is set once everything is ready, `start_delay_s` ahead of now."""

    start_delay_s: float
    worker_stats: list[dict[str, object]]
    notes: list[str]

    @property
    def t0(self) -> float: ...

    @t0.setter
    def t0(self, value: float) -> None: ...

    async def start(self) -> None:
        """Start every worker and wait until each has its client and workload ready;
        RunFailed when one is not ready in time."""
        ...

    async def aclose(self) -> None:
        """Stop every worker (after their last records) and release them."""
        ...
