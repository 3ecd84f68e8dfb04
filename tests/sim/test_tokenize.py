"""The simulator's POST /tokenize (vLLM/SGLang and llama.cpp shapes) counts with its own
truth, one token per word; `usage_completion_offset` moves the final usage only, so a client
can be checked against a known count error."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from bench.sim import start_sim
from tests.sim.conftest import truth


def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def test_both_shapes_count_words(sim_default):
    url = f"{sim_default.root_url}/tokenize"
    status, vllm = _post(url, {"model": "sim-small", "prompt": " The river crossed.  a", "add_special_tokens": False})
    assert status == 200 and vllm["count"] == 4 and len(vllm["tokens"]) == 4 and vllm["max_model_len"] == 8192
    status, llama = _post(url, {"content": " The river crossed.  a", "add_special": False})
    assert status == 200 and llama == {"tokens": vllm["tokens"]}
    status, chat = _post(url, {"model": "sim-small", "messages": [{"role": "user", "content": "one two"}]})
    assert status == 200 and chat["count"] == 2 + 4  # the chat template's 4 tokens a message, as in prompts
    assert _post(url, {"model": "nope", "prompt": "x"})[0] == 404
    assert _post(url, {"model": "sim-small"})[0] == 400
    assert _post(url, {"content": 3})[0] == 400


@pytest.mark.parametrize("offset", [-3, 2])
def test_the_usage_offset_moves_the_final_usage_only(offset):
    profile = {"models": ["sim-off"], "decode_ms_base": 0.5, "usage_completion_offset": offset}
    with start_sim(profile=profile, seed=1) as sim:
        body = {"model": "sim-off", "prompt": "a b", "max_tokens": 6, "stream": True, "ignore_eos": True,
                "stream_options": {"include_usage": True}}
        request = urllib.request.Request(f"{sim.base_url}/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            rid = resp.headers["x-request-id"]
            events = [json.loads(line[6:]) for line in resp.read().decode().splitlines()
                      if line.startswith("data: {")]
        text = "".join(c["text"] for e in events for c in e["choices"])
        usage = [e["usage"] for e in events if e.get("usage")][-1]
        generated = truth(sim, rid)["output_tokens"]
        assert generated == 6 and len(text.split()) == 6
        assert usage["completion_tokens"] == 6 + offset and usage["total_tokens"] == 2 + 6 + offset
        assert _post(f"{sim.root_url}/tokenize", {"prompt": text})[1]["count"] == 6
