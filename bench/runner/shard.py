"""One shard's life, whoever drives it (a worker process, a Ray actor): build the client and
the workload, report `Ready`, wait for `Start`, run, stream `Records` batches, end with `Done`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import replace

from bench.records import Progress, RequestRecord, record_values
from bench.runner.messages import Done, FromWorker, Ready, Records, Start, ToWorker
from bench.runner.shards import ShardedSource, WorkerConfig

__all__ = ["BATCH_MAX", "BATCH_S", "BatchSink", "Receive", "Send", "run_shard"]

# Records reach the parent within this long of finishing. Each batch costs a progress
# snapshot, a pickle, a pipe write and a parent wake-up: every 20 ms that was 3 % of the
# client's CPU at 1,024 paced streams with 2 workers (simultaneous A/B, 4 rounds).
BATCH_S = 0.1
BATCH_MAX = 256

Send = Callable[[FromWorker], None]
Receive = Callable[[], Awaitable[ToWorker]]


class BatchSink:
    """Collects finished records (as `record_values` rows); `flush` sends them to the parent
    in one `Records` message with a snapshot of the progress."""

    def __init__(self, send: Send, progress: Progress) -> None:
        self._send = send
        self._progress = progress
        self._records: list[tuple[object, ...]] = []

    def write(self, record: RequestRecord) -> None:
        self._records.append(record_values(record))
        if len(self._records) >= BATCH_MAX:
            self.flush()

    def flush(self) -> None:
        records, self._records = self._records, []
        progress = self._progress  # a copy: a Ray actor's outbox is serialised later
        self._send(Records(records, replace(progress, error_kinds=dict(progress.error_kinds))))

    async def flush_every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            if self._records:
                self.flush()


async def run_shard(cfg: WorkerConfig, send: Send, receive: Receive, stop: asyncio.Event) -> None:
    """Run worker `cfg.index`'s shard: `Ready(pid)`, then on `Start(t0, stages)` (t0 on this
    process's perf_counter clock) send them, `Records` as requests finish, `Done(ended, stats)`.
    Returns without `Done` when anything but `Start` comes first."""
    from bench.runner.client import ClientConfig, StreamClient
    from bench.runner.loopmon import LoopMonitor
    from bench.runner.process import freeze_gc
    from bench.runner.runner import Runner
    from bench.workload.plan import read_trace_for, trace_prompts_for
    from bench.workload.requests import Workload

    scenario = cfg.scenario
    client = StreamClient(ClientConfig(cfg.base_url, cfg.api_key, scenario.target.timeouts.connect_s,
                                       cfg.max_connections))
    try:
        trace = read_trace_for(scenario, cfg.scenario_path)
        workload = Workload(scenario, cfg.scenario_path, cfg.model, trace_prompts_for(scenario, trace),
                            cfg.token_model)
        source = ShardedSource(workload, cfg.index, cfg.count) if cfg.count > 1 else workload
        freeze_gc()  # before "ready": a full collection after the start would make the first sends late
        send(Ready(os.getpid()))
        msg = await receive()
        if not isinstance(msg, Start):
            return
        progress = Progress()
        sink = BatchSink(send, progress)
        runner = Runner(cfg.plan, source, client, sink, msg.t0, progress, id_start=cfg.index, id_step=cfg.count)
        monitor = LoopMonitor()
        monitor.start()
        flusher = asyncio.ensure_future(sink.flush_every(BATCH_S))
        try:
            ended = await runner.run(msg.stages, stop)
        finally:
            flusher.cancel()
            stats = await monitor.stop()
        sink.flush()
        send(Done(ended, stats))
    finally:
        await client.aclose()
