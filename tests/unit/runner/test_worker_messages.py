"""Worker messages are small typed records that pickle about as compactly as the plain
tuples they replaced, and the pool sums its workers' progress snapshots."""

from __future__ import annotations

import pickle
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

import numpy as np

from bench.records import Progress
from bench.runner.messages import Configure, Done, Failed, Ready, Records, Start, Stop
from bench.runner.shards import WorkerConfig
from bench.runner.workers import WorkerPool
from bench.scenario.schema import Timeouts
from bench.workload.plan import RunPlan, StagePlan


def _dump(msg: Any) -> bytes:
    return bytes(ForkingPickler.dumps(msg))  # what Connection.send writes


def _rows(n: int) -> list[tuple[Any, ...]]:
    return [(i, 0, "measure", "", -1, -1, 0, i, i * 0.01, 0.5, 0.6, 0.7, 0.9, "ok", None, None, 200, None,
             "stop", 9, 16, f"r{i}", 16, 1, True, False, 40) for i in range(n)]


def test_messages_round_trip_as_their_own_types():
    progress = Progress(planned=10, sent=4, done=3, errors=1, error_kinds={"http_503": 1})
    messages = [Ready(123), Records(_rows(3), progress), Done("completed", {"loop_lag_ms": {"p99": 1.0}}),
                Failed("Traceback ..."), Stop(), Start(12.5, [StagePlan(0, offsets=np.array([0.0, 0.5]))])]
    for msg in messages:
        back = pickle.loads(_dump(msg))
        assert type(back) is type(msg)
        if not isinstance(msg, Start):
            assert back == msg
    start = pickle.loads(_dump(messages[-1]))
    assert start.t0 == 12.5 and start.stages[0].offsets.tolist() == [0.0, 0.5]


def test_a_records_batch_costs_no_more_than_a_plain_tuple():
    progress = Progress(planned=256, sent=256, done=256)
    rows = _rows(256)
    typed = len(_dump(Records(rows, progress)))
    plain = len(_dump(("records", rows, {"planned": 256, "sent": 256, "done": 256, "errors": 0, "in_flight": 0,
                                         "peak_in_flight": 0, "output_chunks": 0, "stage": 0,
                                         "error_kinds": {}})))
    assert typed <= plain * 1.01


class _Sink:
    def __init__(self) -> None:
        self.batches: list[list[tuple[Any, ...]]] = []

    def write_values(self, batch: list[tuple[Any, ...]]) -> None:
        self.batches.append(batch)


def test_the_pool_sums_its_workers_progress():
    plan = RunPlan("/chat/completions", Timeouts())
    configs = [WorkerConfig(index=k, count=2, scenario=None, scenario_path=Path("s.yaml"),  # type: ignore[arg-type]
                            base_url="http://127.0.0.1:9/v1", api_key=None, model="m", max_connections=8, plan=plan)
               for k in range(2)]
    sink = _Sink()
    pool = WorkerPool(configs, sink, Progress())
    pool.handle(0, Records(_rows(2), Progress(planned=5, sent=3, done=2, errors=1, in_flight=1, peak_in_flight=2,
                                              output_chunks=7, stage=0, error_kinds={"http_503": 1})))
    pool.handle(1, Records(_rows(1), Progress(planned=4, sent=2, done=1, in_flight=1, peak_in_flight=1,
                                              output_chunks=3, stage=1, error_kinds={"http_503": 2, "x": 1})))
    pool.handle(0, Records([], Progress(planned=5, sent=4, done=4, errors=1, peak_in_flight=2, output_chunks=9,
                                        stage=1, error_kinds={"http_503": 1})))
    assert [len(b) for b in sink.batches] == [2, 1, 0]
    assert pool.progress == Progress(planned=9, sent=6, done=5, errors=1, in_flight=1, peak_in_flight=3,
                                     output_chunks=12, stage=1, error_kinds={"http_503": 3, "x": 1})
    assert isinstance(Configure(configs[0]).config, WorkerConfig)
