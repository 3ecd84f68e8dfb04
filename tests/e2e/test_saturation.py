"""The saturation verdict and the early stop, against the built-in simulator, whose ground
truth (admission time of every request vs its arrival) says when its queue began to grow."""

from __future__ import annotations

import html
import json
from typing import Any

import numpy as np
import pytest
from benchtest import run_in_process, sim_truth, write_scenario

import bench
from bench import store
from bench.analysis import validity
from bench.commands.cli import main
from bench.commands.exits import EXIT_SATURATED
from bench.report import document as report
from bench.report import figures
from bench.sim import load_profile, max_request_rate, start_sim

# Two batch slots, 25 ms steps, 16-token answers: ~5 requests/s, whatever the load.
PROFILE: dict[str, Any] = {"name": "two-slots", "max_num_seqs": 2, "decode_ms_base": 25.0, "decode_ms_per_seq": 0.0,
                           "prefill_ms_per_token": 0.0, "output_len": {"dist": "fixed", "mean": 16}}
PROMPT, OUTPUT = 16, 16
CAPACITY = max_request_rate(load_profile(PROFILE), PROMPT, OUTPUT)


# Past saturation the queue is cut at this TTFT (as a real client would give up), so that the
# tests do not wait for the whole backlog to drain; it must outlast the detection (~8 s).
TTFT_TIMEOUT_S = 9.0


def scenario(base_url: str, rate: float, duration: float, **load: Any) -> dict[str, Any]:
    return {"seed": 5, "target": {"base_url": base_url, "metrics": {"enabled": False},
                                  "timeouts": {"ttft_s": TTFT_TIMEOUT_S}},
            "requests": {"synthetic": {"prompt_tokens": PROMPT, "output_tokens": OUTPUT, "calibrate": False}},
            "sampling": {"extra_body": {"ignore_eos": True}},
            "load": {"rate": rate, "arrival": "poisson", "duration": duration, **load}}


def queue_onset(truth: dict[str, dict[str, Any]], t0: float, until_s: float) -> float:
    """Ground truth: the last moment before `until_s` (seconds from t0) when the simulator's
    waiting queue (received, not yet admitted) was empty; it never emptied after it."""
    received = np.array([r["received_s"] for r in truth.values()]) - t0
    admitted = np.array([r["admitted_s"] if r["admitted_s"] is not None else np.inf for r in truth.values()]) - t0
    events = np.concatenate([received, admitted])
    steps = np.concatenate([np.ones(len(received)), -np.ones(len(admitted))])
    order = np.argsort(events, kind="stable")
    times, waiting = events[order], np.cumsum(steps[order])
    empty = times[(waiting == 0) & (times <= until_s)]
    return float(empty[-1]) if len(empty) else 0.0


def test_three_times_capacity_is_called_saturated_first_and_stopped_early(scenario_dir):
    assert 4.0 < CAPACITY < 6.0  # the profile's prediction, the basis of the rates below
    with start_sim(profile=PROFILE, seed=2) as sim:
        result = run_in_process(scenario_dir, scenario(sim.base_url, 3 * CAPACITY, 20.0, stop_on_saturation=True))
        truth = sim_truth(sim.root_url)
    run = result.run
    assert result.ended == run.manifest.ended == "saturated"
    assert "load.stop_on_saturation" in (run.manifest.end_reason or "")
    last_send = float(run.requests["sent_s"].max())
    onset_truth = queue_onset(truth, run.manifest.t0_perf_counter, last_send)
    warnings = validity.check(run)
    assert warnings[0].code == "saturated", [w.message for w in warnings]
    verdict = run.summary.to_json()["saturation"][0]
    assert warnings[0].message == verdict["message"]
    assert verdict["message"].startswith(f"server saturated from t={verdict['start_s']:.1f}s: arrivals ")
    print(f"capacity {CAPACITY:.2f}/s; onset truth {onset_truth:.2f} s, verdict {verdict['start_s']:.2f} s, "
          f"detected {verdict['detected_s']:.2f} s, last send {last_send:.2f} s; {verdict['message']}")
    assert abs(verdict["start_s"] - onset_truth) < 3.0
    assert verdict["arrivals_per_s"] > 2 * CAPACITY and verdict["completions_per_s"] < 1.3 * CAPACITY
    # Sending stopped within 10 s of the start of saturation, well before the 20 s planned.
    assert last_send - onset_truth < 10.0
    # Every request sent has its record: as many as the simulator received, none lost.
    assert len(store.read_raw_requests(run.path)) == len(run.requests) == len(truth)
    # The reports say it first; the timeline marks where it began.
    report.write_reports(run, formats=("md", "html"))
    md = (run.path / "report.md").read_text()
    assert next(line for line in md.splitlines() if line.startswith("- **WARNING**")) == \
        f"- **WARNING** (saturated): {verdict['message']}"
    page = (run.path / "report.html").read_text()
    assert page.index(html.escape(verdict["message"])) < page.index("<table")
    fig = figures.timeline_figure(run)
    for ax in fig.axes:
        assert any(list(line.get_xdata()) == [verdict["start_s"]] * 2 for line in ax.get_lines())


def test_saturation_from_the_second_stage_is_dated_from_the_queue_and_said_first(scenario_dir, capsys):
    # Half the capacity for 5 s, then three times it for 8.5 s; the early stop is off.
    with start_sim(profile=PROFILE, seed=3) as sim:
        data = scenario(sim.base_url, 1.0, 1.0)
        data["load"] = {"stages": [{"rate": CAPACITY / 2, "duration": 5.0}, {"rate": 3 * CAPACITY, "duration": 8.5}]}
        path = write_scenario(scenario_dir, data)
        code = main(["run", str(path), "--out", str(scenario_dir / "run"), "--no-report"])
        truth = sim_truth(sim.root_url)
    out = capsys.readouterr().out
    run = bench.load_run(scenario_dir / "run")
    assert code == 0 and run.manifest.ended == "completed"
    last_send = float(run.requests["sent_s"].max())
    assert last_send > 13.0  # not stopped: the flag is off by default
    [verdict] = run.summary.to_json()["saturation"]
    onset_truth = queue_onset(truth, run.manifest.t0_perf_counter, last_send)
    print(f"onset truth {onset_truth:.2f} s; {verdict}")
    assert verdict["stage"] == 1 and 4.0 < onset_truth < 8.0
    assert abs(verdict["start_s"] - onset_truth) < 3.0
    # The verdict is the console summary's first line, before the table, and summary.json's first key.
    assert out.lstrip().splitlines()[0] == f"SATURATED: {verdict['message']}"
    assert verdict["message"].startswith("stage 1: server saturated from t=")
    assert next(iter(run.summary.to_json())) == "saturation"


def test_half_capacity_is_not_saturated(scenario_dir, capsys):
    with start_sim(profile=PROFILE, seed=4) as sim:
        path = write_scenario(scenario_dir, scenario(sim.base_url, CAPACITY / 2, 12.0))
        code = main(["run", str(path), "--out", str(scenario_dir / "run"), "--json", "--no-report",
                     "--stop-on-saturation"])
    summary = json.loads(capsys.readouterr().out)
    run = bench.load_run(scenario_dir / "run")
    assert code == 0 and run.manifest.ended == "completed"
    assert summary["saturation"] == []
    assert not any(w.code == "saturated" for w in validity.check(run))
    assert summary["requests"]["ok"] == summary["requests"]["total"] > 20


def test_stop_on_saturation_cli_exit_code(scenario_dir):
    # Under load.max_concurrency the queue builds in the client (sends wait for a slot):
    # in-flight at the server is capped, the live watch still sees the backlog grow.
    with start_sim(profile=PROFILE, seed=6) as sim:
        path = write_scenario(scenario_dir, scenario(sim.base_url, 4 * CAPACITY, 20.0,
                                                     max_concurrency=40))
        code = main(["run", str(path), "--out", str(scenario_dir / "run"), "--quiet", "--no-report",
                     "--stop-on-saturation"])
    run = bench.load_run(scenario_dir / "run")
    assert code == EXIT_SATURATED == 3
    assert run.manifest.ended == "saturated"
    assert run.requests["schedule_lag_ms"].max() > 1000  # sends waited for a slot
    # The arrivals that were still waiting for a slot at the stop were never sent, so they
    # are not in the stored run; the run's end says saturated first all the same.
    first = validity.check(run)[0]
    assert first.code in ("saturated", "ended") and "saturated" in first.message, first.message


@pytest.mark.parametrize("workers", [2, "auto"])
def test_stop_on_saturation_needs_one_client_process(scenario_dir, workers):
    from bench.errors import BenchInputError

    with pytest.raises(BenchInputError, match=r"load\.stop_on_saturation"):
        run_in_process(scenario_dir, scenario("http://127.0.0.1:9/v1", 10.0, 1.0, stop_on_saturation=True,
                                              workers=workers))


def test_sweep_cuts_a_saturated_stage_short_with_the_same_test(scenario_dir, capsys):
    with start_sim(profile=PROFILE, seed=7) as sim:
        path = write_scenario(scenario_dir, scenario(sim.base_url, 1.0, 1.0))
        code = main(["sweep", str(path), "--rates", str(3 * CAPACITY), "--stage-duration", "14",
                     "--out", str(scenario_dir / "sweep"), "--json", "--no-report"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    [stage] = out["stages"]
    assert stage["saturated"] and stage["knee"]
    run = bench.load_run(scenario_dir / "sweep")
    sends = run.requests["sent_s"]
    assert sends.max() - sends.min() < 10.0  # cut short, well before the 14 s planned
    assert out["summary"]["saturation"][0]["start_s"] < stage["start_s"] + 2.0
    assert validity.check(run)[0].code == "saturated"


def test_a_sweep_marks_only_the_stage_past_capacity_saturated(scenario_dir, capsys, monkeypatch):
    """Half capacity, then three times capacity: the second stage alone is SATURATED (cut
    short), it is the knee, and the stored verdict dates the onset inside it, after the
    simulator's queue last emptied."""
    rates = [CAPACITY / 2, 3 * CAPACITY]
    monkeypatch.setenv("COLUMNS", "200")  # the stage table on one line per stage
    with start_sim(profile=PROFILE, seed=7) as sim:
        path = write_scenario(scenario_dir, scenario(sim.base_url, 1.0, 1.0))
        code = main(["sweep", str(path), "--rates", ",".join(f"{r:.4f}" for r in rates), "--stage-duration", "12",
                     "--out", str(scenario_dir / "sweep"), "--no-report"])
        truth = sim_truth(sim.root_url)
    assert code == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "rate " in line and "/s" in line]
    assert len(rows) == 2, out
    assert "SATURATED" not in rows[0] and "knee" not in rows[0]
    assert "SATURATED (cut short)" in rows[1] and "knee" in rows[1]
    assert "SATURATED: stage 1: server saturated from t=" in " ".join(out.split())
    run = bench.load_run(scenario_dir / "sweep")
    first, second = run.manifest.stages or []
    assert (first["saturated"], second["saturated"]) == (False, True)
    stage1 = run.requests[run.requests["stage"] == 1]["sent_s"]
    assert stage1.max() - second["start_s"] < 11.0  # cut short of the 12 s planned
    [verdict] = run.summary.to_json()["saturation"]
    onset = queue_onset(truth, run.manifest.t0_perf_counter, stage1.max())
    assert verdict["stage"] == 1 and second["start_s"] <= onset < second["start_s"] + 4.0
    assert abs(verdict["start_s"] - onset) < 3.0  # dated from the simulator's own queue
    assert validity.check(run)[0].code == "saturated"
