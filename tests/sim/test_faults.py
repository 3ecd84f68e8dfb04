"""Every fault kind is reachable, does what it says, and is recorded in the ground truth."""

from __future__ import annotations

import http.client
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from bench.sim import SimHandle, start_sim
from tests.sim.conftest import get_json

# Fast steps (1 ms) so that streams last a little, and mid-stream faults happen mid-stream.
FAST = {"models": ["m"], "decode_ms_base": 1.0, "decode_ms_per_seq": 0.0,
        "prefill_ms_per_token": 0.0}
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20,
        "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True}


def raw_stream(sim: SimHandle, body: dict[str, Any] = BODY) -> dict[str, Any]:
    """POST and read the SSE stream with http.client; report what arrived and how it ended."""
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=20)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    out: dict[str, Any] = {"status": resp.status, "headers": dict(resp.headers),
                           "headers_s": time.perf_counter() - t0, "events": [],
                           "times": [], "error": None}
    try:
        while True:
            line = resp.readline()
            if not line:
                break
            if line.startswith(b"data: "):
                out["events"].append(line[6:].strip())
                out["times"].append(time.perf_counter())
    except (http.client.IncompleteRead, ConnectionError) as exc:
        out["error"] = exc
    conn.close()
    return out


def content_events(events: list[bytes]) -> list[dict[str, Any]]:
    parsed = [json.loads(e) for e in events if e != b"[DONE]"]
    return [e for e in parsed if e["choices"] and "content" in e["choices"][0]["delta"]
            and e["choices"][0]["delta"].get("role") is None]


@pytest.fixture
def sim_with(request: pytest.FixtureRequest) -> Iterator[SimHandle]:
    with start_sim(FAST, seed=3, faults=request.param) as sim:
        yield sim


def one_truth(sim: SimHandle) -> dict[str, Any]:
    (record,) = get_json(f"{sim.root_url}/sim/requests")
    return record


@pytest.mark.parametrize("sim_with", [["http_429:every=1,retry_after=7"]], indirect=True)
def test_http_429(sim_with: SimHandle) -> None:
    c = openai.OpenAI(base_url=sim_with.base_url, api_key="x", max_retries=0)
    with pytest.raises(openai.RateLimitError) as exc:
        c.chat.completions.create(model="m", messages=BODY["messages"])
    assert exc.value.response.headers["retry-after"] == "7"
    assert exc.value.body["code"] == 429 and exc.value.body["type"] == "RateLimitError"
    assert one_truth(sim_with)["fault"] == "http_429:every=1"


@pytest.mark.parametrize("sim_with", [["http_500:every=2", "http_503:every=1"]],
                         indirect=True)
def test_http_500_and_503(sim_with: SimHandle) -> None:
    c = openai.OpenAI(base_url=sim_with.base_url, api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError) as first:  # request 1: every=1 -> 503
        c.chat.completions.create(model="m", messages=BODY["messages"])
    with pytest.raises(openai.InternalServerError) as second:  # request 2: 500 first in list
        c.chat.completions.create(model="m", messages=BODY["messages"])
    assert first.value.status_code == 503 and "retry-after" in first.value.response.headers
    assert second.value.status_code == 500
    faults = [r["fault"] for r in get_json(f"{sim_with.root_url}/sim/requests")]
    assert faults == ["http_503:every=1", "http_500:every=2"]


@pytest.mark.parametrize("sim_with", [["drop:every=1,after=4"]], indirect=True)
def test_drop_mid_stream(sim_with: SimHandle) -> None:
    out = raw_stream(sim_with)
    # http.client ends an aborted chunked body quietly (or raises): judge by what arrived.
    assert out["status"] == 200 and b"[DONE]" not in out["events"]
    got = content_events(out["events"])
    assert len(got) == 4 and all(e["choices"][0]["finish_reason"] is None for e in got)
    time.sleep(0.05)
    record = one_truth(sim_with)
    assert record["fault"] == "drop:every=1" and record["cancelled"]
    assert len(record["chunk_write_times_s"]) == 4
    metrics = get_json_text(sim_with, "/metrics")
    assert 'vllm:num_requests_running{model_name="m"} 0' in metrics  # slot freed


def get_json_text(sim: SimHandle, path: str) -> str:
    import urllib.request

    with urllib.request.urlopen(sim.root_url + path) as resp:
        return resp.read().decode()


@pytest.mark.parametrize("sim_with", [["malformed:every=1,after=3"]], indirect=True)
def test_malformed_chunk(sim_with: SimHandle) -> None:
    out = raw_stream(sim_with)
    bad = []
    for i, event in enumerate(out["events"]):
        try:
            json.loads(event) if event != b"[DONE]" else None
        except json.JSONDecodeError:
            bad.append(i)
    assert len(bad) == 1 and out["events"][-1] == b"[DONE]"
    good = [e for i, e in enumerate(out["events"]) if i not in bad]
    assert len(content_events(good)) == 20
    assert one_truth(sim_with)["fault"] == "malformed:every=1"


@pytest.mark.parametrize("sim_with", [["stall:every=1,after=5,seconds=0.4"]], indirect=True)
def test_stall(sim_with: SimHandle) -> None:
    out = raw_stream(sim_with)
    gaps = [b - a for a, b in itertools.pairwise(out["times"])]
    assert max(gaps) >= 0.38 and sorted(gaps)[-2] < 0.1  # one long gap only
    assert out["events"][-1] == b"[DONE]" and len(content_events(out["events"])) == 20
    record = one_truth(sim_with)
    writes = record["chunk_write_times_s"]
    long_gaps = [i for i, (a, b) in enumerate(itertools.pairwise(writes)) if b - a > 0.3]
    assert long_gaps == [4]  # after the 5th chunk
    assert record["fault"] == "stall:every=1"


@pytest.mark.parametrize("sim_with", [["no_done:every=1"]], indirect=True)
def test_no_done(sim_with: SimHandle) -> None:
    out = raw_stream(sim_with)
    assert out["error"] is None and b"[DONE]" not in out["events"]
    assert json.loads(out["events"][-1])["usage"]["completion_tokens"] == 20
    assert len(content_events(out["events"])) == 20


@pytest.mark.parametrize("sim_with", [["slow_headers:every=1,seconds=0.3"]], indirect=True)
def test_slow_headers(sim_with: SimHandle) -> None:
    out = raw_stream(sim_with)
    assert out["headers_s"] >= 0.3 and out["events"][-1] == b"[DONE]"
    record = one_truth(sim_with)
    assert record["response_start_s"] - record["received_s"] >= 0.3


def test_probability_faults_from_profile_are_seeded() -> None:
    profile = dict(FAST, faults=["http_500:p=0.5"])
    patterns = []
    for _ in range(2):
        with start_sim(profile, seed=9) as sim:
            c = openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0)
            pattern = []
            for _ in range(30):
                try:
                    c.completions.create(model="m", prompt="a", max_tokens=1)
                    pattern.append(True)
                except openai.InternalServerError:
                    pattern.append(False)
            patterns.append(pattern)
    assert patterns[0] == patterns[1]
    assert 5 <= patterns[0].count(False) <= 25


def test_non_streamed_drop() -> None:
    with start_sim(FAST, faults=["drop:every=1,after=2"]) as sim:
        c = openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0)
        with pytest.raises(openai.APIConnectionError):
            c.completions.create(model="m", prompt="a", max_tokens=10)
