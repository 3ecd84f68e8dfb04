"""The kernel-stamped transport over real loopback TCP sockets."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import struct
import threading
import time

import pytest

from bench.sockstamp import StampedTransport, kernel_stamp, stamped_transport_supported

pytestmark = pytest.mark.skipif(not stamped_transport_supported(), reason="SO_TIMESTAMPNS is Linux-only")


class _Collect(asyncio.Protocol):
    def __init__(self) -> None:
        self.reads: list[tuple[float, float, bytes]] = []  # (stamp, callback time, data)
        self.events: list[str] = []
        self.lost = asyncio.get_running_loop().create_future()
        self.got = asyncio.Event()
        self.transport: StampedTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.reads.append((self.transport.rx_time, time.perf_counter(), data))
        self.got.set()

    def eof_received(self) -> bool:
        self.events.append("eof")
        return False

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        self.lost.set_result(exc)


def _pair() -> tuple[socket.socket, socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    return client, server


async def test_a_read_is_stamped_when_the_bytes_arrived_not_when_the_loop_got_to_them():
    client, server = _pair()
    protocol = _Collect()
    StampedTransport(asyncio.get_running_loop(), client, protocol)
    await asyncio.sleep(0.01)  # the kernel turns stamping on shortly after the first socket asks
    written = time.perf_counter()
    server.sendall(b"data: one\n\n")
    time.sleep(0.05)  # noqa: ASYNC251 - the loop is busy elsewhere for 50 ms
    await asyncio.wait_for(protocol.got.wait(), 5)
    stamp, handled, data = protocol.reads[0]
    assert data == b"data: one\n\n"
    assert handled - written >= 0.05
    # The arrival, not the 50 ms later read (the wall-to-monotonic offset itself wobbles by
    # tens of microseconds on this VM, hence the margin before the write).
    assert written - 0.001 <= stamp < written + 0.005
    server.close()
    assert await asyncio.wait_for(protocol.lost, 5) is None
    assert protocol.events == ["eof", "lost"]


async def test_stamps_follow_each_write_in_order():
    client, server = _pair()
    protocol = _Collect()
    StampedTransport(asyncio.get_running_loop(), client, protocol)
    await asyncio.sleep(0.01)
    sent = []
    for i in range(5):
        sent.append(time.perf_counter())
        server.sendall(b"x%d" % i)
        time.sleep(0.01)  # noqa: ASYNC251 - blocking: all five wait in the socket until the loop runs
    await asyncio.sleep(0.05)
    stamps = [s for s, _, _ in protocol.reads]
    # Five reads or fewer (the kernel may hand over several at once, with the newest stamp).
    assert b"".join(d for _, _, d in protocol.reads) == b"x0x1x2x3x4"
    assert stamps == sorted(stamps)
    assert all(t >= sent[0] - 0.001 for t in stamps) and stamps[-1] < sent[-1] + 0.005
    server.close()
    await asyncio.wait_for(protocol.lost, 5)


async def test_a_large_write_pauses_the_protocol_and_arrives_whole():
    client, server = _pair()
    protocol = _Collect()
    transport = StampedTransport(asyncio.get_running_loop(), client, protocol)
    payload = bytes(range(256)) * (64 * 1024)  # 16 MiB: more than the socket buffers hold
    received = bytearray()

    def read_slowly() -> None:
        time.sleep(0.1)
        while len(received) < len(payload):
            received.extend(server.recv(1 << 20))

    reader = threading.Thread(target=read_slowly)
    reader.start()
    transport.write(payload)
    assert transport.get_write_buffer_size() > 0 and protocol.events == ["pause"]
    transport.close()  # closes once the buffer is flushed
    assert await asyncio.wait_for(protocol.lost, 10) is None
    reader.join(10)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
    assert protocol.events == ["pause", "resume", "lost"]
    assert transport.get_write_buffer_size() == 0
    server.close()


class _WriteStamps(StampedTransport):
    """Keeps what the transport says about when its bytes were all handed to the kernel."""

    def __init__(self, *args: object) -> None:
        self.written: list[float] = []
        super().__init__(*args)  # type: ignore[arg-type]

    def _written(self, at: float) -> None:
        self.written.append(at)


async def test_a_write_is_stamped_sent_when_its_last_byte_went_to_the_kernel():
    client, server = _pair()
    transport = _WriteStamps(asyncio.get_running_loop(), client, _Collect())
    before = time.perf_counter()
    transport.write(b"small")  # one send call takes it all: stamped at that call
    assert len(transport.written) == 1 and before <= transport.written[0] <= time.perf_counter()
    assert server.recv(16) == b"small"

    payload = b"x" * (16 << 20)  # more than the socket buffers hold: the peer must read first
    received = 0
    last_read_began = 0.0

    def read_slowly() -> None:
        nonlocal received, last_read_began
        time.sleep(0.2)
        while received < len(payload):
            last_read_began = time.perf_counter()
            received += len(server.recv(1 << 20))

    reader = threading.Thread(target=read_slowly)
    reader.start()
    wrote = time.perf_counter()
    transport.write(payload)
    assert len(transport.written) == 1  # not all of it went out
    await asyncio.to_thread(reader.join, 10)  # the loop writes the rest meanwhile
    assert received == len(payload) and len(transport.written) == 2
    # not when the write call was made, but when the reader made room for the last piece
    assert transport.written[1] > wrote + 0.2
    assert transport.written[1] <= last_read_began + 0.05
    transport.close()
    server.close()


async def test_abort_drops_the_buffer_and_reports_the_connection_lost():
    client, server = _pair()
    protocol = _Collect()
    transport = StampedTransport(asyncio.get_running_loop(), client, protocol)
    transport.write(b"x" * (32 * 1024 * 1024))
    transport.abort()
    assert transport.is_closing()
    assert await asyncio.wait_for(protocol.lost, 5) is None
    assert client.fileno() == -1
    server.close()


async def test_a_reset_by_the_peer_reaches_the_protocol_as_an_error():
    client, server = _pair()
    protocol = _Collect()
    StampedTransport(asyncio.get_running_loop(), client, protocol)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    server.close()  # RST
    exc = await asyncio.wait_for(protocol.lost, 5)
    assert isinstance(exc, ConnectionResetError)


def test_without_a_kernel_stamp_the_read_time_is_used():
    before = time.perf_counter()
    assert before <= kernel_stamp([]) <= time.perf_counter()


def test_a_stamp_from_a_stepped_wall_clock_is_not_trusted():
    now = time.time()
    for wall in (now + 60.0, now - 3600.0):  # "after now", "an hour ago"
        sec, frac = divmod(wall, 1.0)
        anc = [(socket.SOL_SOCKET, 35,  # SO_TIMESTAMPNS on Linux
                struct.pack("@qq", int(sec), int(frac * 1e9)))]
        before = time.perf_counter()
        assert before <= kernel_stamp(anc) <= time.perf_counter()


def test_the_wall_offset_is_the_tightest_bracket_and_is_kept_for_100_ms(monkeypatch):
    """A preemption between the two clock reads must not move the offset: of three tries,
    the one whose perf_counter reads are closest wins; then it is kept for 100 ms."""
    import bench.sockstamp as ss

    perf = iter([1_000, 61_000,  # preempted 60 us between its reads
                 100_000, 100_400,  # tight: wall read at 100_200
                 200_000, 230_000])
    wall = iter([5_000_030_000, 5_000_100_200, 5_000_215_000])
    monkeypatch.setattr(ss, "_perf_counter_ns", lambda: next(perf))
    monkeypatch.setattr(ss, "_time_ns", lambda: next(wall))
    monkeypatch.setattr(ss, "_offset", [0, -ss._OFFSET_EVERY_NS - 1])
    assert ss.wall_offset_ns(300_000) == 5_000_000_000
    assert ss.wall_offset_ns(300_000 + ss._OFFSET_EVERY_NS) == 5_000_000_000  # kept: no clock read
    with pytest.raises(StopIteration):  # 100 ms and a nanosecond later: measured again
        ss.wall_offset_ns(300_001 + ss._OFFSET_EVERY_NS)


def test_a_kernel_stamp_converts_with_the_kept_offset(monkeypatch):
    import bench.sockstamp as ss

    perf_now = time.perf_counter_ns()
    offset = time.time_ns() - perf_now
    monkeypatch.setattr(ss, "_offset", [offset + 5_000, perf_now])  # kept, and 5 us off on purpose
    wall = perf_now - 1_000 + offset
    anc = [(socket.SOL_SOCKET, 35, struct.pack("@qq", wall // 1_000_000_000, wall % 1_000_000_000))]
    assert ss.kernel_stamp(anc) == (wall - offset - 5_000) / 1e9  # not measured again: 6 us before perf_now
