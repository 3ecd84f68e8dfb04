"""The simulator's listening socket: every connection's protocol comes from the server's
factory (which wraps it to stamp request arrival), on asyncio's own transport, or with the
profile's `kernel_rx_stamps` on bench.sockstamp's, whose reads carry the kernel's receive
time (Linux only; elsewhere the loop's transport and stamps)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass

from bench.sockstamp import StampedTransport, enable_kernel_stamps, stamped_transport_supported

__all__ = ["Listener", "listen"]

BACKLOG = 4096
RECEIVE_BUFFER = 4 << 20  # bytes asked for (the kernel caps it at net.core.rmem_max)


@dataclass(frozen=True)
class Listener:
    """A listening socket; `port` is the bound one (the request may say 0)."""

    port: int
    close: Callable[[], None]


async def listen(factory: Callable[[], asyncio.Protocol], host: str, port: int, kernel_stamps: bool) -> Listener:
    """Listen on host:port. OSError when the address cannot be bound."""
    loop = asyncio.get_running_loop()
    if not (kernel_stamps and stamped_transport_supported()):
        server = await loop.create_server(factory, host, port, backlog=BACKLOG, reuse_address=True)
        return Listener(server.sockets[0].getsockname()[1], server.close)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # A receive window that holds a whole big body: its bytes reach the kernel (and get
    # their stamp) as they are sent, not when the loop has read the bodies ahead of it.
    # Set before listen(): connections inherit it and the window scale is agreed at connect.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.setblocking(False)
    # The kernel switches receive stamping on in deferred work after the first socket asks:
    # ask now, so that the first requests' reads are stamped too.
    enable_kernel_stamps(sock)

    def accept() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the peer gave up before we got to it (ECONNABORTED, ...)
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            StampedTransport(loop, conn, factory())

    def close() -> None:
        loop.remove_reader(sock.fileno())
        sock.close()

    loop.add_reader(sock.fileno(), accept)
    return Listener(sock.getsockname()[1], close)
