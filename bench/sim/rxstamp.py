"""Arrival stamps: when a request's first and latest bytes reached the process, per connection
(or the machine: the kernel's receive time, with the profile's `kernel_rx_stamps`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

__all__ = ["RxStamp"]

perf_counter = time.perf_counter


class RxStamp(asyncio.Protocol):
    """Wraps aiohttp's per-connection protocol to stamp when a request's first bytes
    arrive. Stamping in the handler instead would miss the time a request waits behind
    others (64 requests arriving together are handled one after another: ~10 ms)."""

    def __init__(self, inner: asyncio.Protocol, registry: dict[Any, RxStamp]) -> None:
        self.inner = inner
        self.registry = registry
        self.transport: asyncio.BaseTransport | None = None
        self.rx: float | None = None
        self.last: float | None = None  # when the latest bytes arrived (a body's last, once it is read)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.registry[transport] = self
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        # On bench.sockstamp's transport: the kernel's receive time of this read's newest packet.
        now = getattr(self.transport, "rx_time", 0.0) or perf_counter()
        if self.rx is None:
            self.rx = now
        self.last = now
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.registry.pop(self.transport, None)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
