"""A plain-TCP asyncio transport that stamps every read with the kernel's receive time.

A stamp taken in user space (`data_received`) is late by however long the event loop took
to get to that socket: with 256 streams receiving a token at the same instant, the last
socket served is stamped milliseconds after the first, by an amount that changes from
step to step. Linux records when each packet reached the socket (`SO_TIMESTAMPNS`, on
loopback: during the sender's write); reading with `recvmsg` hands that time back with the
bytes, so the stamp no longer depends on when the loop ran.

The kernel clock is CLOCK_REALTIME; stamps are converted to `time.perf_counter`
(CLOCK_MONOTONIC) with the offset between the two. NTP slews both clocks alike, so the
offset changes only when the wall clock is stepped; it is measured every 100 ms as the
tightest of three reads of one clock between two of the other (read once per socket read,
a preemption between the two reads moved stamps by tens of microseconds). A read
without a stamp takes the read time, as does a stamp that converts to after "now" or to
long before it (a stepped clock). Reads go without a stamp for a moment after the first
socket on the machine asks for them: the kernel switches stamping on in deferred work.
TLS connections and non-Linux systems use the loop's own transport (stamps then come
from `data_received`).
"""

from __future__ import annotations

import asyncio
import collections
import socket
import struct
import sys
import time
from typing import Any

__all__ = ["StampedTransport", "enable_kernel_stamps", "kernel_stamp", "stamped_transport_supported"]

_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_SCM_TIMESTAMPNS = _SO_TIMESTAMPNS
_ANC_SIZE = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 64
# Below glibc's default mmap threshold (128 KiB): `recvmsg(n)` allocates n bytes before it
# shrinks them to what came, and while the threshold is at its default an allocation of
# 128 KiB or more is an mmap/munmap pair with fresh page faults: ~15 us per read against
# ~1.7 us at 64 KiB (measured here). glibc raises the threshold once the process frees a
# larger mapping (numpy and pandas do, so `bench run` seldom paid it); nothing here relies on that.
_READ_SIZE = 64 * 1024
_HIGH_WATER = 64 * 1024
_LOW_WATER = 16 * 1024
_MAX_STAMP_AGE_NS = 10 * 1_000_000_000  # older than this: a stepped wall clock, not a slow loop
_TIMESPEC = struct.Struct("@qq")
# bound once: `kernel_stamp` runs on every socket read
_unpack_timespec = _TIMESPEC.unpack_from
_perf_counter_ns = time.perf_counter_ns
_time_ns = time.time_ns
_perf_counter = time.perf_counter
_SOL_SOCKET = socket.SOL_SOCKET


def stamped_transport_supported() -> bool:
    return sys.platform.startswith("linux") and hasattr(socket.socket, "recvmsg")


def enable_kernel_stamps(sock: socket.socket) -> bool:
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


_OFFSET_EVERY_NS = 100_000_000
_offset = [0, -_OFFSET_EVERY_NS - 1]  # [CLOCK_REALTIME - perf_counter ns, perf_counter ns when measured]


def wall_offset_ns(now_ns: int) -> int:
    """CLOCK_REALTIME minus perf_counter, in ns, measured again when the last measure is
    100 ms older than `now_ns` (a perf_counter_ns reading)."""
    offset = _offset
    if now_ns - offset[1] > _OFFSET_EVERY_NS:
        width, best = -1, 0
        for _ in range(3):
            before = _perf_counter_ns()
            wall = _time_ns()
            after = _perf_counter_ns()
            if width < 0 or after - before < width:
                width, best = after - before, wall - (before + after) // 2
        offset[0], offset[1] = best, now_ns
    return offset[0]


def kernel_stamp(ancdata: list[tuple[int, int, bytes]]) -> float:
    """perf_counter time of the newest packet in this read, or now when there is none."""
    now_ns = _perf_counter_ns()
    for level, kind, data in ancdata:
        if kind == _SCM_TIMESTAMPNS and level == _SOL_SOCKET and len(data) >= 16:
            sec, nsec = _unpack_timespec(data)
            offset = _offset  # `wall_offset_ns`, its common case inline
            stamp_ns = sec * 1_000_000_000 + nsec - (
                offset[0] if now_ns - offset[1] <= _OFFSET_EVERY_NS else wall_offset_ns(now_ns))
            if now_ns - _MAX_STAMP_AGE_NS <= stamp_ns <= now_ns:
                return stamp_ns / 1e9
    return now_ns / 1e9


class StampedTransport(asyncio.Transport):
    """A connected non-blocking TCP socket driven by `loop.add_reader`/`add_writer`.

    `rx_time` holds the kernel stamp of the read being delivered; the protocol reads it
    in `data_received`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._buffer: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._closing = False
        self._reading = False
        self._writing_paused = False
        self._lost = False
        self.rx_time = 0.0
        self._extra = {"socket": sock, "peername": _addr(sock.getpeername), "sockname": _addr(sock.getsockname)}
        sock.setblocking(False)
        enable_kernel_stamps(sock)
        protocol.connection_made(self)
        self.resume_reading()

    # --- reading ---------------------------------------------------------------------

    def _read_ready(self) -> None:
        try:
            data, ancdata, _flags, _addr = self._sock.recvmsg(_READ_SIZE, _ANC_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal(exc)
            return
        if not data:
            self._eof()
            return
        self.rx_time = kernel_stamp(ancdata)
        try:
            self._protocol.data_received(data)
        except Exception as exc:
            self._fatal(exc)

    def _eof(self) -> None:
        self.pause_reading()
        try:
            keep_open = self._protocol.eof_received()
        except Exception as exc:
            self._fatal(exc)
            return
        if not keep_open:
            self.close()

    def pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if not self._reading and not self._closing:
            self._reading = True
            self._loop.add_reader(self._fd, self._read_ready)

    def is_reading(self) -> bool:
        return self._reading

    # --- writing ---------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        if not self._buffer:
            start = _perf_counter()
            try:
                sent = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._fatal(exc)
                return
            if sent == len(data):
                self._written(start)
                return
            data = bytes(memoryview(data)[sent:])
            self._loop.add_writer(self._fd, self._write_ready)
        self._buffer.append(bytes(data))
        self._buffered += len(data)
        if not self._writing_paused and self._buffered > _HIGH_WATER:
            self._writing_paused = True
            self._protocol.pause_writing()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def _written(self, at: float) -> None:
        """Every byte written so far went to the kernel in a send call that began at `at`
        (perf_counter s): a subclass's hook. A large body leaves the part the socket did not
        take to later writable events, whenever the loop gets to them. The stamp is taken
        before the call: on return the thread may wait for the GIL (up to the 5 ms switch
        interval), while a loopback peer's kernel has the bytes within the call."""

    def _write_ready(self) -> None:
        start = 0.0
        while self._buffer:
            head = self._buffer[0]
            start = _perf_counter()
            try:
                sent = self._sock.send(head)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fatal(exc)
                return
            self._buffered -= sent
            if sent < len(head):
                self._buffer[0] = head[sent:]
                return
            self._buffer.popleft()
        self._loop.remove_writer(self._fd)
        if start:
            self._written(start)
        if self._writing_paused and self._buffered <= _LOW_WATER:
            self._writing_paused = False
            self._protocol.resume_writing()
        if self._closing:
            self._connection_lost(None)

    def get_write_buffer_size(self) -> int:
        return self._buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return _LOW_WATER, _HIGH_WATER

    def can_write_eof(self) -> bool:
        return False

    # --- closing ---------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.pause_reading()
        if not self._buffer:
            self._loop.call_soon(self._connection_lost, None)

    def abort(self) -> None:
        self._force_close(None)

    def _fatal(self, exc: Exception) -> None:
        self._force_close(exc)

    def _force_close(self, exc: Exception | None) -> None:
        if self._lost:
            return
        if self._buffer:
            self._buffer.clear()
            self._buffered = 0
            self._loop.remove_writer(self._fd)
        if not self._closing:
            self._closing = True
            self.pause_reading()
        self._loop.call_soon(self._connection_lost, exc)

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._sock.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]


def _addr(getter: Any) -> Any:
    try:
        return getter()
    except OSError:
        return None
