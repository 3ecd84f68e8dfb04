"""Worker processes: the schedule's shards (`bench.runner.shards`) in K client processes.

Each worker (`python -m bench.runner.workers FD`) has its own event loop (uvloop when
installed), its own client and its own loop/CPU monitor, and runs one shard
(`bench.runner.shard.run_shard`). The parent sends each the same start time `t0`
(CLOCK_MONOTONIC is shared between processes, so `perf_counter()` stamps from every worker
are on one clock) and its shard of every stage. Request ids are global and unique: worker k
numbers its requests k, k+K, k+2K, ...

Messages (`bench.runner.messages`, pickled over a socketpair) carry records in batches to
the parent, which writes the one run directory, so a run with workers has the same shape
as one without. SIGINT/SIGTERM reach the parent (workers ignore SIGINT from the terminal);
it tells every worker to stop, and their cancelled in-flight requests are recorded as usual.

The parent's bookkeeping (`WorkerPool`) does not depend on the transport: a worker process
here, a Ray actor in `bench.runner.ray_workers`, which overrides `start`, `post` and
`start_time`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from bench.errors import RunFailed
from bench.records import Progress
from bench.runner.messages import (
    Configure,
    Done,
    Failed,
    FromWorker,
    Gone,
    Ready,
    Records,
    Start,
    Stop,
    ToWorker,
)
from bench.runner.shard import run_shard
from bench.runner.shards import WorkerConfig, shard_stages
from bench.workload.plan import StagePlan

__all__ = ["READY_TIMEOUT_S", "STOP_TIMEOUT_S", "ValuesSink", "WorkerPool"]

# The directory holding the bench package, for the workers' PYTHONPATH.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class ValuesSink(Protocol):
    """Where the pool writes the record rows its workers send (the run writer, guarded)."""

    def write_values(self, batch: list[tuple[Any, ...]]) -> None: ...


class WorkerPool:
    """K worker processes behind one `Pool` (a `Sender`): records into `sink`, the sum of
    the workers' progress into `progress`, each one's loop lag and CPU into `worker_stats`."""

    start_delay_s = 0.1  # t0 this far ahead of the moment all are ready: the start message must arrive

    def __init__(self, configs: list[WorkerConfig], sink: ValuesSink, progress: Progress) -> None:
        self._configs = configs
        self._sink = sink
        self.progress = progress
        self._t0 = 0.0
        self._procs: list[subprocess.Popen[bytes]] = []
        self._conns: list[Connection] = []
        self._ready: list[asyncio.Future[int]] = []
        self._done: list[asyncio.Future[str]] = []
        self._progress: list[Progress | None] = [None for _ in configs]
        self.worker_stats: list[dict[str, Any]] = [{} for _ in configs]
        self.notes: list[str] = []
        self.failure: str | None = None
        self._stopping = False

    @property
    def t0(self) -> float:
        return self._t0

    @t0.setter
    def t0(self, value: float) -> None:
        self._t0 = value

    async def start(self) -> None:
        """Start every worker and wait until each has its client and workload ready."""
        loop = asyncio.get_running_loop()
        for cfg in self._configs:
            parent, child = socket.socketpair()
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [_SOURCE_ROOT, env.get("PYTHONPATH")]))
            proc = subprocess.Popen(  # noqa: ASYNC220 - started, not waited for: the ready message is awaited
                [sys.executable, "-m", "bench.runner.workers", str(child.fileno())],
                pass_fds=[child.fileno()], env=env)
            child.close()
            conn = Connection(parent.detach())
            self._procs.append(proc)
            self._conns.append(conn)
            self._ready.append(loop.create_future())
            self._done.append(loop.create_future())
            loop.add_reader(conn.fileno(), self._on_readable, cfg.index)
            os.set_blocking(conn.fileno(), True)  # uvloop made it non-blocking: recv/send whole messages
            conn.send(Configure(cfg))
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await asyncio.gather(*self._ready)
        except TimeoutError:
            raise RunFailed(f"client workers not ready after {READY_TIMEOUT_S:g} s") from None

    def _on_readable(self, index: int) -> None:
        conn = self._conns[index]
        try:
            while conn.poll():
                self.handle(index, conn.recv())
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(conn.fileno())
            if not self._done[index].done():
                code = self._procs[index].poll()
                self.fail(index, f"client worker {index} exited (code {code}) before finishing")

    def handle(self, index: int, msg: FromWorker) -> None:
        """One message from worker `index` (whatever the transport)."""
        match msg:
            case Records(values, progress):
                self._sink.write_values(values)
                self._update_progress(index, progress)
            case Ready(pid):
                if not self._ready[index].done():
                    self._ready[index].set_result(pid)
            case Done(ended, stats):
                self.worker_stats[index] = {**self.worker_info(index), **stats}
                if not self._done[index].done():
                    self._done[index].set_result(ended)
            case Failed(text):
                self.fail(index, f"client worker {index} failed: {text}")

    def worker_info(self, index: int) -> dict[str, Any]:
        """Who worker `index` is, for `worker_stats`."""
        return {"index": index, "pid": self._procs[index].pid}

    def post(self, index: int, msg: ToWorker) -> None:
        """Send one message to worker `index` (the transport: a socket here)."""
        try:
            self._conns[index].send(msg)
        except OSError:
            pass  # that worker is gone already

    def start_time(self, index: int) -> float:
        """The common start time on worker `index`'s own clock (one clock on one machine)."""
        return self._t0

    def fail(self, index: int, message: str) -> None:
        """Worker `index` failed: the run fails (the first message is kept), all stop."""
        if self.failure is None:
            self.failure = message
        if not self._ready[index].done():
            self._ready[index].set_result(-1)
        if not self._done[index].done():
            self._done[index].set_result("failed")
        self.send_stop()

    def _update_progress(self, index: int, snapshot: Progress) -> None:
        self._progress[index] = snapshot
        snaps = [s for s in self._progress if s is not None]
        p = self.progress
        p.sent = sum(s.sent for s in snaps)
        p.done = sum(s.done for s in snaps)
        p.errors = sum(s.errors for s in snaps)
        p.in_flight = sum(s.in_flight for s in snaps)
        p.peak_in_flight = sum(s.peak_in_flight for s in snaps)
        p.output_chunks = sum(s.output_chunks for s in snaps)
        p.not_sent = sum(s.not_sent for s in snaps)
        p.drain_cancelled = sum(s.drain_cancelled for s in snaps)
        planned = [s.planned for s in snaps if s.planned is not None]
        p.planned = sum(planned) if planned else None
        p.stage = max((s.stage for s in snaps), default=0)
        p.error_kinds = _sum_counts(s.error_kinds for s in snaps)

    def send_stop(self) -> None:
        """Tell every worker to stop (once)."""
        if self._stopping:
            return
        self._stopping = True
        for cfg in self._configs:
            self.post(cfg.index, Stop())

    async def run(self, stages: list[StagePlan], stop: asyncio.Event) -> str:
        count = len(self._configs)
        for cfg in self._configs:
            self.post(cfg.index, Start(self.start_time(cfg.index), shard_stages(stages, cfg.index, count)))
        all_done: asyncio.Future[list[str]] = asyncio.ensure_future(asyncio.gather(*self._done))
        stopper: asyncio.Future[bool] = asyncio.ensure_future(stop.wait())
        await asyncio.wait((all_done, stopper), return_when=asyncio.FIRST_COMPLETED)
        if not all_done.done():
            self.send_stop()
            try:
                await asyncio.wait_for(asyncio.shield(all_done), STOP_TIMEOUT_S)
            except TimeoutError:
                self.fail(0, f"client workers did not stop within {STOP_TIMEOUT_S:g} s")
        stopper.cancel()
        endings = [f.result() for f in self._done]
        if self.failure is not None:
            raise RunFailed(self.failure)
        if stop.is_set() or "interrupted" in endings:
            return "interrupted"
        return "completed"

    async def cancel_in_flight(self) -> None:
        self.send_stop()
        pending = [f for f in self._done if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=STOP_TIMEOUT_S)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        self.send_stop()
        deadline = time.monotonic() + 5.0
        for proc in self._procs:
            while proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a process
                await asyncio.sleep(0.02)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for conn in self._conns:
            try:
                loop.remove_reader(conn.fileno())
            except (OSError, ValueError):
                pass
            conn.close()


def _sum_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for one in counts:
        for key, value in one.items():
            total[key] = total.get(key, 0) + value
    return total


# --- worker process ----------------------------------------------------------------------


async def _worker(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    inbox: asyncio.Queue[ToWorker] = asyncio.Queue()

    def on_readable() -> None:
        try:
            while conn.poll():
                msg = conn.recv()
                if isinstance(msg, Stop):
                    stop.set()
                else:
                    inbox.put_nowait(msg)
        except (EOFError, OSError):  # the parent is gone: stop and exit
            loop.remove_reader(conn.fileno())
            stop.set()
            inbox.put_nowait(Gone())

    loop.add_reader(conn.fileno(), on_readable)
    os.set_blocking(conn.fileno(), True)  # whole messages, even when the parent is slow to read
    # SIGTERM to the whole process group: stop like the parent would have asked, keep records.
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    msg = await inbox.get()
    if not isinstance(msg, Configure):
        return
    await run_shard(msg.config, conn.send, inbox.get, stop)


def _main(fd: int) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    conn = Connection(fd)
    try:
        import uvloop
    except ImportError:
        factory = None
    else:
        factory = uvloop.new_event_loop
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(_worker(conn))
    except BaseException:  # reported to the parent, which fails the run
        try:
            conn.send(Failed(traceback.format_exc()[-2000:]))
        except OSError:
            pass
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(int(sys.argv[1])))
