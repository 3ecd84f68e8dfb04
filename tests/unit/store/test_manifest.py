"""run.json as a typed model: it round-trips unchanged, keeps the keys earlier versions wrote
(a version 2 manifest still loads), and refuses what it does not know with one line."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.errors import BenchInputError, ValidityWarning
from bench.runner.loopmon import lag_cpu_stats
from bench.store import (
    MANIFEST,
    ClientInfo,
    Manifest,
    ProcessLoad,
    RaySetup,
    ScrapeStats,
    ServerInfo,
    WorkerInfo,
    read_manifest,
    write_manifest,
)


def _load(lag_ms: list[float]) -> dict[str, Any]:
    """A LoopMonitor's stats dict, as stored (the monitor's own function makes it)."""
    return lag_cpu_stats(np.array(lag_ms), np.array([20.0, 35.5]), wall_s=4.0, cpu_s=1.0, interval_ms=20.0)


# What bench wrote at schema version 2 (d19ec40): the client dict as the run loop filled it,
# Ray actors with their clocks, a lost actor, a worker that never reported, server JSON as
# the server sent it, and no `workload` (recorded since).
VERSION_2: dict[str, Any] = {
    "schema_version": 2, "bench_version": "0.4.0", "name": "ray-run",
    "scenario": {"name": "ray-run", "load": {"rate": 20.0}}, "scenario_path": "/tmp/ray.yaml",
    "target": {"base_url": "http://10.0.0.5:8000/v1", "endpoint": "chat", "simulated": False, "description": "vllm"},
    "model": "m", "seed": 42, "t0_perf_counter": 1234.5, "started_at": "2026-11-20T10:00:00.000+00:00",
    "ended_at": "2026-11-20T10:01:00.000+00:00", "ended": "completed", "end_reason": None,
    "python": "3.11.9", "platform": "Linux", "host": "driver",
    "client": {
        "library": "openai", "pid": 100, "arrival_stamps": "read",
        "prompt_tokens_model": {"overhead": 17.0, "per_word": 1.31},
        "worker_count": 3, "ray": {"address": "auto", "started_local": False, "nodes": 2},
        **_load([0.2, 0.3, 7.5]),
        "workers": [
            {"index": 0, "host": "gen-a", "node_id": "n0", "pid": 7, "num_cpus": 2.0,
             "clock": {"offset_ms": 3.25, "uncertainty_ms": 0.05, "rtt_min_ms": 0.1, "round_trips": 8},
             **_load([0.1, 0.2])},
            {"index": 1, "host": "gen-b", "node_id": "n1", "pid": 8, "num_cpus": 2.0,
             "clock": {"offset_ms": -812.4, "uncertainty_ms": 4.0, "rtt_min_ms": 8.0, "round_trips": 8},
             "lost": "ray actor 1 on gen-b died: ActorDiedError"},
            {},
        ],
        "warnings": [{"code": "client_loop_lag", "message": "client parent: event-loop lag p99 7.4 ms"}],
    },
    "server": {"version": {"version": "0.6.3"}, "props": None,
               "info": {"model_id": "m", "max_input_tokens": 4096, "tags": ["a", 1, None, {"x": 2.5}]},
               "metrics": {"url": "http://10.0.0.5:8000/metrics", "scrapes_ok": 60, "scrapes_failed": 1,
                           "last_error": "timeout"}},
    "stages": [{"kind": "open", "index": 0, "rate": 20.0}], "notes": ["note"],
}


def _store(tmp_path: Path, data: dict[str, Any]) -> Path:
    (tmp_path / MANIFEST).write_text(json.dumps(data), encoding="utf-8")
    return tmp_path


def test_a_version_2_manifest_loads_typed(tmp_path):
    manifest = read_manifest(_store(tmp_path, VERSION_2))
    client = manifest.client
    assert manifest.schema_version == 2 and manifest.ended == "completed" and manifest.workload is None
    assert client.arrival_stamps == "read" and client.worker_count == 3
    assert client.ray == RaySetup(address="auto", started_local=False, nodes=2)
    assert client.prompt_tokens_model is not None and client.prompt_tokens_model.per_word == 1.31
    assert client.loop_lag_ms is not None and client.loop_lag_ms.max == 7.5 and client.loop_lag_ms.count == 3
    workers = client.workers or []
    assert [w.index for w in workers] == [0, 1, None]
    assert workers[0].clock is not None and workers[0].clock.offset_ms == 3.25 and workers[0].cpu_percent is not None
    assert workers[1].lost and workers[1].loop_lag_ms is None and workers[2] == WorkerInfo()
    assert client.warnings == [ValidityWarning("client_loop_lag", "client parent: event-loop lag p99 7.4 ms")]
    assert manifest.server.version == {"version": "0.6.3"} and manifest.server.props is None
    assert manifest.server.metrics == ScrapeStats(url="http://10.0.0.5:8000/metrics", scrapes_ok=60,
                                                  scrapes_failed=1, last_error="timeout")


@pytest.mark.parametrize("version", [2, 3, 4])
def test_run_json_round_trips_with_the_keys_it_had(tmp_path, version):
    """Read, written again, read again: the same model, and the same JSON, key for key within
    `client` and `server` (no null added for what was never recorded, no null dropped that was)."""
    data = {**copy.deepcopy(VERSION_2), "schema_version": version}
    first = read_manifest(_store(tmp_path, data))
    out = tmp_path / "again"
    out.mkdir()
    write_manifest(out, first)
    # `workload` and `provenance` are the keys added: the top level writes every field (null when absent)
    stored = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    assert stored == {**data, "workload": None, "provenance": None}
    assert list(stored["client"]) == list(data["client"])  # in the order bench has always written them
    assert list(stored["client"]["workers"][0]) == list(data["client"]["workers"][0])
    assert read_manifest(out) == first


def test_typed_writes_store_what_the_run_loop_stored_as_dicts(tmp_path):
    """The fields the run sets one by one (bench/commands/run.py) give the dict it used to build."""
    client = ClientInfo.model_validate({"library": "openai", "pid": 100, "arrival_stamps": "read"})
    client.worker_count = 3
    client.ray = RaySetup(address="auto", started_local=False, nodes=2)
    client.record_load(_load([0.2, 0.3, 7.5]))
    client.workers = [WorkerInfo.model_validate(w) for w in VERSION_2["client"]["workers"]]
    client.warnings = [ValidityWarning("client_loop_lag", "client parent: event-loop lag p99 7.4 ms")]
    server = ServerInfo.model_validate({"version": {"version": "0.6.3"}, "props": None,
                                        "info": VERSION_2["server"]["info"]})
    server.metrics = ScrapeStats(url="http://10.0.0.5:8000/metrics", scrapes_ok=60, scrapes_failed=1,
                                 last_error="timeout")
    want = {k: v for k, v in VERSION_2["client"].items() if k != "prompt_tokens_model"}
    assert client.model_dump(mode="json") == want
    assert server.model_dump(mode="json") == VERSION_2["server"]
    assert ClientInfo().model_dump() == {} and ServerInfo().model_dump() == {}


def test_a_new_manifest_writes_empty_sections_as_before(tmp_path):
    manifest = Manifest(schema_version=3, bench_version="t", name="n", scenario={}, target={}, model=None, seed=0,
                        t0_perf_counter=0.0, started_at="now", ended="running", python="3", platform="p", host="h")
    write_manifest(tmp_path, manifest)
    stored = json.loads((tmp_path / MANIFEST).read_text(encoding="utf-8"))
    assert stored["client"] == {} and stored["server"] == {} and stored["workload"] is None
    assert stored["end_reason"] is None and stored["notes"] == [] and stored["stages"] == []


def test_process_load_is_what_the_monitor_stores():
    stats = _load([0.5, 1.0, 3.0])
    assert ProcessLoad.model_validate(stats).model_dump() == stats


@pytest.mark.parametrize(("change", "where"), [
    (lambda d: d["client"].update(lag=1), "client.lag"),
    (lambda d: d["client"]["workers"][0]["clock"].update(skew=1), "client.workers.0.clock.skew"),
    (lambda d: d["server"].update(health={}), "server.health"),
    (lambda d: d.update(ended="paused"), "ended"),
    (lambda d: d["client"].update(arrival_stamps="nic"), "client.arrival_stamps"),
])
def test_what_the_format_does_not_know_is_refused_in_one_line(tmp_path, change, where):
    data = copy.deepcopy(VERSION_2)
    change(data)
    with pytest.raises(BenchInputError) as caught:
        read_manifest(_store(tmp_path, data))
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / MANIFEST}: {where}:") and "\n" not in message
