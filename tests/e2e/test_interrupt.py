"""Interrupted and killed runs keep every finished request and still load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from benchtest import write_scenario

import bench
from bench.sim import start_sim


def _start_run(scenario_dir: Path, base_url: str) -> tuple[subprocess.Popen, Path]:
    path = write_scenario(scenario_dir, {
        "name": "long", "target": {"base_url": base_url},
        "requests": {"synthetic": {"prompt_tokens": 32, "output_tokens": 150}},
        "sampling": {"extra_body": {"ignore_eos": True}},
        "load": {"rate": 20, "arrival": "constant", "duration": 60},
    })
    out = scenario_dir / "run"
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", str(path), "--out", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, out


def _wait_for_records(out: Path, count: int, timeout: float = 30.0) -> None:
    journal = out / "requests.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if journal.exists() and journal.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} records after {timeout} s")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_sending_and_keeps_everything(scenario_dir, signum):
    with start_sim(profile="default", seed=5) as sim:
        proc, out = _start_run(scenario_dir, sim.base_url)
        _wait_for_records(out, 6)
        signalled = time.perf_counter()  # the machine's one CLOCK_MONOTONIC, as the run's t0
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["ended"] == "interrupted"
    assert manifest["end_reason"] == f"signal {signal.Signals(signum).name}"
    run = bench.load_run(out)
    req = run.requests
    journal_lines = (out / "requests.jsonl").read_bytes().count(b"\n")
    assert len(req) == journal_lines >= 6
    cancelled = req[req["status"] == "cancelled"]
    assert len(cancelled) >= 1  # 400-token requests at 20/s: several were in flight
    partial = run.chunks[run.chunks["request_id"].isin(cancelled["request_id"])]
    assert (partial["kind"] == "content").sum() > 0  # their partial chunks are kept
    assert (req.loc[req["status"] == "ok", "output_tokens"] == 150).all()
    # Sending stopped at the signal: every 50 ms slot before it was sent, none after it (the
    # margin is the loop getting to the signal on a busy machine: a few slots at most).
    stop_s = signalled - manifest["t0_perf_counter"]
    assert req["sent_s"].max() < stop_s + 0.25
    np.testing.assert_allclose(np.sort(req["scheduled_s"].to_numpy()), np.arange(len(req)) * 0.05, atol=1e-9)
    assert len(req) >= int(stop_s / 0.05)


def test_kill_9_loses_nothing_finished_and_the_run_recovers(scenario_dir, capsys):
    with start_sim(profile="default", seed=6) as sim:
        proc, out = _start_run(scenario_dir, sim.base_url)
        _wait_for_records(out, 6)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    lines = (out / "requests.jsonl").read_bytes().count(b"\n")
    assert not (out / "requests.parquet").exists()
    run = bench.load_run(out)
    assert run.manifest.ended == "running"  # it never got to say otherwise
    assert len(run.requests) == lines >= 6
    assert run.requests["ttft_ms"].notna().all()
    assert run.summary.to_json()["requests"]["total"] == lines
    from bench.commands.cli import main

    assert main(["summary", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["requests"]["ok"] == lines
