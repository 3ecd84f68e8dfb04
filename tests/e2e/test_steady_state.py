"""The steady window of a run with a known warm-up: a light stage, then the load being
measured; the window starts where the load steps up, and the report shows it."""

from __future__ import annotations

from benchtest import run_in_process

from bench.analysis.steady import steady_state
from bench.report.document import build_content
from bench.sim import start_sim


def test_the_window_starts_where_the_load_steps_up(scenario_dir):
    profile = {"models": ["sim-s"], "max_num_seqs": 64, "decode_ms_base": 10.0, "decode_ms_per_seq": 0.0,
               "prefill_ms_per_token": 0.0, "output_len": {"dist": "fixed", "mean": 20}}
    with start_sim(profile=profile, seed=1) as sim:
        result = run_in_process(scenario_dir, {
            "target": {"base_url": sim.base_url},
            "requests": {"synthetic": {"prompt_tokens": 8, "output_tokens": 20}},
            "sampling": {"extra_body": {"ignore_eos": True}},
            "load": {"stages": [{"rate": 2, "duration": 4}, {"rate": 40, "duration": 8}], "arrival": "constant"}})
    run = result.run
    steady = steady_state(run)
    assert steady is not None
    # 2 req/s of 0.2 s requests hold ~0.4 in flight, 40 req/s ~8: the step at 4 s is the warm-up's end
    assert 3.8 <= steady.start_s <= 4.8, steady
    assert steady.end_s <= 12.3 and steady.cooldown_s >= 0
    inside = run.requests[(run.requests["sent_s"] >= steady.start_s) & (run.requests["sent_s"] < steady.end_s)]
    assert steady.requests == int((inside["status"] == "ok").sum())
    assert abs(steady.requests_per_s - 40) / 40 < 0.1  # the steady window sees the measured load
    whole_rate = run.summary.throughput.requests_per_s
    assert whole_rate < 0.9 * steady.requests_per_s  # the whole run, warm-up included, reads lower
    titles = [t.title for t in build_content(run, with_figures=False).tables]
    assert any(t.startswith("Steady state") for t in titles)
