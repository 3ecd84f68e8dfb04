"""Load from several machines: the schedule's shards run in Ray actors (`bench run --ray`).

The only module that imports `ray` (lazily; `pip install 'llm-bench-harness[ray]'`). It reuses the
local worker processes' pieces: the same shards of the one seeded schedule
(`bench.runner.shards`), the same per-shard loop (`bench.runner.shard.run_shard`) and messages
(`bench.runner.messages`) inside each actor, the same parent-side
bookkeeping (`WorkerPool`: records into the one run directory, progress, per-worker loop
lag and CPU, stop on SIGINT/SIGTERM). Only the transport differs: the driver long-polls
each actor for its message batches (`take`), and sends `start`/`stop` as actor calls.

Clocks: `perf_counter` is not shared between machines. Before the start, the driver reads
each actor's clock in several round trips; the one with the smallest round-trip time gives
the offset (actor clock minus driver clock at the midpoint) and its uncertainty (half that
round trip). The actor is told the common start time on its own clock (driver t0 + offset),
so every stored time (seconds since t0) is on the driver's timeline. Per-request latencies
(TTFT, ITL, E2E) are differences on one actor's clock and do not depend on the offset;
the offset matters for how the actors' sends interleave and for comparing times across
actors (and with the server metrics the driver scrapes).
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import socket
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

from bench.errors import BenchInputError, RunFailed
from bench.records import Progress
from bench.runner.messages import Done, Failed, FromWorker, Start, Stop, ToWorker
from bench.runner.shard import run_shard
from bench.runner.shards import WorkerConfig
from bench.runner.workers import READY_TIMEOUT_S, ValuesSink, WorkerPool
from bench.workload.plan import StagePlan

__all__ = [
    "CLOCK_ROUND_TRIPS", "CONNECT_CHECK_S", "INSTALL_HINT", "KILL_WAIT_S", "START_DELAY_S", "TAKE_WAIT_S", "RayPool", "ShardActor",
    "actor_cpus", "check_reachable", "clock_offset", "connect", "disconnect", "require_ray",
]

INSTALL_HINT = "--ray needs Ray, which is not installed: pip install 'llm-bench-harness[ray]'"
CLOCK_ROUND_TRIPS = 16
TAKE_WAIT_S = 0.25  # an actor's reply to `take` waits at most this long for a message
START_DELAY_S = 1.0  # the common start time is this far in the future (actor calls take ms)
KILL_WAIT_S = 5.0
CONNECT_CHECK_S = 5.0  # a Ray address must accept a TCP connection within this long


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BenchInputError(INSTALL_HINT) from None
    return ray


def actor_cpus(count: int, node_cpus: list[float]) -> float:
    """CPUs each actor asks for so that `count` actors spread over the nodes: the nodes'
    smallest CPU count divided by the actors a node must take (at least 1)."""
    if not node_cpus:
        return 1.0
    per_node = math.ceil(count / len(node_cpus))
    return float(max(1, int(min(node_cpus) // per_node)))


def clock_offset(samples: list[tuple[float, float, float]]) -> dict[str, Any]:
    """(driver send, actor clock, driver receive) triples -> the minimum-RTT estimate of
    the actor's clock minus the driver's, with its uncertainty (half that round trip)."""
    sent, remote, received = min(samples, key=lambda s: s[2] - s[0])
    rtt = received - sent
    return {"offset_s": remote - (sent + received) / 2.0, "uncertainty_ms": round(rtt / 2.0 * 1e3, 4),
            "rtt_min_ms": round(rtt * 1e3, 4), "round_trips": len(samples)}


PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the bench package, uploaded to every Ray node


def connect(address: str | None) -> tuple[bool, list[float]]:
    """Connect to Ray (`address`), or start a local Ray when none is given and this process
    is not connected yet. Returns (whether this call connected, CPUs of each alive node)."""
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "warning",
                                  # the actors import bench from the uploaded package on every node
                                  "runtime_env": {"py_modules": [str(PACKAGE_DIR)]}}
        if address and address != "local":
            kwargs["address"] = address
            check_reachable(address)
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RunFailed(f"ray: cannot connect to {address or 'a new local Ray'}: {exc}") from None
        started = True
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return started, [float((n.get("Resources") or {}).get("CPU", 1.0)) for n in nodes]


def check_reachable(address: str, timeout_s: float = CONNECT_CHECK_S) -> None:
    """Fail fast when a `host:port` (or `ray://host:port`) address has nothing listening:
    `ray.init` would retry for minutes (20 tries of a 30 s wait each in Ray 2.x).
    Other forms ("auto") are left to Ray. Raises RunFailed."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise RunFailed(f"ray: cannot connect to {address}: {exc.strerror or exc}") from None


def disconnect(started: bool) -> None:
    """Shut down (a local Ray we started) or disconnect (from a cluster we connected to)."""
    if started:
        require_ray().shutdown()


_ACTOR_CLASSES: dict[type, Any] = {}


def _actor_class(actor_type: type[ShardActor]) -> Any:
    if actor_type not in _ACTOR_CLASSES:
        _ACTOR_CLASSES[actor_type] = require_ray().remote(max_restarts=0)(actor_type)
    return _ACTOR_CLASSES[actor_type]


class ShardActor:
    """One shard in a Ray actor (an async actor: one event loop, like a worker process)."""

    def __init__(self) -> None:
        self._outbox: list[FromWorker] = []
        self._done_sent = False

    async def configure(self, cfg: WorkerConfig) -> dict[str, Any]:
        import ray

        self._inbox: asyncio.Queue[ToWorker] = asyncio.Queue()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._task = asyncio.ensure_future(self._main(cfg))
        return {"host": socket.gethostname(), "node_id": ray.get_runtime_context().get_node_id(),
                "pid": os.getpid()}

    async def _main(self, cfg: WorkerConfig) -> None:
        try:
            await run_shard(cfg, self._send, self._inbox.get, self._stop)
        except BaseException:
            self._send(Failed(traceback.format_exc()[-2000:]))
            return
        if not self._done_sent:  # stopped before the start
            self._send(Done("interrupted", {}))

    def _send(self, msg: FromWorker) -> None:
        if isinstance(msg, Done):
            self._done_sent = True
        self._outbox.append(msg)
        self._wake.set()

    async def clock(self) -> float:
        return time.perf_counter()

    async def start(self, t0: float, stages: list[StagePlan]) -> None:
        self._inbox.put_nowait(Start(t0, stages))

    async def stop(self) -> None:
        self._stop.set()
        self._inbox.put_nowait(Stop())

    async def take(self, wait_s: float) -> list[FromWorker]:
        """Every message since the last call; waits up to `wait_s` for one."""
        if not self._outbox:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait_s)
            except TimeoutError:
                pass
        out, self._outbox = self._outbox, []
        return out


async def _result(ref: Any) -> Any:
    return await asyncio.wrap_future(ref.future())


class RayPool(WorkerPool):
    """K Ray actors behind the Runner's interface; `WorkerPool` does the bookkeeping."""

    start_delay_s = START_DELAY_S
    # What each actor runs. A seam for the tests: a subclass emulates another machine's clock
    # (a skewed perf_counter) or an actor that fails.
    actor_type: type[ShardActor] = ShardActor

    def __init__(self, configs: list[WorkerConfig], sink: ValuesSink, progress: Progress, node_cpus: list[float],
                 continue_on_failure: bool = False) -> None:
        super().__init__(configs, sink, progress)
        self._node_cpus = node_cpus
        self._continue = continue_on_failure
        self._actors: list[Any] = []
        self._info: list[dict[str, Any]] = [{"index": c.index} for c in configs]
        self._offsets = [0.0 for _ in configs]
        self._pumps: list[asyncio.Future[None]] = []

    async def start(self) -> None:
        ray = require_ray()
        loop = asyncio.get_running_loop()
        cls = _actor_class(self.actor_type)
        cpus = actor_cpus(len(self._configs), self._node_cpus)
        run = uuid.uuid4().hex[:8]
        for cfg in self._configs:
            # Named (bench-RUN-K) so that `ray list actors` shows whose they are; owned by this
            # driver, so they die with it even when it is killed outright.
            self._actors.append(cls.options(num_cpus=cpus, scheduling_strategy="SPREAD",
                                            name=f"bench-{run}-{cfg.index}").remote())
            self._ready.append(loop.create_future())
            self._done.append(loop.create_future())
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                infos = await asyncio.gather(*(_result(a.configure.remote(cfg))
                                               for a, cfg in zip(self._actors, self._configs, strict=True)))
                for index, info in enumerate(infos):
                    self._info[index].update(info, num_cpus=cpus)
                    self._pumps.append(asyncio.ensure_future(self._pump(index)))
                await asyncio.gather(*self._ready)
                if self.failure is not None:
                    raise RunFailed(self.failure)
                for index in range(len(self._actors)):
                    await self._measure_clock(index)
        except TimeoutError:
            raise RunFailed(f"ray: load-generator actors not ready after {READY_TIMEOUT_S:g} s") from None
        except ray.exceptions.RayError as exc:
            raise RunFailed(f"ray: a load-generator actor failed to start: {_short(exc)}") from None

    async def _measure_clock(self, index: int) -> None:
        actor = self._actors[index]
        samples = []
        for _ in range(CLOCK_ROUND_TRIPS):
            sent = time.perf_counter()
            remote = await _result(actor.clock.remote())
            samples.append((sent, remote, time.perf_counter()))
        clock = clock_offset(samples)
        self._offsets[index] = clock["offset_s"]
        self._info[index]["clock"] = {"offset_ms": round(clock.pop("offset_s") * 1e3, 4), **clock}

    async def _pump(self, index: int) -> None:
        """Feed actor `index`'s messages to the bookkeeping until it is done."""
        ray = require_ray()
        actor = self._actors[index]
        try:
            while not self._done[index].done():
                for msg in await _result(actor.take.remote(TAKE_WAIT_S)):
                    self.handle(index, msg)
        except ray.exceptions.RayError as exc:
            self._lost(index, f"ray actor {index} on {self._info[index].get('host', '?')} died: {_short(exc)}")

    def _lost(self, index: int, message: str) -> None:
        self._info[index]["lost"] = message
        self.worker_stats[index] = {**self.worker_info(index), **self.worker_stats[index]}
        alive = [i for i, f in enumerate(self._done) if i != index and not f.done()]
        if self._continue and alive and self._ready[index].done():
            self.notes.append(f"{message}; the run went on with the other {len(alive)} actor(s) "
                              "(ray.continue_on_actor_failure), so the offered load fell short from then on")
            if not self._done[index].done():
                self._done[index].set_result("failed")
            return
        self.fail(index, message)

    def worker_info(self, index: int) -> dict[str, Any]:
        return dict(self._info[index])

    def post(self, index: int, msg: ToWorker) -> None:
        actor = self._actors[index] if index < len(self._actors) else None
        if actor is None:
            return
        if isinstance(msg, Start):
            actor.start.remote(msg.t0, msg.stages)
        elif isinstance(msg, Stop):
            actor.stop.remote()

    def start_time(self, index: int) -> float:
        return self._t0 + self._offsets[index]  # the driver's t0 on the actor's clock

    async def run(self, stages: list[StagePlan], stop: asyncio.Event) -> str:
        ended = await super().run(stages, stop)
        for index, stats in enumerate(self.worker_stats):
            if not stats:  # lost with `continue`: keep who it was and why
                self.worker_stats[index] = self.worker_info(index)
        return ended

    async def aclose(self) -> None:
        """Stop the actors, give them a moment to hand in their last records, then kill them."""
        ray = require_ray()
        self.send_stop()
        pending = [f for f in self._done if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=KILL_WAIT_S)
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        for actor in self._actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                pass
        self._actors = []


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _short(exc: BaseException) -> str:
    """Ray's first line says what happened to the actor; with a traceback below it, the last line
    says why (`RuntimeError: ...`): both, without the terminal colours Ray puts in."""
    lines = [line.strip() for line in _ANSI.sub("", str(exc)).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    text = lines[0][:300]
    return text if len(lines) == 1 else f"{text}: {lines[-1][:300]}"
