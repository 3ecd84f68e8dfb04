"""The messages between `bench run` and its client workers (processes or Ray actors).

Small typed records; NamedTuples, so that they pickle as compactly as the plain tuples they
replace (a class reference and the fields: one batch of up to 256 record rows dominates
every `Records` message). Parent to worker: `Configure`, `Start`, `Stop`. Worker to
parent: `Ready`, `Records`..., then `Done` (or `Failed`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from bench.records import Progress
from bench.runner.shards import WorkerConfig
from bench.workload.plan import StagePlan

__all__ = ["Configure", "Done", "Failed", "FromWorker", "Gone", "Ready", "Records", "Start", "Stop", "ToWorker"]


class Configure(NamedTuple):
    """First message to a worker process: its shard's configuration."""

    config: WorkerConfig


class Start(NamedTuple):
    """Send the shard's stages from `t0`, on the worker's own perf_counter clock."""

    t0: float
    stages: list[StagePlan]


class Stop(NamedTuple):
    """Stop sending; cancel what is in flight (recorded), then report `Done`."""


class Gone(NamedTuple):
    """Not sent: the worker's own note that the parent closed the connection."""


class Ready(NamedTuple):
    """Client and workload built, GC frozen: waiting for `Start`."""

    pid: int


class Records(NamedTuple):
    """Finished requests (`bench.records.record_values` rows) and a progress snapshot."""

    values: list[tuple[Any, ...]]
    progress: Progress


class Done(NamedTuple):
    """The shard ended ("completed" | "interrupted"); `stats`: its loop lag and CPU."""

    ended: str
    stats: dict[str, Any]


class Failed(NamedTuple):
    """The worker failed; the tail of its traceback."""

    traceback: str


ToWorker = Configure | Start | Stop | Gone
FromWorker = Ready | Records | Done | Failed
