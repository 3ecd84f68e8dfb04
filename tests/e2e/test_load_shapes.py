"""Load shapes, trace replay, multi-turn chats and sweeps, end to end."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import numpy as np
import orjson
import pytest
from aiohttp import web
from benchtest import run_in_process

from bench.scenario.traces import read_trace
from bench.sim import start_sim

TRACES = Path(__file__).resolve().parents[2] / "scenarios" / "traces"
SMALL = {"synthetic": {"prompt_tokens": 16, "output_tokens": 8}}


def _send_rate(frame) -> float:
    t = np.sort(frame["sent_s"].to_numpy())
    return (len(t) - 1) / (t[-1] - t[0])


def test_stages_of_every_arrival_process_hold_their_rate(scenario_dir):
    stages = [{"rate": 20, "arrival": "poisson", "duration": 5},
              {"rate": 20, "arrival": "gamma", "burstiness": 0.5, "duration": 5},
              {"rate": 10, "arrival": "constant", "duration": 5}]
    with start_sim(profile="zero", seed=1) as sim:
        result = run_in_process(scenario_dir, {
            "seed": 2, "target": {"base_url": sim.base_url}, "requests": SMALL,
            "load": {"stages": stages}})
    req = result.run.requests
    assert sorted(req["stage"].unique()) == [0, 1, 2]
    for index, stage in enumerate(stages):
        sent = req[req["stage"] == index]
        assert _send_rate(sent) == pytest.approx(stage["rate"], rel=0.05), index
        assert sent["sent_s"].min() >= 5 * index - 0.01 and sent["sent_s"].max() < 5 * (index + 1) + 0.01
    steady = req[req["stage"] != 1]  # gamma with burstiness 0.5 sends bursts: lag there is real client cost
    assert steady["schedule_lag_ms"].quantile(0.99) < 5
    assert req["schedule_lag_ms"].median() < 2


def test_ramp_rate_rises_per_window(scenario_dir):
    with start_sim(profile="zero", seed=1) as sim:
        result = run_in_process(scenario_dir, {
            "target": {"base_url": sim.base_url}, "requests": SMALL,
            "load": {"ramp": {"from_rate": 5, "to_rate": 35, "duration": 8, "arrival": "constant"}}})
    sent = result.run.requests["sent_s"].to_numpy()
    counts, _ = np.histogram(sent, bins=4, range=(0, 8))
    expected = [2 * (5 + 30 * (w + 0.5) / 4) for w in range(4)]  # integral of the rate per 2 s window
    assert counts == pytest.approx(expected, abs=2)


@pytest.mark.parametrize("trace_file", ["azure_sample.csv", "mooncake_sample.jsonl"])
def test_trace_replay_sends_on_the_trace_timestamps(scenario_dir, trace_file):
    with start_sim(profile="zero", seed=1) as sim:
        result = run_in_process(scenario_dir, {
            "target": {"base_url": sim.base_url, "endpoint": "completions"},
            "load": {"trace": {"file": str(TRACES / trace_file), "speedup": 2.0}, "duration": 8}})
    req = result.run.requests.sort_values("request_id")
    trace = read_trace(TRACES / trace_file)
    expected = trace["timestamp_s"].to_numpy() / 2.0
    expected = expected[expected < 8]
    assert len(req) == len(expected)
    error_ms = np.abs(req["sent_s"].to_numpy() - expected) * 1e3
    assert np.percentile(error_ms, 99) < 5.0
    # every request carries its row's lengths: prompt words and max_tokens
    rows = trace.iloc[: len(req)]
    assert (req["prompt_tokens"].to_numpy() == rows["input_tokens"].to_numpy()).all()
    assert (req["max_tokens"].to_numpy() == rows["output_tokens"].clip(lower=1).to_numpy()).all()


class _CaptureServer:
    """A loopback chat server that records each request body and replies 'reply N'."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> _CaptureServer:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        text = f"reply {len(self.bodies)}"
        for event in ({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
                      {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": "stop"}]},
                      {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}):
            await resp.write(b"data: " + orjson.dumps(event) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp


def test_multi_turn_sends_the_replies_actually_received(scenario_dir):
    with _CaptureServer() as server:
        result = run_in_process(scenario_dir, {
            "target": {"base_url": f"http://127.0.0.1:{server.port}/v1", "model": "m"},
            "requests": {"inline": ["first question", "second question", "third question"],
                         "order": "cycle", "conversation": {"turns": 3, "think_time_s": 0.05}},
            "load": {"concurrency": 2, "max_requests": 12}})
    req = result.run.requests
    assert len(req) == 12 and set(req["turn"]) == {0, 1, 2}
    assert (req.groupby("conversation")["turn"].apply(sorted).apply(list) == [[0, 1, 2]] * 4).all()
    replies = {i + 1: f"reply {i + 1}" for i in range(len(server.bodies))}
    for body in server.bodies:
        messages = body["messages"]
        assistants = [m["content"] for m in messages if m["role"] == "assistant"]
        users = [m for m in messages if m["role"] == "user"]
        assert len(users) == len(assistants) + 1  # history + the new user turn
        for text in assistants:
            assert text in replies.values()  # what the server actually returned
    later = [b for b in server.bodies if len(b["messages"]) > 1]
    assert len(later) == 8


@pytest.mark.slow
def test_sweep_auto_rises_then_flattens_and_marks_saturation(scenario_dir, capsys):
    from bench.commands.cli import main

    profile = {"models": ["sim-small"], "max_num_seqs": 16, "decode_ms_base": 10.0, "decode_ms_per_seq": 0.5,
               "prefill_ms_per_token": 0.02, "output_len": {"dist": "fixed", "mean": 32}}
    with start_sim(profile=profile, seed=3) as sim:
        path = scenario_dir / "s.yaml"
        path.write_text(json.dumps({
            "target": {"base_url": sim.base_url}, "requests": {"synthetic": {"prompt_tokens": 64, "output_tokens": 32}},
            "sampling": {"extra_body": {"ignore_eos": True}}, "load": {"concurrency": 1, "max_requests": 1}}))
        code = main(["sweep", str(path), "--auto", "5", "--stage-duration", "6", "--sweep-max-concurrency", "64",
                     "--out", str(scenario_dir / "sweep"), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    stages = out["stages"]
    assert len(stages) == 7
    rates = [s["rate"] for s in stages[2:]]
    assert rates == sorted(rates)
    achieved = [s["achieved_requests_per_s"] for s in stages[2:]]
    peak = stages[1]["achieved_requests_per_s"]
    assert achieved[0] < achieved[2] < peak * 1.1  # rises ...
    assert achieved[-1] == pytest.approx(peak, rel=0.25)  # ... then flattens at the server's ceiling
    ttft = [s["ttft_p99_ms"] for s in stages[2:]]
    assert ttft[-1] > ttft[0]
    assert stages[0]["achieved_requests_per_s"] < achieved[0]
    knee = out["saturation_stage"]
    assert knee is not None  # marked: a rate point near capacity, or the max-throughput point
    assert stages[knee]["knee"] and sum(s["knee"] for s in stages) == 1
    assert stages[knee]["achieved_requests_per_s"] >= 0.9 * peak or \
        stages[knee]["achieved_requests_per_s"] < 0.9 * stages[knee]["rate"]


@pytest.mark.slow
def test_find_max_rate_lands_near_the_profile_prediction(scenario_dir, capsys):
    from bench.commands.cli import main
    from bench.sim import load_profile, predict

    profile = {"models": ["sim-small"], "max_num_seqs": 64, "decode_ms_base": 10.0, "decode_ms_per_seq": 1.0,
               "prefill_ms_per_token": 0.0, "output_len": {"dist": "fixed", "mean": 32}}
    slo_tpot = 20.0
    # Predicted: the largest steady concurrency whose per-token time meets the SLO, as a rate.
    model = load_profile(profile)
    best = max(c for c in range(1, 65) if predict(model, c, 16, 32)["itl_ms"] <= slo_tpot)
    predicted_rate = predict(model, best, 16, 32)["requests_per_s"]
    with start_sim(profile=profile, seed=4) as sim:
        path = scenario_dir / "s.yaml"
        path.write_text(json.dumps({
            "target": {"base_url": sim.base_url}, "requests": {"synthetic": {"prompt_tokens": 16, "output_tokens": 32}},
            "sampling": {"extra_body": {"ignore_eos": True}}, "load": {"rate": 1, "duration": 1},
            "slo": {"tpot_ms": slo_tpot, "percentile": 50}}))
        code = main(["sweep", str(path), "--find-max-rate", "--start-rate", "4", "--stage-duration", "5",
                     "--out", str(scenario_dir / "search"), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    found = out["max_rate"]["rate"]
    print(f"predicted {predicted_rate:.2f} req/s, found {found} req/s, points {out['max_rate']['points']}")
    assert found == pytest.approx(predicted_rate, rel=0.15)
    # The search itself, replayed from each point's verdict: doubling from 4 until the SLO
    # fails, then each point the midpoint of the bracket, ending as soon as the bracket is
    # within 5 % of its failing end (and not before).
    points = out["max_rate"]["points"]
    passing = failing = None
    expected = 4.0
    for rate, met in points:
        assert rate == pytest.approx(expected, rel=1e-12), points
        if met:
            passing = rate if passing is None else max(passing, rate)
        else:
            failing = rate if failing is None else min(failing, rate)
        assert failing is None or passing is None or (failing - passing) / failing > 0.05 or \
            (rate, met) == tuple(points[-1]), points  # stopped at the first bracket within 5 %
        expected = 2 * rate if failing is None else rate / 2 if passing is None else (passing + failing) / 2
    assert passing is not None and failing is not None
    assert (found, out["max_rate"]["first_failing_rate"]) == (passing, failing)
    assert (failing - passing) / failing <= 0.05
