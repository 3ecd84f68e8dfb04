"""`bench run --ray`: the schedule's shards in Ray actors, one run directory (needs `llm-bench-harness[ray]`).

Run with `python -m pytest -m ray`; a local Ray with 2 CPUs is started once for the module.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import ray  # tests/conftest.py leaves this module out when Ray is not installed
from benchtest import run_in_process, sim_truth, write_scenario

import bench
from bench.errors import RunFailed
from bench.runner import ray_workers
from bench.runner.ray_workers import RayPool, ShardActor
from bench.sim import start_sim

pytestmark = pytest.mark.ray
# The actor subclasses below travel to the actors by value: the workers cannot import this module.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning",
             runtime_env={"py_modules": [os.path.dirname(bench.__file__)]})
    try:
        yield ray
    finally:
        ray.shutdown()


def test_a_run_that_started_ray_shuts_it_down_after_a_failure(scenario_dir, monkeypatch):
    """In process (a library run): the local Ray the run started is gone after its actors
    failed. First in this module: the module's own local Ray is not up yet."""
    assert not ray.is_initialized()
    monkeypatch.setattr(RayPool, "actor_type", BrokenActor)
    with start_sim(profile="zero", seed=3) as sim:
        with pytest.raises(RunFailed, match="failed to start"):
            run_in_process(scenario_dir, _scenario(sim.base_url, "own", {"workers": 1}), out="own")
    assert not ray.is_initialized()


def _alive_actors() -> list[str]:
    from ray._private import state

    return [a["ActorID"] for a in state.actors().values() if a["State"] != "DEAD"]


def _scenario(base_url: str, name: str, ray_section: dict | None) -> dict:
    data = {"name": name, "seed": 5, "target": {"base_url": base_url},
            "requests": {"synthetic": {"prompt_tokens": 16, "output_tokens": 8}},
            "load": {"rate": 150, "arrival": "poisson", "duration": 3}}
    if ray_section is not None:
        data["ray"] = ray_section
    return data


def test_ray_run_matches_a_local_run(local_ray, scenario_dir):
    with start_sim(profile="zero", seed=3) as sim:
        local = run_in_process(scenario_dir, _scenario(sim.base_url, "local", None), out="local").run
        remote = run_in_process(scenario_dir, _scenario(sim.base_url, "ray", {"workers": 2}), out="ray").run
    assert list(local.requests.columns) == list(remote.requests.columns)
    assert list(local.chunks.columns) == list(remote.chunks.columns)
    assert sorted(p.name for p in local.path.iterdir()) == sorted(p.name for p in remote.path.iterdir())
    assert len(local.requests) == len(remote.requests) > 300
    assert remote.requests["request_id"].is_unique and (remote.requests["status"] == "ok").all()
    assert set(remote.requests["request_id"] % 2) == {0, 1}  # records from both actors
    merged = local.requests.merge(remote.requests, on="request_id", suffixes=("_l", "_r"))
    assert np.allclose(merged["scheduled_s_l"], merged["scheduled_s_r"])
    assert (merged["prompt_index_l"] == merged["prompt_index_r"]).all()
    offered = remote.summary.to_json()["rate"]["offered"]
    rate_l, rate_r = local.summary.to_json()["rate"]["achieved"], remote.summary.to_json()["rate"]["achieved"]
    assert abs(rate_r - rate_l) / rate_l < 0.05 and abs(rate_r - offered) / offered < 0.05
    client = remote.manifest.client
    assert client.worker_count == 2 and client.ray is not None and client.ray.started_local is False
    actors = client.workers or []
    assert [a.index for a in actors] == [0, 1]
    for actor in actors:
        assert actor.host and actor.pid and actor.node_id
        clock = actor.clock
        assert clock is not None and None not in (clock.round_trips, clock.uncertainty_ms, clock.offset_ms)
        assert (clock.round_trips or 0) >= 8 and 0 < (clock.uncertainty_ms or 0) < 50
        assert abs(clock.offset_ms or 0) < 50  # one machine: one CLOCK_MONOTONIC
        assert actor.loop_lag_ms and actor.cpu_percent
        assert (actor.loop_lag_ms.count or 0) > 0 and actor.cpu_percent.mean is not None
    from bench.report.document import report_tables

    table = next(t for t in report_tables(remote) if t.title.startswith("Client workers"))
    assert [row[1] for row in table.rows] == [a.host for a in actors]
    assert sum(int(row[2].replace(",", "")) for row in table.rows) == len(remote.requests)
    # stamps on the driver's timeline: sends start at t0 and follow the global schedule
    lag = (remote.requests["sent_s"] - remote.requests["scheduled_s"]).to_numpy()
    assert np.median(lag) < 0.01 and lag.min() > -0.005
    assert _alive_actors() == []


def _kill_one_actor_after(journal, records: int, killed: dict) -> threading.Thread:
    def kill() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if journal.exists() and journal.read_bytes().count(b"\n") >= records and _alive_actors():
                victim = sorted(n for n in ray.util.list_named_actors() if n.startswith("bench-"))[0]
                ray.kill(ray.get_actor(victim), no_restart=True)
                killed["name"] = victim
                return
            time.sleep(0.05)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def test_a_dead_actor_fails_the_run_and_keeps_its_records(local_ray, scenario_dir):
    killed: dict = {}
    with start_sim(profile="zero", seed=3) as sim:
        data = _scenario(sim.base_url, "dead", {"workers": 2})
        data["load"]["duration"] = 8
        killer = _kill_one_actor_after(scenario_dir / "dead" / "requests.jsonl", 20, killed)
        with pytest.raises(RunFailed, match=r"ray actor .* died"):
            run_in_process(scenario_dir, data, out="dead")
        killer.join(5)
    assert killed.get("name")
    manifest = json.loads((scenario_dir / "dead" / "run.json").read_text())
    assert manifest["ended"] == "failed" and "died" in manifest["end_reason"]
    run = bench.load_run(scenario_dir / "dead")
    assert len(run.requests) >= 20 and run.requests["request_id"].is_unique
    assert _alive_actors() == []


def test_continue_on_actor_failure_goes_on_with_the_others(local_ray, scenario_dir):
    killed: dict = {}
    with start_sim(profile="zero", seed=3) as sim:
        data = _scenario(sim.base_url, "cont", {"workers": 2, "continue_on_actor_failure": True})
        data["load"]["duration"] = 4
        killer = _kill_one_actor_after(scenario_dir / "cont" / "requests.jsonl", 20, killed)
        result = run_in_process(scenario_dir, data, out="cont")
        killer.join(5)
    assert killed.get("name") and result.ended == "completed"
    run = result.run
    lost = [w for w in run.manifest.client.workers or [] if w.lost]
    assert len(lost) == 1 and "died" in (lost[0].lost or "")
    assert any("went on with the other 1 actor" in note for note in run.manifest.notes)
    survivor = 1 - (lost[0].index or 0)
    ids = run.requests["request_id"] % 2
    # the survivor sent its whole shard (about half of 600), the lost one stopped early
    assert (ids == survivor).sum() > 250 and 0 < (ids == lost[0].index).sum() < 250
    assert _alive_actors() == []


def _ray_processes(kind: str = "") -> set[int]:
    import psutil

    names = (kind,) if kind else ("raylet", "gcs_server", "ray::", "default_worker")
    return {p.pid for p in psutil.process_iter(["cmdline"])
            if any(n in " ".join(p.info["cmdline"] or []) for n in names)}


def test_ctrl_c_stops_the_actors_and_the_local_ray(local_ray, scenario_dir):
    """`bench run --ray` in a terminal: Ctrl-C reaches the whole process group."""
    before = _ray_processes()
    with start_sim(profile="default", seed=5) as sim:
        path = write_scenario(scenario_dir, {
            "name": "long", "target": {"base_url": sim.base_url},
            "requests": {"synthetic": {"prompt_tokens": 32, "output_tokens": 150}},
            "sampling": {"extra_body": {"ignore_eos": True}},
            "load": {"rate": 20, "arrival": "constant", "duration": 60}, "ray": {"workers": 2},
        })
        out = scenario_dir / "run"
        proc = subprocess.Popen([sys.executable, "-m", "bench", "run", str(path), "--ray", "--out", str(out),
                                 "--quiet", "--no-report"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        journal = out / "requests.jsonl"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (journal.exists() and journal.read_bytes().count(b"\n") >= 6):
            time.sleep(0.1)
        assert _ray_processes("raylet") - before  # its own local Ray is up, not the module's
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["ended"] == "interrupted" and manifest["client"]["ray"]["started_local"] is True
    assert {w["index"] for w in manifest["client"]["workers"]} == {0, 1}
    run = bench.load_run(out)
    assert len(run.requests) >= 6 and (run.requests["status"] == "cancelled").sum() >= 1
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (_ray_processes() - before):
        time.sleep(0.2)
    assert not (_ray_processes() - before)  # no actor, raylet or GCS of that run left


# --- clocks on other machines, and the ways an actor fails ---------------------------------
# Actors emulate another machine through `RayPool.actor_type`: a subclass set up in the
# actor's own process (a skewed perf_counter for every stamp the actor takes, or a fault).

SKEW_S = {0: 0.3, 1: -0.2}  # actor k's perf_counter minus the driver's, in seconds


class SkewedClockActor(ShardActor):
    """An actor whose whole process reads a perf_counter `SKEW_S[index]` away from the driver's
    (every stamp: the clock reads, sends, kernel receive stamps), as on another machine."""

    async def configure(self, cfg):
        skew = SKEW_S[cfg.index]
        real, real_ns = time.perf_counter, time.perf_counter_ns
        time.perf_counter = lambda: real() + skew
        time.perf_counter_ns = lambda: real_ns() + round(skew * 1e9)
        return await super().configure(cfg)


def test_a_skewed_actor_clock_is_measured_with_its_sign_and_the_run_stays_on_the_driver_timeline(
        local_ray, scenario_dir, monkeypatch):
    monkeypatch.setattr(RayPool, "actor_type", SkewedClockActor)
    with start_sim(profile="zero", seed=3) as sim:
        data = _scenario(sim.base_url, "skew", {"workers": 2})
        data["load"] = {"rate": 60, "arrival": "constant", "duration": 2}
        run = run_in_process(scenario_dir, data, out="skew").run
        truth = sim_truth(sim.root_url)
    for actor in run.manifest.client.workers or []:
        clock = actor.clock
        assert clock is not None and clock.offset_ms is not None and clock.uncertainty_ms is not None
        # the true offset lies within the minimum round trip's half-width, sign included
        assert abs(clock.offset_ms - SKEW_S[actor.index] * 1e3) <= clock.uncertainty_ms + 0.01
    requests = run.requests
    assert len(requests) == 120 and (requests["status"] == "ok").all()
    assert set(requests["request_id"] % 2) == {0, 1}
    # The server's receive stamps (the machine's one clock) against the stored send times:
    # a send lands on the driver's timeline only when the actor started at t0 + its offset
    # (a sign error puts an actor 2 x |skew| off, a missing offset |skew| off).
    t0 = run.manifest.t0_perf_counter
    for row in requests.itertuples():
        received_s = truth[row.server_request_id]["received_s"] - t0
        uncertainty_s = run.manifest.client.workers[row.request_id % 2].clock.uncertainty_ms / 1e3
        assert -uncertainty_s - 0.001 < received_s - row.sent_s < 0.05, row


class PromptsElsewhereActor(ShardActor):
    """An actor on a node without the scenario's prompt file."""

    async def configure(self, cfg):
        return await super().configure(replace(cfg, scenario_path=Path("/nonexistent-node-dir/scenario.yaml")))


def _file_scenario(scenario_dir: Path, base_url: str, name: str) -> dict:
    (scenario_dir / "prompts.jsonl").write_text('{"prompt": "hello there", "max_tokens": 4}\n')
    data = _scenario(base_url, name, {"workers": 2})
    data["requests"] = {"file": "prompts.jsonl"}
    return data


def test_an_exception_in_an_actor_fails_the_run_with_its_message(local_ray, scenario_dir, monkeypatch):
    monkeypatch.setattr(RayPool, "actor_type", PromptsElsewhereActor)
    with start_sim(profile="zero", seed=3) as sim:
        with pytest.raises(RunFailed, match=r"(?s)client worker \d failed: .*nonexistent-node-dir/prompts\.jsonl: cannot read dataset"):
            run_in_process(scenario_dir, _file_scenario(scenario_dir, sim.base_url, "exc"), out="exc")
    assert not (scenario_dir / "exc" / "requests.jsonl").exists() or bench.load_run(scenario_dir / "exc").requests.empty
    assert _alive_actors() == []


class BrokenActor(ShardActor):
    """An actor whose constructor raises (a broken install on its node)."""

    def __init__(self) -> None:
        raise RuntimeError("no bench here")


def test_an_actor_that_cannot_be_created_fails_the_start(local_ray, scenario_dir, monkeypatch):
    monkeypatch.setattr(RayPool, "actor_type", BrokenActor)
    with start_sim(profile="zero", seed=3) as sim:
        with pytest.raises(RunFailed) as failed:
            run_in_process(scenario_dir, _scenario(sim.base_url, "broken", {"workers": 2}), out="broken")
    # what happened and why, on one line without terminal colours
    message = str(failed.value)
    assert re.fullmatch(r"ray: a load-generator actor failed to start: .*BrokenActor.*: RuntimeError: no bench here",
                        message), message
    assert "\x1b" not in message and "\n" not in message
    assert _alive_actors() == []


def test_actors_not_ready_in_time_fail_the_start_and_are_removed(local_ray, scenario_dir, monkeypatch):
    # Three 1-CPU actors on a 2-CPU Ray: the third is never placed, so never ready.
    monkeypatch.setattr(ray_workers, "READY_TIMEOUT_S", 4.0)
    started = time.monotonic()
    with start_sim(profile="zero", seed=3) as sim:
        with pytest.raises(RunFailed, match=r"ray: load-generator actors not ready after 4 s"):
            run_in_process(scenario_dir, _scenario(sim.base_url, "slow", {"workers": 3}), out="slow")
    assert time.monotonic() - started < 30
    deadline = time.monotonic() + 10
    while _alive_actors() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _alive_actors() == []


def test_a_ray_address_with_no_cluster_fails_in_one_line(scenario_dir):
    with start_sim(profile="zero", seed=3) as sim:
        path = write_scenario(scenario_dir, _scenario(sim.base_url, "noray", None))
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "bench", "run", str(path), "--ray", "127.0.0.1:1",
                               "--out", str(scenario_dir / "run"), "--quiet", "--no-report"],
                              capture_output=True, text=True, timeout=180)
    # at once (ray.init alone retries for minutes), in one line
    assert time.monotonic() - started < 60
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == ["bench: run failed: ray: cannot connect to 127.0.0.1:1: Connection refused"]


def _actor_process_pids() -> set[int]:
    import psutil

    return {p.pid for p in psutil.process_iter(["cmdline"])
            if "ShardActor" in " ".join(p.info["cmdline"] or [])}


def test_after_an_actor_dies_the_actors_and_the_local_ray_are_shut_down(scenario_dir):
    """`bench run --ray` with its own local Ray: one actor's process is killed mid-run."""
    before = _ray_processes()
    actors_before = _actor_process_pids()
    with start_sim(profile="zero", seed=5) as sim:
        data = _scenario(sim.base_url, "die", {"workers": 2})
        data["load"] = {"rate": 20, "arrival": "constant", "duration": 60}
        path = write_scenario(scenario_dir, data)
        out = scenario_dir / "run"
        proc = subprocess.Popen([sys.executable, "-m", "bench", "run", str(path), "--ray", "--out", str(out),
                                 "--quiet", "--no-report"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            journal = out / "requests.jsonl"
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not (journal.exists() and journal.read_bytes().count(b"\n") >= 10):
                time.sleep(0.1)
            victims = sorted(_actor_process_pids() - actors_before)
            assert len(victims) == 2
            os.kill(victims[0], signal.SIGKILL)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, err
    assert "Traceback" not in err and re.search(r"bench: run failed: ray actor \d on .* died", err), err
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["ended"] == "failed" and "died" in manifest["end_reason"]
    assert len(bench.load_run(out).requests) >= 10
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (_ray_processes() - before):
        time.sleep(0.2)
    assert not (_ray_processes() - before)  # the surviving actor, the raylet and the GCS are gone
