"""Worker processes: one global seeded schedule, sharded across K client processes.

Each worker (`python -m bench.runner.workers FD`) has its own event loop (uvloop when installed),
its own AsyncOpenAI-built client and its own loop/CPU monitor. The parent sends each the
same start time `t0` (CLOCK_MONOTONIC is shared between processes, so `perf_counter()`
stamps from every worker are on one clock) and its shard of every stage:

- open loop: arrival i goes to worker i mod K (each keeps the global offsets, so the
  union is exactly the single-process schedule); the workload skips the specs of the
  other workers, so request i carries the same prompt as in a single-process run;
- closed loop: the concurrency (and max_requests) split as evenly as possible.

Request ids are global and unique: worker k numbers its requests k, k+K, k+2K, ...
Records stream back in batches (as plain tuples, pickled over a socketpair) to the parent, which writes
the one run directory, so a run with workers has the same shape as one without.
SIGINT/SIGTERM reach the parent (workers ignore SIGINT from the terminal); it tells
every worker to stop, and their cancelled in-flight requests are recorded as usual.

One shard's life (`run_shard`) and the parent's bookkeeping (`WorkerPool`) do not depend on
the transport: a worker process here, a Ray actor in `bench.runner.ray_workers`.
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
from dataclasses import asdict, dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Awaitable, Callable

import numpy as np

from bench.errors import RunFailed
from bench.records import RequestRecord, record_values
from bench.runner.runner import Progress
from bench.workload.plan import RunPlan, StagePlan
from bench.scenario.schema import Scenario
from bench.scenario.prompts import TokenModel

_BATCH_S = 0.02  # records reach the parent within this long of finishing
_BATCH_MAX = 256
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
# `auto`: one process is enough below these (measured ceilings in the README, with headroom).
AUTO_RATE_PER_WORKER = 1000.0
AUTO_STREAMS_PER_WORKER = 512


@dataclass(frozen=True)
class WorkerConfig:
    index: int
    count: int
    scenario: Scenario
    scenario_path: Path
    base_url: str
    api_key: str | None
    model: str
    max_connections: int
    plan: RunPlan
    token_model: TokenModel | None = None  # from the parent's probe: the prompt sizes a single process uses


def resolve_workers(value: int | str, offered_rate: float | None, peak_streams: int,
                    simulated: bool = False, cpus: int | None = None) -> int:
    """`load.workers`: a number, or `auto`: as many as the load needs, at most one per core
    (one core left to the built-in simulator when it runs on this machine)."""
    if value != "auto":
        return max(1, int(value))
    cores = cpus or os.cpu_count() or 1
    available = max(1, cores - (1 if simulated else 0))
    needed = 1
    if offered_rate:
        needed = max(needed, int(np.ceil(offered_rate / AUTO_RATE_PER_WORKER)))
    if peak_streams:
        needed = max(needed, int(np.ceil(peak_streams / AUTO_STREAMS_PER_WORKER)))
    return max(1, min(needed, available))


def _split(total: int | None, k: int, count: int) -> int | None:
    if total is None:
        return None
    return total // count + (1 if k < total % count else 0)


def shard_stages(stages: list[StagePlan], k: int, count: int) -> list[StagePlan]:
    """Worker k's part of every stage (see the module docstring)."""
    out = []
    for stage in stages:
        if stage.offsets is not None:
            items = stage.items[k::count] if stage.items is not None else None
            out.append(replace(stage, offsets=stage.offsets[k::count], items=items,
                               max_requests=_split(stage.max_requests, k, count)))
        else:
            out.append(replace(stage, concurrency=_split(stage.concurrency, k, count),
                               max_requests=_split(stage.max_requests, k, count)))
    return out


def shard_plan(plan: RunPlan, k: int, count: int) -> RunPlan:
    max_concurrency = _split(plan.max_concurrency, k, count)
    rate_limit = plan.send_rate_limit / count if plan.send_rate_limit else None
    return replace(plan, max_requests=_split(plan.max_requests, k, count),
                   max_concurrency=max(1, max_concurrency) if max_concurrency is not None else None,
                   send_rate_limit=rate_limit)


class _ShardedSource:
    """Worker k's view of the workload: the spec the single-process run would send as the
    same request (the others' specs are drawn and passed over, keeping every generator in
    step). Two workers therefore never send the same draw, and synthetic prompts, one per
    draw, never repeat across workers."""

    def __init__(self, inner: Any, index: int, count: int) -> None:
        self._inner = inner
        self._index = index
        self._count = count
        self.keep_text = inner.keep_text

    def next_spec(self, item: int | None = None) -> Any:
        if item is not None:
            return self._inner.next_spec(item)
        spec = None
        for i in range(self._count):
            if i == self._index:
                spec = self._inner.next_spec(None)
            else:
                self._inner.skip_spec(None)  # not built: the prompt is made only where it is sent
        return spec

    def follow_up(self, spec: Any, reply: str) -> Any:
        return self._inner.follow_up(spec, reply)


# --- parent side -----------------------------------------------------------------------


class WorkerPool:
    """K worker processes behind the Runner's interface (`t0`, `run`, `cancel_in_flight`)."""

    def __init__(self, configs: list[WorkerConfig], sink: Any, progress: Progress) -> None:
        self._configs = configs
        self._sink = sink
        self.progress = progress
        self._t0 = 0.0
        self._procs: list[subprocess.Popen[bytes]] = []
        self._conns: list[Connection] = []
        self._ready: list[asyncio.Future[int]] = []
        self._done: list[asyncio.Future[str]] = []
        self._progress: list[dict[str, Any]] = [{} for _ in configs]
        self.worker_stats: list[dict[str, Any]] = [{} for _ in configs]
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
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                              env.get("PYTHONPATH")]))
            proc = subprocess.Popen([sys.executable, "-m", "bench.runner.workers", str(child.fileno())],
                                    pass_fds=[child.fileno()], env=env)
            child.close()
            conn = Connection(parent.detach())
            self._procs.append(proc)
            self._conns.append(conn)
            self._ready.append(loop.create_future())
            self._done.append(loop.create_future())
            loop.add_reader(conn.fileno(), self._on_readable, cfg.index)
            os.set_blocking(conn.fileno(), True)  # uvloop made it non-blocking: recv/send whole messages
            conn.send(("config", cfg))
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await asyncio.gather(*self._ready)
        except TimeoutError:
            raise RunFailed(f"client workers not ready after {READY_TIMEOUT_S:g} s") from None

    def _on_readable(self, index: int) -> None:
        conn = self._conns[index]
        try:
            while conn.poll():
                self._handle(index, conn.recv())
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(conn.fileno())
            if not self._done[index].done():
                code = self._procs[index].poll()
                self._fail(index, f"client worker {index} exited (code {code}) before finishing")

    def _handle(self, index: int, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "records":
            _, records, progress = msg
            self._sink.write_values(records)
            self._update_progress(index, progress)
        elif kind == "ready":
            if not self._ready[index].done():
                self._ready[index].set_result(msg[1])
        elif kind == "done":
            _, ended, stats = msg
            self.worker_stats[index] = {**self._worker_info(index), **stats}
            if not self._done[index].done():
                self._done[index].set_result(ended)
        elif kind == "error":
            self._fail(index, f"client worker {index} failed: {msg[1]}")

    def _worker_info(self, index: int) -> dict[str, Any]:
        return {"index": index, "pid": self._procs[index].pid}

    def _post(self, index: int, msg: tuple[Any, ...]) -> None:
        """Send one message to worker `index` (the transport: a socket here)."""
        try:
            self._conns[index].send(msg)
        except OSError:
            pass  # that worker is gone already

    def _start_time(self, index: int) -> float:
        """The common start time on worker `index`'s own clock (one clock on one machine)."""
        return self._t0

    def _fail(self, index: int, message: str) -> None:
        if self.failure is None:
            self.failure = message
        for future in (self._ready[index], self._done[index]):
            if not future.done():
                future.set_result("failed")  # type: ignore[arg-type]
        self._send_stop()

    def _update_progress(self, index: int, snapshot: dict[str, Any]) -> None:
        self._progress[index] = snapshot
        snaps = [s for s in self._progress if s]
        p = self.progress
        for name in ("sent", "done", "errors", "in_flight", "peak_in_flight", "output_chunks"):
            setattr(p, name, sum(int(s.get(name) or 0) for s in snaps))
        planned = [s.get("planned") for s in snaps if s.get("planned") is not None]
        p.planned = sum(planned) if planned else None
        p.stage = max((int(s.get("stage") or 0) for s in snaps), default=0)
        kinds: dict[str, int] = {}
        for s in snaps:
            for key, value in (s.get("error_kinds") or {}).items():
                kinds[key] = kinds.get(key, 0) + value
        p.error_kinds = kinds

    def _send_stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        for cfg in self._configs:
            self._post(cfg.index, ("stop",))

    async def run(self, stages: list[StagePlan], stop: asyncio.Event) -> str:
        count = len(self._configs)
        for cfg in self._configs:
            self._post(cfg.index, ("start", self._start_time(cfg.index), shard_stages(stages, cfg.index, count)))
        all_done = asyncio.ensure_future(asyncio.gather(*self._done))
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({all_done, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not all_done.done():
            self._send_stop()
            try:
                await asyncio.wait_for(asyncio.shield(all_done), STOP_TIMEOUT_S)
            except TimeoutError:
                self._fail(0, f"client workers did not stop within {STOP_TIMEOUT_S:g} s")
        stopper.cancel()
        endings = [f.result() for f in self._done]
        if self.failure is not None:
            raise RunFailed(self.failure)
        if stop.is_set() or "interrupted" in endings:
            return "interrupted"
        return "completed"

    async def cancel_in_flight(self) -> None:
        self._send_stop()
        pending = [f for f in self._done if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=STOP_TIMEOUT_S)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        self._send_stop()
        deadline = time.monotonic() + 5.0
        for proc in self._procs:
            while proc.poll() is None and time.monotonic() < deadline:
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


# --- worker side -----------------------------------------------------------------------


class _BatchSink:
    """Collects finished records; `flush` sends them to the parent in one message."""

    def __init__(self, send: Callable[[tuple[Any, ...]], None], progress: Progress) -> None:
        self._send = send
        self._progress = progress
        self._records: list[tuple[Any, ...]] = []

    def write(self, record: RequestRecord) -> None:
        self._records.append(record_values(record))
        if len(self._records) >= _BATCH_MAX:
            self.flush()

    def flush(self) -> None:
        records, self._records = self._records, []
        self._send(("records", records, asdict(self._progress)))

    async def flush_every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            if self._records:
                self.flush()


Send = Callable[[tuple[Any, ...]], None]


async def run_shard(cfg: WorkerConfig, send: Send, receive: Callable[[], Awaitable[tuple[Any, ...]]],
                    stop: asyncio.Event) -> None:
    """One shard, whoever drives it (a worker process, a Ray actor): build the client and the
    workload, send ("ready", pid), wait for ("start", t0, stages) with t0 on this process's
    `perf_counter` clock, run, stream ("records", batch, progress) and end with ("done", ended, stats)."""
    from bench.runner.client import ClientConfig, StreamClient
    from bench.runner.process import freeze_gc
    from bench.workload.plan import read_trace_for, trace_prompts_for
    from bench.runner.loopmon import LoopMonitor
    from bench.runner.runner import Runner
    from bench.workload.requests import Workload

    scenario = cfg.scenario
    client = StreamClient(ClientConfig(cfg.base_url, cfg.api_key, scenario.target.timeouts.connect_s,
                                       cfg.max_connections))
    try:
        trace = read_trace_for(scenario, cfg.scenario_path)
        workload = Workload(scenario, cfg.scenario_path, cfg.model, trace_prompts_for(scenario, trace),
                            cfg.token_model)
        source = _ShardedSource(workload, cfg.index, cfg.count) if cfg.count > 1 else workload
        freeze_gc()  # before "ready": a full collection after the start would make the first sends late
        send(("ready", os.getpid()))
        msg = await receive()
        if msg[0] != "start":
            return
        _, t0, stages = msg
        progress = Progress()
        sink = _BatchSink(send, progress)
        runner = Runner(cfg.plan, source, client, sink, t0, progress, id_start=cfg.index, id_step=cfg.count)
        monitor = LoopMonitor()
        monitor.start()
        flusher = asyncio.ensure_future(sink.flush_every(_BATCH_S))
        try:
            ended = await runner.run(stages, stop)
        finally:
            flusher.cancel()
            stats = await monitor.stop()
        sink.flush()
        send(("done", ended, stats))
    finally:
        await client.aclose()


async def _worker(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    def on_readable() -> None:
        try:
            while conn.poll():
                msg = conn.recv()
                if msg[0] == "stop":
                    stop.set()
                else:
                    inbox.put_nowait(msg)
        except (EOFError, OSError):  # the parent is gone: stop and exit
            loop.remove_reader(conn.fileno())
            stop.set()
            inbox.put_nowait(("gone",))

    loop.add_reader(conn.fileno(), on_readable)
    os.set_blocking(conn.fileno(), True)  # whole messages, even when the parent is slow to read
    # SIGTERM to the whole process group: stop like the parent would have asked, keep records.
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    msg = await inbox.get()
    if msg[0] != "config":
        return
    await run_shard(msg[1], conn.send, inbox.get, stop)


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
    except BaseException:  # noqa: BLE001 - reported to the parent, which fails the run
        try:
            conn.send(("error", traceback.format_exc()[-2000:]))
        except OSError:
            pass
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(int(sys.argv[1])))
