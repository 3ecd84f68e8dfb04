"""A schedule far ahead of the server bends the run instead of breaking the machine: at most
the in-flight cap is in flight, a request later than load.max_send_lag_s is never sent (and
counted), the drain time cancels what is left, and a signal ends the run in seconds."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import time

import numpy as np
from benchtest import run_in_process, write_scenario

import bench
from bench.analysis import validity
from bench.runner.process import CONNECTION_CAP, FD_RESERVE, in_flight_cap
from bench.sim import start_sim

# Two slots of 40 x 10 ms steps: the server completes ~5 requests/s, far below what is offered.
SLOW = {"models": ["sim-small"], "max_num_seqs": 2, "decode_ms_base": 10.0, "decode_ms_per_seq": 0.0,
        "prefill_ms_per_token": 0.0, "output_len": {"dist": "fixed", "mean": 40}}


def test_past_the_lag_bound_requests_are_counted_not_sent_and_the_drain_cancels_the_rest(scenario_dir):
    cap, bound, drain = 8, 0.5, 1.0
    with start_sim(profile=SLOW, seed=1) as sim:
        result = run_in_process(scenario_dir, {
            "target": {"base_url": sim.base_url}, "requests": {"synthetic": {"prompt_tokens": 8, "output_tokens": 40}},
            "sampling": {"extra_body": {"ignore_eos": True}},
            "load": {"rate": 200, "arrival": "constant", "duration": 1, "max_concurrency": cap,
                     "max_send_lag_s": bound, "drain_s": drain}})
    run = result.run
    client = run.manifest.client
    requests = run.requests
    planned = 200
    # Every scheduled request is either on disk or counted as not sent: none vanishes.
    assert len(requests) + client.not_sent == planned
    assert client.not_sent > 150  # at ~5 req/s, 8 slots and 0.5 s of lag admit a few dozen at most
    lag = (requests["sent_s"] - requests["scheduled_s"]).to_numpy()
    assert lag.max() <= bound + 0.05  # none sent later than the bound (plus one wake-up)
    assert run.summary.concurrency.peak <= cap
    assert (client.in_flight_cap, client.in_flight_cap_from) == (cap, "load.max_concurrency")
    # The drain ran 1 s after the last send; what was still in flight then was cancelled.
    cancelled = int((requests["status"] == "cancelled").sum())
    assert client.drain_cancelled == cancelled and 1 <= cancelled <= cap
    ends = requests["end_s"].to_numpy()
    assert np.nanmax(ends) <= requests["sent_s"].max() + drain + 0.5
    assert run.manifest.ended == "completed"
    codes = [w.code for w in validity.check(run)]
    assert codes[0] == "not_sent" or codes[1] == "not_sent"  # after saturation when it was found, first
    assert "send_lag_growing" not in codes  # the cap's queue, not the client's CPU
    assert client.peak_rss_mib is not None and 30 < client.peak_rss_mib < 2048


def test_without_a_bound_late_requests_are_still_sent(scenario_dir):
    with start_sim(profile=SLOW, seed=2) as sim:
        result = run_in_process(scenario_dir, {
            "target": {"base_url": sim.base_url}, "requests": {"synthetic": {"prompt_tokens": 8, "output_tokens": 40}},
            "sampling": {"extra_body": {"ignore_eos": True}},
            "load": {"rate": 30, "arrival": "constant", "duration": 0.5, "max_concurrency": 4,
                     "max_send_lag_s": None}})
    run = result.run
    assert len(run.requests) == 15 and run.manifest.client.not_sent == 0
    assert (run.requests["status"] == "ok").all()  # no drain limit: every request finished
    assert run.manifest.client.drain_cancelled == 0


def test_the_default_cap_follows_the_descriptor_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1000, hard))
        cap = in_flight_cap()
        assert cap.value == 1000 - FD_RESERVE and "file-descriptor limit (1000)" in cap.reason
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 50_000), hard))
        cap = in_flight_cap()
        assert cap.value <= CONNECTION_CAP and cap.reason.startswith("default, from")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_sigterm_during_an_overload_ends_the_run_in_seconds_with_every_record(scenario_dir):
    with start_sim(profile=SLOW, seed=3) as sim:
        path = write_scenario(scenario_dir, {
            "target": {"base_url": sim.base_url}, "requests": {"synthetic": {"prompt_tokens": 8, "output_tokens": 40}},
            "sampling": {"extra_body": {"ignore_eos": True}}, "load": {"rate": 20000, "duration": 5}})
        out = scenario_dir / "run"
        proc = subprocess.Popen([sys.executable, "-m", "bench", "run", str(path), "--out", str(out), "--quiet"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        journal = out / "requests.jsonl"
        deadline = time.monotonic() + 60
        while not (journal.exists() and journal.stat().st_size > 0) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    assert proc.returncode == 130, err
    assert took < 5.0, took
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["ended"] == "interrupted" and manifest["client"]["in_flight_cap"] >= 1
    run = bench.load_run(out)
    assert len(run.requests) == journal.read_bytes().count(b"\n") > 0
    assert run.summary.concurrency.peak <= manifest["client"]["in_flight_cap"]
