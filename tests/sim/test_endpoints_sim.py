"""The simulator's /v1/embeddings and /v1/responses as a client sees them: shapes, usage,
the profile's embeddings latency, and the ground truth of each."""

from __future__ import annotations

import base64
import json
import struct
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from bench.sim import SimHandle, start_sim


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    profile = {"models": ["sim-e"], "embedding_ms_per_input": 20.0, "embedding_ms_per_token": 2.0,
               "embedding_dims": 4, "reasoning_tokens": 2, "output_len": {"dist": "fixed", "mean": 5}}
    with start_sim(profile=profile, seed=9) as handle:
        yield handle


def _post(sim: SimHandle, path: str, body: dict[str, Any]) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(f"{sim.base_url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def _truth(sim: SimHandle, rid: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{sim.root_url}/sim/requests/{rid}", timeout=10) as resp:
        return json.load(resp)


def test_embeddings_answer_one_vector_per_input_after_the_profiles_latency(sim):
    status, raw, headers = _post(sim, "/embeddings", {"model": "sim-e", "input": ["a b c", "d e f g h", "i"]})
    answer = json.loads(raw)
    assert status == 200 and [d["index"] for d in answer["data"]] == [0, 1, 2]
    assert all(len(d["embedding"]) == 4 for d in answer["data"])
    assert answer["usage"] == {"prompt_tokens": 9, "total_tokens": 9}
    true = _truth(sim, headers["x-request-id"])
    assert true["endpoint"] == "embeddings" and true["n"] == 3 and true["prompt_tokens"] == 9
    server_ms = (true["completed_s"] - true["received_s"]) * 1e3
    assert 3 * 20.0 + 9 * 2.0 <= server_ms < 3 * 20.0 + 9 * 2.0 + 30.0
    # the same input, the same vector; base64 carries the same floats
    _, again, _ = _post(sim, "/embeddings", {"model": "sim-e", "input": "d e f g h", "encoding_format": "base64"})
    packed = base64.b64decode(json.loads(again)["data"][0]["embedding"])
    assert list(struct.unpack("<4f", packed)) == pytest.approx(answer["data"][1]["embedding"], abs=1e-6)


@pytest.mark.parametrize(("body", "status"), [
    ({"model": "nope", "input": "x"}, 404),
    ({"model": "sim-e", "input": []}, 400),
    ({"model": "sim-e", "input": ["ok", "  "]}, 400),
    ({"model": "sim-e"}, 400),
])
def test_embeddings_refuse_bad_requests(sim, body, status):
    code, raw, _ = _post(sim, "/embeddings", body)
    assert code == status and json.loads(raw)["error"]["message"]


def test_a_non_streamed_response_carries_its_text_reasoning_and_usage(sim):
    status, raw, _ = _post(sim, "/responses", {"model": "sim-e", "input": [{"role": "user", "content": "one two"}],
                                               "instructions": "be brief"})
    answer = json.loads(raw)
    assert status == 200 and answer["object"] == "response" and answer["status"] == "completed"
    kinds = [item["type"] for item in answer["output"]]
    assert kinds == ["reasoning", "message"]
    assert answer["usage"]["output_tokens"] == 2 + 5 and answer["usage"]["output_tokens_details"] == {
        "reasoning_tokens": 2}
    # two messages (instructions as a system message, the user's) of 2 words + 4 template tokens each
    assert answer["usage"]["input_tokens"] == 12


def test_a_streamed_response_ends_with_its_terminal_event_and_no_done(sim):
    status, raw, headers = _post(sim, "/responses", {"model": "sim-e", "input": "hi", "stream": True,
                                                     "max_output_tokens": 4})
    events = [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]
    types = [e["type"] for e in events]
    assert status == 200 and types[:2] == ["response.created", "response.in_progress"]
    assert types[2:] == ["response.reasoning_text.delta"] * 2 + ["response.output_text.delta"] * 2 + [
        "response.incomplete"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]
    assert final["incomplete_details"] == {"reason": "max_output_tokens"} and final["usage"]["output_tokens"] == 4
    assert b"[DONE]" not in raw
    true = _truth(sim, headers["x-request-id"])
    assert true["endpoint"] == "responses" and true["output_tokens"] == 4 and len(true["chunk_write_times_s"]) == 4
